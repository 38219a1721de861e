// JSON-lines records: one JSON object per line, UTF-8. Unknown fields are kept
// (in their original order, with their values) and passed through.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "hfr/io.hpp"

namespace hfr {

using Record = nlohmann::ordered_json;

struct RecordLimits {
  std::size_t max_line_bytes = 64u << 20;  // longer lines are refused, not buffered
  int max_depth = 64;                      // nesting depth of arrays/objects
};

class RecordReader {
 public:
  explicit RecordReader(io::Input& in, RecordLimits limits = {});

  // Reads the next record; false at end of input. Blank lines are skipped;
  // CRLF is accepted. A malformed line throws FormatError "name:LINE: why",
  // unless `error` is given: then the message is stored there, the line is
  // skipped, and true is returned with `out` set to null.
  bool next(Record& out, std::string* error = nullptr);

  std::uint64_t line_number() const { return line_; }  // of the last line read
  const std::string& name() const { return in_.name(); }
  std::string where() const { return in_.name() + ":" + std::to_string(line_); }  // "NAME:LINE" of the last line read

 private:
  bool read_line(std::string& line, bool& too_long);
  bool fill();
  io::Input& in_;
  RecordLimits limits_;
  std::uint64_t line_ = 0;
  std::string buf_;
  std::size_t pos_ = 0;
  bool eof_ = false;
};

class RecordWriter {
 public:
  explicit RecordWriter(io::Output& out) : out_(out) {}
  void write(const Record& record);  // one line, compact
  void flush() { out_.flush(); }
  std::uint64_t count() const { return count_; }

 private:
  io::Output& out_;
  std::uint64_t count_ = 0;
  std::string line_;
};

// Greatest nesting depth of arrays/objects in JSON text, ignoring brackets
// inside strings: a cheap guard against stack exhaustion on hostile input,
// checked before parsing.
int json_depth(const std::string& text);

// Parses one line (exposed for tests and fuzzing). Throws FormatError with the
// given context.
Record parse_record(const std::string& line, const std::string& context, int max_depth = 64);

// The record written for a failed item under --keep-going: the input record's
// fields (when it could be parsed) plus "error" (the message) and, for lines
// that could not be parsed, "source" ("file:line").
Record error_record(const Record& input, const std::string& message, const std::string& source = "");

// Returns "<record id>" context for messages: the record's "id" if present,
// else "line N".
std::string record_context(const Record& record, std::uint64_t line);

// v rounded to `digits` decimals for a record (dividing by a power of ten
// gives the double nearest the decimal, so the JSON shows no float noise).
double round_decimals(double v, int digits);

}  // namespace hfr
