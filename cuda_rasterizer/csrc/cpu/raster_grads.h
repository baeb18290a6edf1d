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

}  // namespace sf_cpu
