// CPU covariance, projection and 4D slice stages (forward + VJP), parallel over primitives.
#include <type_traits>

#include "api.h"
#include "lanes.h"

namespace sf_cpu {

#if defined(SF_LANES)
namespace {
// sf::quat_scale_to_covar and its VJP on SF_LANES primitives (rows transposed in and out): the same operations lane
// by lane as the scalar loop.
void covar_fwd_block(const float* quats, const float* scales, int count, float* covars) {
  lanes::F q[4], s[3], cov[9];
  lanes::load_rows<4>(quats, count, q);
  lanes::load_rows<3>(scales, count, s);
  sf::quat_scale_to_covar<lanes::F>(q, s, cov);
  lanes::store_rows<9>(covars, count, cov);
}
void covar_bwd_block(const float* quats, const float* scales, const float* v_covars, int count, float* v_quats,
                     float* v_scales) {
  lanes::F q[4], s[3], vcov[9], vq[4], vs[3];
  lanes::load_rows<4>(quats, count, q);
  lanes::load_rows<3>(scales, count, s);
  lanes::load_rows<9>(v_covars, count, vcov);
  sf::quat_scale_to_covar_vjp<lanes::F>(q, s, vcov, vq, vs);
  lanes::store_rows<4>(v_quats, count, vq);
  lanes::store_rows<3>(v_scales, count, vs);
}
}  // namespace
#endif

template <typename T> void covar_fwd(const T* quats, const T* scales, int64_t n, T* covars, int nthreads) {
#if defined(SF_LANES)
  if constexpr (std::is_same<T, float>::value) {
    lanes::for_lane_blocks(n, nthreads, [&](int64_t i, int count) {
      covar_fwd_block(quats + 4 * i, scales + 3 * i, count, covars + 9 * i);
    });
    return;
  }
#endif
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t i = 0; i < n; ++i) sf::quat_scale_to_covar(quats + 4 * i, scales + 3 * i, covars + 9 * i);
}

template <typename T>
void covar_bwd(const T* quats, const T* scales, const T* v_covars, int64_t n, T* v_quats, T* v_scales, int nthreads) {
#if defined(SF_LANES)
  if constexpr (std::is_same<T, float>::value) {
    lanes::for_lane_blocks(n, nthreads, [&](int64_t i, int count) {
      covar_bwd_block(quats + 4 * i, scales + 3 * i, v_covars + 9 * i, count, v_quats + 4 * i, v_scales + 3 * i);
    });
    return;
  }
#endif
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t i = 0; i < n; ++i)
    sf::quat_scale_to_covar_vjp(quats + 4 * i, scales + 3 * i, v_covars + 9 * i, v_quats + 4 * i, v_scales + 3 * i);
}

#if defined(SF_LANES)
namespace {
// sf::project_gaussian on SF_LANES primitives (sf::project_gaussian_values on lanes; rows transposed in and out).
void project_fwd_block(const sf::Camera& cam, const float* means, const float* covars, const float* opacities,
                       int count, float near, float far, float eps2d, bool antialiased, float* means2d, float* conics,
                       float* depths, int32_t* radii, float* opac_out) {
  using lanes::F;
  F m[3], cov[9], o[1];
  lanes::load_rows<3>(means, count, m);
  lanes::load_rows<9>(covars, count, cov);
  lanes::load_rows<1>(opacities, count, o);
  sf::ProjectValues<F> v;
  const auto valid = sf::project_gaussian_values<F>(cam, m, cov, o[0], F(near), F(far), F(eps2d), antialiased, v);
  lanes::store_rows<2>(means2d, count, v.mean2d);
  lanes::store_rows<3>(conics, count, v.conic);
  lanes::store_rows<1>(depths, count, &v.depth);
  lanes::store_rows<1>(opac_out, count, &v.opacity);
  alignas(64) float rx[SF_LANES], ry[SF_LANES], ok[SF_LANES];
  lanes::vstore(rx, v.rx.v);
  lanes::vstore(ry, v.ry.v);
  lanes::vstore(ok, lanes::lanes_where(valid).v);
  for (int l = 0; l < count; ++l) {
    radii[2 * l] = ok[l] != 0.0f ? static_cast<int32_t>(rx[l]) : 0;
    radii[2 * l + 1] = ok[l] != 0.0f ? static_cast<int32_t>(ry[l]) : 0;
  }
}
}  // namespace
#endif

