#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include <opencv2/imgproc.hpp>

#include "hfr/error.hpp"
#include "hfr/face.hpp"
#include "hfr/io.hpp"
#include "hfr/npy.hpp"

using namespace hfr;
using namespace hfr::face;

namespace {
const std::string kGolden = HFR_SOURCE_DIR "/tests/fixtures/golden/";

Tensor npy(const std::string& name) {
  auto in = io::open_input(kGolden + name);
  return read_npy(*in, name);
}
std::vector<float> floats(const std::string& name) {
  Tensor t = npy(name);
  REQUIRE(t.info.dtype == DType::f32);
  return std::vector<float>(t.as<float>(), t.as<float>() + t.info.nbytes() / 4);
}
std::vector<Detection> golden(const std::string& which, const Letterbox& lb, const BlazeFaceOptions& opt = {}) {
  const std::string p = "blazeface." + which + ".";
  return decode_blazeface(floats(p + "Identity.npy"), floats(p + "Identity_1.npy"), floats(p + "Identity_2.npy"),
                          floats(p + "Identity_3.npy"), lb, opt);
}
cv::Mat golden_photo() {  // uint8 HWC 256×256×3 RGB
  Tensor t = npy("blazeface.input_photo.npy");
  REQUIRE(t.info.shape == Shape{256, 256, 3});
  return cv::Mat(256, 256, CV_8UC3, t.ptr()).clone();
}
bool inside(const Detection& d, cv::Point2d p) { return p.x >= d.x0 && p.x <= d.x1 && p.y >= d.y0 && p.y <= d.y1; }
double dist(cv::Point2d a, cv::Point2d b) { return std::hypot(a.x - b.x, a.y - b.y); }

// Intensity-weighted centroid of a grey image within radius r of p.
cv::Point2d centroid(const cv::Mat& grey, cv::Point2d p, double r) {
  double sw = 0, sx = 0, sy = 0;
  for (int y = std::max(0, int(p.y - r)); y <= std::min(grey.rows - 1, int(p.y + r)); ++y)
    for (int x = std::max(0, int(p.x - r)); x <= std::min(grey.cols - 1, int(p.x + r)); ++x) {
      if (dist({double(x), double(y)}, p) > r) continue;
      const double w = grey.at<unsigned char>(y, x);
      sw += w, sx += w * x, sy += w * y;
    }
  REQUIRE(sw > 0);
  return {sx / sw, sy / sw};
}
// A black image with a Gaussian blob (peak 255, sigma s) at each point.
cv::Mat blobs(cv::Size size, const std::vector<cv::Point2d>& pts, double s) {
  cv::Mat img(size, CV_8UC1, cv::Scalar(0));
  for (int y = 0; y < size.height; ++y)
    for (int x = 0; x < size.width; ++x) {
      double v = 0;
      for (auto p : pts) v += 255 * std::exp(-((x - p.x) * (x - p.x) + (y - p.y) * (y - p.y)) / (2 * s * s));
      img.at<unsigned char>(y, x) = cv::saturate_cast<unsigned char>(v);
    }
  return img;
}
}  // namespace

TEST_CASE("face: BlazeFace anchors follow mediapipe's order", "[face]") {
  const auto& a = blazeface_anchors();
  REQUIRE(a.size() == 896);
  CHECK(a[0] == cv::Point2d(0.5 / 16, 0.5 / 16));
  CHECK(a[1] == a[0]);                                 // 2 anchors per cell
  CHECK(a[2] == cv::Point2d(1.5 / 16, 0.5 / 16));      // then the next column
  CHECK(a[32] == cv::Point2d(0.5 / 16, 1.5 / 16));     // then the next row
  CHECK(a[511] == cv::Point2d(15.5 / 16, 15.5 / 16));
  CHECK(a[512] == cv::Point2d(0.5 / 8, 0.5 / 8));      // 8×8 grid, 6 per cell
  CHECK(a[517] == a[512]);
  CHECK(a[518] == cv::Point2d(1.5 / 8, 0.5 / 8));
  CHECK(a[895] == cv::Point2d(7.5 / 8, 7.5 / 8));
}

