// Tensor-file write/read throughput on embedding-like data, compared by
// bench/run_tensorfile.sh with the zstd CLI on the same raw bytes.
// Usage: bench_tensorfile DIR ROWS DIM LEVEL
// Writes DIR/emb_f32.raw, DIR/emb_f16.raw (raw bytes for zstd) and the .hft
// files, and prints one JSON line per dtype.
#include <chrono>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "hfr/io.hpp"
#include "hfr/tensorfile.hpp"

using clk = std::chrono::steady_clock;

static double secs(clk::time_point a) { return std::chrono::duration<double>(clk::now() - a).count(); }

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: bench_tensorfile DIR ROWS DIM LEVEL\n");
    return 2;
  }
  std::string dir = argv[1];
  long rows = std::stol(argv[2]), dim = std::stol(argv[3]);
  int level = std::stoi(argv[4]);
  // L2-normalised Gaussian vectors: statistically like face embeddings (they
  // compress as poorly as real ones; see docs/build-notes).
  std::vector<float> emb(static_cast<std::size_t>(rows * dim));
  std::mt19937_64 g(1);
  std::normal_distribution<float> nd;
  for (long r = 0; r < rows; ++r) {
    float* p = &emb[static_cast<std::size_t>(r * dim)];
    double s = 0;
    for (long d = 0; d < dim; ++d) s += (p[d] = nd(g)) * static_cast<double>(p[d]);
    float inv = static_cast<float>(1.0 / std::sqrt(s));
    for (long d = 0; d < dim; ++d) p[d] *= inv;
  }
  std::vector<std::uint16_t> half(emb.size());
  for (std::size_t i = 0; i < emb.size(); ++i) half[i] = hfr::float_to_half(emb[i]);

  for (int pass = 0; pass < 2; ++pass) {
    bool f16 = pass == 1;
    const void* data = f16 ? static_cast<const void*>(half.data()) : emb.data();
    std::uint64_t bytes = emb.size() * (f16 ? 2 : 4);
    std::string tag = f16 ? "f16" : "f32";
    {
      auto raw = hfr::io::open_output(dir + "/emb_" + tag + ".raw", {hfr::io::Content::binary, true});
      raw->write(data, bytes);
      raw->commit();
    }
    std::string path = dir + "/emb_" + tag + ".hft";
    auto t0 = clk::now();
    {
      auto out = hfr::io::open_output(path, {hfr::io::Content::binary, true});
      hfr::TensorWriterOptions o;
      o.level = level;
      hfr::TensorWriter w(*out, o);
      w.write("embeddings", f16 ? hfr::DType::f16 : hfr::DType::f32, {rows, dim}, data);
      w.close();
      out->commit();
    }
    double tw = secs(t0);
    std::uint64_t file_bytes;
    double tr, ts;
    {
      std::vector<unsigned char> back(bytes);
      auto t1 = clk::now();
      auto in = hfr::io::open_input(path);
      file_bytes = in->size();
      hfr::TensorReader r(*in);
      r.read_into("embeddings", back.data(), bytes);
      tr = secs(t1);
      if (std::memcmp(back.data(), data, bytes) != 0) {
        std::fprintf(stderr, "read back differs\n");
        return 1;
      }
    }
    {
      // Streaming read: chunk by chunk as from a pipe (no seeking).
      FILE* f = std::fopen(path.c_str(), "rb");
      auto t2 = clk::now();
      struct NoSeek : hfr::io::Input {
        FILE* f;
        explicit NoSeek(FILE* file) : f(file) { name_ = "stream"; }
        std::size_t read(void* b, std::size_t n) override { return std::fread(b, 1, n, f); }
        bool seekable() const override { return false; }
        std::uint64_t size() const override { return 0; }
        void seek(std::uint64_t) override {}
        std::uint64_t position() const override { return 0; }
        void pread_exact(void*, std::size_t, std::uint64_t) override {}
      } in(f);
      hfr::TensorReader r(in);
      hfr::TensorChunk c;
      std::uint64_t got = 0;
      while (r.next(c)) got += c.bytes;
      ts = secs(t2);
      std::fclose(f);
      if (got != bytes) return 1;
    }
    std::printf("{\"dtype\":\"%s\",\"rows\":%ld,\"dim\":%ld,\"level\":%d,\"raw_bytes\":%llu,\"file_bytes\":%llu,"
                "\"write_s\":%.3f,\"read_s\":%.3f,\"stream_read_s\":%.3f}\n",
                tag.c_str(), rows, dim, level, static_cast<unsigned long long>(bytes), static_cast<unsigned long long>(file_bytes), tw,
                tr, ts);
    std::fflush(stdout);
  }
  return 0;
}
