/* test_layers.c -- the layer modules of src/layers/ as a graph: residual
 * connections (and, with TU_HAVE_NORMS, normalisation, FiLM, dropout, global
 * average pooling and per-layer placement), each against the double-precision
 * graph reference of testutil.h (tu_gref) by central finite differences, on
 * point, line, circle, torus and B-spline manifolds, mixed and shared
 * contexts, manifold and concatenation nets; and the inference memory plan. */
#include <unistd.h>

#define TU_HAVE_NORMS
#include "testutil.h"
#include "crc32.h"
#include "fuzz/model_layout.h"

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

/* ---- normalisation, FiLM, dropout, global average pooling, placement ---- */

#define D(n, a) {TU_DENSE, n, a, 0, 0, 0}
#define DP(n, a) {TU_DENSE, n, a, 0, 1, 0}      /* a dense layer kept at one point */
#define RES(from, a) {TU_RESIDUAL, 0, a, from, 0, 0}
#define LN {TU_LAYERNORM, 0, WM_ACT_NONE, 0, 0, 0}
#define LNP {TU_LAYERNORM, 0, WM_ACT_NONE, 0, 1, 0}
#define GN(g) {TU_GROUPNORM, g, WM_ACT_NONE, 0, 0, 0}
#define FILM {TU_FILM, 0, WM_ACT_NONE, 0, 0, 0}
#define FILMP {TU_FILM, 0, WM_ACT_NONE, 0, 1, 0}
#define GAP {TU_GAP, 0, WM_ACT_NONE, 0, 0, 0}
#define DROP0 {TU_DROPOUT, 0, WM_ACT_NONE, 0, 0, 0.0f}

static void test_layernorm(void **st)
{
    (void)st;
    tu_spec alone[] = {D(6, WM_ACT_TANH), LN, D(3, WM_ACT_NONE)};
    sweep(alone, 3, 3, 0, 0, 0);
    tu_spec first[] = {LN, D(3, WM_ACT_NONE)};            /* on the input (not on concat nets) */
    check_spec("circle", WM_COND_MANIFOLD, first, 2, 5, 0, 0, 0, WM_LOSS_MSE, 0, 6);
    /* pre-norm residual block: x + dense(relu(dense(LN(x)))) */
    tu_spec block[] = {D(5, WM_ACT_TANH), LN, D(5, WM_ACT_RELU), D(5, WM_ACT_NONE), RES(0, WM_ACT_NONE),
                       LNP, D(3, WM_ACT_NONE)};
    sweep(block, 7, 3, 0, 0, 0);
}

static void test_groupnorm_and_global_avgpool(void **st)
{
    (void)st;
    /* images 4 x 3 x 3: groupnorm (2 groups), residual to the input,
     * groupnorm (4 groups), global average pool, dense head */
    tu_spec img[] = {GN(2), RES(-1, WM_ACT_RELU), GN(4), GAP, D(3, WM_ACT_NONE)};
    sweep(img, 5, 36, 4, 3, 3);
    tu_spec one[] = {GN(1), GAP, D(3, WM_ACT_TANH)};       /* one group: layernorm over the image */
    sweep(one, 3, 36, 4, 3, 3);
    tu_spec ln_img[] = {LN, FILM, GAP, D(2, WM_ACT_NONE)};
    sweep(ln_img, 4, 36, 4, 3, 3);
    /* groupnorm's input gradient, with channels of a group seeing different
     * gradients (FiLM before and after) */
    tu_spec inner[] = {FILM, GN(2), FILM, RES(-1, WM_ACT_TANH), GN(2), GAP, D(3, WM_ACT_NONE)};
    sweep(inner, 7, 36, 4, 3, 3);
}

static void test_film(void **st)
{
    (void)st;
    tu_spec alone[] = {D(5, WM_ACT_TANH), FILM, D(3, WM_ACT_NONE)};
    sweep(alone, 3, 3, 0, 0, 0);
    /* the FiLM baseline: point layers, FiLM on the manifold after each,
     * inside a residual block */
    tu_spec film[] = {DP(5, WM_ACT_TANH), FILM, DP(5, WM_ACT_RELU), FILM, RES(1, WM_ACT_NONE),
                      DP(3, WM_ACT_NONE)};
    sweep(film, 6, 3, 0, 0, 0);
    /* per-channel FiLM on images, and a point FiLM */
    tu_spec img[] = {FILM, GN(2), FILMP, RES(0, WM_ACT_TANH), GAP, D(3, WM_ACT_NONE)};
    sweep(img, 6, 36, 4, 3, 3);
}

