/* test_attack_order.c -- the class "handles used in the wrong order": calls
 * made from inside the library's own callbacks (a custom basis, called while
 * a batch is encoded; wm_grad_notify's ready, called during the backward
 * pass), calls in the wrong phase of a handle's life, and handles shared
 * where they should not be. Each refused call: a status, a message, and the
 * net and optimizer exactly as before; the outer call still finishes as if
 * the callback had done nothing. */
#include "testutil.h"

static void expect_msg(const char *needle)
{
    if (!strstr(wm_last_error(), needle))
        fail_msg("message '%s' does not mention '%s'", wm_last_error(), needle);
}

enum { IN = 4, BIG = 600 };

/* What a callback tries, and what it saw. */
typedef struct {
    wm_optimizer *opt;
    const wm_batch *big;                /* a batch larger than the outer one */
    int what, calls;
    wm_status seen[8];
    char msg[8][160];
} reentry;

static reentry R;

static void try_calls(void)
{
    float loss;
    int i = 0;
    size_t len = wm_optimizer_state_len(R.opt);
    float *st = calloc(len + 1, sizeof(float));
    R.seen[i++] = wm_step(R.opt, R.big, &loss);
    R.seen[i++] = wm_grad(R.opt, R.big, &loss);
    R.seen[i++] = wm_grad_notify(R.opt, R.big, &loss, NULL, NULL);
    R.seen[i++] = wm_apply(R.opt);
    R.seen[i++] = wm_grad_zero(R.opt);
    R.seen[i++] = wm_optimizer_set_state(R.opt, len ? st : NULL, len, 5);
    free(st);
    for (int j = 0; j < i; j++)
        snprintf(R.msg[j], sizeof R.msg[j], "%s", wm_last_error());
    R.calls++;
}

static void ready_cb(void *user, int layer, size_t offset, size_t len)
{
    (void)user, (void)layer, (void)offset, (void)len;
    if (R.calls == 0)
        try_calls();
}

static void reentrant_basis(const float *s, float *c, void *user)
{
    (void)user;
    c[0] = 1.0f;
    c[1] = s[0];
    if (R.opt && R.calls == 0)
        try_calls();
}

static void assert_all_refused(void)
{
    assert_int_equal(R.calls, 1);
    for (int j = 0; j < 6; j++) {
        if (R.seen[j] != WM_ESTATE)
            fail_msg("call %d from the callback: %s (%s), expected %s", j, wm_status_str(R.seen[j]),
                     R.msg[j], wm_status_str(WM_ESTATE));
        assert_non_null(strstr(R.msg[j], "callback"));
    }
}

/* Defect: wm_step on the optimizer from inside wm_grad_notify's ready (a
 * larger batch) grew the training workspace the outer backward pass was
 * reading: heap-use-after-free (ASan), a crash or a wrong gradient without
 * it. The same from a custom basis function, which runs while wm_step
 * encodes the batch. Now every call that would reuse the workspace or write
 * the gradient or moments is WM_ESTATE, and the outer call is unaffected:
 * its gradient equals a clean run's bit for bit. */
