#include "hfr/render.hpp"

#include <embree3/rtcore.h>

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
  for (float x : data)
    if (!std::isfinite(x)) throw Error(std::string(what) + ": texture value not finite");
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

struct Tracer {
  const Scene::Impl& s;
  const std::vector<Light>& lights;
  const RenderOptions& o;
  std::uint64_t shadow_rays = 0;
  double ao_far = std::isfinite(o.ao_distance) ? o.ao_distance : double(std::numeric_limits<float>::infinity());

  // True if the segment org + t dir, t in (tnear, tfar), hits anything.
  bool occluded(const double org[3], const double dir[3], double tfar) {
    ++shadow_rays;
    RTCIntersectContext ctx;
    rtcInitIntersectContext(&ctx);
    RTCRay ray;
    ray.org_x = float(org[0]);
    ray.org_y = float(org[1]);
    ray.org_z = float(org[2]);
    ray.dir_x = float(dir[0]);
    ray.dir_y = float(dir[1]);
    ray.dir_z = float(dir[2]);
    ray.tnear = 0;
    ray.tfar = float(tfar);
    ray.time = 0;
    ray.mask = 0xFFFFFFFFu;
    ray.id = 0;
    ray.flags = 0;
    rtcOccluded1(s.scene, &ctx, &ray);
    return ray.tfar < 0;
  }

  SurfaceSample surface(const Scene::Impl::Geometry& g, unsigned prim, double bu, double bv) const {
    SurfaceSample out;
    const Material& m = g.material(prim);
    double uv[2] = {0, 0};
    if (!g.uv_triangles.empty()) {
      const std::int32_t* t = &g.uv_triangles[3 * prim];
      for (int k = 0; k < 2; ++k)
        uv[k] = (1 - bu - bv) * g.uvs[2 * t[0] + k] + bu * g.uvs[2 * t[1] + k] + bv * g.uvs[2 * t[2] + k];
    }
    float buf[16];
    if (m.albedo) {
      m.albedo->sample(uv[0], uv[1], buf);
      for (int c = 0; c < 3; ++c) out.albedo[c] = buf[m.albedo->channels == 1 ? 0 : std::min(c, m.albedo->channels - 1)];
    } else {
      out.albedo = m.albedo_value;
    }
    for (auto& a : out.albedo) a = static_cast<float>(a * m.albedo_scale);
    if (m.specular) {
      m.specular->sample(uv[0], uv[1], buf);
      out.f0 = buf[0];
    } else {
      out.f0 = m.specular_value;
    }
    if (m.roughness) {
      m.roughness->sample(uv[0], uv[1], buf);
      out.alpha = buf[0];
    } else {
      out.alpha = m.roughness_value;
    }
    out.f0 = std::clamp(static_cast<float>(out.f0 * m.specular_scale), 0.0f, 1.0f);
    out.alpha = std::clamp(out.alpha, 1e-3f, 1.0f);
    return out;
  }

  // What one camera ray sees: radiance L, and for subsurface materials
  // (when split) the diffuse irradiance term E and albedo kept apart.
  struct Hit {
    double L[3] = {0, 0, 0};
    double E[3] = {0, 0, 0};
    double albedo[3] = {0, 0, 0};
    double z = 0;
    bool subsurface = false;
  };

  // Shades one camera ray. Returns false on a miss. With split, a
  // subsurface material's diffuse term goes to E instead of L.
  // A camera ray's first hit (from a packet query).
  struct PrimaryHit {
    unsigned geom = RTC_INVALID_GEOMETRY_ID, prim = 0;
    float u = 0, v = 0, ng[3] = {0, 0, 0};
  };

