/* gemm_small.c -- the library's own kernel for skinny products (issue 15):
 * no packing, AVX2 + FMA, a fixed summation order. src/blas.c routes a
 * product here only where it measured this kernel decisively faster than the
 * BLAS on the running core (OpenBLAS's regular path packs the large operand
 * for a few rows of work; on AVX2 cores it has no small-matrix kernels).
 *
 * Two forms, both row-major, C (m x n) = alpha op(A) op(B) + beta C:
 *  - B not transposed (its rows run along C's rows): each C row block is a
 *    sum of rows of B scaled by A's entries, 4 x 16 (or 2 x 32) entries of C
 *    in eight vector accumulators, p (the summed index) in order;
 *  - A plain and B transposed (C_ij = A_i . B_j, both rows contiguous): 4 x 2
 *    dot products in eight vector accumulators over p in steps of 8, reduced
 *    in a fixed order, then the p tail in order.
 * Both transposed is not handled (the library never issues it). */
#include <stddef.h>

#include "blas.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>

int wmi_small_gemm_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE_AVX2 static inline __attribute__((always_inline, target("avx2,fma")))

/* C[0..mr) x [0..8*nv) from acc: alpha acc, plus beta C unless beta = 0 (then
 * C is never read: NaN in it is ignored). */
INLINE_AVX2 void store_block(int mr, int nv, __m256 acc[4][4], float alpha, float beta, float *C,
                             int ldc)
{
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 4
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            float *c = C + (size_t)r * ldc + 8 * v;
            __m256 out = _mm256_mul_ps(va, acc[r][v]);
            if (beta != 0.0f)
                out = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c), out);
            _mm256_storeu_ps(c, out);
        }
}

/* mr (1-4) rows x 8*nv (8-32) columns of C, B not transposed, mr*nv <= 8
 * (eight accumulators: two FMA units of latency 4 stay busy); A's entry
 * (i, p) is A[i*si + p*sp]. */
INLINE_AVX2 void axpy_block(int mr, int nv, int k, const float *A, size_t si, size_t sp,
                            const float *B, int ldb, float alpha, float beta, float *C, int ldc)
{
    __m256 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            acc[r][v] = _mm256_setzero_ps();
    for (int p = 0; p < k; p++) {
        const float *b = B + (size_t)p * ldb;
        __m256 bv[4];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            bv[v] = _mm256_loadu_ps(b + 8 * v);
#pragma GCC unroll 4
        for (int r = 0; r < mr; r++) {
            __m256 a = _mm256_broadcast_ss(A + r * si + p * sp);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++)
                acc[r][v] = _mm256_fmadd_ps(a, bv[v], acc[r][v]);
        }
    }
    store_block(mr, nv, acc, alpha, beta, C, ldc);
}

/* Rows [0, m) of one strip of 8*nv columns: blocks of 4 rows, then 2, then 1
 * (nv = 4 only for fewer than 4 rows, where it keeps eight accumulators). */
INLINE_AVX2 void axpy_strip(int nv, int m, int k, const float *A, size_t si, size_t sp,
                            const float *B, int ldb, float alpha, float beta, float *C, int ldc)
{
    int i = 0;
    if (nv <= 2)
        for (; i + 4 <= m; i += 4)
            axpy_block(4, nv, k, A + i * si, si, sp, B, ldb, alpha, beta, C + (size_t)i * ldc, ldc);
    for (; i + 2 <= m; i += 2)
        axpy_block(2, nv, k, A + i * si, si, sp, B, ldb, alpha, beta, C + (size_t)i * ldc, ldc);
    if (i < m)
        axpy_block(1, nv, k, A + i * si, si, sp, B, ldb, alpha, beta, C + (size_t)i * ldc, ldc);
}

/* One C entry the scalar way, p in order (the column tail of the axpy form). */
static float scalar_entry(int k, const float *a, size_t sp, const float *b, size_t sb)
{
    float s = 0.0f;
    for (int p = 0; p < k; p++)
        s += a[p * sp] * b[p * sb];
    return s;
}

