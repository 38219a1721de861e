#include "hfr/render.hpp"

#include <embree3/rtcore.h>
#include <pmmintrin.h>
#include <xmmintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <numeric>
#include <string>

#include "hfr/error.hpp"
#include "hfr/parallel.hpp"

namespace hfr::render {

namespace {

constexpr double kPi = 3.14159265358979323846;

inline double dot3(const double a[3], const double b[3]) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
inline void normalize3(double a[3]) {
  const double l = std::sqrt(dot3(a, a));
  if (l > 0)
    for (int k = 0; k < 3; ++k) a[k] /= l;
}

// Flush-to-zero and denormals-are-zero while tracing (as Embree asks: its
// traversal slows down on denormals), restored afterwards.
struct DenormalsOff {
  unsigned saved = _mm_getcsr();
  DenormalsOff() { _mm_setcsr(saved | 0x8040u); }
  ~DenormalsOff() { _mm_setcsr(saved); }
};

// splitmix64: a small, well-mixed generator; one per pixel.
struct Rng {
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
};

// Schlick's Fresnel with the reflectance at grazing incidence limited to
// 50 F0 (as in UE4 / Filament), so that F0 = 0 means no specular at all.
inline double fresnel(double f0, double cos_theta) {
  const double f90 = std::min(1.0, 50 * f0);
  const double m = std::clamp(1 - cos_theta, 0.0, 1.0);
  const double m2 = m * m;
  return f0 + (f90 - f0) * m2 * m2 * m;
}

// An orthonormal basis around a unit vector w (Duff et al. 2017).
void basis(const double w[3], double u[3], double v[3]) {
  const double sign = std::copysign(1.0, w[2]);
  const double a = -1.0 / (sign + w[2]);
  const double b = w[0] * w[1] * a;
  u[0] = 1 + sign * w[0] * w[0] * a;
  u[1] = sign * b;
  u[2] = -sign * w[0];
  v[0] = b;
  v[1] = sign + w[1] * w[1] * a;
  v[2] = -w[1];
}

}  // namespace

// ---------------------------------------------------------------- textures

void Texture::validate(const char* what) const {
  if (width <= 0 || height <= 0 || channels <= 0)
    throw Error(std::string(what) + ": texture size must be positive");
  if (data.size() != static_cast<std::size_t>(width) * height * channels)
    throw Error(std::string(what) + ": texture data size " + std::to_string(data.size()) + " != " +
                std::to_string(width) + " x " + std::to_string(height) + " x " + std::to_string(channels));
  // branch-free (vectorised: identity maps are millions of texels), then the message
  std::uint32_t bad = 0;
  for (float x : data) {
    std::uint32_t b;
    std::memcpy(&b, &x, 4);
    bad |= static_cast<std::uint32_t>((b & 0x7f800000u) == 0x7f800000u);
  }
  if (bad) throw Error(std::string(what) + ": texture value not finite");
}

void Texture::sample(double u, double v, float* out) const {
  if (!std::isfinite(u)) u = 0;
  if (!std::isfinite(v)) v = 0;
  double x = u * width - 0.5, y = (1.0 - v) * height - 0.5;
  x = std::clamp(x, 0.0, double(width - 1));
  y = std::clamp(y, 0.0, double(height - 1));
  const int x0 = static_cast<int>(x), y0 = static_cast<int>(y);
  const int x1 = std::min(x0 + 1, width - 1), y1 = std::min(y0 + 1, height - 1);
  const double fx = x - x0, fy = y - y0;
  const float* p00 = &data[(static_cast<std::size_t>(y0) * width + x0) * channels];
  const float* p01 = &data[(static_cast<std::size_t>(y0) * width + x1) * channels];
  const float* p10 = &data[(static_cast<std::size_t>(y1) * width + x0) * channels];
  const float* p11 = &data[(static_cast<std::size_t>(y1) * width + x1) * channels];
  for (int c = 0; c < channels; ++c)
    out[c] = static_cast<float>((1 - fy) * ((1 - fx) * p00[c] + fx * p01[c]) + fy * ((1 - fx) * p10[c] + fx * p11[c]));
}

// ---------------------------------------------------------------- BRDF

namespace {
// The BRDF's two parts: the diffuse weight kd (f_diffuse = kd * albedo) and
// the specular value (grey). Both zero when a direction is below the surface.
void brdf_parts(const SurfaceSample& s, const double n[3], const double wo[3], const double wi[3], double& kd,
                double& spec) {
  kd = spec = 0;
  const double nl = dot3(n, wi), nv = dot3(n, wo);
  if (nl <= 0 || nv <= 0) return;
  const double f0 = std::clamp<double>(s.f0, 0, 1);
  kd = (1 - fresnel(f0, nv)) / kPi;
  if (f0 > 0) {
    double h[3] = {wi[0] + wo[0], wi[1] + wo[1], wi[2] + wo[2]};
    normalize3(h);
    const double nh = std::max(0.0, dot3(n, h)), vh = std::max(0.0, dot3(wo, h));
    const double a = std::max<double>(s.alpha, 1e-3), a2 = a * a;
    const double dd = nh * nh * (a2 - 1) + 1;
    const double D = a2 / (kPi * dd * dd);
    const double V = 0.5 / (nl * std::sqrt(nv * nv * (1 - a2) + a2) + nv * std::sqrt(nl * nl * (1 - a2) + a2));
    const double F = fresnel(f0, vh);
    spec = D * V * F;
  }
}

// brdf_parts for several lights at one surface point: what does not depend
// on the light's direction, computed once (the same arithmetic).
struct Lobe {
  double nv, f0, kd = 0, a2 = 0, gv = 0;  // gv: the Smith term's view half
  Lobe(const SurfaceSample& s, const double n[3], const double wo[3]) : nv(dot3(n, wo)), f0(std::clamp<double>(s.f0, 0, 1)) {
    if (nv <= 0) return;
    kd = (1 - fresnel(f0, nv)) / kPi;
    const double a = std::max<double>(s.alpha, 1e-3);
    a2 = a * a;
    gv = std::sqrt(nv * nv * (1 - a2) + a2);
  }
  inline __attribute__((always_inline)) void parts(const double n[3], const double wo[3], const double wi[3], double& kd_out,
                                                   double& spec) const {
    kd_out = spec = 0;
    const double nl = dot3(n, wi);
    if (nl <= 0 || nv <= 0) return;
    kd_out = kd;
    if (f0 > 0) {
      double h[3] = {wi[0] + wo[0], wi[1] + wo[1], wi[2] + wo[2]};
      normalize3(h);
      const double nh = std::max(0.0, dot3(n, h)), vh = std::max(0.0, dot3(wo, h));
      const double dd = nh * nh * (a2 - 1) + 1;
      const double D = a2 / (kPi * dd * dd);
      const double V = 0.5 / (nl * gv + nv * std::sqrt(nl * nl * (1 - a2) + a2));
      const double F = fresnel(f0, vh);
      spec = D * V * F;
    }
  }
};
}  // namespace

std::array<double, 3> brdf(const SurfaceSample& s, const double n[3], const double wo[3], const double wi[3]) {
  double kd, spec;
  brdf_parts(s, n, wo, wi, kd, spec);
  std::array<double, 3> f{0, 0, 0};
  for (int c = 0; c < 3; ++c) f[c] = kd * s.albedo[c] + spec;
  return f;
}

// ---------------------------------------------------------------- scene

struct Device::Impl {
  RTCDevice device = nullptr;
  std::mutex error_mutex;
  std::string error;  // the last message Embree reported

