#include "hfr/protocols.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <functional>
#include <set>

#include "hfr/error.hpp"
#include "hfr/io.hpp"

namespace hfr::protocols {

namespace fs = std::filesystem;

std::string normalise_path(std::string_view path) {
  std::string out;
  out.reserve(path.size());
  std::size_t i = 0;
  while (i <= path.size()) {
    std::size_t j = i;
    while (j < path.size() && path[j] != '/' && path[j] != '\\') ++j;
    std::string_view c = path.substr(i, j - i);
    if (!c.empty() && c != ".") {
      if (!out.empty()) out.push_back('/');
      out.append(c);
    }
    i = j + 1;
  }
  return out;
}

namespace {

std::string lower(std::string_view s) {
  std::string r;
  for (char c : s) r.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  return r;
}

std::vector<std::string_view> components(std::string_view norm) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < norm.size()) {
    std::size_t j = norm.find('/', i);
    if (j == std::string_view::npos) j = norm.size();
    out.push_back(norm.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

[[noreturn]] void fail(const std::string& origin, const std::string& why) { throw FormatError(origin + ": " + why); }

// ---- one list file ----

struct Line {
  std::string_view field[3];  // the first three fields
  std::size_t count = 0;      // how many fields the line has
  std::uint64_t number = 0;
  std::string origin;         // "file:line", filled in for lines that become entries
};

enum class Split { blanks, blanks_or_comma };

// Reads the content lines of a list file (blank and '#' lines skipped).
std::vector<Line> read_lines(const std::string& path, const std::string& text, Split split) {
  std::vector<Line> out;
  std::size_t pos = 0;
  std::uint64_t number = 0;
  if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) pos = 3;  // byte-order mark (lists made on Windows)
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string_view line(text.data() + pos, nl - pos);
    pos = nl + 1;
    ++number;
    Line l;
    l.number = number;
    std::size_t i = 0;
    auto sep = [&](char c) {
      return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' || (split == Split::blanks_or_comma && c == ',');
    };
    while (i < line.size()) {
      while (i < line.size() && sep(line[i])) ++i;
      if (i == line.size()) break;
      std::size_t b = i;
      while (i < line.size() && !sep(line[i])) ++i;
      if (l.count < 3) l.field[l.count] = line.substr(b, i - b);
      ++l.count;
    }
    if (l.count == 0 || l.field[0][0] == '#') continue;
    if (line.find('\0') != std::string_view::npos)
      fail(path + ":" + std::to_string(number), "NUL byte in a list file (not a text list?)");
    out.push_back(l);
  }
  return out;
}

std::string read_text(const std::string& path) {
  auto bytes = io::read_file(path, 1ull << 30);
  return std::string(bytes.begin(), bytes.end());
}

// The first existing regular file among dir/name for the candidate dirs and
// names; hfr::Error listing where it looked otherwise.
std::string locate(const std::string& protocol, const std::string& what, const std::vector<std::string>& dirs,
                   const std::vector<std::string>& names) {
  for (const auto& n : names)
    for (const auto& d : dirs) {
      fs::path p = fs::path(d) / n;
      std::error_code ec;
      if (fs::is_regular_file(p, ec)) return p.string();
    }
  std::string looked;
  for (std::size_t i = 0; i < dirs.size(); ++i) looked += (i ? ", " : "") + dirs[i];
  std::string files;
  for (std::size_t i = 0; i < names.size(); ++i) files += (i ? " or " : "") + names[i];
  throw Error(protocol + ": " + what + " list " + files + " not found (looked in " + looked + ")");
}

// How one protocol turns a list line into an entry.
using EntryMaker = std::function<Entry(const Line&, const std::string& modality)>;

std::vector<Entry> read_list(const std::string& path, const std::string& modality, Split split, bool header,
                             const EntryMaker& make) {
  std::string text = read_text(path);
  auto lines = read_lines(path, text, split);
  // LAMP-HQ lists start with a header line. Its wording is not known here, so
  // the first line is taken as a header exactly when it does not look like an
  // entry (its first field has no '/', '\' or '.').
  std::size_t first = 0;
  if (header && !lines.empty() && lines[0].field[0].find_first_of("/\\.") == std::string_view::npos) first = 1;
  std::vector<Entry> out;
  out.reserve(lines.size());
  std::unordered_map<std::string_view, std::size_t> seen;  // path -> index in out (paths live in `out`)
  seen.reserve(lines.size());
  for (std::size_t i = first; i < lines.size(); ++i) {
    Line& l = lines[i];
    l.origin = path + ":" + std::to_string(l.number);
    if (l.count > 2) fail(l.origin, "expected 'path' or 'path label', found " + std::to_string(l.count) + " fields");
    Entry e = make(l, modality);
    e.modality = modality;
    e.origin = std::move(l.origin);
    if (e.subject.empty()) fail(e.origin, "empty subject for '" + e.path + "'");
    out.push_back(std::move(e));
  }
  // After the vector is complete, so that the views stay valid.
  for (std::size_t i = 0; i < out.size(); ++i) {
    auto [it, fresh] = seen.emplace(out[i].path, i);
    if (!fresh) fail(out[i].origin, "duplicate entry '" + out[i].path + "' (also at " + out[it->second].origin + ")");
  }
  if (out.empty()) throw FormatError(path + ": list has no entries");
  return out;
}

// An entry may play one role in a fold.
void check_roles(const Fold& f) {
  std::unordered_map<std::string_view, const Entry*> seen;
  seen.reserve(f.gallery.size() + f.probes.size() + f.train.size());
  for (const auto* list : {&f.gallery, &f.probes, &f.train})
    for (const Entry& e : *list) {
      auto [it, fresh] = seen.emplace(e.path, &e);
      if (!fresh) fail(e.origin, "entry '" + e.path + "' is also listed at " + it->second->origin);
    }
}

// ---- CASIA NIR-VIS 2.0 ----
// Confirmed: file names (Idiap's bob.db.cbsr_nir_vis_2 create.py; insightface
// recognition/idmmd/evaluate/eval_casia_112.py; LightCNN-based evaluations),
// one Windows path per line ("s2\VIS\10117\001.jpg": session, modality,
// subject, image), subject = folder after VIS/NIR (bob takes component 2,
// insightface the parent folder: the same thing for these paths). Some tools
// read the first whitespace field only, so a second field is tolerated.
Entry casia_entry(const Line& l, const std::string& modality) {
  Entry e;
  e.path = normalise_path(l.field[0]);
  auto c = components(e.path);
  for (std::size_t i = 0; i < c.size(); ++i) {
    std::string m = lower(c[i]);
    bool vis = m == "vis" || m.rfind("vis_", 0) == 0;  // also cropped copies such as VIS_128x128
    bool nir = m == "nir" || m.rfind("nir_", 0) == 0;
    if (!vis && !nir) continue;
    if (i + 2 >= c.size()) fail(l.origin, "no subject folder after " + std::string(c[i]) + " in '" + e.path + "'");
    if ((vis ? "VIS" : "NIR") != modality)
      fail(l.origin, "'" + e.path + "' is a " + (vis ? "VIS" : "NIR") + " image in a " + modality + " list");
    e.subject = std::string(c[i + 1]);
    return e;
  }
  fail(l.origin, "no VIS or NIR folder in '" + e.path + "' (expected e.g. s2\\VIS\\10117\\001.jpg)");
}

// ---- LAMP-HQ ----
// Confirmed: file names and layout Protocols/test/{gallery_visN,probe_nirN}.txt
// and Protocols/train/{train_visN,train_nirN}.txt (Hu & Hu's DFD repository
// README); test lists have one header line and then `path label` columns
// (insightface eval_lamp_112.py reads them with skip_header=1, usecols=(0,1)).
// Designed: the header's wording and the path layout are not public, so the
// label is taken as the subject and, for a line without one, the parent folder.
// A `path [label]` line: the label is the subject; without one, the first
// path component (first_component) or the parent folder.
Entry label_or_folder(const Line& l, bool first_component, const std::string& missing, const std::string& hint = "") {
  Entry e;
  e.path = normalise_path(l.field[0]);
  if (l.count == 2) {
    e.subject = std::string(l.field[1]);
    return e;
  }
  auto c = components(e.path);
  if (c.size() < 2) fail(l.origin, missing + " in '" + e.path + "'" + hint);
  e.subject = std::string(first_component ? c[0] : c[c.size() - 2]);
  return e;
}

Entry lamp_entry(const Line& l, const std::string&) {
  return label_or_folder(l, false, "no label and no folder to take the subject from");
}

// ---- Oulu-CASIA NIR-VIS ----
// Confirmed: insightface eval_oulu_112.py reads vis_test_paths.csv /
// nir_test_paths.csv, lines "path,P###" (subject = number after 'P'), or
// test_vis_paths.txt / test_nir_paths.txt with "path label" (integer label).
// Designed: the training list names (same patterns with "train"), and reading
// the subject from a P### path component or file-name token when a line has no
// label (Oulu-CASIA file names such as NI_Strong_P001_Disgust_001.jpeg).
std::string oulu_subject(std::string_view s) {
  if (!s.empty() && (s[0] == 'P' || s[0] == 'p')) s.remove_prefix(1);
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) return {};
  while (s.size() > 1 && s[0] == '0') s.remove_prefix(1);
  std::string n(s);
  if (n.size() < 3) n.insert(0, 3 - n.size(), '0');
  return "P" + n;
}

