// CPU rasterisation stage: binning, forward blend and backward blend for Gaussian and Gabor footprints.
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <stdexcept>

#include "api.h"
#include "binning.h"
#include "raster_bwd.h"
#include "raster_fwd.h"

namespace sf_cpu {

namespace {
double cpu_now() {  // CPU time of the calling thread: with 1 thread, robust to other load on the machine
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
}  // namespace

// What the forward leaves for the backward: the tile bins and the packed per-primitive records (the backward blends
// the same records, so it does not gather them again; type-erased because the record type depends on T and FP).
struct BinsHandle {
  TileBins bins;
  std::shared_ptr<const void> packed;
};

void free_bins(BinsHandle* h) { delete h; }
int64_t bins_intersections(const BinsHandle* h) { return int64_t(h->bins.ids.size()); }

// Calls f(FP{}) with the footprint type for `terms` wave terms (0: Gaussian; 1..kMaxGaborTerms: Gabor).
template <typename T, typename F> void with_footprint(int terms, F&& f) {
  switch (terms) {
    case 0: f(sf::GaussianFootprint<T>{}); break;
    case 1: f(sf::GaborFootprint<T, 1>{}); break;
    case 2: f(sf::GaborFootprint<T, 2>{}); break;
    case 3: f(sf::GaborFootprint<T, 3>{}); break;
    case 4: f(sf::GaborFootprint<T, 4>{}); break;
    case 5: f(sf::GaborFootprint<T, 5>{}); break;
    case 6: f(sf::GaborFootprint<T, 6>{}); break;
    case 7: f(sf::GaborFootprint<T, 7>{}); break;
    case 8: f(sf::GaborFootprint<T, 8>{}); break;
    default: throw std::invalid_argument("splatforge: Gabor primitives support 1..8 terms");
  }
}

template <typename T>
BinsHandle* raster_fwd(const T* means2d, const T* fp_params, int terms, const T* colors, const T* opacities,
                       const T* depths, const int32_t* radii, const T* background, int64_t n, int channels, int width,
                       int height, int tile, int nthreads, T* out_colors, T* out_alphas, T* out_depths, T* out_trans,
                       int32_t* out_last_id, int32_t* out_last_pos, int64_t* n_evals) {
  const double t0 = omp_get_wtime(), c0 = cpu_now();
  auto* h = new BinsHandle{bin_tiles(means2d, radii, depths, n, width, height, tile, nthreads)};
  const double t1 = omp_get_wtime(), c1 = cpu_now();
  RasterInputs<T> in{means2d, fp_params, colors, opacities, depths, radii, background, n, channels, width, height, tile};
  RasterOutputs<T> out{out_colors, out_alphas, out_depths, out_trans, out_last_id, out_last_pos, n_evals};
  with_footprint<T>(terms, [&](auto tag) {
    using FP = decltype(tag);
    auto packed = std::make_shared<const Packed<T, FP>>(pack_primitives<T, FP>(in, h->bins, nthreads));
    h->packed = packed;
    render_forward<T, FP>(in, h->bins, *packed, nthreads, out);
  });
  if (std::getenv("SPLATFORGE_PROFILE"))
    std::fprintf(stderr,
                 "splatforge cpu fwd: bin %.2f ms (cpu %.2f; rectangles %.2f, depth sort %.2f, tile lists %.2f), "
                 "blend %.2f ms (cpu %.2f) (%d threads), %lld tile entries, %lld evaluations\n",
                 1e3 * (t1 - t0), 1e3 * (c1 - c0), h->bins.phase_ms[0], h->bins.phase_ms[1], h->bins.phase_ms[2],
                 1e3 * (omp_get_wtime() - t1), 1e3 * (cpu_now() - c1), nthreads,
                 static_cast<long long>(h->bins.ids.size()), static_cast<long long>(n_evals ? *n_evals : -1));
  return h;
}

template <typename T>
void raster_bwd(const BinsHandle* h, const T* means2d, const T* fp_params, int terms, const T* colors,
                const T* opacities, const T* depths, const int32_t* radii, const T* background, int64_t n, int channels,
                int width, int height, int tile, int nthreads, const T* trans, const int32_t* last_pos,
                const T* v_colors_px, const T* v_alphas_px, const T* v_depths_px, T* v_means2d, T* v_params,
                T* v_colors, T* v_opacities, T* v_depths, T* absgrad, bool depth_grad, bool want_absgrad) {
  RasterInputs<T> in{means2d, fp_params, colors, opacities, depths, radii, background, n, channels, width, height, tile};
  RasterGradIn<T> gin{v_colors_px, v_alphas_px, v_depths_px, trans, last_pos, depth_grad, want_absgrad};
  RasterGradOut<T> out{v_means2d, v_params, v_colors, v_opacities, v_depths, absgrad};
  const double t0 = omp_get_wtime(), c0 = cpu_now();
  with_footprint<T>(terms, [&](auto tag) {
    using FP = decltype(tag);
    const auto& packed = *std::static_pointer_cast<const Packed<T, FP>>(h->packed);
    render_backward<T, FP>(in, h->bins, packed, gin, nthreads, out);
  });
  if (std::getenv("SPLATFORGE_PROFILE"))
    std::fprintf(stderr, "splatforge cpu bwd: %.2f ms (cpu %.2f) (%d threads)\n", 1e3 * (omp_get_wtime() - t0),
                 1e3 * (cpu_now() - c0), nthreads);
}

#define SF_INSTANTIATE(T)                                                                                         \
  template BinsHandle* raster_fwd<T>(const T*, const T*, int, const T*, const T*, const T*, const int32_t*,      \
                                     const T*, int64_t, int, int, int, int, int, T*, T*, T*, T*, int32_t*,        \
                                     int32_t*, int64_t*);                                                         \
  template void raster_bwd<T>(const BinsHandle*, const T*, const T*, int, const T*, const T*, const T*,           \
                              const int32_t*, const T*, int64_t, int, int, int, int, int, const T*,               \
                              const int32_t*, const T*, const T*, const T*, T*, T*, T*, T*, T*, T*, bool, bool);
SF_INSTANTIATE(float)
SF_INSTANTIATE(double)

}  // namespace sf_cpu
