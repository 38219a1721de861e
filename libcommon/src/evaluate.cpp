#include "hfr/evaluate.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <unordered_map>

#include "hfr/error.hpp"
#include "hfr/io.hpp"
#include "hfr/log.hpp"
#include "hfr/plot.hpp"
#include "hfr/tensorfile.hpp"

namespace hfr::eval {
namespace {

using json = nlohmann::ordered_json;
constexpr unsigned char kTensorMagic[8] = {0x89, 'H', 'F', 'T', 0x0D, 0x0A, 0x1A, 0x0A};
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string target_key(double t) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", t);
  return b;
}

json num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

std::vector<std::string> read_label_file(const std::string& path) {
  auto in = io::open_input(path);
  std::vector<std::string> out;
  std::string all;
  char buf[65536];
  std::size_t r;
  while ((r = in->read(buf, sizeof buf)) > 0) {
    all.append(buf, r);
    if (all.size() > (1u << 30)) throw FormatError(path + ": label file larger than 1 GiB");
  }
  std::istringstream ss(all);
  std::string line;
  while (std::getline(ss, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    out.push_back(line);
  }
  return out;
}

std::vector<std::string> meta_strings(const nlohmann::json& meta, const char* key) {
  std::vector<std::string> out;
  auto it = meta.find(key);
  if (it == meta.end() || !it->is_array()) return out;
  for (const auto& v : *it) out.push_back(v.is_string() ? v.get<std::string>() : v.is_number_integer() ? std::to_string(v.get<long long>()) : "");
  return out;
}


// Score matrix [P, G] with subjects per probe and gallery column.
void load_matrix(io::Input& in, const LoadOptions& opt, FoldScores& f) {
  TensorReader r(in);
  std::vector<Tensor> whole;  // a stream is read whole: its labels come last
  const TensorInfo* ti = nullptr;
  if (r.random_access()) {
    ti = r.find("scores");
  } else {
    whole = r.read_all();
    for (auto& t : whole)
      if (t.info.name == "scores") ti = &t.info;
  }
  if (!ti) throw FormatError(f.source + ": no tensor 'scores' (not a score matrix from hfr-match --matrix?)");
  if (ti->shape.size() != 2 || !(ti->dtype == DType::f32 || ti->dtype == DType::f16 || ti->dtype == DType::bf16))
    throw FormatError(f.source + ": tensor 'scores' is " + std::string(dtype_name(ti->dtype)) + " " + shape_string(ti->shape) +
                      "; a score matrix is a floating-point P x G tensor");
  std::int64_t P = ti->shape[0], G = ti->shape[1];
  if (P == 0 || G == 0) throw FormatError(f.source + ": the score matrix is empty (" + shape_string(ti->shape) + ")");
  auto psub = opt.probe_labels.empty() ? meta_strings(r.metadata(), "probe_subjects") : read_label_file(opt.probe_labels);
  auto gsub = opt.gallery_labels.empty() ? meta_strings(r.metadata(), "gallery_subjects") : read_label_file(opt.gallery_labels);
  if (static_cast<std::int64_t>(psub.size()) != P)
    throw FormatError(f.source + ": " + std::to_string(P) + " probe rows but " + std::to_string(psub.size()) +
                      " probe subjects (metadata 'probe_subjects' or --probe-labels)");
  if (static_cast<std::int64_t>(gsub.size()) != G)
    throw FormatError(f.source + ": " + std::to_string(G) + " gallery columns but " + std::to_string(gsub.size()) +
                      " gallery subjects (metadata 'gallery_subjects' or --gallery-labels)");
  std::unordered_map<std::string, int> sid;
  std::vector<int> gid(static_cast<std::size_t>(G));
  for (std::int64_t j = 0; j < G; ++j) {
    // A gallery entry without a subject mates no probe: a distractor.
    if (gsub[static_cast<std::size_t>(j)].empty()) {
      gid[static_cast<std::size_t>(j)] = -2;
      continue;
    }
    gid[static_cast<std::size_t>(j)] = sid.emplace(gsub[static_cast<std::size_t>(j)], static_cast<int>(sid.size())).first->second;
  }
  std::vector<std::string> pids = meta_strings(r.metadata(), "probe_ids"), gids = meta_strings(r.metadata(), "gallery_ids");
  if (opt.pair_ids) {
    if (static_cast<std::int64_t>(pids.size()) != P)
      throw FormatError(f.source + ": the metadata has no 'probe_ids' for its " + std::to_string(P) +
                        " rows (a matrix from hfr-match --matrix has them); --quality matches qualities to probes by id");
    if (static_cast<std::int64_t>(gids.size()) != G) gids.assign(static_cast<std::size_t>(G), "");  // no gallery qualities
    f.origin = FoldScores::Origin::matrix_row;
  }
  scores::ScoreTable* keep = opt.keep_table;
  std::vector<std::uint32_t> kref;
  if (keep) {
    for (std::int64_t j = 0; j < G; ++j) {
      std::size_t jj = static_cast<std::size_t>(j);
      kref.push_back(keep->add_reference(jj < gids.size() ? gids[jj] : "g" + std::to_string(j), gsub[jj], f.source));
    }
  }
  std::size_t es = dtype_size(ti->dtype);
  std::uint64_t cells = static_cast<std::uint64_t>(P) * static_cast<std::uint64_t>(G);
  f.impostor.reserve(f.impostor.size() + static_cast<std::size_t>(cells));
  std::vector<unsigned char> block;
  std::vector<double> row(static_cast<std::size_t>(G));
  std::int64_t rows_per_block = std::max<std::int64_t>(1, (16 << 20) / (G * static_cast<std::int64_t>(es)));
  const unsigned char* whole_data = nullptr;
  if (!r.random_access())
    for (auto& t : whole)
      if (t.info.name == "scores") whole_data = static_cast<const unsigned char*>(t.ptr());
  for (std::int64_t p0 = 0; p0 < P; p0 += rows_per_block) {
    std::int64_t n = std::min(rows_per_block, P - p0);
    const unsigned char* base;
    if (whole_data) {
      base = whole_data + static_cast<std::size_t>(p0 * G) * es;
    } else {
      block.resize(static_cast<std::size_t>(n * G) * es);
      r.read_rows("scores", p0, n, block.data());
      base = block.data();
    }
    for (std::int64_t i = 0; i < n; ++i) {
      std::int64_t pi = p0 + i;
      const std::string& ps = psub[static_cast<std::size_t>(pi)];
      if (ps.empty()) throw FormatError(f.source + ": probe row " + std::to_string(pi) + " has no subject");
      auto it = sid.find(ps);
      int want = it == sid.end() ? -1 : it->second;
      double best = -std::numeric_limits<double>::infinity(), top = best;
      const unsigned char* src = base + static_cast<std::size_t>(i * G) * es;
      std::uint32_t kp = 0;
      if (keep) {
        std::size_t pp = static_cast<std::size_t>(pi);
        kp = keep->add_probe(pp < pids.size() ? pids[pp] : "p" + std::to_string(pi), ps, f.source);
      }
      for (std::int64_t j = 0; j < G; ++j) {
        double v = load_float32(ti->dtype, src + static_cast<std::size_t>(j) * es);
        if (!std::isfinite(v))
          throw FormatError(f.source + ": score [" + std::to_string(pi) + ", " + std::to_string(j) + "] is " + (std::isnan(v) ? "NaN" : "infinite"));
        row[static_cast<std::size_t>(j)] = v;
        bool mated = gid[static_cast<std::size_t>(j)] == want;
        (mated ? f.genuine : f.impostor).push_back(v);
        if (mated && opt.pair_ids) {
          f.genuine_probe.push_back(pids[static_cast<std::size_t>(pi)]);
          f.genuine_gallery.push_back(gids[static_cast<std::size_t>(j)]);
          f.genuine_origin.push_back(static_cast<std::uint64_t>(pi));
        }
        if (mated) best = std::max(best, v);
        top = std::max(top, v);
        if (keep) keep->add(kp, kref[static_cast<std::size_t>(j)], v, mated ? scores::kMated : scores::kNonMated);
      }
      if (want < 0) {
        f.nonmated_top.push_back(top);
        continue;
      }
      std::uint64_t ge = 0;
      for (std::int64_t j = 0; j < G; ++j) ge += gid[static_cast<std::size_t>(j)] != want && row[static_cast<std::size_t>(j)] >= best;
      f.ranks.push_back(1 + ge);
      f.mated_best.push_back(best);
    }
  }
  f.identification = true;
}

// JSON-lines from hfr-match: pair records (score + mated) or top-k records.
void load_records(io::Input& in, const LoadOptions& opt, FoldScores& f) {
  RecordReader rr(in);
  Record rec;
  std::uint64_t unlabelled = 0;
  while (rr.next(rec)) {
    const std::string where = rr.where();
    if (!rec.is_object()) throw FormatError(where + ": expected a JSON object");
    if (rec.contains("error")) {
      ++f.skipped;
      continue;
    }
    auto sc = rec.find("score");
    if (sc != rec.end() && sc->is_array()) {  // top-k identification record
      auto ps = rec.find("probe_subject");
      if (ps == rec.end() || ps->is_null()) {
        ++unlabelled;
        continue;
      }
      auto mr = rec.find("mate_rank");
      bool has_rank = mr != rec.end() && mr->is_number_unsigned() && mr->get<std::uint64_t>() >= 1;
      auto en = rec.find("enrolled");
      bool enrolled = has_rank || (en != rec.end() && en->is_boolean() && en->get<bool>());
      if (has_rank) {
        f.ranks.push_back(mr->get<std::uint64_t>());
        auto ms = rec.find("mate_score");
        f.mated_best.push_back(ms != rec.end() && ms->is_number() ? ms->get<double>() : kNaN);
      } else if (enrolled) {
        f.ranks.push_back(kRankMiss);
        f.mated_best.push_back(kNaN);
      } else if (!sc->empty()) {
        const auto& top = (*sc)[0];
        if (!top.is_number()) throw FormatError(where + ": \"score\" must hold numbers");
        f.nonmated_top.push_back(top.get<double>());
      }
      f.identification = true;
      continue;
    }
    if (sc == rec.end() || !sc->is_number())
      throw FormatError(where + ": record has neither a numeric \"score\" (a pair) nor a \"score\" list (a top-k result)");
    double v = sc->get<double>();
    auto m = rec.find("mated");
    if (m == rec.end() || !m->is_boolean()) {
      ++unlabelled;
      continue;
    }
    bool mated = m->get<bool>();
    (mated ? f.genuine : f.impostor).push_back(v);
    auto str = [&](const char* k) {
      auto it = rec.find(k);
      return it != rec.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    if (mated && opt.pair_ids) {
      f.genuine_probe.push_back(str("probe"));
      f.genuine_gallery.push_back(str("gallery"));
      f.genuine_origin.push_back(rr.line_number());
      f.origin = FoldScores::Origin::line;
    }
    if (opt.keep_table) {
      auto& t = *opt.keep_table;
      std::uint32_t p = t.add_probe(str("probe"), str("probe_subject"), where);
      std::uint32_t g = t.add_reference(str("gallery"), str("gallery_subject"), where);
      t.add(p, g, v, mated ? scores::kMated : scores::kNonMated);
    }
  }
  if (unlabelled)
    log::warn(f.source + ": " + std::to_string(unlabelled) + " records without mated/non-mated labels left out (no subjects known)");
}

// bob 4/5-column or CSV score files.
void load_table(io::Input& in, const LoadOptions& opt, FoldScores& f) {
  scores::ReadOptions ro;
  ro.format = opt.kind == "auto" ? scores::Format::automatic : scores::parse_format(opt.kind);
  scores::ScoreTable t;
  scores::append_scores(t, in, ro);
  if (t.empty()) throw FormatError(f.source + ": no scores");
  t.split(f.genuine, f.impostor);
  if (opt.pair_ids)  // in row order, as split() gives the mated scores
    for (std::size_t i = 0; i < t.size(); ++i)
      if (t.mated[i] == scores::kMated) {
        f.genuine_probe.push_back(t.probe_ids[t.probe[i]]);
        f.genuine_gallery.push_back(t.reference_ids[t.reference[i]]);
        f.genuine_origin.push_back(0);
      }
  std::size_t unknown = t.count(scores::kUnknown);
  if (unknown) log::warn(f.source + ": " + std::to_string(unknown) + " rows with unknown mated status left out");
  // Identification only when every probe was compared with every reference
  // (a closed-set score list), so that ranks mean what they say.
  std::size_t P = t.probe_ids.size(), G = t.reference_ids.size();
  std::vector<std::uint32_t> per(P, 0);
  for (auto p : t.probe) ++per[p];
  bool complete = unknown == 0 && G > 1 && std::all_of(per.begin(), per.end(), [&](std::uint32_t c) { return c == G; });
  if (complete) {
    std::vector<double> best(P, -std::numeric_limits<double>::infinity()), top(P, -std::numeric_limits<double>::infinity());
    std::vector<char> enrolled(P, 0);
    for (std::size_t i = 0; i < t.size(); ++i) {
      top[t.probe[i]] = std::max(top[t.probe[i]], t.score[i]);
      if (t.mated[i] == scores::kMated) {
        enrolled[t.probe[i]] = 1;
        best[t.probe[i]] = std::max(best[t.probe[i]], t.score[i]);
      }
    }
    std::vector<std::uint64_t> ge(P, 0);
    for (std::size_t i = 0; i < t.size(); ++i)
      if (t.mated[i] == scores::kNonMated && t.score[i] >= best[t.probe[i]]) ++ge[t.probe[i]];
    for (std::size_t p = 0; p < P; ++p) {
      if (enrolled[p]) {
        f.ranks.push_back(1 + ge[p]);
        f.mated_best.push_back(best[p]);
      } else {
        f.nonmated_top.push_back(top[p]);
      }
    }
    f.identification = true;
  }
  if (opt.keep_table) {
    auto& k = *opt.keep_table;
    std::vector<std::uint32_t> pm(P), gm(G);
    for (std::size_t p = 0; p < P; ++p) pm[p] = k.add_probe(t.probe_ids[p], t.probe_subjects[p], f.source);
    for (std::size_t g = 0; g < G; ++g) gm[g] = k.add_reference(t.reference_ids[g], t.reference_subjects[g], f.source);
    for (std::size_t i = 0; i < t.size(); ++i) k.add(pm[t.probe[i]], gm[t.reference[i]], t.score[i], t.mated[i]);
  }
}

json verification_json(const metrics::Verification& v, const Options& o, std::size_t fold) {
  json j;
  j["genuine"] = v.genuine_count();
  j["impostor"] = v.impostor_count();
  j["auc"] = v.auc();
  auto e = v.eer();
  j["eer"] = {{"eer", e.eer}, {"threshold", e.threshold}, {"far", e.far}, {"frr", e.frr}};
  json tars = json::array();
  for (double t : o.far_targets) {
    auto r = v.tar_at_far(t, o.convention);
    json x = {{"target", t}, {"threshold", num(r.threshold)}, {"far", r.far}, {"tar", r.tar},
              {"impostors_accepted", r.impostors_accepted}, {"expected_impostors", r.expected_impostors}};
    if (o.bootstrap > 0 && r.expected_impostors < o.thin && r.expected_impostors >= 0) {
      auto ci = v.bootstrap_tar(t, o.bootstrap, o.seed + 7919 * fold, 0.95);
      x["ci"] = {{"low", ci.low}, {"high", ci.high}, {"level", ci.level}, {"replicates", ci.replicates}};
    }
    tars.push_back(std::move(x));
  }
  j["tar_at_far"] = std::move(tars);
  return j;
}

json identification_json(const FoldScores& f, const Options& o) {
  json j;
  std::vector<std::uint64_t> ranks = f.ranks;
  std::uint64_t misses = 0;
  for (auto& r : ranks)
    if (r == kRankMiss) ++misses;
  j["probes"] = ranks.size();
  j["misses"] = misses;  // mates an approximate search did not return
  auto c = metrics::cmc(ranks, std::max<std::size_t>(o.cmc_max, static_cast<std::size_t>(*std::max_element(o.ranks.begin(), o.ranks.end()))));
  json rk = json::object();
  for (int k : o.ranks) rk[std::to_string(k)] = c.rate[static_cast<std::size_t>(k - 1)];
  j["rank"] = std::move(rk);
  j["cmc"] = std::vector<double>(c.rate.begin(), c.rate.begin() + static_cast<std::ptrdiff_t>(std::min(o.cmc_max, c.rate.size())));
  return j;
}

json open_set_json(const FoldScores& f, const Options& o) {
  json j;
  j["nonmated_probes"] = f.nonmated_top.size();
  json d = json::array();
  bool scores_known = std::none_of(f.mated_best.begin(), f.mated_best.end(), [](double x) { return std::isnan(x); });
  if (!f.nonmated_top.empty() && !f.ranks.empty() && scores_known)
    for (double t : o.fpir_targets) {
      auto r = metrics::dir_at_fpir(f.mated_best, f.ranks, f.nonmated_top, t, 1);
      d.push_back({{"target", t}, {"threshold", num(r.threshold)}, {"fpir", r.fpir}, {"dir", r.dir}});
    }
  j["dir_at_fpir"] = std::move(d);
  return j;
}

json summary_of(const std::vector<double>& v) {
  auto ms = metrics::mean_std(v);
  return {{"mean", ms.mean}, {"std", ms.std}, {"n", ms.n}};
}

std::string pct(double v, int prec = 2) {
  char b[32];
  std::snprintf(b, sizeof b, "%.*f%%", prec, 100 * v);
  return b;
}

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// The error versus reject curve of mated scores with pair qualities at the
// threshold that gives the FMR target over all of `v`'s scores: the FNMR left
// at reject fractions 0, 0.01, ... up to the largest area limit, the areas
// (and the oracle's: the false non-matches rejected first).
json error_vs_reject_json(const metrics::Verification& v, const std::vector<double>& genuine, const std::vector<double>& quality,
                          const std::string& pair_quality, const Options& o, bool with_curve) {
  auto t = v.tar_at_far(o.reject_fmr, o.convention);
  metrics::ErrorVsReject e(genuine, quality, t.threshold);
  json j;
  j["fmr_target"] = o.reject_fmr;
  j["threshold"] = t.threshold;
  j["fmr"] = t.far;
  j["pair_quality"] = pair_quality;
  j["comparisons"] = e.comparisons();
  j["fnmr"] = e.fnmr_at(0);
  json areas = json::array();
  for (double l : o.reject_auc)
    areas.push_back({{"limit", l}, {"area", e.area(l)}, {"normalised", l > 0 ? e.area(l) / l : 0.0}, {"oracle", e.oracle_area(l)}});
  j["auc"] = std::move(areas);
  if (with_curve) {
    double top = *std::max_element(o.reject_auc.begin(), o.reject_auc.end());
    json c = json::array(), b = json::array();
    for (int k = 0; k <= static_cast<int>(std::lround(top * 100)); ++k) {
      double r = k / 100.0;
      c.push_back({r, e.fnmr_at(r)});
      b.push_back({r, e.oracle_fnmr_at(r)});
    }
    j["curve"] = std::move(c);
    j["oracle"] = std::move(b);
  }
  return j;
}

}  // namespace

QualityTable load_quality(const std::vector<std::string>& paths, const std::string& field) {
  QualityTable q;
  for (const auto& path : paths) {
    auto in = io::open_input(path);
    RecordReader rr(*in);
    q.files += (q.files.empty() ? "" : ", ") + rr.name();
    Record rec;
    while (rr.next(rec)) {
      const std::string where = rr.where();
      if (!rec.is_object()) throw FormatError(where + ": expected a JSON object");
      if (rec.contains("error")) continue;  // a failed face of an earlier stage: no embedding, no score
      auto idv = rec.find("id");
      std::string id;
      if (idv != rec.end() && idv->is_string()) id = idv->get<std::string>();
      else if (idv != rec.end() && idv->is_number_integer()) id = std::to_string(idv->get<std::int64_t>());
      else throw FormatError(where + ": record has no \"id\" (quality records are matched to the scores by id)");
      auto qv = rec.find(field);
      if (qv == rec.end())
        throw FormatError(where + " (id " + id + "): record has no \"" + field + "\" field" +
                          (field == "quality" ? " (hfr-embed writes it for models with a quality head: hfr-train --ri)" : ""));
      if (!qv->is_number()) throw FormatError(where + " (id " + id + "): \"" + field + "\" is not a number: " + qv->dump().substr(0, 60));
      double v = qv->get<double>();
      auto [it, fresh] = q.by_id.emplace(id, QualityTable::Entry{v, where, false});
      if (!fresh && it->second.quality != v)
        throw FormatError(where + ": id '" + id + "' has " + field + " " + fmt("%.17g", v) + " here but " +
                          fmt("%.17g", it->second.quality) + " at " + it->second.where);
    }
  }
  return q;
}

void attach_quality(FoldScores& f, QualityTable& q) {
  const std::size_t n = f.genuine.size();
  if (f.genuine_probe.size() != n || f.genuine_gallery.size() != n)
    throw Error(f.source + ": mated pairs were loaded without their ids");
  auto where = [&](std::size_t i) {
    switch (f.origin) {
      case FoldScores::Origin::matrix_row: return f.source + ": probe row " + std::to_string(f.genuine_origin[i]);
      case FoldScores::Origin::line: return f.source + ":" + std::to_string(f.genuine_origin[i]);
      default: return f.source;
    }
  };
  std::vector<QualityTable::Entry*> probe(n, nullptr), gallery(n, nullptr);
  std::size_t found = 0, first_missing = n;
  for (std::size_t i = 0; i < n; ++i) {
    auto p = q.by_id.find(f.genuine_probe[i]);
    if (p == q.by_id.end())
      throw FormatError(where(i) + ": probe '" + f.genuine_probe[i] + "' has no quality in the --quality records (" + q.files + ")");
    probe[i] = &p->second;
    auto g = f.genuine_gallery[i].empty() ? q.by_id.end() : q.by_id.find(f.genuine_gallery[i]);
    if (g != q.by_id.end()) {
      gallery[i] = &g->second;
      ++found;
    } else if (first_missing == n) {
      first_missing = i;
    }
  }
  bool both = n > 0 && found == n;
  if (found > 0 && !both)
    throw FormatError(where(first_missing) + ": gallery entry '" + f.genuine_gallery[first_missing] +
                      "' has no quality in the --quality records (" + q.files +
                      "), though other gallery entries have one: give every gallery entry a quality, or none (the probe's alone is then the pair's)");
  f.genuine_quality.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    probe[i]->used = true;
    f.genuine_quality[i] = probe[i]->quality;
    if (both) {
      gallery[i]->used = true;
      f.genuine_quality[i] = std::min(f.genuine_quality[i], gallery[i]->quality);
    }
  }
  f.pair_quality = both ? "min(probe, gallery)" : "probe";
}

FoldScores load_fold(const std::string& path, const LoadOptions& opt) {
  FoldScores f;
  std::string head;
  auto in = io::peek_input(io::open_input(path), 4096, head);
  f.source = in->name();
  std::string kind = opt.kind;
  if (kind == "auto") {
    std::size_t a = head.find_first_not_of(" \t\r\n");
    if (head.size() >= 8 && std::memcmp(head.data(), kTensorMagic, 8) == 0) kind = "matrix";
    else if (a != std::string::npos && head[a] == '{') kind = "records";
    else if (head.empty()) throw FormatError(f.source + ": empty input");
  }
  if (kind == "matrix") load_matrix(*in, opt, f);
  else if (kind == "records") load_records(*in, opt, f);
  else load_table(*in, opt, f);
  if (f.skipped) log::warn(f.source + ": skipped " + std::to_string(f.skipped) + " records with an \"error\" field");
  if (f.genuine.empty() && f.impostor.empty() && f.ranks.empty() && f.nonmated_top.empty())
    throw FormatError(f.source + ": no labelled scores (nothing says which pairs are mated)");
  return f;
}

json evaluate(const std::vector<FoldScores>& folds, const Options& o) {
  json rep;
  rep["tool"] = "hfr-eval";
  if (!o.provenance.empty()) rep["provenance"] = json::parse(o.provenance);
  rep["name"] = o.name;
  rep["convention"] = metrics::convention_name(o.convention);
  json fj = json::array();
  std::vector<double> aucs, eers;
  std::map<double, std::vector<double>> tar_by, dir_by;
  std::map<int, std::vector<double>> rank_by;
  // Curves pool the folds. One fold's Verification is kept for them rather
  // than sorting the same scores a second time.
  std::vector<double> all_g, all_i;
  std::unique_ptr<metrics::Verification> only;
  std::vector<std::uint64_t> all_ranks;
  // error versus reject: per fold, and the folds pooled for the curve
  std::vector<std::vector<double>> evr_area_by(o.reject_auc.size());  // per --reject-auc limit, in its order
  std::vector<double> evr_fnmr, all_q;
  std::string pair_quality;
  for (std::size_t k = 0; k < folds.size(); ++k) {
    const FoldScores& f = folds[k];
    json x;
    x["fold"] = k + 1;
    x["input"] = f.source;
    if (!f.genuine.empty() && !f.impostor.empty()) {
      auto v = std::make_unique<metrics::Verification>(f.genuine, f.impostor);
      x["verification"] = verification_json(*v, o, k);
      aucs.push_back(v->auc());
      eers.push_back(v->eer().eer);
      for (const auto& t : x["verification"]["tar_at_far"]) tar_by[t["target"].get<double>()].push_back(t["tar"].get<double>());
      if (!f.genuine_quality.empty()) {
        json e = error_vs_reject_json(*v, f.genuine, f.genuine_quality, f.pair_quality, o, folds.size() > 1);
        evr_fnmr.push_back(e["fnmr"].get<double>());
        for (std::size_t a = 0; a < o.reject_auc.size(); ++a) evr_area_by[a].push_back(e["auc"][a]["area"].get<double>());
        all_q.insert(all_q.end(), f.genuine_quality.begin(), f.genuine_quality.end());
        if (pair_quality.empty() || pair_quality == f.pair_quality) pair_quality = f.pair_quality;
        else pair_quality = "mixed";
        x["error_vs_reject"] = std::move(e);
      }
      if (folds.size() == 1) {
        only = std::move(v);
      } else {
        all_g.insert(all_g.end(), f.genuine.begin(), f.genuine.end());
        all_i.insert(all_i.end(), f.impostor.begin(), f.impostor.end());
      }
    } else if (!f.genuine.empty() || !f.impostor.empty()) {
      x["verification"] = nullptr;
      log::warn(f.source + ": verification needs both mated and non-mated scores; this input has " +
                (f.genuine.empty() ? std::string("no mated") : std::string("no non-mated")) + " ones");
    }
    if (f.identification && !f.ranks.empty()) {
      x["identification"] = identification_json(f, o);
      for (int r : o.ranks) rank_by[r].push_back(x["identification"]["rank"][std::to_string(r)].get<double>());
    }
    if (f.identification && !f.nonmated_top.empty()) {
      x["open_set"] = open_set_json(f, o);
      for (const auto& d : x["open_set"]["dir_at_fpir"]) dir_by[d["target"].get<double>()].push_back(d["dir"].get<double>());
    }
    all_ranks.insert(all_ranks.end(), f.ranks.begin(), f.ranks.end());
    fj.push_back(std::move(x));
  }
  if (aucs.empty() && rank_by.empty())
    throw Error("nothing to evaluate: no input has both mated and non-mated scores, nor identification results");
  rep["folds"] = std::move(fj);
  json s;
  s["folds"] = folds.size();
  if (!aucs.empty()) {
    s["auc"] = summary_of(aucs);
    s["eer"] = summary_of(eers);
  }
  json ts = json::object(), rs = json::object(), ds = json::object();
  for (auto& [t, v] : tar_by) ts[target_key(t)] = summary_of(v);
  for (auto& [r, v] : rank_by) rs[std::to_string(r)] = summary_of(v);
  for (auto& [t, v] : dir_by) ds[target_key(t)] = summary_of(v);
  if (!ts.empty()) s["tar_at_far"] = std::move(ts);
  if (!rs.empty()) s["rank"] = std::move(rs);
  if (!ds.empty()) s["dir_at_fpir"] = std::move(ds);
  if (!evr_fnmr.empty()) {
    json areas = json::object();
    for (std::size_t a = 0; a < o.reject_auc.size(); ++a) areas[target_key(o.reject_auc[a])] = summary_of(evr_area_by[a]);
    s["error_vs_reject"] = {{"fmr_target", o.reject_fmr}, {"fnmr", summary_of(evr_fnmr)}, {"auc", std::move(areas)}};
  }
  rep["summary"] = std::move(s);

  // Curves for plots and comparisons: the scores of all folds pooled.
  json curves;
  if (!only && !all_g.empty() && !all_i.empty()) only = std::make_unique<metrics::Verification>(std::move(all_g), std::move(all_i));
  if (only) {
    const metrics::Verification& v = *only;
    // the pooled mated scores, in the order the folds were read: all_q's order
    if (!all_q.empty() && all_q.size() == v.genuine_count()) {
      std::vector<double> g;
      for (const auto& f : folds)
        if (!f.genuine_quality.empty()) g.insert(g.end(), f.genuine.begin(), f.genuine.end());
      if (g.size() == all_q.size()) curves["error_vs_reject"] = error_vs_reject_json(v, g, all_q, pair_quality, o, true);
    }
    json roc = json::array(), det = json::array();
    for (const auto& p : v.roc_curve(400, 1e-8)) {
      roc.push_back({p.far, p.tar});
      det.push_back({p.far, 1 - p.tar});
    }
    curves["roc"] = std::move(roc);
    curves["det"] = std::move(det);
    curves["impostor"] = v.impostor_count();
    curves["genuine"] = v.genuine_count();
  }
  if (!all_ranks.empty()) curves["cmc"] = metrics::cmc(all_ranks, o.cmc_max).rate;
  rep["curves"] = std::move(curves);
  return rep;
}

// A {"mean","std"} summary as text: a percentage, or a number in `f`; "± std"
// when the run has several folds.
std::string mean_std(const json& m, bool many, bool percent, const char* f = "%.5f") {
  auto one = [&](double v) { return percent ? pct(v) : fmt(f, v); };
  std::string out = one(m["mean"].get<double>());
  if (many) out += " ± " + one(m["std"].get<double>());
  return out;
}

std::string render_table(const json& rep) {
  std::ostringstream out;
  const json& s = rep["summary"];
  std::size_t nf = s["folds"].get<std::size_t>();
  bool many = nf > 1;
  std::string name = rep.value("name", "");
  out << (name.empty() ? "run" : name) << ": " << nf << (nf == 1 ? " fold" : " folds") << ", convention " << rep["convention"].get<std::string>() << "\n";
  auto stat = [&](const json& m, bool percent) { return mean_std(m, many, percent); };
  const json& f0 = rep["folds"][0];
  if (s.contains("auc")) {
    if (f0.contains("verification") && !f0["verification"].is_null())
      out << "verification: " << f0["verification"]["genuine"].get<std::uint64_t>() << " mated / " << f0["verification"]["impostor"].get<std::uint64_t>()
          << " non-mated scores" << (many ? " (fold 1)" : "") << "\n";
    out << "  AUC " << stat(s["auc"], false) << "    EER " << stat(s["eer"], true);
    if (!many) out << " (threshold " << fmt("%.6g", f0["verification"]["eer"]["threshold"].get<double>()) << ")";
    out << "\n";
    if (!many) {
      out << "  FAR target   TAR        threshold      achieved FAR   impostors   95% CI of TAR\n";
      for (const auto& t : f0["verification"]["tar_at_far"]) {
        char line[256];
        std::string ci = t.contains("ci") ? pct(t["ci"]["low"].get<double>()) + " – " + pct(t["ci"]["high"].get<double>()) : "";
        std::snprintf(line, sizeof line, "  %-10s   %-9s  %-13s  %-13s  %-10s  %s\n", target_key(t["target"].get<double>()).c_str(),
                      pct(t["tar"].get<double>()).c_str(), t["threshold"].is_null() ? "-" : fmt("%.6g", t["threshold"].get<double>()).c_str(),
                      fmt("%.3e", t["far"].get<double>()).c_str(), fmt("%.0f", t["impostors_accepted"].get<double>()).c_str(), ci.c_str());
        out << line;
      }
    } else {
      out << "  FAR target   TAR (mean ± std over folds)\n";
      for (auto it = s["tar_at_far"].begin(); it != s["tar_at_far"].end(); ++it) {
        char line[128];
        std::snprintf(line, sizeof line, "  %-10s   %s\n", it.key().c_str(), stat(it.value(), true).c_str());
        out << line;
      }
    }
  }
  if (s.contains("error_vs_reject")) {
    const json& e = s["error_vs_reject"];
    out << "error vs reject: FNMR at FMR=" << target_key(e["fmr_target"].get<double>()) << " " << stat(e["fnmr"], true);
    if (!many && f0.contains("error_vs_reject")) {
      const json& e0 = f0["error_vs_reject"];
      out << " (threshold " << fmt("%.6g", e0["threshold"].get<double>()) << ", " << e0["comparisons"].get<std::uint64_t>()
          << " mated, pair quality " << e0["pair_quality"].get<std::string>() << ")";
    }
    out << "\n";
    double top = 0;
    for (auto it = e["auc"].begin(); it != e["auc"].end(); ++it) top = std::max(top, std::stod(it.key()));
    for (auto it = e["auc"].begin(); it != e["auc"].end(); ++it) {
      out << "  " << (std::stod(it.key()) < top ? "pAUC" : "AUC") << "[0," << it.key() << "] " << mean_std(it.value(), many, false, "%.5f");
      if (!many && f0.contains("error_vs_reject"))
        for (const auto& a : f0["error_vs_reject"]["auc"])
          if (target_key(a["limit"].get<double>()) == it.key()) out << " (oracle " << fmt("%.5f", a["oracle"].get<double>()) << ")";
    }
    out << "\n";
  }
  if (s.contains("rank")) {
    if (f0.contains("identification"))
      out << "identification: " << f0["identification"]["probes"].get<std::uint64_t>() << " enrolled probes" << (many ? " (fold 1)" : "") << "\n";
    out << " ";
    for (auto it = s["rank"].begin(); it != s["rank"].end(); ++it) out << " Rank-" << it.key() << " " << stat(it.value(), true) << " ";
    out << "\n";
  }
  if (s.contains("dir_at_fpir")) {
    out << "open set:";
    for (auto it = s["dir_at_fpir"].begin(); it != s["dir_at_fpir"].end(); ++it) out << "  DIR@FPIR=" << it.key() << " " << stat(it.value(), true);
    out << "\n";
  }
  return out.str();
}

std::string render_comparison(const json& rep, const std::vector<json>& compare) {
  std::vector<const json*> runs;
  for (const auto& c : compare) runs.push_back(&c);
  runs.push_back(&rep);
  // FAR targets: this run's, from 1e-2 down to what its non-mated scores resolve.
  const json& s = rep["summary"];
  double impostors = 0;
  if (rep["curves"].contains("impostor")) impostors = rep["curves"]["impostor"].get<double>();
  std::vector<std::string> targets;
  if (s.contains("tar_at_far")) {
    std::vector<double> ts;
    for (auto it = s["tar_at_far"].begin(); it != s["tar_at_far"].end(); ++it) ts.push_back(std::stod(it.key()));
    std::sort(ts.begin(), ts.end(), std::greater<>());
    for (double t : ts)
      if (t <= 1e-2 + 1e-15 && impostors > 0 && t * impostors >= 1 - 1e-9 && targets.size() < 3) targets.push_back(target_key(t));
    if (targets.empty())
      for (double t : ts)
        if (targets.size() < 2) targets.push_back(target_key(t));
  }
  // a summary's entry (sum[group][key], or sum[key] when group is empty), "-" where the run has none
  auto cell = [](const json& sum, const std::string& group, const std::string& key, bool percent) -> std::string {
    const json* m = group.empty() ? &sum : (sum.contains(group) ? &sum[group] : nullptr);
    if (!m || !m->contains(key)) return "-";
    return mean_std((*m)[key], sum["folds"].get<std::size_t>() > 1, percent, "%.4f");
  };
  std::vector<std::string> head = {"run", "Rank-1"};
  for (const auto& t : targets) head.push_back("TAR@FAR=" + t);
  head.push_back("EER");
  head.push_back("AUC");
  std::vector<std::vector<std::string>> rows = {head};
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const json& r = *runs[i];
    std::string name = r.value("name", "");
    if (name.empty()) name = i + 1 == runs.size() ? "this run" : "run " + std::to_string(i + 1);
    std::vector<std::string> row = {name};
    const json empty = json::object({{"folds", 1}});
    const json& sum = r.contains("summary") && r["summary"].is_object() ? r["summary"] : empty;
    row.push_back(cell(sum, "rank", "1", true));
    for (const auto& t : targets) row.push_back(cell(sum, "tar_at_far", t, true));
    row.push_back(cell(sum, "", "eer", true));
    row.push_back(cell(sum, "", "auc", false));
    rows.push_back(std::move(row));
  }
  std::vector<std::size_t> width(head.size(), 0);
  auto display = [](const std::string& x) {  // UTF-8 code points (the ± sign)
    std::size_t n = 0;
    for (unsigned char c : x) n += (c & 0xC0) != 0x80;
    return n;
  };
  for (const auto& row : rows)
    for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], display(row[c]));
  std::ostringstream out;
  out << "comparison:\n";
  for (const auto& row : rows) {
    out << " ";
    for (std::size_t c = 0; c < row.size(); ++c) {
      out << " " << row[c];
      if (c + 1 < row.size()) out << std::string(width[c] - display(row[c]) + 2, ' ');
    }
    out << "\n";
  }
  return out.str();
}

