#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <thread>
#include <sstream>

#include "hfr/error.hpp"
#include "hfr/io.hpp"

using namespace hfr;

namespace {
std::string tmpdir() {
  char t[] = "/tmp/hfr-io-XXXXXX";
  REQUIRE(mkdtemp(t) != nullptr);
  return t;
}
bool exists(const std::string& p) {
  struct stat st{};
  return ::stat(p.c_str(), &st) == 0;
}
int count_entries(const std::string& dir) {
  std::string cmd = "ls -A " + dir + " | wc -l";
  FILE* f = popen(cmd.c_str(), "r");
  int n = -1;
  REQUIRE(fscanf(f, "%d", &n) == 1);
  pclose(f);
  return n;
}
std::string slurp(const std::string& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
}  // namespace

TEST_CASE("io: atomic output appears only on commit", "[io]") {
  std::string d = tmpdir();
  std::string p = d + "/out.txt";
  {
    auto out = io::open_output(p);
    out->write("hello\n");
    out->flush();
    CHECK_FALSE(exists(p));
    CHECK(count_entries(d) == 1);  // the temporary
    out->commit();
  }
  CHECK(slurp(p) == "hello\n");
  CHECK(count_entries(d) == 1);
  struct stat st{};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) != 0600);  // not left with mkstemp's private mode
}

TEST_CASE("io: an uncommitted output leaves the old file untouched and no temporary", "[io]") {
  std::string d = tmpdir();
  std::string p = d + "/keep.txt";
  {
    auto out = io::open_output(p);
    out->write("old\n");
    out->commit();
  }
  try {
    auto out = io::open_output(p);
    out->write("half-written");
    throw Error("simulated failure");
  } catch (const Error&) {
  }
  CHECK(slurp(p) == "old\n");
  CHECK(count_entries(d) == 1);
}

TEST_CASE("io: missing files and directories give clear errors", "[io]") {
  CHECK_THROWS_WITH(io::open_input("/nonexistent/x.hft"), "/nonexistent/x.hft: No such file or directory");
  CHECK_THROWS_WITH(io::open_input("/tmp"), "/tmp: is a directory");
  CHECK_THROWS_WITH(io::open_output("/nonexistent-dir/x.hft"), Catch::StartsWith("/nonexistent-dir/x.hft: No such file"));
  CHECK_THROWS_WITH(io::open_output("/tmp"), "/tmp: is a directory");
}

TEST_CASE("io: read_file enforces its size limit", "[io]") {
  std::string d = tmpdir();
  std::string p = d + "/f";
  {
    auto out = io::open_output(p);
    out->write(std::string(1000, 'x'));
    out->commit();
  }
  CHECK(io::read_file(p, 1000).size() == 1000);
  CHECK_THROWS_WITH(io::read_file(p, 999), Catch::Contains("file too large"));
}

TEST_CASE("io: memory input seeks and reads positionally", "[io]") {
  std::string s = "0123456789";
  auto in = io::memory_input(s.data(), s.size(), "m");
  char b[4] = {};
  in->pread_exact(b, 3, 4);
  CHECK(std::string(b, 3) == "456");
  CHECK_THROWS_WITH(in->pread_exact(b, 4, 8), "m: unexpected end of file at byte 8");
  in->seek(8);
  CHECK(in->read_full(b, 4) == 2);
}

TEST_CASE("io: an existing FIFO or device is written in place, never replaced", "[io]") {
  char dir[] = "/tmp/hfr_io_fifo.XXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  std::string fifo = std::string(dir) + "/pipe";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  std::string got;
  std::thread reader([&] {
    std::ifstream in(fifo);
    std::getline(in, got);
  });
  {
    auto out = io::open_output(fifo);
    out->write(std::string("through the pipe\n"));
    out->commit();
  }
  reader.join();
  CHECK(got == "through the pipe");
  struct stat st {};
  REQUIRE(stat(fifo.c_str(), &st) == 0);
  CHECK(S_ISFIFO(st.st_mode));
  {
    auto out = io::open_output("/dev/null");
    out->write(std::string("x"));
    out->commit();
  }
  REQUIRE(stat("/dev/null", &st) == 0);
  CHECK(S_ISCHR(st.st_mode));
  unlink(fifo.c_str());
  rmdir(dir);
}
