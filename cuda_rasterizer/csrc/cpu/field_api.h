// Radiance-field kernels on the CPU (field.cpp), bound by field_bindings.cpp as the splatforge_cpu_field module.
#pragma once

#include <torch/extension.h>

#include <vector>

namespace sf_cpu_field {

using torch::Tensor;

Tensor hash_encode_fwd(Tensor x, Tensor table, Tensor res, Tensor offsets, int64_t nthreads);
Tensor hash_encode_bwd(Tensor x, Tensor grad_out, Tensor res, Tensor offsets, int64_t rows, int64_t nthreads);
std::vector<Tensor> march(Tensor rays_o, Tensor rays_d, Tensor t0, Tensor t1, Tensor jitter, Tensor grid,
                          Tensor params, int64_t mode, double dt_min, double dt_max, double cone,
                          int64_t max_samples, int64_t nthreads);
std::vector<Tensor> composite_fwd(Tensor sigma, Tensor rgb, Tensor t, Tensor dt, Tensor offsets, double t_min,
                                  int64_t nthreads);
std::vector<Tensor> composite_bwd(Tensor sigma, Tensor rgb, Tensor t, Tensor dt, Tensor offsets, double t_min,
                                  Tensor out_rgb, Tensor out_opacity, Tensor out_depth, Tensor v_rgb,
                                  Tensor v_opacity, Tensor v_depth, int64_t nthreads);

}  // namespace sf_cpu_field
