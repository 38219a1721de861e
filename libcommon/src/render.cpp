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
};

// Schlick's Fresnel with the reflectance at grazing incidence limited to
// 50 F0 (as in UE4 / Filament), so that F0 = 0 means no specular at all.
inline double fresnel(double f0, double cos_theta) {
  const double f90 = std::min(1.0, 50 * f0);
  const double m = std::clamp(1 - cos_theta, 0.0, 1.0);
  const double m2 = m * m;
  return f0 + (f90 - f0) * m2 * m2 * m;
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
    std::vector<float> triangle_uvs;  // per triangle its corners' uvs (6 floats): one fetch per hit
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
  g.triangle_uvs.resize(m.uv_triangles.size() * 2);
  for (std::size_t k = 0; k < m.uv_triangles.size(); ++k) {
    g.triangle_uvs[2 * k] = m.uvs[2 * static_cast<std::size_t>(m.uv_triangles[k])];
    g.triangle_uvs[2 * k + 1] = m.uvs[2 * static_cast<std::size_t>(m.uv_triangles[k]) + 1];
  }
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
  int kinds = 0;         // its point and sphere lights (queues first_kind...)
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
    lerp_all(t, val[slot]);
    return val[slot][k];
  }
  // The first min(channels, kChannels) channels of t at the footprint (as lerp).
  void lerp_all(const Texture* t, float* out) const {
    const int C = std::min(t->channels, kChannels);
    const std::size_t C4 = static_cast<std::size_t>(C + 3) & ~std::size_t{3};
    const std::size_t far = std::max(std::max(idx[0], idx[1]), std::max(idx[2], idx[3])) * static_cast<std::size_t>(t->channels) + C4;
    if (far <= t->data.size()) {
      // 4 channels at a time (the same operations in the same order as lerp)
      typedef float F4 __attribute__((vector_size(16)));
      const std::size_t Ct = static_cast<std::size_t>(t->channels);
      const float* d0 = t->data.data() + idx[0] * Ct;
      const float* d1 = t->data.data() + idx[1] * Ct;
      const float* d2 = t->data.data() + idx[2] * Ct;
      const float* d3 = t->data.data() + idx[3] * Ct;
      const F4 w0 = {wt[0], wt[0], wt[0], wt[0]}, w1 = {wt[1], wt[1], wt[1], wt[1]};
      const F4 w2 = {wt[2], wt[2], wt[2], wt[2]}, w3 = {wt[3], wt[3], wt[3], wt[3]};
      for (std::size_t c = 0; c < C4; c += 4) {
        F4 a, b, e, f;
        std::memcpy(&a, d0 + c, 16);
        std::memcpy(&b, d1 + c, 16);
        std::memcpy(&e, d2 + c, 16);
        std::memcpy(&f, d3 + c, 16);
        const F4 r = w0 * a + w1 * b + w2 * e + w3 * f;
        std::memcpy(out + c, &r, 16);
      }
    } else {
      for (int c = 0; c < C; ++c) out[c] = lerp(t, c);
    }
  }
};

SurfaceSample surface(const Material& m, float u, float v, TexCache& cache) {
  SurfaceSample out;
  if (m.albedo) {
    const int first = m.albedo_channel;
    const int count = m.albedo_channels > 0 ? m.albedo_channels : m.albedo->channels - first;
    for (int c = 0; c < 3; ++c) out.albedo[c] = cache.get(m.albedo, u, v, first + (count == 1 ? 0 : std::min(c, count - 1)));
  } else {
    out.albedo = m.albedo_value;
  }
  for (auto& a : out.albedo) a = static_cast<float>(a * m.albedo_scale);
  out.f0 = m.specular ? cache.get(m.specular, u, v, m.specular_channel) : m.specular_value;
  out.alpha = m.roughness ? cache.get(m.roughness, u, v, m.roughness_channel) : m.roughness_value;
  out.f0 = std::clamp(static_cast<float>(out.f0 * m.specular_scale), 0.0f, 1.0f);
  out.alpha = std::clamp(out.alpha, 1e-3f, 1.0f);
  return out;
}

// ---------------------------------------------------------------- SIMD shading
//
// A camera packet's 8 samples are shaded together in float vectors of L
// lanes (GCC vector extensions): L = 8 with AVX2 where the CPU has it, else
// L = 4 (SSE2, every x86-64) on each half of the packet. Only operations
// IEEE 754 rounds exactly are used (+ - * / sqrt, compares, selects, bit
// operations; no libm; no FMA: render.cpp is compiled with
// -ffp-contract=off and the AVX2 code enables no FMA), so both widths and
// any thread count give the same bits. Everything the vector code calls is
// always_inline: it must be compiled inside the AVX2 function to use AVX2.

#define HFR_VINLINE inline __attribute__((always_inline))

template <int L>
struct Lanes {
  typedef float F __attribute__((vector_size(4 * L)));
  typedef std::int32_t I __attribute__((vector_size(4 * L)));
};

template <class F>
HFR_VINLINE F splat(float x) {
  F r;
  for (unsigned l = 0; l < sizeof(F) / 4; ++l) r[l] = x;
  return r;
}
template <class F, class T>
HFR_VINLINE F vload(const T* p) {
  F r;
  std::memcpy(&r, p, sizeof(F));
  return r;
}
template <class F, class T>
HFR_VINLINE void vstore(T* p, F x) {
  std::memcpy(p, &x, sizeof(F));
}
template <class F>
HFR_VINLINE F vmin(F a, F b) {
  return a < b ? a : b;
}
template <class F>
HFR_VINLINE F vmax(F a, F b) {
  return a > b ? a : b;
}
template <class F>
HFR_VINLINE F vabs(F a) {
  typedef decltype(a < a) I;
  return (F)((I)a & 0x7fffffff);
}
template <class F>
HFR_VINLINE F vsqrt(F a) {
  if constexpr (sizeof(F) == 16) {
    return (F)_mm_sqrt_ps((__m128)a);
  } else {  // vsqrtps inside the AVX2 function (-fno-math-errno)
    F r;
    for (unsigned l = 0; l < sizeof(F) / 4; ++l) r[l] = __builtin_sqrtf(a[l]);
    return r;
  }
}

template <class F>
struct V3 {
  F x, y, z;
};
template <class F>
HFR_VINLINE F dot(const V3<F>& a, const V3<F>& b) {
  return a.x * b.x + a.y * b.y + a.z * b.z;
}
// a / |a| (a unchanged where |a| = 0)
template <class F>
HFR_VINLINE V3<F> normalized(const V3<F>& a) {
  const F l = vsqrt(dot(a, a));
  const auto pos = l > 0;
  return {pos ? a.x / l : a.x, pos ? a.y / l : a.y, pos ? a.z / l : a.z};
}
// a, or -a where mask
template <class F, class I>
HFR_VINLINE V3<F> negate_where(I mask, const V3<F>& a) {
  const I s = mask & static_cast<std::int32_t>(0x80000000u);
  return {(F)((I)a.x ^ s), (F)((I)a.y ^ s), (F)((I)a.z ^ s)};
}

// Schlick's Fresnel with the reflectance at grazing incidence limited to
// 50 F0 (as in UE4 / Filament), so that F0 = 0 means no specular at all.
template <class F>
HFR_VINLINE F vfresnel(F f0, F cos_theta) {
  const F f90 = vmin(splat<F>(1), f0 * 50.0f);
  const F m = vmin(vmax(1.0f - cos_theta, splat<F>(0)), splat<F>(1));
  const F m2 = m * m;
  return f0 + (f90 - f0) * m2 * m2 * m;
}

