// A small z-buffer triangle rasteriser (plain C++, single-threaded per call).
// hfr-reconstruct uses it to rasterise meshes in texture space (which
// triangle and where covers each texel), to find which surface points a
// camera sees (depth test), and to draw previews and synthetic test images.
// The physically based renderer (hfr-render) is separate (Embree).
#pragma once
#include <cstdint>
#include <vector>

namespace hfr::raster {

// Per-pixel result: the nearest triangle and the barycentric coordinates of
// the pixel centre in it (b0 = 1 - b1 - b2), perspective-correct when the
// rasterisation was perspective.
struct Buffers {
  int width = 0, height = 0;
  std::vector<std::int32_t> triangle;  // H x W, -1 = empty
  std::vector<float> b1, b2;           // H x W
  std::vector<float> depth;            // H x W, +inf = empty
  void reset(int w, int h);
};

// screen: V x 3 per vertex: x, y in pixels (pixel centres at +0.5), z =
// camera-space depth (> 0; smaller is nearer). Triangles with any vertex at
// z <= near are skipped. When `perspective` is true barycentrics are
// corrected by 1/z; otherwise they are affine in screen space (use z = 1 for
// texture-space rasterisation). `enabled` (optional, T entries) selects the
// triangles drawn. Both windings are drawn (no back-face culling). Ties at a
// shared edge follow the top-left rule, so a closed mesh covers each pixel
// once.
void rasterize(const std::vector<float>& screen, const std::vector<std::int32_t>& triangles, Buffers& out,
               bool perspective, const std::vector<std::uint8_t>* enabled = nullptr, float near = 1e-3f);

}  // namespace hfr::raster
