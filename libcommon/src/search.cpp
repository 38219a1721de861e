#include "hfr/search.hpp"

#include <cblas.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>
#include <unordered_map>

#include "hfr/error.hpp"
#include "hfr/io.hpp"
#include "hfr/tensorfile.hpp"

namespace hfr::search {
namespace {

// Tile sizes: a probe sub-block of kProbeBlock rows is scored against
// kGalleryBlock gallery rows per sgemm call; the tile (1 MiB at these sizes)
// stays in cache for the selection pass that follows.
constexpr std::size_t kProbeBlock = 128;
constexpr std::size_t kGalleryBlock = 2048;

// "a is a worse hit than b": lower score, or equal score and later row.
inline bool worse(const Hit& a, const Hit& b) { return a.score < b.score || (a.score == b.score && a.index > b.index); }

// Runs f(worker, begin, end) over [0, n) split into `parts` contiguous ranges.
template <class F>
void parallel_ranges(std::size_t n, int parts, F&& f) {
  parts = static_cast<int>(std::max<std::size_t>(1, std::min<std::size_t>(static_cast<std::size_t>(std::max(parts, 1)), n)));
  if (parts == 1) {
    f(0, std::size_t{0}, n);
    return;
  }
  std::vector<std::thread> ts;
  std::exception_ptr err;
  std::mutex m;
  for (int w = 0; w < parts; ++w) {
    std::size_t a = n * static_cast<std::size_t>(w) / static_cast<std::size_t>(parts);
    std::size_t b = n * static_cast<std::size_t>(w + 1) / static_cast<std::size_t>(parts);
    ts.emplace_back([&, w, a, b] {
      try {
        f(w, a, b);
      } catch (...) {
        std::lock_guard<std::mutex> lk(m);
        if (!err) err = std::current_exception();
      }
    });
  }
  for (auto& t : ts) t.join();
  if (err) std::rethrow_exception(err);
}

// A score from an exact key (cosine, or -squared distance).
float score_of_key(Metric m, double key) {
  return static_cast<float>(m == Metric::cosine ? key : -std::sqrt(std::max(0.0, -key)));
}

double squared_norm(const float* v, std::size_t d) {
  double s = 0;
  for (std::size_t j = 0; j < d; ++j) s += static_cast<double>(v[j]) * v[j];
  return s;
}

}  // namespace

Metric parse_metric(const std::string& s) {
  if (s == "cosine") return Metric::cosine;
  if (s == "euclidean") return Metric::euclidean;
  throw UsageError("unknown metric '" + s + "' (use cosine or euclidean)");
}

const char* metric_name(Metric m) { return m == Metric::cosine ? "cosine" : "euclidean"; }

// The gallery in "tile space": under cosine the normalised rows (tile value =
// dot product = score); under Euclidean rows augmented with ||g||^2, and
// probes with -1, so the tile value is 2 p.g - ||g||^2 = ||p||^2 - ||p - g||^2,
// which orders the gallery as the score does.
struct ExactSearch::Impl {
  std::size_t d = 0, da = 0, n = 0;
  std::vector<float> g;  // n x da
  double gmax = 0;       // largest norm of a tile-space gallery row
  std::unordered_map<std::string, std::vector<std::uint32_t>> by_subject;

