// Fused L1 + D-SSIM loss on the CPU: separable 11-tap Gaussian blurs over interleaved (H, W, C) rows, OpenMP over
// rows, the gradient computed in the same call (training always back-propagates the loss). Math: ../ssim_math.h.
#include <omp.h>

#include <algorithm>
#include <vector>

#include "../ssim_math.h"
#include "api.h"
#include "buffer_pool.h"

namespace sf_cpu {
namespace {

using sf_ssim::kRadius;
using sf_ssim::kTaps;

// Copy `count` interleaved rows into zero-padded scratch rows: pad[k] has kRadius*C zeros on each side.
template <typename T> void pad_row(const T* src, int row_len, int pad, T* dst) {
  std::fill(dst, dst + pad, T(0));
  std::copy(src, src + row_len, dst + pad);
  std::fill(dst + pad + row_len, dst + 2 * pad + row_len, T(0));
}

// Horizontal pass of the five statistics of (x, y): out[k] rows (k = x, y, xx, yy, xy), length R each.
template <typename T>
void horizontal_stats(const T* x, const T* y, int height, int row_len, int channels, const T* w, T* out,
                      int nthreads) {
  const int pad = kRadius * channels;
  const size_t plane = size_t(height) * row_len;
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> px(row_len + 2 * pad), py(row_len + 2 * pad);
#pragma omp for schedule(static)
    for (int r = 0; r < height; ++r) {
      pad_row(x + size_t(r) * row_len, row_len, pad, px.data());
      pad_row(y + size_t(r) * row_len, row_len, pad, py.data());
      const T* a = px.data();
      const T* b = py.data();
      T* o = out + size_t(r) * row_len;
#pragma omp simd
      for (int j = 0; j < row_len; ++j) {
        T sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
        for (int t = 0; t < kTaps; ++t) {
          const T xa = a[j + t * channels], yb = b[j + t * channels], wt = w[t];
          sx += wt * xa; sy += wt * yb; sxx += wt * xa * xa; syy += wt * yb * yb; sxy += wt * xa * yb;
        }
        o[j] = sx; o[plane + j] = sy; o[2 * plane + j] = sxx; o[3 * plane + j] = syy; o[4 * plane + j] = sxy;
      }
    }
  }
}

// Horizontal pass of `maps` planes (each H x R) into out.
template <typename T>
void horizontal_maps(const T* in, int maps, int height, int row_len, int channels, const T* w, T* out, int nthreads) {
  const int pad = kRadius * channels;
  const size_t plane = size_t(height) * row_len;
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> p(row_len + 2 * pad);
#pragma omp for schedule(static) collapse(2)
    for (int m = 0; m < maps; ++m) {
      for (int r = 0; r < height; ++r) {
        pad_row(in + m * plane + size_t(r) * row_len, row_len, pad, p.data());
        const T* a = p.data();
        T* o = out + m * plane + size_t(r) * row_len;
#pragma omp simd
        for (int j = 0; j < row_len; ++j) {
          T s = 0;
          for (int t = 0; t < kTaps; ++t) s += w[t] * a[j + t * channels];
          o[j] = s;
        }
      }
    }
  }
}

constexpr int kChunk = 256;  // values of a row blurred vertically at a time (K chunks of them stay in L1)

// Vertical 11-tap blur of values [j0, j0 + n) of output row r for K planes of H x R values into out[k * kChunk + j]:
// out[k] = sum_t w[t] h_k[r + t - 5]. Rows outside the image read `zeros` (kChunk zeros), so every output sums all
// 11 taps in registers.
template <int K, typename T>
inline void vertical_blur_chunk(const T* h, size_t plane, int r, int height, int row_len, int j0, int n, const T* w,
                                const T* zeros, T* out) {
  for (int k = 0; k < K; ++k) {
    const T* src[kTaps];
    for (int t = 0; t < kTaps; ++t) {
      const int row = r + t - kRadius;
      src[t] = row >= 0 && row < height ? h + k * plane + size_t(row) * row_len + j0 : zeros;
    }
    T* o = out + k * kChunk;
#pragma omp simd
    for (int j = 0; j < n; ++j) {
      T a = T(0);
      for (int t = 0; t < kTaps; ++t) a += w[t] * src[t][j];
      o[j] = a;
    }
  }
}

