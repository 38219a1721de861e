#include "hfr/records.hpp"

#include <cmath>

#include <cstring>

#include "hfr/error.hpp"

namespace hfr {
namespace {

std::string short_reason(const std::string& what) {
  // nlohmann messages look like "[json.exception.parse_error.101] parse error at line 1, column 5: ..."
  std::string s = what;
  auto b = s.find("] ");
  if (b != std::string::npos && s.rfind("[json.exception", 0) == 0) s = s.substr(b + 2);
  return s;
}

}  // namespace

int json_depth(const std::string& s) {
  int depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (char c : s) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') max_depth = std::max(max_depth, ++depth);
    else if (c == ']' || c == '}') --depth;
  }
  return max_depth;
}

Record parse_record(const std::string& line, const std::string& context, int max_depth) {
  if (json_depth(line) > max_depth)
    throw FormatError(context + ": JSON nested deeper than " + std::to_string(max_depth) + " levels");
  Record r;
  try {
    r = Record::parse(line);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(context + ": malformed JSON: " + short_reason(e.what()));
  }
  if (!r.is_object()) throw FormatError(context + ": a record must be a JSON object, got " + std::string(r.type_name()));
  return r;
}

Record error_record(const Record& input, const std::string& message, const std::string& source) {
  Record r = input.is_object() ? input : Record::object();
  if (!source.empty() && !r.contains("id")) r["source"] = source;
  r["error"] = message;
  return r;
}

std::string record_context(const Record& record, std::uint64_t line) {
  if (record.is_object()) {
    auto it = record.find("id");
    if (it != record.end()) {
      if (it->is_string()) return "record '" + it->get<std::string>() + "'";
      if (it->is_number_integer()) return "record " + it->dump();
    }
  }
  return "line " + std::to_string(line);
}

RecordReader::RecordReader(io::Input& in, RecordLimits limits) : in_(in), limits_(limits) {}

bool RecordReader::fill() {
  if (eof_) return false;
  if (pos_ > 0) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  std::size_t old = buf_.size();
  std::size_t want = 1u << 16;
  buf_.resize(old + want);
  std::size_t got = in_.read(&buf_[old], want);
  buf_.resize(old + got);
  if (got == 0) eof_ = true;
  return got > 0;
}

// Reads one line without its newline. Lines longer than the limit are consumed
// and discarded (too_long set) without being held in memory.
bool RecordReader::read_line(std::string& line, bool& too_long) {
  line.clear();
  too_long = false;
  bool any = false;
  for (;;) {
    const char* start = buf_.data() + pos_;
    std::size_t avail = buf_.size() - pos_;
    const void* nl = avail ? std::memchr(start, '\n', avail) : nullptr;
    std::size_t take = nl ? static_cast<std::size_t>(static_cast<const char*>(nl) - start) : avail;
    if (take > 0 || nl) any = true;
    if (!too_long) {
      if (line.size() + take > limits_.max_line_bytes) {
        too_long = true;
        line.clear();
      } else {
        line.append(start, take);
      }
    }
    pos_ += take;
    if (nl) {
      ++pos_;
      return true;
    }
    if (!fill()) return any;
  }
}

bool RecordReader::next(Record& out, std::string* error) {
  std::string line;
  for (;;) {
    bool too_long = false;
    if (!read_line(line, too_long)) return false;
    ++line_;
    std::string ctx = in_.name() + ":" + std::to_string(line_);
    if (too_long) {
      std::string msg = ctx + ": line longer than " + std::to_string(limits_.max_line_bytes) + " bytes";
      if (!error) throw FormatError(msg);
      *error = msg;
      out = nullptr;
      return true;
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;  // blank
    if (!error) {
      out = parse_record(line, ctx, limits_.max_depth);
      return true;
    }
    try {
      out = parse_record(line, ctx, limits_.max_depth);
    } catch (const FormatError& e) {
      *error = e.what();
      out = nullptr;
    }
    return true;
  }
}

void RecordWriter::write(const Record& record) {
  try {
    line_ = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(out_.name() + ": cannot write record: " + short_reason(e.what()));
  }
  line_.push_back('\n');
  out_.write(line_);
  ++count_;
}

double round_decimals(double v, int digits) {
  const double p = std::pow(10.0, digits);
  return std::round(v * p) / p;
}

}  // namespace hfr
