/* test_context.c -- context inference (src/context.c, src/ctxsearch.c).
 *
 * Known contexts: a synthetic task whose input is the context's own basis
 * values, x = (c_1(s*_1), ..., c_F(s*_F)) concatenated over the manifold's
 * factors, and a two-layer net set by hand so that
 *     z_0(s) = beta (gamma - D(s; x)),  z_1 = 0,
 *     D(s; x) = sum_f || c_f(s_f) - x_f ||_1          (zero only at s = s*)
 * (layer 1: hidden units relu(c_fj(s_f) - x_fj) and relu(x_fj - c_fj(s_f)),
 * both linear in the product basis c(s); layer 2 constant in s). gamma bounds
 * D, so z_0 > 0 everywhere and every objective is least at s = s*: the
 * cross-entropy of label 0, the prediction entropy (which falls as z_0 grows)
 * and the MSE to the target (beta gamma, 0). The input depends on s, so the
 * entropy alone finds it.
 *
 * Error bounds (circular distance on periodic coordinates), every sample:
 *   per sample, exact inputs:                      |s - s*| <= 1e-3
 *   shared, inputs with noise U(-0.02, 0.02):      |s - s*| <= 0.01
 * on a line, a circle, a torus, an open and a closed B-spline, and products
 * of 3 to 8 factors (coordinates 7 and 8 included: issue 12, defect 9).
 *
 * The cost: a product of custom factors counts its basis calls; with one
 * sample each inference calls every factor once, so the count / dim is the
 * number of inferences, checked against the header's formula at dim 1..8. */
#include "testutil.h"

#define MAX_F 8
#define PER_SAMPLE_TOL 1e-3
#define SHARED_TOL 0.01
#define NOISE 0.02

typedef enum { F_LINE, F_CIRCLE, F_BSPLINE, F_CBSPLINE } factor_kind;

typedef struct {
    int n_f;                      /* factors (= dim: all are 1-D) */
    factor_kind kind[MAX_F];
    wm_manifold *f[MAX_F];
    int Kf[MAX_F], off[MAX_F];    /* basis size, offset of the factor's inputs */
    double a[MAX_F][16];          /* sum_j a_j c_fj(s) = 1 */
    int n_in, K;
    double gamma, beta;
    wm_manifold *m;
} task;

static void task_make(task *t, int n_f, const factor_kind *kinds)
{
    memset(t, 0, sizeof *t);
    t->n_f = n_f;
    t->K = 1;
    for (int f = 0; f < n_f; f++) {
        t->kind[f] = kinds[f];
        switch (kinds[f]) {
        case F_LINE: WM_OK_OR_FAIL(wm_manifold_line(&t->f[f])); break;
        case F_CIRCLE: WM_OK_OR_FAIL(wm_manifold_circle(&t->f[f])); break;
        case F_BSPLINE: WM_OK_OR_FAIL(wm_manifold_bspline(&t->f[f], 6, 3, 0)); break;
        case F_CBSPLINE: WM_OK_OR_FAIL(wm_manifold_bspline(&t->f[f], 6, 2, 1)); break;
        }
        int K = t->Kf[f] = wm_manifold_n_basis(t->f[f]);
        t->off[f] = t->n_in;
        t->n_in += K;
        t->K *= K;
        for (int j = 0; j < K; j++)     /* circle: the constant; the others sum to 1 */
            t->a[f][j] = kinds[f] == F_CIRCLE ? (j == 0) : 1.0;
        double most = 0;                 /* max ||c_f||_1 over a fine grid */
        for (int g = 0; g <= 1000; g++) {
            float s = g / 1000.0f, c[16];
            WM_OK_OR_FAIL(wm_manifold_basis(t->f[f], &s, c));
            double l1 = 0;
            for (int j = 0; j < K; j++)
                l1 += fabs(c[j]);
            most = l1 > most ? l1 : most;
        }
        t->gamma += 2 * most;
    }
    t->gamma += 0.5;
    t->beta = 6.0 / t->gamma;            /* z_0 in (0, 6]: no saturated softmax */
    t->m = t->f[0];
    WM_OK_OR_FAIL(wm_manifold_clone(&t->m, t->f[0]));
    for (int f = 1; f < n_f; f++) {
        wm_manifold *p;
        WM_OK_OR_FAIL(wm_manifold_product(&p, t->m, t->f[f]));
        wm_manifold_free(t->m);
        t->m = p;
    }
}

