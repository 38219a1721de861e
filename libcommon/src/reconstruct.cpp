#include "hfr/reconstruct.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <future>
#include <random>
#include <set>

#include <opencv2/imgproc.hpp>

#include "hfr/error.hpp"
#include "hfr/face_render.hpp"
#include "hfr/hash.hpp"
#include "hfr/image.hpp"
#include "hfr/io.hpp"
#include "hfr/log.hpp"
#include "hfr/mesh.hpp"
#include "hfr/model.hpp"
#include "hfr/parallel.hpp"
#include "hfr/progress.hpp"
#include "hfr/raster.hpp"
#include "hfr/records.hpp"
#include "hfr/reflectance.hpp"
#include "hfr/tensor_torch.hpp"
#include "hfr/tensorfile.hpp"
#include "hfr/version.hpp"

namespace hfr::reconstruct {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Fields hfr-reconstruct writes: not passed through from input records.
const std::vector<std::string>& output_fields() {
  static const std::vector<std::string> f = {"reconstruction", "face", "faces_found", "box", "score", "model", "model_sha256",
                                             "yaw", "pitch", "roll", "rms_px", "rms_rel", "coverage", "grey", "error",
                                             "latency_ms", "fit_ms", "unwrap_ms", "preview", "landmarks", "mesh_score"};
  return f;
}

struct Setup {
  morph::MorphableModel model;
  morph::Correspondence corr;
  std::vector<std::uint8_t> textured, occluders;
  std::vector<reflect::UvArea> areas;
  bool full_head = false;
};

morph::Correspondence identity_correspondence(const morph::MorphableModel& m) {
  morph::Correspondence c;
  c.num_vertices = m.neutral.num_vertices();
  c.num_triangles = m.neutral.num_triangles();
  c.points.resize(static_cast<std::size_t>(c.num_vertices));
  c.distance_cm.assign(c.points.size(), 0.f);
  std::vector<bool> done(c.points.size(), false);
  const auto& t = m.neutral.triangles;
  for (std::int64_t k = 0; k < c.num_triangles; ++k)
    for (int j = 0; j < 3; ++j) {
      const auto v = static_cast<std::size_t>(t[3 * k + j]);
      if (done[v]) continue;
      done[v] = true;
      c.points[v].triangle = static_cast<std::int32_t>(k);
      c.points[v].b0 = j == 0, c.points[v].b1 = j == 1, c.points[v].b2 = j == 2;
    }
  for (std::size_t v = 0; v < done.size(); ++v)
    if (!done[v]) throw Error("facemesh model: vertex " + std::to_string(v) + " is in no triangle");
  return c;
}


Setup make_setup(const Options& o) {
  Setup s;
  std::string ict = o.model == ModelChoice::facemesh ? "" : morph::find_ict_facekit(o.ict_dir);
  if (o.model == ModelChoice::ict && ict.empty())
    throw Error("the ICT FaceKit was not found (give --ict DIR or set HFR_ICT_FACEKIT; README: \"3D face model\")");
  if (!ict.empty()) {
    s.model = morph::load_ict_facekit(ict);
    s.corr = morph::builtin_ict_correspondence(s.model);
    s.full_head = true;
    const morph::Range* face = s.model.region("face");
    if (!face) throw Error(ict + ": the model has no \"face\" region");
    const std::int64_t T = s.model.neutral.num_triangles();
    s.textured.assign(static_cast<std::size_t>(T), 0);
    s.occluders.assign(static_cast<std::size_t>(T), 0);
    for (std::int64_t t = face->t0; t < face->t1; ++t) s.textured[static_cast<std::size_t>(t)] = 1;
    for (const char* r : {"face", "head_neck", "eyeball_left", "eyeball_right"})
      if (const morph::Range* g = s.model.region(r))
        for (std::int64_t t = g->t0; t < g->t1; ++t) s.occluders[static_cast<std::size_t>(t)] = 1;
  } else {
    if (o.model == ModelChoice::automatic)
      log::warn("the ICT FaceKit was not found (--ict, $HFR_ICT_FACEKIT): reconstructing the face mesh alone (468 vertices, "
                "no head, neck or eyes; see the README, \"3D face model\")");
    const std::string path = nn::model_dir() + "/face_geometry.binarypb";
    s.model = morph::facemesh_model(read_canonical_face(path), path, sha256_file(path));
    s.corr = identity_correspondence(s.model);
    s.textured.assign(static_cast<std::size_t>(s.model.neutral.num_triangles()), 1);
  }
  for (const auto& d : morph::face_mesh_areas()) s.areas.push_back({d.name, morph::uv_polygon(s.model, s.corr, d.landmarks)});
  return s;
}

struct FaceOut : FaceResult {
  std::string file;             // tensor file written
  std::string preview;
};

struct Photo {
  inputs::Item item;
  detect::Frame frame;
  cv::Mat linear;   // CV_32FC3 or CV_32FC1 (grey photo)
  bool grey = false;
  std::vector<FaceOut> out;
  double decode_ms = 0;
};

// A photo whose three channels agree everywhere (within 2 levels on
// average) is grey: its albedo is grey too.
bool is_grey(const cv::Mat& rgb) {
  double diff = 0;
  const std::size_t n = static_cast<std::size_t>(rgb.rows) * rgb.cols;
  for (int y = 0; y < rgb.rows; ++y) {
    const unsigned char* p = rgb.ptr<unsigned char>(y);
    for (int x = 0; x < rgb.cols; ++x) diff += std::abs(p[3 * x] - p[3 * x + 1]) + std::abs(p[3 * x + 1] - p[3 * x + 2]);
  }
  return diff / static_cast<double>(2 * n) < 2.0;
}

cv::Mat linear_image(const cv::Mat& rgb8, bool grey) {
  cv::Mat f;
  if (grey) {
    std::vector<cv::Mat> ch;
    cv::split(rgb8, ch);
    ch[1].convertTo(f, CV_32F, 1.0 / 255);
  } else {
    rgb8.convertTo(f, CV_32FC3, 1.0 / 255);
  }
  return reflect::srgb_to_linear(f);
}



// Texel regions of the unwrapped maps (the numbering of spectral::Region):
// 0 skin, 1 lips, 2 brows, 3 the eye openings (covered by the eyeballs).
cv::Mat region_map(const Setup& s, int S) {
  cv::Mat m(S, S, CV_8UC1, cv::Scalar(0));
  for (const auto& a : s.areas) {
    int label = a.name == "lips" ? 1 : a.name.rfind("brow", 0) == 0 ? 2 : a.name.rfind("eye", 0) == 0 ? 3 : 0;
    if (!label) continue;
    std::vector<cv::Point> poly;
    for (const auto& q : a.polygon)
      poly.emplace_back(static_cast<int>(std::lround(q[0] * S)), static_cast<int>(std::lround((1 - q[1]) * S)));
    cv::fillPoly(m, std::vector<std::vector<cv::Point>>{poly}, cv::Scalar(label));
  }
  return m;
}

void write_face(const std::string& path, const Setup& s, const Photo& p, std::size_t j, const FaceOut& f, const Options& o,
                const json& meta) {
  auto out = io::open_output(path, {io::Content::binary, true});
  TensorWriter w(*out);
  const auto& m = s.model.neutral;
  const std::int64_t V = m.num_vertices(), T = m.num_triangles(), M = static_cast<std::int64_t>(m.uvs.size() / 2);
  w.write("vertices", DType::f32, {V, 3}, f.vertices.data());
  w.write("triangles", DType::i32, {T, 3}, m.triangles.data());
  w.write("uvs", DType::f32, {M, 2}, m.uvs.data());
  w.write("uv_triangles", DType::i32, {T, 3}, m.uv_triangles.data());
  const int S = o.texture_size;
  auto write_map = [&](const char* name, const cv::Mat& img) {  // the maps are continuous S x S (x C) floats
    const int c = img.channels();
    write_as_f16(w, name, c == 1 ? Shape{S, S} : Shape{S, S, c}, img.ptr<float>(0));
  };
  write_map("albedo", f.maps.albedo);
  write_map("specular", f.maps.specular);
  write_map("roughness", f.maps.roughness);
  w.write("texel_source", DType::u8, {S, S}, f.maps.source.data);
  const cv::Mat regions = region_map(s, S);
  w.write("texel_region", DType::u8, {S, S}, regions.data);
  std::vector<float> R(9), t(3), cam = {static_cast<float>(f.fit.camera.fx), static_cast<float>(f.fit.camera.fy),
                                           static_cast<float>(f.fit.camera.cx), static_cast<float>(f.fit.camera.cy)};
  for (int i = 0; i < 9; ++i) R[i] = static_cast<float>(f.fit.pose.R[i]);
  for (int i = 0; i < 3; ++i) t[i] = static_cast<float>(f.fit.pose.t[i]);
  w.write("rotation", DType::f32, {3, 3}, R.data());
  w.write("translation", DType::f32, {3}, t.data());
  w.write("camera", DType::f32, {4}, cam.data());
  const auto& mesh = p.frame.faces[j].mesh;
  std::vector<float> lm, lmfit, res, mp, wts(f.fit.weights.begin(), f.fit.weights.end());
  for (std::size_t i = 0; i < mesh.size(); ++i) {
    lm.insert(lm.end(), {static_cast<float>(mesh[i].x), static_cast<float>(mesh[i].y), static_cast<float>(mesh[i].z)});
    lmfit.insert(lmfit.end(), {static_cast<float>(f.fit.projected[i][0]), static_cast<float>(f.fit.projected[i][1])});
    res.push_back(static_cast<float>(f.fit.residual_px[i]));
    for (int k = 0; k < 3; ++k) mp.push_back(static_cast<float>(f.fit.model_points[i][k]));
  }
  const std::int64_t L = static_cast<std::int64_t>(mesh.size());
  w.write("landmarks", DType::f32, {L, 3}, lm.data());
  w.write("landmarks_fitted", DType::f32, {L, 2}, lmfit.data());
  w.write("landmarks_model", DType::f32, {L, 3}, mp.data());
  w.write("residuals", DType::f32, {L}, res.data());
  if (static_cast<std::int64_t>(wts.size()) == L) w.write("landmark_weights", DType::f32, {L}, wts.data());
  if (f.fit.identity.size()) w.write("identity", DType::f32, {f.fit.identity.size()}, f.fit.identity.data());
  if (f.fit.expression.size()) w.write("expression", DType::f32, {f.fit.expression.size()}, f.fit.expression.data());
  std::vector<float> sh;
  for (const auto& k : f.maps.sh)
    for (double v : k) sh.push_back(static_cast<float>(v));
  w.write("sh", DType::f32, {9, 3}, sh.data());
  w.set_metadata(meta);
  w.close();
  out->commit();
}

// The fitted mesh shaded over the photo, next to the albedo map (sRGB).
void write_preview(const std::string& path, const Setup& s, const Photo& p, const FaceOut& f) {
  cv::Mat base = p.frame.image.clone();
  const auto cam_pos = mesh::transform(f.fit.pose, f.vertices);
  const auto normals = mesh::vertex_normals(cam_pos, s.model.neutral.triangles);
  std::vector<float> screen(cam_pos.size());
  const auto& c = f.fit.camera;
  for (std::size_t i = 0; i < cam_pos.size() / 3; ++i) {
    const float z = cam_pos[3 * i + 2];
    screen[3 * i] = static_cast<float>(c.fx * cam_pos[3 * i] / z + c.cx);
    screen[3 * i + 1] = static_cast<float>(c.fy * cam_pos[3 * i + 1] / z + c.cy);
    screen[3 * i + 2] = z;
  }
  raster::Buffers buf;
  buf.reset(base.cols, base.rows);
  const std::vector<std::uint8_t>* en = s.occluders.empty() ? nullptr : &s.occluders;
  raster::rasterize(screen, s.model.neutral.triangles, buf, true, en);
  const auto& tri = s.model.neutral.triangles;
  for (int y = 0; y < base.rows; ++y) {
    unsigned char* row = base.ptr<unsigned char>(y);
    for (int x = 0; x < base.cols; ++x) {
      const std::size_t k = static_cast<std::size_t>(y) * base.cols + x;
      const std::int32_t t = buf.triangle[k];
      if (t < 0) continue;
      const float b1 = buf.b1[k], b2 = buf.b2[k], b0 = 1 - b1 - b2;
      double n[3] = {0, 0, 0}, pt[3] = {0, 0, 0};
      for (int j = 0; j < 3; ++j) {
        const float bw = j == 0 ? b0 : j == 1 ? b1 : b2;
        const auto v = static_cast<std::size_t>(tri[3 * static_cast<std::size_t>(t) + j]);
        for (int a = 0; a < 3; ++a) n[a] += bw * normals[3 * v + a], pt[a] += bw * cam_pos[3 * v + a];
      }
      const double nl = std::sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]) + 1e-12;
      const double pl = std::sqrt(pt[0] * pt[0] + pt[1] * pt[1] + pt[2] * pt[2]) + 1e-12;
      const double shade = std::abs(n[0] * pt[0] + n[1] * pt[1] + n[2] * pt[2]) / (nl * pl);
      const double g = 60 + 170 * shade;
      const bool edge = (std::min({b0, b1, b2}) < 0.04f);
      for (int ch = 0; ch < 3; ++ch) {
        const double mesh_col = edge ? g * 0.6 : g * (ch == 2 ? 1.0 : 0.85);
        row[3 * x + ch] = cv::saturate_cast<unsigned char>(0.45 * row[3 * x + ch] + 0.55 * mesh_col);
      }
    }
  }
  for (const auto& q : f.fit.projected)
    cv::circle(base, cv::Point(static_cast<int>(q[0]), static_cast<int>(q[1])), 1, cv::Scalar(255, 60, 60), -1);
  // the face, enlarged 1.8x around its box, at 512 pixels high, next to the albedo map
  const auto& d = f.found.det;
  const double side = 1.8 * std::max(d.width(), d.height()), cx = 0.5 * (d.x0 + d.x1), cy = 0.5 * (d.y0 + d.y1);
  cv::Rect box(static_cast<int>(cx - side / 2), static_cast<int>(cy - side / 2), static_cast<int>(side), static_cast<int>(side));
  box &= cv::Rect(0, 0, base.cols, base.rows);
  if (box.area() <= 0) box = cv::Rect(0, 0, base.cols, base.rows);
  cv::Mat crop;
  cv::resize(base(box), crop, cv::Size(std::max(1, 512 * box.width / std::max(1, box.height)), 512), 0, 0, cv::INTER_AREA);
  cv::Mat alb = reflect::linear_to_srgb(f.maps.albedo);
  cv::Mat alb8;
  alb.convertTo(alb8, CV_8U, 255.0);
  if (alb8.channels() == 1) cv::cvtColor(alb8, alb8, cv::COLOR_GRAY2RGB);
  cv::resize(alb8, alb8, cv::Size(512, 512), 0, 0, alb8.rows > 512 ? cv::INTER_AREA : cv::INTER_LINEAR);
  cv::Mat both;
  cv::hconcat(crop, alb8, both);
  write_image(path, both);
}

