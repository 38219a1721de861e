// The training losses of hfr-train (docs/losses.md; formulas from methods.md §1, §3, §4).
//
// Every loss is an ordinary differentiable LibTorch expression: call backward() on the result.
// Inputs may be float32 or float64 (the result has the features' dtype) on any one device.
// Shapes: B = batch rows, D = embedding width, C = classes, K = identities, N = experts.
// Bad inputs (wrong rank or shape, non-float features, non-integer labels or indices, labels
// out of range, NaN/Inf values, fewer than two identities, ...) throw hfr::Error with a message
// that names the loss and the argument. The finiteness checks read one value back from the
// device (a synchronisation point).
#pragma once
#include <cstdint>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

namespace hfr::losses {

// ---- 1. Margin softmax heads (CosFace, ArcFace) -------------------------------------------------

enum class MarginKind { cosface, arcface };

struct MarginOptions {
  MarginKind kind = MarginKind::cosface;
  double s = 64.0;            // logit scale
  double m = 0.40;            // margin: additive cosine (CosFace) or additive angle in radians (ArcFace)
  bool easy_margin = false;   // ArcFace only: see margin_logits
  static MarginOptions cosface(double s = 64.0, double m = 0.40) { return {MarginKind::cosface, s, m, false}; }
  static MarginOptions arcface(double s = 64.0, double m = 0.50, bool easy_margin = false) {
    return {MarginKind::arcface, s, m, easy_margin};
  }
};

// Logits [B, C] of a margin head. features [B, D] (any norm; L2-normalised here), labels [B] integer in
// [0, C), weight [C, D] (rows L2-normalised here). cos_j = <f/|f|, w_j/|w_j|>; non-target logits s·cos_j;
// the target logit is
//   CosFace: s·(cos_y − m)
//   ArcFace: s·cos(θ_y + m) when cos_y > cos(π − m), else s·(cos_y − m·sin m)   (insightface's convention:
//            beyond θ = π − m, where θ + m would pass π and cos(θ + m) would rise again, a linear
//            penalty keeps the target logit decreasing in θ);
//            with easy_margin: s·cos(θ_y + m) when cos_y > 0, else s·cos_y.
// cos(θ + m) is evaluated as cos·cos m − sin θ·sin m with sin θ = sqrt(max(1 − cos², 1e-12)).
torch::Tensor margin_logits(const torch::Tensor& features, const torch::Tensor& labels, const torch::Tensor& weight,
                            const MarginOptions& options = {});

// Cross-entropy (mean over the batch) of margin_logits: a scalar.
torch::Tensor margin_loss(const torch::Tensor& features, const torch::Tensor& labels, const torch::Tensor& weight,
                          const MarginOptions& options = {});

// A margin head that owns W [classes, in_features] (registered parameter "weight"), initialised
// Xavier-normal (std = sqrt(2 / (classes + in_features))) from a CPU generator seeded with `seed`, so
// the same seed gives the same W everywhere. Move it with ->to(device) like any module.
class MarginHeadImpl : public torch::nn::Module {
 public:
  MarginHeadImpl(std::int64_t in_features, std::int64_t classes, MarginOptions options = {}, std::uint64_t seed = 0);
  torch::Tensor forward(const torch::Tensor& features, const torch::Tensor& labels);  // margin_loss
  torch::Tensor logits(const torch::Tensor& features, const torch::Tensor& labels);   // margin_logits
  const MarginOptions& options() const { return options_; }
  torch::Tensor weight;

