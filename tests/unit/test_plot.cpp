#include "hfr/plot.hpp"

#include <cairo.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "hfr/error.hpp"

using namespace hfr;
using namespace hfr::plot;

namespace {

// Upper tail of the standard normal.
double q(double x) { return 0.5 * std::erfc(x / std::sqrt(2.0)); }

// A synthetic verification system: genuine scores ~ N(d', 1), impostors ~ N(0, 1).
// Returns (FAR, TAR) pairs over a sweep of thresholds.
std::vector<std::pair<double, double>> roc_points(double dprime) {
  std::vector<std::pair<double, double>> pts;
  for (double t = 10; t >= -6; t -= 0.02) pts.push_back({q(t), q(t - dprime)});
  return pts;
}
std::vector<std::pair<double, double>> det_points(double dprime) {
  std::vector<std::pair<double, double>> pts;
  for (auto [far, tar] : roc_points(dprime)) pts.push_back({far, 1 - tar});
  return pts;
}

Chart roc_chart() {
  Chart c;
  c.title = "ROC: NIR-VIS verification";
  c.x = {"False accept rate (FAR)", Scale::log10, 1e-6, 1};
  c.y = {"True accept rate (TAR)", Scale::linear, 0, 1};
  c.series = {{"ArcFace r100", roc_points(5.5)}, {"Baseline <&> \"quoted\"", roc_points(4.0)}, {"LightCNN", roc_points(3.0)}};
  c.diagonal = true;
  return c;
}

Chart det_chart() {
  Chart c;
  c.title = "DET";
  c.x = {"False accept rate", Scale::probit, 1e-4, 0.5};
  c.y = {"False reject rate", Scale::probit, 1e-3, 0.5};
  c.series = {{"model A", det_points(5.0)}, {"model B", det_points(3.8)}, {"model C", det_points(2.5)}};
  c.diagonal = true;
  return c;
}

Chart cmc_chart() {
  Chart c;
  c.title = "CMC: closed-set identification";
  c.x = {"Rank", Scale::linear, 1, 20};
  c.y = {"Identification rate", Scale::linear, 0.5, 1, true};
  for (int m = 0; m < 3; ++m) {
    Series s{"model " + std::to_string(m + 1), {}, true, m == 2};
    for (int k = 1; k <= 20; ++k) s.points.push_back({k, 1 - (0.3 + 0.1 * m) * std::exp(-(k - 1) / 4.0)});
    c.series.push_back(s);
  }
  return c;
}

std::uint32_t be32(const std::string& s, std::size_t off) {
  auto b = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(s[off + i])); };
  return b(0) << 24 | b(1) << 16 | b(2) << 8 | b(3);
}

struct Reader {
  const std::string* data;
  std::size_t pos = 0;
};
cairo_status_t png_source(void* closure, unsigned char* out, unsigned int length) {
  auto* r = static_cast<Reader*>(closure);
  if (r->pos + length > r->data->size()) return CAIRO_STATUS_READ_ERROR;
  std::copy(r->data->begin() + r->pos, r->data->begin() + r->pos + length, out);
  r->pos += length;
  return CAIRO_STATUS_SUCCESS;
}

// Decoded pixels as 0xRRGGBB.
struct Image {
  int width = 0, height = 0;
  std::vector<std::uint32_t> px;
  int count(std::uint32_t rgb, int tol) const {
    int n = 0;
    for (auto p : px) {
      bool near = true;
      for (int sh : {0, 8, 16}) near = near && std::abs(int((p >> sh) & 255) - int((rgb >> sh) & 255)) <= tol;
      n += near;
    }
    return n;
  }
};
Image decode_png(const std::string& png) {
  Reader r{&png};
  cairo_surface_t* s = cairo_image_surface_create_from_png_stream(png_source, &r);
  REQUIRE(cairo_surface_status(s) == CAIRO_STATUS_SUCCESS);
  Image img;
  img.width = cairo_image_surface_get_width(s);
  img.height = cairo_image_surface_get_height(s);
  int stride = cairo_image_surface_get_stride(s);
  const unsigned char* data = cairo_image_surface_get_data(s);
  for (int y = 0; y < img.height; ++y) {
    auto* row = reinterpret_cast<const std::uint32_t*>(data + y * stride);
    for (int x = 0; x < img.width; ++x) img.px.push_back(row[x] & 0xFFFFFF);
  }
  cairo_surface_destroy(s);
  return img;
}

