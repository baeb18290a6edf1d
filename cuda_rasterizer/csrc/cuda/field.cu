// Radiance-field kernels on the GPU: hash-grid encoding (one thread per sample and level; backward scatters with
// atomicAdd), occupancy-grid marching (one thread per ray: count, prefix sum, fill) and per-ray compositing.
// Math shared with the CPU kernels: ../field_math.h.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

#include "../field_math.h"
#include "field_api.h"

namespace sf_cuda_field {
namespace {

constexpr int kThreads = 256;

inline int blocks_for(int64_t n) { return int((n + kThreads - 1) / kThreads); }

void check_cuda(const Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda() && t.is_contiguous(), "field (CUDA): ", name, " must be a contiguous CUDA tensor");
}

template <typename S>
__global__ void encode_fwd_kernel(const S* x, const S* table, const int32_t* res, const int32_t* off, int64_t n,
                                  int levels, int feats, S* out) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n * levels) return;
  const int64_t i = idx / levels;
  const int l = int(idx % levels);
  uint32_t rows[8];
  S w[8];
  sf_field::level_corners(x + 3 * i, uint32_t(res[l]), uint32_t(off[l + 1] - off[l]), rows, w);
  const S* level = table + int64_t(off[l]) * feats;
  S* dst = out + i * levels * feats + l * feats;
  for (int f = 0; f < feats; ++f) {
    S acc = S(0);
    for (int c = 0; c < 8; ++c) acc += w[c] * level[int64_t(rows[c]) * feats + f];
    dst[f] = acc;
  }
}

template <typename S>
__global__ void encode_bwd_kernel(const S* x, const S* grad_out, const int32_t* res, const int32_t* off, int64_t n,
                                  int levels, int feats, S* grad) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n * levels) return;
  const int64_t i = idx / levels;
  const int l = int(idx % levels);
  uint32_t rows[8];
  S w[8];
  sf_field::level_corners(x + 3 * i, uint32_t(res[l]), uint32_t(off[l + 1] - off[l]), rows, w);
  S* level = grad + int64_t(off[l]) * feats;
  const S* g = grad_out + i * levels * feats + l * feats;
  for (int c = 0; c < 8; ++c)
    for (int f = 0; f < feats; ++f) atomicAdd(level + int64_t(rows[c]) * feats + f, w[c] * g[f]);
}

template <typename S>
__global__ void march_count_kernel(const S* o, const S* d, const S* a, const S* b, const S* jit, const S* params,
                                   const uint8_t* grid, sf_field::March<S> m, int64_t n, int64_t* counts) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  counts[i + 1] = sf_field::march_ray(o + 3 * i, d + 3 * i, a[i], b[i], jit[i], m, params, grid, [](S, S) {});
}

template <typename S>
__global__ void march_fill_kernel(const S* o, const S* d, const S* a, const S* b, const S* jit, const S* params,
                                  const uint8_t* grid, sf_field::March<S> m, int64_t n, const int64_t* offsets,
                                  S* ts, S* dts, int64_t* ids) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  int64_t k = offsets[i];
  sf_field::march_ray(o + 3 * i, d + 3 * i, a[i], b[i], jit[i], m, params, grid, [&](S tm, S dt) {
    ts[k] = tm;
    dts[k] = dt;
    ids[k] = i;
    ++k;
  });
}

template <typename S>
__global__ void composite_fwd_kernel(const S* sigma, const S* rgb, const S* t, const S* dt, const int64_t* off,
                                     int64_t n, S t_min, S* out_rgb, S* out_op, S* out_depth) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int64_t s = off[i];
  sf_field::composite_forward(sigma + s, rgb + 3 * s, t + s, dt + s, int(off[i + 1] - s), t_min, out_rgb + 3 * i,
                              out_op + i, out_depth + i);
}

