// Torch bindings of the CPU backend: tensor checks, allocation, dtype dispatch (float32 / float64).
#include <torch/extension.h>

#include <array>
#include <memory>

#include "api.h"
#include "buffer_pool.h"

namespace {

using torch::Tensor;

struct Bins {
  sf_cpu::BinsHandle* h = nullptr;
  ~Bins() { sf_cpu::free_bins(h); }
  int64_t intersections() const { return h ? sf_cpu::bins_intersections(h) : 0; }
};

Tensor c(const Tensor& t) { return t.contiguous(); }

// A new tensor for a large per-call output (1 MiB and up) in recycled storage. torch's own allocation of such a block
// comes from malloc, which returns it to the OS when freed (mmap threshold or heap trim), so the next call of the same
// size page-faults every 4 KiB page again, serially on the kernel's side: for SH gradients of 10k primitives that is
// ~0.4 ms a call at any thread count. The storage goes back to the pool when the last tensor viewing it dies.
Tensor pooled_empty(at::IntArrayRef sizes, const torch::TensorOptions& options) {
  int64_t numel = 1;
  for (const int64_t s : sizes) numel *= s;
  const size_t bytes = size_t(numel) * options.dtype().itemsize();
  if (bytes < sf_cpu::BufferPool::kMinPooledBytes) return torch::empty(sizes, options);
  void* ptr = sf_cpu::BufferPool::instance().acquire(bytes);
  return torch::from_blob(ptr, sizes, [bytes](void* p) { sf_cpu::BufferPool::instance().release(p, bytes); }, options);
}
Tensor pooled_empty_like(const Tensor& t) { return pooled_empty(t.sizes(), t.options()); }

// pooled_empty for Python callers (cuda_rasterizer.recycled): per-step tensors of a size that recurs.
Tensor recycled_empty(std::vector<int64_t> sizes, at::ScalarType dtype) {
  return pooled_empty(sizes, torch::TensorOptions().dtype(dtype));
}

sf::Camera make_camera(const Tensor& viewmat, const Tensor& K, int64_t width, int64_t height) {
  auto v = viewmat.to(torch::kCPU, torch::kFloat64).contiguous();
  auto k = K.to(torch::kCPU, torch::kFloat64).contiguous();
  const double* vp = v.data_ptr<double>();
  const double* kp = k.data_ptr<double>();
  sf::Camera cam;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) cam.R[i * 3 + j] = vp[i * 4 + j];
    cam.t[i] = vp[i * 4 + 3];
  }
  cam.fx = kp[0]; cam.fy = kp[4]; cam.cx = kp[2]; cam.cy = kp[5];
  cam.width = int(width); cam.height = int(height);
  return cam;
}

Tensor covar_fwd(Tensor quats, Tensor scales, int64_t nthreads) {
  quats = c(quats); scales = c(scales);
  auto out = pooled_empty({quats.size(0), 3, 3}, quats.options());
  AT_DISPATCH_FLOATING_TYPES(quats.scalar_type(), "covar_fwd", [&] {
    sf_cpu::covar_fwd<scalar_t>(quats.data_ptr<scalar_t>(), scales.data_ptr<scalar_t>(), quats.size(0),
                                out.data_ptr<scalar_t>(), int(nthreads));
  });
  return out;
}