std::size_t count(const std::string& s, const std::string& needle) {
  std::size_t n = 0;
  for (auto p = s.find(needle); p != std::string::npos; p = s.find(needle, p + needle.size())) ++n;
  return n;
}

// Tags open and close in order (a small check, not a validating parser).
bool balanced(const std::string& svg) {
  std::vector<std::string> stack;
  std::size_t p = 0;
  while ((p = svg.find('<', p)) != std::string::npos) {
    std::size_t e = svg.find('>', p);
    if (e == std::string::npos) return false;
    std::string tag = svg.substr(p + 1, e - p - 1);
    p = e + 1;
    if (tag.empty() || tag[0] == '?' || tag[0] == '!') continue;
    if (tag.back() == '/') continue;
    bool closing = tag[0] == '/';
    std::string name = tag.substr(closing ? 1 : 0, tag.find_first_of(" \t\n") - (closing ? 1 : 0));
    if (!closing) {
      stack.push_back(name);
    } else {
      if (stack.empty() || stack.back() != name) return false;
      stack.pop_back();
    }
  }
  return stack.empty();
}

// x (or y) attribute of the <text> element whose content is exactly `label`.
double text_attr(const std::string& svg, const std::string& label, const std::string& attr) {
  auto end = svg.find(">" + label + "</text>");
  REQUIRE(end != std::string::npos);
  auto start = svg.rfind("<text", end);
  auto a = svg.find(" " + attr + "=\"", start);
  REQUIRE(a < end);
  return std::stod(svg.substr(a + attr.size() + 3));
}

std::string tmpdir() {
  char t[] = "/tmp/hfr-plot-XXXXXX";
  REQUIRE(mkdtemp(t) != nullptr);
  return t;
}
bool exists(const std::string& p) {
  struct stat st{};
  return ::stat(p.c_str(), &st) == 0;
}
std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("plot: ROC chart as SVG has labels, legend, ticks", "[plot]") {
  std::string svg = render_chart(roc_chart(), "svg");
  CHECK((svg.rfind("<?xml", 0) == 0 || svg.rfind("<svg", 0) == 0));
  CHECK(balanced(svg));
  CHECK(svg.find("viewBox=\"0 0 800 600\"") != std::string::npos);
  CHECK(svg.find("DejaVu Sans, Arial, sans-serif") != std::string::npos);
  CHECK(svg.find(">False accept rate (FAR)</text>") != std::string::npos);
  CHECK(svg.find(">True accept rate (TAR)</text>") != std::string::npos);
  CHECK(svg.find(">ROC: NIR-VIS verification</text>") != std::string::npos);
  CHECK(svg.find(">ArcFace r100</text>") != std::string::npos);
  CHECK(svg.find(">LightCNN</text>") != std::string::npos);
  // The user's string is escaped, never emitted raw.
  CHECK(svg.find(">Baseline &lt;&amp;&gt; &quot;quoted&quot;</text>") != std::string::npos);
  CHECK(svg.find("<&>") == std::string::npos);
  // Decade ticks 10^-6 .. 10^0 in Unicode superscripts; linear ticks on y.
  CHECK(svg.find(">10\u207B\u2076</text>") != std::string::npos);
  CHECK(svg.find(">10\u207B\u00B3</text>") != std::string::npos);
  CHECK(svg.find(">10\u2070</text>") != std::string::npos);
  CHECK(svg.find(">0.6</text>") != std::string::npos);
  CHECK(svg.find(">1.0</text>") != std::string::npos);
  CHECK(count(svg, "class=\"series\"") >= 3);
  CHECK(count(svg, "class=\"diagonal\"") >= 1);
  CHECK(svg.find("clip-path=") != std::string::npos);
  // The y label is rotated.
  auto ylab = svg.find(">True accept rate (TAR)</text>");
  CHECK(svg.rfind("rotate(-90", ylab) > svg.rfind("<text", ylab));
  // Three series: colours only, no dashes.
  CHECK(svg.find("#0072b2") != std::string::npos);
  CHECK(svg.find("#d55e00") != std::string::npos);
  CHECK(svg.find("stroke-dasharray=\"8") == std::string::npos);
}

