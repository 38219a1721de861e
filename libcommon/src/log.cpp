#include "hfr/log.hpp"

#include <unistd.h>

#include <mutex>

#include "hfr/progress.hpp"

namespace hfr::log {
namespace {
std::string g_tool = "hfr";
Level g_level = Level::normal;
std::mutex g_mutex;
}  // namespace

void set_tool(const std::string& name) { g_tool = name; }
const std::string& tool() { return g_tool; }
void set_level(Level level) { g_level = level; }
Level level() { return g_level; }

void write_line(const std::string& line) {
  std::lock_guard<std::mutex> lock(g_mutex);
  Progress::clear_line_for_log();
  std::string s = line;
  if (s.empty() || s.back() != '\n') s.push_back('\n');
  const char* p = s.data();
  std::size_t n = s.size();
  while (n > 0) {
    ssize_t w = ::write(2, p, n);
    if (w <= 0) break;  // stderr gone: nothing sensible left to do
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  Progress::redraw_after_log();
}

static void emit(const std::string& prefix, const std::string& message) {
  write_line(g_tool + ": " + prefix + message);
}

void error(const std::string& message) { emit("", message); }
void warn(const std::string& message) {
  if (g_level >= Level::normal) emit("warning: ", message);
}
void notice(const std::string& message) {
  if (g_level >= Level::normal) emit("", message);
}
void info(const std::string& message) {
  if (g_level >= Level::verbose) emit("", message);
}
void debug(const std::string& message) {
  if (g_level >= Level::debug) emit("debug: ", message);
}

}  // namespace hfr::log
