#include "hfr/crops.hpp"

#include <cmath>

#include "hfr/error.hpp"

namespace hfr::nn {

namespace {

// BT.601 luma of an 8-bit RGB pixel, rounded to 8 bits as a grey image would
// hold it (OpenCV's RGB2GRAY and PIL's convert("L") use the same weights, in
// fixed point: they may differ by one level on a rare pixel).
inline float luma(const unsigned char* p) {
  return std::nearbyint(0.299f * static_cast<float>(p[0]) + 0.587f * static_cast<float>(p[1]) +
                        0.114f * static_cast<float>(p[2]));
}

}  // namespace

torch::Tensor crops_to_input(const std::vector<const cv::Mat*>& crops, const Preprocess& pre,
                             const std::vector<bool>& flips) {
  const int s = pre.size;
  const int channels = pre.channels();
  torch::Tensor t = torch::empty({static_cast<std::int64_t>(crops.size()), channels, s, s}, at::kFloat);
  float* d = t.data_ptr<float>();
  for (std::size_t i = 0; i < crops.size(); ++i) {
    const cv::Mat& m = *crops[i];
    const bool f = i < flips.size() && flips[i];
    if (pre.grey) {
      if (m.rows != s || m.cols != s || (m.type() != CV_8UC3 && m.type() != CV_8UC1))
        throw Error("crop " + std::to_string(i) + " is not an 8-bit grey or RGB image of " + std::to_string(s) + "x" +
                    std::to_string(s));
      const float sc = pre.scale[0], off = pre.offset[0];
      const bool rgb = m.channels() == 3;
      float* plane = d + i * static_cast<std::size_t>(s) * s;
      for (int y = 0; y < s; ++y) {
        const unsigned char* row = m.ptr<unsigned char>(y);
        for (int x = 0; x < s; ++x) {
          const int sx = f ? s - 1 - x : x;
          const float v = rgb ? luma(row + 3 * sx) : static_cast<float>(row[sx]);
          plane[y * s + x] = v * sc + off;
        }
      }
      continue;
    }
    if (m.rows != s || m.cols != s || m.type() != CV_8UC3)
      throw Error("crop " + std::to_string(i) + " is not an 8-bit RGB image of " + std::to_string(s) + "x" + std::to_string(s));
    for (int c = 0; c < 3; ++c) {
      const int src = pre.bgr ? 2 - c : c;
      const float sc = pre.scale[static_cast<std::size_t>(c)], off = pre.offset[static_cast<std::size_t>(c)];
      float* plane = d + (i * 3 + static_cast<std::size_t>(c)) * static_cast<std::size_t>(s) * s;
      for (int y = 0; y < s; ++y) {
        const unsigned char* row = m.ptr<unsigned char>(y);
        for (int x = 0; x < s; ++x) plane[y * s + x] = row[3 * (f ? s - 1 - x : x) + src] * sc + off;
      }
    }
  }
  return t;
}

}  // namespace hfr::nn