TEST_CASE("plot: ROC chart as PNG has the right size and draws the series", "[plot]") {
  Chart c = roc_chart();
  c.width = 640;
  c.height = 480;
  std::string png = render_chart(c, "png");
  REQUIRE(png.size() > 33);
  CHECK(png.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);
  CHECK(png.compare(12, 4, "IHDR") == 0);
  CHECK(be32(png, 16) == 640);
  CHECK(be32(png, 20) == 480);
  Image img = decode_png(png);
  REQUIRE(img.width == 640);
  REQUIRE(img.height == 480);
  int white = img.count(0xFFFFFF, 0);
  int total = img.width * img.height;
  CHECK(total - white > total / 50);  // frame, grid, text, curves
  CHECK(white > total / 2);           // still mostly background
  CHECK(img.count(0x0072B2, 8) > 100);  // first series (Okabe-Ito blue)
  CHECK(img.count(0xD55E00, 8) > 100);  // second series (vermillion)
  CHECK(img.count(0x009E73, 8) > 100);  // third series (bluish green)
}

TEST_CASE("plot: DET chart has probit ticks in percent", "[plot]") {
  std::string svg = render_chart(det_chart(), "svg");
  CHECK(balanced(svg));
  for (const char* t : {">0.01%<", ">0.1%<", ">1%<", ">2%<", ">5%<", ">10%<", ">20%<", ">40%<"}) {
    INFO(t);
    CHECK(svg.find(t) != std::string::npos);
  }
  std::string png = render_chart(det_chart(), "png");
  Image img = decode_png(png);
  CHECK(img.count(0x0072B2, 8) > 100);
}

TEST_CASE("plot: probit ticks sit at normal deviates", "[plot]") {
  // Symmetric axis 0.1% .. 99.9%: the ticks' x positions are affine in the
  // normal deviate, Phi^-1(0.001) = -3.090232306167813 at the left edge and
  // +3.09... at the right; 1% is at Phi^-1(0.01) = -2.3263478740408408.
  Chart c;
  c.x = {"FAR", Scale::probit, 0.001, 0.999};
  c.y = {"FRR", Scale::linear, 0, 1};
  c.width = 1600;
  std::string svg = render_chart(c, "svg");
  double x_lo = text_attr(svg, "0.1%", "x"), x_hi = text_attr(svg, "99.9%", "x"), x1 = text_attr(svg, "1%", "x");
  double z_lo = -3.090232306167813, z1 = -2.3263478740408408;
  double expected = (z1 - z_lo) / (-2 * z_lo);
  CHECK((x1 - x_lo) / (x_hi - x_lo) == Approx(expected).margin(2e-5));
  // 50% is not a DET tick, but the centre of the axis is at deviate 0.
  double x40 = text_attr(svg, "40%", "x"), x60 = text_attr(svg, "60%", "x");
  CHECK((x40 + x60) / 2 == Approx((x_lo + x_hi) / 2).margin(0.02));
  // A range with no conventional tick inside gets its ends labelled.
  c.x.min = 0.3;
  c.x.max = 0.35;
  svg = render_chart(c, "svg");
  CHECK(svg.find(">30%</text>") != std::string::npos);
  CHECK(svg.find(">35%</text>") != std::string::npos);
}