// The BRDF in lanes, as brdf_parts (f0 in [0, 1], alpha clamped to
// [1e-3, 1] when the surface is sampled). vbrdf_view: what does not depend on
// the light's direction, for the cosine nv = max(n.wo, 0): the diffuse weight
// kd = (1 - F(nv)) / pi, a2 = alpha^2 and the view half of the Smith term.
template <class F>
struct VBrdfView {
  F fr, kd, a2, gv;  // fr = F(nv), also the ambient light's split
};
template <class F>
HFR_VINLINE VBrdfView<F> vbrdf_view(F f0, F alpha, F nv) {
  const F a2 = alpha * alpha, fr = vfresnel(f0, nv);
  return {fr, (1.0f - fr) / float(kPi), a2, vsqrt(nv * nv * (1.0f - a2) + a2)};
}
// The specular value D V F for a light direction wi with cosn = n.wi > 0.
template <class F>
HFR_VINLINE F vbrdf_specular(const V3<F>& n, const V3<F>& wo, const V3<F>& wi, F cosn, F nv, const VBrdfView<F>& view, F f0) {
  const V3<F> hv = normalized(V3<F>{wi.x + wo.x, wi.y + wo.y, wi.z + wo.z});
  const F nh = vmax(dot(n, hv), splat<F>(0)), vh = vmax(dot(wo, hv), splat<F>(0));
  const F a2 = view.a2;
  const F dd = nh * nh * (a2 - 1.0f) + 1.0f;
  const F D = a2 / (float(kPi) * dd * dd);
  const F V = 0.5f / (cosn * view.gv + nv * vsqrt(cosn * cosn * (1.0f - a2) + a2));
  return D * V * vfresnel(f0, vh);
}

// An orthonormal basis around a unit vector w (Duff et al. 2017).
template <class F>
HFR_VINLINE void vbasis(const V3<F>& w, V3<F>& u, V3<F>& v) {
  typedef decltype(w.z < w.z) I;
  const F sign = (F)(((I)w.z & static_cast<std::int32_t>(0x80000000u)) | (I)splat<F>(1));  // copysign(1, w.z)
  const F a = -1.0f / (sign + w.z);
  const F b = w.x * w.y * a;
  u = {1.0f + sign * w.x * w.x * a, sign * b, -(sign * w.x)};
  v = {b, sign + w.y * w.y * a, -w.y};
}

// sin and cos of 2 pi u for u in [0, 1) with 24-bit u (the generator's
// draws): the quadrant q = round(4 u) and the remainder (exact), then
// Cephes' minimax polynomials on [-pi/4, pi/4] (about 1 ulp).
template <class F>
HFR_VINLINE void sincos_2pi(F u, F& s, F& c) {
  typedef decltype(u < u) I;
  const F a = u * 4.0f;
  const I q = __builtin_convertvector(a + 0.5f, I);
  const F x = (a - __builtin_convertvector(q, F)) * 1.57079632679489661923f;
  const F z = x * x;
  const F sp = ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f) * z * x + x;
  const F cp = ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z + 4.166664568298827e-2f) * z * z - 0.5f * z + 1.0f;
  const I odd = (q & 1) != 0;
  const F sn = odd ? cp : sp, cs = odd ? sp : cp;
  s = (F)((I)sn ^ ((q & 2) << 30));
  c = (F)((I)cs ^ (((q + 1) & 2) << 30));
}

// Two uniform floats in [0, 1) from one 64-bit draw (24 bits each).
inline void uniform2(Rng& rng, float& a, float& b) {
  const std::uint64_t z = rng.next();
  a = static_cast<float>(z >> 40) * 0x1p-24f;
  b = static_cast<float>((z >> 16) & 0xFFFFFFu) * 0x1p-24f;
}

// For each 8-lane mask: the indices of its set lanes, in order (then zeros):
// the permutations that compact a packet's valid lanes.
struct CompressTable {
  alignas(32) std::int32_t p[256][8];
  constexpr CompressTable() : p{} {
    for (int m = 0; m < 256; ++m) {
      int n = 0;
      for (int l = 0; l < 8; ++l)
        if (m >> l & 1) p[m][n++] = l;
    }
  }
};
constexpr CompressTable kCompress{};

// Renders rows: one per thread. A row's samples go through in chunks of
// whole pixels (about kChunk samples): the pixels' generators draw every
// random number a sample needs (jitter, the AO direction, one cone sample
// per sphere light, drawn whether used or not, so that the streams do not
// depend on what the rays hit); the camera rays go to Embree in packets of
// 8 consecutive samples (rtcIntersect8, coherent); the hits' vertices and
// texels are gathered (with prefetches: they are cache misses); each packet
// is shaded in every band at once; the shadow and AO rays it needs are
// queued, one queue per light and one for AO, compacted, and traced once
// the chunk is shaded, one stream call per queue (rtcOccludedNp); then the
// samples' sums per pixel. Each pixel
// keeps its own generator, so the image does not depend on the grouping or
// the thread count.
class Tracer {
 public:
  static constexpr int kChunk = 256;

  Tracer(const Scene::Impl& s, std::vector<BandState>& bands, const RenderOptions& o, int kinds,
         const std::array<double, 3>& eye, std::uint64_t seed_mix)
      : s_(s), bands_(bands), o_(o), nq_(kinds), seed_mix_(seed_mix) {
    for (const auto& b : bands) ao_ = ao_ || (o.ambient_occlusion && b.ambient);
    ao_far_ = std::isfinite(o.ao_distance) ? float(o.ao_distance) : std::numeric_limits<float>::infinity();
    for (int k = 0; k < 3; ++k) eye_[k] = float(eye[k]);
    for (int k = 0; k < 9; ++k) R_[k] = float(o.scene_to_camera.R[static_cast<std::size_t>(k)]);
    for (int k = 0; k < 6; ++k) A_[k] = float(o.pixel_to_image[static_cast<std::size_t>(k)]);
    tz_ = float(o.scene_to_camera.t[2]);
    cam_[0] = float(o.camera.cx), cam_[1] = float(o.camera.cy), cam_[2] = float(o.camera.fx), cam_[3] = float(o.camera.fy);
    // the queues' lights: colour and kind (queue 0: AO)
    lights_.resize(static_cast<std::size_t>(nq_));
    draws_ = 1 + (ao_ ? 1 : 0);
    for (const BandState& b : bands) {
      int q = b.first_kind;
      for (const Light& l : b.lights) {
        if (const auto* pl = std::get_if<PointLight>(&l)) {
          QLight& ql = lights_[static_cast<std::size_t>(q++)];
          for (int k = 0; k < 3; ++k) ql.pos[k] = float(pl->position[static_cast<std::size_t>(k)]), ql.rgb[k] = pl->rgb[static_cast<std::size_t>(k)];
        } else if (const auto* sl = std::get_if<SphereLight>(&l)) {
          QLight& ql = lights_[static_cast<std::size_t>(q++)];
          for (int k = 0; k < 3; ++k) ql.pos[k] = float(sl->centre[static_cast<std::size_t>(k)]), ql.rgb[k] = sl->rgb[static_cast<std::size_t>(k)];
          ql.sphere = true;
          ql.r2 = float(sl->radius * sl->radius);
          ql.draw = draws_++;
        }
      }
    }
    const int spp = o.spp;
    chunk_pixels_ = std::max(1, kChunk / spp);
    cap_ = (chunk_pixels_ * spp + 7) / 8 * 8;
    const std::size_t cap = static_cast<std::size_t>(cap_);
    px_.resize(cap);
    py_.resize(cap);
    rnd_.resize(cap * static_cast<std::size_t>(2 * draws_));
    hit_.resize(cap);
    z_.resize(cap);
    std::size_t nshade = 0;
    for (const BandState& b : bands) shade_first_.push_back(nshade), nshade += static_cast<std::size_t>(3 * b.C);
    shade_.resize(nshade * cap);
    sss_.resize(bands.size() * cap);
    kes_.resize(static_cast<std::size_t>(2 * nq_) * cap);
    vis_.resize(static_cast<std::size_t>(nq_) * cap);
    queues_.resize(static_cast<std::size_t>(nq_));
    for (auto& q : queues_) q.resize(cap + 8);
    perm_.resize(static_cast<std::size_t>(spp));
    surf_.resize(bands.size() * 5 * cap);
    dir_.resize(3 * cap);
    ng_.resize(3 * cap);
    bu_.resize(cap);
    bv_.resize(cap);
    uv_.resize(2 * cap);
    geom_.resize(cap);
    prim_.resize(cap);
    vtx_.resize(18 * cap);
    rays_.resize(static_cast<std::size_t>(nq_));
    make_plans();
    rtcInitIntersectContext(&cam_ctx_);
    cam_ctx_.flags = RTC_INTERSECT_CONTEXT_FLAG_COHERENT;
    rtcInitIntersectContext(&occ_ctx_);  // incoherent
    ray_zeros_.assign(cap + 8, 0.0f);
    ray_mask_.assign(cap + 8, 0xFFFFFFFFu);
    ray_ids_.assign(cap + 8, 0u);
  }
  std::uint64_t primary_rays = 0, shadow_rays = 0;

