// Line charts for evaluation reports.
//
// A chart is laid out once into a small display list in pixel coordinates
// (lines, polylines, rectangles, circles, text, a clip rectangle); two
// backends emit that list: a hand-written SVG writer (real <text> elements, so
// labels stay selectable and greppable) and a cairo image surface encoded as
// PNG. Text is measured with cairo's toy font API for both, so the SVG layout
// matches the PNG wherever the viewer has DejaVu Sans.
#include "hfr/plot.hpp"

#include "hfr/metrics.hpp"

#include <cairo.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <locale>
#include <memory>
#include <sstream>

#include "hfr/error.hpp"
#include "hfr/io.hpp"

namespace hfr::plot {
namespace {

constexpr const char* kFont = "DejaVu Sans";
constexpr const char* kSvgFontFamily = "DejaVu Sans, Arial, sans-serif";
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kPi = 3.14159265358979323846;

// ---------------------------------------------------------------------------
// Normal quantile for the probit (DET) scale: hfr::metrics::normal_deviate,
// extended to the closed interval (0 and 1 map to -inf and +inf, which the
// axis then clamps).
double normal_quantile(double p) {
  if (std::isnan(p)) return kNaN;
  if (p <= 0) return -std::numeric_limits<double>::infinity();
  if (p >= 1) return std::numeric_limits<double>::infinity();
  return metrics::normal_deviate(p);
}

// ---------------------------------------------------------------------------
// Text helpers. Numbers are formatted by hand so that neither the SVG
// coordinates nor the tick labels depend on the process locale.

// `v` rounded to `decimals` places, trailing zeros (and a bare point) removed.
std::string fixed(double v, int decimals, bool trim = true) {
  double scale = std::pow(10.0, decimals);
  if (!std::isfinite(v) || std::fabs(v) * scale > 9e15) {
    std::ostringstream os;
    os.imbue(std::locale::classic());
    os << v;
    return os.str();
  }
  long long n = std::llround(v * scale);
  std::string s = n < 0 ? "-" : "";
  unsigned long long m = n < 0 ? -static_cast<unsigned long long>(n) : static_cast<unsigned long long>(n);
  std::string digits = std::to_string(m);
  if (decimals > 0) {
    if (digits.size() <= static_cast<std::size_t>(decimals)) digits.insert(0, decimals + 1 - digits.size(), '0');
    digits.insert(digits.size() - decimals, ".");
    if (trim) {
      while (digits.back() == '0') digits.pop_back();
      if (digits.back() == '.') digits.pop_back();
    }
  }
  if (digits == "0") s.clear();  // no "-0"
  return s + digits;
}

std::string num(double v) {  // for messages
  std::ostringstream os;
  os.imbue(std::locale::classic());
  os << v;
  return os.str();
}

// Valid UTF-8 without control characters: cairo refuses invalid UTF-8 (and
// would put the whole drawing into an error state) and XML forbids controls.
std::string clean_text(const std::string& in) {
  std::string out;
  std::size_t i = 0, n = in.size();
  while (i < n) {
    auto c = static_cast<unsigned char>(in[i]);
    if (c < 0x80) {
      out += (c < 0x20 || c == 0x7f) ? ' ' : static_cast<char>(c);
      ++i;
      continue;
    }
    int len = (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
    bool ok = len > 0 && i + len <= n;
    std::uint32_t cp = len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; ok && k < len; ++k) {
      auto b = static_cast<unsigned char>(in[i + k]);
      if ((b & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (b & 0x3F);
    }
    if (ok) {
      bool overlong = (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
      bool bad = cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE || cp == 0xFFFF ||
                 (cp >= 0x80 && cp < 0xA0);
      ok = !overlong && !bad;
    }
    if (ok) {
      out.append(in, i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD replacement character
      ++i;
    }
  }
  return out;
}

std::string xml_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

// "10⁻⁶": exponent in Unicode superscripts (DejaVu Sans has all of them).
std::string power_of_ten(int e) {
  static const char* sup[] = {"\u2070", "\u00B9", "\u00B2", "\u00B3", "\u2074",
                              "\u2075", "\u2076", "\u2077", "\u2078", "\u2079"};
  std::string s = "10";
  if (e < 0) s += "\u207B";
  for (char c : std::to_string(std::abs(e))) s += sup[c - '0'];
  return s;
}

// A probability as a percentage with as many decimals as it needs (1e-4 -> "0.01%").
std::string percent_label(double p) { return fixed(p * 100, 6) + "%"; }

// ---------------------------------------------------------------------------
// Display list.

struct Rgb {
  double r = 0, g = 0, b = 0;
};
Rgb hex(std::uint32_t v) { return {((v >> 16) & 255) / 255.0, ((v >> 8) & 255) / 255.0, (v & 255) / 255.0}; }
std::string to_hex(const Rgb& c) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", static_cast<int>(std::lround(c.r * 255)),
                static_cast<int>(std::lround(c.g * 255)), static_cast<int>(std::lround(c.b * 255)));
  return buf;
}

struct Pt {
  double x, y;
};

struct Stroke {
  Rgb color;
  double width = 1;
  std::vector<double> dash;  // on/off lengths in pixels; empty = solid
};

enum class Anchor { start, middle, end };

struct Item {
  enum Kind { line, polyline, rect, circle, text, clip_begin, clip_end } kind;
  explicit Item(Kind k) : kind(k) {}
  std::vector<Pt> pts;             // line (2), polyline (n), circle (centre), text (anchor point)
  Stroke stroke;                   // line, polyline, rect / circle outline when stroked
  bool stroked = false;            // rect, circle
  double x = 0, y = 0, w = 0, h = 0;  // rect, clip
  double radius = 0;               // circle
  bool filled = false;             // rect, circle
  Rgb fill;                        // rect, circle, text colour
  double fill_alpha = 1;
  std::string str;                 // text (clean UTF-8)
  double size = 12;                // font size in pixels
  Anchor anchor = Anchor::start;   // horizontal, relative to the (rotated) baseline
  double angle = 0;                // degrees, clockwise as in SVG
  bool bold = false;
  std::string cls;                 // SVG class attribute, so tests and users can find elements
};

struct DisplayList {
  int width = 0, height = 0;
  std::string title;
  std::vector<Item> items;
};

// ---------------------------------------------------------------------------
// cairo objects with owners.

struct SurfaceDel {
  void operator()(cairo_surface_t* s) const { cairo_surface_destroy(s); }
};
struct CairoDel {
  void operator()(cairo_t* c) const { cairo_destroy(c); }
};
using SurfacePtr = std::unique_ptr<cairo_surface_t, SurfaceDel>;
using CairoPtr = std::unique_ptr<cairo_t, CairoDel>;

void set_font(cairo_t* cr, double size, bool bold) {
  cairo_select_font_face(cr, kFont, CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
}

// Text widths for the layout, from the same font the PNG backend draws with.
class Measurer {
 public:
  Measurer() : surface_(cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1)), cr_(cairo_create(surface_.get())) {
    if (cairo_status(cr_.get()) != CAIRO_STATUS_SUCCESS) throw Error("plot: cannot create a cairo context");
  }
  double width(const std::string& s, double size, bool bold = false) {
    set_font(cr_.get(), size, bold);
    cairo_text_extents_t ext;
    cairo_text_extents(cr_.get(), s.c_str(), &ext);
    return ext.x_advance;
  }
  // Cuts `s` (clean UTF-8) at a character boundary and appends an ellipsis so
  // that it fits in `max_w`; long series names must not push the legend out of
  // the plot.
  std::string fit(std::string s, double max_w, double size, bool bold = false) {
    if (width(s, size, bold) <= max_w) return s;
    while (!s.empty()) {
      do s.pop_back();
      while (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xC0) == 0x80);
      if (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xC0) == 0xC0) s.pop_back();  // lead byte left over
      if (width(s + "\u2026", size, bold) <= max_w) break;
    }
    return s + "\u2026";
  }

 private:
  SurfacePtr surface_;
  CairoPtr cr_;
};

// ---------------------------------------------------------------------------
// Axes.

void check_axis(const Axis& a, const char* which) {
  std::string ctx = std::string("plot: ") + which + " axis: ";
  if (!std::isfinite(a.min) || !std::isfinite(a.max) || !std::isfinite(a.max - a.min))
    throw UsageError(ctx + "range must be finite (got " + num(a.min) + " .. " + num(a.max) + ")");
  if (!(a.min < a.max)) throw UsageError(ctx + "min (" + num(a.min) + ") must be less than max (" + num(a.max) + ")");
  if (a.scale == Scale::log10 && !(a.min > 0))
    throw UsageError(ctx + "a log scale needs min > 0 (got " + num(a.min) + ")");
  if (a.scale == Scale::probit && !(a.min > 0 && a.max < 1))
    throw UsageError(ctx + "a probit scale needs 0 < min < max < 1 (got " + num(a.min) + " .. " + num(a.max) + ")");
}

void check_chart(const Chart& c) {
  auto bad = [](int v) { return v < 100 || v > 10000; };
  if (bad(c.width) || bad(c.height))
    throw UsageError("plot: chart size " + std::to_string(c.width) + "x" + std::to_string(c.height) +
                     " out of range (100 to 10000 pixels a side)");
  check_axis(c.x, "x");
  check_axis(c.y, "y");
}

// Data value -> axis coordinate (log10 of it, its normal deviate, or itself).
// NaN means "drop the point".
double to_axis(const Axis& a, double v) {
  if (!std::isfinite(v)) return kNaN;
  switch (a.scale) {
    case Scale::linear: return v;
    case Scale::log10: return v > 0 ? std::log10(v) : kNaN;
    case Scale::probit:
      // Rates of exactly 0 or 1 are common at the ends of a DET curve; they go
      // to the edge of the axis rather than to infinity.
      if (v <= 0) v = a.min;
      if (v >= 1) v = a.max;
      return normal_quantile(v);
  }
  return kNaN;
}

// An axis mapped onto a pixel interval (p0 is where min lands).
struct Mapping {
  double t0 = 0, t1 = 1, p0 = 0, p1 = 1;
  double px(double t) const { return p0 + (t - t0) / (t1 - t0) * (p1 - p0); }
};

Mapping mapping(const Axis& a, double p0, double p1) { return {to_axis(a, a.min), to_axis(a, a.max), p0, p1}; }

struct Tick {
  double t;           // axis coordinate
  std::string label;  // empty for minor ticks
  bool major = true;
};

// Tick labels must not collide: along a horizontal axis their widths matter,
// along a vertical one their height.
class TickFitter {
 public:
  TickFitter(Measurer& m, double font, bool horizontal) : m_(m), font_(font), horizontal_(horizontal) {}
  double extent(const std::string& label) { return horizontal_ ? m_.width(label, font_) : font_; }
  double gap() const { return horizontal_ ? font_ * 0.9 : font_ * 0.5; }
  // Labelled ticks at pixel positions `pos` fit without overlapping.
  bool fits(const std::vector<Tick>& ticks, const Mapping& map) {
    double last_pos = 0, last_half = 0;
    bool first = true;
    for (const auto& t : ticks) {
      if (t.label.empty()) continue;
      double pos = map.px(t.t), half = extent(t.label) / 2;
      if (!first && std::fabs(pos - last_pos) < last_half + half + gap()) return false;
      first = false;
      last_pos = pos;
      last_half = half;
    }
    return true;
  }

