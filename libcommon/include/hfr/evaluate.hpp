// hfr-eval's work as a library call: read score inputs (one per fold), compute
// verification, closed-set and open-set identification metrics per fold and
// mean +- std over folds, and write a JSON report, a text table and plots.
#pragma once
#include <cstdint>
#include <string>
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
};
constexpr std::uint64_t kRankMiss = ~std::uint64_t{0};

struct LoadOptions {
  std::string kind = "auto";  // auto | matrix | records | 4col | 5col | bob-csv | csv
  std::string probe_labels, gallery_labels;  // for matrices without subjects: one label per line
  scores::ScoreTable* keep_table = nullptr;  // pairwise inputs: rows appended here too (--write-scores)
};

// Reads one input ("-" = stdin). Throws hfr::Error naming file and line/record.
FoldScores load_fold(const std::string& path, const LoadOptions& options);

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
// Writes ROC, DET and CMC plots of the report and the compared reports;
// returns the paths written.
std::vector<std::string> write_plots(const nlohmann::ordered_json& report, const std::vector<nlohmann::ordered_json>& compare,
                                     const Options& options);

int run(const Options& options);

}  // namespace hfr::eval
