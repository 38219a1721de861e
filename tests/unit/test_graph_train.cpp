// Trainable programs: autograd through the graph executor, fine-tuned weights
// written back into hfr model files.
#include "torch_catch.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <set>

#include "hfr/error.hpp"
#include "hfr/graph.hpp"
#include "graph_helpers.hpp"
#include "hfr/model.hpp"
#include "model_files.hpp"

using namespace hfr;
using hfr::test::add_const;
using nn::Graph;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

const char* kDlibFile = "face-api/face_recognition_model-weights_manifest.json";

struct TempDir {
  fs::path p = fs::temp_directory_path() / ("hfr_graph_train_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(p); }
  ~TempDir() { fs::remove_all(p); }
};

// Every kind of parameter the importers produce (filter, depthwise filter,
// bias, per-channel scale and offset, dense matrix and bias), smooth
// activations so finite differences are meaningful, and constants that are
// not parameters (a rank-0 scale, integer paddings and axes).
Graph tiny_graph() {
  torch::manual_seed(11);
  Graph g;
  g.nodes.push_back({"x", "Placeholder", {}, {{"shape", {-1, 8, 8, 2}}}});
  add_const(g, "w1", torch::randn({3, 3, 2, 4}) * 0.5);
  add_const(g, "b1", torch::randn({4}) * 0.1);
  add_const(g, "s1", torch::rand({4}) + 0.5);
  add_const(g, "f2", torch::randn({3, 3, 4, 1}) * 0.5);
  add_const(g, "o2", torch::randn({4}) * 0.1);
  add_const(g, "half", torch::tensor(0.5f));
  add_const(g, "pads", torch::tensor(std::vector<std::int64_t>{0, 0, 1, 1, 1, 1, 0, 0}).reshape({4, 2}));
  add_const(g, "axes", torch::tensor(std::vector<std::int64_t>{1, 2}));
  add_const(g, "fm", torch::randn({4, 3}));
  add_const(g, "fb", torch::randn({3}) * 0.1);
  g.nodes.push_back({"c1", "Conv2D", {"x", "w1"}, {{"strides", {1, 1, 1, 1}}, {"padding", "SAME"}}});
  g.nodes.push_back({"a1", "BiasAdd", {"c1", "b1"}, {}});
  g.nodes.push_back({"m1", "Mul", {"a1", "s1"}, {}});
  g.nodes.push_back({"t1", "Tanh", {"m1"}, {}});
  g.nodes.push_back({"p1", "Pad", {"t1", "pads"}, {}});
  g.nodes.push_back({"d2", "DepthwiseConv2dNative", {"p1", "f2"}, {{"strides", {1, 2, 2, 1}}, {"padding", "VALID"}}});
  g.nodes.push_back({"a2", "Add", {"d2", "o2"}, {}});
  g.nodes.push_back({"e2", "Elu", {"a2"}, {}});
  g.nodes.push_back({"h2", "Mul", {"e2", "half"}, {}});
  g.nodes.push_back({"mean", "Mean", {"h2", "axes"}, {{"keep_dims", false}}});
  g.nodes.push_back({"y", "_FusedMatMul", {"mean", "fm", "fb"}, {{"fused_ops", {"BiasAdd"}}}});
  return g;
}

nn::Model tiny_model() {
  nn::Model m;
  m.name = "tiny";
  m.task = "embedding";
  m.graph = tiny_graph();
  m.input = "x";
  m.outputs = {{"embedding", "y"}};
  m.pre.size = 8;
  m.dim = 3;
  m.provenance = {{"source", "test"}};
  m.checksum = nn::model_checksum(m);
  return m;
}

nn::CompileOptions trainable() {
  nn::CompileOptions o;
  o.trainable = true;
  return o;
}

double max_abs(const torch::Tensor& t) { return t.abs().max().item<double>(); }

}  // namespace

