// CUDA rasterisation (Inria/gsplat structure): tile counts + prefix sum, duplicate with (tile | depth) keys,
// stable radix sort, tile ranges, shared-memory batches per 16x16 tile with block-level early exit, and a backward
// pass that walks back from each pixel's last contributor. Blend kernels are templated on the footprint type.
#include <cub/cub.cuh>

#include "api.h"

namespace sf_cuda {
namespace {

constexpr int kBlock = kTile * kTile;

__device__ inline bool pixel_span(float m, int32_t r, int size, int& lo, int& hi) {
  lo = max(int(ceilf(m - float(r) - 0.5f)), 0);
  hi = min(int(floorf(m + float(r) - 0.5f)), size - 1);
  return lo <= hi;
}

__device__ inline bool tile_rect(const float* m2d, const int32_t* radii, int64_t i, int w, int h, int r[4]) {
  if (radii[2 * i] <= 0 || radii[2 * i + 1] <= 0) return false;
  int x0, x1, y0, y1;
  if (!pixel_span(m2d[2 * i], radii[2 * i], w, x0, x1) || !pixel_span(m2d[2 * i + 1], radii[2 * i + 1], h, y0, y1))
    return false;
  r[0] = x0 / kTile; r[1] = x1 / kTile; r[2] = y0 / kTile; r[3] = y1 / kTile;
  return true;
}

// Order-preserving 32-bit key of a float depth (negative depths sort first; -0 ties +0), as the CPU radix sort.
__device__ inline uint32_t depth_key(float d) {
  const uint32_t b = __float_as_uint(d == 0.f ? 0.f : d);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__global__ void count_k(const float* m2d, const int32_t* radii, int64_t n, int w, int h, int32_t* counts) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  int r[4];
  counts[i] = tile_rect(m2d, radii, i, w, h, r) ? (r[1] - r[0] + 1) * (r[3] - r[2] + 1) : 0;
}

__global__ void duplicate_k(const float* m2d, const int32_t* radii, const float* depths, const int32_t* offsets,
                            int64_t n, int w, int h, int tiles_x, int64_t* keys, int32_t* ids) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  int r[4];
  if (!tile_rect(m2d, radii, i, w, h, r)) return;
  int64_t e = i == 0 ? 0 : offsets[i - 1];
  const uint32_t dbits = depth_key(depths[i]);
  for (int y = r[2]; y <= r[3]; ++y)
    for (int x = r[0]; x <= r[1]; ++x) {
      keys[e] = (int64_t(y * tiles_x + x) << 32) | int64_t(dbits);
      ids[e] = int32_t(i);
      ++e;
    }
}

__global__ void ranges_k(const int64_t* keys, int64_t m, int32_t* ranges) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= m) return;
  const int32_t tile = int32_t(keys[e] >> 32);
  if (e == 0) ranges[2 * tile] = 0;
  else {
    const int32_t prev = int32_t(keys[e - 1] >> 32);
    if (prev != tile) {
      ranges[2 * prev + 1] = int32_t(e);
      ranges[2 * tile] = int32_t(e);
    }
  }
  if (e == m - 1) ranges[2 * tile + 1] = int32_t(m);
}

