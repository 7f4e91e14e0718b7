// The positions of the positives of sparse binary float32 targets, in one pass: the eager
// asymmetric family's sparse-positive path (losses/_kernel.py, _binary_positive_index).
//
// Why C++: in torch ops the same answer takes a strided nonzero scan, a count and an equality
// check over the positives (about ten ATen calls); on the 2-vCPU AMD EPYC machine of
// BENCHMARKS.md ("Session of 2026-11-28 09:40 UTC") this pass took 0.2x-0.5x their time. Only
// positions come out, in ascending order as torch's (no float is computed), so the loss's
// values and gradients are the same bits with or without it
// (tests/test_losses/test_positives_kernel.py).
//
// Two calls: mllb_binary_positives scans and keeps the positions in memory of the calling
// thread (reused from call to call), mllb_binary_positives_take copies them into a tensor of
// exactly their number, so the caller allocates no [N, C]-sized buffer.
//
// Built by mllb_core/native.py with -O3, OpenMP and no -march: the block test below is an
// integer OR that the compiler vectorizes with the baseline SSE2 of every x86-64 (and NEON on
// aarch64). Above ATen's grain size (32768 entries a thread) the entries are split into one
// contiguous part per thread, each scanned once, as torch's own reductions use every thread
// (on that 2-vCPU host two parts took 0.66x-0.88x one part's time; many cores: not measured).

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

// Entries tested at once: 32 floats are two 64-byte cache lines; with about 3 positives in 1000
// most blocks hold none and cost one vectorized OR.
constexpr int64_t kBlock = 32;
// Entries a thread takes at least (ATen's grain size), and the most parts (a stack array).
constexpr int64_t kMinPart = 32768;
constexpr int64_t kMaxParts = 256;
// Return codes besides a count.
constexpr int64_t kOverCap = -1;     // more than cap positives
constexpr int64_t kNotBinary = -2;   // an entry neither 0 nor 1 (soft, negative, inf, NaN)
constexpr int64_t kNoMemory = -3;    // positions could not be stored: the caller scans itself

// The positions found by this thread's last call, one vector per part; kept so that their
// memory is reused from one sparse call to the next (bounded by the most positives such a call
// has had) and released after a call whose targets are not sparse binary (which may have
// stored up to cap positions a part before finding out).
thread_local std::vector<std::vector<int64_t>> t_found;

// Frees the positions kept for this thread.
void release(std::vector<std::vector<int64_t>>& found) {
  for (std::vector<int64_t>& part : found) std::vector<int64_t>().swap(part);
}

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

// Appends the positions of the positives in y[lo, hi) to out, ascending; returns their number,
// kNotBinary at an entry neither 0 nor 1, kOverCap at the (cap + 1)-th positive.
int64_t scan(const float* y, int64_t lo, int64_t hi, int64_t cap, std::vector<int64_t>& out) {
  for (int64_t i = lo; i < hi; i += kBlock) {
    const int64_t end = std::min(hi, i + kBlock);
    if (end - i == kBlock && block_is_zero(y + i)) continue;
    for (int64_t j = i; j < end; ++j) {
      const float v = y[j];
      if (v == 0.0f) continue;  // +0.0 and -0.0, as torch.nonzero
      if (v != 1.0f) return kNotBinary;
      if (static_cast<int64_t>(out.size()) == cap) return kOverCap;
      out.push_back(j);
    }
  }
  return static_cast<int64_t>(out.size());
}

}  // namespace

// y: n float32 targets, contiguous; threads: at most this many. Returns k >= 0 when every
// nonzero entry is exactly 1 and there are at most cap of them (their positions then wait for
// mllb_binary_positives_take), kOverCap or kNotBinary otherwise (both "not sparse binary" to
// the caller), kNoMemory when the positions could not be stored.
extern "C" int64_t mllb_binary_positives(const float* y, int64_t n, int64_t cap, int threads) {
  const int64_t parts = std::max<int64_t>(
      1, std::min<int64_t>({static_cast<int64_t>(threads), n / kMinPart, kMaxParts}));
  try {
    t_found.resize(parts);
  } catch (...) {
    return kNoMemory;
  }
  // the workers write into the calling thread's vectors (t_found inside the loop would be
  // each worker's own)
  std::vector<std::vector<int64_t>>& found = t_found;
  // part t covers [t * len, (t + 1) * len), whole blocks except the last part's tail
  const int64_t len = ((n + parts - 1) / parts + kBlock - 1) / kBlock * kBlock;
  int64_t counts[kMaxParts];
#pragma omp parallel for num_threads(static_cast<int>(parts)) schedule(static, 1) \
    if (parts > 1)
  for (int64_t t = 0; t < parts; ++t) {
    const int64_t lo = std::min(n, t * len);
    found[t].clear();
    try {  // no exception may leave an OpenMP region
      counts[t] = scan(y, lo, std::min(n, lo + len), cap, found[t]);
    } catch (...) {
      counts[t] = kNoMemory;
    }
  }
  int64_t total = 0;
  bool stored = true;
  for (int64_t t = 0; t < parts; ++t) {
    if (counts[t] == kOverCap || counts[t] == kNotBinary) {  // either is final
      release(found);
      return counts[t];
    }
    if (counts[t] == kNoMemory) stored = false;
    else total += counts[t];
  }
  if (!stored || total > cap) {
    release(found);
    return stored ? kOverCap : kNoMemory;
  }
  return total;
}

// Copies the positions of this thread's last mllb_binary_positives call into out (room for its
// count), ascending. Call it only after that call returned a count (k >= 0).
extern "C" void mllb_binary_positives_take(int64_t* out) {
  int64_t k = 0;
  for (const std::vector<int64_t>& part : t_found) {
    if (part.empty()) continue;
    std::memcpy(out + k, part.data(), part.size() * sizeof(int64_t));
    k += static_cast<int64_t>(part.size());
  }
}
