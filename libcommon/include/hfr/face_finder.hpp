// Faces in photos, in batches: BlazeFace on whole images (one network batch
// per call), the face policy and minimum size, then the 468-point face mesh
// on the rotated face crops (one batch). Shared by hfr-embed and
// hfr-reconstruct.
#pragma once
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <torch/types.h>

#include "hfr/face.hpp"
#include "hfr/graph.hpp"

namespace hfr::detect {

enum class FacePolicy { largest, all, single };

struct Options {
  FacePolicy policy = FacePolicy::largest;
  double min_face = 20;     // pixels, detected box width
  double min_score = 0.5;   // detector score threshold
  bool mesh = true;         // run the face mesh (468 points, five points from it)
  int net_batch = 8;        // images per network call
  int threads = 1;          // threads for the crops
};

struct FoundFace {
  face::Detection det;
  std::vector<cv::Point3d> mesh;  // 468 points in image pixels (z: relative depth, pixel units) when Options::mesh
  face::Points5 pts{};            // from the mesh, or from the detector's keypoints
  double mesh_score = -1;         // the face mesh's face flag (about 1 for a face it can see, towards 0 for a
                                  // profile or an occluded face); -1 = no mesh
};

struct Frame {
  cv::Mat image;                  // RGB 8-bit, set by the caller
  std::string error;              // set by the caller (decode) or by find()
  face::Letterbox lb;             // prepare()
  std::vector<float> det_input;   // prepare(): 3 x 256 x 256
  std::vector<FoundFace> faces;   // find(), after the policy
  int found = 0;                  // detections before the policy and size filter
};

// Runs a program over the rows of `in` in slices of `sub` (small batches
// stay in cache: 1.3-2x faster than one large batch on this CPU), outputs
// joined along dim 0 on the CPU.
std::vector<torch::Tensor> run_sliced(const nn::Program& p, const torch::Tensor& in, int sub, const torch::Device& dev);

class FaceFinder {
 public:
  FaceFinder(const Options& options, const torch::Device& device);
  // The detector input of a frame's image (thread-safe; call from decode threads).
  static void prepare(Frame& frame);
  // Detection, policy and landmarks for the frames without an error. A frame
  // with no usable face, or whose face fails, gets an error.
  void find(const std::vector<Frame*>& frames) const;
  const Options& options() const { return opt_; }

 private:
  Options opt_;
  torch::Device dev_;
  std::unique_ptr<nn::Program> detector_, mesher_;
};

}  // namespace hfr::detect
