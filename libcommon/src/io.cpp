#include "hfr/io.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "hfr/error.hpp"

namespace hfr::io {
namespace {

std::string errno_message(const std::string& context, int err) {
  return context + ": " + std::strerror(err);
}

// ---- temporary-file registry, readable from a signal handler ----
constexpr int kMaxTemps = 64;
constexpr int kMaxPath = 4096;
char g_temp_paths[kMaxTemps][kMaxPath];
std::atomic<bool> g_temp_used[kMaxTemps];
std::mutex g_temp_mutex;

int register_temp(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_temp_mutex);
  if (path.size() + 1 > static_cast<std::size_t>(kMaxPath)) return -1;
  for (int i = 0; i < kMaxTemps; ++i) {
    if (!g_temp_used[i].load()) {
      std::memcpy(g_temp_paths[i], path.c_str(), path.size() + 1);
      g_temp_used[i].store(true);
      return i;
    }
  }
  return -1;
}

void unregister_temp(int slot) {
  if (slot < 0) return;
  std::lock_guard<std::mutex> lock(g_temp_mutex);
  g_temp_used[slot].store(false);
}

extern "C" void hfr_fatal_signal(int sig) {
  for (int i = 0; i < kMaxTemps; ++i)
    if (g_temp_used[i].load()) ::unlink(g_temp_paths[i]);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

// ---- inputs ----
class FdInput : public Input {
 public:
  FdInput(int fd, std::string name, bool owned) : fd_(fd), owned_(owned) {
    name_ = std::move(name);
    struct stat st{};
    if (fstat(fd_, &st) == 0 && S_ISREG(st.st_mode)) {
      seekable_ = true;
      size_ = static_cast<std::uint64_t>(st.st_size);
      off_t cur = lseek(fd_, 0, SEEK_CUR);
      pos_ = cur < 0 ? 0 : static_cast<std::uint64_t>(cur);
    }
  }
  ~FdInput() override {
    if (owned_) ::close(fd_);
  }
  std::size_t read(void* buf, std::size_t n) override {
    for (;;) {
      ssize_t r = ::read(fd_, buf, n);
      if (r >= 0) {
        pos_ += static_cast<std::uint64_t>(r);
        return static_cast<std::size_t>(r);
      }
      if (errno == EINTR) continue;
      if (errno == EISDIR) throw Error(name_ + ": is a directory");
      throw Error(errno_message(name_, errno));
    }
  }
  bool seekable() const override { return seekable_; }
  std::uint64_t size() const override { return size_; }
  void seek(std::uint64_t offset) override {
    if (!seekable_) throw Error(name_ + ": cannot seek in a stream");
    if (lseek(fd_, static_cast<off_t>(offset), SEEK_SET) < 0) throw Error(errno_message(name_, errno));
    pos_ = offset;
  }
  std::uint64_t position() const override { return pos_; }
  void pread_exact(void* buf, std::size_t n, std::uint64_t offset) override {
    if (!seekable_) throw Error(name_ + ": cannot seek in a stream");
    auto* p = static_cast<char*>(buf);
    while (n > 0) {
      ssize_t r = ::pread(fd_, p, n, static_cast<off_t>(offset));
      if (r < 0) {
        if (errno == EINTR) continue;
        throw Error(errno_message(name_, errno));
      }
      if (r == 0) throw FormatError(name_ + ": unexpected end of file at byte " + std::to_string(offset));
      p += r;
      n -= static_cast<std::size_t>(r);
      offset += static_cast<std::uint64_t>(r);
    }
  }

 private:
  int fd_;
  bool owned_;
  bool seekable_ = false;
  std::uint64_t size_ = 0;
  std::uint64_t pos_ = 0;
};

class MemInput : public Input {
 public:
  MemInput(const void* data, std::size_t size, std::string name)
      : p_(static_cast<const unsigned char*>(data)), n_(size) {
    name_ = std::move(name);
  }
  std::size_t read(void* buf, std::size_t n) override {
    std::size_t k = std::min(n, n_ - pos_);
    if (k) std::memcpy(buf, p_ + pos_, k);
    pos_ += k;
    return k;
  }
  bool seekable() const override { return true; }
  std::uint64_t size() const override { return n_; }
  void seek(std::uint64_t offset) override { pos_ = static_cast<std::size_t>(std::min<std::uint64_t>(offset, n_)); }
  std::uint64_t position() const override { return pos_; }
  void pread_exact(void* buf, std::size_t n, std::uint64_t offset) override {
    if (offset > n_ || n > n_ - offset)
      throw FormatError(name_ + ": unexpected end of file at byte " + std::to_string(offset));
    if (n) std::memcpy(buf, p_ + offset, n);
  }

 private:
  const unsigned char* p_;
  std::size_t n_;
  std::size_t pos_ = 0;
};

// ---- outputs ----
void write_all(int fd, const void* data, std::size_t n, const std::string& name) {
  auto* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EPIPE) throw BrokenPipe();
      throw Error(errno_message(name, errno));
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

class FdOutput : public Output {
 public:
  FdOutput(int fd, std::string name) : fd_(fd) {
    name_ = std::move(name);
    buf_.reserve(kBuf);
  }
  ~FdOutput() override {
    try {
      flush();
    } catch (...) {
    }
  }
  void write(const void* data, std::size_t n) override {
    bytes_ += n;
    if (buf_.size() + n <= kBuf) {
      buf_.insert(buf_.end(), static_cast<const char*>(data), static_cast<const char*>(data) + n);
      return;
    }
    flush();
    if (n >= kBuf) {
      write_all(fd_, data, n, name_);
    } else {
      buf_.insert(buf_.end(), static_cast<const char*>(data), static_cast<const char*>(data) + n);
    }
  }
  void flush() override {
    if (buf_.empty()) return;
    // Clear even when the write fails, so the destructor does not retry it.
    struct Clear {
      std::vector<char>& b;
      ~Clear() { b.clear(); }
    } clear{buf_};
    write_all(fd_, buf_.data(), buf_.size(), name_);
  }
  void commit() override { flush(); }
  std::uint64_t bytes_written() const override { return bytes_; }

 protected:
  static constexpr std::size_t kBuf = 1u << 16;
  int fd_;
  std::vector<char> buf_;
  std::uint64_t bytes_ = 0;
};

class AtomicFileOutput : public FdOutput {
 public:
  explicit AtomicFileOutput(const std::string& path) : FdOutput(-1, path), path_(path) {
    std::string dir = ".", base = path;
    auto slash = path.find_last_of('/');
    if (slash != std::string::npos) {
      dir = slash == 0 ? "/" : path.substr(0, slash);
      base = path.substr(slash + 1);
    }
    if (base.empty()) throw Error(path + ": not a file name");
    if (path_is_directory(path)) throw Error(path + ": is a directory");
    tmp_ = (dir == "/" ? std::string("/") : dir + "/") + "." + base + ".tmp.XXXXXX";
    std::vector<char> t(tmp_.begin(), tmp_.end());
    t.push_back('\0');
    int fd = mkostemp(t.data(), O_CLOEXEC);
    if (fd < 0) throw Error(errno_message(path, errno));
    tmp_.assign(t.data());
    fd_ = fd;
    slot_ = register_temp(tmp_);
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd_, 0666 & ~mask);
  }
  ~AtomicFileOutput() override {
    if (!committed_) {
      buf_.clear();
      if (fd_ >= 0) ::close(fd_);
      ::unlink(tmp_.c_str());
      unregister_temp(slot_);
    }
  }
  void commit() override {
    if (committed_) return;
    flush();
    // The rename makes the output appear whole or not at all to other
    // processes, also when this one is killed. Durability across a power loss
    // (fsync) costs seconds on large files and is opt-in: HFR_FSYNC=1.
    static const bool want_sync = [] {
      const char* v = std::getenv("HFR_FSYNC");
      return v && *v && std::string(v) != "0";
    }();
    if (want_sync && fsync(fd_) != 0 && errno != EINVAL) throw Error(errno_message(path_, errno));
    if (::close(fd_) != 0) {
      fd_ = -1;
      throw Error(errno_message(path_, errno));
    }
    fd_ = -1;
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0) throw Error(errno_message(path_, errno));
    committed_ = true;
    unregister_temp(slot_);
  }

