#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "helpers.hpp"
#include "hfr/error.hpp"
#include "hfr/tensorfile.hpp"

#include <xxhash.h>

using namespace hfr;
using test::PipeInput;

namespace {

std::vector<unsigned char> pattern(std::size_t n, unsigned seed) {
  std::vector<unsigned char> v(n);
  std::mt19937 g(seed);
  for (auto& b : v) b = static_cast<unsigned char>(g() % 7);  // compressible but not trivial
  return v;
}

struct Sample {
  std::vector<unsigned char> file;
  std::map<std::string, std::vector<unsigned char>> data;
};

Sample make_sample(int level = 3, std::size_t chunk = 1024) {
  Sample s;
  auto out = io::memory_output();
  TensorWriterOptions o;
  o.level = level;
  o.chunk_bytes = chunk;
  TensorWriter w(*out, o);
  w.set_metadata({{"tool", "test"}, {"n", 1}});
  s.data["emb"] = pattern(100 * 16 * 4, 1);
  w.write("emb", DType::f32, {100, 16}, s.data["emb"].data());
  s.data["ids"] = pattern(100 * 8, 2);
  w.write("ids", DType::i64, {100}, s.data["ids"].data());
  s.data["img"] = pattern(3 * 5 * 7, 3);
  w.write("img", DType::u8, {3, 5, 7}, s.data["img"].data());
  s.data["half"] = pattern(10 * 2, 4);
  w.write("half", DType::f16, {10}, s.data["half"].data());
  s.data["bf"] = pattern(4 * 2, 5);
  w.write("bf", DType::bf16, {2, 2}, s.data["bf"].data());
  s.data["i"] = pattern(4, 6);
  w.write("i", DType::i32, {}, s.data["i"].data());  // scalar
  s.data["empty"] = {};
  w.write("empty", DType::f32, {0, 512}, nullptr);
  w.set_metadata({{"n", 2}, {"late", true}});
  w.close();
  s.file = out->data();
  return s;
}

void check_all(std::vector<Tensor> ts, const Sample& s) {
  REQUIRE(ts.size() == s.data.size());
  for (const auto& t : ts) {
    INFO(t.info.name);
    const auto& want = s.data.at(t.info.name);
    REQUIRE(t.info.nbytes() == want.size());
    if (!want.empty()) CHECK(std::memcmp(t.ptr(), want.data(), want.size()) == 0);
  }
}

}  // namespace

TEST_CASE("tensorfile: round trip of every dtype, random access and stream", "[tensorfile]") {
  for (int level : {0, 1, 3}) {
    INFO("level " << level);
    Sample s = make_sample(level);
    auto mem = io::memory_input(s.file.data(), s.file.size());
    TensorReader r(*mem);
    REQUIRE(r.random_access());
    CHECK(r.metadata() == nlohmann::json({{"tool", "test"}, {"n", 2}, {"late", true}}));
    CHECK(r.info("emb").shape == Shape{100, 16});
    CHECK(r.info("i").shape.empty());
    CHECK(r.info("empty").shape == Shape{0, 512});
    CHECK(r.info("bf").dtype == DType::bf16);
    check_all(r.read_all(), s);

    PipeInput pipe(s.file);
    TensorReader rs(pipe);
    REQUIRE_FALSE(rs.random_access());
    check_all(rs.read_all(), s);
    CHECK(rs.metadata()["late"] == true);
    CHECK(rs.info("img").shape == Shape{3, 5, 7});
  }
}

TEST_CASE("tensorfile: read_rows across chunk boundaries", "[tensorfile]") {
  Sample s = make_sample(3, 200);  // 200-byte chunks: 3 rows of emb each
  auto mem = io::memory_input(s.file.data(), s.file.size());
  TensorReader r(*mem);
  std::vector<unsigned char> buf(17 * 64);
  r.read_rows("emb", 5, 17, buf.data());
  CHECK(std::memcmp(buf.data(), s.data["emb"].data() + 5 * 64, buf.size()) == 0);
  r.read_rows("emb", 99, 1, buf.data());
  CHECK(std::memcmp(buf.data(), s.data["emb"].data() + 99 * 64, 64) == 0);
  CHECK_THROWS_WITH(r.read_rows("emb", 99, 2, buf.data()), Catch::Contains("outside [0, 100)"));
  CHECK_THROWS_WITH(r.info("nope"), Catch::Contains("no tensor named 'nope'"));
}

