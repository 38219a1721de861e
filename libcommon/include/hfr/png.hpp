// PNG files with libpng alone: hfr-render writes its crops, frames and
// contact sheets with these, so that it needs no OpenCV imgcodecs (whose
// dependencies, GDAL among them, cost ~0.1 s of start-up and a BLAS thread
// pool per process). write_image uses encode_png for .png files too.
#pragma once
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "hfr/image.hpp"

namespace hfr {

// An 8-bit grey or RGB image (R,G,B order) as PNG, with the settings of
// OpenCV's encoder (SUB filter, zlib level 1, Z_RLE): the same bytes as
// cv::imencode(".png") gives for the image in BGR order. Throws hfr::Error
// naming `name`.
std::vector<unsigned char> encode_png(const cv::Mat& image, const std::string& name);

// encode_png, written atomically to path.
void write_png(const std::string& path, const cv::Mat& image);

// A PNG file as 8-bit RGB (R,G,B order) or grey, as read_image gives it.
cv::Mat read_png(const std::string& path, ColorMode mode, const ImageLimits& limits = {});

}  // namespace hfr
