// hfr-synth: turn reconstructed faces into NIR reflectance and paired VIS/NIR render jobs.
#include "hfr/cli.hpp"

namespace {
hfr::cli::ToolSpec spec() {
  hfr::cli::ToolSpec s;
  s.name = "hfr-synth";
  s.summary = "turn reconstructed faces into NIR reflectance and paired VIS/NIR render jobs";
  s.synopsis = {"[OPTION]... [FACES.jsonl]"};
  s.description = {
    "Transforms each reconstructed diffuse albedo into NIR albedo at 850 or 940 nm with a physically motivated model fitted to measured skin spectra, samples new identities, poses, expressions and lights, and writes paired VIS/NIR render jobs that share identity, pose and expression.",
  };
  s.reads = "face records and tensor files from hfr-reconstruct (JSON lines; - is stdin).";
  s.writes = "render jobs as JSON-lines records on stdout (identity, pose, expression, camera, lights, spectrum, output paths), reproducible from --seed.";
  s.not_built = "The VIS-to-NIR reflectance transform and the identity, pose and lighting samplers are planned; this build writes no jobs.";
  s.see_also = {"hfr-reconstruct(1)", "hfr-render(1)"};
  return s;
}
}  // namespace

int main(int argc, char** argv) {
  return hfr::cli::run(spec(), argc, argv, [](const hfr::cli::Args&) { return 1; });
}