// Forward blend. CC > 0: compile-time channel count, the batch's colours staged in shared memory and the
// accumulators in registers; CC == 0: `C_rt` channels read from global memory.
template <typename FP, int CC>
__global__ void __launch_bounds__(kBlock)
    render_fwd_k(const int32_t* __restrict__ ranges, const int32_t* __restrict__ ids, const float* __restrict__ m2d,
                 const float* __restrict__ fp_params, const float* __restrict__ colors,
                 const float* __restrict__ opac, const float* __restrict__ depths, const int32_t* __restrict__ radii,
                 const float* __restrict__ bg, int C_rt, int W, int H, int tiles_x, float* out_c, float* out_a,
                 float* out_d, float* out_t, int32_t* last_pos, int32_t* last_id) {
  constexpr int kCh = CC > 0 ? CC : kMaxChannels;
  const int C = CC > 0 ? CC : C_rt;
  const int tile = blockIdx.y * tiles_x + blockIdx.x;
  const int tid = threadIdx.y * kTile + threadIdx.x;
  const int px = blockIdx.x * kTile + threadIdx.x, py = blockIdx.y * kTile + threadIdx.y;
  const bool inside = px < W && py < H;
  const float fx = px + 0.5f, fy = py + 0.5f;
  const int start = ranges[2 * tile], end = ranges[2 * tile + 1];
  __shared__ int32_t s_id[kBlock];
  __shared__ float2 s_m[kBlock];
  __shared__ float2 s_r[kBlock];
  __shared__ float s_o[kBlock];
  __shared__ float s_d[kBlock];
  __shared__ float s_c[kBlock * (CC > 0 ? CC : 1)];
  __shared__ float s_p[kBlock * FP::kParams];
  bool done = !inside;
  float T = 1.f, acc[kCh], acc_d = 0.f;
#pragma unroll
  for (int c = 0; c < kCh; ++c) acc[c] = 0.f;
  int last = -1;
  for (int b = start; b < end; b += kBlock) {
    if (__syncthreads_count(done) == kBlock) break;
    const int idx = b + tid;
    if (idx < end) {
      const int32_t id = ids[idx];
      s_id[tid] = id;
      s_m[tid] = make_float2(m2d[2 * id], m2d[2 * id + 1]);
      s_r[tid] = make_float2(float(radii[2 * id]), float(radii[2 * id + 1]));
      s_o[tid] = opac[id];
      s_d[tid] = depths[id];
#pragma unroll
      for (int c = 0; c < CC; ++c) s_c[tid * CC + c] = colors[int64_t(id) * CC + c];
      for (int j = 0; j < FP::kParams; ++j) s_p[tid * FP::kParams + j] = fp_params[int64_t(id) * FP::kParams + j];
    }
    __syncthreads();
    const int cnt = min(kBlock, end - b);
    for (int j = 0; !done && j < cnt; ++j) {
      const float dx = s_m[j].x - fx, dy = s_m[j].y - fy;
      if (fabsf(dx) > s_r[j].x || fabsf(dy) > s_r[j].y) continue;  // same box clip as the CPU backend
      const FP fp = FP::load(s_p, j);
      float fac;
      const float alpha = sf::footprint_alpha(fp, s_o[j], dx, dy, fac);
      if (alpha <= 0.f) continue;
      const float next = T * (1.f - alpha);
      if (next <= float(sf::TRANSMITTANCE_EPS)) {
        done = true;
        break;
      }
      const float w = alpha * T;
      if (CC > 0) {
#pragma unroll
        for (int c = 0; c < kCh; ++c) acc[c] += w * s_c[j * (CC > 0 ? CC : 1) + c];
      } else {
        const int64_t id = s_id[j];
        for (int c = 0; c < C; ++c) acc[c] += w * colors[id * C + c];
      }
      acc_d += w * s_d[j];
      T = next;
      last = b + j;
    }
  }
  if (!inside) return;
  const int64_t pix = int64_t(py) * W + px;
#pragma unroll
  for (int c = 0; c < kCh; ++c)
    if (c < C) out_c[pix * C + c] = acc[c] + (bg ? T * bg[c] : 0.f);
  out_a[pix] = 1.f - T;
  out_d[pix] = acc_d;
  out_t[pix] = T;
  last_pos[pix] = last;
  last_id[pix] = last >= 0 ? ids[last] : -1;
}

__device__ inline float warp_sum(float v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;
}

