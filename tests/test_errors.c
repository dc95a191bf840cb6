/* test_errors.c -- every rejected input: the right status, a message a user
 * can act on, and the net (and optimizer) exactly as before. */
#include "testutil.h"

enum { IN = 4, N = 20, CLASSES = 10 };

typedef struct {
    wm_manifold *m;
    wm_net *net;
    wm_optimizer *opt;
    float x[N * IN], s[N], targets[N * CLASSES];
    int32_t labels[N];
} fx;

static fx *make(const char *mname, wm_loss loss)
{
    fx *f = calloc(1, sizeof *f);
    f->m = tu_manifold(mname);
    WM_OK_OR_FAIL(wm_net_create(&f->net, f->m, IN, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(f->net, 6, WM_ACT_RELU));
    WM_OK_OR_FAIL(wm_net_dense(f->net, CLASSES, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_set_loss(f->net, loss));
    WM_OK_OR_FAIL(wm_net_init(f->net, 1));
    wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
    WM_OK_OR_FAIL(wm_optimizer_create(&f->opt, f->net, &cfg));
    uint64_t st = 2;
    tu_fill(f->x, N * IN, -1, 1, &st);
    tu_fill(f->s, N, 0, 1, &st);
    tu_fill(f->targets, N * CLASSES, 0, 1, &st);
    for (int i = 0; i < N; i++) f->labels[i] = i % CLASSES;
    return f;
}

static void destroy(fx *f)
{
    wm_optimizer_free(f->opt);
    wm_net_free(f->net);
    wm_manifold_free(f->m);
    free(f);
}

/* Expect every training/evaluation entry point to reject b with `want`,
 * mention `needle` in the message, and change nothing. */
static void expect_batch_rejected(fx *f, const wm_batch *b, wm_status want, const char *needle)
{
    float *snap = tu_snapshot(f->net), loss = -1, acc = -1;
    uint64_t steps = wm_optimizer_steps(f->opt);
    EXPECT_STATUS(want, wm_step(f->opt, b, &loss));
    if (needle && !strstr(wm_last_error(), needle))
        fail_msg("message '%s' does not mention '%s'", wm_last_error(), needle);
    EXPECT_STATUS(want, wm_grad(f->opt, b, &loss));
    EXPECT_STATUS(want, wm_evaluate(f->net, b, &loss, &acc));
    assert_true(loss == -1 && acc == -1);         /* outputs untouched too */
    tu_assert_unchanged(f->net, snap);
    assert_int_equal(wm_optimizer_steps(f->opt), steps);
    free(snap);
}

static void test_bad_batches(void **state)
{
    (void)state;
    fx *f = make("line", WM_LOSS_SOFTMAX_CE);
    wm_batch good = {N, f->x, f->s, f->labels, NULL}, b;
    WM_OK_OR_FAIL(wm_step(f->opt, &good, NULL));   /* the fixture itself is fine */

    expect_batch_rejected(f, NULL, WM_EINVAL, "batch is NULL");
    b = good, b.n = 0;
    expect_batch_rejected(f, &b, WM_EINVAL, "at least one sample");
    b = good, b.n = -3;
    expect_batch_rejected(f, &b, WM_EINVAL, "batch.n");
    b = good, b.x = NULL;
    expect_batch_rejected(f, &b, WM_EINVAL, "batch.x");
    b = good, b.s = NULL;
    expect_batch_rejected(f, &b, WM_EINVAL, "batch.s");
    b = good, b.labels = NULL;
    expect_batch_rejected(f, &b, WM_EINVAL, "labels");

    f->labels[17] = 12;
    expect_batch_rejected(f, &good, WM_EINVAL, "labels[17] = 12 is out of range for 10 classes");
    f->labels[17] = -1;
    expect_batch_rejected(f, &good, WM_EINVAL, "labels[17] = -1");
    f->labels[17] = 7;

    f->x[5 * IN + 2] = NAN;
    expect_batch_rejected(f, &good, WM_EINVAL, "x[5][2] is not finite");
    f->x[5 * IN + 2] = INFINITY;
    expect_batch_rejected(f, &good, WM_EINVAL, "x[5][2]");
    f->x[5 * IN + 2] = 0.5f;

    f->s[9] = 1.5f;
    expect_batch_rejected(f, &good, WM_EINVAL, "outside [0,1]");
    f->s[9] = -0.01f;
    expect_batch_rejected(f, &good, WM_EINVAL, "s[9][0]");
    f->s[9] = NAN;
    expect_batch_rejected(f, &good, WM_EINVAL, "not finite");
    f->s[9] = 1.0f;                                 /* both ends of [0,1] are valid */
    WM_OK_OR_FAIL(wm_step(f->opt, &good, NULL));
    destroy(f);
}

static void test_bad_mse_batches(void **state)
{
    (void)state;
    fx *f = make("circle", WM_LOSS_MSE);
    wm_batch good = {N, f->x, f->s, NULL, f->targets}, b;
    WM_OK_OR_FAIL(wm_step(f->opt, &good, NULL));
    b = good, b.targets = NULL;
    expect_batch_rejected(f, &b, WM_EINVAL, "targets");
    f->targets[33] = NAN;
    expect_batch_rejected(f, &good, WM_EINVAL, "targets[3][3]");
    f->targets[33] = 0;
    f->s[4] = INFINITY;                             /* periodic, but not finite */
    expect_batch_rejected(f, &good, WM_EINVAL, "not finite");
    f->s[4] = 7.25f;                                /* periodic contexts wrap */
    WM_OK_OR_FAIL(wm_step(f->opt, &good, NULL));
    destroy(f);
}

static void test_periodic_contexts_wrap(void **state)
{
    (void)state;
    fx *f = make("circle", WM_LOSS_SOFTMAX_CE);
    float a = 0.25f, b = 1.25f, c = -0.75f, ya[CLASSES], yb[CLASSES], yc[CLASSES];
    WM_OK_OR_FAIL(wm_infer(f->net, f->x, &a, 1, ya));
    WM_OK_OR_FAIL(wm_infer(f->net, f->x, &b, 1, yb));
    WM_OK_OR_FAIL(wm_infer(f->net, f->x, &c, 1, yc));
    for (int j = 0; j < CLASSES; j++) {
        assert_true(fabs(ya[j] - yb[j]) < 1e-5);
        assert_true(fabs(ya[j] - yc[j]) < 1e-5);
    }
    destroy(f);
}

static void test_divergence_is_enumeric_and_harmless(void **state)
{
    (void)state;
    fx *f = make("line", WM_LOSS_MSE);
    wm_batch good = {N, f->x, f->s, NULL, f->targets};
    wm_optimizer *opt;
    wm_opt_config cfg = wm_opt_default(WM_OPT_SD);
    float *snap;
    float lrs[2] = {1e30f, 50.0f}, *start = tu_snapshot(f->net);
    for (int r = 0; r < 2; r++) {
        WM_OK_OR_FAIL(wm_net_set_params(f->net, start, wm_net_n_params(f->net)));
        /* a huge or merely too-large rate: the loss grows until a step fails;
         * the failed step leaves the last good parameters in place */
        cfg.lr = lrs[r];
        WM_OK_OR_FAIL(wm_optimizer_create(&opt, f->net, &cfg));
        wm_status st = WM_OK;
        int steps = 0;
        for (; steps < 1000 && st == WM_OK; steps++) {
            snap = tu_snapshot(f->net);
            st = wm_step(opt, &good, NULL);
            if (st == WM_OK)
                free(snap);
        }
        assert_int_equal(st, WM_ENUMERIC);
        tu_assert_unchanged(f->net, snap);
        float loss = -7.0f;
        EXPECT_STATUS(WM_ENUMERIC, wm_step(opt, &good, &loss));   /* stays refused */
        assert_true(loss == -7.0f);                               /* and writes no output */
        free(snap);
        size_t len;
        const float *q = wm_net_params(f->net, &len);
        for (size_t j = 0; j < len; j++) assert_true(isfinite(q[j]));
        print_message("lr %g diverged after %d steps\n", lrs[r], steps);
        wm_optimizer_free(opt);
    }
    free(start);
    destroy(f);
}

static void test_bad_optimizer_configs(void **state)
{
    (void)state;
    fx *f = make("line", WM_LOSS_SOFTMAX_CE);
    wm_optimizer *o = NULL;
    wm_opt_config c;
    c = wm_opt_default(WM_OPT_SD), c.lr = 0;
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_create(&o, f->net, &c));
    c = wm_opt_default(WM_OPT_SD), c.lr = NAN;
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_create(&o, f->net, &c));
    c = wm_opt_default(WM_OPT_SD), c.volume = -1;
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_create(&o, f->net, &c));
    c = wm_opt_default(WM_OPT_ADAM), c.beta1 = 1;
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_create(&o, f->net, &c));
    c = wm_opt_default(WM_OPT_ADAM), c.eps = 0;
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_create(&o, f->net, &c));
    c = wm_opt_default(WM_OPT_MOMENTUM), c.momentum = -0.5f;
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_create(&o, f->net, &c));
    c = wm_opt_default(WM_OPT_SD), c.weight_decay = -1;
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_create(&o, f->net, &c));
    c = wm_opt_default(WM_OPT_SD), c.kind = (wm_opt_kind)7;
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_create(&o, f->net, &c));
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_create(&o, NULL, &c));
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_create(&o, f->net, NULL));
    assert_null(o);
    c = wm_opt_default(WM_OPT_SD), c.lr = 0, c.volume = 1e-3f;  /* a budget needs no lr */
    WM_OK_OR_FAIL(wm_optimizer_create(&o, f->net, &c));
    EXPECT_STATUS(WM_ESTATE, wm_apply(o));                       /* no gradient yet */
    EXPECT_STATUS(WM_EINVAL, wm_apply(NULL));
    EXPECT_STATUS(WM_EINVAL, wm_step(NULL, NULL, NULL));
    assert_null(wm_grad_buffer(NULL, NULL));
    wm_optimizer_free(o);
    wm_optimizer_free(NULL);
    destroy(f);
}

