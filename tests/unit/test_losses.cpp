// hfr-train's losses against an independent reference (scripts/golden/losses_reference.py, Debian's
// python3-torch) and against properties that must hold (docs/losses.md).
#include "torch_catch.hpp"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hfr/error.hpp"
#include "hfr/losses.hpp"

using namespace hfr;
using namespace hfr::losses;
using nlohmann::json;

namespace {

const std::string kScript = std::string(HFR_SOURCE_DIR) + "/scripts/golden/losses_reference.py";
const std::string kFixture = std::string(HFR_SOURCE_DIR) + "/tests/golden/losses/losses.json";

json load_json(const std::string& path) {
  std::ifstream f(path);
  REQUIRE(f.good());
  return json::parse(f);
}

// {"shape": [...], "data": [...]}: floats as `dt`, integers as int64.
torch::Tensor from_json(const json& j, torch::ScalarType dt) {
  std::vector<int64_t> shape = j.at("shape").get<std::vector<int64_t>>();
  const json& d = j.at("data");
  bool integer = std::all_of(d.begin(), d.end(), [](const json& v) { return v.is_number_integer(); }) && !d.empty();
  if (integer) return torch::tensor(d.get<std::vector<int64_t>>(), torch::kLong).reshape(shape);
  return torch::tensor(d.get<std::vector<double>>(), torch::kDouble).reshape(shape).to(dt);
}

struct Run {
  double loss = 0;
  std::map<std::string, torch::Tensor> grads;
};

// Runs the C++ loss of one fixture case on the fixture's inputs converted to `dt`.
Run run_case(const std::string& name, const json& c, torch::ScalarType dt) {
  const json& p = c.at("params");
  auto in = [&](const char* k) { return from_json(c.at("inputs").at(k), dt); };
  auto leaf = [&](const char* k) { return in(k).requires_grad_(true); };
  Run r;
  torch::Tensor loss;
  if (p.contains("kind")) {
    MarginOptions o = p.at("kind") == "cosface" ? MarginOptions::cosface(p.at("s"), p.at("m"))
                                                : MarginOptions::arcface(p.at("s"), p.at("m"), p.at("easy_margin"));
    torch::Tensor x = leaf("features"), w = leaf("weight");
    loss = margin_loss(x, in("labels"), w, o);
    loss.backward();
    r.grads = {{"features", x.grad()}, {"weight", w.grad()}};
  } else if (name == "id_mmd" || name == "id_mmd_linear") {
    torch::Tensor v = leaf("f_vis"), n = leaf("f_nir");
    auto fn = name == "id_mmd" ? id_mmd : id_mmd_linear;
    loss = fn(v, in("ids_vis"), n, in("ids_nir"), IdMmdOptions{});
    loss.backward();
    r.grads = {{"f_vis", v.grad()}, {"f_nir", n.grad()}};
  } else if (name == "dvg_contrastive") {
    torch::Tensor n = leaf("f_nir"), v = leaf("f_vis");
    loss = dvg_contrastive(n, v, in("perm"), p.at("margin"), p.at("weight"));
    loss.backward();
    r.grads = {{"f_nir", n.grad()}, {"f_vis", v.grad()}};
  } else if (name == "switch_balance") {
    torch::Tensor lg = leaf("logits");
    torch::Tensor probs = torch::softmax(lg, 1);
    probs.retain_grad();
    loss = switch_balance_loss(probs, p.at("alpha"));
    loss.backward();
    r.grads = {{"logits", lg.grad()}, {"probs", probs.grad()}};
  } else if (name == "teacher_student") {
    torch::Tensor s = leaf("student"), t = leaf("teacher");
    loss = teacher_student_loss(s, t);
    loss.backward();
    CHECK_FALSE(t.grad().defined());  // the teacher is detached
    r.grads = {{"student", s.grad()}};
  } else {
    FAIL("fixture case with no C++ counterpart: " << name);
  }
  CHECK(loss.scalar_type() == dt);
  CHECK(loss.dim() == 0);
  r.loss = loss.item<double>();
  return r;
}

// Compares every case of a reference document; returns the largest absolute differences
// (loss, gradient element) seen. Each must be <= tol + rel * |reference value|.
std::pair<double, double> compare(const json& doc, torch::ScalarType dt, double tol, double rel = 0) {
  REQUIRE(doc.at("format") == "hfr-losses-golden-1");
  const bool report = std::getenv("HFR_LOSSES_REPORT") != nullptr;
  double worst_loss = 0, worst_grad = 0;
  for (const auto& [name, c] : doc.at("cases").items()) {
    INFO("case " << name << " (" << c10::toString(dt) << ", seed " << doc.at("seed") << ")");
    Run r = run_case(name, c, dt);
    double ref = c.at("loss").get<double>();
    double dl = std::abs(r.loss - ref);
    CHECK(dl <= tol + rel * std::abs(ref));
    worst_loss = std::max(worst_loss, dl);
    REQUIRE(r.grads.size() == c.at("grads").size());
    std::string line;
    for (const auto& [g, gj] : c.at("grads").items()) {
      INFO("gradient w.r.t. " << g);
      REQUIRE(r.grads.count(g));
      torch::Tensor want = from_json(gj, torch::kDouble);
      torch::Tensor got = r.grads.at(g);
      REQUIRE(got.defined());
      REQUIRE(got.sizes() == want.sizes());
      double dg = (got.to(torch::kDouble) - want).abs().max().item<double>();
      CHECK(((got.to(torch::kDouble) - want).abs() <= tol + rel * want.abs()).all().item<bool>());
      worst_grad = std::max(worst_grad, dg);
      char buf[96];
      std::snprintf(buf, sizeof buf, "  d%s %.2e (max|g| %.3g)", g.c_str(), dg, want.abs().max().item<double>());
      line += buf;
    }
    if (report)
      std::printf("%-7s %-16s loss %.10g  dloss %.2e%s\n", c10::toString(dt), name.c_str(), ref, dl, line.c_str());
  }
  return {worst_loss, worst_grad};
}

// Debian's interpreter (python3-torch is installed for it, not for a pyenv/venv python3 on PATH);
// HFR_REFERENCE_PYTHON overrides it.
std::string reference_python() {
  const char* p = std::getenv("HFR_REFERENCE_PYTHON");
  return p && *p ? p : "/usr/bin/python3";
}

bool python_torch_available() {
  return std::system(("'" + reference_python() + "' -c 'import torch' >/dev/null 2>&1").c_str()) == 0;
}

torch::Tensor unit_rows(const torch::Tensor& x) { return x / x.norm(2, {1}, true); }

}  // namespace

