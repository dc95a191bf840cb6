/* gemm_small.c -- the library's own kernels for skinny products (issue 15):
 * no packing, a fixed summation order, AVX2 + FMA or AVX-512, whichever is
 * the widest the CPU has (cpuid, per call: __builtin_cpu_supports is a load
 * after its one-time init). src/blas.c sends a product here only where it
 * measured the kernel's form decisively faster than the BLAS on the running
 * core (OpenBLAS's regular path packs the large operand for a few rows of
 * work; its AVX2 cores have no small-matrix kernels).
 *
 * Three forms, all row-major, C (m x n) = alpha op(A) op(B) + beta C
 * (src/gemm_small_body.h):
 *  - rank (B plain, k <= 4: a batch-2 weight gradient D^T X): each C row is
 *    written once from k rows of B and the row's k entries of A in
 *    registers. With k = 2 a vector of C costs one multiply, one FMA and one
 *    store, so the form runs at the core's store rate (measured 115 GB/s on
 *    Zen 4 for a C of 64 KiB: the 2048^3 rate in FLOPs);
 *  - rows (B plain, m <= 4: D W at batch 2): each row of B read once for
 *    all m rows of C, strips of up to 12 accumulators;
 *  - dot (A plain, B transposed, a side <= 4: W X^T at batch 2): dot
 *    products of the wide side's rows with all the thin side's rows at once.
 * The rows and dot forms also take wider products (a side up to 32: batch
 * 16-32, the last layer's 10-30 rows), a separate route each: with
 * OpenBLAS's AVX2 kernels forced on Zen 4 the last layer's products at
 * batch 64 ran at 33-67% of the 2048^3 rate, the own AVX2 kernels at 61-94%
 * (docs/performance.md, the AVX2 section).
 * Both transposed is not handled (the library never issues it). */
#include <stddef.h>
#include <stdint.h>

#include "blas.h"

int wmi_small_gemm_form(int trans_a, int trans_b, int m, int n, int k)
{
    if (trans_a && trans_b)
        return 0;
    if (!trans_b && k >= 1 && k <= WMI_SMALL_THIN)
        return WMI_ROUTE_OWN_RANK;
    if (!trans_b && m <= WMI_SMALL_THIN)
        return WMI_ROUTE_OWN_ROWS;
    if (trans_b && (m <= WMI_SMALL_THIN || n <= WMI_SMALL_THIN))
        return WMI_ROUTE_OWN_DOT;
    const long sweep = 1L << 18;      /* floats of the operand swept per block */
    if (!trans_b && k >= 1 &&
        ((m <= WMI_SMALL_WIDE && (long)k * n <= sweep) || (m <= 2 * WMI_SMALL_WIDE && (long)k * n <= sweep / 8)))
        return WMI_ROUTE_OWN_ROWS_WIDE;
    const int thin = m < n ? m : n;   /* the dot form's Y, kept in L2 */
    if (trans_b && k >= 1 && thin <= WMI_SMALL_WIDE && (long)k * thin <= sweep / 4)
        return WMI_ROUTE_OWN_DOT_WIDE;
    return 0;
}

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>

/* The widest set this CPU has: WMI_ISA_AVX512, WMI_ISA_AVX2 or 0 (one
 * init call, which returns at once after the first, and three loads). */
static int cpu_isa(void)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
        return 0;
    return __builtin_cpu_supports("avx512f") ? WMI_ISA_AVX512 : WMI_ISA_AVX2;
}

/* ---- AVX2 + FMA: 8 floats -------------------------------------------------- */
/* lanes 8 - n .. 15 - n of this: n all-ones lanes, then zeros */
static const int32_t lane_mask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

#define V __m256
#define VW 8
#define KERNEL static inline __attribute__((always_inline, target("avx2,fma")))
#define ENTRY static __attribute__((target("avx2,fma")))
#define SFX(name) name##_avx2
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_STORE(p, v) _mm256_storeu_ps((p), (v))
#define V_MASK(n) _mm256_loadu_si256((const __m256i *)(lane_mask + 8 - (n)))
#define V_LOADM(p, n) _mm256_maskload_ps((p), V_MASK(n))
#define V_STOREM(p, v, n) _mm256_maskstore_ps((p), V_MASK(n), (v))
#define V_SET1(x) _mm256_set1_ps(x)
#define V_ZERO() _mm256_setzero_ps()
#define V_MUL(a, b) _mm256_mul_ps((a), (b))
#define V_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define V_SUM4(a, b, c, d) sum4_avx2((a), (b), (c), (d))