TEST_CASE("face: BlazeFace finds the three faces of the golden photo", "[face]") {
  const auto dets = golden("photo", Letterbox::fit(256, 256));
  // The photo (central square of face-api's sample1.jpg) shows three women:
  // left in profile facing left, centre looking down, right frontal.
  REQUIRE(dets.size() == 3);
  for (const auto& d : dets) {
    INFO("box " << d.x0 << "," << d.y0 << " " << d.x1 << "," << d.y1 << " score " << d.score);
    CHECK(d.score > 0.7f);
    CHECK(d.width() > 25);
    CHECK(d.width() < 50);
    CHECK(std::abs(d.width() - d.height()) < 0.5);  // the back model regresses square-ish boxes
    for (int k : {right_eye, left_eye, nose_tip, mouth_centre}) CHECK(inside(d, d.keypoints[k]));
    const double eye_y = (d.keypoints[right_eye].y + d.keypoints[left_eye].y) / 2;
    CHECK(eye_y + 0.2 * d.height() < d.keypoints[mouth_centre].y);  // eyes well above the mouth
    CHECK(d.keypoints[nose_tip].y > eye_y);
  }
  CHECK(dets[0].score >= dets[1].score);
  CHECK(dets[1].score >= dets[2].score);
  // Sorted by x: left (profile), centre, right.
  auto byx = dets;
  std::sort(byx.begin(), byx.end(), [](auto& a, auto& b) { return a.x0 < b.x0; });
  CHECK(byx[0].x1 < 60);
  CHECK(byx[1].x0 > 100);
  CHECK(byx[1].x1 < 160);
  CHECK(byx[2].x0 > 200);
  CHECK(byx[0].y0 < 40);
  CHECK(byx[1].y0 > 45);
  for (int i : {1, 2}) {  // the two faces that look at the camera
    const Detection& d = byx[i];
    const double eyes = dist(d.keypoints[right_eye], d.keypoints[left_eye]);
    CHECK(eyes > 0.3 * d.width());
    CHECK(eyes < 0.5 * d.width());
    CHECK(d.keypoints[right_eye].x < d.keypoints[left_eye].x);  // unmirrored: subject's right eye on image left
    CHECK(d.keypoints[right_ear_tragion].x < d.keypoints[left_ear_tragion].x);
  }
  // The profile: both eyes nearly coincide, the visible ear is far behind them.
  CHECK(dist(byx[0].keypoints[right_eye], byx[0].keypoints[left_eye]) < 2);
  CHECK(byx[0].keypoints[left_ear_tragion].x - byx[0].keypoints[left_eye].x > 15);
}

TEST_CASE("face: BlazeFace on random bytes finds nothing", "[face]") {
  CHECK(golden("random", Letterbox::fit(256, 256)).empty());
  BlazeFaceOptions low;
  low.score_threshold = 0.05f;
  const auto weak = golden("random", Letterbox::fit(256, 256), low);
  REQUIRE(!weak.empty());
  CHECK(weak.front().score < 0.15f);
  // The photo at the same low threshold still puts its three faces first.
  const auto photo = golden("photo", Letterbox::fit(256, 256), low);
  REQUIRE(photo.size() > 3);
  CHECK(photo[2].score > 0.7f);
  CHECK(photo[3].score < 0.15f);
  low.max_faces = 2;
  CHECK(golden("photo", Letterbox::fit(256, 256), low).size() == 2);
}

TEST_CASE("face: BlazeFace output sizes are checked", "[face]") {
  std::vector<float> s512(512, -5.f), s384(384, -5.f), b512(512 * 16), b384(384 * 16), bad(100);
  const auto lb = Letterbox::fit(256, 256);
  CHECK(decode_blazeface(s512, s384, b512, b384, lb).empty());  // sigmoid(−5) = 0.0067
  s384[7] = 0.f;  // sigmoid(0) = 0.5 passes the threshold; anchor 512+7 = cell (1,0) of the 8×8 grid
  b384[7 * 16 + 2] = b384[7 * 16 + 3] = 32.f;
  const auto one = decode_blazeface(s512, s384, b512, b384, lb);
  REQUIRE(one.size() == 1);
  CHECK(one[0].score == 0.5f);
  CHECK(one[0].x0 == Approx(48 - 16 - 0.5));  // centre 1.5·32 = 48 from the edge, pixel-centre frame
  CHECK(one[0].y1 == Approx(16 + 16 - 0.5));
  s384[7] = -std::numeric_limits<float>::infinity();
  CHECK(decode_blazeface(s512, s384, b512, b384, lb).empty());
  CHECK_THROWS_WITH(decode_blazeface(s512, s384, bad, b384, lb), Catch::Contains("Identity_2"));
  CHECK_THROWS_AS(decode_blazeface(s512, bad, b512, b384, lb), Error);
}

