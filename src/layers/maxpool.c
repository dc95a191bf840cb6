/* layers/maxpool.c -- the maxpool layer kind: the maximum of each size x size
 * window (stride = size); backward sends the gradient to the first maximum. */
#include <stdio.h>
#include <string.h>

#include "layers/pool.h"

/* 2x2 max pooling, the common case, without the generic window loops: the
 * same comparisons in the same order (the first maximum wins). */
static void maxpool2_forward(const wm_layer *ly, const float *plane, float *out)
{
    for (int oy = 0; oy < ly->out_h; oy++) {
        const float *r0 = plane + (size_t)2 * oy * ly->in_w, *r1 = r0 + ly->in_w;
        float *o = out + (size_t)oy * ly->out_w;
        for (int ox = 0; ox < ly->out_w; ox++) {
            float v = r0[2 * ox], u = r0[2 * ox + 1];
            v = u > v ? u : v;
            u = r1[2 * ox];
            v = u > v ? u : v;
            u = r1[2 * ox + 1];
            o[ox] = u > v ? u : v;
        }
    }
}

/* Its backward: the gradient goes to the first input equal to the maximum
 * (a NaN maximum: to the last input), and every input of the window is
 * written, the others with zero, so the rows need no clearing first. The
 * choice is made with masks, not branches: which input holds a window's
 * maximum is data, and mispredicted branches were 13.5% of the bench CNN's
 * step. (Not WMI_SIMD_CLONES: rows of 7-14 windows are shorter than an
 * AVX-512 vector, and its scalar remainder loop took twice as long as the
 * SSE2 build's 4-wide one.) "+ 0.0f" keeps the old result bit for bit (it was added to zero: a
 * -0 gradient lands as +0). */
static void maxpool2_backward(const wm_layer *ly, const float *plane, const float *y,
                              const float *dy, float *dplane)
{
    for (int oy = 0; oy < ly->out_h; oy++) {
        const float *a0 = plane + (size_t)2 * oy * ly->in_w, *a1 = a0 + ly->in_w;
        float *d0 = dplane + (size_t)2 * oy * ly->in_w, *d1 = d0 + ly->in_w;
        const float *yr = y + (size_t)oy * ly->out_w, *gr = dy + (size_t)oy * ly->out_w;
        for (int ox = 0; ox < ly->out_w; ox++) {
            float m = yr[ox], g = gr[ox];
            int e0 = a0[2 * ox] == m, e1 = a0[2 * ox + 1] == m, e2 = a1[2 * ox] == m;
            int t1 = (!e0) & e1, t2 = (!e0) & (!e1) & e2, t3 = (!e0) & (!e1) & (!e2);
            d0[2 * ox] = (e0 ? g : 0.0f) + 0.0f;
            d0[2 * ox + 1] = (t1 ? g : 0.0f) + 0.0f;
            d1[2 * ox] = (t2 ? g : 0.0f) + 0.0f;
            d1[2 * ox + 1] = (t3 ? g : 0.0f) + 0.0f;
        }
    }
}

static void maxpool_fwd(const wm_layer *ly, const wm_layer_io *io, const float *X, int n, float *Y)
{
    (void)io;
    int s = ly->k;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < ly->out_c; c++) {
            const float *plane = X + (size_t)i * ly->in + (size_t)c * ly->in_h * ly->in_w;
            float *out = Y + (size_t)i * ly->out + (size_t)c * ly->out_h * ly->out_w;
            if (s == 2) {
                maxpool2_forward(ly, plane, out);
                continue;
            }
            for (int oy = 0; oy < ly->out_h; oy++)
                for (int ox = 0; ox < ly->out_w; ox++) {
                    const float *win = plane + (size_t)oy * s * ly->in_w + (size_t)ox * s;
                    float v = win[0];
                    for (int dy = 0; dy < s; dy++)
                        for (int dx = 0; dx < s; dx++) {
                            float u = win[dy * ly->in_w + dx];
                            v = u > v ? u : v;
                        }
                    out[oy * ly->out_w + ox] = v;
                }
        }
}

static void maxpool_bwd(const wm_layer *ly, const wm_layer_io *io, const float *X, int n,
                        const float *Y, float *dY, float *grad, float *dX)
{
    (void)io, (void)grad;
    if (!dX)
        return;
    int s = ly->k;
    /* 2x2 windows write every input they cover: only an odd row or column
     * left over needs zeros */
    if (s != 2 || (ly->in_h | ly->in_w) & 1)
        memset(dX, 0, sizeof(float) * (size_t)n * ly->in);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < ly->out_c; c++) {
            size_t in_off = (size_t)i * ly->in + (size_t)c * ly->in_h * ly->in_w;
            size_t out_off = (size_t)i * ly->out + (size_t)c * ly->out_h * ly->out_w;
            if (s == 2) {
                maxpool2_backward(ly, X + in_off, Y + out_off, dY + out_off, dX + in_off);
                continue;
            }
            for (int oy = 0; oy < ly->out_h; oy++)
                for (int ox = 0; ox < ly->out_w; ox++) {
                    size_t base = in_off + (size_t)oy * s * ly->in_w + (size_t)ox * s;
                    float g = dY[out_off + oy * ly->out_w + ox];
                    float m = Y[out_off + oy * ly->out_w + ox];   /* to the first maximum */
                    int done = 0;
                    for (int dy = 0; dy < s && !done; dy++)
                        for (int dx = 0; dx < s && !done; dx++)
                            if (X[base + dy * ly->in_w + dx] == m) {
                                dX[base + dy * ly->in_w + dx] += g;
                                done = 1;
                            }
                }
        }
}

wm_status wm_net_maxpool(wm_net *net, int size)
{
    return wmi_pool_add(net, size, WM_LAYER_MAXPOOL, __func__);
}

static wm_status maxpool_rebuild(wm_net *net, const uint32_t *v) { return wm_net_maxpool(net, (int)v[0]); }

static void maxpool_describe(const wm_layer *ly, char *buf, size_t len)
{
    snprintf(buf, len, "maxpool %dx%d", ly->k, ly->k);
}

const wm_layer_ops wmi_maxpool_ops = {
    .name = "maxpool",
    .n_fields = 1,
    .fields = wmi_pool_fields,
    .rebuild = maxpool_rebuild,
    .describe = maxpool_describe,
    .forward = maxpool_fwd,
    .backward = maxpool_bwd,
};
