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
  static constexpr bool kTables = false;
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

// cos and sin on 8 lanes sharing one half-turn reduction: the steps of sf::sf_cos(float) (Taylor polynomial to r^12)
// and sf::sf_sin(float) (to r^13).
__attribute__((always_inline)) inline void sincos(__m256 x, __m256& c, __m256& s) {
  __m256 sign;
  const __m256 r = reduce_half_turns(x, sign);
  const __m256 r2 = _mm256_mul_ps(r, r);
  __m256 pc = _mm256_fmadd_ps(_mm256_set1_ps(2.08767569878680989e-9f), r2, _mm256_set1_ps(-2.75573192239858907e-7f));
  __m256 ps = _mm256_fmadd_ps(_mm256_set1_ps(1.60590438368216146e-10f), r2, _mm256_set1_ps(-2.50521083854417188e-8f));
  pc = _mm256_fmadd_ps(pc, r2, _mm256_set1_ps(2.48015873015873016e-5f));
  ps = _mm256_fmadd_ps(ps, r2, _mm256_set1_ps(2.75573192239858907e-6f));
  pc = _mm256_fmadd_ps(pc, r2, _mm256_set1_ps(-1.38888888888888889e-3f));
  ps = _mm256_fmadd_ps(ps, r2, _mm256_set1_ps(-1.98412698412698413e-4f));
  pc = _mm256_fmadd_ps(pc, r2, _mm256_set1_ps(4.16666666666666667e-2f));
  ps = _mm256_fmadd_ps(ps, r2, _mm256_set1_ps(8.33333333333333333e-3f));
  pc = _mm256_fmadd_ps(pc, r2, _mm256_set1_ps(-0.5f));
  ps = _mm256_fmadd_ps(ps, r2, _mm256_set1_ps(-1.66666666666666667e-1f));
  pc = _mm256_fmadd_ps(pc, r2, _mm256_set1_ps(1.0f));
  ps = _mm256_fmadd_ps(_mm256_mul_ps(ps, r2), r, r);
  c = _mm256_xor_ps(pc, sign);
  s = _mm256_xor_ps(ps, sign);
}

}  // namespace avx2

