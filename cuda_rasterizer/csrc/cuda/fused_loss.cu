// Fused L1 + D-SSIM loss on the GPU (float32): separable 11-tap blurs, one thread per element of the interleaved
// (H, W*C) image, the gradient computed in the same call. Math shared with the CPU backend: ../ssim_math.h.
#include <cuda_runtime.h>

#include "../ssim_math.h"
#include "api.h"

namespace sf_cuda {
namespace {

using sf_ssim::kRadius;
using sf_ssim::kTaps;

struct Window {
  float w[kTaps];
};

Window make_window() {
  double wd[kTaps];
  sf_ssim::window(wd);
  Window win;
  for (int t = 0; t < kTaps; ++t) win.w[t] = float(wd[t]);
  return win;
}

// Horizontal pass of the five statistics (x, y, xx, yy, xy) into five planes.
__global__ void horizontal_stats_kernel(const float* x, const float* y, int height, int width, int channels,
                                        Window win, float* out) {
  const int row_len = width * channels;
  const long long plane = (long long)height * row_len;
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= plane) return;
  const int j = int(idx % row_len), col = j / channels;
  const long long row_start = idx - j;
  float sx = 0.f, sy = 0.f, sxx = 0.f, syy = 0.f, sxy = 0.f;
  for (int t = 0; t < kTaps; ++t) {
    const int c = col + t - kRadius;
    if (c < 0 || c >= width) continue;
    const long long at = row_start + j + (t - kRadius) * channels;
    const float a = x[at], b = y[at], w = win.w[t];
    sx += w * a; sy += w * b; sxx += w * a * a; syy += w * b * b; sxy += w * a * b;
  }
  out[idx] = sx; out[plane + idx] = sy; out[2 * plane + idx] = sxx; out[3 * plane + idx] = syy; out[4 * plane + idx] = sxy;
}

// Horizontal pass of `maps` planes.
__global__ void horizontal_maps_kernel(const float* in, int maps, int height, int width, int channels, Window win,
                                       float* out) {
  const int row_len = width * channels;
  const long long plane = (long long)height * row_len;
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= plane * maps) return;
  const long long in_plane = idx % plane;
  const int j = int(in_plane % row_len), col = j / channels;
  float s = 0.f;
  for (int t = 0; t < kTaps; ++t) {
    const int c = col + t - kRadius;
    if (c >= 0 && c < width) s += win.w[t] * in[idx + (t - kRadius) * channels];
  }
  out[idx] = s;
}

// Vertical pass + SSIM: partial derivatives per element and per-block sums of SSIM and |x - y|.
__global__ void vertical_ssim_kernel(const float* x, const float* y, const float* h, int height, int width,
                                     int channels, Window win, float* partials, double* block_sums) {
  const int row_len = width * channels;
  const long long plane = (long long)height * row_len;
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  float s = 0.f, l1 = 0.f, sq = 0.f;
  if (idx < plane) {
    const int r = int(idx / row_len);
    float m[5] = {0.f, 0.f, 0.f, 0.f, 0.f};
    for (int t = 0; t < kTaps; ++t) {
      const int rr = r + t - kRadius;
      if (rr < 0 || rr >= height) continue;
      const long long at = idx + (long long)(t - kRadius) * row_len;
      for (int k = 0; k < 5; ++k) m[k] += win.w[t] * h[k * plane + at];
    }
    float dm, dxx, dxy;
    s = sf_ssim::pixel(m[0], m[1], m[2], m[3], m[4], &dm, &dxx, &dxy);
    if (partials != nullptr) { partials[idx] = dm; partials[plane + idx] = dxx; partials[2 * plane + idx] = dxy; }
    l1 = fabsf(x[idx] - y[idx]);
    const float shown = fminf(fmaxf(x[idx], 0.f), 1.f) - y[idx];  // PSNR's error: the image as displayed
    sq = shown * shown;
  }
  // Block reduction in double (fixed order inside a block); blocks are summed on the host side of the launch.
  __shared__ double ss[256], sl[256], sq2[256];
  ss[threadIdx.x] = s; sl[threadIdx.x] = l1; sq2[threadIdx.x] = sq;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) {
      ss[threadIdx.x] += ss[threadIdx.x + stride];
      sl[threadIdx.x] += sl[threadIdx.x + stride];
      sq2[threadIdx.x] += sq2[threadIdx.x + stride];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    block_sums[3 * blockIdx.x] = ss[0]; block_sums[3 * blockIdx.x + 1] = sl[0]; block_sums[3 * blockIdx.x + 2] = sq2[0];
  }
}