void process_face(const Setup& s, Photo& p, std::size_t j, const Options& o) {
  FaceOut& f = p.out[j];
  const auto& mesh = p.frame.faces[j].mesh;
  char msg[200];
  const double ms = p.frame.faces[j].mesh_score;
  if (ms >= 0 && ms < o.min_mesh_score) {
    std::snprintf(msg, sizeof msg, "profile or occluded face: the face mesh's face score %.2f is below --min-mesh-score %g", ms,
                  o.min_mesh_score);
    f.error = msg;
    return;
  }
  fit::Observation obs;
  obs.width = p.frame.image.cols;
  obs.height = p.frame.image.rows;
  for (const auto& q : mesh) obs.points.push_back({q.x, q.y, q.z});
  const auto t0 = std::chrono::steady_clock::now();
  f.fit = fit::fit(s.model, s.corr, obs, o.fit);
  const auto& ypr = f.fit.yaw_pitch_roll;
  if (std::abs(ypr[0]) > o.max_yaw) {
    std::snprintf(msg, sizeof msg, "profile view: yaw %.0f degrees is beyond --max-yaw %.0f", ypr[0], o.max_yaw);
    f.error = msg;
    return;
  }
  if (std::abs(ypr[1]) > o.max_pitch) {
    std::snprintf(msg, sizeof msg, "pitch %.0f degrees is beyond --max-pitch %.0f", ypr[1], o.max_pitch);
    f.error = msg;
    return;
  }
  // the face mesh alone is fitted rigidly (its own points give the shape), so its residual includes the
  // person's shape: it gets twice the limit
  const double limit = s.full_head ? o.max_residual : 2 * o.max_residual;
  if (f.fit.rms_rel > limit) {
    std::snprintf(msg, sizeof msg, "poor fit: landmark RMS %.3g of the eye distance is above %s%g", f.fit.rms_rel,
                  s.full_head ? "--max-residual " : "twice --max-residual (face mesh alone): ", limit);
    f.error = msg;
    return;
  }
  if (s.full_head)
    f.vertices = morph::evaluate(s.model, f.fit.identity, f.fit.expression);
  else
    f.vertices = fit::facemesh_vertices(obs, f.fit);
  const auto t1 = std::chrono::steady_clock::now();
  f.fit_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  reflect::UnwrapInput in;
  in.image = p.linear;
  in.mesh = s.model.neutral;
  in.mesh.positions = mesh::transform(f.fit.pose, f.vertices);
  in.camera = f.fit.camera;
  in.textured = s.textured;
  in.occluders = s.occluders;
  in.areas = s.areas;
  in.mirror_u = s.model.uv_mirror_u;
  in.texture_size = o.texture_size;
  f.maps = reflect::unwrap(in);
  f.unwrap_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count();
}