std::vector<std::string> write_plots(const json& rep, const std::vector<json>& compare, const Options& o) {
  std::vector<std::string> written;
  std::vector<const json*> runs = {&rep};
  for (const auto& c : compare) runs.push_back(&c);
  auto label = [&](const json& r, std::size_t i) {
    std::string n = r.value("name", "");
    return n.empty() ? "run " + std::to_string(i + 1) : n;
  };
  auto emit = [&](const plot::Chart& c, const std::string& what) {
    for (const auto& fmtname : o.plot_formats) {
      std::string path = o.plot_prefix + "-" + what + "." + fmtname;
      plot::write_chart(c, path);
      written.push_back(path);
    }
  };
  double far_min = 1e-6;
  std::size_t max_imp = 0;
  for (const json* r : runs)
    if ((*r)["curves"].contains("impostor")) max_imp = std::max<std::size_t>(max_imp, (*r)["curves"]["impostor"].get<std::size_t>());
  if (max_imp) far_min = std::pow(10.0, std::floor(std::log10(1.0 / static_cast<double>(max_imp))));
  far_min = std::clamp(far_min, 1e-8, 1e-2);
  if (max_imp) {
    plot::Chart roc;
    roc.title = "ROC";
    roc.x = {"False accept rate (FAR)", plot::Scale::log10, far_min, 1, false};
    roc.y = {"True accept rate (TAR)", plot::Scale::linear, 0, 1, true};
    plot::Chart det;
    det.title = "DET";
    det.x = {"False accept rate (FAR)", plot::Scale::probit, std::max(far_min, 1e-5), 0.5, true};
    det.y = {"False reject rate (FRR)", plot::Scale::probit, 1e-4, 0.5, true};
    det.diagonal = true;
    double ymin = 1;
    for (std::size_t i = 0; i < runs.size(); ++i) {
      const json& c = (*runs[i])["curves"];
      if (!c.contains("roc")) continue;
      plot::Series sr{label(*runs[i], i), {}, false, false}, sd{label(*runs[i], i), {}, false, false};
      for (const auto& p : c["roc"]) sr.points.emplace_back(p[0].get<double>(), p[1].get<double>());
      for (const auto& p : c["det"]) {
        sd.points.emplace_back(p[0].get<double>(), p[1].get<double>());
        if (p[0].get<double>() >= det.x.min && p[1].get<double>() > 0) ymin = std::min(ymin, p[1].get<double>());
      }
      roc.series.push_back(std::move(sr));
      det.series.push_back(std::move(sd));
    }
    det.y.min = std::clamp(std::pow(10.0, std::floor(std::log10(ymin))), 1e-5, 1e-2);
    emit(roc, "roc");
    emit(det, "det");
  }
  // Error versus reject: this run's curve, its oracle, and the compared runs' curves.
  if (rep["curves"].contains("error_vs_reject")) {
    const json& e = rep["curves"]["error_vs_reject"];
    plot::Chart evr;
    evr.title = "Error versus reject";
    double top = e["curve"].back()[0].get<double>();
    evr.x = {"Fraction of mated comparisons rejected (lowest quality first)", plot::Scale::linear, 0, top > 0 ? top : 1, true};
    evr.y = {"FNMR at FMR=" + target_key(e["fmr_target"].get<double>()), plot::Scale::linear, 0, 0, true};
    double ymax = 0;
    auto add = [&](const json& pts, const std::string& name) {
      plot::Series s{name, {}, true, false};
      for (const auto& p : pts) {
        s.points.emplace_back(p[0].get<double>(), p[1].get<double>());
        ymax = std::max(ymax, p[1].get<double>());
      }
      evr.series.push_back(std::move(s));
    };
    for (std::size_t i = 0; i < runs.size(); ++i) {
      const json& c = (*runs[i])["curves"];
      if (c.contains("error_vs_reject") && c["error_vs_reject"].contains("curve")) add(c["error_vs_reject"]["curve"], label(*runs[i], i));
    }
    add(e["oracle"], label(rep, 0) + ": oracle");
    evr.y.max = ymax > 0 ? std::min(1.0, std::ceil(ymax * 1.1 * 100) / 100) : 0.01;
    emit(evr, "evr");
  }
  plot::Chart cmc;
  cmc.title = "CMC";
  cmc.x = {"Rank", plot::Scale::linear, 1, static_cast<double>(o.cmc_max), false};
  cmc.y = {"Identification rate", plot::Scale::linear, 0, 1, true};
  double lo = 1;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const json& c = (*runs[i])["curves"];
    if (!c.contains("cmc")) continue;
    plot::Series s{label(*runs[i], i), {}, true, false};
    std::size_t k = 1;
    for (const auto& v : c["cmc"]) {
      if (k > o.cmc_max) break;
      s.points.emplace_back(static_cast<double>(k++), v.get<double>());
      lo = std::min(lo, v.get<double>());
    }
    cmc.series.push_back(std::move(s));
  }
  if (!cmc.series.empty()) {
    cmc.y.min = std::max(0.0, std::floor(lo * 10 - 1e-9) / 10);
    if (cmc.y.min >= 1) cmc.y.min = 0.9;
    if (cmc.x.max <= 1) cmc.x.max = 2;
    emit(cmc, "cmc");
  }
  return written;
}

