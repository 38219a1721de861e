#include "hfr/scorefile.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_map>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "hfr/error.hpp"

namespace hfr::scores {

// ---------------------------------------------------------------------------
// Interning. The maps are keyed by string_views into an arena of fixed chunks
// that never move, so a lookup with a token straight out of the read buffer
// needs no std::string (C++17 unordered_map has no heterogeneous lookup).
namespace {

// A quick hash for short ids: 8 bytes at a time, multiply-xorshift mixing.
// (std::hash<string_view> is a general-purpose byte hash and showed up at the
// top of the 10M-line profile.)
struct IdHash {
  std::size_t operator()(std::string_view s) const noexcept {
    std::uint64_t h = 0x9E3779B97F4A7C15ull ^ s.size();
    const char* p = s.data();
    std::size_t n = s.size();
    auto mix = [](std::uint64_t x) {
      x ^= x >> 32;
      x *= 0xD6E8FEB86659FD93ull;
      x ^= x >> 32;
      return x;
    };
    while (n >= 8) {
      std::uint64_t w;
      std::memcpy(&w, p, 8);
      h = mix(h ^ w) + 0x632BE59BD9B4E019ull;
      p += 8;
      n -= 8;
    }
    if (n) {
      std::uint64_t w = 0;
      std::memcpy(&w, p, n);
      h = mix(h ^ w ^ (static_cast<std::uint64_t>(n) << 56));
    }
    return static_cast<std::size_t>(mix(h));
  }
};

class Interner {
 public:
  // Index of `s`, or -1.
  std::int64_t find(std::string_view s) const {
    auto it = map_.find(s);
    return it == map_.end() ? -1 : static_cast<std::int64_t>(it->second);
  }
  // The stored copy of an id (stable for the interner's life) and its index.
  const std::pair<const std::string_view, std::uint32_t>* find_entry(std::string_view s) const {
    auto it = map_.find(s);
    return it == map_.end() ? nullptr : &*it;
  }
  void insert(std::string_view s, std::uint32_t index) { map_.emplace(store(s), index); }
  void clear() {
    map_.clear();
    chunks_.clear();
    used_ = cap_ = 0;
  }
  std::size_t indexed = 0;  // how many entries of the id vector are in the map

