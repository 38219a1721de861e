#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>

#include <catch2/catch.hpp>

#include "hfr/error.hpp"
#include "hfr/mesh.hpp"
#include "hfr/render.hpp"
#include "hfr/spectral.hpp"

using hfr::mesh::TriMesh;
namespace render = hfr::render;

namespace {

constexpr double kPi = 3.14159265358979323846;

using V3 = std::array<double, 3>;
double dot(const V3& a, const V3& b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
V3 sub(const V3& a, const V3& b) { return {a[0] - b[0], a[1] - b[1], a[2] - b[2]}; }
V3 scale(const V3& a, double s) { return {a[0] * s, a[1] * s, a[2] * s}; }
V3 unit(const V3& a) { return scale(a, 1 / std::sqrt(dot(a, a))); }

// A UV sphere in camera space: 2 * rings * segments - 2 * segments triangles.
TriMesh uv_sphere(int rings, int segments, double radius, V3 centre) {
  TriMesh m;
  for (int r = 0; r <= rings; ++r) {
    const double th = kPi * r / rings;
    for (int s = 0; s < segments; ++s) {
      const double ph = 2 * kPi * s / segments;
      m.positions.push_back(static_cast<float>(centre[0] + radius * std::sin(th) * std::sin(ph)));
      m.positions.push_back(static_cast<float>(centre[1] + radius * std::cos(th)));
      m.positions.push_back(static_cast<float>(centre[2] + radius * std::sin(th) * std::cos(ph)));
    }
  }
  auto id = [&](int r, int s) { return r * segments + (s % segments); };
  for (int r = 0; r < rings; ++r)
    for (int s = 0; s < segments; ++s) {
      const int a = id(r, s), b = id(r, s + 1), c = id(r + 1, s), d = id(r + 1, s + 1);
      if (r == 0)
        m.triangles.insert(m.triangles.end(), {a, c, d});
      else
        m.triangles.insert(m.triangles.end(), {a, c, b});
      if (r > 0 && r < rings - 1) m.triangles.insert(m.triangles.end(), {b, c, d});
    }
  return m;
}

// An axis-aligned rectangle at depth z, uv (0,0) at (x0, y1) and (1,1) at (x1, y0)
// (v up = -y in camera space).
TriMesh quad(double x0, double x1, double y0, double y1, double z) {
  TriMesh m;
  m.positions = {float(x0), float(y0), float(z), float(x1), float(y0), float(z),
                 float(x1), float(y1), float(z), float(x0), float(y1), float(z)};
  m.triangles = {0, 1, 2, 0, 2, 3};
  m.uvs = {0, 1, 1, 1, 1, 0, 0, 0};
  m.uv_triangles = m.triangles;
  return m;
}

render::Material lambert(std::array<float, 3> albedo = {1, 1, 1}) {
  render::Material m;
  m.albedo_value = albedo;
  m.specular_value = 0;
  return m;
}

render::RenderOptions options(int w, int h, double f, double cx, double cy, int spp) {
  render::RenderOptions o;
  o.width = w;
  o.height = h;
  o.camera.fx = o.camera.fy = f;
  o.camera.cx = cx;
  o.camera.cy = cy;
  o.spp = spp;
  return o;
}

V3 pixel_ray(const render::RenderOptions& o, double px, double py) {
  return unit({(px - o.camera.cx) / o.camera.fx, (py - o.camera.cy) / o.camera.fy, 1.0});
}

// Distance along a unit ray from the origin to a sphere, or -1.
double hit_sphere(const V3& d, const V3& c, double r) {
  const double b = dot(d, c), q = b * b - (dot(c, c) - r * r);
  return q < 0 ? -1 : b - std::sqrt(q);
}

struct SphereScene {
  V3 centre{0, 0, 100};
  double radius = 10;
  render::Scene scene;
  explicit SphereScene(render::Material m = lambert()) {
    scene.add(uv_sphere(100, 200, radius, centre), m);  // 39,600 triangles
    scene.commit();
  }
};

// Compares a rendered sphere lit by a light of intensity I at `light` with
// L = (1 / pi) I cos / d^2 over the pixels well inside the silhouette, away
// from the terminator. Returns the worst relative error; counts pixels.
double worst_lambert_error(const std::vector<float>& img, const render::RenderOptions& o, const SphereScene& s,
                           const V3& light, double I, double min_cos, int& count) {
  double worst = 0;
  count = 0;
  for (int y = 0; y < o.height; ++y)
    for (int x = 0; x < o.width; ++x) {
      const V3 d = pixel_ray(o, x + 0.5, y + 0.5);
      // Well inside the silhouette: the ray passes within 0.8 R of the centre.
      const double b = dot(d, s.centre);
      if (dot(s.centre, s.centre) - b * b > 0.64 * s.radius * s.radius) continue;
      const double t = hit_sphere(d, s.centre, s.radius);
      const V3 p = scale(d, t);
      const V3 n = unit(sub(p, s.centre));
      const V3 l = sub(light, p);
      const double d2 = dot(l, l);
      const double cos = dot(n, unit(l));
      if (cos < min_cos) continue;
      const double expect = cos / kPi * I / d2;
      const double got = img[(static_cast<std::size_t>(y) * o.width + x) * o.channels];
      worst = std::max(worst, std::abs(got - expect) / expect);
      ++count;
    }
  return worst;
}

}  // namespace

TEST_CASE("render: textures sample bilinearly with clamp", "[render]") {
  render::Texture t{2, 2, 1, {0.f, 1.f, 2.f, 3.f}};  // row 0 (v = 1): 0 1; row 1 (v = 0): 2 3
  float v = -1;
  t.sample(0.25, 0.75, &v);
  CHECK(v == Approx(0));
  t.sample(0.75, 0.25, &v);
  CHECK(v == Approx(3));
  t.sample(0.5, 0.5, &v);
  CHECK(v == Approx(1.5));
  t.sample(-3, 7, &v);  // clamped to texel (0, 0)
  CHECK(v == Approx(0));
  t.sample(0.5, 0.75, &v);
  CHECK(v == Approx(0.5));
}

TEST_CASE("render: texture validation refuses non-finite texels anywhere", "[render]") {
  render::Texture t{8, 8, 3, std::vector<float>(8 * 8 * 3, 0.5f)};
  CHECK_NOTHROW(t.validate("t"));
  t.data[5] = -1e30f;  // large but finite
  CHECK_NOTHROW(t.validate("t"));
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()})
    for (std::size_t i : {std::size_t(0), std::size_t(77), t.data.size() - 1}) {
      render::Texture u = t;
      u.data[i] = bad;
      CHECK_THROWS_WITH(u.validate("maps"), Catch::Contains("maps: texture value not finite"));
    }
}