 private:
  Measurer& m_;
  double font_;
  bool horizontal_;
};

// 1, 2, 5 x 10^k: the smallest such step >= x.
double nice_step(double x) {
  double mag = std::pow(10.0, std::floor(std::log10(x)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= x * (1 - 1e-9)) return m * mag;
  return 10 * mag;
}
double next_nice(double step) {
  double mag = std::pow(10.0, std::floor(std::log10(step) + 1e-9));
  double m = step / mag;
  return m < 1.5 ? 2 * mag : m < 3.5 ? 5 * mag : 10 * mag;
}

std::vector<Tick> linear_ticks(const Axis& a, const Mapping& map, TickFitter& fit, bool integer_data) {
  double len = std::fabs(map.p1 - map.p0);
  double target = std::max(2.0, len / (fit.extent("0.00") * 2.5 + 20));
  double step = nice_step((a.max - a.min) / target);
  if (integer_data && step < 1) step = 1;  // ranks: no "1.5"
  for (int attempt = 0; attempt < 40; ++attempt, step = next_nice(step)) {
    double shown = a.percent ? step * 100 : step;
    int decimals = shown >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(shown) - 1e-9));
    auto k0 = static_cast<long long>(std::ceil(a.min / step - 1e-9));
    auto k1 = static_cast<long long>(std::floor(a.max / step + 1e-9));
    if (k1 - k0 > 200) continue;
    std::vector<Tick> ticks;
    for (long long k = k0; k <= k1; ++k) {
      double v = static_cast<double>(k) * step;
      std::string label = a.percent ? fixed(v * 100, decimals, false) + "%" : fixed(v, decimals, false);
      ticks.push_back({v, label});
    }
    if (!fit.fits(ticks, map)) continue;
    // Ranks start at 1 while the grid of 5s starts at 5: label the first rank
    // too when it has room (CMC readers look for rank-1 accuracy).
    if (integer_data && a.min == std::round(a.min) && !ticks.empty() && ticks.front().t > a.min) {
      std::vector<Tick> with = ticks;
      with.insert(with.begin(), {a.min, a.percent ? fixed(a.min * 100, 0) + "%" : fixed(a.min, 0)});
      if (fit.fits(with, map)) return with;
    }
    return ticks;
  }
  return {};
}

std::vector<Tick> log_ticks(const Axis& a, const Mapping& map, TickFitter& fit) {
  double lo = std::log10(a.min), hi = std::log10(a.max);
  auto d0 = static_cast<int>(std::ceil(lo - 1e-9)), d1 = static_cast<int>(std::floor(hi + 1e-9));
  auto label_of = [&](double v, int e) { return a.percent ? percent_label(v) : power_of_ten(e); };
  std::vector<Tick> ticks;
  double per_decade = std::fabs(map.p1 - map.p0) / (hi - lo);
  if (d1 - d0 >= 1) {
    // Decades labelled; every second (fifth, ...) one when they are crowded.
    for (int every : {1, 2, 3, 5, 10, 20, 50, 100}) {
      ticks.clear();
      for (int e = d0; e <= d1; ++e) {
        bool labelled = (e % every) == 0;
        ticks.push_back({static_cast<double>(e), labelled ? label_of(std::pow(10.0, e), e) : "", labelled});
      }
      if (fit.fits(ticks, map)) break;
    }
    if (per_decade >= 25) {  // minor ticks only when a decade has room for them
      for (int e = d0 - 1; e <= d1; ++e)
        for (int m = 2; m <= 9; ++m) {
          double t = e + std::log10(m);
          if (t >= lo - 1e-9 && t <= hi + 1e-9) ticks.push_back({t, "", false});
        }
    }
  } else {
    // Less than two decades: label 1, 2 and 5 times powers of ten instead.
    for (int e = d0 - 1; e <= d1; ++e)
      for (int m = 1; m <= 9; ++m) {
        double v = m * std::pow(10.0, e), t = std::log10(v);
        if (t < lo - 1e-9 || t > hi + 1e-9) continue;
        bool labelled = m == 1 || m == 2 || m == 5;
        std::string label;
        if (labelled) label = a.percent ? percent_label(v) : fixed(v, std::max(0, -e), true);
        ticks.push_back({t, label, labelled});
      }
    std::vector<Tick> sorted = ticks;
    std::sort(sorted.begin(), sorted.end(), [](const Tick& x, const Tick& y) { return x.t < y.t; });
    if (!fit.fits(sorted, map))  // drop the 2s and 5s
      for (auto& t : ticks)
        if (!t.label.empty() && std::fabs(t.t - std::round(t.t)) > 1e-9) {
          t.label.clear();
          t.major = false;
        }
  }
  std::sort(ticks.begin(), ticks.end(), [](const Tick& x, const Tick& y) { return x.t < y.t; });
  return ticks;
}

// DET axes: the conventional percentages, added in order of importance while
// their labels still fit.
std::vector<Tick> probit_ticks(const Axis& a, const Mapping& map, TickFitter& fit) {
  struct Cand {
    double p;
    int level;
  };
  std::vector<Cand> cands;
  for (int e = -9; e <= -1; ++e) {
    double d = std::pow(10.0, e);
    int minor = e <= -3 ? 2 : 1;  // 0.2% and 0.5% matter less than 2% and 5%
    cands.push_back({d, 0});
    cands.push_back({1 - d, 0});
    if (e <= -2) {
      cands.push_back({2 * d, minor});
      cands.push_back({5 * d, minor});
      cands.push_back({1 - 2 * d, minor});
      cands.push_back({1 - 5 * d, minor});
    }
  }
  for (double p : {0.2, 0.4, 0.6, 0.8}) cands.push_back({p, 1});
  std::stable_sort(cands.begin(), cands.end(), [](const Cand& x, const Cand& y) { return x.level < y.level; });
  std::vector<Tick> kept;
  double tol = 1e-9;
  for (const auto& c : cands) {
    if (c.p < a.min * (1 - tol) || c.p > a.max * (1 + tol)) continue;
    std::vector<Tick> trial = kept;
    trial.push_back({normal_quantile(c.p), percent_label(c.p)});
    std::sort(trial.begin(), trial.end(), [](const Tick& x, const Tick& y) { return x.t < y.t; });
    if (fit.fits(trial, map)) kept = std::move(trial);
  }
  if (kept.size() < 2) {
    // A range too narrow for any conventional percentage: label its ends.
    std::vector<Tick> ends = {{map.t0, percent_label(a.min)}, {map.t1, percent_label(a.max)}};
    if (fit.fits(ends, map)) return ends;
  }
  return kept;
}

std::vector<Tick> make_ticks(const Axis& a, const Mapping& map, TickFitter& fit, bool integer_data) {
  switch (a.scale) {
    case Scale::linear: return linear_ticks(a, map, fit, integer_data);
    case Scale::log10: return log_ticks(a, map, fit);
    case Scale::probit: return probit_ticks(a, map, fit);
  }
  return {};
}

// ---------------------------------------------------------------------------
// Geometry.

struct Box {
  double x0, y0, x1, y1;
  bool contains(const Pt& p) const { return p.x >= x0 && p.x <= x1 && p.y >= y0 && p.y <= y1; }
};

// Liang-Barsky: clips segment a-b to the box; false when nothing is left.
bool clip_segment(Pt& a, Pt& b, const Box& box, bool& a_moved, bool& b_moved) {
  double t0 = 0, t1 = 1, dx = b.x - a.x, dy = b.y - a.y;
  auto edge = [&](double p, double q) {
    if (p == 0) return q >= 0;
    double r = q / p;
    if (p < 0) {
      if (r > t1) return false;
      if (r > t0) t0 = r;
    } else {
      if (r < t0) return false;
      if (r < t1) t1 = r;
    }
    return true;
  };
  if (!edge(-dx, a.x - box.x0) || !edge(dx, box.x1 - a.x) || !edge(-dy, a.y - box.y0) || !edge(dy, box.y1 - a.y))
    return false;
  Pt na{a.x + t0 * dx, a.y + t0 * dy}, nb{a.x + t1 * dx, a.y + t1 * dy};
  a_moved = t0 > 0;
  b_moved = t1 < 1;
  a = na;
  b = nb;
  return std::isfinite(a.x) && std::isfinite(a.y) && std::isfinite(b.x) && std::isfinite(b.y);
}

// Splits a polyline into the runs that lie inside the box, dropping points
// closer than a fraction of a pixel to their predecessor: a ROC curve of a
// million scores then costs a few thousand SVG coordinates, not a million.
std::vector<std::vector<Pt>> clip_polyline(const std::vector<Pt>& pts, const Box& box) {
  std::vector<std::vector<Pt>> runs;
  std::vector<Pt> run;
  auto flush = [&] {
    if (run.size() >= 2) runs.push_back(std::move(run));
    run.clear();
  };
  auto push = [&](const Pt& p) {
    if (!run.empty() && std::hypot(p.x - run.back().x, p.y - run.back().y) < 0.25) return;
    run.push_back(p);
  };
  for (std::size_t i = 0; i + 1 < pts.size(); ++i) {
    Pt a = pts[i], b = pts[i + 1];
    bool a_moved, b_moved;
    if (!clip_segment(a, b, box, a_moved, b_moved)) {
      flush();
      continue;
    }
    if (a_moved || run.empty()) {
      flush();
      run.push_back(a);
    }
    bool last = i + 2 == pts.size();
    if (b_moved || last) {
      // Keep the true end point even when it is close to the previous one.
      if (std::hypot(b.x - run.back().x, b.y - run.back().y) > 0) run.push_back(b);
      if (run.size() == 1) run.push_back(b);
      if (b_moved) flush();
    } else {
      push(b);
    }
  }
  flush();
  return runs;
}

// Length of the polyline inside the box: how much of the data a legend placed
// there would hide.
double ink_inside(const std::vector<Pt>& pts, const Box& box) {
  double sum = 0;
  for (std::size_t i = 0; i + 1 < pts.size(); ++i) {
    Pt a = pts[i], b = pts[i + 1];
    bool am, bm;
    if (clip_segment(a, b, box, am, bm)) sum += std::hypot(b.x - a.x, b.y - a.y);
  }
  if (pts.size() == 1 && box.contains(pts[0])) sum += 1;
  return sum;
}

// ---------------------------------------------------------------------------
// Layout.

// Okabe & Ito (2008), ordered so that the first few are the most distinct on
// white; yellow comes last because it is faint on a white background.
const std::uint32_t kPalette[] = {0x0072B2, 0xD55E00, 0x009E73, 0xCC79A7, 0xE69F00, 0x56B4E9, 0x000000, 0xF0E442};
constexpr int kPaletteSize = 8;
constexpr std::size_t kSolidUpTo = 4;  // more series than this also get dash patterns

Stroke series_stroke(std::size_t i, std::size_t n, double s) {
  Stroke st;
  st.color = hex(kPalette[i % kPaletteSize]);
  st.width = 2 * s;
  if (n > kSolidUpTo) {
    // Dash index shifts by one each time the palette wraps, so colour and dash
    // together stay distinct for 32 series.
    switch ((i + i / kPaletteSize) % 4) {
      case 0: break;
      case 1: st.dash = {8 * s, 4 * s}; break;
      case 2: st.dash = {2 * s, 3 * s}; break;
      case 3: st.dash = {8 * s, 3 * s, 2 * s, 3 * s}; break;
    }
  }
  return st;
}

// Pixel-grid alignment for 1-pixel lines, so the PNG shows them crisp.
double crisp(double v) { return std::floor(v) + 0.5; }

class Layout {
 public:
  explicit Layout(const Chart& c) : c_(c) {
    W_ = c.width;
    H_ = c.height;
    // Fonts and strokes grow with the chart so that a 1600x1200 PNG looks like
    // a sharper 800x600 one rather than a smaller drawing.
    s_ = std::clamp(std::min(W_ / 800.0, H_ / 600.0), 0.6, 4.0);
    f_tick_ = 13 * s_;
    f_label_ = 14.5 * s_;
    f_title_ = 17 * s_;
    f_legend_ = 13 * s_;
    pad_ = 12 * s_;
    tick_major_ = 5 * s_;
    tick_minor_ = 3 * s_;
  }

