// VIS -> NIR diffuse albedo of faces (docs/spectral.md).
//
// A two-layer skin model (epidermis: melanin; dermis: blood, water, baseline
// tissue; diffusion-theory reflectance of the dermis, Beer-Lambert double
// pass through the epidermis) over the chromophore table of
// ../shared/data/skin_spectra, with global constants fitted to the NIST skin
// measurements (100 subjects at 451, 541, 649, 850 and 940 nm). Per texel,
// linear sRGB albedo is taken as reflectance near 649 / 541 / 451 nm (R, G, B),
// inverted to (melanin, blood) and the model predicts 850 / 940 nm. The
// per-texel transform is a precomputed lookup table (trilinear), so a 512x512
// map costs a few milliseconds. Non-skin regions (brows and hair, iris,
// sclera) follow their own documented rules. Plain C++ (no OpenCV).
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
  // Hybrid correction of the NIR prediction, linear in the VIS bands:
  // R_nir = physics_nir + c[0] + c[1] R451 + c[2] R541 + c[3] R649 (fitted on the physics residuals).
  std::array<double, 4> corr850{}, corr940{};
};
// The constants shipped (fitted on nist_skin_avg_5wl.csv; docs/spectral.md).
const ModelConstants& builtin_model();

// Per-subject (per-texel) skin parameters.
struct SkinParams {
  double melanin = 0.05;  // epidermal melanosome volume fraction, [0, 0.5]
  double blood = 0.01;    // dermal blood volume fraction, [0, 0.15]
  double residual = 0;    // RMS of log(model / measured) over the three VIS bands after inversion
};

// Model reflectance at the five bands (physics only, no hybrid correction).
std::array<double, 5> skin_reflectance(const SkinParams& p, const ModelConstants& m = builtin_model(),
                                       const Chromophores& c = builtin_chromophores());
// Least-squares inversion (log space, box-bounded) of (melanin, blood) from
// reflectance at 451, 541, 649 nm. Inputs are clamped to [1e-4, 1]; NaN reads as 1e-4.
SkinParams invert_vis(const std::array<double, 3>& r451_541_649, const ModelConstants& m = builtin_model(),
                      const Chromophores& c = builtin_chromophores());

enum class Band { nir850, nir940 };
enum class Region : std::uint8_t { skin = 0, lips = 1, brow_hair = 2, iris = 3, sclera = 4 };

// Full (slow, ~microseconds) prediction: invert, model, hybrid correction, clamp to [0, 1].
double predict_nir_exact(const std::array<double, 3>& r451_541_649, Band band,
                         const ModelConstants& m = builtin_model(), const Chromophores& c = builtin_chromophores());

// Per texel: linear sRGB albedo (R, G, B ~ 649, 541, 451 nm; already on the NIST
// reflectance scale, see exposure_scale) -> NIR diffuse albedo in [0, 1].
// Lookup table with trilinear interpolation; NaN inputs read as 0, inputs clamped to [0, 1].
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
// the factor s such that s * median_skin_rgb best fits the skin model with a
// weak prior pulling s * (R+G+B) towards the NIST median skin (0.57+0.33+0.27).
// Returns 1 for a non-finite or non-positive input.
double exposure_scale(const std::array<double, 3>& median_skin_rgb);
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

// Fits the global constants (physics by Nelder-Mead on the NIR error of
// VIS-inverted subjects, then the hybrid linear correction on the residuals).
// hybrid = false leaves corr850/corr940 zero.
ModelConstants fit_model(const std::vector<SkinSample>& data, bool hybrid = true,
                         const Chromophores& c = builtin_chromophores());

// Cross-validated errors of one predictor at one band.
struct ErrorStats {
  double rmse = 0, max_abs = 0, bias = 0, r = 0;
};
struct CrossValidation {
  int folds = 0;
  // [band 0 = 850, 1 = 940]
  std::array<ErrorStats, 2> mean_baseline, linear_regression, physics, hybrid;
};
// k-fold (folds = data.size(): leave-one-out) cross-validation of the four predictors,
// folds by subject index modulo k (deterministic).
CrossValidation cross_validate(const std::vector<SkinSample>& data, int folds,
                               const Chromophores& c = builtin_chromophores());

// Statistics helper: error of predictions against truth.
ErrorStats error_stats(const std::vector<double>& predicted, const std::vector<double>& truth);

}  // namespace hfr::spectral
