// splatforge rasterizer math: one header of host/device inline functions shared by the CPU (g++) and CUDA (nvcc)
// backends. Forward functions and their vector-Jacobian products (VJPs); conventions mirror constants.py.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define SF_HOST_DEVICE __host__ __device__
#else
#define SF_HOST_DEVICE
#endif

namespace sf {

using std::ceil;
using std::exp;
using std::floor;
using std::isfinite;
using std::log;
using std::sqrt;

// ---- constants (keep in step with cuda_rasterizer/constants.py) ----
constexpr double ALPHA_THRESHOLD = 1.0 / 255.0;
constexpr double MAX_ALPHA = 0.99;
constexpr double TRANSMITTANCE_EPS = 1e-4;
constexpr double FRUSTUM_MARGIN = 0.3;
constexpr double MIN_DET = 1e-10;
// A Gabor term whose damping exponent 0.5 (g_z^2 s^2 + eps2d |h|^2) exceeds this is cut (h = 0, amplitude 0): its
// amplitude is below exp(-60) anyway, and its frequency, far above a pixel's, would overflow the float cos/sin.
constexpr double GABOR_CUTOFF_EXPONENT = 60.0;
constexpr double MAX_EXTENT_SIGMA = 3.33;
constexpr double SH_C0 = 0.28209479177387814;
constexpr double SH_C1 = 0.4886025119029199;
// SH constants as scalars (constexpr arrays are not usable from device code)
constexpr double SH_C2_0 = 1.0925484305920792, SH_C2_1 = -1.0925484305920792, SH_C2_2 = 0.31539156525252005,
                 SH_C2_3 = -1.0925484305920792, SH_C2_4 = 0.5462742152960396;
constexpr double SH_C3_0 = -0.5900435899266435, SH_C3_1 = 2.890611442640554, SH_C3_2 = -0.4570457994644658,
                 SH_C3_3 = 0.3731763325901154, SH_C3_4 = -0.4570457994644658, SH_C3_5 = 1.445305721320277,
                 SH_C3_6 = -0.5900435899266435;

template <typename T> SF_HOST_DEVICE inline T sf_min(T a, T b) { return a < b ? a : b; }
template <typename T> SF_HOST_DEVICE inline T sf_max(T a, T b) { return a > b ? a : b; }
// c ? a : b, written as a call so that templated math also runs on SIMD lanes (cpu/lanes.h overloads it for masks).
template <typename T> SF_HOST_DEVICE inline T sf_select(bool c, T a, T b) { return c ? a : b; }

// exp(x) for x <= 0. float: branch-free Cody-Waite + degree-7 polynomial (~2 ulp), vectorisable by g++; x is clamped
// at -80 (exp(-80) = 1.8e-35) so that the result, and its product with any opacity >= 1/255, is a normal number:
// subnormal operands cost ~100 cycles each on x86, and most lanes of a tile row lie far outside a small splat (there
// alpha is far below the 1/255 cut, so the clamp never changes an image). double: the library exp (test oracle).
SF_HOST_DEVICE inline float sf_exp_neg(float x) {
#if defined(__CUDA_ARCH__)
  return __expf(x);
#else
  x = x < -80.0f ? -80.0f : x;
  const float t = x * 1.44269504088896341f;  // t <= 0: round to nearest via truncation of a positive value
  const int32_t ni = -static_cast<int32_t>(0.5f - t);
  const float n = static_cast<float>(ni);
  float r = x - n * 0.693359375f;  // ln2 split in two parts (Cody-Waite)
  r = r + n * 2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits = (ni + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(float));
  return p * scale;
#endif
}
SF_HOST_DEVICE inline double sf_exp_neg(double x) { return exp(x); }

// ---- covariance from quaternion (w, x, y, z; normalised here) and scales ----
template <typename T> SF_HOST_DEVICE inline void quat_to_rotmat(const T q_in[4], T R[9], T qn[4], T* inv_norm) {
  T n2 = q_in[0] * q_in[0] + q_in[1] * q_in[1] + q_in[2] * q_in[2] + q_in[3] * q_in[3];
  T inv = T(1) / sf_max(sqrt(n2), T(1e-12));
  T w = q_in[0] * inv, x = q_in[1] * inv, y = q_in[2] * inv, z = q_in[3] * inv;
  qn[0] = w; qn[1] = x; qn[2] = y; qn[3] = z;
  *inv_norm = inv;
  R[0] = 1 - 2 * (y * y + z * z); R[1] = 2 * (x * y - w * z); R[2] = 2 * (x * z + w * y);
  R[3] = 2 * (x * y + w * z); R[4] = 1 - 2 * (x * x + z * z); R[5] = 2 * (y * z - w * x);
  R[6] = 2 * (x * z - w * y); R[7] = 2 * (y * z + w * x); R[8] = 1 - 2 * (x * x + y * y);
}

template <typename T> SF_HOST_DEVICE inline void quat_scale_to_covar(const T q[4], const T s[3], T cov[9]) {
  T R[9], qn[4], inv;
  quat_to_rotmat(q, R, qn, &inv);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      T acc = 0;
      for (int k = 0; k < 3; ++k) acc += R[i * 3 + k] * s[k] * s[k] * R[j * 3 + k];
      cov[i * 3 + j] = acc;
    }
}

