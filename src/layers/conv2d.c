/* layers/conv2d.c -- the conv2d layer kind: convolution by im2col over the
 * batch, a panel of samples at a time.
 *
 * A panel's columns: im2col writes sample t's (in_c*k*k) x P block at
 * columns t*P.. of one matrix `cols` ((in_c*k*k) x g*P, row stride g*P), so a
 * product over the panel's g samples is one GEMM. A panel holds as many
 * whole samples as fit PANEL_FLOATS (the bench net's batch of 64 is 8
 * panels of 8 samples for its first conv, 16 of 4 for its second), so it
 * stays in the core's L2 cache from im2col through the products, and
 * backward recomputes it rather than keeping every panel from forward: with
 * the fast im2col below that was faster (2.8 against 3.2-3.7 ms CPU per
 * step of the bench CNN at batch 64, under load), and keeping them would
 * cost n*P*in_c*k*k floats per conv layer (10.8 MB for the bench net at
 * batch 128), against one panel of at most 256 KB here.
 *
 *  plain         (a point layer, or a batch sharing one context: W(s)
 *                materialised once) Z = W cols: one GEMM per panel; backward
 *                dW = D cols^T and dcols = W^T D with D the panel's deltas in
 *                the same layout: one GEMM each.
 *  stacked       (mixed contexts) Z = Wst cols, Wst = the Kp basis kernels
 *                stacked ((Kp*out) x (in*k*k)): one GEMM, then
 *                y_i = sum_k c_ik (Z_k,i + b_k); backward D = [c_ik delta_i]_k,
 *                dWst = D cols^T, dcols = Wst^T D. Kp x the FLOPs of a plain
 *                conv, grouped by basis point, no per-sample weights.
 *  materialised  (mixed contexts) W_i = sum_k c_ik Q_k (Kp |W| work), then
 *                y_i = W_i cols_i, one GEMM per sample on the panel's
 *                columns: 1 x FLOPs. Backward spreads dW_i to the basis
 *                points by c(s_i) (CondConv, Yang et al. 2019: "the experts
 *                are combined only once per input").
 * A kernel applied at P output positions costs Kp*P*|W| stacked against
 * (Kp + P)*|W| materialised, so materialising wins whenever P > Kp/(Kp-1),
 * i.e. almost always; the cost model below counts the backward pass too. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "activation.h"
#include "blas.h"
#include "error.h"
#include "layers/layer.h"
#include "layers/conv2d.h"
#include "layers/dense.h"
#include "memory.h"
#include "simd.h"

static size_t positions(const wm_layer *ly) { return (size_t)ly->out_h * ly->out_w; }

/* Floats of a panel of columns: whole samples, at most this many (one sample
 * at least). 16K and 64K floats measured alike on the bench CNN, 256K 10-30%
 * slower per step, the whole batch (kept for backward) slower still. */
enum { PANEL_FLOATS = 1 << 16 };

/* The products dW = D cols^T sum over the batch's columns: OpenBLAS 0.3.21
 * (Zen 4, one thread) ran the bench net's first conv (8 x 9, 50 176 terms)
 * at 20 GFLOP/s in one call and at 82-85 in blocks of 784-12 544 terms; the
 * second (16 x 72) at 60 against 105-108 in blocks of about 1 000. So the
 * sum runs in blocks of DW_COLS columns, accumulated (beta = 1). */
enum { DW_COLS = 1024 };

/* Samples per panel for a batch of n (at least 1). A sample's columns
 * (cols * P, each < 2^24) may exceed 2^31 floats: a panel of one such sample
 * still asks for them (the workspace then fails with WM_ENOMEM, as its
 * size says), and no GEMM dimension exceeds 2^24. */
static int panel_samples(const wm_layer *ly, int n)
{
    size_t per = (size_t)ly->cols * positions(ly), g = per >= PANEL_FLOATS ? 1 : PANEL_FLOATS / per;
    return g < (size_t)n ? (int)g : (n > 1 ? n : 1);
}

