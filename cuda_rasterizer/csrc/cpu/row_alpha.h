// Per-row alpha of a primitive over the 16 pixels of a tile row: the one computation the forward blend and the
// backward recomputation must agree on bit for bit. `RowAlpha<T, FP>::kVector` says whether a hand-vectorised
// (AVX-512) version exists for this type and footprint; both blend kernels use it when it does and the generic
// per-lane code (sf_math.h) otherwise, so the two passes always see identical alphas.
#pragma once

#include <cstdint>

#include "../sf_math.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace sf_cpu {

template <typename T, typename FP> struct RowAlpha {
  static constexpr bool kVector = false;
};

#if defined(__AVX512F__)
namespace avx512 {

// exp(x) for x <= 0 on 16 lanes: Cody-Waite reduction and a degree-7 polynomial, the steps of sf::sf_exp_neg(float)
// (~2 ulp); the power of two is assembled from the exponent bits.
inline __m512 exp_neg(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-80.0f));  // as sf::sf_exp_neg: keeps results normal numbers
  const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
  const __m512i ni = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_cvttps_epi32(_mm512_sub_ps(_mm512_set1_ps(0.5f), t)));
  const __m512 n = _mm512_cvtepi32_ps(ni);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(ni, _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
}

}  // namespace avx512

// Gaussian footprint, float: sigma = 0.5 a dx^2 + b dx dy + 0.5 c dy^2 evaluated as ((0.5 a) dx + b dy) dx + 0.5 c dy^2.
template <> struct RowAlpha<float, sf::GaussianFootprint<float>> {
  static constexpr bool kVector = true;
  // alpha on 16 lanes at offsets dx = mx - px (0 where sigma < 0, alpha < 1/255 or |dx| > rx); also exp(-sigma).
  static inline __m512 eval(const sf::GaussianFootprint<float>& fp, __m512 dx, float dy, float opacity, float rx,
                            __m512& ex) {
    const __m512 sigma = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(0.5f * fp.a), dx, _mm512_set1_ps(fp.b * dy)), dx,
                                         _mm512_set1_ps(0.5f * fp.c * dy * dy));
    ex = avx512::exp_neg(_mm512_sub_ps(_mm512_setzero_ps(), sigma));
    const __m512 alpha = _mm512_min_ps(_mm512_mul_ps(_mm512_set1_ps(opacity), ex), _mm512_set1_ps(float(sf::MAX_ALPHA)));
    __mmask16 ok = _mm512_cmp_ps_mask(sigma, _mm512_setzero_ps(), _CMP_GE_OQ);
    ok = _mm512_mask_cmp_ps_mask(ok, alpha, _mm512_set1_ps(float(sf::ALPHA_THRESHOLD)), _CMP_GE_OQ);
    ok = _mm512_mask_cmp_ps_mask(ok, _mm512_abs_ps(dx), _mm512_set1_ps(rx), _CMP_LE_OQ);
    return _mm512_maskz_mov_ps(ok, alpha);
  }
  // sf::GaussianFootprint::sigma_vjp on 16 lanes: d(sigma)/d(conic) * v_sigma and d(sigma)/d(mean2d) * v_sigma.
  static inline void sigma_vjp(const sf::GaussianFootprint<float>& fp, __m512 dx, float dy, __m512 v_sigma,
                               __m512 v_params[3], __m512& v_mx, __m512& v_my) {
    const __m512 dyv = _mm512_set1_ps(dy), half_vs = _mm512_mul_ps(_mm512_set1_ps(0.5f), v_sigma);
    v_params[0] = _mm512_mul_ps(_mm512_mul_ps(half_vs, dx), dx);
    v_params[1] = _mm512_mul_ps(_mm512_mul_ps(v_sigma, dx), dyv);
    v_params[2] = _mm512_mul_ps(half_vs, _mm512_set1_ps(dy * dy));
    v_mx = _mm512_mul_ps(v_sigma, _mm512_fmadd_ps(_mm512_set1_ps(fp.a), dx, _mm512_set1_ps(fp.b * dy)));
    v_my = _mm512_mul_ps(v_sigma, _mm512_fmadd_ps(_mm512_set1_ps(fp.b), dx, _mm512_set1_ps(fp.c * dy)));
  }
  // sf::GaussianFootprint::row_may_hit for 16 rows at once (dy per lane), restricted to the rows in `span`.
  static inline __mmask16 row_hits(const sf::GaussianFootprint<float>& fp, __m512 dy, float level, float slope,
                                   float dx_lo, float dx_hi, __mmask16 span) {
    const __m512 lv = _mm512_set1_ps(level * 1.01f + 0.01f);
    const __m512 dxc = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_set1_ps(slope), dy), _mm512_set1_ps(dx_lo)),
                                     _mm512_set1_ps(dx_hi));
    const __m512 quad = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(fp.a), dxc), dxc,
                                        _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(fp.c), dy), dy));
    const __m512 sigma = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(fp.b), dxc), dy, _mm512_mul_ps(_mm512_set1_ps(0.5f), quad));
    return _mm512_mask_cmp_ps_mask(span, sigma, lv, _CMP_LE_OQ);
  }
};
#endif

}  // namespace sf_cpu
