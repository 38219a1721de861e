// Metrics: hand-made cases for the exact semantics, then comparisons with an
// independent scikit-learn/NumPy reference (tests/reference/metrics_reference.py)
// on random and heavily tied scores.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "hfr/error.hpp"
#include "hfr/metrics.hpp"

using namespace hfr::metrics;
using hfr::Error;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

Approx exactly(double v, double margin = 1e-12) { return Approx(v).epsilon(0).margin(margin); }

// ---------------------------------------------------------------- reference

// Debian's interpreter, which has python3-sklearn; HFR_TEST_PYTHON overrides
// (pointing it at one without scikit-learn shows the skip).
const std::string kPython = std::getenv("HFR_TEST_PYTHON") ? std::getenv("HFR_TEST_PYTHON") : "/usr/bin/python3";

bool reference_available() {
  static const int ok = [] {
    std::string cmd = "'" + kPython + "' -c 'import sklearn, numpy' >/dev/null 2>&1";
    return std::system(cmd.c_str()) == 0 ? 1 : 0;
  }();
  return ok == 1;
}

#define REQUIRE_REFERENCE()                                                                        \
  do {                                                                                             \
    if (!reference_available()) {                                                                  \
      WARN("skipped: " << kPython << " cannot import sklearn and numpy (python3-sklearn missing)"); \
      return;                                                                                      \
    }                                                                                              \
  } while (0)

struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() / ("hfr_test_metrics_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::string g17(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

json run_reference(const TempDir& dir, const std::string& args) {
  const std::string out = dir.file("reference.json");
  const std::string cmd = "'" + kPython + "' '" HFR_SOURCE_DIR "/tests/reference/metrics_reference.py' " + args +
                          " > '" + out + "'";
  INFO(cmd);
  REQUIRE(std::system(cmd.c_str()) == 0);
  std::ifstream f(out);
  return json::parse(f);
}

void write_scores(const std::string& path, const std::vector<double>& gen, const std::vector<double>& imp) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  REQUIRE(f);
  // Interleaved, so that nothing in the reference can lean on the order.
  std::size_t n = std::max(gen.size(), imp.size());
  for (std::size_t i = 0; i < n; ++i) {
    if (i < imp.size()) std::fprintf(f, "%.17g 0\n", imp[i]);
    if (i < gen.size()) std::fprintf(f, "%.17g 1\n", gen[i]);
  }
  std::fclose(f);
}

// A float64 C-order .npy, as numpy.save writes it.
void write_npy(const std::string& path, const std::vector<double>& m, std::size_t rows, std::size_t cols) {
  std::string header = "{'descr': '<f8', 'fortran_order': False, 'shape': (" + std::to_string(rows) + ", " +
                       std::to_string(cols) + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header.push_back(' ');
  header.push_back('\n');
  std::ofstream f(path, std::ios::binary);
  f.write("\x93NUMPY\x01\x00", 8);
  const unsigned char len[2] = {static_cast<unsigned char>(header.size() & 0xff), static_cast<unsigned char>(header.size() >> 8)};
  f.write(reinterpret_cast<const char*>(len), 2);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  f.write(reinterpret_cast<const char*>(m.data()), static_cast<std::streamsize>(m.size() * sizeof(double)));
  REQUIRE(f.good());
}

void write_lines(const std::string& path, const std::vector<std::string>& lines) {
  std::ofstream f(path);
  for (const auto& l : lines) f << l << '\n';
}

double ref_threshold(const json& j) { return j["threshold"].is_null() ? kInf : j["threshold"].get<double>(); }

// One verification case against the reference: its scores, the FAR targets
// and thresholds asked about, and the reference's command line.
struct VerificationCase {
  std::string name;
  std::vector<double> gen, imp;
  bool full_roc = false;
  std::vector<double> targets, thresholds;
  std::vector<std::string> args;
};

VerificationCase make_case(std::string name, std::vector<double> gen, std::vector<double> imp, bool full_roc = false) {
  VerificationCase c;
  c.name = std::move(name);
  c.gen = std::move(gen);
  c.imp = std::move(imp);
  c.full_roc = full_roc;
  return c;
}

void prepare(VerificationCase& c, const TempDir& dir, std::size_t index) {
  const std::string path = dir.file("scores" + std::to_string(index) + ".txt");
  write_scores(path, c.gen, c.imp);
  const double ni = static_cast<double>(c.imp.size());
  c.targets = {0,        1e-7,     1e-6,     1e-5,      1e-4,     1e-3,     0.01,       0.05,
               0.1,      0.25,     0.5,      0.9,       1,        1 / ni,   2 / ni,     3 / ni,
               0.5 / ni, 1.5 / ni, 2.5 / ni, 10.5 / ni, 100 / ni, 0.999999, 1 - 1 / ni, 0.5 + 0.5 / ni};
  c.targets.erase(std::remove_if(c.targets.begin(), c.targets.end(), [](double t) { return t > 1; }), c.targets.end());
  c.thresholds = {-10, 0, 0.1, 0.5, c.imp.front(), c.gen.front(), c.imp.back(), c.gen.back(), 10};
  c.args = {"verification", path};
  for (double t : c.targets) c.args.push_back("--far=" + g17(t));
  for (double t : c.thresholds) c.args.push_back("--threshold=" + g17(t));
  if (c.full_roc) c.args.push_back("--full-roc");
}

