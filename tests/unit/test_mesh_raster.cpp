#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <random>

#include <catch2/catch.hpp>

#include "hfr/error.hpp"
#include "hfr/mesh.hpp"
#include "hfr/raster.hpp"

using hfr::mesh::Pose;
using hfr::mesh::TriMesh;
namespace raster = hfr::raster;

namespace {

constexpr double kPi = 3.14159265358979323846;

// A UV sphere, triangles wound counter-clockwise seen from outside.
TriMesh uv_sphere(int rings, int segments, float radius) {
  TriMesh m;
  for (int r = 0; r <= rings; ++r) {
    const double th = kPi * r / rings;  // 0 at the north pole (+y)
    for (int s = 0; s < segments; ++s) {
      const double ph = 2 * kPi * s / segments;
      m.positions.push_back(static_cast<float>(radius * std::sin(th) * std::sin(ph)));
      m.positions.push_back(static_cast<float>(radius * std::cos(th)));
      m.positions.push_back(static_cast<float>(radius * std::sin(th) * std::cos(ph)));
    }
  }
  auto id = [&](int r, int s) { return r * segments + (s % segments); };
  for (int r = 0; r < rings; ++r)
    for (int s = 0; s < segments; ++s) {
      // Seen from outside at phi = 0 (+z), +phi goes towards +x (right), +r goes down.
      const int a = id(r, s), b = id(r, s + 1), c = id(r + 1, s), d = id(r + 1, s + 1);
      if (r == 0)
        m.triangles.insert(m.triangles.end(), {a, c, d});  // a is the north pole
      else
        m.triangles.insert(m.triangles.end(), {a, c, b});  // at r = rings - 1, c is the south pole
      if (r > 0 && r < rings - 1) m.triangles.insert(m.triangles.end(), {b, c, d});
    }
  return m;
}

std::array<double, 3> apply(const Pose& p, std::array<double, 3> x) {
  std::array<double, 3> y{};
  for (int r = 0; r < 3; ++r) y[r] = p.R[3 * r] * x[0] + p.R[3 * r + 1] * x[1] + p.R[3 * r + 2] * x[2] + p.t[r];
  return y;
}

std::array<double, 2> project(const Pose& p, std::array<double, 3> x, double f = 500, double c = 250) {
  const auto y = apply(p, x);
  return {f * y[0] / y[2] + c, f * y[1] / y[2] + c};
}

// Number of pixels a single triangle covers, accumulated into `count`.
void add_coverage(const std::vector<float>& screen, std::array<std::int32_t, 3> tri, int W, int H,
                  std::vector<int>& count) {
  raster::Buffers b;
  b.reset(W, H);
  raster::rasterize(screen, {tri[0], tri[1], tri[2]}, b, false);
  for (std::size_t i = 0; i < count.size(); ++i)
    if (b.triangle[i] == 0) ++count[i];
}

}  // namespace

TEST_CASE("mesh validate", "[mesh]") {
  TriMesh m;
  m.positions = {0, 0, 0, 1, 0, 0, 0, 1, 0};
  m.triangles = {0, 1, 2};
  REQUIRE_NOTHROW(m.validate("tri"));
  m.uvs = {0, 0, 1, 0, 0, 1};
  REQUIRE_THROWS_AS(m.validate("tri"), hfr::Error);  // uvs without uv triangles
  m.uv_triangles = {0, 1, 2};
  REQUIRE_NOTHROW(m.validate("tri"));
  m.uv_triangles = {0, 1, 3};
  REQUIRE_THROWS_WITH(m.validate("tri"), Catch::Contains("tri") && Catch::Contains("uv index 3"));
  m.uv_triangles = {0, 1, 2};
  m.triangles = {0, 1, -1};
  REQUIRE_THROWS_AS(m.validate("tri"), hfr::Error);
  m.triangles = {0, 1, 2, 0};
  REQUIRE_THROWS_AS(m.validate("tri"), hfr::Error);
  m.triangles = {0, 1, 2};
  m.positions.push_back(1);
  REQUIRE_THROWS_AS(m.validate("tri"), hfr::Error);
}

