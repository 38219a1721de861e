#include "hfr/tfjs.hpp"

#include <cstring>
#include <filesystem>
#include <set>

#include <ATen/ATen.h>

#include "hfr/error.hpp"
#include "hfr/hash.hpp"
#include "hfr/io.hpp"
#include "hfr/tensorfile.hpp"

namespace hfr::tfjs {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// Reads and parses a JSON file; `raw` (if given) receives the bytes parsed.
json read_json(const std::string& path, const Limits& lim, std::vector<unsigned char>* raw = nullptr) {
  if (!fs::exists(path)) throw Error(path + ": No such file (fetch the models with scripts/fetch-models.sh)");
  auto bytes = io::read_file(path, lim.max_json_bytes);
  if (raw) *raw = bytes;
  try {
    return json::parse(bytes.begin(), bytes.end());
  } catch (const json::exception& e) {
    throw FormatError(path + ": not valid JSON: " + e.what());
  }
}

std::string b64decode(const std::string& s, const std::string& ctx) {
  static const std::string chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    if (c == '=') break;
    auto p = chars.find(c);
    if (p == std::string::npos) throw FormatError(ctx + ": invalid base64 string");
    acc = (acc << 6) | static_cast<std::uint32_t>(p);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

std::int64_t parse_int(const json& v, const std::string& ctx) {
  try {
    if (v.is_number_integer()) return v.get<std::int64_t>();
    if (v.is_string()) {
      std::size_t pos = 0;
      std::int64_t x = std::stoll(v.get<std::string>(), &pos);
      if (pos == v.get<std::string>().size()) return x;
    }
  } catch (const std::exception&) {
  }
  throw FormatError(ctx + ": not an integer");
}

// TF.js attribute encodings -> plain JSON. Tensor-valued attributes (the
// values of Const nodes) come from the weights and are dropped here.
json decode_attr(const json& a, const std::string& ctx) {
  if (!a.is_object()) throw FormatError(ctx + ": attribute is not an object");
  if (a.contains("list")) {
    const json& l = a["list"];
    if (!l.is_object()) throw FormatError(ctx + ": list attribute is not an object");
    json out = json::array();
    if (l.contains("i"))
      for (const auto& v : l["i"]) out.push_back(parse_int(v, ctx));
    if (l.contains("s"))
      for (const auto& v : l["s"]) out.push_back(b64decode(v.get<std::string>(), ctx));
    if (l.contains("f"))
      for (const auto& v : l["f"]) out.push_back(v.is_number() ? v.get<double>() : 0.0);
    if (l.contains("b"))
      for (const auto& v : l["b"]) out.push_back(v.get<bool>());
    if (l.contains("type"))
      for (const auto& v : l["type"]) out.push_back(v.get<std::string>());
    return out;
  }
  if (a.contains("s")) return b64decode(a["s"].get<std::string>(), ctx);
  if (a.contains("i")) return parse_int(a["i"], ctx);
  if (a.contains("f")) {
    if (!a["f"].is_number()) throw FormatError(ctx + ": not a number");
    return a["f"].get<double>();
  }
  if (a.contains("b")) return a["b"].get<bool>();
  if (a.contains("type")) return a["type"].get<std::string>();
  if (a.contains("shape")) {
    json dims = json::array();
    const json& s = a["shape"];
    if (s.contains("dim"))
      for (const auto& d : s["dim"]) dims.push_back(d.contains("size") ? parse_int(d["size"], ctx) : 1);
    return dims;
  }
  return nullptr;
}

bool plain_file_name(const std::string& p) {
  return !p.empty() && p.find('/') == std::string::npos && p.find('\\') == std::string::npos && p != "." && p != "..";
}

}  // namespace

std::map<std::string, torch::Tensor> load_weights(const json& manifest, const std::string& dir, const std::string& context,
                                                  const Limits& lim, json* info) {
  if (!manifest.is_array()) throw FormatError(context + ": weightsManifest is not a list");
  std::map<std::string, torch::Tensor> out;
  std::uint64_t total = 0;
  for (std::size_t gi = 0; gi < manifest.size(); ++gi) {
    const json& group = manifest[gi];
    std::string gctx = context + ": weight group " + std::to_string(gi);
    if (!group.is_object() || !group.contains("paths") || !group["paths"].is_array() || !group.contains("weights") ||
        !group["weights"].is_array())
      throw FormatError(gctx + ": needs lists 'paths' and 'weights'");
    std::vector<unsigned char> data;
    for (const auto& pj : group["paths"]) {
      if (!pj.is_string() || !plain_file_name(pj.get<std::string>()))
        throw FormatError(gctx + ": shard path must be a plain file name");
      std::string path = (fs::path(dir) / pj.get<std::string>()).string();
      if (!fs::exists(path)) throw Error(path + ": No such file (fetch the models with scripts/fetch-models.sh)");
      if (lim.max_weight_bytes < total) throw FormatError(gctx + ": weights larger than the limit");
      auto bytes = io::read_file(path, lim.max_weight_bytes - total);
      total += bytes.size();
      if (info) (*info)["files"].push_back({{"file", pj.get<std::string>()}, {"bytes", bytes.size()}, {"sha256", sha256_hex(bytes.data(), bytes.size())}});
      data.insert(data.end(), bytes.begin(), bytes.end());
    }
    std::uint64_t off = 0;
    for (const auto& w : group["weights"]) {
      if (!w.is_object() || !w.contains("name") || !w["name"].is_string() || !w.contains("shape") || !w["shape"].is_array())
        throw FormatError(gctx + ": a weight entry needs 'name' and 'shape'");
      std::string name = w["name"].get<std::string>();
      std::string wctx = context + ": weight '" + name + "'";
      std::vector<std::int64_t> shape;
      for (const auto& d : w["shape"]) {
        std::int64_t v = parse_int(d, wctx);
        if (v < 0) throw FormatError(wctx + ": negative dimension");
        shape.push_back(v);
      }
      std::uint64_t numel = shape_numel(shape);
      if (numel > (lim.max_weight_bytes)) throw FormatError(wctx + ": too many values");
      std::string dtype = w.value("dtype", "float32");
      if (dtype != "float32" && dtype != "int32") throw FormatError(wctx + ": dtype " + dtype + " is not supported");
      std::string qtype;
      double qmin = 0, qscale = 1;
      if (w.contains("quantization")) {
        const json& q = w["quantization"];
        if (!q.is_object() || !q.contains("dtype") || !q["dtype"].is_string()) throw FormatError(wctx + ": bad quantization entry");
        qtype = q["dtype"].get<std::string>();
        if (qtype == "uint8" || qtype == "uint16") {
          if (!q.contains("min") || !q["min"].is_number() || !q.contains("scale") || !q["scale"].is_number())
            throw FormatError(wctx + ": " + qtype + " quantization needs numbers min and scale");
          qmin = q["min"].get<double>();
          qscale = q["scale"].get<double>();
        } else if (qtype != "float16") {
          throw FormatError(wctx + ": quantization " + qtype + " is not supported");
        }
      }
      std::uint64_t esize = qtype == "uint8" ? 1 : (qtype == "uint16" || qtype == "float16") ? 2 : 4;
      std::uint64_t bytes = numel * esize;
      if (off + bytes > data.size())
        throw FormatError(wctx + ": needs bytes " + std::to_string(off) + ".." + std::to_string(off + bytes) + " but the shards hold " +
                          std::to_string(data.size()) + " (truncated or corrupt weights)");
      const unsigned char* p = data.data() + off;
      torch::Tensor t;
      if (qtype.empty()) {
        t = torch::empty(shape, dtype == "int32" ? at::kInt : at::kFloat);
        std::memcpy(t.data_ptr(), p, bytes);
        if (dtype == "float32" && !t.isfinite().all().item<bool>()) throw FormatError(wctx + ": non-finite values");
        if (dtype == "int32") t = t.to(at::kLong);
      } else {
        std::vector<float> v(numel);
        for (std::uint64_t i = 0; i < numel; ++i) {
          if (qtype == "float16") {
            std::uint16_t h;
            std::memcpy(&h, p + 2 * i, 2);
            v[i] = half_to_float(h);
          } else {
            double q = qtype == "uint8" ? p[i] : static_cast<double>(p[2 * i] | (p[2 * i + 1] << 8));
            v[i] = static_cast<float>(qmin + qscale * q);
          }
        }
        t = torch::from_blob(v.data(), shape, at::kFloat).clone();
        if (!t.isfinite().all().item<bool>()) throw FormatError(wctx + ": non-finite values");
        if (dtype == "int32") t = t.round().to(at::kLong);
      }
      off += bytes;
      if (!out.emplace(name, t).second) throw FormatError(wctx + ": appears twice");
    }
    if (off != data.size())
      throw FormatError(gctx + ": " + std::to_string(data.size() - off) + " bytes of the shards are not used by any weight (corrupt manifest?)");
  }
  return out;
}

namespace {
Imported load_graph_model_unchecked(const std::string& model_json, const Limits& lim);
}

Imported load_graph_model(const std::string& model_json, const Limits& lim) {
  try {
    return load_graph_model_unchecked(model_json, lim);
  } catch (const json::exception& e) {
    throw FormatError(model_json + ": unexpected JSON content: " + e.what());
  }
}

namespace {
Imported load_graph_model_unchecked(const std::string& model_json, const Limits& lim) {
  // one read: the bytes parsed are the bytes hashed (and compared with the pinned SHA-256)
  std::vector<unsigned char> json_bytes;
  json m = read_json(model_json, lim, &json_bytes);
  const std::string& ctx = model_json;
  if (!m.is_object() || !m.contains("modelTopology") || !m["modelTopology"].is_object() ||
      !m["modelTopology"].contains("node") || !m["modelTopology"]["node"].is_array())
    throw FormatError(ctx + ": not a TF.js graph model (no modelTopology.node)");
  if (m.value("format", "graph-model") != "graph-model")
    throw FormatError(ctx + ": format '" + m.value("format", "") + "' is not supported (graph-model only)");
  if (m["modelTopology"].contains("library") && m["modelTopology"]["library"].is_object() &&
      m["modelTopology"]["library"].contains("function") && !m["modelTopology"]["library"]["function"].empty())
    throw FormatError(ctx + ": graphs with functions (control flow) are not supported");
  Imported r;
  r.info = {{"format", "tfjs-graph-model"}, {"files", json::array()}};
  for (const char* k : {"generatedBy", "convertedBy"})
    if (m.contains(k) && m[k].is_string()) r.info[k] = m[k];
  std::string dir = fs::path(model_json).parent_path().string();
  if (dir.empty()) dir = ".";
  r.info["files"].push_back({{"file", fs::path(model_json).filename().string()}, {"bytes", json_bytes.size()},
                             {"sha256", sha256_hex(json_bytes.data(), json_bytes.size())}});
  auto weights = load_weights(m.contains("weightsManifest") ? m["weightsManifest"] : json::array(), dir, ctx, lim, &r.info);
  json nodes = json::array();
  for (const auto& n : m["modelTopology"]["node"]) {
    if (!n.is_object() || !n.contains("name") || !n["name"].is_string() || !n.contains("op") || !n["op"].is_string())
      throw FormatError(ctx + ": a node without name or op");
    std::string name = n["name"].get<std::string>();
    json attr = json::object();
    if (n.contains("attr")) {
      if (!n["attr"].is_object()) throw FormatError(ctx + ": node '" + name + "': attr is not an object");
      for (auto it = n["attr"].begin(); it != n["attr"].end(); ++it) {
        json v = decode_attr(it.value(), ctx + ": node '" + name + "' attribute " + it.key());
        if (!v.is_null()) attr[it.key()] = v;
      }
    }
    json inputs = json::array();
    if (n.contains("input")) {
      if (!n["input"].is_array()) throw FormatError(ctx + ": node '" + name + "': input is not a list");
      inputs = n["input"];
    }
    std::string op = n["op"].get<std::string>();
    if (op == "Placeholder") {
      if (!r.input.empty()) throw FormatError(ctx + ": more than one input (Placeholder) node");
      r.input = name;
    }
    nodes.push_back({{"name", name}, {"op", op}, {"inputs", inputs}, {"attr", attr}});
  }
  if (r.input.empty()) throw FormatError(ctx + ": no input (Placeholder) node");
  r.graph = nn::graph_from_json(nodes, std::move(weights), ctx);
  return r;
}
}  // namespace

namespace {

// Builds face-api's faceRecognitionNet over its named weights.
class DlibBuilder {
 public:
  DlibBuilder(std::map<std::string, torch::Tensor> w, std::string ctx) : w_(std::move(w)), ctx_(std::move(ctx)) {}

