// The 3D face fit on synthetic ground truth: known ICT FaceKit coefficients
// and pose are projected through the stored facemesh correspondence, then
// fitted back; pose (degrees) and shape (mm) are compared with the truth.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <random>

#include "hfr/correspondence.hpp"
#include "hfr/error.hpp"
#include "hfr/fit.hpp"
#include "hfr/morphable.hpp"

namespace {

const hfr::morph::MorphableModel* ict() {
  static std::unique_ptr<hfr::morph::MorphableModel> m;
  static bool tried = false;
  if (!tried) {
    tried = true;
    const std::string dir = std::string(HFR_SHARED_DATA) + "/ict-facekit";
    if (std::filesystem::exists(dir + "/neutral.obj")) m = std::make_unique<hfr::morph::MorphableModel>(hfr::morph::load_ict_facekit(dir));
  }
  return m.get();
}

struct Truth {
  Eigen::VectorXf a, b;
  hfr::mesh::Pose pose;
};

// Observations as the face mesh would give them: image x, y, and the
// relative depth in pixel units (+ = away from the camera).
hfr::fit::Observation observe(const hfr::morph::MorphableModel& m, const hfr::morph::Correspondence& c, const Truth& t,
                              const hfr::mesh::Pinhole& cam, int w, int h, double noise_px, std::mt19937& rng) {
  const auto v = hfr::morph::evaluate(m, t.a, t.b);
  std::normal_distribution<double> n(0, 1);
  hfr::fit::Observation obs;
  obs.width = w;
  obs.height = h;
  std::vector<Eigen::Vector3d> P;
  double dbar = 0;
  for (const auto& sp : c.points) {
    Eigen::Vector3f x = hfr::morph::point_on(v, m.neutral, sp);
    Eigen::Vector3d q;
    for (int r = 0; r < 3; ++r)
      q[r] = t.pose.R[3 * r] * x[0] + t.pose.R[3 * r + 1] * x[1] + t.pose.R[3 * r + 2] * x[2] + t.pose.t[r];
    P.push_back(q);
    dbar += q.z();
  }
  dbar /= static_cast<double>(P.size());
  for (const auto& q : P)
    obs.points.push_back({cam.fx * q.x() / q.z() + cam.cx + noise_px * n(rng), cam.fy * q.y() / q.z() + cam.cy + noise_px * n(rng),
                          cam.fx * (q.z() - dbar) / dbar + 2 * noise_px * n(rng)});
  return obs;
}

double mean_vertex_error_mm(const hfr::morph::MorphableModel& m, const Truth& t, const hfr::fit::Result& r) {
  const auto a = hfr::morph::evaluate(m, t.a, t.b);
  const auto b = hfr::morph::evaluate(m, r.identity, r.expression);
  const hfr::morph::Range* face = m.region("face");
  double s = 0;
  const std::int64_t n = 6706;  // the narrow face area (regions.json "face_narrow")
  // a shift of the shape in model space is indistinguishable from one of the
  // camera translation: compare after removing the mean offset
  double off[3] = {0, 0, 0};
  for (std::int64_t v = face->v0; v < n; ++v)
    for (int k = 0; k < 3; ++k) off[k] += (a[3 * v + k] - b[3 * v + k]) / static_cast<double>(n);
  for (std::int64_t v = face->v0; v < n; ++v) {
    double d2 = 0;
    for (int k = 0; k < 3; ++k) d2 += std::pow(a[3 * v + k] - b[3 * v + k] - off[k], 2);
    s += std::sqrt(d2);
  }
  return 10 * s / static_cast<double>(n);
}

}  // namespace

