/* test_optim.c -- the update rules (src/optim.c) against explicit formulas.
 *
 * The central check: one WM_OPT_SD step moves the control points by exactly
 *     dP = -lr (G^-1 (x) I) dL/dP
 * with dL/dP from finite differences of the independent double reference
 * and G in closed form (line, circle) or from wm_manifold_gram (checked
 * against closed forms and quadrature in test_manifold.c). */
#include "testutil.h"

enum { IN = 3, N = 8 };

typedef struct {
    wm_manifold *m;
    wm_net *net;
    float x[N * IN], s[N * 4];
    int32_t labels[N];
    int K;
    size_t np;
} fixture;

static void setup(fixture *f, const char *mname, uint64_t seed)
{
    f->m = tu_manifold(mname);
    WM_OK_OR_FAIL(wm_net_create(&f->net, f->m, IN, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(f->net, 5, WM_ACT_TANH));
    WM_OK_OR_FAIL(wm_net_dense(f->net, 3, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(f->net, seed));
    f->K = wm_manifold_n_basis(f->m);
    f->np = wm_net_n_params(f->net);
    uint64_t st = seed * 7 + 1;
    float *q = malloc(f->np * sizeof *q);
    tu_fill(q, f->np, -0.8, 0.8, &st);
    WM_OK_OR_FAIL(wm_net_set_params(f->net, q, f->np));
    free(q);
    tu_fill(f->x, N * IN, -1, 1, &st);
    tu_contexts(f->m, f->s, N, &st);
    for (int i = 0; i < N; i++) f->labels[i] = (int32_t)(tu_uniform(&st) * 3);
}

static void teardown(fixture *f)
{
    wm_net_free(f->net);
    wm_manifold_free(f->m);
}

static wm_batch batch_of(fixture *f)
{
    wm_batch b = {N, f->x, f->s, f->labels, NULL};
    return b;
}

/* G^-1 in double: closed forms where DESIGN.md gives them. */
static void gram_inverse(const char *mname, const wm_manifold *m, int K, double *Gi)
{
    if (!strcmp(mname, "line")) {
        double v[4] = {4, -2, -2, 4};
        memcpy(Gi, v, sizeof v);
        return;
    }
    if (!strcmp(mname, "circle")) {
        double v[9] = {1, 0, 0, 0, 2, 0, 0, 0, 2};
        memcpy(Gi, v, sizeof v);
        return;
    }
    double G[81], L[81];
    WM_OK_OR_FAIL(wm_manifold_gram(m, G));
    tu_cholesky(G, L, K);
    for (int c = 0; c < K; c++) {              /* solve G x = e_c column by column */
        double y[9];
        for (int i = 0; i < K; i++) {
            double v = i == c;
            for (int k = 0; k < i; k++) v -= L[i * K + k] * y[k];
            y[i] = v / L[i * K + i];
        }
        for (int i = K - 1; i >= 0; i--) {
            double v = y[i];
            for (int k = i + 1; k < K; k++) v -= L[k * K + i] * y[k];
            y[i] = v / L[i * K + i];
        }
        for (int i = 0; i < K; i++) Gi[i * K + c] = y[i];
    }
}

/* Apply (M (x) I) to a vector in the library's block layout (P coordinates). */
static void kron_apply(const wm_net *net, int K, const double *M, const double *v, double *out)
{
    size_t off = 0;
    for (int l = 0; l < wm_net_n_layers(net); l++) {
        int in, o;
        WM_OK_OR_FAIL(wm_net_layer_info(net, l, &in, &o, NULL));
        size_t lens[2] = {(size_t)in * o, (size_t)o};
        for (int part = 0; part < 2; part++) {
            size_t len = lens[part];
            for (int k = 0; k < K; k++)
                for (size_t j = 0; j < len; j++) {
                    double acc = 0;
                    for (int i = 0; i < K; i++) acc += M[k * K + i] * v[off + i * len + j];
                    out[off + k * len + j] = acc;
                }
            off += K * len;
        }
    }
}

static void check_sd_rule(const char *mname)
{
    fixture f;
    setup(&f, mname, 3);
    double *P0 = malloc(f.np * sizeof(double)), *P1 = malloc(f.np * sizeof(double));
    double *gP = malloc(f.np * sizeof(double)), *want = malloc(f.np * sizeof(double));
    double Gi[81];
    tu_control_points(f.net, f.K, P0);
    tu_ref ref;
    tu_ref_load(&ref, f.net, mname, 0);
    ref.loss = WM_LOSS_SOFTMAX_CE;
    double ref_loss = tu_ref_loss(&ref, f.m, mname, N, IN, f.x, f.s, f.labels, NULL, NULL);
    tu_ref_grad_P(&ref, f.m, mname, N, IN, f.x, f.s, f.labels, NULL, gP);
    gram_inverse(mname, f.m, f.K, Gi);
    kron_apply(f.net, f.K, Gi, gP, want);
    const float lr = 0.05f;

    wm_optimizer *opt;
    wm_opt_config cfg = wm_opt_default(WM_OPT_SD);
    cfg.lr = lr;
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, f.net, &cfg));
    wm_batch b = batch_of(&f);
    float loss;
    WM_OK_OR_FAIL(wm_step(opt, &b, &loss));
    assert_true(fabs(loss - ref_loss) < 1e-5 * (1 + fabs(ref_loss)));   /* loss before the update */
    tu_control_points(f.net, f.K, P1);
    double err = 0, mag = 0;
    for (size_t j = 0; j < f.np; j++) {
        double moved = P1[j] - P0[j], expect = -lr * want[j];
        err = fmax(err, fabs(moved - expect));
        mag = fmax(mag, fabs(expect));
    }
    print_message("%s: max |dP - (-lr G^-1 g)| = %.3g of max |dP| = %.3g\n", mname, err, mag);
    /* float P (|P| < 3) rounds at ~2e-7; the step is ~1e-2 */
    assert_true(mag > 1e-3);
    assert_true(err < 1e-4 * mag + 1e-6);
    tu_ref_free(&ref);
    wm_optimizer_free(opt);
    teardown(&f);
    free(P0), free(P1), free(gP), free(want);
}

