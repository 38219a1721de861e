// hfr-embed's pipeline: images -> faces -> aligned crops -> embeddings.
//
// Per chunk of --batch images: decode (threads), BlazeFace on the whole chunk
// as one batch, face selection (policy, minimum size), five landmarks (from
// the face mesh, run as one batch on the rotated face crops, or from the
// detector's keypoints), similarity alignment to the embedding model's
// template, optional horizontal-flip fusion, one embedding batch, L2
// normalisation. The next chunk is decoded while the current one runs through
// the networks. Memory is bounded by one chunk plus the output labels.
//
// Grey (single-channel) images, e.g. NIR, are replicated into the three
// colour channels the models expect.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hfr/face_finder.hpp"
#include "hfr/inputs.hpp"
#include "hfr/records.hpp"

namespace hfr::embed {

using FacePolicy = detect::FacePolicy;
enum class LandmarkSource { mesh, detector };

struct Options {
  std::vector<std::string> inputs;       // images, folders, records files, "-"
  std::string model = "faceres";         // built-in name or hfr model file
  std::string output;                    // tensor file (embedding set)
  std::string records = "-";             // JSON-lines records
  bool aligned = false;                  // inputs are aligned crops
  FacePolicy policy = FacePolicy::largest;
  LandmarkSource landmarks = LandmarkSource::mesh;
  double min_face = 20;                  // pixels, detected box width
  double min_score = 0.5;                // detector score threshold
  int batch = 32;                        // images per chunk
  int net_batch = 8;                     // images per network call
  bool flip = false;
  std::vector<std::string> include, exclude;  // glob patterns on folder-relative paths
  std::string path_field = "path", id_field = "id", subject_field = "subject";
  std::uint64_t max_pixels = 100'000'000;
  int threads = 1;
  std::string device = "cpu";
  std::string provenance;                // JSON text stored in the output metadata
  bool force = false;                    // binary output to a terminal
  bool timing = false;                   // add "latency_ms" to the records
  std::string save_crops;                // folder for the aligned crops as PNG ("" = none)
};

int run(const Options& options);

// The items the inputs name, in order (exposed for tests).
using Item = inputs::Item;
std::vector<Item> enumerate(const Options& options);

}  // namespace hfr::embed
