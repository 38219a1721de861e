#include "hfr/npy.hpp"

#include <cstring>
#include <regex>

#include "hfr/error.hpp"

namespace hfr {
namespace {

const char* npy_descr(DType t) {
  switch (t) {
    case DType::f32: return "<f4";
    case DType::bf16: return "<f4";  // exported as float32
    case DType::f16: return "<f2";
    case DType::u8: return "|u1";
    case DType::i32: return "<i4";
    case DType::i64: return "<i8";
  }
  return "";
}

}  // namespace

void write_npy(io::Output& out, const TensorInfo& info, const void* data) {
  std::string shape = "(";
  for (std::size_t i = 0; i < info.shape.size(); ++i) shape += std::to_string(info.shape[i]) + (info.shape.size() == 1 ? "," : (i + 1 < info.shape.size() ? ", " : ""));
  shape += ")";
  std::string dict = std::string("{'descr': '") + npy_descr(info.dtype) + "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Header length so that magic(6)+version(2)+len(2)+dict+padding+'\n' is a multiple of 64.
  std::size_t total = 10 + dict.size() + 1;
  std::size_t padded = (total + 63) / 64 * 64;
  bool v2 = padded - 10 > 65535;
  if (v2) padded = (12 + dict.size() + 1 + 63) / 64 * 64;
  std::size_t hlen = padded - (v2 ? 12 : 10);
  dict.append(hlen - dict.size() - 1, ' ');
  dict.push_back('\n');
  unsigned char pre[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<unsigned char>(v2 ? 2 : 1), 0};
  if (v2) {
    auto l = static_cast<std::uint32_t>(hlen);
    std::memcpy(pre + 8, &l, 4);
    out.write(pre, 12);
  } else {
    auto l = static_cast<std::uint16_t>(hlen);
    std::memcpy(pre + 8, &l, 2);
    out.write(pre, 10);
  }
  out.write(dict);
  if (info.dtype == DType::bf16) {
    const auto* p = static_cast<const std::uint16_t*>(data);
    std::uint64_t n = shape_numel(info.shape);
    std::vector<float> buf;
    for (std::uint64_t i = 0; i < n;) {
      std::uint64_t k = std::min<std::uint64_t>(n - i, 1u << 16);
      buf.resize(k);
      for (std::uint64_t j = 0; j < k; ++j) buf[j] = bfloat16_to_float(p[i + j]);
      out.write(buf.data(), k * 4);
      i += k;
    }
  } else {
    out.write(data, info.nbytes());
  }
}

Tensor read_npy(io::Input& in, const std::string& name, const TensorFileLimits& limits) {
  const std::string& nm = in.name();
  unsigned char pre[12];
  if (in.read_full(pre, 10) != 10 || std::memcmp(pre, "\x93NUMPY", 6) != 0) throw FormatError(nm + ": not a NumPy .npy file");
  unsigned major = pre[6];
  std::uint32_t hlen;
  if (major == 1) {
    std::uint16_t l;
    std::memcpy(&l, pre + 8, 2);
    hlen = l;
  } else if (major == 2 || major == 3) {
    if (in.read_full(pre + 10, 2) != 2) throw FormatError(nm + ": truncated .npy header");
    std::memcpy(&hlen, pre + 8, 4);
  } else {
    throw FormatError(nm + ": unsupported .npy version " + std::to_string(major));
  }
  if (hlen > (1u << 20)) throw FormatError(nm + ": .npy header too large");
  std::string h(hlen, '\0');
  if (in.read_full(&h[0], hlen) != hlen) throw FormatError(nm + ": truncated .npy header");
  std::smatch m;
  static const std::regex descr_re("'descr'\\s*:\\s*'([^']*)'");
  static const std::regex fortran_re("'fortran_order'\\s*:\\s*(True|False)");
  static const std::regex shape_re("'shape'\\s*:\\s*\\(([0-9,\\s]*)\\)");
  if (!std::regex_search(h, m, descr_re)) throw FormatError(nm + ": .npy header has no descr");
  std::string descr = m[1];
  DType dt;
  if (descr == "<f4") dt = DType::f32;
  else if (descr == "<f2") dt = DType::f16;
  else if (descr == "|u1" || descr == "<u1") dt = DType::u8;
  else if (descr == "<i4") dt = DType::i32;
  else if (descr == "<i8") dt = DType::i64;
  else throw FormatError(nm + ": unsupported .npy dtype '" + descr + "' (supported: <f4, <f2, |u1, <i4, <i8)");
  if (!std::regex_search(h, m, fortran_re)) throw FormatError(nm + ": .npy header has no fortran_order");
  if (m[1] == "True") throw FormatError(nm + ": Fortran-ordered .npy arrays are not supported (save with np.ascontiguousarray)");
  if (!std::regex_search(h, m, shape_re)) throw FormatError(nm + ": .npy header has no shape");
  Shape shape;
  // "3, 4" or "3," or "": comma-separated decimal integers, whitespace around them.
  std::string dims = m[1];
  std::size_t i = 0;
  auto skip_space = [&] {
    while (i < dims.size() && std::isspace(static_cast<unsigned char>(dims[i]))) ++i;
  };
  for (;;) {
    skip_space();
    if (i >= dims.size()) break;
    std::size_t j = i;
    while (j < dims.size() && std::isdigit(static_cast<unsigned char>(dims[j]))) ++j;
    if (j == i) throw FormatError(nm + ": malformed .npy shape '(" + dims + ")'");
    if (j - i > 18) throw FormatError(nm + ": .npy dimension too large");
    shape.push_back(std::stoll(dims.substr(i, j - i)));
    i = j;
    skip_space();
    if (i >= dims.size()) break;
    if (dims[i] != ',') throw FormatError(nm + ": malformed .npy shape '(" + dims + ")'");
    ++i;
  }
  if (shape.size() > limits.max_rank) throw FormatError(nm + ": .npy rank too large");
  Tensor t;
  t.info = TensorInfo{name, dt, shape};
  std::uint64_t n = t.info.nbytes();
  if (n > limits.max_total_bytes) throw FormatError(nm + ": .npy array exceeds the read limit");
  if (in.seekable() && in.size() - in.position() != n)
    throw FormatError(nm + ": .npy data is " + std::to_string(in.size() - in.position()) + " bytes, shape × dtype is " + std::to_string(n));
  t.data = std::make_shared<std::vector<unsigned char>>();
  // Grow as data arrives, so a lying header on a pipe cannot force a huge allocation.
  std::uint64_t got = 0;
  while (got < n) {
    std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(n - got, 16u << 20));
    t.data->resize(static_cast<std::size_t>(got + k));
    std::size_t r = in.read_full(t.data->data() + got, k);
    got += r;
    if (r < k) throw FormatError(nm + ": truncated .npy data (" + std::to_string(got) + " of " + std::to_string(n) + " bytes)");
  }
  unsigned char extra;
  if (in.read_full(&extra, 1) != 0) throw FormatError(nm + ": .npy file has trailing data");
  return t;
}

}  // namespace hfr