TEST_CASE("vertex normals", "[mesh]") {
  SECTION("counter-clockwise triangle in the xy plane faces +z") {
    const auto n = hfr::mesh::vertex_normals({0, 0, 0, 1, 0, 0, 0, 1, 0, 5, 5, 5}, {0, 1, 2});
    REQUIRE(n.size() == 12);
    for (int v = 0; v < 3; ++v) {
      CHECK(n[3 * v] == Approx(0).margin(1e-7));
      CHECK(n[3 * v + 1] == Approx(0).margin(1e-7));
      CHECK(n[3 * v + 2] == Approx(1));
    }
    CHECK(n[9] == 0);  // unused vertex
    CHECK(n[10] == 0);
    CHECK(n[11] == 0);
  }
  SECTION("area weighted") {
    // Vertex 0 is shared by a big triangle facing +z (area 50) and a small one facing +x (area 0.5).
    const auto n = hfr::mesh::vertex_normals({0, 0, 0, 10, 0, 0, 0, 10, 0, 0, 1, 0, 0, 0, 1}, {0, 1, 2, 0, 3, 4});
    const double expect_z = 50 / std::sqrt(50.0 * 50 + 0.5 * 0.5);
    CHECK(n[2] == Approx(expect_z).epsilon(1e-6));
    CHECK(n[0] == Approx(0.5 / std::sqrt(50.0 * 50 + 0.5 * 0.5)).epsilon(1e-5));
  }
  SECTION("sphere normals point outward") {
    const TriMesh s = uv_sphere(24, 32, 3.0f);
    REQUIRE_NOTHROW(s.validate("sphere"));
    const auto n = hfr::mesh::vertex_normals(s.positions, s.triangles);
    // Poles are duplicated per segment: those vertices are used too (ring 0 by a-c-b triangles).
    double worst = 1;
    for (std::int64_t v = 0; v < s.num_vertices(); ++v) {
      const float* p = &s.positions[3 * v];
      const float* q = &n[3 * v];
      const double pl = std::sqrt(p[0] * p[0] + p[1] * p[1] + p[2] * p[2]);
      const double ql = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2]);
      REQUIRE(ql == Approx(1).epsilon(1e-5));
      worst = std::min(worst, (p[0] * q[0] + p[1] * q[1] + p[2] * q[2]) / pl);
    }
    CHECK(worst > 0.97);
  }
}

TEST_CASE("transform", "[mesh]") {
  Pose p = hfr::mesh::pose_from_angles(20, -10, 5, {1, 2, 30});
  const std::vector<float> x = {1, 2, 3, -4, 0.5f, 7};
  const auto y = hfr::mesh::transform(p, x);
  REQUIRE(y.size() == 6);
  for (int i = 0; i < 2; ++i) {
    const auto e = apply(p, {x[3 * i], x[3 * i + 1], x[3 * i + 2]});
    for (int k = 0; k < 3; ++k) CHECK(y[3 * i + k] == Approx(e[k]).epsilon(1e-6));
  }
  // Frontal: model (1, 2, 3) -> camera (1, -2, -3) + t.
  const auto f = hfr::mesh::transform(hfr::mesh::pose_from_angles(0, 0, 0, {0, 0, 50}), {1, 2, 3});
  CHECK(f[0] == Approx(1));
  CHECK(f[1] == Approx(-2));
  CHECK(f[2] == Approx(47));
}

