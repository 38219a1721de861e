// Where tests find the fetched npm model files (scripts/fetch-models.sh):
// $HFR_MODEL_DIR, else the source tree's models/. Include after Catch.
#pragma once
#include <cstdlib>
#include <filesystem>
#include <string>

namespace hfr::test {

inline std::string model_dir() {
  if (const char* d = std::getenv("HFR_MODEL_DIR")) return d;
  return std::string(HFR_SOURCE_DIR) + "/models";
}

// True when `file` (relative to model_dir()) exists; otherwise warns that the
// checks are skipped.
inline bool have_model_file(const std::string& file = "faceres.json") {
  if (std::filesystem::exists(model_dir() + "/" + file)) return true;
  WARN("models not fetched (run scripts/fetch-models.sh): checks that need " + file + " skipped");
  return false;
}

}  // namespace hfr::test
