/* layers/dense.c -- the dense layer kind: the basis-point decomposition (DESIGN.md section 2).
 *
 * The one clever trick: the K basis points of a layer are stored stacked as a
 * (K*out) x in matrix Wst, so a batch with a different context per sample
 * needs no per-sample weight matrix:
 *   forward   Z = X Wst^T                  one GEMM, n x (K*out)
 *             y_i = sum_k C_ik (Z_ik + B_k)
 *   backward  D_ik = C_ik delta_i          n x (K*out)
 *             dWst = D^T X                 one GEMM
 *             dB_k = sum_i C_ik delta_i    (C^T delta, a small GEMM)
 *             dX   = D Wst                 one GEMM
 * When all samples share one context we instead materialise W(s) once and
 * run a plain layer (K times fewer FLOPs), then spread dW to the basis
 * points: dQ_k = c_hat_k dW. */
#include <stdio.h>
#include <string.h>

#include "activation.h"
#include "blas.h"
#include "error.h"
#include "layers/dense.h"
#include "layers/layer.h"
#include "linalg.h"
#include "manifold.h"
#include "simd.h"

WMI_SIMD_CLONES
void wmi_dense_materialise(const wm_layer *ly, const float *params, int Kp, const float *chat,
                           float *w, float *b)
{
    size_t wn = (size_t)ly->rows * ly->cols;
    const float *Q = params + ly->w_off, *B = params + ly->b_off;
    for (int k = 0; k < Kp; k++) {
        float c = chat[k];
        const float *Qk = Q + (size_t)k * wn, *Bk = B + (size_t)k * ly->rows;
        if (w) {
            if (k == 0)
                for (size_t j = 0; j < wn; j++) w[j] = c * Qk[j];
            else
                for (size_t j = 0; j < wn; j++) w[j] += c * Qk[j];
        }
        if (b) {
            if (k == 0)
                for (int j = 0; j < ly->rows; j++) b[j] = c * Bk[j];
            else
                for (int j = 0; j < ly->rows; j++) b[j] += c * Bk[j];
        }
    }
}

/* y_i = sum_k C_ik (Z_ik + B_k): the stacked outputs combined per sample. */
WMI_SIMD_CLONES
static void combine_points(const float *z, const float *C, const float *B, int n, int Kp, int out,
                           float *Y)
{
    size_t ko = (size_t)Kp * out;
    for (int i = 0; i < n; i++) {
        const float *zi = z + (size_t)i * ko, *ci = C + (size_t)i * Kp;
        float *yi = Y + (size_t)i * out;
        for (int o = 0; o < out; o++)
            yi[o] = 0.0f;
        for (int k = 0; k < Kp; k++) {
            float c = ci[k];
            const float *zk = zi + (size_t)k * out, *bk = B + (size_t)k * out;
            for (int o = 0; o < out; o++)
                yi[o] += c * (zk[o] + bk[o]);
        }
    }
}

/* The same from the transposed product zt = Wst X^T (K*out x n): see
 * few_rows below. Each y_i[o] sums over k in the order combine_points does. */
WMI_SIMD_CLONES
static void combine_points_t(const float *zt, const float *C, const float *B, int n, int Kp, int out,
                             float *Y)
{
    for (size_t j = 0; j < (size_t)n * out; j++)
        Y[j] = 0.0f;
    for (int k = 0; k < Kp; k++)
        for (int o = 0; o < out; o++) {
            const float *t = zt + ((size_t)k * out + o) * n;
            float b = B[(size_t)k * out + o];
            for (int i = 0; i < n; i++)
                Y[(size_t)i * out + o] += C[(size_t)i * Kp + k] * (t[i] + b);
        }
}

/* A batch of few rows multiplies faster as W X^T than as X W^T: OpenBLAS
 * (0.3.21, one thread) took up to 1.37x longer for the second at 2-64 rows
 * on the MLP's shapes, and the same from 256 up (docs/performance.md). The
 * transposed result then costs a strided pass, which only long rows repay:
 * with 16 or 64 inputs the control net's step was 4-7% slower. */
