// Face geometry: see face.hpp for the conventions and provenance.
#include "hfr/face.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <opencv2/imgproc.hpp>

#include "hfr/error.hpp"

namespace hfr::face {
namespace {

// A 2×3 matrix as 3×3, for composition.
cv::Matx33d full(const cv::Matx23d& m) {
  return {m(0, 0), m(0, 1), m(0, 2), m(1, 0), m(1, 1), m(1, 2), 0, 0, 1};
}
cv::Matx23d part(const cv::Matx33d& m) { return {m(0, 0), m(0, 1), m(0, 2), m(1, 0), m(1, 1), m(1, 2)}; }

// Scales an image by (qx, qy) = new size / old size, mapping pixel centres
// as cv::resize does: x' = qx·(x + 0.5) − 0.5.
cv::Matx23d resize_matrix(double qx, double qy) { return {qx, 0, 0.5 * qx - 0.5, 0, qy, 0.5 * qy - 0.5}; }

void check_size(const Floats& f, std::size_t want, const char* name) {
  if (!f.data || f.size != want)
    throw Error(std::string("BlazeFace output ") + name + ": expected " + std::to_string(want) + " floats, got " +
                std::to_string(f.data ? f.size : 0));
}

void check_image(const cv::Mat& image, const char* what) {
  if (image.empty()) throw Error(std::string(what) + ": empty image");
  if (image.depth() != CV_8U || (image.channels() != 1 && image.channels() != 3))
    throw Error(std::string(what) + ": expected an 8-bit grey or RGB image, got type " + std::to_string(image.type()));
}

}  // namespace

// --- letterbox ---------------------------------------------------------------

Letterbox Letterbox::fit(int width, int height, int size) {
  if (width <= 0 || height <= 0 || size <= 0)
    throw Error("letterbox: bad sizes " + std::to_string(width) + "x" + std::to_string(height) + " -> " +
                std::to_string(size));
  Letterbox lb;
  lb.width = width;
  lb.height = height;
  lb.size = size;
  const double s = static_cast<double>(size) / std::max(width, height);
  lb.scaled_width = std::clamp(static_cast<int>(std::lround(width * s)), 1, size);
  lb.scaled_height = std::clamp(static_cast<int>(std::lround(height * s)), 1, size);
  lb.pad_x = (size - lb.scaled_width) / 2;
  lb.pad_y = (size - lb.scaled_height) / 2;
  lb.scale_x = static_cast<double>(lb.scaled_width) / width;
  lb.scale_y = static_cast<double>(lb.scaled_height) / height;
  return lb;
}

cv::Point2d Letterbox::to_input(cv::Point2d p) const {
  return {scale_x * (p.x + 0.5) + pad_x - 0.5, scale_y * (p.y + 0.5) + pad_y - 0.5};
}

cv::Point2d Letterbox::to_image(cv::Point2d p) const {
  return {(p.x + 0.5 - pad_x) / scale_x - 0.5, (p.y + 0.5 - pad_y) / scale_y - 0.5};
}

cv::Matx23d Letterbox::image_to_input() const {
  return {scale_x, 0, 0.5 * scale_x + pad_x - 0.5, 0, scale_y, 0.5 * scale_y + pad_y - 0.5};
}

std::vector<float> blazeface_input(const cv::Mat& rgb, const Letterbox& lb) {
  check_image(rgb, "BlazeFace input");
  if (rgb.cols != lb.width || rgb.rows != lb.height)
    throw Error("BlazeFace input: image is " + std::to_string(rgb.cols) + "x" + std::to_string(rgb.rows) +
                ", letterbox made for " + std::to_string(lb.width) + "x" + std::to_string(lb.height));
  cv::Mat scaled;
  if (lb.scaled_width == rgb.cols && lb.scaled_height == rgb.rows)
    scaled = rgb;
  else
    cv::resize(rgb, scaled, cv::Size(lb.scaled_width, lb.scaled_height), 0, 0,
               lb.scaled_width < rgb.cols ? cv::INTER_AREA : cv::INTER_LINEAR);
  const int n = lb.size;
  const std::size_t plane = static_cast<std::size_t>(n) * n;
  std::vector<float> out(3 * plane, -1.f);
  const int ch = scaled.channels();
  for (int y = 0; y < scaled.rows; ++y) {
    const unsigned char* row = scaled.ptr<unsigned char>(y);
    const std::size_t base = static_cast<std::size_t>(y + lb.pad_y) * n + lb.pad_x;
    for (int x = 0; x < scaled.cols; ++x)
      for (int c = 0; c < 3; ++c) out[c * plane + base + x] = row[x * ch + (ch == 3 ? c : 0)] / 127.5f - 1.f;
  }
  return out;
}

// --- BlazeFace -------------------------------------------------------------

const std::vector<cv::Point2d>& blazeface_anchors() {
  static const std::vector<cv::Point2d> anchors = [] {
    std::vector<cv::Point2d> a;
    a.reserve(kBlazeFaceAnchors);
    for (auto [grid, per_cell] : {std::pair{16, 2}, std::pair{8, 6}})
      for (int y = 0; y < grid; ++y)
        for (int x = 0; x < grid; ++x)
          for (int k = 0; k < per_cell; ++k) a.emplace_back((x + 0.5) / grid, (y + 0.5) / grid);
    return a;
  }();
  return anchors;
}

double iou(const Detection& a, const Detection& b) {
  const double w = std::min(a.x1, b.x1) - std::max(a.x0, b.x0);
  const double h = std::min(a.y1, b.y1) - std::max(a.y0, b.y0);
  if (w <= 0 || h <= 0) return 0;
  const double inter = w * h;
  const double uni = a.width() * a.height() + b.width() * b.height() - inter;
  return uni > 0 ? inter / uni : 0;
}

std::vector<Detection> weighted_nms(std::vector<Detection> dets, double iou_threshold, int max_faces) {
  std::stable_sort(dets.begin(), dets.end(), [](const Detection& a, const Detection& b) { return a.score > b.score; });
  std::vector<Detection> out;
  std::vector<Detection> rest;
  while (!dets.empty() && (max_faces <= 0 || static_cast<int>(out.size()) < max_faces)) {
    const Detection top = dets.front();
    Detection sum{};
    double total = 0;
    rest.clear();
    for (const Detection& d : dets) {
      if (iou(d, top) <= iou_threshold) {
        rest.push_back(d);
        continue;
      }
      const double w = d.score;
      total += w;
      sum.x0 += w * d.x0, sum.y0 += w * d.y0, sum.x1 += w * d.x1, sum.y1 += w * d.y1;
      for (int k = 0; k < 6; ++k) sum.keypoints[k] += w * d.keypoints[k];
    }
    Detection merged = top;  // keeps the best score (mediapipe does the same)
    if (total > 0) {         // top itself is a candidate unless its box is degenerate
      merged.x0 = sum.x0 / total, merged.y0 = sum.y0 / total, merged.x1 = sum.x1 / total, merged.y1 = sum.y1 / total;
      for (int k = 0; k < 6; ++k) merged.keypoints[k] = sum.keypoints[k] / total;
    }
    out.push_back(merged);
    if (rest.size() == dets.size()) rest.erase(rest.begin());  // degenerate top box: drop it, go on
    dets.swap(rest);
  }
  return out;
}

std::vector<Detection> decode_blazeface(Floats identity, Floats identity_1, Floats identity_2, Floats identity_3,
                                        const Letterbox& lb, const BlazeFaceOptions& opt) {
  check_size(identity, 512, "Identity [1,512,1]");
  check_size(identity_1, 384, "Identity_1 [1,384,1]");
  check_size(identity_2, 512 * 16, "Identity_2 [1,512,16]");
  check_size(identity_3, 384 * 16, "Identity_3 [1,384,16]");
  const auto& anchors = blazeface_anchors();
  const double n = kBlazeFaceSize;
  // Decoded in input pixels measured from the input's edge (the network's
  // frame); NMS there, as mediapipe does before removing the letterbox.
  std::vector<Detection> dets;
  for (int i = 0; i < kBlazeFaceAnchors; ++i) {
    const bool fine = i < 512;
    float logit = fine ? identity.data[i] : identity_1.data[i - 512];
    if (std::isnan(logit)) continue;
    logit = std::clamp(logit, -opt.logit_clip, opt.logit_clip);
    const float score = 1.f / (1.f + std::exp(-logit));
    if (score < opt.score_threshold) continue;
    const float* r = fine ? identity_2.data + 16 * i : identity_3.data + 16 * (i - 512);
    const double w = r[2], h = r[3];
    if (!(w >= 0 && h >= 0)) continue;  // negative or NaN size
    const double ax = anchors[i].x * n, ay = anchors[i].y * n;
    Detection d;
    d.score = score;
    d.x0 = ax + r[0] - w / 2, d.x1 = ax + r[0] + w / 2;
    d.y0 = ay + r[1] - h / 2, d.y1 = ay + r[1] + h / 2;
    for (int k = 0; k < 6; ++k) d.keypoints[k] = {ax + r[4 + 2 * k], ay + r[5 + 2 * k]};
    dets.push_back(d);
  }
  dets = weighted_nms(std::move(dets), opt.iou_threshold, opt.max_faces);
  const cv::Point2d half(0.5, 0.5);  // edge-based → pixel-centre coordinates
  for (Detection& d : dets) {
    const cv::Point2d a = lb.to_image(cv::Point2d(d.x0, d.y0) - half), b = lb.to_image(cv::Point2d(d.x1, d.y1) - half);
    d.x0 = a.x, d.y0 = a.y, d.x1 = b.x, d.y1 = b.y;
    for (auto& k : d.keypoints) k = lb.to_image(k - half);
  }
  return dets;
}

// --- five points -----------------------------------------------------------

Points5 five_points(const Detection& d) {
  constexpr double kHalfMouth = 0.5 * (70.7299 - 41.5493) / (73.5318 - 38.2946);  // 0.41406
  const cv::Point2d eyes = d.keypoints[left_eye] - d.keypoints[right_eye];
  const cv::Point2d m = d.keypoints[mouth_centre];
  return {d.keypoints[right_eye], d.keypoints[left_eye], d.keypoints[nose_tip], m - kHalfMouth * eyes,
          m + kHalfMouth * eyes};
}

const std::vector<int>& mesh_face_oval() {
  static const std::vector<int> oval = {10,  338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
                                        152, 148, 176, 149, 150, 136, 172, 58,  132, 93,  234, 127, 162, 21,  54,  103, 67,  109};
  return oval;
}

Points5 five_points_from_mesh(const std::vector<cv::Point3d>& mesh) {
  if (mesh.size() < 468) throw Error("facemesh: expected 468 points, got " + std::to_string(mesh.size()));
  static const int kRightEye[] = {246, 161, 160, 159, 158, 157, 173, 33, 7, 163, 144, 145, 153, 154, 155, 133};
  static const int kLeftEye[] = {466, 388, 387, 386, 385, 384, 398, 263, 249, 390, 373, 374, 380, 381, 382, 362};
  auto mean = [&](const int* idx) {
    cv::Point2d s;
    for (int i = 0; i < 16; ++i) s += cv::Point2d(mesh[idx[i]].x, mesh[idx[i]].y);
    return s / 16.0;
  };
  auto xy = [&](int i) { return cv::Point2d(mesh[i].x, mesh[i].y); };
  return {mean(kRightEye), mean(kLeftEye), xy(1), xy(61), xy(291)};
}

// --- facemesh crop ---------------------------------------------------------

cv::Matx23d FaceRoi::crop_to_image() const {
  const double k = side / crop_size, c = std::cos(angle) * k, s = std::sin(angle) * k;
  const double o = 0.5 - crop_size / 2.0;  // crop pixel centre (0,0) relative to the crop's centre
  return {c, -s, centre.x + c * o - s * o, s, c, centre.y + s * o + c * o};
}

cv::Matx23d FaceRoi::image_to_crop() const { return invert(crop_to_image()); }

FaceRoi facemesh_roi(const Detection& d, double enlarge, int crop_size) {
  if (!(d.width() > 0 && d.height() > 0) || crop_size <= 0 || !(enlarge > 0))
    throw Error("facemesh crop: degenerate detection box or crop size");
  FaceRoi roi;
  roi.centre = {(d.x0 + d.x1) / 2, (d.y0 + d.y1) / 2};
  roi.side = enlarge * std::max(d.width(), d.height());
  const cv::Point2d e = d.keypoints[left_eye] - d.keypoints[right_eye];
  roi.angle = std::atan2(e.y, e.x);
  roi.crop_size = crop_size;
  return roi;
}

cv::Mat warp_roi(const cv::Mat& image, const FaceRoi& roi) {
  check_image(image, "facemesh crop");
  cv::Mat out;
  cv::warpAffine(image, out, roi.image_to_crop(), cv::Size(roi.crop_size, roi.crop_size), cv::INTER_LINEAR,
                 cv::BORDER_REPLICATE);
  return out;
}

std::vector<float> facemesh_input(const cv::Mat& rgb, const FaceRoi& roi) {
  const cv::Mat crop = warp_roi(rgb, roi);
  const std::size_t plane = static_cast<std::size_t>(crop.rows) * crop.cols;
  std::vector<float> out(3 * plane);
  const int ch = crop.channels();
  for (int y = 0; y < crop.rows; ++y) {
    const unsigned char* row = crop.ptr<unsigned char>(y);
    for (int x = 0; x < crop.cols; ++x)
      for (int c = 0; c < 3; ++c)
        out[c * plane + static_cast<std::size_t>(y) * crop.cols + x] = row[x * ch + (ch == 3 ? c : 0)] / 255.f;
  }
  return out;
}

std::vector<cv::Point3d> mesh_to_image(Floats raw, const FaceRoi& roi) {
  if (!raw.data || raw.size == 0 || raw.size % 3 != 0)
    throw Error("facemesh output: expected 3·N floats, got " + std::to_string(raw.size));
  const cv::Matx23d m = roi.crop_to_image();
  const double k = roi.side / roi.crop_size;
  std::vector<cv::Point3d> pts(raw.size / 3);
  for (std::size_t i = 0; i < pts.size(); ++i) {
    const cv::Point2d p = apply(m, {raw.data[3 * i] - 0.5, raw.data[3 * i + 1] - 0.5});
    pts[i] = {p.x, p.y, raw.data[3 * i + 2] * k};
  }
  return pts;
}

// --- similarity alignment --------------------------------------------------

cv::Point2d apply(const cv::Matx23d& m, cv::Point2d p) {
  return {m(0, 0) * p.x + m(0, 1) * p.y + m(0, 2), m(1, 0) * p.x + m(1, 1) * p.y + m(1, 2)};
}

cv::Matx23d invert(const cv::Matx23d& m) {
  const double det = m(0, 0) * m(1, 1) - m(0, 1) * m(1, 0);
  if (!(std::abs(det) > 1e-300) || !std::isfinite(det)) throw Error("affine matrix is singular");
  const double a = m(1, 1) / det, b = -m(0, 1) / det, c = -m(1, 0) / det, d = m(0, 0) / det;
  return {a, b, -(a * m(0, 2) + b * m(1, 2)), c, d, -(c * m(0, 2) + d * m(1, 2))};
}

cv::Matx23d similarity_transform(const std::vector<cv::Point2d>& src, const std::vector<cv::Point2d>& dst) {
  if (src.size() != dst.size() || src.size() < 2)
    throw Error("similarity transform: need at least 2 point pairs, got " + std::to_string(src.size()) + " and " +
                std::to_string(dst.size()));
  const double n = static_cast<double>(src.size());
  const cv::Point2d ms = std::accumulate(src.begin(), src.end(), cv::Point2d()) / n;
  const cv::Point2d md = std::accumulate(dst.begin(), dst.end(), cv::Point2d()) / n;
  double ss = 0, dot = 0, cross = 0;
  for (std::size_t i = 0; i < src.size(); ++i) {
    const cv::Point2d s = src[i] - ms, d = dst[i] - md;
    ss += s.dot(s);
    dot += s.dot(d);
    cross += s.x * d.y - s.y * d.x;
  }
  if (!(ss > 1e-12 * (1 + ms.dot(ms))) || !std::isfinite(ss + dot + cross))
    throw Error("similarity transform: source points coincide or are not finite");
  const double a = dot / ss, b = cross / ss;
  return {a, -b, md.x - (a * ms.x - b * ms.y), b, a, md.y - (b * ms.x + a * ms.y)};
}

namespace {
std::vector<Template> make_templates() {
  return {
      {"arcface-112",
       112,
       {{{38.2946, 51.6963}, {73.5318, 51.5014}, {56.0252, 71.7366}, {41.5493, 92.3655}, {70.7299, 92.2041}}}},
      // dlib mean face (interpolation.h), padding 0.25, size 150: see face.hpp.
      {"dlib-150",
       150,
       {{{47.5492, 46.5990}, {100.4761, 46.5990}, {74.0127, 76.5625}, {50.4149, 103.0233}, {97.6104, 103.0233}}}},
      // mediapipe canonical face in Human's 1.5× mesh box, squared, 224 px: see face.hpp.
      {"faceres-224",
       224,
       {{{85.1029, 84.8930}, {138.8971, 84.8930}, {112.0000, 116.7007}, {91.2363, 143.8853}, {132.7637, 143.8853}}}},
  };
}
}  // namespace

const std::vector<std::string>& template_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& t : make_templates()) v.push_back(t.name);
    return v;
  }();
  return names;
}

