#include "hfr/synth.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <set>

#include <Eigen/Dense>

#include "hfr/error.hpp"
#include "hfr/hash.hpp"
#include "hfr/inputs.hpp"
#include "hfr/io.hpp"
#include "hfr/log.hpp"
#include "hfr/morphable.hpp"
#include "hfr/progress.hpp"
#include "hfr/records.hpp"
#include "hfr/spectral.hpp"
#include "hfr/tensorfile.hpp"
#include "hfr/version.hpp"

namespace hfr::synth {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- colour ----------------------------------------------------------------

// CIE 1931 2-degree colour matching functions, multi-lobe Gaussian fits
// (Wyman, Sloan and Shirley, JCGT 2013).
double g(double x, double mu, double s1, double s2) {
  const double t = (x - mu) / (x < mu ? s1 : s2);
  return std::exp(-0.5 * t * t);
}
std::array<double, 3> cie_xyz(double nm) {
  const double x = 1.056 * g(nm, 599.8, 37.9, 31.0) + 0.362 * g(nm, 442.0, 16.0, 26.7) - 0.065 * g(nm, 501.1, 20.4, 26.2);
  const double y = 0.821 * g(nm, 568.8, 46.9, 40.5) + 0.286 * g(nm, 530.9, 16.3, 31.1);
  const double z = 1.217 * g(nm, 437.0, 11.8, 36.0) + 0.681 * g(nm, 459.0, 26.0, 13.8);
  return {x, y, z};
}

// ---- random draws ----------------------------------------------------------

struct Rng {
  std::mt19937_64 e;
  explicit Rng(std::uint64_t s) : e(s) {}
  double uni(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(e); }
  double sym(double a) { return uni(-a, a); }
  bool chance(double p) { return uni(0, 1) < p; }
  double normal() { return std::normal_distribution<double>(0, 1)(e); }
};

double r3(double v) { return std::round(v * 1000) / 1000; }

// ---- identities ------------------------------------------------------------

struct Source {
  std::string id, subject, path;  // path: the face file as opened
};

struct Maps {
  int size = 0, channels = 3;
  std::vector<float> albedo;               // S x S x C
  std::vector<float> specular, roughness;  // S x S
  std::vector<std::uint8_t> region, source;
};

struct Face {
  json meta;
  std::vector<float> vertices, uvs, identity;
  std::vector<std::int32_t> triangles, uv_triangles;
  Maps maps;
};

Face read_face(const std::string& path, bool with_geometry) {
  auto in = io::open_input(path);
  TensorReader r(*in);
  Face f;
  f.meta = r.metadata();
  if (!f.meta.is_object() || f.meta.value("format", "") != "hfr-face-reconstruction/1")
    throw FormatError(path + ": not an hfr-reconstruct face file (metadata format is not hfr-face-reconstruction/1)");
  const TensorInfo& a = r.info("albedo");
  if (a.shape.size() < 2 || a.shape.size() > 3 || a.shape[0] != a.shape[1] || a.shape[0] < 8 || a.shape[0] > 8192 ||
      (a.shape.size() == 3 && a.shape[2] != 3))
    throw FormatError(path + ": albedo has shape " + shape_string(a.shape) + ", expected [S, S, 3] or [S, S]");
  const int S = static_cast<int>(a.shape[0]);
  f.maps.size = S;
  f.maps.channels = a.shape.size() == 3 ? 3 : 1;
  f.maps.albedo = read_floats(r, "albedo", path);
  auto square = [&](const std::string& name) {
    const TensorInfo& i = r.info(name);
    if (i.shape != Shape{S, S}) throw FormatError(path + ": " + name + " has shape " + shape_string(i.shape) + ", expected [" +
                                                  std::to_string(S) + ", " + std::to_string(S) + "]");
  };
  for (const char* n : {"specular", "roughness", "texel_source"}) square(n);
  f.maps.specular = read_floats(r, "specular", path);
  f.maps.roughness = read_floats(r, "roughness", path);
  f.maps.source = read_u8(r, "texel_source", path);
  if (r.find("texel_region")) {
    square("texel_region");
    f.maps.region = read_u8(r, "texel_region", path);
  } else {
    f.maps.region.assign(static_cast<std::size_t>(S) * S, 0);
  }
  for (auto& v : f.maps.albedo)
    if (!std::isfinite(v)) throw FormatError(path + ": non-finite albedo");
  if (with_geometry) {
    f.vertices = read_floats(r, "vertices", path);
    f.triangles = read_i32(r, "triangles", path);
    f.uvs = read_floats(r, "uvs", path);
    f.uv_triangles = read_i32(r, "uv_triangles", path);
    if (r.find("identity")) f.identity = read_floats(r, "identity", path);
    mesh::TriMesh m{f.vertices, f.triangles, f.uvs, f.uv_triangles};
    m.validate(path);
  }
  return f;
}

// A small grey-level thumbnail of an albedo map for the PCA Gram matrix.
std::vector<float> thumbnail(const Maps& m, int T) {
  std::vector<float> t(static_cast<std::size_t>(T) * T * 3, 0.f);
  const int S = m.size, C = m.channels, k = std::max(1, S / T);
  for (int y = 0; y < T; ++y)
    for (int x = 0; x < T; ++x)
      for (int c = 0; c < 3; ++c) {
        double s = 0;
        for (int dy = 0; dy < k; ++dy)
          for (int dx = 0; dx < k; ++dx) {
            const int sy = std::min(S - 1, y * S / T + dy), sx = std::min(S - 1, x * S / T + dx);
            s += m.albedo[(static_cast<std::size_t>(sy) * S + sx) * C + (C == 1 ? 0 : c)];
          }
        t[(static_cast<std::size_t>(y) * T + x) * 3 + c] = static_cast<float>(s / (k * k));
      }
  return t;
}

struct Identity {
  std::string id, subject, file, source;  // file: identity file written
  bool sampled = false;
};

void write_identity(const std::string& path, const Identity& who, const Face& geo, const std::vector<float>& vertices,
                    const std::vector<float>& identity, const Maps& maps, const Options& o, const json& model_meta,
                    const json& extra) {
  auto out = io::open_output(path, {io::Content::binary, true});
  TensorWriter w(*out);
  const std::int64_t V = static_cast<std::int64_t>(vertices.size() / 3), T = static_cast<std::int64_t>(geo.triangles.size() / 3),
                     M = static_cast<std::int64_t>(geo.uvs.size() / 2), S = maps.size;
  w.write("vertices", DType::f32, {V, 3}, vertices.data());
  w.write("triangles", DType::i32, {T, 3}, geo.triangles.data());
  w.write("uvs", DType::f32, {M, 2}, geo.uvs.data());
  w.write("uv_triangles", DType::i32, {T, 3}, geo.uv_triangles.data());
  if (!identity.empty()) w.write("identity", DType::f32, {static_cast<std::int64_t>(identity.size())}, identity.data());
  auto half = [&](const char* name, const std::vector<float>& v, const Shape& shape) { write_as_f16(w, name, shape, v.data()); };
  half("albedo", maps.albedo, maps.channels == 3 ? Shape{S, S, 3} : Shape{S, S});
  // NIR albedo per band: the median skin brought to the NIST reflectance scale first
  std::vector<float> rgb;
  const float* src = maps.albedo.data();
  if (maps.channels == 1) {
    rgb.resize(static_cast<std::size_t>(S) * S * 3);
    for (std::size_t i = 0; i < maps.albedo.size(); ++i) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = maps.albedo[i];
    src = rgb.data();
  }
  const auto median = spectral::median_skin_rgb(src, S, S, maps.region.data());
  const double scale = spectral::exposure_scale(median);
  json bands = json::array();
  std::vector<float> nir(static_cast<std::size_t>(S) * S);
  for (int b : o.bands) {
    const auto band = b == 940 ? spectral::Band::nir940 : spectral::Band::nir850;
    spectral::nir_albedo_map(src, S, S, 3, maps.region.data(), band, scale, nir.data());
    half(("albedo_nir" + std::to_string(b)).c_str(), nir, {S, S});
    bands.push_back({{"nm", b}, {"tensor", "albedo_nir" + std::to_string(b)}, {"specular_scale", spectral::specular_nir_scale(band)}});
  }
  half("specular", maps.specular, {S, S});
  half("roughness", maps.roughness, {S, S});
  w.write("texel_region", DType::u8, {S, S}, maps.region.data());
  w.write("texel_source", DType::u8, {S, S}, maps.source.data());
  json meta = {{"format", "hfr-identity/1"},
               {"id", who.id},
               {"subject", who.subject},
               {"sampled", who.sampled},
               {"source", who.source},
               {"model", model_meta},
               {"exposure_scale", scale},
               {"median_skin_rgb", {median[0], median[1], median[2]}},
               {"nir_bands", bands},
               {"sclera_nir", spectral::kScleraNir},
               {"iris_nir", spectral::kIrisNirMean},
               {"albedo", "linear RGB (or grey), as reconstructed; NIR maps after exposure normalisation (docs/spectral.md)"},
               {"hfr_version", kVersion}};
  for (auto it = extra.begin(); it != extra.end(); ++it) meta[it.key()] = it.value();
  w.set_metadata(meta);
  w.close();
  out->commit();
}

// ---- jobs ------------------------------------------------------------------

json area_light(Rng& r, double kelvin_lo, double kelvin_hi, double intensity_lo, double intensity_hi) {
  const double az = r.sym(70) * M_PI / 180, el = r.uni(-15, 55) * M_PI / 180;
  const double kelvin = r.uni(kelvin_lo, kelvin_hi);
  const auto c = blackbody_rgb(kelvin);
  // direction towards the light in the camera frame (x right, y down, z forward): in front of the face = -z
  return {{"type", "area"},
          {"direction", {r3(std::sin(az) * std::cos(el)), r3(-std::sin(el)), r3(-std::cos(az) * std::cos(el))}},
          {"distance_cm", r3(r.uni(60, 200))},
          {"radius_cm", r3(r.uni(5, 40))},
          {"kelvin", std::round(kelvin)},
          {"rgb", {r3(c[0]), r3(c[1]), r3(c[2])}},
          {"intensity", r3(r.uni(intensity_lo, intensity_hi))}};
}

struct Variation {
  json pose, expression, camera, vis_lights, nir_lights, vis_sensor, nir_sensor;
};

Variation draw(Rng& r, const Options& o, bool with_expressions) {
  Variation v;
  v.pose = {{"yaw", r3(r.sym(o.yaw))}, {"pitch", r3(r.sym(o.pitch))}, {"roll", r3(r.sym(o.roll))}};
  v.expression = json::object();
  if (with_expressions && o.expression > 0) {
    const double s = o.expression;
    if (r.chance(0.6)) v.expression["jawOpen"] = r3(r.uni(0, 0.6 * s));
    if (r.chance(0.5)) {
      const double smile = r.uni(0, s);
      v.expression["mouthSmile_L"] = r3(smile);
      v.expression["mouthSmile_R"] = r3(std::min(1.0, smile * r.uni(0.8, 1.2)));
    }
    if (r.chance(0.3)) v.expression["browInnerUp_L"] = v.expression["browInnerUp_R"] = r3(r.uni(0, s));
    if (r.chance(0.1)) v.expression["eyeBlink_L"] = v.expression["eyeBlink_R"] = r3(r.uni(0.5, 1.0));
  }
  // camera: the eye distance in pixels (very low resolution at the low end), the field of view;
  // the image is 4 eye distances wide, the distance follows (mean eye distance 6.4 cm)
  const double eye_px = std::exp(r.uni(std::log(o.face_px.lo), std::log(o.face_px.hi)));
  const double fov = r.uni(o.fov.lo, o.fov.hi);
  const int size = std::clamp(static_cast<int>(std::lround(4 * eye_px)), 16, 2048);
  const double f = 0.5 * size / std::tan(0.5 * fov * M_PI / 180);
  v.camera = {{"width", size}, {"height", size}, {"fov_deg", r3(fov)}, {"focal_px", r3(f)}, {"eye_px", r3(eye_px)},
              {"distance_cm", r3(f * 6.4 / eye_px)}};
  // VIS: sky-like ambient, a key light and sometimes a fill light, colour temperatures of real sources
  const double amb_k = r.uni(5000, 9000);
  const auto amb = blackbody_rgb(amb_k);
  v.vis_lights = json::array({{{"type", "ambient"}, {"kelvin", std::round(amb_k)}, {"rgb", {r3(amb[0]), r3(amb[1]), r3(amb[2])}},
                               {"intensity", r3(r.uni(0.1, 0.5))}},
                              area_light(r, 2700, 6500, 0.6, 1.4)});
  if (r.chance(0.5)) v.vis_lights.push_back(area_light(r, 2700, 6500, 0.1, 0.5));
  // NIR: the active illuminator on the camera axis, and some ambient NIR (sunlight, lamps)
  v.nir_lights = json::array({{{"type", "illuminator"}, {"position", "camera"}, {"radius_cm", r3(r.uni(1, 4))},
                               {"intensity", r3(r.uni(0.8, 1.2))}},
                              {{"type", "ambient"}, {"intensity", r3(r.uni(0, o.nir_ambient))}}});
  if (r.chance(0.3)) {
    json sun = area_light(r, 5500, 6000, 0, o.nir_ambient * 2);
    sun.erase("kelvin");
    sun.erase("rgb");
    v.nir_lights.push_back(sun);
  }
  v.vis_sensor = {{"channels", 3}, {"gamma", "srgb"}, {"noise", r3(r.uni(0.002, 0.02))}, {"blur_px", r3(r.uni(0, 1.0))}};
  v.nir_sensor = {{"channels", 1}, {"gamma", "srgb"}, {"noise", r3(r.uni(0.005, 0.03))}, {"blur_px", r3(r.uni(0, 1.2))}};
  return v;
}

}  // namespace