  nn::Graph build() {
    add({"input", "Placeholder", {}, {{"shape", {-1, 150, 150, 3}}}});
    std::string x = conv_layer("conv32_down", "input", 2, "VALID", true);
    x = node("MaxPool", {x}, {{"ksize", {1, 3, 3, 1}}, {"strides", {1, 2, 2, 1}}, {"padding", "VALID"}});
    std::int64_t size = (150 - 7) / 2 + 1;  // 72
    size = (size - 3) / 2 + 1;               // 35
    std::int64_t ch = 32;
    for (const char* b : {"conv32_1", "conv32_2", "conv32_3"}) x = residual(b, x);
    x = residual_down("conv64_down", x, size, ch, 64);
    for (const char* b : {"conv64_1", "conv64_2", "conv64_3"}) x = residual(b, x);
    x = residual_down("conv128_down", x, size, ch, 128);
    for (const char* b : {"conv128_1", "conv128_2"}) x = residual(b, x);
    x = residual_down("conv256_down", x, size, ch, 256);
    for (const char* b : {"conv256_1", "conv256_2"}) x = residual(b, x);
    x = residual_down("conv256_down_out", x, size, ch, 256);
    std::string axes = constant("global_avg/axes", torch::tensor(std::vector<std::int64_t>{1, 2}, at::kLong));
    x = node("Mean", {x, axes}, {{"keep_dims", false}});
    std::string fc = weight("fc", {ch, 128});
    add({"descriptor", "MatMul", {x, fc}, json::object()});
    for (const auto& [name, t] : w_)
      if (!used_.count(name)) throw FormatError(ctx_ + ": weight '" + name + "' is not part of the dlib ResNet architecture");
    nn::Graph g;
    g.nodes = std::move(nodes_);
    g.consts = std::move(consts_);
    return g;
  }

