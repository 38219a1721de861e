// VIS -> NIR albedo (hfr/spectral.hpp, docs/spectral.md). Tests that need the
// NIST skin data in ../shared/data/skin_spectra skip with a message without it.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <vector>

#include "hfr/error.hpp"
#include "hfr/spectral.hpp"

namespace sp = hfr::spectral;
using sp::Band;
using sp::Region;

namespace {

#ifdef HFR_SHARED_DATA
const std::string kSkinDir = std::string(HFR_SHARED_DATA) + "/skin_spectra";
#else
const std::string kSkinDir = "../shared/data/skin_spectra";
#endif

bool have_nist() {
  if (std::filesystem::exists(kSkinDir + "/nist_skin_avg_5wl.csv")) return true;
  WARN("skipped: NIST skin data not found under " + kSkinDir);
  return false;
}

std::vector<sp::SkinSample> nist() { return sp::read_nist_skin(kSkinDir + "/nist_skin_avg_5wl.csv"); }

// hfr's albedo order: R, G, B ~ 649, 541, 451 nm.
std::array<double, 3> rgb_of(const std::array<double, 5>& r) { return {r[2], r[1], r[0]}; }

}  // namespace

TEST_CASE("spectral: the compiled-in chromophore table equals the CSV", "[spectral]") {
  if (!std::filesystem::exists(kSkinDir + "/chromophore_table.csv")) {
    WARN("skipped: chromophore_table.csv not found under " + kSkinDir);
    return;
  }
  const auto f = sp::read_chromophore_table(kSkinDir + "/chromophore_table.csv");
  const auto& c = sp::builtin_chromophores();
  for (int b = 0; b < 5; ++b) {
    CHECK(f.melanosome[b] == Approx(c.melanosome[b]));
    CHECK(f.baseline[b] == Approx(c.baseline[b]));
    CHECK(f.blood_s98[b] == Approx(c.blood_s98[b]));
    CHECK(f.blood_s75[b] == Approx(c.blood_s75[b]));
    CHECK(f.water[b] == Approx(c.water[b]));
    CHECK(f.musp[b] == Approx(c.musp[b]));
  }
}

TEST_CASE("spectral: refitting on the NIST data reproduces the shipped constants", "[spectral]") {
  if (!have_nist()) return;
  const auto d = nist();
  REQUIRE(d.size() == 100);
  const auto m = sp::fit_model(d);
  const auto& b = sp::builtin_model();
  for (int k = 0; k < 4; ++k) {
    CHECK(m.linear850[k] == Approx(b.linear850[k]).margin(1e-4));
    CHECK(m.linear940[k] == Approx(b.linear940[k]).margin(1e-4));
  }
  for (int k = 0; k < 3; ++k) CHECK(m.log_sum_from_chroma[k] == Approx(b.log_sum_from_chroma[k]).margin(1e-4));
  CHECK(m.epi_path_cm == Approx(b.epi_path_cm).epsilon(0.05));
  CHECK(m.water == Approx(b.water).margin(0.02));
  CHECK(m.so2 == Approx(b.so2).margin(0.02));
  CHECK(m.gain == Approx(b.gain).epsilon(0.03));
  CHECK(m.scatter == Approx(b.scatter).epsilon(0.05));
}

TEST_CASE("spectral: the physics reproduces the NIST means, the transform its NIR means", "[spectral]") {
  if (!have_nist()) return;
  const auto d = nist();
  std::array<double, 5> data{}, model{};
  double nir850 = 0, nir940 = 0;
  for (const auto& s : d) {
    const auto p = sp::invert_vis({s.r[0], s.r[1], s.r[2]});
    const auto r = sp::skin_reflectance(p);
    for (int b = 0; b < 5; ++b) data[b] += s.r[b] / d.size(), model[b] += r[b] / d.size();
    nir850 += sp::nir_albedo(rgb_of(s.r), Band::nir850) / d.size();
    nir940 += sp::nir_albedo(rgb_of(s.r), Band::nir940) / d.size();
  }
  for (int b = 0; b < 5; ++b) CHECK(model[b] == Approx(data[b]).margin(0.015));
  CHECK(nir850 == Approx(data[3]).margin(0.002));
  CHECK(nir940 == Approx(data[4]).margin(0.002));
}