/* wm_optimizer_net: the net given at creation and after a checkpoint load
 * the net loaded with it; NULL for NULL. */
static void test_optimizer_net(void **state)
{
    (void)state;
    fixture f;
    setup(&f, "circle", 3);
    wm_optimizer *opt;
    wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, f.net, &cfg));
    assert_ptr_equal(wm_optimizer_net(opt), f.net);
    assert_null(wm_optimizer_net(NULL));
    char path[] = "/tmp/wm_optnet_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    WM_OK_OR_FAIL(wm_optimizer_save(opt, path));
    wm_optimizer *o2 = NULL;
    wm_net *n2 = NULL;
    WM_OK_OR_FAIL(wm_optimizer_load(&o2, &n2, path, NULL, NULL));
    assert_ptr_equal(wm_optimizer_net(o2), n2);
    assert_ptr_not_equal(wm_optimizer_net(o2), f.net);
    unlink(path);
    wm_optimizer_free(o2);
    wm_net_free(n2);
    wm_optimizer_free(opt);
    teardown(&f);
}

static void test_sd_step_is_the_papers_update(void **state)
{
    (void)state;
    const char *names[] = {"line", "circle", "fourier2", "bspline", "cbspline", "torus", "cylinder"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        check_sd_rule(names[i]);
}

/* volumetric movement integral |dW(s)|^2 ds = dP^T (G (x) I) dP */
static double movement(const fixture *f, const double *P0, const double *P1)
{
    double G[81], *d = malloc(f->np * sizeof(double)), *Gd = malloc(f->np * sizeof(double)), v = 0;
    WM_OK_OR_FAIL(wm_manifold_gram(f->m, G));
    for (size_t j = 0; j < f->np; j++) d[j] = P1[j] - P0[j];
    kron_apply(f->net, f->K, G, d, Gd);
    for (size_t j = 0; j < f->np; j++) v += d[j] * Gd[j];
    free(d), free(Gd);
    return v;
}

static void test_volume_budget_is_exact(void **state)
{
    (void)state;
    wm_opt_kind kinds[] = {WM_OPT_SD, WM_OPT_MOMENTUM, WM_OPT_ADAM};
    const char *names[] = {"line", "circle", "torus", "bspline"};
    for (int n = 0; n < 4; n++)
        for (int k = 0; k < 3; k++) {
            fixture f;
            setup(&f, names[n], 11);
            double *P0 = malloc(f.np * sizeof(double)), *P1 = malloc(f.np * sizeof(double));
            wm_optimizer *opt;
            wm_opt_config cfg = wm_opt_default(kinds[k]);
            cfg.volume = 1e-3f;
            cfg.weight_decay = kinds[k] == WM_OPT_SD ? 0.0f : 0.01f;
            WM_OK_OR_FAIL(wm_optimizer_create(&opt, f.net, &cfg));
            wm_batch b = batch_of(&f);
            for (int step = 0; step < 3; step++) {
                tu_control_points(f.net, f.K, P0);
                WM_OK_OR_FAIL(wm_step(opt, &b, NULL));
                tu_control_points(f.net, f.K, P1);
                double v = movement(&f, P0, P1);
                if (fabs(v - 1e-3) > 2e-3 * 1e-3)
                    fail_msg("%s kind %d step %d: moved %.9g, budget 1e-3", names[n], kinds[k], step, v);
            }
            wm_optimizer_free(opt);
            teardown(&f);
            free(P0), free(P1);
        }
}

/* Momentum and Adam against their formulas, run in double on the Q
 * coordinates with the gradients the library reports. */
static void check_stateful(wm_opt_kind kind, float weight_decay)
{
    fixture f;
    setup(&f, "circle", 21);
    wm_optimizer *opt;
    wm_opt_config cfg = wm_opt_default(kind);
    cfg.lr = kind == WM_OPT_ADAM ? 1e-2f : 0.05f;
    cfg.weight_decay = weight_decay;
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, f.net, &cfg));
    size_t np = f.np, len;
    double *q = malloc(np * sizeof(double)), *v1 = calloc(np, sizeof(double)),
           *v2 = calloc(np, sizeof(double));
    const float *cur = wm_net_params(f.net, &len);
    for (size_t j = 0; j < np; j++) q[j] = cur[j];
    wm_batch b = batch_of(&f);
    for (int t = 1; t <= 4; t++) {
        WM_OK_OR_FAIL(wm_grad(opt, &b, NULL));
        const float *g = wm_grad_buffer(opt, &len);
        for (size_t j = 0; j < np; j++) {
            if (kind == WM_OPT_MOMENTUM) {            /* PyTorch: v = mu v + (g + wd q); q -= lr v */
                v1[j] = cfg.momentum * v1[j] + g[j] + cfg.weight_decay * q[j];
                q[j] -= cfg.lr * v1[j];
            } else {                                  /* AdamW */
                v1[j] = cfg.beta1 * v1[j] + (1 - cfg.beta1) * g[j];
                v2[j] = cfg.beta2 * v2[j] + (1 - cfg.beta2) * (double)g[j] * g[j];
                double mh = v1[j] / (1 - pow(cfg.beta1, t)), vh = v2[j] / (1 - pow(cfg.beta2, t));
                q[j] -= cfg.lr * (mh / (sqrt(vh) + cfg.eps) + cfg.weight_decay * q[j]);
            }
        }
        WM_OK_OR_FAIL(wm_apply(opt));
        assert_int_equal(wm_optimizer_steps(opt), t);
        cur = wm_net_params(f.net, &len);
        for (size_t j = 0; j < np; j++)
            if (fabs(cur[j] - q[j]) > 2e-5 * (1 + fabs(q[j])))
                fail_msg("kind %d step %d param %zu: %.9g vs formula %.9g", kind, t, j, cur[j], q[j]);
    }
    wm_optimizer_free(opt);
    teardown(&f);
    free(q), free(v1), free(v2);
}

