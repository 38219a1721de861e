#include "hfr/losses.hpp"

#include <cmath>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "hfr/error.hpp"

namespace hfr::losses {
namespace {

constexpr double kNormFloor = 1e-12;

std::string shape_str(const torch::Tensor& t) {
  std::ostringstream os;
  os << "[";
  for (int64_t i = 0; i < t.dim(); ++i) os << (i ? ", " : "") << t.size(i);
  os << "]";
  return os.str();
}

[[noreturn]] void fail(const std::string& where, const std::string& what) { throw Error(where + ": " + what); }

void check_defined(const std::string& where, const char* name, const torch::Tensor& t) {
  if (!t.defined()) fail(where, std::string(name) + " is an undefined tensor");
}

// A finite floating-point matrix [rows, cols]; rows/cols < 0: any.
void check_features(const std::string& where, const char* name, const torch::Tensor& t, int64_t rows = -1,
                    int64_t cols = -1) {
  check_defined(where, name, t);
  if (!t.is_floating_point()) fail(where, std::string(name) + " must be a float tensor");
  if (t.dim() != 2) fail(where, std::string(name) + " must be 2-D [rows, dims], got " + shape_str(t));
  if (rows >= 0 && t.size(0) != rows)
    fail(where, std::string(name) + " has " + std::to_string(t.size(0)) + " rows, expected " + std::to_string(rows));
  if (cols >= 0 && t.size(1) != cols)
    fail(where, std::string(name) + " has " + std::to_string(t.size(1)) + " columns, expected " +
                    std::to_string(cols));
  if (t.size(0) == 0 || t.size(1) == 0) fail(where, std::string(name) + " is empty " + shape_str(t));
  if (!torch::isfinite(t).all().item<bool>()) fail(where, std::string(name) + " contains NaN or Inf");
}

// An integer vector [n]; returned as int64 on the CPU.
torch::Tensor check_index(const std::string& where, const char* name, const torch::Tensor& t, int64_t n) {
  check_defined(where, name, t);
  if (t.is_floating_point() || t.is_complex() || t.scalar_type() == torch::kBool)
    fail(where, std::string(name) + " must be an integer tensor");
  if (t.dim() != 1) fail(where, std::string(name) + " must be 1-D, got " + shape_str(t));
  if (t.size(0) != n)
    fail(where, std::string(name) + " has " + std::to_string(t.size(0)) + " entries, expected " + std::to_string(n));
  return t.to(torch::kCPU, torch::kLong).contiguous();
}

void check_same_device(const std::string& where, const torch::Tensor& a, const char* an, const torch::Tensor& b,
                       const char* bn) {
  if (a.device() != b.device())
    fail(where, std::string(an) + " is on " + a.device().str() + " but " + bn + " on " + b.device().str());
}

torch::Tensor l2_rows(const torch::Tensor& x) {
  return x / x.norm(2, {1}, /*keepdim=*/true).clamp_min(kNormFloor);
}

}  // namespace

// ---- margin heads --------------------------------------------------------------------------------

torch::Tensor margin_logits(const torch::Tensor& features, const torch::Tensor& labels, const torch::Tensor& weight,
                            const MarginOptions& o) {
  const std::string where = o.kind == MarginKind::cosface ? "CosFace" : "ArcFace";
  check_features(where, "features", features);
  check_features(where, "weight", weight, -1, features.size(1));
  check_same_device(where, features, "features", weight, "weight");
  if (features.scalar_type() != weight.scalar_type())
    fail(where, "features and weight must have the same dtype");
  const int64_t B = features.size(0), C = weight.size(0);
  if (C < 2) fail(where, "weight must have at least 2 classes, got " + std::to_string(C));
  torch::Tensor y = check_index(where, "labels", labels, B);
  if (y.min().item<int64_t>() < 0 || y.max().item<int64_t>() >= C)
    fail(where, "labels must lie in [0, " + std::to_string(C) + ")");
  if (!(o.s > 0) || !std::isfinite(o.s)) fail(where, "scale s must be positive");
  if (!std::isfinite(o.m) || o.m < 0) fail(where, "margin m must be finite and >= 0");
  if (o.kind == MarginKind::arcface && o.m >= M_PI / 2) fail(where, "angular margin m must be below pi/2");

  y = y.to(features.device()).unsqueeze(1);                    // [B, 1]
  torch::Tensor cos = torch::mm(l2_rows(features), l2_rows(weight).t());  // [B, C]
  torch::Tensor cos_y = cos.gather(1, y);                       // [B, 1]
  torch::Tensor target;
  if (o.kind == MarginKind::cosface) {
    target = cos_y - o.m;
  } else {
    torch::Tensor sin_y = (1 - cos_y * cos_y).clamp_min(1e-12).sqrt();
    torch::Tensor shifted = cos_y * std::cos(o.m) - sin_y * std::sin(o.m);  // cos(θ + m)
    if (o.easy_margin)
      target = torch::where(cos_y > 0, shifted, cos_y);
    else
      target = torch::where(cos_y > std::cos(M_PI - o.m), shifted, cos_y - o.m * std::sin(o.m));
  }
  torch::Tensor one_hot = torch::zeros_like(cos).scatter_(1, y, 1.0);
  return o.s * (cos + one_hot * (target - cos_y));
}

torch::Tensor margin_loss(const torch::Tensor& features, const torch::Tensor& labels, const torch::Tensor& weight,
                          const MarginOptions& options) {
  torch::Tensor logits = margin_logits(features, labels, weight, options);
  return torch::nn::functional::cross_entropy(logits, labels.to(logits.device(), torch::kLong));
}

MarginHeadImpl::MarginHeadImpl(int64_t in_features, int64_t classes, MarginOptions options, uint64_t seed)
    : options_(options) {
  if (in_features < 1) throw Error("MarginHead: in_features must be >= 1");
  if (classes < 2) throw Error("MarginHead: needs at least 2 classes");
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  double sd = std::sqrt(2.0 / static_cast<double>(classes + in_features));
  torch::Tensor w = torch::empty({classes, in_features}, torch::kFloat32);
  {
    torch::NoGradGuard no_grad;
    w.normal_(0.0, sd, gen);
  }
  weight = register_parameter("weight", w);
}

torch::Tensor MarginHeadImpl::forward(const torch::Tensor& features, const torch::Tensor& labels) {
  return margin_loss(features, labels, weight, options_);
}

torch::Tensor MarginHeadImpl::logits(const torch::Tensor& features, const torch::Tensor& labels) {
  return margin_logits(features, labels, weight, options_);
}

// ---- ID-MMD --------------------------------------------------------------------------------------

PairedCentres paired_centres(const torch::Tensor& f_vis, const torch::Tensor& ids_vis, const torch::Tensor& f_nir,
                             const torch::Tensor& ids_nir, const IdMmdOptions& options) {
  const std::string where = "ID-MMD";
  check_features(where, "f_vis", f_vis);
  check_features(where, "f_nir", f_nir, -1, f_vis.size(1));
  check_same_device(where, f_vis, "f_vis", f_nir, "f_nir");
  if (f_vis.scalar_type() != f_nir.scalar_type()) fail(where, "f_vis and f_nir must have the same dtype");
  torch::Tensor iv = check_index(where, "ids_vis", ids_vis, f_vis.size(0));
  torch::Tensor in = check_index(where, "ids_nir", ids_nir, f_nir.size(0));

  // identity -> (has VIS, has NIR), in ascending order
  std::map<int64_t, std::pair<bool, bool>> seen;
  const int64_t* pv = iv.data_ptr<int64_t>();
  const int64_t* pn = in.data_ptr<int64_t>();
  for (int64_t i = 0; i < iv.size(0); ++i) seen[pv[i]].first = true;
  for (int64_t i = 0; i < in.size(0); ++i) seen[pn[i]].second = true;
  std::map<int64_t, int64_t> slot;
  std::vector<int64_t> ids;
  for (const auto& [id, has] : seen) {
    if (has.first && has.second) {
      slot[id] = static_cast<int64_t>(ids.size());
      ids.push_back(id);
    } else if (options.unpaired == Unpaired::error) {
      fail(where, "identity " + std::to_string(id) + " has " + (has.first ? "VIS" : "NIR") + " rows but no " +
                      (has.first ? "NIR" : "VIS") + " rows");
    }
  }
  const int64_t K = static_cast<int64_t>(ids.size());
  if (K < 2) fail(where, "needs at least 2 identities present in both modalities, got " + std::to_string(K));

  auto centres = [&](const torch::Tensor& f, const int64_t* p, int64_t n) {
    std::vector<int64_t> rows, slots;
    for (int64_t i = 0; i < n; ++i) {
      auto it = slot.find(p[i]);
      if (it == slot.end()) continue;  // unpaired, skipped
      rows.push_back(i);
      slots.push_back(it->second);
    }
    auto opt = torch::TensorOptions().dtype(torch::kLong);
    torch::Tensor r = torch::tensor(rows, opt).to(f.device());
    torch::Tensor s = torch::tensor(slots, opt).to(f.device());
    torch::Tensor x = options.normalize ? l2_rows(f) : f;
    torch::Tensor sum = torch::zeros({K, f.size(1)}, f.options()).index_add(0, s, x.index_select(0, r));
    torch::Tensor count = torch::zeros({K}, f.options()).index_add(0, s, torch::ones({s.size(0)}, f.options()));
    return sum / count.unsqueeze(1);
  };
  PairedCentres out;
  out.ids = torch::tensor(ids, torch::TensorOptions().dtype(torch::kLong));
  out.vis = centres(f_vis, pv, iv.size(0));
  out.nir = centres(f_nir, pn, in.size(0));
  return out;
}

torch::Tensor id_mmd_centres(const torch::Tensor& c_vis, const torch::Tensor& c_nir) {
  const std::string where = "ID-MMD";
  check_features(where, "c_vis", c_vis);
  check_features(where, "c_nir", c_nir, c_vis.size(0), c_vis.size(1));
  check_same_device(where, c_vis, "c_vis", c_nir, "c_nir");
  if (c_vis.scalar_type() != c_nir.scalar_type()) fail(where, "c_vis and c_nir must have the same dtype");
  const int64_t K = c_vis.size(0);
  if (K < 2) fail(where, "needs at least 2 identities, got " + std::to_string(K));

  torch::Tensor z = torch::cat({c_vis, c_nir}, 0);                          // [2K, D]
  torch::Tensor d = (z.unsqueeze(1) - z.unsqueeze(0)).pow(2).sum(2);        // [2K, 2K], exact zeros on the diagonal
  const double n = static_cast<double>(2 * K);
  torch::Tensor sigma0 = (d.detach().sum() / (n * n - n)).clamp_min(1e-12);
  torch::Tensor k = torch::zeros_like(d);
  for (double f : {0.25, 0.5, 1.0, 2.0, 4.0}) k = k + torch::exp(-d / (sigma0 * f));
  using torch::indexing::Slice;
  torch::Tensor xx = k.index({Slice(0, K), Slice(0, K)});
  torch::Tensor yy = k.index({Slice(K, 2 * K), Slice(K, 2 * K)});
  torch::Tensor xy = k.index({Slice(0, K), Slice(K, 2 * K)});
  torch::Tensor yx = k.index({Slice(K, 2 * K), Slice(0, K)});
  return (xx + yy - xy - yx).mean();
}

torch::Tensor id_mmd(const torch::Tensor& f_vis, const torch::Tensor& ids_vis, const torch::Tensor& f_nir,
                     const torch::Tensor& ids_nir, const IdMmdOptions& options) {
  PairedCentres c = paired_centres(f_vis, ids_vis, f_nir, ids_nir, options);
  return id_mmd_centres(c.vis, c.nir);
}

torch::Tensor id_mmd_linear(const torch::Tensor& f_vis, const torch::Tensor& ids_vis, const torch::Tensor& f_nir,
                            const torch::Tensor& ids_nir, const IdMmdOptions& options) {
  PairedCentres c = paired_centres(f_vis, ids_vis, f_nir, ids_nir, options);
  return (c.vis - c.nir).pow(2).sum(1).mean();
}

torch::Tensor contiguous_ids(int64_t K, int64_t P) {
  if (K < 1 || P < 1) throw Error("contiguous_ids: K and P must be >= 1");
  return torch::arange(K, torch::kLong).repeat_interleave(P);
}

// ---- DVG-Face contrastive ------------------------------------------------------------------------

torch::Tensor dvg_contrastive(const torch::Tensor& f_nir, const torch::Tensor& f_vis, const torch::Tensor& perm,
                              double margin, double weight) {
  const std::string where = "DVG contrastive";
  check_features(where, "f_nir", f_nir);
  check_features(where, "f_vis", f_vis, f_nir.size(0), f_nir.size(1));
  check_same_device(where, f_nir, "f_nir", f_vis, "f_vis");
  if (f_nir.scalar_type() != f_vis.scalar_type()) fail(where, "f_nir and f_vis must have the same dtype");
  const int64_t B = f_nir.size(0);
  if (B < 2) fail(where, "needs at least 2 pairs, got " + std::to_string(B));
  torch::Tensor p = check_index(where, "perm", perm, B);
  std::vector<char> hit(static_cast<size_t>(B), 0);
  const int64_t* pp = p.data_ptr<int64_t>();
  for (int64_t i = 0; i < B; ++i) {
    if (pp[i] < 0 || pp[i] >= B || hit[static_cast<size_t>(pp[i])])
      fail(where, "perm is not a permutation of 0.." + std::to_string(B - 1));
    if (pp[i] == i) fail(where, "perm is not a derangement: perm[" + std::to_string(i) + "] = " + std::to_string(i));
    hit[static_cast<size_t>(pp[i])] = 1;
  }
  if (!std::isfinite(margin) || !std::isfinite(weight)) fail(where, "margin and weight must be finite");
  torch::Tensor n = l2_rows(f_nir), v = l2_rows(f_vis);
  torch::Tensor pos = (n * v).sum(1);
  torch::Tensor neg = (n * v.index_select(0, p.to(v.device()))).sum(1);
  return -pos.mean() + weight * torch::relu(neg - margin).mean();
}

torch::Tensor random_derangement(int64_t n, uint64_t seed) {
  if (n < 2) throw Error("random_derangement: n must be >= 2, got " + std::to_string(n));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (;;) {
    torch::Tensor p = torch::randperm(n, gen, torch::TensorOptions().dtype(torch::kLong));
    if (!(p == torch::arange(n, torch::kLong)).any().item<bool>()) return p;
  }
}

// ---- Switch load balancing -----------------------------------------------------------------------

torch::Tensor switch_balance_loss(const torch::Tensor& router_probs, double alpha) {
  const std::string where = "switch balance";
  check_features(where, "router_probs", router_probs);
  if (!std::isfinite(alpha)) fail(where, "alpha must be finite");
  torch::Tensor pd = router_probs.detach();
  if ((pd < 0).any().item<bool>() || ((pd.sum(1) - 1).abs() > 1e-4).any().item<bool>())
    fail(where, "router_probs rows must be probabilities (non-negative, summing to 1); pass softmax(logits)");
  const int64_t N = router_probs.size(1);
  torch::Tensor top = pd.argmax(1);
  torch::Tensor f = torch::zeros({N}, router_probs.options().requires_grad(false))
                        .index_add(0, top, torch::ones({top.size(0)}, router_probs.options()))
                        .div(static_cast<double>(router_probs.size(0)));
  torch::Tensor P = router_probs.mean(0);
  return alpha * static_cast<double>(N) * (f * P).sum();
}

torch::Tensor routing_hint_loss(const torch::Tensor& router_probs, const torch::Tensor& expert) {
  const std::string where = "routing hint";
  check_features(where, "router_probs", router_probs);
  const int64_t B = router_probs.size(0), N = router_probs.size(1);
  torch::Tensor e = check_index(where, "expert", expert, B);
  if (e.min().item<int64_t>() < 0 || e.max().item<int64_t>() >= N)
    fail(where, "expert must lie in [0, " + std::to_string(N) + ")");
  const torch::Tensor p = router_probs.gather(1, e.to(router_probs.device()).unsqueeze(1)).squeeze(1);
  return -p.clamp_min(1e-12).log().mean();
}

torch::Tensor route_hint_experts(std::int64_t modalities, std::int64_t experts) {
  if (modalities < 1 || experts < 1)
    fail("routing hint", "needs at least one modality and one expert (got " + std::to_string(modalities) + " and " +
                             std::to_string(experts) + ")");
  torch::Tensor out = torch::zeros({modalities}, torch::kLong);
  if (experts > 1)
    for (std::int64_t k = 1; k < modalities; ++k) out[k] = 1 + (k - 1) % (experts - 1);
  return out;
}

// ---- teacher-student -----------------------------------------------------------------------------

torch::Tensor teacher_student_loss(const torch::Tensor& student, const torch::Tensor& teacher) {
  const std::string where = "teacher-student";
  check_features(where, "student", student);
  check_features(where, "teacher", teacher, student.size(0), student.size(1));
  check_same_device(where, student, "student", teacher, "teacher");
  if (student.scalar_type() != teacher.scalar_type()) fail(where, "student and teacher must have the same dtype");
  torch::Tensor cos = (l2_rows(student) * l2_rows(teacher.detach())).sum(1);
  return 1 - cos.mean();
}

torch::Tensor recognisability_index(const torch::Tensor& features, const torch::Tensor& labels, const torch::Tensor& weight,
                                    const torch::Tensor& ui_centre) {
  const std::string where = "recognisability index";
  check_features(where, "features", features);
  check_features(where, "weight", weight, -1, features.size(1));
  check_defined(where, "ui_centre", ui_centre);
  if (ui_centre.dim() != 1 || ui_centre.size(0) != features.size(1))
    fail(where, "ui_centre must be [" + std::to_string(features.size(1)) + "], got " + shape_str(ui_centre));
  if (!torch::isfinite(ui_centre).all().item<bool>()) fail(where, "ui_centre contains NaN or Inf");
  const int64_t B = features.size(0), C = weight.size(0);
  if (C < 2) fail(where, "weight must have at least 2 classes, got " + std::to_string(C));
  torch::Tensor y = check_index(where, "labels", labels, B);
  if (y.min().item<int64_t>() < 0 || y.max().item<int64_t>() >= C) fail(where, "labels must lie in [0, " + std::to_string(C) + ")");
  torch::NoGradGuard ng;
  const torch::Tensor f = l2_rows(features.detach().to(torch::kDouble));
  const torch::Tensor w = l2_rows(weight.detach().to(torch::kDouble));
  const torch::Tensor u = l2_rows(ui_centre.detach().to(torch::kDouble).unsqueeze(0));
  const torch::Tensor ang = torch::acos(torch::mm(f, w.t()).clamp(-1, 1));  // [B, C]
  const torch::Tensor yy = y.to(f.device()).unsqueeze(1);
  const torch::Tensor th_y = ang.gather(1, yy).squeeze(1);
  const torch::Tensor th_n = ang.scatter(1, yy, 10.0).amin(1);  // own class masked by an angle > pi
  const torch::Tensor th_u = torch::acos(torch::mm(f, u.t()).squeeze(1).clamp(-1, 1));
  const torch::Tensor side = th_n / (th_n + th_y).clamp_min(1e-12);  // 1 on the own prototype, 1/2 halfway, 0 on another
  const torch::Tensor away = (th_u / (M_PI / 2)).clamp(0, 1);
  return (side * away).to(features.scalar_type());
}

torch::Tensor index_diversion_loss(const torch::Tensor& features, const torch::Tensor& ri, const torch::Tensor& ui_centre,
                                   double cos_margin) {
  const std::string where = "index diversion";
  check_features(where, "features", features);
  check_defined(where, "ri", ri);
  if (ri.dim() != 1 || ri.size(0) != features.size(0))
    fail(where, "ri must be [" + std::to_string(features.size(0)) + "], got " + shape_str(ri));
  if (ui_centre.dim() != 1 || ui_centre.size(0) != features.size(1))
    fail(where, "ui_centre must be [" + std::to_string(features.size(1)) + "], got " + shape_str(ui_centre));
  if (!std::isfinite(cos_margin) || cos_margin < -1 || cos_margin > 1) fail(where, "cos_margin must lie in [-1, 1]");
  const torch::Tensor u = l2_rows(ui_centre.detach().unsqueeze(0)).squeeze(0);
  const torch::Tensor cos_u = torch::mv(l2_rows(features), u);
  return ((1 - ri.detach()) * (cos_u - cos_margin).clamp_min(0)).mean();
}

}  // namespace hfr::losses