 private:
  std::string_view store(std::string_view s) {
    if (s.empty()) return {};
    if (s.size() > cap_ - used_) {
      std::size_t n = std::max<std::size_t>(s.size(), 1u << 16);
      chunks_.emplace_back(new char[n]);
      used_ = 0;
      cap_ = n;
    }
    char* p = chunks_.back().get() + used_;
    std::memcpy(p, s.data(), s.size());
    used_ += s.size();
    return {p, s.size()};
  }
  std::unordered_map<std::string_view, std::uint32_t, IdHash> map_;
  std::vector<std::unique_ptr<char[]>> chunks_;
  std::size_t used_ = 0, cap_ = 0;
};

std::string shorten(std::string_view s, std::size_t max = 60) {
  if (s.size() <= max) return std::string(s);
  return std::string(s.substr(0, max)) + "...";
}

}  // namespace

struct ScoreTable::Index {
  Interner probes, references;
};

ScoreTable::ScoreTable() = default;
ScoreTable::~ScoreTable() = default;
ScoreTable::ScoreTable(ScoreTable&&) noexcept = default;
ScoreTable& ScoreTable::operator=(ScoreTable&&) noexcept = default;
ScoreTable::ScoreTable(const ScoreTable& o)
    : score(o.score),
      mated(o.mated),
      probe(o.probe),
      reference(o.reference),
      probe_ids(o.probe_ids),
      reference_ids(o.reference_ids),
      probe_subjects(o.probe_subjects),
      reference_subjects(o.reference_subjects) {}
ScoreTable& ScoreTable::operator=(const ScoreTable& o) {
  if (this != &o) {
    ScoreTable copy(o);
    *this = std::move(copy);
  }
  return *this;
}

void ScoreTable::reserve(std::size_t rows) {
  score.reserve(rows);
  mated.reserve(rows);
  probe.reserve(rows);
  reference.reserve(rows);
}

// The public vectors may have been filled or edited directly; the index
// catches up with any ids appended since it was last used (and is rebuilt
// whole when the vectors shrank).
ScoreTable::Index& ScoreTable::index() const {
  if (!index_) index_ = std::make_unique<Index>();
  auto sync = [](Interner& in, const std::vector<std::string>& ids) {
    if (in.indexed > ids.size()) {
      in.clear();
      in.indexed = 0;
    }
    for (; in.indexed < ids.size(); ++in.indexed)
      if (in.find(ids[in.indexed]) < 0) in.insert(ids[in.indexed], static_cast<std::uint32_t>(in.indexed));
  };
  sync(index_->probes, probe_ids);
  sync(index_->references, reference_ids);
  return *index_;
}

namespace {

// Returns the index of id, adding it (with subject) when new. On a subject
// conflict returns -1 and leaves the earlier subject in *conflict.
std::int64_t intern(Interner& in, std::vector<std::string>& ids, std::vector<std::string>& subjects,
                    std::string_view id, std::string_view subject, std::string* conflict) {
  std::int64_t found = in.find(id);
  if (found < 0) {
    if (ids.size() >= std::numeric_limits<std::uint32_t>::max())
      throw FormatError("more than 4294967294 distinct ids in one score table");
    auto idx = static_cast<std::uint32_t>(ids.size());
    ids.emplace_back(id);
    subjects.emplace_back(subject);
    in.insert(id, idx);
    in.indexed = ids.size();
    return idx;
  }
  std::string& known = subjects[static_cast<std::size_t>(found)];
  if (!subject.empty() && known != subject) {
    if (!known.empty()) {
      *conflict = known;
      return -1;
    }
    known.assign(subject);
  }
  return found;
}

std::uint32_t add_checked(Interner& in, std::vector<std::string>& ids, std::vector<std::string>& subjects,
                          std::string_view id, std::string_view subject, const char* what,
                          const std::string& context) {
  std::string earlier;
  std::int64_t idx = intern(in, ids, subjects, id, subject, &earlier);
  if (idx < 0)
    throw FormatError((context.empty() ? std::string() : context + ": ") + what + " '" + shorten(id) +
                      "' has subject '" + shorten(subject) + "' here but '" + shorten(earlier) + "' before");
  return static_cast<std::uint32_t>(idx);
}

}  // namespace

std::uint32_t ScoreTable::add_probe(std::string_view id, std::string_view subject, const std::string& context) {
  return add_checked(index().probes, probe_ids, probe_subjects, id, subject, "probe", context);
}
std::uint32_t ScoreTable::add_reference(std::string_view id, std::string_view subject, const std::string& context) {
  return add_checked(index().references, reference_ids, reference_subjects, id, subject, "reference", context);
}
std::int64_t ScoreTable::find_probe(std::string_view id) const { return index().probes.find(id); }
std::int64_t ScoreTable::find_reference(std::string_view id) const { return index().references.find(id); }

void ScoreTable::split(std::vector<double>& genuine, std::vector<double>& impostor) const {
  genuine.clear();
  impostor.clear();
  for (std::size_t i = 0; i < score.size(); ++i) {
    if (mated[i] == kMated) genuine.push_back(score[i]);
    else if (mated[i] == kNonMated) impostor.push_back(score[i]);
  }
}

std::size_t ScoreTable::count(std::int8_t status) const {
  return static_cast<std::size_t>(std::count(mated.begin(), mated.end(), status));
}

// ---------------------------------------------------------------------------
const char* format_name(Format f) {
  switch (f) {
    case Format::automatic: return "auto";
    case Format::four_column: return "4col";
    case Format::five_column: return "5col";
    case Format::bob_csv: return "bob-csv";
    case Format::csv: return "csv";
  }
  return "?";
}

Format parse_format(const std::string& name) {
  std::string s;
  for (char c : name) s.push_back(static_cast<char>(c == '_' ? '-' : std::tolower(static_cast<unsigned char>(c))));
  if (s == "auto" || s == "automatic") return Format::automatic;
  if (s == "4col" || s == "4" || s == "four-column" || s == "4-column") return Format::four_column;
  if (s == "5col" || s == "5" || s == "five-column" || s == "5-column") return Format::five_column;
  if (s == "bob-csv" || s == "bobcsv") return Format::bob_csv;
  if (s == "csv") return Format::csv;
  throw UsageError("unknown score format '" + name + "' (expected auto, 4col, 5col, bob-csv or csv)");
}

// ---------------------------------------------------------------------------
// Reading.
namespace {

// Physical lines from an Input, read in big blocks. A line is handed out as a
// view into the buffer, valid until the next call.
class LineReader {
 public:
  LineReader(io::Input& in, std::size_t max_line) : in_(in), max_line_(max_line) { buf_.resize(kBlock); }