/* With and without weight decay: the update has a loop for each. */
static void test_momentum_matches_formula(void **state)
{
    (void)state;
    check_stateful(WM_OPT_MOMENTUM, 0.02f);
    check_stateful(WM_OPT_MOMENTUM, 0.0f);
}

static void test_adam_matches_formula(void **state)
{
    (void)state;
    check_stateful(WM_OPT_ADAM, 0.02f);
    check_stateful(WM_OPT_ADAM, 0.0f);
}

static void test_sd_weight_decay(void **state)
{
    (void)state;
    fixture f;
    setup(&f, "line", 5);
    wm_optimizer *opt;
    wm_opt_config cfg = wm_opt_default(WM_OPT_SD);
    cfg.weight_decay = 0.1f;
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, f.net, &cfg));
    wm_batch b = batch_of(&f);
    float *before = tu_snapshot(f.net);
    WM_OK_OR_FAIL(wm_grad(opt, &b, NULL));
    size_t len;
    const float *g = wm_grad_buffer(opt, &len);
    tu_assert_unchanged(f.net, before);           /* wm_grad alone changes nothing */
    WM_OK_OR_FAIL(wm_apply(opt));
    const float *q = wm_net_params(f.net, &len);
    for (size_t j = 0; j < len; j++)
        assert_true(fabs(q[j] - (before[j] - cfg.lr * (g[j] + cfg.weight_decay * before[j]))) < 1e-6);
    free(before);
    wm_optimizer_free(opt);
    teardown(&f);
}

static void test_step_equals_grad_then_apply(void **state)
{
    (void)state;
    fixture a, c;
    setup(&a, "torus", 8);
    setup(&c, "torus", 8);
    wm_optimizer *oa, *oc;
    wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
    WM_OK_OR_FAIL(wm_optimizer_create(&oa, a.net, &cfg));
    WM_OK_OR_FAIL(wm_optimizer_create(&oc, c.net, &cfg));
    wm_batch ba = batch_of(&a), bc = batch_of(&c);
    float la, lc;
    for (int i = 0; i < 3; i++) {
        WM_OK_OR_FAIL(wm_step(oa, &ba, &la));
        WM_OK_OR_FAIL(wm_grad(oc, &bc, &lc));
        WM_OK_OR_FAIL(wm_apply(oc));
        assert_true(la == lc);
    }
    size_t len;
    const float *pa = wm_net_params(a.net, &len);
    assert_memory_equal(pa, wm_net_params(c.net, NULL), len * sizeof(float));
    /* a caller may rewrite the buffer (e.g. an all-reduce): zero means no move for SD */
    wm_optimizer *sd;
    wm_opt_config sdc = wm_opt_default(WM_OPT_SD);
    WM_OK_OR_FAIL(wm_optimizer_create(&sd, a.net, &sdc));
    WM_OK_OR_FAIL(wm_grad(sd, &ba, NULL));
    float *g = wm_grad_buffer(sd, &len), *snap = tu_snapshot(a.net);
    memset(g, 0, len * sizeof *g);
    WM_OK_OR_FAIL(wm_apply(sd));
    tu_assert_unchanged(a.net, snap);
    free(snap);
    wm_optimizer_free(sd);
    wm_optimizer_free(oa), wm_optimizer_free(oc);
    teardown(&a), teardown(&c);
}

/* One wm_step on opt[0] and wm_grad + wm_apply on opt[1], with the same batch:
 * the losses must agree to rounding. */
static void step_and_grad_apply(wm_optimizer *opt[2], const wm_batch *b)
{
    float la, lc;
    WM_OK_OR_FAIL(wm_step(opt[0], b, &la));
    WM_OK_OR_FAIL(wm_grad(opt[1], b, &lc));
    WM_OK_OR_FAIL(wm_apply(opt[1]));
    assert_true(fabs(la - lc) <= 1e-6 * (1 + fabs(lc)));
}

