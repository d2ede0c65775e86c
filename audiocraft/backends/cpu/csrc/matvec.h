// Matrix-vector kernels for the decoding step of the language model on CPU:
//
//     y[r, o] = epilogue(scale[o] * sum_i x[r, i] * w[o, i]  (+ bias[o]))      r < rows, o < out, i < in
//
// x: float32 [rows, in] (row stride ldx); w: [out, in] held as float32, bfloat16 (raw uint16) or int8 (then `scale`
// holds one float per output row; NULL otherwise), either plain ([out, in] contiguous) or packed: blocks of OB
// rows stored chunk by chunk, [out / OB, in / VW, OB, VW], so that each block is one contiguous stream.
//
// A decoding step has 2-16 rows, so these kernels are bound by how fast the weights stream from memory: each
// thread reads its own contiguous band of blocks, and every element of a block is used for all rows of x while
// it is in the L1 cache. With few rows one tile of rows holds every product of a block in registers; with more,
// the block is walked in chunks of columns (K_BYTES of weights each) and every tile of rows runs over a chunk
// before the next one, the partial sums of the tiles kept in a small buffer; many rows (MAGNeT's full-sequence
// passes) go in panels of PANEL rows. Whatever the tiling, each output is the same sequence of vector
// multiply-adds (lane k sums the columns i = k mod VW in increasing order), then the same horizontal sum: results
// do not depend on the number of rows, the tiling or the thread count.
#pragma once

#include <type_traits>
#include <vector>

#include "simd.h"