size_t wmi_conv_scratch_floats(const wm_layer *ly)
{
    size_t wn = (size_t)ly->rows * ly->cols;
    return 2 * wn + 2 * (size_t)ly->rows;
}

size_t wmi_conv_batch_scratch_floats(const wm_layer *ly, int n)
{
    size_t per = wmi_mul_sat((size_t)ly->cols, positions(ly));
    return wmi_mul_sat(per, (size_t)panel_samples(ly, n));
}

/* Where the panel's columns start in io->scratch (after the kernels; 16-float
 * aligned, as the pass lays it out). */
static float *panel_columns(const wm_layer *ly, float *scratch)
{
    return scratch + (wmi_conv_scratch_floats(ly) + 15) / 16 * 16;
}

/* im2col for the g samples of a panel starting at X. */
static void im2col_panel(const wm_layer *ly, const float *X, int g, float *cols);

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

/* GCC turns the short zeroing and copying loops of im2col into memset and
 * memcpy calls (-ftree-loop-distribute-patterns, on at -O2): 55 000 calls of
 * a few floats each per step of the bench net at batch 64. */
#if defined(__GNUC__) && !defined(__clang__)
#define INLINE_LOOPS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define INLINE_LOOPS
#endif

/* One sample's columns: row (c, ky, kx) of cols (row stride ld), column
 * (oy, ox): PyTorch's unfold order. The row's P values are written whole
 * (zeros where the window leaves the image), in plain loops: a libc call
 * per 28-float row was most of im2col's time. */
INLINE_LOOPS
static void im2col(const wm_layer *ly, const float *x, float *cols, size_t ld)
{
    int k = ly->k, s = ly->stride, ow = ly->out_w;
    for (int c = 0; c < ly->in_c; c++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                float *row = cols + (size_t)((c * k + ky) * k + kx) * ld;
                const float *plane = x + (size_t)c * ly->in_h * ly->in_w;
                int lo, hi;
                valid_columns(ly, kx, &lo, &hi);
                for (int oy = 0; oy < ly->out_h; oy++) {
                    int iy = oy * s - ly->pad + ky;
                    float *dst = row + (size_t)oy * ow;
                    if (iy < 0 || iy >= ly->in_h) {
                        for (int ox = 0; ox < ow; ox++)
                            dst[ox] = 0.0f;
                        continue;
                    }
                    /* input column ox*s - pad + kx, >= 0 from lo on */
                    const float *src = plane + (size_t)iy * ly->in_w;
                    ptrdiff_t at = (ptrdiff_t)lo * s - ly->pad + kx;
                    for (int ox = 0; ox < lo; ox++)
                        dst[ox] = 0.0f;
                    if (s == 1)
                        for (int ox = lo; ox < hi; ox++)
                            dst[ox] = src[at + (ox - lo)];
                    else
                        for (int ox = lo; ox < hi; ox++)
                            dst[ox] = src[at + (ptrdiff_t)(ox - lo) * s];
                    for (int ox = hi; ox < ow; ox++)
                        dst[ox] = 0.0f;
                }
            }
}

/* A stride-1 conv that keeps the image's size (2*pad = k - 1, the common
 * "same" 3x3 pad 1): output position j = oy*w + ox reads input j + delta,
 * delta = (ky - pad)*w + kx - pad, so a row of the columns is one shifted
 * copy of the plane, long and contiguous, and only the positions whose
 * window leaves the image (rows above and below, lo columns on the left and
 * w - hi on the right of every row) are zeros: the copy writes them first,
 * the zeros go over them. Rows [oy0, oy1) are inside; [first, last) is the
 * range of j the copy may read for. */
static int same_size(const wm_layer *ly) { return ly->stride == 1 && ly->out_w == ly->in_w && ly->out_h == ly->in_h; }

