// Aligned face crops -> a network's input tensor (hfr-embed, hfr-train).
#pragma once
#include <vector>

#include <opencv2/core.hpp>
#include <torch/torch.h>

#include "hfr/model.hpp"

namespace hfr::nn {

// 8-bit RGB crops of pre.size x pre.size -> float [N, 3, size, size] with the
// model's per-channel scale and offset (and channel order). flips, when not
// empty, mirrors crop i horizontally where flips[i] is set.
torch::Tensor crops_to_input(const std::vector<const cv::Mat*>& crops, const Preprocess& pre,
                             const std::vector<bool>& flips = {});

}  // namespace hfr::nn
