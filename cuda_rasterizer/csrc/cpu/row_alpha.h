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
// (~2 ulp) with the same bits for every x in [-80, 0] (checked exhaustively). Its n = -trunc(0.5 - t) is
// ceil(t - 0.5) here (one rounding instruction instead of two conversions and a negation), and the power of two is
// applied by scalef (exact for these normal results) instead of being assembled from exponent bits: 13 operations
// instead of 18, on the path every row evaluation of the forward and backward takes.
inline __m512 exp_neg(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-80.0f));  // as sf::sf_exp_neg: keeps results normal numbers
  const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
  const __m512 n = _mm512_roundscale_ps(_mm512_sub_ps(t, _mm512_set1_ps(0.5f)), _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
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
  return _mm512_scalef_ps(p, n);
}

}  // namespace avx512

// Gaussian footprint, float: sigma = 0.5 a dx^2 + b dx dy + 0.5 c dy^2 evaluated as ((0.5 a) dx + b dy) dx + 0.5 c dy^2.
template <> struct RowAlpha<float, sf::GaussianFootprint<float>> {
  static constexpr bool kVector = true;
  static inline __m512 sigma(const sf::GaussianFootprint<float>& fp, __m512 dx, float dy) {
    return _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(0.5f * fp.a), dx, _mm512_set1_ps(fp.b * dy)), dx,
                           _mm512_set1_ps(0.5f * fp.c * dy * dy));
  }
  // alpha = min(0.99, opacity * factor) on 16 lanes, 0 where sigma < 0, alpha < 1/255 or |dx| > rx.
  static inline __m512 alpha_of(__m512 sigma, __m512 fac, __m512 dx, float opacity, float rx) {
    const __m512 alpha = _mm512_min_ps(_mm512_mul_ps(_mm512_set1_ps(opacity), fac), _mm512_set1_ps(float(sf::MAX_ALPHA)));
    __mmask16 ok = _mm512_cmp_ps_mask(sigma, _mm512_setzero_ps(), _CMP_GE_OQ);
    ok = _mm512_mask_cmp_ps_mask(ok, alpha, _mm512_set1_ps(float(sf::ALPHA_THRESHOLD)), _CMP_GE_OQ);
    ok = _mm512_mask_cmp_ps_mask(ok, _mm512_abs_ps(dx), _mm512_set1_ps(rx), _CMP_LE_OQ);
    return _mm512_maskz_mov_ps(ok, alpha);
  }
  // alpha on 16 lanes at offsets dx = mx - px; `ex` receives the factor exp(-sigma).
  static inline __m512 eval(const sf::GaussianFootprint<float>& fp, __m512 dx, float dy, float opacity, float rx,
                            __m512& ex) {
    const __m512 sig = sigma(fp, dx, dy);
    ex = avx512::exp_neg(_mm512_sub_ps(_mm512_setzero_ps(), sig));
    return alpha_of(sig, ex, dx, opacity, rx);
  }
  static constexpr int kCache = 0;  // nothing kept between the backward's alpha pass and its VJP
  // eval, keeping the values factor_vjp_cached reuses (none for the Gaussian) at `cache` (stride 16 floats).
  static inline __m512 eval_cached(const sf::GaussianFootprint<float>& fp, __m512 dx, float dy, float opacity, float rx,
                                   __m512& ex, float*) {
    return eval(fp, dx, dy, opacity, rx, ex);
  }
  static inline void factor_vjp_cached(const sf::GaussianFootprint<float>& fp, __m512 dx, float dy, __m512 fac,
                                       __m512 v_fac, const float*, __m512 v_params[3], __m512& v_mx, __m512& v_my) {
    factor_vjp(fp, dx, dy, fac, v_fac, v_params, v_mx, v_my);
  }
  // sf::GaussianFootprint::factor_vjp on 16 lanes: v_sigma = -factor * v_factor, then the conic and mean2d parts.
  static inline void factor_vjp(const sf::GaussianFootprint<float>& fp, __m512 dx, float dy, __m512 fac, __m512 v_fac,
                                __m512 v_params[3], __m512& v_mx, __m512& v_my) {
    sigma_vjp(fp, dx, dy, _mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), fac), v_fac), v_params, v_mx, v_my);
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

namespace avx512 {
// cos(2 pi t) and sin(2 pi t) for an argument t in turns: the reduction to r = t - round(t) in [-1/2, 1/2] is exact
// (two operations, no Cody-Waite constants, no sign fix-up), and near-minimax polynomials over the whole period
// (cos: degree 6 in r^2; sin: r times degree 6 in r^2; both under 1.1e-8 before float rounding, ~4e-7 after) take
// 9-10 operations against 14-15 for a cosine or a sine of an argument in radians (a 3-part Cody-Waite reduction by
// pi, polynomials on [-pi/2, pi/2] and a sign fix-up, as sf::sf_cos / sf::sf_sin). The 4-term Gabor alphas, their
// VJP and the backward's wave factors (gabor_waves_avx512.h) take these.
constexpr float kTurnsPerRadian = 0.159154943091895336f;  // 1 / (2 pi): arguments in radians -> turns
__attribute__((always_inline)) inline __m512 turn_residue(__m512 t) {
  return _mm512_sub_ps(t, _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
__attribute__((always_inline)) inline void sincos_turns(__m512 t, __m512& sn, __m512& cs) {
  const __m512 r = turn_residue(t), s = _mm512_mul_ps(r, r);
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(6.5296390419290473f), s, _mm512_set1_ps(-25.968390550732998f));
  __m512 q = _mm512_fmadd_ps(_mm512_set1_ps(3.2385056768792553f), s, _mm512_set1_ps(-14.900146588628965f));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(60.167872615104052f));
  q = _mm512_fmadd_ps(q, s, _mm512_set1_ps(42.026019511966098f));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(-85.45017406800774f));
  q = _mm512_fmadd_ps(q, s, _mm512_set1_ps(-76.703028721105866f));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(64.93911975327066f));
  q = _mm512_fmadd_ps(q, s, _mm512_set1_ps(81.605132284402472f));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(-19.739204558761401f));
  q = _mm512_fmadd_ps(q, s, _mm512_set1_ps(-41.341700428920248f));
  cs = _mm512_fmadd_ps(p, s, _mm512_set1_ps(0.99999998938330803f));
  sn = _mm512_mul_ps(_mm512_fmadd_ps(q, s, _mm512_set1_ps(6.2831853026440259f)), r);
}
// One of the two (inlined, the other polynomial is dropped as dead code).
__attribute__((always_inline)) inline __m512 cos_turns(__m512 t) {
  __m512 sn, cs;
  sincos_turns(t, sn, cs);
  return cs;
}
__attribute__((always_inline)) inline __m512 sin_turns(__m512 t) {
  __m512 sn, cs;
  sincos_turns(t, sn, cs);
  return sn;
}
}  // namespace avx512