TEST_CASE("plot: CMC chart draws staircases with integer rank ticks", "[plot]") {
  Chart c = cmc_chart();
  std::string svg = render_chart(c, "svg");
  CHECK(balanced(svg));
  CHECK(svg.find(">Rank</text>") != std::string::npos);
  CHECK(svg.find(">Identification rate</text>") != std::string::npos);
  CHECK(svg.find(">100%</text>") != std::string::npos);
  CHECK(svg.find(">1.5</text>") == std::string::npos);
  CHECK(svg.find(">1</text>") != std::string::npos);  // rank 1 labelled besides 5, 10, ...
  CHECK(svg.find(">5</text>") != std::string::npos);
  CHECK(count(svg, "class=\"marker\"") >= 20);  // third series has markers
  CHECK(count(svg, "class=\"series\"") >= 3);
  std::string png = render_chart(c, "png");
  Image img = decode_png(png);
  CHECK(img.count(0x009E73, 8) > 100);
}

TEST_CASE("plot: many series get dash patterns", "[plot]") {
  Chart c = roc_chart();
  c.series.clear();
  for (int i = 0; i < 9; ++i) c.series.push_back({"s" + std::to_string(i), roc_points(2 + 0.4 * i)});
  std::string svg = render_chart(c, "svg");
  CHECK(count(svg, "stroke-dasharray") >= 6);
  CHECK(svg.find(">s8</text>") != std::string::npos);
}

TEST_CASE("plot: empty series list still draws axes", "[plot]") {
  Chart c = roc_chart();
  c.series.clear();
  c.diagonal = false;
  std::string svg = render_chart(c, "svg");
  CHECK(balanced(svg));
  CHECK(svg.find(">10\u207B\u2076</text>") != std::string::npos);
  CHECK(svg.find(">False accept rate (FAR)</text>") != std::string::npos);
  CHECK(svg.find("class=\"legend\"") == std::string::npos);
  CHECK(svg.find("class=\"frame\"") != std::string::npos);
  Image img = decode_png(render_chart(c, "png"));
  CHECK(img.width * img.height - img.count(0xFFFFFF, 0) > 1000);
}

TEST_CASE("plot: bad values are skipped, clamped or dropped", "[plot]") {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  Chart c = roc_chart();
  c.series = {{"odd", {{0, 0.5}, {-1, 0.6}, {nan, 0.7}, {1e-3, inf}, {1e-3, 0.8}, {1e300, 1e300}, {0.5, -1e300}, {1, 1}}},
              {"only nan", {{nan, nan}}},
              {"empty", {}}};
  CHECK(balanced(render_chart(c, "svg")));
  CHECK_NOTHROW(render_chart(c, "png"));
  Chart d = det_chart();
  d.series = {{"edges", {{0, 1}, {1e-5, 0.9}, {0.01, 0.01}, {0.9, 0}, {1, 0}, {nan, 0.1}}}};
  std::string svg = render_chart(d, "svg");
  CHECK(balanced(svg));
  CHECK(svg.find("nan") == std::string::npos);
  CHECK(svg.find("inf") == std::string::npos);
  // Control characters and invalid UTF-8 in names are made safe.
  c.series = {{std::string("bad\x01name\xff\xfe"), roc_points(3)}};
  svg = render_chart(c, "svg");
  CHECK(svg.find("bad name\xEF\xBF\xBD\xEF\xBF\xBD") != std::string::npos);
  CHECK_NOTHROW(render_chart(c, "png"));
}

