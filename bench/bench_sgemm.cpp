// The machine's own sgemm peak through OpenBLAS (the library hfr-match uses),
// for the shapes hfr-match runs: one call of M x N x K on THREADS threads,
// and the same work split over THREADS single-threaded calls in parallel (the
// way hfr-match drives it). Prints one JSON object.
// Usage: bench_sgemm [THREADS] [M N K]
#include <cblas.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  int M = argc > 4 ? std::atoi(argv[2]) : 2048, N = argc > 4 ? std::atoi(argv[3]) : 2048, K = argc > 4 ? std::atoi(argv[4]) : 512;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<float> a(static_cast<size_t>(M) * K), b(static_cast<size_t>(N) * K), c(static_cast<size_t>(M) * N);
  for (auto& x : a) x = nd(rng);
  for (auto& x : b) x = nd(rng);
  auto time_it = [](auto&& f) {
    f();
    double best = 1e30;
    for (int r = 0; r < 5; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      f();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
  };
  double flop = 2.0 * M * N * K;
  openblas_set_num_threads(threads);
  double t1 = time_it([&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.f, a.data(), K, b.data(), K, 0.f, c.data(), N);
  });
  openblas_set_num_threads(1);
  double t2 = time_it([&] {
    std::vector<std::thread> ts;
    for (int w = 0; w < threads; ++w)
      ts.emplace_back([&, w] {
        int m0 = M * w / threads, m1 = M * (w + 1) / threads;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m1 - m0, N, K, 1.f, a.data() + static_cast<size_t>(m0) * K, K, b.data(), K,
                    0.f, c.data() + static_cast<size_t>(m0) * N, N);
      });
    for (auto& t : ts) t.join();
  });
  std::printf("{\"threads\":%d,\"m\":%d,\"n\":%d,\"k\":%d,\"sgemm_gflops\":%.1f,\"sgemm_split_gflops\":%.1f}\n", threads, M, N, K,
              flop / t1 / 1e9, flop / t2 / 1e9);
  return 0;
}
