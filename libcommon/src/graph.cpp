#include "hfr/graph.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <cmath>
#include <functional>
#include <limits>
#include <set>
#include <sstream>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "hfr/error.hpp"
#include "hfr/hash.hpp"

namespace hfr::nn {
namespace {

using json = nlohmann::json;
using Tensor = torch::Tensor;
constexpr float kInf = std::numeric_limits<float>::infinity();
// Bounds on sizes a model file controls (kernels, strides, paddings, resize
// targets): far above any real network, low enough that no arithmetic on them
// overflows and no single op asks for an absurd allocation.
constexpr std::int64_t kMaxSpatial = 1 << 14;

// ---------------------------------------------------------------- attributes

std::vector<std::int64_t> attr_ints(const Node& n, const std::string& key, std::vector<std::int64_t> def = {}) {
  auto it = n.attr.find(key);
  if (it == n.attr.end()) return def;
  std::vector<std::int64_t> out;
  if (it->is_number_integer()) return {it->get<std::int64_t>()};
  if (!it->is_array()) throw FormatError("attribute " + key + " is not a list of integers");
  for (const auto& v : *it) {
    if (!v.is_number_integer()) throw FormatError("attribute " + key + " is not a list of integers");
    out.push_back(v.get<std::int64_t>());
  }
  return out;
}

std::int64_t attr_int(const Node& n, const std::string& key, std::int64_t def) {
  auto it = n.attr.find(key);
  if (it == n.attr.end()) return def;
  if (!it->is_number_integer()) throw FormatError("attribute " + key + " is not an integer");
  return it->get<std::int64_t>();
}

double attr_float(const Node& n, const std::string& key, double def) {
  auto it = n.attr.find(key);
  if (it == n.attr.end()) return def;
  if (!it->is_number()) throw FormatError("attribute " + key + " is not a number");
  return it->get<double>();
}

bool attr_bool(const Node& n, const std::string& key, bool def) {
  auto it = n.attr.find(key);
  if (it == n.attr.end()) return def;
  if (!it->is_boolean()) throw FormatError("attribute " + key + " is not a boolean");
  return it->get<bool>();
}

std::string attr_str(const Node& n, const std::string& key, const std::string& def) {
  auto it = n.attr.find(key);
  if (it == n.attr.end()) return def;
  if (!it->is_string()) throw FormatError("attribute " + key + " is not a string");
  return it->get<std::string>();
}

std::vector<std::string> attr_strs(const Node& n, const std::string& key) {
  std::vector<std::string> out;
  auto it = n.attr.find(key);
  if (it == n.attr.end()) return out;
  if (!it->is_array()) throw FormatError("attribute " + key + " is not a list of strings");
  for (const auto& v : *it) {
    if (!v.is_string()) throw FormatError("attribute " + key + " is not a list of strings");
    out.push_back(v.get<std::string>());
  }
  return out;
}

std::string join(const std::vector<std::int64_t>& v) {
  std::ostringstream s;
  s << "[";
  for (std::size_t i = 0; i < v.size(); ++i) s << (i ? "," : "") << v[i];
  s << "]";
  return s.str();
}

std::vector<std::int64_t> tensor_ints(const Tensor& t) {
  Tensor c = t.to(at::kCPU).to(at::kLong).contiguous().reshape({-1});
  const auto* p = c.data_ptr<std::int64_t>();
  return std::vector<std::int64_t>(p, p + c.numel());
}

// ------------------------------------------------------------------- layout
// NHWC axis -> NCHW axis, for rank-4 values held in NCHW.
constexpr int kNhwcToNchw[4] = {0, 2, 3, 1};

Tensor to_nhwc(const Tensor& t) { return t.permute({0, 2, 3, 1}); }
Tensor to_nchw(const Tensor& t) { return t.permute({0, 3, 1, 2}); }

// A value in TF (NHWC) broadcasting semantics, made to broadcast against a
// rank-4 NCHW value.
Tensor bcast_nchw(const Tensor& t) {
  if (t.dim() > 4) throw FormatError("cannot broadcast a rank-" + std::to_string(t.dim()) + " value against an image tensor");
  std::vector<std::int64_t> shape(4 - t.dim(), 1);
  for (auto d : t.sizes()) shape.push_back(d);
  return to_nchw(t.reshape(shape));
}

// TF padding for one spatial dimension: (before, after).
std::pair<std::int64_t, std::int64_t> same_pad(std::int64_t in, std::int64_t k, std::int64_t s, std::int64_t d) {
  std::int64_t out = (in + s - 1) / s;
  std::int64_t eff = (k - 1) * d + 1;
  std::int64_t total = std::max<std::int64_t>((out - 1) * s + eff - in, 0);
  return {total / 2, total - total / 2};
}

struct Pads {
  enum Mode { valid, same, explicit_ } mode = valid;
  std::int64_t t = 0, b = 0, l = 0, r = 0;  // explicit
};

Pads parse_padding(const Node& n) {
  Pads p;
  std::string s = attr_str(n, "padding", "VALID");
  if (s == "VALID") p.mode = Pads::valid;
  else if (s == "SAME") p.mode = Pads::same;
  else if (s == "EXPLICIT") {
    auto e = attr_ints(n, "explicit_paddings");
    if (e.size() != 8 || e[0] || e[1] || e[6] || e[7]) throw FormatError("explicit_paddings must pad H and W only");
    for (auto v : e)
      if (v < 0 || v > kMaxSpatial) throw FormatError("explicit padding out of range 0.." + std::to_string(kMaxSpatial));
    p.mode = Pads::explicit_;
    p.t = e[2]; p.b = e[3]; p.l = e[4]; p.r = e[5];
  } else {
    throw FormatError("padding " + s + " is not supported");
  }
  return p;
}

std::array<std::int64_t, 4> resolve_pads(const Pads& p, std::int64_t h, std::int64_t w, std::int64_t kh, std::int64_t kw,
                                         std::int64_t sh, std::int64_t sw, std::int64_t dh, std::int64_t dw) {
  if (p.mode == Pads::valid) return {0, 0, 0, 0};
  if (p.mode == Pads::explicit_) return {p.t, p.b, p.l, p.r};
  auto [t, b] = same_pad(h, kh, sh, dh);
  auto [l, r] = same_pad(w, kw, sw, dw);
  return {t, b, l, r};
}

std::pair<std::int64_t, std::int64_t> spatial(const Node& n, const std::string& key, std::int64_t def) {
  auto v = attr_ints(n, key, {1, def, def, 1});
  if (v.size() != 4 || v[0] != 1 || v[3] != 1 || v[1] < 1 || v[2] < 1 || v[1] > kMaxSpatial || v[2] > kMaxSpatial)
    throw FormatError("attribute " + key + " " + join(v) + " is not supported (need [1,h,w,1], 1 <= h,w <= " +
                      std::to_string(kMaxSpatial) + ")");
  return {v[1], v[2]};
}

void check_nhwc(const Node& n) {
  std::string f = attr_str(n, "data_format", "NHWC");
  if (f != "NHWC") throw FormatError("data_format " + f + " is not supported");
}

// ------------------------------------------------------------------- steps

struct Conv {
  Tensor weight;  // [Cout, Cin/groups, kh, kw]
  Tensor bias;    // [Cout] or undefined
  // Trainable programs keep weight, bias and alpha in value slots instead,
  // recomputed from the parameters at every run: these are their positions
  // among the step's arguments (0, the input's position: none).
  int weight_arg = 0, bias_arg = 0, alpha_arg = 0;
  std::int64_t cout = 0;
  std::int64_t sh = 1, sw = 1, dh = 1, dw = 1, groups = 1;
  Pads pads;
  // activation: clamp(lo, hi), or PReLU with alpha [Cout], or leaky ReLU
  float lo = -kInf, hi = kInf;
  Tensor alpha;
  double leaky = 0;
  bool has_leaky = false;
  bool nhwc_input = false;  // the input value is held in NHWC
  bool act_none() const { return lo == -kInf && hi == kInf && !alpha.defined() && !has_leaky; }
  bool act_clamp_only() const { return !alpha.defined() && !has_leaky; }
};

bool unique_value(const Tensor& t) {
  return t.defined() && t.use_count() == 1 && t.storage().use_count() == 1;
}

// May a step overwrite t instead of allocating its result? Only when nothing
// else holds it, and autograd does not track it: its backward may need the
// old value (clamp's does). So trainable programs run out of place wherever
// gradients flow, inference programs wherever they can.
bool updatable(const Tensor& t) { return unique_value(t) && !t.requires_grad(); }

const Tensor& conv_weight(const Conv& c, const std::vector<Tensor>& a) {
  return c.weight_arg ? a[c.weight_arg] : c.weight;
}

// a: the input, then the parameter arguments (Conv::weight_arg...), if any.
Tensor run_conv(const Conv& c, const std::vector<Tensor>& a) {
  Tensor x = a.at(0);
  const Tensor& w = conv_weight(c, a);
  const Tensor& b = c.bias_arg ? a[c.bias_arg] : c.bias;
  const Tensor& alpha = c.alpha_arg ? a[c.alpha_arg] : c.alpha;
  if (c.nhwc_input) x = to_nchw(x);
  auto p = resolve_pads(c.pads, x.size(2), x.size(3), w.size(2), w.size(3), c.sh, c.sw, c.dh, c.dw);
  std::vector<std::int64_t> padding{0, 0};
  if (p[0] == p[1] && p[2] == p[3]) {
    padding = {p[0], p[2]};
  } else {
    x = at::constant_pad_nd(x, {p[2], p[3], p[0], p[1]}, 0);
  }
  // Conv2D as TensorFlow defines it: a filter [kh, kw, Cin / G, Cout] on an
  // input of Cin channels is a grouped convolution of G = Cin / (filter's Cin)
  // groups (each Cout / G outputs see their Cin / G inputs). The input's
  // channels are known only now; LibTorch reports what does not divide.
  std::int64_t groups = c.groups;
  if (groups == 1 && x.dim() == 4 && w.size(1) > 0 && x.size(1) != w.size(1) && x.size(1) % w.size(1) == 0)
    groups = x.size(1) / w.size(1);
  Tensor y = at::conv2d(x, w, b, {c.sh, c.sw}, padding, {c.dh, c.dw}, groups);
  bool in_place = updatable(y);
  if (alpha.defined()) {
    y = at::prelu(y, alpha);
  } else if (c.has_leaky) {
    y = in_place ? at::leaky_relu_(y, c.leaky) : at::leaky_relu(y, c.leaky);
  } else if (c.lo == 0 && c.hi == kInf) {
    y = in_place ? y.relu_() : y.relu();
  } else if (c.lo != -kInf || c.hi != kInf) {
    c10::optional<at::Scalar> lo, hi;
    if (c.lo != -kInf) lo = c.lo;
    if (c.hi != kInf) hi = c.hi;
    y = in_place ? y.clamp_(lo, hi) : y.clamp(lo, hi);
  }
  return y;
}

// Steps get their arguments by value in a vector they may consume: an
// argument whose slot dies at this step is moved in, so a step holding the
// only reference to a tensor (and its storage) may update it in place.
using Fn = std::function<Tensor(std::vector<Tensor>&)>;

struct Step {
  std::string name, op;
  std::vector<int> in;   // value slots
  int out = -1;
  std::shared_ptr<Conv> conv;  // convolution steps
  Fn fn;                       // every other step
  std::vector<int> release;    // slots whose last use is this step
  std::vector<char> move_in;   // per input: moved into the arguments (its slot dies here, used once)
};

Tensor exec(const Step& s, std::vector<Tensor>& args) {
  if (s.conv) return run_conv(*s.conv, args);
  return s.fn(args);
}

// A reduction over NHWC axes of a value that may be held in NCHW.
struct Reduce {
  std::vector<std::int64_t> axes;
  bool keep = false;
};

const std::vector<std::string> kBinary = {"Add", "AddV2", "BiasAdd", "Sub", "Mul", "RealDiv", "Div", "Minimum", "Maximum",
                                          "SquaredDifference", "Pow", "Prelu"};
const std::vector<std::string> kUnary = {"Relu", "Relu6", "Elu", "LeakyRelu", "Sigmoid", "Tanh", "Abs", "Square", "Sqrt",
                                         "Rsqrt", "Exp", "Log", "Neg", "Reciprocal", "Softplus"};
const std::vector<std::string> kOther = {"Const", "Placeholder", "Identity", "StopGradient", "Conv2D", "_FusedConv2D",
                                         "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative", "MaxPool", "AvgPool", "Pad",
                                         "PadV2", "Mean", "Sum", "Max", "Min", "Softmax", "ConcatV2", "Reshape", "Squeeze",
                                         "Shape", "StridedSlice", "Pack", "DepthToSpace", "ResizeBilinear", "MatMul",
                                         "_FusedMatMul", "FusedBatchNormV3", "MaxFeatureMap", "SwitchRouter",
                                         "SwitchStyleModulation"};

bool is_in(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

bool broadcasts_into(const Tensor& b, const Tensor& a) {
  if (b.dim() > a.dim() || b.scalar_type() != a.scalar_type() || b.device() != a.device()) return false;
  for (std::int64_t i = 1; i <= b.dim(); ++i)
    if (b.size(-i) != 1 && b.size(-i) != a.size(-i)) return false;
  return true;
}

Tensor binary(const std::string& op, Tensor a, const Tensor& b) {
  // a dies here: reuse its memory, unless autograd records b's gradient, which
  // may need a's old value (Mul's does)
  if (updatable(a) && !(b.requires_grad() && at::GradMode::is_enabled()) && broadcasts_into(b, a)) {
    if (op == "Add" || op == "AddV2" || op == "BiasAdd") return a.add_(b);
    if (op == "Sub") return a.sub_(b);
    if (op == "Mul") return a.mul_(b);
    if (op == "Minimum") return at::minimum_out(a, a, b);
    if (op == "Maximum") return at::maximum_out(a, a, b);
  }
  if (op == "Add" || op == "AddV2" || op == "BiasAdd") return a + b;
  if (op == "Sub") return a - b;
  if (op == "Mul") return a * b;
  if (op == "RealDiv" || op == "Div") return a / b;
  if (op == "Minimum") return at::minimum(a, b);
  if (op == "Maximum") return at::maximum(a, b);
  if (op == "SquaredDifference") return (a - b).square();
  if (op == "Pow") return at::pow(a, b);
  if (op == "Prelu") return at::relu(a) + b * at::clamp_max(a, 0);
  throw Error("unreachable binary op " + op);
}

std::function<Tensor(Tensor&)> unary(const Node& n) {
  const std::string& op = n.op;
  if (op == "Relu") return [](Tensor& x) { return updatable(x) ? at::relu_(x) : at::relu(x); };
  if (op == "Relu6") return [](Tensor& x) { return at::clamp(x, 0, 6); };
  if (op == "Elu") return [](Tensor& x) { return at::elu(x); };
  if (op == "LeakyRelu") {
    double a = attr_float(n, "alpha", 0.2);
    return [a](Tensor& x) { return at::leaky_relu(x, a); };
  }
  if (op == "Sigmoid") return [](Tensor& x) { return at::sigmoid(x); };
  if (op == "Tanh") return [](Tensor& x) { return at::tanh(x); };
  if (op == "Abs") return [](Tensor& x) { return at::abs(x); };
  if (op == "Square") return [](Tensor& x) { return at::square(x); };
  if (op == "Sqrt") return [](Tensor& x) { return at::sqrt(x); };
  if (op == "Rsqrt") return [](Tensor& x) { return at::rsqrt(x); };
  if (op == "Exp") return [](Tensor& x) { return at::exp(x); };
  if (op == "Log") return [](Tensor& x) { return at::log(x); };
  if (op == "Neg") return [](Tensor& x) { return at::neg(x); };
  if (op == "Reciprocal") return [](Tensor& x) { return at::reciprocal(x); };
  if (op == "Softplus") return [](Tensor& x) { return at::softplus(x); };
  throw Error("unreachable unary op " + op);
}

// Per-output-channel constant (numel 1 or C, broadcasting over the last NHWC
// axis only) as a [C] vector, or undefined.
Tensor channel_vector(const Tensor& c, std::int64_t channels) {
  if (!c.defined() || !c.is_floating_point()) return {};
  if (c.numel() == 1) return c.reshape({1}).expand({channels}).contiguous();
  if (c.numel() != channels) return {};
  for (std::int64_t i = 0; i + 1 < c.dim(); ++i)
    if (c.size(i) != 1) return {};
  return c.reshape({channels}).contiguous();
}

std::optional<float> scalar_of(const Tensor& c) {
  if (!c.defined() || c.numel() != 1 || !c.is_floating_point()) return std::nullopt;
  return c.reshape({1})[0].item<float>();
}

}  // namespace

// ---------------------------------------------------------------- Graph

const Node* Graph::find(const std::string& name) const {
  for (const auto& n : nodes)
    if (n.name == name) return &n;
  return nullptr;
}

json graph_to_json(const Graph& g) {
  json out = json::array();
  for (const auto& n : g.nodes)
    out.push_back({{"name", n.name}, {"op", n.op}, {"inputs", n.inputs}, {"attr", n.attr.is_null() ? json::object() : n.attr}});
  return out;
}

Graph graph_from_json(const json& nodes, std::map<std::string, torch::Tensor> consts, const std::string& context) {
  if (!nodes.is_array()) throw FormatError(context + ": graph nodes are not a list");
  Graph g;
  std::set<std::string> names;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const json& j = nodes[i];
    std::string where = context + ": node " + std::to_string(i);
    if (!j.is_object() || !j.contains("name") || !j["name"].is_string() || !j.contains("op") || !j["op"].is_string())
      throw FormatError(where + ": needs string fields name and op");
    Node n;
    n.name = j["name"].get<std::string>();
    n.op = j["op"].get<std::string>();
    if (n.name.empty() || !names.insert(n.name).second) throw FormatError(where + ": empty or duplicate name '" + n.name + "'");
    if (j.contains("inputs")) {
      if (!j["inputs"].is_array()) throw FormatError(where + " (" + n.name + "): inputs is not a list");
      for (const auto& in : j["inputs"]) {
        if (!in.is_string()) throw FormatError(where + " (" + n.name + "): an input is not a string");
        n.inputs.push_back(in.get<std::string>());
      }
    }
    if (j.contains("attr") && !j["attr"].is_null()) {
      if (!j["attr"].is_object()) throw FormatError(where + " (" + n.name + "): attr is not an object");
      n.attr = j["attr"];
    }
    g.nodes.push_back(std::move(n));
  }
  for (auto& [name, t] : consts)
    if (!names.count(name)) throw FormatError(context + ": weight '" + name + "' belongs to no node");
  g.consts = std::move(consts);
  return g;
}

const std::vector<std::string>& supported_ops() {
  static const std::vector<std::string> ops = [] {
    std::vector<std::string> v = kBinary;
    v.insert(v.end(), kUnary.begin(), kUnary.end());
    v.insert(v.end(), kOther.begin(), kOther.end());
    std::sort(v.begin(), v.end());
    return v;
  }();
  return ops;
}

// ---------------------------------------------------------------- Program

struct Program::Impl {
  std::vector<Step> steps;
  // Trainable programs: steps computing constants from parameters (filters to
  // LibTorch's layout, vectors made to broadcast, folded constant
  // subexpressions), run before `steps` so those values follow the
  // parameters and carry their gradients. Their slots also hold, in consts,
  // the value computed at compile time, for the compiler's shape checks.
  std::vector<Step> prologue;
  std::vector<std::pair<std::string, int>> params;  // Const node name, its slot (the leaf tensor in consts)
  std::vector<std::pair<std::string, int>> buffers;  // batch-norm running statistics (updated by forward)
  bool trainable = false;
  std::vector<Tensor> consts;        // by slot; defined for constant slots
  std::vector<bool> nchw;            // by slot
  int input_slot = -1;
  std::vector<int> outputs;
  std::vector<std::int64_t> input_shape;
  torch::Device device = torch::kCPU;
  std::string context;
  bool channels_last = true;
  std::vector<bool> fresh;           // by slot: produced as a new tensor (not a view), may be updated in place
  struct RouterNoise {
    double sigma = 0;
    std::uint64_t seed = 0;
  };
  std::shared_ptr<RouterNoise> router_noise = std::make_shared<RouterNoise>();  // read by SwitchStyleModulation steps
};

namespace {

class Compiler {
 public:
  Compiler(const Graph& g, const std::string& context, const CompileOptions& o)
      : g_(g), ctx_(context), fuse_(o.fuse), train_(o.trainable), channels_last_(o.channels_last) {
    for (const auto& n : g.nodes) by_name_[n.name] = &n;
    if (train_)
      for (const auto& n : g.nodes)
        if (n.op == "FusedBatchNormV3") {
          auto ins = inputs_of(n);
          for (std::size_t i = 3; i < 5 && i < ins.size(); ++i) buffer_consts_.insert(ins[i]);
        }
  }

