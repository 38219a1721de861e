#include "hfr/face_render.hpp"

#include <algorithm>
#include <cmath>

#include <opencv2/imgproc.hpp>

#include "hfr/error.hpp"
#include "hfr/reflectance.hpp"

namespace hfr::face_render {

std::array<std::array<double, 3>, 9> default_lighting() {
  std::array<std::array<double, 3>, 9> sh{};
  sh[0] = {0.95, 0.95, 0.95};  // ambient
  sh[1] = {-0.25, -0.25, -0.25};  // from above (sh_basis is in camera space: +y is down)
  sh[2] = {-0.35, -0.35, -0.35};  // from the camera (+z points away from it)
  sh[3] = {0.2, 0.2, 0.2};     // from the side
  return sh;
}

cv::Vec3f skin_albedo(float u, float v) {
  const float k = 1.0f + 0.12f * std::sin(18 * u) * std::sin(14 * v);
  return cv::Vec3f(0.46f, 0.31f, 0.24f) * k;
}


Scene render(const morph::MorphableModel& m, const morph::Correspondence& corr, const Eigen::VectorXf& identity,
             const Eigen::VectorXf& expression, const mesh::Pose& pose, const Options& o) {
  if (o.width < 16 || o.height < 16 || o.width > 8192 || o.height > 8192) throw Error("face_render: bad image size");
  Scene s;
  s.pose = pose;
  const double f = 0.5 * std::max(o.width, o.height) / std::tan(0.5 * o.fov_deg * M_PI / 180);
  s.camera = {f, f, 0.5 * o.width, 0.5 * o.height};
  s.vertices = morph::evaluate(m, identity, expression);
  const auto sh = [&] {
    for (const auto& k : o.sh)
      for (double v : k)
        if (v != 0) return o.sh;
    return default_lighting();
  }();

  // the face tile's albedo, lips and brows painted along the face-mesh contours
  const int S = o.texture_size;
  s.albedo.create(S, S, CV_32FC3);
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) s.albedo.at<cv::Vec3f>(y, x) = skin_albedo((x + 0.5f) / S, 1 - (y + 0.5f) / S);
  for (const auto& area : morph::face_mesh_areas()) {  // lips and brows painted along their contours
    const bool lips = area.name == "lips", brow = area.name.rfind("brow", 0) == 0;
    if ((!lips && !brow) || corr.points.size() != 468) continue;
    const cv::Vec3f col = lips ? cv::Vec3f(0.32f, 0.12f, 0.11f) : cv::Vec3f(0.06f, 0.045f, 0.04f);
    std::vector<cv::Point> poly;
    for (const auto& uv : morph::uv_polygon(m, corr, area.landmarks))
      poly.emplace_back(static_cast<int>(uv[0] * S), static_cast<int>((1 - uv[1]) * S));
    cv::fillPoly(s.albedo, std::vector<std::vector<cv::Point>>{poly}, cv::Scalar(col[0], col[1], col[2]));
  }

