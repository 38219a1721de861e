// Import of TF.js models onto LibTorch (see docs/models.md for the models).
//
//  - Graph models (model.json with "modelTopology" + "weightsManifest"): the
//    nodes become an nn::Graph; weights are read from the listed shards,
//    float16 / uint8 / uint16 quantisation undone (value = min + scale * q),
//    int32 kept as integers.
//  - face-api's dlib ResNet-29 face descriptor: a bare weights manifest whose
//    tensor names describe the layers; the architecture (face-api's
//    faceRecognitionNet, docs/models.md §3) is built here as an nn::Graph over
//    those weights, for a 150x150 input.
// Every size, offset, dtype and path in the JSON is validated before use.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "hfr/graph.hpp"

namespace hfr::tfjs {

struct Limits {
  std::uint64_t max_json_bytes = 64u << 20;
  std::uint64_t max_weight_bytes = 2ull << 30;  // all shards of a model
};

struct Imported {
  nn::Graph graph;
  std::string input;    // the Placeholder node
  nlohmann::json info;  // format, generatedBy, convertedBy, files [{file, bytes, sha256}]
};

Imported load_graph_model(const std::string& model_json, const Limits& limits = {});

// Weights of a TF.js weights manifest (a list of {paths, weights} groups);
// shard paths are plain file names relative to dir. Adds the files to
// info["files"] when info is given.
std::map<std::string, torch::Tensor> load_weights(const nlohmann::json& manifest, const std::string& dir,
                                                  const std::string& context, const Limits& limits = {},
                                                  nlohmann::json* info = nullptr);

// face-api's face_recognition_model (weights manifest path): the dlib
// ResNet-29 graph, input "input" [N,150,150,3] (RGB scaled as face-api does:
// (x - mean RGB) / 255), output "descriptor" [N,128].
Imported load_dlib_resnet(const std::string& manifest_json, const Limits& limits = {});

}  // namespace hfr::tfjs
