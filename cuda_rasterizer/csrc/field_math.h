// Radiance-field math shared by the CPU (g++) and CUDA (nvcc) field kernels: multi-resolution hash-grid
// encoding (instant-ngp), the point mapping into the unit cube (box normalisation or mip-NeRF 360 contraction),
// occupancy-grid ray marching and front-to-back volume compositing with its gradient.
// The PyTorch oracle of the same math is cuda_rasterizer/field_ops.py (reference_*).
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define SFF_HD __host__ __device__ __forceinline__
#else
#define SFF_HD inline
#endif

namespace sf_field {

constexpr uint32_t kPrime1 = 2654435761u;
constexpr uint32_t kPrime2 = 805459861u;

// Row of grid corner (i, j, k) within one level's table of `size` rows: dense (row-major over (res + 1)^3
// corners) when that fits, else the instant-ngp spatial hash.
SFF_HD uint32_t corner_row(uint32_t i, uint32_t j, uint32_t k, uint32_t res, uint32_t size) {
  const uint64_t side = uint64_t(res) + 1;
  if (side * side * side <= size) return uint32_t(i + side * (j + side * k));
  const uint32_t h = i ^ (j * kPrime1) ^ (k * kPrime2);
  return (size & (size - 1)) == 0 ? (h & (size - 1)) : h % size;  // hashed levels are powers of two
}

// The 8 trilinear corners of unit-cube point x at a level of resolution `res`: table rows and weights.
template <typename S>
SFF_HD void level_corners(const S* x, uint32_t res, uint32_t size, uint32_t rows[8], S weights[8]) {
  uint32_t cell[3];
  S frac[3];
  for (int d = 0; d < 3; ++d) {
    S p = x[d] * S(res);
    p = p < S(0) ? S(0) : (p > S(res) ? S(res) : p);
    uint32_t c = uint32_t(floor(p));
    if (c >= res) c = res - 1;
    cell[d] = c;
    frac[d] = p - S(c);
  }
  for (int c = 0; c < 8; ++c) {
    const uint32_t bx = c & 1, by = (c >> 1) & 1, bz = (c >> 2) & 1;
    weights[c] = (bx ? frac[0] : S(1) - frac[0]) * (by ? frac[1] : S(1) - frac[1]) * (bz ? frac[2] : S(1) - frac[2]);
    rows[c] = corner_row(cell[0] + bx, cell[1] + by, cell[2] + bz, res, size);
  }
}

// Point p (world) -> unit cube. mode 0: box [params[0..2], params[3..5]]; mode 1: mip-NeRF 360 contraction of
// (p - params[0..2]) / params[3] (|x| <= 1 kept, else (2 - 1/|x|) x / |x|), the radius-2 ball mapped to [0, 1]^3.
// Returns false outside the cube (box mode only; the contraction covers all of space).
template <typename S>
SFF_HD bool map_point(const S* p, int mode, const S* params, S* out) {
  if (mode == 0) {
    bool inside = true;
    for (int d = 0; d < 3; ++d) {
      out[d] = (p[d] - params[d]) / (params[3 + d] - params[d]);
      inside = inside && out[d] >= S(0) && out[d] <= S(1);
    }
    return inside;
  }
  S q[3];
  S n2 = S(0);
  for (int d = 0; d < 3; ++d) {
    q[d] = (p[d] - params[d]) / params[3];
    n2 += q[d] * q[d];
  }
  S scale = S(1);
  if (n2 > S(1)) {
    const S n = sqrt(n2);
    scale = (S(2) - S(1) / n) / n;
  }
  for (int d = 0; d < 3; ++d) out[d] = (q[d] * scale + S(2)) * S(0.25);
  return true;
}

// Whether unit-cube point u falls in an occupied cell of the grid (res^3 bytes, x fastest).
template <typename S>
SFF_HD bool occupied(const S* u, const uint8_t* grid, int res) {
  int c[3];
  for (int d = 0; d < 3; ++d) {
    int v = int(floor(u[d] * S(res)));
    c[d] = v < 0 ? 0 : (v >= res ? res - 1 : v);
  }
  return grid[c[0] + res * (c[1] + res * c[2])] != 0;
}

// Marching parameters: step dt = clamp(t * cone, dt_min, dt_max) (cone 0: uniform steps of dt_min).
template <typename S>
struct March {
  S dt_min, dt_max, cone;
  int mode;
  int grid_res;
  int max_samples;
};

template <typename S>
SFF_HD S step_at(const March<S>& m, S t) {
  S dt = t * m.cone;
  return dt < m.dt_min ? m.dt_min : (dt > m.dt_max ? m.dt_max : dt);
}

// Walks one ray from t0 (+ jitter of one step) to t1; emits each sample whose midpoint maps into an occupied
// cell. `emit(t_mid, dt)` is called in order; returns the number emitted (at most m.max_samples).
template <typename S, typename Emit>
SFF_HD int march_ray(const S* o, const S* d, S t0, S t1, S jitter, const March<S>& m, const S* params,
                     const uint8_t* grid, Emit emit) {
  int count = 0;
  S t = t0 + jitter * step_at(m, t0);
  while (t < t1 && count < m.max_samples) {
    S dt = step_at(m, t);
    if (t + dt > t1) dt = t1 - t;
    const S tm = t + S(0.5) * dt;
    S p[3], u[3];
    for (int k = 0; k < 3; ++k) p[k] = o[k] + tm * d[k];
    if (map_point(p, m.mode, params, u) && occupied(u, grid, m.grid_res)) {
      emit(tm, dt);
      ++count;
    }
    t += dt;
  }
  return count;
}

// Front-to-back compositing of one ray's n samples (density sigma, colour rgb (n, 3), midpoint t, length dt):
// alpha_i = 1 - exp(-sigma_i dt_i), w_i = T_i alpha_i, T_{i+1} = T_i (1 - alpha_i); stops once T < t_min.
// Outputs colour sum w c, opacity sum w, depth sum w t; returns the number of samples used.
template <typename S>
SFF_HD int composite_forward(const S* sigma, const S* rgb, const S* t, const S* dt, int n, S t_min, S* out_rgb,
                             S* out_opacity, S* out_depth) {
  S trans = S(1), r = S(0), g = S(0), b = S(0), op = S(0), dep = S(0);
  int used = 0;
  for (int i = 0; i < n && trans > t_min; ++i) {
    const S alpha = S(1) - exp(-sigma[i] * dt[i]);
    const S w = trans * alpha;
    r += w * rgb[3 * i];
    g += w * rgb[3 * i + 1];
    b += w * rgb[3 * i + 2];
    op += w;
    dep += w * t[i];
    trans *= S(1) - alpha;
    used = i + 1;
  }
  out_rgb[0] = r;
  out_rgb[1] = g;
  out_rgb[2] = b;
  *out_opacity = op;
  *out_depth = dep;
  return used;
}

// Gradient of composite_forward given the upstream gradients of its outputs and the outputs themselves:
// with g_i = v_rgb . c_i + v_opacity + v_depth t_i,
//   d/dc_i = w_i v_rgb,   d/dsigma_i = dt_i (T_{i+1} g_i - sum_{k > i} w_k g_k).
template <typename S>
SFF_HD void composite_backward(const S* sigma, const S* rgb, const S* t, const S* dt, int n, S t_min,
                               const S* out_rgb, S out_opacity, S out_depth, const S* v_rgb, S v_opacity, S v_depth,
                               S* v_sigma, S* v_color) {
  const S total = v_rgb[0] * out_rgb[0] + v_rgb[1] * out_rgb[1] + v_rgb[2] * out_rgb[2] + v_opacity * out_opacity +
                  v_depth * out_depth;
  S trans = S(1), prefix = S(0);
  int i = 0;
  for (; i < n && trans > t_min; ++i) {
    const S alpha = S(1) - exp(-sigma[i] * dt[i]);
    const S w = trans * alpha;
    const S gi = v_rgb[0] * rgb[3 * i] + v_rgb[1] * rgb[3 * i + 1] + v_rgb[2] * rgb[3 * i + 2] + v_opacity +
                 v_depth * t[i];
    prefix += w * gi;
    trans *= S(1) - alpha;
    v_sigma[i] = dt[i] * (trans * gi - (total - prefix));
    v_color[3 * i] = w * v_rgb[0];
    v_color[3 * i + 1] = w * v_rgb[1];
    v_color[3 * i + 2] = w * v_rgb[2];
  }
  for (; i < n; ++i) {
    v_sigma[i] = S(0);
    v_color[3 * i] = v_color[3 * i + 1] = v_color[3 * i + 2] = S(0);
  }
}

}  // namespace sf_field
