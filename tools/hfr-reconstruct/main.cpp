// hfr-reconstruct: reconstruct 3D face shape and reflectance maps from VIS face photos.
#include <cstdio>

#include "hfr/cli.hpp"
#include "hfr/error.hpp"
#include "hfr/reconstruct.hpp"
#include "hfr/tensor_torch.hpp"

namespace {
using hfr::cli::Complete;

hfr::cli::ToolSpec spec() {
  hfr::cli::ToolSpec s;
  s.name = "hfr-reconstruct";
  s.summary = "reconstruct 3D face shape and reflectance maps from VIS face photos";
  s.synopsis = {"[OPTION]... -O DIR PHOTO|DIR|RECORDS|-..."};
  s.description = {
      "For every face in every photo: BlazeFace finds it, the pretrained 468-point face mesh locates dense landmarks, and a 3D "
      "face model is fitted to them under a perspective camera (pose by PnP, identity and expression coefficients by "
      "regularised least squares with priors). The photo is then unwrapped into the model's texture space where the camera "
      "sees the surface, the lighting is estimated as second-order spherical harmonics and divided out, and unseen texels are "
      "filled from the mirrored side and then with the mean skin albedo. The outputs feed hfr-synth.",
      "Models (--model): ict, the ICT FaceKit (full head with neck, eyes and mouth; 100 identity modes, 53 expression "
      "blendshapes), which hfr cannot download: get it from github.com/ICT-VGL/ICT-FaceKit (MIT) and give its FaceXModel "
      "folder with --ict or $HFR_ICT_FACEKIT; facemesh, MediaPipe's canonical face mesh alone (468 vertices, the face only, "
      "shape from the network's own 3D points, its UV layout); auto (the default) uses the ICT FaceKit when it is found and "
      "otherwise falls back to facemesh with a warning.",
      "Camera: a pinhole with the principal point at the image centre and the focal length from --fov (field of view across "
      "the longer image side) or --focal. Albedo is linear (not sRGB); its absolute scale is not observable from one photo "
      "(light and albedo trade off): the light is scaled so that the median skin texel keeps the median image-over-shading "
      "ratio. Specular albedo and roughness come from a per-region prior (forehead and nose more specular and smoother; "
      "docs/reconstruct.md).",
      "Inputs: photo files, folders (recursive, sorted, --include/--exclude, the first sub-folder names the subject), or "
      "JSON-lines records with a \"path\" field (- reads them from stdin); \"id\" and \"subject\" are used and other fields passed "
      "through.",
      "Output: one tensor file per face in -O DIR (named after the id; see hfr-formats(5), \"FACE RECONSTRUCTIONS\": vertices, "
      "triangles, UVs, albedo, specular and roughness maps, texel sources, pose, camera, landmarks, fitted landmarks, residuals, "
      "coefficients, lighting) and one JSON-lines record per face (--records, stdout by default): id, path, subject, face index, "
      "box, detection score, face-mesh score, yaw, pitch, roll, landmark RMS (pixels, and relative to the eye distance), texture coverage, grey "
      "flag and the tensor file. A photo that cannot be read or has no face of --min-face pixels, a face the face mesh "
      "does not see well (--min-mesh-score: profiles, occlusion), a face turned beyond --max-yaw/--max-pitch, or a fit whose landmark RMS exceeds --max-residual gets a record with an \"error\" field instead; "
      "the rest is processed and the exit status is 3.",
      "Grey photos (all channels equal, e.g. NIR) give grey albedo maps and are flagged with \"grey\": true.",
  };
  s.reads = "photos (JPEG, PNG, PNM, BMP, TIFF, WebP, GIF), folders of them, or JSON-lines records with a path field (- is stdin).";
  s.writes = "one tensor file per face in the -O folder, optional preview PNGs, and one JSON-lines record per face or failed photo "
             "(--records, default stdout); every file is written atomically.";
  s.positionals = {{"INPUT", "Photo, folder, records file, or - for records on stdin.", Complete::file, {}, false, true}};
  s.options = {
      {"output-dir", 'O', "DIR", "Folder for the per-face tensor files (created if missing; required).", "", {}, Complete::dir},
      {"records", 'r', "FILE", "Write the per-face records here.", "-", {}, Complete::file},
      {"model", 'm', "MODEL", "3D face model: the ICT FaceKit, the face mesh alone, or auto (ICT when found).", "auto",
       {"auto", "ict", "facemesh"}, Complete::choices},
      {"ict", 0, "DIR", "The ICT FaceKit folder (a checkout's FaceXModel, or hfr's repacked layout); default $HFR_ICT_FACEKIT.", "", {},
       Complete::dir},
      {"texture-size", 0, "N", "Width and height of the albedo, specular and roughness maps.", "512", {}, Complete::none},
      {"preview", 0, "DIR", "Also write DIR/NAME.png: the fitted mesh shaded over the photo, next to the albedo map.", "", {},
       Complete::dir},
      {"faces", 0, "POLICY", "Faces used per photo: the largest, all, or single (a photo with several faces is an error).", "largest",
       {"largest", "all", "single"}, Complete::choices},
      {"min-face", 0, "PX", "Ignore detected faces narrower than PX pixels.", "64", {}, Complete::none},
      {"min-score", 0, "P", "Detector score threshold (0..1).", "0.5", {}, Complete::none},
      {"fov", 0, "DEG", "Camera field of view across the longer image side, in degrees.", "40", {}, Complete::none},
      {"focal", 0, "PX", "Camera focal length in pixels (overrides --fov).", "", {}, Complete::none},
      {"identity-modes", 0, "N", "Identity modes fitted (ICT: up to 100).", "80", {}, Complete::none},
      {"no-expressions", 0, "", "Fit the identity only (expression weights stay 0).", "", {}, Complete::none},
      {"depth-weight", 0, "W", "Weight of the face mesh's predicted relative depths in the fit (0 = 2D landmarks only).", "0.25", {},
       Complete::none},
      {"max-yaw", 0, "DEG", "Refuse faces whose fitted yaw exceeds this (the face mesh saturates near 50: a 75-degree profile fits "
       "as about 45).", "50", {}, Complete::none},
      {"max-pitch", 0, "DEG", "Refuse faces tilted up or down further than this.", "40", {}, Complete::none},
      {"min-mesh-score", 0, "S", "Refuse faces whose face-mesh face flag is below S (0..1; profiles and occluded faces score low).",
       "0.5", {}, Complete::none},
      {"max-residual", 0, "R", "Refuse fits whose landmark RMS exceeds R times the eye distance.", "0.06", {}, Complete::none},
      {"batch", 'b', "N", "Photos per chunk: decoded while the previous chunk runs through the networks.", "16", {}, Complete::none},
      {"net-batch", 0, "N", "Photos per network call.", "8", {}, Complete::none},
      {"include", 0, "GLOB", "Only files in folders whose relative path or name matches (repeatable).", "", {}, Complete::none, true},
      {"exclude", 0, "GLOB", "Skip files in folders whose relative path or name matches (repeatable).", "", {}, Complete::none, true},
      {"path-field", 0, "NAME", "Record field holding the photo path.", "path", {}, Complete::none},
      {"id-field", 0, "NAME", "Record field holding the item id.", "id", {}, Complete::none},
      {"subject-field", 0, "NAME", "Record field holding the subject.", "subject", {}, Complete::none},
      {"max-pixels", 0, "N", "Refuse photos with more pixels than this.", "100000000", {}, Complete::none},
      {"timing", 0, "", "Add latency_ms (decoding plus the photo's share of its chunk's time), fit_ms and unwrap_ms to each record.", "", {}, Complete::none},
  };
  s.examples = {
      {"hfr-reconstruct --ict ~/ICT-FaceKit/FaceXModel -O faces/ photos/ > faces.jsonl",
       "Full-head reconstructions of every face under photos/."},
      {"hfr-reconstruct -m facemesh -O faces/ --preview previews/ photo.jpg", "Face-mesh-only reconstruction with a preview."},
      {"hfr-reconstruct -O faces/ photos/ | hfr-synth --poses 9", "Stream the records into the synthesis."},
  };
  s.see_also = {"hfr-synth(1)", "hfr-render(1)", "hfr-embed(1)", "hfr-formats(5)"};
  return s;
}

hfr::detect::FacePolicy policy(const std::string& s) {
  if (s == "all") return hfr::detect::FacePolicy::all;
  if (s == "single") return hfr::detect::FacePolicy::single;
  return hfr::detect::FacePolicy::largest;
}

}  // namespace

