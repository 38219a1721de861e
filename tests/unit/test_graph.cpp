// The graph executor's TF semantics on small hand-checked graphs.
#include "torch_catch.hpp"


#include "hfr/error.hpp"
#include "hfr/graph.hpp"
#include "graph_helpers.hpp"

using namespace hfr;
using hfr::test::add_const;
using nn::Graph;
using nn::Node;
using json = nlohmann::json;

namespace {
Graph with_input(std::vector<std::int64_t> shape = {-1, -1, -1, -1}) {
  Graph g;
  g.nodes.push_back({"x", "Placeholder", {}, {{"shape", shape}}});
  return g;
}
torch::Tensor nhwc_in(const torch::Tensor& nhwc) { return nhwc.permute({0, 3, 1, 2}).contiguous(); }
}  // namespace

TEST_CASE("graph: SAME convolution pads the extra row and column at the bottom/right like TF", "[graph]") {
  Graph g = with_input();
  add_const(g, "w", torch::ones({2, 2, 1, 1}));  // HWIO, 2x2 sum
  g.nodes.push_back({"y", "Conv2D", {"x", "w"}, {{"strides", {1, 2, 2, 1}}, {"padding", "SAME"}}});
  nn::Program p(g, "x", {"y"}, "t");
  // 3x3 input 1..9, stride 2, SAME: out 2x2, pad total 1 -> bottom/right only
  auto x = torch::arange(1, 10, at::kFloat).reshape({1, 3, 3, 1});
  auto y = p.run(nhwc_in(x))[0];
  REQUIRE(y.sizes().vec() == std::vector<std::int64_t>{1, 2, 2, 1});
  CHECK(y[0][0][0][0].item<float>() == 1 + 2 + 4 + 5);
  CHECK(y[0][0][1][0].item<float>() == 3 + 6);
  CHECK(y[0][1][0][0].item<float>() == 7 + 8);
  CHECK(y[0][1][1][0].item<float>() == 9);
}

TEST_CASE("graph: depthwise filters, DepthToSpace order and NHWC outputs follow TF", "[graph]") {
  Graph g = with_input();
  // depthwise 1x1 with multiplier 2: channel c -> (c*2+m) = x_c * (10c + m + 1)
  auto f = torch::tensor({1.f, 2.f, 11.f, 12.f}).reshape({1, 1, 2, 2});
  add_const(g, "f", f);
  g.nodes.push_back({"d", "DepthwiseConv2dNative", {"x", "f"}, {{"strides", {1, 1, 1, 1}}, {"padding", "VALID"}}});
  g.nodes.push_back({"s", "DepthToSpace", {"d"}, {{"block_size", 2}}});
  nn::Program p(g, "x", {"d", "s"}, "t");
  auto x = torch::tensor({1.f, 100.f}).reshape({1, 1, 1, 2});  // one pixel, 2 channels
  auto out = p.run(nhwc_in(x));
  auto d = out[0].reshape({4});
  CHECK(d[0].item<float>() == 1);
  CHECK(d[1].item<float>() == 2);
  CHECK(d[2].item<float>() == 1100);
  CHECK(d[3].item<float>() == 1200);
  // DepthToSpace (DCR): output (i, j) takes depth i*2 + j
  REQUIRE(out[1].sizes().vec() == std::vector<std::int64_t>{1, 2, 2, 1});
  CHECK(out[1][0][0][1][0].item<float>() == 2);
  CHECK(out[1][0][1][0][0].item<float>() == 1100);
}

