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

// Sets LibTorch's intra-op threads (the --threads option).
void set_torch_threads(int threads);

// Parses --device into a torch device; throws Error if CUDA is asked for but
// this build or machine has none.
torch::Device torch_device(const std::string& device);

}  // namespace hfr
