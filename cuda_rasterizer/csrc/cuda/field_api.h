// Radiance-field kernels on the GPU (field.cu), bound by field_bindings.cpp as the splatforge_cuda_field module.
// Same signatures as ../cpu/field_api.h without the thread counts.
#pragma once

#include <torch/extension.h>

#include <vector>

namespace sf_cuda_field {

using torch::Tensor;

Tensor hash_encode_fwd(Tensor x, Tensor table, Tensor res, Tensor offsets);
Tensor hash_encode_bwd(Tensor x, Tensor grad_out, Tensor res, Tensor offsets, int64_t rows);
std::vector<Tensor> march(Tensor rays_o, Tensor rays_d, Tensor t0, Tensor t1, Tensor jitter, Tensor grid,
                          Tensor params, int64_t mode, double dt_min, double dt_max, double cone,
                          int64_t max_samples);
std::vector<Tensor> composite_fwd(Tensor sigma, Tensor rgb, Tensor t, Tensor dt, Tensor offsets, double t_min);
std::vector<Tensor> composite_bwd(Tensor sigma, Tensor rgb, Tensor t, Tensor dt, Tensor offsets, double t_min,
                                  Tensor out_rgb, Tensor out_opacity, Tensor out_depth, Tensor v_rgb,
                                  Tensor v_opacity, Tensor v_depth);

}  // namespace sf_cuda_field
