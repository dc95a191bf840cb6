/* test_controls.c -- what a training loop needs between steps: learning-rate
 * schedules, gradient clipping on every update path, re-initialising under
 * a live optimizer, deep copies and the model summary. */
#include <unistd.h>

#include "testutil.h"

/* A small net: "dense" (two dense layers) or "conv" (conv, pool, dense). */
static wm_net *small_net(const char *arch, const char *mname, uint64_t seed)
{
    wm_manifold *m = tu_manifold(mname);
    wm_net *net;
    if (!strcmp(arch, "conv")) {
        WM_OK_OR_FAIL(wm_net_create(&net, m, 36, WM_COND_MANIFOLD));
        WM_OK_OR_FAIL(wm_net_input_shape(net, 1, 6, 6));
        WM_OK_OR_FAIL(wm_net_conv2d(net, 3, 3, 1, 1, WM_ACT_RELU));
        WM_OK_OR_FAIL(wm_net_maxpool(net, 2));
        WM_OK_OR_FAIL(wm_net_dense(net, 3, WM_ACT_NONE));
    } else {
        WM_OK_OR_FAIL(wm_net_create(&net, m, 36, WM_COND_MANIFOLD));
        WM_OK_OR_FAIL(wm_net_dense(net, 16, WM_ACT_TANH));
        WM_OK_OR_FAIL(wm_net_dense(net, 3, WM_ACT_NONE));
    }
    WM_OK_OR_FAIL(wm_net_init(net, seed));
    wm_manifold_free(m);
    return net;
}

typedef struct {
    float x[8 * 36], s[2 * 8];        /* room for 2-D contexts (torus nets) */
    int32_t y[8];
    wm_batch b;
} data;

static void make_data(data *d, int n, uint64_t seed)
{
    uint64_t r = seed;
    tu_fill(d->x, (size_t)n * 36, -2, 2, &r);
    tu_fill(d->s, 2 * (size_t)n, 0, 1, &r);
    for (int i = 0; i < n; i++)
        d->y[i] = (int32_t)(tu_uniform(&r) * 3) % 3;
    wm_batch b = {n, d->x, d->s, d->y, NULL};
    d->b = b;
}

static double norm_of(const float *g, size_t n)
{
    double s = 0;
    for (size_t j = 0; j < n; j++)
        s += (double)g[j] * g[j];
    return sqrt(s);
}

static void assert_params_close(const wm_net *a, const wm_net *b, double rel, const char *what)
{
    size_t n, n2;
    const float *p = wm_net_params(a, &n), *q = wm_net_params(b, &n2);
    assert_int_equal(n, n2);
    for (size_t j = 0; j < n; j++)
        if (!(fabs((double)p[j] - q[j]) <= rel * (fabs(q[j]) + 1e-3)))
            fail_msg("%s: parameter %zu is %.9g, want %.9g", what, j, p[j], q[j]);
}

/* The clip on every path against its definition: wm_grad, scale the buffer
 * by min(1, c/|g|) by hand, wm_apply on an optimizer without clipping. */
static void check_clip_path(const char *arch, wm_opt_kind kind, int n, float volume, int via_apply)
{
    data d;
    make_data(&d, n, 11 + (uint64_t)n);
    wm_net *net = small_net(arch, "circle", 3), *ref;
    WM_OK_OR_FAIL(wm_net_clone(&ref, net));
    wm_opt_config cfg = wm_opt_default(kind);
    cfg.lr = kind == WM_OPT_ADAM ? 1e-2f : 0.05f;
    cfg.volume = volume;
    wm_optimizer *o, *ro;
    WM_OK_OR_FAIL(wm_optimizer_create(&o, net, &cfg));
    WM_OK_OR_FAIL(wm_optimizer_create(&ro, ref, &cfg));
    size_t len;
    float *rg = wm_grad_buffer(ro, &len);
    /* a clip that bites: a tenth of the first gradient's norm */
    WM_OK_OR_FAIL(wm_grad(ro, &d.b, NULL));
    float c = (float)(0.1 * norm_of(rg, len));
    WM_OK_OR_FAIL(wm_optimizer_set_clip_norm(o, c));
    for (int step = 0; step < 3; step++) {
        make_data(&d, n, 100 + (uint64_t)step);
        if (via_apply) {
            WM_OK_OR_FAIL(wm_grad(o, &d.b, NULL));
            WM_OK_OR_FAIL(wm_apply(o));
        } else {
            WM_OK_OR_FAIL(wm_step(o, &d.b, NULL));
        }
        WM_OK_OR_FAIL(wm_grad(ro, &d.b, NULL));
        double g = norm_of(rg, len);
        if (g > c)
            for (size_t j = 0; j < len; j++)
                rg[j] = (float)(rg[j] * (c / g));
        WM_OK_OR_FAIL(wm_apply(ro));
        char what[128];
        snprintf(what, sizeof what, "%s kind %d n %d volume %g %s step %d", arch, (int)kind, n, volume,
                 via_apply ? "grad+apply" : "step", step);
        assert_params_close(net, ref, 2e-5, what);
    }
    wm_optimizer_free(o), wm_optimizer_free(ro);
    wm_net_free(net), wm_net_free(ref);
}

