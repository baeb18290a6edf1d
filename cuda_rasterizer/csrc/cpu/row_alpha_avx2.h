// Per-row alpha of a primitive over 8 pixels of a tile row, hand-vectorised for AVX2 + FMA (CPUs without AVX-512,
// e.g. AMD Zen 2/3 and most laptops). The same steps as the AVX-512 kernels of row_alpha.h on half a row: the
// forward blend and the backward recomputation both use these, so the two passes see identical alphas.
// `RowAlpha8<T, FP>::kVector` says whether a kernel exists for this type and footprint (float Gaussians and 4-term
// Gabor footprints); otherwise the generic per-lane code of sf_math.h runs in both passes.
#pragma once

#include <cstdint>

#include "../sf_math.h"

#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
#define SF_ROWS_AVX2 1
#include <immintrin.h>
#endif

namespace sf_cpu {

template <typename T, typename FP> struct RowAlpha8 {
  static constexpr bool kVector = false;
};

#if defined(SF_ROWS_AVX2)
namespace avx2 {

inline __m256 zero() { return _mm256_setzero_ps(); }
inline __m256 set(float v) { return _mm256_set1_ps(v); }
inline __m256 abs(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }
inline __m256 neg(__m256 v) { return _mm256_xor_ps(_mm256_set1_ps(-0.0f), v); }
// Lane mask (all bits set) of the first n lanes, n in [0, 8].
inline __m256 first_lanes(int n) {
  return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
}

// exp(x) for x <= 0 on 8 lanes: n = round(x / ln 2), two-part Cody-Waite reduction, the degree-7 Taylor polynomial
// of sf::sf_exp_neg(float) evaluated by Estrin's scheme (dependency depth 3 multiply-adds instead of Horner's 7: the
// blend loops are bound by this chain's latency), times 2^n.
inline __m256 exp_neg(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-80.0f));  // as sf::sf_exp_neg: keeps results normal numbers
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
  const __m256 r2 = _mm256_mul_ps(r, r);
  const __m256 p01 = _mm256_add_ps(r, _mm256_set1_ps(1.0f));
  const __m256 p23 = _mm256_fmadd_ps(r, _mm256_set1_ps(1.0f / 6.0f), _mm256_set1_ps(0.5f));
  const __m256 p45 = _mm256_fmadd_ps(r, _mm256_set1_ps(1.0f / 120.0f), _mm256_set1_ps(1.0f / 24.0f));
  const __m256 p67 = _mm256_fmadd_ps(r, _mm256_set1_ps(1.0f / 5040.0f), _mm256_set1_ps(1.0f / 720.0f));
  const __m256 r4 = _mm256_mul_ps(r2, r2);
  const __m256 p03 = _mm256_fmadd_ps(p23, r2, p01);
  const __m256 p47 = _mm256_fmadd_ps(p67, r2, p45);
  const __m256 p = _mm256_fmadd_ps(p47, r4, p03);
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

// x = r + q pi with |r| <= pi/2 (the steps of sf::reduce_half_turns); `sign` has the sign bit set where q is odd
// (cos and sin change sign there).
__attribute__((always_inline)) inline __m256 reduce_half_turns(__m256 x, __m256& sign) {
  const __m256 q = _mm256_round_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(0.318309886183790672f), _mm256_set1_ps(0.5f)),
                                   _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(q, _mm256_set1_ps(3.140625f), x);
  r = _mm256_fnmadd_ps(q, _mm256_set1_ps(9.67502593994140625e-4f), r);
  r = _mm256_fnmadd_ps(q, _mm256_set1_ps(1.509957990978376432e-7f), r);
  sign = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvttps_epi32(q), 31));
  return r;
}

// cos on 8 lanes: the steps of sf::sf_cos(float) (Taylor polynomial to r^12 after the half-turn reduction).
__attribute__((always_inline)) inline __m256 cos_only(__m256 x) {
  __m256 sign;
  const __m256 r = reduce_half_turns(x, sign);
  const __m256 r2 = _mm256_mul_ps(r, r);
  __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(2.08767569878680989e-9f), r2, _mm256_set1_ps(-2.75573192239858907e-7f));
  p = _mm256_fmadd_ps(p, r2, _mm256_set1_ps(2.48015873015873016e-5f));
  p = _mm256_fmadd_ps(p, r2, _mm256_set1_ps(-1.38888888888888889e-3f));
  p = _mm256_fmadd_ps(p, r2, _mm256_set1_ps(4.16666666666666667e-2f));
  p = _mm256_fmadd_ps(p, r2, _mm256_set1_ps(-0.5f));
  p = _mm256_fmadd_ps(p, r2, _mm256_set1_ps(1.0f));
  return _mm256_xor_ps(p, sign);
}

