// hfr-reconstruct's pipeline: photos -> faces -> 468 landmarks -> 3D model
// fit (ICT FaceKit full head, or the face mesh alone) -> reflectance maps.
//
// Per chunk of --batch photos: decode (threads, overlapped with the previous
// chunk), BlazeFace and the face mesh as one network batch each
// (detect::FaceFinder), then per face (threads): the fit (fit.hpp), the
// unwrap (reflectance.hpp), one tensor file per face written atomically, an
// optional preview image, and one record per face in input order.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hfr/face_finder.hpp"
#include "hfr/fit.hpp"
#include "hfr/inputs.hpp"
#include "hfr/morphable.hpp"
#include "hfr/reflectance.hpp"

namespace hfr::reconstruct {

enum class ModelChoice { automatic, ict, facemesh };

struct Options {
  inputs::Spec in;                 // photos, folders, records, "-"
  std::string output_dir;          // one tensor file per face (required)
  std::string records = "-";       // JSON-lines records
  ModelChoice model = ModelChoice::automatic;
  std::string ict_dir;             // --ict (else $HFR_ICT_FACEKIT, share/hfr/ict-facekit)
  detect::FacePolicy policy = detect::FacePolicy::largest;
  double min_face = 64;            // pixels, detected box width
  double min_score = 0.5;
  fit::Options fit;
  int texture_size = 512;
  double max_yaw = 50, max_pitch = 40;  // degrees: beyond them the fit is refused
  double min_mesh_score = 0.5;     // the face mesh's face flag: below it (profile, occlusion) the face is refused
  double max_residual = 0.06;     // landmark RMS / eye distance: beyond it the fit is refused
  std::string preview_dir;         // PNG previews ("" = none)
  int batch = 16, net_batch = 8, threads = 1;
  std::string device = "cpu";
  std::uint64_t max_pixels = 100'000'000;
  bool timing = false;             // "latency_ms" in the records
};

int run(const Options& options);

// Where the face-mesh network puts its 468 landmarks on the ICT FaceKit,
// learnt from renders (face_render.hpp) of sampled identities and poses: for
// each landmark, the surface points under the network's prediction are
// averaged on the neutral mesh and snapped to the face surface. Starts from
// (and falls back per landmark to) the geometric registration `start`.
// Deterministic for a seed. The stored correspondence is made this way
// (tests/unit/test_reconstruct.cpp, HFR_WRITE_CORRESPONDENCE).
struct CalibrationOptions {
  int views = 32;
  std::uint64_t seed = 1;
  double max_yaw = 20, max_pitch = 12, max_roll = 6;  // degrees, uniform
  float identity_sigma = 0.7f;                      // of the first 40 modes
};
struct CalibrationReport {
  int views_used = 0;
  double mean_shift_cm = 0, max_shift_cm = 0;   // from `start`
  double mean_spread_cm = 0;                    // RMS distance of a landmark's samples from their mean
};
morph::Correspondence calibrate_correspondence(const morph::MorphableModel& ict, const morph::Correspondence& start,
                                               const detect::FaceFinder& finder, const CalibrationOptions& o,
                                               CalibrationReport* report = nullptr);

// One photo at a time (tests, embedding in other programs).
struct FaceResult {
  detect::FoundFace found;
  fit::Result fit;
  reflect::Maps maps;
  std::vector<float> vertices;   // model space (cm)
  bool grey = false;
  std::string error;             // set when the face was refused (pose, residual) or failed
  double detect_ms = 0;          // the photo's detection and face mesh (reconstruct() only)
  double fit_ms = 0, unwrap_ms = 0;
};

class Reconstructor {
 public:
  explicit Reconstructor(const Options& options);  // loads the 3D model and the networks
  ~Reconstructor();
  std::vector<FaceResult> reconstruct(const cv::Mat& rgb8) const;  // error: thrown if no face
  const morph::MorphableModel& model() const;
  bool full_head() const;
  const detect::FaceFinder& finder() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hfr::reconstruct