  void row(std::size_t y, bool avx2) {
    if (avx2)
      row_avx2(y);
    else
      row_sse(y);
  }

 private:
  // A queued shadow or AO ray (SoA, padded by 8 for branch-free appends).
  struct Queue {
    std::vector<float> ox, oy, oz, dx, dy, dz, tfar;
    std::vector<std::int32_t> sample;
    int n = 0;
    void resize(std::size_t k) {
      for (auto* v : {&ox, &oy, &oz, &dx, &dy, &dz, &tfar}) v->assign(k, 0.0f);
      sample.assign(k, 0);
    }
  };
  struct QLight {
    float pos[3] = {0, 0, 0}, rgb[3] = {0, 0, 0};
    bool sphere = false;
    float r2 = 0;
    int draw = 0;  // its pair of draws per sample
  };
  // A queue's rays of one packet, before compaction.
  struct PacketRays {
    alignas(32) float dir[3][8];
    alignas(32) float tfar[8];
    alignas(32) std::int32_t valid[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  };

  const Scene::Impl& s_;
  std::vector<BandState>& bands_;
  const RenderOptions& o_;
  int nq_;
  std::uint64_t seed_mix_;
  bool ao_ = false;
  float ao_far_;
  float eye_[3], R_[9], A_[6], tz_, cam_[4];
  std::vector<QLight> lights_;
  int draws_ = 1;  // 64-bit draws per sample: the jitter, AO, each sphere light
  int chunk_pixels_ = 1, cap_ = 8;
  // per chunk sample
  std::vector<float> px_, py_, rnd_, z_;
  std::vector<std::int32_t> hit_;
  // per band, C channels each: albedo, the ambient diffuse term (then E), the
  // ambient specular term (then what the sample adds to the image)
  std::vector<float> shade_;
  std::vector<std::int32_t> sss_;  // per band
  std::vector<float> kes_;  // per queue: the diffuse and specular weights of its light
  std::vector<float> vis_;  // per queue: 1 where the ray was traced and unblocked
  std::vector<Queue> queues_;
  std::vector<int> perm_;
  // per chunk sample: the camera ray and its hit
  std::vector<float> dir_, ng_, bu_, bv_, uv_;  // dir_, ng_: 3 rows, uv_: 2
  std::vector<unsigned> geom_, prim_;
  std::vector<float> vtx_;   // 18 rows: the triangle's positions, then its normals
  std::vector<float> surf_;  // per band 5 rows: albedo rgb, f0, alpha
  alignas(32) float po_[3][8];  // a packet's shadow ray origins
  std::vector<PacketRays> rays_;  // per queue
  RTCIntersectContext cam_ctx_, occ_ctx_;
  // the occlusion rays' constant fields (tnear and time 0, every mask bit, id and flags 0)
  std::vector<float> ray_zeros_;
  std::vector<unsigned> ray_mask_, ray_ids_;

  std::vector<std::size_t> shade_first_;  // per band: its first row of shade_

  // What a hit on one material (geometry, material index) looks up: the
  // distinct textures of every band's material (one bilinear lookup of all
  // their channels per hit), and per band where each parameter comes from.
  // The same values as surface() with a TexCache (which looks up each
  // texture's channels once per hit at the same footprint).
  struct BandSurface {
    const Material* m = nullptr;
    int albedo_tex = -1, albedo_k[3] = {0, 0, 0};
    int specular_tex = -1, specular_k = 0;
    int roughness_tex = -1, roughness_k = 0;
    std::int32_t sss = 0;
  };
  struct Plan {
    static constexpr int kTextures = 4;
    const Texture* tex[kTextures] = {nullptr, nullptr, nullptr, nullptr};
    int ntex = 0;
    bool slow = false;  // a texture or channel beyond TexCache::kChannels, or too many textures: surface()
  };
  std::vector<std::size_t> plan_first_;  // per geometry: its first plan
  std::vector<Plan> plans_;
  std::vector<BandSurface> plan_bands_;  // per plan, one per band

  void make_plans() {
    const std::size_t nb = bands_.size();
    for (std::size_t gi = 0; gi < s_.geometries.size(); ++gi) {
      const auto& g = s_.geometries[gi];
      plan_first_.push_back(plans_.size());
      for (std::size_t mi = 0; mi < g.materials.size(); ++mi) {
        Plan pl;
        auto slot = [&](const Texture* t, int k) {
          if (!t) return -1;
          if (k >= TexCache::kChannels || t->channels > TexCache::kChannels) pl.slow = true;
          for (int i = 0; i < pl.ntex; ++i)
            if (pl.tex[i] == t) return i;
          if (pl.ntex == Plan::kTextures) {
            pl.slow = true;
            return -1;
          }
          pl.tex[pl.ntex] = t;
          return pl.ntex++;
        };
        for (std::size_t bi = 0; bi < nb; ++bi) {
          const BandState& band = bands_[bi];
          const Material& m = band.materials ? (*band.materials)[gi][mi] : g.materials[mi];
          BandSurface bs;
          bs.m = &m;
          bs.sss = band.layers && m.subsurface ? -1 : 0;
          if (m.albedo) {
            const int first = m.albedo_channel;
            const int count = m.albedo_channels > 0 ? m.albedo_channels : m.albedo->channels - first;
            for (int c = 0; c < 3; ++c) bs.albedo_k[c] = first + (count == 1 ? 0 : std::min(c, count - 1));
            for (int c = 0; c < 3; ++c) bs.albedo_tex = slot(m.albedo, bs.albedo_k[c]);
          }
          if (m.specular) bs.specular_tex = slot(m.specular, bs.specular_k = m.specular_channel);
          if (m.roughness) bs.roughness_tex = slot(m.roughness, bs.roughness_k = m.roughness_channel);
          plan_bands_.push_back(bs);
        }
        plans_.push_back(pl);
      }
    }
  }

