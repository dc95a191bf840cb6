/* test_blas.c -- src/blas.c's product routes (issue 15): each route's result
 * equals a plain double-precision product to float rounding, for every
 * transpose combination, edge sizes, strides longer than a row and beta = 0
 * over a NaN-filled C; and the route the process measures is stable: two
 * fresh processes choose the same routes and train the same MLP bit for bit.
 *
 *   test_blas                the cmocka suite
 *   test_blas --train-child  (internal) train a small MLP, print the chosen
 *                            routes and the parameters' hash, for the
 *                            stability test */
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#include "blas.h"

static const char *self_path;

/* The routes the library can choose (and the bare cblas call): OWN runs the
 * own kernel only where the CPU has AVX2 + FMA (else it is plain); -1 in the
 * loops below is wmi_gemm, the process's chosen route. */
static const int ROUTES[] = {0, WMI_ROUTE_ZERO, WMI_ROUTE_SPLIT | WMI_ROUTE_ZERO,
                             WMI_ROUTE_OWN | WMI_ROUTE_ZERO,
                             WMI_ROUTE_OWN | WMI_ROUTE_OWN_AVX2 | WMI_ROUTE_SPLIT | WMI_ROUTE_ZERO};
enum { N_ROUTES = sizeof ROUTES / sizeof *ROUTES, PAD = 3 };

/* Check C (m x n, stride ldc) against alpha op(A) op(B) + beta C0 in double;
 * the error bound is float rounding of a k-term sum: (k + 2) eps times the
 * sum of the terms' magnitudes. Columns past n in each row must be as they
 * were (the sentinel). */
static void check_product(int route, int ta, int tb, int m, int n, int k, float alpha,
                          const float *A, int lda, const float *B, int ldb, float beta,
                          const float *C0, const float *C, int ldc)
{
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            double s = 0, mag = 0;
            for (int p = 0; p < k; p++) {
                double a = ta ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p];
                double b = tb ? B[(size_t)j * ldb + p] : B[(size_t)p * ldb + j];
                s += a * b;
                mag += fabs(a * b);
            }
            double want = alpha * s, got = C[(size_t)i * ldc + j];
            mag = fabs(alpha) * mag;
            if (beta != 0.0f) {
                want += beta * (double)C0[(size_t)i * ldc + j];
                mag += fabs(beta * (double)C0[(size_t)i * ldc + j]);
            }
            double tol = (k + 2) * 1.2e-7 * mag + 1e-30;
            if (!(fabs(got - want) <= tol))
                fail_msg("route %d trans %d%d %dx%dx%d beta %g: C[%d][%d] = %.9g, want %.9g (tol %.3g)",
                         route, ta, tb, m, n, k, beta, i, j, got, want, tol);
        }
        for (int j = n; j < ldc; j++)
            if (memcmp(&C[(size_t)i * ldc + j], &C0[(size_t)i * ldc + j], sizeof(float)))
                fail_msg("route %d trans %d%d %dx%dx%d: C[%d][%d] past the row was written",
                         route, ta, tb, m, n, k, i, j);
    }
}

/* Routes below 0 other than -1: the own kernels called directly with the
 * instruction set -2 - route (OWN_ISA(WMI_ISA_AVX2), OWN_ISA(WMI_ISA_AVX512)). */
#define OWN_ISA(isa) (-2 - (isa))

/* One product through `route` (-1: wmi_gemm, the process's chosen route;
 * OWN_ISA(isa): wmi_small_gemm_isa), with A's and B's strides PAD longer
 * than their rows and C's either as long (cpad 0: C contiguous) or longer,
 * C starting `coff` floats past a 64-byte boundary, beta = 0 over NaN and
 * beta = 0.5 over finite values. */
