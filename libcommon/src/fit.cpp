#include "hfr/fit.hpp"

#include <algorithm>
#include <limits>
#include <cmath>

#include <Eigen/Dense>
#include <opencv2/calib3d.hpp>

#include "hfr/error.hpp"
#include "hfr/face.hpp"

namespace hfr::fit {
namespace {

bool fitted_expression(const std::string& name) {
  return name.rfind("eyeLook", 0) != 0 && name.rfind("PupilDilate", 0) != 0;
}

// The distance between the eye centres (the means of the eye contours, as hfr-embed's five points).
double eye_distance(const Observation& obs) {
  std::vector<cv::Point3d> mesh;
  mesh.reserve(obs.points.size());
  for (const auto& p : obs.points) mesh.emplace_back(p[0], p[1], p[2]);
  const face::Points5 five = face::five_points_from_mesh(mesh);
  return cv::norm(five[0] - five[1]);
}

Eigen::Matrix3d rot(const mesh::Pose& p) {
  Eigen::Matrix3d R;
  for (int i = 0; i < 9; ++i) R(i / 3, i % 3) = p.R[i];
  return R;
}

void solve_pnp(const std::vector<cv::Point3d>& obj, const std::vector<cv::Point2d>& img, const mesh::Pinhole& cam,
               mesh::Pose& pose, bool guess) {
  cv::Matx33d K(cam.fx, 0, cam.cx, 0, cam.fy, cam.cy, 0, 0, 1);
  cv::Vec3d rvec, tvec;
  if (guess) {
    cv::Matx33d R;
    for (int i = 0; i < 9; ++i) R.val[i] = pose.R[i];
    cv::Rodrigues(R, rvec);
    tvec = {pose.t[0], pose.t[1], pose.t[2]};
  }
  bool ok = guess ? cv::solvePnP(obj, img, K, cv::noArray(), rvec, tvec, true, cv::SOLVEPNP_ITERATIVE)
                  : cv::solvePnP(obj, img, K, cv::noArray(), rvec, tvec, false, cv::SOLVEPNP_SQPNP);
  if (!guess && ok) ok = cv::solvePnP(obj, img, K, cv::noArray(), rvec, tvec, true, cv::SOLVEPNP_ITERATIVE);
  if (!ok || !std::isfinite(tvec[2])) throw Error("pose: PnP found no solution");
  cv::Matx33d R;
  cv::Rodrigues(rvec, R);
  for (int i = 0; i < 9; ++i) pose.R[i] = R.val[i];
  pose.t = {tvec[0], tvec[1], tvec[2]};
}

}  // namespace

mesh::Pinhole camera_for(int width, int height, const Options& o) {
  mesh::Pinhole c;
  double f = o.focal_px;
  if (!(f > 0)) {
    if (!(o.fov_deg > 1 && o.fov_deg < 179)) throw UsageError("field of view must be between 1 and 179 degrees");
    f = 0.5 * std::max(width, height) / std::tan(0.5 * o.fov_deg * M_PI / 180);
  }
  c.fx = c.fy = f;
  c.cx = 0.5 * width;
  c.cy = 0.5 * height;
  return c;
}

std::vector<double> landmark_weights(const Options& o) {
  std::vector<double> w(468, 1.0);
  for (int i : face::mesh_face_oval()) w[static_cast<std::size_t>(i)] = o.contour_weight;
  return w;
}

Result fit(const morph::MorphableModel& model, const morph::Correspondence& corr, const Observation& obs,
           const Options& o) {
  const int N = 468;
  if (obs.points.size() != static_cast<std::size_t>(N)) throw Error("fit: expected 468 landmarks");
  if (corr.points.size() != static_cast<std::size_t>(N)) throw Error("fit: the correspondence has no 468 points");
  for (const auto& p : obs.points)
    if (!std::isfinite(p[0]) || !std::isfinite(p[1]) || !std::isfinite(p[2])) throw Error("fit: non-finite landmark");
  Result res;
  res.camera = camera_for(obs.width, obs.height, o);
  const mesh::Pinhole& cam = res.camera;
  const double f = cam.fx;
  res.eye_distance_px = eye_distance(obs);
  if (!(res.eye_distance_px > 1)) throw Error("fit: the eyes are less than a pixel apart");
  const double sigma = o.sigma_rel * res.eye_distance_px;
  const std::vector<double> base_w = landmark_weights(o);
  std::vector<double> w = base_w;
  // a calibrated correspondence knows how consistently the network places
  // each landmark on the surface: a point whose samples spread by s counts
  // 1 / (1 + (s / s0)^2) as much (s0: the median spread)
  if (corr.spread_cm.size() == static_cast<std::size_t>(N) && o.spread_weighting) {
    std::vector<float> sp(corr.spread_cm);
    std::nth_element(sp.begin(), sp.begin() + N / 2, sp.end());
    const double s0 = std::max(1e-3f, sp[N / 2]);
    for (int i = 0; i < N; ++i) w[i] /= 1 + std::pow(corr.spread_cm[static_cast<std::size_t>(i)] / s0, 2);
  }

  // basis at the landmarks: m_i (3) and B_i (3 x P), P = K + E_fit
  const int K = std::clamp(o.identity_modes, 0, static_cast<int>(model.identity.cols()));
  std::vector<int> ecols;
  if (o.expressions)
    for (int e = 0; e < model.expression.cols(); ++e)
      if (fitted_expression(e < static_cast<int>(model.expression_names.size()) ? model.expression_names[e] : ""))
        ecols.push_back(e);
  const int E = static_cast<int>(ecols.size()), P = K + E;
  Eigen::MatrixXd m0(3, N), B(3 * N, P);
  const auto& tri = model.neutral.triangles;
  const auto& pos = model.neutral.positions;
  const std::int64_t T = model.neutral.num_triangles();
  for (int i = 0; i < N; ++i) {
    const auto& sp = corr.points[i];
    if (sp.triangle < 0 || sp.triangle >= T) throw Error("fit: correspondence triangle out of range");
    const float bw[3] = {sp.b0, sp.b1, sp.b2};
    Eigen::Vector3d m = Eigen::Vector3d::Zero();
    Eigen::MatrixXd b = Eigen::MatrixXd::Zero(3, P);
    for (int k = 0; k < 3; ++k) {
      const std::int64_t v = tri[3 * sp.triangle + k];
      m += bw[k] * Eigen::Vector3d(pos[3 * v], pos[3 * v + 1], pos[3 * v + 2]);
      for (int c = 0; c < 3; ++c) {
        for (int j = 0; j < K; ++j) b(c, j) += bw[k] * model.identity(3 * v + c, j);
        for (int j = 0; j < E; ++j) b(c, K + j) += bw[k] * model.expression(3 * v + c, ecols[j]);
      }
    }
    m0.col(i) = m;
    B.block(3 * i, 0, 3, P) = b;
  }

  Eigen::VectorXd coef = Eigen::VectorXd::Zero(P);
  auto shape = [&](int i) -> Eigen::Vector3d {
    return P ? Eigen::Vector3d(m0.col(i) + B.block(3 * i, 0, 3, P) * coef) : Eigen::Vector3d(m0.col(i));
  };
  auto pnp = [&](bool guess) {
    std::vector<cv::Point3d> obj;
    std::vector<cv::Point2d> img;
    for (int i = 0; i < N; ++i) {
      if (base_w[i] < 0.99) continue;  // PnP start: no face-oval points
      Eigen::Vector3d x = shape(i);
      obj.emplace_back(x[0], x[1], x[2]);
      img.emplace_back(obs.points[i][0], obs.points[i][1]);
    }
    solve_pnp(obj, img, cam, res.pose, guess);
  };
  pnp(false);

  Eigen::VectorXd prior(P);
  for (int j = 0; j < P; ++j) prior[j] = j < K ? 1.0 : o.expression_prior;
  double zbar = 0;
  for (int i = 0; i < N; ++i) zbar += obs.points[i][2];
  zbar /= N;
  const bool use_depth = o.depth_weight > 0;

  // Joint Levenberg-Marquardt over x = [rotation increment (3), translation
  // (3), coefficients (P)]; rotation updates R <- exp([w]x) R. The expression
  // bounds are kept by an active set inside each step.
  const int D = 6 + P;
  const int rows = 2 * N + (use_depth ? N : 0);
  Eigen::MatrixXd J(rows, D);
  Eigen::VectorXd r(rows);
  auto residuals = [&](const mesh::Pose& pose, const Eigen::VectorXd& c, Eigen::MatrixXd* jac) {
    const Eigen::Matrix3d R = rot(pose);
    const Eigen::Vector3d t(pose.t[0], pose.t[1], pose.t[2]);
    std::vector<Eigen::Vector3d> X(N), Q(N);
    double dbar = 0;
    for (int i = 0; i < N; ++i) {
      X[i] = P ? Eigen::Vector3d(m0.col(i) + B.block(3 * i, 0, 3, P) * c) : Eigen::Vector3d(m0.col(i));
      Q[i] = R * X[i] + t;
      if (!(Q[i].z() > 1e-6)) return std::numeric_limits<double>::infinity();
      dbar += Q[i].z();
    }
    dbar /= N;
    double qz = 0;
    for (int i = 0; i < N; ++i) qz += Q[i].z();
    qz /= N;
    Eigen::RowVectorXd mean_dz = Eigen::RowVectorXd::Zero(D);
    Eigen::MatrixXd dQ(3, D);
    for (int i = 0; i < N; ++i) {
      const double sw = std::sqrt(w[i]) / sigma, z = Q[i].z();
      r[2 * i] = (f * Q[i].x() / z + cam.cx - obs.points[i][0]) * sw;
      r[2 * i + 1] = (cam.fy * Q[i].y() / z + cam.cy - obs.points[i][1]) * sw;
      if (use_depth) r[2 * N + i] = ((f / dbar) * (Q[i].z() - qz) - (obs.points[i][2] - zbar)) * std::sqrt(o.depth_weight * w[i]) / sigma;
      if (!jac) continue;
      const Eigen::Vector3d RX = Q[i] - t;
      // dQ/dw = -[RX]x, dQ/dt = I, dQ/dc = R B_i
      dQ.setZero();
      dQ(0, 1) = RX.z(), dQ(0, 2) = -RX.y();
      dQ(1, 0) = -RX.z(), dQ(1, 2) = RX.x();
      dQ(2, 0) = RX.y(), dQ(2, 1) = -RX.x();
      dQ.block(0, 3, 3, 3).setIdentity();
      if (P) dQ.block(0, 6, 3, P) = R * B.block(3 * i, 0, 3, P);
      J.row(2 * i) = (f / z * dQ.row(0) - f * Q[i].x() / (z * z) * dQ.row(2)) * sw;
      J.row(2 * i + 1) = (cam.fy / z * dQ.row(1) - cam.fy * Q[i].y() / (z * z) * dQ.row(2)) * sw;
      if (use_depth) {
        J.row(2 * N + i) = dQ.row(2) * ((f / dbar) * std::sqrt(o.depth_weight * w[i]) / sigma);
        mean_dz += dQ.row(2) / N;
      }
    }
    // depth rows: f (Qz_i - m) / m with m the mean depth, so
    // d/dx = f/m (dQz_i - dm) - f (Qz_i - m) / m^2 dm
    if (jac && use_depth)
      for (int i = 0; i < N; ++i) {
        const double si = std::sqrt(o.depth_weight * w[i]) / sigma;
        J.row(2 * N + i) -= mean_dz * (si * f / dbar * (1 + (Q[i].z() - dbar) / dbar));
      }
    double e = r.squaredNorm();
    for (int j = 0; j < P; ++j) e += prior[j] * c[j] * c[j];
    return e;
  };
  auto apply_pose = [](const mesh::Pose& p, const Eigen::Vector3d& dw, const Eigen::Vector3d& dt) {
    mesh::Pose q = p;
    const double th = dw.norm();
    Eigen::Matrix3d dR = Eigen::Matrix3d::Identity();
    if (th > 0) dR = Eigen::AngleAxisd(th, dw / th).toRotationMatrix();
    const Eigen::Matrix3d R = dR * rot(p);
    for (int i = 0; i < 9; ++i) q.R[i] = R(i / 3, i % 3);
    for (int i = 0; i < 3; ++i) q.t[i] = p.t[i] + dt[i];
    return q;
  };

  double cost = residuals(res.pose, coef, &J);
  double mu = 1e-3;
  for (int it = 0; it < o.iterations; ++it) {
    Eigen::MatrixXd H = Eigen::MatrixXd::Zero(D, D);
    H.selfadjointView<Eigen::Lower>().rankUpdate(J.transpose());  // J^T J, half the work
    H.triangularView<Eigen::StrictlyUpper>() = H.transpose();
    Eigen::VectorXd g = J.transpose() * r;
    for (int j = 0; j < P; ++j) {
      H(6 + j, 6 + j) += prior[j];
      g[6 + j] += prior[j] * coef[j];
    }
    bool improved = false;
    for (int tries = 0; tries < 8 && !improved; ++tries) {
      Eigen::MatrixXd Hd = H;
      Hd.diagonal() += mu * H.diagonal().cwiseMax(1e-9);
      // step with the expression bounds: an expression leaving [0, 1] is pinned at the bound
      std::vector<int> fixed(D, 0);
      Eigen::VectorXd dx = Eigen::VectorXd::Zero(D);
      for (int round = 0; round < 6; ++round) {
        std::vector<int> fr;
        Eigen::VectorXd pinned = Eigen::VectorXd::Zero(D);
        for (int j = 0; j < D; ++j) {
          if (fixed[j] == 1) pinned[j] = -coef[j - 6];
          if (fixed[j] == 2) pinned[j] = 1 - coef[j - 6];
          if (!fixed[j]) fr.push_back(j);
        }
        const int F = static_cast<int>(fr.size());
        Eigen::MatrixXd Hf(F, F);
        Eigen::VectorXd gf(F);
        const Eigen::VectorXd Hp = Hd * pinned;
        for (int a2 = 0; a2 < F; ++a2) {
          gf[a2] = -g[fr[a2]] - Hp[fr[a2]];
          for (int b2 = 0; b2 < F; ++b2) Hf(a2, b2) = Hd(fr[a2], fr[b2]);
        }
        const Eigen::VectorXd xf = Hf.ldlt().solve(gf);
        dx = pinned;
        for (int a2 = 0; a2 < F; ++a2) dx[fr[a2]] = xf[a2];
        bool changed = false;
        for (int j = 6 + K; j < D; ++j) {
          if (fixed[j]) continue;
          const double v = coef[j - 6] + dx[j];
          if (v < 0) fixed[j] = 1, changed = true;
          else if (v > 1) fixed[j] = 2, changed = true;
        }
        if (!changed) break;
      }
      if (!dx.allFinite()) break;
      const mesh::Pose np = apply_pose(res.pose, dx.head<3>(), dx.segment<3>(3));
      Eigen::VectorXd nc = coef + dx.tail(P);
      for (int j = K; j < P; ++j) nc[j] = std::clamp(nc[j], 0.0, 1.0);
      const double nc_cost = residuals(np, nc, nullptr);
      if (nc_cost < cost) {
        res.pose = np;
        coef = nc;
        const double prev = cost;
        cost = residuals(res.pose, coef, &J);
        mu = std::max(mu * 0.3, 1e-7);
        improved = true;
        if (prev - cost < 1e-6 * prev) it = o.iterations;  // converged
      } else {
        mu *= 10;
      }
    }
    if (!improved) break;
  }
  if (!coef.allFinite()) throw Error("fit: the shape solve diverged");

  // final residuals
  const Eigen::Matrix3d R = rot(res.pose);
  const Eigen::Vector3d t(res.pose.t[0], res.pose.t[1], res.pose.t[2]);
  res.projected.resize(N);
  res.model_points.resize(N);
  res.residual_px.resize(N);
  double se = 0, sw = 0;
  for (int i = 0; i < N; ++i) {
    const Eigen::Vector3d x = shape(i);
    res.model_points[i] = {x[0], x[1], x[2]};
    Eigen::Vector3d q = R * x + t;
    const double z = std::max(q.z(), 1e-9);
    res.projected[i] = {f * q.x() / z + cam.cx, cam.fy * q.y() / z + cam.cy};
    const double e = std::hypot(res.projected[i][0] - obs.points[i][0], res.projected[i][1] - obs.points[i][1]);
    res.residual_px[i] = e;
    se += w[i] * e * e;
    sw += w[i];
  }
  res.rms_px = std::sqrt(se / sw);
  res.weights = w;
  res.rms_rel = res.rms_px / res.eye_distance_px;
  res.identity = Eigen::VectorXf::Zero(model.identity.cols());
  res.expression = Eigen::VectorXf::Zero(model.expression.cols());
  for (int j = 0; j < K; ++j) res.identity[j] = static_cast<float>(coef[j]);
  for (int j = 0; j < E; ++j) res.expression[ecols[j]] = static_cast<float>(coef[K + j]);
  res.yaw_pitch_roll = mesh::yaw_pitch_roll(res.pose);
  return res;
}

std::vector<float> facemesh_vertices(const Observation& obs, const Result& r) {
  const int N = static_cast<int>(obs.points.size());
  const Eigen::Matrix3d R = rot(r.pose);
  const Eigen::Vector3d t(r.pose.t[0], r.pose.t[1], r.pose.t[2]);
  const mesh::Pinhole& c = r.camera;
  // the fitted points' mean depth sets the scale of the predicted relative depths
  double zbar = 0;
  for (const auto& p : obs.points) zbar += p[2];
  zbar /= N;
  double dbar = 0;
  for (const auto& x : r.model_points) dbar += (R * Eigen::Vector3d(x[0], x[1], x[2]) + t).z();
  dbar /= std::max<std::size_t>(1, r.model_points.size());
  std::vector<float> out(3 * N);
  for (int i = 0; i < N; ++i) {
    const double d = dbar + (obs.points[i][2] - zbar) * dbar / c.fx;
    Eigen::Vector3d xc((obs.points[i][0] - c.cx) * d / c.fx, (obs.points[i][1] - c.cy) * d / c.fy, d);
    Eigen::Vector3d xm = R.transpose() * (xc - t);
    for (int k = 0; k < 3; ++k) out[3 * i + k] = static_cast<float>(xm[k]);
  }
  return out;
}

}  // namespace hfr::fit
