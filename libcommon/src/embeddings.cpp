#include "hfr/embeddings.hpp"

#include <cmath>
#include <cstring>
#include <unordered_map>

#include "hfr/error.hpp"
#include "hfr/io.hpp"
#include "hfr/tensorfile.hpp"

namespace hfr {
namespace {

constexpr unsigned char kTensorMagic[8] = {0x89, 'H', 'F', 'T', 0x0D, 0x0A, 0x1A, 0x0A};
constexpr std::int64_t kMaxDim = 1 << 20;

bool is_float_dtype(DType t) { return t == DType::f32 || t == DType::f16 || t == DType::bf16; }


// Checks a block of rows for NaN/inf; names the first bad row.
void check_finite(const EmbeddingSet& s, std::size_t first_row, const std::string& where) {
  std::size_t d = static_cast<std::size_t>(s.dim);
  for (std::size_t i = first_row; i < s.size(); ++i) {
    const float* r = s.row(i);
    for (std::size_t j = 0; j < d; ++j)
      if (!std::isfinite(r[j]))
        throw FormatError(where + ": row " + std::to_string(s.origin[i]) + " (id " + s.ids[i] + "): value " +
                          std::to_string(j) + " is " + (std::isnan(r[j]) ? "NaN" : "infinite"));
  }
}

const TensorInfo& embedding_tensor(const TensorReader& r, const std::string& name, const std::string& where) {
  const TensorInfo* ti = r.find(name);
  if (!ti) throw FormatError(where + ": no tensor '" + name + "' (not an embedding set?)");
  if (!is_float_dtype(ti->dtype) || ti->shape.size() != 2 || ti->shape[1] < 1 || ti->shape[1] > kMaxDim)
    throw FormatError(where + ": tensor '" + name + "' is " + dtype_name(ti->dtype) + " " + shape_string(ti->shape) +
                      "; an embedding set needs a floating-point N x D tensor");
  return *ti;
}

std::string dir_of(const std::string& path) {
  auto p = path.rfind('/');
  return p == std::string::npos ? std::string() : path.substr(0, p + 1);
}

// The label arrays of a tensor file's metadata (null when absent). Their
// lengths are checked once (check_labels), so lookups only guard the index.
struct LabelArrays {
  const nlohmann::json* ids = nullptr;
  const nlohmann::json* subjects = nullptr;
  const nlohmann::json* paths = nullptr;
  explicit LabelArrays(const nlohmann::json& meta) {
    auto get = [&](const char* key) -> const nlohmann::json* {
      auto it = meta.find(key);
      return it != meta.end() && it->is_array() ? &*it : nullptr;
    };
    ids = get("ids");
    subjects = get("subjects");
    paths = get("paths");
  }
  static std::string at(const nlohmann::json* a, std::int64_t row) {
    if (!a || row < 0 || static_cast<std::size_t>(row) >= a->size()) return std::string();
    const auto& v = (*a)[static_cast<std::size_t>(row)];
    if (v.is_string()) return v.get<std::string>();
    if (v.is_number_integer()) return std::to_string(v.get<std::int64_t>());
    return std::string();
  }
  // Appends tensor row `row`'s id (its number when unlabelled), subject, path.
  void append(EmbeddingSet& out, std::int64_t row) const {
    std::string id = at(ids, row);
    out.ids.push_back(id.empty() ? std::to_string(row) : id);
    out.subjects.push_back(at(subjects, row));
    out.paths.push_back(at(paths, row));
    out.origin.push_back(static_cast<std::uint64_t>(row));
  }
};

// Label arrays in a tensor file's metadata must hold one string (or integer;
// null for an unknown subject) per row.
void check_labels(const nlohmann::json& meta, std::int64_t n, const std::string& where) {
  for (const char* key : {"ids", "subjects", "paths"}) {
    auto it = meta.find(key);
    if (it == meta.end()) continue;
    if (!it->is_array() || static_cast<std::int64_t>(it->size()) != n)
      throw FormatError(where + ": metadata '" + key + "' must be an array of " + std::to_string(n) + " labels (one per row), it holds " +
                        (it->is_array() ? std::to_string(it->size()) : std::string("no array")));
    for (std::size_t i = 0; i < it->size(); ++i) {
      const auto& v = (*it)[i];
      if (!(v.is_string() || v.is_number_integer() || (v.is_null() && std::strcmp(key, "ids") != 0)))
        throw FormatError(where + ": metadata '" + key + "' entry " + std::to_string(i) + " is not a string");
    }
  }
}

// Rows per block so that one block's raw bytes stay bounded (a file's index
// claims its shape before any chunk has been checked).
constexpr std::uint64_t kBlockBytes = 64u << 20;
std::int64_t rows_within(std::uint64_t row_bytes, std::int64_t want) {
  std::uint64_t cap = std::max<std::uint64_t>(1, kBlockBytes / std::max<std::uint64_t>(row_bytes, 1));
  return std::min<std::int64_t>(want, static_cast<std::int64_t>(std::min<std::uint64_t>(cap, 1u << 30)));
}

}  // namespace

void EmbeddingSet::clear() {
  data.clear();
  ids.clear();
  subjects.clear();
  origin.clear();
  paths.clear();
}

EmbeddingSet EmbeddingSet::subset(const std::vector<std::size_t>& rows) const {
  EmbeddingSet out;
  out.source = source;
  out.dim = dim;
  std::size_t d = static_cast<std::size_t>(dim);
  out.data.resize(rows.size() * d);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    std::size_t r = rows.at(i);
    std::copy(row(r), row(r) + d, out.data.data() + i * d);
    out.ids.push_back(ids.at(r));
    out.subjects.push_back(subjects.at(r));
    out.origin.push_back(origin.at(r));
    out.paths.push_back(r < paths.size() ? paths[r] : std::string());
  }
  return out;
}