std::vector<Tensor> slice4_fwd(Tensor means, Tensor times, Tensor ql, Tensor qr, Tensor scales, double filter_var,
                               Tensor opac, double t, int64_t nthreads) {
  means = c(means); times = c(times); ql = c(ql); qr = c(qr); scales = c(scales); opac = c(opac);
  const int64_t n = means.size(0);
  TORCH_CHECK(times.numel() == n && ql.numel() == 4 * n && qr.numel() == 4 * n && scales.numel() == 4 * n &&
                  opac.numel() == n, "slice4_fwd: inconsistent primitive counts");
  auto mean3 = pooled_empty({n, 3}, means.options()), cov3 = pooled_empty({n, 3, 3}, means.options());
  auto opac_t = pooled_empty({n}, means.options()), expo = pooled_empty({n}, means.options());
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "slice4_fwd", [&] {
    sf_cpu::slice4_fwd<scalar_t>(means.data_ptr<scalar_t>(), times.data_ptr<scalar_t>(), ql.data_ptr<scalar_t>(),
                                 qr.data_ptr<scalar_t>(), scales.data_ptr<scalar_t>(), scalar_t(filter_var),
                                 opac.data_ptr<scalar_t>(), n, scalar_t(t), mean3.data_ptr<scalar_t>(), cov3.data_ptr<scalar_t>(),
                                 opac_t.data_ptr<scalar_t>(), expo.data_ptr<scalar_t>(), int(nthreads));
  });
  return {mean3, cov3, opac_t, expo};
}

std::vector<Tensor> slice4_bwd(Tensor times, Tensor ql, Tensor qr, Tensor scales, double filter_var, Tensor opac,
                               double t, Tensor v_mean3, Tensor v_cov3, Tensor v_opac_t, int64_t nthreads) {
  times = c(times); ql = c(ql); qr = c(qr); scales = c(scales); opac = c(opac);
  v_mean3 = c(v_mean3); v_cov3 = c(v_cov3); v_opac_t = c(v_opac_t);
  const int64_t n = times.numel();
  auto vm = pooled_empty({n, 3}, times.options()), vt = pooled_empty({n}, times.options());
  auto vql = pooled_empty_like(ql), vqr = pooled_empty_like(qr), vs = pooled_empty_like(scales);
  auto vo = pooled_empty_like(opac);
  AT_DISPATCH_FLOATING_TYPES(times.scalar_type(), "slice4_bwd", [&] {
    sf_cpu::slice4_bwd<scalar_t>(times.data_ptr<scalar_t>(), ql.data_ptr<scalar_t>(), qr.data_ptr<scalar_t>(),
                                 scales.data_ptr<scalar_t>(), scalar_t(filter_var), opac.data_ptr<scalar_t>(), n,
                                 scalar_t(t), v_mean3.data_ptr<scalar_t>(), v_cov3.data_ptr<scalar_t>(),
                                 v_opac_t.data_ptr<scalar_t>(), vm.data_ptr<scalar_t>(), vt.data_ptr<scalar_t>(),
                                 vql.data_ptr<scalar_t>(), vqr.data_ptr<scalar_t>(), vs.data_ptr<scalar_t>(),
                                 vo.data_ptr<scalar_t>(), int(nthreads));
  });
  return {vm, vt, vql, vqr, vs, vo};
}

std::vector<Tensor> covar_bwd(Tensor quats, Tensor scales, Tensor v_covars, int64_t nthreads) {
  quats = c(quats); scales = c(scales); v_covars = c(v_covars);
  auto vq = pooled_empty_like(quats), vs = pooled_empty_like(scales);
  AT_DISPATCH_FLOATING_TYPES(quats.scalar_type(), "covar_bwd", [&] {
    sf_cpu::covar_bwd<scalar_t>(quats.data_ptr<scalar_t>(), scales.data_ptr<scalar_t>(), v_covars.data_ptr<scalar_t>(),
                                quats.size(0), vq.data_ptr<scalar_t>(), vs.data_ptr<scalar_t>(), int(nthreads));
  });
  return {vq, vs};
}