static void test_mixed_placement(void **st)
{
    (void)st;
    /* only the last block and the head on the manifold */
    tu_spec spec[] = {DP(5, WM_ACT_TANH), LNP, DP(5, WM_ACT_RELU), RES(0, WM_ACT_NONE),
                      D(5, WM_ACT_TANH), LN, D(5, WM_ACT_SIGMOID), RES(3, WM_ACT_NONE), DROP0,
                      D(3, WM_ACT_NONE)};
    sweep(spec, 10, 3, 0, 0, 0);
    /* wm_step's direct path with point and manifold layers agrees with
     * wm_grad + wm_apply, batch 1 (rank 1) and 8 */
    tu_spec dense[] = {DP(6, WM_ACT_TANH), D(6, WM_ACT_TANH), RES(0, WM_ACT_NONE), DP(3, WM_ACT_NONE)};
    for (int n = 1; n <= 8; n += 7) {
        tu_gref r1, r2;
        /* the line: its c_hat_0 is not 1, so a point layer fed c_hat shows */
        wm_net *a = tu_gbuild(&r1, "line", WM_COND_MANIFOLD, 4, 0, 0, 0, dense, 4, WM_LOSS_SOFTMAX_CE, 3);
        wm_net *b = tu_gbuild(&r2, "line", WM_COND_MANIFOLD, 4, 0, 0, 0, dense, 4, WM_LOSS_SOFTMAX_CE, 3);
        uint64_t s0 = 9;
        float x[8 * 4], s[16];
        int32_t labels[8];
        tu_fill(x, 32, -1, 1, &s0);
        tu_fill(s, 16, 0, 1, &s0);
        for (int i = 0; i < 8; i++) labels[i] = i % 3;
        wm_batch batch = {n, x, s, labels, NULL};
        wm_opt_config cfg = wm_opt_default(WM_OPT_MOMENTUM);   /* (Adam would hide a scaled gradient) */
        wm_optimizer *oa, *ob;
        WM_OK_OR_FAIL(wm_optimizer_create(&oa, a, &cfg));
        WM_OK_OR_FAIL(wm_optimizer_create(&ob, b, &cfg));
        float la, lb;
        for (int t = 0; t < 10; t++) {
            WM_OK_OR_FAIL(wm_step(oa, &batch, &la));
            WM_OK_OR_FAIL(wm_grad(ob, &batch, &lb));
            WM_OK_OR_FAIL(wm_apply(ob));
        }
        size_t np;
        const float *pa = wm_net_params(a, &np), *pb = wm_net_params(b, &np);
        for (size_t j = 0; j < np; j++)
            if (fabsf(pa[j] - pb[j]) > 1e-5f * (1 + fabsf(pb[j])))
                fail_msg("n=%d: parameter %zu: step %.8g, grad+apply %.8g", n, j, pa[j], pb[j]);
        wm_optimizer_free(oa), wm_optimizer_free(ob);
        wm_net_free(a), wm_net_free(b);
        tu_gref_free(&r1), tu_gref_free(&r2);
    }
}

/* SD with lr = eta moves a point layer's P by -eta dL/dP and a manifold
 * layer's by -eta G^-1 dL/dP (DESIGN.md section 5), read through the public
 * control points. */
