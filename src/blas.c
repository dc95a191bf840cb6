/* blas.c -- thin wrappers over cblas (OpenBLAS, BLIS or the reference BLAS),
 * and the routes a product can take to it, chosen by measurement.
 *
 * Routes (issue 15). A product with a thin dimension can be issued
 *  - plain: one cblas_sgemm call;
 *  - split: as blocks of C that OpenBLAS's small-matrix kernels take (0.3.17+,
 *    its SkylakeX-class cores): the regular path packs the whole large operand
 *    for a few rows of work, the small kernels skip packing;
 *  - own: the library's kernels (src/gemm_small.c, AVX2 or AVX-512), for
 *    products with a dimension of at most 4 (batch 2-4), in three forms
 *    (rank k <= 4, rows m <= 4, dot products with a thin side), and the
 *    rows and dot forms again for a side of 5-32, each chosen on its own:
 *    on cores where OpenBLAS has no small kernels its regular path reaches
 *    only 9-31% of its 2048^3 rate at a side of 2 and 39-60% for the last
 *    layer's 10 rows, and even its small kernels only about half of it for
 *    the k = 2 weight gradients;
 * and one sample's product (a gemv) as sgemv or as a one-row sgemm, which the
 * same small kernels make faster. Which routes pay is measured once per
 * process, on the core the process runs on (no list of core names):
 * table_init() below. Routes give other float summation orders than the
 * plain call, so a route is chosen only by a decisive margin between
 * well-separated populations (see there), and WM_GEMM_ROUTE=plain|split|own
 * pins the choice (unset: measure; bare: plain without the memset below);
 * WM_GEMM_ISA=avx2 keeps the own kernels to AVX2 (what an AVX2 core would
 * measure and choose, seen on a wider core). Both ignore case; other values
 * are ignored (the routes are measured, the widest kernels used).
 *
 * Independently of the route, beta = 0 on OpenBLAS's regular path zeroes C in
 * a separate slow pass (sgemm_beta); clearing C with memset and passing
 * beta = 1 gives the same sums (the kernel adds its result to a zero C) and
 * is always on (WM_GEMM_ROUTE=bare turns it off, for measuring), except
 * where a small kernel takes the call:
 * they write C without reading it when beta = 0. The memset also keeps
 * beta = 0's contract: whatever C held (NaN included) is ignored. */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "blas.h"

/* Whether OpenBLAS sends a row-major call of this shape to a small kernel.
 * Its rule (kernel/x86_64/sgemm_small_kernel_permit_skylakex.c, stated in
 * column-major terms, where a row-major call is C^T = op(B)^T op(A)^T):
 * M*N*K <= 100^3; a transposed A with a plain B needs M*N <= 1200 and
 * K >= 32 as well; both transposed is never taken. Only consulted where the
 * measurement found the split route faster, i.e. where such kernels exist. */
static int small_kernel_takes(int trans_a, int trans_b, long m, long n, long k)
{
    int cm_ta = trans_b, cm_tb = trans_a;
    if ((double)m * n * k > 1e6 || (cm_ta && cm_tb))
        return 0;
    return !cm_ta || cm_tb || (m * n <= 1200 && k >= 32);
}

/* One cblas call; with zero_first, beta = 0 becomes a memset of C's rows and
 * beta = 1. */
static void sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc, int zero_first)
{
    if (zero_first && beta == 0.0f) {
        if (ldc == n)
            memset(C, 0, sizeof(float) * (size_t)m * (size_t)n);
        else
            for (int i = 0; i < m; i++)
                memset(C + (size_t)i * ldc, 0, sizeof(float) * (size_t)n);
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, A, lda, B, ldb,
                beta, C, ldc);
}

/* A product with a thin dimension (at most SKINNY rows or columns of C, or
 * terms in each sum) that is too big for the small kernels, as blocks of C
 * that they take, in whole 16s. Returns 0 (and does nothing) when no such
 * blocking exists; the caller then takes the plain route. With 16 samples
 * the MLP's products took 1.3-1.7x as long as one call on Zen 4's
 * Cooperlake kernels (docs/performance.md); from 128 samples on the regular
 * path is as fast. */
enum { SKINNY = 64 };

