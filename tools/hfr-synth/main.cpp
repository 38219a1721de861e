// hfr-synth: turn reconstructed faces into NIR reflectance and paired VIS/NIR render jobs.
#include <cstdio>

#include "hfr/cli.hpp"
#include "hfr/error.hpp"
#include "hfr/synth.hpp"

namespace {
using hfr::cli::Complete;

hfr::cli::ToolSpec spec() {
  hfr::cli::ToolSpec s;
  s.name = "hfr-synth";
  s.summary = "turn reconstructed faces into NIR reflectance and paired VIS/NIR render jobs";
  s.synopsis = {"[OPTION]... -O DIR FACES.jsonl|-..."};
  s.description = {
      "Reads the records of hfr-reconstruct and makes one identity per reconstructed face, plus --new-identities sampled "
      "ones: shape coefficients from the 3D model's identity prior, albedo from a Gaussian fitted to the reconstructed albedo "
      "maps (principal components). Each identity is written once to -O DIR as a tensor file with its geometry, VIS albedo, "
      "NIR albedo per band (--bands; the exposure normalised, then the skin transform fitted to the NIST skin spectra, with "
      "region rules for lips and brows: docs/spectral.md), specular and roughness maps.",
      "Then, per identity, --poses variations are drawn: head pose (--yaw, --pitch, --roll), expression blendshapes "
      "(--expression), the camera (--fov, and --face-px, the eye distance in pixels, down to very low resolution), VIS lights "
      "(a sky-like ambient, a key and sometimes a fill area light at real colour temperatures), NIR lights (an illuminator on "
      "the camera axis and up to --nir-ambient of ambient NIR) and the sensor (noise, blur; NIR single-channel). Each variation "
      "becomes one VIS job and one job per NIR band that share identity, pose, expression and camera (--pairing independent "
      "draws the NIR ones separately).",
      "Every random choice comes from --seed through a generator per identity and variation, so a run is reproducible and "
      "--shard K/N (by variation) produces exactly its share of the jobs of a full run.",
  };
  s.reads = "face records from hfr-reconstruct (JSON lines with a \"reconstruction\" tensor file; - is stdin); records without "
            "one (errors) are skipped.";
  s.writes = "one identity tensor file per identity in -O DIR (atomically), and one JSON-lines render job per image on stdout "
             "(--records): id, pair, identity, subject, identity_file, modality, spectrum, band, pose, expression, camera, "
             "lights, sensor, output path, seed.";
  s.positionals = {{"FACES", "Records file from hfr-reconstruct, or - for stdin.", Complete::file, {}, false, true}};
  s.options = {
      {"output-dir", 'O', "DIR", "Folder for the identity files (created if missing; required).", "", {}, Complete::dir},
      {"records", 'r', "FILE", "Write the render jobs here.", "-", {}, Complete::file},
      {"renders", 0, "DIR", "Folder the jobs' images are to be rendered into (by hfr-render).", "renders", {}, Complete::dir},
      {"ict", 0, "DIR", "The ICT FaceKit folder, needed for reconstructions made with it; default $HFR_ICT_FACEKIT.", "", {},
       Complete::dir},
      {"poses", 'p', "N", "Variations per identity (each rendered in VIS and every NIR band).", "4", {}, Complete::none},
      {"new-identities", 0, "M", "Also sample M new identities.", "0", {}, Complete::none},
      {"bands", 0, "NM", "NIR bands, comma-separated: 850, 940.", "850", {}, Complete::none},
      {"yaw", 0, "DEG", "Head yaw uniform in [-DEG, DEG].", "30", {}, Complete::none},
      {"pitch", 0, "DEG", "Head pitch uniform in [-DEG, DEG].", "15", {}, Complete::none},
      {"roll", 0, "DEG", "Head roll uniform in [-DEG, DEG].", "8", {}, Complete::none},
      {"expression", 0, "S", "Strength of the sampled expressions (0 = neutral faces).", "0.3", {}, Complete::none},
      {"fov", 0, "MIN:MAX", "Camera field of view, degrees.", "20:45", {}, Complete::none},
      {"face-px", 0, "MIN:MAX", "Eye distance in the image, pixels, drawn log-uniformly (the image is 4 eye distances wide).",
       "24:160", {}, Complete::none},
      {"nir-ambient", 0, "A", "Largest ambient NIR relative to the illuminator.", "0.15", {}, Complete::none},
      {"pairing", 0, "MODE", "NIR jobs share the VIS job's pose, expression and camera (paired) or draw their own.", "paired",
       {"paired", "independent"}, Complete::choices},
      {"shard", 0, "K/N", "Write only the K-th of N deterministic shares of the jobs (by variation).", "1/1", {}, Complete::none},
  };
  s.examples = {
      {"hfr-reconstruct -O faces/ photos/ > faces.jsonl && hfr-synth -O ids/ --poses 9 faces.jsonl > jobs.jsonl",
       "Nine paired VIS/NIR variations of every reconstructed face."},
      {"hfr-synth -O ids/ --new-identities 1000 --seed 7 faces.jsonl > jobs.jsonl", "Add 1000 sampled identities."},
      {"parallel hfr-synth -O ids/ --shard {}/8 faces.jsonl '>' jobs.{}.jsonl ::: 1 2 3 4 5 6 7 8",
       "Eight shards that together equal one run."},
  };
  s.see_also = {"hfr-reconstruct(1)", "hfr-render(1)", "hfr-formats(5)"};
  return s;
}

hfr::synth::Range range(const std::string& s, const char* what) {
  const auto colon = s.find(':');
  try {
    if (colon == std::string::npos) throw std::invalid_argument("");
    std::size_t a = 0, b = 0;
    hfr::synth::Range r{std::stod(s.substr(0, colon), &a), std::stod(s.substr(colon + 1), &b)};
    if (a != colon || b != s.size() - colon - 1 || !(r.lo > 0) || !(r.hi >= r.lo)) throw std::invalid_argument("");
    return r;
  } catch (const std::exception&) {
    throw hfr::UsageError(std::string("--") + what + " expects MIN:MAX with 0 < MIN <= MAX, got '" + s + "'");
  }
}

}  // namespace