TEST_CASE("tensorfile: streaming writer with unknown total rows", "[tensorfile]") {
  auto out = io::memory_output();
  TensorWriterOptions o;
  o.chunk_bytes = 1000;
  TensorWriter w(*out, o);
  w.begin("emb", DType::f32, {8});
  w.begin("label", DType::i32, {});
  std::vector<float> all;
  std::vector<std::int32_t> labels;
  std::mt19937 g(7);
  for (int batch = 0; batch < 50; ++batch) {
    int n = static_cast<int>(g() % 90);  // sometimes 0, sometimes more than a chunk
    std::vector<float> rows(static_cast<std::size_t>(n) * 8);
    for (auto& x : rows) x = static_cast<float>(g() % 1000) / 7.0f;
    std::vector<std::int32_t> l(static_cast<std::size_t>(n));
    for (auto& x : l) x = static_cast<std::int32_t>(g());
    w.append("emb", rows.data(), n);
    w.append("label", l.data(), n);
    all.insert(all.end(), rows.begin(), rows.end());
    labels.insert(labels.end(), l.begin(), l.end());
  }
  w.begin("never", DType::u8, {3});
  w.begin("hollow", DType::f32, {4, 0});  // rows of zero bytes
  w.append("hollow", nullptr, 5);
  w.close();
  auto file = out->data();
  for (bool seekable : {true, false}) {
    std::unique_ptr<io::Input> in = seekable ? io::memory_input(file.data(), file.size())
                                             : std::unique_ptr<io::Input>(new PipeInput(file, 4096));
    TensorReader r(*in);
    auto ts = r.read_all();
    REQUIRE(ts.size() == 4);
    CHECK(ts[3].info.shape == Shape{5, 4, 0});
    CHECK(ts[0].info.shape == Shape{static_cast<std::int64_t>(all.size() / 8), 8});
    CHECK(std::memcmp(ts[0].ptr(), all.data(), all.size() * 4) == 0);
    CHECK(std::memcmp(ts[1].ptr(), labels.data(), labels.size() * 4) == 0);
    CHECK(ts[2].info.shape == Shape{0, 3});
  }
}

TEST_CASE("tensorfile: every single-byte corruption is detected or harmless", "[tensorfile]") {
  Sample s = make_sample(3, 4096);
  std::size_t detected = 0, harmless = 0;
  for (std::size_t i = 0; i < s.file.size(); ++i) {
    auto f = s.file;
    f[i] ^= 0x5a;
    for (bool seekable : {true, false}) {
      try {
        std::unique_ptr<io::Input> in = seekable ? io::memory_input(f.data(), f.size())
                                                 : std::unique_ptr<io::Input>(new PipeInput(f, 1 << 20));
        TensorReader r(*in);
        auto ts = r.read_all();
        check_all(ts, s);  // if it reads, it must read the right data
        if (!seekable) ++harmless;  // random access skips metadata chunks (the index holds a copy)
      } catch (const FormatError&) {
        ++detected;
      }
    }
  }
  // Streaming reads every byte: only the two minor-version bytes of the header
  // may change without an error.
  CHECK(harmless <= 2);
  CHECK(detected >= s.file.size() - 2);
}

TEST_CASE("tensorfile: truncation at any length is an error", "[tensorfile]") {
  Sample s = make_sample(3, 4096);
  for (std::size_t n = 0; n < s.file.size(); ++n) {
    std::vector<unsigned char> f(s.file.begin(), s.file.begin() + static_cast<std::ptrdiff_t>(n));
    INFO("length " << n);
    CHECK_THROWS_AS(
        [&] {
          auto in = io::memory_input(f.data(), f.size());
          TensorReader r(*in);
          r.read_all();
        }(),
        FormatError);
    CHECK_THROWS_AS(
        [&] {
          PipeInput in(f, 1 << 20);
          TensorReader r(in);
          r.read_all();
        }(),
        FormatError);
  }
}

