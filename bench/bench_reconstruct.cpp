// hfr-reconstruct on synthetic ground truth: ICT FaceKit heads with sampled
// identities (N(0,1) over 60 modes), expressions and poses are rasterised
// (face_render) and reconstructed (detection, face mesh, fit, unwrap);
// pose, shape, albedo and landmark errors and the time per face are printed
// as a markdown table.
// Usage: bench_reconstruct ICT_DIR [FACES=40] [SEED=5] [TEXTURE=512] [IDENTITY_MODES=80] [SIGMA_REL=0.02] [DEPTH_WEIGHT=0.25]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <Eigen/Geometry>
#include <opencv2/imgproc.hpp>

#include "hfr/correspondence.hpp"
#include "hfr/face_render.hpp"
#include "hfr/reconstruct.hpp"
#include "hfr/tensor_torch.hpp"

namespace {
struct Stats {
  std::vector<double> v;
  void add(double x) { v.push_back(x); }
  double mean() const {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0 : s / static_cast<double>(v.size());
  }
  double q(double p) const {
    if (v.empty()) return 0;
    auto w = v;
    std::sort(w.begin(), w.end());
    return w[std::min(w.size() - 1, static_cast<std::size_t>(p * static_cast<double>(w.size())))];
  }
};
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_reconstruct ICT_DIR [FACES] [SEED] [TEXTURE]\n");
    return 2;
  }
  hfr::tune_allocator();
  hfr::set_torch_threads(1);
  const int faces = argc > 2 ? std::atoi(argv[2]) : 40;
  const unsigned seed = argc > 3 ? static_cast<unsigned>(std::atoi(argv[3])) : 5u;
  hfr::reconstruct::Options o;
  o.ict_dir = argv[1];
  o.model = hfr::reconstruct::ModelChoice::ict;
  if (argc > 4) o.texture_size = std::atoi(argv[4]);
  if (argc > 5) o.fit.identity_modes = std::atoi(argv[5]);
  if (argc > 6) o.fit.sigma_rel = std::atof(argv[6]);
  if (argc > 7) o.fit.depth_weight = std::atof(argv[7]);
  hfr::reconstruct::Reconstructor rec(o);
  const auto& m = rec.model();
  const auto corr = hfr::morph::builtin_ict_correspondence(m);
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0, 1);
  std::uniform_real_distribution<double> u(-1, 1);
  auto index_of = [&](const char* name) {
    for (std::size_t k = 0; k < m.expression_names.size(); ++k)
      if (m.expression_names[k] == name) return static_cast<int>(k);
    return -1;
  };
  const int jaw = index_of("jawOpen"), smile_l = index_of("mouthSmile_L"), smile_r = index_of("mouthSmile_R");
  const auto mean_face = hfr::morph::evaluate(m, Eigen::VectorXf::Zero(m.identity.cols()), Eigen::VectorXf::Zero(0));
  const std::int64_t nv = m.region("face_narrow") ? m.region("face_narrow")->v1 : 6706;
  Stats dyaw, dpitch, droll, pose, shape, base, albedo, lm, lm_rel, t_detect, t_fit, t_unwrap, t_total;
  int refused = 0, missed = 0;
  for (int i = 0; i < faces; ++i) {
    Eigen::VectorXf a = Eigen::VectorXf::Zero(m.identity.cols()), b = Eigen::VectorXf::Zero(m.expression.cols());
    for (int j = 0; j < 60; ++j) a[j] = n(rng);
    const float smile = 0.5f * static_cast<float>(u(rng) + 1) * 0.6f;
    if (jaw >= 0) b[jaw] = 0.15f * static_cast<float>(u(rng) + 1);
    if (smile_l >= 0) b[smile_l] = smile;
    if (smile_r >= 0) b[smile_r] = smile;
    const double yaw = 30 * u(rng), pitch = 15 * u(rng), roll = 10 * u(rng);
    const auto p = hfr::mesh::pose_from_angles(yaw, pitch, roll, {2 * u(rng), 2 * u(rng), 52 + 8 * u(rng)});
    hfr::face_render::Options ro;
    const auto scene = hfr::face_render::render(m, corr, a, b, p, ro);
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<hfr::reconstruct::FaceResult> got;
    try {
      got = rec.reconstruct(scene.photo);
    } catch (const std::exception& e) {
      ++missed;
      continue;
    }
    t_total.add(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    if (got.size() != 1 || !got[0].error.empty()) {
      ++refused;
      continue;
    }
    const auto& f = got[0];
    t_detect.add(f.detect_ms);
    t_fit.add(f.fit_ms);
    t_unwrap.add(f.unwrap_ms);
    const auto ypr = f.fit.yaw_pitch_roll;
    pose.add(std::max({std::abs(ypr[0] - yaw), std::abs(ypr[1] - pitch), std::abs(ypr[2] - roll)}));
    dyaw.add(ypr[0] - yaw);
    dpitch.add(ypr[1] - pitch);
    droll.add(ypr[2] - roll);
    auto pts = [&](const std::vector<float>& v) {
      Eigen::Matrix3Xd M(3, nv);
      for (std::int64_t k = 0; k < nv; ++k) M.col(k) = Eigen::Vector3d(v[3 * k], v[3 * k + 1], v[3 * k + 2]);
      return M;
    };
    const Eigen::Matrix3Xd truth = pts(scene.vertices);
    auto err = [&](const Eigen::Matrix3Xd& x) {
      const Eigen::Matrix4d T = Eigen::umeyama(x, truth, false);
      return 10 * ((T.topLeftCorner<3, 3>() * x).colwise() + T.topRightCorner<3, 1>() - truth).colwise().norm().mean();
    };
    shape.add(err(pts(f.vertices)));
    base.add(err(pts(mean_face)));
    // albedo over observed skin texels, up to one scale per channel
    const int S = f.maps.albedo.rows;
    cv::Mat truth_alb;
    cv::resize(scene.albedo, truth_alb, cv::Size(S, S), 0, 0, cv::INTER_AREA);
    std::vector<double> r[3];
    for (int y = 0; y < S; ++y)
      for (int x = 0; x < S; ++x)
        if (f.maps.source.at<std::uint8_t>(y, x) == hfr::reflect::observed) {
          const cv::Vec3f t = truth_alb.at<cv::Vec3f>(y, x), g = f.maps.albedo.at<cv::Vec3f>(y, x);
          if (t[0] < 0.4f) continue;
          for (int c = 0; c < 3; ++c) r[c].push_back(g[c] / t[c]);
        }
    double ae = 0;
    for (auto& rc : r) {
      if (rc.empty()) continue;
      std::nth_element(rc.begin(), rc.begin() + static_cast<long>(rc.size() / 2), rc.end());
      const double med = rc[rc.size() / 2];
      std::vector<double> d;
      for (double q : rc) d.push_back(std::abs(q / med - 1));
      std::nth_element(d.begin(), d.begin() + static_cast<long>(d.size() / 2), d.end());
      ae = std::max(ae, d[d.size() / 2]);
    }
    albedo.add(ae);
    const auto cam_truth = hfr::mesh::transform(p, scene.vertices);
    double e = 0;
    for (std::size_t k = 0; k < 468; ++k) {
      const auto q = hfr::morph::point_on(cam_truth, m.neutral, corr.points[k]);
      e += std::hypot(scene.camera.fx * q.x() / q.z() + scene.camera.cx - f.fit.projected[k][0],
                      scene.camera.fy * q.y() / q.z() + scene.camera.cy - f.fit.projected[k][1]);
    }
    lm.add(e / 468);
    lm_rel.add(e / 468 / f.fit.eye_distance_px);
  }
  std::printf("| quantity | mean | median | p90 |\n|---|---|---|---|\n");
  auto row = [](const char* name, const Stats& s, const char* fmt) {
    std::printf("| %s | ", name);
    std::printf(fmt, s.mean());
    std::printf(" | ");
    std::printf(fmt, s.q(0.5));
    std::printf(" | ");
    std::printf(fmt, s.q(0.9));
    std::printf(" |\n");
  };
  row("pose error, worst of yaw/pitch/roll (deg)", pose, "%.2f");
  row("yaw error, signed (deg)", dyaw, "%.2f");
  row("pitch error, signed (deg)", dpitch, "%.2f");
  row("roll error, signed (deg)", droll, "%.2f");
  row("shape: mean vertex error, face area, rigidly aligned (mm)", shape, "%.2f");
  row("shape of the mean face, same measure (mm)", base, "%.2f");
  row("albedo: median relative error (skin, per-channel scale)", albedo, "%.3f");
  row("landmarks: fitted vs true projection (px)", lm, "%.2f");
  row("landmarks / eye distance", lm_rel, "%.4f");
  row("detection + face mesh (ms)", t_detect, "%.1f");
  row("fit (ms)", t_fit, "%.1f");
  row("unwrap (ms)", t_unwrap, "%.1f");
  row("reconstruct() total per face (ms)", t_total, "%.1f");
  std::printf("\n%d faces rendered (640x480, fov 40 deg, yaw +-30, pitch +-15, roll +-10, seed %u); %d refused by the "
              "quality gates, %d without a detected face; one thread.\n",
              faces, seed, refused, missed);
  return 0;
}
