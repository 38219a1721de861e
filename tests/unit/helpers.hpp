// Test helpers: a non-seekable input (as a pipe looks to the library).
#pragma once
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "hfr/io.hpp"

namespace hfr::test {

class PipeInput : public io::Input {
 public:
  PipeInput(std::vector<unsigned char> data, std::size_t max_read = 7) : data_(std::move(data)), max_read_(max_read) {
    name_ = "<pipe>";
  }
  std::size_t read(void* buf, std::size_t n) override {
    std::size_t k = std::min({n, data_.size() - pos_, max_read_});
    if (k) std::memcpy(buf, data_.data() + pos_, k);
    pos_ += k;
    return k;
  }
  bool seekable() const override { return false; }
  std::uint64_t size() const override { return 0; }
  void seek(std::uint64_t) override { throw std::logic_error("not seekable"); }
  std::uint64_t position() const override { return pos_; }
  void pread_exact(void*, std::size_t, std::uint64_t) override { throw std::logic_error("not seekable"); }

 private:
  std::vector<unsigned char> data_;
  std::size_t max_read_;
  std::size_t pos_ = 0;
};

inline std::vector<unsigned char> bytes(const std::string& s) { return {s.begin(), s.end()}; }

}  // namespace hfr::test
