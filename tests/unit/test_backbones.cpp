// Batch normalisation in the graph executor (training and inference forms)
// and the backbones hfr-train builds to train from scratch.
#include "torch_catch.hpp"

#include <unistd.h>

#include <filesystem>
#include <set>

#include "hfr/backbones.hpp"
#include "hfr/error.hpp"
#include "hfr/graph.hpp"
#include "hfr/model.hpp"

using namespace hfr;
using nn::Graph;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

void add_const(Graph& g, const std::string& name, torch::Tensor t) {
  g.nodes.push_back({name, "Const", {}, json::object()});
  g.consts[name] = t;
}

// x [N,6,6,3] -> conv 3x3 (4 ch) -> BN -> mean over H,W -> [N,4] -> MatMul 4x5 -> BN (2-D)
Graph bn_graph() {
  torch::manual_seed(5);
  Graph g;
  g.nodes.push_back({"x", "Placeholder", {}, {{"shape", {-1, 6, 6, 3}}}});
  add_const(g, "w", torch::randn({3, 3, 3, 4}) * 0.4);
  add_const(g, "g1", torch::rand({4}) + 0.5);
  add_const(g, "b1", torch::randn({4}) * 0.2);
  add_const(g, "m1", torch::zeros({4}));
  add_const(g, "v1", torch::ones({4}));
  add_const(g, "axes", torch::tensor(std::vector<std::int64_t>{1, 2}));
  add_const(g, "fc", torch::randn({4, 5}));
  add_const(g, "g2", torch::rand({5}) + 0.5);
  add_const(g, "b2", torch::randn({5}) * 0.2);
  add_const(g, "m2", torch::zeros({5}));
  add_const(g, "v2", torch::ones({5}));
  g.nodes.push_back({"c", "Conv2D", {"x", "w"}, {{"strides", {1, 1, 1, 1}}, {"padding", "SAME"}}});
  g.nodes.push_back({"bn1", "FusedBatchNormV3", {"c", "g1", "b1", "m1", "v1"}, {{"epsilon", 1e-3}, {"momentum", 0.25}}});
  g.nodes.push_back({"pool", "Mean", {"bn1", "axes"}, {{"keep_dims", false}}});
  g.nodes.push_back({"d", "MatMul", {"pool", "fc"}, {}});
  g.nodes.push_back({"out", "FusedBatchNormV3", {"d", "g2", "b2", "m2", "v2"}, {{"epsilon", 1e-5}, {"momentum", 0.25}}});
  return g;
}

// Batch normalisation written out: x [N, C, ...] normalised over all but dim 1.
torch::Tensor manual_bn(const torch::Tensor& x, const torch::Tensor& g, const torch::Tensor& b, const torch::Tensor& mean,
                        const torch::Tensor& var, double eps) {
  std::vector<std::int64_t> shape(static_cast<std::size_t>(x.dim()), 1);
  shape[1] = x.size(1);
  return (x - mean.reshape(shape)) / torch::sqrt(var.reshape(shape) + eps) * g.reshape(shape) + b.reshape(shape);
}

}  // namespace

TEST_CASE("batch norm: forward uses batch statistics and updates the running ones; run uses the running ones",
          "[graph][train][batchnorm]") {
  Graph g = bn_graph();
  nn::CompileOptions co;
  co.trainable = true;
  nn::Program p(g, "x", {"c", "bn1", "out"}, "bn", co);
  auto params = p.parameters();
  auto buffers = p.buffers();
  std::set<std::string> pn, bn;
  for (auto& [n, t] : params) pn.insert(n);
  for (auto& [n, t] : buffers) {
    bn.insert(n);
    CHECK_FALSE(t.requires_grad());
  }
  CHECK(pn == std::set<std::string>{"w", "g1", "b1", "fc", "g2", "b2"});
  CHECK(bn == std::set<std::string>{"m1", "v1", "m2", "v2"});

  torch::Tensor x = torch::randn({6, 3, 6, 6});
  auto out = p.forward(x);
  // the conv output (NHWC) -> NCHW for the manual reference
  torch::Tensor c = out[0].permute({0, 3, 1, 2});
  torch::Tensor bmean = c.mean({0, 2, 3}), bvar = c.var({0, 2, 3}, /*unbiased=*/false);
  torch::Tensor want1 = manual_bn(c, g.consts["g1"], g.consts["b1"], bmean, bvar, 1e-3).permute({0, 2, 3, 1});
  CHECK(torch::allclose(out[1], want1, 1e-4, 1e-5));
  // running statistics: (1 - 0.25) * initial + 0.25 * batch, the variance unbiased
  std::map<std::string, torch::Tensor> buf(buffers.begin(), buffers.end());
  CHECK(torch::allclose(buf["m1"], 0.25 * bmean, 1e-5, 1e-6));
  CHECK(torch::allclose(buf["v1"], 0.75 + 0.25 * c.var({0, 2, 3}, /*unbiased=*/true), 1e-5, 1e-6));
  // the second (2-D) batch norm
  torch::Tensor pool = want1.mean({1, 2});
  torch::Tensor d = torch::matmul(pool, g.consts["fc"]);
  torch::Tensor want2 = manual_bn(d, g.consts["g2"], g.consts["b2"], d.mean(0), d.var(0, false), 1e-5);
  CHECK(torch::allclose(out[2], want2, 1e-4, 1e-4));
  // a gradient reaches every parameter
  (out[2] * torch::randn_like(out[2])).sum().backward();
  for (auto& [n, t] : params) {
    INFO(n);
    REQUIRE(t.grad().defined());
    CHECK(t.grad().abs().sum().item<double>() > 0);
  }

  // run(): the running statistics, nothing updated
  torch::Tensor before = buf["m1"].clone();
  auto r = p.run(x);
  CHECK(torch::equal(buf["m1"], before));
  torch::Tensor want_run = manual_bn(c, g.consts["g1"], g.consts["b1"], buf["m1"], buf["v1"], 1e-3).permute({0, 2, 3, 1});
  CHECK(torch::allclose(r[1], want_run, 1e-4, 1e-5));

  // the inference program (batch norm folded into the conv) on the same
  // parameters and statistics computes what run() computes
  Graph gi = g;
  for (auto& [n, t] : params) gi.consts[n] = t.detach().clone();
  for (auto& [n, t] : buffers) gi.consts[n] = t.detach().clone();
  nn::Program inf(gi, "x", {"bn1", "out"}, "bn-inference");
  CHECK(inf.buffers().empty());
  CHECK(inf.parameters().empty());
  auto ri = inf.run(x);
  CHECK(torch::allclose(ri[0], r[1], 1e-4, 1e-5));
  CHECK(torch::allclose(ri[1], r[2], 1e-4, 1e-5));
  nn::CompileOptions nofuse;
  nofuse.fuse = false;
  nn::Program inf2(gi, "x", {"out"}, "bn-inference", nofuse);
  CHECK(inf2.steps() > inf.steps());  // fusion removed the Mul and Add of the first batch norm
  CHECK(torch::allclose(inf2.run(x)[0], ri[1], 1e-4, 1e-5));
}

