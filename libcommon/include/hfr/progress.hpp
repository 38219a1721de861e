// Progress bar with rate and ETA on stderr. Shown only when stderr is a
// terminal, unless forced (--progress); never on stdout.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace hfr {

enum class ProgressMode { automatic, always, never };

class Progress {
 public:
  // total == 0 means unknown (no percentage, no ETA).
  Progress(std::string label, std::uint64_t total, std::string unit = "items");
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void add(std::uint64_t n = 1);  // thread-safe
  void set_total(std::uint64_t total);
  void finish();                  // final line (terminal) or summary (forced mode)
  std::uint64_t done() const { return done_.load(); }

  static void set_mode(ProgressMode mode);
  static ProgressMode mode();
  static bool enabled();  // would a bar be drawn now?

  // Pure formatting, exposed for tests. width = terminal columns.
  static std::string format(const std::string& label, std::uint64_t done, std::uint64_t total,
                            double elapsed_s, const std::string& unit, int width);

  // Used by log::write_line to keep log lines and the bar apart.
  static void clear_line_for_log();
  static void redraw_after_log();

 private:
  void render(bool final);
  std::string label_;
  std::string unit_;
  std::atomic<std::uint64_t> done_{0};
  std::atomic<std::uint64_t> total_{0};
  std::chrono::steady_clock::time_point start_;
  std::atomic<std::int64_t> last_render_ns_{0};
  std::mutex mutex_;
  bool finished_ = false;
  bool tty_ = false;
};

}  // namespace hfr