detect::Options finder_options(const Options& o) {
  detect::Options d;
  d.policy = o.policy;
  d.min_face = o.min_face;
  d.min_score = o.min_score;
  d.mesh = true;
  d.net_batch = o.net_batch;
  d.threads = o.threads;
  return d;
}

}  // namespace

morph::Correspondence calibrate_correspondence(const morph::MorphableModel& ict, const morph::Correspondence& start,
                                               const detect::FaceFinder& finder, const CalibrationOptions& o,
                                               CalibrationReport* report) {
  constexpr float kOvalSide = 4.0f;  // cm from the mid-plane: lateral face-oval points
  const int N = 468;
  if (start.points.size() != static_cast<std::size_t>(N)) throw Error("calibration: the start has no 468 points");
  const morph::Range* narrow = ict.region("face_narrow");
  if (!narrow) throw Error(ict.name + ": no face_narrow region");
  std::mt19937_64 rng(o.seed);
  std::uniform_real_distribution<double> uni(-1, 1);
  std::normal_distribution<float> gauss(0, 1);
  std::vector<std::array<double, 3>> sum(N, {0, 0, 0});
  std::vector<std::vector<std::array<double, 3>>> samples(N);
  int used = 0;
  const auto& pos = ict.neutral.positions;
  const auto& tri = ict.neutral.triangles;
  for (int v = 0; v < o.views; ++v) {
    Eigen::VectorXf a = Eigen::VectorXf::Zero(ict.identity.cols());
    for (int j = 0; j < std::min<int>(40, static_cast<int>(a.size())); ++j) a[j] = o.identity_sigma * gauss(rng);
    const double yaw = o.max_yaw * uni(rng), pitch = o.max_pitch * uni(rng), roll = o.max_roll * uni(rng);
    const double tx = 2 * uni(rng), ty = 2 * uni(rng), tz = 50 + 8 * uni(rng);
    const auto pose = mesh::pose_from_angles(yaw, pitch, roll, {tx, ty, tz});
    face_render::Options ro;
    const auto scene = face_render::render(ict, start, a, Eigen::VectorXf::Zero(ict.expression.cols()), pose, ro);
    detect::Frame frame;
    frame.image = scene.photo;
    finder.find({&frame});
    if (!frame.error.empty() || frame.faces.size() != 1 || frame.faces[0].mesh.size() != static_cast<std::size_t>(N)) continue;
    ++used;
    const auto& b = scene.buffers;
    for (int i = 0; i < N; ++i) {
      const auto& q = frame.faces[0].mesh[static_cast<std::size_t>(i)];
      const int x = static_cast<int>(std::floor(q.x)), y = static_cast<int>(std::floor(q.y));
      if (x < 0 || y < 0 || x >= b.width || y >= b.height) continue;
      const std::size_t k = static_cast<std::size_t>(y) * b.width + x;
      const std::int32_t t = b.triangle[k];
      if (t < narrow->t0 || t >= narrow->t1) continue;  // background, neck, eyes: no sample
      const float bw[3] = {1 - b.b1[k] - b.b2[k], b.b1[k], b.b2[k]};
      std::array<double, 3> p{0, 0, 0};
      for (int j = 0; j < 3; ++j) {
        const auto vi = static_cast<std::size_t>(tri[3 * static_cast<std::size_t>(t) + j]);
        for (int c = 0; c < 3; ++c) p[c] += bw[j] * pos[3 * vi + c];
      }
      samples[static_cast<std::size_t>(i)].push_back(p);
    }
  }
  if (used < 3) throw Error("calibration: the face mesh found a face in only " + std::to_string(used) + " of " +
                            std::to_string(o.views) + " renders");
  morph::Correspondence out = start;
  // points that keep the registration get the median spread of the calibrated ones (set below)
  out.spread_cm.assign(N, -1.f);
  std::vector<std::array<double, 3>> means;
  std::vector<int> which;
  double spread = 0;
  int spread_n = 0;
  // The face oval's lateral points follow the silhouette of a turned face,
  // so where the network puts them on the surface depends on the view: they
  // keep the registration. Its top (forehead) and bottom (chin) points are
  // calibrated like the rest.
  std::vector<bool> oval(N, false);
  for (int i : face::mesh_face_oval())
    oval[static_cast<std::size_t>(i)] = std::abs(morph::point_on(pos, ict.neutral, start.points[static_cast<std::size_t>(i)]).x()) > kOvalSide;
  for (int i = 0; i < N; ++i) {
    const auto& s = samples[static_cast<std::size_t>(i)];
    // too few samples, or a silhouette point (its surface point depends on the view): keep the registration
    if (s.size() < 3 || oval[static_cast<std::size_t>(i)]) continue;
    std::array<double, 3> m{0, 0, 0};
    for (const auto& p : s)
      for (int c = 0; c < 3; ++c) m[c] += p[c] / static_cast<double>(s.size());
    double sp = 0;
    for (const auto& p : s) sp += std::pow(p[0] - m[0], 2) + std::pow(p[1] - m[1], 2) + std::pow(p[2] - m[2], 2);
    out.spread_cm[static_cast<std::size_t>(i)] = static_cast<float>(std::sqrt(sp / static_cast<double>(s.size())));
    spread += std::sqrt(sp / static_cast<double>(s.size()));
    ++spread_n;
    means.push_back(m);
    which.push_back(i);
  }
  {
    std::vector<float> known;
    for (float v : out.spread_cm)
      if (v >= 0) known.push_back(v);
    std::sort(known.begin(), known.end());
    const float med = known.empty() ? 0.3f : known[known.size() / 2];
    for (float& v : out.spread_cm)
      if (v < 0) v = med;
  }
  std::vector<float> dist;
  const auto snapped = morph::closest_points(ict, "face_narrow", means, &dist);
  CalibrationReport rep;
  rep.views_used = used;
  rep.mean_spread_cm = spread_n ? spread / spread_n : 0;
  for (std::size_t k = 0; k < which.size(); ++k) {
    const auto i = static_cast<std::size_t>(which[k]);
    const Eigen::Vector3f before = morph::point_on(pos, ict.neutral, start.points[i]);
    out.points[i] = snapped[k];
    const Eigen::Vector3f after = morph::point_on(pos, ict.neutral, out.points[i]);
    const double d = (after - before).norm();
    rep.mean_shift_cm += d / static_cast<double>(N);
    rep.max_shift_cm = std::max(rep.max_shift_cm, d);
  }
  out.note = "calibrated on " + std::to_string(used) + " renders of sampled ICT identities (seed " + std::to_string(o.seed) +
             ", yaw/pitch/roll within " + std::to_string(static_cast<int>(o.max_yaw)) + "/" +
             std::to_string(static_cast<int>(o.max_pitch)) + "/" + std::to_string(static_cast<int>(o.max_roll)) +
             " deg): each landmark but the lateral face oval is the mean of the surface points under the face mesh's "
             "predictions, snapped to face_narrow; start: " + start.note;
  if (report) *report = rep;
  return out;
}

