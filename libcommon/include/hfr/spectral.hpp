// VIS -> NIR diffuse albedo of faces (docs/spectral.md).
//
// A two-layer skin model (epidermis: melanin; dermis: blood, water, baseline
// tissue; diffusion-theory reflectance of the dermis, Beer-Lambert double
// pass through the epidermis) over the chromophore table of
// ../shared/data/skin_spectra, with global constants fitted to the NIST skin
// measurements (100 subjects at 451, 541, 649, 850 and 940 nm), and a linear
// regression from the three VIS bands, fitted on the same data. Per texel,
// linear sRGB albedo is taken as reflectance near 649 / 541 / 451 nm (R, G, B).
// In cross-validation the regression predicts the NIR bands better than the
// physics, so the regression is the shipped per-texel skin transform (a
// closed form, ~ns per texel); the physics explains it, bounds it and drives
// the non-skin rules (brows and hair, iris, sclera). Plain C++ (no OpenCV).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace hfr::spectral {

// The five bands of the NIST data, nm.
inline constexpr std::array<double, 5> kWavelengths{451, 541, 649, 850, 940};

// Absorption (cm^-1) and reduced scattering (cm^-1) at the five bands.
struct Chromophores {
  std::array<double, 5> melanosome{}, baseline{}, blood_s98{}, blood_s75{}, water{}, musp{};
};
// The table compiled in (the values of chromophore_table.csv, rows 450..940 nm).
const Chromophores& builtin_chromophores();
// Reads chromophore_table.csv (comment lines start with '#'). Throws hfr::FormatError.
Chromophores read_chromophore_table(const std::string& path);

// Global constants of the skin model (fitted once on the NIST data; see fit_model).
struct ModelConstants {
  double epi_path_cm = 0.012;  // effective double-pass path through the epidermis (2 x thickness x path factor)
  double water = 0.65;         // dermal water volume fraction
  double so2 = 0.8;            // dermal blood oxygen saturation (interpolated between the 75% and 98% columns)
  double gain = 1.0;           // overall reflectance gain (measurement geometry, specular exclusion)
  double scatter = 1.0;        // scale of the Jacques reduced-scattering power law
  bool free_scatter = false;   // invert a per-subject scattering scale as well (3 unknowns from 3 bands)
  // The shipped per-texel skin transform (it beat the physics in cross-validation, docs/spectral.md):
  // R_nir = c[0] + c[1] R451 + c[2] R541 + c[3] R649, ordinary least squares on the NIST subjects.
  std::array<double, 4> linear850{}, linear940{};
  // Exposure normalisation: log(R451 + R541 + R649) = k0 + k1 R451/sum + k2 R541/sum.
  std::array<double, 3> log_sum_from_chroma{};
};
// The constants shipped (fitted on nist_skin_avg_5wl.csv; docs/spectral.md).
const ModelConstants& builtin_model();

// Per-subject (per-texel) skin parameters.
struct SkinParams {
  double melanin = 0.05;  // epidermal melanosome volume fraction, [0, 1]
  double blood = 0.01;    // dermal blood volume fraction, [0, 0.15]
  double scatter = 1;     // subject's dermal scattering relative to the population law, [0.3, 3]
  double residual = 0;    // RMS of log(model / measured) over the three VIS bands after inversion
};

// Model reflectance at the five bands (the physics).
std::array<double, 5> skin_reflectance(const SkinParams& p, const ModelConstants& m = builtin_model(),
                                       const Chromophores& c = builtin_chromophores());
// Least-squares inversion (log space, box-bounded) of (melanin, blood) from
// reflectance at 451, 541, 649 nm. Inputs are clamped to [1e-4, 1]; NaN reads as 1e-4.
SkinParams invert_vis(const std::array<double, 3>& r451_541_649, const ModelConstants& m = builtin_model(),
                      const Chromophores& c = builtin_chromophores());

enum class Band { nir850, nir940 };
enum class Region : std::uint8_t { skin = 0, lips = 1, brow_hair = 2, iris = 3, sclera = 4 };

// Physics-only prediction (~10 us): invert (melanin, blood), model at the band, clamp to [0, 1].
double predict_nir_physics(const std::array<double, 3>& r451_541_649, Band band,
                         const ModelConstants& m = builtin_model(), const Chromophores& c = builtin_chromophores());

