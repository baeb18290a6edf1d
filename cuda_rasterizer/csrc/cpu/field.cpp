// Radiance-field kernels on the CPU: hash-grid encoding (OpenMP over samples forward, over levels backward so
// every level's table rows are written by one thread: no atomics, deterministic), occupancy-grid marching (two
// passes over rays: count, then fill) and per-ray volume compositing. Math: ../field_math.h.
#include <omp.h>

#include <algorithm>

#include "../field_math.h"
#include "field_api.h"

namespace sf_cpu_field {
namespace {

void check_levels(const Tensor& res, const Tensor& offsets) {
  TORCH_CHECK(res.dtype() == torch::kInt32 && offsets.dtype() == torch::kInt32, "hash_encode: res and offsets must be int32");
  TORCH_CHECK(offsets.numel() == res.numel() + 1, "hash_encode: offsets must have one more entry than res");
}

void check_x(const Tensor& x) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == 3 && x.is_contiguous(), "hash_encode: x must be contiguous (N, 3)");
}

}  // namespace

Tensor hash_encode_fwd(Tensor x, Tensor table, Tensor res, Tensor offsets, int64_t nthreads) {
  check_x(x);
  check_levels(res, offsets);
  TORCH_CHECK(table.dim() == 2 && table.is_contiguous() && table.scalar_type() == x.scalar_type(),
              "hash_encode: table must be contiguous (rows, F) of x's dtype");
  const int64_t n = x.size(0), levels = res.numel(), feats = table.size(1);
  auto out = torch::empty({n, levels * feats}, x.options());
  const int32_t* r = res.data_ptr<int32_t>();
  const int32_t* off = offsets.data_ptr<int32_t>();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hash_encode_fwd", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* tp = table.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    // Level-major: one level's table stays in cache while every sample reads it (as the backward pass).
    const int64_t chunk = 4096;
    const int64_t chunks = (n + chunk - 1) / chunk;
_Pragma("omp parallel for schedule(dynamic, 1) collapse(2) num_threads(nthreads)")
    for (int64_t l = 0; l < levels; ++l) {
      for (int64_t b = 0; b < chunks; ++b) {
        uint32_t rows[8];
        scalar_t w[8];
        const scalar_t* level = tp + int64_t(off[l]) * feats;
        const uint32_t size = uint32_t(off[l + 1] - off[l]);
        const int64_t end = std::min(n, (b + 1) * chunk);
        for (int64_t i = b * chunk; i < end; ++i) {
          sf_field::level_corners(xp + 3 * i, uint32_t(r[l]), size, rows, w);
          scalar_t* dst = op + i * levels * feats + l * feats;
          if (feats == 2) {
            scalar_t a0 = 0, a1 = 0;
            for (int c = 0; c < 8; ++c) {
              const scalar_t* row = level + int64_t(rows[c]) * 2;
              a0 += w[c] * row[0];
              a1 += w[c] * row[1];
            }
            dst[0] = a0;
            dst[1] = a1;
            continue;
          }
          for (int64_t f = 0; f < feats; ++f) dst[f] = scalar_t(0);
          for (int c = 0; c < 8; ++c) {
            const scalar_t* row = level + int64_t(rows[c]) * feats;
            for (int64_t f = 0; f < feats; ++f) dst[f] += w[c] * row[f];
          }
        }
      }
    }
  });
  return out;
}