TEST_CASE("render: a Lambertian sphere under a point light matches (albedo / pi) E cos", "[render]") {
  SphereScene s;
  const V3 light = {s.centre[0] - 400, s.centre[1] - 400, s.centre[2] - 800};
  const double I = 1e6;
  auto o = options(128, 128, 500, 64, 64, 4);
  const auto img = render::render(s.scene, {render::PointLight{light, {float(I), float(I), float(I)}}}, o);
  int count = 0;
  const double worst = worst_lambert_error(img, o, s, light, I, 0.2, count);
  CHECK(count > 3000);
  CHECK(worst < 0.02);
  // Background stays 0.
  CHECK(img[0] == 0.0f);
}

TEST_CASE("render: a sphere light has the irradiance of its intensity, I cos / d^2", "[render]") {
  SphereScene s;
  const V3 light = {s.centre[0] + 150, s.centre[1] - 100, s.centre[2] - 230};  // ~ 290 cm away
  const double I = 1e5;
  auto o = options(128, 128, 500, 64, 64, 64);
  const auto img = render::render(s.scene, {render::SphereLight{light, 5.0, {float(I), float(I), float(I)}}}, o);
  int count = 0;
  const double worst = worst_lambert_error(img, o, s, light, I, 0.3, count);
  CHECK(count > 2000);
  CHECK(worst < 0.02);

  // The on-axis illuminator: a small sphere around the camera equals a point light there.
  const float J = 1e4f;
  const auto area = render::render(s.scene, {render::SphereLight{{0, 0, 0}, 2.0, {J, J, J}}}, o);
  o.spp = 4;
  const auto point = render::render(s.scene, {render::PointLight{{0, 0, 0}, {J, J, J}}}, o);
  double worst_rel = 0, sum_area = 0, sum_point = 0;
  int n = 0;
  for (std::size_t i = 0; i < area.size(); i += 3)
    if (point[i] > 0.5f * J / kPi / (90.0 * 90.0)) {  // facing the camera: cos > ~0.5
      worst_rel = std::max(worst_rel, std::abs(double(area[i]) - point[i]) / point[i]);
      sum_area += area[i];
      sum_point += point[i];
      ++n;
    }
  CHECK(n > 3000);
  CHECK(worst_rel < 0.02);  // per pixel: Monte Carlo noise over the light's cone (~0.2 % rms)
  CHECK(sum_area / sum_point == Approx(1).epsilon(1e-3));
}

TEST_CASE("render: a white Lambertian surface in a constant environment returns its radiance", "[render]") {
  SphereScene s;
  auto o = options(64, 64, 250, 32, 32, 16);
  for (bool ao : {false, true}) {
    o.ambient_occlusion = ao;
    const auto img = render::render(s.scene, {render::AmbientLight{{0.7f, 0.7f, 0.7f}}}, o);
    double sum = 0, worst = 0;
    int count = 0;
    for (int y = 0; y < o.height; ++y)
      for (int x = 0; x < o.width; ++x) {
        const V3 d = pixel_ray(o, x + 0.5, y + 0.5);
        const double b = dot(d, s.centre);
        if (dot(s.centre, s.centre) - b * b > 0.81 * s.radius * s.radius) continue;
        const double v = img[(static_cast<std::size_t>(y) * o.width + x) * 3 + 1];
        sum += v;
        worst = std::max(worst, std::abs(v - 0.7));
        ++count;
      }
    INFO("ambient occlusion " << ao);
    REQUIRE(count > 300);
    CHECK(std::abs(sum / count - 0.7) < 0.007);  // the sphere is convex: AO changes nothing
    if (!ao) CHECK(worst < 1e-5);
  }
}

namespace {

// A wall at z = 100 and a 10 cm wide, 100 cm tall occluder at z = 60 between
// it and a light at (30, 0, 20); the camera (f = 100) sees x in [-64, 64] cm
// and y in [-8, 8] cm on the wall, and the occluder at pixels 56..72.
struct ShadowScene {
  render::Scene scene;
  V3 light{30, 0, 20};
  ShadowScene() {
    scene.add(quad(-100, 100, -100, 100, 100), lambert());
    scene.add(quad(-5, 5, -50, 50, 60), lambert());
    scene.commit();
  }
};

}  // namespace

TEST_CASE("render: a point light casts a hard shadow that receives only ambient", "[render]") {
  ShadowScene s;
  const float I = 1e4f, amb = 0.05f;
  auto o = options(128, 16, 100, 64, 8, 4);
  const auto img = render::render(
      s.scene, {render::PointLight{s.light, {I, I, I}}, render::AmbientLight{{amb, amb, amb}}}, o);
  auto at = [&](int x, int y) { return img[(static_cast<std::size_t>(y) * o.width + x) * 3]; };
  // The shadow covers x in [-40, -20] cm on the wall: pixels 24..43.
  for (int y = 0; y < o.height; ++y)
    for (int x = 26; x <= 41; ++x) CHECK(at(x, y) == Approx(amb).epsilon(1e-5));
  // Lit wall: analytic irradiance, e.g. straight under the light (x = 30 cm, pixel 94).
  for (int x : {0, 10, 80, 94, 110, 127}) {
    const V3 p = scale(pixel_ray(o, x + 0.5, 8), 100 / pixel_ray(o, x + 0.5, 8)[2]);
    const V3 l = sub(s.light, p);
    const double expect = amb + (-unit(l)[2] * -1.0 * -1.0) / kPi * I / dot(l, l);
    INFO("pixel " << x);
    CHECK(0.5 * (at(x, 7) + at(x, 8)) == Approx(expect).epsilon(0.01));
  }
}

