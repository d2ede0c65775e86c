// Matrix-vector kernels for the decoding step of the language model on CPU.
//
//     y[r, o] = scale[o] * sum_i x[r, i] * w[o, i]  (+ bias[o])      r < rows, o < out, i < in
//
// x: float32 [rows, in] (row stride ldx), y: float32 [rows, out] (row stride ldy), w: [out, in] contiguous, held
// as float32, bfloat16 (raw uint16) or int8 (then `scale` holds one float per output row; NULL otherwise).
// A decoding step has 2-16 rows, so these are bound by how fast the weights stream from memory: each thread
// reads its own contiguous band of output rows, several rows at a time, and keeps all the products of a block in
// registers. Each output is summed by one thread in a fixed order, so results do not depend on the thread count.
//
// Written with GCC/Clang vector extensions, which the compiler maps to AVX-512, AVX2 or NEON (-march=native).
// Built at first use by audiocraft/utils/native_kernels.py; threads come from the OpenMP runtime PyTorch loaded.
#include <cstdint>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>
#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

#if defined(__AVX512F__)
constexpr int VW = 16;   // floats per vector
constexpr int ACC = 16;  // accumulators kept in registers
#elif defined(__AVX__) || defined(__ARM_NEON)
constexpr int VW = 8;
constexpr int ACC = 8;
#else
constexpr int VW = 4;
constexpr int ACC = 8;
#endif

#ifndef PREFETCH
#define PREFETCH 8192
#endif

typedef float vf __attribute__((vector_size(VW * 4)));
typedef uint32_t vu __attribute__((vector_size(VW * 4)));
typedef uint16_t vh __attribute__((vector_size(VW * 2)));

inline vf load(const float *p) { vf v; std::memcpy(&v, p, sizeof v); return v; }

#if defined(__AVX512F__)
inline vf load(const uint16_t *p) {  // bfloat16: the high half of a float32
    __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(p)));
    return reinterpret_cast<vf>(_mm512_slli_epi32(u, 16));
}
#elif defined(__AVX2__)
inline vf load(const uint16_t *p) {
    __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p)));
    return reinterpret_cast<vf>(_mm256_slli_epi32(u, 16));
}
#else
inline vf load(const uint16_t *p) {
    vh h; std::memcpy(&h, p, sizeof h);
    vu u = __builtin_convertvector(h, vu) << 16;
    vf v; std::memcpy(&v, &u, sizeof v); return v;
}
#endif

inline float scalar(const float *p) { return *p; }
inline float scalar(const uint16_t *p) { uint32_t u = uint32_t(*p) << 16; float f; std::memcpy(&f, &u, 4); return f; }

inline float hsum(vf v) {
#if defined(__AVX512F__)
    return _mm512_reduce_add_ps(v);
#elif defined(__AVX2__)
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
#else
    float s = 0.0f;
    for (int k = 0; k < VW; ++k) s += v[k];
    return s;
#endif
}

// Keeps a loaded vector in a register: without it the compiler folds the load into each multiply-add that uses
// it and reads the same weights once per row of x.
inline void in_register(vf &v) {
#if defined(__x86_64__) && defined(__AVX512F__)
    asm("" : "+v"(v));
#elif defined(__x86_64__)
    asm("" : "+x"(v));
#else
    (void)v;
#endif
}

// R rows of x times OB weight rows, all R * OB sums in registers. The vector of weights (o, i..i+VW) is at
//   plain layout:  w + o * in + i       (w: the first of OB consecutive rows of a [out, in] matrix)
//   packed layout: w + i * OB + o * VW  (w: a block of OB rows stored chunk by chunk, one stream to read)
template <int R, int OB, bool PACKED, class T>
inline void block(const float *x, int64_t ldx, const T *w, int64_t in, float *y, int64_t ldy, const float *scale,
                  const float *bias) {
    vf acc[R][OB];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
        for (int o = 0; o < OB; ++o) acc[r][o] = vf{};
    int64_t i = 0;
    for (; i + VW <= in; i += VW) {
        vf xv[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) xv[r] = load(x + r * ldx + i);
#pragma GCC unroll 8
        for (int o = 0; o < OB; ++o) {
            vf wv = load(PACKED ? w + i * OB + o * VW : w + o * in + i);
            in_register(wv);
            // the band of rows, read linearly: prefetched ahead of where the hardware prefetcher gets to
            __builtin_prefetch(w + i * OB + o * VW + PREFETCH / sizeof(T), 0, 0);
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) acc[r][o] += xv[r] * wv;
        }
    }
    for (int r = 0; r < R; ++r) {
        for (int o = 0; o < OB; ++o) {
            float s = hsum(acc[r][o]);
            if (!PACKED)  // the packed layout has no tail (in % VW == 0)
                for (int64_t j = i; j < in; ++j) s += x[r * ldx + j] * scalar(w + o * in + j);
            if (scale) s *= scale[o];
            if (bias) s += bias[o];
            y[r * ldy + o] = s;
        }
    }
}