Tensor hash_encode_bwd(Tensor x, Tensor grad_out, Tensor res, Tensor offsets, int64_t rows_total, int64_t nthreads) {
  check_x(x);
  check_levels(res, offsets);
  const int64_t n = x.size(0), levels = res.numel();
  TORCH_CHECK(grad_out.is_contiguous() && grad_out.size(0) == n && grad_out.size(1) % levels == 0,
              "hash_encode_bwd: grad_out must be contiguous (N, L*F)");
  const int64_t feats = grad_out.size(1) / levels;
  auto grad = torch::zeros({rows_total, feats}, x.options());
  const int32_t* r = res.data_ptr<int32_t>();
  const int32_t* off = offsets.data_ptr<int32_t>();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hash_encode_bwd", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* gp = grad_out.data_ptr<scalar_t>();
    scalar_t* tp = grad.data_ptr<scalar_t>();
_Pragma("omp parallel for schedule(dynamic, 1) num_threads(nthreads)")
    for (int64_t l = 0; l < levels; ++l) {
      uint32_t rows[8];
      scalar_t w[8];
      scalar_t* level = tp + int64_t(off[l]) * feats;
      const uint32_t size = uint32_t(off[l + 1] - off[l]);
      for (int64_t i = 0; i < n; ++i) {
        sf_field::level_corners(xp + 3 * i, uint32_t(r[l]), size, rows, w);
        const scalar_t* g = gp + i * levels * feats + l * feats;
        if (feats == 2) {
          const scalar_t g0 = g[0], g1 = g[1];
          for (int c = 0; c < 8; ++c) {
            scalar_t* row = level + int64_t(rows[c]) * 2;
            row[0] += w[c] * g0;
            row[1] += w[c] * g1;
          }
          continue;
        }
        for (int c = 0; c < 8; ++c) {
          scalar_t* row = level + int64_t(rows[c]) * feats;
          for (int64_t f = 0; f < feats; ++f) row[f] += w[c] * g[f];
        }
      }
    }
  });
  return grad;
}

std::vector<Tensor> march(Tensor rays_o, Tensor rays_d, Tensor t0, Tensor t1, Tensor jitter, Tensor grid,
                          Tensor params, int64_t mode, double dt_min, double dt_max, double cone,
                          int64_t max_samples, int64_t nthreads) {
  TORCH_CHECK(rays_o.dim() == 2 && rays_o.size(1) == 3 && rays_o.sizes() == rays_d.sizes(), "march: rays must be (R, 3)");
  TORCH_CHECK(grid.dtype() == torch::kUInt8 && grid.dim() == 3 && grid.is_contiguous(), "march: grid must be uint8 (G, G, G)");
  const int64_t n = rays_o.size(0);
  const int res = int(grid.size(0));
  auto counts = torch::zeros({n + 1}, rays_o.options().dtype(torch::kInt64));
  std::vector<Tensor> result;
  AT_DISPATCH_FLOATING_TYPES(rays_o.scalar_type(), "march", [&] {
    using S = scalar_t;
    const S *o = rays_o.data_ptr<S>(), *d = rays_d.data_ptr<S>(), *a = t0.data_ptr<S>(), *b = t1.data_ptr<S>();
    const S *jit = jitter.data_ptr<S>(), *pr = params.data_ptr<S>();
    const uint8_t* g = grid.data_ptr<uint8_t>();
    const sf_field::March<S> m{S(dt_min), S(dt_max), S(cone), int(mode), res, int(max_samples)};
    int64_t* cnt = counts.data_ptr<int64_t>();
_Pragma("omp parallel for schedule(dynamic, 64) num_threads(nthreads)")
    for (int64_t i = 0; i < n; ++i)
      cnt[i + 1] = sf_field::march_ray(o + 3 * i, d + 3 * i, a[i], b[i], jit[i], m, pr, g, [](S, S) {});
    auto offsets = counts.cumsum(0);
    const int64_t total = offsets[n].item<int64_t>();
    auto ts = torch::empty({total}, rays_o.options());
    auto dts = torch::empty({total}, rays_o.options());
    auto ids = torch::empty({total}, counts.options());
    const int64_t* op = offsets.data_ptr<int64_t>();
    S *tp = ts.data_ptr<S>(), *dp = dts.data_ptr<S>();
    int64_t* ip = ids.data_ptr<int64_t>();
_Pragma("omp parallel for schedule(dynamic, 64) num_threads(nthreads)")
    for (int64_t i = 0; i < n; ++i) {
      int64_t k = op[i];
      sf_field::march_ray(o + 3 * i, d + 3 * i, a[i], b[i], jit[i], m, pr, g, [&](S tm, S dt) {
        tp[k] = tm;
        dp[k] = dt;
        ip[k] = i;
        ++k;
      });
    }
    result = {offsets, ts, dts, ids};
  });
  return result;
}

