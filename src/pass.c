/* pass.c -- forward/backward through the layer list, and the workspace plan.
 *
 * Workspace is one block carved into arrays; everything is sized from the
 * batch's row count, so a net/optimizer/thread allocates once per new size
 * and never inside a steady-state step or inference. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "error.h"
#include "layers/layer.h"
#include "memory.h"
#include "pass.h"
#include "bspline.h"
#include "simd.h"

#define ALIGN_FLOATS 16           /* 64-byte alignment for every array */

/* Saturating (see memory.h): SIZE_MAX stays SIZE_MAX. */
static size_t round_up(size_t n)
{
    return n > SIZE_MAX - ALIGN_FLOATS ? SIZE_MAX : (n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
}

/* Floats of a layer's materialised W(s) and b(s) (0 for pooling). */
static size_t wmat_floats(const wm_layer *ly)
{
    return wmi_layer_has_params(ly) ? round_up((size_t)ly->rows * (ly->cols + 1)) : 0;
}

/* The largest per-layer scratch any layer asks for at n rows (one slot, shared). */
static size_t scratch_floats(const wm_net *net, int n)
{
    size_t most = 0;
    for (int l = 0; l < net->n_layers; l++) {
        const wm_layer_ops *ops = wmi_ops(&net->layers[l]);
        size_t f = ops->scratch_floats ? ops->scratch_floats(&net->layers[l]) : 0;
        if (ops->batch_scratch_floats)
            f = wmi_add_sat(round_up(f), ops->batch_scratch_floats(&net->layers[l], n));
        most = f > most ? f : most;
    }
    return most;
}

/* Walk the layout, either measuring (mem NULL) or assigning pointers. Sizes
 * saturate: an impossible batch measures SIZE_MAX bytes, which no allocation
 * grants, and is never laid out. */
static size_t layout(const wm_net *net, int n, int training, float *mem, wm_pass *p)
{
    size_t off = 0, N = (size_t)n;
#define TAKE(slot, count)                                                        \
    do {                                                                         \
        float **s_ = (slot);                                                     \
        if (mem && s_) *s_ = mem + off;                                          \
        off = wmi_add_sat(off, round_up(count));                                 \
    } while (0)
#define MUL wmi_mul_sat
    TAKE(p ? &p->C : NULL, MUL(N, (size_t)net->Kp));
    if (net->has_points)
        TAKE(p ? &p->ones : NULL, N);
    if (net->n_feat > 0)
        TAKE(p ? &p->xin : NULL, MUL(N, (size_t)wmi_net_in0(net)));
    if (training) {
        for (int l = 0; l < net->n_layers; l++)
            TAKE(p ? &p->act[l] : NULL, MUL(N, (size_t)net->layers[l].out));
        for (int l = 0; l < net->n_layers; l++)
            TAKE(p ? &p->delta[l] : NULL, MUL(N, (size_t)net->layers[l].out));
        size_t all = 0;           /* backward needs every layer's materialised W */
        for (int l = 0; l < net->n_layers; l++)
            all += wmat_floats(&net->layers[l]);
        TAKE(p ? &p->wmat : NULL, all);
        if (net->has_skips)
            TAKE(p ? &p->dtmp : NULL, MUL(N, (size_t)net->max_out));
    } else {
        /* the plan wm_net_init made: a chain alternates two buffers; a skip
         * keeps its source's buffer until its last reader has run */
        float *slot[WM_MAX_LAYERS];
        for (int j = 0; j < net->n_slots; j++)
            TAKE(&slot[j], MUL(N, (size_t)net->max_out));
        if (p && mem)
            for (int l = 0; l < net->n_layers; l++)
                p->act[l] = slot[net->slot[l]];
        size_t most = 0;
        for (int l = 0; l < net->n_layers; l++)
            most = wmat_floats(&net->layers[l]) > most ? wmat_floats(&net->layers[l]) : most;
        TAKE(p ? &p->wmat : NULL, most);
    }
    if (net->local_p >= 0) {      /* the local path's per-sample tables (pass.h) */
        float *t[5] = {NULL, NULL, NULL, NULL, NULL};
        int deg = net->local_p;
        TAKE(&t[0], N);
        TAKE(&t[1], MUL(N, (size_t)deg + 1));
        TAKE(&t[2], N);
        TAKE(&t[3], (size_t)net->Kp + 1);
        TAKE(&t[4], MUL(2 * N, (size_t)net->max_in));
        if (p && mem) {
            p->lpiece = (int *)(void *)t[0], p->lc = t[1], p->lorder = (int *)(void *)t[2];
            p->lstart = (int *)(void *)t[3], p->lx = t[4];
        }
    }
    TAKE(p ? &p->z : NULL, MUL(MUL(N, (size_t)net->Kp), (size_t)net->max_out));
    TAKE(p ? &p->conv : NULL, scratch_floats(net, n));
#undef MUL
#undef TAKE
    return wmi_mul_sat(off, sizeof(float));
}

size_t wmi_pass_bytes(const wm_net *net, int n, int training)
{
    return layout(net, n, training, NULL, NULL);
}

void wmi_pass_layout(const wm_net *net, int n, int training, void *mem, wm_pass *p)
{
    memset(p, 0, sizeof *p);
    p->n = n;
    p->training = training;
    layout(net, n, training, mem, p);
}

/* Every input finite: one vectorised pass, then a search only on failure. */
static wm_status check_inputs(const float *x, int n, int in, int row0)
{
    size_t len = (size_t)n * in;
    if (wmi_max_abs(x, len) == INFINITY)
        for (size_t j = 0; j < len; j++)
            if (!isfinite(x[j]))
                return wmi_fail(WM_EINVAL, "input x[%zu][%zu] is not finite", row0 + j / in, j % in);
    return WM_OK;
}

wm_status wmi_pass_check(const wm_net *net, const float *x, const float *s, int n)
{
    const wm_manifold *m = net->m;
    wm_status st0 = check_inputs(x, n, net->n_inputs, 0);
    if (st0 != WM_OK)
        return st0;
    for (int i = 0; i < n && m->dim > 0; i++) {
        double sw[WM_MAX_DIM];
        wm_status st = wmi_context_check(m, s + (size_t)i * m->dim, i, sw);
        if (st != WM_OK)
            return st;
    }
    return WM_OK;
}

/* A local B-spline net's tables (pass.h): each sample's interval and
 * nonzero basis values, and the samples sorted by interval (counting sort),
 * so that the samples touching control point k are one run of that order. */
static void encode_local(const wm_net *net, wm_pass *p, const float *s, int n)
{
    const wm_manifold *m = net->m;
    int deg = net->local_p, pieces = m->K - deg;
    for (int g = 0; g <= pieces; g++)
        p->lstart[g] = 0;
    for (int i = 0; i < n; i++) {
        double sw[WM_MAX_DIM], N[WM_BSPLINE_MAX_DEGREE + 2];
        wmi_context_check(m, s + (size_t)i * m->dim, i, sw);   /* checked by the caller */
        int g = wmi_bspline_nonzero(m->n_control, deg, 0, sw[0], N);
        p->lpiece[i] = g;
        for (int r = 0; r <= deg; r++)
            p->lc[(size_t)i * (deg + 1) + r] = (float)N[r];
        p->lstart[g + 1]++;
    }
    for (int g = 0; g < pieces; g++)
        p->lstart[g + 1] += p->lstart[g];
    for (int i = 0; i < n; i++)                  /* lstart[g] runs ahead as we place */
        p->lorder[p->lstart[p->lpiece[i]]++] = i;
    for (int g = pieces; g > 0; g--)            /* and back */
        p->lstart[g] = p->lstart[g - 1];
    p->lstart[0] = 0;
}

wm_status wmi_pass_encode(const wm_net *net, wm_pass *p, const float *x, const float *s, int n,
                          int row0)
{
    const wm_manifold *m = net->m;
    int in = net->n_inputs, in0 = wmi_net_in0(net), Kp = net->Kp;
    wm_status st0 = check_inputs(x, n, in, row0);
    if (st0 != WM_OK)
        return st0;
    for (int i = 0; i < n; i++) {
        double sw[WM_MAX_DIM];
        wm_status st = wmi_context_check(m, s ? s + (size_t)i * m->dim : NULL, row0 + i, sw);
        if (st != WM_OK)
            return st;
        if (net->cond == WM_COND_CONCAT)
            p->C[i] = 1.0f;                       /* one point of weights */
        else
            wmi_basis_hat(m, sw, p->C + (size_t)i * Kp);
        if (net->cond != WM_COND_CONCAT && (st = wmi_basis_values_check(m, p->C + (size_t)i * Kp, Kp,
                                                                         row0 + i)) != WM_OK)
            return st;
        if (net->n_feat > 0) {
            float *row = p->xin + (size_t)i * in0;
            memcpy(row, x + (size_t)i * in, sizeof(float) * (size_t)in);
            wmi_features(m, sw, row + in);
            if ((st = wmi_basis_values_check(m, row + in, net->n_feat, row0 + i)) != WM_OK)
                return st;
            if (net->image_concat) {          /* each feature becomes a constant plane */
                size_t hw = (size_t)net->input_h * net->input_w;
                float f[WM_MAX_BASIS];
                memcpy(f, row + in, sizeof(float) * (size_t)net->n_feat);
                for (int j = 0; j < net->n_feat; j++)
                    for (size_t q = 0; q < hw; q++)
                        row[in + j * hw + q] = f[j];
            }
        }
    }
    if (net->local_p >= 0)
        encode_local(net, p, s, n);
    p->x0 = net->n_feat > 0 ? p->xin : x;
    for (int i = 0; p->ones && i < n; i++)
        p->ones[i] = 1.0f;
    /* one sample: the stacked product is a GEMV over the K points, as cheap as
     * materialising W(s) and in the BLAS's wider SIMD, so no "shared" path */
    p->shared = n > 1;
    for (int i = 1; i < n && p->shared; i++)
        p->shared = memcmp(p->C, p->C + (size_t)i * Kp, sizeof(float) * (size_t)Kp) == 0;
    return WM_OK;
}

/* What every layer's forward and backward share, set once per pass. */
static wm_layer_io io_start(const wm_net *net, const wm_pass *p)
{
    wm_layer_io io = {net->params, net->Kp, net->conv_strategy, p->C, p->shared, p->z, p->wmat,
                      p->conv, NULL, 0, NULL, 0, p->training, net->seed, p->step,
                      NULL, net->local_p, net->m->L, p->lpiece, p->lorder, p->lstart, p->lc, p->lx,
                      0, 0};
    return io;
}

/* The per-layer part of io for layer l, whose materialised W sits at wmat. */
static inline void io_layer(const wm_net *net, const wm_pass *p, int l, float *wmat, wm_layer_io *io)
{
    const wm_layer *ly = &net->layers[l];
    io->Kp = ly->Kp;
    io->C = ly->Kp == net->Kp ? p->C : p->ones;     /* a point layer's c_hat is 1 */
    io->wmat = wmat;
    io->P = wmi_layer_local(net, ly) ? net->pcache : NULL;   /* the local B-spline path */
    if (ly->has_in2) {
        io->X2 = ly->in2 < 0 ? p->x0 : p->act[ly->in2];
        io->x2_stride = ly->in2 < 0 ? (size_t)wmi_net_in0(net) : (size_t)net->layers[ly->in2].out;
    }
}

void wmi_pass_layer_io(const wm_net *net, const wm_pass *p, int l, wm_layer_io *io)
{
    *io = io_start(net, p);
    io_layer(net, p, l, p->wmat, io);
}

float *wmi_pass_forward(const wm_net *net, wm_pass *p, int n)
{
    const float *X = p->x0;
    wm_layer_io io = io_start(net, p);
    size_t woff = 0;                    /* training: each layer's own materialised W */
    for (int l = 0; l < net->n_layers; l++) {
        const wm_layer *ly = &net->layers[l];
        io_layer(net, p, l, p->training ? p->wmat + woff : p->wmat, &io);
        woff += wmat_floats(ly);
        wmi_ops(ly)->forward(ly, &io, X, n, p->act[l]);
        X = p->act[l];
    }
    return p->act[net->n_layers - 1];
}

WMI_SIMD_CLONES
float wmi_max_abs(const float *a, size_t n)
{
    /* The bits of |x| order like the values for non-negative floats, with
     * inf and NaN above every finite value; an integer max also vectorises. */
    uint32_t most = 0;
    for (size_t j = 0; j < n; j++) {
        uint32_t b;
        memcpy(&b, &a[j], 4);
        b &= 0x7fffffffu;
        most = b > most ? b : most;
    }
    if (most >= 0x7f800000u)
        return INFINITY;
    float f;
    memcpy(&f, &most, 4);
    return f;
}

/* Layer l has a ReLU that layer l + 1, its only reader, applies the
 * derivative of in its own backward (layer.h: absorbs_relu). */
static int relu_absorbed(const wm_net *net, int l)
{
    return l >= 0 && l + 1 < net->n_layers && !net->has_skips && net->layers[l].act == WM_ACT_RELU &&
           wmi_ops(&net->layers[l])->relu_absorbable && wmi_ops(&net->layers[l + 1])->absorbs_relu;
}

/* Backward through every layer; grad NULL skips the weight gradients. The
 * first layer's input gradient is never needed. */
static float backward(const wm_net *net, wm_pass *p, int n, const float *dy, float *grad,
                      wm_grad_ready_fn ready, void *user)
{
    double bound = 0.0, cmax = wmi_max_abs(p->C, (size_t)n * net->Kp);
    int last = net->n_layers - 1;
    /* written[j]: a reader of output j has already put its part of the
     * gradient in delta[j]; the next reader adds to it */
    unsigned char written[WM_MAX_LAYERS];
    if (net->has_skips)
        memset(written, 0, sizeof written);
    wm_layer_io io = io_start(net, p);
    size_t woff = 0;
    for (int l = 0; l < net->n_layers; l++)
        woff += wmat_floats(&net->layers[l]);
    memcpy(p->delta[last], dy, sizeof(float) * (size_t)n * net->layers[last].out);
    for (int l = last; l >= 0; l--) {
        const wm_layer *ly = &net->layers[l];
        const float *X = l > 0 ? p->act[l - 1] : p->x0;
        float *d = p->delta[l], *dX = l > 0 ? p->delta[l - 1] : NULL;
        int add = net->has_skips && l > 0 && written[l - 1];   /* a skip read output l-1 too */
        if (add)
            dX = p->dtmp;
        const wm_layer_ops *ops = wmi_ops(ly);
        woff -= wmat_floats(ly);
        io_layer(net, p, l, p->wmat + woff, &io);  /* backward runs in training: W per layer */
        io.dX2 = NULL, io.dX2_add = 0;
        io.act_done = relu_absorbed(net, l), io.relu_below = relu_absorbed(net, l - 1);
        if (net->has_skips && l > 0)
            written[l - 1] = 1;
        if (ly->has_in2 && ly->in2 >= 0) {
            io.dX2 = p->delta[ly->in2];
            io.dX2_add = written[ly->in2];
        }
        ops->backward(ly, &io, X, n, p->act[l], d, grad, dX);
        if (ly->has_in2 && ly->in2 >= 0)
            written[ly->in2] = 1;             /* (has_in2 implies has_skips) */
        if (add) {
            float *acc = p->delta[l - 1];
            for (size_t j = 0, len = (size_t)n * ly->in; j < len; j++)
                acc[j] += dX[j];
        }
        if (wmi_layer_has_params(ly)) {     /* d now holds this layer's delta */
            double positions = ops->grad_uses ? ops->grad_uses(ly) : 1.0;
            double xmax = wmi_max_abs(X, (size_t)n * ly->in), dmax = wmi_max_abs(d, (size_t)n * ly->out);
            /* x2: room for the rounding of n-term float sums */
            double cl = ly->Kp == net->Kp ? cmax : 1.0;     /* a point layer's c_hat is 1 */
            double b = 2.0 * n * positions * cl * dmax * (xmax > 1.0 ? xmax : 1.0);
            bound = b > bound || isnan(b) ? b : bound;
            /* layer l's block of grad is final: no later layer writes it */
            if (ready && grad)
                ready(user, l, ly->w_off, (size_t)ly->Kp * ly->rows * ((size_t)ly->cols + 1));
        }
    }
    return bound < 3e38 ? (float)bound : INFINITY;
}

float wmi_pass_backward(const wm_net *net, wm_pass *p, int n, float *dy, float *grad)
{
    return backward(net, p, n, dy, grad, NULL, NULL);
}

float wmi_pass_backward_notify(const wm_net *net, wm_pass *p, int n, float *dy, float *grad,
                               wm_grad_ready_fn ready, void *user)
{
    return backward(net, p, n, dy, grad, ready, user);
}

float wmi_pass_backward_deltas(const wm_net *net, wm_pass *p, int n, const float *dy)
{
    return backward(net, p, n, dy, NULL, NULL, NULL);
}

wm_status wmi_check_supervision(const wm_net *net, const wm_batch *b)
{
    int m = net->layers[net->n_layers - 1].out;
    if (net->loss == WM_LOSS_SOFTMAX_CE) {
        if (!b->labels)
            return wmi_fail(WM_EINVAL, "batch.labels is NULL but the loss is softmax cross-entropy");
        for (int i = 0; i < b->n; i++)
            if (b->labels[i] < 0 || b->labels[i] >= m)
                return wmi_fail(WM_EINVAL, "labels[%d] = %d is out of range for %d classes", i,
                               (int)b->labels[i], m);
    } else {
        if (!b->targets)
            return wmi_fail(WM_EINVAL, "batch.targets is NULL but the loss is MSE");
        for (size_t i = 0; i < (size_t)b->n * m; i++)
            if (!isfinite(b->targets[i]))
                return wmi_fail(WM_EINVAL, "targets[%zu][%zu] is not finite", i / m, i % m);
    }
    return WM_OK;
}
