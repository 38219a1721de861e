// VIS -> NIR diffuse albedo: two-layer skin model fitted to the NIST skin
// data, region rules for non-skin, a lookup table per band. docs/spectral.md.
#include "hfr/spectral.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <mutex>
#include <numeric>
#include <sstream>

#include <Eigen/Dense>

#include "hfr/error.hpp"

namespace hfr::spectral {
namespace {

constexpr int kNumBands = 5;
// Diffusion-theory boundary constant for a tissue/air index ratio of 1.4
// (Groenhuis et al. 1983: r_i = -1.440/n^2 + 0.710/n + 0.668 + 0.0636 n, A = (1 + r_i)/(1 - r_i)).
constexpr double kBoundaryA = 3.25;
constexpr double kMelMax = 0.5, kBloodMax = 0.15;
constexpr double kFloor = 1e-4;

double finite_or(double v, double fallback) { return std::isfinite(v) ? v : fallback; }

// Total diffuse reflectance of a semi-infinite turbid medium (diffusion
// theory with an extrapolated boundary; Farrell, Patterson & Wilson 1992,
// integrated over the surface): a' = musp / (mua + musp),
// Rd = a'/2 * exp(-sqrt(3(1-a'))) * (1 + exp(-4/3 A sqrt(3(1-a')))).
double diffuse_reflectance(double mua, double musp) {
  const double a = musp / (mua + musp);
  const double s = std::sqrt(3 * (1 - a));
  return 0.5 * a * std::exp(-s) * (1 + std::exp(-4.0 / 3.0 * kBoundaryA * s));
}

double band_reflectance(int b, double mel, double blood, double scat, const ModelConstants& m,
                         const Chromophores& c) {
  const double w98 = std::clamp((m.so2 - 0.75) / (0.98 - 0.75), 0.0, 1.0);
  const double mua_blood = w98 * c.blood_s98[b] + (1 - w98) * c.blood_s75[b];
  const double mua_epi = mel * c.melanosome[b] + (1 - mel) * c.baseline[b];
  const double mua_der = blood * mua_blood + (1 - blood) * c.baseline[b] + m.water * c.water[b];
  const double rd = diffuse_reflectance(mua_der, scat * m.scatter * c.musp[b]);
  return m.gain * std::exp(-m.epi_path_cm * mua_epi) * rd;
}

// Gauss-Newton / Levenberg-Marquardt on log reflectance, box bounds by projection.
SkinParams invert_impl(const std::array<double, 3>& vis, const ModelConstants& m, const Chromophores& c) {
  std::array<double, 3> target{};
  for (int i = 0; i < 3; ++i) target[i] = std::log(std::clamp(finite_or(vis[i], kFloor), kFloor, 1.0));
  auto resid = [&](double mel, double blood, std::array<double, 3>& r) {
    double s = 0;
    for (int i = 0; i < 3; ++i) {
      r[i] = std::log(band_reflectance(i, mel, blood, m, c)) - target[i];
      s += r[i] * r[i];
    }
    return s;
  };
  // Start from the best of a coarse grid (the problem is mildly non-convex at the bounds).
  double mel = 0.05, blood = 0.01;
  std::array<double, 3> r{};
  double best = std::numeric_limits<double>::infinity();
  for (double gm : {0.0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5})
    for (double gb : {0.0, 0.005, 0.02, 0.05, 0.1}) {
      const double s = resid(gm, gb, r);
      if (s < best) best = s, mel = gm, blood = gb;
    }
  double lambda = 1e-3;
  double cost = resid(mel, blood, r);
  for (int it = 0; it < 40; ++it) {
    constexpr double h = 1e-6;
    std::array<double, 3> r1{}, r2{};
    resid(mel + h, blood, r1);
    resid(mel, blood + h, r2);
    double jtj00 = 0, jtj01 = 0, jtj11 = 0, g0 = 0, g1 = 0;
    for (int i = 0; i < 3; ++i) {
      const double j0 = (r1[i] - r[i]) / h, j1 = (r2[i] - r[i]) / h;
      jtj00 += j0 * j0, jtj01 += j0 * j1, jtj11 += j1 * j1;
      g0 += j0 * r[i], g1 += j1 * r[i];
    }
    bool improved = false;
    for (int tries = 0; tries < 8 && !improved; ++tries) {
      const double a = jtj00 * (1 + lambda) + 1e-12, d = jtj11 * (1 + lambda) + 1e-12, bb = jtj01;
      const double det = a * d - bb * bb;
      const double dm = -(d * g0 - bb * g1) / det, db = -(a * g1 - bb * g0) / det;
      const double nm = std::clamp(mel + dm, 0.0, kMelMax), nb = std::clamp(blood + db, 0.0, kBloodMax);
      std::array<double, 3> rn{};
      const double cn = resid(nm, nb, rn);
      if (cn < cost) {
        const double step = std::abs(nm - mel) + std::abs(nb - blood);
        mel = nm, blood = nb, r = rn;
        const double gain = cost - cn;
        cost = cn;
        lambda = std::max(lambda * 0.3, 1e-7);
        improved = true;
        if (step < 1e-9 || gain < 1e-14) it = 1000;
      } else {
        lambda *= 10;
      }
    }
    if (!improved) break;
  }
  return SkinParams{mel, blood, std::sqrt(cost / 3)};
}

double hybrid_nir(const std::array<double, 3>& vis, int band, const ModelConstants& m, const Chromophores& c) {
  const SkinParams p = invert_impl(vis, m, c);
  const auto& k = band == 3 ? m.corr850 : m.corr940;
  std::array<double, 3> v{};
  for (int i = 0; i < 3; ++i) v[i] = std::clamp(finite_or(vis[i], 0.0), 0.0, 1.0);
  const double phys = band_reflectance(band, p.melanin, p.blood, m, c);
  return std::clamp(phys + k[0] + k[1] * v[0] + k[2] * v[1] + k[3] * v[2], 0.0, 1.0);
}

// ---- Lookup table ----
constexpr int kLutN = 33;  // nodes per axis over [0, 1]
struct Lut {
  std::vector<float> v[2];  // [band][(ri*N + gi)*N + bi]
};

const Lut& lut() {
  static Lut table;
  static std::once_flag once;
  std::call_once(once, [] {
    const auto& m = builtin_model();
    const auto& c = builtin_chromophores();
    for (auto& v : table.v) v.resize(static_cast<size_t>(kLutN) * kLutN * kLutN);
    for (int ri = 0; ri < kLutN; ++ri)
      for (int gi = 0; gi < kLutN; ++gi)
        for (int bi = 0; bi < kLutN; ++bi) {
          const double R = double(ri) / (kLutN - 1), G = double(gi) / (kLutN - 1), B = double(bi) / (kLutN - 1);
          const std::array<double, 3> vis{B, G, R};
          const SkinParams p = invert_impl(vis, m, c);
          const size_t idx = (static_cast<size_t>(ri) * kLutN + gi) * kLutN + bi;
          for (int k = 0; k < 2; ++k) {
            const auto& corr = k == 0 ? m.corr850 : m.corr940;
            const double phys = band_reflectance(3 + k, p.melanin, p.blood, m, c);
            table.v[k][idx] = static_cast<float>(
                std::clamp(phys + corr[0] + corr[1] * B + corr[2] * G + corr[3] * R, 0.0, 1.0));
          }
        }
  });
  return table;
}

inline float lut_lookup(const std::vector<float>& t, float r, float g, float b) {
  auto prep = [](float x, int& i0, float& f) {
    x = std::isfinite(x) ? std::clamp(x, 0.0f, 1.0f) : 0.0f;
    const float s = x * (kLutN - 1);
    i0 = std::min(static_cast<int>(s), kLutN - 2);
    f = s - static_cast<float>(i0);
  };
  int ri, gi, bi;
  float fr, fg, fb;
  prep(r, ri, fr), prep(g, gi, fg), prep(b, bi, fb);
  const float* p = t.data() + (static_cast<size_t>(ri) * kLutN + gi) * kLutN + bi;
  constexpr int sg = kLutN, sr = kLutN * kLutN;
  auto lerp = [](float a, float b2, float f) { return a + (b2 - a) * f; };
  const float c00 = lerp(p[0], p[1], fb), c01 = lerp(p[sg], p[sg + 1], fb);
  const float c10 = lerp(p[sr], p[sr + 1], fb), c11 = lerp(p[sr + sg], p[sr + sg + 1], fb);
  return lerp(lerp(c00, c01, fg), lerp(c10, c11, fg), fr);
}

// ---- Non-skin regions ----
double luminance(const std::array<double, 3>& rgb) {
  return 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2];
}

// Hair (and brows): albedo ~ R_max exp(-tau(lambda)), tau proportional to the
// melanosome absorption. tau at the band = tau(red, 649 nm) * mua_mel(band) / mua_mel(649).
constexpr double kHairMax = 0.6;
double hair_nir(const std::array<double, 3>& rgb, Band band) {
  const auto& c = builtin_chromophores();
  const double red = std::clamp(finite_or(rgb[0], 0.0), 1e-3, kHairMax);
  const double tau_red = -std::log(red / kHairMax);
  const int b = band == Band::nir850 ? 3 : 4;
  return kHairMax * std::exp(-tau_red * c.melanosome[b] / c.melanosome[2]);
}

constexpr double kIrisRefLuminance = 0.12;
double iris_nir(const std::array<double, 3>& rgb, double ref_luminance) {
  const double l = std::clamp(finite_or(luminance(rgb), 0.0), 1e-3, 1.0);
  return std::clamp(kIrisNirMean * std::pow(l / ref_luminance, kIrisContrastKeep), 0.0, 1.0);
}

double region_nir(const std::array<double, 3>& rgb, Band band, Region region, double iris_ref) {
  switch (region) {
    case Region::skin:
    case Region::lips: return nir_albedo(rgb, band);
    case Region::brow_hair: return hair_nir(rgb, band);
    case Region::iris: return iris_nir(rgb, iris_ref);
    case Region::sclera: return kScleraNir;
  }
  return nir_albedo(rgb, band);
}

// ---- Fitting ----
// Nelder-Mead on an unconstrained vector.
std::vector<double> nelder_mead(const std::function<double(const std::vector<double>&)>& f, std::vector<double> x0,
                                double step, int max_evals) {
  const size_t n = x0.size();
  std::vector<std::vector<double>> s(n + 1, x0);
  for (size_t i = 0; i < n; ++i) s[i + 1][i] += step;
  std::vector<double> fv(n + 1);
  for (size_t i = 0; i <= n; ++i) fv[i] = f(s[i]);
  int evals = static_cast<int>(n + 1);
  while (evals < max_evals) {
    std::vector<size_t> order(n + 1);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return fv[a] < fv[b]; });
    std::vector<std::vector<double>> s2;
    std::vector<double> f2;
    for (size_t i : order) s2.push_back(s[i]), f2.push_back(fv[i]);
    s = s2, fv = f2;
    if (std::abs(fv[n] - fv[0]) < 1e-12 * (1 + std::abs(fv[0]))) break;
    std::vector<double> cen(n, 0.0);
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < n; ++j) cen[j] += s[i][j] / n;
    auto along = [&](double t) {
      std::vector<double> x(n);
      for (size_t j = 0; j < n; ++j) x[j] = cen[j] + t * (s[n][j] - cen[j]);
      return x;
    };
    auto xr = along(-1);
    const double fr = f(xr);
    ++evals;
    if (fr < fv[0]) {
      auto xe = along(-2);
      const double fe = f(xe);
      ++evals;
      if (fe < fr) s[n] = xe, fv[n] = fe; else s[n] = xr, fv[n] = fr;
    } else if (fr < fv[n - 1]) {
      s[n] = xr, fv[n] = fr;
    } else {
      auto xc = along(fr < fv[n] ? -0.5 : 0.5);
      const double fc = f(xc);
      ++evals;
      if (fc < std::min(fr, fv[n])) {
        s[n] = xc, fv[n] = fc;
      } else {
        for (size_t i = 1; i <= n; ++i) {
          for (size_t j = 0; j < n; ++j) s[i][j] = s[0][j] + 0.5 * (s[i][j] - s[0][j]);
          fv[i] = f(s[i]);
          ++evals;
        }
      }
    }
  }
  size_t best = static_cast<size_t>(std::min_element(fv.begin(), fv.end()) - fv.begin());
  return s[best];
}

