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
  bool depth_grad = true;  // false: v_depths is all zeros (kernels may skip the depth channel)
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

// The row kernels' short form for Gaussians without absgrad: adds one (primitive, row) contribution to its gradient
// row (RGB layout above) from the row's lane sums of sigma's gradient times 1, dx and dx^2 (s0, s1, s2) and of the
// opacity, depth and colour gradients. sigma = 0.5 a dx^2 + b dx dy + 0.5 c dy^2 with dx = mean_x - pixel x and dy
// constant along the row (sf::GaussianFootprint::sigma_vjp), so the conic and mean2d gradients follow per row.
inline void add_gaussian_row_sums(float* grow, float a, float b, float c, float dy, float s0, float s1, float s2,
                                  float opacity, float depth, float red, float green, float blue) {
  grow[0] += a * s1 + b * dy * s0;
  grow[1] += b * s1 + c * dy * s0;
  grow[2] += 0.5f * s2;
  grow[3] += dy * s1;
  grow[4] += 0.5f * dy * dy * s0;
  grow[5] += opacity;
  grow[6] += depth;  // absgrad (7, 8) stays 0
  grow[9] += red;
  grow[10] += green;
  grow[11] += blue;
}

}  // namespace sf_cpu
