// A float vector type that the templated math of sf_math.h can be instantiated with, so a per-primitive routine
// written once (e.g. sf::slice4 and its VJP) runs on 16 primitives at a time (AVX-512) or 8 (AVX2 + FMA) instead of
// one: arithmetic operators, sqrt, sf_max and exp (for arguments <= 0, the only ones the slice passes) found by
// argument-dependent lookup. SF_LANES is the lane count, undefined where neither instruction set is enabled (the
// callers then keep the scalar loop).
#pragma once

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
inline Vec broadcast(float x) { return _mm512_set1_ps(x); }
inline Vec vsqrt(Vec x) { return _mm512_sqrt_ps(x); }
inline Vec vmax(Vec a, Vec b) { return _mm512_max_ps(a, b); }
inline Vec vexp_neg(Vec x) { return avx512::exp_neg(x); }
inline Vec vload(const float* p) { return _mm512_load_ps(p); }
inline void vstore(float* p, Vec x) { _mm512_store_ps(p, x); }
#else
using Vec = __m256;
inline Vec broadcast(float x) { return _mm256_set1_ps(x); }
inline Vec vsqrt(Vec x) { return _mm256_sqrt_ps(x); }
inline Vec vmax(Vec a, Vec b) { return _mm256_max_ps(a, b); }
inline Vec vexp_neg(Vec x) { return avx2::exp_neg(x); }
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
// exp(x) for x <= 0 (clamped at -80 as sf::sf_exp_neg): the slice's temporal decay is the only exp it takes.
inline F exp(F x) { return F(vexp_neg(x.v)); }

// `count` rows of `width` floats at `src` (row stride `width`), transposed into `width` vectors of lanes (rows past
// `count` read as 0): out[c] holds column c of the rows.
template <int width> inline void load_rows(const float* src, int count, F out[width]) {
  alignas(64) float buf[width][SF_LANES];
  for (int l = 0; l < SF_LANES; ++l)
    for (int c = 0; c < width; ++c) buf[c][l] = l < count ? src[l * width + c] : 0.0f;
  for (int c = 0; c < width; ++c) out[c] = F(vload(buf[c]));
}

// The inverse of load_rows for the first `count` lanes.
template <int width> inline void store_rows(float* dst, int count, const F in[width]) {
  alignas(64) float buf[width][SF_LANES];
  for (int c = 0; c < width; ++c) vstore(buf[c], in[c].v);
  for (int l = 0; l < count; ++l)
    for (int c = 0; c < width; ++c) dst[l * width + c] = buf[c][l];
}

}  // namespace lanes
}  // namespace sf_cpu
#endif
