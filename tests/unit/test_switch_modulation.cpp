// Switch style modulation (methods.md §4): the SwitchRouter and
// SwitchStyleModulation ops against a per-sample reference written directly
// in LibTorch (values and gradients), top-1 routing, and the insertion of
// blocks into a backbone (identity at the start, default places, errors,
// saved and loaded back).
#include "torch_catch.hpp"

#include <unistd.h>

#include <filesystem>

#include "hfr/backbones.hpp"
#include "hfr/error.hpp"
#include "hfr/graph.hpp"
#include "graph_helpers.hpp"
#include "hfr/model.hpp"

using namespace hfr;
using hfr::test::add_const;
using nn::Graph;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// x [N,5,5,2] -> conv 1x1 (2 -> 4 channels; makes the value NCHW inside) ->
// router (E 3) -> modulation -> mean over H, W
Graph ssm_graph(torch::Tensor gamma, torch::Tensor beta) {
  Graph g;
  g.nodes.push_back({"x", "Placeholder", {}, {{"shape", {-1, 5, 5, 2}}}});
  add_const(g, "w", torch::randn({1, 1, 2, 4}));
  g.nodes.push_back({"c", "Conv2D", {"x", "w"}, {{"strides", {1, 1, 1, 1}}, {"padding", "VALID"}}});
  add_const(g, "rw", torch::randn({8, 3}) * 2);
  add_const(g, "rb", torch::randn({3}) * 0.1);
  add_const(g, "gamma", gamma);
  add_const(g, "beta", beta);
  g.nodes.push_back({"router", "SwitchRouter", {"c", "rw", "rb"}, {{"epsilon", 1e-5}}});
  g.nodes.push_back({"ssm", "SwitchStyleModulation", {"c", "router", "gamma", "beta"}, {{"epsilon", 1e-5}}});
  add_const(g, "axes", torch::tensor(std::vector<std::int64_t>{1, 2}));
  g.nodes.push_back({"mean", "Mean", {"ssm", "axes"}, {{"keep_dims", false}}});
  return g;
}

// The reference, one sample at a time, NHWC: y = x + p_k (gamma_k (x - mu) / sqrt(var + eps) + beta_k),
// k = argmax p, p = softmax([mu, sqrt(var + eps)] rw + rb).
std::pair<torch::Tensor, torch::Tensor> reference(const torch::Tensor& c, const torch::Tensor& rw, const torch::Tensor& rb,
                                                  const torch::Tensor& gamma, const torch::Tensor& beta) {
  std::vector<torch::Tensor> ys, ps;
  for (std::int64_t i = 0; i < c.size(0); ++i) {
    const torch::Tensor xi = c[i];  // [H, W, C]
    const torch::Tensor mu = xi.mean(std::vector<std::int64_t>{0, 1});
    const torch::Tensor var = (xi - mu).square().mean(std::vector<std::int64_t>{0, 1});
    const torch::Tensor sd = (var + 1e-5).sqrt();
    const torch::Tensor p = torch::softmax(torch::matmul(torch::cat({mu, sd}), rw) + rb, 0);
    const std::int64_t k = p.argmax().item<std::int64_t>();
    ys.push_back(xi + p[k] * (gamma[k] * (xi - mu) / sd + beta[k]));
    ps.push_back(p);
  }
  return {torch::stack(ys), torch::stack(ps)};
}

}  // namespace