TEST_CASE("tensorfile: trailing garbage and wrong magic are refused", "[tensorfile]") {
  Sample s = make_sample();
  auto f = s.file;
  f.push_back(0);
  PipeInput p(f);
  TensorReader r(p);
  CHECK_THROWS_WITH(r.read_all(), Catch::Contains("unexpected data after the end"));
  auto mem = io::memory_input(f.data(), f.size());
  CHECK_THROWS_WITH(TensorReader(*mem), Catch::Contains("no valid trailer"));
  const char npy_bytes[] = "\x93NUMPY\x01\x00 some more bytes to be long enough for the header check...";
  std::string npy(npy_bytes, sizeof npy_bytes - 1);
  auto m2 = io::memory_input(npy.data(), npy.size());
  CHECK_THROWS_WITH(TensorReader(*m2), Catch::Contains("NumPy .npy file, not an hfr tensor file"));
  std::string text = "{\"id\": 1}\n";
  PipeInput p2(test::bytes(text));
  TensorReader r2(p2);
  TensorChunk c;
  CHECK_THROWS_WITH(r2.next(c), Catch::Contains("not an hfr tensor file (bad magic)"));
}

TEST_CASE("tensorfile: read limits bound memory", "[tensorfile]") {
  Sample s = make_sample();
  TensorFileLimits lim;
  lim.max_total_bytes = 1000;
  auto mem = io::memory_input(s.file.data(), s.file.size());
  TensorReader r(*mem, lim);
  CHECK_THROWS_WITH(r.read_all(), Catch::Contains("exceed"));
  PipeInput p(s.file);
  TensorReader rs(p, lim);
  CHECK_THROWS_WITH(rs.read_all(), Catch::Contains("exceeds the read limit"));
}

TEST_CASE("tensorfile: writer refuses misuse", "[tensorfile]") {
  auto out = io::memory_output();
  TensorWriter w(*out);
  float x = 1;
  w.write("a", DType::f32, {1}, &x);
  CHECK_THROWS_AS(w.write("a", DType::f32, {1}, &x), UsageError);
  CHECK_THROWS_AS(w.append("b", &x, 1), UsageError);
  CHECK_THROWS_AS(w.write("", DType::f32, {1}, &x), UsageError);
  CHECK_THROWS_AS(w.write("neg", DType::f32, {-1}, &x), FormatError);
  CHECK_THROWS_AS(TensorWriter(*out, TensorWriterOptions{20, 1 << 20, 1}), UsageError);
}

TEST_CASE("tensorfile: half and bfloat16 conversions", "[tensorfile]") {
  for (float f : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 0.33325195f}) {
    CHECK(half_to_float(float_to_half(f)) == f);
  }
  CHECK(float_to_half(1.0f) == 0x3c00);
  CHECK(float_to_half(65520.0f) == 0x7c00);  // rounds to infinity
  CHECK(std::isnan(half_to_float(float_to_half(NAN))));
  CHECK(float_to_half(1.0f + 1.0f / 2048) == 0x3c00);  // tie rounds to even
  CHECK(float_to_half(1.0f + 3.0f / 2048) == 0x3c02);
  CHECK(bfloat16_to_float(float_to_bfloat16(1.5f)) == 1.5f);
  CHECK(float_to_bfloat16(1.0f) == 0x3f80);
  CHECK(std::isnan(bfloat16_to_float(float_to_bfloat16(NAN))));
  // Exhaustive: every finite half survives half -> float -> half.
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00) continue;
    REQUIRE(float_to_half(half_to_float(static_cast<std::uint16_t>(h))) == h);
  }
  // The bulk conversion (F16C where the CPU has it, NaN blocks and the rest inline) gives half_to_float's bits
  // for every half.
  std::vector<std::uint16_t> all(0x10000);
  for (std::uint32_t h = 0; h < 0x10000; ++h) all[h] = static_cast<std::uint16_t>(h);
  std::vector<float> bulk(all.size());
  to_float32(DType::f16, all.data(), all.size(), bulk.data());
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float one = half_to_float(static_cast<std::uint16_t>(h));
    REQUIRE(std::memcmp(&one, &bulk[h], 4) == 0);
  }
}

