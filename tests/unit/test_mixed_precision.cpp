// hfr-train --precision: the autocast guard and the dynamic loss scaler
// (hfr/mixed_precision.hpp). The scaler's arithmetic is checked on the CPU in
// float32, where scaling by a power of two and back is exact: training with
// it must give bitwise the same weights as without, and an overflowing step
// must leave the weights untouched.
#include "torch_catch.hpp"

#include <cmath>
#include <limits>
#include <vector>

#include "hfr/error.hpp"
#include "hfr/mixed_precision.hpp"

using namespace hfr;
using namespace hfr::amp;

TEST_CASE("precision names parse and print", "[amp]") {
  CHECK(parse_precision("fp32") == Precision::fp32);
  CHECK(parse_precision("bf16") == Precision::bf16);
  CHECK(parse_precision("fp16") == Precision::fp16);
  CHECK(std::string(precision_name(Precision::bf16)) == "bf16");
  CHECK_THROWS_AS(parse_precision("fp8"), UsageError);
  CHECK_THROWS_AS(parse_precision("FP16"), UsageError);
}

TEST_CASE("autocast computes matrix products in bfloat16 on the CPU inside its scope only", "[amp]") {
  const torch::Tensor a = torch::randn({4, 8}), b = torch::randn({8, 3});
  const torch::Tensor ref = torch::mm(a, b);
  CHECK(ref.scalar_type() == torch::kFloat);
  {
    Autocast ac(Precision::bf16, torch::kCPU);
    const torch::Tensor c = torch::mm(a, b);
    CHECK(c.scalar_type() == torch::kBFloat16);
    CHECK(torch::allclose(c.to(torch::kFloat), ref, 0.05, 0.1));
    CHECK_FALSE(torch::equal(c.to(torch::kFloat), ref));  // really rounded
    {
      Autocast inner(Precision::bf16, torch::kCPU);  // nested: still on
      CHECK(torch::mm(a, b).scalar_type() == torch::kBFloat16);
    }
    CHECK(torch::mm(a, b).scalar_type() == torch::kBFloat16);
    {
      Autocast off(Precision::fp32, torch::kCPU);  // fp32 changes nothing
      CHECK(torch::mm(a, b).scalar_type() == torch::kBFloat16);
    }
  }
  CHECK(torch::mm(a, b).scalar_type() == torch::kFloat);
  CHECK_THROWS_AS(Autocast(Precision::fp16, torch::kCPU), UsageError);
  CHECK(torch::mm(a, b).scalar_type() == torch::kFloat);  // the refused guard left nothing on
}

TEST_CASE("loss scaler: scale, unscale, back-off and growth as GradScaler", "[amp]") {
  LossScaler::Options o;
  o.init_scale = 1024;
  o.interval = 3;
  LossScaler s(true, o);
  CHECK(s.enabled());
  CHECK(s.scale() == 1024);
  const torch::Tensor loss = torch::tensor(0.5f);
  CHECK(s.scale_loss(loss).item<float>() == 512.0f);

  torch::Tensor p = torch::zeros({3}, torch::requires_grad());
  p.mutable_grad() = torch::tensor({1024.0f, -2048.0f, 512.0f});
  CHECK(s.unscale({p}));
  CHECK(torch::equal(p.grad(), torch::tensor({1.0f, -2.0f, 0.5f})));

  p.mutable_grad() = torch::tensor({1.0f, std::numeric_limits<float>::infinity(), 0.0f});
  CHECK_FALSE(s.unscale({p}));
  p.mutable_grad() = torch::tensor({std::nanf(""), 1.0f, 0.0f});
  CHECK_FALSE(s.unscale({p}));
  torch::Tensor q = torch::zeros({2}, torch::requires_grad());  // no gradient: ignored
  CHECK(s.unscale({q}));

  CHECK(s.update(true));
  CHECK(s.scale() == 512);
  CHECK(s.growth_tracker() == 0);
  CHECK(s.update(false));
  CHECK(s.update(false));
  CHECK(s.growth_tracker() == 2);
  CHECK(s.scale() == 512);
  CHECK(s.update(false));  // the third good step in a row doubles it
  CHECK(s.scale() == 1024);
  CHECK(s.growth_tracker() == 0);
  CHECK(s.update(false));
  CHECK(s.update(true));  // an overflow restarts the count
  CHECK(s.growth_tracker() == 0);

  s.restore(256, 2);
  CHECK(s.scale() == 256);
  CHECK(s.growth_tracker() == 2);
  CHECK_THROWS_AS(s.restore(-1, 0), FormatError);
  CHECK_THROWS_AS(s.restore(std::numeric_limits<double>::infinity(), 0), FormatError);

  // every step overflowing: the scale runs out and update() says so
  LossScaler::Options tiny = o;
  tiny.init_scale = 4;
  tiny.min_scale = 1;
  LossScaler t(true, tiny);
  CHECK(t.update(true));   // 2
  CHECK(t.update(true));   // 1
  CHECK_FALSE(t.update(true));  // 0.5 < min
  CHECK_THROWS_AS(LossScaler(true, LossScaler::Options{0, 2, 0.5, 10, 1e-5}), Error);
}

