// Forward-pass throughput of the imported models (images/s at a batch size).
//   bench_nn MODEL [BATCH] [ITERS] [THREADS]
#include <chrono>
#include <cstdio>
#include <string>

#include <ATen/ATen.h>
#include <torch/torch.h>

#include "hfr/model.hpp"
#include "hfr/tensor_torch.hpp"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_nn MODEL [BATCH] [ITERS] [THREADS] [nofuse|channels_last]\n");
    return 2;
  }
  std::string name = argv[1];
  int batch = argc > 2 ? std::stoi(argv[2]) : 32;
  int iters = argc > 3 ? std::stoi(argv[3]) : 5;
  int threads = argc > 4 ? std::stoi(argv[4]) : 2;
  std::string variant = argc > 5 ? argv[5] : "";
  hfr::tune_allocator();
  at::set_num_threads(threads);
  c10::InferenceMode guard;
  hfr::nn::Model m = hfr::nn::load_model(name);
  std::string role = m.outputs.count("embedding") ? "embedding" : m.outputs.begin()->first;
  hfr::nn::CompileOptions co;
  co.fuse = variant != "nofuse";
  co.channels_last = variant != "nchw";
  hfr::nn::Program p = hfr::nn::compile(m, {role}, co);
  torch::manual_seed(1);
  torch::Tensor x = torch::rand({batch, 3, m.pre.size, m.pre.size}) * 2 - 1;
  if (variant == "channels_last") x = x.contiguous(at::MemoryFormat::ChannelsLast);
  p.run(x);  // warm-up
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) p.run(x);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s batch %d threads %d %s: %.1f images/s (%.2f ms/image, %zu steps)\n", name.c_str(), batch, threads,
              variant.empty() ? "fused" : variant.c_str(), batch * iters / s, 1000 * s / (batch * iters), p.steps());
  return 0;
}