static void test_clip_on_every_path(void **state)
{
    (void)state;
    for (int kind = 0; kind < 3; kind++) {
        check_clip_path("dense", (wm_opt_kind)kind, 1, 0, 0);   /* direct rank-1 path */
        check_clip_path("dense", (wm_opt_kind)kind, 8, 0, 0);   /* fused path */
        check_clip_path("conv", (wm_opt_kind)kind, 4, 0, 0);    /* conv: fused path */
        check_clip_path("conv", (wm_opt_kind)kind, 1, 0, 0);
        check_clip_path("dense", (wm_opt_kind)kind, 8, 0, 1);   /* wm_apply */
        check_clip_path("dense", (wm_opt_kind)kind, 1, 1e-3f, 0); /* volume: careful path */
    }
}

/* SD, volume 0: |dQ| <= lr * c, with equality when the clip bites. */
static void test_clip_bounds_the_sd_step(void **state)
{
    (void)state;
    data d;
    make_data(&d, 1, 5);
    for (int n = 1; n <= 8; n += 7) {
        make_data(&d, n, 5);
        wm_net *net = small_net("dense", "torus", 9);
        wm_opt_config cfg = wm_opt_default(WM_OPT_SD);
        cfg.lr = 0.5f;
        wm_optimizer *o;
        WM_OK_OR_FAIL(wm_optimizer_create(&o, net, &cfg));
        WM_OK_OR_FAIL(wm_optimizer_set_clip_norm(o, 1e-3f));
        float *before = tu_snapshot(net);
        WM_OK_OR_FAIL(wm_step(o, &d.b, NULL));
        size_t len;
        const float *q = wm_net_params(net, &len);
        double dq = 0;
        for (size_t j = 0; j < len; j++)
            dq += ((double)q[j] - before[j]) * ((double)q[j] - before[j]);
        assert_true(fabs(sqrt(dq) - 0.5 * 1e-3) < 1e-3 * 0.5 * 1e-3);
        free(before);
        wm_optimizer_free(o);
        wm_net_free(net);
    }
}

static void test_clip_and_lr_arguments(void **state)
{
    (void)state;
    wm_net *net = small_net("dense", "line", 1);
    wm_opt_config cfg = wm_opt_default(WM_OPT_MOMENTUM);
    wm_optimizer *o;
    WM_OK_OR_FAIL(wm_optimizer_create(&o, net, &cfg));
    const float bad[] = {-1.0f, -1e-30f, NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 5; i++) {
        EXPECT_STATUS(WM_EINVAL, wm_optimizer_set_lr(o, bad[i]));
        EXPECT_STATUS(WM_EINVAL, wm_optimizer_set_clip_norm(o, bad[i]));
        assert_float_equal(wm_optimizer_lr(o), cfg.lr, 0.0f);
    }
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_set_lr(NULL, 0.1f));
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_set_clip_norm(NULL, 1.0f));
    assert_true(isnan(wm_optimizer_lr(NULL)));
    WM_OK_OR_FAIL(wm_optimizer_set_lr(o, 0.0f));
    assert_float_equal(wm_optimizer_lr(o), 0.0f, 0.0f);
    WM_OK_OR_FAIL(wm_optimizer_set_clip_norm(o, 0.0f));
    wm_optimizer_free(o);
    wm_net_free(net);
}

/* A schedule: momentum at lr1, then lr2, against v = mu v + g, dQ = -lr v
 * computed by hand from gradients of a copy. */