/* The two nets' parameters agree to float rounding; `what` names the case. */
static void assert_params_close(const wm_net *a, const wm_net *c, const char *what)
{
    size_t len;
    const float *pa = wm_net_params(a, &len), *pc = wm_net_params(c, NULL);
    for (size_t j = 0; j < len; j++)
        if (fabs(pa[j] - pc[j]) > 1e-6 * (1 + fabs(pc[j])))
            fail_msg("%s param %zu: wm_step %.9g vs grad+apply %.9g", what, j, pa[j], pc[j]);
}

/* wm_step on a dense net applies the gradient as it forms it (one sample:
 * rank-1, a few: a block at a time, many at one context: one dW for all
 * basis points), never storing it whole; it must move the
 * parameters as wm_grad + wm_apply does, to float rounding. Batches with
 * mixed and with shared contexts both take it. */
static void test_direct_step_matches_grad_apply(void **state)
{
    (void)state;
    wm_opt_kind kinds[] = {WM_OPT_SD, WM_OPT_MOMENTUM, WM_OPT_ADAM};
    const char *names[] = {"point", "circle", "torus", "circle"};
    for (int t = 0; t < 4; t++)
        for (int kd = 0; kd < 6; kd++) {     /* each kind without, then with weight decay */
            fixture a, c;
            setup(&a, names[t], 4);
            setup(&c, names[t], 4);
            wm_optimizer *oa, *oc;
            wm_opt_config cfg = wm_opt_default(kinds[kd % 3]);
            cfg.weight_decay = kd < 3 ? 0.0f : 0.01f;
            WM_OK_OR_FAIL(wm_optimizer_create(&oa, a.net, &cfg));
            WM_OK_OR_FAIL(wm_optimizer_create(&oc, c.net, &cfg));
            if (t == 3)                         /* the last case: every batch shares a context */
                for (int i = 0; i < N; i++) a.s[i] = c.s[i] = 0.3f;
            /* A batch of BIG rows (the fixture's tiled) is past the direct
             * update's block limit: a shared context and the point then form
             * dW with one GEMM, mixed contexts write the gradient out. */
            enum { BIG = 40 };
            int dim = wm_manifold_dim(a.m);
            float xb[BIG * IN], sb[BIG * 4];
            int32_t lb[BIG];
            for (int i = 0; i < BIG; i++) {
                memcpy(xb + i * IN, a.x + (i % N) * IN, sizeof(float) * IN);
                memcpy(sb + i * dim, a.s + (i % N) * dim, sizeof(float) * dim);
                lb[i] = a.labels[i % N];
            }
            wm_optimizer *opt[2] = {oa, oc};
            for (int step = 0; step < 8; step++) {
                /* batches of 1, 2 and 3 samples (rank-1 and blocked direct
                 * updates), then two of BIG */
                int nb = step < 6 ? 1 + step % 3 : BIG, at = step < 6 ? step % 2 : 0;
                wm_batch ba = {nb, a.x + at * IN, a.s + at * dim, a.labels + at, NULL};
                if (nb == BIG)
                    ba.x = xb, ba.s = sb, ba.labels = lb;
                step_and_grad_apply(opt, &ba);
            }
            char what[96];
            snprintf(what, sizeof what, "%s kind %d wd %g", names[t], kinds[kd % 3], cfg.weight_decay);
            assert_params_close(a.net, c.net, what);
            wm_optimizer_free(oa), wm_optimizer_free(oc);
            teardown(&a), teardown(&c);
        }
}

/* The same on layers wide enough (300 x 120) that the direct update works in
 * several blocks of rows, for a shared context at batch 5 (a GEMM per block)
 * and 40 (one GEMM, then every block), and mixed contexts at 5. */
static void test_direct_step_blocks(void **state)
{
    (void)state;
    enum { WIDE = 300, HID = 120, ROWS = 40 };
    static float x[ROWS * WIDE];
    float s[ROWS];
    int32_t labels[ROWS];
    uint64_t st = 99;
    tu_fill(x, ROWS * WIDE, -1, 1, &st);
    for (int i = 0; i < ROWS; i++) labels[i] = i % 3;
    wm_manifold *m = tu_manifold("circle");
    for (int c = 0; c < 3; c++) {
        int nb = c == 1 ? ROWS : 5;
        for (int i = 0; i < ROWS; i++)
            s[i] = c == 2 ? (float)i / ROWS : 0.7f;     /* case 2: mixed contexts */
        wm_net *net[2];
        wm_optimizer *opt[2];
        wm_opt_config cfg = wm_opt_default(WM_OPT_MOMENTUM);
        for (int j = 0; j < 2; j++) {
            WM_OK_OR_FAIL(wm_net_create(&net[j], m, WIDE, WM_COND_MANIFOLD));
            WM_OK_OR_FAIL(wm_net_dense(net[j], HID, WM_ACT_TANH));
            WM_OK_OR_FAIL(wm_net_dense(net[j], 3, WM_ACT_NONE));
            WM_OK_OR_FAIL(wm_net_init(net[j], 5));
            WM_OK_OR_FAIL(wm_optimizer_create(&opt[j], net[j], &cfg));
        }
        wm_batch b = {nb, x, s, labels, NULL};
        for (int step = 0; step < 3; step++)
            step_and_grad_apply(opt, &b);
        char what[64];
        snprintf(what, sizeof what, "case %d (batch %d)", c, nb);
        assert_params_close(net[0], net[1], what);
        for (int j = 0; j < 2; j++)
            wm_optimizer_free(opt[j]), wm_net_free(net[j]);
    }
    wm_manifold_free(m);
}

