// Average precision per class without sorting the scores: tasks/_native_ap.py builds and loads
// this file; the algorithm, its exactness and its deviations are documented there.
//
// For a class with positives' scores p_0 <= ... <= p_{P-1} (sorted; P is small next to N), a
// negative x counts towards #(s >= p_i) exactly for the i with p_i <= x, that is for
// i < j(x) = #(positives <= x): hist[j(x)] += 1, and #negatives(s >= p_i) = sum_{j > i} hist[j].
// j(x) comes from a table: the positives' range [p_0, p_{P-1}] is cut into about 4P equal cells,
// and cell(x) is monotone non-decreasing in x (every floating-point step of it is), so each
// positive of a lower cell is < x and each one of a higher cell is > x; only the positives in
// x's own cell (none, for most x) are compared with x.
//
// Three phases, each shared by the OpenMP threads: the positives of each class counted per
// chunk of rows (where each chunk writes), each chunk of rows split into every class's negatives
// and positives (one pass over the row-major input: the transposition the per-class work needs),
// then each class on its own. Integers count everything until each class's final sum, which is
// sequential in score order, so the result is the same bits on any number of threads.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr int64_t kTileRows = 32;    // rows split at a time ...
constexpr int64_t kTileCols = 128;   // ... for this many classes (a tile of 32 KiB of doubles)
constexpr int64_t kChunk = 1024;     // negatives whose cells are computed at a time

template <typename T>
struct ClassState {
    T* pos = nullptr;  // [P] the positives' scores, sorted ascending in prepare()
    int64_t p = 0;
    std::vector<int32_t> start;  // [M + 1] #positives in the cells below k
    std::vector<int32_t> hist;   // [4, P + 1] negatives by #(positives <= x), by i % 4
    double half_lo = 0.0, scale = 0.0, top = 0.0;

    // the cell of v in [0, M - 1], clamped with selects rather than branches (scores below the
    // positives' range are common and come in no order). Cell 0 is kept for
    // the scores below p_0 (t < 1): those meet no positive in their cell. Halves, so that the
    // difference never overflows (-max to max); each step is monotone, and so is the whole.
    int32_t cell(double v) const {
        double t = (0.5 * v - half_lo) * scale + 1.0;
        t = t > 0.0 ? t : 0.0;
        t = t < top ? t : top;
        return static_cast<int32_t>(t);
    }

    void prepare() {
        std::sort(pos, pos + p);
        int64_t cells = 4;
        while (cells < 4 * p && cells < (int64_t{1} << 18)) cells <<= 1;
        half_lo = 0.5 * static_cast<double>(pos[0]);
        const double half_width = 0.5 * static_cast<double>(pos[p - 1]) - half_lo;  // finite
        scale = static_cast<double>(cells - 2) / half_width;
        // one distinct positive (or two a subnormal apart): every score in cell 1
        if (!(half_width > 0.0) || !std::isfinite(scale)) scale = 0.0;
        top = static_cast<double>(cells - 1);
        start.assign(static_cast<size_t>(cells) + 1, 0);
        for (int64_t i = 0; i < p; ++i) ++start[static_cast<size_t>(cell(pos[i])) + 1];
        for (int64_t k = 0; k < cells; ++k) start[k + 1] += start[k];
        hist.assign(4 * static_cast<size_t>(p + 1), 0);
    }

    // #(positives <= x) for x in cell k
    int64_t rank(const int32_t* st, int32_t k, T x) const {
        int64_t j = st[k];
        const int64_t end = st[k + 1];
        if (j == end) return j;
        if (end - j <= 16) {
            while (j != end && pos[j] <= x) ++j;
            return j;
        }
        return std::upper_bound(pos + j, pos + end, x) - pos;
    }

    // the negatives' scores x [m] into hist; cells [m]: scratch. Four histograms, one per
    // i % 4: the scores below every positive (often many) all increment the same count, and
    // with one histogram each increment would wait for the previous one's store
    void count(const T* x, int64_t m, int32_t* cells) {
        for (int64_t i = 0; i < m; ++i) cells[i] = cell(static_cast<double>(x[i]));
        const int32_t* st = start.data();
        int32_t* h0 = hist.data();
        int32_t* h1 = h0 + (p + 1);
        int32_t* h2 = h1 + (p + 1);
        int32_t* h3 = h2 + (p + 1);
        int64_t i = 0;
        for (; i + 4 <= m; i += 4) {
            ++h0[rank(st, cells[i], x[i])];
            ++h1[rank(st, cells[i + 1], x[i + 1])];
            ++h2[rank(st, cells[i + 2], x[i + 2])];
            ++h3[rank(st, cells[i + 3], x[i + 3])];
        }
        for (; i < m; ++i) ++h0[rank(st, cells[i], x[i])];
    }

    // sum over ties of positives, highest score first, of (tie size) x TP(s >= tie) /
    // #(s >= tie), divided by P: the order and the operations of tasks/metrics.py's
    // _ap_from_positives, so both give the same bits
    double average_precision() const {
        std::vector<int64_t> neg_ge(static_cast<size_t>(p) + 1, 0);  // #negatives >= pos[i]
        for (int64_t j = p - 1; j >= 0; --j) {
            int64_t above = 0;
            for (int64_t q = 0; q < 4; ++q) above += hist[q * (p + 1) + j + 1];
            neg_ge[j] = neg_ge[j + 1] + above;
        }
        double sum = 0.0;
        int64_t h = p - 1;
        while (h >= 0) {
            int64_t g = h;
            while (g > 0 && pos[g - 1] == pos[h]) --g;
            const int64_t tp = p - g;
            const double precision = static_cast<double>(tp) / static_cast<double>(tp + neg_ge[g]);
            sum += static_cast<double>(h - g + 1) * precision;
            h = g - 1;
        }
        return sum / static_cast<double>(p);
    }
};

