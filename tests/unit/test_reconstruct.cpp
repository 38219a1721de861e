// hfr-reconstruct end to end on synthetic ground truth: an ICT FaceKit head
// with known identity, pose, albedo texture and spherical-harmonics lighting
// is rasterised into a photo; the whole pipeline (BlazeFace, face mesh, fit,
// unwrap) runs on it, and pose (degrees), shape (mm) and albedo are compared
// with the truth.
#include "torch_catch.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include <Eigen/Geometry>
#include <opencv2/imgproc.hpp>

#include "hfr/canonical_face.hpp"
#include "hfr/correspondence.hpp"
#include "hfr/error.hpp"
#include "hfr/face_render.hpp"
#include "hfr/image.hpp"
#include "hfr/model.hpp"
#include "hfr/raster.hpp"
#include "hfr/reconstruct.hpp"
#include "hfr/reflectance.hpp"

namespace {

bool have_inputs() {
  const std::string ict = std::string(HFR_SHARED_DATA) + "/ict-facekit/neutral.obj";
  const std::string geo = hfr::nn::model_dir() + "/face_geometry.binarypb";
  const std::string det = hfr::nn::model_dir() + "/blazeface.json";
  return std::filesystem::exists(ict) && std::filesystem::exists(geo);
}

}  // namespace