  // Probe rows in tile space (P x da) and their squared norms.
  void probe_rows(const EmbeddingSet& p, Metric metric, std::vector<float>& out, std::vector<double>& norms) const {
    out.assign(p.size() * da, 0.f);
    norms.assign(p.size(), 0.0);
    for (std::size_t i = 0; i < p.size(); ++i) {
      const float* src = p.row(i);
      float* dst = out.data() + i * da;
      if (metric == Metric::cosine) {
        std::memcpy(dst, src, d * sizeof(float));
      } else {
        for (std::size_t j = 0; j < d; ++j) dst[j] = 2.f * src[j];
        dst[d] = -1.f;
        norms[i] = squared_norm(src, d);
      }
    }
  }
  float to_score(Metric metric, float tile, double pnorm2) const {
    if (metric == Metric::cosine) return tile;
    return static_cast<float>(-std::sqrt(std::max(0.0, pnorm2 - static_cast<double>(tile))));
  }
};

ExactSearch::ExactSearch(EmbeddingSet gallery, Metric metric, int threads)
    : gallery_(std::move(gallery)), metric_(metric), threads_(std::max(1, threads)), impl_(std::make_unique<Impl>()) {
  if (gallery_.size() == 0) throw Error(gallery_.source + ": the gallery is empty");
  if (gallery_.size() > std::numeric_limits<std::uint32_t>::max()) throw Error(gallery_.source + ": gallery too large for exact search");
  if (metric_ == Metric::cosine) normalize_rows(gallery_);
  Impl& m = *impl_;
  m.d = static_cast<std::size_t>(gallery_.dim);
  m.da = metric_ == Metric::cosine ? m.d : m.d + 1;
  m.n = gallery_.size();
  m.g.resize(m.n * m.da);
  for (std::size_t i = 0; i < m.n; ++i) {
    float* dst = m.g.data() + i * m.da;
    std::memcpy(dst, gallery_.row(i), m.d * sizeof(float));
    if (metric_ == Metric::euclidean) {
      double n2 = squared_norm(gallery_.row(i), m.d);
      if (!(n2 < 1e30))  // the tile expansion needs ||g||^2 (and its square) finite in float
        throw FormatError(gallery_.source + ": row " + std::to_string(gallery_.origin[i]) + " (id " + gallery_.ids[i] +
                          ") has a norm too large for Euclidean search");
      dst[m.d] = static_cast<float>(n2);
    }
    m.gmax = std::max(m.gmax, std::sqrt(squared_norm(dst, m.da)));
  }
  for (std::size_t i = 0; i < m.n; ++i)
    if (!gallery_.subjects[i].empty()) m.by_subject[gallery_.subjects[i]].push_back(static_cast<std::uint32_t>(i));
}

ExactSearch::~ExactSearch() = default;

void ExactSearch::prepare(EmbeddingSet& probes) const {
  if (probes.size() && probes.dim != gallery_.dim)
    throw FormatError(probes.source + ": probes have " + std::to_string(probes.dim) + " dimensions, the gallery (" + gallery_.source +
                      ") " + std::to_string(gallery_.dim));
  if (metric_ == Metric::cosine) normalize_rows(probes);
  else
    for (std::size_t i = 0; i < probes.size(); ++i)
      if (!(squared_norm(probes.row(i), impl_->d) < 1e30))
        throw FormatError(probes.source + ": row " + std::to_string(probes.origin[i]) + " (id " + probes.ids[i] +
                          ") has a norm too large for Euclidean search");
}

float ExactSearch::score(const float* probe, std::size_t g) const {
  return score_of_key(metric_, key(probe, g));
}

// The exact similarity key of probe row p (as given) and gallery row g, in
// double: the cosine of the normalised vectors, or -||p - g||^2. Both order
// the gallery as the reported score does.
double ExactSearch::key(const float* p, std::size_t g) const {
  const float* r = gallery_.row(g);
  std::size_t d = impl_->d;
  double s = 0;
  if (metric_ == Metric::cosine) {
    for (std::size_t j = 0; j < d; ++j) s += static_cast<double>(p[j]) * r[j];
    return s;
  }
  for (std::size_t j = 0; j < d; ++j) {
    double t = static_cast<double>(p[j]) - r[j];
    s += t * t;
  }
  return -s;
}

std::vector<ProbeResult> ExactSearch::top_k(EmbeddingSet& probes, std::size_t k, bool mates) const {
  prepare(probes);
  const Impl& m = *impl_;
  std::size_t np = probes.size();
  std::vector<ProbeResult> results(np);
  if (np == 0) return results;
  k = std::min(k, m.n);
  std::vector<float> pr;
  std::vector<double> pn;
  m.probe_rows(probes, metric_, pr, pn);

  // Work units: probe sub-blocks, handed out to the threads in contiguous ranges.
  std::size_t units = (np + kProbeBlock - 1) / kProbeBlock;
  int workers = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(threads_), units));
  std::size_t pb = kProbeBlock;
  if (workers < threads_ && np > 1) {  // few probes: smaller sub-blocks so every thread works
    workers = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(threads_), np));
    pb = (np + static_cast<std::size_t>(workers) - 1) / static_cast<std::size_t>(workers);
    units = (np + pb - 1) / pb;
  }
  openblas_set_num_threads(1);
  parallel_ranges(units, workers, [&](int, std::size_t u0, std::size_t u1) {
    std::vector<float> tile(pb * kGalleryBlock);
    // Per probe: the top-k heap over sgemm values, and for the mate rank a
    // window [lo, hi) in tile units around the mate's exact key. The window
    // half-width bounds the sgemm's rounding error (da * eps * |p~| * max|g~|,
    // doubled), so every gallery row at or above the mate in exact arithmetic
    // has a tile value >= lo, and every row with a tile value >= hi is above
    // it. Rows inside the window are settled by their exact key, in double.
    struct State {
      std::vector<Hit> heap;
      float lo = std::numeric_limits<float>::infinity(), hi = std::numeric_limits<float>::infinity();
      std::uint64_t above = 0;  // non-mated rows scoring >= the mate
      const std::vector<std::uint32_t>* mated = nullptr;
      double mate_key = 0;
      std::uint32_t mate_index = 0;
    };
    std::vector<State> st(pb);
    for (std::size_t u = u0; u < u1; ++u) {
      std::size_t p0 = u * pb, p1 = std::min(np, p0 + pb), rows = p1 - p0;
      for (std::size_t r = 0; r < rows; ++r) {
        State& s = st[r];
        s = State();
        s.heap.reserve(k + 1);
        if (!mates || probes.subjects[p0 + r].empty()) continue;
        auto it = m.by_subject.find(probes.subjects[p0 + r]);
        if (it == m.by_subject.end()) continue;
        s.mated = &it->second;
        const float* pv = probes.row(p0 + r);
        s.mate_key = -std::numeric_limits<double>::infinity();
        for (std::uint32_t gi : it->second) {
          double kk = key(pv, gi);
          if (kk > s.mate_key) {
            s.mate_key = kk;
            s.mate_index = gi;
          }
        }
        double centre = metric_ == Metric::cosine ? s.mate_key : pn[p0 + r] + s.mate_key;  // in tile units
        const float* pt = pr.data() + (p0 + r) * m.da;
        double pnorm = std::sqrt(squared_norm(pt, m.da));
        double w = 2.0 * static_cast<double>(m.da + 2) * std::numeric_limits<float>::epsilon() * pnorm * m.gmax + 1e-30;
        s.lo = std::nextafter(static_cast<float>(centre - w), -std::numeric_limits<float>::infinity());
        s.hi = std::nextafter(static_cast<float>(centre + w), std::numeric_limits<float>::infinity());
      }
      for (std::size_t g0 = 0; g0 < m.n; g0 += kGalleryBlock) {
        std::size_t gn = std::min(kGalleryBlock, m.n - g0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(gn), static_cast<int>(m.da), 1.f,
                    pr.data() + p0 * m.da, static_cast<int>(m.da), m.g.data() + g0 * m.da, static_cast<int>(m.da), 0.f, tile.data(),
                    static_cast<int>(gn));
        for (std::size_t r = 0; r < rows; ++r) {
          State& s = st[r];
          const float* c = tile.data() + r * gn;
          // top-k: a bounded min-heap of the best hits so far
          float thr = s.heap.size() == k ? s.heap.front().score : -std::numeric_limits<float>::infinity();
          for (std::size_t j = 0; j < gn; ++j) {
            if (c[j] < thr) continue;
            Hit h{static_cast<std::uint32_t>(g0 + j), c[j]};
            if (s.heap.size() < k) {
              s.heap.push_back(h);
              std::push_heap(s.heap.begin(), s.heap.end(), [](const Hit& a, const Hit& b) { return worse(b, a); });
            } else if (worse(s.heap.front(), h)) {
              std::pop_heap(s.heap.begin(), s.heap.end(), [](const Hit& a, const Hit& b) { return worse(b, a); });
              s.heap.back() = h;
              std::push_heap(s.heap.begin(), s.heap.end(), [](const Hit& a, const Hit& b) { return worse(b, a); });
            } else {
              continue;
            }
            if (s.heap.size() == k) thr = s.heap.front().score;
          }
          if (!s.mated) continue;
          // Count rows above the window (never mated: the mate is the best of
          // them and lies inside it); settle rows inside it exactly.
          // (lo and hi in locals: as members of State they might alias the
          // tile for all the compiler knows, which stops vectorisation.)
          const float lo = s.lo, hi = s.hi;
          std::uint32_t above = 0, in_window = 0;
          for (std::size_t j = 0; j < gn; ++j) {
            above += c[j] >= hi;
            in_window += (c[j] >= lo) & (c[j] < hi);
          }
          s.above += above;
          if (in_window) {
            const float* pv = probes.row(p0 + r);
            for (std::size_t j = 0; j < gn; ++j) {
              if (!(c[j] >= lo && c[j] < hi)) continue;
              auto gi = static_cast<std::uint32_t>(g0 + j);
              if (std::binary_search(s.mated->begin(), s.mated->end(), gi)) continue;
              if (key(pv, gi) >= s.mate_key) ++s.above;
            }
          }
        }
      }
      for (std::size_t r = 0; r < rows; ++r) {
        State& s = st[r];
        ProbeResult& out = results[p0 + r];
        // Final scores of the hits from the exact key (the sgemm expansion
        // loses precision for Euclidean distances near 0), then re-ordered.
        const float* pv = probes.row(p0 + r);
        std::vector<std::pair<double, std::uint32_t>> exact;
        for (const Hit& h : s.heap) exact.emplace_back(key(pv, h.index), h.index);
        std::sort(exact.begin(), exact.end(), [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
        out.top.clear();
        for (const auto& [kk, gi] : exact) out.top.push_back({gi, score_of_key(metric_, kk)});
        if (s.mated) {
          out.has_mate = true;
          out.mate_index = s.mate_index;
          out.mate_score = score_of_key(metric_, s.mate_key);
          out.mate_rank = 1 + s.above;
        }
      }
    }
  });
  return results;
}

void ExactSearch::score_matrix(EmbeddingSet& probes, float* dst) const {
  prepare(probes);
  const Impl& m = *impl_;
  std::size_t np = probes.size();
  if (np == 0) return;
  std::vector<float> pr;
  std::vector<double> pn;
  m.probe_rows(probes, metric_, pr, pn);
  openblas_set_num_threads(1);
  std::size_t units = (np + kProbeBlock - 1) / kProbeBlock;
  parallel_ranges(units, threads_, [&](int, std::size_t u0, std::size_t u1) {
    for (std::size_t u = u0; u < u1; ++u) {
      std::size_t p0 = u * kProbeBlock, rows = std::min(np, p0 + kProbeBlock) - p0;
      float* out = dst + p0 * m.n;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(m.n), static_cast<int>(m.da), 1.f,
                  pr.data() + p0 * m.da, static_cast<int>(m.da), m.g.data(), static_cast<int>(m.da), 0.f, out, static_cast<int>(m.n));
      if (metric_ == Metric::euclidean)
        for (std::size_t r = 0; r < rows; ++r)
          for (std::size_t j = 0; j < m.n; ++j) out[r * m.n + j] = m.to_score(metric_, out[r * m.n + j], pn[p0 + r]);
    }
  });
}