TEST_CASE("plot: invalid charts and formats are refused", "[plot]") {
  Chart c = roc_chart();
  CHECK_THROWS_AS(render_chart(c, "gif"), UsageError);
  CHECK_NOTHROW(render_chart(c, "SVG"));

  auto refused = [](Chart ch, const std::string& what) {
    try {
      render_chart(ch, "svg");
      FAIL("accepted: " << what);
    } catch (const UsageError& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find(what) != std::string::npos);
    }
  };
  Chart b = c;
  b.width = 50;
  refused(b, "chart size 50x600");
  b = c;
  b.height = 20000;
  refused(b, "chart size");
  b = c;
  b.y.min = 1;
  b.y.max = 1;
  refused(b, "y axis: min (1) must be less than max (1)");
  b = c;
  b.x.min = 0;
  refused(b, "x axis: a log scale needs min > 0");
  b = c;
  b.x.max = std::numeric_limits<double>::quiet_NaN();
  refused(b, "x axis: range must be finite");
  b = det_chart();
  b.y.max = 1;
  refused(b, "y axis: a probit scale needs 0 < min < max < 1");
  b = det_chart();
  b.x.min = 0;
  refused(b, "x axis: a probit scale");
}

TEST_CASE("plot: write_chart picks the format by suffix and writes atomically", "[plot]") {
  std::string dir = tmpdir();
  Chart c = det_chart();
  write_chart(c, dir + "/det.svg");
  write_chart(c, dir + "/det.PNG");
  std::string svg = slurp(dir + "/det.svg"), png = slurp(dir + "/det.PNG");
  CHECK(svg.rfind("<?xml", 0) == 0);
  CHECK(svg.find(">model B</text>") != std::string::npos);
  CHECK(png.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);
  try {
    write_chart(c, dir + "/det.jpg");
    FAIL("accepted .jpg");
  } catch (const UsageError& e) {
    CHECK(std::string(e.what()) == dir + "/det.jpg: unknown plot format, use .svg or .png");
  }
  CHECK_FALSE(exists(dir + "/det.jpg"));
  c.x.min = 2;
  CHECK_THROWS_AS(write_chart(c, dir + "/bad.png"), UsageError);
  CHECK_FALSE(exists(dir + "/bad.png"));
  CHECK_THROWS_AS(write_chart(c, dir + "/no/such/dir/x.svg"), Error);
  std::system(("rm -rf " + dir).c_str());
}

// Not run by default: writes sample charts for a human to look at.
//   hfr_unit_plot "[.samples]"   (into $HFR_PLOT_SAMPLES, default /tmp)
TEST_CASE("plot: sample charts", "[.samples]") {
  const char* env = std::getenv("HFR_PLOT_SAMPLES");
  std::string dir = env ? env : "/tmp";
  write_chart(roc_chart(), dir + "/hfr-plot-roc.png");
  write_chart(roc_chart(), dir + "/hfr-plot-roc.svg");
  write_chart(det_chart(), dir + "/hfr-plot-det.png");
  write_chart(det_chart(), dir + "/hfr-plot-det.svg");
  write_chart(cmc_chart(), dir + "/hfr-plot-cmc.png");
  Chart many = roc_chart();
  many.title = "Nine systems";
  many.series.clear();
  for (int i = 0; i < 9; ++i) many.series.push_back({"system " + std::to_string(i + 1), roc_points(2 + 0.4 * i)});
  write_chart(many, dir + "/hfr-plot-many.png");
  Chart big = det_chart();
  big.width = 1600;
  big.height = 1200;
  write_chart(big, dir + "/hfr-plot-det-big.png");
  Chart lin = roc_chart();
  lin.title = "";
  lin.x = {"False accept rate", Scale::linear, 0, 1, true};
  write_chart(lin, dir + "/hfr-plot-roc-linear.png");
  Chart stress = roc_chart();
  stress.title = std::string(300, 'T') + " a very long title";
  stress.x = {"FAR (" + std::string(200, 'x') + ")", Scale::log10, 1e-12, 1};
  stress.y = {"TAR", Scale::log10, 0.3, 1};
  stress.series[0].name = "a series name that goes on and on and on and on and on and on and on and on and on";
  stress.series[1].markers = true;
  write_chart(stress, dir + "/hfr-plot-stress.png");
  Chart small = cmc_chart();
  small.width = 320;
  small.height = 240;
  write_chart(small, dir + "/hfr-plot-cmc-small.png");
}