/* One sample's step reads each layer's input gradient through the stacked
 * transposed product, a one-row sgemm or sgemv by row length (src/blas.c):
 * layers of 64, 48 and 32 (whole 16-float vectors) and 40 and 24 (not),
 * against wm_grad + wm_apply, which use full GEMMs. */
static void test_one_sample_step_at_every_row_length(void **state)
{
    (void)state;
    int widths[][3] = {{64, 48, 32}, {40, 24, 64}};
    const char *names[] = {"point", "circle"};
    float x[3 * 64], s[3];
    int32_t labels[3] = {0, 2, 1};
    uint64_t st = 7;
    tu_fill(x, 3 * 64, -1, 1, &st);
    s[0] = 0.1f, s[1] = 0.45f, s[2] = 0.8f;
    for (int w = 0; w < 2; w++)
        for (int t = 0; t < 2; t++) {
            wm_manifold *m = tu_manifold(names[t]);
            wm_net *net[2];
            wm_optimizer *opt[2];
            wm_opt_config cfg = wm_opt_default(WM_OPT_MOMENTUM);
            for (int j = 0; j < 2; j++) {
                WM_OK_OR_FAIL(wm_net_create(&net[j], m, widths[w][0], WM_COND_MANIFOLD));
                WM_OK_OR_FAIL(wm_net_dense(net[j], widths[w][1], WM_ACT_TANH));
                WM_OK_OR_FAIL(wm_net_dense(net[j], widths[w][2], WM_ACT_RELU));
                WM_OK_OR_FAIL(wm_net_dense(net[j], 3, WM_ACT_NONE));
                WM_OK_OR_FAIL(wm_net_init(net[j], 5));
                WM_OK_OR_FAIL(wm_optimizer_create(&opt[j], net[j], &cfg));
            }
            for (int step = 0; step < 3; step++) {
                wm_batch b = {1, x + step * widths[w][0], t ? s + step : NULL, labels + step, NULL};
                step_and_grad_apply(opt, &b);
            }
            char what[64];
            snprintf(what, sizeof what, "%s widths %d-%d-%d", names[t], widths[w][0], widths[w][1],
                     widths[w][2]);
            assert_params_close(net[0], net[1], what);
            for (int j = 0; j < 2; j++)
                wm_optimizer_free(opt[j]), wm_net_free(net[j]);
            wm_manifold_free(m);
        }
}

static void test_defaults(void **state)
{
    (void)state;
    wm_opt_config sd = wm_opt_default(WM_OPT_SD), mo = wm_opt_default(WM_OPT_MOMENTUM),
                  ad = wm_opt_default(WM_OPT_ADAM);
    assert_true(sd.lr == 0.01f && sd.volume == 0 && sd.weight_decay == 0);
    assert_true(mo.lr == 0.01f && mo.momentum == 0.9f);
    assert_true(ad.lr == 1e-3f && ad.beta1 == 0.9f && ad.beta2 == 0.999f && ad.eps == 1e-8f);
}

/* Data-parallel support: another optimizer given this one's parameters
 * (wm_net_set_params) and state (wm_optimizer_get/set_state) continues
 * bit for bit as this one does; bad state changes nothing; a fresh
 * optimizer whose buffer wm_grad_zero cleared may apply (an empty shard). */
static void test_state_copy_continues_bitwise(void **state)
{
    (void)state;
    wm_opt_kind kinds[] = {WM_OPT_SD, WM_OPT_MOMENTUM, WM_OPT_ADAM};
    for (int t = 0; t < 3; t++) {
        fixture a, c;
        setup(&a, "circle", 11);
        setup(&c, "circle", 12);          /* different parameters to start from */
        wm_optimizer *oa, *oc;
        wm_opt_config cfg = wm_opt_default(kinds[t]);
        WM_OK_OR_FAIL(wm_optimizer_create(&oa, a.net, &cfg));
        WM_OK_OR_FAIL(wm_optimizer_create(&oc, c.net, &cfg));
        wm_batch b = batch_of(&a);
        for (int i = 0; i < 3; i++)
            WM_OK_OR_FAIL(wm_step(oa, &b, NULL));
        size_t len = wm_optimizer_state_len(oa), np;
        assert_int_equal(len, a.np * (size_t)t);
        float *st = malloc((len + 1) * sizeof *st);
        WM_OK_OR_FAIL(wm_optimizer_get_state(oa, st, len));
        const float *q = wm_net_params(a.net, &np);
        WM_OK_OR_FAIL(wm_net_set_params(c.net, q, np));
        if (len > 0) {                     /* refused whole: the net and state stay */
            float *snap = tu_snapshot(c.net), keep = st[len - 1];
            EXPECT_STATUS(WM_EINVAL, wm_optimizer_set_state(oc, st, len + 1, 3));
            st[len - 1] = t == 2 ? -1.0f : NAN;
            EXPECT_STATUS(WM_EINVAL, wm_optimizer_set_state(oc, st, len, 3));
            st[len - 1] = keep;
            assert_int_equal(wm_optimizer_steps(oc), 0);
            tu_assert_unchanged(c.net, snap);
            free(snap);
        }
        EXPECT_STATUS(WM_EINVAL, wm_optimizer_get_state(oa, st, len + 1));
        WM_OK_OR_FAIL(wm_optimizer_set_state(oc, st, len, wm_optimizer_steps(oa)));
        assert_int_equal(wm_optimizer_steps(oc), 3);
        for (int i = 0; i < 2; i++) {
            WM_OK_OR_FAIL(wm_step(oa, &b, NULL));
            WM_OK_OR_FAIL(wm_step(oc, &b, NULL));
        }
        assert_memory_equal(wm_net_params(a.net, NULL), wm_net_params(c.net, NULL), np * sizeof(float));
        /* an empty shard: zeros, then apply; SD does not move, momentum moves by mu v */
        wm_optimizer *oz;
        WM_OK_OR_FAIL(wm_optimizer_create(&oz, c.net, &cfg));
        EXPECT_STATUS(WM_ESTATE, wm_apply(oz));
        WM_OK_OR_FAIL(wm_grad_zero(oz));
        float *snap = tu_snapshot(c.net);
        WM_OK_OR_FAIL(wm_apply(oz));
        if (t == 0)
            tu_assert_unchanged(c.net, snap);
        free(snap);
        EXPECT_STATUS(WM_EINVAL, wm_grad_zero(NULL));
        wm_optimizer_free(oz);
        free(st);
        wm_optimizer_free(oa), wm_optimizer_free(oc);
        teardown(&a), teardown(&c);
    }
    assert_int_equal(wm_error_set(WM_ESTATE, "rank 1: x"), WM_ESTATE);
    assert_string_equal(wm_last_error(), "rank 1: x");
}

