/* test_attack_numeric.c -- the class "never a silent NaN": values that are
 * valid one by one (finite inputs, finite parameters, a basis callback that
 * passed its checks at creation, a step count within uint64) but whose
 * result does not fit in float. Each call must either give finite results
 * or fail with a status and a message, changing nothing: the net's
 * parameters, the optimizer's moments and step count, and the caller's
 * output buffers. */
#include <float.h>
#include <limits.h>

#include "testutil.h"

/* ---- helpers ---------------------------------------------------------------- */

static int all_finite(const float *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(a[i]))
            return 0;
    return 1;
}

static void assert_params_finite(const wm_net *net)
{
    size_t len;
    const float *q = wm_net_params(net, &len);
    assert_true(all_finite(q, len));
}

static void expect_msg(const char *needle)
{
    if (!strstr(wm_last_error(), needle))
        fail_msg("message '%s' does not mention '%s'", wm_last_error(), needle);
}

/* An optimizer's observable state: moments and step count. */
typedef struct {
    float *m;
    size_t len;
    uint64_t steps;
} opt_snap;

static opt_snap snap_opt(const wm_optimizer *o)
{
    opt_snap s = {NULL, wm_optimizer_state_len(o), wm_optimizer_steps(o)};
    s.m = malloc(sizeof(float) * (s.len + 1));
    assert_non_null(s.m);
    WM_OK_OR_FAIL(wm_optimizer_get_state(o, s.len ? s.m : NULL, s.len));
    return s;
}

static void assert_opt_unchanged(const wm_optimizer *o, opt_snap *s)
{
    opt_snap now = snap_opt(o);
    assert_int_equal(now.len, s->len);
    assert_int_equal(now.steps, s->steps);
    assert_memory_equal(now.m, s->m, sizeof(float) * s->len);
    free(now.m);
    free(s->m);
}

/* ---- custom bases whose values go bad after creation ---------------------------- */

/* Exactly representable contexts at which the callbacks misbehave: never a
 * Gauss-Legendre node, so wm_manifold_custom's checks cannot see them. */
#define S_NAN 0.125f
#define S_INF 0.375f
#define S_HUGE 0.625f
#define S_HOLE 0.875f

static void bad_basis(const float *s, float *c, void *user)
{
    (void)user;
    c[0] = 1.0f;
    if (s[0] == S_HOLE)
        return;                                  /* c[1] never written */
    c[1] = s[0] == S_NAN ? NAN : s[0] == S_INF ? INFINITY : s[0] == S_HUGE ? 3e38f : s[0];
}

enum { BIN = 3, BOUT = 4, BN = 6 };

/* Every call that evaluates the basis at each bad context: WM_EINVAL naming
 * the callback, nothing written, nothing changed. Then a good context works. */