// Per texel: linear sRGB albedo (R, G, B ~ 649, 541, 451 nm; already on the NIST
// reflectance scale, see exposure_scale) -> NIR diffuse albedo in [0, 1].
// The shipped linear transform; NaN inputs read as 0, inputs and output clamped to [0, 1].
double nir_albedo(const std::array<double, 3>& linear_rgb, Band band);
double nir_albedo(const std::array<double, 3>& linear_rgb, Band band, Region region);

// NIR reflectance of non-skin regions (docs/spectral.md §4).
inline constexpr double kScleraNir = 0.55;       // ~0.5-0.6 near 800 nm
inline constexpr double kIrisNirMean = 0.30;     // pigment-independent iris level in NIR
inline constexpr double kIrisContrastKeep = 0.25; // fraction of the VIS relative contrast kept

// Specular albedo (rho_s, Fresnel at normal incidence) in NIR relative to VIS:
// the refractive index of the stratum corneum changes by < 1% from 550 to 940 nm,
// so F0 = ((n-1)/(n+1))^2 changes by < 2%. Returns F0(band) / F0(550 nm).
double specular_nir_scale(Band band);

// Exposure normalisation of an hfr-reconstruct albedo (arbitrary global scale):
// the factor s by which to multiply the albedo so that its median skin has the
// brightness (R+G+B) that NIST subjects of the same chromaticity have
// (log-linear fit, ModelConstants::log_sum_from_chroma; 8% RMS error in
// cross-validation). Returns 1 for a non-finite or non-positive input.
double exposure_scale(const std::array<double, 3>& median_skin_rgb, const ModelConstants& m = builtin_model());
// Median (per channel) of the texels whose region is skin (regions may be null:
// every texel; texels with any channel <= 0 are skipped). HxWx3 interleaved.
std::array<double, 3> median_skin_rgb(const float* rgb, int width, int height, const std::uint8_t* regions);

// Map-level transform: rgb HxWx3 interleaved linear albedo (or HxWx1 grey,
// treated as R = G = B), regions HxW (nullable: all skin), out HxW. Each input
// texel is multiplied by `scale` (from exposure_scale) before the transform.
void nir_albedo_map(const float* rgb, int width, int height, int channels, const std::uint8_t* regions,
                    Band band, double scale, float* out);
std::vector<float> nir_albedo_map(const std::vector<float>& rgb, int width, int height, int channels,
                                  const std::vector<std::uint8_t>& regions, Band band, double scale);

// ---- Data and fitting (used by the tests and to produce the shipped constants) ----
struct SkinSample {
  int subject = 0;
  std::array<double, 5> r{};  // reflectance at kWavelengths
};
// nist_skin_avg_5wl.csv: subject,R451,R541,R649,R850,R940. Throws hfr::FormatError.
std::vector<SkinSample> read_nist_skin(const std::string& path);

// Fits the global constants: the physics by Nelder-Mead on the five-band error of
// VIS-inverted subjects, the linear regressions by least squares.
struct FitOptions {
  bool free_scatter = false;  // see ModelConstants::free_scatter
};
ModelConstants fit_model(const std::vector<SkinSample>& data, const FitOptions& opt = {},
                         const Chromophores& c = builtin_chromophores());

// Cross-validated errors of one predictor at one band.
struct ErrorStats {
  double rmse = 0, max_abs = 0, bias = 0, r = 0;
};
struct CrossValidation {
  int folds = 0;
  // [band 0 = 850, 1 = 940]
  // hybrid = physics + a linear (VIS bands) correction of its residual
  std::array<ErrorStats, 2> mean_baseline, linear_regression, physics, hybrid;
  // the linear transform on the VIS bands at an unknown exposure normalised by exposure_scale
  std::array<ErrorStats, 2> scale_free;
};
// k-fold (folds = data.size(): leave-one-out) cross-validation of the four predictors,
// folds by subject index modulo k (deterministic).
CrossValidation cross_validate(const std::vector<SkinSample>& data, int folds, const FitOptions& opt = {},
                               const Chromophores& c = builtin_chromophores());

// Statistics helper: error of predictions against truth.
ErrorStats error_stats(const std::vector<double>& predicted, const std::vector<double>& truth);

}  // namespace hfr::spectral