static void one_product_at(int route, int ta, int tb, int m, int n, int k, int cpad, int coff,
                           uint64_t *st)
{
    int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    int lda = ac + PAD, ldb = bc + PAD, ldc = n + cpad;
    size_t nc = (size_t)m * ldc + (size_t)coff;
    float *A = malloc(sizeof(float) * (size_t)ar * lda), *B = malloc(sizeof(float) * (size_t)br * ldb);
    float *C0m = aligned_alloc(64, sizeof(float) * ((nc + 15) / 16 * 16));
    float *Cm = aligned_alloc(64, sizeof(float) * ((nc + 15) / 16 * 16));
    assert_non_null(A), assert_non_null(B), assert_non_null(C0m), assert_non_null(Cm);
    float *C0 = C0m + coff, *C = Cm + coff;
    tu_fill(A, (size_t)ar * lda, -1, 1, st);
    tu_fill(B, (size_t)br * ldb, -1, 1, st);
    for (int pass = 0; pass < 2; pass++) {
        float beta = pass ? 0.5f : 0.0f;
        if (pass)
            tu_fill(C0, (size_t)m * ldc, -1, 1, st);
        else
            for (size_t i = 0; i < (size_t)m * ldc; i++)
                C0[i] = NAN;
        memcpy(C, C0, sizeof(float) * (size_t)m * ldc);
        if (route == -1)
            wmi_gemm(ta, tb, m, n, k, 0.75f, A, lda, B, ldb, beta, C, ldc);
        else if (route < -1)
            assert_int_equal(wmi_small_gemm_isa(-2 - route, ta, tb, m, n, k, 0.75f, A, lda, B, ldb,
                                                beta, C, ldc), 1);
        else
            wmi_gemm_via(route, ta, tb, m, n, k, 0.75f, A, lda, B, ldb, beta, C, ldc);
        check_product(route, ta, tb, m, n, k, 0.75f, A, lda, B, ldb, beta, C0, C, ldc);
    }
    free(A), free(B), free(C0m), free(Cm);
}

static void one_product(int route, int ta, int tb, int m, int n, int k, int cpad, uint64_t *st)
{
    one_product_at(route, ta, tb, m, n, k, cpad, 0, st);
}

/* C contiguous for every other shape, with a longer stride for the rest. */
static void one_shape(int route, int ta, int tb, int m, int n, int k, uint64_t *st)
{
    one_product(route, ta, tb, m, n, k, (m + n + k) % 2 ? 0 : PAD, st);
}

/* Every route, every transpose pair, m, n, k in {1, 15, 16, 17, 64, 65}:
 * around the own kernel's 4 x 16 blocks and 8-float vectors, the split's
 * 16s and the SKINNY bound. */
static void test_routes_match_reference_at_edge_sizes(void **state)
{
    (void)state;
    static const int sizes[] = {1, 15, 16, 17, 64, 65};
    uint64_t st = 11;
    for (int r = -1; r < N_ROUTES; r++)
        for (int t = 0; t < 4; t++)
            for (int a = 0; a < 6; a++)
                for (int b = 0; b < 6; b++)
                    for (int c = 0; c < 6; c++)
                        one_shape(r < 0 ? -1 : ROUTES[r], t >> 1, t & 1, sizes[a], sizes[b], sizes[c], &st);
}

/* The MLP's own shapes (784-256-256-10, 3 basis points, batch 2 and 16):
 * large enough that the split blocks them and the own kernel takes them
 * (a dimension <= 4), plus the thin dimensions 2-4 of every form. */