TEST_CASE("pose angles: frontal and round trip", "[mesh]") {
  const Pose f = hfr::mesh::pose_from_angles(0, 0, 0, {0, 0, 50});
  const std::array<double, 9> F{1, 0, 0, 0, -1, 0, 0, 0, -1};
  for (int k = 0; k < 9; ++k) CHECK(f.R[k] == Approx(F[k]).margin(1e-15));
  const auto a0 = hfr::mesh::yaw_pitch_roll(f);
  for (double v : a0) CHECK(v == Approx(0).margin(1e-12));

  for (double yaw = -85; yaw <= 85; yaw += 17)
    for (double pitch = -80; pitch <= 80; pitch += 16)
      for (double roll = -170; roll <= 170; roll += 34) {
        const Pose p = hfr::mesh::pose_from_angles(yaw, pitch, roll, {0, 0, 40});
        // Orthonormal, det +1.
        const auto& R = p.R;
        const double det = R[0] * (R[4] * R[8] - R[5] * R[7]) - R[1] * (R[3] * R[8] - R[5] * R[6]) +
                           R[2] * (R[3] * R[7] - R[4] * R[6]);
        REQUIRE(det == Approx(1).epsilon(1e-12));
        const auto a = hfr::mesh::yaw_pitch_roll(p);
        INFO(yaw << " " << pitch << " " << roll << " -> " << a[0] << " " << a[1] << " " << a[2]);
        REQUIRE(a[0] == Approx(yaw).margin(1e-9));
        REQUIRE(a[1] == Approx(pitch).margin(1e-9));
        REQUIRE(a[2] == Approx(roll).margin(1e-9));
      }
  // Gimbal lock: pitch 90 still reproduces the rotation.
  const Pose g = hfr::mesh::pose_from_angles(30, 90, 0, {0, 0, 40});
  const auto ga = hfr::mesh::yaw_pitch_roll(g);
  CHECK(ga[1] == Approx(90).margin(1e-6));
  const Pose g2 = hfr::mesh::pose_from_angles(ga[0], ga[1], ga[2], {0, 0, 40});
  for (int k = 0; k < 9; ++k) CHECK(g2.R[k] == Approx(g.R[k]).margin(1e-6));
}

TEST_CASE("pose angles: sign conventions in the image", "[mesh]") {
  const std::array<double, 3> centre{0, 0, 0}, nose{0, 0, 10}, top{0, 10, 0};
  SECTION("yaw + turns the face to the image's right, nose nearer the camera") {
    const Pose p = hfr::mesh::pose_from_angles(30, 0, 0, {0, 0, 50});
    const auto c = project(p, centre), n = project(p, nose);
    CHECK(n[0] > c[0] + 10);
    CHECK(n[1] == Approx(c[1]).margin(1e-9));
    CHECK(apply(p, nose)[2] < apply(p, centre)[2]);
  }
  SECTION("pitch + looks up") {
    const Pose p = hfr::mesh::pose_from_angles(0, 20, 0, {0, 0, 50});
    const auto c = project(p, centre), n = project(p, nose);
    CHECK(n[1] < c[1] - 10);  // image y grows downwards
    CHECK(n[0] == Approx(c[0]).margin(1e-9));
  }
  SECTION("roll + rotates the head counter-clockwise on screen") {
    const Pose p = hfr::mesh::pose_from_angles(0, 0, 20, {0, 0, 50});
    const auto c = project(p, centre), t = project(p, top);
    CHECK(t[1] < c[1]);       // the top of the head is still up
    CHECK(t[0] < c[0] - 10);  // and has moved to the left
    // Screen angle of the head's up vector: atan2(-dy, dx) goes from 90 to 110 degrees.
    const double ang = std::atan2(-(t[1] - c[1]), t[0] - c[0]) * 180 / kPi;
    CHECK(ang == Approx(110).margin(1e-6));
  }
  SECTION("yaw from a camera-space rotation") {
    // Rotating the frontal head about the camera's -y axis (up in the image)
    // by +25 degrees moves its nose to the image's right: that is yaw +25.
    const double a = 25 * kPi / 180;
    // Rotation about camera axis u = (0,-1,0) by a: x' = x cos a - z sin a, z' = x sin a + z cos a.
    const std::array<double, 9> Q{std::cos(a), 0, -std::sin(a), 0, 1, 0, std::sin(a), 0, std::cos(a)};
    const std::array<double, 9> F{1, 0, 0, 0, -1, 0, 0, 0, -1};
    Pose p;
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) p.R[3 * i + j] = Q[3 * i] * F[j] + Q[3 * i + 1] * F[3 + j] + Q[3 * i + 2] * F[6 + j];
    p.t = {0, 0, 50};
    CHECK(project(p, nose)[0] > project(p, centre)[0]);
    const auto ypr = hfr::mesh::yaw_pitch_roll(p);
    CHECK(ypr[0] == Approx(25).margin(1e-9));
    CHECK(ypr[1] == Approx(0).margin(1e-9));
    CHECK(ypr[2] == Approx(0).margin(1e-9));
  }
}