  std::unique_ptr<Program::Impl> compile(const std::string& input, const std::vector<std::string>& outputs) {
    // what is computed now from constants is a value, not part of any autograd graph
    at::AutoGradMode no_grad(false);
    p_ = std::make_unique<Program::Impl>();
    p_->context = ctx_;
    p_->trainable = train_;
    std::vector<const Node*> order;
    std::map<std::string, int> state;
    std::function<void(const std::string&, const std::string&)> visit = [&](const std::string& name, const std::string& from) {
      auto it = by_name_.find(name);
      if (it == by_name_.end())
        throw FormatError(ctx_ + ": node '" + name + "'" + (from.empty() ? "" : " (input of '" + from + "')") + " does not exist");
      int& st = state[name];
      if (st == 2) return;
      if (st == 1) throw FormatError(ctx_ + ": the graph has a cycle through '" + name + "'");
      st = 1;
      for (const auto& in : inputs_of(*it->second)) visit(in, name);
      st = 2;
      order.push_back(it->second);
    };
    for (const auto& o : outputs) visit(o, "");
    for (const Node* n : order)
      for (const auto& in : inputs_of(*n)) ++uses_[in];
    for (const auto& o : outputs) ++uses_[o];

    for (const Node* n : order) {
      try {
        lower(*n, input);
      } catch (const FormatError& e) {
        throw FormatError(ctx_ + ": node '" + n->name + "' (" + n->op + "): " + e.what());
      } catch (const c10::Error& e) {
        std::string m = e.what();
        throw FormatError(ctx_ + ": node '" + n->name + "' (" + n->op + "): " + m.substr(0, m.find('\n')));
      }
    }
    if (p_->input_slot < 0) throw FormatError(ctx_ + ": the outputs do not depend on the input '" + input + "'");
    for (const auto& o : outputs) p_->outputs.push_back(slot_.at(o));
    // last uses, for freeing intermediate values early
    std::vector<int> last(p_->consts.size(), -1);
    for (std::size_t i = 0; i < p_->steps.size(); ++i)
      for (int s : p_->steps[i].in) last[s] = static_cast<int>(i);
    std::set<int> keep(p_->outputs.begin(), p_->outputs.end());
    for (std::size_t s = 0; s < last.size(); ++s)
      if (last[s] >= 0 && !p_->consts[s].defined() && !keep.count(static_cast<int>(s)))
        p_->steps[last[s]].release.push_back(static_cast<int>(s));
    for (auto& st : p_->steps)
      for (int i : st.in)
        st.move_in.push_back(std::find(st.release.begin(), st.release.end(), i) != st.release.end() &&
                             std::count(st.in.begin(), st.in.end(), i) == 1);
    for (auto& st : p_->prologue) st.move_in.assign(st.in.size(), 0);  // constants: never consumed
    // the parameters: those some computation reads at run time (not ones
    // only read while compiling, which no gradient could reach)
    std::set<int> read(p_->outputs.begin(), p_->outputs.end());
    for (const auto* list : {&p_->steps, &p_->prologue})
      for (const auto& st : *list) read.insert(st.in.begin(), st.in.end());
    for (const auto& [s, name] : param_name_)
      if (read.count(s)) p_->params.push_back({name, s});
    for (const auto& [s, name] : buffer_name_)
      if (read.count(s)) p_->buffers.push_back({name, s});
    return std::move(p_);
  }

