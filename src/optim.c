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
 * A failed step must leave the net exactly as it was, so no value may be
 * written before every new value is known to be finite. The fast path proves
 * it from bounds: the backward pass bounds |gradient| by its factors
 * (n * max|c_hat| * max|delta| * max|x|), the optimizer keeps bounds on |Q| and
 * its moments, and if the step's worst case stays far below FLT_MAX one fused
 * pass reads and writes each parameter once (a one-sample step never even
 * stores the gradient: it is the rank-1 c_hat delta x^T). Otherwise, and for
 * the volume budget, which needs the step's norm first, the careful path
 * makes two passes: the first proves finiteness and measures, the second
 * writes. A diverging step returns WM_ENUMERIC with nothing changed. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "error.h"
#include "layers/dense.h"
#include "layers/layer.h"
#include "linalg.h"
#include "loss.h"
#include "memory.h"
#include "optim.h"
#include "simd.h"

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
        return wmi_fail(WM_EINVAL, "optimizer kind %d is not a wm_opt_kind", (int)c->kind);
    if (!isfinite(c->volume) || c->volume < 0)
        return wmi_fail(WM_EINVAL, "volume = %g must be finite and >= 0", c->volume);
    if (c->volume == 0 && !(isfinite(c->lr) && c->lr > 0))
        return wmi_fail(WM_EINVAL, "lr = %g must be finite and > 0 (or set a volume budget)", c->lr);
    if (!isfinite(c->weight_decay) || c->weight_decay < 0)
        return wmi_fail(WM_EINVAL, "weight_decay = %g must be finite and >= 0", c->weight_decay);
    if (c->kind == WM_OPT_MOMENTUM && !(c->momentum >= 0 && c->momentum <= 1))
        return wmi_fail(WM_EINVAL, "momentum = %g must be in [0,1]", c->momentum);
    if (c->kind == WM_OPT_ADAM) {
        if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1))
            return wmi_fail(WM_EINVAL, "Adam betas (%g, %g) must be in [0,1)", c->beta1, c->beta2);
        if (!(isfinite(c->eps) && c->eps > 0))
            return wmi_fail(WM_EINVAL, "Adam eps = %g must be finite and > 0", c->eps);
    }
    return WM_OK;
}

wm_status wm_optimizer_create(wm_optimizer **out, wm_net *net, const wm_opt_config *cfg)
{
    if (!out || !net || !cfg)
        return wmi_fail(WM_EINVAL, "wm_optimizer_create: %s is NULL", !out ? "out" : !net ? "net" : "cfg");
    if (!net->initialised)
        return wmi_fail(WM_ESTATE, "wm_optimizer_create: the net is not initialised (call wm_net_init)");
    wm_status st = check_config(cfg);
    if (st != WM_OK)
        return wmi_fail_prefix(st, "wm_optimizer_create: ");
    wm_optimizer *o = calloc(1, sizeof *o);
    size_t n = net->n_params;
    if (o) {
        o->grad = wmi_alloc_floats_apart(n, 1, net->params, WMI_APART_GRAD, &o->grad_mem);
        if (cfg->kind != WM_OPT_SD)
            o->m1 = wmi_alloc_floats_apart(n, 1, net->params, WMI_APART_M1, &o->m1_mem);
        if (cfg->kind == WM_OPT_ADAM)
            o->m2 = wmi_alloc_floats_apart(n, 1, net->params, WMI_APART_M2, &o->m2_mem);
    }
    if (!o || !o->grad || (cfg->kind != WM_OPT_SD && !o->m1) || (cfg->kind == WM_OPT_ADAM && !o->m2)) {
        wm_optimizer_free(o);
        return wmi_fail(WM_ENOMEM, "wm_optimizer_create: out of memory for %zu parameters", n);
    }
    o->net = net;
    o->cfg = *cfg;
    o->inits = net->inits;
    *out = o;
    return WM_OK;
}

void wm_optimizer_free(wm_optimizer *o)
{
    if (!o)
        return;
    free(o->grad_mem), free(o->m1_mem), free(o->m2_mem), free(o->ws);
    free(o);
}

float *wm_grad_buffer(wm_optimizer *o, size_t *len)
{
    if (len)
        *len = o ? o->net->n_params : 0;
    return o ? o->grad : NULL;
}

uint64_t wm_optimizer_steps(const wm_optimizer *o) { return o && !wmi_optimizer_stale(o) ? o->t : 0; }

const wm_net *wm_optimizer_net(const wm_optimizer *o) { return o ? o->net : NULL; }

wm_status wm_optimizer_set_lr(wm_optimizer *o, float lr)
{
    if (!o)
        return wmi_fail(WM_EINVAL, "wm_optimizer_set_lr: optimizer is NULL");
    if (!(isfinite(lr) && lr >= 0))
        return wmi_fail(WM_EINVAL, "wm_optimizer_set_lr: lr = %g must be finite and >= 0", lr);
    o->cfg.lr = lr;
    return WM_OK;
}

float wm_optimizer_lr(const wm_optimizer *o) { return o ? o->cfg.lr : NAN; }

wm_status wm_optimizer_set_clip_norm(wm_optimizer *o, float max_norm)
{
    if (!o)
        return wmi_fail(WM_EINVAL, "wm_optimizer_set_clip_norm: optimizer is NULL");
    if (!(isfinite(max_norm) && max_norm >= 0))
        return wmi_fail(WM_EINVAL, "wm_optimizer_set_clip_norm: max_norm = %g must be finite and >= 0 "
                                  "(0 turns clipping off)", max_norm);
    o->clip = max_norm;
    return WM_OK;
}

/* wm_net_init ran again under this optimizer: the moments describe parameters
 * that no longer exist, so it starts afresh, as a new optimizer would. The
 * restart is applied lazily, by the next call that writes the optimizer;
 * until then every reader (wm_optimizer_steps, wm_optimizer_get_state, a
 * checkpoint) sees the restarted state, so a call that fails changes
 * nothing anyone can observe. */
int wmi_optimizer_stale(const wm_optimizer *o) { return o->inits != o->net->inits; }

static void restart_if_reinitialised(wm_optimizer *o)
{
    if (!wmi_optimizer_stale(o))
        return;
    size_t n = o->net->n_params;
    if (o->m1)
        memset(o->m1, 0, sizeof(float) * n);
    if (o->m2)
        memset(o->m2, 0, sizeof(float) * n);
    o->t = 0;
    o->has_grad = 0;
    o->version = 0;                     /* re-measure the maxima */
    o->inits = o->net->inits;
}

