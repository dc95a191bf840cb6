/* blas.h -- the one door to cblas. Every GEMM in the library goes through here,
 * so swapping the BLAS or counting FLOPs happens in one place. Row-major. */
#ifndef WM_BLAS_H
#define WM_BLAS_H

/* C (m x n) = alpha * op(A) op(B) + beta * C, with op(X) = X or X^T.
 * lda, ldb, ldc are the row strides of A, B, C as stored. */
void wmi_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
             const float *A, int lda, const float *B, int ldb, float beta,
             float *C, int ldc);

/* y (m) = alpha * op(A) x + beta * y, A stored m_rows x n_cols. */
void wmi_gemv(int trans_a, int m_rows, int n_cols, float alpha, const float *A, int lda,
             const float *x, float beta, float *y);

#endif
