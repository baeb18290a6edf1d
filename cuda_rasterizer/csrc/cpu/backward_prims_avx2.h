// The AVX2 backward blend of a tile (CPUs without AVX-512): backward_prims_avx512.h's primitive-by-primitive scheme
// on 8-lane halves of 16-lane rows. Same per-lane steps as backward_tile (undo_blend, channel_vjp, footprint_vjp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../sf_math.h"
#include "binning.h"
#include "grad_rows.h"
#include "raster_grads.h"
#include "row_alpha_avx2.h"
#include "tile_rows.h"

namespace sf_cpu {

#if defined(SF_ROWS_AVX2)
namespace avx2 {

// Lane i of the result = the sum of the 8 lanes of v[i].
inline __m256 sum_lanes8(const __m256 v[8]) {
  const __m256 b0 = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
  const __m256 b1 = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(b0, b1, 0x20), _mm256_permute2f128_ps(b0, b1, 0x31));
}

// Lane i of the result = the sum of the 8 lanes of v[i], for 4 vectors.
inline __m128 sum_lanes4(const __m256 v[4]) {
  const __m256 b = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
  return _mm_add_ps(_mm256_castps256_ps128(b), _mm256_extractf128_ps(b, 1));
}

}  // namespace avx2

// Rows of the tile (bit r) that the primitive with packed record d may reach: its box span, then the footprint's
// conservative row test over the whole row (the union of the forward's half-row lists: a half the forward skipped
// has all-zero alphas there, so undoing it changes nothing).
template <typename FP>
inline uint32_t tile_row_mask_scalar(const RasterInputs<float>& in, const float* d, int x0, int y0, int tw, int th) {
  using P = Packed<float, FP>;
  const float mx = d[P::MX], my = d[P::MY];
  const FP fp = FP::load(d + P::FPP, 0);
  int r0, r1;
  pixel_span(my, d[P::RY], in.height, r0, r1);
  r0 = std::max(r0 - y0, 0);
  r1 = std::min(r1 - y0, th - 1);
  const float dx_lo = mx - (float(x0 + tw - 1) + 0.5f + 1.0f), dx_hi = mx - (float(x0) + 0.5f - 1.0f);
  uint32_t mask = 0;
  for (int r = r0; r <= r1; ++r)
    mask |= uint32_t(fp.row_may_hit(my - (float(y0 + r) + 0.5f), d[P::LEV], d[P::RSL], dx_lo, dx_hi)) << r;
  return mask;
}