TEST_CASE("raster: square of two triangles, top-left rule", "[raster]") {
  const int W = 10, H = 10;
  SECTION("edges between pixel centres") {
    const std::vector<float> s = {2, 2, 1, 6, 2, 1, 6, 6, 1, 2, 6, 1};
    std::vector<int> count(W * H, 0);
    add_coverage(s, {0, 1, 2}, W, H, count);
    add_coverage(s, {0, 2, 3}, W, H, count);
    int total = 0;
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        const int expect = (x >= 2 && x < 6 && y >= 2 && y < 6) ? 1 : 0;
        REQUIRE(count[y * W + x] == expect);
        total += count[y * W + x];
      }
    CHECK(total == 16);
  }
  SECTION("edges through pixel centres: left and top edges are in, right and bottom out") {
    // Corners at pixel centres (2.5, 2.5) .. (6.5, 6.5); the diagonal passes through centres too.
    const std::vector<float> s = {2.5f, 2.5f, 1, 6.5f, 2.5f, 1, 6.5f, 6.5f, 1, 2.5f, 6.5f, 1};
    for (int wind = 0; wind < 2; ++wind) {
      std::vector<int> count(W * H, 0);
      if (wind == 0) {
        add_coverage(s, {0, 1, 2}, W, H, count);
        add_coverage(s, {0, 2, 3}, W, H, count);
      } else {  // the other winding, and the other diagonal
        add_coverage(s, {1, 0, 3}, W, H, count);
        add_coverage(s, {1, 3, 2}, W, H, count);
      }
      for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) {
          const int expect = (x >= 2 && x < 6 && y >= 2 && y < 6) ? 1 : 0;
          INFO("winding " << wind << " pixel " << x << "," << y);
          REQUIRE(count[y * W + x] == expect);
        }
    }
  }
  SECTION("barycentrics and buffers") {
    raster::Buffers b;
    b.reset(W, H);
    const std::vector<float> s = {2, 2, 3, 6, 2, 5, 6, 6, 7, 2, 6, 1};
    raster::rasterize(s, {0, 1, 2, 0, 2, 3}, b, false);
    // Pixel (5, 3): centre (5.5, 3.5) is in triangle 0 (below the diagonal y = x... in screen terms x > y).
    const int i = 3 * W + 5;
    REQUIRE(b.triangle[i] == 0);
    // Affine: p = b0 v0 + b1 v1 + b2 v2 with v0 (2,2), v1 (6,2), v2 (6,6): b2 = 1.5/4, b1 = (3.5-1.5)/4.
    CHECK(b.b2[i] == Approx(1.5 / 4));
    CHECK(b.b1[i] == Approx(2.0 / 4));
    CHECK(b.depth[i] == Approx(0.125 * 3 + 0.5 * 5 + 0.375 * 7));
    CHECK(b.triangle[0] == -1);
    CHECK(std::isinf(b.depth[0]));
  }
}