std::vector<Tensor> project_fwd(Tensor means, Tensor covars, Tensor opacities, Tensor viewmat, Tensor K, int64_t width,
                                int64_t height, double near, double far, double eps2d, bool antialiased,
                                int64_t nthreads) {
  means = c(means); covars = c(covars); opacities = c(opacities);
  const int64_t n = means.size(0);
  auto cam = make_camera(viewmat, K, width, height);
  auto means2d = pooled_empty({n, 2}, means.options());
  auto conics = pooled_empty({n, 3}, means.options());
  auto depths = pooled_empty({n}, means.options());
  auto radii = pooled_empty({n, 2}, means.options().dtype(torch::kInt32));
  auto opac = pooled_empty({n}, means.options());
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_fwd", [&] {
    sf_cpu::project_fwd<scalar_t>(cam, means.data_ptr<scalar_t>(), covars.data_ptr<scalar_t>(),
                                  opacities.data_ptr<scalar_t>(), n, scalar_t(near), scalar_t(far), scalar_t(eps2d),
                                  antialiased, means2d.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(),
                                  depths.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(), opac.data_ptr<scalar_t>(),
                                  int(nthreads));
  });
  return {means2d, conics, depths, radii, opac};
}

std::vector<Tensor> project_bwd(Tensor means, Tensor covars, Tensor opacities, Tensor viewmat, Tensor K,
                                int64_t width, int64_t height, Tensor radii, double eps2d, bool antialiased,
                                Tensor v_means2d, Tensor v_conics, Tensor v_depths, Tensor v_opac, int64_t nthreads) {
  means = c(means); covars = c(covars); opacities = c(opacities); radii = c(radii);
  v_means2d = c(v_means2d); v_conics = c(v_conics); v_depths = c(v_depths); v_opac = c(v_opac);
  const int64_t n = means.size(0);
  auto cam = make_camera(viewmat, K, width, height);
  auto vm = pooled_empty_like(means), vc = pooled_empty_like(covars), vo = pooled_empty_like(opacities);
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_bwd", [&] {
    sf_cpu::project_bwd<scalar_t>(cam, means.data_ptr<scalar_t>(), covars.data_ptr<scalar_t>(),
                                  opacities.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(), n, scalar_t(eps2d),
                                  antialiased, v_means2d.data_ptr<scalar_t>(), v_conics.data_ptr<scalar_t>(),
                                  v_depths.data_ptr<scalar_t>(), v_opac.data_ptr<scalar_t>(), vm.data_ptr<scalar_t>(),
                                  vc.data_ptr<scalar_t>(), vo.data_ptr<scalar_t>(), int(nthreads));
  });
  return {vm, vc, vo};
}

Tensor sh_fwd(int64_t degree, Tensor coeffs, Tensor dirs, int64_t nthreads) {
  coeffs = c(coeffs); dirs = c(dirs);
  const int64_t n = coeffs.size(0), k = coeffs.size(1), ch = coeffs.size(2);
  auto out = pooled_empty({n, ch}, coeffs.options());
  AT_DISPATCH_FLOATING_TYPES(coeffs.scalar_type(), "sh_fwd", [&] {
    sf_cpu::sh_fwd<scalar_t>(int(degree), coeffs.data_ptr<scalar_t>(), n, int(k), int(ch), dirs.data_ptr<scalar_t>(),
                             out.data_ptr<scalar_t>(), int(nthreads));
  });
  return out;
}

Tensor sh_bwd(int64_t degree, Tensor v_out, int64_t k, Tensor dirs, int64_t nthreads) {
  v_out = c(v_out); dirs = c(dirs);
  const int64_t n = v_out.size(0), ch = v_out.size(1);
  auto vc = pooled_empty({n, k, ch}, v_out.options());  // sh_bwd writes every entry (zeros above the degree)
  AT_DISPATCH_FLOATING_TYPES(v_out.scalar_type(), "sh_bwd", [&] {
    sf_cpu::sh_bwd<scalar_t>(int(degree), v_out.data_ptr<scalar_t>(), n, int(k), int(ch), dirs.data_ptr<scalar_t>(),
                             vc.data_ptr<scalar_t>(), int(nthreads));
  });
  return vc;
}

