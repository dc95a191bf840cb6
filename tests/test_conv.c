/* test_conv.c -- convolution and pooling on the manifold (src/conv.c):
 * gradients against finite differences of a double-precision reference,
 * the stacked and materialised paths against each other, batched inference
 * against materialised weights, learning, save/load and argument checks. */
#include <unistd.h>

#include "layers/layer.h"
#include "layers/pool.h"
#include "testutil.h"

typedef enum { L_CONV, L_MAX, L_AVG, L_DENSE } lkind;
typedef struct {
    lkind kind;
    int a, k, stride, pad;        /* conv: a = out channels; pool: k = size; dense: a = outputs */
    wm_activation act;
} arch;

/* ---- the reference: direct loops in double, parameters as P_k ----------- */
typedef struct {
    int n, K, concat, C0, H0, W0;
    arch L[8];
    int rows[8], cols[8];
    double *P[8], *B[8];
} cnn_ref;

static void ref_load(cnn_ref *r, const wm_net *net, const arch *a, int n, int K, int concat)
{
    memset(r, 0, sizeof *r);
    r->n = n, r->K = K, r->concat = concat;
    for (int l = 0; l < n; l++) {
        r->L[l] = a[l];
        if (a[l].kind == L_MAX || a[l].kind == L_AVG) continue;
        WM_OK_OR_FAIL(wm_net_layer_info(net, l, &r->cols[l], &r->rows[l], NULL));
        size_t wn = (size_t)r->rows[l] * r->cols[l];
        r->P[l] = calloc(K * wn, sizeof(double));
        r->B[l] = calloc((size_t)K * r->rows[l], sizeof(double));
        float *w = malloc(wn * sizeof *w), *b = malloc(r->rows[l] * sizeof *b);
        for (int k = 0; k < K; k++) {
            WM_OK_OR_FAIL(wm_net_control_point(net, l, k, w, b));
            for (size_t j = 0; j < wn; j++) r->P[l][k * wn + j] = w[j];
            for (int j = 0; j < r->rows[l]; j++) r->B[l][k * r->rows[l] + j] = b[j];
        }
        free(w), free(b);
    }
}

static void ref_free(cnn_ref *r)
{
    for (int l = 0; l < r->n; l++) free(r->P[l]), free(r->B[l]);
}

/* Mean softmax cross-entropy of the reference over a batch. */
static double ref_loss(const cnn_ref *r, const wm_manifold *m, int N, const float *x, const float *s,
                       const int32_t *labels)
{
    static double a[4096], z[4096];
    double total = 0;
    for (int i = 0; i < N; i++) {
        float c[16] = {1};
        int C = r->C0, H = r->H0, W = r->W0;
        if (!r->concat && m) WM_OK_OR_FAIL(wm_manifold_basis(m, s + i, c));
        for (int j = 0; j < C * H * W; j++) a[j] = x[(size_t)i * C * H * W + j];
        if (r->concat) {                         /* circle features as two constant planes */
            for (int q = 0; q < H * W; q++) {
                a[C * H * W + q] = cos(2 * TU_PI * s[i]);
                a[(C + 1) * H * W + q] = sin(2 * TU_PI * s[i]);
            }
            C += 2;
        }
        int flat = C * H * W;
        for (int l = 0; l < r->n; l++) {
            const arch *L = &r->L[l];
            if (L->kind == L_CONV) {
                int oh = (H + 2 * L->pad - L->k) / L->stride + 1, ow = (W + 2 * L->pad - L->k) / L->stride + 1;
                size_t wn = (size_t)r->rows[l] * r->cols[l];
                for (int o = 0; o < L->a; o++)
                    for (int y = 0; y < oh; y++)
                        for (int xx = 0; xx < ow; xx++) {
                            double v = 0;
                            for (int k = 0; k < r->K; k++) {
                                double acc = r->B[l][k * r->rows[l] + o];
                                for (int ci = 0; ci < C; ci++)
                                    for (int ky = 0; ky < L->k; ky++)
                                        for (int kx = 0; kx < L->k; kx++) {
                                            int iy = y * L->stride - L->pad + ky, ix = xx * L->stride - L->pad + kx;
                                            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                            acc += r->P[l][k * wn + (size_t)o * r->cols[l] + (ci * L->k + ky) * L->k + kx] *
                                                   a[(ci * H + iy) * W + ix];
                                        }
                                v += c[k] * acc;
                            }
                            z[(o * oh + y) * ow + xx] = tu_act(L->act, v);
                        }
                C = L->a, H = oh, W = ow;
            } else if (L->kind == L_MAX || L->kind == L_AVG) {
                int oh = H / L->k, ow = W / L->k;
                for (int ci = 0; ci < C; ci++)
                    for (int y = 0; y < oh; y++)
                        for (int xx = 0; xx < ow; xx++) {
                            double v = L->kind == L_MAX ? -1e300 : 0;
                            for (int dy = 0; dy < L->k; dy++)
                                for (int dx = 0; dx < L->k; dx++) {
                                    double u = a[(ci * H + y * L->k + dy) * W + xx * L->k + dx];
                                    v = L->kind == L_MAX ? fmax(v, u) : v + u / (L->k * L->k);
                                }
                            z[(ci * oh + y) * ow + xx] = v;
                        }
                H = oh, W = ow;
            } else {
                size_t wn = (size_t)r->rows[l] * r->cols[l];
                for (int o = 0; o < L->a; o++) {
                    double v = 0;
                    for (int k = 0; k < r->K; k++) {
                        double acc = r->B[l][k * r->rows[l] + o];
                        for (int j = 0; j < flat; j++) acc += r->P[l][k * wn + (size_t)o * r->cols[l] + j] * a[j];
                        v += c[k] * acc;
                    }
                    z[o] = tu_act(L->act, v);
                }
                C = L->a, H = W = 1;
            }
            flat = C * H * W;
            memcpy(a, z, sizeof(double) * flat);
        }
        double mx = a[0], sum = 0;
        for (int j = 1; j < flat; j++) mx = fmax(mx, a[j]);
        for (int j = 0; j < flat; j++) sum += exp(a[j] - mx);
        total += log(sum) + mx - a[labels[i]];
    }
    return total / N;
}

