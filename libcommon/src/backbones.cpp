#include "hfr/backbones.hpp"

#include <cmath>
#include <random>

#include <ATen/ATen.h>

#include "hfr/error.hpp"
#include "hfr/hash.hpp"
#include "hfr/version.hpp"

namespace hfr::nn {

namespace {

using json = nlohmann::json;

// Builds a graph of TF ops (NHWC semantics) with initialised constants.
class Builder {
 public:
  explicit Builder(std::uint64_t seed, std::string prefix = "")
      : rng_(splitmix64(seed ^ 0x6261636b626f6e65ULL)), prefix_(std::move(prefix)) {}

  std::string input(int size, int channels) {
    add({"input", "Placeholder", {}, {{"shape", {-1, size, size, channels}}}});
    return "input";
  }
  // k x k convolution, no bias; groups 1 or depthwise (groups == cin == cout).
  std::string conv(const std::string& x, std::int64_t cin, std::int64_t cout, int k, int stride, bool depthwise = false,
                   const std::string& padding = "SAME") {
    if (depthwise && cin != cout) throw Error("backbone: a depthwise convolution keeps its channels");
    const std::int64_t fan_in = depthwise ? k * k : k * k * cin;
    const std::string w = depthwise ? normal("dw", {k, k, cin, 1}, std::sqrt(2.0 / static_cast<double>(fan_in)))
                                    : normal("conv", {k, k, cin, cout}, std::sqrt(2.0 / static_cast<double>(fan_in)));
    json attr = {{"strides", {1, stride, stride, 1}}, {"padding", padding}, {"dilations", {1, 1, 1, 1}}};
    return node(depthwise ? "DepthwiseConv2dNative" : "Conv2D", {x, w}, attr);
  }
  std::string bn(const std::string& x, std::int64_t c) {
    std::string s = fill("bn_scale", c, 1), o = fill("bn_offset", c, 0), m = fill("bn_mean", c, 0), v = fill("bn_variance", c, 1);
    return node("FusedBatchNormV3", {x, s, o, m, v}, {{"epsilon", 1e-5}, {"momentum", 0.1}});
  }
  std::string prelu(const std::string& x, std::int64_t c) { return node("Prelu", {x, fill("prelu_alpha", c, 0.25)}); }
  std::string add_(const std::string& a, const std::string& b) { return node("AddV2", {a, b}); }
  std::string flatten(const std::string& x, std::int64_t n) {
    return node("Reshape", {x, constant("shape", at::tensor(std::vector<std::int64_t>{-1, n}, at::kLong))});
  }
  std::string unary(const std::string& op, const std::string& x) { return node(op, {x}); }
  std::string binary(const std::string& op, const std::string& a, const std::string& b) { return node(op, {a, b}); }
  // a rank-0 constant: not a trainable parameter
  std::string scalar(const std::string& kind, float v) { return constant(kind, at::scalar_tensor(v, at::kFloat)); }
  // rows scaled to L2 norm sqrt(d): unit-variance components whatever the embedding's scale
  std::string rms_normalise(const std::string& x, std::int64_t d) {
    const std::string axis = constant("axis", at::tensor(std::vector<std::int64_t>{1}, at::kLong));
    const std::string ss = node("Sum", {unary("Square", x), axis}, {{"keep_dims", true}});
    const std::string inv = unary("Rsqrt", binary("Add", ss, scalar("eps", 1e-12f)));
    return binary("Mul", binary("Mul", x, inv), scalar("sqrt_d", std::sqrt(static_cast<float>(d))));
  }
  std::string dense(const std::string& x, std::int64_t in, std::int64_t out, bool bias) {
    std::string y = node("MatMul", {x, normal("fc", {in, out}, std::sqrt(2.0 / static_cast<double>(in)))});
    return bias ? node("BiasAdd", {y, fill("fc_bias", out, 0)}) : y;
  }
  // LightCNN's mfm: a k x k convolution (stride 1, SAME) or a dense layer
  // with bias to 2 * cout values, then MaxFeatureMap -> cout. MFM keeps the
  // second moment of its input (E[max(a, b)^2] = E[a^2] for a, b i.i.d. and
  // symmetric), where ReLU halves it: He's variance argument then gives
  // N(0, 1 / fan_in) weights, not 2 / fan_in; biases 0.
  std::string mfm_conv(const std::string& x, std::int64_t cin, std::int64_t cout, int k) {
    const std::string w = normal("conv", {k, k, cin, 2 * cout}, std::sqrt(1.0 / static_cast<double>(k * k * cin)));
    json attr = {{"strides", {1, 1, 1, 1}}, {"padding", "SAME"}, {"dilations", {1, 1, 1, 1}}};
    std::string y = node("BiasAdd", {node("Conv2D", {x, w}, attr), fill("conv_bias", 2 * cout, 0)});
    return node("MaxFeatureMap", {y});
  }
  std::string mfm_dense(const std::string& x, std::int64_t in, std::int64_t out) {
    std::string y = node("MatMul", {x, normal("fc", {in, 2 * out}, std::sqrt(1.0 / static_cast<double>(in)))});
    return node("MaxFeatureMap", {node("BiasAdd", {y, fill("fc_bias", 2 * out, 0)})});
  }
  std::string max_pool2(const std::string& x) {
    return node("MaxPool", {x}, {{"ksize", {1, 2, 2, 1}}, {"strides", {1, 2, 2, 1}}, {"padding", "VALID"}});
  }
  void name_last(const std::string& name) {
    // the output node gets a stable name
    nodes_.back().name = name;
  }
  Graph take() {
    Graph g;
    g.nodes = std::move(nodes_);
    g.consts = std::move(consts_);
    return g;
  }

