// hfr-render: ray-trace VIS and NIR face images from render jobs.
#include "hfr/cli.hpp"

namespace {
hfr::cli::ToolSpec spec() {
  hfr::cli::ToolSpec s;
  s.name = "hfr-render";
  s.summary = "ray-trace VIS and NIR face images from render jobs";
  s.synopsis = {"[OPTION]... [JOBS.jsonl]"};
  s.description = {
    "Renders each job with a perspective camera: diffuse skin with a subsurface scattering approximation that is wider in NIR than in VIS, a microfacet specular term with Fresnel, soft shadows from area lights, several samples per pixel with a fixed seed.",
  };
  s.reads = "render jobs from hfr-synth (JSON lines; - is stdin) and the face tensor files they name.";
  s.writes = "one image per job (PNG) and one JSON-lines record per rendered image on stdout (identity, modality, pose, path).";
  s.not_built = "The Embree path tracer (subsurface skin approximation, microfacet specular, area lights) is planned; this build renders nothing.";
  s.see_also = {"hfr-synth(1)", "hfr-train(1)"};
  return s;
}
}  // namespace

int main(int argc, char** argv) {
  return hfr::cli::run(spec(), argc, argv, [](const hfr::cli::Args&) { return 1; });
}
