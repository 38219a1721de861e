#include "hfr/mesh.hpp"

#include <algorithm>
#include <cmath>

#include "hfr/error.hpp"

namespace hfr::mesh {

void TriMesh::validate(const std::string& what) const {
  if (positions.size() % 3) throw Error(what + ": positions size " + std::to_string(positions.size()) + " is not a multiple of 3");
  if (triangles.size() % 3) throw Error(what + ": triangles size " + std::to_string(triangles.size()) + " is not a multiple of 3");
  if (uvs.size() % 2) throw Error(what + ": uvs size " + std::to_string(uvs.size()) + " is not a multiple of 2");
  const std::int64_t nv = num_vertices();
  for (std::size_t i = 0; i < triangles.size(); ++i)
    if (triangles[i] < 0 || triangles[i] >= nv)
      throw Error(what + ": triangle " + std::to_string(i / 3) + " has vertex index " + std::to_string(triangles[i]) +
                  " outside [0, " + std::to_string(nv) + ")");
  if (uvs.empty() && !uv_triangles.empty()) throw Error(what + ": uv_triangles given without uvs");
  if (!uvs.empty() && uv_triangles.size() != triangles.size())
    throw Error(what + ": " + std::to_string(uv_triangles.size() / 3) + " uv triangles for " +
                std::to_string(triangles.size() / 3) + " triangles");
  const std::int64_t nuv = static_cast<std::int64_t>(uvs.size() / 2);
  for (std::size_t i = 0; i < uv_triangles.size(); ++i)
    if (uv_triangles[i] < 0 || uv_triangles[i] >= nuv)
      throw Error(what + ": uv triangle " + std::to_string(i / 3) + " has uv index " + std::to_string(uv_triangles[i]) +
                  " outside [0, " + std::to_string(nuv) + ")");
}

std::vector<float> vertex_normals(const std::vector<float>& positions, const std::vector<std::int32_t>& triangles) {
  const std::size_t nv = positions.size() / 3;
  std::vector<double> acc(nv * 3, 0.0);
  for (std::size_t t = 0; t + 2 < triangles.size(); t += 3) {
    const std::int32_t i0 = triangles[t], i1 = triangles[t + 1], i2 = triangles[t + 2];
    if (i0 < 0 || i1 < 0 || i2 < 0 || static_cast<std::size_t>(i0) >= nv || static_cast<std::size_t>(i1) >= nv ||
        static_cast<std::size_t>(i2) >= nv)
      continue;
    const float* a = &positions[3 * i0];
    const float* b = &positions[3 * i1];
    const float* c = &positions[3 * i2];
    const double e1[3] = {double(b[0]) - a[0], double(b[1]) - a[1], double(b[2]) - a[2]};
    const double e2[3] = {double(c[0]) - a[0], double(c[1]) - a[1], double(c[2]) - a[2]};
    // The cross product's length is twice the area: summing it weights by area.
    const double n[3] = {e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]};
    if (!std::isfinite(n[0]) || !std::isfinite(n[1]) || !std::isfinite(n[2])) continue;
    // written out (a loop over {i0, i1, i2} kept n in memory: a third of the time)
    double* p0 = &acc[3 * static_cast<std::size_t>(i0)];
    p0[0] += n[0], p0[1] += n[1], p0[2] += n[2];
    double* p1 = &acc[3 * static_cast<std::size_t>(i1)];
    p1[0] += n[0], p1[1] += n[1], p1[2] += n[2];
    double* p2 = &acc[3 * static_cast<std::size_t>(i2)];
    p2[0] += n[0], p2[1] += n[1], p2[2] += n[2];
  }
  std::vector<float> out(nv * 3, 0.0f);
  for (std::size_t v = 0; v < nv; ++v) {
    const double l = std::sqrt(acc[3 * v] * acc[3 * v] + acc[3 * v + 1] * acc[3 * v + 1] + acc[3 * v + 2] * acc[3 * v + 2]);
    if (l > 0 && std::isfinite(l))
      for (int k = 0; k < 3; ++k) out[3 * v + k] = static_cast<float>(acc[3 * v + k] / l);
  }
  return out;
}

