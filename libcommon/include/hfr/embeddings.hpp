// Embedding sets: N x D float rows with an id and a subject per row, read
// block by block (bounded memory) from either
//  - a tensor file (.hft) holding tensor "embeddings" [N, D] (f32, f16 or
//    bf16); row labels come from the metadata arrays "ids" and "subjects"
//    when present (N strings each; a subject may be null), else the id is the
//    row number and the subject unknown; or
//  - JSON-lines records, one per row, each naming its tensor file and row:
//    {"id": "...", "subject": "...", "embeddings": "gallery.hft", "row": 12}.
//    A relative "embeddings" path is resolved against the directory of the
//    records file (the working directory for stdin). Records with an "error"
//    field (failed items of an earlier stage) are skipped and counted.
// The kind of input is recognised by its first bytes, so "-" (stdin) works
// for both. See hfr-formats(5), "Embedding sets".
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hfr/records.hpp"

namespace hfr {

struct EmbeddingSet {
  std::string source;                 // where the rows came from (messages)
  std::int64_t dim = 0;
  std::vector<float> data;            // size() x dim, row-major
  std::vector<std::string> ids;       // one per row
  std::vector<std::string> subjects;  // one per row, "" = unknown
  std::vector<std::uint64_t> origin;  // input position of each row (record line or tensor row)
  std::vector<std::string> paths;     // source path per row when the input names one ("" otherwise)

  std::size_t size() const { return ids.size(); }
  const float* row(std::size_t i) const { return data.data() + i * static_cast<std::size_t>(dim); }
  float* row(std::size_t i) { return data.data() + i * static_cast<std::size_t>(dim); }
  void clear();
  void append(const EmbeddingSet& other);  // dims must agree
  // The rows at `rows` (in that order) as a new set.
  EmbeddingSet subset(const std::vector<std::size_t>& rows) const;
  bool has_subjects() const;               // every row has a known subject
};

struct EmbeddingReadOptions {
  std::string tensor = "embeddings";   // tensor name inside tensor files
  std::string id_field = "id";
  std::string subject_field = "subject";
  std::string file_field = "embeddings";
  std::string row_field = "row";
  std::string path_field = "path";     // source image path (records) / metadata "paths" (tensor files)
};

class EmbeddingReader {
 public:
  EmbeddingReader(const std::string& path, EmbeddingReadOptions options = {});
  ~EmbeddingReader();
  EmbeddingReader(const EmbeddingReader&) = delete;
  EmbeddingReader& operator=(const EmbeddingReader&) = delete;

  // Replaces `out` with up to max_rows next rows; false when nothing is left.
  // Throws FormatError naming the file and the record or row on bad input
  // (missing fields, unknown tensor, non-finite values, dimension changes).
  bool next(EmbeddingSet& out, std::size_t max_rows);

  std::int64_t dim() const { return dim_; }          // known after the first block
  std::uint64_t skipped() const { return skipped_; } // records skipped for "error"
  const std::string& name() const { return name_; }
  bool is_records() const { return records_ != nullptr; }

 private:
  struct TensorSource;
  struct RecordSource;
  std::string name_;
  EmbeddingReadOptions opt_;
  std::unique_ptr<TensorSource> tensor_;
  std::unique_ptr<RecordSource> records_;
  std::int64_t dim_ = 0;
  std::uint64_t skipped_ = 0;
};

// Reads a whole set (for galleries).
EmbeddingSet read_embeddings(const std::string& path, const EmbeddingReadOptions& options = {},
                             std::uint64_t* skipped = nullptr);

// L2-normalises every row in place. A row of zero norm is an error naming it.
void normalize_rows(EmbeddingSet& set);

// Templates: rows grouped by `subjects` (the grouping key), each template the
// mean of its L2-normalised rows, normalised again; id = the key. Order: first
// appearance. Rows with an unknown key are an error naming the first one.
EmbeddingSet make_templates(const EmbeddingSet& set);

}  // namespace hfr