  DisplayList run() {
    dl_.width = c_.width;
    dl_.height = c_.height;
    dl_.title = clean_text(c_.title);
    compute_frame();
    add_rect_fill(0, 0, W_, H_, hex(0xFFFFFF), "background");
    add_grid();
    std::vector<std::vector<Pt>> ink;  // every curve in pixels, for legend placement
    add_series(ink);
    add_axes();
    add_labels();
    add_legend(ink);
    return std::move(dl_);
  }

 private:
  bool integer_x() const {
    bool any = false;
    for (const auto& s : c_.series)
      for (const auto& p : s.points)
        if (std::isfinite(p.first)) {
          if (p.first != std::round(p.first)) return false;
          any = true;
        }
    return any;
  }

  void compute_frame() {
    std::string ylabel = clean_text(c_.y.label), xlabel = clean_text(c_.x.label), title = clean_text(c_.title);
    double ascent = 0.76, descent = 0.24;  // DejaVu Sans cap height and descender, in em
    top_ = title.empty() ? pad_ + f_tick_ * 0.6 : pad_ + f_title_ * (ascent + descent) + 10 * s_;
    bottom_ = H_ - (pad_ + (xlabel.empty() ? 0 : f_label_ * (ascent + descent) + 8 * s_) + f_tick_ * (ascent + descent) +
                    tick_major_ + 5 * s_);
    if (bottom_ - top_ < 20) bottom_ = top_ + 20;
    ymap_ = mapping(c_.y, bottom_, top_);
    TickFitter yfit(m_, f_tick_, false);
    yticks_ = make_ticks(c_.y, ymap_, yfit, false);
    double label_w = 0;
    for (const auto& t : yticks_) label_w = std::max(label_w, m_.width(t.label, f_tick_));
    left_ = pad_ + (ylabel.empty() ? 0 : f_label_ * (ascent + descent) + 8 * s_) + label_w + 5 * s_ + tick_major_;
    // The right margin leaves room for half of the last x tick label, which
    // depends on the ticks, which depend on the width: settle it in two passes.
    right_ = W_ - pad_ * 1.5;
    TickFitter xfit(m_, f_tick_, true);
    bool ints = integer_x();
    for (int pass = 0; pass < 2; ++pass) {
      if (right_ - left_ < 20) right_ = left_ + 20;
      xmap_ = mapping(c_.x, left_, right_);
      xticks_ = make_ticks(c_.x, xmap_, xfit, ints);
      double need = pad_ * 1.5;
      for (const auto& t : xticks_)
        if (!t.label.empty()) need = std::max(need, xmap_.px(t.t) - right_ + m_.width(t.label, f_tick_) / 2 + pad_ * 0.5);
      right_ = W_ - need;
    }
    if (right_ - left_ < 20) right_ = left_ + 20;
    xmap_ = mapping(c_.x, left_, right_);
    xticks_ = make_ticks(c_.x, xmap_, xfit, ints);
    // Snap the frame to pixel centres so the frame and grid lines are crisp.
    left_ = crisp(left_);
    right_ = crisp(right_);
    top_ = crisp(top_);
    bottom_ = crisp(bottom_);
    xmap_ = mapping(c_.x, left_, right_);
    ymap_ = mapping(c_.y, bottom_, top_);
  }

