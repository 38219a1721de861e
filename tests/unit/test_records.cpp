#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "hfr/error.hpp"
#include "hfr/records.hpp"

using namespace hfr;
using test::PipeInput;

static std::vector<Record> read_all(const std::string& text, std::vector<std::string>* errors = nullptr, RecordLimits lim = {}) {
  PipeInput in(test::bytes(text), 5);
  RecordReader r(in, lim);
  std::vector<Record> out;
  Record rec;
  std::string err;
  while (r.next(rec, errors ? &err : nullptr)) {
    if (rec.is_null() && errors) errors->push_back(err);
    else out.push_back(rec);
  }
  return out;
}

TEST_CASE("records: unknown fields pass through in order with their values", "[records]") {
  std::string line = R"({"zeta":1,"id":"a","alpha":[1,2.5,{"x":null}],"big":18446744073709551615,"neg":-3,"s":"\u00e9\n"})";
  auto recs = read_all(line + "\n");
  REQUIRE(recs.size() == 1);
  auto out = io::memory_output();
  RecordWriter w(*out);
  w.write(recs[0]);
  std::string written(out->data().begin(), out->data().end());
  CHECK(written == R"({"zeta":1,"id":"a","alpha":[1,2.5,{"x":null}],"big":18446744073709551615,"neg":-3,"s":"é\n"})" "\n");
  CHECK(w.count() == 1);
}

TEST_CASE("records: blank lines, CRLF and a missing final newline", "[records]") {
  auto recs = read_all("{\"id\":1}\r\n\n   \n{\"id\":2}");
  REQUIRE(recs.size() == 2);
  CHECK(recs[1]["id"] == 2);
}

TEST_CASE("records: a malformed line is reported with its line number", "[records]") {
  try {
    read_all("{\"id\":1}\n{\"id\":2}\n{\"id\":3,}\n");
    FAIL("no error");
  } catch (const FormatError& e) {
    CHECK(std::string(e.what()).rfind("<pipe>:3: malformed JSON", 0) == 0);
  }
  CHECK_THROWS_WITH(read_all("[1,2]\n"), Catch::Contains("<pipe>:1: a record must be a JSON object, got array"));
  CHECK_THROWS_WITH(read_all("\"x\"\n"), Catch::Contains("got string"));
  CHECK_THROWS_WITH(read_all("{\"a\":\"\xff\"}\n"), Catch::Contains("<pipe>:1: malformed JSON"));
}

TEST_CASE("records: with an error sink, bad lines are reported and the rest read", "[records]") {
  std::vector<std::string> errors;
  auto recs = read_all("{\"id\":1}\nnot json\n{\"id\":3}\n", &errors);
  REQUIRE(recs.size() == 2);
  CHECK(recs[1]["id"] == 3);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("<pipe>:2:") == 0);
}

TEST_CASE("records: huge lines are refused without buffering them", "[records]") {
  RecordLimits lim;
  lim.max_line_bytes = 100;
  std::string big = "{\"x\":\"" + std::string(5000, 'a') + "\"}";
  std::vector<std::string> errors;
  auto recs = read_all("{\"id\":1}\n" + big + "\n{\"id\":3}\n", &errors, lim);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0] == "<pipe>:2: line longer than 100 bytes");
  REQUIRE(recs.size() == 2);
  CHECK(recs[1]["id"] == 3);
  CHECK_THROWS_WITH(read_all(big, nullptr, lim), "<pipe>:1: line longer than 100 bytes");
}

TEST_CASE("records: deep nesting is refused", "[records]") {
  std::string deep = "{\"a\":" + std::string(1000, '[') + std::string(1000, ']') + "}";
  CHECK_THROWS_WITH(read_all(deep), Catch::Contains("nested deeper than 64"));
  std::string ok = "{\"a\":" + std::string(10, '[') + std::string(10, ']') + ",\"s\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"}";
  CHECK(read_all(ok).size() == 1);
}

TEST_CASE("records: context names the record id when present", "[records]") {
  CHECK(record_context(Record{{"id", "img7"}}, 4) == "record 'img7'");
  CHECK(record_context(Record{{"id", 12}}, 4) == "record 12");
  CHECK(record_context(Record{{"x", 1}}, 4) == "line 4");
}

TEST_CASE("records: error records keep the input's fields", "[records]") {
  Record in{{"id", "x"}, {"path", "a.jpg"}};
  Record e = error_record(in, "a.jpg: no face found");
  CHECK(e.dump() == R"({"id":"x","path":"a.jpg","error":"a.jpg: no face found"})");
  Record bad = error_record(nullptr, "in.jsonl:3: malformed JSON", "in.jsonl:3");
  CHECK(bad.dump() == R"({"source":"in.jsonl:3","error":"in.jsonl:3: malformed JSON"})");
}