enum { FEW_ROWS = 64, LONG_ROW = 128 };
static int few_rows(int n, int in) { return n > 1 && n <= FEW_ROWS && in >= LONG_ROW; }

/* Y = X W^T + b for a plain layer W (out x in); t: scratch of n*out floats. */
static void plain_forward(const float *W, const float *b, const float *X, int n, int in, int out,
                          float *Y, float *t)
{
    if (few_rows(n, in)) {
        wmi_gemm(0, 1, out, n, in, 1.0f, W, in, X, in, 0.0f, t, n);
        for (int o = 0; o < out; o++)             /* transpose, adding the bias */
            for (int i = 0; i < n; i++)
                Y[(size_t)i * out + o] = t[(size_t)o * n + i] + b[o];
        return;
    }
    for (int i = 0; i < n; i++)
        memcpy(Y + (size_t)i * out, b, sizeof(float) * (size_t)out);
    if (n == 1)
        wmi_gemv(0, out, in, 1.0f, W, in, X, 1.0f, Y);
    else
        wmi_gemm(0, 1, n, out, in, 1.0f, X, in, W, in, 1.0f, Y, out);
}

void wmi_dense_forward(const wm_layer *ly, const float *params, int Kp, const float *X, int n,
                       const float *C, int shared, float *Y, float *z, float *wmat)
{
    int in = ly->in, out = ly->out, ko = Kp * out;
    const float *Q = params + ly->w_off, *B = params + ly->b_off;

    if (Kp == 1) {                               /* a point: the stored Q is W */
        plain_forward(Q, B, X, n, in, out, Y, z);
    } else if (shared) {
        float *w = wmat, *b = wmat + (size_t)out * in;
        wmi_dense_materialise(ly, params, Kp, C, w, b);
        plain_forward(w, b, X, n, in, out, Y, z);
    } else if (few_rows(n, in)) {
        wmi_gemm(0, 1, ko, n, in, 1.0f, Q, in, X, in, 0.0f, z, n);
        combine_points_t(z, C, B, n, Kp, out, Y);
    } else {
        if (n == 1)
            wmi_gemv(0, ko, in, 1.0f, Q, in, X, 0.0f, z);
        else
            wmi_gemm(0, 1, n, ko, in, 1.0f, X, in, Q, in, 0.0f, z, ko);
        combine_points(z, C, B, n, Kp, out, Y);
    }
    wmi_act_forward(ly->act, Y, (size_t)n * out);
}