TEST_CASE("graph: reshape, mean and concat see NHWC order whatever the internal layout", "[graph]") {
  Graph g = with_input();
  add_const(g, "w", torch::ones({1, 1, 3, 3}) * torch::eye(3).reshape({1, 1, 3, 3}));  // identity 1x1 conv
  g.nodes.push_back({"c", "Conv2D", {"x", "w"}, {{"strides", {1, 1, 1, 1}}, {"padding", "VALID"}}});
  add_const(g, "shape", torch::tensor(std::vector<std::int64_t>{1, -1}));
  g.nodes.push_back({"r", "Reshape", {"c", "shape"}, {}});
  add_const(g, "axes", torch::tensor(std::vector<std::int64_t>{1, 2}));
  g.nodes.push_back({"m", "Mean", {"c", "axes"}, {{"keep_dims", false}}});
  add_const(g, "axis", torch::tensor(std::vector<std::int64_t>{-1}));
  g.nodes.push_back({"k", "ConcatV2", {"c", "c", "axis"}, {}});
  nn::Program p(g, "x", {"r", "m", "k"}, "t");
  auto x = torch::arange(12, at::kFloat).reshape({1, 2, 2, 3});
  auto out = p.run(nhwc_in(x));
  CHECK(torch::equal(out[0], x.reshape({1, -1})));
  CHECK(torch::allclose(out[1], x.mean({1, 2})));
  CHECK(torch::equal(out[2], torch::cat({x, x}, 3)));
}

TEST_CASE("graph: folding affine layers and clamps into convolutions keeps results", "[graph]") {
  Graph g = with_input();
  torch::manual_seed(3);
  add_const(g, "w", torch::randn({3, 3, 4, 5}));
  add_const(g, "b", torch::randn({5}));
  add_const(g, "s", torch::randn({5}));
  add_const(g, "six", torch::tensor({6.f}));
  add_const(g, "zero", torch::tensor({0.f}));
  g.nodes.push_back({"c", "Conv2D", {"x", "w"}, {{"strides", {1, 1, 1, 1}}, {"padding", "SAME"}}});
  g.nodes.push_back({"a", "Add", {"c", "b"}, {}});
  g.nodes.push_back({"m", "Mul", {"a", "s"}, {}});
  g.nodes.push_back({"r", "Relu", {"m"}, {}});
  g.nodes.push_back({"lo", "Minimum", {"r", "six"}, {}});
  g.nodes.push_back({"hi", "Maximum", {"lo", "zero"}, {}});
  nn::CompileOptions nofuse;
  nofuse.fuse = false;
  nn::Program fused(g, "x", {"hi"}, "t"), plain(g, "x", {"hi"}, "t", nofuse);
  CHECK(fused.steps() == 1);
  CHECK(plain.steps() == 6);
  auto x = torch::randn({2, 4, 7, 6});
  CHECK(torch::allclose(fused.run(x)[0], plain.run(x)[0], 1e-5, 1e-5));
  // a value used twice is not folded away
  nn::Program two(g, "x", {"hi", "a"}, "t");
  CHECK(two.steps() > 1);
  auto o = two.run(x);
  CHECK(torch::allclose(o[0], plain.run(x)[0], 1e-5, 1e-5));
}

TEST_CASE("graph: unknown ops, missing nodes and cycles are refused by name at compile time", "[graph]") {
  Graph g = with_input();
  g.nodes.push_back({"e", "Einsum", {"x"}, {}});
  CHECK_THROWS_WITH(nn::Program(g, "x", {"e"}, "m.json"), Catch::Contains("node 'e' (Einsum): op Einsum is not supported"));
  Graph h = with_input();
  h.nodes.push_back({"r", "Relu", {"nope"}, {}});
  CHECK_THROWS_WITH(nn::Program(h, "x", {"r"}, "m.json"), Catch::Contains("'nope'"));
  Graph c = with_input();
  c.nodes.push_back({"a", "Relu", {"b"}, {}});
  c.nodes.push_back({"b", "Relu", {"a"}, {}});
  CHECK_THROWS_WITH(nn::Program(c, "x", {"a"}, "m.json"), Catch::Contains("cycle"));
  Graph w = with_input();
  add_const(w, "f", torch::ones({3, 3}));
  w.nodes.push_back({"c", "Conv2D", {"x", "f"}, {{"padding", "SAME"}}});
  CHECK_THROWS_WITH(nn::Program(w, "x", {"c"}, "m.json"), Catch::Contains("rank-4"));
  Graph s = with_input({-1, 8, 8, 3});
  s.nodes.push_back({"r", "Relu", {"x"}, {}});
  nn::Program p(s, "x", {"r"}, "m.json");
  CHECK_THROWS_WITH(p.run(torch::zeros({1, 3, 9, 8})), Catch::Contains("does not fit"));
}