// Every verification figure against the reference.
void check(const VerificationCase& c, const json& ref) {
  INFO("case: " << c.name);
  REQUIRE(ref["genuine"].get<std::size_t>() == c.gen.size());
  REQUIRE(ref["impostor"].get<std::size_t>() == c.imp.size());
  const Verification v(c.gen, c.imp);
  const double ni = static_cast<double>(c.imp.size());

  CHECK(v.auc() == exactly(ref["auc"].get<double>()));

  const Eer e = v.eer();
  const json& re = ref["eer"];
  CHECK(e.threshold == (re["index"] == 0 ? v.accept_nothing() : ref_threshold(re)));
  CHECK(e.eer == exactly(re["eer"].get<double>()));
  CHECK(e.far == exactly(re["far"].get<double>()));
  CHECK(e.frr == exactly(re["frr"].get<double>()));

  const double above_impostors = std::nextafter(v.impostor_sorted().back(), kInf);
  for (FarConvention conv : {FarConvention::at_most, FarConvention::nearest}) {
    const json& rows = ref["tar_at_far"][convention_name(conv)];
    REQUIRE(rows.size() == c.targets.size());
    for (std::size_t i = 0; i < c.targets.size(); ++i) {
      const json& r = rows[i];
      const TarAtFar t = v.tar_at_far(c.targets[i], conv);
      INFO(convention_name(conv) << " at FAR " << g17(c.targets[i]) << ": reference " << r.dump());
      CHECK(t.far == exactly(r["far"].get<double>()));
      CHECK(t.tar == exactly(r["tar"].get<double>()));
      CHECK(t.impostors_accepted == static_cast<std::uint64_t>(std::llround(t.far * ni)));
      if (conv == FarConvention::at_most && r["far"].get<double>() == 0)
        CHECK(t.threshold == above_impostors);  // bob.measure's choice, see metrics.hpp
      else if (r["index"] == 0)
        CHECK(t.threshold == v.accept_nothing());
      else
        CHECK(t.threshold == ref_threshold(r));
    }
  }

  const json& at = ref["at_threshold"];
  REQUIRE(at.size() == c.thresholds.size());
  for (std::size_t i = 0; i < c.thresholds.size(); ++i) {
    const RocPoint p = v.at_threshold(c.thresholds[i]);
    CHECK(p.far == exactly(at[i]["far"].get<double>()));
    CHECK(p.tar == exactly(at[i]["tar"].get<double>()));
  }

  const auto roc = v.roc();
  CHECK(roc.size() == ref["roc_points"].get<std::size_t>());
  if (c.full_roc) {
    const json& rr = ref["roc"];
    REQUIRE(rr.size() == roc.size());
    for (std::size_t i = 0; i < roc.size(); ++i) {
      INFO("ROC point " << i);
      CHECK(roc[i].threshold == rr[i]["threshold"].get<double>());
      CHECK(roc[i].far == exactly(rr[i]["far"].get<double>()));
      CHECK(roc[i].tar == exactly(rr[i]["tar"].get<double>()));
    }
  }
}

std::vector<double> normal(std::mt19937_64& rng, std::size_t n, double mean, double sd, double round_to = 0) {
  std::normal_distribution<double> d(mean, sd);
  std::vector<double> v(n);
  for (double& x : v) {
    x = d(rng);
    if (round_to > 0) x = std::round(x / round_to) * round_to;
  }
  return v;
}