void EmbeddingSet::append(const EmbeddingSet& o) {
  if (o.size() == 0) return;
  if (size() == 0 && dim == 0) dim = o.dim;
  if (o.dim != dim)
    throw FormatError(o.source + ": embeddings have " + std::to_string(o.dim) + " dimensions, earlier ones " + std::to_string(dim));
  data.insert(data.end(), o.data.begin(), o.data.end());
  ids.insert(ids.end(), o.ids.begin(), o.ids.end());
  subjects.insert(subjects.end(), o.subjects.begin(), o.subjects.end());
  origin.insert(origin.end(), o.origin.begin(), o.origin.end());
  paths.insert(paths.end(), o.paths.begin(), o.paths.end());
}

bool EmbeddingSet::has_subjects() const {
  for (const auto& s : subjects)
    if (s.empty()) return false;
  return !subjects.empty();
}

// ---- tensor-file input ----
struct EmbeddingReader::TensorSource {
  std::unique_ptr<io::Input> in;
  std::unique_ptr<TensorReader> reader;
  std::string tensor;
  std::int64_t next_row = 0;
  // stream mode: rows decoded but not yet handed out
  std::vector<unsigned char> pending;
  std::int64_t pending_row0 = 0, pending_rows = 0;
  bool stream_done = false;
  bool unlabelled_out = false;  // rows handed out before any labels were known
};

// ---- records input ----
struct EmbeddingReader::RecordSource {
  std::unique_ptr<io::Input> in;
  std::unique_ptr<RecordReader> reader;
  std::string base_dir;
  struct Open {
    std::unique_ptr<io::Input> in;
    std::unique_ptr<TensorReader> reader;
    const TensorInfo* info = nullptr;
  };
  std::unordered_map<std::string, Open> files;
  Open& open(const std::string& path, const std::string& tensor, const std::string& where) {
    auto it = files.find(path);
    if (it != files.end()) return it->second;
    if (files.size() >= 256) files.clear();  // bound open descriptors
    Open o;
    try {
      o.in = io::open_input(path);
    } catch (const Error& e) {
      throw FormatError(where + ": " + e.what());
    }
    if (!o.in->seekable()) throw FormatError(where + ": " + path + ": embedding files named by records must be regular files");
    try {
      o.reader = std::make_unique<TensorReader>(*o.in);
      o.info = &embedding_tensor(*o.reader, tensor, path);
    } catch (const Error& e) {
      throw FormatError(where + ": " + e.what());
    }
    return files.emplace(path, std::move(o)).first->second;
  }
};

