// The positions of the positives of sparse binary float32 targets, in one pass: the eager
// asymmetric family's sparse-positive path (losses/_kernel.py, _binary_positive_index).
//
// Why C++: in torch ops the same answer takes a strided nonzero scan, a count and an equality
// check over the positives (about ten ATen calls): 120-200 us at 256 x 1000 and 5 ms at
// 4096 x 1000 on the 2-vCPU AMD EPYC machine of BENCHMARKS.md, against 30-60 us and 1.3 ms
// here. Only positions come out (no float is computed), so the loss's values and gradients are
// the same bits with or without it (tests/test_losses/test_positives_kernel.py).
//
// Built by mllb_core/native.py with -O3 and no -march: the block test below is an integer OR
// that the compiler vectorizes with the baseline SSE2 of every x86-64 (and NEON on aarch64).

#include <cstdint>
#include <cstring>

namespace {

// Entries tested at once: 32 floats are two 64-byte cache lines; with about 3 positives in 1000
// most blocks hold none and cost one vectorized OR.
constexpr int64_t kBlock = 32;

// Appends position i when y[i] is a positive. Returns false (the caller's answer is then a
// negative code in *status) for a nonzero entry other than 1 or one positive past `cap`.
inline bool take(const float* y, int64_t i, int64_t cap, int64_t* out, int64_t* k,
                 int64_t* status) {
  const float v = y[i];
  if (v == 0.0f) return true;  // +0.0 and -0.0, as torch.nonzero
  if (v != 1.0f) {             // soft, negative, inf or NaN: the dense formula handles them
    *status = -2;
    return false;
  }
  if (*k == cap) {  // more positives than the sparse path takes
    *status = -1;
    return false;
  }
  out[(*k)++] = i;
  return true;
}

}  // namespace

// y: n float32 targets, contiguous. out: room for cap int64 positions.
// Returns k >= 0 when every nonzero entry is exactly 1 and there are at most cap of them, with
// their positions in out[0..k) in ascending order; -1 when there are more than cap; -2 when an
// entry is neither 0 nor 1 (NaN included). The two negative codes are both "not sparse binary"
// to the caller, which stops at the first one it meets.
extern "C" int64_t mllb_binary_positives(const float* y, int64_t n, int64_t cap, int64_t* out) {
  int64_t k = 0;
  int64_t status = 0;
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    uint32_t any = 0;  // the bits of the block's entries without their signs, OR-ed
    for (int64_t j = 0; j < kBlock; ++j) {
      uint32_t bits;
      std::memcpy(&bits, y + i + j, sizeof bits);  // no aliasing of float as uint32
      any |= bits & 0x7fffffffu;
    }
    if (any == 0) continue;  // all +0.0 or -0.0
    for (int64_t j = i; j < i + kBlock; ++j) {
      if (!take(y, j, cap, out, &k, &status)) return status;
    }
  }
  for (; i < n; ++i) {
    if (!take(y, i, cap, out, &k, &status)) return status;
  }
  return k;
}
