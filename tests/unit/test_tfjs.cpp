// The TF.js importer against golden outputs of the original runtime
// (tests/fixtures/golden, made by scripts/golden/make-golden.js with TF.js
// 4.22.0). Needs the fetched models (scripts/fetch-models.sh); skips without.
#include "torch_catch.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>


#include "hfr/error.hpp"
#include "hfr/face.hpp"
#include "hfr/npy.hpp"
#include "hfr/tensor_torch.hpp"
#include "hfr/tfjs.hpp"
#include "model_files.hpp"

using namespace hfr;
namespace fs = std::filesystem;

namespace {

using test::model_dir;
std::string golden(const std::string& f) { return std::string(HFR_SOURCE_DIR) + "/tests/fixtures/golden/" + f; }

torch::Tensor npy(const std::string& path) {
  auto in = io::open_input(path);
  return to_torch(read_npy(*in, path)).clone();
}

// uint8 HWC image -> float NCHW batch of 1, x * scale + offset
torch::Tensor input_of(const std::string& file, double scale, double offset) {
  torch::Tensor u8 = npy(golden(file));
  return (u8.to(at::kFloat) * scale + offset).permute({2, 0, 1}).unsqueeze(0).contiguous();
}

struct Case {
  std::string model, json, input_node;
  double scale, offset;
  std::vector<std::pair<std::string, std::string>> outputs;  // node, golden file stem
};

bool have_models() { return test::have_model_file(); }

void check_close(const torch::Tensor& got, const torch::Tensor& want, double atol, const std::string& what) {
  INFO(what);
  REQUIRE(got.sizes().vec() == want.sizes().vec());
  double err = (got - want).abs().max().item<double>();
  INFO("max abs error " << err << ", max abs " << want.abs().max().item<double>());
  CHECK(err <= atol);
  double cos = at::cosine_similarity(got.flatten().to(at::kDouble), want.flatten().to(at::kDouble), 0).item<double>();
  if (std::getenv("HFR_TEST_VERBOSE")) std::fprintf(stderr, "%-50s max abs err %.3g (max %.3g) cosine %.9f\n", what.c_str(), err, want.abs().max().item<double>(), cos);
  if (got.dim() == 2 && got.size(1) >= 16) {  // descriptors: cosine
    INFO("cosine " << cos);
    CHECK(cos >= 0.9999);
  }
}

}  // namespace

TEST_CASE("tfjs: graph models match the TF.js runtime on the golden inputs", "[tfjs][golden]") {
  if (!have_models()) return;
  const double s255 = 1.0 / 255, s127 = 1.0 / 127.5;
  std::vector<Case> cases = {
      {"faceres", "faceres.json", "input_1", 1, 0,
       {{"global_pooling/Mean", "global_pooling_Mean"}, {"gender_pred/Sigmoid", "gender_pred_Sigmoid"}, {"age_pred/Softmax", "age_pred_Softmax"}}},
      {"faceres-deep", "faceres-deep.json", "input_1", 1, 0,
       {{"global_pooling/Mean", "global_pooling_Mean"}, {"gender_pred/Sigmoid", "gender_pred_Sigmoid"}}},
      {"blazeface", "blazeface.json", "input", s127, -1,
       {{"Identity", "Identity"}, {"Identity_1", "Identity_1"}, {"Identity_2", "Identity_2"}, {"Identity_3", "Identity_3"}}},
      {"facemesh", "facemesh.json", "input_1", s255, 0,
       {{"Identity", "Identity"}, {"Identity_1", "Identity_1"}, {"Identity_2", "Identity_2"}}},
      {"iris", "iris.json", "input_1", s255, 0, {{"Identity", "Identity"}}},
      {"mobilefacenet", "mobilefacenet.json", "img_inputs", s255, 0,
       {{"embeddings", "embeddings"}, {"MobileFaceNet/Logits/SpatialSqueeze", "MobileFaceNet_Logits_SpatialSqueeze"}}},
  };
  for (const auto& c : cases) {
    SECTION(c.model) {
      auto m = tfjs::load_graph_model(model_dir() + "/" + c.json);
      CHECK(m.input == c.input_node);
      std::vector<std::string> outs;
      for (const auto& o : c.outputs) outs.push_back(o.first);
      for (bool fuse : {true, false}) {
        nn::CompileOptions co;
        co.fuse = fuse;
        nn::Program p(m.graph, m.input, outs, c.model, co);
        for (const char* kind : {"photo", "random"}) {
          auto x = input_of(c.model.substr(0, c.model == "faceres-deep" ? 7 : c.model.size()) + ".input_" + kind + ".npy", c.scale, c.offset);
          auto y = p.run(x);
          for (std::size_t i = 0; i < outs.size(); ++i) {
            auto want = npy(golden(c.model + "." + kind + "." + c.outputs[i].second + ".npy"));
            // raw logits of blazeface reach ~1e2; TF.js's own backends differ by 3e-4 there
            double atol = want.abs().max().item<double>() > 20 ? 1e-3 : 1e-4;
            check_close(y[i], want, atol, c.model + " " + kind + " " + outs[i] + (fuse ? " fused" : " unfused"));
          }
        }
      }
    }
  }
}

