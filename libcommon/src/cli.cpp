#include "hfr/cli.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <fstream>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <regex>
#include <set>
#include <thread>

#include "hfr/error.hpp"
#include "hfr/io.hpp"
#include "hfr/log.hpp"
#include "hfr/progress.hpp"
#include "hfr/version.hpp"

namespace hfr::cli {
namespace {

std::vector<Option> common_options() {
  return {
      {"threads", 't', "N", "Worker threads; 0 uses every hardware thread.", "0", {}, Complete::none},
      {"device", 0, "DEV", "Compute device for networks: cpu, cuda or cuda:N. Tools that run no network accept and ignore it.",
       "cpu", {}, Complete::choices},
      {"seed", 0, "N", "Seed for every random choice; equal seeds give equal outputs.", "0", {}, Complete::none},
      {"quiet", 'q', "", "Print errors only.", "", {}, Complete::none},
      {"verbose", 'v', "", "Print more detail on stderr; twice for debugging output.", "", {}, Complete::none, true},
      {"progress", 0, "", "Show progress on stderr even when it is not a terminal.", "", {}, Complete::none},
      {"config", 0, "FILE",
       "Read options from FILE: one 'name = value' per line (a long option's name without '--'; 'name' alone or "
       "'name = true' for a flag; # starts a comment line; a repeatable option may appear on several lines). Options on the "
       "command line take precedence.",
       "", {}, Complete::file},
      {"version", 'V', "", "Print the version and exit.", "", {}, Complete::none},
      {"help", 'h', "", "Print this help and exit.", "", {}, Complete::none},
  };
}

Option keep_going_option() {
  return {"keep-going", 'k', "",
          "Go on after a failed record: it is written as a record with an \"error\" field, and the exit status is 3.",
          "", {}, Complete::none};
}

std::vector<Option> tool_options(const ToolSpec& spec) {
  std::vector<Option> o = spec.options;
  if (spec.keep_going) o.push_back(keep_going_option());
  return o;
}

const Option* find_long(const std::vector<Option>& opts, const std::string& name) {
  for (const auto& o : opts)
    if (o.long_name == name) return &o;
  return nullptr;
}

const Option* find_short(const std::vector<Option>& opts, char c) {
  for (const auto& o : opts)
    if (o.short_name == c) return &o;
  return nullptr;
}

std::string wrap(const std::string& text, std::size_t indent, std::size_t width, std::size_t first_indent_used = 0) {
  std::string out, line;
  std::size_t col = first_indent_used ? first_indent_used : indent;
  std::string pad(indent, ' ');
  if (!first_indent_used) out += pad;
  std::size_t i = 0;
  bool first_word = true;
  while (i < text.size()) {
    std::size_t j = text.find(' ', i);
    if (j == std::string::npos) j = text.size();
    std::string word = text.substr(i, j - i);
    i = j + 1;
    if (word.empty()) continue;
    if (!first_word && col + 1 + word.size() > width) {
      out += "\n" + pad;
      col = indent;
    } else if (!first_word) {
      out += " ";
      ++col;
    }
    out += word;
    col += word.size();
    first_word = false;
  }
  return out;
}

std::string option_label(const Option& o) {
  std::string s = o.short_name ? std::string("-") + o.short_name + ", " : "    ";
  s += "--" + o.long_name;
  if (!o.arg.empty()) s += "=" + o.arg;
  return s;
}

std::string option_help(const Option& o) {
  std::string h = o.help;
  if (!o.choices.empty()) {
    h += " One of: ";
    for (std::size_t i = 0; i < o.choices.size(); ++i) h += (i ? ", " : "") + o.choices[i];
    h += ".";
  }
  if (!o.default_value.empty()) h += " Default: " + o.default_value + ".";
  if (o.repeatable && !o.arg.empty()) h += " May be repeated.";
  return h;
}

std::string usage_line(const ToolSpec& spec) {
  std::string s;
  for (std::size_t i = 0; i < spec.synopsis.size(); ++i) s += (i ? "   or: " : "Usage: ") + spec.name + " " + spec.synopsis[i] + "\n";
  return s;
}

bool parse_int(const std::string& s, long long& out) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  out = std::strtoll(s.c_str(), &end, 10);
  return errno == 0 && end && *end == '\0';
}

std::string roff_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '\\') o += "\\e";
    else if (c == '-') o += "\\-";
    else o += c;
  }
  if (!o.empty() && (o[0] == '.' || o[0] == '\'')) o = "\\&" + o;
  return o;
}

