// hfr-eval's work as a library call: read score inputs (one per fold), compute
// verification, closed-set and open-set identification metrics per fold and
// mean +- std over folds, and write a JSON report, a text table and plots.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "hfr/metrics.hpp"
#include "hfr/records.hpp"
#include "hfr/scorefile.hpp"

namespace hfr::eval {

// The scores of one fold, reduced to what the metrics need.
struct FoldScores {
  std::string source;
  std::vector<double> genuine, impostor;   // verification
  // Closed-set identification: one entry per probe whose subject is enrolled.
  // kRankMiss marks a mate that an approximate search did not return.
  std::vector<std::uint64_t> ranks;
  std::vector<double> mated_best;          // best mated score per ranked probe (NaN if unknown)
  std::vector<double> nonmated_top;        // open set: top score of probes not enrolled
  std::uint64_t skipped = 0;               // failed records skipped
  bool identification = false;             // ranks are meaningful
  // With LoadOptions::pair_ids (for --quality): the probe and gallery id of
  // each mated score (parallel to `genuine`; a gallery id may be "" when the
  // input names none) and where it came from: a matrix row, a record's line,
  // or 0 (score files).
  std::vector<std::string> genuine_probe, genuine_gallery;
  std::vector<std::uint64_t> genuine_origin;
  enum class Origin { none, matrix_row, line } origin = Origin::none;
  // Filled by attach_quality: the pair quality of each mated score, and how
  // it was formed ("min(probe, gallery)" or "probe").
  std::vector<double> genuine_quality;
  std::string pair_quality;
};
constexpr std::uint64_t kRankMiss = ~std::uint64_t{0};

struct LoadOptions {
  std::string kind = "auto";  // auto | matrix | records | 4col | 5col | bob-csv | csv
  std::string probe_labels, gallery_labels;  // for matrices without subjects: one label per line
  scores::ScoreTable* keep_table = nullptr;  // pairwise inputs: rows appended here too (--write-scores)
  bool pair_ids = false;                     // keep the ids of mated pairs (FoldScores::genuine_probe ...)
};

// Reads one input ("-" = stdin). Throws hfr::Error naming file and line/record.
FoldScores load_fold(const std::string& path, const LoadOptions& options);

// Per-face quality scores (--quality): JSON-lines records such as hfr-embed
// writes, keyed by their "id" (the ids hfr-match keeps for matrix rows and
// columns and in pair records). Records with an "error" field are skipped.
struct QualityTable {
  struct Entry {
    double quality = 0;
    std::string where;  // FILE:LINE
    bool used = false;
  };
  std::unordered_map<std::string, Entry> by_id;
  std::string files;    // the files read, for messages
};
// Reads the records ("-" = stdin). Throws hfr::FormatError "FILE:LINE: why"
// for a record without an id, without the field, with a field that is not a
// number, or an id seen before with another quality.
QualityTable load_quality(const std::vector<std::string>& paths, const std::string& field = "quality");
// Pair quality of every mated score of a fold loaded with pair_ids: the lower
// of the probe's and the gallery entry's quality when every gallery entry of a
// mated pair has one, else the probe's alone (ISO/IEC 29794-1, Grother &
// Tabassi's pairwise quality). Throws hfr::FormatError naming the input and
// the row or line when a probe has no quality, or when only some gallery
// entries have one. Marks the records used.
void attach_quality(FoldScores& fold, QualityTable& quality);

struct Options {
  std::vector<std::string> inputs;          // one per fold
  LoadOptions load;
  std::vector<double> far_targets = {1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6};
  std::vector<double> fpir_targets = {1e-1, 1e-2};
  std::vector<int> ranks = {1, 5, 10, 20};
  std::size_t cmc_max = 50;
  metrics::FarConvention convention = metrics::FarConvention::at_most;
  int bootstrap = 1000;                     // replicates; 0 = none
  double thin = 100;                        // bootstrap targets resting on fewer impostors
  std::uint64_t seed = 0;
  std::string name;                         // run name in tables, legends
  std::string report;                       // JSON report file ("" none)
  bool json = false;                        // JSON to stdout instead of the table
  std::string plot_prefix;                  // PREFIX-roc.svg ... ("" none)
  std::vector<std::string> plot_formats = {"svg", "png"};
  std::vector<std::string> compare;         // earlier reports to overlay
  std::vector<std::string> quality;         // quality records: error versus reject ("" none)
  std::string quality_field = "quality";
  double reject_fmr = 1e-3;                 // the EvR threshold's FMR target
  std::vector<double> reject_auc = {0.95, 0.3};  // upper reject limits of the areas under the EvR curve
  std::string write_scores;                 // convert pairwise inputs
  scores::Format write_format = scores::Format::four_column;
  std::string provenance;                   // JSON object
};

// Builds the report of a run (also used by tests).
nlohmann::ordered_json evaluate(const std::vector<FoldScores>& folds, const Options& options);
// Plain-text summary for people.
std::string render_table(const nlohmann::ordered_json& report);
// Side-by-side summary of the compared reports and this one, one row per run
// (oldest first): Rank-1, TAR at the FAR targets from 1e-2 down to the
// smallest this run's non-mated scores resolve (at most three), EER, AUC.
std::string render_comparison(const nlohmann::ordered_json& report, const std::vector<nlohmann::ordered_json>& compare);
// Writes ROC, DET, CMC (and with qualities, error versus reject) plots of the report and the compared reports;
// returns the paths written.
std::vector<std::string> write_plots(const nlohmann::ordered_json& report, const std::vector<nlohmann::ordered_json>& compare,
                                     const Options& options);

int run(const Options& options);

}  // namespace hfr::eval
