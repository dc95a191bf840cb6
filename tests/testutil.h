/* testutil.h -- shared helpers for the cmocka suites: deterministic data, a
 * double-precision reference network, and snapshots for "nothing changed". */
#ifndef WM_TESTUTIL_H
#define WM_TESTUTIL_H

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wmanifold.h"

#define TU_PI 3.14159265358979323846

/* Fail the test with wm_last_error() when a call does not return WM_OK. */
#define WM_OK_OR_FAIL(call)                                                       \
    do {                                                                          \
        wm_status st_ = (call);                                                   \
        if (st_ != WM_OK)                                                         \
            fail_msg("%s -> %s: %s", #call, wm_status_str(st_), wm_last_error()); \
    } while (0)

/* Expect a status and a non-empty message. */
#define EXPECT_STATUS(want, call)                                                 \
    do {                                                                          \
        wm_status st_ = (call);                                                   \
        if (st_ != (want))                                                        \
            fail_msg("%s -> %s, expected %s (%s)", #call, wm_status_str(st_),     \
                     wm_status_str(want), wm_last_error());                       \
        assert_true(strlen(wm_last_error()) > 0);                                 \
    } while (0)

/* A tiny LCG so test data does not depend on libc's rand(). */
static inline double tu_uniform(uint64_t *state)
{
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*state >> 11) / 9007199254740992.0;
}

static inline void tu_fill(float *a, size_t n, double lo, double hi, uint64_t *state)
{
    for (size_t i = 0; i < n; i++)
        a[i] = (float)(lo + (hi - lo) * tu_uniform(state));
}

/* Copy of all parameters, to prove a failed call changed nothing. */
static inline float *tu_snapshot(const wm_net *net)
{
    size_t len;
    const float *p = wm_net_params(net, &len);
    float *copy = malloc(len * sizeof *copy);
    assert_non_null(copy);
    memcpy(copy, p, len * sizeof *copy);
    return copy;
}

static inline void tu_assert_unchanged(const wm_net *net, const float *snap)
{
    size_t len;
    const float *p = wm_net_params(net, &len);
    assert_memory_equal(p, snap, len * sizeof *p);
}

/* Build manifolds by name: "point", "line", "circle", "fourier2", "bspline",
 * "cbspline" (closed), "torus", "cylinder". */
static inline wm_manifold *tu_manifold(const char *name)
{
    wm_manifold *m = NULL, *a = NULL, *b = NULL;
    if (!strcmp(name, "point")) WM_OK_OR_FAIL(wm_manifold_point(&m));
    else if (!strcmp(name, "line")) WM_OK_OR_FAIL(wm_manifold_line(&m));
    else if (!strcmp(name, "circle")) WM_OK_OR_FAIL(wm_manifold_circle(&m));
    else if (!strcmp(name, "fourier2")) WM_OK_OR_FAIL(wm_manifold_fourier(&m, 2));
    else if (!strcmp(name, "bspline")) WM_OK_OR_FAIL(wm_manifold_bspline(&m, 5, 3, 0));
    else if (!strcmp(name, "cbspline")) WM_OK_OR_FAIL(wm_manifold_bspline(&m, 5, 2, 1));
    else if (!strcmp(name, "torus") || !strcmp(name, "cylinder")) {
        WM_OK_OR_FAIL(name[0] == 't' ? wm_manifold_circle(&a) : wm_manifold_line(&a));
        WM_OK_OR_FAIL(wm_manifold_circle(&b));
        WM_OK_OR_FAIL(wm_manifold_product(&m, a, b));
        wm_manifold_free(a);
        wm_manifold_free(b);
    } else
        fail_msg("unknown manifold %s", name);
    return m;
}

/* Random contexts valid for m (non-periodic in [0,1]; periodic in [-1,2] to exercise wrapping). */
static inline void tu_contexts(const wm_manifold *m, float *s, int n, uint64_t *state)
{
    int dim = wm_manifold_dim(m);
    for (int i = 0; i < n; i++)
        for (int d = 0; d < dim; d++)
            s[i * dim + d] = wm_manifold_periodic(m, d) ? (float)(3 * tu_uniform(state) - 1)
                                                        : (float)tu_uniform(state);
}

