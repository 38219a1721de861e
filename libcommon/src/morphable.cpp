// Linear morphable face models: the ICT FaceKit loader (repacked float16
// layout and the source OBJ layout), the canonical face as a model without
// modes, and evaluation.
//
// The OBJ reader is a hand-written scanner over the file buffer (the ICT
// neutral is 2.5 MB and loads in a few ms): 'v', 'vt' and 'f' records are
// read, everything else ('vn', 'usemtl', 'mtllib', 'o', 'g', 's', comments) is
// skipped. Polygons are fan-triangulated (a,b,c), (a,c,d), ... so that a quad
// splits a-b-c, a-c-d; negative (relative) indices are resolved. Errors name
// the file and line.
#include "hfr/morphable.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>

#include <nlohmann/json.hpp>

#include "hfr/error.hpp"
#include "hfr/hash.hpp"
#include "hfr/io.hpp"
#include "hfr/npy.hpp"

namespace hfr::morph {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::uint64_t kMaxObjBytes = 1ull << 30;
constexpr std::uint64_t kMaxNpyBytes = 4ull << 30;
constexpr std::uint64_t kMaxJsonBytes = 64ull << 20;

// ---------------------------------------------------------------- float16

float half_bits_to_float(std::uint16_t h) {
  const std::uint32_t sign = h >> 15, exp = (h >> 10) & 31u, mant = h & 1023u;
  float v;
  if (exp == 0) v = std::ldexp(static_cast<float>(mant), -24);  // zero and subnormals
  else if (exp == 31) v = mant ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  else v = std::ldexp(static_cast<float>(mant | 1024u), static_cast<int>(exp) - 25);
  return sign ? -v : v;
}

const float* half_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (std::uint32_t i = 0; i < 65536; ++i) t[i] = half_bits_to_float(static_cast<std::uint16_t>(i));
    return t;
  }();
  return table.data();
}

// ---------------------------------------------------------------- OBJ

struct ObjData {
  std::vector<double> v;             // 3 per position
  std::vector<double> vt;            // 2 per texture coordinate
  std::vector<std::int32_t> fv;      // polygon corners: position index (0-based)
  std::vector<std::int32_t> fvt;     // polygon corners: uv index, -1 if none
  std::vector<std::int64_t> fstart;  // polygon p has corners [fstart[p], fstart[p+1])
  std::vector<std::int64_t> fline;   // line of polygon p
  std::int64_t num_polygons() const { return static_cast<std::int64_t>(fline.size()); }
};

class ObjParser {
 public:
  ObjParser(const char* data, std::size_t n, const std::string& name) : p_(data), end_(data + n), name_(name) {}

  // positions_only: 'v' records only (the shape targets of the source layout).
  ObjData parse(bool positions_only) {
    ObjData o;
    o.fstart.push_back(0);
    while (p_ < end_) {
      ++line_;
      const char* eol = static_cast<const char*>(std::memchr(p_, '\n', static_cast<std::size_t>(end_ - p_)));
      if (!eol) eol = end_;
      le_ = eol;
      skip_space();
      if (p_ < le_) {
        if (p_[0] == 'v' && p_ + 1 < le_ && is_space(p_[1])) {
          p_ += 2;
          for (int k = 0; k < 3; ++k) o.v.push_back(number("vertex coordinate"));
        } else if (!positions_only) {
          if (p_[0] == 'v' && p_ + 2 < le_ && p_[1] == 't' && is_space(p_[2])) {
            p_ += 3;
            for (int k = 0; k < 2; ++k) o.vt.push_back(number("texture coordinate"));
          } else if (p_[0] == 'f' && p_ + 1 < le_ && is_space(p_[1])) {
            p_ += 2;
            face(o);
          }
        }
      }
      p_ = eol < end_ ? eol + 1 : end_;
    }
    return o;
  }