static void same_rows(const wm_layer *ly, int ky, int kx, int *oy0, int *oy1, int *lo, int *hi,
                      size_t *first, size_t *last)
{
    int h = ly->out_h, w = ly->out_w;
    /* clamped to [0, h] and oy0 <= oy1 as valid_columns clamps lo, hi: with
     * pad > h (a 5x5 pad 2 conv on a 1-pixel-high image) a kernel row can lie
     * wholly outside the image, and its columns must all be zeros */
    int a = ly->pad - ky, b = h + ly->pad - ky;
    a = a < 0 ? 0 : a > h ? h : a;
    b = b > h ? h : b < a ? a : b;
    *oy0 = a, *oy1 = b;
    valid_columns(ly, kx, lo, hi);
    *first = (size_t)*oy0 * w + *lo;
    *last = *oy1 > *oy0 && *hi > *lo ? (size_t)(*oy1 - 1) * w + *hi : *first;
}

/* A tap's geometry (same_rows) and its shift, computed once per tap and
 * panel, not per sample and channel (that was 4% of the bench CNN's step). */
typedef struct {
    int oy0, oy1, lo, hi;
    size_t first, last;
    ptrdiff_t delta;
} same_tap;

static void same_tap_at(const wm_layer *ly, int ky, int kx, same_tap *tp)
{
    same_rows(ly, ky, kx, &tp->oy0, &tp->oy1, &tp->lo, &tp->hi, &tp->first, &tp->last);
    tp->delta = (ptrdiff_t)(ky - ly->pad) * ly->out_w + (kx - ly->pad);
}

/* The zeros of a "same" row of columns: every position outside the image.
 * The left and right ones (pad at most per row) as strided columns: loops
 * of one or two floats per row were a quarter of im2col's time. */
INLINE_LOOPS
static inline void same_zeros(float *dst, int h, int w, const same_tap *tp)
{
    size_t top = (size_t)tp->oy0 * w, bottom = (size_t)tp->oy1 * w, all = (size_t)h * w;
    for (size_t j = 0; j < top; j++)
        dst[j] = 0.0f;
    for (int x = 0; x < tp->lo; x++)
        for (size_t j = top + x; j < bottom; j += w)
            dst[j] = 0.0f;
    for (int x = tp->hi; x < w; x++)
        for (size_t j = top + x; j < bottom; j += w)
            dst[j] = 0.0f;
    for (size_t j = bottom; j < all; j++)
        dst[j] = 0.0f;
}

/* The columns of g samples from X (sample after sample, in floats apart),
 * sample t's at columns t*P.. of rows of stride ld. */
WMI_SIMD_CLONES INLINE_LOOPS
static void im2col_same(const wm_layer *ly, const float *X, int g, float *cols, size_t ld)
{
    int k = ly->k, h = ly->out_h, w = ly->out_w;
    size_t P = (size_t)h * w;
    for (int ky = 0; ky < k; ky++)
        for (int kx = 0; kx < k; kx++) {
            same_tap tp;
            same_tap_at(ly, ky, kx, &tp);
            for (int t = 0; t < g; t++)
                for (int c = 0; c < ly->in_c; c++) {
                    float *dst = cols + (size_t)((c * k + ky) * k + kx) * ld + (size_t)t * P;
                    const float *src = X + (size_t)t * ly->in + (size_t)c * P + ((ptrdiff_t)tp.first + tp.delta);
                    float *d = dst + tp.first;
                    for (size_t j = 0; j < tp.last - tp.first; j++)
                        d[j] = src[j];
                    same_zeros(dst, h, w, &tp);
                }
        }
}

/* Its adjoint for g samples: the positions outside the image are zeroed in
 * dcols (which the caller gives up), then each row is one shifted,
 * contiguous add into dX. */