/* points: bit l set makes layer l a point layer (wm_net_set_layer_manifold). */
static wm_net *build_ex(const char *mname, wm_conditioning cond, int C, int H, int W, const arch *a,
                        int n, unsigned points)
{
    wm_manifold *m = tu_manifold(mname);
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, C * H * W, cond));
    wm_manifold_free(m);
    WM_OK_OR_FAIL(wm_net_input_shape(net, C, H, W));
    for (int l = 0; l < n; l++) {
        switch (a[l].kind) {
        case L_CONV: WM_OK_OR_FAIL(wm_net_conv2d(net, a[l].a, a[l].k, a[l].stride, a[l].pad, a[l].act)); break;
        case L_MAX: WM_OK_OR_FAIL(wm_net_maxpool(net, a[l].k)); break;
        case L_AVG: WM_OK_OR_FAIL(wm_net_avgpool(net, a[l].k)); break;
        case L_DENSE: WM_OK_OR_FAIL(wm_net_dense(net, a[l].a, a[l].act)); break;
        }
        if (points >> l & 1)
            WM_OK_OR_FAIL(wm_net_set_layer_manifold(net, l, 0));
    }
    WM_OK_OR_FAIL(wm_net_init(net, 4));
    size_t np = wm_net_n_params(net);
    float *q = malloc(np * sizeof *q);
    uint64_t st = 31;
    tu_fill(q, np, -0.4, 0.4, &st);
    WM_OK_OR_FAIL(wm_net_set_params(net, q, np));
    free(q);
    return net;
}

static wm_net *build(const char *mname, wm_conditioning cond, int C, int H, int W, const arch *a, int n)
{
    return build_ex(mname, cond, C, H, W, a, n, 0);
}

/* Stride 2, padding, odd sizes, both pools, a dense head. */
static const arch NET_A[] = {
    {L_CONV, 3, 3, 1, 1, WM_ACT_TANH}, {L_MAX, 0, 2, 0, 0, WM_ACT_NONE},
    {L_CONV, 4, 2, 2, 1, WM_ACT_SIGMOID}, {L_AVG, 0, 1, 0, 0, WM_ACT_NONE},
    {L_DENSE, 3, 0, 0, 0, WM_ACT_NONE},
};
enum { NA = 5, C0 = 2, H0 = 7, W0 = 5 };

/* Pools other than the 2x2 max (which has its own code): 3x3 max, 2x2 average. */
static const arch NET_B[] = {
    {L_CONV, 3, 3, 1, 1, WM_ACT_RELU}, {L_MAX, 0, 3, 0, 0, WM_ACT_NONE},
    {L_CONV, 2, 1, 1, 0, WM_ACT_TANH}, {L_DENSE, 3, 0, 0, 0, WM_ACT_NONE},
};
static const arch NET_C[] = {
    {L_CONV, 3, 3, 1, 1, WM_ACT_TANH}, {L_AVG, 0, 2, 0, 0, WM_ACT_NONE},
    {L_DENSE, 3, 0, 0, 0, WM_ACT_NONE},
};
/* Two stride-1 3x3 convs in a row: the first one's gradient comes through
 * the second's overlapping windows (col2im must add, not overwrite). */
static const arch NET_D[] = {
    {L_CONV, 3, 3, 1, 1, WM_ACT_TANH}, {L_CONV, 2, 3, 1, 0, WM_ACT_RELU},
    {L_DENSE, 3, 0, 0, 0, WM_ACT_NONE},
};

/* Contexts of a batch: CTX_MIXED one per sample, CTX_SHARED one for all,
 * CTX_FEW two distinct values taken in turn (several samples per context,
 * still a mixed batch). */
enum { CTX_MIXED, CTX_SHARED, CTX_FEW };

/* The gradient of N samples (labels i % 3) against finite differences of
 * the double-precision reference. */
