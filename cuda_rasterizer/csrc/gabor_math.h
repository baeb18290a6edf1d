// 3D Gabor primitives (after 3DGabSplat): density o G(x) (1 + sum_k w_k cos(f_k . (x - mu) + phi_k)), sum_k |w_k|
// <= 1. Part of the shared header (sf_math.h includes it at its end): the projection of the wave terms into the image
// (the footprint's parameters) with its VJP, and the 2D Gabor footprint pair the blend kernels are templated on.
//
// Projection (DESIGN.md section 5, under the affine approximation EWA uses): with camera coordinates c, the local
// map y = A (x - mu), A = [J; e_z^T] Rc (J the 2x3 clamped projection Jacobian), takes the 3D Gaussian to covariance
// Sigma_y = A Sigma A^T. A term's frequency in y is g = A^-T f: g_u = (z/fx f0, z/fy f1), g_z = f2 + (tx f0 + ty f1)/z
// with f = Rc f_world. Integrating along the ray (constant u) gives, per term, the 2D frequency h = g_u + beta g_z
// (beta = Sigma_uu^-1 Sigma_uz) and amplitude w exp(-0.5 g_z^2 s^2), s^2 = Sigma_zz - Sigma_uz . beta. The pixel
// filter of variance eps2d that widens the envelope also damps each wave by exp(-0.5 eps2d |h|^2), so that waves
// finer than a pixel fade instead of aliasing. The footprint at offset d = mean2d - pixel is
// exp(-sigma(d)) (1 + sum_k a_k cos(phi_k - h_k . d)).
#pragma once

// The blend kernels call these per pixel lane inside `omp simd` loops, which g++ vectorises only when the loops over
// the terms are fully unrolled: its own heuristics stop unrolling at K = 4, and the scalar fallback cost the CPU
// backward 6x. Hence forced inlining and unrolling.
#if defined(__CUDACC__)
#define SF_FORCE_INLINE __forceinline__
#define SF_UNROLL_TERMS _Pragma("unroll")
#else
#define SF_FORCE_INLINE inline __attribute__((always_inline))
#define SF_UNROLL_TERMS _Pragma("GCC unroll 8")
#endif