ModelConstants unpack(const std::vector<double>& x) {
  ModelConstants m;
  m.epi_path_cm = std::exp(x[0]);
  m.water = 1 / (1 + std::exp(-x[1]));
  m.so2 = 0.75 + 0.23 / (1 + std::exp(-x[2]));
  m.gain = std::exp(x[3]);
  m.scatter = std::exp(x[4]);
  return m;
}
double logit(double p) { return std::log(p / (1 - p)); }
std::vector<double> pack(const ModelConstants& m) {
  return {std::log(m.epi_path_cm), logit(m.water), logit((m.so2 - 0.75) / 0.23), std::log(m.gain),
          std::log(m.scatter)};
}

// Ordinary least squares of y on [1, R451, R541, R649].
std::array<double, 4> linear_fit(const std::vector<SkinSample>& d, const std::vector<double>& y) {
  Eigen::MatrixXd X(static_cast<Eigen::Index>(d.size()), 4);
  Eigen::VectorXd Y(static_cast<Eigen::Index>(d.size()));
  for (size_t i = 0; i < d.size(); ++i) {
    X(i, 0) = 1, X(i, 1) = d[i].r[0], X(i, 2) = d[i].r[1], X(i, 3) = d[i].r[2];
    Y(i) = y[i];
  }
  const Eigen::VectorXd b = X.colPivHouseholderQr().solve(Y);
  return {b(0), b(1), b(2), b(3)};
}
double apply_linear(const std::array<double, 4>& k, const SkinSample& s) {
  return k[0] + k[1] * s.r[0] + k[2] * s.r[1] + k[3] * s.r[2];
}

