// Readers for the list files of the standard NIR-VIS benchmarks, so that users
// who hold the (licence-restricted) databases can run their protocols, and an
// index that finds which embedded item a list entry names.
//
// Protocols and the files read (DIR is the directory given; each protocol
// also looks in the sub-directories named below):
//
//  casia-nir-vis-2.0  CASIA NIR-VIS 2.0, View 2, folds 1-10. DIR or DIR/protocols:
//                     vis_gallery_N.txt, nir_probe_N.txt (test), vis_train_N.txt,
//                     nir_train_N.txt (training). One path a line, Windows style
//                     (s2\VIS\10117\001.jpg); the subject is the folder after the
//                     VIS/NIR component. A second column (a label, as some tools
//                     write) is accepted and ignored.
//  lamp-hq            LAMP-HQ, folds 1-10. DIR, DIR/Protocols/{test,train} or
//                     DIR/{test,train}: gallery_visN.txt, probe_nirN.txt,
//                     train_visN.txt, train_nirN.txt. `path label` lines after
//                     one header line; the subject is the label (the parent folder
//                     when a line has no label).
//  oulu-casia-nir-vis Oulu-CASIA NIR-VIS, one split (20 test subjects). DIR:
//                     vis_test_paths.csv / nir_test_paths.csv (`path,P001`) or
//                     test_vis_paths.txt / test_nir_paths.txt (`path label`), and
//                     the same with train for training. Subjects P001 and 1 are
//                     the same; without a label the P### path component is used.
//  buaa-visnir        BUAA-VisNir, one split. DIR: test_vis_paths.txt,
//                     test_nir_paths.txt, train_vis_paths.txt, train_nir_paths.txt;
//                     one path a line (`12/3.bmp`), the subject its first
//                     component, or a `path label` line.
//
// What was confirmed and what was designed is noted at each reader in
// protocols.cpp. In every list: blank lines and '#' comment lines are skipped,
// CRLF and a UTF-8 byte-order mark are accepted, '\' and '/' both separate
// path components. Errors: a missing list file is hfr::Error naming it; a
// malformed line, a repeated entry within a list, or an entry in two roles of
// one fold is hfr::FormatError "FILE:LINE: why".
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace hfr::protocols {

struct Entry {
  std::string path;      // as listed, separators normalised to '/'
  std::string subject;   // subject id
  std::string modality;  // "VIS" or "NIR"
  std::string origin;    // "list-file-name:line", for messages
};

struct Fold {
  int number = 0;
  std::vector<Entry> gallery;  // VIS
  std::vector<Entry> probes;   // NIR
  std::vector<Entry> train;    // VIS then NIR; empty unless training lists were asked for
};

struct Protocol {
  std::string name;  // canonical name
  std::vector<Fold> folds;
};

enum class Lists {
  test,  // gallery and probe lists only (all that several public tools ship)
  all,   // training lists as well; then they are required too
};

// "casia-nir-vis-2.0", "lamp-hq", "oulu-casia-nir-vis", "buaa-visnir".
std::vector<std::string> known_protocols();
// Canonical name for a name or alias (case-insensitive; e.g. "casia",
// "cbsr_nir_vis_2", "lamp", "oulu", "buaa"); throws UsageError listing the
// known protocols.
std::string canonical_name(const std::string& name);
int fold_count(const std::string& name);

// Reads one fold (1..fold_count) or all (fold = 0).
Protocol read_protocol(const std::string& name, const std::string& dir, int fold = 0, Lists lists = Lists::test);

// Probe subjects of a fold with no gallery entry (sorted, distinct): empty for
// a closed-set protocol.
std::vector<std::string> unmated_probe_subjects(const Fold& fold);

// '\' -> '/', repeated '/' collapsed, "." components and a leading '/' dropped.
std::string normalise_path(std::string_view path);

// Finds the item (e.g. the row of an embedding record) whose path names the
// same file as a list entry. Paths are compared component by component from
// the end (case-sensitive, after normalise_path): an item matches when one
// path is a whole-component suffix of the other ("s2/VIS/10117/001.jpg" and
// "/data/NIR-VIS-2.0/s2/VIS/10117/001.jpg"), and the match sharing the most
// components wins. Two items tied for the best match is an error, as is adding
// the same path twice.
class PathIndex {
 public:
  // ignore_extension: compare file names without their extension (CASIA's
  // lists name .jpg files that are stored as .bmp).
  explicit PathIndex(bool ignore_extension = false) : ignore_extension_(ignore_extension) {}

  // Throws hfr::Error when the (normalised) path was added before.
  void add(std::string_view path, std::int64_t row);
  // The row, or -1 when nothing matches; hfr::Error on an ambiguous match.
  std::int64_t lookup(std::string_view entry_path) const;
  std::size_t size() const { return paths_.size(); }

 private:
  struct Slot {
    std::int64_t any = -1;     // an item whose last k components are this key
    std::int64_t other = -1;   // a second such item (ambiguity), if any
    std::int64_t whole = -1;   // an item whose whole path is this key
  };
  std::string key(std::string_view path, std::vector<std::size_t>& starts) const;
  bool ignore_extension_;
  std::unordered_map<std::string, Slot> slots_;  // key: last k components joined by '/'
  std::vector<std::string> paths_;               // by insertion, for messages
  std::vector<std::int64_t> rows_;
};

}  // namespace hfr::protocols
