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
constexpr double kMelMax = 0.5, kBloodMax = 0.15, kScatMin = 0.3, kScatMax = 3.0;
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

// Levenberg-Marquardt on log reflectance, box bounds by projection. Unknowns:
// melanin, blood and (when the model frees it) the subject's scattering scale.
SkinParams invert_impl(const std::array<double, 3>& vis, const ModelConstants& m, const Chromophores& c) {
  std::array<double, 3> target{};
  for (int i = 0; i < 3; ++i) target[i] = std::log(std::clamp(finite_or(vis[i], kFloor), kFloor, 1.0));
  const int np = m.free_scatter ? 3 : 2;
  const std::array<double, 3> lo{0.0, 0.0, kScatMin}, hi{kMelMax, kBloodMax, kScatMax};
  auto resid = [&](const std::array<double, 3>& x, std::array<double, 3>& r) {
    double s = 0;
    for (int i = 0; i < 3; ++i) {
      r[i] = std::log(band_reflectance(i, x[0], x[1], x[2], m, c)) - target[i];
      s += r[i] * r[i];
    }
    return s;
  };
  // Start from the best of a coarse grid (the problem is mildly non-convex at the bounds).
  std::array<double, 3> x{0.05, 0.01, 1.0}, r{};
  double best = std::numeric_limits<double>::infinity();
  for (double gm : {0.0, 0.03, 0.08, 0.15, 0.3, 0.5, 0.8})
    for (double gb : {0.0, 0.005, 0.02, 0.05, 0.1})
      for (double gs : {0.6, 1.0, 1.6}) {
        if (np == 2 && gs != 1.0) continue;
        const std::array<double, 3> g{gm, gb, gs};
        const double s = resid(g, r);
        if (s < best) best = s, x = g;
      }
  double lambda = 1e-3;
  double cost = resid(x, r);
  for (int it = 0; it < 50; ++it) {
    Eigen::Matrix3d J = Eigen::Matrix3d::Zero();
    for (int k = 0; k < np; ++k) {
      std::array<double, 3> xh = x, rh{};
      const double h = 1e-6 * std::max(1.0, x[k]);
      xh[k] += h;
      resid(xh, rh);
      for (int i = 0; i < 3; ++i) J(i, k) = (rh[i] - r[i]) / h;
    }
    const Eigen::Vector3d rv(r[0], r[1], r[2]);
    const Eigen::Matrix3d JtJ = J.transpose() * J;
    const Eigen::Vector3d g = J.transpose() * rv;
    bool improved = false;
    for (int tries = 0; tries < 10 && !improved; ++tries) {
      Eigen::Matrix3d A = JtJ;
      for (int k = 0; k < 3; ++k) A(k, k) = k < np ? A(k, k) * (1 + lambda) + 1e-12 : 1.0;
      const Eigen::Vector3d d = A.ldlt().solve(-g);
      std::array<double, 3> xn = x, rn{};
      for (int k = 0; k < np; ++k) xn[k] = std::clamp(x[k] + d(k), lo[k], hi[k]);
      const double cn = resid(xn, rn);
      if (cn < cost) {
        double step = 0;
        for (int k = 0; k < np; ++k) step += std::abs(xn[k] - x[k]);
        const double gain = cost - cn;
        x = xn, r = rn, cost = cn;
        lambda = std::max(lambda * 0.3, 1e-9);
        improved = true;
        if (step < 1e-10 || gain < 1e-16) it = 1000;
      } else {
        lambda *= 10;
      }
    }
    if (!improved) break;
  }
  SkinParams p;
  p.melanin = x[0], p.blood = x[1], p.scatter = x[2], p.residual = std::sqrt(cost / 3);
  return p;
}

double phys_band(int b, const SkinParams& p, const ModelConstants& m, const Chromophores& c) {
  return band_reflectance(b, p.melanin, p.blood, p.scatter, m, c);
}

