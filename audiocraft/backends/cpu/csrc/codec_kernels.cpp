// Element-wise kernels of the prepared SEANet decoder (audiocraft/backends/cpu/codec.py) on CPU.
//
//   audiocraft_elu_rows:  y[r, c] = elu(x[r, c] + bias[c])  (bias may be NULL), rows with their own strides, in
//                         place when y == x. ELU(v) = v for v > 0, alpha * (exp(v) - 1) otherwise.
//   audiocraft_lstm_cell: one LSTM step from its gates [B, 4H] (PyTorch's order i, f, g, o) and the cell c [B, H]:
//                         c = sigmoid(f) * c + sigmoid(i) * tanh(g);  h = sigmoid(o) * tanh(c), in place on c.
//
// exp is a polynomial on [-ln2 / 2, ln2 / 2] scaled by a power of two (relative error ~2e-7, like the
// vectorised libm PyTorch uses); exp(v) - 1 near 0 thus has an absolute error of ~1e-7, well inside the 1e-5 the
// decoder promises. Plain loops the compiler vectorises (-O3 -march=native); threads come from the OpenMP
// runtime PyTorch loaded. Built at first use by audiocraft/backends/cpu/codec_kernels.py.
#include <cstdint>
#include <cstring>
#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

#if defined(__AVX512F__)
constexpr int VW = 16;  // floats per vector
#elif defined(__AVX__) || defined(__ARM_NEON)
constexpr int VW = 8;
#else
constexpr int VW = 4;
#endif
typedef float vf __attribute__((vector_size(VW * 4)));
typedef int32_t vi __attribute__((vector_size(VW * 4)));

inline vf load(const float *p) { vf v; std::memcpy(&v, p, sizeof v); return v; }
inline void store(float *p, vf v) { std::memcpy(p, &v, sizeof v); }
inline vf splat(float x) { return vf{} + x; }

// exp(x) for x in [-87, 88] (clamped): n = round(x / ln2), r = x - n ln2, exp(x) = 2^n * p(r) (Cephes' expf).
template <typename V, typename I>
inline V exp_poly(V x) {
    x = x < -87.0f ? -87.0f + V{} : x;
    x = x > 88.0f ? 88.0f + V{} : x;
    const V t = x * 1.44269504088896341f;
    const I ni = __builtin_convertvector(t + (t >= 0.0f ? 0.5f + V{} : -0.5f + V{}), I);  // round half away
    const V n = __builtin_convertvector(ni, V);
    const V r = (x - n * 0.693359375f) + n * 2.12194440e-4f;  // ln2 split in two for exactness
    V p = 1.9875691500e-4f + V{};
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const I bits = (ni + 127) << 23;
    V scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

typedef float sf __attribute__((vector_size(4)));
typedef int32_t si __attribute__((vector_size(4)));
inline float exp1(float x) { sf v = {x}; return exp_poly<sf, si>(v)[0]; }
inline vf expv(vf x) { return exp_poly<vf, vi>(x); }

template <typename V>
inline V elu(V v, float alpha, V e) { return v > 0.0f ? v : alpha * (e - 1.0f); }

inline vf sigmoid(vf x) { return 1.0f / (1.0f + expv(-x)); }
inline vf tanhv(vf x) {
    const vf a = x < 0.0f ? -x : x;
    const vf e = expv(-2.0f * a);  // in (0, 1]: no overflow
    const vf t = (1.0f - e) / (1.0f + e);
    return x < 0.0f ? -t : t;
}
inline float sigmoid1(float x) { return 1.0f / (1.0f + exp1(-x)); }
inline float tanh1(float x) {
    const float e = exp1(-2.0f * (x < 0 ? -x : x));
    const float t = (1.0f - e) / (1.0f + e);
    return x < 0 ? -t : t;
}

void elu_row(const float *x, float *y, int64_t cols, const float *bias, float alpha) {
    int64_t c = 0;
    for (; c + VW <= cols; c += VW) {
        vf v = load(x + c);
        if (bias) v += load(bias + c);
        store(y + c, elu(v, alpha, expv(v)));
    }
    for (; c < cols; ++c) {
        const float v = x[c] + (bias ? bias[c] : 0.0f);
        y[c] = v > 0.0f ? v : alpha * (exp1(v) - 1.0f);
    }
}

}  // namespace

extern "C" {

int audiocraft_elu_rows(const float *x, int64_t ldx, float *y, int64_t ldy, int64_t rows, int64_t cols,
                        const float *bias, float alpha, int threads) {
    if (rows < 0 || cols < 0 || ldx < cols || ldy < cols) return 1;
    (void)threads;
#pragma omp parallel for schedule(static) num_threads(threads) if (rows * cols > 262144)
    for (int64_t r = 0; r < rows; ++r) elu_row(x + r * ldx, y + r * ldy, cols, bias, alpha);
    return 0;
}

int audiocraft_lstm_cell(const float *gates, int64_t ldg, float *c, int64_t ldc, float *h, int64_t ldh,
                         int64_t batch, int64_t size) {
    if (batch < 0 || size < 0 || ldg < 4 * size || ldc < size || ldh < size) return 1;
    for (int64_t b = 0; b < batch; ++b) {
        const float *g = gates + b * ldg;
        float *cb = c + b * ldc;
        float *hb = h + b * ldh;
        int64_t j = 0;
        for (; j + VW <= size; j += VW) {
            const vf cell = sigmoid(load(g + size + j)) * load(cb + j)
                            + sigmoid(load(g + j)) * tanhv(load(g + 2 * size + j));
            store(cb + j, cell);
            store(hb + j, sigmoid(load(g + 3 * size + j)) * tanhv(cell));
        }
        for (; j < size; ++j) {
            const float cell = sigmoid1(g[size + j]) * cb[j] + sigmoid1(g[j]) * tanh1(g[2 * size + j]);
            cb[j] = cell;
            hb[j] = sigmoid1(g[3 * size + j]) * tanh1(cell);
        }
    }
    return 0;
}

}  // extern "C"
