/* test_manifold.c -- bases and Gram matrices (src/manifold.c, src/bspline.c). */
#include <pthread.h>

#include "linalg.h"
#include "manifold.h"
#include "testutil.h"

static void gram_of(const wm_manifold *m, double *G)
{
    WM_OK_OR_FAIL(wm_manifold_gram(m, G));
}

static void assert_close(double got, double want, double tol, const char *what)
{
    if (!(fabs(got - want) <= tol))
        fail_msg("%s: got %.17g, want %.17g (tol %g)", what, got, want, tol);
}

static void test_line_gram_exact(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("line");
    double G[4];
    gram_of(m, G);
    assert_int_equal(wm_manifold_n_basis(m), 2);
    assert_int_equal(wm_manifold_dim(m), 1);
    assert_close(G[0], 1.0 / 3, 1e-12, "G00");
    assert_close(G[1], 1.0 / 6, 1e-12, "G01");
    assert_close(G[2], 1.0 / 6, 1e-12, "G10");
    assert_close(G[3], 1.0 / 3, 1e-12, "G11");
    float c[2], s = 0.25f;
    WM_OK_OR_FAIL(wm_manifold_basis(m, &s, c));
    assert_close(c[0], 0.75, 1e-7, "c0");
    assert_close(c[1], 0.25, 1e-7, "c1");
    wm_manifold_free(m);
}

static void test_fourier_gram_exact(void **state)
{
    (void)state;
    for (int H = 1; H <= 4; H++) {
        wm_manifold *m;
        WM_OK_OR_FAIL(wm_manifold_fourier(&m, H));
        int K = 2 * H + 1;
        assert_int_equal(wm_manifold_n_basis(m), K);
        assert_int_equal(wm_manifold_periodic(m, 0), 1);
        double G[81];
        gram_of(m, G);
        for (int i = 0; i < K; i++)
            for (int j = 0; j < K; j++)
                assert_close(G[i * K + j], i != j ? 0.0 : i == 0 ? 1.0 : 0.5, 1e-12, "fourier G");
        /* the basis order: (1, cos 2 pi s, sin 2 pi s, cos 4 pi s, ...) */
        float s = 0.1f, c[9];
        WM_OK_OR_FAIL(wm_manifold_basis(m, &s, c));
        for (int h = 1; h <= H; h++) {
            assert_close(c[2 * h - 1], cos(2 * TU_PI * h * 0.1), 1e-6, "cos");
            assert_close(c[2 * h], sin(2 * TU_PI * h * 0.1), 1e-6, "sin");
        }
        wm_manifold_free(m);
    }
    wm_manifold *circle = tu_manifold("circle");
    double G[9];
    gram_of(circle, G);
    assert_close(G[0], 1, 1e-12, "circle G00");
    assert_close(G[4], 0.5, 1e-12, "circle G11");
    assert_close(G[8], 0.5, 1e-12, "circle G22");
    wm_manifold_free(circle);
}

/* High-order quadrature of c c^T from the public float basis: 4000 midpoint
 * panels with 5-point Gauss-Legendre each, so the quadrature error is far
 * below the float rounding of c (~1e-7), which sets the tolerance. */
static void quadrature_gram(const wm_manifold *m, double *G)
{
    static const double gx[5] = {0.0469100770306680, 0.2307653449471585, 0.5,
                                 0.7692346550528415, 0.9530899229693320};
    static const double gw[5] = {0.1184634425280945, 0.2393143352496832, 0.2844444444444444,
                                 0.2393143352496832, 0.1184634425280945};
    int K = wm_manifold_n_basis(m), panels = 4000;
    float c[64];
    memset(G, 0, sizeof(double) * K * K);
    for (int p = 0; p < panels; p++)
        for (int q = 0; q < 5; q++) {
            float s = (float)((p + gx[q]) / panels);
            if (s >= 1.0f && wm_manifold_periodic(m, 0)) s = 0.0f;
            WM_OK_OR_FAIL(wm_manifold_basis(m, &s, c));
            for (int i = 0; i < K; i++)
                for (int j = 0; j < K; j++)
                    G[i * K + j] += gw[q] / panels * c[i] * c[j];
        }
}