// The camera centre -R^T t of an OpenCV world-to-camera viewmat (4, 4), in the compute type.
template <typename T> std::array<T, 3> camera_centre(const Tensor& viewmat) {
  auto v = viewmat.to(torch::kCPU, torch::kFloat64).contiguous();
  const double* vp = v.data_ptr<double>();
  std::array<T, 3> centre;
  for (int j = 0; j < 3; ++j)
    centre[j] = T(-(vp[0 * 4 + j] * vp[3] + vp[1 * 4 + j] * vp[7] + vp[2 * 4 + j] * vp[11]));
  return centre;
}

void check_sh_colors(const Tensor& coeffs, const Tensor& means, const Tensor& viewmat) {
  TORCH_CHECK(coeffs.dim() == 3 && means.dim() == 2 && means.size(1) == 3 && means.size(0) == coeffs.size(0),
              "sh_colors: coeffs (N, K, C) and means (N, 3) expected, got ", coeffs.sizes(), " and ", means.sizes());
  TORCH_CHECK(coeffs.size(2) <= 64, "sh_colors: at most 64 channels, got ", coeffs.size(2));
  TORCH_CHECK(viewmat.numel() == 16, "sh_colors: viewmat must be (4, 4), got ", viewmat.sizes());
}

Tensor sh_colors_fwd(int64_t degree, Tensor coeffs, Tensor means, Tensor viewmat, int64_t nthreads) {
  coeffs = c(coeffs); means = c(means);
  check_sh_colors(coeffs, means, viewmat);
  const int64_t n = coeffs.size(0), k = coeffs.size(1), ch = coeffs.size(2);
  auto out = pooled_empty({n, ch}, coeffs.options());
  AT_DISPATCH_FLOATING_TYPES(coeffs.scalar_type(), "sh_colors_fwd", [&] {
    const auto centre = camera_centre<scalar_t>(viewmat);
    sf_cpu::sh_colors_fwd<scalar_t>(int(degree), coeffs.data_ptr<scalar_t>(), n, int(k), int(ch),
                                    means.data_ptr<scalar_t>(), centre.data(), out.data_ptr<scalar_t>(), int(nthreads));
  });
  return out;
}

Tensor sh_colors_bwd(int64_t degree, Tensor v_colors, Tensor colors, int64_t k, Tensor means, Tensor viewmat,
                     int64_t nthreads) {
  v_colors = c(v_colors); colors = c(colors); means = c(means);
  const int64_t n = v_colors.size(0), ch = v_colors.size(1);
  auto vc = pooled_empty({n, k, ch}, v_colors.options());  // every entry written (zeros above the degree)
  AT_DISPATCH_FLOATING_TYPES(v_colors.scalar_type(), "sh_colors_bwd", [&] {
    const auto centre = camera_centre<scalar_t>(viewmat);
    sf_cpu::sh_colors_bwd<scalar_t>(int(degree), v_colors.data_ptr<scalar_t>(), colors.data_ptr<scalar_t>(), n,
                                    int(k), int(ch), means.data_ptr<scalar_t>(), centre.data(),
                                    vc.data_ptr<scalar_t>(), int(nthreads));
  });
  return vc;
}

// Footprint parameters (N, 3 + 4 K): the conic, then K Gabor terms (hx, hy, amplitude, phase); K = 0: Gaussians.
int footprint_terms(const Tensor& params) {
  TORCH_CHECK(params.dim() == 2 && params.size(1) >= 3 && (params.size(1) - 3) % 4 == 0,
              "footprint parameters must be (N, 3 + 4 K), got ", params.sizes());
  return int((params.size(1) - 3) / 4);
}

