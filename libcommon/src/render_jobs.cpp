#include "hfr/render_jobs.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>

#include <Eigen/Core>
#include <Eigen/Geometry>
#include <opencv2/imgproc.hpp>

#include "hfr/correspondence.hpp"
#include "hfr/error.hpp"
#include "hfr/face.hpp"
#include "hfr/image.hpp"
#include "hfr/png.hpp"
#include "hfr/inputs.hpp"
#include "hfr/io.hpp"
#include "hfr/log.hpp"
#include "hfr/mesh.hpp"
#include "hfr/morphable.hpp"
#include "hfr/parallel.hpp"
#include "hfr/progress.hpp"
#include "hfr/records.hpp"
#include "hfr/reflectance.hpp"
#include "hfr/render.hpp"
#include "hfr/subsurface.hpp"
#include "hfr/tensorfile.hpp"
#include "hfr/version.hpp"

namespace hfr::render_jobs {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
constexpr double kPi = 3.14159265358979323846;

// ---- identities --------------------------------------------------------------

struct Part {
  std::string name;
  std::vector<std::int32_t> triangles, uv_triangles;
};

// The ICT FaceKit's eyes in an order and layout every identity shares (so a
// scene refits from one identity to another, see same_topology): every
// triangle of the eyeballs, in the mesh's order; the outer shell's on
// vertices of their own (copies appended after the mesh's), so that the
// cornea an identity drops is a triangle collapsed to a point (never hit)
// rather than another set of triangles. part: "sclera", "iris" or "pupil".
struct EyeLayout {
  std::vector<std::int32_t> triangles, uv_triangles;
  std::vector<const char*> part;               // per triangle
  std::vector<std::int32_t> source;            // per appended vertex: the mesh vertex it takes its position from
  std::vector<std::int32_t> vertex;            // per appended vertex: the mesh vertex it is a copy of
};

struct Identity {
  std::string path, id;
  json meta;
  std::string model;  // "ict-facekit" | "facemesh"
  std::vector<float> vertices, uvs;
  std::vector<std::int32_t> triangles, uv_triangles;
  std::vector<Part> parts;  // what is rendered, by material
  mesh::TriMesh rendered;   // the parts' triangles in one mesh (vertices filled per job)
  std::vector<std::uint8_t> part_of;  // per rendered triangle: its part
  std::vector<std::int32_t> normal_triangles;  // the visible triangles on the mesh's own vertices (vertex normals)
  std::vector<std::int32_t> extra_source;      // per rendered vertex after the mesh's: the mesh vertex it copies
  std::vector<std::int32_t> extra_vertex;      // ... the same, no cornea dropped (the layout every identity shares)
  // The face's maps in one texture, so that one bilinear lookup per hit
  // serves both bands of a pair: the VIS albedo (albedo_channels: 1 or 3),
  // specular, roughness, then each NIR band's albedo (nir_channel).
  render::Texture maps;
  int albedo_channels = 3, specular_channel = 3, roughness_channel = 4;
  std::map<int, int> nir_channel;
  std::map<int, double> specular_scale;
  std::array<float, 3> skin_vis{0.5f, 0.35f, 0.3f}, iris_vis{0.1f, 0.06f, 0.04f};
  std::map<int, float> skin_nir;
  float sclera_nir = 0.6f, iris_nir = 0.3f;
  std::vector<morph::SurfacePoint> landmarks;  // 468 face-mesh points on the mesh (ICT); empty: the vertices are them
};

// Whether a scene built for one identity can hold another by updating its
// vertices (and refitting the BVH): the same rendered triangles, texture
// coordinates and parts (ICT FaceKit identities; each brings its own split
// of the eyes as the triangles' parts and collapsed cornea vertices).
bool same_topology(const Identity& a, const Identity& b) {
  if (a.parts.size() != b.parts.size()) return false;
  for (std::size_t k = 0; k < a.parts.size(); ++k)
    if (a.parts[k].name != b.parts[k].name) return false;
  return a.model == b.model && a.vertices.size() == b.vertices.size() && a.extra_vertex == b.extra_vertex &&
         a.rendered.triangles == b.rendered.triangles && a.rendered.uv_triangles == b.rendered.uv_triangles &&
         a.rendered.uvs == b.rendered.uvs;
}

// Pads the unwrapped texels into the unobserved ones (texel_source 0) so that
// bilinear lookups at UV island borders do not mix in zeros (each channel on
// its own, up to kMaxPadChannels). A pass fills each unobserved texel next to
// one valid before it (the mean of those), so only such texels are visited:
// first every one next to the observed, then those next to the last filled.
constexpr int kMaxPadChannels = 32;
void pad_texture(render::Texture& t, const std::vector<std::uint8_t>& valid_in, int passes) {
  std::vector<std::uint8_t> valid = valid_in;
  const int W = t.width, H = t.height, C = t.channels;
  const int nb[4][2] = {{-1, 0}, {1, 0}, {0, -1}, {0, 1}};
  auto for_neighbours = [&](std::size_t i, auto f) {
    const int x = static_cast<int>(i % static_cast<std::size_t>(W)), y = static_cast<int>(i / static_cast<std::size_t>(W));
    for (const auto& d : nb) {
      const int xx = x + d[0], yy = y + d[1];
      if (xx < 0 || yy < 0 || xx >= W || yy >= H) continue;
      f(static_cast<std::size_t>(yy) * W + xx);
    }
  };
  std::vector<std::size_t> todo, filled;  // this pass's candidates (ascending in the first), and what it filled
  for (std::size_t i = 0; i < valid.size(); ++i) {
    if (valid[i]) continue;
    bool next_to_valid = false;
    for_neighbours(i, [&](std::size_t j) { next_to_valid = next_to_valid || valid[j]; });
    if (next_to_valid) todo.push_back(i);
  }
  std::vector<std::uint8_t> queued(valid.size(), 0);
  for (int pass = 0; pass < passes && !todo.empty(); ++pass) {
    filled.clear();
    for (std::size_t i : todo) {
      float sum[kMaxPadChannels] = {};
      int n = 0;
      for_neighbours(i, [&](std::size_t j) {
        if (!valid[j]) return;
        for (int c = 0; c < C && c < kMaxPadChannels; ++c) sum[c] += t.data[j * C + c];
        ++n;
      });
      if (!n) continue;
      for (int c = 0; c < C && c < kMaxPadChannels; ++c) t.data[i * C + c] = sum[c] / n;
      filled.push_back(i);
    }
    for (std::size_t i : filled) valid[i] = 1;
    todo.clear();
    for (std::size_t i : filled)
      for_neighbours(i, [&](std::size_t j) {
        if (!valid[j] && !queued[j]) queued[j] = 1, todo.push_back(j);
      });
    for (std::size_t i : todo) queued[i] = 0;
  }
}

render::Texture texture(std::vector<float> data, int S, int C) {
  render::Texture t;
  t.width = t.height = S;
  t.channels = C;
  t.data = std::move(data);
  return t;
}

// The ICT FaceKit's eyes are two nested balls per side ("sclera_*": the outer
// shell, bulging where the transparent cornea is; "iris_*": the inner ball,
// textured in the original with sclera, iris and pupil). Split by the angle
// from the eye's forward axis (+z in model space, the neutral gaze) around
// the shell's bounding-box centre: the shell's cornea (< 32 degrees) is
// dropped; the inner ball becomes pupil (< 12), iris (< 29: an 11.7 mm iris
// on a 12 mm eyeball) and sclera.
void split_eyes(Identity& d, const std::map<std::string, std::pair<std::int64_t, std::int64_t>>& ranges, EyeLayout& eyes) {
  Part sclera{"sclera", {}, {}}, iris{"iris", {}, {}}, pupil{"pupil", {}, {}};
  const std::int32_t V = static_cast<std::int32_t>(d.vertices.size() / 3);
  auto lay = [&](std::int64_t t, const char* part, bool own, bool dropped) {
    for (int k = 0; k < 3; ++k) {
      const std::int32_t v = d.triangles[static_cast<std::size_t>(3 * t + k)];
      if (own) {
        eyes.triangles.push_back(V + static_cast<std::int32_t>(eyes.source.size()));
        eyes.source.push_back(dropped ? d.triangles[static_cast<std::size_t>(3 * t)] : v);
        eyes.vertex.push_back(v);
      } else {
        eyes.triangles.push_back(v);
      }
      eyes.uv_triangles.push_back(d.uv_triangles[static_cast<std::size_t>(3 * t + k)]);
    }
    eyes.part.push_back(part);
  };
  auto vertex = [&](std::int64_t t, int k) {
    const std::size_t v = static_cast<std::size_t>(d.triangles[static_cast<std::size_t>(3 * t + k)]);
    return Eigen::Vector3d(d.vertices[3 * v], d.vertices[3 * v + 1], d.vertices[3 * v + 2]);
  };
  auto push = [&](Part& p, std::int64_t t) {
    for (int k = 0; k < 3; ++k) {
      p.triangles.push_back(d.triangles[static_cast<std::size_t>(3 * t + k)]);
      p.uv_triangles.push_back(d.uv_triangles[static_cast<std::size_t>(3 * t + k)]);
    }
  };
  for (const char* side : {"left", "right"}) {
    const auto outer = ranges.find(std::string("sclera_") + side), inner = ranges.find(std::string("iris_") + side);
    if (outer == ranges.end()) continue;
    Eigen::Vector3d lo = Eigen::Vector3d::Constant(1e30), hi = Eigen::Vector3d::Constant(-1e30);
    for (std::int64_t t = outer->second.first; t < outer->second.second; ++t)
      for (int k = 0; k < 3; ++k) lo = lo.cwiseMin(vertex(t, k)), hi = hi.cwiseMax(vertex(t, k));
    const Eigen::Vector3d c = (lo + hi) / 2;
    auto angle = [&](std::int64_t t) {
      const Eigen::Vector3d m = (vertex(t, 0) + vertex(t, 1) + vertex(t, 2)) / 3 - c;
      return std::acos(std::clamp(m.z() / std::max(m.norm(), 1e-12), -1.0, 1.0)) * 180 / kPi;
    };
    for (std::int64_t t = outer->second.first; t < outer->second.second; ++t) {
      const bool kept = angle(t) > 32;
      if (kept) push(sclera, t);
      lay(t, "sclera", true, !kept);
    }
    if (inner == ranges.end()) continue;
    for (std::int64_t t = inner->second.first; t < inner->second.second; ++t) {
      const double a = angle(t);
      Part& p = a < 12 ? pupil : a < 29 ? iris : sclera;
      push(p, t);
      lay(t, p.name == "pupil" ? "pupil" : p.name == "iris" ? "iris" : "sclera", false, false);
    }
  }
  for (Part* p : {&sclera, &iris, &pupil})
    if (!p->triangles.empty()) d.parts.push_back(std::move(*p));
}

// The face-mesh landmarks on an ICT FaceKit identity: the built-in
// correspondence, the same for every identity of the model's topology, so
// parsed once (its JSON took as long as the rest of a load's mesh work) and
// then only checked against each identity's vertex and triangle counts, as
// builtin_ict_correspondence checks them.
std::vector<morph::SurfacePoint> ict_landmarks(const Identity& d, const std::string& path) {
  static std::mutex mutex;
  static std::shared_ptr<const morph::Correspondence> parsed;
  const auto V = static_cast<std::int64_t>(d.vertices.size() / 3), T = static_cast<std::int64_t>(d.triangles.size() / 3);
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (parsed && parsed->num_vertices == V && parsed->num_triangles == T) return parsed->points;
  }
  morph::MorphableModel topo;
  topo.source = path;
  topo.neutral.positions = d.vertices;
  topo.neutral.triangles = d.triangles;
  auto c = std::make_shared<const morph::Correspondence>(morph::builtin_ict_correspondence(topo));
  std::lock_guard<std::mutex> lock(mutex);
  parsed = c;
  return c->points;
}

