/* test_layers.c -- the layer modules of src/layers/ as a graph: residual
 * connections (and, with TU_HAVE_NORMS, normalisation, FiLM, dropout, global
 * average pooling and per-layer placement), each against the double-precision
 * graph reference of testutil.h (tu_gref) by central finite differences, on
 * point, line, circle, torus and B-spline manifolds, mixed and shared
 * contexts, manifold and concatenation nets; and the inference memory plan. */
#include <unistd.h>

#include "testutil.h"

/* One gradient check: the net of spec on manifold mname, batch n. */
static void check_spec(const char *mname, wm_conditioning cond, const tu_spec *spec, int nl,
                       int n_inputs, int c, int h, int w, wm_loss loss, int shared, int n)
{
    tu_gref r;
    wm_net *net = tu_gbuild(&r, mname, cond, n_inputs, c, h, w, spec, nl, loss, 11);
    const wm_manifold *m = wm_net_manifold(net);
    int dim = wm_manifold_dim(m), n_out = wm_net_n_outputs(net);
    uint64_t st = 5;
    float *x = malloc(sizeof(float) * (size_t)n * n_inputs), s[64 * 4];
    float *targets = malloc(sizeof(float) * (size_t)n * n_out);
    int32_t labels[64];
    tu_fill(x, (size_t)n * n_inputs, -1, 1, &st);
    tu_contexts(m, s, n, &st);
    if (shared)
        for (int i = 1; i < n; i++) memcpy(s + i * dim, s, sizeof(float) * dim);
    tu_fill(targets, (size_t)n * n_out, -1, 1, &st);
    for (int i = 0; i < n; i++) labels[i] = (int32_t)(tu_uniform(&st) * n_out);
    double scale, loss_err;
    double err = tu_gcheck(&r, net, n, x, s, labels, targets, 1, &scale, &loss_err);
    if (!(loss_err < 1e-5))
        fail_msg("%s cond=%d: loss differs from the reference by %.3g (relative)", mname, cond, loss_err);
    if (!(err <= 2e-4 * scale + 1e-6))
        fail_msg("%s cond=%d loss=%d shared=%d: max |analytic - fd| = %.3g, gradient scale %.3g", mname,
                 cond, loss, shared, err, scale);
    assert_true(scale > 1e-4);
    /* inference agrees with the reference too */
    float *y = malloc(sizeof(float) * (size_t)n * n_out);
    double *yr = malloc(sizeof(double) * (size_t)n * n_out);
    WM_OK_OR_FAIL(wm_infer(net, x, s, n, y));
    tu_gref_loss(&r, m, n, x, s, labels, targets, yr);
    for (int j = 0; j < n * n_out; j++)
        if (fabs(y[j] - yr[j]) > 1e-4 * (1 + fabs(yr[j])))
            fail_msg("%s: wm_infer output %d = %.7g, reference %.7g", mname, j, y[j], yr[j]);
    free(y), free(yr), free(x), free(targets);
    tu_gref_free(&r);
    wm_net_free(net);
}

static const char *MANIFOLDS[] = {"point", "line", "circle", "torus", "bspline"};

/* Every manifold, mixed and shared contexts, both losses; concat nets on
 * the manifolds with concat features in the reference. */
static void sweep(const tu_spec *spec, int nl, int n_inputs, int c, int h, int w)
{
    for (int mi = 0; mi < 5; mi++)
        for (int cond = 0; cond < 2; cond++) {
            if (cond == WM_COND_CONCAT && (!strcmp(MANIFOLDS[mi], "bspline") || c > 0))
                continue;                     /* tu_features: flat inputs, these manifolds */
            for (int sh = 0; sh < 2; sh++)
                for (int lo = 0; lo < 2; lo++)
                    check_spec(MANIFOLDS[mi], (wm_conditioning)cond, spec, nl, n_inputs, c, h, w,
                               lo ? WM_LOSS_MSE : WM_LOSS_SOFTMAX_CE, sh, sh ? 4 : 6);
        }
}