// ---- 4D Gaussians sliced at a time (forward only; cuda_rasterizer/slice4d.py holds the torch version) ----
// Space-time point (x, y, z, t) <-> quaternion t + x i + y j + z k; the rotation is p -> q_l p q_r (both wxyz,
// normalised here). R4 is returned on the (x, y, z, t) axes, row-major 4x4.
template <typename T> SF_HOST_DEVICE inline void quat_pair_to_rot4(const T ql_in[4], const T qr_in[4], T R[16]) {
  T a[4], b[4];
  T na = T(1) / sf_max(sqrt(ql_in[0] * ql_in[0] + ql_in[1] * ql_in[1] + ql_in[2] * ql_in[2] + ql_in[3] * ql_in[3]), T(1e-12));
  T nb = T(1) / sf_max(sqrt(qr_in[0] * qr_in[0] + qr_in[1] * qr_in[1] + qr_in[2] * qr_in[2] + qr_in[3] * qr_in[3]), T(1e-12));
  for (int i = 0; i < 4; ++i) { a[i] = ql_in[i] * na; b[i] = qr_in[i] * nb; }
  // L(a) and R(b) on (w, x, y, z) coordinates
  const T L[16] = {a[0], -a[1], -a[2], -a[3], a[1], a[0], -a[3], a[2], a[2], a[3], a[0], -a[1], a[3], -a[2], a[1], a[0]};
  const T Rb[16] = {b[0], -b[1], -b[2], -b[3], b[1], b[0], b[3], -b[2], b[2], -b[3], b[0], b[1], b[3], b[2], -b[1], b[0]};
  const int perm[4] = {1, 2, 3, 0};  // scene axis k is quaternion slot perm[k]
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      T acc = 0;
      for (int k = 0; k < 4; ++k) acc += L[perm[i] * 4 + k] * Rb[k * 4 + perm[j]];
      R[i * 4 + j] = acc;
    }
}

// Time-independent part of the slice: Sigma3 = Sxyz - Sxyz,t Sxyz,t^T / Stt, v = Sxyz,t / Stt, and Stt. The temporal
// filter adds `filter_var` (a variance, >= 0) to Stt: Sigma4 + filter_var e_t e_t^T, a minimum temporal extent.
template <typename T>
SF_HOST_DEVICE inline void slice4_conditional(const T ql[4], const T qr[4], const T s[4], T filter_var, T cov3[9], T vel[3],
                                              T* stt) {
  T R[16], cov4[16];
  quat_pair_to_rot4(ql, qr, R);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      T acc = 0;
      for (int k = 0; k < 4; ++k) acc += R[i * 4 + k] * s[k] * s[k] * R[j * 4 + k];
      cov4[i * 4 + j] = acc;
    }
  const T tt = cov4[15] + filter_var;
  for (int i = 0; i < 3; ++i) vel[i] = cov4[i * 4 + 3] / tt;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) cov3[i * 3 + j] = cov4[i * 4 + j] - cov4[i * 4 + 3] * vel[j];
  for (int i = 0; i < 3; ++i)  // exactly symmetric
    for (int j = i + 1; j < 3; ++j) cov3[i * 3 + j] = cov3[j * 3 + i] = T(0.5) * (cov3[i * 3 + j] + cov3[j * 3 + i]);
  *stt = tt;
}

// The 3D Gaussian at time t: mean3 = mu + v (t - mu_t), opacity(t) = o exp(-e), e = 0.5 (t - mu_t)^2 / Stt.
template <typename T>
SF_HOST_DEVICE inline void slice4(const T mean[3], T mean_t, const T ql[4], const T qr[4], const T s[4], T filter_var,
                                  T opacity, T t, T mean3[3], T cov3[9], T* opacity_t, T* exponent) {
  T vel[3], stt;
  slice4_conditional(ql, qr, s, filter_var, cov3, vel, &stt);
  const T dt = t - mean_t;
  for (int i = 0; i < 3; ++i) mean3[i] = mean[i] + vel[i] * dt;
  *exponent = T(0.5) * dt * dt / stt;
  *opacity_t = opacity * exp(-*exponent);
}