// A map as stored (f32, f16 or bf16): validated there and converted straight
// into its channels of the packed texture, without a float copy of each map.
struct StoredMap {
  DType dtype = DType::f32;
  int channels = 1;
  std::size_t n = 0;                       // values
  std::unique_ptr<unsigned char[]> bytes;  // (not zero-filled first: read_into writes them all)

  // Texture::validate's check (every value finite) on the stored values: a
  // half or bfloat16 is finite exactly when its float is. Eight halves at a
  // time (GCC / Clang vector extensions: SSE2, NEON).
  void validate(const std::string& path) const {
    const unsigned char* p = bytes.get();
    std::uint32_t bad = 0;
    if (dtype == DType::f32) {
      for (std::size_t i = 0; i < n; ++i) {
        std::uint32_t b;
        std::memcpy(&b, p + 4 * i, 4);
        bad |= static_cast<std::uint32_t>((b & 0x7f800000u) == 0x7f800000u);
      }
    } else {
      typedef std::uint16_t u16x8 __attribute__((vector_size(16)));
      const std::uint16_t e = dtype == DType::f16 ? 0x7c00 : 0x7f80;
      std::size_t i = 0;
      u16x8 any = {};
      for (; i + 8 <= n; i += 8) {
        u16x8 h;
        std::memcpy(&h, p + 2 * i, sizeof h);
        any |= (h & e) == e;
      }
      for (int k = 0; k < 8; ++k) bad |= any[k];
      for (; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        bad |= static_cast<std::uint32_t>((h & e) == e);
      }
    }
    if (bad) throw Error(path + ": texture value not finite");
  }
  // Converts texels [i0, i0 + m) (m <= kBlock) to floats in buf.
  static constexpr std::size_t kBlock = 1024;
  void convert(std::size_t i0, std::size_t m, float* buf) const {
    to_float32(dtype, bytes.get() + i0 * static_cast<std::size_t>(channels) * dtype_size(dtype), m * channels, buf);
  }
  // Converts the values into channels first.. of a texture with CT channels and `texels` texels.
  void pack(float* out, std::size_t texels, int CT, int first) const {
    float buf[kBlock * 3];
    for (std::size_t i0 = 0; i0 < texels; i0 += kBlock) {
      const std::size_t m = std::min(kBlock, texels - i0);
      convert(i0, m, buf);
      float* o = out + i0 * CT + first;
      if (channels == 1) {
        for (std::size_t i = 0; i < m; ++i) o[i * CT] = buf[i];
      } else {
        for (std::size_t i = 0; i < m; ++i)
          for (int c = 0; c < channels; ++c) o[i * CT + c] = buf[i * channels + c];
      }
    }
  }
};

// channels: 1 or 3 (the caller checked the shape)
StoredMap read_map(TensorReader& r, const std::string& name, const std::string& path, int channels) {
  const TensorInfo& info = r.info(name);
  if (info.dtype != DType::f32 && info.dtype != DType::f16 && info.dtype != DType::bf16)
    throw FormatError(path + ": tensor " + name + " is " + dtype_name(info.dtype) + ", expected a float type");
  StoredMap m;
  m.dtype = info.dtype;
  m.channels = channels;
  m.n = static_cast<std::size_t>(shape_numel(info.shape));
  const std::uint64_t nb = info.nbytes();
  m.bytes.reset(new unsigned char[std::max<std::uint64_t>(nb, 1)]);
  r.read_into(name, m.bytes.get(), nb);
  return m;
}

