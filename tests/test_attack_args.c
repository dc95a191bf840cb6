/* test_attack_args.c -- every argument of the calls the older suites
 * (test_errors, test_limits, the fuzz harness) reach least: the second-wave
 * layers and controls, the data-parallel state calls, context inference and
 * the summary. Three classes, each over every call:
 *   - every int argument at INT_MIN, -1, 0, 1, 2, INT_MAX;
 *   - every float argument at NaN, +-Inf, -0, the smallest denormal,
 *     +-FLT_MAX, -1;
 *   - NULL for every pointer argument.
 * A call either succeeds with a result in range, or returns the documented
 * status with a message and changes nothing (layers, parameter count,
 * parameters, optimizer state, caller's outputs). */
#include <float.h>
#include <limits.h>

#include "testutil.h"

static const int edge_ints[] = {INT_MIN, -1, 0, 1, 2, INT_MAX};
#define N_INTS ((int)(sizeof edge_ints / sizeof edge_ints[0]))
static const float edge_floats[] = {NAN, INFINITY, -INFINITY, -0.0f, 1e-45f, FLT_MAX, -FLT_MAX, -1.0f};
#define N_FLOATS ((int)(sizeof edge_floats / sizeof edge_floats[0]))

typedef struct {
    int layers;
    size_t params;
} shape;

static shape shape_of(const wm_net *net)
{
    shape s = {wm_net_n_layers(net), wm_net_n_params(net)};
    return s;
}

#define ASSERT_SAME_SHAPE(net, s)                                   \
    do {                                                            \
        assert_int_equal(wm_net_n_layers(net), (s).layers);         \
        assert_int_equal(wm_net_n_params(net), (s).params);         \
    } while (0)

/* A refused call: the status is `want` or one of the documented others
 * (ok_also), and there is a message. */
static void refused(wm_status st, wm_status want, const char *what, int arg)
{
    if (st != want)
        fail_msg("%s at %d: %s, expected %s (%s)", what, arg, wm_status_str(st), wm_status_str(want),
                 wm_last_error());
    assert_true(strlen(wm_last_error()) > 0);
}

/* An image net not yet initialised: 4 x 4 x 4 input, a conv of 4 channels. */
static wm_net *image_net(const char *mname, wm_conditioning cond)
{
    wm_manifold *m = tu_manifold(mname);
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 64, cond));
    wm_manifold_free(m);
    WM_OK_OR_FAIL(wm_net_input_shape(net, 4, 4, 4));
    WM_OK_OR_FAIL(wm_net_conv2d(net, 4, 3, 1, 1, WM_ACT_RELU));
    return net;
}

/* ---- ints ------------------------------------------------------------------------ */

