// Diagnostics on stderr: "tool: message", filtered by verbosity.
#pragma once
#include <string>

namespace hfr::log {

enum class Level : int {
  quiet = 0,    // errors only
  normal = 1,   // errors, warnings, notices
  verbose = 2,  // + informational detail
  debug = 3,    // + debugging detail
};

void set_tool(const std::string& name);
const std::string& tool();
void set_level(Level level);
Level level();

void error(const std::string& message);    // always shown
void warn(const std::string& message);     // level >= normal
void notice(const std::string& message);   // level >= normal
void info(const std::string& message);     // level >= verbose
void debug(const std::string& message);    // level >= debug

// Writes a whole line to stderr atomically with respect to other log lines
// (and to the progress bar, which it clears and redraws).
void write_line(const std::string& line);

}  // namespace hfr::log