// Backward, one thread per pixel walking its tile's list back to front from the tile's last contributor. All threads
// of a block visit the same primitive at the same time, so per-pixel gradients are summed across each warp with
// shuffles first and only lane 0 issues the atomics (32x fewer atomics on the same addresses). Each warp starts a
// batch at its own last contributor (the primitives behind it cannot touch its pixels), and the depth and absgrad
// sums are skipped when nobody asked for them (v_d / g_abs null: their outputs stay zero).
// CC > 0: compile-time channel count (arrays stay in registers, the batch's colours in shared memory); CC == 0: `C`
// at run time.
template <typename FP, int CC>
__global__ void __launch_bounds__(kBlock)
    render_bwd_k(const int32_t* __restrict__ ranges, const int32_t* __restrict__ ids, const float* __restrict__ m2d,
                 const float* __restrict__ fp_params, const float* __restrict__ colors,
                 const float* __restrict__ opac, const float* __restrict__ depths, const int32_t* __restrict__ radii,
                 const float* __restrict__ bg, int C_rt, int W, int H, int tiles_x, const float* __restrict__ trans,
                 const int32_t* __restrict__ last_pos, const float* __restrict__ v_c, const float* __restrict__ v_a,
                 const float* __restrict__ v_d, float* g_m2d, float* g_params, float* g_colors, float* g_opac,
                 float* g_depths, float* g_abs) {
  constexpr int kCh = CC > 0 ? CC : kMaxChannels;
  constexpr int kSc = CC > 0 ? CC : 1;
  const int C = CC > 0 ? CC : C_rt;
  const bool want_depth = v_d != nullptr, want_abs = g_abs != nullptr;
  const int tile = blockIdx.y * tiles_x + blockIdx.x;
  const int tid = threadIdx.y * kTile + threadIdx.x;
  const int lane = tid & 31;
  const int px = blockIdx.x * kTile + threadIdx.x, py = blockIdx.y * kTile + threadIdx.y;
  const bool inside = px < W && py < H;
  const float fx = px + 0.5f, fy = py + 0.5f;
  const int start = ranges[2 * tile];
  const int64_t pix = inside ? int64_t(py) * W + px : 0;
  const int last = inside ? last_pos[pix] : -1;
  int warp_last = last;
  for (int off = 16; off > 0; off >>= 1) warp_last = max(warp_last, __shfl_xor_sync(0xffffffffu, warp_last, off));
  __shared__ int s_max_last;
  if (tid == 0) s_max_last = -1;
  __syncthreads();
  if (lane == 0) atomicMax(&s_max_last, warp_last);
  __syncthreads();
  const int end = s_max_last + 1;
  if (end <= start) return;  // nothing contributed in this tile (uniform across the block)
  __shared__ int32_t s_id[kBlock];
  __shared__ float2 s_m[kBlock];
  __shared__ float2 s_r[kBlock];
  __shared__ float s_o[kBlock];
  __shared__ float s_d[kBlock];
  __shared__ float s_c[kBlock * kSc];
  __shared__ float s_p[kBlock * FP::kParams];
  const float T_final = inside ? trans[pix] : 1.f;
  float T = T_final;
  float vcol[kCh], behind[kCh];
  float bgdot = 0.f;
#pragma unroll
  for (int c = 0; c < kCh; ++c) {
    vcol[c] = (inside && c < C) ? v_c[pix * C + c] : 0.f;
    behind[c] = 0.f;
    if (bg && c < C) bgdot += bg[c] * vcol[c];
  }
  const float vA = inside ? v_a[pix] - bgdot : 0.f, vD = inside && want_depth ? v_d[pix] : 0.f;
  float behind_d = 0.f;
  for (int b_end = end; b_end > start; b_end -= kBlock) {
    const int b_start = max(start, b_end - kBlock);
    const int cnt = b_end - b_start;
    __syncthreads();
    if (tid < cnt) {  // load back to front: slot j holds position b_end - 1 - j
      const int32_t id = ids[b_end - 1 - tid];
      s_id[tid] = id;
      s_m[tid] = make_float2(m2d[2 * id], m2d[2 * id + 1]);
      s_r[tid] = make_float2(float(radii[2 * id]), float(radii[2 * id + 1]));
      s_o[tid] = opac[id];
      if (want_depth) s_d[tid] = depths[id];
#pragma unroll
      for (int c = 0; c < CC; ++c) s_c[tid * kSc + c] = colors[int64_t(id) * CC + c];
      for (int j = 0; j < FP::kParams; ++j) s_p[tid * FP::kParams + j] = fp_params[int64_t(id) * FP::kParams + j];
    }
    __syncthreads();
    // slot j is position b_end - 1 - j; positions after the warp's last contributor touch none of its pixels
    for (int j = max(0, b_end - 1 - warp_last); j < cnt; ++j) {
      // Every lane reaches the warp reduction below: a lane that does not contribute adds zeros.
      const float dx = s_m[j].x - fx, dy = s_m[j].y - fy;
      const FP fp = FP::load(s_p, j);
      bool valid = b_end - 1 - j <= last && fabsf(dx) <= s_r[j].x && fabsf(dy) <= s_r[j].y;
      float ex = 0.f;  // the footprint's factor: exp(-sigma) times any modulation
      const float alpha = valid ? sf::footprint_alpha(fp, s_o[j], dx, dy, ex) : 0.f;
      const float raw = s_o[j] * ex;
      valid = valid && alpha > 0.f;
      if (!__any_sync(0xffffffffu, valid)) continue;  // warp-uniform
      const int32_t id = s_id[j];
      float g_col[kCh], g_dep = 0.f, g_op = 0.f, vp[FP::kParams], vmx = 0.f, vmy = 0.f;
#pragma unroll
      for (int c = 0; c < kCh; ++c) g_col[c] = 0.f;
#pragma unroll
      for (int q = 0; q < FP::kParams; ++q) vp[q] = 0.f;
      if (valid) {
        const float ra = 1.f / (1.f - alpha);
        T *= ra;
        const float w = alpha * T;
        float v_alpha = T_final * ra * vA;
#pragma unroll
        for (int c = 0; c < kCh; ++c) {
          if (c >= C) break;
          const float col = CC > 0 ? s_c[j * kSc + c] : colors[int64_t(id) * C + c];
          v_alpha += (col * T - behind[c] * ra) * vcol[c];
          behind[c] += col * w;
          g_col[c] = w * vcol[c];
        }
        if (want_depth) {
          const float dep = s_d[j];
          v_alpha += (dep * T - behind_d * ra) * vD;
          behind_d += dep * w;
          g_dep = w * vD;
        }
        if (raw <= float(sf::MAX_ALPHA)) {  // the MAX_ALPHA clamp has no gradient
          g_op = ex * v_alpha;
          fp.factor_vjp(dx, dy, ex, s_o[j] * v_alpha, vp, 1, vmx, vmy);
        }
      }
      float amx = 0.f, amy = 0.f;
      if (want_abs) {
        amx = warp_sum(fabsf(vmx));
        amy = warp_sum(fabsf(vmy));
      }
      vmx = warp_sum(vmx);
      vmy = warp_sum(vmy);
      if (want_depth) g_dep = warp_sum(g_dep);
      g_op = warp_sum(g_op);
#pragma unroll
      for (int q = 0; q < FP::kParams; ++q) vp[q] = warp_sum(vp[q]);
#pragma unroll
      for (int c = 0; c < kCh; ++c)
        if (c < C) g_col[c] = warp_sum(g_col[c]);
      if (lane == 0) {
        for (int c = 0; c < C; ++c) atomicAdd(&g_colors[int64_t(id) * C + c], g_col[c]);
        if (want_depth) atomicAdd(&g_depths[id], g_dep);
        atomicAdd(&g_opac[id], g_op);
        for (int q = 0; q < FP::kParams; ++q) atomicAdd(&g_params[int64_t(id) * FP::kParams + q], vp[q]);
        atomicAdd(&g_m2d[2 * id], vmx);
        atomicAdd(&g_m2d[2 * id + 1], vmy);
        if (want_abs) {
          atomicAdd(&g_abs[2 * id], amx);
          atomicAdd(&g_abs[2 * id + 1], amy);
        }
      }
    }
  }
}

}  // namespace

