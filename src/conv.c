/* conv.c -- convolution by im2col, per sample, in one of two ways:
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
#include <string.h>

#include "activation.h"
#include "blas.h"
#include "conv.h"
#include "dense.h"

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

/* cols (in_c*k*k x P), row (c, ky, kx), column (oy, ox): PyTorch's unfold order. */
static void im2col(const wm_layer *ly, const float *x, float *cols)
{
    int k = ly->k, P = ly->out_h * ly->out_w;
    for (int c = 0; c < ly->in_c; c++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                float *row = cols + (size_t)((c * k + ky) * k + kx) * P;
                const float *plane = x + (size_t)c * ly->in_h * ly->in_w;
                for (int oy = 0; oy < ly->out_h; oy++) {
                    int iy = oy * ly->stride - ly->pad + ky;
                    float *dst = row + oy * ly->out_w;
                    if (iy < 0 || iy >= ly->in_h) {
                        memset(dst, 0, sizeof(float) * ly->out_w);
                        continue;
                    }
                    for (int ox = 0; ox < ly->out_w; ox++) {
                        int ix = ox * ly->stride - ly->pad + kx;
                        dst[ox] = ix >= 0 && ix < ly->in_w ? plane[iy * ly->in_w + ix] : 0.0f;
                    }
                }
            }
}

/* dx += col2im(dcols): the adjoint of im2col. */
static void col2im_add(const wm_layer *ly, const float *dcols, float *dx)
{
    int k = ly->k, P = ly->out_h * ly->out_w;
    for (int c = 0; c < ly->in_c; c++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                const float *row = dcols + (size_t)((c * k + ky) * k + kx) * P;
                float *plane = dx + (size_t)c * ly->in_h * ly->in_w;
                for (int oy = 0; oy < ly->out_h; oy++) {
                    int iy = oy * ly->stride - ly->pad + ky;
                    if (iy < 0 || iy >= ly->in_h)
                        continue;
                    for (int ox = 0; ox < ly->out_w; ox++) {
                        int ix = ox * ly->stride - ly->pad + kx;
                        if (ix >= 0 && ix < ly->in_w)
                            plane[iy * ly->in_w + ix] += row[oy * ly->out_w + ox];
                    }
                }
            }
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
                for (int p = 0; p < P; p++)
                    gB[o] += di[(size_t)o * P + p];
            if (dX)
                wmi_gemm(1, 0, ly->cols, P, rows, 1.0f, W, ly->cols, di, P, 0.0f, dcols, P);
        } else if (mat) {
            float *dbi = dwi + wn;              /* the bias gradient, summed once */
            wmi_gemm(0, 1, rows, ly->cols, P, 1.0f, di, P, cols, P, 0.0f, dwi, ly->cols);
            for (int o = 0; o < rows; o++) {
                float sum = 0.0f;
                for (int p = 0; p < P; p++)
                    sum += di[(size_t)o * P + p];
                dbi[o] = sum;
            }
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
                for (int o = 0; o < rows; o++) {
                    float sum = 0.0f;
                    for (int p = 0; p < P; p++)
                        sum += z[((size_t)k * rows + o) * P + p];
                    gB[(size_t)k * rows + o] += sum;
                }
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

/* ---- pooling ---------------------------------------------------------------- */

void wmi_pool_forward(const wm_layer *ly, const float *X, int n, float *Y)
{
    int s = ly->k, max = ly->kind == WM_LAYER_MAXPOOL;
    float inv = 1.0f / (float)(s * s);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < ly->out_c; c++) {
            const float *plane = X + (size_t)i * ly->in + (size_t)c * ly->in_h * ly->in_w;
            float *out = Y + (size_t)i * ly->out + (size_t)c * ly->out_h * ly->out_w;
            for (int oy = 0; oy < ly->out_h; oy++)
                for (int ox = 0; ox < ly->out_w; ox++) {
                    const float *win = plane + (size_t)oy * s * ly->in_w + (size_t)ox * s;
                    float v = max ? win[0] : 0.0f;
                    for (int dy = 0; dy < s; dy++)
                        for (int dx = 0; dx < s; dx++) {
                            float u = win[dy * ly->in_w + dx];
                            v = max ? (u > v ? u : v) : v + u;
                        }
                    out[oy * ly->out_w + ox] = max ? v : v * inv;
                }
        }
}

void wmi_pool_backward(const wm_layer *ly, const float *X, const float *Y, const float *dY, int n,
                       float *dX)
{
    int s = ly->k, max = ly->kind == WM_LAYER_MAXPOOL;
    float inv = 1.0f / (float)(s * s);
    memset(dX, 0, sizeof(float) * (size_t)n * ly->in);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < ly->out_c; c++) {
            size_t in_off = (size_t)i * ly->in + (size_t)c * ly->in_h * ly->in_w;
            size_t out_off = (size_t)i * ly->out + (size_t)c * ly->out_h * ly->out_w;
            for (int oy = 0; oy < ly->out_h; oy++)
                for (int ox = 0; ox < ly->out_w; ox++) {
                    size_t base = in_off + (size_t)oy * s * ly->in_w + (size_t)ox * s;
                    float g = dY[out_off + oy * ly->out_w + ox];
                    if (max) {                   /* to the first maximum, as the forward chose */
                        float m = Y[out_off + oy * ly->out_w + ox];
                        int done = 0;
                        for (int dy = 0; dy < s && !done; dy++)
                            for (int dx = 0; dx < s && !done; dx++)
                                if (X[base + dy * ly->in_w + dx] == m) {
                                    dX[base + dy * ly->in_w + dx] += g;
                                    done = 1;
                                }
                    } else {
                        for (int dy = 0; dy < s; dy++)
                            for (int dx = 0; dx < s; dx++)
                                dX[base + dy * ly->in_w + dx] += g * inv;
                    }
                }
        }
}