  Item line(double x1, double y1, double x2, double y2, Rgb color, double width, std::vector<double> dash = {}) {
    Item it{Item::line};
    it.pts = {{x1, y1}, {x2, y2}};
    it.stroke = {color, width, std::move(dash)};
    return it;
  }
  void add_rect_fill(double x, double y, double w, double h, Rgb fill, const std::string& cls) {
    Item it{Item::rect};
    it.x = x;
    it.y = y;
    it.w = w;
    it.h = h;
    it.filled = true;
    it.fill = fill;
    it.cls = cls;
    dl_.items.push_back(it);
  }
  void add_text(double x, double y, const std::string& s, double size, Anchor anchor, const std::string& cls,
                double angle = 0, bool bold = false, Rgb color = hex(0x222222)) {
    if (s.empty()) return;
    Item it{Item::text};
    it.pts = {{x, y}};
    it.str = s;
    it.size = size;
    it.anchor = anchor;
    it.angle = angle;
    it.bold = bold;
    it.fill = color;
    it.cls = cls;
    dl_.items.push_back(it);
  }

  void add_grid() {
    Rgb major = hex(0xDDDDDD), minor = hex(0xF3F3F3);
    for (int pass = 0; pass < 2; ++pass)  // minor lines first, so major ones cross on top
      for (bool xaxis : {true, false})
        for (const auto& t : xaxis ? xticks_ : yticks_) {
          if (t.major != (pass == 1)) continue;
          double p = crisp(xaxis ? xmap_.px(t.t) : ymap_.px(t.t));
          if ((xaxis && (p <= left_ + 0.6 || p >= right_ - 0.6)) || (!xaxis && (p <= top_ + 0.6 || p >= bottom_ - 0.6)))
            continue;  // the frame is drawn there
          Rgb col = t.major ? major : minor;
          dl_.items.push_back(xaxis ? line(p, top_, p, bottom_, col, 1) : line(left_, p, right_, p, col, 1));
        }
  }

