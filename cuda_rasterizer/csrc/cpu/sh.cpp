// CPU spherical-harmonics stage (forward + VJP w.r.t. the coefficients), parallel over primitives: the raw SH value
// along given directions (sh_fwd / sh_bwd), and the pipeline's colour max(SH(mean - camera centre) + 0.5, 0) in one
// pass (sh_colors_fwd / sh_colors_bwd) instead of a direction tensor, an add, a clamp and the clamp's mask in PyTorch.
#include <algorithm>
#include <type_traits>

#include "api.h"

namespace sf_cpu {
namespace {

// Where primitive i's SH direction comes from: dirs[i] (raw SH), or means[i] - centre (colours).
template <typename T, bool kColour> struct Direction {
  const T* src;
  T centre[3];
  inline const T* at(int64_t i, T buf[3]) const {
    if constexpr (!kColour) {
      return src + 3 * i;
    } else {
      for (int c = 0; c < 3; ++c) buf[c] = src[3 * i + c] - centre[c];
      return buf;
    }
  }
};

// RGB with the degree known at compile time: the basis and the 3 x (D + 1)^2 products unroll into straight code (the
// runtime-degree loops of sf::eval_sh run ~2x slower per primitive). kColour: out = max(value + 0.5, 0).
template <typename T, int D, bool kColour>
void sh_fwd_rgb(const T* coeffs, int64_t n, int k, const Direction<T, kColour>& dir, T* out, int nthreads) {
  constexpr int kBasis = (D + 1) * (D + 1);
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t i = 0; i < n; ++i) {
    T b[16], buf[3];
    sf::sh_basis(D, dir.at(i, buf), b);
    const T* c = coeffs + i * k * 3;
    T rgb[3] = {0, 0, 0};
#pragma GCC unroll 16
    for (int q = 0; q < kBasis; ++q)
      for (int ch = 0; ch < 3; ++ch) rgb[ch] += b[q] * c[3 * q + ch];
    for (int ch = 0; ch < 3; ++ch) out[3 * i + ch] = kColour ? std::max(rgb[ch] + T(0.5), T(0)) : rgb[ch];
  }
}

// kColour: the gradient passes where the colour is above the clamp (colors > 0), as the clamp's own VJP.
template <typename T, int D, bool kColour>
void sh_bwd_rgb(const T* v_out, const T* colors, int64_t n, int k, const Direction<T, kColour>& dir, T* v_coeffs,
                int nthreads) {
  constexpr int kBasis = (D + 1) * (D + 1);
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t i = 0; i < n; ++i) {
    T b[16], buf[3], vo[3];
    sf::sh_basis(D, dir.at(i, buf), b);
    for (int ch = 0; ch < 3; ++ch) vo[ch] = !kColour || colors[3 * i + ch] > T(0) ? v_out[3 * i + ch] : T(0);
    T* v = v_coeffs + i * k * 3;
#pragma GCC unroll 16
    for (int q = 0; q < kBasis; ++q)
      for (int ch = 0; ch < 3; ++ch) v[3 * q + ch] = b[q] * vo[ch];
    for (int q = 3 * kBasis; q < 3 * k; ++q) v[q] = T(0);  // coefficients above the degree get no gradient
  }
}

// Calls f(std::integral_constant<int, D>) for degree D in 0..3; false for any other degree.
template <typename F> inline bool with_sh_degree(int degree, F&& f) {
  switch (degree) {
    case 0: f(std::integral_constant<int, 0>{}); return true;
    case 1: f(std::integral_constant<int, 1>{}); return true;
    case 2: f(std::integral_constant<int, 2>{}); return true;
    case 3: f(std::integral_constant<int, 3>{}); return true;
    default: return false;
  }
}

template <typename T, bool kColour>
void sh_forward(int degree, const T* coeffs, int64_t n, int k, int channels, const Direction<T, kColour>& dir, T* out,
                int nthreads) {
  if (channels == 3 && with_sh_degree(degree, [&](auto d) {
        sh_fwd_rgb<T, decltype(d)::value, kColour>(coeffs, n, k, dir, out, nthreads);
      }))
    return;
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t i = 0; i < n; ++i) {
    T buf[3];
    T* o = out + i * channels;
    sf::eval_sh(degree, dir.at(i, buf), coeffs + i * k * channels, channels, o);
    if constexpr (kColour)
      for (int ch = 0; ch < channels; ++ch) o[ch] = std::max(o[ch] + T(0.5), T(0));
  }
}

template <typename T, bool kColour>
void sh_backward(int degree, const T* v_out, const T* colors, int64_t n, int k, int channels,
                 const Direction<T, kColour>& dir, T* v_coeffs, int nthreads) {
  if (channels == 3 && with_sh_degree(degree, [&](auto d) {
        sh_bwd_rgb<T, decltype(d)::value, kColour>(v_out, colors, n, k, dir, v_coeffs, nthreads);
      }))
    return;
  const int written = (degree + 1) * (degree + 1) * channels;
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t i = 0; i < n; ++i) {
    T buf[3], masked[kColour ? 64 : 1];  // colours: channels <= 64 (checked by the binding)
    const T* vo = v_out + i * channels;
    if constexpr (kColour) {
      for (int ch = 0; ch < channels; ++ch) masked[ch] = colors[i * channels + ch] > T(0) ? vo[ch] : T(0);
      vo = masked;
    }
    T* v = v_coeffs + i * k * channels;
    sf::eval_sh_vjp(degree, dir.at(i, buf), vo, channels, v);
    for (int q = written; q < k * channels; ++q) v[q] = T(0);  // coefficients above the degree get no gradient
  }
}

template <typename T> Direction<T, true> from_centre(const T* means, const T centre[3]) {
  return Direction<T, true>{means, {centre[0], centre[1], centre[2]}};
}

}  // namespace

template <typename T>
void sh_fwd(int degree, const T* coeffs, int64_t n, int k, int channels, const T* dirs, T* out, int nthreads) {
  sh_forward(degree, coeffs, n, k, channels, Direction<T, false>{dirs, {}}, out, nthreads);
}

template <typename T>
void sh_bwd(int degree, const T* v_out, int64_t n, int k, int channels, const T* dirs, T* v_coeffs, int nthreads) {
  sh_backward(degree, v_out, static_cast<const T*>(nullptr), n, k, channels, Direction<T, false>{dirs, {}}, v_coeffs,
              nthreads);
}

template <typename T>
void sh_colors_fwd(int degree, const T* coeffs, int64_t n, int k, int channels, const T* means, const T centre[3],
                   T* colors, int nthreads) {
  sh_forward(degree, coeffs, n, k, channels, from_centre(means, centre), colors, nthreads);
}

template <typename T>
void sh_colors_bwd(int degree, const T* v_colors, const T* colors, int64_t n, int k, int channels, const T* means,
                   const T centre[3], T* v_coeffs, int nthreads) {
  sh_backward(degree, v_colors, colors, n, k, channels, from_centre(means, centre), v_coeffs, nthreads);
}

#define SF_INSTANTIATE(T)                                                                                          \
  template void sh_fwd<T>(int, const T*, int64_t, int, int, const T*, T*, int);                                    \
  template void sh_bwd<T>(int, const T*, int64_t, int, int, const T*, T*, int);                                    \
  template void sh_colors_fwd<T>(int, const T*, int64_t, int, int, const T*, const T*, T*, int);                   \
  template void sh_colors_bwd<T>(int, const T*, const T*, int64_t, int, int, const T*, const T*, T*, int);
SF_INSTANTIATE(float)
SF_INSTANTIATE(double)

}  // namespace sf_cpu