 private:
  static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }
  void skip_space() {
    while (p_ < le_ && is_space(*p_)) ++p_;
  }
  [[noreturn]] void fail(const std::string& why) const {
    throw FormatError(name_ + ":" + std::to_string(line_) + ": " + why);
  }
  double number(const char* what) {
    skip_space();
    if (p_ < le_ && *p_ == '+') ++p_;
    double x = 0;
    auto r = std::from_chars(p_, le_, x);
    if (r.ec != std::errc() || (r.ptr < le_ && !is_space(*r.ptr))) fail(std::string("malformed ") + what);
    if (!std::isfinite(x)) fail(std::string("non-finite ") + what);
    p_ = r.ptr;
    return x;
  }
  // An OBJ index (1-based, or negative = relative to the records so far) -> 0-based.
  std::int32_t index(std::int64_t count, const char* what) {
    long long i = 0;
    auto r = std::from_chars(p_, le_, i);
    if (r.ec != std::errc()) fail(std::string("malformed ") + what + " index");
    p_ = r.ptr;
    if (i < 0) i += count;
    else if (i > 0) i -= 1;
    else fail(std::string(what) + " index 0 (OBJ indices start at 1)");
    if (i < 0 || i > std::numeric_limits<std::int32_t>::max()) fail(std::string(what) + " index out of range");
    return static_cast<std::int32_t>(i);
  }
  void face(ObjData& o) {
    const std::int64_t nv = static_cast<std::int64_t>(o.v.size() / 3), nvt = static_cast<std::int64_t>(o.vt.size() / 2);
    int corners = 0;
    for (;;) {
      skip_space();
      if (p_ >= le_) break;
      o.fv.push_back(index(nv, "vertex"));
      std::int32_t t = -1;
      if (p_ < le_ && *p_ == '/') {
        ++p_;
        if (p_ < le_ && *p_ != '/') t = index(nvt, "texture coordinate");
        if (p_ < le_ && *p_ == '/') {  // normal index: skipped
          ++p_;
          while (p_ < le_ && !is_space(*p_)) ++p_;
        }
      }
      if (p_ < le_ && !is_space(*p_)) fail("malformed face corner");
      o.fvt.push_back(t);
      ++corners;
    }
    if (corners < 3) fail("face with " + std::to_string(corners) + " corners");
    o.fstart.push_back(static_cast<std::int64_t>(o.fv.size()));
    o.fline.push_back(line_);
  }

  const char* p_;
  const char* end_;
  const char* le_ = nullptr;
  std::string name_;
  std::int64_t line_ = 0;
};

ObjData parse_obj(const std::vector<unsigned char>& bytes, const std::string& name, bool positions_only) {
  return ObjParser(reinterpret_cast<const char*>(bytes.data()), bytes.size(), name).parse(positions_only);
}

// The neutral mesh: triangulated, indices validated against the counts.
void build_neutral(const ObjData& o, const std::string& name, MorphableModel& m,
                   std::vector<std::int64_t>& first_triangle) {
  const std::int64_t nv = static_cast<std::int64_t>(o.v.size() / 3), nvt = static_cast<std::int64_t>(o.vt.size() / 2);
  if (nv == 0) throw FormatError(name + ": no vertices");
  if (o.num_polygons() == 0) throw FormatError(name + ": no faces");
  m.neutral.positions.assign(o.v.begin(), o.v.end());
  m.neutral.uvs.assign(o.vt.begin(), o.vt.end());
  const bool with_uv = nvt > 0;
  first_triangle.assign(static_cast<std::size_t>(o.num_polygons()) + 1, 0);
  for (std::int64_t p = 0; p < o.num_polygons(); ++p) {
    const std::int64_t a = o.fstart[static_cast<std::size_t>(p)], b = o.fstart[static_cast<std::size_t>(p) + 1];
    const std::string where = name + ":" + std::to_string(o.fline[static_cast<std::size_t>(p)]) + ": ";
    for (std::int64_t c = a; c < b; ++c) {
      const std::int32_t vi = o.fv[static_cast<std::size_t>(c)], ti = o.fvt[static_cast<std::size_t>(c)];
      if (vi >= nv) throw FormatError(where + "vertex index " + std::to_string(vi + 1) + " out of range (" + std::to_string(nv) + " vertices)");
      if (with_uv && ti < 0) throw FormatError(where + "face without texture coordinates in a mesh that has them");
      if (ti >= nvt) throw FormatError(where + "texture coordinate index " + std::to_string(ti + 1) + " out of range (" + std::to_string(nvt) + " texture coordinates)");
    }
    for (std::int64_t c = a + 1; c + 1 < b; ++c) {
      for (std::int64_t k : {a, c, c + 1}) {
        m.neutral.triangles.push_back(o.fv[static_cast<std::size_t>(k)]);
        if (with_uv) m.neutral.uv_triangles.push_back(o.fvt[static_cast<std::size_t>(k)]);
      }
      m.triangle_polygon.push_back(static_cast<std::int32_t>(p));
    }
    first_triangle[static_cast<std::size_t>(p) + 1] = m.neutral.num_triangles();
  }
}