static void test_routes_match_reference_at_mlp_shapes(void **state)
{
    (void)state;
    static const int shapes[][5] = {
        {0, 1, 768, 16, 784}, {0, 1, 768, 2, 784}, {0, 1, 30, 2, 256},  {0, 0, 16, 256, 768},
        {0, 0, 2, 256, 768},  {1, 0, 20, 784, 16}, {1, 0, 64, 256, 2},  {1, 0, 3, 256, 16},
        {0, 0, 3, 33, 4},     {1, 1, 2, 70, 300},  {0, 1, 130, 4, 100}, {1, 0, 4, 4, 4},
        /* the wide forms' shapes at batch 16 and 64, and just past their bounds */
        {1, 0, 10, 256, 16},  {1, 0, 30, 256, 64}, {0, 0, 16, 256, 30}, {0, 1, 10, 16, 256},
        {0, 1, 30, 64, 256},  {0, 1, 64, 20, 256}, {1, 0, 33, 256, 16}, {0, 1, 33, 33, 256},
        {0, 1, 20, 65, 256},  {0, 0, 64, 256, 10}, {0, 0, 64, 256, 30}, {1, 0, 65, 256, 16}};
    uint64_t st = 12;
    for (int r = -1; r < N_ROUTES; r++)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            one_shape(r < 0 ? -1 : ROUTES[r], shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3],
                      shapes[s][4], &st);
}

/* The own kernels, each instruction set the CPU has, called directly: every
 * form (rank k <= 4, rows m <= 4, dot with a thin side, and the general
 * shapes they also accept), every transpose pair they take, m, n, k around
 * their blocks (4 rows, 12 accumulators, 8- and 16-float vectors, masked
 * tails), strides longer than the rows, C starting 0, 1 or 5 floats past a
 * 64-byte boundary (the rank form's aligned stores), beta = 0 over NaN. */
static void test_own_kernels_match_reference(void **state)
{
    (void)state;
    static const int sizes[] = {1, 2, 3, 4, 5, 7, 12, 13, 17, 33};
    static const int isas[] = {WMI_ISA_AVX2, WMI_ISA_AVX512};
    static const int big[][5] = {{1, 0, 20, 784, 2}, {1, 0, 64, 256, 2}, {0, 0, 3, 256, 16},
                                 {0, 0, 2, 256, 768}, {0, 1, 768, 2, 784}, {0, 1, 10, 2, 256},
                                 {0, 1, 2, 70, 300}, {1, 0, 4, 97, 4}, {0, 1, 3, 3, 1},
                                 /* the dot form's 12-row chunks of the wide side, whole and
                                  * cut, against every thin block size */
                                 {0, 1, 768, 16, 784}, {0, 1, 25, 31, 40}, {0, 1, 30, 13, 9},
                                 {0, 1, 37, 26, 17}};
    uint64_t st = 14;
    int ran = 0;
    for (size_t i = 0; i < sizeof isas / sizeof *isas; i++) {
        float one = 1, out = 0;
        if (!wmi_small_gemm_isa(isas[i], 0, 0, 1, 1, 1, 1.0f, &one, 1, &one, 1, 0.0f, &out, 1)) {
            print_message("own kernels: instruction set %d not on this CPU, skipped\n", isas[i]);
            continue;
        }
        assert_true(out == 1.0f);
        ran++;
        for (int t = 0; t < 3; t++)
            for (int a = 0; a < 10; a++)
                for (int b = 0; b < 10; b++)
                    for (int c = 0; c < 10; c++)
                        one_product_at(OWN_ISA(isas[i]), t >> 1, t & 1, sizes[a], sizes[b], sizes[c],
                                       (a + b + c) % 2 ? 0 : PAD, (a + 2 * b + c) % 3 == 0 ? 0 : (a + c) % 2 ? 1 : 5,
                                       &st);
        for (size_t s = 0; s < sizeof big / sizeof *big; s++)
            for (int coff = 0; coff <= 5; coff += 5)
                one_product_at(OWN_ISA(isas[i]), big[s][0], big[s][1], big[s][2], big[s][3], big[s][4],
                               coff ? PAD : 0, coff, &st);
    }
    if (wmi_small_gemm_available())
        assert_true(ran > 0);
}

/* The rank and rows forms sum each output in the same order with 8- and
 * 16-float vectors: AVX2 and AVX-512 give the same bits (where both run). */