namespace ackernels {

#ifndef PREFETCH
#define PREFETCH 8192
#endif
// Locality hint of the weight prefetches: 1 (into the outer caches). The non-temporal hint (0) halved the float32
// stream on an Intel Xeon (12.5 against 28.6 GB/s for 24 layers' weights, 2 rows, 2 threads) and slowed bf16 and
// int8 by a quarter; 1, 2 and 3 were within a few percent of each other there, 1 the fastest.
#ifndef PREFETCH_LOCALITY
#define PREFETCH_LOCALITY 1
#endif

constexpr int64_t K_BYTES = 8192;  // bytes of weights of a block per chunk of columns (multi-tile passes)
constexpr int64_t PANEL = 48;      // rows of x per panel (multi-tile passes)

// Cache lines of weights one step of a tile reads (bytes per step / 64, at least 1).
constexpr int lines_per_step(int bytes) { return bytes >= 64 ? bytes / 64 : 1; }

// ---- what happens to a finished sum ------------------------------------------------------------------------
struct Store {  // y[r, o] = s
    float *y;
    int64_t ldy;
    void operator()(int64_t r, int64_t o, float s) const { y[r * ldy + o] = s; }
};

struct Residual {  // y[r, o] = x[r, o] + gain[o] * s (gain may be NULL: 1); y may be x
    const float *x;
    int64_t ldx;
    float *y;
    int64_t ldy;
    const float *gain;
    void operator()(int64_t r, int64_t o, float s) const {
        y[r * ldy + o] = x[r * ldx + o] + (gain ? gain[o] * s : s);
    }
};

// The finished sum of output o (of the whole matrix) from its vector accumulator: the horizontal sum, the plain
// layout's scalar tail, the scale and the bias, in that order.
template <class T, class Epi>
inline void finish(const vf &acc, const float *xr, const T *wrow, int64_t tail0, int64_t in, const float *scale,
                   const float *bias, int64_t r, int64_t o, const Epi &epi) {
    float s = hsum(acc);
    for (int64_t j = tail0; j < in; ++j) s += xr[j] * scalar(wrow + j);
    if (scale) s *= scale[o];
    if (bias) s += bias[o];
    epi(r, o, s);
}

// R rows of x times OB weight rows over the columns [i0, i1) (multiples of VW), the R * OB vector sums in
// registers, starting from `acc` (or zero when `fresh`) and written back to it. The weight vector (o, i..i+VW) is
//   plain layout:  w + o * in + i       (w: the first of OB consecutive rows of a [out, in] matrix)
//   packed layout: w + i * ob_stride + o * VW  (w: a block of ob_stride >= OB rows stored chunk by chunk)
// `pf`, `pf_lines`: cache lines to prefetch per step of VW columns, from pf on.
template <int R, int OB, bool PACKED, class T>
inline void accumulate(const float *x, int64_t ldx, const T *w, int64_t in, int ob_stride, int64_t i0, int64_t i1,
                       vf *acc_out, bool fresh, const char *pf, int pf_lines) {
    vf acc[R][OB];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
        for (int o = 0; o < OB; ++o) acc[r][o] = fresh ? vf{} : acc_out[r * OB + o];
    for (int64_t i = i0; i < i1; i += VW) {
        vf xv[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) xv[r] = load(x + r * ldx + i);
        constexpr int LPS = lines_per_step(OB * VW * int(sizeof(T)));
        if (pf_lines == LPS) {  // the stream of a single tile of rows: as many lines as it reads
#pragma GCC unroll 8
            for (int k = 0; k < LPS; ++k) __builtin_prefetch(pf + k * 64, 0, PREFETCH_LOCALITY);
        } else {
            for (int k = 0; k < pf_lines; ++k) __builtin_prefetch(pf + k * 64, 0, PREFETCH_LOCALITY);
        }
        pf += pf_lines * 64;
#pragma GCC unroll 8
        for (int o = 0; o < OB; ++o) {
            vf wv = load(PACKED ? w + i * ob_stride + o * VW : w + o * in + i);
            in_register(wv);
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) acc[r][o] = vfma(xv[r], wv, acc[r][o]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
        for (int o = 0; o < OB; ++o) acc_out[r * OB + o] = acc[r][o];
}

// f(std::integral_constant<int, r>) for a run-time r in 1..RT: the tile functions need R at compile time.
template <int RT, class F>
inline void with_rows(int r, const F &f) {
    if constexpr (RT > 0) {
        if (r == RT)
            f(std::integral_constant<int, RT>{});
        else
            with_rows<RT - 1>(r, f);
    }
}

// Float weights (float32 or bfloat16), the blocks [b0, b1) of OB rows (packed: whole blocks; plain: the last one
// may be shorter), all `rows` rows of x, for the calling thread. RT: rows per register tile.
template <int RT, int OB, bool PACKED, class T, class Epi>
void blocks_f(const float *x, int64_t ldx, int64_t rows, const T *w, int64_t out, int64_t in, const float *scale,
              const float *bias, int64_t b0, int64_t b1, const Epi &epi) {
    const int64_t full = in - in % VW;
    if (rows <= RT) {  // one tile: each block in one pass over its columns, prefetching ahead of the stream
        vf acc[RT * OB];
        for (int64_t b = b0; b < b1; ++b) {
            const int64_t o0 = b * OB;
            const int ob = out - o0 < OB ? int(out - o0) : OB;
            with_rows<RT>(int(rows), [&](auto rc) {
                constexpr int R = decltype(rc)::value;
                if (ob == OB) {
                    const T *wb = w + o0 * in;
                    const char *pf = reinterpret_cast<const char *>(wb) + PREFETCH;
                    accumulate<R, OB, PACKED>(x, ldx, wb, in, OB, 0, full, acc, true, pf,
                                              lines_per_step(OB * VW * int(sizeof(T))));
                    for (int r = 0; r < R; ++r)
                        for (int o = 0; o < OB; ++o)
                            finish(acc[r * OB + o], x + r * ldx, w + (o0 + o) * in, PACKED ? in : full, in,
                                   scale, bias, r, o0 + o, epi);
                } else {  // the plain layout's last, shorter block: one row at a time
                    for (int o = 0; o < ob; ++o) {
                        const T *wr = w + (o0 + o) * in;
                        accumulate<R, 1, false>(x, ldx, wr, in, 1, 0, full, acc, true, reinterpret_cast<const char *>(wr), 0);
                        for (int r = 0; r < R; ++r)
                            finish(acc[r], x + r * ldx, wr, full, in, scale,
                                   bias, r, o0 + o, epi);
                    }
                }
            });
        }
        return;
    }
    // Several tiles of rows: chunks of columns, panels of rows; partial sums kept in `acc`.
    const int64_t kc = PACKED ? (K_BYTES / int64_t(OB * sizeof(T))) / VW * VW : full;
    const int64_t chunk = kc > 0 ? kc : VW;
    const int64_t panel = rows < PANEL ? rows : PANEL;
    std::vector<vf> acc(size_t(panel * OB));
    vf one[RT];
    for (int64_t p0 = 0; p0 < rows; p0 += panel) {
        const int64_t pr = rows - p0 < panel ? rows - p0 : panel;
        const int64_t tiles = (pr + RT - 1) / RT;
        const float *xp = x + p0 * ldx;
        for (int64_t b = b0; b < b1; ++b) {
            const int64_t o0 = b * OB;
            const int ob = out - o0 < OB ? int(out - o0) : OB;
            if (ob != OB) {  // plain layout's last block: one weight row at a time, whole columns
                for (int o = 0; o < ob; ++o) {
                    const T *wr = w + (o0 + o) * in;
                    for (int64_t r0 = 0; r0 < pr; r0 += RT) {
                        const int rt = pr - r0 < RT ? int(pr - r0) : RT;
                        with_rows<RT>(rt, [&](auto rc) {
                            constexpr int R = decltype(rc)::value;
                            accumulate<R, 1, false>(xp + r0 * ldx, ldx, wr, in, 1, 0, full, one, true,
                                                    reinterpret_cast<const char *>(wr), 0);
                            for (int r = 0; r < R; ++r)
                                finish(one[r], xp + (r0 + r) * ldx, wr, full, in, scale,
                                       bias, p0 + r0 + r, o0 + o, epi);
                        });
                    }
                }
                continue;
            }
            const T *wb = w + o0 * in;
            for (int64_t i0 = 0; i0 < full; i0 += chunk) {
                const int64_t i1 = full - i0 < chunk ? full : i0 + chunk;
                // the weights of the chunk PREFETCH bytes ahead, spread over the tiles' steps
                const int64_t steps = (i1 - i0) / VW;
                const int64_t lines = (i1 - i0) * OB * int64_t(sizeof(T)) / 64;
                const int pf_lines = PACKED ? int((lines + steps * tiles - 1) / (steps * tiles)) : 0;
                const char *pf = reinterpret_cast<const char *>(wb + i0 * OB) + PREFETCH;
                for (int64_t t = 0; t < tiles; ++t) {
                    const int64_t r0 = t * RT;
                    const int rt = pr - r0 < RT ? int(pr - r0) : RT;
                    with_rows<RT>(rt, [&](auto rc) {
                        constexpr int R = decltype(rc)::value;
                        accumulate<R, OB, PACKED>(xp + r0 * ldx, ldx, wb, in, OB, i0, i1, acc.data() + r0 * OB,
                                                  i0 == 0, pf + t * steps * pf_lines * 64, pf_lines);
                    });
                }
            }
            for (int64_t r = 0; r < pr; ++r)
                for (int o = 0; o < OB; ++o)
                    finish(acc[size_t(r * OB + o)], xp + r * ldx, w + (o0 + o) * in, PACKED ? in : full, in,
                           scale, bias, p0 + r, o0 + o, epi);
        }
    }
}

// ---- int8 weights x int16 activations ------------------------------------------------------------------------
// Each row of x is quantized to int16 with its own scale (max |x| / 32767); the products with the int8 weights
// are summed exactly in integers (int32 lanes over segments of SEG columns, short enough never to overflow, then
// int64), and the sum is scaled back: y = sum * x_scale[r] * w_scale[o] + bias[o]. The integer sum does not
// depend on the order of the additions, so neither do the results (rows, threads, layout, tiling).

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

constexpr int I8_BLOCK = ACC / 4 > 1 ? ACC / 4 : 2;  // packed block rows of int8 weights
constexpr int cap(int v) { return v < 1 ? 1 : (v > 8 ? 8 : v); }
constexpr int PLAIN_OB = cap(ACC / 2);     // weight rows per block in the plain layout
constexpr int FLOAT_BLOCK = cap(ACC / 2);  // packed block rows of float weights (one pass of 2 rows in registers)

// Quantizes one row of x to int16 (scale max |x| / 32767); a row holding NaN or inf gets a NaN scale.
inline void quantize_row(const float *xr, int64_t in, int16_t *q, float *scale) {
    float m = 0.0f;
    bool finite = true;
    int64_t i = 0;
    vf mv = vf{};
    vf bad = vf{};
    for (; i + VW <= in; i += VW) {
        const vf a = vabs(load(xr + i));
        bad = (a <= 3.4028235e38f) ? bad : splat(1.0f);  // NaN and inf fail the comparison
        mv = vmax(mv, a);
    }
    m = hmax(mv);
    finite = hmax(bad) == 0.0f;
    for (; i < in; ++i) {
        const float a = std::fabs(xr[i]);
        finite &= a <= 3.4028235e38f;
        m = a > m ? a : m;
    }
    if (!finite || m == 0.0f) {
        std::memset(q, 0, sizeof(int16_t) * size_t(in));
        *scale = finite ? 0.0f : std::numeric_limits<float>::quiet_NaN();
        return;
    }
    const float inv = 32767.0f / m;
    for (i = 0; i < in; ++i) {
        float v = std::nearbyint(xr[i] * inv);
        v = v > 32767.0f ? 32767.0f : (v < -32767.0f ? -32767.0f : v);
        q[i] = int16_t(v);
    }
    *scale = m / 32767.0f;
}

// R rows of quantized x times OB int8 weight rows over the columns [i0, i1) (multiples of IW, i1 - i0 <= SEG),
// int64 totals updated; the vector (o, i..i+IW) is at w + o * in + i (plain) or w + i * OB + o * IW (packed).
template <int R, int OB, bool PACKED>
inline void accumulate_i8(const int16_t *xq, int64_t ldq, const int8_t *w, int64_t in, int64_t i0, int64_t i1,
                          int64_t *total, bool fresh, const char *pf, int pf_lines) {
    ivec acc[R][OB];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
        for (int o = 0; o < OB; ++o) acc[r][o] = izero();
    for (int64_t i = i0; i < i1; i += IW) {
        ivec xv[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) xv[r] = load_x16(xq + r * ldq + i);
        constexpr int LPS = lines_per_step(OB * IW);
        if (pf_lines == LPS) {
#pragma GCC unroll 8
            for (int k = 0; k < LPS; ++k) __builtin_prefetch(pf + k * 64, 0, PREFETCH_LOCALITY);
        } else {
            for (int k = 0; k < pf_lines; ++k) __builtin_prefetch(pf + k * 64, 0, PREFETCH_LOCALITY);
        }
        pf += pf_lines * 64;
#pragma GCC unroll 8
        for (int o = 0; o < OB; ++o) {
            ivec wv = load_w8(PACKED ? w + i * OB + o * IW : w + o * in + i);
            in_register_i(wv);
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) acc[r][o] = idot(acc[r][o], xv[r], wv);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int o = 0; o < OB; ++o) total[r * OB + o] = (fresh ? 0 : total[r * OB + o]) + ihsum(acc[r][o]);
}

template <class Epi>
inline void finish_i8(int64_t t, const int16_t *xq, const int8_t *wrow, int64_t tail0, int64_t in, float xs,
                      const float *scale, const float *bias, int64_t r, int64_t o, const Epi &epi) {
    for (int64_t j = tail0; j < in; ++j) t += int64_t(xq[j]) * int64_t(wrow[j]);
    float v = float(double(t) * double(xs) * double(scale[o]));
    epi(r, o, bias ? v + bias[o] : v);
}

// int8 weights: the blocks [b0, b1) of OB rows, all rows of the quantized x (xq [rows, in], scales xs), for
// the calling thread; as blocks_f, segments of SEG columns being the chunks.
template <int RT, int OB, bool PACKED, class Epi>
void blocks_i8(const int16_t *xq, const float *xs, int64_t rows, const int8_t *w, int64_t out, int64_t in,
               const float *scale, const float *bias, int64_t b0, int64_t b1, const Epi &epi) {
    const int64_t full = in - in % IW;
    const int64_t panel = rows < PANEL ? rows : PANEL;
    std::vector<int64_t> total(size_t(panel * OB));
    int64_t one[RT];
    const bool single = rows <= RT;
    for (int64_t p0 = 0; p0 < rows; p0 += panel) {
        const int64_t pr = rows - p0 < panel ? rows - p0 : panel;
        const int64_t tiles = (pr + RT - 1) / RT;
        const int16_t *xp = xq + p0 * in;
        for (int64_t b = b0; b < b1; ++b) {
            const int64_t o0 = b * OB;
            const int ob = out - o0 < OB ? int(out - o0) : OB;
            if (ob != OB) {  // plain layout's last block: one weight row at a time
                for (int o = 0; o < ob; ++o) {
                    const int8_t *wr = w + (o0 + o) * in;
                    for (int64_t r0 = 0; r0 < pr; r0 += RT) {
                        const int rt = pr - r0 < RT ? int(pr - r0) : RT;
                        with_rows<RT>(rt, [&](auto rc) {
                            constexpr int R = decltype(rc)::value;
                            for (int64_t i0 = 0; i0 < full || i0 == 0; i0 += SEG) {
                                const int64_t i1 = full - i0 < SEG ? full : i0 + SEG;
                                accumulate_i8<R, 1, false>(xp + r0 * in, in, wr, in, i0, i1, one, i0 == 0,
                                                           reinterpret_cast<const char *>(wr), 0);
                                if (i1 >= full) break;
                            }
                            for (int r = 0; r < R; ++r)
                                finish_i8(one[r], xp + (r0 + r) * in, wr, full, in, xs[p0 + r0 + r],
                                          scale, bias, p0 + r0 + r, o0 + o, epi);
                        });
                    }
                }
                continue;
            }
            const int8_t *wb = w + o0 * in;
            for (int64_t i0 = 0; i0 < full || i0 == 0; i0 += SEG) {
                const int64_t i1 = full - i0 < SEG ? full : i0 + SEG;
                const int64_t steps = (i1 - i0) / IW;
                const char *pf = reinterpret_cast<const char *>(PACKED ? wb + i0 * OB : wb + i0) + PREFETCH;
                int pf_lines = lines_per_step(OB * IW);
                if (!single && steps > 0) {
                    const int64_t lines = (i1 - i0) * OB / 64;
                    pf_lines = int((lines + steps * tiles - 1) / (steps * tiles));
                }
                for (int64_t t = 0; t < tiles; ++t) {
                    const int64_t r0 = t * RT;
                    const int rt = pr - r0 < RT ? int(pr - r0) : RT;
                    with_rows<RT>(rt, [&](auto rc) {
                        constexpr int R = decltype(rc)::value;
                        accumulate_i8<R, OB, PACKED>(xp + r0 * in, in, wb, in, i0, i1, total.data() + r0 * OB,
                                                     i0 == 0, pf + t * steps * pf_lines * 64, pf_lines);
                    });
                }
                if (i1 >= full) break;
            }
            for (int64_t r = 0; r < pr; ++r)
                for (int o = 0; o < OB; ++o)
                    finish_i8(total[size_t(r * OB + o)], xp + r * in, w + (o0 + o) * in, PACKED ? in : full, in,
                              xs[p0 + r], scale, bias, p0 + r, o0 + o, epi);
        }
    }
}

// ---- one linear map, as seen by the fused decoding step and the C entry points ---------------------------------
// kind: 0 float32, 1 bfloat16, 2 int8; block: rows per packed block, 0 for the plain layout.
struct Linear {
    int kind;
    int block;
    const void *w;
    const float *scale;
    const float *bias;
    int64_t out, in;
};


// Rows per register tile for packed blocks of OB rows: R * OB sums, R rows of x and one weight vector in the
// vector registers (32 with AVX-512, 16 otherwise).
constexpr int REGS = ACC >= 16 ? 32 : 16;
constexpr int tile_rows(int ob) { return cap((REGS - 1) / (ob + 1)); }

inline int64_t block_count(const Linear &L) {
    const int64_t ob = L.block > 0 ? L.block : PLAIN_OB;
    return (L.out + ob - 1) / ob;
}

template <class T, class Epi>
void float_blocks(const Linear &L, const float *x, int64_t ldx, int64_t rows, int64_t b0, int64_t b1,
                  const Epi &epi) {
    const T *w = static_cast<const T *>(L.w);
    if (L.block == 0)  // plain layout, blocks of PLAIN_OB rows
        blocks_f<2, PLAIN_OB, false>(x, ldx, rows, w, L.out, L.in, L.scale, L.bias, b0, b1, epi);
    else
        blocks_f<tile_rows(FLOAT_BLOCK), FLOAT_BLOCK, true>(x, ldx, rows, w, L.out, L.in, L.scale, L.bias, b0, b1,
                                                            epi);
}

// The calling thread's share [b0, b1) of the blocks of L (see block_count); int8 takes the quantized rows.
template <class Epi>
void linear_blocks(const Linear &L, const float *x, int64_t ldx, const int16_t *xq, const float *xs, int64_t rows,
                   int64_t b0, int64_t b1, const Epi &epi) {
    switch (L.kind) {
        case 0: float_blocks<float>(L, x, ldx, rows, b0, b1, epi); return;
        case 1: float_blocks<uint16_t>(L, x, ldx, rows, b0, b1, epi); return;
        case 2: {
            const int8_t *w = static_cast<const int8_t *>(L.w);
            if (L.block > 0)
                blocks_i8<tile_rows(I8_BLOCK), I8_BLOCK, true>(xq, xs, rows, w, L.out, L.in, L.scale,
                                                                           L.bias, b0, b1, epi);
            else
                blocks_i8<2, PLAIN_OB, false>(xq, xs, rows, w, L.out, L.in, L.scale, L.bias, b0, b1, epi);
            return;
        }
        default: return;
    }
}

// Whether L's arguments are consistent (the layout's block, divisibility of the packed shape, int8's scale).
inline bool valid(const Linear &L) {
    if (L.out < 0 || L.in < 0 || L.kind < 0 || L.kind > 2 || !L.w) return false;
    if ((L.kind == 2) != (L.scale != nullptr)) return false;
    if (L.block == 0) return true;
    const int64_t chunk = L.kind == 2 ? IW : VW;
    if (L.out % L.block != 0 || L.in % chunk != 0) return false;
    return L.block == (L.kind == 2 ? I8_BLOCK : FLOAT_BLOCK);
}

}  // namespace ackernels
