// Fuzz target: the tensor-file reader, seekable (index, random access) and
// streaming (chunk by chunk from a pipe). Errors must be hfr::Error, never a
// crash, a sanitizer report or a huge allocation.
#include <cstdint>

#include "helpers.hpp"
#include "hfr/error.hpp"
#include "hfr/tensorfile.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  hfr::TensorFileLimits lim;
  lim.max_total_bytes = 64u << 20;
  lim.max_chunk_bytes = 16u << 20;
  lim.max_header_json = 1u << 20;
  try {
    auto in = hfr::io::memory_input(data, size, "fuzz");
    hfr::TensorReader r(*in, lim);
    for (const auto& t : r.tensors()) {
      std::vector<unsigned char> buf;
      std::int64_t rows = t.shape.empty() ? 1 : t.shape[0];
      std::uint64_t rb = t.row_bytes();
      if (rows > 0 && rb <= (1u << 20)) {
        std::int64_t take = std::min<std::int64_t>(rows, 3);
        buf.resize(static_cast<std::size_t>(take * rb));
        r.read_rows(t.name, rows - take, take, buf.data());
      }
    }
    r.read_all();
  } catch (const hfr::Error&) {
  }
  try {
    hfr::test::PipeInput pipe(std::vector<unsigned char>(data, data + size), 4096);
    hfr::TensorReader r(pipe, lim);
    r.read_all();
  } catch (const hfr::Error&) {
  }
  return 0;
}