// Gabor footprint with 4 terms, float: the Gaussian envelope's lanes times 1 + sum_k a_k cos(phi_k - h_k . d).
template <> struct RowAlpha<float, sf::GaborFootprint<float, 4>> {
  using FP = sf::GaborFootprint<float, 4>;
  using Env = RowAlpha<float, sf::GaussianFootprint<float>>;
  static constexpr bool kVector = true;
  // term k's argument phi_k - hx_k dx - hy_k dy in turns (radians / 2 pi), for cos_turns / sin_turns
  static inline __m512 arg_turns(const FP& fp, int k, __m512 dx, float dy) {
    using avx512::kTurnsPerRadian;
    return _mm512_fnmadd_ps(_mm512_set1_ps(fp.hx[k] * kTurnsPerRadian), dx,
                            _mm512_set1_ps((fp.ph[k] - fp.hy[k] * dy) * kTurnsPerRadian));
  }
  static constexpr int kCache = 5;  // exp(-sigma), then the 4 cosines
  // alpha on 16 lanes; `ex` receives the factor exp(-sigma) * modulation (clamped at 0, as sf::GaborFootprint).
  // With `cache` (stride 16 floats), also keeps exp(-sigma) and each term's cosine for factor_vjp_cached (same bits).
  __attribute__((always_inline)) static inline __m512 eval_cached(const FP& fp, __m512 dx, float dy, float opacity,
                                                                  float rx, __m512& ex, float* cache) {
    const __m512 sig = Env::sigma(fp.env, dx, dy);
    const __m512 e = avx512::exp_neg(_mm512_sub_ps(_mm512_setzero_ps(), sig));
    __m512 m = _mm512_set1_ps(1.0f);
    for (int k = 0; k < 4; ++k) {
      const __m512 c = avx512::cos_turns(arg_turns(fp, k, dx, dy));
      if (cache) _mm512_store_ps(cache + 16 * (1 + k), c);
      m = _mm512_fmadd_ps(_mm512_set1_ps(fp.amp[k]), c, m);
    }
    if (cache) _mm512_store_ps(cache, e);
    ex = _mm512_max_ps(_mm512_mul_ps(e, m), _mm512_setzero_ps());
    return Env::alpha_of(sig, ex, dx, opacity, rx);
  }
  __attribute__((always_inline)) static inline __m512 eval(const FP& fp, __m512 dx, float dy, float opacity, float rx,
                                                           __m512& ex) {
    return eval_cached(fp, dx, dy, opacity, rx, ex, nullptr);
  }
  // sf::GaborFootprint::factor_vjp_cached on 16 lanes: eval_cached's exp(-sigma) and cosines, the sines computed.
  __attribute__((always_inline)) static inline void factor_vjp_cached(const FP& fp, __m512 dx, float dy, __m512 fac,
                                                                      __m512 v_fac, const float* cache,
                                                                      __m512 v_params[FP::kParams], __m512& v_mx,
                                                                      __m512& v_my) {
    Env::factor_vjp(fp.env, dx, dy, fac, v_fac, v_params, v_mx, v_my);
    const __m512 v_m = _mm512_mul_ps(_mm512_load_ps(cache), v_fac);
    const __m512 dyv = _mm512_set1_ps(dy);
    for (int k = 0; k < 4; ++k) {
      const __m512 c = _mm512_load_ps(cache + 16 * (1 + k)), sn = avx512::sin_turns(arg_turns(fp, k, dx, dy));
      const __m512 nv_arg = _mm512_mul_ps(_mm512_mul_ps(v_m, _mm512_set1_ps(fp.amp[k])), sn);  // -d loss / d arg
      v_params[3 + 4 * k] = _mm512_mul_ps(nv_arg, dx);
      v_params[4 + 4 * k] = _mm512_mul_ps(nv_arg, dyv);
      v_params[5 + 4 * k] = _mm512_mul_ps(v_m, c);
      v_params[6 + 4 * k] = _mm512_sub_ps(_mm512_setzero_ps(), nv_arg);
      v_mx = _mm512_fmadd_ps(nv_arg, _mm512_set1_ps(fp.hx[k]), v_mx);
      v_my = _mm512_fmadd_ps(nv_arg, _mm512_set1_ps(fp.hy[k]), v_my);
    }
  }
  static inline __mmask16 row_hits(const FP& fp, __m512 dy, float level, float slope, float dx_lo, float dx_hi,
                                   __mmask16 span) {
    return Env::row_hits(fp.env, dy, level, slope, dx_lo, dx_hi, span);
  }
};
#endif

}  // namespace sf_cpu