TEST_CASE("spectral: cross-validated NIR error beats the mean-value baseline", "[spectral]") {
  if (!have_nist()) return;
  const auto cv = sp::cross_validate(nist(), 10);
  // Measured (docs/spectral.md): 850 nm mean 0.0329, linear 0.0198, physics 0.0252,
  // hybrid 0.0220, scale-free 0.0296; 940 nm 0.0236 / 0.0195 / 0.0226 / 0.0211 / 0.0233.
  CHECK(cv.mean_baseline[0].rmse == Approx(0.0329).margin(0.001));
  CHECK(cv.linear_regression[0].rmse < 0.0215);
  CHECK(cv.linear_regression[0].rmse < 0.7 * cv.mean_baseline[0].rmse);
  CHECK(cv.physics[0].rmse < 0.0275);
  CHECK(cv.physics[0].rmse < cv.mean_baseline[0].rmse);
  CHECK(cv.hybrid[0].rmse < cv.physics[0].rmse);
  CHECK(cv.scale_free[0].rmse < cv.mean_baseline[0].rmse);
  CHECK(cv.linear_regression[1].rmse < cv.mean_baseline[1].rmse);
  CHECK(cv.linear_regression[0].r > 0.75);
  WARN("10-fold CV RMSE at 850 nm: mean " << cv.mean_baseline[0].rmse << ", linear " << cv.linear_regression[0].rmse
                                          << ", physics " << cv.physics[0].rmse << ", hybrid " << cv.hybrid[0].rmse
                                          << ", scale-free " << cv.scale_free[0].rmse);
}

TEST_CASE("spectral: skin-tone contrast shrinks in NIR", "[spectral]") {
  // Physics: a light and a dark epidermis, same dermis.
  sp::SkinParams light{0.02, 0.01}, dark{0.5, 0.01};
  const auto rl = sp::skin_reflectance(light), rd = sp::skin_reflectance(dark);
  CHECK(rl[0] / rd[0] > 4);
  CHECK(rl[3] / rd[3] < 1.6);
  CHECK(rl[3] / rd[3] < 0.4 * rl[0] / rd[0]);
  if (!have_nist()) return;
  // The shipped transform on the darkest and lightest NIST subjects (at 451 nm).
  const auto d = nist();
  const auto [lo, hi] = std::minmax_element(d.begin(), d.end(), [](auto& a, auto& b) { return a.r[0] < b.r[0]; });
  CHECK(hi->r[0] / lo->r[0] > 4.5);
  const double p_lo = sp::nir_albedo(rgb_of(lo->r), Band::nir850), p_hi = sp::nir_albedo(rgb_of(hi->r), Band::nir850);
  CHECK(p_hi / p_lo < 1.5);
  CHECK(p_hi / p_lo > 1.0);
}

TEST_CASE("spectral: a red (high-blood) patch loses its contrast in NIR", "[spectral]") {
  const auto normal = sp::skin_reflectance({0.08, 0.01}), red = sp::skin_reflectance({0.08, 0.06});
  const double vis_contrast = 1 - red[1] / normal[1];  // 541 nm
  REQUIRE(vis_contrast > 0.3);
  for (Band b : {Band::nir850, Band::nir940}) {
    const double n = sp::nir_albedo(rgb_of(normal), b), r = sp::nir_albedo(rgb_of(red), b);
    CHECK(std::abs(1 - r / n) < 0.25 * vis_contrast);
    // Lips follow the skin transform.
    CHECK(sp::nir_albedo(rgb_of(red), b, Region::lips) == Approx(r));
  }
  // The physics says the same, less strongly (measured 0.26x: the dermis absorbs little at 850 nm,
  // so the small blood term still shows relatively).
  CHECK(std::abs(1 - red[3] / normal[3]) < 0.3 * vis_contrast);
}

