// hfr-embed: detect, align and embed faces in batches of images.
#include "hfr/cli.hpp"

namespace {
hfr::cli::ToolSpec spec() {
  hfr::cli::ToolSpec s;
  s.name = "hfr-embed";
  s.summary = "detect, align and embed faces in batches of images";
  s.synopsis = {"[OPTION]... [IMAGE|DIR|RECORDS]..."};
  s.description = {
    "Detects every face, finds five landmarks, aligns each face to the crop its model expects and computes L2-normalised embeddings in batches.",
  };
  s.reads = "image files, folders, or JSON-lines records with a \"path\" field (- is stdin).";
  s.writes = "an embedding set as a tensor file (N x D embeddings and the row records), and one JSON-lines record per image or face on stdout.";
  s.not_built = "Embedding with the imported pretrained models (dlib ResNet, faceres) is planned; this build computes no embeddings.";
  s.see_also = {"hfr-match(1)", "hfr-eval(1)"};
  return s;
}
}  // namespace

int main(int argc, char** argv) {
  return hfr::cli::run(spec(), argc, argv, [](const hfr::cli::Args&) { return 1; });
}