TEST_CASE("SwitchRouter and SwitchStyleModulation: values and gradients equal a per-sample reference; top-1 routing",
          "[graph][ssm]") {
  torch::manual_seed(21);
  Graph g = ssm_graph(torch::randn({3, 4}), torch::randn({3, 4}));
  for (const char* op : {"SwitchRouter", "SwitchStyleModulation"})
    CHECK(std::count(nn::supported_ops().begin(), nn::supported_ops().end(), op) == 1);
  // samples of different styles (scales and offsets), so the router sends them to different experts
  const torch::Tensor x = torch::randn({6, 2, 5, 5}) * torch::linspace(0.2, 4, 6).reshape({6, 1, 1, 1}) +
                          torch::linspace(-3, 3, 6).reshape({6, 1, 1, 1});
  const torch::Tensor c = torch::matmul(x.permute({0, 2, 3, 1}), g.consts["w"].reshape({2, 4}));
  auto [want_y, want_p] = reference(c, g.consts["rw"], g.consts["rb"], g.consts["gamma"], g.consts["beta"]);
  for (bool fuse : {true, false}) {
    nn::CompileOptions co;
    co.fuse = fuse;
    nn::Program p(g, "x", {"ssm", "router"}, "ssm", co);
    const auto out = p.run(x);
    REQUIRE(out[0].sizes() == torch::IntArrayRef({6, 5, 5, 4}));
    REQUIRE(out[1].sizes() == torch::IntArrayRef({6, 3}));
    CHECK(torch::allclose(out[0], want_y, 1e-4, 1e-5));
    CHECK(torch::allclose(out[1], want_p, 1e-5, 1e-6));
  }
  // the samples do not all go to one expert (else the test would not test routing)
  CHECK(std::get<0>(at::_unique(want_p.argmax(1))).numel() >= 2);

  // gradients: the program's against autograd through the reference
  nn::CompileOptions co;
  co.trainable = true;
  nn::Program p(g, "x", {"mean"}, "ssm", co);
  const torch::Tensor r = torch::randn({6, 4});
  (p.forward(x)[0] * r).sum().backward();
  std::map<std::string, torch::Tensor> ref;
  for (const char* n : {"w", "rw", "rb", "gamma", "beta"}) ref[n] = g.consts[n].clone().requires_grad_(true);
  const torch::Tensor rc = torch::matmul(x.permute({0, 2, 3, 1}), ref["w"].reshape({2, 4}));
  (reference(rc, ref["rw"], ref["rb"], ref["gamma"], ref["beta"]).first.mean({1, 2}) * r).sum().backward();
  std::map<std::string, torch::Tensor> got;
  for (auto& [name, t] : p.parameters()) got[name] = t;
  REQUIRE(got.size() == 5);
  for (const char* n : {"w", "rw", "rb", "gamma", "beta"}) {
    INFO(n);
    REQUIRE(got[n].grad().defined());
    CHECK(torch::allclose(got[n].grad(), ref[n].grad(), 1e-4, 1e-5));
  }
  // top-1: an expert no sample chose gets no gradient
  const torch::Tensor chosen = want_p.argmax(1);
  for (std::int64_t e = 0; e < 3; ++e)
    if (!(chosen == e).any().item<bool>()) CHECK(got["gamma"].grad()[e].abs().sum().item<double>() == 0);
  CHECK(got["rw"].grad().abs().sum().item<double>() > 0);  // the router learns through p_k

  // malformed constants are refused by name
  Graph bad = g;
  bad.consts["gamma"] = torch::randn({3, 5});
  CHECK_THROWS_WITH(nn::Program(bad, "x", {"ssm"}, "bad"), Catch::Contains("'ssm'") && Catch::Contains("beta"));
  bad = g;
  bad.consts["rw"] = torch::randn({7, 3});
  CHECK_THROWS_WITH(nn::Program(bad, "x", {"router"}, "bad"), Catch::Contains("'router'") && Catch::Contains("[2C, E]"));
  bad = g;
  bad.consts["rw"] = torch::randn({6, 3});  // weights for 3 channels, the value has 4
  CHECK_THROWS_WITH(nn::Program(bad, "x", {"router"}, "bad").run(x), Catch::Contains("3 channels"));
}