EmbeddingReader::EmbeddingReader(const std::string& path, EmbeddingReadOptions options) : opt_(std::move(options)) {
  std::string head;
  auto in = io::peek_input(io::open_input(path), 8, head);
  name_ = in->name();
  if (head.size() == 8 && std::memcmp(head.data(), kTensorMagic, 8) == 0) {
    tensor_ = std::make_unique<TensorSource>();
    tensor_->in = std::move(in);
    tensor_->reader = std::make_unique<TensorReader>(*tensor_->in);
    tensor_->tensor = opt_.tensor;
    if (tensor_->reader->random_access()) {
      const TensorInfo& ti = embedding_tensor(*tensor_->reader, opt_.tensor, name_);
      dim_ = ti.shape[1];
      check_labels(tensor_->reader->metadata(), ti.shape[0], name_);
    }
  } else {
    records_ = std::make_unique<RecordSource>();
    records_->in = std::move(in);
    records_->reader = std::make_unique<RecordReader>(*records_->in);
    records_->base_dir = path == "-" ? std::string() : dir_of(path);
  }
}

EmbeddingReader::~EmbeddingReader() = default;

bool EmbeddingReader::next(EmbeddingSet& out, std::size_t max_rows) {
  out.clear();
  out.source = name_;
  if (max_rows == 0) max_rows = 1;
  if (tensor_) {
    TensorSource& t = *tensor_;
    TensorReader& r = *t.reader;
    if (r.random_access()) {
      const TensorInfo& ti = r.info(t.tensor);
      std::int64_t n = ti.shape[0];
      if (t.next_row >= n) return false;
      std::int64_t count = rows_within(ti.row_bytes(), std::min<std::int64_t>(static_cast<std::int64_t>(max_rows), n - t.next_row));
      out.dim = dim_;
      std::vector<unsigned char> raw(static_cast<std::size_t>(count) * ti.row_bytes());
      r.read_rows(t.tensor, t.next_row, count, raw.data());
      out.data.resize(static_cast<std::size_t>(count * dim_));
      to_float32(ti.dtype, raw.data(), out.data.size(), out.data.data());
      LabelArrays labels(r.metadata());
      for (std::int64_t i = 0; i < count; ++i) labels.append(out, t.next_row + i);
      t.next_row += count;
      check_finite(out, 0, name_);
      return true;
    }
    // A stream: collect rows of our tensor chunk by chunk.
    const TensorInfo* ti = nullptr;
    while ((dim_ == 0 || t.pending_rows < rows_within(static_cast<std::uint64_t>(dim_) * 4, static_cast<std::int64_t>(max_rows))) &&
           static_cast<std::size_t>(t.pending_rows) < max_rows && !t.stream_done) {
      TensorChunk c;
      if (!r.next(c)) {
        t.stream_done = true;
        break;
      }
      if (c.tensor->name != t.tensor) continue;
      ti = c.tensor;
      if (dim_ == 0) {
        TensorInfo probe = *c.tensor;
        probe.shape[0] = 0;
        if (!is_float_dtype(probe.dtype) || probe.shape.size() != 2 || probe.shape[1] < 1 || probe.shape[1] > kMaxDim)
          throw FormatError(name_ + ": tensor '" + t.tensor + "' is " + dtype_name(probe.dtype) + " " + shape_string(probe.shape) +
                            "; an embedding set needs a floating-point N x D tensor");
        dim_ = probe.shape[1];
      }
      if (t.pending_rows == 0) t.pending_row0 = c.row0;
      t.pending.insert(t.pending.end(), c.data, c.data + c.bytes);
      t.pending_rows += c.rows;
    }
    // Labels are used as rows arrive (a writer sets them before streaming
    // rows); labels turning up after unlabelled rows went out are an error,
    // and at the end the arrays must cover every row.
    bool labelled = r.metadata().contains("ids") || r.metadata().contains("subjects");
    if (t.unlabelled_out && labelled)
      throw FormatError(name_ + ": row labels (metadata ids/subjects) arrive after rows that went out without them; "
                        "write the labels first, or read the file instead of a stream");
    if (t.pending_rows == 0) {
      const TensorInfo* fin = r.find(t.tensor);
      if (!fin) throw FormatError(name_ + ": no tensor '" + t.tensor + "' (not an embedding set?)");
      check_labels(r.metadata(), fin->shape[0], name_);
      return false;
    }
    if (!labelled) t.unlabelled_out = true;
    if (!ti) ti = r.find(t.tensor);
    std::int64_t count = std::min<std::int64_t>(static_cast<std::int64_t>(max_rows), t.pending_rows);
    std::size_t rb = ti->row_bytes();
    out.dim = dim_;
    out.data.resize(static_cast<std::size_t>(count * dim_));
    to_float32(ti->dtype, t.pending.data(), out.data.size(), out.data.data());
    LabelArrays labels(r.metadata());
    for (std::int64_t i = 0; i < count; ++i) labels.append(out, t.pending_row0 + i);
    t.pending.erase(t.pending.begin(), t.pending.begin() + static_cast<std::ptrdiff_t>(count * rb));
    t.pending_rows -= count;
    t.pending_row0 += count;
    check_finite(out, 0, name_);
    return true;
  }

  // Records: collect a block, then read the rows file by file.
  RecordSource& s = *records_;
  struct Want {
    std::string file;
    std::int64_t row;
    std::size_t slot;
    std::string where;
  };
  std::vector<Want> wants;
  Record rec;
  while (out.ids.size() < static_cast<std::size_t>(dim_ ? rows_within(static_cast<std::uint64_t>(dim_) * 4, static_cast<std::int64_t>(max_rows))
                                                          : static_cast<std::int64_t>(max_rows)) &&
         s.reader->next(rec)) {
    const std::string where = s.reader->where();
    if (!rec.is_object()) throw FormatError(where + ": expected a JSON object");
    if (rec.contains("error")) {
      ++skipped_;
      continue;
    }
    auto f = rec.find(opt_.file_field);
    auto rw = rec.find(opt_.row_field);
    if (f == rec.end() || !f->is_string() || f->get<std::string>().empty())
      throw FormatError(where + ": record has no \"" + opt_.file_field + "\" field naming its tensor file");
    if (rw == rec.end() || !rw->is_number_integer() || rw->get<std::int64_t>() < 0)
      throw FormatError(where + ": record has no \"" + opt_.row_field + "\" field (a row number >= 0)");
    std::string id;
    auto idv = rec.find(opt_.id_field);
    if (idv != rec.end() && idv->is_string()) id = idv->get<std::string>();
    else if (idv != rec.end() && idv->is_number_integer()) id = std::to_string(idv->get<std::int64_t>());
    else id = std::to_string(s.reader->line_number());
    std::string subject;
    auto sv = rec.find(opt_.subject_field);
    if (sv != rec.end() && sv->is_string()) subject = sv->get<std::string>();
    else if (sv != rec.end() && sv->is_number_integer()) subject = std::to_string(sv->get<std::int64_t>());
    auto pv = rec.find(opt_.path_field);
    out.paths.push_back(pv != rec.end() && pv->is_string() ? pv->get<std::string>() : std::string());
    std::string file = f->get<std::string>();
    if (file[0] != '/') file = s.base_dir + file;
    std::string ctx = where + " (id " + id + ")";
    // Open the file now: the record's row is checked against it here, so an
    // error names this record, and the dimension bounds the block size.
    const TensorInfo& fi = *s.open(file, opt_.tensor, ctx).info;
    std::int64_t row = rw->get<std::int64_t>();
    if (row >= fi.shape[0])
      throw FormatError(ctx + ": row " + std::to_string(row) + " is past the end of " + file + " (" + std::to_string(fi.shape[0]) + " rows)");
    if (dim_ == 0) dim_ = fi.shape[1];
    if (fi.shape[1] != dim_)
      throw FormatError(ctx + ": " + file + " holds " + std::to_string(fi.shape[1]) + "-dimensional embeddings, earlier rows " + std::to_string(dim_));
    wants.push_back({file, row, out.ids.size(), ctx});
    out.ids.push_back(id);
    out.subjects.push_back(subject);
    out.origin.push_back(s.reader->line_number());
  }
  if (wants.empty()) return false;
  std::vector<unsigned char> raw;
  std::vector<float> conv;
  for (std::size_t i = 0; i < wants.size();) {
    RecordSource::Open& o = s.open(wants[i].file, opt_.tensor, wants[i].where);
    const TensorInfo& ti = *o.info;
    if (out.data.empty()) {
      out.dim = dim_;
      out.data.resize(wants.size() * static_cast<std::size_t>(dim_));
    }
    // A run of consecutive rows from the same file is read in one go.
    std::size_t j = i + 1;
    std::int64_t limit = rows_within(ti.row_bytes(), static_cast<std::int64_t>(wants.size()));
    while (j < wants.size() && static_cast<std::int64_t>(j - i) < limit && wants[j].file == wants[i].file &&
           wants[j].row == wants[j - 1].row + 1)
      ++j;
    std::int64_t row0 = wants[i].row, count = static_cast<std::int64_t>(j - i);  // rows checked when the records were read
    raw.resize(static_cast<std::size_t>(count) * ti.row_bytes());
    o.reader->read_rows(opt_.tensor, row0, count, raw.data());
    to_float32(ti.dtype, raw.data(), static_cast<std::size_t>(count * dim_), out.row(wants[i].slot));
    i = j;
  }
  check_finite(out, 0, name_);
  return true;
}