int main(int argc, char** argv) {
  return hfr::cli::run(spec(), argc, argv, [](const hfr::cli::Args& a) {
    hfr::synth::Options o;
    o.inputs = a.positionals();
    o.output_dir = a.str("output-dir");
    o.records = a.str("records");
    o.renders_dir = a.str("renders");
    o.ict_dir = a.str("ict");
    o.poses = static_cast<int>(a.integer("poses", 1, 100000));
    o.new_identities = static_cast<int>(a.integer("new-identities", 0, 10000000));
    o.bands.clear();
    std::string bands = a.str("bands");
    for (std::size_t p = 0; p <= bands.size();) {
      const std::size_t q = std::min(bands.find(',', p), bands.size());
      const std::string b = bands.substr(p, q - p);
      if (b == "850") o.bands.push_back(850);
      else if (b == "940") o.bands.push_back(940);
      else throw hfr::UsageError("--bands: '" + b + "' is not a NIR band hfr models (850, 940)");
      p = q + 1;
    }
    o.seed = a.common().seed;
    o.yaw = a.number("yaw");
    o.pitch = a.number("pitch");
    o.roll = a.number("roll");
    o.expression = a.number("expression");
    for (double v : {o.yaw, o.pitch, o.roll, o.expression})
      if (!(v >= 0)) throw hfr::UsageError("--yaw, --pitch, --roll and --expression must be >= 0");
    if (o.yaw > 90 || o.pitch > 90 || o.roll > 180) throw hfr::UsageError("--yaw and --pitch must be <= 90, --roll <= 180");
    o.fov = range(a.str("fov"), "fov");
    if (o.fov.hi >= 179) throw hfr::UsageError("--fov must be below 179 degrees");
    o.face_px = range(a.str("face-px"), "face-px");
    if (o.face_px.lo < 4 || o.face_px.hi > 512) throw hfr::UsageError("--face-px must be within 4:512");
    o.nir_ambient = a.number("nir-ambient");
    if (!(o.nir_ambient >= 0)) throw hfr::UsageError("--nir-ambient must be >= 0");
    o.independent = a.str("pairing") == "independent";
    const std::string sh = a.str("shard");
    if (std::sscanf(sh.c_str(), "%d/%d", &o.shard, &o.shards) != 2 || o.shards < 1 || o.shard < 1 || o.shard > o.shards ||
        sh.find_first_not_of("0123456789/") != std::string::npos)
      throw hfr::UsageError("--shard expects K/N with 1 <= K <= N, got '" + sh + "'");
    return hfr::synth::run(o);
  });
}