// VJP of slice4 (every output's upstream gradient may be non-symmetric / zero). L(a) and R(b) share the index
// pattern below; their signs differ.
template <typename T>
SF_HOST_DEVICE inline void slice4_vjp(T mean_t, const T ql[4], const T qr[4], const T s[4], T filter_var, T opacity, T t,
                                      const T v_mean3[3], const T v_cov3[9], T v_opac_t, T v_mean[3], T* v_time,
                                      T v_ql[4], T v_qr[4], T v_s[4], T* v_opac) {
  const int idx[16] = {0, 1, 2, 3, 1, 0, 3, 2, 2, 3, 0, 1, 3, 2, 1, 0};
  const T lsg[16] = {1, -1, -1, -1, 1, 1, -1, 1, 1, 1, 1, -1, 1, -1, 1, 1};
  const T rsg[16] = {1, -1, -1, -1, 1, 1, 1, -1, 1, -1, 1, 1, 1, 1, -1, 1};
  const int perm[4] = {1, 2, 3, 0};
  T a[4], b[4];
  const T na = T(1) / sf_max(sqrt(ql[0] * ql[0] + ql[1] * ql[1] + ql[2] * ql[2] + ql[3] * ql[3]), T(1e-12));
  const T nb = T(1) / sf_max(sqrt(qr[0] * qr[0] + qr[1] * qr[1] + qr[2] * qr[2] + qr[3] * qr[3]), T(1e-12));
  for (int i = 0; i < 4; ++i) { a[i] = ql[i] * na; b[i] = qr[i] * nb; }
  T L[16], Rb[16], Q[16], R4[16], cov4[16];
  for (int m = 0; m < 16; ++m) { L[m] = lsg[m] * a[idx[m]]; Rb[m] = rsg[m] * b[idx[m]]; }
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      T acc = 0;
      for (int k = 0; k < 4; ++k) acc += L[i * 4 + k] * Rb[k * 4 + j];
      Q[i * 4 + j] = acc;
    }
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) R4[i * 4 + j] = Q[perm[i] * 4 + perm[j]];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      T acc = 0;
      for (int k = 0; k < 4; ++k) acc += R4[i * 4 + k] * s[k] * s[k] * R4[j * 4 + k];
      cov4[i * 4 + j] = acc;
    }
  const T c = cov4[15] + filter_var, dt = t - mean_t;  // the filter is a constant: d/dSigma4[3][3] is d/dc
  const T bb[3] = {cov4[3], cov4[7], cov4[11]};
  const T vel[3] = {bb[0] / c, bb[1] / c, bb[2] / c};
  const T decay = exp(T(-0.5) * dt * dt / c), ot = opacity * decay;
  // gradient w.r.t. the entries of Sigma4 the slice reads: A = [:3,:3], b = [:3,3], c = [3,3]
  T G[16];
  for (int m = 0; m < 16; ++m) G[m] = 0;
  T gc = v_opac_t * ot * T(0.5) * dt * dt / (c * c), gv_b = 0;
  for (int i = 0; i < 3; ++i) {
    T sym_b = 0;
    for (int j = 0; j < 3; ++j) {
      G[i * 4 + j] = v_cov3[i * 3 + j];
      sym_b += (v_cov3[i * 3 + j] + v_cov3[j * 3 + i]) * bb[j];
      gc += bb[i] * v_cov3[i * 3 + j] * bb[j] / (c * c);
    }
    G[i * 4 + 3] = -sym_b / c + v_mean3[i] * dt / c;
    gv_b += v_mean3[i] * bb[i];
  }
  gc -= gv_b * dt / (c * c);
  G[15] = gc;
  T vt = v_opac_t * ot * dt / c;
  for (int i = 0; i < 3; ++i) { v_mean[i] = v_mean3[i]; vt -= v_mean3[i] * vel[i]; }
  *v_time = vt;
  *v_opac = v_opac_t * decay;
  // Sigma4 = M M^T with M = R4 diag(s): v_M = (G + G^T) M
  T vR4[16];
  for (int j = 0; j < 4; ++j) v_s[j] = 0;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      T vm = 0;
      for (int k = 0; k < 4; ++k) vm += (G[i * 4 + k] + G[k * 4 + i]) * R4[k * 4 + j] * s[j];
      v_s[j] += vm * R4[i * 4 + j];
      vR4[i * 4 + j] = vm * s[j];
    }
  T vQ[16];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) vQ[perm[i] * 4 + perm[j]] = vR4[i * 4 + j];
  T va[4] = {0, 0, 0, 0}, vb[4] = {0, 0, 0, 0};
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      T vl = 0, vr = 0;  // (vQ Rb^T)[i][j] and (L^T vQ)[i][j]
      for (int k = 0; k < 4; ++k) {
        vl += vQ[i * 4 + k] * Rb[j * 4 + k];
        vr += L[k * 4 + i] * vQ[k * 4 + j];
      }
      va[idx[i * 4 + j]] += lsg[i * 4 + j] * vl;
      vb[idx[i * 4 + j]] += rsg[i * 4 + j] * vr;
    }
  const T da = va[0] * a[0] + va[1] * a[1] + va[2] * a[2] + va[3] * a[3];
  const T db = vb[0] * b[0] + vb[1] * b[1] + vb[2] * b[2] + vb[3] * b[3];
  for (int k = 0; k < 4; ++k) { v_ql[k] = (va[k] - da * a[k]) * na; v_qr[k] = (vb[k] - db * b[k]) * nb; }
}

