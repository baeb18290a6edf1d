// CPU projection of Gabor wave terms (forward + VJP), parallel over primitives: sf::gabor_view / gabor_term.
#include "api.h"

namespace sf_cpu {

template <typename T>
void gabor_project_fwd(const sf::Camera& cam, const T* means, const T* covars, const T* freqs, const T* weights,
                       const T* phases, const int32_t* radii, int64_t n, int k, T eps2d, T* terms, int nthreads) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t i = 0; i < n; ++i)
    sf::gabor_project_terms(cam, means + 3 * i, covars + 9 * i, freqs + i * k * 3, weights + i * k, phases + i * k, k,
                            radii[2 * i] > 0 && radii[2 * i + 1] > 0, eps2d, terms + i * k * 4);
}

template <typename T>
void gabor_project_bwd(const sf::Camera& cam, const T* means, const T* covars, const T* freqs, const T* weights,
                       const int32_t* radii, int64_t n, int k, T eps2d, const T* v_terms, T* v_means, T* v_covars,
                       T* v_freqs, T* v_weights, T* v_phases, int nthreads) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t i = 0; i < n; ++i)
    sf::gabor_project_terms_vjp(cam, means + 3 * i, covars + 9 * i, freqs + i * k * 3, weights + i * k, k,
                                radii[2 * i] > 0 && radii[2 * i + 1] > 0, eps2d, v_terms + i * k * 4, v_means + 3 * i,
                                v_covars + 9 * i, v_freqs + i * k * 3, v_weights + i * k, v_phases + i * k);
}

template <typename T>
void gabor_freqs_fwd(const T* quats, const T* scales, const T* nu, int64_t n, int k, T* freqs, int nthreads) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t i = 0; i < n; ++i) sf::gabor_world_freqs(quats + 4 * i, scales + 3 * i, nu + i * k * 3, k, freqs + i * k * 3);
}

template <typename T>
void gabor_freqs_bwd(const T* quats, const T* scales, const T* nu, const T* v_freqs, int64_t n, int k, T* v_quats,
                     T* v_scales, T* v_nu, int nthreads) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t i = 0; i < n; ++i)
    sf::gabor_world_freqs_vjp(quats + 4 * i, scales + 3 * i, nu + i * k * 3, k, v_freqs + i * k * 3, v_quats + 4 * i,
                              v_scales + 3 * i, v_nu + i * k * 3);
}

#define SF_INSTANTIATE(T)                                                                                          \
  template void gabor_project_fwd<T>(const sf::Camera&, const T*, const T*, const T*, const T*, const T*,          \
                                     const int32_t*, int64_t, int, T, T*, int);                                    \
  template void gabor_project_bwd<T>(const sf::Camera&, const T*, const T*, const T*, const T*, const int32_t*,    \
                                     int64_t, int, T, const T*, T*, T*, T*, T*, T*, int);                          \
  template void gabor_freqs_fwd<T>(const T*, const T*, const T*, int64_t, int, T*, int);                           \
  template void gabor_freqs_bwd<T>(const T*, const T*, const T*, const T*, int64_t, int, T*, T*, T*, int);
SF_INSTANTIATE(float)
SF_INSTANTIATE(double)

}  // namespace sf_cpu