 private:
  static std::vector<std::string> inputs_of(const Node& n) {
    std::vector<std::string> v;
    for (const auto& raw : n.inputs) {
      if (!raw.empty() && raw[0] == '^') continue;  // control dependency
      std::string s = raw;
      auto colon = s.rfind(':');
      if (colon != std::string::npos && colon + 1 < s.size() &&
          s.find_first_not_of("0123456789", colon + 1) == std::string::npos) {
        if (s.substr(colon + 1) != "0")
          throw FormatError("node '" + n.name + "' uses output " + s.substr(colon + 1) + " of '" + s.substr(0, colon) +
                            "': ops with several outputs are not supported");
        s = s.substr(0, colon);
      }
      v.push_back(s);
    }
    return v;
  }

  int new_slot(bool nchw, Tensor value = {}) {
    p_->consts.push_back(value);
    p_->nchw.push_back(nchw);
    producer_.push_back(-1);
    slot_uses_.push_back(0);
    live_.push_back(false);
    return static_cast<int>(p_->consts.size()) - 1;
  }
  // A constant computed from constant slots (a layout change, a folded
  // affine layer). If one of them is, or derives from, a parameter, the
  // computation is also added to the prologue, to be redone from the
  // parameters' current values at every run.
  int derive(const Node& n, std::vector<int> srcs, Fn f) {
    std::vector<Tensor> args;
    for (int s : srcs) args.push_back(cval(s));
    int out = new_slot(false, f(args));
    if (std::any_of(srcs.begin(), srcs.end(), [&](int s) { return live_[s]; })) {
      Step st;
      st.name = n.name;
      st.op = n.op;
      st.in = std::move(srcs);
      st.out = out;
      st.fn = std::move(f);
      p_->prologue.push_back(std::move(st));
      live_[out] = true;
    }
    return out;
  }
  int derive(const Node& n, int s, std::function<Tensor(const Tensor&)> f) {
    return derive(n, std::vector<int>{s}, [f](std::vector<Tensor>& a) { return f(a[0]); });
  }

  // Folds `conv op k` (k: a per-channel constant; op Add, Sub or Mul) into the
  // trainable convolution step st: its filter and bias arguments become
  // values the prologue computes from the parameters, which thus stay
  // separate tensors, each receiving its gradient.
  void fold_affine_trainable(const Node& n, Step& st, int k, const std::string& op) {
    Conv& c = *st.conv;
    std::int64_t cout = c.cout;
    int kv = derive(n, k, [cout](const Tensor& t) { return channel_vector(t, cout); });
    if (op == "Mul") {
      auto format = channels_last_ ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
      st.in[c.weight_arg] = derive(n, {st.in[c.weight_arg], kv}, [cout, format](std::vector<Tensor>& a) {
        return (a[0] * a[1].reshape({cout, 1, 1, 1})).contiguous(format);
      });
      if (c.bias_arg)
        st.in[c.bias_arg] = derive(n, {st.in[c.bias_arg], kv}, [](std::vector<Tensor>& a) { return a[0] * a[1]; });
      return;
    }
    bool sub = op == "Sub";
    if (c.bias_arg) {
      st.in[c.bias_arg] =
          derive(n, {st.in[c.bias_arg], kv}, [sub](std::vector<Tensor>& a) { return sub ? a[0] - a[1] : a[0] + a[1]; });
    } else {
      c.bias_arg = static_cast<int>(st.in.size());
      st.in.push_back(sub ? derive(n, kv, [](const Tensor& t) { return -t; }) : kv);
    }
  }
  bool is_const(int s) const { return p_->consts[s].defined(); }
  const Tensor& cval(int s) const { return p_->consts[s]; }
  bool nchw(int s) const { return p_->nchw[s]; }
  int uses(const std::string& name) const {
    auto it = uses_.find(name);
    return it == uses_.end() ? 0 : it->second;
  }

