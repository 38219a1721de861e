#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "hfr/error.hpp"
#include "hfr/subsurface.hpp"

namespace sss = hfr::subsurface;

namespace {

// A fronto-parallel plane at depth z (cm) filling a w x h image: coverage 1,
// constant albedo, no irradiance.
sss::Layers plane(int w, int h, int c, float z, float albedo) {
  sss::Layers L;
  L.width = w, L.height = h, L.channels = c;
  const std::size_t n = static_cast<std::size_t>(w) * h;
  L.irradiance.assign(n * c, 0.0f);
  L.albedo.assign(n * c, albedo);
  L.coverage.assign(n, 1.0f);
  L.depth.assign(n, z);
  return L;
}

std::vector<float> run(const sss::Layers& L, const sss::Profile& p, double mm_per_px_at_1cm, int threads = 1) {
  std::vector<float> r(L.irradiance.size(), 0.0f);
  sss::scatter(L, p, mm_per_px_at_1cm, r, threads);
  return r;
}

// Random layers that look a little like a face crop: a sphere-ish depth bump
// (z 45..55 cm), coverage 0 in the corners and fractional at the rim, random
// albedo and irradiance.
sss::Layers random_face(int w, int h, int c, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0, 1);
  sss::Layers L;
  L.width = w, L.height = h, L.channels = c;
  const std::size_t n = static_cast<std::size_t>(w) * h;
  L.irradiance.resize(n * c);
  L.albedo.resize(n * c);
  L.coverage.resize(n);
  L.depth.resize(n);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const std::size_t i = static_cast<std::size_t>(y) * w + x;
      const double dx = (x + 0.5) / w - 0.5, dy = (y + 0.5) / h - 0.5;
      const double r2 = (dx * dx + dy * dy) / 0.2;
      L.coverage[i] = r2 >= 1 ? 0.0f : (r2 > 0.9 ? u(rng) : 1.0f);
      L.depth[i] = r2 >= 1 ? std::numeric_limits<float>::quiet_NaN() : static_cast<float>(55 - 10 * std::sqrt(1 - r2));
      for (int k = 0; k < c; ++k) {
        L.albedo[i * c + k] = 0.2f + 0.6f * u(rng);
        L.irradiance[i * c + k] = u(rng) < 0.3f ? 0.0f : 2 * u(rng);
      }
    }
  return L;
}

struct Spread {
  double sum[3] = {0, 0, 0};
  double var_x[3] = {0, 0, 0}, var_y[3] = {0, 0, 0};  // mm^2
};

// Scatter a single lit pixel (E = 1) in the middle of an n x n plane at
// depth z, and measure the output's total and second moments per channel.
Spread single_pixel(const sss::Profile& p, int n, float z, double mm_per_px_at_1cm, float albedo) {
  const int C = p.channels;
  sss::Layers L = plane(n, n, C, z, albedo);
  const int m = n / 2;
  for (int c = 0; c < C; ++c) L.irradiance[(static_cast<std::size_t>(m) * n + m) * C + c] = 1;
  const auto r = run(L, p, mm_per_px_at_1cm);
  const double s = z * mm_per_px_at_1cm;  // mm per pixel
  Spread out;
  for (int c = 0; c < C; ++c) {
    double sum = 0, sxx = 0, syy = 0;
    for (int y = 0; y < n; ++y)
      for (int x = 0; x < n; ++x) {
        const double v = r[(static_cast<std::size_t>(y) * n + x) * C + c];
        sum += v, sxx += v * (x - m) * (x - m), syy += v * (y - m) * (y - m);
      }
    out.sum[c] = sum;
    out.var_x[c] = sxx / sum * s * s;
    out.var_y[c] = syy / sum * s * s;
  }
  return out;
}

// An image big enough that every pixel the lit one reaches sees its whole kernel.
int size_for(const sss::Profile& p, float z, double mm_per_px_at_1cm) {
  double vmax = 0;
  for (double v : p.variance_mm2) vmax = std::max(vmax, v);
  const int R = static_cast<int>(std::ceil(3 * std::sqrt(vmax) / (z * mm_per_px_at_1cm)));
  return 4 * R + 5;
}

}  // namespace

