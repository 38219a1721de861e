#include "hfr/image.hpp"
#include "hfr/png.hpp"

#include <gif_lib.h>

#include <algorithm>
#include <cstring>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "hfr/error.hpp"
#include "hfr/io.hpp"

namespace hfr {
namespace {

std::uint32_t be16(const unsigned char* p) { return (static_cast<std::uint32_t>(p[0]) << 8) | p[1]; }
std::uint32_t be32(const unsigned char* p) { return (be16(p) << 16) | be16(p + 2); }
std::uint32_t le16(const unsigned char* p) { return p[0] | (static_cast<std::uint32_t>(p[1]) << 8); }
std::uint32_t le32(const unsigned char* p) { return le16(p) | (le16(p + 2) << 16); }

[[noreturn]] void bad(const std::string& name, const std::string& why) { throw FormatError(name + ": " + why); }

ImageHeader probe_jpeg(const unsigned char* d, std::size_t n, const std::string& name) {
  std::size_t i = 2;
  while (i + 4 <= n) {
    if (d[i] != 0xFF) bad(name, "corrupt JPEG (marker expected at byte " + std::to_string(i) + ")");
    unsigned m = d[i + 1];
    if (m == 0xFF) {
      ++i;
      continue;
    }
    if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) {
      i += 2;
      continue;
    }
    std::uint32_t len = be16(d + i + 2);
    if (len < 2) bad(name, "corrupt JPEG segment length");
    bool sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
    if (sof) {
      if (i + 9 > n) break;
      return {"jpeg", static_cast<int>(be16(d + i + 7)), static_cast<int>(be16(d + i + 5))};
    }
    if (m == 0xD9 || m == 0xDA) break;
    i += 2 + len;
  }
  bad(name, "corrupt or truncated JPEG (no frame header)");
}

ImageHeader probe_pnm(const unsigned char* d, std::size_t n, const std::string& name) {
  std::size_t i = 2;
  long vals[2] = {0, 0};
  for (int k = 0; k < 2; ++k) {
    for (;;) {
      while (i < n && std::isspace(d[i])) ++i;
      if (i < n && d[i] == '#') {
        while (i < n && d[i] != '\n') ++i;
        continue;
      }
      break;
    }
    if (i >= n || !std::isdigit(d[i])) bad(name, "corrupt PNM header");
    long v = 0;
    while (i < n && std::isdigit(d[i])) {
      v = v * 10 + (d[i] - '0');
      if (v > (1L << 30)) bad(name, "PNM dimension too large");
      ++i;
    }
    vals[k] = v;
  }
  return {"pnm", static_cast<int>(vals[0]), static_cast<int>(vals[1])};
}

ImageHeader probe_tiff(const unsigned char* d, std::size_t n, const std::string& name) {
  bool le = d[0] == 'I';
  auto r16 = [&](std::size_t o) { return le ? le16(d + o) : be16(d + o); };
  auto r32 = [&](std::size_t o) { return le ? le32(d + o) : be32(d + o); };
  std::uint32_t ifd = r32(4);
  if (ifd < 8 || static_cast<std::uint64_t>(ifd) + 2 > n) bad(name, "corrupt TIFF header");
  std::uint32_t count = r16(ifd);
  long w = -1, h = -1;
  for (std::uint32_t e = 0; e < count; ++e) {
    std::uint64_t o = ifd + 2 + 12ull * e;
    if (o + 12 > n) bad(name, "truncated TIFF directory");
    std::uint32_t tag = r16(o), type = r16(o + 2);
    std::uint32_t v = type == 3 ? r16(o + 8) : r32(o + 8);
    if (tag == 256) w = v;
    if (tag == 257) h = v;
  }
  if (w < 0 || h < 0) bad(name, "TIFF without width/height");
  return {"tiff", static_cast<int>(std::min<long>(w, 1L << 30)), static_cast<int>(std::min<long>(h, 1L << 30))};
}

ImageHeader probe_webp(const unsigned char* d, std::size_t n, const std::string& name) {
  if (n < 30) bad(name, "truncated WebP header");
  if (std::memcmp(d + 12, "VP8X", 4) == 0)
    return {"webp", static_cast<int>((d[24] | (d[25] << 8) | (d[26] << 16)) + 1), static_cast<int>((d[27] | (d[28] << 8) | (d[29] << 16)) + 1)};
  if (std::memcmp(d + 12, "VP8L", 4) == 0) {
    std::uint32_t b = le32(d + 21);
    return {"webp", static_cast<int>((b & 0x3fff) + 1), static_cast<int>(((b >> 14) & 0x3fff) + 1)};
  }
  if (std::memcmp(d + 12, "VP8 ", 4) == 0) return {"webp", static_cast<int>(le16(d + 26) & 0x3fff), static_cast<int>(le16(d + 28) & 0x3fff)};
  bad(name, "unknown WebP variant");
}

struct GifSource {
  const unsigned char* data;
  std::size_t size, pos;
};

int gif_read(GifFileType* gif, GifByteType* buf, int n) {
  auto* src = static_cast<GifSource*>(gif->UserData);
  std::size_t k = std::min<std::size_t>(static_cast<std::size_t>(n), src->size - src->pos);
  std::memcpy(buf, src->data + src->pos, k);
  src->pos += k;
  return static_cast<int>(k);
}

cv::Mat decode_gif(const std::vector<unsigned char>& bytes, const std::string& name) {
  GifSource src{bytes.data(), bytes.size(), 0};
  int err = 0;
  GifFileType* gif = DGifOpen(&src, gif_read, &err);
  if (!gif) bad(name, std::string("cannot decode GIF: ") + GifErrorString(err));
  struct Closer {
    GifFileType* g;
    ~Closer() {
      int e;
      DGifCloseFile(g, &e);
    }
  } closer{gif};
  if (DGifSlurp(gif) != GIF_OK || gif->ImageCount < 1) bad(name, std::string("cannot decode GIF: ") + GifErrorString(gif->Error));
  const SavedImage& im = gif->SavedImages[0];
  const ColorMapObject* cmap = im.ImageDesc.ColorMap ? im.ImageDesc.ColorMap : gif->SColorMap;
  if (!cmap || cmap->ColorCount <= 0) bad(name, "GIF without a colour map");
  int W = gif->SWidth, H = gif->SHeight;
  const auto& desc = im.ImageDesc;
  if (W <= 0 || H <= 0 || desc.Width <= 0 || desc.Height <= 0 || desc.Left < 0 || desc.Top < 0 || desc.Left + desc.Width > W ||
      desc.Top + desc.Height > H)
    bad(name, "GIF frame outside the logical screen");
  cv::Mat rgb(H, W, CV_8UC3);
  int bg = gif->SBackGroundColor < cmap->ColorCount ? gif->SBackGroundColor : 0;
  rgb.setTo(cv::Scalar(cmap->Colors[bg].Red, cmap->Colors[bg].Green, cmap->Colors[bg].Blue));
  for (int y = 0; y < desc.Height; ++y) {
    auto* row = rgb.ptr<unsigned char>(desc.Top + y) + 3 * desc.Left;
    for (int x = 0; x < desc.Width; ++x) {
      int idx = im.RasterBits[static_cast<std::size_t>(y) * desc.Width + x];
      if (idx >= cmap->ColorCount) bad(name, "GIF colour index outside the colour map");
      row[3 * x] = cmap->Colors[idx].Red;
      row[3 * x + 1] = cmap->Colors[idx].Green;
      row[3 * x + 2] = cmap->Colors[idx].Blue;
    }
  }
  return rgb;
}

}  // namespace