TEST_CASE("graph train: parameters are the float constants of rank >= 1, leaves shaped like the graph's",
          "[graph][train]") {
  Graph g = tiny_graph();
  nn::Program p(g, "x", {"y"}, "t", trainable());
  CHECK(p.trainable());
  std::set<std::string> names;
  for (const auto& [name, t] : p.parameters()) {
    names.insert(name);
    CHECK(t.requires_grad());
    CHECK(t.is_leaf());
    CHECK(t.sizes().vec() == g.consts.at(name).sizes().vec());
    CHECK(torch::equal(t.detach(), g.consts.at(name)));
    CHECK(t.data_ptr() != g.consts.at(name).data_ptr());  // training changes the program's copy, not the graph
  }
  CHECK(names == std::set<std::string>{"w1", "b1", "s1", "f2", "o2", "fm", "fb"});
  // the inference program: no parameters, the same folding, same results
  nn::Program inf(g, "x", {"y"}, "t");
  CHECK_FALSE(inf.trainable());
  CHECK(inf.parameters().empty());
  CHECK(inf.steps() == p.steps());
  nn::CompileOptions nofuse = trainable();
  nofuse.fuse = false;
  nn::Program plain(g, "x", {"y"}, "t", nofuse);
  CHECK(plain.steps() > p.steps());
  CHECK(plain.parameters().size() == p.parameters().size());
  auto x = torch::randn({3, 2, 8, 8});
  auto a = p.forward(x)[0], b = inf.run(x)[0];
  CHECK(a.requires_grad());
  CHECK_FALSE(p.run(x)[0].requires_grad());
  CHECK(torch::allclose(a.detach(), b, 1e-5, 1e-5));
  CHECK(torch::allclose(plain.forward(x)[0].detach(), b, 1e-5, 1e-5));
}

TEST_CASE("graph train: gradients agree with central finite differences", "[graph][train]") {
  Graph g = tiny_graph();
  // affine layers folded into the convolutions at run time, or kept apart
  nn::CompileOptions o = trainable();
  o.fuse = GENERATE(true, false);
  INFO("fuse " << o.fuse);
  nn::Program p(g, "x", {"y"}, "t", o);
  torch::manual_seed(12);
  auto x = torch::randn({2, 2, 8, 8}).requires_grad_(true);
  auto r = torch::randn({2, 3});
  auto loss = [&] { return (p.run(x)[0] * r).sum().item<double>(); };
  auto y = p.forward(x)[0];
  CHECK(y.sizes().vec() == std::vector<std::int64_t>{2, 3});
  (y * r).sum().backward();
  const double h = 1e-2;
  auto check_direction = [&](torch::Tensor t, const std::string& what) {
    INFO(what);
    REQUIRE(t.grad().defined());
    // the derivative along a random unit direction: every entry takes part
    auto d = torch::randn(t.sizes());
    d /= d.norm();
    double analytic = (t.grad() * d).sum().item<double>();
    torch::NoGradGuard ng;
    t.add_(d * h);  // in place, as an optimizer would: the program sees the new value
    double plus = loss();
    t.sub_(d * (2 * h));
    double minus = loss();
    t.add_(d * h);
    double numeric = (plus - minus) / (2 * h);
    CHECK(std::abs(numeric - analytic) <= 2e-4 + 5e-3 * std::abs(analytic));
    CHECK(std::abs(analytic) > 1e-3);  // a real gradient, not zero against zero
  };
  for (const auto& [name, t] : p.parameters()) check_direction(t, "parameter " + name);
  check_direction(x, "input");
}

TEST_CASE("graph train: frozen parameters get no gradient, the others do", "[graph][train]") {
  Graph g = tiny_graph();
  nn::Program p(g, "x", {"y"}, "t", trainable());
  auto params = p.parameters();
  for (auto& [name, t] : params)
    if (name == "w1" || name == "s1") t.requires_grad_(false);
  p.forward(torch::randn({2, 2, 8, 8}))[0].sum().backward();
  for (const auto& [name, t] : params) {
    INFO(name);
    CHECK(t.grad().defined() == (name != "w1" && name != "s1"));
  }
}

TEST_CASE("graph train: the dlib ResNet's trainable forward matches its inference run", "[graph][train][model]") {
  if (!test::have_model_file(kDlibFile)) return;
  nn::Model m = nn::import_builtin("dlib", test::model_dir());
  nn::Program inf = nn::compile(m, {"embedding"}), tr = nn::compile(m, {"embedding"}, trainable());
  std::size_t float_consts = 0;
  for (const auto& [name, t] : m.graph.consts) float_consts += t.is_floating_point() && t.dim() >= 1;
  auto params = tr.parameters();
  CHECK(params.size() == float_consts);
  torch::manual_seed(21);
  auto x = torch::rand({2, 3, 150, 150}) - 0.45;
  auto a = tr.forward(x)[0], b = inf.run(x)[0];
  REQUIRE(a.sizes().vec() == std::vector<std::int64_t>{2, 128});
  CHECK(max_abs(a.detach() - b) <= 1e-4 * max_abs(b));
  CHECK(max_abs(tr.run(x)[0] - b) <= 1e-4 * max_abs(b));
  a.square().sum().backward();
  for (const auto& [name, t] : params) {
    INFO(name);
    REQUIRE(t.grad().defined());
    CHECK(t.grad().isfinite().all().item<bool>());
  }
}