void wmi_dense_backward(const wm_layer *ly, const float *params, int Kp, const float *X, int n,
                        const float *C, int shared, const float *Y, float *dY, float *grad,
                        float *dX, float *z, const float *wmat)
{
    int in = ly->in, out = ly->out, ko = Kp * out;
    size_t wn = (size_t)out * in;
    const float *Q = params + ly->w_off;
    float *delta = dY;

    wmi_act_backward(ly->act, Y, delta, (size_t)n * out);

    if (!grad) {                                 /* deltas only: the caller updates directly */
        if (dX && (Kp == 1 || shared))
            wmi_gemm(0, 0, n, in, out, 1.0f, delta, out, Kp == 1 ? Q : wmat, in, 0.0f, dX, in);
        else if (dX) {
            for (int i = 0; i < n; i++)
                for (int k = 0; k < Kp; k++)
                    for (int o = 0; o < out; o++)
                        z[(size_t)i * ko + (size_t)k * out + o] = C[(size_t)i * Kp + k] * delta[(size_t)i * out + o];
            if (n == 1)
                wmi_gemv(1, ko, in, 1.0f, Q, in, z, 0.0f, dX);
            else
                wmi_gemm(0, 0, n, in, ko, 1.0f, z, ko, Q, in, 0.0f, dX, in);
        }
        return;
    }

    float *gW = grad + ly->w_off, *gB = grad + ly->b_off;   /* grad is not NULL from here */
    if (Kp == 1 || shared) {
        /* plain layer gradient, into basis point 0's slot */
        const float *W = Kp == 1 ? Q : wmat;
        wmi_gemm(1, 0, out, in, n, 1.0f, delta, out, X, in, 0.0f, gW, in);
        for (int o = 0; o < out; o++)
            gB[o] = 0.0f;
        for (int i = 0; i < n; i++)
            for (int o = 0; o < out; o++)
                gB[o] += delta[(size_t)i * out + o];
        if (dX)
            wmi_gemm(0, 0, n, in, out, 1.0f, delta, out, W, in, 0.0f, dX, in);
        if (Kp > 1) {
            /* spread to the basis points: dQ_k = c_hat_k dW (slot 0 last: it is the source) */
            for (int k = Kp - 1; k >= 0; k--) {
                float c = C[k];
                float *gWk = gW + (size_t)k * wn, *gBk = gB + (size_t)k * out;
                for (size_t j = 0; j < wn; j++) gWk[j] = c * gW[j];
                for (int o = 0; o < out; o++) gBk[o] = c * gB[o];
            }
        }
        return;
    }

    for (int i = 0; i < n; i++) {                /* D_ik = C_ik delta_i */
        const float *di = delta + (size_t)i * out, *ci = C + (size_t)i * Kp;
        float *zi = z + (size_t)i * ko;
        for (int k = 0; k < Kp; k++)
            for (int o = 0; o < out; o++)
                zi[(size_t)k * out + o] = ci[k] * di[o];
    }
    wmi_gemm(1, 0, ko, in, n, 1.0f, z, ko, X, in, 0.0f, gW, in);        /* dWst = D^T X */
    wmi_gemm(1, 0, Kp, out, n, 1.0f, C, Kp, delta, out, 0.0f, gB, out); /* dB = C^T delta */
    if (dX)
        wmi_gemm(0, 0, n, in, ko, 1.0f, z, ko, Q, in, 0.0f, dX, in);    /* dX = D Wst */
}

/* ---- the local B-spline path (net.h) ---------------------------------------
 * On an open B-spline of degree p only c_g(s)..c_{g+p}(s) are nonzero, g the
 * knot interval of s, so in the paper's coordinates
 *     y_i = act( sum_r c_{g_i+r}(s_i) (P_{g_i+r} x_i + b_{g_i+r}) ).
 * The pass sorted the samples by interval: the samples that touch control
 * point k (intervals k-p..k) are one run [a_k, b_k) of that order, about
 * (p+1) n / pieces of them. Per point, one GEMM over its run:
 *   forward   Z_k   = Xs[a_k,b_k) P_k^T                 (P_k read once)
 *   backward  D_k   = rows c_k(s_i) delta_i of the run
 *             dP_k  = D_k^T Xs[a_k,b_k)
 *             dXs[a_k,b_k) += D_k P_k
 * so (p+1)/K of the stacked path's FLOPs. The gradient is then brought to
 * Q: dL/dQ = L^-1 dL/dP (P = L^-T Q), a banded forward substitution. */

/* The run [*a, *b) of sorted samples touching point k. */
static void point_run(const wm_layer_io *io, int K, int k, int *a, int *b)
{
    int p = io->lp, pieces = K - p;
    int g0 = k - p > 0 ? k - p : 0, g1 = k < pieces - 1 ? k : pieces - 1;
    *a = io->lstart[g0];
    *b = io->lstart[g1 + 1];
}

/* D's rows j - a, j in [a, b): c_k(s_i) delta_i for the sorted samples i of
 * point k's run (out floats each). */
static void point_rows(const wm_layer_io *io, const float *delta, int out, int k, int a, int b, float *D)
{
    int p = io->lp;
    for (int j = a; j < b; j++) {
        int i = io->lorder[j];
        float c = io->lc[(size_t)i * (p + 1) + (k - io->lpiece[i])];
        const float *di = delta + (size_t)i * out;
        float *Dj = D + (size_t)(j - a) * out;
        for (int o = 0; o < out; o++)
            Dj[o] = c * di[o];
    }
}

