/* blas.h -- the one door to cblas. Every GEMM in the library goes through here,
 * so swapping the BLAS or counting FLOPs happens in one place. Row-major. */
#ifndef WM_BLAS_H
#define WM_BLAS_H

/* C (m x n) = alpha * op(A) op(B) + beta * C, with op(X) = X or X^T.
 * lda, ldb, ldc are the row strides of A, B, C as stored. beta = 0 ignores
 * what C held (NaN included). The route is the process's measured one. */
void wmi_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
             const float *A, int lda, const float *B, int ldb, float beta,
             float *C, int ldc);

/* y (m) = alpha * op(A) x + beta * y, A stored m_rows x n_cols. */
void wmi_gemv(int trans_a, int m_rows, int n_cols, float alpha, const float *A, int lda,
             const float *x, float beta, float *y);

/* The routes a product can take (bit flags; 0 = one plain cblas call):
 * SPLIT   skinny products as blocks OpenBLAS's small kernels take;
 * ZERO    beta = 0 as memset + beta = 1 on the regular path (bitwise the same);
 * ONE_ROW a gemv as a one-row sgemm;
 * OWN     skinny products through the library's own kernel (src/gemm_small.c). */
enum { WMI_ROUTE_SPLIT = 1, WMI_ROUTE_ZERO = 2, WMI_ROUTE_ONE_ROW = 4, WMI_ROUTE_OWN = 8 };

/* wmi_gemm / wmi_gemv through the given route (benchmarks and tests). */
void wmi_gemm_via(int route, int trans_a, int trans_b, int m, int n, int k, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
void wmi_gemv_via(int route, int trans_a, int m_rows, int n_cols, float alpha, const float *A,
                  int lda, const float *x, float beta, float *y);

/* The routes this process chose (measured at the first product, once per
 * process; WM_GEMM_ROUTE=plain|split|own|bare pins them), and the
 * calibration's time ratios plain/split and plain/own (0 when pinned or not
 * measured). Any argument may be NULL. Thread-safe. */
void wmi_gemm_routes(int *gemm_route, int *gemv_route, double measured[2]);

/* The library's own skinny-product kernel (src/gemm_small.c): whether this
 * CPU can run it (AVX2 and FMA), and the product itself, as wmi_gemm; returns
 * 0 (and does nothing) for both operands transposed. */
int wmi_small_gemm_available(void);
int wmi_small_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *A,
                   int lda, const float *B, int ldb, float beta, float *C, int ldc);

#endif