WMI_SIMD_CLONES INLINE_LOOPS
static void col2im_same_add(const wm_layer *ly, float *dcols, int g, size_t ld, float *dX)
{
    int k = ly->k, h = ly->out_h, w = ly->out_w;
    size_t P = (size_t)h * w;
    for (int ky = 0; ky < k; ky++)
        for (int kx = 0; kx < k; kx++) {
            same_tap tp;
            same_tap_at(ly, ky, kx, &tp);
            for (int t = 0; t < g; t++)
                for (int c = 0; c < ly->in_c; c++) {
                    float *row = dcols + (size_t)((c * k + ky) * k + kx) * ld + (size_t)t * P;
                    same_zeros(row, h, w, &tp);
                    float *dst = dX + (size_t)t * ly->in + (size_t)c * P + ((ptrdiff_t)tp.first + tp.delta);
                    const float *src = row + tp.first;
                    for (size_t j = 0; j < tp.last - tp.first; j++)
                        dst[j] += src[j];
                }
        }
}

/* dx += col2im(dcols) for one sample (dcols' row stride ld): the adjoint of im2col. */
static void col2im_add(const wm_layer *ly, const float *dcols, size_t ld, float *dx)
{
    int k = ly->k, s = ly->stride, ow = ly->out_w;
    for (int c = 0; c < ly->in_c; c++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                const float *row = dcols + (size_t)((c * k + ky) * k + kx) * ld;
                float *plane = dx + (size_t)c * ly->in_h * ly->in_w;
                int lo, hi;
                valid_columns(ly, kx, &lo, &hi);
                for (int oy = 0; oy < ly->out_h; oy++) {
                    int iy = oy * s - ly->pad + ky;
                    if (iy < 0 || iy >= ly->in_h)
                        continue;
                    float *dst = plane + (size_t)iy * ly->in_w + ((ptrdiff_t)lo * s - ly->pad + kx);
                    const float *src = row + (size_t)oy * ow;
                    if (s == 1)                   /* contiguous: vectorises */
                        for (int ox = lo; ox < hi; ox++)
                            dst[ox - lo] += src[ox];
                    else
                        for (int ox = lo; ox < hi; ox++)
                            dst[(ptrdiff_t)(ox - lo) * s] += src[ox];
                }
            }
}

static void im2col_panel(const wm_layer *ly, const float *X, int g, float *cols)
{
    size_t P = positions(ly), ld = (size_t)g * P;
    if (same_size(ly)) {
        im2col_same(ly, X, g, cols, ld);
        return;
    }
    for (int t = 0; t < g; t++)
        im2col(ly, X + (size_t)t * ly->in, cols + (size_t)t * P, ld);
}

/* dX += col2im(dcols) for g samples (sample t's columns at t*P.., row stride
 * ld; dX sample after sample), dcols given up. */
static void col2im(const wm_layer *ly, float *dcols, int g, size_t ld, float *dX)
{
    if (same_size(ly)) {
        col2im_same_add(ly, dcols, g, ld, dX);
        return;
    }
    for (int t = 0; t < g; t++)
        col2im_add(ly, dcols + (size_t)t * positions(ly), ld, dX + (size_t)t * ly->in);
}

/* Sum of n floats in 32 interleaved partial sums, added pairwise at the
 * end (a fixed order, so the result is reproducible; unlike one running sum
 * it vectorises). Eight, one vector, were bound by the add's latency: 2
 * floats a cycle, 2.7% of the bench CNN's step for its bias gradients. */
WMI_SIMD_CLONES
static float sum_floats(const float *a, size_t n)
{
    enum { S = 32 };
    float acc[S];
    for (int t = 0; t < S; t++)
        acc[t] = 0.0f;
    size_t j = 0;
    for (; j + S <= n; j += S)
        for (int t = 0; t < S; t++)
            acc[t] += a[j + t];
    for (int w = S / 2; w >= 1; w /= 2)
        for (int t = 0; t < w; t++)
            acc[t] += acc[t + w];
    float sum = acc[0];
    for (; j < n; j++)
        sum += a[j];
    return sum;
}

/* Y_i (rows x P, sample after sample) = Z's columns of sample i + b: z is
 * rows x g*P (row stride ld), one panel of g samples; relu != 0 applies the
 * ReLU in the same pass (as wmi_act_forward does it, bit for bit). */
