/* test_audit_io.c -- the correctness audit's round trips: for every layer
 * kind (nets of audit_ref.h's kinds, dropout with p > 0, point layers, a
 * context range) x every manifold of audit_ref.h (custom ones through the
 * _custom loaders) x both conditionings, after training steps (Adam with
 * weight decay and clipping, so every piece of state is non-trivial):
 *   - wm_optimizer_save / wm_optimizer_load: parameters, moments, step count
 *     bit-identical, and two more steps on each (dropout masks included)
 *     end bit-identical;
 *   - wm_net_save_buffer / wm_net_load_buffer(_custom) / save again: the
 *     same bytes; the loaded net's parameters, every layer's
 *     wm_net_weights_at and wm_net_control_point, wm_infer on a mixed batch,
 *     wm_evaluate and the summary bit-identical (exact comparison: the
 *     contract is "loads bit-identical");
 *   - wm_net_clone: the same, without a file;
 *   - wm_optimizer_get_state / set_state onto a fresh optimizer on a clone:
 *     the next steps bit-identical. */
#include <unistd.h>

#include "audit_ref.h"

static const arch NETS[] = {
    {"mlp", 0, 4, 0, 7,
     {{AL_DENSE, 5, 0, 0, 0, WM_ACT_TANH, 0, 0}, {AL_LN, 0, 0, 0, 0, WM_ACT_NONE, 1, 0},
      {AL_DENSE, 5, 0, 0, 0, WM_ACT_RELU, 0, 0}, {AL_FILM, 0, 0, 0, 0, WM_ACT_NONE, 0, 0},
      {AL_RES, 1, 0, 0, 0, WM_ACT_SIGMOID, 0, 0}, {AL_DROP, 0, 0, 0, 0, WM_ACT_NONE, 0, 0.3f},
      {AL_DENSE, 3, 0, 0, 0, WM_ACT_NONE, 0, 0}}},
    {"cnn", 2, 6, 6, 11,
     {{AL_CONV, 4, 3, 1, 1, WM_ACT_RELU, 0, 0}, {AL_GN, 2, 0, 0, 0, WM_ACT_NONE, 0, 0},
      {AL_FILM, 0, 0, 0, 0, WM_ACT_NONE, 0, 0}, {AL_RES, 0, 0, 0, 0, WM_ACT_TANH, 0, 0},
      {AL_MAX, 0, 2, 0, 0, WM_ACT_NONE, 0, 0}, {AL_CONV, 4, 3, 2, 1, WM_ACT_SIGMOID, 1, 0},
      {AL_DROP, 0, 0, 0, 0, WM_ACT_NONE, 0, 0.25f}, {AL_LN, 0, 0, 0, 0, WM_ACT_NONE, 0, 0},
      {AL_AVG, 0, 2, 0, 0, WM_ACT_NONE, 0, 0}, {AL_GAP, 0, 0, 0, 0, WM_ACT_NONE, 0, 0},
      {AL_DENSE, 3, 0, 0, 0, WM_ACT_NONE, 0, 0}}},
};

enum { N = 6 };

typedef struct {
    float *x, s[N * 8];
    int32_t labels[N];
    float targets[N * 8];
} data;

static void make_batch(data *d, const wm_net *net, const arch *A, uint64_t *st)
{
    const wm_manifold *m = wm_net_manifold(net);
    int n_in = ar_inputs(A), mo = wm_net_n_outputs(net);
    tu_fill(d->x, (size_t)N * n_in, -1, 1, st);
    tu_contexts(m, d->s, N, st);
    for (int i = 0; i < N; i++) d->labels[i] = (int32_t)(tu_uniform(st) * mo);
    tu_fill(d->targets, (size_t)N * mo, -1, 1, st);
}

static void assert_params_equal(const wm_net *a, const wm_net *b, const char *what)
{
    size_t la, lb;
    const float *pa = wm_net_params(a, &la), *pb = wm_net_params(b, &lb);
    assert_int_equal(la, lb);
    if (memcmp(pa, pb, la * sizeof(float)))
        fail_msg("%s: parameters differ", what);
}

