// Where MediaPipe's 468 canonical face points lie on the ICT FaceKit neutral.
//
// register_facemesh: a similarity (Umeyama) from semantic anchors (ICT
// multi-PIE 68 landmark vertices against their face-mesh counterparts), then
// alternating
//   1. closest points of the transformed canonical points on the deformed ICT
//      face surface (region "face_narrow": hairline to jaw, without ears,
//      neck, eyeballs or mouth interior; brute force with bounding-sphere
//      pruning, warm-started from the previous iteration's triangle),
//   2. a ridge fit of all identity modes (prior |a|^2) to those closest
//      points plus the anchors,
//   3. a weighted similarity refit of the canonical points onto the deformed
//      surface points,
// until the points stop moving. Everything is sequential and deterministic.
//
// The stored correspondence (libcommon/data/ict_facemesh_correspondence.json,
// compiled in by builtin_ict_correspondence) is this registration refined by
// calibration on renders (reconstruct::calibrate_correspondence). To
// regenerate it, run (one command line)
//   HFR_WRITE_CORRESPONDENCE=libcommon/data/ict_facemesh_correspondence.json
//   build/tests/hfr_unit_reconstruct "[correspondence]"
// then rebuild so the new file is compiled in (needs ../shared/data/ict-facekit
// and the fetched models); that test checks that the stored file equals a
// fresh calibration.
#include "hfr/correspondence.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <limits>

#include <Eigen/Dense>
#include <nlohmann/json.hpp>

#include "hfr/error.hpp"

namespace hfr::morph {
namespace {

using nlohmann::json;
using Vec3 = Eigen::Vector3d;

const char* const kFormat = "hfr-ict-facemesh-correspondence/1";
constexpr int kCanonicalVertices = 468;

// (ICT multi-PIE 68 index, face-mesh vertex): eye corners, nose tip (the
// face-mesh vertex with the largest z is 4; 1 lies below it), nose base, mouth
// corners, upper and lower lip middle, chin.
const int kAnchors[][2] = {{36, 33}, {39, 133}, {42, 362}, {45, 263}, {30, 4}, {33, 2},
                           {48, 61}, {54, 291}, {51, 0},   {57, 17},  {8, 152}};
constexpr double kAnchorWeight = 3.0;  // per anchor, relative to one surface point (weight 1)
// Prior weight on |a|^2 (cm^2 per unit coefficient^2). Weaker priors fit the
// canonical shape closer (0.2: rms 0.6 mm, |a| 3.4) but the closest points then
// keep sliding for hundreds of iterations; 5 gives rms ~1.1 mm, |a| ~0.6 and
// converges in well under 100 iterations.
constexpr double kRidge = 5.0;
constexpr int kMaxIterations = 100;
constexpr double kConverged = 1e-4;  // cm: largest move of a transformed canonical point

struct Similarity {
  double s = 1;
  Eigen::Matrix3d R = Eigen::Matrix3d::Identity();
  Vec3 t = Vec3::Zero();
  Vec3 operator()(const Vec3& x) const { return s * (R * x) + t; }
};

// Weighted Umeyama: the similarity mapping x to y best in least squares.
Similarity umeyama(const std::vector<Vec3>& x, const std::vector<Vec3>& y, const std::vector<double>& w) {
  double W = 0;
  Vec3 mx = Vec3::Zero(), my = Vec3::Zero();
  for (std::size_t i = 0; i < x.size(); ++i) W += w[i], mx += w[i] * x[i], my += w[i] * y[i];
  mx /= W;
  my /= W;
  Eigen::Matrix3d C = Eigen::Matrix3d::Zero();
  double var = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    C += w[i] * (y[i] - my) * (x[i] - mx).transpose();
    var += w[i] * (x[i] - mx).squaredNorm();
  }
  C /= W;
  var /= W;
  Eigen::JacobiSVD<Eigen::Matrix3d> svd(C, Eigen::ComputeFullU | Eigen::ComputeFullV);
  Eigen::Vector3d d(1, 1, (svd.matrixU().determinant() * svd.matrixV().determinant() < 0) ? -1 : 1);
  Similarity S;
  S.R = svd.matrixU() * d.asDiagonal() * svd.matrixV().transpose();
  S.s = svd.singularValues().dot(d) / var;
  S.t = my - S.s * (S.R * mx);
  return S;
}

// Closest point on triangle (a, b, c) to p (Ericson, Real-Time Collision
// Detection 5.1.5); returns the barycentrics.
Vec3 closest_on_triangle(const Vec3& p, const Vec3& a, const Vec3& b, const Vec3& c) {
  const Vec3 ab = b - a, ac = c - a, ap = p - a;
  const double d1 = ab.dot(ap), d2 = ac.dot(ap);
  if (d1 <= 0 && d2 <= 0) return {1, 0, 0};
  const Vec3 bp = p - b;
  const double d3 = ab.dot(bp), d4 = ac.dot(bp);
  if (d3 >= 0 && d4 <= d3) return {0, 1, 0};
  const double vc = d1 * d4 - d3 * d2;
  if (vc <= 0 && d1 >= 0 && d3 <= 0) {
    const double v = d1 / (d1 - d3);
    return {1 - v, v, 0};
  }
  const Vec3 cp = p - c;
  const double d5 = ab.dot(cp), d6 = ac.dot(cp);
  if (d6 >= 0 && d5 <= d6) return {0, 0, 1};
  const double vb = d5 * d2 - d1 * d6;
  if (vb <= 0 && d2 >= 0 && d6 <= 0) {
    const double w = d2 / (d2 - d6);
    return {1 - w, 0, w};
  }
  const double va = d3 * d6 - d5 * d4;
  if (va <= 0 && (d4 - d3) >= 0 && (d5 - d6) >= 0) {
    const double w = (d4 - d3) / ((d4 - d3) + (d5 - d6));
    return {0, 1 - w, w};
  }
  const double denom = 1 / (va + vb + vc);
  const double v = vb * denom, w = vc * denom;
  return {1 - v - w, v, w};
}

struct Hit {
  std::int32_t triangle = -1;
  Vec3 bary{1, 0, 0};
  double dist2 = std::numeric_limits<double>::infinity();
};

class SurfaceSearch {
 public:
  SurfaceSearch(const mesh::TriMesh& topo, std::int64_t t0, std::int64_t t1) : topo_(topo), t0_(t0), t1_(t1) {}

