// Line charts for evaluation reports (ROC, DET, CMC, error-vs-reject), drawn
// once with cairo and written as SVG or PNG (chosen by the file's suffix).
// Files are written atomically (hfr::io).
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace hfr::plot {

enum class Scale {
  linear,  // plain
  log10,   // decades; values <= 0 are dropped from the series
  probit,  // normal deviate (DET curves); ticks labelled in percent; values
           // outside (0, 1) are clamped to the axis range
};

struct Axis {
  std::string label;             // e.g. "False accept rate (FAR)"
  Scale scale = Scale::linear;
  double min = 0, max = 1;       // data range shown (in data units)
  bool percent = false;          // tick labels as percentages (0.01 -> "1%")
};

struct Series {
  std::string name;              // legend entry
  std::vector<std::pair<double, double>> points;  // (x, y) in data units
  bool steps = false;            // draw as a staircase (CMC)
  bool markers = false;          // a small marker at every point
};

struct Chart {
  std::string title;
  Axis x, y;
  std::vector<Series> series;    // colours assigned in order from a
                                 // colour-blind-safe palette; dash patterns too
  bool diagonal = false;         // draw y = x (ROC chance line; EER line on DET)
  int width = 800, height = 600; // pixels (PNG) / user units (SVG)
};

// Writes the chart to `path`: ".svg" -> SVG, ".png" -> PNG; anything else
// throws hfr::UsageError. Throws hfr::Error on I/O failure; never leaves a
// half-written file.
void write_chart(const Chart& chart, const std::string& path);

// The same, into memory (tests): format "svg" or "png".
std::string render_chart(const Chart& chart, const std::string& format);

}  // namespace hfr::plot