TEST_CASE("tensorfile: hostile index entries are refused", "[tensorfile]") {
  // Build a valid file, then rewrite its index with hostile contents and fix
  // the checksums, as an attacker would.
  auto craft = [](const std::string& index_json) {
    auto out = io::memory_output();
    TensorWriterOptions o;
    o.level = 0;
    TensorWriter w(*out, o);
    float x[4] = {1, 2, 3, 4};
    w.write("a", DType::f32, {4}, x);
    w.close();
    const std::vector<unsigned char>& whole = out->data();
    // Locate the index via the trailer and replace it.
    std::uint64_t ioff = 0;
    if (whole.size() >= 32) std::memcpy(&ioff, whole.data() + whole.size() - 32, 8);
    std::vector<unsigned char> f(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(ioff));
    auto out2 = io::memory_output();
    out2->write(f.data(), f.size());
    // Reuse the writer's own encoding by writing a file whose index we control:
    // chunk header for an uncompressed index chunk.
    std::vector<unsigned char> h(48, 0);
    std::memcpy(h.data(), "HFTC", 4);
    h[4] = 3;
    std::uint64_t n = index_json.size();
    std::memcpy(&h[16], &n, 8);
    std::memcpy(&h[24], &n, 8);
    std::uint64_t ph = XXH3_64bits(index_json.data(), n);
    std::memcpy(&h[32], &ph, 8);
    std::uint64_t hh = XXH3_64bits(h.data(), 40);
    std::memcpy(&h[40], &hh, 8);
    out2->write(h.data(), 48);
    out2->write(index_json);
    std::vector<unsigned char> t(32, 0);
    std::uint64_t len = 48 + n, flen = ioff + len + 32;
    std::memcpy(&t[0], &ioff, 8);
    std::memcpy(&t[8], &len, 8);
    std::memcpy(&t[16], &flen, 8);
    std::memcpy(&t[24], "HFTE", 4);
    auto th = static_cast<std::uint32_t>(XXH3_64bits(t.data(), 28));
    std::memcpy(&t[28], &th, 4);
    out2->write(t.data(), 32);
    return out2->data();
  };
  auto open = [](const std::vector<unsigned char>& f) {
    auto in = io::memory_input(f.data(), f.size());
    TensorReader r(*in);
    r.read_all();
  };
  // The untouched index reads back (the crafting itself is right).
  std::string good = R"({"metadata":{},"tensors":[{"name":"a","dtype":"f32","shape":[4],"chunks":[[16,87,0,4]]}]})";
  auto f0 = craft(good);
  // Find the real data chunk length to make the good index exact.
  std::uint32_t dlen;
  std::memcpy(&dlen, &f0[16 + 8], 4);
  std::string exact = R"({"metadata":{},"tensors":[{"name":"a","dtype":"f32","shape":[4],"chunks":[[16,)" + std::to_string(48 + dlen + 16) +
                      R"(,0,4]]}]})";
  REQUIRE_NOTHROW(open(craft(exact)));
  CHECK_THROWS_WITH(open(craft(R"({"tensors":[{"name":"a","dtype":"f32","shape":[4611686018427387904,4611686018427387904],"chunks":[]}]})")),
                    Catch::Contains("overflows"));
  CHECK_THROWS_WITH(open(craft(R"({"tensors":[{"name":"a","dtype":"f64","shape":[4],"chunks":[]}]})")), Catch::Contains("unknown dtype 'f64'"));
  CHECK_THROWS_WITH(open(craft(R"({"tensors":[{"name":"a","dtype":"f32","shape":[4],"chunks":[[999999,48,0,4]]}]})")),
                    Catch::Contains("outside the data area"));
  CHECK_THROWS_WITH(open(craft(R"({"tensors":[{"name":"a","dtype":"f32","shape":[4],"chunks":[[16,60,0,2],[40,60,2,2]]}]})")),
                    Catch::Contains("overlapping"));
  CHECK_THROWS_WITH(open(craft(R"({"tensors":[{"name":"a","dtype":"f32","shape":[4],"chunks":[[16,60,1,4]]}]})")),
                    Catch::Contains("contiguously"));
  CHECK_THROWS_WITH(open(craft(R"({"tensors":[{"name":"a","dtype":"f32","shape":[8],"chunks":[[16,)" + std::to_string(48 + dlen + 16) +
                               R"(,0,8]]}]})")),
                    Catch::Contains("disagrees with the index"));
  CHECK_THROWS_WITH(open(craft(R"({"tensors":[{"name":"a","dtype":"f32","shape":[1,2,3,4,5,6,7,8,9],"chunks":[]}]})")),
                    Catch::Contains("rank 9 exceeds"));
  CHECK_THROWS_WITH(open(craft(R"({"tensors":[{"name":"a","dtype":"f32","shape":[-4],"chunks":[]}]})")),
                    Catch::Contains("non-negative"));
  CHECK_THROWS_WITH(open(craft(R"({"tensors":[{"name":"a"},{"name":"a"}]})")), Catch::Contains("missing dtype"));
  CHECK_THROWS_WITH(open(craft(R"([1,2,3])")), Catch::Contains("missing tensor list"));
}