  void update(const Eigen::VectorXd& X) {
    X_ = &X;
    const std::size_t n = static_cast<std::size_t>(t1_ - t0_);
    centre_.resize(n);
    radius_.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      Vec3 a, b, c;
      corners(t0_ + static_cast<std::int64_t>(i), a, b, c);
      centre_[i] = (a + b + c) / 3;
      radius_[i] = std::sqrt(std::max({(a - centre_[i]).squaredNorm(), (b - centre_[i]).squaredNorm(),
                                       (c - centre_[i]).squaredNorm()}));
    }
  }

  Hit closest(const Vec3& p, std::int32_t hint) const {
    Hit h;
    if (hint >= t0_ && hint < t1_) test(p, hint, h);
    double bound = std::sqrt(h.dist2);
    for (std::size_t i = 0; i < centre_.size(); ++i) {
      const double reach = bound + radius_[i];
      if ((p - centre_[i]).squaredNorm() >= reach * reach) continue;
      if (test(p, static_cast<std::int32_t>(t0_ + static_cast<std::int64_t>(i)), h)) bound = std::sqrt(h.dist2);
    }
    return h;
  }

  Vec3 point(std::int32_t t, const Vec3& bary) const {
    Vec3 a, b, c;
    corners(t, a, b, c);
    return bary[0] * a + bary[1] * b + bary[2] * c;
  }

