// hfr-render: ray-trace aligned VIS and NIR face crops from hfr-synth's render jobs.
#include <dlfcn.h>
#include <malloc.h>

#include <cstdlib>

#include "hfr/cli.hpp"
#include "hfr/error.hpp"
#include "hfr/render_jobs.hpp"

namespace {
using hfr::cli::Complete;

// OpenBLAS comes in with OpenCV's core (hfr-render does no linear algebra
// with it) and starts a thread pool in its initialiser that spins ~0.1 s of
// CPU per process (sched_yield) beside the render threads. Setting
// OPENBLAS_NUM_THREADS from the executable's .preinit_array did not stop it:
// libc's own initialiser, which runs after that, resets the environment to
// the process's. So main stops the pool's threads, unless the caller chose a
// thread count (a BLAS call would start them again; hfr-render makes none).
void stop_blas_threads() {
  if (std::getenv("OPENBLAS_NUM_THREADS")) return;
  if (auto shutdown = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "blas_thread_shutdown_"))) shutdown();
}

hfr::cli::ToolSpec spec() {
  hfr::cli::ToolSpec s;
  s.name = "hfr-render";
  s.summary = "ray-trace aligned VIS and NIR face crops from render jobs";
  s.synopsis = {"[OPTION]... [JOBS.jsonl|-]..."};
  s.description = {
      "Renders each job of hfr-synth with Embree: the identity's head in the job's pose and expression, a perspective camera, "
      "Lambertian skin with a screen-space subsurface scattering approximation (a sum-of-Gaussians diffusion profile, wider "
      "at 850 nm than in the visible), a GGX microfacet specular term with Fresnel, soft shadows from area lights and the "
      "on-axis NIR illuminator, ambient occlusion, --spp stratified samples per pixel seeded by the job.",
      "The output is an aligned face crop (--size, the --template framing) made from the known projected landmarks, no "
      "detector: when the face is smaller in the frame than in the crop, the frame's pixels are rendered, passed through "
      "the sensor (auto exposure, blur, tone curve, noise, 8 bits) and warped up to the crop, as a camera would see a "
      "low-resolution face; otherwise each crop pixel is traced over its footprint in the frame. NIR images have one "
      "channel. --frames also writes the whole frame.",
      "Jobs of one pair (VIS and NIR of one variation) share one scene. Failed jobs give a record with an error and the "
      "exit status 3; the others are rendered. Images are written atomically; --skip-existing keeps images already there, "
      "so an interrupted run continues.",
  };
  s.reads = "render jobs from hfr-synth (JSON lines; - is stdin) and the identity files they name (relative to the jobs file).";
  s.writes = "one PNG per job at its output path (relative to the jobs file's folder, or to -O DIR), and one JSON-lines record "
             "per job on stdout (--records): the job's fields (id, pair, identity, subject, modality, spectrum, pose, expression, "
             "camera, lights, sensor, seed, identity_file) plus path, landmarks (crop), frame_landmarks, eye_px, crop, "
             "exposure, render (spp, grid, rays, ms), or error.";
  s.positionals = {{"JOBS", "Render jobs from hfr-synth, or - for stdin.", Complete::file, {}, false, true}};
  s.options = {
      {"records", 'r', "FILE", "Write the image records here.", "-", {}, Complete::file},
      {"output-dir", 'O', "DIR", "Resolve the jobs' output paths against DIR instead of the jobs file's folder.", "", {},
       Complete::dir},
      {"ict", 0, "DIR", "The ICT FaceKit folder, for jobs with expressions; default $HFR_ICT_FACEKIT.", "", {}, Complete::dir},
      {"spp", 0, "N", "Camera samples per pixel (n-rooks stratified; 4 leaves about 3 grey levels of noise in VIS, 1.6 in NIR).", "4", {}, Complete::none},
      {"size", 0, "PX", "Side of the aligned crops.", "112", {}, Complete::none},
      {"template", 0, "NAME", "Crop framing (five-point template; as hfr-embed's models expect).", "arcface-112",
       {"arcface-112", "dlib-150", "faceres-224"}, Complete::choices},
      {"frames", 0, "", "Also render the whole frame of each job (OUTPUT_frame.png).", "", {}, Complete::none},
      {"no-subsurface", 0, "", "Plain Lambertian skin (no subsurface scattering approximation).", "", {}, Complete::none},
      {"exposure", 0, "V", "Auto exposure target: the mean linear value of the skin.", "0.25", {}, Complete::none},
      {"exposure-jitter", 0, "STOPS", "Exposure error drawn per job from its seed, uniform in +-STOPS.", "0.3", {},
       Complete::none},
      {"skip-existing", 0, "", "Do not re-render images that exist (their records are written all the same).", "", {},
       Complete::none},
      {"contact-sheet", 0, "FILE", "Write a PNG grid of the first VIS/NIR pairs.", "", {}, Complete::file},
      {"sheet-pairs", 0, "N", "Pairs on the contact sheet.", "24", {}, Complete::none},
  };
  s.examples = {
      {"hfr-synth -O ids/ faces.jsonl > jobs.jsonl && hfr-render --contact-sheet pairs.png jobs.jsonl > images.jsonl",
       "Render every job next to jobs.jsonl and look at the pairs."},
      {"hfr-render -t 16 --frames --spp 32 jobs.jsonl > images.jsonl", "Frames too, with more samples."},
      {"parallel hfr-render -r images.{}.jsonl jobs.{}.jsonl ::: 1 2 3 4", "Render hfr-synth's shards on their own."},
  };
  s.see_also = {"hfr-synth(1)", "hfr-embed(1)", "hfr-train(1)", "hfr-formats(5)"};
  return s;
}
}  // namespace

int main(int argc, char** argv) {
  // Each pair allocates and frees buffers of 0.1-10 MB (images, layers, the
  // identities' maps): keep freed memory for the next ones rather than give
  // it back and fault fresh zeroed pages in each time.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  stop_blas_threads();
  return hfr::cli::run(spec(), argc, argv, [](const hfr::cli::Args& a) {
    hfr::render_jobs::Options o;
    o.inputs = a.positionals();
    o.records = a.str("records");
    o.output_dir = a.str("output-dir");
    o.ict_dir = a.str("ict");
    o.spp = static_cast<int>(a.integer("spp", 1, 4096));
    o.crop_size = static_cast<int>(a.integer("size", 16, 1024));
    o.crop_template = a.str("template");
    o.frames = a.flag("frames");
    o.subsurface = !a.flag("no-subsurface");
    o.exposure = a.number("exposure");
    if (!(o.exposure > 0 && o.exposure <= 1)) throw hfr::UsageError("--exposure must be in (0, 1]");
    o.exposure_jitter = a.number("exposure-jitter");
    if (!(o.exposure_jitter >= 0 && o.exposure_jitter <= 4)) throw hfr::UsageError("--exposure-jitter must be within 0..4");
    o.skip_existing = a.flag("skip-existing");
    o.contact_sheet = a.str("contact-sheet");
    o.sheet_pairs = static_cast<int>(a.integer("sheet-pairs", 1, 10000));
    o.threads = a.common().threads;
    return hfr::render_jobs::run(o);
  });
}
