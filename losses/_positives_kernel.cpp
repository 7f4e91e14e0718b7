// The positions of the positives of sparse binary float32 targets, in one pass: the eager
// asymmetric family's sparse-positive path (losses/_kernel.py, _binary_positive_index).
//
// Why C++: in torch ops the same answer takes a strided nonzero scan, a count and an equality
// check over the positives (about ten ATen calls): 126-257 us at 256 x 1000 and 2.6-3.0 ms at
// 4096 x 1000 on the 2-vCPU AMD EPYC machine of BENCHMARKS.md ("Session of 2026-11-28 09:40
// UTC"), against 37-76 us and 0.8-0.9 ms here. Only positions come out, in ascending order as
// torch's (no float is computed), so the loss's values and gradients are the same bits with
// or without it (tests/test_losses/test_positives_kernel.py).
//
// Built by mllb_core/native.py with -O3, OpenMP and no -march: the block test below is an
// integer OR that the compiler vectorizes with the baseline SSE2 of every x86-64 (and NEON on
// aarch64). Above ATen's grain size (32768 entries a thread) the entries are split into one
// contiguous part per thread, each scanned once: torch's own reductions use every thread, and a
// single-threaded scan would fall behind them on a machine with many cores.

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace {

// Entries tested at once: 32 floats are two 64-byte cache lines; with about 3 positives in 1000
// most blocks hold none and cost one vectorized OR.
constexpr int64_t kBlock = 32;
// Entries a thread takes at least (ATen's grain size), and the most parts (a stack array).
constexpr int64_t kMinPart = 32768;
constexpr int64_t kMaxParts = 256;

// Whether the block at y holds only +0.0 and -0.0 (the bits without their signs, OR-ed).
inline bool block_is_zero(const float* y) {
  uint32_t any = 0;
  for (int64_t j = 0; j < kBlock; ++j) {
    uint32_t bits;
    std::memcpy(&bits, y + j, sizeof bits);  // no aliasing of float as uint32
    any |= bits & 0x7fffffffu;
  }
  return any == 0;
}

// Writes the positions of the positives in y[lo, hi) to out[0..k), ascending, and returns k;
// -2 at an entry that is neither 0 nor 1 (soft, negative, inf or NaN: the dense formula handles
// them), -1 at the (cap + 1)-th positive.
int64_t scan(const float* y, int64_t lo, int64_t hi, int64_t cap, int64_t* out) {
  int64_t k = 0;
  int64_t i = lo;
  for (; i < hi; i += kBlock) {
    const int64_t end = std::min(hi, i + kBlock);
    if (end - i == kBlock && block_is_zero(y + i)) continue;
    for (int64_t j = i; j < end; ++j) {
      const float v = y[j];
      if (v == 0.0f) continue;  // +0.0 and -0.0, as torch.nonzero
      if (v != 1.0f) return -2;
      if (k == cap) return -1;
      out[k++] = j;
    }
  }
  return k;
}

}  // namespace

// y: n float32 targets, contiguous. out: room for n int64 positions (each part writes from its
// own first entry's index; the parts are then moved together). threads: at most this many.
// Returns k >= 0 when every nonzero entry is exactly 1 and there are at most cap of them, with
// their positions in out[0..k) in ascending order; -1 when there are more than cap; -2 when an
// entry is neither 0 nor 1 (NaN included). The two negative codes are both "not sparse binary"
// to the caller.
extern "C" int64_t mllb_binary_positives(const float* y, int64_t n, int64_t cap, int64_t* out,
                                         int threads) {
  const int64_t parts = std::max<int64_t>(
      1, std::min<int64_t>({static_cast<int64_t>(threads), n / kMinPart, kMaxParts}));
  if (parts == 1) return scan(y, 0, n, cap, out);
  // part t covers [t * len, (t + 1) * len), whole blocks except the last part's tail
  const int64_t len = ((n + parts - 1) / parts + kBlock - 1) / kBlock * kBlock;
  int64_t counts[kMaxParts];
#pragma omp parallel for num_threads(static_cast<int>(parts)) schedule(static, 1)
  for (int64_t t = 0; t < parts; ++t) {
    const int64_t lo = std::min(n, t * len);
    counts[t] = scan(y, lo, std::min(n, lo + len), cap, out + lo);
  }
  int64_t total = 0;
  for (int64_t t = 0; t < parts; ++t) {
    if (counts[t] < 0) return counts[t];
    total += counts[t];
  }
  if (total > cap) return -1;
  // part t's positions sit at out[t * len ...]; move them behind the earlier parts' (never up:
  // the earlier parts hold at most their t * len entries)
  int64_t k = counts[0];
  for (int64_t t = 1; t < parts; ++t) {
    std::memmove(out + k, out + std::min(n, t * len), counts[t] * sizeof(int64_t));
    k += counts[t];
  }
  return total;
}
