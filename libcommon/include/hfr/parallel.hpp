// A minimal parallel-for over indices, and the one-line form of an error.
#pragma once
#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace hfr {

// Runs f(i) for i in [0, n) on up to `threads` threads. The first exception
// any call throws is rethrown here after every thread has finished.
template <class F>
void parallel_for(std::size_t n, int threads, F f) {
  std::atomic<std::size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    for (std::size_t i; (i = next++) < n;) {
      try {
        f(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        next = n;
      }
    }
  };
  int t = static_cast<int>(std::min<std::size_t>(n, static_cast<std::size_t>(std::max(1, threads))));
  std::vector<std::thread> pool;
  try {
    for (int k = 1; k < t; ++k) pool.emplace_back(work);
  } catch (...) {
    // fewer threads than asked: the ones running and this one do the work
  }
  work();
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

// The first line of an exception's message (per-item errors in records).
inline std::string brief(const std::exception& e) {
  std::string m = e.what();
  return m.substr(0, m.find('\n'));
}

}  // namespace hfr