  static void on_error(void* user, RTCError code, const char* message) {
    auto* self = static_cast<Impl*>(user);
    std::lock_guard<std::mutex> lock(self->error_mutex);
    self->error = "Embree error " + std::to_string(static_cast<int>(code)) + (message ? std::string(": ") + message : "");
  }
  void check(const char* what) {
    const RTCError code = rtcGetDeviceError(device);
    if (code != RTC_ERROR_NONE) {
      std::lock_guard<std::mutex> lock(error_mutex);
      throw Error(std::string("render: ") + what + ": " +
                  (error.empty() ? "Embree error " + std::to_string(static_cast<int>(code)) : error));
    }
  }
  ~Impl() {
    if (device) rtcReleaseDevice(device);
  }
};

Device::Device(int threads) : impl(std::make_shared<Impl>()) {
  const std::string config = threads > 0 ? "threads=" + std::to_string(threads) : std::string();
  impl->device = rtcNewDevice(config.empty() ? nullptr : config.c_str());
  if (!impl->device)
    throw Error("render: cannot create the Embree device (error " + std::to_string(int(rtcGetDeviceError(nullptr))) + ")");
  rtcSetDeviceErrorFunction(impl->device, &Impl::on_error, impl.get());
}

struct Scene::Impl {
  struct Geometry {
    std::vector<float> positions, normals, uvs;
    std::vector<std::int32_t> triangles, uv_triangles;
    std::vector<Material> materials;          // one, or one per material index
    std::vector<std::uint8_t> triangle_material;  // per triangle (empty: all material 0)
    RTCGeometry handle = nullptr;             // retained while the scene lives
    const Material& material(unsigned prim) const {
      return materials[triangle_material.empty() ? 0 : triangle_material[prim]];
    }
  };
  bool dynamic = false;
  std::shared_ptr<Device::Impl> dev;
  RTCScene scene = nullptr;
  std::vector<Geometry> geometries;
  bool committed = false;