// VJP of quat_to_rotmat: v_R = d loss / d R (row-major) -> d loss / d q_in, through the normalisation (qn, inv are
// quat_to_rotmat's normalised quaternion and 1 / |q_in|).
template <typename T>
SF_HOST_DEVICE inline void quat_to_rotmat_vjp(const T qn[4], T inv, const T v[9], T v_q[4]) {
  T w = qn[0], x = qn[1], y = qn[2], z = qn[3];
  T gw = 2 * (-z * v[1] + y * v[2] + z * v[3] - x * v[5] - y * v[6] + x * v[7]);
  T gx = 2 * (y * v[1] + z * v[2] + y * v[3] - 2 * x * v[4] - w * v[5] + z * v[6] + w * v[7] - 2 * x * v[8]);
  T gy = 2 * (-2 * y * v[0] + x * v[1] + w * v[2] + x * v[3] + z * v[5] - w * v[6] + z * v[7] - 2 * y * v[8]);
  T gz = 2 * (-2 * z * v[0] - w * v[1] + x * v[2] + w * v[3] - 2 * z * v[4] + y * v[5] + x * v[6] + y * v[7]);
  T dot = gw * w + gx * x + gy * y + gz * z;
  v_q[0] = (gw - dot * w) * inv; v_q[1] = (gx - dot * x) * inv;
  v_q[2] = (gy - dot * y) * inv; v_q[3] = (gz - dot * z) * inv;
}

// VJP of cov = M M^T, M = R diag(s); v_cov may be non-symmetric (matches autograd on the dense reference).
template <typename T>
SF_HOST_DEVICE inline void quat_scale_to_covar_vjp(const T q[4], const T s[3], const T v_cov[9], T v_q[4], T v_s[3]) {
  T R[9], qn[4], inv;
  quat_to_rotmat(q, R, qn, &inv);
  T v_M[9];  // (v_cov + v_cov^T) M
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      T acc = 0;
      for (int k = 0; k < 3; ++k) acc += (v_cov[i * 3 + k] + v_cov[k * 3 + i]) * R[k * 3 + j] * s[j];
      v_M[i * 3 + j] = acc;
    }
  T v[9];
  for (int j = 0; j < 3; ++j) {
    T acc = 0;
    for (int i = 0; i < 3; ++i) {
      v[i * 3 + j] = v_M[i * 3 + j] * s[j];
      acc += v_M[i * 3 + j] * R[i * 3 + j];
    }
    v_s[j] = acc;
  }
  quat_to_rotmat_vjp(qn, inv, v, v_q);
}

// ---- camera ----
struct Camera {
  double R[9], t[3];  // world-to-camera rotation (row-major) and translation
  double fx, fy, cx, cy;
  int width, height;
};

template <typename T> SF_HOST_DEVICE inline void world_to_cam(const Camera& cam, const T p[3], T pc[3]) {
  for (int i = 0; i < 3; ++i)
    pc[i] = T(cam.R[i * 3]) * p[0] + T(cam.R[i * 3 + 1]) * p[1] + T(cam.R[i * 3 + 2]) * p[2] + T(cam.t[i]);
}

// ---- EWA projection ----
template <typename T> struct ProjectOut {
  T mean2d[2], conic[3], depth, opacity;
  int32_t radius[2];  // 0, 0 when culled
};

// project_gaussian's values before the radii become integers: the screen half-extents rx, ry (whole pixels, as
// floats). Branch-free: T may be a vector of SIMD lanes (cpu/lanes.h), with lane masks for the conditions.
template <typename T> struct ProjectValues {
  T mean2d[2], conic[3], depth, opacity, rx, ry;
};

