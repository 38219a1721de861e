// hfr-train: fine-tune a pretrained face embedder with the HFR losses.
#include "hfr/cli.hpp"
#include "hfr/error.hpp"
#include "hfr/mixed_precision.hpp"
#include "hfr/tensor_torch.hpp"
#include "hfr/train.hpp"

namespace {
using hfr::cli::Complete;

hfr::cli::ToolSpec spec() {
  hfr::cli::ToolSpec s;
  s.name = "hfr-train";
  s.summary = "fine-tune a pretrained face embedder, or train a backbone from scratch, with the HFR losses";
  s.synopsis = {"[OPTION]... -o MODEL.hft TRAIN.jsonl..."};
  s.description = {
      "Fine-tunes a pretrained embedder (--model: the imported dlib ResNet or faceres, or an hfr model file) on records of "
      "face images with a subject and a modality, so that images of the second modality (probes, e.g. NIR) match those of "
      "the first (gallery, e.g. VIS): a margin softmax over the training subjects (--loss cosface, s 64, m 0.40; or arcface) "
      "plus --idmmd times the identity-level MMD between the two modalities' identity centres, and optionally --contrastive "
      "times the paired contrastive loss. The whole network is trained (after --head-steps steps of the classifier alone) "
      "with SGD (momentum, weight decay) or AdamW (--optimizer), a step learning-rate decay and gradient clipping.",
      "Training from scratch: --model iresnet18, iresnet34, iresnet50 or mobilefacenet builds that backbone (insightface's "
      "IResNet, arcface_torch's MobileFaceNet; 112x112 ArcFace-aligned crops, (pixel - 127.5) / 127.5, 512-d) with weights "
      "drawn from --seed; its batch normalisation learns from batch statistics and keeps running ones for inference. "
      "--model lightcnn9 or lightcnn29 builds LightCNN-9 or -29 (Max-Feature-Map activations, no batch normalisation; "
      "128x128 grey crops aligned to the ArcFace template scaled to 128, pixel / 255, RGB converted to BT.601 luma; 256-d). "
      "Such networks need far more data and steps than fine-tuning (typically --lr 0.1 with SGD, or --optimizer adamw "
      "--lr 1e-3).",
      "Each batch holds --ids subjects with --per-modality images of each modality, drawn from --seed and the step number "
      "only: a run resumed from its state file (--resume) draws the same batches and ends where an uninterrupted run ends. "
      "Images are aligned to the model's crop from the records' five landmarks (hfr-render and hfr-embed write them), "
      "else resized; grey images are replicated to three channels (one-channel models take their luma). Batches are loaded on --threads threads while the "
      "previous step runs. Besides flips, --jitter, --color, --blur and --low-res augment each image (after alignment), "
      "every draw from --seed, the step and the row, so batches and resumed runs stay reproducible.",
      "Very-low-resolution faces (methods.md §5): --ri adds a recognisability-index head, trained to predict hfr's index "
      "(docs/losses.md: high for a sample near its class prototype and far from the nearest other class and from the "
      "unrecognisable-identity (UI) centre, the running mean embedding of crops averaged down to 4x4 pixels); the model "
      "also keeps that centre, and hfr-embed writes each face's \"quality\", (1 - cos(embedding, centre)) / 2, which ranks "
      "faces better than the head's prediction (written as \"ri\"; docs/results.md). Fine-tuning such a model again "
      "without --ri drops its quality output (the centre would no longer fit). --ri-diversion pushes low-index embeddings out of a cone around the "
      "UI centre. --attention adds a perceptibility attention module, a learned spatial gate on the network's last "
      "feature map. Combine with --low-res to train on very-low-resolution faces.",
      "The output is an hfr model file with the same architecture, preprocessing and a provenance that names the base "
      "model and the training; hfr-embed -m MODEL.hft uses it. With --validation, the model with the best cross-modal "
      "Rank-1 is kept. A state file (OUTPUT.state) is written at --checkpoint-every steps, at the end and on SIGINT or "
      "SIGTERM. A non-finite loss stops the run with an error and leaves the last checkpoint as it was.",
      "More than one probe modality (--modalities VIS,NIR,SWIR): batches hold every modality of each subject; ID-MMD and the "
      "paired contrastive loss compare the gallery modality with each probe modality (averaged); validation matches all "
      "probe modalities against the gallery.",
      "Modality-agnostic models (methods.md §4): --ssm E inserts switch style modulation blocks (--ssm-blocks of them, or "
      "after the nodes --ssm-at names): each sends a sample to one of E experts, chosen by a router from the feature map's "
      "per-channel mean and standard deviation, and adds that expert's scale and shift of the instance-normalised features "
      "(zero at the start: the model is unchanged). Only the blocks train; besides the losses above, --ssm-balance weighs "
      "the routers' load-balancing loss, --ssm-noise makes the routing stochastic in training (so that every expert gets images to learn from), --ssm-route-hint asks the routers to send each training modality to its own expert, and --ssm-teacher the teacher-student loss that keeps gallery-modality embeddings "
      "where the frozen starting model puts them. The metrics log the routing decisions (the fraction of each modality's "
      "images sent to each expert). hfr-embed runs the model without being told the probe's modality.",
      "Data-parallel training across processes and machines (torch.distributed, Gloo): start one hfr-train per process, "
      "with the same command line and the environment torchrun or a Slurm script sets: WORLD_SIZE (processes), RANK (0 to "
      "WORLD_SIZE-1), MASTER_ADDR and MASTER_PORT (rank 0's host and a free port; rank 0 listens there); "
      "GLOO_SOCKET_IFNAME picks the network interface. Every process draws the same global batch of --ids subjects and "
      "trains on its share of them (--ids must split evenly); gradients and batch-norm statistics are averaged across "
      "processes before each step, so the weights stay identical (checked at the end: each rank prints a checksum of its "
      "weights) and the run matches one process with the same --ids (exactly for the margin loss; ID-MMD and the paired "
      "contrastive loss see each process's subjects only). Rank 0 writes the model, the state and the metrics; a signal "
      "to any process checkpoints and stops all of them; --resume works as with one process. Give each process "
      "--threads cores.",
  };
  s.reads = "training records (JSON lines with path, subject and modality; paths relative to the records file; records with "
            "an error are skipped), the base model.";
  s.writes = "the fine-tuned model file (-o, atomically), its state file, and per-step metrics as JSON lines (--metrics): "
             "loss terms, learning rate, images/s, loader wait, validation Rank-1 and TAR@FAR.";
  s.positionals = {{"TRAIN", "Training records (e.g. hfr-render's), or - for stdin.", Complete::file, {}, false, true}};
  s.options = {
      {"output", 'o', "FILE", "The fine-tuned model file (required).", "", {}, Complete::file},
      {"model", 'm', "NAME", "Base model: dlib, faceres, an hfr model file, or a backbone to train from scratch (iresnet18, "
       "iresnet34, iresnet50, mobilefacenet, lightcnn9, lightcnn29).", "dlib", {}, Complete::file},
      {"validation", 0, "FILE", "Validation records: probe-modality images matched against gallery-modality images.", "", {},
       Complete::file},
      {"modalities", 0, "G,P[,P...]", "The gallery modality and the probe modality or modalities, as named in the records.",
       "VIS,NIR", {}, Complete::none},
      {"steps", 0, "N", "Training steps (batches).", "200", {}, Complete::none},
      {"ids", 0, "K", "Subjects per batch.", "16", {}, Complete::none},
      {"per-modality", 0, "P", "Images per subject and modality in a batch.", "4", {}, Complete::none},
      {"head-steps", 0, "N", "First steps train the classifier only.", "0", {}, Complete::none},
      {"lr", 0, "LR", "Learning rate of the backbone.", "0.001", {}, Complete::none},
      {"head-lr", 0, "LR", "Learning rate of the new classifier (margin softmax weights, from random).", "0.1", {}, Complete::none},
      {"optimizer", 0, "NAME", "Optimizer.", "sgd", {"sgd", "adamw"}, Complete::choices},
      {"momentum", 0, "M", "SGD momentum.", "0.9", {}, Complete::none},
      {"weight-decay", 0, "W", "Weight decay (SGD: L2 in the gradient; AdamW: decoupled).", "0.0002", {}, Complete::none},
      {"lr-step", 0, "N", "Multiply the learning rate by --lr-decay every N steps (0: constant).", "0", {}, Complete::none},
      {"lr-decay", 0, "F", "Learning-rate factor per --lr-step.", "0.4573", {}, Complete::none},
      {"clip", 0, "NORM", "Clip the gradient norm (0: no clipping).", "5", {}, Complete::none},
      {"precision", 0, "P", "fp32 (default), bf16 (CPU or CUDA: convolutions and matrix products in bfloat16) or fp16 "
       "(CUDA: float16 with dynamic loss scaling; a step whose gradients overflow is skipped). Weights, optimizer state, "
       "losses and the saved model stay float32.", "fp32", {"fp32", "bf16", "fp16"}, Complete::choices},
      {"layout", 0, "L", "Memory layout of the convolutions' activations: channels-last (NHWC strides), nchw "
       "(contiguous), or auto: channels-last on CUDA and for networks with depthwise convolutions (MobileFaceNet, faceres), "
       "NCHW otherwise (dlib, IResNet, LightCNN), whichever trained faster here.", "auto", {"auto", "channels-last", "nchw"}, Complete::choices},
      {"loss", 0, "NAME", "Margin softmax.", "cosface", {"cosface", "arcface"}, Complete::choices},
      {"scale", 0, "S", "Margin softmax scale.", "64", {}, Complete::none},
      {"margin", 0, "M", "Margin (default 0.40 for CosFace, 0.50 for ArcFace).", "", {}, Complete::none},
      {"idmmd", 0, "W", "Weight of the ID-MMD loss (0: off; the paper's 100 collapsed the dlib embeddings on small synthetic sets).", "1", {}, Complete::none},
      {"contrastive", 0, "W", "Weight of the paired contrastive loss (0: off).", "0", {}, Complete::none},
      {"ri", 0, "W", "Weight of the recognisability-index loss: adds the index's head and the UI centre's quality "
       "output, which hfr-embed writes per face as \"ri\" and \"quality\" (0: neither).", "0", {}, Complete::none},
      {"ri-diversion", 0, "W", "Weight of the index diversion loss: pushes low-index embeddings away from the "
       "unrecognisable-identity centre (0: off).", "0", {}, Complete::none},
      {"ri-margin", 0, "COS", "The index diversion's cone around that centre, as a cosine.", "0.5", {}, Complete::none},
      {"ri-lr", 0, "LR", "Learning rate of the recognisability-index head (--ri).", "0.01", {}, Complete::none},
      {"attention", 0, "", "Add perceptibility attention: a learned spatial gate on the last feature map, weighing the "
       "face's more recognisable regions (starts as the identity; trained with the rest).", "", {}, Complete::none},
      {"ssm", 0, "E", "Switch style modulation: insert blocks of E experts (2-64) with a top-1 router and train them alone, "
       "the rest of the network frozen (0: off; a model that has blocks trains them whatever this says).", "0", {}, Complete::none},
      {"ssm-blocks", 0, "N", "Number of blocks, at the ends of the network's 2nd, 3rd, ... resolution stages.", "2", {},
       Complete::none},
      {"ssm-at", 0, "NODES", "Insert the blocks after these graph nodes instead (comma-separated).", "", {}, Complete::none},
      {"ssm-balance", 0, "A", "Weight alpha of the routers' load-balancing loss.", "0.01", {}, Complete::none},
      {"ssm-noise", 0, "S", "Stochastic routing in training: each image's expert is the argmax of log p + S * Gumbel noise "
       "(1: drawn from the router's probabilities; 0: always the most probable, as at inference).", "0", {}, Complete::none},
      {"ssm-route-hint", 0, "W", "Weight of a supervised routing hint in training: a cross-entropy asking each router to send "
       "the images of the gallery modality (the first of --modalities) to expert 0 and those of the k-th probe modality "
       "to expert 1 + (k - 1) mod (E - 1): one expert per modality when E is at least their number, else the probe "
       "modalities share the other experts (0: off, the routers learn alone). Inference still "
       "routes by the router alone, without the modality.", "0", {}, Complete::none},
      {"ssm-teacher", 0, "W", "Weight of the teacher-student loss: 1 - cos(student, frozen starting model) on the gallery "
       "modality (0: off).", "1", {}, Complete::none},
      {"no-flip", 0, "", "No random horizontal flips.", "", {}, Complete::none},
      {"jitter", 0, "PX", "Crop jitter: random shift, scale and rotation moving the crop border by up to PX pixels.", "0", {},
       Complete::none},
      {"color", 0, "F", "Random brightness and contrast factors in [1-F, 1+F].", "0", {}, Complete::none},
      {"blur", 0, "P", "Probability of a Gaussian blur (sigma 0.5-1.5 px).", "0", {}, Complete::none},
      {"low-res", 0, "P", "Probability of down-sampling to a side in [--low-res-min, crop size] and back up.", "0", {},
       Complete::none},
      {"low-res-min", 0, "PX", "Smallest side for --low-res.", "16", {}, Complete::none},
      {"metrics", 0, "FILE", "Per-step metrics as JSON lines (- for stdout).", "", {}, Complete::file},
      {"log-every", 0, "N", "Metrics every N steps.", "10", {}, Complete::none},
      {"checkpoint-every", 0, "N", "Write the model and state every N steps (0: at the end only).", "0", {}, Complete::none},
      {"validate-every", 0, "N", "Validate every N steps (0: at the end only).", "0", {}, Complete::none},
      {"resume", 0, "STATE", "Continue from a state file.", "", {}, Complete::file},
      {"dist-timeout", 0, "SECONDS", "Data-parallel runs: how long to wait for the other processes (rendezvous, each "
       "collective).", "600", {}, Complete::none},
  };
  s.examples = {
      {"hfr-train -o nir-dlib.hft --steps 300 --validation val.jsonl images.jsonl",
       "Fine-tune the dlib ResNet on hfr-render's images, keep the best on val.jsonl."},
      {"hfr-train -o m.hft --resume m.hft.state images.jsonl", "Continue an interrupted run."},
      {"hfr-embed -m nir-dlib.hft -o probes.hft nir/", "Use the fine-tuned model."},
      {"hfr-train -m iresnet18 --optimizer adamw --lr 0.001 --steps 20000 -o r18.hft images.jsonl",
       "Train an IResNet-18 from scratch."},
      {"for r in 0 1; do WORLD_SIZE=2 RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 hfr-train -t 1 -o m.hft images.jsonl & done; wait",
       "Two data-parallel processes on this machine."},
  };
  s.see_also = {"hfr-render(1)", "hfr-embed(1)", "hfr-eval(1)", "hfr-formats(5)"};
  return s;
}
}  // namespace