TEST_CASE("graph train: every built-in model trains: forward matches inference, backward reaches all parameters",
          "[graph][train][model]") {
  if (!test::have_model_file() || !test::have_model_file(kDlibFile)) return;
  for (const auto& name : nn::builtin_models()) {
    INFO("model " << name);
    nn::Model m = nn::import_builtin(name, test::model_dir());
    std::vector<std::string> roles;
    for (const auto& [role, node] : m.outputs) roles.push_back(role);
    nn::Program inf = nn::compile(m, roles), tr = nn::compile(m, roles, trainable());
    torch::manual_seed(23);
    auto x = torch::rand({2, 3, m.pre.size, m.pre.size});
    auto a = tr.forward(x), b = inf.run(x);
    REQUIRE(a.size() == b.size());
    torch::Tensor loss = torch::zeros({});
    for (std::size_t i = 0; i < a.size(); ++i) {
      INFO("output " << roles[i]);
      REQUIRE(a[i].sizes() == b[i].sizes());
      CHECK(max_abs(a[i].detach() - b[i]) <= 1e-4 * std::max(max_abs(b[i]), 1e-3));
      loss = loss + a[i].square().mean();
    }
    loss.backward();
    auto params = tr.parameters();
    CHECK(params.size() > 2);
    std::size_t zero = 0;
    for (const auto& [p, t] : params) {
      INFO("parameter " << p);
      REQUIRE(t.grad().defined());
      CHECK(t.grad().isfinite().all().item<bool>());
      zero += t.grad().abs().max().item<float>() == 0;
    }
    // some parameters get none by construction (mobilefacenet's PReLU slopes
    // after convolutions already ending in a Relu: 16 of 137); most do
    CHECK(zero * 4 < params.size());
  }
}