AVX2 static void axpy_form(int trans_a, int m, int n, int k, float alpha, const float *A, int lda,
                           const float *B, int ldb, float beta, float *C, int ldc)
{
    size_t si = trans_a ? 1 : (size_t)lda, sp = trans_a ? (size_t)lda : 1;
    int j = 0;
    /* column strips outer: a strip of B (k x 16) stays in cache for all rows;
     * with fewer than 4 rows, strips of 32 columns keep 8 accumulators busy */
    if (m < 4)
        for (; j + 32 <= n; j += 32)
            axpy_strip(4, m, k, A, si, sp, B + j, ldb, alpha, beta, C + j, ldc);
    for (; j + 16 <= n; j += 16)
        axpy_strip(2, m, k, A, si, sp, B + j, ldb, alpha, beta, C + j, ldc);
    for (; j + 8 <= n; j += 8)
        axpy_strip(1, m, k, A, si, sp, B + j, ldb, alpha, beta, C + j, ldc);
    for (; j < n; j++)
        for (int i = 0; i < m; i++) {
            float s = alpha * scalar_entry(k, A + i * si, sp, B + j, (size_t)ldb);
            float *c = C + (size_t)i * ldc + j;
            *c = beta != 0.0f ? s + beta * *c : s;
        }
}

/* The sum of v's 8 lanes, in a fixed order. */
INLINE_AVX2 float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* mr (1-4) rows of A dotted with nr (1-2) rows of B. */
INLINE_AVX2 void dot_block(int mr, int nr, int k, const float *A, int lda, const float *B, int ldb,
                           float alpha, float beta, float *C, int ldc)
{
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    int k8 = k / 8 * 8;
    for (int p = 0; p < k8; p += 8) {
        __m256 b0 = _mm256_loadu_ps(B + p), b1 = nr > 1 ? _mm256_loadu_ps(B + ldb + p) : b0;
#pragma GCC unroll 4
        for (int r = 0; r < mr; r++) {
            __m256 a = _mm256_loadu_ps(A + (size_t)r * lda + p);
            acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
            if (nr > 1)
                acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    for (int r = 0; r < mr; r++)
        for (int c = 0; c < nr; c++) {
            const float *a = A + (size_t)r * lda, *b = B + (size_t)c * ldb;
            float s = hsum(acc[r][c]);
            for (int p = k8; p < k; p++)
                s += a[p] * b[p];
            s *= alpha;
            float *out = C + (size_t)r * ldc + c;
            *out = beta != 0.0f ? s + beta * *out : s;
        }
}

AVX2 static void dot_form(int m, int n, int k, float alpha, const float *A, int lda, const float *B,
                          int ldb, float beta, float *C, int ldc)
{
    int i = 0;
    /* row blocks of A outer: its 4 rows stay in cache for all of B */
    for (; i + 4 <= m; i += 4) {
        const float *a = A + (size_t)i * lda;
        float *c = C + (size_t)i * ldc;
        int j = 0;
        for (; j + 2 <= n; j += 2)
            dot_block(4, 2, k, a, lda, B + (size_t)j * ldb, ldb, alpha, beta, c + j, ldc);
        if (j < n)
            dot_block(4, 1, k, a, lda, B + (size_t)j * ldb, ldb, alpha, beta, c + j, ldc);
    }
    for (; i < m; i++) {
        const float *a = A + (size_t)i * lda;
        float *c = C + (size_t)i * ldc;
        int j = 0;
        for (; j + 2 <= n; j += 2)
            dot_block(1, 2, k, a, lda, B + (size_t)j * ldb, ldb, alpha, beta, c + j, ldc);
        if (j < n)
            dot_block(1, 1, k, a, lda, B + (size_t)j * ldb, ldb, alpha, beta, c + j, ldc);
    }
}

int wmi_small_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *A,
                   int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    /* declines on a core without AVX2 and FMA, whoever asks (tests pass the
     * route directly); __builtin_cpu_supports is a load after its init */
    if ((trans_b && trans_a) || !wmi_small_gemm_available())
        return 0;
    if (m <= 0 || n <= 0)
        return 1;
    if (!trans_b)
        axpy_form(trans_a, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
    else
        dot_form(m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
    return 1;
}

#else  /* no x86 vector extensions: the kernel is never available */

int wmi_small_gemm_available(void)
{
    return 0;
}

int wmi_small_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *A,
                   int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    (void)trans_a, (void)trans_b, (void)m, (void)n, (void)k, (void)alpha, (void)A, (void)lda;
    (void)B, (void)ldb, (void)beta, (void)C, (void)ldc;
    return 0;
}
#endif