 private:
  std::string path_, tmp_;
  int slot_ = -1;
  bool committed_ = false;
};

}  // namespace

void install_signal_handlers() {
  ::signal(SIGPIPE, SIG_IGN);
  struct sigaction sa{};
  sa.sa_handler = hfr_fatal_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
}

std::size_t Input::read_full(void* buf, std::size_t n) {
  auto* p = static_cast<char*>(buf);
  std::size_t got = 0;
  while (got < n) {
    std::size_t r = read(p + got, n - got);
    if (r == 0) break;
    got += r;
  }
  return got;
}

std::unique_ptr<Input> open_input(const std::string& path) {
  if (path == "-") return std::make_unique<FdInput>(0, "<stdin>", false);
  if (path.empty()) throw Error("empty file name");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(errno_message(path, errno));
  struct stat st{};
  if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": is a directory");
  }
  return std::make_unique<FdInput>(fd, path, true);
}

namespace {
// A stream whose first bytes were already read: replays them, then reads on.
class ReplayInput : public Input {
 public:
  ReplayInput(std::unique_ptr<Input> in, std::string head) : in_(std::move(in)), head_(std::move(head)) {
    name_ = in_->name();
  }
  std::size_t read(void* buf, std::size_t n) override {
    if (pos_ < head_.size()) {
      std::size_t k = std::min(n, head_.size() - pos_);
      std::memcpy(buf, head_.data() + pos_, k);
      pos_ += k;
      return k;
    }
    std::size_t r = in_->read(buf, n);
    pos_ += r;
    return r;
  }
  bool seekable() const override { return false; }
  std::uint64_t size() const override { return 0; }
  void seek(std::uint64_t) override { throw Error(name_ + ": cannot seek in a stream"); }
  std::uint64_t position() const override { return pos_; }
  void pread_exact(void*, std::size_t, std::uint64_t) override { throw Error(name_ + ": cannot seek in a stream"); }

