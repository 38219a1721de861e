// Face geometry without a network runtime: BlazeFace decoding, the facemesh
// crop, five-point landmarks, similarity alignment to named templates. The
// networks themselves run elsewhere; this module prepares their inputs and
// interprets their raw outputs.
//
// Coordinates (one convention everywhere, the one cv::warpAffine uses):
//  - points are continuous (x, y) in pixels, x to the right, y down;
//  - the CENTRE of pixel (column i, row j) is at (i, j), so an image of width W
//    spans [-0.5, W - 0.5]; box corners are points in the same frame;
//  - a 2×3 matrix M maps a point p of its source to M·(p, 1) in its
//    destination, and cv::warpAffine(src, dst, M, size) produces exactly that.
//  Networks report positions as fractions of their input (0 = left edge, 1 =
//  right edge); such a fraction u becomes u·W − 0.5 here.
//  "Right"/"left" name the subject's side: in a photo that is not mirrored the
//  subject's right eye is on the image's left.
#pragma once
#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace hfr::face {

// A float array with its length (a raw network output). Sizes are checked.
struct Floats {
  const float* data = nullptr;
  std::size_t size = 0;
  Floats() = default;
  Floats(const float* d, std::size_t n) : data(d), size(n) {}
  Floats(const std::vector<float>& v) : data(v.data()), size(v.size()) {}  // NOLINT: implicit on purpose
};

// ---------------------------------------------------------------------------
// Letterbox: an image of any size scaled (aspect kept) and centred in a square
// network input, padded with black (mediapipe's ImageTransformation "FIT").
// The scaled size is rounded to whole pixels, so scale_x and scale_y may differ
// by a rounding; padding is (size − scaled) / 2 rounded down on the left/top.
struct Letterbox {
  int width = 0, height = 0;  // source image
  int size = 256;             // square input side
  int scaled_width = 0, scaled_height = 0;
  int pad_x = 0, pad_y = 0;
  double scale_x = 1, scale_y = 1;  // input pixels per image pixel

  static Letterbox fit(int width, int height, int size = 256);  // throws Error on empty sizes
  cv::Point2d to_input(cv::Point2d image_point) const;
  cv::Point2d to_image(cv::Point2d input_point) const;
  cv::Matx23d image_to_input() const;
};

// The letterboxed network input of an 8-bit RGB (or grey, replicated) image as
// a contiguous NCHW float buffer [3, size, size], each value x/127.5 − 1
// (padding is −1). Shrinking uses cv::INTER_AREA, enlarging INTER_LINEAR.
std::vector<float> blazeface_input(const cv::Mat& rgb, const Letterbox& letterbox);

// ---------------------------------------------------------------------------
// BlazeFace, mediapipe's "back camera" short-range detector (256×256 input).
//
// Anchors (mediapipe SsdAnchorsCalculator, face_detection_back graph: strides
// 16,32,32,32, fixed_anchor_size, interpolated aspect ratio 1): layers of equal
// stride are merged, giving a 16×16 grid with 2 anchors per cell (512, output
// Identity / Identity_2) then an 8×8 grid with 6 anchors per cell (384,
// Identity_1 / Identity_3). Order: row y, then column x, then anchor; centre
// ((x + 0.5)/n, (y + 0.5)/n) of the input, width = height = 1.
//
// Regressors (TensorsToDetections with x/y/w/h_scale 256, reverse_output_order
// i.e. XYWH): 16 values in input pixels: [0,1] box centre offset from the
// anchor centre, [2,3] box width, height, [4+2k, 5+2k] keypoint k offset from
// the anchor centre. Score = sigmoid(logit clipped to ±100).
enum Keypoint : int { right_eye = 0, left_eye, nose_tip, mouth_centre, right_ear_tragion, left_ear_tragion };

struct Detection {
  double x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // box corners in image pixels
  float score = 0;
  std::array<cv::Point2d, 6> keypoints{};  // indexed by Keypoint
  double width() const { return x1 - x0; }
  double height() const { return y1 - y0; }
};