TEST_CASE("subsurface: a zero-width profile gives cov * a * E", "[subsurface]") {
  sss::Profile delta;
  delta.channels = 3;
  delta.variance_mm2 = {1e-12};
  delta.weight = {{1, 2, 3}};
  sss::Layers L = random_face(40, 30, 3, 7);
  std::vector<float> r(L.irradiance.size(), 0.25f);
  sss::scatter(L, delta, 0.02, r);
  for (std::size_t i = 0; i < L.coverage.size(); ++i)
    for (int c = 0; c < 3; ++c) {
      const float cov = L.coverage[i];
      if (cov == 0) {
        REQUIRE(r[i * 3 + c] == 0.25f);  // nothing added, exactly
      } else {
        const double want = cov * L.albedo[i * 3 + c] * L.irradiance[i * 3 + c];
        REQUIRE(r[i * 3 + c] - 0.25 == Approx(want).margin(1e-6));
      }
    }

  // An exact delta (variance 0) too, one channel.
  delta.channels = 1;
  delta.variance_mm2 = {0};
  sss::Layers L1 = random_face(25, 20, 1, 8);
  const auto r1 = run(L1, delta, 0.02);
  for (std::size_t i = 0; i < L1.coverage.size(); ++i)
    REQUIRE(r1[i] == Approx(L1.coverage[i] * L1.albedo[i] * L1.irradiance[i]).margin(1e-6));
}

TEST_CASE("subsurface: uniform light on a uniform plane stays uniform", "[subsurface]") {
  const auto vis = sss::skin_visible();
  for (double mm : {0.005, 0.02, 0.04}) {  // 0.25, 1, 2 mm per pixel at 50 cm
    sss::Layers L = plane(48, 40, 3, 50, 0.5f);
    for (std::size_t i = 0; i < L.coverage.size(); ++i) {
      L.irradiance[i * 3 + 0] = 2, L.irradiance[i * 3 + 1] = 1, L.irradiance[i * 3 + 2] = 0.5f;
      L.coverage[i] = 0.75f;
    }
    const auto r = run(L, vis, mm);
    for (std::size_t i = 0; i < L.coverage.size(); ++i) {
      REQUIRE(r[i * 3 + 0] == Approx(0.75 * 0.5 * 2).epsilon(1e-5));
      REQUIRE(r[i * 3 + 1] == Approx(0.75 * 0.5 * 1).epsilon(1e-5));
      REQUIRE(r[i * 3 + 2] == Approx(0.75 * 0.5 * 0.5).epsilon(1e-5));
    }
  }
  // A plane tilted by 45 degrees about the vertical axis: still uniform.
  sss::Layers T = plane(60, 20, 1, 50, 0.3f);
  for (int y = 0; y < 20; ++y)
    for (int x = 0; x < 60; ++x) {
      T.depth[static_cast<std::size_t>(y) * 60 + x] = 50 + 0.1f * x;  // 1 mm deeper per 1 mm pixel
      T.irradiance[static_cast<std::size_t>(y) * 60 + x] = 1;
    }
  const auto rt = run(T, sss::skin_nir(850), 0.02);
  for (float v : rt) REQUIRE(v == Approx(0.3).epsilon(1e-5));
}