TEST_CASE("losses: golden fixtures from python3-torch, float64 within 1e-5", "[losses]") {
  json doc = load_json(kFixture);
  CHECK(doc.at("cases").size() == 10);
  auto [dl, dg] = compare(doc, torch::kDouble, 1e-5);
  CHECK(dl < 1e-9);  // float64 throughout: far below the 1e-5 requirement
  CHECK(dg < 1e-9);
}

TEST_CASE("losses: golden fixtures in float32", "[losses]") {
  // float32 inputs and arithmetic: measured <= 2.5e-6 on the losses (~50 for s = 64) and <= 1e-6 on the
  // gradients; the relative term leaves room for another BLAS summing in another order.
  compare(load_json(kFixture), torch::kFloat, 1e-5, 1e-6);
}

TEST_CASE("losses: fresh inputs against python3-torch", "[losses]") {
  if (!python_torch_available()) {
    WARN("skipped: " << reference_python() << " cannot import torch (apt-get install python3-torch)");
    return;
  }
  char tmpl[] = "/tmp/hfr-losses-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  std::random_device rd;
  for (int i = 0; i < 3; ++i) {
    unsigned seed = rd() % 1000000000u;
    bool random_shapes = i > 0;
    const std::string out = dir + "/losses-" + std::to_string(i) + ".json";
    const std::string cmd = "'" + reference_python() + "' '" + kScript + "' --seed " + std::to_string(seed) +
                            (random_shapes ? " --random-shapes" : "") + " --out '" + out + "' 2>/dev/null";
    INFO("reproduce: " << cmd);
    REQUIRE(std::system(cmd.c_str()) == 0);
    json doc = load_json(out);
    INFO("sizes " << doc.at("sizes").dump());
    compare(doc, torch::kDouble, 1e-5);
    std::filesystem::remove(out);
  }
  std::filesystem::remove(dir);
}

