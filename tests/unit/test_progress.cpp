#include <catch2/catch.hpp>

#include "hfr/progress.hpp"

using hfr::Progress;

TEST_CASE("progress: known total shows percent, rate and ETA", "[progress]") {
  std::string s = Progress::format("embed", 250, 1000, 10.0, "images", 100);
  CHECK(s.find("embed [") == 0);
  CHECK(s.find(" 25% 250/1000 images") != std::string::npos);
  CHECK(s.find("25.0/s") != std::string::npos);
  CHECK(s.find("ETA 0:30") != std::string::npos);
  CHECK(s.size() <= 100);
}

TEST_CASE("progress: unknown total shows count, rate and elapsed time", "[progress]") {
  std::string s = Progress::format("match", 5000, 0, 3725.0, "probes", 80);
  CHECK(s == "match 5000 probes 1.34/s elapsed 1:02:05");
}

TEST_CASE("progress: narrow terminals drop the bar", "[progress]") {
  std::string s = Progress::format("a-very-long-label-for-a-stage", 1, 2, 1.0, "items", 40);
  CHECK(s.find('[') == std::string::npos);
  CHECK(s.find("50%") != std::string::npos);
}

TEST_CASE("progress: never drawn when mode is never", "[progress]") {
  Progress::set_mode(hfr::ProgressMode::never);
  CHECK_FALSE(Progress::enabled());
  Progress::set_mode(hfr::ProgressMode::always);
  CHECK(Progress::enabled());
  Progress::set_mode(hfr::ProgressMode::automatic);
}