TEST_CASE("a disabled loss scaler is the identity but still finds Inf/NaN", "[amp]") {
  LossScaler s(false);
  CHECK(s.scale() == 1);
  const torch::Tensor loss = torch::tensor(0.25f);
  CHECK(s.scale_loss(loss).item<float>() == 0.25f);
  torch::Tensor p = torch::zeros({2}, torch::requires_grad());
  p.mutable_grad() = torch::tensor({3.0f, 4.0f});
  CHECK(s.unscale({p}));
  CHECK(torch::equal(p.grad(), torch::tensor({3.0f, 4.0f})));
  p.mutable_grad() = torch::tensor({3.0f, -std::numeric_limits<float>::infinity()});
  CHECK_FALSE(s.unscale({p}));
  CHECK(s.update(true));
  CHECK(s.scale() == 1);
}

namespace {

// A few SGD steps of a small regression, with or without loss scaling; step
// `overflow_at` gets an Inf in its loss (as an fp16 overflow would).
torch::Tensor train_small(bool scaled, int overflow_at, double* final_scale) {
  torch::manual_seed(3);
  torch::nn::Linear net(torch::nn::LinearOptions(6, 2));
  torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  LossScaler::Options o;
  o.interval = 4;  // grows within the run
  LossScaler scaler(scaled, o);
  const torch::Tensor x = torch::randn({16, 6}), y = torch::randn({16, 2});
  for (int step = 0; step < 10; ++step) {
    opt.zero_grad();
    torch::Tensor loss = (net->forward(x) - y).pow(2).mean();
    if (step == overflow_at) loss = loss * std::numeric_limits<float>::infinity();
    scaler.scale_loss(loss).backward();
    const bool found_inf = !scaler.unscale(net->parameters());
    scaler.update(found_inf);
    if (!found_inf) opt.step();
  }
  *final_scale = scaler.scale();
  return torch::cat({net->weight.detach().reshape({-1}), net->bias.detach()});
}

}  // namespace

TEST_CASE("loss scaling by powers of two trains bitwise as without it; an overflowing step is skipped", "[amp]") {
  double s_plain = 0, s_scaled = 0;
  const torch::Tensor plain = train_small(false, -1, &s_plain);
  const torch::Tensor scaled = train_small(true, -1, &s_scaled);
  CHECK(torch::equal(plain, scaled));
  CHECK(s_plain == 1);
  CHECK(s_scaled == 65536.0 * 4);  // 10 good steps, grown at steps 4 and 8

  // the overflow at step 3 is skipped: the same as never taking that step
  double s1 = 0;
  const torch::Tensor skipped = train_small(true, 3, &s1);
  CHECK(s1 == 32768.0 * 2);  // halved once, then 6 good steps: one growth
  CHECK_FALSE(torch::equal(skipped, plain));
  CHECK(torch::isfinite(skipped).all().item<bool>());
}