TEST_CASE("graph train: SGD on dlib lowers a loss, the saved fine-tuned model reproduces the trained outputs",
          "[graph][train][model]") {
  if (!test::have_model_file(kDlibFile)) return;
  TempDir tmp;
  nn::Model m = nn::import_builtin("dlib", test::model_dir());
  nn::Program tr = nn::compile(m, {"embedding"}, trainable());
  torch::manual_seed(22);
  auto x = torch::rand({2, 3, 150, 150}) - 0.45;
  auto before = nn::compile(m, {"embedding"}).run(x)[0];
  // pull the descriptors of two different images together
  auto loss_of = [](const torch::Tensor& e) { return (e[0] - e[1]).square().sum(); };
  std::vector<torch::Tensor> params;
  for (const auto& [name, t] : tr.parameters()) params.push_back(t);
  torch::optim::SGD sgd(params, torch::optim::SGDOptions(0.01));
  double first = 0, last = 0;
  for (int step = 0; step < 3; ++step) {
    sgd.zero_grad();
    auto loss = loss_of(tr.forward(x)[0]);
    loss.backward();
    sgd.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  double after = loss_of(tr.run(x)[0]).item<double>();
  INFO("loss " << first << " -> " << last << " -> " << after);
  CHECK(last < first);
  CHECK(after < first);
  auto trained = tr.run(x)[0];
  CHECK(max_abs(trained - before) > 1e-3);

  nn::Model tuned = nn::with_parameters(m, tr.parameters(), {{"steps", 3}});
  CHECK(tuned.checksum != m.checksum);
  CHECK(tuned.checksum == nn::model_checksum(tuned));
  CHECK(tuned.provenance["fine_tuned_from"] == m.checksum);
  CHECK(tuned.provenance["fine_tuning"]["steps"] == 3);
  CHECK(tuned.provenance["package"] == m.provenance["package"]);
  std::string path = (tmp.p / "dlib-tuned.hft").string();
  nn::save_model(tuned, path);
  nn::Model back = nn::load_model(path);  // verifies the recorded checksum
  CHECK(back.checksum == tuned.checksum);
  CHECK(back.provenance["fine_tuned_from"] == m.checksum);
  auto reloaded = nn::compile(back, {"embedding"}).run(x)[0];
  CHECK(max_abs(reloaded - trained) <= 1e-5);
  // training changed the program's copies only
  CHECK(torch::equal(nn::compile(m, {"embedding"}).run(x)[0], before));
  // a second fine-tuning keeps the lineage
  nn::Model again = nn::with_parameters(back, {});
  CHECK(again.provenance["fine_tuned_from"] == back.checksum);
  CHECK(again.provenance["fine_tuning_history"] == json::array({m.checksum}));
  CHECK_FALSE(again.provenance.contains("fine_tuning"));
}

TEST_CASE("graph train: a fine-tuned model file round-trips without the npm files", "[graph][train]") {
  TempDir tmp;
  nn::Model m = tiny_model();
  nn::Program tr = nn::compile(m, {"embedding"}, trainable());
  auto x = torch::randn({2, 2, 8, 8});
  {
    torch::NoGradGuard ng;
    for (auto& [name, t] : tr.parameters()) t.mul_(1.1).add_(0.01);
  }
  auto want = tr.run(x)[0];
  nn::Model tuned = nn::with_parameters(m, tr.parameters());
  std::string path = (tmp.p / "tiny.hft").string();
  nn::save_model(tuned, path);
  nn::Model back = nn::load_model(path);
  CHECK(back.checksum == tuned.checksum);
  CHECK(back.checksum != m.checksum);
  CHECK(max_abs(nn::compile(back, {"embedding"}).run(x)[0] - want) <= 1e-5);
  CHECK(max_abs(nn::compile(back, {"embedding"}, trainable()).forward(x)[0].detach() - want) <= 1e-5);
}

TEST_CASE("graph train: with_parameters refuses unknown names, wrong shapes and bad values by name", "[graph][train]") {
  nn::Model m = tiny_model();
  auto w1 = m.graph.consts.at("w1");
  CHECK_THROWS_AS(nn::with_parameters(m, {{"nope", torch::zeros({4})}}), Error);
  CHECK_THROWS_WITH(nn::with_parameters(m, {{"nope", torch::zeros({4})}}), Catch::Contains("'nope'"));
  CHECK_THROWS_WITH(nn::with_parameters(m, {{"w1", torch::zeros({3, 3, 4, 2})}}),
                    Catch::Contains("'w1'") && Catch::Contains("[3,3,4,2]") && Catch::Contains("[3,3,2,4]"));
  CHECK_THROWS_WITH(nn::with_parameters(m, {{"pads", torch::zeros({4, 2})}}), Catch::Contains("'pads'"));
  CHECK_THROWS_WITH(nn::with_parameters(m, {{"b1", torch::full({4}, NAN)}}), Catch::Contains("'b1'"));
  CHECK_THROWS_WITH(nn::with_parameters(m, {{"b1", torch::zeros({4})}, {"b1", torch::zeros({4})}}),
                    Catch::Contains("twice"));
  CHECK_THROWS_WITH(nn::with_parameters(m, {{"b1", torch::zeros({4}, at::kLong)}}), Catch::Contains("'b1'"));
  // the model itself is untouched by a failed or successful call
  auto changed = nn::with_parameters(m, {{"w1", torch::zeros({3, 3, 2, 4}).requires_grad_(true)}});
  CHECK(torch::equal(m.graph.consts.at("w1"), w1));
  CHECK(changed.graph.consts.at("w1").abs().sum().item<float>() == 0);
  CHECK_FALSE(changed.graph.consts.at("w1").requires_grad());
}

// Not run by default: forward+backward cost against inference, one thread.
//   hfr_unit_nn "[.bench]"
TEST_CASE("graph train: dlib batch 8 timings", "[.bench]") {
  if (!test::have_model_file(kDlibFile)) return;
  int threads = torch::get_num_threads();
  torch::set_num_threads(1);
  nn::Model m = nn::import_builtin("dlib", test::model_dir());
  nn::Program inf = nn::compile(m, {"embedding"}), tr = nn::compile(m, {"embedding"}, trainable());
  auto x = torch::rand({8, 3, 150, 150}) - 0.45;
  auto time = [](const std::function<void()>& f) {
    f();  // warm-up
    double best = 1e9;
    for (int i = 0; i < 3; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      f();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
  };
  double t_inf = time([&] { inf.run(x); });
  double t_fwd = time([&] { tr.forward(x); });
  double t_fb = time([&] { tr.forward(x)[0].square().sum().backward(); });
  nn::CompileOptions plain = trainable();
  plain.channels_last = false;
  nn::Program trp = nn::compile(m, {"embedding"}, plain);
  double t_fbp = time([&] { trp.forward(x)[0].square().sum().backward(); });
  std::printf("dlib batch 8, 1 thread: inference %.3f s, trainable forward %.3f s, forward+backward %.3f s "
              "(%.3f s without channels_last)\n", t_inf, t_fwd, t_fb, t_fbp);
  torch::set_num_threads(threads);
}
