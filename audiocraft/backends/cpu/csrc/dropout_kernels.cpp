// Dropout that draws exactly the random numbers PyTorch's CPU dropout draws, several times faster.
//
// PyTorch's CPU `dropout(x, p, train=True)` makes `noise = empty_like(x).bernoulli_(1 - p)`, divides it by
// `1 - p` and returns `x * noise`. On CPU, `bernoulli_(q)` (scalar q) takes, for each element of `noise` in
// memory order, one 64-bit draw of the default generator (an MT19937: two consecutive 32-bit outputs, the first
// as the high word), keeps its low 53 bits v and sets the element to `v * 2^-53 < q`. That is
// `v < ceil(q * 2^53)`, the `threshold` below (see audiocraft/backends/cpu/dropout.py, which checks at run time
// that this is what the installed PyTorch does before using this kernel).
//
// Here the generator runs one block of 624 words at a time: the state update ("twist") and the output
// tempering are plain loops the compiler vectorises, and `out[i] = x[i] * (keep ? scale : 0)` is written in the
// same pass (PyTorch's `x * noise`, with `scale = 1 / (1 - p)` rounded to float as PyTorch does).
// The generator state is read from and written back to PyTorch's (`key`: the 624 state words, `pos`: index of
// the next word to read, 624 = a twist is due).
#include <cstdint>

namespace {

constexpr int N = 624;
constexpr int M = 397;

inline uint32_t twist(uint32_t u, uint32_t v) {
  return (((u & 0x80000000u) | (v & 0x7fffffffu)) >> 1) ^ ((v & 1u) ? 0x9908b0dfu : 0u);
}

void next_state(uint32_t *mt) {
  for (int i = 0; i < N - M; ++i) mt[i] = mt[i + M] ^ twist(mt[i], mt[i + 1]);
  for (int i = N - M; i < 2 * (N - M); ++i) mt[i] = mt[i + M - N] ^ twist(mt[i], mt[i + 1]);
  for (int i = 2 * (N - M); i < N - 1; ++i) mt[i] = mt[i + M - N] ^ twist(mt[i], mt[i + 1]);
  mt[N - 1] = mt[M - 1] ^ twist(mt[N - 1], mt[0]);
}

void temper(const uint32_t *mt, uint32_t *out) {
  for (int i = 0; i < N; ++i) {
    uint32_t y = mt[i];
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= (y >> 18);
    out[i] = y;
  }
}

inline bool keep(uint32_t hi, uint32_t lo, uint64_t threshold) {
  return ((static_cast<uint64_t>(hi & 0x1fffffu) << 32) | lo) < threshold;
}

}  // namespace

extern "C" {

// x, out: n floats (memory order); key: 624 words (updated); pos: in 0..624 (updated). Returns 0, or -1 on a bad
// argument. With x == nullptr, out receives the noise itself (scale or 0).
int audiocraft_exact_dropout(uint32_t *key, int32_t *pos, const float *x, float *out, int64_t n,
                             uint64_t threshold, float scale) {
  if (key == nullptr || pos == nullptr || out == nullptr || n < 0 || *pos < 0 || *pos > N) return -1;
  alignas(64) uint32_t words[N];
  int p = *pos;
  temper(key, words);  // words before p are never read
  int64_t i = 0;
  while (i < n) {
    if (p == N) {
      next_state(key);
      temper(key, words);
      p = 0;
    }
    int64_t pairs = (N - p) / 2;
    if (pairs > n - i) pairs = n - i;
    const uint32_t *w = words + p;
    if (x != nullptr) {
      for (int64_t k = 0; k < pairs; ++k) out[i + k] = x[i + k] * (keep(w[2 * k], w[2 * k + 1], threshold) ? scale : 0.0f);
    } else {
      for (int64_t k = 0; k < pairs; ++k) out[i + k] = keep(w[2 * k], w[2 * k + 1], threshold) ? scale : 0.0f;
    }
    i += pairs;
    p += static_cast<int>(2 * pairs);
    if (i < n && p == N - 1) {  // a draw straddling two blocks
      uint32_t hi = words[N - 1];
      next_state(key);
      temper(key, words);
      p = 1;
      float noise = keep(hi, words[0], threshold) ? scale : 0.0f;
      out[i] = x != nullptr ? x[i] * noise : noise;
      ++i;
    }
  }
  *pos = p;
  return 0;
}

}  // extern "C"
