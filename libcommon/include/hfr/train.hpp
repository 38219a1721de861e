// hfr-train: fine-tuning a pretrained face embedder (an hfr model: the
// imported dlib ResNet or faceres, or a model file hfr-train wrote) on
// records of face images with subjects and modalities, with a margin softmax
// (CosFace / ArcFace) plus the identity-level MMD between two modalities
// (methods.md §1) and optionally the paired contrastive loss (§3).
//
// Batches are identity-balanced: K subjects x P images of each of the two
// modalities (slot i of both halves is the same subject), drawn from --seed
// and the step number only, so a resumed run draws the same batches.
// Images are aligned to the model's crop from their five landmarks when the
// records carry them (hfr-render's records do), else resized; grey images are
// replicated to the model's three channels (as hfr-embed does).
//
// Data-parallel across processes and machines when WORLD_SIZE > 1 (RANK,
// MASTER_ADDR, MASTER_PORT: hfr/distributed.hpp): every rank draws the same
// global batch and trains on its share of the subjects; gradients are
// averaged, so the weights stay identical and a run matches one process with
// the same global batch (exactly for the margin loss; ID-MMD and the paired
// contrastive loss see each rank's subjects only). Rank 0 writes the outputs.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace hfr::train {

// Augmentation beyond flips (all off by default), drawn per image from the
// seed, step and row.
struct Augment {
  double jitter = 0;       // crop jitter: shift, scale and rotation of up to this many pixels at the border
  double color = 0;        // brightness and contrast factors in [1 - color, 1 + color]
  double blur = 0;         // probability of a Gaussian blur (sigma 0.5..1.5 px)
  double low_res = 0;      // probability of down- and re-up-sampling ...
  double low_res_min = 16; // ... to a side drawn in [low_res_min, crop size] pixels
  bool any() const { return jitter > 0 || color > 0 || blur > 0 || low_res > 0; }
};

struct Options {
  std::vector<std::string> inputs;   // training records files ("-": stdin)
  std::string model = "dlib";        // built-in name or hfr model file to start from, or a backbone
                                     // name (nn::backbone_names: trained from scratch)
  std::string optimizer = "sgd";     // sgd | adamw
  std::string output;                // the fine-tuned model file (required)
  std::string validation;            // records for validation (optional)
  std::string modalities = "VIS,NIR";  // gallery (anchor) modality, probe modality or modalities (comma-separated)
  std::string metrics = "";          // JSON lines per logged step ("" none, "-" stdout)
  std::string resume;                // training-state file written by a previous run
  std::string state;                 // where to write the training state ("" = OUTPUT.state)
  int steps = 200;
  int ids_per_batch = 16;            // K
  int per_modality = 4;              // P
  int head_steps = 0;                // first steps: classifier only (backbone frozen)
  double lr = 1e-3, momentum = 0.9, weight_decay = 2e-4;
  double head_lr = 0.1;              // the new classifier's learning rate (it starts from random weights)
  double lr_decay = 0.4573;          // multiplied every lr_step steps
  int lr_step = 0;                   // 0: constant
  double clip = 5.0;                 // gradient norm clip (0: none)
  std::string loss = "cosface";      // cosface | arcface
  double scale = 64, margin = -1;    // margin < 0: the loss's default (0.40 CosFace, 0.50 ArcFace)
  double idmmd = 1;                  // weight of ID-MMD (0: off; the paper's 100 collapsed dlib here: docs/train.md)
  double contrastive = 0;            // weight of the paired contrastive loss (0: off)
  double ri = 0;                     // weight of the recognisability-index regression (smooth L1; 0: no quality head)
  double ri_diversion = 0;           // weight of the index diversion loss (0: off)
  double ri_margin = 0.5;            // its cone around the UI centre, as a cosine
  double ri_lr = 0.01;               // the quality head's learning rate (it starts from random weights)
  bool attention = false;            // add perceptibility attention (a spatial gate on the last feature map)
  int ssm_experts = 0;               // switch style modulation: experts per block (0: off, unless the model has blocks)
  int ssm_blocks = 2;                // blocks at the default places (nn::default_modulation_points)
  std::vector<std::string> ssm_at;   // or after these nodes
  double ssm_balance = 0.01;         // alpha of the routers' load-balancing loss
  double ssm_noise = 0;              // Gumbel noise scale of the routers' choice in training (1: draw from p; 0: top-1)
  double ssm_route_hint = 0;         // weight of the supervised routing hint (losses::route_hint_experts; 0: off)
  double ssm_teacher = 1;            // weight of the teacher-student loss on the gallery modality (0: off)
  bool flip = true;                  // random horizontal flips
  Augment augment;
  int log_every = 10;
  int checkpoint_every = 0;          // steps; 0: only at the end (and on SIGINT/SIGTERM)
  int validate_every = 0;            // steps; 0: only at the end
  std::uint64_t seed = 0;
  int threads = 1;
  std::string device = "cpu";        // cpu | cuda | cuda:N (data-parallel "cuda": cuda:LOCAL_RANK)
  std::string precision = "fp32";    // fp32 | bf16 | fp16 (CUDA): hfr/mixed_precision.hpp
  std::string layout = "auto";       // auto | channels-last | nchw: the convolutions' memory layout
  double dist_timeout = 600;         // seconds to wait for the other processes (data-parallel runs)
};

int run(const Options& options);

}  // namespace hfr::train
