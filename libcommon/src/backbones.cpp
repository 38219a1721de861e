#include "hfr/backbones.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <random>
#include <set>

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
  // a constant with the given value (trainable when floating point and of rank >= 1)
  std::string given(const std::string& kind, at::Tensor t) { return constant(kind, std::move(t)); }
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
  // A switch style modulation block on x (C channels, E experts): the router
  // (weights N(0, 0.01), bias 0: near-uniform probabilities at the start) and
  // the experts' scale and shift (zeros: the block starts as the identity).
  // Returns {router, block output}.
  std::pair<std::string, std::string> switch_modulation(const std::string& x, std::int64_t c, std::int64_t e) {
    const std::string router = node("SwitchRouter", {x, normal("router_weights", {2 * c, e}, 0.01), fill("router_bias", e, 0)},
                                     {{"epsilon", 1e-5}});
    const std::string gamma = constant("gamma", at::zeros({e, c}, at::kFloat));
    const std::string beta = constant("beta", at::zeros({e, c}, at::kFloat));
    return {router, node("SwitchStyleModulation", {x, router, gamma, beta}, {{"epsilon", 1e-5}})};
  }
  // A spatial attention gate on x (C channels): x * 2 sigmoid(conv1x1(x) + b),
  // one weight per location; the filter and bias start at zero (a gate of 1:
  // the identity).
  std::string spatial_gate(const std::string& x, std::int64_t c) {
    const std::string w = constant("conv", at::zeros({1, 1, c, 1}, at::kFloat));
    json attr = {{"strides", {1, 1, 1, 1}}, {"padding", "VALID"}, {"dilations", {1, 1, 1, 1}}};
    const std::string logit = node("BiasAdd", {node("Conv2D", {x, w}, attr), fill("bias", 1, 0)});
    return node("Mul", {x, node("Mul", {node("Sigmoid", {logit}), scalar("two", 2)})});
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

namespace {
bool output_from(const Model& m, const std::string& role, const std::string& prefix) {
  const auto it = m.outputs.find(role);
  return it != m.outputs.end() && it->second.rfind(prefix, 0) == 0;
}
}  // namespace

bool has_quality_head(const Model& m) { return output_from(m, "ri", "quality_") || output_from(m, "quality", "quality_"); }

void add_quality_head(Model& m, std::uint64_t seed) {
  if (output_from(m, "quality", "quality_")) {  // saved before the head's output was named "ri"
    m.outputs["ri"] = m.outputs.at("quality");
    m.outputs.erase("quality");
    m.checksum = model_checksum(m);
  }
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
  m.outputs["ri"] = m.graph.nodes.back().name;
  m.provenance["quality_head"] = {{"what", "recognisability index regressor (hfr-train --ri), sigmoid output in [0, 1], output \"ri\""},
                                  {"hidden", kQualityHidden}, {"init_seed", seed}};
  m.checksum = model_checksum(m);
}

std::vector<torch::Tensor> quality_head_parameters(const std::vector<std::pair<std::string, torch::Tensor>>& params,
                                                   std::int64_t dim, const std::string& context) {
  // the Builder numbers its nodes in creation order: quality_fc_K, quality_fc_bias_K
  std::vector<std::pair<long, torch::Tensor>> numbered;
  for (const auto& [name, t] : params) {
    if (name.rfind("quality_", 0) != 0) continue;
    const auto us = name.rfind('_');
    char* end = nullptr;
    const long k = std::strtol(name.c_str() + us + 1, &end, 10);
    if (us + 1 >= name.size() || *end) throw Error(context + ": unexpected quality head parameter " + name);
    numbered.push_back({k, t});
  }
  std::sort(numbered.begin(), numbered.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<torch::Tensor> head;
  for (auto& [k, t] : numbered) head.push_back(t);
  const bool ok = head.size() == 4 && head[0].dim() == 2 && head[0].size(0) == dim && head[0].size(1) == kQualityHidden &&
                  head[1].dim() == 1 && head[1].size(0) == kQualityHidden && head[2].dim() == 2 &&
                  head[2].size(0) == kQualityHidden && head[2].size(1) == 1 && head[3].numel() == 1;
  if (!ok)
    throw Error(context + ": its quality head is not hfr-train's (FC " + std::to_string(dim) + " x " +
                std::to_string(kQualityHidden) + ", FC x 1)");
  return head;
}

torch::Tensor quality_head(const torch::Tensor& embeddings, const std::vector<torch::Tensor>& head) {
  if (head.size() != 4) throw Error("quality_head: needs the head's 4 parameters");
  const torch::Tensor e = embeddings.detach();
  const torch::Tensor z = e * torch::rsqrt(e.square().sum(1, true) + 1e-12) * std::sqrt(static_cast<double>(e.size(1)));
  return torch::sigmoid(torch::relu(torch::matmul(z, head[0]) + head[1]).matmul(head[2]) + head[3]).reshape({-1});
}

bool has_ui_quality(const Model& m) { return output_from(m, "quality", "uiq_"); }

void remove_ui_quality(Model& m) {
  const auto ours = [](const std::string& name) { return name.rfind("uiq_", 0) == 0; };
  const std::size_t before = m.graph.nodes.size();
  m.graph.nodes.erase(std::remove_if(m.graph.nodes.begin(), m.graph.nodes.end(), [&](const Node& n) { return ours(n.name); }),
                      m.graph.nodes.end());
  for (auto it = m.graph.consts.begin(); it != m.graph.consts.end();) it = ours(it->first) ? m.graph.consts.erase(it) : std::next(it);
  if (has_ui_quality(m)) m.outputs.erase("quality");
  const bool had_provenance = m.provenance.is_object() && m.provenance.erase("ui_quality") > 0;
  if (m.graph.nodes.size() != before || had_provenance) m.checksum = model_checksum(m);
}

void set_ui_quality(Model& m, const torch::Tensor& ui_centre) {
  if (m.task != "embedding" || !m.outputs.count("embedding") || m.dim <= 0)
    throw Error(m.name + ": a UI-distance quality needs an embedding model");
  if (!ui_centre.defined() || !ui_centre.is_floating_point() || ui_centre.dim() != 1 || ui_centre.size(0) != m.dim)
    throw Error(m.name + ": the UI centre must be a float vector of the embedding's " + std::to_string(m.dim) + " values");
  const at::Tensor u = ui_centre.detach().to(at::kCPU, at::kDouble);
  const double norm = u.norm().item<double>();
  if (!std::isfinite(norm) || norm < 1e-12) throw Error(m.name + ": the UI centre is zero or not finite");
  if (m.outputs.count("quality") && !has_ui_quality(m))
    throw Error(m.name + ": the model has another \"quality\" output (" + m.outputs.at("quality") + ")");
  remove_ui_quality(m);
  Builder b(0, "uiq_");
  const std::string f = b.rms_normalise(b.unary("StopGradient", m.outputs.at("embedding")), 1);  // unit rows
  const std::string w = b.given("centre", (u / norm * -0.5).to(at::kFloat).reshape({m.dim, 1}).contiguous());
  const std::string q = b.binary("AddV2", b.binary("MatMul", f, w), b.scalar("half", 0.5f));
  Graph g = b.take();  // remove_ui_quality left no uiq_ node behind
  for (auto& n : g.nodes) m.graph.nodes.push_back(std::move(n));
  for (auto& [k, v] : g.consts) m.graph.consts[k] = std::move(v);
  m.outputs["quality"] = q;
  m.provenance["ui_quality"] = {{"what", "(1 - cos(embedding, unrecognisable-identity centre)) / 2 (hfr-train --ri)"},
                                {"centre", "running mean of the embeddings of training crops averaged down to 4x4 pixels"}};
  m.checksum = model_checksum(m);
}

torch::Tensor ui_quality(const torch::Tensor& embeddings, const torch::Tensor& ui_centre) {
  const torch::Tensor e = embeddings.detach(), u = ui_centre.detach();
  const torch::Tensor f = e / e.norm(2, 1, true).clamp_min(1e-12);
  return ((1 - torch::matmul(f, u / u.norm().clamp_min(1e-12))) / 2).reshape({-1});
}

// ---- switch style modulation ------------------------------------------------------

namespace {

// The nodes the output depends on, inputs before their consumers.
std::vector<const Node*> topological(const Graph& g, const std::string& output) {
  std::map<std::string, const Node*> by_name;
  for (const auto& n : g.nodes) by_name[n.name] = &n;
  std::vector<const Node*> order;
  std::set<std::string> seen;
  std::function<void(const std::string&)> visit = [&](const std::string& raw) {
    std::string name = raw[0] == '^' ? raw.substr(1) : raw;
    if (const auto colon = name.rfind(':'); colon != std::string::npos) name = name.substr(0, colon);
    if (!seen.insert(name).second) return;
    auto it = by_name.find(name);
    if (it == by_name.end()) return;
    for (const auto& in : it->second->inputs) visit(in);
    order.push_back(it->second);
  };
  visit(output);
  return order;
}

// NHWC shapes of the 4-D values the embedding depends on, in execution order,
// from one forward pass of a zero image.
std::vector<std::pair<std::string, std::vector<std::int64_t>>> image_values(const Model& m) {
  std::vector<std::string> names;
  for (const Node* n : topological(m.graph, m.outputs.at("embedding")))
    if (n->op != "Const" && n->op != "Placeholder" && n->op != "Shape" && n->name != m.input) names.push_back(n->name);
  CompileOptions co;
  co.fuse = false;
  co.channels_last = false;
  Program p(m.graph, m.input, names, m.name, co);
  at::NoGradGuard ng;
  const auto outs = p.run(at::zeros({1, m.pre.channels(), m.pre.size, m.pre.size}, at::kFloat));
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> v;
  for (std::size_t i = 0; i < names.size(); ++i)
    if (outs[i].dim() == 4 && outs[i].is_floating_point())
      v.push_back({names[i], std::vector<std::int64_t>(outs[i].sizes().begin(), outs[i].sizes().end())});
  return v;
}

// Every input naming a key of `to` (or its output 0) names the value instead:
// the consumers of a node read what was inserted after it.
void reroute(Graph& g, const std::map<std::string, std::string>& to) {
  for (auto& n : g.nodes)
    for (auto& in : n.inputs) {
      const std::string name = in.size() > 2 && in.compare(in.size() - 2, 2, ":0") == 0 ? in.substr(0, in.size() - 2) : in;
      if (auto r = to.find(name); r != to.end()) in = r->second;
    }
}

}  // namespace

bool has_switch_modulation(const Model& m) { return m.outputs.count("router_1") > 0; }

std::vector<std::string> router_roles(const Model& m) {
  std::vector<std::string> roles;
  for (int k = 1; m.outputs.count("router_" + std::to_string(k)); ++k) roles.push_back("router_" + std::to_string(k));
  return roles;
}

std::vector<std::string> default_modulation_points(const Model& m, int blocks) {
  if (m.task != "embedding" || !m.outputs.count("embedding") || m.pre.size <= 0)
    throw Error(m.name + ": switch style modulation needs an embedding model");
  const auto values = image_values(m);
  // the distinct spatial sizes in order of appearance, the input's excluded
  std::vector<std::int64_t> sizes;
  for (const auto& [name, s] : values)
    if (s[1] != m.pre.size && std::find(sizes.begin(), sizes.end(), s[1]) == sizes.end()) sizes.push_back(s[1]);
  std::vector<std::string> points;
  for (std::size_t k = 1; k < sizes.size() && static_cast<int>(points.size()) < blocks; ++k) {
    std::string last_add, last;
    for (const auto& [name, s] : values)
      if (s[1] == sizes[k]) {
        last = name;
        const Node* n = m.graph.find(name);
        if (n && (n->op == "Add" || n->op == "AddV2")) last_add = name;
      }
    points.push_back(last_add.empty() ? last : last_add);
  }
  if (static_cast<int>(points.size()) < blocks)
    throw Error(m.name + ": found only " + std::to_string(points.size()) + " stages for " + std::to_string(blocks) +
                " switch style modulation blocks (name the nodes with --ssm-at)");
  return points;
}

void add_switch_modulation(Model& m, int experts, const std::vector<std::string>& at, std::uint64_t seed) {
  if (has_switch_modulation(m)) throw Error(m.name + ": the model already has switch style modulation blocks");
  if (experts < 2 || experts > 64) throw UsageError("switch style modulation needs 2..64 experts, got " + std::to_string(experts));
  if (at.empty()) throw UsageError("switch style modulation needs at least one insertion point");
  for (const auto& n : m.graph.nodes)
    if (n.name.rfind("ssm_", 0) == 0) throw Error(m.name + ": the graph already has a node " + n.name);
  std::map<std::string, std::int64_t> channels;
  for (const auto& [name, s] : image_values(m)) channels[name] = s[3];
  Builder b(seed ^ 0x73736dULL, "ssm_");
  std::map<std::string, std::string> replace;  // node -> its modulated value
  std::vector<std::pair<std::string, std::string>> routers;
  for (const auto& x : at) {
    if (replace.count(x)) throw UsageError("switch style modulation: node " + x + " given twice");
    auto it = channels.find(x);
    if (it == channels.end())
      throw UsageError(m.name + ": node '" + x + "' is not an image-shaped value the embedding depends on");
    auto [router, out] = b.switch_modulation(x, it->second, experts);
    replace[x] = out;
    routers.push_back({router, x});
  }
  Graph blocks = b.take();
  reroute(m.graph, replace);
  for (auto& n : blocks.nodes) m.graph.nodes.push_back(std::move(n));
  for (auto& [k, v] : blocks.consts) m.graph.consts[k] = std::move(v);
  json where = json::array();
  for (std::size_t k = 0; k < routers.size(); ++k) {
    m.outputs["router_" + std::to_string(k + 1)] = routers[k].first;
    where.push_back(routers[k].second);
  }
  m.provenance["switch_modulation"] = {
      {"what", "switch style modulation blocks (hfr-train --ssm): x + p_k (gamma_k IN(x) + beta_k), top-1 router on the "
               "feature map's per-channel mean and standard deviation"},
      {"experts", experts}, {"after", where}, {"init_seed", seed}};
  m.checksum = model_checksum(m);
}

bool has_perceptibility_attention(const Model& m) { return m.provenance.contains("perceptibility_attention"); }

void add_perceptibility_attention(Model& m, std::uint64_t seed) {
  if (has_perceptibility_attention(m)) return;
  if (m.task != "embedding" || !m.outputs.count("embedding") || m.pre.size <= 0)
    throw Error(m.name + ": perceptibility attention needs an embedding model");
  for (const auto& n : m.graph.nodes)
    if (n.name.rfind("attention_", 0) == 0) throw Error(m.name + ": the graph already has a node " + n.name);
  const auto values = image_values(m);
  if (values.empty()) throw Error(m.name + ": no feature map to attend over");
  // the last map with room for regions (7x7 or more; IResNet's last is 7x7, dlib's 2x2)
  auto it = std::find_if(values.rbegin(), values.rend(), [](const auto& v) { return v.second[1] >= 7 && v.second[2] >= 7; });
  const auto& [x, shape] = it == values.rend() ? values.back() : *it;
  Builder b(seed ^ 0x617474ULL, "attention_");
  const std::string out = b.spatial_gate(x, shape[3]);
  Graph gate = b.take();
  reroute(m.graph, {{x, out}});
  for (auto& n : gate.nodes) m.graph.nodes.push_back(std::move(n));
  for (auto& [k, v] : gate.consts) m.graph.consts[k] = std::move(v);
  m.provenance["perceptibility_attention"] = {
      {"what", "spatial attention on the last feature map (hfr-train --attention): x * 2 sigmoid(conv1x1(x) + b), "
               "starting at the identity"},
      {"after", x}, {"size", {shape[1], shape[2]}}, {"init_seed", seed}};
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
