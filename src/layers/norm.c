/* layers/norm.c -- the arithmetic layernorm, groupnorm and FiLM share (see
 * norm.h). Per sample i the gain and bias are g_i = sum_k C_ik Q_k and
 * b_i = sum_k C_ik B_k (rows floats each), formed once for a batch that
 * shares its context. Backward, with xhat the normalised input and
 * rstd = 1 / sqrt(var + eps) of its group,
 *     dxhat = dy g,   dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat))
 * (FiLM: dx = dy g), and the parameter gradient of basis point k is
 * sum_i C_ik (sum over the row's values of dy xhat, resp. dy). */
#include <math.h>
#include <string.h>

#include "error.h"
#include "layers/norm.h"

#define NORM_EPS 1e-5

wm_status wmi_norm_prepare(wm_net *net, wm_layer *ly, wm_layer_kind kind, int need_image,
                           const char *fn)
{
    wm_status st = wmi_net_check_add(net, fn);
    if (st != WM_OK)
        return st;
    int F, c, h, w;
    if ((st = wmi_net_current(net, &F, &c, &h, &w, fn)) != WM_OK)
        return st;
    if (need_image && c == 0)
        return wmi_fail(WM_EINVAL, "%s: needs an image (call wm_net_input_shape; not after a dense layer)", fn);
    if ((st = wmi_net_check_first_input(net, c > 0, fn)) != WM_OK)
        return st;
    memset(ly, 0, sizeof *ly);
    ly->kind = kind;
    ly->in_c = ly->out_c = c, ly->in_h = ly->out_h = h, ly->in_w = ly->out_w = w;
    ly->out = F;
    ly->act = WM_ACT_NONE;
    return WM_OK;
}

void wmi_norm_init(const wm_layer *ly, float *w0, float *b0, wmi_rng *rng)
{
    (void)b0, (void)rng;
    for (int j = 0; j < ly->rows; j++)
        w0[j] = 1.0f;
}

size_t wmi_norm_scratch_floats(const wm_layer *ly) { return 4 * (size_t)ly->rows + 16; }

/* |dg| <= (values per gain) max|dy| max|xhat|, |xhat| <= sqrt(group size);
 * FiLM: (values per gain) max|dy| max|x|. The pass multiplies by max|x| >= 1. */
double wmi_norm_grad_uses(const wm_layer *ly)
{
    double per = (double)ly->out / ly->rows;
    return ly->groups > 0 ? per * sqrt((double)ly->out / ly->groups) : per;
}

/* g and b of sample i: pointers into the parameters (a point: Kp = 1) or
 * combined into gb (2 x rows floats). */
static void gain_bias(const wm_layer *ly, const wm_layer_io *io, int i, float *gb,
                      const float **g, const float **b)
{
    const float *Q = io->params + ly->w_off, *B = io->params + ly->b_off;
    int rows = ly->rows, Kp = io->Kp;
    if (Kp == 1) {
        *g = Q, *b = B;                        /* c_hat = 1 */
        return;
    }
    const float *c = io->C + (size_t)i * Kp;
    float *gg = gb, *bb = gb + rows;
    for (int r = 0; r < rows; r++)
        gg[r] = c[0] * Q[r], bb[r] = c[0] * B[r];
    for (int k = 1; k < Kp; k++)
        for (int r = 0; r < rows; r++)
            gg[r] += c[k] * Q[(size_t)k * rows + r], bb[r] += c[k] * B[(size_t)k * rows + r];
    *g = gg, *b = bb;
}

/* mean and 1/sqrt(var + eps) of len values (accumulated in double). */
static void stats(const float *x, size_t len, float *mean, float *rstd)
{
    double s = 0, ss = 0;
    for (size_t j = 0; j < len; j++)
        s += x[j];
    double m = s / (double)len;
    for (size_t j = 0; j < len; j++)
        ss += ((double)x[j] - m) * ((double)x[j] - m);
    *mean = (float)m;
    *rstd = (float)(1.0 / sqrt(ss / (double)len + NORM_EPS));
}

