/* test_audit_grad.c -- the correctness audit's gradient and decomposition
 * sweeps: wm_grad's buffer against double-precision central differences of
 * the batch-mean loss, and wm_infer / wm_evaluate on mixed-context batches
 * against the plain layers wm_net_weights_at materialises, for
 *   every layer kind (dense, conv2d with stride and padding, max and average
 *   pool, residual from a layer and from the input, layernorm, groupnorm,
 *   FiLM on flat features and per channel, dropout, global average pool,
 *   point layers among manifold ones)
 * x every manifold of audit_ref.h (point, line, circle, Fourier H = 3,
 *   open B-splines of degree 1-4, closed of degree 1-3, 1-D and 2-D
 *   periodic custom bases, a cylinder, a B-spline x custom product)
 * x both conditionings x contexts (one sample; a mixed batch, every sample
 *   its own s; a shared batch) x both losses.
 *
 * The reference (audit_ref.h) shares no code with the library. The library
 * keeps Q = L^T P (G = L L^T), so its buffer holds dL/dQ; the test maps it to
 * dL/dP = L dL/dQ with its own Cholesky factor of wm_manifold_gram's G.
 *
 * Tolerances. The finite differences are central, h = 1e-6, in double:
 * truncation h^2 |f'''| ~ 1e-12 and rounding 1e-16 / h ~ 1e-10, both far
 * below what is tested. The library computes in float (unit roundoff
 * u = 6e-8) through a pass of a few hundred operations per value, each
 * gradient entry a sum over samples, positions and basis points whose
 * rounding is relative to the size of the summed terms, not of the result.
 * So an entry's error is bounded by ~ depth x u x (the terms' size), which
 * the largest gradient entry of the same block bounds, or for a block
 * whose entries cancel, the whole gradient's: err <= 1e-4 x (block scale)
 * + 2e-5 x (gradient scale) + 1e-7, i.e. ~1000 u of depth-amplified
 * roundoff. A wrong term (a missed basis point, a wrong index, a missing
 * factor) shows as an error of the order of the entry itself, >= 1e-2 of
 * the scale in every case the sweep builds. Outputs: float forward, relative
 * 1e-4 (the same depth x u argument, activations O(1)). */
#include "audit_ref.h"

typedef enum { CTX_ONE, CTX_MIXED, CTX_SHARED } ctx_mode;

