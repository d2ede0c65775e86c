// The decoding step of a stack of pre-norm transformer layers in one call, and its elementwise pieces.
//
// audiocraft_decoder_stack runs, for the `rows` rows of one time step (batch items, both halves of
// classifier-free guidance), in one OpenMP parallel region, for each layer in turn:
//
//     h = norm1(x);  q, k, v = in_proj(h);  cache[pos] = k, v;  a = attention(q, cache[start..pos])
//     y = x + scale1 * out_proj(a)
//     h = norm_cross(y);  a = attention(cross_q(h), cross keys / values)             (with cross-attention)
//     y = y + scale_cross * cross_out(a)
//     h = norm2(y);  y = y + scale2 * linear2(activation(linear1(h)))
//
// the same math as StreamingTransformerLayer with norm_first=True (what the plain PyTorch modules compute, each
// output of a linear map summed in the fixed order of matvec.h). Threads split the blocks of each linear map, the
// rows of each normalisation and the (row, head) pairs of each attention; every value is computed by one thread in
// a fixed order, so results do not depend on the number of threads or rows.
#include <vector>

#include "attention.h"
#include "matvec.h"

using namespace ackernels;

namespace {

struct LayerSpec {
    int64_t dim, heads, head_dim, hidden;
    int64_t norm_kind;   // 0 LayerNorm, 1 RMSNorm
    int64_t activation;  // 0 ReLU, 1 GELU (erf)
    int64_t has_cross;
    float eps;
    float attention_scale;  // 1 / sqrt(head_dim)
    const float *norm1_w, *norm1_b, *norm_cross_w, *norm_cross_b, *norm2_w, *norm2_b;
    const float *scale1, *scale_cross, *scale2;  // LayerScale gains, or NULL
    Linear in_proj, out_proj, cross_q, cross_out, linear1, linear2;
};

// Normalises rows of x into h (each row by one thread) and, for an int8 linear map next, quantizes them.
inline void normalize_rows(const LayerSpec &L, const float *x, int64_t rows, const float *w, const float *b,
                           float *h, const Linear &next, int16_t *xq, float *xs) {
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        normalize_row(x + r * L.dim, L.dim, w, b, L.eps, L.norm_kind == 1, h + r * L.dim);
        if (next.kind == 2) quantize_row(h + r * L.dim, L.dim, xq + r * L.dim, xs + r);
    }
}

inline void quantize_rows(const float *x, int64_t rows, int64_t n, const Linear &next, int16_t *xq, float *xs) {
    if (next.kind != 2) return;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) quantize_row(x + r * n, n, xq + r * n, xs + r);
}

template <class Epi>
inline void linear_band(const Linear &L, const float *x, int64_t ldx, const int16_t *xq, const float *xs,
                        int64_t rows, const Epi &epi, int64_t *c0 = nullptr, int64_t *c1 = nullptr) {
    int64_t b0, b1;
    band(block_count(L), thread_id(), thread_count(), b0, b1);
    linear_blocks(L, x, ldx, xq, xs, rows, b0, b1, epi);
    if (c0) {  // the columns this thread computed
        const int64_t ob = L.block > 0 ? L.block : PLAIN_OB;
        *c0 = b0 * ob < L.out ? b0 * ob : L.out;
        *c1 = b1 * ob < L.out ? b1 * ob : L.out;
    }
}

inline void activate(float *y, int64_t n, int64_t kind) {
    int64_t i = 0;
    if (kind == 1) {
        for (; i + VW <= n; i += VW) store(y + i, vgelu(load(y + i)));
        for (; i < n; ++i) y[i] = gelu(y[i]);
    } else {
        for (; i + VW <= n; i += VW) store(y + i, vrelu(load(y + i)));
        for (; i < n; ++i) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
    }
}

bool valid_spec(const LayerSpec &L) {
    const int64_t E = L.dim;
    if (E < 1 || L.heads < 1 || L.head_dim * L.heads != E || L.hidden < 1) return false;
    if (!valid(L.in_proj) || L.in_proj.in != E || L.in_proj.out != 3 * E) return false;
    if (!valid(L.out_proj) || L.out_proj.in != E || L.out_proj.out != E) return false;
    if (!valid(L.linear1) || L.linear1.in != E || L.linear1.out != L.hidden) return false;
    if (!valid(L.linear2) || L.linear2.in != L.hidden || L.linear2.out != E) return false;
    if (L.has_cross) {
        if (!valid(L.cross_q) || L.cross_q.in != E || L.cross_q.out != E) return false;
        if (!valid(L.cross_out) || L.cross_out.in != E || L.cross_out.out != E) return false;
    }
    return L.norm_kind == 0 || L.norm_kind == 1;
}