static void test_placement_sd_step_is_the_papers(void **st)
{
    (void)st;
    tu_spec spec[] = {DP(4, WM_ACT_TANH), FILM, D(3, WM_ACT_NONE)};
    tu_gref r;
    wm_net *net = tu_gbuild(&r, "line", WM_COND_MANIFOLD, 3, 0, 0, 0, spec, 3, WM_LOSS_MSE, 8);
    float x[5 * 3], s[5], t[5 * 3];
    uint64_t s0 = 2;
    tu_fill(x, 15, -1, 1, &s0);
    tu_fill(s, 5, 0, 1, &s0);
    tu_fill(t, 15, -1, 1, &s0);
    double *gP = calloc(wm_net_n_params(net), sizeof(double));
    /* dL/dP of the reference by central differences, in the library's layout */
    size_t off = 0;
    for (int l = 0; l < 3; l++) {
        if (!r.rows[l]) continue;
        for (int part = 0; part < 2; part++) {
            size_t len = (size_t)r.Kl[l] * (part ? (size_t)r.rows[l] : (size_t)r.rows[l] * r.cols[l]);
            double *P = part ? r.B[l] : r.P[l];
            for (size_t j = 0; j < len; j++) {
                double save = P[j];
                P[j] = save + 1e-6;
                double up = tu_gref_loss(&r, wm_net_manifold(net), 5, x, s, NULL, t, NULL);
                P[j] = save - 1e-6;
                double dn = tu_gref_loss(&r, wm_net_manifold(net), 5, x, s, NULL, t, NULL);
                P[j] = save;
                gP[off++] = (up - dn) / 2e-6;
            }
        }
    }
    assert_int_equal(off, wm_net_n_params(net));
    wm_opt_config cfg = wm_opt_default(WM_OPT_SD);
    cfg.lr = 0.05f;
    wm_optimizer *opt;
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
    wm_batch b = {5, x, s, NULL, t};
    WM_OK_OR_FAIL(wm_step(opt, &b, NULL));
    const double Ginv[4] = {4, -2, -2, 4};            /* the line's */
    off = 0;
    for (int l = 0; l < 3; l++) {
        if (!r.rows[l]) continue;
        int K = r.Kl[l];
        size_t wn = (size_t)r.rows[l] * r.cols[l];
        float *w = malloc(sizeof(float) * wn), *bb = malloc(sizeof(float) * r.rows[l]);
        for (int k = 0; k < K; k++) {
            WM_OK_OR_FAIL(wm_net_control_point(net, l, k, w, bb));
            for (int part = 0; part < 2; part++) {
                size_t len = part ? (size_t)r.rows[l] : wn;
                size_t base = off + (part ? (size_t)K * wn : 0);
                for (size_t j = 0; j < len; j++) {
                    double step = 0;
                    for (int i = 0; i < K; i++)
                        step += (K == 1 ? 1.0 : Ginv[k * 2 + i]) * gP[base + (size_t)i * len + j];
                    double want = (part ? r.B[l][(size_t)k * len + j] : r.P[l][(size_t)k * len + j]) - 0.05 * step;
                    double got = part ? bb[j] : w[j];
                    if (fabs(got - want) > 2e-5 * (1 + fabs(want)))
                        fail_msg("layer %d k %d part %d [%zu]: %.8g, want %.8g", l, k, part, j, got, want);
                }
            }
        }
        off += (size_t)K * (wn + r.rows[l]);
        free(w), free(bb);
    }
    free(gP);
    wm_optimizer_free(opt);
    tu_gref_free(&r);
    wm_net_free(net);
}

static void test_placement_rules(void **st)
{
    (void)st;
    wm_manifold *m = tu_manifold("circle");
    wm_net *net, *cat;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 4, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_create(&cat, m, 4, WM_COND_CONCAT));
    WM_OK_OR_FAIL(wm_net_dense(net, 5, WM_ACT_TANH));
    WM_OK_OR_FAIL(wm_net_film(net));
    WM_OK_OR_FAIL(wm_net_dropout(net, 0.25f));
    WM_OK_OR_FAIL(wm_net_dense(net, 3, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_dense(cat, 3, WM_ACT_NONE));
    size_t all = wm_net_n_params(net);
    assert_int_equal(all, 3 * (5 * 5 + 5 * 2 + 3 * 6));
    EXPECT_STATUS(WM_EINVAL, wm_net_set_layer_manifold(NULL, 0, 0));
    EXPECT_STATUS(WM_EINVAL, wm_net_set_layer_manifold(net, 4, 0));
    EXPECT_STATUS(WM_EINVAL, wm_net_set_layer_manifold(net, -1, 0));
    EXPECT_STATUS(WM_EINVAL, wm_net_set_layer_manifold(net, 0, 2));
    EXPECT_STATUS(WM_EINVAL, wm_net_set_layer_manifold(cat, 0, 0));
    WM_OK_OR_FAIL(wm_net_set_layer_manifold(net, 2, 0));        /* dropout: accepted, ignored */
    WM_OK_OR_FAIL(wm_net_set_layer_manifold(net, 0, 0));
    assert_int_equal(wm_net_n_params(net), all - 2 * 5 * 5);
    WM_OK_OR_FAIL(wm_net_set_layer_manifold(net, 0, 1));
    assert_int_equal(wm_net_n_params(net), all);
    WM_OK_OR_FAIL(wm_net_set_layer_manifold(net, 3, 0));
    WM_OK_OR_FAIL(wm_net_set_layer_manifold(net, 0, 0));
    EXPECT_STATUS(WM_EINVAL, wm_net_dropout(net, 1.0f));
    EXPECT_STATUS(WM_EINVAL, wm_net_dropout(net, -0.1f));
    EXPECT_STATUS(WM_EINVAL, wm_net_dropout(net, NAN));
    EXPECT_STATUS(WM_EINVAL, wm_net_groupnorm(net, 1));          /* not an image */
    EXPECT_STATUS(WM_EINVAL, wm_net_global_avgpool(net));
    wm_net *cat0;                                             /* concat: not as the first layer */
    WM_OK_OR_FAIL(wm_net_create(&cat0, m, 4, WM_COND_CONCAT));
    EXPECT_STATUS(WM_EINVAL, wm_net_film(cat0));
    EXPECT_STATUS(WM_EINVAL, wm_net_layernorm(cat0));
    EXPECT_STATUS(WM_EINVAL, wm_net_dropout(cat0, 0.1f));
    EXPECT_STATUS(WM_EINVAL, wm_net_layernorm(NULL));
    wm_net_free(cat0);
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    EXPECT_STATUS(WM_ESTATE, wm_net_set_layer_manifold(net, 0, 1));
    EXPECT_STATUS(WM_ESTATE, wm_net_layernorm(net));
    int ni, no;
    wm_activation act;
    WM_OK_OR_FAIL(wm_net_layer_info(net, 1, &ni, &no, &act));   /* FiLM: features in and out */
    assert_int_equal(ni, 5);
    assert_int_equal(no, 5);
    float w[25], b[5], s1 = 0.1f, s2 = 0.6f, w2[25], b2[5];
    EXPECT_STATUS(WM_EINVAL, wm_net_control_point(net, 0, 1, w, b));   /* a point layer: k = 0 only */
    WM_OK_OR_FAIL(wm_net_control_point(net, 0, 0, w, b));
    WM_OK_OR_FAIL(wm_net_weights_at(net, 0, &s1, w, b));
    WM_OK_OR_FAIL(wm_net_weights_at(net, 0, &s2, w2, b2));
    assert_memory_equal(w, w2, 20 * sizeof(float));             /* the same at every context (5 x 4) */
    WM_OK_OR_FAIL(wm_net_weights_at(net, 1, &s1, w, b));         /* FiLM starts at gamma 1, beta 0 */
    for (int j = 0; j < 5; j++) {
        assert_true(fabsf(w[j] - 1.0f) < 1e-6f);
        assert_true(fabsf(b[j]) < 1e-6f);
    }
    WM_OK_OR_FAIL(wm_net_control_point(net, 1, 2, w, b));        /* on the manifold: K = 3 */
    EXPECT_STATUS(WM_EINVAL, wm_net_weights_at(net, 2, &s1, w, b));
    char text[2048];
    WM_OK_OR_FAIL(wm_net_summary(net, text, sizeof text));
    assert_non_null(strstr(text, "one point"));
    assert_non_null(strstr(text, "film"));
    assert_non_null(strstr(text, "dropout p = 0.25"));
    wm_net_free(net), wm_net_free(cat);
    wm_manifold_free(m);
}