TEST_CASE("face: letterbox maps image and input both ways", "[face]") {
  const auto lb = Letterbox::fit(640, 480);
  CHECK(lb.scaled_width == 256);
  CHECK(lb.scaled_height == 192);
  CHECK(lb.pad_x == 0);
  CHECK(lb.pad_y == 32);
  // Image edges land on the edges of the scaled area.
  CHECK(lb.to_input({-0.5, -0.5}).x == Approx(-0.5));
  CHECK(lb.to_input({-0.5, -0.5}).y == Approx(31.5));
  CHECK(lb.to_input({639.5, 479.5}).x == Approx(255.5));
  CHECK(lb.to_input({639.5, 479.5}).y == Approx(223.5));
  for (cv::Point2d p : {cv::Point2d(0, 0), cv::Point2d(123.25, 400.5), cv::Point2d(639, 479)}) {
    const cv::Point2d q = lb.to_image(lb.to_input(p));
    CHECK(q.x == Approx(p.x).margin(1e-9));
    CHECK(q.y == Approx(p.y).margin(1e-9));
    const cv::Point2d m = apply(lb.image_to_input(), p);
    CHECK(m.x == Approx(lb.to_input(p).x));
    CHECK(m.y == Approx(lb.to_input(p).y));
  }
  const auto tall = Letterbox::fit(300, 1000);
  CHECK(tall.scaled_width == 77);  // 300·0.256 = 76.8
  CHECK(tall.pad_x == 89);
  CHECK(tall.pad_y == 0);
  CHECK_THROWS_AS(Letterbox::fit(0, 10), Error);
}

TEST_CASE("face: BlazeFace input is letterboxed NCHW, x/127.5 − 1", "[face]") {
  // Golden photo: already 256×256, so the input is the pixels themselves.
  const cv::Mat photo = golden_photo();
  const auto in = blazeface_input(photo, Letterbox::fit(256, 256));
  REQUIRE(in.size() == 3u * 256 * 256);
  for (auto [x, y] : {std::pair{0, 0}, std::pair{17, 200}, std::pair{255, 3}})
    for (int c = 0; c < 3; ++c)
      CHECK(in[c * 65536 + y * 256 + x] == Approx(photo.at<cv::Vec3b>(y, x)[c] / 127.5 - 1));
  // 512×384 ramps (R = x/2, G = y/2, B = 7, floored) halve exactly: pixel pairs average.
  cv::Mat img(384, 512, CV_8UC3);
  for (int y = 0; y < 384; ++y)
    for (int x = 0; x < 512; ++x) img.at<cv::Vec3b>(y, x) = cv::Vec3b(x / 2, y / 2, 7);
  const auto lb = Letterbox::fit(512, 384);
  const auto v = blazeface_input(img, lb);
  CHECK(v[0] == -1.f);                         // top padding (32 rows)
  CHECK(v[2 * 65536 + 255 * 256 + 255] == -1.f);  // bottom padding
  for (auto [x, y] : {std::pair{0, 32}, std::pair{100, 100}, std::pair{255, 223}}) {
    const cv::Point2d src = lb.to_image({double(x), double(y)});  // centre of the pixel pair in the image
    CHECK(v[y * 256 + x] * 127.5 + 127.5 == Approx(std::floor(src.x) / 2).margin(1e-3));
    CHECK(v[65536 + y * 256 + x] * 127.5 + 127.5 == Approx(std::floor(src.y) / 2).margin(1e-3));
    CHECK(v[2 * 65536 + y * 256 + x] * 127.5 + 127.5 == Approx(7).margin(1e-3));
  }
  CHECK_THROWS_AS(blazeface_input(img, Letterbox::fit(640, 480)), Error);
}

