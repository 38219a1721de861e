// Face-recognition backbones built as hfr graphs, to train from scratch
// (hfr-train -m NAME): freshly initialised from a seed, in the same graph
// form as the imported models, so a trained one is an ordinary hfr model file
// that hfr-embed runs.
//
//   iresnet18, iresnet34, iresnet50  insightface's IResNet (arcface_torch):
//       3x3 stem, IBasicBlocks [2,2,2,2] / [3,4,6,3] / [3,4,14,3], each
//       stage's first block of stride 2, BN -> flatten -> FC 25088x512 -> BN.
//   mobilefacenet  arcface_torch's get_mbf (blocks 1,4,6,2, scale 2), GDC head,
//       512-d. One difference: its second 3x3 convolution is depthwise (128
//       groups) where upstream uses 64 groups of two channels.
// Input: 112x112 RGB aligned to the ArcFace 5-point template (arcface-112),
// value = (pixel - 127.5) / 127.5; output: the 512-d embedding.
//
//   lightcnn9, lightcnn29  LightCNN (Wu et al., "A Light CNN for Deep Face
//       Representation with Noisy Labels"), the usual NIR-VIS backbones:
//       Max-Feature-Map activations (MaxFeatureMap: a convolution or dense
//       layer with bias to 2C values, the elementwise max of the two halves),
//       no batch normalisation. -9: mfm 5x5 48, pool, groups (1x1 mfm then
//       3x3 mfm) 96, pool, 192, pool, 128, 128, pool, fc mfm 8192 -> 256.
//       -29 (v1): the same with residual blocks (two 3x3 mfm + identity)
//       [1, 2, 3, 4] before groups 1..4. Pools 2x2 max, stride 2.
//       Input: 128x128 grey (one channel; RGB crops are converted to BT.601
//       luma, crops.hpp), value = pixel / 255, aligned to the ArcFace
//       template scaled to 128 (arcface-112 at size 128: the original aligns
//       five points to its own 128x128 framing, which hfr does not have);
//       output: the 256-d fc mfm (the classifier fc2 and its dropout are
//       hfr-train's margin head). The flatten runs in NHWC order (h, w, c),
//       PyTorch's view in (c, h, w): the fc rows are a permutation of the
//       original's. Weights N(0, 1 / fan_in) (He's argument for MFM, which
//       keeps the second moment where ReLU halves it), biases 0.
//
// Batch normalisation (iresnet, mobilefacenet) is FusedBatchNormV3 (epsilon 1e-5, momentum 0.1):
// batch statistics while training, running statistics in inference
// (graph.hpp). Initialisation: convolutions and the FC He-normal
// (std sqrt(2 / fan_in)), BN scale 1 offset 0, PReLU slopes 0.25; every value
// from the seed.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hfr/model.hpp"