namespace sf {

// ---- cos / sin: quadrant reduction (3-part Cody-Waite pi/2) and minimax polynomials on [-pi/4, pi/4] ----
// float: branch-free (g++ vectorises it; ~1e-7 absolute for |x| < 1e4), the same code on host and device so both
// backends agree. double: the library functions (the test oracle).
SF_HOST_DEVICE SF_FORCE_INLINE void sf_sincos(float x, float& s, float& c) {
  const float q = floor(x * 0.636619772367581343f + 0.5f);
  float r = x - q * 1.5703125f;
  r = r - q * 4.837512969970703125e-4f;
  r = r - q * 7.54978995489188216e-8f;
  const float r2 = r * r;
  const float sr = r + r * r2 * (-1.6666654611e-1f + r2 * (8.3321608736e-3f + r2 * -1.9515295891e-4f));
  const float cr = 1.0f - 0.5f * r2 + r2 * r2 * (4.166664568298827e-2f + r2 * (-1.388731625493765e-3f + r2 * 2.443315711809948e-5f));
  const int32_t qi = static_cast<int32_t>(q) & 3;
  const bool swap = (qi & 1) != 0;
  const float s0 = swap ? cr : sr, c0 = swap ? sr : cr;
  s = (qi & 2) ? -s0 : s0;
  c = (qi == 1 || qi == 2) ? -c0 : c0;
}
// x = r + q pi with |r| <= pi/2 (3-part Cody-Waite pi); `odd` says whether q is odd (cos and sin change sign).
SF_HOST_DEVICE SF_FORCE_INLINE float reduce_half_turns(float x, bool& odd) {
  const float q = floor(x * 0.318309886183790672f + 0.5f);
  float r = x - q * 3.140625f;
  r = r - q * 9.67502593994140625e-4f;
  r = r - q * 1.509957990978376432e-7f;
  odd = (static_cast<int32_t>(q) & 1) != 0;
  return r;
}

// cos alone (the forward needs no sine): cos x = (-1)^q cos r with the Taylor polynomial to r^12 (truncation < 6e-9
// on [-pi/2, pi/2]); ~12 operations against ~22 for sf_sincos.
SF_HOST_DEVICE SF_FORCE_INLINE float sf_cos(float x) {
  bool odd;
  const float r = reduce_half_turns(x, odd);
  const float r2 = r * r;
  float p = 2.08767569878680989e-9f;
  p = p * r2 - 2.75573192239858907e-7f;
  p = p * r2 + 2.48015873015873016e-5f;
  p = p * r2 - 1.38888888888888889e-3f;
  p = p * r2 + 4.16666666666666667e-2f;
  p = p * r2 - 0.5f;
  p = p * r2 + 1.0f;
  return odd ? -p : p;
}
SF_HOST_DEVICE inline double sf_cos(double x) { return std::cos(x); }

// sin alone, the same reduction: sin x = (-1)^q sin r, Taylor polynomial to r^13.
SF_HOST_DEVICE SF_FORCE_INLINE float sf_sin(float x) {
  bool odd;
  const float r = reduce_half_turns(x, odd);
  const float r2 = r * r;
  float p = 1.60590438368216146e-10f;
  p = p * r2 - 2.50521083854417188e-8f;
  p = p * r2 + 2.75573192239858907e-6f;
  p = p * r2 - 1.98412698412698413e-4f;
  p = p * r2 + 8.33333333333333333e-3f;
  p = p * r2 - 1.66666666666666667e-1f;
  p = (p * r2) * r + r;
  return odd ? -p : p;
}
SF_HOST_DEVICE inline double sf_sin(double x) { return std::sin(x); }

SF_HOST_DEVICE inline void sf_sincos(double x, double& s, double& c) {
  s = std::sin(x);
  c = std::cos(x);
}

// ---- projection of the wave terms ----
// Shared, per primitive: camera-space mean (x, y, z), clamped (tx, ty), camera covariance cc and the beta, s^2 of the
// ray-conditional Gaussian. Terms: world f (3), w -> image h (2), amplitude a.
// The view, term and VJP routines are branch-free where a primitive's values decide (sf_select; per-lane conditions
// of type Cond<T>), so that the CPU backend runs them on SIMD lanes (cpu/lanes.h) as well as on scalars.
template <typename T> using Cond = decltype(T(0) < T(0));
SF_HOST_DEVICE inline bool any_lane(bool c) { return c; }

template <typename T> struct GaborView {
  T z, tx, ty, fx, fy;
  T cc[9], rc[9];
  T beta[2], s2, inv_uu[3];  // Sigma_uu^-1 as (a, b, c)
  T suu[3], suz[2];          // Sigma_uu (a, b, c) and Sigma_uz
  Cond<T> clamp_x, clamp_y;
  T ux_c, uy_c;
};

// The view of a primitive; false (per lane) behind the camera, where the rest is not to be used.
template <typename T>
SF_HOST_DEVICE inline Cond<T> gabor_view(const Camera& cam, const T mean[3], const T cov[9], GaborView<T>& v) {
  T pc[3];
  world_to_cam(cam, mean, pc);
  const T x = pc[0], y = pc[1], z = pc[2];
  const Cond<T> valid = z > T(0);
  if (!any_lane(valid)) return valid;
  v.z = z;
  v.fx = T(cam.fx);
  v.fy = T(cam.fy);
  const T W = T(cam.width), H = T(cam.height), cx = T(cam.cx), cy = T(cam.cy);
  const T tan_x = T(0.5) * W / v.fx, tan_y = T(0.5) * H / v.fy;
  const T lxp = (W - cx) / v.fx + T(FRUSTUM_MARGIN) * tan_x, lxn = cx / v.fx + T(FRUSTUM_MARGIN) * tan_x;
  const T lyp = (H - cy) / v.fy + T(FRUSTUM_MARGIN) * tan_y, lyn = cy / v.fy + T(FRUSTUM_MARGIN) * tan_y;
  const T ux = x / z, uy = y / z;
  v.clamp_x = (ux < -lxn) | (ux > lxp);
  v.clamp_y = (uy < -lyn) | (uy > lyp);
  v.ux_c = sf_min(sf_max(ux, -lxn), lxp);
  v.uy_c = sf_min(sf_max(uy, -lyn), lyp);
  v.tx = z * v.ux_c;
  v.ty = z * v.uy_c;
  for (int i = 0; i < 9; ++i) v.rc[i] = T(cam.R[i]);
  T tmp[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) tmp[i * 3 + j] = v.rc[i * 3] * cov[j] + v.rc[i * 3 + 1] * cov[3 + j] + v.rc[i * 3 + 2] * cov[6 + j];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      v.cc[i * 3 + j] = tmp[i * 3] * v.rc[j * 3] + tmp[i * 3 + 1] * v.rc[j * 3 + 1] + tmp[i * 3 + 2] * v.rc[j * 3 + 2];
  const T J[6] = {v.fx / z, T(0), -v.fx * v.tx / (z * z), T(0), v.fy / z, -v.fy * v.ty / (z * z)};
  T JS[6];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) JS[i * 3 + j] = J[i * 3] * v.cc[j] + J[i * 3 + 1] * v.cc[3 + j] + J[i * 3 + 2] * v.cc[6 + j];
  v.suu[0] = JS[0] * J[0] + JS[1] * J[1] + JS[2] * J[2];
  v.suu[1] = JS[0] * J[3] + JS[1] * J[4] + JS[2] * J[5];
  v.suu[2] = JS[3] * J[3] + JS[4] * J[4] + JS[5] * J[5];
  v.suz[0] = JS[2];  // (J cc)[0][2] = row 0 of J cc, column z
  v.suz[1] = JS[5];
  const T det = sf_max(v.suu[0] * v.suu[2] - v.suu[1] * v.suu[1], T(MIN_DET));
  v.inv_uu[0] = v.suu[2] / det;
  v.inv_uu[1] = -v.suu[1] / det;
  v.inv_uu[2] = v.suu[0] / det;
  v.beta[0] = v.inv_uu[0] * v.suz[0] + v.inv_uu[1] * v.suz[1];
  v.beta[1] = v.inv_uu[1] * v.suz[0] + v.inv_uu[2] * v.suz[1];
  v.s2 = sf_max(v.cc[8] - (v.suz[0] * v.beta[0] + v.suz[1] * v.beta[1]), T(0));
  return valid;
}