// Where a layer's caches are: the self-attention keys kc / values vc with strides (elements) for row, head and time
// (the step's key and value are written at time `pos`, then attended over [start, pos]), float32, or float16 with
// `half` (written rounded to nearest, saturating); the cross-attention keys ck / values cv (float32) of S source
// steps with their strides (unused without cross-attention).
struct LayerCaches {
    void *kc;
    int64_t kcb, kch, kcs;
    void *vc;
    int64_t vcb, vch, vcs;
    const float *ck;
    int64_t ckb, ckh, cks;
    const float *cv;
    int64_t cvb, cvh, cvs;
    int64_t S;
    int64_t half;
    const int64_t *cross_len;  // per row: attend to the first cross_len[r] source steps only (NULL: all S)
};

// Scratch of a step, shared by the threads: normalised rows, projections (q k v / cross q), attention output, hidden
// units, per-thread scores, the int16 rows and scales of int8 maps.
struct Scratch {
    std::vector<float> work;
    std::vector<int16_t> xq;
    float *h, *qkv, *att, *hid, *scores, *xs;
    int64_t longest;

    Scratch(int64_t rows, int64_t E, int64_t F, int64_t longest_, int threads) : longest(longest_) {
        work.resize(size_t(rows * (E + 3 * E + E + F) + threads * longest + rows));
        xq.resize(size_t(rows * (F > 3 * E ? F : 3 * E)));
        h = work.data(); qkv = h + rows * E; att = qkv + rows * 3 * E; hid = att + rows * E;
        scores = hid + rows * F; xs = scores + threads * longest;
    }
};

inline void put(float *dst, const float *src, int64_t n) { std::memcpy(dst, src, sizeof(float) * size_t(n)); }
inline void put(f16 *dst, const float *src, int64_t n) { store_halves(dst, src, n); }

// Row r, head hd of the self-attention: writes the step's key and value (from the projections `row`) at `pos` of
// the cache, then attends over [start, pos].
template <class T>
inline void self_attend(T *kc, T *vc, const LayerCaches &C, const float *row, int64_t r, int64_t hd, int64_t D,
                        int64_t E, int64_t pos, int64_t start, int64_t keys, float scale, float *out, float *scores) {
    T *kr = kc + r * C.kcb + hd * C.kch, *vr = vc + r * C.vcb + hd * C.vch;
    put(kr + pos * C.kcs, row + E + hd * D, D);
    put(vr + pos * C.vcs, row + 2 * E + hd * D, D);
    attend_one(row + hd * D, kr + start * C.kcs, C.kcs, vr + start * C.vcs, C.vcs, keys, D, scale, out, scores);
}

bool valid_caches(const LayerSpec &L, const LayerCaches &C, int64_t rows) {
    if (!C.kc || !C.vc) return false;
    if (!L.has_cross) return true;
    if (C.S < 1 || !C.ck || !C.cv) return false;
    for (int64_t r = 0; C.cross_len && r < rows; ++r)
        if (C.cross_len[r] < 1 || C.cross_len[r] > C.S) return false;
    return true;
}

// The step of one layer (see the top of this file), called by every thread of a parallel region; y may be x. Ends
// with the threads' writes to y not yet synchronised (a barrier is due before y is read).
void layer_step(const LayerSpec &L, const LayerCaches &C, const float *x, float *y, int64_t rows, int64_t pos,
                int64_t start, Scratch &W) {
    const int64_t E = L.dim, H = L.heads, D = L.head_dim, F = L.hidden;
    const int64_t keys = pos + 1 - start;
    float *h = W.h, *qkv = W.qkv, *att = W.att, *hid = W.hid, *xs = W.xs;
    int16_t *q16 = W.xq.data();
    float *my_scores = W.scores + thread_id() * W.longest;
    // ---- self-attention
    normalize_rows(L, x, rows, L.norm1_w, L.norm1_b, h, L.in_proj, q16, xs);
    linear_band(L.in_proj, h, E, q16, xs, rows, Store{qkv, 3 * E});
#pragma omp barrier
#pragma omp for schedule(static)
    for (int64_t i = 0; i < rows * H; ++i) {
        const int64_t r = i / H, hd = i % H;
        const float *row = qkv + r * 3 * E;
        if (C.half)
            self_attend(static_cast<f16 *>(C.kc), static_cast<f16 *>(C.vc), C, row, r, hd, D, E, pos, start, keys,
                        L.attention_scale, att + r * E + hd * D, my_scores);
        else
            self_attend(static_cast<float *>(C.kc), static_cast<float *>(C.vc), C, row, r, hd, D, E, pos, start,
                        keys, L.attention_scale, att + r * E + hd * D, my_scores);
    }
    quantize_rows(att, rows, E, L.out_proj, q16, xs);
    linear_band(L.out_proj, att, E, q16, xs, rows, Residual{x, E, y, E, L.scale1});
#pragma omp barrier
    // ---- cross-attention
    if (L.has_cross) {
        normalize_rows(L, y, rows, L.norm_cross_w, L.norm_cross_b, h, L.cross_q, q16, xs);
        linear_band(L.cross_q, h, E, q16, xs, rows, Store{qkv, E});
#pragma omp barrier
#pragma omp for schedule(static)
        for (int64_t i = 0; i < rows * H; ++i) {
            const int64_t r = i / H, hd = i % H;
            const int64_t S = C.cross_len ? C.cross_len[r] : C.S;
            attend_one(qkv + r * E + hd * D, C.ck + r * C.ckb + hd * C.ckh, C.cks, C.cv + r * C.cvb + hd * C.cvh,
                       C.cvs, S, D, L.attention_scale, att + r * E + hd * D, my_scores);
        }
        quantize_rows(att, rows, E, L.cross_out, q16, xs);
        linear_band(L.cross_out, att, E, q16, xs, rows, Residual{y, E, y, E, L.scale_cross});
#pragma omp barrier
    }
    // ---- feed-forward
    normalize_rows(L, y, rows, L.norm2_w, L.norm2_b, h, L.linear1, q16, xs);
    int64_t c0 = 0, c1 = 0;
    linear_band(L.linear1, h, E, q16, xs, rows, Store{hid, F}, &c0, &c1);
    for (int64_t r = 0; r < rows; ++r) activate(hid + r * F + c0, c1 - c0, L.activation);
#pragma omp barrier
    quantize_rows(hid, rows, F, L.linear2, q16, xs);
    linear_band(L.linear2, hid, F, q16, xs, rows, Residual{y, E, y, E, L.scale2});
}

}  // namespace