  void check(const char* what) { dev->check(what); }
  ~Impl() {
    for (auto& g : geometries)
      if (g.handle) rtcReleaseGeometry(g.handle);
    if (scene) rtcReleaseScene(scene);
  }
};

Scene::Scene(int build_threads) : Scene(Device(build_threads)) {}

Scene::Scene(const Device& device, BuildQuality quality) : impl_(std::make_unique<Impl>()) {
  if (!device.impl || !device.impl->device) throw Error("render: no device");
  impl_->dev = device.impl;
  impl_->scene = rtcNewScene(impl_->dev->device);
  impl_->check("creating the scene");
  // refit: a two-level structure (scene quality low) whose geometries refit their BVH on update()
  impl_->dynamic = quality == BuildQuality::refit;
  rtcSetSceneFlags(impl_->scene, impl_->dynamic ? RTC_SCENE_FLAG_DYNAMIC : RTC_SCENE_FLAG_NONE);
  rtcSetSceneBuildQuality(impl_->scene, quality == BuildQuality::high     ? RTC_BUILD_QUALITY_HIGH
                                        : quality == BuildQuality::medium ? RTC_BUILD_QUALITY_MEDIUM
                                                                          : RTC_BUILD_QUALITY_LOW);
}

Scene::~Scene() = default;
Scene::Scene(Scene&&) noexcept = default;
Scene& Scene::operator=(Scene&&) noexcept = default;

bool Scene::committed() const { return impl_->committed; }

namespace {
// full: also every texel finite (textures are validated once when a geometry is added)
void check_material(const Material& material, const std::string& what, bool full = true) {
  for (const Texture* t : {material.albedo, material.specular, material.roughness})
    if (t && full) t->validate(what.c_str());
    else if (t && (t->width <= 0 || t->height <= 0 || t->channels <= 0 ||
                   t->data.size() != static_cast<std::size_t>(t->width) * t->height * t->channels))
      throw Error(what + ": texture size does not match its data");
  if (material.albedo && (material.albedo_channel < 0 || material.albedo_channels < 0 ||
                          material.albedo_channel + std::max(1, material.albedo_channels) > material.albedo->channels))
    throw Error(what + ": albedo channels outside the texture's");
  if (material.specular && (material.specular_channel < 0 || material.specular_channel >= material.specular->channels))
    throw Error(what + ": specular channel outside the texture's");
  if (material.roughness && (material.roughness_channel < 0 || material.roughness_channel >= material.roughness->channels))
    throw Error(what + ": roughness channel outside the texture's");
  if (!std::isfinite(material.albedo_scale) || !std::isfinite(material.specular_value) ||
      !std::isfinite(material.specular_scale) ||
      !std::isfinite(material.roughness_value))
    throw Error(what + ": material value not finite");
}
}  // namespace

void Scene::set_material(int id, const Material& material) { set_material(id, 0, material); }

void Scene::set_material(int id, int index, const Material& material) {
  if (id < 0 || static_cast<std::size_t>(id) >= impl_->geometries.size()) throw Error("render: no geometry " + std::to_string(id));
  auto& g = impl_->geometries[static_cast<std::size_t>(id)];
  const std::string what = "render: mesh " + std::to_string(id);
  if (index < 0 || static_cast<std::size_t>(index) >= g.materials.size())
    throw Error(what + ": no material " + std::to_string(index));
  check_material(material, what, false);
  if ((material.albedo || material.specular || material.roughness) && g.uv_triangles.empty())
    throw Error(what + ": textured material needs uvs");
  g.materials[static_cast<std::size_t>(index)] = material;
}

void Scene::set_triangle_materials(int id, const std::vector<std::uint8_t>& triangle_material) {
  if (id < 0 || static_cast<std::size_t>(id) >= impl_->geometries.size()) throw Error("render: no geometry " + std::to_string(id));
  auto& g = impl_->geometries[static_cast<std::size_t>(id)];
  const std::string what = "render: mesh " + std::to_string(id);
  if (!triangle_material.empty() && triangle_material.size() * 3 != g.triangles.size())
    throw Error(what + ": triangle_material has " + std::to_string(triangle_material.size()) + " entries for " +
                std::to_string(g.triangles.size() / 3) + " triangles");
  for (std::uint8_t k : triangle_material)
    if (k >= g.materials.size()) throw Error(what + ": material index " + std::to_string(k) + " out of range");
  g.triangle_material = triangle_material;
}

void Scene::update(int id, const std::vector<float>& positions, const std::vector<float>* normals) {
  if (id < 0 || static_cast<std::size_t>(id) >= impl_->geometries.size()) throw Error("render: no geometry " + std::to_string(id));
  auto& g = impl_->geometries[static_cast<std::size_t>(id)];
  const std::string what = "render: mesh " + std::to_string(id);
  if (positions.size() != g.positions.size()) throw Error(what + ": update with another vertex count");
  if (normals && normals->size() != positions.size()) throw Error(what + ": normals size differs from positions");
  for (float x : positions)
    if (!std::isfinite(x)) throw Error(what + ": vertex position not finite");
  if (normals)
    for (float x : *normals)
      if (!std::isfinite(x)) throw Error(what + ": normal not finite");
  auto* vb = static_cast<float*>(rtcGetGeometryBufferData(g.handle, RTC_BUFFER_TYPE_VERTEX, 0));
  if (!vb) throw Error(what + ": no vertex buffer");
  g.positions = positions;
  g.normals = normals ? *normals : mesh::vertex_normals(positions, g.triangles);
  if (!positions.empty()) std::memcpy(vb, positions.data(), positions.size() * sizeof(float));
  rtcUpdateGeometryBuffer(g.handle, RTC_BUFFER_TYPE_VERTEX, 0);
  rtcCommitGeometry(g.handle);
  impl_->check("updating a geometry");
  impl_->committed = false;
}

int Scene::add(const mesh::TriMesh& m, const Material& material, const std::vector<float>* normals) {
  return add(m, std::vector<Material>{material}, {}, normals);
}

int Scene::add(const mesh::TriMesh& m, const std::vector<Material>& materials,
               const std::vector<std::uint8_t>& triangle_material, const std::vector<float>* normals) {
  const std::string what = "render: mesh " + std::to_string(impl_->geometries.size());
  if (materials.empty() || materials.size() > 256) throw Error(what + ": needs 1 to 256 materials");
  if (!triangle_material.empty() && triangle_material.size() * 3 != m.triangles.size())
    throw Error(what + ": triangle_material has " + std::to_string(triangle_material.size()) + " entries for " +
                std::to_string(m.triangles.size() / 3) + " triangles");
  for (std::uint8_t k : triangle_material)
    if (k >= materials.size()) throw Error(what + ": material index " + std::to_string(k) + " out of range");
  m.validate(what);
  if (m.positions.size() % 3 != 0 || m.triangles.size() % 3 != 0) throw Error(what + ": sizes are not multiples of 3");
  const std::int64_t nv = m.num_vertices();
  for (std::int32_t i : m.triangles)
    if (i < 0 || i >= nv) throw Error(what + ": vertex index " + std::to_string(i) + " out of range");
  for (float x : m.positions)
    if (!std::isfinite(x)) throw Error(what + ": vertex position not finite");
  if (!m.uv_triangles.empty()) {
    if (m.uv_triangles.size() != m.triangles.size()) throw Error(what + ": uv_triangles size differs from triangles");
    const std::int64_t nt = static_cast<std::int64_t>(m.uvs.size() / 2);
    for (std::int32_t i : m.uv_triangles)
      if (i < 0 || i >= nt) throw Error(what + ": uv index " + std::to_string(i) + " out of range");
    for (float x : m.uvs)
      if (!std::isfinite(x)) throw Error(what + ": uv not finite");
  }
  if (nv > std::numeric_limits<std::int32_t>::max()) throw Error(what + ": too many vertices");
  for (const Material& material : materials) {
    check_material(material, what);
    if ((material.albedo || material.specular || material.roughness) && m.uv_triangles.empty())
      throw Error(what + ": textured material needs uvs");
  }
  if (normals && normals->size() != m.positions.size()) throw Error(what + ": normals size differs from positions");
  if (normals)
    for (float x : *normals)
      if (!std::isfinite(x)) throw Error(what + ": normal not finite");

  Impl::Geometry g;
  g.positions = m.positions;
  g.triangles = m.triangles;
  g.uvs = m.uvs;
  g.uv_triangles = m.uv_triangles;
  g.normals = normals ? *normals : mesh::vertex_normals(m.positions, m.triangles);
  g.materials = materials;
  g.triangle_material = triangle_material;

  RTCGeometry geom = rtcNewGeometry(impl_->dev->device, RTC_GEOMETRY_TYPE_TRIANGLE);
  impl_->check("creating a geometry");
  const std::size_t nt = m.triangles.size() / 3;
  auto* vb = static_cast<float*>(rtcSetNewGeometryBuffer(geom, RTC_BUFFER_TYPE_VERTEX, 0, RTC_FORMAT_FLOAT3,
                                                         3 * sizeof(float), std::max<std::size_t>(nv, 1)));
  auto* ib = static_cast<unsigned*>(rtcSetNewGeometryBuffer(geom, RTC_BUFFER_TYPE_INDEX, 0, RTC_FORMAT_UINT3,
                                                            3 * sizeof(unsigned), nt));
  if (!vb || (!ib && nt > 0)) {
    rtcReleaseGeometry(geom);
    impl_->check("allocating geometry buffers");
    throw Error(what + ": cannot allocate geometry buffers");
  }
  if (nv > 0) std::memcpy(vb, m.positions.data(), m.positions.size() * sizeof(float));
  for (std::size_t i = 0; i < m.triangles.size(); ++i) ib[i] = static_cast<unsigned>(m.triangles[i]);
  if (impl_->dynamic) rtcSetGeometryBuildQuality(geom, RTC_BUILD_QUALITY_REFIT);
  rtcCommitGeometry(geom);
  const unsigned id = rtcAttachGeometry(impl_->scene, geom);
  g.handle = geom;  // keeps the reference rtcNewGeometry gave
  impl_->check("adding a geometry");
  if (id != impl_->geometries.size()) {
    rtcReleaseGeometry(geom);
    throw Error(what + ": unexpected Embree geometry id");
  }
  impl_->geometries.push_back(std::move(g));
  impl_->committed = false;
  return static_cast<int>(id);
}

void Scene::commit() {
  rtcCommitScene(impl_->scene);
  impl_->check("building the scene");
  impl_->committed = true;
}

// ---------------------------------------------------------------- rendering

namespace {

// One band of a render call, its lights moved into the scene's frame.
struct BandState {
  std::vector<Light> lights;
  int C = 3;
  const std::vector<std::vector<Material>>* materials = nullptr;  // null: the scene's
  RenderLayers* layers = nullptr;
  float* image = nullptr;
  bool ambient = false;  // has an ambient light
  int first_kind = 0;    // occlusion queue of its first light
};

// A camera sample's first hit, what every band shares.
struct SampleGeo {
  const Scene::Impl::Geometry* g = nullptr;  // null: a miss
  unsigned geom = 0, prim = 0;
  double wo[3], n[3], ng[3], p[3], po[3], uv[2];
  double z = 0;
};

// One band's shading of one camera sample: the diffuse irradiance term E,
// the specular radiance S and the ambient diffuse term (times the AO
// visibility, added once the AO ray is traced).
struct BandShade {
  double E[3], S[3], Eamb[3];
  float albedo[3];
  bool subsurface;
};

// A shadow or AO ray and what it adds when nothing blocks it.
struct OccRay {
  float org[3], dir[3], tfar;
  int sample, band;  // band -1: the AO ray, which serves every band's ambient light
  float e[3], s[3];
};

// Bilinear lookups of one surface point, kept while the bands look up the
// same texture again (a texture holding several maps, or the specular and
// roughness maps both bands use): the first kChannels channels of a texture
// are interpolated at once. Textures of one size share the texel footprint
// (the same arithmetic as Texture::sample).
struct TexCache {
  static constexpr int kSlots = 4, kChannels = 16;
  const Texture* tex[kSlots];
  float val[kSlots][kChannels];
  int n = 0;
  int fw = 0, fh = 0;  // the footprint's texture size (0: none yet)
  std::size_t idx[4] = {0, 0, 0, 0};
  float wt[4] = {0, 0, 0, 0};
  void footprint(const Texture* t, double u, double v) {
    if (t->width == fw && t->height == fh) return;
    fw = t->width;
    fh = t->height;
    if (!std::isfinite(u)) u = 0;
    if (!std::isfinite(v)) v = 0;
    double x = u * fw - 0.5, y = (1.0 - v) * fh - 0.5;
    x = std::clamp(x, 0.0, double(fw - 1));
    y = std::clamp(y, 0.0, double(fh - 1));
    const int x0 = static_cast<int>(x), y0 = static_cast<int>(y);
    const int x1 = std::min(x0 + 1, fw - 1), y1 = std::min(y0 + 1, fh - 1);
    const double fx = x - x0, fy = y - y0;
    idx[0] = static_cast<std::size_t>(y0) * fw + x0;
    idx[1] = static_cast<std::size_t>(y0) * fw + x1;
    idx[2] = static_cast<std::size_t>(y1) * fw + x0;
    idx[3] = static_cast<std::size_t>(y1) * fw + x1;
    wt[0] = static_cast<float>((1 - fy) * (1 - fx));
    wt[1] = static_cast<float>((1 - fy) * fx);
    wt[2] = static_cast<float>(fy * (1 - fx));
    wt[3] = static_cast<float>(fy * fx);
  }
  float lerp(const Texture* t, int k) const {
    const int C = t->channels;
    const float* d = t->data.data();
    return wt[0] * d[idx[0] * C + k] + wt[1] * d[idx[1] * C + k] + wt[2] * d[idx[2] * C + k] + wt[3] * d[idx[3] * C + k];
  }
  // Channel k of texture t at (u, v).
  float get(const Texture* t, double u, double v, int k) {
    if (k >= kChannels) {
      footprint(t, u, v);
      return lerp(t, k);
    }
    for (int i = 0; i < n; ++i)
      if (tex[i] == t) return val[i][k];
    footprint(t, u, v);
    const int slot = n < kSlots ? n++ : kSlots - 1;
    tex[slot] = t;
    const int C = std::min(t->channels, kChannels);
    for (int c = 0; c < C; ++c) val[slot][c] = lerp(t, c);
    return val[slot][k];
  }
};

SurfaceSample surface(const Material& m, const SampleGeo& h, TexCache& cache) {
  SurfaceSample out;
  if (m.albedo) {
    const int first = m.albedo_channel;
    const int count = m.albedo_channels > 0 ? m.albedo_channels : m.albedo->channels - first;
    for (int c = 0; c < 3; ++c) out.albedo[c] = cache.get(m.albedo, h.uv[0], h.uv[1], first + (count == 1 ? 0 : std::min(c, count - 1)));
  } else {
    out.albedo = m.albedo_value;
  }
  for (auto& a : out.albedo) a = static_cast<float>(a * m.albedo_scale);
  out.f0 = m.specular ? cache.get(m.specular, h.uv[0], h.uv[1], m.specular_channel) : m.specular_value;
  out.alpha = m.roughness ? cache.get(m.roughness, h.uv[0], h.uv[1], m.roughness_channel) : m.roughness_value;
  out.f0 = std::clamp(static_cast<float>(out.f0 * m.specular_scale), 0.0f, 1.0f);
  out.alpha = std::clamp(out.alpha, 1e-3f, 1.0f);
  return out;
}

class Tracer {
 public:
  // samples: the most camera samples shaded before a flush()
  Tracer(const Scene::Impl& s, std::vector<BandState>& bands, const RenderOptions& o, int kinds, std::size_t samples)
      : s_(s), bands_(bands), o_(o), queues_(static_cast<std::size_t>(kinds)) {
    for (auto& q : queues_) q.reserve(samples);
    ao_far_ = std::isfinite(o.ao_distance) ? o.ao_distance : double(std::numeric_limits<float>::infinity());
    for (const auto& b : bands) ao_ = ao_ || (o.ambient_occlusion && b.ambient);
    rtcInitIntersectContext(&occ_ctx_);
  }
  std::uint64_t shadow_rays = 0;