Entry oulu_entry(const Line& l, const std::string&) {
  Entry e;
  e.path = normalise_path(l.field[0]);
  if (l.count == 2) {
    e.subject = oulu_subject(l.field[1]);
    if (e.subject.empty()) fail(l.origin, "label '" + std::string(l.field[1]) + "' is not P### or a number");
    return e;
  }
  auto c = components(e.path);
  for (auto it = c.rbegin(); it != c.rend(); ++it) {
    std::string_view comp = *it;
    std::size_t i = 0;
    while (i <= comp.size()) {  // tokens split on '_' and '.'
      std::size_t j = comp.find_first_of("_.", i);
      if (j == std::string_view::npos) j = comp.size();
      std::string_view tok = comp.substr(i, j - i);
      if (tok.size() >= 2 && (tok[0] == 'P' || tok[0] == 'p')) {
        std::string s = oulu_subject(tok);
        if (!s.empty()) {
          e.subject = s;
          return e;
        }
      }
      i = j + 1;
    }
  }
  fail(l.origin, "no label and no P### subject in '" + e.path + "'");
}

// ---- BUAA-VisNir ----
// Confirmed: insightface eval_buaa_112.py reads test_vis_paths.txt and
// test_nir_paths.txt, one path per line, subject = first path component.
// Designed: training list names (same pattern with "train"), and an optional
// label column (preferred when present).
Entry buaa_entry(const Line& l, const std::string&) {
  return label_or_folder(l, true, "no subject folder", " (expected e.g. 12/3.bmp)");
}

