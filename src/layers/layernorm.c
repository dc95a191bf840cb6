/* layers/layernorm.c -- the layernorm kind: per sample, over all F features
 * of its input (all of channels x height x width on an image),
 *     y = (x - mean) / sqrt(var + 1e-5) * g(s) + b(s),
 * var the biased variance, as torch.nn.LayerNorm(F) with a weight and bias
 * that depend on s. g and b (F each) are the layer's W block (F x 1 per basis
 * point) and b block, on the manifold or a point, initialised to g = 1,
 * b = 0 at every context. */
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "layers/norm.h"

wm_status wm_net_layernorm(wm_net *net)
{
    wm_layer ly;
    wm_status st = wmi_norm_prepare(net, &ly, WM_LAYER_LAYERNORM, 0, __func__);
    if (st != WM_OK)
        return st;
    ly.rows = ly.out;                          /* one gain and bias per feature */
    ly.groups = 1;
    ly.cols = 1;
    return wmi_net_append(net, &ly, ly.out_c > 0, __func__);
}

static void ln_fields(const wm_layer *ly, uint32_t *v) { (void)ly, (void)v; }
static wm_status ln_rebuild(wm_net *net, const uint32_t *v) { (void)v; return wm_net_layernorm(net); }
static void ln_describe(const wm_layer *ly, char *buf, size_t len)
{
    (void)ly;
    snprintf(buf, len, "layernorm");
}

const wm_layer_ops wmi_layernorm_ops = {
    .name = "layernorm",
    .has_params = 1,
    .fields = ln_fields,
    .rebuild = ln_rebuild,
    .describe = ln_describe,
    .init = wmi_norm_init,
    .scratch_floats = wmi_norm_scratch_floats,
    .grad_uses = wmi_norm_grad_uses,
    .forward = wmi_norm_forward,
    .backward = wmi_norm_backward,
};
