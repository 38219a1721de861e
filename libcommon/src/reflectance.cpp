// Reflectance maps from one photo (see reflectance.hpp).
//
// Pipeline:
//  1. The textured triangles are rasterised in texture space (z = 1, affine):
//     every texel centre gets its triangle and barycentrics.
//  2. The occluders (and the textured triangles) are rasterised in image
//     space with the camera (perspective) into a depth buffer.
//  3. Every textured texel's camera-space point P and interpolated normal N
//     are computed. It is observed when it faces the camera (N . -P/|P| >
//     cos(max_view_angle)), projects into the image, and is not behind the
//     depth buffer at the pixel it projects to. The tolerance is relative
//     (0.5 % of the depth) plus 0.02 cm plus the depth change over 1.5 pixels
//     of a surface seen at the texel's obliquity (z / f * tan(view angle)),
//     so texels next to the pixel's own triangle on a curved surface, and
//     texels at silhouettes, are not rejected by their own neighbours. A
//     pixel with no depth (background) does not occlude. The photo is
//     sampled bilinearly at the projection (pixel centres at +0.5).
//  4. Lighting: 9 SH coefficients per channel, fitted by least squares to
//     the observed skin texels (not in areas named lip*, mouth*, brow*, eye*)
//     with the model I = rho_bar * shading(N), i.e. for L' = rho_bar * L.
//     Two rounds of outlier rejection follow, each dropping texels whose
//     log(I / (B(N) . L')) (summed over channels) is far from its median
//     (more than 3 robust sigmas, but at least log 1.25 and at most log 2.5):
//     highlights, cast shadows, hair, misfit regions.
//
//     Colour and scale conventions. From one photo the albedo and the light
//     are only known up to a factor per channel. Each channel keeps its own
//     SH shape (a warm key light and a blue fill light colour the shading
//     differently across the face), but the light is taken to be white on
//     average: every channel's shading is scaled to the same mean over the
//     fitted skin texels, so the albedo keeps the photo's average skin hue
//     (its white balance is taken as correct). The exposure is fixed so that
//     a white (albedo 1) Lambertian surface would reach exactly 1.0 at the
//     brightest-lit skin: the channel-mean shading is scaled so that its 98th
//     percentile over the fitted skin texels is 1. Hence the albedo of
//     the best-lit skin equals its linear photo value, and the albedo
//     elsewhere is the photo value with the relative shading divided out.
//     This is a convention, not a measurement: a darker exposure gives a
//     darker albedo, and a coloured light tints it. The 98th percentile
//     (not the maximum) keeps a few noisy normals from setting the scale.
//     Albedo = I / max(shading, 0.05), clamped to [0, 1].
//  5. Unseen textured texels take the albedo of their mirror texel (u ->
//     1 - u, same row) when mirror_u and that texel is observed; the rest,
//     and the texels outside the textured triangles (so that bilinear
//     lookups at tile borders do not pull in black), take the mean albedo
//     of the observed skin.
//  6. Specular albedo and roughness come from a per-region prior (below).
#include "hfr/reflectance.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>

#include <Eigen/Dense>
#include <opencv2/imgproc.hpp>

#include "hfr/error.hpp"
#include "hfr/raster.hpp"

