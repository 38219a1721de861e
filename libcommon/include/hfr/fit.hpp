// Fitting a 3D face model to dense 2D landmarks under a perspective camera.
//
// Unknowns: pose (R, t), identity coefficients a (first K modes, prior
// N(0, I)) and expression weights b (in [0, 1], prior N(0, 1/lambda_b)).
// Energy:
//   sum_i w_i |proj(R (m_i + B_i [a; b]) + t) - x_i|^2 / sigma^2
//   + depth_weight * sum_i w_i (depth term, below) / sigma^2
//   + |a|^2 + lambda_b |b|^2
// minimised jointly by Levenberg-Marquardt (analytic Jacobians, Eigen LDLT
// on the normal equations) from an SQPnP + iterative PnP start on the mean
// shape; expression bounds by an active set in every step. sigma is relative to the face size
// (the distance between the eye centres). The depth term ties the model's
// relative depths to the face mesh's predicted z (same pixel scale as x).
#pragma once
#include <array>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "hfr/correspondence.hpp"
#include "hfr/mesh.hpp"
#include "hfr/morphable.hpp"

namespace hfr::fit {

struct Observation {
  std::vector<std::array<double, 3>> points;  // 468: x, y in image pixels, z relative depth (pixels, + = away)
  int width = 0, height = 0;                  // image size
};

struct Options {
  int identity_modes = 80;        // of the model's K (ICT: 100)
  bool expressions = true;        // fit the blendshapes (all but the eye-gaze and pupil ones)
  double sigma_rel = 0.02;        // landmark noise, as a fraction of the eye distance
  double expression_prior = 1.0;  // lambda_b
  double depth_weight = 0.25;     // weight of the face mesh's relative depth (0 = 2D only)
  double contour_weight = 0.3;    // weight of the face-oval points (they slide along the silhouette)
  bool spread_weighting = true;   // weigh landmarks by the calibration's spread (when the correspondence has one)
  int iterations = 30;              // Levenberg-Marquardt steps at most
  double focal_px = 0;            // 0: from the field of view below
  double fov_deg = 40;            // field of view across the image's longer side
};

struct Result {
  mesh::Pose pose;
  mesh::Pinhole camera;
  Eigen::VectorXf identity, expression;   // K_used, E (0 for those not fitted)
  std::vector<std::array<double, 3>> model_points;  // the fitted model's landmarks in model space (cm)
  std::vector<std::array<double, 2>> projected;  // the model's landmarks in the image
  std::vector<double> residual_px;        // per landmark
  std::vector<double> weights;            // per landmark, as used by the fit
  double rms_px = 0;                      // weighted by `weights`
  double rms_rel = 0;                     // rms_px / eye distance in pixels
  double eye_distance_px = 0;
  std::array<double, 3> yaw_pitch_roll{};
};

// The camera for an image: focal length from options, principal point at the centre.
mesh::Pinhole camera_for(int width, int height, const Options& o);

// Per-landmark weights used by the fit (face oval down-weighted).
std::vector<double> landmark_weights(const Options& o);

// Fits `model` (with `corr` giving each landmark's surface point) to `obs`.
// A model without modes (the facemesh fallback) gets the pose only.
Result fit(const morph::MorphableModel& model, const morph::Correspondence& corr, const Observation& obs,
           const Options& o);

// For the facemesh fallback: the face mesh's own 468 points in model space
// (cm), back-projected with the fitted pose and the predicted depths.
std::vector<float> facemesh_vertices(const Observation& obs, const Result& r);

}  // namespace hfr::fit