/* Xs[j] = X[order[j]]. */
static void gather_rows(const wm_layer_io *io, const float *X, int n, int in, float *Xs)
{
    for (int j = 0; j < n; j++)
        memcpy(Xs + (size_t)j * in, X + (size_t)io->lorder[j] * in, sizeof(float) * (size_t)in);
}

/* W(s), b(s) of sample 0 (a shared context) from its p+1 points. */
WMI_SIMD_CLONES
static void local_materialise(const wm_layer *ly, const wm_layer_io *io, float *w, float *b)
{
    size_t wn = (size_t)ly->rows * ly->cols;
    int p = io->lp, g = io->lpiece[0];
    const float *P = io->P + ly->w_off, *PB = io->P + ly->b_off;
    for (int r = 0; r <= p; r++) {
        float c = io->lc[r];
        const float *Pk = P + (size_t)(g + r) * wn, *Bk = PB + (size_t)(g + r) * ly->rows;
        if (r == 0) {
            for (size_t j = 0; j < wn; j++) w[j] = c * Pk[j];
            for (int j = 0; j < ly->rows; j++) b[j] = c * Bk[j];
        } else {
            for (size_t j = 0; j < wn; j++) w[j] += c * Pk[j];
            for (int j = 0; j < ly->rows; j++) b[j] += c * Bk[j];
        }
    }
}

/* P_k (n floats) fetched into the cache before the product that reads it:
 * OpenBLAS's small kernels then run at their in-cache rate instead of
 * waiting on each line (~6% of the bench's 16-point B-spline step on Zen 4,
 * the whole block better than its first 128 KiB, prefetcht1 no better; the
 * backward's D_k P_k, whose P_k the forward has just read, gained nothing). */
static void prefetch_block(const float *P, size_t n)
{
    enum { MAX = 1 << 18 };         /* 1 MiB: more would only evict its own start */
    for (size_t e = 0; e < n && e < MAX; e += 16)
        WMI_PREFETCH(P + e);
}

WMI_SIMD_CLONES
static void local_forward(const wm_layer *ly, const wm_layer_io *io, const float *X, int n, float *Y)
{
    int in = ly->in, out = ly->out, K = io->Kp, p = io->lp;
    size_t wn = (size_t)out * in, off = 0;
    const float *P = io->P + ly->w_off, *PB = io->P + ly->b_off;
    float *Xs = io->lx, *z = io->z;
    int run_a[WM_MAX_BASIS];
    size_t zoff[WM_MAX_BASIS];
    gather_rows(io, X, n, in, Xs);
    for (int k = 0; k < K; k++) {
        int a, b;
        point_run(io, K, k, &a, &b);
        run_a[k] = a, zoff[k] = off;
        if (b > a) {
            prefetch_block(P + (size_t)k * wn, wn);
            wmi_gemm(0, 1, b - a, out, in, 1.0f, Xs + (size_t)a * in, in, P + (size_t)k * wn, in, 0.0f,
                     z + off, out);
        }
        off += (size_t)(b - a) * out;
    }
    for (int j = 0; j < n; j++) {            /* y_i = sum_r c_r (Z_{g+r} + b_{g+r}) */
        int i = io->lorder[j], g = io->lpiece[i];
        const float *c = io->lc + (size_t)i * (p + 1);
        float *yi = Y + (size_t)i * out;
        for (int o = 0; o < out; o++)
            yi[o] = 0.0f;
        for (int r = 0; r <= p; r++) {
            int k = g + r;
            const float *zk = z + zoff[k] + (size_t)(j - run_a[k]) * out, *bk = PB + (size_t)k * out;
            float cr = c[r];
            for (int o = 0; o < out; o++)
                yi[o] += cr * (zk[o] + bk[o]);
        }
    }
    wmi_act_forward(ly->act, Y, (size_t)n * out);
}