 private:
  MarginOptions options_;
};
TORCH_MODULE(MarginHead);

// ---- 2. ID-MMD (identity-level maximum mean discrepancy, methods.md §1) -------------------------

// What to do with an identity that has rows in one modality only.
enum class Unpaired {
  error,  // throw hfr::Error naming the identity (default: a sampler bug, or a wrong ids tensor)
  skip,   // leave the identity out; the loss uses the identities present in both modalities
};

struct IdMmdOptions {
  bool normalize = true;               // L2-normalise every row of f_vis / f_nir before the centres
  Unpaired unpaired = Unpaired::error;
};

// Per-identity centres of both modalities, in ascending identity order.
struct PairedCentres {
  torch::Tensor ids;  // [K] int64, CPU
  torch::Tensor vis;  // [K, D] c_k^V = mean of identity k's (normalised) VIS rows
  torch::Tensor nir;  // [K, D] c_k^N likewise
};

// f_vis [Bv, D], ids_vis [Bv] integer identity of each VIS row; f_nir [Bn, D], ids_nir [Bn] likewise.
// The rows of one identity may be anywhere and their number may differ between identities and
// modalities (the official batch is K identities × P rows per modality).
PairedCentres paired_centres(const torch::Tensor& f_vis, const torch::Tensor& ids_vis, const torch::Tensor& f_nir,
                             const torch::Tensor& ids_nir, const IdMmdOptions& options = {});

// Multi-bandwidth Gaussian MMD between centre sets c_vis [K, D] and c_nir [K, D], K >= 2:
//   Z = [c_vis; c_nir] (2K rows), D_pq = |z_p − z_q|², σ0 = Σ D / ((2K)² − 2K) (detached; floored at
//   1e-12 so identical centres give 0, not NaN), k = Σ_{σ ∈ {σ0/4, σ0/2, σ0, 2σ0, 4σ0}} exp(−D/σ),
//   loss = mean over the K×K entries of (k_VV + k_NN − k_VN − k_NV).
torch::Tensor id_mmd_centres(const torch::Tensor& c_vis, const torch::Tensor& c_nir);

// ID-MMD of two feature batches = id_mmd_centres(paired_centres(...)). Needs K >= 2 paired identities.
torch::Tensor id_mmd(const torch::Tensor& f_vis, const torch::Tensor& ids_vis, const torch::Tensor& f_nir,
                     const torch::Tensor& ids_nir, const IdMmdOptions& options = {});

// The linear variant: mean_k |c_k^V − c_k^N|² over the paired identities (K >= 1 suffices here, but
// the same K >= 2 rule applies so both variants accept the same batches).
torch::Tensor id_mmd_linear(const torch::Tensor& f_vis, const torch::Tensor& ids_vis, const torch::Tensor& f_nir,
                            const torch::Tensor& ids_nir, const IdMmdOptions& options = {});

// ids [K*P] int64 (CPU) for the contiguous layout: rows k*P .. k*P+P−1 are identity k.
torch::Tensor contiguous_ids(std::int64_t K, std::int64_t P);

// ---- 3. DVG-Face pairwise contrastive loss (methods.md §3) ---------------------------------------

// f_nir [B, D], f_vis [B, D]: row i of both is the same identity (a generated pair); perm [B] integer,
// a derangement of 0..B−1 (perm[i] != i), B >= 2.
//   L_ct = −mean_i cos(f_N^i, f_V^i) + weight · mean_i max(0, cos(f_N^i, f_V^perm[i]) − margin)
// cos(a, b) = <a/|a|, b/|b|> (rows normalised with a 1e-12 floor on the norm).
torch::Tensor dvg_contrastive(const torch::Tensor& f_nir, const torch::Tensor& f_vis, const torch::Tensor& perm,
                              double margin = 0.5, double weight = 0.1);

// A uniformly drawn derangement of 0..n−1 ([n] int64, CPU), n >= 2, from a CPU generator seeded with
// `seed` (rejection sampling of random permutations; about e draws on average).
torch::Tensor random_derangement(std::int64_t n, std::uint64_t seed);

// ---- 4. Switch-style load balancing (methods.md §4) ---------------------------------------------

// router_probs [B, N]: each row a probability vector over N >= 1 experts (non-negative, summing to 1
// within 1e-4: logits are refused). f_i = fraction of rows whose argmax is i (first index on ties; no
// gradient), P_i = mean of column i.   L_aux = alpha · N · Σ_i f_i · P_i   (= alpha when balanced).
torch::Tensor switch_balance_loss(const torch::Tensor& router_probs, double alpha = 0.01);

// A supervised routing hint (hfr's addition, not in the paper): the cross-entropy asking row i's
// router to choose expert[i] (an integer tensor [B] of values in [0, N)):
//   L_hint = -1/B Σ_i log max(p_i,expert[i], 1e-12)
// hfr-train --ssm-route-hint asks for route_hint_experts in training; inference still routes by
// the router alone.
torch::Tensor routing_hint_loss(const torch::Tensor& router_probs, const torch::Tensor& expert);

// The expert the routing hint asks for, per modality (M >= 1 modalities, the gallery modality first;
// E >= 1 experts): the gallery modality to expert 0, the k-th probe modality (k >= 1) to expert
// 1 + (k - 1) mod (E - 1) (to 0 when E = 1). One expert per modality when E >= M; with fewer
// experts the probe modalities share the ones the gallery does not use, so the gallery modality
// keeps an expert of its own (VIS, NIR850, NIR940 with E = 2: 0, 1, 1). A long tensor [M].
torch::Tensor route_hint_experts(std::int64_t modalities, std::int64_t experts);

// ---- 5. Teacher-student identity loss (methods.md §4) --------------------------------------------

// student [B, D], teacher [B, D]: 1 − mean_i cos(student_i, teacher_i); the teacher is detached.
torch::Tensor teacher_student_loss(const torch::Tensor& student, const torch::Tensor& teacher);

// ---- 6. Recognisability index (methods.md §5; the exact formula is hfr's) ----------------------

// The recognisability index of each row, in [0, 1], without gradient: with f the L2-normalised
// features [B, D], w the normalised class prototypes (weight [C, D], C >= 2), y the labels [B] and
// u the normalised centre of the unrecognisable-identity cluster (ui_centre [D]); θ(a, b) = arccos(a·b):
//   θ_y = θ(f, w_y), θ_n = min_{j≠y} θ(f, w_j), θ_u = θ(f, u)
//   RI = θ_n / (θ_n + θ_y) · clamp(θ_u / (π/2), 0, 1)
// It grows with the distance to the nearest negative prototype and to the UI centre, and falls with
// the distance to the sample's own prototype (methods.md §5): 1 on its own prototype at least 90°
// from the UI centre, 1/2 halfway between its own and another class, 0 on another class's prototype
// or at the UI centre.
torch::Tensor recognisability_index(const torch::Tensor& features, const torch::Tensor& labels, const torch::Tensor& weight,
                                    const torch::Tensor& ui_centre);

// The index diversion loss: pushes low-index embeddings out of a cone around the UI centre,
//   L = mean_i (1 − RI_i) · max(0, cos(f_i, u) − cos_margin)
// (RI detached; f normalised inside; gradient to the features only).
torch::Tensor index_diversion_loss(const torch::Tensor& features, const torch::Tensor& ri, const torch::Tensor& ui_centre,
                                   double cos_margin = 0.5);

}  // namespace hfr::losses