static void test_reentry_from_callbacks(void **state)
{
    (void)state;
    static float x[BIG * IN], s[BIG];
    static int32_t labels[BIG];
    uint64_t rng = 4;
    tu_fill(x, BIG * IN, -1, 1, &rng);
    tu_fill(s, BIG, 0, 1, &rng);
    for (int i = 0; i < BIG; i++)
        labels[i] = i % 3;
    wm_batch small = {5, x, s, labels, NULL}, big = {BIG, x, s, labels, NULL};
    for (int via = 0; via < 2; via++)            /* 0: ready, 1: the basis */
        for (int kind = 0; kind < 3; kind++) {
            wm_manifold *m;
            R.opt = NULL;
            WM_OK_OR_FAIL(wm_manifold_custom(&m, 1, 2, NULL, reentrant_basis, NULL));
            wm_net *net, *twin;
            WM_OK_OR_FAIL(wm_net_create(&net, m, IN, WM_COND_MANIFOLD));
            WM_OK_OR_FAIL(wm_net_dense(net, 8, WM_ACT_RELU));
            WM_OK_OR_FAIL(wm_net_dense(net, 3, WM_ACT_NONE));
            WM_OK_OR_FAIL(wm_net_init(net, 7));
            WM_OK_OR_FAIL(wm_net_clone(&twin, net));
            wm_opt_config cfg = wm_opt_default((wm_opt_kind)kind);
            wm_optimizer *opt, *topt;
            WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
            WM_OK_OR_FAIL(wm_optimizer_create(&topt, twin, &cfg));
            WM_OK_OR_FAIL(wm_step(opt, &small, NULL));     /* moments non-zero */
            WM_OK_OR_FAIL(wm_step(topt, &small, NULL));

            memset(&R, 0, sizeof R);
            R.opt = via ? opt : NULL;                      /* the basis only attacks when asked */
            R.big = &big;
            float *snap = tu_snapshot(net), loss = -1, tloss = -2;
            if (via == 0) {
                R.opt = opt;
                WM_OK_OR_FAIL(wm_grad_notify(opt, &small, &loss, ready_cb, NULL));
            } else {
                WM_OK_OR_FAIL(wm_grad(opt, &small, &loss));
            }
            R.opt = NULL;
            assert_all_refused();
            tu_assert_unchanged(net, snap);
            /* the outer gradient is the clean one */
            WM_OK_OR_FAIL(wm_grad(topt, &small, &tloss));
            assert_true(loss == tloss);
            size_t len, tlen;
            float *g = wm_grad_buffer(opt, &len), *tg = wm_grad_buffer(topt, &tlen);
            assert_int_equal(len, tlen);
            assert_memory_equal(g, tg, len * sizeof(float));
            WM_OK_OR_FAIL(wm_apply(opt));
            WM_OK_OR_FAIL(wm_apply(topt));
            tu_assert_unchanged(twin, wm_net_params(net, NULL));
            /* the guard is lifted afterwards, also after a refused inner call */
            WM_OK_OR_FAIL(wm_step(opt, &big, NULL));
            WM_OK_OR_FAIL(wm_grad_zero(opt));
            free(snap);
            wm_optimizer_free(opt);
            wm_optimizer_free(topt);
            wm_net_free(net);
            wm_net_free(twin);
            wm_manifold_free(m);
        }
}

/* An empty shard's wm_grad_notify reports every block too: the guard holds
 * there as well. */
