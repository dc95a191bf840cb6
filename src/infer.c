/* infer.c -- wm_infer and wm_evaluate: forward passes on a const net.
 *
 * A const net has no scratch of its own, so these run on per-thread scratch
 * (or the caller's workspace) in chunks of at most CHUNK rows: the workspace
 * stays bounded however large the batch. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "error.h"
#include "loss.h"
#include "pass.h"
#include "scratch.h"

#define CHUNK 256

static wm_status check_net(const wm_net *net, const char *fn)
{
    if (!net)
        return wmi_fail(WM_EINVAL, "%s: net is NULL", fn);
    if (!net->initialised)
        return wmi_fail(WM_ESTATE, "%s: the net is not initialised (call wm_net_init)", fn);
    return WM_OK;
}

size_t wm_infer_workspace_size(const wm_net *net, int n)
{
    if (!net || !net->initialised || n < 0)
        return 0;
    int rows = n < CHUNK ? (n > 0 ? n : 1) : CHUNK;
    return wmi_pass_bytes(net, rows, 0) + 64;   /* + 64: room to align the caller's pointer */
}

/* Each chunk: encode, forward, then hand the outputs to `sink`. */
typedef void (*chunk_sink)(const float *y, size_t row0, int rows, int m, void *ctx);

static void copy_out(const float *y, size_t row0, int rows, int m, void *ctx)
{
    memcpy((float *)ctx + row0 * m, y, sizeof(float) * (size_t)rows * m);
}

/* Whether the rows x m outputs of a chunk are all finite; else a message
 * naming the first one that is not (finite inputs can still overflow float
 * on the way: huge inputs or parameters). */
static wm_status check_outputs(const float *y, int64_t row0, int rows, int m)
{
    for (size_t j = 0; j < (size_t)rows * (size_t)m; j++)
        if (!isfinite(y[j]))
            return wmi_fail(WM_ENUMERIC, "wm_infer: out[%lld][%d] = %g is not finite: the inputs or the "
                                        "parameters overflow float", (long long)(row0 + (int64_t)(j / (size_t)m)),
                            (int)(j % (size_t)m), (double)y[j]);
    return WM_OK;
}

/* finite: refuse a chunk whose outputs are not all finite (WM_ENUMERIC)
 * before handing it to sink. */
static wm_status run_chunks(const wm_net *net, const float *x, const float *s, int n, void *ws,
                            size_t ws_bytes, chunk_sink sink, void *ctx, int finite)
{
    int rows = n < CHUNK ? n : CHUNK;
    uintptr_t base = ((uintptr_t)ws + 63) & ~(uintptr_t)63;
    wm_pass p;
    if (ws_bytes < wmi_pass_bytes(net, rows, 0) + (base - (uintptr_t)ws))
        return wmi_fail(WM_EINVAL, "workspace of %zu bytes is too small: wm_infer_workspace_size says %zu",
                       ws_bytes, wm_infer_workspace_size(net, n));
    wmi_pass_layout(net, rows, 0, (void *)base, &p);
    int dim = net->m->dim, m = net->layers[net->n_layers - 1].out;
    wm_status st = n > rows ? wmi_pass_check(net, x, s, n) : WM_OK;   /* all or nothing */
    if (st != WM_OK)
        return st;
    /* r0 steps in int64: n within a chunk of INT_MAX would wrap r0 += rows */
    for (int64_t r0 = 0; r0 < n; r0 += rows) {
        int r = n - r0 < rows ? (int)(n - r0) : rows;
        st = wmi_pass_encode(net, &p, x + (size_t)r0 * net->n_inputs,
                             s ? s + (size_t)r0 * dim : NULL, r, (int)r0);
        if (st != WM_OK)
            return st;
        const float *y = wmi_pass_forward(net, &p, r);
        if (finite && (st = check_outputs(y, r0, r, m)) != WM_OK)
            return st;                  /* wm_infer: never a silent NaN or Inf */
        sink(y, (size_t)r0, r, m, ctx);
    }
    return WM_OK;
}

/* Whether [a, a + an floats) and [b, b + bn floats) share a byte. */
static int overlaps(const float *a, size_t an, const float *b, size_t bn)
{
    uintptr_t a0 = (uintptr_t)a, b0 = (uintptr_t)b;
    return a && b && an && bn && a0 < b0 + bn * sizeof(float) && b0 < a0 + an * sizeof(float);
}