  float* shade_at(std::size_t band, int what, int c) {
    return &shade_[(shade_first_[band] + static_cast<std::size_t>(what * bands_[band].C + c)) * static_cast<std::size_t>(cap_)];
  }
  float* surf(std::size_t band, int k) { return &surf_[(band * 5 + static_cast<std::size_t>(k)) * static_cast<std::size_t>(cap_)]; }
  static float* rows(std::vector<float>& v, int k, int cap) { return &v[static_cast<std::size_t>(k) * static_cast<std::size_t>(cap)]; }
  float* rnd_at(int draw, int half) { return &rnd_[static_cast<std::size_t>(2 * draw + half) * static_cast<std::size_t>(cap_)]; }

  __attribute__((target("avx2"))) void row_avx2(std::size_t y) { row_impl<8>(y); }
  void row_sse(std::size_t y) { row_impl<4>(y); }

  template <int L>
  HFR_VINLINE void row_impl(std::size_t y) {
    const int W = o_.width, spp = o_.spp;
    for (int x0 = 0; x0 < W; x0 += chunk_pixels_) {
      const int np = std::min(chunk_pixels_, W - x0);
      const int n = np * spp;
      draw(y, x0, np);
      for (auto& q : queues_) q.n = 0;
      std::fill(vis_.begin(), vis_.end(), 0.0f);
      for (int b = 0; b < n; b += 8) intersect<L>(b, n);
      gather(n);
      // packets that hit nothing (the backdrop) add nothing: neither rays nor
      // values (accumulate skips missed samples)
      for (int b = 0; b < n; b += 8)
        if (packet_hits(b)) shade<L>(b);
      primary_rays += static_cast<std::uint64_t>(n);
      flush();
      for (int b = 0; b < n; b += 8)
        if (packet_hits(b)) finish<L>(b);
      accumulate(y, x0, np);
    }
  }

  // x % m, with the divisions of small m by constants (multiplications).
  static std::size_t mod_small(std::uint64_t x, int m) {
    switch (m) {
      case 2: return x % 2;
      case 3: return x % 3;
      case 4: return x % 4;
      case 8: return x % 8;
      default: return x % static_cast<std::uint64_t>(m);
    }
  }

  // Whether a sample of the packet [b, b + 8) hit the scene.
  bool packet_hits(int b) const {
    std::int32_t any = 0;
    for (int l = 0; l < 8; ++l) any |= hit_[static_cast<std::size_t>(b + l)];
    return any != 0;
  }

  // The chunk's random numbers and pixel positions, pixel by pixel.
  void draw(std::size_t y, int x0, int np) {
    const int W = o_.width, spp = o_.spp;
    for (int p = 0; p < np; ++p) {
      const int x = x0 + p;
      const std::uint64_t index = static_cast<std::uint64_t>(y) * W + x;
      Rng rng{seed_mix_ ^ (index * 0xD1B54A32D192ED03ull)};
      rng.next();
      // n-rooks stratification: sample k takes column stratum k and a
      // shuffled row stratum, each jittered.
      std::iota(perm_.begin(), perm_.end(), 0);
      for (int k = spp - 1; k > 0; --k) std::swap(perm_[k], perm_[mod_small(rng.next(), k + 1)]);
      for (int k = 0; k < spp; ++k) {
        const std::size_t i = static_cast<std::size_t>(p * spp + k);
        float ux, uy;
        uniform2(rng, ux, uy);
        px_[i] = float(x) + (float(k) + ux) / float(spp);
        py_[i] = float(y) + (float(perm_[k]) + uy) / float(spp);
        for (int d = 1; d < draws_; ++d) uniform2(rng, rnd_at(d, 0)[i], rnd_at(d, 1)[i]);
      }
    }
    // the padding to the last packet: finite values, no rays
    for (int i = np * spp; i < (np * spp + 7) / 8 * 8; ++i) {
      px_[static_cast<std::size_t>(i)] = py_[static_cast<std::size_t>(i)] = 0;
      for (int d = 1; d < draws_; ++d) rnd_at(d, 0)[i] = rnd_at(d, 1)[i] = 0;
    }
  }

  // Traces the camera packet of samples [b, b + 8) of the chunk (those < n)
  // and keeps the hits.
  template <int L>
  HFR_VINLINE void intersect(int b, int n) {
    typedef typename Lanes<L>::F F;
    alignas(32) RTCRayHit8 rh;
    alignas(32) int valid[8];
    for (int h = 0; h < 8; h += L) {
      const F px = vload<F>(&px_[static_cast<std::size_t>(b + h)]), py = vload<F>(&py_[static_cast<std::size_t>(b + h)]);
      const F ix = A_[0] * px + A_[1] * py + A_[2], iy = A_[3] * px + A_[4] * py + A_[5];
      const F dcx = (ix - cam_[0]) / cam_[2], dcy = (iy - cam_[1]) / cam_[3];
      const V3<F> d = normalized(V3<F>{R_[0] * dcx + R_[3] * dcy + R_[6], R_[1] * dcx + R_[4] * dcy + R_[7],
                                       R_[2] * dcx + R_[5] * dcy + R_[8]});
      vstore(rh.ray.dir_x + h, d.x);
      vstore(rh.ray.dir_y + h, d.y);
      vstore(rh.ray.dir_z + h, d.z);
    }
    for (int l = 0; l < 8; ++l) {
      valid[l] = b + l < n ? -1 : 0;
      rh.ray.org_x[l] = eye_[0];
      rh.ray.org_y[l] = eye_[1];
      rh.ray.org_z[l] = eye_[2];
      rh.ray.tnear[l] = 0;
      rh.ray.tfar[l] = std::numeric_limits<float>::infinity();
      rh.ray.time[l] = 0;
      rh.ray.mask[l] = 0xFFFFFFFFu;
      rh.ray.id[l] = 0;
      rh.ray.flags[l] = 0;
      rh.hit.geomID[l] = RTC_INVALID_GEOMETRY_ID;
      rh.hit.instID[0][l] = RTC_INVALID_GEOMETRY_ID;
    }
    rtcIntersect8(valid, s_.scene, &cam_ctx_, &rh);
    const std::size_t i = static_cast<std::size_t>(b);
    std::memcpy(rows(dir_, 0, cap_) + i, rh.ray.dir_x, sizeof(rh.ray.dir_x));
    std::memcpy(rows(dir_, 1, cap_) + i, rh.ray.dir_y, sizeof(rh.ray.dir_y));
    std::memcpy(rows(dir_, 2, cap_) + i, rh.ray.dir_z, sizeof(rh.ray.dir_z));
    std::memcpy(rows(ng_, 0, cap_) + i, rh.hit.Ng_x, sizeof(rh.hit.Ng_x));
    std::memcpy(rows(ng_, 1, cap_) + i, rh.hit.Ng_y, sizeof(rh.hit.Ng_y));
    std::memcpy(rows(ng_, 2, cap_) + i, rh.hit.Ng_z, sizeof(rh.hit.Ng_z));
    std::memcpy(&bu_[i], rh.hit.u, sizeof(rh.hit.u));
    std::memcpy(&bv_[i], rh.hit.v, sizeof(rh.hit.v));
    std::memcpy(&geom_[i], rh.hit.geomID, sizeof(rh.hit.geomID));
    std::memcpy(&prim_[i], rh.hit.primID, sizeof(rh.hit.primID));
    for (int l = 0; l < 8; ++l) {
      const bool hit = valid[l] && rh.hit.geomID[l] != RTC_INVALID_GEOMETRY_ID;
      hit_[i + static_cast<std::size_t>(l)] = hit ? -1 : 0;
      if (hit) {
        const auto& g = s_.geometries[rh.hit.geomID[l]];
        __builtin_prefetch(&g.triangles[3 * rh.hit.primID[l]]);
        if (!g.triangle_uvs.empty()) __builtin_prefetch(&g.triangle_uvs[6 * rh.hit.primID[l]]);
      }
    }
  }

