#include "hfr/embed.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <future>

#include <ATen/ATen.h>
#include <opencv2/imgproc.hpp>

#include "hfr/backbones.hpp"
#include "hfr/crops.hpp"
#include "hfr/error.hpp"
#include "hfr/face.hpp"
#include "hfr/face_finder.hpp"
#include "hfr/image.hpp"
#include "hfr/io.hpp"
#include "hfr/log.hpp"
#include "hfr/inputs.hpp"
#include "hfr/model.hpp"
#include "hfr/parallel.hpp"
#include "hfr/progress.hpp"
#include "hfr/records.hpp"
#include "hfr/tensor_torch.hpp"
#include "hfr/tensorfile.hpp"

namespace hfr::embed {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Fields hfr-embed writes: not passed through from input records (an output
// records file fed back in must not keep stale rows, boxes or errors).
const std::vector<std::string>& output_fields() {
  static const std::vector<std::string> fields = {"embeddings", "row",   "box",        "score", "landmarks",
                                                  "face",       "faces_found", "model", "model_sha256",
                                                  "latency_ms", "crop",  "error",      "source"};
  return fields;
}

}  // namespace

std::vector<Item> enumerate(const Options& o) {
  inputs::Spec spec;
  spec.inputs = o.inputs;
  spec.include = o.include;
  spec.exclude = o.exclude;
  spec.path_field = o.path_field;
  spec.id_field = o.id_field;
  spec.subject_field = o.subject_field;
  spec.drop_fields = output_fields();
  return inputs::enumerate(spec);
}

namespace {

struct Face {
  face::Detection det;
  face::Points5 pts{};
  bool has_det = false;
  cv::Mat crop;  // aligned, model size, RGB
};

struct Prepared {
  Item item;
  detect::Frame frame;           // image, detections, error
  std::vector<Face> faces;
  double decode_ms = 0;          // reading, decoding, network input
};

cv::Mat resize_to(const cv::Mat& img, int size) {
  if (img.cols == size && img.rows == size) return img;
  cv::Mat out;
  bool shrink = img.cols > size || img.rows > size;
  cv::resize(img, out, cv::Size(size, size), 0, 0, shrink ? cv::INTER_AREA : cv::INTER_LINEAR);
  return out;
}

}  // namespace

int run(const Options& o) {
  if (o.output.empty()) throw UsageError("-o/--output FILE (the tensor file of embeddings) is required");
  if (o.output == "-" && o.records == "-") throw UsageError("-o - and --records - cannot both use stdout");
  if (o.inputs.empty()) throw UsageError("no inputs (images, folders, records files or -)");
  set_torch_threads(o.threads);
  torch::Device dev = torch_device(o.device);

  nn::Model model = nn::load_model(o.model);
  if (model.task != "embedding") throw UsageError("model " + model.name + " is a " + model.task + " model, not an embedding model");
  if (model.name == "mobilefacenet") log::warn("mobilefacenet: " + model.note);
  if (model.dim <= 0) throw FormatError(o.model + ": the model does not declare its embedding size");
  // models trained with hfr-train --ri also give a quality score (the angle to the unrecognisable-identity
  // centre) and the recognisability index's regressor (docs/losses.md §6)
  const bool has_quality = model.outputs.count("quality") > 0, has_ri = model.outputs.count("ri") > 0;
  // models with switch style modulation blocks (hfr-train --ssm): each face's expert per block
  const std::vector<std::string> routers = nn::router_roles(model);
  std::vector<std::string> roles{"embedding"};
  if (has_quality) roles.push_back("quality");
  if (has_ri) roles.push_back("ri");
  const std::size_t router_out = roles.size();
  roles.insert(roles.end(), routers.begin(), routers.end());
  nn::Program embedder = nn::compile(model, roles);
  embedder.to(dev);
  const face::Template tmpl = face::scale_template(face::face_template(model.pre.crop.empty() ? "arcface-112" : model.pre.crop), model.pre.size);

  std::unique_ptr<detect::FaceFinder> finder;
  if (!o.aligned) {
    detect::Options dopt;
    dopt.policy = o.policy;
    dopt.min_face = o.min_face;
    dopt.min_score = o.min_score;
    dopt.mesh = o.landmarks == LandmarkSource::mesh;
    dopt.net_batch = o.net_batch;
    dopt.threads = o.threads;
    finder = std::make_unique<detect::FaceFinder>(dopt, dev);
  }

  std::vector<Item> items = enumerate(o);
  if (items.empty())
    log::warn("no images in the inputs (folders are searched for .jpg .jpeg .png .pgm .ppm .pbm .pnm .bmp .gif .tif .tiff "
              ".webp files; other names can be given as records with a path)");
  if (!o.save_crops.empty()) {
    std::error_code ec;
    fs::create_directories(o.save_crops, ec);
    if (ec) throw Error(o.save_crops + ": " + ec.message());
  }
  auto tensor_out = io::open_output(o.output, {io::Content::binary, o.force});
  std::unique_ptr<io::Output> records_out = io::open_output(o.records);
  RecordWriter rw(*records_out);
  TensorWriter tw(*tensor_out);
  tw.begin("embeddings", DType::f32, {model.dim});
  const std::string ref = inputs::relative_ref(o.output, o.records, false);

  ImageLimits limits;
  limits.max_pixels = o.max_pixels;

  // Stage 1 (threads): decode, and the detector's input or the aligned crop.
  auto prepare = [&](std::size_t begin, std::size_t end) {
    std::vector<Prepared> chunk(end - begin);
    parallel_for(chunk.size(), o.threads, [&](std::size_t i) {
      Prepared& p = chunk[i];
      p.item = items[begin + i];
      if (!p.item.error.empty()) {
        p.frame.error = p.item.error;
        return;
      }
      auto t0 = std::chrono::steady_clock::now();
      try {
        p.frame.image = read_image(p.item.path, ColorMode::rgb, limits);
        if (o.aligned) {
          Face f;
          f.crop = resize_to(p.frame.image, model.pre.size);
          p.faces.push_back(std::move(f));
          p.frame.found = 1;
        } else {
          detect::FaceFinder::prepare(p.frame);
        }
      } catch (const std::exception& e) {
        p.frame.error = brief(e);
      }
      p.decode_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    });
    return chunk;
  };

  std::vector<std::string> ids, subjects, paths;
  std::uint64_t failed = 0, faces_out = 0;
  std::int64_t row = 0;
  Progress progress("embed", items.size(), "images");
  const std::size_t B = static_cast<std::size_t>(std::max(1, o.batch));
  std::future<std::vector<Prepared>> next;
  if (!items.empty()) next = std::async(std::launch::async, prepare, 0, std::min(B, items.size()));
  for (std::size_t begin = 0; begin < items.size(); begin += B) {
    std::vector<Prepared> chunk = next.get();
    auto chunk_t0 = std::chrono::steady_clock::now();
    std::size_t nb = begin + B;
    if (nb < items.size()) next = std::async(std::launch::async, prepare, nb, std::min(nb + B, items.size()));

    if (!o.aligned) {
      // Stages 2-3: detection and landmarks, one network batch each
      std::vector<detect::Frame*> frames;
      for (auto& p : chunk) frames.push_back(&p.frame);
      finder->find(frames);
      std::vector<std::pair<std::size_t, std::size_t>> fs_;
      for (std::size_t i = 0; i < chunk.size(); ++i) {
        for (const auto& ff : chunk[i].frame.faces) {
          Face f;
          f.det = ff.det;
          f.has_det = true;
          f.pts = ff.pts;
          chunk[i].faces.push_back(std::move(f));
        }
        for (std::size_t j = 0; j < chunk[i].faces.size(); ++j) fs_.push_back({i, j});
      }
      std::vector<std::string> face_errors(fs_.size());
      // Stage 4: alignment
      parallel_for(fs_.size(), o.threads, [&](std::size_t k) {
        if (!face_errors[k].empty()) return;
        auto [i, j] = fs_[k];
        Face& f = chunk[i].faces[j];
        try {
          f.crop = face::align_face(chunk[i].frame.image, f.pts, tmpl, model.pre.size).image;
        } catch (const std::exception& e) {
          face_errors[k] = "face " + std::to_string(j) + ": alignment: " + brief(e);
        }
      });
      // an image with a face that failed is an error record (its other faces are not embedded)
      for (std::size_t k = 0; k < fs_.size(); ++k)
        if (!face_errors[k].empty() && chunk[fs_[k].first].frame.error.empty()) chunk[fs_[k].first].frame.error = face_errors[k];
      for (auto& p : chunk)
        if (!p.frame.error.empty()) p.faces.clear();
    }

    for (auto& p : chunk) p.frame.image.release();  // only the crops are needed from here on

    // Stage 5: embeddings, one batch (plus mirrored crops with --flip)
    std::vector<const cv::Mat*> crops;
    std::vector<cv::Mat> flipped;
    for (auto& p : chunk)
      for (auto& f : p.faces) crops.push_back(&f.crop);
    const std::size_t nf = crops.size();
    if (o.flip) {
      flipped.resize(nf);
      for (std::size_t k = 0; k < nf; ++k) cv::flip(*crops[k], flipped[k], 1);
      for (auto& m : flipped) crops.push_back(&m);
    }
    torch::Tensor emb, quality, ri, experts;
    if (nf) {
      const auto outs = detect::run_sliced(embedder, nn::crops_to_input(crops, model.pre), o.net_batch, dev);
      emb = outs[0].to(at::kFloat);
      if (!routers.empty()) {  // [faces, blocks]: the expert of the (unflipped) crop
        std::vector<torch::Tensor> ks;
        for (std::size_t b = 0; b < routers.size(); ++b)
          ks.push_back(outs.at(router_out + b).to(torch::kCPU).argmax(1).slice(0, 0, static_cast<std::int64_t>(nf)));
        experts = torch::stack(ks, 1).contiguous();
      }
      // a score per face (with --flip the mean of both crops')
      auto per_face = [&](std::size_t out, const char* what) {
        torch::Tensor v = outs.at(out).to(torch::kCPU, at::kFloat).reshape({-1});
        if (v.size(0) != emb.size(0)) throw Error("model " + model.name + ": the " + what + " output has another number of rows");
        if (o.flip) v = (v.slice(0, 0, static_cast<std::int64_t>(nf)) + v.slice(0, static_cast<std::int64_t>(nf))) / 2;
        return v.contiguous();
      };
      if (has_quality) quality = per_face(1, "quality");
      if (has_ri) ri = per_face(has_quality ? 2 : 1, "ri");
      if (emb.dim() != 2 || emb.size(1) != model.dim)
        throw Error("model " + model.name + " returned shape " + shape_string(Shape(emb.sizes().begin(), emb.sizes().end())) +
                    ", expected [N, " + std::to_string(model.dim) + "]");
      if (o.flip) emb = emb.slice(0, 0, static_cast<std::int64_t>(nf)) + emb.slice(0, static_cast<std::int64_t>(nf));
      emb = emb / emb.norm(2, 1, true).clamp_min(1e-12);
      emb = emb.contiguous();
    }

    // Stage 6: outputs, in input order
    double net_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - chunk_t0).count() /
                    static_cast<double>(chunk.size());
    std::int64_t k = 0;
    for (auto& p : chunk) {
      const Record base = inputs::base_record(p.item, o.records);
      if (!p.frame.error.empty() || p.faces.empty()) {
        Record r = base;
        r["error"] = p.frame.error.empty() ? "no face" : p.frame.error;
        if (p.frame.found > 0) r["faces_found"] = p.frame.found;  // e.g. too small, or several with --faces single
        rw.write(r);
        ++failed;
        log::warn(inputs::describe(p.item, r["error"].get<std::string>()));
        progress.add();
        continue;
      }
      for (std::size_t j = 0; j < p.faces.size(); ++j, ++k) {
        const Face& f = p.faces[j];
        tw.append("embeddings", emb[k].data_ptr<float>(), 1);
        Record r = base;
        std::string id = p.faces.size() > 1 ? p.item.id + "#" + std::to_string(j) : p.item.id;
        r["id"] = id;
        r["face"] = j;
        r["faces_found"] = p.frame.found;
        if (f.has_det) {
          r["box"] = {round_decimals(f.det.x0, 2), round_decimals(f.det.y0, 2), round_decimals(f.det.x1, 2), round_decimals(f.det.y1, 2)};
          r["score"] = round_decimals(f.det.score, 4);
          json lm = json::array();
          for (const auto& q : f.pts) lm.push_back({round_decimals(q.x, 2), round_decimals(q.y, 2)});
          r["landmarks"] = lm;
        }
        if (!o.save_crops.empty()) {
          std::string crop_path = o.save_crops + "/" + std::to_string(row) + ".png";
          write_image(crop_path, f.crop);
          r["crop"] = crop_path;
        }
        if (quality.defined()) r["quality"] = round_decimals(quality[k].item<double>(), 4);
        if (ri.defined()) r["ri"] = round_decimals(ri[k].item<double>(), 4);
        if (experts.defined()) {
          std::vector<std::int64_t> e(static_cast<std::size_t>(experts.size(1)));
          for (std::size_t b = 0; b < e.size(); ++b) e[b] = experts[k][static_cast<std::int64_t>(b)].item<std::int64_t>();
          r["experts"] = e;
        }
        r["embeddings"] = ref;
        r["row"] = row++;
        r["model"] = model.name;
        r["model_sha256"] = model.checksum;
        if (o.timing) r["latency_ms"] = round_decimals(p.decode_ms + net_ms, 2);
        rw.write(r);
        ids.push_back(id);
        subjects.push_back(p.item.subject);
        paths.push_back(p.item.path);
        ++faces_out;
      }
      progress.add();
    }
    rw.flush();
  }
  progress.finish();

  json subj = json::array();
  for (const auto& s : subjects) subj.push_back(s.empty() ? json() : json(s));
  json meta = {{"ids", ids},
               {"subjects", subj},
               {"paths", paths},
               {"model", model.name},
               {"model_sha256", model.checksum},
               {"dim", model.dim},
               {"normalized", true},
               {"flip_fusion", o.flip},
               {"crop", model.pre.crop},
               {"aligned_input", o.aligned}};
  if (!o.provenance.empty()) meta["provenance"] = json::parse(o.provenance);
  tw.set_metadata(meta);
  tw.close();
  tensor_out->commit();
  records_out->commit();
  log::notice(std::to_string(items.size()) + " images, " + std::to_string(faces_out) + " faces embedded, " + std::to_string(failed) +
              " failed");
  return failed ? kExitPartial : kExitOk;
}

}  // namespace hfr::embed