  Pt to_px(double tx, double ty) const { return {xmap_.px(tx), ymap_.px(ty)}; }

  // Pixels of a series (NaN/inf and points the scale drops are skipped).
  std::vector<Pt> series_pixels(const Series& s) const {
    std::vector<Pt> out;
    double last_ty = kNaN;
    for (const auto& p : s.points) {
      double tx = to_axis(c_.x, p.first), ty = to_axis(c_.y, p.second);
      if (std::isnan(tx) || std::isnan(ty) || !std::isfinite(p.first) || !std::isfinite(p.second)) continue;
      // A staircase holds the previous value up to the next x (CMC: the rate
      // at rank k holds until rank k + 1).
      if (s.steps && !out.empty()) {
        Pt corner = to_px(tx, last_ty);
        if (std::isfinite(corner.x) && std::isfinite(corner.y)) out.push_back(corner);
      }
      Pt q = to_px(tx, ty);
      if (!std::isfinite(q.x) || !std::isfinite(q.y)) continue;
      out.push_back(q);
      last_ty = ty;
    }
    return out;
  }

  void add_series(std::vector<std::vector<Pt>>& ink) {
    // Clip in geometry (so huge coordinates never reach a backend) to a box a
    // little larger than the frame, and let the backend clip to that box too
    // so wide strokes and markers at the edge are trimmed cleanly.
    double slack = 2 * s_;
    Box box{left_ - slack, top_ - slack, right_ + slack, bottom_ + slack};
    Item clip{Item::clip_begin};
    clip.x = box.x0;
    clip.y = box.y0;
    clip.w = box.x1 - box.x0;
    clip.h = box.y1 - box.y0;
    dl_.items.push_back(clip);
    Box inner{left_, top_, right_, bottom_};
    if (c_.diagonal) {
      // y = x in data units; a straight line only when both scales agree, so
      // sample it along the x axis.
      std::vector<Pt> pts;
      const int n = 256;
      for (int i = 0; i <= n; ++i) {
        double tx = xmap_.t0 + (xmap_.t1 - xmap_.t0) * i / n;
        double x = c_.x.scale == Scale::linear ? tx : c_.x.scale == Scale::log10 ? std::pow(10.0, tx)
                                                                                   : 0.5 * std::erfc(-tx / std::sqrt(2.0));
        double ty = c_.y.scale == Scale::probit && !(x > 0 && x < 1) ? kNaN : to_axis(c_.y, x);
        if (std::isnan(ty)) continue;
        Pt p = to_px(tx, ty);
        if (std::isfinite(p.x) && std::isfinite(p.y)) pts.push_back(p);
      }
      for (auto& run : clip_polyline(pts, inner)) {
        Item it{Item::polyline};
        it.pts = run;
        it.stroke = {hex(0x999999), 1 * s_, {5 * s_, 4 * s_}};
        it.cls = "diagonal";
        ink.push_back(run);
        dl_.items.push_back(std::move(it));
      }
    }
    for (std::size_t i = 0; i < c_.series.size(); ++i) {
      const Series& s = c_.series[i];
      Stroke st = series_stroke(i, c_.series.size(), s_);
      std::vector<Pt> px = series_pixels(s);
      for (auto& run : clip_polyline(px, box)) {
        Item it{Item::polyline};
        it.pts = run;
        it.stroke = st;
        it.cls = "series";
        ink.push_back(run);
        dl_.items.push_back(std::move(it));
      }
      if (s.markers || px.size() == 1) {  // a lone point (an operating point) would be invisible as a line
        for (const auto& p : s.points) {
          double tx = to_axis(c_.x, p.first), ty = to_axis(c_.y, p.second);
          if (std::isnan(tx) || std::isnan(ty)) continue;
          Pt q = to_px(tx, ty);
          if (!box.contains(q)) continue;
          dl_.items.push_back(marker(q, st));
          ink.push_back({q});
        }
      }
    }
    dl_.items.push_back(Item{Item::clip_end});
  }