double linear_nir(const std::array<double, 4>& k, double r451, double r541, double r649) {
  return k[0] + k[1] * r451 + k[2] * r541 + k[3] * r649;
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

ModelConstants unpack(const std::vector<double>& x, bool free_scatter) {
  ModelConstants m;
  m.free_scatter = free_scatter;
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

// log(R451 + R541 + R649) = k0 + k1 R451/sum + k2 R541/sum, least squares.
std::array<double, 3> chroma_fit(const std::vector<SkinSample>& d) {
  Eigen::MatrixXd X(static_cast<Eigen::Index>(d.size()), 3);
  Eigen::VectorXd Y(static_cast<Eigen::Index>(d.size()));
  for (size_t i = 0; i < d.size(); ++i) {
    const double sum = d[i].r[0] + d[i].r[1] + d[i].r[2];
    X(i, 0) = 1, X(i, 1) = d[i].r[0] / sum, X(i, 2) = d[i].r[1] / sum;
    Y(i) = std::log(sum);
  }
  const Eigen::VectorXd b = X.colPivHouseholderQr().solve(Y);
  return {b(0), b(1), b(2)};
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

namespace {
// The comma-separated numbers of a CSV line; `where` names it in errors.
std::vector<double> csv_numbers(const std::string& line, const std::string& where) {
  std::stringstream ss(line);
  std::string cell;
  std::vector<double> v;
  while (std::getline(ss, cell, ',')) {
    try {
      v.push_back(std::stod(cell));
    } catch (const std::exception&) {
      throw FormatError(where + ": bad number '" + cell + "'");
    }
  }
  return v;
}
}  // namespace

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
    const std::vector<double> v = csv_numbers(line, path);
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
    k.epi_path_cm = 0.003444;
    k.water = 1.0;  // at its bound (docs/spectral.md §2)
    k.so2 = 0.9539;
    k.gain = 1.0203;
    k.scatter = 1.6466;
    k.linear850 = {0.333405, -0.630257, 0.260895, 0.627020};
    k.linear940 = {0.380628, -0.555976, 0.330137, 0.341724};
    k.log_sum_from_chroma = {-2.683481, 8.171912, 3.423691};
    return k;
  }();
  return m;
}

std::array<double, 5> skin_reflectance(const SkinParams& p, const ModelConstants& m, const Chromophores& c) {
  std::array<double, 5> r{};
  const double mel = std::clamp(finite_or(p.melanin, 0.0), 0.0, 1.0);
  const double blood = std::clamp(finite_or(p.blood, 0.0), 0.0, 1.0);
  const double scat = std::clamp(finite_or(p.scatter, 1.0), kScatMin, kScatMax);
  for (int b = 0; b < kNumBands; ++b) r[b] = std::clamp(band_reflectance(b, mel, blood, scat, m, c), 0.0, 1.0);
  return r;
}

SkinParams invert_vis(const std::array<double, 3>& vis, const ModelConstants& m, const Chromophores& c) {
  return invert_impl(vis, m, c);
}

double predict_nir_physics(const std::array<double, 3>& vis, Band band, const ModelConstants& m,
                         const Chromophores& c) {
  const SkinParams p = invert_impl(vis, m, c);
  return std::clamp(phys_band(band == Band::nir850 ? 3 : 4, p, m, c), 0.0, 1.0);
}

double nir_albedo(const std::array<double, 3>& rgb, Band band) {
  const auto& k = band == Band::nir850 ? builtin_model().linear850 : builtin_model().linear940;
  auto in = [](double v) { return std::isfinite(v) ? std::clamp(v, 0.0, 1.0) : 0.0; };
  return std::clamp(linear_nir(k, in(rgb[2]), in(rgb[1]), in(rgb[0])), 0.0, 1.0);
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
double exposure_scale(const std::array<double, 3>& rgb, const ModelConstants& m) {
  for (double v : rgb)
    if (!std::isfinite(v) || v <= 0) return 1.0;
  // The NIST subjects' brightness (R451 + R541 + R649) predicted from the
  // chromaticity of the median skin (scale-free): darker skin is also
  // relatively less blue (melanin), which carries the brightness.
  const double sum = rgb[0] + rgb[1] + rgb[2];
  const auto& k = m.log_sum_from_chroma;
  const double target = std::exp(k[0] + k[1] * rgb[2] / sum + k[2] * rgb[1] / sum);
  return target / sum;
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
  const auto& k = band == Band::nir850 ? builtin_model().linear850 : builtin_model().linear940;
  const float k0 = static_cast<float>(k[0]), kb = static_cast<float>(k[1]), kg = static_cast<float>(k[2]),
              kr = static_cast<float>(k[3]);
  auto in = [](float v) { return std::isfinite(v) ? std::clamp(v, 0.0f, 1.0f) : 0.0f; };
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
      out[i] = std::clamp(k0 + kb * in(b) + kg * in(g) + kr * in(r), 0.0f, 1.0f);
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
    const std::vector<double> v = csv_numbers(line, path + ": line " + std::to_string(lineno));
    if (v.size() != 6) throw FormatError(path + ": line " + std::to_string(lineno) + ": expected 6 columns");
    SkinSample s;
    s.subject = static_cast<int>(v[0]);
    for (int b = 0; b < 5; ++b) s.r[b] = v[b + 1];
    out.push_back(s);
  }
  if (out.empty()) throw FormatError(path + ": no rows");
  return out;
}

ModelConstants fit_model(const std::vector<SkinSample>& data, const FitOptions& opt, const Chromophores& c) {
  if (data.size() < 5) throw Error("fit_model: need at least 5 subjects");
  auto objective = [&](const std::vector<double>& x) {
    const ModelConstants m = unpack(x, opt.free_scatter);
    double e = 0;
    for (const auto& s : data) {
      const SkinParams p = invert_impl(vis_of(s), m, c);
      for (int b = 0; b < kNumBands; ++b) {
        const double d = phys_band(b, p, m, c) - s.r[b];
        e += d * d;
      }
    }
    return e / data.size();
  };
  std::vector<double> x = pack(ModelConstants{});
  for (int round = 0; round < 3; ++round) x = nelder_mead(objective, x, round == 0 ? 0.5 : 0.1, 600);
  ModelConstants m = unpack(x, opt.free_scatter);
  for (int k = 0; k < 2; ++k) {
    std::vector<double> y;
    for (const auto& s : data) y.push_back(s.r[3 + k]);
    (k == 0 ? m.linear850 : m.linear940) = linear_fit(data, y);
  }
  m.log_sum_from_chroma = chroma_fit(data);
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

CrossValidation cross_validate(const std::vector<SkinSample>& data, int folds, const FitOptions& opt,
                               const Chromophores& c) {
  const int n = static_cast<int>(data.size());
  if (folds < 2 || folds > n) throw Error("cross_validate: folds must be in [2, subjects]");
  std::array<std::vector<double>, 2> truth, p_mean, p_lin, p_phys, p_hyb, p_free;
  for (auto* v : {&truth, &p_mean, &p_lin, &p_phys, &p_hyb, &p_free})
    for (auto& x : *v) x.assign(n, 0);
  for (int f = 0; f < folds; ++f) {
    std::vector<SkinSample> train, test;
    std::vector<int> test_idx;
    for (int i = 0; i < n; ++i) {
      if (i % folds == f) test.push_back(data[i]), test_idx.push_back(i);
      else train.push_back(data[i]);
    }
    const ModelConstants m = fit_model(train, opt, c);
    for (int k = 0; k < 2; ++k) {
      double mean = 0;
      std::vector<double> resid;
      for (const auto& s : train) {
        mean += s.r[3 + k] / train.size();
        resid.push_back(s.r[3 + k] - phys_band(3 + k, invert_impl(vis_of(s), m, c), m, c));
      }
      const auto& lin = k == 0 ? m.linear850 : m.linear940;
      const auto corr = linear_fit(train, resid);  // hybrid: physics + linear correction of its residual
      for (size_t j = 0; j < test.size(); ++j) {
        const int i = test_idx[j];
        const SkinParams p = invert_impl(vis_of(test[j]), m, c);
        const double phys = phys_band(3 + k, p, m, c);
        truth[k][i] = test[j].r[3 + k];
        p_mean[k][i] = mean;
        p_lin[k][i] = apply_linear(lin, test[j]);
        p_phys[k][i] = phys;
        p_hyb[k][i] = phys + apply_linear(corr, test[j]);
        // Scale-free: the subject's VIS at an unknown exposure, normalised by exposure_scale.
        const std::array<double, 3> rgb{3 * test[j].r[2], 3 * test[j].r[1], 3 * test[j].r[0]};
        const double es = exposure_scale(rgb, m);
        SkinSample scaled = test[j];
        for (int b = 0; b < 3; ++b) scaled.r[b] = 3 * es * test[j].r[b];
        p_free[k][i] = apply_linear(lin, scaled);
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
    cv.scale_free[k] = error_stats(p_free[k], truth[k]);
  }
  return cv;
}

}  // namespace hfr::spectral
