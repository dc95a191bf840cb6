/* blas.c -- thin wrappers over cblas (OpenBLAS or the reference BLAS). */
#include <cblas.h>

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

void wmi_gemv(int trans_a, int m_rows, int n_cols, float alpha, const float *A, int lda,
             const float *x, float beta, float *y)
{
    if (m_rows <= 0 || n_cols <= 0)
        return;
    cblas_sgemv(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, m_rows, n_cols, alpha,
                A, lda, x, 1, beta, y, 1);
}