TEST_CASE("raster: random fans are covered exactly once", "[raster]") {
  std::mt19937 rng(1234);
  const int W = 48, H = 48;
  for (int trial = 0; trial < 12; ++trial) {
    const bool snap = trial % 2 == 1;  // vertices on pixel centres: many exact ties
    std::uniform_real_distribution<double> U(0, 1);
    const int n = 5 + trial;
    // Jittered angles: consecutive spokes stay less than pi apart, so the fan does not fold over.
    std::vector<double> ang(n);
    for (int i = 0; i < n; ++i) ang[i] = 2 * kPi * (i + 0.8 * U(rng)) / n;
    std::vector<float> s;
    auto put = [&](double x, double y) {
      if (snap) {
        x = std::floor(x) + 0.5;
        y = std::floor(y) + 0.5;
      }
      s.insert(s.end(), {static_cast<float>(x), static_cast<float>(y), 1.0f});
    };
    put(24 + U(rng) * 2, 24 + U(rng) * 2);
    for (double a : ang) {
      const double r = 6 + U(rng) * 16;
      put(24 + r * std::cos(a), 24 + r * std::sin(a));
    }
    std::vector<std::array<std::int32_t, 3>> tris;
    for (int i = 0; i < n; ++i) {
      std::array<std::int32_t, 3> t{0, 1 + i, 1 + (i + 1) % n};
      if (U(rng) < 0.5) std::swap(t[1], t[2]);  // both windings
      tris.push_back(t);
    }
    std::vector<int> count(W * H, 0);
    for (const auto& t : tris) add_coverage(s, t, W, H, count);
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        const int c = count[y * W + x];
        INFO("trial " << trial << " pixel " << x << "," << y);
        REQUIRE(c <= 1);
        if (c == 1) continue;
        // Uncovered: the centre must not be strictly inside any fan triangle.
        const double px = x + 0.5, py = y + 0.5;
        for (const auto& t : tris) {
          const float* a = &s[3 * t[0]];
          const float* b = &s[3 * t[1]];
          const float* d = &s[3 * t[2]];
          const double area = (b[0] - a[0]) * (d[1] - a[1]) - (b[1] - a[1]) * (d[0] - a[0]);
          if (area == 0) continue;
          const double l0 = ((b[0] - px) * (d[1] - py) - (b[1] - py) * (d[0] - px)) / area;
          const double l1 = ((d[0] - px) * (a[1] - py) - (d[1] - py) * (a[0] - px)) / area;
          const double l2 = 1 - l0 - l1;
          REQUIRE_FALSE((l0 > 1e-9 && l1 > 1e-9 && l2 > 1e-9));
        }
      }
  }
}

TEST_CASE("raster: closed grid mesh, no holes", "[raster]") {
  // ~50k jittered triangles covering [16, 496]^2 of a 512 x 512 image.
  const int W = 512, H = 512, G = 158;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> J(-0.2f, 0.2f);  // small enough that no triangle folds over
  std::vector<float> s;
  const float step = 480.0f / (G - 1);
  for (int j = 0; j < G; ++j)
    for (int i = 0; i < G; ++i) {
      const bool border = i == 0 || j == 0 || i == G - 1 || j == G - 1;
      s.push_back(16 + i * step + (border ? 0 : J(rng) * step));
      s.push_back(16 + j * step + (border ? 0 : J(rng) * step));
      s.push_back(1 + 0.001f * static_cast<float>(i + j));
    }
  std::vector<std::int32_t> tris;
  for (int j = 0; j + 1 < G; ++j)
    for (int i = 0; i + 1 < G; ++i) {
      const int a = j * G + i, b = a + 1, c = a + G, d = c + 1;
      tris.insert(tris.end(), {a, b, d, a, d, c});
    }
  REQUIRE(tris.size() / 3 > 49000);
  raster::Buffers buf;
  buf.reset(W, H);
  raster::rasterize(s, tris, buf, true);  // (its speed: build/tests/hfr_unit_geometry "[.raster-bench]")
  int holes = 0, outside = 0;
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const bool in = x >= 16 && x < 496 && y >= 16 && y < 496;  // centres in [16.5, 495.5]
      const bool cov = buf.triangle[y * W + x] >= 0;
      if (in && !cov) ++holes;
      if (!in && cov) ++outside;
    }
  CHECK(holes == 0);
  CHECK(outside == 0);
}