/* ---- a double-precision reference of the whole net ------------------------
 * It takes the parameters in the paper's coordinates: per layer the K control
 * points P_k (out x in) and biases, combined with c(s) from wm_manifold_basis,
 * and computes the batch-mean loss in double. It shares no code with the
 * library's forward pass (no GEMM, no orthonormal basis). */
typedef struct {
    int n_layers, K, in0, concat, n_feat;
    int in[16], out[16];
    wm_activation act[16];
    wm_loss loss;
    double *P[16];                /* K x out x in */
    double *B[16];                /* K x out */
} tu_ref;

static inline double tu_act(wm_activation a, double z)
{
    switch (a) {
    case WM_ACT_RELU: return z > 0 ? z : 0;
    case WM_ACT_TANH: return tanh(z);
    case WM_ACT_SIGMOID: return 1 / (1 + exp(-z));
    default: return z;
    }
}

/* Concat features per DESIGN.md, computed from c(s) of the factors; only
 * the manifolds the tests build are covered. */
static inline int tu_features(const char *name, const float *s, double *f)
{
    if (!strcmp(name, "point")) return 0;
    if (!strcmp(name, "line")) { f[0] = s[0]; return 1; }
    if (!strcmp(name, "circle")) { f[0] = cos(2 * TU_PI * s[0]); f[1] = sin(2 * TU_PI * s[0]); return 2; }
    if (!strcmp(name, "torus")) {
        f[0] = cos(2 * TU_PI * s[0]); f[1] = sin(2 * TU_PI * s[0]);
        f[2] = cos(2 * TU_PI * s[1]); f[3] = sin(2 * TU_PI * s[1]); return 4;
    }
    if (!strcmp(name, "cylinder")) {
        f[0] = s[0]; f[1] = cos(2 * TU_PI * s[1]); f[2] = sin(2 * TU_PI * s[1]); return 3;
    }
    fail_msg("no concat features for %s", name);
    return 0;
}

static inline void tu_ref_load(tu_ref *r, const wm_net *net, const char *mname, int concat)
{
    memset(r, 0, sizeof *r);
    r->n_layers = wm_net_n_layers(net);
    r->K = concat ? 1 : wm_manifold_n_basis(wm_net_manifold(net));
    r->concat = concat;
    assert_true(r->n_layers <= 16);
    for (int l = 0; l < r->n_layers; l++) {
        WM_OK_OR_FAIL(wm_net_layer_info(net, l, &r->in[l], &r->out[l], &r->act[l]));
        size_t wn = (size_t)r->out[l] * r->in[l];
        r->P[l] = calloc(r->K * wn, sizeof(double));
        r->B[l] = calloc((size_t)r->K * r->out[l], sizeof(double));
        float *w = malloc(wn * sizeof(float)), *b = malloc(r->out[l] * sizeof(float));
        for (int k = 0; k < r->K; k++) {
            WM_OK_OR_FAIL(wm_net_control_point(net, l, k, w, b));
            for (size_t j = 0; j < wn; j++) r->P[l][k * wn + j] = w[j];
            for (int j = 0; j < r->out[l]; j++) r->B[l][k * r->out[l] + j] = b[j];
        }
        free(w), free(b);
    }
    r->in0 = r->in[0];
    (void)mname;
}

static inline void tu_ref_free(tu_ref *r)
{
    for (int l = 0; l < r->n_layers; l++)
        free(r->P[l]), free(r->B[l]);
}

/* Batch-mean loss of the reference on (x, s, labels/targets); outputs of the
 * last layer go to y_out (n x out) if not NULL. */