namespace hfr::reflect {

namespace {

constexpr double kPi = 3.14159265358979323846;

bool starts_with(const std::string& s, const char* p) {
  const std::size_t n = std::char_traits<char>::length(p);
  if (s.size() < n) return false;
  for (std::size_t i = 0; i < n; ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != p[i]) return false;
  return true;
}

// Texel-space polygon points for cv::fillPoly (which puts pixel centres at
// integer coordinates): texel (i, j)'s centre is u = (i + 0.5) / S, v = 1 - (j + 0.5) / S.
constexpr int kShift = 8;
bool polygon_points(const UvArea& a, int S, std::vector<cv::Point>& pts) {
  pts.clear();
  if (a.polygon.size() < 3) return false;
  const double scale = static_cast<double>(1 << kShift);
  const double lim = 4.0 * S;
  for (const auto& p : a.polygon) {
    if (!std::isfinite(p[0]) || !std::isfinite(p[1])) return false;
    const double x = std::clamp(p[0] * S - 0.5, -lim, lim + S);
    const double y = std::clamp((1.0 - p[1]) * S - 0.5, -lim, lim + S);
    pts.emplace_back(static_cast<int>(std::lround(x * scale)), static_cast<int>(std::lround(y * scale)));
  }
  return true;
}

void fill_area(cv::Mat& m, const UvArea& a, int S, const cv::Scalar& value, std::vector<cv::Point>& pts) {
  if (!polygon_points(a, S, pts)) return;
  const cv::Point* p = pts.data();
  const int n = static_cast<int>(pts.size());
  cv::fillPoly(m, &p, &n, 1, value, cv::LINE_8, kShift);
}

// Specular albedo (rho_s, reflectance at normal incidence) and GGX roughness
// (alpha) prior per region. These are HAND-SET values, not measurements. They
// follow the ordering Weyrich et al. 2006 ("Analysis of human faces using a
// measurement-based skin reflectance model", SIGGRAPH) found over their
// subjects: the T-zone (forehead, nose) is the most specular and the
// smoothest, cheeks and chin less so. Skin's Fresnel reflectance at normal
// incidence is about 0.028 (refractive index ~1.4); the values scale around
// it within 0.02-0.06. Lips: moderately specular but rough; eyebrows (hair):
// low specular, rough. Eye openings keep the skin value (the eyeball is not
// modelled by this map). Regions are feathered with a Gaussian of sigma =
// texture_size / 128 texels.
struct RegionPrior {
  const char* prefix;
  float specular, roughness;
};
constexpr float kSkinSpecular = 0.035f, kSkinRoughness = 0.45f;
// Painted in this order (later regions win where polygons overlap).
constexpr RegionPrior kRegionPriors[] = {
    {"cheek", 0.035f, 0.45f}, {"chin", 0.040f, 0.42f},  {"forehead", 0.055f, 0.35f}, {"nose", 0.060f, 0.32f},
    {"lip", 0.040f, 0.55f},   {"mouth", 0.040f, 0.55f}, {"brow", 0.020f, 0.60f},
};

bool excluded_from_fit(const std::string& name) {
  return starts_with(name, "lip") || starts_with(name, "mouth") || starts_with(name, "brow") || starts_with(name, "eye");
}

template <class F>
cv::Mat map_elements(const cv::Mat& in, F f, const char* what) {
  if (in.depth() != CV_32F && in.depth() != CV_64F) throw Error(std::string(what) + ": image must be float (CV_32F or CV_64F)");
  cv::Mat out(in.size(), in.type());
  const int n = in.cols * in.channels();
  for (int r = 0; r < in.rows; ++r) {
    if (in.depth() == CV_32F) {
      const float* s = in.ptr<float>(r);
      float* d = out.ptr<float>(r);
      for (int i = 0; i < n; ++i) d[i] = static_cast<float>(f(static_cast<double>(s[i])));
    } else {
      const double* s = in.ptr<double>(r);
      double* d = out.ptr<double>(r);
      for (int i = 0; i < n; ++i) d[i] = f(s[i]);
    }
  }
  return out;
}

inline double median_of(std::vector<double>& v) {
  if (v.empty()) return 0;
  const std::size_t m = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(m), v.end());
  return v[m];
}

// Small single-threaded image helpers (OpenCV's own would start its thread
// pool, whose spinning workers cost more than these few operations).
void blur_small(cv::Mat& m, double sigma) {
  const int r = std::max(1, static_cast<int>(std::ceil(3 * sigma)));
  std::vector<float> k(2 * r + 1);
  double sum = 0;
  for (int i = -r; i <= r; ++i) sum += k[i + r] = static_cast<float>(std::exp(-0.5 * i * i / (sigma * sigma)));
  for (float& v : k) v = static_cast<float>(v / sum);
  const int W = m.cols, H = m.rows;
  cv::Mat tmp(H, W, CV_32FC1);
  for (int y = 0; y < H; ++y) {
    const float* s = m.ptr<float>(y);
    float* d = tmp.ptr<float>(y);
    for (int x = 0; x < W; ++x) {
      float acc = 0;
      for (int i = -r; i <= r; ++i) acc += k[i + r] * s[std::clamp(x + i, 0, W - 1)];
      d[x] = acc;
    }
  }
  for (int y = 0; y < H; ++y) {
    float* d = m.ptr<float>(y);
    for (int x = 0; x < W; ++x) {
      float acc = 0;
      for (int i = -r; i <= r; ++i) acc += k[i + r] * tmp.ptr<float>(std::clamp(y + i, 0, H - 1))[x];
      d[x] = acc;
    }
  }
}

// Bilinear resize of a square CV_32FC1 map to S x S (pixel centres aligned, edges clamped).
cv::Mat upsample(const cv::Mat& m, int S) {
  if (m.rows == S) return m;
  const int n = m.rows;
  const double scale = static_cast<double>(n) / S;
  std::vector<int> i0(S), i1(S);
  std::vector<float> w(S);
  for (int x = 0; x < S; ++x) {
    const double sx = std::clamp((x + 0.5) * scale - 0.5, 0.0, n - 1.0);
    i0[x] = static_cast<int>(sx);
    i1[x] = std::min(i0[x] + 1, n - 1);
    w[x] = static_cast<float>(sx - i0[x]);
  }
  cv::Mat out(S, S, CV_32FC1);
  for (int y = 0; y < S; ++y) {
    const float* a = m.ptr<float>(i0[y]);
    const float* b = m.ptr<float>(i1[y]);
    const float wy = w[y];
    float* d = out.ptr<float>(y);
    for (int x = 0; x < S; ++x) {
      const float top = a[i0[x]] + w[x] * (a[i1[x]] - a[i0[x]]);
      const float bot = b[i0[x]] + w[x] * (b[i1[x]] - b[i0[x]]);
      d[x] = top + wy * (bot - top);
    }
  }
  return out;
}

}  // namespace