extern "C" {

// One decoding step of `n` layers in a row (see the top of this file), in one parallel region: x [rows, dim] ->
// y [rows, dim] (y may be x); layer k reads specs[k] and caches[k], all at time `pos`, attending over
// [start, pos]. Returns 0, or 1 for invalid arguments.
int audiocraft_decoder_stack(int64_t n, const LayerSpec *const *specs, const LayerCaches *caches, const float *x,
                             float *y, int64_t rows, int64_t pos, int64_t start, int threads) {
    if (n < 1 || !specs || !caches || rows < 1 || threads < 1 || pos < 0 || start < 0 || start > pos) return 1;
    int64_t E = 0, F = 0, longest = pos + 1 - start;
    for (int64_t k = 0; k < n; ++k) {
        if (!specs[k] || !valid_spec(*specs[k]) || !valid_caches(*specs[k], caches[k], rows)) return 1;
        if (k > 0 && specs[k]->dim != E) return 1;
        E = specs[k]->dim;
        F = specs[k]->hidden > F ? specs[k]->hidden : F;
        longest = caches[k].S > longest ? caches[k].S : longest;
    }
    Scratch W(rows, E, F, longest, threads);
#pragma omp parallel num_threads(threads)
    {
        for (int64_t k = 0; k < n; ++k) {
            layer_step(*specs[k], caches[k], k == 0 ? x : y, y, rows, pos, start, W);
#pragma omp barrier
        }
    }
    return 0;
}

// One layer: audiocraft_decoder_stack of n = 1, the caches given one by one.
int audiocraft_decoder_layer(const LayerSpec *spec, const float *x, float *y, int64_t rows, float *kc, int64_t kcb,
                             int64_t kch, int64_t kcs, float *vc, int64_t vcb, int64_t vch, int64_t vcs,
                             int64_t pos, int64_t start, const float *ck, int64_t ckb, int64_t ckh, int64_t cks,
                             const float *cv, int64_t cvb, int64_t cvh, int64_t cvs, int64_t S, int threads) {
    const LayerCaches caches{kc, kcb, kch, kcs, vc, vcb, vch, vcs, ck, ckb, ckh, cks, cv, cvb, cvh, cvs, S, 0,
                             nullptr};
    return audiocraft_decoder_stack(1, &spec, &caches, x, y, rows, pos, start, threads);
}

// LayerNorm (rms = 0) or RMSNorm (rms = 1) of each row: x [rows, n] (row stride ldx) -> y [rows, n] (ldy).
int audiocraft_normalize(const float *x, int64_t ldx, int64_t rows, int64_t n, const float *w, const float *b,
                         float eps, int rms, float *y, int64_t ldy, int threads) {
    if (rows < 0 || n < 1 || threads < 1) return 1;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t r = 0; r < rows; ++r) normalize_row(x + r * ldx, n, w, b, eps, rms != 0, y + r * ldy);
    return 0;
}

// n floats to IEEE halves as the step caches keys and values (round to nearest even, saturating at +-65504).
int audiocraft_to_half(const float *x, int64_t n, uint16_t *out) {
    if (n < 0) return 1;
    store_halves(reinterpret_cast<f16 *>(out), x, n);
    return 0;
}

// GELU (kind 1, exact erf form) or ReLU (kind 0) of n contiguous floats, in place.
int audiocraft_activate(float *y, int64_t n, int kind) {
    if (n < 0 || (kind != 0 && kind != 1)) return 1;
    activate(y, n, kind);
    return 0;
}

}  // extern "C"
