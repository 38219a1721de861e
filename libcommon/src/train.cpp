#include "hfr/train.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <future>
#include <map>
#include <optional>
#include <random>
#include <set>

#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include "hfr/backbones.hpp"
#include "hfr/cli.hpp"
#include "hfr/crops.hpp"
#include "hfr/distributed.hpp"
#include "hfr/error.hpp"
#include "hfr/face.hpp"
#include "hfr/hash.hpp"
#include "hfr/image.hpp"
#include "hfr/inputs.hpp"
#include "hfr/io.hpp"
#include "hfr/log.hpp"
#include "hfr/losses.hpp"
#include "hfr/metrics.hpp"
#include "hfr/mixed_precision.hpp"
#include "hfr/model.hpp"
#include "hfr/parallel.hpp"
#include "hfr/progress.hpp"
#include "hfr/records.hpp"
#include "hfr/tensor_torch.hpp"
#include "hfr/tensorfile.hpp"
#include "hfr/version.hpp"

namespace hfr::train {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) { g_signal = sig; }

// ---- data ---------------------------------------------------------------------

struct Sample {
  std::string path, subject, where;
  int modality = 0;  // index in --modalities: 0 the gallery modality, 1.. the probe modalities
  bool has_landmarks = false;
  face::Points5 landmarks{};  // OpenCV pixel coordinates
};

struct Dataset {
  std::vector<Sample> samples;
  std::vector<std::string> subjects;                       // sorted; label = index
  std::vector<std::vector<std::vector<std::size_t>>> by_subject;  // sample indexes per subject and modality
  std::vector<int> paired;                                 // subjects with every modality
};