/* The factor min(1, clip / |g|) for a gradient of squared norm sumsq. */
static float clip_scale(const wm_optimizer *o, double sumsq)
{
    if (o->clip == 0.0f || !(sumsq > (double)o->clip * o->clip))
        return 1.0f;                    /* NaN norms fall through: the update refuses them */
    return (float)(o->clip / sqrt(sumsq));
}

#define DIRECT_MAX_ROWS 32

/* Floats of the block buffer of the direct update: a few rows of a layer's
 * gradient at a time, small enough to stay in cache (64 KiB, or one row). */
static size_t block_floats(const wm_net *net)
{
    return (size_t)(net->max_in > 16384 ? net->max_in : 16384);
}

/* The B-spline direct update's range (local_direct_update): floats of every
 * block at a time (a ring slot), small enough that the ring, and the range of
 * Q that the refresh reads back (K slots: 512 KiB at K = 16), stay in a
 * 1 MiB L2 while the moments pass through (16384 measured 3-5% slower a
 * bench step on Zen 4, 65536 no faster than 16384). */
#ifndef LOCAL_FLOATS
#define LOCAL_FLOATS 8192
#endif

/* The B-spline direct update's ring (local_direct_update): p + 1 slots of
 * local_slot() floats, the workspace's last floats (reserve() adds them after
 * everything a batch of up to ws_rows lays out). */
static size_t local_slot(const wm_net *net)
{
    return (size_t)(net->max_in > LOCAL_FLOATS ? (net->max_in + 15) / 16 * 16 : LOCAL_FLOATS);
}

static size_t local_ring_floats(const wm_net *net)
{
    return net->local_p >= 0 ? (size_t)(net->local_p + 1) * local_slot(net) : 0;
}

/* Grow the training workspace to n rows (never shrinks: steady state is free). */
static wm_status reserve(wm_optimizer *o, int n)
{
    if (n <= o->ws_rows)
        return WM_OK;
    const wm_net *net = o->net;
    /* saturating sums: a batch too large to address asks for SIZE_MAX bytes */
    size_t extra = wmi_add_sat(wmi_mul_sat((size_t)n, (size_t)net->max_out) + 16,
                               block_floats(net) + (size_t)net->Kp * net->max_out + 16 +
                                   local_ring_floats(net));
    size_t bytes = wmi_add_sat(wmi_pass_bytes(net, n, 1), wmi_mul_sat(extra, sizeof(float)));
    bytes = bytes > SIZE_MAX - 63 ? SIZE_MAX : (bytes + 63) / 64 * 64;
    void *mem = bytes == SIZE_MAX ? NULL : aligned_alloc(64, bytes);
    if (!mem)
        return wmi_fail(WM_ENOMEM, "out of memory for a %zu-byte training workspace (batch of %d)",
                       bytes, n);
    free(o->ws);
    o->ws = mem;
    o->ws_bytes = bytes;
    o->ws_rows = n;
    return WM_OK;
}

/* A call on o from inside one of o's own callbacks (a custom basis called
 * while encoding, or wm_grad_notify's ready): wm_step there reallocated the
 * workspace the outer pass was still reading (a use after free). */
static wm_status check_not_busy(const wm_optimizer *o, const char *fn)
{
    if (o->busy)
        return wmi_fail(WM_ESTATE, "%s: called from a callback inside a call on the same optimizer (a "
                                  "custom basis function or wm_grad_notify's ready); call it after that "
                                  "call returns", fn);
    return WM_OK;
}

/* Check the batch, run the forward pass and the loss: *pp is left ready for
 * a backward pass, with dL/dy just after the pass's workspace. */
static wm_status forward_for_step(wm_optimizer *o, const wm_batch *b, float *mean_loss,
                                  wm_pass *pp, const char *fn)
{
    if (!o)
        return wmi_fail(WM_EINVAL, "%s: optimizer is NULL", fn);
    if (check_not_busy(o, fn) != WM_OK)
        return WM_ESTATE;
    wm_net *net = o->net;
    wm_status st = wmi_check_batch(net, b, fn);
    if (st != WM_OK || (st = reserve(o, b->n)) != WM_OK)
        return st;
    restart_if_reinitialised(o);
    wm_pass p;
    int n = b->n, m = net->layers[net->n_layers - 1].out;
    wmi_pass_layout(net, n, 1, o->ws, &p);
    p.step = o->t;                      /* dropout masks follow the step count */
    float *dy = (float *)((char *)o->ws + wmi_pass_bytes(net, n, 1));
    o->busy = 1;                        /* a custom basis is called from here */
    st = wmi_pass_encode(net, &p, b->x, b->s, n, 0);
    o->busy = 0;
    if (st != WM_OK)
        return st;
    const float *y = wmi_pass_forward(net, &p, n);
    double total = wmi_loss(net->loss, y, n, m, b->labels, b->targets, dy, 1.0f / n, NULL);
    double mean = total / n;
    if (!isfinite(mean) || !isfinite((float)mean))
        return wmi_fail(WM_ENUMERIC, "the batch loss is not finite (%g): the parameters or the "
                                    "learning rate have diverged", mean);
    /* the P cache's policy, applied at the update (net.h); a failed pass
     * leaves it as the last good one set it */
    o->last_mixed = !p.shared && n > 1;
    *mean_loss = (float)mean;
    *pp = p;
    return WM_OK;
}

/* The gradient into o->grad; *bound receives a bound on its entries;
 * ready (may be NULL) hears of each layer's block as it is final. */
static wm_status compute_grad_notify(wm_optimizer *o, const wm_batch *b, float *loss, float *bound,
                                     const char *fn, wm_grad_ready_fn ready, void *user);

static wm_status compute_grad(wm_optimizer *o, const wm_batch *b, float *loss, float *bound,
                              const char *fn)
{
    return compute_grad_notify(o, b, loss, bound, fn, NULL, NULL);
}

static wm_status compute_grad_notify(wm_optimizer *o, const wm_batch *b, float *loss, float *bound,
                                     const char *fn, wm_grad_ready_fn ready, void *user)
{
    wm_pass p;
    wm_status st = forward_for_step(o, b, loss, &p, fn);   /* loss: never NULL here */
    if (st != WM_OK)
        return st;
    float *dy = (float *)((char *)o->ws + wmi_pass_bytes(o->net, b->n, 1));
    o->has_grad = 0;                 /* the buffer is being overwritten */
    o->busy = ready != NULL;
    *bound = wmi_pass_backward_notify(o->net, &p, b->n, dy, o->grad, ready, user);
    o->busy = 0;
    o->has_grad = 1;
    return WM_OK;
}