  // Sample j's vertices and uvs on their way to the cache.
  void prefetch_vertices(std::size_t j) const {
    if (!hit_[j]) return;
    const auto& g = s_.geometries[geom_[j]];
    const std::int32_t* tri = &g.triangles[3 * prim_[j]];
    for (int v = 0; v < 3; ++v) {
      __builtin_prefetch(&g.positions[3 * static_cast<std::size_t>(tri[v])]);
      __builtin_prefetch(&g.normals[3 * static_cast<std::size_t>(tri[v])]);
    }
  }

  // Sample j's uv, and its texels (each band's textures) on their way to the cache.
  void prepare_texels(std::size_t j) {
    float* uv = rows(uv_, 0, cap_) + j;
    float* uv1 = rows(uv_, 1, cap_) + j;
    *uv = *uv1 = 0;
    if (!hit_[j]) return;
    const auto& g = s_.geometries[geom_[j]];
    const unsigned prim = prim_[j];
    if (g.uv_triangles.empty()) return;
    const float bu = bu_[j], bv = bv_[j], bw = 1.0f - bu - bv;
    const float* t = &g.triangle_uvs[6 * static_cast<std::size_t>(prim)];
    *uv = bw * t[0] + bu * t[2] + bv * t[4];
    *uv1 = bw * t[1] + bu * t[3] + bv * t[5];
    const unsigned mi = g.triangle_material.empty() ? 0 : g.triangle_material[prim];
    const Plan& pl = plans_[plan_first_[geom_[j]] + mi];
    {
      for (int ti = 0; ti < pl.ntex; ++ti) {
        const Texture* tex = pl.tex[ti];
        // the footprint's top-left texel (roughly: a prefetch) and the row below
        const int x = std::clamp(static_cast<int>(*uv * tex->width - 0.5f), 0, tex->width - 1);
        const int y = std::clamp(static_cast<int>((1.0f - *uv1) * tex->height - 0.5f), 0, tex->height - 1);
        const std::size_t C = static_cast<std::size_t>(tex->channels);
        const float* p = &tex->data[(static_cast<std::size_t>(y) * tex->width + x) * C];
        const float* q = y + 1 < tex->height ? p + static_cast<std::size_t>(tex->width) * C : p;
        __builtin_prefetch(p);
        __builtin_prefetch(p + 2 * C - 1);
        __builtin_prefetch(q);
        __builtin_prefetch(q + 2 * C - 1);
      }
    }
  }

  // Per sample: the triangle's vertices and each band's surface (texture
  // lookups through one TexCache per hit); misses get a harmless triangle.
  // These are cache misses (vertices and texels far apart): each sample's
  // vertices are prefetched 16 samples ahead, its texels 8 ahead.
  void gather(int n) {
    const std::size_t nn = static_cast<std::size_t>(n), cap = static_cast<std::size_t>(cap_);
    const std::size_t nb = bands_.size();
    constexpr std::size_t kVertsAhead = 16, kTexelsAhead = 8;
    float* vrow[18];
    for (int k = 0; k < 18; ++k) vrow[k] = rows(vtx_, k, cap_);
    float* srow[16][5];  // up to 16 bands through these pointers (more: surf())
    const std::size_t nbs = std::min<std::size_t>(nb, 16);
    for (std::size_t bi = 0; bi < nbs; ++bi)
      for (int k = 0; k < 5; ++k) srow[bi][k] = surf(bi, k);
    const float* urow = rows(uv_, 0, cap_);
    const float* vrow_uv = rows(uv_, 1, cap_);
    for (std::size_t j = 0; j < std::min(nn, kVertsAhead); ++j) prefetch_vertices(j);
    for (std::size_t j = 0; j < std::min(nn, kTexelsAhead); ++j) prepare_texels(j);
    // the samples, and the padding to the last packet (shade and finish read whole packets)
    const std::size_t end = (nn + 7) / 8 * 8;
    for (std::size_t i = 0; i < end; ++i) {
      if (i + kVertsAhead < nn) prefetch_vertices(i + kVertsAhead);
      if (i + kTexelsAhead < nn) prepare_texels(i + kTexelsAhead);
      if (i % 8 == 0 && !packet_hits(static_cast<int>(i))) {
        // a packet without hits is neither shaded nor finished: only the prefetches
        for (std::size_t k = i + 1; k < i + 8; ++k) {
          if (k + kVertsAhead < nn) prefetch_vertices(k + kVertsAhead);
          if (k + kTexelsAhead < nn) prepare_texels(k + kTexelsAhead);
        }
        i += 7;
        continue;
      }
      if (i >= nn || !hit_[i]) {
        static constexpr float kDummy[18] = {0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 0, -1, 0, 0, -1, 0, 0, -1};
        for (int k = 0; k < 18; ++k) vrow[k][i] = kDummy[k];
        hit_[i] = 0;
        bu_[i] = bv_[i] = 0;
        rows(ng_, 0, cap_)[i] = rows(ng_, 1, cap_)[i] = 0;
        rows(ng_, 2, cap_)[i] = -1;
        if (i >= nn) rows(dir_, 0, cap_)[i] = rows(dir_, 1, cap_)[i] = 0, rows(dir_, 2, cap_)[i] = 1;
        for (std::size_t bi = 0; bi < nb; ++bi)
          for (int k = 0; k < 5; ++k) surf(bi, k)[i] = 0;
        continue;
      }
      const auto& g = s_.geometries[geom_[i]];
      const unsigned prim = prim_[i];
      const std::int32_t* tri = &g.triangles[3 * prim];
      for (int v = 0; v < 3; ++v) {
        const float* pv = &g.positions[3 * static_cast<std::size_t>(tri[v])];
        const float* nv = &g.normals[3 * static_cast<std::size_t>(tri[v])];
        for (int k = 0; k < 3; ++k) {
          vrow[3 * v + k][i] = pv[k];
          vrow[9 + 3 * v + k][i] = nv[k];
        }
      }
      const unsigned mi = g.triangle_material.empty() ? 0 : g.triangle_material[prim];
      const std::size_t pi = plan_first_[geom_[i]] + mi;
      const Plan& pl = plans_[pi];
      const float u = urow[i], v = vrow_uv[i];
      if (pl.slow || nb > nbs) {
        TexCache cache;
        for (std::size_t bi = 0; bi < nb; ++bi) {
          const Material& m = *plan_bands_[pi * nb + bi].m;
          const SurfaceSample sf = surface(m, u, v, cache);
          for (int c = 0; c < 3; ++c) surf(bi, c)[i] = sf.albedo[static_cast<std::size_t>(c)];
          surf(bi, 3)[i] = sf.f0;
          surf(bi, 4)[i] = sf.alpha;
          sss_[bi * cap + i] = plan_bands_[pi * nb + bi].sss;
        }
        continue;
      }
      // each texture's channels once, then each band's parameters (as surface())
      alignas(16) float val[Plan::kTextures][TexCache::kChannels];
      TexCache fp;
      for (int t = 0; t < pl.ntex; ++t) {
        fp.footprint(pl.tex[t], u, v);
        fp.lerp_all(pl.tex[t], val[t]);
      }
      for (std::size_t bi = 0; bi < nb; ++bi) {
        const BandSurface& bs = plan_bands_[pi * nb + bi];
        const Material& m = *bs.m;
        std::array<float, 3> albedo = m.albedo_value;
        if (bs.albedo_tex >= 0)
          for (int c = 0; c < 3; ++c) albedo[static_cast<std::size_t>(c)] = val[bs.albedo_tex][bs.albedo_k[c]];
        for (auto& a : albedo) a = static_cast<float>(a * m.albedo_scale);
        float f0 = bs.specular_tex >= 0 ? val[bs.specular_tex][bs.specular_k] : m.specular_value;
        float alpha = bs.roughness_tex >= 0 ? val[bs.roughness_tex][bs.roughness_k] : m.roughness_value;
        f0 = std::clamp(static_cast<float>(f0 * m.specular_scale), 0.0f, 1.0f);
        alpha = std::clamp(alpha, 1e-3f, 1.0f);
        for (int c = 0; c < 3; ++c) srow[bi][c][i] = albedo[static_cast<std::size_t>(c)];
        srow[bi][3][i] = f0;
        srow[bi][4][i] = alpha;
        sss_[bi * cap + i] = bs.sss;
      }
    }
  }


