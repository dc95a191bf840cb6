/* gemm_small_body.h -- the kernels of src/gemm_small.c, written once over a
 * vector type and included there once per instruction set (AVX2 + FMA with
 * 8-float vectors, AVX-512 with 16-float ones). The includer defines:
 *   V, VW            the vector type and its lanes
 *   KERNEL           static inline always_inline with the target attribute
 *   ENTRY            static, with the target attribute
 *   SFX(name)        name with the set's suffix
 *   V_LOAD(p) V_STORE(p, v) V_SET1(x) V_ZERO() V_MUL(a, b) V_FMA(a, b, c)
 *   V_LOADM(p, n) V_STOREM(p, v, n)   the first n (1..VW-1) lanes; the rest
 *                    read as 0 and are not written (no access past them)
 *   V_SUM4(a, b, c, d)  an __m128 of the four vectors' lane sums, each in a
 *                    fixed order
 * Every output's summation order is fixed by the source: the same inputs give
 * the same bits on every call. Row-major; A's entry (i, p) is
 * A[i*si + p*sp], so one body serves op(A) = A and A^T. */

/* ---- rank form: k <= 4 terms, C written once --------------------------------
 * C_ij = (alpha a_i0) b_0j + (alpha a_i1) b_1j + ..., in that order, fused
 * multiply-adds, then + beta C_ij. mr rows at a time with their alpha a_ip in
 * registers, sweeping all of B's k rows (small: they stay in L1) and writing
 * each C row once, front to back. */
KERNEL void SFX(rank_cols)(const int mr, const int k, const int use_beta, int j, int n, int t,
                           V a[4][4], const float *B, size_t ldb, V vb, float *C, size_t ldc)
{
    V b[4];
#pragma GCC unroll 4
    for (int p = 0; p < k; p++)
        b[p] = t == VW ? V_LOAD(B + p * ldb + j) : V_LOADM(B + p * ldb + j, t);
#pragma GCC unroll 4
    for (int r = 0; r < mr; r++) {
        V s = V_MUL(a[r][0], b[0]);
#pragma GCC unroll 4
        for (int p = 1; p < k; p++)
            s = V_FMA(a[r][p], b[p], s);
        float *c = C + r * ldc + j;
        if (use_beta)
            s = V_FMA(vb, t == VW ? V_LOAD(c) : V_LOADM(c, t), s);
        if (t == VW)
            V_STORE(c, s);
        else
            V_STOREM(c, s, t);
    }
    (void)n;
}

/* mr rows: a masked head up to the first row's vector alignment (a store
 * that splits a cache line costs the core a second one: 84 against
 * 114 GB/s on Zen 4), whole vectors, a masked tail. */
KERNEL void SFX(rank_rows)(const int mr, const int k, const int use_beta, int n, const float *A,
                           size_t si, size_t sp, const float *B, size_t ldb, float alpha,
                           float beta, float *C, size_t ldc)
{
    V a[4][4], vb = V_SET1(beta);
#pragma GCC unroll 4
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int p = 0; p < k; p++)
            a[r][p] = V_SET1(alpha * A[r * si + p * sp]);
    int j = (int)((VW - ((uintptr_t)C / sizeof(float)) % VW) % VW);
    if (j > n)
        j = n;
    if (j > 0)
        SFX(rank_cols)(mr, k, use_beta, 0, n, j, a, B, ldb, vb, C, ldc);
    for (; j + VW <= n; j += VW)
        SFX(rank_cols)(mr, k, use_beta, j, n, VW, a, B, ldb, vb, C, ldc);
    if (j < n)
        SFX(rank_cols)(mr, k, use_beta, j, n, n - j, a, B, ldb, vb, C, ldc);
}

/* All rows, for one k (a constant after inlining, so a[][] and b[] are
 * registers). */
KERNEL void SFX(rank_k)(const int k, const int use_beta, int m, int n, const float *A, size_t si,
                        size_t sp, const float *B, size_t ldb, float alpha, float beta, float *C,
                        size_t ldc)
{
    int i = 0;
    for (; i + 4 <= m; i += 4)
        SFX(rank_rows)(4, k, use_beta, n, A + i * si, si, sp, B, ldb, alpha, beta, C + i * ldc, ldc);
    for (; i < m; i++)
        SFX(rank_rows)(1, k, use_beta, n, A + i * si, si, sp, B, ldb, alpha, beta, C + i * ldc, ldc);
}

ENTRY void SFX(rank_form)(int m, int n, int k, const float *A, size_t si, size_t sp,
                          const float *B, size_t ldb, float alpha, float beta, float *C, size_t ldc)
{
#define RANK_CASE(K)                                                                           \
    case K:                                                                                    \
        if (beta != 0.0f)                                                                      \
            SFX(rank_k)(K, 1, m, n, A, si, sp, B, ldb, alpha, beta, C, ldc);                   \
        else                                                                                   \
            SFX(rank_k)(K, 0, m, n, A, si, sp, B, ldb, alpha, beta, C, ldc);                   \
        break;
    switch (k) {
    RANK_CASE(1)
    RANK_CASE(2)
    RANK_CASE(3)
    RANK_CASE(4)
    }
#undef RANK_CASE
}

