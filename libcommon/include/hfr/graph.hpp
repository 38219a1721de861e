// Dataflow graphs of TensorFlow ops, executed on LibTorch.
//
// A Graph is data: nodes (name, op, inputs, attributes as plain JSON) plus the
// values of its constants. It is what the TF.js importer produces (tfjs.hpp),
// what the dlib ResNet builder produces, and what an hfr model file stores, so
// one executor runs every imported network.
//
// Semantics follow TensorFlow (NHWC, "SAME" padding with the extra row/column
// at the bottom/right, DepthToSpace in DCR order, Conv2D with a filter of
// Cin / G input channels grouped into G groups, ...). One op is hfr's own:
// MaxFeatureMap (LightCNN's MFM: the last axis of 2C values split into
// halves, their elementwise maximum, C values). Internally 4-D
// activations are kept in NCHW, LibTorch's fast layout: the layout of every
// value is decided once, when the graph is compiled, and constants that meet
// NCHW values are converted then. Program::run takes an NCHW input and returns
// outputs in TensorFlow's layout (NHWC for 4-D), so results compare directly
// with the original runtime's.
//
// Compilation refuses, by name, any op or attribute value it does not
// implement, and checks constant shapes (filters, biases, paddings), so a
// model either loads completely or not at all.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/types.h>

namespace hfr::nn {

struct Node {
  std::string name;
  std::string op;
  std::vector<std::string> inputs;  // producing node names
  nlohmann::json attr = nlohmann::json::object();  // numbers, strings, bools, arrays of them
};

struct Graph {
  std::vector<Node> nodes;                      // any order
  std::map<std::string, torch::Tensor> consts;  // values of Const nodes: float32 or int64, CPU

  const Node* find(const std::string& name) const;
};

// Nodes as JSON ([{"name","op","inputs","attr"}]) and back; values are not part
// of it. graph_from_json validates types and names (context: for messages).
nlohmann::json graph_to_json(const Graph& g);
Graph graph_from_json(const nlohmann::json& nodes, std::map<std::string, torch::Tensor> consts,
                      const std::string& context);

// g with every FusedBatchNormV3 node replaced by its inference form,
// x * (scale / sqrt(variance + epsilon)) + (offset - mean * that), as Mul and
// Add by new constants "<node>/bn_scale" and "<node>/bn_offset" (so that
// compilation folds them into a preceding convolution).
Graph inference_form(const Graph& g, const std::string& context);

// The convolution layout that trains g faster (hfr-train --layout auto):
// channels-last on CUDA and for networks with depthwise convolutions (oneDNN's
// NHWC depthwise kernels), NCHW otherwise. Measured here (CPU, batch 128,
// bench/results-train.md): MobileFaceNet 1.1-1.2x faster channels-last;
// IResNet-18 1.1-1.3x and LightCNN-9 1.2-1.35x faster NCHW; dlib and
// LightCNN-29 within noise. On CUDA it is the layout cuDNN's tensor-core
// kernels expect (not measured yet).
bool channels_last_trains_faster(const Graph& g, bool cuda);

// The ops Program can execute, sorted.
const std::vector<std::string>& supported_ops();

struct CompileOptions {
  // Fold per-channel affine chains after convolutions (Conv2D -> Add/Mul by
  // constants -> ...) into the convolution, and Relu->Minimum(6)->Maximum(0)
  // into one clamp. Changes results only by float rounding (~1e-6 relative).
  bool fuse = true;
  // Run convolutions on channels-last (NHWC-strided) tensors: oneDNN's fast
  // path on CPU, 1.2-2x faster here for these networks.
  bool channels_last = true;
  // Compile for fine-tuning with LibTorch autograd (see Program::forward):
  //  - every float constant of rank >= 1 the outputs depend on (convolution
  //    filters, biases, dense matrices, per-channel scales and offsets) becomes
  //    a leaf tensor with requires_grad, listed by Program::parameters().
  //    Rank-0 float constants (clamp bounds such as Relu6's 6) and integer
  //    constants (shapes, axes, paddings) stay fixed;
  //  - `fuse` still folds affine layers into convolutions, but at run time:
  //    the folded filter and bias are recomputed from the separate parameter
  //    tensors at every run (one pass over the weights, whatever the batch
  //    size), so gradients reach each parameter and each keeps the graph
  //    constant's shape and meaning;
  //  - values autograd tracks are never updated in place.
  // The imported graphs hold batch normalisation in its inference form
  // (per-channel Mul/Add by constants), which trains as ordinary scale and
  // offset parameters. Graphs built for training from scratch
  // (backbones.hpp) use FusedBatchNormV3 nodes (inputs x, scale, offset,
  // mean, variance; attributes epsilon, momentum): in a trainable program
  // their scale and offset are parameters, mean and variance buffers
  // (Program::buffers) that forward() updates from each batch; run() and
  // inference programs normalise with the running statistics (inference
  // programs fold them into the preceding convolution: inference_form).
  bool trainable = false;
};

class Program {
 public:
  // Compiles what `outputs` need from the Placeholder `input`. Throws
  // FormatError naming the node and op on anything unsupported or malformed.
  Program(const Graph& g, const std::string& input, const std::vector<std::string>& outputs,
          const std::string& context, CompileOptions options = {});
  ~Program();
  Program(Program&&) noexcept;
  Program& operator=(Program&&) noexcept;