TEST_CASE("batch norm: malformed nodes are refused by name", "[graph][batchnorm]") {
  Graph g = bn_graph();
  for (auto& n : g.nodes)
    if (n.name == "bn1") n.inputs.pop_back();
  CHECK_THROWS_WITH(nn::Program(g, "x", {"out"}, "bad"), Catch::Contains("bn1") &&
                                                            Catch::Contains("5 inputs"));
  Graph g2 = bn_graph();
  g2.consts["v1"] = torch::ones({3});
  nn::CompileOptions co;
  co.trainable = true;
  CHECK_THROWS_WITH(nn::Program(g2, "x", {"out"}, "bad", co), Catch::Contains("bn1"));
  CHECK_THROWS_WITH(nn::Program(g2, "x", {"out"}, "bad"), Catch::Contains("bn1"));
}

TEST_CASE("backbones: built from the seed, 512-d, trainable, saved and loaded back as hfr model files",
          "[backbones][train]") {
  CHECK_THROWS_AS(nn::build_backbone("resnet1000", 1), UsageError);
  for (const std::string name : {"mobilefacenet", "iresnet18"}) {
    INFO(name);
    nn::Model a = nn::build_backbone(name, 1), b = nn::build_backbone(name, 1), c = nn::build_backbone(name, 2);
    CHECK(a.checksum == b.checksum);
    CHECK(a.checksum != c.checksum);
    CHECK(a.dim == 512);
    CHECK(a.pre.size == 112);
    CHECK(a.pre.crop == "arcface-112");

    nn::CompileOptions co;
    co.trainable = true;
    nn::Program p = nn::compile(a, {"embedding"}, co);
    std::int64_t count = 0;
    for (auto& [n, t] : p.parameters()) count += t.numel();
    // arcface_torch's parameter counts (biases of the BN layers included)
    if (name == "iresnet18") CHECK(count == 24025600);
    if (name == "mobilefacenet") CHECK(count > 1900000);
    if (name == "mobilefacenet") CHECK(count < 2200000);
    torch::manual_seed(3);
    torch::Tensor x = torch::randn({4, 3, 112, 112});
    torch::Tensor e = p.forward(x)[0];
    REQUIRE(e.sizes() == torch::IntArrayRef({4, 512}));
    e.pow(2).sum().backward();
    std::size_t with_grad = 0;
    for (auto& [n, t] : p.parameters()) with_grad += t.grad().defined() && t.grad().abs().sum().item<double>() > 0;
    CHECK(with_grad == p.parameters().size());

    // the trained state written into a model file, loaded back: inference = run()
    auto all = p.parameters();
    for (auto& kv : p.buffers()) all.push_back(kv);
    nn::Model trained = nn::with_parameters(a, all, json{{"test", true}});
    fs::path file = fs::temp_directory_path() / ("hfr_backbone_" + std::to_string(::getpid()) + ".hft");
    nn::save_model(trained, file.string());
    nn::Model loaded = nn::load_model(file.string());
    fs::remove(file);
    CHECK(loaded.checksum == trained.checksum);
    nn::Program inf = nn::compile(loaded, {"embedding"});
    torch::Tensor want = p.run(x)[0];
    torch::Tensor got = inf.run(x)[0];
    CHECK(torch::allclose(got, want, 1e-3, 1e-3));
    CHECK(torch::nn::functional::cosine_similarity(got, want).min().item<double>() > 0.99999);
  }
}