// f(std::integral_constant<int, r>) for a run-time r in 1..RT: the block functions need R at compile time.
template <int RT, class F>
inline void with_rows(int r, const F &f) {
    if constexpr (RT > 0) {
        if (r == RT)
            f(std::integral_constant<int, RT>{});
        else
            with_rows<RT - 1>(r, f);
    }
}

// Threads split the weight rows in blocks of OB (contiguous bands of weights); each block goes through the rows of
// x in tiles of RT: tile(o0, r0, rt, std::integral_constant<int, ob>) for the block of weight rows from o0, with
// ob = OB, or one row at a time for a last, shorter block (only in the plain layout). A block is read from memory
// once: the later row tiles find it in the cache.
template <int RT, int OB, class Tile>
void for_each_tile(int64_t rows, int64_t out, int threads, const Tile &tile) {
    const int64_t nblocks = (out + OB - 1) / OB;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t b = 0; b < nblocks; ++b) {
        const int64_t o0 = b * OB;
        const int ob = out - o0 < OB ? int(out - o0) : OB;
        for (int64_t r0 = 0; r0 < rows; r0 += RT) {
            const int rt = rows - r0 < RT ? int(rows - r0) : RT;
            if (ob == OB) {
                tile(o0, r0, rt, std::integral_constant<int, OB>{});
            } else {
                for (int o = 0; o < ob; ++o) tile(o0 + o, r0, rt, std::integral_constant<int, 1>{});
            }
        }
    }
}

template <int RT, int OB, bool PACKED, class T>
void gemv(const float *x, int64_t ldx, int64_t rows, const T *w, int64_t out, int64_t in, const float *scale,
          const float *bias, float *y, int64_t ldy, int threads) {
    for_each_tile<RT, OB>(rows, out, threads, [&](int64_t o0, int64_t r0, int rt, auto ob) {
        constexpr int N = decltype(ob)::value;
        with_rows<RT>(rt, [&](auto r) {
            block<decltype(r)::value, N, PACKED && N == OB>(x + r0 * ldx, ldx, w + o0 * in, in, y + r0 * ldy + o0,
                                                            ldy, scale ? scale + o0 : nullptr,
                                                            bias ? bias + o0 : nullptr);
        });
    });
}

constexpr int cap(int v) { return v < 1 ? 1 : (v > 8 ? 8 : v); }

template <class T>
void dispatch_plain(const float *x, int64_t ldx, int64_t rows, const void *w, int64_t out, int64_t in,
                    const float *scale, const float *bias, float *y, int64_t ldy, int threads) {
    const T *wt = static_cast<const T *>(w);
    if (rows == 1)
        gemv<1, 8, false>(x, ldx, rows, wt, out, in, scale, bias, y, ldy, threads);
    else if (rows <= 3)
        gemv<2, cap(ACC / 2), false>(x, ldx, rows, wt, out, in, scale, bias, y, ldy, threads);
    else
        gemv<4, cap(ACC / 4), false>(x, ldx, rows, wt, out, in, scale, bias, y, ldy, threads);
}

template <class T, int OB>
void dispatch_packed_ob(const float *x, int64_t ldx, int64_t rows, const void *w, int64_t out, int64_t in,
                        const float *scale, const float *bias, float *y, int64_t ldy, int threads) {
    gemv<cap(ACC / OB), OB, true>(x, ldx, rows, static_cast<const T *>(w), out, in, scale, bias, y, ldy, threads);
}

