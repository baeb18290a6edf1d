"""Numerical conventions shared by every backend (mirrored in csrc/sf_math.h; keep the two in step)."""

ALPHA_THRESHOLD = 1.0 / 255.0  # a splat contributes to a pixel only when its alpha reaches this
MAX_ALPHA = 0.99  # per-splat alpha clamp
TRANSMITTANCE_EPS = 1e-4  # a pixel stops blending once T (1 - alpha) would fall to this
FRUSTUM_MARGIN = 0.3  # Jacobian clamp widens the frustum by this fraction of the half-fov tangent
EPS_2D = 0.3  # added to the 2D covariance diagonal (a one-pixel low-pass filter)
MIN_DET = 1e-10
MAX_EXTENT_SIGMA = 3.33  # footprint half-extent cap, in standard deviations
GABOR_CUTOFF_EXPONENT = 60.0  # a Gabor term damped by more than exp(-60) (~1e-26) is cut: h = 0, amplitude 0
SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)
MAX_SH_DEGREE = 3
