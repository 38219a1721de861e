// Biometric metrics over sorted score arrays. Everything is answered from the
// two ascending arrays by binary search: FAR(t) and TAR(t) are counts of the
// scores >= t, so no query walks or copies the scores (roc() excepted, whose
// answer is that big). The conventions are spelled out in metrics.hpp; the
// comparisons against scikit-learn live in tests/unit/test_metrics.cpp.
#include "hfr/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <unordered_map>

#include "hfr/error.hpp"

namespace hfr::metrics {
namespace {

using Scores = std::vector<double>;
constexpr double kInf = std::numeric_limits<double>::infinity();

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// Finite scores only: a NaN would break the strict weak order every count
// below relies on, and an infinite score makes "accept nothing" unspellable.
// -0 becomes +0 (they are one score; a reported threshold should not read -0).
void check_scores(Scores& v, const char* what) {
  for (std::size_t i = 0; i < v.size(); ++i) {
    double s = v[i];
    if (!std::isfinite(s))
      throw Error(std::string(what) + " score " + std::to_string(i) + " is " +
                  (std::isnan(s) ? "NaN" : s > 0 ? "+inf" : "-inf"));
    if (s == 0) v[i] = 0.0;
  }
}

void check_rate(double target, const char* what) {
  if (!(target >= 0 && target <= 1)) throw Error(std::string(what) + " target " + num(target) + " is not in [0, 1]");
}

// Doubles as unsigned keys in the same order (no NaN and no -0 here): flip all
// bits of negatives, the sign bit of positives.
inline std::uint64_t sort_key(double d) {
  std::uint64_t u;
  std::memcpy(&u, &d, sizeof u);
  return (u >> 63) ? ~u : (u | (std::uint64_t{1} << 63));
}
inline double from_key(std::uint64_t k) {
  std::uint64_t u = (k >> 63) ? (k & ~(std::uint64_t{1} << 63)) : ~k;
  double d;
  std::memcpy(&d, &u, sizeof d);
  return d;
}

// LSD radix sort, six 11-bit digits, skipping digits every key shares (score
// files rarely use the full exponent range). Measured about 4x faster than
// std::sort on 10M doubles. Peak memory is two key arrays: the input is freed
// while the keys are sorted.
void sort_scores(Scores& v) {
  const std::size_t n = v.size();
  if (n < (1u << 14)) {
    std::sort(v.begin(), v.end());
    return;
  }
  constexpr int kBits = 11, kPasses = 6;
  constexpr std::size_t kBuckets = std::size_t{1} << kBits;
  // Uninitialised buffers: every element is written before it is read.
  std::unique_ptr<std::uint64_t[]> a(new std::uint64_t[n]);
  std::vector<std::size_t> hist(kPasses * kBuckets, 0);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t k = sort_key(v[i]);
    a[i] = k;
    for (int p = 0; p < kPasses; ++p) ++hist[p * kBuckets + ((k >> (p * kBits)) & (kBuckets - 1))];
  }
  Scores().swap(v);
  std::unique_ptr<std::uint64_t[]> b(new std::uint64_t[n]);
  for (int p = 0; p < kPasses; ++p) {
    std::size_t* h = &hist[p * kBuckets];
    if (*std::max_element(h, h + kBuckets) == n) continue;  // one digit value: nothing moves
    std::size_t sum = 0;
    for (std::size_t d = 0; d < kBuckets; ++d) {
      std::size_t c = h[d];
      h[d] = sum;
      sum += c;
    }
    const int shift = p * kBits;
    for (std::size_t i = 0; i < n; ++i) {
      std::uint64_t k = a[i];
      b[h[(k >> shift) & (kBuckets - 1)]++] = k;
    }
    a.swap(b);
  }
  b.reset();
  v.resize(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = from_key(a[i]);
}

std::size_t count_ge(const Scores& s, double t) {
  return static_cast<std::size_t>(s.end() - std::lower_bound(s.begin(), s.end(), t));
}
std::size_t count_gt(const Scores& s, double t) {
  return static_cast<std::size_t>(s.end() - std::upper_bound(s.begin(), s.end(), t));
}

// The lowest score of either array strictly above x.
bool next_above(const Scores& a, const Scores& b, double x, double& out) {
  auto i = std::upper_bound(a.begin(), a.end(), x);
  auto j = std::upper_bound(b.begin(), b.end(), x);
  if (i == a.end() && j == b.end()) return false;
  out = i == a.end() ? *j : j == b.end() ? *i : std::min(*i, *j);
  return true;
}
// The highest score of either array strictly below x.
bool next_below(const Scores& a, const Scores& b, double x, double& out) {
  auto i = std::lower_bound(a.begin(), a.end(), x);
  auto j = std::lower_bound(b.begin(), b.end(), x);
  if (i == a.begin() && j == b.begin()) return false;
  out = i == a.begin() ? *(j - 1) : j == b.begin() ? *(i - 1) : std::max(*(i - 1), *(j - 1));
  return true;
}

// The largest impostor count c with c / n <= target, compared in double as
// NumPy compares fpr = count / n (so a target of exactly k/n admits k).
std::size_t max_accepted(double target, std::size_t n) {
  const double dn = static_cast<double>(n);
  double f = std::floor(target * dn);
  std::size_t c = f <= 0 ? 0 : f >= dn ? n : static_cast<std::size_t>(f);
  while (c < n && static_cast<double>(c + 1) / dn <= target) ++c;
  while (c > 0 && static_cast<double>(c) / dn > target) --c;
  return c;
}

// The at-most threshold over sorted impostor-like and genuine-like arrays: at
// most c impostors may be accepted, so the threshold must lie above
// x = the (c+1)-th highest impostor; the lowest candidate above x is the next
// score of either array, or nextafter(x) when x is the highest impostor (it is
// then below every higher genuine, so always the lowest).
double at_most_threshold(const Scores& imp, const Scores& gen, std::size_t c) {
  const std::size_t n = imp.size();
  if (c >= n) return std::min(imp.front(), gen.front());
  const double x = imp[n - c - 1];
  if (x == imp.back()) return std::nextafter(x, kInf);
  double t = 0;
  next_above(imp, gen, x, t);
  return t;
}

// First index i >= from of a sorted array with s[i] >= v, by galloping: cheap
// when successive queries move a little, never worse than a merge.
std::size_t gallop_lower(const Scores& s, std::size_t from, double v) {
  const std::size_t n = s.size();
  if (from >= n || s[from] >= v) return from;
  std::size_t step = 1, lo = from;  // s[lo] < v
  while (lo + step < n && s[lo + step] < v) {
    lo += step;
    step *= 2;
  }
  std::size_t hi = std::min(lo + step, n);
  return static_cast<std::size_t>(std::lower_bound(s.begin() + lo + 1, s.begin() + hi, v) - s.begin());
}

std::uint64_t binomial(std::mt19937_64& rng, std::uint64_t n, double p) {
  if (n == 0 || p <= 0) return 0;
  if (p >= 1) return n;
  std::binomial_distribution<long long> d(static_cast<long long>(n), p);
  return static_cast<std::uint64_t>(d(rng));
}

// NumPy's default ("linear") percentile of sorted values.
double percentile(const Scores& sorted, double q) {
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const std::size_t i = static_cast<std::size_t>(std::floor(pos));
  if (i + 1 >= sorted.size()) return sorted.back();
  const double f = pos - static_cast<double>(i);
  return sorted[i] + f * (sorted[i + 1] - sorted[i]);
}

}  // namespace

const char* convention_name(FarConvention c) { return c == FarConvention::nearest ? "nearest" : "at-most"; }

FarConvention parse_convention(const std::string& s) {
  if (s == "at-most") return FarConvention::at_most;
  if (s == "nearest") return FarConvention::nearest;
  throw UsageError("unknown FAR threshold convention '" + s + "' (expected at-most or nearest)");
}

Verification::Verification(std::vector<double> genuine, std::vector<double> impostor)
    : genuine_(std::move(genuine)), impostor_(std::move(impostor)) {
  if (genuine_.empty()) throw Error("no genuine scores");
  if (impostor_.empty()) throw Error("no impostor scores");
  check_scores(genuine_, "genuine");
  check_scores(impostor_, "impostor");
  sort_scores(genuine_);
  sort_scores(impostor_);
}

double Verification::accept_nothing() const { return std::nextafter(std::max(genuine_.back(), impostor_.back()), kInf); }

RocPoint Verification::at_threshold(double threshold) const {
  RocPoint p;
  p.threshold = threshold;
  p.far = static_cast<double>(count_ge(impostor_, threshold)) / static_cast<double>(impostor_.size());
  p.tar = static_cast<double>(count_ge(genuine_, threshold)) / static_cast<double>(genuine_.size());
  return p;
}

TarAtFar Verification::tar_at_far(double target, FarConvention convention) const {
  check_rate(target, "FAR");
  const Scores& imp = impostor_;
  const std::size_t n = imp.size();
  const double dn = static_cast<double>(n);
  const std::size_t c_max = max_accepted(target, n);
  double threshold;
  if (convention == FarConvention::at_most) {
    threshold = at_most_threshold(imp, genuine_, c_max);
  } else {
    // The FARs the ROC points take are 0 (sklearn's leading point) and
    // #{imp >= v}/n for each distinct impostor v; |fpr - target| falls, then
    // rises along the points, so the nearest is the highest FAR <= target
    // (c_lo) or the lowest above it (c_hi), the earlier point on a tie.
    const std::size_t c_lo = c_max == n ? n : count_gt(imp, imp[n - c_max - 1]);
    auto dist = [&](std::size_t c) { return std::abs(static_cast<double>(c) / dn - target); };
    std::size_t c = c_lo;
    if (c_lo < n) {
      const std::size_t c_hi = count_ge(imp, imp[n - c_lo - 1]);
      if (dist(c_hi) < dist(c_lo)) c = c_hi;
    }
    if (c == c_lo) {
      // Rounding can make distinct FARs equally near; the first point wins.
      while (c > 0) {
        const std::size_t prev = count_gt(imp, imp[n - c]);
        if (dist(prev) != dist(c)) break;
        c = prev;
      }
    }
    // Among the points with FAR c/n the first has the highest threshold: the
    // impostor value itself (or the accept-nothing point for FAR 0).
    threshold = c == 0 ? accept_nothing() : imp[n - c];
  }
  const RocPoint p = at_threshold(threshold);
  TarAtFar r;
  r.target = target;
  r.threshold = threshold;
  r.far = p.far;
  r.tar = p.tar;
  r.impostors_accepted = count_ge(imp, threshold);
  r.expected_impostors = target * dn;
  return r;
}

Eer Verification::eer() const {
  const Scores& imp = impostor_;
  const Scores& gen = genuine_;
  const double ni = static_cast<double>(imp.size()), ng = static_cast<double>(gen.size());
  // FRR as 1 - TAR (not #rejected / n) so that |FAR - FRR| rounds as sklearn's.
  auto at = [&](double t) {
    Eer e;
    e.threshold = t;
    e.far = static_cast<double>(count_ge(imp, t)) / ni;
    e.frr = 1.0 - static_cast<double>(count_ge(gen, t)) / ng;
    return e;
  };
  auto gap = [](const Eer& e) { return e.far - e.frr; };  // non-decreasing as the threshold falls
  Eer none;
  none.threshold = accept_nothing();
  none.far = 0.0;
  none.frr = 1.0;

  // The lowest score value with FAR - FRR <= 0, by binary search in each array.
  auto lowest_nonpositive = [&](const Scores& s) -> const double* {
    std::size_t lo = 0, hi = s.size();
    while (lo < hi) {
      std::size_t mid = lo + (hi - lo) / 2;
      if (gap(at(s[mid])) <= 0) hi = mid;
      else lo = mid + 1;
    }
    return lo < s.size() ? &s[lo] : nullptr;
  };
  const double* a = lowest_nonpositive(imp);
  const double* b = lowest_nonpositive(gen);
  bool is_none = !a && !b;
  Eer best = is_none ? none : at(a && b ? std::min(*a, *b) : a ? *a : *b);
  // The |gap| minimum is here or at the next point (the next lower score).
  double below;
  bool took_below = false;
  if (next_below(imp, gen, best.threshold, below)) {
    Eer pos = at(below);
    if (std::abs(gap(pos)) < std::abs(gap(best))) {
      best = pos;
      is_none = false;
      took_below = true;
    }
  }
  // On a tie the first point (highest threshold) wins: walk back while equal
  // (past the minimum |gap| only grows, so ties lie above the chosen point).
  if (!is_none && !took_below) {
    for (;;) {
      double above;
      bool real = next_above(imp, gen, best.threshold, above);
      Eer prev = real ? at(above) : none;
      if (std::abs(gap(prev)) != std::abs(gap(best))) break;
      best = prev;
      if (!real) break;
    }
  }
  best.eer = (best.far + best.frr) / 2;
  return best;
}

double Verification::auc() const {
  // Sum over genuine runs of #impostor below (and half of #equal): exact
  // integer counts, so the result is P(g > i) + 0.5 P(g == i) to the last bit
  // (long double holds the counts exactly up to 2^64 pairs on x86).
  const Scores& imp = impostor_;
  const Scores& gen = genuine_;
  long double below = 0, equal = 0;
  std::size_t lo = 0;
  for (std::size_t i = 0; i < gen.size();) {
    const double v = gen[i];
    std::size_t j = i + 1;
    while (j < gen.size() && gen[j] == v) ++j;
    const long double m = static_cast<long double>(j - i);
    lo = gallop_lower(imp, lo, v);
    std::size_t hi = lo;
    while (hi < imp.size() && imp[hi] == v) ++hi;
    below += m * static_cast<long double>(lo);
    equal += m * static_cast<long double>(hi - lo);
    i = j;
  }
  const long double pairs = static_cast<long double>(gen.size()) * static_cast<long double>(imp.size());
  return static_cast<double>((below + 0.5L * equal) / pairs);
}

namespace {

// Walks the distinct score values of both arrays from the top, calling
// f(threshold, #impostor >= it, #genuine >= it) until it returns false.
template <class F>
void for_each_distinct(const Scores& imp, const Scores& gen, F f) {
  std::size_t i = imp.size(), g = gen.size();
  while (i > 0 || g > 0) {
    double v = i == 0 ? gen[g - 1] : g == 0 ? imp[i - 1] : std::max(imp[i - 1], gen[g - 1]);
    while (i > 0 && imp[i - 1] == v) --i;
    while (g > 0 && gen[g - 1] == v) --g;
    if (!f(v, imp.size() - i, gen.size() - g)) return;
  }
}

}  // namespace

std::vector<RocPoint> Verification::roc() const {
  std::size_t count = 0;
  for_each_distinct(impostor_, genuine_, [&](double, std::size_t, std::size_t) { return ++count > 0; });
  std::vector<RocPoint> out;
  out.reserve(count);
  const double ni = static_cast<double>(impostor_.size()), ng = static_cast<double>(genuine_.size());
  for_each_distinct(impostor_, genuine_, [&](double t, std::size_t fa, std::size_t ta) {
    out.push_back({t, static_cast<double>(fa) / ni, static_cast<double>(ta) / ng});
    return true;
  });
  return out;
}

std::vector<RocPoint> Verification::roc_curve(std::size_t max_points, double far_min) const {
  if (max_points < 2) throw Error("ROC curve: needs at least 2 points, got " + std::to_string(max_points));
  if (!(far_min > 0 && far_min < 1)) throw Error("ROC curve: lowest FAR " + num(far_min) + " is not in (0, 1)");
  std::size_t count = 0;  // up to max_points + 1: enough to know
  for_each_distinct(impostor_, genuine_, [&](double, std::size_t, std::size_t) { return ++count <= max_points; });
  if (count <= max_points) return roc();

  const Scores& imp = impostor_;
  const Scores& gen = genuine_;
  const std::size_t n = imp.size();
  std::vector<double> thr;
  thr.reserve(max_points);
  thr.push_back(std::max(imp.back(), gen.back()));  // the first ROC point
  // FAR 0 with the most TAR: the lowest genuine above every impostor.
  auto g = std::upper_bound(gen.begin(), gen.end(), imp.back());
  if (g != gen.end()) thr.push_back(*g);
  const std::size_t used = thr.size() + 1;  // and the last point
  const std::size_t k = max_points > used ? max_points - used : 0;
  const double lmin = std::log10(far_min);
  for (std::size_t i = 0; i < k; ++i) {
    const double f = k == 1 ? far_min : std::pow(10.0, lmin * (1.0 - static_cast<double>(i) / static_cast<double>(k - 1)));
    const std::size_t c = max_accepted(f, n);
    // At-most points; FAR 0 is the point above (at_most_threshold would name
    // nextafter(max impostor), which is no ROC point).
    if (c > 0) thr.push_back(at_most_threshold(imp, gen, c));
  }
  thr.push_back(std::min(imp.front(), gen.front()));  // the last point: FAR 1, TAR 1
  std::sort(thr.begin(), thr.end(), [](double x, double y) { return x > y; });
  thr.erase(std::unique(thr.begin(), thr.end()), thr.end());
  std::vector<RocPoint> out;
  out.reserve(thr.size());
  for (double t : thr) out.push_back(at_threshold(t));
  return out;
}

Interval Verification::bootstrap_tar(double target, int replicates, std::uint64_t seed, double level) const {
  check_rate(target, "FAR");
  if (replicates < 1) throw Error("bootstrap: replicates must be at least 1, got " + std::to_string(replicates));
  if (!(level > 0 && level < 1)) throw Error("bootstrap: level " + num(level) + " is not in (0, 1)");
  const Scores& imp = impostor_;
  const Scores& gen = genuine_;
  const std::size_t n = imp.size();
  const std::size_t c_max = max_accepted(target, n);
  std::mt19937_64 rng(seed);
  Scores tars(static_cast<std::size_t>(replicates));
  for (double& tar : tars) {
    if (c_max >= n) {  // the threshold accepts everything in any resample
      tar = 1.0;
      continue;
    }
    // In a resample the at-most threshold lies just above x*, the
    // (c_max+1)-th highest of the n resampled impostors, and TAR* is
    // #{resampled genuine > x*}/#genuine. x* is found by descending the sorted
    // impostors by halves: given `draws` resampled impostors in [lo, hi), the
    // number in the upper half is Binomial(draws, |upper| / |range|), a
    // conditional of the multinomial. O(log n) draws per replicate, whatever
    // the target and the impostor count.
    std::size_t lo = 0, hi = n;
    std::uint64_t draws = n, rank = c_max + 1;
    while (hi - lo > 1 && imp[lo] != imp[hi - 1]) {
      const std::size_t mid = lo + (hi - lo) / 2;
      const std::uint64_t upper = binomial(rng, draws, static_cast<double>(hi - mid) / static_cast<double>(hi - lo));
      if (upper >= rank) {
        lo = mid;
        draws = upper;
      } else {
        rank -= upper;
        draws -= upper;
        hi = mid;
      }
    }
    const double x = imp[lo];
    const double p = static_cast<double>(count_gt(gen, x)) / static_cast<double>(gen.size());
    // The genuine resample only matters through its count above x*.
    tar = static_cast<double>(binomial(rng, gen.size(), p)) / static_cast<double>(gen.size());
  }
  std::sort(tars.begin(), tars.end());
  Interval iv;
  iv.level = level;
  iv.replicates = replicates;
  iv.low = percentile(tars, (1 - level) / 2);
  iv.high = percentile(tars, (1 + level) / 2);
  return iv;
}

Cmc cmc(const std::vector<std::uint64_t>& ranks, std::size_t max_rank) {
  if (ranks.empty()) throw Error("CMC: no probes with a mate");
  if (max_rank < 1) throw Error("CMC: maximum rank must be at least 1");
  std::vector<std::uint64_t> hist(max_rank, 0);
  for (std::size_t i = 0; i < ranks.size(); ++i) {
    if (ranks[i] < 1) throw Error("CMC: rank of probe " + std::to_string(i) + " is 0 (ranks start at 1)");
    if (ranks[i] <= max_rank) ++hist[ranks[i] - 1];
  }
  Cmc out;
  out.rate.resize(max_rank);
  std::uint64_t sum = 0;
  for (std::size_t k = 0; k < max_rank; ++k) {
    sum += hist[k];
    out.rate[k] = static_cast<double>(sum) / static_cast<double>(ranks.size());
  }
  return out;
}

DirAtFpir dir_at_fpir(const std::vector<double>& mated_scores, const std::vector<std::uint64_t>& mated_ranks,
                      const std::vector<double>& nonmated_top_scores, double fpir_target, int rank) {
  if (mated_scores.size() != mated_ranks.size())
    throw Error("DIR at FPIR: " + std::to_string(mated_scores.size()) + " mated scores but " +
                std::to_string(mated_ranks.size()) + " ranks");
  if (mated_scores.empty()) throw Error("DIR at FPIR: no mated probes");
  if (nonmated_top_scores.empty()) throw Error("DIR at FPIR: no non-mated probes");
  if (rank < 1) throw Error("DIR at FPIR: rank must be at least 1, got " + std::to_string(rank));
  check_rate(fpir_target, "FPIR");
  Scores mated = mated_scores, nonmated = nonmated_top_scores;
  check_scores(mated, "mated");
  check_scores(nonmated, "non-mated top");
  std::sort(mated.begin(), mated.end());
  std::sort(nonmated.begin(), nonmated.end());
  const std::size_t n = nonmated.size();
  DirAtFpir r;
  r.target = fpir_target;
  r.threshold = at_most_threshold(nonmated, mated, max_accepted(fpir_target, n));
  r.fpir = static_cast<double>(count_ge(nonmated, r.threshold)) / static_cast<double>(n);
  std::size_t hits = 0;
  for (std::size_t i = 0; i < mated_scores.size(); ++i) {
    if (mated_ranks[i] < 1) throw Error("DIR at FPIR: rank of mated probe " + std::to_string(i) + " is 0 (ranks start at 1)");
    if (mated_ranks[i] <= static_cast<std::uint64_t>(rank) && mated_scores[i] >= r.threshold) ++hits;
  }
  r.dir = static_cast<double>(hits) / static_cast<double>(mated_scores.size());
  return r;
}

namespace {

template <class T>
Identification identify(const T* scores, std::size_t probes, std::size_t gallery, const std::vector<std::string>& probe_labels,
                        const std::vector<std::string>& gallery_labels) {
  if (probe_labels.size() != probes)
    throw Error("identification: " + std::to_string(probe_labels.size()) + " probe labels for " + std::to_string(probes) +
                " probes");
  if (gallery_labels.size() != gallery)
    throw Error("identification: " + std::to_string(gallery_labels.size()) + " gallery labels for " +
                std::to_string(gallery) + " gallery entries");
  if (gallery == 0) throw Error("identification: empty gallery");
  // Labels become small integers once, so the per-score test is an int compare.
  std::unordered_map<std::string, std::size_t> ids;
  std::vector<std::size_t> gid(gallery);
  for (std::size_t j = 0; j < gallery; ++j) gid[j] = ids.emplace(gallery_labels[j], ids.size()).first->second;
  const std::size_t no_mate = ids.size();

  Identification out;
  for (std::size_t i = 0; i < probes; ++i) {
    auto it = ids.find(probe_labels[i]);
    const std::size_t pid = it == ids.end() ? no_mate : it->second;
    const T* row = scores + i * gallery;
    double best = -kInf, top = -kInf;
    bool mated = false;
    for (std::size_t j = 0; j < gallery; ++j) {
      const double s = static_cast<double>(row[j]);
      if (!std::isfinite(s))
        throw Error("score matrix: probe " + std::to_string(i) + ", gallery " + std::to_string(j) + ": score is " +
                    (std::isnan(s) ? "NaN" : s > 0 ? "+inf" : "-inf"));
      top = std::max(top, s);
      if (gid[j] == pid) {
        best = std::max(best, s);
        mated = true;
      }
    }
    if (!mated) {
      out.nonmated_top_scores.push_back(top);
      out.nonmated_probes.push_back(i);
      continue;
    }
    std::uint64_t r = 1;  // ties count against the probe
    for (std::size_t j = 0; j < gallery; ++j)
      if (gid[j] != pid && static_cast<double>(row[j]) >= best) ++r;
    out.mated_scores.push_back(best);
    out.mated_ranks.push_back(r);
    out.mated_probes.push_back(i);
  }
  return out;
}

}  // namespace

Identification identification(const double* scores, std::size_t probes, std::size_t gallery,
                              const std::vector<std::string>& probe_labels, const std::vector<std::string>& gallery_labels) {
  return identify(scores, probes, gallery, probe_labels, gallery_labels);
}
Identification identification(const float* scores, std::size_t probes, std::size_t gallery,
                              const std::vector<std::string>& probe_labels, const std::vector<std::string>& gallery_labels) {
  return identify(scores, probes, gallery, probe_labels, gallery_labels);
}

// ---------------------------------------------------------------- error versus reject

namespace {
// Comparisons discarded at reject fraction r of n: floor(r n), with a relative
// slack of 1e-12 so that r = 0.29 of 100 is 29 (0.29 * 100 is 28.999...).
std::size_t discard_count(double reject, std::size_t n) {
  if (!(reject > 0)) return 0;
  double k = std::floor(reject * static_cast<double>(n) * (1 + 1e-12));
  return k >= static_cast<double>(n) ? n : static_cast<std::size_t>(k);
}
}  // namespace

ErrorVsReject::ErrorVsReject(const std::vector<double>& scores, const std::vector<double>& quality, double threshold)
    : n_(scores.size()), threshold_(threshold) {
  if (scores.size() != quality.size())
    throw Error("error versus reject: " + std::to_string(scores.size()) + " mated scores but " + std::to_string(quality.size()) +
                " pair qualities");
  if (scores.empty()) throw Error("error versus reject: no mated comparisons");
  for (std::size_t i = 0; i < n_; ++i) {
    if (!std::isfinite(scores[i])) throw Error("error versus reject: mated score " + std::to_string(i) + " is not finite");
    if (!std::isfinite(quality[i])) throw Error("error versus reject: pair quality " + std::to_string(i) + " is not finite");
  }
  std::vector<std::size_t> order(n_);
  for (std::size_t i = 0; i < n_; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return quality[a] < quality[b]; });
  // false non-matches from position i to the end, in quality order
  std::vector<std::size_t> left(n_ + 1, 0);
  for (std::size_t i = n_; i-- > 0;) left[i] = left[i + 1] + (scores[order[i]] < threshold ? 1 : 0);
  e_ = left[0];
  for (std::size_t i = 0; i < n_; ++i)
    if (i == 0 || quality[order[i]] != quality[order[i - 1]]) {
      discarded_.push_back(i);
      errors_.push_back(left[i]);
    }
}