static void test_own_rank_and_rows_forms_agree_across_isas(void **state)
{
    (void)state;
    float one = 1, out = 0;
    if (!wmi_small_gemm_isa(WMI_ISA_AVX512, 0, 0, 1, 1, 1, 1.0f, &one, 1, &one, 1, 0.0f, &out, 1)) {
        print_message("no AVX-512 on this CPU: skipped\n");
        return;
    }
    static const int shapes[][5] = {{1, 0, 20, 784, 2}, {0, 0, 7, 33, 3}, {1, 0, 5, 17, 4},
                                    {0, 0, 2, 256, 768}, {1, 0, 3, 45, 16}, {0, 0, 1, 7, 9}};
    uint64_t st = 15;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int ta = shapes[s][0], m = shapes[s][2], n = shapes[s][3], k = shapes[s][4];
        int lda = (ta ? m : k) + 1, ldb = n + 2;
        float *A = malloc(sizeof(float) * (size_t)(ta ? k : m) * lda), *B = malloc(sizeof(float) * (size_t)k * ldb);
        float *C1 = malloc(sizeof(float) * (size_t)m * n), *C2 = malloc(sizeof(float) * (size_t)m * n);
        assert_non_null(A), assert_non_null(B), assert_non_null(C1), assert_non_null(C2);
        tu_fill(A, (size_t)(ta ? k : m) * lda, -1, 1, &st);
        tu_fill(B, (size_t)k * ldb, -1, 1, &st);
        tu_fill(C1, (size_t)m * n, -1, 1, &st);
        memcpy(C2, C1, sizeof(float) * (size_t)m * n);
        assert_int_equal(wmi_small_gemm_isa(WMI_ISA_AVX2, ta, 0, m, n, k, 0.75f, A, lda, B, ldb, 0.5f, C1, n), 1);
        assert_int_equal(wmi_small_gemm_isa(WMI_ISA_AVX512, ta, 0, m, n, k, 0.75f, A, lda, B, ldb, 0.5f, C2, n), 1);
        if (memcmp(C1, C2, sizeof(float) * (size_t)m * n))
            fail_msg("trans %d0 %dx%dx%d: AVX2 and AVX-512 differ", ta, m, n, k);
        free(A), free(B), free(C1), free(C2);
    }
}

/* The form rule: which own form a shape takes (the route table times and
 * switches each form on its own). */
