// hfr tensor files (.hft): named tensors with JSON metadata, zstd-compressed in
// checksummed chunks, streamable through pipes, randomly accessible on disk.
// The format is specified in hfr-formats(5).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hfr/io.hpp"

namespace hfr {

enum class DType : std::uint8_t { f32 = 1, f16 = 2, bf16 = 3, u8 = 4, i32 = 5, i64 = 6 };

std::size_t dtype_size(DType t);
const char* dtype_name(DType t);
DType parse_dtype(const std::string& name);  // throws UsageError
bool dtype_from_code(std::uint8_t code, DType& out);

using Shape = std::vector<std::int64_t>;
std::string shape_string(const Shape& shape);
// Number of elements; throws FormatError on negative dims or overflow.
std::uint64_t shape_numel(const Shape& shape);

struct TensorInfo {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;  // dim 0 grows while streaming
  std::uint64_t nbytes() const;
  std::uint64_t row_bytes() const;  // bytes per index of dim 0 (whole tensor if 0-d)
};

// Owned, contiguous tensor data (shared so that LibTorch tensors can alias it).
struct Tensor {
  TensorInfo info;
  std::shared_ptr<std::vector<unsigned char>> data;
  const void* ptr() const { return data ? data->data() : nullptr; }
  void* ptr() { return data ? data->data() : nullptr; }
  template <class T> const T* as() const { return static_cast<const T*>(ptr()); }
  template <class T> T* as() { return static_cast<T*>(ptr()); }
};

struct TensorFileLimits {
  std::uint64_t max_header_json = 64u << 20;    // metadata, descriptors, index
  std::uint64_t max_chunk_bytes = 1ull << 30;   // decoded bytes of one chunk
  std::uint64_t max_total_bytes = 64ull << 30;  // decoded bytes held by read_all
  std::uint32_t max_tensors = 1u << 20;
  std::uint32_t max_rank = 8;
};

struct TensorWriterOptions {
  int level = 3;                        // zstd level (1..19); 0 stores uncompressed
  std::size_t chunk_bytes = 4u << 20;   // target decoded bytes per chunk
  int threads = 1;                      // zstd compression workers (output identical for any value)
};

class TensorWriter {
 public:
  TensorWriter(io::Output& out, TensorWriterOptions options = {});
  ~TensorWriter();
  TensorWriter(const TensorWriter&) = delete;
  TensorWriter& operator=(const TensorWriter&) = delete;

  // Merges keys into the file's metadata (later values win) and writes a
  // metadata chunk now, so stream readers see it early.
  void set_metadata(const nlohmann::json& meta);

  // Writes a complete tensor (split into chunks along dim 0).
  void write(const std::string& name, DType dtype, const Shape& shape, const void* data);
  void write(const Tensor& t) { write(t.info.name, t.info.dtype, t.info.shape, t.ptr()); }

  // Streaming: declares a tensor whose dim 0 grows, then appends rows.
  // inner_shape is the shape without dim 0.
  void begin(const std::string& name, DType dtype, const Shape& inner_shape);
  void append(const std::string& name, const void* rows, std::int64_t count);

  // Writes pending rows, the index and the trailer; flushes. Does not commit the
  // io::Output (the caller does, after its own checks).
  void close();

  std::uint64_t bytes_written() const { return offset_; }

 private:
  struct Entry;
  void write_chunk(std::uint8_t kind, std::uint8_t dtype, const std::string& descriptor,
                   const void* raw, std::size_t raw_len, Entry* entry, std::int64_t row0,
                   std::int64_t rows);
  void flush_pending(const std::string& name, bool all);
  io::Output& out_;
  TensorWriterOptions opt_;
  nlohmann::json meta_ = nlohmann::json::object();
  std::vector<std::unique_ptr<Entry>> entries_;
  std::map<std::string, Entry*> by_name_;
  std::uint64_t offset_ = 0;
  bool closed_ = false;
  struct Codec;
  std::unique_ptr<Codec> codec_;
};

// One decoded chunk of rows seen while streaming.
struct TensorChunk {
  const TensorInfo* tensor = nullptr;  // shape[0] = rows seen so far, this chunk included
  std::int64_t row0 = 0;
  std::int64_t rows = 0;
  const unsigned char* data = nullptr;
  std::size_t bytes = 0;
};

class TensorReader {
 public:
  // Validates the file header. For a seekable input, also the trailer and the
  // whole index (offsets inside the file, no overlaps, rows contiguous).
  explicit TensorReader(io::Input& in, TensorFileLimits limits = {});
  ~TensorReader();

  bool random_access() const { return random_access_; }
  const std::string& name() const { return in_.name(); }

  // ---- random access (seekable inputs) ----
  const nlohmann::json& metadata() const { return meta_; }
  const std::vector<TensorInfo>& tensors() const { return infos_; }
  const TensorInfo* find(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // throws FormatError if absent
  // Decodes a tensor into caller memory of exactly info(name).nbytes() bytes.
  void read_into(const std::string& name, void* dst, std::uint64_t dst_bytes);
  // Decodes rows [row0, row0+count) of dim 0 into dst (count*row_bytes bytes).
  void read_rows(const std::string& name, std::int64_t row0, std::int64_t count, void* dst);
  Tensor read(const std::string& name);

  // ---- streaming (any input; on seekable inputs starts at the first chunk) ----
  // Returns the next data chunk; false at a clean end (index and trailer read
  // and checked). metadata()/tensors() grow as chunks arrive.
  bool next(TensorChunk& chunk);

  // Reads all tensors, streaming or random access. Bounded by limits.
  std::vector<Tensor> read_all();

 private:
  struct Index;
  void load_index();
  io::Input& in_;
  TensorFileLimits lim_;
  bool random_access_ = false;
  nlohmann::json meta_ = nlohmann::json::object();
  std::vector<TensorInfo> infos_;
  std::unique_ptr<Index> index_;
  struct Stream;
  std::unique_ptr<Stream> stream_;
};

// Convenience: validates every chunk of a file by streaming through it.
// Returns the tensors' infos; throws FormatError on the first problem.
std::vector<TensorInfo> verify_tensor_file(io::Input& in, TensorFileLimits limits = {});

// Half-precision conversions (round to nearest even).
std::uint16_t float_to_half(float f);
// Writes n floats as an f16 tensor of the given shape (maps, textures).
void write_as_f16(TensorWriter& w, const std::string& name, const Shape& shape, const float* data);
float half_to_float(std::uint16_t h);
std::uint16_t float_to_bfloat16(float f);
float bfloat16_to_float(std::uint16_t b);
// Reads n f32/f16/bf16 elements (little-endian bytes) into floats; other
// dtypes are a logic error (hfr::Error).
void to_float32(DType t, const void* src, std::size_t n, float* dst);
// One element.
float load_float32(DType t, const void* src);

// Reads a whole tensor as floats (from f32/f16/bf16), as u8 or as i32 (the
// dtype must match exactly); FormatError naming `file` and the tensor otherwise.
std::vector<float> read_floats(TensorReader& r, const std::string& name, const std::string& file);
std::vector<std::uint8_t> read_u8(TensorReader& r, const std::string& name, const std::string& file);
std::vector<std::int32_t> read_i32(TensorReader& r, const std::string& name, const std::string& file);

}  // namespace hfr