 private:
  void add(nn::Node n) { nodes_.push_back(std::move(n)); }
  std::string node(const std::string& op, std::vector<std::string> in, json attr = json::object()) {
    std::string name = op + "_" + std::to_string(counter_++);
    add({name, op, std::move(in), std::move(attr)});
    return name;
  }
  std::string constant(const std::string& name, torch::Tensor t) {
    add({name, "Const", {}, json::object()});
    consts_[name] = t;
    return name;
  }
  std::string weight(const std::string& name, const std::vector<std::int64_t>& shape) {
    auto it = w_.find(name);
    if (it == w_.end()) throw FormatError(ctx_ + ": weight '" + name + "' is missing");
    if (it->second.sizes().vec() != shape)
      throw FormatError(ctx_ + ": weight '" + name + "' has shape " + shape_string(Shape(it->second.sizes().begin(), it->second.sizes().end())) +
                        ", expected " + shape_string(Shape(shape.begin(), shape.end())));
    used_.insert(name);
    return constant(name, it->second.to(at::kFloat));
  }
  // conv + bias, then dlib's affine layer (x * weights + biases), then ReLU
  std::string conv_layer(const std::string& name, const std::string& x, int stride, const std::string& padding, bool relu) {
    auto f = w_.find(name + "/conv/filters");
    if (f == w_.end() || f->second.dim() != 4) throw FormatError(ctx_ + ": weight '" + name + "/conv/filters' is missing or not rank 4");
    auto s = f->second.sizes().vec();
    std::int64_t cout = s[3];
    std::string y = node("Conv2D", {x, weight(name + "/conv/filters", s)},
                         {{"strides", {1, stride, stride, 1}}, {"padding", padding}, {"dilations", {1, 1, 1, 1}}});
    y = node("BiasAdd", {y, weight(name + "/conv/bias", {cout})});
    y = node("Mul", {y, weight(name + "/scale/weights", {cout})});
    y = node("Add", {y, weight(name + "/scale/biases", {cout})});
    return relu ? node("Relu", {y}) : y;
  }
  std::string residual(const std::string& b, const std::string& x) {
    std::string y = conv_layer(b + "/conv1", x, 1, "SAME", true);
    y = conv_layer(b + "/conv2", y, 1, "SAME", false);
    return node("Relu", {node("AddV2", {y, x})});
  }
  // conv1 stride 2 VALID; shortcut: 2x2/2 average pool, zero channels appended
  // when the width grows; the conv branch padded by one row and column at the
  // bottom/right when the pool is larger (face-api's residualDown).
  std::string residual_down(const std::string& b, const std::string& x, std::int64_t& size, std::int64_t& ch, std::int64_t out_ch) {
    std::string y = conv_layer(b + "/conv1", x, 2, "VALID", true);
    y = conv_layer(b + "/conv2", y, 1, "SAME", false);
    std::int64_t conv_size = (size - 3) / 2 + 1, pool_size = (size - 2) / 2 + 1;
    std::string pooled = node("AvgPool", {x}, {{"ksize", {1, 2, 2, 1}}, {"strides", {1, 2, 2, 1}}, {"padding", "VALID"}});
    if (out_ch != ch) {
      auto p = torch::tensor(std::vector<std::int64_t>{0, 0, 0, 0, 0, 0, 0, out_ch - ch}, at::kLong).reshape({4, 2});
      pooled = node("Pad", {pooled, constant(b + "/shortcut_channels", p)});
    }
    if (conv_size != pool_size) {
      if (pool_size - conv_size != 1) throw FormatError(ctx_ + ": unexpected sizes in " + b);
      auto p = torch::tensor(std::vector<std::int64_t>{0, 0, 0, 1, 0, 1, 0, 0}, at::kLong).reshape({4, 2});
      y = node("Pad", {y, constant(b + "/adjust_shape", p)});
    }
    size = pool_size;
    ch = out_ch;
    return node("Relu", {node("AddV2", {y, pooled})});
  }