// One term: world frequency f (3), weight w -> image frequency h (2, radians per pixel) and amplitude a.
template <typename T>
SF_HOST_DEVICE inline void gabor_term(const GaborView<T>& v, const T f[3], T w, T eps2d, T h[2], T* a) {
  T fc[3];
  for (int i = 0; i < 3; ++i) fc[i] = v.rc[i * 3] * f[0] + v.rc[i * 3 + 1] * f[1] + v.rc[i * 3 + 2] * f[2];
  const T gz = fc[2] + (v.tx * fc[0] + v.ty * fc[1]) / v.z;
  h[0] = v.z / v.fx * fc[0] + v.beta[0] * gz;
  h[1] = v.z / v.fy * fc[1] + v.beta[1] * gz;
  const T expo = T(0.5) * (gz * gz * v.s2 + eps2d * (h[0] * h[0] + h[1] * h[1]));
  const auto keep = expo <= T(GABOR_CUTOFF_EXPONENT);  // else cut (also catches overflow): nothing the blend could see
  h[0] = sf_select(keep, h[0], T(0));
  h[1] = sf_select(keep, h[1], T(0));
  *a = sf_select(keep, w * exp(-sf_select(keep, expo, T(0))), T(0));
}

// VJP of gabor_term for one term: accumulates into the shared per-primitive gradients v_z, v_tx, v_ty, v_cc (camera
// covariance, 3x3) and v_beta, v_s2 (finished by gabor_view_vjp), and writes v_f (world) and v_w.
template <typename T> struct GaborViewGrad {
  T z = T(0), tx = T(0), ty = T(0), beta[2] = {T(0), T(0)}, s2 = T(0);
};