int main(int argc, char** argv) {
  hfr::tune_allocator();
  return hfr::cli::run(spec(), argc, argv, [](const hfr::cli::Args& a) {
    hfr::reconstruct::Options o;
    o.in.inputs = a.positionals();
    o.in.include = a.all("include");
    o.in.exclude = a.all("exclude");
    o.in.path_field = a.str("path-field");
    o.in.id_field = a.str("id-field");
    o.in.subject_field = a.str("subject-field");
    o.output_dir = a.str("output-dir");
    o.records = a.str("records");
    const std::string m = a.str("model");
    o.model = m == "ict" ? hfr::reconstruct::ModelChoice::ict
              : m == "facemesh" ? hfr::reconstruct::ModelChoice::facemesh
                                : hfr::reconstruct::ModelChoice::automatic;
    o.ict_dir = a.str("ict");
    o.texture_size = static_cast<int>(a.integer("texture-size", 16, 4096));
    o.preview_dir = a.str("preview");
    o.policy = policy(a.str("faces"));
    o.min_face = a.number("min-face");
    o.min_score = a.number("min-score");
    if (!(o.min_score >= 0 && o.min_score <= 1)) throw hfr::UsageError("--min-score must be in 0..1");
    if (!(o.min_face >= 0)) throw hfr::UsageError("--min-face must be >= 0");
    o.fit.fov_deg = a.number("fov");
    if (!(o.fit.fov_deg > 1 && o.fit.fov_deg < 179)) throw hfr::UsageError("--fov must be between 1 and 179 degrees");
    if (a.given("focal")) {
      o.fit.focal_px = a.number("focal");
      if (!(o.fit.focal_px > 0)) throw hfr::UsageError("--focal must be > 0");
    }
    o.fit.identity_modes = static_cast<int>(a.integer("identity-modes", 0, 1000));
    o.fit.expressions = !a.flag("no-expressions");
    o.fit.depth_weight = a.number("depth-weight");
    if (!(o.fit.depth_weight >= 0)) throw hfr::UsageError("--depth-weight must be >= 0");
    o.max_yaw = a.number("max-yaw");
    o.max_pitch = a.number("max-pitch");
    o.max_residual = a.number("max-residual");
    o.min_mesh_score = a.number("min-mesh-score");
    if (!(o.min_mesh_score >= 0 && o.min_mesh_score <= 1)) throw hfr::UsageError("--min-mesh-score must be in 0..1");
    if (!(o.max_yaw > 0) || !(o.max_pitch > 0) || !(o.max_residual > 0))
      throw hfr::UsageError("--max-yaw, --max-pitch and --max-residual must be > 0");
    o.batch = static_cast<int>(a.integer("batch", 1, 4096));
    o.net_batch = static_cast<int>(a.integer("net-batch", 1, 4096));
    o.max_pixels = static_cast<std::uint64_t>(a.integer("max-pixels", 1, INT64_C(1) << 40));
    o.threads = a.common().threads;
    o.device = a.common().device;
    o.timing = a.flag("timing");
    return hfr::reconstruct::run(o);
  });
}
