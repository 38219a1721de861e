// hfr-reconstruct: reconstruct 3D face shape and reflectance maps from VIS face photos.
#include "hfr/cli.hpp"

namespace {
hfr::cli::ToolSpec spec() {
  hfr::cli::ToolSpec s;
  s.name = "hfr-reconstruct";
  s.summary = "reconstruct 3D face shape and reflectance maps from VIS face photos";
  s.synopsis = {"[OPTION]... [PHOTO|DIR|RECORDS]..."};
  s.description = {
    "For every face in every photo, fits a 3D head (shape and expression coefficients and a perspective pose) to dense facial landmarks and unwraps the photo into a linear-RGB diffuse albedo map with the lighting divided out. The outputs feed hfr-synth.",
  };
  s.reads = "face photos (JPEG, PNG, PNM, BMP, GIF, TIFF, WebP), as files, folders, or a JSON-lines stream of records with a \"path\" field.";
  s.writes = "one JSON-lines record per detected face on stdout (id, source image, face index, fit quality or error), and one tensor file per face (vertices, triangles, UVs, albedo and specular maps, pose, landmarks, coefficients).";
  s.not_built = "Reconstruction (facemesh landmarks, ICT FaceKit fit, albedo unwrapping) is planned; this build does not reconstruct faces.";
  s.see_also = {"hfr-synth(1)", "hfr-render(1)"};
  return s;
}
}  // namespace

int main(int argc, char** argv) {
  return hfr::cli::run(spec(), argc, argv, [](const hfr::cli::Args&) { return 1; });
}