std::array<double, 3> vis_of(const SkinSample& s) { return {s.r[0], s.r[1], s.r[2]}; }

}  // namespace

// ---- Tables ----
const Chromophores& builtin_chromophores() {
  // ../shared/data/skin_spectra/chromophore_table.csv (rows at 450, 540, 650, 850, 940 nm).
  static const Chromophores c{
      {964.60, 525.62, 283.49, 116.03, 82.99},      // melanosome (Jacques: 6.6e11 nm^-3.33)
      {1.8118, 1.0009, 0.5474, 0.2286, 0.1647},     // baseline skin (Jacques: 7.84e8 nm^-3.255)
      {340.766, 284.410, 2.333, 5.627, 6.446},      // whole blood, SO2 98% (Prahl, 150 g/L)
      {390.626, 276.226, 6.499, 5.175, 5.805},      // whole blood, SO2 75%
      {0.00023, 0.00049, 0.00324, 0.04340, 0.29},   // water
      {53.43, 41.23, 31.68, 21.64, 18.76},          // reduced scattering (Jacques 2013: 46 (nm/500)^-1.421)
  };
  return c;
}

Chromophores read_chromophore_table(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw FormatError(path + ": cannot open");
  Chromophores c;
  std::string line;
  int row = 0;
  bool header = false;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (!header) {
      header = true;
      continue;
    }
    if (row >= kNumBands) throw FormatError(path + ": more than 5 wavelength rows");
    std::stringstream ss(line);
    std::string cell;
    std::vector<double> v;
    while (std::getline(ss, cell, ',')) {
      try {
        v.push_back(std::stod(cell));
      } catch (const std::exception&) {
        throw FormatError(path + ": bad number '" + cell + "'");
      }
    }
    if (v.size() != 7) throw FormatError(path + ": expected 7 columns");
    c.melanosome[row] = v[1], c.baseline[row] = v[2], c.blood_s98[row] = v[3], c.blood_s75[row] = v[4];
    c.water[row] = v[5], c.musp[row] = v[6];
    ++row;
  }
  if (row != kNumBands) throw FormatError(path + ": expected 5 wavelength rows");
  return c;
}

