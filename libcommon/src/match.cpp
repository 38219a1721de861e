#include "hfr/match.hpp"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <unordered_map>

#include "hfr/error.hpp"
#include "hfr/io.hpp"
#include "hfr/log.hpp"
#include "hfr/progress.hpp"
#include "hfr/protocols.hpp"
#include "hfr/records.hpp"
#include "hfr/tensorfile.hpp"

namespace hfr::match {
namespace {

using json = nlohmann::json;

EmbeddingSet load_set(const std::string& path, const EmbeddingReadOptions& ro, bool templates, const char* what) {
  std::uint64_t skipped = 0;
  EmbeddingSet s = read_embeddings(path, ro, &skipped);
  if (skipped) log::warn(s.source + ": skipped " + std::to_string(skipped) + " records with an \"error\" field");
  if (s.size() == 0) throw Error(s.source + ": the " + what + " set is empty");
  if (templates) {
    std::size_t before = s.size();
    s = make_templates(s);
    log::info(s.source + ": " + std::to_string(before) + " " + what + " rows -> " + std::to_string(s.size()) + " subject templates");
  }
  return s;
}

// A float as the shortest decimal that reads back to the same float (the
// double it widens to would print 17 digits of noise).
json jfloat(float f) {
  if (!std::isfinite(f)) return json(nullptr);
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, f);
  return json(std::strtod(std::string(buf, r.ptr).c_str(), nullptr));
}

json subject_or_null(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

// One output record per probe for top-k identification.
Record top_record(const EmbeddingSet& probes, std::size_t i, const search::ProbeResult& r, const std::vector<std::string>& gids,
                  const std::vector<std::string>& gsub) {
  Record rec;
  rec["probe"] = probes.ids[i];
  rec["probe_subject"] = subject_or_null(probes.subjects[i]);
  json ids = json::array(), scores = json::array(), ranks = json::array(), mated = json::array();
  bool labels = !probes.subjects[i].empty();
  for (std::size_t j = 0; j < r.top.size(); ++j) {
    const auto& h = r.top[j];
    ids.push_back(gids[h.index]);
    scores.push_back(jfloat(h.score));
    ranks.push_back(j + 1);
    if (labels) mated.push_back(gsub[h.index].empty() ? json(nullptr) : json(gsub[h.index] == probes.subjects[i]));
  }
  rec["gallery"] = std::move(ids);
  rec["score"] = std::move(scores);
  rec["rank"] = std::move(ranks);
  if (labels) {
    rec["mated"] = std::move(mated);
    rec["enrolled"] = r.has_mate;  // the gallery holds this subject
    if (r.has_mate) {
      rec["mate"] = r.mate_rank ? json(gids[r.mate_index]) : json(nullptr);
      rec["mate_score"] = jfloat(r.mate_score);
      rec["mate_rank"] = r.mate_rank ? json(r.mate_rank) : json(nullptr);
    } else {
      rec["mate"] = nullptr;  // no row of this subject in the gallery (open set)
      rec["mate_rank"] = nullptr;
    }
  }
  return rec;
}

std::unordered_map<std::string, std::size_t> id_index(const EmbeddingSet& s, const char* what) {
  std::unordered_map<std::string, std::size_t> m;
  m.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i)
    if (!m.emplace(s.ids[i], i).second)
      throw FormatError(s.source + ": " + what + " id '" + s.ids[i] + "' occurs more than once, so pairs naming it are ambiguous");
  return m;
}

int run_pairs(const Options& o, const search::ExactSearch& gs, EmbeddingSet& probes, io::Output& out) {
  gs.prepare(probes);
  const EmbeddingSet& g = gs.gallery();
  auto gidx = id_index(g, "gallery");
  auto pidx = id_index(probes, "probe");
  auto in = io::open_input(o.pairs_file);
  RecordWriter w(out);
  std::string buf, line;
  std::uint64_t lineno = 0, failed = 0;
  std::vector<char> chunk(1 << 16);
  bool eof = false;
  std::size_t pos = 0;
  auto next_line = [&](std::string& l) {
    for (;;) {
      auto nl = buf.find('\n', pos);
      if (nl != std::string::npos) {
        l.assign(buf, pos, nl - pos);
        pos = nl + 1;
        return true;
      }
      if (eof) {
        if (pos < buf.size()) {
          l.assign(buf, pos, std::string::npos);
          pos = buf.size();
          return true;
        }
        return false;
      }
      buf.erase(0, pos);
      pos = 0;
      std::size_t r = in->read(chunk.data(), chunk.size());
      if (r == 0) eof = true;
      buf.append(chunk.data(), r);
      if (buf.size() > (64u << 20)) throw FormatError(in->name() + ":" + std::to_string(lineno + 1) + ": line longer than 64 MiB");
    }
  };
  while (next_line(line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::size_t a = line.find_first_not_of(" \t");
    if (a == std::string::npos || line[a] == '#') continue;
    std::string where = in->name() + ":" + std::to_string(lineno);
    std::string pid, gid;
    Record src;
    try {
      if (line[a] == '{') {
        src = parse_record(line, where);
        auto p = src.find("probe"), gg = src.find("gallery");
        if (p == src.end() || !p->is_string() || gg == src.end() || !gg->is_string())
          throw FormatError(where + ": a pair record needs string fields \"probe\" and \"gallery\"");
        pid = p->get<std::string>();
        gid = gg->get<std::string>();
      } else {
        std::size_t b = line.find_first_of(" \t,", a);
        std::size_t c = b == std::string::npos ? b : line.find_first_not_of(" \t,", b);
        if (c == std::string::npos) throw FormatError(where + ": expected two ids (probe gallery)");
        std::size_t d = line.find_first_of(" \t,", c);
        pid = line.substr(a, b - a);
        gid = line.substr(c, d == std::string::npos ? std::string::npos : d - c);
        src = Record::object();
      }
      auto pi = pidx.find(pid);
      if (pi == pidx.end()) throw FormatError(where + ": unknown probe id '" + pid + "'");
      auto gi = gidx.find(gid);
      if (gi == gidx.end()) throw FormatError(where + ": unknown gallery id '" + gid + "'");
      Record rec = src;
      rec["probe"] = pid;
      rec["gallery"] = gid;
      rec["score"] = jfloat(gs.score(probes.row(pi->second), gi->second));
      const std::string& ps = probes.subjects[pi->second];
      const std::string& gsub = g.subjects[gi->second];
      if (!ps.empty() && !gsub.empty()) rec["mated"] = ps == gsub;
      rec["probe_subject"] = subject_or_null(ps);
      rec["gallery_subject"] = subject_or_null(gsub);
      w.write(rec);
    } catch (const FormatError& e) {
      if (!o.keep_going) throw;
      ++failed;
      log::error(e.what());
      Record rec = src.is_object() ? src : Record::object();
      if (!pid.empty()) rec["probe"] = pid;
      if (!gid.empty()) rec["gallery"] = gid;
      w.write(error_record(rec, e.what(), where));
    }
  }
  if (w.count() == 0) throw Error(in->name() + ": no pairs");
  w.flush();
  if (failed) log::warn(std::to_string(failed) + " of " + std::to_string(w.count()) + " pairs failed");
  return failed ? kExitPartial : kExitOk;
}

// Selects a protocol fold's gallery and probes from one embedding set of the
// whole database, by path; the lists' subjects label the rows.
std::pair<EmbeddingSet, EmbeddingSet> protocol_sets(const Options& o, std::uint64_t& missing) {
  auto proto = protocols::read_protocol(o.protocol, o.protocol_dir, o.fold);
  if (proto.folds.size() != 1) throw Error(o.protocol + ": fold " + std::to_string(o.fold) + " not found");
  const protocols::Fold& fold = proto.folds[0];
  std::uint64_t skipped = 0;
  EmbeddingSet all = read_embeddings(o.gallery, o.read, &skipped);
  if (skipped) log::warn(all.source + ": skipped " + std::to_string(skipped) + " records with an \"error\" field");
  protocols::PathIndex index(o.ignore_extension);
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (i >= all.paths.size() || all.paths[i].empty())
      throw FormatError(all.source + ": row " + std::to_string(all.origin[i]) + " (id " + all.ids[i] + ") has no \"" + o.read.path_field +
                        "\" field, so protocol lists cannot name it");
    index.add(all.paths[i], static_cast<std::int64_t>(i));
  }
  auto pick = [&](const std::vector<protocols::Entry>& entries, const char* role) {
    std::vector<std::size_t> rows;
    std::vector<std::string> subjects;
    for (const auto& e : entries) {
      std::int64_t r = index.lookup(e.path);
      if (r < 0) {
        std::string msg = e.origin + ": " + role + " " + e.path + " has no embedding in " + all.source;
        if (!o.keep_going) throw FormatError(msg + " (--keep-going leaves such entries out)");
        log::warn(msg);
        ++missing;
        continue;
      }
      rows.push_back(static_cast<std::size_t>(r));
      subjects.push_back(e.subject);
    }
    EmbeddingSet s = all.subset(rows);
    s.subjects = std::move(subjects);
    if (s.size() == 0) throw Error(proto.name + " fold " + std::to_string(o.fold) + ": no " + role + " entry has an embedding");
    return s;
  };
  EmbeddingSet g = pick(fold.gallery, "gallery");
  EmbeddingSet p = pick(fold.probes, "probe");
  log::info(proto.name + " fold " + std::to_string(o.fold) + ": " + std::to_string(g.size()) + " gallery, " + std::to_string(p.size()) + " probes");
  if (o.gallery_templates) g = make_templates(g);
  if (o.probe_templates) p = make_templates(p);
  return {std::move(g), std::move(p)};
}

}  // namespace

