// Fuzz target: the JSON-lines reader. Property checked beyond "no crash": every
// record read, written back and read again is equal to itself.
#include <cstdint>
#include <cstdlib>

#include "helpers.hpp"
#include "hfr/error.hpp"
#include "hfr/records.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  hfr::test::PipeInput in(std::vector<unsigned char>(data, data + size), 1 + size % 13);
  hfr::RecordLimits lim;
  lim.max_line_bytes = 4096;
  hfr::RecordReader r(in, lim);
  hfr::Record rec;
  std::string err;
  try {
    while (r.next(rec, &err)) {
      if (rec.is_null()) continue;
      auto out = hfr::io::memory_output();
      hfr::RecordWriter w(*out);
      try {
        w.write(rec);
      } catch (const hfr::FormatError&) {
        continue;  // e.g. a string that is not valid UTF-8 cannot be written back
      }
      std::string line(out->data().begin(), out->data().end() - 1);
      hfr::Record again = hfr::parse_record(line, "again");
      if (again != rec) std::abort();
    }
  } catch (const hfr::Error&) {
  }
  return 0;
}
