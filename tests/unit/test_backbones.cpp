// Batch normalisation, Max-Feature-Map and grouped convolutions in the graph
// executor (training and inference forms), the backbones hfr-train builds to
// train from scratch (LightCNN-9 against torch.nn through exported weights),
// and one-channel (grey) model input.
#include "torch_catch.hpp"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include <opencv2/core.hpp>

#include "hfr/backbones.hpp"
#include "hfr/crops.hpp"
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

TEST_CASE("batch norm: forward uses batch statistics and updates the running ones, run uses the running ones",
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

TEST_CASE("training layout: channels-last for depthwise networks and CUDA, NCHW otherwise; both train alike",
          "[backbones][train][layout]") {
  CHECK(nn::channels_last_trains_faster(nn::build_backbone("mobilefacenet", 1).graph, false));
  CHECK_FALSE(nn::channels_last_trains_faster(nn::build_backbone("iresnet18", 1).graph, false));
  CHECK_FALSE(nn::channels_last_trains_faster(nn::build_backbone("lightcnn9", 1).graph, false));
  CHECK(nn::channels_last_trains_faster(nn::build_backbone("iresnet18", 1).graph, true));
  // the same network compiled in either layout: the same outputs and gradients (float rounding)
  for (const std::string name : {"mobilefacenet", "iresnet18"}) {
    INFO(name);
    nn::Model m = nn::build_backbone(name, 1);
    torch::manual_seed(4);
    torch::Tensor x = torch::randn({3, 3, 112, 112});
    std::vector<torch::Tensor> outs;
    std::vector<std::vector<std::pair<std::string, torch::Tensor>>> params;
    for (bool cl : {true, false}) {
      nn::CompileOptions co;
      co.trainable = true;
      co.channels_last = cl;
      nn::Program p = nn::compile(m, {"embedding"}, co);
      torch::Tensor e = p.forward(x)[0];
      e.pow(2).sum().backward();
      outs.push_back(e.detach());
      params.push_back(p.parameters());
    }
    INFO((outs[0] - outs[1]).abs().max().item<double>() << " of " << outs[0].abs().max().item<double>());
    CHECK((outs[0] - outs[1]).abs().max().item<double>() < 1e-3);
    CHECK(torch::nn::functional::cosine_similarity(outs[0], outs[1]).min().item<double>() > 0.99999);
    REQUIRE(params[0].size() == params[1].size());
    for (std::size_t i = 0; i < params[0].size(); ++i) {
      INFO(params[0][i].first);
      REQUIRE(params[0][i].first == params[1][i].first);
      const torch::Tensor a = params[0][i].second.grad(), b = params[1][i].second.grad();
      REQUIRE(a.defined());
      REQUIRE(b.defined());
      CHECK((a - b).abs().max().item<double>() <= 1e-3 * (1 + a.abs().max().item<double>()));
    }
  }
}

TEST_CASE("quality head: quality_head on a program's embeddings gives the graph's ri output, gradients to the head only",
          "[backbones][train][ri]") {
  nn::Model m = nn::build_backbone("mobilefacenet", 5);
  nn::add_quality_head(m, 9);
  REQUIRE(nn::has_quality_head(m));
  nn::CompileOptions co;
  co.trainable = true;
  CHECK(m.outputs.count("ri") == 1);
  CHECK(m.outputs.count("quality") == 0);
  nn::Program p = nn::compile(m, {"embedding", "ri"}, co);
  const auto params = p.parameters();
  const std::vector<torch::Tensor> head = nn::quality_head_parameters(params, m.dim, "test");
  REQUIRE(head.size() == 4);
  CHECK(head[0].sizes() == torch::IntArrayRef({512, nn::kQualityHidden}));
  CHECK(head[2].sizes() == torch::IntArrayRef({nn::kQualityHidden, 1}));
  // random head weights (the biases start at zero: make them matter too)
  {
    torch::NoGradGuard ng;
    torch::manual_seed(11);
    for (auto& t : head) t.copy_(torch::randn_like(t) * 0.2);
  }
  torch::manual_seed(4);
  const torch::Tensor x = torch::randn({3, 3, 112, 112});
  const auto outs = p.run(x);
  const torch::Tensor want = outs[1].reshape({-1});
  const torch::Tensor got = nn::quality_head(outs[0], head);
  REQUIRE(got.sizes() == torch::IntArrayRef({3}));
  CHECK((got - want).abs().max().item<double>() < 1e-6);
  CHECK(want.std().item<double>() > 1e-3);  // the outputs differ per image: not a constant head
  // gradients reach the four parameters, nothing else
  const torch::Tensor emb = p.forward(x)[0];
  nn::quality_head(emb, head).sum().backward();
  for (const auto& t : head) CHECK((t.grad().defined() && t.grad().abs().sum().item<double>() > 0));
  for (const auto& [name, t] : params)
    if (name.rfind("quality_", 0) != 0) CHECK_FALSE((t.grad().defined() && t.grad().abs().sum().item<double>() > 0));
  // a model without the head, or another dimension, is refused by name
  nn::Program plain = nn::compile(nn::build_backbone("mobilefacenet", 5), {"embedding"}, co);
  CHECK_THROWS_WITH(nn::quality_head_parameters(plain.parameters(), 512, "plain.hft"),
                    Catch::Contains("plain.hft: its quality head is not hfr-train's"));
  CHECK_THROWS_AS(nn::quality_head_parameters(params, 256, "x"), Error);
}

TEST_CASE("quality head: a model saved with the head as \"quality\" has it renamed to \"ri\"", "[backbones][train][ri]") {
  nn::Model m = nn::build_backbone("mobilefacenet", 5);
  nn::add_quality_head(m, 9);
  const std::string node = m.outputs.at("ri");
  m.outputs.erase("ri");
  m.outputs["quality"] = node;  // the layout before the rename
  REQUIRE(nn::has_quality_head(m));
  nn::add_quality_head(m, 9);
  CHECK(m.outputs.at("ri") == node);
  CHECK(m.outputs.count("quality") == 0);
  CHECK_FALSE(nn::has_ui_quality(m));
}

TEST_CASE("UI-distance quality: the graph computes (1 - cos(embedding, u)) / 2; replaced, removed, bad centres refused",
          "[backbones][train][ri]") {
  nn::Model m = nn::build_backbone("mobilefacenet", 5);
  nn::add_quality_head(m, 9);
  const std::size_t nodes = m.graph.nodes.size(), consts = m.graph.consts.size();
  const std::string before = m.checksum;
  torch::manual_seed(21);
  const torch::Tensor u = torch::randn({512}) * 3;  // not normalised: set_ui_quality does it
  nn::set_ui_quality(m, u);
  REQUIRE(nn::has_ui_quality(m));
  CHECK(m.checksum != before);
  CHECK(m.provenance.contains("ui_quality"));
  torch::manual_seed(4);
  const torch::Tensor x = torch::randn({4, 3, 112, 112});
  {
    const auto outs = nn::compile(m, {"embedding", "quality", "ri"}).run(x);
    REQUIRE(outs[1].sizes() == torch::IntArrayRef({4, 1}));
    const torch::Tensor f = torch::nn::functional::normalize(outs[0].to(torch::kDouble), torch::nn::functional::NormalizeFuncOptions().dim(1));
    const torch::Tensor want = (1 - torch::matmul(f, u.to(torch::kDouble) / u.to(torch::kDouble).norm())) / 2;
    CHECK((outs[1].reshape({-1}).to(torch::kDouble) - want).abs().max().item<double>() < 1e-6);
    CHECK(want.min().item<double>() >= 0);
    CHECK(want.max().item<double>() <= 1);
    // an embedding at the centre scores 0, one opposite it 1
    nn::Model at = m;
    nn::set_ui_quality(at, outs[0][0]);
    CHECK(nn::compile(at, {"quality"}).run(x.narrow(0, 0, 1))[0].item<double>() == Approx(0).margin(1e-6));
    nn::set_ui_quality(at, -outs[0][0]);
    CHECK(nn::compile(at, {"quality"}).run(x.narrow(0, 0, 1))[0].item<double>() == Approx(1).margin(1e-6));
  }
  // a second centre replaces the first (no duplicate nodes); the centre is a constant of the file's graph
  nn::set_ui_quality(m, -u);
  CHECK(m.graph.nodes.size() > nodes);
  const std::size_t with = m.graph.nodes.size();
  nn::set_ui_quality(m, u);
  CHECK(m.graph.nodes.size() == with);
  nn::remove_ui_quality(m);
  CHECK_FALSE(nn::has_ui_quality(m));
  CHECK(m.graph.nodes.size() == nodes);
  CHECK(m.graph.consts.size() == consts);
  CHECK(m.checksum == before);
  CHECK(nn::has_quality_head(m));  // the head stays
  // bad centres
  CHECK_THROWS_WITH(nn::set_ui_quality(m, torch::zeros({512})), Catch::Contains("zero or not finite"));
  CHECK_THROWS_WITH(nn::set_ui_quality(m, torch::full({512}, std::nan(""))), Catch::Contains("zero or not finite"));
  CHECK_THROWS_WITH(nn::set_ui_quality(m, torch::ones({128})), Catch::Contains("512 values"));
  CHECK_THROWS_WITH(nn::set_ui_quality(m, torch::ones({512}, torch::kLong)), Catch::Contains("float vector"));
}

namespace {

// Debian's interpreter has python3-torch (see test_losses.cpp); HFR_REFERENCE_PYTHON overrides it.
std::string reference_python() {
  const char* p = std::getenv("HFR_REFERENCE_PYTHON");
  return p && *p ? p : "/usr/bin/python3";
}

bool python_torch_available() {
  return std::system(("'" + reference_python() + "' -c 'import torch, numpy' >/dev/null 2>&1").c_str()) == 0;
}

std::int64_t parameter_count(const nn::Program& p) {
  std::int64_t count = 0;
  for (auto& [n, t] : p.parameters()) count += t.numel();
  return count;
}

void write_f32(const std::string& path, const torch::Tensor& t) {
  torch::Tensor c = t.detach().to(at::kFloat).contiguous();
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(c.data_ptr<float>()), static_cast<std::streamsize>(c.numel() * sizeof(float)));
  REQUIRE(f.good());
}

torch::Tensor read_f32(const std::string& path, std::vector<std::int64_t> shape) {
  torch::Tensor t = torch::empty(shape, at::kFloat);
  std::ifstream f(path, std::ios::binary);
  f.read(reinterpret_cast<char*>(t.data_ptr<float>()), static_cast<std::streamsize>(t.numel() * sizeof(float)));
  REQUIRE(f.gcount() == static_cast<std::streamsize>(t.numel() * sizeof(float)));
  return t;
}

}  // namespace