wm_status wm_grad(wm_optimizer *o, const wm_batch *b, float *loss)
{
    float bound, mean;
    wm_status st = compute_grad(o, b, &mean, &bound, __func__);
    if (st == WM_OK && loss)
        *loss = mean;                   /* outputs are written only on success */
    return st;
}

wm_status wm_grad_notify(wm_optimizer *o, const wm_batch *b, float *loss, wm_grad_ready_fn ready,
                         void *user)
{
    if (o && b && b->n == 0) {          /* an empty shard: zeros, reported alike */
        wm_status st = wm_grad_zero(o);
        if (st != WM_OK)
            return st;
        o->busy = 1;
        for (int l = o->net->n_layers - 1; l >= 0 && ready; l--) {
            const wm_layer *ly = &o->net->layers[l];
            if (wmi_layer_has_params(ly))
                ready(user, l, ly->w_off, (size_t)ly->Kp * ly->rows * ((size_t)ly->cols + 1));
        }
        o->busy = 0;
        if (loss)
            *loss = 0.0f;
        return st;
    }
    float bound, mean;
    wm_status st = compute_grad_notify(o, b, &mean, &bound, __func__, ready, user);
    if (st == WM_OK && loss)
        *loss = mean;
    return st;
}

/* ---- the update rules, each written once ----------------------------------
 *
 * Every update path (the fused pass over the gradient buffer, the direct
 * update from rank-1 or blocked factors, the careful two-pass path with the
 * volume budget) moves a parameter q with gradient entry g by the functions
 * below and by nothing else:
 *     g   <- gs g                 the clip's scale (1 unless clipping bites)
 *     u    = rule(g, q, moments)  SD, momentum or Adam, weight decay inside
 *     q   <- q - s u              s = lr, or the volume budget's step_scale
 * A path chooses only how it streams g (a buffer, or a_r x_j from factors)
 * and which (kind, decay) loop to run: `decay` is a constant at every call
 * site, so a loop without weight decay has no wd q term, and the compiler
 * inlines the rule into each loop and vectorises it there. */
typedef struct {
    float mu, b1, b2, eps, wd, bc1, bc2;
    wm_opt_kind kind;
    float gs;                     /* gradient scale: min(1, clip/|g|), else 1 */
    float c1, c2;                 /* Adam: 1/bc1, 1/bc2, the bias corrections as factors */
} step_consts;

#if defined(__GNUC__)
#define WMI_INLINE static inline __attribute__((always_inline))
#else
#define WMI_INLINE static inline
#endif

/* Weight decay: added to the gradient (SD, momentum) or, decoupled, to
 * Adam's step (AdamW); either way u + wd q. */
WMI_INLINE float decayed(const step_consts *k, float u, float q) { return u + k->wd * q; }

/* SD: u = g (+ wd q). */
WMI_INLINE float rule_sd(const step_consts *k, int decay, float g, float q)
{
    return decay ? decayed(k, g, q) : g;
}

/* Momentum, PyTorch's convention: v = mu v + g (+ wd q), u = v. */
WMI_INLINE float rule_momentum(const step_consts *k, int decay, float g, float q, float *v)
{
    float u = k->mu * *v + g;
    if (decay)
        u = decayed(k, u, q);
    *v = u;
    return u;
}

/* Adam: m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2,
 * u = (m / bc1) / (sqrt(v / bc2) + eps) (+ wd q), the divisions by the bias
 * corrections done as products with their reciprocals. */
WMI_INLINE float rule_adam(const step_consts *k, int decay, float g, float q, float *m, float *v)
{
    float a = k->b1 * *m + (1.0f - k->b1) * g;
    float b = k->b2 * *v + (1.0f - k->b2) * g * g;
    float u = (a * k->c1) / (sqrtf(b * k->c2) + k->eps);
    *m = a, *v = b;
    return decay ? decayed(k, u, q) : u;
}

/* The direction u of the optimizer's kind (a constant where a loop is
 * specialised, k->kind in the careful path); m1, m2 are updated in place. */
WMI_INLINE float rule(const step_consts *k, wm_opt_kind kind, int decay, float g, float q, float *m1,
                      float *m2)
{
    switch (kind) {
    case WM_OPT_SD:
        return rule_sd(k, decay, g, q);
    case WM_OPT_MOMENTUM:
        return rule_momentum(k, decay, g, q, m1);
    case WM_OPT_ADAM:
        return rule_adam(k, decay, g, q, m1, m2);
    }
    return 0.0f;
}

/* The step itself: dQ = -s u. */
WMI_INLINE float stepped(float q, float s, float u) { return q - s * u; }

/* The step size s: the learning rate, or with a volume budget the s that
 * makes |dQ|^2 = s^2 |u|^2 equal to it (sumsq = |u|^2; a zero direction
 * does not move). */
static double step_scale(const wm_opt_config *c, double sumsq)
{
    if (c->volume > 0)
        return sumsq > 0 ? sqrt((double)c->volume / sumsq) : 0.0;
    return c->lr;
}

/* `rows` consecutive rows of n parameters (and their moments), row r moved
 * with the gradient g_j = a_r x_j, a_r = c scale[r] (scale NULL: a_r = c) and
 * step size s. The fused pass is one row with a = gs and x the gradient
 * buffer; the direct update passes the factors of a rank-1 or blocked
 * gradient. One loop per (kind, decay), each the rule above inlined. The
 * rows advance the restrict parameters themselves: block-scope row pointers
 * (q + r n) cost 1-2% more instructions a step on the 16-64-64-4 control
 * net at batch 1, whose rows are 16 and 64 floats long. */
#define UPDATE_LOOP(KIND, DECAY)                                                            \
    for (int r = 0; r < rows; r++) {                                                      \
        float a = scale ? c * scale[r] : c;                                               \
        for (size_t j = 0; j < n; j++) {                                                  \
            float mj = KIND != WM_OPT_SD ? m1[j] : 0.0f;                                  \
            float vj = KIND == WM_OPT_ADAM ? m2[j] : 0.0f;                                \
            float nq = stepped(q[j], s, rule(&kc, KIND, DECAY, a * x[j], q[j], &mj, &vj));  \
            if (KIND != WM_OPT_SD)                                                        \
                m1[j] = mj;                                                               \
            if (KIND == WM_OPT_ADAM)                                                      \
                m2[j] = vj;                                                               \
            q[j] = nq;                                                                    \
        }                                                                                 \
        q += n;                                                                           \
        if (KIND != WM_OPT_SD)                                                            \
            m1 += n;                                                                      \
        if (KIND == WM_OPT_ADAM)                                                          \
            m2 += n;                                                                      \
    }