  // Emits a step; runs it now if all inputs are constants (constant folding).
  void emit(const Node& n, std::vector<int> in, bool out_nchw, Fn fn, std::shared_ptr<Conv> conv = {}) {
    Step s;
    s.name = n.name;
    s.op = n.op;
    s.in = std::move(in);
    s.fn = std::move(fn);
    s.conv = std::move(conv);
    bool all_const = std::all_of(s.in.begin(), s.in.end(), [&](int i) { return is_const(i); });
    if (all_const) {
      std::vector<Tensor> args;
      for (int i : s.in) args.push_back(cval(i));
      Tensor v = exec(s, args);
      if (out_nchw) v = to_nhwc(v);  // constants are kept in TF layout
      int out = new_slot(false, v.contiguous());
      slot_[n.name] = out;
      if (std::any_of(s.in.begin(), s.in.end(), [&](int i) { return live_[i]; })) {  // redone from the parameters
        Fn f = std::move(s.fn);
        s.fn = [f, out_nchw](std::vector<Tensor>& a) {
          Tensor v = f(a);
          return (out_nchw ? to_nhwc(v) : v).contiguous();
        };
        s.out = out;
        p_->prologue.push_back(std::move(s));
        live_[out] = true;
      }
      return;
    }
    s.out = new_slot(out_nchw);
    slot_uses_[s.out] = uses(n.name);
    producer_[s.out] = static_cast<int>(p_->steps.size());
    slot_[n.name] = s.out;
    p_->steps.push_back(std::move(s));
  }

  // Value slot of an input; a FormatError if it is not an input of the node.
  int in(const Node& n, std::size_t i) {
    auto ins = inputs_of(n);
    if (i >= ins.size()) throw FormatError("needs at least " + std::to_string(i + 1) + " inputs, has " + std::to_string(ins.size()));
    return slot_.at(ins[i]);
  }
  Tensor const_in(const Node& n, std::size_t i, const std::string& what) {
    int s = in(n, i);
    if (!is_const(s)) throw FormatError(what + " (input " + std::to_string(i) + ") must be a constant");
    return cval(s);
  }

  // The conv step producing slot s, if the node being lowered is its only
  // consumer (and fusion is on).
  Conv* foldable_conv(int s) {
    if (!fuse_ || is_const(s) || producer_[s] < 0 || slot_uses_[s] != 1) return nullptr;
    return p_->steps[producer_[s]].conv.get();
  }
  // Node n now names slot s (folded into its producer).
  void alias(const Node& n, int s) {
    slot_[n.name] = s;
    slot_uses_[s] = uses(n.name);
  }

  void lower(const Node& n, const std::string& input_name) {
    const std::string& op = n.op;
    if (op == "Const") {
      auto it = g_.consts.find(n.name);
      if (it == g_.consts.end()) throw FormatError("constant has no value (missing from the weights)");
      Tensor v = it->second;
      if (!v.is_floating_point()) v = v.to(at::kLong);
      else v = v.to(at::kFloat);
      if (train_ && v.is_floating_point() && buffer_consts_.count(n.name)) {
        // batch-norm running statistics: the program's own copy, which
        // forward() updates in place; no gradient
        int s = new_slot(false, v.detach().clone(at::MemoryFormat::Contiguous));
        buffer_name_[s] = n.name;
        slot_[n.name] = s;
        return;
      }
      if (train_ && v.is_floating_point() && v.dim() >= 1) {
        // a parameter: the program's own copy (training changes it, not the
        // Graph), a leaf that autograd accumulates gradients into
        int s = new_slot(false, v.detach().clone(at::MemoryFormat::Contiguous).requires_grad_(true));
        live_[s] = true;
        param_name_[s] = n.name;
        slot_[n.name] = s;
        return;
      }
      slot_[n.name] = new_slot(false, v.contiguous());
      return;
    }
    if (op == "Placeholder") {
      if (n.name != input_name) throw FormatError("is a second input; only '" + input_name + "' is fed");
      auto shape = attr_ints(n, "shape", {-1, -1, -1, -1});
      if (shape.size() != 4) throw FormatError("input rank " + std::to_string(shape.size()) + " is not supported (need NHWC)");
      p_->input_shape = shape;
      p_->input_slot = new_slot(true);
      slot_[n.name] = p_->input_slot;
      return;
    }
    if (op == "StopGradient" && train_) {  // no gradient flows back through it
      int x = in(n, 0);
      emit(n, {x}, nchw(x), [](std::vector<Tensor>& a) { return a[0].detach(); });
      return;
    }
    if (op == "Identity" || op == "StopGradient") {
      int x = in(n, 0);
      slot_[n.name] = x;
      slot_uses_[x] += uses(n.name) - 1;
      return;
    }
    if (op == "Conv2D" || op == "_FusedConv2D" || op == "DepthwiseConv2dNative" || op == "FusedDepthwiseConv2dNative")
      return lower_conv(n);
    if (is_in(kBinary, op)) return lower_binary(n);
    if (is_in(kUnary, op)) return lower_unary(n);
    if (op == "MaxPool" || op == "AvgPool") return lower_pool(n);
    if (op == "Pad" || op == "PadV2") return lower_pad(n);
    if (op == "Mean" || op == "Sum" || op == "Max" || op == "Min") return lower_reduce(n);
    if (op == "Softmax") {
      int x = in(n, 0);
      bool c = nchw(x);
      emit(n, {x}, c, [c](std::vector<Tensor>& a) { return at::softmax(a[0], c ? 1 : -1); });
      return;
    }
    if (op == "ConcatV2") return lower_concat(n);
    if (op == "Reshape") return lower_reshape(n);
    if (op == "Squeeze") {
      int x = in(n, 0);
      bool c = nchw(x);
      auto dims = attr_ints(n, "squeeze_dims");
      emit(n, {x}, false, [c, dims](std::vector<Tensor>& a) {
        Tensor t = c ? to_nhwc(a[0]) : a[0];
        if (dims.empty()) return t.squeeze();
        std::vector<std::int64_t> d = dims;
        for (auto& v : d) v = v < 0 ? v + t.dim() : v;
        std::sort(d.rbegin(), d.rend());
        for (auto v : d) {
          if (v < 0 || v >= t.dim() || t.size(v) != 1) throw FormatError("Squeeze: dimension " + std::to_string(v) + " is not 1");
          t = t.squeeze(v);
        }
        return t;
      });
      return;
    }
    if (op == "Shape") {
      int x = in(n, 0);
      bool c = nchw(x);
      emit(n, {x}, false, [c](std::vector<Tensor>& a) {
        std::vector<std::int64_t> s(a[0].sizes().begin(), a[0].sizes().end());
        if (c) s = {s[0], s[2], s[3], s[1]};
        return torch::tensor(s, at::kLong);
      });
      return;
    }
    if (op == "StridedSlice") return lower_strided_slice(n);
    if (op == "Pack") {
      auto ins = inputs_of(n);
      std::vector<int> slots;
      std::vector<bool> c;
      for (std::size_t i = 0; i < ins.size(); ++i) {
        slots.push_back(in(n, i));
        c.push_back(nchw(slots.back()));
      }
      std::int64_t axis = attr_int(n, "axis", 0);
      emit(n, slots, false, [c, axis](std::vector<Tensor>& a) {
        std::vector<Tensor> v;
        for (std::size_t i = 0; i < a.size(); ++i) v.push_back(c[i] ? to_nhwc(a[i]) : a[i]);
        bool ints = std::all_of(v.begin(), v.end(), [](const Tensor& t) { return !t.is_floating_point(); });
        if (ints)
          for (auto& t : v) t = t.to(at::kCPU);
        return at::stack(v, axis);
      });
      return;
    }
    if (op == "DepthToSpace") {
      check_nhwc(n);
      std::int64_t bs = attr_int(n, "block_size", 0);
      if (bs < 2 || bs > 64) throw FormatError("block_size must be in 2..64");
      int x = in(n, 0);
      bool c = nchw(x);
      emit(n, {x}, true, [c, bs](std::vector<Tensor>& a) {
        Tensor t = c ? a[0] : to_nchw(a[0]);
        auto N = t.size(0), C = t.size(1), H = t.size(2), W = t.size(3);
        if (C % (bs * bs)) throw FormatError("DepthToSpace: channels not divisible by block_size^2");
        // TF (NHWC, DCR): depth index = (i * bs + j) * C' + c
        return t.reshape({N, bs, bs, C / (bs * bs), H, W}).permute({0, 3, 4, 1, 5, 2}).reshape({N, C / (bs * bs), H * bs, W * bs});
      });
      return;
    }
    if (op == "ResizeBilinear") {
      bool ac = attr_bool(n, "align_corners", false), hp = attr_bool(n, "half_pixel_centers", false);
      if (!ac && !hp) throw FormatError("ResizeBilinear without half_pixel_centers or align_corners (legacy TF1 sampling) is not supported");
      if (ac && hp) throw FormatError("align_corners and half_pixel_centers together are invalid");
      int x = in(n, 0);
      bool c = nchw(x);
      auto size = tensor_ints(const_in(n, 1, "size"));
      if (size.size() != 2 || size[0] < 1 || size[1] < 1 || size[0] > kMaxSpatial || size[1] > kMaxSpatial)
        throw FormatError("size must be two integers in 1.." + std::to_string(kMaxSpatial));
      emit(n, {x}, true, [c, ac, size](std::vector<Tensor>& a) {
        Tensor t = c ? a[0] : to_nchw(a[0]);
        return at::upsample_bilinear2d(t, {size[0], size[1]}, ac);
      });
      return;
    }
    if (op == "MatMul" || op == "_FusedMatMul") return lower_matmul(n);
    if (op == "FusedBatchNormV3") return lower_batch_norm(n);
    if (op == "MaxFeatureMap") return lower_mfm(n);
    if (op == "SwitchRouter") return lower_switch_router(n);
    if (op == "SwitchStyleModulation") return lower_switch_modulation(n);
    throw FormatError("op " + op + " is not supported by the importer");
  }