TEST_CASE("SwitchStyleModulation: router noise draws experts from p in forward() only, reproducibly from the seed",
          "[graph][ssm]") {
  torch::manual_seed(5);
  // gamma 0, beta_k one-hot on channel k: y - x = p_k e_k tells which expert k a sample went to
  Graph g = ssm_graph(torch::zeros({3, 4}), torch::eye(3, 4));
  const std::int64_t N = 3000;
  const torch::Tensor x = (torch::randn({1, 2, 5, 5}) * 0.2).expand({N, 2, 5, 5}).contiguous();  // one style, N times
  nn::Program p(g, "x", {"ssm", "router"}, "ssm");
  auto chosen = [&](const std::vector<torch::Tensor>& out) {
    const torch::Tensor c = torch::matmul(x.permute({0, 2, 3, 1}), g.consts["w"].reshape({2, 4}));
    return (out[0] - c).mean({1, 2}).narrow(1, 0, 3).argmax(1);  // [N]
  };
  const auto plain = p.run(x);
  const torch::Tensor prob = plain[1][0];
  const std::int64_t top = prob.argmax().item<std::int64_t>();
  REQUIRE(prob.max().item<double>() < 0.9);  // every expert has a chance worth measuring
  CHECK((chosen(plain) == top).all().item<bool>());
  p.set_router_noise(1.0, 42);
  CHECK((chosen(p.run(x)) == top).all().item<bool>());  // run(): never noisy
  torch::Tensor a = chosen(p.forward(x));
  for (std::int64_t e = 0; e < 3; ++e) {
    INFO("expert " << e << " p " << prob[e].item<double>());
    // Gumbel-max with sigma 1 draws from p: within 4 standard errors
    const double f = (a == e).to(torch::kDouble).mean().item<double>(), pe = prob[e].item<double>();
    CHECK(std::abs(f - pe) < 4 * std::sqrt(pe * (1 - pe) / N));
  }
  CHECK(torch::equal(a, chosen(p.forward(x))));           // the same seed: the same draws
  p.set_router_noise(1.0, 43);
  CHECK_FALSE(torch::equal(a, chosen(p.forward(x))));     // another seed: others
  p.set_router_noise(0, 43);
  CHECK((chosen(p.forward(x)) == top).all().item<bool>());  // sigma 0: top-1 again
  p.set_router_noise(50, 7);                              // a large sigma: close to uniform
  a = chosen(p.forward(x));
  for (std::int64_t e = 0; e < 3; ++e) CHECK(std::abs((a == e).to(torch::kDouble).mean().item<double>() - 1.0 / 3) < 0.05);
  CHECK_THROWS_AS(p.set_router_noise(-1, 0), UsageError);
}