static void check_gradient_n(const arch *A, int na, const char *mname, wm_conditioning cond,
                             wm_conv_strategy strategy, int N, int ctx)
{
    enum { NMAX = 8 };
    assert_true(N <= NMAX);
    wm_net *net = build(mname, cond, C0, H0, W0, A, na);
    WM_OK_OR_FAIL(wm_net_set_conv_strategy(net, strategy));
    const wm_manifold *m = wm_net_manifold(net);
    int K = cond == WM_COND_CONCAT ? 1 : wm_manifold_n_basis(m);
    float x[NMAX * C0 * H0 * W0], s[NMAX];
    int32_t labels[NMAX];
    uint64_t st = 3;
    for (int i = 0; i < N; i++) labels[i] = (i * 5 + 1) % 3 == 2 ? 2 : i % 3;
    if (N == 4) labels[0] = 0, labels[1] = 1, labels[2] = 2, labels[3] = 1;   /* as before */
    tu_fill(x, (size_t)N * C0 * H0 * W0, -1, 1, &st);
    tu_contexts(m, s, N, &st);
    int shared = ctx == CTX_SHARED;
    for (int i = 1; i < N && ctx != CTX_MIXED; i++) s[i] = s[ctx == CTX_SHARED ? 0 : i % 2];
    wm_optimizer *opt;
    wm_opt_config cfg = wm_opt_default(WM_OPT_SD);
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
    wm_batch b = {N, x, s, labels, NULL};
    float loss;
    WM_OK_OR_FAIL(wm_grad(opt, &b, &loss));
    const float *gq = wm_grad_buffer(opt, NULL);
    cnn_ref r;
    ref_load(&r, net, A, na, K, cond == WM_COND_CONCAT);
    r.C0 = C0, r.H0 = H0, r.W0 = W0;
    double rl = ref_loss(&r, m, N, x, s, labels);
    if (fabs(rl - loss) > 1e-5 * (1 + fabs(rl)))
        fail_msg("%s: loss %.8g vs reference %.8g", mname, loss, rl);
    double G[81], L[81] = {1};
    if (K > 1) { WM_OK_OR_FAIL(wm_manifold_gram(m, G)); tu_cholesky(G, L, K); }
    double err = 0, scale = 0;
    size_t off = 0;
    for (int l = 0; l < na; l++) {
        if (!r.P[l]) continue;
        for (int part = 0; part < 2; part++) {
            size_t len = part ? (size_t)r.rows[l] : (size_t)r.rows[l] * r.cols[l];
            double *P = part ? r.B[l] : r.P[l];
            for (int k = 0; k < K; k++)
                for (size_t j = 0; j < len; j++) {
                    double lib = 0, *p = &P[k * len + j], save = *p, h = 1e-6;
                    for (int i = 0; i <= k; i++) lib += L[k * K + i] * gq[off + i * len + j];
                    *p = save + h;
                    double up = ref_loss(&r, m, N, x, s, labels);
                    *p = save - h;
                    double dn = ref_loss(&r, m, N, x, s, labels);
                    *p = save;
                    err = fmax(err, fabs(lib - (up - dn) / (2 * h)));
                    scale = fmax(scale, fabs((up - dn) / (2 * h)));
                }
            off += K * len;
        }
    }
    assert_int_equal(off, wm_net_n_params(net));
    if (!(err <= 2e-4 * scale + 1e-6))
        fail_msg("%s cond %d strategy %d shared %d N %d ctx %d: max |analytic - fd| %.3g (scale %.3g)",
                 mname, cond, strategy, shared, N, ctx, err, scale);
    ref_free(&r);
    wm_optimizer_free(opt);
    wm_net_free(net);
}

static void check_gradient_of(const arch *A, int na, const char *mname, wm_conditioning cond,
                              wm_conv_strategy strategy, int shared)
{
    check_gradient_n(A, na, mname, cond, strategy, 4, shared ? CTX_SHARED : CTX_MIXED);
}

/* Padding and stride variants: a 5x5 "same" conv, a 3x3 stride-2 conv
 * padded by 2 (windows hanging off two sides), a 1x1 conv. */
static const arch NET_E[] = {
    {L_CONV, 3, 5, 1, 2, WM_ACT_TANH}, {L_CONV, 2, 3, 2, 2, WM_ACT_RELU},
    {L_CONV, 2, 1, 1, 0, WM_ACT_TANH}, {L_DENSE, 3, 0, 0, 0, WM_ACT_NONE},
};

/* ReLU convs each read by a 2x2 maxpool only: the pool applies the ReLU's
 * derivative and the conv skips it (layer.h's absorbs_relu); windows whose
 * inputs the ReLU all clipped (maximum 0) must send nothing. */
static const arch NET_F[] = {
    {L_CONV, 3, 3, 1, 1, WM_ACT_RELU}, {L_MAX, 0, 2, 0, 0, WM_ACT_NONE},
    {L_CONV, 2, 1, 1, 0, WM_ACT_RELU}, {L_MAX, 0, 2, 0, 0, WM_ACT_NONE},
    {L_DENSE, 3, 0, 0, 0, WM_ACT_NONE},
};

static void check_gradient(const char *mname, wm_conditioning cond, wm_conv_strategy strategy, int shared)
{
    check_gradient_of(NET_A, NA, mname, cond, strategy, shared);
}

static void test_conv_gradients(void **state)
{
    (void)state;
    const char *names[] = {"point", "line", "circle", "torus"};
    for (int i = 0; i < 4; i++) {
        if (!strcmp(names[i], "torus")) continue;   /* the reference takes 1-D contexts */
        for (int strat = WM_CONV_STACKED; strat <= WM_CONV_MATERIALISED; strat++)
            for (int sh = 0; sh < 2; sh++)
                check_gradient(names[i], WM_COND_MANIFOLD, (wm_conv_strategy)strat, sh);
    }
    check_gradient("circle", WM_COND_CONCAT, WM_CONV_AUTO, 0);
    for (int sh = 0; sh < 2; sh++) {
        check_gradient_of(NET_B, 4, "circle", WM_COND_MANIFOLD, WM_CONV_AUTO, sh);
        check_gradient_of(NET_C, 3, "line", WM_COND_MANIFOLD, WM_CONV_AUTO, sh);
        check_gradient_of(NET_D, 3, "circle", WM_COND_MANIFOLD, WM_CONV_STACKED, sh);
        check_gradient_of(NET_D, 3, "circle", WM_COND_MANIFOLD, WM_CONV_MATERIALISED, sh);
    }
}

/* The batched conv (issue 15) at batch 1, 2 and 3: mixed contexts (one per
 * sample, or two shared by several samples), a shared one, both strategies,
 * padding and stride variants. */