  void lower_conv(const Node& n) {
    check_nhwc(n);
    bool depthwise = n.op.find("Depthwise") != std::string::npos;
    bool fused = n.op[0] == '_' || n.op.rfind("Fused", 0) == 0;
    int x = in(n, 0);
    if (is_const(x)) throw FormatError("convolution of a constant is not supported");
    Tensor f = const_in(n, 1, "filter");
    if (f.dim() != 4 || !f.is_floating_point()) throw FormatError("filter must be a rank-4 float constant");
    auto conv = std::make_shared<Conv>();
    std::tie(conv->sh, conv->sw) = spatial(n, "strides", 1);
    std::tie(conv->dh, conv->dw) = spatial(n, "dilations", 1);
    conv->pads = parse_padding(n);
    std::int64_t cout = depthwise ? f.size(2) * f.size(3) : f.size(3);
    conv->cout = cout;
    if (depthwise) conv->groups = f.size(2);
    // Inference programs hold weight, bias and alpha in the Conv (copies that
    // fusion may change); trainable ones pass them as arguments computed from
    // the parameters (derive), appended to ins.
    std::vector<int> ins{x};
    auto arg = [&](int s, int& pos, Tensor& field, std::function<Tensor(const Tensor&)> f) {
      if (train_) {
        pos = static_cast<int>(ins.size());
        ins.push_back(derive(n, s, f));
      } else {
        field = f(cval(s)).clone();
      }
    };
    bool cl = channels_last_ && train_;  // inference weights are made channels-last by Program's constructor
    arg(in(n, 1), conv->weight_arg, conv->weight, [depthwise, cl](const Tensor& f) {
      // depthwise [kh, kw, Cin, M] -> [Cin*M, 1, kh, kw]; else HWIO -> OIHW
      Tensor w = depthwise ? f.permute({2, 3, 0, 1}).reshape({f.size(2) * f.size(3), 1, f.size(0), f.size(1)})
                           : f.permute({3, 2, 0, 1});
      return w.contiguous(cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
    });
    if (fused) {
      auto ops = attr_strs(n, "fused_ops");
      std::size_t next = 2;
      for (const auto& fo : ops) {
        if (fo == "BiasAdd") {
          Tensor b = const_in(n, next, "bias");
          if (b.numel() != cout) throw FormatError("bias has " + std::to_string(b.numel()) + " values for " + std::to_string(cout) + " channels");
          arg(in(n, next++), conv->bias_arg, conv->bias,
              [cout](const Tensor& b) { return b.reshape({cout}).contiguous(); });
        } else if (fo == "Relu") {
          conv->lo = 0;
        } else if (fo == "Relu6") {
          conv->lo = 0;
          conv->hi = 6;
        } else if (fo == "Prelu") {
          Tensor a = const_in(n, next, "prelu alpha");
          if (!channel_vector(a, cout).defined())
            throw FormatError("prelu alpha shape does not match " + std::to_string(cout) + " channels");
          arg(in(n, next++), conv->alpha_arg, conv->alpha, [cout](const Tensor& a) { return channel_vector(a, cout); });
        } else if (fo == "LeakyRelu") {
          conv->has_leaky = true;
          conv->leaky = attr_float(n, "leakyrelu_alpha", 0.2);
        } else {
          throw FormatError("fused op " + fo + " is not supported");
        }
      }
    }
    conv->nhwc_input = !nchw(x);  // a rank-4 NHWC value (after a reshape): converted first
    emit(n, ins, true, {}, conv);
  }

  void lower_binary(const Node& n) {
    int a = in(n, 0), b = in(n, 1);
    const std::string op = n.op;
    // fold into a preceding convolution: per-channel affine, clamps
    for (int side = 0; side < 2; ++side) {
      int v = side == 0 ? a : b, k = side == 0 ? b : a;
      if (!is_const(k) || !nchw(v)) continue;
      Conv* conv = foldable_conv(v);
      if (!conv) continue;
      std::int64_t cout = conv->cout;
      bool affine_ok = conv->act_none();
      Tensor cv = channel_vector(cval(k), cout);
      auto sc = live_[k] ? std::nullopt : scalar_of(cval(k));  // a parameter is no fixed bound
      bool add = op == "Add" || op == "AddV2" || op == "BiasAdd" || (op == "Sub" && side == 0);
      if (train_ && affine_ok && cv.defined() && (add || op == "Mul")) {
        fold_affine_trainable(n, p_->steps[producer_[v]], k, add ? (op == "Sub" ? "Sub" : "Add") : "Mul");
        alias(n, v);
        return;
      }
      if (affine_ok && cv.defined() && add) {
        if (!conv->bias.defined()) conv->bias = at::zeros({cout}, at::kFloat);
        conv->bias = op == "Sub" ? conv->bias - cv : conv->bias + cv;
        alias(n, v);
        return;
      }
      if (affine_ok && cv.defined() && op == "Mul") {
        conv->weight = conv->weight * cv.reshape({cout, 1, 1, 1});
        if (conv->bias.defined()) conv->bias = conv->bias * cv;
        alias(n, v);
        return;
      }
      if (conv->act_clamp_only() && sc && (op == "Minimum" || op == "Maximum")) {
        float s = *sc;
        if (op == "Minimum") { conv->lo = std::min(conv->lo, s); conv->hi = std::min(conv->hi, s); }
        else { conv->lo = std::max(conv->lo, s); conv->hi = std::max(conv->hi, s); }
        alias(n, v);
        return;
      }
    }
    // PReLU with one slope per channel: LibTorch's own kernel (one pass, and
    // one saved tensor for backward instead of four elementwise ops)
    if (op == "Prelu" && is_const(b) && cval(b).dim() == 1 && cval(b).numel() > 1) {
      const std::int64_t c = cval(b).numel();
      const bool image = nchw(a);
      emit(n, {a, b}, image, [image, c](std::vector<Tensor>& v) {
        const Tensor& x = v[0];
        const bool fits = image ? x.dim() == 4 && x.size(1) == c : x.dim() >= 1 && x.size(x.dim() - 1) == c;
        if (!fits) return binary("Prelu", std::move(v[0]), v[1]);  // TF broadcasting semantics
        if (image || x.dim() == 2) return at::prelu(x, v[1]);
        return at::prelu(x.movedim(-1, 1), v[1]).movedim(1, -1);
      });
      return;
    }
    bool ca = nchw(a), cb = nchw(b);
    bool out = ca || cb;
    // constants meeting NCHW values are converted once, here
    auto bcast = [](const Tensor& t) { return bcast_nchw(t).contiguous(); };
    if (out && !ca && is_const(a)) a = derive(n, a, bcast), ca = true;
    if (out && !cb && is_const(b)) b = derive(n, b, bcast), cb = true;
    emit(n, {a, b}, out, [op, out, ca, cb](std::vector<Tensor>& v) {
      Tensor x = std::move(v[0]), y = v[1];
      if (out && !ca) x = bcast_nchw(x);
      if (out && !cb) y = bcast_nchw(y);
      return binary(op, std::move(x), y);
    });
  }

  // Trainable programs only (inference programs see batch normalisation
  // rewritten as per-channel Mul and Add by constants: inference_form()).
  // forward() normalises with the batch's statistics and updates the running
  // ones (x_run = (1 - momentum) x_run + momentum x_batch, the variance
  // unbiased: LibTorch's batch_norm); run() uses the running statistics.
  void lower_batch_norm(const Node& n) {
    int x = in(n, 0);
    Tensor mean = const_in(n, 3, "mean"), var = const_in(n, 4, "variance");
    Tensor sc = const_in(n, 1, "scale"), of = const_in(n, 2, "offset");
    std::int64_t c = mean.numel();
    for (const Tensor* t : {&sc, &of, &mean, &var})
      if (t->dim() != 1 || t->numel() != c || !t->is_floating_point())
        throw FormatError("scale, offset, mean and variance must be float vectors of one length");
    double eps = attr_float(n, "epsilon", 1e-3), momentum = attr_float(n, "momentum", 0.1);
    if (!(eps > 0) || !(momentum >= 0 && momentum <= 1)) throw FormatError("epsilon must be > 0 and momentum in [0, 1]");
    bool image = nchw(x);
    emit(n, {x, in(n, 1), in(n, 2), in(n, 3), in(n, 4)}, image, [image, eps, momentum, c](std::vector<Tensor>& a) {
      const Tensor& t = a[0];
      if (!(t.dim() == 2 || (t.dim() == 4 && image)) || t.size(1) != c)
        throw FormatError("needs an image or an [N, " + std::to_string(c) + "] input");
      return at::batch_norm(t, a[1], a[2], a[3], a[4], at::GradMode::is_enabled(), momentum, eps, true);
    });
  }

  // hfr's own op (no TensorFlow counterpart): LightCNN's Max-Feature-Map.
  // The last axis (channels, NHWC) of 2C values is split into halves [0, C)
  // and [C, 2C) and their elementwise maximum is taken: [..., 2C] -> [..., C],
  // as LightCNN's mfm (torch.split(x, C, 1), torch.max). One LibTorch op,
  // out of place, so autograd sends the gradient to the larger half (split
  // evenly on ties, as torch.max of two tensors does).
  void lower_mfm(const Node& n) {
    int x = in(n, 0);
    bool c = nchw(x);
    emit(n, {x}, c, [c](std::vector<Tensor>& a) {
      const Tensor& t = a[0];
      const std::int64_t axis = c ? 1 : t.dim() - 1;
      if (t.dim() < 1 || t.size(axis) % 2) throw FormatError("needs an even number of channels");
      const std::int64_t half = t.size(axis) / 2;
      // split, not two narrows: its backward writes both halves' gradients
      // into one tensor (a cat), where two narrows' backward would each
      // zero-fill a full-size tensor and then add them
      const std::vector<Tensor> h = t.split(half, axis);
      return at::maximum(h[0], h[1]);
    });
  }

  // hfr's own ops for switch style modulation (methods.md §4, backbones.hpp).
  // SwitchRouter: inputs x [N, H, W, C], weights [2C, E], bias [E]; the
  // router sees the style of x, its per-channel mean and standard deviation
  // over H and W (sqrt(variance + epsilon)), and returns the probabilities
  // softmax([mean, std] . weights + bias), [N, E].
  // SwitchStyleModulation: inputs x [N, H, W, C], probabilities [N, E], gamma
  // [E, C], beta [E, C]; each sample goes to its most probable expert k (top-1,
  // the first on ties): y = x + p_k (gamma_k IN(x) + beta_k), IN the instance
  // normalisation of x over H and W. Gradients reach x, gamma_k, beta_k and,
  // through p_k, the router. Attribute epsilon (default 1e-5) for both.
  void lower_switch_router(const Node& n) {
    int x = in(n, 0);
    Tensor w = const_in(n, 1, "weights"), b = const_in(n, 2, "bias");
    if (w.dim() != 2 || b.dim() != 1 || !w.is_floating_point() || !b.is_floating_point() || w.size(0) % 2 ||
        w.size(0) < 2 || w.size(1) != b.size(0) || b.size(0) < 1)
      throw FormatError("weights must be a float [2C, E] matrix and bias a float [E] vector");
    const std::int64_t C = w.size(0) / 2;
    const double eps = attr_float(n, "epsilon", 1e-5);
    if (!(eps > 0)) throw FormatError("epsilon must be > 0");
    bool c = nchw(x);
    emit(n, {x, in(n, 1), in(n, 2)}, false, [c, C, eps](std::vector<Tensor>& a) {
      if (a[0].dim() != 4) throw FormatError("needs an image input");
      Tensor t = c ? a[0] : to_nchw(a[0]);
      if (t.size(1) != C) throw FormatError("the weights are for " + std::to_string(C) + " channels, the input has " + std::to_string(t.size(1)));
      auto [var, mean] = at::var_mean(t, {2, 3}, /*unbiased=*/false, /*keepdim=*/false);
      return at::softmax(at::addmm(a[2], at::cat({mean, (var + eps).sqrt()}, 1), a[1]), 1);
    });
  }

  void lower_switch_modulation(const Node& n) {
    int x = in(n, 0), p = in(n, 1);
    Tensor gamma = const_in(n, 2, "gamma"), beta = const_in(n, 3, "beta");
    if (gamma.dim() != 2 || !gamma.is_floating_point() || !beta.is_floating_point() || !beta.sizes().equals(gamma.sizes()))
      throw FormatError("gamma and beta must be float [E, C] matrices of one shape");
    const std::int64_t E = gamma.size(0), C = gamma.size(1);
    const double eps = attr_float(n, "epsilon", 1e-5);
    if (!(eps > 0)) throw FormatError("epsilon must be > 0");
    bool c = nchw(x), pc = nchw(p);
    std::shared_ptr<const Program::Impl::RouterNoise> noise = p_->router_noise;
    const std::uint64_t salt = fnv1a64(n.name, 0x9e3779b97f4a7c15ULL);  // each block its own noise
    emit(n, {x, p, in(n, 2), in(n, 3)}, true, [c, pc, E, C, eps, noise, salt](std::vector<Tensor>& a) {
      if (a[0].dim() != 4) throw FormatError("needs an image input");
      Tensor t = c ? a[0] : to_nchw(a[0]);
      const Tensor& prob = pc ? to_nhwc(a[1]) : a[1];
      const std::int64_t N = t.size(0);
      if (t.size(1) != C) throw FormatError("gamma is for " + std::to_string(C) + " channels, the input has " + std::to_string(t.size(1)));
      if (prob.dim() != 2 || prob.size(0) != N || prob.size(1) != E)
        throw FormatError("the probabilities must be [" + std::to_string(N) + ", " + std::to_string(E) + "]");
      Tensor k;
      if (noise->sigma > 0 && at::GradMode::is_enabled()) {
        // Gumbel-max: argmax(log p + g) is a draw from p
        at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(noise->seed ^ salt);
        const Tensor u = at::rand({N, E}, gen, at::TensorOptions().dtype(at::kFloat)).clamp_(1e-7f, 1.0f - 1e-7f);
        const Tensor g = (-(-u.log()).log()).to(prob.device());
        k = (prob.detach().clamp_min(1e-30).log() + noise->sigma * g).argmax(1);
      } else {
        k = prob.argmax(1);
      }
      const Tensor gate = prob.gather(1, k.unsqueeze(1));  // [N, 1]
      const Tensor g = (a[2].index_select(0, k) * gate).reshape({N, C, 1, 1});
      const Tensor b = (a[3].index_select(0, k) * gate).reshape({N, C, 1, 1});
      auto [var, mean] = at::var_mean(t, {2, 3}, /*unbiased=*/false, /*keepdim=*/true);
      return t + (t - mean) * (var + eps).rsqrt() * g + b;
    });
  }

  void lower_unary(const Node& n) {
    int x = in(n, 0);
    if (n.op == "Relu" || n.op == "Relu6") {
      if (Conv* conv = foldable_conv(x); conv && conv->act_clamp_only()) {
        conv->lo = std::max(conv->lo, 0.0f);
        conv->hi = std::max(conv->hi, 0.0f);
        if (n.op == "Relu6") { conv->lo = std::min(conv->lo, 6.0f); conv->hi = std::min(conv->hi, 6.0f); }
        alias(n, x);
        return;
      }
    }
    auto f = unary(n);
    emit(n, {x}, nchw(x), [f](std::vector<Tensor>& a) {
      Tensor t = std::move(a[0]);
      return f(t);
    });
  }

  void lower_pool(const Node& n) {
    check_nhwc(n);
    auto [kh, kw] = spatial(n, "ksize", 1);
    auto [sh, sw] = spatial(n, "strides", 1);
    Pads pads = parse_padding(n);
    bool is_max = n.op == "MaxPool";
    int x = in(n, 0);
    bool c = nchw(x);
    emit(n, {x}, true, [=](std::vector<Tensor>& a) {
      Tensor t = c ? a[0] : to_nchw(a[0]);
      auto p = resolve_pads(pads, t.size(2), t.size(3), kh, kw, sh, sw, 1, 1);
      bool sym = p[0] == p[1] && p[2] == p[3];
      if (is_max) {
        if (sym) return at::max_pool2d(t, {kh, kw}, {sh, sw}, {p[0], p[2]});
        return at::max_pool2d(at::constant_pad_nd(t, {p[2], p[3], p[0], p[1]}, -kInf), {kh, kw}, {sh, sw});
      }
      if (sym) return at::avg_pool2d(t, {kh, kw}, {sh, sw}, {p[0], p[2]}, false, false);
      // TF averages over the valid (unpadded) elements only
      Tensor sum = at::avg_pool2d(at::constant_pad_nd(t, {p[2], p[3], p[0], p[1]}, 0), {kh, kw}, {sh, sw}, {0, 0}, false, true);
      Tensor ones = at::ones({1, 1, t.size(2), t.size(3)}, t.options());
      Tensor cnt = at::avg_pool2d(at::constant_pad_nd(ones, {p[2], p[3], p[0], p[1]}, 0), {kh, kw}, {sh, sw}, {0, 0}, false, true);
      return sum / cnt;
    });
  }

  void lower_pad(const Node& n) {
    int x = in(n, 0);
    auto pads = tensor_ints(const_in(n, 1, "paddings"));
    double value = 0;
    if (n.op == "PadV2") {
      auto v = scalar_of(const_in(n, 2, "constant_values"));
      if (!v) throw FormatError("constant_values must be a float scalar");
      value = *v;
    }
    if (pads.size() % 2) throw FormatError("paddings must have shape [rank, 2]");
    for (auto v : pads)
      if (v < 0 || v > kMaxSpatial) throw FormatError("paddings must be in 0.." + std::to_string(kMaxSpatial));
    std::size_t rank = pads.size() / 2;
    bool c = nchw(x);
    if (c && rank != 4) throw FormatError("paddings for rank " + std::to_string(rank) + " on an image tensor");
    // at::constant_pad_nd takes (before, after) from the last dimension backwards
    std::vector<std::int64_t> list;
    for (std::size_t d = rank; d-- > 0;) {
      std::size_t src = d;
      if (c) {  // NCHW dim d holds NHWC dim: 0->0, 1->3, 2->1, 3->2
        static const int from[4] = {0, 3, 1, 2};
        src = static_cast<std::size_t>(from[d]);
      }
      list.push_back(pads[2 * src]);
      list.push_back(pads[2 * src + 1]);
    }
    emit(n, {x}, c, [list, value, rank](std::vector<Tensor>& a) {
      if (static_cast<std::size_t>(a[0].dim()) != rank) throw FormatError("Pad: paddings rank does not match the input");
      return at::constant_pad_nd(a[0], list, value);
    });
  }

  void lower_reduce(const Node& n) {
    int x = in(n, 0);
    auto axes = tensor_ints(const_in(n, 1, "reduction axes"));
    bool keep = attr_bool(n, "keep_dims", false);
    bool c = nchw(x);
    const std::string op = n.op;
    bool out_nchw = c && keep;
    emit(n, {x}, out_nchw, [=](std::vector<Tensor>& a) {
      Tensor t = a[0];
      std::int64_t r = t.dim();
      std::vector<std::int64_t> ax;
      for (auto v : axes) {
        if (v < -r || v >= r) throw FormatError(op + ": axis " + std::to_string(v) + " out of range for rank " + std::to_string(r));
        ax.push_back(v < 0 ? v + r : v);
      }
      if (ax.empty()) return c && !keep ? to_nhwc(t) : t;  // TF: no axes, no reduction
      {
        auto sorted = ax;
        std::sort(sorted.begin(), sorted.end());
        if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) throw FormatError(op + ": duplicate reduction axes");
      }
      bool direct = c;
      if (c && !keep) {  // the kept dims must come out in NHWC order
        bool cKept = std::find(ax.begin(), ax.end(), 3) == ax.end();
        bool hwKept = std::find(ax.begin(), ax.end(), 1) == ax.end() || std::find(ax.begin(), ax.end(), 2) == ax.end();
        if (cKept && hwKept) { t = to_nhwc(t); direct = false; }
      }
      if (direct)
        for (auto& v : ax) v = kNhwcToNchw[v];
      if (op == "Mean") return t.mean(ax, keep);
      if (op == "Sum") return t.sum(ax, keep);
      Tensor out = t;
      std::sort(ax.rbegin(), ax.rend());
      for (auto v : ax) out = op == "Max" ? std::get<0>(out.max(v, keep)) : std::get<0>(out.min(v, keep));
      return out;
    });
  }