std::array<double, 9> sh_basis(const std::array<double, 3>& n) {
  // Real SH (Ramamoorthi & Hanrahan 2001, "An efficient representation for
  // irradiance environment maps") times A_l / pi with the clamped-cosine
  // convolution factors A_0 = pi, A_1 = 2pi/3, A_2 = pi/4. Order:
  //   0: Y00   1: Y1-1 (y)   2: Y10 (z)   3: Y11 (x)
  //   4: Y2-2 (xy)   5: Y2-1 (yz)   6: Y20 (3z^2-1)   7: Y21 (xz)   8: Y22 (x^2-y^2)
  // in whatever frame n is given (unwrap uses camera space).
  const double x = n[0], y = n[1], z = n[2];
  constexpr double a1 = 2.0 / 3.0, a2 = 0.25;
  return {0.282095,
          a1 * 0.488603 * y,
          a1 * 0.488603 * z,
          a1 * 0.488603 * x,
          a2 * 1.092548 * x * y,
          a2 * 1.092548 * y * z,
          a2 * 0.315392 * (3 * z * z - 1),
          a2 * 1.092548 * x * z,
          a2 * 0.546274 * (x * x - y * y)};
}

cv::Mat srgb_to_linear(const cv::Mat& srgb01) {
  return map_elements(
      srgb01, [](double c) { return c <= 0.04045 ? c / 12.92 : std::pow((c + 0.055) / 1.055, 2.4); }, "srgb_to_linear");
}