template <class T>
int dispatch_packed(int block_rows_, const float *x, int64_t ldx, int64_t rows, const void *w, int64_t out,
                    int64_t in, const float *scale, const float *bias, float *y, int64_t ldy, int threads) {
    if (out % block_rows_ != 0 || in % VW != 0) return 1;
    switch (block_rows_) {
        case 1: dispatch_packed_ob<T, 1>(x, ldx, rows, w, out, in, scale, bias, y, ldy, threads); return 0;
        case 2: dispatch_packed_ob<T, 2>(x, ldx, rows, w, out, in, scale, bias, y, ldy, threads); return 0;
        case 4: dispatch_packed_ob<T, 4>(x, ldx, rows, w, out, in, scale, bias, y, ldy, threads); return 0;
        case 8: dispatch_packed_ob<T, 8>(x, ldx, rows, w, out, in, scale, bias, y, ldy, threads); return 0;
        default: return 1;
    }
}

// ---- int8 weights x int16 activations ------------------------------------------------------------------------
// Each row of x is quantized to int16 with its own scale (max |x| / 32767); the products with the int8 weights
// are summed exactly in integers (int32 lanes over segments of SEG columns, short enough never to overflow, then
// int64), and the sum is scaled back: y = sum * x_scale[r] * w_scale[o] + bias[o]. The integer sum does not
// depend on the order of the additions, so neither do the results (rows, threads, layout).

constexpr int64_t SEG = 2048;

#if defined(__AVX512BW__)
constexpr int IW = 32;  // int16 lanes per vector (= int8 weights per step)
typedef __m512i ivec;
inline ivec izero() { return _mm512_setzero_si512(); }
inline ivec load_w8(const int8_t *p) {
    return _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(p)));
}
inline ivec load_x16(const int16_t *p) { return _mm512_loadu_si512(p); }
inline ivec idot(ivec acc, ivec a, ivec b) {  // acc[k] += a[2k] b[2k] + a[2k+1] b[2k+1]
#if defined(__AVX512VNNI__)
    return _mm512_dpwssd_epi32(acc, a, b);
#else
    return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b));
#endif
}
inline int64_t ihsum(ivec v) {
    __m512i lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(v));
    __m512i hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(v, 1));
    return _mm512_reduce_add_epi64(_mm512_add_epi64(lo, hi));
}
#elif defined(__AVX2__)
constexpr int IW = 16;
typedef __m256i ivec;
inline ivec izero() { return _mm256_setzero_si256(); }
inline ivec load_w8(const int8_t *p) {
    return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p)));
}
inline ivec load_x16(const int16_t *p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i *>(p)); }
inline ivec idot(ivec acc, ivec a, ivec b) {
#if defined(__AVXVNNI__)
    return _mm256_dpwssd_avx_epi32(acc, a, b);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}
inline int64_t ihsum(ivec v) {
    int32_t lanes[8];
    _mm256_storeu_si256(reinterpret_cast<__m256i *>(lanes), v);
    int64_t s = 0;
    for (int k = 0; k < 8; ++k) s += lanes[k];
    return s;
}
#else
constexpr int IW = 8;
typedef int32_t ivec __attribute__((vector_size(32)));
typedef int16_t vx16 __attribute__((vector_size(16)));
typedef int8_t vw8 __attribute__((vector_size(8)));
inline ivec izero() { return ivec{}; }
inline ivec load_w8(const int8_t *p) { vw8 b; std::memcpy(&b, p, sizeof b); return __builtin_convertvector(b, ivec); }
inline ivec load_x16(const int16_t *p) { vx16 h; std::memcpy(&h, p, sizeof h); return __builtin_convertvector(h, ivec); }
inline ivec idot(ivec acc, ivec a, ivec b) { return acc + a * b; }
inline int64_t ihsum(ivec v) {
    int64_t s = 0;
    for (int k = 0; k < IW; ++k) s += v[k];
    return s;
}
#endif

inline void in_register_i(ivec &v) {
#if defined(__x86_64__) && defined(__AVX512F__)
    asm("" : "+v"(v));
#elif defined(__x86_64__) && defined(__AVX2__)
    asm("" : "+x"(v));
#else
    (void)v;
#endif
}