WMI_SIMD_CLONES
static void scatter_bias(const float *z, size_t ld, const float *b, int g, int rows, size_t P,
                         size_t out, int relu, float *Y)
{
    for (int t = 0; t < g; t++)
        for (int o = 0; o < rows; o++) {
            const float *zr = z + (size_t)o * ld + (size_t)t * P;
            float *yr = Y + (size_t)t * out + (size_t)o * P, bo = b[o];
            if (relu)
                for (size_t p = 0; p < P; p++) {
                    float v = zr[p] + bo;
                    yr[p] = v > 0.0f ? v : 0.0f;
                }
            else
                for (size_t p = 0; p < P; p++)
                    yr[p] = zr[p] + bo;
        }
}

/* y (rows x P) += b per row, in place, relu != 0 with the ReLU in the same
 * pass (the materialised path's GEMM writes a sample's outputs directly). */
WMI_SIMD_CLONES
static void add_bias(float *y, const float *b, int rows, size_t P, int relu)
{
    for (int o = 0; o < rows; o++) {
        float *yr = y + (size_t)o * P, bo = b[o];
        if (relu)
            for (size_t p = 0; p < P; p++) {
                float v = yr[p] + bo;
                yr[p] = v > 0.0f ? v : 0.0f;
            }
        else
            for (size_t p = 0; p < P; p++)
                yr[p] += bo;
    }
}

/* y_i = sum_k c_ik (Z_k,i + b_k) from the stacked product z (Kp*rows x g*P). */
WMI_SIMD_CLONES
static void combine_stacked(const float *z, size_t ld, const float *B, const float *C, int Kp, int g,
                            int rows, size_t P, size_t out, float *Y)
{
    for (int t = 0; t < g; t++) {
        const float *ci = C + (size_t)t * Kp;
        for (int o = 0; o < rows; o++) {
            float *yo = Y + (size_t)t * out + (size_t)o * P, bias = 0.0f;
            for (int k = 0; k < Kp; k++)
                bias += ci[k] * B[(size_t)k * rows + o];
            for (size_t p = 0; p < P; p++)
                yo[p] = bias;
            for (int k = 0; k < Kp; k++) {
                const float *zk = z + ((size_t)k * rows + o) * ld + (size_t)t * P;
                float c = ci[k];
                for (size_t p = 0; p < P; p++)
                    yo[p] += c * zk[p];
            }
        }
    }
}

/* D (Kp*rows x g*P, row stride ld) = [c_ik delta_i]_k for the g samples of a
 * panel (Kp = 1 with C NULL: the deltas themselves); dB[k*rows + o] += the
 * sum of D's row k*rows + o. With Y (the panel's outputs) the deltas are
 * dY times the ReLU's derivative, in the same pass (wmi_act_backward's
 * y > 0 ? d : 0, bit for bit); dY is then left as it was. */
WMI_SIMD_CLONES
static void gather_deltas(const float *dY, const float *Y, const float *C, int Kp, int g, int rows,
                          size_t P, size_t out, float *D, size_t ld, float *dB)
{
    for (int k = 0; k < Kp; k++)
        for (int o = 0; o < rows; o++) {
            float *dr = D + ((size_t)k * rows + o) * ld;
            for (int t = 0; t < g; t++) {
                const float *src = dY + (size_t)t * out + (size_t)o * P;
                const float *yr = Y ? Y + (size_t)t * out + (size_t)o * P : NULL;
                float c = C ? C[(size_t)t * Kp + k] : 1.0f, *dst = dr + (size_t)t * P;
                if (C && yr)
                    for (size_t p = 0; p < P; p++)
                        dst[p] = c * (yr[p] > 0.0f ? src[p] : 0.0f);
                else if (C)
                    for (size_t p = 0; p < P; p++)
                        dst[p] = c * src[p];
                else if (yr)
                    for (size_t p = 0; p < P; p++)
                        dst[p] = yr[p] > 0.0f ? src[p] : 0.0f;
                else
                    for (size_t p = 0; p < P; p++)
                        dst[p] = src[p];
            }
            dB[(size_t)k * rows + o] += sum_floats(dr, (size_t)g * P);
        }
}