const ModelConstants& builtin_model() {
  // Fitted by fit_model on nist_skin_avg_5wl.csv (all 100 subjects); the unit
  // test [spectral] refits and compares. docs/spectral.md.
  static const ModelConstants m = [] {
    ModelConstants k;
    k.epi_path_cm = 0.012;
    k.water = 0.65;
    k.so2 = 0.8;
    k.gain = 1.0;
    k.scatter = 1.0;
    return k;
  }();
  return m;
}

std::array<double, 5> skin_reflectance(const SkinParams& p, const ModelConstants& m, const Chromophores& c) {
  std::array<double, 5> r{};
  const double mel = std::clamp(finite_or(p.melanin, 0.0), 0.0, 1.0);
  const double blood = std::clamp(finite_or(p.blood, 0.0), 0.0, 1.0);
  for (int b = 0; b < kNumBands; ++b) r[b] = std::clamp(band_reflectance(b, mel, blood, m, c), 0.0, 1.0);
  return r;
}

SkinParams invert_vis(const std::array<double, 3>& vis, const ModelConstants& m, const Chromophores& c) {
  return invert_impl(vis, m, c);
}

double predict_nir_exact(const std::array<double, 3>& vis, Band band, const ModelConstants& m,
                         const Chromophores& c) {
  return hybrid_nir(vis, band == Band::nir850 ? 3 : 4, m, c);
}