static void attack_net_with_bad_basis(wm_net *net, int manifold_net)
{
    const wm_manifold *m = wm_net_manifold(net);
    int dim = wm_manifold_dim(m), K = wm_manifold_n_basis(m);
    wm_optimizer *opt;
    wm_opt_config cfg = wm_opt_default(WM_OPT_MOMENTUM);
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
    float x[BN * BIN], s[BN * 2], y[BN * BOUT], c[64], w[BOUT * (BIN + 8)], b[BOUT], loss = -1, acc = -1;
    int32_t labels[BN];
    uint64_t rng = 11;
    tu_fill(x, BN * BIN, -1, 1, &rng);
    for (int i = 0; i < BN; i++) {
        labels[i] = i % BOUT;
        for (int d = 0; d < dim; d++)
            s[i * dim + d] = 0.5f;
    }
    wm_batch batch = {BN, x, s, labels, NULL};
    WM_OK_OR_FAIL(wm_step(opt, &batch, NULL));          /* a good batch trains */
    const float bad[] = {S_NAN, S_INF, S_HUGE, S_HOLE};
    size_t ws_bytes = wm_infer_workspace_size(net, BN);
    void *ws = malloc(ws_bytes);
    for (int v = 0; v < 4; v++) {
        s[4 * dim] = bad[v];                            /* sample 4, coordinate 0 */
        float *snap = tu_snapshot(net);
        opt_snap os = snap_opt(opt);
        for (size_t j = 0; j < sizeof y / sizeof y[0]; j++)
            y[j] = -7.0f;
        for (int k = 0; k < K; k++)
            c[k] = -7.0f;
        if (bad[v] == S_HUGE) {
            /* c = 3e38 is a finite c(s), and a finite feature of a concat
             * net; only c_hat = L^-1 c overflows, on a manifold net */
            WM_OK_OR_FAIL(wm_manifold_basis(m, s + 4 * dim, c));
            assert_true(all_finite(c, (size_t)K));
            if (!manifold_net) {
                free(snap);
                free(os.m);
                continue;
            }
        } else {
            EXPECT_STATUS(WM_EINVAL, wm_manifold_basis(m, s + 4 * dim, c));
            expect_msg("custom basis");
            for (int k = 0; k < K; k++)
                assert_true(c[k] == -7.0f);
        }
        EXPECT_STATUS(WM_EINVAL, wm_infer(net, x, s, BN, y));
        expect_msg("custom basis");
        EXPECT_STATUS(WM_EINVAL, wm_infer_ws(net, x, s, BN, y, ws, ws_bytes));
        for (size_t j = 0; j < sizeof y / sizeof y[0]; j++)
            assert_true(y[j] == -7.0f);
        if (manifold_net) {
            w[0] = -7.0f;
            EXPECT_STATUS(WM_EINVAL, wm_net_weights_at(net, 0, s + 4 * dim, w, b));
            assert_true(w[0] == -7.0f);
        }
        EXPECT_STATUS(WM_EINVAL, wm_step(opt, &batch, &loss));
        expect_msg("custom basis");
        EXPECT_STATUS(WM_EINVAL, wm_grad(opt, &batch, &loss));
        EXPECT_STATUS(WM_EINVAL, wm_evaluate(net, &batch, &loss, &acc));
        assert_true(loss == -1 && acc == -1);
        tu_assert_unchanged(net, snap);
        assert_opt_unchanged(opt, &os);
        free(snap);
    }
    s[4 * dim] = 0.5f;
    WM_OK_OR_FAIL(wm_infer(net, x, s, BN, y));
    assert_true(all_finite(y, BN * BOUT));
    WM_OK_OR_FAIL(wm_step(opt, &batch, NULL));
    assert_params_finite(net);
    free(ws);
    wm_optimizer_free(opt);
}

/* Defect: a custom callback that returns NaN/Inf (or leaves a value
 * unwritten, or a value whose c_hat overflows) at a context that is not a
 * quadrature node went through unchecked: wm_manifold_basis returned it,
 * wm_infer and wm_net_weights_at wrote NaN with WM_OK, wm_step blamed the
 * learning rate (WM_ENUMERIC). Now the values computed from a custom basis
 * (c, c_hat, concat features) are checked where they are computed and
 * refused with WM_EINVAL, on manifold and concat nets, and as a factor of a
 * product; the callback is still called once per sample and inference. */
static void test_custom_basis_bad_after_creation(void **state)
{
    (void)state;
    wm_manifold *cm, *circle = tu_manifold("circle"), *prod;
    WM_OK_OR_FAIL(wm_manifold_custom(&cm, 1, 2, NULL, bad_basis, NULL));
    WM_OK_OR_FAIL(wm_manifold_product(&prod, cm, circle));
    const wm_manifold *ms[2] = {cm, prod};
    for (int mi = 0; mi < 2; mi++)
        for (int cond = 0; cond < 2; cond++) {
            wm_net *net;
            WM_OK_OR_FAIL(wm_net_create(&net, ms[mi], BIN, (wm_conditioning)cond));
            WM_OK_OR_FAIL(wm_net_dense(net, 5, WM_ACT_TANH));
            WM_OK_OR_FAIL(wm_net_dense(net, BOUT, WM_ACT_NONE));
            WM_OK_OR_FAIL(wm_net_init(net, 3));
            attack_net_with_bad_basis(net, cond == WM_COND_MANIFOLD);
            wm_net_free(net);
        }
    wm_manifold_free(prod);
    wm_manifold_free(circle);
    wm_manifold_free(cm);
}

