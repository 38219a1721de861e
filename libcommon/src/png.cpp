#include "hfr/png.hpp"

#include <png.h>
#include <zlib.h>

#include <csetjmp>
#include <cstring>

#include "hfr/error.hpp"
#include "hfr/io.hpp"

namespace hfr {

namespace {

void on_png_error(png_structp png, png_const_charp message) {
  auto* what = static_cast<std::string*>(png_get_error_ptr(png));
  if (what) *what = message ? message : "libpng error";
  png_longjmp(png, 1);
}
void on_png_warning(png_structp, png_const_charp) {}

void append(png_structp png, png_bytep data, png_size_t n) {
  auto* out = static_cast<std::vector<unsigned char>*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + n);
}
void no_flush(png_structp) {}

struct Source {
  const std::vector<unsigned char>* bytes;
  std::size_t pos = 0;
};
void take(png_structp png, png_bytep data, png_size_t n) {
  auto* s = static_cast<Source*>(png_get_io_ptr(png));
  if (n > s->bytes->size() - s->pos) png_error(png, "truncated file");
  std::memcpy(data, s->bytes->data() + s->pos, n);
  s->pos += n;
}

}  // namespace

std::vector<unsigned char> encode_png(const cv::Mat& image, const std::string& name) {
  if (image.depth() != CV_8U || (image.channels() != 1 && image.channels() != 3) || image.empty())
    throw Error(name + ": can only write 8-bit grey or RGB images");
  std::vector<unsigned char> out;
  std::vector<png_bytep> rows(static_cast<std::size_t>(image.rows));
  for (int y = 0; y < image.rows; ++y) rows[static_cast<std::size_t>(y)] = const_cast<png_bytep>(image.ptr<unsigned char>(y));
  std::string error;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &error, on_png_error, on_png_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info) {
    png_destroy_write_struct(&png, &info);
    throw Error(name + ": cannot encode image: out of memory");
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    throw Error(name + ": cannot encode image: " + error);
  }
  png_set_write_fn(png, &out, append, no_flush);
  // OpenCV's defaults (grfmt_png.cpp, no IMWRITE_PNG_* parameters), "tuned for speed"
  png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_SUB);
  png_set_compression_level(png, Z_BEST_SPEED);
  png_set_compression_strategy(png, Z_RLE);
  png_set_IHDR(png, info, static_cast<png_uint_32>(image.cols), static_cast<png_uint_32>(image.rows), 8,
               image.channels() == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows.data());
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  return out;
}

void write_png(const std::string& path, const cv::Mat& image) {
  const std::vector<unsigned char> buf = encode_png(image, path);
  auto out = io::open_output(path, {io::Content::binary, false});
  out->write(buf.data(), buf.size());
  out->commit();
}

cv::Mat read_png(const std::string& path, ColorMode mode, const ImageLimits& limits) {
  const std::vector<unsigned char> bytes = io::read_file(path, limits.max_file_bytes);
  if (bytes.size() < 8 || png_sig_cmp(bytes.data(), 0, 8) != 0) throw Error(path + ": not a PNG file");
  Source src{&bytes, 0};
  std::string error;
  cv::Mat img;
  std::vector<png_bytep> rows;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &error, on_png_error, on_png_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw Error(path + ": cannot decode png image: out of memory");
  }
  bool too_large = false;
  png_uint_32 w = 0, h = 0;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw Error(path + ": cannot decode png image: " + error);
  }
  png_set_read_fn(png, &src, take);
  png_read_info(png, info);
  w = png_get_image_width(png, info);
  h = png_get_image_height(png, info);
  too_large = w == 0 || h == 0 || static_cast<std::uint64_t>(w) * h > limits.max_pixels;
  if (!too_large) {
    // OpenCV's decoder's transformations (grfmt_png.cpp) for 8-bit colour or
    // grey output, but R,G,B order
    const int type = png_get_color_type(png, info);
    const bool colour = mode == ColorMode::rgb;
    if (png_get_bit_depth(png, info) == 16) png_set_strip_16(png);
    png_set_strip_alpha(png);
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if ((type & PNG_COLOR_MASK_COLOR) == 0 && png_get_bit_depth(png, info) < 8) png_set_expand_gray_1_2_4_to_8(png);
    if ((type & PNG_COLOR_MASK_COLOR) && !colour) png_set_rgb_to_gray(png, 1, 0.299, 0.587);
    if (!(type & PNG_COLOR_MASK_COLOR) && colour) png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    const int channels = png_get_channels(png, info);
    if (png_get_bit_depth(png, info) != 8 || channels != (colour ? 3 : 1)) png_error(png, "unsupported PNG layout");
    img.create(static_cast<int>(h), static_cast<int>(w), colour ? CV_8UC3 : CV_8UC1);
    rows.resize(h);
    for (png_uint_32 y = 0; y < h; ++y) rows[y] = img.ptr<unsigned char>(static_cast<int>(y));
    png_read_image(png, rows.data());
    png_read_end(png, nullptr);
  }
  png_destroy_read_struct(&png, &info, nullptr);
  if (too_large)
    throw Error(path + ": image too large or empty: " + std::to_string(w) + "x" + std::to_string(h) + " pixels");
  return img;
}

}  // namespace hfr
