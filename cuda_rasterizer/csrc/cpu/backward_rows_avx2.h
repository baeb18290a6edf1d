// AVX2 backward of one tile (float, 3 channels, rows of at most 16 pixels, a footprint with a RowAlpha8 kernel):
// backward_tile_rows_avx512 for CPUs without AVX-512. A row's two halves of 8 lanes (the forward's
// blend_half_row_avx2 alphas) walk the row's primitive list (the forward's, see list_tile_rows) back to front
// together, from the row's last contributor, with their transmittance and colour/depth "behind" sums in registers.
// Each primitive's per-lane gradients (layout of grad_row) of both halves are added, summed across the 8 lanes at
// once and added to its gradient row for this tile, rows in increasing order: deterministic and independent of the
// thread count. Same per-lane steps as backward_tile (undo_blend, channel_vjp, footprint_vjp). kDepth = false when
// the depth output has no upstream gradient (training on colours only): its channel is skipped, 7% of this kernel.
// kAbs = false when nobody asked for absgrad: Gaussians then sum 8 per-lane values instead of 12 (sigma's gradient
// times 1, dx and dx^2, from which the conic and mean2d gradients follow per row; opacity, depth, colours).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../sf_math.h"
#include "binning.h"
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

template <typename FP, bool kDepth, bool kAbs>
void backward_tile_rows_avx2(const RasterInputs<float>& in, const TileBins& bins, const Packed<float, FP>& pk,
                             const RasterGradIn<float>& gin, int64_t tile_index, int tiles_x, TileScratch<float>& sc,
                             float* G) {
  using P = Packed<float, FP>;
  using RA = RowAlpha8<float, FP>;
  constexpr int kRow = 2 + FP::kParams + 4 + 3;  // grad_row<FP>(3)
  static_assert(kRow % 4 == 0, "gradient rows are summed 8 and 4 components at a time");
  constexpr bool kCompact = !kAbs && std::is_same_v<FP, sf::GaussianFootprint<float>>;
  const auto [x0, y0, tw, th] = tile_rect(in, tile_index, tiles_x);
  const int64_t s = bins.tile_start[tile_index];
  const int count = int(bins.tile_start[tile_index + 1] - s);
  if (count == 0) return;
  int row_n[64];
  list_tile_rows<float, FP, true>(in, bins, pk, s, count, x0, y0, tw, th, sc, row_n);
  const __m256 one = avx2::set(1.0f), zero = avx2::zero();
  for (int r = 0; r < th; ++r) {
    const float dy_off = float(y0 + r) + 0.5f;
    const int32_t* list = sc.row_buf.data() + size_t(r) * count;
    const int64_t pix0 = int64_t(y0 + r) * in.width + x0;
    // per-lane upstream values of the row's 16 lanes; lanes past the row have no contributor (last = -1) and zero
    // gradients
    alignas(32) int32_t last_l[16];
    alignas(32) float tf_l[16], v0_l[16], v1_l[16], v2_l[16], vd_l[16], va_l[16];
    int row_last = -1;
    for (int x = 0; x < 16; ++x) {
      const bool in_row = x < tw;
      const int64_t pix = pix0 + x;
      const int32_t lg = in_row ? gin.last_pos[pix] : -1;
      last_l[x] = lg >= 0 ? int32_t(lg - s) : -1;
      row_last = std::max(row_last, last_l[x]);
      tf_l[x] = in_row ? gin.trans[pix] : 1.0f;
      v0_l[x] = in_row ? gin.v_colors[pix * 3] : 0.0f;
      v1_l[x] = in_row ? gin.v_colors[pix * 3 + 1] : 0.0f;
      v2_l[x] = in_row ? gin.v_colors[pix * 3 + 2] : 0.0f;
      vd_l[x] = in_row ? gin.v_depths[pix] : 0.0f;
      float va = in_row ? gin.v_alphas[pix] : 0.0f;
      if (in.background)  // the background's share of the alpha gradient: out = acc + T bg
        va -= in.background[0] * v0_l[x] + in.background[1] * v1_l[x] + in.background[2] * v2_l[x];
      va_l[x] = tf_l[x] * va;  // T_final v_alpha, the start of every dL/dalpha
    }
    if (row_last < 0) continue;
    // the row's two halves (lanes 0-7, 8-15): constant inputs stay in memory, the walked state in registers
    const __m256 px[2] = {_mm256_add_ps(avx2::set(float(x0) + 0.5f), _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7)),
                          _mm256_add_ps(avx2::set(float(x0) + 8.5f), _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7))};
    __m256 tr[2] = {_mm256_load_ps(tf_l), _mm256_load_ps(tf_l + 8)};
    __m256 behind[2][4] = {{zero, zero, zero, zero}, {zero, zero, zero, zero}};
    const float* vcs[4] = {v0_l, v1_l, v2_l, vd_l};
    int li = row_n[r] - 1;
    while (li >= 0 && list[li] > row_last) --li;  // lists ascend in j
    // Per batch of kBatch primitives (back to front): their alphas on both halves first (independent, so the exp
    // chains overlap), then the undo of the blend and the gradients, one primitive after the other.
    constexpr int kBatch = 8;
    constexpr int kCache = RA::kCache > 0 ? RA::kCache : 1;  // per-lane values the VJP reuses (eval_cached)
    alignas(32) float alphas[kBatch][16], exs[kBatch][16], cache[kBatch][kCache][16];
    alignas(32) float angles[RA::kTables ? kBatch : 1][16];  // row_angles of both halves (table footprints)
    int oks[kBatch];
    while (li >= 0) {
      const int nb = std::min(kBatch, li + 1);
      for (int i = 0; i < nb; ++i) {
        const int j = list[li - i];
        const float* d = sc.recs[j];
        const FP fp = FP::load(d + P::FPP, 0);
        const float dy = d[P::MY] - dy_off;
        int mask = 0;
        if constexpr (RA::kTables) {
          const float* w = d + RA::kWaveOffset;
          RA::row_angles(w, d[P::MX] - (float(x0) + 0.5f), dy, w, d[P::MX] - (float(x0) + 8.5f), dy, angles[i]);
        }
        for (int h = 0; h < 2; ++h) {
          __m256 ex;
          __m256 alpha;
          if constexpr (RA::kTables)
            alpha = RA::eval_cached_tab(fp, d + RA::kWaveOffset, angles[i] + 4 * h, angles[i] + 8 + 4 * h,
                                        _mm256_sub_ps(avx2::set(d[P::MX]), px[h]), dy, d[P::OP], d[P::RX], ex,
                                        cache[i][0] + 8 * h, 16);
          else
            alpha = RA::eval_cached(fp, _mm256_sub_ps(avx2::set(d[P::MX]), px[h]), dy, d[P::OP], d[P::RX], ex,
                                    cache[i][0] + 8 * h, 16);
          const __m256i last = _mm256_load_si256(reinterpret_cast<const __m256i*>(last_l + 8 * h));
          const __m256 after_last = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(j), last));
          const __m256 ok = _mm256_andnot_ps(after_last, _mm256_cmp_ps(alpha, zero, _CMP_GT_OQ));
          mask |= _mm256_movemask_ps(ok) << (8 * h);
          _mm256_store_ps(alphas[i] + 8 * h, _mm256_and_ps(ok, alpha));
          _mm256_store_ps(exs[i] + 8 * h, ex);
        }
        oks[i] = mask;
      }
      for (int i = 0; i < nb; ++i) {
        if (oks[i] == 0) continue;
        const int j = list[li - i];
        const float* d = sc.recs[j];
        const FP fp = FP::load(d + P::FPP, 0);
        const float dy = d[P::MY] - dy_off, op = d[P::OP];
        const float cvals[4] = {d[P::COL], d[P::COL + 1], d[P::COL + 2], d[P::DEP]};
        // gradient row layout: mean2d(2), params(kP), opacity, depth, absgrad(2), colours(3); both halves summed
        __m256 g[kRow];
        for (int q = 0; q < kRow; ++q) g[q] = zero;  // kCompact: g[0..7] = sigma's gradient x 1, dx, dx^2; opacity,
                                                     // colours, depth
        for (int h = 0; h < 2; ++h) {
          // a half with no contributing lane changes nothing (its weights and gradients are all 0)
          if (((oks[i] >> (8 * h)) & 0xff) == 0) continue;
          const __m256 alpha = _mm256_load_ps(alphas[i] + 8 * h), ex = _mm256_load_ps(exs[i] + 8 * h);
          const __m256 ok = _mm256_cmp_ps(alpha, zero, _CMP_GT_OQ);
          const __m256 dx = _mm256_sub_ps(avx2::set(d[P::MX]), px[h]);
          // undo_blend
          const __m256 ra = _mm256_div_ps(one, _mm256_sub_ps(one, alpha));
          const __m256 tb = _mm256_mul_ps(tr[h], ra);
          const __m256 w = _mm256_and_ps(ok, _mm256_mul_ps(alpha, tb));
          __m256 va = _mm256_and_ps(ok, _mm256_mul_ps(_mm256_load_ps(va_l + 8 * h), ra));
          tr[h] = _mm256_blendv_ps(tr[h], tb, ok);
          // channel_vjp for r, g, b and depth
          constexpr int kChannels = kDepth ? 4 : 3;
          __m256 gch[4];
          for (int ch = 0; ch < kChannels; ++ch) {
            const __m256 cv = avx2::set(cvals[ch]), vc = _mm256_load_ps(vcs[ch] + 8 * h);
            const __m256 term = _mm256_and_ps(ok, _mm256_fmsub_ps(cv, tb, _mm256_mul_ps(behind[h][ch], ra)));
            va = _mm256_fmadd_ps(term, vc, va);
            behind[h][ch] = _mm256_fmadd_ps(w, cv, behind[h][ch]);
            gch[ch] = _mm256_mul_ps(w, vc);
          }
          // footprint_vjp (ex is the footprint's factor); the MAX_ALPHA clamp has no gradient
          const __m256 raw = _mm256_mul_ps(avx2::set(op), ex);
          const __m256 pass = _mm256_and_ps(ok, _mm256_cmp_ps(raw, avx2::set(float(sf::MAX_ALPHA)), _CMP_LE_OQ));
          const __m256 v_fac = _mm256_and_ps(pass, _mm256_mul_ps(avx2::set(op), va));
          const __m256 g_o = _mm256_and_ps(pass, _mm256_mul_ps(ex, va));
          if constexpr (kCompact) {
            const __m256 vs = _mm256_mul_ps(avx2::neg(ex), v_fac);  // d loss / d sigma
            const __m256 vs_dx = _mm256_mul_ps(vs, dx);
            g[0] = _mm256_add_ps(g[0], vs);
            g[1] = _mm256_add_ps(g[1], vs_dx);
            g[2] = _mm256_fmadd_ps(vs_dx, dx, g[2]);
            g[3] = _mm256_add_ps(g[3], g_o);
            for (int ch = 0; ch < 3; ++ch) g[4 + ch] = _mm256_add_ps(g[4 + ch], gch[ch]);
            if constexpr (kDepth) g[7] = _mm256_add_ps(g[7], gch[3]);
            continue;
          }
          __m256 vp[FP::kParams], vmx, vmy;
          if constexpr (RA::kTables)
            RA::factor_vjp_tab(fp, d + RA::kWaveOffset, angles[i] + 4 * h, angles[i] + 8 + 4 * h, dx, dy, ex, v_fac,
                               cache[i][0] + 8 * h, 16, vp, vmx, vmy);
          else
            RA::factor_vjp_cached(fp, dx, dy, ex, v_fac, cache[i][0] + 8 * h, 16, vp, vmx, vmy);
          int q = 0;
          g[q] = _mm256_add_ps(g[q], vmx), ++q;
          g[q] = _mm256_add_ps(g[q], vmy), ++q;
          for (int k = 0; k < FP::kParams; ++k) g[q] = _mm256_add_ps(g[q], vp[k]), ++q;
          g[q] = _mm256_add_ps(g[q], g_o), ++q;
          if constexpr (kDepth) g[q] = _mm256_add_ps(g[q], gch[3]);
          ++q;
          g[q] = _mm256_add_ps(g[q], avx2::abs(vmx)), ++q;
          g[q] = _mm256_add_ps(g[q], avx2::abs(vmy)), ++q;
          for (int ch = 0; ch < 3; ++ch) g[q] = _mm256_add_ps(g[q], gch[ch]), ++q;
        }
        float* grow = G + (s + j) * kRow;
        if constexpr (kCompact) {
          alignas(32) float sums[8];
          _mm256_store_ps(sums, avx2::sum_lanes8(g));
          add_gaussian_row_sums(grow, fp.a, fp.b, fp.c, dy, sums[0], sums[1], sums[2], sums[3], sums[7], sums[4],
                                sums[5], sums[6]);
          continue;
        }
        int k = 0;
        for (; k + 8 <= kRow; k += 8)
          _mm256_storeu_ps(grow + k, _mm256_add_ps(_mm256_loadu_ps(grow + k), avx2::sum_lanes8(g + k)));
        if (k < kRow) _mm_storeu_ps(grow + k, _mm_add_ps(_mm_loadu_ps(grow + k), avx2::sum_lanes4(g + k)));
      }
      li -= nb;
    }
  }
}
#endif

}  // namespace sf_cpu