/* ---- finite inputs or parameters whose outputs overflow ------------------------------ */

/* Defect: wm_infer returned WM_OK with NaN/Inf outputs when finite inputs
 * (1e38) or finite parameters overflowed float on the way (wm_evaluate
 * already said WM_ENUMERIC for the same batch). Now WM_ENUMERIC, naming the
 * output; a batch of one chunk (n <= 256) writes nothing. */
static void test_infer_outputs_that_overflow(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("line");
    enum { N = 5, IN = 4, OUT = 3 };
    const int kinds = 3;               /* dense; dense + layernorm; conv + pool + dense */
    for (int kind = 0; kind < kinds; kind++) {
        wm_net *net;
        WM_OK_OR_FAIL(wm_net_create(&net, m, IN, WM_COND_MANIFOLD));
        if (kind == 2) {
            WM_OK_OR_FAIL(wm_net_input_shape(net, 1, 2, 2));
            WM_OK_OR_FAIL(wm_net_conv2d(net, 2, 2, 1, 1, WM_ACT_NONE));
            WM_OK_OR_FAIL(wm_net_avgpool(net, 2));
        }
        WM_OK_OR_FAIL(wm_net_dense(net, 6, WM_ACT_NONE));
        if (kind == 1)
            WM_OK_OR_FAIL(wm_net_layernorm(net));
        WM_OK_OR_FAIL(wm_net_dense(net, OUT, WM_ACT_NONE));
        WM_OK_OR_FAIL(wm_net_init(net, 5));
        float x[N * IN], s[N], y[N * OUT];
        uint64_t rng = 3;
        tu_fill(x, N * IN, -1, 1, &rng);
        tu_fill(s, N, 0, 1, &rng);
        WM_OK_OR_FAIL(wm_infer(net, x, s, N, y));
        assert_true(all_finite(y, N * OUT));
        for (int j = 0; j < IN; j++)
            x[3 * IN + j] = j % 2 ? -3e38f : 3e38f;       /* finite, and far too large */
        float *snap = tu_snapshot(net);
        for (int j = 0; j < N * OUT; j++)
            y[j] = -7.0f;
        EXPECT_STATUS(WM_ENUMERIC, wm_infer(net, x, s, N, y));
        expect_msg("out[3]");
        for (int j = 0; j < N * OUT; j++)
            assert_true(y[j] == -7.0f);
        size_t ws_bytes = wm_infer_workspace_size(net, N);
        void *ws = malloc(ws_bytes);
        EXPECT_STATUS(WM_ENUMERIC, wm_infer_ws(net, x, s, N, y, ws, ws_bytes));
        for (int j = 0; j < N * OUT; j++)
            assert_true(y[j] == -7.0f);
        free(ws);
        tu_assert_unchanged(net, snap);
        free(snap);
        wm_net_free(net);
    }
    wm_manifold_free(m);

    /* finite parameters the stacked decomposition cannot add up in float: a
     * degree-16 B-spline (c_hat of order 1e5) with every Q = 1e36 */
    wm_manifold *bs;
    WM_OK_OR_FAIL(wm_manifold_bspline(&bs, 20, 16, 0));
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, bs, 2, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(net, 2, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_set_loss(net, WM_LOSS_MSE));
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    size_t np = wm_net_n_params(net);
    float *q = malloc(sizeof(float) * np);
    for (size_t j = 0; j < np; j++)
        q[j] = 1e36f;
    WM_OK_OR_FAIL(wm_net_set_params(net, q, np));
    float x[2] = {0.5f, -0.25f}, s = 0.3f, y[2] = {-7.0f, -7.0f};
    wm_status st = wm_infer(net, x, &s, 1, y);
    if (st == WM_OK)
        assert_true(all_finite(y, 2));
    else {
        assert_int_equal(st, WM_ENUMERIC);
        assert_true(y[0] == -7.0f && y[1] == -7.0f);
    }
    tu_assert_unchanged(net, q);
    free(q);
    wm_net_free(net);
    wm_manifold_free(bs);
}