std::vector<std::string> split_modalities(const std::string& s) {
  const std::vector<std::string> mods = cli::split_list(s, true);
  if (mods.size() < 2 || mods.size() > 16 || std::any_of(mods.begin(), mods.end(), [](const std::string& m) { return m.empty(); }))
    throw UsageError("--modalities expects GALLERY,PROBE[,PROBE...] (2 to 16 names, e.g. VIS,NIR), got '" + s + "'");
  for (std::size_t i = 0; i < mods.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (mods[i] == mods[j]) throw UsageError("--modalities: " + mods[i] + " is named twice");
  return mods;
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (const auto& x : v) out += (out.empty() ? "" : sep) + x;
  return out;
}

Dataset load_dataset(const std::vector<std::string>& inputs, const std::vector<std::string>& mods, const std::string& what) {
  Dataset d;
  std::map<std::string, std::uint64_t> other_modalities;
  std::uint64_t failed = 0;
  for (const auto& in_path : inputs) {
    auto in = io::open_input(in_path);
    const std::string base = hfr::inputs::records_folder(in_path);
    RecordReader rr(*in);
    Record r;
    std::string err;
    while (rr.next(r, &err)) {
      const std::string where = rr.where();
      if (r.is_null()) throw FormatError(err);
      if (!r.is_object()) throw FormatError(where + ": not a JSON object");
      if (r.contains("error")) {
        ++failed;
        continue;
      }
      Sample s;
      s.where = where;
      if (!r.contains("path") || !r["path"].is_string()) throw FormatError(where + ": a " + what + " record without a \"path\"");
      const std::string p = r["path"].get<std::string>();
      s.path = hfr::inputs::resolve_ref(p, base);
      s.subject = hfr::inputs::field_text(r, "subject");
      if (s.subject.empty())
        throw FormatError(where + ": a " + what + " record without a \"subject\" (hfr-train needs identities)");
      if (!r.contains("modality") || !r["modality"].is_string())
        throw FormatError(where + ": a " + what + " record without a \"modality\" (e.g. \"VIS\", \"NIR\")");
      const std::string m = r["modality"].get<std::string>();
      const auto known = std::find(mods.begin(), mods.end(), m);
      if (known == mods.end()) {
        ++other_modalities[m];
        continue;
      }
      s.modality = static_cast<int>(known - mods.begin());
      if (r.contains("landmarks") && r["landmarks"].is_array() && r["landmarks"].size() == 5) {
        bool ok = true;
        for (int k = 0; k < 5; ++k) {
          const auto& pt = r["landmarks"][static_cast<std::size_t>(k)];
          if (!pt.is_array() || pt.size() != 2 || !pt[0].is_number() || !pt[1].is_number()) {
            ok = false;
            break;
          }
          // records put pixel centres at +0.5; OpenCV at integers
          s.landmarks[static_cast<std::size_t>(k)] = {pt[0].get<double>() - 0.5, pt[1].get<double>() - 0.5};
          if (!std::isfinite(s.landmarks[static_cast<std::size_t>(k)].x) || !std::isfinite(s.landmarks[static_cast<std::size_t>(k)].y)) ok = false;
        }
        s.has_landmarks = ok;
      }
      if (!fs::exists(s.path)) throw Error(where + ": image " + s.path + " does not exist");
      d.samples.push_back(std::move(s));
    }
  }
  for (const auto& [m, n] : other_modalities)
    log::notice(std::to_string(n) + " " + what + " records of modality \"" + m + "\" not used (--modalities " + join(mods, ",") + ")");
  if (failed) log::notice(std::to_string(failed) + " " + what + " records with an error skipped");
  std::set<std::string> subj;
  for (const auto& s : d.samples) subj.insert(s.subject);
  d.subjects.assign(subj.begin(), subj.end());
  std::map<std::string, int> label;
  for (std::size_t i = 0; i < d.subjects.size(); ++i) label[d.subjects[i]] = static_cast<int>(i);
  d.by_subject.assign(d.subjects.size(), std::vector<std::vector<std::size_t>>(mods.size()));
  for (std::size_t i = 0; i < d.samples.size(); ++i)
    d.by_subject[static_cast<std::size_t>(label[d.samples[i].subject])][static_cast<std::size_t>(d.samples[i].modality)].push_back(i);
  std::uint64_t one_sided = 0;
  for (std::size_t k = 0; k < d.by_subject.size(); ++k) {
    if (std::all_of(d.by_subject[k].begin(), d.by_subject[k].end(), [](const auto& v) { return !v.empty(); }))
      d.paired.push_back(static_cast<int>(k));
    else
      ++one_sided;
  }
  if (one_sided)
    log::warn(std::to_string(one_sided) + " of " + std::to_string(d.subjects.size()) + " " + what + " subjects lack images of " +
              (mods.size() == 2 ? "one modality" : "some of the modalities") +
              ": they are classes of the margin loss, but batches (which need " + (mods.size() == 2 ? "both" : "every one") +
              ") never draw them");
  return d;
}

// One batch: K subjects x P images per modality; rows [m KP, (m+1) KP) of
// modality m, row m KP + k P + p of every modality subject k.
struct Batch {
  std::vector<std::size_t> samples;
  std::vector<bool> flips;
  std::vector<std::int64_t> labels;
};

Batch draw_batch(const Dataset& d, int K, int P, std::uint64_t seed, std::int64_t step, bool flip) {
  std::mt19937_64 rng(splitmix64(seed ^ splitmix64(static_cast<std::uint64_t>(step) + 1)));
  std::vector<int> ids = d.paired;
  std::shuffle(ids.begin(), ids.end(), rng);
  if (static_cast<int>(ids.size()) > K) ids.resize(static_cast<std::size_t>(K));
  Batch b;
  const std::size_t M = d.by_subject.empty() ? 0 : d.by_subject[0].size();
  b.samples.resize(M * ids.size() * static_cast<std::size_t>(P));
  b.labels.resize(b.samples.size());
  b.flips.resize(b.samples.size());
  const std::size_t half = ids.size() * static_cast<std::size_t>(P);
  for (std::size_t m = 0; m < M; ++m)
    for (std::size_t k = 0; k < ids.size(); ++k) {
      const auto& pool = d.by_subject[static_cast<std::size_t>(ids[k])][m];
      std::vector<std::size_t> pick = pool;
      std::shuffle(pick.begin(), pick.end(), rng);
      for (int p = 0; p < P; ++p) {
        const std::size_t row = m * half + k * static_cast<std::size_t>(P) + static_cast<std::size_t>(p);
        b.samples[row] = pick[static_cast<std::size_t>(p) % pick.size()];  // with replacement when fewer than P
        b.labels[row] = ids[k];
        b.flips[row] = flip && (rng() & 1);
      }
    }
  return b;
}

// This rank's share of a global batch: subjects [rank*n/W, (rank+1)*n/W) of
// its n, with their rows of every one of the M modalities (the layout stays
// K_local x P per modality). `rows` receives each kept row's index in the global batch.
Batch local_share(const Batch& b, std::size_t M, int P, int rank, int world, std::vector<std::size_t>& rows) {
  const std::size_t n = b.samples.size() / M / static_cast<std::size_t>(P);
  const std::size_t k0 = n * static_cast<std::size_t>(rank) / static_cast<std::size_t>(world);
  const std::size_t k1 = n * static_cast<std::size_t>(rank + 1) / static_cast<std::size_t>(world);
  Batch out;
  rows.clear();
  for (std::size_t m = 0; m < M; ++m)
    for (std::size_t k = k0; k < k1; ++k)
      for (std::size_t p = 0; p < static_cast<std::size_t>(P); ++p) {
        const std::size_t row = m * n * static_cast<std::size_t>(P) + k * static_cast<std::size_t>(P) + p;
        rows.push_back(row);
        out.samples.push_back(b.samples[row]);
        out.labels.push_back(b.labels[row]);
        out.flips.push_back(b.flips[row]);
      }
  return out;
}

cv::Mat load_crop(const Sample& s, const nn::Preprocess& pre) {
  cv::Mat img = read_image(s.path, ColorMode::rgb);
  if (s.has_landmarks && !pre.crop.empty())
    return face::align_face(img, s.landmarks, face::face_template(pre.crop), pre.size, face::Border::replicate).image;
  if (img.cols == pre.size && img.rows == pre.size) return img;
  cv::Mat out;
  cv::resize(img, out, cv::Size(pre.size, pre.size), 0, 0, img.cols > pre.size ? cv::INTER_AREA : cv::INTER_LINEAR);
  return out;
}

// Training-time augmentation of an aligned crop, every draw from `seed`
// (derived from --seed, the step and the row, so resumed runs see the same
// images): a random similarity warp (shift, scale, rotation), brightness and
// contrast, Gaussian blur, and down- then re-up-sampling to a low resolution.
void augment(cv::Mat& img, const Augment& a, std::uint64_t seed) {
  if (!a.any()) return;
  std::mt19937_64 rng(seed);
  auto uni = [&](double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); };
  const double n = img.cols;
  if (a.jitter > 0) {
    const double dx = uni(-a.jitter, a.jitter), dy = uni(-a.jitter, a.jitter);
    const double sc = 1 + uni(-a.jitter, a.jitter) / n * 2, rot = uni(-a.jitter, a.jitter) * 90 / n;  // +-j px at the border
    cv::Mat m = cv::getRotationMatrix2D(cv::Point2f(static_cast<float>(n / 2), static_cast<float>(img.rows / 2.0)), rot, sc);
    m.at<double>(0, 2) += dx;
    m.at<double>(1, 2) += dy;
    cv::Mat out;
    cv::warpAffine(img, out, m, img.size(), cv::INTER_LINEAR, cv::BORDER_REPLICATE);
    img = out;
  }
  if (a.color > 0) {
    const double gain = uni(1 - a.color, 1 + a.color), contrast = uni(1 - a.color, 1 + a.color);
    const cv::Scalar mean = cv::mean(img);
    double m = 0;
    for (int c = 0; c < img.channels(); ++c) m += mean[c] / img.channels();
    img.convertTo(img, -1, gain * contrast, gain * (1 - contrast) * m);
  }
  if (a.blur > 0 && uni(0, 1) < a.blur) {
    const double sigma = uni(0.5, 1.5);
    cv::GaussianBlur(img, img, cv::Size(0, 0), sigma, sigma, cv::BORDER_REPLICATE);
  }
  if (a.low_res > 0 && uni(0, 1) < a.low_res) {
    const int side = std::clamp(static_cast<int>(std::lround(uni(a.low_res_min, n))), 4, img.cols);
    cv::Mat small, back;
    cv::resize(img, small, cv::Size(side, std::max(4, static_cast<int>(std::lround(side * img.rows / n)))), 0, 0, cv::INTER_AREA);
    cv::resize(small, back, img.size(), 0, 0, cv::INTER_LINEAR);
    img = back;
  }
}

torch::Tensor load_input(const Dataset& d, const std::vector<std::size_t>& idx, const std::vector<bool>& flips,
                         const nn::Preprocess& pre, int threads, const Augment& aug = {},
                         const std::vector<std::uint64_t>& aug_seeds = {}) {
  std::vector<cv::Mat> crops(idx.size());
  parallel_for(idx.size(), threads, [&](std::size_t i) {
    crops[i] = load_crop(d.samples[idx[i]], pre);
    if (i < aug_seeds.size()) augment(crops[i], aug, aug_seeds[i]);
  });
  std::vector<const cv::Mat*> ptrs;
  for (const auto& c : crops) ptrs.push_back(&c);
  return nn::crops_to_input(ptrs, pre, flips);
}

