// Raw-pointer launchers of the CUDA backend (float32). Torch stays out of the .cu files (see bindings.cpp).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "../sf_math.h"

namespace sf_cuda {

constexpr int kTile = 16;         // tile edge: one 16x16 thread block per tile
constexpr int kMaxChannels = 16;  // colour channels supported by the CUDA blend kernels

void covar_fwd(const float* quats, const float* scales, int64_t n, float* covars, cudaStream_t s);
void covar_bwd(const float* quats, const float* scales, const float* v_covars, int64_t n, float* v_quats,
               float* v_scales, cudaStream_t s);
void project_fwd(const sf::Camera& cam, const float* means, const float* covars, const float* opacities, int64_t n,
                 float near, float far, float eps2d, bool antialiased, float* means2d, float* conics, float* depths,
                 int32_t* radii, float* opac_out, cudaStream_t s);
void project_bwd(const sf::Camera& cam, const float* means, const float* covars, const float* opacities,
                 const int32_t* radii, int64_t n, float eps2d, bool antialiased, const float* v_means2d,
                 const float* v_conics, const float* v_depths, const float* v_opac_out, float* v_means,
                 float* v_covars, float* v_opacities, cudaStream_t s);
// 4D Gaussians sliced at time t (slice4_bwd is its VJP): means (n,3), times (n), quaternion pairs (n,4)x2, scales (n,4),
// temporal filter variance, opacities (n) -> means3 (n,3), covariances (n,3,3), opacities at t (n), temporal exponents (n).
void slice4_fwd(const float* means, const float* times, const float* ql, const float* qr, const float* scales,
                float filter_var, const float* opac, int64_t n, float t, float* mean3, float* cov3, float* opac_t, float* exponent,
                cudaStream_t s);
void slice4_bwd(const float* times, const float* ql, const float* qr, const float* scales, float filter_var,
                const float* opac, int64_t n,
                float t, const float* v_mean3, const float* v_cov3, const float* v_opac_t, float* v_means,
                float* v_times, float* v_ql, float* v_qr, float* v_scales, float* v_opac, cudaStream_t s);
void sh_fwd(int degree, const float* coeffs, int64_t n, int k, int channels, const float* dirs, float* out,
            cudaStream_t s);
void sh_bwd(int degree, const float* v_out, int64_t n, int k, int channels, const float* dirs, float* v_coeffs,
            cudaStream_t s);

// Binning, step 1: per-primitive tile counts and their inclusive prefix sum (offsets, n entries); returns the total.
int64_t tile_offsets(const float* means2d, const int32_t* radii, int64_t n, int width, int height,
                     int32_t* offsets, cudaStream_t s);
// Step 2: emit (tile << 32 | depth bits) keys with primitive ids, radix sort them (stable: ties keep id order),
// and write per-tile [start, end) ranges (tile_ranges: 2 * n_tiles ints, zeroed here).
void sort_intersections(const float* means2d, const int32_t* radii, const float* depths, const int32_t* offsets,
                        int64_t n, int64_t m, int width, int height, int64_t* keys, int32_t* ids,
                        int64_t* keys_sorted, int32_t* ids_sorted, int32_t* tile_ranges, cudaStream_t s);
// Footprint parameters (n, 3 + 4 terms): the conic, then per Gabor term (hx, hy, amplitude, phase); terms = 0 is
// the Gaussian footprint, 1..8 the Gabor one.
void render_fwd(const int32_t* tile_ranges, const int32_t* ids, const float* means2d, const float* fp_params, int terms,
                const float* colors, const float* opacities, const float* depths, const int32_t* radii,
                const float* background, int channels, int width, int height, float* out_colors, float* out_alphas,
                float* out_depths, float* out_trans, int32_t* last_pos, int32_t* last_id, cudaStream_t s);
// Backward; gradient outputs must be zeroed by the caller (atomics accumulate into them). v_depths_px null: no depth
// gradient upstream (v_depths stays zero); absgrad null: not wanted.
void render_bwd(const int32_t* tile_ranges, const int32_t* ids, const float* means2d, const float* fp_params, int terms,
                const float* colors, const float* opacities, const float* depths, const int32_t* radii,
                const float* background, int channels, int width, int height, const float* trans,
                const int32_t* last_pos, const float* v_colors_px, const float* v_alphas_px,
                const float* v_depths_px, float* v_means2d, float* v_params, float* v_colors, float* v_opacities,
                float* v_depths, float* absgrad, cudaStream_t s);
// Gabor wave terms seen from a camera (sf::gabor_view / gabor_term): freqs (n, k, 3), weights and phases (n, k) ->
// terms (n, k, 4) = (hx, hy, amplitude, phase), zeros where radii == 0; gabor_project_bwd is its VJP.
void gabor_project_fwd(const sf::Camera& cam, const float* means, const float* covars, const float* freqs,
                       const float* weights, const float* phases, const int32_t* radii, int64_t n, int k, float eps2d,
                       float* terms, cudaStream_t s);
void gabor_project_bwd(const sf::Camera& cam, const float* means, const float* covars, const float* freqs,
                       const float* weights, const int32_t* radii, int64_t n, int k, float eps2d, const float* v_terms,
                       float* v_means, float* v_covars, float* v_freqs, float* v_weights, float* v_phases,
                       cudaStream_t s);

// Fused (1 - w) L1 + w (1 - SSIM) of (H, W, C) float32 images (fused_loss.cu): stats = [mean |x - y|, mean SSIM,
// mean (clamp(x, 0, 1) - y)^2] (device, float64); `grad` (nullable) receives d loss / d x. Scratch sizes come from the two helpers below.
int64_t l1_ssim_scratch_floats(int height, int width, int channels);
int64_t l1_ssim_block_count(int height, int width, int channels);
void l1_ssim(const float* x, const float* y, int height, int width, int channels, float* grad, double* stats,
             double ssim_weight, float* scratch, double* block_sums, cudaStream_t s);

}  // namespace sf_cuda