 private:
  std::unique_ptr<Input> in_;
  std::string head_;
  std::uint64_t pos_ = 0;
};
}  // namespace

std::unique_ptr<Input> peek_input(std::unique_ptr<Input> in, std::size_t n, std::string& head) {
  head.assign(n, '\0');
  std::uint64_t start = in->position();
  head.resize(in->read_full(&head[0], n));
  if (in->seekable()) {
    in->seek(start);
    return in;
  }
  return std::make_unique<ReplayInput>(std::move(in), head);
}

// An existing path that is not a regular file (a FIFO, /dev/null, a terminal,
// /dev/fd/N of a process substitution) is written in place: renaming a
// temporary file over it would replace the device or pipe.
class SpecialFileOutput : public FdOutput {
 public:
  explicit SpecialFileOutput(const std::string& path) : FdOutput(-1, path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd_ < 0) throw Error(errno_message(path, errno));
  }
  bool is_terminal() const { return ::isatty(fd_) == 1; }
  ~SpecialFileOutput() override {
    try {
      flush();
    } catch (...) {
    }
    buf_.clear();
    if (fd_ >= 0) ::close(fd_);
  }
};

std::unique_ptr<Input> memory_input(const void* data, std::size_t size, std::string name) {
  return std::make_unique<MemInput>(data, size, std::move(name));
}

std::unique_ptr<Output> open_output(const std::string& path, const OutputOptions& opts) {
  if (path == "-") {
    if (opts.content == Content::binary && !opts.force_terminal && is_terminal(1))
      throw UsageError("refusing to write binary data to a terminal (redirect stdout, or use -o FILE)");
    return std::make_unique<FdOutput>(1, "<stdout>");
  }
  if (path.empty()) throw UsageError("empty output file name");
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
    auto out = std::make_unique<SpecialFileOutput>(path);
    if (opts.content == Content::binary && !opts.force_terminal && out->is_terminal())
      throw UsageError("refusing to write binary data to a terminal (" + path + ")");
    return out;
  }
  return std::make_unique<AtomicFileOutput>(path);
}

std::unique_ptr<MemoryOutput> memory_output() { return std::make_unique<MemoryOutput>(); }

void MemoryOutput::write(const void* data, std::size_t n) {
  data_.insert(data_.end(), static_cast<const unsigned char*>(data), static_cast<const unsigned char*>(data) + n);
}

std::vector<unsigned char> read_file(const std::string& path, std::uint64_t max_bytes) {
  auto in = open_input(path);
  std::vector<unsigned char> out;
  if (in->seekable()) {
    if (in->size() > max_bytes)
      throw FormatError(path + ": file too large (" + std::to_string(in->size()) + " bytes, limit " +
                        std::to_string(max_bytes) + ")");
    out.resize(static_cast<std::size_t>(in->size()));
    out.resize(in->read_full(out.data(), out.size()));
    return out;
  }
  unsigned char buf[1 << 16];
  for (;;) {
    std::size_t r = in->read(buf, sizeof buf);
    if (r == 0) break;
    if (out.size() + r > max_bytes)
      throw FormatError(in->name() + ": input too large (limit " + std::to_string(max_bytes) + " bytes)");
    out.insert(out.end(), buf, buf + r);
  }
  return out;
}

bool is_terminal(int fd) { return isatty(fd) == 1; }

bool path_is_directory(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace hfr::io