TEST_CASE("losses: ID-MMD is zero for coinciding centres and grows as they separate", "[losses]") {
  torch::manual_seed(11);
  const int64_t K = 5, P = 3, D = 12;
  torch::Tensor ids = contiguous_ids(K, P);
  CHECK(torch::equal(ids, torch::tensor({0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4}, torch::kLong)));
  torch::Tensor base = torch::randn({K, D}, torch::kDouble);
  torch::Tensor f_vis = base.index_select(0, ids) + 0.3 * torch::randn({K * P, D}, torch::kDouble);
  // NIR rows differ from the VIS rows but have the same per-identity means
  torch::Tensor noise = torch::randn({K * P, D}, torch::kDouble);
  noise = noise - noise.view({K, P, D}).mean(1, true).expand({K, P, D}).reshape({K * P, D});
  IdMmdOptions raw;
  raw.normalize = false;
  CHECK(std::abs(id_mmd(f_vis, ids, f_vis + noise, ids, raw).item<double>()) < 1e-12);
  CHECK(std::abs(id_mmd_linear(f_vis, ids, f_vis + noise, ids, raw).item<double>()) < 1e-12);
  // the rows may come in any order
  torch::Tensor order = torch::randperm(K * P, torch::kLong);
  CHECK(std::abs(id_mmd(f_vis, ids, f_vis.index_select(0, order), ids.index_select(0, order)).item<double>()) < 1e-12);
  // all centres identical: sigma0 = 0 is floored, the loss is 0 and finite
  torch::Tensor same = torch::ones({K * P, D}, torch::kDouble);
  CHECK(id_mmd(same, ids, same, ids).item<double>() == 0.0);

  torch::Tensor dir = torch::randn({1, D}, torch::kDouble);
  double previous = -1, previous_linear = -1;
  for (double t : {0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6}) {
    INFO("separation " << t);
    double l = id_mmd(f_vis, ids, f_vis + t * dir, ids, raw).item<double>();
    double lin = id_mmd_linear(f_vis, ids, f_vis + t * dir, ids, raw).item<double>();
    CHECK(l > previous);
    CHECK(lin > previous_linear);
    CHECK(lin == Approx(t * t * dir.pow(2).sum().item<double>()).margin(1e-12));
    previous = l;
    previous_linear = lin;
  }
  CHECK(previous > 0.5);
}

TEST_CASE("losses: linear ID-MMD matches a hand computation", "[losses]") {
  auto T = [](std::vector<double> v, int64_t rows) { return torch::tensor(v, torch::kDouble).view({rows, -1}); };
  auto I = [](std::vector<int64_t> v) { return torch::tensor(v, torch::kLong); };
  IdMmdOptions raw;
  raw.normalize = false;
  // raw centres: VIS id0 (2,0), id1 (0,2); NIR id0 (2,2), id1 (1,2): (4 + 1) / 2
  torch::Tensor v = T({1, 0, 0, 1, 3, 0, 0, 3}, 4), n = T({2, 1, 1, 2, 2, 3, 1, 2}, 4);
  CHECK(id_mmd_linear(v, I({0, 1, 0, 1}), n, I({0, 1, 0, 1}), raw).item<double>() == Approx(2.5).epsilon(1e-14));
  // normalised: VIS id0 (3,0),(0,4) -> centre (.5,.5); NIR id0 (0,2),(0,7) -> (0,1): 0.5
  //             VIS id1 (0,-5) -> (0,-1); NIR id1 (-1,0),(-3,0) -> (-1,0): 2   => mean 1.25
  v = T({3, 0, 0, 4, 0, -5}, 3);
  n = T({0, 2, -1, 0, 0, 7, -3, 0}, 4);
  CHECK(id_mmd_linear(v, I({0, 0, 1}), n, I({0, 1, 0, 1})).item<double>() == Approx(1.25).epsilon(1e-14));
  PairedCentres c = paired_centres(v, I({0, 0, 1}), n, I({0, 1, 0, 1}));
  CHECK(torch::allclose(c.vis, T({0.5, 0.5, 0, -1}, 2)));
  CHECK(torch::allclose(c.nir, T({0, 1, -1, 0}, 2)));

  // identities in one modality only: an error by default, left out with Unpaired::skip
  IdMmdOptions skip;
  skip.unpaired = Unpaired::skip;
  torch::Tensor v3 = torch::cat({v, T({1, 1}, 1)}), n3 = torch::cat({n, T({5, 5}, 1)});
  CHECK_THROWS_WITH(id_mmd_linear(v3, I({0, 0, 1, 7}), n3, I({0, 1, 0, 1, 9})),
                    Catch::Contains("identity 7 has VIS rows but no NIR rows"));
  CHECK(id_mmd_linear(v3, I({0, 0, 1, 7}), n3, I({0, 1, 0, 1, 9}), skip).item<double>() == Approx(1.25));
  CHECK(id_mmd(v3, I({0, 0, 1, 7}), n3, I({0, 1, 0, 1, 9}), skip).item<double>() ==
        Approx(id_mmd(v, I({0, 0, 1}), n, I({0, 1, 0, 1})).item<double>()));
}