struct Spec {
  const char* name;
  int folds;
  std::vector<const char*> aliases;
};

const std::vector<Spec>& specs() {
  static const std::vector<Spec> s = {
      {"casia-nir-vis-2.0", 10, {"casia-nir-vis-2", "casia-nir-vis", "casia", "cbsr-nir-vis-2", "nir-vis-2.0"}},
      {"lamp-hq", 10, {"lamp", "lamphq"}},
      {"oulu-casia-nir-vis", 1, {"oulu-casia", "oulu", "oulu-casia-nirvis"}},
      {"buaa-visnir", 1, {"buaa", "buaa-vis-nir", "buaa-nirvis"}},
  };
  return s;
}

}  // namespace

std::vector<std::string> known_protocols() {
  std::vector<std::string> out;
  for (const auto& s : specs()) out.emplace_back(s.name);
  return out;
}

std::string canonical_name(const std::string& name) {
  std::string n = lower(name);
  std::replace(n.begin(), n.end(), '_', '-');
  for (const auto& s : specs()) {
    if (n == s.name) return s.name;
    for (const char* a : s.aliases)
      if (n == a) return s.name;
  }
  std::string known;
  for (const auto& s : specs()) known += (known.empty() ? "" : ", ") + std::string(s.name);
  throw UsageError("unknown protocol '" + name + "' (known: " + known + ")");
}

int fold_count(const std::string& name) {
  std::string n = canonical_name(name);
  for (const auto& s : specs())
    if (n == s.name) return s.folds;
  return 0;
}

