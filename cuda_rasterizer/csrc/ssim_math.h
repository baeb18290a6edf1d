// Fused L1 + D-SSIM loss math shared by the CPU and CUDA backends: the Gaussian window and, per pixel, SSIM and
// its partial derivatives with respect to the blurred statistics. Loss = (1 - w) mean|x - y| + w (1 - mean SSIM),
// SSIM over an 11x11 Gaussian window (sigma 1.5) with zero-padded borders, as 3DGS and gsplat compute it.
//
// With mu_x = B(x), mu_y = B(y), s_xx = B(x x), s_yy = B(y y), s_xy = B(x y) (B: the Gaussian blur),
//   S = A1 A2 / (D1 D2), A1 = 2 mu_x mu_y + C1, A2 = 2 (s_xy - mu_x mu_y) + C2,
//   D1 = mu_x^2 + mu_y^2 + C1, D2 = s_xx - mu_x^2 + s_yy - mu_y^2 + C2.
// Because B is a symmetric 'same' convolution, its adjoint is B itself, so the gradient with respect to x is
//   dL/dx = B(g dS/dmu_x) + 2 x B(g dS/ds_xx) + y B(g dS/ds_xy) (+ the L1 term), g = dL/dS per pixel.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define SF_SSIM_HD __host__ __device__
#else
#define SF_SSIM_HD
#endif

namespace sf_ssim {

constexpr int kRadius = 5;  // 11x11 window
constexpr int kTaps = 2 * kRadius + 1;
constexpr double kSigma = 1.5;
constexpr double kC1 = 0.01 * 0.01;
constexpr double kC2 = 0.03 * 0.03;

// Normalised 1D Gaussian weights (double; the 2D window is their outer product).
inline void window(double* w) {
  double total = 0.0;
  for (int i = 0; i < kTaps; ++i) {
    const double d = double(i - kRadius);
    w[i] = std::exp(-(d * d) / (2.0 * kSigma * kSigma));
    total += w[i];
  }
  for (int i = 0; i < kTaps; ++i) w[i] /= total;
}

// SSIM at one pixel from the blurred statistics; with `grad`, also dS/dmu_x, dS/ds_xx and dS/ds_xy.
template <typename T>
SF_SSIM_HD inline T pixel(T mu_x, T mu_y, T s_xx, T s_yy, T s_xy, T* d_mu = nullptr, T* d_sxx = nullptr,
                          T* d_sxy = nullptr) {
  const T c1 = T(kC1), c2 = T(kC2);
  const T a1 = T(2) * mu_x * mu_y + c1;
  const T a2 = T(2) * (s_xy - mu_x * mu_y) + c2;
  const T d1 = mu_x * mu_x + mu_y * mu_y + c1;
  const T d2 = (s_xx - mu_x * mu_x) + (s_yy - mu_y * mu_y) + c2;
  const T inv = T(1) / (d1 * d2);  // d1 >= c1 and d2 >= c2 (variances are non-negative up to round-off)
  const T s = a1 * a2 * inv;
  if (d_mu != nullptr) {
    // No division by a1 or a2: a2 = 2 cov + c2 is exactly 0 for anti-correlated windows (cov = -c2 / 2), where
    // s (dS/dx) / a2 would give 0 x inf = NaN.
    *d_mu = (T(2) * mu_y * (a2 - a1) - T(2) * mu_x * s * (d2 - d1)) * inv;
    *d_sxx = -s / d2;
    *d_sxy = T(2) * a1 * inv;
  }
  return s;
}

// d|x - y| / dx as torch defines it (0 at x == y).
template <typename T> SF_SSIM_HD inline T l1_sign(T x, T y) { return x > y ? T(1) : (x < y ? T(-1) : T(0)); }

}  // namespace sf_ssim