static inline double tu_ref_loss(const tu_ref *r, const wm_manifold *m, const char *mname, int n,
                                 int n_inputs, const float *x, const float *s,
                                 const int32_t *labels, const float *targets, double *y_out)
{
    double total = 0;
    int dim = wm_manifold_dim(m), K = wm_manifold_n_basis(m);
    double a[1024], z[1024];
    float c[64];
    for (int i = 0; i < n; i++) {
        if (r->concat) {
            c[0] = 1;
        } else {
            WM_OK_OR_FAIL(wm_manifold_basis(m, s ? s + i * dim : NULL, c));
            (void)K;
        }
        for (int j = 0; j < n_inputs; j++) a[j] = x[i * n_inputs + j];
        if (r->concat) tu_features(mname, s + i * dim, a + n_inputs);
        for (int l = 0; l < r->n_layers; l++) {
            size_t wn = (size_t)r->out[l] * r->in[l];
            for (int o = 0; o < r->out[l]; o++) {
                double v = 0;
                for (int k = 0; k < r->K; k++) {
                    double acc = r->B[l][k * r->out[l] + o];
                    for (int j = 0; j < r->in[l]; j++)
                        acc += r->P[l][k * wn + (size_t)o * r->in[l] + j] * a[j];
                    v += c[k] * acc;
                }
                z[o] = tu_act(r->act[l], v);
            }
            memcpy(a, z, sizeof(double) * r->out[l]);
        }
        int mo = r->out[r->n_layers - 1];
        if (y_out) memcpy(y_out + (size_t)i * mo, a, sizeof(double) * mo);
        if (r->loss == WM_LOSS_SOFTMAX_CE) {
            double mx = a[0], sum = 0;
            for (int j = 1; j < mo; j++) mx = a[j] > mx ? a[j] : mx;
            for (int j = 0; j < mo; j++) sum += exp(a[j] - mx);
            total += log(sum) + mx - a[labels[i]];
        } else {
            double sq = 0;
            for (int j = 0; j < mo; j++) sq += (a[j] - targets[i * mo + j]) * (a[j] - targets[i * mo + j]);
            total += sq / mo;
        }
    }
    return total / n;
}

/* dL/dP of the reference by central differences (h = 1e-6, double), in the
 * library's parameter layout but in P coordinates: per layer the W block
 * (K control points of out x in) then the b block (K x out). */
static inline void tu_ref_grad_P(tu_ref *r, const wm_manifold *m, const char *mname, int n,
                                 int n_inputs, const float *x, const float *s,
                                 const int32_t *labels, const float *targets, double *gP)
{
    size_t off = 0;
    for (int l = 0; l < r->n_layers; l++)
        for (int part = 0; part < 2; part++) {
            size_t len = (size_t)r->K * (part ? (size_t)r->out[l] : (size_t)r->out[l] * r->in[l]);
            double *P = part ? r->B[l] : r->P[l];
            for (size_t j = 0; j < len; j++) {
                double save = P[j], h = 1e-6;
                P[j] = save + h;
                double up = tu_ref_loss(r, m, mname, n, n_inputs, x, s, labels, targets, NULL);
                P[j] = save - h;
                double dn = tu_ref_loss(r, m, mname, n, n_inputs, x, s, labels, targets, NULL);
                P[j] = save;
                gP[off++] = (up - dn) / (2 * h);
            }
        }
}

/* All control points of a net, in the library's layout, P coordinates. */
static inline void tu_control_points(const wm_net *net, int K, double *P)
{
    size_t off = 0;
    for (int l = 0; l < wm_net_n_layers(net); l++) {
        int in, out;
        WM_OK_OR_FAIL(wm_net_layer_info(net, l, &in, &out, NULL));
        size_t wn = (size_t)in * out;
        float *w = malloc(wn * sizeof *w), *b = malloc((size_t)out * sizeof *b);
        for (int k = 0; k < K; k++) {
            WM_OK_OR_FAIL(wm_net_control_point(net, l, k, w, b));
            for (size_t j = 0; j < wn; j++) P[off + k * wn + j] = w[j];
            for (int j = 0; j < out; j++) P[off + K * wn + (size_t)k * out + j] = b[j];
        }
        off += K * (wn + out);
        free(w), free(b);
    }
}