/* ---- rows form: B not transposed, any k -------------------------------------
 * mr (1-4) rows of C, a strip of nv vectors: mr * nv accumulators (12 at
 * most: two FMA pipes of latency 4 need 8 in flight), p in order, each row
 * of B's strip read once for all mr rows; then alpha acc (+ beta C). The
 * last vector of the strip has `last` lanes (VW: full). */
KERNEL void SFX(rows_strip)(const int mr, const int nv, int last, int k, const float *A, size_t si,
                            size_t sp, const float *B, size_t ldb, float alpha, float beta,
                            float *C, size_t ldc)
{
    V acc[4][12];
#pragma GCC unroll 4
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 12
        for (int v = 0; v < nv; v++)
            acc[r][v] = V_ZERO();
    for (int p = 0; p < k; p++) {
        const float *b = B + p * ldb;
        V bv[12];
#pragma GCC unroll 12
        for (int v = 0; v < nv - 1; v++)
            bv[v] = V_LOAD(b + v * VW);
        bv[nv - 1] = last == VW ? V_LOAD(b + (nv - 1) * VW) : V_LOADM(b + (nv - 1) * VW, last);
#pragma GCC unroll 4
        for (int r = 0; r < mr; r++) {
            V a = V_SET1(A[r * si + p * sp]);
#pragma GCC unroll 12
            for (int v = 0; v < nv; v++)
                acc[r][v] = V_FMA(a, bv[v], acc[r][v]);
        }
    }
    V va = V_SET1(alpha), vb = V_SET1(beta);
#pragma GCC unroll 4
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 12
        for (int v = 0; v < nv; v++) {
            float *c = C + r * ldc + v * VW;
            int full = v < nv - 1 || last == VW;
            V s = V_MUL(va, acc[r][v]);
            if (beta != 0.0f)
                s = V_FMA(vb, full ? V_LOAD(c) : V_LOADM(c, last), s);
            if (full)
                V_STORE(c, s);
            else
                V_STOREM(c, s, last);
        }
}

/* mr rows: strips of 12 / mr vectors, then of 4, 2 and 1 (a narrow strip
 * has fewer independent sums: on a long k a single vector would run at the
 * FMA latency, not its throughput); the last vector masked to n. */
KERNEL void SFX(rows_mr)(const int mr, int n, int k, const float *A, size_t si, size_t sp,
                         const float *B, size_t ldb, float alpha, float beta, float *C, size_t ldc)
{
    const int nv = 12 / mr, nvec = (n + VW - 1) / VW, last = n - (nvec - 1) * VW;
    int v = 0;
    /* the masked strip apart: a run-time lane count costs AVX2 a mask
     * register in the loop, and its 16 registers then spill */
#define ROWS_STRIPS(W)                                                                          \
    for (; nvec - v >= (W); v += (W)) {                                                         \
        if (v + (W) == nvec && last != VW)                                                      \
            SFX(rows_strip)(mr, (W), last, k, A, si, sp, B + v * VW, ldb, alpha, beta,          \
                            C + v * VW, ldc);                                                   \
        else                                                                                    \
            SFX(rows_strip)(mr, (W), VW, k, A, si, sp, B + v * VW, ldb, alpha, beta,            \
                            C + v * VW, ldc);                                                   \
    }
    ROWS_STRIPS(nv)
    if (nv > 4)
        ROWS_STRIPS(4)
    if (nv > 2)
        ROWS_STRIPS(2)
    ROWS_STRIPS(1)
#undef ROWS_STRIPS
}

/* Blocks of up to 4 rows (B streamed once per block: the form is for m <= 4). */
ENTRY void SFX(rows_form)(int m, int n, int k, const float *A, size_t si, size_t sp,
                          const float *B, size_t ldb, float alpha, float beta, float *C, size_t ldc)
{
    for (int i = 0; i < m; i += 4) {
        const float *a = A + i * si;
        float *c = C + i * ldc;
        switch (m - i < 4 ? m - i : 4) {
        case 1: SFX(rows_mr)(1, n, k, a, si, sp, B, ldb, alpha, beta, c, ldc); break;
        case 2: SFX(rows_mr)(2, n, k, a, si, sp, B, ldb, alpha, beta, c, ldc); break;
        case 3: SFX(rows_mr)(3, n, k, a, si, sp, B, ldb, alpha, beta, c, ldc); break;
        default: SFX(rows_mr)(4, n, k, a, si, sp, B, ldb, alpha, beta, c, ldc); break;
        }
    }
}

/* ---- dot form: C_ij = alpha X_i . Y_j + beta C_ij, X and Y rows contiguous ----
 * The thin side is Y (ny <= 4 rows, all at once); X's rows go mx at a time
 * with mx * ny <= 12 accumulators. The output (i, j) is C[i*ci + j*cj], so
 * the caller can make X either operand. Each accumulator sums its lanes' p
 * in order, the last partial vector read masked (zeros); then V_SUM4. */