TEST_CASE("MaxFeatureMap: the elementwise max of the two channel halves, images and vectors, with gradients",
          "[graph][mfm]") {
  // x [N,3,3,4] -> conv 1x1 (4 -> 6 channels) -> MFM -> [N,3,3,3]; and [N,6] -> MFM -> [N,3]
  torch::manual_seed(9);
  Graph g;
  g.nodes.push_back({"x", "Placeholder", {}, {{"shape", {-1, 3, 3, 4}}}});
  add_const(g, "w", torch::randn({1, 1, 4, 6}));
  add_const(g, "b", torch::randn({6}));
  add_const(g, "shape", torch::tensor(std::vector<std::int64_t>{-1, 6}));
  g.nodes.push_back({"c", "Conv2D", {"x", "w"}, {{"strides", {1, 1, 1, 1}}, {"padding", "VALID"}}});
  g.nodes.push_back({"cb", "BiasAdd", {"c", "b"}, {}});
  g.nodes.push_back({"m", "MaxFeatureMap", {"cb"}, {}});
  g.nodes.push_back({"mean", "Mean", {"cb", "axes"}, {{"keep_dims", false}}});
  add_const(g, "axes", torch::tensor(std::vector<std::int64_t>{1, 2}));
  g.nodes.push_back({"v", "MaxFeatureMap", {"mean"}, {}});
  CHECK(std::count(nn::supported_ops().begin(), nn::supported_ops().end(), "MaxFeatureMap") == 1);

  torch::Tensor x = torch::randn({2, 4, 3, 3});
  // reference: the conv in NHWC by hand, then torch.split + torch.max as LightCNN's mfm
  torch::Tensor cb = torch::matmul(x.permute({0, 2, 3, 1}), g.consts["w"].reshape({4, 6})) + g.consts["b"];
  torch::Tensor want = torch::max(cb.narrow(3, 0, 3), cb.narrow(3, 3, 3));
  torch::Tensor mean = cb.mean({1, 2});
  torch::Tensor want_v = torch::max(mean.narrow(1, 0, 3), mean.narrow(1, 3, 3));
  for (bool fuse : {true, false}) {
    nn::CompileOptions co;
    co.fuse = fuse;
    nn::Program p(g, "x", {"m", "v"}, "mfm", co);
    auto out = p.run(x);
    REQUIRE(out[0].sizes() == torch::IntArrayRef({2, 3, 3, 3}));
    CHECK(torch::allclose(out[0], want, 1e-5, 1e-5));
    REQUIRE(out[1].sizes() == torch::IntArrayRef({2, 3}));
    CHECK(torch::allclose(out[1], want_v, 1e-5, 1e-5));
  }
  // fixed numbers: halves (1, -2, 3) and (0, 5, 3)
  Graph h;
  h.nodes.push_back({"x", "Placeholder", {}, {{"shape", {-1, 1, 1, 6}}}});
  h.nodes.push_back({"m", "MaxFeatureMap", {"x"}, {}});
  torch::Tensor fixed = torch::tensor({1.0f, -2.0f, 3.0f, 0.0f, 5.0f, 3.0f}).reshape({1, 6, 1, 1});
  CHECK(torch::equal(nn::Program(h, "x", {"m"}, "mfm").run(fixed)[0].reshape({3}), torch::tensor({1.0f, 5.0f, 3.0f})));

  // trainable: gradients reach the filter and bias through the larger half only
  nn::CompileOptions co;
  co.trainable = true;
  nn::Program p(g, "x", {"m"}, "mfm", co);
  auto params = p.parameters();
  REQUIRE(params.size() == 2);
  torch::Tensor r = torch::randn({2, 3, 3, 3});
  (p.forward(x)[0] * r).sum().backward();
  torch::Tensor w = g.consts["w"].clone().requires_grad_(true), b = g.consts["b"].clone().requires_grad_(true);
  torch::Tensor y = torch::matmul(x.permute({0, 2, 3, 1}), w.reshape({4, 6})) + b;
  (torch::max(y.narrow(3, 0, 3), y.narrow(3, 3, 3)) * r).sum().backward();
  std::map<std::string, torch::Tensor> got(params.begin(), params.end());
  CHECK(torch::allclose(got["w"].grad(), w.grad(), 1e-4, 1e-5));
  CHECK(torch::allclose(got["b"].grad(), b.grad(), 1e-4, 1e-5));
  CHECK(torch::allclose(p.run(x)[0], want, 1e-5, 1e-5));  // trainable run == inference

  // an odd channel count is refused at run time, naming the node
  Graph odd = h;
  odd.nodes[0].attr["shape"] = {-1, 1, 1, 5};
  CHECK_THROWS_WITH(nn::Program(odd, "x", {"m"}, "odd").run(torch::zeros({1, 5, 1, 1})),
                    Catch::Contains("'m'") && Catch::Contains("even number of channels"));
}