std::shared_ptr<Identity> load_identity(const std::string& path) {
  auto in = io::open_input(path);
  TensorReader r(*in);
  auto id = std::make_shared<Identity>();
  Identity& d = *id;
  d.path = path;
  d.meta = r.metadata();
  if (!d.meta.is_object() || d.meta.value("format", "") != "hfr-identity/1")
    throw FormatError(path + ": not an hfr-synth identity file (metadata format is not hfr-identity/1)");
  d.id = d.meta.value("id", path);
  const json model = d.meta.value("model", json::object());
  d.model = model.is_object() ? model.value("name", "") : "";
  d.vertices = read_floats(r, "vertices", path);
  d.triangles = read_i32(r, "triangles", path);
  d.uvs = read_floats(r, "uvs", path);
  d.uv_triangles = read_i32(r, "uv_triangles", path);
  if (d.triangles.empty()) throw FormatError(path + ": the mesh has no triangles");
  {
    mesh::TriMesh m{std::move(d.vertices), std::move(d.triangles), std::move(d.uvs), std::move(d.uv_triangles)};
    m.validate(path);
    d.vertices = std::move(m.positions), d.triangles = std::move(m.triangles);
    d.uvs = std::move(m.uvs), d.uv_triangles = std::move(m.uv_triangles);
  }
  for (float v : d.vertices)
    if (!std::isfinite(v)) throw FormatError(path + ": vertex position not finite");
  for (float v : d.uvs)
    if (!std::isfinite(v)) throw FormatError(path + ": texture coordinate not finite");
  const std::int64_t V = static_cast<std::int64_t>(d.vertices.size() / 3), T = static_cast<std::int64_t>(d.triangles.size() / 3);

  // maps
  const TensorInfo& a = r.info("albedo");
  if (a.shape.size() < 2 || a.shape.size() > 3 || a.shape[0] != a.shape[1] || a.shape[0] < 8 || a.shape[0] > 8192 ||
      (a.shape.size() == 3 && a.shape[2] != 3))
    throw FormatError(path + ": albedo has shape " + shape_string(a.shape) + ", expected [S, S, 3] or [S, S]");
  const int S = static_cast<int>(a.shape[0]), C = a.shape.size() == 3 ? 3 : 1;
  auto square = [&](const std::string& name) {
    const TensorInfo& i = r.info(name);
    if (i.shape != Shape{S, S})
      throw FormatError(path + ": " + name + " has shape " + shape_string(i.shape) + ", expected [" + std::to_string(S) +
                        ", " + std::to_string(S) + "]");
  };
  for (const char* n : {"specular", "roughness", "texel_source", "texel_region"}) square(n);
  const auto source = read_u8(r, "texel_source", path), region = read_u8(r, "texel_region", path);
  std::vector<std::uint8_t> valid(source.size());
  for (std::size_t i = 0; i < source.size(); ++i) valid[i] = source[i] != 0;
  constexpr int kPad = 4;
  // the maps, validated, then interleaved into one texture and padded
  std::vector<StoredMap> maps;
  maps.push_back(read_map(r, "albedo", path, C));
  maps.push_back(read_map(r, "specular", path, 1));
  maps.push_back(read_map(r, "roughness", path, 1));
  for (const auto& m : maps) m.validate(path);
  d.albedo_channels = C;
  d.specular_channel = C;
  d.roughness_channel = C + 1;
  const json bands = d.meta.value("nir_bands", json::array());
  if (!bands.is_array()) throw FormatError(path + ": nir_bands is not a list");
  for (const auto& b : bands) {
    if (!b.is_object() || !b.contains("nm") || !b["nm"].is_number_integer() || !b.contains("tensor") || !b["tensor"].is_string())
      throw FormatError(path + ": a nir_bands entry lacks nm or tensor");
    const int nm = b["nm"].get<int>();
    const std::string name = b["tensor"].get<std::string>();
    square(name);
    StoredMap t = read_map(r, name, path, 1);
    t.validate(path);
    // the NIR skin tone: the median of observed skin texels
    std::vector<float> skin;
    float buf[StoredMap::kBlock];
    for (std::size_t i0 = 0; i0 < region.size(); i0 += StoredMap::kBlock) {
      const std::size_t m = std::min(StoredMap::kBlock, region.size() - i0);
      t.convert(i0, m, buf);
      for (std::size_t i = 0; i < m; ++i)
        if (region[i0 + i] == 0 && source[i0 + i] != 0) skin.push_back(buf[i]);
    }
    if (skin.empty()) {
      skin.resize(t.n);
      to_float32(t.dtype, t.bytes.get(), t.n, skin.data());
    }
    std::nth_element(skin.begin(), skin.begin() + static_cast<std::ptrdiff_t>(skin.size() / 2), skin.end());
    d.skin_nir[nm] = skin[skin.size() / 2];
    d.nir_channel[nm] = C + 2 + static_cast<int>(maps.size()) - 3;
    maps.push_back(std::move(t));
    const double ss = b.value("specular_scale", 1.0);
    d.specular_scale[nm] = std::isfinite(ss) && ss >= 0 && ss <= 4 ? ss : 1.0;
  }
  int CT = 0;
  for (const auto& m : maps) CT += m.channels;
  if (CT > kMaxPadChannels) throw FormatError(path + ": too many NIR bands");
  {
    const std::size_t n = static_cast<std::size_t>(S) * S;
    std::vector<float> packed(n * static_cast<std::size_t>(CT));
    int first = 0;
    for (const auto& m : maps) {
      m.pack(packed.data(), n, CT, first);
      first += m.channels;
    }
    maps.clear();
    d.maps = texture(std::move(packed), S, CT);
    pad_texture(d.maps, valid, kPad);
  }
  if (d.meta.contains("median_skin_rgb") && d.meta["median_skin_rgb"].is_array() && d.meta["median_skin_rgb"].size() == 3)
    for (int c = 0; c < 3; ++c) {
      const auto& v = d.meta["median_skin_rgb"][static_cast<std::size_t>(c)];
      if (v.is_number() && std::isfinite(v.get<double>())) d.skin_vis[static_cast<std::size_t>(c)] = static_cast<float>(std::clamp(v.get<double>(), 0.0, 1.0));
    }
  auto num = [&](const char* key, float fallback) {
    const auto it = d.meta.find(key);
    return it != d.meta.end() && it->is_number() && std::isfinite(it->get<double>()) ? static_cast<float>(std::clamp(it->get<double>(), 0.0, 1.0)) : fallback;
  };
  d.sclera_nir = num("sclera_nir", d.sclera_nir);
  d.iris_nir = num("iris_nir", d.iris_nir);
  // a VIS iris colour per identity (the reconstruction does not see it; NIR does not care: docs/render.md)
  static const std::array<std::array<float, 3>, 6> kIris = {{{0.08f, 0.05f, 0.03f},
                                                             {0.16f, 0.09f, 0.05f},
                                                             {0.22f, 0.17f, 0.08f},
                                                             {0.16f, 0.19f, 0.11f},
                                                             {0.19f, 0.24f, 0.32f},
                                                             {0.22f, 0.24f, 0.26f}}};
  d.iris_vis = kIris[std::hash<std::string>{}(d.id) % kIris.size()];

  // regions -> parts
  std::map<std::string, std::pair<std::int64_t, std::int64_t>> ranges;
  if (model.is_object() && model.contains("regions") && model["regions"].is_array())
    for (const auto& g : model["regions"]) {
      if (!g.is_object() || !g.contains("name") || !g["name"].is_string() || !g.contains("triangles") ||
          !g["triangles"].is_array() || g["triangles"].size() != 2 || !g["triangles"][0].is_number_integer() ||
          !g["triangles"][1].is_number_integer())
        throw FormatError(path + ": a model region lacks a name or a triangle range");
      const std::int64_t t0 = g["triangles"][0].get<std::int64_t>(), t1 = g["triangles"][1].get<std::int64_t>();
      if (t0 < 0 || t1 < t0 || t1 > T)
        throw FormatError(path + ": region " + g["name"].get<std::string>() + " has triangles [" + std::to_string(t0) + ", " +
                          std::to_string(t1) + ") outside the mesh's " + std::to_string(T));
      ranges[g["name"].get<std::string>()] = {t0, t1};
    }
  EyeLayout eyes;
  auto add_part = [&](const std::string& name, std::initializer_list<const char*> regions) {
    Part p;
    p.name = name;
    for (const char* rn : regions) {
      const auto it = ranges.find(rn);
      if (it == ranges.end()) continue;
      for (std::int64_t t = it->second.first; t < it->second.second; ++t)
        for (int k = 0; k < 3; ++k) {
          p.triangles.push_back(d.triangles[static_cast<std::size_t>(3 * t + k)]);
          p.uv_triangles.push_back(d.uv_triangles[static_cast<std::size_t>(3 * t + k)]);
        }
    }
    if (!p.triangles.empty()) d.parts.push_back(std::move(p));
  };
  if (ranges.count("face") && ranges.size() > 1) {
    add_part("face", {"face"});
    add_part("skin", {"head_neck"});
    split_eyes(d, ranges, eyes);
    if (!ranges.count("sclera_left")) add_part("sclera", {"eyeball_left", "eyeball_right"});
    add_part("teeth", {"teeth"});
    add_part("mouth", {"mouth_socket", "gums_tongue"});
    add_part("socket", {"eye_socket_left", "eye_socket_right"});
  } else {  // the face mesh alone: everything is the face
    Part p{"face", d.triangles, d.uv_triangles};
    d.parts.push_back(std::move(p));
  }
  // the rendered mesh: the parts in order, the split eyes (if any) in their shared layout at the end
  auto part_index = [&](const std::string& name) {
    for (std::size_t k = 0; k < d.parts.size(); ++k)
      if (d.parts[k].name == name) return static_cast<int>(k);
    return -1;
  };
  bool layout = !eyes.part.empty();
  for (const char* n : {"sclera", "iris", "pupil"}) layout = layout && part_index(n) >= 0;
  for (std::size_t k = 0; k < d.parts.size(); ++k) {
    const Part& p = d.parts[k];
    d.normal_triangles.insert(d.normal_triangles.end(), p.triangles.begin(), p.triangles.end());
    if (layout && (p.name == "sclera" || p.name == "iris" || p.name == "pupil")) continue;
    d.rendered.triangles.insert(d.rendered.triangles.end(), p.triangles.begin(), p.triangles.end());
    d.rendered.uv_triangles.insert(d.rendered.uv_triangles.end(), p.uv_triangles.begin(), p.uv_triangles.end());
    d.part_of.insert(d.part_of.end(), p.triangles.size() / 3, static_cast<std::uint8_t>(k));
  }
  if (layout) {
    d.rendered.triangles.insert(d.rendered.triangles.end(), eyes.triangles.begin(), eyes.triangles.end());
    d.rendered.uv_triangles.insert(d.rendered.uv_triangles.end(), eyes.uv_triangles.begin(), eyes.uv_triangles.end());
    for (const char* n : eyes.part) d.part_of.push_back(static_cast<std::uint8_t>(part_index(n)));
    d.extra_source = std::move(eyes.source);
    d.extra_vertex = std::move(eyes.vertex);
  }
  d.rendered.uvs = d.uvs;
  if (d.model == "ict-facekit") {
    d.landmarks = ict_landmarks(d, path);
  } else if (V != 468) {
    throw FormatError(path + ": a face-mesh identity must have 468 vertices, not " + std::to_string(V));
  }
  return id;
}

// ---- jobs --------------------------------------------------------------------

struct Light {
  std::string type;
  std::array<double, 3> direction{0, 0, -1}, rgb{1, 1, 1};
  double distance = 100, radius = 1, intensity = 0;
};

struct Job {
  std::string where;  // file:line
  json record;
  std::string id, pair, identity_file, output, spectrum;
  bool nir = false;
  int band = 0;
  double yaw = 0, pitch = 0, roll = 0;
  std::vector<std::pair<std::string, double>> expression;
  int width = 0, height = 0;
  double focal = 0, distance = 0;
  std::vector<Light> lights;
  int channels = 3;
  double gamma = -1;  // < 0: sRGB
  double noise = 0, blur = 0;
  std::uint32_t seed = 0;
  std::string geometry_key;  // jobs with the same key share one posed face
  std::string shape_key;     // ... and with the same shape (identity, expression), one set of vertices
};

double number(const json& j, const char* key, double lo, double hi, const std::string& what) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number())
    throw Error(what + ": missing number \"" + key + "\"");
  const double v = j[key].get<double>();
  if (!std::isfinite(v) || v < lo || v > hi)
    throw Error(what + ": \"" + key + "\" = " + j[key].dump() + " is outside [" + json(lo).dump() + ", " + json(hi).dump() + "]");
  return v;
}

