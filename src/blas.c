/* blas.c -- thin wrappers over cblas (OpenBLAS or the reference BLAS), and
 * the shapes at which OpenBLAS's small-matrix kernels are worth steering to. */
#include <cblas.h>
#include <string.h>

#include "blas.h"

/* OpenBLAS 0.3.17+ has small-matrix sgemm kernels that skip packing, for its
 * SkylakeX-class cores (picked on AVX-512 machines). Asked once per thread
 * through a weak reference to openblas_get_corename: with any other BLAS it
 * is NULL. Cached per thread (no global state); 0 = not asked yet. */
#if defined(__GNUC__) && defined(__ELF__)
extern char *openblas_get_corename(void) __attribute__((weak));
#define HAVE_CORENAME_PROBE 1
#endif

static int has_small_kernels(void)
{
#ifdef HAVE_CORENAME_PROBE
    static _Thread_local int small_kernels;   /* 0 unknown, 1 yes, 2 no */
    if (!small_kernels) {
        const char *core = openblas_get_corename ? openblas_get_corename() : NULL;
        small_kernels = core && (!strcmp(core, "SkylakeX") || !strcmp(core, "Cooperlake") ||
                                 !strcmp(core, "SapphireRapids")) ? 1 : 2;
    }
    return small_kernels == 1;
#else
    return 0;
#endif
}

/* Whether OpenBLAS sends a row-major call of this shape to a small kernel.
 * Its rule (kernel/x86_64/sgemm_small_kernel_permit_skylakex.c, stated in
 * column-major terms, where a row-major call is C^T = op(B)^T op(A)^T):
 * M*N*K <= 100^3; a transposed A with a plain B needs M*N <= 1200 and
 * K >= 32 as well; both transposed is never taken. */
static int small_kernel_takes(int trans_a, int trans_b, long m, long n, long k)
{
    int cm_ta = trans_b, cm_tb = trans_a;
    if ((double)m * n * k > 1e6 || (cm_ta && cm_tb))
        return 0;
    return !cm_ta || cm_tb || (m * n <= 1200 && k >= 32);
}

static void sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, A, lda, B, ldb,
                beta, C, ldc);
}

/* A product with a thin dimension (at most SKINNY rows or columns of C, or
 * terms in each sum) that is too big for the small kernels runs as blocks of
 * C that they take, in whole 16s: the regular path packs the whole large
 * operand for a few rows of work. With 16 samples the MLP's products took
 * 1.3-1.7x as long as one call (docs/performance.md); from 128 samples on
 * the regular path is as fast. */
enum { SKINNY = 64 };

void wmi_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
             const float *A, int lda, const float *B, int ldb, float beta,
             float *C, int ldc)
{
    if (m <= 0 || n <= 0)
        return;
    if ((m <= SKINNY || n <= SKINNY || k <= SKINNY) && !small_kernel_takes(trans_a, trans_b, m, n, k) &&
        has_small_kernels()) {
        int split_rows = m >= n, extent = split_rows ? m : n, b = extent / 16 * 16;
        while (b >= 16 && !(split_rows ? small_kernel_takes(trans_a, trans_b, b, n, k)
                                       : small_kernel_takes(trans_a, trans_b, m, b, k)))
            b -= 16;
        if (b >= 16) {
            for (int at = 0; at < extent; at += b) {
                int len = extent - at < b ? extent - at : b;
                if (split_rows)
                    sgemm(trans_a, trans_b, len, n, k, alpha, trans_a ? A + at : A + (size_t)at * lda,
                          lda, B, ldb, beta, C + (size_t)at * ldc, ldc);
                else
                    sgemm(trans_a, trans_b, m, len, k, alpha, A, lda,
                          trans_b ? B + (size_t)at * ldb : B + at, ldb, beta, C + at, ldc);
            }
            return;
        }
    }
    sgemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* One sample's product as a one-row sgemm instead of sgemv? Where OpenBLAS
 * has the small kernels, and for rows of 32 or more floats in whole 16-float
 * vectors, they beat its sgemv: 7.5 vs 8.1 us for 256x784, 2.3 vs 2.9 us for
 * 256x256, 0.46 vs 0.67 us for 192x64; not for rows of 16 or 24 floats
 * (docs/performance.md). */
static int one_row_gemm_is_faster(int row_floats)
{
    return row_floats >= 32 && row_floats % 16 == 0 && has_small_kernels();
}

void wmi_gemv(int trans_a, int m_rows, int n_cols, float alpha, const float *A, int lda,
             const float *x, float beta, float *y)
{
    if (m_rows <= 0 || n_cols <= 0)
        return;
    if (one_row_gemm_is_faster(n_cols)) {
        if (trans_a)          /* y^T (1 x n_cols) = x^T (1 x m_rows) A */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, n_cols, m_rows, alpha, x,
                        m_rows, A, lda, beta, y, n_cols);
        else                  /* y^T (1 x m_rows) = x^T (1 x n_cols) A^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 1, m_rows, n_cols, alpha, x,
                        n_cols, A, lda, beta, y, m_rows);
        return;
    }
    cblas_sgemv(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, m_rows, n_cols, alpha,
                A, lda, x, 1, beta, y, 1);
}