  // Shades the first hit of a camera ray. Returns false on a miss. With
  // split, a subsurface material's diffuse term goes to E instead of L.
  bool shade(const double dir[3], const PrimaryHit& h, Rng& rng, bool split, Hit& out) {
    if (h.geom == RTC_INVALID_GEOMETRY_ID) return false;
    struct {
      struct {
        unsigned geomID, primID;
        float u, v, Ng_x, Ng_y, Ng_z;
      } hit;
    } rh{{h.geom, h.prim, h.u, h.v, h.ng[0], h.ng[1], h.ng[2]}};
    const auto& g = s.geometries[rh.hit.geomID];
    const unsigned prim = rh.hit.primID;
    const double bu = rh.hit.u, bv = rh.hit.v;
    const std::int32_t* tri = &g.triangles[3 * prim];
    const double wo[3] = {-dir[0], -dir[1], -dir[2]};
    // Geometric normal (Embree's Ng is unnormalized), facing the viewer.
    double ng[3] = {rh.hit.Ng_x, rh.hit.Ng_y, rh.hit.Ng_z};
    normalize3(ng);
    if (dot3(ng, wo) < 0)
      for (double& x : ng) x = -x;
    // Shading normal: interpolated vertex normals, facing the viewer.
    double n[3];
    for (int k = 0; k < 3; ++k)
      n[k] = (1 - bu - bv) * g.normals[3 * tri[0] + k] + bu * g.normals[3 * tri[1] + k] + bv * g.normals[3 * tri[2] + k];
    if (dot3(n, n) <= 0) std::copy(ng, ng + 3, n);
    normalize3(n);
    if (dot3(n, wo) < 0)
      for (double& x : n) x = -x;

    // Hit point, recomputed from the triangle for accuracy, then offset
    // along the geometric normal for shadow rays.
    double p[3];
    for (int k = 0; k < 3; ++k)
      p[k] = (1 - bu - bv) * g.positions[3 * tri[0] + k] + bu * g.positions[3 * tri[1] + k] +
             bv * g.positions[3 * tri[2] + k];
    double scale = 1e-4;
    for (int k = 0; k < 3; ++k) scale = std::max(scale, std::abs(p[k]));
    const double eps = scale * 2e-5;
    const double po[3] = {p[0] + eps * ng[0], p[1] + eps * ng[1], p[2] + eps * ng[2]};

    const SurfaceSample sf = surface(g, prim, bu, bv);
    // diffuse irradiance term (E, grey weights times light colour) and specular radiance (S)
    double E[3] = {0, 0, 0}, S[3] = {0, 0, 0};

    for (const Light& light : lights) {
      if (const auto* a = std::get_if<AmbientLight>(&light)) {
        const double fr = fresnel(sf.f0, std::max(0.0, dot3(n, wo)));
        double vis = 1;
        if (o.ambient_occlusion) {
          // One cosine-weighted direction around the shading normal.
          const double r1 = rng.uniform(), r2 = rng.uniform();
          const double r = std::sqrt(r1), phi = 2 * kPi * r2;
          double t1[3], t2[3];
          basis(n, t1, t2);
          const double z = std::sqrt(std::max(0.0, 1 - r1));
          double d[3];
          for (int k = 0; k < 3; ++k) d[k] = r * std::cos(phi) * t1[k] + r * std::sin(phi) * t2[k] + z * n[k];
          vis = (dot3(d, ng) > 0 && !occluded(po, d, ao_far)) ? 1 : 0;
        }
        for (int c = 0; c < 3; ++c) {
          E[c] += (1 - fr) * vis * a->rgb[c];
          S[c] += fr * a->rgb[c];
        }
      } else if (const auto* pl = std::get_if<PointLight>(&light)) {
        double wi[3] = {pl->position[0] - p[0], pl->position[1] - p[1], pl->position[2] - p[2]};
        const double d2 = dot3(wi, wi);
        if (!(d2 > 0)) continue;
        const double d = std::sqrt(d2);
        for (double& x : wi) x /= d;
        const double cosn = dot3(n, wi);
        if (cosn <= 0 || dot3(ng, wi) <= 0) continue;
        double kd, spec;
        brdf_parts(sf, n, wo, wi, kd, spec);
        if (occluded(po, wi, d * (1 - 1e-6))) continue;
        for (int c = 0; c < 3; ++c) {
          const double e = cosn * pl->rgb[c] / d2;
          E[c] += kd * e;
          S[c] += spec * e;
        }
      } else if (const auto* sl = std::get_if<SphereLight>(&light)) {
        double w[3] = {sl->centre[0] - p[0], sl->centre[1] - p[1], sl->centre[2] - p[2]};
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
        double t1[3], t2[3];
        basis(w, t1, t2);
        double wi[3];
        for (int k = 0; k < 3; ++k) wi[k] = sin_t * std::cos(phi) * t1[k] + sin_t * std::sin(phi) * t2[k] + cos_t * w[k];
        const double cosn = dot3(n, wi);
        if (cosn <= 0 || dot3(ng, wi) <= 0) continue;
        // Distance to the sphere's near surface along wi.
        const double b = d * cos_t;
        const double tl = b - std::sqrt(std::max(0.0, b * b - (d2 - r2)));
        double kd, spec;
        brdf_parts(sf, n, wo, wi, kd, spec);
        if (occluded(po, wi, tl * (1 - 1e-6))) continue;
        const double solid = 2 * kPi * (1 - cos_max);  // 1 / pdf
        const double Le = 1.0 / (kPi * r2);
        for (int c = 0; c < 3; ++c) {
          const double e = cosn * Le * sl->rgb[c] * solid;
          E[c] += kd * e;
          S[c] += spec * e;
        }
      }
    }
    out.subsurface = split && g.material(prim).subsurface;
    const auto& R = o.scene_to_camera.R;
    out.z = R[6] * p[0] + R[7] * p[1] + R[8] * p[2] + o.scene_to_camera.t[2];
    for (int c = 0; c < 3; ++c) {
      out.albedo[c] = sf.albedo[c];
      if (out.subsurface) {
        out.E[c] = E[c];
        out.L[c] = S[c];
      } else {
        out.E[c] = 0;
        out.L[c] = sf.albedo[c] * E[c] + S[c];
      }
    }
    return true;
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

std::vector<float> render(const Scene& scene, const std::vector<Light>& lights, const RenderOptions& o,
                          RenderStats* stats, RenderLayers* layers) {
  check_options(o, lights);
  if (!scene.committed()) throw Error("render: the scene is not committed");
  const Scene::Impl& s = scene.impl();
  const int W = o.width, H = o.height, C = o.channels, spp = o.spp;
  const std::size_t npix = static_cast<std::size_t>(W) * H;
  std::vector<float> image(npix * C, 0.0f);
  if (layers) {
    layers->irradiance.assign(npix * C, 0.0f);
    layers->albedo.assign(npix * C, 0.0f);
    layers->coverage.assign(npix, 0.0f);
    layers->depth.assign(npix, 0.0f);
    layers->alpha.assign(npix, 0.0f);
  }
  std::atomic<std::uint64_t> primary{0}, shadow{0};
  const std::uint64_t seed_mix = Rng{o.seed ^ 0x5DEECE66Dull}.next();
  const auto& A = o.pixel_to_image;
  // the scene's frame: scene = R^T (camera - t); lights and rays move there
  const auto& R = o.scene_to_camera.R;
  const auto& t = o.scene_to_camera.t;
  auto to_scene = [&](const std::array<double, 3>& c) {
    const double d[3] = {c[0] - t[0], c[1] - t[1], c[2] - t[2]};
    return std::array<double, 3>{R[0] * d[0] + R[3] * d[1] + R[6] * d[2], R[1] * d[0] + R[4] * d[1] + R[7] * d[2],
                                 R[2] * d[0] + R[5] * d[1] + R[8] * d[2]};
  };
  std::vector<Light> scene_lights = lights;
  for (Light& l : scene_lights) {
    if (auto* pl = std::get_if<PointLight>(&l)) pl->position = to_scene(pl->position);
    if (auto* sl = std::get_if<SphereLight>(&l)) sl->centre = to_scene(sl->centre);
  }
  const std::array<double, 3> eye = to_scene({0, 0, 0});

  // Camera rays go to Embree in packets of 8 (rtcIntersect8, coherent):
  // the samples of one pixel, or of neighbouring pixels when spp < 8. Each
  // pixel keeps its own generator, so the image does not depend on the
  // grouping or the thread count.
  const int group = std::max(1, 8 / spp);
  parallel_for(static_cast<std::size_t>(H), o.threads, [&](std::size_t y) {
    Tracer tracer{s, scene_lights, o};
    std::vector<int> perm(spp);
    std::uint64_t rays = 0;
    Tracer::Hit hit;
    struct Sample {
      double dir[3];
      Tracer::PrimaryHit hit;
    };
    std::vector<Sample> samples(static_cast<std::size_t>(group * spp));
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
          double* dir = samples[static_cast<std::size_t>(gx * spp + k)].dir;
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
          const double* d = samples[std::min(i, n - 1)].dir;
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
          Tracer::PrimaryHit& h = samples[b + static_cast<std::size_t>(l)].hit;
          h.geom = rh.hit.geomID[l];
          h.prim = rh.hit.primID[l];
          h.u = rh.hit.u[l];
          h.v = rh.hit.v[l];
          h.ng[0] = rh.hit.Ng_x[l];
          h.ng[1] = rh.hit.Ng_y[l];
          h.ng[2] = rh.hit.Ng_z[l];
        }
      }
      rays += n;
      for (int gx = 0; gx < nx; ++gx) {
        const std::uint64_t index = static_cast<std::uint64_t>(y) * W + (x0 + gx);
        Rng& rng = rngs[static_cast<std::size_t>(gx)];
        double L[3] = {0, 0, 0}, E[3] = {0, 0, 0}, alb[3] = {0, 0, 0}, z = 0;
        int n_sss = 0, n_hit = 0;
        for (int k = 0; k < spp; ++k) {
          const Sample& smp = samples[static_cast<std::size_t>(gx * spp + k)];
          if (!tracer.shade(smp.dir, smp.hit, rng, layers != nullptr, hit)) continue;
          ++n_hit;
          for (int c = 0; c < 3; ++c) L[c] += hit.L[c];
          if (hit.subsurface) {
            ++n_sss;
            z += hit.z;
            for (int c = 0; c < 3; ++c) {
              E[c] += hit.E[c];
              alb[c] += hit.albedo[c];
            }
          }
        }
        float* out = &image[index * C];
        for (int c = 0; c < C; ++c) out[c] = static_cast<float>(L[c] / spp);
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
    primary += rays;
    shadow += tracer.shadow_rays;
  });
  if (stats) {
    stats->primary_rays = primary;
    stats->shadow_rays = shadow;
  }
  return image;
}

}  // namespace hfr::render
