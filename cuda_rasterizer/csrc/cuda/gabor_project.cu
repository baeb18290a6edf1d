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
  sf::gabor_project_terms(cam, means + 3 * i, covars + 9 * i, freqs + i * k * 3, weights + i * k, phases + i * k, k,
                          radii[2 * i] > 0 && radii[2 * i + 1] > 0, eps2d, terms + i * k * 4);
}

__global__ void gabor_project_bwd_k(sf::Camera cam, const float* means, const float* covars, const float* freqs,
                                    const float* weights, const int32_t* radii, int64_t n, int k, float eps2d,
                                    const float* v_terms, float* v_means, float* v_covars, float* v_freqs,
                                    float* v_weights, float* v_phases) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  sf::gabor_project_terms_vjp(cam, means + 3 * i, covars + 9 * i, freqs + i * k * 3, weights + i * k, k,
                              radii[2 * i] > 0 && radii[2 * i + 1] > 0, eps2d, v_terms + i * k * 4, v_means + 3 * i,
                              v_covars + 9 * i, v_freqs + i * k * 3, v_weights + i * k, v_phases + i * k);
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
