// hfr-match's work as a library call: probe x gallery scoring in three modes
// (top-k identification, verification pairs from a list, full score matrix),
// exact or through a FAISS index, with optional subject templates.
#pragma once
#include <cstddef>
#include <string>

#include "hfr/embeddings.hpp"
#include "hfr/search.hpp"

namespace hfr::match {

enum class Mode { top, pairs, matrix };

struct Options {
  std::string gallery;          // embedding set, or a saved index (top mode)
  std::string probes;           // embedding set; "" only with save_index
  std::string output = "-";
  Mode mode = Mode::top;
  std::string pairs_file;       // pairs mode: "probe gallery" lines or {"probe":..,"gallery":..} records
  std::size_t top = 10;
  search::Metric metric = search::Metric::cosine;
  bool gallery_templates = false, probe_templates = false;
  EmbeddingReadOptions read;
  std::string index_type = "exact";  // exact | flat | ivf | hnsw
  search::IndexOptions index;
  std::string save_index;       // write the built index here
  std::size_t batch = 4096;     // probes per block
  int threads = 1;
  bool keep_going = false;
  bool force = false;           // binary output to a terminal
  std::string provenance;       // JSON object: tool, version, arguments
  // Protocol mode: `gallery` names one embedding set of a whole database
  // (records with source paths); the fold's gallery and probe lists select
  // its rows by path, and the lists' subjects label them.
  std::string protocol, protocol_dir;
  int fold = 1;
  bool ignore_extension = false;  // list paths match items whatever their file extension
};

// Runs the whole job; returns the exit code (0, or 3 when --keep-going
// skipped failed pairs). Throws hfr::Error / UsageError on failure; outputs
// are atomic, so nothing half-written is left.
int run(const Options& options);

}  // namespace hfr::match
