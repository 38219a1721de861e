// Quick rasterised renders of a morphable face: Lambertian skin with a
// painted albedo texture (lips, brows), white eyeballs with dark irises,
// second-order spherical-harmonics lighting, a pinhole camera. Used to
// calibrate where the face-mesh network puts its landmarks on the model
// (reconstruct.hpp) and as synthetic ground truth in the tests. Not the
// physically based renderer (hfr-render).
#pragma once
#include <array>
#include <vector>

#include <Eigen/Core>
#include <opencv2/core.hpp>

#include "hfr/correspondence.hpp"
#include "hfr/mesh.hpp"
#include "hfr/morphable.hpp"
#include "hfr/raster.hpp"

namespace hfr::face_render {

struct Options {
  int width = 640, height = 480;
  double fov_deg = 40;                               // across the longer side
  std::array<std::array<double, 3>, 9> sh{};         // lighting (sh_basis convention); all zero = a default
  int texture_size = 512;
  cv::Vec3f background{0.18f, 0.18f, 0.2f};          // linear RGB
};

struct Scene {
  cv::Mat photo;                  // CV_8UC3 sRGB, RGB order
  cv::Mat albedo;                 // CV_32FC3 linear: the face tile's albedo texture
  std::vector<float> vertices;    // model space
  mesh::Pose pose;
  mesh::Pinhole camera;
  raster::Buffers buffers;        // per pixel: the visible triangle and barycentrics
};

// The default lighting: ambient plus light from the front, above and the side.
std::array<std::array<double, 3>, 9> default_lighting();

// The albedo of skin at a face-tile texel (u, v): a base tone with a gentle pattern.
cv::Vec3f skin_albedo(float u, float v);

Scene render(const morph::MorphableModel& m, const morph::Correspondence& corr, const Eigen::VectorXf& identity,
             const Eigen::VectorXf& expression, const mesh::Pose& pose, const Options& o);

}  // namespace hfr::face_render
