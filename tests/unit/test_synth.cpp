// hfr-synth's light colours: blackbody radiation in linear sRGB.
#include <catch2/catch.hpp>

#include <cmath>

#include "hfr/synth.hpp"

TEST_CASE("blackbody colours: warm below 5000 K, neutral near D65, blue above", "[synth]") {
  const auto warm = hfr::synth::blackbody_rgb(2700), d65 = hfr::synth::blackbody_rgb(6504), sky = hfr::synth::blackbody_rgb(9000);
  for (const auto& c : {warm, d65, sky})  // normalised to luminance 1
    CHECK(0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2] == Approx(1).epsilon(1e-9));
  CHECK(warm[0] > warm[1]);
  CHECK(warm[1] > warm[2]);
  CHECK(warm[2] / warm[0] < 0.5);  // incandescent light: blue well below red
  // a 6504 K blackbody lies close to (not on) D65, the sRGB white: within a few % per channel
  for (double v : d65) CHECK(v == Approx(1).epsilon(0.08));
  CHECK(sky[2] > sky[1]);
  CHECK(sky[2] > sky[0]);
  // monotone in temperature: blue over red rises
  double last = 0;
  for (double k = 2000; k <= 12000; k += 500) {
    const auto c = hfr::synth::blackbody_rgb(k);
    CHECK(c[2] / c[0] > last);
    last = c[2] / c[0];
  }
  // out-of-range temperatures are clamped, never NaN
  for (double k : {0.0, -5.0, 1e9}) {
    const auto c = hfr::synth::blackbody_rgb(k);
    for (double v : c) CHECK(std::isfinite(v));
  }
}
