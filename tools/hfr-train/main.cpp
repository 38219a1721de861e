// hfr-train: train and fine-tune face recognition backbones with the HFR losses.
#include "hfr/cli.hpp"

namespace {
hfr::cli::ToolSpec spec() {
  hfr::cli::ToolSpec s;
  s.name = "hfr-train";
  s.summary = "train and fine-tune face recognition backbones with the HFR losses";
  s.synopsis = {"[OPTION]... TRAIN.jsonl"};
  s.description = {
    "Fine-tunes a pretrained recogniser on paired NIR-VIS images so that NIR probes match VIS galleries, on CPU or CUDA, on one machine or many (torch.distributed).",
  };
  s.reads = "image records (JSON lines with path, subject and modality fields) and an initial hfr model file.";
  s.writes = "an hfr model file (.hft: architecture, preprocessing, weights, provenance) and per-step metrics as JSON lines.";
  s.not_built = "Training (margin softmax, ID-MMD, pairwise contrastive, switch style modulation, recognizability index) is planned; this build trains nothing.";
  s.see_also = {"hfr-embed(1)", "hfr-eval(1)"};
  return s;
}
}  // namespace

int main(int argc, char** argv) {
  return hfr::cli::run(spec(), argc, argv, [](const hfr::cli::Args&) { return 1; });
}