/* A net with dropout(0) is the net without it, bit for bit: the same
 * parameters after training steps (direct path at batch 1 and 8, gradient
 * path with a volume budget), the same outputs. */
static void test_dropout_zero_is_identity(void **st)
{
    (void)st;
    for (int path = 0; path < 3; path++) {
        wm_manifold *m = tu_manifold("circle");
        wm_net *a, *b;
        WM_OK_OR_FAIL(wm_net_create(&a, m, 6, WM_COND_MANIFOLD));
        WM_OK_OR_FAIL(wm_net_create(&b, m, 6, WM_COND_MANIFOLD));
        WM_OK_OR_FAIL(wm_net_dense(a, 7, WM_ACT_RELU));
        WM_OK_OR_FAIL(wm_net_dense(a, 3, WM_ACT_NONE));
        WM_OK_OR_FAIL(wm_net_dense(b, 7, WM_ACT_RELU));
        WM_OK_OR_FAIL(wm_net_dropout(b, 0.0f));
        WM_OK_OR_FAIL(wm_net_dense(b, 3, WM_ACT_NONE));
        WM_OK_OR_FAIL(wm_net_init(a, 4));
        WM_OK_OR_FAIL(wm_net_init(b, 4));
        size_t na, nb;
        wm_net_params(a, &na);
        wm_net_params(b, &nb);
        assert_int_equal(na, nb);
        assert_memory_equal(wm_net_params(a, NULL), wm_net_params(b, NULL), na * sizeof(float));
        float x[8 * 6], s[8], y1[24], y2[24];
        int32_t labels[8];
        uint64_t s0 = 3;
        tu_fill(x, 48, -1, 1, &s0);
        tu_fill(s, 8, 0, 1, &s0);
        for (int i = 0; i < 8; i++) labels[i] = i % 3;
        int n = path == 0 ? 1 : 8;
        wm_batch batch = {n, x, s, labels, NULL};
        wm_opt_config cfg = wm_opt_default(WM_OPT_MOMENTUM);
        if (path == 2) cfg.volume = 1e-3f;
        wm_optimizer *oa, *ob;
        WM_OK_OR_FAIL(wm_optimizer_create(&oa, a, &cfg));
        WM_OK_OR_FAIL(wm_optimizer_create(&ob, b, &cfg));
        for (int t = 0; t < 5; t++) {
            float la, lb;
            WM_OK_OR_FAIL(wm_step(oa, &batch, &la));
            WM_OK_OR_FAIL(wm_step(ob, &batch, &lb));
            assert_memory_equal(&la, &lb, sizeof la);
        }
        assert_memory_equal(wm_net_params(a, NULL), wm_net_params(b, NULL), na * sizeof(float));
        WM_OK_OR_FAIL(wm_infer(a, x, s, 8, y1));
        WM_OK_OR_FAIL(wm_infer(b, x, s, 8, y2));
        assert_memory_equal(y1, y2, sizeof y1);
        wm_optimizer_free(oa), wm_optimizer_free(ob);
        wm_net_free(a), wm_net_free(b);
        wm_manifold_free(m);
    }
}