static void task_free(task *t)
{
    for (int f = 0; f < t->n_f; f++)
        wm_manifold_free(t->f[f]);
    wm_manifold_free(t->m);
}

/* Factor f's basis index of product index k (the first factor outermost). */
static int digit(const task *t, int k, int f)
{
    for (int g = t->n_f - 1; g > f; g--)
        k /= t->Kf[g];
    return k % t->Kf[f];
}

static wm_net *task_net(const task *t, wm_loss loss)
{
    wm_net *net;
    int H = 2 * t->n_in;
    WM_OK_OR_FAIL(wm_net_create(&net, t->m, t->n_in, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(net, H, WM_ACT_RELU));
    WM_OK_OR_FAIL(wm_net_dense(net, 2, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_set_loss(net, loss));
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    float *w1 = calloc((size_t)H * t->n_in, sizeof(float)), *b1 = calloc(H, sizeof(float));
    float *w2 = calloc((size_t)2 * H, sizeof(float)), b2[2] = {0, 0};
    assert_non_null(w1), assert_non_null(b1), assert_non_null(w2);
    for (int k = 0; k < t->K; k++) {
        double all = 1;                  /* prod_f a_f: the constant's coefficient */
        for (int f = 0; f < t->n_f; f++)
            all *= t->a[f][digit(t, k, f)];
        for (int f = 0; f < t->n_f; f++) {
            double others = 1;           /* c_fj(s_f) = sum_k c_k(s) [digit_f(k) = j] prod_{g != f} a_g */
            for (int g = 0; g < t->n_f; g++)
                if (g != f)
                    others *= t->a[g][digit(t, k, g)];
            for (int j = 0; j < t->Kf[f]; j++) {
                int q = t->off[f] + j;
                double cj = digit(t, k, f) == j ? others : 0.0;
                b1[2 * q] = (float)cj;                   /* relu(c_fj(s) - x_q) */
                b1[2 * q + 1] = (float)-cj;              /* relu(x_q - c_fj(s)) */
                w1[(size_t)(2 * q) * t->n_in + q] = (float)-all;
                w1[(size_t)(2 * q + 1) * t->n_in + q] = (float)all;
            }
        }
        for (int u = 0; u < H; u++)
            w2[u] = (float)(-t->beta * all);
        b2[0] = (float)(t->beta * t->gamma * all);
        WM_OK_OR_FAIL(wm_net_set_control_point(net, 0, k, w1, b1));
        WM_OK_OR_FAIL(wm_net_set_control_point(net, 1, k, w2, b2));
    }
    free(w1), free(b1), free(w2);
    return net;
}

/* x = the factors' basis values at s (plus noise in [-noise, noise]). */
static void task_input(const task *t, const float *s, float *x, double noise, uint64_t *st)
{
    for (int f = 0; f < t->n_f; f++) {
        WM_OK_OR_FAIL(wm_manifold_basis(t->f[f], s + f, x + t->off[f]));
        for (int j = 0; j < t->Kf[f]; j++)
            x[t->off[f] + j] += (float)(noise * (2 * tu_uniform(st) - 1));
    }
}

static double coord_err(const task *t, int d, double got, double want)
{
    double e = fabs(got - want);
    return wm_manifold_periodic(t->m, d) ? fmin(e, 1 - e) : e;
}

typedef enum { OBJ_LABELS, OBJ_TARGETS, OBJ_NEITHER } obj;
static const char *const obj_name[] = {"labels", "targets", "neither"};

/* Per sample: N samples, each with its own s*; every coordinate within
 * PER_SAMPLE_TOL. Returns the worst error. */
static double check_per_sample(const task *t, obj o)
{
    enum { N = 12 };
    int dim = t->n_f;
    wm_net *net = task_net(t, o == OBJ_TARGETS ? WM_LOSS_MSE : WM_LOSS_SOFTMAX_CE);
    float *x = calloc((size_t)N * t->n_in, sizeof(float)), s[N * MAX_F], got[N * MAX_F], loss[N];
    float tg[2 * N];
    int32_t lab[N];
    assert_non_null(x);
    uint64_t st = 5 + (uint64_t)dim;
    for (int i = 0; i < N; i++) {
        for (int d = 0; d < dim; d++)
            s[i * dim + d] = (float)tu_uniform(&st);
        task_input(t, s + i * dim, x + (size_t)i * t->n_in, 0.0, &st);
        lab[i] = 0;
        tg[2 * i] = (float)(t->beta * t->gamma), tg[2 * i + 1] = 0;
    }
    wm_batch b = {N, x, NULL, o == OBJ_LABELS ? lab : NULL, o == OBJ_TARGETS ? tg : NULL};
    WM_OK_OR_FAIL(wm_infer_context_batch(net, &b, 0, got, loss));
    double worst = 0;
    for (int i = 0; i < N; i++) {
        for (int d = 0; d < dim; d++) {
            double e = coord_err(t, d, got[i * dim + d], s[i * dim + d]);
            worst = e > worst ? e : worst;
            if (e > PER_SAMPLE_TOL)
                fail_msg("dim %d, %s, sample %d coordinate %d: s* = %.6f, found %.6f", dim,
                         obj_name[o], i, d, s[i * dim + d], got[i * dim + d]);
        }
        /* loss_out is the sample's own objective at the answer */
        float out[2];
        WM_OK_OR_FAIL(wm_infer(net, x + (size_t)i * t->n_in, got + i * dim, 1, out));
        double z = out[0], want = o == OBJ_LABELS ? log1p(exp(-z))
                                : o == OBJ_TARGETS ? ((z - tg[0]) * (z - tg[0]) + out[1] * out[1]) / 2
                                                   : 0;
        if (o == OBJ_NEITHER) {
            double p = 1 / (1 + exp(-z));
            want = -(p * log(p) + (1 - p) * log1p(-p));
        }
        assert_true(fabs(loss[i] - want) <= 1e-5 + 1e-4 * fabs(want));
    }
    free(x);
    wm_net_free(net);
    return worst;
}

/* Shared: N noisy samples of one s*; within SHARED_TOL. */
static double check_shared(const task *t, obj o, float *s_true)
{
    enum { N = 64 };
    int dim = t->n_f;
    wm_net *net = task_net(t, o == OBJ_TARGETS ? WM_LOSS_MSE : WM_LOSS_SOFTMAX_CE);
    float *x = calloc((size_t)N * t->n_in, sizeof(float)), got[MAX_F], loss;
    float tg[2 * N];
    int32_t lab[N];
    assert_non_null(x);
    uint64_t st = 11 + (uint64_t)dim;
    for (int i = 0; i < N; i++) {
        task_input(t, s_true, x + (size_t)i * t->n_in, NOISE, &st);
        lab[i] = 0;
        tg[2 * i] = (float)(t->beta * t->gamma), tg[2 * i + 1] = 0;
    }
    wm_batch b = {N, x, NULL, o == OBJ_LABELS ? lab : NULL, o == OBJ_TARGETS ? tg : NULL};
    WM_OK_OR_FAIL(wm_infer_context_batch(net, &b, 1, got, &loss));
    double worst = 0;
    for (int d = 0; d < dim; d++) {
        double e = coord_err(t, d, got[d], s_true[d]);
        worst = e > worst ? e : worst;
        if (e > SHARED_TOL)
            fail_msg("dim %d, %s, shared: coordinate %d: s* = %.6f, found %.6f", dim, obj_name[o], d,
                     s_true[d], got[d]);
    }
    /* loss_out is the batch-mean objective at the answer */
    float one;
    wm_batch at = b;
    float *srep = malloc(sizeof(float) * N * dim);
    assert_non_null(srep);
    for (int i = 0; i < N; i++)
        memcpy(srep + i * dim, got, sizeof(float) * dim);
    at.s = srep;
    if (o != OBJ_NEITHER) {
        WM_OK_OR_FAIL(wm_evaluate(net, &at, &one, NULL));
        assert_true(fabs(loss - one) <= 1e-5 + 1e-4 * fabs(one));
    }
    free(srep);
    free(x);
    wm_net_free(net);
    return worst;
}

static void run_task(int n_f, const factor_kind *kinds, const char *name)
{
    task t;
    task_make(&t, n_f, kinds);
    float s_true[MAX_F];
    uint64_t st = 77;
    for (int d = 0; d < n_f; d++)        /* away from 0 so a search stuck at 0 fails */
        s_true[d] = (float)(0.3 + 0.6 * tu_uniform(&st));
    for (int o = 0; o < 3; o++) {
        double e1 = check_per_sample(&t, (obj)o), e2 = check_shared(&t, (obj)o, s_true);
        print_message("%-10s %-8s worst error: per sample %.2e (bound %.0e), shared %.2e (bound %.0e)\n",
                      name, obj_name[o], e1, PER_SAMPLE_TOL, e2, SHARED_TOL);
    }
    task_free(&t);
}

static void test_line(void **state)
{
    (void)state;
    run_task(1, (factor_kind[]){F_LINE}, "line");
}

static void test_circle(void **state)
{
    (void)state;
    run_task(1, (factor_kind[]){F_CIRCLE}, "circle");
}

static void test_torus(void **state)
{
    (void)state;
    run_task(2, (factor_kind[]){F_CIRCLE, F_CIRCLE}, "torus");
}

static void test_bspline(void **state)
{
    (void)state;
    run_task(1, (factor_kind[]){F_BSPLINE}, "bspline");
    run_task(1, (factor_kind[]){F_CBSPLINE}, "cbspline");
    run_task(2, (factor_kind[]){F_BSPLINE, F_CIRCLE}, "bspl x S1");
}

/* Coordinate-wise search (dim > 2): every coordinate found, the 7th and 8th
 * too (issue 12, defect 9: they stayed near 0). */
static void test_products_dim_3_to_8(void **state)
{
    (void)state;
    /* one circle among lines from dim 6 on: K stays <= 384, the test quick */
    const factor_kind mix[MAX_F] = {F_LINE, F_CIRCLE, F_LINE, F_LINE, F_CIRCLE, F_LINE, F_LINE, F_LINE};
    const factor_kind lines[MAX_F] = {F_LINE, F_CIRCLE, F_LINE, F_LINE, F_LINE, F_LINE, F_LINE, F_LINE};
    for (int n_f = 3; n_f <= MAX_F; n_f++) {
        char name[16];
        snprintf(name, sizeof name, "product%d", n_f);
        run_task(n_f, n_f < 6 ? mix : lines, name);
    }
}

/* The old entry point on dim 8: the batch's shared context, every coordinate. */
static void test_infer_context_finds_every_coordinate(void **state)
{
    (void)state;
    enum { N = 4 };
    const factor_kind lines[MAX_F] = {F_LINE, F_LINE, F_LINE, F_LINE, F_LINE, F_LINE, F_LINE, F_LINE};
    task t;
    task_make(&t, MAX_F, lines);
    wm_net *net = task_net(&t, WM_LOSS_SOFTMAX_CE);
    float s_true[MAX_F] = {0.9f, 0.2f, 0.7f, 0.4f, 0.8f, 0.6f, 0.85f, 0.75f}, got[MAX_F], x[N * 16];
    int32_t lab[N] = {0, 0, 0, 0};
    uint64_t st = 3;
    for (int i = 0; i < N; i++)
        task_input(&t, s_true, x + i * t.n_in, 0.0, &st);
    WM_OK_OR_FAIL(wm_infer_context(net, x, lab, N, got));
    for (int d = 0; d < MAX_F; d++) {
        print_message("coordinate %d: s* = %.3f, found %.6f\n", d, s_true[d], got[d]);
        assert_true(fabs(got[d] - s_true[d]) <= PER_SAMPLE_TOL);
    }
    wm_net_free(net);
    task_free(&t);
}

/* ---- cost: count the inferences ------------------------------------------- */

typedef struct {
    long calls;
    int periodic;
} counter;

static void count_basis(const float *s, float *c, void *user)
{
    counter *k = user;
    k->calls++;
    if (k->periodic)
        c[0] = (float)cos(2 * TU_PI * s[0]), c[1] = (float)sin(2 * TU_PI * s[0]);
    else
        c[0] = 1 - s[0], c[1] = s[0];
}

/* The header's formula: G_d = 16 (custom: u = 2) + 1 on non-periodic
 * coordinates; full grid at dim 1, or dim 2 with G_0 G_1 <= 1024. */
static long header_cost(int dim, const int *periodic)
{
    long G[MAX_F], prod = 1, sum = 0;
    for (int d = 0; d < dim; d++)
        G[d] = 16 + !periodic[d], prod *= G[d], sum += G[d] + 22;
    if (dim == 1 || (dim == 2 && prod <= 1024))
        return prod + 22L * dim * dim;
    return 1 + 2 * sum;
}

static void test_cost_counted_dim_1_to_8(void **state)
{
    (void)state;
    for (int dim = 1; dim <= MAX_F; dim++) {
        counter k[MAX_F];
        wm_manifold *m = NULL;
        int periodic[MAX_F];
        for (int d = 0; d < dim; d++) {
            wm_manifold *f, *p;
            k[d].calls = 0, k[d].periodic = periodic[d] = d % 2;
            WM_OK_OR_FAIL(wm_manifold_custom(&f, 1, 2, &periodic[d], count_basis, &k[d]));
            if (!m) {
                m = f;
                continue;
            }
            WM_OK_OR_FAIL(wm_manifold_product(&p, m, f));
            wm_manifold_free(m), wm_manifold_free(f);
            m = p;
        }
        wm_net *net;
        WM_OK_OR_FAIL(wm_net_create(&net, m, 3, WM_COND_MANIFOLD));
        WM_OK_OR_FAIL(wm_net_dense(net, 4, WM_ACT_RELU));
        WM_OK_OR_FAIL(wm_net_dense(net, 3, WM_ACT_NONE));
        WM_OK_OR_FAIL(wm_net_init(net, 7));
        float x[3] = {0.5f, -1.0f, 2.0f}, s_out[MAX_F], loss;
        int32_t lab = 1;
        long want = header_cost(dim, periodic);
        for (int mode = 0; mode < 4; mode++) {      /* shared/per sample x labels/entropy */
            for (int d = 0; d < dim; d++)
                k[d].calls = 0;
            wm_batch b = {1, x, NULL, mode & 2 ? NULL : &lab, NULL};
            WM_OK_OR_FAIL(wm_infer_context_batch(net, &b, mode & 1, s_out, &loss));
            for (int d = 0; d < dim; d++)   /* one call per factor per inference */
                if (k[d].calls != want)
                    fail_msg("dim %d mode %d: factor %d was called %ld times; the header says %ld "
                             "inferences", dim, mode, d, k[d].calls, want);
        }
        for (int d = 0; d < dim; d++)
            k[d].calls = 0;
        WM_OK_OR_FAIL(wm_infer_context(net, x, &lab, 1, s_out));
        assert_int_equal(k[0].calls, want);
        print_message("dim %d: %ld inferences (header: %ld)\n", dim, k[0].calls, want);
        wm_net_free(net);
        wm_manifold_free(m);
    }
}

/* ---- validation: every bad argument, nothing written ------------------------ */

static void test_validation(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("torus");
    wm_net *net, *mse, *raw;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 2, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(net, 3, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    WM_OK_OR_FAIL(wm_net_create(&mse, m, 2, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(mse, 3, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_set_loss(mse, WM_LOSS_MSE));
    WM_OK_OR_FAIL(wm_net_init(mse, 1));
    WM_OK_OR_FAIL(wm_net_create(&raw, m, 2, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(raw, 3, WM_ACT_NONE));
    float x[6] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f}, bad[6] = {0.1f, 0.2f, NAN, 0.4f, 0.5f, 0.6f};
    float inf_x[6] = {0.1f, INFINITY, 0.3f, 0.4f, 0.5f, 0.6f}, tg[9] = {0}, tg_bad[9] = {0, 0, 0, 0, INFINITY};
    int32_t lab[3] = {0, 1, 2}, lab_hi[3] = {0, 3, 1}, lab_neg[3] = {0, 1, -1};
    float s_out[6], loss[3];
    const float sentinel = -7.0f;
#define NOTHING_WRITTEN()                                                         \
    do {                                                                          \
        for (int j_ = 0; j_ < 6; j_++)                                            \
            assert_true(s_out[j_] == sentinel);                                   \
        for (int j_ = 0; j_ < 3; j_++)                                            \
            assert_true(loss[j_] == sentinel);                                    \
    } while (0)
#define EXPECT_FAIL(want, call)                                                   \
    do {                                                                          \
        for (int j_ = 0; j_ < 6; j_++)                                            \
            s_out[j_] = sentinel;                                                 \
        for (int j_ = 0; j_ < 3; j_++)                                            \
            loss[j_] = sentinel;                                                  \
        EXPECT_STATUS(want, call);                                                \
        NOTHING_WRITTEN();                                                        \
    } while (0)
    wm_batch ok = {3, x, NULL, lab, NULL};
    EXPECT_FAIL(WM_EINVAL, wm_infer_context_batch(NULL, &ok, 1, s_out, loss));
    EXPECT_FAIL(WM_EINVAL, wm_infer_context_batch(net, NULL, 1, s_out, loss));
    EXPECT_FAIL(WM_EINVAL, wm_infer_context_batch(net, &ok, 1, NULL, loss));
    EXPECT_FAIL(WM_EINVAL, wm_infer_context_batch(net, &ok, 2, s_out, loss));
    EXPECT_FAIL(WM_EINVAL, wm_infer_context_batch(net, &ok, -1, s_out, loss));
    EXPECT_FAIL(WM_ESTATE, wm_infer_context_batch(raw, &ok, 1, s_out, loss));
    wm_batch b = ok;
    b.n = 0;
    EXPECT_FAIL(WM_EINVAL, wm_infer_context_batch(net, &b, 1, s_out, loss));
    b.n = -3;
    EXPECT_FAIL(WM_EINVAL, wm_infer_context_batch(net, &b, 0, s_out, loss));
    b = ok, b.x = NULL;
    EXPECT_FAIL(WM_EINVAL, wm_infer_context_batch(net, &b, 1, s_out, loss));
    b = ok, b.x = bad;
    EXPECT_FAIL(WM_EINVAL, wm_infer_context_batch(net, &b, 0, s_out, loss));
    b = ok, b.x = inf_x;
    EXPECT_FAIL(WM_EINVAL, wm_infer_context_batch(net, &b, 1, s_out, loss));
    b = ok, b.labels = lab_hi;
    EXPECT_FAIL(WM_EINVAL, wm_infer_context_batch(net, &b, 1, s_out, loss));
    b = ok, b.labels = lab_neg;
    EXPECT_FAIL(WM_EINVAL, wm_infer_context_batch(net, &b, 0, s_out, loss));
    b = ok, b.labels = NULL;                        /* an MSE net with neither */
    EXPECT_FAIL(WM_EINVAL, wm_infer_context_batch(mse, &b, 1, s_out, loss));
    b.targets = tg_bad;
    EXPECT_FAIL(WM_EINVAL, wm_infer_context_batch(mse, &b, 1, s_out, loss));
    EXPECT_FAIL(WM_EINVAL, wm_infer_context_batch(net, &b, 0, s_out, loss));
    /* the old entry point keeps its checks */
    EXPECT_FAIL(WM_EINVAL, wm_infer_context(mse, x, lab, 3, s_out));
    EXPECT_FAIL(WM_EINVAL, wm_infer_context(net, x, lab_hi, 3, s_out));
    EXPECT_FAIL(WM_EINVAL, wm_infer_context(net, bad, NULL, 3, s_out));
    EXPECT_FAIL(WM_EINVAL, wm_infer_context(net, x, lab, 0, s_out));
    EXPECT_FAIL(WM_ESTATE, wm_infer_context(raw, x, lab, 3, s_out));
    /* what does work: batch.s is ignored; loss_out may be NULL; both
     * supervisions: the net's own loss */
    float junk_s[6] = {NAN, NAN, NAN, NAN, NAN, NAN};
    b = ok, b.s = junk_s;
    WM_OK_OR_FAIL(wm_infer_context_batch(net, &b, 0, s_out, NULL));
    b.targets = tg;
    float l_both, l_lab;
    WM_OK_OR_FAIL(wm_infer_context_batch(net, &b, 1, s_out, &l_both));
    WM_OK_OR_FAIL(wm_infer_context_batch(net, &ok, 1, s_out + 2, &l_lab));
    assert_true(l_both == l_lab && s_out[0] == s_out[2] && s_out[1] == s_out[3]);
    WM_OK_OR_FAIL(wm_infer_context_batch(mse, &b, 1, s_out, loss));
    b.labels = NULL;
    WM_OK_OR_FAIL(wm_infer_context_batch(mse, &b, 0, s_out, loss));
    for (int j = 0; j < 6; j++)                     /* periodic: in [0,1) */
        assert_true(s_out[j] >= 0.0f && s_out[j] < 1.0f);
    /* the old call is the batch call with shared = 1 */
    float s_old[2], s_new[2];
    WM_OK_OR_FAIL(wm_infer_context(net, x, NULL, 3, s_old));
    wm_batch nolab = {3, x, NULL, NULL, NULL};
    WM_OK_OR_FAIL(wm_infer_context_batch(net, &nolab, 1, s_new, NULL));
    assert_memory_equal(s_old, s_new, sizeof s_old);
#undef EXPECT_FAIL
#undef NOTHING_WRITTEN
    wm_net_free(net), wm_net_free(mse), wm_net_free(raw);
    wm_manifold_free(m);
}

/* A point has no context: nothing is written to s_out, loss_out still is. */
static void test_point_manifold(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("point");
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 2, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(net, 3, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    float x[4] = {1, 2, 3, 4}, s_out = -7.0f, loss[2] = {-7.0f, -7.0f}, mean;
    int32_t lab[2] = {0, 2};
    wm_batch b = {2, x, NULL, lab, NULL};
    WM_OK_OR_FAIL(wm_infer_context_batch(net, &b, 0, &s_out, loss));
    assert_true(s_out == -7.0f);
    WM_OK_OR_FAIL(wm_infer_context_batch(net, &b, 1, &s_out, &mean));
    assert_true(fabs(mean - (loss[0] + loss[1]) / 2) < 1e-6);
    float ev;
    WM_OK_OR_FAIL(wm_evaluate(net, &b, &ev, NULL));
    assert_true(fabs(mean - ev) < 1e-6);
    wm_net_free(net);
    wm_manifold_free(m);
}

/* Concatenation nets work too (the baseline can infer its context). */
static void test_concat_net(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("line");
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 1, WM_COND_CONCAT));
    WM_OK_OR_FAIL(wm_net_dense(net, 1, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_set_loss(net, WM_LOSS_MSE));
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    /* y = x + 2 s: target 1.6 at x = 1 needs s = 0.3 */
    float w[2] = {1, 2}, bias = 0, x = 1, t = 1.6f, s, loss;
    WM_OK_OR_FAIL(wm_net_set_control_point(net, 0, 0, w, &bias));
    wm_batch b = {1, &x, NULL, NULL, &t};
    WM_OK_OR_FAIL(wm_infer_context_batch(net, &b, 1, &s, &loss));
    assert_true(fabs(s - 0.3) < 1e-4);
    assert_true(loss < 1e-7);
    wm_net_free(net);
    wm_manifold_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line),
        cmocka_unit_test(test_circle),
        cmocka_unit_test(test_torus),
        cmocka_unit_test(test_bspline),
        cmocka_unit_test(test_products_dim_3_to_8),
        cmocka_unit_test(test_infer_context_finds_every_coordinate),
        cmocka_unit_test(test_cost_counted_dim_1_to_8),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_point_manifold),
        cmocka_unit_test(test_concat_net),
    };
    return cmocka_run_group_tests_name("context", tests, NULL, NULL);
}