struct BlazeFaceOptions {
  float score_threshold = 0.5f;  // on sigmoid(logit); mediapipe's back-camera graph uses 0.65
  float logit_clip = 100.f;      // mediapipe's score_clipping_thresh
  float iou_threshold = 0.3f;    // weighted NMS: candidates with IoU > this are merged
  int max_faces = 100;           // 0: no limit
};

constexpr int kBlazeFaceSize = 256;
constexpr int kBlazeFaceAnchors = 896;

// Anchor centres as fractions of the input (see above), 896 of them.
const std::vector<cv::Point2d>& blazeface_anchors();

// Decodes the four raw outputs (batch 1): Identity [1,512,1], Identity_1
// [1,384,1], Identity_2 [1,512,16], Identity_3 [1,384,16]; throws Error naming
// the output when a size is wrong. Boxes with negative or NaN size are dropped.
// Returns detections in image pixels (via the letterbox), best score first.
std::vector<Detection> decode_blazeface(Floats identity, Floats identity_1, Floats identity_2, Floats identity_3,
                                        const Letterbox& letterbox, const BlazeFaceOptions& options = {});

// Weighted non-maximum suppression ("blending", mediapipe's WEIGHTED
// algorithm): repeatedly take the best remaining detection and every remaining
// one whose IoU with it exceeds iou_threshold (itself included); output their
// score-weighted mean box and keypoints with the best one's score, and drop
// them all. Stops after max_faces outputs (0: no limit).
std::vector<Detection> weighted_nms(std::vector<Detection> detections, double iou_threshold, int max_faces = 0);
double iou(const Detection& a, const Detection& b);

// ---------------------------------------------------------------------------
// Five points in the ArcFace order: the subject's right eye centre, left eye
// centre, nose tip, right mouth corner, left mouth corner (for a frontal,
// unmirrored photo: image-left eye first).
using Points5 = std::array<cv::Point2d, 5>;

// From BlazeFace keypoints. BlazeFace gives the mouth centre only; the corners
// are estimated as mouth_centre ∓ 0.41406·(left_eye − right_eye), i.e. on a
// line through the mouth centre parallel to the eyes, with the mouth width /
// eye distance ratio of the ArcFace template itself (29.1806 / 35.2372).
Points5 five_points(const Detection& detection);

// From the 468 facemesh points (image pixels, z ignored): eye centre = mean of
// the 16 points of the eyelid contour (Human's facemeshcoords rightEyeUpper0 +
// rightEyeLower0: 246 161 160 159 158 157 173 / 33 7 163 144 145 153 154 155
// 133; left: 466 388 387 386 385 384 398 / 263 249 390 373 374 380 381 382
// 362), nose tip = 1, mouth corners = 61 (right) and 291 (left).
Points5 five_points_from_mesh(const std::vector<cv::Point3d>& mesh);
// The face mesh's 36 face-oval landmarks (MediaPipe FACEMESH_FACE_OVAL): on a
// turned face they follow the silhouette rather than fixed surface points.
const std::vector<int>& mesh_face_oval();

// ---------------------------------------------------------------------------
// The facemesh crop (mediapipe face_detection_front_detection_to_roi +
// RectTransformation): a square centred on the detection box, side 1.5 × the
// box's longer side, rotated so that the line from the right eye to the left
// eye keypoint is horizontal (angle = atan2(dy, dx) of that line: the crop's x
// axis points along it). The facemesh model (Identity_2 "output_mesh",
// [1,1404] = 468 × (x, y, z)) reports positions in crop pixels, 0..192 from the
// crop's left/top edge; z is on the same scale. Human computes the same box
// (enlargeBox 1.5, squarifyBox) but takes the angle from the mouth→nose line.
struct FaceRoi {
  cv::Point2d centre;    // image pixels
  double side = 0;       // image pixels
  double angle = 0;      // radians, clockwise on screen (y down)
  int crop_size = 192;
  cv::Matx23d image_to_crop() const;
  cv::Matx23d crop_to_image() const;
};
FaceRoi facemesh_roi(const Detection& detection, double enlarge = 1.5, int crop_size = 192);
// The crop as an 8-bit image (bilinear, border replicated, as mediapipe's
// ImageToTensor does), and as the model's NCHW float input x/255.
cv::Mat warp_roi(const cv::Mat& image, const FaceRoi& roi);
std::vector<float> facemesh_input(const cv::Mat& rgb, const FaceRoi& roi);
// Maps the raw mesh output (3·N floats, crop pixels from the edge) to image
// pixels; z is scaled like x and y (side / crop_size).
std::vector<cv::Point3d> mesh_to_image(Floats raw_mesh, const FaceRoi& roi);

