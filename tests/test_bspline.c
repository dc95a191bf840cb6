/* test_bspline.c -- the local-support path of open B-spline nets (net.h,
 * layers/dense.c): only degree + 1 control points per sample, kept in P
 * coordinates, the gradient brought back to Q by a banded solve. Every
 * check compares a net on the local path with its twin on the dense path
 * (the same net with the local path switched off: net->local_p = -1 before
 * wm_net_init, so it never gets a P cache): outputs, gradients and whole
 * optimizer trajectories agree to float rounding, for open splines of 4..16
 * control points and degrees 1..3, mixed and shared contexts, contexts at 0,
 * at 1 and on the knots. The paper's update itself (SD moves P by exactly
 * -lr (G^-1 (x) I) dL/dP) is test_optim.c's, which runs B-splines on this
 * path. */
#include "testutil.h"

#include "net.h"
#include "optim.h"

enum { IN = 6, HID = 7, OUT = 3, NMAX = 48 };

/* A net on B-spline (n, p), local or dense, with random spread parameters. */
static wm_net *build(int n_control, int degree, int local, wm_loss loss)
{
    wm_manifold *m;
    wm_net *net;
    WM_OK_OR_FAIL(wm_manifold_bspline(&m, n_control, degree, 0));
    WM_OK_OR_FAIL(wm_net_create(&net, m, IN, WM_COND_MANIFOLD));
    wm_manifold_free(m);
    assert_int_equal(net->local_p, degree);      /* open B-splines take the local path */
    if (!local)
        net->local_p = -1;
    WM_OK_OR_FAIL(wm_net_dense(net, HID, WM_ACT_TANH));
    WM_OK_OR_FAIL(wm_net_dense(net, OUT, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_set_loss(net, loss));
    WM_OK_OR_FAIL(wm_net_init(net, 5));
    size_t np;
    wm_net_params(net, &np);
    float *q = malloc(np * sizeof *q);
    uint64_t st = 77;
    tu_fill(q, np, -0.7, 0.7, &st);
    WM_OK_OR_FAIL(wm_net_set_params(net, q, np));
    free(q);
    if (local)
        assert_true(net->pcache && net->pversion == net->version);
    else
        assert_true(net->pcache == NULL);
    return net;
}

/* n contexts: 0, 1, every knot, then random; shared: all equal to s[0] = v. */
static void contexts(int n_control, int degree, int n, int shared, float v, float *s, uint64_t *st)
{
    int pieces = n_control - degree, j = 0;
    s[j++] = 0.0f;
    s[j++] = 1.0f;
    for (int g = 1; g < pieces && j < n; g++)
        s[j++] = (float)g / (float)pieces;
    for (; j < n; j++)
        s[j] = (float)tu_uniform(st);
    if (shared)
        for (j = 0; j < n; j++)
            s[j] = v;
}

static double max_abs_diff(const float *a, const float *b, size_t n, double *scale)
{
    double d = 0, m = 0;
    for (size_t j = 0; j < n; j++) {
        d = fmax(d, fabs((double)a[j] - b[j]));
        m = fmax(m, fabs((double)b[j]));
    }
    *scale = m;
    return d;
}

/* Outputs (wm_infer), loss and gradient (wm_grad) of the two paths. */
static void compare_once(int n_control, int degree, int n, int shared, float v)
{
    wm_net *loc = build(n_control, degree, 1, WM_LOSS_MSE), *den = build(n_control, degree, 0, WM_LOSS_MSE);
    uint64_t st = (uint64_t)(n_control * 131 + degree * 7 + n + shared);
    float x[NMAX * IN], s[NMAX], targets[NMAX * OUT], y1[NMAX * OUT], y2[NMAX * OUT];
    tu_fill(x, (size_t)n * IN, -1, 1, &st);
    tu_fill(targets, (size_t)n * OUT, -1, 1, &st);
    contexts(n_control, degree, n, shared, v, s, &st);
    WM_OK_OR_FAIL(wm_infer(loc, x, s, n, y1));
    WM_OK_OR_FAIL(wm_infer(den, x, s, n, y2));
    double scale, d = max_abs_diff(y1, y2, (size_t)n * OUT, &scale);
    if (!(d <= 2e-6 * (1 + scale)))
        fail_msg("bspline(%d,%d) n=%d shared=%d s=%g: outputs differ by %.3g (scale %.3g)", n_control,
                 degree, n, shared, v, d, scale);

    wm_optimizer *o1, *o2;
    wm_opt_config cfg = wm_opt_default(WM_OPT_SD);
    WM_OK_OR_FAIL(wm_optimizer_create(&o1, loc, &cfg));
    WM_OK_OR_FAIL(wm_optimizer_create(&o2, den, &cfg));
    wm_batch b = {n, x, s, NULL, targets};
    float l1, l2;
    WM_OK_OR_FAIL(wm_grad(o1, &b, &l1));
    WM_OK_OR_FAIL(wm_grad(o2, &b, &l2));
    assert_true(fabs(l1 - l2) <= 2e-6 * (1 + fabs(l2)));
    size_t np;
    const float *g1 = wm_grad_buffer(o1, &np), *g2 = wm_grad_buffer(o2, NULL);
    d = max_abs_diff(g1, g2, np, &scale);
    if (!(scale > 1e-3 && d <= 2e-5 * scale))
        fail_msg("bspline(%d,%d) n=%d shared=%d s=%g: gradients differ by %.3g (scale %.3g)", n_control,
                 degree, n, shared, v, d, scale);
    wm_optimizer_free(o1), wm_optimizer_free(o2);
    wm_net_free(loc), wm_net_free(den);
}

static void test_local_matches_dense(void **state)
{
    (void)state;
    for (int degree = 1; degree <= 3; degree++)
        for (int nc = degree + 1 > 4 ? degree + 1 : 4; nc <= 16; nc++) {
            uint64_t st = (uint64_t)nc;
            int pieces = nc - degree;
            compare_once(nc, degree, NMAX, 0, 0.0f);           /* mixed, batch 48 */
            compare_once(nc, degree, 5, 0, 0.0f);              /* mixed, a few */
            compare_once(nc, degree, 1, 0, 0.0f);              /* one sample: s = 0 */
            float shared_at[4] = {0.0f, 1.0f, (float)(pieces / 2) / (float)pieces, (float)tu_uniform(&st)};
            for (int k = 0; k < 4; k++)
                compare_once(nc, degree, 9, 1, shared_at[k]);  /* shared: 0, 1, a knot, random */
        }
}

/* The P cache holds P = L^-T Q of every manifold dense layer: compared with
 * wm_net_control_point's P_k (computed from Q) to float rounding. */
static void check_cache_is_p(const wm_net *net)
{
    assert_true(net->pcache && net->pversion == net->version);
    for (int l = 0; l < net->n_layers; l++) {
        const wm_layer *ly = &net->layers[l];
        size_t wn = (size_t)ly->rows * ly->cols;
        float w[HID * IN], b[HID];
        for (int k = 0; k < net->Kp; k++) {
            WM_OK_OR_FAIL(wm_net_control_point(net, l, k, w, b));
            double sw, dw = max_abs_diff(net->pcache + ly->w_off + k * wn, w, wn, &sw);
            double sb, db = max_abs_diff(net->pcache + ly->b_off + (size_t)k * ly->rows, b,
                                         (size_t)ly->rows, &sb);
            if (!(dw <= 1e-5 * (1 + sw) && db <= 1e-5 * (1 + sb)))
                fail_msg("layer %d point %d: the cache differs from P by %.3g (w) %.3g (b)", l, k, dw, db);
        }
    }
}

/* Several steps of each optimizer: the local net's Q follows the dense one's.
 * wd < 0: the default decay of the kind; clip > 0: clip the gradient there. */
static void trajectory_with(wm_opt_kind kind, int n_control, int degree, int n, int shared, float wd,
                            float clip)
{
    wm_net *loc = build(n_control, degree, 1, WM_LOSS_SOFTMAX_CE);
    wm_net *den = build(n_control, degree, 0, WM_LOSS_SOFTMAX_CE);
    wm_optimizer *o1, *o2;
    wm_opt_config cfg = wm_opt_default(kind);
    cfg.lr = kind == WM_OPT_ADAM ? 0.01f : 0.03f;
    cfg.weight_decay = wd >= 0 ? wd : kind == WM_OPT_SD ? 0.0f : 0.01f;
    WM_OK_OR_FAIL(wm_optimizer_create(&o1, loc, &cfg));
    WM_OK_OR_FAIL(wm_optimizer_create(&o2, den, &cfg));
    WM_OK_OR_FAIL(wm_optimizer_set_clip_norm(o1, clip));
    WM_OK_OR_FAIL(wm_optimizer_set_clip_norm(o2, clip));
    uint64_t st = 99;
    size_t np;
    for (int step = 0; step < 6; step++) {
        float x[NMAX * IN], s[NMAX], l1, l2;
        int32_t labels[NMAX];
        tu_fill(x, (size_t)n * IN, -1, 1, &st);
        int sh = shared == 2 ? step % 2 : shared;      /* 2: shared and mixed steps in turn */
        contexts(n_control, degree, n, sh, (float)tu_uniform(&st), s, &st);
        for (int i = 0; i < n; i++)
            labels[i] = (int32_t)(tu_uniform(&st) * OUT);
        wm_batch b = {n, x, s, labels, NULL};
        WM_OK_OR_FAIL(wm_step(o1, &b, &l1));
        WM_OK_OR_FAIL(wm_step(o2, &b, &l2));
        if (!(fabs(l1 - l2) <= 1e-5 * (1 + fabs(l2))))
            fail_msg("kind %d bspline(%d,%d) n=%d shared=%d step %d: loss %.9g vs %.9g", (int)kind,
                     n_control, degree, n, shared, step, l1, l2);
        const float *q1 = wm_net_params(loc, &np), *q2 = wm_net_params(den, NULL);
        double scale, d = max_abs_diff(q1, q2, np, &scale);
        if (!(d <= 1e-5 * (1 + scale)))
            fail_msg("kind %d bspline(%d,%d) n=%d shared=%d wd=%g clip=%g step %d: Q differs by %.3g "
                     "(scale %.3g)", (int)kind, n_control, degree, n, shared, cfg.weight_decay, clip, step,
                     d, scale);
        /* the cache follows the updates of mixed batches; after a shared
         * or one-sample step it is stale and the stacked path runs */
        assert_true((loc->pversion == loc->version) == (!sh && n > 1));
        if (!sh && n > 1)
            check_cache_is_p(loc);
    }
    float x[NMAX * IN], s[NMAX], y1[NMAX * OUT], y2[NMAX * OUT];
    tu_fill(x, NMAX * IN, -1, 1, &st);
    contexts(n_control, degree, NMAX, 0, 0, s, &st);
    WM_OK_OR_FAIL(wm_infer(loc, x, s, NMAX, y1));
    WM_OK_OR_FAIL(wm_infer(den, x, s, NMAX, y2));
    /* Q agrees to 1e-5 of its scale; an output sums ~50 such products */
    double scale, d = max_abs_diff(y1, y2, NMAX * OUT, &scale);
    if (!(d <= 2e-4 * (1 + scale)))
        fail_msg("kind %d bspline(%d,%d) n=%d shared=%d: outputs after training differ by %.3g (scale %.3g)",
                 (int)kind, n_control, degree, n, shared, d, scale);
    wm_optimizer_free(o1), wm_optimizer_free(o2);
    wm_net_free(loc), wm_net_free(den);
}

static void trajectory(wm_opt_kind kind, int n_control, int degree, int n, int shared)
{
    trajectory_with(kind, n_control, degree, n, shared, -1.0f, 0.0f);
}

static void test_trajectories_match_dense(void **state)
{
    (void)state;
    wm_opt_kind kinds[] = {WM_OPT_SD, WM_OPT_MOMENTUM, WM_OPT_ADAM};
    for (int k = 0; k < 3; k++) {
        trajectory(kinds[k], 16, 3, NMAX, 0);    /* mixed, beyond the direct path's rows */
        trajectory(kinds[k], 16, 3, 12, 0);      /* mixed, a few rows */
        trajectory(kinds[k], 9, 2, 1, 0);        /* one sample: the rank-1 direct update */
        trajectory(kinds[k], 16, 3, 20, 1);      /* shared */
        trajectory(kinds[k], 16, 3, 1, 0);
        trajectory(kinds[k], 10, 3, 40, 2);      /* a stale cache refreshed at a mixed step */
        trajectory(kinds[k], 6, 1, 33, 0);
    }
}

/* wm_step's direct B-spline update (optim.c: dL/dP formed a range of rows at
 * a time, solved to Q, applied, P refreshed, never stored whole) against the
 * stacked path, with weight decay for every kind, and the steps that take
 * the gradient buffer instead: a clip that bites and one that does not. */
static void test_direct_update_decay_and_clip(void **state)
{
    (void)state;
    wm_opt_kind kinds[] = {WM_OPT_SD, WM_OPT_MOMENTUM, WM_OPT_ADAM};
    for (int k = 0; k < 3; k++) {
        trajectory_with(kinds[k], 16, 3, NMAX, 0, 0.05f, 0.0f);   /* decay, direct */
        trajectory_with(kinds[k], 11, 2, 17, 2, 0.05f, 0.0f);
        if (kinds[k] != WM_OPT_ADAM)     /* Adam divides the clipped entries, near its eps, by
                                            their own size: rounding of the two paths shows */
            trajectory_with(kinds[k], 16, 3, NMAX, 0, 0.01f, 0.05f);  /* a clip that bites */
        trajectory_with(kinds[k], 16, 3, NMAX, 0, 0.0f, 1e30f);   /* one that never does */
    }
}

/* A step whose bounds cannot prove it finite takes the careful path from the
 * direct one (the gradient formed whole, Q coordinates): here a momentum
 * entry near FLT_MAX. It matches the stacked path, and the cache follows. */
static void test_direct_update_falls_back_when_unbounded(void **state)
{
    (void)state;
    wm_net *loc = build(16, 3, 1, WM_LOSS_MSE), *den = build(16, 3, 0, WM_LOSS_MSE);
    wm_opt_config cfg = wm_opt_default(WM_OPT_MOMENTUM);
    wm_optimizer *o1, *o2;
    WM_OK_OR_FAIL(wm_optimizer_create(&o1, loc, &cfg));
    WM_OK_OR_FAIL(wm_optimizer_create(&o2, den, &cfg));
    size_t len = wm_optimizer_state_len(o1), np;
    float *m = calloc(len, sizeof *m);
    m[3] = 3e38f;                                  /* finite; mu m alone > the bounds' limit */
    WM_OK_OR_FAIL(wm_optimizer_set_state(o1, m, len, 0));
    WM_OK_OR_FAIL(wm_optimizer_set_state(o2, m, len, 0));
    float x[NMAX * IN], s[NMAX], y[NMAX * OUT];
    uint64_t st = 21;
    tu_fill(x, NMAX * IN, -1, 1, &st);
    tu_fill(y, NMAX * OUT, -1, 1, &st);
    contexts(16, 3, NMAX, 0, 0, s, &st);
    wm_batch b = {NMAX, x, s, NULL, y};
    WM_OK_OR_FAIL(wm_step(o1, &b, NULL));
    WM_OK_OR_FAIL(wm_step(o2, &b, NULL));
    const float *q1 = wm_net_params(loc, &np), *q2 = wm_net_params(den, NULL);
    double scale, d = max_abs_diff(q1, q2, np, &scale);
    if (!(scale > 1e35 && d <= 1e-6 * scale))
        fail_msg("the unbounded step's Q differs by %.3g (scale %.3g)", d, scale);
    for (size_t j = 0; j < np; j++)                /* away from the huge entry: to rounding */
        if (j != 3 && !(fabs((double)q1[j] - q2[j]) <= 1e-5 * (1 + fabs(q2[j]))))
            fail_msg("Q[%zu] = %.9g vs %.9g", j, q1[j], q2[j]);
    assert_true(loc->pversion == loc->version);
    free(m);
    wm_optimizer_free(o1), wm_optimizer_free(o2);
    wm_net_free(loc), wm_net_free(den);
}

/* After mixed steps (the direct update's case), a step that fails its loss
 * check changes nothing: Q, the cache, the optimizer's state and count. */
static void test_failed_direct_step_changes_nothing(void **state)
{
    (void)state;
    wm_net *net = build(16, 3, 1, WM_LOSS_MSE);
    wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
    wm_optimizer *o;
    WM_OK_OR_FAIL(wm_optimizer_create(&o, net, &cfg));
    float x[NMAX * IN], s[NMAX], y[NMAX * OUT], big[NMAX * OUT];
    uint64_t st = 5;
    tu_fill(x, NMAX * IN, -1, 1, &st);
    tu_fill(y, NMAX * OUT, -1, 1, &st);
    contexts(16, 3, NMAX, 0, 0, s, &st);
    for (int i = 0; i < NMAX * OUT; i++)
        big[i] = 1e30f;
    wm_batch good = {NMAX, x, s, NULL, y}, bad = {NMAX, x, s, NULL, big};
    WM_OK_OR_FAIL(wm_step(o, &good, NULL));
    WM_OK_OR_FAIL(wm_step(o, &good, NULL));
    size_t np = wm_net_n_params(net), len = wm_optimizer_state_len(o);
    float *q = malloc(np * sizeof *q), *pc = malloc(np * sizeof *pc), *m = malloc(len * sizeof *m),
          *m2 = malloc(len * sizeof *m2);
    memcpy(q, wm_net_params(net, NULL), np * sizeof *q);
    memcpy(pc, net->pcache, np * sizeof *pc);
    WM_OK_OR_FAIL(wm_optimizer_get_state(o, m, len));
    uint64_t version = net->version, steps = wm_optimizer_steps(o);
    EXPECT_STATUS(WM_ENUMERIC, wm_step(o, &bad, NULL));
    assert_memory_equal(q, wm_net_params(net, NULL), np * sizeof *q);
    assert_memory_equal(pc, net->pcache, np * sizeof *pc);
    WM_OK_OR_FAIL(wm_optimizer_get_state(o, m2, len));
    assert_memory_equal(m, m2, len * sizeof *m);
    assert_true(net->version == version && net->pversion == version && wm_optimizer_steps(o) == steps);
    free(q), free(pc), free(m), free(m2);
    wm_optimizer_free(o);
    wm_net_free(net);
}

/* ---- the direct update on other shapes of net --------------------------------
 * A net of dense layers (P_DENSE, a outputs), residuals (P_RES from layer a),
 * dropouts and a first 2x2 maxpool on an image input: the direct B-spline
 * update runs wherever every layer with parameters is a manifold dense
 * layer, whatever else the net holds. */
enum { P_DENSE, P_RES, P_DROP, P_MAX };
typedef struct {
    int kind, a;
    wm_activation act;
} probe_layer;

static wm_net *build_probe(int n_control, int degree, int local, int C, int H, int W,
                           const probe_layer *L, int nl)
{
    wm_manifold *m;
    wm_net *net;
    WM_OK_OR_FAIL(wm_manifold_bspline(&m, n_control, degree, 0));
    WM_OK_OR_FAIL(wm_net_create(&net, m, C * H * W, WM_COND_MANIFOLD));
    wm_manifold_free(m);
    if (H > 1)
        WM_OK_OR_FAIL(wm_net_input_shape(net, C, H, W));
    if (!local)
        net->local_p = -1;
    for (int l = 0; l < nl; l++)
        switch (L[l].kind) {
        case P_DENSE: WM_OK_OR_FAIL(wm_net_dense(net, L[l].a, L[l].act)); break;
        case P_RES: WM_OK_OR_FAIL(wm_net_residual(net, L[l].a, L[l].act)); break;
        case P_DROP: WM_OK_OR_FAIL(wm_net_dropout(net, 0.25f)); break;
        case P_MAX: WM_OK_OR_FAIL(wm_net_maxpool(net, 2)); break;
        }
    WM_OK_OR_FAIL(wm_net_set_loss(net, WM_LOSS_MSE));
    WM_OK_OR_FAIL(wm_net_init(net, 5));
    size_t np;
    wm_net_params(net, &np);
    float *q = malloc(np * sizeof *q);
    uint64_t st = 78;
    tu_fill(q, np, -0.3, 0.3, &st);
    WM_OK_OR_FAIL(wm_net_set_params(net, q, np));
    free(q);
    return net;
}

/* Steps on mixed batches of n of two twins on the local path: wm_step (the
 * direct update) and wm_grad + wm_apply (the gradient buffer, the fused
 * pass, the cache refreshed from Q). Q, the moments and the caches agree to
 * rounding (dL/dP_k is D_k^T Xs as a plain product there, with D_k^T
 * transposed here: the BLAS may sum in another order), and the cache is bit
 * for bit what a refresh from Q (wm_net_set_params) writes: the streamed
 * solve does the refresh's operations in its order. */
static void probe_trajectory(wm_opt_kind kind, int n_control, int degree, int C, int H, int W,
                             const probe_layer *L, int nl, int n, const char *what)
{
    wm_net *loc = build_probe(n_control, degree, 1, C, H, W, L, nl);
    wm_net *two = build_probe(n_control, degree, 1, C, H, W, L, nl);
    wm_optimizer *o1, *o2;
    wm_opt_config cfg = wm_opt_default(kind);
    cfg.lr = 0.003f;        /* small steps: the two product orders' rounding stays small */
    cfg.weight_decay = 0.01f;
    cfg.eps = 1e-3f;        /* Adam: u ~ g / |g| would blow a rounding-sized g up to lr */
    WM_OK_OR_FAIL(wm_optimizer_create(&o1, loc, &cfg));
    WM_OK_OR_FAIL(wm_optimizer_create(&o2, two, &cfg));
    int in = C * H * W, out = wm_net_n_outputs(loc);
    float *x = malloc(sizeof(float) * (size_t)n * in), *s = malloc(sizeof(float) * (size_t)n);
    float *y = malloc(sizeof(float) * (size_t)n * out);
    size_t np = wm_net_n_params(loc), len = wm_optimizer_state_len(o1);
    float *m1 = malloc(sizeof(float) * (len + 1)), *m2 = malloc(sizeof(float) * (len + 1));
    float *pc = malloc(sizeof(float) * np), *qc = malloc(sizeof(float) * np);
    uint64_t st = 123;
    for (int step = 0; step < 4; step++) {
        tu_fill(x, (size_t)n * in, -1, 1, &st);
        tu_fill(y, (size_t)n * out, -1, 1, &st);
        contexts(n_control, degree, n, 0, 0, s, &st);
        wm_batch b = {n, x, s, NULL, y};
        float l1, l2;
        WM_OK_OR_FAIL(wm_step(o1, &b, &l1));
        WM_OK_OR_FAIL(wm_grad(o2, &b, &l2));
        WM_OK_OR_FAIL(wm_apply(o2));
        if (!(fabs(l1 - l2) <= 1e-5 * (1 + fabs(l2))))
            fail_msg("%s kind %d step %d: loss %.9g vs %.9g", what, (int)kind, step, l1, l2);
        const float *q1 = wm_net_params(loc, NULL), *q2 = wm_net_params(two, NULL);
        double scale, d = max_abs_diff(q1, q2, np, &scale);
        if (!(d <= 1e-5 * (1 + scale)))
            fail_msg("%s kind %d step %d: Q differs by %.3g (scale %.3g)", what, (int)kind, step, d, scale);
        d = max_abs_diff(loc->pcache, two->pcache, np, &scale);
        if (!(d <= 1e-5 * (1 + scale)))
            fail_msg("%s kind %d step %d: the caches differ by %.3g (scale %.3g)", what, (int)kind, step,
                     d, scale);
        if (len) {
            WM_OK_OR_FAIL(wm_optimizer_get_state(o1, m1, len));
            WM_OK_OR_FAIL(wm_optimizer_get_state(o2, m2, len));
            d = max_abs_diff(m1, m2, len, &scale);
            if (!(d <= 1e-5 * (1 + scale)))
                fail_msg("%s kind %d step %d: the moments differ by %.3g (scale %.3g)", what, (int)kind,
                         step, d, scale);
        }
        assert_true(loc->pcache && loc->pversion == loc->version);
        memcpy(pc, loc->pcache, sizeof(float) * np);      /* against a refresh from Q */
        memcpy(qc, q1, sizeof(float) * np);
        WM_OK_OR_FAIL(wm_net_set_params(loc, qc, np));
        if (memcmp(pc, loc->pcache, sizeof(float) * np))
            fail_msg("%s kind %d step %d: the cache is not L^-T Q", what, (int)kind, step);
    }
    free(x), free(s), free(y), free(m1), free(m2), free(pc), free(qc);
    wm_optimizer_free(o1), wm_optimizer_free(o2);
    wm_net_free(loc), wm_net_free(two);
}

static void test_direct_update_other_nets(void **state)
{
    (void)state;
    wm_opt_kind kinds[] = {WM_OPT_SD, WM_OPT_MOMENTUM, WM_OPT_ADAM};
    /* 150 x 120 = 18000 weights a point: ranges of 54 + 54 + 12 rows (optim.c LOCAL_FLOATS 8192) */
    static const probe_layer WIDE[] = {{P_DENSE, 120, WM_ACT_TANH}, {P_DENSE, 120, WM_ACT_TANH},
                                       {P_DENSE, 3, WM_ACT_NONE}};
    /* a residual over a dropout */
    static const probe_layer SKIP[] = {{P_DENSE, 9, WM_ACT_TANH}, {P_DROP, 0, WM_ACT_NONE},
                                       {P_DENSE, 9, WM_ACT_TANH}, {P_RES, 0, WM_ACT_NONE},
                                       {P_DENSE, 3, WM_ACT_NONE}};
    /* rows longer than a range (16390 inputs: one row per range, slots of 16400) */
    static const probe_layer LONG[] = {{P_DENSE, 3, WM_ACT_TANH}, {P_DENSE, 2, WM_ACT_NONE}};
    /* a 2x2 maxpool first (no parameters, no direct_update of its own) */
    static const probe_layer POOL[] = {{P_MAX, 0, WM_ACT_NONE}, {P_DENSE, 5, WM_ACT_TANH},
                                       {P_DENSE, 3, WM_ACT_NONE}};
    for (int k = 0; k < 3; k++) {
        probe_trajectory(kinds[k], 9, 3, 150, 1, 1, WIDE, 3, 20, "wide");
        probe_trajectory(kinds[k], 12, 2, 7, 1, 1, SKIP, 5, 24, "skip");
        probe_trajectory(kinds[k], 7, 1, 16390, 1, 1, LONG, 2, 5, "long");
        probe_trajectory(kinds[k], 8, 3, 2, 6, 6, POOL, 3, 16, "pool");
        probe_trajectory(kinds[k], 14, 6, 6, 1, 1, SKIP, 5, 40, "degree 6");
        probe_trajectory(kinds[k], 17, 16, 6, 1, 1, SKIP, 5, 7, "degree 16");
    }
}

/* Every way to write the parameters refreshes the P cache: set_params,
 * set_control_point, a loaded file, a clone. */
static void test_cache_follows_every_write(void **state)
{
    (void)state;
    wm_net *loc = build(12, 3, 1, WM_LOSS_MSE), *den = build(12, 3, 0, WM_LOSS_MSE);
    enum { n = 16 };
    float x[n * IN], s[n], y1[n * OUT], y2[n * OUT], w[HID * IN], b[HID];
    uint64_t st = 3;
    tu_fill(x, n * IN, -1, 1, &st);
    contexts(12, 3, n, 0, 0, s, &st);
    tu_fill(w, HID * IN, -2, 2, &st);
    tu_fill(b, HID, -2, 2, &st);
    WM_OK_OR_FAIL(wm_net_set_control_point(loc, 0, 5, w, b));
    WM_OK_OR_FAIL(wm_net_set_control_point(den, 0, 5, w, b));
    WM_OK_OR_FAIL(wm_infer(loc, x, s, n, y1));
    WM_OK_OR_FAIL(wm_infer(den, x, s, n, y2));
    double scale, d = max_abs_diff(y1, y2, n * OUT, &scale);
    assert_true(d <= 2e-6 * (1 + scale));

    void *buf;
    size_t len;
    wm_net *loaded, *cloned;
    WM_OK_OR_FAIL(wm_net_save_buffer(loc, &buf, &len));
    WM_OK_OR_FAIL(wm_net_load_buffer(&loaded, buf, len));
    wm_free(buf);
    WM_OK_OR_FAIL(wm_net_clone(&cloned, loc));
    wm_net *both[2] = {loaded, cloned};
    for (int t = 0; t < 2; t++) {
        assert_true(both[t]->pcache && both[t]->pversion == both[t]->version);
        WM_OK_OR_FAIL(wm_infer(both[t], x, s, n, y2));
        d = max_abs_diff(y1, y2, n * OUT, &scale);
        if (!(d == 0.0))
            fail_msg("%s net differs from the original by %.3g", t ? "cloned" : "loaded", d);
    }
    wm_net_free(loaded), wm_net_free(cloned);
    wm_net_free(loc), wm_net_free(den);
}

/* wm_grad, and a wm_step that fails, leave the net (and so what wm_infer
 * computes) exactly as it was: the P cache's policy is applied only by an
 * update. wm_grad may run beside wm_infer on the same net (the header's
 * thread-safety rule), so it must not refresh the cache. Here the cache is
 * stale after a shared step; a mixed wm_grad once refreshed it (a write to
 * the net, and wm_infer's path changed under a concurrent reader). */
static void test_grad_never_writes_the_net(void **state)
{
    (void)state;
    wm_net *net = build(12, 3, 1, WM_LOSS_MSE);
    wm_optimizer *o;
    wm_opt_config cfg = wm_opt_default(WM_OPT_MOMENTUM);
    cfg.lr = 0.01f;
    WM_OK_OR_FAIL(wm_optimizer_create(&o, net, &cfg));
    enum { n = 16 };
    float x[n * IN], s[n], ss[n], y[n * OUT], big[n * OUT];
    uint64_t st = 9;
    tu_fill(x, n * IN, -1, 1, &st);
    tu_fill(y, n * OUT, -1, 1, &st);
    contexts(12, 3, n, 0, 0, s, &st);
    contexts(12, 3, n, 1, 0.3f, ss, &st);
    for (int i = 0; i < n * OUT; i++)
        big[i] = 1e30f;                               /* finite targets, an infinite loss */
    wm_batch shared = {.x = x, .s = ss, .n = n, .targets = y};
    wm_batch mixed = {.x = x, .s = s, .n = n, .targets = y};
    wm_batch bad = {.x = x, .s = s, .n = n, .targets = big};
    WM_OK_OR_FAIL(wm_step(o, &mixed, NULL));
    WM_OK_OR_FAIL(wm_step(o, &shared, NULL));         /* the cache is now stale */
    size_t np = wm_net_n_params(net);
    float *pc = malloc(np * sizeof *pc);
    memcpy(pc, net->pcache, np * sizeof *pc);
    uint64_t version = net->version, pversion = net->pversion;
    int plive = net->plive;
    assert_true(pversion != version);
    WM_OK_OR_FAIL(wm_grad(o, &mixed, NULL));
    EXPECT_STATUS(WM_ENUMERIC, wm_step(o, &bad, NULL));
    wm_batch bad_shared = {.x = x, .s = ss, .n = n, .targets = big};
    EXPECT_STATUS(WM_ENUMERIC, wm_grad(o, &bad_shared, NULL));   /* changes no policy either */
    assert_true(net->version == version && net->pversion == pversion && net->plive == plive);
    assert_memory_equal(pc, net->pcache, np * sizeof *pc);
    WM_OK_OR_FAIL(wm_apply(o));                       /* the update applies the mixed policy */
    assert_true(net->plive && net->pversion == net->version);
    free(pc);
    wm_optimizer_free(o);
    wm_net_free(net);
}

/* Closed B-splines and products keep the dense path (a closed spline's
 * Cholesky factor fills its last rows: not banded). */
static void test_local_path_only_on_open_splines(void **state)
{
    (void)state;
    wm_manifold *m, *c, *pr;
    wm_net *net;
    WM_OK_OR_FAIL(wm_manifold_bspline(&m, 8, 3, 1));
    WM_OK_OR_FAIL(wm_net_create(&net, m, IN, WM_COND_MANIFOLD));
    assert_int_equal(net->local_p, -1);
    wm_net_free(net);
    wm_manifold_free(m);
    WM_OK_OR_FAIL(wm_manifold_bspline(&m, 8, 3, 0));
    WM_OK_OR_FAIL(wm_manifold_circle(&c));
    WM_OK_OR_FAIL(wm_manifold_product(&pr, m, c));
    WM_OK_OR_FAIL(wm_net_create(&net, pr, IN, WM_COND_MANIFOLD));
    assert_int_equal(net->local_p, -1);
    wm_net_free(net);
    WM_OK_OR_FAIL(wm_net_create(&net, m, IN, WM_COND_CONCAT));
    assert_int_equal(net->local_p, -1);
    wm_net_free(net);
    wm_manifold_free(m), wm_manifold_free(c), wm_manifold_free(pr);
}

/* The parameters' companions sit apart from them modulo 4 KiB (memory.h:
 * 4K aliasing made the update 1.7x slower when two arrays agreed in their
 * low 12 bits), whatever the sizes and wherever malloc puts them: the P
 * cache at init and in a clone, the gradient and moments of an optimizer,
 * also one loaded from a checkpoint. */
static void test_companions_apart_from_params(void **state)
{
    (void)state;
#define APART(p, q) ((size_t)(((uintptr_t)(p) - (uintptr_t)(q)) & 4095u))
    for (int rep = 0; rep < 12; rep++) {
        void *junk = malloc((size_t)(rep * 4093 % 70000) + 1);   /* move the heap along */
        wm_net *net = build(4 + rep % 5, 1 + rep % 3, 1, WM_LOSS_MSE);
        assert_int_equal(APART(net->pcache, net->params), 512);
        wm_net *c;
        WM_OK_OR_FAIL(wm_net_clone(&c, net));
        assert_int_equal(APART(c->pcache, c->params), 512);
        wm_opt_kind kinds[] = {WM_OPT_SD, WM_OPT_MOMENTUM, WM_OPT_ADAM};
        wm_opt_config cfg = wm_opt_default(kinds[rep % 3]);
        wm_optimizer *o;
        WM_OK_OR_FAIL(wm_optimizer_create(&o, c, &cfg));
        assert_int_equal(APART(o->grad, c->params), 1024);
        if (o->m1)
            assert_int_equal(APART(o->m1, c->params), 2048);
        if (o->m2)
            assert_int_equal(APART(o->m2, c->params), 3072);
        assert_true(kinds[rep % 3] == WM_OPT_SD || o->m1);
        assert_true(kinds[rep % 3] != WM_OPT_ADAM || o->m2);
        if (rep < 3) {                              /* and from a checkpoint */
            char path[] = "/tmp/wm_apart_XXXXXX";
            int fd = mkstemp(path);
            assert_true(fd >= 0);
            close(fd);
            WM_OK_OR_FAIL(wm_optimizer_save(o, path));
            wm_optimizer *o2;
            wm_net *n2;
            WM_OK_OR_FAIL(wm_optimizer_load(&o2, &n2, path, NULL, NULL));
            unlink(path);
            assert_int_equal(APART(n2->pcache, n2->params), 512);
            assert_int_equal(APART(o2->grad, n2->params), 1024);
            if (o2->m1)
                assert_int_equal(APART(o2->m1, n2->params), 2048);
            wm_optimizer_free(o2);
            wm_net_free(n2);
        }
        wm_optimizer_free(o);
        wm_net_free(c);
        wm_net_free(net);
        free(junk);
    }
#undef APART
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_local_matches_dense),
        cmocka_unit_test(test_trajectories_match_dense),
        cmocka_unit_test(test_direct_update_decay_and_clip),
        cmocka_unit_test(test_direct_update_falls_back_when_unbounded),
        cmocka_unit_test(test_failed_direct_step_changes_nothing),
        cmocka_unit_test(test_direct_update_other_nets),
        cmocka_unit_test(test_cache_follows_every_write),
        cmocka_unit_test(test_local_path_only_on_open_splines),
        cmocka_unit_test(test_grad_never_writes_the_net),
        cmocka_unit_test(test_companions_apart_from_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