static void test_int_edges_of_layer_calls(void **state)
{
    (void)state;
    for (int cond = 0; cond < 2; cond++)
        for (int e = 0; e < N_INTS; e++) {
            int v = edge_ints[e];
            wm_net *net = image_net("torus", (wm_conditioning)cond);
            shape before = shape_of(net);
            wm_status st = wm_net_groupnorm(net, v);      /* 4 channels: 1, 2 divide */
            if (v == 1 || v == 2)
                WM_OK_OR_FAIL(st);
            else {
                refused(st, WM_EINVAL, "wm_net_groupnorm", v);
                ASSERT_SAME_SHAPE(net, before);
            }
            before = shape_of(net);
            st = wm_net_residual(net, v, WM_ACT_NONE);    /* layers 0 (conv) and maybe 1 exist */
            if (v == 0 || (v == 1 && before.layers == 2))
                WM_OK_OR_FAIL(st);
            else if (v != -1) {                            /* -1: the input (64 features): fits */
                refused(st, WM_EINVAL, "wm_net_residual", v);
                ASSERT_SAME_SHAPE(net, before);
            }
            before = shape_of(net);
            st = wm_net_residual(net, 0, (wm_activation)v);
            if (v == 0 || v == 1 || v == 2)
                WM_OK_OR_FAIL(st);
            else {
                refused(st, WM_EINVAL, "wm_net_residual act", v);
                ASSERT_SAME_SHAPE(net, before);
            }
            before = shape_of(net);
            st = wm_net_set_layer_manifold(net, v, 0);
            if (cond == WM_COND_CONCAT || v < 0 || v >= before.layers)
                refused(st, WM_EINVAL, "wm_net_set_layer_manifold layer", v);
            else
                WM_OK_OR_FAIL(st);
            st = wm_net_set_layer_manifold(net, 0, v);
            if (cond == WM_COND_CONCAT || (v != 0 && v != 1)) {
                refused(st, WM_EINVAL, "wm_net_set_layer_manifold on", v);
                ASSERT_SAME_SHAPE(net, before);
            } else
                WM_OK_OR_FAIL(st);                          /* on = 0: fewer parameters */
            before = shape_of(net);
            st = wm_net_set_conv_strategy(net, (wm_conv_strategy)v);
            if (v < 0 || v > 2)
                refused(st, WM_EINVAL, "wm_net_set_conv_strategy", v);
            st = wm_net_set_loss(net, (wm_loss)v);
            if (v < 0 || v > 1)
                refused(st, WM_EINVAL, "wm_net_set_loss", v);
            float lo = -7, hi = -7;
            st = wm_net_set_context_range(net, v, 0.0f, 2.0f);
            if (v < 0 || v > 1)
                refused(st, WM_EINVAL, "wm_net_set_context_range", v);
            st = wm_net_context_range(net, v, &lo, &hi);
            if (v < 0 || v > 1) {
                refused(st, WM_EINVAL, "wm_net_context_range", v);
                assert_true(lo == -7 && hi == -7);
            }
            int ni = -7;
            st = wm_net_layer_info(net, v, &ni, NULL, NULL);
            if (v < 0 || v >= before.layers) {
                refused(st, WM_EINVAL, "wm_net_layer_info", v);
                assert_int_equal(ni, -7);
            }
            ASSERT_SAME_SHAPE(net, before);
            wm_net_free(net);
        }
}

/* Every int of the calls on an initialised net: layer and control-point
 * indices, n of the batch calls and workspace, shared; the net unchanged. */