WMI_INLINE void update_rows(const step_consts *k, float s, float *restrict q, float *restrict m1,
                            float *restrict m2, int rows, size_t n, float c,
                            const float *restrict scale, const float *restrict x)
{
    const step_consts kc = *k;          /* a local copy: the loops see constants */
    switch (kc.kind) {
    case WM_OPT_SD:
        if (kc.wd == 0.0f)
            UPDATE_LOOP(WM_OPT_SD, 0)
        else
            UPDATE_LOOP(WM_OPT_SD, 1)
        break;
    case WM_OPT_MOMENTUM:
        if (kc.wd == 0.0f)       /* the common case: two fewer operations a parameter */
            UPDATE_LOOP(WM_OPT_MOMENTUM, 0)
        else
            UPDATE_LOOP(WM_OPT_MOMENTUM, 1)
        break;
    case WM_OPT_ADAM:
        UPDATE_LOOP(WM_OPT_ADAM, 1)
        break;
    }
}
#undef UPDATE_LOOP

/* The unscaled step direction u_j (dQ_j = -scale * u_j) and the optimizer
 * state it would leave, for parameter j: the careful path's, by the rules. */
static inline float direction(const step_consts *k, float q, float g, float *m1, float *m2)
{
    return rule(k, k->kind, 1, g * k->gs, q, m1, m2);
}

static step_consts consts_of(const wm_optimizer *o)
{
    const wm_opt_config *c = &o->cfg;
    step_consts k = {c->momentum, c->beta1, c->beta2, c->eps, c->weight_decay, 1.0f, 1.0f, c->kind, 1.0f,
                     1.0f, 1.0f};
    if (c->kind == WM_OPT_ADAM) {
        /* t + 1 in double: at t = UINT64_MAX (wm_optimizer_set_state or a
         * checkpoint may set it) the integer wrapped to 0, and 1 - beta^0 = 0
         * made every later step non-finite */
        k.bc1 = (float)(1.0 - pow(c->beta1, (double)o->t + 1.0));
        k.bc2 = (float)(1.0 - pow(c->beta2, (double)o->t + 1.0));
        k.c1 = 1.0f / k.bc1, k.c2 = 1.0f / k.bc2;
    }
    return k;
}

/* Refresh the maxima of params and moments if someone else wrote the net. */
static void refresh_maxima(wm_optimizer *o)
{
    if (o->version == o->net->version + 1)   /* +1: never equal for a fresh optimizer */
        return;
    size_t n = o->net->n_params;
    o->qmax = wmi_max_abs(o->net->params, n);
    o->m1max = o->m1 ? wmi_max_abs(o->m1, n) : 0.0f;
    o->m2max = o->m2 ? wmi_max_abs(o->m2, n) : 0.0f;
    o->version = o->net->version + 1;
}

/* Bounds on |new q|, |new m1|, |new m2| after a plain (lr) step, given
 * |g| <= gmax and the current bounds. */
typedef struct {
    double q, m1, m2;
    double u;                           /* |direction|, before the learning rate: it is a float too */
} bounds;

static bounds step_bounds(const wm_optimizer *o, const step_consts *k, double gmax)
{
    double q = o->qmax, u = 0.0;
    bounds nb = {0.0, o->m1max, o->m2max, 0.0};
    switch (k->kind) {
    case WM_OPT_SD:
        u = gmax + k->wd * q;
        break;
    case WM_OPT_MOMENTUM:
        u = nb.m1 = k->mu * o->m1max + gmax + k->wd * q;
        break;
    case WM_OPT_ADAM:
        nb.m1 = k->b1 * o->m1max + (1.0 - k->b1) * gmax;
        nb.m2 = k->b2 * o->m2max + (1.0 - k->b2) * gmax * gmax;
        u = (nb.m1 / k->bc1) / k->eps + k->wd * q;   /* sqrt(v) >= 0 in the denominator */
        break;
    }
    nb.q = q + (double)o->cfg.lr * u;
    nb.u = u;
    return nb;
}

/* Whether every new value is provably finite, so the single fused pass may
 * write as it goes. The bounds only grow; when they become useless the
 * careful path runs once and measures the true maxima again. */
static int provably_finite(const bounds *nb, double gmax)
{
    const double limit = 1e37;          /* well inside FLT_MAX, room for rounding */
    /* u too: with a small lr, q + lr u fits while u = g + wd q (a float)
     * overflowed (weight_decay = FLT_MAX wrote -Inf into the net) */
    return isfinite(gmax) && nb->q < limit && nb->m1 < limit && nb->m2 < limit && nb->u < limit;
}

/* After our own write: the bounds describe the net as it now is. */
static void note_write(wm_optimizer *o, const bounds *nb)
{
    o->qmax = (float)nb->q, o->m1max = (float)nb->m1, o->m2max = (float)nb->m2;
    /* other optimizers re-measure; the P cache follows while training on
     * mixed batches (net.h). Only an update writes the net: wm_grad, which
     * may run beside wm_infer on the same net, leaves it alone. */
    wmi_net_local_step(o->net, o->last_mixed);
    wmi_net_touch_step(o->net);
    o->version = o->net->version + 1;
}

/* One pass over the parameters: read g, q and the moments once, write q and
 * the moments once. */
WMI_SIMD_CLONES
static void fused_update(wm_optimizer *o, const step_consts *k, const bounds *nb)
{
    /* one row of every parameter, g_j = gs * grad_j (gs: the clip's scale, usually 1) */
    update_rows(k, o->cfg.lr, o->net->params, o->m1, o->m2, 1, o->net->n_params, k->gs, NULL, o->grad);
    note_write(o, nb);
}

/* `rows` consecutive rows of n parameters, row r updated with the gradient
 * g_j = a_r * x_j, a_r = c * scale[r] (scale NULL: a_r = c), as fused_update
 * would apply it, without the gradient ever being written. (A bias is a
 * row with x = delta.) One call per layer and basis point: at batch 1 a call
 * per row cost more than its 784 parameters' arithmetic. */
WMI_SIMD_CLONES
static void rank1_rows(const step_consts *k, float lr, float *restrict q, float *restrict m1,
                       float *restrict m2, int rows, size_t n, float c, const float *restrict scale,
                       const float *restrict x)
{
    update_rows(k, lr, q, m1, m2, rows, n, c, scale, x);
}