static void test_own_form_rule(void **state)
{
    (void)state;
    assert_int_equal(wmi_small_gemm_form(1, 0, 20, 784, 2), WMI_ROUTE_OWN_RANK);
    assert_int_equal(wmi_small_gemm_form(0, 0, 3, 10, 4), WMI_ROUTE_OWN_RANK);
    assert_int_equal(wmi_small_gemm_form(0, 0, 2, 256, 768), WMI_ROUTE_OWN_ROWS);
    assert_int_equal(wmi_small_gemm_form(1, 0, 4, 256, 16), WMI_ROUTE_OWN_ROWS);
    assert_int_equal(wmi_small_gemm_form(0, 1, 768, 2, 784), WMI_ROUTE_OWN_DOT);
    assert_int_equal(wmi_small_gemm_form(0, 1, 2, 256, 784), WMI_ROUTE_OWN_DOT);
    /* the wide forms: a side of 5-32 (the rows form's B at most 2^18
     * floats; 33-64 rows with B at most 2^15), the dot form's thin operand
     * at most 2^16 */
    assert_int_equal(wmi_small_gemm_form(1, 0, 16, 256, 16), WMI_ROUTE_OWN_ROWS_WIDE);
    assert_int_equal(wmi_small_gemm_form(1, 0, 5, 256, 16), WMI_ROUTE_OWN_ROWS_WIDE);
    assert_int_equal(wmi_small_gemm_form(0, 0, 32, 784, 256), WMI_ROUTE_OWN_ROWS_WIDE);
    assert_int_equal(wmi_small_gemm_form(0, 0, 32, 1024, 256), WMI_ROUTE_OWN_ROWS_WIDE);
    assert_int_equal(wmi_small_gemm_form(0, 0, 32, 1024, 257), 0);
    assert_int_equal(wmi_small_gemm_form(1, 0, 33, 256, 16), WMI_ROUTE_OWN_ROWS_WIDE);
    assert_int_equal(wmi_small_gemm_form(0, 0, 64, 256, 10), WMI_ROUTE_OWN_ROWS_WIDE);
    assert_int_equal(wmi_small_gemm_form(0, 0, 64, 256, 128), WMI_ROUTE_OWN_ROWS_WIDE);
    assert_int_equal(wmi_small_gemm_form(0, 0, 64, 256, 129), 0);
    assert_int_equal(wmi_small_gemm_form(0, 0, 33, 784, 256), 0);
    assert_int_equal(wmi_small_gemm_form(1, 0, 65, 256, 16), 0);
    assert_int_equal(wmi_small_gemm_form(0, 1, 16, 16, 3), WMI_ROUTE_OWN_DOT_WIDE);
    assert_int_equal(wmi_small_gemm_form(0, 1, 10, 64, 256), WMI_ROUTE_OWN_DOT_WIDE);
    assert_int_equal(wmi_small_gemm_form(0, 1, 768, 16, 784), WMI_ROUTE_OWN_DOT_WIDE);
    assert_int_equal(wmi_small_gemm_form(0, 1, 32, 4096, 2048), WMI_ROUTE_OWN_DOT_WIDE);
    assert_int_equal(wmi_small_gemm_form(0, 1, 32, 4096, 2049), 0);
    assert_int_equal(wmi_small_gemm_form(0, 1, 33, 4096, 256), 0);
    assert_int_equal(wmi_small_gemm_form(0, 1, 33, 33, 256), 0);
    assert_int_equal(wmi_small_gemm_form(0, 1, 39, 256, 784), 0);
    assert_int_equal(wmi_small_gemm_form(0, 1, 16, 16, 0), 0);
    assert_int_equal(wmi_small_gemm_form(1, 1, 2, 2, 2), 0);
    assert_int_equal(wmi_small_gemm_form(0, 0, 16, 256, 0), 0);
}

/* The OWN_AVX2 bit runs the own kernels with AVX2 where the CPU has more:
 * bit for bit what wmi_small_gemm_isa(AVX2) gives, in every form (the dot
 * form sums in another order with 16-float vectors, so on an AVX-512 CPU
 * this fails if the bit is ignored). */
static void test_own_avx2_bit_runs_avx2(void **state)
{
    (void)state;
    if (!wmi_small_gemm_available()) {
        print_message("no AVX2 + FMA on this CPU: skipped\n");
        return;
    }
    static const int shapes[][5] = {{0, 1, 30, 16, 256}, {0, 1, 256, 2, 784}, {1, 0, 10, 256, 16},
                                    {1, 0, 20, 784, 2}, {0, 0, 3, 256, 256}};
    uint64_t st = 16;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int ta = shapes[s][0], tb = shapes[s][1], m = shapes[s][2], n = shapes[s][3], k = shapes[s][4];
        int lda = ta ? m : k, ldb = tb ? k : n;
        size_t na = (size_t)m * k, nb = (size_t)k * n, nc = (size_t)m * n;
        float *A = malloc(sizeof(float) * na), *B = malloc(sizeof(float) * nb);
        float *C1 = malloc(sizeof(float) * nc), *C2 = malloc(sizeof(float) * nc);
        assert_non_null(A), assert_non_null(B), assert_non_null(C1), assert_non_null(C2);
        tu_fill(A, na, -1, 1, &st);
        tu_fill(B, nb, -1, 1, &st);
        assert_int_not_equal(wmi_small_gemm_form(ta, tb, m, n, k), 0);
        wmi_gemm_via(WMI_ROUTE_OWN | WMI_ROUTE_OWN_AVX2, ta, tb, m, n, k, 1.0f, A, lda, B, ldb, 0.0f, C1, n);
        assert_int_equal(wmi_small_gemm_isa(WMI_ISA_AVX2, ta, tb, m, n, k, 1.0f, A, lda, B, ldb, 0.0f, C2, n), 1);
        if (memcmp(C1, C2, sizeof(float) * nc))
            fail_msg("trans %d%d %dx%dx%d: the OWN_AVX2 route is not the AVX2 kernel", ta, tb, m, n, k);
        free(A), free(B), free(C1), free(C2);
    }
}

