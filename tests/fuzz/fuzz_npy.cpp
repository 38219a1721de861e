// Fuzz target: the .npy reader.
#include <cstdint>

#include "helpers.hpp"
#include "hfr/error.hpp"
#include "hfr/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  hfr::TensorFileLimits lim;
  lim.max_total_bytes = 64u << 20;
  try {
    hfr::test::PipeInput pipe(std::vector<unsigned char>(data, data + size), 4096);
    hfr::read_npy(pipe, "x", lim);
  } catch (const hfr::Error&) {
  }
  try {
    auto in = hfr::io::memory_input(data, size, "fuzz");
    hfr::read_npy(*in, "x", lim);
  } catch (const hfr::Error&) {
  }
  return 0;
}