static void assert_state_equal(const wm_optimizer *a, const wm_optimizer *b, const char *what)
{
    size_t la = wm_optimizer_state_len(a), lb = wm_optimizer_state_len(b);
    assert_int_equal(la, lb);
    float *sa = malloc((la + 1) * sizeof(float)), *sb = malloc((la + 1) * sizeof(float));
    WM_OK_OR_FAIL(wm_optimizer_get_state(a, sa, la));
    WM_OK_OR_FAIL(wm_optimizer_get_state(b, sb, lb));
    if (memcmp(sa, sb, la * sizeof(float)))
        fail_msg("%s: optimizer state differs", what);
    assert_int_equal(wm_optimizer_steps(a), wm_optimizer_steps(b));
    free(sa), free(sb);
}

/* Everything a user can read of a net, compared exactly. */
static void assert_nets_equal(const wm_net *a, const wm_net *b, const arch *A, data *d, wm_loss loss,
                              const char *what)
{
    assert_params_equal(a, b, what);
    assert_int_equal(wm_net_n_layers(a), wm_net_n_layers(b));
    assert_int_equal(wm_net_n_inputs(a), wm_net_n_inputs(b));
    assert_int_equal(wm_net_n_outputs(a), wm_net_n_outputs(b));
    assert_int_equal(wm_net_context_dim(a), wm_net_context_dim(b));
    for (int c = 0; c < wm_net_context_dim(a); c++) {
        float la, ha, lb, hb;
        WM_OK_OR_FAIL(wm_net_context_range(a, c, &la, &ha));
        WM_OK_OR_FAIL(wm_net_context_range(b, c, &lb, &hb));
        if (la != lb || ha != hb)
            fail_msg("%s: context range %d: [%g, %g] vs [%g, %g]", what, c, la, ha, lb, hb);
    }
    for (int l = 0; l < A->nl; l++) {
        int ia, oa, ib, ob;
        wm_activation aa, ab;
        WM_OK_OR_FAIL(wm_net_layer_info(a, l, &ia, &oa, &aa));
        WM_OK_OR_FAIL(wm_net_layer_info(b, l, &ib, &ob, &ab));
        if (ia != ib || oa != ob || aa != ab)
            fail_msg("%s: layer %d info differs", what, l);
    }
    int mo = wm_net_n_outputs(a);
    float ya[N * 8], yb[N * 8];
    WM_OK_OR_FAIL(wm_infer(a, d->x, d->s, N, ya));
    WM_OK_OR_FAIL(wm_infer(b, d->x, d->s, N, yb));
    if (memcmp(ya, yb, sizeof(float) * N * mo))
        fail_msg("%s: wm_infer differs", what);
    wm_batch bt = {N, d->x, d->s, loss == WM_LOSS_SOFTMAX_CE ? d->labels : NULL,
                   loss == WM_LOSS_MSE ? d->targets : NULL};
    float l1, l2, a1, a2;
    WM_OK_OR_FAIL(wm_evaluate(a, &bt, &l1, &a1));
    WM_OK_OR_FAIL(wm_evaluate(b, &bt, &l2, &a2));
    if (l1 != l2 || a1 != a2)
        fail_msg("%s: wm_evaluate %.9g / %g vs %.9g / %g", what, l1, a1, l2, a2);
    char sa[4096], sb[4096];
    WM_OK_OR_FAIL(wm_net_summary(a, sa, sizeof sa));
    WM_OK_OR_FAIL(wm_net_summary(b, sb, sizeof sb));
    if (strcmp(sa, sb))
        fail_msg("%s: summaries differ:\n%s\n---\n%s", what, sa, sb);
}

