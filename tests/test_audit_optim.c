/* test_audit_optim.c -- the correctness audit's optimizer sweep: every
 * wm_step against a double-precision reference of the documented rules
 * (DESIGN.md sections 2, 4 and 5; PyTorch's conventions):
 *   SD        dQ = -lr (g + wd q)
 *   momentum  v = mu v + g + wd q,  dQ = -lr v
 *   Adam      m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2,
 *             dQ = -lr ((m/bc1) / (sqrt(v/bc2) + eps) + wd q)   (AdamW)
 *   clip      g <- g min(1, c / |g|) before the rule (wd not included)
 *   volume    the step's final dQ rescaled to |dQ|^2 = volume
 * and, in the paper's coordinates, P = L^-T Q (so SD is
 * dP = -lr (G^-1 (x) I) dL/dP) and the volumetric movement
 * dP^T (G (x) I) dP = volume, with the test's own Cholesky factor of G.
 *
 * Swept: every manifold of audit_ref.h (the open B-splines take the local
 * direct update, src/optim.c local_direct_update, on a mixed batch of 2+;
 * degree 4 its two-pass branch) x nets (dense layers only: the direct
 * paths; a point layer among them; layernorm/FiLM/residual and a conv net:
 * the gradient-buffer paths) x batches (one sample: the rank-1 direct
 * update; shared 4 and 40: one W(s); mixed 5: stacked or local; mixed 40:
 * beyond the direct path's rows) x settings (SD, momentum and Adam, with and
 * without weight decay, clipping that bites, a volume budget), three steps
 * each (the last after wm_optimizer_set_lr halves the rate: momentum's new
 * lr applies to the whole velocity), the state carried by the library and
 * compared every step.
 *
 * The gradient g of a step is wm_grad's on a clone of the net taken just
 * before it (checked against finite differences by test_audit_grad.c); the
 * rule runs in double from the library's own state before the step.
 *
 * Tolerances. A step's paths form g in float in different orders (rank-1
 * factors, blocked products, the gradient buffer): they agree to the
 * gradient's float error, which test_audit_grad bounds by 2e-5 of the
 * gradient's largest entry, dg = 2e-5 max|g|. An entry's error is then
 *   3 ulp(q) (the float store of q - s u and the rule's own rounding)
 *   + s 3u (the terms u sums: g, wd q, mu v; Adam 4 |u|: float rounds each
 *     partial sum relative to its terms, which can exceed u)
 *   + s |du/dg| dg, |du/dg| = 1 (SD, momentum) or (1-b1)/bc1 / (sqrt(v^)+eps) (Adam)
 * and with a volume budget the step's scale has the relative error of |u|,
 * ~dg / |g|. Moments: the same dg (momentum v, Adam m) and 2|g|dg (Adam v).
 * P: float P = L^-T Q read back; 1e-5 of the layer's largest |P| (L^-T's
 * rows sum a few float Q) plus 1e-4 of its largest |dP|. Volume: relative
 * 1e-3 (|dQ|^2 from float differences of q ~ 0.6, dQ ~ 1e-3: ~1e-4). */
#include "audit_ref.h"

typedef enum { B_ONE, B_SHARED, B_MIXED, B_SHARED_BIG, B_MIXED_BIG } bmode;

static const arch NETS[] = {
    {"dense", 0, 5, 0, 3,
     {{AL_DENSE, 6, 0, 0, 0, WM_ACT_TANH, 0, 0}, {AL_DENSE, 5, 0, 0, 0, WM_ACT_RELU, 0, 0},
      {AL_DENSE, 3, 0, 0, 0, WM_ACT_NONE, 0, 0}}},
    {"dense-point", 0, 5, 0, 3,
     {{AL_DENSE, 6, 0, 0, 0, WM_ACT_SIGMOID, 0, 0}, {AL_DENSE, 5, 0, 0, 0, WM_ACT_TANH, 1, 0},
      {AL_DENSE, 3, 0, 0, 0, WM_ACT_NONE, 0, 0}}},
    {"norms", 0, 4, 0, 6,
     {{AL_DENSE, 5, 0, 0, 0, WM_ACT_TANH, 0, 0}, {AL_LN, 0, 0, 0, 0, WM_ACT_NONE, 0, 0},
      {AL_DENSE, 5, 0, 0, 0, WM_ACT_RELU, 0, 0}, {AL_FILM, 0, 0, 0, 0, WM_ACT_NONE, 1, 0},
      {AL_RES, 1, 0, 0, 0, WM_ACT_NONE, 0, 0}, {AL_DENSE, 3, 0, 0, 0, WM_ACT_NONE, 0, 0}}},
    {"cnn", 2, 4, 4, 4,
     {{AL_CONV, 3, 3, 1, 1, WM_ACT_TANH, 0, 0}, {AL_MAX, 0, 2, 0, 0, WM_ACT_NONE, 0, 0},
      {AL_GN, 3, 0, 0, 0, WM_ACT_NONE, 0, 0}, {AL_DENSE, 3, 0, 0, 0, WM_ACT_NONE, 0, 0}}},
};
#define N_NETS ((int)(sizeof NETS / sizeof NETS[0]))

