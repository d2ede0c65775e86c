// Element-wise kernels of the prepared SEANet decoder (audiocraft/backends/cpu/codec.py) on CPU.
//
//   audiocraft_elu_rows:  y[r, c] = elu(x[r, c] + bias[c])  (bias may be NULL), rows with their own strides, in
//                         place when y == x. ELU(v) = v for v > 0, alpha * (exp(v) - 1) otherwise.
//   audiocraft_lstm_cell: one LSTM step from its gates [B, 4H] (PyTorch's order i, f, g, o) and the cell c [B, H]:
//                         c = sigmoid(f) * c + sigmoid(i) * tanh(g);  h = sigmoid(o) * tanh(c), in place on c.
//   audiocraft_lstm_layer: every step of one LSTM layer: gates_t = gates_in[t] + h @ W_hh^T, then the cell above,
//                         out[t] = h. W_hh comes packed as [H / VW][H][4][VW] (for each block of VW hidden units,
//                         the rows of its i, f, g, o gates side by side, read in one stream), so a step reads the
//                         recurrent weights once whatever the batch, and each block's cell update follows its
//                         products while they are in registers. Threads split the blocks (one barrier a step).
//   audiocraft_conv_few:  a convolution with few output channels (the last layer: 1 or 2), time-major:
//                         y[t, o] (+)= bias[o] + sum_j sum_c x[t + j d, c] w[o, j, c], four rows at a time
//                         (each weight vector loaded once for the four).
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

// gates of rows [r0, r0 + RB) and hidden units [j0, j0 + VW) for one step, then their cell update.
template <int RB>
inline void lstm_block(const float *gin, int64_t ldgi, const float *wb, const float *h, int64_t size, float *c,
                       int64_t ldc, float *hn, float *out, int64_t ldo, int64_t j0) {
    vf acc[RB][4];
    for (int r = 0; r < RB; ++r)
        for (int g = 0; g < 4; ++g) acc[r][g] = load(gin + r * ldgi + g * size + j0);
    for (int64_t k = 0; k < size; ++k) {
        const float *w = wb + k * 4 * VW;
        const vf w0 = load(w), w1 = load(w + VW), w2 = load(w + 2 * VW), w3 = load(w + 3 * VW);
        for (int r = 0; r < RB; ++r) {
            const float hk = h[r * size + k];
            acc[r][0] += hk * w0;
            acc[r][1] += hk * w1;
            acc[r][2] += hk * w2;
            acc[r][3] += hk * w3;
        }
    }
    for (int r = 0; r < RB; ++r) {
        const vf cell = sigmoid(acc[r][1]) * load(c + r * ldc + j0) + sigmoid(acc[r][0]) * tanhv(acc[r][2]);
        const vf hv = sigmoid(acc[r][3]) * tanhv(cell);
        store(c + r * ldc + j0, cell);
        store(hn + r * size + j0, hv);
        store(out + r * ldo + j0, hv);
    }
}

#if defined(__AVX512F__) || defined(__ARM_NEON)
constexpr int ROWS = 4;  // rows per pass over the weights: 4 x 4 accumulators + 4 weight vectors in registers
#else
constexpr int ROWS = 2;
#endif

}  // namespace

extern "C" {

int audiocraft_codec_vector_width() { return VW; }

int audiocraft_conv_few(const float *x, int64_t ldx, int64_t rows, int64_t cin, const float *w, int64_t cout,
                        int64_t taps, int64_t dilation, const float *bias, float *y, int64_t ldy, int accumulate,
                        int threads) {
    if (rows < 0 || cin <= 0 || cout <= 0 || taps <= 0 || dilation <= 0 || ldx < cin || ldy < cout) return 1;
    const int64_t vec = cin - cin % VW;
    const int64_t quads = (rows + 3) / 4;
    (void)threads;
#pragma omp parallel for schedule(static) num_threads(threads) if (rows * cin * taps * cout > (1 << 20))
    for (int64_t q = 0; q < quads; ++q) {
        const int64_t t0 = 4 * q, n = rows - t0 < 4 ? rows - t0 : 4;
        for (int64_t o = 0; o < cout; ++o) {
            vf acc[4] = {vf{}, vf{}, vf{}, vf{}};
            float tail[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            for (int64_t j = 0; j < taps; ++j) {
                const float *wj = w + (o * taps + j) * cin;
                const float *xj = x + (t0 + j * dilation) * ldx;
                for (int64_t c = 0; c < vec; c += VW) {
                    const vf wv = load(wj + c);
                    for (int r = 0; r < 4; ++r)
                        if (r < n) acc[r] += load(xj + r * ldx + c) * wv;
                }
                for (int64_t c = vec; c < cin; ++c)
                    for (int r = 0; r < n; ++r) tail[r] += xj[r * ldx + c] * wj[c];
            }
            for (int r = 0; r < n; ++r) {
                float v = tail[r] + (bias ? bias[o] : 0.0f);
                for (int l = 0; l < VW; ++l) v += acc[r][l];
                float *dst = y + (t0 + r) * ldy + o;
                *dst = accumulate ? *dst + v : v;
            }
        }
    }
    return 0;
}

// gates_in [T, B, 4H] (row stride ldgi between rows of a step, step stride B * ldgi), packed W_hh (see above),
// h [B, H] and c [B, H] (contiguous; the initial state in, the final state out), out [T, B, H] contiguous.
int audiocraft_lstm_layer(const float *gates_in, int64_t ldgi, const float *packed, float *h, float *c, float *out,
                          int64_t steps, int64_t batch, int64_t size, int threads) {
    if (steps < 0 || batch < 0 || size <= 0 || size % VW || ldgi < 4 * size) return 1;
    const int64_t blocks = size / VW;
    float *buf = new float[2 * batch * size];
    std::memcpy(buf, h, sizeof(float) * batch * size);
    (void)threads;
#pragma omp parallel num_threads(threads) if (threads > 1 && blocks >= 2 * threads)
    {
        int64_t lo = 0, hi = blocks;
#if defined(_OPENMP)
        const int nt = omp_get_num_threads(), id = omp_get_thread_num();
        lo = blocks * id / nt;
        hi = blocks * (id + 1) / nt;
#endif
        for (int64_t t = 0; t < steps; ++t) {
            const float *hc = buf + (t & 1) * batch * size;
            float *hn = buf + ((t + 1) & 1) * batch * size;
            const float *gin = gates_in + t * batch * ldgi;
            float *o = out + t * batch * size;
            for (int64_t jb = lo; jb < hi; ++jb) {
                const float *wb = packed + jb * size * 4 * VW;
                int64_t r = 0;
                for (; r + ROWS <= batch; r += ROWS)
                    lstm_block<ROWS>(gin + r * ldgi, ldgi, wb, hc + r * size, size, c + r * size, size,
                                     hn + r * size, o + r * size, size, jb * VW);
                for (; r < batch; ++r)
                    lstm_block<1>(gin + r * ldgi, ldgi, wb, hc + r * size, size, c + r * size, size,
                                  hn + r * size, o + r * size, size, jb * VW);
            }
#pragma omp barrier
        }
    }
    std::memcpy(h, buf + (steps & 1) * batch * size, sizeof(float) * batch * size);
    delete[] buf;
    return 0;
}


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