static void test_conv_batch_gradients(void **state)
{
    (void)state;
    for (int N = 1; N <= 3; N++)
        for (int ctx = CTX_MIXED; ctx <= CTX_FEW; ctx++)
            for (int strat = WM_CONV_STACKED; strat <= WM_CONV_MATERIALISED; strat++) {
                check_gradient_n(NET_A, NA, "circle", WM_COND_MANIFOLD, (wm_conv_strategy)strat, N, ctx);
                check_gradient_n(NET_E, 4, "line", WM_COND_MANIFOLD, (wm_conv_strategy)strat, N, ctx);
            }
    check_gradient_n(NET_E, 4, "point", WM_COND_MANIFOLD, WM_CONV_AUTO, 3, CTX_MIXED);
    for (int ctx = CTX_MIXED; ctx <= CTX_FEW; ctx++)
        for (int strat = WM_CONV_STACKED; strat <= WM_CONV_MATERIALISED; strat++)
            check_gradient_n(NET_F, 5, "circle", WM_COND_MANIFOLD, (wm_conv_strategy)strat, 8, ctx);
    check_gradient_n(NET_F, 5, "point", WM_COND_MANIFOLD, WM_CONV_AUTO, 8, CTX_MIXED);
    /* the absorbed ReLU (2x2 and 3x3 pools) at batch 1-3, every strategy and context */
    for (int N = 1; N <= 3; N++)
        for (int ctx = CTX_MIXED; ctx <= CTX_FEW; ctx++)
            for (int strat = WM_CONV_STACKED; strat <= WM_CONV_MATERIALISED; strat++) {
                check_gradient_n(NET_F, 5, "line", WM_COND_MANIFOLD, (wm_conv_strategy)strat, N, ctx);
                check_gradient_n(NET_B, 4, "line", WM_COND_MANIFOLD, (wm_conv_strategy)strat, N, ctx);
            }
    check_gradient_n(NET_E, 4, "circle", WM_COND_CONCAT, WM_CONV_AUTO, 3, CTX_MIXED);
}

/* A batch's gradient is the mean of its samples' (each run alone, n = 1:
 * the per-sample path) and its inference each sample's, to float rounding:
 * batches of 2, 3, 64 and 150 (the last over two panels of columns), point
 * layers among manifold ones, and an image whose columns per sample exceed
 * a panel (panels of one sample). */
static void check_batch_vs_samples(const char *mname, int C, int H, int W, const arch *A, int na,
                                   unsigned points, wm_conv_strategy strategy, int N, int ctx)
{
    wm_net *net = build_ex(mname, WM_COND_MANIFOLD, C, H, W, A, na, points);
    WM_OK_OR_FAIL(wm_net_set_conv_strategy(net, strategy));
    const wm_manifold *m = wm_net_manifold(net);
    int in = C * H * W, dim = wm_manifold_dim(m) > 0 ? wm_manifold_dim(m) : 1;
    int out = wm_net_n_outputs(net);
    float *x = malloc(sizeof(float) * (size_t)N * in), *s = malloc(sizeof(float) * (size_t)N * dim);
    float *y = malloc(sizeof(float) * (size_t)N * out), *y1 = malloc(sizeof(float) * out);
    int32_t *labels = malloc(sizeof(int32_t) * N);
    uint64_t st = 17;
    tu_fill(x, (size_t)N * in, -1, 1, &st);
    tu_contexts(m, s, N, &st);
    for (int i = 1; i < N && ctx != CTX_MIXED; i++)
        for (int d = 0; d < dim; d++) s[i * dim + d] = s[(ctx == CTX_SHARED ? 0 : i % 2) * dim + d];
    for (int i = 0; i < N; i++) labels[i] = (int32_t)(i * 7 % out);
    wm_optimizer *opt;
    wm_opt_config cfg = wm_opt_default(WM_OPT_SD);
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
    size_t len;
    wm_batch b = {N, x, s, labels, NULL};
    WM_OK_OR_FAIL(wm_grad(opt, &b, NULL));
    const float *g = wm_grad_buffer(opt, &len);
    float *gb = malloc(sizeof(float) * len);
    double *mean = calloc(len, sizeof(double));
    memcpy(gb, g, sizeof(float) * len);
    WM_OK_OR_FAIL(wm_infer(net, x, s, N, y));
    double err = 0, scale = 0, yerr = 0, yscale = 1;
    for (int i = 0; i < N; i++) {
        wm_batch one = {1, x + (size_t)i * in, s + (size_t)i * dim, labels + i, NULL};
        WM_OK_OR_FAIL(wm_grad(opt, &one, NULL));
        for (size_t j = 0; j < len; j++) mean[j] += (double)g[j] / N;
        WM_OK_OR_FAIL(wm_infer(net, x + (size_t)i * in, s + (size_t)i * dim, 1, y1));
        for (int o = 0; o < out; o++) {
            yerr = fmax(yerr, fabs((double)y1[o] - y[(size_t)i * out + o]));
            yscale = fmax(yscale, fabs(y1[o]));
        }
    }
    for (size_t j = 0; j < len; j++) err = fmax(err, fabs(gb[j] - mean[j])), scale = fmax(scale, fabs(mean[j]));
    if (!(err <= 1e-4 * scale + 1e-7) || !(yerr <= 1e-5 * yscale))
        fail_msg("%s %dx%dx%d points %#x strategy %d N %d ctx %d: gradient off by %.3g (scale %.3g), "
                 "outputs by %.3g", mname, C, H, W, points, strategy, N, ctx, err, scale, yerr);
    free(x), free(s), free(y), free(y1), free(labels), free(gb), free(mean);
    wm_optimizer_free(opt);
    wm_net_free(net);
}