/* Compare every layer's weights_at and control points exactly. */
static void assert_weights_equal(const wm_net *a, const wm_net *b, const arch *A, const float *s,
                                 const char *what)
{
    for (int l = 0; l < A->nl; l++) {
        if (!al_has_params(A->L[l].kind))
            continue;
        int in, out;
        WM_OK_OR_FAIL(wm_net_layer_info(a, l, &in, &out, NULL));
        /* norm layers report feature counts; their w is rows x 1 <= the output */
        size_t wn = (size_t)in * out + (size_t)out, bn = (size_t)out;
        float *wa = calloc(wn, sizeof(float)), *wb = calloc(wn, sizeof(float));
        float *ba = calloc(bn, sizeof(float)), *bb = calloc(bn, sizeof(float));
        WM_OK_OR_FAIL(wm_net_weights_at(a, l, s, wa, ba));
        WM_OK_OR_FAIL(wm_net_weights_at(b, l, s, wb, bb));
        if (memcmp(wa, wb, wn * sizeof(float)) || memcmp(ba, bb, bn * sizeof(float)))
            fail_msg("%s: layer %d: wm_net_weights_at differs", what, l);
        for (int k = 0;; k++) {
            memset(wa, 0, wn * sizeof(float)), memset(wb, 0, wn * sizeof(float));
            wm_status sa = wm_net_control_point(a, l, k, wa, ba), sb = wm_net_control_point(b, l, k, wb, bb);
            assert_int_equal(sa, sb);
            if (sa != WM_OK)
                break;
            if (memcmp(wa, wb, wn * sizeof(float)) || memcmp(ba, bb, bn * sizeof(float)))
                fail_msg("%s: layer %d: control point %d differs", what, l, k);
        }
        free(wa), free(wb), free(ba), free(bb);
    }
}

static char g_dir[64];

