#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <unistd.h>

#include "helpers.hpp"
#include "hfr/error.hpp"
#include "hfr/scorefile.hpp"

using namespace hfr;
using namespace hfr::scores;
using test::PipeInput;

namespace {

ScoreTable parse(const std::string& text, Format format = Format::automatic, Format* detected = nullptr,
                 std::size_t max_read = 1u << 20) {
  PipeInput in(test::bytes(text), max_read);
  ReadOptions o;
  o.format = format;
  return read_scores(in, o, detected);
}

// The message of the FormatError that parsing throws.
std::string error_of(const std::string& text, Format format = Format::automatic) {
  try {
    parse(text, format);
  } catch (const FormatError& e) {
    return e.what();
  }
  return "(no error)";
}

std::string write(const ScoreTable& t, Format f) {
  auto out = io::memory_output();
  write_scores(t, *out, f);
  return std::string(out->data().begin(), out->data().end());
}

std::string write_error(const ScoreTable& t, Format f) {
  try {
    write(t, f);
  } catch (const FormatError& e) {
    return e.what();
  }
  return "(no error)";
}

// Row i as "probe_id/probe_subject reference_id/reference_subject score mated".
std::string row(const ScoreTable& t, std::size_t i) {
  return t.probe_ids[t.probe[i]] + "/" + t.probe_subjects[t.probe[i]] + " " + t.reference_ids[t.reference[i]] + "/" +
         t.reference_subjects[t.reference[i]] + " " + format_score(t.score[i]) + " " + std::to_string(t.mated[i]);
}

void require_same(const ScoreTable& a, const ScoreTable& b) {
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(row(a, i) == row(b, i));
    // Bit-identical scores.
    CHECK(std::memcmp(&a.score[i], &b.score[i], sizeof(double)) == 0);
  }
}

}  // namespace

TEST_CASE("scorefile: four-column semantics (bob.measure)", "[scorefile]") {
  Format f;
  auto t = parse("alice alice probe1.png 0.9\nbob alice probe1.png 0.2\nalice bob probe2.png -1.5e-3\n",
                 Format::automatic, &f);
  CHECK(f == Format::four_column);
  REQUIRE(t.size() == 3);
  // reference = claimed id (id and subject), probe = test label with subject real_id
  CHECK(row(t, 0) == "probe1.png/alice alice/alice 0.9 1");
  CHECK(row(t, 1) == "probe1.png/alice bob/bob 0.2 0");
  CHECK(row(t, 2) == "probe2.png/bob alice/alice -0.0015 0");
  CHECK(t.probe_ids.size() == 2);
  CHECK(t.reference_ids.size() == 2);
  CHECK(t.count(kMated) == 1);
  CHECK(t.count(kNonMated) == 2);
  std::vector<double> g, i;
  t.split(g, i);
  CHECK(g == std::vector<double>{0.9});
  CHECK(i == std::vector<double>{0.2, -1.5e-3});
  CHECK(t.find_probe("probe2.png") == 1);
  CHECK(t.find_reference("carol") == -1);
}

TEST_CASE("scorefile: five-column semantics", "[scorefile]") {
  Format f;
  auto t = parse("s1 s1/model.hdf5 s1 p/1.png 3\ns1 s1/model.hdf5 s2 p/2.png +2.5\ns2 m2 s1 p/1.png 1e2\n",
                 Format::automatic, &f);
  CHECK(f == Format::five_column);
  REQUIRE(t.size() == 3);
  CHECK(row(t, 0) == "p/1.png/s1 s1/model.hdf5/s1 3 1");
  CHECK(row(t, 1) == "p/2.png/s2 s1/model.hdf5/s1 2.5 0");
  CHECK(row(t, 2) == "p/1.png/s1 m2/s2 100 0");
}

TEST_CASE("scorefile: comments, blank lines, CRLF, tabs, BOM, no final newline", "[scorefile]") {
  std::string text = "\xEF\xBB\xBF# a comment\r\n\r\n   \n  # indented comment\na\ta   x 1\r\n\n# mid\nb a x 2";
  for (std::size_t step : {1u, 3u, 7u, 1u << 20}) {  // odd read sizes split lines across blocks
    Format f;
    auto t = parse(text, Format::automatic, &f, step);
    CHECK(f == Format::four_column);
    REQUIRE(t.size() == 2);
    CHECK(row(t, 0) == "x/a a/a 1 1");
    CHECK(row(t, 1) == "x/a b/b 2 0");
  }
  // Empty and comment-only inputs give an empty table.
  Format f = Format::csv;
  CHECK(parse("", Format::automatic, &f).empty());
  CHECK(f == Format::automatic);
  CHECK(parse("# nothing\n\n").empty());
}