KERNEL void SFX(dot_block)(const int mx, const int ny, int k, const float *X, size_t ldx,
                           const float *Y, size_t ldy, float alpha, float beta, float *C, size_t ci,
                           size_t cj)
{
    V acc[12][4];
#pragma GCC unroll 12
    for (int r = 0; r < mx; r++)
#pragma GCC unroll 4
        for (int c = 0; c < ny; c++)
            acc[r][c] = V_ZERO();
    int p = 0;
    for (; p + VW <= k; p += VW) {
        V y[4];
#pragma GCC unroll 4
        for (int c = 0; c < ny; c++)
            y[c] = V_LOAD(Y + c * ldy + p);
#pragma GCC unroll 12
        for (int r = 0; r < mx; r++) {
            V x = V_LOAD(X + r * ldx + p);
#pragma GCC unroll 4
            for (int c = 0; c < ny; c++)
                acc[r][c] = V_FMA(x, y[c], acc[r][c]);
        }
    }
    if (p < k) {
        int t = k - p;
        V y[4];
#pragma GCC unroll 4
        for (int c = 0; c < ny; c++)
            y[c] = V_LOADM(Y + c * ldy + p, t);
#pragma GCC unroll 12
        for (int r = 0; r < mx; r++) {
            V x = V_LOADM(X + r * ldx + p, t);
#pragma GCC unroll 4
            for (int c = 0; c < ny; c++)
                acc[r][c] = V_FMA(x, y[c], acc[r][c]);
        }
    }
    /* the sums, four accumulators at a time (V_SUM4), in (r, c) order */
    float sum[12];
#pragma GCC unroll 3
    for (int g = 0; g < (mx * ny + 3) / 4; g++) {
        V q[4];
#pragma GCC unroll 4
        for (int e = 0; e < 4; e++)
            q[e] = 4 * g + e < mx * ny ? acc[(4 * g + e) / ny][(4 * g + e) % ny] : V_ZERO();
        _mm_storeu_ps(sum + 4 * g, V_SUM4(q[0], q[1], q[2], q[3]));
    }
    for (int r = 0; r < mx; r++)
        for (int c = 0; c < ny; c++) {
            float v = alpha * sum[r * ny + c], *out = C + r * ci + c * cj;
            *out = beta != 0.0f ? v + beta * *out : v;
        }
}

KERNEL void SFX(dot_ny)(const int ny, int mx_all, int k, const float *X, size_t ldx,
                        const float *Y, size_t ldy, float alpha, float beta, float *C, size_t ci,
                        size_t cj)
{
    const int mx = 12 / ny;   /* full blocks, then blocks of 4, 2, 1 rows */
    int i = 0;
#define DOT_BLOCKS(W)                                                                           \
    for (; i + (W) <= mx_all; i += (W))                                                         \
        SFX(dot_block)((W), ny, k, X + i * ldx, ldx, Y, ldy, alpha, beta, C + i * ci, ci, cj);
    DOT_BLOCKS(mx)
    if (mx > 4)
        DOT_BLOCKS(4)
    if (mx > 2)
        DOT_BLOCKS(2)
    DOT_BLOCKS(1)
#undef DOT_BLOCKS
}

/* C (m x n) = alpha A B^T + beta C: the thinner side is Y, in blocks of 4;
 * the wide side X in chunks of 12 rows (every block shape's multiple), each
 * chunk against all of Y while it is in L1, so X crosses memory once and Y
 * (a side of at most 32 rows, wmi_small_gemm_form) stays in L2. Each output
 * is one dot_block accumulator whatever the blocking: the same bits. */
ENTRY void SFX(dot_form)(int m, int n, int k, const float *A, size_t lda, const float *B,
                         size_t ldb, float alpha, float beta, float *C, size_t ldc)
{
    int swap = m < n;            /* X = the wide side, Y = the thin one */
    const float *X = swap ? B : A, *Y = swap ? A : B;
    size_t ldx = swap ? ldb : lda, ldy = swap ? lda : ldb, ci = swap ? 1 : ldc, cj = swap ? ldc : 1;
    int mx = swap ? n : m, my = swap ? m : n;
    for (int i = 0; i < mx; i += 12) {
        const int rows = mx - i < 12 ? mx - i : 12;
        const float *x = X + i * ldx;
        for (int j = 0; j < my; j += 4) {
            const float *y = Y + j * ldy;
            float *c = C + i * ci + j * cj;
            switch (my - j < 4 ? my - j : 4) {
            case 1: SFX(dot_ny)(1, rows, k, x, ldx, y, ldy, alpha, beta, c, ci, cj); break;
            case 2: SFX(dot_ny)(2, rows, k, x, ldx, y, ldy, alpha, beta, c, ci, cj); break;
            case 3: SFX(dot_ny)(3, rows, k, x, ldx, y, ldy, alpha, beta, c, ci, cj); break;
            default: SFX(dot_ny)(4, rows, k, x, ldx, y, ldy, alpha, beta, c, ci, cj); break;
            }
        }
    }
}