TEST_CASE("fit recovers pose and shape from synthetic landmarks", "[fit]") {
  const auto* m = ict();
  if (!m) {
    WARN("skipped: ICT FaceKit test data not found under " HFR_SHARED_DATA "/ict-facekit");
    return;
  }
  const auto corr = hfr::morph::builtin_ict_correspondence(*m);
  std::mt19937 rng(7);
  std::normal_distribution<float> n(0, 1);
  const int W = 640, H = 480;
  hfr::fit::Options o;
  const auto cam = hfr::fit::camera_for(W, H, o);
  const auto name_index = [&](const std::string& s) {
    for (std::size_t k = 0; k < m->expression_names.size(); ++k)
      if (m->expression_names[k] == s) return static_cast<int>(k);
    FAIL("no expression " << s);
    return -1;
  };
  struct Case {
    double yaw, pitch, roll, noise;
    bool expr;
  };
  double worst_pose = 0, worst_shape = 0, base_shape = 0;
  for (const Case& k : {Case{0, 0, 0, 0.0, false}, Case{25, -10, 5, 0.5, true}, Case{-40, 15, -8, 0.5, true}, Case{10, 5, 0, 1.0, true}}) {
    Truth t;
    t.a = Eigen::VectorXf::Zero(100);
    for (int j = 0; j < 60; ++j) t.a[j] = 0.8f * n(rng);
    t.b = Eigen::VectorXf::Zero(m->expression.cols());
    if (k.expr) {
      t.b[name_index("jawOpen")] = 0.3f;
      t.b[name_index("mouthSmile_L")] = 0.5f;
      t.b[name_index("mouthSmile_R")] = 0.4f;
      t.b[name_index("browInnerUp_L")] = 0.3f;
    }
    t.pose = hfr::mesh::pose_from_angles(k.yaw, k.pitch, k.roll, {1.0, -1.5, 55.0});
    auto obs = observe(*m, corr, t, cam, W, H, k.noise, rng);
    auto r = hfr::fit::fit(*m, corr, obs, o);
    const auto ypr = r.yaw_pitch_roll;
    INFO("case yaw " << k.yaw << " pitch " << k.pitch << " roll " << k.roll << " noise " << k.noise << ": fitted " << ypr[0] << " "
                     << ypr[1] << " " << ypr[2] << ", rms " << r.rms_px << " px");
    const double pose_err = std::max({std::abs(ypr[0] - k.yaw), std::abs(ypr[1] - k.pitch), std::abs(ypr[2] - k.roll)});
    const double shape_err = mean_vertex_error_mm(*m, t, r);
    Truth neutral = t;
    neutral.a.setZero();
    neutral.b.setZero();
    hfr::fit::Result zero;
    zero.identity = Eigen::VectorXf::Zero(100);
    zero.expression = Eigen::VectorXf::Zero(m->expression.cols());
    const double neutral_err = mean_vertex_error_mm(*m, t, zero);
    INFO("pose error " << pose_err << " deg, shape error " << shape_err << " mm (the mean face is " << neutral_err << " mm off)");
    CHECK(pose_err < 1.0);
    CHECK(shape_err < 0.4 * neutral_err);
    CHECK(shape_err < 1.5);
    CHECK(r.rms_px < 2 * k.noise + 1.0);  // the prior keeps it above the noise
    CHECK(std::abs(r.pose.t[2] - 55.0) < 3.0);
    worst_pose = std::max(worst_pose, pose_err);
    worst_shape = std::max(worst_shape, shape_err);
    base_shape = std::max(base_shape, neutral_err);
  }
  WARN("synthetic fit: worst pose error " << worst_pose << " deg, worst mean vertex error " << worst_shape
                                           << " mm (mean face: " << base_shape << " mm)");
}

TEST_CASE("fit refuses bad observations", "[fit]") {
  const auto* m = ict();
  if (!m) {
    WARN("skipped: ICT FaceKit test data not found");
    return;
  }
  const auto corr = hfr::morph::builtin_ict_correspondence(*m);
  hfr::fit::Observation obs;
  obs.width = 100;
  obs.height = 100;
  obs.points.assign(468, {50.0, 50.0, 0.0});
  CHECK_THROWS_AS(hfr::fit::fit(*m, corr, obs, {}), hfr::Error);  // all points in one place: no eye distance
  obs.points.assign(468, {50.0, 50.0, 0.0});
  obs.points[33] = {std::nan(""), 1.0, 0.0};
  CHECK_THROWS_AS(hfr::fit::fit(*m, corr, obs, {}), hfr::Error);
  obs.points.resize(10);
  CHECK_THROWS_AS(hfr::fit::fit(*m, corr, obs, {}), hfr::Error);
}