TEST_CASE("scorefile: format sniffing and explicit override", "[scorefile]") {
  CHECK(detect_format("a b c 1") == Format::four_column);
  CHECK(detect_format("a b c d 1.5e3") == Format::five_column);
  CHECK(detect_format("a,x b c 1") == Format::four_column);  // ids may hold commas
  CHECK(detect_format("a b c x") == Format::four_column);    // a bad score is reported by the reader
  CHECK(detect_format("probe,reference,score,mated") == Format::csv);
  CHECK(detect_format("\"probe\",reference,score") == Format::csv);
  CHECK(detect_format("probe_template_id,probe_subject_id,bio_ref_template_id,bio_ref_subject_id,score") ==
        Format::bob_csv);
  CHECK(detect_format("a,b,c") == Format::automatic);
  CHECK(detect_format("a b c") == Format::automatic);
  CHECK(detect_format("\"unterminated,score") == Format::automatic);

  // A 5-field line read as 4 columns when told so is an error.
  CHECK_THAT(error_of("a b c d 1\n", Format::four_column),
             Catch::Equals("<pipe>:1: found 5 columns, but the first line (line 1) has 4"));
  // A CSV file forced to 4 columns: one field per line.
  CHECK_THAT(error_of("probe,reference,score\n", Format::four_column),
             Catch::Equals("<pipe>:1: expected 4 or 5 columns, found 1"));
  // Forced bob-csv on a plain CSV header.
  CHECK_THAT(error_of("probe,reference,score\n", Format::bob_csv),
             Catch::Equals("<pipe>:1: bob CSV header has no 'probe_subject_id' column"));

  CHECK(parse_format("4col") == Format::four_column);
  CHECK(parse_format("5") == Format::five_column);
  CHECK(parse_format("BOB_CSV") == Format::bob_csv);
  CHECK(parse_format("auto") == Format::automatic);
  CHECK(std::string(format_name(Format::csv)) == "csv");
  CHECK_THROWS_AS(parse_format("xml"), UsageError);
}

TEST_CASE("scorefile: bob.bio.base CSV", "[scorefile]") {
  std::string text =
      "probe_template_id,probe_subject_id,probe_key,probe_attack_type,bio_ref_template_id,bio_ref_subject_id,score\n"
      "t1,s1,\"s1/img,1.png\",,r1,s1,0.5\n"
      "t1,s1,\"s1/img,1.png\",,r2,s2,-0.25\n"
      "t2,s2,s2/img.png,,r1,s1,7\n";
  Format f;
  auto t = parse(text, Format::automatic, &f);
  CHECK(f == Format::bob_csv);
  REQUIRE(t.size() == 3);
  // probe id from probe_key (as bob.bio.base's loader), reference id from bio_ref_template_id
  CHECK(row(t, 0) == "s1/img,1.png/s1 r1/s1 0.5 1");
  CHECK(row(t, 1) == "s1/img,1.png/s1 r2/s2 -0.25 0");
  CHECK(row(t, 2) == "s2/img.png/s2 r1/s1 7 0");

  // Without probe_key the template id names the probe; without a reference id
  // column the reference is named by its subject.
  auto u = parse("probe_template_id,probe_subject_id,bio_ref_subject_id,score\np,a,a,1\np,a,b,2\n");
  REQUIRE(u.size() == 2);
  CHECK(row(u, 0) == "p/a a/a 1 1");
  CHECK(row(u, 1) == "p/a b/b 2 0");
  CHECK_THAT(error_of("probe_subject_id,bio_ref_subject_id,score\na,a,1\n"),
             Catch::Contains("<pipe>:1: bob CSV header has no probe id column"));
}

TEST_CASE("scorefile: plain CSV with RFC 4180 quoting", "[scorefile]") {
  std::string text =
      "# made by a test\n"
      "extra,probe,reference,score,mated\r\n"
      "x,\"a,b\",r1,1.25,1\r\n"
      "y,\"say \"\"hi\"\"\",r1,2,false\r\n"
      "\r\n"
      "z,\"multi\nline\",r2,3,\r\n"
      "w,p4,\"\",4,TRUE\r\n";
  Format f;
  CHECK_THAT(error_of(text), Catch::Equals("<pipe>:8: empty reference id"));
  text.erase(text.rfind("w,p4"));
  auto t = parse(text, Format::automatic, &f, 3);
  CHECK(f == Format::csv);
  REQUIRE(t.size() == 3);
  CHECK(row(t, 0) == "a,b/ r1/ 1.25 1");
  CHECK(row(t, 1) == "say \"hi\"/ r1/ 2 0");
  CHECK(row(t, 2) == "multi\nline/ r2/ 3 -1");

  // Subjects: mated derived when there is no mated column.
  auto u = parse("probe,reference,score,probe_subject,reference_subject\np1,r1,1,a,a\np1,r2,2,a,b\np2,r1,3,,a\n");
  REQUIRE(u.size() == 3);
  CHECK(row(u, 0) == "p1/a r1/a 1 1");
  CHECK(row(u, 1) == "p1/a r2/b 2 0");
  CHECK(row(u, 2) == "p2/ r1/a 3 -1");
}