TEST_CASE("tfjs: face-api's dlib ResNet matches face-api on the golden inputs", "[tfjs][golden]") {
  if (!have_models()) return;
  auto m = tfjs::load_dlib_resnet(model_dir() + "/face-api/face_recognition_model-weights_manifest.json");
  nn::Program p(m.graph, m.input, {"descriptor"}, "dlib");
  for (const char* kind : {"photo", "random"}) {
    torch::Tensor u8 = npy(golden(std::string("dlib.input_") + kind + ".npy")).to(at::kFloat);
    torch::Tensor mean = torch::tensor({122.782f, 117.001f, 104.298f});
    torch::Tensor x = ((u8 - mean) / 255.0f).permute({2, 0, 1}).unsqueeze(0).contiguous();
    auto want = npy(golden(std::string("dlib.") + kind + ".descriptor.npy")).reshape({1, -1});
    check_close(p.run(x)[0], want, 1e-4, std::string("dlib ") + kind);
  }
}

TEST_CASE("tfjs: results do not depend on batch size or thread count", "[tfjs][golden]") {
  if (!have_models()) return;
  auto m = tfjs::load_graph_model(model_dir() + "/faceres.json");
  nn::Program p(m.graph, m.input, {"global_pooling/Mean"}, "faceres");
  auto a = input_of("faceres.input_photo.npy", 1, 0), b = input_of("faceres.input_random.npy", 1, 0);
  int threads = at::get_num_threads();
  at::set_num_threads(1);
  auto single_a = p.run(a)[0], single_b = p.run(b)[0];
  at::set_num_threads(2);
  auto batch = p.run(torch::cat({a, b, a, b, b}))[0];
  at::set_num_threads(threads);
  CHECK((batch[0] - single_a[0]).abs().max().item<double>() <= 1e-5);
  CHECK((batch[4] - single_b[0]).abs().max().item<double>() <= 1e-5);
  CHECK((batch[2] - single_a[0]).abs().max().item<double>() <= 1e-5);
}