TEST_CASE("Conv2D: a filter of Cin / G input channels is a grouped convolution (TensorFlow's semantics)",
          "[graph][conv]") {
  // x [N,5,5,4], filter [3,3,2,6]: 2 groups of 2 inputs -> 3 outputs; then a per-channel Mul (folded into the conv)
  torch::manual_seed(13);
  Graph g;
  g.nodes.push_back({"x", "Placeholder", {}, {{"shape", {-1, 5, 5, 4}}}});
  add_const(g, "w", torch::randn({3, 3, 2, 6}));
  add_const(g, "k", torch::rand({6}) + 0.5);
  g.nodes.push_back({"c", "Conv2D", {"x", "w"}, {{"strides", {1, 2, 2, 1}}, {"padding", "SAME"}}});
  g.nodes.push_back({"y", "Mul", {"c", "k"}, {}});
  torch::Tensor x = torch::randn({3, 4, 5, 5});
  // reference: each group on its own, concatenated (TF pads SAME 5 -> 3 with stride 2 by 1 on each side)
  torch::Tensor wt = g.consts["w"].permute({3, 2, 0, 1});
  std::vector<torch::Tensor> parts;
  for (int gi = 0; gi < 2; ++gi)
    parts.push_back(torch::conv2d(x.narrow(1, 2 * gi, 2), wt.narrow(0, 3 * gi, 3), {}, 2, 1));
  torch::Tensor want = (torch::cat(parts, 1) * g.consts["k"].reshape({1, 6, 1, 1})).permute({0, 2, 3, 1});
  nn::Program p(g, "x", {"y"}, "grouped");
  CHECK(p.steps() == 1);  // the Mul folded into the grouped convolution
  CHECK(torch::allclose(p.run(x)[0], want, 1e-4, 1e-5));
  nn::CompileOptions plain;
  plain.channels_last = false;
  plain.fuse = false;
  CHECK(torch::allclose(nn::Program(g, "x", {"y"}, "grouped", plain).run(x)[0], want, 1e-4, 1e-5));
  nn::CompileOptions co;
  co.trainable = true;
  nn::Program t(g, "x", {"y"}, "grouped", co);
  torch::Tensor out = t.forward(x)[0];
  CHECK(torch::allclose(out, want, 1e-4, 1e-5));
  out.sum().backward();
  for (auto& [n, v] : t.parameters()) {
    INFO(n);
    REQUIRE(v.grad().defined());
    CHECK(v.grad().abs().sum().item<double>() > 0);
  }
  // an input whose channels do not divide into the filter's is an error naming the node
  Graph free = g;
  free.nodes[0].attr["shape"] = {-1, 5, 5, -1};
  CHECK_THROWS_WITH(nn::Program(free, "x", {"y"}, "grouped").run(torch::randn({1, 3, 5, 5})), Catch::Contains("'c'"));
}