TEST_CASE("scorefile: every error names the input and line", "[scorefile]") {
  std::string ok = "a a x 1\n";
  std::string pre;
  for (int i = 0; i < 16; ++i) pre += ok;  // 16 good lines, the bad one is line 17
  CHECK_THAT(error_of(pre + "a a 1\n"), Catch::Equals("<pipe>:17: expected 4 or 5 columns, found 3"));
  CHECK_THAT(error_of(pre + "a b c d e f\n"), Catch::Equals("<pipe>:17: expected 4 or 5 columns, found 6"));
  CHECK_THAT(error_of("a a x 1\n# c\n\na b c d 2\n"),
             Catch::Equals("<pipe>:4: found 5 columns, but the first line (line 1) has 4"));
  CHECK_THAT(error_of("# x\n\na a x 1\na a x 2\nb a x 3\nb a x 3\n# y\n\nc a x abc\n"),
             Catch::Equals("<pipe>:9: score \"abc\" is not a number"));
  CHECK_THAT(error_of("a a x nan\n"), Catch::Equals("<pipe>:1: score \"nan\" is not finite"));
  CHECK_THAT(error_of("a a x 1\na a x -inf\n"), Catch::Equals("<pipe>:2: score \"-inf\" is not finite"));
  CHECK_THAT(error_of("a a x 1e999\n"), Catch::Equals("<pipe>:1: score \"1e999\" is out of range"));
  CHECK_THAT(error_of("a a x 0x10\n"), Catch::Equals("<pipe>:1: score \"0x10\" is not a number"));
  CHECK_THAT(error_of("a a x 1.5.\n"), Catch::Equals("<pipe>:1: score \"1.5.\" is not a number"));
  CHECK_THAT(error_of("a a x +\n"), Catch::Equals("<pipe>:1: score \"+\" is not a number"));
  CHECK_THAT(error_of("a 1\n"), Catch::Equals("<pipe>:1: expected 4 or 5 columns, found 2"));
  CHECK_THAT(error_of("a,b,c\n"), Catch::StartsWith("<pipe>:1: cannot tell the score format"));
  // One probe, two subjects.
  CHECK_THAT(error_of("a a x 1\nb b x 2\n"),
             Catch::Equals("<pipe>:2: probe 'x' has subject 'b' here but 'a' before"));
  CHECK_THAT(error_of("c m a x 1\nd m a x 2\n"),
             Catch::Equals("<pipe>:2: reference 'm' has subject 'd' here but 'c' before"));

  // CSV
  CHECK_THAT(error_of("probe,reference\n"), Catch::Equals("<pipe>:1: cannot tell the score format: expected 4 or 5 "
                                                          "columns, or a CSV header with probe,reference,score or "
                                                          "with bob's probe_subject_id,bio_ref_subject_id,score"));
  CHECK_THAT(error_of("probe,reference\n", Format::csv), Catch::Equals("<pipe>:1: CSV header has no 'score' column"));
  CHECK_THAT(error_of("probe,reference,score,score\n"),
             Catch::Equals("<pipe>:1: CSV header names column 'score' twice"));
  CHECK_THAT(error_of("probe,reference,score\np,r,1\np,r\n"),
             Catch::Equals("<pipe>:3: expected 3 fields as in the header, found 2"));
  CHECK_THAT(error_of("probe,reference,score\np,r,1\n\"p,r,1\n"),
             Catch::Equals("<pipe>:3: unterminated quoted field"));
  CHECK_THAT(error_of("probe,reference,score\n\"p\"x,r,1\n"),
             Catch::Equals("<pipe>:2: unexpected character 'x' after a closing quote"));
  CHECK_THAT(error_of("probe,reference,score\np,r,abc\n"), Catch::Equals("<pipe>:2: score \"abc\" is not a number"));
  CHECK_THAT(error_of("probe,reference,score,mated\np,r,1,yes\n"),
             Catch::Equals("<pipe>:2: mated value \"yes\" is not 1, 0, true, false or empty"));
  // A quoted newline counts: the error is on the line where the record starts.
  CHECK_THAT(error_of("probe,reference,score\n\"a\nb\",r,1\np,r,x\n"),
             Catch::Equals("<pipe>:4: score \"x\" is not a number"));
  CHECK_THAT(error_of("probe,reference,score\n,r,1\n"), Catch::Equals("<pipe>:2: empty probe id"));

  // Line length limit.
  PipeInput in(test::bytes("a a x 1\n" + std::string(300, 'y') + " a x 1\n"), 64);
  ReadOptions o;
  o.max_line_bytes = 100;
  CHECK_THROWS_WITH(read_scores(in, o), "<pipe>:2: line longer than 100 bytes");
  // A quoted field cannot grow a record past the limit over many short lines.
  std::string many = "probe,reference,score\n\"";
  for (int i = 0; i < 50; ++i) many += "0123456789\n";
  PipeInput in2(test::bytes(many + "\",r,1\n"), 64);
  CHECK_THROWS_WITH(read_scores(in2, o), "<pipe>:2: CSV record longer than 100 bytes");
}

