// C entry points of the matrix-vector kernels (matvec.h), weight packing and the attention of one query step.
//
// Built at first use by audiocraft/backends/cpu/kernels.py, together with step_kernels.cpp; threads come from the
// OpenMP runtime PyTorch loaded.
#include <vector>
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "attention.h"
#include "matvec.h"

using namespace ackernels;

namespace {

// y = x @ w.T (* scale) (+ bias) for all rows, on `threads` threads: each thread its band of blocks (int8: the rows
// of x quantized first, a share of the rows each).
int run_linear(const Linear &L, const float *x, int64_t ldx, int64_t rows, float *y, int64_t ldy, int threads) {
    if (rows < 0 || threads < 1 || !valid(L)) return 1;
    std::vector<int16_t> xq(L.kind == 2 ? size_t(rows * L.in) : 0);
    std::vector<float> xs(L.kind == 2 ? size_t(rows) : 0);
    const int64_t nb = block_count(L);
    const Store epi{y, ldy};
#pragma omp parallel num_threads(threads)
    {
        if (L.kind == 2) {
#pragma omp for schedule(static)
            for (int64_t r = 0; r < rows; ++r) quantize_row(x + r * ldx, L.in, xq.data() + r * L.in, xs.data() + r);
        }
        int64_t b0, b1;
        band(nb, thread_id(), thread_count(), b0, b1);
        linear_blocks(L, x, ldx, xq.data(), xs.data(), rows, b0, b1, epi);
    }
    return 0;
}

}  // namespace

extern "C" {

// kind: 0 float32, 1 bfloat16, 2 int8; w in the plain [out, in] layout. Returns 0, or 1 for invalid arguments.
int audiocraft_linear(int kind, const float *x, int64_t ldx, int64_t rows, const void *w, int64_t out, int64_t in,
                      const float *scale, const float *bias, float *y, int64_t ldy, int threads) {
    return run_linear(Linear{kind, 0, w, scale, bias, out, in}, x, ldx, rows, y, ldy, threads);
}

// The same with w in the packed layout of `block` rows: [out / block, in / chunk, block, chunk] (see matvec.h).
int audiocraft_linear_packed(int kind, int block, const float *x, int64_t ldx, int64_t rows, const void *w,
                             int64_t out, int64_t in, const float *scale, const float *bias, float *y, int64_t ldy,
                             int threads) {
    if (block < 1) return 1;
    return run_linear(Linear{kind, block, w, scale, bias, out, in}, x, ldx, rows, y, ldy, threads);
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
        const int64_t b = i / H, h = i % H;
        attend_one(q + b * qb + h * qh, k + b * kb + h * kh, ks, v + b * vb + h * vh, vs, S, D, scale,
                   out + b * ob + h * oh, scratch.data() + thread_id() * S);
    }
    return 0;
}

// The packed layout of a kind: blocks of `block` rows, chunks of `chunk` columns (see matvec.h).
// Floats: the widest block one pass of two rows of x keeps in registers; int8: four rows of x.
int audiocraft_block_rows(int kind) { return kind == 2 ? I8_BLOCK : FLOAT_BLOCK; }
int audiocraft_chunk(int kind) { return kind == 2 ? IW : VW; }

}  // extern "C"
