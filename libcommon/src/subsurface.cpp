#include "hfr/subsurface.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <type_traits>

#include "hfr/error.hpp"
#include "hfr/parallel.hpp"

namespace hfr::subsurface {

namespace {

constexpr double kPi = 3.14159265358979323846;

// ---------------------------------------------------------------- tissue optics

// Molar extinction coefficients of oxy- and deoxyhaemoglobin, cm^-1 / (mol/L):
// Prahl's tabulation (omlc.org/spectra/hemoglobin, from Gratzer and Kollias),
// every 10 nm, plus 632 and 634 nm so that 633 nm is their exact mean.
struct HbRow {
  double nm, hbo2, hb;
};
constexpr HbRow kHb[] = {
    {450, 62816, 103292},    {460, 44480, 23388.8}, {470, 33209.2, 16156.4}, {480, 26629.2, 14550},
    {490, 23684.4, 16684},   {500, 20932.8, 20862}, {510, 20035.2, 25773.6}, {520, 24202.4, 31589.6},
    {530, 39956.8, 39036.4}, {540, 53236, 46592},   {550, 43016, 53412},     {560, 32613.2, 53788},
    {570, 44496, 45072},     {580, 50104, 37020},   {590, 14400.8, 28324.4}, {600, 3200, 14677.2},
    {610, 1506, 9443.6},     {620, 942, 6509.6},    {630, 610, 5148.8},      {632, 561.2, 4930.8},
    {634, 512.4, 4730.8},    {640, 442, 4345.2},    {650, 368, 3750.12},     {660, 319.6, 3226.56},
    {670, 294, 2795.12},     {680, 277.6, 2407.92}, {690, 276, 2051.96},     {700, 290, 1794.28},
    {710, 314, 1540.48},     {720, 348, 1325.88},   {730, 390, 1102.2},      {740, 446, 1115.88},
    {750, 518, 1405.24},     {760, 586, 1548.52},   {770, 650, 1311.88},     {780, 710, 1075.44},
    {790, 756, 890.8},       {800, 816, 761.72},    {810, 864, 717.08},      {820, 916, 693.76},
    {830, 974, 693.04},      {840, 1022, 692.36},   {850, 1058, 691.32},     {860, 1092, 694.32},
    {870, 1128, 705.84},     {880, 1154, 726.44},   {890, 1178, 743.6},      {900, 1198, 761.84},
    {910, 1214, 774.56},     {920, 1224, 777.36},   {930, 1222, 763.84},     {940, 1214, 693.44},
    {950, 1204, 602.24},     {960, 1186, 525.56},   {970, 1162, 429.32},     {980, 1128, 359.656},
    {990, 1080, 283.22},     {1000, 1024, 206.784},
};
// Whole blood, 150 g/L haemoglobin of 64,500 g/mol: mu_a = ln(10) * eps * 150 / 64500.
constexpr double kBloodPerEps = 2.302585092994046 * 150.0 / 64500.0;

// Imaginary refractive index k of pure water (Hale & Querry 1973, Appl. Opt.
// 12, 555, table I); mu_a = 4 pi k / lambda.
struct WaterRow {
  double nm, k;
};
constexpr WaterRow kWater[] = {
    {425, 1.30e-9}, {445, 1.02e-9}, {475, 9.35e-10}, {500, 1.00e-9}, {525, 1.32e-9}, {550, 1.96e-9},
    {575, 3.60e-9}, {600, 1.09e-8}, {625, 1.39e-8},  {650, 1.64e-8}, {675, 2.23e-8}, {700, 3.35e-8},
    {725, 9.15e-8}, {750, 1.56e-7}, {775, 1.48e-7},  {800, 1.25e-7}, {825, 1.82e-7}, {850, 2.93e-7},
    {875, 3.91e-7}, {900, 4.86e-7}, {925, 1.06e-6},  {950, 2.93e-6}, {975, 3.48e-6}, {1000, 2.89e-6},
};

constexpr double kMinNm = 450, kMaxNm = 1000;
constexpr double kRedNm = 633;  // the VIS red channel's reference wavelength

void check_wavelength(double nm, const char* what) {
  if (!std::isfinite(nm) || nm < kMinNm || nm > kMaxNm)
    throw Error("subsurface: " + std::string(what) + ": wavelength " + std::to_string(nm) + " nm outside 450..1000 nm");
}

// Linear interpolation in a table sorted by nm; `get` picks the column.
template <class Row, std::size_t N, class Get>
double interpolate(const Row (&rows)[N], double nm, Get get) {
  std::size_t i = 1;
  while (i + 1 < N && rows[i].nm < nm) ++i;
  const Row& a = rows[i - 1];
  const Row& b = rows[i];
  const double f = std::clamp((nm - a.nm) / (b.nm - a.nm), 0.0, 1.0);
  return get(a) + f * (get(b) - get(a));
}

void check_dermis(const Dermis& d, const char* what) {
  auto bad = [](double x) { return !std::isfinite(x) || x < 0 || x > 1; };
  if (bad(d.blood) || bad(d.saturation) || bad(d.water) || !std::isfinite(d.baseline) || d.baseline < 0)
    throw Error("subsurface: " + std::string(what) + ": dermis fractions must lie in [0, 1] and the baseline be >= 0");
}

// ---------------------------------------------------------------- the screen-space kernel

constexpr int kQMax = 16;             // kernel table entries per px^2 of squared distance (at most)
constexpr int kTableMax = 1 << 16;    // entries per kernel table (fewer per px^2 for very wide kernels)
constexpr int kBinsPerOctave = 64;    // pixel-size quantisation: 1.1 % steps
constexpr double kSampledFrom = 0.5;  // per-axis variance (px^2) from which a Gaussian is sampled...
constexpr double kSampledFull = 1.0;  // ...and above which it is sampled only (below: three taps)
constexpr int kLanes = 4;             // receivers processed together, one per vector lane (SSE2)
constexpr int kMaxLanes = 8;          // (AVX2, where the CPU has it: the same operations per lane)
constexpr int kMaxRadius = 256;       // px: kernels are cut there when pixels are tiny (< sigma / 85)

// The separable 1-D kernel for one pixel size s (mm). The weight between two
// pixels Delta apart in a row (or column) whose depths differ by dz is, with
// q = Delta^2 + dz^2 / s^2 (the squared world distance in pixels) and per
// channel c,
//   table(q)                  the resolved Gaussians, sampled; 0 beyond Rc^2
//                             (nearest entry; kQ entries per px^2)
// + c1 * sub_falloff(q)       the sub-pixel Gaussians, for |Delta| = 1 only,
// and a pixel's weight for itself is w0 = table(0) + c0. Rc is 3 sigma of
// the channel's widest Gaussian. On a flat fronto-parallel surface each
// channel's weights sum to 1 over Delta = -Rc..Rc.
struct KernelHead {
  int R = 1;  // the largest Rc
  int Rc[3] = {1, 1, 1};
  float kz = 0;    // 100 / s^2: (dz in cm)^2 -> px^2
  float qmax = 0;  // R^2 + 1: q is clamped to it, where the table is 0
  int kQ = kQMax;
  float w0[3] = {0, 0, 0}, c1[3] = {0, 0, 0};
  std::uint32_t offset = 0;  // of the table in Grid::tables
};
struct Kernel : KernelHead {
  std::vector<float> table;  // (kQ * qmax + 1) x channels: table(i / kQ)
};

Kernel make_kernel(const Profile& p, double s, int r_cap) {
  const int C = p.channels;
  const std::size_t K = p.variance_mm2.size();
  Kernel k;
  double wsum[3] = {0, 0, 0};
  for (int c = 0; c < C; ++c) {
    double vmax = 0;
    for (std::size_t g = 0; g < K; ++g)
      if (p.weight[g][c] > 0) vmax = std::max(vmax, p.variance_mm2[g]), wsum[c] += p.weight[g][c];
    const double r = std::ceil(3 * std::sqrt(vmax) / s - 1e-9);  // 3 sigma, in pixels
    k.Rc[c] = static_cast<int>(std::clamp(r, 1.0, double(std::max(1, r_cap))));
    k.R = std::max(k.R, k.Rc[c]);
  }
  k.kz = static_cast<float>(100 / (s * s));
  k.qmax = static_cast<float>(k.R * k.R + 1);
  while (k.kQ > 1 && static_cast<double>(k.kQ) * (k.R * double(k.R) + 1) + 1 > kTableMax) k.kQ /= 2;
  const int kQ = k.kQ, n = kQ * (k.R * k.R + 1) + 1;
  std::vector<double> table(static_cast<std::size_t>(n) * C, 0.0), col(n);
  double c0[3] = {0, 0, 0}, c1[3] = {0, 0, 0};
  for (std::size_t g = 0; g < K; ++g) {
    const double t = p.variance_mm2[g] / (s * s);  // per-axis variance in px^2
    const double a = std::clamp((t - kSampledFrom) / (kSampledFull - kSampledFrom), 0.0, 1.0);
    if (a > 0) {
      // The Gaussian sampled at q = i / kQ (exp(-q / 2t), by recurrence).
      const double r = std::exp(-1.0 / (kQ * 2 * t));
      col[0] = 1;
      for (int i = 1; i < n; ++i) col[i] = col[i - 1] > 1e-30 ? col[i - 1] * r : 0.0;  // no denormals
      for (int c = 0; c < C; ++c) {
        if (!(p.weight[g][c] > 0)) continue;
        // normalised on the channel's integer taps -Rc..Rc
        double norm = 1;
        for (int d = 1; d <= k.Rc[c]; ++d) norm += 2 * col[kQ * d * d];
        const double w = a * p.weight[g][c] / wsum[c] / norm;
        const int last = kQ * k.Rc[c] * k.Rc[c];
        for (int i = 0; i <= last; ++i) table[static_cast<std::size_t>(i) * C + c] += w * col[i];
      }
    }
    if (a < 1) {
      // Three taps [t/2, 1 - t, t/2]: the same per-axis variance t (the
      // Gaussian's second-order action on an image resolved at this scale).
      for (int c = 0; c < C; ++c) {
        const double w = p.weight[g][c] / wsum[c];
        c0[c] += w * (1 - a) * (1 - t);
        c1[c] += w * (1 - a) * t / 2;
      }
    }
  }
  k.table.assign(table.begin(), table.end());
  for (int c = 0; c < C; ++c) {
    k.w0[c] = static_cast<float>(table[c] + c0[c]);
    k.c1[c] = static_cast<float>(c1[c]);
  }
  return k;
}

// Kernels by pixel-size bin for one profile and radius cap, kept per thread
// across calls: hfr-render scatters every band of every pair with one of a
// few profiles over much the same bins, and a kernel depends on nothing else.
constexpr std::size_t kCachedProfiles = 8;
constexpr std::size_t kCachedFloats = 4u << 20;  // tables per thread (16 MB), then the caches start over
struct KernelCache {
  Profile profile;
  int r_cap = 0;
  std::map<int, std::shared_ptr<const Kernel>> kernels;  // by bin
};
struct KernelCaches {
  std::deque<KernelCache> caches;  // the most recently added last
  std::size_t floats = 0;          // in all their tables
};
thread_local KernelCaches kernel_caches;

KernelCache& kernel_cache(const Profile& p, int r_cap) {
  auto& caches = kernel_caches.caches;
  for (KernelCache& c : caches)
    if (c.r_cap == r_cap && c.profile.channels == p.channels && c.profile.variance_mm2 == p.variance_mm2 &&
        c.profile.weight == p.weight)
      return c;
  if (caches.size() >= kCachedProfiles) {
    for (const auto& k : caches.front().kernels) kernel_caches.floats -= k.second->table.size();
    caches.pop_front();
  }
  caches.push_back({p, r_cap, {}});
  return caches.back();
}

void cache_kernel(KernelCache& c, int bin, std::shared_ptr<const Kernel> k) {
  if (kernel_caches.floats + k->table.size() > kCachedFloats) {
    for (KernelCache& other : kernel_caches.caches) other.kernels.clear();
    kernel_caches.floats = 0;
  }
  kernel_caches.floats += k->table.size();
  c.kernels.emplace(bin, std::move(k));
}

// Four floats / ints: GCC and Clang vector extensions (SSE2 on x86-64, NEON
// on arm64), so that the passes work on kLanes receivers at once; eight in
// the AVX2 passes (x86-64 CPUs that have it). Only exactly rounded
// operations, no FMA: both widths give the same bits.
typedef float f4 __attribute__((vector_size(16)));
typedef std::int32_t i4 __attribute__((vector_size(16)));
template <int N>
struct Vec {
  typedef float F __attribute__((vector_size(4 * N)));
  typedef std::int32_t I __attribute__((vector_size(4 * N)));
};
#define HFR_SS_INLINE inline __attribute__((always_inline))

// The sub-pixel part's fall-off with the squared world distance q (px^2) to
// a neighbour one pixel away: 1/q on a tilted surface (the foreshortened
// variance), faded out between slopes of sqrt(3) and sqrt(8) (60-70 degrees)
// so that it does not cross depth discontinuities. 0 for NaN.
template <class F>
HFR_SS_INLINE F sub_falloff(F q) {
  F x = (q - 4) * 0.2f;
  x = x > 0 ? x : 0;
  x = x < 1 ? x : 1;
  const F f = (1 - x * x * (3 - 2 * x)) / q;
  return q < 9 ? f : 0;
}

template <class F = f4>
HFR_SS_INLINE F load4(const float* p) {
  F v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class F>
HFR_SS_INLINE void store4(float* p, F v) { std::memcpy(p, &v, sizeof v); }

// log2 of a positive finite float to about 3e-5 (for choosing kernel bins).
inline float fast_log2(float z) {
  std::int32_t b;
  std::memcpy(&b, &z, sizeof b);
  const int e = ((b >> 23) & 255) - 127;
  b = (b & 0x007fffff) | 0x3f800000;  // the mantissa, in [1, 2)
  float m;
  std::memcpy(&m, &b, sizeof m);
  const float x = m - 1;
  return e + x * (1.4418251f + x * (-0.70867494f + x * (0.41539777f + x * (-0.19439043f + x * 0.045870752f))));
}

// Planar images with guard columns (depth +inf, signal 0) on both sides of
// each row and a padded row stride, and each pixel's kernel.
struct Grid {
  int W = 0, H = 0, G = 0;                // G guard columns each side
  std::size_t P = 0;                      // row stride
  std::vector<float> z;                   // depth (cm), +inf where not covered and in the guards
  std::vector<std::uint16_t> bin;         // each pixel's kernel (0 where not covered; see `covered` in pass_row)
  std::vector<std::array<int, 4>> row_r;  // per row: the largest Rc of each channel, and of all
  std::vector<float> tables;              // every kernel's table; the first C floats are 0
  std::vector<KernelHead> kernels;
  std::size_t at(int x, int y) const { return static_cast<std::size_t>(y) * P + G + x; }
  std::size_t size() const { return P * H; }
};

// One row y of receivers, kLanes at a time, for sources along the row
// (kColumns false) or along the column (true). n, d: the input's C numerator
// and C denominator planes; on, od: the output's (the column pass writes the
// ratio, numerator / denominator, to `on` only).
template <int C, bool kColumns, int N>
HFR_SS_INLINE void pass_row_n(const Grid& g, int y, const float* const* n, const float* const* d, float* const* on,
                              float* const* od) {
  typedef typename Vec<N>::F f4;
  typedef typename Vec<N>::I i4;
  const std::array<int, 4>& rr = g.row_r[y];
  const float* tab = g.tables.data();
  for (int x0 = 0; x0 < g.W; x0 += N) {
    const std::size_t r = g.at(x0, y);
    const f4 zr = load4<f4>(&g.z[r]);
    f4 kz = {}, qm = {}, kq = {}, c1[C] = {}, an[C] = {}, ad[C] = {};
    i4 off = {};
    bool any = false;
    for (int l = 0; l < N; ++l) {
      const bool covered = std::isfinite(zr[l]);  // lanes past the row's end are guard cells: not covered
      any = any || covered;
      const KernelHead& k = g.kernels[g.bin[r + l]];
      kz[l] = k.kz, kq[l] = float(k.kQ);
      qm[l] = covered ? k.qmax : 0.0f;  // uncovered: always table entry 0, which is 0
      off[l] = covered ? static_cast<std::int32_t>(k.offset) : 0;
      for (int c = 0; c < C; ++c) {
        const float w0 = covered ? k.w0[c] : 0.0f;
        c1[c][l] = covered ? k.c1[c] : 0.0f;
        an[c][l] = w0 * n[c][r + l];
        ad[c][l] = w0 * d[c][r + l];
      }
    }
    // The taps at distance k on both sides. s: the source block's index.
    auto taps = [&](int k, auto sub_pixel) {
      const float dd = float(k) * float(k);
      for (int e : {k, -k}) {
        std::size_t s = r + e;
        if (kColumns) {
          if (y + e < 0 || y + e >= g.H) continue;
          s = g.at(x0, y + e);
        }
        const f4 dz = load4<f4>(&g.z[s]) - zr;
        const f4 dz2 = dz * dz * kz;
        f4 q = dd + dz2;
        q = q < qm ? q : qm;  // also for NaN / inf (uncovered pixels): qm
        const i4 idx = off + __builtin_convertvector(q * kq + 0.5f, i4) * C;
        f4 fall = {};
        if (sub_pixel) fall = sub_falloff(1 + dz2);
        for (int c = 0; c < C; ++c) {
          if (C > 1 && k > rr[c]) continue;
          f4 w;
          for (int l = 0; l < N; ++l) w[l] = tab[idx[l] + c];
          if (sub_pixel) w += c1[c] * fall;
          an[c] += w * load4<f4>(&n[c][s]);
          ad[c] += w * load4<f4>(&d[c][s]);
        }
      }
    };
    if (any) {
      taps(1, std::true_type());
      for (int k = 2; k <= rr[3]; ++k) taps(k, std::false_type());
    }
    if (!kColumns) {
      for (int c = 0; c < C; ++c) store4(&on[c][r], an[c]), store4(&od[c][r], ad[c]);
    } else {
      for (int c = 0; c < C; ++c) store4(&on[c][r], ad[c] > 0 ? an[c] / ad[c] : 0);  // the weighted mean
    }
  }
}

template <int C, bool kColumns>
void pass_row(const Grid& g, int y, const float* const* n, const float* const* d, float* const* on, float* const* od) {
  pass_row_n<C, kColumns, kLanes>(g, y, n, d, on, od);
}
#if defined(__x86_64__) && defined(__GNUC__)
template <int C, bool kColumns>
__attribute__((target("avx2"))) void pass_row_avx2(const Grid& g, int y, const float* const* n, const float* const* d,
                                                   float* const* on, float* const* od) {
  pass_row_n<C, kColumns, kMaxLanes>(g, y, n, d, on, od);
}
bool use_avx2() {
  static const bool cpu = __builtin_cpu_supports("avx2");
  const char* simd = std::getenv("HFR_RENDER_SIMD");  // "sse": the 4-lane passes (as render's shading)
  return cpu && !(simd && std::string(simd) == "sse");
}
#endif

// Both passes. planes: C planes of sqrt(a) E cov, then the coverage plane.
// Returns C planes: the weighted means of sqrt(a) E.
template <int C>
std::unique_ptr<float[]> run_passes(const Grid& g, const std::vector<float>& planes, int threads) {
  const std::size_t PS = g.size();
  // every float of these that is read is written first (rows in whole blocks of kLanes or kMaxLanes)
  std::unique_ptr<float[]> mid(new float[2 * C * PS]), out(new float[C * PS]);
  const float *n1[C], *d1[C], *n2[C], *d2[C];
  float *m_n[C], *m_d[C], *o_n[C], *o_d[C];
  for (int c = 0; c < C; ++c) {
    n1[c] = &planes[c * PS], d1[c] = &planes[C * PS];  // every channel's denominator: the coverage
    m_n[c] = &mid[c * PS], m_d[c] = &mid[(C + c) * PS];
    n2[c] = m_n[c], d2[c] = m_d[c];
    o_n[c] = &out[c * PS], o_d[c] = nullptr;
  }
#if defined(__x86_64__) && defined(__GNUC__)
  if (use_avx2()) {
    parallel_for(static_cast<std::size_t>(g.H), threads,
                 [&](std::size_t y) { pass_row_avx2<C, false>(g, static_cast<int>(y), n1, d1, m_n, m_d); });
    parallel_for(static_cast<std::size_t>(g.H), threads,
                 [&](std::size_t y) { pass_row_avx2<C, true>(g, static_cast<int>(y), n2, d2, o_n, o_d); });
    return out;
  }
#endif
  parallel_for(static_cast<std::size_t>(g.H), threads,
               [&](std::size_t y) { pass_row<C, false>(g, static_cast<int>(y), n1, d1, m_n, m_d); });
  parallel_for(static_cast<std::size_t>(g.H), threads,
               [&](std::size_t y) { pass_row<C, true>(g, static_cast<int>(y), n2, d2, o_n, o_d); });
  return out;
}

std::string dims(std::size_t a, int h, int w, int c) {
  return std::to_string(a) + " != " + std::to_string(h) + " x " + std::to_string(w) +
         (c > 0 ? " x " + std::to_string(c) : std::string());
}

}  // namespace

// ---------------------------------------------------------------- profiles and tissue optics

Profile skin_visible() {
  Profile p;
  p.channels = 3;
  p.variance_mm2 = {0.0064, 0.0484, 0.187, 0.567, 1.99, 7.41};
  p.weight = {{0.233, 0.455, 0.649}, {0.100, 0.336, 0.344}, {0.118, 0.198, 0.0},
              {0.113, 0.007, 0.007}, {0.358, 0.004, 0.0},   {0.078, 0.0, 0.0}};
  return p;
}

double reduced_scattering_per_cm(double nm) {
  check_wavelength(nm, "reduced_scattering_per_cm");
  return 46.0 * std::pow(nm / 500.0, -1.421);
}

double absorption_per_cm(double nm, const Dermis& d) {
  check_wavelength(nm, "absorption_per_cm");
  check_dermis(d, "absorption_per_cm");
  const double hbo2 = interpolate(kHb, nm, [](const HbRow& r) { return r.hbo2; });
  const double hb = interpolate(kHb, nm, [](const HbRow& r) { return r.hb; });
  const double blood = kBloodPerEps * (d.saturation * hbo2 + (1 - d.saturation) * hb);
  const double k = interpolate(kWater, nm, [](const WaterRow& r) { return r.k; });
  const double water = 4 * kPi * k / (nm * 1e-7);
  const double base = d.baseline * std::pow(nm, -3.255);
  return d.blood * blood + (1 - d.blood) * base + d.water * water;
}

double diffusion_length_cm(double nm, const Dermis& d) {
  check_wavelength(nm, "diffusion_length_cm");
  const double mua = absorption_per_cm(nm, d), musp = reduced_scattering_per_cm(nm);
  if (!(mua > 0)) throw Error("subsurface: diffusion_length_cm: no absorption (the diffusion length is infinite)");
  return 1 / std::sqrt(3 * mua * (mua + musp));
}

Profile skin_nir(double nm, const Dermis& d) {
  const double r = diffusion_length_cm(nm, d) / diffusion_length_cm(kRedNm, d);
  const Profile vis = skin_visible();
  Profile p;
  p.channels = 1;
  for (std::size_t k = 0; k < vis.variance_mm2.size(); ++k) {
    p.variance_mm2.push_back(vis.variance_mm2[k] * r * r);
    p.weight.push_back({vis.weight[k][0], 0, 0});
  }
  return p;
}

double profile_variance_mm2(const Profile& p, int c) {
  if (c < 0 || c >= std::min(p.channels, 3) || p.weight.size() != p.variance_mm2.size())
    throw Error("subsurface: profile_variance_mm2: bad channel or profile");
  double sw = 0, sv = 0;
  for (std::size_t k = 0; k < p.weight.size(); ++k) sw += p.weight[k][c], sv += p.weight[k][c] * p.variance_mm2[k];
  if (!(sw > 0)) throw Error("subsurface: profile_variance_mm2: channel " + std::to_string(c) + " has no weight");
  return sv / sw;
}

// ---------------------------------------------------------------- scatter

void scatter(const Layers& L, const Profile& p, double mm_per_px_at_1cm, std::vector<float>& radiance, int threads) {
  const int W = L.width, H = L.height, C = L.channels;
  if (W <= 0 || H <= 0) throw Error("subsurface: layer size must be positive");
  if (C < 1 || C > 3) throw Error("subsurface: layers must have 1..3 channels, not " + std::to_string(C));
  if (p.channels != C)
    throw Error("subsurface: profile has " + std::to_string(p.channels) + " channels, layers " + std::to_string(C));
  const std::size_t np = static_cast<std::size_t>(W) * H, nc = np * C;
  if (L.irradiance.size() != nc) throw Error("subsurface: irradiance size " + dims(L.irradiance.size(), H, W, C));
  if (L.albedo.size() != nc) throw Error("subsurface: albedo size " + dims(L.albedo.size(), H, W, C));
  if (L.coverage.size() != np) throw Error("subsurface: coverage size " + dims(L.coverage.size(), H, W, 0));
  if (L.depth.size() != np) throw Error("subsurface: depth size " + dims(L.depth.size(), H, W, 0));
  if (radiance.size() != nc) throw Error("subsurface: radiance size " + dims(radiance.size(), H, W, C));
  if (!std::isfinite(mm_per_px_at_1cm) || mm_per_px_at_1cm <= 0)
    throw Error("subsurface: mm_per_px_at_1cm must be finite and > 0");
  if (p.variance_mm2.empty() || p.weight.size() != p.variance_mm2.size())
    throw Error("subsurface: profile needs one weight per variance (and at least one)");
  for (std::size_t k = 0; k < p.variance_mm2.size(); ++k) {
    if (!std::isfinite(p.variance_mm2[k]) || p.variance_mm2[k] < 0)
      throw Error("subsurface: profile variance " + std::to_string(k) + " must be finite and >= 0");
    for (int c = 0; c < C; ++c)
      if (!std::isfinite(p.weight[k][c]) || p.weight[k][c] < 0)
        throw Error("subsurface: profile weight " + std::to_string(k) + " must be finite and >= 0");
  }
  for (int c = 0; c < C; ++c) {
    double s = 0;
    for (const auto& w : p.weight) s += w[c];
    if (!(s > 0) || !std::isfinite(s))
      throw Error("subsurface: profile channel " + std::to_string(c) + " has no weight");
  }

  // Validate; sqrt(albedo); pixel sizes, quantised to kBinsPerOctave per octave.
  std::vector<int> key(np, 0);
  std::vector<float> sqrt_a(nc, 0.0f);
  int kmin = std::numeric_limits<int>::max(), kmax = std::numeric_limits<int>::min();
  const float log2m = static_cast<float>(std::log2(mm_per_px_at_1cm));
  for (std::size_t i = 0; i < np; ++i) {
    const float cov = L.coverage[i];
    if (!(cov >= 0 && cov <= 1)) throw Error("subsurface: coverage at pixel " + std::to_string(i) + " not in [0, 1]");
    if (cov == 0) continue;
    const float z = L.depth[i];
    if (!std::isfinite(z) || z <= 0)
      throw Error("subsurface: depth at pixel " + std::to_string(i) + " must be finite and > 0");
    for (int c = 0; c < C; ++c) {
      const float a = L.albedo[i * C + c], e = L.irradiance[i * C + c];
      if (!std::isfinite(a) || a < 0 || !std::isfinite(e))
        throw Error("subsurface: albedo or irradiance at pixel " + std::to_string(i) + " not finite (or albedo < 0)");
      sqrt_a[i * C + c] = std::sqrt(a);
    }
    const float lk = (z < 1e30f && z > 1e-30f ? fast_log2(z) + log2m : 1e9f) * kBinsPerOctave;
    if (!(std::abs(lk) < 1e6f)) throw Error("subsurface: pixel size out of range at pixel " + std::to_string(i));
    key[i] = static_cast<int>(std::floor(lk + 0.5f));
    kmin = std::min(kmin, key[i]), kmax = std::max(kmax, key[i]);
  }
  if (kmin > kmax) return;  // nothing covered
  std::vector<int> slot(static_cast<std::size_t>(kmax - kmin) + 1, -1);
  std::vector<int> used;
  for (std::size_t i = 0; i < np; ++i)
    if (L.coverage[i] > 0 && slot[key[i] - kmin] < 0) {
      slot[key[i] - kmin] = 0;
      used.push_back(key[i]);
    }
  std::sort(used.begin(), used.end());
  if (used.size() > 65535) throw Error("subsurface: depth range too large");
  for (std::size_t b = 0; b < used.size(); ++b) slot[used[b] - kmin] = static_cast<int>(b);
  Grid g;
  const int r_cap = std::min(std::max(W, H), kMaxRadius);
  std::vector<std::shared_ptr<const Kernel>> ks(used.size());
  KernelCache& cache = kernel_cache(p, r_cap);
  std::vector<std::size_t> missing;
  for (std::size_t b = 0; b < used.size(); ++b) {
    const auto it = cache.kernels.find(used[b]);
    if (it != cache.kernels.end()) ks[b] = it->second;
    else missing.push_back(b);
  }
  parallel_for(missing.size(), threads, [&](std::size_t i) {
    const std::size_t b = missing[i];
    ks[b] = std::make_shared<const Kernel>(make_kernel(p, std::exp2(double(used[b]) / kBinsPerOctave), r_cap));
  });
  for (std::size_t b : missing) cache_kernel(cache, used[b], ks[b]);
  g.kernels.resize(used.size());
  std::size_t total = C;  // the zero entry for uncovered receivers
  int rmax = 1;
  for (std::size_t b = 0; b < used.size(); ++b) {
    KernelHead& k = g.kernels[b];
    k = *ks[b];
    k.offset = static_cast<std::uint32_t>(total);
    total += ks[b]->table.size();
    rmax = std::max(rmax, k.R);
    if (total > std::numeric_limits<std::int32_t>::max()) throw Error("subsurface: kernel tables too large");
  }
  g.tables.assign(total, 0.0f);
  for (std::size_t b = 0; b < used.size(); ++b)
    std::copy(ks[b]->table.begin(), ks[b]->table.end(), g.tables.begin() + g.kernels[b].offset);

  // Planar layout with guards; pack sqrt(a) E cov per channel, then cov.
  g.W = W, g.H = H, g.G = rmax + kMaxLanes;
  g.P = (static_cast<std::size_t>(W) + 2 * g.G + 15) / 16 * 16 + 16;  // not a multiple of 4 KiB
  const std::size_t PS = g.size();
  std::vector<float> planes((C + 1) * PS, 0.0f);
  g.z.assign(PS, std::numeric_limits<float>::infinity());
  g.bin.assign(PS, 0);
  g.row_r.assign(H, {0, 0, 0, 0});
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const std::size_t i = static_cast<std::size_t>(y) * W + x, o = g.at(x, y);
      const float cov = L.coverage[i];
      if (cov == 0) continue;
      g.z[o] = L.depth[i];
      for (int c = 0; c < C; ++c) planes[c * PS + o] = sqrt_a[i * C + c] * L.irradiance[i * C + c] * cov;
      planes[C * PS + o] = cov;
      const int b = slot[key[i] - kmin];
      const KernelHead& k = g.kernels[b];
      g.bin[o] = static_cast<std::uint16_t>(b);
      for (int c = 0; c < C; ++c) g.row_r[y][c] = std::max(g.row_r[y][c], k.Rc[c]);
      g.row_r[y][3] = std::max(g.row_r[y][3], k.R);
    }

  const std::unique_ptr<float[]> out = C == 1   ? run_passes<1>(g, planes, threads)
                                       : C == 2 ? run_passes<2>(g, planes, threads)
                                                : run_passes<3>(g, planes, threads);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const std::size_t i = static_cast<std::size_t>(y) * W + x, o = g.at(x, y);
      const float cov = L.coverage[i];
      if (cov == 0) continue;
      for (int c = 0; c < C; ++c) radiance[i * C + c] += cov * sqrt_a[i * C + c] * out[c * PS + o];
    }
}

}  // namespace hfr::subsurface
