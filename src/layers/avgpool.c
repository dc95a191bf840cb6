/* layers/avgpool.c -- the avgpool layer kind: the mean of each size x size
 * window (stride = size). */
#include <stdio.h>
#include <string.h>

#include "layers/pool.h"

static void avgpool_fwd(const wm_layer *ly, const wm_layer_io *io, const float *X, int n, float *Y)
{
    (void)io;
    int s = ly->k;
    float inv = 1.0f / (float)(s * s);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < ly->out_c; c++) {
            const float *plane = X + (size_t)i * ly->in + (size_t)c * ly->in_h * ly->in_w;
            float *out = Y + (size_t)i * ly->out + (size_t)c * ly->out_h * ly->out_w;
            for (int oy = 0; oy < ly->out_h; oy++)
                for (int ox = 0; ox < ly->out_w; ox++) {
                    const float *win = plane + (size_t)oy * s * ly->in_w + (size_t)ox * s;
                    float v = 0.0f;
                    for (int dy = 0; dy < s; dy++)
                        for (int dx = 0; dx < s; dx++)
                            v += win[dy * ly->in_w + dx];
                    out[oy * ly->out_w + ox] = v * inv;
                }
        }
}

static void avgpool_bwd(const wm_layer *ly, const wm_layer_io *io, const float *X, int n,
                        const float *Y, float *dY, float *grad, float *dX)
{
    (void)io, (void)X, (void)Y, (void)grad;
    if (!dX)
        return;
    int s = ly->k;
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
                    for (int dy = 0; dy < s; dy++)
                        for (int dx = 0; dx < s; dx++)
                            dX[base + dy * ly->in_w + dx] += g * inv;
                }
        }
}

wm_status wm_net_avgpool(wm_net *net, int size)
{
    return wmi_pool_add(net, size, WM_LAYER_AVGPOOL, __func__);
}

static wm_status avgpool_rebuild(wm_net *net, const uint32_t *v) { return wm_net_avgpool(net, (int)v[0]); }

static void avgpool_describe(const wm_layer *ly, char *buf, size_t len)
{
    snprintf(buf, len, "avgpool %dx%d", ly->k, ly->k);
}

const wm_layer_ops wmi_avgpool_ops = {
    .name = "avgpool",
    .n_fields = 1,
    .fields = wmi_pool_fields,
    .rebuild = avgpool_rebuild,
    .describe = avgpool_describe,
    .forward = avgpool_fwd,
    .backward = avgpool_bwd,
};
