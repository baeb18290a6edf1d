// CPU projection of Gabor wave terms (forward + VJP), parallel over primitives: sf::gabor_view / gabor_term. Float
// runs SF_LANES primitives per call on SIMD lanes (lanes.h; the routines are branch-free), double the scalar loop.
#include <type_traits>

#include "api.h"
#include "lanes.h"

namespace sf_cpu {

#if defined(SF_LANES)
namespace {
using lanes::F;
using lanes::M;
constexpr int kMaxTerms = 8;

// Lanes whose primitive is binned (both radii > 0): the others get zeros, as sf::gabor_project_terms gives them.
M visible_lanes(const int32_t* radii, int count) {
  alignas(64) float on[SF_LANES];
  for (int l = 0; l < SF_LANES; ++l) on[l] = l < count && radii[2 * l] > 0 && radii[2 * l + 1] > 0 ? 1.0f : 0.0f;
  return F(0.5f) < F(lanes::vload(on));
}

void gabor_project_fwd_block(const sf::Camera& cam, const float* means, const float* covars, const float* freqs,
                             const float* weights, const float* phases, const int32_t* radii, int count, int k,
                             float eps2d, float* terms) {
  F m[3], cov[9], f[3 * kMaxTerms], w[kMaxTerms], ph[kMaxTerms], out[4 * kMaxTerms];
  lanes::load_rows<3>(means, count, m);
  lanes::load_rows<9>(covars, count, cov);
  lanes::load_rows_n(freqs, count, 3 * k, f);
  lanes::load_rows_n(weights, count, k, w);
  lanes::load_rows_n(phases, count, k, ph);
  sf::GaborView<F> v;
  const M ok = visible_lanes(radii, count) & sf::gabor_view(cam, m, cov, v);
  for (int t = 0; t < k; ++t) {
    F h[2], a;
    sf::gabor_term(v, f + 3 * t, w[t], F(eps2d), h, &a);
    out[4 * t] = sf_select(ok, h[0], F(0.0f));
    out[4 * t + 1] = sf_select(ok, h[1], F(0.0f));
    out[4 * t + 2] = sf_select(ok, a, F(0.0f));
    out[4 * t + 3] = sf_select(ok, ph[t], F(0.0f));
  }
  lanes::store_rows_n(terms, count, 4 * k, out);
}

void gabor_project_bwd_block(const sf::Camera& cam, const float* means, const float* covars, const float* freqs,
                             const float* weights, const int32_t* radii, int count, int k, float eps2d,
                             const float* v_terms, float* v_means, float* v_covars, float* v_freqs, float* v_weights,
                             float* v_phases) {
  F m[3], cov[9], f[3 * kMaxTerms], w[kMaxTerms], vt[4 * kMaxTerms];
  lanes::load_rows<3>(means, count, m);
  lanes::load_rows<9>(covars, count, cov);
  lanes::load_rows_n(freqs, count, 3 * k, f);
  lanes::load_rows_n(weights, count, k, w);
  lanes::load_rows_n(v_terms, count, 4 * k, vt);
  sf::GaborView<F> v;
  const M ok = visible_lanes(radii, count) & sf::gabor_view(cam, m, cov, v);
  sf::GaborViewGrad<F> g;
  F vm[3] = {F(0.0f), F(0.0f), F(0.0f)}, vc[9], vf[3 * kMaxTerms], vw[kMaxTerms], vp[kMaxTerms];
  for (auto& x : vc) x = F(0.0f);
  for (int t = 0; t < k; ++t) {
    sf::gabor_term_vjp(v, f + 3 * t, w[t], F(eps2d), vt + 4 * t, vt[4 * t + 2], g, vf + 3 * t, vw + t);
    vp[t] = vt[4 * t + 3];
  }
  sf::gabor_view_vjp(v, g, vm, vc);
  const F zero(0.0f);
  for (auto& x : vm) x = sf_select(ok, x, zero);
  for (auto& x : vc) x = sf_select(ok, x, zero);
  for (int j = 0; j < 3 * k; ++j) vf[j] = sf_select(ok, vf[j], zero);
  for (int t = 0; t < k; ++t) {
    vw[t] = sf_select(ok, vw[t], zero);
    vp[t] = sf_select(ok, vp[t], zero);
  }
  lanes::store_rows<3>(v_means, count, vm);
  lanes::store_rows<9>(v_covars, count, vc);
  lanes::store_rows_n(v_freqs, count, 3 * k, vf);
  lanes::store_rows_n(v_weights, count, k, vw);
  lanes::store_rows_n(v_phases, count, k, vp);
}
}  // namespace
#endif

template <typename T>
void gabor_project_fwd(const sf::Camera& cam, const T* means, const T* covars, const T* freqs, const T* weights,
                       const T* phases, const int32_t* radii, int64_t n, int k, T eps2d, T* terms, int nthreads) {
#if defined(SF_LANES)
  if constexpr (std::is_same<T, float>::value) {
    if (k <= kMaxTerms) {
      lanes::for_lane_blocks(n, nthreads, [&](int64_t i, int count) {
        gabor_project_fwd_block(cam, means + 3 * i, covars + 9 * i, freqs + i * k * 3, weights + i * k, phases + i * k,
                                radii + 2 * i, count, k, eps2d, terms + i * k * 4);
      });
      return;
    }
  }
#endif
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t i = 0; i < n; ++i)
    sf::gabor_project_terms(cam, means + 3 * i, covars + 9 * i, freqs + i * k * 3, weights + i * k, phases + i * k, k,
                            radii[2 * i] > 0 && radii[2 * i + 1] > 0, eps2d, terms + i * k * 4);
}

template <typename T>
void gabor_project_bwd(const sf::Camera& cam, const T* means, const T* covars, const T* freqs, const T* weights,
                       const int32_t* radii, int64_t n, int k, T eps2d, const T* v_terms, T* v_means, T* v_covars,
                       T* v_freqs, T* v_weights, T* v_phases, int nthreads) {
#if defined(SF_LANES)
  if constexpr (std::is_same<T, float>::value) {
    if (k <= kMaxTerms) {
      lanes::for_lane_blocks(n, nthreads, [&](int64_t i, int count) {
        gabor_project_bwd_block(cam, means + 3 * i, covars + 9 * i, freqs + i * k * 3, weights + i * k, radii + 2 * i,
                                count, k, eps2d, v_terms + i * k * 4, v_means + 3 * i, v_covars + 9 * i,
                                v_freqs + i * k * 3, v_weights + i * k, v_phases + i * k);
      });
      return;
    }
  }
#endif
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