  void lower_concat(const Node& n) {
    auto ins = inputs_of(n);
    if (ins.size() < 2) throw FormatError("needs values and an axis");
    auto axis_v = tensor_ints(const_in(n, ins.size() - 1, "axis"));
    if (axis_v.size() != 1) throw FormatError("axis must be one integer");
    std::int64_t axis = axis_v[0];
    std::vector<int> slots;
    bool all = true;
    for (std::size_t i = 0; i + 1 < ins.size(); ++i) {
      slots.push_back(in(n, i));
      all = all && nchw(slots.back());
    }
    if (all) {
      emit(n, slots, true, [axis](std::vector<Tensor>& a) {
        std::int64_t ax = axis < 0 ? axis + 4 : axis;
        if (ax < 0 || ax > 3) throw FormatError("ConcatV2: axis out of range");
        return at::cat(a, kNhwcToNchw[ax]);
      });
      return;
    }
    std::vector<bool> c;
    for (int s : slots) c.push_back(nchw(s));
    emit(n, slots, false, [axis, c](std::vector<Tensor>& a) {
      std::vector<Tensor> v;
      for (std::size_t i = 0; i < a.size(); ++i) v.push_back(c[i] ? to_nhwc(a[i]) : a[i]);
      return at::cat(v, axis);
    });
  }