  bool next(std::string_view& line) {
    for (;;) {
      const char* s = buf_.data() + pos_;
      std::size_t avail = end_ - pos_;
      const void* nl = avail ? std::memchr(s, '\n', avail) : nullptr;
      std::size_t len;
      if (nl) {
        len = static_cast<std::size_t>(static_cast<const char*>(nl) - s);
        pos_ += len + 1;
      } else if (eof_) {
        if (avail == 0) return false;
        len = avail;
        pos_ = end_;
      } else {
        if (avail > max_line_)
          throw FormatError(in_.name() + ":" + std::to_string(line_ + 1) + ": line longer than " +
                            std::to_string(max_line_) + " bytes");
        fill();
        continue;
      }
      ++line_;
      if (len > max_line_)
        throw FormatError(in_.name() + ":" + std::to_string(line_) + ": line longer than " +
                          std::to_string(max_line_) + " bytes");
      if (len && s[len - 1] == '\r') --len;
      if (line_ == 1 && len >= 3 && std::memcmp(s, "\xEF\xBB\xBF", 3) == 0) {  // UTF-8 byte-order mark
        s += 3;
        len -= 3;
      }
      line = std::string_view(s, len);
      return true;
    }
  }
  std::uint64_t line_number() const { return line_; }
  std::size_t max_line() const { return max_line_; }
  const std::string& name() const { return in_.name(); }

 private:
  static constexpr std::size_t kBlock = 1u << 20;
  void fill() {
    if (pos_ > 0) {
      std::memmove(buf_.data(), buf_.data() + pos_, end_ - pos_);
      end_ -= pos_;
      pos_ = 0;
    }
    if (end_ == buf_.size()) buf_.resize(buf_.size() * 2);
    std::size_t got = in_.read(buf_.data() + end_, buf_.size() - end_);
    if (got == 0) eof_ = true;
    end_ += got;
  }
  io::Input& in_;
  std::size_t max_line_;
  std::vector<char> buf_;
  std::size_t pos_ = 0, end_ = 0;
  bool eof_ = false;
  std::uint64_t line_ = 0;
};

// Blanks: space, tab and the other ASCII control characters (one compare;
// ids never hold control characters).
inline bool is_space(char c) { return static_cast<unsigned char>(c) <= ' '; }

// The first blank in [p, e), or e. Sixteen bytes at a time where SSE2 is
// there (every x86-64): the tokenizer is the largest cost of a 4-column file.
inline const char* next_blank(const char* p, const char* e) {
#if defined(__SSE2__)
  const __m128i space = _mm_set1_epi8(' ');
  while (e - p >= 16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    // v <= ' ' (unsigned) exactly where min(v, ' ') == v
    int m = _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(v, space), v));
    if (m) return p + __builtin_ctz(static_cast<unsigned>(m));
    p += 16;
  }
#endif
  while (p < e && !is_space(*p)) ++p;
  return p;
}