// ---- FAISS indexes ----
struct VectorIndex::Impl {
  std::unique_ptr<faiss::Index> index;
  bool l2_for_cosine = false;  // cosine served by an L2 index over unit vectors
  std::unordered_map<std::string, std::uint32_t> subject_count;
};

namespace {
std::string join_lines(const std::vector<std::string>& v, const std::string& what) {
  std::string out;
  for (const auto& s : v) {
    if (s.find('\n') != std::string::npos) throw Error(what + " '" + s + "' contains a newline and cannot be stored in an index file");
    out += s;
    out += '\n';
  }
  return out;
}
std::vector<std::string> split_lines(const std::vector<unsigned char>& b, std::size_t expect, const std::string& ctx) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i < b.size(); ++i)
    if (b[i] == '\n') {
      out.emplace_back(reinterpret_cast<const char*>(b.data()) + start, i - start);
      start = i + 1;
    }
  if (start != b.size() || out.size() != expect)
    throw FormatError(ctx + ": label list holds " + std::to_string(out.size()) + " entries, the index " + std::to_string(expect));
  return out;
}
// FAISS trusts its files: a forged neighbour or list id makes a search read
// out of bounds. Checks what the searches follow, for the index types hfr
// writes; others are refused.
void validate_index(const faiss::Index& idx, const std::string& path) {
  auto bad = [&](const std::string& why) { throw FormatError(path + ": corrupt FAISS index: " + why); };
  auto n = static_cast<std::size_t>(idx.ntotal);
  if (auto* f = dynamic_cast<const faiss::IndexFlatCodes*>(&idx)) {
    if (f->codes.size() != n * f->code_size) bad("flat storage size disagrees with its count");
    return;
  }
  if (auto* h = dynamic_cast<const faiss::IndexHNSWFlat*>(&idx)) {
    const faiss::HNSW& g = h->hnsw;
    auto* st = dynamic_cast<const faiss::IndexFlatCodes*>(h->storage);
    if (!st || static_cast<std::size_t>(st->ntotal) != n || st->codes.size() != n * st->code_size) bad("HNSW storage disagrees with its count");
    if (g.levels.size() != n || g.offsets.size() != n + 1 || g.offsets.back() != g.neighbors.size()) bad("HNSW tables disagree in size");
    for (std::size_t i = 0; i < n; ++i)
      if (g.offsets[i] > g.offsets[i + 1] || g.levels[i] < 1 || g.levels[i] > g.max_level + 1 ||
          g.offsets[i + 1] - g.offsets[i] != static_cast<std::size_t>(g.cum_nb_neighbors(g.levels[i])))
        bad("HNSW node " + std::to_string(i) + " has inconsistent levels or offsets");
    for (auto nb : g.neighbors)
      if (nb < -1 || nb >= static_cast<faiss::HNSW::storage_idx_t>(n)) bad("HNSW neighbour id " + std::to_string(nb) + " out of range");
    if (n && (g.entry_point < 0 || static_cast<std::size_t>(g.entry_point) >= n)) bad("HNSW entry point out of range");
    return;
  }
  if (auto* iv = dynamic_cast<const faiss::IndexIVFFlat*>(&idx)) {
    auto* q = dynamic_cast<const faiss::IndexFlatCodes*>(iv->quantizer);
    if (!q || static_cast<std::size_t>(q->ntotal) != iv->nlist || q->codes.size() != iv->nlist * q->code_size) bad("IVF quantizer disagrees with nlist");
    std::size_t total = 0;
    for (std::size_t l = 0; l < iv->nlist; ++l) {
      std::size_t sz = iv->invlists->list_size(l);
      total += sz;
      const faiss::Index::idx_t* ids = iv->invlists->get_ids(l);
      for (std::size_t i = 0; i < sz; ++i)
        if (ids[i] < 0 || static_cast<std::size_t>(ids[i]) >= n) bad("IVF list " + std::to_string(l) + " holds id " + std::to_string(ids[i]));
      iv->invlists->release_ids(l, ids);
    }
    if (total != n) bad("IVF lists hold " + std::to_string(total) + " vectors, the index " + std::to_string(n));
    return;
  }
  bad("unsupported index type (hfr writes flat, IVF-Flat and HNSW-Flat)");
}

}  // namespace