static void test_conv_batch_vs_samples(void **state)
{
    (void)state;
    static const int sizes[] = {2, 3, 64, 150};
    for (int t = 0; t < 4; t++)
        for (int ctx = CTX_MIXED; ctx <= CTX_FEW; ctx++)
            for (int strat = WM_CONV_AUTO; strat <= WM_CONV_MATERIALISED; strat++) {
                check_batch_vs_samples("circle", C0, H0, W0, NET_A, NA, 0, (wm_conv_strategy)strat, sizes[t], ctx);
                check_batch_vs_samples("line", C0, H0, W0, NET_E, 4, 1u << 1, (wm_conv_strategy)strat,
                                       sizes[t], ctx);
            }
    check_batch_vs_samples("point", C0, H0, W0, NET_D, 3, 0, WM_CONV_AUTO, 64, CTX_MIXED);
    /* 1x64x64: 9 x 4096 columns per sample for the first conv (a panel of 7
     * samples), 36 x 4096 for the second (more than a panel: one sample each) */
    static const arch BIG[] = {{L_CONV, 4, 3, 1, 1, WM_ACT_RELU}, {L_CONV, 2, 3, 1, 1, WM_ACT_TANH},
                               {L_MAX, 0, 8, 0, 0, WM_ACT_NONE}, {L_DENSE, 3, 0, 0, 0, WM_ACT_NONE}};
    for (int ctx = CTX_MIXED; ctx <= CTX_FEW; ctx++) {
        check_batch_vs_samples("circle", 1, 64, 64, BIG, 4, 0, WM_CONV_AUTO, 9, ctx);
        check_batch_vs_samples("circle", 1, 64, 64, BIG, 4, 1u, WM_CONV_STACKED, 9, ctx);
    }
}

/* maxpool's 2x2 backward sends each window's gradient to its first maximum
 * in row-major order, bit for bit as the old branchy search did (its sum
 * into a zeroed array: a -0 gradient lands as +0): windows with every tie
 * pattern, a NaN window (its gradient goes to the last input, which no
 * comparison picks), odd sides (the left-over row and column get zeros),
 * rows of 1-19 windows (the vector path's 4-window blocks and its tails),
 * two samples; the forward's maxima against the plain loop's; with the
 * ReLU below absorbed (io.relu_below), nothing where the input is not > 0
 * (windows clipped whole: all zeros). */
static void test_maxpool_ties(void **state)
{
    (void)state;
    static const int widths[] = {4, 1, 2, 3, 5, 7, 8, 14, 19};
    for (int relu = 0; relu < 2; relu++)
    for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++)
        for (int odd = 0; odd < 2; odd++) {
            enum { N = 2, C = 2, HO = 4 };
            int WO = widths[wi], H = 2 * HO + odd, W = 2 * WO + odd, in = C * H * W, outn = C * HO * WO;
            wm_layer ly;
            memset(&ly, 0, sizeof ly);
            ly.kind = WM_LAYER_MAXPOOL;
            ly.in_c = ly.out_c = C, ly.in_h = H, ly.in_w = W, ly.out_h = HO, ly.out_w = WO;
            ly.k = ly.stride = 2, ly.in = in, ly.out = outn;
            float *X = malloc(sizeof(float) * N * in), *Y = malloc(sizeof(float) * N * outn);
            float *dY = malloc(sizeof(float) * N * outn), *dX = malloc(sizeof(float) * N * in);
            float *want = malloc(sizeof(float) * N * in);
            uint64_t st = 11 + wi;
            for (int j = 0; j < N * in; j++) X[j] = (float)(int)(tu_uniform(&st) * 3);   /* 0, 1, 2: many ties */
            for (int c = 0; c < N * C; c++)          /* every one of the 16 tie patterns of a window */
                for (int w = 0; w < HO * WO; w++) {
                    int oy = w / WO, ox = w % WO, pat = (c * HO * WO + w + (int)wi) % 16;
                    float *top = X + (size_t)c * H * W + (size_t)2 * oy * W + 2 * ox;
                    top[0] = pat & 1 ? 5.0f : 1.0f, top[1] = pat & 2 ? 5.0f : 1.0f;
                    top[W] = pat & 4 ? 5.0f : 1.0f, top[W + 1] = pat & 8 ? 5.0f : 1.0f;
                    if (relu && w % 5 == 4)      /* a window the ReLU below clipped whole */
                        top[0] = top[1] = top[W] = top[W + 1] = 0.0f;
                    if (relu && w % 5 == 2)      /* negative, the last the maximum: no ReLU makes */
                        top[0] = -1.0f, top[1] = -2.0f, top[W] = -3.0f, top[W + 1] = -0.5f;   /* it, still x > 0 */
                    if (relu && w % 5 == 3)      /* the maximum 0, in the bottom row */
                        top[0] = -1.0f, top[1] = -2.0f, top[W] = 0.0f, top[W + 1] = -3.0f;
                }
            X[0] = NAN;                              /* window (0, 0, 0): a NaN maximum */
            X[in + 1] = NAN;                         /* sample 1's first window: NaN not first, ignored */
            for (int j = 0; j < N * outn; j++) dY[j] = (float)tu_uniform(&st) - 0.5f;
            dY[1] = -0.0f;
            wm_layer_io io;
            memset(&io, 0, sizeof io);
            io.relu_below = relu;                /* then the ReLU's derivative too: x > 0 */
            for (int j = 0; j < N * outn; j++) Y[j] = 7.0f;
            wmi_maxpool_ops.forward(&ly, &io, X, N, Y);
            for (int j = 0; j < N * in; j++) dX[j] = 7.0f;  /* all of it must be written */
            wmi_maxpool_ops.backward(&ly, &io, X, N, Y, dY, NULL, dX);
            {   /* the plain loops (a core without AVX2) give the same bits */
                float *Y2 = malloc(sizeof(float) * N * outn), *dX2 = malloc(sizeof(float) * N * in);
                for (int j = 0; j < N * in; j++) dX2[j] = 7.0f;
                wmi_maxpool2_scalar(&ly, X, N, Y2, NULL, NULL, 0);
                wmi_maxpool2_scalar(&ly, X, N, Y, dY, dX2, relu);
                assert_memory_equal(Y2, Y, sizeof(float) * N * outn);
                assert_memory_equal(dX2, dX, sizeof(float) * N * in);
                free(Y2), free(dX2);
            }
            memset(want, 0, sizeof(float) * N * in);
            for (int c = 0; c < N * C; c++)
                for (int oy = 0; oy < HO; oy++)
                    for (int ox = 0; ox < WO; ox++) {
                        int at = (c * HO + oy) * WO + ox, done = 0;
                        const float *win = X + (size_t)(c * H + 2 * oy) * W + 2 * ox;
                        float v = win[0];            /* the forward's order: u > v ? u : v */
                        v = win[1] > v ? win[1] : v;
                        v = win[W] > v ? win[W] : v;
                        v = win[W + 1] > v ? win[W + 1] : v;
                        assert_memory_equal(&Y[at], &v, sizeof v);
                        for (int dy = 0; dy < 2 && !done; dy++)
                            for (int dx = 0; dx < 2 && !done; dx++) {
                                int j = (c * H + 2 * oy + dy) * W + 2 * ox + dx;
                                if (X[j] == Y[at] || (dy == 1 && dx == 1)) {
                                    if (!relu || X[j] > 0.0f)
                                        want[j] += dY[at];
                                    done = 1;
                                }
                            }
                    }
            assert_memory_equal(dX, want, sizeof(float) * N * in);
            assert_true(isnan(Y[0]) && want[W + 1] == dY[0]);   /* X[W + 1] > 0 */
            assert_true(!isnan(Y[outn]));
            free(X), free(Y), free(dY), free(dX), free(want);
        }
}