// R rows of quantized x times OB int8 weight rows; the vector (o, i..i+IW) is at w + o * in + i (plain) or
// w + i * OB + o * IW (packed).
template <int R, int OB, bool PACKED>
inline void block_i8(const int16_t *xq, int64_t ldq, const float *xs, const int8_t *w, int64_t in, float *y,
                     int64_t ldy, const float *scale, const float *bias) {
    int64_t total[R][OB] = {};
    const int64_t full = in - in % IW;
    int64_t i = 0;
    while (i < full) {
        const int64_t end = full - i < SEG ? full : i + SEG;
        ivec acc[R][OB];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
            for (int o = 0; o < OB; ++o) acc[r][o] = izero();
        for (; i < end; i += IW) {
            ivec xv[R];
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) xv[r] = load_x16(xq + r * ldq + i);
#pragma GCC unroll 8
            for (int o = 0; o < OB; ++o) {
                ivec wv = load_w8(PACKED ? w + i * OB + o * IW : w + o * in + i);
                in_register_i(wv);
                __builtin_prefetch(w + i * OB + o * IW + PREFETCH, 0, 0);
#pragma GCC unroll 8
                for (int r = 0; r < R; ++r) acc[r][o] = idot(acc[r][o], xv[r], wv);
            }
        }
        for (int r = 0; r < R; ++r)
            for (int o = 0; o < OB; ++o) total[r][o] += ihsum(acc[r][o]);
    }
    for (int r = 0; r < R; ++r) {
        for (int o = 0; o < OB; ++o) {
            int64_t t = total[r][o];
            if (!PACKED)  // the packed layout has no tail (in % IW == 0)
                for (int64_t j = full; j < in; ++j) t += int64_t(xq[r * ldq + j]) * int64_t(w[o * in + j]);
            float v = float(double(t) * double(xs[r]) * double(scale[o]));
            y[r * ldy + o] = bias ? v + bias[o] : v;
        }
    }
}

template <int RT, int OB, bool PACKED>
void gemv_i8(const int16_t *xq, const float *xs, int64_t rows, const int8_t *w, int64_t out, int64_t in,
             const float *scale, const float *bias, float *y, int64_t ldy, int threads) {
    for_each_tile<RT, OB>(rows, out, threads, [&](int64_t o0, int64_t r0, int rt, auto ob) {
        constexpr int N = decltype(ob)::value;
        with_rows<RT>(rt, [&](auto r) {
            block_i8<decltype(r)::value, N, PACKED && N == OB>(xq + r0 * in, in, xs + r0, w + o0 * in, in,
                                                               y + r0 * ldy + o0, ldy, scale + o0,
                                                               bias ? bias + o0 : nullptr);
        });
    });
}

// Quantizes each row of x to int16 (scale max |x| / 32767); a row holding NaN or inf gets a NaN scale.
void quantize_rows(const float *x, int64_t ldx, int64_t rows, int64_t in, int16_t *xq, float *xs) {
    for (int64_t r = 0; r < rows; ++r) {
        const float *xr = x + r * ldx;
        float m = 0.0f;
        bool finite = true;
        for (int64_t i = 0; i < in; ++i) {
            const float a = std::fabs(xr[i]);
            finite &= a <= 3.4028235e38f;  // false for NaN and inf
            m = a > m ? a : m;
        }
        int16_t *q = xq + r * in;
        if (!finite || m == 0.0f) {
            std::memset(q, 0, sizeof(int16_t) * size_t(in));
            xs[r] = finite ? 0.0f : std::numeric_limits<float>::quiet_NaN();
            continue;
        }
        const float inv = 32767.0f / m;
        for (int64_t i = 0; i < in; ++i) {
            float v = std::nearbyint(xr[i] * inv);
            v = v > 32767.0f ? 32767.0f : (v < -32767.0f ? -32767.0f : v);
            q[i] = int16_t(v);
        }
        xs[r] = m / 32767.0f;
    }
}

constexpr int I8_BLOCK = ACC / 4 > 1 ? ACC / 4 : 2;  // packed block rows of int8 weights

int linear_i8(int block, const float *x, int64_t ldx, int64_t rows, const int8_t *w, int64_t out, int64_t in,
              const float *scale, const float *bias, float *y, int64_t ldy, int threads) {
    if (!scale) return 1;
    if (block > 0 && (block != I8_BLOCK || out % block != 0 || in % IW != 0)) return 1;
    std::vector<int16_t> xq(static_cast<size_t>(rows * in));
    std::vector<float> xs(static_cast<size_t>(rows));
    quantize_rows(x, ldx, rows, in, xq.data(), xs.data());
    if (block > 0) {
        gemv_i8<cap(ACC / I8_BLOCK), I8_BLOCK, true>(xq.data(), xs.data(), rows, w, out, in, scale, bias, y, ldy,
                                                     threads);
    } else if (rows == 1) {
        gemv_i8<1, 8, false>(xq.data(), xs.data(), rows, w, out, in, scale, bias, y, ldy, threads);
    } else if (rows <= 3) {
        gemv_i8<2, cap(ACC / 2), false>(xq.data(), xs.data(), rows, w, out, in, scale, bias, y, ldy, threads);
    } else {
        gemv_i8<4, cap(ACC / 4), false>(xq.data(), xs.data(), rows, w, out, in, scale, bias, y, ldy, threads);
    }
    return 0;
}