template <typename T>
void project_fwd(const sf::Camera& cam, const T* means, const T* covars, const T* opacities, int64_t n, T near, T far,
                 T eps2d, bool antialiased, T* means2d, T* conics, T* depths, int32_t* radii, T* opac_out,
                 int nthreads) {
#if defined(SF_LANES)
  if constexpr (std::is_same<T, float>::value) {
    lanes::for_lane_blocks(n, nthreads, [&](int64_t i, int count) {
      project_fwd_block(cam, means + 3 * i, covars + 9 * i, opacities + i, count, near, far, eps2d, antialiased,
                        means2d + 2 * i, conics + 3 * i, depths + i, radii + 2 * i, opac_out + i);
    });
    return;
  }
#endif
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t i = 0; i < n; ++i) {
    sf::ProjectOut<T> o;
    sf::project_gaussian(cam, means + 3 * i, covars + 9 * i, opacities[i], near, far, eps2d, antialiased, o);
    means2d[2 * i] = o.mean2d[0];
    means2d[2 * i + 1] = o.mean2d[1];
    for (int j = 0; j < 3; ++j) conics[3 * i + j] = o.conic[j];
    depths[i] = o.depth;
    radii[2 * i] = o.radius[0];
    radii[2 * i + 1] = o.radius[1];
    opac_out[i] = o.opacity;
  }
}

#if defined(SF_LANES)
namespace {
using lanes::F;

// sf::project_gaussian_vjp on SF_LANES primitives (rows transposed in and out); culled ones (radius 0) get zeros.
void project_bwd_block(const sf::Camera& cam, const float* means, const float* covars, const float* opacities,
                       const int32_t* radii, int count, float eps2d, bool antialiased, const float* v_means2d,
                       const float* v_conics, const float* v_depths, const float* v_opac_out, float* v_means,
                       float* v_covars, float* v_opacities) {
  F m[3], cov[9], o[1], vm2[2], vcon[3], vd[1], voo[1], vm[3], vcov[9], vo[1];
  lanes::load_rows<3>(means, count, m);
  lanes::load_rows<9>(covars, count, cov);
  lanes::load_rows<1>(opacities, count, o);
  lanes::load_rows<2>(v_means2d, count, vm2);
  lanes::load_rows<3>(v_conics, count, vcon);
  lanes::load_rows<1>(v_depths, count, vd);
  lanes::load_rows<1>(v_opac_out, count, voo);
  sf::project_gaussian_vjp<F>(cam, m, cov, o[0], F(eps2d), antialiased, vm2, vcon, vd[0], voo[0], vm, vcov, &vo[0]);
  lanes::store_rows<3>(v_means, count, vm);
  lanes::store_rows<9>(v_covars, count, vcov);
  lanes::store_rows<1>(v_opacities, count, vo);
  for (int l = 0; l < count; ++l)
    if (radii[2 * l] <= 0 || radii[2 * l + 1] <= 0) {
      for (int j = 0; j < 3; ++j) v_means[3 * l + j] = 0;
      for (int j = 0; j < 9; ++j) v_covars[9 * l + j] = 0;
      v_opacities[l] = 0;
    }
}
}  // namespace
#endif