TEST_CASE("reconstruct recovers pose, shape and albedo of a rendered ICT face", "[reconstruct]") {
  if (!have_inputs()) {
    WARN("skipped: needs the ICT FaceKit test data (" HFR_SHARED_DATA "/ict-facekit) and the fetched models (make setup)");
    return;
  }
  hfr::reconstruct::Options o;
  o.ict_dir = std::string(HFR_SHARED_DATA) + "/ict-facekit";
  o.model = hfr::reconstruct::ModelChoice::ict;
  hfr::reconstruct::Reconstructor rec(o);
  REQUIRE(rec.full_head());
  std::mt19937 rng(11);
  std::normal_distribution<float> n(0, 1);
  const auto corr = hfr::morph::builtin_ict_correspondence(rec.model());
  hfr::face_render::Options ro;
  double worst_pose = 0, worst_shape = 0, worst_albedo = 0, worst_lm = 0;
  struct Case { double yaw, pitch, roll; };
  for (const Case& k : {Case{0, 0, 0}, Case{15, -8, 4}, Case{-25, 5, -3}}) {
    Eigen::VectorXf a = Eigen::VectorXf::Zero(100);
    for (int j = 0; j < 60; ++j) a[j] = n(rng);  // a face from the population (N(0, 1) per mode)
    const auto pose = hfr::mesh::pose_from_angles(k.yaw, k.pitch, k.roll, {0.5, 1.0, 48.0});
    const auto s = hfr::face_render::render(rec.model(), corr, a, Eigen::VectorXf::Zero(rec.model().expression.cols()), pose, ro);
    auto faces = rec.reconstruct(s.photo);
    REQUIRE(faces.size() == 1);
    const auto& f = faces[0];
    INFO("yaw " << k.yaw << " pitch " << k.pitch << " roll " << k.roll << ": error '" << f.error << "'");
    REQUIRE(f.error.empty());
    const auto ypr = f.fit.yaw_pitch_roll;
    const double pose_err = std::max({std::abs(ypr[0] - k.yaw), std::abs(ypr[1] - k.pitch), std::abs(ypr[2] - k.roll)});
    // shape: mean vertex error over the narrow face area in model space, after
    // a rigid alignment (the pose is judged separately; no scale)
    const std::int64_t nv = 6706;
    auto face_points = [&](const std::vector<float>& v) {
      Eigen::Matrix3Xd m(3, nv);
      for (std::int64_t i = 0; i < nv; ++i) m.col(i) = Eigen::Vector3d(v[3 * i], v[3 * i + 1], v[3 * i + 2]);
      return m;
    };
    const Eigen::Matrix3Xd truth = face_points(s.vertices), got = face_points(f.vertices);
    const auto mean_face = hfr::morph::evaluate(rec.model(), Eigen::VectorXf::Zero(100), Eigen::VectorXf::Zero(0));
    auto aligned_error_mm = [&](const Eigen::Matrix3Xd& a) {
      const Eigen::Matrix4d T = Eigen::umeyama(a, truth, false);
      const Eigen::Matrix3Xd b = (T.topLeftCorner<3, 3>() * a).colwise() + T.topRightCorner<3, 1>();
      return 10 * (b - truth).colwise().norm().mean();
    };
    const double err = aligned_error_mm(got), base = aligned_error_mm(face_points(mean_face));
    // albedo: observed skin texels, up to the unobservable global scale per channel
    const cv::Mat& alb = f.maps.albedo;
    REQUIRE(alb.rows == 512);
    std::vector<double> ratio[3];
    for (int y = 0; y < 512; ++y)
      for (int x = 0; x < 512; ++x)
        if (f.maps.source.at<std::uint8_t>(y, x) == hfr::reflect::observed) {
          const cv::Vec3f t = s.albedo.at<cv::Vec3f>(y, x), r = alb.at<cv::Vec3f>(y, x);
          if (t[0] < 0.4f) continue;  // skin only (lips and brows are darker)
          for (int c = 0; c < 3; ++c) ratio[c].push_back(r[c] / t[c]);
        }
    REQUIRE(ratio[0].size() > 10000);
    double alb_err = 0;
    for (int c = 0; c < 3; ++c) {
      auto& r = ratio[c];
      std::nth_element(r.begin(), r.begin() + static_cast<long>(r.size() / 2), r.end());
      const double med = r[r.size() / 2];
      std::vector<double> dev;
      for (double q : r) dev.push_back(std::abs(q / med - 1));
      std::nth_element(dev.begin(), dev.begin() + static_cast<long>(dev.size() / 2), dev.end());
      alb_err = std::max(alb_err, dev[dev.size() / 2]);
    }
    // landmarks: the fitted model's landmarks against the truth's, in pixels
    const auto cam_truth = hfr::mesh::transform(pose, s.vertices);
    double lm = 0;
    for (std::size_t i = 0; i < 468; ++i) {
      const auto p = hfr::morph::point_on(cam_truth, rec.model().neutral, corr.points[i]);
      lm += std::hypot(s.camera.fx * p.x() / p.z() + s.camera.cx - f.fit.projected[i][0], s.camera.fy * p.y() / p.z() + s.camera.cy - f.fit.projected[i][1]);
    }
    lm /= 468;
    if (const char* dbg = std::getenv("HFR_TEST_DEBUG_DIR")) {  // inspection: truth (green), face mesh (red), fit (blue)
      cv::Mat img;
      const double Z = 3;
      cv::resize(s.photo, img, cv::Size(), Z, Z, cv::INTER_LINEAR);
      for (std::size_t i = 0; i < 468; ++i) {
        const auto p = hfr::morph::point_on(cam_truth, rec.model().neutral, corr.points[i]);
        const cv::Point2d t(Z * (s.camera.fx * p.x() / p.z() + s.camera.cx), Z * (s.camera.fy * p.y() / p.z() + s.camera.cy));
        const cv::Point2d m(Z * f.found.mesh[i].x, Z * f.found.mesh[i].y);
        cv::line(img, t, m, {255, 255, 0}, 1);
        cv::circle(img, t, 2, {0, 255, 0}, -1);
        cv::circle(img, m, 2, {255, 0, 0}, -1);
      }
      img = img(cv::Rect(static_cast<int>(Z * 150), static_cast<int>(Z * 120), static_cast<int>(Z * 340), static_cast<int>(Z * 340))).clone();
      double mx = 0, my = 0, ms = 0, fx = 0;
      for (std::size_t i = 0; i < 468; ++i) {
        const auto p = hfr::morph::point_on(cam_truth, rec.model().neutral, corr.points[i]);
        const double tx = s.camera.fx * p.x() / p.z() + s.camera.cx, ty = s.camera.fy * p.y() / p.z() + s.camera.cy;
        mx += f.found.mesh[i].x - tx, my += f.found.mesh[i].y - ty;
        ms += std::hypot(f.found.mesh[i].x - tx, f.found.mesh[i].y - ty);
        fx += std::hypot(f.fit.projected[i][0] - f.found.mesh[i].x, f.fit.projected[i][1] - f.found.mesh[i].y);
      }
      std::fprintf(stderr, "yaw %g: face mesh - truth: mean offset (%.2f, %.2f) px, mean distance %.2f px; fit - face mesh %.2f px; eye distance %.1f px\n",
                   k.yaw, mx / 468, my / 468, ms / 468, fx / 468, f.fit.eye_distance_px);
      hfr::write_image(std::string(dbg) + "/render_" + std::to_string(static_cast<int>(k.yaw)) + ".png", img);
      cv::Mat a8;
      hfr::reflect::linear_to_srgb(f.maps.albedo).convertTo(a8, CV_8UC3, 255);
      hfr::write_image(std::string(dbg) + "/albedo_" + std::to_string(static_cast<int>(k.yaw)) + ".png", a8);
    }
    INFO("pose error " << pose_err << " deg, shape " << err << " mm (mean face " << base << " mm), albedo median relative error "
                       << alb_err << ", landmark error " << lm << " px, coverage " << f.maps.coverage);
    // Measured (2026-11): pose 2-4 deg, landmarks 3-8 px (2-7% of the eye
    // distance), albedo 2-8 %; the shape is about as far from the truth as the
    // mean face is (2.6-5.6 mm vs 1.8-4.3 mm): the face mesh's own landmark
    // errors on turned faces dominate (docs/reconstruct.md).
    CHECK(pose_err < 5);
    CHECK(err < 7.0);
    CHECK(err < 1.6 * base + 1.0);
    CHECK(alb_err < 0.12);
    CHECK(lm < 0.08 * f.fit.eye_distance_px);
    worst_pose = std::max(worst_pose, pose_err);
    worst_shape = std::max(worst_shape, err);
    worst_albedo = std::max(worst_albedo, alb_err);
    worst_lm = std::max(worst_lm, lm);
  }
  WARN("rendered faces: worst pose error " << worst_pose << " deg, shape " << worst_shape << " mm, albedo " << worst_albedo
                                          << ", landmarks " << worst_lm << " px");
}