TEST_CASE("LightCNN-9 and -29: grey 128x128 -> 256-d, published parameter counts, trainable, saved and loaded back",
          "[backbones][train][lightcnn]") {
  // parameter counts of the same networks in torch.nn, without the classifier fc2
  // (scripts/bench/train_reference.py --model lightcnn9 --count): every conv and fc with its bias
  const std::map<std::string, std::int64_t> counts = {{"lightcnn9", 5480864}, {"lightcnn29", 12573280}};
  for (const auto& [name, want_count] : counts) {
    INFO(name);
    nn::Model a = nn::build_backbone(name, 1), b = nn::build_backbone(name, 1), c = nn::build_backbone(name, 2);
    CHECK(a.checksum == b.checksum);
    CHECK(a.checksum != c.checksum);
    CHECK(a.dim == 256);
    CHECK(a.pre.size == 128);
    CHECK(a.pre.grey);
    CHECK(a.pre.channels() == 1);
    CHECK(a.pre.scale[0] == Approx(1 / 255.0));
    CHECK(a.pre.offset[0] == 0);
    CHECK(a.pre.crop == "arcface-112");
    CHECK(std::none_of(a.graph.nodes.begin(), a.graph.nodes.end(), [](const nn::Node& n) { return n.op == "FusedBatchNormV3"; }));

    nn::CompileOptions co;
    co.trainable = true;
    nn::Program p = nn::compile(a, {"embedding"}, co);
    CHECK(parameter_count(p) == want_count);
    CHECK(p.buffers().empty());
    torch::manual_seed(3);
    torch::Tensor x = torch::rand({2, 1, 128, 128});
    torch::Tensor e = p.forward(x)[0];
    REQUIRE(e.sizes() == torch::IntArrayRef({2, 256}));
    CHECK(torch::isfinite(e).all().item<bool>());
    // MFM's N(0, 1/fan_in) keeps the second moment through each layer (inputs in [0, 1]: 0.58 rms);
    // LightCNN-29's ten identity shortcuts double it per block (measured: ~1.2 and ~80)
    const double rms = e.pow(2).mean().sqrt().item<double>();
    CHECK(rms > 0.2);
    CHECK(rms < (name == "lightcnn9" ? 5 : 500));
    CHECK_THROWS(p.run(torch::rand({2, 3, 128, 128})));  // one channel only
    torch::nn::functional::normalize(e, torch::nn::functional::NormalizeFuncOptions().dim(1)).select(1, 0).sum().backward();
    std::size_t with_grad = 0;
    for (auto& [n, t] : p.parameters()) with_grad += t.grad().defined() && t.grad().abs().sum().item<double>() > 0;
    CHECK(with_grad == p.parameters().size());

    // trained values written into a model file, loaded back: the inference program = the trainable one
    {
      torch::NoGradGuard ng;
      for (auto& [n, t] : p.parameters()) t.add_(torch::randn_like(t) * 1e-3);
    }
    nn::Model trained = nn::with_parameters(a, p.parameters(), json{{"test", true}});
    fs::path file = fs::temp_directory_path() / ("hfr_lightcnn_" + std::to_string(::getpid()) + ".hft");
    nn::save_model(trained, file.string());
    nn::Model loaded = nn::load_model(file.string());
    fs::remove(file);
    CHECK(loaded.checksum == trained.checksum);
    CHECK(loaded.pre.grey);
    CHECK(loaded.pre.to_json() == a.pre.to_json());
    CHECK(loaded.dim == 256);
    nn::Program inf = nn::compile(loaded, {"embedding"});
    torch::Tensor want = p.run(x)[0];
    torch::Tensor got = inf.run(x)[0];
    CHECK(torch::allclose(got, want, 1e-4, 1e-4));
    CHECK(torch::allclose(p.forward(x)[0], want, 1e-5, 1e-5));  // no batch statistics: forward == run
  }
}