/* Lower Cholesky factor of a K x K SPD matrix (the test's own). */
static inline void tu_cholesky(const double *G, double *L, int K)
{
    memset(L, 0, sizeof(double) * K * K);
    for (int j = 0; j < K; j++) {
        double d = G[j * K + j];
        for (int k = 0; k < j; k++) d -= L[j * K + k] * L[j * K + k];
        L[j * K + j] = sqrt(d);
        for (int i = j + 1; i < K; i++) {
            double v = G[i * K + j];
            for (int k = 0; k < j; k++) v -= L[i * K + k] * L[j * K + k];
            L[i * K + j] = v / L[j * K + j];
        }
    }
}

/* ---- a double-precision reference for graphs of layer modules -------------
 * Nets described by a list of layer specs (dense, residual, and the
 * parameter-free and normalisation kinds), built both in the library and
 * here. The reference reads every parameter through wm_net_control_point (the
 * paper's P coordinates), combines them with c(s) from wm_manifold_basis (or
 * [1] for a point layer or a concatenation net) and runs each kind's formula
 * from DESIGN.md section 5 in double; it shares no code with the library. */
typedef enum { TU_DENSE, TU_RESIDUAL, TU_LAYERNORM, TU_GROUPNORM, TU_FILM, TU_DROPOUT, TU_GAP } tu_kind;

typedef struct {
    tu_kind kind;
    int n;                        /* dense: outputs; groupnorm: groups */
    wm_activation act;            /* dense, residual */
    int from;                     /* residual: the layer it adds (-1: the input) */
    int point;                    /* 1: wm_net_set_layer_manifold(net, l, 0) */
    float p;                      /* dropout probability */
} tu_spec;

#define TU_MAXL 16
typedef struct {
    int n_layers, K, concat, n_inputs, in0;
    tu_spec spec[TU_MAXL];
    int out[TU_MAXL], ch[TU_MAXL], hw[TU_MAXL];   /* output: ch channels x hw (ch 0: flat) */
    int Kl[TU_MAXL], rows[TU_MAXL], cols[TU_MAXL];
    double *P[TU_MAXL], *B[TU_MAXL];             /* Kl x rows x cols, Kl x rows (NULL: none) */
    wm_loss loss;
    const char *mname;
} tu_gref;

/* Add spec's layer to net (and set its placement). */
static inline wm_status tu_gadd(wm_net *net, const tu_spec *sp, int l, int concat)
{
    wm_status st = WM_EINVAL;
    switch (sp->kind) {
    case TU_DENSE: st = wm_net_dense(net, sp->n, sp->act); break;
    case TU_RESIDUAL: st = wm_net_residual(net, sp->from, sp->act); break;
#ifdef TU_HAVE_NORMS
    case TU_LAYERNORM: st = wm_net_layernorm(net); break;
    case TU_GROUPNORM: st = wm_net_groupnorm(net, sp->n); break;
    case TU_FILM: st = wm_net_film(net); break;
    case TU_DROPOUT: st = wm_net_dropout(net, sp->p); break;
    case TU_GAP: st = wm_net_global_avgpool(net); break;
#endif
    default: fail_msg("kind %d not built", (int)sp->kind);
    }
#ifdef TU_HAVE_NORMS
    if (st == WM_OK && sp->point && !concat)      /* a concat net is one point already */
        st = wm_net_set_layer_manifold(net, l, 0);
#else
    (void)l, (void)concat;
#endif
    return st;
}

/* Build the net (input c x h x w, c = 0: flat n_inputs), initialise it with
 * random parameters in [-0.8, 0.8] (gains and scales around 1) and load the
 * reference from it. */