// The AVX2 backward of one tile (float, 3 channels, tiles up to 16 pixels wide, a footprint with a RowAlpha8 kernel):
// backward_tile_prims_avx512's scheme with each 16-lane row as two halves of 8 (the forward's blend_half_row_avx2
// alphas, bit for bit). Per primitive (back to front from the tile's last contributor): the alphas of every live row
// and half first, then the undo on the halves where something contributes, its per-lane gradients of all rows and
// both halves accumulated in 8-lane registers and summed across lanes once per (tile, primitive). The rows' state
// (transmittance, "behind" sums, upstream gradients) lives in a 16 x 16-lane table. Every gradient row of the tile is
// written (zeros where nothing contributed). kDepth, kAbs: as the AVX-512 kernel (kCompact: Gaussians without
// absgrad accumulate sigma's gradient times 1, dx, dx^2, dy, dx dy, dy^2, opacity, depth, colours).
template <typename FP, bool kDepth, bool kAbs>
void backward_tile_prims_avx2(const RasterInputs<float>& in, const TileBins& bins, const Packed<float, FP>& pk,
                              const RasterGradIn<float>& gin, int64_t tile_index, int tiles_x, TileScratch<float>& sc,
                              const GradRows<float>& G) {
  using P = Packed<float, FP>;
  using RA = RowAlpha8<float, FP>;
  constexpr int kRow = 2 + FP::kParams + 4 + 3;  // grad_row<FP>(3)
  static_assert(kRow % 4 == 0, "gradient rows are summed 8 and 4 components at a time");
  constexpr bool kCompact = !kAbs && std::is_same_v<FP, sf::GaussianFootprint<float>>;
  constexpr int kChannels = kDepth ? 4 : 3;
  constexpr int kAcc = kCompact ? 16 : kRow;
  constexpr int kCache = RA::kCache > 0 ? RA::kCache : 1;
  const auto [x0, y0, tw, th] = tile_rect(in, tile_index, tiles_x);
  const int64_t s = bins.tile_start[tile_index];
  const int count = int(bins.tile_start[tile_index + 1] - s);
  if (count == 0) return;
  // Gradient rows are written only where something contributed (grad_rows.h), assembled in `line` (whole cache
  // lines), then stored at their emission index.
  alignas(64) float line[(kRow + 15) / 16 * 16] = {};  // (padding past kRow stays 0)
  const int tile_tx = int(tile_index % tiles_x), tile_ty = int(tile_index / tiles_x);
  const PixelToTile to_tile(in.tile);
  // per-row state, lanes past the row: no contributor (last -1), zero gradients
  alignas(32) float trans[16][16], behind[4][16][16], v_col[4][16][16], t_va[16][16];
  alignas(32) int32_t last[16][16];
  int row_last[16], jmax = -1;
  for (int r = 0; r < 16; ++r) {
    row_last[r] = -1;
    if (r >= th) continue;
    const int64_t pix0 = int64_t(y0 + r) * in.width + x0;
    for (int x = 0; x < 16; ++x) {
      const bool in_row = x < tw;
      const int64_t pix = pix0 + x;
      const int32_t lg = in_row ? gin.last_pos[pix] : -1;
      last[r][x] = lg >= 0 ? int32_t(lg - s) : -1;
      row_last[r] = std::max(row_last[r], last[r][x]);
      trans[r][x] = in_row ? gin.trans[pix] : 1.0f;
      for (int ch = 0; ch < 3; ++ch) v_col[ch][r][x] = in_row ? gin.v_colors[pix * 3 + ch] : 0.0f;
      v_col[3][r][x] = in_row && kDepth ? gin.v_depths[pix] : 0.0f;
      float va = in_row ? gin.v_alphas[pix] : 0.0f;
      if (in.background)  // the background's share of the alpha gradient: out = acc + T bg
        va -= in.background[0] * v_col[0][r][x] + in.background[1] * v_col[1][r][x] + in.background[2] * v_col[2][r][x];
      t_va[r][x] = trans[r][x] * va;
      for (int ch = 0; ch < 4; ++ch) behind[ch][r][x] = 0.0f;
    }
    jmax = std::max(jmax, row_last[r]);
  }
  if (jmax < 0) return;
  sc.recs.resize(jmax + 1);
  for (int j = 0; j <= jmax; ++j) {
    sc.recs[j] = pk.rec(bins.ids[s + j]);
    __builtin_prefetch(&bins.prim_offset[bins.ids[s + j]]);  // the gradient row's emission index (grad_rows.h)
  }
  const __m256 one = avx2::set(1.0f), zero = avx2::zero();
  const __m256 px[2] = {_mm256_add_ps(avx2::set(float(x0) + 0.5f), _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7)),
                        _mm256_add_ps(avx2::set(float(x0) + 8.5f), _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7))};
  alignas(32) float alphas[16][16], exs[16][16], cache[16][kCache][16];
  alignas(32) float angles[RA::kTables ? 16 : 1][16];  // row_angles of both halves (table footprints)
  int rows[16], oks[16];
  for (int j = jmax; j >= 0; --j) {
    if (j >= kPrefetch) __builtin_prefetch(sc.recs[j - kPrefetch]);
    const float* d = sc.recs[j];
    uint32_t live = 0;
    for (int r = 0; r < th; ++r) live |= uint32_t(row_last[r] >= j) << r;
    live &= tile_row_mask_scalar<FP>(in, d, x0, y0, tw, th);
    if (live == 0) continue;
    const FP fp = FP::load(d + P::FPP, 0);
    const float mx = d[P::MX], my = d[P::MY], op = d[P::OP], rx = d[P::RX];
    const __m256 dxh[2] = {_mm256_sub_ps(avx2::set(mx), px[0]), _mm256_sub_ps(avx2::set(mx), px[1])};
    const __m256i jv = _mm256_set1_epi32(j);
    // pass 1: alphas of every live row and half, and the rows where something contributes
    int n_rows = 0;
    for (uint32_t m = live; m != 0; m &= m - 1) {
      const int r = __builtin_ctz(m);
      const float dy = my - (float(y0 + r) + 0.5f);
      if constexpr (RA::kTables) {
        const float* w = d + RA::kWaveOffset;
        RA::row_angles(w, mx - (float(x0) + 0.5f), dy, w, mx - (float(x0) + 8.5f), dy, angles[n_rows]);
      }
      int mask = 0;
      for (int h = 0; h < 2; ++h) {
        __m256 ex, alpha;
        if constexpr (RA::kTables)
          alpha = RA::eval_cached_tab(fp, d + RA::kWaveOffset, angles[n_rows] + 4 * h, angles[n_rows] + 8 + 4 * h,
                                      dxh[h], dy, op, rx, ex, cache[n_rows][0] + 8 * h, 16);
        else
          alpha = RA::eval_cached(fp, dxh[h], dy, op, rx, ex, cache[n_rows][0] + 8 * h, 16);
        const __m256i lst = _mm256_load_si256(reinterpret_cast<const __m256i*>(last[r] + 8 * h));
        const __m256 after_last = _mm256_castsi256_ps(_mm256_cmpgt_epi32(jv, lst));
        const __m256 ok = _mm256_andnot_ps(after_last, _mm256_cmp_ps(alpha, zero, _CMP_GT_OQ));
        mask |= _mm256_movemask_ps(ok) << (8 * h);
        _mm256_store_ps(alphas[n_rows] + 8 * h, _mm256_and_ps(ok, alpha));
        _mm256_store_ps(exs[n_rows] + 8 * h, ex);
      }
      oks[n_rows] = mask;
      rows[n_rows] = r;
      n_rows += mask != 0;
    }
    if (n_rows == 0) continue;
    // pass 2: undo the blend on those rows' halves; gradients of both halves into the same 8-lane accumulators
    __m256 g[kAcc];
    for (auto& v : g) v = zero;
    const float cvals[4] = {d[P::COL], d[P::COL + 1], d[P::COL + 2], d[P::DEP]};
    for (int i = 0; i < n_rows; ++i) {
      const int r = rows[i];
      const float dy = my - (float(y0 + r) + 0.5f);
      for (int h = 0; h < 2; ++h) {
        if (((oks[i] >> (8 * h)) & 0xff) == 0) continue;  // nothing of this half contributes
        const __m256 alpha = _mm256_load_ps(alphas[i] + 8 * h), ex = _mm256_load_ps(exs[i] + 8 * h);
        const __m256 ok = _mm256_cmp_ps(alpha, zero, _CMP_GT_OQ);
        const __m256 dx = dxh[h];
        // undo_blend
        const __m256 ra = _mm256_div_ps(one, _mm256_sub_ps(one, alpha));
        const __m256 tr = _mm256_load_ps(trans[r] + 8 * h);
        const __m256 tb = _mm256_mul_ps(tr, ra);
        const __m256 w = _mm256_and_ps(ok, _mm256_mul_ps(alpha, tb));
        __m256 va = _mm256_and_ps(ok, _mm256_mul_ps(_mm256_load_ps(t_va[r] + 8 * h), ra));
        _mm256_store_ps(trans[r] + 8 * h, _mm256_blendv_ps(tr, tb, ok));
        // channel_vjp for r, g, b (and depth)
        __m256 gch[4];
        for (int ch = 0; ch < kChannels; ++ch) {
          const __m256 cv = avx2::set(cvals[ch]), vc = _mm256_load_ps(v_col[ch][r] + 8 * h);
          const __m256 bh = _mm256_load_ps(behind[ch][r] + 8 * h);
          const __m256 term = _mm256_and_ps(ok, _mm256_fmsub_ps(cv, tb, _mm256_mul_ps(bh, ra)));
          va = _mm256_fmadd_ps(term, vc, va);
          _mm256_store_ps(behind[ch][r] + 8 * h, _mm256_fmadd_ps(w, cv, bh));
          gch[ch] = _mm256_mul_ps(w, vc);
        }
        // footprint_vjp (ex is the footprint's factor); the MAX_ALPHA clamp has no gradient
        const __m256 raw = _mm256_mul_ps(avx2::set(op), ex);
        const __m256 pass = _mm256_and_ps(ok, _mm256_cmp_ps(raw, avx2::set(float(sf::MAX_ALPHA)), _CMP_LE_OQ));
        const __m256 v_fac = _mm256_and_ps(pass, _mm256_mul_ps(avx2::set(op), va));
        const __m256 g_o = _mm256_and_ps(pass, _mm256_mul_ps(ex, va));
        if constexpr (kCompact) {
          const __m256 vs = _mm256_mul_ps(avx2::neg(ex), v_fac);  // d loss / d sigma
          const __m256 vs_dx = _mm256_mul_ps(vs, dx), dyv = avx2::set(dy);
          g[0] = _mm256_add_ps(g[0], vs);
          g[1] = _mm256_add_ps(g[1], vs_dx);
          g[2] = _mm256_fmadd_ps(vs_dx, dx, g[2]);
          g[3] = _mm256_fmadd_ps(vs, dyv, g[3]);
          g[4] = _mm256_fmadd_ps(vs_dx, dyv, g[4]);
          g[5] = _mm256_fmadd_ps(vs, avx2::set(dy * dy), g[5]);
          g[6] = _mm256_add_ps(g[6], g_o);
          for (int ch = 0; ch < 3; ++ch) g[8 + ch] = _mm256_add_ps(g[8 + ch], gch[ch]);
          if constexpr (kDepth) g[7] = _mm256_add_ps(g[7], gch[3]);
          continue;
        }
        __m256 vp[FP::kParams], vmx, vmy;
        if constexpr (RA::kTables)
          RA::factor_vjp_tab(fp, d + RA::kWaveOffset, angles[i] + 4 * h, angles[i] + 8 + 4 * h, dx, dy, ex, v_fac,
                             cache[i][0] + 8 * h, 16, vp, vmx, vmy);
        else
          RA::factor_vjp_cached(fp, dx, dy, ex, v_fac, cache[i][0] + 8 * h, 16, vp, vmx, vmy);
        // gradient row layout: mean2d(2), params(kP), opacity, depth, absgrad(2), colours(3)
        int q = 0;
        g[q] = _mm256_add_ps(g[q], vmx), ++q;
        g[q] = _mm256_add_ps(g[q], vmy), ++q;
        for (int k = 0; k < FP::kParams; ++k) g[q] = _mm256_add_ps(g[q], vp[k]), ++q;
        g[q] = _mm256_add_ps(g[q], g_o), ++q;
        if constexpr (kDepth) g[q] = _mm256_add_ps(g[q], gch[3]);
        ++q;
        if constexpr (kAbs) {
          g[q] = _mm256_add_ps(g[q], avx2::abs(vmx)), ++q;
          g[q] = _mm256_add_ps(g[q], avx2::abs(vmy)), ++q;
        } else {
          q += 2;
        }
        for (int ch = 0; ch < 3; ++ch) g[q] = _mm256_add_ps(g[q], gch[ch]), ++q;
      }
    }
    if constexpr (kCompact) {
      alignas(32) float sums[16];
      _mm256_store_ps(sums, avx2::sum_lanes8(g));
      _mm256_store_ps(sums + 8, avx2::sum_lanes8(g + 8));
      set_gaussian_tile_row(line, fp.a, fp.b, fp.c, sums);
    } else {
      int k = 0;
      for (; k + 8 <= kRow; k += 8) _mm256_store_ps(line + k, avx2::sum_lanes8(g + k));
      if (k < kRow) _mm_store_ps(line + k, avx2::sum_lanes4(g + k));
    }
    G.store(emission_of<float, FP>(in, bins, d, s + j, tile_tx, tile_ty, to_tile), line, kRow);
  }
}
#endif

}  // namespace sf_cpu