TEST_CASE("losses: CosFace with m = 0 (and ArcFace with m = 0) is normalised softmax CE at scale s", "[losses]") {
  torch::manual_seed(5);
  torch::Tensor f = torch::randn({6, 9}, torch::kDouble), w = torch::randn({7, 9}, torch::kDouble);
  torch::Tensor y = torch::tensor({0, 3, 6, 2, 2, 5}, torch::kLong);
  for (double s : {1.0, 16.0, 64.0}) {
    torch::Tensor f1 = f.clone().requires_grad_(), w1 = w.clone().requires_grad_();
    torch::Tensor plain = torch::nn::functional::cross_entropy(s * torch::mm(unit_rows(f1), unit_rows(w1).t()), y);
    plain.backward();
    for (MarginOptions o : {MarginOptions::cosface(s, 0.0), MarginOptions::arcface(s, 0.0)}) {
      torch::Tensor f2 = f.clone().requires_grad_(), w2 = w.clone().requires_grad_();
      torch::Tensor l = margin_loss(f2, y, w2, o);
      l.backward();
      CHECK(l.item<double>() == Approx(plain.item<double>()).epsilon(1e-12));
      CHECK(torch::allclose(f2.grad(), f1.grad(), 1e-10, 1e-12));
      CHECK(torch::allclose(w2.grad(), w1.grad(), 1e-10, 1e-12));
    }
  }
  // the margin only touches the target logit: CosFace lowers it by exactly s*m
  torch::Tensor a = margin_logits(f, y, w, MarginOptions::cosface(64, 0.0));
  torch::Tensor b = margin_logits(f, y, w, MarginOptions::cosface(64, 0.4));
  torch::Tensor diff = a - b;
  CHECK(torch::allclose(diff.gather(1, y.unsqueeze(1)), torch::full({6, 1}, 64 * 0.4, torch::kDouble)));
  CHECK(torch::allclose(diff.scatter(1, y.unsqueeze(1), 0.0), torch::zeros({6, 7}, torch::kDouble)));
  // ArcFace target logit: s*cos(theta+m) inside the threshold, s*(cos - m sin m) beyond it
  torch::Tensor wn = unit_rows(w);
  torch::Tensor f_near = wn.index_select(0, y) * 2;     // theta = 0: cos(m)
  torch::Tensor f_far = -wn.index_select(0, y) * 2;     // theta = pi: -1 - m sin m
  torch::Tensor ln = margin_logits(f_near, y, w, MarginOptions::arcface(1.0, 0.5)).gather(1, y.unsqueeze(1));
  torch::Tensor lf = margin_logits(f_far, y, w, MarginOptions::arcface(1.0, 0.5)).gather(1, y.unsqueeze(1));
  CHECK(torch::allclose(ln, torch::full({6, 1}, std::cos(0.5), torch::kDouble), 1e-6, 1e-6));
  CHECK(torch::allclose(lf, torch::full({6, 1}, -1 - 0.5 * std::sin(0.5), torch::kDouble), 1e-9, 1e-9));
  torch::Tensor le = margin_logits(f_far, y, w, MarginOptions::arcface(1.0, 0.5, true)).gather(1, y.unsqueeze(1));
  CHECK(torch::allclose(le, torch::full({6, 1}, -1.0, torch::kDouble), 1e-9, 1e-9));
  // float32 in, float32 out, finite gradients even at theta = 0 and pi
  torch::Tensor f32 = torch::cat({f_near, f_far}).to(torch::kFloat).requires_grad_();
  torch::Tensor l32 = margin_loss(f32, torch::cat({y, y}), w.to(torch::kFloat), MarginOptions::arcface());
  l32.backward();
  CHECK(l32.scalar_type() == torch::kFloat);
  CHECK(torch::isfinite(f32.grad()).all().item<bool>());
}

TEST_CASE("losses: MarginHead owns a seeded W and computes margin_loss", "[losses]") {
  MarginHead a(16, 10, MarginOptions::cosface(), 42), b(16, 10, MarginOptions::cosface(), 42);
  MarginHead c(16, 10, MarginOptions::arcface(), 43);
  CHECK(a->weight.sizes() == torch::IntArrayRef({10, 16}));
  CHECK(a->weight.requires_grad());
  CHECK(torch::equal(a->weight, b->weight));
  CHECK_FALSE(torch::equal(a->weight, c->weight));
  CHECK(a->parameters().size() == 1);
  CHECK(a->named_parameters().contains("weight"));
  double sd = a->weight.std().item<double>();
  CHECK(sd == Approx(std::sqrt(2.0 / 26)).epsilon(0.2));
  torch::manual_seed(2);
  torch::Tensor f = torch::randn({4, 16}).requires_grad_();
  torch::Tensor y = torch::tensor({1, 9, 0, 4}, torch::kLong);
  torch::Tensor l = a->forward(f, y);
  CHECK(l.item<float>() == Approx(margin_loss(f, y, a->weight).item<float>()));
  CHECK(a->logits(f, y).sizes() == torch::IntArrayRef({4, 10}));
  l.backward();
  CHECK(a->weight.grad().defined());
  CHECK(f.grad().defined());
  CHECK(c->options().kind == MarginKind::arcface);
  CHECK(c->options().m == 0.5);
  CHECK_THROWS_AS(MarginHead(16, 1), Error);
}