  // Shades the packet of samples [b, b + 8) in every band (hit lanes), queueing its occlusion rays.
  template <int L>
  HFR_VINLINE void shade(int b) {
    typedef typename Lanes<L>::F F;
    typedef typename Lanes<L>::I I;
    const std::size_t nb = bands_.size();
    const std::int32_t* hit = &hit_[static_cast<std::size_t>(b)];
    for (int h = 0; h < 8; h += L) {
      const std::size_t i = static_cast<std::size_t>(b + h);  // the first lane's chunk sample
      const I hm = vload<I>(hit + h);
      const V3<F> wo{-vload<F>(rows(dir_, 0, cap_) + i), -vload<F>(rows(dir_, 1, cap_) + i), -vload<F>(rows(dir_, 2, cap_) + i)};
      auto vtx = [&](int k) { return vload<F>(rows(vtx_, k, cap_) + i); };
      const F bu = vload<F>(&bu_[i]), bv = vload<F>(&bv_[i]), bw = 1.0f - bu - bv;
      // Geometric normal (Embree's Ng is unnormalized), facing the viewer.
      V3<F> ng = normalized(V3<F>{vload<F>(rows(ng_, 0, cap_) + i), vload<F>(rows(ng_, 1, cap_) + i), vload<F>(rows(ng_, 2, cap_) + i)});
      ng = negate_where(dot(ng, wo) < 0, ng);
      // Shading normal: interpolated vertex normals, facing the viewer.
      V3<F> nrm{bw * vtx(9) + bu * vtx(12) + bv * vtx(15), bw * vtx(10) + bu * vtx(13) + bv * vtx(16),
                bw * vtx(11) + bu * vtx(14) + bv * vtx(17)};
      const I degenerate = dot(nrm, nrm) <= 0;
      nrm = normalized(V3<F>{degenerate ? ng.x : nrm.x, degenerate ? ng.y : nrm.y, degenerate ? ng.z : nrm.z});
      nrm = negate_where(dot(nrm, wo) < 0, nrm);
      // Hit point, recomputed from the triangle for accuracy, then offset
      // along the geometric normal for shadow rays.
      const V3<F> p{bw * vtx(0) + bu * vtx(3) + bv * vtx(6), bw * vtx(1) + bu * vtx(4) + bv * vtx(7),
                    bw * vtx(2) + bu * vtx(5) + bv * vtx(8)};
      const F eps = vmax(vmax(vmax(splat<F>(1e-4f), vabs(p.x)), vabs(p.y)), vabs(p.z)) * 2e-5f;
      const V3<F> po{p.x + eps * ng.x, p.y + eps * ng.y, p.z + eps * ng.z};
      vstore(po_[0] + h, po.x);
      vstore(po_[1] + h, po.y);
      vstore(po_[2] + h, po.z);
      vstore(&z_[i], R_[6] * p.x + R_[7] * p.y + R_[8] * p.z + tz_);
      if (ao_) {
        // One cosine-weighted direction around the shading normal, shared by
        // every band's ambient light (visibility does not depend on the band).
        const F r1 = vload<F>(rnd_at(1, 0) + i), r2 = vload<F>(rnd_at(1, 1) + i);
        const F r = vsqrt(r1), zc = vsqrt(vmax(1.0f - r1, splat<F>(0)));
        F sp, cp;
        sincos_2pi(r2, sp, cp);
        V3<F> t1, t2;
        vbasis(nrm, t1, t2);
        const F a = r * cp, c = r * sp;
        const V3<F> d{a * t1.x + c * t2.x + zc * nrm.x, a * t1.y + c * t2.y + zc * nrm.y, a * t1.z + c * t2.z + zc * nrm.z};
        ray(0, h, d, splat<F>(ao_far_), hm & (dot(d, ng) > 0));
      }
      const F nvr = dot(nrm, wo);
      const I front = nvr > 0;
      const F nv = vmax(nvr, splat<F>(0));
      for (std::size_t bi = 0; bi < nb; ++bi) {
        const BandState& band = bands_[bi];
        const int C = band.C;
        const F f0 = vload<F>(surf(bi, 3) + i), alpha = vload<F>(surf(bi, 4) + i);
        // what does not depend on the light's direction
        const VBrdfView<F> view = vbrdf_view(f0, alpha, nv);
        const F fr = view.fr;
        const F kd = front ? view.kd : splat<F>(0);
        const I has_spec = f0 > 0;
        F eamb[3] = {splat<F>(0), splat<F>(0), splat<F>(0)}, spec_amb[3] = {splat<F>(0), splat<F>(0), splat<F>(0)};
        for (int c = 0; c < C; ++c) vstore(shade_at(bi, 0, c) + i, vload<F>(surf(bi, c) + i));
        int kind = band.first_kind;
        for (const Light& light : band.lights) {
          if (const auto* am = std::get_if<AmbientLight>(&light)) {
            for (int c = 0; c < C; ++c) {
              eamb[c] = eamb[c] + (1.0f - fr) * am->rgb[static_cast<std::size_t>(c)];
              spec_amb[c] = spec_amb[c] + fr * am->rgb[static_cast<std::size_t>(c)];
            }
            continue;
          }
          const int q = kind++;
          const QLight& ql = lights_[static_cast<std::size_t>(q)];
          V3<F> wi{ql.pos[0] - p.x, ql.pos[1] - p.y, ql.pos[2] - p.z};
          const F d2 = dot(wi, wi);
          const F d = vsqrt(d2);
          wi = {wi.x / d, wi.y / d, wi.z / d};
          I ok;
          F tl, g;  // the shadow ray's length, the light's weight (cos / pdf times radiance / rgb)
          if (!ql.sphere) {
            ok = hm & (d2 > 0);
            tl = d;
            g = splat<F>(1) / d2;
          } else {
            ok = hm & (d2 > ql.r2);  // not inside the light
            // Uniform sampling of the cone subtended by the sphere.
            const F sin2_max = ql.r2 / d2;
            const F cos_max = vsqrt(vmax(1.0f - sin2_max, splat<F>(0)));
            const F omc = sin2_max / (1.0f + cos_max);  // 1 - cos_max, without cancellation
            const F u1 = vload<F>(rnd_at(ql.draw, 0) + i), u2 = vload<F>(rnd_at(ql.draw, 1) + i);
            const F x = u1 * omc;  // 1 - cos_t
            const F cos_t = 1.0f - x;
            const F sin2_t = x * (2.0f - x);
            const F sin_t = vsqrt(sin2_t);
            F sp, cp;
            sincos_2pi(u2, sp, cp);
            V3<F> t1, t2;
            vbasis(wi, t1, t2);
            const F a = sin_t * cp, c = sin_t * sp;
            wi = {a * t1.x + c * t2.x + cos_t * wi.x, a * t1.y + c * t2.y + cos_t * wi.y, a * t1.z + c * t2.z + cos_t * wi.z};
            // Distance to the sphere's near surface along wi.
            tl = d * cos_t - vsqrt(vmax(ql.r2 - d2 * sin2_t, splat<F>(0)));
            // radiance 1 / (pi r^2) times the solid angle 2 pi (1 - cos_max), per unit rgb
            g = omc * (2.0f / ql.r2);
          }
          const F cosn = dot(nrm, wi);
          ok = ok & (cosn > 0) & (dot(ng, wi) > 0) & front;
          // the BRDF's diffuse weight and specular value (as brdf_parts)
          const F spec = vbrdf_specular(nrm, wo, wi, cosn, nv, view, f0);
          const F w = cosn * g;
          vstore(&kes_[static_cast<std::size_t>(2 * q) * cap_ + i], ok ? kd * w : splat<F>(0));
          vstore(&kes_[static_cast<std::size_t>(2 * q + 1) * cap_ + i], ok & has_spec ? spec * w : splat<F>(0));
          ray(q, h, wi, tl * (1.0f - 1e-6f), ok);
        }
        for (int c = 0; c < C; ++c) {
          vstore(shade_at(bi, 1, c) + i, hm ? eamb[c] : splat<F>(0));
          vstore(shade_at(bi, 2, c) + i, hm ? spec_amb[c] : splat<F>(0));
        }
      }
    }
    // Compaction: each queue's rays of the packet, in sample order (branch
    // free: every lane is written, the count moves on for the valid ones).
    if constexpr (L == 8) {
      compact8(b);
      return;
    }
    for (int q = 0; q < nq_; ++q) {
      const PacketRays& pr = rays_[static_cast<std::size_t>(q)];
      Queue& Q = queues_[static_cast<std::size_t>(q)];
      for (int l = 0; l < 8; ++l) {
        const std::size_t k = static_cast<std::size_t>(Q.n);
        Q.ox[k] = po_[0][l];
        Q.oy[k] = po_[1][l];
        Q.oz[k] = po_[2][l];
        Q.dx[k] = pr.dir[0][l];
        Q.dy[k] = pr.dir[1][l];
        Q.dz[k] = pr.dir[2][l];
        Q.tfar[k] = pr.tfar[l];
        Q.sample[k] = b + l;
        Q.n += pr.valid[l] & 1;
      }
    }
  }