/* ---- control points that overflow in Q ----------------------------------------------- */

static void scaled_basis(const float *s, float *c, void *user)
{
    (void)user;
    c[0] = 1e4f;
    c[1] = 1e4f * s[0];
}

/* Defect: on a basis with values above 1 (here 1e4), Q = L^T P grows by the
 * same factor, so wm_net_set_control_point with finite w = 1e36 wrote +Inf
 * into the parameters and returned WM_OK. Now WM_ENUMERIC, nothing changed;
 * values that fit are written and read back. */
static void test_set_control_point_that_overflows(void **state)
{
    (void)state;
    wm_manifold *cm;
    WM_OK_OR_FAIL(wm_manifold_custom(&cm, 1, 2, NULL, scaled_basis, NULL));
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, cm, 2, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(net, 2, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_set_loss(net, WM_LOSS_MSE));
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    for (int k = 0; k < 2; k++) {
        float w[4] = {1, 2, 3, 4}, b[2] = {5, 6};
        float *snap = tu_snapshot(net);
        w[2] = 1e36f;
        EXPECT_STATUS(WM_ENUMERIC, wm_net_set_control_point(net, 0, k, w, b));
        expect_msg("w[2]");
        tu_assert_unchanged(net, snap);
        w[2] = 3;
        b[1] = -FLT_MAX;
        EXPECT_STATUS(WM_ENUMERIC, wm_net_set_control_point(net, 0, k, w, b));
        expect_msg("b[1]");
        tu_assert_unchanged(net, snap);           /* w fitted, but b did not: neither written */
        EXPECT_STATUS(WM_ENUMERIC, wm_net_set_control_point(net, 0, k, NULL, b));
        tu_assert_unchanged(net, snap);
        free(snap);
        b[1] = 6;
        WM_OK_OR_FAIL(wm_net_set_control_point(net, 0, k, w, b));
        assert_params_finite(net);
        float rw[4], rb[2];
        WM_OK_OR_FAIL(wm_net_control_point(net, 0, k, rw, rb));
        for (int j = 0; j < 4; j++)
            assert_float_equal(rw[j], w[j], 1e-3 * fabs(w[j]));
        for (int j = 0; j < 2; j++)
            assert_float_equal(rb[j], b[j], 1e-3 * fabs(b[j]));
    }
    wm_net_free(net);
    wm_manifold_free(cm);
}

static void tiny_basis(const float *s, float *c, void *user)
{
    (void)user;
    c[0] = 1e-4f;
    c[1] = 1e-4f * s[0];
}

/* Defect: reading back finite parameters gave +-Inf with WM_OK: on a basis
 * with small values (L^-1 of order 1e4) wm_net_control_point's P = L^-T Q
 * overflowed, and wm_net_weights_at's W(s) = sum_k c_hat_k(s) Q_k did for
 * Q near FLT_MAX. Now WM_ENUMERIC, the caller's w and b untouched. */
