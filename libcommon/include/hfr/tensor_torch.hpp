// Conversion between hfr tensor files and LibTorch tensors, without extra
// copies where possible. Only tools that run networks link this module.
#pragma once
#include <string>

#include <torch/types.h>

#include "hfr/tensorfile.hpp"

namespace hfr {

torch::ScalarType to_torch_dtype(DType t);
DType from_torch_dtype(torch::ScalarType t);  // throws Error for unsupported types

// A CPU torch tensor that shares the hfr::Tensor's memory (no copy); the
// buffer is kept alive by the torch tensor.
torch::Tensor to_torch(const Tensor& t);

// Decodes a tensor straight into torch-owned memory (seekable files).
torch::Tensor read_torch(TensorReader& reader, const std::string& name);

// Writes a torch tensor (any device; non-contiguous tensors are made
// contiguous, CUDA tensors copied to the host once).
void write_torch(TensorWriter& writer, const std::string& name, const torch::Tensor& t);

// glibc malloc tuned for network inference: large blocks are not mmap'ed and
// freed memory is not trimmed back to the OS after every batch (LibTorch
// allocates and frees the same large activations for every call; with the
// defaults each one costs page faults). Measured 1.2-1.6x faster forward
// passes here (bench/results-embed.md). Call once at start-up.
void tune_allocator();

// Sets LibTorch's intra-op threads (the --threads option).
void set_torch_threads(int threads);

// Parses --device into a torch device; throws Error if CUDA is asked for but
// this build or machine has none.
torch::Device torch_device(const std::string& device);

}  // namespace hfr
