/* blas.c -- thin wrappers over cblas (OpenBLAS or the reference BLAS). */
#include <stddef.h>

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

/* Below this many matrix entries a call into the BLAS costs more than the
 * arithmetic (the embedded case: a 16-64-64-4 net, one sample), so the
 * product runs in the loops below, which the compiler vectorises. */
#define SMALL_GEMV 16384

/* y = alpha A x + beta y, A row-major m x n: a dot product per row, in eight
 * independent partial sums (a fixed order, so results are reproducible). */
static void small_gemv_n(int m, int n, float alpha, const float *A, int lda, const float *x,
                         float beta, float *y)
{
    for (int r = 0; r < m; r++) {
        const float *a = A + (size_t)r * lda;
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int j = 0;
        for (; j + 8 <= n; j += 8)
            for (int t = 0; t < 8; t++)
                acc[t] += a[j + t] * x[j + t];
        float sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        for (; j < n; j++)
            sum += a[j] * x[j];
        y[r] = alpha * sum + (beta == 0.0f ? 0.0f : beta * y[r]);
    }
}

/* y = alpha A^T x + beta y, A row-major m x n: an axpy per row of A. */
static void small_gemv_t(int m, int n, float alpha, const float *A, int lda, const float *x,
                         float beta, float *y)
{
    for (int c = 0; c < n; c++)
        y[c] = beta == 0.0f ? 0.0f : beta * y[c];
    for (int r = 0; r < m; r++) {
        const float *a = A + (size_t)r * lda;
        float xr = alpha * x[r];
        for (int c = 0; c < n; c++)
            y[c] += xr * a[c];
    }
}

void wmi_gemv(int trans_a, int m_rows, int n_cols, float alpha, const float *A, int lda,
             const float *x, float beta, float *y)
{
    if (m_rows <= 0 || n_cols <= 0)
        return;
    if ((long)m_rows * n_cols <= SMALL_GEMV) {
        (trans_a ? small_gemv_t : small_gemv_n)(m_rows, n_cols, alpha, A, lda, x, beta, y);
        return;
    }
    cblas_sgemv(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, m_rows, n_cols, alpha,
                A, lda, x, 1, beta, y, 1);
}

void wmi_ger(int m, int n, float alpha, const float *x, const float *y, float *A, int lda)
{
    if (m <= 0 || n <= 0)
        return;
    cblas_sger(CblasRowMajor, m, n, alpha, x, 1, y, 1, A, lda);
}