static void test_bspline_gram_vs_quadrature(void **state)
{
    (void)state;
    int cases[][3] = {{2, 1, 0}, {4, 1, 0}, {5, 3, 0}, {8, 3, 0}, {6, 2, 0},
                      {3, 1, 1}, {5, 2, 1}, {7, 3, 1}, {4, 3, 1}};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        wm_manifold *m;
        WM_OK_OR_FAIL(wm_manifold_bspline(&m, cases[t][0], cases[t][1], cases[t][2]));
        int K = cases[t][0];
        double G[64], Q[64];
        gram_of(m, G);
        quadrature_gram(m, Q);
        for (int i = 0; i < K * K; i++)
            assert_close(G[i], Q[i], 2e-7, "bspline G vs quadrature");
        /* partition of unity, and a clamped curve starts at P_1 and ends at P_n */
        for (int k = 0; k <= 20; k++) {
            float s = k / 20.0f, c[8], sum = 0;
            WM_OK_OR_FAIL(wm_manifold_basis(m, &s, c));
            for (int i = 0; i < K; i++) {
                assert_true(c[i] >= -1e-7f);
                sum += c[i];
            }
            assert_close(sum, 1.0, 1e-6, "partition of unity");
            if (!cases[t][2] && (k == 0 || k == 20))
                assert_close(c[k == 0 ? 0 : K - 1], 1.0, 1e-6, "clamped end");
        }
        wm_manifold_free(m);
    }
    /* a degree-1 open spline with 2 points is the line */
    wm_manifold *b, *l = tu_manifold("line");
    WM_OK_OR_FAIL(wm_manifold_bspline(&b, 2, 1, 0));
    double Gb[4], Gl[4];
    gram_of(b, Gb);
    gram_of(l, Gl);
    for (int i = 0; i < 4; i++)
        assert_close(Gb[i], Gl[i], 1e-14, "linear spline = line");
    wm_manifold_free(b);
    wm_manifold_free(l);
}

static void test_closed_bspline_is_periodic_and_circulant(void **state)
{
    (void)state;
    wm_manifold *m;
    WM_OK_OR_FAIL(wm_manifold_bspline(&m, 6, 3, 1));
    double G[36];
    gram_of(m, G);
    for (int i = 0; i < 6; i++)            /* circulant: G[i][j] depends on j - i mod n */
        for (int j = 0; j < 6; j++)
            assert_close(G[i * 6 + j], G[((i + 1) % 6) * 6 + (j + 1) % 6], 1e-14, "circulant");
    float a = 0.3f, b = 1.3f, c = -0.7f, ca[6], cb[6], cc[6];
    WM_OK_OR_FAIL(wm_manifold_basis(m, &a, ca));
    WM_OK_OR_FAIL(wm_manifold_basis(m, &b, cb));
    WM_OK_OR_FAIL(wm_manifold_basis(m, &c, cc));
    for (int i = 0; i < 6; i++) {
        assert_close(ca[i], cb[i], 1e-6, "wrap +1");
        assert_close(ca[i], cc[i], 1e-6, "wrap -1");
    }
    wm_manifold_free(m);
}

static void test_product_is_kronecker(void **state)
{
    (void)state;
    const char *pairs[][2] = {{"circle", "circle"}, {"line", "circle"}, {"bspline", "line"}};
    for (int t = 0; t < 3; t++) {
        wm_manifold *a = tu_manifold(pairs[t][0]), *b = tu_manifold(pairs[t][1]), *m;
        WM_OK_OR_FAIL(wm_manifold_product(&m, a, b));
        int Ka = wm_manifold_n_basis(a), Kb = wm_manifold_n_basis(b), K = Ka * Kb;
        assert_int_equal(wm_manifold_n_basis(m), K);
        assert_int_equal(wm_manifold_dim(m), 2);
        double Ga[64], Gb[64], G[4096];
        gram_of(a, Ga);
        gram_of(b, Gb);
        gram_of(m, G);
        for (int i = 0; i < Ka; i++)
            for (int j = 0; j < Ka; j++)
                for (int p = 0; p < Kb; p++)
                    for (int q = 0; q < Kb; q++)
                        assert_close(G[(i * Kb + p) * K + j * Kb + q], Ga[i * Ka + j] * Gb[p * Kb + q],
                                     1e-15, "kron");
        float s[2] = {0.3f, 0.8f}, ca[8], cb[8], c[64];
        WM_OK_OR_FAIL(wm_manifold_basis(a, &s[0], ca));
        WM_OK_OR_FAIL(wm_manifold_basis(b, &s[1], cb));
        WM_OK_OR_FAIL(wm_manifold_basis(m, s, c));
        for (int i = 0; i < Ka; i++)
            for (int p = 0; p < Kb; p++)
                assert_close(c[i * Kb + p], (double)ca[i] * cb[p], 1e-6, "basis kron");
        /* products nest: (A x B) x A has dim 3 and Ka*Kb*Ka functions */
        wm_manifold *m3;
        WM_OK_OR_FAIL(wm_manifold_product(&m3, m, a));
        assert_int_equal(wm_manifold_dim(m3), 3);
        assert_int_equal(wm_manifold_n_basis(m3), K * Ka);
        wm_manifold_free(m3);
        wm_manifold_free(a), wm_manifold_free(b), wm_manifold_free(m);
    }
}