  // input: float32 [N, C, H, W] on the program's device. Thread-safe (no state
  // changes); returns one tensor per requested output, TensorFlow layout.
  // Records no gradients; a trainable program runs with its parameters'
  // current values.
  std::vector<torch::Tensor> run(const torch::Tensor& input_nchw) const;

  // As run, but recording autograd: a loss computed from the outputs can be
  // back-propagated to the parameters (and to the input if it requires grad).
  // Parameters reach the graph only in trainable programs; an inference
  // program's constants are plain (and may be fused) tensors.
  std::vector<torch::Tensor> forward(const torch::Tensor& input_nchw) const;

  // Trainable programs: (Const node name, leaf tensor) for every parameter the
  // outputs depend on, in graph order of first use. These are the tensors the
  // program computes with: an optimizer updating them (in place, as
  // torch::optim does) changes what run and forward compute. To freeze one,
  // call requires_grad_(false) on it (and leave it out of the optimizer).
  // Shapes and layout are the graph constants' (TensorFlow's HWIO filters,
  // [in, out] matrices), so nn::with_parameters can store them back.
  // Empty for inference programs.
  std::vector<std::pair<std::string, torch::Tensor>> parameters() const;
  // Trainable programs: (Const node name, tensor) of the batch-norm running
  // statistics (no gradients; forward() updates them in place). Stored back
  // with nn::with_parameters like the parameters.
  std::vector<std::pair<std::string, torch::Tensor>> buffers() const;
  bool trainable() const;

  // Stochastic routing for training switch style modulation (hfr-train
  // --ssm-noise): in forward() only (never in run()), each sample's expert is
  // the argmax of log p + sigma * g, g standard Gumbel noise per sample and
  // expert drawn from `seed` (and the block's node name): sigma 1 draws the
  // expert from the router's distribution p, 0 (the default) is the plain
  // top-1. The gate value stays p_k of the chosen expert, so gradients reach
  // the router as without noise. Set it before each step (the same seed gives
  // the same choices).
  void set_router_noise(double sigma, std::uint64_t seed);

  // Moves all constants to a device (cpu or cuda). Parameters stay leaves
  // (with their requires_grad) but are new tensors when the device changes:
  // take parameters() after to().
  void to(const torch::Device& device);
  const torch::Device& device() const;

  // Input shape from the Placeholder, NHWC; -1 where free.
  const std::vector<std::int64_t>& input_shape() const;
  std::size_t steps() const;  // executed nodes after fusion (tests)

  struct Impl;  // defined in graph.cpp

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace hfr::nn