// The at-most TAR of a set, computed the slow and obvious way: try every
// candidate threshold (each score, and just above the highest impostor).
double brute_at_most_tar(const std::vector<double>& gen, const std::vector<double>& imp, double target) {
  std::vector<double> cand = gen;
  cand.insert(cand.end(), imp.begin(), imp.end());
  cand.push_back(std::nextafter(*std::max_element(imp.begin(), imp.end()), kInf));
  double best_t = kInf;
  for (double t : cand) {
    double far = static_cast<double>(std::count_if(imp.begin(), imp.end(), [&](double s) { return s >= t; })) /
                 static_cast<double>(imp.size());
    if (far <= target) best_t = std::min(best_t, t);
  }
  return static_cast<double>(std::count_if(gen.begin(), gen.end(), [&](double s) { return s >= best_t; })) /
         static_cast<double>(gen.size());
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

// ------------------------------------------------------------ hand-made cases

TEST_CASE("metrics: a score equal to the threshold is accepted", "[metrics]") {
  const Verification v({1, 2, 3, 3}, {0, 1, 2, 3});
  RocPoint p = v.at_threshold(3);
  CHECK(p.far == 0.25);
  CHECK(p.tar == 0.5);
  p = v.at_threshold(2);
  CHECK(p.far == 0.5);
  CHECK(p.tar == 0.75);
  p = v.at_threshold(std::nextafter(3.0, kInf));
  CHECK(p.far == 0);
  CHECK(p.tar == 0);
  p = v.at_threshold(-1);
  CHECK(p.far == 1);
  CHECK(p.tar == 1);
}

TEST_CASE("metrics: TAR at FAR, at-most convention", "[metrics]") {
  // impostors 0 1 2 3 (and 3), genuine 1.5 2.5 3 5
  const Verification v({5, 3, 2.5, 1.5}, {3, 0, 2, 1, 3});
  SECTION("the lowest candidate threshold whose FAR is within the target") {
    // At most 2 of 5 impostors: both 3s accepted, 2 rejected; the lowest score
    // above 2 is the genuine 2.5 (same FAR as 3, more TAR).
    TarAtFar t = v.tar_at_far(0.4);
    CHECK(t.threshold == 2.5);
    CHECK(t.far == 0.4);
    CHECK(t.tar == 0.75);
    CHECK(t.impostors_accepted == 2);
    CHECK(t.expected_impostors == Approx(2.0));
    // 1 of 5 allowed, but the two 3s tie: accepting one accepts both.
    t = v.tar_at_far(0.2);
    CHECK(t.threshold == std::nextafter(3.0, kInf));
    CHECK(t.far == 0);
    CHECK(t.tar == 0.25);
  }
  SECTION("a target below 1/#impostor: just above the highest impostor") {
    TarAtFar t = v.tar_at_far(1e-9);
    CHECK(t.threshold == std::nextafter(3.0, kInf));
    CHECK(t.far == 0);
    CHECK(t.impostors_accepted == 0);
    CHECK(t.tar == 0.25);  // the genuine 5
    t = v.tar_at_far(0);
    CHECK(t.threshold == std::nextafter(3.0, kInf));
    CHECK(t.tar == 0.25);
  }
  SECTION("target 1 accepts everything") {
    const TarAtFar t = v.tar_at_far(1);
    CHECK(t.threshold == 0);
    CHECK(t.far == 1);
    CHECK(t.tar == 1);
  }
  SECTION("a target of exactly k/#impostor admits k") {
    const TarAtFar t = v.tar_at_far(3.0 / 5.0);
    CHECK(t.far == 0.6);
    CHECK(t.threshold == 1.5);
  }
}

TEST_CASE("metrics: TAR at FAR, nearest convention", "[metrics]") {
  const Verification v({5, 3, 2.5, 1.5}, {3, 0, 2, 1, 3});
  // ROC FARs: 0 (accept nothing), 0 (5), 0.4 (3), 0.4 (2.5), 0.6 (2), 0.6 (1.5), 0.8 (1), 1 (0)
  TarAtFar t = v.tar_at_far(0.45, FarConvention::nearest);
  CHECK(t.far == 0.4);
  CHECK(t.threshold == 3);  // the first point with FAR 0.4: the highest threshold
  CHECK(t.tar == 0.5);
  t = v.tar_at_far(0.55, FarConvention::nearest);
  CHECK(t.far == 0.6);
  CHECK(t.threshold == 2);
  // FAR 0 nearest: sklearn's leading accept-nothing point, TAR 0, although
  // the genuine 5 lies above every impostor.
  t = v.tar_at_far(0.1, FarConvention::nearest);
  CHECK(t.far == 0);
  CHECK(t.tar == 0);
  CHECK(t.threshold == std::nextafter(5.0, kInf));
  CHECK(t.threshold == v.accept_nothing());
  t = v.tar_at_far(1, FarConvention::nearest);
  CHECK(t.far == 1);
  CHECK(t.threshold == 0);
}

TEST_CASE("metrics: all scores equal", "[metrics]") {
  const Verification v({0.5, 0.5, 0.5}, {0.5, 0.5, 0.5, 0.5});
  CHECK(v.auc() == 0.5);
  TarAtFar t = v.tar_at_far(0.5);
  CHECK(t.threshold == std::nextafter(0.5, kInf));
  CHECK(t.far == 0);
  CHECK(t.tar == 0);
  t = v.tar_at_far(1);
  CHECK(t.threshold == 0.5);
  CHECK(t.far == 1);
  CHECK(t.tar == 1);
  // 0.5 is as far from FAR 0 as from FAR 1: the first point wins.
  t = v.tar_at_far(0.5, FarConvention::nearest);
  CHECK(t.far == 0);
  CHECK(t.threshold == v.accept_nothing());
  t = v.tar_at_far(0.6, FarConvention::nearest);
  CHECK(t.far == 1);
  const Eer e = v.eer();
  CHECK(e.eer == 0.5);
  CHECK(e.far == 0);
  CHECK(e.frr == 1);
  CHECK(e.threshold == v.accept_nothing());
  const auto roc = v.roc();
  REQUIRE(roc.size() == 1);
  CHECK(roc[0].threshold == 0.5);
  CHECK(roc[0].far == 1);
  CHECK(roc[0].tar == 1);
}

TEST_CASE("metrics: EER and AUC", "[metrics]") {
  SECTION("separable") {
    const Verification v({2, 3}, {0, 1});
    const Eer e = v.eer();
    CHECK(e.eer == 0);
    CHECK(e.threshold == 2);
    CHECK(e.far == 0);
    CHECK(e.frr == 0);
    CHECK(v.auc() == 1.0);
  }
  SECTION("reversed") {
    const Verification v({0, 1}, {2, 3});
    CHECK(v.auc() == 0.0);
    CHECK(v.eer().eer == 1.0);  // at threshold 2: FAR 1, FRR 1
  }
  SECTION("identical distributions") {
    const Verification v({1, 2, 3, 4}, {4, 3, 2, 1});
    const Eer e = v.eer();
    CHECK(e.eer == 0.5);
    CHECK(e.threshold == 3);
    CHECK(e.far == 0.5);
    CHECK(e.frr == 0.5);
    CHECK(v.auc() == 0.5);
  }
  SECTION("the first of equally good points") {
    // Thresholds 3 (FAR 1/2, FRR 1) and 2 (FAR 1/2, FRR 0): |gap| 1/2 both.
    const Verification v({2}, {1, 3});
    CHECK(v.auc() == 0.5);
    const Eer e = v.eer();
    CHECK(e.threshold == 3);
    CHECK(e.far == 0.5);
    CHECK(e.frr == 1);
    CHECK(e.eer == 0.75);
  }
  SECTION("ties between classes count half") {
    const Verification v({1, 2}, {1, 0});
    // pairs (g > i): 1>0, 2>1, 2>0; ties: 1==1 -> (3 + 0.5) / 4
    CHECK(v.auc() == 3.5 / 4);
  }
}

TEST_CASE("metrics: decimated ROC curve", "[metrics]") {
  std::mt19937_64 rng(11);
  const Verification v(normal(rng, 3000, 0.5, 0.2), normal(rng, 100000, 0, 0.1));
  const auto curve = v.roc_curve(50, 1e-5);
  REQUIRE(curve.size() <= 50);
  REQUIRE(curve.size() >= 30);
  const auto full = v.roc();
  CHECK(curve.front().threshold == full.front().threshold);
  CHECK(curve.back().threshold == full.back().threshold);
  CHECK(curve.back().far == 1);
  for (std::size_t i = 0; i < curve.size(); ++i) {
    const RocPoint p = v.at_threshold(curve[i].threshold);
    CHECK(p.far == curve[i].far);
    CHECK(p.tar == curve[i].tar);
    if (i > 0) {
      CHECK(curve[i].threshold < curve[i - 1].threshold);
      CHECK(curve[i].far >= curve[i - 1].far);
    }
  }
  // Points reach down to the lowest FAR asked for, spread in log FAR.
  CHECK(std::any_of(curve.begin(), curve.end(), [](const RocPoint& p) { return p.far > 0 && p.far < 2e-5; }));
  // Few distinct scores: the whole ROC.
  const Verification small({1, 2, 3}, {0, 1, 2});
  CHECK(small.roc_curve(10).size() == small.roc().size());
  CHECK_THROWS_WITH(v.roc_curve(1), Catch::Contains("at least 2 points"));
  CHECK_THROWS_WITH(v.roc_curve(10, 0), Catch::Contains("lowest FAR"));
}

TEST_CASE("metrics: ranks with ties, CMC, DIR at FPIR", "[metrics]") {
  // 4 probes x 3 gallery: a, b, c. Probe "x" has no mate.
  const std::vector<double> m = {
      0.9, 0.5, 0.1,  // a: mated 0.9, rank 1
      0.7, 0.7, 0.2,  // b: mated 0.7 tied with a's 0.7: rank 2
      0.3, 0.6, 0.6,  // c: mated 0.6 tied with b's 0.6: rank 2
      0.4, 0.8, 0.2,  // x: no mate, top 0.8
  };
  const Identification id = identification(m.data(), 4, 3, {"a", "b", "c", "x"}, {"a", "b", "c"});
  REQUIRE(id.mated_ranks == std::vector<std::uint64_t>{1, 2, 2});
  CHECK(id.mated_scores == std::vector<double>{0.9, 0.7, 0.6});
  CHECK(id.mated_probes == std::vector<std::size_t>{0, 1, 2});
  CHECK(id.nonmated_top_scores == std::vector<double>{0.8});
  CHECK(id.nonmated_probes == std::vector<std::size_t>{3});
  // The best of several mated gallery entries counts.
  const std::vector<float> f = {0.2f, 0.5f, 0.6f, 0.1f};
  const Identification two = identification(f.data(), 1, 4, {"a"}, {"a", "b", "a", "c"});
  CHECK(two.mated_scores == std::vector<double>{static_cast<double>(0.6f)});
  CHECK(two.mated_ranks == std::vector<std::uint64_t>{1});

  const Cmc c = cmc({1, 2, 2, 5}, 3);
  REQUIRE(c.rate.size() == 3);
  CHECK(c.rate[0] == 0.25);
  CHECK(c.rate[1] == 0.75);
  CHECK(c.rate[2] == 0.75);
  CHECK(cmc({1, 2, 2, 5}, 5).rate[4] == 1.0);

  // Non-mated tops 0.8 0.5 0.3 0.1; mated (0.9 r1) (0.7 r2) (0.6 r1) (0.4 r1)
  const std::vector<double> ms = {0.9, 0.7, 0.6, 0.4};
  const std::vector<std::uint64_t> mr = {1, 2, 1, 1};
  const std::vector<double> nm = {0.8, 0.5, 0.3, 0.1};
  DirAtFpir d = dir_at_fpir(ms, mr, nm, 0.25);
  // One of four non-mated may pass: threshold just above 0.5, the lowest
  // candidate is the mated 0.6.
  CHECK(d.threshold == 0.6);
  CHECK(d.fpir == 0.25);
  CHECK(d.dir == 0.5);  // 0.9 and 0.6 at rank 1; 0.7 is rank 2
  CHECK(dir_at_fpir(ms, mr, nm, 0.25, 2).dir == 0.75);
  d = dir_at_fpir(ms, mr, nm, 0.1);
  CHECK(d.threshold == std::nextafter(0.8, kInf));
  CHECK(d.fpir == 0);
  CHECK(d.dir == 0.25);
  d = dir_at_fpir(ms, mr, nm, 1);
  CHECK(d.fpir == 1);
  CHECK(d.dir == 0.75);
}

TEST_CASE("metrics: mean_std, normal_deviate, conventions", "[metrics]") {
  MeanStd s = mean_std({1, 2, 3, 4});
  CHECK(s.mean == 2.5);
  CHECK(s.std == Approx(std::sqrt(5.0 / 3.0)).epsilon(1e-15));
  CHECK(s.n == 4);
  s = mean_std({0.7});
  CHECK(s.mean == 0.7);
  CHECK(s.std == 0);

  // scipy.special.ndtri
  const std::pair<double, double> known[] = {
      {0.975, 1.959963984540054},       {0.025, -1.9599639845400545},      {0.5, 0.0},
      {1e-10, -6.361340902404056},      {1e-300, -37.0470962993612},       {0.8413447460685429, 1.0},
      {0.02425, -1.972961051311885},    {0.3, -0.5244005127080409},        {0.999999, 4.753424308817087},
      {1 - std::ldexp(1.0, -53), 8.209536151601387}, {0.5 + std::ldexp(1.0, -40), 2.2797651350911116e-12}};
  for (auto [p, x] : known) {
    INFO("ppf(" << g17(p) << ")");
    CHECK(normal_deviate(p) == Approx(x).epsilon(1e-14).margin(1e-15));
  }
  CHECK(normal_deviate(0.975) == Approx(1.959963984540054).epsilon(0).margin(1e-9));
  CHECK(std::isfinite(normal_deviate(std::numeric_limits<double>::denorm_min())));
  CHECK(normal_deviate(0.25) == -normal_deviate(0.75));  // 1 - 0.75 is exact

  CHECK(parse_convention("at-most") == FarConvention::at_most);
  CHECK(parse_convention("nearest") == FarConvention::nearest);
  CHECK(std::string(convention_name(FarConvention::at_most)) == "at-most");
  CHECK_THROWS_AS(parse_convention("closest"), hfr::UsageError);
}

TEST_CASE("metrics: bad input is named", "[metrics]") {
  std::vector<double> imp(30, 0.1);
  imp[17] = kNaN;
  CHECK(error_of([&] { Verification({1}, imp); }) == "impostor score 17 is NaN");
  CHECK(error_of([&] { Verification({1, 2, -kInf}, {0}); }) == "genuine score 2 is -inf");
  CHECK(error_of([&] { Verification({kInf}, {0}); }) == "genuine score 0 is +inf");
  CHECK(error_of([&] { Verification({}, {0}); }) == "no genuine scores");
  CHECK(error_of([&] { Verification({1}, {}); }) == "no impostor scores");
  const Verification v({1}, {0});
  CHECK_THROWS_WITH(v.tar_at_far(kNaN), Catch::Contains("FAR target nan is not in [0, 1]"));
  CHECK_THROWS_WITH(v.tar_at_far(1.5), Catch::Contains("FAR target 1.5 is not in [0, 1]"));
  CHECK_THROWS_WITH(v.tar_at_far(-0.1, FarConvention::nearest), Catch::Contains("not in [0, 1]"));
  CHECK_THROWS_WITH(v.bootstrap_tar(0.1, 0, 1), Catch::Contains("replicates"));
  CHECK_THROWS_WITH(v.bootstrap_tar(0.1, 10, 1, 1.0), Catch::Contains("level"));
  CHECK_THROWS_WITH(mean_std({}), Catch::Contains("no values"));
  CHECK_THROWS_WITH(mean_std({1, kNaN}), Catch::Contains("value 1 is not finite"));
  CHECK_THROWS_WITH(normal_deviate(0), Catch::Contains("not in (0, 1)"));
  CHECK_THROWS_WITH(normal_deviate(1), Catch::Contains("not in (0, 1)"));
  CHECK_THROWS_WITH(normal_deviate(kNaN), Catch::Contains("not in (0, 1)"));
  CHECK_THROWS_WITH(cmc({}, 5), Catch::Contains("no probes with a mate"));
  CHECK_THROWS_WITH(cmc({1, 0}, 5), Catch::Contains("rank of probe 1 is 0"));
  CHECK_THROWS_WITH(cmc({1}, 0), Catch::Contains("maximum rank"));
  CHECK_THROWS_WITH(dir_at_fpir({0.5}, {1}, {}, 0.1), Catch::Contains("no non-mated probes"));
  CHECK_THROWS_WITH(dir_at_fpir({}, {}, {0.5}, 0.1), Catch::Contains("no mated probes"));
  CHECK_THROWS_WITH(dir_at_fpir({0.5}, {1, 2}, {0.5}, 0.1), Catch::Contains("1 mated scores but 2 ranks"));
  CHECK_THROWS_WITH(dir_at_fpir({0.5}, {1}, {kNaN}, 0.1), Catch::Contains("non-mated top score 0 is NaN"));
  CHECK_THROWS_WITH(dir_at_fpir({0.5}, {1}, {0.5}, 0.1, 0), Catch::Contains("rank must be at least 1"));
  const std::vector<double> m = {0.1, kNaN};
  CHECK_THROWS_WITH(identification(m.data(), 1, 2, {"a"}, {"a", "b"}),
                    Catch::Contains("probe 0, gallery 1: score is NaN"));
  CHECK_THROWS_WITH(identification(m.data(), 1, 2, {"a"}, {"a"}), Catch::Contains("1 gallery labels for 2"));
}

// --------------------------------------------------------------- bootstrap

TEST_CASE("metrics: bootstrap interval of TAR at FAR", "[metrics]") {
  std::mt19937_64 rng(5);
  const Verification small(normal(rng, 200, 0.3, 0.15), normal(rng, 20000, 0, 0.1));
  const Verification big(normal(rng, 2000, 0.3, 0.15), normal(rng, 200000, 0, 0.1));
  const double target = 1e-3;

  const Interval a = small.bootstrap_tar(target, 1000, 42);
  CHECK(a.replicates == 1000);
  CHECK(a.level == 0.95);
  const double point = small.tar_at_far(target).tar;
  CHECK(a.low <= point);
  CHECK(point <= a.high);
  CHECK(a.low < a.high);

  const Interval again = small.bootstrap_tar(target, 1000, 42);
  CHECK(again.low == a.low);
  CHECK(again.high == a.high);
  const Interval other = small.bootstrap_tar(target, 1000, 43);
  CHECK((other.low != a.low || other.high != a.high));

  const Interval b = big.bootstrap_tar(target, 1000, 42);
  const double big_point = big.tar_at_far(target).tar;
  CHECK(b.low <= big_point);
  CHECK(big_point <= b.high);
  CHECK(b.high - b.low < 0.6 * (a.high - a.low));  // ~ 1/sqrt(10) expected

  // FAR 1 accepts everything in every resample.
  const Interval all = small.bootstrap_tar(1, 50, 1);
  CHECK(all.low == 1);
  CHECK(all.high == 1);
  // A lower level gives a narrower interval.
  const Interval narrow = small.bootstrap_tar(target, 1000, 42, 0.5);
  CHECK(narrow.high - narrow.low <= a.high - a.low);
}

TEST_CASE("metrics: bootstrap agrees with a brute-force bootstrap", "[metrics]") {
  std::mt19937_64 rng(9);
  const std::vector<double> gen = normal(rng, 300, 0.25, 0.12, 0.01);  // with ties
  const std::vector<double> imp = normal(rng, 3000, 0, 0.1, 0.01);
  const Verification v(gen, imp);
  for (double target : {1e-2, 1e-3}) {
    INFO("FAR " << target);
    const int reps = 3000;
    std::vector<double> brute(reps);
    std::mt19937_64 r2(1234);
    std::uniform_int_distribution<std::size_t> pick_g(0, gen.size() - 1), pick_i(0, imp.size() - 1);
    std::vector<double> g(gen.size()), im(imp.size());
    for (double& t : brute) {
      for (double& x : g) x = gen[pick_g(r2)];
      for (double& x : im) x = imp[pick_i(r2)];
      t = Verification(g, im).tar_at_far(target).tar;
    }
    // Brute force checked once against the definition itself.
    CHECK(brute_at_most_tar(g, im, target) == brute.back());
    std::sort(brute.begin(), brute.end());
    auto pct = [&](double q) {
      double pos = q * (reps - 1);
      std::size_t i = static_cast<std::size_t>(pos);
      return brute[i] + (pos - i) * (brute[std::min(i + 1, brute.size() - 1)] - brute[i]);
    };
    for (double level : {0.95, 0.8, 0.5}) {
      const Interval fast = v.bootstrap_tar(target, reps, 77, level);
      const double lo = pct((1 - level) / 2), hi = pct((1 + level) / 2);
      const double tol = 0.1 * (hi - lo) + 2.0 / static_cast<double>(gen.size());
      INFO("level " << level << ": fast [" << fast.low << ", " << fast.high << "], brute [" << lo << ", " << hi << "]");
      CHECK(std::abs(fast.low - lo) < tol);
      CHECK(std::abs(fast.high - hi) < tol);
    }
  }
}

// ------------------------------------------------------ against the reference

TEST_CASE("metrics: verification matches scikit-learn on random scores", "[metrics][reference]") {
  REQUIRE_REFERENCE();
  std::vector<VerificationCase> cases;
  {
    std::mt19937_64 rng(1);
    cases.push_back(make_case("2k genuine, 200k impostor, continuous", normal(rng, 2000, 0.45, 0.15), normal(rng, 200000, 0, 0.1)));
  }
  {
    std::mt19937_64 rng(2);
    cases.push_back(make_case("2k genuine, 200k impostor, rounded to 2 decimals", normal(rng, 2000, 0.3, 0.15, 0.01),
                     normal(rng, 200000, 0, 0.1, 0.01)));
  }
  {
    std::mt19937_64 rng(3);
    std::uniform_int_distribution<int> gd(8, 30), id(0, 20);
    std::vector<double> gen(500), imp(5000);
    for (double& x : gen) x = gd(rng);
    for (double& x : imp) x = id(rng);
    cases.push_back(make_case("heavy ties (integers), full ROC", gen, imp, true));
  }
  {
    std::mt19937_64 rng(4);
    cases.push_back(make_case("same distribution, one decimal, full ROC", normal(rng, 1000, 0, 1, 0.1), normal(rng, 1000, 0, 1, 0.1), true));
  }
  {
    std::mt19937_64 rng(5);
    std::vector<double> gen = normal(rng, 50, 0.5, 0.3, 0.05);
    gen.push_back(3.0);
    cases.push_back(make_case("few impostors, a genuine above them all, full ROC", gen, normal(rng, 20, 0, 0.3, 0.05), true));
  }
  cases.push_back(make_case("separable", {0.7, 0.8, 0.8, 0.9}, {0.1, 0.2, 0.6}, true));
  cases.push_back(make_case("all equal", {0.5, 0.5}, {0.5, 0.5, 0.5}, true));
  {
    std::mt19937_64 rng(6);
    cases.push_back(make_case("more genuine than impostor, negative scores", normal(rng, 30000, -1, 0.5, 0.001),
                     normal(rng, 3000, -2, 0.5, 0.001)));
  }
  {
    std::mt19937_64 rng(7);
    cases.push_back(make_case("20k genuine, 100k impostor, rounded to 3 decimals", normal(rng, 20000, 0.2, 0.2, 0.001),
                     normal(rng, 100000, 0, 0.1, 0.001)));
  }

  TempDir dir;
  json jobs = json::array();
  for (std::size_t i = 0; i < cases.size(); ++i) {
    prepare(cases[i], dir, i);
    jobs.push_back(cases[i].args);
  }
  std::ofstream(dir.file("jobs.json")) << jobs.dump();
  const json ref = run_reference(dir, "batch '" + dir.file("jobs.json") + "'");
  REQUIRE(ref.size() == cases.size());
  for (std::size_t i = 0; i < cases.size(); ++i) check(cases[i], ref[i]);
}

TEST_CASE("metrics: identification matches the NumPy reference", "[metrics][reference]") {
  REQUIRE_REFERENCE();
  for (int seed : {1, 2, 3}) {
    INFO("seed " << seed);
    std::mt19937_64 rng(static_cast<std::uint64_t>(seed));
    const std::size_t subjects = 40, gallery = 50, probes = 400;
    std::uniform_int_distribution<std::size_t> subj(0, subjects - 1), wide(0, subjects + 9);
    std::vector<std::string> gl(gallery), pl(probes);
    for (std::size_t j = 0; j < gallery; ++j) gl[j] = "s" + std::to_string(j < subjects ? j : subj(rng));
    for (auto& l : pl) l = "s" + std::to_string(wide(rng));  // s40..s49: no mate
    std::normal_distribution<double> noise(0, 0.15);
    std::vector<double> m(probes * gallery);
    for (std::size_t i = 0; i < probes; ++i)
      for (std::size_t j = 0; j < gallery; ++j) {
        double s = noise(rng) + (pl[i] == gl[j] ? 0.35 : 0.0);
        m[i * gallery + j] = seed == 3 ? s : std::round(s * 20) / 20;  // heavy ties for seeds 1, 2
      }
    TempDir dir;
    write_npy(dir.file("m.npy"), m, probes, gallery);
    write_lines(dir.file("p.txt"), pl);
    write_lines(dir.file("g.txt"), gl);
    const std::vector<double> fpirs = {0, 0.01, 0.05, 0.1, 0.3, 0.5, 1};
    const int rank = seed == 2 ? 3 : 1;
    std::string args = "identification --matrix '" + dir.file("m.npy") + "' --probe-labels '" + dir.file("p.txt") +
                       "' --gallery-labels '" + dir.file("g.txt") + "' --max-rank 20 --rank " + std::to_string(rank);
    for (double f : fpirs) args += " --fpir=" + g17(f);
    const json ref = run_reference(dir, args);

    const Identification id = identification(m.data(), probes, gallery, pl, gl);
    CHECK(id.mated_ranks == ref["ranks"].get<std::vector<std::uint64_t>>());
    CHECK(id.mated_scores == ref["mated_scores"].get<std::vector<double>>());
    CHECK(id.mated_probes == ref["mated_probes"].get<std::vector<std::size_t>>());
    CHECK(id.nonmated_top_scores == ref["nonmated_top_scores"].get<std::vector<double>>());
    CHECK(id.nonmated_probes == ref["nonmated_probes"].get<std::vector<std::size_t>>());
    REQUIRE(!id.nonmated_probes.empty());
    const Cmc c = cmc(id.mated_ranks, 20);
    const auto ref_cmc = ref["cmc"].get<std::vector<double>>();
    REQUIRE(ref_cmc.size() == 20);
    for (std::size_t k = 0; k < 20; ++k) CHECK(c.rate[k] == exactly(ref_cmc[k]));
    const json& dirs = ref["dir_at_fpir"];
    REQUIRE(dirs.size() == fpirs.size());
    for (std::size_t k = 0; k < fpirs.size(); ++k) {
      INFO("FPIR " << fpirs[k] << ": reference " << dirs[k].dump());
      const DirAtFpir d = dir_at_fpir(id.mated_scores, id.mated_ranks, id.nonmated_top_scores, fpirs[k], rank);
      CHECK(d.threshold == dirs[k]["threshold"].get<double>());
      CHECK(d.fpir == exactly(dirs[k]["fpir"].get<double>()));
      CHECK(d.dir == exactly(dirs[k]["dir"].get<double>()));
    }
  }
}

// ------------------------------------------------------- error versus reject

TEST_CASE("metrics: error versus reject, perfect quality ordering", "[metrics][evr]") {
  // 10 mated scores at threshold 0.5: three false non-matches, which also
  // have the three lowest qualities.
  const std::vector<double> s = {0.1, 0.2, 0.3, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.5};
  const std::vector<double> q = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0};
  ErrorVsReject e(s, q, 0.5);
  CHECK(e.comparisons() == 10);
  CHECK(e.discarded() == std::vector<std::size_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  CHECK(e.errors() == std::vector<std::size_t>{3, 2, 1, 0, 0, 0, 0, 0, 0, 0});  // 0.5 == threshold is a match
  CHECK(e.fnmr_at(0) == exactly(0.3));
  CHECK(e.fnmr_at(0.1) == exactly(2.0 / 9));
  CHECK(e.fnmr_at(0.15) == exactly(2.0 / 9));  // a step function: 1.5 comparisons discard one
  CHECK(e.fnmr_at(0.2) == exactly(1.0 / 8));
  CHECK(e.fnmr_at(0.3) == 0);
  CHECK(e.fnmr_at(0.95) == 0);
  CHECK(e.area(0.3) == exactly(0.1 * (0.3 + 2.0 / 9 + 1.0 / 8)));
  CHECK(e.area(0.95) == exactly(e.area(0.3)));
  // the perfect ordering is the oracle's
  for (double r : {0.0, 0.05, 0.1, 0.2, 0.25, 0.3, 0.5})
    CHECK(e.oracle_fnmr_at(r) == exactly(e.fnmr_at(r)));
  CHECK(e.oracle_area(0.3) == exactly(e.area(0.3)));
  CHECK(e.oracle_area(0.95) == exactly(e.area(0.95)));
  CHECK(e.area(0) == 0);
  // the input order does not matter
  std::vector<double> s2(s.rbegin(), s.rend()), q2(q.rbegin(), q.rend());
  ErrorVsReject e2(s2, q2, 0.5);
  CHECK(e2.errors() == e.errors());
  CHECK(e2.area(0.95) == e.area(0.95));
}

TEST_CASE("metrics: error versus reject, reversed quality ordering", "[metrics][evr]") {
  // the false non-matches have the highest qualities: rejecting raises FNMR
  const std::vector<double> s = {0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.1, 0.2, 0.3};
  const std::vector<double> q = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0};
  ErrorVsReject e(s, q, 0.5);
  CHECK(e.fnmr_at(0) == exactly(0.3));
  CHECK(e.fnmr_at(0.1) == exactly(3.0 / 9));
  CHECK(e.fnmr_at(0.5) == exactly(3.0 / 5));
  CHECK(e.fnmr_at(0.7) == exactly(1.0));
  CHECK(e.fnmr_at(0.8) == exactly(1.0));  // two left, both false non-matches
  double prev = 0;
  for (int k = 0; k <= 95; ++k) {
    CHECK(e.fnmr_at(k / 100.0) >= prev);
    prev = e.fnmr_at(k / 100.0);
  }
  // [0, 0.3]: 0.3 + 3/9 + 3/8 over steps of 0.1
  CHECK(e.area(0.3) == exactly(0.1 * (0.3 + 3.0 / 9 + 3.0 / 8)));
  CHECK(e.area(0.3) > e.oracle_area(0.3));
  // oracle: 3 false non-matches, discarded first
  CHECK(e.oracle_fnmr_at(0.1) == exactly(2.0 / 9));
  CHECK(e.oracle_fnmr_at(0.3) == 0);
  CHECK(e.oracle_area(0.95) == exactly(0.1 * (0.3 + 2.0 / 9 + 1.0 / 8)));
}

