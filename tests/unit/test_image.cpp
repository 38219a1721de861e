#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "hfr/error.hpp"
#include "hfr/image.hpp"
#include "hfr/io.hpp"
#include "hfr/png.hpp"

using namespace hfr;

namespace {
bool have(const std::string& p) {
  struct stat st{};
  return ::stat(p.c_str(), &st) == 0;
}
std::vector<unsigned char> encode(const std::string& ext, const cv::Mat& bgr) {
  std::vector<unsigned char> b;
  REQUIRE(cv::imencode(ext, bgr, b));
  return b;
}
}  // namespace

TEST_CASE("image: colour conventions (RGB order, BT.601 grey)", "[image]") {
  cv::Mat bgr(4, 6, CV_8UC3, cv::Scalar(30, 160, 220));  // B=30 G=160 R=220
  for (std::string ext : {".png", ".bmp", ".ppm", ".tiff"}) {
    INFO(ext);
    auto bytes = encode(ext, bgr);
    ImageHeader h = probe_image(bytes.data(), bytes.size(), "x" + ext);
    CHECK(h.width == 6);
    CHECK(h.height == 4);
    cv::Mat rgb = decode_image(bytes, "x" + ext, ColorMode::rgb);
    REQUIRE(rgb.type() == CV_8UC3);
    CHECK(rgb.at<cv::Vec3b>(2, 3) == cv::Vec3b(220, 160, 30));
    cv::Mat grey = decode_image(bytes, "x" + ext, ColorMode::grey);
    REQUIRE(grey.type() == CV_8UC1);
    int y = static_cast<int>(0.299 * 220 + 0.587 * 160 + 0.114 * 30 + 0.5);
    CHECK(std::abs(grey.at<unsigned char>(1, 1) - y) <= 1);
  }
}

TEST_CASE("image: grey input becomes three equal channels in RGB mode", "[image]") {
  cv::Mat g(3, 3, CV_8UC1, cv::Scalar(77));
  auto bytes = encode(".pgm", g);
  cv::Mat rgb = decode_image(bytes, "g.pgm", ColorMode::rgb);
  CHECK(rgb.at<cv::Vec3b>(0, 0) == cv::Vec3b(77, 77, 77));
}

TEST_CASE("image: pixel limit is enforced from the header, before decoding", "[image]") {
  cv::Mat bgr(100, 100, CV_8UC3, cv::Scalar(1, 2, 3));
  auto bytes = encode(".png", bgr);
  ImageLimits lim;
  lim.max_pixels = 9999;
  CHECK_THROWS_WITH(decode_image(bytes, "big.png", ColorMode::rgb, lim), "big.png: image too large: 100x100 pixels (limit 9999)");
  // A PNG header claiming 100000 x 100000 pixels fails fast with the default limit.
  bytes[16] = 0, bytes[17] = 1, bytes[18] = 0x86, bytes[19] = 0xa0;
  bytes[20] = 0, bytes[21] = 1, bytes[22] = 0x86, bytes[23] = 0xa0;
  CHECK_THROWS_WITH(decode_image(bytes, "bomb.png", ColorMode::rgb), Catch::Contains("image too large: 100000x100000"));
}