/* Every layer kind in three nets. */
static const arch ARCHS[] = {
    {"mlp", 0, 4, 0, 7,
     {{AL_DENSE, 5, 0, 0, 0, WM_ACT_TANH, 0, 0}, {AL_LN, 0, 0, 0, 0, WM_ACT_NONE, 0, 0},
      {AL_DENSE, 5, 0, 0, 0, WM_ACT_RELU, 1, 0}, {AL_FILM, 0, 0, 0, 0, WM_ACT_NONE, 0, 0},
      {AL_RES, 1, 0, 0, 0, WM_ACT_SIGMOID, 0, 0}, {AL_DROP, 0, 0, 0, 0, WM_ACT_NONE, 0, 0.0f},
      {AL_DENSE, 3, 0, 0, 0, WM_ACT_NONE, 0, 0}}},
    {"cnn", 2, 6, 6, 10,
     {{AL_CONV, 4, 3, 1, 1, WM_ACT_RELU, 0, 0}, {AL_GN, 2, 0, 0, 0, WM_ACT_NONE, 0, 0},
      {AL_FILM, 0, 0, 0, 0, WM_ACT_NONE, 0, 0}, {AL_RES, 0, 0, 0, 0, WM_ACT_TANH, 0, 0},
      {AL_MAX, 0, 2, 0, 0, WM_ACT_NONE, 0, 0}, {AL_CONV, 4, 3, 2, 1, WM_ACT_SIGMOID, 0, 0},
      {AL_LN, 0, 0, 0, 0, WM_ACT_NONE, 1, 0}, {AL_AVG, 0, 2, 0, 0, WM_ACT_NONE, 0, 0},
      {AL_DROP, 0, 0, 0, 0, WM_ACT_NONE, 0, 0.0f}, {AL_DENSE, 3, 0, 0, 0, WM_ACT_NONE, 0, 0}}},
    {"cnn-gap", 3, 5, 5, 8,
     {{AL_CONV, 3, 3, 1, 1, WM_ACT_NONE, 0, 0}, {AL_RES, -1, 0, 0, 0, WM_ACT_RELU, 0, 0},
      {AL_AVG, 0, 2, 0, 0, WM_ACT_NONE, 0, 0}, {AL_CONV, 4, 1, 1, 0, WM_ACT_TANH, 1, 0},
      {AL_GAP, 0, 0, 0, 0, WM_ACT_NONE, 0, 0}, {AL_FILM, 0, 0, 0, 0, WM_ACT_NONE, 0, 0},
      {AL_DENSE, 4, 0, 0, 0, WM_ACT_TANH, 0, 0}, {AL_DENSE, 3, 0, 0, 0, WM_ACT_NONE, 0, 0}}},
    /* ReLU convs read only by max pools (2x2 and 3x3): the pool applies the
     * ReLU's derivative for the conv (layers/layer.h's absorbs_relu) */
    {"cnn-absorb", 2, 6, 6, 6,
     {{AL_CONV, 3, 3, 1, 1, WM_ACT_RELU, 0, 0}, {AL_MAX, 0, 2, 0, 0, WM_ACT_NONE, 0, 0},
      {AL_FILM, 0, 0, 0, 0, WM_ACT_NONE, 0, 0}, {AL_CONV, 4, 1, 1, 0, WM_ACT_RELU, 0, 0},
      {AL_MAX, 0, 3, 0, 0, WM_ACT_NONE, 0, 0}, {AL_DENSE, 3, 0, 0, 0, WM_ACT_NONE, 0, 0}}},
};
#define N_ARCHS ((int)(sizeof ARCHS / sizeof ARCHS[0]))

enum { NMAX = 6 };

typedef struct {
    int n;
    float *x, s[NMAX * 8], targets[NMAX * 8];
    int32_t labels[NMAX];
} data;

static void make_data(data *d, const aref *r, const wm_manifold *m, ctx_mode ctx, uint64_t seed)
{
    uint64_t st = seed;
    int n_in = ar_inputs(r->A), dim = r->dim, mo = ar_outputs(r);
    d->n = ctx == CTX_ONE ? 1 : ctx == CTX_MIXED ? 5 : 4;
    d->x = malloc(sizeof(float) * (size_t)d->n * n_in);
    tu_fill(d->x, (size_t)d->n * n_in, -1, 1, &st);
    tu_contexts(m, d->s, d->n, &st);
    if (ctx == CTX_SHARED)
        for (int i = 1; i < d->n; i++) memcpy(d->s + i * dim, d->s, sizeof(float) * dim);
    tu_fill(d->targets, (size_t)d->n * mo, -1, 1, &st);
    for (int i = 0; i < d->n; i++) d->labels[i] = (int32_t)(tu_uniform(&st) * mo);
}

static double g_worst;            /* the largest err / tolerance seen, for the log */