struct Reconstructor::Impl {
  Options opt;
  Setup setup;
  detect::FaceFinder finder;
  Impl(const Options& o) : opt(o), setup(make_setup(o)), finder(finder_options(o), torch_device(o.device)) {}
};

Reconstructor::Reconstructor(const Options& o) : impl_(std::make_unique<Impl>(o)) {}
Reconstructor::~Reconstructor() = default;
const morph::MorphableModel& Reconstructor::model() const { return impl_->setup.model; }
bool Reconstructor::full_head() const { return impl_->setup.full_head; }
const detect::FaceFinder& Reconstructor::finder() const { return impl_->finder; }

std::vector<FaceResult> Reconstructor::reconstruct(const cv::Mat& rgb8) const {
  Photo p;
  p.frame.image = rgb8;
  const auto t0 = std::chrono::steady_clock::now();
  impl_->finder.find({&p.frame});
  const double detect_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (!p.frame.error.empty()) throw Error(p.frame.error);
  p.grey = is_grey(p.frame.image);
  p.linear = linear_image(p.frame.image, p.grey);
  p.out.resize(p.frame.faces.size());
  std::vector<FaceResult> out;
  for (std::size_t j = 0; j < p.out.size(); ++j) {
    try {
      process_face(impl_->setup, p, j, impl_->opt);
    } catch (const std::exception& e) {
      p.out[j].error = brief(e);
    }
    p.out[j].found = p.frame.faces[j];
    p.out[j].grey = p.grey;
    p.out[j].detect_ms = detect_ms;
    out.push_back(p.out[j]);
  }
  return out;
}