TEST_CASE("spectral: 940 nm reads darker than 850 nm by about the measured amount", "[spectral]") {
  const std::array<double, 3> median_skin{0.57, 0.33, 0.27};
  const double d = sp::nir_albedo(median_skin, Band::nir850) - sp::nir_albedo(median_skin, Band::nir940);
  CHECK(d == Approx(0.07).margin(0.015));
  const auto r = sp::skin_reflectance(sp::invert_vis({0.27, 0.33, 0.57}));
  CHECK(r[3] - r[4] == Approx(0.07).margin(0.02));
}

TEST_CASE("spectral: outputs are bounded and finite for any input", "[spectral]") {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  const std::vector<double> vals{0, 1e-6, 0.05, 0.3, 0.7, 1, 2, -1, nan, inf, -inf};
  for (double r : vals)
    for (double g : vals)
      for (double b : vals)
        for (Band band : {Band::nir850, Band::nir940})
          for (Region reg : {Region::skin, Region::lips, Region::brow_hair, Region::iris, Region::sclera}) {
            const double v = sp::nir_albedo({r, g, b}, band, reg);
            REQUIRE(std::isfinite(v));
            REQUIRE(v >= 0);
            REQUIRE(v <= 1);
          }
  for (double x : {0.0, 1.0, nan}) {
    const auto p = sp::invert_vis({x, x, x});
    CHECK(std::isfinite(p.melanin));
    CHECK(std::isfinite(p.blood));
    for (double v : sp::skin_reflectance(p)) CHECK((std::isfinite(v) && v >= 0 && v <= 1));
  }
  CHECK(sp::exposure_scale({0, 0.3, 0.2}) == 1.0);
  CHECK(sp::exposure_scale({nan, 0.3, 0.2}) == 1.0);
}

TEST_CASE("spectral: monotone in melanin, inversion recovers the parameters", "[spectral]") {
  double prev451 = 1, prev850 = 1;
  for (double mel = 0.0; mel <= 0.5; mel += 0.05) {
    const auto r = sp::skin_reflectance({mel, 0.02});
    CHECK(r[0] < prev451);
    CHECK(r[3] < prev850);
    prev451 = r[0], prev850 = r[3];
  }
  for (double mel : {0.03, 0.1, 0.3})
    for (double blood : {0.005, 0.02, 0.05}) {
      const auto r = sp::skin_reflectance({mel, blood});
      const auto p = sp::invert_vis({r[0], r[1], r[2]});
      CHECK(p.melanin == Approx(mel).epsilon(0.01));
      CHECK(p.blood == Approx(blood).epsilon(0.02));
      CHECK(p.residual < 1e-4);
    }
}

TEST_CASE("spectral: non-skin regions", "[spectral]") {
  // Hair and brows: melanin-driven, much lighter in NIR than in VIS, order kept.
  const std::array<double, 3> black{0.03, 0.025, 0.02}, brown{0.12, 0.08, 0.05}, blond{0.45, 0.35, 0.22};
  double prev = 0;
  for (const auto& h : {black, brown, blond}) {
    const double v = sp::nir_albedo(h, Band::nir850, Region::brow_hair);
    CHECK(v > std::min(1.5 * h[0], h[0] + 0.05));
    CHECK(v > prev);
    CHECK(sp::nir_albedo(h, Band::nir940, Region::brow_hair) >= v);  // melanin absorbs even less at 940
    prev = v;
  }
  // Iris: a dark brown and a light blue iris differ ~4x in VIS, < 1.5x in NIR.
  const std::array<double, 3> brown_iris{0.06, 0.035, 0.02}, blue_iris{0.12, 0.16, 0.22};
  const double nb = sp::nir_albedo(brown_iris, Band::nir850, Region::iris);
  const double nl = sp::nir_albedo(blue_iris, Band::nir850, Region::iris);
  CHECK(nl / nb < 1.5);
  CHECK(nl > nb);  // the texture's contrast is kept, weakly
  // Sclera: bright whatever its VIS colour (blood vessels vanish).
  CHECK(sp::nir_albedo({0.7, 0.5, 0.45}, Band::nir850, Region::sclera) == Approx(0.55));
  // Specular: Fresnel of skin barely changes with wavelength.
  for (Band b : {Band::nir850, Band::nir940}) {
    CHECK(sp::specular_nir_scale(b) > 0.9);
    CHECK(sp::specular_nir_scale(b) <= 1.0);
  }
}

