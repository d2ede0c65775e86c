// Vector types and elementwise functions shared by the CPU kernels (linear_kernels.cpp, step_kernels.cpp).
//
// Written with GCC/Clang vector extensions, which the compiler maps to AVX-512, AVX2 or NEON (-march=native);
// intrinsics only where the extensions have no equivalent.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace ackernels {

#if defined(__AVX512F__)
constexpr int VW = 16;   // floats per vector
constexpr int ACC = 16;  // accumulators a matrix-vector block keeps in registers
#elif defined(__AVX__) || defined(__ARM_NEON)
constexpr int VW = 8;
constexpr int ACC = 8;
#else
constexpr int VW = 4;
constexpr int ACC = 8;
#endif

typedef float vf __attribute__((vector_size(VW * 4)));
typedef int32_t vi __attribute__((vector_size(VW * 4)));
typedef uint32_t vu __attribute__((vector_size(VW * 4)));
typedef uint16_t vh __attribute__((vector_size(VW * 2)));

inline vf load(const float *p) { vf v; std::memcpy(&v, p, sizeof v); return v; }
inline void store(float *p, vf v) { std::memcpy(p, &v, sizeof v); }

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

// IEEE half precision, as stored (torch.float16): the key/value cache of reduced-precision decoding steps.
struct f16 {
    uint16_t bits;
};

inline float half_to_float(uint16_t h) {  // exact
    const uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        u = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        u = sign;
    } else {  // subnormal: m * 2^-24
        float f = float(man) * 5.9604644775390625e-8f;
        std::memcpy(&u, &f, 4);
        u |= sign;
    }
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline uint16_t float_to_half(float f) {  // round to nearest even, saturating at +-65504; NaN stays NaN
    uint32_t u;
    std::memcpy(&u, &f, 4);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u);
    if (a >= 0x477ff000u) return uint16_t(sign | 0x7bffu);  // rounds to 65520 or more: the largest half
    if (a < 0x38800000u) {  // below 2^-14: a subnormal half, m * 2^-24 with m = round(|f| * 2^24)
        float v;
        std::memcpy(&v, &a, 4);
        return uint16_t(sign | uint32_t(std::nearbyint(v * 16777216.0f)));
    }
    const uint32_t rounded = a + 0xfffu + ((a >> 13) & 1u);  // to nearest even on the 13 dropped bits
    return uint16_t(sign | ((rounded - 0x38000000u) >> 13));
}

#if defined(__AVX512F__)
inline vf load(const f16 *p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(p))); }
#elif defined(__F16C__) && defined(__AVX__)
inline vf load(const f16 *p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p))); }
#else
inline vf load(const f16 *p) {
    vf v;
    for (int k = 0; k < VW; ++k) v[k] = half_to_float(p[k].bits);
    return v;
}
#endif

inline float scalar(const f16 *p) { return half_to_float(p->bits); }

// n floats to halves (saturating, see float_to_half).
inline void store_halves(f16 *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; ++i) dst[i].bits = float_to_half(src[i]);
}

// a * b + c rounded once, on every path: results must not depend on where the compiler chose to contract a
// multiply-add (-ffp-contract=fast fuses most, but not every instantiation of a template alike).
inline vf vfma(vf a, vf b, vf c) {
#if defined(__AVX512F__)
    return _mm512_fmadd_ps(a, b, c);
#elif defined(__FMA__)
    return _mm256_fmadd_ps(a, b, c);
#else  // lane by lane (vectorised to fused multiply-adds where the CPU has them, e.g. NEON's fmla)
    vf out;
    for (int k = 0; k < VW; ++k) out[k] = __builtin_fmaf(a[k], b[k], c[k]);
    return out;
#endif
}

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

inline float hmax(vf v) {
    float m = v[0];
    for (int k = 1; k < VW; ++k) m = v[k] > m ? v[k] : m;
    return m;
}

inline vf vmax(vf a, vf b) { return a > b ? a : b; }
inline vf vmin(vf a, vf b) { return a < b ? a : b; }
inline vf vabs(vf a) { return a < 0.0f ? -a : a; }
inline vf splat(float s) { return vf{} + s; }

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