ImageHeader probe_image(const unsigned char* d, std::size_t n, const std::string& name) {
  if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return probe_jpeg(d, n, name);
  if (n >= 24 && std::memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0) {
    if (std::memcmp(d + 12, "IHDR", 4) != 0) bad(name, "corrupt PNG (no IHDR)");
    return {"png", static_cast<int>(std::min<std::uint32_t>(be32(d + 16), 1u << 30)), static_cast<int>(std::min<std::uint32_t>(be32(d + 20), 1u << 30))};
  }
  if (n >= 3 && d[0] == 'P' && d[1] >= '1' && d[1] <= '6' && std::isspace(d[2])) return probe_pnm(d, n, name);
  if (n >= 26 && d[0] == 'B' && d[1] == 'M') {
    auto w = static_cast<std::int32_t>(le32(d + 18)), h = static_cast<std::int32_t>(le32(d + 22));
    if (w <= 0 || h == 0 || h == INT32_MIN) bad(name, "corrupt BMP header");
    return {"bmp", w, h < 0 ? -h : h};
  }
  if (n >= 10 && (std::memcmp(d, "GIF87a", 6) == 0 || std::memcmp(d, "GIF89a", 6) == 0))
    return {"gif", static_cast<int>(le16(d + 6)), static_cast<int>(le16(d + 8))};
  if (n >= 8 && (std::memcmp(d, "II*\0", 4) == 0 || std::memcmp(d, "MM\0*", 4) == 0)) return probe_tiff(d, n, name);
  if (n >= 16 && std::memcmp(d, "RIFF", 4) == 0 && std::memcmp(d + 8, "WEBP", 4) == 0) return probe_webp(d, n, name);
  bad(name, "not an image in a supported format (JPEG, PNG, PNM, BMP, GIF, TIFF, WebP)");
}