  // The geometry of a camera sample's hit (from a packet query).
  void hit_geometry(const double dir[3], unsigned geom, unsigned prim, float bu_f, float bv_f, const float ngf[3],
                    SampleGeo& h) const {
    h.g = nullptr;
    if (geom == RTC_INVALID_GEOMETRY_ID) return;
    const auto& g = s_.geometries[geom];
    h.g = &g;
    h.geom = geom;
    h.prim = prim;
    const double bu = bu_f, bv = bv_f, bw = 1 - bu - bv;
    const std::int32_t* tri = &g.triangles[3 * prim];
    for (int k = 0; k < 3; ++k) h.wo[k] = -dir[k];
    // Geometric normal (Embree's Ng is unnormalized), facing the viewer.
    double* ng = h.ng;
    for (int k = 0; k < 3; ++k) ng[k] = ngf[k];
    normalize3(ng);
    if (dot3(ng, h.wo) < 0)
      for (int k = 0; k < 3; ++k) ng[k] = -ng[k];
    // Shading normal: interpolated vertex normals, facing the viewer.
    double* n = h.n;
    for (int k = 0; k < 3; ++k)
      n[k] = bw * g.normals[3 * tri[0] + k] + bu * g.normals[3 * tri[1] + k] + bv * g.normals[3 * tri[2] + k];
    if (dot3(n, n) <= 0) std::copy(ng, ng + 3, n);
    normalize3(n);
    if (dot3(n, h.wo) < 0)
      for (int k = 0; k < 3; ++k) n[k] = -n[k];
    // Hit point, recomputed from the triangle for accuracy, then offset
    // along the geometric normal for shadow rays.
    double* p = h.p;
    for (int k = 0; k < 3; ++k)
      p[k] = bw * g.positions[3 * tri[0] + k] + bu * g.positions[3 * tri[1] + k] + bv * g.positions[3 * tri[2] + k];
    double scale = 1e-4;
    for (int k = 0; k < 3; ++k) scale = std::max(scale, std::abs(p[k]));
    const double eps = scale * 2e-5;
    for (int k = 0; k < 3; ++k) h.po[k] = p[k] + eps * ng[k];
    h.uv[0] = h.uv[1] = 0;
    if (!g.uv_triangles.empty()) {
      const std::int32_t* t = &g.uv_triangles[3 * prim];
      for (int k = 0; k < 2; ++k) h.uv[k] = bw * g.uvs[2 * t[0] + k] + bu * g.uvs[2 * t[1] + k] + bv * g.uvs[2 * t[2] + k];
    }
    const auto& R = o_.scene_to_camera.R;
    h.z = R[6] * p[0] + R[7] * p[1] + R[8] * p[2] + o_.scene_to_camera.t[2];
  }