cv::Mat linear_to_srgb(const cv::Mat& linear01) {
  return map_elements(
      linear01, [](double c) { return c <= 0.0031308 ? c * 12.92 : 1.055 * std::pow(c, 1.0 / 2.4) - 0.055; },
      "linear_to_srgb");
}

Maps unwrap(const UnwrapInput& in) {
  const cv::Mat& img = in.image;
  if (img.empty() || (img.type() != CV_32FC3 && img.type() != CV_32FC1))
    throw Error("unwrap: the photo must be a non-empty CV_32FC3 or CV_32FC1 image");
  const auto& mesh = in.mesh;
  mesh.validate("unwrap: mesh");
  if (mesh.uvs.empty()) throw Error("unwrap: the mesh has no texture coordinates");
  const std::size_t T = static_cast<std::size_t>(mesh.num_triangles());
  if (in.textured.size() != T)
    throw Error("unwrap: " + std::to_string(in.textured.size()) + " textured flags for " + std::to_string(T) + " triangles");
  if (!in.occluders.empty() && in.occluders.size() != T)
    throw Error("unwrap: " + std::to_string(in.occluders.size()) + " occluder flags for " + std::to_string(T) + " triangles");
  const int S = in.texture_size;
  if (S < 1 || S > 16384) throw Error("unwrap: texture size " + std::to_string(S) + " outside [1, 16384]");
  const auto& cam = in.camera;
  if (!(cam.fx > 0) || !(cam.fy > 0) || !std::isfinite(cam.fx) || !std::isfinite(cam.fy) || !std::isfinite(cam.cx) ||
      !std::isfinite(cam.cy))
    throw Error("unwrap: invalid camera intrinsics");
  if (!(in.max_view_angle_deg > 0 && in.max_view_angle_deg <= 90))
    throw Error("unwrap: max_view_angle_deg must be in (0, 90]");

  const int C = img.channels();
  const int W = img.cols, H = img.rows;
  Maps out;
  out.grey = C == 1;

  // 1. Texture space.
  const std::size_t M = mesh.uvs.size() / 2;
  std::vector<float> uvscreen(M * 3);
  for (std::size_t k = 0; k < M; ++k) {
    uvscreen[3 * k] = mesh.uvs[2 * k] * static_cast<float>(S);
    uvscreen[3 * k + 1] = (1.0f - mesh.uvs[2 * k + 1]) * static_cast<float>(S);
    uvscreen[3 * k + 2] = 1.0f;
  }
  raster::Buffers tex;
  tex.reset(S, S);
  raster::rasterize(uvscreen, mesh.uv_triangles, tex, false, &in.textured);

  // 2. Image-space depth.
  const std::size_t V = static_cast<std::size_t>(mesh.num_vertices());
  std::vector<float> proj(V * 3);
  for (std::size_t k = 0; k < V; ++k) {
    const double X = mesh.positions[3 * k], Y = mesh.positions[3 * k + 1], Z = mesh.positions[3 * k + 2];
    proj[3 * k] = Z > 0 ? static_cast<float>(cam.fx * X / Z + cam.cx) : 0.0f;
    proj[3 * k + 1] = Z > 0 ? static_cast<float>(cam.fy * Y / Z + cam.cy) : 0.0f;
    proj[3 * k + 2] = static_cast<float>(Z);
  }
  std::vector<std::uint8_t> occ(T, 1);
  if (!in.occluders.empty())
    for (std::size_t t = 0; t < T; ++t) occ[t] = (in.occluders[t] || in.textured[t]) ? 1 : 0;
  raster::Buffers ibuf;
  ibuf.reset(W, H);
  raster::rasterize(proj, mesh.triangles, ibuf, true, &occ);

  // 3. Observed texels.
  const std::vector<float> normals = mesh::vertex_normals(mesh.positions, mesh.triangles);
  const int mtype = C == 1 ? CV_32FC1 : CV_32FC3;
  out.albedo = cv::Mat(S, S, mtype, cv::Scalar::all(0));
  out.normal = cv::Mat(S, S, CV_32FC3, cv::Scalar::all(0));
  out.source = cv::Mat(S, S, CV_8UC1, cv::Scalar(unseen));
  const double cos_max = std::max(0.0, std::cos(in.max_view_angle_deg * kPi / 180.0));
  const double cos2_max = cos_max * cos_max;
  const double f_min = std::min(cam.fx, cam.fy);
  std::vector<std::int32_t> seen;  // observed texel indices
  seen.reserve(static_cast<std::size_t>(S) * S / 2);
  std::size_t textured_texels = 0;
  const std::size_t img_step = img.step1();
  const float* img_data = img.ptr<float>(0);
  for (int j = 0; j < S; ++j) {
    float* arow = out.albedo.ptr<float>(j);
    float* nrow = out.normal.ptr<float>(j);
    std::uint8_t* srow = out.source.ptr<std::uint8_t>(j);
    for (int i = 0; i < S; ++i) {
      const std::size_t ti = static_cast<std::size_t>(j) * S + i;
      const std::int32_t t = tex.triangle[ti];
      if (t < 0) continue;
      ++textured_texels;
      const double b1 = tex.b1[ti], b2 = tex.b2[ti], b0 = 1.0 - b1 - b2;
      const std::int32_t* vi = &mesh.triangles[3 * static_cast<std::size_t>(t)];
      const float* p0 = &mesh.positions[3 * static_cast<std::size_t>(vi[0])];
      const float* p1 = &mesh.positions[3 * static_cast<std::size_t>(vi[1])];
      const float* p2 = &mesh.positions[3 * static_cast<std::size_t>(vi[2])];
      const float* n0 = &normals[3 * static_cast<std::size_t>(vi[0])];
      const float* n1 = &normals[3 * static_cast<std::size_t>(vi[1])];
      const float* n2 = &normals[3 * static_cast<std::size_t>(vi[2])];
      double P[3], N[3];
      for (int k = 0; k < 3; ++k) {
        P[k] = b0 * p0[k] + b1 * p1[k] + b2 * p2[k];
        N[k] = b0 * n0[k] + b1 * n1[k] + b2 * n2[k];
      }
      // Facing test without roots or divisions first (most rejected texels
      // leave here): -N.P > cos_max |N| |P|.
      const double nn = N[0] * N[0] + N[1] * N[1] + N[2] * N[2];
      const double pp = P[0] * P[0] + P[1] * P[1] + P[2] * P[2];
      const double dnp = -(N[0] * P[0] + N[1] * P[1] + N[2] * P[2]);
      if (!(dnp > 0) || !(dnp * dnp > cos2_max * nn * pp) || !(P[2] > 1e-6)) continue;
      const double inv_nl = 1.0 / std::sqrt(nn);
      for (double& v : N) v *= inv_nl;
      const double cosv = dnp * inv_nl / std::sqrt(pp);
      const double x = cam.fx * P[0] / P[2] + cam.cx, y = cam.fy * P[1] / P[2] + cam.cy;
      if (!(x >= 0 && x < W && y >= 0 && y < H)) continue;
      const int px = std::min(static_cast<int>(x), W - 1), py = std::min(static_cast<int>(y), H - 1);
      const float zb = ibuf.depth[static_cast<std::size_t>(py) * W + px];
      if (std::isfinite(zb)) {
        const double tanv = std::sqrt(std::max(0.0, 1.0 - cosv * cosv)) / cosv;
        const double tol = 0.005 * zb + 0.02 + 1.5 * P[2] / f_min * tanv;
        if (P[2] > zb + tol) continue;
      }
      // Bilinear sample (pixel centres at +0.5), clamped at the border.
      const double sx = x - 0.5, sy = y - 0.5;
      const double fx0 = std::floor(sx), fy0 = std::floor(sy);
      const double ax = sx - fx0, ay = sy - fy0;
      const int xa = std::clamp(static_cast<int>(fx0), 0, W - 1), xb = std::clamp(static_cast<int>(fx0) + 1, 0, W - 1);
      const int ya = std::clamp(static_cast<int>(fy0), 0, H - 1), yb = std::clamp(static_cast<int>(fy0) + 1, 0, H - 1);
      const float* ra = img_data + static_cast<std::size_t>(ya) * img_step;
      const float* rb = img_data + static_cast<std::size_t>(yb) * img_step;
      bool finite = true;
      float val[3];
      for (int c = 0; c < C; ++c) {
        const double v = (1 - ay) * ((1 - ax) * ra[xa * C + c] + ax * ra[xb * C + c]) +
                         ay * ((1 - ax) * rb[xa * C + c] + ax * rb[xb * C + c]);
        finite = finite && std::isfinite(v);
        val[c] = static_cast<float>(v);
      }
      if (!finite) continue;
      for (int c = 0; c < C; ++c) arow[i * C + c] = val[c];  // the photo value for now
      for (int k = 0; k < 3; ++k) nrow[3 * i + k] = static_cast<float>(N[k]);
      srow[i] = observed;
      seen.push_back(static_cast<std::int32_t>(ti));
    }
  }
  out.coverage = textured_texels ? static_cast<double>(seen.size()) / static_cast<double>(textured_texels) : 0.0;

  // Areas: the mask of texels excluded from the lighting fit.
  std::vector<cv::Point> pts;
  cv::Mat exclude(S, S, CV_8UC1, cv::Scalar(0));
  for (const auto& a : in.areas)
    if (excluded_from_fit(a.name)) fill_area(exclude, a, S, cv::Scalar(1), pts);

  // 4. Lighting fit on skin texels (see the top of the file). 9 unknowns per channel need far fewer
  // than the ~10^5 observed texels: an even subsample of at most kMaxFit
  // texels (every k-th in texel order) is used. Rows of A (SH basis) and Y
  // (photo) are the fit texels; outlier rounds compact the inliers to the top.
  constexpr std::size_t kMaxFit = 16384;
  std::size_t n_skin = 0;
  for (std::int32_t ti : seen) n_skin += !exclude.data[ti];
  const bool use_skin = n_skin >= 30;  // hardly any skin: use what there is
  const std::size_t n_pool = use_skin ? n_skin : seen.size();
  const std::size_t stride = std::max<std::size_t>(1, (n_pool + kMaxFit - 1) / kMaxFit);
  std::vector<std::int32_t> order;  // texel index of each row
  order.reserve(n_pool / stride + 1);
  {
    std::size_t k = 0;
    for (std::int32_t ti : seen) {
      if (use_skin && exclude.data[ti]) continue;
      if (k++ % stride == 0) order.push_back(ti);
    }
  }
  Eigen::Index n_fit = static_cast<Eigen::Index>(order.size());

  const float* photo_data = out.albedo.ptr<float>(0);  // photo values of observed texels for now
  const float* normal_data = out.normal.ptr<float>(0);
  Eigen::Matrix<double, Eigen::Dynamic, 9> A(n_fit, 9);
  Eigen::MatrixXd Y(n_fit, C), Sh(n_fit, C);
  for (Eigen::Index q = 0; q < n_fit; ++q) {
    const std::size_t ti = static_cast<std::size_t>(order[static_cast<std::size_t>(q)]);
    const float* n = normal_data + 3 * ti;
    const auto b = sh_basis({n[0], n[1], n[2]});
    for (int k = 0; k < 9; ++k) A(q, k) = b[k];
    for (int c = 0; c < C; ++c) Y(q, c) = photo_data[ti * C + c];
  }
  Eigen::MatrixXd L = Eigen::MatrixXd::Zero(9, C);  // L' = rho_bar * L per channel
  // Ridge weight of the directional SH terms, relative to the mean diagonal of
  // the normal matrix. 0.03 keeps the constant term positive on the sample
  // photos (at 1e-5 it was as low as -2.6 with terms of 7 around it) at the
  // cost of a bias of a few % of the peak shading under one strong
  // directional light (tests/unit/test_reflectance.cpp).
  constexpr double kShRidge = 0.03;
  auto solve = [&]() {
    Eigen::Matrix<double, 9, 9> AtA;
    AtA.noalias() = A.topRows(n_fit).transpose() * A.topRows(n_fit);
    const Eigen::MatrixXd Atb = A.topRows(n_fit).transpose() * Y.topRows(n_fit);
    // A ridge on the directional terms (bands 1 and 2), pulling them towards
    // an ambient light: one view sees only about half of the sphere of
    // normals, and unpenalised they extrapolate to negative light on the
    // unseen side (a negative constant term with large higher orders).
    const double scale = std::max(AtA.trace() / 9.0, 1e-12);
    AtA(0, 0) += 1e-5 * scale;
    for (int k = 1; k < 9; ++k) AtA(k, k) += kShRidge * scale;
    L = Eigen::LDLT<Eigen::Matrix<double, 9, 9>>(AtA).solve(Atb);
  };

  if (n_fit == 0) {
    L.row(0).setConstant(1.0 / 0.282095);  // nothing observed: unit shading
  } else {
    solve();
    std::vector<double> logr(static_cast<std::size_t>(n_fit)), scratch;
    scratch.reserve(static_cast<std::size_t>(n_fit));
    for (int round = 0; round < 2; ++round) {
      Sh.topRows(n_fit).noalias() = A.topRows(n_fit) * L;
      scratch.clear();
      for (Eigen::Index q = 0; q < n_fit; ++q) {
        const double si = Y.row(q).sum(), ss = Sh.row(q).sum();
        const double r = (si > 0 && ss > 0) ? std::log(si / ss) : -std::numeric_limits<double>::infinity();
        logr[static_cast<std::size_t>(q)] = r;
        if (std::isfinite(r)) scratch.push_back(r);
      }
      if (scratch.size() < 30) break;
      const double med = median_of(scratch);
      for (double& v : scratch) v = std::abs(v - med);
      const double mad = median_of(scratch);
      const double thr = std::clamp(3.0 * 1.4826 * mad, std::log(1.25), std::log(2.5));
      Eigen::Index kept = 0;
      for (Eigen::Index q = 0; q < n_fit; ++q) {
        if (!(std::abs(logr[static_cast<std::size_t>(q)] - med) <= thr)) continue;
        if (q != kept) {
          A.row(kept) = A.row(q);
          Y.row(kept) = Y.row(q);
        }
        ++kept;
      }
      if (kept < 30 || kept == n_fit) break;
      n_fit = kept;
      solve();
    }
  }

  // Residual of the constant-albedo fit (I vs B(N) . L'). Then the colour
  // and scale conventions (top of the file): every channel's shading gets the
  // same mean over the fit texels (the light is white on average, so the skin
  // keeps the photo's hue), and the 98th percentile of the channel-mean
  // shading becomes 1.
  if (n_fit > 0) {
    Sh.topRows(n_fit).noalias() = A.topRows(n_fit) * L;
    out.sh_residual = std::sqrt((Y.topRows(n_fit) - Sh.topRows(n_fit)).squaredNorm() / static_cast<double>(n_fit * C));
    const Eigen::RowVectorXd mean = Sh.topRows(n_fit).colwise().mean();
    const double target = mean.mean();
    for (int c = 0; c < C; ++c)
      if (mean[c] > 1e-9 && target > 1e-9) L.col(c) *= target / mean[c];
    Sh.topRows(n_fit).noalias() = A.topRows(n_fit) * L;
    const Eigen::VectorXd s = Sh.topRows(n_fit).rowwise().mean();
    std::vector<double> v(s.data(), s.data() + n_fit);
    const std::size_t k = std::min(v.size() - 1, static_cast<std::size_t>(0.98 * static_cast<double>(v.size())));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    const double p = v[k];
    if (p > 1e-9 && std::isfinite(p)) L /= p;
  }
  for (int k = 0; k < 9; ++k)
    for (int c = 0; c < 3; ++c) out.sh[k][c] = L(k, C == 1 ? 0 : c);

  // Albedo of observed texels.
  float* albedo_w = out.albedo.ptr<float>(0);
  double Lc[3][9];
  for (int c = 0; c < C; ++c)
    for (int k = 0; k < 9; ++k) Lc[c][k] = L(k, c);
  for (std::int32_t ti : seen) {
    const float* n = normal_data + 3 * static_cast<std::size_t>(ti);
    const auto b = sh_basis({n[0], n[1], n[2]});
    float* a = albedo_w + static_cast<std::size_t>(ti) * C;
    for (int c = 0; c < C; ++c) {
      double s = 0;
      for (int k = 0; k < 9; ++k) s += b[k] * Lc[c][k];
      const double v = a[c] / std::max(s, 0.05);
      a[c] = v > 0 ? static_cast<float>(std::min(v, 1.0)) : 0.0f;
    }
  }
  {
    // Mean over the observed skin (all observed texels when there is no skin).
    std::array<double, 3> sum{0, 0, 0};
    std::size_t count = 0;
    for (std::int32_t ti : seen) {
      if (n_skin > 0 && exclude.data[ti]) continue;
      ++count;
      for (int c = 0; c < C; ++c) sum[c] += albedo_w[static_cast<std::size_t>(ti) * C + c];
    }
    for (int c = 0; c < 3; ++c) out.mean_albedo[c] = count ? sum[C == 1 ? 0 : c] / static_cast<double>(count) : 0.0;
  }

  // 5. Fill.
  std::uint8_t* src_w = out.source.ptr<std::uint8_t>(0);
  for (int j = 0; j < S; ++j)
    for (int i = 0; i < S; ++i) {
      const std::size_t ti = static_cast<std::size_t>(j) * S + i;
      if (src_w[ti] == observed) continue;
      float* a = albedo_w + ti * C;
      if (tex.triangle[ti] >= 0 && in.mirror_u) {
        const std::size_t mi = static_cast<std::size_t>(j) * S + (S - 1 - i);
        if (src_w[mi] == observed) {
          for (int c = 0; c < C; ++c) a[c] = albedo_w[mi * C + c];
          src_w[ti] = mirrored;
          continue;
        }
      }
      for (int c = 0; c < C; ++c) a[c] = static_cast<float>(out.mean_albedo[c]);
      if (tex.triangle[ti] >= 0) src_w[ti] = mean_fill;
    }

  // 6. Specular / roughness prior. The regions are painted and feathered
  // (Gaussian, sigma = 1/128 of the map) on a map of at most 128^2 texels,
  // which is then upsampled bilinearly: the result is smooth at any size.
  {
    const int Sp = std::min(S, 128);
    cv::Mat spec(Sp, Sp, CV_32FC1, cv::Scalar(kSkinSpecular));
    cv::Mat rough(Sp, Sp, CV_32FC1, cv::Scalar(kSkinRoughness));
    for (const auto& prior : kRegionPriors)
      for (const auto& a : in.areas)
        if (starts_with(a.name, prior.prefix)) {
          fill_area(spec, a, Sp, cv::Scalar(prior.specular), pts);
          fill_area(rough, a, Sp, cv::Scalar(prior.roughness), pts);
        }
    if (!in.areas.empty()) {
      blur_small(spec, Sp / 128.0);
      blur_small(rough, Sp / 128.0);
    }
    out.specular = upsample(spec, S);
    out.roughness = upsample(rough, S);
  }
  return out;
}

}  // namespace hfr::reflect
