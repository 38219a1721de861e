// Z-buffer rasteriser. Coverage is decided with edge functions evaluated in
// double precision at pixel centres. Watertightness: each edge function is
// computed from the edge's endpoints in a canonical order (sorted by y, then
// x), so two triangles sharing an edge evaluate bit-identical values with
// opposite signs; pixel centres exactly on an edge go to the triangle for
// which the edge is a top or left edge (Direct3D's rule). The expressions are
// kept free of FMA contraction so the same value comes out however the
// compiler schedules them.
#include "hfr/raster.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "hfr/error.hpp"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#endif
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

namespace hfr::raster {

void Buffers::reset(int w, int h) {
  if (w < 0 || h < 0) throw Error("raster: negative buffer size " + std::to_string(w) + "x" + std::to_string(h));
  width = w;
  height = h;
  const std::size_t n = static_cast<std::size_t>(w) * static_cast<std::size_t>(h);
  triangle.assign(n, -1);
  b1.assign(n, 0.0f);
  b2.assign(n, 0.0f);
  depth.assign(n, std::numeric_limits<float>::infinity());
}

namespace {

struct Edge {
  double ax, ay;  // canonical first endpoint
  double cx, cy;  // canonical direction (second - first): cy > 0, or cy == 0 and cx > 0
  double sigma;   // +-1: sigma * f > 0 inside
  bool top_left;  // pixel centres exactly on the edge belong to this triangle
};

// Edge from P to Q of a triangle whose signed doubled area has sign `orient`.
inline Edge make_edge(double px, double py, double qx, double qy, double orient) {
  Edge e;
  const bool p_first = py < qy || (py == qy && px < qx);
  double s;
  if (p_first) {
    e.ax = px, e.ay = py, e.cx = qx - px, e.cy = qy - py, s = 1;
  } else {
    e.ax = qx, e.ay = qy, e.cx = px - qx, e.cy = py - qy, s = -1;
  }
  e.sigma = orient * s;
  // With area > 0 (clockwise on a y-down screen) an edge is "top" when it runs
  // in +x horizontally and "left" when it runs in -y. Its positively oriented
  // direction is sigma * (cx, cy) with cy >= 0, so that is: cy == 0 and
  // sigma > 0 (top), or cy > 0 and sigma < 0 (left).
  e.top_left = (e.cy == 0) ? (e.sigma > 0) : (e.sigma < 0);
  return e;
}

}  // namespace

void rasterize(const std::vector<float>& screen, const std::vector<std::int32_t>& triangles, Buffers& out,
               bool perspective, const std::vector<std::uint8_t>* enabled, float near) {
  const int W = out.width, H = out.height;
  const std::size_t n = static_cast<std::size_t>(std::max(W, 0)) * static_cast<std::size_t>(std::max(H, 0));
  if (W < 0 || H < 0 || out.triangle.size() != n || out.b1.size() != n || out.b2.size() != n || out.depth.size() != n)
    throw Error("raster: buffers are not sized " + std::to_string(W) + "x" + std::to_string(H) + " (call reset)");
  const std::size_t T = triangles.size() / 3;
  if (enabled && enabled->size() != T)
    throw Error("raster: " + std::to_string(enabled->size()) + " enabled flags for " + std::to_string(T) + " triangles");
  if (W == 0 || H == 0) return;
  const std::size_t nv = screen.size() / 3;
  const double znear = std::isfinite(near) ? static_cast<double>(near) : 0.0;

  for (std::size_t t = 0; t < T; ++t) {
    if (enabled && !(*enabled)[t]) continue;
    const std::int32_t* idx = &triangles[3 * t];
    if (idx[0] < 0 || idx[1] < 0 || idx[2] < 0 || static_cast<std::size_t>(idx[0]) >= nv ||
        static_cast<std::size_t>(idx[1]) >= nv || static_cast<std::size_t>(idx[2]) >= nv)
      continue;
    double x[3], y[3], z[3];
    bool ok = true;
    for (int k = 0; k < 3; ++k) {
      const float* v = &screen[3 * static_cast<std::size_t>(idx[k])];
      x[k] = v[0], y[k] = v[1], z[k] = v[2];
      ok = ok && std::isfinite(x[k]) && std::isfinite(y[k]) && std::isfinite(z[k]) && z[k] > znear;
    }
    if (!ok) continue;

    const double minx = std::min({x[0], x[1], x[2]}), maxx = std::max({x[0], x[1], x[2]});
    const double miny = std::min({y[0], y[1], y[2]}), maxy = std::max({y[0], y[1], y[2]});
    // Pixel i's centre is i + 0.5: covered columns are ceil(minx - 0.5) .. floor(maxx - 0.5).
    const double fx0 = std::max(0.0, std::ceil(minx - 0.5)), fx1 = std::min(W - 1.0, std::floor(maxx - 0.5));
    const double fy0 = std::max(0.0, std::ceil(miny - 0.5)), fy1 = std::min(H - 1.0, std::floor(maxy - 0.5));
    if (!(fx0 <= fx1) || !(fy0 <= fy1)) continue;
    const int x0 = static_cast<int>(fx0), x1 = static_cast<int>(fx1);
    const int y0 = static_cast<int>(fy0), y1 = static_cast<int>(fy1);

    const double area2 = (x[1] - x[0]) * (y[2] - y[0]) - (y[1] - y[0]) * (x[2] - x[0]);
    if (!(std::abs(area2) > 0) || !std::isfinite(area2)) continue;
    const double orient = area2 > 0 ? 1.0 : -1.0;
    const double inv_area = 1.0 / std::abs(area2);
    // Edge k is opposite vertex k: its edge function is proportional to barycentric k.
    const Edge e[3] = {make_edge(x[1], y[1], x[2], y[2], orient), make_edge(x[2], y[2], x[0], y[0], orient),
                       make_edge(x[0], y[0], x[1], y[1], orient)};
    const double iz0 = 1.0 / z[0], iz1 = 1.0 / z[1], iz2 = 1.0 / z[2];
    const std::int32_t tri = static_cast<std::int32_t>(t);

    for (int py = y0; py <= y1; ++py) {
      const double cy = py + 0.5;
      double row[3];
      for (int k = 0; k < 3; ++k) row[k] = e[k].cx * (cy - e[k].ay);
      const std::size_t base = static_cast<std::size_t>(py) * static_cast<std::size_t>(W);
      for (int px = x0; px <= x1; ++px) {
        const double cx = px + 0.5;
        double w[3];
        bool inside = true;
        for (int k = 0; k < 3; ++k) {
          const double f = row[k] - e[k].cy * (cx - e[k].ax);
          w[k] = e[k].sigma * f;
          inside = inside && (w[k] > 0 || (w[k] == 0 && e[k].top_left));
        }
        if (!inside) continue;
        const double l0 = w[0] * inv_area, l1 = w[1] * inv_area, l2 = w[2] * inv_area;
        double depth, b1, b2;
        if (perspective) {
          const double q0 = l0 * iz0, q1 = l1 * iz1, q2 = l2 * iz2;
          const double s = q0 + q1 + q2;
          if (!(s > 0)) continue;
          depth = 1.0 / s;
          b1 = q1 * depth;
          b2 = q2 * depth;
        } else {
          depth = l0 * z[0] + l1 * z[1] + l2 * z[2];
          b1 = l1;
          b2 = l2;
        }
        const std::size_t i = base + static_cast<std::size_t>(px);
        const float d = static_cast<float>(depth);
        if (!(d < out.depth[i])) continue;
        out.depth[i] = d;
        out.triangle[i] = tri;
        out.b1[i] = static_cast<float>(b1);
        out.b2[i] = static_cast<float>(b2);
      }
    }
  }
}

}  // namespace hfr::raster
