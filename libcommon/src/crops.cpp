#include "hfr/crops.hpp"

#include "hfr/error.hpp"

namespace hfr::nn {

torch::Tensor crops_to_input(const std::vector<const cv::Mat*>& crops, const Preprocess& pre,
                             const std::vector<bool>& flips) {
  const int s = pre.size;
  torch::Tensor t = torch::empty({static_cast<std::int64_t>(crops.size()), 3, s, s}, at::kFloat);
  float* d = t.data_ptr<float>();
  for (std::size_t i = 0; i < crops.size(); ++i) {
    const cv::Mat& m = *crops[i];
    if (m.rows != s || m.cols != s || m.type() != CV_8UC3)
      throw Error("crop " + std::to_string(i) + " is not an 8-bit RGB image of " + std::to_string(s) + "x" + std::to_string(s));
    const bool f = i < flips.size() && flips[i];
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
