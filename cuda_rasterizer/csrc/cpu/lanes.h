// A float vector type that the templated math of sf_math.h can be instantiated with, so a per-primitive routine
// written once (e.g. sf::slice4 and its VJP) runs on 16 primitives at a time (AVX-512) or 8 (AVX2 + FMA) instead of
// one: arithmetic operators, sqrt, sf_max, ceil, log, isfinite and exp (for arguments <= 0, the only ones the slice
// passes) found by argument-dependent lookup; comparisons give lane masks (M) that combine with | and pick with sf_select, so branch-free
// code written with sf_select (e.g. sf::project_gaussian_values and sf::project_gaussian_vjp) runs here too. SF_LANES is the lane count, undefined where neither instruction set is enabled (the
// callers then keep the scalar loop).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "row_alpha.h"
#include "row_alpha_avx2.h"

#if defined(__AVX512F__)
#define SF_LANES 16
#elif defined(SF_ROWS_AVX2)
#define SF_LANES 8
#endif

#if defined(SF_LANES)
namespace sf_cpu {
namespace lanes {

#if SF_LANES == 16
using Vec = __m512;
using Mask = __mmask16;
inline Mask less(Vec a, Vec b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
inline Mask less_equal(Vec a, Vec b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
inline Mask either(Mask a, Mask b) { return static_cast<Mask>(a | b); }
inline Mask both(Mask a, Mask b) { return static_cast<Mask>(a & b); }
inline bool any(Mask a) { return a != 0; }
inline Vec blend(Mask c, Vec a, Vec b) { return _mm512_mask_blend_ps(c, b, a); }  // c ? a : b
inline Vec vmin(Vec a, Vec b) { return _mm512_min_ps(a, b); }
inline Vec broadcast(float x) { return _mm512_set1_ps(x); }
inline Vec vsqrt(Vec x) { return _mm512_sqrt_ps(x); }
inline Vec vmax(Vec a, Vec b) { return _mm512_max_ps(a, b); }
inline Vec vexp_neg(Vec x) { return avx512::exp_neg(x); }
inline Vec vceil(Vec x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC); }
inline Vec vabs(Vec x) { return _mm512_abs_ps(x); }
inline Vec vload(const float* p) { return _mm512_load_ps(p); }
inline void vstore(float* p, Vec x) { _mm512_store_ps(p, x); }
#else
using Vec = __m256;
using Mask = __m256;  // all bits set in the lanes where the condition holds
inline Mask less(Vec a, Vec b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
inline Mask less_equal(Vec a, Vec b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
inline Mask either(Mask a, Mask b) { return _mm256_or_ps(a, b); }
inline Mask both(Mask a, Mask b) { return _mm256_and_ps(a, b); }
inline bool any(Mask a) { return _mm256_movemask_ps(a) != 0; }
inline Vec blend(Mask c, Vec a, Vec b) { return _mm256_blendv_ps(b, a, c); }  // c ? a : b
inline Vec vmin(Vec a, Vec b) { return _mm256_min_ps(a, b); }
inline Vec broadcast(float x) { return _mm256_set1_ps(x); }
inline Vec vsqrt(Vec x) { return _mm256_sqrt_ps(x); }
inline Vec vmax(Vec a, Vec b) { return _mm256_max_ps(a, b); }
inline Vec vexp_neg(Vec x) { return avx2::exp_neg(x); }
inline Vec vceil(Vec x) { return _mm256_ceil_ps(x); }
inline Vec vabs(Vec x) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x); }
inline Vec vload(const float* p) { return _mm256_load_ps(p); }
inline void vstore(float* p, Vec x) { _mm256_store_ps(p, x); }
#endif

// SF_LANES floats; GCC and clang give the intrinsic vector types element-wise + - * /.
struct F {
  Vec v;
  F() = default;
  F(Vec x) : v(x) {}
  template <typename S, typename = typename std::enable_if<std::is_arithmetic<S>::value>::type>
  F(S x) : v(broadcast(static_cast<float>(x))) {}
  F& operator+=(F o) { v = v + o.v; return *this; }
  F& operator-=(F o) { v = v - o.v; return *this; }
  F& operator*=(F o) { v = v * o.v; return *this; }
};
inline F operator+(F a, F b) { return F(a.v + b.v); }
inline F operator-(F a, F b) { return F(a.v - b.v); }
inline F operator*(F a, F b) { return F(a.v * b.v); }
inline F operator/(F a, F b) { return F(a.v / b.v); }
inline F operator-(F a) { return F(broadcast(0.0f) - a.v); }
inline F sqrt(F x) { return F(vsqrt(x.v)); }
inline F sf_max(F a, F b) { return F(vmax(a.v, b.v)); }
inline F sf_min(F a, F b) { return F(vmin(a.v, b.v)); }
// A condition per lane: comparisons of F give one, | combines two, sf_select picks per lane.
struct M {
  Mask m;
};
inline M operator<(F a, F b) { return M{less(a.v, b.v)}; }
inline M operator>(F a, F b) { return M{less(b.v, a.v)}; }
inline M operator<=(F a, F b) { return M{less_equal(a.v, b.v)}; }
inline M operator|(M a, M b) { return M{either(a.m, b.m)}; }
inline M operator&(M a, M b) { return M{both(a.m, b.m)}; }
inline bool any_lane(M c) { return any(c.m); }
inline F sf_select(M c, F a, F b) { return F(blend(c.m, a.v, b.v)); }
// exp(x) for x <= 0 (clamped at -80 as sf::sf_exp_neg): the slice's temporal decay is the only exp it takes.
inline F exp(F x) { return F(vexp_neg(x.v)); }
inline F ceil(F x) { return F(vceil(x.v)); }
inline M isfinite(F x) { return M{less_equal(vabs(x.v), broadcast(std::numeric_limits<float>::max()))}; }
// log lane by lane with the C library's logf: the projection's screen extent takes one per primitive, and its
// ceil() must see the scalar loop's values so both give the same radii.
inline F log(F x) {
  alignas(64) float buf[SF_LANES];
  vstore(buf, x.v);
  for (int l = 0; l < SF_LANES; ++l) buf[l] = std::log(buf[l]);
  return F(vload(buf));
}
// 1 in the lanes where c holds, else 0.
inline F lanes_where(M c) { return sf_select(c, F(1.0f), F(0.0f)); }

// `count` rows of `width` floats at `src` (row stride `width`), transposed into `width` vectors of lanes (rows past
// `count` read as 0): out[c] holds column c of the rows.
template <int width> inline void load_rows(const float* src, int count, F out[width]) {
  alignas(64) float buf[width][SF_LANES];
  for (int l = 0; l < SF_LANES; ++l)
    for (int c = 0; c < width; ++c) buf[c][l] = l < count ? src[l * width + c] : 0.0f;
  for (int c = 0; c < width; ++c) out[c] = F(vload(buf[c]));
}

// load_rows with the width known at run time (at most 64 columns).
inline void load_rows_n(const float* src, int count, int width, F* out) {
  alignas(64) float buf[SF_LANES];
  for (int c = 0; c < width; ++c) {
    for (int l = 0; l < SF_LANES; ++l) buf[l] = l < count ? src[l * width + c] : 0.0f;
    out[c] = F(vload(buf));
  }
}

// store_rows with the width known at run time.
inline void store_rows_n(float* dst, int count, int width, const F* in) {
  alignas(64) float buf[SF_LANES];
  for (int c = 0; c < width; ++c) {
    vstore(buf, in[c].v);
    for (int l = 0; l < count; ++l) dst[l * width + c] = buf[l];
  }
}

// The inverse of load_rows for the first `count` lanes.
template <int width> inline void store_rows(float* dst, int count, const F in[width]) {
  alignas(64) float buf[width][SF_LANES];
  for (int c = 0; c < width; ++c) vstore(buf[c], in[c].v);
  for (int l = 0; l < count; ++l)
    for (int c = 0; c < width; ++c) dst[l * width + c] = buf[c][l];
}

// fn(first_row, count) for consecutive blocks of SF_LANES primitives (the last one may be partial), OpenMP-parallel.
template <typename Fn> inline void for_lane_blocks(int64_t n, int nthreads, Fn fn) {
  const int64_t blocks = (n + SF_LANES - 1) / SF_LANES;
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t i = blk * SF_LANES;
    fn(i, static_cast<int>(n - i < SF_LANES ? n - i : SF_LANES));
  }
}

}  // namespace lanes
}  // namespace sf_cpu
#endif
