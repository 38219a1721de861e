// hfr-embed: detect, align and embed faces in batches of images.
#include <cstdio>

#include "hfr/cli.hpp"
#include "hfr/embed.hpp"
#include "hfr/error.hpp"
#include "hfr/graph.hpp"
#include "hfr/model.hpp"
#include "hfr/tensor_torch.hpp"
#include "hfr/version.hpp"

namespace {
using hfr::cli::Complete;

hfr::cli::ToolSpec spec() {
  hfr::cli::ToolSpec s;
  s.name = "hfr-embed";
  s.summary = "detect, align and embed faces in batches of images";
  s.synopsis = {"[OPTION]... -o EMBEDDINGS.hft IMAGE|DIR|RECORDS|-...", "--save-model FILE [--model NAME]", "--list-models"};
  s.description = {
      "Finds the faces in every image with BlazeFace, locates five landmarks (eye centres, nose tip, mouth corners) with the "
      "468-point face mesh (or, with --landmarks detector, from the detector's keypoints), aligns each face by a similarity "
      "transform to the crop its embedding model expects, and computes L2-normalised embeddings in batches. All networks are "
      "the pretrained TF.js models imported onto LibTorch; their outputs match the original runtime (tested).",
      "Models (--model): faceres (default; 1024-d HSE FaceRec descriptor, 224x224 loose crop, template faceres-224), dlib "
      "(128-d dlib ResNet-29 from face-api, 150x150 dlib chip, template dlib-150), faceres-deep (same network, other weights), "
      "mobilefacenet (192-d, 112x112 ArcFace template; not discriminative as shipped, for study only), or the path of an hfr "
      "model file. Built-in models are imported from the fetched npm files (scripts/fetch-models.sh; $HFR_MODEL_DIR), whose "
      "SHA-256 must equal the pinned ones; --save-model writes one as a self-contained hfr model file.",
      "Inputs: image files, folders (searched recursively, sorted; --include/--exclude glob patterns on the path relative to the "
      "folder; the first sub-folder names the subject, as in one-folder-per-person layouts), or JSON-lines records with a "
      "\"path\" field (relative paths are relative to the records file; - reads records from stdin; \"id\" and \"subject\" are "
      "used and other fields passed through). Grey and NIR images are replicated into the three colour channels.",
      "Output: the embeddings as a tensor file (-o, an embedding set for hfr-match: tensor \"embeddings\" [N, D] with ids, "
      "subjects and paths in its metadata) and one JSON-lines record per face (--records, stdout by default): id, path, subject, "
      "face index, box, detection score, landmarks, the tensor file and row, model name and checksum. An image that cannot be "
      "read, has no face of at least --min-face pixels or breaks --faces single gets a record with an \"error\" field instead; "
      "the others are processed and the exit status is 3.",
      "Images are processed in chunks of --batch: decoding runs on --threads threads while the previous chunk goes through the "
      "networks, so memory stays bounded whatever the number of images.",
  };
  s.reads = "images (JPEG, PNG, PNM, BMP, TIFF, WebP, GIF), folders of them, or JSON-lines records with a path field (- is stdin).";
  s.writes = "an embedding set as a tensor file (-o), and one JSON-lines record per face or failed image (--records, default stdout); "
             "with a model trained with hfr-train --ri, each face's record has a \"quality\" in [0, 1] ((1 - cos) / 2 of the "
             "angle between its embedding and the unrecognisable-identity centre; higher = more recognisable) and an \"ri\" "
             "in [0, 1] (the recognisability-index head's prediction), with --flip the mean of both crops'; with a model trained with hfr-train --ssm, \"experts\" lists the "
             "expert each switch style modulation block's router chose for the face. Both are written atomically.";
  s.positionals = {{"INPUT", "Image, folder, records file, or - for records on stdin.", Complete::file, {}, false, true}};
  s.options = {
      {"output", 'o', "FILE", "Tensor file for the embeddings (required unless --save-model or --list-models).", "", {}, Complete::file},
      {"records", 'r', "FILE", "Write the per-face records here.", "-", {}, Complete::file},
      {"model", 'm', "NAME", "Embedding model: a built-in name or an hfr model file.", "faceres", {}, Complete::file},
      {"aligned", 0, "", "Inputs are already aligned face crops: skip detection and alignment, resize to the model's input.", "", {}, Complete::none},
      {"faces", 0, "POLICY", "Faces used per image: the largest, all, or single (an image with several faces is an error).", "largest",
       {"largest", "all", "single"}, Complete::choices},
      {"landmarks", 0, "SOURCE", "Five landmarks from the face mesh (accurate mouth corners) or from the detector's keypoints (faster).",
       "mesh", {"mesh", "detector"}, Complete::choices},
      {"min-face", 0, "PX", "Ignore detected faces narrower than PX pixels.", "20", {}, Complete::none},
      {"min-score", 0, "P", "Detector score threshold (0..1).", "0.5", {}, Complete::none},
      {"batch", 'b', "N", "Images per chunk: decoded together while the previous chunk runs through the networks.", "32", {}, Complete::none},
      {"net-batch", 0, "N", "Images per network call (small batches stay in the CPU cache: 8 was fastest here; use more on a GPU).", "8", {},
       Complete::none},
      {"flip", 0, "", "Flip test-time fusion: add the embedding of the mirrored crop, then L2-normalise.", "", {}, Complete::none},
      {"include", 0, "GLOB", "Only files in folders whose relative path or name matches (repeatable).", "", {}, Complete::none, true},
      {"exclude", 0, "GLOB", "Skip files in folders whose relative path or name matches (repeatable).", "", {}, Complete::none, true},
      {"path-field", 0, "NAME", "Record field holding the image path.", "path", {}, Complete::none},
      {"id-field", 0, "NAME", "Record field holding the item id.", "id", {}, Complete::none},
      {"subject-field", 0, "NAME", "Record field holding the subject.", "subject", {}, Complete::none},
      {"max-pixels", 0, "N", "Refuse images with more pixels than this.", "100000000", {}, Complete::none},
      {"timing", 0, "", "Add latency_ms to each record: its decoding time plus its share of the chunk's network time (with --batch 1, "
       "the image's own end-to-end latency).", "", {}, Complete::none},
      {"save-crops", 0, "DIR", "Also write each aligned crop as DIR/ROW.png (to inspect the alignment).", "", {}, Complete::dir},
      {"save-model", 0, "FILE", "Write the model (--model) as a self-contained hfr model file and exit.", "", {}, Complete::file},
      {"list-models", 0, "", "List the built-in models and exit.", "", {}, Complete::none},
      {"force", 'f', "", "Write binary data even to a terminal.", "", {}, Complete::none},
  };
  s.examples = {
      {"hfr-embed -o gallery.hft photos/ > gallery.jsonl", "Embed every face photo under photos/ (subject = first sub-folder)."},
      {"hfr-embed -m dlib --flip -o nir.hft -r nir.jsonl nir/", "dlib ResNet descriptors with flip fusion."},
      {"hfr-embed --aligned -o crops.hft crops/", "Aligned crops straight into the model."},
      {"hfr-embed -o g.hft -r g.jsonl vis/ && hfr-embed -o p.hft -r p.jsonl nir/ && hfr-match g.jsonl p.jsonl",
       "Embed a VIS gallery and NIR probes, then search."},
      {"hfr-embed --save-model faceres.hft -m faceres", "Keep the imported model as one file (no npm files needed later)."},
  };
  s.see_also = {"hfr-match(1)", "hfr-eval(1)", "hfr-formats(5)"};
  return s;
}

hfr::embed::FacePolicy policy(const std::string& s) {
  if (s == "all") return hfr::embed::FacePolicy::all;
  if (s == "single") return hfr::embed::FacePolicy::single;
  return hfr::embed::FacePolicy::largest;
}

}  // namespace