// Projects Gaussians (world mean, world covariance) with the clamped Jacobian; returns their validity (a bool, or a
// lane mask for SIMD lanes).
template <typename T>
SF_HOST_DEVICE inline auto project_gaussian_values(const Camera& cam, const T mean[3], const T cov[9], T opacity,
                                                   T near, T far, T eps2d, bool antialiased, ProjectValues<T>& out)
    -> decltype(T(0) < T(0)) {
  T pc[3];
  world_to_cam(cam, mean, pc);
  const T x = pc[0], y = pc[1], z = pc[2];
  out.depth = z;
  const auto in_front = near < z;
  const T zs = sf_select(in_front, z, T(1));
  const T fx = T(cam.fx), fy = T(cam.fy), cx = T(cam.cx), cy = T(cam.cy);
  const T W = T(cam.width), H = T(cam.height);
  const T tan_x = T(0.5) * W / fx, tan_y = T(0.5) * H / fy;
  const T lxp = (W - cx) / fx + T(FRUSTUM_MARGIN) * tan_x, lxn = cx / fx + T(FRUSTUM_MARGIN) * tan_x;
  const T lyp = (H - cy) / fy + T(FRUSTUM_MARGIN) * tan_y, lyn = cy / fy + T(FRUSTUM_MARGIN) * tan_y;
  const T tx = zs * sf_min(sf_max(x / zs, -lxn), lxp);
  const T ty = zs * sf_min(sf_max(y / zs, -lyn), lyp);
  // camera covariance Rc cov Rc^T
  T tmp[9], cc[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      tmp[i * 3 + j] = T(cam.R[i * 3]) * cov[j] + T(cam.R[i * 3 + 1]) * cov[3 + j] + T(cam.R[i * 3 + 2]) * cov[6 + j];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      cc[i * 3 + j] = tmp[i * 3] * T(cam.R[j * 3]) + tmp[i * 3 + 1] * T(cam.R[j * 3 + 1]) + tmp[i * 3 + 2] * T(cam.R[j * 3 + 2]);
  const T J[6] = {fx / zs, T(0), -fx * tx / (zs * zs), T(0), fy / zs, -fy * ty / (zs * zs)};
  T JS[6];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) JS[i * 3 + j] = J[i * 3] * cc[j] + J[i * 3 + 1] * cc[3 + j] + J[i * 3 + 2] * cc[6 + j];
  T a = JS[0] * J[0] + JS[1] * J[1] + JS[2] * J[2];
  T b = JS[0] * J[3] + JS[1] * J[4] + JS[2] * J[5];
  T c = JS[3] * J[3] + JS[4] * J[4] + JS[5] * J[5];
  const T det_orig = a * c - b * b;
  a += eps2d;
  c += eps2d;
  const T det = a * c - b * b;
  const T det_safe = sf_max(det, T(MIN_DET));
  T o = opacity;
  if (antialiased) o = o * sqrt(sf_max(det_orig / det_safe, T(0)));
  out.opacity = o;
  out.conic[0] = c / det_safe;
  out.conic[1] = -b / det_safe;
  out.conic[2] = a / det_safe;
  out.mean2d[0] = fx * x / zs + cx;
  out.mean2d[1] = fy * y / zs + cy;
  T extend = sqrt(T(2) * log(sf_max(o / T(ALPHA_THRESHOLD), T(1))));
  extend = sf_min(extend, T(MAX_EXTENT_SIGMA));
  const T rx = ceil(extend * sqrt(sf_max(a, T(0)))), ry = ceil(extend * sqrt(sf_max(c, T(0))));
  out.rx = rx;
  out.ry = ry;
  const T mx = out.mean2d[0], my = out.mean2d[1];
  const auto on_screen = (T(0) < mx + rx) & (mx - rx < W) & (T(0) < my + ry) & (my - ry < H);
  return in_front & (z < far) & (T(0) < det) & (T(ALPHA_THRESHOLD) <= o) & (T(0) < rx) & (T(0) < ry) & on_screen &
         isfinite(mx) & isfinite(my);
}

// Projects one Gaussian (world mean, world covariance) with the clamped Jacobian; returns validity.
template <typename T>
SF_HOST_DEVICE inline bool project_gaussian(const Camera& cam, const T mean[3], const T cov[9], T opacity, T near,
                                            T far, T eps2d, bool antialiased, ProjectOut<T>& out) {
  ProjectValues<T> v;
  const bool valid = project_gaussian_values(cam, mean, cov, opacity, near, far, eps2d, antialiased, v);
  out.mean2d[0] = v.mean2d[0];
  out.mean2d[1] = v.mean2d[1];
  for (int i = 0; i < 3; ++i) out.conic[i] = v.conic[i];
  out.depth = v.depth;
  out.opacity = v.opacity;
  out.radius[0] = valid ? static_cast<int32_t>(v.rx) : 0;
  out.radius[1] = valid ? static_cast<int32_t>(v.ry) : 0;
  return valid;
}