VectorIndex::VectorIndex(const EmbeddingSet& gallery_in, Metric metric, const IndexOptions& options, int threads)
    : impl_(std::make_unique<Impl>()), metric_(metric), dim_(gallery_in.dim), opt_(options), threads_(std::max(1, threads)) {
  if (gallery_in.size() == 0) throw Error(gallery_in.source + ": the gallery is empty");
  if (opt_.nprobe <= 0) opt_.nprobe = 16;
  if (opt_.ef_search <= 0) opt_.ef_search = 64;
  EmbeddingSet gallery = gallery_in;
  if (metric == Metric::cosine) normalize_rows(gallery);
  omp_set_num_threads(threads_);
  openblas_set_num_threads(threads_);
  auto n = static_cast<faiss::Index::idx_t>(gallery.size());
  int d = static_cast<int>(dim_);
  if (opt_.type == "flat") {
    impl_->index = std::make_unique<faiss::IndexFlat>(d, metric == Metric::cosine ? faiss::METRIC_INNER_PRODUCT : faiss::METRIC_L2);
  } else if (opt_.type == "ivf") {
    if (opt_.nlist <= 0) opt_.nlist = static_cast<int>(std::clamp<double>(4 * std::sqrt(static_cast<double>(n)), 1, static_cast<double>(n)));
    if (opt_.nlist > n) throw UsageError("--nlist " + std::to_string(opt_.nlist) + " exceeds the gallery size " + std::to_string(n));
    auto* quantizer = new faiss::IndexFlatL2(d);
    auto ivf = std::make_unique<faiss::IndexIVFFlat>(quantizer, d, static_cast<std::size_t>(opt_.nlist), faiss::METRIC_L2);
    ivf->own_fields = true;
    ivf->cp.seed = 1234;
    ivf->train(n, gallery.data.data());
    ivf->nprobe = static_cast<std::size_t>(std::max(1, opt_.nprobe));
    impl_->index = std::move(ivf);
    impl_->l2_for_cosine = metric == Metric::cosine;
  } else if (opt_.type == "hnsw") {
    auto h = std::make_unique<faiss::IndexHNSWFlat>(d, std::max(4, opt_.hnsw_m));
    h->hnsw.efConstruction = std::max(8, opt_.ef_construction);
    h->hnsw.efSearch = std::max(1, opt_.ef_search);
    impl_->index = std::move(h);
    impl_->l2_for_cosine = metric == Metric::cosine;
  } else {
    throw UsageError("unknown index type '" + opt_.type + "' (use flat, ivf or hnsw)");
  }
  impl_->index->add(n, gallery.data.data());
  ids_ = gallery.ids;
  subjects_ = gallery.subjects;
  for (const auto& s : subjects_)
    if (!s.empty()) ++impl_->subject_count[s];
}