/* At p > 0: the mask is a function of (seed, step, sample index): two nets
 * built alike give bit-identical gradients; another step count gives another
 * mask; about p of the elements are dropped; inference is the identity. */
static void test_dropout_mask_reproducible(void **st)
{
    (void)st;
    enum { IN = 2000 };
    wm_manifold *m = tu_manifold("line");
    wm_net *a, *b, *plain;
    wm_net **nets[] = {&a, &b, &plain};
    for (int k = 0; k < 3; k++) {
        WM_OK_OR_FAIL(wm_net_create(nets[k], m, IN, WM_COND_MANIFOLD));
        if (k < 2) WM_OK_OR_FAIL(wm_net_dropout(*nets[k], 0.3f));
        WM_OK_OR_FAIL(wm_net_dense(*nets[k], 2, WM_ACT_NONE));
        WM_OK_OR_FAIL(wm_net_set_loss(*nets[k], WM_LOSS_MSE));
        WM_OK_OR_FAIL(wm_net_init(*nets[k], 21));
    }
    float *x = malloc(sizeof(float) * 2 * IN), s[2] = {0.3f, 0.7f}, t[4] = {1, -1, 0.5f, 0};
    uint64_t s0 = 8;
    tu_fill(x, 2 * IN, 0.5, 1.5, &s0);                     /* no zero inputs */
    wm_batch batch = {2, x, s, NULL, t};
    wm_opt_config cfg = wm_opt_default(WM_OPT_SD);
    wm_optimizer *oa, *ob;
    WM_OK_OR_FAIL(wm_optimizer_create(&oa, a, &cfg));
    WM_OK_OR_FAIL(wm_optimizer_create(&ob, b, &cfg));
    size_t np;
    WM_OK_OR_FAIL(wm_grad(oa, &batch, NULL));
    WM_OK_OR_FAIL(wm_grad(ob, &batch, NULL));
    float *ga = wm_grad_buffer(oa, &np), *gb = wm_grad_buffer(ob, NULL);
    assert_memory_equal(ga, gb, np * sizeof(float));
    float *g1 = malloc(sizeof(float) * np);
    memcpy(g1, ga, np * sizeof(float));
    /* one sample: the W gradient of basis point 0, output 0 is
     * c_0 delta_0 x_drop, zero exactly where an element was dropped */
    wm_batch first = {1, x, s, NULL, t}, second = {1, x, s, NULL, t};
    WM_OK_OR_FAIL(wm_grad(oa, &first, NULL));
    int zeros = 0;
    for (int j = 0; j < IN; j++) zeros += ga[j] == 0.0f;
    if (zeros < 0.25 * IN || zeros > 0.35 * IN)
        fail_msg("%d of %d elements dropped at p = 0.3", zeros, IN);
    float *x2 = malloc(sizeof(float) * 2 * IN);
    memcpy(x2, x, sizeof(float) * IN);
    memcpy(x2 + IN, x, sizeof(float) * IN);                 /* sample 1 = sample 0 */
    float s2[2] = {0.3f, 0.3f}, t2[4] = {1, -1, 1, -1};
    wm_batch twin = {2, x2, s2, NULL, t2};
    WM_OK_OR_FAIL(wm_grad(oa, &twin, NULL));
    WM_OK_OR_FAIL(wm_grad(ob, &first, NULL));
    /* a batch of two identical samples has a gradient equal to sample 0's
     * only if their masks agree: they must not */
    assert_true(memcmp(wm_grad_buffer(oa, NULL), wm_grad_buffer(ob, NULL), np * sizeof(float)) != 0);
    (void)second;
    /* another step count: another mask */
    WM_OK_OR_FAIL(wm_step(ob, &batch, NULL));
    WM_OK_OR_FAIL(wm_net_set_params(b, wm_net_params(a, NULL), np));
    WM_OK_OR_FAIL(wm_grad(ob, &batch, NULL));
    assert_true(memcmp(g1, wm_grad_buffer(ob, NULL), np * sizeof(float)) != 0);
    /* inference: the identity */
    float y1[4], y2[4];
    WM_OK_OR_FAIL(wm_net_set_params(plain, wm_net_params(a, NULL), np));
    WM_OK_OR_FAIL(wm_infer(a, x, s, 2, y1));
    WM_OK_OR_FAIL(wm_infer(plain, x, s, 2, y2));
    assert_memory_equal(y1, y2, sizeof y1);
    free(x), free(x2), free(g1);
    wm_optimizer_free(oa), wm_optimizer_free(ob);
    wm_net_free(a), wm_net_free(b), wm_net_free(plain);
    wm_manifold_free(m);
}