Job parse_job(const json& r, const std::string& where, const std::string& base, const std::string& out_base) {
  Job j;
  j.where = where;
  j.record = r;
  auto str = [&](const char* key) {
    if (!r.contains(key) || !r[key].is_string() || r[key].get<std::string>().empty())
      throw Error(where + ": job without a \"" + key + "\" string");
    return r[key].get<std::string>();
  };
  j.id = str("id");
  j.pair = r.contains("pair") && r["pair"].is_string() ? r["pair"].get<std::string>() : j.id;
  const std::string idf = str("identity_file");
  j.identity_file = inputs::resolve_ref(idf, base);
  j.output = inputs::resolve_ref(str("output"), out_base);
  j.spectrum = str("spectrum");
  const std::string w = where + " (" + j.id + ")";
  if (j.spectrum == "vis") {
    j.nir = false;
  } else if (j.spectrum.rfind("nir", 0) == 0) {
    j.nir = true;
    try {
      j.band = std::stoi(j.spectrum.substr(3));
    } catch (const std::exception&) {
      j.band = 0;
    }
    if (j.spectrum != "nir" + std::to_string(j.band)) throw Error(w + ": unknown spectrum '" + j.spectrum + "' (vis, nirNNN)");
  } else {
    throw Error(w + ": unknown spectrum '" + j.spectrum + "' (vis, nir850, nir940)");
  }
  const json pose = r.value("pose", json());
  j.yaw = number(pose, "yaw", -90, 90, w + ": pose");
  j.pitch = number(pose, "pitch", -90, 90, w + ": pose");
  j.roll = number(pose, "roll", -180, 180, w + ": pose");
  const json ex = r.value("expression", json::object());
  if (!ex.is_object()) throw Error(w + ": expression is not an object of blendshape weights");
  for (auto it = ex.begin(); it != ex.end(); ++it) {
    if (!it->is_number() || !std::isfinite(it->get<double>()) || it->get<double>() < 0 || it->get<double>() > 1)
      throw Error(w + ": expression weight " + it.key() + " must be a number in [0, 1]");
    if (it->get<double>() > 0) j.expression.emplace_back(it.key(), it->get<double>());
  }
  const json cam = r.value("camera", json());
  j.width = static_cast<int>(number(cam, "width", 8, 4096, w + ": camera"));
  j.height = static_cast<int>(number(cam, "height", 8, 4096, w + ": camera"));
  j.focal = number(cam, "focal_px", 1, 1e6, w + ": camera");
  j.distance = number(cam, "distance_cm", 5, 1e5, w + ": camera");
  const json lights = r.value("lights", json());
  if (!lights.is_array() || lights.empty()) throw Error(w + ": no lights");
  for (const auto& l : lights) {
    Light L;
    if (!l.is_object() || !l.contains("type") || !l["type"].is_string()) throw Error(w + ": a light without a type");
    L.type = l["type"].get<std::string>();
    L.intensity = number(l, "intensity", 0, 1e6, w + ": " + L.type + " light");
    if (l.contains("rgb")) {
      if (!l["rgb"].is_array() || l["rgb"].size() != 3) throw Error(w + ": light rgb must have 3 numbers");
      for (int c = 0; c < 3; ++c) {
        const auto& v = l["rgb"][static_cast<std::size_t>(c)];
        if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < 0)
          throw Error(w + ": light rgb must be finite and >= 0");
        L.rgb[static_cast<std::size_t>(c)] = v.get<double>();
      }
    }
    if (L.type == "area") {
      if (!l.contains("direction") || !l["direction"].is_array() || l["direction"].size() != 3)
        throw Error(w + ": area light without a direction");
      double n2 = 0;
      for (int c = 0; c < 3; ++c) {
        const auto& v = l["direction"][static_cast<std::size_t>(c)];
        if (!v.is_number() || !std::isfinite(v.get<double>())) throw Error(w + ": area light direction not finite");
        L.direction[static_cast<std::size_t>(c)] = v.get<double>();
        n2 += v.get<double>() * v.get<double>();
      }
      if (!(n2 > 1e-12)) throw Error(w + ": area light direction is zero");
      for (auto& v : L.direction) v /= std::sqrt(n2);
      L.distance = number(l, "distance_cm", 1, 1e6, w + ": area light");
      L.radius = number(l, "radius_cm", 1e-3, 1e5, w + ": area light");
      if (L.radius >= L.distance) throw Error(w + ": area light radius must be smaller than its distance");
    } else if (L.type == "illuminator") {
      L.radius = number(l, "radius_cm", 1e-3, 1e3, w + ": illuminator");
      if (L.radius >= j.distance) throw Error(w + ": the illuminator would enclose the face");
    } else if (L.type != "ambient") {
      throw Error(w + ": unknown light type '" + L.type + "' (ambient, area, illuminator)");
    }
    j.lights.push_back(L);
  }
  const json sensor = r.value("sensor", json());
  j.channels = static_cast<int>(number(sensor, "channels", 1, 3, w + ": sensor"));
  if (j.channels == 2) throw Error(w + ": sensor channels must be 1 or 3");
  j.noise = number(sensor, "noise", 0, 1, w + ": sensor");
  j.blur = number(sensor, "blur_px", 0, 50, w + ": sensor");
  const json g = sensor.value("gamma", json("srgb"));
  if (g.is_string() && g.get<std::string>() == "srgb") j.gamma = -1;
  else if (g.is_string() && g.get<std::string>() == "linear") j.gamma = 1;
  else if (g.is_number() && std::isfinite(g.get<double>()) && g.get<double>() >= 0.2 && g.get<double>() <= 5) j.gamma = g.get<double>();
  else throw Error(w + ": sensor gamma must be \"srgb\", \"linear\" or a number in [0.2, 5]");
  if (!r.contains("seed") || !r["seed"].is_number_integer() || r["seed"].get<std::int64_t>() < 0)
    throw Error(w + ": job without an integer seed");
  j.seed = static_cast<std::uint32_t>(r["seed"].get<std::uint64_t>() & 0xffffffffu);
  j.geometry_key = j.identity_file + "|" + pose.dump() + "|" + ex.dump() + "|" + cam.dump();
  j.shape_key = j.identity_file + "|" + ex.dump();
  return j;
}

// ---- the scene of one job ------------------------------------------------------

struct Model {  // the ICT FaceKit, for expressions (loaded once, alongside the first identities)
  bool tried = false, warned = false;
  std::string error;  // why it could not be loaded
  std::string dir;
  std::unique_ptr<morph::MorphableModel> ict;
};

struct Posed {
  std::vector<float> model;      // model-space vertices (expression applied)
  std::vector<float> normals;    // model space, over all rendered triangles
  mesh::Pose pose;               // model -> camera
  mesh::Pinhole camera;
  std::array<double, 3> centre{0, 0, 0};  // the face's centre, camera space
  face::Points5 five{};          // frame pixels (pixel centres at +0.5)
  double eye_px = 0;
};

Posed pose_face(const Identity& d, const Job& j, const morph::MorphableModel* ict) {
  std::vector<float> v = d.vertices;
  if (!j.expression.empty()) {
    if (!ict) throw Error(j.where + " (" + j.id + "): the job has an expression; rendering it needs the ICT FaceKit (--ict DIR or $HFR_ICT_FACEKIT)");
    if (ict->neutral.num_vertices() * 3 != static_cast<std::int64_t>(v.size()))
      throw Error(d.path + ": its mesh does not match the ICT FaceKit in " + ict->source);
    for (const auto& [name, w] : j.expression) {
      const auto it = std::find(ict->expression_names.begin(), ict->expression_names.end(), name);
      if (it == ict->expression_names.end()) throw Error(j.where + " (" + j.id + "): unknown blendshape '" + name + "'");
      const Eigen::Index e = it - ict->expression_names.begin();
      // Eigen's packets (the same mul and add per element; -O2 does not vectorise the plain loop)
      Eigen::Map<Eigen::VectorXf>(v.data(), static_cast<Eigen::Index>(v.size())) += static_cast<float>(w) * ict->expression.col(e);
    }
  }
  // the 468 face-mesh landmarks in model space
  std::vector<Eigen::Vector3f> lm;
  if (!d.landmarks.empty()) {
    mesh::TriMesh topo{v, d.triangles, {}, {}};
    for (const auto& p : d.landmarks) lm.push_back(morph::point_on(v, topo, p));
  } else {
    for (std::size_t i = 0; i + 2 < v.size(); i += 3) lm.emplace_back(v[i], v[i + 1], v[i + 2]);
  }
  Eigen::Vector3f c = Eigen::Vector3f::Zero();
  for (const auto& p : lm) c += p;
  c /= static_cast<float>(lm.size());
  mesh::Pose pose = mesh::pose_from_angles(j.yaw, j.pitch, j.roll, {0, 0, 0});
  for (int r = 0; r < 3; ++r)
    pose.t[static_cast<std::size_t>(r)] = (r == 2 ? j.distance : 0) - (pose.R[3 * r] * c.x() + pose.R[3 * r + 1] * c.y() + pose.R[3 * r + 2] * c.z());
  Posed out;
  out.pose = pose;
  out.centre = {0, 0, j.distance};
  out.camera = {j.focal, j.focal, 0.5 * j.width, 0.5 * j.height};
  out.normals = mesh::vertex_normals(v, d.normal_triangles);
  out.model = std::move(v);
  // the rendered mesh's own copies of vertices (the eyes' shared layout)
  const std::size_t V = out.model.size();
  out.model.resize(V + 3 * d.extra_source.size());
  out.normals.resize(out.model.size());
  for (std::size_t e = 0; e < d.extra_source.size(); ++e)
    for (int k = 0; k < 3; ++k) {
      out.model[V + 3 * e + k] = out.model[3 * static_cast<std::size_t>(d.extra_source[e]) + k];
      out.normals[V + 3 * e + k] = out.normals[3 * static_cast<std::size_t>(d.extra_source[e]) + k];
    }
  std::vector<cv::Point3d> img;
  for (const auto& p : lm) {
    double q[3];
    for (int r = 0; r < 3; ++r) q[r] = pose.R[3 * r] * p.x() + pose.R[3 * r + 1] * p.y() + pose.R[3 * r + 2] * p.z() + pose.t[static_cast<std::size_t>(r)];
    if (!(q[2] > 1e-3)) throw Error(j.where + " (" + j.id + "): the face is behind the camera");
    img.emplace_back(j.focal * q[0] / q[2] + out.camera.cx, j.focal * q[1] / q[2] + out.camera.cy, q[2]);
  }
  out.five = face::five_points_from_mesh(img);
  out.eye_px = std::hypot(out.five[0].x - out.five[1].x, out.five[0].y - out.five[1].y);
  return out;
}