static void test_lr_schedule_keeps_the_velocity(void **state)
{
    (void)state;
    data d;
    make_data(&d, 8, 21);
    wm_net *net = small_net("dense", "circle", 4), *ref;
    WM_OK_OR_FAIL(wm_net_clone(&ref, net));
    wm_opt_config cfg = wm_opt_default(WM_OPT_MOMENTUM);
    cfg.lr = 0.1f;
    wm_optimizer *o, *ro;
    WM_OK_OR_FAIL(wm_optimizer_create(&o, net, &cfg));
    wm_opt_config sd = wm_opt_default(WM_OPT_SD);
    WM_OK_OR_FAIL(wm_optimizer_create(&ro, ref, &sd));
    size_t len;
    float *g = wm_grad_buffer(ro, &len), *v = calloc(len, sizeof *v), *q = malloc(len * sizeof *q);
    const float lrs[3] = {0.1f, 0.03f, 0.0f};
    for (int step = 0; step < 3; step++) {
        WM_OK_OR_FAIL(wm_optimizer_set_lr(o, lrs[step]));
        WM_OK_OR_FAIL(wm_step(o, &d.b, NULL));
        WM_OK_OR_FAIL(wm_grad(ro, &d.b, NULL));
        memcpy(q, wm_net_params(ref, NULL), len * sizeof *q);
        for (size_t j = 0; j < len; j++) {
            v[j] = 0.9f * v[j] + g[j];
            q[j] -= lrs[step] * v[j];
        }
        WM_OK_OR_FAIL(wm_net_set_params(ref, q, len));
        assert_params_close(net, ref, 1e-5, "momentum schedule");
    }
    assert_int_equal(wm_optimizer_steps(o), 3);
    free(v), free(q);
    wm_optimizer_free(o), wm_optimizer_free(ro);
    wm_net_free(net), wm_net_free(ref);
}

/* Defect: wm_apply after wm_step re-applied the step's gradient on conv
 * nets and with a volume budget (steps = 2); on dense nets it was WM_ESTATE. */
static void test_apply_after_step_is_refused_on_every_path(void **state)
{
    (void)state;
    const char *archs[] = {"dense", "conv"};
    for (int a = 0; a < 2; a++)
        for (int vol = 0; vol < 2; vol++)
            for (int n = 1; n <= 4; n += 3) {
                data d;
                make_data(&d, n, 3);
                wm_net *net = small_net(archs[a], "circle", 2);
                wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
                cfg.volume = vol ? 1e-3f : 0.0f;
                wm_optimizer *o;
                WM_OK_OR_FAIL(wm_optimizer_create(&o, net, &cfg));
                WM_OK_OR_FAIL(wm_step(o, &d.b, NULL));
                float *snap = tu_snapshot(net);
                EXPECT_STATUS(WM_ESTATE, wm_apply(o));
                tu_assert_unchanged(net, snap);
                assert_int_equal(wm_optimizer_steps(o), 1);
                free(snap);
                wm_optimizer_free(o);
                wm_net_free(net);
            }
}

/* wm_net_init under a live optimizer: it restarts as a new one would. */
static void test_reinit_restarts_the_optimizer(void **state)
{
    (void)state;
    data d;
    make_data(&d, 4, 8);
    for (int kind = 1; kind < 3; kind++) {
        wm_net *net = small_net("dense", "line", 1), *fresh = small_net("dense", "line", 77);
        wm_opt_config cfg = wm_opt_default((wm_opt_kind)kind);
        wm_optimizer *o, *fo;
        WM_OK_OR_FAIL(wm_optimizer_create(&o, net, &cfg));
        WM_OK_OR_FAIL(wm_optimizer_create(&fo, fresh, &cfg));
        for (int i = 0; i < 3; i++)
            WM_OK_OR_FAIL(wm_step(o, &d.b, NULL));
        WM_OK_OR_FAIL(wm_grad(o, &d.b, NULL));
        WM_OK_OR_FAIL(wm_net_init(net, 77));
        EXPECT_STATUS(WM_ESTATE, wm_apply(o));     /* the old gradient is gone */
        assert_int_equal(wm_optimizer_steps(o), 0);
        for (int i = 0; i < 2; i++) {
            WM_OK_OR_FAIL(wm_step(o, &d.b, NULL));
            WM_OK_OR_FAIL(wm_step(fo, &d.b, NULL));
        }
        size_t n;
        const float *p = wm_net_params(net, &n);
        assert_memory_equal(p, wm_net_params(fresh, NULL), n * sizeof *p);
        wm_optimizer_free(o), wm_optimizer_free(fo);
        wm_net_free(net), wm_net_free(fresh);
    }
}

