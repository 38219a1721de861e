// Command-line handling shared by every tool. One option table per tool
// (ToolSpec) drives parsing, --help, the man page and the bash/zsh completions,
// so they cannot disagree. Common options mean the same in every tool:
//   -t/--threads N, --device cpu|cuda[:N], --seed N, -q/--quiet, -v/--verbose,
//   --progress, -V/--version, -h/--help.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace hfr::cli {

enum class Complete { none, file, dir, choices };

struct Option {
  std::string long_name;       // without dashes, e.g. "output"
  char short_name = 0;         // 0 = none
  std::string arg;             // value name, e.g. "FILE"; empty for a flag
  std::string help;            // one or more sentences
  std::string default_value;   // shown in help; "" = none
  std::vector<std::string> choices;
  Complete complete = Complete::none;
  bool repeatable = false;     // may be given several times (values collected)
};

struct Positional {
  std::string name;            // e.g. "INPUT"
  std::string help;
  Complete complete = Complete::file;
  std::vector<std::string> choices;  // for a COMMAND positional
  bool required = false;
  bool many = false;           // takes all remaining arguments
};

struct ToolSpec {
  std::string name;            // "hfr-embed"
  std::string summary;         // one line, lower case, no final period
  std::vector<std::string> synopsis;     // e.g. "[OPTION]... [INPUT]..."
  std::vector<std::string> description;  // paragraphs
  std::string reads;           // what it reads
  std::string writes;          // what it writes
  std::vector<Option> options; // tool-specific options
  std::vector<Positional> positionals;
  std::vector<std::pair<std::string, std::string>> examples;  // command, explanation
  std::vector<std::string> see_also;
  // Non-empty when the tool's capability is not built yet: shown in --help and
  // the man page, and running the tool prints it and exits 1.
  std::string not_built;
  bool keep_going = false;     // adds -k/--keep-going
};

struct Common {
  int threads = 0;             // resolved: >= 1
  std::string device = "cpu";  // "cpu", "cuda", "cuda:N"
  std::uint64_t seed = 0;
  int verbosity = 1;           // 0 quiet, 1 normal, 2 verbose, 3 debug
  bool keep_going = false;
  bool progress = false;       // forced on
};

class Args {
 public:
  const Common& common() const { return common_; }
  bool given(const std::string& long_name) const;  // present on the command line
  std::string str(const std::string& long_name) const;  // value or default
  std::vector<std::string> all(const std::string& long_name) const;
  std::int64_t integer(const std::string& long_name, std::int64_t min, std::int64_t max) const;
  double number(const std::string& long_name) const;
  bool flag(const std::string& long_name) const;
  const std::vector<std::string>& positionals() const { return positionals_; }
  const std::string& tool() const { return tool_; }
  const std::vector<std::string>& argv() const { return argv_; }

 private:
  friend Args parse(const ToolSpec&, int, char**);
  friend struct ParseAccess;
  std::string tool_;
  Common common_;
  std::map<std::string, std::vector<std::string>> values_;
  std::map<std::string, std::string> defaults_;
  std::vector<std::string> positionals_;
  std::vector<std::string> argv_;
};

// Parses argv against the spec plus the common options. Throws UsageError.
// Does not handle --help/--version (see run()).
Args parse(const ToolSpec& spec, int argc, char** argv);

// The whole life of a tool: signal set-up, parsing, --help/--version and the
// hidden generators (--generate-man, --generate-completion=bash|zsh), logging
// and progress set-up, then body(args). Maps errors to exit codes and messages
// "tool: message"; a broken pipe ends quietly with 0. Returns the exit code.
int run(const ToolSpec& spec, int argc, char** argv, const std::function<int(const Args&)>& body);

std::string version_string(const std::string& tool);
std::string render_help(const ToolSpec& spec);
std::string render_man(const ToolSpec& spec);
std::string render_bash_completion(const ToolSpec& spec);
std::string render_zsh_completion(const ToolSpec& spec);

// The option table including the common options, in help order.
std::vector<Option> all_options(const ToolSpec& spec);

// Number of hardware threads (>= 1).
int hardware_threads();

// The comma-separated pieces of an option's value, in order; empty pieces
// ("a,,b", a trailing comma) are dropped unless keep_empty (for callers that
// refuse them).
std::vector<std::string> split_list(const std::string& s, bool keep_empty = false);

// Parses "K/N" for --shard (1 <= K <= N). Throws UsageError.
std::pair<int, int> parse_shard(const std::string& s);

}  // namespace hfr::cli
