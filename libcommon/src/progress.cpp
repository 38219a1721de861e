#include "hfr/progress.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "hfr/log.hpp"

namespace hfr {
namespace {
ProgressMode g_mode = ProgressMode::automatic;
Progress* g_active = nullptr;  // the bar currently drawn on the terminal
std::mutex g_active_mutex;

int terminal_width() {
  struct winsize ws{};
  if (ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) return ws.ws_col;
  return 80;
}

void write_stderr(const std::string& s) {
  const char* p = s.data();
  std::size_t n = s.size();
  while (n > 0) {
    ssize_t w = ::write(2, p, n);
    if (w <= 0) return;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "--:--";
  auto t = static_cast<long long>(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", t / 3600, (t / 60) % 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", t / 60, t % 60);
  return buf;
}

std::string format_rate(double r) {
  char buf[32];
  if (r >= 100)
    std::snprintf(buf, sizeof buf, "%.0f", r);
  else if (r >= 10)
    std::snprintf(buf, sizeof buf, "%.1f", r);
  else
    std::snprintf(buf, sizeof buf, "%.2f", r);
  return buf;
}
}  // namespace

void Progress::set_mode(ProgressMode mode) { g_mode = mode; }
ProgressMode Progress::mode() { return g_mode; }
bool Progress::enabled() {
  if (g_mode == ProgressMode::never) return false;
  if (g_mode == ProgressMode::always) return true;
  return isatty(2) == 1;
}

Progress::Progress(std::string label, std::uint64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total),
      start_(std::chrono::steady_clock::now()) {
  tty_ = isatty(2) == 1;
  if (enabled() && tty_) {
    std::lock_guard<std::mutex> lock(g_active_mutex);
    g_active = this;
  }
}

Progress::~Progress() {
  std::lock_guard<std::mutex> lock(g_active_mutex);
  if (g_active == this) g_active = nullptr;
}

void Progress::set_total(std::uint64_t total) { total_ = total; }

void Progress::add(std::uint64_t n) {
  done_ += n;
  if (!enabled()) return;
  auto now = std::chrono::steady_clock::now();
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now - start_).count();
  // Terminal: redraw at most 10 times a second. Forced (not a terminal): a line
  // every 5 seconds, so logs stay readable.
  std::int64_t interval = tty_ ? 100'000'000 : 5'000'000'000;
  auto last = last_render_ns_.load();
  if (ns - last < interval) return;
  if (!last_render_ns_.compare_exchange_strong(last, ns)) return;
  render(false);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (enabled()) render(true);
  std::lock_guard<std::mutex> lock(g_active_mutex);
  if (g_active == this) g_active = nullptr;
}

std::string Progress::format(const std::string& label, std::uint64_t done, std::uint64_t total,
                             double elapsed_s, const std::string& unit, int width) {
  double rate = elapsed_s > 0 ? static_cast<double>(done) / elapsed_s : 0.0;
  std::string right;
  if (total > 0) {
    char buf[96];
    double frac = std::min(1.0, static_cast<double>(done) / static_cast<double>(total));
    std::snprintf(buf, sizeof buf, " %3d%% %llu/%llu %s", static_cast<int>(frac * 100),
                  static_cast<unsigned long long>(done), static_cast<unsigned long long>(total),
                  unit.c_str());
    right = buf;
    right += " " + format_rate(rate) + "/s";
    double eta = rate > 0 ? static_cast<double>(total > done ? total - done : 0) / rate : NAN;
    right += " ETA " + format_duration(eta);
    int bar = width - static_cast<int>(label.size()) - static_cast<int>(right.size()) - 4;
    std::string s = label + " [";
    if (bar >= 10) {
      bar = std::min(bar, 40);
      int fill = static_cast<int>(frac * bar);
      s += std::string(static_cast<std::size_t>(fill), '#') +
           std::string(static_cast<std::size_t>(bar - fill), '.');
      s += "]";
    } else {
      s.pop_back();
      s.pop_back();
    }
    return s + right;
  }
  char buf[96];
  std::snprintf(buf, sizeof buf, " %llu %s", static_cast<unsigned long long>(done), unit.c_str());
  return label + buf + " " + format_rate(rate) + "/s elapsed " + format_duration(elapsed_s);
}

void Progress::render(bool final) {
  std::lock_guard<std::mutex> lock(mutex_);
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string line = format(label_, done_.load(), total_.load(), elapsed, unit_, terminal_width() - 1);
  if (tty_)
    write_stderr("\r\x1b[K" + line + (final ? "\n" : ""));
  else
    write_stderr(log::tool() + ": " + line + "\n");
}

void Progress::clear_line_for_log() {
  std::lock_guard<std::mutex> lock(g_active_mutex);
  if (g_active && g_active->tty_) write_stderr("\r\x1b[K");
}

void Progress::redraw_after_log() {
  Progress* p = nullptr;
  {
    std::lock_guard<std::mutex> lock(g_active_mutex);
    p = g_active;
  }
  if (p && p->tty_ && !p->finished_) p->render(false);
}

}  // namespace hfr