// VJP of project_gaussian for a valid primitive: upstream grads of mean2d, conic, depth, opacity_out ->
// grads of world mean, world covariance (non-symmetric, as autograd gives) and input opacity.
template <typename T>
SF_HOST_DEVICE inline void project_gaussian_vjp(const Camera& cam, const T mean[3], const T cov[9], T opacity, T eps2d,
                                                bool antialiased, const T v_mean2d[2], const T v_conic[3], T v_depth,
                                                T v_opac_out, T v_mean[3], T v_cov[9], T* v_opacity) {
  T pc[3];
  world_to_cam(cam, mean, pc);
  const T x = pc[0], y = pc[1], z = pc[2];
  const T fx = T(cam.fx), fy = T(cam.fy), cx = T(cam.cx), cy = T(cam.cy);
  const T W = T(cam.width), H = T(cam.height);
  const T tan_x = T(0.5) * W / fx, tan_y = T(0.5) * H / fy;
  const T lxp = (W - cx) / fx + T(FRUSTUM_MARGIN) * tan_x, lxn = cx / fx + T(FRUSTUM_MARGIN) * tan_x;
  const T lyp = (H - cy) / fy + T(FRUSTUM_MARGIN) * tan_y, lyn = cy / fy + T(FRUSTUM_MARGIN) * tan_y;
  const T ux = x / z, uy = y / z;
  // branch-free (sf_select, masks combined with |): T may be a vector of SIMD lanes (cpu/lanes.h)
  const auto clamp_x = (ux < -lxn) | (ux > lxp), clamp_y = (uy < -lyn) | (uy > lyp);
  const T ux_c = sf_min(sf_max(ux, -lxn), lxp), uy_c = sf_min(sf_max(uy, -lyn), lyp);
  const T tx = z * ux_c, ty = z * uy_c;
  T tmp[9], cc[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      tmp[i * 3 + j] = T(cam.R[i * 3]) * cov[j] + T(cam.R[i * 3 + 1]) * cov[3 + j] + T(cam.R[i * 3 + 2]) * cov[6 + j];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      cc[i * 3 + j] = tmp[i * 3] * T(cam.R[j * 3]) + tmp[i * 3 + 1] * T(cam.R[j * 3 + 1]) + tmp[i * 3 + 2] * T(cam.R[j * 3 + 2]);
  const T J[6] = {fx / z, T(0), -fx * tx / (z * z), T(0), fy / z, -fy * ty / (z * z)};
  T JS[6];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) JS[i * 3 + j] = J[i * 3] * cc[j] + J[i * 3 + 1] * cc[3 + j] + J[i * 3 + 2] * cc[6 + j];
  const T a0 = JS[0] * J[0] + JS[1] * J[1] + JS[2] * J[2];
  const T b = JS[0] * J[3] + JS[1] * J[4] + JS[2] * J[5];
  const T c0 = JS[3] * J[3] + JS[4] * J[4] + JS[5] * J[5];
  const T a = a0 + eps2d, c = c0 + eps2d;
  const T det_orig = a0 * c0 - b * b;
  const T det = a * c - b * b;
  const auto det_clamped = det < T(MIN_DET);
  const T det_s = sf_select(det_clamped, T(MIN_DET), det);
  // conic = (c, -b, a) / det
  T v_a = T(0), v_b = T(0), v_c = T(0), v_det = T(0);
  v_c += v_conic[0] / det_s;
  v_b += -v_conic[1] / det_s;
  v_a += v_conic[2] / det_s;
  v_det += -(v_conic[0] * c - v_conic[1] * b + v_conic[2] * a) / (det_s * det_s);
  T o_in = opacity;
  *v_opacity = v_opac_out;
  if (antialiased) {
    const T ratio = det_orig / det_s;
    const auto positive = ratio > T(0);  // else the opacity factor is 0 and so are its gradients
    const T sq = sqrt(sf_select(positive, ratio, T(1)));
    *v_opacity = sf_select(positive, v_opac_out * sq, T(0));
    const T v_ratio = sf_select(positive, v_opac_out * o_in * T(0.5) / sq, T(0));
    // ratio = det_orig / det_s
    const T v_do = v_ratio / det_s;
    v_det += -v_ratio * det_orig / (det_s * det_s);
    v_a += v_do * c0;
    v_c += v_do * a0;
    v_b += -T(2) * b * v_do;
  }
  const T v_det_used = sf_select(det_clamped, T(0), v_det);  // a clamped determinant is a constant
  v_a += v_det_used * c;
  v_c += v_det_used * a;
  v_b += -T(2) * b * v_det_used;
  // cov2d = J cc J^T; only the (0,0), (0,1), (1,1) entries are read: V = [[v_a, v_b], [0, v_c]].
  const T V[4] = {v_a, v_b, T(0), v_c};
  // v_cc = J^T V J (3x3)
  T VJ[6];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) VJ[i * 3 + j] = V[i * 2] * J[j] + V[i * 2 + 1] * J[3 + j];
  T v_cc[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) v_cc[i * 3 + j] = J[i] * VJ[j] + J[3 + i] * VJ[3 + j];
  // v_J = (V + V^T) J cc
  const T Vs[4] = {T(2) * v_a, v_b, v_b, T(2) * v_c};
  T v_J[6];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) v_J[i * 3 + j] = Vs[i * 2] * JS[j] + Vs[i * 2 + 1] * JS[3 + j];
  // world covariance: v_cov = Rc^T v_cc Rc
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      T acc = T(0);
      for (int k = 0; k < 3; ++k)
        for (int l = 0; l < 3; ++l) acc += T(cam.R[k * 3 + i]) * v_cc[k * 3 + l] * T(cam.R[l * 3 + j]);
      v_cov[i * 3 + j] = acc;
    }
  // camera-space mean
  T v_x = T(0), v_y = T(0), v_z = v_depth;
  const T z2 = z * z, z3 = z2 * z;
  v_z += -fx / z2 * v_J[0] - fy / z2 * v_J[4] + T(2) * fx * tx / z3 * v_J[2] + T(2) * fy * ty / z3 * v_J[5];
  const T v_tx = -fx / z2 * v_J[2], v_ty = -fy / z2 * v_J[5];
  v_z += sf_select(clamp_x, v_tx * ux_c, T(0));  // a clamped tx depends on z only
  v_x += sf_select(clamp_x, T(0), v_tx);
  v_z += sf_select(clamp_y, v_ty * uy_c, T(0));
  v_y += sf_select(clamp_y, T(0), v_ty);
  v_x += fx / z * v_mean2d[0];
  v_y += fy / z * v_mean2d[1];
  v_z += -fx * x / z2 * v_mean2d[0] - fy * y / z2 * v_mean2d[1];
  for (int i = 0; i < 3; ++i) v_mean[i] = T(cam.R[i]) * v_x + T(cam.R[3 + i]) * v_y + T(cam.R[6 + i]) * v_z;
}