// Splits on runs of blanks. Stores up to max fields, returns how many there are.
int split_ws(std::string_view line, std::string_view* out, int max) {
  int n = 0;
  const char* p = line.data();
  const char* e = p + line.size();
  for (;;) {
    while (p < e && is_space(*p)) ++p;
    if (p == e) return n;
    const char* b = p;
    p = next_blank(p, e);
    if (n < max) out[n] = std::string_view(b, static_cast<std::size_t>(p - b));
    ++n;
  }
}

enum class NumberStatus { ok, not_a_number, not_finite, out_of_range };

NumberStatus parse_number(std::string_view t, double& v) {
  const char* b = t.data();
  const char* e = b + t.size();
  // Python's float() (what bob uses) takes a leading '+'; from_chars does not.
  if (b < e && *b == '+' && e - b > 1 && b[1] != '-' && b[1] != '+') ++b;
  if (b == e) return NumberStatus::not_a_number;
  auto r = std::from_chars(b, e, v);
  if (r.ec == std::errc::result_out_of_range && r.ptr == e) return NumberStatus::out_of_range;
  if (r.ec != std::errc() || r.ptr != e) return NumberStatus::not_a_number;
  if (!std::isfinite(v)) return NumberStatus::not_finite;
  return NumberStatus::ok;
}

[[noreturn]] void fail(const std::string& name, std::uint64_t line, const std::string& why) {
  throw FormatError(name + ":" + std::to_string(line) + ": " + why);
}

double parse_score(std::string_view t, const std::string& name, std::uint64_t line) {
  double v = 0;
  switch (parse_number(t, v)) {
    case NumberStatus::ok: return v;
    case NumberStatus::not_a_number: fail(name, line, "score \"" + shorten(t) + "\" is not a number");
    case NumberStatus::not_finite: fail(name, line, "score \"" + shorten(t) + "\" is not finite");
    case NumberStatus::out_of_range: fail(name, line, "score \"" + shorten(t) + "\" is out of range");
  }
  return v;
}

bool is_content(std::string_view line) {
  for (char c : line) {
    if (is_space(c)) continue;
    return c != '#';
  }
  return false;
}

// One CSV record (RFC 4180) starting with `line`; a quoted field that runs past
// the end of the line pulls further lines from the reader. Fields are written
// to `fields` (reused strings); returns their count.
std::size_t parse_csv_record(std::string_view line, LineReader* reader, std::vector<std::string>& fields,
                             const std::string& name, std::uint64_t start_line, bool* unterminated = nullptr) {
  std::size_t nf = 0;
  std::size_t i = 0;
  for (;;) {
    if (fields.size() <= nf) fields.emplace_back();
    std::string& f = fields[nf];
    f.clear();
    if (i < line.size() && line[i] == '"') {
      ++i;
      for (;;) {
        std::size_t q = line.find('"', i);
        if (q == std::string_view::npos) {
          f.append(line.substr(i));
          f.push_back('\n');
          if (reader && f.size() > reader->max_line())
            fail(name, start_line, "CSV record longer than " + std::to_string(reader->max_line()) + " bytes");
          if (!reader || !reader->next(line)) {
            if (unterminated) {
              *unterminated = true;
              return nf + 1;
            }
            fail(name, start_line, "unterminated quoted field");
          }
          i = 0;
          continue;
        }
        f.append(line.substr(i, q - i));
        i = q + 1;
        if (i < line.size() && line[i] == '"') {
          f.push_back('"');
          ++i;
          continue;
        }
        break;
      }
      if (i < line.size() && line[i] != ',')
        fail(name, start_line, "unexpected character '" + std::string(1, line[i]) + "' after a closing quote");
    } else {
      std::size_t q = line.find(',', i);
      if (q == std::string_view::npos) q = line.size();
      f.assign(line.substr(i, q - i));
      i = q;
    }
    ++nf;
    if (i < line.size() && line[i] == ',') {
      ++i;
      continue;
    }
    return nf;
  }
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Column index of `name` in the header, -1 when absent; twice is an error.
int column(const std::vector<std::string>& header, std::size_t n, const char* name, const std::string& file,
           std::uint64_t line) {
  int found = -1;
  for (std::size_t i = 0; i < n; ++i) {
    if (trim(header[i]) == name) {
      if (found >= 0) fail(file, line, std::string("CSV header names column '") + name + "' twice");
      found = static_cast<int>(i);
    }
  }
  return found;
}

// Keeps the id looked up for the previous row: score files are usually
// grouped by probe, so most rows skip the hash lookup. `id` views the
// interner's stable copy.
struct LastId {
  std::string_view id;
  std::uint32_t index = 0;
  bool valid = false;
};

}  // namespace

