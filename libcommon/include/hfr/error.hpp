// Error types and exit codes shared by every hfr tool.
#pragma once
#include <stdexcept>
#include <string>

namespace hfr {

// Exit codes: the same in every tool (see hfr(7)).
enum ExitCode : int {
  kExitOk = 0,       // success
  kExitFailure = 1,  // runtime failure (bad input, I/O error, capability missing)
  kExitUsage = 2,    // command-line misuse
  kExitPartial = 3,  // finished, but some records failed (with --keep-going)
};

// A runtime failure. The message names its context ("file.hft: chunk 3: bad checksum").
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Command-line misuse: exit code 2.
class UsageError : public Error {
 public:
  using Error::Error;
};

// Malformed or hostile input data (JSON line, tensor file, image, model).
class FormatError : public Error {
 public:
  using Error::Error;
};

// The reader of our output went away (EPIPE). Tools end quietly with status 0.
class BrokenPipe : public std::exception {
 public:
  const char* what() const noexcept override { return "broken pipe"; }
};

}  // namespace hfr