py::tuple raster_fwd(Tensor means2d, Tensor conics, Tensor colors, Tensor opacities, Tensor depths, Tensor radii,
                     c10::optional<Tensor> background, int64_t width, int64_t height, int64_t tile,
                     int64_t nthreads) {
  TORCH_CHECK(tile >= 1 && tile <= 64, "tile size must be in 1..64");
  const int terms = footprint_terms(conics);
  means2d = c(means2d); conics = c(conics); colors = c(colors); opacities = c(opacities); depths = c(depths);
  radii = c(radii.to(torch::kInt32));
  Tensor bg;
  if (background.has_value()) bg = c(background.value());
  const int64_t n = means2d.size(0), ch = colors.size(1);
  auto opt = means2d.options();
  auto out_c = pooled_empty({height, width, ch}, opt);
  auto out_a = pooled_empty({height, width, 1}, opt);
  auto out_d = pooled_empty({height, width, 1}, opt);
  auto out_t = pooled_empty({height, width, 1}, opt);
  auto last_id = pooled_empty({height, width}, opt.dtype(torch::kInt32));
  auto last_pos = pooled_empty({height, width}, opt.dtype(torch::kInt32));
  int64_t evals = 0;
  auto bins = std::make_shared<Bins>();
  AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "raster_fwd", [&] {
    bins->h = sf_cpu::raster_fwd<scalar_t>(
        means2d.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(), terms, colors.data_ptr<scalar_t>(),
        opacities.data_ptr<scalar_t>(), depths.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(),
        bg.defined() ? bg.data_ptr<scalar_t>() : nullptr, n, int(ch), int(width), int(height), int(tile),
        int(nthreads), out_c.data_ptr<scalar_t>(), out_a.data_ptr<scalar_t>(), out_d.data_ptr<scalar_t>(),
        out_t.data_ptr<scalar_t>(), last_id.data_ptr<int32_t>(), last_pos.data_ptr<int32_t>(), &evals);
  });
  return py::make_tuple(out_c, out_a, out_d, out_t, last_id, last_pos, bins, evals);
}

std::vector<Tensor> raster_bwd(std::shared_ptr<Bins> bins, Tensor means2d, Tensor conics, Tensor colors,
                               Tensor opacities, Tensor depths, Tensor radii, c10::optional<Tensor> background,
                               int64_t width, int64_t height, int64_t tile, int64_t nthreads, Tensor trans,
                               Tensor last_pos, Tensor v_colors, Tensor v_alphas, Tensor v_depths, bool want_absgrad) {
  const int terms = footprint_terms(conics);
  means2d = c(means2d); conics = c(conics); colors = c(colors); opacities = c(opacities); depths = c(depths);
  radii = c(radii.to(torch::kInt32)); trans = c(trans); last_pos = c(last_pos);
  // an empty v_depths: the depth output has no upstream gradient, and no kernel reads one (depth_grad false)
  const bool depth_grad = v_depths.numel() > 0;
  v_colors = c(v_colors); v_alphas = c(v_alphas);
  if (depth_grad) v_depths = c(v_depths);
  Tensor bg;
  if (background.has_value()) bg = c(background.value());
  const int64_t n = means2d.size(0), ch = colors.size(1);
  auto vm = pooled_empty_like(means2d), vcon = pooled_empty_like(conics), vcol = pooled_empty_like(colors);
  auto vo = pooled_empty_like(opacities), vd = pooled_empty_like(depths), ag = pooled_empty_like(means2d);
  AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "raster_bwd", [&] {
    sf_cpu::raster_bwd<scalar_t>(
        bins->h, means2d.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(), terms, colors.data_ptr<scalar_t>(),
        opacities.data_ptr<scalar_t>(), depths.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(),
        bg.defined() ? bg.data_ptr<scalar_t>() : nullptr, n, int(ch), int(width), int(height), int(tile),
        int(nthreads), trans.data_ptr<scalar_t>(), last_pos.data_ptr<int32_t>(), v_colors.data_ptr<scalar_t>(),
        v_alphas.data_ptr<scalar_t>(), depth_grad ? v_depths.data_ptr<scalar_t>() : nullptr, vm.data_ptr<scalar_t>(),
        vcon.data_ptr<scalar_t>(), vcol.data_ptr<scalar_t>(), vo.data_ptr<scalar_t>(), vd.data_ptr<scalar_t>(),
        ag.data_ptr<scalar_t>(), depth_grad, want_absgrad);
  });
  return {vm, vcon, vcol, vo, vd, ag};
}

}  // namespace