/* One case: gradient, loss and outputs against the reference. */
static void check_case(const arch *A, const am *M, wm_conditioning cond, ctx_mode ctx, wm_loss loss)
{
    /* a context range in user units on the mixed MSE batches (a concat net's
     * features are those of the basis' own coordinates (s - lo) / (hi - lo)) */
    int ranged = ctx == CTX_MIXED && loss == WM_LOSS_MSE;
    wm_net *net = ar_build_net_ex(A, M, cond, loss, ranged);
    ar_randomise(net, 0.6, 1000 + (uint64_t)ctx * 7 + (uint64_t)loss);
    const wm_manifold *m = wm_net_manifold(net);
    aref r;
    ar_load(&r, net, A, M, cond == WM_COND_CONCAT, loss);
    data d;
    make_data(&d, &r, m, ctx, 77 + (uint64_t)ctx);
    const int32_t *labels = loss == WM_LOSS_SOFTMAX_CE ? d.labels : NULL;
    const float *targets = loss == WM_LOSS_MSE ? d.targets : NULL;
    wm_batch b = {d.n, d.x, d.s, labels, targets};
    wm_optimizer *opt;
    wm_opt_config cfg = wm_opt_default(WM_OPT_SD);
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
    float lloss, eloss, acc;
    WM_OK_OR_FAIL(wm_grad(opt, &b, &lloss));
    WM_OK_OR_FAIL(wm_evaluate(net, &b, &eloss, &acc));
    size_t np;
    const float *gq0 = wm_grad_buffer(opt, &np);
    /* on images, the gradient of each conv strategy (a mixed batch runs
     * stacked or materialised; AUTO picked one of them above) */
    int nstrat = A->C > 0 && ctx == CTX_MIXED ? 3 : 1;
    float *gqs[3];
    for (int sti = 0; sti < nstrat; sti++) {
        gqs[sti] = malloc(np * sizeof(float));
        if (sti > 0) {
            WM_OK_OR_FAIL(wm_net_set_conv_strategy(net, sti == 1 ? WM_CONV_STACKED : WM_CONV_MATERIALISED));
            WM_OK_OR_FAIL(wm_grad(opt, &b, NULL));
            gq0 = wm_grad_buffer(opt, NULL);
        }
        memcpy(gqs[sti], gq0, np * sizeof(float));
    }
    double rl = ar_loss(&r, m, d.n, d.x, d.s, labels, targets, NULL, NULL);
    if (fabs(rl - lloss) > 1e-5 * (1 + fabs(rl)) || fabs(rl - eloss) > 1e-5 * (1 + fabs(rl)))
        fail_msg("%s on %s cond %d ctx %d loss %d: wm_grad loss %.8g, wm_evaluate %.8g, reference %.8g",
                 A->name, M->name, cond, ctx, loss, lloss, eloss, rl);

    /* outputs: wm_infer against the reference from P, and against the plain
     * layers wm_net_weights_at gives at each sample's context */
    int mo = ar_outputs(&r);
    float *y = malloc(sizeof(float) * (size_t)d.n * mo);
    double *yp = malloc(sizeof(double) * (size_t)d.n * mo), *yw = malloc(sizeof(double) * (size_t)d.n * mo);
    ar_loss(&r, m, d.n, d.x, d.s, labels, targets, yp, NULL);
    ar_loss(&r, m, d.n, d.x, d.s, labels, targets, yw, net);
    /* accuracy: the argmax of the outputs against the label, or under MSE
     * the target's argmax (outputs of random nets have no near-ties here:
     * a tie within float rounding would be reported, not hidden) */
    int hits = 0;
    for (int i = 0; i < d.n; i++) {
        int ay = 0, at = 0;
        for (int j = 1; j < mo; j++) {
            if (yp[i * mo + j] > yp[i * mo + ay]) ay = j;
            if (d.targets[i * mo + j] > d.targets[i * mo + at]) at = j;
        }
        hits += ay == (loss == WM_LOSS_SOFTMAX_CE ? d.labels[i] : at);
    }
    if (acc != (float)hits / d.n)
        fail_msg("%s on %s cond %d ctx %d: wm_evaluate accuracy %g, reference %d of %d", A->name, M->name, cond,
                 ctx, acc, hits, d.n);
    for (int sti = 0; sti < nstrat; sti++) {
        WM_OK_OR_FAIL(wm_net_set_conv_strategy(net, (wm_conv_strategy)sti));
        WM_OK_OR_FAIL(wm_infer(net, d.x, d.s, d.n, y));
        for (int j = 0; j < d.n * mo; j++)
            if (fabs(y[j] - yp[j]) > 1e-4 * (1 + fabs(yp[j])) || fabs(y[j] - yw[j]) > 1e-4 * (1 + fabs(yw[j])))
                fail_msg("%s on %s cond %d ctx %d strategy %d: output %d: wm_infer %.7g, reference from P "
                         "%.7g, from wm_net_weights_at %.7g", A->name, M->name, cond, ctx, sti, j, y[j], yp[j], yw[j]);
    }

    /* gradient, block by block (a layer's W part, then its b part) */
    int K = r.K;
    double *G = malloc(sizeof(double) * K * K), *L = malloc(sizeof(double) * K * K);
    if (K > 1 && !r.concat) {
        WM_OK_OR_FAIL(wm_manifold_gram(m, G));
        tu_cholesky(G, L, K);
    }
    enum { PER_BLOCK = 4 };      /* entries checked per (layer, part, basis point) */
    double berr[AR_MAXL][2], bscale[AR_MAXL][2], gscale = 0;
    size_t off = 0;
    for (int l = 0; l < A->nl; l++) {
        berr[l][0] = berr[l][1] = bscale[l][0] = bscale[l][1] = 0;
        if (!r.rows[l])
            continue;
        int Kl = r.Kl[l];
        for (int part = 0; part < 2; part++) {
            size_t len = part ? (size_t)r.rows[l] : (size_t)r.rows[l] * r.cols[l];
            size_t stride = len > PER_BLOCK ? len / PER_BLOCK : 1;
            double *P = part ? r.B[l] : r.P[l];
            for (int k = 0; k < Kl; k++)
                for (size_t j = (size_t)k % stride; j < len; j += stride) {
                    double *p = &P[(size_t)k * len + j], save = *p, h = 1e-6;
                    *p = save + h;
                    double up = ar_loss(&r, m, d.n, d.x, d.s, labels, targets, NULL, NULL);
                    *p = save - h;
                    double dn = ar_loss(&r, m, d.n, d.x, d.s, labels, targets, NULL, NULL);
                    *p = save;
                    double fd = (up - dn) / (2 * h);
                    for (int sti = 0; sti < nstrat; sti++) {
                        const float *gq = gqs[sti];
                        double lib = 0;
                        if (Kl == 1)
                            lib = gq[off + j];
                        else
                            for (int i = 0; i <= k; i++) lib += L[k * K + i] * gq[off + (size_t)i * len + j];
                        berr[l][part] = fmax(berr[l][part], fabs(lib - fd));
                    }
                    bscale[l][part] = fmax(bscale[l][part], fabs(fd));
                    gscale = fmax(gscale, fabs(fd));
                }
            off += (size_t)Kl * len;
        }
    }
    assert_int_equal(off, np);
    if (!(gscale > 1e-5))
        fail_msg("%s on %s: gradient scale %.3g: a vanishing gradient proves nothing", A->name, M->name, gscale);
    for (int l = 0; l < A->nl; l++)
        for (int part = 0; part < 2; part++) {
            if (!r.rows[l])
                continue;
            double tol = 1e-4 * bscale[l][part] + 2e-5 * gscale + 1e-7;
            g_worst = fmax(g_worst, berr[l][part] / tol);
            if (!(berr[l][part] <= tol))
                fail_msg("%s on %s cond %d ctx %d loss %d: layer %d %s: max |analytic - fd| = %.3g, "
                         "block scale %.3g, gradient scale %.3g", A->name, M->name, cond, ctx, loss, l,
                         part ? "b" : "W", berr[l][part], bscale[l][part], gscale);
        }
    for (int sti = 0; sti < nstrat; sti++) free(gqs[sti]);
    free(G), free(L), free(y), free(yp), free(yw), free(d.x);
    ar_free(&r);
    wm_optimizer_free(opt);
    wm_net_free(net);
}