/* ---- the direct update of an open B-spline net (net.h) ---------------------
 * After a mixed batch the net's P cache must follow the update: P = L^-T Q.
 * Run as separate passes (the backward's dQ = L^-1 dP into the gradient
 * buffer, the update, the refresh), each of the 16-point bench net's 17 MB
 * arrays (gradient, Q, momentum, P) crosses memory once more per pass, and
 * that traffic, not the products, was half the step. wm_step's direct
 * update instead forms dL/dP a range of rows at a time (R rows of every
 * block, R in <= LOCAL_FLOATS) and, while that range is in cache, runs
 *     dP_k  = D_k^T Xs          for k = 0 up (layers/dense.c's local path)
 *     dQ_k  = L^-1 dP, row k    banded forward substitution: needs dQ_j for
 *                               j in k-p..k-1 only, so a ring of p+1 slots
 *     Q_k, moments              the rule, by update_rows as every other path
 *     P     = L^-T Q            banded back substitution into the cache,
 *                               stored past the cache (no read of old P)
 * so the gradient never exists whole, Q is read back from cache for P, and
 * memory sees Q and the moments read and written once and P written once.
 * The solves do the unfused path's operations in its order. */

_Static_assert(WM_BAND_MAX_P >= WM_BSPLINE_MAX_DEGREE, "the streamed solve holds p + 1 rounds");

/* The ring: see local_slot(), above reserve(). */
static float *local_ring(const wm_optimizer *o)
{
    return (float *)(void *)((char *)o->ws + o->ws_bytes) - local_ring_floats(o->net);
}

/* After a local update wrote Q and P of every cached layer. */
static void note_write_cached(wm_optimizer *o, const bounds *nb)
{
    o->qmax = (float)nb->q, o->m1max = (float)nb->m1, o->m2max = (float)nb->m2;
    wmi_net_touch_step_cached(o->net);          /* the cache is valid at the new version */
    o->version = o->net->version + 1;
}

/* One block's range of the local update in one pass (local_direct_update):
 * element by element, dQ_k = (dP_k - a_1 dQ_{k-T} - ... - a_T dQ_{k-1}) d
 * (wmi_band_lower_ring's operations in its order, T = NT <= 3 terms), kept
 * in the ring slot x for the blocks after, and at once the rule, as
 * update_rows applies it with c = 1 (g = 1 * dQ = dQ exactly). Two passes
 * over the slot made the solve alone ~6% of the bench step. */
#define LOCAL_LOOP(KIND, DECAY, NT)                                                         \
    for (size_t j = 0; j < n; j++) {                                                      \
        float g = x[j];                                                                   \
        if (NT > 0)                                                                       \
            g -= a1 * x1[j];                                                              \
        if (NT > 1)                                                                       \
            g -= a2 * x2[j];                                                              \
        if (NT > 2)                                                                       \
            g -= a3 * x3[j];                                                              \
        g *= d;                                                                           \
        x[j] = g;                                                                         \
        float mj = KIND != WM_OPT_SD ? m1[j] : 0.0f;                                      \
        float vj = KIND == WM_OPT_ADAM ? m2[j] : 0.0f;                                    \
        float nq = stepped(q[j], s, rule(&kc, KIND, DECAY, g, q[j], &mj, &vj));           \
        if (KIND != WM_OPT_SD)                                                            \
            m1[j] = mj;                                                                   \
        if (KIND == WM_OPT_ADAM)                                                          \
            m2[j] = vj;                                                                   \
        q[j] = nq;                                                                        \
    }
WMI_INLINE void local_rows(const step_consts *k, float s, float *restrict q, float *restrict m1,
                           float *restrict m2, size_t n, float *restrict x, const float *restrict x1,
                           const float *restrict x2, const float *restrict x3, float a1, float a2,
                           float a3, float d, const int NT)
{
    const step_consts kc = *k;
    switch (kc.kind) {
    case WM_OPT_SD:
        if (kc.wd == 0.0f)
            LOCAL_LOOP(WM_OPT_SD, 0, NT)
        else
            LOCAL_LOOP(WM_OPT_SD, 1, NT)
        break;
    case WM_OPT_MOMENTUM:
        if (kc.wd == 0.0f)
            LOCAL_LOOP(WM_OPT_MOMENTUM, 0, NT)
        else
            LOCAL_LOOP(WM_OPT_MOMENTUM, 1, NT)
        break;
    case WM_OPT_ADAM:
        LOCAL_LOOP(WM_OPT_ADAM, 1, NT)
        break;
    }
}
#undef LOCAL_LOOP

/* Block kk's range: solved and applied in one pass when it has at most 3
 * terms (degree <= 3), else the solve and the rule as two. */
WMI_INLINE void local_block(const step_consts *k, float s, const double *L, int K, int deg, int kk,
                            float *ring, size_t slot, size_t len, float *q, float *m1, float *m2)
{
    int j0 = kk - deg > 0 ? kk - deg : 0, nt = kk - j0;
    float *x = ring + (size_t)(kk % (deg + 1)) * slot;
    if (nt > 3) {
        wmi_band_lower_ring(L, K, deg, kk, ring, slot, len);
        update_rows(k, s, q, m1, m2, 1, len, 1.0f, NULL, x);
        return;
    }
    const float *xs[3];
    float as[3];
    for (int t = 0; t < 3; t++) {       /* the terms j0, j0 + 1, .. in the solve's order */
        int j = t < nt ? j0 + t : j0;
        xs[t] = ring + (size_t)(j % (deg + 1)) * slot;
        as[t] = t < nt ? (float)L[kk * K + j] : 0.0f;
    }
    float d = (float)(1.0 / L[kk * K + kk]);
    switch (nt) {
    case 0: local_rows(k, s, q, m1, m2, len, x, xs[0], xs[1], xs[2], as[0], as[1], as[2], d, 0); break;
    case 1: local_rows(k, s, q, m1, m2, len, x, xs[0], xs[1], xs[2], as[0], as[1], as[2], d, 1); break;
    case 2: local_rows(k, s, q, m1, m2, len, x, xs[0], xs[1], xs[2], as[0], as[1], as[2], d, 2); break;
    default: local_rows(k, s, q, m1, m2, len, x, xs[0], xs[1], xs[2], as[0], as[1], as[2], d, 3); break;
    }
}

/* The first LOCAL_PF floats (of len) of the parameters and moments at
 * offset at, asked for before the product that precedes their pass (the
 * fetch then runs beside the product, whose operands are in L2): the
 * hardware prefetcher restarts at each block's range (8192 floats, then a
 * jump of a block), and this start measured ~6% of the bench's 16-point
 * B-spline step on Zen 4 (the whole range no better). */
enum { LOCAL_PF = 4096 };
static void local_prefetch(const wm_optimizer *o, size_t at, size_t len)
{
    size_t n = len < LOCAL_PF ? len : LOCAL_PF;
    for (size_t e = 0; e < n; e += 16) {
        WMI_PREFETCH(o->net->params + at + e);
        if (o->m1)
            WMI_PREFETCH(o->m1 + at + e);
        if (o->m2)
            WMI_PREFETCH(o->m2 + at + e);
    }
}