int run(const Options& o) {
  if ((o.gallery == "-") + (o.probes == "-") + (o.pairs_file == "-") > 1)
    throw UsageError("only one of GALLERY, PROBES and --pairs can be - (stdin)");
  if (o.save_index == "-" && o.output == "-" && !o.probes.empty())
    throw UsageError("--save-index - and the results would both go to stdout; give one of them a file");
  if (o.mode == Mode::pairs && o.pairs_file.empty()) throw UsageError("pairs mode needs --pairs FILE");
  if (o.top == 0) throw UsageError("--top must be at least 1");
  bool approximate = o.index_type != "exact";
  bool loaded_index = search::is_index_file(o.gallery);
  if ((approximate || loaded_index) && o.mode != Mode::top)
    throw UsageError("vector indexes answer top-k searches only; use --index exact for pairs and score matrices");
  if (loaded_index && o.gallery_templates) throw UsageError("--gallery-templates cannot change a saved index; build the index from templates");
  if (!o.save_index.empty() && !approximate && !loaded_index) throw UsageError("--save-index needs --index flat, ivf or hnsw");

  // Gallery side: an exact searcher or a vector index.
  std::unique_ptr<search::ExactSearch> exact;
  std::unique_ptr<search::VectorIndex> vindex;
  std::uint64_t missing = 0;
  bool protocol = !o.protocol.empty();
  EmbeddingSet protocol_probes;
  if (protocol) {
    if (loaded_index || o.mode == Mode::pairs) throw UsageError("--protocol selects a gallery and probes from one embedding set: no index file or --pairs");
    if (!o.probes.empty()) throw UsageError("with --protocol give one embedding set of the whole database, not GALLERY PROBES");
    auto sets = protocol_sets(o, missing);
    protocol_probes = std::move(sets.second);
    if (approximate) {
      search::IndexOptions io = o.index;
      io.type = o.index_type;
      vindex = std::make_unique<search::VectorIndex>(sets.first, o.metric, io, o.threads);
    } else {
      exact = std::make_unique<search::ExactSearch>(std::move(sets.first), o.metric, o.threads);
    }
  } else if (loaded_index) {
    vindex = search::VectorIndex::load(o.gallery, o.index, o.threads);
    if (vindex->metric() != o.metric) log::info(o.gallery + ": using the index's metric, " + search::metric_name(vindex->metric()));
  } else {
    EmbeddingSet g = load_set(o.gallery, o.read, o.gallery_templates, "gallery");
    if (approximate) {
      search::IndexOptions io = o.index;
      io.type = o.index_type;
      vindex = std::make_unique<search::VectorIndex>(g, o.metric, io, o.threads);
    } else {
      exact = std::make_unique<search::ExactSearch>(std::move(g), o.metric, o.threads);
    }
  }
  if (vindex && !o.save_index.empty()) {
    vindex->save(o.save_index, o.provenance);
    log::info("index written to " + o.save_index);
  }
  if (o.probes.empty() && !protocol) {
    if (!o.save_index.empty()) return kExitOk;
    throw UsageError("missing PROBES");
  }

  if (o.mode == Mode::pairs) {
    EmbeddingSet probes = load_set(o.probes, o.read, o.probe_templates, "probe");
    auto out = io::open_output(o.output);
    int rc = run_pairs(o, *exact, probes, *out);
    out->commit();
    return rc;
  }

  const std::vector<std::string>& gids = exact ? exact->gallery().ids : vindex->ids();
  const std::vector<std::string>& gsub = exact ? exact->gallery().subjects : vindex->subjects();
  std::size_t gn = gids.size();

  // Probes: streamed in blocks (or read whole when templates are wanted).
  std::unique_ptr<EmbeddingReader> reader;
  EmbeddingSet all_probes;
  bool whole = o.probe_templates || protocol;
  if (protocol) all_probes = std::move(protocol_probes);
  else if (whole) all_probes = load_set(o.probes, o.read, true, "probe");
  else reader = std::make_unique<EmbeddingReader>(o.probes, o.read);
  auto next_block = [&](EmbeddingSet& b) {
    if (!whole) return reader->next(b, o.batch);
    if (all_probes.size() == 0) return false;
    b = std::move(all_probes);
    all_probes = EmbeddingSet();
    return true;
  };

  Progress progress("probes", 0, "probes");
  EmbeddingSet block;
  std::uint64_t nprobes = 0;
  if (o.mode == Mode::matrix) {
    auto out = io::open_output(o.output, {io::Content::binary, o.force});
    TensorWriter tw(*out);
    json meta = {{"kind", "score-matrix"}, {"metric", search::metric_name(o.metric)}, {"gallery_ids", gids}, {"gallery_subjects", gsub}};
    if (!o.provenance.empty()) meta["provenance"] = json::parse(o.provenance);
    tw.set_metadata(meta);
    tw.begin("scores", DType::f32, {static_cast<std::int64_t>(gn)});
    std::vector<std::string> pids, psub;
    std::vector<float> tile;
    while (next_block(block)) {
      tile.resize(block.size() * gn);
      exact->score_matrix(block, tile.data());
      tw.append("scores", tile.data(), static_cast<std::int64_t>(block.size()));
      pids.insert(pids.end(), block.ids.begin(), block.ids.end());
      psub.insert(psub.end(), block.subjects.begin(), block.subjects.end());
      nprobes += block.size();
      progress.add(block.size());
    }
    if (nprobes == 0) throw Error((reader ? reader->name() : o.probes) + ": the probe set is empty");
    tw.set_metadata({{"probe_ids", pids}, {"probe_subjects", psub}});
    tw.close();
    out->commit();
    progress.finish();
    return missing ? kExitPartial : kExitOk;
  }

  auto out = io::open_output(o.output);
  RecordWriter w(*out);
  while (next_block(block)) {
    bool mates = false;
    for (const auto& s : block.subjects) mates |= !s.empty();
    auto res = exact ? exact->top_k(block, o.top, mates) : vindex->top_k(block, o.top, mates);
    for (std::size_t i = 0; i < block.size(); ++i) w.write(top_record(block, i, res[i], gids, gsub));
    nprobes += block.size();
    progress.add(block.size());
  }
  if (nprobes == 0) throw Error((reader ? reader->name() : o.probes) + ": the probe set is empty");
  if (reader && reader->skipped()) log::warn(reader->name() + ": skipped " + std::to_string(reader->skipped()) + " records with an \"error\" field");
  w.flush();
  out->commit();
  progress.finish();
  return missing ? kExitPartial : kExitOk;
}

}  // namespace hfr::match