TEST_CASE("render: a sphere light casts a soft shadow: the penumbra falls monotonically into the umbra", "[render]") {
  ShadowScene s;
  const float I = 1e4f, amb = 0.05f;
  auto o = options(128, 16, 100, 64, 8, 256);
  const auto img = render::render(
      s.scene, {render::SphereLight{s.light, 6.0, {I, I, I}}, render::AmbientLight{{amb, amb, amb}}}, o);
  // Column means over the 16 rows (y in [-8, 8] cm).
  std::vector<double> col(o.width, 0.0);
  for (int y = 0; y < o.height; ++y)
    for (int x = 0; x < o.width; ++x) col[x] += img[(static_cast<std::size_t>(y) * o.width + x) * 3] / o.height;
  // Seen from the wall the light (radius 6 cm) covers a 3.75 cm ellipse-ish
  // disc on the occluder's plane (3 cm, stretched ~1.25 by obliquity):
  // umbra x in [-32.5, -27.5] cm (pixels 32..35), penumbra up to -12.5 (51).
  CHECK(col[33] == Approx(amb).epsilon(1e-4));
  CHECK(col[34] == Approx(amb).epsilon(1e-4));
  const double lit = col[56];
  CHECK(lit > 10 * amb);
  for (int x = 39; x <= 49; x += 2) {
    INFO("pixel " << x);
    CHECK(col[x] > amb + 0.01 * lit);
    CHECK(col[x] < 0.99 * lit);
    CHECK(col[x] < col[x + 2]);  // darker towards the umbra
  }
  // The point light's hard shadow at the same place, for contrast.
  const auto hard = render::render(s.scene, {render::PointLight{s.light, {I, I, I}}, render::AmbientLight{{amb, amb, amb}}},
                                   options(128, 16, 100, 64, 8, 4));
  CHECK(hard[(8 * 128 + 40) * 3] == Approx(amb).epsilon(1e-5));
  CHECK(col[40] > amb + 0.05 * lit);
}

TEST_CASE("render: GGX highlight at the mirror direction, F0 = 0 gives none", "[render]") {
  render::Material m;
  m.albedo_value = {0, 0, 0};
  m.specular_value = 0.04f;
  m.roughness_value = 0.1f;
  auto o = options(128, 16, 100, 64, 8, 16);
  const float I = 1e4f;
  const render::PointLight light{{20, 0, 0}, {I, I, I}};  // mirror point on the wall: x = 10 cm (pixel 74)
  {
    render::Scene scene;
    scene.add(quad(-100, 100, -100, 100, 100), m);
    scene.commit();
    const auto img = render::render(scene, {light}, o);
    std::vector<double> row(o.width);
    for (int x = 0; x < o.width; ++x) row[x] = img[(8 * o.width + x) * 3];
    const int peak = static_cast<int>(std::max_element(row.begin(), row.end()) - row.begin());
    CHECK(std::abs(peak - 74) <= 1);
    // At the mirror point h = n: f = F0 D V with D = 1 / (pi alpha^2).
    const double c = 100 / std::sqrt(100.0 * 100 + 10 * 10);
    const double a2 = 0.01, D = 1 / (kPi * a2);
    const double V = 0.5 / (2 * c * std::sqrt(c * c * (1 - a2) + a2));
    const double expect = 0.04 * D * V * c * I / (100.0 * 100 + 10 * 10);
    CHECK(0.5 * (row[73] + row[74]) == Approx(expect).epsilon(0.1));
    CHECK(row[74 + 30] < 0.05 * row[peak]);
    CHECK(row[74 - 30] < 0.05 * row[peak]);
  }
  {
    m.specular_value = 0;
    render::Scene scene;
    scene.add(quad(-100, 100, -100, 100, 100), m);
    scene.commit();
    const auto img = render::render(scene, {light, render::AmbientLight{{1, 1, 1}}}, o);
    CHECK(*std::max_element(img.begin(), img.end()) == 0.0f);
  }
}