static void test_stacked_and_materialised_agree(void **state)
{
    (void)state;
    enum { N = 9 };
    wm_net *a = build("torus", WM_COND_MANIFOLD, C0, H0, W0, NET_A, NA);
    wm_net *b = build("torus", WM_COND_MANIFOLD, C0, H0, W0, NET_A, NA);
    WM_OK_OR_FAIL(wm_net_set_conv_strategy(a, WM_CONV_STACKED));
    WM_OK_OR_FAIL(wm_net_set_conv_strategy(b, WM_CONV_MATERIALISED));
    float x[N * C0 * H0 * W0], s[N * 2], ya[N * 3], yb[N * 3];
    int32_t y[N];
    uint64_t st = 9;
    tu_fill(x, sizeof x / sizeof x[0], -1, 1, &st);
    tu_contexts(wm_net_manifold(a), s, N, &st);
    for (int i = 0; i < N; i++) y[i] = i % 3;
    WM_OK_OR_FAIL(wm_infer(a, x, s, N, ya));
    WM_OK_OR_FAIL(wm_infer(b, x, s, N, yb));
    for (int j = 0; j < N * 3; j++) assert_true(fabs(ya[j] - yb[j]) < 1e-5);
    wm_optimizer *oa, *ob;
    wm_opt_config cfg = wm_opt_default(WM_OPT_SD);
    WM_OK_OR_FAIL(wm_optimizer_create(&oa, a, &cfg));
    WM_OK_OR_FAIL(wm_optimizer_create(&ob, b, &cfg));
    wm_batch batch = {N, x, s, y, NULL};
    WM_OK_OR_FAIL(wm_grad(oa, &batch, NULL));
    WM_OK_OR_FAIL(wm_grad(ob, &batch, NULL));
    size_t len;
    const float *ga = wm_grad_buffer(oa, &len), *gb = wm_grad_buffer(ob, NULL);
    double err = 0, scale = 0;
    for (size_t j = 0; j < len; j++) err = fmax(err, fabs(ga[j] - gb[j])), scale = fmax(scale, fabs(ga[j]));
    assert_true(err < 1e-5 * (1 + scale));
    wm_optimizer_free(oa), wm_optimizer_free(ob);
    wm_net_free(a), wm_net_free(b);
}

/* wm_infer on mixed contexts equals each sample through wm_net_weights_at's
 * plain kernels (ordered [out][in][ky][kx]) run by the reference. */