template <typename T>
SF_HOST_DEVICE inline void gabor_term_vjp(const GaborView<T>& v, const T f[3], T w, T eps2d, const T v_h_in[2], T v_a,
                                          GaborViewGrad<T>& g, T v_f[3], T* v_w) {
  T fc[3];
  for (int i = 0; i < 3; ++i) fc[i] = v.rc[i * 3] * f[0] + v.rc[i * 3 + 1] * f[1] + v.rc[i * 3 + 2] * f[2];
  const T gz_raw = fc[2] + (v.tx * fc[0] + v.ty * fc[1]) / v.z;
  const T h0 = v.z / v.fx * fc[0] + v.beta[0] * gz_raw, h1 = v.z / v.fy * fc[1] + v.beta[1] * gz_raw;
  const T expo = T(0.5) * (gz_raw * gz_raw * v.s2 + eps2d * (h0 * h0 + h1 * h1));
  const auto keep = expo <= T(GABOR_CUTOFF_EXPONENT);  // else a cut term (gabor_term): constant zero, no gradient
  if (!any_lane(keep)) {
    for (int j = 0; j < 3; ++j) v_f[j] = T(0);
    *v_w = T(0);
    return;
  }
  // cut lanes: every gradient below is 0 (E, the upstream h gradients and gz taken as 0 there)
  const T gz = sf_select(keep, gz_raw, T(0));
  const T E = sf_select(keep, exp(-sf_select(keep, expo, T(0))), T(0));
  *v_w = v_a * E;
  const T v_expo = v_a * w * E;  // d a / d(exponent) = a
  T v_gz = -v_expo * gz * v.s2;
  g.s2 += -T(0.5) * v_expo * gz * gz;
  const T v_h0 = sf_select(keep, v_h_in[0] - v_expo * eps2d * h0, T(0));
  const T v_h1 = sf_select(keep, v_h_in[1] - v_expo * eps2d * h1, T(0));
  // h = g_u + beta gz
  g.beta[0] += v_h0 * gz;
  g.beta[1] += v_h1 * gz;
  v_gz += v_h0 * v.beta[0] + v_h1 * v.beta[1];
  // g_u = (z/fx fc0, z/fy fc1), gz = fc2 + (tx fc0 + ty fc1) / z
  T v_fc[3];
  v_fc[0] = v_h0 * v.z / v.fx + v_gz * v.tx / v.z;
  v_fc[1] = v_h1 * v.z / v.fy + v_gz * v.ty / v.z;
  v_fc[2] = v_gz;
  g.z += v_h0 * fc[0] / v.fx + v_h1 * fc[1] / v.fy - v_gz * (v.tx * fc[0] + v.ty * fc[1]) / (v.z * v.z);
  g.tx += v_gz * fc[0] / v.z;
  g.ty += v_gz * fc[1] / v.z;
  for (int j = 0; j < 3; ++j) v_f[j] = v.rc[j] * v_fc[0] + v.rc[3 + j] * v_fc[1] + v.rc[6 + j] * v_fc[2];
}