static void test_readback_that_overflows(void **state)
{
    (void)state;
    wm_manifold *tm, *circle = tu_manifold("circle");
    WM_OK_OR_FAIL(wm_manifold_custom(&tm, 1, 2, NULL, tiny_basis, NULL));
    const wm_manifold *ms[2] = {tm, circle};
    for (int mi = 0; mi < 2; mi++) {
        wm_net *net;
        WM_OK_OR_FAIL(wm_net_create(&net, ms[mi], 2, WM_COND_MANIFOLD));
        WM_OK_OR_FAIL(wm_net_dense(net, 2, WM_ACT_NONE));
        WM_OK_OR_FAIL(wm_net_init(net, 1));
        size_t np = wm_net_n_params(net);
        float *q = malloc(sizeof(float) * np), w[4], b[2], s = 0.125f;
        for (size_t j = 0; j < np; j++)
            q[j] = mi == 0 ? 1e36f : FLT_MAX / 2;
        WM_OK_OR_FAIL(wm_net_set_params(net, q, np));
        for (int j = 0; j < 4; j++)
            w[j] = -7.0f;
        b[0] = b[1] = -7.0f;
        if (mi == 0) {                        /* P_0 = (L^-T Q)_0 ~ 1e4 * 1e36 */
            EXPECT_STATUS(WM_ENUMERIC, wm_net_control_point(net, 0, 0, w, b));
            expect_msg("P_0");
            EXPECT_STATUS(WM_ENUMERIC, wm_net_control_point(net, 0, 0, NULL, b));
        } else {                              /* W(1/8) = Q_0 + Q_1 + Q_2 = 1.5 FLT_MAX */
            EXPECT_STATUS(WM_ENUMERIC, wm_net_weights_at(net, 0, &s, w, b));
            expect_msg("w[0]");
            EXPECT_STATUS(WM_ENUMERIC, wm_net_weights_at(net, 0, &s, NULL, b));
            expect_msg("b[0]");
        }
        for (int j = 0; j < 4; j++)
            assert_true(w[j] == -7.0f);
        assert_true(b[0] == -7.0f && b[1] == -7.0f);
        tu_assert_unchanged(net, q);
        /* values that fit read back finite */
        for (size_t j = 0; j < np; j++)
            q[j] = 1.0f;
        WM_OK_OR_FAIL(wm_net_set_params(net, q, np));
        WM_OK_OR_FAIL(wm_net_control_point(net, 0, 0, w, b));
        assert_true(all_finite(w, 4) && all_finite(b, 2));
        WM_OK_OR_FAIL(wm_net_weights_at(net, 0, &s, w, b));
        assert_true(all_finite(w, 4) && all_finite(b, 2));
        free(q);
        wm_net_free(net);
    }
    wm_manifold_free(circle);
    wm_manifold_free(tm);
}

/* ---- the step count at the end of uint64 ------------------------------------------ */

/* Defect: Adam's bias correction used (t + 1) in uint64; a step count of
 * UINT64_MAX (wm_optimizer_set_state, or a checkpoint) wrapped it to 0,
 * 1 - beta^0 = 0, and every step from then on was WM_ENUMERIC: the
 * optimizer was bricked. The count now saturates and training goes on. */