static void test_reentry_from_an_empty_shard(void **state)
{
    (void)state;
    static float x[BIG * IN], s[BIG];
    static int32_t labels[BIG];
    for (int i = 0; i < BIG; i++)
        labels[i] = i % 3, s[i] = 0.5f;
    wm_batch empty = {0, NULL, NULL, NULL, NULL}, big = {BIG, x, s, labels, NULL};
    wm_manifold *m = tu_manifold("line");
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, IN, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(net, 3, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
    wm_optimizer *opt;
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
    memset(&R, 0, sizeof R);
    R.opt = opt, R.big = &big;
    float *snap = tu_snapshot(net);
    WM_OK_OR_FAIL(wm_grad_notify(opt, &empty, NULL, ready_cb, NULL));
    R.opt = NULL;
    assert_all_refused();
    tu_assert_unchanged(net, snap);
    size_t len;
    const float *g = wm_grad_buffer(opt, &len);
    for (size_t j = 0; j < len; j++)
        assert_true(g[j] == 0.0f);
    WM_OK_OR_FAIL(wm_apply(opt));
    free(snap);
    wm_optimizer_free(opt);
    wm_net_free(net);
    wm_manifold_free(m);
}

/* Calls in the wrong phase: every net-building call after wm_net_init, every
 * training or query call before it; a refused call changes nothing. */
static void test_wrong_phase(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("circle");
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 16, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_input_shape(net, 1, 4, 4));
    WM_OK_OR_FAIL(wm_net_conv2d(net, 2, 3, 1, 1, WM_ACT_RELU));
    EXPECT_STATUS(WM_ESTATE, wm_net_input_shape(net, 1, 4, 4));      /* layers exist */
    /* before init: everything that needs parameters */
    float x[16] = {0}, s = 0.5f, y[8], w[64], b[8], lo, hi;
    int32_t label = 0;
    wm_batch batch = {1, x, &s, &label, NULL};
    wm_optimizer *opt = NULL;
    wm_opt_config cfg = wm_opt_default(WM_OPT_SD);
    void *buf = NULL;
    size_t len = 7;
    EXPECT_STATUS(WM_ESTATE, wm_infer(net, x, &s, 1, y));
    EXPECT_STATUS(WM_ESTATE, wm_evaluate(net, &batch, NULL, NULL));
    EXPECT_STATUS(WM_ESTATE, wm_optimizer_create(&opt, net, &cfg));
    EXPECT_STATUS(WM_ESTATE, wm_net_weights_at(net, 0, &s, w, b));
    EXPECT_STATUS(WM_ESTATE, wm_net_control_point(net, 0, 0, w, b));
    EXPECT_STATUS(WM_ESTATE, wm_net_set_control_point(net, 0, 0, w, b));
    EXPECT_STATUS(WM_ESTATE, wm_net_set_params(net, x, wm_net_n_params(net)));
    EXPECT_STATUS(WM_ESTATE, wm_net_save_buffer(net, &buf, &len));
    EXPECT_STATUS(WM_ESTATE, wm_infer_context(net, x, &label, 1, &s));
    EXPECT_STATUS(WM_ESTATE, wm_infer_ws(net, x, &s, 1, y, w, sizeof w));
    assert_null(opt);
    assert_null(buf);
    assert_int_equal(len, 7);
    assert_int_equal(wm_infer_workspace_size(net, 1), 0);
    WM_OK_OR_FAIL(wm_net_maxpool(net, 2));
    WM_OK_OR_FAIL(wm_net_dense(net, 3, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_context_range(net, 0, &lo, &hi));
    WM_OK_OR_FAIL(wm_net_init(net, 3));
    /* after init: everything that changes the architecture */
    int layers = wm_net_n_layers(net);
    size_t np = wm_net_n_params(net);
    float *snap = tu_snapshot(net);
    EXPECT_STATUS(WM_ESTATE, wm_net_dense(net, 3, WM_ACT_NONE));
    EXPECT_STATUS(WM_ESTATE, wm_net_conv2d(net, 2, 1, 1, 0, WM_ACT_NONE));
    EXPECT_STATUS(WM_ESTATE, wm_net_maxpool(net, 1));
    EXPECT_STATUS(WM_ESTATE, wm_net_avgpool(net, 1));
    EXPECT_STATUS(WM_ESTATE, wm_net_residual(net, 2, WM_ACT_NONE));
    EXPECT_STATUS(WM_ESTATE, wm_net_layernorm(net));
    EXPECT_STATUS(WM_ESTATE, wm_net_film(net));
    EXPECT_STATUS(WM_ESTATE, wm_net_dropout(net, 0.5f));
    EXPECT_STATUS(WM_ESTATE, wm_net_set_layer_manifold(net, 0, 0));
    EXPECT_STATUS(WM_ESTATE, wm_net_set_loss(net, WM_LOSS_MSE));
    EXPECT_STATUS(WM_ESTATE, wm_net_set_context_range(net, 0, 0, 360));
    EXPECT_STATUS(WM_ESTATE, wm_net_input_shape(net, 1, 4, 4));
    assert_int_equal(wm_net_n_layers(net), layers);
    assert_int_equal(wm_net_n_params(net), np);
    tu_assert_unchanged(net, snap);
    WM_OK_OR_FAIL(wm_net_context_range(net, 0, &lo, &hi));
    assert_true(lo == 0.0f && hi == 1.0f);
    free(snap);
    wm_net_free(net);
    wm_manifold_free(m);
}

/* One optimizer per net, several on one net, and nets of another shape:
 * state and parameters never cross. */
static void test_handles_that_do_not_match(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("line");
    wm_net *a, *b;
    WM_OK_OR_FAIL(wm_net_create(&a, m, IN, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(a, 3, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(a, 1));
    WM_OK_OR_FAIL(wm_net_create(&b, m, IN, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(b, 5, WM_ACT_RELU));
    WM_OK_OR_FAIL(wm_net_dense(b, 3, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(b, 2));
    wm_opt_config ca = wm_opt_default(WM_OPT_ADAM), cm = wm_opt_default(WM_OPT_MOMENTUM);
    wm_optimizer *oa, *ob, *oa2;
    WM_OK_OR_FAIL(wm_optimizer_create(&oa, a, &ca));
    WM_OK_OR_FAIL(wm_optimizer_create(&ob, b, &ca));
    WM_OK_OR_FAIL(wm_optimizer_create(&oa2, a, &cm));    /* a second optimizer on a */
    float x[2 * IN] = {0.1f, 0.2f, 0.3f, 0.4f, -0.1f, 0.5f, 0.2f, 0.0f}, s[2] = {0.2f, 0.9f};
    int32_t labels[2] = {0, 2};
    wm_batch batch = {2, x, s, labels, NULL};
    WM_OK_OR_FAIL(wm_step(oa, &batch, NULL));
    WM_OK_OR_FAIL(wm_step(ob, &batch, NULL));
    float *sa = tu_snapshot(a), *sb = tu_snapshot(b);
    /* b's state (another size) into a's optimizer; a's params into b */
    size_t lb = wm_optimizer_state_len(ob), la = wm_optimizer_state_len(oa);
    float *stb = malloc(sizeof(float) * lb), *sta = malloc(sizeof(float) * la);
    WM_OK_OR_FAIL(wm_optimizer_get_state(ob, stb, lb));
    WM_OK_OR_FAIL(wm_optimizer_get_state(oa, sta, la));
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_set_state(oa, stb, lb, 1));
    expect_msg("len");
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_get_state(oa, stb, lb));
    EXPECT_STATUS(WM_EINVAL, wm_net_set_params(b, sa, wm_net_n_params(a)));
    /* a momentum state (n floats) is not an Adam state (2n) of the same net */
    size_t lm = wm_optimizer_state_len(oa2);
    assert_int_equal(la, 2 * lm);
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_set_state(oa, sta, lm, 1));
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_set_state(oa2, sta, la, 1));
    tu_assert_unchanged(a, sa);
    tu_assert_unchanged(b, sb);
    /* b's gradient layout is not a's: wm_apply of a's optimizer uses a's own */
    WM_OK_OR_FAIL(wm_grad(ob, &batch, NULL));
    EXPECT_STATUS(WM_ESTATE, wm_apply(oa));                  /* oa never computed one */
    tu_assert_unchanged(a, sa);
    /* the second optimizer steps the same net; the first notices nothing to restart */
    WM_OK_OR_FAIL(wm_step(oa2, &batch, NULL));
    WM_OK_OR_FAIL(wm_step(oa, &batch, NULL));
    assert_true(wm_optimizer_net(oa) == a && wm_optimizer_net(oa2) == a && wm_optimizer_net(ob) == b);
    free(sa), free(sb), free(sta), free(stb);
    wm_optimizer_free(oa2);
    wm_optimizer_free(oa);
    wm_optimizer_free(ob);
    wm_net_free(a);
    wm_net_free(b);
    wm_manifold_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reentry_from_callbacks),
        cmocka_unit_test(test_reentry_from_an_empty_shard),
        cmocka_unit_test(test_wrong_phase),
        cmocka_unit_test(test_handles_that_do_not_match),
    };
    return cmocka_run_group_tests_name("attack_order", tests, NULL, NULL);
}