// Finishes the shared part: from g (beta, s2, z, tx, ty) to world mean and covariance gradients (accumulated).
template <typename T>
SF_HOST_DEVICE inline void gabor_view_vjp(const GaborView<T>& v, const GaborViewGrad<T>& g, T v_mean[3], T v_cov[9]) {
  // s2 = czz - suz . beta (before the clamp at 0, which only binds on round-off); beta = M^-1 suz
  const auto unclamped = v.cc[8] - (v.suz[0] * v.beta[0] + v.suz[1] * v.beta[1]) > T(0);
  const T v_s2 = sf_select(unclamped, g.s2, T(0));
  T v_suz[2] = {-v_s2 * v.beta[0], -v_s2 * v.beta[1]};
  T v_beta[2] = {g.beta[0] - v_s2 * v.suz[0], g.beta[1] - v_s2 * v.suz[1]};
  const T czz_grad = v_s2;
  // beta = M^-1 suz: v_suz += M^-1 v_beta; v_M = -(M^-1 v_beta) beta^T
  const T mvb0 = v.inv_uu[0] * v_beta[0] + v.inv_uu[1] * v_beta[1];
  const T mvb1 = v.inv_uu[1] * v_beta[0] + v.inv_uu[2] * v_beta[1];
  v_suz[0] += mvb0;
  v_suz[1] += mvb1;
  // Sigma_y = A cc A^T with A = [J; e_z]: gradient on the entries read (as autograd on the dense reference gives):
  // M = (0,0), (0,1) (both off-diagonal uses), (1,1); suz = (0,2), (1,2); czz = (2,2)
  T VY[9] = {-mvb0 * v.beta[0], -(mvb0 * v.beta[1] + mvb1 * v.beta[0]), v_suz[0], T(0), -mvb1 * v.beta[1], v_suz[1],
             T(0), T(0), czz_grad};
  const T z = v.z;
  const T A[9] = {v.fx / z, T(0), -v.fx * v.tx / (z * z), T(0), v.fy / z, -v.fy * v.ty / (z * z), T(0), T(0), T(1)};
  // v_cc = A^T VY A ; v_A = (VY + VY^T) A cc (cc symmetric)
  T VA[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) VA[i * 3 + j] = VY[i * 3] * A[j] + VY[i * 3 + 1] * A[3 + j] + VY[i * 3 + 2] * A[6 + j];
  T v_cc[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) v_cc[i * 3 + j] = A[i] * VA[j] + A[3 + i] * VA[3 + j] + A[6 + i] * VA[6 + j];
  T Acc[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) Acc[i * 3 + j] = A[i * 3] * v.cc[j] + A[i * 3 + 1] * v.cc[3 + j] + A[i * 3 + 2] * v.cc[6 + j];
  T vJ[6];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) {
      T acc = T(0);
      for (int k = 0; k < 3; ++k) acc += (VY[i * 3 + k] + VY[k * 3 + i]) * Acc[k * 3 + j];
      vJ[i * 3 + j] = acc;
    }
  T v_z = g.z, v_tx = g.tx, v_ty = g.ty;
  const T z2 = z * z, z3 = z2 * z;
  v_z += -v.fx / z2 * vJ[0] - v.fy / z2 * vJ[4] + T(2) * v.fx * v.tx / z3 * vJ[2] + T(2) * v.fy * v.ty / z3 * vJ[5];
  v_tx += -v.fx / z2 * vJ[2];
  v_ty += -v.fy / z2 * vJ[5];
  // tx = z ux_c (clamped: depends on z only) or x (unclamped)
  T v_x = T(0), v_y = T(0);
  v_z += sf_select(v.clamp_x, v_tx * v.ux_c, T(0));
  v_x += sf_select(v.clamp_x, T(0), v_tx);
  v_z += sf_select(v.clamp_y, v_ty * v.uy_c, T(0));
  v_y += sf_select(v.clamp_y, T(0), v_ty);
  for (int i = 0; i < 3; ++i) v_mean[i] += v.rc[i] * v_x + v.rc[3 + i] * v_y + v.rc[6 + i] * v_z;
  // cc = Rc cov Rc^T: v_cov = Rc^T v_cc Rc
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      T acc = T(0);
      for (int k = 0; k < 3; ++k)
        for (int l = 0; l < 3; ++l) acc += v.rc[k * 3 + i] * v_cc[k * 3 + l] * v.rc[l * 3 + j];
      v_cov[i * 3 + j] += acc;
    }
}

// ---- one primitive's terms, forward and VJP (the per-primitive bodies of both backends' projection kernels) ----
// out (k, 4) = (hx, hy, amplitude, phase) per term; zeros when the primitive is culled (`visible` false) or behind
// the camera.
template <typename T>
SF_HOST_DEVICE inline void gabor_project_terms(const Camera& cam, const T mean[3], const T cov[9], const T* freqs,
                                               const T* weights, const T* phases, int k, bool visible, T eps2d, T* out) {
  GaborView<T> v;
  const bool ok = visible && gabor_view(cam, mean, cov, v);
  for (int t = 0; t < k; ++t) {
    T h[2] = {0, 0}, a = 0;
    if (ok) gabor_term(v, freqs + 3 * t, weights[t], eps2d, h, &a);
    out[4 * t] = h[0];
    out[4 * t + 1] = h[1];
    out[4 * t + 2] = a;
    out[4 * t + 3] = ok ? phases[t] : T(0);
  }
}

// VJP of gabor_project_terms: writes (not accumulates) v_mean (3), v_cov (9), v_freqs (k, 3), v_weights, v_phases (k).
template <typename T>
SF_HOST_DEVICE inline void gabor_project_terms_vjp(const Camera& cam, const T mean[3], const T cov[9], const T* freqs,
                                                   const T* weights, int k, bool visible, T eps2d, const T* v_terms,
                                                   T v_mean[3], T v_cov[9], T* v_freqs, T* v_weights, T* v_phases) {
  for (int j = 0; j < 3; ++j) v_mean[j] = 0;
  for (int j = 0; j < 9; ++j) v_cov[j] = 0;
  for (int j = 0; j < 3 * k; ++j) v_freqs[j] = 0;
  for (int j = 0; j < k; ++j) v_weights[j] = v_phases[j] = 0;
  GaborView<T> v;
  if (!(visible && gabor_view(cam, mean, cov, v))) return;
  GaborViewGrad<T> g;
  for (int t = 0; t < k; ++t) {
    const T* vt = v_terms + 4 * t;
    gabor_term_vjp(v, freqs + 3 * t, weights[t], eps2d, vt, vt[2], g, v_freqs + 3 * t, v_weights + t);
    v_phases[t] = vt[3];
  }
  gabor_view_vjp(v, g, v_mean, v_cov);
}

