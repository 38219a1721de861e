// Biometric metrics over score arrays (plain C++, no LibTorch): ROC, DET,
// TAR at FAR targets under two named threshold conventions, EER, AUC,
// closed-set ranks and CMC, open-set DIR at FPIR, fold statistics and
// bootstrap confidence intervals. Semantics follow bob.measure; see
// hfr-eval(1) and methods.md section 7.
//
// Conventions used everywhere here:
//  - Higher score = more similar. A pair is accepted when score >= threshold.
//  - FAR(t) = #{impostor >= t} / #impostor;  FRR(t) = #{genuine < t} / #genuine;
//    TAR(t) = 1 - FRR(t).
//  - Rank of a probe = 1 + #{non-mated scores >= its best mated score}
//    (ties count against the probe).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace hfr::metrics {

// "at-most" (bob.measure, default): the lowest threshold whose achieved FAR is
// <= the target. "nearest" (insightface scripts): the ROC point (as returned by
// sklearn.metrics.roc_curve with drop_intermediate=False) whose FAR is nearest
// to the target (ties: the first such point, i.e. the highest threshold).
//
// Exactly, with the candidate thresholds being the distinct genuine and
// impostor score values:
//  - at-most: the lowest candidate whose FAR <= target, which is the ROC point
//    sklearn users pick as "largest TAR among fpr <= target". When no impostor
//    may be accepted (target < 1/#impostor, or the target rounds so) the
//    threshold is nextafter(max impostor, +inf) (bob.measure's choice; sklearn
//    would name the lowest genuine above the impostors instead: same FAR and
//    TAR, a different threshold).
//  - nearest: sklearn's argmin |fpr - target| over its roc_curve points, which
//    include its artificial leading "accept nothing" point (fpr 0, tpr 0). So
//    when FAR 0 is nearest the answer is that point: TAR 0, reported with the
//    threshold accept_nothing() (sklearn reports max+1 or inf), even when some
//    genuine scores lie above every impostor. Faithful to the scripts, not wise.
// FARs compare as the double count/#impostor, as NumPy computes them, so the
// choice at a boundary (target exactly k/#impostor) is the same as sklearn's.
enum class FarConvention { at_most, nearest };
const char* convention_name(FarConvention c);           // "at-most" / "nearest"
FarConvention parse_convention(const std::string& s);   // throws UsageError

struct RocPoint {
  double threshold = 0;  // accept when score >= threshold
  double far = 0;
  double tar = 0;        // = 1 - frr
};

struct TarAtFar {
  double target = 0;     // requested FAR
  double threshold = 0;  // chosen threshold
  double far = 0;        // FAR achieved at that threshold
  double tar = 0;
  std::uint64_t impostors_accepted = 0;  // #impostor >= threshold
  // Impostor count the target rests on (target * #impostor); below ~100 the
  // figure is thin and a bootstrap interval should accompany it.
  double expected_impostors = 0;
};

// The ROC point minimising |FAR - FRR|, the first one (highest threshold) on a
// tie, over the same points as the nearest convention, sklearn's leading
// accept-nothing point (FAR 0, FRR 1) included. That point only wins when all
// scores are equal (every real point then is FAR 1, FRR 0: the same distance).
struct Eer {
  double eer = 0;        // (FAR + FRR) / 2 at the threshold minimising |FAR - FRR|
  double threshold = 0;
  double far = 0;
  double frr = 0;
};

struct Interval {
  double low = 0, high = 0;  // percentile interval
  double level = 0.95;
  int replicates = 0;
};

// Verification metrics over genuine (mated) and impostor (non-mated) scores.
// The constructor validates (finite, both sets non-empty; throws hfr::Error
// naming the first bad value) and sorts copies once; queries are then cheap.
class Verification {
 public:
  Verification(std::vector<double> genuine, std::vector<double> impostor);

  std::size_t genuine_count() const { return genuine_.size(); }
  std::size_t impostor_count() const { return impostor_.size(); }

  TarAtFar tar_at_far(double target, FarConvention convention = FarConvention::at_most) const;
  Eer eer() const;
  // Area under the ROC: P(genuine > impostor) + 0.5 P(genuine == impostor),
  // equal to sklearn.metrics.roc_auc_score.
  double auc() const;
  // FAR/TAR at one threshold.
  RocPoint at_threshold(double threshold) const;

  // The ROC at every distinct score value (highest threshold first), as
  // sklearn's roc_curve(drop_intermediate=False) without its leading
  // (inf, 0, 0) point.
  std::vector<RocPoint> roc() const;
  // A curve of at most max_points points for plots and reports: keeps the end
  // points and points spread evenly in log10(FAR) between far_min and 1.
  std::vector<RocPoint> roc_curve(std::size_t max_points = 200, double far_min = 1e-7) const;

  // Bootstrap percentile interval of TAR at the target FAR (at-most
  // convention): genuine and impostor scores resampled with replacement,
  // `replicates` times, from `seed` (std::mt19937_64; NumPy's linear
  // percentiles). Exact for that resampling, yet no resample is built: the
  // impostor order statistic that sets the threshold is drawn by conditional
  // binomials down the sorted impostors (O(log #impostor) draws), and the
  // genuine resample enters only through its Binomial count above it.
  Interval bootstrap_tar(double target, int replicates, std::uint64_t seed, double level = 0.95) const;

