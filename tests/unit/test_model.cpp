// hfr model files: import of the built-ins, save/load round trip, integrity.
#include "torch_catch.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>


#include "hfr/error.hpp"
#include "hfr/model.hpp"
#include "model_files.hpp"

using namespace hfr;
namespace fs = std::filesystem;

namespace {
std::string models() { return test::model_dir(); }
bool have_models() { return test::have_model_file(); }
struct TempDir {
  fs::path p = fs::temp_directory_path() / ("hfr_model_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(p); }
  ~TempDir() { fs::remove_all(p); }
};
}  // namespace

TEST_CASE("model: a saved model file runs exactly like the imported model", "[model]") {
  if (!have_models()) return;
  TempDir tmp;
  for (const char* name : {"dlib", "blazeface"}) {
    nn::Model m = nn::import_builtin(name, models());
    CHECK(m.checksum.size() == 64);
    std::string path = (tmp.p / (std::string(name) + ".hft")).string();
    nn::save_model(m, path);
    nn::Model back = nn::load_model(path);
    CHECK(back.name == name);
    CHECK(back.checksum == m.checksum);
    CHECK(back.pre.size == m.pre.size);
    CHECK(back.outputs == m.outputs);
    std::string role = m.outputs.begin()->first;
    nn::Program a = nn::compile(m, {role}), b = nn::compile(back, {role});
    torch::manual_seed(5);
    torch::Tensor x = torch::rand({2, 3, m.pre.size, m.pre.size});
    CHECK(torch::equal(a.run(x)[0], b.run(x)[0]));
  }
}

TEST_CASE("model: corrupt model files and npm files are refused", "[model]") {
  if (!have_models()) return;
  TempDir tmp;
  nn::Model m = nn::import_builtin("iris", models());
  std::string path = (tmp.p / "iris.hft").string();
  nn::save_model(m, path);
  // flip one byte in the middle: the tensor file's checksums or the model checksum catch it
  std::string bad = (tmp.p / "bad.hft").string();
  fs::copy_file(path, bad);
  {
    std::fstream f(bad, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(bad) / 2));
    char c = 0;
    f.read(&c, 1);
    f.seekp(static_cast<std::streamoff>(fs::file_size(bad) / 2));
    c = static_cast<char>(c ^ 0x5a);
    f.write(&c, 1);
  }
  CHECK_THROWS_AS(nn::load_model(bad), Error);
  // an npm file with the right size but other bytes: the pinned SHA-256 catches it
  fs::path dir = tmp.p / "npm";
  fs::create_directories(dir);
  fs::copy_file(models() + "/iris.json", dir / "iris.json");
  fs::copy_file(models() + "/iris.bin", dir / "iris.bin");
  {
    std::fstream f(dir / "iris.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(1000);
    f.write("\x01\x02\x03\x04", 4);
  }
  CHECK_THROWS_WITH(nn::import_builtin("iris", dir.string()), Catch::Contains("differs from the pinned"));
  // missing files point at the fetch script
  CHECK_THROWS_WITH(nn::import_builtin("faceres", (tmp.p / "none").string()), Catch::Contains("fetch-models.sh"));
  CHECK_THROWS_AS(nn::load_model("no-such-model"), UsageError);
}