double nir_albedo(const std::array<double, 3>& rgb, Band band) {
  const auto& t = lut().v[band == Band::nir850 ? 0 : 1];
  return lut_lookup(t, static_cast<float>(rgb[0]), static_cast<float>(rgb[1]), static_cast<float>(rgb[2]));
}

double nir_albedo(const std::array<double, 3>& rgb, Band band, Region region) {
  return region_nir(rgb, band, region, kIrisRefLuminance);
}

double specular_nir_scale(Band band) {
  // Cauchy dispersion n(lambda) = A + B / lambda^2 through n(550) = 1.400 and n(940) = 1.387:
  // skin's index falls by ~0.01 from green to NIR (epidermis/dermis dispersion of Ding et al.
  // 2006 and Lister et al. 2012 reviews); F0 = ((n-1)/(n+1))^2.
  const double l550 = 0.55, l940 = 0.94;
  const double B = (1.400 - 1.387) / (1 / (l550 * l550) - 1 / (l940 * l940));
  const double A = 1.400 - B / (l550 * l550);
  auto f0 = [](double n) { return ((n - 1) / (n + 1)) * ((n - 1) / (n + 1)); };
  const double l = band == Band::nir850 ? 0.85 : 0.94;
  return f0(A + B / (l * l)) / f0(1.400);
}

// ---- Exposure ----
double exposure_scale(const std::array<double, 3>& rgb) {
  for (double v : rgb)
    if (!std::isfinite(v) || v <= 0) return 1.0;
  // NIST medians at 649, 541, 451 nm sum to 0.57 + 0.33 + 0.27.
  constexpr double kNistSum = 0.57 + 0.33 + 0.27;
  constexpr double kPriorWeight = 0.5;  // on (log s - log s0)^2, vs the sum of squared log residuals
  const double s0 = kNistSum / (rgb[0] + rgb[1] + rgb[2]);
  const auto& m = builtin_model();
  const auto& c = builtin_chromophores();
  auto cost = [&](double ls) {
    const double s = std::exp(ls);
    const std::array<double, 3> vis{s * rgb[2], s * rgb[1], s * rgb[0]};
    const SkinParams p = invert_impl(vis, m, c);
    const double d = ls - std::log(s0);
    return 3 * p.residual * p.residual + kPriorWeight * d * d;
  };
  // Golden-section search over log s within +-1 of the prior (a factor e).
  double a = std::log(s0) - 1, b = std::log(s0) + 1;
  const double g = (std::sqrt(5.0) - 1) / 2;
  double x1 = b - g * (b - a), x2 = a + g * (b - a);
  double f1 = cost(x1), f2 = cost(x2);
  for (int i = 0; i < 40; ++i) {
    if (f1 < f2) b = x2, x2 = x1, f2 = f1, x1 = b - g * (b - a), f1 = cost(x1);
    else a = x1, x1 = x2, f1 = f2, x2 = a + g * (b - a), f2 = cost(x2);
  }
  return std::exp(0.5 * (a + b));
}

std::array<double, 3> median_skin_rgb(const float* rgb, int width, int height, const std::uint8_t* regions) {
  std::array<std::vector<float>, 3> ch;
  const size_t n = static_cast<size_t>(std::max(width, 0)) * static_cast<size_t>(std::max(height, 0));
  for (size_t i = 0; i < n; ++i) {
    if (regions && regions[i] != static_cast<std::uint8_t>(Region::skin)) continue;
    const float* p = rgb + 3 * i;
    if (!(p[0] > 0 && p[1] > 0 && p[2] > 0) || !std::isfinite(p[0] + p[1] + p[2])) continue;
    for (int k = 0; k < 3; ++k) ch[k].push_back(p[k]);
  }
  std::array<double, 3> med{0, 0, 0};
  if (ch[0].empty()) return med;
  for (int k = 0; k < 3; ++k) {
    auto mid = ch[k].begin() + static_cast<std::ptrdiff_t>(ch[k].size() / 2);
    std::nth_element(ch[k].begin(), mid, ch[k].end());
    med[k] = *mid;
  }
  return med;
}

