// Attention of one query step and the normalisations of a transformer layer, for one row at a time.
#pragma once

#include "simd.h"

namespace ackernels {

// out = softmax(scale * q . k[s]) @ v[s] over the S keys of one batch item and head (key s at k + s * sk, value
// at v + s * sv, D contiguous elements each, float or f16): what a decoding step of a transformer computes, reading
// each key and value once. `scores`: S floats of scratch.
template <class T>
inline void attend_one(const float *q, const T *k, int64_t sk, const T *v, int64_t sv, int64_t S, int64_t D,
                       float scale, float *out, float *scores) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t s = 0; s < S; ++s) {
        const T *ks = k + s * sk;
        vf acc = vf{};
        int64_t d = 0;
        for (; d + VW <= D; d += VW) acc += load(q + d) * load(ks + d);
        float dot = hsum(acc);
        for (; d < D; ++d) dot += q[d] * scalar(ks + d);
        scores[s] = dot * scale;
        m = scores[s] > m ? scores[s] : m;
    }
    float total = 0.0f;
    int64_t s = 0;
    vf tv = vf{};
    const vf mv = splat(m);
    for (; s + VW <= S; s += VW) {
        vf e = vexp(load(scores + s) - mv);
        store(scores + s, e);
        tv += e;
    }
    total = hsum(tv);
    for (; s < S; ++s) {
        scores[s] = std::exp(scores[s] - m);
        total += scores[s];
    }
    const float inv = 1.0f / total;
    int64_t d = 0;
    for (; d + 4 * VW <= D; d += 4 * VW) {  // four vectors of the output at a time
        vf a0 = vf{}, a1 = vf{}, a2 = vf{}, a3 = vf{};
        for (int64_t t = 0; t < S; ++t) {
            const T *vs = v + t * sv + d;
            const vf p = splat(scores[t]);
            a0 += p * load(vs); a1 += p * load(vs + VW); a2 += p * load(vs + 2 * VW); a3 += p * load(vs + 3 * VW);
        }
        store(out + d, a0 * inv); store(out + d + VW, a1 * inv);
        store(out + d + 2 * VW, a2 * inv); store(out + d + 3 * VW, a3 * inv);
    }
    for (; d + VW <= D; d += VW) {
        vf a = vf{};
        for (int64_t t = 0; t < S; ++t) a += splat(scores[t]) * load(v + t * sv + d);
        store(out + d, a * inv);
    }
    for (; d < D; ++d) {
        float a = 0.0f;
        for (int64_t t = 0; t < S; ++t) a += scores[t] * scalar(v + t * sv + d);
        out[d] = a * inv;
    }
}

// y = (x - mean) / sqrt(var + eps) * w + b over the n features of one row (LayerNorm; biased variance), or with
// `rms`: y = x / sqrt(mean(x^2) + eps) * w (RMSNorm). w, b may be NULL (1, 0).
inline void normalize_row(const float *x, int64_t n, const float *w, const float *b, float eps, bool rms, float *y) {
    float mean = 0.0f;
    int64_t i = 0;
    if (!rms) {
        vf acc = vf{};
        for (; i + VW <= n; i += VW) acc += load(x + i);
        float sum = hsum(acc);
        for (; i < n; ++i) sum += x[i];
        mean = sum / float(n);
    }
    vf acc = vf{};
    const vf mv = splat(mean);
    for (i = 0; i + VW <= n; i += VW) {
        const vf c = load(x + i) - mv;
        acc += c * c;
    }
    float sq = hsum(acc);
    for (; i < n; ++i) sq += (x[i] - mean) * (x[i] - mean);
    const float rstd = 1.0f / std::sqrt(sq / float(n) + eps);
    const vf rv = splat(rstd);
    for (i = 0; i + VW <= n; i += VW) {
        vf v = (load(x + i) - mv) * rv;
        if (w) v *= load(w + i);
        if (b) v += load(b + i);
        store(y + i, v);
    }
    for (; i < n; ++i) {
        float v = (x[i] - mean) * rstd;
        if (w) v *= w[i];
        if (b) v += b[i];
        y[i] = v;
    }
}

}  // namespace ackernels