int64_t tile_offsets(const float* m2d, const int32_t* radii, int64_t n, int w, int h, int32_t* offsets,
                     cudaStream_t s) {
  if (n == 0) return 0;
  int32_t* counts = nullptr;
  cudaMallocAsync(&counts, n * sizeof(int32_t), s);
  count_k<<<unsigned((n + 255) / 256), 256, 0, s>>>(m2d, radii, n, w, h, counts);
  size_t temp_bytes = 0;
  cub::DeviceScan::InclusiveSum(nullptr, temp_bytes, counts, offsets, int(n), s);
  void* temp = nullptr;
  cudaMallocAsync(&temp, temp_bytes, s);
  cub::DeviceScan::InclusiveSum(temp, temp_bytes, counts, offsets, int(n), s);
  int32_t total = 0;
  cudaMemcpyAsync(&total, offsets + n - 1, sizeof(int32_t), cudaMemcpyDeviceToHost, s);
  cudaFreeAsync(temp, s);
  cudaFreeAsync(counts, s);
  cudaStreamSynchronize(s);
  return total;
}

void sort_intersections(const float* m2d, const int32_t* radii, const float* depths, const int32_t* offsets,
                        int64_t n, int64_t m, int w, int h, int64_t* keys, int32_t* ids, int64_t* keys_sorted,
                        int32_t* ids_sorted, int32_t* ranges, cudaStream_t s) {
  const int tiles_x = (w + kTile - 1) / kTile, tiles_y = (h + kTile - 1) / kTile;
  cudaMemsetAsync(ranges, 0, sizeof(int32_t) * 2 * tiles_x * tiles_y, s);
  if (m == 0) return;
  duplicate_k<<<unsigned((n + 255) / 256), 256, 0, s>>>(m2d, radii, depths, offsets, n, w, h, tiles_x, keys, ids);
  int tile_bits = 1;
  while ((int64_t(1) << tile_bits) < int64_t(tiles_x) * tiles_y + 1) ++tile_bits;
  size_t temp_bytes = 0;
  cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys, keys_sorted, ids, ids_sorted, int(m), 0, 32 + tile_bits,
                                  s);
  void* temp = nullptr;
  cudaMallocAsync(&temp, temp_bytes, s);
  cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys, keys_sorted, ids, ids_sorted, int(m), 0, 32 + tile_bits, s);
  cudaFreeAsync(temp, s);
  ranges_k<<<unsigned((m + 255) / 256), 256, 0, s>>>(keys_sorted, m, ranges);
}