// Gabor wave terms seen from a camera: freqs (N, K, 3) world radians per unit, weights and phases (N, K) ->
// (N, K, 4) = (hx, hy, amplitude, phase) for the footprint; zeros for culled primitives (radii == 0).
Tensor gabor_project_fwd(Tensor means, Tensor covars, Tensor freqs, Tensor weights, Tensor phases, Tensor viewmat,
                         Tensor K, int64_t width, int64_t height, Tensor radii, double eps2d, int64_t nthreads) {
  means = c(means); covars = c(covars); freqs = c(freqs); weights = c(weights); phases = c(phases);
  radii = c(radii.to(torch::kInt32));
  auto cam = make_camera(viewmat, K, width, height);
  const int64_t n = means.size(0), k = weights.size(1);
  auto terms = pooled_empty({n, k, 4}, means.options());
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "gabor_project_fwd", [&] {
    sf_cpu::gabor_project_fwd<scalar_t>(cam, means.data_ptr<scalar_t>(), covars.data_ptr<scalar_t>(),
                                        freqs.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(),
                                        phases.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(), n, int(k),
                                        scalar_t(eps2d), terms.data_ptr<scalar_t>(), int(nthreads));
  });
  return terms;
}

std::vector<Tensor> gabor_project_bwd(Tensor means, Tensor covars, Tensor freqs, Tensor weights, Tensor viewmat,
                                      Tensor K, int64_t width, int64_t height, Tensor radii, double eps2d,
                                      Tensor v_terms, int64_t nthreads) {
  means = c(means); covars = c(covars); freqs = c(freqs); weights = c(weights); v_terms = c(v_terms);
  radii = c(radii.to(torch::kInt32));
  auto cam = make_camera(viewmat, K, width, height);
  const int64_t n = means.size(0), k = weights.size(1);
  auto vm = pooled_empty_like(means), vc = pooled_empty_like(covars), vf = pooled_empty_like(freqs);
  auto vw = pooled_empty_like(weights), vp = pooled_empty_like(weights);
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "gabor_project_bwd", [&] {
    sf_cpu::gabor_project_bwd<scalar_t>(cam, means.data_ptr<scalar_t>(), covars.data_ptr<scalar_t>(),
                                        freqs.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(),
                                        radii.data_ptr<int32_t>(), n, int(k), scalar_t(eps2d),
                                        v_terms.data_ptr<scalar_t>(), vm.data_ptr<scalar_t>(), vc.data_ptr<scalar_t>(),
                                        vf.data_ptr<scalar_t>(), vw.data_ptr<scalar_t>(), vp.data_ptr<scalar_t>(),
                                        int(nthreads));
  });
  return {vm, vc, vf, vw, vp};
}

// World frequencies of Gabor terms: (N, 4) quats, (N, 3) scales, (N, K, 3) nu (cycles per sigma, primitive axes) ->
// (N, K, 3) radians per world unit; and the VJP -> {v_quats, v_scales, v_nu}.
Tensor gabor_freqs_fwd(Tensor quats, Tensor scales, Tensor nu, int64_t nthreads) {
  quats = c(quats); scales = c(scales); nu = c(nu);
  const int64_t n = nu.size(0), k = nu.size(1);
  auto freqs = pooled_empty_like(nu);
  AT_DISPATCH_FLOATING_TYPES(nu.scalar_type(), "gabor_freqs_fwd", [&] {
    sf_cpu::gabor_freqs_fwd<scalar_t>(quats.data_ptr<scalar_t>(), scales.data_ptr<scalar_t>(), nu.data_ptr<scalar_t>(),
                                      n, int(k), freqs.data_ptr<scalar_t>(), int(nthreads));
  });
  return freqs;
}