// ---- attention of one query step ---------------------------------------------------------------------------
// out[b, h] = softmax(scale * q[b, h] . k[b, h, s]) @ v[b, h, s] over the S keys, for each batch item and head:
// what a decoding step of a transformer computes, reading each key and value once. Threads split the (b, h)
// pairs; each is computed by one thread in a fixed order.

#if defined(__AVX512F__)
inline vf vexp(vf x) {  // e^x for x <= 0 (scores minus their max): range reduction, then a degree-6 polynomial
    const __m512 ln2_hi = _mm512_set1_ps(0.693359375f), ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
    __m512 v = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, ln2_hi, v);
    r = _mm512_fnmadd_ps(n, ln2_lo, r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}
#else
inline vf vexp(vf x) {
    vf out;
    for (int k = 0; k < VW; ++k) out[k] = std::exp(x[k] < -87.0f ? -87.0f : x[k]);
    return out;
}
#endif

void attend_one(const float *q, const float *k, int64_t sk, const float *v, int64_t sv, int64_t S, int64_t D,
                float scale, float *out, float *scores) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t s = 0; s < S; ++s) {
        const float *ks = k + s * sk;
        vf acc = vf{};
        int64_t d = 0;
        for (; d + VW <= D; d += VW) acc += load(q + d) * load(ks + d);
        float dot = hsum(acc);
        for (; d < D; ++d) dot += q[d] * ks[d];
        scores[s] = dot * scale;
        m = scores[s] > m ? scores[s] : m;
    }
    float total = 0.0f;
    int64_t s = 0;
    vf tv = vf{};
    const vf mv = vf{} + m;
    for (; s + VW <= S; s += VW) {
        vf e = vexp(load(scores + s) - mv);
        std::memcpy(scores + s, &e, sizeof e);
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
            const float *vs = v + t * sv + d;
            const vf p = vf{} + scores[t];
            a0 += p * load(vs); a1 += p * load(vs + VW); a2 += p * load(vs + 2 * VW); a3 += p * load(vs + 3 * VW);
        }
        a0 *= inv; a1 *= inv; a2 *= inv; a3 *= inv;
        std::memcpy(out + d, &a0, sizeof a0); std::memcpy(out + d + VW, &a1, sizeof a1);
        std::memcpy(out + d + 2 * VW, &a2, sizeof a2); std::memcpy(out + d + 3 * VW, &a3, sizeof a3);
    }
    for (; d + VW <= D; d += VW) {
        vf a = vf{};
        for (int64_t t = 0; t < S; ++t) a += (vf{} + scores[t]) * load(v + t * sv + d);
        a *= inv;
        std::memcpy(out + d, &a, sizeof a);
    }
    for (; d < D; ++d) {
        float a = 0.0f;
        for (int64_t t = 0; t < S; ++t) a += scores[t] * v[t * sv + d];
        out[d] = a * inv;
    }
}

}  // namespace