static void test_building_errors_and_order_of_calls(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("circle");
    wm_net *net = NULL;
    EXPECT_STATUS(WM_EINVAL, wm_net_create(NULL, m, 3, WM_COND_MANIFOLD));
    EXPECT_STATUS(WM_EINVAL, wm_net_create(&net, NULL, 3, WM_COND_MANIFOLD));
    EXPECT_STATUS(WM_EINVAL, wm_net_create(&net, m, 0, WM_COND_MANIFOLD));
    EXPECT_STATUS(WM_EINVAL, wm_net_create(&net, m, -5, WM_COND_MANIFOLD));
    EXPECT_STATUS(WM_EINVAL, wm_net_create(&net, m, 3, (wm_conditioning)9));
    assert_null(net);
    WM_OK_OR_FAIL(wm_net_create(&net, m, 3, WM_COND_MANIFOLD));
    wm_manifold_free(m);                               /* the net keeps its own copy */
    float x[3] = {0}, s = 0.1f, y[2], w[8];
    wm_optimizer *o = NULL;
    wm_opt_config c = wm_opt_default(WM_OPT_SD);
    EXPECT_STATUS(WM_ESTATE, wm_net_init(net, 1));     /* no layers */
    EXPECT_STATUS(WM_EINVAL, wm_net_dense(net, 0, WM_ACT_RELU));
    EXPECT_STATUS(WM_EINVAL, wm_net_dense(net, 4, (wm_activation)42));
    EXPECT_STATUS(WM_EINVAL, wm_net_dense(NULL, 4, WM_ACT_RELU));
    EXPECT_STATUS(WM_EINVAL, wm_net_set_loss(net, (wm_loss)5));
    WM_OK_OR_FAIL(wm_net_dense(net, 1, WM_ACT_NONE));
    EXPECT_STATUS(WM_ESTATE, wm_net_init(net, 1));     /* softmax over one output */
    WM_OK_OR_FAIL(wm_net_set_loss(net, WM_LOSS_MSE));
    EXPECT_STATUS(WM_ESTATE, wm_infer(net, x, &s, 1, y));           /* before init */
    EXPECT_STATUS(WM_ESTATE, wm_optimizer_create(&o, net, &c));
    EXPECT_STATUS(WM_ESTATE, wm_net_weights_at(net, 0, &s, w, NULL));
    EXPECT_STATUS(WM_ESTATE, wm_net_control_point(net, 0, 0, w, NULL));
    assert_null(wm_net_params(net, NULL));
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    EXPECT_STATUS(WM_ESTATE, wm_net_dense(net, 4, WM_ACT_RELU));    /* after init */
    EXPECT_STATUS(WM_ESTATE, wm_net_set_loss(net, WM_LOSS_SOFTMAX_CE));
    assert_int_equal(wm_net_n_layers(net), 1);

    float *snap = tu_snapshot(net);
    EXPECT_STATUS(WM_EINVAL, wm_infer(net, x, &s, -1, y));
    EXPECT_STATUS(WM_EINVAL, wm_infer(net, NULL, &s, 1, y));
    EXPECT_STATUS(WM_EINVAL, wm_infer(net, x, NULL, 1, y));
    EXPECT_STATUS(WM_EINVAL, wm_infer(net, x, &s, 1, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_infer(NULL, x, &s, 1, y));
    WM_OK_OR_FAIL(wm_infer(net, NULL, NULL, 0, NULL));                 /* n = 0: nothing to do */
    x[1] = NAN;
    EXPECT_STATUS(WM_EINVAL, wm_infer(net, x, &s, 1, y));
    x[1] = 0;
    s = NAN;
    EXPECT_STATUS(WM_EINVAL, wm_infer(net, x, &s, 1, y));
    s = 0.1f;
    EXPECT_STATUS(WM_EINVAL, wm_net_weights_at(net, 1, &s, w, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_net_weights_at(net, -1, &s, w, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_net_weights_at(net, 0, NULL, w, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_net_control_point(net, 0, 3, w, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_net_set_params(net, snap, 5));
    float bad[12];
    memcpy(bad, snap, sizeof bad);
    bad[2] = INFINITY;
    EXPECT_STATUS(WM_EINVAL, wm_net_set_params(net, bad, wm_net_n_params(net)));
    float pw[3] = {1, NAN, 0};
    EXPECT_STATUS(WM_EINVAL, wm_net_set_control_point(net, 0, 1, pw, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_net_layer_info(net, 2, NULL, NULL, NULL));
    /* a bad row late in a batch larger than one inference chunk writes nothing */
    enum { BIG = 300 };
    static float bx[BIG * 3], bs[BIG], by[BIG];
    for (int i = 0; i < BIG; i++) bs[i] = 0.5f, by[i] = -7.0f;
    bx[280 * 3 + 1] = NAN;
    EXPECT_STATUS(WM_EINVAL, wm_infer(net, bx, bs, BIG, by));
    assert_non_null(strstr(wm_last_error(), "x[280][1]"));
    for (int i = 0; i < BIG; i++) assert_true(by[i] == -7.0f);
    tu_assert_unchanged(net, snap);
    free(snap);
    wm_net_free(net);
    wm_net_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_batches),
        cmocka_unit_test(test_bad_mse_batches),
        cmocka_unit_test(test_periodic_contexts_wrap),
        cmocka_unit_test(test_divergence_is_enumeric_and_harmless),
        cmocka_unit_test(test_bad_optimizer_configs),
        cmocka_unit_test(test_building_errors_and_order_of_calls),
    };
    return cmocka_run_group_tests_name("errors", tests, NULL, NULL);
}
