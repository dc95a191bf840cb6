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
 * SPLIT    skinny products as blocks OpenBLAS's small kernels take;
 * ZERO     beta = 0 as memset + beta = 1 on the regular path (bitwise the same);
 * ONE_ROW  a gemv as a one-row sgemm;
 * OWN_*    skinny products through the library's own kernels (src/gemm_small.c),
 *          one bit per form (wmi_small_gemm_form): RANK (B plain, k <= 4),
 *          ROWS (B plain, m <= 4), DOT (B transposed, m or n <= 4), and the
 *          same kernels on wider products: ROWS_WIDE (B plain, m <= 32),
 *          DOT_WIDE (B transposed, m or n <= 32);
 * OWN      all five forms;
 * OWN_AVX2 the own kernels with AVX2 even where the CPU has AVX-512
 *          (WM_GEMM_ISA=avx2: an AVX2 core's choices, measured on this one). */
enum { WMI_ROUTE_SPLIT = 1, WMI_ROUTE_ZERO = 2, WMI_ROUTE_ONE_ROW = 4, WMI_ROUTE_OWN_RANK = 8,
       WMI_ROUTE_OWN_ROWS = 16, WMI_ROUTE_OWN_DOT = 32, WMI_ROUTE_OWN_ROWS_WIDE = 64,
       WMI_ROUTE_OWN_DOT_WIDE = 128,
       WMI_ROUTE_OWN = WMI_ROUTE_OWN_RANK | WMI_ROUTE_OWN_ROWS | WMI_ROUTE_OWN_DOT |
                       WMI_ROUTE_OWN_ROWS_WIDE | WMI_ROUTE_OWN_DOT_WIDE,
       WMI_ROUTE_OWN_AVX2 = 256 };

/* wmi_gemm / wmi_gemv through the given route (benchmarks and tests). */
void wmi_gemm_via(int route, int trans_a, int trans_b, int m, int n, int k, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
void wmi_gemv_via(int route, int trans_a, int m_rows, int n_cols, float alpha, const float *A,
                  int lda, const float *x, float beta, float *y);

/* The routes this process chose (measured at the first product, once per
 * process; WM_GEMM_ROUTE=plain|split|own|bare pins them, WM_GEMM_ISA=avx2
 * keeps the own kernels to AVX2), and the calibration's time ratios:
 * plain/split, then BLAS/own for the own rank, rows, dot, rows-wide and
 * dot-wide forms (BLAS: the split or plain route, whichever was chosen; 0
 * when pinned or not measured). Any argument may be NULL. Thread-safe. */
enum { WMI_ROUTE_RATIOS = 6 };
void wmi_gemm_routes(int *gemm_route, int *gemv_route, double measured[WMI_ROUTE_RATIOS]);

/* The library's own skinny-product kernels (src/gemm_small.c). Thin: the
 * largest m, n or k a form is for. */
enum { WMI_SMALL_THIN = 4 };

/* The own form (a WMI_ROUTE_OWN_* bit) a product of this shape takes, or 0:
 * RANK if B is plain and 1 <= k <= 4, else ROWS if B is plain and m <= 4,
 * else DOT if B is transposed (A plain) and m or n <= 4; else ROWS_WIDE if B
 * is plain, m <= 32 and B (k x n) at most 2^18 floats, or m <= 64 and B at
 * most 2^15 floats (swept once per 4 rows of A: the last layer's dX at
 * batch 64, 64 x 256 x 10), else DOT_WIDE if B is transposed, the thinner side t <= 32
 * and its operand (t x k) at most 2^16 floats (kept in L2 while the other
 * streams once). */
enum { WMI_SMALL_WIDE = 32 };
int wmi_small_gemm_form(int trans_a, int trans_b, int m, int n, int k);

/* Whether this CPU can run the kernels (AVX2 and FMA). */
int wmi_small_gemm_available(void);

/* The product, as wmi_gemm, through the own kernels, any shape (efficient
 * where wmi_small_gemm_form says so); with the widest vectors the CPU has,
 * or (wmi_small_gemm_isa, for tests and benchmarks) the given set. Return 0
 * (and do nothing) for both operands transposed or a set the CPU lacks. */
enum { WMI_ISA_BEST = 0, WMI_ISA_AVX2 = 1, WMI_ISA_AVX512 = 2 };
int wmi_small_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *A,
                   int lda, const float *B, int ldb, float beta, float *C, int ldc);
int wmi_small_gemm_isa(int isa, int trans_a, int trans_b, int m, int n, int k, float alpha,
                       const float *A, int lda, const float *B, int ldb, float beta, float *C,
                       int ldc);

#endif