// The readers' way into a table's private index.
struct TableAccess {
  static ScoreTable::Index& index(const ScoreTable& t) { return t.index(); }
};

namespace {

class Builder {
 public:
  Builder(ScoreTable& t, const std::string& name)
      : t_(t), probes_(TableAccess::index(t).probes), references_(TableAccess::index(t).references), name_(name) {}
  std::uint32_t probe(std::string_view id, std::string_view subject, std::uint64_t line) {
    return get(last_probe_, probes_, t_.probe_ids, t_.probe_subjects, id, subject, "probe", line);
  }
  std::uint32_t reference(std::string_view id, std::string_view subject, std::uint64_t line) {
    return get(last_ref_, references_, t_.reference_ids, t_.reference_subjects, id, subject, "reference", line);
  }

 private:
  std::uint32_t get(LastId& last, Interner& in, std::vector<std::string>& ids, std::vector<std::string>& subjects,
                    std::string_view id, std::string_view subject, const char* what, std::uint64_t line) {
    if (last.valid && last.id == id && subjects[last.index] == subject) return last.index;
    const auto* e = in.find_entry(id);
    std::uint32_t idx;
    if (e && subjects[e->second] == subject) {
      idx = e->second;
    } else {
      idx = add_checked(in, ids, subjects, id, subject, what, name_ + ":" + std::to_string(line));
      e = in.find_entry(id);
    }
    last.id = e->first;
    last.index = idx;
    last.valid = true;
    return idx;
  }
  ScoreTable& t_;
  Interner& probes_;
  Interner& references_;
  const std::string& name_;
  LastId last_probe_, last_ref_;
};

}  // namespace

Format detect_format(std::string_view line) {
  std::string_view f[6];
  int n = split_ws(line, f, 6);
  bool comma = line.find(',') != std::string_view::npos;
  if (n == 4 || n == 5) {
    double v;
    // An id may hold a comma; a CSV header never ends in a number.
    if (!comma || parse_number(f[n - 1], v) == NumberStatus::ok)
      return n == 4 ? Format::four_column : Format::five_column;
  }
  if (!comma) return Format::automatic;
  std::vector<std::string> header;
  bool unterminated = false;
  std::size_t nf = parse_csv_record(line, nullptr, header, "", 0, &unterminated);
  if (unterminated) return Format::automatic;
  auto has = [&](const char* name) {
    for (std::size_t i = 0; i < nf; ++i)
      if (trim(header[i]) == name) return true;
    return false;
  };
  if (has("probe_subject_id") && has("bio_ref_subject_id") && has("score")) return Format::bob_csv;
  if (has("probe") && has("reference") && has("score")) return Format::csv;
  return Format::automatic;
}

