#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "hfr/error.hpp"
#include "hfr/protocols.hpp"

using namespace hfr;
using namespace hfr::protocols;
namespace fs = std::filesystem;

namespace {

// A temporary directory removed at exit.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "hfr-protocols-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// The stand-in lists, written once by scripts/make-protocol-standins.py.
// Empty when python3 is missing (the tests that need them then say so).
const fs::path& standins() {
  static TempDir dir;
  static fs::path root = [] {
    fs::path out = dir.path / "standins";
    std::string cmd = "python3 '" HFR_SOURCE_DIR "/scripts/make-protocol-standins.py' '" + out.string() + "'";
    if (std::system(cmd.c_str()) != 0) return fs::path();
    return out;
  }();
  return root;
}

const nlohmann::json& manifest() {
  static nlohmann::json m = [] {
    std::ifstream f(standins() / "standins.json");
    return nlohmann::json::parse(f);
  }();
  return m;
}

#define REQUIRE_STANDINS()                                                     \
  if (standins().empty()) {                                                    \
    WARN("python3 scripts/make-protocol-standins.py failed; skipping");        \
    return;                                                                    \
  }

std::set<std::string> subjects(const std::vector<Entry>& list) {
  std::set<std::string> s;
  for (const auto& e : list) s.insert(e.subject);
  return s;
}

bool all_modality(const std::vector<Entry>& list, const std::string& m) {
  for (const auto& e : list)
    if (e.modality != m) return false;
  return true;
}

void write_file(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary);
  f << text;
}