static void test_decomposition_vs_weights_at(void **state)
{
    (void)state;
    enum { N = 6 };
    wm_net *net = build("circle", WM_COND_MANIFOLD, C0, H0, W0, NET_A, NA);
    float x[N * C0 * H0 * W0], s[N], y[N * 3];
    uint64_t st = 2;
    tu_fill(x, sizeof x / sizeof x[0], -1, 1, &st);
    tu_contexts(wm_net_manifold(net), s, N, &st);
    WM_OK_OR_FAIL(wm_infer(net, x, s, N, y));
    for (int i = 0; i < N; i++) {
        /* a K = 1 reference loaded with W(s_i) from weights_at */
        cnn_ref r;
        memset(&r, 0, sizeof r);
        r.n = NA, r.K = 1, r.C0 = C0, r.H0 = H0, r.W0 = W0;
        for (int l = 0; l < NA; l++) {
            r.L[l] = NET_A[l];
            if (NET_A[l].kind == L_MAX || NET_A[l].kind == L_AVG) {
                float w[4];
                EXPECT_STATUS(WM_EINVAL, wm_net_weights_at(net, l, s + i, w, NULL));
                continue;
            }
            WM_OK_OR_FAIL(wm_net_layer_info(net, l, &r.cols[l], &r.rows[l], NULL));
            size_t wn = (size_t)r.rows[l] * r.cols[l];
            float *w = malloc(wn * sizeof *w), *b = malloc(r.rows[l] * sizeof *b);
            WM_OK_OR_FAIL(wm_net_weights_at(net, l, s + i, w, b));
            r.P[l] = malloc(wn * sizeof(double));
            r.B[l] = malloc(r.rows[l] * sizeof(double));
            for (size_t j = 0; j < wn; j++) r.P[l][j] = w[j];
            for (int j = 0; j < r.rows[l]; j++) r.B[l][j] = b[j];
            free(w), free(b);
        }
        /* the loss at label j is logsumexp - y_j: differences recover the outputs */
        int32_t lab0 = 0;
        float zero = 0;
        double l0 = ref_loss(&r, NULL, 1, x + i * C0 * H0 * W0, &zero, &lab0);
        for (int32_t j = 1; j < 3; j++) {
            double lj = ref_loss(&r, NULL, 1, x + i * C0 * H0 * W0, &zero, &j);
            assert_true(fabs((l0 - lj) - (y[i * 3 + j] - y[i * 3])) < 1e-5);
        }
        ref_free(&r);
    }
    wm_net_free(net);
}

/* A tiny CNN learns which way a bar runs in a noisy 8x8 image, for bars
 * whose brightness depends on the context. */
static void test_tiny_cnn_learns(void **state)
{
    (void)state;
    enum { N = 32, HW = 8 };
    static const arch A[] = {{L_CONV, 4, 3, 1, 1, WM_ACT_RELU}, {L_MAX, 0, 2, 0, 0, WM_ACT_NONE},
                             {L_DENSE, 2, 0, 0, 0, WM_ACT_NONE}};
    wm_net *net = build("line", WM_COND_MANIFOLD, 1, HW, HW, A, 3);
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    wm_optimizer *opt;
    wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
    cfg.lr = 1e-2f;
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
    float x[N * HW * HW], s[N];
    int32_t y[N];
    uint64_t st = 5;
    float acc = 0;
    for (int step = 0; step <= 300; step++) {
        for (int i = 0; i < N; i++) {
            y[i] = tu_uniform(&st) < 0.5;
            s[i] = (float)tu_uniform(&st);
            int pos = (int)(tu_uniform(&st) * HW);
            for (int p = 0; p < HW * HW; p++) {
                int on = y[i] ? p / HW == pos : p % HW == pos;
                x[i * HW * HW + p] = (float)((on ? 0.5 + s[i] : 0) + 0.3 * (tu_uniform(&st) - 0.5));
            }
        }
        wm_batch b = {N, x, s, y, NULL};
        if (step == 300) WM_OK_OR_FAIL(wm_evaluate(net, &b, NULL, &acc));
        else WM_OK_OR_FAIL(wm_step(opt, &b, NULL));
    }
    print_message("tiny CNN accuracy on a fresh batch: %.3f\n", acc);
    assert_true(acc > 0.9);
    wm_optimizer_free(opt);
    wm_net_free(net);
}

static void test_cnn_save_load(void **state)
{
    (void)state;
    char path[] = "/tmp/wm_cnn_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    for (int cond = 0; cond < 2; cond++) {
        wm_net *net = build("circle", (wm_conditioning)cond, C0, H0, W0, NET_A, NA), *back;
        WM_OK_OR_FAIL(wm_net_save(net, path));
        WM_OK_OR_FAIL(wm_net_load(&back, path));
        enum { N = 5 };
        float x[N * C0 * H0 * W0], s[N], ya[N * 3], yb[N * 3];
        uint64_t st = 1;
        tu_fill(x, sizeof x / sizeof x[0], -1, 1, &st);
        tu_contexts(wm_net_manifold(net), s, N, &st);
        WM_OK_OR_FAIL(wm_infer(net, x, s, N, ya));
        WM_OK_OR_FAIL(wm_infer(back, x, s, N, yb));
        assert_memory_equal(ya, yb, sizeof ya);
        int in0;
        WM_OK_OR_FAIL(wm_net_layer_info(back, 0, &in0, NULL, NULL));
        assert_int_equal(in0, (C0 + 2 * cond) * 9);     /* concat: two extra input channels */
        wm_net_free(net), wm_net_free(back);
    }
    unlink(path);
}

/* Padding wider than the image (a 5x5 pad 2 or 7x7 pad 3 conv on an image 1
 * or 2 pixels high or wide): kernel rows and columns that lie wholly outside
 * the image read zeros, never what an earlier call left in the im2col panel.
 * Checked against direct loops, before and after a 64-sample batch has
 * filled the panel with other data (the "same" im2col once skipped such
 * rows: -283 where 1.2 was right). */