TEST_CASE("subsurface: a lit pixel's energy is conserved and its spread is the profile's", "[subsurface]") {
  const auto vis = sss::skin_visible();
  const auto nir = sss::skin_nir(850);
  for (double mm : {0.005, 0.02, 0.04}) {  // 0.25, 1, 2 mm per pixel at 50 cm
    CAPTURE(mm);
    const Spread v = single_pixel(vis, size_for(vis, 50, mm), 50, mm, 0.6f);
    for (int c = 0; c < 3; ++c) {
      CAPTURE(c);
      const double want = sss::profile_variance_mm2(vis, c);
      CHECK(v.sum[c] == Approx(0.6).epsilon(0.01));
      CHECK(v.var_x[c] == Approx(want).epsilon(0.10));
      CHECK(v.var_y[c] == Approx(want).epsilon(0.10));
    }
    // red scatters farther than green, green farther than blue
    CHECK(v.var_x[0] > 3 * v.var_x[1]);
    CHECK(v.var_x[1] > v.var_x[2]);

    const Spread n = single_pixel(nir, size_for(nir, 50, mm), 50, mm, 0.6f);
    const double want = sss::profile_variance_mm2(nir, 0);
    CHECK(n.sum[0] == Approx(0.6).epsilon(0.01));
    CHECK(n.var_x[0] == Approx(want).epsilon(0.10));
    CHECK(n.var_y[0] == Approx(want).epsilon(0.10));
    CHECK(n.var_x[0] > 2 * v.var_x[0]);  // NIR 850 nm wider than red
  }

  // A very fine scale (0.05 mm per pixel: a 3-sigma radius of 164 px, where
  // the kernel tables get coarser), along x only: a 5-row strip.
  const double mm = 0.001;
  const int W = 661, H = 5, m = W / 2;
  sss::Layers L = plane(W, H, 3, 50, 0.6f);
  for (int c = 0; c < 3; ++c) L.irradiance[(static_cast<std::size_t>(2) * W + m) * 3 + c] = 1;
  const auto r = run(L, vis, mm);
  for (int c = 0; c < 3; ++c) {
    double sum = 0, sxx = 0;
    for (int x = 0; x < W; ++x) {
      const double val = r[(static_cast<std::size_t>(2) * W + x) * 3 + c];
      sum += val, sxx += val * (x - m) * (x - m);
    }
    CHECK(sxx / sum * 0.05 * 0.05 == Approx(sss::profile_variance_mm2(vis, c)).epsilon(0.10));
  }
}

TEST_CASE("subsurface: profiles and tissue optics", "[subsurface]") {
  const auto vis = sss::skin_visible();
  REQUIRE(vis.variance_mm2.size() == 6);
  for (int c = 0; c < 3; ++c) {
    double s = 0;
    for (const auto& w : vis.weight) s += w[c];
    CHECK(s == Approx(1).epsilon(1e-3));  // d'Eon & Luebke's weights sum to one per channel
  }
  CHECK(sss::profile_variance_mm2(vis, 0) == Approx(1.3829).epsilon(1e-3));
  CHECK(sss::profile_variance_mm2(vis, 1) == Approx(0.0681).epsilon(2e-3));
  CHECK(sss::profile_variance_mm2(vis, 2) == Approx(0.0248).epsilon(2e-3));

  // The table in docs/subsurface.md (default dermis: 1 % blood at SO2 75 %, 65 % water).
  struct Row {
    double nm, mua, musp, delta_mm;
  };
  const Row rows[] = {{450, 5.699, 53.43, 0.315},
                      {550, 3.376, 40.17, 0.476},
                      {633, 0.6788, 32.90, 1.209},
                      {850, 0.3062, 21.64, 2.227},
                      {940, 0.4107, 18.76, 2.058}};
  for (const Row& r : rows) {
    CAPTURE(r.nm);
    CHECK(sss::absorption_per_cm(r.nm) == Approx(r.mua).epsilon(2e-3));
    CHECK(sss::reduced_scattering_per_cm(r.nm) == Approx(r.musp).epsilon(2e-3));
    CHECK(10 * sss::diffusion_length_cm(r.nm) == Approx(r.delta_mm).epsilon(2e-3));
  }
  // NIR penetrates deeper than red; water's 970 nm band pulls 940 back below 850.
  const double d633 = sss::diffusion_length_cm(633), d850 = sss::diffusion_length_cm(850),
               d940 = sss::diffusion_length_cm(940);
  CHECK(d850 > 1.5 * d633);
  CHECK(d940 < d850);
  CHECK(d940 > d633);
  // Over the whole 0.2-2 % blood range 850 nm stays wider than red.
  for (double blood : {0.002, 0.02}) {
    sss::Dermis d;
    d.blood = blood;
    CHECK(sss::diffusion_length_cm(850, d) > 1.5 * sss::diffusion_length_cm(633, d));
  }
  const auto nir = sss::skin_nir(850);
  REQUIRE(nir.channels == 1);
  const double ratio = d850 / d633;
  for (std::size_t k = 0; k < nir.variance_mm2.size(); ++k) {
    CHECK(nir.variance_mm2[k] == Approx(vis.variance_mm2[k] * ratio * ratio));
    CHECK(nir.weight[k][0] == vis.weight[k][0]);
  }
  CHECK_THROWS_AS(sss::diffusion_length_cm(400), hfr::Error);
  CHECK_THROWS_AS(sss::diffusion_length_cm(1100), hfr::Error);
  CHECK_THROWS_AS(sss::skin_nir(std::nan("")), hfr::Error);
  sss::Dermis bad;
  bad.blood = 1.5;
  CHECK_THROWS_AS(sss::absorption_per_cm(850, bad), hfr::Error);
}

