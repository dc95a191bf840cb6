/* optim.c -- SD (the paper's update), momentum and Adam, all in the metric's
 * orthonormal coordinates Q = L^T P.
 *
 * Why Q: the volume-constrained steepest descent step is
 *     dP = -lr (G^-1 (x) I) dL/dP,
 * and with P = L^-T Q, dL/dQ = L^-1 dL/dP, so plain SD on Q gives
 *     dQ = -lr L^-1 dL/dP  =>  dP = L^-T dQ = -lr G^-1 dL/dP.
 * The manifold's volumetric movement  integral |dW(s)|^2 ds = |dQ|^2, which
 * makes the `volume` budget a plain rescaling of the final dQ to norm
 * sqrt(volume), for every optimizer kind.
 *
 * An update is two streaming passes: the first computes the step's norm and
 * proves every new value finite without writing; the second writes. So a
 * diverging step returns WM_ENUMERIC and leaves the net exactly as it was. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "loss.h"
#include "optim.h"

wm_opt_config wm_opt_default(wm_opt_kind kind)
{
    wm_opt_config c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.lr = 0.01f;
    c.momentum = 0.9f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    if (kind == WM_OPT_ADAM)
        c.lr = 1e-3f;
    if (kind != WM_OPT_MOMENTUM)
        c.momentum = 0.0f;
    return c;
}

static wm_status check_config(const wm_opt_config *c)
{
    if (c->kind != WM_OPT_SD && c->kind != WM_OPT_MOMENTUM && c->kind != WM_OPT_ADAM)
        return wm_fail(WM_EINVAL, "optimizer kind %d is not a wm_opt_kind", (int)c->kind);
    if (!isfinite(c->volume) || c->volume < 0)
        return wm_fail(WM_EINVAL, "volume = %g must be finite and >= 0", c->volume);
    if (c->volume == 0 && !(isfinite(c->lr) && c->lr > 0))
        return wm_fail(WM_EINVAL, "lr = %g must be finite and > 0 (or set a volume budget)", c->lr);
    if (!isfinite(c->weight_decay) || c->weight_decay < 0)
        return wm_fail(WM_EINVAL, "weight_decay = %g must be finite and >= 0", c->weight_decay);
    if (c->kind == WM_OPT_MOMENTUM && !(c->momentum >= 0 && c->momentum <= 1))
        return wm_fail(WM_EINVAL, "momentum = %g must be in [0,1]", c->momentum);
    if (c->kind == WM_OPT_ADAM) {
        if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1))
            return wm_fail(WM_EINVAL, "Adam betas (%g, %g) must be in [0,1)", c->beta1, c->beta2);
        if (!(isfinite(c->eps) && c->eps > 0))
            return wm_fail(WM_EINVAL, "Adam eps = %g must be finite and > 0", c->eps);
    }
    return WM_OK;
}

wm_status wm_optimizer_create(wm_optimizer **out, wm_net *net, const wm_opt_config *cfg)
{
    if (!out || !net || !cfg)
        return wm_fail(WM_EINVAL, "wm_optimizer_create: %s is NULL", !out ? "out" : !net ? "net" : "cfg");
    if (!net->initialised)
        return wm_fail(WM_ESTATE, "wm_optimizer_create: the net is not initialised (call wm_net_init)");
    wm_status st = check_config(cfg);
    if (st != WM_OK)
        return wm_fail_prefix(st, "wm_optimizer_create: ");
    wm_optimizer *o = calloc(1, sizeof *o);
    size_t n = net->n_params;
    if (o) {
        o->grad = calloc(n, sizeof(float));
        if (cfg->kind != WM_OPT_SD)
            o->m1 = calloc(n, sizeof(float));
        if (cfg->kind == WM_OPT_ADAM)
            o->m2 = calloc(n, sizeof(float));
    }
    if (!o || !o->grad || (cfg->kind != WM_OPT_SD && !o->m1) || (cfg->kind == WM_OPT_ADAM && !o->m2)) {
        wm_optimizer_free(o);
        return wm_fail(WM_ENOMEM, "wm_optimizer_create: out of memory for %zu parameters", n);
    }
    o->net = net;
    o->cfg = *cfg;
    *out = o;
    return WM_OK;
}

void wm_optimizer_free(wm_optimizer *o)
{
    if (!o)
        return;
    free(o->grad), free(o->m1), free(o->m2), free(o->ws);
    free(o);
}

float *wm_grad_buffer(wm_optimizer *o, size_t *len)
{
    if (len)
        *len = o ? o->net->n_params : 0;
    return o ? o->grad : NULL;
}

uint64_t wm_optimizer_steps(const wm_optimizer *o) { return o ? o->t : 0; }

/* Grow the training workspace to n rows (never shrinks: steady state is free). */
static wm_status reserve(wm_optimizer *o, int n)
{
    if (n <= o->ws_rows)
        return WM_OK;
    const wm_net *net = o->net;
    size_t bytes = wmi_pass_bytes(net, n, 1) + sizeof(float) * ((size_t)n * net->max_out + 16);
    bytes = (bytes + 63) / 64 * 64;
    void *mem = aligned_alloc(64, bytes);
    if (!mem)
        return wm_fail(WM_ENOMEM, "out of memory for a %zu-byte training workspace (batch of %d)",
                       bytes, n);
    free(o->ws);
    o->ws = mem;
    o->ws_bytes = bytes;
    o->ws_rows = n;
    return WM_OK;
}