WMI_SIMD_CLONES
static void local_backward(const wm_layer *ly, const wm_layer_io *io, const float *X, int n,
                           const float *Y, float *dY, float *grad, float *dX)
{
    int in = ly->in, out = ly->out, K = io->Kp, p = io->lp;
    size_t wn = (size_t)out * in, off = 0;
    const float *P = io->P + ly->w_off;
    float *delta = dY, *Xs = io->lx, *dXs = io->lx + (size_t)n * in, *z = io->z;
    wmi_act_backward(ly->act, Y, delta, (size_t)n * out);
    if (grad)
        gather_rows(io, X, n, in, Xs);
    if (dX)
        memset(dXs, 0, sizeof(float) * (size_t)n * in);
    for (int k = 0; k < K; k++) {
        int a, b;
        point_run(io, K, k, &a, &b);
        float *D = z + off;                  /* D_k: the run's rows c_k(s_i) delta_i */
        point_rows(io, delta, out, k, a, b, D);
        if (grad) {
            float *gW = grad + ly->w_off + (size_t)k * wn, *gB = grad + ly->b_off + (size_t)k * out;
            if (b > a)
                wmi_gemm(1, 0, out, in, b - a, 1.0f, D, out, Xs + (size_t)a * in, in, 0.0f, gW, in);
            else
                memset(gW, 0, sizeof(float) * wn);
            for (int o = 0; o < out; o++)
                gB[o] = 0.0f;
            for (int j = 0; j < b - a; j++)
                for (int o = 0; o < out; o++)
                    gB[o] += D[(size_t)j * out + o];
            /* dL/dQ = L^-1 dL/dP: L G_Q = G_P, a banded forward substitution,
             * block k while its dL/dP is still in cache */
            wmi_band_solve_lower_row(io->lL, K, p, grad + ly->w_off, wn, k);
            wmi_band_solve_lower_row(io->lL, K, p, grad + ly->b_off, (size_t)out, k);
        }
        if (dX && b > a)
            wmi_gemm(0, 0, b - a, in, out, 1.0f, D, out, P + (size_t)k * wn, in, 1.0f,
                     dXs + (size_t)a * in, in);
        off += (size_t)(b - a) * out;
    }
    if (dX)
        for (int j = 0; j < n; j++)
            memcpy(dX + (size_t)io->lorder[j] * in, dXs + (size_t)j * in, sizeof(float) * (size_t)in);
}

/* ---- the local path's gradient for an update that applies it at once ------
 * (optim.c's direct B-spline update: dL/dP is formed a range of rows at a
 * time, brought to Q and applied while in cache, never stored whole.) */

void wmi_dense_local_prepare(const wm_layer *ly, const wm_layer_io *io, const float *X,
                             const float *delta, int n, float *bias_grad, wmi_local_runs *r)
{
    int in = ly->in, out = ly->out, K = io->Kp;
    size_t off = 0;
    gather_rows(io, X, n, in, io->lx);
    for (int k = 0; k < K; k++) {
        int a, b;
        point_run(io, K, k, &a, &b);
        r->a[k] = a, r->b[k] = b, r->doff[k] = off;
        /* D_k^T (out x m): its rows are dL/dP_k's rows' coefficients, so
         * grad_rows is a plain product (measured ~5% faster a step than
         * D_k^T taken from the transposed argument) */
        float *Dt = io->z + off, *gB = bias_grad + (size_t)k * out;
        int m = b - a;
        for (int j = a; j < b; j++) {
            int i = io->lorder[j];
            float c = io->lc[(size_t)i * (io->lp + 1) + (k - io->lpiece[i])];
            const float *di = delta + (size_t)i * out;
            for (int o = 0; o < out; o++)
                Dt[(size_t)o * m + (j - a)] = c * di[o];
        }
        for (int o = 0; o < out; o++) {       /* dL/dB_k = the rows' sums, j in order */
            float acc = 0.0f;
            for (int j = 0; j < m; j++)
                acc += Dt[(size_t)o * m + j];
            gB[o] = acc;
        }
        off += (size_t)m * out;
    }
}

