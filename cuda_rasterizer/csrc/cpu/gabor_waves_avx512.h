// The AVX-512 backward's wave gradients for 4-term Gabor primitives, by angle addition over a tile.
//
// Over a 16x16 tile, term k's argument at lane j of row r is phi_k - hx_k dx_j - hy_k dy_r with dx_j = dx_0 - j, i.e.
// B_kr + hx_k j with B_kr = phi_k - hx_k dx_0 - hy_k dy_r: so e^{i arg} = e^{i B_kr} e^{i hx_k j}, a row factor times
// a lane factor. Every wave gradient of a (tile, primitive) is a sum over its pixels of V = d loss / d modulation
// times cos(arg) or sin(arg), weighted by 1, dx_j or dy_r (sf::GaborFootprint::factor_vjp), so
//   sum_pixels V w e^{i arg} = sum_j e^{i hx_k j} [w_j] sum_r V_rj [w_r] e^{i B_kr}.
// Per row this leaves 4 FMAs per term (the per-lane sums over rows of V e^{i B_kr} and V dy_r e^{i B_kr}) instead of a
// sine polynomial and eight gradient operations per term; the lane factors, the dx weights and the lane sums come once
// per (tile, primitive). The row and lane factors are 8 vector sine-cosines per (tile, primitive), of angles in
// turns (avx512::sincos_turns). Gradients differ
// from the per-pixel sines by float rounding only (the alphas, and so the blend, are untouched: they keep the
// forward's per-pixel cosines). With absgrad every pixel's mean2d gradient is needed, so that path keeps per-pixel
// sines (the same angle addition for them, 2 operations per term, measured no faster there: the per-(tile,
// primitive) factors cost what the sine polynomials saved next to that path's 28 per-lane accumulators).
#pragma once

#if defined(__AVX512F__)
#include <immintrin.h>

#include "../sf_math.h"
#include "raster_grads.h"
#include "row_alpha.h"

namespace sf_cpu {
// One (tile, primitive)'s wave gradient sums for a 4-term Gabor footprint (see the top of this file).
struct GaborWaves4 {
  alignas(64) float row_cos[4][16], row_sin[4][16];  // e^{i B_kr} for the tile's 16 rows
  alignas(64) float lane_cos[4][16], lane_sin[4][16];  // e^{i hx_k j} for the 16 lanes
  __m512 pc[4], ps[4], qc[4], qs[4];                 // per lane: sum_r V e^{i B_kr} and sum_r V dy_r e^{i B_kr}

  // dx0 = mean_x - (x0 + 0.5) (lane 0's dx), dy0 = mean_y - (y0 + 0.5) (row 0's dy).
  __attribute__((always_inline)) inline void start(const sf::GaborFootprint<float, 4>& fp, float dx0, float dy0) {
    const __m512 lane = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 dy = _mm512_sub_ps(_mm512_set1_ps(dy0), lane);
    using avx512::kTurnsPerRadian;  // the angles in turns, for sincos_turns
    for (int k = 0; k < 4; ++k) {
      __m512 s, c;
      avx512::sincos_turns(_mm512_fnmadd_ps(_mm512_set1_ps(fp.hy[k] * kTurnsPerRadian), dy,
                                            _mm512_set1_ps((fp.ph[k] - fp.hx[k] * dx0) * kTurnsPerRadian)), s, c);
      _mm512_store_ps(row_cos[k], c);
      _mm512_store_ps(row_sin[k], s);
      avx512::sincos_turns(_mm512_mul_ps(_mm512_set1_ps(fp.hx[k] * kTurnsPerRadian), lane), s, c);
      _mm512_store_ps(lane_cos[k], c);
      _mm512_store_ps(lane_sin[k], s);
      pc[k] = ps[k] = qc[k] = qs[k] = _mm512_setzero_ps();
    }
  }

  // Row r's share: v = d loss / d modulation on its lanes (0 where nothing contributes), dy its dy.
  __attribute__((always_inline)) inline void add_row(int r, __m512 v, float dy) {
    const __m512 v_dy = _mm512_mul_ps(v, _mm512_set1_ps(dy));
    for (int k = 0; k < 4; ++k) {
      const __m512 c = _mm512_set1_ps(row_cos[k][r]), s = _mm512_set1_ps(row_sin[k][r]);
      pc[k] = _mm512_fmadd_ps(v, c, pc[k]);
      ps[k] = _mm512_fmadd_ps(v, s, ps[k]);
      qc[k] = _mm512_fmadd_ps(v_dy, c, qc[k]);
      qs[k] = _mm512_fmadd_ps(v_dy, s, qs[k]);
    }
  }
  // The 16 per-lane vectors whose lane sums are, per term k, sum V cos(arg), sum V sin(arg), sum V sin(arg) dx and
  // sum V sin(arg) dy (out[4k .. 4k + 3]); dx the lanes' dx.
  __attribute__((always_inline)) inline void finish(__m512 dx, __m512 out[16]) const {
    for (int k = 0; k < 4; ++k) {
      const __m512 lc = _mm512_load_ps(lane_cos[k]), ls = _mm512_load_ps(lane_sin[k]);
      const __m512 im = _mm512_fmadd_ps(lc, ps[k], _mm512_mul_ps(ls, pc[k]));
      out[4 * k] = _mm512_fmsub_ps(lc, pc[k], _mm512_mul_ps(ls, ps[k]));
      out[4 * k + 1] = im;
      out[4 * k + 2] = _mm512_mul_ps(im, dx);
      out[4 * k + 3] = _mm512_fmadd_ps(lc, qs[k], _mm512_mul_ps(ls, qc[k]));
    }
  }
};

// A 4-term Gabor (tile, primitive)'s gradient row from its lane sums: `env` the 11 envelope sums of
// set_gaussian_tile_row (sigma's gradient is -opacity x factor x dL/dalpha, as for a Gaussian), `waves` the 16 of
// GaborWaves4::finish. Per term: d/d hx = amp sum V sin dx, d/d hy = amp sum V sin dy, d/d amp = sum V cos,
// d/d phase = -amp sum V sin; the mean gets amp (hx, hy) sum V sin (sf::GaborFootprint::factor_vjp summed).
inline void set_gabor4_tile_row(float* grow, const sf::GaborFootprint<float, 4>& fp, const float env[11],
                                const float waves[16]) {
  constexpr int kParams = sf::GaborFootprint<float, 4>::kParams;
  set_gaussian_tile_row<kParams>(grow, fp.env.a, fp.env.b, fp.env.c, env);
  for (int k = 0; k < 4; ++k) {
    const float sum_cos = waves[4 * k], sum_sin = waves[4 * k + 1];
    float* g = grow + 5 + 4 * k;
    g[0] = fp.amp[k] * waves[4 * k + 2];
    g[1] = fp.amp[k] * waves[4 * k + 3];
    g[2] = sum_cos;
    g[3] = -fp.amp[k] * sum_sin;
    grow[0] += fp.amp[k] * fp.hx[k] * sum_sin;
    grow[1] += fp.amp[k] * fp.hy[k] * sum_sin;
  }
}

}  // namespace sf_cpu
#endif
