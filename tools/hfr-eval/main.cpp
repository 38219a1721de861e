// hfr-eval: biometric accuracy: ROC/DET, TAR@FAR, EER, Rank-k/CMC, protocol folds, plots.
#include "hfr/cli.hpp"

namespace {
hfr::cli::ToolSpec spec() {
  hfr::cli::ToolSpec s;
  s.name = "hfr-eval";
  s.summary = "biometric accuracy: ROC/DET, TAR@FAR, EER, Rank-k/CMC, protocol folds, plots";
  s.synopsis = {"[OPTION]... [SCORES]"};
  s.description = {
    "Computes verification metrics (TAR at FAR targets with the thresholds, EER, AUC) and identification metrics (Rank-k, CMC, open-set DIR at FPIR) per fold and as mean and standard deviation over folds.",
  };
  s.reads = "score records from hfr-match (JSON lines), a score matrix with label lists, or bob/CSV score files.";
  s.writes = "a JSON report, a plain-text table on stdout, and ROC, DET and CMC plots (SVG and PNG).";
  s.not_built = "Evaluation is planned; this build computes no metrics.";
  s.see_also = {"hfr-match(1)"};
  return s;
}
}  // namespace

int main(int argc, char** argv) {
  return hfr::cli::run(spec(), argc, argv, [](const hfr::cli::Args&) { return 1; });
}