EmbeddingSet read_embeddings(const std::string& path, const EmbeddingReadOptions& options, std::uint64_t* skipped) {
  EmbeddingReader r(path, options);
  EmbeddingSet all, block;
  all.source = r.name();
  while (r.next(block, 65536)) all.append(block);
  all.dim = all.size() ? all.dim : r.dim();
  if (skipped) *skipped = r.skipped();
  return all;
}

void normalize_rows(EmbeddingSet& set) {
  std::size_t d = static_cast<std::size_t>(set.dim);
  for (std::size_t i = 0; i < set.size(); ++i) {
    float* r = set.row(i);
    double ss = 0;
    for (std::size_t j = 0; j < d; ++j) ss += static_cast<double>(r[j]) * r[j];
    if (!(ss > 0)) throw FormatError(set.source + ": row " + std::to_string(set.origin[i]) + " (id " + set.ids[i] + ") has zero norm");
    float inv = static_cast<float>(1.0 / std::sqrt(ss));
    for (std::size_t j = 0; j < d; ++j) r[j] *= inv;
  }
}

EmbeddingSet make_templates(const EmbeddingSet& set) {
  EmbeddingSet norm = set;
  normalize_rows(norm);
  EmbeddingSet out;
  out.source = set.source;
  out.dim = set.dim;
  std::unordered_map<std::string, std::size_t> slot;
  std::vector<double> acc;
  std::size_t d = static_cast<std::size_t>(set.dim);
  for (std::size_t i = 0; i < norm.size(); ++i) {
    const std::string& key = norm.subjects[i];
    if (key.empty())
      throw FormatError(set.source + ": row " + std::to_string(set.origin[i]) + " (id " + set.ids[i] +
                        ") has no subject, so it cannot join a template");
    auto it = slot.find(key);
    if (it == slot.end()) {
      it = slot.emplace(key, out.ids.size()).first;
      out.ids.push_back(key);
      out.subjects.push_back(key);
      out.origin.push_back(set.origin[i]);
      out.paths.emplace_back();
      acc.resize(acc.size() + d, 0.0);
    }
    const float* r = norm.row(i);
    double* a = acc.data() + it->second * d;
    for (std::size_t j = 0; j < d; ++j) a[j] += r[j];
  }
  out.data.resize(acc.size());
  for (std::size_t i = 0; i < acc.size(); ++i) out.data[i] = static_cast<float>(acc[i]);
  normalize_rows(out);
  return out;
}

}  // namespace hfr