wm_status wm_grad(wm_optimizer *o, const wm_batch *b, float *loss)
{
    if (!o)
        return wm_fail(WM_EINVAL, "wm_grad: optimizer is NULL");
    wm_net *net = o->net;
    wm_status st = wmi_check_batch(net, b, __func__);
    if (st != WM_OK || (st = reserve(o, b->n)) != WM_OK)
        return st;
    wm_pass p;
    int n = b->n, m = net->layers[net->n_layers - 1].out;
    wmi_pass_layout(net, n, 1, o->ws, &p);
    float *dy = (float *)((char *)o->ws + wmi_pass_bytes(net, n, 1));
    if ((st = wmi_pass_encode(net, &p, b->x, b->s, n, 0)) != WM_OK)
        return st;
    const float *y = wmi_pass_forward(net, &p, n);
    double total = wmi_loss(net->loss, y, n, m, b->labels, b->targets, dy, 1.0f / n, NULL);
    double mean = total / n;
    if (!isfinite(mean) || !isfinite((float)mean))
        return wm_fail(WM_ENUMERIC, "the batch loss is not finite (%g): the parameters or the "
                                    "learning rate have diverged", mean);
    o->has_grad = 0;                 /* the buffer is being overwritten */
    wmi_pass_backward(net, &p, n, dy, o->grad);
    o->has_grad = 1;
    if (loss)
        *loss = (float)mean;
    return WM_OK;
}

/* The unscaled step direction u_j (dQ_j = -scale * u_j) and the optimizer
 * state it would leave, for parameter j. */
typedef struct {
    float mu, b1, b2, eps, wd, bc1, bc2;
    wm_opt_kind kind;
} step_consts;

static inline float direction(const step_consts *k, float q, float g, float *m1, float *m2)
{
    switch (k->kind) {
    case WM_OPT_SD:
        return g + k->wd * q;
    case WM_OPT_MOMENTUM:
        *m1 = k->mu * *m1 + g + k->wd * q;
        return *m1;
    case WM_OPT_ADAM:
        *m1 = k->b1 * *m1 + (1.0f - k->b1) * g;
        *m2 = k->b2 * *m2 + (1.0f - k->b2) * g * g;
        return (*m1 / k->bc1) / (sqrtf(*m2 / k->bc2) + k->eps) + k->wd * q;
    }
    return 0.0f;
}

wm_status wm_apply(wm_optimizer *o)
{
    if (!o)
        return wm_fail(WM_EINVAL, "wm_apply: optimizer is NULL");
    if (!o->has_grad)
        return wm_fail(WM_ESTATE, "wm_apply: no gradient yet (call wm_grad first)");
    const wm_opt_config *c = &o->cfg;
    float *q = o->net->params, *g = o->grad, *m1 = o->m1, *m2 = o->m2;
    size_t n = o->net->n_params;
    step_consts k = {c->momentum, c->beta1, c->beta2, c->eps, c->weight_decay, 1.0f, 1.0f, c->kind};
    if (c->kind == WM_OPT_ADAM) {
        k.bc1 = (float)(1.0 - pow(c->beta1, (double)(o->t + 1)));
        k.bc2 = (float)(1.0 - pow(c->beta2, (double)(o->t + 1)));
    }
    /* pass 1: norm and bounds, nothing written */
    double sumsq = 0.0;
    float max_u = 0.0f, max_q = 0.0f;
    for (size_t j = 0; j < n; j++) {
        float a = m1 ? m1[j] : 0.0f, b = m2 ? m2[j] : 0.0f;
        float u = direction(&k, q[j], g[j], &a, &b);
        if (!isfinite(u) || !isfinite(a) || !isfinite(b))
            return wm_fail(WM_ENUMERIC, "the update is not finite at parameter %zu (gradient %g): "
                                        "nothing was changed", j, g[j]);
        sumsq += (double)u * u;
        max_u = fmaxf(max_u, fabsf(u));
        max_q = fmaxf(max_q, fabsf(q[j]));
    }
    double scale = c->lr;
    if (c->volume > 0)
        scale = sumsq > 0 ? sqrt((double)c->volume / sumsq) : 0.0;
    if (!((double)max_q + scale * max_u < 0.5 * FLT_MAX))
        return wm_fail(WM_ENUMERIC, "the update would overflow (step %g x %g): nothing was changed",
                       scale, max_u);
    /* pass 2: write */
    float fs = (float)scale;
    for (size_t j = 0; j < n; j++) {
        float a = m1 ? m1[j] : 0.0f, b = m2 ? m2[j] : 0.0f;
        float u = direction(&k, q[j], g[j], &a, &b);
        q[j] -= fs * u;
        if (m1)
            m1[j] = a;
        if (m2)
            m2[j] = b;
    }
    o->t++;
    return WM_OK;
}

wm_status wm_step(wm_optimizer *o, const wm_batch *b, float *loss)
{
    wm_status st = wm_grad(o, b, loss);
    if (st != WM_OK)
        return st;
    return wm_apply(o);
}