static void test_int_edges_of_net_queries(void **state)
{
    (void)state;
    wm_net *net = image_net("circle", WM_COND_MANIFOLD);
    WM_OK_OR_FAIL(wm_net_maxpool(net, 2));
    WM_OK_OR_FAIL(wm_net_dense(net, 3, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
    wm_optimizer *opt;
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
    float *snap = tu_snapshot(net);
    float x[64 * 2] = {0}, s[2] = {0.1f, 0.6f}, w[4 * 36 + 64], b[8], y[8], so[2], lo[2];
    int32_t labels[2] = {0, 2};
    for (int e = 0; e < N_INTS; e++) {
        int v = edge_ints[e];
        wm_status st;
        w[0] = b[0] = -7.0f;
        if ((st = wm_net_weights_at(net, v, s, w, b)) != WM_OK) {
            refused(st, WM_EINVAL, "wm_net_weights_at", v);
            assert_true(w[0] == -7.0f && b[0] == -7.0f);
        } else
            assert_true(v == 0 || v == 2);
        for (int k = 0; k < N_INTS; k++) {
            int kk = edge_ints[k];
            st = wm_net_control_point(net, v, kk, w, b);
            int exists = (v == 0 || v == 2) && kk >= 0 && kk < 3;
            if (!exists) {
                refused(st, WM_EINVAL, "wm_net_control_point", v);
                refused(wm_net_set_control_point(net, v, kk, NULL, NULL), WM_EINVAL,
                        "wm_net_set_control_point", v);
            } else
                WM_OK_OR_FAIL(st);
        }
        /* n of every batch call */
        wm_batch batch = {v, x, s, labels, NULL};
        float loss = -7, acc = -7;
        if (v < 1) {
            refused(wm_step(opt, &batch, &loss), WM_EINVAL, "wm_step n", v);
            refused(wm_grad(opt, &batch, &loss), WM_EINVAL, "wm_grad n", v);
            refused(wm_evaluate(net, &batch, &loss, &acc), WM_EINVAL, "wm_evaluate n", v);
            refused(wm_infer_context(net, x, labels, v, so), WM_EINVAL, "wm_infer_context n", v);
            refused(wm_infer_context_batch(net, &batch, 1, so, lo), WM_EINVAL, "wm_infer_context_batch n", v);
            assert_true(loss == -7 && acc == -7);
            if (v < 0) {
                refused(wm_grad_notify(opt, &batch, &loss, NULL, NULL), WM_EINVAL, "wm_grad_notify n", v);
                refused(wm_infer(net, x, s, v, y), WM_EINVAL, "wm_infer n", v);
                assert_int_equal(wm_infer_workspace_size(net, v), 0);
            }
        }
        batch.n = 2;
        if (v != 0 && v != 1) {
            so[0] = -7.0f;
            refused(wm_infer_context_batch(net, &batch, v, so, NULL), WM_EINVAL, "shared", v);
            assert_true(so[0] == -7.0f);
        }
        tu_assert_unchanged(net, snap);
        assert_int_equal(wm_optimizer_steps(opt), 0);
    }
    free(snap);
    wm_optimizer_free(opt);
    wm_net_free(net);
}

/* Manifold constructors at every int: refused with *out untouched, or a
 * manifold whose sizes match the arguments. */
static void test_int_edges_of_manifolds(void **state)
{
    (void)state;
    wm_manifold *const sentinel = (wm_manifold *)&edge_ints;   /* never dereferenced */
    for (int e = 0; e < N_INTS; e++) {
        int v = edge_ints[e];
        wm_manifold *m = sentinel;
        wm_status st = wm_manifold_fourier(&m, v);
        if (v >= 1 && v <= 512) {
            WM_OK_OR_FAIL(st);
            assert_int_equal(wm_manifold_n_basis(m), 2 * v + 1);
            wm_manifold_free(m);
        } else {
            refused(st, WM_EINVAL, "wm_manifold_fourier", v);
            assert_true(m == sentinel);
        }
        for (int f = 0; f < N_INTS; f++)
            for (int per = 0; per < N_INTS; per += N_INTS - 1) {
                int n = v, p = edge_ints[f];
                m = sentinel;
                st = wm_manifold_bspline(&m, n, p, edge_ints[per]);
                if (p >= 1 && p <= 16 && n >= p + 1 && n <= 1024) {
                    WM_OK_OR_FAIL(st);
                    assert_int_equal(wm_manifold_n_basis(m), n);
                    wm_manifold_free(m);
                } else if (st != WM_OK) {
                    refused(st, WM_EINVAL, "wm_manifold_bspline", n);
                    assert_true(m == sentinel);
                } else
                    fail_msg("wm_manifold_bspline(%d, %d) accepted", n, p);
            }
        m = tu_manifold("torus");
        int per = wm_manifold_periodic(m, v);
        assert_int_equal(per, v == 0 || v == 1 ? 1 : -1);
        wm_manifold_free(m);
    }
}

/* ---- floats ---------------------------------------------------------------------- */

/* Float arguments of the layer and range calls. */
static void test_float_edges_of_net_calls(void **state)
{
    (void)state;
    for (int e = 0; e < N_FLOATS; e++) {
        float v = edge_floats[e];
        wm_net *net = image_net("line", WM_COND_MANIFOLD);
        shape before = shape_of(net);
        wm_status st = wm_net_dropout(net, v);
        if (v >= 0 && v < 1)
            WM_OK_OR_FAIL(st);                             /* -0, the denormal */
        else {
            refused(st, WM_EINVAL, "wm_net_dropout", e);
            ASSERT_SAME_SHAPE(net, before);
        }
        for (int f = 0; f < N_FLOATS; f++) {
            float lo = -7, hi = -7, a = v, bnd = edge_floats[f];
            st = wm_net_set_context_range(net, 0, a, bnd);
            WM_OK_OR_FAIL(wm_net_context_range(net, 0, &lo, &hi));
            if (st != WM_OK) {
                refused(st, WM_EINVAL, "wm_net_set_context_range", e * 100 + f);
                continue;
            }
            assert_true(isfinite(lo) && isfinite(hi) && lo < hi && isfinite(hi - lo));
            WM_OK_OR_FAIL(wm_net_set_context_range(net, 0, 0.0f, 1.0f));
        }
        wm_net_free(net);
    }
}

/* Every field of wm_opt_config and both controls at every float edge, for
 * every kind: refused at creation, or a run that stays honest (each step OK
 * with finite parameters, or WM_ENUMERIC with nothing changed). */
static void test_float_edges_of_optimizer_settings(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("circle");
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 3, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(net, 5, WM_ACT_RELU));
    WM_OK_OR_FAIL(wm_net_dense(net, 3, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    float *start = tu_snapshot(net), x[12], s[4];
    int32_t labels[4] = {0, 1, 2, 1};
    uint64_t rng = 8;
    tu_fill(x, 12, -1, 1, &rng);
    tu_fill(s, 4, 0, 1, &rng);
    wm_batch batch = {4, x, s, labels, NULL};
    size_t np = wm_net_n_params(net);
    for (int kind = 0; kind < 3; kind++)
        for (int field = 0; field < 9; field++)
            for (int e = 0; e < N_FLOATS; e++) {
                float v = edge_floats[e];
                WM_OK_OR_FAIL(wm_net_set_params(net, start, np));
                wm_opt_config c = wm_opt_default((wm_opt_kind)kind);
                switch (field) {
                case 0: c.lr = v; break;
                case 1: c.volume = v; break;
                case 2: c.momentum = v; break;
                case 3: c.beta1 = v; break;
                case 4: c.beta2 = v; break;
                case 5: c.eps = v; break;
                case 6: c.weight_decay = v; break;
                default: break;                 /* 7: set_lr, 8: set_clip_norm */
                }
                wm_optimizer *opt = NULL;
                wm_status st = wm_optimizer_create(&opt, net, &c);
                if (st != WM_OK) {
                    refused(st, WM_EINVAL, "wm_optimizer_create", field * 100 + e);
                    assert_null(opt);
                    continue;
                }
                if (field >= 7) {
                    float lr0 = wm_optimizer_lr(opt);
                    st = field == 7 ? wm_optimizer_set_lr(opt, v) : wm_optimizer_set_clip_norm(opt, v);
                    if (!(isfinite(v) && v >= 0)) {
                        refused(st, WM_EINVAL, field == 7 ? "set_lr" : "set_clip_norm", e);
                        assert_true(wm_optimizer_lr(opt) == lr0);
                    } else
                        WM_OK_OR_FAIL(st);
                }
                for (int i = 0; i < 3; i++) {
                    float *snap = tu_snapshot(net);
                    st = wm_step(opt, &batch, NULL);
                    size_t len;
                    const float *q = wm_net_params(net, &len);
                    if (st == WM_OK) {
                        for (size_t j = 0; j < len; j++)
                            if (!isfinite(q[j]))
                                fail_msg("kind %d field %d value %g: WM_OK and q[%zu] = %g", kind, field,
                                         (double)v, j, (double)q[j]);
                    } else {
                        refused(st, WM_ENUMERIC, "wm_step", field * 100 + e);
                        tu_assert_unchanged(net, snap);
                    }
                    free(snap);
                }
                wm_optimizer_free(opt);
            }
    free(start);
    wm_net_free(net);
    wm_manifold_free(m);
}

/* Labels and targets at their edges in every call that reads them. */
static void test_label_and_target_edges(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("line");
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 2, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(net, 3, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    wm_opt_config cfg = wm_opt_default(WM_OPT_MOMENTUM);
    wm_optimizer *opt;
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
    float x[6] = {0.1f, 0.2f, 0.3f, -0.4f, 0.5f, 0.0f}, s[3] = {0.1f, 0.5f, 0.9f}, t[9] = {0};
    const int32_t bad_labels[] = {INT_MIN, -1, 3, INT_MAX};
    float *snap = tu_snapshot(net);
    for (int e = 0; e < 4; e++) {
        int32_t labels[3] = {0, 1, 2};
        labels[2] = bad_labels[e];
        wm_batch b = {3, x, s, labels, NULL};
        float loss = -7, acc = -7, so[3] = {-7, -7, -7};
        refused(wm_step(opt, &b, &loss), WM_EINVAL, "wm_step label", labels[2]);
        assert_non_null(strstr(wm_last_error(), "labels[2]"));
        refused(wm_grad(opt, &b, &loss), WM_EINVAL, "wm_grad label", labels[2]);
        refused(wm_grad_notify(opt, &b, &loss, NULL, NULL), WM_EINVAL, "wm_grad_notify label", labels[2]);
        refused(wm_evaluate(net, &b, &loss, &acc), WM_EINVAL, "wm_evaluate label", labels[2]);
        refused(wm_infer_context(net, x, labels, 3, so), WM_EINVAL, "wm_infer_context label", labels[2]);
        refused(wm_infer_context_batch(net, &b, 0, so, NULL), WM_EINVAL, "context batch label", labels[2]);
        assert_true(loss == -7 && acc == -7 && so[0] == -7 && so[2] == -7);
    }
    wm_optimizer_free(opt);
    wm_net_free(net);
    /* an MSE net: targets at every float edge */
    WM_OK_OR_FAIL(wm_net_create(&net, m, 2, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(net, 3, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_set_loss(net, WM_LOSS_MSE));
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
    free(snap);
    snap = tu_snapshot(net);
    for (int e = 0; e < N_FLOATS; e++) {
        float v = edge_floats[e];
        t[7] = v;
        wm_batch b = {3, x, s, NULL, t};
        float loss = -7, so[3] = {-7, -7, -7};
        wm_status st = wm_step(opt, &b, &loss);
        if (!isfinite(v)) {
            refused(st, WM_EINVAL, "wm_step target", e);
            refused(wm_infer_context_batch(net, &b, 1, so, NULL), WM_EINVAL, "context target", e);
            assert_true(so[0] == -7);
        } else if (st != WM_OK) {
            refused(st, WM_ENUMERIC, "wm_step target", e);     /* FLT_MAX: (y - t)^2 overflows */
            tu_assert_unchanged(net, snap);
            assert_true(loss == -7);
        } else {
            assert_true(isfinite(loss));
            free(snap);
            snap = tu_snapshot(net);
        }
    }
    t[7] = 0;
    free(snap);
    wm_optimizer_free(opt);
    wm_net_free(net);
    wm_manifold_free(m);
}

/* ---- NULL for every pointer argument ---------------------------------------------- */

static void test_null_for_every_pointer(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("line"), *mo = NULL;
    wm_net *net, *no = NULL;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 2, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(net, 3, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
    wm_optimizer *opt, *oo = NULL;
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
    float x[2] = {0.1f, 0.2f}, s = 0.5f, y[3], w[6], b[3], st_buf[64];
    int32_t label = 1;
    wm_batch batch = {1, x, &s, &label, NULL};
    size_t len = 0;
    void *buf = NULL;
    char text[64];
    float *snap = tu_snapshot(net);
    double G[4];

    /* manifolds */
    EXPECT_STATUS(WM_EINVAL, wm_manifold_point(NULL));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_line(NULL));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_circle(NULL));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_fourier(NULL, 2));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_bspline(NULL, 4, 2, 0));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_product(NULL, m, m));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_product(&mo, NULL, m));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_product(&mo, m, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_custom(NULL, 1, 2, NULL, NULL, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_custom(&mo, 1, 2, NULL, NULL, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_clone(NULL, m));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_clone(&mo, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_basis(NULL, &s, y));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_basis(m, NULL, y));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_basis(m, &s, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_gram(NULL, G));
    EXPECT_STATUS(WM_EINVAL, wm_manifold_gram(m, NULL));
    assert_null(mo);
    assert_int_equal(wm_manifold_dim(NULL), -1);
    assert_int_equal(wm_manifold_n_basis(NULL), -1);
    assert_int_equal(wm_manifold_periodic(NULL, 0), -1);
    wm_manifold_free(NULL);

    /* building */
    EXPECT_STATUS(WM_EINVAL, wm_net_input_shape(NULL, 1, 1, 2));
    EXPECT_STATUS(WM_EINVAL, wm_net_conv2d(NULL, 1, 1, 1, 0, WM_ACT_NONE));
    EXPECT_STATUS(WM_EINVAL, wm_net_maxpool(NULL, 2));
    EXPECT_STATUS(WM_EINVAL, wm_net_avgpool(NULL, 2));
    EXPECT_STATUS(WM_EINVAL, wm_net_residual(NULL, -1, WM_ACT_NONE));
    EXPECT_STATUS(WM_EINVAL, wm_net_layernorm(NULL));
    EXPECT_STATUS(WM_EINVAL, wm_net_groupnorm(NULL, 1));
    EXPECT_STATUS(WM_EINVAL, wm_net_film(NULL));
    EXPECT_STATUS(WM_EINVAL, wm_net_dropout(NULL, 0.5f));
    EXPECT_STATUS(WM_EINVAL, wm_net_global_avgpool(NULL));
    EXPECT_STATUS(WM_EINVAL, wm_net_set_layer_manifold(NULL, 0, 0));
    EXPECT_STATUS(WM_EINVAL, wm_net_set_conv_strategy(NULL, WM_CONV_AUTO));
    EXPECT_STATUS(WM_EINVAL, wm_net_set_loss(NULL, WM_LOSS_MSE));
    EXPECT_STATUS(WM_EINVAL, wm_net_init(NULL, 1));
    EXPECT_STATUS(WM_EINVAL, wm_net_set_context_range(NULL, 0, 0, 1));
    EXPECT_STATUS(WM_EINVAL, wm_net_context_range(NULL, 0, &s, &s));
    WM_OK_OR_FAIL(wm_net_context_range(net, 0, NULL, NULL));           /* both outputs optional */
    assert_int_equal(wm_net_n_inputs(NULL), -1);
    assert_int_equal(wm_net_n_outputs(NULL), -1);
    assert_int_equal(wm_net_n_layers(NULL), -1);
    assert_int_equal(wm_net_n_params(NULL), 0);
    assert_int_equal(wm_net_context_dim(NULL), -1);
    assert_null(wm_net_manifold(NULL));
    assert_null(wm_net_params(NULL, &len));
    EXPECT_STATUS(WM_EINVAL, wm_net_layer_info(NULL, 0, NULL, NULL, NULL));
    WM_OK_OR_FAIL(wm_net_layer_info(net, 0, NULL, NULL, NULL));

    /* queries and parameters */
    assert_int_equal(wm_infer_workspace_size(NULL, 1), 0);
    EXPECT_STATUS(WM_EINVAL, wm_infer_ws(NULL, x, &s, 1, y, w, sizeof w));
    EXPECT_STATUS(WM_EINVAL, wm_infer_ws(net, x, &s, 1, y, NULL, 4096));
    EXPECT_STATUS(WM_EINVAL, wm_infer_ws(net, NULL, &s, 1, y, w, sizeof w));
    EXPECT_STATUS(WM_EINVAL, wm_net_weights_at(NULL, 0, &s, w, b));
    WM_OK_OR_FAIL(wm_net_weights_at(net, 0, &s, NULL, NULL));          /* outputs optional */
    EXPECT_STATUS(WM_EINVAL, wm_net_control_point(NULL, 0, 0, w, b));
    WM_OK_OR_FAIL(wm_net_control_point(net, 0, 0, NULL, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_net_set_control_point(NULL, 0, 0, w, b));
    WM_OK_OR_FAIL(wm_net_set_control_point(net, 0, 0, NULL, NULL));    /* keeps both parts */
    EXPECT_STATUS(WM_EINVAL, wm_net_set_params(NULL, snap, wm_net_n_params(net)));
    EXPECT_STATUS(WM_EINVAL, wm_net_set_params(net, NULL, wm_net_n_params(net)));
    EXPECT_STATUS(WM_EINVAL, wm_net_clone(NULL, net));
    EXPECT_STATUS(WM_EINVAL, wm_net_clone(&no, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_net_summary(NULL, text, sizeof text));
    EXPECT_STATUS(WM_EINVAL, wm_net_summary(net, NULL, 5));
    WM_OK_OR_FAIL(wm_net_summary(net, NULL, 0));
    EXPECT_STATUS(WM_EINVAL, wm_net_save(NULL, "x.wmn"));
    EXPECT_STATUS(WM_EINVAL, wm_net_save(net, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_net_load(NULL, "x.wmn"));
    EXPECT_STATUS(WM_EINVAL, wm_net_load(&no, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_net_load_custom(&no, NULL, NULL, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_net_save_buffer(NULL, &buf, &len));
    EXPECT_STATUS(WM_EINVAL, wm_net_save_buffer(net, NULL, &len));
    EXPECT_STATUS(WM_EINVAL, wm_net_save_buffer(net, &buf, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_net_load_buffer(NULL, x, sizeof x));
    EXPECT_STATUS(WM_EINVAL, wm_net_load_buffer(&no, NULL, 100));
    EXPECT_STATUS(WM_EINVAL, wm_net_load_buffer_custom(&no, x, sizeof x, NULL, NULL));
    assert_null(no);
    assert_null(buf);
    wm_free(NULL);
    wm_net_free(NULL);

    /* training */
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_create(NULL, net, &cfg));
    EXPECT_STATUS(WM_EINVAL, wm_grad(NULL, &batch, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_grad(opt, NULL, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_grad_notify(NULL, &batch, NULL, NULL, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_grad_notify(opt, NULL, NULL, NULL, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_grad_zero(NULL));
    EXPECT_STATUS(WM_EINVAL, wm_evaluate(NULL, &batch, NULL, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_evaluate(net, NULL, NULL, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_set_lr(NULL, 0.1f));
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_set_clip_norm(NULL, 1.0f));
    assert_true(isnan(wm_optimizer_lr(NULL)));
    assert_int_equal(wm_optimizer_steps(NULL), 0);
    assert_null(wm_optimizer_net(NULL));
    assert_int_equal(wm_optimizer_state_len(NULL), 0);
    size_t sl = wm_optimizer_state_len(opt);
    assert_true(sl <= sizeof st_buf / sizeof st_buf[0]);
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_get_state(NULL, st_buf, sl));
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_get_state(opt, NULL, sl));
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_set_state(NULL, st_buf, sl, 1));
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_set_state(opt, NULL, sl, 1));
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_save(NULL, "x.wmn"));
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_save(opt, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_load(NULL, &no, "x.wmn", NULL, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_load(&oo, NULL, "x.wmn", NULL, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_load(&oo, &no, NULL, NULL, NULL));
    assert_null(oo);
    assert_null(no);
    wm_optimizer_free(NULL);

    /* context inference */
    EXPECT_STATUS(WM_EINVAL, wm_infer_context(NULL, x, &label, 1, &s));
    EXPECT_STATUS(WM_EINVAL, wm_infer_context(net, NULL, &label, 1, &s));
    EXPECT_STATUS(WM_EINVAL, wm_infer_context(net, x, &label, 1, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_infer_context_batch(NULL, &batch, 1, &s, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_infer_context_batch(net, NULL, 1, &s, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_infer_context_batch(net, &batch, 1, NULL, NULL));
    wm_batch nox = batch;
    nox.x = NULL;
    EXPECT_STATUS(WM_EINVAL, wm_infer_context_batch(net, &nox, 1, &s, NULL));

    /* errors: unknown statuses and NULL messages */
    assert_string_equal(wm_status_str((wm_status)-1), "unknown status");
    assert_string_equal(wm_status_str((wm_status)INT_MAX), "unknown status");
    assert_true(wm_error_set((wm_status)INT_MIN, NULL) == (wm_status)INT_MIN);
    assert_string_equal(wm_last_error(), "");

    tu_assert_unchanged(net, snap);
    assert_int_equal(wm_optimizer_steps(opt), 0);
    free(snap);
    wm_optimizer_free(opt);
    wm_net_free(net);
    wm_manifold_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_int_edges_of_layer_calls),
        cmocka_unit_test(test_int_edges_of_net_queries),
        cmocka_unit_test(test_int_edges_of_manifolds),
        cmocka_unit_test(test_float_edges_of_net_calls),
        cmocka_unit_test(test_float_edges_of_optimizer_settings),
        cmocka_unit_test(test_label_and_target_edges),
        cmocka_unit_test(test_null_for_every_pointer),
    };
    return cmocka_run_group_tests_name("attack_args", tests, NULL, NULL);
}