/* dense, dense, residual from layer 0 (a block), dense head */
static void test_residual_block(void **st)
{
    (void)st;
    tu_spec spec[] = {{TU_DENSE, 5, WM_ACT_TANH, 0, 0, 0}, {TU_DENSE, 5, WM_ACT_TANH, 0, 0, 0},
                      {TU_RESIDUAL, 0, WM_ACT_RELU, 0, 0, 0}, {TU_DENSE, 3, WM_ACT_NONE, 0, 0, 0}};
    sweep(spec, 4, 3, 0, 0, 0);
}

/* residual from the net's input (-1), with no activation, then another
 * residual reading the first one's output */
static void test_residual_from_input(void **st)
{
    (void)st;
    tu_spec spec[] = {{TU_DENSE, 4, WM_ACT_SIGMOID, 0, 0, 0}, {TU_RESIDUAL, 0, WM_ACT_NONE, -1, 0, 0},
                      {TU_DENSE, 4, WM_ACT_TANH, 0, 0, 0}, {TU_RESIDUAL, 0, WM_ACT_TANH, 1, 0, 0},
                      {TU_DENSE, 3, WM_ACT_NONE, 0, 0, 0}};
    sweep(spec, 5, 4, 0, 0, 0);
}

/* two skips over the same layer: layer 0's output read by layers 1, 3 and 4 */
static void test_two_skips_same_source(void **st)
{
    (void)st;
    tu_spec spec[] = {{TU_DENSE, 5, WM_ACT_TANH, 0, 0, 0}, {TU_DENSE, 5, WM_ACT_TANH, 0, 0, 0},
                      {TU_DENSE, 5, WM_ACT_RELU, 0, 0, 0}, {TU_RESIDUAL, 0, WM_ACT_NONE, 0, 0, 0},
                      {TU_RESIDUAL, 0, WM_ACT_TANH, 0, 0, 0}, {TU_RESIDUAL, 0, WM_ACT_NONE, 1, 0, 0},
                      {TU_DENSE, 3, WM_ACT_NONE, 0, 0, 0}};
    sweep(spec, 7, 3, 0, 0, 0);
    /* a residual right after its source: act(x + x) */
    tu_spec twice[] = {{TU_DENSE, 4, WM_ACT_TANH, 0, 0, 0}, {TU_RESIDUAL, 0, WM_ACT_SIGMOID, 0, 0, 0},
                       {TU_DENSE, 3, WM_ACT_NONE, 0, 0, 0}};
    sweep(twice, 3, 3, 0, 0, 0);
}

/* wm_step on a residual net: the direct (dense) path and the gradient path
 * give the same update as wm_grad + wm_apply, and training lowers the loss */
static void test_residual_step_matches_grad_apply(void **st)
{
    (void)st;
    tu_spec spec[] = {{TU_DENSE, 6, WM_ACT_TANH, 0, 0, 0}, {TU_DENSE, 6, WM_ACT_TANH, 0, 0, 0},
                      {TU_RESIDUAL, 0, WM_ACT_NONE, 0, 0, 0}, {TU_DENSE, 3, WM_ACT_NONE, 0, 0, 0}};
    for (int n = 1; n <= 8; n += 7) {
        tu_gref r1, r2;
        wm_net *a = tu_gbuild(&r1, "circle", WM_COND_MANIFOLD, 4, 0, 0, 0, spec, 4, WM_LOSS_SOFTMAX_CE, 3);
        wm_net *b = tu_gbuild(&r2, "circle", WM_COND_MANIFOLD, 4, 0, 0, 0, spec, 4, WM_LOSS_SOFTMAX_CE, 3);
        uint64_t s0 = 9;
        float x[8 * 4], s[8];
        int32_t labels[8];
        tu_fill(x, 32, -1, 1, &s0);
        tu_fill(s, 8, 0, 1, &s0);
        for (int i = 0; i < 8; i++) labels[i] = i % 3;
        wm_batch batch = {n, x, s, labels, NULL};
        wm_opt_config cfg = wm_opt_default(WM_OPT_MOMENTUM);
        wm_optimizer *oa, *ob;
        WM_OK_OR_FAIL(wm_optimizer_create(&oa, a, &cfg));
        WM_OK_OR_FAIL(wm_optimizer_create(&ob, b, &cfg));
        float la, lb, first = 0;
        for (int t = 0; t < 20; t++) {
            WM_OK_OR_FAIL(wm_step(oa, &batch, &la));
            WM_OK_OR_FAIL(wm_grad(ob, &batch, &lb));
            WM_OK_OR_FAIL(wm_apply(ob));
            if (t == 0) first = la;
        }
        size_t np;
        const float *pa = wm_net_params(a, &np), *pb = wm_net_params(b, &np);
        for (size_t j = 0; j < np; j++)
            if (fabsf(pa[j] - pb[j]) > 1e-5f * (1 + fabsf(pb[j])))
                fail_msg("n=%d: parameter %zu: step %.8g, grad+apply %.8g", n, j, pa[j], pb[j]);
        assert_true(la < first);
        wm_optimizer_free(oa), wm_optimizer_free(ob);
        wm_net_free(a), wm_net_free(b);
        tu_gref_free(&r1), tu_gref_free(&r2);
    }
}