static void check_case(const arch *A, const am *M, wm_conditioning cond, wm_loss loss)
{
    char what[160], path[128];
    snprintf(what, sizeof what, "%s on %s, cond %d, loss %d", A->name, M->name, cond, loss);
    snprintf(path, sizeof path, "%s/ckpt.wmn", g_dir);
    wm_basis_fn fn = am_callback(M);
    wm_net *net = ar_build_net_ex(A, M, cond, loss, 1);
    ar_randomise(net, 0.5, 31);
    wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
    cfg.weight_decay = 0.01f;
    wm_optimizer *opt;
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
    data d;
    d.x = malloc(sizeof(float) * N * ar_inputs(A));
    uint64_t st = 17;
    int clipped = 0;
    float clip = 0;
    for (int step = 0; step < 3; step++) {
        make_batch(&d, net, A, &st);
        wm_batch b = {N, d.x, d.s, loss == WM_LOSS_SOFTMAX_CE ? d.labels : NULL,
                      loss == WM_LOSS_MSE ? d.targets : NULL};
        if (!clipped) {                       /* a clip that bites: half the first |g| */
            WM_OK_OR_FAIL(wm_grad(opt, &b, NULL));
            size_t len;
            const float *g = wm_grad_buffer(opt, &len);
            double gg = 0;
            for (size_t j = 0; j < len; j++) gg += (double)g[j] * g[j];
            clip = (float)(0.5 * sqrt(gg));
            WM_OK_OR_FAIL(wm_optimizer_set_clip_norm(opt, clip));
            clipped = 1;
        }
        WM_OK_OR_FAIL(wm_step(opt, &b, NULL));
    }
    /* a checkpoint file */
    WM_OK_OR_FAIL(wm_optimizer_save(opt, path));
    wm_optimizer *o2 = NULL;
    wm_net *n2 = NULL;
    WM_OK_OR_FAIL(wm_optimizer_load(&o2, &n2, path, fn, NULL));
    assert_state_equal(opt, o2, what);
    assert_true(wm_optimizer_lr(opt) == wm_optimizer_lr(o2));
    make_batch(&d, net, A, &st);
    assert_nets_equal(net, n2, A, &d, loss, what);
    assert_weights_equal(net, n2, A, d.s, what);
    /* model bytes: buffer, load, buffer again */
    void *b1 = NULL, *b2 = NULL;
    size_t l1, l2;
    wm_net *n3 = NULL;
    WM_OK_OR_FAIL(wm_net_save_buffer(net, &b1, &l1));
    if (fn)
        WM_OK_OR_FAIL(wm_net_load_buffer_custom(&n3, b1, l1, fn, NULL));
    else
        WM_OK_OR_FAIL(wm_net_load_buffer(&n3, b1, l1));
    WM_OK_OR_FAIL(wm_net_save_buffer(n3, &b2, &l2));
    if (l1 != l2 || memcmp(b1, b2, l1))
        fail_msg("%s: a loaded net saves other bytes (%zu vs %zu)", what, l1, l2);
    assert_nets_equal(net, n3, A, &d, loss, what);
    assert_weights_equal(net, n3, A, d.s, what);
    /* a clone, and a copy of the optimizer's state onto a fresh optimizer */
    wm_net *n4;
    wm_optimizer *o4;
    WM_OK_OR_FAIL(wm_net_clone(&n4, net));
    assert_nets_equal(net, n4, A, &d, loss, what);
    WM_OK_OR_FAIL(wm_optimizer_create(&o4, n4, &cfg));
    size_t sl = wm_optimizer_state_len(opt);
    float *sv = malloc((sl + 1) * sizeof(float));
    WM_OK_OR_FAIL(wm_optimizer_get_state(opt, sv, sl));
    WM_OK_OR_FAIL(wm_optimizer_set_state(o4, sv, sl, wm_optimizer_steps(opt)));
    WM_OK_OR_FAIL(wm_optimizer_set_clip_norm(o4, clip));   /* a setting, not state */
    /* two more steps on the original, the checkpoint's and the state copy */
    for (int step = 0; step < 2; step++) {
        make_batch(&d, net, A, &st);
        wm_batch b = {N, d.x, d.s, loss == WM_LOSS_SOFTMAX_CE ? d.labels : NULL,
                      loss == WM_LOSS_MSE ? d.targets : NULL};
        float la, lb, lc;
        WM_OK_OR_FAIL(wm_step(opt, &b, &la));
        WM_OK_OR_FAIL(wm_step(o2, &b, &lb));
        WM_OK_OR_FAIL(wm_step(o4, &b, &lc));
        if (la != lb || la != lc)
            fail_msg("%s: resumed step %d: loss %.9g, from the checkpoint %.9g, from the state %.9g",
                     what, step, la, lb, lc);
    }
    assert_params_equal(net, n2, what);
    assert_state_equal(opt, o2, what);
    assert_params_equal(net, n4, what);
    assert_state_equal(opt, o4, what);
    free(sv), free(d.x);
    wm_free(b1), wm_free(b2);
    wm_optimizer_free(o4), wm_net_free(n4);
    wm_net_free(n3);
    wm_optimizer_free(o2), wm_net_free(n2);
    wm_optimizer_free(opt), wm_net_free(net);
    unlink(path);
}

static void sweep(const arch *A)
{
    for (int mi = 0; mi < AM_N; mi++)
        for (int cond = 0; cond < 2; cond++) {
            if (cond == WM_COND_CONCAT && AM_ALL[mi].kind == AM_POINT)
                continue;
            check_case(A, &AM_ALL[mi], (wm_conditioning)cond, cond ? WM_LOSS_MSE : WM_LOSS_SOFTMAX_CE);
        }
}

static int setup(void **st)
{
    (void)st;
    snprintf(g_dir, sizeof g_dir, "/tmp/wm_audit_io_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **st)
{
    (void)st;
    return rmdir(g_dir);
}

static void test_audit_io_mlp(void **st) { (void)st; sweep(&NETS[0]); }
static void test_audit_io_cnn(void **st) { (void)st; sweep(&NETS[1]); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_audit_io_mlp),
        cmocka_unit_test(test_audit_io_cnn),
    };
    return cmocka_run_group_tests_name("audit: round trips", tests, setup, teardown);
}
