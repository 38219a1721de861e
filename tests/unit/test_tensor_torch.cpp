#include "torch_catch.hpp"


#include "hfr/error.hpp"
#include "hfr/tensor_torch.hpp"

using namespace hfr;

TEST_CASE("torch: to_torch shares memory with the hfr tensor", "[torch]") {
  Tensor t;
  t.info = TensorInfo{"x", DType::f32, {2, 3}};
  t.data = std::make_shared<std::vector<unsigned char>>(24);
  for (int i = 0; i < 6; ++i) t.as<float>()[i] = static_cast<float>(i);
  torch::Tensor tt = to_torch(t);
  CHECK(tt.data_ptr() == t.ptr());
  CHECK(tt.sizes() == torch::IntArrayRef({2, 3}));
  CHECK(tt[1][2].item<float>() == 5.0f);
  std::weak_ptr<std::vector<unsigned char>> weak = t.data;
  t.data.reset();
  CHECK_FALSE(weak.expired());  // kept alive by the torch tensor
  tt = torch::Tensor();
  CHECK(weak.expired());
}

TEST_CASE("torch: write_torch and read_torch round-trip every dtype", "[torch]") {
  auto out = io::memory_output();
  TensorWriterOptions o;
  o.chunk_bytes = 1024;
  TensorWriter w(*out, o);
  torch::manual_seed(3);
  std::vector<std::pair<std::string, torch::Tensor>> ts = {
      {"f32", torch::randn({50, 7})},
      {"f16", torch::randn({4, 5}).to(torch::kHalf)},
      {"bf16", torch::randn({6}).to(torch::kBFloat16)},
      {"u8", torch::randint(0, 255, {3, 3, 3}).to(torch::kUInt8)},
      {"i32", torch::randint(-100, 100, {9}).to(torch::kInt32)},
      {"i64", torch::randint(-100, 100, {2, 2}).to(torch::kInt64)},
      {"transposed", torch::randn({8, 3}).t()},  // non-contiguous
  };
  for (auto& p : ts) write_torch(w, p.first, p.second);
  w.close();
  auto in = io::memory_input(out->data().data(), out->data().size());
  TensorReader r(*in);
  for (auto& p : ts) {
    INFO(p.first);
    torch::Tensor back = read_torch(r, p.first);
    CHECK(back.scalar_type() == p.second.scalar_type());
    CHECK(torch::equal(back, p.second));
  }
  CHECK_THROWS_AS(write_torch(w, "d", torch::zeros({2}, torch::kDouble)), Error);
}

TEST_CASE("torch: devices", "[torch]") {
  CHECK(torch_device("cpu").is_cpu());
  if (!torch::cuda::is_available()) {
    CHECK_THROWS_WITH(torch_device("cuda"), Catch::Contains("CUDA is not available"));
  }
}
