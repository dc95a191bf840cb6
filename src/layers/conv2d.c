/* layers/conv2d.c -- the conv2d layer kind: convolution by im2col, per sample, in one of two ways:
 *
 *  stacked       Z = Wst cols, Wst = the Kp basis kernels stacked ((Kp*out) x
 *                (in*k*k)): y = sum_k c_k (Z_k + b_k). Kp x the FLOPs of a
 *                plain conv, but no per-sample weights at all.
 *  materialised  W_i = sum_k c_k Q_k (Kp |W| work), then y = W_i cols:
 *                1 x FLOPs. Backward spreads dW_i to the basis points by c(s_i)
 *                (CondConv, Yang et al. 2019: "the experts are combined only
 *                once per input").
 * A kernel applied at P output positions costs Kp*P*|W| stacked against
 * (Kp + P)*|W| materialised, so materialising wins whenever P > Kp/(Kp-1),
 * i.e. almost always; the cost model below counts the backward pass too.
 * A batch that shares one context materialises once for all samples. */
#include <stdio.h>
#include <string.h>

#include "activation.h"
#include "blas.h"
#include "error.h"
#include "layers/layer.h"
#include "layers/conv2d.h"
#include "layers/dense.h"
#include "simd.h"

static size_t positions(const wm_layer *ly) { return (size_t)ly->out_h * ly->out_w; }

size_t wmi_conv_scratch_floats(const wm_layer *ly)
{
    size_t colsz = (size_t)ly->cols * positions(ly), wn = (size_t)ly->rows * ly->cols;
    return 2 * colsz + 2 * wn + 2 * (size_t)ly->rows + 32;
}

int wmi_conv_use_materialised(const wm_layer *ly, int Kp, int strategy)
{
    if (strategy == WM_CONV_STACKED)
        return 0;
    if (strategy == WM_CONV_MATERIALISED)
        return 1;
    double wn = (double)ly->rows * ly->cols, P = (double)positions(ly);
    double stacked = 3.0 * Kp * wn * P;                 /* forward, dW, dX GEMMs */
    double materialised = 3.0 * wn * P + 3.0 * Kp * wn; /* plain GEMMs + build, rebuild, spread */
    return materialised < stacked;
}

/* The output columns ox whose input column ox*stride - pad + kx lies inside
 * [0, in_w): [*lo, *hi). Outside it im2col writes zeros and col2im adds
 * nothing, so the loops over it need no test per element. */
static void valid_columns(const wm_layer *ly, int kx, int *lo, int *hi)
{
    int first = ly->pad - kx, last = ly->in_w - 1 + ly->pad - kx;   /* ox*stride in [first, last] */
    int a = first > 0 ? (first + ly->stride - 1) / ly->stride : 0;
    int b = last < 0 ? 0 : last / ly->stride + 1;
    a = a < ly->out_w ? a : ly->out_w;
    b = b < ly->out_w ? b : ly->out_w;
    *lo = a;
    *hi = b > a ? b : a;
}

/* cols (in_c*k*k x P), row (c, ky, kx), column (oy, ox): PyTorch's unfold order. */
static void im2col(const wm_layer *ly, const float *x, float *cols)
{
    int k = ly->k, P = ly->out_h * ly->out_w, s = ly->stride;
    for (int c = 0; c < ly->in_c; c++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                float *row = cols + (size_t)((c * k + ky) * k + kx) * P;
                const float *plane = x + (size_t)c * ly->in_h * ly->in_w;
                int lo, hi;
                valid_columns(ly, kx, &lo, &hi);
                for (int oy = 0; oy < ly->out_h; oy++) {
                    int iy = oy * s - ly->pad + ky;
                    float *dst = row + oy * ly->out_w;
                    if (iy < 0 || iy >= ly->in_h) {
                        memset(dst, 0, sizeof(float) * ly->out_w);
                        continue;
                    }
                    const float *src = plane + iy * ly->in_w + (lo * s - ly->pad + kx);
                    memset(dst, 0, sizeof(float) * lo);
                    if (s == 1)
                        memcpy(dst + lo, src, sizeof(float) * (hi - lo));
                    else
                        for (int ox = lo; ox < hi; ox++)
                            dst[ox] = src[(ox - lo) * s];
                    memset(dst + hi, 0, sizeof(float) * (ly->out_w - hi));
                }
            }
}