/* The process's route table is consistent: the wide rows form only after
 * the wide dot form (blas.c: its populations overlap, it follows dot-wide),
 * its ratio measured only then, and every taken form measured faster. */
static void test_route_table_is_consistent(void **state)
{
    (void)state;
    int g;
    double r[WMI_ROUTE_RATIOS];
    wmi_gemm_routes(&g, NULL, r);
    print_message("routes %d, ratios split %.2f rank %.2f rows %.2f dot %.2f rows-wide %.2f dot-wide %.2f\n",
                  g, r[0], r[1], r[2], r[3], r[4], r[5]);
    if (g & WMI_ROUTE_OWN_ROWS_WIDE)
        assert_true(g & WMI_ROUTE_OWN_DOT_WIDE);
    if (getenv("WM_GEMM_ROUTE"))
        return;                              /* pinned: nothing measured */
    if (!(g & WMI_ROUTE_OWN_DOT_WIDE))
        assert_true(r[4] == 0.0);
    static const int bits[] = {WMI_ROUTE_OWN_RANK, WMI_ROUTE_OWN_ROWS, WMI_ROUTE_OWN_DOT,
                               WMI_ROUTE_OWN_ROWS_WIDE, WMI_ROUTE_OWN_DOT_WIDE};
    for (int f = 0; f < 5; f++)
        if (g & bits[f])
            assert_true(r[1 + f] > 1.0);
}

/* The own kernel declines both operands transposed (and writes nothing). */
static void test_own_kernel_declines_both_transposed(void **state)
{
    (void)state;
    float A[4] = {1, 2, 3, 4}, B[4] = {1, 0, 0, 1}, C[4] = {9, 9, 9, 9};
    assert_int_equal(wmi_small_gemm(1, 1, 2, 2, 2, 1.0f, A, 2, B, 2, 0.0f, C, 2), 0);
    for (int i = 0; i < 4; i++)
        assert_true(C[i] == 9.0f);
    if (wmi_small_gemm_available())
        assert_int_equal(wmi_small_gemm(1, 0, 2, 2, 2, 1.0f, A, 2, B, 2, 0.0f, C, 2), 1);
}

/* y = alpha op(A) x + beta y through sgemv and through the one-row sgemm,
 * beta = 0 over NaN, a stride longer than the row. */
static void test_gemv_routes_match_reference(void **state)
{
    (void)state;
    static const int sizes[] = {1, 15, 16, 17, 64, 65, 256};
    uint64_t st = 13;
    for (int route = 0; route <= WMI_ROUTE_ONE_ROW; route += WMI_ROUTE_ONE_ROW)
        for (int ta = 0; ta < 2; ta++)
            for (int a = 0; a < 7; a++)
                for (int b = 0; b < 7; b++) {
                    int mr = sizes[a], nc = sizes[b], lda = nc + PAD, nx = ta ? mr : nc, ny = ta ? nc : mr;
                    float *A = malloc(sizeof(float) * (size_t)mr * lda), *x = malloc(sizeof(float) * nx);
                    float *y = malloc(sizeof(float) * ny);
                    assert_non_null(A), assert_non_null(x), assert_non_null(y);
                    tu_fill(A, (size_t)mr * lda, -1, 1, &st);
                    tu_fill(x, (size_t)nx, -1, 1, &st);
                    for (int i = 0; i < ny; i++)
                        y[i] = NAN;
                    wmi_gemv_via(route, ta, mr, nc, 0.75f, A, lda, x, 0.0f, y);
                    for (int i = 0; i < ny; i++) {
                        double s = 0, mag = 0;
                        for (int p = 0; p < nx; p++) {
                            double v = ta ? (double)A[(size_t)p * lda + i] * x[p] : (double)A[(size_t)i * lda + p] * x[p];
                            s += v, mag += fabs(v);
                        }
                        if (!(fabs(y[i] - 0.75 * s) <= (nx + 2) * 1.2e-7 * 0.75 * mag + 1e-30))
                            fail_msg("gemv route %d trans %d %dx%d: y[%d] = %.9g, want %.9g", route, ta,
                                     mr, nc, i, y[i], 0.75 * s);
                    }
                    free(A), free(x), free(y);
                }
}