// sin on 8 lanes: the steps of sf::sf_sin(float) (Taylor polynomial to r^13).
__attribute__((always_inline)) inline __m256 sin_only(__m256 x) {
  __m256 sign;
  const __m256 r = reduce_half_turns(x, sign);
  const __m256 r2 = _mm256_mul_ps(r, r);
  __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(1.60590438368216146e-10f), r2, _mm256_set1_ps(-2.50521083854417188e-8f));
  p = _mm256_fmadd_ps(p, r2, _mm256_set1_ps(2.75573192239858907e-6f));
  p = _mm256_fmadd_ps(p, r2, _mm256_set1_ps(-1.98412698412698413e-4f));
  p = _mm256_fmadd_ps(p, r2, _mm256_set1_ps(8.33333333333333333e-3f));
  p = _mm256_fmadd_ps(p, r2, _mm256_set1_ps(-1.66666666666666667e-1f));
  p = _mm256_fmadd_ps(_mm256_mul_ps(p, r2), r, r);
  return _mm256_xor_ps(p, sign);
}

}  // namespace avx2

// Gaussian footprint, float: sigma = 0.5 a dx^2 + b dx dy + 0.5 c dy^2 evaluated as ((0.5 a) dx + b dy) dx + 0.5 c dy^2.
template <> struct RowAlpha8<float, sf::GaussianFootprint<float>> {
  static constexpr bool kVector = true;
  static constexpr int kCache = 0;  // nothing kept between the backward's alpha pass and its VJP
  static inline __m256 sigma(const sf::GaussianFootprint<float>& fp, __m256 dx, float dy) {
    return _mm256_fmadd_ps(_mm256_fmadd_ps(avx2::set(0.5f * fp.a), dx, avx2::set(fp.b * dy)), dx,
                           avx2::set(0.5f * fp.c * dy * dy));
  }
  // alpha = min(0.99, opacity * factor), 0 where sigma < 0, alpha < 1/255 or |dx| > rx.
  static inline __m256 alpha_of(__m256 sigma, __m256 fac, __m256 dx, float opacity, float rx) {
    const __m256 alpha = _mm256_min_ps(_mm256_mul_ps(avx2::set(opacity), fac), avx2::set(float(sf::MAX_ALPHA)));
    __m256 ok = _mm256_cmp_ps(sigma, avx2::zero(), _CMP_GE_OQ);
    ok = _mm256_and_ps(ok, _mm256_cmp_ps(alpha, avx2::set(float(sf::ALPHA_THRESHOLD)), _CMP_GE_OQ));
    ok = _mm256_and_ps(ok, _mm256_cmp_ps(avx2::abs(dx), avx2::set(rx), _CMP_LE_OQ));
    return _mm256_and_ps(ok, alpha);
  }
  // alpha on 8 lanes at offsets dx = mx - px; `ex` receives the factor exp(-sigma).
  static inline __m256 eval(const sf::GaussianFootprint<float>& fp, __m256 dx, float dy, float opacity, float rx,
                            __m256& ex) {
    const __m256 sig = sigma(fp, dx, dy);
    ex = avx2::exp_neg(avx2::neg(sig));
    return alpha_of(sig, ex, dx, opacity, rx);
  }
  static inline __m256 eval_cached(const sf::GaussianFootprint<float>& fp, __m256 dx, float dy, float opacity,
                                   float rx, __m256& ex, float*, int) {
    return eval(fp, dx, dy, opacity, rx, ex);
  }
  static inline void factor_vjp_cached(const sf::GaussianFootprint<float>& fp, __m256 dx, float dy, __m256 fac,
                                       __m256 v_fac, const float*, int, __m256 v_params[3], __m256& v_mx,
                                       __m256& v_my) {
    factor_vjp(fp, dx, dy, fac, v_fac, v_params, v_mx, v_my);
  }
  // sf::GaussianFootprint::factor_vjp: v_sigma = -factor * v_factor, then the conic and mean2d parts.
  static inline void factor_vjp(const sf::GaussianFootprint<float>& fp, __m256 dx, float dy, __m256 fac, __m256 v_fac,
                                __m256 v_params[3], __m256& v_mx, __m256& v_my) {
    sigma_vjp(fp, dx, dy, avx2::neg(_mm256_mul_ps(fac, v_fac)), v_params, v_mx, v_my);
  }
  static inline void sigma_vjp(const sf::GaussianFootprint<float>& fp, __m256 dx, float dy, __m256 v_sigma,
                               __m256 v_params[3], __m256& v_mx, __m256& v_my) {
    const __m256 half_vs = _mm256_mul_ps(avx2::set(0.5f), v_sigma);
    v_params[0] = _mm256_mul_ps(_mm256_mul_ps(half_vs, dx), dx);
    v_params[1] = _mm256_mul_ps(_mm256_mul_ps(v_sigma, dx), avx2::set(dy));
    v_params[2] = _mm256_mul_ps(half_vs, avx2::set(dy * dy));
    v_mx = _mm256_mul_ps(v_sigma, _mm256_fmadd_ps(avx2::set(fp.a), dx, avx2::set(fp.b * dy)));
    v_my = _mm256_mul_ps(v_sigma, _mm256_fmadd_ps(avx2::set(fp.b), dx, avx2::set(fp.c * dy)));
  }
};

