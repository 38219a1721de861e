// NumPy .npy files (format 1.0/2.0/3.0, little-endian, C order) for exchange
// with Python. bf16 has no NumPy dtype: it is exported as float32.
#pragma once
#include <string>

#include "hfr/io.hpp"
#include "hfr/tensorfile.hpp"

namespace hfr {

void write_npy(io::Output& out, const TensorInfo& info, const void* data);
// Strictly validated: header size, dtype ('<f4','<f2','|u1','<i4','<i8'),
// fortran_order False, shape × itemsize equal to the data size.
Tensor read_npy(io::Input& in, const std::string& name, const TensorFileLimits& limits = {});

}  // namespace hfr
