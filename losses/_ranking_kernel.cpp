// The two-way loss's value and closed-form gradient for float32 on the CPU, in a few passes:
// losses/ranking.py builds and loads this file (mllb_core/native.py) and documents the
// arithmetic and its deviations from the torch composition it replaces.
//
// x [n, c] logits, posf [n, c] 1.0 on the positives and 0.0 elsewhere, both row-major.
// u = -x / tp on the positives and x / tn on the negatives. In each direction (the rows: over
// the classes of a sample; the columns: over the samples of a class), per line L:
//   top = max u, e = exp(max(u - top, -87)), s_a = sum of e on the positives, s_b on the
//   negatives, h = (tn + tp) top + tn log s_b + tp log s_a,
//   loss += softplus(h) / count (count: the lines with a positive, at least 1),
//   grad += sigmoid(h) / count * (e / s_b on the negatives, -e / s_a on the positives).
// A line whose smaller sum is in (0, e^-50) is flagged and left out (value and gradient): the
// caller recomputes it with a shift per subset. Sums are in double; every sum is taken in a
// fixed order (rows: one thread each; columns: blocks of kBlock rows merged in order), so the
// result does not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <immintrin.h>
#include <vector>

namespace {

constexpr float kExpFloor = -87.0f;
constexpr int64_t kBlock = 32;  // rows per partial column sum (a unit of the threads' work)

// exp(x) for x in [-87, 0] (Cephes' expf: two-part ln 2 reduction, degree-5 polynomial, about
// 1 ulp), written so that the compiler vectorizes the loops that call it: n = x / ln 2 rounded
// to the nearest integer by adding and subtracting 1.5 * 2^23 (plain arithmetic, in place of
// Cephes' floor(x / ln 2 + 0.5)), |r| <= ln 2 / 2 as with it
inline float exp_neg(float x) {
    const float fx = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - fx * 0.693359375f;
    r = r + fx * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = (static_cast<int32_t>(fx) + 127) << 23;  // 2^fx, fx >= -126
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// u = x * (k_pos on a positive, k_neg elsewhere) into out [c]; returns max u. AVX2 by hand:
// the compiler does not vectorize a float maximum without -ffast-math's assumptions
inline float scaled_max(const float* x, const float* p, float* out, int64_t c, float k_pos,
                        float k_neg) {
    const __m256 kp = _mm256_set1_ps(k_pos), kn = _mm256_set1_ps(k_neg);
    const __m256 zero = _mm256_setzero_ps();
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 8 <= c; j += 8) {
        const __m256 k = _mm256_blendv_ps(kn, kp, _mm256_cmp_ps(_mm256_loadu_ps(p + j), zero,
                                                                _CMP_NEQ_UQ));
        const __m256 u = _mm256_mul_ps(_mm256_loadu_ps(x + j), k);
        _mm256_storeu_ps(out + j, u);
        vmax = _mm256_max_ps(vmax, u);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, vmax);
    float top = lanes[0];
    for (int k = 1; k < 8; ++k) top = std::max(top, lanes[k]);
    for (; j < c; ++j) {
        out[j] = x[j] * (p[j] != 0.0f ? k_pos : k_neg);
        top = std::max(top, out[j]);
    }
    return top;
}

// sums over j of p e (the positives') and (1 - p) e = e - p e (exact for p in {0, 1}), in
// double, in a fixed order
inline void masked_sums(const float* p, const float* e, int64_t c, double* sa, double* sb) {
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, b0 = a0, b1 = a0;
    int64_t j = 0;
    for (; j + 8 <= c; j += 8) {
        const __m256 ev = _mm256_loadu_ps(e + j);
        const __m256 pe = _mm256_mul_ps(_mm256_loadu_ps(p + j), ev);
        const __m256 ne = _mm256_sub_ps(ev, pe);
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(pe)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(pe, 1)));
        b0 = _mm256_add_pd(b0, _mm256_cvtps_pd(_mm256_castps256_ps128(ne)));
        b1 = _mm256_add_pd(b1, _mm256_cvtps_pd(_mm256_extractf128_ps(ne, 1)));
    }
    double la[4], lb[4];
    _mm256_storeu_pd(la, _mm256_add_pd(a0, a1));
    _mm256_storeu_pd(lb, _mm256_add_pd(b0, b1));
    double ta = (la[0] + la[1]) + (la[2] + la[3]), tb = (lb[0] + lb[1]) + (lb[2] + lb[3]);
    for (; j < c; ++j) {
        const float pe = p[j] * e[j];
        ta += pe;
        tb += e[j] - pe;
    }
    *sa = ta;
    *sb = tb;
}

