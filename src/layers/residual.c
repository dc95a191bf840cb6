/* layers/residual.c -- the residual kind: out = act(current output + output
 * of an earlier layer `from`), elementwise; from = -1 is the net's input.
 * No parameters. The pass hands the second input in io->X2 (row stride
 * io->x2_stride) and its gradient slot in io->dX2 (added to when
 * io->dX2_add, else written). */
#include <stdio.h>
#include <string.h>

#include "activation.h"
#include "error.h"
#include "layers/layer.h"

wm_status wm_net_residual(wm_net *net, int from_layer, wm_activation act)
{
    wm_status st = wmi_net_check_add(net, __func__);
    if (st != WM_OK)
        return st;
    if (net->n_layers == 0)
        return wmi_fail(WM_EINVAL, "wm_net_residual: add a layer first: the residual adds the current "
                                  "output to an earlier one");
    if (from_layer < -1 || from_layer >= net->n_layers)
        return wmi_fail(WM_EINVAL, "wm_net_residual: from_layer = %d must be -1 (the input) or a layer "
                                  "0..%d", from_layer, net->n_layers - 1);
    if (!wmi_act_valid((int)act))
        return wmi_fail(WM_EINVAL, "wm_net_residual: activation %d is not a wm_activation", (int)act);
    const wm_layer *cur = &net->layers[net->n_layers - 1];
    int fc, fh, fw, fn;                       /* the source's shape */
    if (from_layer < 0)
        fc = net->input_c, fh = net->input_h, fw = net->input_w, fn = net->n_inputs;
    else {
        const wm_layer *src = &net->layers[from_layer];
        fc = src->out_c, fh = src->out_h, fw = src->out_w, fn = src->out;
    }
    if (fn != cur->out || (cur->out_c > 0 && (fc != cur->out_c || fh != cur->out_h || fw != cur->out_w)))
        return wmi_fail(WM_EINVAL, "wm_net_residual: the current output (%d x %d x %d, %d values) and %s "
                                  "(%d x %d x %d, %d values) differ in shape", cur->out_c, cur->out_h,
                       cur->out_w, cur->out, from_layer < 0 ? "the input" : "that layer's output", fc, fh,
                       fw, fn);
    wm_layer ly;
    memset(&ly, 0, sizeof ly);
    ly.kind = WM_LAYER_RESIDUAL;
    ly.has_in2 = 1, ly.in2 = from_layer;
    ly.in_c = ly.out_c = cur->out_c, ly.in_h = ly.out_h = cur->out_h, ly.in_w = ly.out_w = cur->out_w;
    ly.out = cur->out;
    ly.act = act;
    return wmi_net_append(net, &ly, cur->out_c > 0, __func__);
}

static void residual_fields(const wm_layer *ly, uint32_t *v)
{
    v[0] = (uint32_t)(ly->in2 + 1);           /* 0: the net's input */
    v[1] = (uint32_t)ly->act;
}

static wm_status residual_rebuild(wm_net *net, const uint32_t *v)
{
    return wm_net_residual(net, (int)v[0] - 1, (wm_activation)v[1]);
}

static void residual_describe(const wm_layer *ly, char *buf, size_t len)
{
    if (ly->in2 < 0)
        snprintf(buf, len, "residual + input");
    else
        snprintf(buf, len, "residual + layer %d", ly->in2);
}

static void residual_fwd(const wm_layer *ly, const wm_layer_io *io, const float *X, int n, float *Y)
{
    size_t F = (size_t)ly->out;
    for (int i = 0; i < n; i++) {
        const float *a = X + (size_t)i * F, *b = io->X2 + (size_t)i * io->x2_stride;
        float *y = Y + (size_t)i * F;
        for (size_t j = 0; j < F; j++)
            y[j] = a[j] + b[j];
    }
    wmi_act_forward(ly->act, Y, (size_t)n * F);
}

static void residual_bwd(const wm_layer *ly, const wm_layer_io *io, const float *X, int n,
                         const float *Y, float *dY, float *grad, float *dX)
{
    (void)X, (void)grad;
    size_t len = (size_t)n * ly->out;
    wmi_act_backward(ly->act, Y, dY, len);
    if (dX)
        memcpy(dX, dY, sizeof(float) * len);
    if (io->dX2 && io->dX2_add)
        for (size_t j = 0; j < len; j++)
            io->dX2[j] += dY[j];
    else if (io->dX2)
        memcpy(io->dX2, dY, sizeof(float) * len);
}

const wm_layer_ops wmi_residual_ops = {
    .name = "residual",
    .direct_update = 1,                       /* nothing to update: the direct path skips it */
    .n_fields = 2,
    .fields = residual_fields,
    .rebuild = residual_rebuild,
    .describe = residual_describe,
    .forward = residual_fwd,
    .backward = residual_bwd,
};