double ErrorVsReject::fnmr_at(double reject) const {
  std::size_t k = discard_count(reject, n_);
  if (k >= n_) return 0;
  // the last run that starts at or before k discarded
  std::size_t i = static_cast<std::size_t>(std::upper_bound(discarded_.begin(), discarded_.end(), k) - discarded_.begin()) - 1;
  return static_cast<double>(errors_[i]) / static_cast<double>(n_ - discarded_[i]);
}

double ErrorVsReject::area(double limit) const {
  limit = std::clamp(limit, 0.0, 1.0);
  const double n = static_cast<double>(n_);
  double a = 0;
  for (std::size_t i = 0; i < discarded_.size(); ++i) {
    double d0 = static_cast<double>(discarded_[i]) / n;
    if (d0 >= limit) break;
    double d1 = i + 1 < discarded_.size() ? static_cast<double>(discarded_[i + 1]) / n : 1.0;
    a += static_cast<double>(errors_[i]) / static_cast<double>(n_ - discarded_[i]) * (std::min(d1, limit) - d0);
  }
  return a;
}

double ErrorVsReject::oracle_fnmr_at(double reject) const {
  std::size_t k = discard_count(reject, n_);
  if (k >= n_ || k >= e_) return 0;
  return static_cast<double>(e_ - k) / static_cast<double>(n_ - k);
}