/* wm_step's direct update of an open B-spline net whose every layer with
 * parameters is a cached dense layer (local_direct_eligible); the backward
 * pass has left each layer's delta in p->delta. */
WMI_SIMD_CLONES
static void local_direct_update(wm_optimizer *o, const step_consts *k, const wm_pass *p, int n,
                                const bounds *nb)
{
    wm_net *net = o->net;
    const int K = net->Kp, deg = net->local_p;
    const double *L = net->m->L;
    float *ring = local_ring(o);
    const size_t slot = local_slot(net);
    float *gB = (float *)((char *)o->ws + wmi_pass_bytes(net, n, 1)) + (size_t)n * net->max_out + 16 +
                block_floats(net) + 16;     /* direct_update's bbuf: K x out floats */
    wmi_local_runs runs;
    for (int l = 0; l < net->n_layers; l++) {
        const wm_layer *ly = &net->layers[l];
        if (!wmi_layer_has_params(ly))
            continue;
        wm_layer_io io;
        wmi_pass_layer_io(net, p, l, &io);
        const int in = ly->cols, out = ly->rows;
        const size_t wn = (size_t)out * in;
        wmi_dense_local_prepare(ly, &io, l > 0 ? p->act[l - 1] : p->x0, p->delta[l], n, gB, &runs);
        const int R = (int)(slot / (size_t)in) < out ? (int)(slot / (size_t)in) : out;
        for (int r0 = 0; r0 < out; r0 += R) {
            const int rows = out - r0 < R ? out - r0 : R;
            const size_t len = (size_t)rows * in, off = ly->w_off + (size_t)r0 * in;
            for (int kk = 0; kk < K; kk++) {
                float *x = ring + (size_t)(kk % (deg + 1)) * slot;
                size_t at = off + (size_t)kk * wn;
                wmi_dense_local_grad_rows(ly, &io, &runs, kk, r0, rows, x);
                local_block(k, o->cfg.lr, L, K, deg, kk, ring, slot, len, net->params + at,
                            o->m1 ? o->m1 + at : NULL, o->m2 ? o->m2 + at : NULL);
                /* the next block's range (or the next range's first block):
                 * its start asked for before the next product */
                size_t nx = kk + 1 < K ? at + wn : r0 + rows < out ? off + len : 0;
                if (nx)
                    local_prefetch(o, nx, len);
            }
            wmi_band_upper_t_stream(L, K, deg, net->params + off, wn, net->pcache + off, wn, len);
        }
        /* the bias: dL/dP_B (K x out) is small, solved whole */
        wmi_band_solve_lower(L, K, deg, gB, (size_t)out);
        update_rows(k, o->cfg.lr, net->params + ly->b_off, o->m1 ? o->m1 + ly->b_off : NULL,
                    o->m2 ? o->m2 + ly->b_off : NULL, 1, (size_t)K * out, 1.0f, NULL, gB);
        wmi_band_solve_upper_t(L, K, deg, net->params + ly->b_off, net->pcache + ly->b_off, (size_t)out);
    }
    note_write_cached(o, nb);
}

/* Whether wm_step may run local_direct_update: the cached layers ran the
 * local path (a valid cache, a mixed batch of 2+), every layer with
 * parameters is one, and a plain learning-rate step without clipping (the
 * volume budget and the clip need the whole gradient's norm first). */
static int local_direct_eligible(const wm_optimizer *o, const wm_pass *p)
{
    const wm_net *net = o->net;
    if (net->local_p < 0 || !net->pcache || net->pversion != net->version || p->shared || p->n < 2 ||
        o->cfg.volume != 0 || o->clip != 0)
        return 0;
    for (int l = 0; l < net->n_layers; l++)
        if (wmi_layer_has_params(&net->layers[l]) && !wmi_layer_cached(net, &net->layers[l]))
            return 0;
    return 1;
}

/* The direct update of a net of dense layers: every layer's gradient is
 * formed a block of rows at a time into a cache-sized buffer and applied at
 * once, so it never travels to memory and back; each parameter and its
 * moments are read and written once. With one sample the gradient of basis
 * point k is the rank-1 c_hat_k delta x^T and needs no GEMM at all. The
 * backward pass has already left each layer's delta in p->delta. */