// ---------------------------------------------------------------------------
// Similarity alignment.
//
// Least-squares similarity (rotation, uniform scale, translation; Umeyama
// 1991 without reflection) mapping src[i] to dst[i]; in 2-D the optimum has the
// closed form a = Σ(s·d)/Σ|s|², b = Σ(s×d)/Σ|s|² over centred points, matrix
// [a −b tx; b a ty], which can never reflect. Throws Error for fewer than 2
// points, unequal counts or coincident source points.
cv::Matx23d similarity_transform(const std::vector<cv::Point2d>& src, const std::vector<cv::Point2d>& dst);

// Templates: five points (ArcFace order) in an out-size × out-size crop.
//  "arcface-112": insightface's arcface_dst for 112×112 (used as given, in
//     OpenCV pixel coordinates, as insightface's norm_crop does).
//  "dlib-150": dlib's face chip, get_face_chip_details(shape, 150, 0.25) as in
//     dlib's face-recognition example. Derived from dlib's mean face shape
//     (interpolation.h, mean_face_shape_x/y, landmarks 17..67 as fractions of
//     the chip before padding): eye centre = mean of landmarks 36..41 / 42..47,
//     nose tip = 30, mouth corners = 48 / 54; chip coordinate
//     = (0.25 + m) / 1.5 · 150. dlib itself fits all of landmarks 27..54 and
//     60..64 (not the brows nor the lower lip), so a five-point fit reproduces
//     its chip approximately, not exactly.
//  "faceres-224": a loose crop for faceres (HSE_FaceRec_tf, a MobileNet
//     trained on VGGFace2). @vladmandic/human feeds it the facemesh box enlarged
//     1.5× (enlargeBox(mesh bounding box, 1.5)), rotated upright, at 224×224.
//     The template is that crop for the mediapipe canonical face (its 468
//     vertices seen frontally; bounding box 15.486 × 17.665 units, squared to
//     the longer side: 26.498 units → 224 px): eye centres are the canonical
//     iris centres (±3.18175, 2.63579), nose tip vertex 1, mouth corners 61/291.
//     The authors' own demo (facial_analysis.py) crops an MTCNN box plus 10 px
//     on each side, a somewhat tighter framing. Eye distance is 24 % of the
//     crop here versus 31 % for arcface-112 and 35 % for dlib-150.
struct Template {
  std::string name;
  int size = 0;
  Points5 points{};
};
// Throws Error listing the known names.
const Template& face_template(const std::string& name);
const std::vector<std::string>& template_names();
// The same framing at another size: x' = (x + 0.5)·size/t.size − 0.5 (edges
// stay edges; insightface multiplies plainly, a difference of (s − 1)/2 px).
Template scale_template(const Template& t, int size);

enum class Border { constant, replicate };  // constant = black, as insightface's norm_crop

struct AlignedFace {
  cv::Mat image;       // out_size × out_size, same type as the input
  cv::Matx23d matrix;  // image → crop (the similarity transform)
};
// Warps an 8-bit grey or RGB image so that `points` land on the template
// (scaled to out_size; 0 = the template's size). Bilinear; when the transform
// shrinks by more than 2× the image is first reduced with INTER_AREA so that
// the bilinear warp does not alias (the returned matrix is still image → crop).
AlignedFace align_face(const cv::Mat& image, const Points5& points, const Template& tmpl, int out_size = 0,
                       Border border = Border::constant);

// Applies a 2×3 matrix to a point; inverts one (throws Error if singular).
cv::Point2d apply(const cv::Matx23d& m, cv::Point2d p);
cv::Matx23d invert(const cv::Matx23d& m);

}  // namespace hfr::face