/* wm_grad_notify (what a data-parallel transport overlaps with): on a net of
 * every kind with parameters (conv, group norm, a residual, pooling, a dense
 * layer kept at one point, FiLM, dense), each layer with parameters is
 * reported once, last layer first, the blocks tile the buffer in order, each
 * block holds its final value (wm_grad's, bit for bit) when reported, and a
 * block the callback overwrites is never written again. A batch that fails
 * its checks reports nothing. */
typedef struct {
    const float *ref;                   /* wm_grad's buffer */
    float *buf;
    int calls, layer[16], ok_at_call;
    size_t off[16], len[16];
} notify_log;

static void on_ready(void *user, int layer, size_t off, size_t len)
{
    notify_log *g = user;
    if (g->calls < 16)
        g->layer[g->calls] = layer, g->off[g->calls] = off, g->len[g->calls] = len;
    g->calls++;
    if (memcmp(g->buf + off, g->ref + off, len * sizeof(float)) != 0)
        g->ok_at_call = 0;
    for (size_t j = 0; j < len; j++)    /* a mark no later write may change */
        g->buf[off + j] = (float)(1000 + layer);
}

static void test_grad_notify_reports_final_blocks(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("circle");
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 36, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_input_shape(net, 1, 6, 6));
    WM_OK_OR_FAIL(wm_net_conv2d(net, 4, 3, 1, 1, WM_ACT_RELU));   /* 0 */
    WM_OK_OR_FAIL(wm_net_groupnorm(net, 2));                      /* 1 */
    WM_OK_OR_FAIL(wm_net_residual(net, 0, WM_ACT_NONE));          /* 2: no parameters */
    WM_OK_OR_FAIL(wm_net_maxpool(net, 2));                        /* 3: none */
    WM_OK_OR_FAIL(wm_net_dense(net, 8, WM_ACT_TANH));             /* 4: at one point */
    WM_OK_OR_FAIL(wm_net_film(net));                              /* 5 */
    WM_OK_OR_FAIL(wm_net_dense(net, 3, WM_ACT_NONE));             /* 6 */
    WM_OK_OR_FAIL(wm_net_set_layer_manifold(net, 4, 0));
    WM_OK_OR_FAIL(wm_net_init(net, 3));
    enum { B = 5 };
    float x[B * 36], s[B];
    int32_t y[B];
    uint64_t st = 9;
    tu_fill(x, B * 36, -1, 1, &st);
    tu_contexts(m, s, B, &st);
    for (int i = 0; i < B; i++)
        y[i] = (int32_t)(tu_uniform(&st) * 3);
    wm_batch b = {B, x, s, y, NULL};
    wm_optimizer *o;
    wm_opt_config cfg = wm_opt_default(WM_OPT_SD);
    WM_OK_OR_FAIL(wm_optimizer_create(&o, net, &cfg));
    size_t np;
    float *buf = wm_grad_buffer(o, &np), l0, l1;
    WM_OK_OR_FAIL(wm_grad(o, &b, &l0));
    float *ref = malloc(np * sizeof *ref);
    memcpy(ref, buf, np * sizeof *ref);
    for (size_t j = 0; j < np; j++)
        buf[j] = NAN;
    notify_log g = {ref, buf, 0, {0}, 1, {0}, {0}};
    WM_OK_OR_FAIL(wm_grad_notify(o, &b, &l1, on_ready, &g));
    assert_memory_equal(&l0, &l1, sizeof l0);
    const int want[] = {6, 5, 4, 1, 0};
    assert_int_equal(g.calls, 5);
    assert_true(g.ok_at_call);
    size_t end = np;
    for (int c = 0; c < 5; c++) {
        assert_int_equal(g.layer[c], want[c]);
        assert_true(g.len[c] > 0);
        assert_true(g.off[c] + g.len[c] == end);      /* tiles the buffer, last block first */
        end = g.off[c];
        for (size_t j = g.off[c]; j < g.off[c] + g.len[c]; j++)
            if (buf[j] != (float)(1000 + want[c]))
                fail_msg("layer %d's block was written after it was reported (entry %zu)", want[c], j);
    }
    assert_true(end == 0);
    /* ready NULL is wm_grad; a failing batch reports nothing */
    WM_OK_OR_FAIL(wm_grad_notify(o, &b, NULL, NULL, NULL));
    assert_memory_equal(buf, ref, np * sizeof *ref);
    y[B - 1] = 3;
    g.calls = 0;
    EXPECT_STATUS(WM_EINVAL, wm_grad_notify(o, &b, &l1, on_ready, &g));
    assert_int_equal(g.calls, 0);
    EXPECT_STATUS(WM_EINVAL, wm_grad_notify(NULL, &b, &l1, on_ready, &g));
    /* an empty batch: zeros, every block reported in the same order */
    wm_batch none = {0, NULL, NULL, NULL, NULL};
    memset(ref, 0, np * sizeof *ref);
    for (size_t j = 0; j < np; j++)
        buf[j] = NAN;
    notify_log z = {ref, buf, 0, {0}, 1, {0}, {0}};
    WM_OK_OR_FAIL(wm_grad_notify(o, &none, &l1, on_ready, &z));
    assert_true(l1 == 0.0f && z.calls == 5 && z.ok_at_call);
    for (int c = 0; c < 5; c++)
        assert_true(z.layer[c] == g.layer[c] && z.off[c] == g.off[c] && z.len[c] == g.len[c]);
    WM_OK_OR_FAIL(wm_apply(o));         /* zeros are a gradient (SD: nothing moves) */
    free(ref);
    wm_optimizer_free(o);
    wm_net_free(net);
    wm_manifold_free(m);
}