render::Material material_for(const Identity& d, const std::string& part, const Job& j) {
  render::Material m;
  const bool nir = j.nir;
  const float skin_nir = d.skin_nir.count(j.band) ? d.skin_nir.at(j.band) : 0.5f;
  const double sscale = nir && d.specular_scale.count(j.band) ? d.specular_scale.at(j.band) : 1.0;
  auto grey = [](float v) { return std::array<float, 3>{v, v, v}; };
  if (part == "face") {
    m.albedo = m.specular = m.roughness = &d.maps;
    m.albedo_channel = nir ? d.nir_channel.at(j.band) : 0;
    m.albedo_channels = nir ? 1 : d.albedo_channels;
    m.specular_channel = d.specular_channel;
    m.roughness_channel = d.roughness_channel;
    m.subsurface = true;
  } else if (part == "skin") {
    m.albedo_value = nir ? grey(skin_nir) : d.skin_vis;
    m.specular_value = 0.028f;  // skin, n ~ 1.4
    m.roughness_value = 0.4f;
    m.subsurface = true;
  } else if (part == "sclera") {
    m.albedo_value = nir ? grey(d.sclera_nir) : std::array<float, 3>{0.62f, 0.58f, 0.55f};
    m.specular_value = 0.02f;  // wet cornea / conjunctiva, n ~ 1.33-1.38
    m.roughness_value = 0.05f;
  } else if (part == "pupil") {  // dark (the bright-pupil retro-reflection of on-axis NIR is not modelled)
    m.albedo_value = nir ? grey(0.02f) : std::array<float, 3>{0.01f, 0.01f, 0.01f};
    m.specular_value = 0.025f;
    m.roughness_value = 0.03f;
  } else if (part == "iris") {
    m.albedo_value = nir ? grey(d.iris_nir) : d.iris_vis;
    m.specular_value = 0.025f;
    m.roughness_value = 0.03f;
  } else if (part == "teeth") {
    m.albedo_value = nir ? grey(0.55f) : std::array<float, 3>{0.55f, 0.5f, 0.42f};
    m.specular_value = 0.04f;
    m.roughness_value = 0.25f;
  } else if (part == "mouth") {
    m.albedo_value = nir ? grey(0.6f * skin_nir) : std::array<float, 3>{0.3f, 0.08f, 0.07f};
    m.specular_value = 0.03f;
    m.roughness_value = 0.2f;
  } else {  // eye sockets: dark
    m.albedo_value = nir ? grey(0.15f) : std::array<float, 3>{0.06f, 0.03f, 0.03f};
    m.specular_value = 0.02f;
    m.roughness_value = 0.3f;
  }
  if (nir) m.specular_scale = sscale;
  return m;
}

std::vector<render::Light> lights_for(const Job& j, const Posed& p) {
  std::vector<render::Light> out;
  const double d0 = j.distance;
  for (const auto& l : j.lights) {
    const std::array<float, 3> rgb = j.nir ? std::array<float, 3>{1, 1, 1}
                                           : std::array<float, 3>{static_cast<float>(l.rgb[0]), static_cast<float>(l.rgb[1]),
                                                                  static_cast<float>(l.rgb[2])};
    if (l.type == "ambient") {
      render::AmbientLight a;
      for (int c = 0; c < 3; ++c) a.rgb[c] = static_cast<float>(l.intensity * rgb[c]);
      out.push_back(a);
    } else {
      render::SphereLight s;
      double dist = d0;
      if (l.type == "area") {
        for (int k = 0; k < 3; ++k) s.centre[k] = p.centre[k] + l.direction[k] * l.distance;
        dist = l.distance;
      }  // the illuminator: at the camera (origin)
      s.radius = l.radius;
      const double I = kPi * l.intensity * dist * dist;
      for (int c = 0; c < 3; ++c) s.rgb[c] = static_cast<float>(I * rgb[c]);
      out.push_back(s);
    }
  }
  return out;
}

// A deterministic generator per job and purpose.
std::mt19937_64 job_rng(const Job& j, std::uint64_t purpose) {
  std::uint64_t z = (static_cast<std::uint64_t>(j.seed) << 8) ^ purpose ^ 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return std::mt19937_64(z ^ (z >> 31));
}

struct Grid {
  int width = 0, height = 0;
  std::array<double, 6> to_image{1, 0, 0, 0, 1, 0};  // grid pixel -> frame pixel (render convention)
  double scale = 1;                                   // frame pixels per grid pixel
};

struct Linear {
  cv::Mat image;  // CV_32FC(C), linear radiance
  cv::Mat alpha;  // CV_32F
  cv::Mat skin;   // CV_32F, subsurface coverage
  std::uint64_t rays = 0;
};

// Traces the jobs of one view (identity, shape, pose, camera: a pair's VIS
// and NIR) together on the grid g, one band per job (render_bands: shared
// camera and AO rays), seeded by the first job; then each band's subsurface
// scattering. The scene holds the identity's mesh as geometry 0.
std::vector<Linear> trace(const render::Scene& scene, const Identity& d, const Posed& p, const Grid& g,
                          const Options& o, const std::vector<const Job*>& js) {
  render::RenderOptions ro;
  ro.width = g.width;
  ro.height = g.height;
  ro.camera = p.camera;
  ro.pixel_to_image = g.to_image;
  ro.scene_to_camera = p.pose;
  ro.spp = o.spp;
  ro.seed = js[0]->seed;
  ro.threads = 1;
  ro.ambient_occlusion = true;
  ro.ao_distance = 20;  // cm: the head occludes itself within its size
  std::vector<render::RenderLayers> layers(js.size());
  std::vector<render::Band> bands(js.size());
  for (std::size_t k = 0; k < js.size(); ++k) {
    const Job& j = *js[k];
    bands[k].lights = lights_for(j, p);
    bands[k].channels = j.nir ? 1 : 3;
    bands[k].layers = &layers[k];
    std::vector<render::Material> mats;
    for (const auto& part : d.parts) mats.push_back(material_for(d, part.name, j));
    bands[k].materials = {std::move(mats)};
  }
  render::RenderStats stats;
  std::vector<std::vector<float>> imgs = render::render_bands(scene, bands, ro, &stats);
  const std::uint64_t rays = stats.primary_rays + stats.shadow_rays;
  std::vector<Linear> out(js.size());
  for (std::size_t k = 0; k < js.size(); ++k) {
    const Job& j = *js[k];
    const int C = bands[k].channels;
    std::vector<float>& img = imgs[k];
    render::RenderLayers& rl = layers[k];
    if (o.subsurface) {
      subsurface::Layers sl;
      sl.width = g.width;
      sl.height = g.height;
      sl.channels = C;
      sl.irradiance = std::move(rl.irradiance);
      sl.albedo = std::move(rl.albedo);
      sl.coverage = rl.coverage;
      sl.depth = std::move(rl.depth);
      const subsurface::Profile prof = j.nir ? subsurface::skin_nir(j.band) : subsurface::skin_visible();
      subsurface::scatter(sl, prof, 10.0 * g.scale / p.camera.fx, img, 1);
    } else {
      for (std::size_t i = 0; i < rl.coverage.size(); ++i)
        for (int c = 0; c < C; ++c) img[i * C + c] += rl.coverage[i] * rl.albedo[i * C + c] * rl.irradiance[i * C + c];
    }
    out[k].image = cv::Mat(g.height, g.width, CV_32FC(C), img.data()).clone();
    out[k].alpha = cv::Mat(g.height, g.width, CV_32F, rl.alpha.data()).clone();
    out[k].skin = cv::Mat(g.height, g.width, CV_32F, rl.coverage.data()).clone();
    // the shared rays, split evenly between the bands
    out[k].rays = (rays + k) / js.size();
  }
  return out;
}

// The exposure that brings the mean of fully covered skin pixels to `target`.
double auto_exposure(const Linear& l, double target) {
  const int C = l.image.channels();
  double sum = 0, n = 0;
  for (int pass = 0; pass < 2 && n == 0; ++pass)
    for (int y = 0; y < l.image.rows; ++y)
      for (int x = 0; x < l.image.cols; ++x) {
        const float cov = pass == 0 ? l.skin.at<float>(y, x) : l.alpha.at<float>(y, x);
        if (cov < 0.99f) continue;
        const float* px = l.image.ptr<float>(y) + static_cast<std::size_t>(x) * C;
        const double lum = C == 3 ? 0.2126 * px[0] + 0.7152 * px[1] + 0.0722 * px[2] : px[0];
        sum += lum;
        n += 1;
      }
  if (n == 0 || !(sum > 0)) return 0;
  return target / (sum / n);
}

// Standard normal numbers from a std::mt19937_64: Marsaglia's polar method on
// uniforms u = x / 2^64 (< 1), drawn in pairs, the second kept for the next
// call. These are the numbers libstdc++'s std::normal_distribution<double>
// gives (the images did not change when this replaced it), written out so
// that they do not depend on the standard library, and inline (libstdc++'s
// generate_canonical goes through long double: a sixth of the sensor's time).
struct Normal {
  bool have = false;
  double kept = 0;
  static double uniform(std::mt19937_64& g) {
    // static_cast<double> of the 64-bit draw without its branch on the top
    // bit (a coin flip: mispredicted half the time): both halves are exact
    // doubles, so their sum is the correctly rounded value, as the cast's
    const std::uint64_t x = g();
    const double u = (static_cast<double>(static_cast<std::uint32_t>(x >> 32)) * 0x1p32 +
                      static_cast<double>(static_cast<std::uint32_t>(x))) * 0x1p-64;
    return u < 1 ? u : std::nextafter(1.0, 0.0);
  }
  double operator()(std::mt19937_64& g) {
    if (have) {
      have = false;
      return kept;
    }
    double x, y, r2;
    do {
      x = 2.0 * uniform(g) - 1.0;
      y = 2.0 * uniform(g) - 1.0;
      r2 = x * x + y * y;
    } while (r2 > 1.0 || r2 == 0.0);
    const double m = std::sqrt(-2 * std::log(r2) / r2);
    kept = x * m;
    have = true;
    return y * m;
  }
};