TEST_CASE("render: the shading's float BRDF equals brdf() (the one the energy tests check)", "[render][brdf]") {
  std::mt19937_64 gen(11);
  std::uniform_real_distribution<double> U(0, 1);
  auto unit = [&](double zmin) {  // a random unit vector with z >= zmin
    for (;;) {
      const double z = zmin + (1 - zmin) * U(gen), ph = 2 * kPi * U(gen), r = std::sqrt(std::max(0.0, 1 - z * z));
      const double x = r * std::cos(ph), y = r * std::sin(ph);
      if (std::abs(x * x + y * y + z * z - 1) < 1e-9) return std::array<double, 3>{x, y, z};
    }
  };
  // random frames: n anywhere, wo and wi in n's frame (some below the surface), F0 and alpha over their ranges
  const std::size_t N = 4003;  // not a multiple of the lanes
  std::vector<float> n(3 * N), wo(3 * N), wi(3 * N), f0(N), alpha(N), kd(N), spec(N);
  std::vector<std::array<double, 3>> dn(N), dwo(N), dwi(N);
  for (std::size_t k = 0; k < N; ++k) {
    const auto a = unit(-1), lo = unit(-0.2), li = unit(-0.2);
    // a basis around a (Frisvad) to place wo, wi
    const double s = a[2] >= 0 ? 1 : -1, p = -1 / (s + a[2]), q = a[0] * a[1] * p;
    const std::array<double, 3> t1{1 + s * a[0] * a[0] * p, s * q, -s * a[0]}, t2{q, s + a[1] * a[1] * p, -a[1]};
    auto place = [&](const std::array<double, 3>& v) {
      std::array<double, 3> r;
      for (int c = 0; c < 3; ++c) r[c] = v[0] * t1[c] + v[1] * t2[c] + v[2] * a[c];
      return r;
    };
    dn[k] = a, dwo[k] = place(lo), dwi[k] = place(li);
    for (int c = 0; c < 3; ++c) {
      n[3 * k + c] = float(dn[k][c]), wo[3 * k + c] = float(dwo[k][c]), wi[3 * k + c] = float(dwi[k][c]);
      dn[k][c] = n[3 * k + c], dwo[k][c] = wo[3 * k + c], dwi[k][c] = wi[3 * k + c];  // the same floats for both
    }
    f0[k] = k % 7 == 0 ? 0.0f : k % 11 == 0 ? 1.0f : float(U(gen) * 0.5);
    alpha[k] = float(0.02 + 0.98 * U(gen));
  }
  render::detail::shading_brdf(N, n.data(), wo.data(), wi.data(), f0.data(), alpha.data(), kd.data(), spec.data());
  std::size_t lit = 0, with_spec = 0;
  double worst_kd = 0, worst_spec = 0;
  for (std::size_t k = 0; k < N; ++k) {
    // albedo (1, 0, 0): channel 0 = kd + spec, channel 1 = spec
    const render::SurfaceSample s{{1, 0, 0}, f0[k], alpha[k]};
    const auto f = render::brdf(s, dn[k].data(), dwo[k].data(), dwi[k].data());
    const double want_kd = f[0] - f[1], want_spec = f[1];
    INFO("k " << k << " f0 " << f0[k] << " alpha " << alpha[k] << " kd " << kd[k] << " / " << want_kd << " spec " << spec[k]
              << " / " << want_spec);
    if (want_kd == 0 && want_spec == 0) {  // a direction below the surface: the shading masks it too
      CHECK(kd[k] == 0);
      CHECK(spec[k] == 0);
      continue;
    }
    ++lit;
    with_spec += want_spec > 0;
    // float against double: relative 1e-4 (the specular peak of alpha 0.02 spans many orders of
    // magnitude), and 1e-7 absolute (1 - F at grazing angles cancels in float)
    worst_kd = std::max(worst_kd, std::abs(kd[k] - want_kd) / want_kd);
    worst_spec = std::max(worst_spec, std::abs(spec[k] - want_spec) / std::max(want_spec, 1e-6));
    CHECK(kd[k] == Approx(want_kd).epsilon(1e-4).margin(1e-7));
    CHECK(spec[k] == Approx(want_spec).epsilon(1e-4).margin(1e-7));
  }
  INFO("lit " << lit << " with specular " << with_spec << " worst relative kd " << worst_kd << " spec " << worst_spec);
  CHECK(lit > N / 2);  // both kinds of case are exercised
  CHECK(lit < N);
  CHECK(with_spec > N / 3);
}

TEST_CASE("render: the BRDF reflects no more than it receives (white furnace)", "[render]") {
  std::mt19937_64 gen(7);
  std::uniform_real_distribution<double> U(0, 1);
  const double n[3] = {0, 0, 1};
  for (double alpha : {0.05, 0.2, 0.5, 1.0})
    for (double f0 : {0.0, 0.04, 0.5, 1.0})
      for (double theta_deg : {0.0, 45.0, 75.0, 88.0}) {
        const double th = theta_deg * kPi / 180;
        const double wo[3] = {std::sin(th), 0, std::cos(th)};
        render::SurfaceSample spec{{0, 0, 0}, float(f0), float(alpha)};  // albedo 0: specular only
        // Importance sampling of the GGX normal distribution D(h) (n.h).
        const int N = 100000;
        double rho_s = 0;
        for (int i = 0; i < N; ++i) {
          const double u1 = (i + U(gen)) / N, u2 = U(gen);
          const double t2 = alpha * alpha * u1 / (1 - u1);
          const double ch = 1 / std::sqrt(1 + t2), sh = std::sqrt(std::max(0.0, 1 - ch * ch));
          const double h[3] = {sh * std::cos(2 * kPi * u2), sh * std::sin(2 * kPi * u2), ch};
          const double vh = wo[0] * h[0] + wo[1] * h[1] + wo[2] * h[2];
          if (vh <= 0) continue;
          const double wi[3] = {2 * vh * h[0] - wo[0], 2 * vh * h[1] - wo[1], 2 * vh * h[2] - wo[2]};
          if (wi[2] <= 0) continue;
          const double a2 = alpha * alpha, dd = ch * ch * (a2 - 1) + 1, D = a2 / (kPi * dd * dd);
          const double pdf = D * ch / (4 * vh);
          rho_s += render::brdf(spec, n, wo, wi)[0] * wi[2] / pdf;
        }
        rho_s /= N;
        // The diffuse part integrates to (1 - F(n.v)) albedo: check it by quadrature.
        render::SurfaceSample white{{1, 1, 1}, float(f0), float(alpha)};
        double rho = 0;
        const int M = 400;
        for (int i = 0; i < M; ++i)
          for (int j = 0; j < M; ++j) {
            const double ct = (i + 0.5) / M, st = std::sqrt(1 - ct * ct), ph = 2 * kPi * (j + 0.5) / M;
            const double wi[3] = {st * std::cos(ph), st * std::sin(ph), ct};
            rho += render::brdf(white, n, wo, wi)[1] * ct * (2 * kPi / (double(M) * M));  // dω = d(cosθ) dφ
          }
        INFO("alpha " << alpha << " F0 " << f0 << " theta " << theta_deg << " rho_s " << rho_s << " rho " << rho);
        CHECK(rho_s <= 1.0 + 1e-3);
        if (f0 == 0) {
          CHECK(rho_s == 0);
          CHECK(rho == Approx(1).epsilon(2e-3));
        }
        // Total directional albedo of a white surface: diffuse + specular (importance-sampled).
        const double f = std::min(1.0, 50 * f0), m = 1 - wo[2];
        const double F = f0 + (f - f0) * m * m * m * m * m;
        CHECK((1 - F) + rho_s <= 1.0 + 2e-3);
        if (f0 == 1 && alpha <= 0.2 && theta_deg <= 45) CHECK(rho_s > 0.9);
      }
}