namespace {

void read_text(ScoreTable& t, LineReader& r, std::string_view line, int columns) {
  const std::string& name = r.name();
  Builder b(t, name);
  std::uint64_t first_line = r.line_number();
  std::string_view f[6];
  do {
    int n = split_ws(line, f, 6);
    if (n == 0 || f[0][0] == '#') continue;
    std::uint64_t ln = r.line_number();
    if (n != columns) {
      if (n == 4 || n == 5)
        fail(name, ln, "found " + std::to_string(n) + " columns, but the first line (line " +
                           std::to_string(first_line) + ") has " + std::to_string(columns));
      fail(name, ln, "expected 4 or 5 columns, found " + std::to_string(n));
    }
    double value = parse_score(f[columns - 1], name, ln);
    // 4: claimed_id real_id test_label score; 5: claimed_id model_label real_id test_label score
    std::string_view claimed = f[0];
    std::string_view model = columns == 5 ? f[1] : f[0];
    std::string_view real = columns == 5 ? f[2] : f[1];
    std::string_view label = columns == 5 ? f[3] : f[2];
    std::uint32_t ref = b.reference(model, claimed, ln);
    std::uint32_t probe = b.probe(label, real, ln);
    t.add(probe, ref, value, claimed == real ? kMated : kNonMated);
  } while (r.next(line));
}

std::int8_t parse_mated(std::string_view s, const std::string& name, std::uint64_t line) {
  s = trim(s);
  std::string v;
  for (char c : s) v.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  if (v == "1" || v == "true") return kMated;
  if (v == "0" || v == "false") return kNonMated;
  if (v.empty()) return kUnknown;
  fail(name, line, "mated value \"" + shorten(s) + "\" is not 1, 0, true, false or empty");
}

void read_csv(ScoreTable& t, LineReader& r, std::string_view line, Format format) {
  const std::string& name = r.name();
  std::vector<std::string> header, fields;
  std::uint64_t header_line = r.line_number();
  std::size_t ncols = parse_csv_record(line, &r, header, name, header_line);
  auto col = [&](const char* c) { return column(header, ncols, c, name, header_line); };
  auto need = [&](const char* c) {
    int i = col(c);
    if (i < 0)
      fail(name, header_line, std::string(format == Format::bob_csv ? "bob CSV" : "CSV") + " header has no '" + c +
                                  "' column");
    return i;
  };
  int c_score = need("score");
  int c_probe, c_ref, c_psub = -1, c_rsub = -1, c_mated = -1;
  if (format == Format::bob_csv) {
    c_psub = need("probe_subject_id");
    c_rsub = need("bio_ref_subject_id");
    c_probe = col("probe_key");
    if (c_probe < 0) c_probe = col("probe_template_id");
    if (c_probe < 0) c_probe = col("probe_reference_id");
    c_ref = col("bio_ref_template_id");
    if (c_ref < 0) c_ref = col("bio_ref_reference_id");
    if (c_ref < 0) c_ref = col("bio_ref_key");
    if (c_probe < 0)
      fail(name, header_line, "bob CSV header has no probe id column (probe_key, probe_template_id or probe_reference_id)");
    if (c_ref < 0) c_ref = c_rsub;  // references named by their subject
  } else {
    c_probe = need("probe");
    c_ref = need("reference");
    c_mated = col("mated");
    c_psub = col("probe_subject");
    c_rsub = col("reference_subject");
  }
  Builder b(t, name);
  while (r.next(line)) {
    if (line.empty()) continue;
    std::uint64_t ln = r.line_number();
    std::size_t n = parse_csv_record(line, &r, fields, name, ln);
    if (n != ncols)
      fail(name, ln, "expected " + std::to_string(ncols) + " fields as in the header, found " + std::to_string(n));
    double value = parse_score(trim(fields[c_score]), name, ln);
    std::string_view psub = c_psub >= 0 ? std::string_view(fields[c_psub]) : std::string_view();
    std::string_view rsub = c_rsub >= 0 ? std::string_view(fields[c_rsub]) : std::string_view();
    std::int8_t m;
    if (format == Format::bob_csv) m = psub == rsub ? kMated : kNonMated;  // bob's rule, as written
    else if (c_mated >= 0) m = parse_mated(fields[c_mated], name, ln);
    else if (!psub.empty() && !rsub.empty()) m = psub == rsub ? kMated : kNonMated;
    else m = kUnknown;
    if (fields[c_probe].empty()) fail(name, ln, "empty probe id");
    if (fields[c_ref].empty()) fail(name, ln, "empty reference id");
    std::uint32_t ref = b.reference(fields[c_ref], rsub, ln);
    std::uint32_t probe = b.probe(fields[c_probe], psub, ln);
    t.add(probe, ref, value, m);
  }
}

}  // namespace