void nir_albedo_map(const float* rgb, int width, int height, int channels, const std::uint8_t* regions, Band band,
                    double scale, float* out) {
  if (channels != 1 && channels != 3) throw Error("nir_albedo_map: channels must be 1 or 3");
  if (width < 0 || height < 0) throw Error("nir_albedo_map: negative size");
  const size_t n = static_cast<size_t>(width) * static_cast<size_t>(height);
  const float s = static_cast<float>(std::isfinite(scale) && scale > 0 ? scale : 1.0);
  const auto& t = lut().v[band == Band::nir850 ? 0 : 1];
  // Iris reference: the mean iris luminance of this map (pigment-independent NIR level).
  double iris_ref = kIrisRefLuminance;
  if (regions) {
    double sum = 0;
    size_t cnt = 0;
    for (size_t i = 0; i < n; ++i)
      if (regions[i] == static_cast<std::uint8_t>(Region::iris)) {
        const float* p = rgb + channels * i;
        const double l = channels == 1 ? p[0] * s : luminance({p[0] * s, p[1] * s, p[2] * s});
        if (std::isfinite(l) && l > 0) sum += l, ++cnt;
      }
    if (cnt > 0 && sum > 0) iris_ref = sum / cnt;
  }
  for (size_t i = 0; i < n; ++i) {
    const float* p = rgb + channels * i;
    const float r = p[0] * s, g = (channels == 1 ? p[0] : p[1]) * s, b = (channels == 1 ? p[0] : p[2]) * s;
    const Region reg = regions ? static_cast<Region>(regions[i]) : Region::skin;
    if (reg == Region::skin || reg == Region::lips || regions == nullptr || regions[i] > 4)
      out[i] = lut_lookup(t, r, g, b);
    else
      out[i] = static_cast<float>(region_nir({r, g, b}, band, reg, iris_ref));
  }
}

std::vector<float> nir_albedo_map(const std::vector<float>& rgb, int width, int height, int channels,
                                  const std::vector<std::uint8_t>& regions, Band band, double scale) {
  const size_t n = static_cast<size_t>(std::max(width, 0)) * static_cast<size_t>(std::max(height, 0));
  if (rgb.size() != n * static_cast<size_t>(channels))
    throw Error("nir_albedo_map: buffer size does not match width x height x channels");
  if (!regions.empty() && regions.size() != n) throw Error("nir_albedo_map: region map size does not match");
  std::vector<float> out(n);
  nir_albedo_map(rgb.data(), width, height, channels, regions.empty() ? nullptr : regions.data(), band, scale,
                 out.data());
  return out;
}

// ---- Data ----
std::vector<SkinSample> read_nist_skin(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw FormatError(path + ": cannot open");
  std::vector<SkinSample> out;
  std::string line;
  bool header = false;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    if (!header) {
      header = true;
      continue;
    }
    std::stringstream ss(line);
    std::string cell;
    std::vector<double> v;
    while (std::getline(ss, cell, ',')) {
      try {
        v.push_back(std::stod(cell));
      } catch (const std::exception&) {
        throw FormatError(path + ": line " + std::to_string(lineno) + ": bad number '" + cell + "'");
      }
    }
    if (v.size() != 6) throw FormatError(path + ": line " + std::to_string(lineno) + ": expected 6 columns");
    SkinSample s;
    s.subject = static_cast<int>(v[0]);
    for (int b = 0; b < 5; ++b) s.r[b] = v[b + 1];
    out.push_back(s);
  }
  if (out.empty()) throw FormatError(path + ": no rows");
  return out;
}