static void test_conv_padding_wider_than_image(void **state)
{
    (void)state;
    const int shapes[][5] = {   /* c, h, w, k, pad */
        {1, 1, 8, 5, 2}, {2, 2, 7, 7, 3}, {1, 8, 1, 5, 2}, {1, 1, 1, 5, 2}, {3, 2, 2, 3, 1}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        int c = shapes[t][0], h = shapes[t][1], w = shapes[t][2], k = shapes[t][3], pad = shapes[t][4];
        int oc = 2, in = c * h * w, out = oc * h * w;
        wm_manifold *m;
        wm_net *net;
        WM_OK_OR_FAIL(wm_manifold_point(&m));
        WM_OK_OR_FAIL(wm_net_create(&net, m, in, WM_COND_MANIFOLD));
        WM_OK_OR_FAIL(wm_net_input_shape(net, c, h, w));
        WM_OK_OR_FAIL(wm_net_conv2d(net, oc, k, 1, pad, WM_ACT_NONE));
        WM_OK_OR_FAIL(wm_net_init(net, 3 + t));
        float *W = malloc(sizeof(float) * oc * c * k * k), b[2];
        WM_OK_OR_FAIL(wm_net_control_point(net, 0, 0, W, b));
        enum { N = 64 };
        float *x = malloc(sizeof(float) * in), *other = malloc(sizeof(float) * N * in);
        float *y = malloc(sizeof(float) * out), *yo = malloc(sizeof(float) * N * out), s = 0;
        float *sv = calloc(N, sizeof(float));
        uint64_t st = 11 + t;
        tu_fill(x, in, -1, 1, &st);
        tu_fill(other, (size_t)N * in, 50, 100, &st);
        for (int pass = 0; pass < 2; pass++) {
            WM_OK_OR_FAIL(wm_infer(net, x, &s, 1, y));
            for (int o = 0; o < oc; o++)
                for (int oy = 0; oy < h; oy++)
                    for (int ox = 0; ox < w; ox++) {
                        double z = b[o];
                        for (int ci = 0; ci < c; ci++)
                            for (int ky = 0; ky < k; ky++)
                                for (int kx = 0; kx < k; kx++) {
                                    int iy = oy - pad + ky, ix = ox - pad + kx;
                                    if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                                        z += (double)W[((o * c + ci) * k + ky) * k + kx] *
                                             x[(ci * h + iy) * w + ix];
                                }
                        float got = y[(o * h + oy) * w + ox];
                        if (fabs(got - z) > 1e-5 * (1 + fabs(z)))
                            fail_msg("%dx%dx%d k %d pad %d, call %d: out[%d][%d][%d] = %g, direct %g",
                                     c, h, w, k, pad, pass, o, oy, ox, got, z);
                    }
            WM_OK_OR_FAIL(wm_infer(net, other, sv, N, yo));   /* fills the panel */
        }
        free(W), free(x), free(other), free(y), free(yo), free(sv);
        wm_net_free(net);
        wm_manifold_free(m);
    }
}

static void test_cnn_argument_errors(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("circle");
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 2 * 6 * 6, WM_COND_MANIFOLD));
    EXPECT_STATUS(WM_EINVAL, wm_net_conv2d(net, 4, 3, 1, 0, WM_ACT_RELU));   /* no input shape */
    EXPECT_STATUS(WM_EINVAL, wm_net_input_shape(net, 2, 6, 5));             /* 60 != 72 */
    /* sides whose product wraps around to n_inputs in 64 bits are refused */
    EXPECT_STATUS(WM_EINVAL, wm_net_input_shape(net, 1073774592, 1073709057, 16));
    EXPECT_STATUS(WM_EINVAL, wm_net_input_shape(net, 72, 1, 0));
    WM_OK_OR_FAIL(wm_net_input_shape(net, 2, 6, 6));
    EXPECT_STATUS(WM_EINVAL, wm_net_conv2d(net, 4, 7, 1, 0, WM_ACT_RELU));   /* does not fit */
    EXPECT_STATUS(WM_EINVAL, wm_net_conv2d(net, 4, 3, 0, 0, WM_ACT_RELU));
    EXPECT_STATUS(WM_EINVAL, wm_net_conv2d(net, 4, 3, 1, 3, WM_ACT_RELU));
    EXPECT_STATUS(WM_EINVAL, wm_net_maxpool(net, 7));
    WM_OK_OR_FAIL(wm_net_conv2d(net, 4, 3, 1, 1, WM_ACT_RELU));
    EXPECT_STATUS(WM_ESTATE, wm_net_input_shape(net, 2, 6, 6));
    WM_OK_OR_FAIL(wm_net_avgpool(net, 2));
    WM_OK_OR_FAIL(wm_net_dense(net, 3, WM_ACT_NONE));
    EXPECT_STATUS(WM_EINVAL, wm_net_conv2d(net, 4, 1, 1, 0, WM_ACT_RELU));   /* after dense */
    EXPECT_STATUS(WM_EINVAL, wm_net_set_conv_strategy(net, (wm_conv_strategy)9));
    assert_int_equal(wm_net_n_layers(net), 3);
    assert_int_equal(wm_net_n_params(net), 3 * (4 * 2 * 9 + 4 + 3 * 4 * 3 * 3 + 3));
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    float w[100], s = 0.5f;
    EXPECT_STATUS(WM_EINVAL, wm_net_weights_at(net, 1, &s, w, NULL));        /* pooling */
    EXPECT_STATUS(WM_EINVAL, wm_net_control_point(net, 1, 0, w, NULL));
    wm_net_free(net);
    wm_manifold_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_gradients),
        cmocka_unit_test(test_conv_batch_gradients),
        cmocka_unit_test(test_conv_batch_vs_samples),
        cmocka_unit_test(test_maxpool_ties),
        cmocka_unit_test(test_stacked_and_materialised_agree),
        cmocka_unit_test(test_decomposition_vs_weights_at),
        cmocka_unit_test(test_tiny_cnn_learns),
        cmocka_unit_test(test_cnn_save_load),
        cmocka_unit_test(test_cnn_argument_errors),
        cmocka_unit_test(test_conv_padding_wider_than_image),
    };
    return cmocka_run_group_tests_name("conv", tests, NULL, NULL);
}