TEST_CASE("face: decoded detections follow the letterbox back to the image", "[face]") {
  // The same raw outputs, as if the network had seen a 1024×512 image letterboxed.
  const auto ref = golden("photo", Letterbox::fit(256, 256));
  const auto lb = Letterbox::fit(1024, 512);  // scale 0.25, 64 rows of padding
  const auto dets = golden("photo", lb);
  REQUIRE(dets.size() == ref.size());
  for (std::size_t i = 0; i < dets.size(); ++i) {
    CHECK(dets[i].x0 == Approx((ref[i].x0 + 0.5) * 4 - 0.5));
    CHECK(dets[i].y0 == Approx((ref[i].y0 + 0.5 - 64) * 4 - 0.5));
    CHECK(dets[i].keypoints[nose_tip].y == Approx((ref[i].keypoints[nose_tip].y + 0.5 - 64) * 4 - 0.5));
    CHECK(dets[i].score == ref[i].score);
  }
}

TEST_CASE("face: weighted NMS blends overlapping detections", "[face]") {
  auto det = [](double x, float score) {
    Detection d;
    d.x0 = x, d.y0 = 0, d.x1 = x + 10, d.y1 = 10, d.score = score;
    for (auto& k : d.keypoints) k = {x, 1};
    return d;
  };
  const auto out = weighted_nms({det(1, 0.3f), det(0, 0.9f), det(50, 0.8f)}, 0.3, 0);
  REQUIRE(out.size() == 2);
  CHECK(out[0].score == 0.9f);  // the best score is kept, not averaged
  CHECK(out[0].x0 == Approx((0 * 0.9 + 1 * 0.3) / 1.2));
  CHECK(out[0].keypoints[3].x == Approx(0.25));
  CHECK(out[1].x0 == 50);
  CHECK(iou(det(0, 1), det(5, 1)) == Approx(50.0 / 150));
  CHECK(weighted_nms({det(0, 0.9f), det(50, 0.8f), det(100, 0.7f)}, 0.3, 2).size() == 2);
}

TEST_CASE("face: five points from BlazeFace keypoints", "[face]") {
  const auto dets = golden("photo", Letterbox::fit(256, 256));
  const Detection& d = dets[0];
  const Points5 p = five_points(d);
  CHECK(p[0] == d.keypoints[right_eye]);
  CHECK(p[1] == d.keypoints[left_eye]);
  CHECK(p[2] == d.keypoints[nose_tip]);
  const cv::Point2d eyes = p[1] - p[0], mouth = p[4] - p[3];
  CHECK(mouth.x * eyes.y - mouth.y * eyes.x == Approx(0).margin(1e-9));  // parallel to the eyes
  CHECK(cv::norm(mouth) / cv::norm(eyes) == Approx(29.1806 / 35.2372));
  CHECK((p[3] + p[4]) / 2 == d.keypoints[mouth_centre]);
  // Aligned to ArcFace, the real keypoints fit the template within a few pixels.
  const AlignedFace a = align_face(golden_photo(), p, face_template("arcface-112"));
  CHECK(a.image.size() == cv::Size(112, 112));
  const auto& t = face_template("arcface-112").points;
  for (int i = 0; i < 5; ++i) {
    INFO("point " << i);
    CHECK(dist(apply(a.matrix, p[i]), t[i]) < 10);  // a turned face: the fit cannot be exact
  }
}

TEST_CASE("face: five points from the facemesh", "[face]") {
  // The golden facemesh output (a group photo as a 192×192 crop: face flag
  // ~0.001, but the mesh keeps a face's layout). An ROI covering the crop
  // exactly maps crop pixels to image pixels by −0.5 (edge → centre frame).
  FaceRoi roi;
  roi.centre = {95.5, 95.5};
  roi.side = 192;
  const auto raw = floats("facemesh.photo.Identity_2.npy");
  REQUIRE(raw.size() == 1404);
  const auto mesh = mesh_to_image(raw, roi);
  REQUIRE(mesh.size() == 468);
  CHECK(mesh[33].x == Approx(raw[99] - 0.5));
  CHECK(mesh[33].z == Approx(raw[101]));
  const Points5 p = five_points_from_mesh(mesh);
  CHECK(p[0].x < p[1].x);  // subject's right eye on the image's left
  CHECK(p[3].x < p[4].x);
  CHECK(p[0].x > mesh[33].x);  // the eye centre lies between its corners 33 and 133
  CHECK(p[0].x < mesh[133].x);
  CHECK(p[1].x > mesh[362].x);
  CHECK(p[1].x < mesh[263].x);
  CHECK(std::max(p[0].y, p[1].y) < p[2].y);  // eyes above the nose tip, above the mouth
  CHECK(p[2].y < std::min(p[3].y, p[4].y));
  const double eyes = dist(p[0], p[1]), mouth = dist(p[3], p[4]);
  CHECK(mouth / eyes > 0.6);
  CHECK(mouth / eyes < 1.1);
  CHECK_THROWS_AS(five_points_from_mesh(std::vector<cv::Point3d>(100)), Error);
  CHECK_THROWS_AS(mesh_to_image(std::vector<float>(1403), roi), Error);
}