  // The compaction with AVX2: the valid lanes moved to the front by one
  // permutation per row (8 lanes stored; the queues are padded by 8).
  HFR_VINLINE void compact8(int b) {
    typedef float F8 __attribute__((vector_size(32)));
    typedef std::int32_t I8 __attribute__((vector_size(32)));
    const F8 ox = vload<F8>(po_[0]), oy = vload<F8>(po_[1]), oz = vload<F8>(po_[2]);
    const I8 sample = I8{0, 1, 2, 3, 4, 5, 6, 7} + b;
    for (int q = 0; q < nq_; ++q) {
      const PacketRays& pr = rays_[static_cast<std::size_t>(q)];
      Queue& Q = queues_[static_cast<std::size_t>(q)];
      unsigned mask = 0;
      for (int l = 0; l < 8; ++l) mask |= static_cast<unsigned>(pr.valid[l] & 1) << l;
      const I8 perm = vload<I8>(kCompress.p[mask]);
      const std::size_t k = static_cast<std::size_t>(Q.n);
      vstore(&Q.ox[k], __builtin_shuffle(ox, perm));
      vstore(&Q.oy[k], __builtin_shuffle(oy, perm));
      vstore(&Q.oz[k], __builtin_shuffle(oz, perm));
      vstore(&Q.dx[k], __builtin_shuffle(vload<F8>(pr.dir[0]), perm));
      vstore(&Q.dy[k], __builtin_shuffle(vload<F8>(pr.dir[1]), perm));
      vstore(&Q.dz[k], __builtin_shuffle(vload<F8>(pr.dir[2]), perm));
      vstore(&Q.tfar[k], __builtin_shuffle(vload<F8>(pr.tfar), perm));
      vstore(&Q.sample[k], __builtin_shuffle(sample, perm));
      Q.n += __builtin_popcount(mask);
    }
  }

  // Lanes [h, h + L) of queue q's rays of the packet (from the hit points).
  template <class F, class I>
  HFR_VINLINE void ray(int q, int h, const V3<F>& d, F tfar, I ok) {
    PacketRays& r = rays_[static_cast<std::size_t>(q)];
    vstore(r.dir[0] + h, d.x);
    vstore(r.dir[1] + h, d.y);
    vstore(r.dir[2] + h, d.z);
    vstore(r.tfar + h, tfar);
    std::memcpy(r.valid + h, &ok, sizeof(I));
  }

  // Traces each queue's rays with one call of Embree's stream API
  // (rtcOccludedNp on the queue's SoA arrays, incoherent: Embree packs them
  // itself; ~10 % less time than packets of 8 from the queues here, the same
  // answers), and marks the samples whose ray nothing blocks.
  void flush() {
    RTCRayNp r;
    r.tnear = ray_zeros_.data();
    r.time = ray_zeros_.data();
    r.mask = ray_mask_.data();
    r.id = ray_ids_.data();
    r.flags = ray_ids_.data();
    for (int q = 0; q < nq_; ++q) {
      Queue& Q = queues_[static_cast<std::size_t>(q)];
      if (Q.n == 0) continue;
      float* vis = &vis_[static_cast<std::size_t>(q) * static_cast<std::size_t>(cap_)];
      r.org_x = Q.ox.data();
      r.org_y = Q.oy.data();
      r.org_z = Q.oz.data();
      r.dir_x = Q.dx.data();
      r.dir_y = Q.dy.data();
      r.dir_z = Q.dz.data();
      r.tfar = Q.tfar.data();
      rtcOccludedNp(s_.scene, &occ_ctx_, &r, static_cast<unsigned>(Q.n));
      for (std::size_t k = 0; k < static_cast<std::size_t>(Q.n); ++k)
        if (!(Q.tfar[k] < 0)) vis[Q.sample[k]] = 1;
      shadow_rays += static_cast<std::uint64_t>(Q.n);
    }
  }

