// LibTorch CPU throughput with whichever BLAS libblas.so.3 resolves to:
// sgemm (torch::mm) and a fully connected layer, on --threads threads.
// Usage: bench_blas THREADS
#include <torch/torch.h>

#include <chrono>
#include <cstdio>

int main(int argc, char** argv) {
  int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  torch::set_num_threads(threads);
  torch::manual_seed(0);
  auto time_it = [](auto&& f, int reps) {
    f();
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
  };
  torch::NoGradGuard ng;
  auto a = torch::randn({1024, 1024}), b = torch::randn({1024, 1024});
  double t = time_it([&] { auto c = torch::mm(a, b); }, 5);
  double gemm = 2.0 * 1024 * 1024 * 1024 / t / 1e9;
  // The shape of an embedding head: 256 x 25088 -> 512 (a 7x7x512 feature map).
  auto x = torch::randn({256, 25088});
  torch::nn::Linear fc(25088, 512);
  double tf = time_it([&] { auto y = fc->forward(x); }, 5);
  double fcg = 2.0 * 256 * 25088 * 512 / tf / 1e9;
  std::printf("{\"threads\":%d,\"sgemm_1024_gflops\":%.1f,\"fc_256x25088x512_gflops\":%.1f,\"fc_ms\":%.1f}\n", threads, gemm, fcg, tf * 1e3);
  return 0;
}