const Template& face_template(const std::string& name) {
  static const std::vector<Template> templates = make_templates();
  for (const auto& t : templates)
    if (t.name == name) return t;
  std::string known;
  for (const auto& t : templates) known += (known.empty() ? "" : ", ") + t.name;
  throw Error("unknown alignment template '" + name + "' (known: " + known + ")");
}

Template scale_template(const Template& t, int size) {
  if (size <= 0 || t.size <= 0) throw Error("template " + t.name + ": bad size " + std::to_string(size));
  Template out = t;
  out.size = size;
  const double s = static_cast<double>(size) / t.size;
  for (auto& p : out.points) p = {(p.x + 0.5) * s - 0.5, (p.y + 0.5) * s - 0.5};
  if (size != t.size) out.name = t.name + "@" + std::to_string(size);
  return out;
}

namespace {

// Bilinear warp in double precision. cv::warpAffine quantises sample
// positions to 1/32 pixel, so a landmark moving by 1e-4 px (float rounding in
// the detector, which differs with thread count and batch size) flips some
// samples to the next position and changes crop pixels by whole grey levels;
// here the crop is a continuous function of the landmarks.
cv::Mat warp_bilinear(const cv::Mat& src, const cv::Matx23d& m, int size, Border border) {
  const cv::Matx23d inv = invert(m);
  const int ch = src.channels();
  cv::Mat out(size, size, src.type());
  const int w = src.cols, h = src.rows;
  for (int y = 0; y < size; ++y) {
    unsigned char* o = out.ptr<unsigned char>(y);
    for (int x = 0; x < size; ++x) {
      double sx = inv(0, 0) * x + inv(0, 1) * y + inv(0, 2);
      double sy = inv(1, 0) * x + inv(1, 1) * y + inv(1, 2);
      double fx = std::floor(sx), fy = std::floor(sy);
      int x0 = static_cast<int>(fx), y0 = static_cast<int>(fy);
      double ax = sx - fx, ay = sy - fy;
      for (int c = 0; c < ch; ++c) {
        auto at = [&](int xx, int yy) -> double {
          if (border == Border::replicate) {
            xx = std::clamp(xx, 0, w - 1);
            yy = std::clamp(yy, 0, h - 1);
          } else if (xx < 0 || yy < 0 || xx >= w || yy >= h) {
            return 0.0;
          }
          return src.ptr<unsigned char>(yy)[xx * ch + c];
        };
        double v = (1 - ay) * ((1 - ax) * at(x0, y0) + ax * at(x0 + 1, y0)) + ay * ((1 - ax) * at(x0, y0 + 1) + ax * at(x0 + 1, y0 + 1));
        o[x * ch + c] = static_cast<unsigned char>(std::clamp(std::lround(v), 0L, 255L));
      }
    }
  }
  return out;
}

}  // namespace

AlignedFace align_face(const cv::Mat& image, const Points5& points, const Template& tmpl, int out_size, Border border) {
  check_image(image, "align");
  const Template t = out_size > 0 && out_size != tmpl.size ? scale_template(tmpl, out_size) : tmpl;
  AlignedFace r;
  r.matrix = similarity_transform({points.begin(), points.end()}, {t.points.begin(), t.points.end()});
  const double scale = std::hypot(r.matrix(0, 0), r.matrix(1, 0));
  cv::Mat src = image;
  cv::Matx23d warp = r.matrix;
  if (scale < 0.5) {  // reduce first (area averaging) so that the bilinear warp is at about 1:1
    const cv::Size sz(std::max(1, static_cast<int>(std::lround(image.cols * scale))),
                      std::max(1, static_cast<int>(std::lround(image.rows * scale))));
    cv::resize(image, src, sz, 0, 0, cv::INTER_AREA);
    const cv::Matx23d pre = resize_matrix(static_cast<double>(sz.width) / image.cols,
                                          static_cast<double>(sz.height) / image.rows);
    warp = part(full(r.matrix) * full(invert(pre)));
  }
  r.image = warp_bilinear(src, warp, t.size, border);
  return r;
}

}  // namespace hfr::face