TEST_CASE("render: same seed gives the same image for any thread count, another seed other noise", "[render]") {
  SphereScene s;
  const std::vector<render::Light> lights = {render::SphereLight{{60, -60, 40}, 15, {5e4f, 5e4f, 5e4f}},
                                             render::AmbientLight{{0.1f, 0.1f, 0.1f}}};
  auto o = options(64, 64, 250, 32, 32, 4);
  o.ambient_occlusion = true;
  const auto a = render::render(s.scene, lights, o);
  const auto b = render::render(s.scene, lights, o);
  o.threads = 2;
  const auto c = render::render(s.scene, lights, o);
  o.threads = 3;
  const auto d = render::render(s.scene, lights, o);
  CHECK(a == b);
  CHECK(a == c);
  CHECK(a == d);
  o.seed = 2;
  const auto e = render::render(s.scene, lights, o);
  int differ = 0;
  for (std::size_t i = 0; i < a.size(); ++i) differ += a[i] != e[i];
  CHECK(differ > 100);
}

TEST_CASE("render: the AVX2 and SSE2 shading give the same bits", "[render]") {
  // A textured, specular, multi-band render with every kind of light and AO,
  // at 3 spp (packets straddle pixels, a short last packet): once with the
  // CPU's code (AVX2 where it has it), once forcing the SSE2 code.
  render::Texture tex;
  tex.width = tex.height = 16;
  tex.channels = 5;
  for (int i = 0; i < 16 * 16; ++i)
    for (float v : {0.2f + 0.03f * float(i % 16), 0.5f, 0.1f + 0.002f * float(i), 0.04f, 0.1f + 0.02f * float(i / 16)})
      tex.data.push_back(v);
  render::Material m;
  m.albedo = m.specular = m.roughness = &tex;
  m.albedo_channels = 3;
  m.specular_channel = 3;
  m.roughness_channel = 4;
  m.subsurface = true;
  TriMesh ball = uv_sphere(30, 60, 10, {0, 0, 100});
  for (std::size_t v = 0; v < ball.positions.size() / 3; ++v) {
    ball.uvs.push_back(0.5f + 0.05f * ball.positions[3 * v]);
    ball.uvs.push_back(0.5f - 0.05f * ball.positions[3 * v + 1]);
  }
  ball.uv_triangles = ball.triangles;
  render::Scene scene;
  scene.add(ball, m);
  scene.add(quad(-100, 100, -100, 100, 120), lambert({0.5f, 0.4f, 0.3f}));
  scene.commit();
  render::RenderLayers la, lb;
  std::vector<render::Band> bands(2);
  bands[0].lights = {render::SphereLight{{60, -60, 40}, 10, {5e4f, 4e4f, 3e4f}}, render::PointLight{{-30, 20, 0}, {1e4f, 1e4f, 2e4f}},
                     render::AmbientLight{{0.1f, 0.1f, 0.2f}}};
  bands[1].lights = {render::SphereLight{{0, 0, 0}, 3, {4e4f, 4e4f, 4e4f}}, render::AmbientLight{{0.05f, 0.05f, 0.05f}}};
  bands[1].channels = 1;
  auto o = options(37, 29, 150, 18, 14, 3);
  o.ambient_occlusion = true;
  o.ao_distance = 30;
  bands[0].layers = &la;
  const auto a = render::render_bands(scene, bands, o);
  setenv("HFR_RENDER_SIMD", "sse", 1);
  bands[0].layers = &lb;
  const auto b = render::render_bands(scene, bands, o);
  unsetenv("HFR_RENDER_SIMD");
  CHECK(a == b);
  CHECK(la.irradiance == lb.irradiance);
  CHECK(la.albedo == lb.albedo);
  CHECK(la.depth == lb.depth);
  CHECK(*std::max_element(a[0].begin(), a[0].end()) > 0.1f);
}

TEST_CASE("render: colour and single-band rendering", "[render]") {
  render::Scene scene;
  scene.add(quad(-100, 100, -100, 100, 100), lambert({1.0f, 0.1f, 0.1f}));
  scene.commit();
  const std::vector<render::Light> lights = {render::PointLight{{0, 0, 0}, {1e4f, 1e4f, 1e4f}},
                                             render::AmbientLight{{0.2f, 0.2f, 0.2f}}};
  auto o = options(32, 32, 50, 16, 16, 4);
  const auto rgb = render::render(scene, lights, o);
  const std::size_t centre = (16 * 32 + 16) * 3;
  CHECK(rgb[centre] > 5 * rgb[centre + 1]);
  CHECK(rgb[centre + 1] == Approx(0.1 * rgb[centre]).epsilon(1e-5));
  CHECK(rgb[centre + 2] == rgb[centre + 1]);
  o.channels = 1;
  const auto band = render::render(scene, lights, o);
  REQUIRE(band.size() == 32u * 32u);
  for (std::size_t i = 0; i < band.size(); ++i) CHECK(band[i] == rgb[3 * i]);
}

TEST_CASE("render: albedo textures are looked up through the uvs", "[render]") {
  render::Texture tex{2, 1, 1, {0.2f, 0.8f}};  // u < 0.5: 0.2, u > 0.5: 0.8
  render::Material m = lambert();
  m.albedo = &tex;
  m.albedo_scale = 0.5;
  render::Scene scene;
  scene.add(quad(-10, 10, -10, 10, 100), m);  // fills the image at f = 500 and 64 px
  scene.commit();
  const auto img = render::render(scene, {render::AmbientLight{{1, 1, 1}}}, options(64, 64, 500, 32, 32, 4));
  // Bilinear with clamp: flat within a quarter of the width from each edge.
  CHECK(img[(32 * 64 + 4) * 3] == Approx(0.1).epsilon(1e-5));
  CHECK(img[(32 * 64 + 60) * 3 + 2] == Approx(0.4).epsilon(1e-5));
  CHECK(img[(32 * 64 + 32) * 3] == Approx(0.25).epsilon(0.05));
}