 private:
  void add(Node n) { nodes_.push_back(std::move(n)); }
  std::string fresh(const std::string& kind) { return prefix_ + kind + "_" + std::to_string(counter_++); }
  std::string node(const std::string& op, std::vector<std::string> in, json attr = json::object()) {
    std::string name = fresh(op);
    add({name, op, std::move(in), std::move(attr)});
    return name;
  }
  std::string constant(const std::string& kind, at::Tensor t) {
    std::string name = fresh(kind);
    add({name, "Const", {}, json::object()});
    consts_[name] = std::move(t);
    return name;
  }
  std::string fill(const std::string& kind, std::int64_t c, float v) { return constant(kind, at::full({c}, v, at::kFloat)); }
  std::string normal(const std::string& kind, std::vector<std::int64_t> shape, double stddev) {
    at::Tensor t = at::empty(shape, at::kFloat);
    float* p = t.data_ptr<float>();
    std::normal_distribution<float> d(0.0f, static_cast<float>(stddev));
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = d(rng_);
    return constant(kind, std::move(t));
  }

  std::mt19937_64 rng_;
  std::string prefix_;
  std::vector<Node> nodes_;
  std::map<std::string, at::Tensor> consts_;
  int counter_ = 0;
};

// insightface IBasicBlock: BN, conv3x3, BN, PReLU, conv3x3 (stride), BN, + shortcut.
std::string ibasic(Builder& b, const std::string& x, std::int64_t cin, std::int64_t planes, int stride) {
  std::string y = b.bn(x, cin);
  y = b.conv(y, cin, planes, 3, 1);
  y = b.bn(y, planes);
  y = b.prelu(y, planes);
  y = b.conv(y, planes, planes, 3, stride);
  y = b.bn(y, planes);
  std::string shortcut = x;
  if (stride != 1 || cin != planes) shortcut = b.bn(b.conv(x, cin, planes, 1, stride), planes);
  return b.add_(y, shortcut);
}

Graph iresnet(const std::vector<int>& layers, std::uint64_t seed) {
  Builder b(seed);
  std::string x = b.input(112, 3);
  x = b.prelu(b.bn(b.conv(x, 3, 64, 3, 1), 64), 64);
  std::int64_t c = 64;
  const std::int64_t planes[4] = {64, 128, 256, 512};
  for (int s = 0; s < 4; ++s)
    for (int i = 0; i < layers[static_cast<std::size_t>(s)]; ++i) {
      x = ibasic(b, x, c, planes[s], i == 0 ? 2 : 1);
      c = planes[s];
    }
  x = b.bn(x, 512);
  x = b.flatten(x, 512 * 7 * 7);
  x = b.dense(x, 512 * 7 * 7, 512, true);
  x = b.bn(x, 512);
  b.name_last("embedding");
  return b.take();
}

// MobileFaceNet blocks (arcface_torch): ConvBlock = conv + BN + PReLU; LinearBlock = conv + BN.
std::string conv_block(Builder& b, const std::string& x, std::int64_t cin, std::int64_t cout, int k, int stride, bool dw = false) {
  return b.prelu(b.bn(b.conv(x, cin, cout, k, stride, dw), cout), cout);
}
std::string depthwise_unit(Builder& b, const std::string& x, std::int64_t cin, std::int64_t cout, int stride, std::int64_t groups,
                           bool residual) {
  std::string y = conv_block(b, x, cin, groups, 1, 1);
  y = conv_block(b, y, groups, groups, 3, stride, true);
  y = b.bn(b.conv(y, groups, cout, 1, 1), cout);
  return residual ? b.add_(y, x) : y;
}

Graph mobilefacenet(std::uint64_t seed) {
  Builder b(seed);
  std::string x = b.input(112, 3);
  x = conv_block(b, x, 3, 128, 3, 2);
  x = conv_block(b, x, 128, 128, 3, 1, true);
  x = depthwise_unit(b, x, 128, 128, 2, 128, false);
  for (int i = 0; i < 4; ++i) x = depthwise_unit(b, x, 128, 128, 1, 128, true);
  x = depthwise_unit(b, x, 128, 256, 2, 256, false);
  for (int i = 0; i < 6; ++i) x = depthwise_unit(b, x, 256, 256, 1, 256, true);
  x = depthwise_unit(b, x, 256, 256, 2, 512, false);
  for (int i = 0; i < 2; ++i) x = depthwise_unit(b, x, 256, 256, 1, 256, true);
  x = conv_block(b, x, 256, 512, 1, 1);
  // GDC: 7x7 depthwise (VALID) + BN, flatten, FC, BN
  x = b.bn(b.conv(x, 512, 512, 7, 1, true, "VALID"), 512);
  x = b.flatten(x, 512);
  x = b.dense(x, 512, 512, false);
  x = b.bn(x, 512);
  b.name_last("embedding");
  return b.take();
}

// LightCNN (Wu et al. 2018): MFM everywhere, no batch normalisation. group =
// 1x1 mfm (cin -> cin) then 3x3 mfm (cin -> cout); pools are 2x2 max pools of
// stride 2 (128 -> 64 -> 32 -> 16 -> 8); the embedding is the fc mfm, 256-d.
std::string lightcnn_group(Builder& b, const std::string& x, std::int64_t cin, std::int64_t cout) {
  return b.mfm_conv(b.mfm_conv(x, cin, cin, 1), cin, cout, 3);
}

// flatten (NHWC order: h, w, c) -> fc mfm 8192 -> 256, the embedding
void lightcnn_head(Builder& b, const std::string& x) {
  b.mfm_dense(b.flatten(x, 8 * 8 * 128), 8 * 8 * 128, 256);
  b.name_last("embedding");
}

Graph lightcnn9(std::uint64_t seed) {
  Builder b(seed);
  std::string x = b.input(128, 1);
  x = b.max_pool2(b.mfm_conv(x, 1, 48, 5));
  x = b.max_pool2(lightcnn_group(b, x, 48, 96));
  x = b.max_pool2(lightcnn_group(b, x, 96, 192));
  x = lightcnn_group(b, x, 192, 128);
  x = b.max_pool2(lightcnn_group(b, x, 128, 128));
  lightcnn_head(b, x);
  return b.take();
}

// LightCNN-29 (v1): residual blocks of two 3x3 mfm (c -> c) with an identity
// shortcut, [1, 2, 3, 4] of them before groups 1..4.
Graph lightcnn29(std::uint64_t seed) {
  Builder b(seed);
  auto blocks = [&](std::string x, std::int64_t c, int n) {
    for (int i = 0; i < n; ++i) x = b.add_(b.mfm_conv(b.mfm_conv(x, c, c, 3), c, c, 3), x);
    return x;
  };
  std::string x = b.input(128, 1);
  x = b.max_pool2(b.mfm_conv(x, 1, 48, 5));
  x = b.max_pool2(lightcnn_group(b, blocks(x, 48, 1), 48, 96));
  x = b.max_pool2(lightcnn_group(b, blocks(x, 96, 2), 96, 192));
  x = lightcnn_group(b, blocks(x, 192, 3), 192, 128);
  x = b.max_pool2(lightcnn_group(b, blocks(x, 128, 4), 128, 128));
  lightcnn_head(b, x);
  return b.take();
}

}  // namespace

bool has_quality_head(const Model& m) { return m.outputs.count("quality") > 0; }

void add_quality_head(Model& m, std::uint64_t seed) {
  if (has_quality_head(m)) return;
  if (m.task != "embedding" || !m.outputs.count("embedding") || m.dim <= 0)
    throw Error(m.name + ": a quality head needs an embedding model");
  Builder b(seed ^ 0x7175616c697479ULL, "quality_");
  // the head reads the embedding without changing it: its loss trains the head only
  std::string x = b.rms_normalise(b.unary("StopGradient", m.outputs.at("embedding")), m.dim);
  x = b.unary("Relu", b.dense(x, m.dim, kQualityHidden, true));
  x = b.unary("Sigmoid", b.dense(x, kQualityHidden, 1, true));
  Graph head = b.take();
  for (const auto& n : m.graph.nodes)
    if (n.name.rfind("quality_", 0) == 0) throw Error(m.name + ": the graph already has a node " + n.name);
  for (auto& n : head.nodes) m.graph.nodes.push_back(std::move(n));
  for (auto& [k, v] : head.consts) m.graph.consts[k] = std::move(v);
  m.outputs["quality"] = m.graph.nodes.back().name;
  m.provenance["quality_head"] = {{"what", "recognisability index regressor (hfr-train --ri), sigmoid output in [0, 1]"},
                                  {"hidden", kQualityHidden}, {"init_seed", seed}};
  m.checksum = model_checksum(m);
}

const std::vector<std::string>& backbone_names() {
  static const std::vector<std::string> names = {"iresnet18", "iresnet34", "iresnet50", "mobilefacenet", "lightcnn9",
                                                 "lightcnn29"};
  return names;
}

bool is_backbone(const std::string& name) {
  for (const auto& n : backbone_names())
    if (n == name) return true;
  return false;
}

Model build_backbone(const std::string& name, std::uint64_t seed) {
  Model m;
  if (name == "iresnet18") m.graph = iresnet({2, 2, 2, 2}, seed);
  else if (name == "iresnet34") m.graph = iresnet({3, 4, 6, 3}, seed);
  else if (name == "iresnet50") m.graph = iresnet({3, 4, 14, 3}, seed);
  else if (name == "mobilefacenet") m.graph = mobilefacenet(seed);
  else if (name == "lightcnn9") m.graph = lightcnn9(seed);
  else if (name == "lightcnn29") m.graph = lightcnn29(seed);
  else {
    std::string known;
    for (const auto& n : backbone_names()) known += (known.empty() ? "" : ", ") + n;
    throw UsageError("unknown backbone '" + name + "' (" + known + ")");
  }
  m.name = name;
  m.task = "embedding";
  m.input = "input";
  m.outputs = {{"embedding", "embedding"}};
  if (name.rfind("lightcnn", 0) == 0) {
    // grey 128x128, pixel / 255, the ArcFace template scaled to 128 (embed
    // and train align to pre.crop at pre.size)
    m.pre.size = 128;
    m.pre.grey = true;
    m.pre.scale = {1 / 255.0f, 1 / 255.0f, 1 / 255.0f};
    m.pre.offset = {0, 0, 0};
    m.pre.crop = "arcface-112";
    m.dim = 256;
  } else {
    m.pre.size = 112;
    m.pre.scale = {1 / 127.5f, 1 / 127.5f, 1 / 127.5f};
    m.pre.offset = {-1, -1, -1};
    m.pre.crop = "arcface-112";
    m.dim = 512;
  }
  m.note = name + " trained by hfr-train (initialised from seed " + std::to_string(seed) + ")";
  m.provenance = {{"built_by", std::string("hfr ") + kVersion}, {"architecture", name}, {"init_seed", seed}};
  m.checksum = model_checksum(m);
  return m;
}

}  // namespace hfr::nn
