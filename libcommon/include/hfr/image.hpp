// Image decoding with limits. Formats: JPEG, PNG, PNM (PGM/PPM/PBM), BMP, TIFF,
// WebP (OpenCV) and GIF (giflib, first frame). Before decoding, the header is
// read and width × height checked against a pixel limit, so a hostile file
// cannot make us allocate a huge buffer.
//
// Colour conventions (documented in hfr(7)):
//  - ColorMode::rgb gives 8-bit, 3 channels in R,G,B order (not OpenCV's BGR);
//    grey inputs are replicated into the three channels; alpha is dropped.
//  - ColorMode::grey gives 8-bit, 1 channel; colour inputs are converted with
//    ITU-R BT.601 luma, Y = 0.299 R + 0.587 G + 0.114 B (as OpenCV does).
//  - 16-bit inputs are reduced to 8 bits (value / 256, rounded).
//  - JPEG EXIF orientation is applied.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace hfr {

enum class ColorMode { rgb, grey };

struct ImageLimits {
  std::uint64_t max_pixels = 100'000'000;   // width × height
  std::uint64_t max_file_bytes = 512u << 20;
};

struct ImageHeader {
  std::string format;  // "jpeg", "png", "pnm", "bmp", "gif", "tiff", "webp"
  int width = 0;
  int height = 0;
};

// Reads format and size from the first bytes; throws FormatError naming
// `name` when the format is unknown or the header is malformed.
ImageHeader probe_image(const unsigned char* data, std::size_t size, const std::string& name);

cv::Mat decode_image(const std::vector<unsigned char>& bytes, const std::string& name, ColorMode mode,
                     const ImageLimits& limits = {});
cv::Mat read_image(const std::string& path, ColorMode mode, const ImageLimits& limits = {});

// Writes an 8-bit grey or RGB image atomically; format from the extension.
void write_image(const std::string& path, const cv::Mat& image);

bool is_image_path(const std::string& path);  // by extension

}  // namespace hfr
