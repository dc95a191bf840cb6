/* layers/pool.c -- what the pooling kinds share (layers/maxpool.c,
 * layers/avgpool.c): the adder's checks and output shape. */
#include <string.h>

#include "error.h"
#include "layers/pool.h"

wm_status wmi_pool_add(wm_net *net, int size, wm_layer_kind kind, const char *fn)
{
    wm_status st = wmi_net_check_add(net, fn);
    if (st != WM_OK || (st = wmi_net_check_spatial(net, fn)) != WM_OK)
        return st;
    if (size < 1 || size > net->shape_h || size > net->shape_w)
        return wmi_fail(WM_EINVAL, "%s: size = %d must be in 1..%d for a %dx%d input", fn, size,
                       net->shape_h < net->shape_w ? net->shape_h : net->shape_w, net->shape_h,
                       net->shape_w);
    if ((st = wmi_net_check_first_input(net, 1, fn)) != WM_OK)
        return st;
    wm_layer ly;
    memset(&ly, 0, sizeof ly);
    ly.kind = kind;
    ly.in_c = ly.out_c = wmi_net_in_channels(net);
    ly.in_h = net->shape_h, ly.in_w = net->shape_w;
    ly.out_h = net->shape_h / size, ly.out_w = net->shape_w / size;
    ly.k = ly.stride = size;
    ly.out = ly.out_c * ly.out_h * ly.out_w;
    ly.act = WM_ACT_NONE;
    return wmi_net_append(net, &ly, 1, fn);
}

void wmi_pool_fields(const wm_layer *ly, uint32_t *v) { v[0] = (uint32_t)ly->k; }