Protocol read_protocol(const std::string& name, const std::string& dir, int fold, Lists lists) {
  Protocol p;
  p.name = canonical_name(name);
  int nfolds = fold_count(p.name);
  if (fold < 0 || fold > nfolds)
    throw UsageError(p.name + " has " + (nfolds == 1 ? "one fold (1)" : "folds 1-" + std::to_string(nfolds)) +
                     ", not " + std::to_string(fold));
  if (!io::path_is_directory(dir)) throw Error(p.name + ": " + dir + ": not a directory");
  auto sub = [&](const char* s) { return (fs::path(dir) / s).string(); };

  for (int f = (fold ? fold : 1); f <= (fold ? fold : nfolds); ++f) {
    Fold out;
    out.number = f;
    std::string n = std::to_string(f);
    std::string what = nfolds > 1 ? p.name + " fold " + n : p.name;
    std::vector<std::string> test_dirs, train_dirs;
    std::vector<std::string> g, pr, tv, tn;  // candidate file names
    EntryMaker make;
    Split split = Split::blanks;
    bool header = false;
    if (p.name == "casia-nir-vis-2.0") {
      test_dirs = train_dirs = {dir, sub("protocols")};
      g = {"vis_gallery_" + n + ".txt"};
      pr = {"nir_probe_" + n + ".txt"};
      tv = {"vis_train_" + n + ".txt"};
      tn = {"nir_train_" + n + ".txt"};
      make = casia_entry;
    } else if (p.name == "lamp-hq") {
      test_dirs = {sub("Protocols/test"), sub("test"), dir};
      train_dirs = {sub("Protocols/train"), sub("train"), dir};
      g = {"gallery_vis" + n + ".txt"};
      pr = {"probe_nir" + n + ".txt"};
      tv = {"train_vis" + n + ".txt"};
      tn = {"train_nir" + n + ".txt"};
      make = lamp_entry;
      header = true;
    } else if (p.name == "oulu-casia-nir-vis") {
      test_dirs = train_dirs = {dir};
      g = {"vis_test_paths.csv", "test_vis_paths.txt"};
      pr = {"nir_test_paths.csv", "test_nir_paths.txt"};
      tv = {"vis_train_paths.csv", "train_vis_paths.txt"};
      tn = {"nir_train_paths.csv", "train_nir_paths.txt"};
      make = oulu_entry;
      split = Split::blanks_or_comma;
    } else {
      test_dirs = train_dirs = {dir};
      g = {"test_vis_paths.txt"};
      pr = {"test_nir_paths.txt"};
      tv = {"train_vis_paths.txt"};
      tn = {"train_nir_paths.txt"};
      make = buaa_entry;
    }
    out.gallery = read_list(locate(what, "gallery", test_dirs, g), "VIS", split, header, make);
    out.probes = read_list(locate(what, "probe", test_dirs, pr), "NIR", split, header, make);
    if (lists == Lists::all) {
      out.train = read_list(locate(what, "VIS training", train_dirs, tv), "VIS", split, header, make);
      auto nir = read_list(locate(what, "NIR training", train_dirs, tn), "NIR", split, header, make);
      out.train.insert(out.train.end(), std::make_move_iterator(nir.begin()), std::make_move_iterator(nir.end()));
    }
    check_roles(out);
    p.folds.push_back(std::move(out));
  }
  return p;
}

std::vector<std::string> unmated_probe_subjects(const Fold& fold) {
  std::set<std::string> gallery, out;
  for (const Entry& e : fold.gallery) gallery.insert(e.subject);
  for (const Entry& e : fold.probes)
    if (!gallery.count(e.subject)) out.insert(e.subject);
  return {out.begin(), out.end()};
}

// ---- PathIndex ----

std::string PathIndex::key(std::string_view path, std::vector<std::size_t>& starts) const {
  std::string k = normalise_path(path);
  if (ignore_extension_) {
    std::size_t slash = k.rfind('/');
    std::size_t base = slash == std::string::npos ? 0 : slash + 1;
    std::size_t dot = k.rfind('.');
    if (dot != std::string::npos && dot > base) k.resize(dot);
  }
  starts.clear();
  if (!k.empty()) starts.push_back(0);
  for (std::size_t i = 0; i < k.size(); ++i)
    if (k[i] == '/') starts.push_back(i + 1);
  return k;
}

void PathIndex::add(std::string_view path, std::int64_t row) {
  std::vector<std::size_t> starts;
  std::string k = key(path, starts);
  if (k.empty()) throw Error("path index: empty path");
  auto item = static_cast<std::int64_t>(paths_.size());
  {
    Slot& whole = slots_[k];
    if (whole.whole >= 0)
      throw Error("path index: '" + std::string(path) + "' is the same file as '" +
                  paths_[static_cast<std::size_t>(whole.whole)] + "'");
    whole.whole = item;
  }
  for (std::size_t s : starts) {
    Slot& slot = slots_[k.substr(s)];
    if (slot.any < 0) slot.any = item;
    else if (slot.other < 0) slot.other = item;
  }
  paths_.emplace_back(path);
  rows_.push_back(row);
}

std::int64_t PathIndex::lookup(std::string_view entry_path) const {
  std::vector<std::size_t> starts;
  std::string k = key(entry_path, starts);
  if (k.empty()) return -1;
  // The whole entry path as a suffix of items.
  auto it = slots_.find(k);
  if (it != slots_.end() && it->second.any >= 0) {
    if (it->second.other >= 0)
      throw Error("'" + std::string(entry_path) + "' matches both '" +
                  paths_[static_cast<std::size_t>(it->second.any)] + "' and '" +
                  paths_[static_cast<std::size_t>(it->second.other)] + "'");
    return rows_[static_cast<std::size_t>(it->second.any)];
  }
  // Else the longest item path that is a suffix of the entry path.
  for (std::size_t i = 1; i < starts.size(); ++i) {
    auto s = slots_.find(k.substr(starts[i]));
    if (s != slots_.end() && s->second.whole >= 0) return rows_[static_cast<std::size_t>(s->second.whole)];
  }
  return -1;
}

}  // namespace hfr::protocols