// ---- spherical harmonics (degree 0..3), dir normalised here ----
template <typename T> SF_HOST_DEVICE inline int sh_basis(int degree, const T dir[3], T b[16]) {
  b[0] = T(SH_C0);
  if (degree == 0) return 1;
  T n = sqrt(dir[0] * dir[0] + dir[1] * dir[1] + dir[2] * dir[2]);
  T inv = T(1) / sf_max(n, T(1e-12));
  T x = dir[0] * inv, y = dir[1] * inv, z = dir[2] * inv;
  b[1] = -T(SH_C1) * y; b[2] = T(SH_C1) * z; b[3] = -T(SH_C1) * x;
  if (degree == 1) return 4;
  T xx = x * x, yy = y * y, zz = z * z, xy = x * y, yz = y * z, xz = x * z;
  b[4] = T(SH_C2_0) * xy; b[5] = T(SH_C2_1) * yz; b[6] = T(SH_C2_2) * (2 * zz - xx - yy);
  b[7] = T(SH_C2_3) * xz; b[8] = T(SH_C2_4) * (xx - yy);
  if (degree == 2) return 9;
  b[9] = T(SH_C3_0) * y * (3 * xx - yy); b[10] = T(SH_C3_1) * xy * z; b[11] = T(SH_C3_2) * y * (4 * zz - xx - yy);
  b[12] = T(SH_C3_3) * z * (2 * zz - 3 * xx - 3 * yy); b[13] = T(SH_C3_4) * x * (4 * zz - xx - yy);
  b[14] = T(SH_C3_5) * z * (xx - yy); b[15] = T(SH_C3_6) * x * (xx - 3 * yy);
  return 16;
}

// out[c] = sum_k b_k coeffs[k, c]; coeffs row stride = channels.
template <typename T>
SF_HOST_DEVICE inline void eval_sh(int degree, const T dir[3], const T* coeffs, int channels, T* out) {
  T b[16];
  int nb = sh_basis(degree, dir, b);
  for (int ch = 0; ch < channels; ++ch) {
    T acc = 0;
    for (int k = 0; k < nb; ++k) acc += b[k] * coeffs[k * channels + ch];
    out[ch] = acc;
  }
}

// VJP w.r.t. the coefficients (directions are treated as constants: the pipeline detaches them).
template <typename T>
SF_HOST_DEVICE inline void eval_sh_vjp(int degree, const T dir[3], const T* v_out, int channels, T* v_coeffs) {
  T b[16];
  int nb = sh_basis(degree, dir, b);
  for (int k = 0; k < nb; ++k)
    for (int ch = 0; ch < channels; ++ch) v_coeffs[k * channels + ch] = b[k] * v_out[ch];
}

// ---- footprints: sigma(d) of a primitive at offset d = mean2d - pixel, and its VJP ----
// A primitive type provides a Footprint with per-primitive parameters, `sigma` and `sigma_vjp`; the blend kernels
// are templated on it. The 3D Gabor footprint (gabor_math.h, included below) adds its wave terms as a second struct,
// not a second pipeline. Each provides sigma (envelope), factor (what opacity multiplies), peak and their VJPs.
template <typename T> struct GaussianFootprint {
  static constexpr int kParams = 3;  // per-primitive footprint parameters (the conic)
  T a, b, c;  // conic (upper triangle of the inverse 2D covariance)
  // Conservative test: can any point of the row at offset dy, with mean2d - pixel x offsets dx in [dx_lo, dx_hi],
  // reach sigma <= level? (level = ln(255 o): beyond it alpha < 1/255.) Used only to skip work, with a margin.
  // `slope` is row_slope(), computed once per primitive so that the per-row test has no division.
  SF_HOST_DEVICE inline T row_slope() const { return -b / a; }
  SF_HOST_DEVICE inline bool row_may_hit(T dy, T level, T slope, T dx_lo, T dx_hi) const {
    const T lv = level * T(1.01) + T(0.01);
    // sigma(dx) = 0.5 a dx^2 + b dy dx + 0.5 c dy^2 is convex in dx (a > 0): minimum at dx* = -b dy / a
    const T dxs = slope * dy;
    const T dxc = dxs < dx_lo ? dx_lo : (dxs > dx_hi ? dx_hi : dxs);
    return sigma(dxc, dy) <= lv;
  }
  SF_HOST_DEVICE static inline GaussianFootprint load(const T* params, int64_t i) {
    return GaussianFootprint{params[3 * i], params[3 * i + 1], params[3 * i + 2]};
  }
  SF_HOST_DEVICE inline T sigma(T dx, T dy) const { return T(0.5) * (a * dx * dx + c * dy * dy) + b * dx * dy; }
  // What opacity multiplies at offset (dx, dy), exp(-sigma) times the modulation (none here), and its maximum.
  SF_HOST_DEVICE inline T peak() const { return T(1); }
  SF_HOST_DEVICE inline T factor(T dx, T dy, T& sig) const {
    sig = sigma(dx, dy);
    return sf_exp_neg(-sig);
  }
  // Accumulates d(sigma)/d(params) * v_sigma into v_params[j * stride] and returns d(sigma)/d(mean2d) * v_sigma
  // in v_mx, v_my (strided output lets the CPU kernel keep one lane array per parameter).
  SF_HOST_DEVICE inline void sigma_vjp(T dx, T dy, T v_sigma, T* v_params, int stride, T& v_mx, T& v_my) const {
    v_params[0] += T(0.5) * v_sigma * dx * dx;
    v_params[stride] += v_sigma * dx * dy;
    v_params[2 * stride] += T(0.5) * v_sigma * dy * dy;
    v_mx = v_sigma * (a * dx + b * dy);
    v_my = v_sigma * (b * dx + c * dy);
  }
  // VJP of factor() given d(loss)/d(factor) (`fac` is factor's value): d(factor)/d(sigma) = -factor.
  SF_HOST_DEVICE inline void factor_vjp(T dx, T dy, T fac, T v_fac, T* v_params, int stride, T& v_mx, T& v_my) const {
    sigma_vjp(dx, dy, -fac * v_fac, v_params, stride, v_mx, v_my);
  }
  // The cached variants (see GaborFootprint): nothing to keep here.
  static constexpr int kCache = 0;
  SF_HOST_DEVICE inline T factor_cached(T dx, T dy, T& sig, T*, int) const { return factor(dx, dy, sig); }
  SF_HOST_DEVICE inline void fill_cache(T, T, T*, int) const {}
  SF_HOST_DEVICE inline void factor_vjp_cached(T dx, T dy, T fac, T v_fac, const T*, int, T* v_params, int stride,
                                               T& v_mx, T& v_my) const {
    factor_vjp(dx, dy, fac, v_fac, v_params, stride, v_mx, v_my);
  }
};

