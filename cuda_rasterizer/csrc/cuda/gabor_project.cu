// CUDA projection of Gabor wave terms (forward + VJP), one thread per primitive: sf::gabor_view / gabor_term.
#include "api.h"

namespace sf_cuda {
namespace {

constexpr int kThreads = 128;
inline unsigned blocks(int64_t n) { return unsigned((n + kThreads - 1) / kThreads); }

__global__ void gabor_project_fwd_k(sf::Camera cam, const float* means, const float* covars, const float* freqs,
                                    const float* weights, const float* phases, const int32_t* radii, int64_t n, int k,
                                    float eps2d, float* terms) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float* out = terms + i * k * 4;
  sf::GaborView<float> v;
  const bool ok = radii[2 * i] > 0 && radii[2 * i + 1] > 0 && sf::gabor_view(cam, means + 3 * i, covars + 9 * i, v);
  for (int t = 0; t < k; ++t) {
    float h[2] = {0.f, 0.f}, a = 0.f;
    if (ok) sf::gabor_term(v, freqs + (i * k + t) * 3, weights[i * k + t], eps2d, h, &a);
    out[4 * t] = h[0];
    out[4 * t + 1] = h[1];
    out[4 * t + 2] = a;
    out[4 * t + 3] = ok ? phases[i * k + t] : 0.f;
  }
}

__global__ void gabor_project_bwd_k(sf::Camera cam, const float* means, const float* covars, const float* freqs,
                                    const float* weights, const int32_t* radii, int64_t n, int k, float eps2d,
                                    const float* v_terms, float* v_means, float* v_covars, float* v_freqs,
                                    float* v_weights, float* v_phases) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  for (int j = 0; j < 3; ++j) v_means[3 * i + j] = 0.f;
  for (int j = 0; j < 9; ++j) v_covars[9 * i + j] = 0.f;
  for (int j = 0; j < 3 * k; ++j) v_freqs[3 * i * k + j] = 0.f;
  for (int j = 0; j < k; ++j) v_weights[i * k + j] = v_phases[i * k + j] = 0.f;
  sf::GaborView<float> v;
  if (!(radii[2 * i] > 0 && radii[2 * i + 1] > 0 && sf::gabor_view(cam, means + 3 * i, covars + 9 * i, v))) return;
  sf::GaborViewGrad<float> g;
  for (int t = 0; t < k; ++t) {
    const float* vt = v_terms + (i * k + t) * 4;
    sf::gabor_term_vjp(v, freqs + (i * k + t) * 3, weights[i * k + t], eps2d, vt, vt[2], g, v_freqs + (i * k + t) * 3,
                       v_weights + i * k + t);
    v_phases[i * k + t] = vt[3];
  }
  sf::gabor_view_vjp(v, g, v_means + 3 * i, v_covars + 9 * i);
}

}  // namespace

void gabor_project_fwd(const sf::Camera& cam, const float* means, const float* covars, const float* freqs,
                       const float* weights, const float* phases, const int32_t* radii, int64_t n, int k, float eps2d,
                       float* terms, cudaStream_t s) {
  if (n == 0) return;
  gabor_project_fwd_k<<<blocks(n), kThreads, 0, s>>>(cam, means, covars, freqs, weights, phases, radii, n, k, eps2d,
                                                      terms);
}

void gabor_project_bwd(const sf::Camera& cam, const float* means, const float* covars, const float* freqs,
                       const float* weights, const int32_t* radii, int64_t n, int k, float eps2d, const float* v_terms,
                       float* v_means, float* v_covars, float* v_freqs, float* v_weights, float* v_phases,
                       cudaStream_t s) {
  if (n == 0) return;
  gabor_project_bwd_k<<<blocks(n), kThreads, 0, s>>>(cam, means, covars, freqs, weights, radii, n, k, eps2d, v_terms,
                                                      v_means, v_covars, v_freqs, v_weights, v_phases);
}

}  // namespace sf_cuda