extern "C" {

// kind: 0 float32, 1 bfloat16, 2 int8; w in the plain [out, in] layout. Returns 0, or 1 for invalid arguments.
int audiocraft_linear(int kind, const float *x, int64_t ldx, int64_t rows, const void *w, int64_t out, int64_t in,
                      const float *scale, const float *bias, float *y, int64_t ldy, int threads) {
    if (rows < 0 || out < 0 || in < 0 || threads < 1) return 1;
    switch (kind) {
        case 0: dispatch_plain<float>(x, ldx, rows, w, out, in, scale, bias, y, ldy, threads); return 0;
        case 1: dispatch_plain<uint16_t>(x, ldx, rows, w, out, in, scale, bias, y, ldy, threads); return 0;
        case 2: return linear_i8(0, x, ldx, rows, static_cast<const int8_t *>(w), out, in, scale, bias, y, ldy, threads);
        default: return 1;
    }
}

// The same with w in the packed layout of `block` rows: [out / block, in / VW, block, VW] (see block()).
int audiocraft_linear_packed(int kind, int block, const float *x, int64_t ldx, int64_t rows, const void *w,
                             int64_t out, int64_t in, const float *scale, const float *bias, float *y, int64_t ldy,
                             int threads) {
    if (rows < 0 || out < 0 || in < 0 || threads < 1 || block < 1) return 1;
    switch (kind) {
        case 0: return dispatch_packed<float>(block, x, ldx, rows, w, out, in, scale, bias, y, ldy, threads);
        case 1: return dispatch_packed<uint16_t>(block, x, ldx, rows, w, out, in, scale, bias, y, ldy, threads);
        case 2: return linear_i8(block, x, ldx, rows, static_cast<const int8_t *>(w), out, in, scale, bias, y, ldy,
                                 threads);
        default: return 1;
    }
}

// Rearranges w [out, in] (elements of `size` bytes) into the packed layout [out / block, in / chunk, block, chunk]
// (out % block == 0, in % chunk == 0), threads over blocks. Returns 0, or 1 for invalid arguments.
int audiocraft_pack(int size, const void *w, int64_t out, int64_t in, int block, int chunk, void *dst, int threads) {
    if (size < 1 || block < 1 || chunk < 1 || out % block != 0 || in % chunk != 0 || threads < 1) return 1;
    const char *src = static_cast<const char *>(w);
    char *d = static_cast<char *>(dst);
    const int64_t nblocks = out / block, nchunks = in / chunk, piece = int64_t(chunk) * size;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t b = 0; b < nblocks; ++b) {
        char *to = d + b * block * in * size;
        for (int64_t c = 0; c < nchunks; ++c)
            for (int o = 0; o < block; ++o, to += piece)
                std::memcpy(to, src + ((b * block + o) * in + c * chunk) * size, size_t(piece));
    }
    return 0;
}

// audiocraft_pack for n weights in one call (so a caller can run it on a thread of its own without the GIL).
// Where release[k] is set, the whole pages of weight k are then dropped from the process (madvise DONTNEED):
// only for weights mapped privately from a file and never modified, which read the file again if used.
int audiocraft_pack_many(int n, const int *size, const void *const *w, const int64_t *out, const int64_t *in,
                         const int *block, const int *chunk, void *const *dst, const int *release, int threads) {
    int failed = 0;
    for (int k = 0; k < n; ++k) {
        failed |= audiocraft_pack(size[k], w[k], out[k], in[k], block[k], chunk[k], dst[k], threads);
#if defined(__linux__)
        if (release && release[k]) {
            const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
            const uintptr_t first = reinterpret_cast<uintptr_t>(w[k]);
            const uintptr_t last = first + uintptr_t(out[k] * in[k] * size[k]);
            const uintptr_t lo = (first + page - 1) / page * page, hi = last / page * page;
            if (hi > lo) madvise(reinterpret_cast<void *>(lo), hi - lo, MADV_DONTNEED);
        }
#endif
    }
    return failed;
}

// One query step of attention (see attend_one): q [B, H, D], k / v [B, H, S, D] and out [B, H, D], each with
// its own strides (elements) for b, h and s; the last dimension is contiguous. Returns 0, or 1 for bad arguments.
int audiocraft_attend(const float *q, int64_t qb, int64_t qh, const float *k, int64_t kb, int64_t kh, int64_t ks,
                      const float *v, int64_t vb, int64_t vh, int64_t vs, float *out, int64_t ob, int64_t oh,
                      int64_t B, int64_t H, int64_t S, int64_t D, float scale, int threads) {
    if (B < 0 || H < 0 || S < 1 || D < 1 || threads < 1) return 1;
    std::vector<float> scratch(static_cast<size_t>(threads * S));
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t i = 0; i < B * H; ++i) {
        int slot = 0;
#if defined(_OPENMP)
        slot = omp_get_thread_num();
#endif
        const int64_t b = i / H, h = i % H;
        attend_one(q + b * qb + h * qh, k + b * kb + h * kh, ks, v + b * vb + h * vh, vs, S, D, scale,
                   out + b * ob + h * oh, scratch.data() + slot * S);
    }
    return 0;
}

// The packed layout of a kind: blocks of `block` rows, chunks of `chunk` columns (see block() and block_i8()).
// Floats: the widest block one pass of two rows of x keeps in registers; int8: four rows of x.
int audiocraft_block_rows(int kind) { return kind == 2 ? I8_BLOCK : cap(ACC / 2); }
int audiocraft_chunk(int kind) { return kind == 2 ? IW : VW; }

}  // extern "C"