/* ---- the route choice is stable ------------------------------------------------ */

/* Train a small circle MLP that issues the routed products (784-256-256-10
 * at batch 16 and 2), print the chosen routes and an FNV-1a hash of the
 * parameters' bits. Returns 0 on success. */
static int train_child(void)
{
    enum { IN = 784, STEPS = 3 };
    wm_manifold *m;
    wm_net *net;
    wm_optimizer *opt;
    if (wm_manifold_circle(&m) || wm_net_create(&net, m, IN, WM_COND_MANIFOLD))
        return 1;
    wm_manifold_free(m);
    if (wm_net_dense(net, 256, WM_ACT_RELU) || wm_net_dense(net, 256, WM_ACT_RELU) ||
        wm_net_dense(net, 10, WM_ACT_NONE) || wm_net_init(net, 5))
        return 1;
    wm_opt_config cfg = wm_opt_default(WM_OPT_MOMENTUM);
    if (wm_optimizer_create(&opt, net, &cfg))
        return 1;
    static float x[16 * IN], s[16];
    static int32_t y[16];
    uint64_t st = 3;
    for (int step = 0; step < 2 * STEPS; step++) {
        int n = step < STEPS ? 16 : 2;
        tu_fill(x, (size_t)n * IN, 0, 1, &st);
        tu_fill(s, (size_t)n, 0, 6.28, &st);
        for (int i = 0; i < n; i++)
            y[i] = (int32_t)(tu_uniform(&st) * 10) % 10;
        wm_batch b = {n, x, s, y, NULL};
        if (wm_step(opt, &b, NULL))
            return 1;
    }
    size_t len;
    const float *p = wm_net_params(net, &len);
    uint64_t h = 1469598103934665603ULL;
    const unsigned char *bytes = (const unsigned char *)p;
    for (size_t i = 0; i < len * sizeof(float); i++)
        h = (h ^ bytes[i]) * 1099511628211ULL;
    int gemm_route, gemv_route;
    wmi_gemm_routes(&gemm_route, &gemv_route, NULL);
    printf("routes %d %d hash %016llx\n", gemm_route, gemv_route, (unsigned long long)h);
    wm_optimizer_free(opt);
    wm_net_free(net);
    return 0;
}

/* Run this program with --train-child in a fresh process (env_route, env_isa:
 * values for WM_GEMM_ROUTE and WM_GEMM_ISA, or NULL to leave them unset);
 * its one output line. */