std::string sh_words(const std::vector<std::string>& w) {
  std::string s;
  for (std::size_t i = 0; i < w.size(); ++i) s += (i ? " " : "") + w[i];
  return s;
}

std::string zsh_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '\'') o += "'\\''";
    else if (c == '[' || c == ']' || c == ':') o += std::string("\\") + c;
    else o += c;
  }
  return o;
}

std::string first_sentence(const std::string& s) {
  auto p = s.find(". ");
  std::string f = p == std::string::npos ? s : s.substr(0, p);
  if (!f.empty() && f.back() == '.') f.pop_back();
  return f;
}

std::vector<std::string> device_choices() { return {"cpu", "cuda", "cuda:0", "cuda:1"}; }

}  // namespace

int hardware_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
}

std::vector<Option> all_options(const ToolSpec& spec) {
  std::vector<Option> o = tool_options(spec);
  for (auto& c : common_options()) o.push_back(c);
  return o;
}

std::string version_string(const std::string& tool) {
  return tool + " (hfr) " + std::string(kVersion) + "\n";
}

bool Args::given(const std::string& n) const { return values_.count(n) > 0; }

std::string Args::str(const std::string& n) const {
  auto it = values_.find(n);
  if (it != values_.end() && !it->second.empty()) return it->second.back();
  auto d = defaults_.find(n);
  return d == defaults_.end() ? std::string() : d->second;
}