  void lower_reshape(const Node& n) {
    int x = in(n, 0), s = in(n, 1);
    bool c = nchw(x);
    emit(n, {x, s}, false, [c](std::vector<Tensor>& a) {
      Tensor t = c ? to_nhwc(a[0]) : a[0];
      auto shape = tensor_ints(a[1]);
      // Graphs exported with batch 1 carry it in their reshape constants; a
      // larger batch keeps its size (the only dimension that may change).
      if (!shape.empty() && shape[0] == 1 && t.dim() > 0 && t.size(0) > 1) {
        std::int64_t rest = 1;
        bool free = false;
        for (std::size_t i = 1; i < shape.size(); ++i) {
          if (shape[i] == -1) free = true;
          else if (shape[i] < 0 || shape[i] > t.numel()) return t.reshape(shape);  // let LibTorch report it
          else rest *= shape[i];
          if (rest > t.numel()) return t.reshape(shape);
        }
        if (free || rest * t.size(0) == t.numel()) shape[0] = t.size(0);
      }
      return t.reshape(shape);
    });
  }

  void lower_strided_slice(const Node& n) {
    if (attr_int(n, "ellipsis_mask", 0) || attr_int(n, "new_axis_mask", 0))
      throw FormatError("ellipsis_mask and new_axis_mask are not supported");
    std::int64_t bm = attr_int(n, "begin_mask", 0), em = attr_int(n, "end_mask", 0), sm = attr_int(n, "shrink_axis_mask", 0);
    int x = in(n, 0), b = in(n, 1), e = in(n, 2), st = in(n, 3);
    bool c = nchw(x);
    emit(n, {x, b, e, st}, false, [=](std::vector<Tensor>& a) {
      Tensor t = c ? to_nhwc(a[0]) : a[0];
      auto begin = tensor_ints(a[1]), end = tensor_ints(a[2]), strides = tensor_ints(a[3]);
      if (begin.size() != end.size() || begin.size() != strides.size() || static_cast<std::int64_t>(begin.size()) > t.dim())
        throw FormatError("StridedSlice: begin/end/strides lengths do not match the input");
      std::vector<std::int64_t> squeeze;
      for (std::size_t d = 0; d < begin.size(); ++d) {
        std::int64_t size = t.size(static_cast<std::int64_t>(d));
        if (strides[d] <= 0) throw FormatError("StridedSlice: only positive strides are supported");
        std::int64_t bi = begin[d] < 0 ? begin[d] + size : begin[d];
        std::int64_t ei = end[d] < 0 ? end[d] + size : end[d];
        if (sm >> d & 1) {
          if (bi < 0 || bi >= size) throw FormatError("StridedSlice: index out of range");
          ei = bi + 1;
          squeeze.push_back(static_cast<std::int64_t>(d));
        } else {
          if (bm >> d & 1) bi = 0;
          if (em >> d & 1) ei = size;
          bi = std::clamp<std::int64_t>(bi, 0, size);
          ei = std::clamp<std::int64_t>(ei, bi, size);
        }
        t = t.slice(static_cast<std::int64_t>(d), bi, ei, strides[d]);
      }
      for (auto it = squeeze.rbegin(); it != squeeze.rend(); ++it) t = t.squeeze(*it);
      return t;
    });
  }

  void lower_matmul(const Node& n) {
    int x = in(n, 0);
    bool ta = attr_bool(n, "transpose_a", false), tb = attr_bool(n, "transpose_b", false);
    Tensor w = const_in(n, 1, "weights");
    if (w.dim() != 2 || !w.is_floating_point()) throw FormatError("weights must be a rank-2 float constant");
    std::int64_t cols = tb ? w.size(0) : w.size(1);
    std::vector<int> ins{x, derive(n, in(n, 1), [tb](const Tensor& w) { return (tb ? w.t() : w).contiguous(); })};
    bool relu = false;
    if (n.op == "_FusedMatMul") {
      std::size_t next = 2;
      for (const auto& fo : attr_strs(n, "fused_ops")) {
        if (fo == "BiasAdd") {
          if (ins.size() > 2) throw FormatError("fused op BiasAdd given twice");
          if (const_in(n, next, "bias").numel() != cols) throw FormatError("bias size does not match the weights");
          ins.push_back(derive(n, in(n, next++), [cols](const Tensor& b) { return b.reshape({cols}).contiguous(); }));
        } else if (fo == "Relu") {
          relu = true;
        } else {
          throw FormatError("fused op " + fo + " is not supported");
        }
      }
    }
    bool c = nchw(x);
    emit(n, ins, false, [ta, relu, c](std::vector<Tensor>& a) {
      Tensor t = c ? to_nhwc(a[0]) : a[0];
      if (t.dim() != 2) throw FormatError("MatMul: input must be rank 2, is rank " + std::to_string(t.dim()));
      if (ta) t = t.t();
      Tensor y = a.size() > 2 ? at::addmm(a[2], t, a[1]) : at::mm(t, a[1]);
      if (relu) y = updatable(y) ? y.relu_() : y.relu();
      return y;
    });
  }