static int gemm_split(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *A,
                      int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    if (!(m <= SKINNY || n <= SKINNY || k <= SKINNY) || small_kernel_takes(trans_a, trans_b, m, n, k))
        return 0;
    int split_rows = m >= n, extent = split_rows ? m : n, b = extent / 16 * 16;
    while (b >= 16 && !(split_rows ? small_kernel_takes(trans_a, trans_b, b, n, k)
                                   : small_kernel_takes(trans_a, trans_b, m, b, k)))
        b -= 16;
    if (b < 16)
        return 0;
    for (int at = 0; at < extent; at += b) {
        int len = extent - at < b ? extent - at : b;
        if (split_rows)
            sgemm(trans_a, trans_b, len, n, k, alpha, trans_a ? A + at : A + (size_t)at * lda,
                  lda, B, ldb, beta, C + (size_t)at * ldc, ldc, 0);
        else
            sgemm(trans_a, trans_b, m, len, k, alpha, A, lda,
                  trans_b ? B + (size_t)at * ldb : B + at, ldb, beta, C + at, ldc, 0);
    }
    return 1;
}

void wmi_gemm_via(int route, int trans_a, int trans_b, int m, int n, int k, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    if (m <= 0 || n <= 0)
        return;
    if ((route & WMI_ROUTE_OWN) && (route & wmi_small_gemm_form(trans_a, trans_b, m, n, k)) &&
        wmi_small_gemm_isa(route & WMI_ROUTE_OWN_AVX2 ? WMI_ISA_AVX2 : WMI_ISA_BEST, trans_a, trans_b,
                           m, n, k, alpha, A, lda, B, ldb, beta, C, ldc))
        return;
    if ((route & WMI_ROUTE_SPLIT) &&
        gemm_split(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc))
        return;
    /* a call the small kernels take keeps beta = 0: they have a variant that
     * writes C without reading it, which a memset would only slow down */
    int small = (route & WMI_ROUTE_SPLIT) && small_kernel_takes(trans_a, trans_b, m, n, k);
    sgemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc,
          (route & WMI_ROUTE_ZERO) && !small);
}

/* y (m) = alpha op(A) x + beta y through a one-row sgemm (the ONE_ROW route)
 * or sgemv. */