// Gabor footprint with 4 terms, float: the Gaussian envelope's lanes times 1 + sum_k a_k cos(phi_k - h_k . d).
// The forward needs only cosines (avx2::cos_only); the backward's alpha pass keeps exp(-sigma) and the cosines
// (kCache values per lane) so that its VJP adds only the sines (avx2::sin_only), as sf::GaborFootprint's
// factor_cached / factor_vjp_cached do.
template <> struct RowAlpha8<float, sf::GaborFootprint<float, 4>> {
  using FP = sf::GaborFootprint<float, 4>;
  using Env = RowAlpha8<float, sf::GaussianFootprint<float>>;
  static constexpr bool kVector = true;
  static constexpr int kCache = 5;  // exp(-sigma), then the 4 cosines
  static inline __m256 arg(const FP& fp, int k, __m256 dx, float dy) {
    return _mm256_fnmadd_ps(avx2::set(fp.hx[k]), dx, avx2::set(fp.ph[k] - fp.hy[k] * dy));
  }
  // True when some lane may reach the alpha threshold: opacity exp(-sigma) times the largest modulation (slightly
  // raised, so rounding of the sum of terms cannot matter). Where no lane can, the terms are not evaluated: alpha is 0
  // there with or without them, in both passes.
  static inline bool any_lane_may_hit(const FP& fp, __m256 e, float opacity) {
    const float level = opacity * fp.peak() * 1.0001f;
    return _mm256_movemask_ps(_mm256_cmp_ps(_mm256_mul_ps(avx2::set(level), e), avx2::set(float(sf::ALPHA_THRESHOLD)),
                                            _CMP_GE_OQ)) != 0;
  }
  // alpha on 8 lanes; `ex` receives the factor exp(-sigma) * modulation (clamped at 0, as sf::GaborFootprint).
  __attribute__((always_inline)) static inline __m256 eval(const FP& fp, __m256 dx, float dy, float opacity, float rx,
                                                           __m256& ex) {
    const __m256 sig = Env::sigma(fp.env, dx, dy);
    const __m256 e = avx2::exp_neg(avx2::neg(sig));
    __m256 m = avx2::set(1.0f);
    for (int k = 0; k < 4; ++k) m = _mm256_fmadd_ps(avx2::set(fp.amp[k]), avx2::cos_only(arg(fp, k, dx, dy)), m);
    ex = _mm256_max_ps(_mm256_mul_ps(e, m), avx2::zero());
    return Env::alpha_of(sig, ex, dx, opacity, rx);
  }
  // eval() that also stores exp(-sigma) and the cosines at cache[0], cache[(1 + k) * stride] (same bits as eval).
  __attribute__((always_inline)) static inline __m256 eval_cached(const FP& fp, __m256 dx, float dy, float opacity,
                                                                  float rx, __m256& ex, float* cache, int stride) {
    const __m256 sig = Env::sigma(fp.env, dx, dy);
    const __m256 e = avx2::exp_neg(avx2::neg(sig));
    _mm256_store_ps(cache, e);
    __m256 m = avx2::set(1.0f);
    for (int k = 0; k < 4; ++k) {
      const __m256 c = avx2::cos_only(arg(fp, k, dx, dy));
      _mm256_store_ps(cache + (1 + k) * stride, c);
      m = _mm256_fmadd_ps(avx2::set(fp.amp[k]), c, m);
    }
    ex = _mm256_max_ps(_mm256_mul_ps(e, m), avx2::zero());
    return Env::alpha_of(sig, ex, dx, opacity, rx);
  }
  // sf::GaborFootprint::factor_vjp_cached on 8 lanes, with eval_cached's values.
  __attribute__((always_inline)) static inline void factor_vjp_cached(const FP& fp, __m256 dx, float dy, __m256 fac,
                                                                      __m256 v_fac, const float* cache, int stride,
                                                                      __m256 v_params[FP::kParams], __m256& v_mx,
                                                                      __m256& v_my) {
    Env::factor_vjp(fp.env, dx, dy, fac, v_fac, v_params, v_mx, v_my);
    const __m256 v_m = _mm256_mul_ps(_mm256_load_ps(cache), v_fac);
    const __m256 dyv = avx2::set(dy);
    for (int k = 0; k < 4; ++k) {
      const __m256 c = _mm256_load_ps(cache + (1 + k) * stride), s = avx2::sin_only(arg(fp, k, dx, dy));
      const __m256 nv_arg = _mm256_mul_ps(_mm256_mul_ps(v_m, avx2::set(fp.amp[k])), s);  // -d loss / d arg
      v_params[3 + 4 * k] = _mm256_mul_ps(nv_arg, dx);
      v_params[4 + 4 * k] = _mm256_mul_ps(nv_arg, dyv);
      v_params[5 + 4 * k] = _mm256_mul_ps(v_m, c);
      v_params[6 + 4 * k] = avx2::neg(nv_arg);
      v_mx = _mm256_fmadd_ps(nv_arg, avx2::set(fp.hx[k]), v_mx);
      v_my = _mm256_fmadd_ps(nv_arg, avx2::set(fp.hy[k]), v_my);
    }
  }
};
#endif

}  // namespace sf_cpu