int main(int argc, char** argv) {
  hfr::tune_allocator();
  return hfr::cli::run(spec(), argc, argv, [](const hfr::cli::Args& a) {
    if (a.flag("list-models")) {
      for (const auto& n : hfr::nn::builtin_models()) std::printf("%s\n", n.c_str());
      return 0;
    }
    if (a.given("save-model")) {
      if (!a.positionals().empty()) throw hfr::UsageError("--save-model takes no inputs");
      hfr::nn::save_model(hfr::nn::load_model(a.str("model")), a.str("save-model"));
      return 0;
    }
    hfr::embed::Options o;
    o.inputs = a.positionals();
    o.output = a.str("output");
    o.records = a.str("records");
    o.model = a.str("model");
    o.aligned = a.flag("aligned");
    o.policy = policy(a.str("faces"));
    o.landmarks = a.str("landmarks") == "detector" ? hfr::embed::LandmarkSource::detector : hfr::embed::LandmarkSource::mesh;
    o.min_face = a.number("min-face");
    o.min_score = a.number("min-score");
    if (!(o.min_score >= 0 && o.min_score <= 1)) throw hfr::UsageError("--min-score must be in 0..1");
    if (!(o.min_face >= 0)) throw hfr::UsageError("--min-face must be >= 0");
    o.batch = static_cast<int>(a.integer("batch", 1, 4096));
    o.net_batch = static_cast<int>(a.integer("net-batch", 1, 4096));
    o.flip = a.flag("flip");
    o.include = a.all("include");
    o.exclude = a.all("exclude");
    o.path_field = a.str("path-field");
    o.id_field = a.str("id-field");
    o.subject_field = a.str("subject-field");
    o.max_pixels = static_cast<std::uint64_t>(a.integer("max-pixels", 1, INT64_C(1) << 40));
    o.threads = a.common().threads;
    o.device = a.common().device;
    o.force = a.flag("force");
    o.save_crops = a.str("save-crops");
    o.timing = a.flag("timing");
    nlohmann::json prov = {{"tool", "hfr-embed"}, {"version", hfr::kVersion}, {"arguments", a.argv()}};
    o.provenance = prov.dump();
    return hfr::embed::run(o);
  });
}