// (in float: the result is quantised to 8 bits)
float encode(float v, float gamma) {
  v = std::clamp(v, 0.0f, 1.0f);
  if (gamma < 0) return v <= 0.0031308f ? 12.92f * v : 1.055f * std::pow(v, 1 / 2.4f) - 0.055f;
  return std::pow(v, 1 / gamma);
}

// Exposure, backdrop, sensor blur (sigma in grid pixels), tone curve, noise,
// 8-bit quantisation, then the sensor's channel count.
cv::Mat develop(const Linear& l, double exposure, const std::array<float, 3>& backdrop, double blur, double noise,
                const Job& j, std::uint64_t purpose) {
  const int C = l.image.channels();
  cv::Mat lin(l.image.size(), l.image.type());
  for (int y = 0; y < lin.rows; ++y)
    for (int x = 0; x < lin.cols; ++x) {
      const float* s = l.image.ptr<float>(y) + static_cast<std::size_t>(x) * C;
      float* d = lin.ptr<float>(y) + static_cast<std::size_t>(x) * C;
      const float a = l.alpha.at<float>(y, x);
      for (int c = 0; c < C; ++c) d[c] = static_cast<float>(exposure * s[c] + (1 - a) * backdrop[static_cast<std::size_t>(c)]);
    }
  if (blur > 0.05) cv::GaussianBlur(lin, lin, cv::Size(0, 0), blur, blur, cv::BORDER_REPLICATE);
  auto rng = job_rng(j, purpose);
  Normal nd;
  cv::Mat out(lin.size(), CV_8UC(C));
  // each channel's last input and its encoding: the backdrop repeats a value (one powf for it)
  std::uint32_t last_in[3] = {0xffffffffu, 0xffffffffu, 0xffffffffu};  // (a NaN: encode recomputes)
  float last_out[3] = {0, 0, 0};
  for (int y = 0; y < lin.rows; ++y) {
    const float* row_in = lin.ptr<float>(y);
    std::uint8_t* row_out = out.ptr<std::uint8_t>(y);
    for (int x = 0, c = 0; x < lin.cols * C; ++x, c = c + 1 == C ? 0 : c + 1) {
      const float in = row_in[x];
      std::uint32_t bits;
      std::memcpy(&bits, &in, 4);
      if (bits != last_in[c]) last_in[c] = bits, last_out[c] = encode(in, static_cast<float>(j.gamma));
      const double v = last_out[c] + (noise > 0 ? noise * nd(rng) : 0.0);
      // std::lround (half away from zero) without the call: s - trunc(s) is exact for 0 <= s <= 255
      const double s = std::clamp(v, 0.0, 1.0) * 255;
      const int q = static_cast<int>(s);
      row_out[x] = static_cast<std::uint8_t>(q + static_cast<int>(s - q >= 0.5));  // (no branch: a coin flip)
    }
  }
  if (C == j.channels) return out;
  cv::Mat conv;
  if (C == 3 && j.channels == 1) cv::cvtColor(out, conv, cv::COLOR_RGB2GRAY);
  else cv::cvtColor(out, conv, cv::COLOR_GRAY2RGB);
  return conv;
}

struct Rendered {
  json record;
  cv::Mat crop;  // for the contact sheet
  bool failed = false;
};

// The posed face of the jobs of one geometry (identity, pose, expression, camera).
struct SceneCache {
  std::string key;
  std::shared_ptr<const Identity> identity;
  std::shared_ptr<const Posed> posed;
};

// Embree scenes in model space, one per worker at a time: the next pair of
// the same identity only updates the vertices (expression) and refits the
// BVH; the pose moves the camera, not the mesh. Identities of one topology
// (ICT FaceKit heads) share scenes the same way: another identity is another
// set of vertices, a refit rather than a build.
struct ModelScene {
  std::shared_ptr<const Identity> identity;
  std::unique_ptr<render::Scene> scene;
  int geometry = -1;
  std::string shape;  // identity file + expression of the vertices in the scene
  bool shared = false;  // built on the ICT FaceKit's neutral (else on the identity's own neutral)
};

class ScenePool {
 public:
  // shared: scenes may pass between identities of one topology
  std::unique_ptr<ModelScene> acquire(const std::shared_ptr<const Identity>& d, bool shared) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto take = [&](std::size_t k) {
      auto s = std::move(free_[k]);
      free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(k));
      return s;
    };
    for (std::size_t k = 0; k < free_.size(); ++k)
      if (free_[k]->identity == d) return take(k);
    for (std::size_t k = free_.size(); shared && k-- > 0;)  // the most recent of the same topology
      if (free_[k]->shared && free_[k]->identity && same_topology(*free_[k]->identity, *d)) return take(k);
    if (free_.size() >= 4) return take(0);  // reuse the oldest scene object
    return std::make_unique<ModelScene>();
  }
  void release(std::unique_ptr<ModelScene> s) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(std::move(s));
  }

 private:
  std::mutex mutex_;
  std::vector<std::unique_ptr<ModelScene>> free_;
};

// The rendered mesh's vertices for a mesh's vertices (the eyes' copies, no cornea dropped).
std::vector<float> layout_positions(const Identity& d, const std::vector<float>& base) {
  std::vector<float> out = base;
  out.reserve(base.size() + 3 * d.extra_vertex.size());
  for (std::int32_t v : d.extra_vertex)
    for (int k = 0; k < 3; ++k) out.push_back(base[3 * static_cast<std::size_t>(v) + k]);
  return out;
}

// Makes `ms` hold the identity's mesh with the posed (expression) vertices.
// The BVH is always built on one fixed shape, then refitted to the pose's:
// the ICT FaceKit's neutral head for ICT identities when it is loaded (so
// one scene serves every identity), else the identity's own neutral. Its
// structure (which decides between two triangles hit at the same distance,
// on a shared edge) then does not depend on which jobs came before, nor on
// the thread count, and refits do not accumulate: no rebuilds.
void prepare_scene(ModelScene& ms, const std::shared_ptr<const Identity>& d, const Posed& p, const std::string& shape,
                   const render::Device& device, const Job& j, const morph::MorphableModel* ict) {
  if (ms.scene && ms.identity == d && ms.shape == shape) return;
  const bool shared = ict && d->model == "ict-facekit" && ict->neutral.positions.size() == d->vertices.size();
  const bool reuse = ms.scene && (ms.identity == d || (shared && ms.shared && same_topology(*ms.identity, *d)));
  if (!reuse) {
    ms.scene = std::make_unique<render::Scene>(device, render::BuildQuality::refit);
    ms.identity = d;
    ms.shared = shared;
    mesh::TriMesh m = d->rendered;
    m.positions = layout_positions(*d, shared ? ict->neutral.positions : d->vertices);
    std::vector<render::Material> materials;
    for (const auto& part : d->parts) materials.push_back(material_for(*d, part.name, j));
    ms.geometry = ms.scene->add(m, materials, d->part_of, &p.normals);
    ms.scene->commit();
  } else if (ms.identity != d) {  // this identity's parts and materials (each band brings its own materials anyway)
    for (std::size_t k = 0; k < d->parts.size(); ++k)
      ms.scene->set_material(ms.geometry, static_cast<int>(k), material_for(*d, d->parts[k].name, j));
    ms.scene->set_triangle_materials(ms.geometry, d->part_of);
    ms.identity = d;
  }
  ms.scene->update(ms.geometry, p.model, &p.normals);
  ms.scene->commit();
  ms.shape = shape;
}

std::string frame_path(const std::string& output) {
  const fs::path p(output);
  return (p.parent_path() / (p.stem().string() + "_frame" + p.extension().string())).string();
}

// A job up to its tracing: the crop's alignment and the record so far.
struct Pending {
  const Job* j = nullptr;
  std::size_t index = 0;  // its slot in the results
  std::shared_ptr<const Identity> d;
  std::shared_ptr<const Posed> p;
  cv::Matx23d M, Minv;
  double s = 1;
  bool direct = true;
  json rec;
  std::chrono::steady_clock::time_point t0;
};

