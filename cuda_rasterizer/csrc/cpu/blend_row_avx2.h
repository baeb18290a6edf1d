// AVX2 forward blend of 8 pixels of a tile row (float, 3 channels, a footprint with a RowAlpha8 kernel): what
// blend_row_steps_avx512 does for 16 lanes, for CPUs without AVX-512. A 16-pixel row runs as two independent halves, so
// the row state (transmittance, colours, depth, alive mask, last contributor) fits the 16 ymm registers and each
// half stops on its own once its pixels are saturated. Without this kernel, the generic per-lane loop keeps that
// state in memory and updates it with masked stores, which cost ~20 cycles each on AMD Zen.
#pragma once

#include <algorithm>
#include <cstdint>

#include "../sf_math.h"
#include "binning.h"
#include "row_alpha_avx2.h"
#include "tile_rows.h"

namespace sf_cpu {

#if defined(SF_ROWS_AVX2)
// Blends the row list `list` (local indices into recs, front to back) over the nw (1..8) pixels starting at x = xh
// of row y, writes those pixels' outputs and returns the number of pixel evaluations.
template <typename FP>
inline int64_t blend_half_row_avx2(const RasterInputs<float>& in, const TileBins& bins, const int32_t* list,
                                   int n_list, const float* const* recs, int64_t s, int xh, int y, int nw,
                                   const RasterOutputs<float>& out) {
  using P = Packed<float, FP>;
  using RA = RowAlpha8<float, FP>;
  const __m256 px = _mm256_add_ps(avx2::set(float(xh) + 0.5f), _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7));
  const __m256 one = avx2::set(1.0f), eps = avx2::set(float(sf::TRANSMITTANCE_EPS)), zero = avx2::zero();
  __m256 tr = one, acc0 = zero, acc1 = zero, acc2 = zero, accd = zero;
  __m256 last = _mm256_castsi256_ps(_mm256_set1_epi32(-1));  // int32 lanes kept in a float register
  __m256 alive = avx2::first_lanes(nw);
  const float dy_off = float(y) + 0.5f, x_lane0 = float(xh) + 0.5f;
  int64_t evals = 0;
  // Per batch of kBatch primitives: their alphas first (independent, so the exp chains overlap), then the blend.
  constexpr int kBatch = 8;
  alignas(32) float alphas[kBatch][8];
  for (int b0 = 0; b0 < n_list; b0 += kBatch) {
    const int nb = std::min(kBatch, n_list - b0);
    if constexpr (RA::kTables) {  // two primitives at a time: one sine-and-cosine call gives both their row angles
      alignas(32) float ang[16];
      for (int i = 0; i < nb; i += 2) {
        const float* da = recs[list[b0 + i]];
        const float* db = i + 1 < nb ? recs[list[b0 + i + 1]] : da;
        RA::row_angles(da + RA::kWaveOffset, da[P::MX] - x_lane0, da[P::MY] - dy_off, db + RA::kWaveOffset,
                       db[P::MX] - x_lane0, db[P::MY] - dy_off, ang);
        for (int q = 0; q < 2 && i + q < nb; ++q) {
          const float* d = q ? db : da;
          const FP fp = FP::load(d + P::FPP, 0);
          __m256 ex;
          const __m256 a = RA::eval_tab(fp, d + RA::kWaveOffset, ang + 4 * q, ang + 8 + 4 * q,
                                        _mm256_sub_ps(avx2::set(d[P::MX]), px), d[P::MY] - dy_off, d[P::OP], d[P::RX], ex);
          _mm256_store_ps(alphas[i + q], _mm256_and_ps(alive, a));
        }
      }
    } else {
      for (int i = 0; i < nb; ++i) {
        const float* d = recs[list[b0 + i]];
        const FP fp = FP::load(d + P::FPP, 0);
        __m256 ex;
        const __m256 a = RA::eval(fp, _mm256_sub_ps(avx2::set(d[P::MX]), px), d[P::MY] - dy_off, d[P::OP], d[P::RX], ex);
        _mm256_store_ps(alphas[i], _mm256_and_ps(alive, a));
      }
    }
    // Fast path: no alive pixel reaches the stop threshold within the batch (transmittance only falls, so checking
    // the end of the batch suffices): transmittances are prefix products, no per-primitive stop test.
    __m256 prod = one;
    for (int i = 0; i < nb; ++i) prod = _mm256_mul_ps(prod, _mm256_sub_ps(one, _mm256_load_ps(alphas[i])));
    const __m256 tr_end = _mm256_mul_ps(tr, prod);
    if (_mm256_movemask_ps(_mm256_and_ps(alive, _mm256_cmp_ps(tr_end, eps, _CMP_LE_OQ))) == 0) {
      __m256 t = tr;
      for (int i = 0; i < nb; ++i) {
        const int j = list[b0 + i];
        const float* d = recs[j];
        const __m256 alpha = _mm256_load_ps(alphas[i]);
        const __m256 w = _mm256_mul_ps(alpha, t);
        t = _mm256_mul_ps(t, _mm256_sub_ps(one, alpha));
        last = _mm256_blendv_ps(last, _mm256_castsi256_ps(_mm256_set1_epi32(int32_t(s + j))),
                                _mm256_cmp_ps(alpha, zero, _CMP_GT_OQ));
        acc0 = _mm256_fmadd_ps(w, avx2::set(d[P::COL]), acc0);
        acc1 = _mm256_fmadd_ps(w, avx2::set(d[P::COL + 1]), acc1);
        acc2 = _mm256_fmadd_ps(w, avx2::set(d[P::COL + 2]), acc2);
        accd = _mm256_fmadd_ps(w, avx2::set(d[P::DEP]), accd);
      }
      tr = t;
      evals += int64_t(nb) * nw;
      continue;
    }
    bool done = false;
    for (int i = 0; i < nb; ++i) {  // exact per-primitive steps: some pixel stops within this batch
      const int j = list[b0 + i];
      const float* d = recs[j];
      const __m256 alpha = _mm256_and_ps(alive, _mm256_load_ps(alphas[i]));
      const __m256 next = _mm256_mul_ps(tr, _mm256_sub_ps(one, alpha));
      const __m256 stop = _mm256_and_ps(alive, _mm256_cmp_ps(next, eps, _CMP_LE_OQ));
      const __m256 contrib = _mm256_andnot_ps(stop, _mm256_cmp_ps(alpha, zero, _CMP_GT_OQ));
      const __m256 w = _mm256_and_ps(contrib, _mm256_mul_ps(alpha, tr));
      tr = _mm256_blendv_ps(tr, next, contrib);
      last = _mm256_blendv_ps(last, _mm256_castsi256_ps(_mm256_set1_epi32(int32_t(s + j))), contrib);
      acc0 = _mm256_fmadd_ps(w, avx2::set(d[P::COL]), acc0);
      acc1 = _mm256_fmadd_ps(w, avx2::set(d[P::COL + 1]), acc1);
      acc2 = _mm256_fmadd_ps(w, avx2::set(d[P::COL + 2]), acc2);
      accd = _mm256_fmadd_ps(w, avx2::set(d[P::DEP]), accd);
      evals += nw;
      alive = _mm256_andnot_ps(stop, alive);
      if (_mm256_movemask_ps(alive) == 0) {  // every pixel of this half row is saturated
        done = true;
        break;
      }
    }
    if (done) break;
  }
  alignas(32) float t_l[8], c0[8], c1[8], c2[8], dd[8];
  alignas(32) int32_t l_l[8];
  _mm256_store_ps(t_l, tr);
  _mm256_store_ps(c0, acc0);
  _mm256_store_ps(c1, acc1);
  _mm256_store_ps(c2, acc2);
  _mm256_store_ps(dd, accd);
  _mm256_store_ps(reinterpret_cast<float*>(l_l), last);
  store_rgb_row(in, bins, out, y, xh, nw, t_l, c0, c1, c2, dd, l_l);
  return evals;
}
#endif

}  // namespace sf_cpu
