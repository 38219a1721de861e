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
//  direct light is simulated: no interreflection; subsurface scattering is
//  left to subsurface::scatter on the RenderLayers (screen space).
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
#include <limits>
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
  double specular_scale = 1;  // multiplies F0 (e.g. the specular change from VIS to a NIR band)
  // The textures' channels to use, so that one texture can hold several maps
  // (a face's albedo in each band, specular and roughness: one lookup per hit
  // then serves every band): the albedo's first channel and count (0: the
  // rest of the texture's; 1: one value for every output channel), the
  // specular's and the roughness's channel.
  int albedo_channel = 0, albedo_channels = 0;
  int specular_channel = 0, roughness_channel = 0;
  // Skin: with RenderLayers requested, the diffuse term goes to the layers
  // (irradiance and albedo kept apart, for subsurface::scatter) instead of
  // the image; the specular term stays in the image.
  bool subsurface = false;
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

namespace detail {
// The BRDF as the renderer's shading evaluates it (float lanes, the 4-wide
// path; the 8-wide one runs the same code), for tests against brdf(): for k
// in [0, count), the unit vectors n, wo, wi at 3k (xyz) and the surface's
// f0, alpha at k give the diffuse weight kd[k] (f = kd albedo + spec) and
// the specular value spec[k]; both 0 where wo or wi is below n, spec 0 where
// f0 = 0 (the renderer's masks).
void shading_brdf(std::size_t count, const float* n, const float* wo, const float* wi, const float* f0, const float* alpha,
                  float* kd, float* spec);
}  // namespace detail

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

// An Embree device (its thread pool and memory), shared by scenes. Creating
// one costs milliseconds: make one per process, not per image.
class Device {
 public:
  // threads: Embree's thread count for building (0: Embree's default).
  explicit Device(int threads = 0);
  struct Impl;
  std::shared_ptr<Impl> impl;
};

// refit: geometries can be update()d (same triangles, new positions) and the
// acceleration structure is refitted, not rebuilt (fast; somewhat slower
// traversal after large changes).
enum class BuildQuality { low, medium, high, refit };

// The geometry to render: an Embree scene on a (shared) device.
class Scene {
 public:
  // build_threads: Embree's thread count for building (0: Embree's default);
  // this constructor makes its own device.
  explicit Scene(int build_threads = 0);
  explicit Scene(const Device& device, BuildQuality quality = BuildQuality::high);
  ~Scene();
  Scene(const Scene&) = delete;
  Scene& operator=(const Scene&) = delete;
  Scene(Scene&&) noexcept;
  Scene& operator=(Scene&&) noexcept;

  // Adds a camera-space mesh (copied). Throws hfr::Error for out-of-range
  // indices, mismatched sizes or non-finite positions/uvs. Returns its id.
  // normals: per-vertex shading normals (V x 3) to use instead of the
  // mesh's own (e.g. computed over a whole head split into materials).
  int add(const mesh::TriMesh& mesh, const Material& material, const std::vector<float>* normals = nullptr);
  // A mesh whose triangles use several materials: triangle t uses
  // materials[triangle_material[t]] (empty: materials[0]); up to 256.
  int add(const mesh::TriMesh& mesh, const std::vector<Material>& materials,
          const std::vector<std::uint8_t>& triangle_material, const std::vector<float>* normals = nullptr);
  // Replaces a geometry's material (no rebuild: one scene, several spectra).
  void set_material(int id, const Material& material);
  void set_material(int id, int index, const Material& material);
  // Which of its materials each triangle of a geometry uses (as add()'s
  // triangle_material; no rebuild).
  void set_triangle_materials(int id, const std::vector<std::uint8_t>& triangle_material);
  // New vertex positions (and normals) for a geometry, same triangles; needs
  // commit() again (a refit for BuildQuality::refit scenes, else a rebuild).
  void update(int id, const std::vector<float>& positions, const std::vector<float>* normals = nullptr);
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
  // Where output pixel coordinates (x, y) fall on the camera's image plane,
  // in camera pixels: X = a0 x + a1 y + a2, Y = a3 x + a4 y + a5. The
  // default is the identity; a similarity renders an aligned crop directly
  // (each output pixel's samples then cover its footprint on the image).
  std::array<double, 6> pixel_to_image{1, 0, 0, 0, 1, 0};
  // Where the scene is: camera = R * scene + t (the default: the scene is in
  // camera space). Lights stay in camera space. Moving the camera this way
  // lets one scene (one BVH) serve every pose of a model.
  mesh::Pose scene_to_camera;
  int spp = 16;            // camera samples per pixel (n-rooks stratified, jittered)
  std::uint64_t seed = 1;  // the same seed gives the same image, for any thread count
  int threads = 1;
  int channels = 3;  // 1..3
  bool ambient_occlusion = false;
  // Occluders farther than this (cm) along an ambient-occlusion ray are
  // ignored (infinity: none). A bounded ray stops traversing early.
  double ao_distance = std::numeric_limits<double>::infinity();
};

struct RenderStats {
  std::uint64_t primary_rays = 0;
  std::uint64_t shadow_rays = 0;
};

// Per-pixel layers of the subsurface materials' diffuse light, for
// subsurface::scatter: means over the samples that hit such a material of
// the diffuse irradiance term E (per channel; the diffuse radiance without
// scattering would be albedo * E), of the albedo, and of the camera-space
// depth z (cm); coverage is the fraction of the pixel's samples that hit one.
struct RenderLayers {
  std::vector<float> irradiance, albedo;  // height x width x channels
  std::vector<float> coverage, depth;     // height x width
  std::vector<float> alpha;               // height x width: fraction of samples that hit anything
};

// Linear radiance, height x width x channels, row-major; background 0.
// With layers, subsurface materials' diffuse light goes there instead.
// Throws hfr::Error for bad options, an uncommitted scene or bad lights.
std::vector<float> render(const Scene& scene, const std::vector<Light>& lights, const RenderOptions& options,
                          RenderStats* stats = nullptr, RenderLayers* layers = nullptr);

// One spectrum of a multi-band render: its lights, channel count (1..3),
// materials and layers.
struct Band {
  std::vector<Light> lights;
  int channels = 3;
  // materials[geometry id][material index], replacing the scene's for this
  // band (the same counts as the scene's); empty: the scene's materials.
  std::vector<std::vector<Material>> materials;
  RenderLayers* layers = nullptr;  // as render()'s, for this band
};

// Renders several spectra of one view in one pass (options.channels is
// ignored; each band has its own): the camera rays, hits, texture lookups
// of shared maps and the ambient-occlusion rays are shared by the bands,
// each band adds its own lights' shadow rays. Each band's image has the same
// distribution as render() with its lights and materials gives (the bands'
// noise is correlated: the same camera and AO samples). Images in band order.
std::vector<std::vector<float>> render_bands(const Scene& scene, const std::vector<Band>& bands,
                                             const RenderOptions& options, RenderStats* stats = nullptr);

}  // namespace hfr::render