// ---------------------------------------------------------------- files

bool is_file(const std::string& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

json parse_json_file(const std::string& path, Sha256* sha) {
  auto bytes = io::read_file(path, kMaxJsonBytes);
  if (sha) sha->update(bytes.data(), bytes.size());
  try {
    return json::parse(bytes.begin(), bytes.end());
  } catch (const json::exception& e) {
    throw FormatError(path + ": " + e.what());
  }
}

// A [N, V, 3] float16/float32 .npy as a 3V x N column-major matrix.
Eigen::MatrixXf read_modes_npy(const std::string& path, std::int64_t num_vertices, Sha256* sha) {
  auto bytes = io::read_file(path, kMaxNpyBytes);
  if (sha) sha->update(bytes.data(), bytes.size());
  auto in = io::memory_input(bytes.data(), bytes.size(), path);
  Tensor t = read_npy(*in, "modes");
  bytes.clear();
  bytes.shrink_to_fit();
  const Shape& s = t.info.shape;
  auto shape_str = [&] {
    std::string r = "[";
    for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
  };
  if (s.size() != 3 || s[1] != num_vertices || s[2] != 3)
    throw FormatError(path + ": shape " + shape_str() + ", expected [N, " + std::to_string(num_vertices) + ", 3]");
  if (t.info.dtype != DType::f16 && t.info.dtype != DType::f32)
    throw FormatError(path + ": dtype must be float16 or float32");
  const std::int64_t rows = 3 * num_vertices, cols = s[0];
  Eigen::MatrixXf M(rows, cols);
  float* dst = M.data();
  const std::size_t n = static_cast<std::size_t>(rows * cols);
  if (t.info.dtype == DType::f16) {
    const float* table = half_table();
    const std::uint16_t* src = t.as<std::uint16_t>();
    for (std::size_t i = 0; i < n; ++i) dst[i] = table[src[i]];
  } else {
    std::memcpy(dst, t.ptr(), n * sizeof(float));
  }
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(dst[i])) {
      const std::size_t row = i / static_cast<std::size_t>(rows), rem = i % static_cast<std::size_t>(rows);
      throw FormatError(path + ": non-finite value at [" + std::to_string(row) + ", " + std::to_string(rem / 3) + ", " +
                        std::to_string(rem % 3) + "]");
    }
  return M;
}

std::int64_t json_int(const json& j, const std::string& ctx) {
  if (!j.is_number_integer()) throw FormatError(ctx + ": expected an integer");
  return j.get<std::int64_t>();
}