TEST_CASE("render: materials pick their channels of a shared texture, triangle materials switch without a rebuild", "[render]") {
  // one texture holding an rgb albedo (0-2), a grey albedo (3), specular (4) and roughness (5)
  const int S = 4;
  render::Texture packed{S, S, 6, {}}, rgb{S, S, 3, {}}, grey{S, S, 1, {}}, spec{S, S, 1, {}}, rough{S, S, 1, {}};
  std::mt19937 gen(3);
  std::uniform_real_distribution<float> u(0.05f, 0.9f);
  for (int i = 0; i < S * S; ++i)
    for (int c = 0; c < 6; ++c) {
      const float v = c == 4 ? 0.02f + 0.05f * u(gen) : u(gen);
      packed.data.push_back(v);
      (c < 3 ? rgb.data : c == 3 ? grey.data : c == 4 ? spec.data : rough.data).push_back(v);
    }
  render::Material a, b;  // a: separate textures; b: the packed one
  a.albedo = &rgb, a.specular = &spec, a.roughness = &rough;
  b.albedo = b.specular = b.roughness = &packed;
  b.albedo_channels = 3, b.specular_channel = 4, b.roughness_channel = 5;
  const std::vector<render::Light> lights = {render::SphereLight{{40, -40, 0}, 10, {3e4f, 3e4f, 3e4f}},
                                             render::AmbientLight{{0.2f, 0.2f, 0.2f}}};
  const auto o = options(32, 32, 160, 16, 16, 4);
  TriMesh ball = uv_sphere(30, 60, 10, {0, 0, 100});  // uvs: longitude, latitude
  for (int r = 0; r <= 30; ++r)
    for (int k = 0; k < 60; ++k) ball.uvs.insert(ball.uvs.end(), {k / 60.0f, 1 - r / 30.0f});
  ball.uv_triangles = ball.triangles;
  auto image = [&](const render::Material& m) {
    render::Scene scene;
    scene.add(ball, m);
    scene.commit();
    return render::render(scene, lights, o);
  };
  CHECK(image(a) == image(b));
  a.albedo = &grey;
  b.albedo_channel = 3, b.albedo_channels = 1;
  CHECK(image(a) == image(b));
  b.albedo_channel = 5, b.albedo_channels = 3;  // past the texture's channels
  render::Scene bad;
  CHECK_THROWS_AS(bad.add(ball, b), hfr::Error);
  // set_triangle_materials: the same image as a scene built with those triangle materials
  const auto sphere = uv_sphere(30, 60, 10, {0, 0, 100});
  const std::size_t nt = sphere.triangles.size() / 3;
  std::vector<std::uint8_t> first(nt, 0), halves(nt);
  for (std::size_t t = 0; t < nt; ++t) halves[t] = t < nt / 2 ? 0 : 1;
  const std::vector<render::Material> two = {lambert({0.8f, 0.2f, 0.2f}), lambert({0.2f, 0.2f, 0.8f})};
  render::Scene switched, fresh;
  const int id = switched.add(sphere, two, first);
  switched.commit();
  const auto before = render::render(switched, lights, o);
  switched.set_triangle_materials(id, halves);
  fresh.add(sphere, two, halves);
  fresh.commit();
  const auto after = render::render(switched, lights, o);
  CHECK(after == render::render(fresh, lights, o));
  CHECK(after != before);
  CHECK_THROWS_AS(switched.set_triangle_materials(id, std::vector<std::uint8_t>(nt, 2)), hfr::Error);
  CHECK_THROWS_AS(switched.set_triangle_materials(id, std::vector<std::uint8_t>(nt + 1, 0)), hfr::Error);
}

TEST_CASE("render: inverted winding renders the same (normals face the viewer)", "[render]") {
  render::Material m = lambert({0.8f, 0.6f, 0.5f});
  m.specular_value = 0.04f;
  m.roughness_value = 0.3f;
  TriMesh a = uv_sphere(40, 80, 10, {0, 0, 100});
  TriMesh b = a;
  for (std::size_t t = 0; t < b.triangles.size(); t += 3) std::swap(b.triangles[t + 1], b.triangles[t + 2]);
  render::Scene sa, sb;
  sa.add(a, m);
  sb.add(b, m);
  sa.commit();
  sb.commit();
  const std::vector<render::Light> lights = {render::SphereLight{{60, -60, 40}, 15, {5e4f, 5e4f, 5e4f}},
                                             render::AmbientLight{{0.1f, 0.1f, 0.1f}}};
  auto o = options(48, 48, 250, 24, 24, 4);
  o.ambient_occlusion = true;
  const auto ia = render::render(sa, lights, o), ib = render::render(sb, lights, o);
  double worst = 0, peak = 0;
  for (std::size_t i = 0; i < ia.size(); ++i) worst = std::max(worst, double(std::abs(ia[i] - ib[i]))), peak = std::max(peak, double(ia[i]));
  CHECK(peak > 0.1);
  CHECK(worst < 1e-4 * peak);
}

TEST_CASE("render: pixel_to_image renders a window or a zoom of the camera image", "[render]") {
  SphereScene s(lambert({0.7f, 0.7f, 0.7f}));
  const std::vector<render::Light> lights = {render::PointLight{{30, -30, 0}, {1e4f, 1e4f, 1e4f}},
                                             render::AmbientLight{{0.05f, 0.05f, 0.05f}}};
  auto full = options(64, 64, 250, 32, 32, 64);
  const auto img = render::render(s.scene, lights, full);
  // a 20 x 16 window at (30, 22): the same pixels
  auto win = options(20, 16, 250, 32, 32, 64);
  win.pixel_to_image = {1, 0, 30, 0, 1, 22};
  const auto w = render::render(s.scene, lights, win);
  double worst = 0;
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 20; ++x)
      worst = std::max(worst, double(std::abs(w[(y * 20 + x) * 3] - img[((y + 22) * 64 + x + 30) * 3])));
  CHECK(worst < 0.02);
  // half resolution: each output pixel covers 2 x 2 camera pixels (a box filter)
  auto half = options(32, 32, 250, 32, 32, 64);
  half.pixel_to_image = {2, 0, 0, 0, 2, 0};
  const auto h = render::render(s.scene, lights, half);
  double worst_h = 0;
  for (int y = 4; y < 28; ++y)
    for (int x = 4; x < 28; ++x) {
      const double box = (img[((2 * y) * 64 + 2 * x) * 3] + img[((2 * y) * 64 + 2 * x + 1) * 3] +
                          img[((2 * y + 1) * 64 + 2 * x) * 3] + img[((2 * y + 1) * 64 + 2 * x + 1) * 3]) / 4;
      worst_h = std::max(worst_h, std::abs(h[(y * 32 + x) * 3] - box));
    }
  CHECK(worst_h < 0.03);
  win.pixel_to_image[2] = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS(render::render(s.scene, lights, win), hfr::Error);
}

