#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "hfr/log.hpp"

namespace {
// Runs f with stderr redirected to a file and returns what it wrote.
template <class F> std::string capture_stderr(F f) {
  char path[] = "/tmp/hfr-log-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  int saved = dup(2);
  dup2(fd, 2);
  f();
  dup2(saved, 2);
  close(saved);
  close(fd);
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  unlink(path);
  return ss.str();
}
}  // namespace

TEST_CASE("log: messages are prefixed with the tool and filtered by level", "[log]") {
  hfr::log::set_tool("hfr-test");
  hfr::log::set_level(hfr::log::Level::normal);
  std::string s = capture_stderr([] {
    hfr::log::error("a.jpg: no face found");
    hfr::log::warn("low light");
    hfr::log::info("hidden at normal level");
    hfr::log::debug("hidden too");
  });
  CHECK(s == "hfr-test: a.jpg: no face found\nhfr-test: warning: low light\n");
  hfr::log::set_level(hfr::log::Level::quiet);
  s = capture_stderr([] {
    hfr::log::warn("hidden when quiet");
    hfr::log::error("errors always show");
  });
  CHECK(s == "hfr-test: errors always show\n");
  hfr::log::set_level(hfr::log::Level::debug);
  s = capture_stderr([] { hfr::log::debug("detail"); });
  CHECK(s == "hfr-test: debug: detail\n");
  hfr::log::set_level(hfr::log::Level::normal);
}