void wmi_dense_local_grad_rows(const wm_layer *ly, const wm_layer_io *io, const wmi_local_runs *r,
                               int k, int r0, int rows, float *g)
{
    int in = ly->in, a = r->a[k], b = r->b[k];
    if (b > a)     /* dP_k[r0, r0 + rows) = D_k^T[r0, r0 + rows) Xs[a, b) */
        wmi_gemm(0, 0, rows, in, b - a, 1.0f, io->z + r->doff[k] + (size_t)r0 * (b - a), b - a,
                 io->lx + (size_t)a * in, in, 0.0f, g, in);
    else
        memset(g, 0, sizeof(float) * (size_t)rows * in);
}

/* ---- the layer kind ------------------------------------------------------- */

wm_status wm_net_dense(wm_net *net, int n_outputs, wm_activation act)
{
    wm_status st = wmi_net_check_add(net, __func__);
    if (st != WM_OK)
        return st;
    if (n_outputs < 1 || n_outputs > (1 << 24))
        return wmi_fail(WM_EINVAL, "wm_net_dense: n_outputs = %d must be in 1..%d", n_outputs, 1 << 24);
    if (!wmi_act_valid((int)act))
        return wmi_fail(WM_EINVAL, "wm_net_dense: activation %d is not a wm_activation", (int)act);
    if ((st = wmi_net_check_first_input(net, 0, __func__)) != WM_OK)
        return st;
    wm_layer ly;
    memset(&ly, 0, sizeof ly);
    ly.kind = WM_LAYER_DENSE;
    ly.out = ly.rows = n_outputs;
    ly.cols = wmi_net_in_features(net);
    ly.act = act;
    return wmi_net_append(net, &ly, 0, __func__);
}

static void dense_fields(const wm_layer *ly, uint32_t *v)
{
    v[0] = (uint32_t)ly->out;
    v[1] = (uint32_t)ly->act;
}

static wm_status dense_rebuild(wm_net *net, const uint32_t *v)
{
    return wm_net_dense(net, (int)v[0], (wm_activation)v[1]);
}

static void dense_describe(const wm_layer *ly, char *buf, size_t len)
{
    (void)ly;
    snprintf(buf, len, "dense");
}

static void dense_init(const wm_layer *ly, float *w0, float *b0, wmi_rng *rng)
{
    (void)b0;
    wmi_init_weights(ly, w0, rng);
}

static void dense_fwd(const wm_layer *ly, const wm_layer_io *io, const float *X, int n, float *Y)
{
    if (io->P && io->shared) {                   /* W(s) from its p+1 control points */
        local_materialise(ly, io, io->wmat, io->wmat + (size_t)ly->out * ly->in);
        plain_forward(io->wmat, io->wmat + (size_t)ly->out * ly->in, X, n, ly->in, ly->out, Y, io->z);
        wmi_act_forward(ly->act, Y, (size_t)n * ly->out);
        return;
    }
    if (io->P) {
        local_forward(ly, io, X, n, Y);
        return;
    }
    wmi_dense_forward(ly, io->params, io->Kp, X, n, io->C, io->shared, Y, io->z, io->wmat);
}

static void dense_bwd(const wm_layer *ly, const wm_layer_io *io, const float *X, int n,
                      const float *Y, float *dY, float *grad, float *dX)
{
    if (io->P && !io->shared) {          /* shared: the plain layer's backward, as below */
        local_backward(ly, io, X, n, Y, dY, grad, dX);
        return;
    }
    wmi_dense_backward(ly, io->params, io->Kp, X, n, io->C, io->shared, Y, dY, grad, dX, io->z,
                       io->wmat);
}

const wm_layer_ops wmi_dense_ops = {
    .name = "dense",
    .has_params = 1,
    .direct_update = 1,
    .info_matrix = 1,
    .n_fields = 2,
    .fields = dense_fields,
    .rebuild = dense_rebuild,
    .describe = dense_describe,
    .init = dense_init,
    .forward = dense_fwd,
    .backward = dense_bwd,
};