void wmi_norm_forward(const wm_layer *ly, const wm_layer_io *io, const float *X, int n, float *Y)
{
    size_t F = (size_t)ly->out, per = F / (size_t)ly->rows;
    int G = ly->groups;
    size_t glen = G > 0 ? F / (size_t)G : F;
    const float *g = NULL, *b = NULL;
    for (int i = 0; i < n; i++) {
        if (i == 0 || !io->shared)
            gain_bias(ly, io, i, io->scratch, &g, &b);
        const float *x = X + (size_t)i * F;
        float *y = Y + (size_t)i * F;
        if (G == 0) {
            for (size_t j = 0; j < F; j++)
                y[j] = g[j / per] * x[j] + b[j / per];
            continue;
        }
        for (size_t q0 = 0; q0 < F; q0 += glen) {
            float mean, rstd;
            stats(x + q0, glen, &mean, &rstd);
            for (size_t j = q0; j < q0 + glen; j++)
                y[j] = (x[j] - mean) * rstd * g[j / per] + b[j / per];
        }
    }
}

void wmi_norm_backward(const wm_layer *ly, const wm_layer_io *io, const float *X, int n,
                       const float *Y, float *dY, float *grad, float *dX)
{
    (void)Y;
    size_t F = (size_t)ly->out, rows = (size_t)ly->rows, per = F / rows;
    int G = ly->groups, Kp = io->Kp;
    size_t glen = G > 0 ? F / (size_t)G : F;
    float *dg = io->scratch + 2 * rows, *db = dg + rows;
    float *gW = grad ? grad + ly->w_off : NULL, *gB = grad ? grad + ly->b_off : NULL;
    if (grad) {
        memset(gW, 0, sizeof(float) * (size_t)Kp * rows);
        memset(gB, 0, sizeof(float) * (size_t)Kp * rows);
    }
    const float *g = NULL, *b = NULL;
    for (int i = 0; i < n; i++) {
        if (i == 0 || !io->shared)
            gain_bias(ly, io, i, io->scratch, &g, &b);
        const float *x = X + (size_t)i * F, *dy = dY + (size_t)i * F;
        float *dx = dX ? dX + (size_t)i * F : NULL;
        memset(dg, 0, sizeof(float) * rows);
        memset(db, 0, sizeof(float) * rows);
        if (G == 0) {
            for (size_t j = 0; j < F; j++) {
                dg[j / per] += dy[j] * x[j];
                db[j / per] += dy[j];
                if (dx)
                    dx[j] = dy[j] * g[j / per];
            }
        } else {
            for (size_t q0 = 0; q0 < F; q0 += glen) {
                float mean, rstd;
                stats(x + q0, glen, &mean, &rstd);
                double s1 = 0, s2 = 0;
                for (size_t j = q0; j < q0 + glen; j++) {
                    float xh = (x[j] - mean) * rstd, d = dy[j] * g[j / per];
                    dg[j / per] += dy[j] * xh;
                    db[j / per] += dy[j];
                    s1 += d;
                    s2 += (double)d * xh;
                }
                float m1 = (float)(s1 / (double)glen), m2 = (float)(s2 / (double)glen);
                for (size_t j = q0; dx && j < q0 + glen; j++) {
                    float xh = (x[j] - mean) * rstd;
                    dx[j] = rstd * (dy[j] * g[j / per] - m1 - xh * m2);
                }
            }
        }
        if (grad) {
            const float *c = io->C + (size_t)i * Kp;
            for (int k = 0; k < Kp; k++) {
                float ck = Kp == 1 ? 1.0f : c[k];
                for (size_t r = 0; r < rows; r++) {
                    gW[(size_t)k * rows + r] += ck * dg[r];
                    gB[(size_t)k * rows + r] += ck * db[r];
                }
            }
        }
    }
}