std::string error_of(const std::string& name, const fs::path& dir, int fold = 1, Lists lists = Lists::test) {
  try {
    read_protocol(name, dir.string(), fold, lists);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Checks every fold against the counts the stand-in script recorded.
void check_against_manifest(const Protocol& p) {
  const auto& m = manifest()[p.name];
  for (const Fold& f : p.folds) {
    INFO(p.name << " fold " << f.number);
    const auto& c = m[std::to_string(f.number)];
    CHECK(f.gallery.size() == c["gallery"].get<std::size_t>());
    CHECK(f.probes.size() == c["probes"].get<std::size_t>());
    CHECK(f.train.size() == c["train_vis"].get<std::size_t>() + c["train_nir"].get<std::size_t>());
    CHECK(subjects(f.gallery).size() == c["test_subjects"].get<std::size_t>());
    CHECK(subjects(f.train).size() == c["train_subjects"].get<std::size_t>());
    CHECK(all_modality(f.gallery, "VIS"));
    CHECK(all_modality(f.probes, "NIR"));
    CHECK(unmated_probe_subjects(f).empty());
    // Training and test identities are disjoint.
    auto test = subjects(f.gallery);
    for (const auto& s : subjects(f.train)) CHECK(test.count(s) == 0);
  }
}

}  // namespace

TEST_CASE("protocols: names, aliases and fold counts", "[protocols]") {
  CHECK(known_protocols() ==
        std::vector<std::string>{"casia-nir-vis-2.0", "lamp-hq", "oulu-casia-nir-vis", "buaa-visnir"});
  CHECK(canonical_name("CASIA") == "casia-nir-vis-2.0");
  CHECK(canonical_name("cbsr_nir_vis_2") == "casia-nir-vis-2.0");
  CHECK(canonical_name("LAMP-HQ") == "lamp-hq");
  CHECK(canonical_name("oulu") == "oulu-casia-nir-vis");
  CHECK(canonical_name("buaa") == "buaa-visnir");
  CHECK_THROWS_AS(canonical_name("lfw"), UsageError);
  CHECK(fold_count("casia") == 10);
  CHECK(fold_count("lamp-hq") == 10);
  CHECK(fold_count("oulu") == 1);
  CHECK(fold_count("buaa") == 1);
}

TEST_CASE("protocols: CASIA NIR-VIS 2.0 stand-in, fold 1", "[protocols]") {
  REQUIRE_STANDINS();
  auto root = standins() / "casia-nir-vis-2.0";
  // The database root (with protocols/) and the protocols directory both work.
  for (const auto& dir : {root, root / "protocols"}) {
    auto p = read_protocol("casia-nir-vis-2.0", dir.string(), 1);
    CHECK(p.name == "casia-nir-vis-2.0");
    REQUIRE(p.folds.size() == 1);
    const Fold& f = p.folds[0];
    CHECK(f.number == 1);
    CHECK(f.gallery.size() == 358);
    CHECK(f.probes.size() == 6208);
    CHECK(f.train.empty());
    // One VIS gallery image per subject, every probe subject has its mate.
    CHECK(subjects(f.gallery).size() == 358);
    CHECK(unmated_probe_subjects(f).empty());
    CHECK(all_modality(f.gallery, "VIS"));
    CHECK(all_modality(f.probes, "NIR"));
    // Windows paths normalised; the subject is the folder after NIR.
    CHECK(f.probes[0].path == "s1/NIR/00001/001.bmp");
    CHECK(f.probes[0].subject == "00001");
    CHECK(f.gallery[0].path == "s1/VIS/00001/001.jpg");
    CHECK(f.probes[0].origin == (root / "protocols" / "nir_probe_1.txt").string() + ":1");
  }
}

TEST_CASE("protocols: every stand-in fold of every protocol with training lists", "[protocols]") {
  REQUIRE_STANDINS();
  for (const char* name : {"casia-nir-vis-2.0", "lamp-hq", "oulu-casia-nir-vis", "buaa-visnir"}) {
    auto p = read_protocol(name, (standins() / name).string(), 0, Lists::all);
    CHECK(p.folds.size() == static_cast<std::size_t>(fold_count(name)));
    check_against_manifest(p);
  }
}

TEST_CASE("protocols: LAMP-HQ, Oulu-CASIA and BUAA stand-ins", "[protocols]") {
  REQUIRE_STANDINS();
  {
    auto p = read_protocol("lamp-hq", (standins() / "lamp-hq").string(), 1);
    const Fold& f = p.folds[0];
    CHECK(f.gallery.size() == 273);
    CHECK(f.probes.size() == 27263);
    CHECK(f.gallery[0].path.find("VIS/") == 0);
    CHECK(f.gallery[0].subject == std::to_string(std::stoi(f.gallery[0].path.substr(4, 4))));  // label column
    CHECK(unmated_probe_subjects(f).empty());
    // The Protocols directory itself.
    auto q = read_protocol("lamp", (standins() / "lamp-hq" / "Protocols").string(), 3);
    CHECK(q.folds[0].number == 3);
  }
  {
    auto p = read_protocol("oulu", (standins() / "oulu-casia-nir-vis").string(), 0, Lists::all);
    const Fold& f = p.folds[0];
    CHECK(f.gallery.size() == 960);  // 20 subjects x 6 expressions x 8 images
    CHECK(f.probes.size() == 960);
    CHECK(subjects(f.gallery).size() == 20);
    for (const auto& s : subjects(f.gallery)) CHECK((s.size() == 4 && s[0] == 'P'));
    // The training list's integer labels name subjects the same way as P###.
    CHECK(f.train[0].path.find("P" + f.train[0].subject.substr(1)) != std::string::npos);
    CHECK(unmated_probe_subjects(f).empty());
  }
  {
    auto p = read_protocol("buaa-visnir", (standins() / "buaa-visnir").string());
    const Fold& f = p.folds[0];
    CHECK(f.gallery.size() == 100);
    CHECK(f.probes.size() == 1284);
    CHECK(f.gallery[0].path == "51/1.bmp");
    CHECK(f.gallery[0].subject == "51");
    CHECK(unmated_probe_subjects(f).empty());
  }
}

TEST_CASE("protocols: list variants (slashes, labels, comments, BOM)", "[protocols]") {
  TempDir d;
  write_file(d.path / "vis_gallery_1.txt", "\xEF\xBB\xBF# gallery\ns1/VIS/00001/001.jpg 0\r\ns1\\VIS\\00002\\001.jpg\n\n");
  write_file(d.path / "nir_probe_1.txt", "s1\\\\NIR\\00001\\002.bmp\n./s1/NIR/00002/002.bmp 5\ns1/NIR_128x128/00003/001.bmp\n");
  auto p = read_protocol("casia", d.path.string(), 1);
  const Fold& f = p.folds[0];
  REQUIRE(f.gallery.size() == 2);
  REQUIRE(f.probes.size() == 3);
  CHECK(f.gallery[1].path == "s1/VIS/00002/001.jpg");
  CHECK(f.probes[0].path == "s1/NIR/00001/002.bmp");
  CHECK(f.probes[1].path == "s1/NIR/00002/002.bmp");
  CHECK(f.probes[1].subject == "00002");  // the label column is ignored for CASIA
  CHECK(f.probes[2].subject == "00003");
  CHECK(f.gallery[0].origin == (d.path / "vis_gallery_1.txt").string() + ":2");
  CHECK(unmated_probe_subjects(f) == std::vector<std::string>{"00003"});

  // LAMP without a header and without labels: the parent folder.
  TempDir l;
  write_file(l.path / "gallery_vis1.txt", "a/17/v.png\n");
  write_file(l.path / "probe_nir1.txt", "count\nb/17/n1.png\nb/18/n2.png 18\n");
  auto q = read_protocol("lamp-hq", l.path.string(), 1);
  REQUIRE(q.folds[0].gallery.size() == 1);
  CHECK(q.folds[0].gallery[0].subject == "17");
  REQUIRE(q.folds[0].probes.size() == 2);
  CHECK(q.folds[0].probes[1].subject == "18");

  // Oulu: txt lists with integer labels, and labels taken from file names.
  TempDir o;
  write_file(o.path / "test_vis_paths.txt", "VL/Strong/P001/Anger/000.jpeg 1\n");
  write_file(o.path / "test_nir_paths.txt", "NI_Strong_P001_Disgust_001.jpeg\nNI/Strong/P012/Fear/003.jpeg\n");
  auto u = read_protocol("oulu", o.path.string());
  CHECK(u.folds[0].gallery[0].subject == "P001");
  CHECK(u.folds[0].probes[0].subject == "P001");
  CHECK(u.folds[0].probes[1].subject == "P012");
}

TEST_CASE("protocols: errors name the file and line", "[protocols]") {
  TempDir d;
  auto dir = d.path;
  auto g = (dir / "vis_gallery_1.txt").string();
  auto pr = (dir / "nir_probe_1.txt").string();
  write_file(g, "s1\\VIS\\00001\\001.jpg\n");

  // Missing lists.
  CHECK_THAT(error_of("casia", dir),
             Catch::Equals("casia-nir-vis-2.0 fold 1: probe list nir_probe_1.txt not found (looked in " +
                           dir.string() + ", " + (dir / "protocols").string() + ")"));
  write_file(pr, "s1\\NIR\\00001\\001.bmp\n");
  CHECK(error_of("casia", dir) == "(no error)");
  CHECK_THAT(error_of("casia", dir, 1, Lists::all), Catch::Contains("VIS training list vis_train_1.txt not found"));
  CHECK_THAT(error_of("casia", dir, 2), Catch::Contains("gallery list vis_gallery_2.txt not found"));
  CHECK_THAT(error_of("casia", dir / "nope"), Catch::Contains("not a directory"));
  CHECK_THROWS_AS(read_protocol("casia", dir.string(), 11), UsageError);
  CHECK_THROWS_WITH(read_protocol("buaa", dir.string(), 2), "buaa-visnir has one fold (1), not 2");

  // Malformed lines.
  write_file(pr, "s1\\NIR\\00001\\001.bmp\ns1\\NIR\\00001\\002.bmp 1 extra\n");
  CHECK_THAT(error_of("casia", dir), Catch::Equals(pr + ":2: expected 'path' or 'path label', found 3 fields"));
  write_file(pr, "# c\ns1\\NIR\\00001\\001.bmp\ns1\\00001\\002.bmp\n");
  CHECK_THAT(error_of("casia", dir), Catch::StartsWith(pr + ":3: no VIS or NIR folder in 's1/00001/002.bmp'"));
  write_file(pr, "s1\\NIR\\001.bmp\n");
  CHECK_THAT(error_of("casia", dir), Catch::Equals(pr + ":1: no subject folder after NIR in 's1/NIR/001.bmp'"));
  write_file(pr, "s1\\VIS\\00001\\002.jpg\n");
  CHECK_THAT(error_of("casia", dir),
             Catch::Equals(pr + ":1: 's1/VIS/00001/002.jpg' is a VIS image in a NIR list"));
  write_file(pr, "# only a comment\n\n");
  CHECK_THAT(error_of("casia", dir), Catch::Equals(pr + ": list has no entries"));

  // Duplicates: within a list (after normalisation) and across roles.
  write_file(pr, "s1\\NIR\\00001\\001.bmp\ns1\\NIR\\00001\\002.bmp\ns1/NIR/00001/001.bmp\n");
  CHECK_THAT(error_of("casia", dir),
             Catch::Equals(pr + ":3: duplicate entry 's1/NIR/00001/001.bmp' (also at " + pr + ":1)"));
  write_file(dir / "nir_train_1.txt", "s1\\NIR\\00009\\001.bmp\n");
  write_file(dir / "vis_train_1.txt", "s1\\VIS\\00001\\001.jpg\n");
  write_file(pr, "s1\\NIR\\00001\\001.bmp\n");
  CHECK_THAT(error_of("casia", dir, 1, Lists::all),
             Catch::Equals((dir / "vis_train_1.txt").string() + ":1: entry 's1/VIS/00001/001.jpg' is also listed at " +
                           g + ":1"));

  // Other protocols' line checks.
  TempDir o;
  write_file(o.path / "vis_test_paths.csv", "VL/x.jpeg,Q7\n");
  write_file(o.path / "nir_test_paths.csv", "NI/x.jpeg,P7\n");
  CHECK_THAT(error_of("oulu", o.path),
             Catch::Equals((o.path / "vis_test_paths.csv").string() + ":1: label 'Q7' is not P### or a number"));
  TempDir b;
  write_file(b.path / "test_vis_paths.txt", "1.bmp\n");
  write_file(b.path / "test_nir_paths.txt", "1/2.bmp\n");
  CHECK_THAT(error_of("buaa", b.path),
             Catch::Equals((b.path / "test_vis_paths.txt").string() + ":1: no subject folder in '1.bmp' (expected e.g. 12/3.bmp)"));
}

TEST_CASE("protocols: PathIndex matches list entries to items by path suffix", "[protocols]") {
  PathIndex ix;
  ix.add("/data/NIR-VIS-2.0/s2/VIS/10117/001.jpg", 0);
  ix.add("/data/NIR-VIS-2.0/s2/NIR/10117/001.jpg", 1);
  ix.add("/data/NIR-VIS-2.0/s2/NIR/10118/001.jpg", 2);
  ix.add("crops/10119/005.png", 3);
  CHECK(ix.size() == 4);
  CHECK(ix.lookup("s2\\VIS\\10117\\001.jpg") == 0);
  CHECK(ix.lookup("s2/NIR/10117/001.jpg") == 1);
  CHECK(ix.lookup("NIR/10118/001.jpg") == 2);
  CHECK(ix.lookup("/data/NIR-VIS-2.0/s2/NIR/10118/001.jpg") == 2);
  // An item path that is a suffix of the entry.
  CHECK(ix.lookup("/other/root/crops/10119/005.png") == 3);
  // Whole components only, case-sensitive.
  CHECK(ix.lookup("s2/NIR/0117/001.jpg") == -1);
  CHECK(ix.lookup("2/NIR/10117/001.jpg") == -1);
  CHECK(ix.lookup("s2/nir/10117/001.jpg") == -1);
  CHECK(ix.lookup("s2/NIR/10117/001.bmp") == -1);
  CHECK(ix.lookup("") == -1);
  // Ambiguous: both NIR images and the VIS one end in 001.jpg.
  CHECK_THROWS_WITH(ix.lookup("001.jpg"), Catch::Contains("matches both"));
  CHECK_THROWS_WITH(ix.lookup("10117/001.jpg"), Catch::Contains("matches both"));
  // The same file twice.
  CHECK_THROWS_AS(ix.add("data//NIR-VIS-2.0/./s2/VIS/10117/001.jpg", 9), Error);
  // A different root is a different file.
  CHECK_NOTHROW(ix.add("/mnt/s2/VIS/10117/001.jpg", 4));
  CHECK_THROWS_WITH(ix.lookup("s2/VIS/10117/001.jpg"), Catch::Contains("matches both"));
  CHECK(ix.lookup("NIR-VIS-2.0/s2/VIS/10117/001.jpg") == 0);

  // Extensions ignored: CASIA lists name .jpg for files stored as .bmp.
  PathIndex noext(true);
  noext.add("root/s1/NIR/00001/001.bmp", 7);
  noext.add("root/s1/NIR/00001/v1.2.bmp", 8);
  CHECK(noext.lookup("s1\\NIR\\00001\\001.jpg") == 7);
  CHECK(noext.lookup("s1/NIR/00001/001") == 7);
  CHECK(noext.lookup("00001/v1.2.jpg") == 8);
  CHECK(noext.lookup("00001/v1.jpg") == -1);

  CHECK(normalise_path("\\a\\\\b/./c/") == "a/b/c");
  CHECK(normalise_path("./x") == "x");
  CHECK(normalise_path("../x") == "../x");
}