TEST_CASE("LightCNN-9: the same weights in torch.nn give the same embeddings (max abs error <= 1e-4)",
          "[backbones][lightcnn][python]") {
  if (!python_torch_available()) {
    WARN("skipped: " << reference_python() << " cannot import torch and numpy (apt-get install python3-torch)");
    return;
  }
  nn::Model m = nn::build_backbone("lightcnn9", 7);
  // trainable program: the parameters in graph order, as hfr-train updates and stores them
  nn::CompileOptions co;
  co.trainable = true;
  nn::Program p = nn::compile(m, {"embedding"}, co);
  {  // non-zero biases, so that their layout is checked too
    torch::NoGradGuard ng;
    torch::manual_seed(21);
    for (auto& [n, t] : p.parameters())
      if (t.dim() == 1) t.copy_(torch::randn_like(t) * 0.1);
  }
  char tmpl[] = "/tmp/hfr-lightcnn-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  json man = {{"params", json::array()}};
  int i = 0;
  for (auto& [n, t] : p.parameters()) {
    const std::string f = "p" + std::to_string(i++) + ".bin";
    write_f32(dir + "/" + f, t);
    man["params"].push_back({{"name", n}, {"shape", t.sizes().vec()}, {"file", f}});
  }
  torch::Tensor x = torch::rand({3, 1, 128, 128});
  write_f32(dir + "/input.bin", x);
  man["input"] = {{"name", "input"}, {"shape", x.sizes().vec()}, {"file", "input.bin"}};
  std::ofstream(dir + "/manifest.json") << man.dump();
  const std::string cmd = "'" + reference_python() + "' '" + HFR_SOURCE_DIR +
                          "/scripts/bench/train_reference.py' --model lightcnn9 --parity '" + dir + "' >/dev/null";
  INFO("reproduce: " << cmd);
  REQUIRE(std::system(cmd.c_str()) == 0);
  torch::Tensor ref = read_f32(dir + "/output.bin", {3, 256});
  // the inference program of the model file holding these weights, and the trainable program itself
  nn::Model stored = nn::with_parameters(m, p.parameters());
  torch::Tensor inf = nn::compile(stored, {"embedding"}).run(x)[0];
  torch::Tensor tr = p.run(x)[0];
  const double err_inf = (inf - ref).abs().max().item<double>(), err_tr = (tr - ref).abs().max().item<double>();
  std::printf("LightCNN-9 vs torch.nn: max |ref| %.3f, max abs error %.2e (inference), %.2e (trainable)\n",
              ref.abs().max().item<double>(), err_inf, err_tr);
  CHECK(ref.abs().max().item<double>() > 0.1);
  CHECK(err_inf <= 1e-4);
  CHECK(err_tr <= 1e-4);
  fs::remove_all(dir);
}