TEST_CASE("render: subsurface layers split the diffuse term off, materials switch without a rebuild", "[render]") {
  render::Material skin = lambert({0.8f, 0.5f, 0.4f});
  skin.specular_value = 0.03f;
  skin.roughness_value = 0.35f;
  skin.subsurface = true;
  render::Scene scene;
  const int id = scene.add(uv_sphere(40, 80, 10, {0, 0, 100}), skin);
  scene.commit();
  const std::vector<render::Light> lights = {render::SphereLight{{60, -60, 40}, 15, {5e4f, 5e4f, 5e4f}},
                                             render::AmbientLight{{0.1f, 0.1f, 0.1f}}};
  auto o = options(48, 48, 250, 24, 24, 8);
  const auto plain = render::render(scene, lights, o);
  render::RenderLayers layers;
  const auto spec = render::render(scene, lights, o, nullptr, &layers);
  REQUIRE(layers.coverage.size() == 48u * 48u);
  REQUIRE(layers.irradiance.size() == plain.size());
  double worst = 0, peak = 0;
  int covered = 0, background = 0;
  for (std::size_t i = 0; i < layers.coverage.size(); ++i) {
    const float cov = layers.coverage[i];
    CHECK(layers.alpha[i] == cov);  // everything is skin here
    if (cov == 1) {
      ++covered;
      CHECK(layers.depth[i] > 89);
      CHECK(layers.depth[i] < 101);
      CHECK(layers.albedo[3 * i] == Approx(0.8).epsilon(1e-5));
    }
    if (cov == 0) ++background;
    for (int c = 0; c < 3; ++c) {
      const double whole = spec[3 * i + c] + cov * layers.albedo[3 * i + c] * layers.irradiance[3 * i + c];
      // exact where the albedo is constant within the pixel (it is here)
      worst = std::max(worst, std::abs(whole - plain[3 * i + c]));
      peak = std::max(peak, double(plain[3 * i + c]));
      CHECK(spec[3 * i + c] <= plain[3 * i + c] + 1e-6);
    }
  }
  CHECK(covered > 300);
  CHECK(background > 300);
  CHECK(worst < 1e-5 * peak);
  // set_material: the same image as a scene built with the other material
  render::Material grey = lambert({0.3f, 0.3f, 0.3f});
  scene.set_material(id, grey);
  const auto switched = render::render(scene, lights, o);
  render::Scene fresh;
  fresh.add(uv_sphere(40, 80, 10, {0, 0, 100}), grey);
  fresh.commit();
  CHECK(switched == render::render(fresh, lights, o));
  CHECK_THROWS_AS(scene.set_material(5, grey), hfr::Error);
}

TEST_CASE("render: bands traced together match separate renders", "[render]") {
  // Point lights and no AO: no light samples, so each band must equal render() with its materials exactly.
  render::Material skin = lambert({0.8f, 0.5f, 0.4f});
  skin.specular_value = 0.03f;
  skin.roughness_value = 0.35f;
  skin.subsurface = true;
  render::Material grey = lambert({0.3f, 0.3f, 0.3f});
  grey.specular_value = 0.05f;
  grey.roughness_value = 0.2f;
  render::Scene scene;
  const int id = scene.add(uv_sphere(40, 80, 10, {0, 0, 100}), skin);
  scene.commit();
  const std::vector<render::Light> vis = {render::PointLight{{60, -60, 40}, {5e4f, 4e4f, 3e4f}},
                                          render::AmbientLight{{0.1f, 0.1f, 0.2f}}};
  const std::vector<render::Light> nir = {render::PointLight{{0, 0, 0}, {4e4f, 4e4f, 4e4f}}};
  auto o = options(40, 40, 250, 20, 20, 4);
  render::RenderLayers lv, ln, bv, bn;
  const auto a = render::render(scene, vis, o, nullptr, &lv);
  scene.set_material(id, grey);
  o.channels = 1;
  const auto b = render::render(scene, nir, o, nullptr, &ln);
  scene.set_material(id, skin);
  std::vector<render::Band> bands(2);
  bands[0].lights = vis;
  bands[0].channels = 3;
  bands[0].layers = &bv;
  bands[1].lights = nir;
  bands[1].channels = 1;
  bands[1].materials = {{grey}};
  bands[1].layers = &bn;
  render::RenderStats st;
  const auto both = render::render_bands(scene, bands, o, &st);
  REQUIRE(both.size() == 2u);
  CHECK(both[0] == a);
  CHECK(both[1] == b);
  CHECK(bv.irradiance == lv.irradiance);
  CHECK(bv.coverage == lv.coverage);
  CHECK(bn.alpha == ln.alpha);
  CHECK(bn.coverage == ln.coverage);  // grey is not subsurface: none
  CHECK(st.primary_rays == 40u * 40u * 4u);
  // with AO and sphere lights each band keeps its mean (another random stream)
  o.ambient_occlusion = true;
  bands[0].lights = {render::SphereLight{{60, -60, 40}, 10, {5e4f, 4e4f, 3e4f}}, render::AmbientLight{{0.1f, 0.1f, 0.2f}}};
  bands[1].lights = {render::SphereLight{{0, 0, 0}, 3, {4e4f, 4e4f, 4e4f}}, render::AmbientLight{{0.05f, 0.05f, 0.05f}}};
  o.spp = 64;
  bands[0].layers = bands[1].layers = nullptr;
  const auto avg = render::render_bands(scene, bands, o);
  o.channels = 3;
  const auto ra = render::render(scene, bands[0].lights, o);
  scene.set_material(id, grey);
  o.channels = 1;
  const auto rb = render::render(scene, bands[1].lights, o);
  double sa = 0, sb = 0, ta = 0, tb = 0;
  for (std::size_t i = 0; i < ra.size(); ++i) sa += avg[0][i], ta += ra[i];
  for (std::size_t i = 0; i < rb.size(); ++i) sb += avg[1][i], tb += rb[i];
  CHECK(sa == Approx(ta).epsilon(0.01));
  CHECK(sb == Approx(tb).epsilon(0.01));
  // bad bands
  bands[1].materials = {{grey, grey}};
  CHECK_THROWS_AS(render::render_bands(scene, bands, o), hfr::Error);
  CHECK_THROWS_AS(render::render_bands(scene, {}, o), hfr::Error);
}