/* Every update path applies the same rule. One sample per step, the same
 * for every path, with weight decay and a clip that bites, three steps:
 *   direct   wm_step at batch 1: the update from the rank-1 factors
 *   fused    wm_step on the sample twice (clipping at batch > 1 forms the
 *            whole gradient): the fused pass over the buffer
 *   apply    wm_grad + wm_apply: the fused pass after measuring the buffer
 *   careful  a volume budget equal to the apply path's measured step: the
 *            careful two-pass path, which then takes the same step
 * and a double-precision reference of the documented rules driven by the
 * apply path's gradient buffer. Parameters and moments must agree to float
 * rounding; a rule that drifts in one path (weight decay, the clip's scale,
 * a moment's update, Adam's bias correction) moves them by far more. On a
 * net with a point layer too (its c_hat is 1, G = [1]). */
enum { PATHS = 4 };

static void assert_close_f(const float *a, const double *ref, size_t n, double tol, const char *what,
                           int path, int step)
{
    static const char *names[PATHS] = {"direct", "fused", "apply", "careful"};
    for (size_t j = 0; j < n; j++)
        if (!(fabs(a[j] - ref[j]) <= tol * (fabs(ref[j]) + 1e-2)))
            fail_msg("%s, %s path, step %d: entry %zu is %.9g, the rule gives %.9g", what,
                     names[path], step, j, a[j], ref[j]);
}