static inline wm_net *tu_gbuild(tu_gref *r, const char *mname, wm_conditioning cond, int n_inputs,
                                int c, int h, int w, const tu_spec *spec, int n_layers,
                                wm_loss loss, uint64_t seed)
{
    wm_manifold *m = tu_manifold(mname);
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, n_inputs, cond));
    wm_manifold_free(m);
    if (c > 0)
        WM_OK_OR_FAIL(wm_net_input_shape(net, c, h, w));
    for (int l = 0; l < n_layers; l++)
        WM_OK_OR_FAIL(tu_gadd(net, &spec[l], l, cond == WM_COND_CONCAT));
    WM_OK_OR_FAIL(wm_net_set_loss(net, loss));
    WM_OK_OR_FAIL(wm_net_init(net, seed));
    memset(r, 0, sizeof *r);
    r->n_layers = n_layers, r->loss = loss, r->mname = mname, r->n_inputs = n_inputs;
    r->concat = cond == WM_COND_CONCAT;
    r->K = wm_manifold_n_basis(wm_net_manifold(net));
    int nf = 0;
    if (r->concat) {
        double f[16];
        float s0[4] = {0.25f, 0.25f, 0.25f, 0.25f};
        nf = tu_features(mname, s0, f);
    }
    r->in0 = n_inputs + nf;
    int ch = c > 0 ? c : 0, hw = c > 0 ? h * w : 1, F = n_inputs;
    uint64_t st = seed * 7 + 1;
    for (int l = 0; l < n_layers; l++) {
        const tu_spec *sp = &spec[l];
        r->spec[l] = *sp;
        int in = F;
        if (l == 0 && r->concat) in = r->in0;
        switch (sp->kind) {
        case TU_DENSE: ch = 0, hw = 1, F = sp->n; r->rows[l] = sp->n, r->cols[l] = in; break;
        case TU_LAYERNORM: r->rows[l] = F, r->cols[l] = 1; break;
        case TU_GROUPNORM: r->rows[l] = ch, r->cols[l] = 1; break;
        case TU_FILM: r->rows[l] = ch ? ch : F, r->cols[l] = 1; break;
        case TU_GAP: F = ch, hw = 1; break;
        default: break;
        }
        r->out[l] = F, r->ch[l] = ch, r->hw[l] = hw;
        r->Kl[l] = r->concat || sp->point ? 1 : r->K;
        if (r->rows[l] == 0)
            continue;
        int K = r->Kl[l], rows = r->rows[l];
        size_t wn = (size_t)rows * r->cols[l];
        /* random control points, through the public setter */
        float *pw = malloc(wn * sizeof(float)), *pb = malloc((size_t)rows * sizeof(float));
        r->P[l] = calloc((size_t)K * wn, sizeof(double));
        r->B[l] = calloc((size_t)K * rows, sizeof(double));
        for (int k = 0; k < K; k++) {
            int gain = sp->kind != TU_DENSE && k == 0;
            tu_fill(pw, wn, gain ? 0.5 : -0.8, gain ? 1.5 : 0.8, &st);
            tu_fill(pb, (size_t)rows, -0.8, 0.8, &st);
            WM_OK_OR_FAIL(wm_net_set_control_point(net, l, k, pw, pb));
        }
        for (int k = 0; k < K; k++) {
            WM_OK_OR_FAIL(wm_net_control_point(net, l, k, pw, pb));
            for (size_t j = 0; j < wn; j++) r->P[l][k * wn + j] = pw[j];
            for (int j = 0; j < rows; j++) r->B[l][(size_t)k * rows + j] = pb[j];
        }
        free(pw), free(pb);
    }
    return net;
}

static inline void tu_gref_free(tu_gref *r)
{
    for (int l = 0; l < r->n_layers; l++)
        free(r->P[l]), free(r->B[l]);
}

/* Normalise v[0..len) in place by its mean and biased variance, eps 1e-5. */
static inline void tu_normalise(double *v, int len)
{
    double mean = 0, var = 0;
    for (int j = 0; j < len; j++) mean += v[j];
    mean /= len;
    for (int j = 0; j < len; j++) var += (v[j] - mean) * (v[j] - mean);
    var /= len;
    for (int j = 0; j < len; j++) v[j] = (v[j] - mean) / sqrt(var + 1e-5);
}