// ---- per-pixel blend step ----
// alpha of a primitive at a pixel, 0 when it does not contribute (sigma < 0 or alpha < 1/255).
// Written as a chain of single-comparison selects so that g++ vectorises it.
template <typename T> SF_HOST_DEVICE inline T blend_alpha(T opacity, T sigma) {
  const T raw = opacity * sf_exp_neg(-sigma);
  T alpha = raw < T(MAX_ALPHA) ? raw : T(MAX_ALPHA);
  alpha = sigma >= T(0) ? alpha : T(0);
  return alpha >= T(ALPHA_THRESHOLD) ? alpha : T(0);
}

// alpha of a primitive of any footprint type at offset (dx, dy): min(0.99, opacity * factor), 0 when sigma < 0 or
// alpha < 1/255; `fac` receives the factor (the backward's VJP starts from it). For Gaussians it is blend_alpha.
template <typename T, typename FP> SF_HOST_DEVICE inline T footprint_alpha(const FP& fp, T opacity, T dx, T dy, T& fac) {
  T sig;
  fac = fp.factor(dx, dy, sig);
  const T raw = opacity * fac;
  T alpha = raw < T(MAX_ALPHA) ? raw : T(MAX_ALPHA);
  alpha = sig >= T(0) ? alpha : T(0);
  return alpha >= T(ALPHA_THRESHOLD) ? alpha : T(0);
}

// footprint_alpha that leaves the footprint's per-lane values in `cache` (stride `cstride`) for factor_vjp_cached.
template <typename T, typename FP>
SF_HOST_DEVICE inline T footprint_alpha_cached(const FP& fp, T opacity, T dx, T dy, T& fac, T* cache, int cstride) {
  T sig;
  fac = fp.factor_cached(dx, dy, sig, cache, cstride);
  const T raw = opacity * fac;
  T alpha = raw < T(MAX_ALPHA) ? raw : T(MAX_ALPHA);
  alpha = sig >= T(0) ? alpha : T(0);
  return alpha >= T(ALPHA_THRESHOLD) ? alpha : T(0);
}

// One front-to-back step: returns false (and leaves T unchanged) when the pixel must stop before this primitive.
template <typename T> SF_HOST_DEVICE inline bool blend_step(T alpha, T& trans, T& weight) {
  const T next = trans * (T(1) - alpha);
  if (next <= T(TRANSMITTANCE_EPS)) return false;
  weight = alpha * trans;
  trans = next;
  return true;
}

// Backward of one step, walking back to front. Given T after this primitive (trans_after), recovers T before it,
// and returns v_alpha from the colour/alpha/depth upstream grads. `behind[c]` is the sum of c_j w_j of later
// contributors (updated here). Channels include the depth channel as the last one if the caller appends it.
template <typename T>
SF_HOST_DEVICE inline T blend_step_vjp(T alpha, T& trans, const T* color, const T* v_color, T* behind, int channels,
                                       T trans_final, T v_alpha_out, T bg_dot_v) {
  const T ra = T(1) / sf_max(T(1e-6), T(1) - alpha);
  trans = trans * ra;  // T before this primitive
  const T w = alpha * trans;
  T v_alpha = 0;
  for (int ch = 0; ch < channels; ++ch) {
    v_alpha += (color[ch] * trans - behind[ch] * ra) * v_color[ch];
    behind[ch] += color[ch] * w;
  }
  v_alpha += trans_final * ra * (v_alpha_out - bg_dot_v);
  return v_alpha;
}

}  // namespace sf

#include "gabor_math.h"  // the 3D Gabor projection and footprint pair (part of this header)