/* The inference workspace is what the chain of the same widths needs plus
 * one batch-sized buffer per output a skip keeps alive, and inference in
 * exactly that much caller workspace is right (ASan/valgrind see overruns). */
static void test_residual_inference_memory(void **st)
{
    (void)st;
    wm_manifold *m = tu_manifold("circle");
    wm_net *chain, *res, *two;
    WM_OK_OR_FAIL(wm_net_create(&chain, m, 8, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_create(&res, m, 8, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_create(&two, m, 8, WM_COND_MANIFOLD));
    for (int l = 0; l < 4; l++) WM_OK_OR_FAIL(wm_net_dense(chain, 8, WM_ACT_TANH));
    WM_OK_OR_FAIL(wm_net_dense(chain, 3, WM_ACT_NONE));
    /* res: layer 0's output lives across layers 1 and 2: one extra buffer */
    for (int l = 0; l < 3; l++) WM_OK_OR_FAIL(wm_net_dense(res, 8, WM_ACT_TANH));
    WM_OK_OR_FAIL(wm_net_residual(res, 0, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_dense(res, 3, WM_ACT_NONE));
    /* two: the input skip costs nothing (the caller's x), layer 0 across 1..3
     * and layer 1 across 2..3: two extra buffers */
    for (int l = 0; l < 3; l++) WM_OK_OR_FAIL(wm_net_dense(two, 8, WM_ACT_TANH));
    WM_OK_OR_FAIL(wm_net_residual(two, 1, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_residual(two, 0, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_residual(two, -1, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_dense(two, 3, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(chain, 1));
    WM_OK_OR_FAIL(wm_net_init(res, 1));
    WM_OK_OR_FAIL(wm_net_init(two, 1));
    for (int n = 1; n <= 300; n += 299) {
        size_t rows = n < 256 ? (size_t)n : 256;
        size_t buffer = (rows * 8 + 15) / 16 * 16 * sizeof(float);   /* one activation buffer */
        assert_int_equal(wm_infer_workspace_size(res, n), wm_infer_workspace_size(chain, n) + buffer);
        assert_int_equal(wm_infer_workspace_size(two, n), wm_infer_workspace_size(chain, n) + 2 * buffer);
        float *x = malloc(sizeof(float) * 8 * (size_t)n), *s = malloc(sizeof(float) * (size_t)n);
        float *y1 = malloc(sizeof(float) * 3 * (size_t)n), *y2 = malloc(sizeof(float) * 3 * (size_t)n);
        uint64_t s0 = 4;
        tu_fill(x, 8 * (size_t)n, -1, 1, &s0);
        tu_fill(s, (size_t)n, 0, 1, &s0);
        const wm_net *nets[] = {res, two};
        for (int k = 0; k < 2; k++) {
            size_t bytes = wm_infer_workspace_size(nets[k], n);
            void *ws = malloc(bytes);
            WM_OK_OR_FAIL(wm_infer_ws(nets[k], x, s, n, y1, ws, bytes));
            WM_OK_OR_FAIL(wm_infer(nets[k], x, s, n, y2));
            assert_memory_equal(y1, y2, sizeof(float) * 3 * (size_t)n);
            EXPECT_STATUS(WM_EINVAL, wm_infer_ws(nets[k], x, s, n, y1, ws, bytes - 64 - 1));
            free(ws);
        }
        free(x), free(s), free(y1), free(y2);
    }
    wm_net_free(chain), wm_net_free(res), wm_net_free(two);
    wm_manifold_free(m);
}

/* Residuals on images keep the shape: maxpool of size 1 is the identity, so
 * act(x + x) through it checks the image path and the shape rules. */
static void test_residual_images_and_errors(void **st)
{
    (void)st;
    wm_manifold *m = tu_manifold("line");
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 2 * 4 * 4, WM_COND_MANIFOLD));
    EXPECT_STATUS(WM_EINVAL, wm_net_residual(NULL, -1, WM_ACT_NONE));
    EXPECT_STATUS(WM_EINVAL, wm_net_residual(net, -1, WM_ACT_NONE));      /* no layer yet */
    WM_OK_OR_FAIL(wm_net_input_shape(net, 2, 4, 4));
    WM_OK_OR_FAIL(wm_net_maxpool(net, 1));
    EXPECT_STATUS(WM_EINVAL, wm_net_residual(net, 1, WM_ACT_NONE));       /* not yet a layer */
    EXPECT_STATUS(WM_EINVAL, wm_net_residual(net, -2, WM_ACT_NONE));
    EXPECT_STATUS(WM_EINVAL, wm_net_residual(net, 0, (wm_activation)99));
    WM_OK_OR_FAIL(wm_net_residual(net, -1, WM_ACT_RELU));                  /* relu(2 x) */
    WM_OK_OR_FAIL(wm_net_conv2d(net, 3, 3, 1, 1, WM_ACT_RELU));            /* 3 x 4 x 4 */
    EXPECT_STATUS(WM_EINVAL, wm_net_residual(net, 1, WM_ACT_NONE));       /* 2 x 4 x 4 != 3 x 4 x 4 */
    WM_OK_OR_FAIL(wm_net_maxpool(net, 2));                                 /* 3 x 2 x 2 */
    EXPECT_STATUS(WM_EINVAL, wm_net_residual(net, 2, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_dense(net, 12, WM_ACT_TANH));
    WM_OK_OR_FAIL(wm_net_residual(net, 3, WM_ACT_NONE));   /* flat 12 + a 3 x 2 x 2 image: 12 values */
    WM_OK_OR_FAIL(wm_net_dense(net, 2, WM_ACT_NONE));
    int ni, no;
    WM_OK_OR_FAIL(wm_net_layer_info(net, 1, &ni, &no, NULL));
    assert_int_equal(ni, 32);
    assert_int_equal(no, 32);
    WM_OK_OR_FAIL(wm_net_init(net, 2));
    EXPECT_STATUS(WM_ESTATE, wm_net_residual(net, 0, WM_ACT_NONE));
    float w[4], b[4], s = 0.5f;
    EXPECT_STATUS(WM_EINVAL, wm_net_weights_at(net, 1, &s, w, b));
    EXPECT_STATUS(WM_EINVAL, wm_net_control_point(net, 1, 0, w, b));
    float x[32], y1[2], y0[2];
    uint64_t s0 = 1;
    tu_fill(x, 32, -1, 1, &s0);
    WM_OK_OR_FAIL(wm_infer(net, x, &s, 1, y1));
    /* save, load: the same graph, bit-identical outputs */
    char path[] = "/tmp/wm_test_layers_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    WM_OK_OR_FAIL(wm_net_save(net, path));
    wm_net *back;
    WM_OK_OR_FAIL(wm_net_load(&back, path));
    unlink(path);
    assert_int_equal(wm_net_n_layers(back), 7);
    WM_OK_OR_FAIL(wm_infer(back, x, &s, 1, y0));
    assert_memory_equal(y0, y1, sizeof y0);
    char text[2048];
    WM_OK_OR_FAIL(wm_net_summary(back, text, sizeof text));
    assert_non_null(strstr(text, "residual + input"));
    assert_non_null(strstr(text, "residual + layer 3"));
    wm_net_free(back), wm_net_free(net);
    wm_manifold_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_residual_block),
        cmocka_unit_test(test_residual_from_input),
        cmocka_unit_test(test_two_skips_same_source),
        cmocka_unit_test(test_residual_step_matches_grad_apply),
        cmocka_unit_test(test_residual_inference_memory),
        cmocka_unit_test(test_residual_images_and_errors),
    };
    return cmocka_run_group_tests_name("layers", tests, NULL, NULL);
}