typedef struct {
    const char *name;
    wm_opt_kind kind;
    float wd, clip_frac, volume;  /* clip_frac: the clip as a fraction of the first step's |g| */
} setting;

static const setting SETTINGS[] = {
    {"sd", WM_OPT_SD, 0, 0, 0},
    {"sd+wd", WM_OPT_SD, 0.05f, 0, 0},
    {"momentum", WM_OPT_MOMENTUM, 0, 0, 0},
    {"momentum+wd+clip", WM_OPT_MOMENTUM, 0.05f, 0.4f, 0},
    {"adam", WM_OPT_ADAM, 0, 0, 0},
    {"adam+wd", WM_OPT_ADAM, 0.05f, 0, 0},
    {"sd+clip", WM_OPT_SD, 0, 0.4f, 0},
    {"sd+volume", WM_OPT_SD, 0, 0, 1e-3f},
    {"momentum+wd+volume", WM_OPT_MOMENTUM, 0.05f, 0, 1e-3f},
    {"adam+wd+volume+clip", WM_OPT_ADAM, 0.05f, 0.5f, 2e-3f},
};
#define N_SETTINGS ((int)(sizeof SETTINGS / sizeof SETTINGS[0]))

enum { BMAX = 40 };

static int batch_n(bmode b)
{
    static const int n[] = {1, 4, 5, 40, 40};
    return n[b];
}

/* Per layer with parameters: the test's own L of G (K x K; a point layer: 1). */
typedef struct {
    int K;
    double G[1024], L[1024], Linv[1024];
} gram;

static void gram_of(gram *g, const wm_manifold *m)
{
    g->K = wm_manifold_n_basis(m);
    int K = g->K;
    assert_true(K * K <= 1024);
    WM_OK_OR_FAIL(wm_manifold_gram(m, g->G));
    tu_cholesky(g->G, g->L, K);
    /* L^-1 by forward substitution, column by column */
    memset(g->Linv, 0, sizeof g->Linv);
    for (int c = 0; c < K; c++)
        for (int i = 0; i < K; i++) {
            double v = i == c ? 1.0 : 0.0;
            for (int j = 0; j < i; j++) v -= g->L[i * K + j] * g->Linv[j * K + c];
            g->Linv[i * K + c] = v / g->L[i * K + i];
        }
}

/* The net's parameters in P coordinates, per layer with parameters, from
 * wm_net_control_point, in the layout of the Q array (W block: Kl x rows x
 * cols, then b: Kl x rows). */
static void control_points(const wm_net *net, const aref *r, double *P)
{
    size_t off = 0;
    for (int l = 0; l < r->A->nl; l++) {
        if (!r->rows[l])
            continue;
        size_t wn = (size_t)r->rows[l] * r->cols[l];
        float *w = malloc(wn * sizeof *w), *b = malloc((size_t)r->rows[l] * sizeof *b);
        for (int k = 0; k < r->Kl[l]; k++) {
            WM_OK_OR_FAIL(wm_net_control_point(net, l, k, w, b));
            for (size_t j = 0; j < wn; j++) P[off + k * wn + j] = w[j];
            for (int j = 0; j < r->rows[l]; j++) P[off + r->Kl[l] * wn + (size_t)k * r->rows[l] + j] = b[j];
        }
        off += (size_t)r->Kl[l] * (wn + r->rows[l]);
        free(w), free(b);
    }
}

