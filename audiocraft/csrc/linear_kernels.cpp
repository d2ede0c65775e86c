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
#include <cstring>
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
typedef int32_t vi __attribute__((vector_size(VW * 4)));
typedef uint32_t vu __attribute__((vector_size(VW * 4)));
typedef uint16_t vh __attribute__((vector_size(VW * 2)));
typedef int8_t vb __attribute__((vector_size(VW)));

inline vf load(const float *p) { vf v; std::memcpy(&v, p, sizeof v); return v; }

#if defined(__AVX512F__)
inline vf load(const uint16_t *p) {  // bfloat16: the high half of a float32
    __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(p)));
    return reinterpret_cast<vf>(_mm512_slli_epi32(u, 16));
}
inline vf load(const int8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p))));
}
#elif defined(__AVX2__)
inline vf load(const uint16_t *p) {
    __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p)));
    return reinterpret_cast<vf>(_mm256_slli_epi32(u, 16));
}
inline vf load(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(p))));
}
#else
inline vf load(const uint16_t *p) {
    vh h; std::memcpy(&h, p, sizeof h);
    vu u = __builtin_convertvector(h, vu) << 16;
    vf v; std::memcpy(&v, &u, sizeof v); return v;
}
inline vf load(const int8_t *p) {
    vb b; std::memcpy(&b, p, sizeof b);
    return __builtin_convertvector(__builtin_convertvector(b, vi), vf);
}
#endif

inline float scalar(const float *p) { return *p; }
inline float scalar(const uint16_t *p) { uint32_t u = uint32_t(*p) << 16; float f; std::memcpy(&f, &u, 4); return f; }
inline float scalar(const int8_t *p) { return float(*p); }

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

// block<rt, OB> for a run-time rt in 1..RT.
template <int RT, int OB, bool PACKED, class T>
inline void block_rows(int rt, const float *x, int64_t ldx, const T *w, int64_t in, float *y, int64_t ldy,
                       const float *scale, const float *bias) {
    if constexpr (RT > 0) {
        if (rt == RT)
            block<RT, OB, PACKED>(x, ldx, w, in, y, ldy, scale, bias);
        else
            block_rows<RT - 1, OB, PACKED>(rt, x, ldx, w, in, y, ldy, scale, bias);
    }
}

// Rows in tiles of RT, weight rows in blocks of OB; threads split the blocks (contiguous bands of weights). A
// block is read from memory once: the later row tiles find it in the cache.
template <int RT, int OB, bool PACKED, class T>
void gemv(const float *x, int64_t ldx, int64_t rows, const T *w, int64_t out, int64_t in, const float *scale,
          const float *bias, float *y, int64_t ldy, int threads) {
    const int64_t nblocks = (out + OB - 1) / OB;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t b = 0; b < nblocks; ++b) {
        const int64_t o0 = b * OB;
        const int ob = out - o0 < OB ? int(out - o0) : OB;  // < OB only in the plain layout
        const T *wb = w + o0 * in;
        for (int64_t r0 = 0; r0 < rows; r0 += RT) {
            const int rt = rows - r0 < RT ? int(rows - r0) : RT;
            const float *xr = x + r0 * ldx;
            float *yr = y + r0 * ldy + o0;
            if (ob == OB) {
                block_rows<RT, OB, PACKED>(rt, xr, ldx, wb, in, yr, ldy, scale ? scale + o0 : nullptr,
                                           bias ? bias + o0 : nullptr);
            } else {
                for (int o = 0; o < ob; ++o)
                    block_rows<RT, 1, false>(rt, xr, ldx, wb + o * in, in, yr + o, ldy,
                                             scale ? scale + o0 + o : nullptr, bias ? bias + o0 + o : nullptr);
            }
        }
    }
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

}  // namespace

extern "C" {

// kind: 0 float32, 1 bfloat16, 2 int8; w in the plain [out, in] layout. Returns 0, or 1 for invalid arguments.
int audiocraft_linear(int kind, const float *x, int64_t ldx, int64_t rows, const void *w, int64_t out, int64_t in,
                      const float *scale, const float *bias, float *y, int64_t ldy, int threads) {
    if (rows < 0 || out < 0 || in < 0 || threads < 1) return 1;
    switch (kind) {
        case 0: dispatch_plain<float>(x, ldx, rows, w, out, in, scale, bias, y, ldy, threads); return 0;
        case 1: dispatch_plain<uint16_t>(x, ldx, rows, w, out, in, scale, bias, y, ldy, threads); return 0;
        case 2: dispatch_plain<int8_t>(x, ldx, rows, w, out, in, scale, bias, y, ldy, threads); return 0;
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
        case 2: return dispatch_packed<int8_t>(block, x, ldx, rows, w, out, in, scale, bias, y, ldy, threads);
        default: return 1;
    }
}

int audiocraft_vector_width(void) { return VW; }

// The block of rows to pack weights in: the widest that one pass of two rows of x keeps in registers.
int audiocraft_block_rows(void) { return cap(ACC / 2); }

}  // extern "C"
