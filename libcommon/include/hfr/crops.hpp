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
// One-channel models (pre.grey, LightCNN) -> [N, 1, size, size]: an 8-bit
// grey crop is taken as it is, an RGB one converted to its BT.601 luma
// 0.299 R + 0.587 G + 0.114 B rounded to 8 bits (the weights of OpenCV's
// RGB2GRAY and PIL's convert("L"), which LightCNN's own loaders use; R = G = B,
// a grey image replicated to three channels, gives that grey value exactly);
// then scale[0] and offset[0].
torch::Tensor crops_to_input(const std::vector<const cv::Mat*>& crops, const Preprocess& pre,
                             const std::vector<bool>& flips = {});

}  // namespace hfr::nn