static void direct_update(wm_optimizer *o, const step_consts *k, const wm_pass *p, int n,
                          const bounds *nb)
{
    const float gs = k->gs;             /* the clip's scale (1 unless n = 1 and clipping) */
    wm_net *net = o->net;
    const float lr = o->cfg.lr;
    float *gbuf = (float *)((char *)o->ws + wmi_pass_bytes(net, n, 1)) + (size_t)n * net->max_out + 16;
    float *bbuf = gbuf + block_floats(net) + 16;
#define UPDATE_ROWS(off, rows, len, c, scale, g)                                                \
    rank1_rows(k, lr, net->params + (off), o->m1 ? o->m1 + (off) : NULL,                      \
               o->m2 ? o->m2 + (off) : NULL, (rows), (len), (c), (scale), (g))
#define UPDATE(off, len, c, g) UPDATE_ROWS(off, 1, len, c, NULL, g)
    for (int l = 0; l < net->n_layers; l++) {
        const wm_layer *ly = &net->layers[l];
        if (!wmi_layer_has_params(ly))               /* a residual: nothing to update */
            continue;
        const float *x = l > 0 ? p->act[l - 1] : p->x0, *delta = p->delta[l];
        const int Kp = ly->Kp;                          /* 1: a point layer, c_hat = 1 */
        const float *C = Kp == net->Kp ? p->C : p->ones;
        const int in = ly->cols, out = ly->rows, plain = Kp == 1 || p->shared || n == 1;
        const int rb = (int)(block_floats(net) / (size_t)in);
        if (n == 1) {                               /* rank 1: g = (c_k delta_r) x */
            for (int kk = 0; kk < Kp; kk++) {
                UPDATE_ROWS(ly->w_off + (size_t)kk * out * in, out, (size_t)in, gs * C[kk], delta, x);
                UPDATE(ly->b_off + (size_t)kk * out, (size_t)out, gs * C[kk], delta);
            }
        } else if (plain) {                         /* one W(s): dW = delta^T X, spread by c_hat */
            /* Few rows: form dW a cache-sized block at a time. Many rows: one
             * GEMM for the whole of dW (blocks would make the BLAS pack X
             * again for each) into the gradient buffer's first slot, used as
             * scratch: 1/K of the gradient, then read once per basis point
             * while still in cache. */
            const int whole = n > DIRECT_MAX_ROWS;
            float *gw = whole ? o->grad + ly->w_off : gbuf;
            if (whole)
                wmi_gemm(1, 0, out, in, n, 1.0f, delta, out, x, in, 0.0f, gw, in);
            for (int r0 = 0; r0 < out; r0 += rb) {
                int r = out - r0 < rb ? out - r0 : rb;
                const float *g = whole ? gw + (size_t)r0 * in : gbuf;
                if (!whole)
                    wmi_gemm(1, 0, r, in, n, 1.0f, delta + r0, out, x, in, 0.0f, gbuf, in);
                for (int kk = 0; kk < Kp; kk++)
                    UPDATE(ly->w_off + ((size_t)kk * out + r0) * in, (size_t)r * in,
                           Kp == 1 ? 1.0f : C[kk], g);
            }
            for (int o2 = 0; o2 < out; o2++)      /* row by row: the sums vectorise */
                bbuf[o2] = 0.0f;
            for (int i = 0; i < n; i++)
                for (int o2 = 0; o2 < out; o2++)
                    bbuf[o2] += delta[(size_t)i * out + o2];
            for (int kk = 0; kk < Kp; kk++)
                UPDATE(ly->b_off + (size_t)kk * out, (size_t)out, Kp == 1 ? 1.0f : C[kk], bbuf);
        } else {                                    /* stacked: dWst = D^T X, D_ik = C_ik delta_i */
            const int ko = Kp * out;
            for (int i = 0; i < n; i++)
                for (int kk = 0; kk < Kp; kk++)
                    for (int o2 = 0; o2 < out; o2++)
                        p->z[(size_t)i * ko + (size_t)kk * out + o2] =
                            C[(size_t)i * Kp + kk] * delta[(size_t)i * out + o2];
            for (int r0 = 0; r0 < ko; r0 += rb) {
                int r = ko - r0 < rb ? ko - r0 : rb;
                wmi_gemm(1, 0, r, in, n, 1.0f, p->z + r0, ko, x, in, 0.0f, gbuf, in);
                UPDATE(ly->w_off + (size_t)r0 * in, (size_t)r * in, 1.0f, gbuf);
            }
            wmi_gemm(1, 0, Kp, out, n, 1.0f, C, Kp, delta, out, 0.0f, bbuf, out);
            UPDATE(ly->b_off, (size_t)ko, 1.0f, bbuf);
        }
    }
#undef UPDATE
#undef UPDATE_ROWS
    note_write(o, nb);
}

/* |g|^2 of a one-sample step without forming g: layer l's gradient for basis
 * point k is c_k delta_l (x_l, 1) (weights and bias), so
 * |g|^2 = |c|^2 sum_l |delta_l|^2 (|x_l|^2 + 1). */
static double rank1_sumsq(const wm_net *net, const wm_pass *p)
{
    double cc = 0, total = 0;               /* |c_hat|^2 of the manifold layers (point layers: 1) */
    for (int kk = 0; kk < net->Kp; kk++)
        cc += (double)p->C[kk] * p->C[kk];
    for (int l = 0; l < net->n_layers; l++) {
        const wm_layer *ly = &net->layers[l];
        if (!wmi_layer_has_params(ly))
            continue;
        const float *x = l > 0 ? p->act[l - 1] : p->x0, *delta = p->delta[l];
        double dd = 0, xx = 1.0;
        for (int o2 = 0; o2 < ly->rows; o2++)
            dd += (double)delta[o2] * delta[o2];
        for (int j = 0; j < ly->cols; j++)
            xx += (double)x[j] * x[j];
        total += (ly->Kp == net->Kp ? cc : 1.0) * dd * xx;
    }
    return total;
}

/* The careful path: pass 1 proves every new value finite and measures the
 * step's norm without writing; pass 2 writes. Used for the volume budget and
 * whenever the bounds cannot prove a plain step finite. */
static wm_status careful_update(wm_optimizer *o, const step_consts *k)
{
    const wm_opt_config *c = &o->cfg;
    float *q = o->net->params, *g = o->grad, *m1 = o->m1, *m2 = o->m2;
    size_t n = o->net->n_params;
    double sumsq = 0.0;
    float max_u = 0.0f, max_q = 0.0f;
    for (size_t j = 0; j < n; j++) {
        float a = m1 ? m1[j] : 0.0f, b = m2 ? m2[j] : 0.0f;
        float u = direction(k, q[j], g[j], &a, &b);
        if (!isfinite(u) || !isfinite(a) || !isfinite(b))
            return wmi_fail(WM_ENUMERIC, "the update is not finite at parameter %zu (gradient %g): "
                                        "nothing was changed", j, g[j]);
        sumsq += (double)u * u;
        max_u = fmaxf(max_u, fabsf(u));
        max_q = fmaxf(max_q, fabsf(q[j]));
    }
    double scale = step_scale(c, sumsq);
    if (!((double)max_q + scale * max_u < 0.5 * FLT_MAX))
        return wmi_fail(WM_ENUMERIC, "the update would overflow (step %g x %g): nothing was changed",
                       scale, max_u);
    float fs = (float)scale;
    bounds nb = {0.0, 0.0, 0.0, 0.0};      /* the exact maxima, measured as we write */
    for (size_t j = 0; j < n; j++) {
        float a = m1 ? m1[j] : 0.0f, b = m2 ? m2[j] : 0.0f;
        float u = direction(k, q[j], g[j], &a, &b);
        q[j] = stepped(q[j], fs, u);
        nb.q = fmax(nb.q, fabsf(q[j]));
        nb.m1 = fmax(nb.m1, fabsf(a));
        nb.m2 = fmax(nb.m2, fabsf(b));
        if (m1)
            m1[j] = a;
        if (m2)
            m2[j] = b;
    }
    note_write(o, &nb);
    return WM_OK;
}

/* Apply the buffer, given a bound on its entries (infinite: unknown). */
static wm_status apply_bounded(wm_optimizer *o, float gmax)
{
    step_consts k = consts_of(o);
    wm_status st = WM_OK;
    if (o->clip > 0) {                  /* one more read of the gradient, only when clipping */
        double sumsq = 0;
        const float *g = o->grad;
        for (size_t j = 0; j < o->net->n_params; j++)
            sumsq += (double)g[j] * g[j];
        k.gs = clip_scale(o, sumsq);
        gmax *= k.gs;
    }
    refresh_maxima(o);
    bounds nb = step_bounds(o, &k, gmax);
    if (o->cfg.volume == 0 && provably_finite(&nb, gmax))
        fused_update(o, &k, &nb);
    else
        st = careful_update(o, &k);
    if (st == WM_OK && o->t != UINT64_MAX)  /* saturates: a wrapped count would restart the
                                            bias correction and repeat the dropout masks */
        o->t++;
    return st;
}

