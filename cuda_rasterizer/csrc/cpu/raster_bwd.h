// CPU backward blend: per tile, walk back from each pixel's last contributor recovering T (as the CUDA kernels do).
// Each (tile, primitive) intersection writes its own gradient row (at its position in the tile lists, so a tile's
// rows are contiguous); rows are summed per primitive in emission order, so results do not depend on the thread
// count or scheduling. float / 3 channels / 16-pixel tiles take a primitive-by-primitive AVX-512 kernel
// (backward_prims_avx512.h; AVX2: tiles up to 16 pixels wide, backward_prims_avx2.h); the rest a per-lane one.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <type_traits>
#include <vector>

#include "../sf_math.h"
#include "binning.h"
#include "backward_prims_avx512.h"
#include "backward_prims_avx2.h"
#include "grad_rows.h"
#include "raster_fwd.h"
#include "raster_grads.h"
#include "row_alpha.h"

namespace sf_cpu {

// Per-lane pieces of one backward step, shared by the fused RGB pass and the generic passes of backward_tile.
template <typename T> struct LaneStep {
  T okf, ra, tb, w, va;  // contributes (1/0), 1 / (1 - alpha), T before the primitive, weight, dL/dalpha so far
};

// Undo the blend of a primitive with `alpha` at a pixel whose transmittance after it is `t_after`; starts dL/dalpha
// with the final-alpha term (v_alpha_out already has the background's part removed).
template <typename T> inline LaneStep<T> undo_blend(T alpha, T t_after, T t_final, T v_alpha_out) {
  const bool ok = alpha > T(0);
  const T ra = T(1) / (T(1) - alpha);  // alpha <= 0.99
  const T tb = t_after * ra;
  return {ok ? T(1) : T(0), ra, tb, ok ? alpha * tb : T(0), ok ? t_final * ra * v_alpha_out : T(0)};
}

// One channel (colour or depth `cv`): adds its dL/dalpha term to `va`, its share to `behind`, and dL/dcv to `gc`.
template <typename T> inline void channel_vjp(const LaneStep<T>& st, T& va, T cv, T& behind, T vc, T& gc) {
  va += st.okf * (cv * st.tb - behind * st.ra) * vc;
  behind += st.w * cv;
  gc += st.w * vc;
}

// From dL/dalpha to the opacity, footprint parameters, mean2d and absolute mean2d gradients of one lane.
// `cache`: the lane's values left by footprint_alpha_cached (stride `cs`).
template <typename T, typename FP>
inline void footprint_vjp(const FP& fp, T dx, T dy, const T* cache, int cs, T op, T ex, T okf, T va, T& g_o, T* g_p,
                          int lp, T& g_m0, T& g_m1, T& g_a0, T& g_a1) {
  const T raw = op * ex;  // ex: the footprint's factor (exp(-sigma) times any modulation)
  const T pass = (raw <= T(sf::MAX_ALPHA)) ? okf : T(0);  // the MAX_ALPHA clamp has no gradient
  g_o += pass * ex * va;
  T vmx, vmy;
  fp.factor_vjp_cached(dx, dy, ex, pass * op * va, cache, cs, g_p, lp, vmx, vmy);
  g_m0 += vmx;
  g_m1 += vmy;
  g_a0 += std::abs(vmx);
  g_a1 += std::abs(vmy);
}

// Backward of one tile. LW > 0: rows of exactly LW lanes (compile-time); LW == 0: rows of the tile width.
template <typename T, typename FP, int LW>
void backward_tile(const RasterInputs<T>& in, const TileBins& bins, const Packed<T, FP>& pk, const RasterGradIn<T>& gin,
                   int64_t tile_index, int tiles_x, std::vector<T>& scratch, const GradRows<T>& G) {
  using P = Packed<T, FP>;
  const int ts = in.tile, C = in.channels;
  constexpr int KP = FP::kParams;
  const int row = grad_row<FP>(C);
  const int x0 = int(tile_index % tiles_x) * ts, y0 = int(tile_index / tiles_x) * ts;
  const int tw = std::min(ts, in.width - x0), th = std::min(ts, in.height - y0);
  const int rs = LW > 0 ? LW : ts;  // row stride of the per-pixel scratch
  const int nl = LW > 0 ? LW : tw;  // lanes evaluated per row (lanes past tw have no contributor: masked)
  const int np = rs * th;
  const int64_t s = bins.tile_start[tile_index];
  const PixelToTile to_tile(ts);  // for the gradient rows' emission indices
  // scratch layout: trans, tfin, vA (minus bg.v), last(as T), vcol(C+1), behind(C+1), then per-row lanes
  const int n_lane = 2 + KP + 4 + (C + 1);  // lane accumulators: mean2d, params, opacity, absgrad(2), colours+depth
  int lp = 1;  // lane stride: power of two >= row width, for the tree sums
  while (lp < rs) lp *= 2;
  constexpr int KC = FP::kCache;  // per-lane footprint values kept from the alpha pass for the VJP
  scratch.assign(size_t(np) * (4 + 2 * (C + 1)) + size_t(lp) * n_lane + size_t(rs) * (7 + KC) + 16, T(0));
  T* tr = scratch.data();
  T* tfin = tr + np;
  T* vA = tfin + np;
  T* lastf = vA + np;
  T* vcol = lastf + np;                  // (C+1) x np, depth last
  T* behind = vcol + size_t(C + 1) * np; // (C+1) x np
  T* lanes = behind + size_t(C + 1) * np;
  T* rowtmp = lanes + size_t(lp) * n_lane;  // 7 x rs
  std::fill(lastf, lastf + np, T(-1));
  int row_last[64];
  int kmax = -1;
  for (int r = 0; r < th; ++r) {
    row_last[r] = -1;
    for (int x = 0; x < tw; ++x) {
      const int i = r * rs + x;
      const int64_t pix = int64_t(y0 + r) * in.width + (x0 + x);
      const int l = gin.last_pos[pix] >= 0 ? int(gin.last_pos[pix] - s) : -1;
      lastf[i] = T(l);
      row_last[r] = std::max(row_last[r], l);
      kmax = std::max(kmax, l);
      tr[i] = gin.trans[pix];
      tfin[i] = gin.trans[pix];
      T bgdot = 0;
      for (int ch = 0; ch < C; ++ch) {
        vcol[size_t(ch) * np + i] = gin.v_colors[pix * C + ch];
        if (in.background) bgdot += in.background[ch] * gin.v_colors[pix * C + ch];
      }
      vcol[size_t(C) * np + i] = gin.depth_grad ? gin.v_depths[pix] : T(0);
      vA[i] = gin.v_alphas[pix] - bgdot;
    }
  }
  alignas(64) T px[64];
  for (int x = 0; x < rs; ++x) px[x] = T(x0 + x) + T(0.5);
  T* ok_l = rowtmp;
  T* ra_l = rowtmp + rs;
  T* tb_l = rowtmp + 2 * rs;
  T* w_l = rowtmp + 3 * rs;
  T* va_l = rowtmp + 4 * rs;
  T* ex_l = rowtmp + 5 * rs;
  T* al_l = rowtmp + 6 * rs;
  T* cache_l = rowtmp + 7 * rs;  // KC x rs
  // the forward's hand-vectorised row kernel ran for float, 16-lane rows and 3 channels: recompute alphas with it
  const bool vector_alpha = RowAlpha<T, FP>::kVector && LW == 16 && C == 3;
  const T dx_lo_off = T(x0 + tw - 1) + T(0.5) + T(1), dx_hi_off = T(x0) + T(0.5) - T(1);
  T* g_m0 = lanes;
  T* g_m1 = lanes + lp;
  T* g_p = lanes + 2 * lp;  // KP x lp
  T* g_o = lanes + size_t(2 + KP) * lp;
  T* g_a0 = g_o + lp;
  T* g_a1 = g_a0 + lp;
  T* g_c = g_a1 + lp;  // (C+1) x lp
  for (int k = kmax; k >= 0; --k) {
    if (k >= kPrefetch) {
      const T* ahead = pk.rec(bins.ids[s + k - kPrefetch]);
      __builtin_prefetch(ahead);
      __builtin_prefetch(ahead + pk.stride - 1);
    }
    const T* d = pk.rec(bins.ids[s + k]);
    const T mx = d[P::MX], my = d[P::MY], rx = d[P::RX], ry = d[P::RY], op = d[P::OP], dep = d[P::DEP];
    const T level = d[P::LEV], slope = d[P::RSL];
    const FP fp = FP::load(d + P::FPP, 0);
    const T* col = d + P::COL;
    const T kf = T(k);
    int r0, r1;
    pixel_span(my, ry, in.height, r0, r1);
    r0 = std::max(r0 - y0, 0);
    r1 = std::min(r1 - y0, th - 1);
    bool any = false;
    const T dx_lo = mx - dx_lo_off, dx_hi = mx - dx_hi_off;
    for (int r = r0; r <= r1; ++r) {
      if (row_last[r] < k) continue;
      const T dy = my - (T(y0 + r) + T(0.5));
      if (!fp.row_may_hit(dy, level, slope, dx_lo, dx_hi)) continue;
      if (!any) std::fill(lanes, lanes + size_t(lp) * n_lane, T(0));  // lazily: most visits touch no live row
      any = true;
      T* trr = tr + r * rs;
      const T* lr = lastf + r * rs;
      const T* tf = tfin + r * rs;
      const T* va_in = vA + r * rs;
      // alpha and exp(-sigma) of the row, computed exactly as the forward did (see row_alpha.h)
#if defined(__AVX512F__)
      if constexpr (RowAlpha<T, FP>::kVector && LW == 16) {
        if (vector_alpha) {
          __m512 ex;
          const __m512 dxv = _mm512_sub_ps(_mm512_set1_ps(mx), _mm512_loadu_ps(px));
          _mm512_storeu_ps(al_l, RowAlpha<T, FP>::eval(fp, dxv, dy, op, rx, ex));
          _mm512_storeu_ps(ex_l, ex);
          if constexpr (KC > 0) {
#pragma omp simd
            for (int x = 0; x < nl; ++x) fp.fill_cache(mx - px[x], dy, cache_l + x, rs);
          }
        }
      }
#endif
      if (!vector_alpha) {
#pragma omp simd
        for (int x = 0; x < nl; ++x) {
          const T dx = mx - px[x];
          T fac;
          const T alpha = sf::footprint_alpha_cached(fp, op, dx, dy, fac, cache_l + x, rs);  // the forward's bits
          al_l[x] = std::abs(dx) <= rx ? alpha : T(0);
          ex_l[x] = fac;
        }
      }
      if (C == 3) {
        // RGB: the three per-row passes below fused into one, so every temporary stays in registers
        const T c0 = col[0], c1 = col[1], c2 = col[2];
        T* bh0 = behind + r * rs;
        T* bh1 = bh0 + np;
        T* bh2 = bh1 + np;
        T* bhd = bh2 + np;
        const T* vc0 = vcol + r * rs;
        const T* vc1 = vc0 + np;
        const T* vc2 = vc1 + np;
        const T* vcd = vc2 + np;
        T* gc0 = g_c;
        T* gc1 = g_c + lp;
        T* gc2 = g_c + 2 * lp;
        T* gcd = g_c + 3 * lp;
#pragma omp simd
        for (int x = 0; x < nl; ++x) {
          const LaneStep<T> st = undo_blend(kf <= lr[x] ? al_l[x] : T(0), trr[x], tf[x], va_in[x]);
          trr[x] = st.tb;
          T va = st.va;
          channel_vjp(st, va, c0, bh0[x], vc0[x], gc0[x]);
          channel_vjp(st, va, c1, bh1[x], vc1[x], gc1[x]);
          channel_vjp(st, va, c2, bh2[x], vc2[x], gc2[x]);
          channel_vjp(st, va, dep, bhd[x], vcd[x], gcd[x]);
          footprint_vjp(fp, mx - px[x], dy, cache_l + x, rs, op, ex_l[x], st.okf, va, g_o[x], g_p + x, lp, g_m0[x], g_m1[x], g_a0[x],
                        g_a1[x]);
        }
        continue;
      }
#pragma omp simd
      for (int x = 0; x < nl; ++x) {
        const LaneStep<T> st = undo_blend(kf <= lr[x] ? al_l[x] : T(0), trr[x], tf[x], va_in[x]);
        trr[x] = st.tb;
        ok_l[x] = st.okf;
        ra_l[x] = st.ra;
        tb_l[x] = st.tb;
        w_l[x] = st.w;
        va_l[x] = st.va;
      }
      for (int ch = 0; ch <= C; ++ch) {
        const T cv = ch < C ? col[ch] : dep;
        T* bh = behind + size_t(ch) * np + r * rs;
        const T* vc = vcol + size_t(ch) * np + r * rs;
        T* gc = g_c + size_t(ch) * lp;
#pragma omp simd
        for (int x = 0; x < nl; ++x) {
          const LaneStep<T> st{ok_l[x], ra_l[x], tb_l[x], w_l[x], T(0)};
          channel_vjp(st, va_l[x], cv, bh[x], vc[x], gc[x]);
        }
      }
#pragma omp simd
      for (int x = 0; x < nl; ++x)
        footprint_vjp(fp, mx - px[x], dy, cache_l + x, rs, op, ex_l[x], ok_l[x], va_l[x], g_o[x], g_p + x, lp, g_m0[x], g_m1[x], g_a0[x],
                      g_a1[x]);
    }
    if (!any) continue;
    T* g = G.row_at(emission_of<T, FP>(in, bins, d, s + k, int(tile_index % tiles_x), int(tile_index / tiles_x),
                                       to_tile));
    // fixed-order lane sums: mean2d(2), params(KP), opacity, depth, absgrad(2), colours(C)
    // pairwise tree over a power-of-two lane count (lanes past the row are zero): fixed order, short dependency chain
    auto lane_sum = [&](T* v) {
      for (int half = lp / 2; half >= 1; half /= 2)
#pragma omp simd
        for (int x = 0; x < half; ++x) v[x] += v[x + half];
      return v[0];
    };
    g[0] = lane_sum(g_m0);
    g[1] = lane_sum(g_m1);
    for (int j = 0; j < KP; ++j) g[2 + j] = lane_sum(g_p + j * lp);
    g[2 + KP] = lane_sum(g_o);
    g[3 + KP] = lane_sum(g_c + size_t(C) * lp);
    g[4 + KP] = lane_sum(g_a0);
    g[5 + KP] = lane_sum(g_a1);
    for (int ch = 0; ch < C; ++ch) g[6 + KP + ch] = lane_sum(g_c + size_t(ch) * lp);
  }
}

// Calls f(depth, abs) with gin's depth_grad and absgrad flags as compile-time constants (std::bool_constant), for
// the row kernels' template parameters.
template <typename T, typename F> inline void with_grad_flags(const RasterGradIn<T>& gin, F&& f) {
  if (gin.depth_grad) {
    if (gin.absgrad) f(std::true_type{}, std::true_type{});
    else f(std::true_type{}, std::false_type{});
  } else {
    if (gin.absgrad) f(std::false_type{}, std::true_type{});
    else f(std::false_type{}, std::false_type{});
  }
}

template <typename T, typename FP>
void render_backward(const RasterInputs<T>& in, const TileBins& bins, const Packed<T, FP>& pk,
                     const RasterGradIn<T>& gin, int nthreads, const RasterGradOut<T>& out) {
  const int tiles_x = (in.width + in.tile - 1) / in.tile, tiles_y = (in.height + in.tile - 1) / in.tile;
  const int64_t n_tiles = int64_t(tiles_x) * tiles_y;
  const int C = in.channels, row = grad_row<FP>(C);
  constexpr int KP = FP::kParams;
  const int64_t m = bins.tile_start[n_tiles];
  // one gradient row per (tile, primitive) that contributes, at its emission index (grad_rows.h)
  const int g_stride = GradRows<T>::stride_for(row, m);
  PooledVector<T> G_rows(size_t(m) * g_stride);
  PooledVector<uint8_t> written(static_cast<size_t>(m));
  std::fill(written.begin(), written.end(), uint8_t(0));
  const GradRows<T> G{G_rows.data(), g_stride, written.data(), GradRows<T>::streams(row, m)};
  const double t_tiles = omp_get_wtime();
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> scratch;
    TileScratch<T> sc;
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < n_tiles; ++t) {
#if defined(__AVX512F__)
      if constexpr (RowAlpha<T, FP>::kVector) {
        if (in.tile == kLanes && C == 3) {
          with_grad_flags(gin, [&](auto depth, auto abs) {
            backward_tile_prims_avx512<FP, decltype(depth)::value, decltype(abs)::value>(in, bins, pk, gin, t, tiles_x,
                                                                                          sc, G);
          });
          continue;
        }
      }
#endif
#if defined(SF_ROWS_AVX2)
      if constexpr (RowAlpha8<T, FP>::kVector) {
        if (in.tile <= kLanes && C == 3) {  // the forward's condition for blend_half_row_avx2 (LW == 16, CC == 3)
          with_grad_flags(gin, [&](auto depth, auto abs) {
            backward_tile_prims_avx2<FP, decltype(depth)::value, decltype(abs)::value>(in, bins, pk, gin, t, tiles_x,
                                                                                        sc, G);
          });
          continue;
        }
      }
#endif
      if (in.tile <= kLanes)
        backward_tile<T, FP, kLanes>(in, bins, pk, gin, t, tiles_x, scratch, G);
      else
        backward_tile<T, FP, 0>(in, bins, pk, gin, t, tiles_x, scratch, G);
    }
    if (G.streamed) stream_fence();
  }
  const double t_sums = omp_get_wtime();
  // Each binned primitive's rows summed in emission order, by depth rank into `sums` (sequential reads and writes: the
  // rows are stored by emission index), then handed to the outputs by primitive id (sequential writes again; writing
  // the outputs straight from the rank loop scattered ~6 store misses per primitive, a third of the pass).
  const int64_t nv = int64_t(bins.order.size()), n = in.n;
  // sums rows start on cache lines: the hand-over by id reads them in random order, a line each (48-byte rows
  // straddled two lines, and the prefetch covered the first)
  const int sum_stride = line_stride<T>(row);
  PooledVector<T> sums(size_t(nv) * sum_stride);
  // float rows of one line in a large scene: written with streaming stores (small scenes keep them in the caches
  // for the hand-over below)
  const bool streamed = std::is_same<T, float>::value && kCanStreamLines && sum_stride == 16 &&
                        nv * 64 >= kStreamedArrayBytes;
  const PooledVector<int32_t>& rank = bins.rank;
  // whether rank r has a row with a contribution: a primitive behind every pixel's last contributor (most of a deep
  // scene's: 88% of B3's intersections) gets no sums row, and the hand-over writes its zeros without reading one
  PooledVector<uint8_t> contributed(static_cast<size_t>(nv));
