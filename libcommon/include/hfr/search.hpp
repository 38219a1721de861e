// Probe x gallery scoring: exact search as blocked matrix products (OpenBLAS
// sgemm) in bounded memory, with top-k selection and exact mated ranks, full
// score tiles, single pairs; and approximate vector indexes (FAISS: flat, IVF,
// HNSW) saved to and loaded from tensor files, for galleries of millions.
//
// Scores: cosine similarity of L2-normalised embeddings (default), or the
// negative Euclidean distance -||p - g|| of the raw embeddings, so that a
// higher score always means more similar (the convention of hfr::metrics).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hfr/embeddings.hpp"

namespace hfr::search {

enum class Metric { cosine, euclidean };
Metric parse_metric(const std::string& s);  // "cosine" | "euclidean"; UsageError otherwise
const char* metric_name(Metric m);

struct Hit {
  std::uint32_t index = 0;  // gallery row
  float score = 0;
};

struct ProbeResult {
  std::vector<Hit> top;        // best first; equal scores by gallery row
  // Filled when the probe's subject is known and the gallery holds rows of it:
  bool has_mate = false;
  std::uint32_t mate_index = 0;  // the best-scoring mated gallery row
  float mate_score = 0;
  // 1 + number of non-mated gallery rows scoring >= mate_score (ties count
  // against the probe). For ExactSearch exact (scores compared in double
  // precision); hit scores are computed directly, not from the sgemm
  // expansion. For approximate indexes the
  // position within `top`, or 0 when the mate is not among the hits.
  std::uint64_t mate_rank = 0;
};

// Prepares a gallery and answers queries against it. Thread-safe for
// concurrent const use; each call spreads its work over `threads` threads.
class ExactSearch {
 public:
  // Takes the gallery (normalised here under cosine).
  ExactSearch(EmbeddingSet gallery, Metric metric, int threads);
  ~ExactSearch();

  const EmbeddingSet& gallery() const { return gallery_; }
  Metric metric() const { return metric_; }

  // Top-k per probe over the whole gallery, plus exact mated ranks when
  // mates is true (probe and gallery subjects compared). The probes are
  // normalised in place under cosine.
  std::vector<ProbeResult> top_k(EmbeddingSet& probes, std::size_t k, bool mates) const;

  // Every score of probes x gallery into dst (probes.size() x gallery.size(),
  // row-major). Probes normalised in place under cosine.
  void score_matrix(EmbeddingSet& probes, float* dst) const;

  // One score between a (prepared) probe vector and gallery row g.
  float score(const float* probe, std::size_t g) const;
  // Prepares one probe vector in place (normalises under cosine).
  void prepare(EmbeddingSet& probes) const;
  // Exact key of a prepared probe vector and gallery row g, in double: cosine,
  // or -(squared distance). Orders the gallery as the score does.
  double key(const float* probe, std::size_t g) const;

 private:
  struct Impl;
  EmbeddingSet gallery_;
  Metric metric_;
  int threads_;
  std::unique_ptr<Impl> impl_;
};

// ---- approximate indexes (FAISS) ----
struct IndexOptions {
  std::string type = "flat";  // flat | ivf | hnsw
  int nlist = 0;              // ivf: lists (0 = about 4 sqrt(N))
  int nprobe = 16;            // ivf: lists visited per query
  int hnsw_m = 32;            // hnsw: links per node
  int ef_construction = 80;   // hnsw
  int ef_search = 64;         // hnsw: candidate list size per query
};

class VectorIndex {
 public:
  // Builds an index over the gallery (normalised under cosine).
  VectorIndex(const EmbeddingSet& gallery, Metric metric, const IndexOptions& options, int threads);
  // Loads an index saved by save(); options override the search-time
  // parameters (nprobe, ef_search) when given (> 0).
  static std::unique_ptr<VectorIndex> load(const std::string& path, const IndexOptions& options, int threads);
  ~VectorIndex();

  // Writes a tensor file: the FAISS index bytes plus gallery ids, subjects,
  // metric and options (atomic).
  void save(const std::string& path, const std::string& provenance_json) const;

  std::vector<ProbeResult> top_k(EmbeddingSet& probes, std::size_t k, bool mates) const;

  std::size_t size() const { return ids_.size(); }
  std::int64_t dim() const { return dim_; }
  Metric metric() const { return metric_; }
  const std::vector<std::string>& ids() const { return ids_; }
  const std::vector<std::string>& subjects() const { return subjects_; }
  const IndexOptions& options() const { return opt_; }

 private:
  VectorIndex() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  Metric metric_ = Metric::cosine;
  std::int64_t dim_ = 0;
  IndexOptions opt_;
  int threads_ = 1;
  std::vector<std::string> ids_, subjects_;
};

// True when a file starts like a saved VectorIndex (tensor file whose
// metadata kind is "faiss-index").
bool is_index_file(const std::string& path);

}  // namespace hfr::search