  Item marker(Pt q, const Stroke& st) const {
    Item m{Item::circle};
    m.pts = {q};
    m.radius = 3 * s_;
    m.filled = true;
    m.fill = st.color;
    m.stroked = true;
    m.stroke = {hex(0xFFFFFF), 0.8 * s_, {}};
    m.cls = "marker";
    return m;
  }

  void add_axes() {
    Rgb frame = hex(0x333333);
    Item r{Item::rect};
    r.x = left_;
    r.y = top_;
    r.w = right_ - left_;
    r.h = bottom_ - top_;
    r.stroked = true;
    r.stroke = {frame, 1, {}};
    r.cls = "frame";
    dl_.items.push_back(r);
    for (const auto& t : xticks_) {
      double x = crisp(xmap_.px(t.t));
      double len = t.major ? tick_major_ : tick_minor_;
      dl_.items.push_back(line(x, bottom_, x, bottom_ + len, frame, 1));
      add_text(xmap_.px(t.t), bottom_ + tick_major_ + 4 * s_ + f_tick_ * 0.76, t.label, f_tick_, Anchor::middle, "tick x");
    }
    for (const auto& t : yticks_) {
      double y = crisp(ymap_.px(t.t));
      double len = t.major ? tick_major_ : tick_minor_;
      dl_.items.push_back(line(left_ - len, y, left_, y, frame, 1));
      add_text(left_ - tick_major_ - 4 * s_, ymap_.px(t.t) + f_tick_ * 0.36, t.label, f_tick_, Anchor::end, "tick y");
    }
  }

  void add_labels() {
    double ascent = 0.76;
    if (!c_.x.label.empty()) {
      std::string s = m_.fit(clean_text(c_.x.label), right_ - left_, f_label_);
      add_text((left_ + right_) / 2, H_ - pad_ - f_label_ * 0.24, s, f_label_, Anchor::middle, "label x");
    }
    if (!c_.y.label.empty()) {
      // Rotated -90 degrees: the baseline runs upwards, glyph tops point left.
      std::string s = m_.fit(clean_text(c_.y.label), bottom_ - top_, f_label_);
      add_text(pad_ + f_label_ * ascent, (top_ + bottom_) / 2, s, f_label_, Anchor::middle, "label y", -90);
    }
    if (!c_.title.empty()) {
      std::string s = m_.fit(clean_text(c_.title), W_ - 2 * pad_, f_title_, true);
      double cx = (left_ + right_) / 2, half = m_.width(s, f_title_, true) / 2;
      cx = std::clamp(cx, pad_ + half, W_ - pad_ - half);  // centred on the plot unless that runs off the edge
      add_text(cx, pad_ + f_title_ * ascent, s, f_title_, Anchor::middle, "title", 0, true, hex(0x000000));
    }
  }