 private:
  void corners(std::int64_t t, Vec3& a, Vec3& b, Vec3& c) const {
    const std::int32_t* v = &topo_.triangles[3 * static_cast<std::size_t>(t)];
    a = X_->segment<3>(3 * v[0]);
    b = X_->segment<3>(3 * v[1]);
    c = X_->segment<3>(3 * v[2]);
  }
  bool test(const Vec3& p, std::int32_t t, Hit& h) const {
    Vec3 a, b, c;
    corners(t, a, b, c);
    const Vec3 bary = closest_on_triangle(p, a, b, c);
    const double d2 = (bary[0] * a + bary[1] * b + bary[2] * c - p).squaredNorm();
    if (d2 >= h.dist2) return false;
    h.dist2 = d2;
    h.triangle = t;
    h.bary = bary;
    return true;
  }

  const mesh::TriMesh& topo_;
  std::int64_t t0_, t1_;
  const Eigen::VectorXd* X_ = nullptr;
  std::vector<Vec3> centre_;
  std::vector<double> radius_;
};

std::string fmt(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%.7g", x);
  return b;
}

}  // namespace

Correspondence register_facemesh(const MorphableModel& ict, const CanonicalFace& face, RegistrationReport* report) {
  const std::string what = "register_facemesh(" + ict.name + ")";
  if (face.vertices.size() != kCanonicalVertices) throw Error(what + ": the canonical face must have 468 vertices");
  if (ict.landmarks68.size() != 68) throw Error(what + ": the model has no multi-PIE 68 landmarks");
  const Range* region = ict.region("face_narrow");
  if (!region) region = ict.region("face");
  if (!region || region->t1 <= region->t0) throw Error(what + ": the model has no face region");
  const std::int64_t nv = ict.neutral.num_vertices();
  if (ict.identity.rows() != 3 * nv) throw Error(what + ": identity modes do not match the vertex count");
  const Eigen::Index K = ict.identity.cols();

  const int N = kCanonicalVertices;
  std::vector<Vec3> Q(N);
  for (int i = 0; i < N; ++i)
    Q[static_cast<std::size_t>(i)] = Vec3(face.vertices[static_cast<std::size_t>(i)][0], face.vertices[static_cast<std::size_t>(i)][1],
                                          face.vertices[static_cast<std::size_t>(i)][2]);
  const Eigen::VectorXd neutral =
      Eigen::Map<const Eigen::VectorXf>(ict.neutral.positions.data(), static_cast<Eigen::Index>(3 * nv)).cast<double>();
  const Eigen::MatrixXd U = ict.identity.cast<double>();
  const std::size_t NA = std::size(kAnchors);
  std::vector<std::int32_t> anchor_vertex(NA);
  for (std::size_t k = 0; k < NA; ++k) anchor_vertex[k] = ict.landmarks68[static_cast<std::size_t>(kAnchors[k][0])];

  // Initial similarity from the anchors on the neutral.
  Similarity S;
  {
    std::vector<Vec3> x, y;
    for (std::size_t k = 0; k < NA; ++k) {
      x.push_back(Q[static_cast<std::size_t>(kAnchors[k][1])]);
      y.push_back(neutral.segment<3>(3 * anchor_vertex[k]));
    }
    S = umeyama(x, y, std::vector<double>(NA, 1.0));
  }

  Eigen::VectorXd a = Eigen::VectorXd::Zero(K);
  Eigen::VectorXd X = neutral;
  SurfaceSearch search(ict.neutral, region->t0, region->t1);
  std::vector<Hit> hits(static_cast<std::size_t>(N));
  std::vector<Vec3> Y(static_cast<std::size_t>(N)), Yprev;
  int it = 0;
  for (; it < kMaxIterations; ++it) {
    for (int i = 0; i < N; ++i) Y[static_cast<std::size_t>(i)] = S(Q[static_cast<std::size_t>(i)]);
    search.update(X);
    for (int i = 0; i < N; ++i)
      hits[static_cast<std::size_t>(i)] = search.closest(Y[static_cast<std::size_t>(i)], hits[static_cast<std::size_t>(i)].triangle);
    if (!Yprev.empty()) {
      double move = 0;
      for (int i = 0; i < N; ++i) move = std::max(move, (Y[static_cast<std::size_t>(i)] - Yprev[static_cast<std::size_t>(i)]).norm());
      if (move < kConverged) break;
    }
    Yprev = Y;

    // Identity fit: surface points at fixed barycentrics, and the anchor vertices.
    const Eigen::Index rows = static_cast<Eigen::Index>(3 * (N + NA));
    Eigen::MatrixXd A = Eigen::MatrixXd::Zero(rows, K);
    Eigen::VectorXd r(rows);
    for (int i = 0; i < N; ++i) {
      const Hit& h = hits[static_cast<std::size_t>(i)];
      const std::int32_t* v = &ict.neutral.triangles[3 * static_cast<std::size_t>(h.triangle)];
      Vec3 base = Vec3::Zero();
      for (int c = 0; c < 3; ++c) {
        A.middleRows<3>(3 * i) += h.bary[c] * U.middleRows<3>(3 * v[c]);
        base += h.bary[c] * neutral.segment<3>(3 * v[c]);
      }
      r.segment<3>(3 * i) = Y[static_cast<std::size_t>(i)] - base;
    }
    for (std::size_t k = 0; k < NA; ++k) {
      const Eigen::Index row = static_cast<Eigen::Index>(3 * (N + k));
      A.middleRows<3>(row) = kAnchorWeight * U.middleRows<3>(3 * anchor_vertex[k]);
      r.segment<3>(row) =
          kAnchorWeight * (Y[static_cast<std::size_t>(kAnchors[k][1])] - neutral.segment<3>(3 * anchor_vertex[k]));
    }
    Eigen::MatrixXd H = A.transpose() * A;
    H.diagonal().array() += kRidge;
    a = H.ldlt().solve(A.transpose() * r);
    X = neutral + U * a;

    // Similarity refit onto the deformed surface.
    std::vector<Vec3> x, y;
    std::vector<double> w;
    for (int i = 0; i < N; ++i) {
      x.push_back(Q[static_cast<std::size_t>(i)]);
      const Hit& h = hits[static_cast<std::size_t>(i)];
      const std::int32_t* v = &ict.neutral.triangles[3 * static_cast<std::size_t>(h.triangle)];
      Vec3 p = Vec3::Zero();
      for (int c = 0; c < 3; ++c) p += h.bary[c] * X.segment<3>(3 * v[c]);
      y.push_back(p);
      w.push_back(1.0);
    }
    for (std::size_t k = 0; k < NA; ++k) {
      x.push_back(Q[static_cast<std::size_t>(kAnchors[k][1])]);
      y.push_back(X.segment<3>(3 * anchor_vertex[k]));
      w.push_back(kAnchorWeight * kAnchorWeight);
    }
    S = umeyama(x, y, w);
  }

  Correspondence c;
  c.num_vertices = nv;
  c.num_triangles = ict.neutral.num_triangles();
  double sum2 = 0, mx = 0;
  for (int i = 0; i < N; ++i) {
    const Hit& h = hits[static_cast<std::size_t>(i)];
    SurfacePoint p;
    p.triangle = h.triangle;
    p.b0 = static_cast<float>(h.bary[0]);
    p.b1 = static_cast<float>(h.bary[1]);
    p.b2 = static_cast<float>(h.bary[2]);
    c.points.push_back(p);
    const double d = std::sqrt(h.dist2);
    c.distance_cm.push_back(static_cast<float>(d));
    sum2 += d * d;
    mx = std::max(mx, d);
  }
  RegistrationReport rep;
  rep.rms_cm = std::sqrt(sum2 / N);
  rep.max_cm = mx;
  rep.iterations = it;
  c.note = "MediaPipe canonical face (468 points) registered onto the " + ict.name + " neutral region '" + region->name +
           "' (model sha256 " + ict.sha256 + ") by hfr register_facemesh: anchor similarity, then closest points + ridge fit of " +
           std::to_string(K) + " identity modes; scale " + fmt(S.s) + ", |a| " + fmt(a.norm()) + ", rms " + fmt(rep.rms_cm) +
           " cm, max " + fmt(rep.max_cm) + " cm, " + std::to_string(it) + " iterations";
  if (report) *report = rep;
  return c;
}

