// hfr-match: score probe embeddings against a gallery: verification pairs, top-k search, score matrices.
#include "hfr/cli.hpp"

namespace {
hfr::cli::ToolSpec spec() {
  hfr::cli::ToolSpec s;
  s.name = "hfr-match";
  s.summary = "score probe embeddings against a gallery: verification pairs, top-k search, score matrices";
  s.synopsis = {"[OPTION]... GALLERY PROBES"};
  s.description = {
    "Computes cosine (default) or Euclidean similarity between probes and gallery, exactly as blocked matrix products in bounded memory, or with an approximate vector index for very large galleries.",
  };
  s.reads = "a gallery and a probe embedding set (tensor files from hfr-embed; - is stdin for one of them) and optionally a list of pairs.";
  s.writes = "score records as JSON lines (probe id, gallery ids, scores, ranks, mated flag) or a full score matrix as a tensor file.";
  s.not_built = "Matching is planned; this build scores nothing.";
  s.see_also = {"hfr-embed(1)", "hfr-eval(1)"};
  return s;
}
}  // namespace

int main(int argc, char** argv) {
  return hfr::cli::run(spec(), argc, argv, [](const hfr::cli::Args&) { return 1; });
}