/* The contexts and losses crossed: one sample (CE), a mixed batch (both
 * losses), a shared batch (MSE). */
static void sweep_arch(const arch *A)
{
    static const struct { ctx_mode ctx; wm_loss loss; } CL[] = {
        {CTX_ONE, WM_LOSS_SOFTMAX_CE}, {CTX_MIXED, WM_LOSS_SOFTMAX_CE},
        {CTX_MIXED, WM_LOSS_MSE}, {CTX_SHARED, WM_LOSS_MSE}};
    for (int mi = 0; mi < AM_N; mi++)
        for (int cond = 0; cond < 2; cond++) {
            if (cond == WM_COND_CONCAT && AM_ALL[mi].kind == AM_POINT)
                continue;                               /* a point has no features */
            for (size_t c = 0; c < sizeof CL / sizeof CL[0]; c++)
                check_case(A, &AM_ALL[mi], (wm_conditioning)cond, CL[c].ctx, CL[c].loss);
        }
    print_message("%s: worst err/tolerance %.3g\n", A->name, g_worst);
}

/* Dropout with p > 0 in training: its mask is the library's (a function of
 * the seed, step count, sample and element), so the reference cannot
 * follow it; instead the gradient must match central differences of the
 * library's own training loss (wm_grad's, which keeps the mask: the step
 * count does not move), in Q coordinates through wm_net_set_params. The
 * loss is float: with h = 1e-2 the rounding of two float losses (~1e-6
 * relative, jittery in the parameters) costs ~1e-4 of a unit loss (the
 * absolute 2e-4) and the truncation h^2/6 |f3| ~ 2e-5 of the entry, so 1e-2
 * of the block's scale (per layer, W and b) is a loose bound that still
 * fails any mask mismatch between forward and backward or a missing
 * 1/(1 - p) (errors of 30-100% of an entry below the dropout). The
 * nets are made smooth (ReLU -> tanh, max -> average pool): a kink within
 * h would break the differences, not the gradient. */