  // Shades one hit in every band, queueing its shadow and AO rays (traced
  // by flush()). out: one BandShade per band.
  void shade(const SampleGeo& h, int sample, Rng& rng, BandShade* out) {
    if (ao_) {
      // One cosine-weighted direction around the shading normal, shared by
      // every band's ambient light (visibility does not depend on the band).
      const double r1 = rng.uniform(), r2 = rng.uniform();
      const double r = std::sqrt(r1), phi = 2 * kPi * r2;
      double t1[3], t2[3];
      basis(h.n, t1, t2);
      const double z = std::sqrt(std::max(0.0, 1 - r1));
      const float phf = static_cast<float>(phi);
      const double cp = std::cos(phf), sp = std::sin(phf);
      double d[3];
      for (int k = 0; k < 3; ++k) d[k] = r * cp * t1[k] + r * sp * t2[k] + z * h.n[k];
      if (dot3(d, h.ng) > 0) push(0, h.po, d, ao_far_, sample, -1, nullptr, nullptr);
    }
    TexCache cache;
    const double nv = std::max(0.0, dot3(h.n, h.wo));
    const unsigned mi = h.g->triangle_material.empty() ? 0 : h.g->triangle_material[h.prim];
    for (std::size_t bi = 0; bi < bands_.size(); ++bi) {
      const BandState& band = bands_[bi];
      const Material& m = band.materials ? (*band.materials)[h.geom][mi] : h.g->materials[mi];
      const SurfaceSample sf = surface(m, h, cache);
      const Lobe lobe(sf, h.n, h.wo);
      BandShade& bs = out[bi];
      for (int c = 0; c < 3; ++c) bs.E[c] = bs.S[c] = bs.Eamb[c] = 0;
      for (int c = 0; c < 3; ++c) bs.albedo[c] = sf.albedo[c];
      bs.subsurface = band.layers && m.subsurface;
      int kind = band.first_kind;
      for (const Light& light : band.lights) {
        if (const auto* a = std::get_if<AmbientLight>(&light)) {
          const double fr = fresnel(sf.f0, nv);
          for (int c = 0; c < 3; ++c) {
            bs.Eamb[c] += (1 - fr) * a->rgb[c];
            bs.S[c] += fr * a->rgb[c];
          }
        } else if (const auto* pl = std::get_if<PointLight>(&light)) {
          const int q = kind++;
          double wi[3] = {pl->position[0] - h.p[0], pl->position[1] - h.p[1], pl->position[2] - h.p[2]};
          const double d2 = dot3(wi, wi);
          if (!(d2 > 0)) continue;
          const double d = std::sqrt(d2);
          for (double& x : wi) x /= d;
          const double cosn = dot3(h.n, wi);
          if (cosn <= 0 || dot3(h.ng, wi) <= 0) continue;
          double kd, spec;
          lobe.parts(h.n, h.wo, wi, kd, spec);
          double e[3], sp[3];
          for (int c = 0; c < 3; ++c) {
            const double ec = cosn * pl->rgb[c] / d2;
            e[c] = kd * ec;
            sp[c] = spec * ec;
          }
          push(q, h.po, wi, d * (1 - 1e-6), sample, static_cast<int>(bi), e, sp);
        } else if (const auto* sl = std::get_if<SphereLight>(&light)) {
          const int q = kind++;
          double w[3] = {sl->centre[0] - h.p[0], sl->centre[1] - h.p[1], sl->centre[2] - h.p[2]};
          const double d2 = dot3(w, w), r2 = sl->radius * sl->radius;
          if (!(d2 > r2)) continue;  // inside the light
          const double d = std::sqrt(d2);
          for (double& x : w) x /= d;
          // Uniform sampling of the cone subtended by the sphere.
          const double cos_max = std::sqrt(std::max(0.0, 1 - r2 / d2));
          const double u1 = rng.uniform(), u2 = rng.uniform();
          const double cos_t = 1 - u1 * (1 - cos_max);
          const double sin_t = std::sqrt(std::max(0.0, 1 - cos_t * cos_t));
          const double phi = 2 * kPi * u2;
          const float phf = static_cast<float>(phi);
          const double cp = std::cos(phf), sp_ = std::sin(phf);
          double t1[3], t2[3];
          basis(w, t1, t2);
          double wi[3];
          for (int k = 0; k < 3; ++k) wi[k] = sin_t * cp * t1[k] + sin_t * sp_ * t2[k] + cos_t * w[k];
          const double cosn = dot3(h.n, wi);
          if (cosn <= 0 || dot3(h.ng, wi) <= 0) continue;
          // Distance to the sphere's near surface along wi.
          const double b = d * cos_t;
          const double tl = b - std::sqrt(std::max(0.0, b * b - (d2 - r2)));
          double kd, spec;
          lobe.parts(h.n, h.wo, wi, kd, spec);
          const double solid = 2 * kPi * (1 - cos_max);  // 1 / pdf
          const double Le = 1.0 / (kPi * r2);
          double e[3], sp[3];
          for (int c = 0; c < 3; ++c) {
            const double ec = cosn * Le * sl->rgb[c] * solid;
            e[c] = kd * ec;
            sp[c] = spec * ec;
          }
          push(q, h.po, wi, tl * (1 - 1e-6), sample, static_cast<int>(bi), e, sp);
        }
      }
      if (!ao_)
        for (int c = 0; c < 3; ++c) bs.E[c] += bs.Eamb[c];
    }
  }