inline double softplus(double h) {
    return h > 0.0 ? h + std::log1p(std::exp(-h)) : std::log1p(std::exp(h));
}

inline double sigmoid(double h) { return 1.0 / (1.0 + std::exp(-h)); }

// One direction's lines from their maxima and sums [m]: flags the lines to recompute (a sum in
// (0, e^-50)) in bad [m], writes each line's gradient factors a = -sigmoid(h) / (count s_a)
// (positives) and b = sigmoid(h) / (count s_b) (negatives) [m] (0 for a flagged line, and in
// place of 0 / 0 on an empty subset), sets *count (the lines with a positive, at least 1) and
// returns the sum of softplus(h) over the unflagged lines divided by *count. h = (tn + tp) top
// + tn log s_b + tp log s_a, -inf for an empty subset (softplus and sigmoid 0 there).
double finish_lines(int64_t m, const float* top, const double* sa, const double* sb, double tp,
                    double tn, double min_shared, uint8_t* bad, float* a, float* b,
                    int64_t* count) {
    std::vector<double> h(m);
    int64_t valid = 0;
    for (int64_t i = 0; i < m; ++i) {
        const double low = std::min(sa[i], sb[i]);
        bad[i] = low > 0.0 && low < min_shared;
        valid += sa[i] > 0.0;
        h[i] = (tn + tp) * top[i] + tn * std::log(sb[i]) + tp * std::log(sa[i]);
    }
    *count = std::max<int64_t>(valid, 1);
    const double n = static_cast<double>(*count);
    double loss = 0.0;
    for (int64_t i = 0; i < m; ++i) {
        if (!bad[i]) loss += softplus(h[i]);
        const double coef = bad[i] ? 0.0 : sigmoid(h[i]) / n;
        a[i] = sa[i] > 0.0 ? static_cast<float>(-coef / sa[i]) : 0.0f;
        b[i] = sb[i] > 0.0 ? static_cast<float>(coef / sb[i]) : 0.0f;
    }
    return loss / n;
}

}  // namespace