/* Batch-mean loss of the reference; the last layer's outputs to y_out if not NULL. */
static inline double tu_gref_loss(const tu_gref *r, const wm_manifold *m, int n, const float *x,
                                  const float *s, const int32_t *labels, const float *targets,
                                  double *y_out)
{
    enum { MAXF = 2048 };
    double *a = malloc(sizeof(double) * MAXF * (TU_MAXL + 1)), total = 0;
    int dim = wm_manifold_dim(m);
    for (int i = 0; i < n; i++) {
        float c[256];
        if (!r->concat) WM_OK_OR_FAIL(wm_manifold_basis(m, s ? s + i * dim : NULL, c));
        double *x0 = a;                                 /* slot 0: the input; l + 1: layer l */
        for (int j = 0; j < r->n_inputs; j++) x0[j] = x[i * r->n_inputs + j];
        if (r->concat) tu_features(r->mname, s + i * dim, x0 + r->n_inputs);
        for (int l = 0; l < r->n_layers; l++) {
            const tu_spec *sp = &r->spec[l];
            double *X = a + (size_t)l * MAXF, *Y = a + (size_t)(l + 1) * MAXF;
            int F = r->out[l], ch = r->ch[l], hw = r->hw[l], K = r->Kl[l], rows = r->rows[l];
            double g[MAXF], b[MAXF];                    /* the layer's W(s), b(s) when 1 column */
            if (rows > 0 && r->cols[l] == 1)
                for (int o = 0; o < rows; o++) {
                    g[o] = b[o] = 0;
                    for (int k = 0; k < K; k++) {
                        double ck = K == 1 ? 1.0 : c[k];
                        g[o] += ck * r->P[l][(size_t)k * rows + o];
                        b[o] += ck * r->B[l][(size_t)k * rows + o];
                    }
                }
            switch (sp->kind) {
            case TU_DENSE: {
                int in = r->cols[l];
                for (int o = 0; o < F; o++) {
                    double v = 0;
                    for (int k = 0; k < K; k++) {
                        double acc = r->B[l][(size_t)k * F + o];
                        for (int j = 0; j < in; j++)
                            acc += r->P[l][((size_t)k * F + o) * in + j] * X[j];
                        v += (K == 1 ? 1.0 : c[k]) * acc;
                    }
                    Y[o] = tu_act(sp->act, v);
                }
                break;
            }
            case TU_RESIDUAL: {
                const double *S = a + (size_t)(sp->from + 1) * MAXF;
                for (int j = 0; j < F; j++) Y[j] = tu_act(sp->act, X[j] + S[j]);
                break;
            }
            case TU_LAYERNORM:
                memcpy(Y, X, sizeof(double) * F);
                tu_normalise(Y, F);
                for (int j = 0; j < F; j++) Y[j] = Y[j] * g[j] + b[j];
                break;
            case TU_GROUPNORM: {
                int G = sp->n, per = ch / G * hw;
                memcpy(Y, X, sizeof(double) * F);
                for (int q = 0; q < G; q++) tu_normalise(Y + q * per, per);
                for (int j = 0; j < F; j++) Y[j] = Y[j] * g[j / hw] + b[j / hw];
                break;
            }
            case TU_FILM:
                for (int j = 0; j < F; j++) Y[j] = g[j / hw] * X[j] + b[j / hw];
                break;
            case TU_DROPOUT:
                memcpy(Y, X, sizeof(double) * F);
                break;
            case TU_GAP: {
                int hw_in = l > 0 ? r->hw[l - 1] : 0;
                if (hw_in == 0) fail_msg("reference: global avgpool needs an image");
                for (int q = 0; q < F; q++) {
                    double v = 0;
                    for (int j = 0; j < hw_in; j++) v += X[q * hw_in + j];
                    Y[q] = v / hw_in;
                }
                break;
            }
            }
        }
        const double *yl = a + (size_t)r->n_layers * MAXF;
        int mo = r->out[r->n_layers - 1];
        if (y_out) memcpy(y_out + (size_t)i * mo, yl, sizeof(double) * mo);
        if (r->loss == WM_LOSS_SOFTMAX_CE) {
            double mx = yl[0], sum = 0;
            for (int j = 1; j < mo; j++) mx = yl[j] > mx ? yl[j] : mx;
            for (int j = 0; j < mo; j++) sum += exp(yl[j] - mx);
            total += log(sum) + mx - yl[labels[i]];
        } else {
            double sq = 0;
            for (int j = 0; j < mo; j++) sq += (yl[j] - targets[i * mo + j]) * (yl[j] - targets[i * mo + j]);
            total += sq / mo;
        }
    }
    free(a);
    return total / n;
}

