/* context.c -- context inference: the s that best explains a batch.
 *
 * The objective of a sample at context s is its softmax cross-entropy
 * (labels given), its MSE (targets given) or its prediction entropy (neither;
 * softmax nets). Shared mode minimises the batch mean over one s; per-sample
 * mode minimises each sample's own value over its own s. Both run the same
 * search (ctxsearch.c): per-sample mode keeps one "lane" per sample and
 * evaluates all lanes in one inference of the batch, so the number of
 * inferences is the same in both modes and depends only on the manifold. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ctxsearch.h"
#include "error.h"
#include "loss.h"
#include "net.h"
#include "pass.h"

typedef enum { OBJ_CE, OBJ_MSE, OBJ_ENTROPY } objective_kind;

typedef struct {
    const wm_net *net;
    const wm_batch *b;
    objective_kind kind;
    int shared;
    int m;                        /* outputs */
    float *s_rows;                /* n x dim: each sample's candidate context */
    float *out;                   /* n x m */
} objective;

/* Prediction entropy (nats) of the softmax of y (m logits). */
static double entropy(const float *y, int m)
{
    double mx = y[0], z = 0.0, e = 0.0;
    for (int j = 1; j < m; j++)
        mx = y[j] > mx ? y[j] : mx;
    for (int j = 0; j < m; j++)
        z += exp(y[j] - mx);
    for (int j = 0; j < m; j++) {   /* -sum p log p, p = exp(y - mx) / z */
        double t = y[j] - mx, p = exp(t) / z;
        e -= p > 0.0 ? p * (t - log(z)) : 0.0;
    }
    return e;
}

/* Sample i's objective from its outputs y. */
static double sample_value(const objective *o, int i, const float *y)
{
    switch (o->kind) {
    case OBJ_CE:
        return wmi_loss(WM_LOSS_SOFTMAX_CE, y, 1, o->m, o->b->labels + i, NULL, NULL, 0.0f, NULL);
    case OBJ_MSE:
        return wmi_loss(WM_LOSS_MSE, y, 1, o->m, NULL, o->b->targets + (size_t)i * o->m, NULL, 0.0f,
                        NULL);
    default:
        return entropy(y, o->m);
    }
}

/* One inference of the batch: lane l's context for sample l (per-sample), or
 * lane 0's for every sample (shared). */
static wm_status evaluate(void *ctx, const double *s, int lanes, double *f)
{
    objective *o = ctx;
    int n = o->b->n, dim = o->net->m->dim;
    (void)lanes;
    for (int i = 0; i < n && dim > 0; i++)   /* wm_infer takes the user's units (a point: s is NULL) */
        wmi_context_to_user(o->net->m, s + (o->shared ? 0 : (size_t)i * dim), o->s_rows + (size_t)i * dim);
    wm_status st = wmi_infer_raw(o->net, o->b->x, dim > 0 ? o->s_rows : NULL, n, o->out);
    if (st != WM_OK)
        return st;
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        double v = sample_value(o, i, o->out + (size_t)i * o->m);
        if (o->shared)
            total += v;
        else
            f[i] = v;
    }
    if (o->shared)
        f[0] = total / n;
    return WM_OK;
}

/* Everything checked before anything runs; picks the objective. */
static wm_status check_args(const wm_net *net, const wm_batch *b, int shared, const float *s_out,
                            objective_kind *kind)
{
    const char *fn = "wm_infer_context_batch";
    if (!net || !b || !s_out)
        return wmi_fail(WM_EINVAL, "%s: %s is NULL", fn, !net ? "net" : !b ? "batch" : "s_out");
    if (!net->initialised)
        return wmi_fail(WM_ESTATE, "%s: the net is not initialised (call wm_net_init)", fn);
    if (shared != 0 && shared != 1)
        return wmi_fail(WM_EINVAL, "%s: shared = %d: it must be 0 (one context per sample) or 1 "
                                   "(one for the batch)", fn, shared);
    if (b->n < 1)
        return wmi_fail(WM_EINVAL, "%s: batch.n = %d: at least one sample is needed", fn, b->n);
    if (!b->x)
        return wmi_fail(WM_EINVAL, "%s: batch.x is NULL", fn);
    int m = wm_net_n_outputs(net);
    if (b->labels && b->targets)
        *kind = net->loss == WM_LOSS_SOFTMAX_CE ? OBJ_CE : OBJ_MSE;
    else if (b->labels)
        *kind = OBJ_CE;
    else if (b->targets)
        *kind = OBJ_MSE;
    else if (net->loss == WM_LOSS_SOFTMAX_CE)
        *kind = OBJ_ENTROPY;
    else
        return wmi_fail(WM_EINVAL, "%s: an MSE net needs batch.targets (or labels): without them "
                                   "there is no prediction entropy to minimise", fn);
    size_t nx = (size_t)b->n * net->n_inputs;
    for (size_t j = 0; j < nx; j++)
        if (!isfinite(b->x[j]))
            return wmi_fail(WM_EINVAL, "%s: input x[%zu][%zu] is not finite", fn, j / net->n_inputs,
                            j % net->n_inputs);
    if (*kind == OBJ_CE)
        for (int i = 0; i < b->n; i++)
            if (b->labels[i] < 0 || b->labels[i] >= m)
                return wmi_fail(WM_EINVAL, "%s: labels[%d] = %d is out of range for %d classes", fn, i,
                                (int)b->labels[i], m);
    if (*kind == OBJ_MSE)
        for (size_t j = 0; j < (size_t)b->n * m; j++)
            if (!isfinite(b->targets[j]))
                return wmi_fail(WM_EINVAL, "%s: targets[%zu][%zu] is not finite", fn, j / m, j % m);
    return WM_OK;
}