  // nextafter(highest score, +inf): the threshold reported for sklearn's
  // leading accept-nothing ROC point (FAR 0, TAR 0).
  double accept_nothing() const;

  const std::vector<double>& genuine_sorted() const { return genuine_; }    // ascending
  const std::vector<double>& impostor_sorted() const { return impostor_; }  // ascending

 private:
  std::vector<double> genuine_;
  std::vector<double> impostor_;
};

// Closed-set identification. One entry per probe that has a mate in the
// gallery: its rank as defined above (>= 1). Probes without a mate are not
// counted here (see OpenSet).
struct Cmc {
  std::vector<double> rate;  // rate[k-1] = fraction of probes with rank <= k, k = 1..max_rank
};
Cmc cmc(const std::vector<std::uint64_t>& ranks, std::size_t max_rank);

// Ranks and top scores of a probes x gallery score matrix (row-major), probe i
// mated with gallery j when their labels are equal. Probes with a mate give
// their best mated score and its rank; probes without one give their top
// score (open-set non-mated searches). Throws hfr::Error on a non-finite score
// or a label count that does not match.
struct Identification {
  std::vector<double> mated_scores;          // best mated score, per probe with a mate
  std::vector<std::uint64_t> mated_ranks;    // its rank (>= 1)
  std::vector<std::size_t> mated_probes;     // the probe's row
  std::vector<double> nonmated_top_scores;   // top score, per probe without a mate
  std::vector<std::size_t> nonmated_probes;  // the probe's row
};
Identification identification(const double* scores, std::size_t probes, std::size_t gallery,
                              const std::vector<std::string>& probe_labels,
                              const std::vector<std::string>& gallery_labels);
Identification identification(const float* scores, std::size_t probes, std::size_t gallery,
                              const std::vector<std::string>& probe_labels,
                              const std::vector<std::string>& gallery_labels);

// Open-set identification (rank-1 DIR at FPIR, as in bob.measure's
// detection_identification_rate): mated probes give (best mated score, rank),
// non-mated probes give their top gallery score. threshold for an FPIR target
// follows the at-most convention over the non-mated probes' top scores (as
// "impostors", with the mated scores as further candidate thresholds, exactly
// as Verification does): DIR = #{mated: rank <= `rank`, score >= threshold} /
// #mated.
struct DirAtFpir {
  double target = 0, threshold = 0, fpir = 0, dir = 0;
};
DirAtFpir dir_at_fpir(const std::vector<double>& mated_scores, const std::vector<std::uint64_t>& mated_ranks,
                      const std::vector<double>& nonmated_top_scores, double fpir_target, int rank = 1);

// Error versus reject (EvR) curve of a quality score, called the error versus
// discard characteristic (EDC) in ISO/IEC 29794-1:2024 and by Schlett et al.
// ("Considerations on the evaluation of biometric quality assessment
// algorithms", 2023; Grother & Tabassi 2007 before them):
//  - the comparison threshold is fixed once, beforehand, on all comparisons
//    (hfr-eval: at an FMR target); a mated comparison is a false non-match
//    when its score < threshold;
//  - each mated comparison carries a pair quality (hfr-eval: the lower of its
//    two samples' qualities, or the probe's alone);
//  - comparisons are discarded lowest quality first, and a run of equal
//    qualities is discarded at once (no order among ties is invented), so the
//    exact curve has one point per distinct quality: discard fraction
//    d = discarded / N, FNMR = false non-matches among the rest / (N -
//    discarded);
//  - between its points the curve is a step function (the value at the
//    largest discard point <= r), which is what fnmr_at() and area() use:
//    area(L) is the exact integral of the steps over [0, L] (not divided by L),
//    as the reference code of Schlett et al. computes pAUC.
class ErrorVsReject {
 public:
  // Throws hfr::Error on different lengths, no comparisons, or a non-finite
  // score or quality (naming the first one).
  ErrorVsReject(const std::vector<double>& mated_scores, const std::vector<double>& pair_quality, double threshold);

  std::size_t comparisons() const { return n_; }
  double threshold() const { return threshold_; }
  // The exact curve, one entry per distinct quality (lowest first): how many
  // comparisons are discarded before that quality's run, and how many false
  // non-matches remain. discarded()[0] == 0.
  const std::vector<std::size_t>& discarded() const { return discarded_; }
  const std::vector<std::size_t>& errors() const { return errors_; }
  // FNMR after discarding the fraction `reject` (in [0, 1)): the step
  // function's value.
  double fnmr_at(double reject) const;
  // Integral of fnmr_at over [0, limit], limit in [0, 1].
  double area(double limit) const;
  // The same for the best possible ordering (the false non-matches discarded
  // first, one comparison at a time): max(0, E - k) / (N - k) at k = floor(r N)
  // discarded.
  double oracle_fnmr_at(double reject) const;
  double oracle_area(double limit) const;

 private:
  std::size_t n_ = 0, e_ = 0;  // comparisons, false non-matches before discarding
  double threshold_ = 0;
  std::vector<std::size_t> discarded_, errors_;
};

// Mean and sample standard deviation (n - 1; 0 for one value) over folds.
struct MeanStd {
  double mean = 0, std = 0;
  std::size_t n = 0;
};
MeanStd mean_std(const std::vector<double>& values);

// Standard normal quantile (probit), for DET axes: ppf(p), p in (0, 1).
double normal_deviate(double p);

}  // namespace hfr::metrics