TEST_CASE("metrics: error versus reject, tied qualities are rejected together", "[metrics][evr]") {
  // all qualities equal: nothing can be rejected, the curve is flat
  ErrorVsReject flat({0.1, 0.9, 0.9, 0.9}, {0.5, 0.5, 0.5, 0.5}, 0.5);
  CHECK(flat.discarded() == std::vector<std::size_t>{0});
  CHECK(flat.fnmr_at(0.9) == exactly(0.25));
  CHECK(flat.area(0.3) == exactly(0.25 * 0.3));
  // a run of three equal lowest qualities: the curve jumps from 0 to 3 discarded
  const std::vector<double> s = {0.1, 0.9, 0.2, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9};
  const std::vector<double> q = {0.2, 0.2, 0.2, 0.5, 0.6, 0.6, 0.7, 0.8, 0.9, 1.0};
  ErrorVsReject e(s, q, 0.5);
  CHECK(e.discarded() == std::vector<std::size_t>{0, 3, 4, 6, 7, 8, 9});
  CHECK(e.errors() == std::vector<std::size_t>{2, 0, 0, 0, 0, 0, 0});
  CHECK(e.fnmr_at(0.1) == exactly(0.2));   // inside the run: still nothing discarded
  CHECK(e.fnmr_at(0.29) == exactly(0.2));
  CHECK(e.fnmr_at(0.3) == 0);
  CHECK(e.area(0.95) == exactly(0.2 * 0.3));
  CHECK(e.area(0.2) == exactly(0.2 * 0.2));
  // the order of the tied pairs does not matter
  ErrorVsReject e2({0.9, 0.2, 0.1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9}, q, 0.5);
  CHECK(e2.errors() == e.errors());
}