TEST_CASE("losses: switch load balancing equals alpha when balanced", "[losses]") {
  for (int64_t N : {1, 2, 4, 7}) {
    INFO("N = " << N);
    torch::Tensor uniform = torch::full({3 * N, N}, 1.0 / static_cast<double>(N), torch::kDouble);
    CHECK(switch_balance_loss(uniform).item<double>() == Approx(0.01).epsilon(1e-12));
    CHECK(switch_balance_loss(uniform, 0.5).item<double>() == Approx(0.5).epsilon(1e-12));
    // one-hot routing, each expert used by the same number of rows
    torch::Tensor onehot = torch::eye(N, torch::kDouble).repeat({3, 1});
    CHECK(switch_balance_loss(onehot).item<double>() == Approx(0.01).epsilon(1e-12));
    // everything on expert 0: alpha * N (the maximum)
    torch::Tensor collapsed = torch::zeros({5, N}, torch::kDouble);
    collapsed.select(1, 0).fill_(1.0);
    CHECK(switch_balance_loss(collapsed).item<double>() == Approx(0.01 * static_cast<double>(N)).epsilon(1e-12));
  }
  // the gradient flows through P only: d/dp_bi = alpha * N * f_i / B
  torch::Tensor p = torch::tensor({0.7, 0.2, 0.1, 0.6, 0.3, 0.1, 0.1, 0.1, 0.8, 0.2, 0.5, 0.3}, torch::kDouble)
                        .view({4, 3})
                        .requires_grad_();
  switch_balance_loss(p).backward();
  torch::Tensor f = torch::tensor({0.5, 0.25, 0.25}, torch::kDouble);
  CHECK(torch::allclose(p.grad(), (0.01 * 3 * f / 4).expand({4, 3})));
}

TEST_CASE("losses: the routing hint is the cross-entropy of the asked expert", "[losses]") {
  torch::Tensor p = torch::tensor({0.7, 0.2, 0.1, 0.1, 0.6, 0.3, 0.25, 0.25, 0.5}, torch::kDouble).view({3, 3}).requires_grad_();
  torch::Tensor e = torch::tensor({0, 1, 2}, torch::kLong);
  torch::Tensor l = routing_hint_loss(p, e);
  CHECK(l.item<double>() == Approx(-(std::log(0.7) + std::log(0.6) + std::log(0.5)) / 3).epsilon(1e-12));
  l.backward();
  // d/dp_i,e_i = -1 / (B p_i,e_i), zero elsewhere
  torch::Tensor g = torch::zeros({3, 3}, torch::kDouble);
  g[0][0] = -1 / (3 * 0.7), g[1][1] = -1 / (3 * 0.6), g[2][2] = -1 / (3 * 0.5);
  CHECK(torch::allclose(p.grad(), g));
  // one-hot on the asked expert: 0; a zero probability stays finite
  CHECK(routing_hint_loss(torch::eye(3, torch::kDouble), e).item<double>() == Approx(0).margin(1e-12));
  CHECK(std::isfinite(routing_hint_loss(torch::eye(3, torch::kDouble), torch::tensor({1, 2, 0})).item<double>()));
  CHECK_THROWS_AS(routing_hint_loss(p.detach(), torch::tensor({0, 1, 3})), Error);
  CHECK_THROWS_AS(routing_hint_loss(p.detach(), torch::tensor({0, 1})), Error);
  CHECK_THROWS_AS(routing_hint_loss(p.detach(), torch::tensor({0.0, 1.0, 2.0})), Error);
}

TEST_CASE("losses: the routing hint keeps the gallery modality's expert to itself", "[losses]") {
  auto experts = [](std::int64_t m, std::int64_t e) {
    const torch::Tensor t = route_hint_experts(m, e);
    REQUIRE(t.scalar_type() == torch::kLong);
    return std::vector<std::int64_t>(t.data_ptr<std::int64_t>(), t.data_ptr<std::int64_t>() + t.numel());
  };
  using V = std::vector<std::int64_t>;
  CHECK(experts(3, 3) == V{0, 1, 2});        // one expert per modality
  CHECK(experts(2, 3) == V{0, 1});
  CHECK(experts(3, 2) == V{0, 1, 1});        // VIS, NIR850, NIR940 with 2 experts: the NIR bands share
  CHECK(experts(5, 3) == V{0, 1, 2, 1, 2});  // probes cycle over the experts the gallery does not use
  CHECK(experts(3, 1) == V{0, 0, 0});
  CHECK(experts(1, 4) == V{0});
  CHECK_THROWS_WITH(route_hint_experts(0, 2), Catch::Contains("routing hint"));
  CHECK_THROWS_AS(route_hint_experts(2, 0), Error);
}