// ---- world-space frequencies of a primitive's terms ----
// f_k = 2 pi R(q) diag(1 / s) nu_k (radians per world unit) from frequencies nu_k in cycles per standard deviation
// along the primitive's own axes, so the waves rotate and scale with it. K terms, nu and f as (K, 3).
template <typename T>
SF_HOST_DEVICE inline void gabor_world_freqs(const T q[4], const T s[3], const T* nu, int K, T* f) {
  T R[9], qn[4], inv;
  quat_to_rotmat(q, R, qn, &inv);
  const T two_pi = T(6.283185307179586476925286766559);
  const T is[3] = {two_pi / s[0], two_pi / s[1], two_pi / s[2]};
  for (int k = 0; k < K; ++k) {
    const T l0 = nu[3 * k] * is[0], l1 = nu[3 * k + 1] * is[1], l2 = nu[3 * k + 2] * is[2];
    for (int i = 0; i < 3; ++i) f[3 * k + i] = R[3 * i] * l0 + R[3 * i + 1] * l1 + R[3 * i + 2] * l2;
  }
}

// VJP of gabor_world_freqs: v_f (K, 3) -> v_q (4), v_s (3), v_nu (K, 3), all written (not accumulated).
template <typename T>
SF_HOST_DEVICE inline void gabor_world_freqs_vjp(const T q[4], const T s[3], const T* nu, int K, const T* v_f, T v_q[4],
                                                 T v_s[3], T* v_nu) {
  T R[9], qn[4], inv;
  quat_to_rotmat(q, R, qn, &inv);
  const T two_pi = T(6.283185307179586476925286766559);
  const T is[3] = {two_pi / s[0], two_pi / s[1], two_pi / s[2]};
  T v_R[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
  T vs[3] = {0, 0, 0};
  for (int k = 0; k < K; ++k) {
    const T* vf = v_f + 3 * k;
    for (int j = 0; j < 3; ++j) {
      const T l = nu[3 * k + j] * is[j];
      const T v_l = R[j] * vf[0] + R[3 + j] * vf[1] + R[6 + j] * vf[2];
      v_nu[3 * k + j] = v_l * is[j];
      vs[j] -= v_l * l / s[j];  // d l / d s = -l / s
      for (int i = 0; i < 3; ++i) v_R[3 * i + j] += vf[i] * l;
    }
  }
  for (int j = 0; j < 3; ++j) v_s[j] = vs[j];
  quat_to_rotmat_vjp(qn, inv, v_R, v_q);
}

// ---- the 2D Gabor footprint: Gaussian envelope (the conic) times 1 + sum_k a_k cos(phi_k - h_k . d) ----
// Parameter layout: conic (a, b, c), then per term (hx, hy, amplitude, phase).
template <typename T, int K> struct GaborFootprint {
  static constexpr int kTerms = K;
  static constexpr int kParams = 3 + 4 * K;
  GaussianFootprint<T> env;
  T hx[K], hy[K], amp[K], ph[K];
  SF_HOST_DEVICE static SF_FORCE_INLINE GaborFootprint load(const T* params, int64_t i) {
    const T* p = params + i * kParams;
    GaborFootprint fp;
    fp.env = GaussianFootprint<T>{p[0], p[1], p[2]};
    SF_UNROLL_TERMS
    for (int k = 0; k < K; ++k) {
      fp.hx[k] = p[3 + 4 * k];
      fp.hy[k] = p[4 + 4 * k];
      fp.amp[k] = p[5 + 4 * k];
      fp.ph[k] = p[6 + 4 * k];
    }
    return fp;
  }
  SF_HOST_DEVICE inline T sigma(T dx, T dy) const { return env.sigma(dx, dy); }
  // The largest value the modulation can take: the row-skip level and the extent use opacity times this.
  SF_HOST_DEVICE inline T peak() const {
    T m = T(1);
    SF_UNROLL_TERMS
    for (int k = 0; k < K; ++k) m += amp[k] < T(0) ? -amp[k] : amp[k];
    return m;
  }
  SF_HOST_DEVICE inline T row_slope() const { return env.row_slope(); }
  SF_HOST_DEVICE inline bool row_may_hit(T dy, T level, T slope, T dx_lo, T dx_hi) const {
    return env.row_may_hit(dy, level, slope, dx_lo, dx_hi);
  }
  SF_HOST_DEVICE SF_FORCE_INLINE T modulation(T dx, T dy) const {
    T m = T(1);
    SF_UNROLL_TERMS
    for (int k = 0; k < K; ++k) m += amp[k] * sf_cos(ph[k] - hx[k] * dx - hy[k] * dy);
    return m;
  }
  // factor = exp(-sigma) * modulation (what the opacity multiplies)
  SF_HOST_DEVICE SF_FORCE_INLINE T factor(T dx, T dy, T& sig) const {
    sig = sigma(dx, dy);
    const T m = modulation(dx, dy);
    const T f = sf_exp_neg(-sig) * m;
    return f > T(0) ? f : T(0);
  }
  // factor() that also leaves exp(-sigma) and each term's cosine in cache[0], cache[(1 + k) * stride] for
  // factor_vjp_cached (the CPU backward recomputes alpha per lane first: its VJP then needs only the sines).
  static constexpr int kCache = 1 + K;
  SF_HOST_DEVICE SF_FORCE_INLINE T factor_cached(T dx, T dy, T& sig, T* cache, int stride) const {
    sig = sigma(dx, dy);
    T m = T(1);
    SF_UNROLL_TERMS
    for (int k = 0; k < K; ++k) {
      const T c = sf_cos(ph[k] - hx[k] * dx - hy[k] * dy);
      cache[(1 + k) * stride] = c;
      m += amp[k] * c;
    }
    const T e = sf_exp_neg(-sig);
    cache[0] = e;
    const T f = e * m;
    return f > T(0) ? f : T(0);
  }
  SF_HOST_DEVICE SF_FORCE_INLINE void fill_cache(T dx, T dy, T* cache, int stride) const {
    T sig;
    factor_cached(dx, dy, sig, cache, stride);
  }
  SF_HOST_DEVICE SF_FORCE_INLINE void factor_vjp_cached(T dx, T dy, T fac, T v_fac, const T* cache, int cstride,
                                                        T* v_params, int stride, T& v_mx, T& v_my) const {
    env.sigma_vjp(dx, dy, -fac * v_fac, v_params, stride, v_mx, v_my);
    const T v_m = cache[0] * v_fac;
    SF_UNROLL_TERMS
    for (int k = 0; k < K; ++k) {
      const T c = cache[(1 + k) * cstride], s = sf_sin(ph[k] - hx[k] * dx - hy[k] * dy);
      const T v_arg = -v_m * amp[k] * s;
      T* vp = v_params + (3 + 4 * k) * stride;
      vp[0] += -v_arg * dx;
      vp[stride] += -v_arg * dy;
      vp[2 * stride] += v_m * c;
      vp[3 * stride] += v_arg;
      v_mx += -v_arg * hx[k];
      v_my += -v_arg * hy[k];
    }
  }
  // VJP of factor given d(loss)/d(factor): accumulates parameter gradients (strided) and returns mean2d gradients.
  SF_HOST_DEVICE SF_FORCE_INLINE void factor_vjp(T dx, T dy, T fac, T v_fac, T* v_params, int stride, T& v_mx, T& v_my) const {
    const T e = sf_exp_neg(-sigma(dx, dy));
    env.sigma_vjp(dx, dy, -fac * v_fac, v_params, stride, v_mx, v_my);
    const T v_m = e * v_fac;
    SF_UNROLL_TERMS
    for (int k = 0; k < K; ++k) {
      T s, c;
      sf_sincos(ph[k] - hx[k] * dx - hy[k] * dy, s, c);
      const T v_arg = -v_m * amp[k] * s;
      T* vp = v_params + (3 + 4 * k) * stride;
      vp[0] += -v_arg * dx;
      vp[stride] += -v_arg * dy;
      vp[2 * stride] += v_m * c;
      vp[3 * stride] += v_arg;
      v_mx += -v_arg * hx[k];
      v_my += -v_arg * hy[k];
    }
  }
};

}  // namespace sf