static void test_step_count_at_uint64_max(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("circle");
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 3, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(net, 4, WM_ACT_RELU));
    WM_OK_OR_FAIL(wm_net_dense(net, 3, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(net, 2));
    float x[12], s[4];
    int32_t labels[4] = {0, 1, 2, 0};
    uint64_t rng = 9;
    tu_fill(x, 12, -1, 1, &rng);
    tu_fill(s, 4, 0, 1, &rng);
    wm_batch b1 = {1, x, s, labels, NULL}, b4 = {4, x, s, labels, NULL};
    for (int kind = 0; kind < 3; kind++) {
        wm_opt_config cfg = wm_opt_default((wm_opt_kind)kind);
        wm_optimizer *opt;
        WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
        WM_OK_OR_FAIL(wm_step(opt, &b4, NULL));
        size_t len = wm_optimizer_state_len(opt);
        float *st = calloc(len + 1, sizeof(float));
        WM_OK_OR_FAIL(wm_optimizer_get_state(opt, len ? st : NULL, len));
        const uint64_t counts[] = {UINT64_MAX - 1, UINT64_MAX};
        for (int c = 0; c < 2; c++) {
            WM_OK_OR_FAIL(wm_optimizer_set_state(opt, len ? st : NULL, len, counts[c]));
            for (int i = 0; i < 3; i++) {   /* one sample (rank-1 path), four, then wm_grad + wm_apply */
                if (i < 2)
                    WM_OK_OR_FAIL(wm_step(opt, i ? &b4 : &b1, NULL));
                else {
                    WM_OK_OR_FAIL(wm_grad(opt, &b4, NULL));
                    WM_OK_OR_FAIL(wm_apply(opt));
                }
                assert_params_finite(net);
                assert_true(wm_optimizer_steps(opt) == UINT64_MAX);
            }
        }
        /* and through a checkpoint */
        char path[] = "/tmp/wm_attack_ckpt_XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        WM_OK_OR_FAIL(wm_optimizer_save(opt, path));
        wm_optimizer *o2;
        wm_net *n2;
        WM_OK_OR_FAIL(wm_optimizer_load(&o2, &n2, path, NULL, NULL));
        assert_true(wm_optimizer_steps(o2) == UINT64_MAX);
        WM_OK_OR_FAIL(wm_step(o2, &b4, NULL));
        assert_params_finite(n2);
        wm_optimizer_free(o2);
        wm_net_free(n2);
        remove(path);
        free(st);
        wm_optimizer_free(opt);
        (void)fd;
    }
    wm_net_free(net);
    wm_manifold_free(m);
}

/* ---- divergence: every optimizer, every setting at its edge, every layer kind -------- */

/* A net of the given kind: 0 dense, 1 conv + maxpool + dense, 2 dense +
 * layernorm + FiLM + residual, 3 dense + dropout. MSE on a line. */
static wm_net *kind_net(int kind)
{
    wm_manifold *m = tu_manifold("line");
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 16, WM_COND_MANIFOLD));
    wm_manifold_free(m);
    if (kind == 1) {
        WM_OK_OR_FAIL(wm_net_input_shape(net, 1, 4, 4));
        WM_OK_OR_FAIL(wm_net_conv2d(net, 3, 3, 1, 1, WM_ACT_RELU));
        WM_OK_OR_FAIL(wm_net_maxpool(net, 2));
    }
    WM_OK_OR_FAIL(wm_net_dense(net, 8, WM_ACT_TANH));
    if (kind == 2) {
        WM_OK_OR_FAIL(wm_net_layernorm(net));
        WM_OK_OR_FAIL(wm_net_film(net));
        WM_OK_OR_FAIL(wm_net_residual(net, 0, WM_ACT_NONE));
    }
    if (kind == 3)
        WM_OK_OR_FAIL(wm_net_dropout(net, 0.25f));
    WM_OK_OR_FAIL(wm_net_dense(net, 3, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_set_loss(net, WM_LOSS_MSE));
    WM_OK_OR_FAIL(wm_net_init(net, 4));
    return net;
}

/* Every step of a run that diverges is WM_OK with finite parameters, or
 * WM_ENUMERIC with the parameters, moments, step count and *loss exactly as
 * before it; once refused, the next step is refused too (nothing moved). */