// ---- validation -----------------------------------------------------------------

struct Validation {
  double rank1 = 0, tar_1e2 = 0, tar_1e3 = 0;
  std::size_t probes = 0, gallery = 0;
};

torch::Tensor embed_all(nn::Program& prog, const Dataset& d, const std::vector<std::size_t>& idx, const nn::Preprocess& pre,
                        int threads) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> out;
  constexpr std::size_t kChunk = 32;
  for (std::size_t b = 0; b < idx.size(); b += kChunk) {
    std::vector<std::size_t> part(idx.begin() + static_cast<std::ptrdiff_t>(b),
                                  idx.begin() + static_cast<std::ptrdiff_t>(std::min(idx.size(), b + kChunk)));
    out.push_back(prog.run(load_input(d, part, {}, pre, threads).to(prog.device()))[0]);
  }
  return torch::nn::functional::normalize(torch::cat(out), torch::nn::functional::NormalizeFuncOptions().dim(1));
}

Validation validate(nn::Program& prog, const Dataset& v, const nn::Preprocess& pre, int threads) {
  std::vector<std::size_t> gallery, probes;
  for (std::size_t i = 0; i < v.samples.size(); ++i) (v.samples[i].modality == 0 ? gallery : probes).push_back(i);
  Validation r;
  r.gallery = gallery.size();
  r.probes = probes.size();
  if (gallery.empty() || probes.empty()) return r;
  const torch::Tensor G = embed_all(prog, v, gallery, pre, threads), Pr = embed_all(prog, v, probes, pre, threads);
  const torch::Tensor S = torch::matmul(Pr, G.t()).to(torch::kCPU).contiguous();
  const float* s = S.data_ptr<float>();
  std::vector<double> genuine, impostor;
  std::size_t hits = 0, enrolled = 0;
  for (std::size_t p = 0; p < probes.size(); ++p) {
    const std::string& subj = v.samples[probes[p]].subject;
    double best = -1e30, best_mated = -1e30;
    bool has_mate = false;
    for (std::size_t g = 0; g < gallery.size(); ++g) {
      const double sc = s[p * gallery.size() + g];
      const bool mated = v.samples[gallery[g]].subject == subj;
      (mated ? genuine : impostor).push_back(sc);
      if (mated) has_mate = true, best_mated = std::max(best_mated, sc);
      else best = std::max(best, sc);
    }
    if (has_mate) {
      ++enrolled;
      if (best_mated > best) ++hits;
    }
  }
  r.rank1 = enrolled ? double(hits) / enrolled : 0;
  if (!genuine.empty() && !impostor.empty()) {
    metrics::Verification ver(genuine, impostor);
    r.tar_1e2 = ver.tar_at_far(1e-2).tar;
    r.tar_1e3 = ver.tar_at_far(1e-3).tar;
  }
  return r;
}

// ---- checkpoints -----------------------------------------------------------------

using Named = std::vector<std::pair<std::string, torch::Tensor>>;

// The optimizer's per-parameter state as named tensors, in parameter order
// (backbone then head): SGD momentum buffers; AdamW moments and step counts.
Named optimizer_state(torch::optim::Optimizer& opt) {
  Named out;
  std::size_t k = 0;
  for (auto& group : opt.param_groups())
    for (auto& p : group.params()) {
      auto it = opt.state().find(c10::guts::to_string(p.unsafeGetTensorImpl()));
      const std::string id = std::to_string(k++);
      if (it == opt.state().end()) continue;
      if (auto* sgd = dynamic_cast<const torch::optim::SGDParamState*>(it->second.get())) {
        if (sgd->momentum_buffer().defined()) out.push_back({"momentum/" + id, sgd->momentum_buffer()});
      } else if (auto* aw = dynamic_cast<const torch::optim::AdamWParamState*>(it->second.get())) {
        out.push_back({"adamw_exp_avg/" + id, aw->exp_avg()});
        out.push_back({"adamw_exp_avg_sq/" + id, aw->exp_avg_sq()});
        out.push_back({"adamw_step/" + id, torch::full({1}, static_cast<double>(aw->step()))});
      }
    }
  return out;
}

void save_state(const std::string& path, std::int64_t step, const Named& params, const Named& buffers,
                const torch::Tensor& head, torch::optim::Optimizer& opt, const json& meta_extra, const torch::Tensor& ui_centre) {
  auto out = io::open_output(path, {io::Content::binary, true});
  TensorWriter w(*out);
  auto put = [&](const std::string& name, const torch::Tensor& t) {
    const torch::Tensor c = t.detach().to(torch::kCPU).to(torch::kFloat).contiguous();
    Shape shape(c.sizes().begin(), c.sizes().end());
    w.write(name, DType::f32, shape, c.data_ptr<float>());
  };
  for (const auto& [name, t] : params) put("param/" + name, t);
  for (const auto& [name, t] : buffers) put("buffer/" + name, t);
  put("head", head);
  if (ui_centre.defined()) put("ui_centre", ui_centre);
  for (const auto& [name, t] : optimizer_state(opt)) put(name, t);
  json meta = {{"format", "hfr-train-state/1"}, {"step", step}, {"hfr_version", kVersion}};
  for (auto it = meta_extra.begin(); it != meta_extra.end(); ++it) meta[it.key()] = it.value();
  w.set_metadata(meta);
  w.close();
  out->commit();
}

}  // namespace

