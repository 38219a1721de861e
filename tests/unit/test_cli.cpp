#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "hfr/cli.hpp"
#include "hfr/error.hpp"

using namespace hfr;
using namespace hfr::cli;

namespace {
ToolSpec demo_spec() {
  ToolSpec s;
  s.name = "hfr-demo";
  s.summary = "a tool for tests";
  s.synopsis = {"[OPTION]... [FILE]..."};
  s.description = {"Does nothing."};
  s.reads = "files";
  s.writes = "records";
  s.options = {{"output", 'o', "FILE", "Output file.", "-", {}, Complete::file},
               {"mode", 0, "M", "Mode.", "fast", {"fast", "exact"}, Complete::choices},
               {"tag", 0, "T", "A tag.", "", {}, Complete::none, true},
               {"dry-run", 'n', "", "Do nothing.", "", {}, Complete::none}};
  s.positionals = {{"FILE", "Inputs.", Complete::file, {}, false, true}};
  s.keep_going = true;
  return s;
}

Args parse_args(std::vector<std::string> words) {
  words.insert(words.begin(), "hfr-demo");
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(&w[0]);
  return parse(demo_spec(), static_cast<int>(argv.size()), argv.data());
}
}  // namespace

TEST_CASE("cli: long, short, inline and clustered options", "[cli]") {
  Args a = parse_args({"-o", "x.hft", "--mode=exact", "-nqk", "--tag", "a", "--tag=b", "in1", "-", "--", "-weird"});
  CHECK(a.str("output") == "x.hft");
  CHECK(a.str("mode") == "exact");
  CHECK(a.flag("dry-run"));
  CHECK(a.common().verbosity == 0);
  CHECK(a.common().keep_going);
  CHECK(a.all("tag") == std::vector<std::string>{"a", "b"});
  CHECK(a.positionals() == std::vector<std::string>{"in1", "-", "-weird"});
  Args b = parse_args({"-ofile"});
  CHECK(b.str("output") == "file");
}

TEST_CASE("cli: defaults and common options", "[cli]") {
  Args a = parse_args({});
  CHECK(a.str("output") == "-");
  CHECK(a.str("mode") == "fast");
  CHECK_FALSE(a.given("output"));
  CHECK(a.common().threads == hardware_threads());
  CHECK(a.common().device == "cpu");
  CHECK(a.common().seed == 0);
  CHECK(a.common().verbosity == 1);
  Args b = parse_args({"-t", "3", "--device", "cuda:1", "--seed", "18446744073709551615", "-vv"});
  CHECK(b.common().threads == 3);
  CHECK(b.common().device == "cuda:1");
  CHECK(b.common().seed == 18446744073709551615ull);
  CHECK(b.common().verbosity == 3);
}

TEST_CASE("cli: misuse gives usage errors that name the problem", "[cli]") {
  CHECK_THROWS_WITH(parse_args({"--nope"}), "unknown option '--nope'");
  CHECK_THROWS_WITH(parse_args({"-x"}), "unknown option '-x'");
  CHECK_THROWS_WITH(parse_args({"--output"}), "option '--output' needs a value (FILE)");
  CHECK_THROWS_WITH(parse_args({"--dry-run=yes"}), "option '--dry-run' takes no value");
  CHECK_THROWS_WITH(parse_args({"--mode=slow"}), "invalid value 'slow' for --mode (expected fast exact)");
  CHECK_THROWS_WITH(parse_args({"-t", "x"}), Catch::StartsWith("invalid value 'x' for --threads"));
  CHECK_THROWS_WITH(parse_args({"--device=gpu"}), Catch::StartsWith("invalid device 'gpu'"));
  CHECK_THROWS_WITH(parse_args({"--seed=-1"}), Catch::StartsWith("invalid value '-1' for --seed"));
  CHECK_THROWS_WITH(parse_args({"-o", "a", "-o", "b"}), "option '-o' given twice with different values");
  CHECK_THROWS_AS(parse_args({"--nope"}), UsageError);
}

namespace {
std::string write_config(const std::string& name, const std::string& text) {
  const std::string path = (std::filesystem::temp_directory_path() / ("hfr-test-" + std::to_string(::getpid()) + "-" + name)).string();
  std::ofstream(path) << text;
  return path;
}
}  // namespace