Format append_scores(ScoreTable& table, io::Input& in, const ReadOptions& options) {
  LineReader r(in, options.max_line_bytes);
  std::string_view line;
  bool any = false;
  while (r.next(line)) {
    if (is_content(line)) {
      any = true;
      break;
    }
  }
  if (!any) return options.format;
  Format format = options.format;
  if (format == Format::automatic) {
    format = detect_format(line);
    if (format == Format::automatic) {
      std::string_view f[6];
      int n = split_ws(line, f, 6);
      if (line.find(',') == std::string_view::npos)
        fail(in.name(), r.line_number(), "expected 4 or 5 columns, found " + std::to_string(n));
      fail(in.name(), r.line_number(),
           "cannot tell the score format: expected 4 or 5 columns, or a CSV header with probe,reference,score or "
           "with bob's probe_subject_id,bio_ref_subject_id,score");
    }
  }
  // Rows are 17 bytes of columns; reserving from the file size and the first
  // line's length spares the copies of repeated growth (untouched reserved
  // pages cost no memory).
  if (in.seekable() && in.size() > 0) {
    std::uint64_t guess = in.size() / (line.size() + 1) + in.size() / (line.size() + 1) / 8 + 16;
    guess = std::min<std::uint64_t>(guess, in.size() / 8 + 16);
    if (guess > table.size()) table.reserve(table.size() + static_cast<std::size_t>(guess));
  }
  switch (format) {
    case Format::four_column: read_text(table, r, line, 4); break;
    case Format::five_column: read_text(table, r, line, 5); break;
    case Format::bob_csv:
    case Format::csv: read_csv(table, r, line, format); break;
    case Format::automatic: break;
  }
  return format;
}

ScoreTable read_scores(io::Input& in, const ReadOptions& options, Format* detected) {
  ScoreTable t;
  Format f = append_scores(t, in, options);
  if (detected) *detected = f;
  return t;
}

ScoreTable read_scores(const std::string& path, const ReadOptions& options, Format* detected) {
  auto in = io::open_input(path);
  return read_scores(*in, options, detected);
}

// ---------------------------------------------------------------------------
// Writing.

std::string format_score(double value) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, value);
  return std::string(buf, r.ptr);
}

namespace {

void append_score(std::string& s, double value) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, value);
  s.append(buf, r.ptr);
}

void check_token(std::string_view s, const char* what, std::size_t row, const std::string& out, bool first) {
  std::string why;
  if (s.empty()) why = "is empty";
  else if (std::any_of(s.begin(), s.end(), [](char c) { return is_space(c) || c == '\n'; })) why = "contains whitespace";
  else if (first && s[0] == '#') why = "starts with '#' (it would read back as a comment)";
  if (!why.empty())
    throw FormatError(out + ": row " + std::to_string(row + 1) + ": " + what + " '" + shorten(s) + "' " + why +
                      "; the text score formats cannot hold it (write CSV instead)");
}

// Subjects must say what `mated` says, since the subject comparison is all
// the text and bob formats keep.
void check_mated(const ScoreTable& t, std::size_t row, const std::string& out) {
  const std::string& ps = t.probe_subjects[t.probe[row]];
  const std::string& rs = t.reference_subjects[t.reference[row]];
  auto fail_row = [&](const std::string& why) {
    throw FormatError(out + ": row " + std::to_string(row + 1) + " (probe '" + shorten(t.probe_ids[t.probe[row]]) +
                      "', reference '" + shorten(t.reference_ids[t.reference[row]]) + "'): " + why +
                      "; write CSV instead");
  };
  if (ps.empty() || rs.empty()) fail_row("subject unknown, and this format marks mated pairs only by subject");
  if (t.mated[row] != kUnknown && (ps == rs) != (t.mated[row] == kMated))
    fail_row(std::string("marked ") + (t.mated[row] == kMated ? "mated" : "non-mated") + " but subjects '" +
             shorten(rs) + "' and '" + shorten(ps) + "' say otherwise");
}

