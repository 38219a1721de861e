#include "hfr/face_finder.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <ATen/ATen.h>

#include "hfr/model.hpp"
#include "hfr/parallel.hpp"

namespace hfr::detect {

std::vector<torch::Tensor> run_sliced(const nn::Program& p, const torch::Tensor& in, int sub, const torch::Device& dev) {
  std::vector<std::vector<torch::Tensor>> parts;
  sub = std::max(1, sub);
  for (std::int64_t i = 0; i < in.size(0); i += sub) {
    auto out = p.run(in.slice(0, i, std::min<std::int64_t>(in.size(0), i + sub)).to(dev));
    for (auto& t : out) t = t.to(at::kCPU);
    parts.push_back(std::move(out));
  }
  std::vector<torch::Tensor> joined;
  for (std::size_t k = 0; k < parts.at(0).size(); ++k) {
    std::vector<torch::Tensor> col;
    for (auto& p2 : parts) col.push_back(p2[k]);
    joined.push_back(torch::cat(col).contiguous());
  }
  return joined;
}

FaceFinder::FaceFinder(const Options& options, const torch::Device& device) : opt_(options), dev_(device) {
  nn::Model det = nn::load_model("blazeface");
  detector_ = std::make_unique<nn::Program>(nn::compile(det, {"scores_16", "scores_32", "boxes_16", "boxes_32"}));
  detector_->to(dev_);
  if (opt_.mesh) {
    nn::Model mesh = nn::load_model("facemesh");
    mesher_ = std::make_unique<nn::Program>(nn::compile(mesh, {"mesh", "faceflag"}));
    mesher_->to(dev_);
  }
}

void FaceFinder::prepare(Frame& f) {
  f.lb = face::Letterbox::fit(f.image.cols, f.image.rows, 256);
  f.det_input = face::blazeface_input(f.image, f.lb);
}

void FaceFinder::find(const std::vector<Frame*>& frames) const {
  // Detection, one batch
  std::vector<Frame*> live;
  for (Frame* f : frames)
    if (f->error.empty()) {
      if (f->det_input.empty()) prepare(*f);
      live.push_back(f);
    }
  if (live.empty()) return;
  face::BlazeFaceOptions bopt;
  bopt.score_threshold = static_cast<float>(opt_.min_score);
  torch::Tensor in = torch::empty({static_cast<std::int64_t>(live.size()), 3, 256, 256}, at::kFloat);
  for (std::size_t k = 0; k < live.size(); ++k)
    std::memcpy(in[static_cast<std::int64_t>(k)].data_ptr<float>(), live[k]->det_input.data(), 3 * 256 * 256 * sizeof(float));
  auto out = run_sliced(*detector_, in, opt_.net_batch, dev_);
  for (std::size_t k = 0; k < live.size(); ++k) {
    Frame& p = *live[k];
    auto row_of = [&](const torch::Tensor& t) {
      torch::Tensor r = t[static_cast<std::int64_t>(k)].contiguous();
      return std::vector<float>(r.data_ptr<float>(), r.data_ptr<float>() + r.numel());
    };
    auto dets = face::decode_blazeface(row_of(out[0]), row_of(out[1]), row_of(out[2]), row_of(out[3]), p.lb, bopt);
    p.det_input.clear();
    p.det_input.shrink_to_fit();
    p.found = static_cast<int>(dets.size());
    std::vector<face::Detection> keep;
    for (const auto& d : dets)
      if (d.width() >= std::max(opt_.min_face, 1.0) && d.height() >= 1) keep.push_back(d);
    if (keep.empty()) {
      p.error = dets.empty() ? "no face found (detector score threshold " + std::to_string(opt_.min_score).substr(0, 4) + ")"
                             : "no face of at least " + std::to_string(static_cast<int>(opt_.min_face)) + " px found (" +
                                   std::to_string(dets.size()) + " smaller)";
      continue;
    }
    if (opt_.policy == FacePolicy::single && keep.size() > 1) {
      p.error = std::to_string(keep.size()) + " faces found, --faces single expects one";
      continue;
    }
    if (opt_.policy == FacePolicy::largest) {
      auto best = std::max_element(keep.begin(), keep.end(), [](const auto& a, const auto& b) {
        return a.width() * a.height() < b.width() * b.height();
      });
      keep = {*best};
    }
    for (const auto& d : keep) {
      FoundFace f;
      f.det = d;
      f.pts = face::five_points(d);
      p.faces.push_back(std::move(f));
    }
  }
  if (!mesher_) return;

  // Landmarks from the face mesh, one batch
  std::vector<std::pair<Frame*, std::size_t>> fs;
  for (Frame* f : live)
    if (f->error.empty())
      for (std::size_t j = 0; j < f->faces.size(); ++j) fs.push_back({f, j});
  if (fs.empty()) return;
  std::vector<std::string> errors(fs.size());
  std::vector<face::FaceRoi> rois(fs.size());
  torch::Tensor min = torch::empty({static_cast<std::int64_t>(fs.size()), 3, 192, 192}, at::kFloat);
  parallel_for(fs.size(), opt_.threads, [&](std::size_t k) {
    auto [f, j] = fs[k];
    try {
      rois[k] = face::facemesh_roi(f->faces[j].det, 1.5, 192);
      auto buf = face::facemesh_input(f->image, rois[k]);
      std::memcpy(min[static_cast<std::int64_t>(k)].data_ptr<float>(), buf.data(), buf.size() * sizeof(float));
    } catch (const std::exception& e) {
      errors[k] = "face " + std::to_string(j) + ": landmarks: " + brief(e);
      min[static_cast<std::int64_t>(k)].zero_();
    }
  });
  const auto mesh_out = run_sliced(*mesher_, min, opt_.net_batch, dev_);
  const torch::Tensor& mesh = mesh_out[0];
  const torch::Tensor flag = mesh_out[1].reshape({-1}).contiguous();
  for (std::size_t k = 0; k < fs.size(); ++k) {
    auto [f, j] = fs[k];
    if (errors[k].empty()) {
      torch::Tensor r = mesh[static_cast<std::int64_t>(k)].contiguous();
      std::vector<float> raw(r.data_ptr<float>(), r.data_ptr<float>() + r.numel());
      try {
        f->faces[j].mesh = face::mesh_to_image(raw, rois[k]);
        f->faces[j].mesh_score = std::clamp(static_cast<double>(flag[static_cast<std::int64_t>(k)].item<float>()), 0.0, 1.0);
        f->faces[j].pts = face::five_points_from_mesh(f->faces[j].mesh);
      } catch (const std::exception& e) {
        errors[k] = "face " + std::to_string(j) + ": landmarks: " + brief(e);
      }
    }
    // a frame with a face that failed is an error (its other faces are not used)
    if (!errors[k].empty() && f->error.empty()) f->error = errors[k];
  }
  for (Frame* f : live)
    if (!f->error.empty()) f->faces.clear();
}

}  // namespace hfr::detect