  const Graph& g_;
  std::string ctx_;
  bool fuse_, train_, channels_last_;
  std::vector<bool> live_;                 // by slot: a parameter, or computed from one
  std::map<int, std::string> param_name_;  // parameter slot -> Const node
  std::map<std::string, const Node*> by_name_;
  std::map<std::string, int> uses_;
  std::map<std::string, int> slot_;
  std::set<std::string> buffer_consts_;     // trainable: Const nodes holding batch-norm statistics
  std::map<int, std::string> buffer_name_;  // their slots
  std::vector<int> producer_;
  std::vector<int> slot_uses_;  // consumers still to come, per slot
  std::unique_ptr<Program::Impl> p_;
};

}  // namespace

Program::Program(const Graph& g, const std::string& input, const std::vector<std::string>& outputs, const std::string& context,
                 CompileOptions options) {
  if (outputs.empty()) throw FormatError(context + ": no outputs requested");
  bool has_bn = std::any_of(g.nodes.begin(), g.nodes.end(), [](const Node& n) { return n.op == "FusedBatchNormV3"; });
  Graph inference;
  if (has_bn && !options.trainable) inference = inference_form(g, context);
  Compiler c(has_bn && !options.trainable ? inference : g, context, options);
  impl_ = c.compile(input, outputs);
  impl_->channels_last = options.channels_last;
  if (options.channels_last)
    for (auto& st : impl_->steps)
      if (st.conv && st.conv->weight.defined())  // trainable programs: made channels-last in their prologue
        st.conv->weight = st.conv->weight.contiguous(at::MemoryFormat::ChannelsLast);
}

bool channels_last_trains_faster(const Graph& g, bool cuda) {
  return cuda || std::any_of(g.nodes.begin(), g.nodes.end(),
                             [](const Node& n) { return n.op == "DepthwiseConv2dNative" || n.op == "FusedDepthwiseConv2dNative"; });
}

Program::~Program() = default;
Program::Program(Program&&) noexcept = default;
Program& Program::operator=(Program&&) noexcept = default;

const std::vector<std::int64_t>& Program::input_shape() const { return impl_->input_shape; }
std::size_t Program::steps() const { return impl_->steps.size(); }
const torch::Device& Program::device() const { return impl_->device; }
bool Program::trainable() const { return impl_->trainable; }

std::vector<std::pair<std::string, torch::Tensor>> Program::parameters() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& [name, slot] : impl_->params) out.push_back({name, impl_->consts[slot]});
  return out;
}

std::vector<std::pair<std::string, torch::Tensor>> Program::buffers() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& [name, slot] : impl_->buffers) out.push_back({name, impl_->consts[slot]});
  return out;
}

Graph inference_form(const Graph& g, const std::string& context) {
  Graph out;
  out.consts = g.consts;
  for (const Node& n : g.nodes) {
    if (n.op != "FusedBatchNormV3") {
      out.nodes.push_back(n);
      continue;
    }
    auto fail = [&](const std::string& m) { return FormatError(context + ": node '" + n.name + "' (FusedBatchNormV3): " + m); };
    if (n.inputs.size() != 5) throw fail("needs 5 inputs (x, scale, offset, mean, variance)");
    std::array<Tensor, 4> v;
    for (std::size_t i = 0; i < 4; ++i) {
      const Node* src = g.find(n.inputs[i + 1]);
      auto it = g.consts.find(n.inputs[i + 1]);
      if (!src || src->op != "Const" || it == g.consts.end() || !it->second.is_floating_point() || it->second.dim() != 1)
        throw fail("scale, offset, mean and variance must be float vector constants");
      v[i] = it->second.to(at::kFloat);
      if (v[i].numel() != v[0].numel()) throw fail("scale, offset, mean and variance differ in length");
    }
    double eps = 0;
    try {
      eps = attr_float(n, "epsilon", 1e-3);
    } catch (const FormatError& e) {
      throw fail(e.what());
    }
    if (!(eps > 0)) throw fail("epsilon must be > 0");
    Tensor a = v[0] * at::rsqrt(v[3] + eps), b = v[1] - v[2] * a;
    const std::string an = n.name + "/bn_scale", bn = n.name + "/bn_offset", mul = n.name + "/bn_mul";
    out.consts[an] = a;
    out.consts[bn] = b;
    out.nodes.push_back({an, "Const", {}, nlohmann::json::object()});
    out.nodes.push_back({bn, "Const", {}, nlohmann::json::object()});
    out.nodes.push_back({mul, "Mul", {n.inputs[0], an}, nlohmann::json::object()});
    out.nodes.push_back({n.name, "Add", {mul, bn}, nlohmann::json::object()});
  }
  return out;
}

void Program::to(const torch::Device& device) {
  auto move = [&](Tensor& t) {
    if (!t.defined() || !t.is_floating_point() || t.device() == device) return;
    // .to() of a tensor requiring grad is a differentiable copy, not a leaf:
    // a parameter must stay one to receive gradients
    bool grad = t.requires_grad();
    t = t.detach().to(device).requires_grad_(grad);
  };
  for (auto& t : impl_->consts) move(t);
  for (auto& s : impl_->steps)
    if (s.conv) {
      move(s.conv->weight);
      move(s.conv->bias);
      move(s.conv->alpha);
    }
  impl_->device = device;
}

namespace {

// run and forward: the same steps, with autograd off or on (the caller's mode).
std::vector<Tensor> execute(const Program::Impl& p, const Tensor& input) {
  if (input.dim() != 4 || input.scalar_type() != at::kFloat)
    throw Error(p.context + ": input must be a float32 tensor [N, C, H, W]");
  const auto& s = p.input_shape;
  if ((s[3] > 0 && input.size(1) != s[3]) || (s[1] > 0 && input.size(2) != s[1]) || (s[2] > 0 && input.size(3) != s[2]))
    throw Error(p.context + ": input of shape [" + std::to_string(input.size(0)) + "," + std::to_string(input.size(1)) + "," +
                std::to_string(input.size(2)) + "," + std::to_string(input.size(3)) + "] (NCHW) does not fit the model's " +
                join(s) + " (NHWC)");
  std::vector<Tensor> v(p.consts.size());
  for (std::size_t i = 0; i < v.size(); ++i)
    if (p.consts[i].defined()) v[i] = p.consts[i];
  v[p.input_slot] = p.channels_last ? input.contiguous(at::MemoryFormat::ChannelsLast) : input;
  std::vector<Tensor> args;
  // HFR_PROFILE_GRAPH=1: time per op kind on stderr (for optimising importers)
  static const bool profile = std::getenv("HFR_PROFILE_GRAPH") != nullptr;
  std::map<std::string, double> prof;
  auto step = [&](const Step& st) {
    args.clear();
    for (std::size_t k = 0; k < st.in.size(); ++k) args.push_back(st.move_in[k] ? std::move(v[st.in[k]]) : v[st.in[k]]);
    try {
      auto t0 = profile ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
      v[st.out] = exec(st, args);
      if (profile) {
        std::string key = st.op;
        if (st.conv) {
          const Tensor& w = conv_weight(*st.conv, args);
          key += " k" + std::to_string(w.size(2)) + " g" + std::to_string(st.conv->groups > 1) + " s" +
                 std::to_string(st.conv->sh) + " in" + std::to_string(args[0].size(1)) + "x" +
                 std::to_string(args[0].size(2));
        }
        prof[key] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
    } catch (const c10::Error& e) {
      std::string m = e.what();
      throw Error(p.context + ": node '" + st.name + "' (" + st.op + "): " + m.substr(0, m.find('\n')));
    } catch (const FormatError& e) {
      throw Error(p.context + ": node '" + st.name + "' (" + st.op + "): " + e.what());
    }
    for (int r : st.release) v[r] = Tensor();
  };
  for (const Step& st : p.prologue) step(st);  // constants from the parameters' current values
  for (const Step& st : p.steps) step(st);
  if (profile) {
    std::vector<std::pair<double, std::string>> v2;
    for (auto& [k, t] : prof) v2.push_back({t, k});
    std::sort(v2.rbegin(), v2.rend());
    for (std::size_t i = 0; i < std::min<std::size_t>(12, v2.size()); ++i) std::fprintf(stderr, "  %8.2f ms  %s\n", v2[i].first * 1e3, v2[i].second.c_str());
  }
  std::vector<Tensor> out;
  for (int o : p.outputs) {
    // a constant (or a view of one), or the same value asked for twice, is
    // copied: callers may change what they get
    bool dup = std::count(p.outputs.begin(), p.outputs.end(), o) > 1;
    Tensor t = dup || p.consts[o].defined() ? v[o] : std::move(v[o]);
    if (p.nchw[o]) t = to_nhwc(t).contiguous();
    if (dup || p.consts[o].defined() || !unique_value(t)) t = t.clone();
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace

std::vector<torch::Tensor> Program::run(const torch::Tensor& input) const {
  // No autograd recording. (InferenceMode would make the outputs inference
  // tensors, which callers could not update in place.)
  at::AutoGradMode no_grad(false);
  return execute(*impl_, input);
}

void Program::set_router_noise(double sigma, std::uint64_t seed) {
  if (!(sigma >= 0) || !std::isfinite(sigma)) throw UsageError("router noise must be a finite sigma >= 0");
  impl_->router_noise->sigma = sigma;
  impl_->router_noise->seed = seed;
}

std::vector<torch::Tensor> Program::forward(const torch::Tensor& input) const {
  at::AutoGradMode grad(true);
  return execute(*impl_, input);
}

}  // namespace hfr::nn