  void add_legend(const std::vector<std::vector<Pt>>& ink) {
    struct Entry {
      std::string name;
      std::size_t index;
    };
    std::vector<Entry> entries;
    for (std::size_t i = 0; i < c_.series.size(); ++i)
      if (!c_.series[i].name.empty()) entries.push_back({clean_text(c_.series[i].name), i});
    if (entries.empty()) return;
    double inner = 8 * s_, sample = 30 * s_, gap = 7 * s_, row = f_legend_ * 1.45, inset = 10 * s_;
    double max_text = std::max(40.0, (right_ - left_) * 0.6 - sample - gap - 2 * inner);
    double text_w = 0;
    for (auto& e : entries) {
      e.name = m_.fit(e.name, max_text, f_legend_);
      text_w = std::max(text_w, m_.width(e.name, f_legend_));
    }
    double w = inner + sample + gap + text_w + inner, h = inner * 2 + row * entries.size() - (row - f_legend_);
    // Candidate corners in order of preference; the one that hides the least
    // of the curves wins (ties keep the earlier corner).
    struct Corner {
      double x, y;
    };
    std::vector<Corner> corners = {{right_ - inset - w, bottom_ - inset - h},
                                   {left_ + inset, top_ + inset},
                                   {right_ - inset - w, top_ + inset},
                                   {left_ + inset, bottom_ - inset - h}};
    Corner best = corners[0];
    double best_ink = std::numeric_limits<double>::infinity();
    for (const auto& c : corners) {
      Box b{c.x, c.y, c.x + w, c.y + h};
      double sum = 0;
      for (const auto& run : ink) sum += ink_inside(run, b);
      if (sum < best_ink - 1e-6) {
        best_ink = sum;
        best = c;
      }
    }
    double x = std::round(best.x) + 0.5, y = std::round(best.y) + 0.5;
    Item box{Item::rect};
    box.x = x;
    box.y = y;
    box.w = std::round(w);
    box.h = std::round(h);
    box.filled = true;
    box.fill = hex(0xFFFFFF);
    box.fill_alpha = 0.9;
    box.stroked = true;
    box.stroke = {hex(0xAAAAAA), 1, {}};
    box.cls = "legend";
    dl_.items.push_back(box);
    for (std::size_t k = 0; k < entries.size(); ++k) {
      const Series& s = c_.series[entries[k].index];
      Stroke st = series_stroke(entries[k].index, c_.series.size(), s_);
      double cy = y + inner + f_legend_ / 2 + row * k;
      Item ln = line(x + inner, cy, x + inner + sample, cy, st.color, st.width, st.dash);
      ln.cls = "legend-sample";
      dl_.items.push_back(ln);
      if (s.markers) dl_.items.push_back(marker({x + inner + sample / 2, cy}, st));
      add_text(x + inner + sample + gap, cy + f_legend_ * 0.36, entries[k].name, f_legend_, Anchor::start, "legend-name");
    }
  }

