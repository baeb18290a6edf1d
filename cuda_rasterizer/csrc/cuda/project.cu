// CUDA per-primitive stages (covariance, projection, SH) and their VJPs, all from sf_math.h.
#include "api.h"

namespace sf_cuda {
namespace {

constexpr int kThreads = 256;
inline unsigned blocks(int64_t n) { return unsigned((n + kThreads - 1) / kThreads); }

__global__ void covar_fwd_k(const float* q, const float* s, int64_t n, float* cov) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) sf::quat_scale_to_covar(q + 4 * i, s + 3 * i, cov + 9 * i);
}

__global__ void covar_bwd_k(const float* q, const float* s, const float* vc, int64_t n, float* vq, float* vs) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) sf::quat_scale_to_covar_vjp(q + 4 * i, s + 3 * i, vc + 9 * i, vq + 4 * i, vs + 3 * i);
}

__global__ void project_fwd_k(sf::Camera cam, const float* means, const float* covars, const float* opac, int64_t n,
                              float near, float far, float eps2d, bool aa, float* m2d, float* conics, float* depths,
                              int32_t* radii, float* opac_out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  sf::ProjectOut<float> o;
  sf::project_gaussian(cam, means + 3 * i, covars + 9 * i, opac[i], near, far, eps2d, aa, o);
  m2d[2 * i] = o.mean2d[0];
  m2d[2 * i + 1] = o.mean2d[1];
  for (int j = 0; j < 3; ++j) conics[3 * i + j] = o.conic[j];
  depths[i] = o.depth;
  radii[2 * i] = o.radius[0];
  radii[2 * i + 1] = o.radius[1];
  opac_out[i] = o.opacity;
}

__global__ void project_bwd_k(sf::Camera cam, const float* means, const float* covars, const float* opac,
                              const int32_t* radii, int64_t n, float eps2d, bool aa, const float* v_m2d,
                              const float* v_conics, const float* v_depths, const float* v_opac_out, float* v_means,
                              float* v_covars, float* v_opac) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  if (radii[2 * i] <= 0 || radii[2 * i + 1] <= 0) {
    for (int j = 0; j < 3; ++j) v_means[3 * i + j] = 0.f;
    for (int j = 0; j < 9; ++j) v_covars[9 * i + j] = 0.f;
    v_opac[i] = 0.f;
    return;
  }
  sf::project_gaussian_vjp(cam, means + 3 * i, covars + 9 * i, opac[i], eps2d, aa, v_m2d + 2 * i, v_conics + 3 * i,
                           v_depths[i], v_opac_out[i], v_means + 3 * i, v_covars + 9 * i, v_opac + i);
}

// SH colours, one thread per (primitive, channel): neighbouring threads read and write neighbouring coefficients
// (one thread per primitive strode 48 floats apart: 4x slower backward at 1M primitives). The basis is recomputed per
// channel (a few dozen flops); the loops over basis terms are unrolled so the basis stays in registers.
struct SHThread {
  int64_t i;  // primitive
  int c;      // channel
  int nb;     // basis terms of the degree
  float b[16];
};

// This thread's (primitive, channel) and the primitive's basis; false past the last (primitive, channel).
__device__ inline bool sh_thread(int degree, int64_t n, int ch, const float* dirs, SHThread& t) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n * ch) return false;
  t.i = idx / ch;
  t.c = int(idx - t.i * ch);
  t.nb = sf::sh_basis(degree, dirs + 3 * t.i, t.b);
  return true;
}

__global__ void sh_fwd_k(int degree, const float* coeffs, int64_t n, int k, int ch, const float* dirs, float* out) {
  SHThread t;
  if (!sh_thread(degree, n, ch, dirs, t)) return;
  const float* src = coeffs + t.i * k * ch + t.c;
  float acc = 0.f;
#pragma unroll
  for (int j = 0; j < 16; ++j)
    if (j < t.nb) acc += t.b[j] * src[j * ch];
  out[t.i * ch + t.c] = acc;
}

// Writes every coefficient's gradient (zeros beyond the degree's basis), so the output needs no zero fill first.
__global__ void sh_bwd_k(int degree, const float* v_out, int64_t n, int k, int ch, const float* dirs, float* vc) {
  SHThread t;
  if (!sh_thread(degree, n, ch, dirs, t)) return;
  const float g = v_out[t.i * ch + t.c];
  float* dst = vc + t.i * k * ch + t.c;
#pragma unroll
  for (int j = 0; j < 16; ++j)
    if (j < k) dst[j * ch] = j < t.nb ? t.b[j] * g : 0.f;
  for (int j = 16; j < k; ++j) dst[j * ch] = 0.f;
}