void wmi_gemv_via(int route, int trans_a, int m_rows, int n_cols, float alpha, const float *A,
                  int lda, const float *x, float beta, float *y)
{
    if (m_rows <= 0 || n_cols <= 0)
        return;
    if (route & WMI_ROUTE_ONE_ROW) {
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

/* ---- the route table: measured once per process -------------------------------- */

/* This thread's CPU time: what a call cost this thread, not counting the time
 * other processes (or a spinning BLAS worker of this one) held the core. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* The calibration's products, each run `reps` times per timing, all small
 * enough that OpenBLAS does not thread them (m n k <= 2^18), so the ratios do
 * not depend on its thread count:
 *  - SPLIT_CAL, split against plain: W X^T at 2 samples with too many rows
 *    (m n > 1200) for OpenBLAS's small kernels in one call. Plain/split was
 *    2.78-2.94 with its Cooperlake kernels on Zen 4 and 0.98-1.16 with its
 *    Haswell kernels on the same core (no small kernels: the split is the
 *    regular path in 2 calls), in fresh processes at 1 and 2 threads.
 *  - RANK_CAL, ROWS_CAL, DOT_CAL, each own form against the BLAS route
 *    chosen above (split or plain): the MLP's batch-2 products of the form
 *    (dW = D^T X blocks, dX = D W, W X^T); ROWS_WIDE_CAL and DOT_WIDE_CAL:
 *    its batch-16 and 64 products with a side of 5-32 where OpenBLAS's AVX2
 *    kernels fall furthest behind (the last layer's dW, dX and W X^T; the
 *    wider dW blocks gain less, 1.2-1.3x, and made the choice noisy).
 *    tests/bench/gemm_shapes.c has the figures on Zen 4 with OpenBLAS's
 *    Cooperlake and Haswell kernels.
 * Each route is timed CAL_ROUNDS times (more near a threshold: time_ratio),
 * alternating, after a warm-up round; the fastest time of each counts; the
 * ratio is the geometric mean over the shapes. */
typedef struct { int ta, tb, m, n, k, reps; } shape;
static const shape SPLIT_CAL[] = {{0, 1, 768, 2, 128, 4}, {0, 1, 1024, 2, 128, 4}};
static const shape RANK_CAL[] = {{1, 0, 64, 256, 2, 8}, {1, 0, 20, 784, 2, 8}, {1, 0, 10, 256, 2, 32}};
static const shape ROWS_CAL[] = {{0, 0, 2, 256, 256, 4}, {0, 0, 2, 256, 30, 16}};
static const shape DOT_CAL[] = {{0, 1, 256, 2, 256, 4}, {0, 1, 30, 2, 256, 16}, {0, 1, 10, 2, 256, 32}};
static const shape ROWS_WIDE_CAL[] = {{1, 0, 10, 256, 16, 16}, {1, 0, 10, 256, 64, 4},
                                      {0, 0, 16, 256, 10, 16}, {0, 0, 64, 256, 10, 4}};
static const shape DOT_WIDE_CAL[] = {{0, 1, 10, 16, 256, 16}, {0, 1, 30, 16, 256, 8}, {0, 1, 10, 64, 256, 4}};
/* Each own form: its shapes, its route bit, the BLAS/own ratio above which
 * it is taken (the measured populations behind each: the table above
 * DECISIVE, below), a form that must have been taken first (0: none), and
 * its slot in wmi_gemm_routes' ratios. Measured in this order. */
static const struct {
    const shape *cal;
    int n_cal, route;
    double threshold;
    int needs, slot;
} OWN_FORMS[] = {
    {RANK_CAL, sizeof RANK_CAL / sizeof *RANK_CAL, WMI_ROUTE_OWN_RANK, 1.15, 0, 1},
    {ROWS_CAL, sizeof ROWS_CAL / sizeof *ROWS_CAL, WMI_ROUTE_OWN_ROWS, 1.5, 0, 2},
    {DOT_CAL, sizeof DOT_CAL / sizeof *DOT_CAL, WMI_ROUTE_OWN_DOT, 1.5, 0, 3},
    {DOT_WIDE_CAL, sizeof DOT_WIDE_CAL / sizeof *DOT_WIDE_CAL, WMI_ROUTE_OWN_DOT_WIDE, 1.15, 0, 5},
    {ROWS_WIDE_CAL, sizeof ROWS_WIDE_CAL / sizeof *ROWS_WIDE_CAL, WMI_ROUTE_OWN_ROWS_WIDE, 1.0,
     WMI_ROUTE_OWN_DOT_WIDE, 4}};
_Static_assert(sizeof OWN_FORMS / sizeof *OWN_FORMS + 1 == WMI_ROUTE_RATIOS, "a ratio per form");
enum { CAL_ROUNDS = 7 };

/* The time of route `slow` over route `fast` on the given shapes (at most
 * CAL_MAX_SHAPES): rounds of every shape, both routes alternating, the
 * fastest time of each counting (a busy core only ever slows a call down).
 * After CAL_ROUNDS rounds, and every CAL_ROUNDS more, the ratio is taken if
 * it lies clearly (CAL_CLEAR times) on one side of `threshold`; near it
 * more rounds run, up to CAL_MAX_ROUNDS, so that a stretch of slow rounds
 * for one route (the other hardware thread busy, say) cannot flip the
 * choice between processes. */
enum { CAL_MAX_SHAPES = 4, CAL_MAX_ROUNDS = 5 * CAL_ROUNDS };
#define CAL_FITS(list) _Static_assert(sizeof list / sizeof *list <= CAL_MAX_SHAPES, #list " fits")
CAL_FITS(SPLIT_CAL);
CAL_FITS(RANK_CAL);
CAL_FITS(ROWS_CAL);
CAL_FITS(DOT_CAL);
CAL_FITS(ROWS_WIDE_CAL);
CAL_FITS(DOT_WIDE_CAL);
#define CAL_CLEAR 1.3

static double time_ratio(const shape *cal, int n_cal, int slow, int fast, float *a, float *b,
                         float *c, double threshold)
{
    double best[CAL_MAX_SHAPES][2], ratio = 1.0;
    for (int s = 0; s < n_cal; s++)
        best[s][0] = best[s][1] = 1e30;
    for (int r = 0; r <= CAL_MAX_ROUNDS; r++) {      /* round 0 warms up */
        for (int s = 0; s < n_cal; s++) {
            const shape *p = &cal[s];
            int lda = p->ta ? p->m : p->k, ldb = p->tb ? p->k : p->n;
            for (int v = 0; v < 2; v++) {
                double t0 = cpu_s();
                for (int i = 0; i < p->reps; i++)
                    wmi_gemm_via(v ? fast : slow, p->ta, p->tb, p->m, p->n, p->k, 1.0f, a, lda,
                                 b, ldb, 0.0f, c, p->n);
                double dt = cpu_s() - t0;
                if (r && dt < best[s][v])
                    best[s][v] = dt;
            }
        }
        if (r == 0 || r % CAL_ROUNDS)
            continue;
        double log_ratio = 0;
        for (int s = 0; s < n_cal; s++)
            log_ratio += log(best[s][0] / (best[s][1] > 0 ? best[s][1] : 1e-9));
        ratio = exp(log_ratio / n_cal);
        if (ratio > threshold * CAL_CLEAR || ratio < threshold / CAL_CLEAR)
            break;
    }
    return ratio;
}

/* A route replaces the stable default (plain) only when the default takes
 * DECISIVE times as long: 1.5 lies inside the split's gap (0.86-1.13
 * against 2.5-4.3 in 1000+ processes) with room of 1.3x and more on either
 * side, so timing noise does not move the choice, and the timings are by
 * thread CPU time, so a loaded machine's other processes do not either.
 * Each own form is measured against the BLAS route chosen before it, on
 * every core with AVX2, and taken above its own threshold, set between the
 * populations of BLAS/own measured in fresh processes on Zen 4 (300-1000
 * per setting, 1 and 2 OpenBLAS threads, the machine loaded by other
 * benchmarks; calibration operands 64-byte aligned):
 *   form       Cooperlake kernels   AVX2 kernels forced   threshold
 *   rank       1.35-1.94            1.8 and more          1.15
 *   rows       0.73-1.20            2.6 and more          1.5
 *   dot        0.72-1.09            3.8 and more          1.5
 *   dot-wide   0.60-0.92            1.33 and more         1.15
 *   rows-wide  0.61-1.37            1.23 and more         1.0 after dot-wide
 * The rows-wide populations overlap (a process's placement moves the BLAS's
 * time by up to 1.37x), so that form follows the dot-wide decision and is
 * taken only where it is also not slower. The rank, rows and rows-wide
 * forms give OpenBLAS's bits for alpha = 1 (each output one FMA chain over
 * k in order), the dot forms do not. The one-row sgemm for a
 * gemv pays through the same small kernels as the split (7.5 vs 8.1 us for
 * 256x784 on Cooperlake, docs/performance.md): too small a gain to measure
 * decisively on its own, so it follows the split's measurement. */
#define DECISIVE 1.5

static struct {
    int gemm_route, gemv_route;
    double ratio[WMI_ROUTE_RATIOS];   /* plain/split, BLAS/own per form (0: pinned or not measured) */
} table;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void)
{
    const char *env = getenv("WM_GEMM_ROUTE"), *isa_env = getenv("WM_GEMM_ISA");
    /* an AVX2 core's choice on a wider one: the own kernels kept to AVX2,
     * measured so as well */
    const int isa = isa_env && !strcasecmp(isa_env, "avx2") ? WMI_ROUTE_OWN_AVX2 : 0;
    int split = 0, own = 0;
    const int n_forms = (int)(sizeof OWN_FORMS / sizeof *OWN_FORMS);
    if (env && !strcasecmp(env, "bare")) {      /* the BLAS as called before issue 15 */
        table.gemm_route = table.gemv_route = 0;
        return;
    }
    if (env && !strcasecmp(env, "split"))
        split = 1;
    else if (env && !strcasecmp(env, "own"))
        own = wmi_small_gemm_available() ? WMI_ROUTE_OWN : 0;
    else if (!(env && !strcasecmp(env, "plain"))) {
        size_t na = 0, nb = 0, nc = 0;       /* the largest operands measured */
        for (int f = -1; f < n_forms; f++) {
            const shape *cal = f < 0 ? SPLIT_CAL : OWN_FORMS[f].cal;
            int n_cal = f < 0 ? (int)(sizeof SPLIT_CAL / sizeof *SPLIT_CAL) : OWN_FORMS[f].n_cal;
            for (int s = 0; s < n_cal; s++) {
                const shape *p = &cal[s];
                size_t a = (size_t)p->m * p->k, b = (size_t)p->k * p->n, c = (size_t)p->m * p->n;
                na = a > na ? a : na, nb = b > nb ? b : nb, nc = c > nc ? c : nc;
            }
        }
        /* operands on 64-byte lines, as the library's own are (the pass's
         * arrays and the parameters' blocks): a vector load that splits two
         * lines slows the own kernels 1.3-1.5x (AVX2 / AVX-512 on Zen 4),
         * which would bias the choice against them */
        na = (na + 15) / 16 * 16, nb = (nb + 15) / 16 * 16;
        float *mem = aligned_alloc(64, sizeof(float) * ((na + nb + nc + 15) / 16 * 16));
        if (mem) {
            float *a = mem, *b = a + na, *c = b + nb;
            for (size_t i = 0; i < na + nb + nc; i++)   /* small, varied, finite values */
                mem[i] = (float)((int)(i * 2654435761u % 2001u) - 1000) * 1e-3f;
            table.ratio[0] = time_ratio(SPLIT_CAL, (int)(sizeof SPLIT_CAL / sizeof *SPLIT_CAL),
                                        WMI_ROUTE_ZERO, WMI_ROUTE_SPLIT | WMI_ROUTE_ZERO, a, b, c,
                                        DECISIVE);
            split = table.ratio[0] > DECISIVE;
            int blas = WMI_ROUTE_ZERO | (split ? WMI_ROUTE_SPLIT : 0);
            for (int f = 0; f < n_forms && wmi_small_gemm_available(); f++) {
                if (OWN_FORMS[f].needs && !(own & OWN_FORMS[f].needs))
                    continue;                  /* not measured: ratio 0 */
                double r = time_ratio(OWN_FORMS[f].cal, OWN_FORMS[f].n_cal, blas,
                                      blas | OWN_FORMS[f].route | isa, a, b, c, OWN_FORMS[f].threshold);
                table.ratio[OWN_FORMS[f].slot] = r;
                own |= r > OWN_FORMS[f].threshold ? OWN_FORMS[f].route : 0;
            }
            free(mem);
        }
    }
    table.gemm_route = WMI_ROUTE_ZERO | (split ? WMI_ROUTE_SPLIT : 0) | own | (own ? isa : 0);
    table.gemv_route = split ? WMI_ROUTE_ONE_ROW : 0;
}

void wmi_gemm_routes(int *gemm_route, int *gemv_route, double measured[WMI_ROUTE_RATIOS])
{
    pthread_once(&table_once, table_init);
    if (gemm_route)
        *gemm_route = table.gemm_route;
    if (gemv_route)
        *gemv_route = table.gemv_route;
    if (measured)
        for (int i = 0; i < WMI_ROUTE_RATIOS; i++)
            measured[i] = table.ratio[i];
}

void wmi_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
             const float *A, int lda, const float *B, int ldb, float beta,
             float *C, int ldc)
{
    int route;
    wmi_gemm_routes(&route, NULL, NULL);
    wmi_gemm_via(route, trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* One sample's product: sgemv, or a one-row sgemm where that was measured
 * faster, and only for rows of 32 or more floats in whole 16-float vectors
 * (the small kernels' sweet spot: 7.5 vs 8.1 us for 256x784, 2.3 vs 2.9 us
 * for 256x256, 0.46 vs 0.67 us for 192x64 on Zen 4's Cooperlake kernels;
 * not for rows of 16 or 24 floats, docs/performance.md). */
void wmi_gemv(int trans_a, int m_rows, int n_cols, float alpha, const float *A, int lda,
             const float *x, float beta, float *y)
{
    int route;
    wmi_gemm_routes(NULL, &route, NULL);
    if (!(n_cols >= 32 && n_cols % 16 == 0))
        route = 0;
    wmi_gemv_via(route, trans_a, m_rows, n_cols, alpha, A, lda, x, beta, y);
}
