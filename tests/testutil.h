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

#endif