std::array<double, 3> blackbody_rgb(double kelvin) {
  kelvin = std::clamp(kelvin, 1000.0, 40000.0);
  constexpr double h = 6.62607015e-34, c = 2.99792458e8, k = 1.380649e-23;
  double X = 0, Y = 0, Z = 0;
  for (double nm = 380; nm <= 780; nm += 5) {
    const double l = nm * 1e-9;
    const double p = 1 / (std::pow(l, 5) * (std::exp(h * c / (l * k * kelvin)) - 1));
    const auto xyz = cie_xyz(nm);
    X += p * xyz[0], Y += p * xyz[1], Z += p * xyz[2];
  }
  X /= Y, Z /= Y, Y = 1;
  // XYZ -> linear sRGB (D65), IEC 61966-2-1
  std::array<double, 3> rgb = {3.2406 * X - 1.5372 * Y - 0.4986 * Z, -0.9689 * X + 1.8758 * Y + 0.0415 * Z,
                               0.0557 * X - 0.2040 * Y + 1.0570 * Z};
  for (auto& v : rgb) v = std::max(0.0, v);
  const double lum = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2];
  for (auto& v : rgb) v /= lum;
  return rgb;
}

int run(const Options& o) {
  if (o.output_dir.empty()) throw UsageError("-O/--output-dir DIR (where the identity files go) is required");
  if (o.inputs.empty()) throw UsageError("no inputs (hfr-reconstruct records files, or -)");
  if (o.poses < 1) throw UsageError("--poses must be >= 1");
  if (o.shards < 1 || o.shard < 1 || o.shard > o.shards) throw UsageError("--shard K/N needs 1 <= K <= N");

  // sources: records that name a face file
  std::vector<Source> sources;
  std::uint64_t skipped = 0;
  for (const auto& in_path : o.inputs) {
    auto in = io::open_input(in_path);
    const std::string base = inputs::records_folder(in_path);
    RecordReader rr(*in);
    Record r;
    std::string err;
    while (rr.next(r, &err)) {
      const std::string where = rr.where();
      if (r.is_null()) {
        log::warn(err);
        ++skipped;
        continue;
      }
      if (r.contains("error") || !r.contains("reconstruction") || !r["reconstruction"].is_string()) {
        ++skipped;
        continue;
      }
      Source s;
      const std::string p = r["reconstruction"].get<std::string>();
      s.path = inputs::resolve_ref(p, base);
      s.id = r.contains("id") && r["id"].is_string() ? r["id"].get<std::string>() : where;
      s.subject = inputs::field_text(r, "subject");
      sources.push_back(std::move(s));
    }
  }
  if (skipped) log::notice(std::to_string(skipped) + " records without a reconstruction skipped");
  if (sources.empty()) throw Error("no reconstructions in the inputs (records with a \"reconstruction\" field from hfr-reconstruct)");

  std::error_code ec;
  fs::create_directories(o.output_dir, ec);
  if (ec) throw Error(o.output_dir + ": " + ec.message());
  auto records_out = io::open_output(o.records);
  RecordWriter rw(*records_out);

  // The model: geometry of the first source; the ICT FaceKit when its identity modes are needed
  Face first = read_face(sources[0].path, true);
  const json model_meta = first.meta.value("model", json::object());
  const bool full_head = model_meta.value("full_head", false);
  std::unique_ptr<morph::MorphableModel> model;
  if (full_head) {
    const std::string dir = morph::find_ict_facekit(o.ict_dir);
    if (dir.empty())
      throw Error("the reconstructions use the ICT FaceKit; hfr-synth needs it too (--ict DIR or $HFR_ICT_FACEKIT) to "
                  "evaluate neutral and sampled shapes");
    model = std::make_unique<morph::MorphableModel>(morph::load_ict_facekit(dir));
    if (model->neutral.num_vertices() * 3 != static_cast<std::int64_t>(first.vertices.size()))
      throw Error(sources[0].path + ": its mesh does not match the ICT FaceKit in " + dir);
  }
  if (o.new_identities > 0 && !full_head)
    log::warn("the reconstructions have no identity modes (face mesh alone): sampled identities reuse a source's shape");

  // Identities from the sources (streamed: one face in memory at a time) and the PCA statistics
  constexpr int kThumb = 32;
  const int S = first.maps.size;
  std::vector<std::vector<float>> thumbs;
  std::vector<double> mean_albedo(static_cast<std::size_t>(S) * S * 3, 0.0);
  std::vector<Identity> ids;
  std::set<std::string> used;
  Progress progress("synth", sources.size() + static_cast<std::size_t>(o.new_identities), "identities");
  auto unique_file = [&](const std::string& id) {
    std::string stem = inputs::file_stem(id), name = stem;
    for (int k = 2; used.count(name); ++k) name = stem + "~" + std::to_string(k);
    used.insert(name);
    return (fs::path(o.output_dir) / (name + ".hft")).string();
  };
  for (std::size_t i = 0; i < sources.size(); ++i) {
    Face f = i == 0 ? first : read_face(sources[i].path, true);
    if (f.maps.size != S) throw Error(sources[i].path + ": maps of " + std::to_string(f.maps.size) + " texels; the first has " + std::to_string(S) + " (use one --texture-size)");
    if (f.vertices.size() != first.vertices.size()) throw Error(sources[i].path + ": another mesh than the first reconstruction's");
    Identity who;
    who.id = sources[i].id;
    who.subject = sources[i].subject.empty() ? sources[i].id : sources[i].subject;
    who.source = sources[i].path;
    who.file = unique_file(who.id);
    std::vector<float> verts = f.vertices;
    if (model) {  // neutral expression
      Eigen::VectorXf a = Eigen::VectorXf::Zero(model->identity.cols());
      for (std::size_t k = 0; k < f.identity.size() && k < static_cast<std::size_t>(a.size()); ++k) a[static_cast<Eigen::Index>(k)] = f.identity[k];
      verts = morph::evaluate(*model, a, Eigen::VectorXf::Zero(0));
    }
    write_identity(who.file, who, f, verts, f.identity, f.maps, o, model_meta, {{"reconstruction", f.meta}});
    ids.push_back(who);
    if (o.new_identities > 0) {
      thumbs.push_back(thumbnail(f.maps, kThumb));
      const int C = f.maps.channels;
      for (std::size_t t = 0; t < mean_albedo.size(); ++t) mean_albedo[t] += f.maps.albedo[(t / 3) * C + (C == 1 ? 0 : t % 3)];
    }
    progress.add();
  }

  // Sampled identities: shape ~ N(0, I) over the identity modes; albedo ~ the Gaussian of the
  // sources' albedo maps in their span (dual PCA on thumbnails, components at full size)
  if (o.new_identities > 0) {
    const int N = static_cast<int>(sources.size());
    for (auto& m : mean_albedo) m /= N;
    int K = 0;
    Eigen::MatrixXd V;  // N x K: component weights over the sources
    Eigen::VectorXd sd; // K: standard deviation along each component
    if (N >= 2) {
      Eigen::MatrixXd X(static_cast<Eigen::Index>(thumbs[0].size()), N);
      for (int i = 0; i < N; ++i) X.col(i) = Eigen::Map<const Eigen::VectorXf>(thumbs[static_cast<std::size_t>(i)].data(), X.rows()).cast<double>();
      X = X.colwise() - X.rowwise().mean();
      Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(X.transpose() * X);
      const Eigen::VectorXd ev = es.eigenvalues().reverse();
      const Eigen::MatrixXd evec = es.eigenvectors().rowwise().reverse();
      for (int k = 0; k < N - 1 && k < 50; ++k)
        if (ev[k] > 1e-9 * std::max(ev[0], 1e-30)) ++K;
      V = evec.leftCols(K);
      sd.resize(K);
      for (int k = 0; k < K; ++k) sd[k] = std::sqrt(ev[k] / (N - 1));
      // component k at full size: U_k = sum_i V_ik (A_i - mean) / sqrt(ev_k) (unit norm in thumbnail space)
      for (int k = 0; k < K; ++k) V.col(k) /= std::sqrt(ev[k]);
    } else {
      log::warn("one reconstruction: sampled identities get its albedo (the albedo statistics need at least two)");
    }
    // components at full size: a second pass over the sources
    std::vector<std::vector<float>> comp(static_cast<std::size_t>(K), std::vector<float>(mean_albedo.size(), 0.f));
    if (K > 0)
      for (int i = 0; i < N; ++i) {
        Face f = read_face(sources[static_cast<std::size_t>(i)].path, false);
        const int C = f.maps.channels;
        for (int k = 0; k < K; ++k) {
          const float wk = static_cast<float>(V(i, k));
          auto& u = comp[static_cast<std::size_t>(k)];
          for (std::size_t t = 0; t < u.size(); ++t)
            u[t] += wk * (f.maps.albedo[(t / 3) * C + (C == 1 ? 0 : t % 3)] - static_cast<float>(mean_albedo[t]));
        }
      }
    for (int j = 0; j < o.new_identities; ++j) {
      Identity who;
      who.id = "synth-" + std::to_string(o.seed) + "-" + std::to_string(j);
      who.subject = who.id;
      who.sampled = true;
      who.file = unique_file(who.id);
      Rng r(splitmix64(o.seed ^ splitmix64(fnv1a64(who.id))));
      Maps maps = first.maps;
      maps.channels = 3;
      maps.albedo.assign(mean_albedo.size(), 0.f);
      std::vector<double> z(static_cast<std::size_t>(K));
      for (auto& v : z) v = r.normal();
      for (std::size_t t = 0; t < maps.albedo.size(); ++t) {
        double v = mean_albedo[t];
        for (int k = 0; k < K; ++k) v += z[static_cast<std::size_t>(k)] * sd[k] * comp[static_cast<std::size_t>(k)][t];
        maps.albedo[t] = static_cast<float>(std::clamp(v, 0.0, 1.0));
      }
      if (N < 2) maps = first.maps;
      std::fill(maps.source.begin(), maps.source.end(), static_cast<std::uint8_t>(0));
      for (std::size_t t = 0; t < maps.source.size(); ++t) maps.source[t] = first.maps.source[t] ? 4 : 0;  // 4: sampled
      std::vector<float> identity, verts = first.vertices;
      if (model) {
        Eigen::VectorXf a(model->identity.cols());
        for (Eigen::Index k = 0; k < a.size(); ++k) a[k] = static_cast<float>(r.normal());
        identity.assign(a.data(), a.data() + a.size());
        verts = morph::evaluate(*model, a, Eigen::VectorXf::Zero(0));
      } else {
        const auto& src = sources[static_cast<std::size_t>(r.e() % sources.size())];
        verts = read_face(src.path, true).vertices;
      }
      write_identity(who.file, who, first, verts, identity, maps, o, model_meta,
                     {{"albedo_components", K}, {"sampled_from", N}, {"seed", o.seed}});
      ids.push_back(who);
      progress.add();
    }
  }
  progress.finish();

  // Jobs
  std::uint64_t jobs = 0;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const Identity& who = ids[i];
    for (int p = 0; p < o.poses; ++p) {
      const std::uint64_t variation = i * static_cast<std::uint64_t>(o.poses) + static_cast<std::uint64_t>(p);
      if (static_cast<int>(variation % static_cast<std::uint64_t>(o.shards)) != o.shard - 1) continue;
      const std::uint64_t vseed = splitmix64(o.seed ^ splitmix64(fnv1a64(who.id) + static_cast<std::uint64_t>(p)));
      Rng r(vseed);
      const Variation v = draw(r, o, full_head);
      char pbuf[16];
      std::snprintf(pbuf, sizeof pbuf, "%03d", p);
      const std::string pair = who.id + "/" + pbuf;
      const std::string stem = fs::path(who.file).stem().string();
      auto job = [&](const std::string& spectrum, const Variation& var, bool nir, int band) {
        Record j = Record::object();
        j["id"] = pair + "/" + spectrum;
        j["pair"] = pair;
        j["identity"] = who.id;
        j["subject"] = who.subject;
        j["sampled"] = who.sampled;
        j["identity_file"] = inputs::relative_ref(who.file, o.records, false);
        j["modality"] = nir ? "NIR" : "VIS";
        j["spectrum"] = spectrum;
        if (nir) j["band_nm"] = band;
        j["pose"] = var.pose;
        j["expression"] = var.expression;
        j["camera"] = var.camera;
        j["lights"] = nir ? var.nir_lights : var.vis_lights;
        j["sensor"] = nir ? var.nir_sensor : var.vis_sensor;
        j["output"] = (fs::path(o.renders_dir) / stem / (std::string(pbuf) + "_" + spectrum + ".png")).string();
        j["seed"] = static_cast<std::uint32_t>(splitmix64(vseed ^ fnv1a64(spectrum)) & 0xffffffffu);
        rw.write(j);
        ++jobs;
      };
      job("vis", v, false, 0);
      for (int b : o.bands) {
        if (o.independent) {
          Rng rn(splitmix64(vseed ^ static_cast<std::uint64_t>(b)));
          Variation vn = draw(rn, o, full_head);
          job("nir" + std::to_string(b), vn, true, b);
        } else {
          job("nir" + std::to_string(b), v, true, b);
        }
      }
    }
  }
  rw.flush();
  records_out->commit();
  log::notice(std::to_string(ids.size()) + " identities (" + std::to_string(o.new_identities) + " sampled), " +
              std::to_string(jobs) + " render jobs" + (o.shards > 1 ? " (shard " + std::to_string(o.shard) + "/" + std::to_string(o.shards) + ")" : ""));
  return kExitOk;
}

}  // namespace hfr::synth