/* dW (m x cols) += D cols^T over a panel's ld columns, in blocks of DW_COLS. */
static void weight_gradient(const wm_layer *ly, int m, const float *D, const float *cols, size_t ld,
                            float *dW)
{
    for (size_t c0 = 0; c0 < ld; c0 += DW_COLS) {
        int len = ld - c0 < DW_COLS ? (int)(ld - c0) : DW_COLS;
        wmi_gemm(0, 1, m, ly->cols, len, 1.0f, D + c0, (int)ld, cols + c0, (int)ld, 1.0f, dW, ly->cols);
    }
}

void wmi_conv_forward(const wm_layer *ly, const float *params, int Kp, int strategy,
                      const float *X, int n, const float *C, int shared, float *Y, float *z,
                      float *wmat, float *scratch)
{
    int rows = ly->rows, G = panel_samples(ly, n);
    size_t P = positions(ly), wn = (size_t)rows * ly->cols;
    const float *Q = params + ly->w_off, *B = params + ly->b_off;
    float *wi = scratch;
    int plain = Kp == 1 || shared;
    int mat = !plain && wmi_conv_use_materialised(ly, Kp, strategy);
    int relu = (plain || mat) && ly->act == WM_ACT_RELU;    /* fused into scatter_bias */
    if (Kp > 1 && shared)
        wmi_dense_materialise(ly, params, Kp, C, wmat, wmat + wn);
    const float *W = Kp == 1 ? Q : wmat, *b = Kp == 1 ? B : wmat + wn;
    for (int i0 = 0; i0 < n; i0 += G) {
        int g = n - i0 < G ? n - i0 : G;
        size_t ld = (size_t)g * P;
        float *cols = panel_columns(ly, scratch), *Yp = Y + (size_t)i0 * ly->out;
        const float *Cp = C + (size_t)i0 * Kp;
        im2col_panel(ly, X + (size_t)i0 * ly->in, g, cols);
        if (plain) {
            wmi_gemm(0, 0, rows, (int)ld, ly->cols, 1.0f, W, ly->cols, cols, (int)ld, 0.0f, z, (int)ld);
            scatter_bias(z, ld, b, g, rows, P, (size_t)ly->out, relu, Yp);
        } else if (mat) {
            for (int t = 0; t < g; t++) {
                float *yi = Yp + (size_t)t * ly->out, *bi = wi + wn;
                wmi_dense_materialise(ly, params, Kp, Cp + (size_t)t * Kp, wi, bi);
                wmi_gemm(0, 0, rows, (int)P, ly->cols, 1.0f, wi, ly->cols, cols + (size_t)t * P, (int)ld,
                         0.0f, yi, (int)P);
                add_bias(yi, bi, rows, P, relu);
            }
        } else {
            wmi_gemm(0, 0, Kp * rows, (int)ld, ly->cols, 1.0f, Q, ly->cols, cols, (int)ld, 0.0f, z, (int)ld);
            combine_stacked(z, ld, B, Cp, Kp, g, rows, P, (size_t)ly->out, Yp);
        }
        /* the panel's outputs are still in cache: a pass over the whole
         * batch's (1.6 MB for the bench net's first conv at batch 64) would
         * stream them from memory again (the plain and materialised
         * paths' ReLU is in scatter_bias) */
        if (!relu)
            wmi_act_forward(ly->act, Yp, (size_t)g * ly->out);
    }
}