TEST_CASE("render: a red patch on skin loses its contrast in NIR (NIST-fitted albedo transform)", "[render]") {
  // a skin-coloured card with a blood-red patch (linear RGB albedo), rendered
  // in VIS (luminance) and at 850 nm with hfr's VIS -> NIR skin transform
  const std::array<double, 3> skin = {0.62, 0.42, 0.34}, red = {0.45, 0.12, 0.1};
  const int S = 16;
  render::Texture vis{S, S, 3, {}}, nir{S, S, 1, {}};
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) {
      const bool patch = x >= 5 && x < 11 && y >= 5 && y < 11;
      const auto& a = patch ? red : skin;
      for (int c = 0; c < 3; ++c) vis.data.push_back(static_cast<float>(a[c]));
      nir.data.push_back(static_cast<float>(hfr::spectral::nir_albedo(a, hfr::spectral::Band::nir850)));
    }
  auto render_card = [&](const render::Texture& t, int channels) {
    render::Material m = lambert();
    m.albedo = &t;
    render::Scene scene;
    scene.add(quad(-10, 10, -10, 10, 100), m);
    scene.commit();
    auto o = options(64, 64, 500, 32, 32, 4);
    o.channels = channels;
    return render::render(scene, {render::PointLight{{0, 0, 0}, {1e4f, 1e4f, 1e4f}}}, o);
  };
  const auto v = render_card(vis, 3), n = render_card(nir, 1);
  auto lum = [&](int x, int y) {
    const float* p = &v[(y * 64 + x) * 3];
    return 0.2126 * p[0] + 0.7152 * p[1] + 0.0722 * p[2];
  };
  const double vis_contrast = (lum(6, 32) - lum(32, 32)) / (lum(6, 32) + lum(32, 32));
  const double nir_contrast = (n[32 * 64 + 6] - n[32 * 64 + 32]) / (n[32 * 64 + 6] + n[32 * 64 + 32]);
  CHECK(vis_contrast > 0.3);
  CHECK(nir_contrast >= 0);
  CHECK(nir_contrast < vis_contrast / 3);
}

TEST_CASE("render: bad input is an error", "[render]") {
  render::Scene scene;
  TriMesh bad = quad(-1, 1, -1, 1, 10);
  bad.positions[4] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(scene.add(bad, lambert()), hfr::Error);
  bad = quad(-1, 1, -1, 1, 10);
  bad.triangles[5] = 4;
  CHECK_THROWS_AS(scene.add(bad, lambert()), hfr::Error);
  bad = quad(-1, 1, -1, 1, 10);
  bad.triangles[0] = -1;
  CHECK_THROWS_AS(scene.add(bad, lambert()), hfr::Error);
  bad = quad(-1, 1, -1, 1, 10);
  bad.uv_triangles[2] = 9;
  CHECK_THROWS_AS(scene.add(bad, lambert()), hfr::Error);
  render::Texture wrong{2, 2, 1, {1, 2, 3}};
  render::Material tm = lambert();
  tm.albedo = &wrong;
  CHECK_THROWS_AS(scene.add(quad(-1, 1, -1, 1, 10), tm), hfr::Error);

  scene.add(quad(-1, 1, -1, 1, 10), lambert());
  const std::vector<render::Light> lights = {render::AmbientLight{{1, 1, 1}}};
  auto o = options(8, 8, 10, 4, 4, 1);
  CHECK_THROWS_AS(render::render(scene, lights, o), hfr::Error);  // not committed
  scene.commit();
  CHECK_NOTHROW(render::render(scene, lights, o));
  for (int which = 0; which < 6; ++which) {
    auto b = o;
    if (which == 0) b.spp = 0;
    if (which == 1) b.width = 0;
    if (which == 2) b.height = -3;
    if (which == 3) b.channels = 4;
    if (which == 4) b.camera.fx = 0;
    if (which == 5) b.camera.cy = std::numeric_limits<double>::infinity();
    INFO("case " << which);
    CHECK_THROWS_AS(render::render(scene, lights, b), hfr::Error);
  }
  CHECK_THROWS_AS(render::render(scene, {render::SphereLight{{0, 0, 0}, 0.0, {1, 1, 1}}}, o), hfr::Error);
  CHECK_THROWS_AS(render::render(scene, {render::PointLight{{0, std::nan(""), 0}, {1, 1, 1}}}, o), hfr::Error);
}

TEST_CASE("render: speed (rays per second, one thread)", "[.][render-bench]") {
  SphereScene s;
  auto o = options(256, 256, 1000, 128, 128, 16);  // the sphere covers ~ 10,000 px... enlarged below
  o.camera.fx = o.camera.fy = 1100;                 // projected radius ~ 110 px
  const std::vector<render::Light> lights = {render::SphereLight{{60, -60, 40}, 5, {5e4f, 5e4f, 5e4f}},
                                             render::PointLight{{0, 0, 0}, {1e4f, 1e4f, 1e4f}},
                                             render::AmbientLight{{0.1f, 0.1f, 0.1f}}};
  render::RenderStats stats;
  const auto t0 = std::chrono::steady_clock::now();
  render::render(s.scene, lights, o, &stats);
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double rays = double(stats.primary_rays + stats.shadow_rays);
  WARN("256x256 @16 spp, 1 thread: " << stats.primary_rays << " primary + " << stats.shadow_rays << " shadow rays in "
                                     << sec << " s = " << rays / sec / 1e6 << " Mrays/s");
}