TEST_CASE("subsurface: no light across depth discontinuities", "[subsurface]") {
  const auto vis = sss::skin_visible();
  const auto nir = sss::skin_nir(850);
  // Left half at z_left, right half at z_right; the left half lit. The
  // scaled pixel pitch is 1 mm at 50 cm.
  auto right_max = [](const sss::Profile& p, float z_left, float z_right) {
    const int W = 64, H = 24, C = p.channels;
    sss::Layers L = plane(W, H, C, z_left, 0.5f);
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        const std::size_t i = static_cast<std::size_t>(y) * W + x;
        if (x >= W / 2)
          L.depth[i] = z_right;
        else
          for (int c = 0; c < C; ++c) L.irradiance[i * C + c] = 1;
      }
    const auto r = run(L, p, 0.02);
    double m = 0;
    for (int y = 0; y < H; ++y)
      for (int x = W / 2; x < W; ++x)
        for (int c = 0; c < C; ++c) m = std::max(m, double(r[(static_cast<std::size_t>(y) * W + x) * C + c]));
    return m;
  };
  for (const auto* p : {&vis, &nir}) {
    CHECK(right_max(*p, 50, 50) > 0.01);   // control: one plane, the light does cross
    CHECK(right_max(*p, 100, 50) < 1e-6);  // a lit far plane beside an unlit near plane
    CHECK(right_max(*p, 50, 100) < 1e-6);  // a lit near plane beside an unlit far plane
    CHECK(right_max(*p, 50, 52) < 1e-6);   // a nose-sized step: 2 cm
  }
}

TEST_CASE("subsurface: coverage 0 neither gives nor receives, no NaN", "[subsurface]") {
  const auto vis = sss::skin_visible();
  sss::Layers L = random_face(50, 40, 3, 3);
  // garbage where nothing was hit
  for (std::size_t i = 0; i < L.coverage.size(); ++i)
    if (L.coverage[i] == 0)
      for (int c = 0; c < 3; ++c) {
        L.albedo[i * 3 + c] = std::numeric_limits<float>::quiet_NaN();
        L.irradiance[i * 3 + c] = std::numeric_limits<float>::infinity();
      }
  std::vector<float> r(L.irradiance.size(), 1.5f);
  sss::scatter(L, vis, 0.02, r, 2);
  for (std::size_t i = 0; i < L.coverage.size(); ++i)
    for (int c = 0; c < 3; ++c) {
      REQUIRE(std::isfinite(r[i * 3 + c]));
      if (L.coverage[i] == 0)
        REQUIRE(r[i * 3 + c] == 1.5f);
      else
        REQUIRE(r[i * 3 + c] >= 1.5f);
    }

  // An uncovered column (a thin occluder, or background) between two halves
  // of one surface: it receives nothing, but the surface around it still
  // exchanges light under it; only depth separates surfaces.
  sss::Layers G = plane(41, 9, 1, 50, 0.5f);
  for (int y = 0; y < 9; ++y) {
    G.coverage[static_cast<std::size_t>(y) * 41 + 20] = 0;
    for (int x = 0; x < 20; ++x) G.irradiance[static_cast<std::size_t>(y) * 41 + x] = 1;
  }
  const auto rg = run(G, sss::skin_nir(850), 0.02);
  for (int y = 0; y < 9; ++y) {
    REQUIRE(rg[static_cast<std::size_t>(y) * 41 + 20] == 0.0f);
    REQUIRE(rg[static_cast<std::size_t>(y) * 41 + 21] > 0.01f);
  }

  // Nothing covered at all.
  sss::Layers Z = plane(16, 12, 3, 50, 0.5f);
  std::fill(Z.coverage.begin(), Z.coverage.end(), 0.0f);
  std::fill(Z.depth.begin(), Z.depth.end(), std::numeric_limits<float>::quiet_NaN());
  std::fill(Z.irradiance.begin(), Z.irradiance.end(), 1.0f);
  std::vector<float> rz(Z.irradiance.size(), 0.0f);
  sss::scatter(Z, vis, 0.02, rz);
  for (float v : rz) REQUIRE(v == 0.0f);
}

