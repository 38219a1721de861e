// hfr-render: render jobs (hfr-synth) -> aligned VIS and NIR face crops.
//
// Per job: the identity file's neutral head (+ the job's ICT expression
// blendshapes), posed so that the face's centre sits on the optical axis at
// the job's distance; materials per region (the face's VIS or NIR albedo,
// specular and roughness maps; constant skin for the rest of the head;
// sclera, iris, teeth, mouth); the job's lights (radiometry below); Embree
// ray tracing (render.hpp) with a screen-space subsurface approximation for
// skin (subsurface.hpp; wider in NIR); auto exposure; the sensor (blur,
// gamma, noise, 8-bit). The aligned crop comes from the projected landmarks
// (no detector): when the face is smaller in the frame than in the crop, the
// frame's pixels under the crop are rendered and passed through the sensor,
// then warped up to the crop, as a camera would see a low-resolution face;
// otherwise the crop's pixels are traced directly, each over its footprint
// in the frame (the same as rendering the frame and area-averaging it down),
// with the sensor's blur and noise scaled to the crop.
//
// Lights (camera space, cm): "intensity" is what a white Lambertian surface
// facing the light at the face's centre would reflect (radiance, linear
// units), so a sphere light of intensity I at distance d has radiant
// intensity pi I d^2; ambient: radiance I * rgb from every direction.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace hfr::render_jobs {

struct Options {
  std::vector<std::string> inputs;  // job records files, "-" for stdin
  std::string output_dir;           // where the jobs' output paths are resolved (default: the jobs file's folder)
  std::string ict_dir;              // the ICT FaceKit (for jobs with expressions)
  std::string records = "-";        // rendered-image records
  int spp = 4;                      // camera samples per pixel
  int crop_size = 112;
  std::string crop_template = "arcface-112";
  bool frames = false;              // also write the whole frame (<output>_frame.png)
  bool subsurface = true;
  double exposure = 0.25;           // auto exposure: mean linear face value
  double exposure_jitter = 0.3;     // +- stops, drawn from the job's seed
  bool skip_existing = false;       // do not re-render images that exist (records are still written)
  std::string contact_sheet;        // PNG of VIS/NIR pairs
  int sheet_pairs = 24;
  int threads = 1;
};

int run(const Options& options);

}  // namespace hfr::render_jobs
