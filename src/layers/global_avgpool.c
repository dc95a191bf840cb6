/* layers/global_avgpool.c -- the global_avgpool kind: images only; channel
 * c's output is the mean of its H x W values; the output is an image of
 * C x 1 x 1 (a dense layer after it sees C features). No parameters. */
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "layers/norm.h"

wm_status wm_net_global_avgpool(wm_net *net)
{
    wm_layer ly;
    wm_status st = wmi_norm_prepare(net, &ly, WM_LAYER_GLOBAL_AVGPOOL, 1, __func__);
    if (st != WM_OK)
        return st;
    ly.out_h = ly.out_w = 1;
    ly.out = ly.out_c;
    return wmi_net_append(net, &ly, 1, __func__);
}

static void gap_fwd(const wm_layer *ly, const wm_layer_io *io, const float *X, int n, float *Y)
{
    (void)io;
    size_t hw = (size_t)ly->in_h * ly->in_w, in = (size_t)ly->in_c * hw;
    float inv = 1.0f / (float)hw;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < ly->out_c; c++) {
            const float *plane = X + (size_t)i * in + (size_t)c * hw;
            float v = 0.0f;
            for (size_t j = 0; j < hw; j++)
                v += plane[j];
            Y[(size_t)i * ly->out + c] = v * inv;
        }
}

static void gap_bwd(const wm_layer *ly, const wm_layer_io *io, const float *X, int n,
                    const float *Y, float *dY, float *grad, float *dX)
{
    (void)io, (void)X, (void)Y, (void)grad;
    if (!dX)
        return;
    size_t hw = (size_t)ly->in_h * ly->in_w, in = (size_t)ly->in_c * hw;
    float inv = 1.0f / (float)hw;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < ly->out_c; c++) {
            float g = dY[(size_t)i * ly->out + c] * inv;
            float *plane = dX + (size_t)i * in + (size_t)c * hw;
            for (size_t j = 0; j < hw; j++)
                plane[j] = g;
        }
}

static void gap_fields(const wm_layer *ly, uint32_t *v) { (void)ly, (void)v; }
static wm_status gap_rebuild(wm_net *net, const uint32_t *v) { (void)v; return wm_net_global_avgpool(net); }
static void gap_describe(const wm_layer *ly, char *buf, size_t len)
{
    snprintf(buf, len, "global avgpool %dx%d", ly->in_h, ly->in_w);
}

const wm_layer_ops wmi_global_avgpool_ops = {
    .name = "global avgpool",
    .direct_update = 1,                        /* nothing to update */
    .fields = gap_fields,
    .rebuild = gap_rebuild,
    .describe = gap_describe,
    .forward = gap_fwd,
    .backward = gap_bwd,
};