TEST_CASE("crops_to_input: one-channel models get the BT.601 luma of RGB crops and grey crops as they are",
          "[crops][lightcnn]") {
  nn::Preprocess pre;
  pre.size = 4;
  pre.grey = true;
  pre.scale = {1 / 255.0f, 1 / 255.0f, 1 / 255.0f};
  cv::Mat rgb(4, 4, CV_8UC3), grey(4, 4, CV_8UC1);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) {
      rgb.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<uchar>(60 * x), static_cast<uchar>(50 * y + 20), static_cast<uchar>(200 - 40 * x));
      grey.at<uchar>(y, x) = static_cast<uchar>(16 * y + x);
    }
  cv::Mat same(4, 4, CV_8UC3, cv::Scalar(37, 37, 37));
  torch::Tensor t = nn::crops_to_input({&rgb, &grey, &same, &rgb}, pre, {false, false, false, true});
  REQUIRE(t.sizes() == torch::IntArrayRef({4, 1, 4, 4}));
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) {
      const cv::Vec3b p = rgb.at<cv::Vec3b>(y, x);
      const double l = std::nearbyint(0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]);
      CHECK(t[0][0][y][x].item<double>() * 255 == Approx(l).margin(1e-3));
      CHECK(t[3][0][y][3 - x].item<double>() * 255 == Approx(l).margin(1e-3));  // flipped
      CHECK(t[1][0][y][x].item<double>() * 255 == Approx(16 * y + x).margin(1e-3));
      CHECK(t[2][0][y][x].item<double>() * 255 == Approx(37).margin(1e-3));  // grey replicated: unchanged
    }
  nn::Preprocess stored = pre;
  stored.size = 128;
  nn::Preprocess back = nn::Preprocess::from_json(stored.to_json(), "test");
  CHECK(back.grey);
  CHECK(pre.to_json()["channels"] == "grey");
  // three-channel models keep taking RGB crops only
  nn::Preprocess rgb_pre = pre;
  rgb_pre.grey = false;
  CHECK(nn::crops_to_input({&rgb}, rgb_pre).sizes() == torch::IntArrayRef({1, 3, 4, 4}));
  CHECK_THROWS_AS(nn::crops_to_input({&grey}, rgb_pre), Error);
  cv::Mat small(3, 3, CV_8UC1);
  CHECK_THROWS_AS(nn::crops_to_input({&small}, pre), Error);
}