ModelConstants fit_model(const std::vector<SkinSample>& data, bool hybrid, const Chromophores& c) {
  if (data.size() < 5) throw Error("fit_model: need at least 5 subjects");
  auto objective = [&](const std::vector<double>& x) {
    const ModelConstants m = unpack(x);
    double e = 0;
    for (const auto& s : data) {
      const SkinParams p = invert_impl(vis_of(s), m, c);
      for (int b = 0; b < kNumBands; ++b) {
        const double d = band_reflectance(b, p.melanin, p.blood, m, c) - s.r[b];
        e += d * d;
      }
    }
    return e / data.size();
  };
  std::vector<double> x = pack(ModelConstants{});
  for (int round = 0; round < 3; ++round) x = nelder_mead(objective, x, round == 0 ? 0.5 : 0.1, 600);
  ModelConstants m = unpack(x);
  if (hybrid) {
    for (int k = 0; k < 2; ++k) {
      std::vector<double> resid;
      for (const auto& s : data) {
        const SkinParams p = invert_impl(vis_of(s), m, c);
        resid.push_back(s.r[3 + k] - band_reflectance(3 + k, p.melanin, p.blood, m, c));
      }
      (k == 0 ? m.corr850 : m.corr940) = linear_fit(data, resid);
    }
  }
  return m;
}

ErrorStats error_stats(const std::vector<double>& pred, const std::vector<double>& truth) {
  ErrorStats e;
  const size_t n = std::min(pred.size(), truth.size());
  if (n == 0) return e;
  double mp = 0, mt = 0;
  for (size_t i = 0; i < n; ++i) mp += pred[i], mt += truth[i];
  mp /= n, mt /= n;
  double sse = 0, spp = 0, stt = 0, spt = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = pred[i] - truth[i];
    sse += d * d;
    e.max_abs = std::max(e.max_abs, std::abs(d));
    e.bias += d / n;
    spp += (pred[i] - mp) * (pred[i] - mp), stt += (truth[i] - mt) * (truth[i] - mt);
    spt += (pred[i] - mp) * (truth[i] - mt);
  }
  e.rmse = std::sqrt(sse / n);
  e.r = spp > 0 && stt > 0 ? spt / std::sqrt(spp * stt) : 0;
  return e;
}

CrossValidation cross_validate(const std::vector<SkinSample>& data, int folds, const Chromophores& c) {
  const int n = static_cast<int>(data.size());
  if (folds < 2 || folds > n) throw Error("cross_validate: folds must be in [2, subjects]");
  std::array<std::vector<double>, 2> truth, p_mean, p_lin, p_phys, p_hyb;
  for (auto* v : {&truth, &p_mean, &p_lin, &p_phys, &p_hyb})
    for (auto& x : *v) x.assign(n, 0);
  for (int f = 0; f < folds; ++f) {
    std::vector<SkinSample> train, test;
    std::vector<int> test_idx;
    for (int i = 0; i < n; ++i) {
      if (i % folds == f) test.push_back(data[i]), test_idx.push_back(i);
      else train.push_back(data[i]);
    }
    const ModelConstants m = fit_model(train, true, c);
    for (int k = 0; k < 2; ++k) {
      std::vector<double> y;
      double mean = 0;
      for (const auto& s : train) y.push_back(s.r[3 + k]), mean += s.r[3 + k] / train.size();
      const auto lin = linear_fit(train, y);
      const auto& corr = k == 0 ? m.corr850 : m.corr940;
      for (size_t j = 0; j < test.size(); ++j) {
        const int i = test_idx[j];
        const SkinParams p = invert_impl(vis_of(test[j]), m, c);
        const double phys = band_reflectance(3 + k, p.melanin, p.blood, m, c);
        truth[k][i] = test[j].r[3 + k];
        p_mean[k][i] = mean;
        p_lin[k][i] = apply_linear(lin, test[j]);
        p_phys[k][i] = phys;
        p_hyb[k][i] = phys + apply_linear(corr, test[j]);
      }
    }
  }
  CrossValidation cv;
  cv.folds = folds;
  for (int k = 0; k < 2; ++k) {
    cv.mean_baseline[k] = error_stats(p_mean[k], truth[k]);
    cv.linear_regression[k] = error_stats(p_lin[k], truth[k]);
    cv.physics[k] = error_stats(p_phys[k], truth[k]);
    cv.hybrid[k] = error_stats(p_hyb[k], truth[k]);
  }
  return cv;
}

}  // namespace hfr::spectral