__global__ void slice4_fwd_k(const float* means, const float* times, const float* ql, const float* qr,
                             const float* scales, float filter_var, const float* opac, int64_t n, float t, float* mean3,
                             float* cov3,
                             float* opac_t, float* exponent) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n)
    sf::slice4(means + 3 * i, times[i], ql + 4 * i, qr + 4 * i, scales + 4 * i, filter_var, opac[i], t, mean3 + 3 * i,
               cov3 + 9 * i, opac_t + i, exponent + i);
}

__global__ void slice4_bwd_k(const float* times, const float* ql, const float* qr, const float* scales,
                             float filter_var, const float* opac, int64_t n, float t, const float* v_mean3, const float* v_cov3,
                             const float* v_opac_t, float* v_means, float* v_times, float* v_ql, float* v_qr,
                             float* v_scales, float* v_opac) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n)
    sf::slice4_vjp(times[i], ql + 4 * i, qr + 4 * i, scales + 4 * i, filter_var, opac[i], t, v_mean3 + 3 * i, v_cov3 + 9 * i,
                   v_opac_t[i], v_means + 3 * i, v_times + i, v_ql + 4 * i, v_qr + 4 * i, v_scales + 4 * i, v_opac + i);
}

}  // namespace

void slice4_bwd(const float* times, const float* ql, const float* qr, const float* scales, float filter_var,
                const float* opac, int64_t n, float t, const float* v_mean3, const float* v_cov3, const float* v_opac_t, float* v_means,
                float* v_times, float* v_ql, float* v_qr, float* v_scales, float* v_opac, cudaStream_t st) {
  if (n > 0)
    slice4_bwd_k<<<blocks(n), kThreads, 0, st>>>(times, ql, qr, scales, filter_var, opac, n, t, v_mean3, v_cov3, v_opac_t, v_means,
                                                 v_times, v_ql, v_qr, v_scales, v_opac);
}
void slice4_fwd(const float* means, const float* times, const float* ql, const float* qr, const float* scales,
                float filter_var, const float* opac, int64_t n, float t, float* mean3, float* cov3, float* opac_t, float* exponent,
                cudaStream_t st) {
  if (n > 0)
    slice4_fwd_k<<<blocks(n), kThreads, 0, st>>>(means, times, ql, qr, scales, filter_var, opac, n, t, mean3, cov3, opac_t,
                                                 exponent);
}
void covar_fwd(const float* q, const float* s, int64_t n, float* cov, cudaStream_t st) {
  if (n > 0) covar_fwd_k<<<blocks(n), kThreads, 0, st>>>(q, s, n, cov);
}
void covar_bwd(const float* q, const float* s, const float* vc, int64_t n, float* vq, float* vs, cudaStream_t st) {
  if (n > 0) covar_bwd_k<<<blocks(n), kThreads, 0, st>>>(q, s, vc, n, vq, vs);
}
void project_fwd(const sf::Camera& cam, const float* means, const float* covars, const float* opac, int64_t n,
                 float near, float far, float eps2d, bool aa, float* m2d, float* conics, float* depths,
                 int32_t* radii, float* opac_out, cudaStream_t st) {
  if (n > 0)
    project_fwd_k<<<blocks(n), kThreads, 0, st>>>(cam, means, covars, opac, n, near, far, eps2d, aa, m2d, conics,
                                                  depths, radii, opac_out);
}
void project_bwd(const sf::Camera& cam, const float* means, const float* covars, const float* opac,
                 const int32_t* radii, int64_t n, float eps2d, bool aa, const float* v_m2d, const float* v_conics,
                 const float* v_depths, const float* v_opac_out, float* v_means, float* v_covars, float* v_opac,
                 cudaStream_t st) {
  if (n > 0)
    project_bwd_k<<<blocks(n), kThreads, 0, st>>>(cam, means, covars, opac, radii, n, eps2d, aa, v_m2d, v_conics,
                                                  v_depths, v_opac_out, v_means, v_covars, v_opac);
}
void sh_fwd(int degree, const float* coeffs, int64_t n, int k, int ch, const float* dirs, float* out,
            cudaStream_t st) {
  if (n > 0 && ch > 0) sh_fwd_k<<<blocks(n * ch), kThreads, 0, st>>>(degree, coeffs, n, k, ch, dirs, out);
}
void sh_bwd(int degree, const float* v_out, int64_t n, int k, int ch, const float* dirs, float* vc,
            cudaStream_t st) {
  if (n > 0 && ch > 0) sh_bwd_k<<<blocks(n * ch), kThreads, 0, st>>>(degree, v_out, n, k, ch, dirs, vc);
}

}  // namespace sf_cuda