VectorIndex::~VectorIndex() = default;

void VectorIndex::save(const std::string& path, const std::string& provenance_json) const {
  faiss::VectorIOWriter w;
  faiss::write_index(impl_->index.get(), &w);
  std::string ids = join_lines(ids_, "id"), subjects = join_lines(subjects_, "subject");
  auto out = io::open_output(path, {io::Content::binary, false});
  TensorWriter tw(*out);
  nlohmann::json meta = {{"kind", "faiss-index"}, {"index_type", opt_.type}, {"metric", metric_name(metric_)}, {"dim", dim_},
                         {"count", ids_.size()}, {"nlist", opt_.nlist}, {"nprobe", opt_.nprobe}, {"hnsw_m", opt_.hnsw_m},
                         {"ef_construction", opt_.ef_construction}, {"ef_search", opt_.ef_search}};
  if (!provenance_json.empty()) meta["provenance"] = nlohmann::json::parse(provenance_json);
  tw.set_metadata(meta);
  tw.write("faiss_index", DType::u8, {static_cast<std::int64_t>(w.data.size())}, w.data.data());
  tw.write("ids", DType::u8, {static_cast<std::int64_t>(ids.size())}, ids.data());
  tw.write("subjects", DType::u8, {static_cast<std::int64_t>(subjects.size())}, subjects.data());
  tw.close();
  out->commit();
}