std::vector<SurfacePoint> closest_points(const MorphableModel& m, const std::string& region,
                                         const std::vector<std::array<double, 3>>& points, std::vector<float>* dist) {
  const Range* r = m.region(region);
  if (!r) throw Error(m.name + ": no region \"" + region + "\"");
  Eigen::VectorXd X(static_cast<Eigen::Index>(m.neutral.positions.size()));
  for (std::size_t i = 0; i < m.neutral.positions.size(); ++i) X[static_cast<Eigen::Index>(i)] = m.neutral.positions[i];
  SurfaceSearch search(m.neutral, r->t0, r->t1);
  search.update(X);
  std::vector<SurfacePoint> out;
  if (dist) dist->clear();
  for (const auto& p : points) {
    const Hit h = search.closest(Vec3(p[0], p[1], p[2]), -1);
    if (h.triangle < 0) throw Error(m.name + ": region \"" + region + "\" has no triangles");
    SurfacePoint sp;
    sp.triangle = h.triangle;
    sp.b0 = static_cast<float>(h.bary[0]);
    sp.b1 = static_cast<float>(h.bary[1]);
    sp.b2 = static_cast<float>(h.bary[2]);
    out.push_back(sp);
    if (dist) dist->push_back(static_cast<float>(std::sqrt(h.dist2)));
  }
  return out;
}