extern "C" {

// Returns the loss without the flagged lines; grad [n, c] (nullptr: value only) receives the
// gradient without them; work [n, c] is scratch (unused without grad); bad_rows [n] and
// bad_cols [c] flag the lines to recompute; counts[0], counts[1]: the rows and the columns
// with a positive (at least 1), the divisors the caller's recomputation needs.
double mllb_two_way(const float* x, const float* posf, int64_t n, int64_t c, float tp, float tn,
                    double min_shared, float* grad, float* work, uint8_t* bad_rows,
                    uint8_t* bad_cols, int64_t* counts, int threads) {
    const float k_pos = -1.0f / tp, k_neg = 1.0f / tn;
    // --- the rows: one thread a row; e goes to grad (or a row buffer), scaled in place later
    std::vector<float> top_r(n);
    std::vector<double> sa_r(n), sb_r(n);
#pragma omp parallel num_threads(threads)
    {
        std::vector<float> row(grad ? 0 : c);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < n; ++i) {
            const float* xi = x + i * c;
            const float* pi = posf + i * c;
            float* ei = grad ? grad + i * c : row.data();
            const float top = scaled_max(xi, pi, ei, c, k_pos, k_neg);
            for (int64_t j = 0; j < c; ++j) ei[j] = exp_neg(std::max(ei[j] - top, kExpFloor));
            double sa, sb;
            masked_sums(pi, ei, c, &sa, &sb);
            top_r[i] = top;
            sa_r[i] = sa;
            sb_r[i] = sb;
        }
    }
    std::vector<float> a_r(n), b_r(n);
    const double loss_r = finish_lines(n, top_r.data(), sa_r.data(), sb_r.data(), tp, tn,
                                       min_shared, bad_rows, a_r.data(), b_r.data(), &counts[0]);
    if (grad) {
#pragma omp parallel for schedule(static) num_threads(threads)
        for (int64_t i = 0; i < n; ++i) {
            float* gi = grad + i * c;
            const float* pi = posf + i * c;
            for (int64_t j = 0; j < c; ++j) gi[j] *= pi[j] != 0.0f ? a_r[i] : b_r[i];
        }
    }
    // --- the columns: maxima, then sums per block of rows (merged in block order)
    const int64_t blocks = (n + kBlock - 1) / kBlock;
    std::vector<float> top_b(blocks * c, -INFINITY);
    std::vector<double> sa_b(blocks * c, 0.0), sb_b(blocks * c, 0.0);
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t b = 0; b < blocks; ++b) {
        float* t = top_b.data() + b * c;
        for (int64_t i = b * kBlock; i < std::min(n, (b + 1) * kBlock); ++i) {
            const float* xi = x + i * c;
            const float* pi = posf + i * c;
            for (int64_t j = 0; j < c; ++j)
                t[j] = std::max(t[j], xi[j] * (pi[j] != 0.0f ? k_pos : k_neg));
        }
    }
    std::vector<float> top_c(c, -INFINITY);
    for (int64_t b = 0; b < blocks; ++b)
        for (int64_t j = 0; j < c; ++j) top_c[j] = std::max(top_c[j], top_b[b * c + j]);
#pragma omp parallel num_threads(threads)
    {
    std::vector<float> row(grad ? 0 : c);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
        double* sa = sa_b.data() + b * c;
        double* sb = sb_b.data() + b * c;
        for (int64_t i = b * kBlock; i < std::min(n, (b + 1) * kBlock); ++i) {
            const float* xi = x + i * c;
            const float* pi = posf + i * c;
            // the exps into work (the gradient's pass reads them) or a row buffer
            float* wi = grad ? work + i * c : row.data();
            for (int64_t j = 0; j < c; ++j) {
                const float u = xi[j] * (pi[j] != 0.0f ? k_pos : k_neg);
                wi[j] = exp_neg(std::max(u - top_c[j], kExpFloor));
            }
            for (int64_t j = 0; j < c; ++j) {
                sa[j] += static_cast<double>(pi[j] * wi[j]);
                sb[j] += static_cast<double>((1.0f - pi[j]) * wi[j]);
            }
        }
    }
    }
    std::vector<double> sa_c(c, 0.0), sb_c(c, 0.0);
    for (int64_t b = 0; b < blocks; ++b)
        for (int64_t j = 0; j < c; ++j) {
            sa_c[j] += sa_b[b * c + j];
            sb_c[j] += sb_b[b * c + j];
        }
    std::vector<float> a_c(c), b_c(c);
    const double loss_c = finish_lines(c, top_c.data(), sa_c.data(), sb_c.data(), tp, tn,
                                       min_shared, bad_cols, a_c.data(), b_c.data(), &counts[1]);
    if (grad) {
#pragma omp parallel for schedule(static) num_threads(threads)
        for (int64_t i = 0; i < n; ++i) {
            float* gi = grad + i * c;
            const float* wi = work + i * c;
            const float* pi = posf + i * c;
            for (int64_t j = 0; j < c; ++j) gi[j] += wi[j] * (pi[j] != 0.0f ? a_c[j] : b_c[j]);
        }
    }
    return loss_r + loss_c;
}
}
