// The AVX-512 backward blend of a 16-pixel-wide tile, primitive by primitive. The forward blends a tile row by row;
// the backward undoes it back to front, and every pixel only needs its own primitives in reverse order, so the loop
// here runs over the tile's primitives (back to front, from the last contributor of any row) and, inside, over the
// rows each one reaches. Per row, its transmittance, colour/depth "behind" sums and upstream gradients live in a
// small table (16 rows x 16 lanes, L1-resident); per primitive, its per-lane gradients accumulate across all its
// rows in registers and are summed across lanes once per tile, not once per row (the lane sums were a quarter of the
// row-by-row kernel). The rows of one primitive are independent of each other, which gives the core the
// instruction-level parallelism the row-by-row kernel had to get from batching primitives: their alphas come first
// (independent exp chains), then the undo and the gradients on the rows where something contributes.
// Same per-lane steps as backward_tile (undo_blend, channel_vjp, footprint_vjp), alphas from the forward's RowAlpha
// (bit for bit), deterministic and independent of the thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../sf_math.h"
#include "binning.h"
#include "gabor_waves_avx512.h"
#include "grad_rows.h"
#include "raster_grads.h"
#include "row_alpha.h"
#include "tile_rows.h"

#if defined(__AVX512F__)
namespace sf_cpu {
namespace avx512 {

// Lane i of the result = the sum of the 16 lanes of v[i] (a butterfly of 128-bit and 32-bit shuffles: 30 operations
// for 16 horizontal sums, against ~8 each done one by one). The butterfly leaves the sums in 4x4-transposed lane
// order, so the inputs are taken in that order.
inline __m512 sum_lanes16(const __m512 v[16]) {
  constexpr int kOrder[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};
  __m512 a[8], b[4], c[2];
  for (int i = 0; i < 8; ++i) {
    const __m512 x = v[kOrder[2 * i]], y = v[kOrder[2 * i + 1]];
    a[i] = _mm512_add_ps(_mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(3, 2, 3, 2)));
  }
  for (int i = 0; i < 4; ++i)
    b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  for (int i = 0; i < 2; ++i)
    c[i] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  return _mm512_add_ps(_mm512_shuffle_ps(c[0], c[1], _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_ps(c[0], c[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

}  // namespace avx512

// One tile's per-row state for the backward: upstream gradients and what the walk back to front updates.
struct BackwardRows16 {
  alignas(64) float trans[16][16];      // transmittance in front of the primitive being undone (starts at the final)
  alignas(64) float behind[4][16][16];  // sum over the primitives behind of w * colour (r, g, b, depth)
  alignas(64) float v_col[4][16][16];   // dL/d(pixel colour, depth)
  alignas(64) float t_va[16][16];       // final transmittance x dL/dalpha (the background's share removed)
  alignas(64) int32_t last[16][16];     // each pixel's last contributor (local index), -1 none
  alignas(64) int32_t row_last[16];     // each row's last contributor, -1 none
};

// Fills the per-row state of a tile from the forward's outputs and the upstream gradients; returns the largest
// last contributor of the tile (-1: nothing to undo).
template <bool kDepth>
inline int load_backward_rows16(const RasterInputs<float>& in, const RasterGradIn<float>& gin, int64_t s, int x0,
                                int y0, int tw, int th, BackwardRows16& st) {
  const __mmask16 lanes = static_cast<__mmask16>((1u << tw) - 1u);
  const __m512i lane_idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i rgb_idx = _mm512_mullo_epi32(lane_idx, _mm512_set1_epi32(3));
  const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
  int jmax = -1;
  for (int r = 0; r < 16; ++r) {
    st.row_last[r] = -1;
    if (r >= th) continue;
    const int64_t pix0 = int64_t(y0 + r) * in.width + x0;
    const __m512i last_global = _mm512_mask_loadu_epi32(_mm512_set1_epi32(-1), lanes, gin.last_pos + pix0);
    const __mmask16 has_last = _mm512_cmp_epi32_mask(last_global, _mm512_setzero_si512(), _MM_CMPINT_NLT);
    const __m512i last = _mm512_mask_sub_epi32(_mm512_set1_epi32(-1), has_last, last_global, _mm512_set1_epi32(int32_t(s)));
    st.row_last[r] = _mm512_reduce_max_epi32(last);
    if (st.row_last[r] < 0) continue;
    jmax = std::max(jmax, st.row_last[r]);
    _mm512_store_si512(st.last[r], last);
    const __m512 t_final = _mm512_mask_loadu_ps(one, lanes, gin.trans + pix0);
    const float* vc_base = gin.v_colors + pix0 * 3;
    __m512 vc[4];
    for (int ch = 0; ch < 3; ++ch) vc[ch] = _mm512_mask_i32gather_ps(zero, lanes, rgb_idx, vc_base + ch, 4);
    vc[3] = kDepth ? _mm512_maskz_loadu_ps(lanes, gin.v_depths + pix0) : zero;
    __m512 v_alpha_out = _mm512_maskz_loadu_ps(lanes, gin.v_alphas + pix0);
    if (in.background)  // the background's share of the alpha gradient: out = acc + T bg
      for (int ch = 0; ch < 3; ++ch) v_alpha_out = _mm512_fnmadd_ps(_mm512_set1_ps(in.background[ch]), vc[ch], v_alpha_out);
    _mm512_store_ps(st.t_va[r], _mm512_mul_ps(t_final, v_alpha_out));
    _mm512_store_ps(st.trans[r], t_final);
    for (int ch = 0; ch < 4; ++ch) {
      _mm512_store_ps(st.v_col[ch][r], vc[ch]);
      _mm512_store_ps(st.behind[ch][r], zero);
    }
  }
  return jmax;
}

// Backward of one tile for float, 3 channels and 16-lane rows (see the top of this file). kDepth = false when the
// depth output has no upstream gradient: its channel is skipped. kAbs = false when nobody asked for absgrad:
// Gaussians then accumulate sigma's gradient times 1, dx, dx^2, dy, dx dy and dy^2 (dy is constant along a row), from
// which the conic and mean2d gradients follow once per tile, and the opacity, depth and colour gradients: 11 lane
// sums per (tile, primitive). 4-term Gabor primitives without absgrad add their wave gradients by angle addition
// (gabor_waves_avx512.h): 11 + 16 lane sums. Other footprints (and absgrad) accumulate their full per-lane gradient
// rows.
template <typename FP, bool kDepth, bool kAbs>
void backward_tile_prims_avx512(const RasterInputs<float>& in, const TileBins& bins, const Packed<float, FP>& pk,
                                const RasterGradIn<float>& gin, int64_t tile_index, int tiles_x, TileScratch<float>& sc,
                                const GradRows<float>& G) {
  using P = Packed<float, FP>;
  using RA = RowAlpha<float, FP>;
  constexpr int kRow = 2 + FP::kParams + 4 + 3;  // grad_row<FP>(3)
  constexpr int kVecs = (kRow + 15) / 16;          // vectors per gradient row (Gabor rows need two)
  constexpr int kChannels = kDepth ? 4 : 3;
  constexpr bool kWaves = !kAbs && std::is_same_v<FP, sf::GaborFootprint<float, 4>>;
  constexpr bool kShort = !kAbs && (std::is_same_v<FP, sf::GaussianFootprint<float>> || kWaves);
  constexpr int kAcc = kWaves ? 32 : 16 * kVecs;  // per-lane accumulators (kWaves: 11 envelope + 16 wave sums)
  constexpr int kCache = RA::kCache > 0 ? RA::kCache : 1;
  const auto [x0, y0, tw, th] = tile_rect(in, tile_index, tiles_x);
  const int64_t s = bins.tile_start[tile_index];
  const int count = int(bins.tile_start[tile_index + 1] - s);
  if (count == 0) return;
  // Gradient rows are written only where something contributed (grad_rows.h), assembled in `line` (whole cache
  // lines), then stored at their emission index; intersections behind every pixel's last contributor write nothing.
  alignas(64) float line[16 * kVecs] = {};  // (padding past kRow stays 0)
  const int tile_tx = int(tile_index % tiles_x), tile_ty = int(tile_index / tiles_x);
  const PixelToTile to_tile(in.tile);
  BackwardRows16 st;
  const int jmax = load_backward_rows16<kDepth>(in, gin, s, x0, y0, tw, th, st);
  if (jmax < 0) return;
  mask_tile_rows<FP>(in, bins, pk, s, jmax + 1, x0, y0, tw, th, sc);  // those behind the last contributors: no rows
  const __m512i lane_idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512 px = _mm512_add_ps(_mm512_set1_ps(float(x0) + 0.5f), _mm512_cvtepi32_ps(lane_idx));
  const __m512 one = _mm512_set1_ps(1.0f), two = _mm512_set1_ps(2.0f), zero = _mm512_setzero_ps();
  const __m512i row_last = _mm512_load_si512(st.row_last);
  alignas(64) float alphas[16][16], exs[16][16], cache[16][kCache][16];
  __mmask16 oks[16];
  for (int j = jmax; j >= 0; --j) {
    if (j >= kPrefetch) __builtin_prefetch(sc.recs[j - kPrefetch]);
    const __mmask16 live = static_cast<__mmask16>(
        sc.row_mask[j] & _mm512_cmp_epi32_mask(row_last, _mm512_set1_epi32(j), _MM_CMPINT_NLT));
    if (live == 0) {
      continue;
    }
    const float* d = sc.recs[j];
    const FP fp = FP::load(d + P::FPP, 0);
    const float mx = d[P::MX], my = d[P::MY], op = d[P::OP], rx = d[P::RX];
    const __m512 dx = _mm512_sub_ps(_mm512_set1_ps(mx), px);
    const __m512i jv = _mm512_set1_epi32(j);
    const __m512 cv[4] = {_mm512_set1_ps(d[P::COL]), _mm512_set1_ps(d[P::COL + 1]), _mm512_set1_ps(d[P::COL + 2]),
                          _mm512_set1_ps(d[P::DEP])};
    const __m512 opv = _mm512_set1_ps(op), neg_op = _mm512_set1_ps(-op), max_alpha = _mm512_set1_ps(float(sf::MAX_ALPHA));
    // kShort: sigma's gradient x 1, dx, dx^2, dy, dx dy, dy^2; then opacity, depth, r, g, b. Otherwise the row layout.
    __m512 acc[kAcc];
    for (auto& a : acc) a = zero;
    // pass 1: the alphas of all live rows (independent exp chains, no branch on their values), and the rows where
    // something contributes
    int rows[16], n_rows = 0;
    for (unsigned m = live; m != 0; m &= m - 1) {
      const int r = __builtin_ctz(m);
      __m512 ex;
      const __m512 alpha = RA::eval_cached(fp, dx, my - (float(y0 + r) + 0.5f), op, rx, ex, cache[n_rows][0]);
      oks[n_rows] = _mm512_mask_cmp_ps_mask(_mm512_cmp_epi32_mask(jv, _mm512_load_si512(st.last[r]), _MM_CMPINT_LE),
                                            alpha, zero, _CMP_GT_OQ);
      _mm512_store_ps(alphas[n_rows], alpha);
      _mm512_store_ps(exs[n_rows], ex);
      rows[n_rows] = r;
      n_rows += oks[n_rows] != 0;
    }
    if (n_rows == 0) {
      continue;
    }
    [[maybe_unused]] GaborWaves4 waves;
    if constexpr (kWaves) waves.start(fp, mx - (float(x0) + 0.5f), my - (float(y0) + 0.5f));
    // pass 2: undo the blend on those rows and accumulate the gradients
    for (int i = 0; i < n_rows; ++i) {
      const int r = rows[i];
      const float dy = my - (float(y0 + r) + 0.5f);
      const __mmask16 ok = oks[i];
      const __m512 alpha = _mm512_load_ps(alphas[i]), ex = _mm512_load_ps(exs[i]);
      // undo_blend; 1 / (1 - alpha): rcp14 and one Newton step (< 1 ulp from the division)
      const __m512 om = _mm512_sub_ps(one, alpha), r0 = _mm512_rcp14_ps(om);
      const __m512 ra = _mm512_mul_ps(r0, _mm512_fnmadd_ps(om, r0, two));
      const __m512 tr = _mm512_load_ps(st.trans[r]);
      const __m512 tb = _mm512_mul_ps(tr, ra);
      const __m512 w = _mm512_maskz_mul_ps(ok, alpha, tb);
      __m512 va = _mm512_maskz_mul_ps(ok, _mm512_load_ps(st.t_va[r]), ra);
      _mm512_store_ps(st.trans[r], _mm512_mask_mov_ps(tr, ok, tb));
      // channel_vjp for r, g, b (and depth)
      __m512 gch[4];
      for (int ch = 0; ch < kChannels; ++ch) {
        const __m512 bh = _mm512_load_ps(st.behind[ch][r]), vc = _mm512_load_ps(st.v_col[ch][r]);
        const __m512 term = _mm512_fmsub_ps(cv[ch], tb, _mm512_mul_ps(bh, ra));
        va = _mm512_mask3_fmadd_ps(term, vc, va, ok);  // lanes outside ok keep va (0)
        _mm512_store_ps(st.behind[ch][r], _mm512_fmadd_ps(w, cv[ch], bh));
        gch[ch] = _mm512_mul_ps(w, vc);
      }
      if constexpr (!kDepth) gch[3] = zero;
      // footprint_vjp (ex is the footprint's factor)
      const __mmask16 pass = _mm512_mask_cmp_ps_mask(ok, _mm512_mul_ps(opv, ex), max_alpha, _CMP_LE_OQ);
      const __m512 g_o = _mm512_maskz_mul_ps(pass, ex, va);
      if constexpr (kShort) {
        const __m512 vs = _mm512_mul_ps(neg_op, g_o);  // d loss / d sigma = -op ex va
        const __m512 vs_dx = _mm512_mul_ps(vs, dx), dyv = _mm512_set1_ps(dy);
        acc[0] = _mm512_add_ps(acc[0], vs);
        acc[1] = _mm512_add_ps(acc[1], vs_dx);
        acc[2] = _mm512_fmadd_ps(vs_dx, dx, acc[2]);
        acc[3] = _mm512_fmadd_ps(vs, dyv, acc[3]);
        acc[4] = _mm512_fmadd_ps(vs_dx, dyv, acc[4]);
        acc[5] = _mm512_fmadd_ps(vs, _mm512_set1_ps(dy * dy), acc[5]);
        acc[6] = _mm512_add_ps(acc[6], g_o);
        for (int ch = 0; ch < 4; ++ch) acc[7 + (ch + 1) % 4] = _mm512_add_ps(acc[7 + (ch + 1) % 4], gch[ch]);
        if constexpr (kWaves)  // d loss / d modulation = exp(-sigma) x opacity x dL/dalpha
          waves.add_row(r, _mm512_maskz_mul_ps(pass, _mm512_mul_ps(_mm512_load_ps(cache[i][0]), opv), va), dy);
      } else {
        __m512 vp[FP::kParams], vmx, vmy;
        RA::factor_vjp_cached(fp, dx, dy, ex, _mm512_maskz_mul_ps(pass, opv, va), cache[i][0], vp, vmx, vmy);
        // gradient row layout: mean2d(2), params(kP), opacity, depth, absgrad(2), colours(3)
        int q = 0;
        acc[q] = _mm512_add_ps(acc[q], vmx), ++q;
        acc[q] = _mm512_add_ps(acc[q], vmy), ++q;
        for (int k = 0; k < FP::kParams; ++k, ++q) acc[q] = _mm512_add_ps(acc[q], vp[k]);
        acc[q] = _mm512_add_ps(acc[q], g_o), ++q;
        acc[q] = _mm512_add_ps(acc[q], gch[3]), ++q;
        if constexpr (kAbs) {
          acc[q] = _mm512_add_ps(acc[q], _mm512_abs_ps(vmx)), ++q;
          acc[q] = _mm512_add_ps(acc[q], _mm512_abs_ps(vmy)), ++q;
        } else {
          q += 2;
        }
        for (int ch = 0; ch < 3; ++ch, ++q) acc[q] = _mm512_add_ps(acc[q], gch[ch]);
      }
    }
    if constexpr (kWaves) {
      waves.finish(dx, acc + 11);
      for (int q = 27; q < 32; ++q) acc[q] = zero;
      alignas(64) float sums[32];
      _mm512_store_ps(sums, avx512::sum_lanes16(acc));
      _mm512_store_ps(sums + 16, avx512::sum_lanes16(acc + 16));
      set_gabor4_tile_row(line, fp, sums, sums + 11);
    } else if constexpr (kShort) {
      alignas(64) float sums[16];
      _mm512_store_ps(sums, avx512::sum_lanes16(acc));
      set_gaussian_tile_row(line, fp.a, fp.b, fp.c, sums);
    } else {
      for (int vi = 0; vi < kVecs; ++vi) _mm512_store_ps(line + 16 * vi, avx512::sum_lanes16(acc + 16 * vi));
    }
    G.store(emission_of<float, FP>(in, bins, d, s + j, tile_tx, tile_ty, to_tile), line, kRow);
  }
}

}  // namespace sf_cpu
#endif