std::vector<Tensor> gabor_freqs_bwd(Tensor quats, Tensor scales, Tensor nu, Tensor v_freqs, int64_t nthreads) {
  quats = c(quats); scales = c(scales); nu = c(nu); v_freqs = c(v_freqs);
  const int64_t n = nu.size(0), k = nu.size(1);
  auto vq = pooled_empty_like(quats), vs = pooled_empty_like(scales), vn = pooled_empty_like(nu);
  AT_DISPATCH_FLOATING_TYPES(nu.scalar_type(), "gabor_freqs_bwd", [&] {
    sf_cpu::gabor_freqs_bwd<scalar_t>(quats.data_ptr<scalar_t>(), scales.data_ptr<scalar_t>(), nu.data_ptr<scalar_t>(),
                                      v_freqs.data_ptr<scalar_t>(), n, int(k), vq.data_ptr<scalar_t>(),
                                      vs.data_ptr<scalar_t>(), vn.data_ptr<scalar_t>(), int(nthreads));
  });
  return {vq, vs, vn};
}

// Fused L1 + D-SSIM: returns {float64 [mean |x - y|, mean SSIM, mean (clamp(x, 0, 1) - y)^2], gradient of the loss
// w.r.t. img (empty when want_grad is false)}.
std::vector<Tensor> l1_ssim(Tensor img, Tensor ref, double ssim_weight, bool want_grad, int64_t nthreads,
                            c10::optional<Tensor> mask) {
  TORCH_CHECK(img.dim() == 3 && img.sizes() == ref.sizes(), "l1_ssim: img and ref must be (H, W, C) of one shape, got ",
              img.sizes(), " and ", ref.sizes());
  TORCH_CHECK(img.scalar_type() == ref.scalar_type(), "l1_ssim: img and ref dtypes differ");
  img = c(img); ref = c(ref);
  Tensor m;
  if (mask.has_value()) {
    TORCH_CHECK(mask->scalar_type() == torch::kBool && mask->sizes() == img.sizes(),
                "l1_ssim: mask must be a bool tensor of the image's shape ", img.sizes(), ", got ", mask->scalar_type(),
                " ", mask->sizes());
    m = c(mask.value());
  }
  auto stats = pooled_empty({3}, img.options().dtype(torch::kFloat64));
  auto grad = want_grad ? pooled_empty_like(img) : pooled_empty({0}, img.options());
  AT_DISPATCH_FLOATING_TYPES(img.scalar_type(), "l1_ssim", [&] {
    sf_cpu::l1_ssim<scalar_t>(img.data_ptr<scalar_t>(), ref.data_ptr<scalar_t>(),
                              m.defined() ? reinterpret_cast<const uint8_t*>(m.data_ptr<bool>()) : nullptr,
                              int(img.size(0)), int(img.size(1)),
                              int(img.size(2)), want_grad ? grad.data_ptr<scalar_t>() : nullptr,
                              stats.data_ptr<double>(), ssim_weight, int(nthreads));
  });
  return {stats, grad};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  py::class_<Bins, std::shared_ptr<Bins>>(m, "TileBins").def_property_readonly("intersections", &Bins::intersections);
  m.def("covar_fwd", &covar_fwd);
  m.def("covar_bwd", &covar_bwd);
  m.def("project_fwd", &project_fwd);
  m.def("project_bwd", &project_bwd);
  m.def("sh_fwd", &sh_fwd);
  m.def("slice4_fwd", &slice4_fwd);
  m.def("slice4_bwd", &slice4_bwd);
  m.def("sh_bwd", &sh_bwd);
  m.def("recycled_empty", &recycled_empty);
  m.def("sh_colors_fwd", &sh_colors_fwd);
  m.def("sh_colors_bwd", &sh_colors_bwd);
  m.def("raster_fwd", &raster_fwd);
  m.def("raster_bwd", &raster_bwd);
  m.def("l1_ssim", &l1_ssim);
  m.def("gabor_project_fwd", &gabor_project_fwd);
  m.def("gabor_project_bwd", &gabor_project_bwd);
  m.def("gabor_freqs_fwd", &gabor_freqs_fwd);
  m.def("gabor_freqs_bwd", &gabor_freqs_bwd);
}
