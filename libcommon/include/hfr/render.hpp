// A small physically based renderer on Embree: direct lighting of triangle
// meshes (Lambertian diffuse + GGX microfacet specular with Schlick Fresnel)
// by ambient, spherical area and point lights, with ray-traced shadows.
//
// Frames and units follow hfr/mesh.hpp: everything here is in camera space
// (OpenCV: +x right, +y down, +z forward), in centimetres; the camera is a
// pinhole at the origin; pixel centres at integer + 0.5.
//
// Radiometry (linear, unitless "radiance" per channel):
//  - AmbientLight: a constant environment of radiance rgb seen from every
//    direction. Without ambient occlusion it is evaluated analytically and
//    unshadowed: L = ((1 - F(n.v)) * albedo + F(n.v)) * rgb, i.e. a
//    Lambertian surface returns albedo * rgb and the specular lobe's
//    directional albedo is approximated by F(n.v) (roughness ignored). With
//    RenderOptions::ambient_occlusion, the diffuse part instead uses one
//    cosine-weighted visibility ray per camera sample (unbiased for the
//    diffuse term; the specular part stays F(n.v) * rgb, unshadowed).
//  - PointLight: radiant intensity rgb (per steradian): irradiance at
//    distance d, normal incidence, is rgb / d^2.
//  - SphereLight: a sphere of radius `radius` emitting uniform radiance
//    rgb / (pi radius^2), so its intensity is rgb in every direction, the
//    same as a PointLight of that rgb (irradiance rgb cos(theta) / d^2 while
//    the sphere is wholly above the horizon). It is sampled uniformly over
//    the cone it subtends (one sample and one shadow ray per camera
//    sample), which gives soft shadows. Points inside the sphere get no
//    light from it.
//  Light colour component c lights output channel c (channels <= 3).
//  Lights are not visible to camera rays and do not occlude anything (a
//  sphere light around the camera is the on-axis NIR illuminator). Only
//  direct light is simulated: no interreflection, no subsurface scattering.
//
// The BRDF at a surface point with albedo a, specular F0 and GGX alpha:
//   f = (1 - F(n.v)) a / pi + D(h) V(l, v) F(v.h)
// with the GGX distribution D, the height-correlated Smith visibility V
// (= G / (4 n.l n.v)) and Schlick's Fresnel F(c) = F0 + (F90 - F0)(1 - c)^5
// with F90 = min(1, 50 F0) (UE4/Filament), so F0 = 0 gives no specular and
// a pure Lambertian f = a / pi. The diffuse weight 1 - F(n.v) keeps the
// directional albedo <= 1 for albedo <= 1 (tested numerically).
// Shading normals are the interpolated area-weighted vertex normals
// (mesh::vertex_normals), flipped to face the viewer.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <variant>
#include <vector>

#include "hfr/mesh.hpp"

namespace hfr::render {

// A float image in texture space: row 0 at v = 1 (see hfr/mesh.hpp),
// data is height x width x channels, row-major.
struct Texture {
  int width = 0, height = 0, channels = 0;
  std::vector<float> data;
  // Bilinear lookup at (u, v) with clamp-to-edge (texel centres at
  // ((i + 0.5) / W, 1 - (j + 0.5) / H)). Writes `channels` values to out.
  void sample(double u, double v, float* out) const;
  // Throws hfr::Error naming `what` if the sizes disagree or data is not finite.
  void validate(const char* what) const;
};

// Surface reflectance. A null texture means "use the constant value".
// Textures must outlive the Scene. An albedo texture has 1 channel (used for
// every output channel) or at least as many channels as the render.
struct Material {
  const Texture* albedo = nullptr;
  std::array<float, 3> albedo_value{1, 1, 1};
  const Texture* specular = nullptr;  // F0 (normal-incidence reflectance), channel 0
  float specular_value = 0.04f;
  const Texture* roughness = nullptr;  // GGX alpha, channel 0
  float roughness_value = 0.5f;
  double albedo_scale = 1;  // multiplies the albedo
};

// One surface point's reflectance parameters.
struct SurfaceSample {
  std::array<float, 3> albedo{1, 1, 1};
  float f0 = 0.04f;
  float alpha = 0.5f;
};

// BRDF value f(wi, wo) per channel (times nothing: no cosine), for unit
// vectors n (normal), wo (towards the viewer), wi (towards the light).
// Zero when either direction is below the surface.
std::array<double, 3> brdf(const SurfaceSample& s, const double n[3], const double wo[3], const double wi[3]);

struct AmbientLight {
  std::array<float, 3> rgb{0, 0, 0};
};
struct SphereLight {
  std::array<double, 3> centre{0, 0, 0};  // camera space, cm
  double radius = 1;                      // cm, > 0
  std::array<float, 3> rgb{0, 0, 0};      // intensity (see above)
};
struct PointLight {
  std::array<double, 3> position{0, 0, 0};  // camera space, cm
  std::array<float, 3> rgb{0, 0, 0};        // intensity
};
using Light = std::variant<AmbientLight, SphereLight, PointLight>;

// The geometry to render, owning an Embree device and scene.
class Scene {
 public:
  // build_threads: Embree's thread count for building (0: Embree's default).
  explicit Scene(int build_threads = 0);
  ~Scene();
  Scene(const Scene&) = delete;
  Scene& operator=(const Scene&) = delete;
  Scene(Scene&&) noexcept;
  Scene& operator=(Scene&&) noexcept;

  // Adds a camera-space mesh (copied). Throws hfr::Error for out-of-range
  // indices, mismatched sizes or non-finite positions/uvs. Returns its id.
  int add(const mesh::TriMesh& mesh, const Material& material);
  // Builds the acceleration structure; required before render().
  void commit();
  bool committed() const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

struct RenderOptions {
  int width = 0, height = 0;
  mesh::Pinhole camera;
  int spp = 16;            // camera samples per pixel (n-rooks stratified, jittered)
  std::uint64_t seed = 1;  // the same seed gives the same image, for any thread count
  int threads = 1;
  int channels = 3;  // 1..3
  bool ambient_occlusion = false;
};

struct RenderStats {
  std::uint64_t primary_rays = 0;
  std::uint64_t shadow_rays = 0;
};

// Linear radiance, height x width x channels, row-major; background 0.
// Throws hfr::Error for bad options, an uncommitted scene or bad lights.
std::vector<float> render(const Scene& scene, const std::vector<Light>& lights, const RenderOptions& options,
                          RenderStats* stats = nullptr);

}  // namespace hfr::render