/* dx += col2im(dcols): the adjoint of im2col. */
static void col2im_add(const wm_layer *ly, const float *dcols, float *dx)
{
    int k = ly->k, P = ly->out_h * ly->out_w, s = ly->stride;
    for (int c = 0; c < ly->in_c; c++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                const float *row = dcols + (size_t)((c * k + ky) * k + kx) * P;
                float *plane = dx + (size_t)c * ly->in_h * ly->in_w;
                int lo, hi;
                valid_columns(ly, kx, &lo, &hi);
                for (int oy = 0; oy < ly->out_h; oy++) {
                    int iy = oy * s - ly->pad + ky;
                    if (iy < 0 || iy >= ly->in_h)
                        continue;
                    float *dst = plane + iy * ly->in_w + (lo * s - ly->pad + kx);
                    const float *src = row + oy * ly->out_w;
                    if (s == 1)                   /* contiguous: vectorises */
                        for (int ox = lo; ox < hi; ox++)
                            dst[ox - lo] += src[ox];
                    else
                        for (int ox = lo; ox < hi; ox++)
                            dst[(ox - lo) * s] += src[ox];
                }
            }
}

/* Sum of n floats in eight interleaved partial sums (a fixed order, so the
 * result is reproducible; unlike one running sum it vectorises). */
WMI_SIMD_CLONES
static float sum_floats(const float *a, int n)
{
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int t = 0; t < 8; t++)
            acc[t] += a[j + t];
    float sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; j < n; j++)
        sum += a[j];
    return sum;
}

/* y (rows x P) = W cols + b, one plain conv. */
static void plain_conv(const wm_layer *ly, const float *W, const float *b, const float *cols, float *y)
{
    int P = (int)positions(ly);
    for (int o = 0; o < ly->rows; o++)
        for (int p = 0; p < P; p++)
            y[(size_t)o * P + p] = b[o];
    wmi_gemm(0, 0, ly->rows, P, ly->cols, 1.0f, W, ly->cols, cols, P, 1.0f, y, P);
}

void wmi_conv_forward(const wm_layer *ly, const float *params, int Kp, int strategy,
                      const float *X, int n, const float *C, int shared, float *Y, float *z,
                      float *wmat, float *scratch)
{
    int P = (int)positions(ly), rows = ly->rows;
    size_t wn = (size_t)rows * ly->cols;
    const float *Q = params + ly->w_off, *B = params + ly->b_off;
    float *cols = scratch, *wi = scratch + 2 * (size_t)ly->cols * P;
    int mat = Kp > 1 && !shared && wmi_conv_use_materialised(ly, Kp, strategy);
    if (Kp > 1 && shared)
        wmi_dense_materialise(ly, params, Kp, C, wmat, wmat + wn);
    for (int i = 0; i < n; i++) {
        const float *ci = C + (size_t)i * Kp;
        float *yi = Y + (size_t)i * ly->out;
        im2col(ly, X + (size_t)i * ly->in, cols);
        if (Kp == 1) {
            plain_conv(ly, Q, B, cols, yi);
        } else if (shared) {
            plain_conv(ly, wmat, wmat + wn, cols, yi);
        } else if (mat) {
            wmi_dense_materialise(ly, params, Kp, ci, wi, wi + wn);
            plain_conv(ly, wi, wi + wn, cols, yi);
        } else {
            wmi_gemm(0, 0, Kp * rows, P, ly->cols, 1.0f, Q, ly->cols, cols, P, 0.0f, z, P);
            for (int o = 0; o < rows; o++) {
                float *yo = yi + (size_t)o * P;
                float bias = 0.0f;
                for (int k = 0; k < Kp; k++)
                    bias += ci[k] * B[(size_t)k * rows + o];
                for (int p = 0; p < P; p++)
                    yo[p] = bias;
                for (int k = 0; k < Kp; k++) {
                    const float *zk = z + ((size_t)k * rows + o) * P;
                    float c = ci[k];
                    for (int p = 0; p < P; p++)
                        yo[p] += c * zk[p];
                }
            }
        }
    }
    wmi_act_forward(ly->act, Y, (size_t)n * ly->out);
}

