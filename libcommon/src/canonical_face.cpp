#include "hfr/canonical_face.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "hfr/error.hpp"
#include "hfr/io.hpp"

namespace hfr {
namespace {

class Reader {
 public:
  Reader(const unsigned char* p, std::size_t n, std::string ctx) : p_(p), end_(p + n), ctx_(std::move(ctx)) {}
  bool done() const { return p_ == end_; }
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ == end_) fail("truncated varint");
      unsigned char b = *p_++;
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("varint longer than 10 bytes");
  }
  Reader bytes() {
    std::uint64_t n = varint();
    if (n > static_cast<std::uint64_t>(end_ - p_)) fail("length " + std::to_string(n) + " runs past the end");
    Reader r(p_, static_cast<std::size_t>(n), ctx_);
    p_ += n;
    return r;
  }
  float fixed32() {
    if (end_ - p_ < 4) fail("truncated float");
    float f;
    std::memcpy(&f, p_, 4);  // little-endian on every platform hfr builds for
    p_ += 4;
    return f;
  }
  void skip(int wire) {
    switch (wire) {
      case 0: varint(); break;
      case 1: if (end_ - p_ < 8) fail("truncated field"); p_ += 8; break;
      case 2: bytes(); break;
      case 5: fixed32(); break;
      default: fail("unsupported wire type " + std::to_string(wire));
    }
  }
  [[noreturn]] void fail(const std::string& why) const { throw FormatError(ctx_ + ": " + why); }

 private:
  const unsigned char* p_;
  const unsigned char* end_;
  std::string ctx_;
};

constexpr std::size_t kMaxVertices = 1 << 20;

}  // namespace

CanonicalFace parse_canonical_face(const unsigned char* data, std::size_t size, const std::string& name) {
  CanonicalFace f;
  std::vector<float> vb;
  std::vector<std::uint64_t> ib;
  bool have_mesh = false;
  Reader top(data, size, name);
  while (!top.done()) {
    std::uint64_t key = top.varint();
    int field = static_cast<int>(key >> 3), wire = static_cast<int>(key & 7);
    if (field == 1 && wire == 2) {  // canonical_mesh
      have_mesh = true;
      Reader mesh = top.bytes();
      while (!mesh.done()) {
        std::uint64_t k = mesh.varint();
        int fl = static_cast<int>(k >> 3), w = static_cast<int>(k & 7);
        if (fl == 1 && w == 0) {
          if (mesh.varint() != 0) mesh.fail("vertex_type is not VERTEX_PT (x, y, z, u, v)");
        } else if (fl == 2 && w == 0) {
          if (mesh.varint() != 0) mesh.fail("primitive_type is not TRIANGLE");
        } else if (fl == 3 && w == 2) {
          Reader v = mesh.bytes();
          while (!v.done()) {
            if (vb.size() >= 5 * kMaxVertices) v.fail("too many vertices");
            vb.push_back(v.fixed32());
          }
        } else if (fl == 3 && w == 5) {
          vb.push_back(mesh.fixed32());
        } else if (fl == 4 && w == 2) {
          Reader v = mesh.bytes();
          while (!v.done()) {
            if (ib.size() >= 3 * 4 * kMaxVertices) v.fail("too many indices");
            ib.push_back(v.varint());
          }
        } else if (fl == 4 && w == 0) {
          ib.push_back(mesh.varint());
        } else {
          mesh.skip(w);
        }
      }
    } else if (field == 2 && wire == 2) {  // procrustes_landmark_basis
      Reader b = top.bytes();
      std::uint64_t id = 0;
      float weight = 0;
      while (!b.done()) {
        std::uint64_t k = b.varint();
        int fl = static_cast<int>(k >> 3), w = static_cast<int>(k & 7);
        if (fl == 1 && w == 0) id = b.varint();
        else if (fl == 2 && w == 5) weight = b.fixed32();
        else b.skip(w);
      }
      if (id >= kMaxVertices || !std::isfinite(weight)) top.fail("bad pose basis entry");
      f.pose_basis.push_back({static_cast<int>(id), weight});
    } else {
      top.skip(wire);
    }
  }
  if (!have_mesh || vb.empty()) top.fail("no canonical mesh");
  if (vb.size() % 5) top.fail("vertex data is not a multiple of 5 floats (x, y, z, u, v)");
  if (ib.size() % 3) top.fail("index data is not a multiple of 3 (triangles)");
  const std::size_t nv = vb.size() / 5;
  for (std::size_t i = 0; i < nv; ++i) {
    for (int k = 0; k < 5; ++k)
      if (!std::isfinite(vb[5 * i + k])) top.fail("vertex " + std::to_string(i) + " is not finite");
    f.vertices.push_back({vb[5 * i], vb[5 * i + 1], vb[5 * i + 2]});
    f.uvs.push_back({vb[5 * i + 3], vb[5 * i + 4]});
  }
  for (std::size_t t = 0; t < ib.size() / 3; ++t) {
    std::array<int, 3> tri{};
    for (int k = 0; k < 3; ++k) {
      if (ib[3 * t + k] >= nv) top.fail("triangle " + std::to_string(t) + " names vertex " + std::to_string(ib[3 * t + k]) + " of " + std::to_string(nv));
      tri[k] = static_cast<int>(ib[3 * t + k]);
    }
    f.triangles.push_back(tri);
  }
  for (const auto& [id, w] : f.pose_basis)
    if (static_cast<std::size_t>(id) >= nv) top.fail("pose basis names vertex " + std::to_string(id) + " of " + std::to_string(nv));
  return f;
}

CanonicalFace read_canonical_face(const std::string& path) {
  auto bytes = io::read_file(path, 64u << 20);
  return parse_canonical_face(bytes.data(), bytes.size(), path);
}

}  // namespace hfr