  // Traces the queued rays (in packets of 8, one queue at a time: the AO
  // rays, then each light's shadow rays) and adds what the unblocked ones
  // bring to shades[sample * bands + band].
  void flush(BandShade* shades) {
    const std::size_t nb = bands_.size();
    for (auto& q : queues_) {
      for (std::size_t b = 0; b < q.size(); b += 8) {
        const int m = static_cast<int>(std::min<std::size_t>(8, q.size() - b));
        bool blocked[8];
        occluded8(&q[b], m, blocked);
        for (int l = 0; l < m; ++l) {
          if (blocked[l]) continue;
          const OccRay& r = q[b + static_cast<std::size_t>(l)];
          if (r.band < 0) {
            for (std::size_t bi = 0; bi < nb; ++bi) {
              BandShade& bs = shades[static_cast<std::size_t>(r.sample) * nb + bi];
              for (int c = 0; c < 3; ++c) bs.E[c] += bs.Eamb[c];
            }
          } else {
            BandShade& bs = shades[static_cast<std::size_t>(r.sample) * nb + static_cast<std::size_t>(r.band)];
            for (int c = 0; c < 3; ++c) {
              bs.E[c] += r.e[c];
              bs.S[c] += r.s[c];
            }
          }
        }
      }
      shadow_rays += q.size();
      q.clear();
    }
  }

 private:
  const Scene::Impl& s_;
  std::vector<BandState>& bands_;
  const RenderOptions& o_;
  std::vector<std::vector<OccRay>> queues_;
  bool ao_ = false;
  double ao_far_;
  RTCIntersectContext occ_ctx_;

  inline __attribute__((always_inline)) void push(int queue, const double org[3], const double dir[3], double tfar,
                                                  int sample, int band, const double* e, const double* s) {
    OccRay r;
    for (int k = 0; k < 3; ++k) {
      r.org[k] = float(org[k]);
      r.dir[k] = float(dir[k]);
      r.e[k] = e ? float(e[k]) : 0.0f;
      r.s[k] = s ? float(s[k]) : 0.0f;
    }
    r.tfar = float(tfar);
    r.sample = sample;
    r.band = band;
    queues_[static_cast<std::size_t>(queue)].push_back(r);
  }

  void occluded8(const OccRay* rays, int m, bool* blocked) {
    alignas(32) RTCRay8 r;
    alignas(32) int valid[8];
    for (int l = 0; l < 8; ++l) {
      const OccRay& x = rays[std::min(l, m - 1)];
      valid[l] = l < m ? -1 : 0;
      r.org_x[l] = x.org[0];
      r.org_y[l] = x.org[1];
      r.org_z[l] = x.org[2];
      r.dir_x[l] = x.dir[0];
      r.dir_y[l] = x.dir[1];
      r.dir_z[l] = x.dir[2];
      r.tnear[l] = 0;
      r.tfar[l] = x.tfar;
      r.time[l] = 0;
      r.mask[l] = 0xFFFFFFFFu;
      r.id[l] = 0;
      r.flags[l] = 0;
    }
    rtcOccluded8(valid, s_.scene, &occ_ctx_, &r);
    for (int l = 0; l < m; ++l) blocked[l] = r.tfar[l] < 0;
  }
};

void check_options(const RenderOptions& o, const std::vector<Light>& lights) {
  if (o.width <= 0 || o.height <= 0) throw Error("render: image size must be positive");
  if (static_cast<double>(o.width) * o.height * o.channels > 1e9) throw Error("render: image too large");
  if (o.spp <= 0) throw Error("render: samples per pixel must be positive");
  if (o.channels < 1 || o.channels > 3) throw Error("render: channels must be 1, 2 or 3");
  if (!(o.ao_distance > 0)) throw Error("render: ao_distance must be positive");
  for (double a : o.pixel_to_image)
    if (!std::isfinite(a)) throw Error("render: pixel_to_image not finite");
  {
    const auto& R = o.scene_to_camera.R;
    for (double a : R)
      if (!std::isfinite(a)) throw Error("render: scene_to_camera not finite");
    for (double a : o.scene_to_camera.t)
      if (!std::isfinite(a)) throw Error("render: scene_to_camera not finite");
    // a rotation: R R^T = I
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) {
        const double d = R[3 * i] * R[3 * j] + R[3 * i + 1] * R[3 * j + 1] + R[3 * i + 2] * R[3 * j + 2];
        if (std::abs(d - (i == j ? 1.0 : 0.0)) > 1e-6) throw Error("render: scene_to_camera is not a rotation");
      }
  }
  const auto& c = o.camera;
  if (!(std::isfinite(c.fx) && std::isfinite(c.fy) && std::isfinite(c.cx) && std::isfinite(c.cy) && c.fx > 0 && c.fy > 0))
    throw Error("render: camera intrinsics must be finite with positive focal lengths");
  auto finite3 = [](const auto& a) { return std::isfinite(a[0]) && std::isfinite(a[1]) && std::isfinite(a[2]); };
  for (const Light& l : lights) {
    if (const auto* a = std::get_if<AmbientLight>(&l)) {
      if (!finite3(a->rgb)) throw Error("render: ambient light not finite");
    } else if (const auto* p = std::get_if<PointLight>(&l)) {
      if (!finite3(p->rgb) || !finite3(p->position)) throw Error("render: point light not finite");
    } else if (const auto* s = std::get_if<SphereLight>(&l)) {
      if (!finite3(s->rgb) || !finite3(s->centre) || !(std::isfinite(s->radius) && s->radius > 0))
        throw Error("render: sphere light must be finite with a positive radius");
    }
  }
}

}  // namespace