namespace hfr::nn {

const std::vector<std::string>& backbone_names();
bool is_backbone(const std::string& name);

// A freshly initialised backbone; UsageError for an unknown name.
Model build_backbone(const std::string& name, std::uint64_t seed);

// The recognisability-index head (hfr-train --ri; methods.md §5): a small MLP
// on the embedding, StopGradient -> scale -> FC D x 64 + bias -> ReLU -> FC 64 x 1 +
// bias -> sigmoid, as the output role "ri" ([N, 1], in [0, 1]; the predicted
// index), its nodes named quality_*. The embedding is first scaled to L2 norm
// sqrt(D) (the index is a property of its direction). hfr-embed writes it per
// face as "ri". Added in place (checksum recomputed); a model that has one is
// left as is (one saved before the head's output was renamed, with the head as
// "quality", has it renamed to "ri").
constexpr std::int64_t kQualityHidden = 64;
bool has_quality_head(const Model& m);
void add_quality_head(Model& m, std::uint64_t seed);
// The quality head outside its graph, for scoring embeddings a program
// computed elsewhere (hfr-train scores its blurred crops' embeddings, which
// must not pass the batch-norm statistics again). quality_head_parameters
// picks the head's four parameters (FC1 [D, 64], its bias, FC2 [64, 1], its
// bias) out of a trainable program's parameters() by their node names, in
// graph order; Error when they are not add_quality_head's for dimension D.
// quality_head applies them to embeddings [N, D]: the graph's "quality"
// output for those embeddings, as [N], with gradients to the parameters only
// (the embeddings are read as constants, as the graph's StopGradient does).
std::vector<torch::Tensor> quality_head_parameters(const std::vector<std::pair<std::string, torch::Tensor>>& params,
                                                   std::int64_t dim, const std::string& context);
torch::Tensor quality_head(const torch::Tensor& embeddings, const std::vector<torch::Tensor>& head);

// The UI-distance quality (hfr-train --ri; docs/losses.md §6): the output role
// "quality" = (1 - cos(embedding, u)) / 2 in [0, 1], u the unrecognisable-identity
// centre (normalised here; [D], finite, not zero), computed in the graph
// (StopGradient -> L2 normalise -> MatMul with the constant -u/2 -> + 1/2),
// its nodes named uiq_*. Embeddings at the UI centre score 0, those 90 degrees
// from it 1/2. Replaces an earlier one (the centre moves as the model trains);
// hfr-embed writes it per face as "quality". remove_ui_quality takes it out
// (a model fine-tuned without --ri: its centre no longer fits); both recompute
// the checksum. Error for a model without an embedding or a bad centre.
bool has_ui_quality(const Model& m);
void set_ui_quality(Model& m, const torch::Tensor& ui_centre);
void remove_ui_quality(Model& m);
// The same score outside the graph, for embeddings [N, D] and a centre [D]
// (neither normalised): [N], no gradient (hfr-train's ui_quality_mean metric).
torch::Tensor ui_quality(const torch::Tensor& embeddings, const torch::Tensor& ui_centre);

// Perceptibility attention (hfr-train --attention; methods.md §5): a
// spatial gate on the last feature map of 7x7 or more the embedding depends
// on (dlib: the 8x8x128 stage before its 3x3 and 2x2 ones; IResNet: the 7x7
// map before the FC; LightCNN: the last 8x8 map),
// x * 2 sigmoid(conv1x1(x) + b) with one weight per location, so training
// can weigh the face's more recognisable regions up and the others down.
// Filter and bias start at zero (the model is unchanged); nodes attention_*.
// The provenance records it; a model that has one is left as is.
bool has_perceptibility_attention(const Model& m);
void add_perceptibility_attention(Model& m, std::uint64_t seed);

// Switch style modulation (hfr-train --ssm; methods.md §4, docs/train.md):
// blocks inserted after the named nodes (4-D values the embedding depends
// on), each y = x + p_k (gamma_k IN(x) + beta_k) with E experts (a per-channel
// scale and shift of the instance-normalised feature map) and a top-1 router
// on x's per-channel mean and standard deviation (ops SwitchRouter and
// SwitchStyleModulation, graph.hpp). gamma and beta start at zero, so the
// model computes exactly what it did; the router's weights are N(0, 0.01)
// from the seed. Nodes are named ssm_*; the routers' probabilities ([N, E])
// are the output roles router_1, router_2, ... in the order given. Every
// consumer of a named node reads the block's output instead. UsageError for
// an unknown node, a repeated one, or experts outside 2..64.
bool has_switch_modulation(const Model& m);
std::vector<std::string> router_roles(const Model& m);
void add_switch_modulation(Model& m, int experts, const std::vector<std::string>& at, std::uint64_t seed);
// The default insertion points, mid-level features: of the spatial sizes the
// embedding's values take below the input's, in order, the 2nd to the
// (blocks+1)-th; at each, the last residual sum (Add) of that size, or the
// last value of it when there is none (dlib: after the 35x35 and 17x17
// stages; IResNet: after the 28x28 and 14x14 stages).
std::vector<std::string> default_modulation_points(const Model& m, int blocks = 2);

}  // namespace hfr::nn