/* out = (M (x) I) v per layer block, M = K x K (point layers: identity). */
static void kron(const aref *r, const double *M, int K, const double *v, double *out)
{
    size_t off = 0;
    for (int l = 0; l < r->A->nl; l++) {
        if (!r->rows[l])
            continue;
        for (int part = 0; part < 2; part++) {
            size_t len = part ? (size_t)r->rows[l] : (size_t)r->rows[l] * r->cols[l];
            int Kl = r->Kl[l];
            for (int k = 0; k < Kl; k++)
                for (size_t j = 0; j < len; j++) {
                    double acc = 0;
                    if (Kl == 1)
                        acc = v[off + j];
                    else
                        for (int i = 0; i < K; i++) acc += M[k * K + i] * v[off + (size_t)i * len + j];
                    out[off + (size_t)k * len + j] = acc;
                }
            off += (size_t)Kl * len;
        }
    }
}

static void check_run(const arch *A, const am *M, bmode bm, const setting *S)
{
    wm_net *net = ar_build_net(A, M, WM_COND_MANIFOLD, WM_LOSS_SOFTMAX_CE);
    ar_randomise(net, 0.6, 4242 + (uint64_t)bm);
    const wm_manifold *m = wm_net_manifold(net);
    aref r;
    ar_load(&r, net, A, M, 0, WM_LOSS_SOFTMAX_CE);
    gram gr;
    gram_of(&gr, m);
    double LinvT[1024];
    for (int i = 0; i < gr.K; i++)
        for (int j = 0; j < gr.K; j++) LinvT[i * gr.K + j] = gr.Linv[j * gr.K + i];
    wm_opt_config cfg = wm_opt_default(S->kind);
    cfg.lr = S->kind == WM_OPT_ADAM ? 1e-2f : 0.05f;
    cfg.weight_decay = S->wd;
    cfg.volume = S->volume;
    wm_optimizer *opt;
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
    size_t np = wm_net_n_params(net), sl = wm_optimizer_state_len(opt);
    int n = batch_n(bm), n_in = ar_inputs(A), dim = r.dim, mo = ar_outputs(&r);
    float *x = malloc(sizeof(float) * BMAX * n_in), s[BMAX * 8];
    int32_t labels[BMAX];
    double *q0 = malloc(np * sizeof(double)), *u = malloc(np * sizeof(double)),
           *m1 = calloc(np, sizeof(double)), *m2 = calloc(np, sizeof(double)),
           *P0 = malloc(np * sizeof(double)), *P1 = malloc(np * sizeof(double)),
           *dq = malloc(np * sizeof(double)), *dP = malloc(np * sizeof(double)),
           *Gd = malloc(np * sizeof(double)), *tolu = malloc(np * sizeof(double)),
           *mag = calloc(np, sizeof(double));
    float *st = malloc((sl + 1) * sizeof(float));
    uint64_t rng = 99 + (uint64_t)bm * 13;
    float clip = 0;
    char what[160];
    for (int step = 0; step < 3; step++) {
        snprintf(what, sizeof what, "%s on %s, batch mode %d (n %d), %s, step %d", A->name, M->name, bm, n,
                 S->name, step);
        tu_fill(x, (size_t)n * n_in, -1, 1, &rng);
        tu_contexts(m, s, n, &rng);
        if (bm == B_SHARED || bm == B_SHARED_BIG)
            for (int i = 1; i < n; i++) memcpy(s + i * dim, s, sizeof(float) * dim);
        for (int i = 0; i < n; i++) labels[i] = (int32_t)(tu_uniform(&rng) * mo);
        wm_batch b = {n, x, s, labels, NULL};
        /* the gradient at the parameters before the step, on a clone */
        wm_net *cl;
        wm_optimizer *og;
        WM_OK_OR_FAIL(wm_net_clone(&cl, net));
        wm_opt_config sd = wm_opt_default(WM_OPT_SD);
        WM_OK_OR_FAIL(wm_optimizer_create(&og, cl, &sd));
        float gl, sl_loss;
        WM_OK_OR_FAIL(wm_grad(og, &b, &gl));
        const float *g = wm_grad_buffer(og, NULL);
        double gg = 0, gmax = 0;
        for (size_t j = 0; j < np; j++) gg += (double)g[j] * g[j], gmax = fmax(gmax, fabs(g[j]));
        if (step == 0 && S->clip_frac > 0) {
            clip = (float)(S->clip_frac * sqrt(gg));
            WM_OK_OR_FAIL(wm_optimizer_set_clip_norm(opt, clip));
        }
        double gs = clip > 0 && gg > (double)clip * clip ? clip / sqrt(gg) : 1.0;
        if (step == 2) {                  /* a schedule: the new lr applies to the whole step */
            cfg.lr *= 0.5f;
            WM_OK_OR_FAIL(wm_optimizer_set_lr(opt, cfg.lr));
        }
        /* the library's state before the step */
        const float *qf = wm_net_params(net, NULL);
        for (size_t j = 0; j < np; j++) q0[j] = qf[j];
        WM_OK_OR_FAIL(wm_optimizer_get_state(opt, st, sl));
        if (S->kind != WM_OPT_SD)
            for (size_t j = 0; j < np; j++) m1[j] = st[j];
        if (S->kind == WM_OPT_ADAM)
            for (size_t j = 0; j < np; j++) m2[j] = st[np + j];
        assert_int_equal(wm_optimizer_steps(opt), step);
        control_points(net, &r, P0);
        /* the rule in double */
        int t = step + 1;
        double bc1 = 1 - pow(cfg.beta1, t), bc2 = 1 - pow(cfg.beta2, t), uu = 0, dg = 2e-5 * gmax * gs;
        for (size_t j = 0; j < np; j++) {
            double gj = gs * g[j];
            /* tolu: dg's effect plus 3 roundings of the terms u sums (float
             * rounds each partial sum relative to its terms, not to u);
             * mag: the same for the first moment */
            double wq = fabs(cfg.weight_decay * q0[j]);
            if (S->kind == WM_OPT_SD) {
                u[j] = gj + cfg.weight_decay * q0[j];
                tolu[j] = dg + 1.8e-7 * (fabs(gj) + wq);
            } else if (S->kind == WM_OPT_MOMENTUM) {
                mag[j] = 1.8e-7 * (fabs(cfg.momentum * m1[j]) + fabs(gj) + wq);
                m1[j] = cfg.momentum * m1[j] + gj + cfg.weight_decay * q0[j];
                u[j] = m1[j];
                tolu[j] = dg + mag[j];
            } else {
                mag[j] = 1.8e-7 * (fabs(cfg.beta1 * m1[j]) + fabs((1 - cfg.beta1) * gj));
                m1[j] = cfg.beta1 * m1[j] + (1 - cfg.beta1) * gj;
                m2[j] = cfg.beta2 * m2[j] + (1 - cfg.beta2) * gj * gj;
                double den = sqrt(m2[j] / bc2) + cfg.eps;
                u[j] = (m1[j] / bc1) / den + cfg.weight_decay * q0[j];
                tolu[j] = fmin(dg * (1 - cfg.beta1) / bc1 / den, 2.0 / bc1) + 1.8e-7 * (4 * fabs(u[j]) + wq);
            }
            uu += u[j] * u[j];
        }
        double sc = cfg.volume > 0 ? sqrt(cfg.volume / uu) : cfg.lr;
        WM_OK_OR_FAIL(wm_step(opt, &b, &sl_loss));
        if (fabs(sl_loss - gl) > 1e-5 * (1 + fabs(gl)))
            fail_msg("%s: wm_step's loss %.8g, wm_grad's %.8g", what, sl_loss, gl);
        assert_int_equal(wm_optimizer_steps(opt), step + 1);
        qf = wm_net_params(net, NULL);
        double umax = 0;
        for (size_t j = 0; j < np; j++) umax = fmax(umax, fabs(u[j]));
        for (size_t j = 0; j < np; j++) {
            double want = q0[j] - sc * u[j];
            double tol = 3 * 6e-8 * (fabs(q0[j]) + fabs(want)) + sc * tolu[j] +
                         (cfg.volume > 0 ? sc * fabs(u[j]) * 2 * dg / (sqrt(gg) * gs + 1e-30) : 0);
            if (!(fabs(qf[j] - want) <= tol))
                fail_msg("%s: Q[%zu] = %.9g, the rule gives %.9g (q before %.9g, u %.6g, |u|max %.3g, "
                         "step %.3g, tol %.3g)", what, j, qf[j], want, q0[j], u[j], umax, sc, tol);
            dq[j] = qf[j] - q0[j];
        }
        /* the moments */
        WM_OK_OR_FAIL(wm_optimizer_get_state(opt, st, sl));
        for (size_t j = 0; S->kind != WM_OPT_SD && j < np; j++) {
            double tol1 = mag[j] + dg * (S->kind == WM_OPT_ADAM ? 1 - cfg.beta1 : 1.0);
            if (!(fabs(st[j] - m1[j]) <= tol1))
                fail_msg("%s: first moment %zu = %.9g, the rule gives %.9g", what, j, st[j], m1[j]);
            if (S->kind == WM_OPT_ADAM) {
                double tol2 = 3 * 6e-8 * fabs(m2[j]) + (1 - cfg.beta2) * 2 * (fabs(g[j]) * gs + dg) * dg + 1e-30;
                if (!(fabs(st[np + j] - m2[j]) <= tol2))
                    fail_msg("%s: second moment %zu = %.9g, the rule gives %.9g", what, j, st[np + j], m2[j]);
            }
        }
        /* the paper's coordinates: dP = L^-T dQ (so SD's dP is
         * -lr (G^-1 (x) I) dL/dP), the movement dP^T (G (x) I) dP */
        control_points(net, &r, P1);
        double *want = Gd;
        kron(&r, LinvT, gr.K, dq, want);
        size_t off = 0;
        for (int l = 0; l < A->nl; l++) {
            if (!r.rows[l])
                continue;
            size_t len = (size_t)r.Kl[l] * ((size_t)r.rows[l] * r.cols[l] + r.rows[l]);
            double pmax = 0, dmax = 0;
            for (size_t j = off; j < off + len; j++) pmax = fmax(pmax, fabs(P0[j])), dmax = fmax(dmax, fabs(want[j]));
            for (size_t j = off; j < off + len; j++) {
                double got = P1[j] - P0[j];
                if (!(fabs(got - want[j]) <= 1e-5 * pmax + 1e-4 * dmax))
                    fail_msg("%s: layer %d: P moved by %.9g at %zu, L^-T dQ gives %.9g (max |P| %.3g)", what,
                             l, got, j - off, want[j], pmax);
            }
            off += len;
        }
        if (cfg.volume > 0) {
            /* dP = L^-T dQ in double from the Q the library holds (float P
             * read back loses digits where |P| >> |dP|, at high degrees) */
            kron(&r, LinvT, gr.K, dq, dP);
            kron(&r, gr.G, gr.K, dP, Gd);
            double v = 0;
            for (size_t j = 0; j < np; j++) v += dP[j] * Gd[j];
            if (fabs(v - cfg.volume) > 1e-3 * cfg.volume)
                fail_msg("%s: the manifold moved by %.9g, the budget is %.9g", what, v, cfg.volume);
        } else if (S->kind == WM_OPT_SD && S->wd == 0) {
            double dd = 0, ee = 0;                     /* |dQ| = lr min(|g|, clip) */
            for (size_t j = 0; j < np; j++) dd += dq[j] * dq[j], ee += 1.44e-14 * q0[j] * q0[j];
            double lim = cfg.lr * (clip > 0 ? fmin(sqrt(gg), clip) : sqrt(gg));
            if (fabs(sqrt(dd) - lim) > 1e-4 * lim + sqrt(ee))     /* + an ulp of each q */
                fail_msg("%s: |dQ| = %.9g, lr min(|g|, clip) = %.9g", what, sqrt(dd), lim);
        }
        wm_optimizer_free(og);
        wm_net_free(cl);
    }
    free(x), free(q0), free(u), free(m1), free(m2), free(P0), free(P1), free(dq), free(dP), free(Gd),
        free(tolu), free(mag), free(st);
    ar_free(&r);
    wm_optimizer_free(opt);
    wm_net_free(net);
}

static void sweep_net(const arch *A)
{
    for (int mi = 0; mi < AM_N; mi++)
        for (int bm = B_ONE; bm <= B_MIXED_BIG; bm++)
            for (int si = 0; si < N_SETTINGS; si++)
                check_run(A, &AM_ALL[mi], (bmode)bm, &SETTINGS[si]);
}

static void test_audit_optim_dense(void **st) { (void)st; sweep_net(&NETS[0]); }
static void test_audit_optim_dense_point(void **st) { (void)st; sweep_net(&NETS[1]); }
static void test_audit_optim_norms(void **st) { (void)st; sweep_net(&NETS[2]); }
static void test_audit_optim_cnn(void **st) { (void)st; sweep_net(&NETS[3]); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_audit_optim_dense),
        cmocka_unit_test(test_audit_optim_dense_point),
        cmocka_unit_test(test_audit_optim_norms),
        cmocka_unit_test(test_audit_optim_cnn),
    };
    return cmocka_run_group_tests_name("audit: optimizer rules", tests, NULL, NULL);
}