/* The library's gradient (wm_grad on the batch) against central differences
 * of the reference in P coordinates, every stride-th parameter; returns the
 * max |analytic - fd| and sets *scale to the largest |fd|. The Q gradient
 * of a manifold layer maps to P by the test's own Cholesky factor of G
 * (dL/dP = L dL/dQ); a point layer's is already dL/dP. */
static inline double tu_gcheck(tu_gref *r, wm_net *net, int n, const float *x, const float *s,
                               const int32_t *labels, const float *targets, int stride,
                               double *scale, double *loss_err)
{
    const wm_manifold *m = wm_net_manifold(net);
    wm_optimizer *opt;
    wm_opt_config cfg = wm_opt_default(WM_OPT_SD);
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
    float loss;
    wm_batch b = {n, x, s, labels, targets};
    WM_OK_OR_FAIL(wm_grad(opt, &b, &loss));
    size_t np;
    const float *gq = wm_grad_buffer(opt, &np);
    double ref_loss = tu_gref_loss(r, m, n, x, s, labels, targets, NULL);
    *loss_err = fabs(ref_loss - loss) / (1 + fabs(ref_loss));
    int K = r->K;
    double *G = malloc(sizeof(double) * K * K), *L = malloc(sizeof(double) * K * K);
    if (K > 1) {
        WM_OK_OR_FAIL(wm_manifold_gram(m, G));
        tu_cholesky(G, L, K);
    }
    double max_err = 0;
    *scale = 0;
    size_t off = 0;
    for (int l = 0; l < r->n_layers; l++) {
        if (r->rows[l] == 0)
            continue;
        int Kl = r->Kl[l];
        for (int part = 0; part < 2; part++) {
            size_t len = part ? (size_t)r->rows[l] : (size_t)r->rows[l] * r->cols[l];
            double *P = part ? r->B[l] : r->P[l];
            for (int k = 0; k < Kl; k++)
                for (size_t j = (size_t)k % stride; j < len; j += stride) {
                    double lib = 0;
                    if (Kl == 1)
                        lib = gq[off + j];
                    else
                        for (int i = 0; i <= k; i++)
                            lib += L[k * K + i] * gq[off + (size_t)i * len + j];
                    double *p = &P[(size_t)k * len + j], save = *p, h = 1e-6;
                    *p = save + h;
                    double up = tu_gref_loss(r, m, n, x, s, labels, targets, NULL);
                    *p = save - h;
                    double dn = tu_gref_loss(r, m, n, x, s, labels, targets, NULL);
                    *p = save;
                    double fd = (up - dn) / (2 * h);
                    max_err = fmax(max_err, fabs(lib - fd));
                    *scale = fmax(*scale, fabs(fd));
                }
            off += (size_t)Kl * len;
        }
    }
    assert_int_equal(off, np);
    free(G), free(L);
    wm_optimizer_free(opt);
    return max_err;
}

/* A whole file into a new buffer (64 spare bytes after it, for tests that
 * append); fails the test naming the path if it cannot be read. */
static inline unsigned char *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    assert_true(n >= 0);
    unsigned char *b = malloc((size_t)n + 64);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* Write len bytes to path (created or truncated); fails the test otherwise. */
static inline void tu_write_file(const char *path, const void *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        fail_msg("cannot create %s", path);
    assert_int_equal(fwrite(b, 1, len, f), len);
    fclose(f);
}

#endif