void wmi_conv_backward(const wm_layer *ly, const float *params, int Kp, int strategy,
                       const float *X, int n, const float *C, int shared, const float *Y,
                       float *dY, float *grad, float *dX, float *z, const float *wmat,
                       float *scratch)
{
    int P = (int)positions(ly), rows = ly->rows;
    size_t wn = (size_t)rows * ly->cols;
    const float *Q = params + ly->w_off;
    float *gW = grad + ly->w_off, *gB = grad + ly->b_off;
    float *cols = scratch, *dcols = scratch + (size_t)ly->cols * P;
    float *wi = dcols + (size_t)ly->cols * P, *dwi = wi + wn + rows;
    int plain = Kp == 1 || shared;
    int mat = !plain && wmi_conv_use_materialised(ly, Kp, strategy);

    wmi_act_backward(ly->act, Y, dY, (size_t)n * ly->out);
    memset(gW, 0, sizeof(float) * wn * (plain ? 1 : (size_t)Kp));
    memset(gB, 0, sizeof(float) * (size_t)rows * (plain ? 1 : (size_t)Kp));
    if (dX)
        memset(dX, 0, sizeof(float) * (size_t)n * ly->in);
    for (int i = 0; i < n; i++) {
        const float *di = dY + (size_t)i * ly->out, *ci = C + (size_t)i * Kp;
        im2col(ly, X + (size_t)i * ly->in, cols);
        if (plain) {                            /* accumulate in basis point 0's slot */
            const float *W = Kp == 1 ? Q : wmat;
            wmi_gemm(0, 1, rows, ly->cols, P, 1.0f, di, P, cols, P, 1.0f, gW, ly->cols);
            for (int o = 0; o < rows; o++)
                gB[o] += sum_floats(di + (size_t)o * P, P);
            if (dX)
                wmi_gemm(1, 0, ly->cols, P, rows, 1.0f, W, ly->cols, di, P, 0.0f, dcols, P);
        } else if (mat) {
            float *dbi = dwi + wn;              /* the bias gradient, summed once */
            wmi_gemm(0, 1, rows, ly->cols, P, 1.0f, di, P, cols, P, 0.0f, dwi, ly->cols);
            for (int o = 0; o < rows; o++)
                dbi[o] = sum_floats(di + (size_t)o * P, P);
            for (int k = 0; k < Kp; k++) {      /* spread dW_i by c(s_i) */
                float c = ci[k], *gWk = gW + (size_t)k * wn, *gBk = gB + (size_t)k * rows;
                for (size_t j = 0; j < wn; j++)
                    gWk[j] += c * dwi[j];
                for (int o = 0; o < rows; o++)
                    gBk[o] += c * dbi[o];
            }
            if (dX) {
                wmi_dense_materialise(ly, params, Kp, ci, wi, NULL);
                wmi_gemm(1, 0, ly->cols, P, rows, 1.0f, wi, ly->cols, di, P, 0.0f, dcols, P);
            }
        } else {
            for (int k = 0; k < Kp; k++)        /* D = [c_k delta_i]_k */
                for (size_t j = 0; j < (size_t)rows * P; j++)
                    z[(size_t)k * rows * P + j] = ci[k] * di[j];
            wmi_gemm(0, 1, Kp * rows, ly->cols, P, 1.0f, z, P, cols, P, 1.0f, gW, ly->cols);
            for (int k = 0; k < Kp; k++)
                for (int o = 0; o < rows; o++)
                    gB[(size_t)k * rows + o] += sum_floats(z + ((size_t)k * rows + o) * P, P);
            if (dX)
                wmi_gemm(1, 0, ly->cols, P, Kp * rows, 1.0f, Q, ly->cols, z, P, 0.0f, dcols, P);
        }
        if (dX)
            col2im_add(ly, dcols, dX + (size_t)i * ly->in);
    }
    if (plain && Kp > 1)                        /* dQ_k = c_hat_k dW, slot 0 last */
        for (int k = Kp - 1; k >= 0; k--) {
            float c = C[k];
            for (size_t j = 0; j < wn; j++)
                gW[(size_t)k * wn + j] = c * gW[j];
            for (int o = 0; o < rows; o++)
                gB[(size_t)k * rows + o] = c * gB[o];
        }
}

/* ---- the layer kind ------------------------------------------------------- */