// regions.json: "regions", "face_areas", "eyeball_parts" (names unique; the
// first wins) with polygon ranges turned into triangle ranges; landmarks.
void apply_regions_json(const json& j, const std::string& path, MorphableModel& m,
                        const std::vector<std::int64_t>& first_triangle) {
  const std::int64_t nv = m.neutral.num_vertices(), np = static_cast<std::int64_t>(first_triangle.size()) - 1;
  if (!j.is_object() || !j.contains("regions") || !j["regions"].is_array())
    throw FormatError(path + ": no \"regions\" list");
  for (const char* list : {"regions", "face_areas", "eyeball_parts"}) {
    if (!j.contains(list)) continue;
    if (!j[list].is_array()) throw FormatError(path + ": \"" + list + "\" is not a list");
    std::size_t i = 0;
    for (const auto& r : j[list]) {
      const std::string ctx = path + ": " + list + "[" + std::to_string(i++) + "]";
      if (!r.is_object() || !r.contains("name") || !r["name"].is_string() || !r.contains("vertices") ||
          !r.contains("faces") || !r["vertices"].is_array() || r["vertices"].size() != 2 || !r["faces"].is_array() ||
          r["faces"].size() != 2)
        throw FormatError(ctx + ": expected {\"name\", \"vertices\": [v0, v1], \"faces\": [f0, f1]}");
      Range g;
      g.name = r["name"].get<std::string>();
      g.v0 = json_int(r["vertices"][0], ctx);
      g.v1 = json_int(r["vertices"][1], ctx);
      const std::int64_t f0 = json_int(r["faces"][0], ctx), f1 = json_int(r["faces"][1], ctx);
      if (g.v0 < 0 || g.v0 > g.v1 || g.v1 > nv)
        throw FormatError(ctx + " (" + g.name + "): vertex range out of bounds (" + std::to_string(nv) + " vertices)");
      if (f0 < 0 || f0 > f1 || f1 > np)
        throw FormatError(ctx + " (" + g.name + "): face range out of bounds (" + std::to_string(np) + " faces)");
      g.t0 = first_triangle[static_cast<std::size_t>(f0)];
      g.t1 = first_triangle[static_cast<std::size_t>(f1)];
      if (!m.region(g.name)) m.regions.push_back(g);
    }
  }
  if (j.contains("landmarks") && j["landmarks"].contains("multi_pie_68")) {
    const json& l = j["landmarks"]["multi_pie_68"];
    if (!l.is_array() || l.size() != 68) throw FormatError(path + ": landmarks.multi_pie_68 must list 68 vertices");
    for (const auto& x : l) {
      std::int64_t v = json_int(x, path + ": landmarks.multi_pie_68");
      if (v < 0 || v >= nv) throw FormatError(path + ": landmarks.multi_pie_68: vertex " + std::to_string(v) + " out of range");
      m.landmarks68.push_back(static_cast<std::int32_t>(v));
    }
  }
}

// The region table of the ICT FaceKit's generic neutral mesh (the source README;
// the same as regions.json of the repacked copy): used for the source layout.
void apply_builtin_ict_regions(MorphableModel& m, const std::vector<std::int64_t>& first_triangle) {
  struct R {
    const char* name;
    std::int64_t v0, v1, f0, f1;
  };
  static const R table[] = {
      {"face", 0, 9409, 0, 9230},
      {"head_neck", 9409, 11248, 9230, 11144},
      {"mouth_socket", 11248, 13294, 11144, 13226},
      {"eye_socket_left", 13294, 13678, 13226, 13630},
      {"eye_socket_right", 13678, 14062, 13630, 14034},
      {"gums_tongue", 14062, 17039, 14034, 17006},
      {"teeth", 17039, 21451, 17006, 21496},
      {"eyeball_left", 21451, 23021, 21496, 23094},
      {"eyeball_right", 23021, 24591, 23094, 24692},
      {"lacrimal_fluid_left", 24591, 24795, 24692, 24855},
      {"lacrimal_fluid_right", 24795, 24999, 24855, 25018},
      {"eye_blend_left", 24999, 25023, 25018, 25033},
      {"eye_blend_right", 25023, 25047, 25033, 25048},
      {"eye_occlusion_left", 25047, 25199, 25048, 25176},
      {"eye_occlusion_right", 25199, 25351, 25176, 25304},
      {"eyelashes_left", 25351, 26035, 25304, 25844},
      {"eyelashes_right", 26035, 26719, 25844, 26384},
      {"face_narrow", 0, 6706, 0, 6560},
      {"sclera_left", 21451, 22221, 21496, 22296},
      {"iris_left", 22221, 23021, 22296, 23094},
      {"sclera_right", 23021, 23791, 23094, 23894},
      {"iris_right", 23791, 24591, 23894, 24692},
  };
  for (const R& r : table)
    m.regions.push_back(Range{r.name, r.v0, r.v1, first_triangle[static_cast<std::size_t>(r.f0)],
                              first_triangle[static_cast<std::size_t>(r.f1)]});
}

std::string join(const std::string& dir, const std::string& file) { return (fs::path(dir) / file).string(); }

