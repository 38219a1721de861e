#include <catch2/catch.hpp>

#include <cstring>

#include "hfr/error.hpp"
#include "hfr/npy.hpp"

using namespace hfr;

TEST_CASE("npy: header is aligned and parseable, data round-trips", "[npy]") {
  for (DType t : {DType::f32, DType::f16, DType::u8, DType::i32, DType::i64}) {
    TensorInfo info{"x", t, {3, 4}};
    std::vector<unsigned char> data(info.nbytes());
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<unsigned char>(i * 7);
    auto out = io::memory_output();
    write_npy(*out, info, data.data());
    const auto& f = out->data();
    std::uint16_t hlen;
    std::memcpy(&hlen, &f[8], 2);
    CHECK((10 + hlen) % 64 == 0);
    CHECK(f[10 + hlen - 1] == '\n');
    auto in = io::memory_input(f.data(), f.size());
    Tensor back = read_npy(*in, "x");
    CHECK(back.info.dtype == t);
    CHECK(back.info.shape == Shape{3, 4});
    CHECK(std::memcmp(back.ptr(), data.data(), data.size()) == 0);
  }
}

TEST_CASE("npy: 1-d and 0-d shapes use Python tuple syntax", "[npy]") {
  float v[3] = {1, 2, 3};
  auto out = io::memory_output();
  write_npy(*out, TensorInfo{"v", DType::f32, {3}}, v);
  std::string s(out->data().begin(), out->data().end());
  CHECK(s.find("'shape': (3,)") != std::string::npos);
  auto out0 = io::memory_output();
  write_npy(*out0, TensorInfo{"s", DType::f32, {}}, v);
  std::string s0(out0->data().begin(), out0->data().end());
  CHECK(s0.find("'shape': ()") != std::string::npos);
}

TEST_CASE("npy: bf16 is exported as float32", "[npy]") {
  std::uint16_t b[2] = {float_to_bfloat16(1.5f), float_to_bfloat16(-2.0f)};
  auto out = io::memory_output();
  write_npy(*out, TensorInfo{"b", DType::bf16, {2}}, b);
  auto in = io::memory_input(out->data().data(), out->data().size());
  Tensor t = read_npy(*in, "b");
  CHECK(t.info.dtype == DType::f32);
  CHECK(t.as<float>()[0] == 1.5f);
  CHECK(t.as<float>()[1] == -2.0f);
}

TEST_CASE("npy: malformed files are refused", "[npy]") {
  auto parse = [](const std::string& s) {
    auto in = io::memory_input(s.data(), s.size(), "a.npy");
    return read_npy(*in, "a");
  };
  CHECK_THROWS_WITH(parse("hello"), "a.npy: not a NumPy .npy file");
  auto hdr = [](const std::string& dict, std::size_t data) {
    std::string h = dict;
    h.push_back('\n');
    std::string s = std::string("\x93NUMPY\x01\x00", 8);
    auto l = static_cast<std::uint16_t>(h.size());
    s.append(reinterpret_cast<const char*>(&l), 2);
    return s + h + std::string(data, '\0');
  };
  CHECK_THROWS_WITH(parse(hdr("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8)), Catch::Contains("unsupported .npy dtype '>f4'"));
  CHECK_THROWS_WITH(parse(hdr("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", 8)), Catch::Contains("Fortran-ordered"));
  CHECK_THROWS_WITH(parse(hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 8)), Catch::Contains("shape × dtype is 12"));
  CHECK_THROWS_WITH(parse(hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (999999999999999999999,), }", 8)),
                    Catch::Contains("too large"));
  CHECK(parse(hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 8)).info.shape == Shape{2});
  // Found by fuzz_npy: whitespace other than spaces inside the shape tuple.
  CHECK(parse(hdr("{'descr': '<i8', 'fortran_order': False, 'shape': (5\f,), }", 40)).info.shape == Shape{5});
  CHECK_THROWS_WITH(parse(hdr("{'descr': '<i8', 'fortran_order': False, 'shape': (5 3,), }", 40)), Catch::Contains("malformed .npy shape"));
  CHECK(parse(hdr("{'descr': '<i8', 'fortran_order': False, 'shape': ( 5 ,\t), }", 40)).info.shape == Shape{5});
  CHECK_THROWS_WITH(parse(hdr("{'descr': '<i8', 'fortran_order': False, 'shape': (5,,), }", 40)), Catch::Contains("malformed .npy shape"));
}