static void poly_basis(const float *s, float *c, void *user)
{
    int *K = user;
    double v = 1;
    for (int k = 0; k < *K; k++, v *= s[0])
        c[k] = (float)v;
}

static void trig2d_basis(const float *s, float *c, void *user)
{
    (void)user;
    c[0] = 1;
    c[1] = (float)cos(2 * TU_PI * s[0]);
    c[2] = (float)sin(2 * TU_PI * s[1]);
}

static void test_custom_gram_by_quadrature(void **state)
{
    (void)state;
    /* monomials 1, s, s^2, s^3: G is the Hilbert matrix 1/(i+j+1) */
    int K = 4;
    wm_manifold *m;
    WM_OK_OR_FAIL(wm_manifold_custom(&m, 1, K, NULL, poly_basis, &K));
    double G[16];
    gram_of(m, G);
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++)
            assert_close(G[i * K + j], 1.0 / (i + j + 1), 1e-6, "Hilbert");
    wm_manifold_free(m);
    /* a 2-D basis: G = diag(1, 1/2, 1/2) */
    int periodic[2] = {1, 1};
    WM_OK_OR_FAIL(wm_manifold_custom(&m, 2, 3, periodic, trig2d_basis, NULL));
    double G3[9];
    gram_of(m, G3);
    double want[9] = {1, 0, 0, 0, 0.5, 0, 0, 0, 0.5};
    for (int i = 0; i < 9; i++)
        assert_close(G3[i], want[i], 1e-6, "trig2d");
    wm_manifold_free(m);
}

static void dependent_basis(const float *s, float *c, void *user)
{
    (void)user;
    c[0] = s[0];
    c[1] = 2 * s[0];
}

static void nan_basis(const float *s, float *c, void *user)
{
    (void)user;
    c[0] = s[0] > 0.5f ? NAN : 1.0f;
}

static void test_bad_arguments(void **state)
{
    (void)state;
    wm_manifold *m = NULL;
    EXPECT_STATUS(WM_EINVAL, wm_manifold_line(NULL));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_fourier(&m, 0));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_fourier(&m, 1 << 30));   /* 2H+1 would overflow */
    EXPECT_STATUS(WM_EINVAL, wm_manifold_fourier(&m, 512));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_bspline(&m, 3, 3, 0));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_bspline(&m, 3, 0, 0));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_product(&m, NULL, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_custom(&m, 1, 2, NULL, NULL, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_custom(&m, 0, 2, NULL, poly_basis, NULL));
    EXPECT_STATUS(WM_ENUMERIC, wm_manifold_custom(&m, 1, 2, NULL, dependent_basis, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_custom(&m, 1, 1, NULL, nan_basis, NULL));
    assert_null(m);
    m = tu_manifold("line");
    float s = 1.5f, c[2];
    EXPECT_STATUS(WM_EINVAL, wm_manifold_basis(m, &s, c));
    assert_non_null(strstr(wm_last_error(), "outside [0,1]"));
    s = NAN;
    EXPECT_STATUS(WM_EINVAL, wm_manifold_basis(m, &s, c));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_gram(m, NULL));
    assert_int_equal(wm_manifold_dim(NULL), -1);
    assert_int_equal(wm_manifold_n_basis(NULL), -1);
    wm_manifold_free(m);
    wm_manifold_free(NULL);
    /* products nest, up to 16 factors in all: points would otherwise nest
     * without end, each product copying (so doubling) the tree */
    wm_manifold *pt = tu_manifold("point"), *prod = NULL, *next = NULL;
    WM_OK_OR_FAIL(wm_manifold_product(&prod, pt, pt));                 /* 2 factors */
    for (int f = 4; f <= 16; f *= 2) {
        WM_OK_OR_FAIL(wm_manifold_product(&next, prod, prod));         /* 4, 8, 16 */
        wm_manifold_free(prod);
        prod = next;
    }
    assert_int_equal(wm_manifold_n_basis(prod), 1);
    EXPECT_STATUS(WM_EINVAL, wm_manifold_product(&next, prod, pt));    /* 17 */
    assert_non_null(strstr(wm_last_error(), "17 factors"));
    wm_manifold_free(prod);
    wm_manifold_free(pt);
    /* a point has no context */
    m = tu_manifold("point");
    WM_OK_OR_FAIL(wm_manifold_basis(m, NULL, c));
    assert_true(c[0] == 1.0f);
    wm_manifold_free(m);
    assert_string_equal(wm_status_str(WM_EFORMAT), "not a valid model file");
    assert_string_equal(wm_status_str((wm_status)99), "unknown status");
    assert_non_null(wm_version());
}