// Gaussian footprint, float: sigma = 0.5 a dx^2 + b dx dy + 0.5 c dy^2 evaluated as ((0.5 a) dx + b dy) dx + 0.5 c dy^2.
template <> struct RowAlpha8<float, sf::GaussianFootprint<float>> {
  static constexpr bool kVector = true;
  static constexpr int kCache = 0;  // nothing kept between the backward's alpha pass and its VJP
  static constexpr bool kTables = false;  // no per-primitive wave tables (see the Gabor kernel)
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
// The row kernels evaluate it by tables (eval_tab, eval_cached_tab, factor_vjp_tab): per-lane cosines and sines by
// angle addition from per-primitive tables. The backward's alpha pass keeps exp(-sigma) and the cosines (kCache
// values per lane) so that its VJP adds only the sines, as sf::GaborFootprint's factor_cached / factor_vjp_cached do.
template <> struct RowAlpha8<float, sf::GaborFootprint<float, 4>> {
  using FP = sf::GaborFootprint<float, 4>;
  using Env = RowAlpha8<float, sf::GaussianFootprint<float>>;
  static constexpr bool kVector = true;
  static constexpr int kCache = 5;  // exp(-sigma), then the 4 cosines
  // ---- the table path (what the AVX2 row kernels use) ----
  // Along a half row the argument of term k is linear in the lane j: phi_k - h_k . d = A_k + hx_k j, with A_k the
  // argument at lane 0. So cos(A_k + hx_k j) = cos A_k cos(hx_k j) - sin A_k sin(hx_k j): one sine and cosine per
  // term and half row (8 of them at once, for two half rows) and, per lane, two multiply-adds with per-primitive
  // tables of cos(hx_k j) and sin(hx_k j), instead of a cosine polynomial per term and lane (and a sine one in the
  // backward). The tables sit in each packed record at kWaveOffset (pack_primitives fills them, fill_waves).
  static constexpr bool kTables = true;
  static constexpr int kWaveOffset = 32;  // floats from the record's start (after the colours, 32-byte aligned)
  static constexpr int kWaveFloats = 80;  // hx[4], hy[4], ph[4], amp[4], cos(hx_k j)[4][8], sin(hx_k j)[4][8]
  static inline void fill_waves(const FP& fp, float* w) {
    for (int k = 0; k < 4; ++k) {
      w[k] = fp.hx[k];
      w[4 + k] = fp.hy[k];
      w[8 + k] = fp.ph[k];
      w[12 + k] = fp.amp[k];
      __m256 c, s;
      avx2::sincos(_mm256_mul_ps(avx2::set(fp.hx[k]), _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7)), c, s);
      _mm256_storeu_ps(w + 16 + 8 * k, c);
      _mm256_storeu_ps(w + 48 + 8 * k, s);
    }
  }
  // cos and sin of the lane-0 arguments A_k = ph_k - hy_k dy - hx_k dx0 of two half rows (a: wave block wa, lane-0
  // offset dx0a = mean_x - lane-0 centre, row offset dya; b likewise): out[0..3] cos A of a, out[4..7] of b,
  // out[8..11] sin A of a, out[12..15] of b.
  __attribute__((always_inline)) static inline void row_angles(const float* wa, float dx0a, float dya, const float* wb,
                                                               float dx0b, float dyb, float* out) {
    const __m256 hx = _mm256_set_m128(_mm_loadu_ps(wb), _mm_loadu_ps(wa));
    const __m256 hy = _mm256_set_m128(_mm_loadu_ps(wb + 4), _mm_loadu_ps(wa + 4));
    const __m256 ph = _mm256_set_m128(_mm_loadu_ps(wb + 8), _mm_loadu_ps(wa + 8));
    const __m256 dx0 = _mm256_set_m128(_mm_set1_ps(dx0b), _mm_set1_ps(dx0a));
    const __m256 dy = _mm256_set_m128(_mm_set1_ps(dyb), _mm_set1_ps(dya));
    __m256 c, s;
    avx2::sincos(_mm256_fnmadd_ps(hx, dx0, _mm256_fnmadd_ps(hy, dy, ph)), c, s);
    _mm256_store_ps(out, c);
    _mm256_store_ps(out + 8, s);
  }
  // cos of term k's argument on the 8 lanes, from row_angles' cos A (ca) and sin A (sa) of this half row.
  __attribute__((always_inline)) static inline __m256 lane_cos(const float* w, const float* ca, const float* sa, int k) {
    return _mm256_fmsub_ps(_mm256_broadcast_ss(ca + k), _mm256_loadu_ps(w + 16 + 8 * k),
                           _mm256_mul_ps(_mm256_broadcast_ss(sa + k), _mm256_loadu_ps(w + 48 + 8 * k)));
  }
  __attribute__((always_inline)) static inline __m256 lane_sin(const float* w, const float* ca, const float* sa, int k) {
    return _mm256_fmadd_ps(_mm256_broadcast_ss(sa + k), _mm256_loadu_ps(w + 16 + 8 * k),
                           _mm256_mul_ps(_mm256_broadcast_ss(ca + k), _mm256_loadu_ps(w + 48 + 8 * k)));
  }
  // alpha on 8 lanes (w: the record's wave block; ca, sa: this half row's row_angles); `ex` receives the factor
  // exp(-sigma) * modulation (clamped at 0, as sf::GaborFootprint).
  __attribute__((always_inline)) static inline __m256 eval_tab(const FP& fp, const float* w, const float* ca,
                                                               const float* sa, __m256 dx, float dy, float opacity,
                                                               float rx, __m256& ex) {
    const __m256 sig = Env::sigma(fp.env, dx, dy);
    const __m256 e = avx2::exp_neg(avx2::neg(sig));
    __m256 m = avx2::set(1.0f);
    for (int k = 0; k < 4; ++k) m = _mm256_fmadd_ps(_mm256_broadcast_ss(w + 12 + k), lane_cos(w, ca, sa, k), m);
    ex = _mm256_max_ps(_mm256_mul_ps(e, m), avx2::zero());
    return Env::alpha_of(sig, ex, dx, opacity, rx);
  }
  // eval_tab() that also stores exp(-sigma) and the cosines at cache[0], cache[(1 + k) * stride] (same bits).
  __attribute__((always_inline)) static inline __m256 eval_cached_tab(const FP& fp, const float* w, const float* ca,
                                                                      const float* sa, __m256 dx, float dy,
                                                                      float opacity, float rx, __m256& ex,
                                                                      float* cache, int stride) {
    const __m256 sig = Env::sigma(fp.env, dx, dy);
    const __m256 e = avx2::exp_neg(avx2::neg(sig));
    _mm256_store_ps(cache, e);
    __m256 m = avx2::set(1.0f);
    for (int k = 0; k < 4; ++k) {
      const __m256 c = lane_cos(w, ca, sa, k);
      _mm256_store_ps(cache + (1 + k) * stride, c);
      m = _mm256_fmadd_ps(_mm256_broadcast_ss(w + 12 + k), c, m);
    }
    ex = _mm256_max_ps(_mm256_mul_ps(e, m), avx2::zero());
    return Env::alpha_of(sig, ex, dx, opacity, rx);
  }
  // sf::GaborFootprint::factor_vjp_cached on 8 lanes: eval_cached_tab's values, the sines from the tables.
  __attribute__((always_inline)) static inline void factor_vjp_tab(const FP& fp, const float* w, const float* ca,
                                                                   const float* sa, __m256 dx, float dy, __m256 fac,
                                                                   __m256 v_fac, const float* cache, int stride,
                                                                   __m256 v_params[FP::kParams], __m256& v_mx,
                                                                   __m256& v_my) {
    Env::factor_vjp(fp.env, dx, dy, fac, v_fac, v_params, v_mx, v_my);
    const __m256 v_m = _mm256_mul_ps(_mm256_load_ps(cache), v_fac);
    const __m256 dyv = avx2::set(dy);
    for (int k = 0; k < 4; ++k) {
      const __m256 c = _mm256_load_ps(cache + (1 + k) * stride), s = lane_sin(w, ca, sa, k);
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