static void test_clone_is_deep_and_identical(void **state)
{
    (void)state;
    const char *archs[] = {"dense", "conv"};
    for (int a = 0; a < 2; a++) {
        data d;
        make_data(&d, 8, 4);
        wm_net *net = small_net(archs[a], "torus", 5), *c;
        /* torus nets take 2-D contexts */
        float s2[16];
        for (int i = 0; i < 16; i++)
            s2[i] = d.s[i / 2] * (i % 2 ? 0.5f : 1.0f);
        WM_OK_OR_FAIL(wm_net_clone(&c, net));
        float y1[24], y2[24], y3[24];
        WM_OK_OR_FAIL(wm_infer(net, d.x, s2, 8, y1));
        WM_OK_OR_FAIL(wm_infer(c, d.x, s2, 8, y2));
        assert_memory_equal(y1, y2, sizeof y1);
        /* training the original leaves the copy as it was */
        wm_optimizer *o;
        wm_opt_config cfg = wm_opt_default(WM_OPT_SD);
        WM_OK_OR_FAIL(wm_optimizer_create(&o, net, &cfg));
        d.b.s = s2;
        WM_OK_OR_FAIL(wm_step(o, &d.b, NULL));
        wm_optimizer_free(o);
        wm_net_free(net);                           /* and outlives it */
        WM_OK_OR_FAIL(wm_infer(c, d.x, s2, 8, y3));
        assert_memory_equal(y2, y3, sizeof y2);
        assert_int_equal(wm_net_n_layers(c), a ? 3 : 2);
        wm_net_free(c);
    }
    /* an uninitialised net: the copy grows on its own */
    wm_manifold *m = tu_manifold("circle");
    wm_net *net, *c;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 4, WM_COND_CONCAT));
    WM_OK_OR_FAIL(wm_net_dense(net, 3, WM_ACT_RELU));
    WM_OK_OR_FAIL(wm_net_clone(&c, net));
    WM_OK_OR_FAIL(wm_net_dense(c, 2, WM_ACT_NONE));
    assert_int_equal(wm_net_n_layers(net), 1);
    assert_int_equal(wm_net_n_layers(c), 2);
    float x1[4] = {0}, s1 = 0.5f, y1b[2];
    EXPECT_STATUS(WM_ESTATE, wm_infer(c, x1, &s1, 1, y1b));   /* not initialised */
    WM_OK_OR_FAIL(wm_net_init(c, 1));
    WM_OK_OR_FAIL(wm_infer(c, x1, &s1, 1, y1b));
    EXPECT_STATUS(WM_EINVAL, wm_net_clone(NULL, net));
    wm_net *bad = NULL;
    EXPECT_STATUS(WM_EINVAL, wm_net_clone(&bad, NULL));
    assert_null(bad);
    wm_net_free(c), wm_net_free(net);
    wm_manifold_free(m);
}