wm_status wm_apply(wm_optimizer *o)
{
    if (!o)
        return wmi_fail(WM_EINVAL, "wm_apply: optimizer is NULL");
    if (check_not_busy(o, __func__) != WM_OK)
        return WM_ESTATE;
    if (!o->has_grad || wmi_optimizer_stale(o))
        return wmi_fail(WM_ESTATE, "wm_apply: no gradient to apply (call wm_grad first; wm_step "
                                  "applies its own, and wm_net_init discards it)");
    /* the caller may have rewritten the buffer: measure it (one read pass) */
    return apply_bounded(o, wmi_max_abs(o->grad, o->net->n_params));
}

/* Whether wm_step may update directly: only layers whose table says their
 * gradient is the rank-n dense form (dense; conv gradients sum over positions) and a plain learning-rate step (a volume budget needs
 * the whole gradient's norm before any write). Mixed contexts only up to a
 * few dozen rows: beyond, the stacked gradient GEMMs dominate and splitting
 * them into blocks costs more (the BLAS re-packs X per block, measured 8% at
 * batch 512) than writing the gradient out saves. A shared context or a
 * point net forms dW with one GEMM at any batch size. */
static int direct_eligible(const wm_optimizer *o, const wm_pass *p)
{
    if (o->cfg.volume != 0 || (p->n > DIRECT_MAX_ROWS && !p->shared && o->net->Kp > 1))
        return 0;
    if (o->clip > 0 && p->n > 1)        /* the clip needs |g| first: only rank 1 knows it early */
        return 0;
    for (int l = 0; l < o->net->n_layers; l++)
        if (!wmi_ops(&o->net->layers[l])->direct_update)
            return 0;
    return 1;
}

wm_status wm_step(wm_optimizer *o, const wm_batch *b, float *loss)
{
    float bound, mean;
    wm_pass p;
    wm_status st = forward_for_step(o, b, &mean, &p, __func__);
    if (st != WM_OK)
        return st;
    float *dy = (float *)((char *)o->ws + wmi_pass_bytes(o->net, b->n, 1));
    o->has_grad = 0;                    /* the buffer is scratch or being overwritten */
    int local = local_direct_eligible(o, &p);
    if (local || direct_eligible(o, &p)) {
        bound = wmi_pass_backward_deltas(o->net, &p, b->n, dy);
        step_consts k = consts_of(o);
        if (o->clip > 0) {
            k.gs = clip_scale(o, rank1_sumsq(o->net, &p));
            bound *= k.gs;
        }
        refresh_maxima(o);
        bounds nb = step_bounds(o, &k, bound);
        if (provably_finite(&nb, bound)) {
            if (local)
                local_direct_update(o, &k, &p, b->n, &nb);
            else
                direct_update(o, &k, &p, b->n, &nb);
            if (o->t != UINT64_MAX)     /* saturates, as in apply_bounded */
                o->t++;
            if (loss)
                *loss = mean;
            return WM_OK;
        }
        /* not provably finite: the careful path needs the whole gradient */
        st = compute_grad(o, b, &mean, &bound, __func__);
    } else {
        bound = wmi_pass_backward(o->net, &p, b->n, dy, o->grad);
        o->has_grad = 1;
    }
    if (st == WM_OK)
        st = apply_bounded(o, bound);
    o->has_grad = 0;                    /* applied (or refused): wm_apply needs a new wm_grad */
    if (st == WM_OK && loss)
        *loss = mean;                   /* outputs are written only on success */
    return st;
}

/* ---- data-parallel support: the optimizer's state and an empty shard's gradient ---- */

size_t wm_optimizer_state_len(const wm_optimizer *o)
{
    if (!o)
        return 0;
    return o->net->n_params * (size_t)(o->cfg.kind == WM_OPT_ADAM ? 2 : o->cfg.kind == WM_OPT_MOMENTUM);
}

wm_status wm_optimizer_get_state(const wm_optimizer *o, float *state, size_t len)
{
    size_t want = wm_optimizer_state_len(o), n = o ? o->net->n_params : 0;
    if (!o || (!state && want > 0))
        return wmi_fail(WM_EINVAL, "wm_optimizer_get_state: %s is NULL", !o ? "opt" : "state");
    if (len != want)
        return wmi_fail(WM_EINVAL, "wm_optimizer_get_state: len = %zu but the state has %zu floats",
                       len, want);
    if (want > 0 && wmi_optimizer_stale(o)) {     /* re-initialised: zeros, see above */
        memset(state, 0, sizeof(float) * want);
        return WM_OK;
    }
    if (o->m1 && want > 0)
        memcpy(state, o->m1, sizeof(float) * n);
    if (o->m2 && want > n)
        memcpy(state + n, o->m2, sizeof(float) * n);
    return WM_OK;
}

wm_status wm_optimizer_set_state(wm_optimizer *o, const float *state, size_t len, uint64_t steps)
{
    size_t want = wm_optimizer_state_len(o), n = o ? o->net->n_params : 0;
    if (!o || (!state && want > 0))
        return wmi_fail(WM_EINVAL, "wm_optimizer_set_state: %s is NULL", !o ? "opt" : "state");
    if (len != want)
        return wmi_fail(WM_EINVAL, "wm_optimizer_set_state: len = %zu but the state has %zu floats",
                       len, want);
    if (check_not_busy(o, __func__) != WM_OK)
        return WM_ESTATE;
    for (size_t j = 0; j < len; j++)
        if (!isfinite(state[j]) || (j >= n && state[j] < 0))
            return wmi_fail(WM_EINVAL, "wm_optimizer_set_state: state[%zu] = %g is %s", j, state[j],
                           isfinite(state[j]) ? "a negative second moment" : "not finite");
    restart_if_reinitialised(o);
    if (want > 0)
        memcpy(o->m1, state, sizeof(float) * n);
    if (want > n)
        memcpy(o->m2, state + n, sizeof(float) * n);
    o->t = steps;
    o->version = o->net->version;       /* not version + 1: the maxima must be measured again */
    return WM_OK;
}

wm_status wm_grad_zero(wm_optimizer *o)
{
    if (!o)
        return wmi_fail(WM_EINVAL, "wm_grad_zero: optimizer is NULL");
    if (check_not_busy(o, __func__) != WM_OK)
        return WM_ESTATE;
    restart_if_reinitialised(o);
    memset(o->grad, 0, sizeof(float) * o->net->n_params);
    o->has_grad = 1;
    return WM_OK;
}
