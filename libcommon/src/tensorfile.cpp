// hfr tensor file (.hft) reader and writer. Layout (all integers little-endian):
//   file header (16 B)  : magic 89 'H' 'F' 'T' 0D 0A 1A 0A, u16 major=1, u16 minor=0, u32 flags=0
//   chunks, each        : 48-byte chunk header, descriptor (JSON), payload
//   index chunk         : JSON index of every data chunk + merged metadata
//   trailer (32 B)      : u64 index offset, u64 index length, u64 file length, "HFTE", u32 check
// See hfr-formats(5) for the full specification.
#include "hfr/tensorfile.hpp"

#include <xxhash.h>
#include <zstd.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <limits>
#include <set>

#include "hfr/error.hpp"
#include "hfr/records.hpp"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "hfr tensor files assume a little-endian host");

namespace hfr {
namespace {

using json = nlohmann::json;

constexpr unsigned char kFileMagic[8] = {0x89, 'H', 'F', 'T', '\r', '\n', 0x1a, '\n'};
constexpr std::uint16_t kMajor = 1;
constexpr std::uint16_t kMinor = 0;
constexpr std::size_t kFileHeader = 16;
constexpr std::size_t kChunkHeader = 48;
constexpr std::size_t kTrailer = 32;
constexpr unsigned char kChunkMagic[4] = {'H', 'F', 'T', 'C'};
constexpr unsigned char kTrailerMagic[4] = {'H', 'F', 'T', 'E'};
constexpr std::uint8_t kMeta = 1, kData = 2, kIndex = 3;
constexpr std::uint8_t kCodecNone = 0, kCodecZstd = 1;
// zstd cannot expand data by more than this factor per input byte (a 128 KiB
// RLE block costs 4 bytes); a larger claimed ratio is a hostile header.
constexpr std::uint64_t kMaxRatio = 1u << 15;
constexpr std::size_t kMaxDescriptor = 1u << 16;
constexpr std::size_t kMaxName = 1024;
// Fuzzing builds skip checksum comparisons so that the fuzzer can reach the
// parsing behind them (as zstd and libpng do); never defined in real builds.
#ifdef HFR_FUZZING_NO_CHECKSUMS
constexpr bool kVerifyChecksums = false;
#else
constexpr bool kVerifyChecksums = true;
#endif

template <class T> void put(unsigned char* p, T v) { std::memcpy(p, &v, sizeof v); }
template <class T> T get(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

bool mul_overflow(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  return __builtin_mul_overflow(a, b, &out);
}

struct ChunkHeader {
  std::uint8_t kind = 0, codec = 0, dtype = 0;
  std::uint32_t descr_len = 0;
  std::uint64_t stored = 0, raw = 0, payload_hash = 0;
  std::uint64_t total() const { return kChunkHeader + descr_len + stored; }
};

std::uint64_t header_hash(const unsigned char* h40, const std::string& descr) {
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  XXH3_64bits_update(st, h40, 40);
  XXH3_64bits_update(st, descr.data(), descr.size());
  std::uint64_t v = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return v;
}

// Checks the fixed part of a chunk header; the header hash is checked once the
// descriptor has been read.
ChunkHeader decode_chunk_header(const unsigned char* h, const std::string& ctx, const TensorFileLimits& lim) {
  if (std::memcmp(h, kChunkMagic, 4) != 0) throw FormatError(ctx + ": bad chunk magic (corrupt or not a tensor file)");
  ChunkHeader c;
  c.kind = h[4];
  c.codec = h[5];
  c.dtype = h[6];
  if (h[7] != 0 || get<std::uint32_t>(h + 12) != 0) throw FormatError(ctx + ": reserved chunk header bytes are not zero");
  c.descr_len = get<std::uint32_t>(h + 8);
  c.stored = get<std::uint64_t>(h + 16);
  c.raw = get<std::uint64_t>(h + 24);
  c.payload_hash = get<std::uint64_t>(h + 32);
  if (c.kind != kMeta && c.kind != kData && c.kind != kIndex)
    throw FormatError(ctx + ": unknown chunk kind " + std::to_string(c.kind));
  if (c.codec != kCodecNone && c.codec != kCodecZstd)
    throw FormatError(ctx + ": unknown codec " + std::to_string(c.codec));
  if (c.descr_len > kMaxDescriptor) throw FormatError(ctx + ": descriptor too large (" + std::to_string(c.descr_len) + " bytes)");
  std::uint64_t raw_limit = c.kind == kData ? lim.max_chunk_bytes : lim.max_header_json;
  if (c.raw > raw_limit)
    throw FormatError(ctx + ": chunk claims " + std::to_string(c.raw) + " decoded bytes (limit " + std::to_string(raw_limit) + ")");
  if (c.codec == kCodecNone && c.stored != c.raw) throw FormatError(ctx + ": stored and decoded sizes differ for an uncompressed chunk");
  if (c.codec == kCodecZstd) {
    if (c.stored > raw_limit + raw_limit / 64 + 1024) throw FormatError(ctx + ": compressed payload too large");
    std::uint64_t bound;
    if (!mul_overflow(std::max<std::uint64_t>(c.stored, 64), kMaxRatio, bound) && c.raw > bound)
      throw FormatError(ctx + ": implausible compression ratio (" + std::to_string(c.raw) + " from " + std::to_string(c.stored) + " bytes)");
  }
  return c;
}

void verify_header_hash(const unsigned char* h, const std::string& descr, const std::string& ctx) {
  if (kVerifyChecksums && header_hash(h, descr) != get<std::uint64_t>(h + 40)) throw FormatError(ctx + ": chunk header checksum mismatch");
}

void decode_payload(const ChunkHeader& c, const unsigned char* stored, void* dst, ZSTD_DCtx* dctx, const std::string& ctx) {
  if (kVerifyChecksums && XXH3_64bits(stored, c.stored) != c.payload_hash) throw FormatError(ctx + ": payload checksum mismatch (corrupt data)");
  if (c.codec == kCodecNone) {
    if (c.raw) std::memcpy(dst, stored, c.raw);
    return;
  }
  if (c.raw == 0 && c.stored == 0) return;
  std::size_t r = ZSTD_decompressDCtx(dctx, dst, c.raw, stored, c.stored);
  if (ZSTD_isError(r)) throw FormatError(ctx + ": zstd: " + ZSTD_getErrorName(r));
  if (r != c.raw) throw FormatError(ctx + ": decoded " + std::to_string(r) + " bytes, header says " + std::to_string(c.raw));
}

json parse_json_bounded(const std::string& text, const std::string& ctx) {
  int max_depth = json_depth(text);
  if (max_depth > 64) throw FormatError(ctx + ": JSON nested too deeply");
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw FormatError(ctx + ": malformed JSON: " + e.what());
  }
}

std::int64_t json_int(const json& j, const char* key, const std::string& ctx, std::int64_t min = 0,
                      std::int64_t max = std::numeric_limits<std::int64_t>::max()) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) throw FormatError(ctx + ": missing or non-integer '" + key + "'");
  std::int64_t v;
  if (it->is_number_unsigned()) {
    auto u = it->get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(max)) throw FormatError(ctx + ": '" + key + "' out of range");
    v = static_cast<std::int64_t>(u);
  } else {
    v = it->get<std::int64_t>();
  }
  if (v < min || v > max) throw FormatError(ctx + ": '" + key + "' out of range");
  return v;
}