/* The dropout net the seed tests train: 16 inputs on the circle, dense 8
 * relu, dropout p = 0.3, dense 2, MSE; initialised with seed. */
static wm_net *dropout_net(const wm_manifold *m, uint64_t seed)
{
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 16, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(net, 8, WM_ACT_RELU));
    WM_OK_OR_FAIL(wm_net_dropout(net, 0.3f));
    WM_OK_OR_FAIL(wm_net_dense(net, 2, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_set_loss(net, WM_LOSS_MSE));
    WM_OK_OR_FAIL(wm_net_init(net, seed));
    return net;
}

/* Step t's batch of 4 samples (a different one at every step). */
static void dropout_batch(int t, float *x, float *s, float *y)
{
    uint64_t st = 100 + (uint64_t)t;
    tu_fill(x, 4 * 16, -1, 1, &st);
    tu_fill(s, 4, 0, 1, &st);
    tu_fill(y, 4 * 2, -1, 1, &st);
}

/* Steps t0 .. t0 + n - 1 of the schedule with opt. */
static void dropout_steps(wm_optimizer *opt, int t0, int n)
{
    float x[4 * 16], s[4], y[4 * 2];
    for (int t = t0; t < t0 + n; t++) {
        dropout_batch(t, x, s, y);
        wm_batch b = {4, x, s, NULL, y};
        WM_OK_OR_FAIL(wm_step(opt, &b, NULL));
    }
}

/* The offset of the init seed in a version-3 file (docs/model-format.md). */
static size_t seed_offset(const unsigned char *b, size_t len)
{
    wm_layout L;
    assert_int_equal(wl_parse(b, len, &L), 0);
    assert_int_equal(b[4], 3);
    assert_true(L.seed > 0);
    return L.seed;
}

static void fix_crc(unsigned char *b, size_t len)
{
    uint32_t c = wmi_crc32(0, b, len - 4);
    for (int j = 0; j < 4; j++)
        b[len - 4 + j] = (unsigned char)(c >> 8 * j);
}

/* Model format 3 stores the init seed, which selects dropout masks: a
 * dropout net (p = 0.3, momentum) trained k steps, checkpointed, then
 * continued n steps in memory reaches bit for bit the parameters of the
 * same n steps resumed from the checkpoint file (wm_optimizer_load) and from
 * a buffer (wm_net_load_buffer + wm_optimizer_set_state). The same resume
 * from a file whose seed field is patched to 0 differs, so the masks (not
 * only the parameters) are what the seed carries. */