const std::vector<MeshArea>& face_mesh_areas() {
  static const std::vector<MeshArea> d = {
      {"lips", {61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185}},
      {"eye_right", {33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246}},
      {"eye_left", {263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466}},
      {"brow_right", {70, 63, 105, 66, 107, 55, 65, 52, 53, 46}},
      {"brow_left", {300, 293, 334, 296, 336, 285, 295, 282, 283, 276}},
      {"nose", {168, 417, 351, 358, 327, 2, 98, 129, 122, 193}},
      {"forehead", {54, 103, 67, 109, 10, 338, 297, 332, 284, 300, 293, 334, 296, 336, 9, 107, 66, 105, 63, 70}},
  };
  return d;
}

std::vector<std::array<float, 2>> uv_polygon(const MorphableModel& m, const Correspondence& c, const std::vector<int>& landmarks) {
  std::vector<std::array<float, 2>> poly;
  for (int i : landmarks) {
    if (i < 0 || static_cast<std::size_t>(i) >= c.points.size()) throw Error("uv_polygon: landmark " + std::to_string(i) + " out of range");
    poly.push_back(uv_of(m, c.points[static_cast<std::size_t>(i)]));
  }
  return poly;
}

std::string to_json(const Correspondence& c) {
  json head = {{"format", kFormat}, {"num_vertices", c.num_vertices}, {"num_triangles", c.num_triangles}, {"note", c.note}};
  std::string s = head.dump();
  s.pop_back();  // '}'
  s += ",\"points\":[";
  for (std::size_t i = 0; i < c.points.size(); ++i) {
    const SurfacePoint& p = c.points[i];
    const double d = i < c.distance_cm.size() ? c.distance_cm[i] : 0.0;
    s += (i ? ",\n[" : "\n[") + std::to_string(p.triangle) + "," + fmt(p.b0) + "," + fmt(p.b1) + "," + fmt(p.b2) + "," + fmt(d);
    if (c.spread_cm.size() == c.points.size()) s += "," + fmt(c.spread_cm[i]);
    s += "]";
  }
  s += "\n]}\n";
  return s;
}