MorphableModel load_repacked(const std::string& dir, const IctLoadOptions& opt) {
  MorphableModel m;
  m.name = "ict-facekit";
  m.source = dir;
  Sha256 hash;
  Sha256* sha = opt.checksum ? &hash : nullptr;
  const std::string obj = join(dir, "neutral.obj");
  auto bytes = io::read_file(obj, kMaxObjBytes);
  if (sha) sha->update(bytes.data(), bytes.size());
  std::vector<std::int64_t> first_triangle;
  build_neutral(parse_obj(bytes, obj, false), obj, m, first_triangle);
  bytes = {};
  const std::int64_t nv = m.neutral.num_vertices();
  if (opt.identities) m.identity = read_modes_npy(join(dir, "identities_f16.npy"), nv, sha);
  else m.identity.resize(3 * nv, 0);
  m.expression = read_modes_npy(join(dir, "expressions_f16.npy"), nv, sha);
  const std::string names_path = join(dir, "expressions.json");
  json names = parse_json_file(names_path, sha);
  if (!names.is_array()) throw FormatError(names_path + ": expected a list of expression names");
  for (const auto& n : names) {
    if (!n.is_string()) throw FormatError(names_path + ": expected a list of expression names");
    m.expression_names.push_back(n.get<std::string>());
  }
  if (static_cast<std::int64_t>(m.expression_names.size()) != m.expression.cols())
    throw FormatError(names_path + ": " + std::to_string(m.expression_names.size()) + " names for " +
                      std::to_string(m.expression.cols()) + " expressions in expressions_f16.npy");
  const std::string regions_path = join(dir, "regions.json");
  apply_regions_json(parse_json_file(regions_path, sha), regions_path, m, first_triangle);
  if (sha) m.sha256 = hash.hex();
  return m;
}

// target - neutral for one shape OBJ of the source layout, into column `col`.
void read_target(const std::string& path, const std::vector<double>& neutral, Eigen::MatrixXf& M, Eigen::Index col,
                 Sha256& sha) {
  auto bytes = io::read_file(path, kMaxObjBytes);
  sha.update(bytes.data(), bytes.size());
  ObjData o = parse_obj(bytes, path, true);
  if (o.v.size() != neutral.size())
    throw FormatError(path + ": " + std::to_string(o.v.size() / 3) + " vertices, the neutral mesh has " +
                      std::to_string(neutral.size() / 3));
  for (std::size_t i = 0; i < neutral.size(); ++i) M(static_cast<Eigen::Index>(i), col) = static_cast<float>(o.v[i] - neutral[i]);
}