static void test_dropout_resume_from_checkpoint(void **st)
{
    (void)st;
    enum { K_STEPS = 3, N_STEPS = 4 };
    wm_manifold *m = tu_manifold("circle");
    wm_net *net = dropout_net(m, 21);
    wm_opt_config cfg = wm_opt_default(WM_OPT_MOMENTUM);
    cfg.lr = 0.05f;
    wm_optimizer *opt;
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
    dropout_steps(opt, 0, K_STEPS);
    /* the checkpoint: a file, and the buffer + state a transport would send */
    char path[] = "/tmp/wm_test_dropout_ckpt_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    WM_OK_OR_FAIL(wm_optimizer_save(opt, path));
    void *buf;
    size_t len, np, ns = wm_optimizer_state_len(opt);
    WM_OK_OR_FAIL(wm_net_save_buffer(net, &buf, &len));
    unsigned char *bytes = buf;
    size_t at = seed_offset(bytes, len);
    assert_int_equal(bytes[at], 21);                            /* u64 21, little-endian */
    for (int j = 1; j < 8; j++)
        assert_int_equal(bytes[at + j], 0);
    float *state = malloc(sizeof(float) * ns);
    WM_OK_OR_FAIL(wm_optimizer_get_state(opt, state, ns));
    uint64_t steps = wm_optimizer_steps(opt);
    assert_int_equal(steps, K_STEPS);
    /* continue in memory */
    dropout_steps(opt, K_STEPS, N_STEPS);
    const float *want = wm_net_params(net, &np);
    /* resumed from the file */
    wm_optimizer *fo;
    wm_net *fnet;
    WM_OK_OR_FAIL(wm_optimizer_load(&fo, &fnet, path, NULL, NULL));
    unlink(path);
    assert_int_equal(wm_optimizer_steps(fo), K_STEPS);
    dropout_steps(fo, K_STEPS, N_STEPS);
    assert_memory_equal(wm_net_params(fnet, NULL), want, np * sizeof(float));
    /* resumed from the buffer */
    wm_net *bnet, *znet;
    wm_optimizer *bo, *zo;
    WM_OK_OR_FAIL(wm_net_load_buffer(&bnet, buf, len));
    WM_OK_OR_FAIL(wm_optimizer_create(&bo, bnet, &cfg));
    WM_OK_OR_FAIL(wm_optimizer_set_state(bo, state, ns, steps));
    dropout_steps(bo, K_STEPS, N_STEPS);
    assert_memory_equal(wm_net_params(bnet, NULL), want, np * sizeof(float));
    /* the same buffer with seed 0 in the file: other masks, other parameters */
    bytes[at] = 0;
    fix_crc(bytes, len);
    WM_OK_OR_FAIL(wm_net_load_buffer(&znet, buf, len));
    WM_OK_OR_FAIL(wm_optimizer_create(&zo, znet, &cfg));
    WM_OK_OR_FAIL(wm_optimizer_set_state(zo, state, ns, steps));
    dropout_steps(zo, K_STEPS, N_STEPS);
    assert_true(memcmp(wm_net_params(znet, NULL), want, np * sizeof(float)) != 0);
    wm_free(buf);
    free(state);
    wm_optimizer_free(opt), wm_optimizer_free(fo), wm_optimizer_free(bo), wm_optimizer_free(zo);
    wm_net_free(net), wm_net_free(fnet), wm_net_free(bnet), wm_net_free(znet);
    wm_manifold_free(m);
}

/* Files without the seed (versions 1 and 2, written before version 3) load
 * with seed 0: a version-2 file of a dropout net, built by taking the seed's
 * 8 bytes out of a version-3 header, draws the masks of the same net
 * initialised with seed 0, not its own; a clone keeps its seed. The
 * version-2 graph of the fuzz corpus (written by the library before version
 * 3) loads and is saved again as version 3 with seed 0. A version-3 header
 * too short for the seed is WM_EFORMAT naming the field. */
static void test_dropout_seed_v2_file_and_clone(void **st)
{
    (void)st;
    wm_manifold *m = tu_manifold("circle");
    wm_net *a = dropout_net(m, 21), *zero = dropout_net(m, 0), *v2, *clone;
    size_t np, len;
    const float *pa = wm_net_params(a, &np);
    WM_OK_OR_FAIL(wm_net_set_params(zero, pa, np));
    void *buf;
    WM_OK_OR_FAIL(wm_net_save_buffer(a, &buf, &len));
    unsigned char *b = buf;
    size_t at = seed_offset(b, len);
    memmove(b + at, b + at + 8, len - at - 8);                  /* version 2: no seed */
    len -= 8;
    b[4] = 2;
    uint32_t hb = (uint32_t)b[8] | (uint32_t)b[9] << 8 | (uint32_t)b[10] << 16 | (uint32_t)b[11] << 24;
    for (int j = 0; j < 4; j++)                                 /* header_bytes - 8 */
        b[8 + j] = (unsigned char)((hb - 8) >> 8 * j);
    fix_crc(b, len);
    WM_OK_OR_FAIL(wm_net_load_buffer(&v2, buf, len));
    wm_free(buf);
    WM_OK_OR_FAIL(wm_net_clone(&clone, a));
    float x[4 * 16], s[4], t[4 * 2];
    dropout_batch(0, x, s, t);
    wm_batch batch = {4, x, s, NULL, t};
    wm_net *nets[4] = {a, zero, v2, clone};
    float *g[4];
    wm_optimizer *o[4];
    wm_opt_config cfg = wm_opt_default(WM_OPT_SD);
    for (int k = 0; k < 4; k++) {
        WM_OK_OR_FAIL(wm_optimizer_create(&o[k], nets[k], &cfg));
        WM_OK_OR_FAIL(wm_grad(o[k], &batch, NULL));
        g[k] = wm_grad_buffer(o[k], NULL);
    }
    assert_memory_equal(g[2], g[1], np * sizeof(float));       /* version 2: seed 0's masks */
    assert_memory_equal(g[3], g[0], np * sizeof(float));       /* clone: its own seed */
    assert_true(memcmp(g[0], g[1], np * sizeof(float)) != 0); /* seeds 21 and 0 differ */
    for (int k = 0; k < 4; k++)
        wm_optimizer_free(o[k]), wm_net_free(nets[k]);
    wm_manifold_free(m);
    /* the corpus's version-2 graph: loads, saves again as version 3, seed 0 */
    wm_net *old;
    WM_OK_OR_FAIL(wm_net_load(&old, "tests/fuzz/corpus/load/valid-v2-graph.wmn"));
    WM_OK_OR_FAIL(wm_net_save_buffer(old, &buf, &len));
    wm_net_free(old);
    b = buf;
    at = seed_offset(b, len);
    for (int j = 0; j < 8; j++)
        assert_int_equal(b[at + j], 0);
    wm_free(buf);
    const char *bad[] = {"seed-short", "seed-trunc", "as-v2"};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        char name[128];
        snprintf(name, sizeof name, "tests/fuzz/corpus/load/bad-v3-%s.wmn", bad[k]);
        wm_net *net = NULL;
        wm_status got = wm_net_load(&net, name);
        if (got != WM_EFORMAT)
            fail_msg("%s: %s (%s), expected WM_EFORMAT", name, wm_status_str(got), wm_last_error());
        assert_null(net);
        if (k == 0)
            assert_non_null(strstr(wm_last_error(), "truncated init seed"));
    }
}