int run(const Options& o) {
  if (o.output_dir.empty()) throw UsageError("-O/--output-dir DIR (where the per-face tensor files go) is required");
  if (o.in.inputs.empty()) throw UsageError("no inputs (photos, folders, records files or -)");
  if (o.texture_size < 16 || o.texture_size > 4096) throw UsageError("--texture-size must be in 16..4096");
  set_torch_threads(o.threads);
  const torch::Device dev = torch_device(o.device);
  const Setup setup = make_setup(o);
  detect::FaceFinder finder(finder_options(o), dev);

  inputs::Spec spec = o.in;
  spec.drop_fields = output_fields();
  std::vector<inputs::Item> items = inputs::enumerate(spec);
  if (items.empty()) log::warn("no photos in the inputs");
  for (const auto& d : {o.output_dir, o.preview_dir}) {
    if (d.empty()) continue;
    std::error_code ec;
    fs::create_directories(d, ec);
    if (ec) throw Error(d + ": " + ec.message());
  }
  std::unique_ptr<io::Output> records_out = io::open_output(o.records);
  RecordWriter rw(*records_out);
  ImageLimits limits;
  limits.max_pixels = o.max_pixels;

  json model_meta = {{"name", setup.model.name},
                     {"source", setup.model.source},
                     {"sha256", setup.model.sha256},
                     {"full_head", setup.full_head},
                     {"expression_names", setup.model.expression_names},
                     {"uv_mirror_u", setup.model.uv_mirror_u}};
  json regions = json::array();
  for (const auto& r : setup.model.regions)
    regions.push_back({{"name", r.name}, {"vertices", {r.v0, r.v1}}, {"triangles", {r.t0, r.t1}}});
  model_meta["regions"] = regions;

  auto prepare = [&](std::size_t begin, std::size_t end) {
    std::vector<Photo> chunk(end - begin);
    parallel_for(chunk.size(), o.threads, [&](std::size_t i) {
      Photo& p = chunk[i];
      p.item = items[begin + i];
      if (!p.item.error.empty()) {
        p.frame.error = p.item.error;
        return;
      }
      const auto t0 = std::chrono::steady_clock::now();
      try {
        p.frame.image = read_image(p.item.path, ColorMode::rgb, limits);
        detect::FaceFinder::prepare(p.frame);
      } catch (const std::exception& e) {
        p.frame.error = brief(e);
      }
      p.decode_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    });
    return chunk;
  };

  std::set<std::string> used_names;
  std::uint64_t failed = 0, faces_ok = 0;
  Progress progress("reconstruct", items.size(), "photos");
  const std::size_t B = static_cast<std::size_t>(std::max(1, o.batch));
  std::future<std::vector<Photo>> next;
  if (!items.empty()) next = std::async(std::launch::async, prepare, 0, std::min(B, items.size()));
  for (std::size_t begin = 0; begin < items.size(); begin += B) {
    std::vector<Photo> chunk = next.get();
    const auto chunk_t0 = std::chrono::steady_clock::now();
    const std::size_t nb = begin + B;
    if (nb < items.size()) next = std::async(std::launch::async, prepare, nb, std::min(nb + B, items.size()));

    std::vector<detect::Frame*> frames;
    for (auto& p : chunk) frames.push_back(&p.frame);
    finder.find(frames);

    // names of the tensor files, decided in input order (deterministic)
    std::vector<std::pair<std::size_t, std::size_t>> work;
    for (std::size_t i = 0; i < chunk.size(); ++i) {
      Photo& p = chunk[i];
      if (!p.frame.error.empty()) continue;
      p.out.resize(p.frame.faces.size());
      for (std::size_t j = 0; j < p.frame.faces.size(); ++j) {
        std::string stem = inputs::file_stem(p.frame.faces.size() > 1 ? p.item.id + "#" + std::to_string(j) : p.item.id);
        std::string name = stem;
        for (int k = 2; used_names.count(name); ++k) name = stem + "~" + std::to_string(k);
        used_names.insert(name);
        p.out[j].file = (fs::path(o.output_dir) / (name + ".hft")).string();
        if (!o.preview_dir.empty()) p.out[j].preview = (fs::path(o.preview_dir) / (name + ".png")).string();
        work.push_back({i, j});
      }
    }
    parallel_for(chunk.size(), o.threads, [&](std::size_t i) {
      Photo& p = chunk[i];
      if (!p.frame.error.empty() || p.frame.faces.empty()) return;
      p.grey = is_grey(p.frame.image);
      p.linear = linear_image(p.frame.image, p.grey);
      for (auto& f : p.out) f.grey = p.grey;
    });
    parallel_for(work.size(), o.threads, [&](std::size_t k) {
      auto [i, j] = work[k];
      Photo& p = chunk[i];
      FaceOut& f = p.out[j];
      try {
        f.found = p.frame.faces[j];
        process_face(setup, p, j, o);
        if (!f.error.empty()) return;
        const auto& det = p.frame.faces[j].det;
        const auto& ypr = f.fit.yaw_pitch_roll;
        json meta = {{"format", "hfr-face-reconstruction/1"},
                     {"id", p.item.id},
                     {"source", p.item.path},
                     {"face", j},
                     {"subject", p.item.subject.empty() ? json() : json(p.item.subject)},
                     {"model", model_meta},
                     {"image_size", {p.frame.image.cols, p.frame.image.rows}},
                     {"box", {det.x0, det.y0, det.x1, det.y1}},
                     {"pose", {{"yaw", ypr[0]}, {"pitch", ypr[1]}, {"roll", ypr[2]}}},
                     {"fit", {{"rms_px", f.fit.rms_px},
                              {"rms_rel", f.fit.rms_rel},
                              {"eye_distance_px", f.fit.eye_distance_px},
                              {"identity_modes", o.fit.identity_modes},
                              {"depth_weight", o.fit.depth_weight}}},
                     {"texture", {{"size", o.texture_size},
                                  {"tile", "u in [0,1], v in [0,1] (v up; row 0 is v = 1)"},
                                  {"colour", p.grey ? "grey (linear)" : "linear RGB"},
                                  {"coverage", f.maps.coverage},
                                  {"sh_residual", f.maps.sh_residual},
                                  {"mean_albedo", f.maps.mean_albedo}}},
                     {"grey", p.grey},
                     {"conventions", "model space cm, +y up, +z to the viewer; camera = OpenCV (x right, y down, z forward); "
                                     "X_cam = rotation * X_model + translation; camera = fx, fy, cx, cy in pixels"},
                     {"hfr_version", kVersion}};
        write_face(f.file, setup, p, j, f, o, meta);
        if (!f.preview.empty()) write_preview(f.preview, setup, p, f);
      } catch (const std::exception& e) {
        f.error = brief(e);
      }
    });

    const double net_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - chunk_t0).count() /
                          static_cast<double>(chunk.size());
    for (auto& p : chunk) {
      const Record base = inputs::base_record(p.item, o.records);
      if (!p.frame.error.empty() || p.frame.faces.empty()) {
        Record r = base;
        r["error"] = p.frame.error.empty() ? "no face" : p.frame.error;
        if (p.frame.found > 0) r["faces_found"] = p.frame.found;  // e.g. too small, or several with --faces single
        rw.write(r);
        ++failed;
        log::warn(inputs::describe(p.item, r["error"].get<std::string>()));
        progress.add();
        continue;
      }
      bool any_failed = false;
      for (std::size_t j = 0; j < p.out.size(); ++j) {
        const FaceOut& f = p.out[j];
        const auto& det = p.frame.faces[j].det;
        Record r = base;
        r["id"] = p.out.size() > 1 ? p.item.id + "#" + std::to_string(j) : p.item.id;
        r["face"] = j;
        r["faces_found"] = p.frame.found;
        r["box"] = {round_decimals(det.x0, 2), round_decimals(det.y0, 2), round_decimals(det.x1, 2), round_decimals(det.y1, 2)};
        r["score"] = round_decimals(det.score, 4);
        r["model"] = setup.model.name;
        if (f.found.mesh_score >= 0) r["mesh_score"] = round_decimals(f.found.mesh_score, 3);
        if (!f.fit.projected.empty()) {
          r["yaw"] = round_decimals(f.fit.yaw_pitch_roll[0], 2);
          r["pitch"] = round_decimals(f.fit.yaw_pitch_roll[1], 2);
          r["roll"] = round_decimals(f.fit.yaw_pitch_roll[2], 2);
          r["rms_px"] = round_decimals(f.fit.rms_px, 3);
          r["rms_rel"] = round_decimals(f.fit.rms_rel, 4);
        }
        if (!f.error.empty()) {
          r["error"] = f.error;
          any_failed = true;
          log::warn(r["id"].get<std::string>() + ": " + f.error);
        } else {
          r["reconstruction"] = inputs::relative_ref(f.file, o.records, false);
          r["coverage"] = round_decimals(f.maps.coverage, 4);
          r["grey"] = p.grey;
          if (!f.preview.empty()) r["preview"] = inputs::relative_ref(f.preview, o.records, false);
          ++faces_ok;
        }
        if (o.timing) {
          r["latency_ms"] = round_decimals(p.decode_ms + net_ms, 2);
          r["fit_ms"] = round_decimals(f.fit_ms, 2);
          r["unwrap_ms"] = round_decimals(f.unwrap_ms, 2);
        }
        rw.write(r);
      }
      if (any_failed) ++failed;
      progress.add();
    }
    rw.flush();
  }
  progress.finish();
  records_out->commit();
  log::notice(std::to_string(items.size()) + " photos, " + std::to_string(faces_ok) + " faces reconstructed, " +
              std::to_string(failed) + " failed");
  return failed ? kExitPartial : kExitOk;
}

}  // namespace hfr::reconstruct