static void run_child_isa(const char *env_route, const char *env_isa, char *out, size_t len)
{
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]), close(fd[1]);
        if (env_route)
            setenv("WM_GEMM_ROUTE", env_route, 1);
        else
            unsetenv("WM_GEMM_ROUTE");
        if (env_isa)
            setenv("WM_GEMM_ISA", env_isa, 1);
        else
            unsetenv("WM_GEMM_ISA");
        execl(self_path, self_path, "--train-child", (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < len && (r = read(fd[0], out + got, len - 1 - got)) > 0)
        got += (size_t)r;
    out[got] = 0;
    close(fd[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("the training child failed (status %d): %s", status, out);
}

static void run_child(const char *env_route, char *out, size_t len)
{
    run_child_isa(env_route, NULL, out, len);
}

/* Two fresh processes measure the routes independently: the same choice,
 * and the same training run bit for bit. */
static void test_route_choice_is_stable_across_processes(void **state)
{
    (void)state;
    char a[128], b[128];
    run_child(NULL, a, sizeof a);
    run_child(NULL, b, sizeof b);
    print_message("first process:  %ssecond process: %s", a, b);
    assert_string_equal(a, b);
}

/* WM_GEMM_ROUTE pins the routes without measuring. */
static void test_route_env_pins_the_choice(void **state)
{
    (void)state;
    char out[128];
    int g, v;
    run_child("plain", out, sizeof out);
    assert_int_equal(sscanf(out, "routes %d %d", &g, &v), 2);
    assert_int_equal(g, WMI_ROUTE_ZERO);
    assert_int_equal(v, 0);
    run_child("split", out, sizeof out);
    assert_int_equal(sscanf(out, "routes %d %d", &g, &v), 2);
    assert_int_equal(g, WMI_ROUTE_ZERO | WMI_ROUTE_SPLIT);
    assert_int_equal(v, WMI_ROUTE_ONE_ROW);
    run_child("own", out, sizeof out);
    assert_int_equal(sscanf(out, "routes %d %d", &g, &v), 2);
    assert_int_equal(g, WMI_ROUTE_ZERO | (wmi_small_gemm_available() ? WMI_ROUTE_OWN : 0));
    /* WM_GEMM_ISA=avx2 keeps the own kernels to AVX2; other values are ignored */
    run_child_isa("own", "avx2", out, sizeof out);
    assert_int_equal(sscanf(out, "routes %d %d", &g, &v), 2);
    assert_int_equal(g, WMI_ROUTE_ZERO | (wmi_small_gemm_available() ? WMI_ROUTE_OWN | WMI_ROUTE_OWN_AVX2 : 0));
    run_child_isa("OWN", "AVX2", out, sizeof out);      /* case is ignored */
    assert_int_equal(sscanf(out, "routes %d %d", &g, &v), 2);
    assert_int_equal(g, WMI_ROUTE_ZERO | (wmi_small_gemm_available() ? WMI_ROUTE_OWN | WMI_ROUTE_OWN_AVX2 : 0));
    run_child_isa("own", "sse", out, sizeof out);
    assert_int_equal(sscanf(out, "routes %d %d", &g, &v), 2);
    assert_int_equal(g, WMI_ROUTE_ZERO | (wmi_small_gemm_available() ? WMI_ROUTE_OWN : 0));
    run_child_isa("plain", "avx2", out, sizeof out);
    assert_int_equal(sscanf(out, "routes %d %d", &g, &v), 2);
    assert_int_equal(g, WMI_ROUTE_ZERO);
}

int main(int argc, char **argv)
{
    self_path = argv[0];
    if (argc > 1 && !strcmp(argv[1], "--train-child"))
        return train_child();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes_match_reference_at_edge_sizes),
        cmocka_unit_test(test_routes_match_reference_at_mlp_shapes),
        cmocka_unit_test(test_own_kernel_declines_both_transposed),
        cmocka_unit_test(test_own_kernels_match_reference),
        cmocka_unit_test(test_own_rank_and_rows_forms_agree_across_isas),
        cmocka_unit_test(test_own_form_rule),
        cmocka_unit_test(test_own_avx2_bit_runs_avx2),
        cmocka_unit_test(test_route_table_is_consistent),
        cmocka_unit_test(test_gemv_routes_match_reference),
        cmocka_unit_test(test_route_choice_is_stable_across_processes),
        cmocka_unit_test(test_route_env_pins_the_choice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