Correspondence correspondence_from_json(const std::string& text, const std::string& name) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw FormatError(name + ": " + e.what());
  }
  if (!j.is_object()) throw FormatError(name + ": expected a JSON object");
  if (!j.contains("format") || j["format"] != kFormat) throw FormatError(name + ": format is not \"" + std::string(kFormat) + "\"");
  Correspondence c;
  for (const char* key : {"num_vertices", "num_triangles"}) {
    if (!j.contains(key) || !j[key].is_number_integer() || j[key].get<std::int64_t>() <= 0 ||
        j[key].get<std::int64_t>() > std::numeric_limits<std::int32_t>::max())
      throw FormatError(name + ": \"" + key + "\" must be a positive integer");
  }
  c.num_vertices = j["num_vertices"].get<std::int64_t>();
  c.num_triangles = j["num_triangles"].get<std::int64_t>();
  if (j.contains("note")) {
    if (!j["note"].is_string()) throw FormatError(name + ": \"note\" must be a string");
    c.note = j["note"].get<std::string>();
  }
  if (!j.contains("points") || !j["points"].is_array()) throw FormatError(name + ": no \"points\" list");
  const json& pts = j["points"];
  if (pts.size() != kCanonicalVertices)
    throw FormatError(name + ": " + std::to_string(pts.size()) + " points, expected " + std::to_string(kCanonicalVertices));
  for (std::size_t i = 0; i < pts.size(); ++i) {
    const std::string ctx = name + ": points[" + std::to_string(i) + "]";
    const json& p = pts[i];
    if (!p.is_array() || (p.size() != 5 && p.size() != 6))
      throw FormatError(ctx + ": expected [triangle, b0, b1, b2, distance] or [..., spread]");
    if (i > 0 && (p.size() == 6) != (c.spread_cm.size() == i)) throw FormatError(ctx + ": every point or none has a spread");
    if (!p[0].is_number_integer()) throw FormatError(ctx + ": triangle must be an integer");
    const std::int64_t t = p[0].get<std::int64_t>();
    if (t < 0 || t >= c.num_triangles)
      throw FormatError(ctx + ": triangle " + std::to_string(t) + " out of range (" + std::to_string(c.num_triangles) + " triangles)");
    double v[4];
    for (int k = 0; k < 4; ++k) {
      if (!p[k + 1].is_number()) throw FormatError(ctx + ": expected numbers");
      v[k] = p[k + 1].get<double>();
      if (!std::isfinite(v[k])) throw FormatError(ctx + ": non-finite value");
    }
    if (v[0] < -1e-4 || v[1] < -1e-4 || v[2] < -1e-4 || std::abs(v[0] + v[1] + v[2] - 1) > 1e-4)
      throw FormatError(ctx + ": barycentrics must be >= 0 and sum to 1");
    if (v[3] < 0) throw FormatError(ctx + ": negative distance");
    c.points.push_back(SurfacePoint{static_cast<std::int32_t>(t), static_cast<float>(v[0]), static_cast<float>(v[1]),
                                    static_cast<float>(v[2])});
    c.distance_cm.push_back(static_cast<float>(v[3]));
    if (p.size() == 6) {
      if (!p[5].is_number() || !std::isfinite(p[5].get<double>()) || p[5].get<double>() < 0)
        throw FormatError(ctx + ": spread must be a number >= 0");
      c.spread_cm.push_back(static_cast<float>(p[5].get<double>()));
    }
  }
  return c;
}

Correspondence builtin_ict_correspondence(const MorphableModel& ict) {
  static const char* const kBuiltin =
#include "hfr/ict_correspondence.inc"
      ;
  Correspondence c = correspondence_from_json(kBuiltin, "built-in ICT correspondence (libcommon/data/ict_facemesh_correspondence.json)");
  if (c.num_vertices != ict.neutral.num_vertices() || c.num_triangles != ict.neutral.num_triangles())
    throw Error(ict.source + ": the model has " + std::to_string(ict.neutral.num_vertices()) + " vertices and " +
                std::to_string(ict.neutral.num_triangles()) + " triangles; the built-in correspondence was made for " +
                std::to_string(c.num_vertices) + " and " + std::to_string(c.num_triangles));
  return c;
}

}  // namespace hfr::morph