wm_status wm_net_conv2d(wm_net *net, int out_channels, int kernel, int stride, int pad,
                        wm_activation act)
{
    wm_status st = wmi_net_check_add(net, __func__);
    if (st != WM_OK || (st = wmi_net_check_spatial(net, __func__)) != WM_OK)
        return st;
    if (out_channels < 1 || out_channels > (1 << 16) || kernel < 1 || kernel > 64 || stride < 1 ||
        stride > 64 || pad < 0 || pad >= kernel)
        return wmi_fail(WM_EINVAL, "wm_net_conv2d: out_channels = %d, kernel = %d, stride = %d, pad = %d: "
                                  "need out_channels >= 1, 1 <= kernel <= 64, 1 <= stride <= 64, 0 <= pad < kernel",
                       out_channels, kernel, stride, pad);
    if (!wmi_act_valid((int)act))
        return wmi_fail(WM_EINVAL, "wm_net_conv2d: activation %d is not a wm_activation", (int)act);
    /* the shape the layer would see (a concat net's first conv also reads
     * the feature planes), all in 64 bits: in_c * k * k overflows int */
    int in_c = wmi_net_in_channels(net);
    int64_t oh = ((int64_t)net->shape_h + 2 * pad - kernel) / stride + 1;
    int64_t ow = ((int64_t)net->shape_w + 2 * pad - kernel) / stride + 1;
    int64_t cols = (int64_t)in_c * kernel * kernel;
    if ((int64_t)net->shape_h + 2 * pad < kernel || (int64_t)net->shape_w + 2 * pad < kernel)
        return wmi_fail(WM_EINVAL, "wm_net_conv2d: a %dx%d kernel does not fit a %dx%d input with padding %d",
                       kernel, kernel, net->shape_h, net->shape_w, pad);
    if ((int64_t)out_channels * oh * ow > WMI_MAX_FEATURES)
        return wmi_fail(WM_EINVAL, "wm_net_conv2d: an output of %d x %lld x %lld values is too large (at most %lld)",
                       out_channels, (long long)oh, (long long)ow, (long long)WMI_MAX_FEATURES);
    if (cols > WMI_MAX_FEATURES)
        return wmi_fail(WM_EINVAL, "wm_net_conv2d: %d input channels x %d x %d kernel = %lld weights per "
                                  "filter; at most %lld", in_c, kernel, kernel, (long long)cols,
                       (long long)WMI_MAX_FEATURES);
    if ((st = wmi_net_check_first_input(net, 1, __func__)) != WM_OK)
        return st;
    wm_layer ly;
    memset(&ly, 0, sizeof ly);
    ly.kind = WM_LAYER_CONV;
    ly.in_c = in_c, ly.in_h = net->shape_h, ly.in_w = net->shape_w;
    ly.out_c = out_channels, ly.out_h = (int)oh, ly.out_w = (int)ow;
    ly.k = kernel, ly.stride = stride, ly.pad = pad;
    ly.rows = out_channels;
    ly.cols = (int)cols;
    ly.out = out_channels * (int)oh * (int)ow;
    ly.act = act;
    return wmi_net_append(net, &ly, 1, __func__);
}

static void conv_fields(const wm_layer *ly, uint32_t *v)
{
    v[0] = (uint32_t)ly->out_c;
    v[1] = (uint32_t)ly->k;
    v[2] = (uint32_t)ly->stride;
    v[3] = (uint32_t)ly->pad;
    v[4] = (uint32_t)ly->act;
}

static wm_status conv_rebuild(wm_net *net, const uint32_t *v)
{
    return wm_net_conv2d(net, (int)v[0], (int)v[1], (int)v[2], (int)v[3], (wm_activation)v[4]);
}

static void conv_describe(const wm_layer *ly, char *buf, size_t len)
{
    snprintf(buf, len, "conv2d %dx%d /%d pad %d", ly->k, ly->k, ly->stride, ly->pad);
}

static void conv_init(const wm_layer *ly, float *w0, float *b0, wmi_rng *rng)
{
    (void)b0;
    wmi_init_weights(ly, w0, rng);
}

static double conv_uses(const wm_layer *ly) { return (double)positions(ly); }

static void conv_fwd(const wm_layer *ly, const wm_layer_io *io, const float *X, int n, float *Y)
{
    wmi_conv_forward(ly, io->params, io->Kp, io->strategy, X, n, io->C, io->shared, Y, io->z,
                     io->wmat, io->scratch);
}

static void conv_bwd(const wm_layer *ly, const wm_layer_io *io, const float *X, int n,
                     const float *Y, float *dY, float *grad, float *dX)
{
    wmi_conv_backward(ly, io->params, io->Kp, io->strategy, X, n, io->C, io->shared, Y, dY, grad,
                      dX, io->z, io->wmat, io->scratch);
}

const wm_layer_ops wmi_conv2d_ops = {
    .name = "conv2d",
    .has_params = 1,
    .info_matrix = 1,
    .n_fields = 5,
    .fields = conv_fields,
    .rebuild = conv_rebuild,
    .describe = conv_describe,
    .init = conv_init,
    .scratch_floats = wmi_conv_scratch_floats,
    .grad_uses = conv_uses,
    .forward = conv_fwd,
    .backward = conv_bwd,
};
