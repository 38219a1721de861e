// Mixed precision for training (hfr-train --precision): autocast for the
// forward pass and a dynamic loss scaler, as PyTorch's torch.autocast and
// torch.cuda.amp.GradScaler do it.
//
//   fp32   everything in float32 (the default; bitwise reproducible on CPU)
//   bf16   convolutions and matrix products in bfloat16 (CPU and CUDA); the
//          same exponent range as float32, so no loss scaling
//   fp16   convolutions and matrix products in float16 (CUDA only); the loss
//          is scaled up before backward so small gradients do not flush to
//          zero, gradients are unscaled before clipping and the step, and a
//          step whose gradients overflowed is skipped (the scale halves)
//
// Parameters, optimizer state, batch-norm statistics, losses and saved
// models stay float32 in every mode.
#pragma once
#include <string>
#include <vector>

#include <torch/torch.h>

namespace hfr::amp {

enum class Precision { fp32, bf16, fp16 };

// "fp32" | "bf16" | "fp16" (UsageError otherwise).
Precision parse_precision(const std::string& name);
const char* precision_name(Precision p);

// UsageError if `p` cannot run on `device` (fp16 on the CPU: CPU autocast
// computes in bfloat16 only).
void require_supported(Precision p, const torch::Device& device);

// Autocast on `device`'s type for this thread while alive (nestable, like
// `with torch.autocast(...)`). fp32: does nothing. Refuses what
// require_supported refuses.
class Autocast {
 public:
  Autocast(Precision p, const torch::Device& device);
  ~Autocast();
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

 private:
  bool active_ = false, cuda_ = false, prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kFloat;
};

// Dynamic loss scaling. Disabled (fp32, bf16): scale 1, unscale() only checks
// finiteness, update() does nothing.
class LossScaler {
 public:
  struct Options {
    double init_scale = 65536.0;  // 2^16, GradScaler's default
    double growth = 2.0;          // after `interval` good steps in a row
    double backoff = 0.5;         // after a step with Inf/NaN gradients
    int interval = 2000;
    double min_scale = 1.0 / 65536;  // below this, update() reports divergence
  };
  explicit LossScaler(bool enabled) : LossScaler(enabled, Options{}) {}
  LossScaler(bool enabled, Options o);

  bool enabled() const { return enabled_; }
  double scale() const { return scale_; }
  int growth_tracker() const { return good_steps_; }

  // loss * scale (the loss itself when disabled).
  torch::Tensor scale_loss(const torch::Tensor& loss) const;
  // Divides every defined gradient of `params` by the scale in place; returns
  // false if any gradient holds Inf or NaN (one device sync for all).
  bool unscale(const std::vector<torch::Tensor>& params) const;
  // After each step: a step with non-finite gradients (skipped by the
  // caller) halves the scale and restarts the count; `interval` finite steps
  // in a row double it. Returns false once the scale falls below min_scale
  // (the model, not the precision, is diverging).
  bool update(bool found_inf);
  // Continues a run (--resume): the saved scale and count.
  void restore(double scale, int growth_tracker);

 private:
  bool enabled_;
  Options o_;
  double scale_;
  int good_steps_ = 0;
};

}  // namespace hfr::amp