static void test_divergence_every_optimizer_and_layer(void **state)
{
    (void)state;
    enum { N = 8 };
    float x[N * 16], s[N], t[N * 3];
    uint64_t rng = 21;
    tu_fill(x, N * 16, -1, 1, &rng);
    tu_fill(s, N, 0, 1, &rng);
    tu_fill(t, N * 3, -1, 1, &rng);
    const int n_settings = 6;
    for (int kind = 0; kind < 4; kind++)
        for (int ok = 0; ok < 3; ok++)
            for (int set = 0; set < n_settings; set++)
                for (int rows = 1; rows <= N; rows += N - 1) {   /* one sample, and a batch */
                    wm_net *net = kind_net(kind);
                    wm_opt_config cfg = wm_opt_default((wm_opt_kind)ok);
                    switch (set) {
                    case 0: cfg.lr = FLT_MAX; break;
                    case 1: cfg.lr = 1e30f; break;
                    case 2: cfg.weight_decay = FLT_MAX; break;
                    case 3: cfg.volume = FLT_MAX; break;
                    case 4: cfg.lr = 1e20f, cfg.momentum = 1.0f; break;
                    default: cfg.lr = 1e-45f, cfg.eps = FLT_MIN, cfg.beta2 = 0; break;
                    }
                    wm_optimizer *opt;
                    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
                    wm_batch b = {rows, x, s, NULL, t};
                    wm_status st = WM_OK;
                    for (int i = 0; i < 30 && st == WM_OK; i++) {
                        float *snap = tu_snapshot(net), loss = -7.0f;
                        opt_snap os = snap_opt(opt);
                        st = wm_step(opt, &b, &loss);
                        if (st == WM_OK) {
                            size_t np;
                            const float *q = wm_net_params(net, &np);
                            if (!isfinite(loss) || !all_finite(q, np))
                                fail_msg("kind %d opt %d setting %d rows %d step %d: WM_OK with a "
                                         "non-finite loss or parameter", kind, ok, set, rows, i);
                            free(os.m);
                        } else {
                            if (st != WM_ENUMERIC)
                                fail_msg("kind %d opt %d setting %d: %s (%s)", kind, ok, set,
                                         wm_status_str(st), wm_last_error());
                            assert_true(strlen(wm_last_error()) > 0);
                            assert_true(loss == -7.0f);
                            tu_assert_unchanged(net, snap);
                            assert_opt_unchanged(opt, &os);
                            EXPECT_STATUS(WM_ENUMERIC, wm_step(opt, &b, NULL));
                            tu_assert_unchanged(net, snap);
                        }
                        free(snap);
                    }
                    wm_optimizer_free(opt);
                    wm_net_free(net);
                }
}

/* A gradient buffer the caller overwrote with finite values too large to
 * apply: WM_ENUMERIC, nothing changed, for every optimizer. */
static void test_apply_of_a_huge_finite_gradient(void **state)
{
    (void)state;
    float x[16 * 2], s[2], t[6];
    uint64_t rng = 2;
    tu_fill(x, 32, -1, 1, &rng);
    tu_fill(s, 2, 0, 1, &rng);
    tu_fill(t, 6, -1, 1, &rng);
    for (int ok = 0; ok < 3; ok++) {
        wm_net *net = kind_net(0);
        wm_opt_config cfg = wm_opt_default((wm_opt_kind)ok);
        cfg.lr = ok == WM_OPT_ADAM ? 1e38f : 1.0f;
        wm_optimizer *opt;
        WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
        wm_batch b = {2, x, s, NULL, t};
        WM_OK_OR_FAIL(wm_grad(opt, &b, NULL));
        size_t len;
        float *g = wm_grad_buffer(opt, &len);
        for (size_t j = 0; j < len; j++)
            g[j] = j % 2 ? FLT_MAX : -FLT_MAX;
        float *snap = tu_snapshot(net);
        opt_snap os = snap_opt(opt);
        EXPECT_STATUS(WM_ENUMERIC, wm_apply(opt));
        tu_assert_unchanged(net, snap);
        assert_opt_unchanged(opt, &os);
        free(snap);
        wm_optimizer_free(opt);
        wm_net_free(net);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_custom_basis_bad_after_creation),
        cmocka_unit_test(test_infer_outputs_that_overflow),
        cmocka_unit_test(test_set_control_point_that_overflows),
        cmocka_unit_test(test_readback_that_overflows),
        cmocka_unit_test(test_step_count_at_uint64_max),
        cmocka_unit_test(test_divergence_every_optimizer_and_layer),
        cmocka_unit_test(test_apply_of_a_huge_finite_gradient),
    };
    return cmocka_run_group_tests_name("attack_numeric", tests, NULL, NULL);
}