TEST_CASE("losses: DVG contrastive and teacher-student on hand-made inputs", "[losses]") {
  // positives identical (cos 1), negatives orthogonal (hinge inactive): -1
  torch::Tensor e = torch::eye(3, torch::kDouble);
  torch::Tensor perm = torch::tensor({1, 2, 0}, torch::kLong);
  CHECK(dvg_contrastive(e, e, perm).item<double>() == Approx(-1.0));
  // negatives identical to the NIR row: -mean cos_pos + 0.1 * (1 - 0.5)
  torch::Tensor v = e.index_select(0, torch::tensor({2, 0, 1}, torch::kLong));  // v[perm[i]] = e[i]
  CHECK(dvg_contrastive(e, v, perm).item<double>() == Approx(0.0 + 0.1 * 0.5));
  CHECK(dvg_contrastive(e, v, perm, 0.5, 1.0).item<double>() == Approx(0.5));

  torch::Tensor d1 = random_derangement(9, 123), d2 = random_derangement(9, 123);
  CHECK(torch::equal(d1, d2));
  CHECK_FALSE((d1 == torch::arange(9, torch::kLong)).any().item<bool>());
  CHECK(torch::equal(std::get<0>(d1.sort()), torch::arange(9, torch::kLong)));
  CHECK(torch::equal(random_derangement(2, 7), torch::tensor({1, 0}, torch::kLong)));
  bool differs = false;
  for (uint64_t s = 1; s < 6 && !differs; ++s) differs = !torch::equal(random_derangement(9, s), d1);
  CHECK(differs);

  torch::Tensor s = torch::tensor({1.0, 0.0, 0.0, 2.0}, torch::kDouble).view({2, 2}).requires_grad_();
  torch::Tensor t = torch::tensor({3.0, 0.0, 1.0, 1.0}, torch::kDouble).view({2, 2}).requires_grad_();
  torch::Tensor l = teacher_student_loss(s, t);  // cos 1 and 1/sqrt(2)
  CHECK(l.item<double>() == Approx(1 - (1 + std::sqrt(0.5)) / 2));
  l.backward();
  CHECK_FALSE(t.grad().defined());
  CHECK(s.grad().defined());
  CHECK(teacher_student_loss(t, t).item<double>() == Approx(0.0).margin(1e-15));
}