/* ---- deep products on small thread stacks (musl's default is 128 KiB) ---- */

typedef struct {
    int depth;        /* lines in the product */
    int ok;
    char why[256];
} deep_job;

/* c(s) of a product of lines: prod_d (s_d if bit d of k is set, else 1 - s_d),
 * bit 0 being the last factor (the nested order: the first factor is major). */
static double lines_basis(const float *s, int depth, int k)
{
    double v = 1.0;
    for (int d = 0; d < depth; d++) {
        int bit = (k >> (depth - 1 - d)) & 1;
        v *= bit ? s[d] : 1.0 - s[d];
    }
    return v;
}

static void *deep_product_job(void *arg)
{
    deep_job *j = arg;
    wm_manifold *line = NULL, *m = NULL, *left = NULL;
    j->ok = 0;
    if (wm_manifold_line(&line) != WM_OK)
        return NULL;
    /* left-nested (((L x L) x L) ...) */
    wm_manifold_line(&left);
    for (int d = 1; d < j->depth; d++) {
        wm_manifold *next;
        if (wm_manifold_product(&next, left, line) != WM_OK) {
            snprintf(j->why, sizeof j->why, "product: %s", wm_last_error());
            return NULL;
        }
        wm_manifold_free(left);
        left = next;
    }
    m = left;
    int K = wm_manifold_n_basis(m);
    float s[16], *c = malloc(sizeof(float) * (size_t)K);
    for (int d = 0; d < j->depth; d++)
        s[d] = 0.05f + 0.09f * d;
    if (wm_manifold_basis(m, s, c) != WM_OK) {
        snprintf(j->why, sizeof j->why, "basis: %s", wm_last_error());
        goto out;
    }
    for (int k = 0; k < K; k++)
        if (fabs(c[k] - lines_basis(s, j->depth, k)) > 1e-6) {
            snprintf(j->why, sizeof j->why, "c[%d] = %g, want %g", k, c[k], lines_basis(s, j->depth, k));
            goto out;
        }
    /* a manifold net (c_hat) and a concat net (features) on the same stack:
     * W(s) = sum_k c_k(s) P_k, against the control points */
    for (int cond = 0; cond < 2; cond++) {
        wm_net *net = NULL;
        float w = 0, b = 0, y = 0, x = 1.0f;
        if (wm_net_create(&net, m, 1, (wm_conditioning)cond) != WM_OK || wm_net_dense(net, 1, WM_ACT_NONE) != WM_OK ||
            wm_net_set_loss(net, WM_LOSS_MSE) != WM_OK || wm_net_init(net, 7) != WM_OK) {
            snprintf(j->why, sizeof j->why, "net: %s", wm_last_error());
            wm_net_free(net);
            goto out;
        }
        if (cond == WM_COND_MANIFOLD) {
            double want = 0;
            for (int k = 0; k < K; k++) {
                float pw[1], pb[1];
                pw[0] = (float)(0.01 * (k % 7) - 0.02);
                pb[0] = 0;
                wm_net_set_control_point(net, 0, k, pw, pb);
                want += c[k] * pw[0];
            }
            wm_net_weights_at(net, 0, s, &w, &b);
            if (fabs(w - want) > 1e-4) {
                snprintf(j->why, sizeof j->why, "W(s) = %g, want %g", w, want);
                wm_net_free(net);
                goto out;
            }
        }
        if (wm_infer(net, &x, s, 1, &y) != WM_OK || !isfinite(y)) {
            snprintf(j->why, sizeof j->why, "infer (cond %d): %s", cond, wm_last_error());
            wm_net_free(net);
            goto out;
        }
        wm_net_free(net);
    }
    j->ok = 1;
out:
    free(c);
    wm_manifold_free(m);
    wm_manifold_free(line);
    return NULL;
}