// The posing, alignment and record of a job. Returns false when the job is
// done already (--skip-existing kept its image): res is its result.
bool prepare_job(const Job& j, const std::shared_ptr<const Identity>& d, const morph::MorphableModel* ict, SceneCache& cache,
                 const Options& o, const face::Template& tmpl, Pending& pj, Rendered& res) {
  pj.t0 = std::chrono::steady_clock::now();
  pj.j = &j;
  pj.d = d;
  const std::string w = j.where + " (" + j.id + ")";
  if (j.nir && !d->nir_channel.count(j.band))
    throw Error(w + ": " + d->path + " has no NIR albedo for " + std::to_string(j.band) + " nm (hfr-synth --bands)");
  const bool reuse = cache.identity && cache.key == j.geometry_key && cache.identity == d;
  if (!reuse) {
    cache = SceneCache{};  // (set only once posed: a job that fails here must not leave its key for the next)
    auto posed = std::make_shared<const Posed>(pose_face(*d, j, ict));
    cache.key = j.geometry_key;
    cache.identity = d;
    cache.posed = std::move(posed);
  }
  pj.p = cache.posed;
  const Posed& p = *pj.p;
  // the alignment: frame (OpenCV pixel centres) -> crop
  std::vector<cv::Point2d> src, dst;
  for (int k = 0; k < 5; ++k) {
    src.emplace_back(p.five[static_cast<std::size_t>(k)].x - 0.5, p.five[static_cast<std::size_t>(k)].y - 0.5);
    dst.push_back(tmpl.points[static_cast<std::size_t>(k)]);
  }
  const cv::Matx23d M = face::similarity_transform(src, dst);
  pj.M = M;
  pj.s = std::sqrt(std::abs(M(0, 0) * M(1, 1) - M(0, 1) * M(1, 0)));
  pj.Minv = face::invert(M);
  pj.direct = pj.s <= 1;  // the frame is at least as fine as the crop

  json rec = j.record;
  rec.erase("output");  // the image is "path"; the other job fields stay (lights, sensor, seed: all parameters)
  rec["identity_file"] = inputs::relative_ref(j.identity_file, o.records, false);
  const std::string crop_file = j.output;
  rec["path"] = inputs::relative_ref(crop_file, o.records, false);
  json lm = json::array(), flm = json::array();
  for (int k = 0; k < 5; ++k) {
    const cv::Point2d q = face::apply(M, src[static_cast<std::size_t>(k)]);
    lm.push_back({round_decimals(q.x + 0.5, 2), round_decimals(q.y + 0.5, 2)});
    flm.push_back({round_decimals(p.five[static_cast<std::size_t>(k)].x, 2), round_decimals(p.five[static_cast<std::size_t>(k)].y, 2)});
  }
  rec["landmarks"] = lm;
  rec["frame_landmarks"] = flm;
  rec["eye_px"] = round_decimals(p.eye_px, 2);
  rec["crop"] = {{"template", tmpl.name}, {"size", o.crop_size}, {"scale", round_decimals(pj.s, 4)}};
  if (o.frames) rec["frame"] = inputs::relative_ref(frame_path(crop_file), o.records, false);

  const bool exists = fs::exists(crop_file) && (!o.frames || fs::exists(frame_path(crop_file)));
  if (o.skip_existing && exists) {
    rec["skipped"] = true;
    res.record = std::move(rec);
    if (!o.contact_sheet.empty()) res.crop = read_png(crop_file, ColorMode::rgb);
    return false;
  }
  pj.rec = std::move(rec);
  return true;
}

// The traced grid of a crop: the crop's own pixels over their footprints
// (direct), or the frame's pixels under the crop with `margin` more around
// (for the sensor blur); grid_to_crop warps the latter onto the crop.
Grid crop_grid(const Pending& pj, int margin, const Options& o, cv::Matx23d& grid_to_crop) {
  Grid g;
  const cv::Matx23d& M = pj.M;
  const cv::Matx23d& Minv = pj.Minv;
  grid_to_crop = M;
  if (pj.direct) {
    g.width = g.height = o.crop_size;
    // crop pixel (render convention) -> crop (OpenCV) -> frame (OpenCV) -> frame (render)
    g.to_image = {Minv(0, 0), Minv(0, 1), Minv(0, 2) - 0.5 * (Minv(0, 0) + Minv(0, 1)) + 0.5,
                  Minv(1, 0), Minv(1, 1), Minv(1, 2) - 0.5 * (Minv(1, 0) + Minv(1, 1)) + 0.5};
    g.scale = 1 / pj.s;
  } else {
    double x0 = 1e30, y0 = 1e30, x1 = -1e30, y1 = -1e30;
    for (const auto& c : {cv::Point2d(-0.5, -0.5), cv::Point2d(o.crop_size - 0.5, -0.5), cv::Point2d(-0.5, o.crop_size - 0.5),
                          cv::Point2d(o.crop_size - 0.5, o.crop_size - 0.5)}) {
      const cv::Point2d q = face::apply(Minv, c);
      x0 = std::min(x0, q.x), y0 = std::min(y0, q.y), x1 = std::max(x1, q.x), y1 = std::max(y1, q.y);
    }
    const int ox = static_cast<int>(std::floor(x0)) - margin, oy = static_cast<int>(std::floor(y0)) - margin;
    g.width = static_cast<int>(std::ceil(x1)) + margin - ox + 1;
    g.height = static_cast<int>(std::ceil(y1)) + margin - oy + 1;
    g.to_image = {1, 0, double(ox), 0, 1, double(oy)};
    g.scale = 1;
    grid_to_crop = cv::Matx23d(M(0, 0), M(0, 1), M(0, 2) + M(0, 0) * ox + M(0, 1) * oy,  //
                               M(1, 0), M(1, 1), M(1, 2) + M(1, 0) * ox + M(1, 1) * oy);
  }
  return g;
}

// The sensor, the image files and the record of a traced job.
Rendered finish_job(Pending& pj, const Linear& lin, const Grid& g, const cv::Matx23d& grid_to_crop,
                    const render::Scene& scene, const Options& o) {
  const Job& j = *pj.j;
  const std::string w = j.where + " (" + j.id + ")";
  Rendered res;
  const double base = auto_exposure(lin, o.exposure);
  if (!(base > 0)) throw Error(w + ": the face is not in view (nothing lit was hit)");
  auto rng = job_rng(j, 1);
  std::uniform_real_distribution<double> u(-1, 1);
  const double exposure = base * std::pow(2.0, o.exposure_jitter * u(rng));
  // a plain backdrop, in exposed units
  std::array<float, 3> backdrop;
  {
    const double level = 0.03 + 0.4 * std::pow((u(rng) + 1) / 2, 2.0);
    if (j.nir) {
      backdrop = {static_cast<float>(level), static_cast<float>(level), static_cast<float>(level)};
    } else {
      for (auto& b : backdrop) b = static_cast<float>(level * (0.75 + 0.25 * u(rng)));
    }
  }
  const double bscale = pj.direct ? pj.s : 1.0;  // sensor blur and noise, per grid pixel
  cv::Mat grid_img = develop(lin, exposure, backdrop, j.blur * bscale, j.noise * bscale, j, 2);
  cv::Mat crop;
  if (pj.direct) {
    crop = grid_img;
  } else {
    cv::warpAffine(grid_img, crop, cv::Mat(grid_to_crop), cv::Size(o.crop_size, o.crop_size), cv::INTER_LINEAR,
                   cv::BORDER_REPLICATE);
  }
  std::uint64_t rays = lin.rays;
  const std::string& crop_file = j.output;
  fs::create_directories(fs::path(crop_file).parent_path());
  write_png(crop_file, crop);
  if (o.frames) {
    Grid fg;
    fg.width = j.width;
    fg.height = j.height;
    Linear fl = std::move(trace(scene, *pj.d, *pj.p, fg, o, {&j})[0]);
    write_png(frame_path(crop_file), develop(fl, exposure, backdrop, j.blur, j.noise, j, 3));
    rays += fl.rays;
  }
  json& rec = pj.rec;
  rec["exposure"] = round_decimals(exposure, 4);
  rec["render"] = {{"spp", o.spp},
                   {"grid", {g.width, g.height}},
                   {"rays", rays},
                   {"ms", round_decimals(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - pj.t0).count(), 1)}};
  res.record = std::move(rec);
  if (!o.contact_sheet.empty()) res.crop = crop;
  return res;
}

Rendered error_result(const Job& j, const std::string& message) {
  Rendered res;
  res.failed = true;
  res.record = Record::object();
  if (!j.id.empty()) res.record["id"] = j.id;
  if (!j.pair.empty()) res.record["pair"] = j.pair;
  res.record["error"] = message;
  return res;
}

// Renders jobs of one view (the same identity and geometry key: a pair's
// VIS and NIR) with one scene and one trace, a band per job. The traced
// grid is the same for all: the widest blur margin of the jobs.
void render_group(std::vector<Pending>& group, ScenePool& pool, const render::Device& device, const Options& o,
                  const morph::MorphableModel* ict, std::vector<Rendered>& results) {
  if (group.empty()) return;
  try {
    const Pending& f = group[0];
    int margin = 0;
    std::vector<const Job*> js;
    for (const Pending& pj : group) {
      margin = std::max(margin, 2 + static_cast<int>(std::ceil(3 * pj.j->blur)));
      js.push_back(pj.j);
    }
    cv::Matx23d grid_to_crop;
    const Grid g = crop_grid(f, margin, o, grid_to_crop);
    // the scene: pooled per identity, updated to this shape; the materials go with each band
    struct Lease {
      ScenePool& pool;
      std::unique_ptr<ModelScene> ms;
      ~Lease() { pool.release(std::move(ms)); }
    } lease{pool, pool.acquire(f.d, ict != nullptr)};
    prepare_scene(*lease.ms, f.d, *f.p, f.j->shape_key, device, *f.j, ict);
    if (lease.ms->geometry != 0) throw Error("render: unexpected scene layout");
    const render::Scene& scene = *lease.ms->scene;
    std::vector<Linear> lins = trace(scene, *f.d, *f.p, g, o, js);
    for (std::size_t k = 0; k < group.size(); ++k) {
      try {
        results[group[k].index] = finish_job(group[k], lins[k], g, grid_to_crop, scene, o);
      } catch (const std::exception& e) {
        results[group[k].index] = error_result(*group[k].j, brief(e));
      }
    }
  } catch (const std::exception& e) {
    for (const Pending& pj : group) results[pj.index] = error_result(*pj.j, brief(e));
  }
  group.clear();
}