TEST_CASE("face: facemesh crop is square, 1.5× the box, level with the eyes", "[face]") {
  Detection d;
  const double ang = 25 * CV_PI / 180;
  const cv::Point2d c(300, 200), ux(std::cos(ang), std::sin(ang)), uy(-std::sin(ang), std::cos(ang));
  d.x0 = 260, d.x1 = 340, d.y0 = 150, d.y1 = 250;  // 80 × 100
  d.keypoints[right_eye] = c - 20 * ux - 15 * uy;
  d.keypoints[left_eye] = c + 20 * ux - 15 * uy;
  const FaceRoi roi = facemesh_roi(d);
  CHECK(roi.side == Approx(150));
  CHECK(roi.angle == Approx(ang));
  CHECK(roi.centre == cv::Point2d(300, 200));
  const cv::Matx23d to = roi.image_to_crop(), from = roi.crop_to_image();
  const cv::Point2d mid = apply(to, c);
  CHECK(mid.x == Approx(95.5));
  CHECK(mid.y == Approx(95.5));
  const cv::Point2d re = apply(to, d.keypoints[right_eye]), le = apply(to, d.keypoints[left_eye]);
  CHECK(re.y == Approx(le.y));
  CHECK(le.x - re.x == Approx(40 * 192 / 150.0));
  CHECK(re.y < 95.5);
  // The crop's top-left edge is the rotated square's corner.
  const cv::Point2d corner = apply(from, {-0.5, -0.5});
  const cv::Point2d want = c - 75 * ux - 75 * uy;
  CHECK(corner.x == Approx(want.x));
  CHECK(corner.y == Approx(want.y));
  const cv::Point2d back = apply(from, apply(to, {123, 45}));
  CHECK(back.x == Approx(123));
  CHECK(back.y == Approx(45));
  // The warped crop puts blobs drawn at the eyes where the matrix says.
  const cv::Mat img = blobs({600, 400}, {d.keypoints[right_eye], d.keypoints[left_eye]}, 3);
  const cv::Mat crop = warp_roi(img, roi);
  REQUIRE(crop.size() == cv::Size(192, 192));
  CHECK(dist(centroid(crop, re, 10), re) < 0.2);
  CHECK(dist(centroid(crop, le, 10), le) < 0.2);
  cv::Mat rgb;
  cv::cvtColor(img, rgb, cv::COLOR_GRAY2RGB);
  const auto input = facemesh_input(rgb, roi);
  REQUIRE(input.size() == 3u * 192 * 192);
  const int rx = int(std::lround(re.x)), ry = int(std::lround(re.y));
  CHECK(input[2 * 192 * 192 + ry * 192 + rx] == Approx(crop.at<unsigned char>(ry, rx) / 255.0));
}

TEST_CASE("face: similarity transform recovers a known rotation, scale and shift", "[face]") {
  const auto& t = face_template("arcface-112");
  const double ang = 0.4, s = 2.7;
  const cv::Matx23d m(s * std::cos(ang), -s * std::sin(ang), 310, s * std::sin(ang), s * std::cos(ang), -45);
  const cv::Matx23d inv = invert(m);
  std::vector<cv::Point2d> src, dst(t.points.begin(), t.points.end());
  for (auto p : dst) src.push_back(apply(inv, p));
  const cv::Matx23d fit = similarity_transform(src, dst);
  for (int i = 0; i < 6; ++i) CHECK(fit.val[i] == Approx(m.val[i]).margin(1e-9));
  // Mirrored points: the best proper similarity, never a reflection.
  std::vector<cv::Point2d> mirrored;
  for (auto p : dst) mirrored.push_back({-p.x, p.y});
  const cv::Matx23d r = similarity_transform(mirrored, dst);
  CHECK(r(0, 0) == r(1, 1));
  CHECK(r(0, 1) == -r(1, 0));
  CHECK(r(0, 0) * r(1, 1) - r(0, 1) * r(1, 0) > 0);
  double err = 0;
  for (int i = 0; i < 5; ++i) err += dist(apply(r, mirrored[i]), dst[i]);
  CHECK(err > 20);  // it cannot fit a mirror image
  CHECK_THROWS_AS(similarity_transform({{1, 1}, {1, 1}}, {{0, 0}, {1, 0}}), Error);
  CHECK_THROWS_AS(similarity_transform({{1, 1}}, {{0, 0}}), Error);
}