void wmi_conv_backward(const wm_layer *ly, const float *params, int Kp, int strategy,
                       const float *X, int n, const float *C, int shared, const float *Y,
                       float *dY, float *grad, float *dX, float *z, const float *wmat,
                       float *scratch, int act_done)
{
    int rows = ly->rows, G = panel_samples(ly, n);
    size_t P = positions(ly), wn = (size_t)rows * ly->cols;
    const float *Q = params + ly->w_off;
    float *gW = grad + ly->w_off, *gB = grad + ly->b_off;
    float *wi = scratch, *dwi = wi + wn + rows, *dbi = dwi + wn;
    int plain = Kp == 1 || shared;
    int mat = !plain && wmi_conv_use_materialised(ly, Kp, strategy);
    const float *W = Kp == 1 ? Q : wmat;

    memset(gW, 0, sizeof(float) * wn * (plain ? 1 : (size_t)Kp));
    memset(gB, 0, sizeof(float) * (size_t)rows * (plain ? 1 : (size_t)Kp));
    if (dX)
        memset(dX, 0, sizeof(float) * (size_t)n * ly->in);
    for (int i0 = 0; i0 < n; i0 += G) {
        int g = n - i0 < G ? n - i0 : G;
        size_t ld = (size_t)g * P;
        float *cols = panel_columns(ly, scratch);
        im2col_panel(ly, X + (size_t)i0 * ly->in, g, cols);
        /* the activation's derivative a panel at a time, as forward applies
         * it; a ReLU's in gather_deltas, in the same pass as the copy */
        const float *Yp = Y + (size_t)i0 * ly->out;
        wm_activation act = act_done ? WM_ACT_NONE : ly->act;
        int fused = !mat && act == WM_ACT_RELU;
        if (!fused)
            wmi_act_backward(act, Yp, dY + (size_t)i0 * ly->out, (size_t)g * ly->out);
        const float *dYp = dY + (size_t)i0 * ly->out, *Cp = C + (size_t)i0 * Kp;
        if (mat) {
            for (int t = 0; t < g; t++) {
                const float *di = dYp + (size_t)t * ly->out, *ci = Cp + (size_t)t * Kp;
                float *ct = cols + (size_t)t * P;
                wmi_gemm(0, 1, rows, ly->cols, (int)P, 1.0f, di, (int)P, ct, (int)ld, 0.0f, dwi, ly->cols);
                for (int o = 0; o < rows; o++)
                    dbi[o] = sum_floats(di + (size_t)o * P, P);
                for (int k = 0; k < Kp; k++) {  /* spread dW_i by c(s_i) */
                    float c = ci[k], *gWk = gW + (size_t)k * wn, *gBk = gB + (size_t)k * rows;
                    for (size_t j = 0; j < wn; j++)
                        gWk[j] += c * dwi[j];
                    for (int o = 0; o < rows; o++)
                        gBk[o] += c * dbi[o];
                }
                if (dX) {                       /* dcols_i = W_i^T delta_i, over cols_i */
                    wmi_dense_materialise(ly, params, Kp, ci, wi, NULL);
                    wmi_gemm(1, 0, ly->cols, (int)P, rows, 1.0f, wi, ly->cols, di, (int)P, 0.0f, ct,
                             (int)ld);
                    col2im(ly, ct, 1, ld, dX + (size_t)(i0 + t) * ly->in);
                }
            }
            continue;
        }
        int m = plain ? rows : Kp * rows;       /* D: m x ld in z */
        gather_deltas(dYp, fused ? Yp : NULL, plain ? NULL : Cp, plain ? 1 : Kp, g, rows, P, (size_t)ly->out,
                      z, ld, gB);
        weight_gradient(ly, m, z, cols, ld, gW);
        if (dX) {                               /* dcols = W^T D, over the columns */
            wmi_gemm(1, 0, ly->cols, (int)ld, m, 1.0f, plain ? W : Q, ly->cols, z, (int)ld, 0.0f, cols,
                     (int)ld);
            col2im(ly, cols, g, ld, dX + (size_t)i0 * ly->in);
        }
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
                      dX, io->z, io->wmat, io->scratch, io->act_done);
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
    .batch_scratch_floats = wmi_conv_batch_scratch_floats,
    .relu_absorbable = 1,
    .grad_uses = conv_uses,
    .forward = conv_fwd,
    .backward = conv_bwd,
};