static void check_dropout(const arch *A0, const am *M, ctx_mode ctx)
{
    arch A = *A0;
    for (int l = 0; l < A.nl; l++)
    {                                            /* smooth: no kink within h */
        if (A.L[l].kind == AL_DROP) A.L[l].p = 0.3f;
        if (A.L[l].kind == AL_MAX) A.L[l].kind = AL_AVG;
        if (A.L[l].act == WM_ACT_RELU) A.L[l].act = WM_ACT_TANH;
    }
    wm_net *net = ar_build_net(&A, M, WM_COND_MANIFOLD, WM_LOSS_SOFTMAX_CE);
    ar_randomise(net, 0.6, 5);
    aref r;
    ar_load(&r, net, &A, M, 0, WM_LOSS_SOFTMAX_CE);
    data d;
    make_data(&d, &r, wm_net_manifold(net), ctx, 3);
    wm_batch b = {d.n, d.x, d.s, d.labels, NULL};
    wm_optimizer *opt;
    wm_opt_config cfg = wm_opt_default(WM_OPT_SD);
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
    /* a step first, so the mask is not step 0's */
    WM_OK_OR_FAIL(wm_step(opt, &b, NULL));
    float l0, le;
    WM_OK_OR_FAIL(wm_grad(opt, &b, &l0));
    WM_OK_OR_FAIL(wm_evaluate(net, &b, &le, NULL));
    assert_true(l0 != le);                   /* training drops, evaluation does not */
    size_t np;
    const float *gb = wm_grad_buffer(opt, &np);
    float *g = malloc(np * sizeof(float));
    memcpy(g, gb, np * sizeof(float));
    float *q = malloc(np * sizeof(float));
    memcpy(q, wm_net_params(net, NULL), np * sizeof(float));
    size_t off = 0;
    double gscale = 0;
    for (int l = 0; l < A.nl; l++) {
        if (!r.rows[l])
            continue;
        for (int part = 0; part < 2; part++) {
            size_t len = (size_t)r.Kl[l] * (part ? (size_t)r.rows[l] : (size_t)r.rows[l] * r.cols[l]);
            double err = 0, scale = 0;
            for (size_t j = off; j < off + len; j += len / 6 + 1) {
                const double h = 1e-2;
                float save = q[j], up, dn;
                q[j] = (float)(save + h);
                WM_OK_OR_FAIL(wm_net_set_params(net, q, np));
                WM_OK_OR_FAIL(wm_grad(opt, &b, &up));
                q[j] = (float)(save - h);
                WM_OK_OR_FAIL(wm_net_set_params(net, q, np));
                WM_OK_OR_FAIL(wm_grad(opt, &b, &dn));
                double hh = ((double)(float)(save + h) - (double)(float)(save - h)) / 2;
                q[j] = save;
                double fd = ((double)up - dn) / (2 * hh);
                err = fmax(err, fabs(fd - g[j]));
                scale = fmax(scale, fabs(fd));
            }
            gscale = fmax(gscale, scale);
            if (!(err <= 1e-2 * scale + 2e-4))
                fail_msg("%s on %s ctx %d, dropout 0.3: layer %d %s: max |analytic - fd| %.3g, block scale %.3g",
                         A.name, M->name, ctx, l, part ? "b" : "W", err, scale);
            off += len;
        }
    }
    assert_int_equal(off, np);
    assert_true(gscale > 1e-2);
    free(g), free(q), free(d.x);
    ar_free(&r);
    wm_optimizer_free(opt);
    wm_net_free(net);
}