TEST_CASE("face: align_face puts the five points on the template", "[face]") {
  const auto& t = face_template("arcface-112");
  for (double s : {1.3, 0.12}) {  // 0.12: the image is reduced before the warp
    INFO("scale " << s);
    const cv::Matx23d inv = invert(cv::Matx23d(s * std::cos(-0.3), -s * std::sin(-0.3), 20,
                                               s * std::sin(-0.3), s * std::cos(-0.3), 30));
    Points5 pts;
    for (int i = 0; i < 5; ++i) pts[i] = apply(inv, t.points[i]);
    const cv::Rect2d bb = cv::boundingRect(std::vector<cv::Point2f>(pts.begin(), pts.end()));
    for (auto& p : pts) p += cv::Point2d(40 / s - bb.x, 40 / s - bb.y);  // blobs well inside the image
    const cv::Mat img =
        blobs({int(bb.width + 80 / s), int(bb.height + 80 / s)}, {pts.begin(), pts.end()}, 2.0 / s);
    for (Border b : {Border::constant, Border::replicate}) {
      const AlignedFace a = align_face(img, pts, t, 0, b);
      REQUIRE(a.image.size() == cv::Size(112, 112));
      for (int i = 0; i < 5; ++i) {
        CHECK(dist(apply(a.matrix, pts[i]), t.points[i]) < 1e-9);
        CHECK(dist(centroid(a.image, t.points[i], 6), t.points[i]) < 0.25);
      }
    }
    // At another size the template scales with the crop.
    const AlignedFace big = align_face(img, pts, t, 224);
    CHECK(big.image.size() == cv::Size(224, 224));
    CHECK(dist(centroid(big.image, {2 * t.points[2].x + 0.5, 2 * t.points[2].y + 0.5}, 10),
               {2 * t.points[2].x + 0.5, 2 * t.points[2].y + 0.5}) < 0.4);
  }
  CHECK_THROWS_AS(align_face(cv::Mat(), Points5{}, t), Error);
}

TEST_CASE("face: templates by name", "[face]") {
  CHECK(template_names() == std::vector<std::string>{"arcface-112", "dlib-150", "faceres-224"});
  const auto& arc = face_template("arcface-112");
  CHECK(arc.size == 112);
  CHECK(arc.points[0] == cv::Point2d(38.2946, 51.6963));
  CHECK(arc.points[4] == cv::Point2d(70.7299, 92.2041));
  CHECK_THROWS_WITH(face_template("vgg"), Catch::Contains("faceres-224"));
  const Template a2 = scale_template(arc, 224);
  CHECK(a2.size == 224);
  CHECK(a2.points[2].x == Approx(56.0252 * 2 + 0.5));
  CHECK(scale_template(arc, 112).points[3] == arc.points[3]);
  for (const auto& name : template_names()) {
    const Template& t = face_template(name);
    INFO(name);
    const double eyes = dist(t.points[0], t.points[1]) / t.size;
    CHECK(eyes > 0.2);
    CHECK(eyes < 0.4);
    CHECK(t.points[0].x < t.points[1].x);  // subject's right eye on the image's left
    CHECK(t.points[3].x < t.points[4].x);
    CHECK(t.points[2].y > t.points[0].y);
    CHECK(t.points[3].y > t.points[2].y);
    const double mid = (t.points[0].x + t.points[1].x) / 2;  // roughly centred
    CHECK(std::abs(mid - (t.size - 1) / 2.0) < 0.03 * t.size);
  }
  // dlib: (0.25 + m)/1.5·150 of the mean face; the eyes are level and symmetric about 0.490127.
  const auto& dl = face_template("dlib-150");
  CHECK(dl.points[0].y == dl.points[1].y);
  CHECK((dl.points[0].x + dl.points[1].x) / 2 == Approx((0.25 + 0.490127) / 1.5 * 150).margin(1e-3));
  CHECK(dl.points[2].x == Approx((0.25 + 0.490127) / 1.5 * 150).margin(1e-3));
}