TEST_CASE("spectral: exposure normalisation recovers the NIST brightness from chromaticity", "[spectral]") {
  // A median NIST skin seen at half and at double exposure maps back to ~the same scale.
  const std::array<double, 3> skin{0.57, 0.33, 0.27};
  for (double f : {0.5, 2.0}) {
    const double s = sp::exposure_scale({f * skin[0], f * skin[1], f * skin[2]});
    CHECK(s * f == Approx(1.0).epsilon(0.1));
  }
  if (!have_nist()) return;
  double se = 0;
  const auto d = nist();
  for (const auto& s : d) {
    const double k = sp::exposure_scale({3 * s.r[2], 3 * s.r[1], 3 * s.r[0]});
    se += std::pow(std::log(3 * k), 2) / d.size();
  }
  CHECK(std::sqrt(se) < 0.1);  // measured 0.08 (in-sample)
}

TEST_CASE("spectral: map-level transform", "[spectral]") {
  const int w = 512, h = 512;
  std::vector<float> rgb(static_cast<size_t>(w) * h * 3);
  std::vector<std::uint8_t> regions(static_cast<size_t>(w) * h, 0);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const size_t i = static_cast<size_t>(y) * w + x;
      const float m = 0.8f + 0.4f * float(x) / w;
      rgb[3 * i] = 0.5f * m, rgb[3 * i + 1] = 0.3f * m, rgb[3 * i + 2] = 0.25f * m;
      if (y < 8) regions[i] = static_cast<std::uint8_t>(Region::brow_hair);
      if (y >= 8 && y < 16) regions[i] = static_cast<std::uint8_t>(Region::sclera);
    }
  const auto med = sp::median_skin_rgb(rgb.data(), w, h, regions.data());
  CHECK(med[0] == Approx(0.5).epsilon(0.02));
  const double scale = sp::exposure_scale(med);
  const auto out = sp::nir_albedo_map(rgb, w, h, 3, regions, Band::nir850, scale);
  REQUIRE(out.size() == static_cast<size_t>(w) * h);
  const size_t i = static_cast<size_t>(300) * w + 100;
  CHECK(out[i] == Approx(sp::nir_albedo({rgb[3 * i] * scale, rgb[3 * i + 1] * scale, rgb[3 * i + 2] * scale},
                                        Band::nir850))
                      .margin(1e-5));
  CHECK(out[10 * w + 5] == Approx(sp::kScleraNir));
  // Grey input and no regions.
  std::vector<float> grey(static_cast<size_t>(w) * h, 0.4f);
  const auto og = sp::nir_albedo_map(grey, w, h, 1, {}, Band::nir940, 1.0);
  CHECK(og[7] == Approx(sp::nir_albedo({0.4, 0.4, 0.4}, Band::nir940)).margin(1e-5));
  CHECK_THROWS_AS(sp::nir_albedo_map(grey, w, h + 1, 1, {}, Band::nir850, 1.0), hfr::Error);
  CHECK_THROWS_AS(sp::nir_albedo_map(grey, w, h, 2, {}, Band::nir850, 1.0), hfr::Error);
  // Timing (reported, not asserted: no timed tests).
  std::vector<float> o(static_cast<size_t>(w) * h);
  double best = 1e9;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    sp::nir_albedo_map(rgb.data(), w, h, 3, regions.data(), Band::nir850, scale, o.data());
    best = std::min(best, std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count());
  }
  WARN("nir_albedo_map 512x512 (3 regions): " << best / 1e6 << " ms, " << best / (w * h) << " ns/texel");
}

TEST_CASE("spectral: bad data files", "[spectral]") {
  CHECK_THROWS_AS(sp::read_nist_skin("/nonexistent/nist.csv"), hfr::FormatError);
  CHECK_THROWS_AS(sp::read_chromophore_table("/nonexistent/table.csv"), hfr::FormatError);
}
