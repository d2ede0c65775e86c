// Sampling of one token per row, drawing the same random numbers as PyTorch's CPU generator.
//
// torch.multinomial(p, 1) on CPU (float32 p [rows, n], contiguous) computes argmax(p / q) per row, where q holds
// one Exp(1) draw per element, drawn in row-major order: each draw takes two 32-bit outputs a, b of the generator's
// MT19937 engine, u = ((a << 32 | b) mod 2^53) / 2^53 and q = float(-log1p(-u)). audiocraft_multinomial_one
// advances the same engine (its state given as torch.Generator.get_state() serialises it) by the same outputs and
// computes the same quotients, calling log1p only where p > 0 (elsewhere the quotient is 0, or NaN where u = 0),
// so it returns the same indices and leaves the same state, several times faster than PyTorch's serial loop.
// audiocraft_kth_largest selects the value torch.topk(p, k)[0][..., k - 1] returns.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

namespace {

constexpr int MT_N = 624, MT_M = 397;

// The serialised state of a CPU torch.Generator: seed (u64), outputs left before the next twist (i32), seeded
// (i32), index of the next word (u64), the 624 words (each in a u64), then the normal-sampling cache (untouched).
constexpr size_t OFF_LEFT = 8, OFF_NEXT = 16, OFF_WORDS = 24, STATE_BYTES = 24 + 8 * MT_N;

inline uint32_t twisted(uint32_t u, uint32_t v) {  // the MT19937 recurrence's matrix on (u's top bit, v's rest)
    const uint32_t y = (u & 0x80000000u) | (v & 0x7fffffffu);
    return (y >> 1) ^ ((v & 1u) ? 0x9908b0dfu : 0u);
}

inline uint32_t temper(uint32_t y) {  // a bijection with temper(0) = 0
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

struct Engine {
    uint32_t mt[MT_N];
    int left;
    uint32_t next;

    void twist() {
        int i = 0;
        for (; i < MT_N - MT_M; ++i) mt[i] = mt[i + MT_M] ^ twisted(mt[i], mt[i + 1]);
        for (; i < MT_N - 1; ++i) mt[i] = mt[i + MT_M - MT_N] ^ twisted(mt[i], mt[i + 1]);
        mt[MT_N - 1] = mt[MT_M - 1] ^ twisted(mt[MT_N - 1], mt[0]);
        left = MT_N;
        next = 0;
    }

    uint32_t raw() {  // the next output before tempering
        if (--left == 0) twist();
        return mt[next++];
    }
};

bool load(Engine &e, const uint8_t *state) {
    int32_t left;
    uint64_t next;
    std::memcpy(&left, state + OFF_LEFT, 4);
    std::memcpy(&next, state + OFF_NEXT, 8);
    if (left < 1 || left > MT_N || next > uint64_t(MT_N)) return false;
    e.left = left;
    e.next = uint32_t(next);
    for (int i = 0; i < MT_N; ++i) {
        uint64_t w;
        std::memcpy(&w, state + OFF_WORDS + 8 * size_t(i), 8);
        e.mt[i] = uint32_t(w);
    }
    return true;
}

void save(const Engine &e, uint8_t *state) {
    const int32_t left = e.left;
    const uint64_t next = e.next;
    std::memcpy(state + OFF_LEFT, &left, 4);
    std::memcpy(state + OFF_NEXT, &next, 8);
    for (int i = 0; i < MT_N; ++i) {
        const uint64_t w = e.mt[i];
        std::memcpy(state + OFF_WORDS + 8 * size_t(i), &w, 8);
    }
}

// Whether p is a valid input of torch.multinomial: finite, non-negative, no row summing to zero.
bool valid_rows(const float *p, int64_t rows, int64_t n) {
    for (int64_t r = 0; r < rows; ++r) {
        bool positive = false;
        for (int64_t i = 0; i < n; ++i) {
            const float v = p[r * n + i];
            if (!(v >= 0.0f) || v == std::numeric_limits<float>::infinity()) return false;
            positive |= v > 0.0f;
        }
        if (!positive) return false;
    }
    return true;
}

}  // namespace

extern "C" {

// One index per row of p [rows, n] (float32, contiguous), as torch.multinomial(p, 1) draws it from the generator
// whose serialised state (`state_bytes` bytes) is given: written to out [rows], the state advanced in place.
// Returns 0; 1 for an unknown state layout; 2 for an input torch.multinomial refuses (state untouched).
int audiocraft_multinomial_one(const float *p, int64_t rows, int64_t n, uint8_t *state, int64_t state_bytes,
                               int64_t *out) {
    if (rows < 0 || n < 1 || state_bytes < int64_t(STATE_BYTES)) return 1;
    Engine e;
    if (!load(e, state)) return 1;
    if (!valid_rows(p, rows, n)) return 2;
    constexpr uint64_t MASK = (uint64_t(1) << 53) - 1;
    constexpr double SCALE = 1.0 / double(uint64_t(1) << 53);
    for (int64_t r = 0; r < rows; ++r) {
        const float *pr = p + r * n;
        int64_t best = -1;
        float top = 0.0f;
        bool nan = false;
        for (int64_t i = 0; i < n; ++i) {
            const uint32_t a = e.raw(), b = e.raw();
            const float v = pr[i];
            float quotient;
            if (v > 0.0f) {
                const uint64_t bits = ((uint64_t(temper(a)) << 32) | temper(b)) & MASK;
                const double u = double(bits) * SCALE;
                const float q = static_cast<float>(-1.0 * std::log1p(-u));
                quotient = v / q;
            } else {  // 0 / q: 0, or NaN where q = u = 0 (b = 0 and the low 21 bits of temper(a) are 0)
                const bool zero = b == 0 && (temper(a) & 0x1fffffu) == 0;
                quotient = zero ? std::numeric_limits<float>::quiet_NaN() : 0.0f;
            }
            if (nan) continue;  // the first NaN is the argmax
            if (std::isnan(quotient)) {
                nan = true;
                best = i;
            } else if (best < 0 || quotient > top) {
                best = i;
                top = quotient;
            }
        }
        out[r] = best;
    }
    save(e, state);
    return 0;
}

// The k-th largest value of each row of p [rows, n] (float32, contiguous), 1 <= k <= n, written to out [rows];
// what torch.topk(p, k)[0][..., k - 1] returns. Each value is mapped to an unsigned key of the same order, and the
// largest key t with at least k keys >= t is found bit by bit (32 vectorised counts): t is the k-th largest key.
// Returns 0; 1 for invalid arguments; 2 for a row holding NaN.
int audiocraft_kth_largest(const float *p, int64_t rows, int64_t n, int64_t k, float *out) {
    if (rows < 0 || n < 1 || k < 1 || k > n) return 1;
    typedef uint32_t vkey __attribute__((vector_size(64)));
    constexpr int64_t L = sizeof(vkey) / 4;
    const int64_t nv = (n + L - 1) / L;
    std::vector<vkey> keys(static_cast<size_t>(nv));
    for (int64_t r = 0; r < rows; ++r) {
        const float *pr = p + r * n;
        uint32_t *kp = reinterpret_cast<uint32_t *>(keys.data());
        for (int64_t i = 0; i < n; ++i) {
            if (std::isnan(pr[i])) return 2;
            uint32_t b;
            std::memcpy(&b, pr + i, 4);
            kp[i] = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
        }
        for (int64_t i = n; i < nv * L; ++i) kp[i] = 0;  // padding: below every key that counts (t >= 1 below)
        uint32_t t = 0;
        for (int bit = 31; bit >= 0; --bit) {
            const uint32_t cand = t | (uint32_t(1) << bit);
            vkey count{};
            for (int64_t j = 0; j < nv; ++j) count -= reinterpret_cast<vkey>(keys[size_t(j)] >= cand);
            uint32_t total = 0;
            for (int64_t l = 0; l < L; ++l) total += count[l];
            if (int64_t(total) >= k) t = cand;
        }
        const uint32_t b = (t & 0x80000000u) ? (t & 0x7fffffffu) : ~t;
        std::memcpy(out + r, &b, 4);
    }
    return 0;
}

}  // extern "C"
