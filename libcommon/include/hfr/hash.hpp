// SHA-256 (FIPS 180-4), for model provenance and integrity checks.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace hfr {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, std::size_t n);
  std::array<std::uint8_t, 32> digest();  // finishes; the object must not be updated afterwards
  std::string hex();                      // digest() as lower-case hex

 private:
  void block(const std::uint8_t* p);
  std::uint32_t h_[8];
  std::uint8_t buf_[64];
  std::size_t fill_ = 0;
  std::uint64_t bytes_ = 0;
};

std::string sha256_hex(const void* data, std::size_t n);
// Of a whole file, streamed; throws Error naming the file.
std::string sha256_file(const std::string& path);

// splitmix64's output function applied to x + the golden-ratio increment: a
// well-mixed 64-bit hash of a seed (derived seeds in hfr-synth, hfr-train).
inline std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// FNV-1a over a string's bytes, from `basis` (FNV's offset basis by
// default): a cheap, stable hash of names for deriving seeds (hfr-synth's
// identities, the router noise of each switch style modulation block).
inline std::uint64_t fnv1a64(std::string_view s, std::uint64_t basis = 1469598103934665603ULL) {
  for (unsigned char c : s) basis = (basis ^ c) * 1099511628211ULL;
  return basis;
}

}  // namespace hfr
