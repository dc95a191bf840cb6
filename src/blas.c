/* blas.c -- thin wrappers over cblas (OpenBLAS or the reference BLAS). */
#include <cblas.h>
#include <string.h>

#include "blas.h"

void wmi_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
             const float *A, int lda, const float *B, int ldb, float beta,
             float *C, int ldc)
{
    if (m <= 0 || n <= 0)
        return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, A, lda, B, ldb,
                beta, C, ldc);
}

/* One sample's product as a one-row sgemm instead of sgemv? OpenBLAS 0.3.17+
 * has dedicated small-matrix sgemm kernels for its SkylakeX-class cores
 * (picked on AVX-512 machines), and for rows of 32 or more floats in whole
 * 16-float vectors they beat its sgemv: 7.5 vs 8.1 us for 256x784, 2.3 vs
 * 2.9 us for 256x256, 0.46 vs 0.67 us for 192x64 (docs/performance.md).
 * Elsewhere a one-row sgemm would pack the whole matrix, so the choice asks
 * OpenBLAS which core it runs on. The reference to openblas_get_corename is
 * weak: with any other BLAS it is NULL and sgemv is used. The answer is
 * cached per thread (no global state); 0 = not asked yet. */
#if defined(__GNUC__) && defined(__ELF__)
extern char *openblas_get_corename(void) __attribute__((weak));
#define HAVE_CORENAME_PROBE 1
#endif

static int one_row_gemm_is_faster(int row_floats)
{
    if (row_floats < 32 || row_floats % 16 != 0)
        return 0;
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