TEST_CASE("cli: --config FILE gives options the command line does not", "[cli]") {
  const std::string cfg = write_config("ok.conf",
                                       "# a comment\n"
                                       "mode = exact\n"
                                       "  output = \"from file.hft\"  \n"
                                       "\n"
                                       "--tag = a\n"
                                       "tag=b\n"
                                       "dry-run\n"
                                       "keep-going = false\n"
                                       "seed = 7\n");
  Args a = parse_args({"--config", cfg, "in1"});
  CHECK(a.str("mode") == "exact");
  CHECK(a.str("output") == "from file.hft");
  CHECK(a.all("tag") == std::vector<std::string>{"a", "b"});
  CHECK(a.flag("dry-run"));
  CHECK_FALSE(a.flag("keep-going"));
  CHECK(a.common().seed == 7);
  CHECK(a.positionals() == std::vector<std::string>{"in1"});
  // the command line wins, also over repeatable options
  Args b = parse_args({"--config=" + cfg, "--mode", "fast", "--tag", "c", "--seed", "9"});
  CHECK(b.str("mode") == "fast");
  CHECK(b.all("tag") == std::vector<std::string>{"c"});
  CHECK(b.common().seed == 9);
  CHECK(b.str("output") == "from file.hft");
  std::remove(cfg.c_str());
}

TEST_CASE("cli: --config errors name the file and line", "[cli]") {
  const std::string unknown = write_config("unknown.conf", "mode = fast\nspeed = 3\n");
  CHECK_THROWS_WITH(parse_args({"--config", unknown}), unknown + ":2: unknown option 'speed'");
  const std::string bad_choice = write_config("choice.conf", "mode = slow\n");
  CHECK_THROWS_WITH(parse_args({"--config", bad_choice}), bad_choice + ":1: invalid value 'slow' for mode (expected fast exact)");
  const std::string no_value = write_config("novalue.conf", "\n\noutput\n");
  CHECK_THROWS_WITH(parse_args({"--config", no_value}), no_value + ":3: 'output' needs a value (output = FILE)");
  const std::string flag = write_config("flag.conf", "dry-run = maybe\n");
  CHECK_THROWS_WITH(parse_args({"--config", flag}), Catch::StartsWith(flag + ":1: 'dry-run' is a flag"));
  const std::string twice = write_config("twice.conf", "output = a\noutput = b\n");
  CHECK_THROWS_WITH(parse_args({"--config", twice}), twice + ":2: 'output' given twice with different values");
  const std::string nested = write_config("nested.conf", "config = other.conf\n");
  CHECK_THROWS_WITH(parse_args({"--config", nested}), nested + ":1: unknown option 'config'");
  const std::string seed = write_config("seed.conf", "seed = -3\n");
  CHECK_THROWS_WITH(parse_args({"--config", seed}), Catch::StartsWith("invalid value '-3' for --seed"));
  CHECK_THROWS_WITH(parse_args({"--config", "/nonexistent/x.conf"}), Catch::StartsWith("--config: cannot read /nonexistent/x.conf"));
  for (const auto& p : {unknown, bad_choice, no_value, flag, twice, nested, seed}) std::remove(p.c_str());
}

TEST_CASE("cli: --shard K/N", "[cli]") {
  CHECK(parse_shard("2/5") == std::pair<int, int>(2, 5));
  CHECK_THROWS_AS(parse_shard("0/5"), UsageError);
  CHECK_THROWS_AS(parse_shard("6/5"), UsageError);
  CHECK_THROWS_AS(parse_shard("1-5"), UsageError);
}

TEST_CASE("cli: help, man page and completions list the same options", "[cli]") {
  ToolSpec s = demo_spec();
  std::string help = render_help(s), man = render_man(s), bash = render_bash_completion(s), zsh = render_zsh_completion(s);
  for (const auto& o : all_options(s)) {
    INFO(o.long_name);
    CHECK(help.find("--" + o.long_name) != std::string::npos);
    std::string roff;
    for (char c : o.long_name) roff += c == '-' ? std::string("\\-") : std::string(1, c);
    CHECK(man.find("\\-\\-" + roff) != std::string::npos);
    CHECK(bash.find("--" + o.long_name) != std::string::npos);
    CHECK(zsh.find("--" + o.long_name) != std::string::npos);
  }
  CHECK(help.find("Usage: hfr-demo [OPTION]... [FILE]...") == 0);
  CHECK(help.find("Default: fast.") != std::string::npos);
  CHECK(bash.find("compgen -W \"fast exact\"") != std::string::npos);
  CHECK(zsh.find("#compdef hfr-demo") == 0);
  CHECK(man.find(".TH HFR-DEMO 1") != std::string::npos);
}

TEST_CASE("split_list: comma-separated option values, empty pieces dropped or kept", "[cli]") {
  using V = std::vector<std::string>;
  CHECK(hfr::cli::split_list("svg,png") == V{"svg", "png"});
  CHECK(hfr::cli::split_list("a,,b,") == V{"a", "b"});
  CHECK(hfr::cli::split_list("").empty());
  CHECK(hfr::cli::split_list("a,,b,", true) == V{"a", "", "b", ""});
  CHECK(hfr::cli::split_list("VIS", true) == V{"VIS"});
}