static wm_status check_infer_args(const wm_net *net, const float *x, const float *s, int n,
                                  const float *out, const char *fn)
{
    wm_status st = check_net(net, fn);
    if (st != WM_OK)
        return st;
    if (n < 0)
        return wmi_fail(WM_EINVAL, "%s: n = %d is negative", fn, n);
    if (n > 0 && (!x || !out))
        return wmi_fail(WM_EINVAL, "%s: %s is NULL", fn, !x ? "x" : "out");
    if (n > 0 && !s && net->m->dim > 0)
        return wmi_fail(WM_EINVAL, "%s: s is NULL but the manifold has %d context coordinates", fn,
                       net->m->dim);
    /* outputs are written a chunk at a time while later inputs are still to
     * be read, so an out that overlaps x or s would corrupt them */
    size_t N = (size_t)n, n_out = (size_t)net->layers[net->n_layers - 1].out;
    if (overlaps(out, N * n_out, x, N * (size_t)net->n_inputs) ||
        overlaps(out, N * n_out, s, N * (size_t)net->m->dim))
        return wmi_fail(WM_EINVAL, "%s: out overlaps %s; it must be a separate array", fn,
                       overlaps(out, N * n_out, x, N * (size_t)net->n_inputs) ? "x" : "s");
    return WM_OK;
}

wm_status wm_infer_ws(const wm_net *net, const float *x, const float *s, int n, float *out,
                      void *ws, size_t ws_bytes)
{
    wm_status st = check_infer_args(net, x, s, n, out, __func__);
    if (st != WM_OK || n == 0)
        return st;
    if (!ws)
        return wmi_fail(WM_EINVAL, "wm_infer_ws: ws is NULL");
    return run_chunks(net, x, s, n, ws, ws_bytes, copy_out, out, 1);
}

static wm_status infer_scratch(const wm_net *net, const float *x, const float *s, int n, float *out,
                               int finite, const char *fn)
{
    wm_status st = check_infer_args(net, x, s, n, out, fn);
    if (st != WM_OK || n == 0)
        return st;
    size_t bytes = wm_infer_workspace_size(net, n);
    void *ws;
    if ((st = wmi_scratch_acquire(bytes, &ws, fn)) != WM_OK)
        return st;
    st = run_chunks(net, x, s, n, ws, bytes, copy_out, out, finite);
    wmi_scratch_release();
    return st;
}

wm_status wm_infer(const wm_net *net, const float *x, const float *s, int n, float *out)
{
    return infer_scratch(net, x, s, n, out, 1, __func__);
}

wm_status wmi_infer_raw(const wm_net *net, const float *x, const float *s, int n, float *out)
{
    return infer_scratch(net, x, s, n, out, 0, "wm_infer");   /* non-finite outputs kept: context search scores them +Inf */
}

typedef struct {
    const wm_net *net;
    const wm_batch *b;
    double loss;
    long correct;
} eval_acc;

static void accumulate_eval(const float *y, size_t row0, int rows, int m, void *ctx)
{
    eval_acc *e = ctx;
    long hits = 0;
    e->loss += wmi_loss(e->net->loss, y, rows, m, e->b->labels ? e->b->labels + row0 : NULL,
                        e->b->targets ? e->b->targets + row0 * m : NULL, NULL, 0.0f, &hits);
    e->correct += hits;
}

wm_status wmi_check_batch(const wm_net *net, const wm_batch *b, const char *fn)
{
    wm_status st = check_net(net, fn);
    if (st != WM_OK)
        return st;
    if (!b)
        return wmi_fail(WM_EINVAL, "%s: batch is NULL", fn);
    if (b->n < 1)
        return wmi_fail(WM_EINVAL, "%s: batch.n = %d: a batch needs at least one sample", fn, b->n);
    if (!b->x)
        return wmi_fail(WM_EINVAL, "%s: batch.x is NULL", fn);
    if (!b->s && net->m->dim > 0)
        return wmi_fail(WM_EINVAL, "%s: batch.s is NULL but the manifold has %d context coordinates",
                       fn, net->m->dim);
    return wmi_check_supervision(net, b);
}

wm_status wm_evaluate(const wm_net *net, const wm_batch *batch, float *loss, float *accuracy)
{
    wm_status st = wmi_check_batch(net, batch, __func__);
    if (st != WM_OK)
        return st;
    size_t bytes = wm_infer_workspace_size(net, batch->n);
    void *ws;
    if ((st = wmi_scratch_acquire(bytes, &ws, __func__)) != WM_OK)
        return st;
    eval_acc e = {net, batch, 0.0, 0};
    st = run_chunks(net, batch->x, batch->s, batch->n, ws, bytes, accumulate_eval, &e, 0);
    wmi_scratch_release();
    if (st != WM_OK)
        return st;
    if (!isfinite(e.loss) || !isfinite((float)(e.loss / batch->n)))
        return wmi_fail(WM_ENUMERIC, "wm_evaluate: the loss is not finite (%g): the activations "
                                    "overflowed", e.loss / batch->n);
    if (loss)
        *loss = (float)(e.loss / batch->n);
    if (accuracy)
        *accuracy = (float)((double)e.correct / batch->n);
    return WM_OK;
}