std::vector<std::string> Args::all(const std::string& n) const {
  auto it = values_.find(n);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

std::int64_t Args::integer(const std::string& n, std::int64_t min, std::int64_t max) const {
  std::string v = str(n);
  long long x;
  if (!parse_int(v, x) || x < min || x > max)
    throw UsageError("invalid value '" + v + "' for --" + n + ": expected an integer from " + std::to_string(min) + " to " +
                     std::to_string(max));
  return x;
}

double Args::number(const std::string& n) const {
  std::string v = str(n);
  errno = 0;
  char* end = nullptr;
  double x = std::strtod(v.c_str(), &end);
  if (v.empty() || errno != 0 || !end || *end != '\0' || !std::isfinite(x))
    throw UsageError("invalid value '" + v + "' for --" + n + ": expected a number");
  return x;
}

bool Args::flag(const std::string& n) const { return given(n); }

struct ParseAccess {
  // --config FILE: options the command line did not give, one "name = value"
  // per line. Errors name the file and line.
  static void read_config(Args& a, const std::vector<Option>& opts, const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw UsageError("--config: cannot read " + path + ": " + std::strerror(errno));
    auto trim = [](std::string t) {
      const auto b = t.find_first_not_of(" \t\r");
      if (b == std::string::npos) return std::string();
      return t.substr(b, t.find_last_not_of(" \t\r") - b + 1);
    };
    std::set<std::string> from_file;
    std::string line;
    std::size_t n = 0, bytes = 0;
    while (std::getline(in, line)) {
      ++n;
      bytes += line.size() + 1;
      const std::string where = path + ":" + std::to_string(n);
      if (bytes > (1u << 20)) throw UsageError(where + ": config file larger than 1 MiB");
      line = trim(line);
      if (line.empty() || line[0] == '#') continue;
      const auto eq = line.find('=');
      std::string name = trim(line.substr(0, eq)), value = eq == std::string::npos ? "" : trim(line.substr(eq + 1));
      if (name.rfind("--", 0) == 0) name = name.substr(2);
      if (value.size() >= 2 && (value[0] == '"' || value[0] == '\'') && value.back() == value[0])
        value = value.substr(1, value.size() - 2);
      const Option* o = find_long(opts, name);
      if (!o || name == "config" || name == "help" || name == "version" || name.rfind("generate-", 0) == 0)
        throw UsageError(where + ": unknown option '" + name + "'");
      if (a.given(name) && !from_file.count(name)) continue;  // the command line wins
      if (o->arg.empty()) {
        std::string v = value;
        for (auto& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        if (v == "false" || v == "no" || v == "0") continue;
        if (!(eq == std::string::npos || v == "true" || v == "yes" || v == "1"))
          throw UsageError(where + ": '" + name + "' is a flag: give it alone, or = true / false");
        value = "1";
      } else if (eq == std::string::npos) {
        throw UsageError(where + ": '" + name + "' needs a value (" + name + " = " + o->arg + ")");
      }
      if (!o->choices.empty() && std::find(o->choices.begin(), o->choices.end(), value) == o->choices.end())
        throw UsageError(where + ": invalid value '" + value + "' for " + name + " (expected " + sh_words(o->choices) + ")");
      auto& vals = a.values_[name];
      if (!vals.empty() && !o->repeatable && !o->arg.empty() && vals.back() != value)
        throw UsageError(where + ": '" + name + "' given twice with different values");
      if (o->repeatable || vals.empty()) vals.push_back(value);
      from_file.insert(name);
    }
  }

  static Args parse(const ToolSpec& spec, int argc, char** argv) {
    Args a;
    a.tool_ = spec.name;
    std::vector<Option> opts = all_options(spec);
    Option gen_man{"generate-man", 0, "", "", "", {}, Complete::none};
    Option gen_comp{"generate-completion", 0, "SHELL", "", "", {"bash", "zsh"}, Complete::choices};
    opts.push_back(gen_man);
    opts.push_back(gen_comp);
    for (const auto& o : opts)
      if (!o.default_value.empty()) a.defaults_[o.long_name] = o.default_value;
    for (int i = 0; i < argc; ++i) a.argv_.push_back(argv[i]);
    bool only_positional = false;
    auto take = [&](const Option& o, const std::string& shown, int& i, const char* inline_value, bool has_inline) {
      std::string v;
      if (o.arg.empty()) {
        if (has_inline) throw UsageError("option '" + shown + "' takes no value");
        v = "1";
      } else if (has_inline) {
        v = inline_value;
      } else {
        if (i + 1 >= argc) throw UsageError("option '" + shown + "' needs a value (" + o.arg + ")");
        v = argv[++i];
      }
      if (!o.choices.empty() && std::find(o.choices.begin(), o.choices.end(), v) == o.choices.end())
        throw UsageError("invalid value '" + v + "' for " + shown + " (expected " + sh_words(o.choices) + ")");
      auto& vals = a.values_[o.long_name];
      if (!vals.empty() && !o.repeatable && !o.arg.empty() && vals.back() != v)
        throw UsageError("option '" + shown + "' given twice with different values");
      vals.push_back(v);
    };
    for (int i = 1; i < argc; ++i) {
      std::string s = argv[i];
      if (only_positional || s == "-" || s.empty() || s[0] != '-') {
        a.positionals_.push_back(s);
        continue;
      }
      if (s == "--") {
        only_positional = true;
        continue;
      }
      if (s.rfind("--", 0) == 0) {
        std::string name = s.substr(2);
        std::string value;
        bool has_inline = false;
        auto eq = name.find('=');
        if (eq != std::string::npos) {
          value = name.substr(eq + 1);
          name = name.substr(0, eq);
          has_inline = true;
        }
        const Option* o = find_long(opts, name);
        if (!o) throw UsageError("unknown option '--" + name + "'");
        take(*o, "--" + name, i, value.c_str(), has_inline);
        continue;
      }
      for (std::size_t k = 1; k < s.size(); ++k) {
        const Option* o = find_short(opts, s[k]);
        if (!o) throw UsageError(std::string("unknown option '-") + s[k] + "'");
        std::string shown = std::string("-") + s[k];
        if (!o->arg.empty() && k + 1 < s.size()) {
          std::string rest = s.substr(k + 1);
          take(*o, shown, i, rest.c_str(), true);
          break;
        }
        take(*o, shown, i, nullptr, false);
      }
    }
    if (a.given("help") || a.given("version") || a.given("generate-man") || a.given("generate-completion")) return a;
    if (a.given("config")) read_config(a, opts, a.str("config"));
    // Common options.
    Common& c = a.common_;
    std::int64_t t = a.integer("threads", 0, 4096);
    c.threads = t == 0 ? hardware_threads() : static_cast<int>(t);
    c.device = a.str("device");
    static const std::regex dev_re("cpu|cuda(:[0-9]{1,2})?");
    if (!std::regex_match(c.device, dev_re)) throw UsageError("invalid device '" + c.device + "' (expected cpu, cuda or cuda:N)");
    std::string seed = a.str("seed");
    errno = 0;
    char* end = nullptr;
    unsigned long long sv = std::strtoull(seed.c_str(), &end, 10);
    if (seed.empty() || seed[0] == '-' || errno != 0 || *end != '\0')
      throw UsageError("invalid value '" + seed + "' for --seed: expected a non-negative integer");
    c.seed = sv;
    c.verbosity = a.given("quiet") ? 0 : 1 + static_cast<int>(a.all("verbose").size());
    c.verbosity = std::min(c.verbosity, 3);
    c.keep_going = a.given("keep-going");
    c.progress = a.given("progress");
    // Positionals.
    std::size_t required = 0;
    bool many = false;
    for (const auto& p : spec.positionals) {
      if (p.required) ++required;
      if (p.many) many = true;
    }
    if (a.positionals_.size() < required) {
      std::string missing;
      for (std::size_t k = a.positionals_.size(); k < spec.positionals.size(); ++k)
        if (spec.positionals[k].required) missing += (missing.empty() ? "" : " ") + spec.positionals[k].name;
      throw UsageError("missing argument " + missing);
    }
    if (!many && a.positionals_.size() > spec.positionals.size())
      throw UsageError("unexpected argument '" + a.positionals_[spec.positionals.size()] + "'");
    for (std::size_t k = 0; k < spec.positionals.size() && k < a.positionals_.size(); ++k) {
      const auto& p = spec.positionals[k];
      if (!p.choices.empty() && std::find(p.choices.begin(), p.choices.end(), a.positionals_[k]) == p.choices.end())
        throw UsageError("unknown " + p.name + " '" + a.positionals_[k] + "' (expected " + sh_words(p.choices) + ")");
    }
    return a;
  }
};

Args parse(const ToolSpec& spec, int argc, char** argv) { return ParseAccess::parse(spec, argc, argv); }

std::pair<int, int> parse_shard(const std::string& s) {
  static const std::regex re("([0-9]{1,9})/([0-9]{1,9})");
  std::smatch m;
  if (!std::regex_match(s, m, re)) throw UsageError("invalid shard '" + s + "' (expected K/N, e.g. 1/4)");
  int k = std::stoi(m[1]), n = std::stoi(m[2]);
  if (n < 1 || k < 1 || k > n) throw UsageError("invalid shard '" + s + "': need 1 <= K <= N");
  return {k, n};
}

std::string render_help(const ToolSpec& spec) {
  const std::size_t W = 79;
  std::string s = usage_line(spec);
  std::string sum = spec.summary;
  if (!sum.empty()) sum[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(sum[0])));
  s += sum + ".\n";
  for (const auto& p : spec.description) s += "\n" + wrap(p, 0, W) + "\n";
  if (!spec.not_built.empty()) s += "\n" + wrap("Status: not built yet. " + spec.not_built, 0, W) + "\n";
  s += "\n" + wrap("Reads: " + spec.reads, 0, W) + "\n";
  s += wrap("Writes: " + spec.writes, 0, W) + "\n";
  if (!spec.positionals.empty()) {
    s += "\nArguments:\n";
    for (const auto& p : spec.positionals) {
      std::string label = "  " + p.name;
      std::string h = p.help;
      if (!p.choices.empty()) h += " One of: " + sh_words(p.choices) + ".";
      if (label.size() < 28) s += label + std::string(28 - label.size(), ' ') + wrap(h, 28, W, 28) + "\n";
      else s += label + "\n" + wrap(h, 28, W) + "\n";
    }
  }
  auto section = [&](const std::string& title, const std::vector<Option>& opts) {
    if (opts.empty()) return;
    s += "\n" + title + ":\n";
    for (const auto& o : opts) {
      std::string label = "  " + option_label(o);
      std::string h = option_help(o);
      if (label.size() < 28) s += label + std::string(28 - label.size(), ' ') + wrap(h, 28, W, 28) + "\n";
      else s += label + "\n" + wrap(h, 28, W) + "\n";
    }
  };
  section("Options", tool_options(spec));
  section("Common options", common_options());
  s += "\nExit status: 0 success, 1 failure, 2 usage error, 3 finished with some records failed.\n";
  if (!spec.examples.empty()) {
    s += "\nExamples:\n";
    for (const auto& e : spec.examples) s += "  " + e.first + "\n" + wrap(e.second, 6, W) + "\n";
  }
  s += "\nSee " + spec.name + "(1), hfr(7) and hfr-formats(5).\n";
  return s;
}

std::string render_man(const ToolSpec& spec) {
  std::string up = spec.name;
  for (auto& ch : up) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  std::string s = ".\\\" Generated by '" + spec.name + " --generate-man' from the tool's option table. Do not edit.\n";
  s += ".TH " + up + " 1 \"\" \"hfr " + std::string(kVersion) + "\" \"hfr manual\"\n";
  s += ".SH NAME\n" + roff_escape(spec.name) + " \\- " + roff_escape(spec.summary) + "\n";
  s += ".SH SYNOPSIS\n";
  for (const auto& syn : spec.synopsis) s += ".B " + roff_escape(spec.name) + "\n" + roff_escape(syn) + "\n.br\n";
  s += ".SH DESCRIPTION\n";
  for (std::size_t i = 0; i < spec.description.size(); ++i) s += (i ? ".PP\n" : "") + roff_escape(spec.description[i]) + "\n";
  if (!spec.not_built.empty()) s += ".PP\n.B Status: not built yet.\n" + roff_escape(spec.not_built) + "\n";
  s += ".SS Reads\n" + roff_escape(spec.reads) + "\n.SS Writes\n" + roff_escape(spec.writes) + "\n";
  if (!spec.positionals.empty()) {
    s += ".SH ARGUMENTS\n";
    for (const auto& p : spec.positionals) {
      std::string h = p.help;
      if (!p.choices.empty()) h += " One of: " + sh_words(p.choices) + ".";
      s += ".TP\n.I " + roff_escape(p.name) + "\n" + roff_escape(h) + "\n";
    }
  }
  auto section = [&](const std::string& title, const std::vector<Option>& opts) {
    if (opts.empty()) return;
    s += ".SH " + title + "\n";
    for (const auto& o : opts) {
      s += ".TP\n";
      if (o.short_name) s += "\\fB\\-" + std::string(1, o.short_name) + "\\fR, ";
      s += "\\fB\\-\\-" + roff_escape(o.long_name) + "\\fR";
      if (!o.arg.empty()) s += "=\\fI" + roff_escape(o.arg) + "\\fR";
      s += "\n" + roff_escape(option_help(o)) + "\n";
    }
  };
  section("OPTIONS", tool_options(spec));
  section("COMMON OPTIONS", common_options());
  s += ".SH EXIT STATUS\n.TP\n0\nSuccess.\n.TP\n1\nRuntime failure (bad input, I/O error, capability not built).\n"
       ".TP\n2\nUsage error.\n.TP\n3\nFinished, but some records failed (with \\fB\\-\\-keep\\-going\\fR).\n";
  s += ".PP\nA broken pipe (for example output piped into \\fBhead\\fR) ends the tool quietly with status 0.\n";
  if (!spec.examples.empty()) {
    s += ".SH EXAMPLES\n";
    for (const auto& e : spec.examples) s += ".PP\n.nf\n" + roff_escape(e.first) + "\n.fi\n" + roff_escape(e.second) + "\n";
  }
  s += ".SH SEE ALSO\n";
  std::vector<std::string> see = spec.see_also;
  see.push_back("hfr(7)");
  see.push_back("hfr-formats(5)");
  for (std::size_t i = 0; i < see.size(); ++i) s += ".BR " + roff_escape(see[i].substr(0, see[i].find('('))) + " " + see[i].substr(see[i].find('(')) + (i + 1 < see.size() ? " ,\n" : "\n");
  return s;
}

std::string render_bash_completion(const ToolSpec& spec) {
  std::string fn = "_" + spec.name;
  std::replace(fn.begin(), fn.end(), '-', '_');
  std::vector<Option> opts = all_options(spec);
  std::string s = "# bash completion for " + spec.name + "\n# Generated by '" + spec.name +
                  " --generate-completion=bash' from the tool's option table. Do not edit.\n";
  s += fn + "() {\n  local cur prev\n  COMPREPLY=()\n  cur=\"${COMP_WORDS[COMP_CWORD]}\"\n  prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n";
  s += "  case \"$prev\" in\n";
  for (const auto& o : opts) {
    if (o.arg.empty()) continue;
    std::string pat = "--" + o.long_name;
    if (o.short_name) pat = std::string("-") + o.short_name + "|" + pat;
    std::vector<std::string> ch = o.choices;
    if (o.long_name == "device") ch = device_choices();
    if (!ch.empty() || o.complete == Complete::choices)
      s += "    " + pat + ") COMPREPLY=($(compgen -W \"" + sh_words(ch) + "\" -- \"$cur\")); return 0 ;;\n";
    else if (o.complete == Complete::file)
      s += "    " + pat + ") COMPREPLY=($(compgen -f -- \"$cur\")); return 0 ;;\n";
    else if (o.complete == Complete::dir)
      s += "    " + pat + ") COMPREPLY=($(compgen -d -- \"$cur\")); return 0 ;;\n";
    else
      s += "    " + pat + ") return 0 ;;\n";
  }
  s += "  esac\n";
  std::vector<std::string> words;
  for (const auto& o : opts) {
    words.push_back("--" + o.long_name);
    if (o.short_name) words.push_back(std::string("-") + o.short_name);
  }
  s += "  if [[ \"$cur\" == -* ]]; then\n    COMPREPLY=($(compgen -W \"" + sh_words(words) + "\" -- \"$cur\"))\n    return 0\n  fi\n";
  if (!spec.positionals.empty() && !spec.positionals[0].choices.empty()) {
    s += "  local i n=0\n  for ((i = 1; i < COMP_CWORD; i++)); do\n    [[ \"${COMP_WORDS[i]}\" != -* ]] && n=$((n + 1))\n  done\n";
    s += "  if ((n == 0)); then\n    COMPREPLY=($(compgen -W \"" + sh_words(spec.positionals[0].choices) + "\" -- \"$cur\"))\n    return 0\n  fi\n";
  }
  bool dirs = false, files = false;
  for (const auto& p : spec.positionals) {
    if (p.complete == Complete::dir) dirs = true;
    if (p.complete == Complete::file) files = true;
  }
  if (files) s += "  COMPREPLY=($(compgen -f -- \"$cur\"))\n";
  else if (dirs) s += "  COMPREPLY=($(compgen -d -- \"$cur\"))\n";
  s += "}\ncomplete -o filenames -o bashdefault -F " + fn + " " + spec.name + "\n";
  return s;
}

std::string render_zsh_completion(const ToolSpec& spec) {
  std::string s = "#compdef " + spec.name + "\n# Generated by '" + spec.name +
                  " --generate-completion=zsh' from the tool's option table. Do not edit.\n\n_arguments -s -S \\\n";
  for (const auto& o : all_options(spec)) {
    std::string desc = "[" + zsh_escape(first_sentence(o.help)) + "]";
    std::string action;
    if (!o.arg.empty()) {
      std::vector<std::string> ch = o.choices;
      if (o.long_name == "device") ch = device_choices();
      std::string what = zsh_escape(o.arg);
      if (!ch.empty()) action = ":" + what + ":(" + sh_words(ch) + ")";
      else if (o.complete == Complete::file) action = ":" + what + ":_files";
      else if (o.complete == Complete::dir) action = ":" + what + ":_files -/";
      else action = ":" + what + ": ";
    }
    std::string rep = o.repeatable ? "*" : "";
    if (o.short_name) {
      std::string excl = rep.empty() ? "(-" + std::string(1, o.short_name) + " --" + o.long_name + ")" : "";
      std::string sfx = o.arg.empty() ? "" : "+";
      std::string lsfx = o.arg.empty() ? "" : "=";
      s += "  '" + excl + rep + "'{-" + std::string(1, o.short_name) + sfx + ",--" + o.long_name + lsfx + "}'" + desc + action + "' \\\n";
    } else {
      s += "  '" + rep + "--" + o.long_name + (o.arg.empty() ? "" : "=") + desc + action + "' \\\n";
    }
  }
  for (std::size_t i = 0; i < spec.positionals.size(); ++i) {
    const auto& p = spec.positionals[i];
    std::string action = !p.choices.empty() ? "(" + sh_words(p.choices) + ")"
                         : p.complete == Complete::dir ? "_files -/"
                         : p.complete == Complete::file ? "_files" : " ";
    std::string pos = p.many ? "*" : std::to_string(i + 1);
    std::string opt = p.required ? "" : ":";
    s += "  '" + pos + opt + ":" + zsh_escape(p.name) + ":" + action + "' \\\n";
  }
  s += "\n";
  return s;
}

int run(const ToolSpec& spec, int argc, char** argv, const std::function<int(const Args&)>& body) {
  io::install_signal_handlers();
  log::set_tool(spec.name);
  auto usage_fail = [&](const std::string& msg) {
    log::error(msg);
    log::write_line("Try '" + spec.name + " --help' for more information.");
    return static_cast<int>(kExitUsage);
  };
  auto print = [&](const std::string& text) {
    try {
      auto out = io::open_output("-");
      out->write(text);
      out->commit();
    } catch (const BrokenPipe&) {
    } catch (const std::exception& e) {
      log::error(std::string("write error: ") + e.what());
      return static_cast<int>(kExitFailure);
    }
    return static_cast<int>(kExitOk);
  };
  Args args;
  try {
    args = parse(spec, argc, argv);
  } catch (const UsageError& e) {
    return usage_fail(e.what());
  }
  if (args.given("help")) return print(render_help(spec));
  if (args.given("version")) return print(version_string(spec.name));
  if (args.given("generate-man")) return print(render_man(spec));
  if (args.given("generate-completion"))
    return print(args.str("generate-completion") == "bash" ? render_bash_completion(spec) : render_zsh_completion(spec));
  log::set_level(static_cast<log::Level>(args.common().verbosity));
  Progress::set_mode(args.common().progress ? ProgressMode::always
                     : args.common().verbosity == 0 ? ProgressMode::never
                                                    : ProgressMode::automatic);
  if (!spec.not_built.empty()) {
    log::error("not built yet: " + spec.not_built);
    return kExitFailure;
  }
  try {
    return body(args);
  } catch (const BrokenPipe&) {
    return kExitOk;
  } catch (const UsageError& e) {
    return usage_fail(e.what());
  } catch (const std::bad_alloc&) {
    log::error("out of memory");
    return kExitFailure;
  } catch (const std::exception& e) {
    std::string m = e.what();
    auto nl = m.find('\n');  // c10::Error carries a backtrace: keep its first line
    if (nl != std::string::npos) m = m.substr(0, nl);
    log::error(m);
    return kExitFailure;
  }
}

std::vector<std::string> split_list(const std::string& s, bool keep_empty) {
  std::vector<std::string> out;
  for (std::size_t start = 0;;) {
    const std::size_t comma = s.find(',', start);
    std::string piece = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (keep_empty || !piece.empty()) out.push_back(std::move(piece));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

}  // namespace hfr::cli