static void test_summary(void **state)
{
    (void)state;
    wm_net *net = small_net("conv", "circle", 1);
    char full[4096];
    WM_OK_OR_FAIL(wm_net_summary(net, full, sizeof full));
    const char *want[] = {"circle", "K = 3", "conv2d 3x3", "maxpool 2x2", "dense", "1x6x6", "3x6x6",
                          "3x3x3", "relu", "manifold", "softmax cross-entropy", "initialised"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(full, want[i]))
            fail_msg("summary lacks \"%s\":\n%s", want[i], full);
    char total[64];
    snprintf(total, sizeof total, "total parameters: %zu", wm_net_n_params(net));
    assert_non_null(strstr(full, total));
    /* the per-layer counts add up to the total */
    int in, out;
    size_t sum = 0;
    for (int l = 0; l < wm_net_n_layers(net); l++) {
        wm_activation act;
        WM_OK_OR_FAIL(wm_net_layer_info(net, l, &in, &out, &act));
        if (l != 1)
            sum += (size_t)3 * out * (in + 1);
    }
    assert_int_equal(sum, wm_net_n_params(net));
    /* snprintf semantics: every length truncates to a prefix, NUL-terminated */
    size_t L = strlen(full);
    for (size_t len = 1; len <= L + 1; len += 7) {
        char *b = malloc(len + 8);
        memset(b, 'X', len + 8);
        WM_OK_OR_FAIL(wm_net_summary(net, b, len));
        assert_int_equal(strlen(b), len - 1 < L ? len - 1 : L);
        assert_memory_equal(b, full, strlen(b));
        assert_int_equal(b[len], 'X');              /* nothing past len */
        free(b);
    }
    WM_OK_OR_FAIL(wm_net_summary(net, NULL, 0));
    char one[1] = {'X'};
    WM_OK_OR_FAIL(wm_net_summary(net, one, 1));
    assert_int_equal(one[0], 0);
    EXPECT_STATUS(WM_EINVAL, wm_net_summary(NULL, full, sizeof full));
    EXPECT_STATUS(WM_EINVAL, wm_net_summary(net, NULL, 10));
    wm_net_free(net);
    /* concat and uninitialised nets, products */
    wm_manifold *m = tu_manifold("cylinder");
    WM_OK_OR_FAIL(wm_net_create(&net, m, 5, WM_COND_CONCAT));
    WM_OK_OR_FAIL(wm_net_dense(net, 2, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_summary(net, full, sizeof full));
    assert_non_null(strstr(full, "(line x circle)"));
    assert_non_null(strstr(full, "not initialised"));
    assert_non_null(strstr(full, "one point"));
    assert_non_null(strstr(full, "concatenation"));
    wm_net_free(net);
    wm_manifold_free(m);
}

/* A checkpoint keeps the clip norm and a learning rate a schedule brought
 * to 0: resuming steps exactly as continuing does (the API fuzzer found the
 * clip lost in a round trip). */
static void test_checkpoint_keeps_controls(void **state)
{
    (void)state;
    char path[] = "/tmp/wm_controls_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    data d;
    make_data(&d, 8, 31);
    for (int kind = 0; kind < 3; kind++)
        for (int zero_lr = 0; zero_lr < 2; zero_lr++) {
            wm_net *net = small_net("dense", "circle", 6);
            wm_opt_config cfg = wm_opt_default((wm_opt_kind)kind);
            wm_optimizer *o, *o2;
            wm_net *n2;
            WM_OK_OR_FAIL(wm_optimizer_create(&o, net, &cfg));
            WM_OK_OR_FAIL(wm_optimizer_set_clip_norm(o, 0.05f));
            WM_OK_OR_FAIL(wm_step(o, &d.b, NULL));
            WM_OK_OR_FAIL(wm_optimizer_set_lr(o, zero_lr ? 0.0f : 0.02f));
            WM_OK_OR_FAIL(wm_optimizer_save(o, path));
            WM_OK_OR_FAIL(wm_optimizer_load(&o2, &n2, path, NULL, NULL));
            assert_float_equal(wm_optimizer_lr(o2), wm_optimizer_lr(o), 0.0f);
            for (int i = 0; i < 2; i++) {
                WM_OK_OR_FAIL(wm_step(o, &d.b, NULL));
                WM_OK_OR_FAIL(wm_step(o2, &d.b, NULL));
            }
            size_t n;
            const float *p = wm_net_params(net, &n);
            assert_memory_equal(p, wm_net_params(n2, NULL), n * sizeof *p);
            wm_optimizer_free(o), wm_optimizer_free(o2);
            wm_net_free(net), wm_net_free(n2);
        }
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clip_on_every_path),
        cmocka_unit_test(test_clip_bounds_the_sd_step),
        cmocka_unit_test(test_clip_and_lr_arguments),
        cmocka_unit_test(test_lr_schedule_keeps_the_velocity),
        cmocka_unit_test(test_apply_after_step_is_refused_on_every_path),
        cmocka_unit_test(test_reinit_restarts_the_optimizer),
        cmocka_unit_test(test_clone_is_deep_and_identical),
        cmocka_unit_test(test_summary),
        cmocka_unit_test(test_checkpoint_keeps_controls),
    };
    return cmocka_run_group_tests_name("controls", tests, NULL, NULL);
}