TEST_CASE("losses: bad inputs throw hfr::Error", "[losses]") {
  torch::Tensor f = torch::randn({4, 8}), w = torch::randn({5, 8});
  torch::Tensor y = torch::tensor({0, 1, 2, 4}, torch::kLong);
  torch::Tensor nan = f.clone();
  nan[1][2] = std::nanf("");
  torch::Tensor inf = f.clone();
  inf[0][0] = INFINITY;
  using Catch::Contains;
  // margin heads
  CHECK_THROWS_WITH(margin_loss(f.view({4, 2, 4}), y, w), Contains("features must be 2-D"));
  CHECK_THROWS_WITH(margin_loss(f, y, torch::randn({5, 7})), Contains("weight has 7 columns, expected 8"));
  CHECK_THROWS_WITH(margin_loss(f, torch::tensor({0, 1, 2}), w), Contains("labels has 3 entries, expected 4"));
  CHECK_THROWS_WITH(margin_loss(f, torch::tensor({0, 1, 2, 5}), w), Contains("labels must lie in [0, 5)"));
  CHECK_THROWS_WITH(margin_loss(f, torch::tensor({0, -1, 2, 3}), w), Contains("labels must lie in [0, 5)"));
  CHECK_THROWS_WITH(margin_loss(f, y.to(torch::kFloat), w), Contains("labels must be an integer tensor"));
  CHECK_THROWS_WITH(margin_loss(nan, y, w), Contains("features contains NaN or Inf"));
  CHECK_THROWS_WITH(margin_loss(f, y, inf), Contains("weight contains NaN or Inf"));
  CHECK_THROWS_WITH(margin_loss(f, torch::zeros({4}, torch::kLong), torch::randn({1, 8})),
                    Contains("at least 2 classes"));
  CHECK_THROWS_WITH(margin_loss(f, y, w.to(torch::kDouble)), Contains("same dtype"));
  CHECK_THROWS_WITH(margin_loss(f.to(torch::kInt), y, w), Contains("features must be a float tensor"));
  CHECK_THROWS_WITH(margin_loss(f, y, w, MarginOptions::arcface(64, 2.0)), Contains("below pi/2"));
  CHECK_THROWS_WITH(margin_loss(f, y, w, MarginOptions::cosface(0.0)), Contains("scale s must be positive"));
  CHECK_THROWS_WITH(margin_loss(torch::Tensor(), y, w), Contains("undefined"));
  CHECK_THROWS_AS(margin_loss(torch::randn({0, 8}), torch::zeros({0}, torch::kLong), w), Error);
  // ID-MMD
  torch::Tensor ids = torch::tensor({0, 0, 1, 1}, torch::kLong);
  CHECK_NOTHROW(id_mmd(f, ids, f, ids));
  CHECK_THROWS_WITH(id_mmd(f, torch::zeros({4}, torch::kLong), f, torch::zeros({4}, torch::kLong)),
                    Contains("at least 2 identities present in both modalities, got 1"));
  CHECK_THROWS_WITH(id_mmd_linear(f, torch::zeros({4}, torch::kLong), f, torch::zeros({4}, torch::kLong)),
                    Contains("at least 2 identities"));
  CHECK_THROWS_WITH(id_mmd(f, ids, f, torch::tensor({0, 0, 2, 2})), Contains("identity 1 has VIS rows but no NIR"));
  IdMmdOptions skip;
  skip.unpaired = Unpaired::skip;
  CHECK_THROWS_WITH(id_mmd(f, ids, f, torch::tensor({0, 0, 2, 2}), skip), Contains("got 1"));
  CHECK_THROWS_WITH(id_mmd(f, ids, torch::randn({4, 6}), ids), Contains("f_nir has 6 columns, expected 8"));
  CHECK_THROWS_WITH(id_mmd(f, ids.view({2, 2}), f, ids), Contains("ids_vis must be 1-D"));
  CHECK_THROWS_WITH(id_mmd(f, ids, nan, ids), Contains("f_nir contains NaN or Inf"));
  CHECK_THROWS_WITH(id_mmd(f, ids, f, ids.to(torch::kDouble)), Contains("ids_nir must be an integer tensor"));
  CHECK_THROWS_WITH(id_mmd_centres(f.narrow(0, 0, 1), f.narrow(0, 1, 1)), Contains("at least 2 identities, got 1"));
  CHECK_THROWS_WITH(id_mmd_centres(f, f.narrow(0, 0, 3)), Contains("c_nir has 3 rows, expected 4"));
  CHECK_THROWS_AS(contiguous_ids(0, 2), Error);
  // DVG
  torch::Tensor d = torch::tensor({1, 0, 3, 2}, torch::kLong);
  CHECK_NOTHROW(dvg_contrastive(f, f, d));
  CHECK_THROWS_WITH(dvg_contrastive(f, f, torch::tensor({1, 0, 2, 3})), Contains("not a derangement: perm[2] = 2"));
  CHECK_THROWS_WITH(dvg_contrastive(f, f, torch::tensor({1, 1, 3, 2})), Contains("not a permutation"));
  CHECK_THROWS_WITH(dvg_contrastive(f, f, torch::tensor({1, 0, 3, 4})), Contains("not a permutation"));
  CHECK_THROWS_WITH(dvg_contrastive(f, f.narrow(0, 0, 3), d), Contains("f_vis has 3 rows, expected 4"));
  CHECK_THROWS_WITH(dvg_contrastive(f.narrow(0, 0, 1), f.narrow(0, 0, 1), torch::zeros({1}, torch::kLong)),
                    Contains("at least 2 pairs"));
  CHECK_THROWS_WITH(dvg_contrastive(inf, f, d), Contains("f_nir contains NaN or Inf"));
  CHECK_THROWS_AS(random_derangement(1, 0), Error);
  // switch balancing
  torch::Tensor logits = torch::randn({6, 3});
  CHECK_NOTHROW(switch_balance_loss(torch::softmax(logits, 1)));
  CHECK_THROWS_WITH(switch_balance_loss(logits), Contains("pass softmax(logits)"));
  CHECK_THROWS_WITH(switch_balance_loss(torch::softmax(logits, 1).view({-1})), Contains("must be 2-D"));
  torch::Tensor pn = torch::softmax(logits, 1);
  pn[0][0] = std::nanf("");
  CHECK_THROWS_WITH(switch_balance_loss(pn), Contains("NaN"));
  // teacher-student
  CHECK_THROWS_WITH(teacher_student_loss(f, torch::randn({4, 7})), Contains("teacher has 7 columns, expected 8"));
  CHECK_THROWS_WITH(teacher_student_loss(f, nan), Contains("teacher contains NaN or Inf"));
}

