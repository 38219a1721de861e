// Score tables and their file formats: bob.measure / bob.bio.base four- and
// five-column text, bob.bio.base's CSV score files, and a plain CSV
// (probe,reference,score,mated). This comment is the format reference until
// hfr-formats(5) describes score files.
//
// A table is columnar so that tens of millions of comparisons stay small
// (17 bytes a row plus the distinct ids): each row holds its score, whether
// the pair is mated, and indexes into two interned id tables (probes and
// references), each id carrying its subject.
//
// Semantics follow bob.measure / bob.bio.base:
//  - 4 columns  `claimed_id real_id test_label score`: the reference is the
//    claimed identity (its id and subject are both claimed_id), the probe is
//    test_label with subject real_id; mated iff claimed_id == real_id.
//  - 5 columns  `claimed_id model_label real_id test_label score`: the
//    reference is model_label with subject claimed_id; mated iff
//    claimed_id == real_id.
//  - bob CSV: a header naming columns; probe_subject_id, bio_ref_subject_id
//    and score are required; mated iff the two subject ids are equal. The probe
//    id comes from probe_key (what bob.bio.base's loader uses as the test
//    label), else probe_template_id, else probe_reference_id; the reference id
//    from bio_ref_template_id, else bio_ref_reference_id, else bio_ref_key,
//    else the reference subject. Other columns are ignored.
//  - plain CSV: header required; columns probe, reference and score, optional
//    mated (1/0/true/false; empty = unknown), probe_subject and
//    reference_subject; extra columns ignored. Without a mated column, mated is
//    derived from the subjects when both are known, else unknown.
// Text formats take fields separated by runs of blanks (space, tab, other
// ASCII control characters), skip blank lines and lines whose first non-blank
// character is '#', and accept CRLF. A line with another field count than the
// first is an error (bob's readers would mis-split it). CSV follows RFC 4180
// (quoted fields may hold commas, doubled quotes and newlines); '#' lines and
// blank lines are skipped before the header, blank lines after it. Scores must
// be finite numbers; a leading '+' is accepted, as Python's float() does.
// A probe id seen with two different subjects is an error. Duplicate
// (probe, reference) rows are kept as they are.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "hfr/io.hpp"

namespace hfr::scores {

enum class Format {
  automatic,     // sniff the first non-comment line (reading only)
  four_column,   // "4col"
  five_column,   // "5col"
  bob_csv,       // "bob-csv"
  csv,           // "csv": probe,reference,score,mated[,probe_subject,reference_subject]
};
const char* format_name(Format f);              // "auto", "4col", "5col", "bob-csv", "csv"
Format parse_format(const std::string& name);   // also "4", "5", "four-column", ...; throws UsageError

constexpr std::int8_t kMated = 1, kNonMated = 0, kUnknown = -1;

struct ScoreTable {
  // One entry per row.
  std::vector<double> score;
  std::vector<std::int8_t> mated;          // kMated, kNonMated or kUnknown
  std::vector<std::uint32_t> probe;        // index into probe_ids
  std::vector<std::uint32_t> reference;    // index into reference_ids
  // Interned ids (probe file / test label; model label or claimed id) and the
  // subject of each ("" = unknown), in order of first appearance.
  std::vector<std::string> probe_ids, reference_ids;
  std::vector<std::string> probe_subjects, reference_subjects;

  ScoreTable();
  ~ScoreTable();
  ScoreTable(ScoreTable&&) noexcept;
  ScoreTable& operator=(ScoreTable&&) noexcept;
  // Copies the columns; the copy rebuilds its lookup index when first needed.
  ScoreTable(const ScoreTable& other);
  ScoreTable& operator=(const ScoreTable& other);

  std::size_t size() const { return score.size(); }
  bool empty() const { return score.empty(); }
  void reserve(std::size_t rows);

  // Index of a probe / reference id, adding it when new. A known id given a
  // different non-empty subject is an error (hfr::FormatError "<context>:
  // probe 'x' has subject 'b' here but 'a' before"); an unknown subject ("")
  // never conflicts and is filled in by the first known one.
  std::uint32_t add_probe(std::string_view id, std::string_view subject, const std::string& context = "");
  std::uint32_t add_reference(std::string_view id, std::string_view subject, const std::string& context = "");
  // Appends one row.
  void add(std::uint32_t probe_index, std::uint32_t reference_index, double value, std::int8_t is_mated) {
    probe.push_back(probe_index);
    reference.push_back(reference_index);
    score.push_back(value);
    mated.push_back(is_mated);
  }
  // Index of an id, or -1.
  std::int64_t find_probe(std::string_view id) const;
  std::int64_t find_reference(std::string_view id) const;

  // Genuine (mated) and impostor (non-mated) scores in row order; rows with
  // unknown status are left out.
  void split(std::vector<double>& genuine, std::vector<double>& impostor) const;
  std::size_t count(std::int8_t status) const;

 private:
  struct Index;
  mutable std::unique_ptr<Index> index_;  // id -> index lookup, built lazily
  Index& index() const;
  friend struct Index;
  friend struct TableAccess;  // the readers in scorefile.cpp
};

struct ReadOptions {
  Format format = Format::automatic;
  std::size_t max_line_bytes = 64u << 20;  // a longer line (or CSV record) is an error
};

// Reads a score file and appends its rows to `table` (ids already there are
// shared). Returns the format read (the detected one under automatic; an empty
// input under automatic returns automatic and adds nothing). Errors are
// hfr::FormatError "NAME:LINE: why", with NAME the input's name.
Format append_scores(ScoreTable& table, io::Input& in, const ReadOptions& options = {});
ScoreTable read_scores(io::Input& in, const ReadOptions& options = {}, Format* detected = nullptr);
// "-" is stdin.
ScoreTable read_scores(const std::string& path, const ReadOptions& options = {}, Format* detected = nullptr);

// The format a first content line announces (exposed for tests): 4col or
// 5col when it has 4 or 5 whitespace-separated fields of which the last is a
// number, else bob-csv or csv when it is a CSV header naming their required
// columns, else automatic (not recognised).
Format detect_format(std::string_view first_line);

// Writes the table. Scores are printed shortest-round-trip (std::to_chars), so
// reading the file back gives the same doubles. The text formats need every
// id and subject non-empty and free of whitespace, and the row's mated status
// (when known) must agree with its subjects (that is all the text formats can
// say); otherwise hfr::FormatError names the first offending row. 4col keeps
// only the reference's subject (it has no model label column). bob-csv
// writes probe_template_id,probe_key,probe_subject_id,bio_ref_template_id,
// bio_ref_subject_id,score (same checks on subjects, any characters allowed);
// csv writes probe,reference,score,mated plus probe_subject,reference_subject
// when any subject is known. Does not commit the output.
void write_scores(const ScoreTable& table, io::Output& out, Format format);

// Shortest text that reads back as the same double.
std::string format_score(double value);

}  // namespace hfr::scores