int run(const Options& o) {
  if (o.inputs.empty()) throw UsageError("no training records (from hfr-render, or any records with path, subject, modality)");
  if (o.output.empty()) throw UsageError("-o/--output MODEL.hft (the fine-tuned model file) is required");
  if (o.steps < 1) throw UsageError("--steps must be >= 1");
  if (o.ids_per_batch < 2) throw UsageError("--ids must be >= 2 (ID-MMD compares identity centres)");
  if (o.per_modality < 1) throw UsageError("--per-modality must be >= 1");
  if (o.loss != "cosface" && o.loss != "arcface") throw UsageError("--loss must be cosface or arcface");
  const auto mods = split_modalities(o.modalities);
  torch::set_num_threads(std::max(1, o.threads));
  torch::manual_seed(o.seed);

  // Data parallel: every rank draws the same global batch and trains on its
  // share of the subjects; gradients (and batch-norm statistics) are averaged
  // across ranks before each step, so the weights stay identical. Rank 0
  // writes the model, state and metrics.
  const dist::Env env = dist::env_from_environment();
  const int W = env.world_size, rank = env.rank;
  const bool root = rank == 0;
  if (!root) Progress::set_mode(ProgressMode::never);
  // the device: "cuda" in a data-parallel run is each process's own GPU (LOCAL_RANK)
  const torch::Device dev =
      torch_device(o.device == "cuda" && env.distributed() ? "cuda:" + std::to_string(env.local_rank) : o.device);
  dist::Group group;
  if (env.distributed()) {
    group = dist::Group(env, std::chrono::milliseconds(static_cast<std::int64_t>(o.dist_timeout * 1000)), dev);
    if (root)
      log::notice("data-parallel training on " + std::to_string(W) + " processes (" + group.backend() + ", rendezvous " + env.master_addr + ":" +
                  std::to_string(env.master_port) + ")");
  }
  if (!root && log::level() > log::Level::quiet) log::set_level(log::Level::quiet);  // rank 0 reports
  const amp::Precision precision = amp::parse_precision(o.precision);
  amp::require_supported(precision, dev);  // before any work
  if (o.layout != "auto" && o.layout != "channels-last" && o.layout != "nchw")
    throw UsageError("--layout: " + o.layout + " is not auto, channels-last or nchw");
  amp::LossScaler scaler(precision == amp::Precision::fp16);
  if (root && (dev.is_cuda() || precision != amp::Precision::fp32))
    log::notice("training on " + dev.str() + " in " + amp::precision_name(precision));

  const std::size_t M = mods.size();
  const Dataset data = load_dataset(o.inputs, mods, "training");
  if (data.paired.size() < 2)
    throw Error("the training records have " + std::to_string(data.paired.size()) + " subjects with " +
                (M == 2 ? "both " + mods[0] + " and " + mods[1] : "each of " + join(mods, ", ")) +
                " images; at least 2 are needed");
  const std::size_t batch_ids = std::min<std::size_t>(static_cast<std::size_t>(o.ids_per_batch), data.paired.size());
  if (batch_ids % static_cast<std::size_t>(W) != 0)
    throw UsageError("a batch of " + std::to_string(batch_ids) + " subjects (--ids " + std::to_string(o.ids_per_batch) + ", " +
                     std::to_string(data.paired.size()) + " with every modality) cannot be split evenly over WORLD_SIZE=" +
                     std::to_string(W) + " processes");
  Dataset val;
  if (!o.validation.empty()) val = load_dataset({o.validation}, mods, "validation");

  // a backbone name: a new network, initialised from the seed (trained from scratch)
  const bool from_scratch = nn::is_backbone(o.model) && !fs::exists(o.model);
  nn::Model model = from_scratch ? nn::build_backbone(o.model, o.seed) : nn::load_model(o.model);
  if (model.task != "embedding" || !model.outputs.count("embedding"))
    throw UsageError(o.model + " is not an embedding model (hfr-embed --list-models)");
  // switch style modulation (methods.md §4): blocks inserted into the
  // network (or already in it), trained with the rest of the network frozen;
  // the teacher is a frozen copy of the starting network
  const bool use_ssm = o.ssm_experts > 0 || nn::has_switch_modulation(model);
  std::optional<nn::Program> teacher;
  if (use_ssm && o.ssm_teacher > 0) {
    teacher = nn::compile(model, {"embedding"});
    teacher->to(dev);
  }
  json ssm_where = json::array();
  if (o.ssm_experts > 0 && !nn::has_switch_modulation(model)) {
    const std::vector<std::string> at = o.ssm_at.empty() ? nn::default_modulation_points(model, o.ssm_blocks) : o.ssm_at;
    nn::add_switch_modulation(model, o.ssm_experts, at, o.seed);
    for (const auto& x : at) ssm_where.push_back(x);
    log::notice("switch style modulation: " + std::to_string(at.size()) + " blocks of " + std::to_string(o.ssm_experts) +
                " experts after " + join(at, ", "));
  } else if (use_ssm) {
    const int have = model.provenance.contains("switch_modulation") ? model.provenance["switch_modulation"].value("experts", 0) : 0;
    if (o.ssm_experts > 0 && have != o.ssm_experts)
      throw UsageError(o.model + " already has switch style modulation blocks of " + std::to_string(have) + " experts, not " +
                       std::to_string(o.ssm_experts));
    if (!o.ssm_at.empty()) throw UsageError(o.model + " already has switch style modulation blocks: --ssm-at cannot move them");
  }
  const std::vector<std::string> routers = nn::router_roles(model);
  if (o.ssm_route_hint > 0 && !use_ssm)
    throw UsageError("--ssm-route-hint needs switch style modulation blocks (--ssm E, or a model that has them)");
  // perceptibility attention (methods.md §5): a spatial gate on the last feature map
  if (o.attention && !nn::has_perceptibility_attention(model)) {
    nn::add_perceptibility_attention(model, o.seed);
    log::notice("perceptibility attention on " + model.provenance["perceptibility_attention"]["after"].get<std::string>());
  }
  // the recognisability index (methods.md §5): a quality head on the embedding
  const bool use_ri = o.ri > 0 || o.ri_diversion > 0;
  if (use_ri) nn::add_quality_head(model, o.seed);
  if (!use_ri && nn::has_ui_quality(model))
    log::notice(o.model + ": its UI-distance quality is left out of the output (it needs --ri to follow the new embedding)");
  nn::CompileOptions co;
  co.trainable = true;
  co.channels_last = o.layout == "auto" ? nn::channels_last_trains_faster(model.graph, dev.is_cuda()) : o.layout == "channels-last";
  const std::string layout = co.channels_last ? "channels-last" : "nchw";
  if (root) log::info("convolutions " + layout + " (--layout " + o.layout + ")");
  std::vector<std::string> roles{"embedding"};
  if (use_ri) roles.push_back("ri");
  const std::size_t router_out = roles.size();  // outs[router_out + b]: router b's probabilities
  roles.insert(roles.end(), routers.begin(), routers.end());
  nn::Program prog = nn::compile(model, roles, co);
  prog.to(dev);  // before parameters(): moving makes new leaf tensors
  auto params = prog.parameters();
  const auto buffers = prog.buffers();  // batch-norm running statistics (backbones trained from scratch)
  // backbone: what trains at --lr (with --ssm, the blocks only); the quality
  // head trains from the first step, at --ri-lr
  std::vector<torch::Tensor> backbone, quality_head, frozen;
  for (auto& [name, t] : params) {
    if (name.rfind("quality_", 0) == 0) quality_head.push_back(t);
    else if (use_ssm && name.rfind("ssm_", 0) != 0 && name.rfind("attention_", 0) != 0) frozen.push_back(t.requires_grad_(false));
    else backbone.push_back(t);
  }
  torch::Tensor ui_centre;  // the unrecognisable-identity centre: running mean embedding of crops blurred to 4x4
  // the quality head's parameters, to score the blurred crops too: they are
  // unrecognisable by construction, index 0
  std::vector<torch::Tensor> qh;
  if (use_ri) qh = nn::quality_head_parameters(params, model.dim, o.model);
  const std::int64_t C = static_cast<std::int64_t>(data.subjects.size()), D = model.dim;
  // The new classifier: N(0, 0.01) per weight (insightface's start). Imprinting
  // it with each subject's mean embedding was tried: the margin loss started
  // lower but the held-out NIR-VIS EER came out worse (14.1 % against 9.7 %).
  // (drawn on the CPU whatever the device: the same start on every device)
  torch::Tensor head = (torch::randn({C, D}, torch::TensorOptions().dtype(torch::kFloat)) * 0.01).to(dev);
  head.requires_grad_(true);

  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(backbone);
  groups.emplace_back(std::vector<torch::Tensor>{head});
  if (!quality_head.empty()) groups.emplace_back(quality_head);  // group 2, at --ri-lr
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  if (o.optimizer == "sgd")
    optimizer = std::make_unique<torch::optim::SGD>(groups, torch::optim::SGDOptions(o.lr).momentum(o.momentum).weight_decay(o.weight_decay));
  else if (o.optimizer == "adamw")
    optimizer = std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay));
  else
    throw UsageError("--optimizer must be sgd or adamw");
  torch::optim::Optimizer& opt = *optimizer;

  const std::string state_path = o.state.empty() ? o.output + ".state" : o.state;
  std::int64_t start = 0;
  if (!o.resume.empty()) {
    auto in = io::open_input(o.resume);
    TensorReader r(*in);
    const json meta = r.metadata();
    if (meta.value("format", "") != "hfr-train-state/1") throw FormatError(o.resume + ": not an hfr-train state file");
    if (meta.value("optimizer", std::string("sgd")) != o.optimizer)
      throw Error(o.resume + ": the state was trained with --optimizer " + meta.value("optimizer", std::string("sgd")) +
                  "; resume with the same optimizer");
    if (meta.value("base_checksum", "") != model.checksum)
      throw Error(o.resume + ": the state belongs to another model (" + meta.value("base_model", std::string("?")) +
                  "); start from the same --model");
    torch::NoGradGuard ng;
    for (auto& [name, t] : params) {
      const TensorInfo* info = r.find("param/" + name);
      if (!info) throw Error(o.resume + ": no parameter " + name + " (a state of another architecture)");
      std::vector<float> v = read_floats(r, "param/" + name, o.resume);
      if (static_cast<std::int64_t>(v.size()) != t.numel()) throw Error(o.resume + ": parameter " + name + " has another shape");
      t.copy_(torch::from_blob(v.data(), t.sizes(), torch::kFloat));
    }
    for (const auto& [name, t] : buffers) {
      if (!r.find("buffer/" + name)) throw Error(o.resume + ": no batch-norm statistics " + name + " (a state of another architecture)");
      std::vector<float> v = read_floats(r, "buffer/" + name, o.resume);
      if (static_cast<std::int64_t>(v.size()) != t.numel()) throw Error(o.resume + ": statistics " + name + " have another shape");
      torch::Tensor dst = t;
      dst.copy_(torch::from_blob(v.data(), t.sizes(), torch::kFloat));
    }
    std::vector<float> h = read_floats(r, "head", o.resume);
    if (static_cast<std::int64_t>(h.size()) != head.numel())
      throw Error(o.resume + ": the head has " + std::to_string(h.size() / std::max<std::int64_t>(D, 1)) +
                  " classes; the training records have " + std::to_string(C) + " subjects");
    head.copy_(torch::from_blob(h.data(), head.sizes(), torch::kFloat));
    std::size_t k = 0;
    auto tensor_of = [&](const std::string& name, const torch::Tensor& like) {
      std::vector<float> m = read_floats(r, name, o.resume);
      if (static_cast<std::int64_t>(m.size()) != like.numel()) throw Error(o.resume + ": " + name + " has another shape");
      return torch::from_blob(m.data(), like.sizes(), torch::kFloat).to(like.device(), /*non_blocking=*/false, /*copy=*/true);
    };
    for (auto& group : opt.param_groups())
      for (auto& p : group.params()) {
        const std::string id = std::to_string(k++);
        const std::string key = c10::guts::to_string(p.unsafeGetTensorImpl());
        if (o.optimizer == "sgd" && r.find("momentum/" + id)) {
          auto st = std::make_unique<torch::optim::SGDParamState>();
          st->momentum_buffer(tensor_of("momentum/" + id, p));
          opt.state()[key] = std::move(st);
        } else if (o.optimizer == "adamw" && r.find("adamw_step/" + id)) {
          auto st = std::make_unique<torch::optim::AdamWParamState>();
          st->exp_avg(tensor_of("adamw_exp_avg/" + id, p));
          st->exp_avg_sq(tensor_of("adamw_exp_avg_sq/" + id, p));
          st->step(static_cast<std::int64_t>(read_floats(r, "adamw_step/" + id, o.resume).at(0)));
          opt.state()[key] = std::move(st);
        }
      }
    if (use_ri && r.find("ui_centre")) {
      std::vector<float> u = read_floats(r, "ui_centre", o.resume);
      if (static_cast<std::int64_t>(u.size()) != D) throw Error(o.resume + ": ui_centre has another shape");
      ui_centre = torch::from_blob(u.data(), {D}, torch::kFloat).to(dev, /*non_blocking=*/false, /*copy=*/true);
    }
    if (scaler.enabled() && meta.contains("loss_scale"))
      scaler.restore(meta.value("loss_scale", 65536.0), meta.value("loss_scale_growth_tracker", 0));
    start = meta.value("step", std::int64_t{0});
    log::notice("resuming at step " + std::to_string(start) + " from " + o.resume);
  }
  // every rank starts from rank 0's weights
  std::vector<torch::Tensor> replicated = backbone;
  replicated.insert(replicated.end(), quality_head.begin(), quality_head.end());
  replicated.insert(replicated.end(), frozen.begin(), frozen.end());
  for (const auto& [name, t] : buffers) replicated.push_back(t);
  replicated.push_back(head);
  group.broadcast_from_root(replicated);

  auto metrics_out = o.metrics.empty() || !root ? nullptr : io::open_output(o.metrics);
  std::unique_ptr<RecordWriter> mw = metrics_out ? std::make_unique<RecordWriter>(*metrics_out) : nullptr;
  const json state_meta = {{"base_model", o.model}, {"base_checksum", model.checksum}, {"seed", o.seed},
                           {"subjects", C}, {"modalities", mods}, {"optimizer", o.optimizer}};
  const int K = o.ids_per_batch, P = o.per_modality;
  const double margin = o.margin >= 0 ? o.margin : (o.loss == "cosface" ? 0.40 : 0.50);
  double best_rank1 = -1;
  auto save_model_file = [&](const std::string& path) {
    json details = {{"tool", "hfr-train"}, {"base", o.model}, {"steps", o.steps}, {"loss", o.loss}, {"scale", o.scale},
                          {"margin", margin}, {"idmmd", o.idmmd}, {"contrastive", o.contrastive}, {"lr", o.lr},
                          {"ri", o.ri}, {"ri_diversion", o.ri_diversion}, {"ri_margin", o.ri_margin},
                          {"attention", nn::has_perceptibility_attention(model)},
                          {"optimizer", o.optimizer}, {"from_scratch", from_scratch},
                          {"augment", {{"flip", o.flip}, {"jitter_px", o.augment.jitter}, {"color", o.augment.color},
                                       {"blur", o.augment.blur}, {"low_res", o.augment.low_res}, {"low_res_min_px", o.augment.low_res_min}}},
                          {"modalities", mods}, {"subjects", C}, {"seed", o.seed},
                          {"device", dev.str()}, {"precision", amp::precision_name(precision)},
                          {"layout", layout}};
    if (use_ssm)
      details["switch_modulation"] = {{"experts", model.provenance["switch_modulation"].value("experts", 0)},
                                      {"inserted_after", ssm_where}, {"balance", o.ssm_balance}, {"teacher", o.ssm_teacher},
                                      {"route_hint", o.ssm_route_hint}, {"noise", o.ssm_noise},
                                      {"backbone", "frozen"}};
    Named all;  // float32 on the CPU, whatever the device
    for (const auto& [name, t] : params) all.emplace_back(name, t.detach().to(torch::kCPU));
    for (const auto& [name, t] : buffers) all.emplace_back(name, t.detach().to(torch::kCPU));
    nn::Model out = nn::with_parameters(model, all, details);
    // the quality score hfr-embed writes: the angle to the UI centre (docs/losses.md §6); a centre
    // estimated with an earlier embedding no longer fits
    if (ui_centre.defined()) nn::set_ui_quality(out, ui_centre.detach().to(torch::kCPU));
    else if (nn::has_ui_quality(out)) nn::remove_ui_quality(out);
    nn::save_model(out, path);
  };
  auto checkpoint = [&](std::int64_t step) {
    if (!root) return;
    json meta = state_meta;
    if (scaler.enabled()) meta["loss_scale"] = scaler.scale(), meta["loss_scale_growth_tracker"] = scaler.growth_tracker();
    save_state(state_path, step, params, buffers, head, opt, meta, ui_centre);
    if (val.samples.empty()) save_model_file(o.output);
  };
  auto run_validation = [&](std::int64_t step) {
    if (!root) return;
    const Validation v = validate(prog, val, model.pre, o.threads);
    char buf[256];
    const std::string probes = join(std::vector<std::string>(mods.begin() + 1, mods.end()), "+");
    std::snprintf(buf, sizeof buf, "step %lld: validation %s probes vs %s gallery: Rank-1 %.2f%%, TAR@FAR 1e-2 %.2f%%, 1e-3 %.2f%%",
                  static_cast<long long>(step), probes.c_str(), mods[0].c_str(), 100 * v.rank1, 100 * v.tar_1e2,
                  100 * v.tar_1e3);
    log::notice(buf);
    if (mw) {
      mw->write({{"step", step}, {"validation", {{"rank1", v.rank1}, {"tar_far_1e-2", v.tar_1e2}, {"tar_far_1e-3", v.tar_1e3},
                                                  {"probes", v.probes}, {"gallery", v.gallery}}}});
      mw->flush();
    }
    if (v.rank1 > best_rank1) {
      best_rank1 = v.rank1;
      save_model_file(o.output);
    }
  };

  g_signal = 0;
  auto old_int = std::signal(SIGINT, on_signal);
  auto old_term = std::signal(SIGTERM, on_signal);
  struct Restore {
    decltype(old_int) i, t;
    ~Restore() {
      std::signal(SIGINT, i);
      std::signal(SIGTERM, t);
    }
  } restore{old_int, old_term};

  Progress progress("train", static_cast<std::uint64_t>(o.steps), "steps");
  progress.add(static_cast<std::uint64_t>(start));
  auto prepare = [&](std::int64_t step) {
    std::vector<std::size_t> rows;  // each row's index in the global batch
    Batch b = local_share(draw_batch(data, K, P, o.seed, step, o.flip), M, P, rank, W, rows);
    std::vector<std::uint64_t> aug_seeds;
    if (o.augment.any())  // its own stream: batches are the same with and without augmentation
      for (const std::size_t r : rows)
        aug_seeds.push_back(splitmix64(o.seed ^ splitmix64(0x61756721ULL + static_cast<std::uint64_t>(step) * 1000003ULL + r)));
    torch::Tensor x = load_input(data, b.samples, b.flips, model.pre, o.threads, o.augment, aug_seeds).to(dev);
    return std::make_pair(std::move(b), std::move(x));
  };
  std::vector<torch::Tensor> trained = backbone;  // what the loss scaler unscales
  trained.push_back(head);
  trained.insert(trained.end(), quality_head.begin(), quality_head.end());
  std::future<std::pair<Batch, torch::Tensor>> next = std::async(std::launch::async, prepare, start);
  for (std::int64_t step = start; step < o.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    auto [batch, x] = next.get();
    const double wait_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (step + 1 < o.steps) next = std::async(std::launch::async, prepare, step + 1);
    const bool head_only = step < o.head_steps;
    for (auto& t : backbone) t.requires_grad_(!head_only);
    double lr = o.lr;
    if (o.lr_step > 0) lr *= std::pow(o.lr_decay, static_cast<double>(step / o.lr_step));
    const double decay = o.lr_step > 0 ? std::pow(o.lr_decay, static_cast<double>(step / o.lr_step)) : 1.0;
    opt.param_groups()[0].options().set_lr(lr);
    opt.param_groups()[1].options().set_lr(o.head_lr * decay);
    if (opt.param_groups().size() > 2) opt.param_groups()[2].options().set_lr(o.ri_lr * decay);

    opt.zero_grad();
    auto diverged = [&](const char* what) {
      progress.finish();
      return Error(std::string("the ") + what + " is not finite at step " + std::to_string(step) +
                   " (lower --lr or the loss weights); " +
                   (fs::exists(state_path) ? "the last good checkpoint is " + state_path + " (--resume)"
                                           : std::string("no checkpoint was written")));
    };
    torch::Tensor blurred_emb;
    if (use_ri) {
      // the UI centre: a few of the batch's crops averaged down to 4x4 pixels and back, embedded
      torch::NoGradGuard ng;
      const torch::Tensor xs = x.narrow(0, 0, std::min<std::int64_t>(8, x.size(0)));
      const torch::Tensor blurred = torch::upsample_bilinear2d(torch::adaptive_avg_pool2d(xs, {4, 4}), {xs.size(2), xs.size(3)}, false);
      amp::Autocast ac(precision, dev);
      blurred_emb = prog.run(blurred)[0].to(torch::kFloat);
      const torch::Tensor e = torch::nn::functional::normalize(blurred_emb, torch::nn::functional::NormalizeFuncOptions().dim(1)).mean(0);
      ui_centre = ui_centre.defined() ? 0.9 * ui_centre + 0.1 * e : e;
    }
    if (use_ssm && o.ssm_noise > 0)  // each step (and rank) its own draws: a resumed run draws the same
      prog.set_router_noise(o.ssm_noise, splitmix64(o.seed ^ 0x726f757465ULL ^ (static_cast<std::uint64_t>(step) << 16) ^
                                                    static_cast<std::uint64_t>(rank)));
    std::vector<torch::Tensor> outs;
    {
      amp::Autocast ac(precision, dev);  // the network in --precision; its outputs and the losses in float32
      outs = prog.forward(x);
    }
    for (auto& t : outs) t = t.to(torch::kFloat);
    const torch::Tensor emb = outs[0];
    const bool emb_ok = torch::isfinite(emb).all().item<bool>();
    // fp16: an overflow skips the step (the loss scale backs off) instead of ending the run
    if (!emb_ok && !group.active() && !scaler.enabled()) throw diverged("embedding");
    const torch::Tensor f = torch::nn::functional::normalize(emb, torch::nn::functional::NormalizeFuncOptions().dim(1));
    const torch::Tensor labels = torch::tensor(batch.labels, torch::kLong).to(dev);
    const losses::MarginOptions mo =
        o.loss == "cosface" ? losses::MarginOptions::cosface(o.scale, margin) : losses::MarginOptions::arcface(o.scale, margin);
    torch::Tensor ce = losses::margin_loss(f, labels, head, mo);
    // the gallery modality's rows against each probe modality's (averaged)
    const std::int64_t half = f.size(0) / static_cast<std::int64_t>(M);
    const torch::Tensor fa = f.narrow(0, 0, half);
    const torch::Tensor ids = labels.narrow(0, 0, half);
    torch::Tensor mmd = torch::zeros({}, f.options()), ct = torch::zeros({}, f.options());
    for (std::size_t m = 1; m < M; ++m) {
      const torch::Tensor fb = f.narrow(0, static_cast<std::int64_t>(m) * half, half);
      if (o.idmmd > 0) mmd = mmd + losses::id_mmd(fa, ids, fb, ids) / static_cast<double>(M - 1);
      if (o.contrastive > 0)
        ct = ct + losses::dvg_contrastive(fb, fa, losses::random_derangement(half, splitmix64(o.seed ^ static_cast<std::uint64_t>(step) ^ (static_cast<std::uint64_t>(m - 1) << 40)))) /
                      static_cast<double>(M - 1);
    }
    // switch style modulation: the routers' load balance, the teacher on the gallery rows
    torch::Tensor balance = torch::zeros({}, f.options()), teach = torch::zeros({}, f.options()),
                  hint = torch::zeros({}, f.options());
    if (use_ssm) {
      for (std::size_t b = 0; b < routers.size(); ++b) balance = balance + losses::switch_balance_loss(outs[router_out + b], o.ssm_balance);
      if (o.ssm_route_hint > 0 && !routers.empty()) {
        // the supervised hint: rows of modality m (a block of `half` rows) to route_hint_experts' m-th, averaged over the blocks
        const std::int64_t E = outs[router_out].size(1);
        const torch::Tensor want = losses::route_hint_experts(static_cast<std::int64_t>(M), E).repeat_interleave(half);
        for (std::size_t b = 0; b < routers.size(); ++b)
          hint = hint + losses::routing_hint_loss(outs[router_out + b], want) / static_cast<double>(routers.size());
      }
      if (teacher) {
        torch::Tensor t;
        {
          torch::NoGradGuard ng;
          amp::Autocast ac(precision, dev);
          t = teacher->run(x.narrow(0, 0, half))[0].to(torch::kFloat);
        }
        teach = losses::teacher_student_loss(emb.narrow(0, 0, half), t);
      }
    }
    torch::Tensor ri_loss = torch::zeros({}, f.options()), div = torch::zeros({}, f.options()), ri_t;
    if (use_ri && emb_ok) {
      ri_t = losses::recognisability_index(f, labels, head, ui_centre);
      ri_loss = torch::nn::functional::smooth_l1_loss(torch::cat({outs[1].reshape({-1}), nn::quality_head(blurred_emb, qh)}),
                                                      torch::cat({ri_t, torch::zeros({blurred_emb.size(0)}, ri_t.options())}));
      if (o.ri_diversion > 0) div = losses::index_diversion_loss(f, ri_t, ui_centre, o.ri_margin);
    }
    torch::Tensor total = ce + o.idmmd * mmd + o.contrastive * ct + o.ri * ri_loss + o.ri_diversion * div + balance + o.ssm_teacher * teach +
                          o.ssm_route_hint * hint;
    double loss_v = total.item<double>(), ce_v = ce.item<double>(), mmd_v = mmd.item<double>(), ct_v = ct.item<double>();
    const bool ok = emb_ok && std::isfinite(loss_v);
    if (!ok && !group.active() && !scaler.enabled()) throw diverged("loss");
    if (ok) scaler.scale_loss(total).backward();
    bool found_inf = !ok;  // fp16: skip this step
    bool stop = g_signal != 0;
    if (group.active()) {
      // one collective per step: the gradients, the batch-norm statistics and
      // the status (loss terms, failures, signals) of every rank, summed
      std::vector<torch::Tensor> sync;
      auto add_grad = [&](torch::Tensor& t) {  // a parameter this rank's loss did not reach contributes zeros
        if (!t.grad().defined()) t.mutable_grad() = torch::zeros_like(t);
        sync.push_back(t.grad());
      };
      if (!head_only)
        for (auto& t : backbone) add_grad(t);
      add_grad(head);
      for (auto& t : quality_head) add_grad(t);
      for (const auto& [name, t] : buffers) sync.push_back(t);
      if (ui_centre.defined()) sync.push_back(ui_centre);
      torch::Tensor status = torch::tensor({ok ? loss_v : 0.0, ok ? ce_v : 0.0, ok ? mmd_v : 0.0, ok ? ct_v : 0.0,
                                            ok ? 0.0 : 1.0, stop ? 1.0 : 0.0}, torch::kDouble).to(torch::kFloat);
      sync.push_back(status);
      try {
        group.allreduce_sum(sync);
      } catch (const Error& e) {
        progress.finish();
        throw Error(std::string(e.what()) + " at step " + std::to_string(step) + "; " +
                    (fs::exists(state_path) ? "the last checkpoint is " + state_path + " (--resume)"
                                            : std::string("no checkpoint was written")));
      }
      torch::NoGradGuard ng;
      for (std::size_t i = 0; i + 1 < sync.size(); ++i) sync[i].div_(W);
      const float* st = status.data_ptr<float>();
      if (st[4] > 0 && !scaler.enabled()) throw diverged(ok ? "loss on another rank" : emb_ok ? "loss" : "embedding");
      found_inf = st[4] > 0;
      loss_v = st[0] / W, ce_v = st[1] / W, mmd_v = st[2] / W, ct_v = st[3] / W;
      stop = st[5] > 0;
    }
    if (scaler.enabled()) {
      // the gradients back to their true size before clipping; Inf/NaN in
      // any (the same sums on every rank) skips the step on all ranks
      if (!found_inf && !scaler.unscale(trained)) found_inf = true;
      if (!scaler.update(found_inf))
        throw diverged("loss in fp16 (the loss scale fell below 2^-16: every step overflowed)");
      if (found_inf) log::info("step " + std::to_string(step) + ": Inf/NaN gradients in fp16; step skipped, loss scale now " +
                               std::to_string(scaler.scale()));
    }
    if (o.clip > 0 && !found_inf) {
      std::vector<torch::Tensor> all = backbone;
      // switch style modulation blocks on their own too: the margin loss's
      // gradients on the new classifier would scale theirs to nothing
      if (use_ssm) torch::nn::utils::clip_grad_norm_(all, o.clip), all.clear();
      all.push_back(head);
      torch::nn::utils::clip_grad_norm_(all, o.clip);
      // on its own: the margin loss's large gradients would scale the quality head's to nothing
      if (!quality_head.empty()) torch::nn::utils::clip_grad_norm_(quality_head, o.clip);
    }
    if (!found_inf) opt.step();
    const double step_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    progress.add();
    if (mw && (o.log_every <= 1 || step % o.log_every == 0 || step + 1 == o.steps)) {
      json m = {{"step", step}, {"loss", loss_v}, {"margin_loss", ce_v}, {"idmmd", mmd_v}, {"contrastive", ct_v}, {"lr", lr},
                {"head_lr", o.head_lr * decay}, {"head_only", head_only},
                {"images_per_s", static_cast<double>(x.size(0)) * W / (step_ms / 1000)}, {"loader_wait_ms", wait_ms},
                {"step_ms", step_ms}};
      if (W > 1) m["processes"] = W;
      if (scaler.enabled()) m["loss_scale"] = scaler.scale(), m["skipped"] = found_inf;
      if (use_ssm) {
        // routing decisions: per block and modality, the fraction of this process's rows sent to each expert
        m["ssm_balance"] = balance.item<double>();
        m["ssm_teacher"] = teach.item<double>();
        if (o.ssm_route_hint > 0) m["ssm_route_hint"] = hint.item<double>();
        json routing = json::object();
        for (std::size_t b = 0; b < routers.size(); ++b) {
          const torch::Tensor k = outs[router_out + b].detach().argmax(1);
          const std::int64_t E = outs[router_out + b].size(1);
          json per = json::object();
          for (std::size_t mm = 0; mm < M; ++mm) {
            const torch::Tensor counts = torch::bincount(k.narrow(0, static_cast<std::int64_t>(mm) * half, half), {}, E).to(torch::kDouble);
            std::vector<double> frac(static_cast<std::size_t>(E));
            for (std::int64_t e = 0; e < E; ++e) frac[static_cast<std::size_t>(e)] = counts[e].item<double>() / static_cast<double>(half);
            per[mods[mm]] = frac;
          }
          routing[routers[b]] = per;
        }
        m["routing"] = routing;
      }
      if (use_ri) {
        m["ri_loss"] = ri_loss.item<double>();
        m["index_diversion"] = div.item<double>();
        if (ri_t.defined()) m["ri_mean"] = ri_t.mean().item<double>();
        m["ri_head_mean"] = outs[1].mean().item<double>();
        if (ui_centre.defined()) m["ui_quality_mean"] = nn::ui_quality(f, ui_centre).mean().item<double>();
      }
      mw->write(m);
      mw->flush();
    }
    const bool last = step + 1 == o.steps;
    if (stop) {
      if (next.valid()) next.wait();
      checkpoint(step + 1);
      progress.finish();
      if (root)
        log::warn("interrupted (" + (g_signal ? "signal " + std::to_string(g_signal.load()) : std::string("another rank got a signal")) +
                  ") after step " + std::to_string(step + 1) + "; state saved to " + state_path + " (--resume " + state_path +
                  " continues)");
      return kExitFailure;
    }
    if (o.checkpoint_every > 0 && (step + 1) % o.checkpoint_every == 0 && !last) checkpoint(step + 1);
    if (!val.samples.empty() && o.validate_every > 0 && (step + 1) % o.validate_every == 0 && !last) run_validation(step + 1);
  }
  progress.finish();
  if (group.active()) {
    // the ranks' weights must have stayed bitwise identical
    Sha256 h;
    for (const auto& t : replicated) {
      const torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
      h.update(c.data_ptr(), static_cast<std::size_t>(c.numel()) * c.element_size());
    }
    const auto d = h.digest();
    std::uint64_t mine = 0;
    for (int i = 0; i < 8; ++i) mine = mine << 8 | d[static_cast<std::size_t>(i)];
    const auto all = group.allgather(mine);
    char buf[128];
    std::snprintf(buf, sizeof buf, "rank %d of %d: weights %016llx", rank, W, static_cast<unsigned long long>(mine));
    log::write_line(log::tool() + ": " + buf);
    for (int r = 1; r < W; ++r)
      if (all[static_cast<std::size_t>(r)] != all[0])
        throw Error("the weights of rank " + std::to_string(r) + " differ from rank 0's after training: the ranks diverged");
  }
  checkpoint(o.steps);
  if (!val.samples.empty()) run_validation(o.steps);
  if (metrics_out) metrics_out->commit();
  if (root) log::notice((from_scratch ? "trained " : "fine-tuned ") + o.model + " for " + std::to_string(o.steps) + " steps -> " + o.output);
  return kExitOk;
}

}  // namespace hfr::train