TEST_CASE("raster: perspective-correct barycentrics on a tilted quad", "[raster]") {
  // Camera-space quad tilted in depth: z from 4 (bottom) to 10 (top).
  const double f = 80, c = 32;
  const std::array<std::array<double, 3>, 4> P = {{{-2, 2, 4}, {2, 2, 4}, {2, -2, 10}, {-2, -2, 10}}};
  std::vector<float> s;
  for (const auto& p : P)
    s.insert(s.end(), {static_cast<float>(f * p[0] / p[2] + c), static_cast<float>(f * p[1] / p[2] + c),
                       static_cast<float>(p[2])});
  const std::vector<std::int32_t> tris = {0, 1, 2, 0, 2, 3};
  raster::Buffers persp, affine;
  persp.reset(64, 64);
  affine.reset(64, 64);
  raster::rasterize(s, tris, persp, true);
  raster::rasterize(s, tris, affine, false);
  int covered = 0;
  double worst = 0, worst_affine = 0;
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x) {
      const int i = y * 64 + x;
      const int t = persp.triangle[i];
      if (t < 0) continue;
      ++covered;
      // The ray through the pixel centre meets the quad's plane y_cam = 2 - (z - 4) * 4 / 6.
      const double rx = (x + 0.5 - c) / f, ry = (y + 0.5 - c) / f;
      // y = ry * z and y = 2 - (z - 4) * 2/3  ->  z = (2 + 8/3) / (ry + 2/3)
      const double z = (2 + 8.0 / 3) / (ry + 2.0 / 3);
      const std::array<double, 3> X{rx * z, ry * z, z};
      // Barycentrics of X in the 3D triangle (the quad is planar and a
      // rectangle: solve with the in-plane coordinates x and z).
      const auto& A = P[tris[3 * t]];
      const auto& B = P[tris[3 * t + 1]];
      const auto& C = P[tris[3 * t + 2]];
      const double det = (B[0] - A[0]) * (C[2] - A[2]) - (B[2] - A[2]) * (C[0] - A[0]);
      const double e1 = ((X[0] - A[0]) * (C[2] - A[2]) - (X[2] - A[2]) * (C[0] - A[0])) / det;
      const double e2 = ((B[0] - A[0]) * (X[2] - A[2]) - (B[2] - A[2]) * (X[0] - A[0])) / det;
      worst = std::max({worst, std::abs(e1 - persp.b1[i]), std::abs(e2 - persp.b2[i])});
      CHECK(persp.depth[i] == Approx(z).epsilon(1e-5));
      if (affine.triangle[i] == t)
        worst_affine = std::max({worst_affine, std::abs(e1 - affine.b1[i]), std::abs(e2 - affine.b2[i])});
    }
  CHECK(covered > 500);
  CHECK(worst < 1e-5);
  CHECK(worst_affine > 0.02);  // the test can tell the difference
}

TEST_CASE("raster: depth test keeps the nearer triangle", "[raster]") {
  const std::vector<float> s = {0, 0, 2, 20, 0, 2, 0, 20, 2, 0, 0, 1, 20, 0, 1, 0, 20, 1};
  for (int order = 0; order < 2; ++order) {
    raster::Buffers b;
    b.reset(20, 20);
    const std::vector<std::int32_t> tris =
        order == 0 ? std::vector<std::int32_t>{0, 1, 2, 3, 4, 5} : std::vector<std::int32_t>{3, 4, 5, 0, 1, 2};
    raster::rasterize(s, tris, b, true);
    const int near_tri = order == 0 ? 1 : 0;
    CHECK(b.triangle[5 * 20 + 5] == near_tri);
    CHECK(b.depth[5 * 20 + 5] == Approx(1));
  }
  // Partly interpenetrating: a tilted triangle crosses z = 1.5.
  const std::vector<float> s2 = {0, 0, 1, 20, 0, 2, 0, 20, 1, 0, 0, 1.5f, 20, 0, 1.5f, 0, 20, 1.5f};
  raster::Buffers b;
  b.reset(20, 20);
  raster::rasterize(s2, {0, 1, 2, 3, 4, 5}, b, false);
  CHECK(b.triangle[5 * 20 + 2] == 0);   // x = 2.5: z = 1.125 < 1.5
  CHECK(b.triangle[5 * 20 + 13] == 1);  // x = 13.5: z = 1.675 > 1.5
}