TEST_CASE("subsurface: bad input throws", "[subsurface]") {
  const auto vis = sss::skin_visible();
  const sss::Layers good = plane(8, 6, 3, 50, 0.5f);
  std::vector<float> r(good.irradiance.size(), 0.0f);
  REQUIRE_NOTHROW(sss::scatter(good, vis, 0.02, r));

  auto throws = [&](sss::Layers L, const sss::Profile& p, double mm, std::size_t rsize, const char* what) {
    std::vector<float> out(rsize, 0.0f);
    try {
      sss::scatter(L, p, mm, out);
      FAIL("no error for: " << what);
    } catch (const hfr::Error& e) {
      INFO(what << ": " << e.what());
      CHECK(std::string(e.what()).find("subsurface") != std::string::npos);
    }
  };
  const std::size_t n = r.size();
  sss::Layers L = good;
  L.irradiance.pop_back();
  throws(L, vis, 0.02, n, "irradiance size");
  L = good;
  L.albedo.push_back(1);
  throws(L, vis, 0.02, n, "albedo size");
  L = good;
  L.coverage.pop_back();
  throws(L, vis, 0.02, n, "coverage size");
  L = good;
  L.depth.clear();
  throws(L, vis, 0.02, n, "depth size");
  throws(good, vis, 0.02, n - 1, "radiance size");
  L = good;
  L.width = 0;
  throws(L, vis, 0.02, n, "zero width");
  throws(good, vis, std::nan(""), n, "NaN scale");
  throws(good, vis, std::numeric_limits<double>::infinity(), n, "infinite scale");
  throws(good, vis, 0, n, "zero scale");
  throws(good, vis, -0.02, n, "negative scale");
  throws(good, sss::skin_nir(850), 0.02, n, "profile 1 channel, layers 3");
  sss::Profile p = vis;
  p.weight.pop_back();
  throws(good, p, 0.02, n, "weights != variances");
  p = vis;
  p.variance_mm2[2] = -1;
  throws(good, p, 0.02, n, "negative variance");
  p = vis;
  p.variance_mm2[2] = std::nan("");
  throws(good, p, 0.02, n, "NaN variance");
  p = vis;
  for (auto& w : p.weight) w[2] = 0;
  throws(good, p, 0.02, n, "a channel without weight");
  p = vis;
  p.variance_mm2.clear(), p.weight.clear();
  throws(good, p, 0.02, n, "empty profile");
  L = good;
  L.coverage[3] = 1.5f;
  throws(L, vis, 0.02, n, "coverage > 1");
  L = good;
  L.coverage[3] = std::nan("");
  throws(L, vis, 0.02, n, "NaN coverage");
  L = good;
  L.depth[3] = 0;
  throws(L, vis, 0.02, n, "depth 0 where covered");
  L = good;
  L.depth[3] = std::numeric_limits<float>::infinity();
  throws(L, vis, 0.02, n, "infinite depth where covered");
  L = good;
  L.albedo[4] = -0.1f;
  throws(L, vis, 0.02, n, "negative albedo");
  L = good;
  L.irradiance[4] = std::nan("");
  throws(L, vis, 0.02, n, "NaN irradiance where covered");
}

