// Input and output streams: "-" for stdin/stdout, atomic output files
// (temporary file + rename; removed on error or on SIGINT/SIGTERM), refusal
// to write binary data to a terminal, and EPIPE turned into hfr::BrokenPipe.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace hfr::io {

// Call once at start-up: ignores SIGPIPE (writes then fail with EPIPE, which
// becomes BrokenPipe), and removes registered temporary files on SIGINT/SIGTERM
// before dying of the signal.
void install_signal_handlers();

class Input {
 public:
  virtual ~Input() = default;
  // Reads up to n bytes; returns 0 only at end of input. Throws hfr::Error.
  virtual std::size_t read(void* buf, std::size_t n) = 0;
  // Reads exactly n bytes or returns the count read before end of input.
  std::size_t read_full(void* buf, std::size_t n);
  virtual bool seekable() const = 0;
  virtual std::uint64_t size() const = 0;  // only if seekable
  virtual void seek(std::uint64_t offset) = 0;  // only if seekable
  virtual std::uint64_t position() const = 0;
  // Positional read for seekable inputs (does not move the stream position).
  virtual void pread_exact(void* buf, std::size_t n, std::uint64_t offset) = 0;
  const std::string& name() const { return name_; }

 protected:
  std::string name_;
};

// "-" is stdin. Throws hfr::Error("path: No such file or directory") etc.
std::unique_ptr<Input> open_input(const std::string& path);
// Reads up to n leading bytes of `in` into `head` (fewer at end of input) and
// returns an input that yields the whole stream again from its start: a
// seekable input is rewound, a stream replays the bytes read. For sniffing the
// kind of data on stdin.
std::unique_ptr<Input> peek_input(std::unique_ptr<Input> in, std::size_t n, std::string& head);
// An input over a memory buffer (tests, fuzzing); seekable.
std::unique_ptr<Input> memory_input(const void* data, std::size_t size, std::string name = "<memory>");

class Output {
 public:
  virtual ~Output() = default;
  virtual void write(const void* data, std::size_t n) = 0;
  void write(const std::string& s) { write(s.data(), s.size()); }
  virtual void flush() = 0;
  // Makes the output final: flushes, and for atomic files syncs and renames the
  // temporary into place. Without commit() an atomic file is removed.
  virtual void commit() = 0;
  virtual std::uint64_t bytes_written() const = 0;
  const std::string& name() const { return name_; }

 protected:
  std::string name_;
};

enum class Content { text, binary };

struct OutputOptions {
  Content content = Content::text;
  bool force_terminal = false;  // allow binary to a terminal
};

// "-" is stdout (refuses binary content on a terminal unless forced); any other
// path is written atomically.
std::unique_ptr<Output> open_output(const std::string& path, const OutputOptions& opts = {});
// An output that collects bytes in memory (tests).
class MemoryOutput;
std::unique_ptr<MemoryOutput> memory_output();

class MemoryOutput : public Output {
 public:
  MemoryOutput() { name_ = "<memory>"; }
  using Output::write;
  void write(const void* data, std::size_t n) override;
  void flush() override {}
  void commit() override {}
  std::uint64_t bytes_written() const override { return data_.size(); }
  const std::vector<unsigned char>& data() const { return data_; }

 private:
  std::vector<unsigned char> data_;
};

// Reads a whole (small) file with a size limit.
std::vector<unsigned char> read_file(const std::string& path, std::uint64_t max_bytes);

bool is_terminal(int fd);
bool path_is_directory(const std::string& path);

}  // namespace hfr::io