TEST_CASE("metrics: error versus reject, grid fractions and bad input", "[metrics][evr]") {
  // 100 comparisons, the first 40 (lowest quality) false non-matches:
  // 0.29 * 100 is 28.999... in doubles, yet discards 29
  std::vector<double> s(100, 0.9), q(100);
  for (int i = 0; i < 100; ++i) {
    q[static_cast<std::size_t>(i)] = i;
    if (i < 40) s[static_cast<std::size_t>(i)] = 0.1;
  }
  ErrorVsReject e(s, q, 0.5);
  CHECK(e.fnmr_at(0.29) == exactly(11.0 / 71));
  CHECK(e.fnmr_at(0.07) == exactly(33.0 / 93));
  CHECK(e.fnmr_at(1.0) == 0);
  CHECK(e.area(0.95) == exactly(e.oracle_area(0.95)));
  CHECK_THROWS_WITH(ErrorVsReject({0.5}, {0.5, 0.6}, 0), Catch::Contains("1 mated scores but 2 pair qualities"));
  CHECK_THROWS_WITH(ErrorVsReject({}, {}, 0), Catch::Contains("no mated comparisons"));
  CHECK_THROWS_WITH(ErrorVsReject({0.5, 0.6}, {0.1, kNaN}, 0), Catch::Contains("pair quality 1 is not finite"));
  CHECK_THROWS_WITH(ErrorVsReject({kInf}, {0.1}, 0), Catch::Contains("mated score 0 is not finite"));
}