cv::Mat decode_image(const std::vector<unsigned char>& bytes, const std::string& name, ColorMode mode, const ImageLimits& limits) {
  if (bytes.empty()) bad(name, "empty file");
  ImageHeader h = probe_image(bytes.data(), bytes.size(), name);
  if (h.width <= 0 || h.height <= 0) bad(name, "image has no pixels (" + std::to_string(h.width) + "x" + std::to_string(h.height) + ")");
  std::uint64_t px = static_cast<std::uint64_t>(h.width) * static_cast<std::uint64_t>(h.height);
  if (px > limits.max_pixels)
    bad(name, "image too large: " + std::to_string(h.width) + "x" + std::to_string(h.height) + " pixels (limit " +
                  std::to_string(limits.max_pixels) + ")");
  cv::Mat img;
  if (h.format == "gif") {
    cv::Mat rgb = decode_gif(bytes, name);
    if (mode == ColorMode::rgb) return rgb;
    cv::cvtColor(rgb, img, cv::COLOR_RGB2GRAY);
    return img;
  }
  try {
    cv::Mat buf(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<unsigned char*>(bytes.data()));
    img = cv::imdecode(buf, mode == ColorMode::grey ? cv::IMREAD_GRAYSCALE : cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    bad(name, "cannot decode " + h.format + " image: " + e.msg);
  }
  if (img.empty()) bad(name, "cannot decode " + h.format + " image (corrupt or truncated)");
  if (img.cols != h.width || img.rows != h.height) {
    // EXIF orientation may swap the axes of a JPEG; anything else is suspicious.
    if (!(h.format == "jpeg" && img.cols == h.height && img.rows == h.width))
      bad(name, "decoded size differs from the header");
  }
  if (img.depth() != CV_8U) img.convertTo(img, CV_8U, 1.0 / 256.0);
  if (mode == ColorMode::rgb) {
    if (img.channels() == 3) cv::cvtColor(img, img, cv::COLOR_BGR2RGB);
    else if (img.channels() == 1) cv::cvtColor(img, img, cv::COLOR_GRAY2RGB);
    else if (img.channels() == 4) cv::cvtColor(img, img, cv::COLOR_BGRA2RGB);
  } else if (img.channels() != 1) {
    cv::cvtColor(img, img, img.channels() == 4 ? cv::COLOR_BGRA2GRAY : cv::COLOR_BGR2GRAY);
  }
  return img;
}

cv::Mat read_image(const std::string& path, ColorMode mode, const ImageLimits& limits) {
  return decode_image(io::read_file(path, limits.max_file_bytes), path, mode, limits);
}

void write_image(const std::string& path, const cv::Mat& image) {
  if (image.depth() != CV_8U || (image.channels() != 1 && image.channels() != 3))
    throw Error(path + ": can only write 8-bit grey or RGB images");
  auto dot = path.find_last_of('.');
  std::string ext = dot == std::string::npos ? std::string(".png") : path.substr(dot);
  std::string lower = ext;
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == ".png") {  // libpng directly, the bytes OpenCV's encoder gives (hfr/png.hpp)
    write_png(path, image);
    return;
  }
  cv::Mat bgr;  // a new buffer: never convert the caller's image in place
  if (image.channels() == 3) cv::cvtColor(image, bgr, cv::COLOR_RGB2BGR);
  else bgr = image;
  std::vector<unsigned char> buf;
  try {
    if (!cv::imencode(ext, bgr, buf)) throw Error(path + ": cannot encode image");
  } catch (const cv::Exception& e) {
    throw Error(path + ": cannot encode image as '" + ext + "': " + e.msg);
  }
  auto out = io::open_output(path, {io::Content::binary, false});
  out->write(buf.data(), buf.size());
  out->commit();
}

}  // namespace hfr