TEST_CASE("tensorfile: output bytes do not depend on the thread count", "[tensorfile]") {
  std::vector<float> v(3 << 20);
  std::mt19937 g(9);
  for (auto& x : v) x = static_cast<float>(g() % 4096) / 64.0f;
  std::vector<std::vector<unsigned char>> files;
  for (int threads : {1, 2, 3}) {
    auto out = io::memory_output();
    TensorWriterOptions o;
    o.threads = threads;
    o.chunk_bytes = 8u << 20;
    TensorWriter w(*out, o);
    w.write("v", DType::f32, {static_cast<std::int64_t>(v.size())}, v.data());
    w.close();
    files.push_back(out->data());
  }
  CHECK(files[0] == files[1]);
  CHECK(files[0] == files[2]);
}

TEST_CASE("tensorfile: a stream claiming a huge chunk fails when the bytes run out", "[tensorfile]") {
  // Valid file header, then a data chunk header (valid checksum) claiming
  // 900 MiB of payload that never arrives.
  std::vector<unsigned char> f = {0x89, 'H', 'F', 'T', '\r', '\n', 0x1a, '\n', 1, 0, 0, 0, 0, 0, 0, 0};
  std::string descr = R"({"name":"x","row0":0,"rows":235929600,"inner":[]})";
  std::vector<unsigned char> h(48, 0);
  std::memcpy(h.data(), "HFTC", 4);
  h[4] = 2;  // data
  h[5] = 0;  // uncompressed
  h[6] = 1;  // f32
  auto dl = static_cast<std::uint32_t>(descr.size());
  std::memcpy(&h[8], &dl, 4);
  std::uint64_t n = 900ull << 20;
  std::memcpy(&h[16], &n, 8);
  std::memcpy(&h[24], &n, 8);
  std::string hh(reinterpret_cast<const char*>(h.data()), 40);
  hh += descr;
  std::uint64_t hash = XXH3_64bits(hh.data(), hh.size());
  std::memcpy(&h[40], &hash, 8);
  f.insert(f.end(), h.begin(), h.end());
  f.insert(f.end(), descr.begin(), descr.end());
  f.resize(f.size() + 1000, 0);
  PipeInput in(f, 1 << 16);
  TensorReader r(in);
  TensorChunk c;
  CHECK_THROWS_WITH(r.next(c), Catch::Contains("truncated payload"));
}