TEST_CASE("losses: recognisability index on hand-made geometry", "[losses]") {
  const double pi = M_PI;
  auto row = [](double a) { return std::vector<double>{std::cos(a), std::sin(a)}; };
  auto mat = [](const std::vector<std::vector<double>>& rows) {
    torch::Tensor t = torch::empty({static_cast<int64_t>(rows.size()), 2}, torch::kDouble);
    for (size_t i = 0; i < rows.size(); ++i)
      for (int j = 0; j < 2; ++j) t[static_cast<int64_t>(i)][j] = rows[i][static_cast<size_t>(j)];
    return t;
  };
  const torch::Tensor W = mat({row(0), row(pi / 2)});  // class 0 along x, class 1 along y
  const torch::Tensor labels = torch::zeros({5}, torch::kLong);
  // features (scaled: the index normalises them): on the prototype; 30 degrees off it; on the
  // other class; between both; next to the UI centre
  const torch::Tensor f = mat({row(0), row(pi / 6), row(pi / 2), row(pi / 4), row(pi - 1e-3)}) * 3.0;
  const torch::Tensor u = torch::tensor({-2.0, 0.0}, torch::kDouble);  // UI centre at 180 degrees
  const torch::Tensor ri = losses::recognisability_index(f, labels, W, u);
  REQUIRE(ri.sizes() == torch::IntArrayRef({5}));
  CHECK(ri[0].item<double>() == Approx(1.0).margin(1e-12));
  CHECK(ri[1].item<double>() == Approx(2.0 / 3).margin(1e-12));  // 60 / (60 + 30) degrees, 150 from UI
  CHECK(ri[2].item<double>() == Approx(0.0).margin(1e-12));      // on the other class
  CHECK(ri[3].item<double>() == Approx(0.5).margin(1e-12));      // equidistant
  CHECK(ri[4].item<double>() < 0.01);                             // at the UI centre (and between classes)
  // the UI factor: a UI centre 45 degrees from a sample on its prototype halves the index
  const torch::Tensor u45 = torch::tensor({1.0, 1.0}, torch::kDouble);
  CHECK(losses::recognisability_index(mat({row(0)}), torch::zeros({1}, torch::kLong), W, u45)[0].item<double>() ==
        Approx(0.5).margin(1e-12));
  CHECK_FALSE(ri.requires_grad());
  CHECK_THROWS_AS(losses::recognisability_index(f, labels, W.narrow(0, 0, 1), u), Error);  // one class
  CHECK_THROWS_AS(losses::recognisability_index(f, labels, W, torch::zeros({3}, torch::kDouble)), Error);
  CHECK_THROWS_AS(losses::recognisability_index(f, torch::full({5}, 2, torch::kLong), W, u), Error);
}

TEST_CASE("losses: index diversion pushes low-index samples out of the UI cone", "[losses]") {
  const torch::Tensor u = torch::tensor({1.0, 0.0}, torch::kDouble);
  torch::Tensor f = torch::tensor({{1.0, 0.0}, {0.2, 0.98}, {0.8, 0.6}}, torch::kDouble).requires_grad_(true);
  const torch::Tensor ri = torch::tensor({0.0, 0.0, 1.0}, torch::kDouble);
  torch::Tensor loss = losses::index_diversion_loss(f, ri, u, 0.5);
  // row 0: inside the cone, RI 0: (1 - 0) * (1 - 0.5); row 1: outside (cos 0.2); row 2: RI 1
  CHECK(loss.item<double>() == Approx(0.5 / 3).margin(1e-9));
  loss.backward();
  CHECK(f.grad()[1].abs().sum().item<double>() == 0);
  CHECK(f.grad()[2].abs().sum().item<double>() == 0);
  // a small step against the gradient turns row 0 away from the UI centre
  torch::Tensor g = f.grad()[0].clone();
  CHECK(g.abs().sum().item<double>() == 0);  // at the centre exactly the cosine is flat (normalised feature)
  torch::Tensor f2 = torch::tensor({{0.9, 0.3}}, torch::kDouble).requires_grad_(true);
  losses::index_diversion_loss(f2, torch::zeros({1}, torch::kDouble), u, 0.5).backward();
  torch::Tensor moved = (f2.detach() - 0.1 * f2.grad());
  const double before = 0.9 / std::sqrt(0.9 * 0.9 + 0.3 * 0.3);
  const double after = moved[0][0].item<double>() / moved[0].norm().item<double>();
  CHECK(after < before);
  CHECK_THROWS_AS(losses::index_diversion_loss(f2, torch::zeros({2}, torch::kDouble), u, 0.5), Error);
  CHECK_THROWS_AS(losses::index_diversion_loss(f2, torch::zeros({1}, torch::kDouble), u, 2.0), Error);
}