  std::map<std::string, torch::Tensor> w_;
  std::string ctx_;
  std::vector<nn::Node> nodes_;
  std::map<std::string, torch::Tensor> consts_;
  std::set<std::string> used_;
  int counter_ = 0;
};

}  // namespace

Imported load_dlib_resnet(const std::string& manifest_json, const Limits& lim) {
  std::vector<unsigned char> bytes;
  json m = read_json(manifest_json, lim, &bytes);
  std::string dir = fs::path(manifest_json).parent_path().string();
  if (dir.empty()) dir = ".";
  Imported r;
  r.info = {{"format", "face-api weights manifest (dlib ResNet-29 architecture built by hfr)"}, {"files", json::array()}};
  r.info["files"].push_back({{"file", fs::path(manifest_json).filename().string()}, {"bytes", bytes.size()},
                             {"sha256", sha256_hex(bytes.data(), bytes.size())}});
  std::map<std::string, torch::Tensor> w;
  try {
    w = load_weights(m, dir, manifest_json, lim, &r.info);
  } catch (const json::exception& e) {
    throw FormatError(manifest_json + ": unexpected JSON content: " + e.what());
  }
  r.graph = DlibBuilder(std::move(w), manifest_json).build();
  r.input = "input";
  return r;
}

}  // namespace hfr::tfjs
