/* layers/groupnorm.c -- the groupnorm kind: images only; the C channels in G
 * contiguous groups (G divides C), each group normalised over its
 * (C/G) x H x W values per sample, eps 1e-5, biased variance; a per-channel
 * gain and bias on the manifold (or a point), initialised to 1 and 0. As
 * torch.nn.GroupNorm(G, C). The arithmetic is layers/norm.c's. */
#include <stdio.h>

#include "error.h"
#include "layers/norm.h"

wm_status wm_net_groupnorm(wm_net *net, int groups)
{
    wm_layer ly;
    wm_status st = wmi_norm_prepare(net, &ly, WM_LAYER_GROUPNORM, 1, __func__);
    if (st != WM_OK)
        return st;
    if (groups < 1 || groups > ly.out_c || ly.out_c % groups != 0)
        return wmi_fail(WM_EINVAL, "wm_net_groupnorm: groups = %d must divide the %d channels", groups,
                       ly.out_c);
    ly.groups = groups;
    ly.rows = ly.out_c;                        /* a gain and a bias per channel */
    ly.cols = 1;
    return wmi_net_append(net, &ly, 1, __func__);
}

static void gn_fields(const wm_layer *ly, uint32_t *v) { v[0] = (uint32_t)ly->groups; }
static wm_status gn_rebuild(wm_net *net, const uint32_t *v) { return wm_net_groupnorm(net, (int)v[0]); }
static void gn_describe(const wm_layer *ly, char *buf, size_t len)
{
    snprintf(buf, len, "groupnorm %d groups", ly->groups);
}

const wm_layer_ops wmi_groupnorm_ops = {
    .name = "groupnorm",
    .has_params = 1,
    .n_fields = 1,
    .fields = gn_fields,
    .rebuild = gn_rebuild,
    .describe = gn_describe,
    .init = wmi_norm_init,
    .scratch_floats = wmi_norm_scratch_floats,
    .grad_uses = wmi_norm_grad_uses,
    .forward = wmi_norm_forward,
    .backward = wmi_norm_backward,
};