void csv_field(std::string& s, std::string_view f) {
  bool quote = f.find_first_of(",\"\r\n") != std::string_view::npos ||
               (!f.empty() && (is_space(f.front()) || is_space(f.back())));
  if (!quote) {
    s.append(f);
    return;
  }
  s.push_back('"');
  for (char c : f) {
    if (c == '"') s.push_back('"');
    s.push_back(c);
  }
  s.push_back('"');
}

}  // namespace

void write_scores(const ScoreTable& t, io::Output& out, Format format) {
  if (t.mated.size() != t.size() || t.probe.size() != t.size() || t.reference.size() != t.size())
    throw Error(out.name() + ": score table columns differ in length");
  if (t.probe_subjects.size() != t.probe_ids.size() || t.reference_subjects.size() != t.reference_ids.size())
    throw Error(out.name() + ": score table id and subject lists differ in length");
  for (std::size_t i = 0; i < t.size(); ++i)
    if (t.probe[i] >= t.probe_ids.size() || t.reference[i] >= t.reference_ids.size())
      throw Error(out.name() + ": score table row " + std::to_string(i + 1) + " refers to a missing id");

  const std::string& name = out.name();
  std::string buf;
  buf.reserve(1u << 20);
  auto flush_if_full = [&]() {
    if (buf.size() >= (1u << 20) - 4096) {
      out.write(buf);
      buf.clear();
    }
  };
  bool subjects = std::any_of(t.probe_subjects.begin(), t.probe_subjects.end(), [](auto& s) { return !s.empty(); }) ||
                  std::any_of(t.reference_subjects.begin(), t.reference_subjects.end(),
                              [](auto& s) { return !s.empty(); });
  switch (format) {
    case Format::automatic: throw UsageError("a score format must be named for writing");
    case Format::bob_csv: buf += "probe_template_id,probe_key,probe_subject_id,bio_ref_template_id,bio_ref_subject_id,score\n"; break;
    case Format::csv: buf += subjects ? "probe,reference,score,mated,probe_subject,reference_subject\n" : "probe,reference,score,mated\n"; break;
    default: break;
  }
  for (std::size_t i = 0; i < t.size(); ++i) {
    const std::string& pid = t.probe_ids[t.probe[i]];
    const std::string& rid = t.reference_ids[t.reference[i]];
    const std::string& ps = t.probe_subjects[t.probe[i]];
    const std::string& rs = t.reference_subjects[t.reference[i]];
    switch (format) {
      case Format::four_column:
      case Format::five_column:
        check_mated(t, i, name);
        check_token(rs, "reference subject", i, name, true);
        if (format == Format::five_column) check_token(rid, "reference id", i, name, false);
        check_token(ps, "probe subject", i, name, false);
        check_token(pid, "probe id", i, name, false);
        buf += rs;
        buf.push_back(' ');
        if (format == Format::five_column) {
          buf += rid;
          buf.push_back(' ');
        }
        buf += ps;
        buf.push_back(' ');
        buf += pid;
        buf.push_back(' ');
        break;
      case Format::bob_csv:
        check_mated(t, i, name);
        csv_field(buf, pid);
        buf.push_back(',');
        csv_field(buf, pid);
        buf.push_back(',');
        csv_field(buf, ps);
        buf.push_back(',');
        csv_field(buf, rid);
        buf.push_back(',');
        csv_field(buf, rs);
        buf.push_back(',');
        break;
      case Format::csv:
        csv_field(buf, pid);
        buf.push_back(',');
        csv_field(buf, rid);
        buf.push_back(',');
        break;
      case Format::automatic: break;
    }
    append_score(buf, t.score[i]);
    if (format == Format::csv) {
      buf += t.mated[i] == kMated ? ",1" : t.mated[i] == kNonMated ? ",0" : ",";
      if (subjects) {
        buf.push_back(',');
        csv_field(buf, ps);
        buf.push_back(',');
        csv_field(buf, rs);
      }
    }
    buf.push_back('\n');
    flush_if_full();
  }
  out.write(buf);
}

}  // namespace hfr::scores