TEST_CASE("the stored facemesh correspondence is the calibration on renders", "[reconstruct][correspondence]") {
  if (!have_inputs()) {
    WARN("skipped: needs the ICT FaceKit test data and the fetched models");
    return;
  }
  hfr::reconstruct::Options o;
  o.ict_dir = std::string(HFR_SHARED_DATA) + "/ict-facekit";
  o.model = hfr::reconstruct::ModelChoice::ict;
  hfr::reconstruct::Reconstructor rec(o);
  const auto& m = rec.model();
  const auto start = hfr::morph::register_facemesh(m, hfr::read_canonical_face(hfr::nn::model_dir() + "/face_geometry.binarypb"));
  hfr::reconstruct::CalibrationReport rep;
  const auto fresh = hfr::reconstruct::calibrate_correspondence(m, start, rec.finder(), {}, &rep);
  WARN("calibration: " << rep.views_used << " renders used, landmarks moved " << rep.mean_shift_cm * 10 << " mm on average (max "
                       << rep.max_shift_cm * 10 << " mm) from the geometric registration; sample spread " << rep.mean_spread_cm * 10
                       << " mm");
  CHECK(rep.views_used >= 28);
  CHECK(rep.mean_shift_cm < 0.4);   // a refinement of the registration, not a different mapping
  if (const char* path = std::getenv("HFR_WRITE_CORRESPONDENCE")) {
    std::ofstream(path) << hfr::morph::to_json(fresh);
    WARN("wrote " << path);
  }
  const auto stored = hfr::morph::builtin_ict_correspondence(m);
  int same = 0;
  double worst = 0;
  for (std::size_t i = 0; i < 468; ++i) {
    const auto a = hfr::morph::point_on(m.neutral.positions, m.neutral, stored.points[i]);
    const auto b = hfr::morph::point_on(m.neutral.positions, m.neutral, fresh.points[i]);
    worst = std::max(worst, static_cast<double>((a - b).norm()));
    same += (a - b).norm() < 0.01f;
  }
  INFO("stored vs fresh calibration: " << same << " of 468 within 0.1 mm, worst " << worst * 10 << " mm");
  CHECK(same >= 463);
  CHECK(worst < 0.1);
}

TEST_CASE("reconstruct refuses profile views instead of fitting them badly", "[reconstruct]") {
  if (!have_inputs()) {
    WARN("skipped: needs the ICT FaceKit test data and the fetched models");
    return;
  }
  hfr::reconstruct::Options o;
  o.ict_dir = std::string(HFR_SHARED_DATA) + "/ict-facekit";
  o.model = hfr::reconstruct::ModelChoice::ict;
  hfr::reconstruct::Reconstructor rec(o);  // defaults: --max-yaw 50, --min-mesh-score 0.5
  const auto corr = hfr::morph::builtin_ict_correspondence(rec.model());
  const Eigen::VectorXf zero_b = Eigen::VectorXf::Zero(rec.model().expression.cols());
  // the face mesh saturates near 50 degrees (a 75-degree profile fits as about
  // 45), so profiles are caught by its face flag and by the fitted yaw
  for (double yaw : {-65.0, 75.0, -75.0}) {
    const auto pose = hfr::mesh::pose_from_angles(yaw, 0, 0, {0.0, 1.0, 50.0});
    const auto s = hfr::face_render::render(rec.model(), corr, Eigen::VectorXf::Zero(100), zero_b, pose, {});
    std::vector<hfr::reconstruct::FaceResult> faces;
    try {
      faces = rec.reconstruct(s.photo);
    } catch (const hfr::Error& e) {
      INFO("yaw " << yaw << ": " << e.what());
      CHECK(std::string(e.what()).find("no face") != std::string::npos);  // the detector gave up: also a refusal
      continue;
    }
    REQUIRE(faces.size() == 1);
    INFO("yaw " << yaw << ": fitted yaw " << faces[0].fit.yaw_pitch_roll[0] << ", error '" << faces[0].error << "'");
    CHECK((faces[0].error.find("profile view") != std::string::npos ||
           faces[0].error.find("profile or occluded") != std::string::npos));
    CHECK(faces[0].vertices.empty());
  }
}