// SSIM, |x - y| and the displayed squared error of n values from their blurred statistics m (5 planes of kChunk);
// kGrad: also dS/dmu_x, dS/ds_xx and dS/ds_xy into partial[0], [plane], [2 plane].
template <bool kGrad, typename T>
inline void ssim_chunk(const T* m, const T* xr, const T* yr, int n, T* partial, size_t plane, T& sum_s, T& sum_l1,
                       T& sum_sq) {
  T ss = 0, sl = 0, sq = 0;
#pragma omp simd reduction(+ : ss, sl, sq)
  for (int j = 0; j < n; ++j) {
    T dm, dxx, dxy;
    const T s = sf_ssim::pixel(m[j], m[kChunk + j], m[2 * kChunk + j], m[3 * kChunk + j], m[4 * kChunk + j],
                               kGrad ? &dm : nullptr, &dxx, &dxy);
    if constexpr (kGrad) {
      partial[j] = dm;
      partial[plane + j] = dxx;
      partial[2 * plane + j] = dxy;
    }
    ss += s;
    const T diff = xr[j] - yr[j];
    sl += diff < T(0) ? -diff : diff;
    const T shown = std::min(std::max(xr[j], T(0)), T(1)) - yr[j];  // PSNR's error: the image as displayed
    sq += shown * shown;
  }
  sum_s += ss;
  sum_l1 += sl;
  sum_sq += sq;
}

}  // namespace

template <typename T>
void l1_ssim(const T* x, const T* y, int height, int width, int channels, T* grad, double* stats,
             double ssim_weight, int nthreads) {
  double wd[kTaps];
  sf_ssim::window(wd);
  T w[kTaps];
  for (int t = 0; t < kTaps; ++t) w[t] = T(wd[t]);
  const int row_len = width * channels;
  const size_t plane = size_t(height) * row_len;
  const bool want_grad = grad != nullptr;
  PooledVector<T> hb(5 * plane);
  PooledVector<T> partials(want_grad ? 3 * plane : 0);
  std::vector<double> row_ssim(height), row_l1(height), row_sq(height);
  const std::vector<T> zero_row(kChunk, T(0));
  const T* zeros = zero_row.data();

  horizontal_stats(x, y, height, row_len, channels, w, hb.data(), nthreads);
  const T* h = hb.data();
#pragma omp parallel num_threads(nthreads)
  {
    alignas(64) T m[5 * kChunk];
#pragma omp for schedule(static)
    for (int r = 0; r < height; ++r) {
      T sum_s = 0, sum_l1 = 0, sum_sq = 0;
      for (int j0 = 0; j0 < row_len; j0 += kChunk) {
        const int n = std::min(kChunk, row_len - j0);
        vertical_blur_chunk<5>(h, plane, r, height, row_len, j0, n, w, zeros, m);
        const size_t at = size_t(r) * row_len + j0;
        T* partial = want_grad ? partials.data() + at : nullptr;
        if (want_grad)
          ssim_chunk<true>(m, x + at, y + at, n, partial, plane, sum_s, sum_l1, sum_sq);
        else
          ssim_chunk<false>(m, x + at, y + at, n, partial, plane, sum_s, sum_l1, sum_sq);
      }
      row_ssim[r] = double(sum_s);
      row_l1[r] = double(sum_l1);
      row_sq[r] = double(sum_sq);
    }
  }
  double total_s = 0.0, total_l1 = 0.0, total_sq = 0.0;  // fixed order: identical for any thread count
  for (int r = 0; r < height; ++r) { total_s += row_ssim[r]; total_l1 += row_l1[r]; total_sq += row_sq[r]; }
  const double count = double(plane);
  stats[0] = total_l1 / count;
  stats[1] = total_s / count;
  stats[2] = total_sq / count;
  if (!want_grad) return;

  // dL/dx = (1-w)/N sign(x-y) + g [B(dS/dmu) + 2 x B(dS/dsxx) + y B(dS/dsxy)], g = -w/N.
  horizontal_maps(partials.data(), 3, height, row_len, channels, w, hb.data(), nthreads);
  const T g_ssim = T(-ssim_weight / count), g_l1 = T((1.0 - ssim_weight) / count);
#pragma omp parallel num_threads(nthreads)
  {
    alignas(64) T b[3 * kChunk];
#pragma omp for schedule(static)
    for (int r = 0; r < height; ++r) {
      for (int j0 = 0; j0 < row_len; j0 += kChunk) {
        const int n = std::min(kChunk, row_len - j0);
        vertical_blur_chunk<3>(h, plane, r, height, row_len, j0, n, w, zeros, b);
        const T* xr = x + size_t(r) * row_len + j0;
        const T* yr = y + size_t(r) * row_len + j0;
        T* gr = grad + size_t(r) * row_len + j0;
#pragma omp simd
        for (int j = 0; j < n; ++j)
          gr[j] = g_l1 * sf_ssim::l1_sign(xr[j], yr[j]) +
                  g_ssim * (b[j] + T(2) * xr[j] * b[kChunk + j] + yr[j] * b[2 * kChunk + j]);
      }
    }
  }
}

template void l1_ssim<float>(const float*, const float*, int, int, int, float*, double*, double, int);
template void l1_ssim<double>(const double*, const double*, int, int, int, double*, double*, double, int);

}  // namespace sf_cpu