/* Model format 2: a net of every new kind with point layers saves as
 * version 2 and loads back bit for bit (parameters, placement, outputs,
 * the same bytes when saved again); every corrupted new field of the seed
 * corpus (tests/fuzz/gen_corpus.c) is WM_EFORMAT. */
static void test_format2_round_trip_and_range_checks(void **st)
{
    (void)st;
    wm_net *back;
    const char *valid = "tests/fuzz/corpus/load/valid-v2-graph.wmn";
    WM_OK_OR_FAIL(wm_net_load(&back, valid));
    assert_int_equal(wm_net_n_layers(back), 10);
    EXPECT_STATUS(WM_EINVAL, wm_net_control_point(back, 0, 1, NULL, NULL));   /* a point layer */
    WM_OK_OR_FAIL(wm_net_control_point(back, 1, 2, NULL, NULL));              /* K = 3 */
    char path[] = "/tmp/wm_test_v2_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    WM_OK_OR_FAIL(wm_net_save(back, path));
    wm_net *again;
    WM_OK_OR_FAIL(wm_net_load(&again, path));
    unlink(path);
    size_t n1, n2;
    const float *p1 = wm_net_params(back, &n1), *p2 = wm_net_params(again, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(p1, p2, n1 * sizeof(float));
    float x[3 * 32], s[3] = {0.1f, 0.5f, 0.9f}, y1[9], y2[9];
    uint64_t s0 = 6;
    tu_fill(x, 96, -1, 1, &s0);
    WM_OK_OR_FAIL(wm_infer(back, x, s, 3, y1));
    WM_OK_OR_FAIL(wm_infer(again, x, s, 3, y2));
    assert_memory_equal(y1, y2, sizeof y1);
    wm_net_free(back), wm_net_free(again);
    const char *bad[] = {"placement", "kind", "groups", "groups-zero", "residual-from", "residual-shape",
                         "residual-act", "dropout-one", "dropout-nan", "gap-flat", "point-mismatch", "as-v1"};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        char name[128];
        snprintf(name, sizeof name, "tests/fuzz/corpus/load/bad-v2-%s.wmn", bad[k]);
        wm_net *net = NULL;
        wm_status got = wm_net_load(&net, name);
        if (got != WM_EFORMAT)
            fail_msg("%s: %s (%s), expected WM_EFORMAT", name, wm_status_str(got), wm_last_error());
        assert_null(net);
    }
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
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_groupnorm_and_global_avgpool),
        cmocka_unit_test(test_film),
        cmocka_unit_test(test_mixed_placement),
        cmocka_unit_test(test_placement_sd_step_is_the_papers),
        cmocka_unit_test(test_placement_rules),
        cmocka_unit_test(test_dropout_zero_is_identity),
        cmocka_unit_test(test_dropout_mask_reproducible),
        cmocka_unit_test(test_dropout_resume_from_checkpoint),
        cmocka_unit_test(test_dropout_seed_v2_file_and_clone),
        cmocka_unit_test(test_format2_round_trip_and_range_checks),
    };
    return cmocka_run_group_tests_name("layers", tests, NULL, NULL);
}