template <typename S>
__global__ void composite_bwd_kernel(const S* sigma, const S* rgb, const S* t, const S* dt, const int64_t* off,
                                     int64_t n, S t_min, const S* out_rgb, const S* out_op, const S* out_depth,
                                     const S* v_rgb, const S* v_op, const S* v_depth, S* v_sigma, S* v_color) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int64_t s = off[i];
  sf_field::composite_backward(sigma + s, rgb + 3 * s, t + s, dt + s, int(off[i + 1] - s), t_min, out_rgb + 3 * i,
                               out_op[i], out_depth[i], v_rgb + 3 * i, v_op[i], v_depth[i], v_sigma + s,
                               v_color + 3 * s);
}

}  // namespace

Tensor hash_encode_fwd(Tensor x, Tensor table, Tensor res, Tensor offsets) {
  check_cuda(x, "x");
  check_cuda(table, "table");
  const c10::cuda::OptionalCUDAGuard guard(x.device());
  const int64_t n = x.size(0), levels = res.numel(), feats = table.size(1);
  auto r = res.to(x.device(), torch::kInt32).contiguous(), off = offsets.to(x.device(), torch::kInt32).contiguous();
  auto out = torch::empty({n, levels * feats}, x.options());
  if (n == 0) return out;
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hash_encode_fwd", [&] {
    encode_fwd_kernel<scalar_t><<<blocks_for(n * levels), kThreads, 0, stream>>>(
        x.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(), r.data_ptr<int32_t>(), off.data_ptr<int32_t>(), n,
        int(levels), int(feats), out.data_ptr<scalar_t>());
  });
  return out;
}

Tensor hash_encode_bwd(Tensor x, Tensor grad_out, Tensor res, Tensor offsets, int64_t rows) {
  check_cuda(x, "x");
  check_cuda(grad_out, "grad_out");
  const c10::cuda::OptionalCUDAGuard guard(x.device());
  const int64_t n = x.size(0), levels = res.numel(), feats = grad_out.size(1) / levels;
  auto r = res.to(x.device(), torch::kInt32).contiguous(), off = offsets.to(x.device(), torch::kInt32).contiguous();
  auto grad = torch::zeros({rows, feats}, x.options());
  if (n == 0) return grad;
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hash_encode_bwd", [&] {
    encode_bwd_kernel<scalar_t><<<blocks_for(n * levels), kThreads, 0, stream>>>(
        x.data_ptr<scalar_t>(), grad_out.data_ptr<scalar_t>(), r.data_ptr<int32_t>(), off.data_ptr<int32_t>(), n,
        int(levels), int(feats), grad.data_ptr<scalar_t>());
  });
  return grad;
}

std::vector<Tensor> march(Tensor rays_o, Tensor rays_d, Tensor t0, Tensor t1, Tensor jitter, Tensor grid,
                          Tensor params, int64_t mode, double dt_min, double dt_max, double cone,
                          int64_t max_samples) {
  for (auto* t : {&rays_o, &rays_d, &t0, &t1, &jitter, &grid, &params}) check_cuda(*t, "march input");
  TORCH_CHECK(grid.dtype() == torch::kUInt8 && grid.dim() == 3, "march: grid must be uint8 (G, G, G)");
  const c10::cuda::OptionalCUDAGuard guard(rays_o.device());
  const int64_t n = rays_o.size(0);
  auto counts = torch::zeros({n + 1}, rays_o.options().dtype(torch::kInt64));
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  std::vector<Tensor> result;
  AT_DISPATCH_FLOATING_TYPES(rays_o.scalar_type(), "march", [&] {
    using S = scalar_t;
    const sf_field::March<S> m{S(dt_min), S(dt_max), S(cone), int(mode), int(grid.size(0)), int(max_samples)};
    if (n > 0)
      march_count_kernel<S><<<blocks_for(n), kThreads, 0, stream>>>(
          rays_o.data_ptr<S>(), rays_d.data_ptr<S>(), t0.data_ptr<S>(), t1.data_ptr<S>(), jitter.data_ptr<S>(),
          params.data_ptr<S>(), grid.data_ptr<uint8_t>(), m, n, counts.data_ptr<int64_t>());
    auto offsets = counts.cumsum(0);
    const int64_t total = offsets[n].item<int64_t>();
    auto ts = torch::empty({total}, rays_o.options());
    auto dts = torch::empty({total}, rays_o.options());
    auto ids = torch::empty({total}, counts.options());
    if (n > 0 && total > 0)
      march_fill_kernel<S><<<blocks_for(n), kThreads, 0, stream>>>(
          rays_o.data_ptr<S>(), rays_d.data_ptr<S>(), t0.data_ptr<S>(), t1.data_ptr<S>(), jitter.data_ptr<S>(),
          params.data_ptr<S>(), grid.data_ptr<uint8_t>(), m, n, offsets.data_ptr<int64_t>(), ts.data_ptr<S>(),
          dts.data_ptr<S>(), ids.data_ptr<int64_t>());
    result = {offsets, ts, dts, ids};
  });
  return result;
}