// Sum the per-block sums in a fixed order (one thread: a few thousand values) and write the means.
__global__ void finish_sums_kernel(const double* block_sums, int blocks, double count, double* stats) {
  double s = 0.0, l1 = 0.0, sq = 0.0;
  for (int b = 0; b < blocks; ++b) { s += block_sums[3 * b]; l1 += block_sums[3 * b + 1]; sq += block_sums[3 * b + 2]; }
  stats[0] = l1 / count;
  stats[1] = s / count;
  stats[2] = sq / count;
}

// Vertical pass of the blurred partials and the final gradient.
__global__ void vertical_grad_kernel(const float* x, const float* y, const float* hp, int height, int width,
                                     int channels, Window win, float g_l1, float g_ssim, float* grad) {
  const int row_len = width * channels;
  const long long plane = (long long)height * row_len;
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= plane) return;
  const int r = int(idx / row_len);
  float b0 = 0.f, b1 = 0.f, b2 = 0.f;
  for (int t = 0; t < kTaps; ++t) {
    const int rr = r + t - kRadius;
    if (rr < 0 || rr >= height) continue;
    const long long at = idx + (long long)(t - kRadius) * row_len;
    b0 += win.w[t] * hp[at]; b1 += win.w[t] * hp[plane + at]; b2 += win.w[t] * hp[2 * plane + at];
  }
  grad[idx] = g_l1 * sf_ssim::l1_sign(x[idx], y[idx]) + g_ssim * (b0 + 2.f * x[idx] * b1 + y[idx] * b2);
}

}  // namespace

int64_t l1_ssim_scratch_floats(int height, int width, int channels) {
  return 8 * int64_t(height) * width * channels;
}

int64_t l1_ssim_block_count(int height, int width, int channels) {
  return (int64_t(height) * width * channels + 255) / 256;
}

void l1_ssim(const float* x, const float* y, int height, int width, int channels, float* grad, double* stats,
             double ssim_weight, float* scratch, double* block_sums, cudaStream_t s) {
  const Window win = make_window();
  const long long plane = (long long)height * width * channels;
  const int threads = 256;
  const int blocks = int((plane + threads - 1) / threads);
  float* h = scratch;               // 5 planes: horizontal statistics, later the blurred partials
  float* partials = scratch + 5 * plane;  // 3 planes
  horizontal_stats_kernel<<<blocks, threads, 0, s>>>(x, y, height, width, channels, win, h);
  vertical_ssim_kernel<<<blocks, threads, 0, s>>>(x, y, h, height, width, channels, win,
                                                  grad != nullptr ? partials : nullptr, block_sums);
  finish_sums_kernel<<<1, 1, 0, s>>>(block_sums, blocks, double(plane), stats);
  if (grad == nullptr) return;
  horizontal_maps_kernel<<<int((3 * plane + threads - 1) / threads), threads, 0, s>>>(partials, 3, height, width,
                                                                                     channels, win, h);
  const float g_ssim = float(-ssim_weight / double(plane)), g_l1 = float((1.0 - ssim_weight) / double(plane));
  vertical_grad_kernel<<<blocks, threads, 0, s>>>(x, y, h, height, width, channels, win, g_l1, g_ssim, grad);
}

}  // namespace sf_cuda