Shape json_shape(const json& j, const std::string& ctx, std::uint32_t max_rank) {
  if (!j.is_array()) throw FormatError(ctx + ": shape must be an array");
  if (j.size() > max_rank) throw FormatError(ctx + ": rank " + std::to_string(j.size()) + " exceeds limit " + std::to_string(max_rank));
  Shape s;
  for (const auto& d : j) {
    if (!d.is_number_integer() || (d.is_number_integer() && !d.is_number_unsigned() && d.get<std::int64_t>() < 0))
      throw FormatError(ctx + ": shape dimensions must be non-negative integers");
    auto u = d.get<std::uint64_t>();
    if (u > (1ull << 62)) throw FormatError(ctx + ": shape dimension too large");
    s.push_back(static_cast<std::int64_t>(u));
  }
  shape_numel(s);  // overflow check
  return s;
}

std::string check_name(const json& j, const std::string& ctx) {
  if (!j.is_string()) throw FormatError(ctx + ": tensor name must be a string");
  auto n = j.get<std::string>();
  if (n.empty() || n.size() > kMaxName) throw FormatError(ctx + ": tensor name empty or longer than 1024 bytes");
  return n;
}

std::uint64_t row_bytes_of(DType dt, const Shape& inner, const std::string& ctx) {
  std::uint64_t n = dtype_size(dt);
  for (auto d : inner)
    if (mul_overflow(n, static_cast<std::uint64_t>(d), n)) throw FormatError(ctx + ": tensor size overflows");
  return n;
}

}  // namespace

// ---------------------------------------------------------------- dtypes ----

std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f16: return 2;
    case DType::bf16: return 2;
    case DType::u8: return 1;
    case DType::i32: return 4;
    case DType::i64: return 8;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::u8: return "u8";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
  }
  return "?";
}

DType parse_dtype(const std::string& name) {
  for (DType t : {DType::f32, DType::f16, DType::bf16, DType::u8, DType::i32, DType::i64})
    if (name == dtype_name(t)) return t;
  throw UsageError("unknown dtype '" + name + "' (expected f32, f16, bf16, u8, i32 or i64)");
}

bool dtype_from_code(std::uint8_t code, DType& out) {
  if (code < 1 || code > 6) return false;
  out = static_cast<DType>(code);
  return true;
}