TEST_CASE("raster: hostile input", "[raster]") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  raster::Buffers b;
  b.reset(16, 16);
  SECTION("non-finite, degenerate, behind the near plane, bad indices: skipped") {
    const std::vector<float> s = {
        nan, 0, 1, 10, 0, 1, 0, 10, 1,    // 0-2: NaN x
        0, 0, inf, 10, 0, 1, 0, 10, 1,    // 3-5: inf z
        0, 0, 1, 5, 5, 1, 10, 10, 1,      // 6-8: collinear
        0, 0, 0, 10, 0, 1, 0, 10, 1,      // 9-11: z = 0
        0, 0, -1, 10, 0, -1, 0, 10, -1,   // 12-14: behind
        0, 0, 1, -inf, 0, 1, 0, 1e30f, 1  // 15-17
    };
    const std::vector<std::int32_t> tris = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 0, 1, 99, -5, 1, 2};
    REQUIRE_NOTHROW(raster::rasterize(s, tris, b, true));
    REQUIRE_NOTHROW(raster::rasterize(s, tris, b, false));
    for (auto t : b.triangle) REQUIRE(t == -1);
  }
  SECTION("huge coordinates are clipped to the image") {
    const std::vector<float> s = {-1e30f, -1e30f, 1, 3e30f, -1e30f, 1, -1e30f, 3e30f, 1};
    REQUIRE_NOTHROW(raster::rasterize(s, {0, 1, 2}, b, false));
    for (auto t : b.triangle) REQUIRE(t == 0);
    b.reset(16, 16);
    // Hypotenuse x + y = 16: centres with x + y < 15 are in (120 pixels), the
    // 16 centres on the line go by the tie rule; exact in double precision.
    const std::vector<float> s2 = {-1e7f, -1e7f, 1, 1e7f + 16, -1e7f, 1, -1e7f, 1e7f + 16, 1};
    raster::rasterize(s2, {0, 1, 2}, b, false);
    int n = 0;
    for (auto t : b.triangle) n += t == 0;
    CHECK((n == 120 || n == 136));
  }
  SECTION("size mismatches throw") {
    raster::Buffers bad;
    bad.width = 4;
    bad.height = 4;
    CHECK_THROWS_AS(raster::rasterize({0, 0, 1, 1, 0, 1, 0, 1, 1}, {0, 1, 2}, bad, false), hfr::Error);
    const std::vector<std::uint8_t> en(2, 1);
    CHECK_THROWS_AS(raster::rasterize({0, 0, 1, 1, 0, 1, 0, 1, 1}, {0, 1, 2}, b, false, &en), hfr::Error);
  }
  SECTION("enabled selects triangles") {
    const std::vector<float> s = {0, 0, 1, 16, 0, 1, 0, 16, 1, 16, 16, 1};
    const std::vector<std::uint8_t> en = {0, 1};
    raster::rasterize(s, {0, 1, 2, 1, 3, 2}, b, false, &en);
    CHECK(b.triangle[0] == -1);
    CHECK(b.triangle[15 * 16 + 15] == 1);
  }
}

// A benchmark, not a test (hidden: run it by its tag; figures in bench/results-render.md).
TEST_CASE("raster: speed, 49k triangles into 512x512", "[.raster-bench]") {
  const int W = 512, H = 512, G = 158;
  std::vector<float> s;
  for (int j = 0; j < G; ++j)
    for (int i = 0; i < G; ++i) s.insert(s.end(), {16.0f + 480.0f * i / (G - 1), 16.0f + 480.0f * j / (G - 1), 1.0f});
  std::vector<std::int32_t> tris;
  for (int j = 0; j + 1 < G; ++j)
    for (int i = 0; i + 1 < G; ++i) {
      const int a = j * G + i, b = a + 1, c = a + G, d = c + 1;
      tris.insert(tris.end(), {a, b, d, a, d, c});
    }
  raster::Buffers buf;
  double best_ms = 1e9;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    buf.reset(W, H);
    raster::rasterize(s, tris, buf, true);
    best_ms = std::min(best_ms, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  WARN("rasterize " << tris.size() / 3 << " triangles into 512x512 (incl. reset): " << best_ms << " ms");
}