static void test_deep_products_on_small_stacks(void **state)
{
    (void)state;
    for (int depth = 2; depth <= 10; depth += 4) {
        deep_job job = {depth, 0, ""};
        pthread_attr_t attr;
        pthread_t th;
        pthread_attr_init(&attr);
        assert_int_equal(pthread_attr_setstacksize(&attr, 128 * 1024), 0);
        assert_int_equal(pthread_create(&th, &attr, deep_product_job, &job), 0);
        pthread_join(th, NULL);
        pthread_attr_destroy(&attr);
        if (!job.ok)
            fail_msg("product of %d lines on a 128 KiB stack: %s", depth, job.why);
    }
}

/* (A x B) x C and A x (B x C) are the same basis in the same order. */
static void test_product_nesting_is_associative(void **state)
{
    (void)state;
    wm_manifold *a = tu_manifold("circle"), *b = tu_manifold("line"), *c = tu_manifold("bspline");
    wm_manifold *ab, *bc, *l, *r;
    WM_OK_OR_FAIL(wm_manifold_product(&ab, a, b));
    WM_OK_OR_FAIL(wm_manifold_product(&bc, b, c));
    WM_OK_OR_FAIL(wm_manifold_product(&l, ab, c));
    WM_OK_OR_FAIL(wm_manifold_product(&r, a, bc));
    int K = wm_manifold_n_basis(l);
    assert_int_equal(K, wm_manifold_n_basis(r));
    float s[3] = {0.7f, 0.25f, 0.6f}, cl[64], cr[64];
    WM_OK_OR_FAIL(wm_manifold_basis(l, s, cl));
    WM_OK_OR_FAIL(wm_manifold_basis(r, s, cr));
    assert_memory_equal(cl, cr, sizeof(float) * (size_t)K);
    wm_manifold *ms[] = {a, b, c, ab, bc, l, r};
    for (int i = 0; i < 7; i++)
        wm_manifold_free(ms[i]);
}

/* ---- a periodic custom basis sees s in [0,1), after rounding to float ---- */

typedef struct {
    float max_seen;
    int calls;
} seen;

static void recording_basis(const float *s, float *c, void *user)
{
    seen *r = user;
    r->calls++;
    if (s[0] > r->max_seen)
        r->max_seen = s[0];
    c[0] = 1.0f;
    c[1] = (float)cos(2 * TU_PI * s[0]);
}

static void test_periodic_custom_basis_never_sees_one(void **state)
{
    (void)state;
    seen rec = {-1.0f, 0};
    int periodic = 1;
    wm_manifold *m;
    WM_OK_OR_FAIL(wm_manifold_custom(&m, 1, 2, &periodic, recording_basis, &rec));
    /* each wraps in double to just below 1, which rounds to 1.0f */
    const float probes[] = {-1e-9f, -1e-12f, -3e-8f, 1.0f - 1e-9f, 2.0f - 1e-9f, -1e-30f, 1.0f, 0.0f};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        float c[2];
        rec.max_seen = -1.0f;
        WM_OK_OR_FAIL(wm_manifold_basis(m, &probes[i], c));
        if (!(rec.max_seen >= 0.0f && rec.max_seen < 1.0f))
            fail_msg("s = %.9g reached the callback as %.9g", probes[i], rec.max_seen);
        assert_float_equal(c[1], 1.0f, 1e-5f);     /* all these are s = 0 on the circle */
    }
    /* through a net too (the orthonormal basis c_hat) */
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 1, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(net, 2, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    float x[8] = {1, 1, 1, 1, 1, 1, 1, 1}, y[16];
    rec.max_seen = -1.0f;
    WM_OK_OR_FAIL(wm_infer(net, x, probes, 8, y));
    assert_true(rec.max_seen >= 0.0f && rec.max_seen < 1.0f);
    wm_net_free(net);
    wm_manifold_free(m);
}

