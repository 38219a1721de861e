// Reflectance maps from one photo of a fitted face: the photo is unwrapped
// into the mesh's texture space where the camera sees the surface
// (depth-tested, facing the camera), the lighting is estimated as
// second-order spherical harmonics (9 coefficients per channel) and divided
// out, unseen texels are filled from the mirror texel and then with the mean
// skin albedo. Specular albedo and roughness come from a per-region prior
// (docs/reconstruct.md). All maps are linear (not sRGB).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "hfr/mesh.hpp"

namespace hfr::reflect {

// Named areas of the texture, as polygons in UV coordinates (u right, v up),
// e.g. "lips", "brow_left", "brow_right", "eye_left", "eye_right" (the
// opening between the lids), "nose", "forehead". Used to mask the lighting fit
// and to shape the specular prior; missing areas are simply not used.
struct UvArea {
  std::string name;
  std::vector<std::array<float, 2>> polygon;
};

struct UnwrapInput {
  cv::Mat image;                       // CV_32FC3 linear RGB in [0,1], or CV_32FC1 (grey)
  mesh::TriMesh mesh;                  // positions in CAMERA space (cm), with uvs
  mesh::Pinhole camera;
  std::vector<std::uint8_t> textured;  // T: triangles unwrapped into this map (their UVs in [0,1]^2)
  std::vector<std::uint8_t> occluders; // T: triangles that can hide others (empty = all)
  std::vector<UvArea> areas;
  bool mirror_u = false;               // the textured UV layout is symmetric about u = 0.5
  int texture_size = 512;
  double max_view_angle_deg = 75;      // texels seen more obliquely count as unseen
};

enum TexelSource : std::uint8_t { unseen = 0, observed = 1, mirrored = 2, mean_fill = 3 };

struct Maps {
  cv::Mat albedo;      // CV_32FC3 (CV_32FC1 when the photo is grey), texture_size^2, linear diffuse albedo
  cv::Mat specular;    // CV_32FC1 specular albedo (reflectance at normal incidence, rho_s)
  cv::Mat roughness;   // CV_32FC1 microfacet roughness (GGX alpha)
  cv::Mat source;      // CV_8UC1 TexelSource per texel (unseen = outside the textured triangles)
  cv::Mat normal;      // CV_32FC3 camera-space unit normal per observed texel (zero elsewhere)
  std::array<std::array<double, 3>, 9> sh{};  // lighting, per channel (grey: all channels equal)
  std::array<double, 3> mean_albedo{};        // of observed skin texels
  double coverage = 0;       // observed texels / textured texels
  double sh_residual = 0;    // RMS of (image - albedo * shading) over the texels used for the fit
  bool grey = false;
};

Maps unwrap(const UnwrapInput& in);

// sRGB <-> linear (IEC 61966-2-1), elementwise on float images.
cv::Mat srgb_to_linear(const cv::Mat& srgb01);
cv::Mat linear_to_srgb(const cv::Mat& linear01);

// The 9 real SH basis functions (order 0..2) at unit normal n, including the
// Lambertian convolution factors (pi, 2pi/3, pi/4) so that shading =
// sum_k sh[k] * basis[k] is the irradiance / pi for a unit-albedo surface.
std::array<double, 9> sh_basis(const std::array<double, 3>& n);

}  // namespace hfr::reflect