/* The lane sums of a, b, c, d: pairs, then quads, then the two halves. */
KERNEL __m128 sum4_avx2(__m256 a, __m256 b, __m256 c, __m256 d)
{
    __m256 q = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(q), _mm256_extractf128_ps(q, 1));
}

#include "gemm_small_body.h"

#undef V
#undef VW
#undef KERNEL
#undef ENTRY
#undef SFX
#undef V_LOAD
#undef V_STORE
#undef V_LOADM
#undef V_STOREM
#undef V_SET1
#undef V_ZERO
#undef V_MUL
#undef V_FMA
#undef V_SUM4

/* ---- AVX-512: 16 floats ----------------------------------------------------- */
#define V __m512
#define VW 16
#define KERNEL static inline __attribute__((always_inline, target("avx512f,avx2,fma")))
#define ENTRY static __attribute__((target("avx512f,avx2,fma")))
#define SFX(name) name##_avx512
#define V_LOAD(p) _mm512_loadu_ps(p)
#define V_STORE(p, v) _mm512_storeu_ps((p), (v))
#define V_LOADM(p, n) _mm512_maskz_loadu_ps((__mmask16)((1u << (n)) - 1u), (p))
#define V_STOREM(p, v, n) _mm512_mask_storeu_ps((p), (__mmask16)((1u << (n)) - 1u), (v))
#define V_SET1(x) _mm512_set1_ps(x)
#define V_ZERO() _mm512_setzero_ps()
#define V_MUL(a, b) _mm512_mul_ps((a), (b))
#define V_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define V_SUM4(a, b, c, d) sum4_avx512((a), (b), (c), (d))

/* The lane sums of a, b, c, d: each folded to 8 lanes (low half + high
 * half), then as sum4_avx2. */
KERNEL __m256 fold_avx512(__m512 v)
{
    return _mm256_add_ps(_mm512_castps512_ps256(v),
                         _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

KERNEL __m128 sum4_avx512(__m512 a, __m512 b, __m512 c, __m512 d)
{
    __m256 q = _mm256_hadd_ps(_mm256_hadd_ps(fold_avx512(a), fold_avx512(b)),
                              _mm256_hadd_ps(fold_avx512(c), fold_avx512(d)));
    return _mm_add_ps(_mm256_castps256_ps128(q), _mm256_extractf128_ps(q, 1));
}

#include "gemm_small_body.h"

int wmi_small_gemm_available(void)
{
    return cpu_isa() != 0;
}

int wmi_small_gemm_isa(int isa, int trans_a, int trans_b, int m, int n, int k, float alpha,
                       const float *A, int lda, const float *B, int ldb, float beta, float *C,
                       int ldc)
{
    int have = cpu_isa();
    if (isa == WMI_ISA_BEST)
        isa = have;
    if ((trans_a && trans_b) || !have || (isa != WMI_ISA_AVX2 && isa != WMI_ISA_AVX512) ||
        (isa == WMI_ISA_AVX512 && have != WMI_ISA_AVX512))
        return 0;
    if (m <= 0 || n <= 0)
        return 1;
    size_t si = trans_a ? 1 : (size_t)lda, sp = trans_a ? (size_t)lda : 1;
    int wide = isa == WMI_ISA_AVX512;
    if (!trans_b && k >= 1 && k <= WMI_SMALL_THIN)
        (wide ? rank_form_avx512 : rank_form_avx2)(m, n, k, A, si, sp, B, (size_t)ldb, alpha, beta,
                                                   C, (size_t)ldc);
    else if (!trans_b)
        (wide ? rows_form_avx512 : rows_form_avx2)(m, n, k, A, si, sp, B, (size_t)ldb, alpha, beta,
                                                   C, (size_t)ldc);
    else
        (wide ? dot_form_avx512 : dot_form_avx2)(m, n, k, A, (size_t)lda, B, (size_t)ldb, alpha,
                                                 beta, C, (size_t)ldc);
    return 1;
}

#else  /* no x86-64 vector extensions: the kernels are never available */

int wmi_small_gemm_available(void)
{
    return 0;
}

int wmi_small_gemm_isa(int isa, int trans_a, int trans_b, int m, int n, int k, float alpha,
                       const float *A, int lda, const float *B, int ldb, float beta, float *C,
                       int ldc)
{
    (void)isa, (void)trans_a, (void)trans_b, (void)m, (void)n, (void)k, (void)alpha, (void)A;
    (void)lda, (void)B, (void)ldb, (void)beta, (void)C, (void)ldc;
    return 0;
}
#endif

int wmi_small_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *A,
                   int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    return wmi_small_gemm_isa(WMI_ISA_BEST, trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta,
                              C, ldc);
}