std::vector<float> transform(const Pose& pose, const std::vector<float>& positions) {
  const auto& R = pose.R;
  const auto& t = pose.t;
  std::vector<float> out(positions.size() / 3 * 3);
  for (std::size_t i = 0; i + 2 < positions.size(); i += 3) {
    const double x = positions[i], y = positions[i + 1], z = positions[i + 2];
    for (int r = 0; r < 3; ++r) out[i + r] = static_cast<float>(R[3 * r] * x + R[3 * r + 1] * y + R[3 * r + 2] * z + t[r]);
  }
  return out;
}

// Angle convention. The frontal pose is F = diag(1, -1, -1) (model +y up ->
// camera -y, model +z towards the viewer -> camera -z). A pose's rotation is
// written R = F * H, where H is the head's own rotation in the model frame:
//   H = Ry(yaw) * Rx(-pitch) * Rz(roll)     (roll applied first, then pitch, then yaw)
// with the right-handed elementary rotations about the model axes. Hence:
//  - yaw > 0 rotates the face direction +z towards +x (the subject's left,
//    the viewer's right): the nose tip moves to the image's right;
//  - pitch > 0 rotates +z towards +y (up): the nose tip moves up in the image;
//  - roll > 0 rotates +y towards -x as the viewer sees it: the top of the
//    head moves to the image's left, i.e. counter-clockwise on screen.
// Pitch is limited to [-90, 90]; at +-90 (gimbal lock) roll is reported as 0.
namespace {
using M3 = std::array<double, 9>;
M3 mul(const M3& a, const M3& b) {
  M3 c{};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) c[3 * i + j] = a[3 * i] * b[j] + a[3 * i + 1] * b[3 + j] + a[3 * i + 2] * b[6 + j];
  return c;
}
constexpr double kDeg = 3.14159265358979323846 / 180.0;
}  // namespace

std::array<double, 3> yaw_pitch_roll(const Pose& pose) {
  // H = F^-1 R = F R (F is its own inverse): negate rows 1 and 2.
  M3 H = pose.R;
  for (int j = 0; j < 3; ++j) {
    H[3 + j] = -H[3 + j];
    H[6 + j] = -H[6 + j];
  }
  // H = Ry(a) Rx(b) Rz(c), b = -pitch:
  //   H[1][2] = -sin b, H[0][2] = sin a cos b, H[2][2] = cos a cos b,
  //   H[1][0] = cos b sin c, H[1][1] = cos b cos c.
  const double sb = std::max(-1.0, std::min(1.0, -H[5]));
  const double b = std::asin(sb);
  double a, c;
  if (std::abs(sb) < 1.0 - 1e-9) {
    a = std::atan2(H[2], H[8]);
    c = std::atan2(H[3], H[4]);
  } else {
    // cos b = 0: only a - c (sb = 1) or a + c (sb = -1) is defined; take c = 0.
    // Then H[0][0] = cos a and H[0][1] = sb * sin a.
    c = 0;
    a = std::atan2(sb * H[1], H[0]);
  }
  return {a / kDeg, -b / kDeg, c / kDeg};
}

Pose pose_from_angles(double yaw_deg, double pitch_deg, double roll_deg, std::array<double, 3> t) {
  const double a = yaw_deg * kDeg, b = -pitch_deg * kDeg, c = roll_deg * kDeg;
  const M3 Ry{std::cos(a), 0, std::sin(a), 0, 1, 0, -std::sin(a), 0, std::cos(a)};
  const M3 Rx{1, 0, 0, 0, std::cos(b), -std::sin(b), 0, std::sin(b), std::cos(b)};
  const M3 Rz{std::cos(c), -std::sin(c), 0, std::sin(c), std::cos(c), 0, 0, 0, 1};
  const M3 F{1, 0, 0, 0, -1, 0, 0, 0, -1};
  Pose p;
  p.R = mul(F, mul(Ry, mul(Rx, Rz)));
  p.t = t;
  return p;
}

}  // namespace hfr::mesh