std::vector<Tensor> composite_fwd(Tensor sigma, Tensor rgb, Tensor t, Tensor dt, Tensor offsets, double t_min,
                                  int64_t nthreads) {
  TORCH_CHECK(offsets.dtype() == torch::kInt64, "composite: offsets must be int64");
  TORCH_CHECK(sigma.is_contiguous() && rgb.is_contiguous() && t.is_contiguous() && dt.is_contiguous(), "composite: inputs must be contiguous");
  const int64_t n = offsets.numel() - 1;
  auto out_rgb = torch::empty({n, 3}, sigma.options());
  auto out_op = torch::empty({n}, sigma.options());
  auto out_depth = torch::empty({n}, sigma.options());
  AT_DISPATCH_FLOATING_TYPES(sigma.scalar_type(), "composite_fwd", [&] {
    using S = scalar_t;
    const S *sp = sigma.data_ptr<S>(), *cp = rgb.data_ptr<S>(), *tp = t.data_ptr<S>(), *dp = dt.data_ptr<S>();
    const int64_t* off = offsets.data_ptr<int64_t>();
    S *orgb = out_rgb.data_ptr<S>(), *oop = out_op.data_ptr<S>(), *odep = out_depth.data_ptr<S>();
_Pragma("omp parallel for schedule(dynamic, 64) num_threads(nthreads)")
    for (int64_t i = 0; i < n; ++i) {
      const int64_t s = off[i];
      sf_field::composite_forward(sp + s, cp + 3 * s, tp + s, dp + s, int(off[i + 1] - s), S(t_min), orgb + 3 * i,
                                  oop + i, odep + i);
    }
  });
  return {out_rgb, out_op, out_depth};
}

std::vector<Tensor> composite_bwd(Tensor sigma, Tensor rgb, Tensor t, Tensor dt, Tensor offsets, double t_min,
                                  Tensor out_rgb, Tensor out_opacity, Tensor out_depth, Tensor v_rgb,
                                  Tensor v_opacity, Tensor v_depth, int64_t nthreads) {
  const int64_t n = offsets.numel() - 1;
  auto v_sigma = torch::empty_like(sigma);
  auto v_color = torch::empty_like(rgb);
  AT_DISPATCH_FLOATING_TYPES(sigma.scalar_type(), "composite_bwd", [&] {
    using S = scalar_t;
    const S *sp = sigma.data_ptr<S>(), *cp = rgb.data_ptr<S>(), *tp = t.data_ptr<S>(), *dp = dt.data_ptr<S>();
    const S *orgb = out_rgb.data_ptr<S>(), *oop = out_opacity.data_ptr<S>(), *odep = out_depth.data_ptr<S>();
    const S *vr = v_rgb.data_ptr<S>(), *vo = v_opacity.data_ptr<S>(), *vd = v_depth.data_ptr<S>();
    const int64_t* off = offsets.data_ptr<int64_t>();
    S *vs = v_sigma.data_ptr<S>(), *vc = v_color.data_ptr<S>();
_Pragma("omp parallel for schedule(dynamic, 64) num_threads(nthreads)")
    for (int64_t i = 0; i < n; ++i) {
      const int64_t s = off[i];
      sf_field::composite_backward(sp + s, cp + 3 * s, tp + s, dp + s, int(off[i + 1] - s), S(t_min), orgb + 3 * i,
                                   oop[i], odep[i], vr + 3 * i, vo[i], vd[i], vs + s, vc + 3 * s);
    }
  });
  return {v_sigma, v_color};
}

}  // namespace sf_cpu_field