  const auto cam_pos = mesh::transform(pose, s.vertices);
  const auto normals = mesh::vertex_normals(cam_pos, m.neutral.triangles);
  std::vector<float> screen(cam_pos.size());
  for (std::size_t i = 0; i < cam_pos.size() / 3; ++i) {
    const float z = cam_pos[3 * i + 2];
    screen[3 * i] = static_cast<float>(f * cam_pos[3 * i] / z + s.camera.cx);
    screen[3 * i + 1] = static_cast<float>(f * cam_pos[3 * i + 1] / z + s.camera.cy);
    screen[3 * i + 2] = z;
  }
  const std::int64_t T = m.neutral.num_triangles();
  enum : std::uint8_t { none, face, eye, other };
  std::vector<std::uint8_t> kind(static_cast<std::size_t>(T), none), drawn(static_cast<std::size_t>(T), 0);
  for (const char* r : {"face", "head_neck", "eyeball_left", "eyeball_right"})
    if (const auto* g = m.region(r))
      for (std::int64_t t = g->t0; t < g->t1; ++t) {
        drawn[static_cast<std::size_t>(t)] = 1;
        kind[static_cast<std::size_t>(t)] = r[0] == 'f' ? face : r[0] == 'e' ? eye : other;
      }
  if (!m.region("face")) std::fill(drawn.begin(), drawn.end(), 1), std::fill(kind.begin(), kind.end(), face);
  // eyeball centres for the irises
  Eigen::Vector3f centre[2] = {Eigen::Vector3f::Zero(), Eigen::Vector3f::Zero()};
  int side = 0;
  for (const char* r : {"eyeball_left", "eyeball_right"}) {
    if (const auto* g = m.region(r)) {
      for (std::int64_t v = g->v0; v < g->v1; ++v) centre[side] += Eigen::Vector3f(s.vertices[3 * v], s.vertices[3 * v + 1], s.vertices[3 * v + 2]);
      centre[side] /= static_cast<float>(std::max<std::int64_t>(1, g->v1 - g->v0));
    }
    ++side;
  }
  s.buffers.reset(o.width, o.height);
  raster::rasterize(screen, m.neutral.triangles, s.buffers, true, &drawn);
  cv::Mat lin(o.height, o.width, CV_32FC3, cv::Scalar(o.background[0], o.background[1], o.background[2]));
  const auto& tri = m.neutral.triangles;
  const auto& utri = m.neutral.uv_triangles;
  for (int y = 0; y < o.height; ++y)
    for (int x = 0; x < o.width; ++x) {
      const std::size_t k = static_cast<std::size_t>(y) * o.width + x;
      const std::int32_t t = s.buffers.triangle[k];
      if (t < 0) continue;
      const float bw[3] = {1 - s.buffers.b1[k] - s.buffers.b2[k], s.buffers.b1[k], s.buffers.b2[k]};
      std::array<double, 3> n{0, 0, 0};
      float u = 0, v = 0;
      Eigen::Vector3f pm = Eigen::Vector3f::Zero();
      for (int j = 0; j < 3; ++j) {
        const auto vi = static_cast<std::size_t>(tri[3 * static_cast<std::size_t>(t) + j]);
        for (int c = 0; c < 3; ++c) n[c] += bw[j] * normals[3 * vi + c];
        if (!utri.empty()) {
          const auto ti = static_cast<std::size_t>(utri[3 * static_cast<std::size_t>(t) + j]);
          u += bw[j] * m.neutral.uvs[2 * ti];
          v += bw[j] * m.neutral.uvs[2 * ti + 1];
        }
        pm += bw[j] * Eigen::Vector3f(s.vertices[3 * vi], s.vertices[3 * vi + 1], s.vertices[3 * vi + 2]);
      }
      const double nl = std::sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]) + 1e-12;
      for (auto& c : n) c /= nl;
      cv::Vec3f alb;
      const std::uint8_t kd = kind[static_cast<std::size_t>(t)];
      if (kd == face) {
        const int tx = std::clamp(static_cast<int>(u * S), 0, S - 1), ty = std::clamp(static_cast<int>((1 - v) * S), 0, S - 1);
        alb = s.albedo.at<cv::Vec3f>(ty, tx);
      } else if (kd == eye) {
        const Eigen::Vector3f d = (pm - centre[pm.x() > 0 ? 0 : 1]).normalized();
        alb = d.z() > 0.93f ? cv::Vec3f(0.05f, 0.035f, 0.025f) : cv::Vec3f(0.7f, 0.68f, 0.65f);
      } else {
        alb = skin_albedo(0.5f, 0.5f);
      }
      const auto basis = reflect::sh_basis(n);
      cv::Vec3f& out = lin.at<cv::Vec3f>(y, x);
      for (int c = 0; c < 3; ++c) {
        double shade = 0;
        for (int b = 0; b < 9; ++b) shade += sh[b][c] * basis[b];
        out[c] = static_cast<float>(alb[c] * std::max(shade, 0.0));
      }
    }
  cv::Mat srgb = reflect::linear_to_srgb(cv::min(lin, 1.0));
  srgb.convertTo(s.photo, CV_8UC3, 255.0);
  return s;
}

}  // namespace hfr::face_render
