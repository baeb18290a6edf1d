// The CPU backward's inputs (upstream per-pixel gradients) and outputs (per-primitive gradients), and the layout of
// the gradient row each (tile, primitive) intersection writes.
#pragma once

#include <cstdint>

namespace sf_cpu {

template <typename T> struct RasterGradIn {
  const T* v_colors;  // (H, W, C)
  const T* v_alphas;  // (H, W)
  const T* v_depths;  // (H, W)
  const T* trans;     // (H, W) final transmittance from the forward
  const int32_t* last_pos;
  bool depth_grad = true;  // false: no depth gradient (v_depths may be null; the kernels read zeros instead)
  bool absgrad = true;     // false: nobody reads absgrad (kernels may leave it 0)
};

template <typename T> struct RasterGradOut {
  T* v_means2d;   // (N, 2)
  T* v_params;    // (N, kParams)
  T* v_colors;    // (N, C)
  T* v_opacities; // (N,)
  T* v_depths;    // (N,)
  T* absgrad;     // (N, 2) sum over pixels of |d loss / d mean2d| per axis (0 where not asked for)
};

// Gradient row layout per intersection: mean2d(2), params(kP), opacity, depth, absgrad(2), colors(C).
template <typename FP> inline int grad_row(int channels) { return 2 + FP::kParams + 4 + channels; }

// The primitive-by-primitive kernels' short form for Gaussians without absgrad: a (tile, primitive)'s gradient row
// (RGB layout above) from the tile's lane sums `sums` of sigma's gradient times 1, dx, dx^2, dy, dx dy and dy^2, then
// the opacity, depth and colour gradients (11 values). sigma = 0.5 a dx^2 + b dx dy + 0.5 c dy^2 with dx = mean_x -
// pixel x and dy = mean_y - pixel y (sf::GaussianFootprint::sigma_vjp), so the conic and mean2d gradients follow.
// kParams > 3: a footprint whose first 3 parameters are that conic (a Gabor envelope); the rest are left to the caller.
template <int kParams = 3>
inline void set_gaussian_tile_row(float* grow, float a, float b, float c, const float sums[11]) {
  grow[0] = a * sums[1] + b * sums[3];
  grow[1] = b * sums[1] + c * sums[3];
  grow[2] = 0.5f * sums[2];
  grow[3] = sums[4];
  grow[4] = 0.5f * sums[5];
  float* tail = grow + 2 + kParams;
  tail[0] = sums[6];
  tail[1] = sums[7];
  tail[2] = tail[3] = 0.0f;  // absgrad
  tail[4] = sums[8];
  tail[5] = sums[9];
  tail[6] = sums[10];
}

}  // namespace sf_cpu