bool is_index_file(const std::string& path) {
  try {
    auto in = io::open_input(path);
    if (!in->seekable()) return false;
    TensorReader r(*in);
    auto k = r.metadata().find("kind");
    return k != r.metadata().end() && k->is_string() && k->get<std::string>() == "faiss-index";
  } catch (const std::exception&) {
    return false;
  }
}

std::unique_ptr<VectorIndex> VectorIndex::load(const std::string& path, const IndexOptions& options, int threads) {
  auto in = io::open_input(path);
  if (!in->seekable()) throw Error(path + ": an index file must be a regular file");
  TensorReader r(*in);
  const auto& meta = r.metadata();
  if (meta.value("kind", "") != "faiss-index") throw FormatError(path + ": not an hfr index file (metadata kind is not faiss-index)");
  std::size_t count = 0;
  std::unique_ptr<VectorIndex> v(new VectorIndex());
  v->impl_ = std::make_unique<Impl>();
  v->threads_ = std::max(1, threads);
  try {
    v->metric_ = parse_metric(meta.value("metric", ""));
    v->dim_ = meta.at("dim").get<std::int64_t>();
    v->opt_.type = meta.value("index_type", "");
    v->opt_.nlist = meta.value("nlist", 0);
    v->opt_.nprobe = options.nprobe > 0 ? options.nprobe : meta.value("nprobe", 16);
    v->opt_.hnsw_m = meta.value("hnsw_m", 32);
    v->opt_.ef_construction = meta.value("ef_construction", 80);
    v->opt_.ef_search = options.ef_search > 0 ? options.ef_search : meta.value("ef_search", 64);
    count = meta.at("count").get<std::size_t>();
  } catch (const std::exception& e) {
    throw FormatError(path + ": bad index metadata: " + e.what());
  }
  auto blob = r.read("faiss_index");
  auto idb = r.read("ids");
  auto sb = r.read("subjects");
  if (blob.info.dtype != DType::u8 || idb.info.dtype != DType::u8 || sb.info.dtype != DType::u8)
    throw FormatError(path + ": index tensors must be u8");
  v->ids_ = split_lines(*idb.data, count, path);
  v->subjects_ = split_lines(*sb.data, count, path);
  faiss::VectorIOReader reader;
  reader.data = *blob.data;
  try {
    v->impl_->index.reset(faiss::read_index(&reader));
  } catch (const std::exception& e) {
    throw FormatError(path + ": cannot read the FAISS index: " + std::string(e.what()).substr(0, 200));
  }
  auto& idx = *v->impl_->index;
  if (idx.d != v->dim_ || static_cast<std::size_t>(idx.ntotal) != count)
    throw FormatError(path + ": FAISS index holds " + std::to_string(idx.ntotal) + " vectors of " + std::to_string(idx.d) +
                      " dimensions, the metadata says " + std::to_string(count) + " of " + std::to_string(v->dim_));
  validate_index(idx, path);
  v->impl_->l2_for_cosine = v->metric_ == Metric::cosine && idx.metric_type == faiss::METRIC_L2;
  if (auto* ivf = dynamic_cast<faiss::IndexIVF*>(&idx)) ivf->nprobe = static_cast<std::size_t>(std::max(1, v->opt_.nprobe));
  if (auto* h = dynamic_cast<faiss::IndexHNSW*>(&idx)) h->hnsw.efSearch = std::max(1, v->opt_.ef_search);
  for (const auto& s : v->subjects_)
    if (!s.empty()) ++v->impl_->subject_count[s];
  return v;
}

