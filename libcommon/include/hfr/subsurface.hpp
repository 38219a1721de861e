// Screen-space subsurface scattering for skin (VIS and NIR): the diffuse
// light a ray tracer computes per pixel, spread over the skin by a radial
// diffusion profile, in the "pre- and post-scatter texturing" form of d'Eon &
// Luebke (GPU Gems 3, ch. 14, 2007) and the separable screen-space form of
// Jimenez et al. (2009, 2015). See docs/subsurface.md.
//
// For pixel i, with cov = the fraction of its samples on subsurface material,
// a = their mean albedo and E = their mean diffuse irradiance term (so that
// without scattering the diffuse radiance is cov * a * E), the scattered
// diffuse radiance is
//   L_i = cov_i sqrt(a_i) [sum_j w_ij sqrt(a_j) E_j cov_j] / [sum_j w_ij cov_j]
// per channel, where w_ij is the profile R(r) at the world distance r between
// the two pixels' surface points (lateral: screen distance * depth * pixel
// pitch; plus the depth difference). It is computed as a horizontal then a
// vertical 1-D pass with the profile's summed 1-D kernel, cut at 3 sigma of
// each channel's widest Gaussian (so nothing crosses larger depth steps); a
// zero-width profile gives L = cov * a * E. Pixels with cov = 0 neither give
// nor receive.
//
// Units: depth in cm (camera-space z, as in hfr/mesh.hpp), profile variances
// in mm^2, optical coefficients in cm^-1, wavelengths in nm.
// Plain C++ (no Embree, no OpenCV; the passes use GCC/Clang vector extensions).
#pragma once
#include <array>
#include <vector>

namespace hfr::subsurface {

// A radial diffusion profile R(r) = sum_k weight[k][c] G(variance_mm2[k], r),
// with G(v, r) = exp(-r^2 / (2 v)) / (2 pi v) the 2-D Gaussian of variance v
// per axis. Only the weights' ratios within a channel matter (the result is
// normalised per channel); channels 0..channels-1 of each weight are used.
struct Profile {
  std::vector<double> variance_mm2;           // >= 0 (0: a delta)
  std::vector<std::array<double, 3>> weight;  // one per variance, >= 0; each channel's sum > 0
  int channels = 3;                           // 1..3
};

// d'Eon & Luebke's six-Gaussian fit to the three-layer skin profile of Donner
// & Jensen (2005), RGB (GPU Gems 3, ch. 14). Red, green, blue per-axis
// variances 1.383, 0.068, 0.025 mm^2.
Profile skin_visible();

// Dermis-like tissue for the diffusion length: volume fractions of whole blood
// (150 g/L haemoglobin) and water, blood oxygen saturation, and the
// coefficient of the bloodless-skin baseline absorption base * nm^-3.255.
struct Dermis {
  double blood = 0.01;       // 1 % (typical range 0.2-2 %)
  double saturation = 0.75;  // SO2
  double water = 0.65;
  double baseline = 7.84e8;  // cm^-1 nm^3.255 (Jacques, "Skin optics", 1998)
};

// Reduced scattering of skin, Jacques 2013 (Phys. Med. Biol. 58 R37, its skin fit):
// 46.0 (nm / 500)^-1.421 cm^-1.
double reduced_scattering_per_cm(double wavelength_nm);
// Absorption of the dermis: blood * mu_a(whole blood, SO2) + (1 - blood) *
// baseline + water * mu_a(water), cm^-1. Haemoglobin: Prahl's tabulation of
// Gratzer & Kollias; water: Hale & Querry 1973. 450..1000 nm.
double absorption_per_cm(double wavelength_nm, const Dermis& dermis = {});
// Diffusion length 1 / sqrt(3 mu_a (mu_a + mu_s')) in cm. 450..1000 nm;
// throws hfr::Error outside that range or for non-finite arguments.
double diffusion_length_cm(double wavelength_nm, const Dermis& dermis = {});

// One channel: skin_visible()'s red profile (reference 633 nm) with every
// variance scaled by (delta(wavelength) / delta(633 nm))^2.
Profile skin_nir(double wavelength_nm, const Dermis& dermis = {});

// Per-axis variance (mm^2) of channel c of a profile: the weighted mean of the
// variances.
double profile_variance_mm2(const Profile& profile, int channel);

// Per-pixel layers over the subsurface samples of each pixel. Images are
// height x width (x channels), row-major, like hfr-render's radiance.
struct Layers {
  int width = 0, height = 0, channels = 0;
  std::vector<float> irradiance, albedo;  // H*W*C: means over the pixel's subsurface samples
  std::vector<float> coverage, depth;     // H*W: fraction in [0, 1]; mean camera-space z (cm) of those samples
};

// Adds the scattered diffuse radiance to `radiance` (H*W*C). mm_per_px_at_1cm:
// the size of one pixel in mm at a depth of 1 cm (10 / focal_px for a
// pinhole), so that a pixel at depth z covers z * mm_per_px_at_1cm mm.
// Values of pixels with coverage 0 are ignored (their depth may be NaN).
// Throws hfr::Error for mismatched sizes or channels, a bad profile, a
// non-finite or non-positive scale, coverage outside [0, 1], or, where
// coverage > 0, a non-positive or non-finite depth, a negative albedo or a
// non-finite value. The result does not depend on `threads`.
void scatter(const Layers& layers, const Profile& profile, double mm_per_px_at_1cm, std::vector<float>& radiance,
             int threads = 1);

}  // namespace hfr::subsurface