std::string shape_string(const Shape& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::uint64_t shape_numel(const Shape& shape) {
  std::uint64_t n = 1;
  for (auto d : shape) {
    if (d < 0) throw FormatError("negative dimension in shape " + shape_string(shape));
    if (mul_overflow(n, static_cast<std::uint64_t>(d), n)) throw FormatError("shape " + shape_string(shape) + " overflows");
  }
  return n;
}

std::uint64_t TensorInfo::nbytes() const {
  std::uint64_t n;
  if (mul_overflow(shape_numel(shape), dtype_size(dtype), n)) throw FormatError("tensor '" + name + "' size overflows");
  return n;
}

std::uint64_t TensorInfo::row_bytes() const {
  if (shape.empty()) return dtype_size(dtype);
  return row_bytes_of(dtype, Shape(shape.begin() + 1, shape.end()), "tensor '" + name + "'");
}

void write_as_f16(TensorWriter& w, const std::string& name, const Shape& shape, const float* data) {
  std::vector<std::uint16_t> h(static_cast<std::size_t>(shape_numel(shape)));
  for (std::size_t i = 0; i < h.size(); ++i) h[i] = float_to_half(data[i]);
  w.write(name, DType::f16, shape, h.data());
}

std::uint16_t float_to_half(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  std::uint32_t sign = (x >> 16) & 0x8000u;
  std::uint32_t mant = x & 0x7fffffu;
  int exp = static_cast<int>((x >> 23) & 0xff);
  if (exp == 0xff) return static_cast<std::uint16_t>(sign | 0x7c00u | (mant ? 0x200u | (mant >> 13) : 0u));
  int e = exp - 127 + 15;
  if (e >= 0x1f) return static_cast<std::uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (e <= 0) {
    if (e < -10) return static_cast<std::uint16_t>(sign);  // underflow -> 0
    mant |= 0x800000u;
    int shift = 14 - e;
    std::uint32_t half = mant >> shift;
    std::uint32_t rem = mant & ((1u << shift) - 1);
    std::uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return static_cast<std::uint16_t>(sign | half);
  }
  std::uint32_t half = (static_cast<std::uint32_t>(e) << 10) | (mant >> 13);
  std::uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;  // may carry into exponent: correct
  return static_cast<std::uint16_t>(sign | half);
}

float half_to_float(std::uint16_t h) {
  std::uint32_t sign = (static_cast<std::uint32_t>(h) & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t mant = h & 0x3ffu;
  std::uint32_t x;
  if (exp == 0) {
    if (mant == 0) {
      x = sign;
    } else {
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while (!(mant & 0x400u));
      x = sign | (static_cast<std::uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 0x1f) {
    x = sign | 0x7f800000u | (mant << 13);
  } else {
    x = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

std::uint16_t float_to_bfloat16(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>(x >> 16);
}

float bfloat16_to_float(std::uint16_t b) {
  std::uint32_t x = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// f16 -> f32 eight at a time with F16C (identity maps are millions of
// texels). Exact like the scalar path for every value but NaNs (F16C sets a
// signalling NaN's quiet bit): a block holding a NaN goes the scalar way.
// Returns how many leading values it converted.
namespace {
__attribute__((target("f16c,avx"))) std::size_t half_to_float_f16c(const unsigned char* p, std::size_t n, float* dst) {
  const __m128i magnitude = _mm_set1_epi16(0x7fff), inf = _mm_set1_epi16(0x7c00);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i));
    if (_mm_movemask_epi8(_mm_cmpgt_epi16(_mm_and_si128(h, magnitude), inf))) break;
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  return i;
}
// CPUID by hand: clang's __builtin_cpu_supports does not know "f16c".
bool have_f16c() {
  static const bool yes = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
    if (!(osxsave && avx && f16c)) return false;
    unsigned lo = 0, hi = 0;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 6u) == 6u;  // the OS saves the SSE and AVX registers
  }();
  return yes;
}
}  // namespace
#endif

void to_float32(DType t, const void* src, std::size_t n, float* dst) {
  const auto* p = static_cast<const unsigned char*>(src);
  if (t == DType::f32) {
    if (n) std::memcpy(dst, p, n * 4);
    return;
  }
  if (t != DType::f16 && t != DType::bf16) throw Error(std::string("cannot read ") + dtype_name(t) + " as floating point");
  if (t == DType::bf16) {
    for (std::size_t i = 0; i < n; ++i) {
      std::uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      dst[i] = bfloat16_to_float(h);
    }
    return;
  }
  std::size_t i = 0;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  while (i + 8 <= n && have_f16c()) {
    i += half_to_float_f16c(p + 2 * i, n - i, dst + i);
    // a block with a NaN: its eight values the scalar way
    for (const std::size_t end = std::min(n, i + 8); i < end; ++i) {
      std::uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      dst[i] = half_to_float(h);
    }
  }
#endif
  // f16: normal numbers (and zeros) inline, the rest through half_to_float
  for (; i < n; ++i) {
    std::uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    const std::uint32_t e = (h >> 10) & 0x1fu;
    if (e == 0 || e == 0x1f) {
      dst[i] = half_to_float(h);
      continue;
    }
    const std::uint32_t x = ((static_cast<std::uint32_t>(h) & 0x8000u) << 16) | ((e + 127 - 15) << 23) | ((h & 0x3ffu) << 13);
    std::memcpy(&dst[i], &x, 4);
  }
}

float load_float32(DType t, const void* src) {
  float f;
  to_float32(t, src, 1, &f);
  return f;
}

// ---------------------------------------------------------------- writer ----

struct TensorWriter::Entry {
  TensorInfo info;           // shape[0] = rows written so far
  Shape inner;
  bool rank0 = false;
  bool streaming = false;
  std::uint64_t row_bytes = 0;
  std::vector<unsigned char> pending;  // rows not yet written (streaming)
  json chunks = json::array();         // [offset, length, row0, rows]
};

// Compression happens on the caller's thread; a second thread writes finished
// chunks to the output, so compressing chunk k+1 overlaps writing chunk k.
struct TensorWriter::Codec {
  ZSTD_CCtx* cctx = nullptr;
  io::Output* out = nullptr;
  std::thread writer;
  std::mutex m;
  std::condition_variable cv;
  std::deque<std::vector<unsigned char>> queue;  // chunks waiting to be written
  std::vector<std::vector<unsigned char>> spare;  // recycled buffers
  bool busy = false, stop = false;
  std::exception_ptr error;

  void run() {
    std::unique_lock<std::mutex> lock(m);
    for (;;) {
      cv.wait(lock, [&] { return stop || !queue.empty(); });
      if (queue.empty()) return;
      std::vector<unsigned char> buf = std::move(queue.front());
      queue.pop_front();
      busy = true;
      lock.unlock();
      try {
        if (!error) out->write(buf.data(), buf.size());
      } catch (...) {
        error = std::current_exception();
      }
      lock.lock();
      busy = false;
      buf.clear();
      spare.push_back(std::move(buf));
      cv.notify_all();
    }
  }
  std::vector<unsigned char> take_buffer() {
    std::unique_lock<std::mutex> lock(m);
    cv.wait(lock, [&] { return queue.size() < 2 || error; });
    if (error) std::rethrow_exception(error);
    if (spare.empty()) return {};
    auto b = std::move(spare.back());
    spare.pop_back();
    return b;
  }
  void submit(std::vector<unsigned char> buf) {
    std::lock_guard<std::mutex> lock(m);
    queue.push_back(std::move(buf));
    cv.notify_all();
  }
  void drain() {
    std::unique_lock<std::mutex> lock(m);
    cv.wait(lock, [&] { return (queue.empty() && !busy) || error; });
    if (error) std::rethrow_exception(error);
  }
  ~Codec() {
    {
      std::lock_guard<std::mutex> lock(m);
      stop = true;
      if (error || std::uncaught_exceptions()) queue.clear();
      cv.notify_all();
    }
    if (writer.joinable()) writer.join();
    ZSTD_freeCCtx(cctx);
  }
};

TensorWriter::TensorWriter(io::Output& out, TensorWriterOptions options) : out_(out), opt_(options), codec_(new Codec) {
  if (opt_.level < 0 || opt_.level > 19) throw UsageError("compression level must be 0..19");
  if (opt_.chunk_bytes < 1024) opt_.chunk_bytes = 1024;
  if (opt_.chunk_bytes > (256u << 20)) opt_.chunk_bytes = 256u << 20;
  codec_->cctx = ZSTD_createCCtx();
  if (!codec_->cctx) throw std::bad_alloc();
  ZSTD_CCtx_setParameter(codec_->cctx, ZSTD_c_compressionLevel, opt_.level);
  ZSTD_CCtx_setParameter(codec_->cctx, ZSTD_c_checksumFlag, 0);  // we hash the stored bytes ourselves
  // zstd's worker threads split each chunk into jobs. With one or more workers
  // the compressed bytes do not depend on their number, so files are the same
  // whatever --threads says.
  ZSTD_CCtx_setParameter(codec_->cctx, ZSTD_c_nbWorkers, std::max(1, opt_.threads));
  unsigned char h[kFileHeader] = {};
  std::memcpy(h, kFileMagic, 8);
  put<std::uint16_t>(h + 8, kMajor);
  put<std::uint16_t>(h + 10, kMinor);
  put<std::uint32_t>(h + 12, 0);
  out_.write(h, sizeof h);
  offset_ = kFileHeader;
  codec_->out = &out_;
  codec_->writer = std::thread([c = codec_.get()] { c->run(); });
}

TensorWriter::~TensorWriter() = default;

void TensorWriter::write_chunk(std::uint8_t kind, std::uint8_t dtype, const std::string& descriptor, const void* raw,
                               std::size_t raw_len, Entry* entry, std::int64_t row0, std::int64_t rows) {
  // The whole chunk is assembled in one buffer: header, descriptor, payload
  // (compressed straight into place), then handed to the writer thread.
  std::vector<unsigned char> buf = codec_->take_buffer();
  const std::size_t pre = kChunkHeader + descriptor.size();
  std::size_t stored = raw_len;
  std::uint8_t codec = kCodecNone;
  if (opt_.level > 0 && raw_len > 0) {
    std::size_t bound = ZSTD_compressBound(raw_len);
    buf.resize(pre + bound);
    std::size_t r = ZSTD_compress2(codec_->cctx, buf.data() + pre, bound, raw, raw_len);
    if (ZSTD_isError(r)) throw Error(out_.name() + ": zstd: " + ZSTD_getErrorName(r));
    stored = r;
    codec = kCodecZstd;
    buf.resize(pre + stored);
  } else {
    buf.resize(pre + raw_len);
    if (raw_len) std::memcpy(buf.data() + pre, raw, raw_len);
  }
  unsigned char* h = buf.data();
  std::memset(h, 0, kChunkHeader);
  std::memcpy(h, kChunkMagic, 4);
  h[4] = kind;
  h[5] = codec;
  h[6] = dtype;
  put<std::uint32_t>(h + 8, static_cast<std::uint32_t>(descriptor.size()));
  put<std::uint64_t>(h + 16, stored);
  put<std::uint64_t>(h + 24, raw_len);
  put<std::uint64_t>(h + 32, XXH3_64bits(buf.data() + pre, stored));
  put<std::uint64_t>(h + 40, header_hash(h, descriptor));
  if (!descriptor.empty()) std::memcpy(h + kChunkHeader, descriptor.data(), descriptor.size());
  std::uint64_t at = offset_;
  std::uint64_t len = buf.size();
  codec_->submit(std::move(buf));
  offset_ += len;
  if (entry) entry->chunks.push_back(json::array({at, len, row0, rows}));
}

void TensorWriter::set_metadata(const json& meta) {
  if (closed_) throw Error("tensor writer already closed");
  if (!meta.is_object()) throw UsageError("tensor file metadata must be a JSON object");
  for (auto it = meta.begin(); it != meta.end(); ++it) meta_[it.key()] = it.value();
  std::string text = meta.dump();
  write_chunk(kMeta, 0, std::string(), text.data(), text.size(), nullptr, 0, 0);
}

static std::string data_descriptor(const std::string& name, std::int64_t row0, std::int64_t rows, const Shape& inner, bool rank0) {
  json d = {{"name", name}, {"row0", row0}, {"rows", rows}, {"inner", inner}};
  if (rank0) d["rank0"] = true;
  return d.dump();
}

void TensorWriter::write(const std::string& name, DType dtype, const Shape& shape, const void* data) {
  if (closed_) throw Error("tensor writer already closed");
  if (name.empty() || name.size() > kMaxName) throw UsageError("tensor name must be 1..1024 bytes");
  if (by_name_.count(name)) throw UsageError("tensor '" + name + "' written twice");
  auto e = std::make_unique<Entry>();
  e->info.name = name;
  e->info.dtype = dtype;
  e->rank0 = shape.empty();
  e->inner = e->rank0 ? Shape{} : Shape(shape.begin() + 1, shape.end());
  e->row_bytes = row_bytes_of(dtype, e->inner, "tensor '" + name + "'");
  std::int64_t rows = e->rank0 ? 1 : shape[0];
  shape_numel(shape);
  Entry* ent = e.get();
  entries_.push_back(std::move(e));
  by_name_[name] = ent;
  const auto* p = static_cast<const unsigned char*>(data);
  std::int64_t per = std::max<std::int64_t>(1, static_cast<std::int64_t>(opt_.chunk_bytes / std::max<std::uint64_t>(1, ent->row_bytes)));
  if (rows == 0 || ent->row_bytes == 0) {
    write_chunk(kData, static_cast<std::uint8_t>(dtype), data_descriptor(name, 0, rows, ent->inner, ent->rank0), p, 0, ent, 0, rows);
  }
  for (std::int64_t r = 0; r < rows && ent->row_bytes > 0; r += per) {
    std::int64_t n = std::min(per, rows - r);
    write_chunk(kData, static_cast<std::uint8_t>(dtype), data_descriptor(name, r, n, ent->inner, ent->rank0),
                p + static_cast<std::uint64_t>(r) * ent->row_bytes, static_cast<std::size_t>(n * ent->row_bytes), ent, r, n);
  }
  ent->info.shape = shape;
}

void TensorWriter::begin(const std::string& name, DType dtype, const Shape& inner_shape) {
  if (closed_) throw Error("tensor writer already closed");
  if (name.empty() || name.size() > kMaxName) throw UsageError("tensor name must be 1..1024 bytes");
  if (by_name_.count(name)) throw UsageError("tensor '" + name + "' begun twice");
  auto e = std::make_unique<Entry>();
  e->info.name = name;
  e->info.dtype = dtype;
  e->inner = inner_shape;
  e->streaming = true;
  e->row_bytes = row_bytes_of(dtype, inner_shape, "tensor '" + name + "'");
  e->info.shape = inner_shape;
  e->info.shape.insert(e->info.shape.begin(), 0);
  Entry* ent = e.get();
  by_name_[name] = ent;
  entries_.push_back(std::move(e));
  // A zero-row chunk declares the tensor now, so stream readers (and writers
  // re-encoding a stream) see tensors in the order they were begun.
  write_chunk(kData, static_cast<std::uint8_t>(dtype), data_descriptor(name, 0, 0, inner_shape, false), nullptr, 0, ent, 0, 0);
}

void TensorWriter::flush_pending(const std::string& name, bool all) {
  Entry* e = by_name_.at(name);
  if (e->row_bytes == 0) return;  // rows of zero bytes: nothing to store
  std::uint64_t per_rows = std::max<std::uint64_t>(1, opt_.chunk_bytes / std::max<std::uint64_t>(1, e->row_bytes));
  std::uint64_t per_bytes = per_rows * e->row_bytes;
  std::size_t off = 0;
  std::int64_t written = e->info.shape[0] - static_cast<std::int64_t>(e->pending.size() / std::max<std::uint64_t>(1, e->row_bytes));
  while (e->pending.size() - off >= per_bytes || (all && e->pending.size() > off)) {
    std::size_t n = std::min<std::size_t>(per_bytes, e->pending.size() - off);
    std::int64_t rows = static_cast<std::int64_t>(n / e->row_bytes);
    write_chunk(kData, static_cast<std::uint8_t>(e->info.dtype), data_descriptor(name, written, rows, e->inner, false),
                e->pending.data() + off, n, e, written, rows);
    written += rows;
    off += n;
  }
  e->pending.erase(e->pending.begin(), e->pending.begin() + static_cast<std::ptrdiff_t>(off));
}

void TensorWriter::append(const std::string& name, const void* rows, std::int64_t count) {
  if (closed_) throw Error("tensor writer already closed");
  auto it = by_name_.find(name);
  if (it == by_name_.end() || !it->second->streaming) throw UsageError("tensor '" + name + "' was not begun");
  Entry* e = it->second;
  if (count < 0) throw UsageError("negative row count");
  if (count == 0) return;
  if (e->row_bytes == 0) {
    e->info.shape[0] += count;
    return;
  }
  std::uint64_t bytes = static_cast<std::uint64_t>(count) * e->row_bytes;
  const auto* p = static_cast<const unsigned char*>(rows);
  std::uint64_t per_rows = std::max<std::uint64_t>(1, opt_.chunk_bytes / e->row_bytes);
  if (e->pending.empty() && static_cast<std::uint64_t>(count) >= per_rows) {
    // Whole chunks straight from the caller's memory, no staging copy.
    std::int64_t done = 0;
    while (static_cast<std::uint64_t>(count - done) >= per_rows) {
      std::int64_t row0 = e->info.shape[0];
      write_chunk(kData, static_cast<std::uint8_t>(e->info.dtype),
                  data_descriptor(name, row0, static_cast<std::int64_t>(per_rows), e->inner, false),
                  p + static_cast<std::uint64_t>(done) * e->row_bytes, per_rows * e->row_bytes, e, row0,
                  static_cast<std::int64_t>(per_rows));
      e->info.shape[0] += static_cast<std::int64_t>(per_rows);
      done += static_cast<std::int64_t>(per_rows);
    }
    p += static_cast<std::uint64_t>(done) * e->row_bytes;
    count -= done;
    bytes = static_cast<std::uint64_t>(count) * e->row_bytes;
  }
  e->pending.insert(e->pending.end(), p, p + bytes);
  e->info.shape[0] += count;
  if (e->pending.size() >= per_rows * e->row_bytes) flush_pending(name, false);
}

void TensorWriter::close() {
  if (closed_) return;
  for (auto& e : entries_) {
    if (!e->streaming) continue;
    flush_pending(e->info.name, true);
    if (e->row_bytes == 0 && e->info.shape[0] > 0) {
      // Rows of zero bytes were counted, not stored: one empty chunk records them.
      write_chunk(kData, static_cast<std::uint8_t>(e->info.dtype), data_descriptor(e->info.name, 0, e->info.shape[0], e->inner, false),
                  nullptr, 0, e.get(), 0, e->info.shape[0]);
    }
  }
  json tensors = json::array();
  for (auto& e : entries_)
    tensors.push_back({{"name", e->info.name}, {"dtype", dtype_name(e->info.dtype)}, {"shape", e->info.shape}, {"chunks", e->chunks}});
  json index = {{"metadata", meta_}, {"tensors", tensors}};
  std::string text = index.dump();
  std::uint64_t index_off = offset_;
  write_chunk(kIndex, 0, std::string(), text.data(), text.size(), nullptr, 0, 0);
  codec_->drain();  // every chunk is written; the trailer goes last, from this thread
  unsigned char t[kTrailer] = {};
  put<std::uint64_t>(t, index_off);
  put<std::uint64_t>(t + 8, offset_ - index_off);
  put<std::uint64_t>(t + 16, offset_ + kTrailer);
  std::memcpy(t + 24, kTrailerMagic, 4);
  put<std::uint32_t>(t + 28, static_cast<std::uint32_t>(XXH3_64bits(t, 28)));
  out_.write(t, sizeof t);
  offset_ += kTrailer;
  out_.flush();
  closed_ = true;
}

// ---------------------------------------------------------------- reader ----

struct TensorReader::Index {
  struct Chunk {
    std::uint64_t offset, length;
    std::int64_t row0, rows;
  };
  struct Entry {
    std::vector<Chunk> chunks;
    bool rank0 = false;
  };
  std::map<std::string, std::size_t> by_name;
  std::vector<Entry> entries;  // parallel to infos_
  std::uint64_t index_offset = 0;
};

struct TensorReader::Stream {
  bool started = false;
  bool done = false;
  std::uint64_t chunk_no = 0;
  std::uint64_t offset = 0;
  std::uint64_t total_decoded = 0;
  std::vector<unsigned char> stored, decoded;
  std::deque<TensorInfo> infos;
  std::map<std::string, std::size_t> by_name;
  std::vector<bool> rank0;
  std::vector<json> chunks;  // per tensor: [offset, length, row0, rows] as streamed
  json meta = json::object();
  ZSTD_DCtx* dctx = nullptr;
  ~Stream() { ZSTD_freeDCtx(dctx); }
};

namespace {
struct DCtxHolder {
  ZSTD_DCtx* p = ZSTD_createDCtx();
  ~DCtxHolder() { ZSTD_freeDCtx(p); }
};
ZSTD_DCtx* thread_dctx() {
  thread_local DCtxHolder h;
  if (!h.p) throw std::bad_alloc();
  return h.p;
}

void check_file_header(const unsigned char* h, std::size_t got, const std::string& name) {
  if (got < kFileHeader || std::memcmp(h, kFileMagic, 8) != 0) {
    if (got >= 4 && std::memcmp(h, "\x93NUMPY", std::min<std::size_t>(got, 6)) == 0)
      throw FormatError(name + ": this is a NumPy .npy file, not an hfr tensor file");
    throw FormatError(name + ": not an hfr tensor file (bad magic)");
  }
  auto major = get<std::uint16_t>(h + 8);
  if (major != kMajor)
    throw FormatError(name + ": tensor file format version " + std::to_string(major) + " is not supported (this build reads version 1)");
  if (get<std::uint32_t>(h + 12) != 0) throw FormatError(name + ": unknown header flags");
}
}  // namespace

TensorReader::TensorReader(io::Input& in, TensorFileLimits limits) : in_(in), lim_(limits) {
  if (in_.seekable()) {
    unsigned char h[kFileHeader];
    std::size_t got = static_cast<std::size_t>(std::min<std::uint64_t>(in_.size(), kFileHeader));
    if (got == 0) throw FormatError(in_.name() + ": empty file (expected an hfr tensor file)");
    in_.pread_exact(h, got, 0);
    check_file_header(h, got, in_.name());
    load_index();
    random_access_ = true;
  }
}

TensorReader::~TensorReader() = default;

void TensorReader::load_index() {
  const std::string& nm = in_.name();
  std::uint64_t size = in_.size();
  if (size < kFileHeader + kChunkHeader + kTrailer) throw FormatError(nm + ": truncated tensor file (" + std::to_string(size) + " bytes)");
  unsigned char t[kTrailer];
  in_.pread_exact(t, kTrailer, size - kTrailer);
  if (std::memcmp(t + 24, kTrailerMagic, 4) != 0 || (kVerifyChecksums && get<std::uint32_t>(t + 28) != static_cast<std::uint32_t>(XXH3_64bits(t, 28))))
    throw FormatError(nm + ": truncated or corrupt tensor file (no valid trailer; was the writer interrupted?)");
  std::uint64_t ioff = get<std::uint64_t>(t), ilen = get<std::uint64_t>(t + 8), flen = get<std::uint64_t>(t + 16);
  if (flen != size) throw FormatError(nm + ": file length " + std::to_string(size) + " differs from the recorded " + std::to_string(flen));
  if (ioff < kFileHeader || ilen < kChunkHeader || ioff > size - kTrailer || ilen != size - kTrailer - ioff)
    throw FormatError(nm + ": index position outside the file");
  std::string ctx = nm + ": index";
  unsigned char h[kChunkHeader];
  in_.pread_exact(h, kChunkHeader, ioff);
  ChunkHeader c = decode_chunk_header(h, ctx, lim_);
  if (c.kind != kIndex) throw FormatError(ctx + ": trailer does not point at the index chunk");
  if (c.total() != ilen) throw FormatError(ctx + ": index chunk length disagrees with the trailer");
  std::string descr(c.descr_len, '\0');
  if (c.descr_len) in_.pread_exact(&descr[0], c.descr_len, ioff + kChunkHeader);
  verify_header_hash(h, descr, ctx);
  std::vector<unsigned char> stored(c.stored);
  if (c.stored) in_.pread_exact(stored.data(), c.stored, ioff + kChunkHeader + c.descr_len);
  std::string text(c.raw, '\0');
  decode_payload(c, stored.data(), text.empty() ? nullptr : &text[0], thread_dctx(), ctx);
  json j = parse_json_bounded(text, ctx);
  if (!j.is_object() || !j.contains("tensors") || !j["tensors"].is_array()) throw FormatError(ctx + ": missing tensor list");
  if (j.contains("metadata")) {
    if (!j["metadata"].is_object()) throw FormatError(ctx + ": metadata must be an object");
    meta_ = j["metadata"];
  }
  if (j["tensors"].size() > lim_.max_tensors) throw FormatError(ctx + ": too many tensors");
  index_ = std::make_unique<Index>();
  index_->index_offset = ioff;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> extents;
  for (const auto& tj : j["tensors"]) {
    std::string tctx = ctx + ": tensor #" + std::to_string(infos_.size());
    if (!tj.is_object()) throw FormatError(tctx + ": entry must be an object");
    TensorInfo info;
    info.name = check_name(tj.value("name", json()), tctx);
    tctx = nm + ": tensor '" + info.name + "'";
    if (index_->by_name.count(info.name)) throw FormatError(tctx + ": listed twice in the index");
    if (!tj.contains("dtype") || !tj["dtype"].is_string()) throw FormatError(tctx + ": missing dtype");
    try {
      info.dtype = parse_dtype(tj["dtype"].get<std::string>());
    } catch (const UsageError&) {
      throw FormatError(tctx + ": unknown dtype '" + tj["dtype"].get<std::string>() + "'");
    }
    info.shape = json_shape(tj.value("shape", json()), tctx, lim_.max_rank);
    info.nbytes();
    Index::Entry entry;
    entry.rank0 = info.shape.empty();
    if (!tj.contains("chunks") || !tj["chunks"].is_array()) throw FormatError(tctx + ": missing chunk list");
    std::int64_t rows_expected = entry.rank0 ? 1 : info.shape[0];
    std::int64_t next_row = 0;
    for (const auto& cj : tj["chunks"]) {
      if (!cj.is_array() || cj.size() != 4) throw FormatError(tctx + ": malformed chunk entry");
      for (const auto& v : cj)
        if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<std::int64_t>() >= 0))
          throw FormatError(tctx + ": malformed chunk entry");
      Index::Chunk ch{cj[0].get<std::uint64_t>(), cj[1].get<std::uint64_t>(), 0, 0};
      auto r0 = cj[2].get<std::uint64_t>(), rn = cj[3].get<std::uint64_t>();
      if (r0 > (1ull << 62) || rn > (1ull << 62)) throw FormatError(tctx + ": row range out of bounds");
      ch.row0 = static_cast<std::int64_t>(r0);
      ch.rows = static_cast<std::int64_t>(rn);
      if (ch.row0 != next_row) throw FormatError(tctx + ": chunks do not cover the rows contiguously");
      next_row += ch.rows;
      if (next_row > rows_expected) throw FormatError(tctx + ": chunks hold more rows than the shape");
      if (ch.offset < kFileHeader || ch.length < kChunkHeader || ch.offset > ioff || ch.length > ioff - ch.offset)
        throw FormatError(tctx + ": chunk at offset " + std::to_string(ch.offset) + " lies outside the data area");
      extents.emplace_back(ch.offset, ch.length);
      entry.chunks.push_back(ch);
    }
    if (next_row != rows_expected && !(entry.rank0 && entry.chunks.empty()))
      throw FormatError(tctx + ": chunks hold " + std::to_string(next_row) + " rows, shape says " + std::to_string(rows_expected));
    if (entry.chunks.empty() && info.nbytes() != 0) throw FormatError(tctx + ": no chunks for a non-empty tensor");
    index_->by_name[info.name] = infos_.size();
    infos_.push_back(std::move(info));
    index_->entries.push_back(std::move(entry));
  }
  std::sort(extents.begin(), extents.end());
  for (std::size_t i = 1; i < extents.size(); ++i)
    if (extents[i - 1].first + extents[i - 1].second > extents[i].first)
      throw FormatError(nm + ": index lists overlapping chunks at offsets " + std::to_string(extents[i - 1].first) + " and " +
                        std::to_string(extents[i].first));
}

const TensorInfo* TensorReader::find(const std::string& name) const {
  if (random_access_) {
    auto it = index_->by_name.find(name);
    return it == index_->by_name.end() ? nullptr : &infos_[it->second];
  }
  for (const auto& i : infos_)
    if (i.name == name) return &i;
  return nullptr;
}

const TensorInfo& TensorReader::info(const std::string& name) const {
  const TensorInfo* i = find(name);
  if (!i) throw FormatError(in_.name() + ": no tensor named '" + name + "'");
  return *i;
}

void TensorReader::read_rows(const std::string& name, std::int64_t row0, std::int64_t count, void* dst) {
  if (!random_access_) throw Error(in_.name() + ": random access needs a seekable file (not a pipe)");
  const TensorInfo& ti = info(name);
  const Index::Entry& ent = index_->entries[index_->by_name.at(name)];
  std::int64_t nrows = ent.rank0 ? 1 : ti.shape[0];
  if (row0 < 0 || count < 0 || row0 > nrows || count > nrows - row0)
    throw Error(in_.name() + ": tensor '" + name + "': rows [" + std::to_string(row0) + ", " + std::to_string(row0 + count) +
                ") outside [0, " + std::to_string(nrows) + ")");
  std::uint64_t rb = ti.row_bytes();
  auto* out = static_cast<unsigned char*>(dst);
  std::vector<unsigned char> stored, scratch;
  for (const auto& ch : ent.chunks) {
    if (ch.row0 + ch.rows <= row0 || ch.row0 >= row0 + count || ch.rows == 0) continue;
    std::string ctx = in_.name() + ": tensor '" + name + "' chunk at offset " + std::to_string(ch.offset);
    unsigned char h[kChunkHeader];
    in_.pread_exact(h, kChunkHeader, ch.offset);
    ChunkHeader c = decode_chunk_header(h, ctx, lim_);
    if (c.kind != kData || c.total() != ch.length) throw FormatError(ctx + ": chunk header disagrees with the index");
    std::string descr(c.descr_len, '\0');
    if (c.descr_len) in_.pread_exact(&descr[0], c.descr_len, ch.offset + kChunkHeader);
    verify_header_hash(h, descr, ctx);
    json d = parse_json_bounded(descr, ctx);
    if (!d.is_object() || d.value("name", json()) != json(name) || json_int(d, "row0", ctx) != ch.row0 || json_int(d, "rows", ctx) != ch.rows ||
        c.dtype != static_cast<std::uint8_t>(ti.dtype))
      throw FormatError(ctx + ": chunk descriptor disagrees with the index");
    std::uint64_t want;
    if (mul_overflow(static_cast<std::uint64_t>(ch.rows), rb, want) || c.raw != want)
      throw FormatError(ctx + ": chunk holds " + std::to_string(c.raw) + " bytes, rows × row size is " + std::to_string(want));
    stored.resize(c.stored);
    if (c.stored) in_.pread_exact(stored.data(), c.stored, ch.offset + kChunkHeader + c.descr_len);
    std::int64_t a = std::max(row0, ch.row0), b = std::min(row0 + count, ch.row0 + ch.rows);
    unsigned char* target = out + static_cast<std::uint64_t>(a - row0) * rb;
    if (a == ch.row0 && b == ch.row0 + ch.rows) {
      decode_payload(c, stored.data(), target, thread_dctx(), ctx);  // straight into the caller's memory
    } else {
      scratch.resize(c.raw);
      decode_payload(c, stored.data(), scratch.data(), thread_dctx(), ctx);
      std::memcpy(target, scratch.data() + static_cast<std::uint64_t>(a - ch.row0) * rb, static_cast<std::uint64_t>(b - a) * rb);
    }
  }
}

void TensorReader::read_into(const std::string& name, void* dst, std::uint64_t dst_bytes) {
  const TensorInfo& ti = info(name);
  if (dst_bytes != ti.nbytes())
    throw Error(in_.name() + ": tensor '" + name + "' has " + std::to_string(ti.nbytes()) + " bytes, buffer has " + std::to_string(dst_bytes));
  std::int64_t rows = ti.shape.empty() ? 1 : ti.shape[0];
  read_rows(name, 0, rows, dst);
}

Tensor TensorReader::read(const std::string& name) {
  const TensorInfo& ti = info(name);
  std::uint64_t n = ti.nbytes();
  if (n > lim_.max_total_bytes) throw FormatError(in_.name() + ": tensor '" + name + "' (" + std::to_string(n) + " bytes) exceeds the read limit");
  Tensor t;
  t.info = ti;
  t.data = std::make_shared<std::vector<unsigned char>>(static_cast<std::size_t>(n));
  read_into(name, t.data->data(), n);
  return t;
}

bool TensorReader::next(TensorChunk& chunk) {
  if (!stream_) stream_ = std::make_unique<Stream>();
  Stream& s = *stream_;
  const std::string& nm = in_.name();
  if (s.done) return false;
  if (!s.started) {
    s.dctx = ZSTD_createDCtx();
    if (!s.dctx) throw std::bad_alloc();
    unsigned char h[kFileHeader];
    if (random_access_) in_.seek(0);
    std::size_t got = in_.read_full(h, kFileHeader);
    if (got == 0) throw FormatError(nm + ": empty input (expected an hfr tensor file)");
    check_file_header(h, got, nm);
    s.offset = kFileHeader;
    s.started = true;
  }
  for (;;) {
    std::string ctx = nm + ": chunk " + std::to_string(s.chunk_no) + " (offset " + std::to_string(s.offset) + ")";
    unsigned char h[kChunkHeader];
    std::size_t got = in_.read_full(h, kChunkHeader);
    if (got == 0) throw FormatError(nm + ": truncated tensor file: input ended after " + std::to_string(s.chunk_no) + " chunks without an index (was the writer interrupted?)");
    if (got < kChunkHeader) throw FormatError(ctx + ": truncated chunk header");
    ChunkHeader c = decode_chunk_header(h, ctx, lim_);
    std::string descr(c.descr_len, '\0');
    if (c.descr_len && in_.read_full(&descr[0], c.descr_len) != c.descr_len) throw FormatError(ctx + ": truncated descriptor");
    verify_header_hash(h, descr, ctx);
    // Grow the buffer as bytes arrive, so a header that lies about its size
    // cannot make a short stream allocate the full claimed amount.
    s.stored.clear();
    for (std::uint64_t got = 0; got < c.stored;) {
      std::size_t step = static_cast<std::size_t>(std::min<std::uint64_t>(c.stored - got, 16u << 20));
      s.stored.resize(static_cast<std::size_t>(got) + step);
      if (in_.read_full(s.stored.data() + got, step) != step) throw FormatError(ctx + ": truncated payload");
      got += step;
    }
    const std::uint64_t chunk_offset = s.offset;
    s.offset += c.total();
    ++s.chunk_no;
    if (c.kind == kMeta || c.kind == kIndex) {
      std::string text(c.raw, '\0');
      decode_payload(c, s.stored.data(), text.empty() ? nullptr : &text[0], s.dctx, ctx);
      json j = parse_json_bounded(text, ctx);
      if (!j.is_object()) throw FormatError(ctx + ": metadata must be a JSON object");
      if (c.kind == kMeta) {
        for (auto it = j.begin(); it != j.end(); ++it) s.meta[it.key()] = it.value();
        if (!random_access_) meta_ = s.meta;
        continue;
      }
      // Index: must agree with what was streamed, then the trailer ends the file.
      if (!j.contains("tensors") || !j["tensors"].is_array() || j["tensors"].size() != s.infos.size())
        throw FormatError(ctx + ": index disagrees with the streamed chunks");
      for (const auto& tj : j["tensors"]) {
        if (!tj.is_object() || !tj.contains("name") || !tj["name"].is_string()) throw FormatError(ctx + ": malformed index entry");
        auto it = s.by_name.find(tj["name"].get<std::string>());
        if (it == s.by_name.end()) throw FormatError(ctx + ": index lists a tensor that was never streamed");
        const TensorInfo& ti = s.infos[it->second];
        if (json_shape(tj.value("shape", json()), ctx, lim_.max_rank) != ti.shape || tj.value("dtype", json()) != json(dtype_name(ti.dtype)))
          throw FormatError(ctx + ": index shape or dtype of '" + ti.name + "' disagrees with the streamed chunks");
        if (tj.value("chunks", json()) != s.chunks[it->second])
          throw FormatError(ctx + ": index chunk list of '" + ti.name + "' disagrees with the streamed chunks");
      }
      unsigned char t[kTrailer];
      if (in_.read_full(t, kTrailer) != kTrailer) throw FormatError(nm + ": truncated trailer");
      if (std::memcmp(t + 24, kTrailerMagic, 4) != 0 || (kVerifyChecksums && get<std::uint32_t>(t + 28) != static_cast<std::uint32_t>(XXH3_64bits(t, 28))) ||
          get<std::uint64_t>(t + 16) != s.offset + kTrailer)
        throw FormatError(nm + ": corrupt trailer");
      unsigned char extra;
      if (in_.read_full(&extra, 1) != 0) throw FormatError(nm + ": unexpected data after the end of the tensor file");
      s.done = true;
      return false;
    }
    // Data chunk.
    DType dt;
    if (!dtype_from_code(c.dtype, dt)) throw FormatError(ctx + ": unknown dtype code " + std::to_string(c.dtype));
    json d = parse_json_bounded(descr, ctx);
    if (!d.is_object()) throw FormatError(ctx + ": malformed descriptor");
    std::string name = check_name(d.value("name", json()), ctx);
    ctx += ": tensor '" + name + "'";
    std::int64_t row0 = json_int(d, "row0", ctx, 0, 1ll << 62), rows = json_int(d, "rows", ctx, 0, 1ll << 62);
    Shape inner = json_shape(d.value("inner", json()), ctx, lim_.max_rank > 0 ? lim_.max_rank - 1 : 0);
    bool rank0 = d.value("rank0", false);
    auto it = s.by_name.find(name);
    TensorInfo* ti;
    if (it == s.by_name.end()) {
      if (row0 != 0) throw FormatError(ctx + ": first chunk does not start at row 0");
      if (s.infos.size() >= lim_.max_tensors) throw FormatError(ctx + ": too many tensors");
      if (rank0 && (!inner.empty() || rows != 1)) throw FormatError(ctx + ": malformed scalar chunk");
      s.by_name[name] = s.infos.size();
      s.infos.push_back(TensorInfo{name, dt, Shape{}});
      s.rank0.push_back(rank0);
      s.chunks.push_back(json::array());
      ti = &s.infos.back();
      ti->shape = inner;
      if (!rank0) ti->shape.insert(ti->shape.begin(), 0);
    } else {
      ti = &s.infos[it->second];
      bool was_rank0 = s.rank0[it->second];
      Shape cur_inner = ti->shape.empty() ? Shape{} : Shape(ti->shape.begin() + 1, ti->shape.end());
      if (was_rank0 || rank0) throw FormatError(ctx + ": scalar tensor has more than one chunk");
      if (ti->dtype != dt || cur_inner != inner) throw FormatError(ctx + ": dtype or shape changes between chunks");
      if (row0 != ti->shape[0]) throw FormatError(ctx + ": chunk starts at row " + std::to_string(row0) + ", expected " + std::to_string(ti->shape[0]));
    }
    std::uint64_t rb = row_bytes_of(dt, inner, ctx), want;
    if (mul_overflow(static_cast<std::uint64_t>(rows), rb, want) || c.raw != want)
      throw FormatError(ctx + ": chunk holds " + std::to_string(c.raw) + " bytes, rows × row size differs");
    s.total_decoded += c.raw;
    if (s.total_decoded > lim_.max_total_bytes) throw FormatError(ctx + ": stream exceeds the read limit of " + std::to_string(lim_.max_total_bytes) + " bytes");
    if (s.decoded.size() < c.raw) s.decoded.resize(c.raw);
    decode_payload(c, s.stored.data(), s.decoded.data(), s.dctx, ctx);
    if (!rank0) ti->shape[0] += rows;
    const std::size_t idx = s.by_name[name];
    s.chunks[idx].push_back(json::array({chunk_offset, c.total(), row0, rows}));
    if (!random_access_) {  // keep the public list in step: one entry, not a copy of all
      if (idx == infos_.size()) infos_.push_back(*ti);
      else infos_[idx].shape = ti->shape;
    }
    chunk.tensor = ti;
    chunk.row0 = row0;
    chunk.rows = rows;
    chunk.data = s.decoded.data();
    chunk.bytes = c.raw;
    return true;
  }
}

std::vector<Tensor> TensorReader::read_all() {
  std::vector<Tensor> out;
  if (random_access_) {
    std::uint64_t total = 0;
    for (const auto& ti : infos_) {
      total += ti.nbytes();
      if (total > lim_.max_total_bytes) throw FormatError(in_.name() + ": tensors exceed the read limit of " + std::to_string(lim_.max_total_bytes) + " bytes");
    }
    for (const auto& ti : infos_) out.push_back(read(ti.name));
    return out;
  }
  std::map<std::string, std::size_t> pos;
  std::vector<std::string> names;
  TensorChunk c;
  while (next(c)) {
    auto it = pos.find(c.tensor->name);
    if (it == pos.end()) {
      it = pos.emplace(c.tensor->name, out.size()).first;
      names.push_back(c.tensor->name);
      out.emplace_back();
      out.back().data = std::make_shared<std::vector<unsigned char>>();
    }
    auto& buf = *out[it->second].data;
    buf.insert(buf.end(), c.data, c.data + c.bytes);
  }
  for (std::size_t i = 0; i < out.size(); ++i) out[i].info = info(names[i]);
  return out;
}

std::vector<TensorInfo> verify_tensor_file(io::Input& in, TensorFileLimits limits) {
  TensorReader r(in, limits);
  TensorChunk c;
  while (r.next(c)) {
  }
  // next() has checked every chunk and compared the index with what it streamed.
  return r.tensors();
}

namespace {
template <class T>
std::vector<T> read_exact(TensorReader& r, const std::string& name, const std::string& file, DType want) {
  const TensorInfo& info = r.info(name);
  if (info.dtype != want)
    throw FormatError(file + ": tensor " + name + " is " + dtype_name(info.dtype) + ", expected " + dtype_name(want));
  Tensor t = r.read(name);
  std::vector<T> out(shape_numel(info.shape));
  if (!out.empty()) std::memcpy(out.data(), t.ptr(), out.size() * sizeof(T));
  return out;
}
}  // namespace

std::vector<float> read_floats(TensorReader& r, const std::string& name, const std::string& file) {
  const TensorInfo& info = r.info(name);
  if (info.dtype != DType::f32 && info.dtype != DType::f16 && info.dtype != DType::bf16)
    throw FormatError(file + ": tensor " + name + " is " + dtype_name(info.dtype) + ", expected a float type");
  Tensor t = r.read(name);
  std::vector<float> out(shape_numel(info.shape));
  to_float32(info.dtype, t.ptr(), out.size(), out.data());
  return out;
}
std::vector<std::uint8_t> read_u8(TensorReader& r, const std::string& name, const std::string& file) {
  return read_exact<std::uint8_t>(r, name, file, DType::u8);
}
std::vector<std::int32_t> read_i32(TensorReader& r, const std::string& name, const std::string& file) {
  return read_exact<std::int32_t>(r, name, file, DType::i32);
}

}  // namespace hfr