std::vector<ProbeResult> VectorIndex::top_k(EmbeddingSet& probes, std::size_t k, bool mates) const {
  if (probes.size() && probes.dim != dim_)
    throw FormatError(probes.source + ": probes have " + std::to_string(probes.dim) + " dimensions, the index " + std::to_string(dim_));
  if (metric_ == Metric::cosine) normalize_rows(probes);
  std::size_t np = probes.size();
  std::vector<ProbeResult> results(np);
  if (np == 0) return results;
  k = std::min(k, ids_.size());
  omp_set_num_threads(threads_);
  openblas_set_num_threads(threads_);
  std::vector<float> dist(np * k);
  std::vector<faiss::Index::idx_t> lab(np * k);
  impl_->index->search(static_cast<faiss::Index::idx_t>(np), probes.data.data(), static_cast<faiss::Index::idx_t>(k), dist.data(), lab.data());
  bool ip = impl_->index->metric_type == faiss::METRIC_INNER_PRODUCT;
  for (std::size_t i = 0; i < np; ++i) {
    ProbeResult& out = results[i];
    for (std::size_t j = 0; j < k; ++j) {
      faiss::Index::idx_t l = lab[i * k + j];
      if (l < 0) continue;  // fewer candidates than k were reachable
      float dv = dist[i * k + j];
      float score = ip ? dv : impl_->l2_for_cosine ? 1.f - dv / 2.f : -std::sqrt(std::max(0.f, dv));
      out.top.push_back({static_cast<std::uint32_t>(l), score});
    }
    std::stable_sort(out.top.begin(), out.top.end(), [](const Hit& a, const Hit& b) { return worse(b, a); });
    if (mates && !probes.subjects[i].empty() && impl_->subject_count.count(probes.subjects[i])) {
      out.has_mate = true;
      out.mate_score = std::numeric_limits<float>::quiet_NaN();
      for (std::size_t j = 0; j < out.top.size(); ++j)
        if (subjects_[out.top[j].index] == probes.subjects[i]) {
          out.mate_index = out.top[j].index;
          out.mate_score = out.top[j].score;
          out.mate_rank = 1 + j;
          break;
        }
    }
  }
  return results;
}

}  // namespace hfr::search