static void test_audit_grad_dropout(void **st)
{
    (void)st;
    const am *ms[] = {&AM_ALL[0], &AM_ALL[2], &AM_ALL[5], &AM_ALL[13]};
    for (int a = 0; a < 2; a++)
        for (int mi = 0; mi < 4; mi++)
            for (int ctx = CTX_ONE; ctx <= CTX_SHARED; ctx++)
                check_dropout(&ARCHS[a], ms[mi], (ctx_mode)ctx);
}

/* Large batches: wm_infer and wm_evaluate over several of the library's
 * 256-row chunks (the last one partial) against the reference at each
 * sample's wm_net_weights_at, and wm_grad of the whole batch against the
 * size-weighted mean of wm_grad over a partition of it into pieces that
 * take other paths (single samples: rank 1; 7 and 33 rows: either side of
 * the direct path's 32; 200 rows). The batch-mean gradient is linear in
 * the samples, so the two agree to float summation order: 2e-5 of the
 * largest entry (the same bound as the finite-difference checks). */
static void check_large(const arch *A, const am *M, wm_conditioning cond, int shared)
{
    enum { NL = 300 };
    wm_net *net = ar_build_net(A, M, cond, WM_LOSS_SOFTMAX_CE);
    ar_randomise(net, 0.6, 21);
    const wm_manifold *m = wm_net_manifold(net);
    aref r;
    ar_load(&r, net, A, M, cond == WM_COND_CONCAT, WM_LOSS_SOFTMAX_CE);
    int n_in = ar_inputs(A), dim = r.dim, mo = ar_outputs(&r);
    float *x = malloc(sizeof(float) * NL * n_in), *s = malloc(sizeof(float) * NL * 8);
    float *y = malloc(sizeof(float) * NL * mo);
    double *yw = malloc(sizeof(double) * NL * mo);
    int32_t *labels = malloc(sizeof(int32_t) * NL);
    uint64_t st = 8;
    tu_fill(x, (size_t)NL * n_in, -1, 1, &st);
    tu_contexts(m, s, NL, &st);
    if (shared)
        for (int i = 1; i < NL; i++) memcpy(s + i * dim, s, sizeof(float) * dim);
    for (int i = 0; i < NL; i++) labels[i] = (int32_t)(tu_uniform(&st) * mo);
    WM_OK_OR_FAIL(wm_infer(net, x, s, NL, y));
    double rl = 0;
    for (int i0 = 0; i0 < NL; i0 += 16) {      /* the reference in pieces (its feature cache holds 16) */
        int c = NL - i0 < 16 ? NL - i0 : 16;
        rl += c * ar_loss(&r, m, c, x + (size_t)i0 * n_in, s + (size_t)i0 * dim, labels + i0, NULL,
                          yw + (size_t)i0 * mo, net);
    }
    rl /= NL;
    for (int j = 0; j < NL * mo; j++)
        if (fabs(y[j] - yw[j]) > 1e-4 * (1 + fabs(yw[j])))
            fail_msg("%s on %s cond %d shared %d: output %d of %d: wm_infer %.7g, from wm_net_weights_at %.7g",
                     A->name, M->name, cond, shared, j, NL * mo, y[j], yw[j]);
    wm_batch b = {NL, x, s, labels, NULL};
    float el, gl;
    WM_OK_OR_FAIL(wm_evaluate(net, &b, &el, NULL));
    wm_optimizer *opt;
    wm_opt_config cfg = wm_opt_default(WM_OPT_SD);
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
    WM_OK_OR_FAIL(wm_grad(opt, &b, &gl));
    if (fabs(el - rl) > 1e-5 * (1 + rl) || fabs(gl - rl) > 1e-5 * (1 + rl))
        fail_msg("%s on %s: batch of %d: wm_evaluate %.8g, wm_grad %.8g, reference %.8g", A->name, M->name, NL,
                 el, gl, rl);
    size_t np;
    const float *g = wm_grad_buffer(opt, &np);
    float *whole = malloc(np * sizeof(float));
    double *sum = calloc(np, sizeof(double)), gmax = 0, err = 0;
    memcpy(whole, g, np * sizeof(float));
    static const int pieces[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 7, 33, 50, 200};
    int at = 0;
    for (size_t p = 0; p < sizeof pieces / sizeof pieces[0]; p++) {
        wm_batch bp = {pieces[p], x + (size_t)at * n_in, s + (size_t)at * dim, labels + at, NULL};
        WM_OK_OR_FAIL(wm_grad(opt, &bp, NULL));
        g = wm_grad_buffer(opt, NULL);
        for (size_t j = 0; j < np; j++) sum[j] += (double)pieces[p] / NL * g[j];
        at += pieces[p];
    }
    assert_int_equal(at, NL);
    for (size_t j = 0; j < np; j++) gmax = fmax(gmax, fabs(sum[j])), err = fmax(err, fabs(sum[j] - whole[j]));
    if (!(err <= 2e-5 * gmax) || !(gmax > 1e-3))
        fail_msg("%s on %s cond %d shared %d: the batch's gradient differs from its pieces' mean by %.3g "
                 "(largest entry %.3g)", A->name, M->name, cond, shared, err, gmax);
    free(x), free(s), free(y), free(yw), free(labels), free(whole), free(sum);
    ar_free(&r);
    wm_optimizer_free(opt);
    wm_net_free(net);
}

