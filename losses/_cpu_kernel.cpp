// The asymmetric family's closed form as one AVX-512 loop: the compiled path on CPU.
//
// Built and loaded by losses/_cpu_fused.py, once per set of coefficients: every MLLB_* macro
// below comes from its -D flags (so each loss specializes its own loop and the branches that
// do not apply vanish, as Triton's constexpr do in losses/_triton.py). The arithmetic is
// _fused_dense's float32 route (losses/_kernel.py) line for line, in the order of
// losses/_triton.py's _poly_kernel; the deviations are listed in losses/_cpu_fused.py.

#include <immintrin.h>

#include <cstdint>

namespace {

using V = __m512;
using Mask = __mmask16;

constexpr float SCALE = MLLB_SCALE;
constexpr float M = MLLB_M;                // probability margin (clip)
constexpr float BIG = MLLB_BIG;            // log((1 + m) / m)
constexpr float C_M = MLLB_C_M;            // m / (1 + m)
constexpr float LOG1P_M = MLLB_LOG1P_M;
constexpr float GP = MLLB_GP;              // gamma+
constexpr int GP1_INT = MLLB_GP1_INT;      // gamma+ - 1 as an integer exponent
constexpr float GN = MLLB_GN;              // gamma-
constexpr int GN1_INT = MLLB_GN1_INT;
constexpr float A1 = MLLB_A1, A2 = MLLB_A2, B1 = MLLB_B1, B0 = MLLB_B0;
constexpr float SP = MLLB_SP, SN = MLLB_SN;
constexpr float CAP = MLLB_CAP;            // -log eps (0: no cap)
constexpr bool CAP_NEG = MLLB_CAP_NEG;
constexpr bool DETACH = MLLB_DETACH;
// _kernel._ATANH_P
constexpr float P0 = MLLB_P0, P1 = MLLB_P1, P2 = MLLB_P2, P3 = MLLB_P3;

inline V c(float x) { return _mm512_set1_ps(x); }
inline V where(Mask k, V a, V b) { return _mm512_mask_blend_ps(k, b, a); }
// max(lo, x) / min(hi, x) that keep a NaN x NaN (the instruction returns its second operand
// when either is NaN), as torch's relu and clamp do
inline V max_nan(V lo, V x) { return _mm512_max_ps(lo, x); }
inline V min_nan(V hi, V x) { return _mm512_min_ps(hi, x); }

// exp(x) for x <= 0 (or NaN): Cephes' expf (range reduction by ln 2 in two parts, degree-5
// polynomial), scaled by 2^n with vscalefps, which rounds to the subnormals and to 0 as
// exp does. x below -104 is taken as -104: exp(-104) is already below half the smallest
// subnormal float32, so the result is 0 as exp's would be (and -inf takes no NaN route).
inline V exp_nonpositive(V x) {
  x = max_nan(c(-104.0f), x);
  V n = _mm512_roundscale_ps(x * 1.44269504088896341f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  V r = _mm512_fnmadd_ps(n, c(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, c(-2.12194440e-4f), r);
  V p = c(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, c(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, c(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, c(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, c(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, c(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p * r, r, r + 1.0f);
  return _mm512_scalef_ps(p, n);
}

// log1p(u) from s = u / (2 + u), u in [0, 1]: 2 atanh(s) (_kernel._log1p_from_s)
inline V log1p_from_s(V s) {
  V t = s * s;
  V poly = ((t * P3 + P2) * t + P1) * t + P0;
  V s2 = s + s;
  return s2 + s2 * t * poly;
}

// x ** G for the integer exponent G (_kernel._int_pow)
template <int G>
inline V power(V x) {
  V out = c(1.0f);
  for (int i = 0; i < G; ++i) out = out * x;
  return out;
}

// (base^G f, its derivative) (_kernel._focused); G1: G - 1
template <int G1>
inline void focused(V f, V d_f, V base, V d_base, float g, V& loss, V& grad) {
  if (g == 0.0f) {
    loss = f;
    grad = d_f;
    return;
  }
  V w_low = power<G1>(base);
  V w = w_low * base;
  loss = w * f;
  grad = w * d_f;
  if (!DETACH) grad = grad + g * w_low * d_base * f;
}

// -log x capped at -log eps = CAP, with a zero derivative where capped (_kernel._eps_cap)
inline void eps_cap(V& f, V& d_f) {
  Mask capped = _mm512_cmp_ps_mask(f, c(CAP), _CMP_GT_OQ);
  f = min_nan(c(CAP), f);
  d_f = _mm512_mask_blend_ps(capped, d_f, c(0.0f));
}

// loss and gradient (before the reduction's factor) of 16 elements
inline void body(V z, V y, V& loss, V& grad) {
  const V zero = c(0.0f);
  if (SCALE != 1.0f) z = z * SCALE;
  V abs_z = _mm512_abs_ps(z);
  V e = exp_nonpositive(-abs_z);
  V one_e = e + 1.0f;
  Mask nonneg = _mm512_cmp_ps_mask(z, zero, _CMP_GE_OQ);
  V inv, soft, rec = zero, log1p_shifted = zero;
  if (M > 0.0f) {
    // 1 - p_m = q + m = n_r / (1 + e) where p > m; the three quotients from one division
    V n_r = where(nonneg, e, c(1.0f)) + M * one_e;
    Mask below = _mm512_cmp_ps_mask(z, c(BIG), _CMP_LT_OQ);
    Mask neg = _mm512_cmp_ps_mask(z, zero, _CMP_LT_OQ);
    V a = where(neg, e * C_M, where(below, c(C_M), e));
    V b = where(below, where(neg, c(1.0f), e), c(C_M));
    V x0 = one_e * n_r;
    V x1 = e + 2.0f;
    V x2 = a + (b + b);
    V p1 = x0 * x1;
    V rest = c(1.0f) / (p1 * x2);
    V r_ab = rest * p1;
    rest = rest * x2;
    V r_two_e = rest * x0;
    rec = rest * x1;
    inv = n_r * rec;
    soft = log1p_from_s(e * r_two_e);
    log1p_shifted = log1p_from_s(a * r_ab);
  } else {
    V two_e = e + 2.0f;
    V rest = c(1.0f) / (one_e * two_e);
    V r_two_e = rest * one_e;
    inv = rest * two_e;
    soft = log1p_from_s(e * r_two_e);
  }
  V e_inv = e * inv;
  V p = where(nonneg, inv, e_inv);
  V q = where(nonneg, e_inv, inv);
  V neg_log_p = soft + max_nan(zero, -z);
  V neg_log_q = soft + max_nan(zero, z);
  V pq = p * q;
  // positive branch: f+ = -log p + a1 q + a2 q^2, weight q^g+
  V f_pos = neg_log_p;
  V d_f_pos = -q;
  if (CAP > 0.0f) eps_cap(f_pos, d_f_pos);
  if (A1 != 0.0f || A2 != 0.0f) {
    f_pos = f_pos + q * (A1 + A2 * q);
    d_f_pos = d_f_pos - pq * (A1 + 2.0f * A2 * q);
  }
  V loss_pos, grad_pos;
  focused<GP1_INT>(f_pos, d_f_pos, q, -pq, GP, loss_pos, grad_pos);
  // negative branch: f- = -log(1 - p_m) + b1 p_m + b0, weight p_m^g-
  V pm, f_neg, d_pm, d_f_neg;
  if (M > 0.0f) {
    pm = max_nan(zero, p - M);
    V shifted = min_nan(c(BIG), max_nan(zero, z)) + soft - log1p_shifted - LOG1P_M;
    if (GN > 1.0f) {  // where p <= m the weight and its derivative vanish: no masks
      d_pm = pq;
      d_f_neg = e * rec;
      f_neg = shifted;
    } else {
      Mask above = _mm512_cmp_ps_mask(p, c(M), _CMP_GT_OQ);
      d_pm = _mm512_maskz_mov_ps(above, pq);
      f_neg = _mm512_maskz_mov_ps(above, shifted);
      d_f_neg = _mm512_maskz_mov_ps(above, e * rec);
    }
  } else {
    pm = p;
    f_neg = neg_log_q;
    d_pm = pq;
    d_f_neg = p;
  }
  if (CAP_NEG) eps_cap(f_neg, d_f_neg);
  if (B1 != 0.0f) {
    f_neg = f_neg + B1 * pm;
    d_f_neg = d_f_neg + B1 * d_pm;
  }
  if (B0 != 0.0f) f_neg = f_neg + B0;
  V loss_neg, grad_neg;
  focused<GN1_INT>(f_neg, d_f_neg, pm, d_pm, GN, loss_neg, grad_neg);
  loss = SN * loss_neg + y * (SP * loss_pos - SN * loss_neg);
  grad = SN * grad_neg + y * (SP * grad_pos - SN * grad_neg);
}

constexpr int64_t BLOCK = 256;  // elements summed in float32 before the double accumulator

}  // namespace

// Writes grad[i] = factor * dL/dz_i for n contiguous float32 logits z and targets y; returns
// the sum of the per-element losses (float32 per block of BLOCK elements, then double).
extern "C" double mllb_poly_value_and_grad(const float* z, const float* y, float* grad,
                                           int64_t n, float factor, int threads) {
  const int64_t blocks = (n + BLOCK - 1) / BLOCK;
  double total = 0.0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : total)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t end = blk * BLOCK + BLOCK < n ? blk * BLOCK + BLOCK : n;
    V acc = c(0.0f);
    int64_t i = blk * BLOCK;
    for (; i + 16 <= end; i += 16) {
      V loss, g;
      body(_mm512_loadu_ps(z + i), _mm512_loadu_ps(y + i), loss, g);
      _mm512_storeu_ps(grad + i, g * factor);
      acc = acc + loss;
    }
    if (i < end) {  // the last elements: masked loads and stores
      const Mask k = Mask((1u << (end - i)) - 1u);
      V loss, g;
      body(_mm512_maskz_loadu_ps(k, z + i), _mm512_maskz_loadu_ps(k, y + i), loss, g);
      _mm512_mask_storeu_ps(grad + i, k, g * factor);
      acc = _mm512_mask_add_ps(acc, k, acc, loss);
    }
    total += _mm512_reduce_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(acc))) +
             _mm512_reduce_add_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(acc, 1)));
  }
  return total;
}