int main(int argc, char** argv) {
  hfr::tune_allocator();  // the step's large activations stay in the heap (bench/results-train.md)
  return hfr::cli::run(spec(), argc, argv, [](const hfr::cli::Args& a) {
    hfr::train::Options o;
    o.inputs = a.positionals();
    o.output = a.str("output");
    o.model = a.str("model");
    o.validation = a.str("validation");
    o.modalities = a.str("modalities");
    o.device = a.common().device;
    o.precision = a.str("precision");
    o.layout = a.str("layout");
    hfr::amp::parse_precision(o.precision);  // a usage error before any work
    o.steps = static_cast<int>(a.integer("steps", 1, 100000000));
    o.ids_per_batch = static_cast<int>(a.integer("ids", 2, 100000));
    o.per_modality = static_cast<int>(a.integer("per-modality", 1, 1000));
    o.head_steps = static_cast<int>(a.integer("head-steps", 0, 100000000));
    o.lr = a.number("lr");
    o.head_lr = a.number("head-lr");
    if (!(o.head_lr > 0)) throw hfr::UsageError("--head-lr must be > 0");
    o.optimizer = a.str("optimizer");
    o.momentum = a.number("momentum");
    o.weight_decay = a.number("weight-decay");
    o.lr_step = static_cast<int>(a.integer("lr-step", 0, 100000000));
    o.lr_decay = a.number("lr-decay");
    o.clip = a.number("clip");
    o.loss = a.str("loss");
    o.scale = a.number("scale");
    o.margin = a.str("margin").empty() ? -1 : a.number("margin");
    o.idmmd = a.number("idmmd");
    o.contrastive = a.number("contrastive");
    o.ri = a.number("ri");
    o.ri_diversion = a.number("ri-diversion");
    o.ri_margin = a.number("ri-margin");
    o.ri_lr = a.number("ri-lr");
    if (!(o.ri_lr > 0)) throw hfr::UsageError("--ri-lr must be > 0");
    if (!(o.ri >= 0 && o.ri_diversion >= 0)) throw hfr::UsageError("--ri and --ri-diversion must be >= 0");
    if (!(o.ri_margin >= -1 && o.ri_margin <= 1)) throw hfr::UsageError("--ri-margin is a cosine within [-1, 1]");
    for (double v : {o.lr, o.momentum, o.weight_decay, o.lr_decay, o.clip, o.scale, o.idmmd, o.contrastive})
      if (!(v >= 0)) throw hfr::UsageError("--lr, --momentum, --weight-decay, --lr-decay, --clip, --scale, --idmmd and --contrastive must be >= 0");
    if (!(o.lr > 0)) throw hfr::UsageError("--lr must be > 0");
    if (o.margin != -1 && !(o.margin >= 0 && o.margin < 1.5)) throw hfr::UsageError("--margin must be within 0..1.5");
    o.attention = a.flag("attention");
    o.ssm_experts = static_cast<int>(a.integer("ssm", 0, 64));
    if (o.ssm_experts == 1) throw hfr::UsageError("--ssm needs 2 or more experts (0: off)");
    o.ssm_blocks = static_cast<int>(a.integer("ssm-blocks", 1, 16));
    if (!a.str("ssm-at").empty()) o.ssm_at = hfr::cli::split_list(a.str("ssm-at"), true);
    for (const auto& node : o.ssm_at)
      if (node.empty()) throw hfr::UsageError("--ssm-at: an empty node name in '" + a.str("ssm-at") + "'");
    o.ssm_balance = a.number("ssm-balance");
    o.ssm_teacher = a.number("ssm-teacher");
    o.ssm_noise = a.number("ssm-noise");
    o.ssm_route_hint = a.number("ssm-route-hint");
    if (!(o.ssm_balance >= 0 && o.ssm_teacher >= 0 && o.ssm_noise >= 0 && o.ssm_route_hint >= 0))
      throw hfr::UsageError("--ssm-balance, --ssm-noise, --ssm-route-hint and --ssm-teacher must be >= 0");
    if (!o.ssm_at.empty() && o.ssm_experts == 0) throw hfr::UsageError("--ssm-at needs --ssm E");
    o.flip = !a.flag("no-flip");
    o.augment.jitter = a.number("jitter");
    o.augment.color = a.number("color");
    o.augment.blur = a.number("blur");
    o.augment.low_res = a.number("low-res");
    o.augment.low_res_min = a.number("low-res-min");
    if (!(o.augment.jitter >= 0 && o.augment.jitter <= 64)) throw hfr::UsageError("--jitter must be within 0..64 pixels");
    if (!(o.augment.color >= 0 && o.augment.color < 1)) throw hfr::UsageError("--color must be within [0, 1)");
    for (double p : {o.augment.blur, o.augment.low_res})
      if (!(p >= 0 && p <= 1)) throw hfr::UsageError("--blur and --low-res are probabilities within [0, 1]");
    if (!(o.augment.low_res_min >= 4 && o.augment.low_res_min <= 1024)) throw hfr::UsageError("--low-res-min must be within 4..1024");
    o.metrics = a.str("metrics");
    o.log_every = static_cast<int>(a.integer("log-every", 1, 100000000));
    o.checkpoint_every = static_cast<int>(a.integer("checkpoint-every", 0, 100000000));
    o.validate_every = static_cast<int>(a.integer("validate-every", 0, 100000000));
    o.resume = a.str("resume");
    o.seed = a.common().seed;
    o.threads = a.common().threads;
    o.dist_timeout = a.number("dist-timeout");
    if (!(o.dist_timeout >= 1 && o.dist_timeout <= 86400)) throw hfr::UsageError("--dist-timeout must be within 1..86400 seconds");
    return hfr::train::run(o);
  });
}