TEST_CASE("graph: JSON round trip keeps nodes and refuses duplicates", "[graph]") {
  Graph g = with_input();
  add_const(g, "k", torch::ones({2}));
  g.nodes.push_back({"y", "Add", {"x", "k"}, {}});
  json j = nn::graph_to_json(g);
  Graph back = nn::graph_from_json(j, g.consts, "t");
  CHECK(nn::graph_to_json(back) == j);
  j.push_back(j[0]);
  CHECK_THROWS_WITH(nn::graph_from_json(j, g.consts, "t"), Catch::Contains("duplicate name 'x'"));
}

TEST_CASE("graph: sizes a model controls are bounded at compile time", "[graph]") {
  Graph d = with_input();
  d.nodes.push_back({"s", "DepthToSpace", {"x"}, {{"block_size", std::int64_t(1) << 32}}});
  CHECK_THROWS_WITH(nn::Program(d, "x", {"s"}, "m"), Catch::Contains("block_size"));
  Graph p = with_input();
  add_const(p, "pads", torch::tensor(std::vector<std::int64_t>{0, 0, 1 << 20, 0, 0, 0, 0, 0}).reshape({4, 2}));
  p.nodes.push_back({"y", "Pad", {"x", "pads"}, {}});
  CHECK_THROWS_WITH(nn::Program(p, "x", {"y"}, "m"), Catch::Contains("paddings"));
  Graph k = with_input();
  k.nodes.push_back({"y", "MaxPool", {"x"}, {{"ksize", {1, 1 << 20, 2, 1}}, {"strides", {1, 1, 1, 1}}, {"padding", "SAME"}}});
  CHECK_THROWS_WITH(nn::Program(k, "x", {"y"}, "m"), Catch::Contains("ksize"));
  Graph r = with_input();
  add_const(r, "size", torch::tensor(std::vector<std::int64_t>{30000, 30000}));
  r.nodes.push_back({"y", "ResizeBilinear", {"x", "size"}, {{"half_pixel_centers", true}}});
  CHECK_THROWS_WITH(nn::Program(r, "x", {"y"}, "m"), Catch::Contains("size"));
  Graph c = with_input();
  add_const(c, "axis", torch::zeros({0}, at::kLong));
  c.nodes.push_back({"y", "ConcatV2", {"x", "x", "axis"}, {}});
  CHECK_THROWS_AS(nn::Program(c, "x", {"y"}, "m"), FormatError);
}

TEST_CASE("graph: reductions follow TF for empty and duplicate axes, outputs never alias the program", "[graph]") {
  Graph g = with_input();
  add_const(g, "none", torch::zeros({0}, at::kLong));
  g.nodes.push_back({"m", "Mean", {"x", "none"}, {{"keep_dims", false}}});
  add_const(g, "k", torch::ones({3}));
  g.nodes.push_back({"kk", "Identity", {"k"}, {}});
  nn::Program p(g, "x", {"m", "kk"}, "t");
  auto x = torch::rand({2, 4, 4, 3});
  auto out = p.run(nhwc_in(x));
  CHECK(torch::equal(out[0], x));  // no axes: unchanged
  out[1].mul_(100);
  CHECK(p.run(nhwc_in(x))[1].sum().item<float>() == 3.0f);  // the constant was not changed through the output
  Graph d = with_input();
  add_const(d, "dup", torch::tensor(std::vector<std::int64_t>{1, -3}));
  d.nodes.push_back({"m", "Max", {"x", "dup"}, {{"keep_dims", false}}});
  nn::Program q(d, "x", {"m"}, "t");
  CHECK_THROWS_WITH(q.run(nhwc_in(x)), Catch::Contains("duplicate"));
}
