// Raw-pointer entry points of the CPU backend (explicitly instantiated for float and double); the torch bindings
// in bindings.cpp call these. Keeping torch out of the kernel files keeps compiles short.
#pragma once

#include <cstdint>
#include <vector>

#include "../sf_math.h"

namespace sf_cpu {

template <typename T> void covar_fwd(const T* quats, const T* scales, int64_t n, T* covars, int nthreads);
template <typename T>
void covar_bwd(const T* quats, const T* scales, const T* v_covars, int64_t n, T* v_quats, T* v_scales, int nthreads);

template <typename T>
void project_fwd(const sf::Camera& cam, const T* means, const T* covars, const T* opacities, int64_t n, T near, T far,
                 T eps2d, bool antialiased, T* means2d, T* conics, T* depths, int32_t* radii, T* opac_out,
                 int nthreads);
template <typename T>
void project_bwd(const sf::Camera& cam, const T* means, const T* covars, const T* opacities, const int32_t* radii,
                 int64_t n, T eps2d, bool antialiased, const T* v_means2d, const T* v_conics, const T* v_depths,
                 const T* v_opac_out, T* v_means, T* v_covars, T* v_opacities, int nthreads);

template <typename T>
void sh_fwd(int degree, const T* coeffs, int64_t n, int k, int channels, const T* dirs, T* out, int nthreads);
template <typename T>
void sh_bwd(int degree, const T* v_out, int64_t n, int k, int channels, const T* dirs, T* v_coeffs, int nthreads);
// The pipeline's colours in one pass: max(SH(means - centre) + 0.5, 0) (sh.cpp); the VJP masks the clamped ones.
template <typename T>
void sh_colors_fwd(int degree, const T* coeffs, int64_t n, int k, int channels, const T* means, const T centre[3],
                   T* colors, int nthreads);
template <typename T>
void sh_colors_bwd(int degree, const T* v_colors, const T* colors, int64_t n, int k, int channels, const T* means,
                   const T centre[3], T* v_coeffs, int nthreads);

// 4D Gaussians sliced at time t with a temporal filter variance (see sf::slice4); slice4_bwd is its VJP.
template <typename T>
void slice4_fwd(const T* means, const T* times, const T* ql, const T* qr, const T* scales, T filter_var, const T* opac,
                int64_t n, T t, T* mean3, T* cov3, T* opac_t, T* exponent, int nthreads);
template <typename T>
void slice4_bwd(const T* times, const T* ql, const T* qr, const T* scales, T filter_var, const T* opac, int64_t n, T t,
                const T* v_mean3, const T* v_cov3, const T* v_opac_t, T* v_means, T* v_times, T* v_ql, T* v_qr,
                T* v_scales, T* v_opac, int nthreads);

// Rasterisation keeps its tile bins between forward and backward in an opaque handle.
struct BinsHandle;
void free_bins(BinsHandle* h);
int64_t bins_intersections(const BinsHandle* h);

// Footprint parameters per primitive: the conic (a, b, c), then `terms` Gabor wave terms (hx, hy, amplitude, phase)
// each; terms = 0 is the Gaussian footprint.
template <typename T>
BinsHandle* raster_fwd(const T* means2d, const T* fp_params, int terms, const T* colors, const T* opacities,
                       const T* depths, const int32_t* radii, const T* background, int64_t n, int channels, int width,
                       int height, int tile, int nthreads, T* out_colors, T* out_alphas, T* out_depths, T* out_trans,
                       int32_t* out_last_id, int32_t* out_last_pos, int64_t* n_evals);
template <typename T>
void raster_bwd(const BinsHandle* bins, const T* means2d, const T* fp_params, int terms, const T* colors,
                const T* opacities, const T* depths, const int32_t* radii, const T* background, int64_t n, int channels,
                int width, int height, int tile, int nthreads, const T* trans, const int32_t* last_pos,
                const T* v_colors_px, const T* v_alphas_px, const T* v_depths_px, T* v_means2d, T* v_params,
                T* v_colors, T* v_opacities, T* v_depths, T* absgrad, bool depth_grad = true,
                bool want_absgrad = true);

// Projection of Gabor wave terms (sf::gabor_view / gabor_term): world frequencies (N, K, 3), weights and phases
// (N, K) -> terms (N, K, 4) = (hx, hy, amplitude, phase) in pixels; zeros where radii == 0.
template <typename T>
void gabor_project_fwd(const sf::Camera& cam, const T* means, const T* covars, const T* freqs, const T* weights,
                       const T* phases, const int32_t* radii, int64_t n, int k, T eps2d, T* terms, int nthreads);
template <typename T>
void gabor_project_bwd(const sf::Camera& cam, const T* means, const T* covars, const T* freqs, const T* weights,
                       const int32_t* radii, int64_t n, int k, T eps2d, const T* v_terms, T* v_means, T* v_covars,
                       T* v_freqs, T* v_weights, T* v_phases, int nthreads);
// World frequencies of Gabor terms (sf::gabor_world_freqs) from (N, 4) quats, (N, 3) scales, (N, K, 3) nu, and VJP.
template <typename T>
void gabor_freqs_fwd(const T* quats, const T* scales, const T* nu, int64_t n, int k, T* freqs, int nthreads);
template <typename T>
void gabor_freqs_bwd(const T* quats, const T* scales, const T* nu, const T* v_freqs, int64_t n, int k, T* v_quats,
                     T* v_scales, T* v_nu, int nthreads);

// Fused (1 - w) L1 + w (1 - SSIM) of (H, W, C) images x against y (fused_loss.cpp). Writes stats = the means of
// |x - y|, of SSIM and of (clamp(x, 0, 1) - y)^2 (for PSNR), and with a non-null `grad` the gradient of the loss
// with respect to x. A non-null `mask` (one byte per value of x) scores where(mask, x, y) instead of x.
template <typename T>
void l1_ssim(const T* x, const T* y, const uint8_t* mask, int height, int width, int channels, T* grad, double* stats,
             double ssim_weight, int nthreads);

}  // namespace sf_cpu