static void check_paths_agree(wm_opt_kind kind, int point_layer)
{
    enum { IN6 = 6 };
    wm_manifold *m = tu_manifold("circle");
    wm_net *net[PATHS];
    wm_optimizer *opt[PATHS];
    wm_opt_config cfg = wm_opt_default(kind);
    cfg.lr = kind == WM_OPT_ADAM ? 1e-2f : 0.05f;
    cfg.weight_decay = 0.05f;
    for (int p = 0; p < PATHS; p++) {
        WM_OK_OR_FAIL(wm_net_create(&net[p], m, IN6, WM_COND_MANIFOLD));
        WM_OK_OR_FAIL(wm_net_dense(net[p], 8, WM_ACT_TANH));
        WM_OK_OR_FAIL(wm_net_dense(net[p], 5, WM_ACT_RELU));
        WM_OK_OR_FAIL(wm_net_dense(net[p], 3, WM_ACT_NONE));
        if (point_layer)
            WM_OK_OR_FAIL(wm_net_set_layer_manifold(net[p], 1, 0));
        WM_OK_OR_FAIL(wm_net_init(net[p], 17));
        WM_OK_OR_FAIL(wm_optimizer_create(&opt[p], net[p], &cfg));
    }
    size_t np, len = wm_optimizer_state_len(opt[0]);
    const float *q0 = wm_net_params(net[0], &np);
    double *ref = malloc(np * sizeof *ref), *r1 = calloc(np, sizeof *r1), *r2 = calloc(np, sizeof *r2),
           *before = malloc(np * sizeof *before), *rs = malloc((2 * np + 1) * sizeof *rs);
    float *st = malloc((len + 1) * sizeof *st);
    for (size_t j = 0; j < np; j++) ref[j] = q0[j];
    float x[2 * IN6], s[2] = {0, 0};
    int32_t y[2];
    uint64_t rng = 5 + (uint64_t)kind;
    float clip = 0;
    for (int step = 0; step < 3; step++) {
        tu_fill(x, IN6, -2, 2, &rng);
        memcpy(x + IN6, x, sizeof(float) * IN6);
        s[0] = s[1] = (float)tu_uniform(&rng);
        y[0] = y[1] = step % 3;
        wm_batch one = {1, x, s, y, NULL}, two = {2, x, s, y, NULL};
        /* apply: wm_grad, the reference's gradient, then wm_apply */
        const float *qa = wm_net_params(net[2], NULL);
        for (size_t j = 0; j < np; j++) before[j] = qa[j];
        WM_OK_OR_FAIL(wm_grad(opt[2], &one, NULL));
        const float *g = wm_grad_buffer(opt[2], NULL);
        double gg = 0;
        for (size_t j = 0; j < np; j++) gg += (double)g[j] * g[j];
        if (step == 0) {                 /* a clip that bites, a different amount each step */
            clip = (float)(0.3 * sqrt(gg));
            for (int p = 0; p < PATHS; p++)
                WM_OK_OR_FAIL(wm_optimizer_set_clip_norm(opt[p], clip));
        }
        double gs = gg > (double)clip * clip ? clip / sqrt(gg) : 1.0;
        double bc1 = 1 - pow(cfg.beta1, step + 1), bc2 = 1 - pow(cfg.beta2, step + 1);
        for (size_t j = 0; j < np; j++) {
            double gj = gs * g[j], u;
            if (kind == WM_OPT_SD) {
                u = gj + cfg.weight_decay * ref[j];
            } else if (kind == WM_OPT_MOMENTUM) {
                u = r1[j] = cfg.momentum * r1[j] + gj + cfg.weight_decay * ref[j];
            } else {
                r1[j] = cfg.beta1 * r1[j] + (1 - cfg.beta1) * gj;
                r2[j] = cfg.beta2 * r2[j] + (1 - cfg.beta2) * gj * gj;
                u = (r1[j] / bc1) / (sqrt(r2[j] / bc2) + cfg.eps) + cfg.weight_decay * ref[j];
            }
            ref[j] -= cfg.lr * u;
        }
        WM_OK_OR_FAIL(wm_apply(opt[2]));
        WM_OK_OR_FAIL(wm_step(opt[0], &one, NULL));      /* direct */
        WM_OK_OR_FAIL(wm_step(opt[1], &two, NULL));      /* fused */
        /* careful: the same state and step count under a budget equal to the
         * apply path's step (its volumetric movement is |dQ|^2) */
        double vol = 0;
        for (size_t j = 0; j < np; j++) vol += (qa[j] - before[j]) * (qa[j] - before[j]);
        wm_opt_config vc = cfg;
        vc.volume = (float)vol;
        wm_optimizer *ov;
        WM_OK_OR_FAIL(wm_optimizer_create(&ov, net[3], &vc));
        WM_OK_OR_FAIL(wm_optimizer_get_state(opt[3], st, len));
        WM_OK_OR_FAIL(wm_optimizer_set_state(ov, st, len, (uint64_t)step));
        WM_OK_OR_FAIL(wm_optimizer_set_clip_norm(ov, clip));
        WM_OK_OR_FAIL(wm_step(ov, &one, NULL));
        WM_OK_OR_FAIL(wm_optimizer_get_state(ov, st, len));
        WM_OK_OR_FAIL(wm_optimizer_set_state(opt[3], st, len, (uint64_t)step + 1));
        wm_optimizer_free(ov);
        char what[64];
        snprintf(what, sizeof what, "kind %d%s", (int)kind, point_layer ? ", a point layer" : "");
        for (size_t j = 0; j < np; j++) rs[j] = r1[j], rs[np + j] = r2[j];
        for (int p = 0; p < PATHS; p++) {
            assert_close_f(wm_net_params(net[p], NULL), ref, np, 2e-5, what, p, step);
            WM_OK_OR_FAIL(wm_optimizer_get_state(opt[p], st, len));
            assert_close_f(st, rs, len, 1e-4, what, p, step);
        }
    }
    for (int p = 0; p < PATHS; p++)
        wm_optimizer_free(opt[p]), wm_net_free(net[p]);
    wm_manifold_free(m);
    free(ref), free(r1), free(r2), free(before), free(rs), free(st);
}

static void test_every_path_applies_the_same_rule(void **state)
{
    (void)state;
    for (int kind = 0; kind < 3; kind++)
        for (int point = 0; point < 2; point++)
            check_paths_agree((wm_opt_kind)kind, point);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sd_step_is_the_papers_update),
        cmocka_unit_test(test_optimizer_net),
        cmocka_unit_test(test_grad_notify_reports_final_blocks),
        cmocka_unit_test(test_volume_budget_is_exact),
        cmocka_unit_test(test_momentum_matches_formula),
        cmocka_unit_test(test_adam_matches_formula),
        cmocka_unit_test(test_sd_weight_decay),
        cmocka_unit_test(test_step_equals_grad_then_apply),
        cmocka_unit_test(test_direct_step_matches_grad_apply),
        cmocka_unit_test(test_direct_step_blocks),
        cmocka_unit_test(test_one_sample_step_at_every_row_length),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_state_copy_continues_bitwise),
        cmocka_unit_test(test_every_path_applies_the_same_rule),
    };
    return cmocka_run_group_tests_name("optim", tests, NULL, NULL);
}