TEST_CASE("subsurface: the result does not depend on the thread count", "[subsurface]") {
  for (int C : {1, 3}) {
    const auto p = C == 1 ? sss::skin_nir(850) : sss::skin_visible();
    const sss::Layers L = random_face(70, 53, C, 11 + C);
    const auto r1 = run(L, p, 0.03, 1);
    const auto r2 = run(L, p, 0.03, 2);
    const auto r5 = run(L, p, 0.03, 5);
    REQUIRE(r1.size() == r2.size());
    CHECK(std::equal(r1.begin(), r1.end(), r2.begin()));
    CHECK(std::equal(r1.begin(), r1.end(), r5.begin()));
    // a weighted mean: cov_i sqrt(a_i) times something between the smallest
    // and largest sqrt(a_j) E_j of the covered pixels
    for (int c = 0; c < C; ++c) {
      double lo = 1e30, hi = -1e30;
      for (std::size_t i = 0; i < L.coverage.size(); ++i)
        if (L.coverage[i] > 0) {
          const double v = std::sqrt(double(L.albedo[i * C + c])) * L.irradiance[i * C + c];
          lo = std::min(lo, v), hi = std::max(hi, v);
        }
      for (std::size_t i = 0; i < L.coverage.size(); ++i) {
        const double f = L.coverage[i] * std::sqrt(double(L.albedo[i * C + c]));
        REQUIRE(r1[i * C + c] >= f * lo - 1e-5);
        REQUIRE(r1[i * C + c] <= f * hi + 1e-5);
      }
    }
    // and it did something: not just cov * a * E
    double diff = 0;
    for (std::size_t i = 0; i < L.coverage.size(); ++i)
      for (int c = 0; c < C; ++c)
        diff = std::max(
            diff, std::abs(r1[i * C + c] - double(L.coverage[i]) * L.albedo[i * C + c] * L.irradiance[i * C + c]));
    CHECK(diff > 0.1);
  }
}

TEST_CASE("subsurface: kernels kept from earlier calls give the same result", "[subsurface]") {
  // scatter keeps kernels per thread: a new thread makes them all, this one
  // (after other profiles and pixel sizes) reuses some
  const auto vis = sss::skin_visible();
  const sss::Layers L = random_face(70, 53, 3, 7);
  std::vector<float> fresh;
  std::thread([&] { fresh = run(L, vis, 0.03); }).join();
  run(random_face(40, 30, 1, 3), sss::skin_nir(940), 0.05);
  run(L, vis, 0.031);
  for (int k = 0; k < 2; ++k) {
    const auto again = run(L, vis, 0.03);
    REQUIRE(again.size() == fresh.size());
    CHECK(std::memcmp(again.data(), fresh.data(), fresh.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("subsurface: the AVX2 and SSE2 passes give the same bits", "[subsurface]") {
  // 8 receivers at a time (AVX2, where the CPU has it) or 4 (SSE2): widths
  // that are not multiples of 8, both channel counts, depth steps
  for (int C : {1, 3})
    for (int w : {70, 13, 8}) {
      const auto p = C == 1 ? sss::skin_nir(850) : sss::skin_visible();
      const sss::Layers L = random_face(w, 53, C, 5 + C + w);
      const auto a = run(L, p, 0.03);
      setenv("HFR_RENDER_SIMD", "sse", 1);
      const auto b = run(L, p, 0.03);
      unsetenv("HFR_RENDER_SIMD");
      REQUIRE(a.size() == b.size());
      CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
    }
}

TEST_CASE("subsurface: speed (one thread)", "[.][subsurface-bench]") {
  const auto vis = sss::skin_visible();
  const auto nir = sss::skin_nir(850);
  for (int n : {112, 512})
    for (double mm_at_50cm : {1.0, 2.0})
      for (int C : {3, 1}) {
        const auto& p = C == 3 ? vis : nir;
        sss::Layers L = random_face(n, n, C, 5);
        std::fill(L.coverage.begin(), L.coverage.end(), 1.0f);  // every pixel skin: the worst case
        for (auto& z : L.depth)
          if (!std::isfinite(z)) z = 55;
        std::vector<float> r(L.irradiance.size(), 0.0f);
        const double mm = mm_at_50cm / 50;
        sss::scatter(L, p, mm, r);  // warm-up
        int reps = n == 112 ? 200 : 10;
        const auto t0 = std::chrono::steady_clock::now();
        for (int k = 0; k < reps; ++k) sss::scatter(L, p, mm, r);
        const double ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
        WARN(n << "x" << n << (C == 3 ? " VIS" : " NIR850") << ", " << mm_at_50cm << " mm/px at 50 cm: " << ms
               << " ms");
      }
}