TEST_CASE("scorefile: files by name, stdin name in messages", "[scorefile]") {
  auto dir = std::filesystem::temp_directory_path() / ("hfr-scorefile-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string path = (dir / "scores.txt").string();
  {
    FILE* f = std::fopen(path.c_str(), "w");
    REQUIRE(f);
    std::fputs("a a x 1\nb a x 2\na a y 3\n", f);
    std::fclose(f);
  }
  Format fmt;
  auto t = read_scores(path, {}, &fmt);
  CHECK(fmt == Format::four_column);
  CHECK(t.size() == 3);
  {
    FILE* f = std::fopen(path.c_str(), "w");
    std::fputs("a a x 1\na a 3\n", f);
    std::fclose(f);
  }
  CHECK_THROWS_WITH(read_scores(path), path + ":2: expected 4 or 5 columns, found 3");
  CHECK_THROWS_AS(read_scores((dir / "missing.txt").string()), Error);
  std::filesystem::remove_all(dir);
}

TEST_CASE("scorefile: round trips through every writer", "[scorefile]") {
  ScoreTable t;
  const double values[] = {0.1, 1.0 / 3.0, -2.5e-300, 1e308, 0.0, -0.0, 123456789.123456789,
                           std::numeric_limits<double>::denorm_min(), 0.30000000000000004};
  std::size_t k = 0;
  for (int p = 0; p < 3; ++p)
    for (int r = 0; r < 3; ++r) {
      auto pi = t.add_probe("probe" + std::to_string(p) + ".png", "s" + std::to_string(p));
      auto ri = t.add_reference("model" + std::to_string(r), "s" + std::to_string(r));
      t.add(pi, ri, values[k++], p == r ? kMated : kNonMated);
    }
  for (Format f : {Format::five_column, Format::bob_csv, Format::csv}) {
    INFO(format_name(f));
    std::string text = write(t, f);
    Format back;
    auto u = parse(text, Format::automatic, &back);
    CHECK(back == f);
    require_same(t, u);
  }
  // Four columns keep only the reference's subject (claimed id).
  std::string text = write(t, Format::four_column);
  CHECK(text.substr(0, text.find('\n')) == "s0 s0 probe0.png 0.1");
  auto u = parse(text);
  REQUIRE(u.size() == t.size());
  for (std::size_t i = 0; i < t.size(); ++i) {
    CHECK(u.score[i] == t.score[i]);
    CHECK(u.mated[i] == t.mated[i]);
    CHECK(u.reference_ids[u.reference[i]] == t.reference_subjects[t.reference[i]]);
  }
  CHECK(std::signbit(u.score[5]));  // -0.0 survives

  // CSV quoting round trip, unknown mated status, no subjects.
  ScoreTable c;
  c.add(c.add_probe("a,\"b\"", ""), c.add_reference(" lead", ""), 1.5, kUnknown);
  c.add(c.add_probe("x\ny", ""), c.add_reference("r", ""), 2, kMated);
  std::string csv = write(c, Format::csv);
  CHECK(csv == "probe,reference,score,mated\n\"a,\"\"b\"\"\",\" lead\",1.5,\n\"x\ny\",r,2,1\n");
  require_same(c, parse(csv));
}

TEST_CASE("scorefile: writers refuse what their format cannot say", "[scorefile]") {
  ScoreTable t;
  t.add(t.add_probe("p 1", "a"), t.add_reference("r", "a"), 1, kMated);
  CHECK_THAT(write_error(t, Format::four_column),
             Catch::Contains("<memory>: row 1: probe id 'p 1' contains whitespace"));
  CHECK_NOTHROW(write(t, Format::csv));
  CHECK_NOTHROW(write(t, Format::bob_csv));

  ScoreTable u;
  u.add(u.add_probe("p", "a"), u.add_reference("r", "b"), 1, kMated);
  CHECK_THAT(write_error(u, Format::five_column), Catch::Contains("marked mated but subjects 'b' and 'a'"));
  CHECK_THAT(write_error(u, Format::bob_csv), Catch::Contains("marked mated"));

  ScoreTable v;
  v.add(v.add_probe("p", ""), v.add_reference("r", "b"), 1, kNonMated);
  CHECK_THAT(write_error(v, Format::four_column), Catch::Contains("subject unknown"));

  ScoreTable w;
  w.add(w.add_probe("p", "a"), w.add_reference("r", "#b"), 1, kNonMated);
  CHECK_THAT(write_error(w, Format::four_column), Catch::Contains("starts with '#'"));

  auto out = io::memory_output();
  CHECK_THROWS_AS(write_scores(t, *out, Format::automatic), UsageError);
  ScoreTable broken = t;
  broken.probe[0] = 7;
  CHECK_THROWS_WITH(write_scores(broken, *out, Format::csv), Catch::Contains("refers to a missing id"));
}

TEST_CASE("scorefile: table interning, copies and subject conflicts", "[scorefile]") {
  ScoreTable t;
  CHECK(t.add_probe("p", "") == 0);
  CHECK(t.add_probe("p", "a") == 0);  // unknown subject filled in
  CHECK(t.probe_subjects[0] == "a");
  CHECK(t.add_probe("p", "") == 0);
  CHECK_THROWS_WITH(t.add_probe("p", "b", "ctx"), "ctx: probe 'p' has subject 'b' here but 'a' before");
  CHECK(t.add_probe("q", "a") == 1);
  // Ids pushed straight into the vectors are found too.
  t.reference_ids.push_back("direct");
  t.reference_subjects.push_back("z");
  CHECK(t.find_reference("direct") == 0);
  CHECK(t.add_reference("direct", "z") == 0);

  ScoreTable copy = t;
  CHECK(copy.find_probe("q") == 1);
  CHECK(copy.add_probe("new", "") == 2);
  CHECK(t.find_probe("new") == -1);
  ScoreTable moved = std::move(copy);
  CHECK(moved.find_probe("new") == 2);

  // Appending a second file shares ids.
  ScoreTable both;
  PipeInput a(test::bytes("s1 s1 x 1\n"));
  PipeInput b(test::bytes("probe,reference,score,mated\nx,s1,2,1\n"));
  CHECK(append_scores(both, a) == Format::four_column);
  CHECK(append_scores(both, b) == Format::csv);
  CHECK(both.size() == 2);
  CHECK(both.probe_ids.size() == 1);
  CHECK(both.reference_ids.size() == 1);
}

TEST_CASE("scorefile: one million four-column lines", "[scorefile][slow]") {
  // 1000 probes x 1000 references, grouped by probe as bob writes them.
  std::string text;
  text.reserve(32u << 20);
  char line[96];
  for (int p = 0; p < 1000; ++p)
    for (int r = 0; r < 1000; ++r) {
      int n = std::snprintf(line, sizeof line, "subj%d subj%d probe/%d.png %d.%03d\n", r, p, p, (p + r) % 7, r % 1000);
      text.append(line, static_cast<std::size_t>(n));
    }
  auto in = io::memory_input(text.data(), text.size(), "big.txt");
  Format f;
  auto t = read_scores(*in, {}, &f);
  CHECK(f == Format::four_column);
  REQUIRE(t.size() == 1000000);
  CHECK(t.probe_ids.size() == 1000);
  CHECK(t.reference_ids.size() == 1000);
  CHECK(t.count(kMated) == 1000);
  CHECK(t.count(kNonMated) == 999000);
  double sum = 0;
  for (double s : t.score) sum += s;
  double expect = 0;
  for (int p = 0; p < 1000; ++p)
    for (int r = 0; r < 1000; ++r) expect += (p + r) % 7 + (r % 1000) / 1000.0;
  CHECK(sum == Approx(expect).epsilon(1e-12));
  CHECK(row(t, 999999) == "probe/999.png/subj999 subj999/subj999 " + format_score(1998 % 7 + 0.999) + " 1");
}