int run(const Options& o) {
  if (o.inputs.empty()) throw UsageError("no score input");
  std::vector<json> compare;
  for (const auto& c : o.compare) {
    auto bytes = io::read_file(c, 256u << 20);
    try {
      compare.push_back(json::parse(bytes.begin(), bytes.end()));
    } catch (const std::exception& e) {
      throw FormatError(c + ": not a JSON report: " + std::string(e.what()).substr(0, 120));
    }
    if (!compare.back().is_object() || !compare.back().contains("curves"))
      throw FormatError(c + ": not an hfr-eval report (no \"curves\")");
  }
  scores::ScoreTable table;
  LoadOptions lo = o.load;
  if (!o.write_scores.empty()) lo.keep_table = &table;
  if (!o.quality.empty()) lo.pair_ids = true;
  std::vector<FoldScores> folds;
  for (const auto& in : o.inputs) folds.push_back(load_fold(in, lo));
  if (!o.quality.empty()) {
    QualityTable q = load_quality(o.quality, o.quality_field);
    for (auto& f : folds) attach_quality(f, q);
    std::size_t unused = 0;
    const QualityTable::Entry* first = nullptr;
    for (const auto& [id, e] : q.by_id)
      if (!e.used) {
        ++unused;
        if (!first || e.where < first->where) first = &e;
      }
    if (unused)
      log::info(std::to_string(unused) + " of " + std::to_string(q.by_id.size()) + " quality records (e.g. " + first->where +
                ") belong to no mated pair of the inputs (unenrolled probes, distractors, other folds): not used");
  }
  json rep = evaluate(folds, o);
  if (!o.write_scores.empty()) {
    if (table.empty()) throw Error("--write-scores: the inputs hold no pairwise scores to convert");
    auto out = io::open_output(o.write_scores);
    scores::write_scores(table, *out, o.write_format);
    out->commit();
  }
  if (!o.plot_prefix.empty()) {
    // the plots' folder is made if missing (like hfr-render's -O)
    const std::filesystem::path dir = std::filesystem::path(o.plot_prefix).parent_path();
    std::error_code ec;
    if (!dir.empty() && !std::filesystem::is_directory(dir) && !std::filesystem::create_directories(dir, ec))
      throw Error("--plot " + o.plot_prefix + ": cannot create the folder " + dir.string() + ": " + ec.message());
    auto paths = write_plots(rep, compare, o);
    json pj = json::array();
    for (auto& p : paths) pj.push_back(p);
    rep["plots"] = std::move(pj);
  }
  if (!o.report.empty()) {
    auto out = io::open_output(o.report);
    out->write(rep.dump(1) + "\n");
    out->commit();
  }
  auto out = io::open_output("-");
  out->write(o.json ? rep.dump(1) + "\n" : render_table(rep) + (compare.empty() ? std::string() : "\n" + render_comparison(rep, compare)));
  out->commit();
  return kExitOk;
}

}  // namespace hfr::eval
