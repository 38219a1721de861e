#include "hfr/mixed_precision.hpp"

#include <cmath>

#include <ATen/autocast_mode.h>

#include "hfr/error.hpp"

namespace hfr::amp {

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::fp32;
  if (name == "bf16") return Precision::bf16;
  if (name == "fp16") return Precision::fp16;
  throw UsageError("--precision must be fp32, bf16 or fp16, not '" + name + "'");
}

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::bf16: return "bf16";
    case Precision::fp16: return "fp16";
    default: return "fp32";
  }
}

void require_supported(Precision p, const torch::Device& device) {
  if (p == Precision::fp16 && !device.is_cuda())
    throw UsageError("--precision fp16 needs --device cuda (autocast on the CPU computes in bfloat16: --precision bf16)");
}

Autocast::Autocast(Precision p, const torch::Device& device) {
  if (p == Precision::fp32) return;
  require_supported(p, device);
  cuda_ = device.is_cuda();
  const at::ScalarType dtype = p == Precision::fp16 ? at::kHalf : at::kBFloat16;
  if (cuda_) {
    prev_enabled_ = at::autocast::is_enabled();
    prev_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(true);
  } else {
    prev_enabled_ = at::autocast::is_cpu_enabled();
    prev_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_autocast_cpu_dtype(dtype);
    at::autocast::set_cpu_enabled(true);
  }
  at::autocast::increment_nesting();
  active_ = true;
}

Autocast::~Autocast() {
  if (!active_) return;
  // leaving the outermost region frees the casted copies of the weights
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  if (cuda_) {
    at::autocast::set_enabled(prev_enabled_);
    at::autocast::set_autocast_gpu_dtype(prev_dtype_);
  } else {
    at::autocast::set_cpu_enabled(prev_enabled_);
    at::autocast::set_autocast_cpu_dtype(prev_dtype_);
  }
}

LossScaler::LossScaler(bool enabled, Options o) : enabled_(enabled), o_(o), scale_(enabled ? o.init_scale : 1.0) {
  if (!(o.init_scale > 0) || !(o.growth >= 1) || !(o.backoff > 0 && o.backoff < 1) || o.interval < 1 || !(o.min_scale > 0))
    throw Error("LossScaler: invalid options");
}

torch::Tensor LossScaler::scale_loss(const torch::Tensor& loss) const { return enabled_ ? loss * scale_ : loss; }

bool LossScaler::unscale(const std::vector<torch::Tensor>& params) const {
  torch::NoGradGuard ng;
  torch::Tensor bad;  // count of non-finite gradient entries, summed on the gradients' device
  for (const auto& p : params) {
    const torch::Tensor& g = p.grad();
    if (!g.defined()) continue;
    if (enabled_) g.mul_(1.0 / scale_);
    const torch::Tensor n = torch::isfinite(g).logical_not().sum();
    bad = bad.defined() ? bad + n.to(bad.device()) : n;
  }
  return !bad.defined() || bad.item<std::int64_t>() == 0;
}

bool LossScaler::update(bool found_inf) {
  if (!enabled_) return true;
  if (found_inf) {
    scale_ *= o_.backoff;
    good_steps_ = 0;
    return scale_ >= o_.min_scale;
  }
  if (++good_steps_ >= o_.interval) {
    scale_ *= o_.growth;
    good_steps_ = 0;
  }
  return true;
}

void LossScaler::restore(double scale, int growth_tracker) {
  if (!enabled_) return;
  if (!(scale > 0) || !std::isfinite(scale) || growth_tracker < 0)
    throw FormatError("loss scale " + std::to_string(scale) + " / " + std::to_string(growth_tracker) + " is not valid");
  scale_ = scale;
  good_steps_ = growth_tracker;
}

}  // namespace hfr::amp