#pragma omp parallel num_threads(nthreads)
  {
#pragma omp for schedule(static)
    for (int64_t r = 0; r < nv; ++r) {
      // the rows are summed as their flags are read; a rank none of whose rows was written stores nothing
      const int64_t e_begin = bins.prim_offset[r], e_end = bins.prim_offset[r + 1];
      bool any = false;
      T* a = sums.data() + r * sum_stride;
#if defined(__AVX__)
      if constexpr (std::is_same<T, float>::value) {
        if (streamed && G.stride == 16) {  // one-line rows (zero past `row`) in, one line out: whole-line vector sums
#if defined(__AVX512F__)
          __m512 v = _mm512_setzero_ps();
          for (int64_t e = e_begin; e < e_end; ++e)
            if (written[e]) {
              v = _mm512_add_ps(v, _mm512_load_ps(G.base + e * 16));
              any = true;
            }
          if (any) _mm512_stream_ps(a, v);
#else
          __m256 v0 = _mm256_setzero_ps(), v1 = _mm256_setzero_ps();
          for (int64_t e = e_begin; e < e_end; ++e)
            if (written[e]) {
              v0 = _mm256_add_ps(v0, _mm256_load_ps(G.base + e * 16));
              v1 = _mm256_add_ps(v1, _mm256_load_ps(G.base + e * 16 + 8));
              any = true;
            }
          if (any) {
            _mm256_stream_ps(a, v0);
            _mm256_stream_ps(a + 8, v1);
          }
#endif
          contributed[r] = any;
          continue;
        }
      }
#endif
      alignas(64) T line[64 / sizeof(T)];  // streamed: the row is summed here, then written as one whole line
      T* acc = streamed ? line : a;
      std::fill(acc, acc + (streamed ? 64 / sizeof(T) : row), T(0));
      for (int64_t e = e_begin; e < e_end; ++e) {
        if (!written[e]) continue;  // nothing contributed there (no row was written)
        const T* g = G.base + e * G.stride;
        for (int j = 0; j < row; ++j) acc[j] += g[j];
        any = true;
      }
      contributed[r] = any;
      if (streamed && any) stream_line(a, line);
    }
    if (streamed) stream_fence();
    constexpr int64_t kAhead = 16;  // primitives
#pragma omp for schedule(static)
    for (int64_t p = 0; p < n; ++p) {
      if (p + kAhead < n) {
        const int32_t ahead = rank[p + kAhead];
        if (ahead >= 0 && contributed[ahead]) __builtin_prefetch(sums.data() + int64_t(ahead) * sum_stride);
      }
      const int32_t r = rank[p];
      if (r < 0 || !contributed[r]) {  // not binned, or nothing contributed: zeros
        out.v_means2d[2 * p] = out.v_means2d[2 * p + 1] = T(0);
        for (int j = 0; j < KP; ++j) out.v_params[KP * p + j] = T(0);
        out.v_opacities[p] = out.v_depths[p] = out.absgrad[2 * p] = out.absgrad[2 * p + 1] = T(0);
        for (int ch = 0; ch < C; ++ch) out.v_colors[p * C + ch] = T(0);
        continue;
      }
      const T* a = sums.data() + int64_t(r) * sum_stride;
      out.v_means2d[2 * p] = a[0];
      out.v_means2d[2 * p + 1] = a[1];
      for (int j = 0; j < KP; ++j) out.v_params[KP * p + j] = a[2 + j];
      out.v_opacities[p] = a[2 + KP];
      out.v_depths[p] = a[3 + KP];
      out.absgrad[2 * p] = a[4 + KP];
      out.absgrad[2 * p + 1] = a[5 + KP];
      for (int ch = 0; ch < C; ++ch) out.v_colors[p * C + ch] = a[6 + KP + ch];
    }
  }
  if (std::getenv("SPLATFORGE_PROFILE")) {
    const double t_end = omp_get_wtime();
    int64_t rows_written = 0;  // intersections with a contribution (the rest lie behind their pixels' last ones)
    for (int64_t e = 0; e < m; ++e) rows_written += written[e];
    std::fprintf(stderr, "splatforge cpu bwd: tiles %.2f ms, per-primitive sums %.2f ms, gradient rows written %lld of %lld\n",
                 1e3 * (t_sums - t_tiles), 1e3 * (t_end - t_sums), static_cast<long long>(rows_written),
                 static_cast<long long>(m));
  }
}

}  // namespace sf_cpu