/* ---- every allowed B-spline degree works, to float precision ---- */

static void test_bspline_every_allowed_degree(void **state)
{
    (void)state;
    double x[40], w[40];
    float chat[WM_MAX_BASIS];
    for (int p = 1; p <= 16; p++)
        for (int closed = 0; closed < 2; closed++)
            for (int n = p + 1; n <= p + 40; n++) {
                wm_manifold *m;
                wm_status st = wm_manifold_bspline(&m, n, p, closed);
                if (st != WM_OK)
                    fail_msg("degree %d, n %d, closed %d: %s", p, n, closed, wm_last_error());
                if (n % 5 == 0 || n == p + 1) {   /* orthonormality of the float c_hat */
                    int pieces = closed ? n : n - p, q = p + 1;
                    double *M = calloc((size_t)n * n, sizeof *M), worst = 0;
                    wmi_gauss_legendre(q, x, w);
                    for (int pc = 0; pc < pieces; pc++)
                        for (int j = 0; j < q; j++) {
                            double s = (pc + x[j]) / pieces;
                            wmi_basis_hat(m, &s, chat);
                            for (int a = 0; a < n; a++)
                                for (int b = 0; b <= a; b++)
                                    M[a * n + b] += w[j] / pieces * (double)chat[a] * chat[b];
                        }
                    for (int a = 0; a < n; a++)
                        for (int b = 0; b <= a; b++)
                            worst = fmax(worst, fabs(M[a * n + b] - (a == b)));
                    free(M);
                    if (worst > 1e-6)
                        fail_msg("degree %d, n %d, closed %d: |int c_hat c_hat^T - I| = %g", p, n, closed, worst);
                }
                wm_manifold_free(m);
            }
    for (int p = 17; p <= 40; p += 7) {
        wm_manifold *m = NULL;
        EXPECT_STATUS(WM_EINVAL, wm_manifold_bspline(&m, p + 5, p, 0));
        assert_non_null(strstr(wm_last_error(), "ill-conditioned"));
        assert_null(m);
    }
}

/* A callback that writes fewer than K values: refused, never read from
 * whatever the stack held (ASan/valgrind would flag an uninitialised read). */
static void short_basis(const float *s, float *c, void *user)
{
    (void)user;
    c[0] = 1.0f + 0.0f * s[0];          /* c[1] never written */
}

static void test_custom_basis_writing_too_few_values(void **state)
{
    (void)state;
    wm_manifold *m = NULL;
    EXPECT_STATUS(WM_EINVAL, wm_manifold_custom(&m, 1, 2, NULL, short_basis, NULL));
    assert_non_null(strstr(wm_last_error(), "non-finite"));
    assert_null(m);
}

/* A context just outside [0,1] is reported with the digits that show it. */
static void test_out_of_domain_message_shows_the_value(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("line");
    float s = 1.0000001f, c[2];
    EXPECT_STATUS(WM_EINVAL, wm_manifold_basis(m, &s, c));
    if (!strstr(wm_last_error(), "1.00000012"))
        fail_msg("message does not show the value: %s", wm_last_error());
    wm_manifold_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_gram_exact),
        cmocka_unit_test(test_fourier_gram_exact),
        cmocka_unit_test(test_bspline_gram_vs_quadrature),
        cmocka_unit_test(test_closed_bspline_is_periodic_and_circulant),
        cmocka_unit_test(test_product_is_kronecker),
        cmocka_unit_test(test_custom_gram_by_quadrature),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_deep_products_on_small_stacks),
        cmocka_unit_test(test_product_nesting_is_associative),
        cmocka_unit_test(test_periodic_custom_basis_never_sees_one),
        cmocka_unit_test(test_bspline_every_allowed_degree),
        cmocka_unit_test(test_out_of_domain_message_shows_the_value),
        cmocka_unit_test(test_custom_basis_writing_too_few_values),
    };
    return cmocka_run_group_tests_name("manifold", tests, NULL, NULL);
}
