/* layers/dropout.c -- the dropout kind: in training (wm_step, wm_grad) each
 * element is zeroed with probability p and the rest scaled by 1/(1 - p)
 * (inverted dropout); in inference (wm_infer, wm_evaluate) the identity.
 * The mask is a function of (the init seed, the optimizer's step count, the
 * layer, the sample's index in the batch, the element): a counter-based hash,
 * so nothing is stored and backward recomputes it. p = 0 copies. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "layers/norm.h"

wm_status wm_net_dropout(wm_net *net, float p)
{
    wm_layer ly;
    wm_status st = wmi_norm_prepare(net, &ly, WM_LAYER_DROPOUT, 0, __func__);
    if (st != WM_OK)
        return st;
    if (!(p >= 0.0f && p < 1.0f))
        return wmi_fail(WM_EINVAL, "wm_net_dropout: p = %g must be in [0, 1)", p);
    ly.p = p;
    return wmi_net_append(net, &ly, ly.out_c > 0, __func__);
}

/* splitmix64's finaliser: a well-mixed 64-bit hash of a counter. */
static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Whether element j of sample i is kept: u in [0,1) from 24 hash bits, kept
 * when u >= p. */
static int kept(const wm_layer *ly, const wm_layer_io *io, uint64_t i, uint64_t j)
{
    uint64_t h = mix(io->seed ^ mix(io->step * 0x9e3779b97f4a7c15ULL + (uint64_t)ly->index));
    h = mix(h ^ (i << 32 ^ j));
    return (float)(h >> 40) * (1.0f / 16777216.0f) >= ly->p;
}

static void drop_fwd(const wm_layer *ly, const wm_layer_io *io, const float *X, int n, float *Y)
{
    size_t F = (size_t)ly->out;
    if (!io->training || ly->p == 0.0f) {
        memcpy(Y, X, sizeof(float) * F * (size_t)n);
        return;
    }
    float scale = 1.0f / (1.0f - ly->p);
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < F; j++)
            Y[(size_t)i * F + j] = kept(ly, io, (uint64_t)i, j) ? X[(size_t)i * F + j] * scale : 0.0f;
}

static void drop_bwd(const wm_layer *ly, const wm_layer_io *io, const float *X, int n,
                     const float *Y, float *dY, float *grad, float *dX)
{
    (void)X, (void)Y, (void)grad;
    if (!dX)
        return;
    size_t F = (size_t)ly->out;
    if (ly->p == 0.0f) {
        memcpy(dX, dY, sizeof(float) * F * (size_t)n);
        return;
    }
    float scale = 1.0f / (1.0f - ly->p);
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < F; j++)
            dX[(size_t)i * F + j] = kept(ly, io, (uint64_t)i, j) ? dY[(size_t)i * F + j] * scale : 0.0f;
}

static void drop_fields(const wm_layer *ly, uint32_t *v)
{
    memcpy(&v[0], &ly->p, 4);                  /* the float's bits */
}

static wm_status drop_rebuild(wm_net *net, const uint32_t *v)
{
    float p;
    memcpy(&p, &v[0], 4);
    return wm_net_dropout(net, p);             /* NaN, negative, >= 1: WM_EINVAL */
}

static void drop_describe(const wm_layer *ly, char *buf, size_t len)
{
    snprintf(buf, len, "dropout p = %g", ly->p);
}

const wm_layer_ops wmi_dropout_ops = {
    .name = "dropout",
    .direct_update = 1,                        /* nothing to update */
    .n_fields = 1,
    .float_fields = 1u << 0,
    .fields = drop_fields,
    .rebuild = drop_rebuild,
    .describe = drop_describe,
    .forward = drop_fwd,
    .backward = drop_bwd,
};