// rows [r0, r1) of scores s / targets t [n, n_cls] (rows ld apart): each class's scores
// appended to its negatives (from work + c n, at neg[c]) or its positives (from the end of that
// row of work, at pos[c]); false when a score is not finite. The target selects the place (a
// select, not a branch: the positives come at no predictable rows).
template <typename T>
bool split_rows(const T* s, const uint8_t* t, int64_t n, int64_t n_cls, int64_t ld, int64_t r0,
                int64_t r1, T* work, int64_t* neg, int64_t* pos) {
    bool finite = true;
    for (int64_t a = r0; a < r1; a += kTileRows) {
        const int64_t m = std::min(kTileRows, r1 - a);
        for (int64_t c0 = 0; c0 < n_cls; c0 += kTileCols) {
            const int64_t c1 = std::min(n_cls, c0 + kTileCols);
            for (int64_t c = c0; c < c1; ++c) {
                const T* sc = s + a * ld + c;
                const uint8_t* tc = t + a * ld + c;
                T* row = work + c * n;
                int64_t nn = neg[c], np = pos[c];
                bool ok = true;
                for (int64_t i = 0; i < m; ++i) {
                    const T v = sc[i * ld];
                    const int64_t y = tc[i * ld] != 0;
                    ok &= std::isfinite(v);
                    row[y ? np : nn] = v;
                    nn += 1 - y;
                    np += y;
                }
                neg[c] = nn;
                pos[c] = np;
                finite &= ok;
            }
        }
    }
    return finite;
}

template <typename T>
int ap_all(const T* s, const uint8_t* t, int64_t n, int64_t n_cls, int64_t ld, int threads,
           T* work, double* out) {
    const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(4 * threads, n / 256));
    std::vector<int64_t> bound(static_cast<size_t>(chunks) + 1);
    for (int64_t k = 0; k <= chunks; ++k) bound[k] = n * k / chunks;
    // npos[k, c]: positives of class c in chunk k of the rows
    std::vector<int64_t> npos(static_cast<size_t>(chunks * n_cls), 0);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t k = 0; k < chunks; ++k) {
        std::vector<int32_t> cnt(static_cast<size_t>(n_cls), 0);
        int32_t* __restrict cp = cnt.data();
        for (int64_t i = bound[k]; i < bound[k + 1]; ++i) {
            const uint8_t* ti = t + i * ld;
            for (int64_t c = 0; c < n_cls; ++c) cp[c] += ti[c] != 0;
        }
        for (int64_t c = 0; c < n_cls; ++c) npos[k * n_cls + c] = cnt[c];
    }
    // where each chunk writes: class c's negatives fill work[c, :] from the left in row
    // order, its positives the last P_c entries, also in row order
    std::vector<int64_t> neg(static_cast<size_t>(chunks * n_cls)), pos(neg.size());
    std::vector<int64_t> total(static_cast<size_t>(n_cls), 0);
    for (int64_t c = 0; c < n_cls; ++c)
        for (int64_t k = 0; k < chunks; ++k) total[c] += npos[k * n_cls + c];
    for (int64_t c = 0; c < n_cls; ++c) {
        int64_t nn = 0, np = n - total[c];
        for (int64_t k = 0; k < chunks; ++k) {
            neg[k * n_cls + c] = nn;
            pos[k * n_cls + c] = np;
            nn += (bound[k + 1] - bound[k]) - npos[k * n_cls + c];
            np += npos[k * n_cls + c];
        }
    }
    int bad = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) reduction(| : bad)
    for (int64_t k = 0; k < chunks; ++k) {
        if (!split_rows(s, t, n, n_cls, ld, bound[k], bound[k + 1], work, &neg[k * n_cls],
                        &pos[k * n_cls]))
            bad = 1;
    }
    if (bad) return 1;
#pragma omp parallel num_threads(threads)
    {
        std::vector<int32_t> cells(kChunk);
#pragma omp for schedule(dynamic, 1)
        for (int64_t c = 0; c < n_cls; ++c) {
            const int64_t p = total[c];
            if (p == 0) {
                out[c] = std::nan("");
                continue;
            }
            T* row = work + c * n;
            ClassState<T> st;
            st.pos = row + (n - p);
            st.p = p;
            st.prepare();
            for (int64_t a = 0; a < n - p; a += kChunk)
                st.count(row + a, std::min(kChunk, n - p - a), cells.data());
            out[c] = st.average_precision();
        }
    }
    return 0;
}

}  // namespace

extern "C" {

// AP of every class of scores s [n, n_cls] and targets t [n, n_cls] (0 or 1), both row-major
// with rows ld apart (a block of the columns of a wider array), into out [n_cls] (NaN for a
// class without a positive) on `threads` OpenMP threads, with work [n_cls, n] (of the scores'
// type) as scratch; returns 0, or 1 when some score is NaN or infinite (out is then
// unspecified)
int mllb_ap_f64(const double* s, const uint8_t* t, int64_t n, int64_t n_cls, int64_t ld,
                int threads, double* work, double* out) {
    return ap_all(s, t, n, n_cls, ld, threads, work, out);
}

int mllb_ap_f32(const float* s, const uint8_t* t, int64_t n, int64_t n_cls, int64_t ld,
                int threads, float* work, double* out) {
    return ap_all(s, t, n, n_cls, ld, threads, work, out);
}
}