template <typename T>
void project_bwd(const sf::Camera& cam, const T* means, const T* covars, const T* opacities, const int32_t* radii,
                 int64_t n, T eps2d, bool antialiased, const T* v_means2d, const T* v_conics, const T* v_depths,
                 const T* v_opac_out, T* v_means, T* v_covars, T* v_opacities, int nthreads) {
#if defined(SF_LANES)
  if constexpr (std::is_same<T, float>::value) {
    lanes::for_lane_blocks(n, nthreads, [&](int64_t i, int count) {
      project_bwd_block(cam, means + 3 * i, covars + 9 * i, opacities + i, radii + 2 * i, count, eps2d, antialiased,
                        v_means2d + 2 * i, v_conics + 3 * i, v_depths + i, v_opac_out + i, v_means + 3 * i,
                        v_covars + 9 * i, v_opacities + i);
    });
    return;
  }
#endif
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t i = 0; i < n; ++i) {
    if (radii[2 * i] <= 0 || radii[2 * i + 1] <= 0) {
      for (int j = 0; j < 3; ++j) v_means[3 * i + j] = 0;
      for (int j = 0; j < 9; ++j) v_covars[9 * i + j] = 0;
      v_opacities[i] = 0;
      continue;
    }
    sf::project_gaussian_vjp(cam, means + 3 * i, covars + 9 * i, opacities[i], eps2d, antialiased, v_means2d + 2 * i,
                             v_conics + 3 * i, v_depths[i], v_opac_out[i], v_means + 3 * i, v_covars + 9 * i,
                             v_opacities + i);
  }
}

#if defined(SF_LANES)
// sf::slice4 and sf::slice4_vjp instantiated with lanes::F: SF_LANES primitives per call (rows transposed in and out),
// the same operations lane by lane, so float results match the scalar loop's up to the exp polynomial (~2 ulp).
namespace {
void slice4_fwd_block(const float* means, const float* times, const float* ql, const float* qr, const float* scales,
                      float filter_var, const float* opac, int count, float t, float* mean3, float* cov3, float* opac_t,
                      float* exponent) {
  F m[3], tm[1], a[4], b[4], s[4], o[1], m3[3], c3[9], ot[1], ex[1];
  lanes::load_rows<3>(means, count, m);
  lanes::load_rows<1>(times, count, tm);
  lanes::load_rows<4>(ql, count, a);
  lanes::load_rows<4>(qr, count, b);
  lanes::load_rows<4>(scales, count, s);
  lanes::load_rows<1>(opac, count, o);
  sf::slice4<F>(m, tm[0], a, b, s, F(filter_var), o[0], F(t), m3, c3, &ot[0], &ex[0]);
  lanes::store_rows<3>(mean3, count, m3);
  lanes::store_rows<9>(cov3, count, c3);
  lanes::store_rows<1>(opac_t, count, ot);
  lanes::store_rows<1>(exponent, count, ex);
}

void slice4_bwd_block(const float* times, const float* ql, const float* qr, const float* scales, float filter_var,
                      const float* opac, int count, float t, const float* v_mean3, const float* v_cov3,
                      const float* v_opac_t, float* v_means, float* v_times, float* v_ql, float* v_qr, float* v_scales,
                      float* v_opac) {
  F tm[1], a[4], b[4], s[4], o[1], vm3[3], vc3[9], vot[1], vm[3], vt[1], va[4], vb[4], vs[4], vo[1];
  lanes::load_rows<1>(times, count, tm);
  lanes::load_rows<4>(ql, count, a);
  lanes::load_rows<4>(qr, count, b);
  lanes::load_rows<4>(scales, count, s);
  lanes::load_rows<1>(opac, count, o);
  lanes::load_rows<3>(v_mean3, count, vm3);
  lanes::load_rows<9>(v_cov3, count, vc3);
  lanes::load_rows<1>(v_opac_t, count, vot);
  sf::slice4_vjp<F>(tm[0], a, b, s, F(filter_var), o[0], F(t), vm3, vc3, vot[0], vm, &vt[0], va, vb, vs, &vo[0]);
  lanes::store_rows<3>(v_means, count, vm);
  lanes::store_rows<1>(v_times, count, vt);
  lanes::store_rows<4>(v_ql, count, va);
  lanes::store_rows<4>(v_qr, count, vb);
  lanes::store_rows<4>(v_scales, count, vs);
  lanes::store_rows<1>(v_opac, count, vo);
}
}  // namespace
#endif

