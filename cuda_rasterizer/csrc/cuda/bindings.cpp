// Torch bindings of the CUDA backend (float32 only): allocation, checks, stream; kernels live in the .cu files.
// Every launch is followed by C10_CUDA_KERNEL_LAUNCH_CHECK so that a launch error (e.g. "no kernel image is
// available" for a GPU the build did not target) fails at its call, not as garbage sizes later.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include <memory>

#include "api.h"

namespace {

using torch::Tensor;

struct Bins {
  Tensor ranges, ids;
  int64_t intersections() const { return ids.numel(); }
};

Tensor c(const Tensor& t) {
  TORCH_CHECK(t.is_cuda(), "splatforge cuda backend: expected a CUDA tensor");
  TORCH_CHECK(t.scalar_type() == torch::kFloat32 || t.scalar_type() == torch::kInt32,
              "splatforge cuda backend: float32 only");
  return t.contiguous();
}
template <typename T> T* p(const Tensor& t) { return t.data_ptr<T>(); }
// The GPU holding `t`: kernels launch and the stream is taken there, not on the current device (several GPUs).
// A CPU tensor gives no device, so the check in c() reports it.
c10::optional<c10::Device> gpu_of(const Tensor& t) {
  return t.is_cuda() ? c10::optional<c10::Device>(t.device()) : c10::nullopt;
}
cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

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

Tensor covar_fwd(Tensor q, Tensor s, int64_t) {
  const c10::cuda::OptionalCUDAGuard device_guard(gpu_of(q));
  q = c(q); s = c(s);
  auto out = torch::empty({q.size(0), 3, 3}, q.options());
  sf_cuda::covar_fwd(p<float>(q), p<float>(s), q.size(0), p<float>(out), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::vector<Tensor> covar_bwd(Tensor q, Tensor s, Tensor vc, int64_t) {
  const c10::cuda::OptionalCUDAGuard device_guard(gpu_of(q));
  q = c(q); s = c(s); vc = c(vc);
  auto vq = torch::empty_like(q), vs = torch::empty_like(s);
  sf_cuda::covar_bwd(p<float>(q), p<float>(s), p<float>(vc), q.size(0), p<float>(vq), p<float>(vs), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {vq, vs};
}

std::vector<Tensor> project_fwd(Tensor means, Tensor covars, Tensor opac, Tensor viewmat, Tensor K, int64_t width,
                                int64_t height, double near, double far, double eps2d, bool aa, int64_t) {
  const c10::cuda::OptionalCUDAGuard device_guard(gpu_of(means));
  means = c(means); covars = c(covars); opac = c(opac);
  const int64_t n = means.size(0);
  auto cam = make_camera(viewmat, K, width, height);
  auto o = means.options();
  auto m2d = torch::empty({n, 2}, o), conics = torch::empty({n, 3}, o), depths = torch::empty({n}, o);
  auto radii = torch::empty({n, 2}, o.dtype(torch::kInt32)), op = torch::empty({n}, o);
  sf_cuda::project_fwd(cam, p<float>(means), p<float>(covars), p<float>(opac), n, float(near), float(far),
                       float(eps2d), aa, p<float>(m2d), p<float>(conics), p<float>(depths), p<int32_t>(radii),
                       p<float>(op), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {m2d, conics, depths, radii, op};
}

std::vector<Tensor> project_bwd(Tensor means, Tensor covars, Tensor opac, Tensor viewmat, Tensor K, int64_t width,
                                int64_t height, Tensor radii, double eps2d, bool aa, Tensor v_m2d, Tensor v_conics,
                                Tensor v_depths, Tensor v_opac, int64_t) {
  const c10::cuda::OptionalCUDAGuard device_guard(gpu_of(means));
  means = c(means); covars = c(covars); opac = c(opac); radii = c(radii);
  v_m2d = c(v_m2d); v_conics = c(v_conics); v_depths = c(v_depths); v_opac = c(v_opac);
  auto cam = make_camera(viewmat, K, width, height);
  auto vm = torch::empty_like(means), vc = torch::empty_like(covars), vo = torch::empty_like(opac);
  sf_cuda::project_bwd(cam, p<float>(means), p<float>(covars), p<float>(opac), p<int32_t>(radii), means.size(0),
                       float(eps2d), aa, p<float>(v_m2d), p<float>(v_conics), p<float>(v_depths), p<float>(v_opac),
                       p<float>(vm), p<float>(vc), p<float>(vo), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {vm, vc, vo};
}

Tensor sh_fwd(int64_t degree, Tensor coeffs, Tensor dirs, int64_t) {
  const c10::cuda::OptionalCUDAGuard device_guard(gpu_of(coeffs));
  coeffs = c(coeffs); dirs = c(dirs);
  const int64_t n = coeffs.size(0), k = coeffs.size(1), ch = coeffs.size(2);
  auto out = torch::empty({n, ch}, coeffs.options());
  sf_cuda::sh_fwd(int(degree), p<float>(coeffs), n, int(k), int(ch), p<float>(dirs), p<float>(out), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

Tensor sh_bwd(int64_t degree, Tensor v_out, int64_t k, Tensor dirs, int64_t) {
  const c10::cuda::OptionalCUDAGuard device_guard(gpu_of(v_out));
  v_out = c(v_out); dirs = c(dirs);
  const int64_t n = v_out.size(0), ch = v_out.size(1);
  auto vc = torch::empty({n, k, ch}, v_out.options());  // the kernel writes every coefficient
  sf_cuda::sh_bwd(int(degree), p<float>(v_out), n, int(k), int(ch), p<float>(dirs), p<float>(vc), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return vc;
}

// Footprint parameters (N, 3 + 4 K): the conic, then K Gabor terms (hx, hy, amplitude, phase); K = 0: Gaussians.
int footprint_terms(const Tensor& params) {
  TORCH_CHECK(params.dim() == 2 && params.size(1) >= 3 && (params.size(1) - 3) % 4 == 0,
              "footprint parameters must be (N, 3 + 4 K), got ", params.sizes());
  const int terms = int((params.size(1) - 3) / 4);
  TORCH_CHECK(terms <= 8, "splatforge cuda backend: Gabor primitives support 1..8 terms, got ", terms);
  return terms;
}

py::tuple raster_fwd(Tensor m2d, Tensor conics, Tensor colors, Tensor opac, Tensor depths, Tensor radii,
                     c10::optional<Tensor> background, int64_t width, int64_t height, int64_t tile, int64_t) {
  const c10::cuda::OptionalCUDAGuard device_guard(gpu_of(m2d));
  const int terms = footprint_terms(conics);
  TORCH_CHECK(tile == sf_cuda::kTile, "splatforge cuda backend: tile size is fixed at ", sf_cuda::kTile);
  m2d = c(m2d); conics = c(conics); colors = c(colors); opac = c(opac); depths = c(depths);
  radii = c(radii.to(torch::kInt32));
  const int64_t ch = colors.size(1), n = m2d.size(0);
  TORCH_CHECK(ch <= sf_cuda::kMaxChannels, "splatforge cuda backend: at most ", sf_cuda::kMaxChannels, " channels");
  Tensor bg;
  if (background.has_value()) bg = c(background.value());
  const int64_t tiles = ((width + 15) / 16) * ((height + 15) / 16);
  auto io = m2d.options().dtype(torch::kInt32);
  auto offsets = torch::empty({std::max<int64_t>(n, 1)}, io);
  const int64_t m = sf_cuda::tile_offsets(p<float>(m2d), p<int32_t>(radii), n, int(width), int(height),
                                          p<int32_t>(offsets), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  auto keys = torch::empty({m}, m2d.options().dtype(torch::kInt64)), keys_sorted = torch::empty_like(keys);
  auto ids = torch::empty({m}, io), ids_sorted = torch::empty_like(ids);
  auto ranges = torch::empty({tiles, 2}, io);
  sf_cuda::sort_intersections(p<float>(m2d), p<int32_t>(radii), p<float>(depths), p<int32_t>(offsets), n, m,
                              int(width), int(height), keys.data_ptr<int64_t>(), p<int32_t>(ids),
                              keys_sorted.data_ptr<int64_t>(), p<int32_t>(ids_sorted), p<int32_t>(ranges), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  auto o = m2d.options();
  auto out_c = torch::empty({height, width, ch}, o), out_a = torch::empty({height, width, 1}, o);
  auto out_d = torch::empty({height, width, 1}, o), out_t = torch::empty({height, width, 1}, o);
  auto last_pos = torch::empty({height, width}, io), last_id = torch::empty({height, width}, io);
  sf_cuda::render_fwd(p<int32_t>(ranges), p<int32_t>(ids_sorted), p<float>(m2d), p<float>(conics), terms, p<float>(colors),
                      p<float>(opac), p<float>(depths), p<int32_t>(radii), bg.defined() ? p<float>(bg) : nullptr,
                      int(ch), int(width), int(height), p<float>(out_c), p<float>(out_a), p<float>(out_d),
                      p<float>(out_t), p<int32_t>(last_pos), p<int32_t>(last_id), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  auto bins = std::make_shared<Bins>(Bins{ranges, ids_sorted});
  return py::make_tuple(out_c, out_a, out_d, out_t, last_id, last_pos, bins, int64_t(-1));
}

std::vector<Tensor> raster_bwd(std::shared_ptr<Bins> bins, Tensor m2d, Tensor conics, Tensor colors, Tensor opac,
                               Tensor depths, Tensor radii, c10::optional<Tensor> background, int64_t width,
                               int64_t height, int64_t, int64_t, Tensor trans, Tensor last_pos, Tensor v_colors,
                               Tensor v_alphas, Tensor v_depths, bool want_absgrad) {
  const c10::cuda::OptionalCUDAGuard device_guard(gpu_of(m2d));
  const int terms = footprint_terms(conics);
  m2d = c(m2d); conics = c(conics); colors = c(colors); opac = c(opac); depths = c(depths);
  radii = c(radii.to(torch::kInt32)); trans = c(trans); last_pos = c(last_pos);
  v_colors = c(v_colors); v_alphas = c(v_alphas);
  // empty v_depths: no depth gradient upstream, and the kernel skips the depth terms (their gradient stays zero)
  const bool want_depth = v_depths.numel() > 0;
  if (want_depth) v_depths = c(v_depths);
  Tensor bg;
  if (background.has_value()) bg = c(background.value());
  auto vm = torch::zeros_like(m2d), vcon = torch::zeros_like(conics), vcol = torch::zeros_like(colors);
  auto vo = torch::zeros_like(opac), vd = torch::zeros_like(depths), ag = torch::zeros_like(m2d);
  sf_cuda::render_bwd(p<int32_t>(bins->ranges), p<int32_t>(bins->ids), p<float>(m2d), p<float>(conics), terms,
                      p<float>(colors), p<float>(opac), p<float>(depths), p<int32_t>(radii),
                      bg.defined() ? p<float>(bg) : nullptr, int(colors.size(1)), int(width), int(height),
                      p<float>(trans), p<int32_t>(last_pos), p<float>(v_colors), p<float>(v_alphas),
                      want_depth ? p<float>(v_depths) : nullptr, p<float>(vm), p<float>(vcon), p<float>(vcol),
                      p<float>(vo), p<float>(vd), want_absgrad ? p<float>(ag) : nullptr, stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {vm, vcon, vcol, vo, vd, ag};
}

Tensor gabor_project_fwd(Tensor means, Tensor covars, Tensor freqs, Tensor weights, Tensor phases, Tensor viewmat,
                         Tensor K, int64_t width, int64_t height, Tensor radii, double eps2d, int64_t) {
  const c10::cuda::OptionalCUDAGuard device_guard(gpu_of(means));
  means = c(means); covars = c(covars); freqs = c(freqs); weights = c(weights); phases = c(phases);
  radii = c(radii.to(torch::kInt32));
  auto cam = make_camera(viewmat, K, width, height);
  const int64_t n = means.size(0), k = weights.size(1);
  auto terms = torch::empty({n, k, 4}, means.options());
  sf_cuda::gabor_project_fwd(cam, p<float>(means), p<float>(covars), p<float>(freqs), p<float>(weights),
                             p<float>(phases), p<int32_t>(radii), n, int(k), float(eps2d), p<float>(terms), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return terms;
}

std::vector<Tensor> gabor_project_bwd(Tensor means, Tensor covars, Tensor freqs, Tensor weights, Tensor viewmat,
                                      Tensor K, int64_t width, int64_t height, Tensor radii, double eps2d,
                                      Tensor v_terms, int64_t) {
  const c10::cuda::OptionalCUDAGuard device_guard(gpu_of(means));
  means = c(means); covars = c(covars); freqs = c(freqs); weights = c(weights); v_terms = c(v_terms);
  radii = c(radii.to(torch::kInt32));
  auto cam = make_camera(viewmat, K, width, height);
  const int64_t n = means.size(0), k = weights.size(1);
  auto vm = torch::empty_like(means), vc = torch::empty_like(covars), vf = torch::empty_like(freqs);
  auto vw = torch::empty_like(weights), vp = torch::empty_like(weights);
  sf_cuda::gabor_project_bwd(cam, p<float>(means), p<float>(covars), p<float>(freqs), p<float>(weights),
                             p<int32_t>(radii), n, int(k), float(eps2d), p<float>(v_terms), p<float>(vm),
                             p<float>(vc), p<float>(vf), p<float>(vw), p<float>(vp), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {vm, vc, vf, vw, vp};
}

std::vector<Tensor> slice4_fwd(Tensor means, Tensor times, Tensor ql, Tensor qr, Tensor scales, double filter_var,
                               Tensor opac, double t) {
  const c10::cuda::OptionalCUDAGuard device_guard(gpu_of(means));
  means = c(means); times = c(times); ql = c(ql); qr = c(qr); scales = c(scales); opac = c(opac);
  const int64_t n = means.size(0);
  TORCH_CHECK(times.numel() == n && ql.numel() == 4 * n && qr.numel() == 4 * n && scales.numel() == 4 * n &&
                  opac.numel() == n, "slice4_fwd: inconsistent primitive counts");
  auto mean3 = torch::empty({n, 3}, means.options()), cov3 = torch::empty({n, 3, 3}, means.options());
  auto opac_t = torch::empty({n}, means.options()), expo = torch::empty({n}, means.options());
  sf_cuda::slice4_fwd(p<float>(means), p<float>(times), p<float>(ql), p<float>(qr), p<float>(scales),
                      float(filter_var), p<float>(opac), n, float(t), p<float>(mean3), p<float>(cov3), p<float>(opac_t), p<float>(expo), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {mean3, cov3, opac_t, expo};
}

std::vector<Tensor> slice4_bwd(Tensor times, Tensor ql, Tensor qr, Tensor scales, double filter_var, Tensor opac,
                               double t, Tensor v_mean3, Tensor v_cov3, Tensor v_opac_t) {
  const c10::cuda::OptionalCUDAGuard device_guard(gpu_of(times));
  times = c(times); ql = c(ql); qr = c(qr); scales = c(scales); opac = c(opac);
  v_mean3 = c(v_mean3); v_cov3 = c(v_cov3); v_opac_t = c(v_opac_t);
  const int64_t n = times.numel();
  auto vm = torch::empty({n, 3}, times.options()), vt = torch::empty({n}, times.options());
  auto vql = torch::empty_like(ql), vqr = torch::empty_like(qr), vs = torch::empty_like(scales);
  auto vo = torch::empty_like(opac);
  sf_cuda::slice4_bwd(p<float>(times), p<float>(ql), p<float>(qr), p<float>(scales), float(filter_var), p<float>(opac), n,
                      float(t),
                      p<float>(v_mean3), p<float>(v_cov3), p<float>(v_opac_t), p<float>(vm), p<float>(vt),
                      p<float>(vql), p<float>(vqr), p<float>(vs), p<float>(vo), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {vm, vt, vql, vqr, vs, vo};
}

}  // namespace

// Fused L1 + D-SSIM: {float64 [mean |x - y|, mean SSIM, mean (clamp(x, 0, 1) - y)^2] on the GPU, gradient w.r.t.
// img (empty unless want_grad)}.
std::vector<Tensor> l1_ssim(Tensor img, Tensor ref, double ssim_weight, bool want_grad) {
  const c10::cuda::OptionalCUDAGuard device_guard(gpu_of(img));
  TORCH_CHECK(img.dim() == 3 && img.sizes() == ref.sizes(), "l1_ssim: img and ref must be (H, W, C) of one shape, got ",
              img.sizes(), " and ", ref.sizes());
  img = c(img); ref = c(ref);
  const int h = int(img.size(0)), w = int(img.size(1)), ch = int(img.size(2));
  auto scratch = torch::empty({sf_cuda::l1_ssim_scratch_floats(h, w, ch)}, img.options());
  auto block_sums = torch::empty({3 * sf_cuda::l1_ssim_block_count(h, w, ch)}, img.options().dtype(torch::kFloat64));
  auto stats = torch::empty({3}, img.options().dtype(torch::kFloat64));
  auto grad = want_grad ? torch::empty_like(img) : torch::empty({0}, img.options());
  sf_cuda::l1_ssim(p<float>(img), p<float>(ref), h, w, ch, want_grad ? p<float>(grad) : nullptr,
                   stats.data_ptr<double>(), ssim_weight, p<float>(scratch), block_sums.data_ptr<double>(), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
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
  m.def("gabor_project_fwd", &gabor_project_fwd);
  m.def("gabor_project_bwd", &gabor_project_bwd);
  m.def("raster_fwd", &raster_fwd);
  m.def("raster_bwd", &raster_bwd);
  m.def("l1_ssim", &l1_ssim);
}