// Calls f(FP{}) with the footprint type for `terms` wave terms (0: Gaussian; 1..8: Gabor), as the CPU backend.
template <typename F> void with_footprint(int terms, F&& f) {
  switch (terms) {
    case 0: f(sf::GaussianFootprint<float>{}); break;
    case 1: f(sf::GaborFootprint<float, 1>{}); break;
    case 2: f(sf::GaborFootprint<float, 2>{}); break;
    case 3: f(sf::GaborFootprint<float, 3>{}); break;
    case 4: f(sf::GaborFootprint<float, 4>{}); break;
    case 5: f(sf::GaborFootprint<float, 5>{}); break;
    case 6: f(sf::GaborFootprint<float, 6>{}); break;
    case 7: f(sf::GaborFootprint<float, 7>{}); break;
    case 8: f(sf::GaborFootprint<float, 8>{}); break;
    default: break;  // the bindings refuse other counts
  }
}

void render_fwd(const int32_t* ranges, const int32_t* ids, const float* m2d, const float* fp_params, int terms,
                const float* colors, const float* opac, const float* depths, const int32_t* radii, const float* bg,
                int C, int W, int H, float* out_c, float* out_a, float* out_d, float* out_t, int32_t* last_pos,
                int32_t* last_id, cudaStream_t s) {
  const int tiles_x = (W + kTile - 1) / kTile, tiles_y = (H + kTile - 1) / kTile;
  with_footprint(terms, [&](auto tag) {
    using FP = decltype(tag);
    const dim3 grid(tiles_x, tiles_y), block(kTile, kTile);
    if (C == 3)
      render_fwd_k<FP, 3><<<grid, block, 0, s>>>(ranges, ids, m2d, fp_params, colors, opac, depths, radii, bg, C, W,
                                                  H, tiles_x, out_c, out_a, out_d, out_t, last_pos, last_id);
    else
      render_fwd_k<FP, 0><<<grid, block, 0, s>>>(ranges, ids, m2d, fp_params, colors, opac, depths, radii, bg, C, W,
                                                  H, tiles_x, out_c, out_a, out_d, out_t, last_pos, last_id);
  });
}

void render_bwd(const int32_t* ranges, const int32_t* ids, const float* m2d, const float* fp_params, int terms,
                const float* colors, const float* opac, const float* depths, const int32_t* radii, const float* bg,
                int C, int W, int H, const float* trans, const int32_t* last_pos, const float* v_c, const float* v_a,
                const float* v_d, float* g_m2d, float* g_params, float* g_colors, float* g_opac, float* g_depths,
                float* g_abs, cudaStream_t s) {
  const int tiles_x = (W + kTile - 1) / kTile, tiles_y = (H + kTile - 1) / kTile;
  const dim3 grid(tiles_x, tiles_y), block(kTile, kTile);
  with_footprint(terms, [&](auto tag) {
    using FP = decltype(tag);
    if (C == 3)
      render_bwd_k<FP, 3><<<grid, block, 0, s>>>(ranges, ids, m2d, fp_params, colors, opac, depths, radii, bg, C, W,
                                                  H, tiles_x, trans, last_pos, v_c, v_a, v_d, g_m2d, g_params,
                                                  g_colors, g_opac, g_depths, g_abs);
    else
      render_bwd_k<FP, 0><<<grid, block, 0, s>>>(ranges, ids, m2d, fp_params, colors, opac, depths, radii, bg, C, W,
                                                  H, tiles_x, trans, last_pos, v_c, v_a, v_d, g_m2d, g_params,
                                                  g_colors, g_opac, g_depths, g_abs);
  });
}

}  // namespace sf_cuda