template <typename T>
void slice4_fwd(const T* means, const T* times, const T* ql, const T* qr, const T* scales, T filter_var, const T* opac,
                int64_t n, T t, T* mean3, T* cov3, T* opac_t, T* exponent, int nthreads) {
#if defined(SF_LANES)
  if constexpr (std::is_same<T, float>::value) {
    lanes::for_lane_blocks(n, nthreads, [&](int64_t i, int count) {
      slice4_fwd_block(means + 3 * i, times + i, ql + 4 * i, qr + 4 * i, scales + 4 * i, filter_var, opac + i, count, t,
                       mean3 + 3 * i, cov3 + 9 * i, opac_t + i, exponent + i);
    });
    return;
  }
#endif
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t i = 0; i < n; ++i)
    sf::slice4(means + 3 * i, times[i], ql + 4 * i, qr + 4 * i, scales + 4 * i, filter_var, opac[i], t, mean3 + 3 * i,
               cov3 + 9 * i, opac_t + i, exponent + i);
}

template <typename T>
void slice4_bwd(const T* times, const T* ql, const T* qr, const T* scales, T filter_var, const T* opac, int64_t n, T t,
                const T* v_mean3, const T* v_cov3, const T* v_opac_t, T* v_means, T* v_times, T* v_ql, T* v_qr,
                T* v_scales, T* v_opac, int nthreads) {
#if defined(SF_LANES)
  if constexpr (std::is_same<T, float>::value) {
    lanes::for_lane_blocks(n, nthreads, [&](int64_t i, int count) {
      slice4_bwd_block(times + i, ql + 4 * i, qr + 4 * i, scales + 4 * i, filter_var, opac + i, count, t, v_mean3 + 3 * i,
                       v_cov3 + 9 * i, v_opac_t + i, v_means + 3 * i, v_times + i, v_ql + 4 * i, v_qr + 4 * i,
                       v_scales + 4 * i, v_opac + i);
    });
    return;
  }
#endif
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t i = 0; i < n; ++i)
    sf::slice4_vjp(times[i], ql + 4 * i, qr + 4 * i, scales + 4 * i, filter_var, opac[i], t, v_mean3 + 3 * i, v_cov3 + 9 * i,
                   v_opac_t[i], v_means + 3 * i, v_times + i, v_ql + 4 * i, v_qr + 4 * i, v_scales + 4 * i, v_opac + i);
}

#define SF_INSTANTIATE(T)                                                                                          \
  template void covar_fwd<T>(const T*, const T*, int64_t, T*, int);                                                \
  template void covar_bwd<T>(const T*, const T*, const T*, int64_t, T*, T*, int);                                  \
  template void project_fwd<T>(const sf::Camera&, const T*, const T*, const T*, int64_t, T, T, T, bool, T*, T*, T*, \
                               int32_t*, T*, int);                                                                 \
  template void project_bwd<T>(const sf::Camera&, const T*, const T*, const T*, const int32_t*, int64_t, T, bool,   \
                               const T*, const T*, const T*, const T*, T*, T*, T*, int);                           \
  template void slice4_fwd<T>(const T*, const T*, const T*, const T*, const T*, T, const T*, int64_t, T, T*, T*, T*,  \
                              T*, int);                                                                    \
  template void slice4_bwd<T>(const T*, const T*, const T*, const T*, T, const T*, int64_t, T, const T*, const T*,  \
                              const T*, T*, T*, T*, T*, T*, T*, int);
SF_INSTANTIATE(float)
SF_INSTANTIATE(double)

}  // namespace sf_cpu