void write_contact_sheet(const std::string& path, const std::vector<std::pair<std::string, std::vector<cv::Mat>>>& pairs,
                         int size) {
  if (pairs.empty()) return;
  std::size_t per = 1;
  for (const auto& p : pairs) per = std::max(per, p.second.size());
  const int gap = 4, cell_w = static_cast<int>(per) * size + gap, cell_h = size + gap;
  const int cols = std::max(1, static_cast<int>(std::lround(std::sqrt(double(pairs.size()) * cell_h / cell_w))));
  const int rows = static_cast<int>((pairs.size() + static_cast<std::size_t>(cols) - 1) / static_cast<std::size_t>(cols));
  cv::Mat sheet(rows * cell_h + gap, cols * cell_w + gap, CV_8UC3, cv::Scalar(255, 255, 255));
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    const int r = static_cast<int>(i) / cols, c = static_cast<int>(i) % cols;
    for (std::size_t k = 0; k < pairs[i].second.size(); ++k) {
      cv::Mat im = pairs[i].second[k], rgb;
      if (im.empty()) continue;
      if (im.channels() == 1) cv::cvtColor(im, rgb, cv::COLOR_GRAY2RGB);
      else rgb = im;
      if (rgb.cols != size || rgb.rows != size) cv::resize(rgb, rgb, cv::Size(size, size), 0, 0, cv::INTER_AREA);
      rgb.copyTo(sheet(cv::Rect(gap + c * cell_w + static_cast<int>(k) * size, gap + r * cell_h, size, size)));
    }
  }
  fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) fs::create_directories(parent);
  write_png(path, sheet);
}

}  // namespace

int run(const Options& o) {
  if (o.inputs.empty()) throw UsageError("no inputs (render jobs from hfr-synth, or -)");
  if (o.spp < 1 || o.spp > 4096) throw UsageError("--spp must be within 1..4096");
  if (o.crop_size < 16 || o.crop_size > 1024) throw UsageError("--size must be within 16..1024");
  if (!(o.exposure > 0 && o.exposure <= 1)) throw UsageError("--exposure must be in (0, 1]");
  if (!(o.exposure_jitter >= 0 && o.exposure_jitter <= 4)) throw UsageError("--exposure-jitter must be within 0..4 stops");
  const face::Template tmpl = face::scale_template(face::face_template(o.crop_template), o.crop_size);

  auto records_out = io::open_output(o.records);
  RecordWriter rw(*records_out);
  render::Device device(1);
  ScenePool pool;
  Model model;
  model.dir = morph::find_ict_facekit(o.ict_dir);
  std::map<std::string, std::shared_ptr<const Identity>> identities;  // a small cache, by path
  std::list<std::string> lru;
  std::map<std::string, std::string> identity_errors;
  std::vector<std::pair<std::string, std::vector<cv::Mat>>> sheet;
  std::uint64_t done = 0, failed = 0, skipped = 0, rays = 0;
  Progress progress("render", 0, "images");
  const auto t_start = std::chrono::steady_clock::now();
  const int threads = std::max(1, o.threads);
  const std::size_t chunk = static_cast<std::size_t>(threads) * 64;

  for (const auto& in_path : o.inputs) {
    auto in = io::open_input(in_path);
    const std::string base = inputs::records_folder(in_path);
    const std::string out_base = o.output_dir.empty() ? base : o.output_dir;
    RecordReader rr(*in);
    bool eof = false;
    while (!eof) {
      // a chunk of jobs
      std::vector<Job> jobs;
      std::vector<std::string> parse_errors;  // per job slot: non-empty = failed to parse
      while (jobs.size() < chunk) {
        Record r;
        std::string err;
        if (!rr.next(r, &err)) {
          eof = true;
          break;
        }
        const std::string where = rr.where();
        Job j;
        std::string e;
        if (r.is_null()) {
          e = err;
        } else {
          try {
            j = parse_job(r, where, base, out_base);
          } catch (const std::exception& ex) {
            e = brief(ex);
          }
        }
        if (!e.empty()) {
          j.where = where;
          j.record = r.is_object() ? r : Record::object();
          if (j.id.empty() && r.is_object() && r.contains("id") && r["id"].is_string()) j.id = r["id"].get<std::string>();
        }
        jobs.push_back(std::move(j));
        parse_errors.push_back(e);
      }
      if (jobs.empty()) break;
      progress.set_total(done + jobs.size());
      // identities (the new ones of this chunk loaded in parallel), and the ICT FaceKit once a job needs it
      std::vector<std::string> to_load;
      for (std::size_t i = 0; i < jobs.size(); ++i) {
        const std::string& f = jobs[i].identity_file;
        if (parse_errors[i].empty() && !identities.count(f) && !identity_errors.count(f) &&
            std::find(to_load.begin(), to_load.end(), f) == to_load.end())
          to_load.push_back(f);
      }
      std::vector<std::shared_ptr<const Identity>> loaded(to_load.size());
      std::vector<std::string> load_errors(to_load.size());
      // the ICT FaceKit (the longest load) alongside the identities, as soon as a job has an expression
      bool load_ict = false;
      if (!model.tried && !model.dir.empty())
        for (std::size_t i = 0; i < jobs.size() && !load_ict; ++i) load_ict = parse_errors[i].empty() && !jobs[i].expression.empty();
      const std::size_t first = load_ict ? 1 : 0;
      parallel_for(to_load.size() + first, threads, [&](std::size_t k) {
        if (k < first) {
          model.tried = true;
          try {
            model.ict = std::make_unique<morph::MorphableModel>(morph::load_ict_facekit(model.dir, {false, false}));
          } catch (const std::exception& e) {
            model.error = brief(e);
          }
          return;
        }
        k -= first;
        try {
          loaded[k] = load_identity(to_load[k]);
        } catch (const std::exception& e) {
          load_errors[k] = brief(e);
        }
      });
      for (std::size_t k = 0; k < to_load.size(); ++k) {
        if (!load_errors[k].empty()) {
          identity_errors[to_load[k]] = load_errors[k];
          continue;
        }
        identities[to_load[k]] = loaded[k];
        lru.push_back(to_load[k]);
      }
      std::vector<std::shared_ptr<const Identity>> ids(jobs.size());
      for (std::size_t i = 0; i < jobs.size(); ++i) {
        if (!parse_errors[i].empty()) continue;
        const std::string& f = jobs[i].identity_file;
        if (identity_errors.count(f)) {
          parse_errors[i] = identity_errors[f];
          continue;
        }
        ids[i] = identities.at(f);
        if (!jobs[i].expression.empty() && ids[i]->model == "ict-facekit" && !model.warned) {
          model.warned = true;
          if (!model.error.empty()) log::warn("cannot load the ICT FaceKit for expressions: " + model.error);
        }
      }
      // the cache keeps the identities of this chunk and at most 16 older ones
      while (lru.size() > 16 + to_load.size()) {
        identities.erase(lru.front());
        lru.pop_front();
      }
      // units: runs of consecutive jobs of one pair, rendered by one worker with one scene
      std::vector<std::pair<std::size_t, std::size_t>> units;
      for (std::size_t i = 0; i < jobs.size();) {
        std::size_t k = i + 1;
        while (k < jobs.size() && !jobs[k].pair.empty() && jobs[k].pair == jobs[i].pair) ++k;
        units.emplace_back(i, k);
        i = k;
      }
      std::vector<Rendered> results(jobs.size());
      parallel_for(units.size(), threads, [&](std::size_t u) {
        SceneCache cache;
        std::vector<Pending> group;  // the unit's jobs of one view, traced together
        for (std::size_t i = units[u].first; i < units[u].second; ++i) {
          try {
            if (!parse_errors[i].empty()) throw Error(parse_errors[i]);
            Pending pj;
            pj.index = i;
            if (!prepare_job(jobs[i], ids[i], model.ict.get(), cache, o, tmpl, pj, results[i])) continue;
            if (!group.empty() && (group[0].d != pj.d || group[0].j->geometry_key != pj.j->geometry_key))
              render_group(group, pool, device, o, model.ict.get(), results);
            group.push_back(std::move(pj));
          } catch (const std::exception& e) {
            results[i] = error_result(jobs[i], brief(e));
          }
        }
        render_group(group, pool, device, o, model.ict.get(), results);
        for (std::size_t i = units[u].first; i < units[u].second; ++i) progress.add();
      });
      for (std::size_t i = 0; i < jobs.size(); ++i) {
        Rendered& r = results[i];
        if (r.failed) {
          ++failed;
          log::warn(r.record["error"].get<std::string>());
        } else {
          ++done;
          if (r.record.value("skipped", false)) ++skipped;
          if (r.record.contains("render")) rays += r.record["render"].value("rays", std::uint64_t{0});
          if (!o.contact_sheet.empty() && !r.crop.empty()) {
            if (!sheet.empty() && sheet.back().first == jobs[i].pair) sheet.back().second.push_back(r.crop);
            else if (static_cast<int>(sheet.size()) < o.sheet_pairs) sheet.push_back({jobs[i].pair, {r.crop}});
          }
        }
        rw.write(r.record);
      }
      rw.flush();
    }
  }
  progress.finish();
  if (!o.contact_sheet.empty()) write_contact_sheet(o.contact_sheet, sheet, o.crop_size);
  records_out->commit();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  char msg[256];
  std::snprintf(msg, sizeof msg, "%llu images (%llu existing kept), %llu failed, %.1f s, %.1f images/s, %.2f Mrays/s",
                static_cast<unsigned long long>(done), static_cast<unsigned long long>(skipped),
                static_cast<unsigned long long>(failed), secs, (done - skipped) / std::max(secs, 1e-9),
                rays / std::max(secs, 1e-9) / 1e6);
  log::notice(msg);
  return failed ? kExitPartial : kExitOk;
}

}  // namespace hfr::render_jobs