MorphableModel load_source(const std::string& dir) {
  MorphableModel m;
  m.name = "ict-facekit";
  m.source = dir;
  Sha256 sha;
  const std::string obj = join(dir, "generic_neutral_mesh.obj");
  auto bytes = io::read_file(obj, kMaxObjBytes);
  sha.update(bytes.data(), bytes.size());
  std::vector<std::int64_t> first_triangle;
  ObjData o = parse_obj(bytes, obj, false);
  bytes = {};
  build_neutral(o, obj, m, first_triangle);
  const std::vector<double>& neutral = o.v;  // deltas from the text values, in double
  const Eigen::Index rows = static_cast<Eigen::Index>(neutral.size());

  std::vector<std::string> identities;
  for (int k = 0; k < 1000; ++k) {
    char file[32];
    std::snprintf(file, sizeof file, "identity%03d.obj", k);
    if (!is_file(join(dir, file))) break;
    identities.push_back(join(dir, file));
  }
  m.identity.resize(rows, static_cast<Eigen::Index>(identities.size()));
  for (std::size_t k = 0; k < identities.size(); ++k)
    read_target(identities[k], neutral, m.identity, static_cast<Eigen::Index>(k), sha);

  const std::string vi_path = join(dir, "vertex_indices.json");
  json vi = parse_json_file(vi_path, &sha);
  if (!vi.is_object() || !vi.contains("expressions") || !vi["expressions"].is_array())
    throw FormatError(vi_path + ": no \"expressions\" list");
  for (const auto& n : vi["expressions"]) {
    if (!n.is_string()) throw FormatError(vi_path + ": expressions: expected names");
    m.expression_names.push_back(n.get<std::string>());
  }
  // Shapes in FaceXModel/ that the config does not list (see the repacked README).
  for (const char* extra : {"PupilDilate_L", "PupilDilate_R", "cheekRaiser_L", "cheekRaiser_R"})
    if (std::find(m.expression_names.begin(), m.expression_names.end(), extra) == m.expression_names.end() &&
        is_file(join(dir, std::string(extra) + ".obj")))
      m.expression_names.push_back(extra);
  m.expression.resize(rows, static_cast<Eigen::Index>(m.expression_names.size()));
  for (std::size_t e = 0; e < m.expression_names.size(); ++e)
    read_target(join(dir, m.expression_names[e] + ".obj"), neutral, m.expression, static_cast<Eigen::Index>(e), sha);

  if (vi.contains("idx_to_landmark_verts")) {
    const json& l = vi["idx_to_landmark_verts"];
    if (!l.is_array() || l.size() != 68) throw FormatError(vi_path + ": idx_to_landmark_verts must list 68 vertices");
    for (const auto& x : l) {
      std::int64_t v = json_int(x, vi_path + ": idx_to_landmark_verts");
      if (v < 0 || v >= m.neutral.num_vertices())
        throw FormatError(vi_path + ": idx_to_landmark_verts: vertex " + std::to_string(v) + " out of range");
      m.landmarks68.push_back(static_cast<std::int32_t>(v));
    }
  }
  const std::string regions_path = join(dir, "regions.json");
  if (is_file(regions_path)) {
    std::vector<std::int32_t> keep = m.landmarks68;
    m.landmarks68.clear();
    apply_regions_json(parse_json_file(regions_path, &sha), regions_path, m, first_triangle);
    if (m.landmarks68.empty()) m.landmarks68 = keep;
  } else if (m.neutral.num_vertices() == 26719 && o.num_polygons() == 26384) {
    apply_builtin_ict_regions(m, first_triangle);
  }
  m.sha256 = sha.hex();
  return m;
}

}  // namespace

const Range* MorphableModel::region(const std::string& n) const {
  for (const Range& r : regions)
    if (r.name == n) return &r;
  return nullptr;
}

MorphableModel load_ict_facekit(const std::string& dir, const IctLoadOptions& opt) {
  MorphableModel m;
  if (is_file(join(dir, "neutral.obj"))) m = load_repacked(dir, opt);
  else if (is_file(join(dir, "generic_neutral_mesh.obj"))) m = load_source(dir);
  else if (is_file(join(dir, "FaceXModel/generic_neutral_mesh.obj"))) m = load_source(join(dir, "FaceXModel"));
  else throw Error(dir + ": not an ICT FaceKit directory (no neutral.obj, generic_neutral_mesh.obj or FaceXModel/)");
  // The ICT face tile (u in [0,1]) is mirror-symmetric u -> 1-u (checked on the data).
  m.uv_mirror_u = true;
  return m;
}

MorphableModel facemesh_model(const CanonicalFace& face, const std::string& source, const std::string& sha256) {
  MorphableModel m;
  m.name = "facemesh";
  m.source = source;
  m.sha256 = sha256;
  const std::size_t nv = face.vertices.size();
  if (nv == 0 || face.uvs.size() != nv) throw FormatError(source + ": canonical face needs one UV per vertex");
  for (const auto& p : face.vertices) m.neutral.positions.insert(m.neutral.positions.end(), p.begin(), p.end());
  for (const auto& t : face.uvs) m.neutral.uvs.insert(m.neutral.uvs.end(), t.begin(), t.end());
  for (std::size_t i = 0; i < face.triangles.size(); ++i) {
    for (int c : face.triangles[i]) {
      if (c < 0 || static_cast<std::size_t>(c) >= nv) throw FormatError(source + ": triangle index out of range");
      m.neutral.triangles.push_back(c);
    }
    m.triangle_polygon.push_back(static_cast<std::int32_t>(i));
  }
  m.neutral.uv_triangles = m.neutral.triangles;
  m.identity.resize(static_cast<Eigen::Index>(3 * nv), 0);
  m.expression.resize(static_cast<Eigen::Index>(3 * nv), 0);
  m.regions.push_back(Range{"face", 0, static_cast<std::int64_t>(nv), 0, m.neutral.num_triangles()});
  // Mirror-symmetric UVs: every vertex has a partner at (-x, y, z) whose UV is (1-u, v).
  bool mirror = true;
  for (std::size_t i = 0; i < nv && mirror; ++i) {
    const auto& p = face.vertices[i];
    std::size_t best = 0;
    double bd = std::numeric_limits<double>::infinity();
    for (std::size_t j = 0; j < nv; ++j) {
      const auto& q = face.vertices[j];
      double d = std::pow(-p[0] - q[0], 2) + std::pow(p[1] - q[1], 2) + std::pow(p[2] - q[2], 2);
      if (d < bd) bd = d, best = j;
    }
    const auto& a = face.uvs[i];
    const auto& b = face.uvs[best];
    mirror = bd < 1e-4 && std::abs(a[0] + b[0] - 1) < 2e-3 && std::abs(a[1] - b[1]) < 2e-3;
  }
  m.uv_mirror_u = mirror;
  return m;
}