  const Chart& c_;
  Measurer m_;
  DisplayList dl_;
  double W_, H_, s_, f_tick_, f_label_, f_title_, f_legend_, pad_, tick_major_, tick_minor_;
  double left_ = 0, right_ = 0, top_ = 0, bottom_ = 0;
  Mapping xmap_, ymap_;
  std::vector<Tick> xticks_, yticks_;
};

// ---------------------------------------------------------------------------
// SVG backend.

std::string coord(double v) { return fixed(v, 2); }

std::string svg_stroke(const Stroke& st) {
  std::string s = " stroke=\"" + to_hex(st.color) + "\" stroke-width=\"" + coord(st.width) + "\"";
  if (!st.dash.empty()) {
    s += " stroke-dasharray=\"";
    for (std::size_t i = 0; i < st.dash.size(); ++i) s += (i ? "," : "") + coord(st.dash[i]);
    s += "\"";
  }
  return s;
}

std::string render_svg(const DisplayList& dl) {
  std::string out;
  out += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  out += "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" + std::to_string(dl.width) +
         "\" height=\"" + std::to_string(dl.height) + "\" viewBox=\"0 0 " + std::to_string(dl.width) + " " +
         std::to_string(dl.height) + "\" font-family=\"" + kSvgFontFamily + "\">\n";
  if (!dl.title.empty()) out += "<title>" + xml_escape(dl.title) + "</title>\n";
  int clip_id = 0;
  for (const auto& it : dl.items) {
    std::string cls = it.cls.empty() ? "" : " class=\"" + it.cls + "\"";
    switch (it.kind) {
      case Item::line:
        out += "<line" + cls + " x1=\"" + coord(it.pts[0].x) + "\" y1=\"" + coord(it.pts[0].y) + "\" x2=\"" +
               coord(it.pts[1].x) + "\" y2=\"" + coord(it.pts[1].y) + "\"" + svg_stroke(it.stroke) + "/>\n";
        break;
      case Item::polyline: {
        out += "<polyline" + cls + " fill=\"none\"" + svg_stroke(it.stroke) +
               " stroke-linejoin=\"round\" points=\"";
        for (std::size_t i = 0; i < it.pts.size(); ++i) {
          if (i) out += ' ';
          out += coord(it.pts[i].x) + "," + coord(it.pts[i].y);
        }
        out += "\"/>\n";
        break;
      }
      case Item::rect:
        out += "<rect" + cls + " x=\"" + coord(it.x) + "\" y=\"" + coord(it.y) + "\" width=\"" + coord(it.w) +
               "\" height=\"" + coord(it.h) + "\" fill=\"" + (it.filled ? to_hex(it.fill) : "none") + "\"";
        if (it.filled && it.fill_alpha < 1) out += " fill-opacity=\"" + fixed(it.fill_alpha, 3) + "\"";
        if (it.stroked) out += svg_stroke(it.stroke);
        out += "/>\n";
        break;
      case Item::circle:
        out += "<circle" + cls + " cx=\"" + coord(it.pts[0].x) + "\" cy=\"" + coord(it.pts[0].y) + "\" r=\"" +
               coord(it.radius) + "\" fill=\"" + (it.filled ? to_hex(it.fill) : "none") + "\"";
        if (it.stroked) out += svg_stroke(it.stroke);
        out += "/>\n";
        break;
      case Item::text: {
        const char* anchor = it.anchor == Anchor::start ? "start" : it.anchor == Anchor::middle ? "middle" : "end";
        out += "<text" + cls + " x=\"" + coord(it.pts[0].x) + "\" y=\"" + coord(it.pts[0].y) + "\" font-size=\"" +
               coord(it.size) + "\" text-anchor=\"" + anchor + "\" fill=\"" + to_hex(it.fill) + "\"";
        if (it.bold) out += " font-weight=\"bold\"";
        if (it.angle != 0)
          out += " transform=\"rotate(" + coord(it.angle) + " " + coord(it.pts[0].x) + " " + coord(it.pts[0].y) + ")\"";
        out += ">" + xml_escape(it.str) + "</text>\n";
        break;
      }
      case Item::clip_begin: {
        std::string id = "plot-area-" + std::to_string(clip_id++);
        out += "<clipPath id=\"" + id + "\"><rect x=\"" + coord(it.x) + "\" y=\"" + coord(it.y) + "\" width=\"" +
               coord(it.w) + "\" height=\"" + coord(it.h) + "\"/></clipPath>\n";
        out += "<g clip-path=\"url(#" + id + ")\">\n";
        break;
      }
      case Item::clip_end: out += "</g>\n"; break;
    }
  }
  out += "</svg>\n";
  return out;
}

// ---------------------------------------------------------------------------
// PNG backend.

void cairo_stroke_style(cairo_t* cr, const Stroke& st) {
  cairo_set_source_rgb(cr, st.color.r, st.color.g, st.color.b);
  cairo_set_line_width(cr, st.width);
  cairo_set_dash(cr, st.dash.empty() ? nullptr : st.dash.data(), static_cast<int>(st.dash.size()), 0);
}

cairo_status_t png_sink(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

std::string render_png(const DisplayList& dl) {
  SurfacePtr surface(cairo_image_surface_create(CAIRO_FORMAT_RGB24, dl.width, dl.height));
  if (cairo_surface_status(surface.get()) != CAIRO_STATUS_SUCCESS)
    throw Error("plot: cannot create a " + std::to_string(dl.width) + "x" + std::to_string(dl.height) +
                " image: " + cairo_status_to_string(cairo_surface_status(surface.get())));
  CairoPtr holder(cairo_create(surface.get()));
  cairo_t* cr = holder.get();
  cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
  cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
  for (const auto& it : dl.items) {
    switch (it.kind) {
      case Item::line:
      case Item::polyline:
        cairo_stroke_style(cr, it.stroke);
        cairo_move_to(cr, it.pts[0].x, it.pts[0].y);
        for (std::size_t i = 1; i < it.pts.size(); ++i) cairo_line_to(cr, it.pts[i].x, it.pts[i].y);
        cairo_stroke(cr);
        break;
      case Item::rect:
      case Item::circle:
        if (it.kind == Item::rect)
          cairo_rectangle(cr, it.x, it.y, it.w, it.h);
        else
          cairo_arc(cr, it.pts[0].x, it.pts[0].y, it.radius, 0, 2 * kPi);
        if (it.filled) {
          cairo_set_source_rgba(cr, it.fill.r, it.fill.g, it.fill.b, it.fill_alpha);
          if (it.stroked)
            cairo_fill_preserve(cr);
          else
            cairo_fill(cr);
        }
        if (it.stroked) {
          cairo_stroke_style(cr, it.stroke);
          cairo_stroke(cr);
        }
        cairo_new_path(cr);
        break;
      case Item::text: {
        set_font(cr, it.size, it.bold);
        cairo_text_extents_t ext;
        cairo_text_extents(cr, it.str.c_str(), &ext);
        double dx = it.anchor == Anchor::start ? 0 : it.anchor == Anchor::middle ? -ext.x_advance / 2 : -ext.x_advance;
        cairo_save(cr);
        cairo_translate(cr, it.pts[0].x, it.pts[0].y);
        if (it.angle != 0) cairo_rotate(cr, it.angle * kPi / 180);
        cairo_move_to(cr, dx, 0);
        cairo_set_source_rgb(cr, it.fill.r, it.fill.g, it.fill.b);
        cairo_show_text(cr, it.str.c_str());
        cairo_restore(cr);
        break;
      }
      case Item::clip_begin:
        cairo_save(cr);
        cairo_rectangle(cr, it.x, it.y, it.w, it.h);
        cairo_clip(cr);
        break;
      case Item::clip_end: cairo_restore(cr); break;
    }
  }
  if (cairo_status(cr) != CAIRO_STATUS_SUCCESS)
    throw Error(std::string("plot: drawing failed: ") + cairo_status_to_string(cairo_status(cr)));
  cairo_surface_flush(surface.get());
  std::string png;
  cairo_status_t st = cairo_surface_write_to_png_stream(surface.get(), png_sink, &png);
  if (st != CAIRO_STATUS_SUCCESS) throw Error(std::string("plot: PNG encoding failed: ") + cairo_status_to_string(st));
  return png;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::string render_chart(const Chart& chart, const std::string& format) {
  std::string f = lower(format);
  if (f != "svg" && f != "png") throw UsageError("plot: unknown plot format \"" + format + "\", use svg or png");
  check_chart(chart);
  DisplayList dl = Layout(chart).run();
  return f == "svg" ? render_svg(dl) : render_png(dl);
}

void write_chart(const Chart& chart, const std::string& path) {
  std::string p = lower(path);
  std::string format = ends_with(p, ".svg") ? "svg" : ends_with(p, ".png") ? "png" : "";
  if (format.empty()) throw UsageError(path + ": unknown plot format, use .svg or .png");
  // Render first: a bad chart must not even create the temporary file.
  std::string data = render_chart(chart, format);
  auto out = io::open_output(path, {io::Content::binary, true});
  out->write(data);
  out->commit();
}

}  // namespace hfr::plot