std::vector<Tensor> composite_fwd(Tensor sigma, Tensor rgb, Tensor t, Tensor dt, Tensor offsets, double t_min) {
  for (auto* x : {&sigma, &rgb, &t, &dt, &offsets}) check_cuda(*x, "composite input");
  const c10::cuda::OptionalCUDAGuard guard(sigma.device());
  const int64_t n = offsets.numel() - 1;
  auto out_rgb = torch::empty({n, 3}, sigma.options());
  auto out_op = torch::empty({n}, sigma.options());
  auto out_depth = torch::empty({n}, sigma.options());
  if (n == 0) return {out_rgb, out_op, out_depth};
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(sigma.scalar_type(), "composite_fwd", [&] {
    using S = scalar_t;
    composite_fwd_kernel<S><<<blocks_for(n), kThreads, 0, stream>>>(
        sigma.data_ptr<S>(), rgb.data_ptr<S>(), t.data_ptr<S>(), dt.data_ptr<S>(), offsets.data_ptr<int64_t>(), n,
        S(t_min), out_rgb.data_ptr<S>(), out_op.data_ptr<S>(), out_depth.data_ptr<S>());
  });
  return {out_rgb, out_op, out_depth};
}

std::vector<Tensor> composite_bwd(Tensor sigma, Tensor rgb, Tensor t, Tensor dt, Tensor offsets, double t_min,
                                  Tensor out_rgb, Tensor out_opacity, Tensor out_depth, Tensor v_rgb,
                                  Tensor v_opacity, Tensor v_depth) {
  for (auto* x : {&sigma, &rgb, &t, &dt, &offsets, &v_rgb, &v_opacity, &v_depth}) check_cuda(*x, "composite_bwd input");
  const c10::cuda::OptionalCUDAGuard guard(sigma.device());
  const int64_t n = offsets.numel() - 1;
  auto v_sigma = torch::zeros_like(sigma);
  auto v_color = torch::zeros_like(rgb);
  if (n == 0) return {v_sigma, v_color};
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(sigma.scalar_type(), "composite_bwd", [&] {
    using S = scalar_t;
    composite_bwd_kernel<S><<<blocks_for(n), kThreads, 0, stream>>>(
        sigma.data_ptr<S>(), rgb.data_ptr<S>(), t.data_ptr<S>(), dt.data_ptr<S>(), offsets.data_ptr<int64_t>(), n,
        S(t_min), out_rgb.data_ptr<S>(), out_opacity.data_ptr<S>(), out_depth.data_ptr<S>(), v_rgb.data_ptr<S>(),
        v_opacity.data_ptr<S>(), v_depth.data_ptr<S>(), v_sigma.data_ptr<S>(), v_color.data_ptr<S>());
  });
  return {v_sigma, v_color};
}

}  // namespace sf_cuda_field