std::vector<std::vector<float>> render_bands(const Scene& scene, const std::vector<Band>& bands_in, const RenderOptions& o,
                                             RenderStats* stats) {
  if (bands_in.empty()) throw Error("render: no bands");
  if (!scene.committed()) throw Error("render: the scene is not committed");
  const Scene::Impl& s = scene.impl();
  for (const Band& b : bands_in) {
    RenderOptions ob = o;
    ob.channels = b.channels;
    check_options(ob, b.lights);
    if (b.materials.empty()) continue;
    if (b.materials.size() != s.geometries.size()) throw Error("render: a band's materials do not match the scene's geometries");
    for (std::size_t gi = 0; gi < s.geometries.size(); ++gi) {
      const auto& g = s.geometries[gi];
      const std::string what = "render: mesh " + std::to_string(gi);
      if (b.materials[gi].size() != g.materials.size()) throw Error(what + ": a band has another number of materials");
      for (const Material& m : b.materials[gi]) {
        check_material(m, what, false);
        if ((m.albedo || m.specular || m.roughness) && g.uv_triangles.empty())
          throw Error(what + ": textured material needs uvs");
      }
    }
  }
  const int W = o.width, H = o.height, spp = o.spp;
  const std::size_t npix = static_cast<std::size_t>(W) * H;
  const std::size_t nb = bands_in.size();
  std::vector<std::vector<float>> images(nb);
  // the scene's frame: scene = R^T (camera - t); lights and rays move there
  const auto& A = o.pixel_to_image;
  const auto& R = o.scene_to_camera.R;
  const auto& t = o.scene_to_camera.t;
  auto to_scene = [&](const std::array<double, 3>& c) {
    const double d[3] = {c[0] - t[0], c[1] - t[1], c[2] - t[2]};
    return std::array<double, 3>{R[0] * d[0] + R[3] * d[1] + R[6] * d[2], R[1] * d[0] + R[4] * d[1] + R[7] * d[2],
                                 R[2] * d[0] + R[5] * d[1] + R[8] * d[2]};
  };
  std::vector<BandState> bands(nb);
  int kinds = 1;  // occlusion queues: the AO rays, then one per point or sphere light
  for (std::size_t bi = 0; bi < nb; ++bi) {
    const Band& in = bands_in[bi];
    BandState& b = bands[bi];
    b.C = in.channels;
    b.materials = in.materials.empty() ? nullptr : &in.materials;
    b.layers = in.layers;
    images[bi].assign(npix * static_cast<std::size_t>(b.C), 0.0f);
    b.image = images[bi].data();
    if (RenderLayers* L = b.layers) {
      L->irradiance.assign(npix * static_cast<std::size_t>(b.C), 0.0f);
      L->albedo.assign(npix * static_cast<std::size_t>(b.C), 0.0f);
      L->coverage.assign(npix, 0.0f);
      L->depth.assign(npix, 0.0f);
      L->alpha.assign(npix, 0.0f);
    }
    b.lights = in.lights;
    b.first_kind = kinds;
    for (Light& l : b.lights) {
      if (auto* pl = std::get_if<PointLight>(&l)) pl->position = to_scene(pl->position), ++kinds;
      if (auto* sl = std::get_if<SphereLight>(&l)) sl->centre = to_scene(sl->centre), ++kinds;
      if (std::holds_alternative<AmbientLight>(l)) b.ambient = true;
    }
  }
  std::atomic<std::uint64_t> primary{0}, shadow{0};
  const std::uint64_t seed_mix = Rng{o.seed ^ 0x5DEECE66Dull}.next();
  const std::array<double, 3> eye = to_scene({0, 0, 0});

  // Camera rays go to Embree in packets of 8 (rtcIntersect8, coherent):
  // the samples of one pixel, or of neighbouring pixels when spp < 8. Their
  // hits are shaded in every band, and the shadow and AO rays of the group
  // go in packets of 8 too (rtcOccluded8), one light at a time. Each pixel
  // keeps its own generator, so the image does not depend on the grouping
  // or the thread count.
  const int group = std::max(1, 8 / spp);
  parallel_for(static_cast<std::size_t>(H), o.threads, [&](std::size_t y) {
    const DenormalsOff ftz;
    const std::size_t nmax = static_cast<std::size_t>(group * spp);
    Tracer tracer{s, bands, o, kinds, nmax};
    std::vector<int> perm(spp);
    std::uint64_t rays = 0;
    std::vector<std::array<double, 3>> dirs(nmax);
    std::vector<SampleGeo> geo(nmax);
    std::vector<BandShade> shades(nmax * nb);
    std::vector<Rng> rngs(static_cast<std::size_t>(group), Rng{0});
    RTCIntersectContext ctx;
    rtcInitIntersectContext(&ctx);
    ctx.flags = RTC_INTERSECT_CONTEXT_FLAG_COHERENT;
    for (int x0 = 0; x0 < W; x0 += group) {
      const int nx = std::min(group, W - x0);
      const std::size_t n = static_cast<std::size_t>(nx * spp);
      for (int gx = 0; gx < nx; ++gx) {
        const int x = x0 + gx;
        const std::uint64_t index = static_cast<std::uint64_t>(y) * W + x;
        Rng& rng = rngs[static_cast<std::size_t>(gx)];
        rng = Rng{seed_mix ^ (index * 0xD1B54A32D192ED03ull)};
        rng.next();
        // n-rooks stratification: sample k takes column stratum k and a
        // shuffled row stratum, each jittered.
        std::iota(perm.begin(), perm.end(), 0);
        for (int k = spp - 1; k > 0; --k) std::swap(perm[k], perm[rng.next() % static_cast<std::uint64_t>(k + 1)]);
        for (int k = 0; k < spp; ++k) {
          const double px = x + (k + rng.uniform()) / spp;
          const double py = double(y) + (perm[k] + rng.uniform()) / spp;
          const double ix = A[0] * px + A[1] * py + A[2], iy = A[3] * px + A[4] * py + A[5];
          const double dc[3] = {(ix - o.camera.cx) / o.camera.fx, (iy - o.camera.cy) / o.camera.fy, 1.0};
          double* dir = dirs[static_cast<std::size_t>(gx * spp + k)].data();
          dir[0] = R[0] * dc[0] + R[3] * dc[1] + R[6] * dc[2];
          dir[1] = R[1] * dc[0] + R[4] * dc[1] + R[7] * dc[2];
          dir[2] = R[2] * dc[0] + R[5] * dc[1] + R[8] * dc[2];
          normalize3(dir);
        }
      }
      for (std::size_t b = 0; b < n; b += 8) {
        alignas(32) RTCRayHit8 rh;
        alignas(32) int valid[8];
        for (int l = 0; l < 8; ++l) {
          const std::size_t i = b + static_cast<std::size_t>(l);
          valid[l] = i < n ? -1 : 0;
          const double* d = dirs[std::min(i, n - 1)].data();
          rh.ray.org_x[l] = float(eye[0]);
          rh.ray.org_y[l] = float(eye[1]);
          rh.ray.org_z[l] = float(eye[2]);
          rh.ray.dir_x[l] = float(d[0]);
          rh.ray.dir_y[l] = float(d[1]);
          rh.ray.dir_z[l] = float(d[2]);
          rh.ray.tnear[l] = 0;
          rh.ray.tfar[l] = std::numeric_limits<float>::infinity();
          rh.ray.time[l] = 0;
          rh.ray.mask[l] = 0xFFFFFFFFu;
          rh.ray.id[l] = 0;
          rh.ray.flags[l] = 0;
          rh.hit.geomID[l] = RTC_INVALID_GEOMETRY_ID;
          rh.hit.instID[0][l] = RTC_INVALID_GEOMETRY_ID;
        }
        rtcIntersect8(valid, s.scene, &ctx, &rh);
        for (int l = 0; l < 8 && b + static_cast<std::size_t>(l) < n; ++l) {
          const std::size_t i = b + static_cast<std::size_t>(l);
          const float ng[3] = {rh.hit.Ng_x[l], rh.hit.Ng_y[l], rh.hit.Ng_z[l]};
          tracer.hit_geometry(dirs[i].data(), rh.hit.geomID[l], rh.hit.primID[l], rh.hit.u[l], rh.hit.v[l], ng, geo[i]);
        }
      }
      rays += n;
      // shading in sample order (each pixel's generator draws in a fixed order), then the occlusion rays
      for (int gx = 0; gx < nx; ++gx) {
        Rng& rng = rngs[static_cast<std::size_t>(gx)];
        for (int k = 0; k < spp; ++k) {
          const std::size_t i = static_cast<std::size_t>(gx * spp + k);
          if (geo[i].g) tracer.shade(geo[i], static_cast<int>(i), rng, &shades[i * nb]);
        }
      }
      tracer.flush(shades.data());
      for (int gx = 0; gx < nx; ++gx) {
        const std::uint64_t index = static_cast<std::uint64_t>(y) * W + (x0 + gx);
        for (std::size_t bi = 0; bi < nb; ++bi) {
          const BandState& band = bands[bi];
          double L[3] = {0, 0, 0}, E[3] = {0, 0, 0}, alb[3] = {0, 0, 0}, z = 0;
          int n_sss = 0, n_hit = 0;
          for (int k = 0; k < spp; ++k) {
            const std::size_t i = static_cast<std::size_t>(gx * spp + k);
            if (!geo[i].g) continue;
            const BandShade& h = shades[i * nb + bi];
            ++n_hit;
            if (h.subsurface) {
              ++n_sss;
              z += geo[i].z;
              for (int c = 0; c < 3; ++c) {
                L[c] += h.S[c];
                E[c] += h.E[c];
                alb[c] += h.albedo[c];
              }
            } else {
              for (int c = 0; c < 3; ++c) L[c] += h.albedo[c] * h.E[c] + h.S[c];
            }
          }
          const int C = band.C;
          float* out = &band.image[index * static_cast<std::size_t>(C)];
          for (int c = 0; c < C; ++c) out[c] = static_cast<float>(L[c] / spp);
          RenderLayers* layers = band.layers;
          if (layers) layers->alpha[index] = static_cast<float>(double(n_hit) / spp);
          if (layers && n_sss > 0) {
            layers->coverage[index] = static_cast<float>(double(n_sss) / spp);
            layers->depth[index] = static_cast<float>(z / n_sss);
            for (int c = 0; c < C; ++c) {
              layers->irradiance[index * C + c] = static_cast<float>(E[c] / n_sss);
              layers->albedo[index * C + c] = static_cast<float>(alb[c] / n_sss);
            }
          }
        }
      }
    }
    primary += rays;
    shadow += tracer.shadow_rays;
  });
  if (stats) {
    stats->primary_rays = primary;
    stats->shadow_rays = shadow;
  }
  return images;
}

std::vector<float> render(const Scene& scene, const std::vector<Light>& lights, const RenderOptions& o,
                          RenderStats* stats, RenderLayers* layers) {
  Band b;
  b.lights = lights;
  b.channels = o.channels;
  b.layers = layers;
  std::vector<Band> bands{std::move(b)};
  return std::move(render_bands(scene, bands, o, stats)[0]);
}

}  // namespace hfr::render