TEST_CASE("image: unreadable inputs name the file", "[image]") {
  std::vector<unsigned char> junk = {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'};
  CHECK_THROWS_WITH(decode_image(junk, "a.jpg", ColorMode::rgb), Catch::StartsWith("a.jpg: not an image in a supported format"));
  CHECK_THROWS_WITH(decode_image({}, "e.png", ColorMode::rgb), "e.png: empty file");
  cv::Mat bgr(50, 50, CV_8UC3, cv::Scalar(1, 2, 3));
  auto jpg = encode(".jpg", bgr);
  jpg.resize(jpg.size() / 3);
  CHECK_THROWS_AS(decode_image(jpg, "cut.jpg", ColorMode::rgb), FormatError);
  CHECK_THROWS_WITH(read_image("/nonexistent.png", ColorMode::rgb), "/nonexistent.png: No such file or directory");
}

TEST_CASE("image: real ORL (PGM) and Yale (GIF) faces decode", "[image][data]") {
  std::string orl = std::string(HFR_SHARED_DATA) + "/orl-faces/s1/1.pgm";
  std::string yale = std::string(HFR_SHARED_DATA) + "/yale-faces/subject01.glasses";
  if (!have(orl) || !have(yale)) {
    WARN("skipped: ../shared/data (ORL, Yale) is not present on this machine");
    return;
  }
  cv::Mat g = read_image(orl, ColorMode::grey);
  CHECK(g.cols == 92);
  CHECK(g.rows == 112);
  CHECK(cv::mean(g)[0] > 20);
  cv::Mat y = read_image(yale, ColorMode::grey);
  CHECK(y.cols == 320);
  CHECK(y.rows == 243);
  cv::Mat yr = read_image(yale, ColorMode::rgb);
  CHECK(yr.channels() == 3);
  auto hdr = io::read_file(yale, 1 << 20);
  CHECK(probe_image(hdr.data(), hdr.size(), yale).format == "gif");
  // Grey from the GIF equals the BT.601 conversion of its RGB.
  cv::Mat c;
  cv::cvtColor(yr, c, cv::COLOR_RGB2GRAY);
  CHECK(cv::norm(c, y, cv::NORM_INF) == 0);
}

TEST_CASE("image: write_image writes atomically and reads back", "[image]") {
  cv::Mat rgb(5, 7, CV_8UC3, cv::Scalar(10, 20, 30));
  std::string p = "/tmp/hfr-test-write.png";
  write_image(p, rgb);
  cv::Mat back = read_image(p, ColorMode::rgb);
  CHECK(cv::norm(back, rgb, cv::NORM_INF) == 0);
  std::remove(p.c_str());
}

TEST_CASE("image: encode_png gives OpenCV's PNG bytes; read_png reads them back", "[image]") {
  cv::RNG rng(7);
  for (int channels : {1, 3}) {
    for (cv::Size size : {cv::Size(1, 1), cv::Size(7, 5), cv::Size(112, 112), cv::Size(97, 131)}) {
      cv::Mat img(size, CV_8UC(channels));
      rng.fill(img, cv::RNG::UNIFORM, 0, 256);
      if (size.width > 50) cv::GaussianBlur(img, img, cv::Size(0, 0), 2);  // image-like runs, not just noise
      cv::Mat bgr;
      if (channels == 3) cv::cvtColor(img, bgr, cv::COLOR_RGB2BGR);
      else bgr = img;
      CHECK(encode_png(img, "x") == encode(".png", bgr));
      const std::string p = "/tmp/hfr-test-png.png";
      write_png(p, img);
      CHECK(io::read_file(p, 1 << 20) == encode(".png", bgr));
      CHECK(cv::norm(read_png(p, channels == 3 ? ColorMode::rgb : ColorMode::grey), img, cv::NORM_INF) == 0);
      CHECK(cv::norm(read_png(p, ColorMode::rgb), read_image(p, ColorMode::rgb), cv::NORM_INF) == 0);
      CHECK(cv::norm(read_png(p, ColorMode::grey), read_image(p, ColorMode::grey), cv::NORM_INF) == 0);
      std::remove(p.c_str());
    }
  }
  CHECK_THROWS_AS(encode_png(cv::Mat(2, 2, CV_32F), "x"), Error);
  const std::string bad = "/tmp/hfr-test-png-bad.png";
  {
    std::vector<unsigned char> b = encode(".png", cv::Mat(9, 9, CV_8UC1, cv::Scalar(3)));
    b.resize(b.size() / 2);
    auto out = io::open_output(bad, {io::Content::binary, false});
    out->write(b.data(), b.size());
    out->commit();
  }
  CHECK_THROWS_WITH(read_png(bad, ColorMode::grey), Catch::Contains("hfr-test-png-bad.png"));
  std::remove(bad.c_str());
}
