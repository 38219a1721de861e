// hfr-synth: reconstructed faces -> identities with VIS and NIR reflectance
// -> paired VIS/NIR render jobs.
//
// Identities: every reconstruction that succeeded (its record names a face
// file) becomes one; --new-identities M adds M sampled ones: shape
// coefficients from the morphable model's identity prior N(0, I), albedo
// from a Gaussian fitted (dual PCA) to the reconstructed albedo maps. Each
// identity is written once as a tensor file: VIS albedo, NIR albedo per band
// (spectral.hpp: exposure normalised, the NIST-fitted skin transform, region
// rules for lips and brows), specular, roughness, geometry, coefficients.
// Jobs: per identity, --poses variations (pose, expression, camera, lights,
// sensor), each rendered in VIS and in every NIR band with the same identity,
// pose, expression and camera (paired), or with independently drawn poses
// (--pairing independent). Every random choice comes from --seed through a
// per-identity, per-variation generator, so any shard (--shard K/N, by
// variation) reproduces exactly the jobs of a full run.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace hfr::synth {

struct Range {
  double lo = 0, hi = 0;
};

struct Options {
  std::vector<std::string> inputs;     // records files from hfr-reconstruct, "-"
  std::string output_dir;              // identity files (required)
  std::string ict_dir;                 // --ict (needed when the reconstructions use the ICT FaceKit)
  std::string renders_dir = "renders"; // where the jobs' images go (written by hfr-render)
  int poses = 4;                       // variations per identity
  int new_identities = 0;
  std::vector<int> bands = {850};      // NIR bands (850, 940)
  std::uint64_t seed = 1;
  double yaw = 30, pitch = 15, roll = 8;   // uniform in [-x, x] degrees
  double expression = 0.3;             // strength of the sampled expressions (0 = neutral)
  Range fov{20, 45};                   // field of view, degrees
  Range face_px{24, 160};              // eye-to-mouth scale of the rendered face, pixels (very low resolution at the low end)
  double nir_ambient = 0.15;           // ambient NIR relative to the on-axis illuminator (max)
  bool independent = false;            // NIR poses drawn independently of the VIS ones
  int shard = 1, shards = 1;           // --shard K/N
  std::string records = "-";           // job records
};

int run(const Options& options);

// Blackbody colour of a correlated colour temperature (K) in linear sRGB,
// normalised to luminance 1 (Planck's law integrated against the CIE 1931
// colour matching functions' Gaussian fits; 1000..40000 K).
std::array<double, 3> blackbody_rgb(double kelvin);

}  // namespace hfr::synth
