#include "hfr/tensor_torch.hpp"

#include <malloc.h>

#include <cstdlib>

#include <torch/torch.h>

#include "hfr/error.hpp"

namespace hfr {

torch::ScalarType to_torch_dtype(DType t) {
  switch (t) {
    case DType::f32: return torch::kFloat32;
    case DType::f16: return torch::kFloat16;
    case DType::bf16: return torch::kBFloat16;
    case DType::u8: return torch::kUInt8;
    case DType::i32: return torch::kInt32;
    case DType::i64: return torch::kInt64;
  }
  throw Error("unknown dtype");
}

DType from_torch_dtype(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return DType::f32;
    case torch::kFloat16: return DType::f16;
    case torch::kBFloat16: return DType::bf16;
    case torch::kUInt8: return DType::u8;
    case torch::kInt32: return DType::i32;
    case torch::kInt64: return DType::i64;
    default: throw Error(std::string("torch dtype ") + c10::toString(t) + " cannot be stored in a tensor file");
  }
}

torch::Tensor to_torch(const Tensor& t) {
  auto keep = t.data;  // shared ownership travels with the torch tensor
  std::vector<int64_t> shape(t.info.shape.begin(), t.info.shape.end());
  auto opts = torch::TensorOptions().dtype(to_torch_dtype(t.info.dtype));
  if (!keep || keep->empty()) return torch::empty(shape, opts);
  return torch::from_blob(keep->data(), shape, [keep](void*) mutable { keep.reset(); }, opts);
}

torch::Tensor read_torch(TensorReader& reader, const std::string& name) {
  const TensorInfo& ti = reader.info(name);
  std::vector<int64_t> shape(ti.shape.begin(), ti.shape.end());
  torch::Tensor out = torch::empty(shape, torch::TensorOptions().dtype(to_torch_dtype(ti.dtype)));
  reader.read_into(name, out.data_ptr(), ti.nbytes());
  return out;
}

void write_torch(TensorWriter& writer, const std::string& name, const torch::Tensor& t) {
  DType dt = from_torch_dtype(t.scalar_type());
  torch::Tensor c = t.device().is_cpu() ? t.contiguous() : t.to(torch::kCPU).contiguous();
  Shape shape(c.sizes().begin(), c.sizes().end());
  writer.write(name, dt, shape, c.data_ptr());
}

void tune_allocator() {
  if (std::getenv("HFR_MALLOC_DEFAULTS")) return;  // for measuring the effect
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
}

void set_torch_threads(int threads) {
  if (threads > 0) torch::set_num_threads(threads);
}

torch::Device torch_device(const std::string& device) {
  if (device == "cpu") return torch::kCPU;
  if (!torch::cuda::is_available())
    throw Error("--device " + device + ": CUDA is not available (this LibTorch build or machine has no GPU); use --device cpu");
  // Full float32 on the GPU: TF32 (allowed by default for cuDNN convolutions on
  // Ampere and later) changes embeddings by ~1e-3, beyond the fidelity hfr
  // promises against the original runtime.
  at::globalContext().setAllowTF32CuDNN(false);
  at::globalContext().setAllowTF32CuBLAS(false);
  torch::Device d(device);
  if (d.has_index() && d.index() >= static_cast<int>(torch::cuda::device_count()))
    throw Error("--device " + device + ": no such GPU (" + std::to_string(torch::cuda::device_count()) + " found)");
  return d;
}

}  // namespace hfr