TEST_CASE("tfjs: missing, truncated and corrupt model files give clear errors", "[tfjs]") {
  if (!have_models()) return;
  fs::path tmp = fs::temp_directory_path() / ("hfr_tfjs_" + std::to_string(::getpid()));
  fs::create_directories(tmp);
  fs::copy_file(model_dir() + "/iris.json", tmp / "iris.json", fs::copy_options::overwrite_existing);
  // missing shard
  CHECK_THROWS_WITH(tfjs::load_graph_model((tmp / "iris.json").string()), Catch::Contains("iris.bin: No such file"));
  // truncated shard
  {
    auto full = fs::file_size(model_dir() + "/iris.bin");
    std::ifstream in(model_dir() + "/iris.bin", std::ios::binary);
    std::vector<char> buf(full - 100);
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    std::ofstream(tmp / "iris.bin", std::ios::binary).write(buf.data(), static_cast<std::streamsize>(buf.size()));
  }
  CHECK_THROWS_WITH(tfjs::load_graph_model((tmp / "iris.json").string()), Catch::Contains("truncated or corrupt"));
  // not JSON
  std::ofstream(tmp / "bad.json") << "{\"modelTopology\": ";
  CHECK_THROWS_AS(tfjs::load_graph_model((tmp / "bad.json").string()), FormatError);
  // a path escaping the model directory
  std::ofstream(tmp / "evil.json") << R"({"modelTopology":{"node":[{"name":"x","op":"Placeholder"}]},"weightsManifest":[{"paths":["../etc/passwd"],"weights":[]}]})";
  CHECK_THROWS_WITH(tfjs::load_graph_model((tmp / "evil.json").string()), Catch::Contains("plain file name"));
  fs::remove_all(tmp);
}

TEST_CASE("tfjs: detections from the imported BlazeFace agree with TF.js's within 0.5 px", "[tfjs][golden]") {
  if (!have_models()) return;
  auto m = tfjs::load_graph_model(model_dir() + "/blazeface.json");
  nn::Program p(m.graph, m.input, {"Identity", "Identity_1", "Identity_2", "Identity_3"}, "blazeface");
  auto ours = p.run(input_of("blazeface.input_photo.npy", 1.0 / 127.5, -1));
  auto vec = [](const torch::Tensor& t) {
    torch::Tensor c = t.contiguous();
    return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  };
  std::vector<std::vector<float>> a, b;
  for (int i = 0; i < 4; ++i) {
    a.push_back(vec(ours[i]));
    std::string id = i == 0 ? "Identity" : "Identity_" + std::to_string(i);
    b.push_back(vec(npy(golden("blazeface.photo." + id + ".npy"))));
  }
  auto lb = face::Letterbox::fit(256, 256, 256);
  auto da = face::decode_blazeface(a[0], a[1], a[2], a[3], lb);
  auto db = face::decode_blazeface(b[0], b[1], b[2], b[3], lb);
  REQUIRE(da.size() == db.size());
  REQUIRE(da.size() >= 3);
  for (std::size_t i = 0; i < da.size(); ++i) {
    CHECK(std::abs(da[i].x0 - db[i].x0) < 0.5);
    CHECK(std::abs(da[i].y1 - db[i].y1) < 0.5);
    CHECK(std::abs(da[i].score - db[i].score) < 1e-4);
    for (int k = 0; k < 6; ++k) CHECK(cv::norm(da[i].keypoints[k] - db[i].keypoints[k]) < 0.5);
  }
}

TEST_CASE("tfjs: the imported models match TF.js on CUDA too", "[tfjs][golden][cuda]") {
  if (!have_models()) return;
  if (!torch::cuda::is_available()) {
    WARN("no CUDA device: the CUDA golden check is skipped");
    return;
  }
  torch::Device dev = torch_device("cuda");  // also turns TF32 off
  struct C {
    const char* json;
    const char* stem;
    double scale, offset;
    const char* out;
    const char* file;
  };
  for (const C& c : {C{"faceres.json", "faceres", 1, 0, "global_pooling/Mean", "global_pooling_Mean"},
                     C{"blazeface.json", "blazeface", 1.0 / 127.5, -1, "Identity_3", "Identity_3"},
                     C{"facemesh.json", "facemesh", 1.0 / 255, 0, "Identity_2", "Identity_2"}}) {
    auto m = tfjs::load_graph_model(model_dir() + "/" + c.json);
    nn::Program p(m.graph, m.input, {c.out}, c.stem);
    p.to(dev);
    auto y = p.run(input_of(std::string(c.stem) + ".input_photo.npy", c.scale, c.offset).to(dev))[0].to(torch::kCPU);
    auto want = npy(golden(std::string(c.stem) + ".photo." + c.file + ".npy"));
    check_close(y, want, want.abs().max().item<double>() > 20 ? 1e-3 : 1e-4, std::string(c.stem) + " cuda");
  }
}