static void test_audit_large_batches(void **st)
{
    (void)st;
    const am *ms[] = {&AM_ALL[0], &AM_ALL[2], &AM_ALL[6], &AM_ALL[13]};
    for (int a = 0; a < 3; a++)
        for (int mi = 0; mi < 4; mi++)
            for (int cond = 0; cond < 2; cond++) {
                if (cond == WM_COND_CONCAT && ms[mi]->kind == AM_POINT)
                    continue;
                for (int sh = 0; sh < 2; sh++)
                    check_large(&ARCHS[a], ms[mi], (wm_conditioning)cond, sh);
            }
}

static void test_audit_grad_mlp(void **st) { (void)st; sweep_arch(&ARCHS[0]); }
static void test_audit_grad_cnn(void **st) { (void)st; sweep_arch(&ARCHS[1]); }
static void test_audit_grad_cnn_gap(void **st) { (void)st; sweep_arch(&ARCHS[2]); }
static void test_audit_grad_cnn_absorb(void **st) { (void)st; sweep_arch(&ARCHS[3]); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_audit_grad_mlp),
        cmocka_unit_test(test_audit_grad_cnn),
        cmocka_unit_test(test_audit_grad_cnn_gap),
        cmocka_unit_test(test_audit_grad_cnn_absorb),
        cmocka_unit_test(test_audit_grad_dropout),
        cmocka_unit_test(test_audit_large_batches),
    };
    return cmocka_run_group_tests_name("audit: gradients and decomposition", tests, NULL, NULL);
}
