// hfr-eval: biometric accuracy: ROC/DET, TAR@FAR, EER, Rank-k/CMC, open-set DIR, protocol folds, quality EvR, plots.
#include <algorithm>

#include "hfr/cli.hpp"
#include "hfr/error.hpp"
#include "hfr/evaluate.hpp"
#include "hfr/version.hpp"

namespace {
using hfr::cli::Complete;

hfr::cli::ToolSpec spec() {
  hfr::cli::ToolSpec s;
  s.name = "hfr-eval";
  s.summary = "biometric accuracy: ROC/DET, TAR@FAR, EER, Rank-k/CMC, open-set DIR, protocol folds, quality error versus reject, plots";
  s.synopsis = {"[OPTION]... SCORES...", "--compare=REPORT [--plot=PREFIX] [OPTION]... SCORES..."};
  s.description = {
      "Computes verification metrics (TAR at FAR targets with the threshold and the FAR actually achieved, EER, AUC, ROC and DET "
      "curves) and identification metrics (Rank-k, CMC, open-set DIR at FPIR) for each SCORES input, one input per fold, and "
      "their mean and sample standard deviation over folds. A plain-text table goes to stdout (or the JSON report with --json); "
      "--report writes the JSON report, --plot the ROC, DET and CMC plots.",
      "SCORES may be a score matrix from hfr-match --matrix (tensor 'scores' [P, G] with subjects in its metadata, or given by "
      "--probe-labels/--gallery-labels: one subject per line), JSON-lines records from hfr-match (pairs with 'score' and "
      "'mated'; top-k records with 'mate_rank'), bob.measure 4- or 5-column score files, bob.bio.base CSV score files, or CSV "
      "with columns probe,reference,score,mated. The kind is recognised from the data; - is stdin. A matrix gives every "
      "probe x gallery pair for verification and the rank of every probe; a score file gives ranks when every probe was "
      "compared with every reference.",
      "Conventions (see hfr(7) and methods.md): a pair is accepted when score >= threshold. The default threshold convention "
      "'at-most' (bob.measure) picks, for each FAR target, the lowest threshold whose achieved FAR is at most the target; "
      "'nearest' (insightface's scripts) picks the ROC point whose FAR is nearest the target. EER is (FAR+FRR)/2 at the "
      "threshold minimising |FAR-FRR|. Rank of a probe = 1 + the number of non-mated scores >= its best mated score (ties "
      "count against it). Where a FAR target rests on fewer than --bootstrap-below non-mated scores, a bootstrap percentile interval "
      "(--bootstrap replicates from --seed) accompanies TAR. Curves in plots and reports pool the folds.",
      "Comparing runs: each --compare REPORT (an earlier --report of hfr-eval, e.g. the pretrained model) adds a row to a "
      "comparison table printed after the main table, and its curves to the plots. The table gives, per run, Rank-1, TAR at "
      "the FAR targets from 1e-2 down to the smallest one this run's non-mated scores resolve (at most three), EER and AUC; "
      "mean ± std over folds where a run has several.",
      "Face quality (--quality RECORDS): the error versus reject curve (EvR; the error versus discard characteristic, EDC, of "
      "ISO/IEC 29794-1) of a per-face quality score such as the one hfr-embed writes for models trained with hfr-train --ri. "
      "The threshold is fixed once on all pairs, at FMR --reject-fmr (1e-3; --convention picks it as for TAR@FAR). Each mated "
      "pair gets a pair quality: the lower of its probe's and its gallery entry's quality when the records give every gallery "
      "entry of a mated pair one, else the probe's. Mated pairs are rejected lowest pair quality first, equal qualities "
      "together (the reject fraction counts mated pairs: with one gallery entry per subject, enrolled probes), and the FNMR of the remaining mated pairs is reported at reject fractions 0, 0.01, ... up to the largest "
      "--reject-auc limit (the curve is a step function: between two distinct qualities it keeps its value). The areas under "
      "it over [0, limit] for each --reject-auc limit (0.95 and 0.3: AUC and pAUC) are exact integrals of the steps, not "
      "divided by the limit ('normalised' in the report is), beside those of the oracle that rejects the false non-matches "
      "first. Quality records are matched to matrix rows and columns, or to pair records' probe and gallery, by their 'id'; "
      "records with an 'error' field are skipped, and records in no mated pair (unenrolled probes, other folds) are not used "
      "(-v counts them). A probe of a mated pair without a quality, a record without an id or the "
      "field, a value that is not a number, or an id given two qualities is an error naming the file and line.",
  };
  s.reads = "score inputs (one per fold; - is stdin), with --compare earlier JSON reports of hfr-eval, with --quality JSON-lines "
            "records carrying a quality score per face.";
  s.writes = "a text table (or with --json the report) on stdout; --report FILE: the JSON report; --plot PREFIX: "
             "PREFIX-roc, PREFIX-det, PREFIX-cmc (and with --quality PREFIX-evr) as SVG and PNG; --write-scores FILE: the scores in another format. Files are "
             "written atomically.";
  s.positionals = {{"SCORES", "Score inputs, one per fold.", Complete::file, {}, true, true}};
  s.options = {
      {"report", 'o', "FILE", "Write the JSON report to FILE.", "", {}, Complete::file},
      {"json", 0, "", "Print the JSON report on stdout instead of the table.", "", {}, Complete::none},
      {"plot", 'p', "PREFIX", "Write ROC, DET, CMC (and error versus reject) plots as PREFIX-roc.svg, PREFIX-roc.png, ... (PREFIX's folder is made if missing).", "", {}, Complete::file},
      {"plot-format", 0, "LIST", "Plot formats, comma separated.", "svg,png", {}, Complete::none},
      {"compare", 'c', "REPORT", "Compare with an earlier report: a row in the comparison table and its curves in the plots (repeatable).", "", {}, Complete::file, true},
      {"name", 0, "NAME", "Name of this run in tables and plot legends.", "", {}, Complete::none},
      {"far", 0, "LIST", "FAR targets, comma separated.", "1e-1,1e-2,1e-3,1e-4,1e-5,1e-6", {}, Complete::none},
      {"fpir", 0, "LIST", "FPIR targets for open-set DIR, comma separated.", "1e-1,1e-2", {}, Complete::none},
      {"ranks", 0, "LIST", "Ranks reported, comma separated.", "1,5,10,20", {}, Complete::none},
      {"cmc-max", 0, "K", "Highest rank of the CMC curve.", "50", {}, Complete::none},
      {"convention", 0, "NAME", "Threshold for a FAR target: at-most (bob.measure) or nearest (insightface).", "at-most",
       {"at-most", "nearest"}, Complete::choices},
      {"bootstrap", 0, "N", "Bootstrap replicates for thin FAR targets; 0 turns intervals off.", "1000", {}, Complete::none},
      {"bootstrap-below", 0, "N", "A FAR target resting on fewer non-mated scores than N gets a bootstrap interval.", "100", {}, Complete::none},
      {"format", 0, "KIND", "Kind of the inputs.", "auto", {"auto", "matrix", "records", "4col", "5col", "bob-csv", "csv"},
       Complete::choices},
      {"probe-labels", 0, "FILE", "Subjects of the matrix rows, one per line.", "", {}, Complete::file},
      {"gallery-labels", 0, "FILE", "Subjects of the matrix columns, one per line.", "", {}, Complete::file},
      {"quality", 'Q', "RECORDS", "Per-face quality records (hfr-embed's JSON-lines, the field --quality-field, matched to the probes and gallery entries by id): adds the error versus reject curve; a comma list.", "", {}, Complete::file, true},
      {"quality-field", 0, "NAME", "Record field holding the quality score (higher = better).", "quality", {}, Complete::none},
      {"reject-fmr", 0, "FMR", "FMR target of the fixed threshold of the error versus reject curve.", "1e-3", {}, Complete::none},
      {"reject-auc", 0, "LIST", "Upper reject fractions of the areas under the error versus reject curve, comma separated.", "0.95,0.3", {}, Complete::none},
      {"write-scores", 0, "FILE", "Also write the pairwise scores of all inputs to FILE in --score-format.", "", {}, Complete::file},
      {"score-format", 0, "KIND", "Format for --write-scores.", "4col", {"4col", "5col", "bob-csv", "csv"}, Complete::choices},
  };
  s.examples = {
      {"hfr-match --matrix vis.jsonl nir.jsonl -o s.hft && hfr-eval s.hft", "Report for all NIR x VIS pairs."},
      {"hfr-eval fold*.hft --report casia.json --plot plots/casia", "Ten folds: mean ± std, JSON report, plots."},
      {"hfr-eval --name finetuned -c pretrained.json -p cmp s.hft", "Overlay a fine-tuned model's curves on an earlier report's."},
      {"hfr-eval scores-dev.txt", "Evaluate a bob.measure 4-column score file."},
      {"hfr-eval --convention nearest --far 1e-3 s.hft", "TAR@FAR the way insightface's scripts pick the threshold."},
      {"hfr-eval s.hft --write-scores s.txt --score-format 4col", "Convert a score matrix for bob.measure."},
      {"hfr-eval -Q nir.jsonl,vis.jsonl -p plots/q s.hft", "Error versus reject of the quality hfr-embed wrote (PREFIX-evr.svg)."},
  };
  s.see_also = {"hfr-match(1)", "hfr(7)", "hfr-formats(5)"};
  return s;
}

std::vector<double> parse_numbers(const std::string& opt, const std::string& s, double lo, double hi) {
  std::vector<double> out;
  for (const auto& x : hfr::cli::split_list(s)) {
    std::size_t used = 0;
    double v = 0;
    try {
      v = std::stod(x, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != x.size() || !(v >= lo && v <= hi))
      throw hfr::UsageError("--" + opt + ": '" + x + "' is not a number in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    out.push_back(v);
  }
  if (out.empty()) throw hfr::UsageError("--" + opt + " needs at least one value");
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  return hfr::cli::run(spec(), argc, argv, [](const hfr::cli::Args& a) {
    hfr::eval::Options o;
    o.inputs = a.positionals();
    o.report = a.str("report");
    o.json = a.flag("json");
    o.plot_prefix = a.str("plot");
    o.plot_formats = hfr::cli::split_list(a.str("plot-format"));
    for (const auto& f : o.plot_formats)
      if (f != "svg" && f != "png") throw hfr::UsageError("--plot-format: unknown format '" + f + "' (use svg, png)");
    o.compare = a.all("compare");
    o.name = a.str("name");
    o.far_targets = parse_numbers("far", a.str("far"), 1e-12, 1);
    o.fpir_targets = parse_numbers("fpir", a.str("fpir"), 1e-12, 1);
    o.ranks.clear();
    for (double r : parse_numbers("ranks", a.str("ranks"), 1, 1e6)) {
      if (r != static_cast<int>(r)) throw hfr::UsageError("--ranks: ranks are whole numbers");
      o.ranks.push_back(static_cast<int>(r));
    }
    o.cmc_max = static_cast<std::size_t>(a.integer("cmc-max", 1, 1000000));
    o.convention = hfr::metrics::parse_convention(a.str("convention"));
    o.bootstrap = static_cast<int>(a.integer("bootstrap", 0, 1000000));
    o.thin = static_cast<double>(a.integer("bootstrap-below", 0, 1000000000));
    o.seed = a.common().seed;
    o.load.kind = a.str("format");
    o.load.probe_labels = a.str("probe-labels");
    o.load.gallery_labels = a.str("gallery-labels");
    for (const auto& q : a.all("quality"))
      for (const auto& x : hfr::cli::split_list(q)) o.quality.push_back(x);
    o.quality_field = a.str("quality-field");
    if (o.quality_field.empty()) throw hfr::UsageError("--quality-field needs a field name");
    o.reject_fmr = parse_numbers("reject-fmr", a.str("reject-fmr"), 1e-12, 1).at(0);
    if (hfr::cli::split_list(a.str("reject-fmr")).size() != 1) throw hfr::UsageError("--reject-fmr takes one FMR target");
    o.reject_auc = parse_numbers("reject-auc", a.str("reject-auc"), 0.01, 0.99);
    int stdin_users = static_cast<int>(std::count(o.inputs.begin(), o.inputs.end(), "-")) + (o.load.probe_labels == "-") +
                      (o.load.gallery_labels == "-") + static_cast<int>(std::count(o.quality.begin(), o.quality.end(), "-"));
    if (stdin_users > 1) throw hfr::UsageError("only one input, label list or quality file can be - (stdin)");
    o.write_scores = a.str("write-scores");
    o.write_format = hfr::scores::parse_format(a.str("score-format"));
    nlohmann::json prov = {{"tool", "hfr-eval"}, {"version", hfr::kVersion}, {"arguments", a.argv()}};
    o.provenance = prov.dump();
    return hfr::eval::run(o);
  });
}