TEST_CASE("switch style modulation blocks: inserted at the default places, the model unchanged at the start, saved and "
          "loaded back",
          "[backbones][ssm]") {
  nn::Model m = nn::build_backbone("iresnet18", 3);
  const auto points = nn::default_modulation_points(m, 2);
  REQUIRE(points.size() == 2);
  for (const auto& pt : points) CHECK(m.graph.find(pt)->op == "AddV2");  // residual sums
  const torch::Tensor x = torch::randn({2, 3, 112, 112});
  const torch::Tensor before = nn::compile(m, {"embedding"}).run(x)[0];

  nn::Model s = m;
  nn::add_switch_modulation(s, 3, points, 5);
  CHECK(nn::has_switch_modulation(s));
  CHECK(nn::router_roles(s) == std::vector<std::string>{"router_1", "router_2"});
  CHECK(s.checksum != m.checksum);
  CHECK(s.provenance["switch_modulation"]["experts"] == 3);
  // every former consumer of the points now reads a block
  for (const auto& n : s.graph.nodes)
    if (n.op != "SwitchRouter" && n.op != "SwitchStyleModulation")
      for (const auto& in : n.inputs) CHECK(std::find(points.begin(), points.end(), in) == points.end());
  auto outs = nn::compile(s, {"embedding", "router_1", "router_2"}).run(x);
  CHECK(torch::allclose(outs[0], before, 1e-5, 1e-5));  // gamma = beta = 0: the identity
  for (std::size_t k = 1; k < 3; ++k) {
    REQUIRE(outs[k].sizes() == torch::IntArrayRef({2, 3}));
    CHECK(torch::allclose(outs[k].sum(1), torch::ones({2}), 1e-5, 1e-6));
  }
  // the spatial sizes of the points: IResNet-18's 28x28 and 14x14 stages
  {
    nn::Program probe(m.graph, m.input, points, "probe");
    auto v = probe.run(torch::zeros({1, 3, 112, 112}));
    CHECK(v[0].size(1) == 28);
    CHECK(v[1].size(1) == 14);
  }

  // trainable: the blocks' constants are parameters named ssm_*
  nn::CompileOptions co;
  co.trainable = true;
  int ssm_params = 0;
  for (const auto& [name, t] : nn::compile(s, {"embedding"}, co).parameters()) ssm_params += name.rfind("ssm_", 0) == 0;
  CHECK(ssm_params == 8);  // router weights and bias, gamma, beta per block

  // saved and loaded back
  char tmpl[] = "/tmp/hfr-ssm-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const fs::path file = fs::path(tmpl) / "s.hft";
  nn::save_model(s, file.string());
  const nn::Model loaded = nn::load_model(file.string());
  CHECK(nn::router_roles(loaded).size() == 2);
  CHECK(torch::allclose(nn::compile(loaded, {"embedding"}).run(x)[0], outs[0], 1e-6, 1e-6));
  fs::remove_all(tmpl);

  // LightCNN-9 has no residual sums: the last value of each size
  const nn::Model l = nn::build_backbone("lightcnn9", 1);
  const auto lp = nn::default_modulation_points(l, 2);
  REQUIRE(lp.size() == 2);
  CHECK(l.graph.find(lp[0])->op != "AddV2");

  // errors
  CHECK_THROWS_AS(nn::add_switch_modulation(s, 3, points, 5), Error);  // twice
  nn::Model e = m;
  CHECK_THROWS_WITH(nn::add_switch_modulation(e, 3, {"no_such_node"}, 1), Catch::Contains("no_such_node"));
  CHECK_THROWS_WITH(nn::add_switch_modulation(e, 3, {points[0], points[0]}, 1), Catch::Contains("twice"));
  CHECK_THROWS_AS(nn::add_switch_modulation(e, 1, points, 1), UsageError);
  CHECK_THROWS_WITH(nn::add_switch_modulation(e, 3, {"embedding"}, 1), Catch::Contains("image-shaped"));
  CHECK_THROWS_WITH(nn::default_modulation_points(m, 9), Catch::Contains("--ssm-at"));
}

TEST_CASE("perceptibility attention: a spatial gate on the last feature map, the identity at the start, trainable",
          "[backbones][attention]") {
  nn::Model m = nn::build_backbone("iresnet18", 4);
  const torch::Tensor x = torch::randn({2, 3, 112, 112});
  const torch::Tensor before = nn::compile(m, {"embedding"}).run(x)[0];
  nn::Model a = m;
  nn::add_perceptibility_attention(a, 9);
  CHECK(nn::has_perceptibility_attention(a));
  CHECK(a.provenance["perceptibility_attention"]["size"] == json({7, 7}));  // IResNet's last map
  CHECK(a.checksum != m.checksum);
  CHECK(torch::allclose(nn::compile(a, {"embedding"}).run(x)[0], before, 1e-5, 1e-5));
  const std::string again = a.checksum;
  nn::add_perceptibility_attention(a, 9);  // once only
  CHECK(a.checksum == again);

  // trainable: the gate's filter and bias get gradients; once they move, the embedding changes
  nn::CompileOptions co;
  co.trainable = true;
  nn::Program p = nn::compile(a, {"embedding"}, co);
  std::vector<torch::Tensor> gate;
  for (auto& [name, t] : p.parameters())
    if (name.rfind("attention_", 0) == 0) gate.push_back(t);
  REQUIRE(gate.size() == 2);  // filter [1, 1, 512, 1] and bias [1]
  p.forward(x)[0].square().sum().backward();
  for (auto& t : gate) CHECK(t.grad().abs().sum().item<double>() > 0);
  {
    torch::NoGradGuard ng;
    gate[0].normal_(0, 0.1);
  }
  CHECK(!torch::allclose(p.run(x)[0], before, 1e-3, 1e-3));
}
