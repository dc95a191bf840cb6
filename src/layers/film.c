/* layers/film.c -- the FiLM kind: per feature (per channel on an image)
 *     y = gamma(s) x + beta(s),
 * gamma and beta on the manifold (or a point), initialised to gamma = 1,
 * beta = 0 at every context. FiLM as the baseline (Perez et al. 2018) is
 * point layers (wm_net_set_layer_manifold(net, l, 0)) with a FiLM layer on
 * the manifold after each. The arithmetic is layers/norm.c's (no groups). */
#include <stdio.h>

#include "error.h"
#include "layers/norm.h"

wm_status wm_net_film(wm_net *net)
{
    wm_layer ly;
    wm_status st = wmi_norm_prepare(net, &ly, WM_LAYER_FILM, 0, __func__);
    if (st != WM_OK)
        return st;
    ly.groups = 0;                             /* no normalisation */
    ly.rows = ly.out_c > 0 ? ly.out_c : ly.out;
    ly.cols = 1;
    return wmi_net_append(net, &ly, ly.out_c > 0, __func__);
}

static void film_fields(const wm_layer *ly, uint32_t *v) { (void)ly, (void)v; }
static wm_status film_rebuild(wm_net *net, const uint32_t *v) { (void)v; return wm_net_film(net); }
static void film_describe(const wm_layer *ly, char *buf, size_t len)
{
    snprintf(buf, len, "film (per %s)", ly->out_c > 0 ? "channel" : "feature");
}

const wm_layer_ops wmi_film_ops = {
    .name = "film",
    .has_params = 1,
    .fields = film_fields,
    .rebuild = film_rebuild,
    .describe = film_describe,
    .init = wmi_norm_init,
    .scratch_floats = wmi_norm_scratch_floats,
    .grad_uses = wmi_norm_grad_uses,
    .forward = wmi_norm_forward,
    .backward = wmi_norm_backward,
};
