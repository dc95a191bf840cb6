/* test_grad.c -- every layer, activation, loss, manifold and conditioning:
 * the library's analytic gradient against central finite differences of an
 * independent double-precision reference (testutil.h's tu_ref).
 *
 * The library works in orthonormal coordinates Q = L^T P (G = L L^T), so its
 * gradient buffer holds dL/dQ = L^-1 dL/dP. The test maps it back with its own
 * Cholesky factor of G (dL/dP = L dL/dQ) and compares with finite differences
 * in the paper's P coordinates, h = 1e-6 in double: truncation ~1e-12 and
 * rounding ~1e-10, so the tolerance (2e-4 of the gradient's scale) is set by
 * the library's float arithmetic (~1e-6 relative per operation, a few hundred
 * operations deep), not by the check itself. */
#include "testutil.h"

typedef struct {
    const char *manifold;
    wm_conditioning cond;
    wm_activation act;
    wm_loss loss;
    int shared;                   /* all samples share one context */
    int n;                        /* batch size */
    int in, h1, h2;               /* layer widths (0: 3, 5, 4) */
    int stride;                   /* check every stride-th parameter (0: all) */
} grad_case;

static void check_case(const grad_case *gc)
{
    const int IN = gc->in ? gc->in : 3, stride = gc->stride ? gc->stride : 1;
    wm_manifold *m = tu_manifold(gc->manifold);
    wm_net *net;
    wm_optimizer *opt;
    int n_out = gc->loss == WM_LOSS_SOFTMAX_CE ? 3 : 2, n = gc->n;
    WM_OK_OR_FAIL(wm_net_create(&net, m, IN, gc->cond));
    WM_OK_OR_FAIL(wm_net_dense(net, gc->h1 ? gc->h1 : 5, gc->act));
    WM_OK_OR_FAIL(wm_net_dense(net, gc->h2 ? gc->h2 : 4, gc->act));
    WM_OK_OR_FAIL(wm_net_dense(net, n_out, gc->loss == WM_LOSS_MSE ? gc->act : WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_set_loss(net, gc->loss));
    WM_OK_OR_FAIL(wm_net_init(net, 5));
    /* random parameters: the initial manifold is a point, which would hide
     * errors in how the gradient is spread over the basis points */
    uint64_t st = 99;
    size_t np = wm_net_n_params(net);
    float *q = malloc(np * sizeof *q);
    tu_fill(q, np, -0.8, 0.8, &st);
    WM_OK_OR_FAIL(wm_net_set_params(net, q, np));

    int dim = wm_manifold_dim(m);
    float *x = malloc(sizeof(float) * 64 * IN), s[64 * 4], targets[64 * 3];
    int32_t labels[64];
    tu_fill(x, (size_t)n * IN, -1, 1, &st);
    tu_contexts(m, s, n, &st);
    if (gc->shared)
        for (int i = 1; i < n; i++)
            memcpy(s + i * dim, s, sizeof(float) * dim);
    tu_fill(targets, (size_t)n * n_out, -1, 1, &st);
    for (int i = 0; i < n; i++) labels[i] = (int32_t)(tu_uniform(&st) * n_out);
    wm_batch b = {n, x, s, labels, targets};

    wm_opt_config cfg = wm_opt_default(WM_OPT_SD);
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
    float loss;
    WM_OK_OR_FAIL(wm_grad(opt, &b, &loss));
    size_t glen;
    const float *gq = wm_grad_buffer(opt, &glen);
    assert_int_equal(glen, np);

    tu_ref ref;
    tu_ref_load(&ref, net, gc->manifold, gc->cond == WM_COND_CONCAT);
    ref.loss = gc->loss;
    double ref_loss = tu_ref_loss(&ref, m, gc->manifold, n, IN, x, s, labels, targets, NULL);
    if (fabs(ref_loss - loss) > 1e-5 * (1 + fabs(ref_loss)))
        fail_msg("%s: loss %.9g vs reference %.9g", gc->manifold, loss, ref_loss);

    /* dL/dP from dL/dQ, block by block, with the test's own factor of G */
    int K = ref.K;
    double G[81 * 81], L[81 * 81];
    if (K > 1) {
        WM_OK_OR_FAIL(wm_manifold_gram(m, G));
        tu_cholesky(G, L, K);
    } else {
        L[0] = 1;
    }
    double max_err = 0, scale = 0;
    size_t off = 0;
    for (int l = 0; l < ref.n_layers; l++) {
        size_t wn = (size_t)ref.out[l] * ref.in[l];
        for (int part = 0; part < 2; part++) {       /* W block, then b block */
            size_t len = part ? (size_t)ref.out[l] : wn;
            double *P = part ? ref.B[l] : ref.P[l];
            for (int k = 0; k < K; k++)
                for (size_t j = (size_t)k % stride; j < len; j += stride) {
                    double lib = 0;
                    for (int i = 0; i <= k; i++)
                        lib += L[k * K + i] * gq[off + (size_t)i * len + j];
                    double *p = &P[(size_t)k * len + j], save = *p, h = 1e-6;
                    *p = save + h;
                    double up = tu_ref_loss(&ref, m, gc->manifold, n, IN, x, s, labels, targets, NULL);
                    *p = save - h;
                    double dn = tu_ref_loss(&ref, m, gc->manifold, n, IN, x, s, labels, targets, NULL);
                    *p = save;
                    double fd = (up - dn) / (2 * h);
                    max_err = fmax(max_err, fabs(lib - fd));
                    scale = fmax(scale, fabs(fd));
                }
            off += (size_t)K * len;
        }
    }
    assert_int_equal(off, np);
    if (!(max_err <= 2e-4 * scale + 1e-6))
        fail_msg("%s cond=%d act=%d loss=%d shared=%d: max |analytic - fd| = %.3g, gradient scale %.3g",
                 gc->manifold, gc->cond, gc->act, gc->loss, gc->shared, max_err, scale);
    assert_true(scale > 1e-4);   /* a vanishing gradient would prove nothing */
    tu_ref_free(&ref);
    wm_optimizer_free(opt);
    wm_net_free(net);
    wm_manifold_free(m);
    free(q), free(x);
}

static void run_manifold(const char *name)
{
    wm_activation acts[] = {WM_ACT_NONE, WM_ACT_RELU, WM_ACT_TANH, WM_ACT_SIGMOID};
    wm_loss losses[] = {WM_LOSS_SOFTMAX_CE, WM_LOSS_MSE};
    wm_conditioning conds[] = {WM_COND_MANIFOLD, WM_COND_CONCAT};
    for (int c = 0; c < 2; c++) {
        if (!strcmp(name, "bspline") && conds[c] == WM_COND_CONCAT)
            continue;                            /* tu_features covers the others */
        for (int a = 0; a < 4; a++)
            for (int l = 0; l < 2; l++)
                for (int sh = 0; sh < 2; sh++) {
                    grad_case gc = {name, conds[c], acts[a], losses[l], sh, sh ? 5 : 7, 0, 0, 0, 0};
                    check_case(&gc);
                }
    }
    grad_case single = {name, WM_COND_MANIFOLD, WM_ACT_TANH, WM_LOSS_MSE, 0, 1, 0, 0, 0, 0};
    check_case(&single);                         /* batch of one */
}

/* Layers wide enough that the products run in blocks (src/blas.c: a thin
 * batch of 40 samples against 160- and 130-wide layers), checked on every
 * 1013th parameter of each basis point (about 120): relu and tanh, mixed and
 * shared contexts, a line and a circle. */
static void test_grad_wide_layers(void **st)
{
    (void)st;
    const char *names[] = {"line", "circle"};
    for (int i = 0; i < 2; i++)
        for (int sh = 0; sh < 2; sh++) {
            grad_case gc = {names[i], WM_COND_MANIFOLD, sh ? WM_ACT_TANH : WM_ACT_RELU, WM_LOSS_SOFTMAX_CE,
                            sh, 40, 160, 130, 100, 1013};
            check_case(&gc);
        }
}

static void test_grad_point(void **s) { (void)s; run_manifold("point"); }
static void test_grad_line(void **s) { (void)s; run_manifold("line"); }
static void test_grad_circle(void **s) { (void)s; run_manifold("circle"); }
static void test_grad_torus(void **s) { (void)s; run_manifold("torus"); }
static void test_grad_cylinder(void **s) { (void)s; run_manifold("cylinder"); }
static void test_grad_bspline(void **s) { (void)s; run_manifold("bspline"); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_wide_layers),
        cmocka_unit_test(test_grad_point),    cmocka_unit_test(test_grad_line),
        cmocka_unit_test(test_grad_circle),   cmocka_unit_test(test_grad_torus),
        cmocka_unit_test(test_grad_cylinder), cmocka_unit_test(test_grad_bspline),
    };
    return cmocka_run_group_tests_name("gradients", tests, NULL, NULL);
}