// e^x for x <= ~88 (large negative x flush to ~1e-38): range reduction by ln 2, then a degree-6 polynomial
// (relative error ~2 ulp). exp_reduced: the polynomial p of r = v - n ln 2 (ln 2 in two parts), e^v = p * 2^n.
inline vf exp_reduced(vf v, vf n) {
    vf r = vfma(-n, splat(0.693359375f), v);
    r = vfma(-n, splat(-2.12194440e-4f), r);
    vf p = splat(1.9875691500e-4f);
    p = vfma(p, r, splat(1.3981999507e-3f));
    p = vfma(p, r, splat(8.3334519073e-3f));
    p = vfma(p, r, splat(4.1665795894e-2f));
    p = vfma(p, r, splat(1.6666665459e-1f));
    p = vfma(p, r, splat(5.0000001201e-1f));
    return vfma(p * r, r, r + 1.0f);
}

#if defined(__AVX512F__)
inline vf vexp(vf x) {
    const __m512 v = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm512_scalef_ps(exp_reduced(v, n), n);
}
#else
inline vf vexp(vf x) {
    vf out;
    for (int k = 0; k < VW; ++k) out[k] = std::exp(x[k] < -87.0f ? -87.0f : x[k]);
    return out;
}
#endif

// The exp of GELU. AVX2 + FMA: the polynomial above on 8 lanes (its ~2 ulp stay far below GELU's own error), 2^n
// built from exponent bits; softmax keeps vexp there (the library's exp), whose results the seeded goldens were
// checked against. Elsewhere: vexp.
#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
inline vf vexp_gelu(vf x) {
    const __m256 v = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(v, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 p = exp_reduced(v, n);
    // p * 2^n as p * 2^h * 2^(n - h), h = n / 2: each factor a normal float for every n in [-126, 128]
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i h = _mm256_srai_epi32(ni, 1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, bias), 23));
    const __m256 f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, h), bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, f1), f2);
}
#else
inline vf vexp_gelu(vf x) { return vexp(x); }
#endif

// GELU with the exact error function, x * Phi(x) = x / 2 * (1 + erf(x / sqrt 2)), through erfc:
//     erfc(z) = t exp(-z^2 + P(t)),  t = 1 / (1 + z / 2),  z = |x| / sqrt 2 >= 0
// with the degree-9 Chebyshev fit P of Numerical Recipes (erfc's relative error below 1.2e-7 for every z >= 0),
// so that x >= 0 gives x - x/2 erfc(z) and x < 0 gives x/2 erfc(z): within 3e-7 x max(1, |x|) of the exact
// value (relative 2e-5 down the far negative tail, where exp's argument is large).
inline vf vgelu(vf x) {
    const vf z = vabs(x) * 0.70710678118654752f;
    const vf t = 1.0f / (1.0f + 0.5f * z);
    vf p = splat(0.17087277f);
    p = p * t + -0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t + -1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t + -0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t + -1.26551223f;
    const vf erfc = t * vexp_gelu(p - z * z);
    const vf half = 0.5f * x * erfc;
    return x >= 0.0f ? x - half : half;
}

inline float gelu(float x) {  // the same formula, one value
    vf v = splat(x);
    return vgelu(v)[0];
}

inline vf vrelu(vf x) { return x > 0.0f ? x : splat(0.0f); }

inline int thread_id() {
#if defined(_OPENMP)
    return omp_get_thread_num();
#else
    return 0;
#endif
}

inline int thread_count() {
#if defined(_OPENMP)
    return omp_get_num_threads();
#else
    return 1;
#endif
}

// [begin, end) of n items for thread `t` of `T`: contiguous bands, the first n % T threads one item more.
inline void band(int64_t n, int t, int T, int64_t &begin, int64_t &end) {
    const int64_t base = n / T, extra = n % T;
    begin = t * base + (t < extra ? t : extra);
    end = begin + base + (t < extra ? 1 : 0);
}

}  // namespace ackernels