  // The packet's samples once the occlusion rays are traced, in each band:
  // the diffuse irradiance term E (the ambient term times the AO visibility,
  // then each unblocked light's) and what the sample adds to the image (the
  // specular part only for subsurface materials: their diffuse part goes to
  // the layers), in place of the ambient terms.
  template <int L>
  HFR_VINLINE void finish(int b) {
    typedef typename Lanes<L>::F F;
    typedef typename Lanes<L>::I I;
    const std::size_t cap = static_cast<std::size_t>(cap_);
    for (int h = 0; h < 8; h += L) {
      const std::size_t i = static_cast<std::size_t>(b + h);
      const F vis_ao = ao_ ? vload<F>(&vis_[i]) : splat<F>(1);
      for (std::size_t bi = 0; bi < bands_.size(); ++bi) {
        const BandState& band = bands_[bi];
        const I sss = vload<I>(&sss_[bi * cap + i]);
        for (int c = 0; c < band.C; ++c) {
          F e = vload<F>(shade_at(bi, 1, c) + i) * vis_ao, sp = vload<F>(shade_at(bi, 2, c) + i);
          for (int q = band.first_kind; q < band.first_kind + band.kinds; ++q) {
            const std::size_t k = static_cast<std::size_t>(q);
            const F v = vload<F>(&vis_[k * cap + i]);
            const float rgb = lights_[k].rgb[c];
            e = e + vload<F>(&kes_[2 * k * cap + i]) * rgb * v;
            sp = sp + vload<F>(&kes_[(2 * k + 1) * cap + i]) * rgb * v;
          }
          vstore(shade_at(bi, 1, c) + i, e);
          vstore(shade_at(bi, 2, c) + i, sss ? sp : vload<F>(shade_at(bi, 0, c) + i) * e + sp);
        }
      }
    }
  }

  // The chunk's pixels: each band's sums over the samples (in sample order).
  void accumulate(std::size_t y, int x0, int np) {
    const int W = o_.width, spp = o_.spp;
    const std::size_t cap = static_cast<std::size_t>(cap_);
    for (std::size_t bi = 0; bi < bands_.size(); ++bi) {
      const BandState& band = bands_[bi];
      const int C = band.C;
      const float *lrow[3], *erow[3], *arow[3];
      for (int c = 0; c < C; ++c) lrow[c] = shade_at(bi, 2, c), erow[c] = shade_at(bi, 1, c), arow[c] = shade_at(bi, 0, c);
      const std::int32_t* srow = &sss_[bi * cap];
      for (int p = 0; p < np; ++p) {
        const std::uint64_t index = static_cast<std::uint64_t>(y) * W + (x0 + p);
        double L[3] = {0, 0, 0}, E[3] = {0, 0, 0}, alb[3] = {0, 0, 0}, z = 0;
        int n_sss = 0, n_hit = 0;
        for (int k = 0; k < spp; ++k) {
          const std::size_t i = static_cast<std::size_t>(p * spp + k);
          if (!hit_[i]) continue;
          ++n_hit;
          const bool sss = srow[i] != 0;
          if (sss) {
            ++n_sss;
            z += z_[i];
          }
          for (int c = 0; c < C; ++c) {
            L[c] += lrow[c][i];
            if (sss) {
              E[c] += erow[c][i];
              alb[c] += arow[c][i];
            }
          }
        }
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
};

}  // namespace

namespace detail {

void shading_brdf(std::size_t count, const float* n, const float* wo, const float* wi, const float* f0, const float* alpha,
                  float* kd, float* spec) {
  typedef Lanes<4>::F F;
  typedef Lanes<4>::I I;
  for (std::size_t b = 0; b < count; b += 4) {
    float in[11][4];  // SoA: n, wo, wi (xyz each), f0, alpha
    for (unsigned l = 0; l < 4; ++l) {
      const std::size_t k = std::min(b + l, count - 1);  // the last lanes repeat the last entry
      for (int c = 0; c < 3; ++c) in[c][l] = n[3 * k + c], in[3 + c][l] = wo[3 * k + c], in[6 + c][l] = wi[3 * k + c];
      in[9][l] = f0[k];
      in[10][l] = std::clamp(alpha[k], 1e-3f, 1.0f);  // as the surface sampling clamps it
    }
    const V3<F> nn{vload<F>(in[0]), vload<F>(in[1]), vload<F>(in[2])}, o{vload<F>(in[3]), vload<F>(in[4]), vload<F>(in[5])},
        w{vload<F>(in[6]), vload<F>(in[7]), vload<F>(in[8])};
    const F f0v = vload<F>(in[9]), av = vload<F>(in[10]);
    // as Tracer::shade: the view terms, then a light direction's
    const F nvr = dot(nn, o);
    const I front = nvr > 0;
    const F nv = vmax(nvr, splat<F>(0));
    const VBrdfView<F> view = vbrdf_view(f0v, av, nv);
    const F cosn = dot(nn, w);
    const I ok = front & (cosn > 0);
    const F kdv = ok ? view.kd : splat<F>(0);
    const F sv = ok & (f0v > 0) ? vbrdf_specular(nn, o, w, cosn, nv, view, f0v) : splat<F>(0);
    for (unsigned l = 0; l < 4 && b + l < count; ++l) kd[b + l] = kdv[l], spec[b + l] = sv[l];
  }
}

}  // namespace detail

namespace {

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
  const int W = o.width, H = o.height;
  const std::size_t npix = static_cast<std::size_t>(W) * H;
  const std::size_t nb = bands_in.size();
  std::vector<std::vector<float>> images(nb);
  // the scene's frame: scene = R^T (camera - t); lights and rays move there
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
      if (auto* pl = std::get_if<PointLight>(&l)) pl->position = to_scene(pl->position), ++kinds, ++b.kinds;
      if (auto* sl = std::get_if<SphereLight>(&l)) sl->centre = to_scene(sl->centre), ++kinds, ++b.kinds;
      if (std::holds_alternative<AmbientLight>(l)) b.ambient = true;
    }
  }
  std::atomic<std::uint64_t> primary{0}, shadow{0};
  const std::uint64_t seed_mix = Rng{o.seed ^ 0x5DEECE66Dull}.next();
  const std::array<double, 3> eye = to_scene({0, 0, 0});
  // AVX2 where the CPU has it; HFR_RENDER_SIMD=sse forces the SSE2 code
  // (the same bits: the tests compare them).
  const char* simd = std::getenv("HFR_RENDER_SIMD");
  const bool avx2 = __builtin_cpu_supports("avx2") && !(simd && std::string(simd) == "sse");
  // One tracer per thread, the rows shared out one at a time.
  const int threads = std::max(1, std::min(o.threads, H));
  std::atomic<std::size_t> next_row{0};
  parallel_for(static_cast<std::size_t>(threads), threads, [&](std::size_t) {
    const DenormalsOff ftz;
    Tracer tracer{s, bands, o, kinds, eye, seed_mix};
    for (std::size_t y; (y = next_row++) < static_cast<std::size_t>(H);) tracer.row(y, avx2);
    primary += tracer.primary_rays;
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