wm_status wm_infer_context_batch(const wm_net *net, const wm_batch *batch, int shared, float *s_out,
                                 float *loss_out)
{
    objective_kind kind = OBJ_ENTROPY;
    wm_status st = check_args(net, batch, shared, s_out, &kind);
    if (st != WM_OK)
        return st;
    int n = batch->n, dim = net->m->dim, m = wm_net_n_outputs(net);
    int lanes = dim == 0 || shared ? 1 : n;
    objective o = {net, batch, kind, dim == 0 ? 1 : shared, m, NULL, NULL};
    o.s_rows = malloc(sizeof(float) * ((size_t)n * dim + 1));
    o.out = malloc(sizeof(float) * (size_t)n * m);
    double *s_best = malloc(sizeof(double) * ((size_t)lanes * dim + 1));
    double *f_best = malloc(sizeof(double) * (size_t)lanes);
    if (!o.s_rows || !o.out || !s_best || !f_best) {
        st = wmi_fail(WM_ENOMEM, "wm_infer_context_batch: out of memory for %d samples", n);
    } else if (dim == 0) {                  /* a point: nothing to find, the loss is still asked */
        st = evaluate(&o, NULL, 1, f_best);
        if (st == WM_OK && !isfinite(f_best[0]))
            st = wmi_fail(WM_ENUMERIC, "wm_infer_context_batch: the objective is not finite");
    } else {
        wmi_ctx_plan plan;
        wmi_ctx_plan_make(net->m, &plan);
        st = wmi_ctx_search(&plan, lanes, evaluate, &o, s_best, f_best);
    }
    if (st == WM_OK) {
        for (int l = 0; l < lanes && dim > 0; l++)
            wmi_context_to_user(net->m, s_best + (size_t)l * dim, s_out + (size_t)l * dim);
        if (loss_out) {
            if (dim == 0 && !shared)        /* per sample: each one's own value */
                for (int i = 0; i < n; i++)
                    loss_out[i] = (float)sample_value(&o, i, o.out + (size_t)i * m);
            else
                for (int l = 0; l < lanes; l++)
                    loss_out[l] = (float)f_best[l];
        }
    }
    free(o.s_rows), free(o.out), free(s_best), free(f_best);
    return st;
}

wm_status wm_infer_context(const wm_net *net, const float *x, const int32_t *labels, int n,
                           float *s_out)
{
    if (!net || !x || !s_out)
        return wmi_fail(WM_EINVAL, "wm_infer_context: %s is NULL", !net ? "net" : !x ? "x" : "s_out");
    if (!net->initialised)
        return wmi_fail(WM_ESTATE, "wm_infer_context: the net is not initialised (call wm_net_init)");
    if (n < 1)
        return wmi_fail(WM_EINVAL, "wm_infer_context: n = %d: at least one sample is needed", n);
    if (net->loss != WM_LOSS_SOFTMAX_CE)
        return wmi_fail(WM_EINVAL, "wm_infer_context: needs a softmax cross-entropy net (its score is "
                                   "the labels' loss or the prediction entropy); "
                                   "wm_infer_context_batch also takes MSE targets");
    wm_batch b = {n, x, NULL, labels, NULL};
    return wm_infer_context_batch(net, &b, 1, s_out, NULL);
}