double ErrorVsReject::oracle_area(double limit) const {
  limit = std::clamp(limit, 0.0, 1.0);
  const double n = static_cast<double>(n_);
  double a = 0;
  for (std::size_t k = 0; k < e_; ++k) {  // one step per discarded comparison; zero from k = E on
    double d0 = static_cast<double>(k) / n;
    if (d0 >= limit) break;
    a += static_cast<double>(e_ - k) / static_cast<double>(n_ - k) * (std::min(static_cast<double>(k + 1) / n, limit) - d0);
  }
  return a;
}

MeanStd mean_std(const std::vector<double>& values) {
  if (values.empty()) throw Error("mean and standard deviation of no values");
  MeanStd r;
  r.n = values.size();
  double sum = 0;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) throw Error("value " + std::to_string(i) + " is not finite");
    sum += values[i];
  }
  r.mean = sum / static_cast<double>(r.n);
  if (r.n > 1) {
    double ss = 0;  // two passes: no cancellation from sum of squares
    for (double v : values) ss += (v - r.mean) * (v - r.mean);
    r.std = std::sqrt(ss / static_cast<double>(r.n - 1));
  }
  return r;
}

double normal_deviate(double p) {
  if (!(p > 0 && p < 1)) throw Error("normal deviate: probability " + num(p) + " is not in (0, 1)");
  // Reflect the upper half onto the lower: 1 - p is exact there (Sterbenz),
  // and the refinement below is accurate relative to a small p, not to 1 - p.
  if (p > 0.5) return -normal_deviate(1.0 - p);
  // Acklam's rational approximation (relative error 1.15e-9)...
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                             1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01,  -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  double x;
  if (p < 0.02425) {
    const double q = std::sqrt(-2 * std::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else {
    const double q = p - 0.5, r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  }
  // ...then one Halley step on Phi(x) - p, with Phi from erfc (accurate in
  // the lower tail), which brings it to about machine precision.
  const double e = 0.5 * std::erfc(-x / std::sqrt(2.0)) - p;
  const double u = e * 2.50662827463100050242 * std::exp(x * x / 2);  // e / phi(x)
  if (std::isfinite(u)) x -= u / (1 + x * u / 2);  // exp overflows only for p near the denormals
  return x;
}

}  // namespace hfr::metrics
