// CPU projection of Gabor wave terms (forward + VJP), parallel over primitives: sf::gabor_view / gabor_term.
#include "api.h"

namespace sf_cpu {

template <typename T>
void gabor_project_fwd(const sf::Camera& cam, const T* means, const T* covars, const T* freqs, const T* weights,
                       const T* phases, const int32_t* radii, int64_t n, int k, T eps2d, T* terms, int nthreads) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t i = 0; i < n; ++i) {
    T* out = terms + i * k * 4;
    sf::GaborView<T> v;
    const bool ok = radii[2 * i] > 0 && radii[2 * i + 1] > 0 && sf::gabor_view(cam, means + 3 * i, covars + 9 * i, v);
    for (int t = 0; t < k; ++t) {
      T h[2] = {0, 0}, a = 0;
      if (ok) sf::gabor_term(v, freqs + (i * k + t) * 3, weights[i * k + t], eps2d, h, &a);
      out[4 * t] = h[0];
      out[4 * t + 1] = h[1];
      out[4 * t + 2] = a;
      out[4 * t + 3] = ok ? phases[i * k + t] : T(0);
    }
  }
}

template <typename T>
void gabor_project_bwd(const sf::Camera& cam, const T* means, const T* covars, const T* freqs, const T* weights,
                       const int32_t* radii, int64_t n, int k, T eps2d, const T* v_terms, T* v_means, T* v_covars,
                       T* v_freqs, T* v_weights, T* v_phases, int nthreads) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t i = 0; i < n; ++i) {
    for (int j = 0; j < 3; ++j) v_means[3 * i + j] = 0;
    for (int j = 0; j < 9; ++j) v_covars[9 * i + j] = 0;
    for (int j = 0; j < 3 * k; ++j) v_freqs[3 * i * k + j] = 0;
    for (int j = 0; j < k; ++j) v_weights[i * k + j] = v_phases[i * k + j] = 0;
    sf::GaborView<T> v;
    if (!(radii[2 * i] > 0 && radii[2 * i + 1] > 0 && sf::gabor_view(cam, means + 3 * i, covars + 9 * i, v))) continue;
    sf::GaborViewGrad<T> g;
    for (int t = 0; t < k; ++t) {
      const T* vt = v_terms + (i * k + t) * 4;
      sf::gabor_term_vjp(v, freqs + (i * k + t) * 3, weights[i * k + t], eps2d, vt, vt[2], g, v_freqs + (i * k + t) * 3,
                         v_weights + i * k + t);
      v_phases[i * k + t] = vt[3];
    }
    sf::gabor_view_vjp(v, g, v_means + 3 * i, v_covars + 9 * i);
  }
}

#define SF_INSTANTIATE(T)                                                                                          \
  template void gabor_project_fwd<T>(const sf::Camera&, const T*, const T*, const T*, const T*, const T*,          \
                                     const int32_t*, int64_t, int, T, T*, int);                                    \
  template void gabor_project_bwd<T>(const sf::Camera&, const T*, const T*, const T*, const T*, const int32_t*,    \
                                     int64_t, int, T, const T*, T*, T*, T*, T*, T*, int);
SF_INSTANTIATE(float)
SF_INSTANTIATE(double)

}  // namespace sf_cpu