std::string find_ict_facekit(const std::string& explicit_dir) {
  if (!explicit_dir.empty()) {
    if (!io::path_is_directory(explicit_dir)) throw Error(explicit_dir + ": ICT FaceKit directory not found");
    return explicit_dir;
  }
  if (const char* env = std::getenv("HFR_ICT_FACEKIT"); env && *env) {
    if (!io::path_is_directory(env)) throw Error(std::string(env) + " (HFR_ICT_FACEKIT): ICT FaceKit directory not found");
    return env;
  }
  const std::string installed = std::string(HFR_INSTALL_DATADIR) + "/ict-facekit";
  if (io::path_is_directory(installed)) return installed;
  return "";
}

std::vector<float> evaluate(const MorphableModel& m, const Eigen::VectorXf& a, const Eigen::VectorXf& b) {
  if (a.size() > m.identity.cols())
    throw Error(m.name + ": " + std::to_string(a.size()) + " identity coefficients for " + std::to_string(m.identity.cols()) + " modes");
  if (b.size() > m.expression.cols())
    throw Error(m.name + ": " + std::to_string(b.size()) + " expression weights for " + std::to_string(m.expression.cols()) + " blendshapes");
  std::vector<float> out = m.neutral.positions;
  Eigen::Map<Eigen::VectorXf> v(out.data(), static_cast<Eigen::Index>(out.size()));
  if (a.size() > 0) v.noalias() += m.identity.leftCols(a.size()) * a;
  if (b.size() > 0) v.noalias() += m.expression.leftCols(b.size()) * b;
  return out;
}

Eigen::Vector3f point_on(const std::vector<float>& positions, const mesh::TriMesh& topology, const SurfacePoint& p) {
  if (p.triangle < 0 || p.triangle >= topology.num_triangles())
    throw Error("point_on: triangle " + std::to_string(p.triangle) + " out of range (" +
                std::to_string(topology.num_triangles()) + " triangles)");
  const std::int32_t* t = &topology.triangles[3 * static_cast<std::size_t>(p.triangle)];
  const std::size_t nv = positions.size() / 3;
  Eigen::Vector3f r = Eigen::Vector3f::Zero();
  const float w[3] = {p.b0, p.b1, p.b2};
  for (int k = 0; k < 3; ++k) {
    if (t[k] < 0 || static_cast<std::size_t>(t[k]) >= nv) throw Error("point_on: vertex index out of range");
    r += w[k] * Eigen::Map<const Eigen::Vector3f>(&positions[3 * static_cast<std::size_t>(t[k])]);
  }
  return r;
}

std::array<float, 2> uv_of(const MorphableModel& m, const SurfacePoint& p) {
  const auto& ut = m.neutral.uv_triangles;
  const auto& uv = m.neutral.uvs;
  const float b[3] = {p.b0, p.b1, p.b2};
  std::array<float, 2> r{0, 0};
  for (int k = 0; k < 3; ++k) {
    const auto i = static_cast<std::size_t>(ut[3 * static_cast<std::size_t>(p.triangle) + k]);
    r[0] += b[k] * uv[2 * i];
    r[1] += b[k] * uv[2 * i + 1];
  }
  return r;
}

}  // namespace hfr::morph
