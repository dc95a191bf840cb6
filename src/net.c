/* net.c -- building a network: layers, loss, initialisation, and the views
 * of its parameters in the paper's coordinates (W(s), P_k). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "activation.h"
#include "layers/dense.h"
#include "layers/layer.h"
#include "error.h"
#include "memory.h"
#include "linalg.h"
#include "net.h"
#include "rng.h"

#define MAX_PARAMS ((size_t)1 << 31)     /* 8 GiB of floats: beyond is a mistake */
/* Every per-sample size (a layer's inputs, outputs, matrix columns; the first
 * layer's input with a concat net's feature planes) fits this, so every
 * product the passes form in int (a row index times a width, Kp x rows) stays
 * far from INT_MAX. Sizes are computed in 64 bits and checked against it
 * before anything changes. */
#define MAX_FEATURES WMI_MAX_FEATURES

wm_status wm_net_create(wm_net **out, const wm_manifold *m, int n_inputs, wm_conditioning cond)
{
    if (!out)
        return wmi_fail(WM_EINVAL, "wm_net_create: out is NULL");
    if (!m)
        return wmi_fail(WM_EINVAL, "wm_net_create: manifold is NULL");
    if (n_inputs < 1 || n_inputs > (1 << 24))
        return wmi_fail(WM_EINVAL, "wm_net_create: n_inputs = %d must be in 1..%d", n_inputs, 1 << 24);
    if (cond != WM_COND_MANIFOLD && cond != WM_COND_CONCAT)
        return wmi_fail(WM_EINVAL, "wm_net_create: conditioning %d is neither WM_COND_MANIFOLD nor WM_COND_CONCAT",
                       (int)cond);
    wm_net *net = calloc(1, sizeof *net);
    if (!net)
        return wmi_fail(WM_ENOMEM, "wm_net_create: out of memory");
    if (wm_manifold_clone(&net->m, m) != WM_OK) {
        free(net);
        return wmi_fail(WM_ENOMEM, "wm_net_create: out of memory");
    }
    net->cond = cond;
    net->n_inputs = n_inputs;
    net->n_feat = cond == WM_COND_CONCAT ? m->n_feat : 0;
    net->Kp = cond == WM_COND_CONCAT ? 1 : m->K;
    net->loss = WM_LOSS_SOFTMAX_CE;
    net->max_in = wmi_net_in0(net);
    /* local support pays off, and L stays banded, on open B-splines */
    net->local_p = cond == WM_COND_MANIFOLD && m->kind == WM_MF_BSPLINE && !m->closed ? m->degree : -1;
    *out = net;
    return WM_OK;
}

/* Common checks before adding any layer. */
wm_status wmi_net_check_add(const wm_net *net, const char *fn)
{
    if (!net)
        return wmi_fail(WM_EINVAL, "%s: net is NULL", fn);
    if (net->initialised)
        return wmi_fail(WM_ESTATE, "%s: layers must be added before wm_net_init", fn);
    if (net->n_layers == WM_MAX_LAYERS)
        return wmi_fail(WM_EINVAL, "%s: a net holds at most %d layers", fn, WM_MAX_LAYERS);
    return WM_OK;
}

/* The first layer decides how a concat net's features enter: as values after
 * the inputs (dense), or as constant planes (conv, pool). The check is pure
 * (the adders call it with their other checks); append commits. */
wm_status wmi_net_check_first_input(const wm_net *net, int spatial, const char *fn)
{
    if (net->n_layers > 0)
        return WM_OK;
    int image_concat = spatial && net->n_feat > 0;
    int64_t in0 = (int64_t)net->n_inputs +
                  (int64_t)net->n_feat * (image_concat ? (int64_t)net->input_h * net->input_w : 1);
    if (in0 > MAX_FEATURES)
        return wmi_fail(WM_EINVAL, "%s: the first layer's input would have %lld values per sample "
                                  "(%d inputs + %d context features%s); at most %lld", fn,
                       (long long)in0, net->n_inputs, net->n_feat,
                       image_concat ? " as constant planes" : "", (long long)MAX_FEATURES);
    return WM_OK;
}

static void commit_first_input(wm_net *net, int spatial)
{
    if (net->n_layers > 0)
        return;
    net->image_concat = spatial && net->n_feat > 0;
    if (spatial)
        net->shape_c = net->input_c + (net->image_concat ? net->n_feat : 0);
    net->max_in = wmi_net_in0(net);
}

/* Append ly (kind, out, rows, cols, shapes, act filled in), placing its
 * parameter blocks; fails without changing the net if too large. */
wm_status wmi_net_append(wm_net *net, wm_layer *ly, int spatial, const char *fn)
{
    if (ly->out < 1 || ly->out > MAX_FEATURES || ly->cols > MAX_FEATURES)
        return wmi_fail(WM_EINVAL, "%s: the layer would have %d outputs and %d columns per sample; "
                                  "each must be in 1..%lld", fn, ly->out, ly->cols, (long long)MAX_FEATURES);
    ly->Kp = net->Kp;                  /* on the manifold, until wm_net_set_layer_manifold */
    ly->index = net->n_layers;
    size_t add = (size_t)net->Kp * ly->rows * ((size_t)ly->cols + 1);
    if (add > MAX_PARAMS - net->n_params)
        return wmi_fail(WM_EINVAL, "%s: the net would exceed %zu parameters", fn, MAX_PARAMS);
    commit_first_input(net, spatial);
    ly->in = net->n_layers ? net->layers[net->n_layers - 1].out : wmi_net_in0(net);
    ly->w_off = net->n_params;
    ly->b_off = net->n_params + (size_t)net->Kp * ly->rows * ly->cols;
    net->n_params += add;
    net->layers[net->n_layers++] = *ly;
    if (ly->has_in2)
        net->has_skips = 1;
    if (ly->out > net->max_out)
        net->max_out = ly->out;
    if (ly->out > net->max_in)
        net->max_in = ly->out;
    if (ly->out_c > 0) {                                  /* an image output */
        net->shape_c = ly->out_c, net->shape_h = ly->out_h, net->shape_w = ly->out_w;
    } else {
        net->shape_c = net->shape_h = net->shape_w = 0;   /* flat from here on */
    }
    return WM_OK;
}

wm_status wm_net_input_shape(wm_net *net, int channels, int height, int width)
{
    if (!net)
        return wmi_fail(WM_EINVAL, "wm_net_input_shape: net is NULL");
    if (net->n_layers > 0 || net->initialised)
        return wmi_fail(WM_ESTATE, "wm_net_input_shape: the input shape must be set before the first layer");
    /* each side is at most n_inputs (<= 2^24), so the products cannot overflow */
    if (channels < 1 || height < 1 || width < 1 || channels > net->n_inputs ||
        height > net->n_inputs || width > net->n_inputs ||
        (long long)channels * height > net->n_inputs ||
        (long long)channels * height * width != net->n_inputs)
        return wmi_fail(WM_EINVAL, "wm_net_input_shape: %d x %d x %d does not match n_inputs = %d",
                       channels, height, width, net->n_inputs);
    net->input_c = net->shape_c = channels;
    net->input_h = net->shape_h = height;
    net->input_w = net->shape_w = width;
    return WM_OK;
}

wm_status wmi_net_check_spatial(const wm_net *net, const char *fn)
{
    if (net->input_c == 0)
        return wmi_fail(WM_EINVAL, "%s: the net has no input shape (call wm_net_input_shape first)", fn);
    if (net->shape_c == 0)
        return wmi_fail(WM_EINVAL, "%s: a convolution or pooling cannot follow a dense layer", fn);
    return WM_OK;
}

int wmi_net_in_channels(const wm_net *net)
{
    return net->n_layers == 0 && net->n_feat > 0 ? net->input_c + net->n_feat : net->shape_c;
}

wm_status wmi_net_current(const wm_net *net, int *F, int *c, int *h, int *w, const char *fn)
{
    if (net->n_layers > 0) {
        const wm_layer *ly = &net->layers[net->n_layers - 1];
        *F = ly->out, *c = ly->out_c, *h = ly->out_h, *w = ly->out_w;
        return WM_OK;
    }
    if (net->n_feat > 0)
        return wmi_fail(WM_EINVAL, "%s: on a concatenation net this cannot be the first layer (add a dense "
                                  "or conv layer first)", fn);
    *F = net->n_inputs, *c = net->input_c, *h = net->input_h, *w = net->input_w;
    return WM_OK;
}

/* Lay the parameter blocks out again after a placement changed. */
static void place_blocks(wm_net *net)
{
    size_t off = 0;
    net->has_points = 0;
    for (int l = 0; l < net->n_layers; l++) {
        wm_layer *ly = &net->layers[l];
        ly->w_off = off;
        ly->b_off = off + (size_t)ly->Kp * ly->rows * ly->cols;
        off += (size_t)ly->Kp * ly->rows * ((size_t)ly->cols + 1);
        if (ly->rows > 0 && ly->Kp < net->Kp)
            net->has_points = 1;
    }
    net->n_params = off;
}

wm_status wm_net_set_layer_manifold(wm_net *net, int layer, int on)
{
    if (!net)
        return wmi_fail(WM_EINVAL, "wm_net_set_layer_manifold: net is NULL");
    if (layer < 0 || layer >= net->n_layers)
        return wmi_fail(WM_EINVAL, "wm_net_set_layer_manifold: layer %d does not exist (the net has %d)",
                       layer, net->n_layers);
    if (on != 0 && on != 1)
        return wmi_fail(WM_EINVAL, "wm_net_set_layer_manifold: on = %d must be 0 or 1", on);
    if (net->cond == WM_COND_CONCAT)
        return wmi_fail(WM_EINVAL, "wm_net_set_layer_manifold: a concatenation net has one point of "
                                  "weights; placement is for manifold nets");
    if (net->initialised)
        return wmi_fail(WM_ESTATE, "wm_net_set_layer_manifold: placement must be set before wm_net_init");
    wm_layer *ly = &net->layers[layer];
    if (!wmi_layer_has_params(ly))
        return WM_OK;                           /* nothing to place */
    int Kp = on ? net->Kp : 1;
    size_t now = (size_t)ly->Kp * ly->rows * ((size_t)ly->cols + 1);
    size_t then = (size_t)Kp * ly->rows * ((size_t)ly->cols + 1);
    if (then > now && then - now > MAX_PARAMS - net->n_params)
        return wmi_fail(WM_EINVAL, "wm_net_set_layer_manifold: the net would exceed %zu parameters",
                       MAX_PARAMS);
    ly->Kp = Kp;
    place_blocks(net);
    return WM_OK;
}

int wmi_net_in_features(const wm_net *net)
{
    return net->n_layers ? net->layers[net->n_layers - 1].out : net->n_inputs + net->n_feat;
}

wm_status wm_net_set_conv_strategy(wm_net *net, wm_conv_strategy strategy)
{
    if (!net)
        return wmi_fail(WM_EINVAL, "wm_net_set_conv_strategy: net is NULL");
    if (strategy != WM_CONV_AUTO && strategy != WM_CONV_STACKED && strategy != WM_CONV_MATERIALISED)
        return wmi_fail(WM_EINVAL, "wm_net_set_conv_strategy: %d is not a wm_conv_strategy", (int)strategy);
    net->conv_strategy = strategy;
    return WM_OK;
}

wm_status wm_net_set_loss(wm_net *net, wm_loss loss)
{
    if (!net)
        return wmi_fail(WM_EINVAL, "wm_net_set_loss: net is NULL");
    if (loss != WM_LOSS_SOFTMAX_CE && loss != WM_LOSS_MSE)
        return wmi_fail(WM_EINVAL, "wm_net_set_loss: loss %d is not a wm_loss", (int)loss);
    if (net->initialised)
        return wmi_fail(WM_ESTATE, "wm_net_set_loss: the loss must be set before wm_net_init");
    net->loss = loss;
    return WM_OK;
}

/* Coefficients in Q coordinates of the constant function: with P_k = a_k W0
 * (sum_k a_k c_k(s) = 1) we get W(s) = W0 everywhere, and Q = L^T P. */
static void constant_direction(const wm_net *net, double *q0)
{
    const wm_manifold *m = net->m;
    if (net->Kp == 1) {
        q0[0] = 1.0;
        return;
    }
    for (int j = 0; j < m->K; j++) {
        double v = 0;
        for (int k = j; k < m->K; k++)          /* (L^T a)_j = sum_k L_kj a_k */
            v += m->L[k * m->K + j] * m->const_coef[k];
        q0[j] = v;
    }
}

void wmi_init_weights(const wm_layer *ly, float *w0, wmi_rng *rng)
{
    /* fans as PyTorch counts them: a conv's fan_out includes its kernel area */
    int glorot = ly->act == WM_ACT_TANH || ly->act == WM_ACT_SIGMOID;
    double fan_in = ly->cols, fan_out = (double)ly->rows * (ly->k ? ly->k * ly->k : 1);
    double sd = glorot ? sqrt(2.0 / (fan_in + fan_out)) : sqrt(2.0 / fan_in);
    size_t wn = (size_t)ly->rows * ly->cols;
    for (size_t j = 0; j < wn; j++)
        w0[j] = (float)(sd * wmi_rng_normal(rng));
}

void wmi_net_plan(wm_net *net)
{
    int L = net->n_layers, last[WM_MAX_LAYERS], holder[WM_MAX_LAYERS], n_slots = 0;
    for (int j = 0; j < L; j++)                /* the last layer that reads output j */
        last[j] = j + 1;                       /* the last layer's: the caller, after all */
    for (int l = 0; l < L; l++)
        if (net->layers[l].has_in2 && net->layers[l].in2 >= 0 && last[net->layers[l].in2] < l)
            last[net->layers[l].in2] = l;
    for (int l = 0; l < L; l++) {
        int s = -1;
        for (int j = 0; j < n_slots; j++) {    /* free what no later layer reads */
            if (holder[j] >= 0 && last[holder[j]] < l)
                holder[j] = -1;
            if (holder[j] < 0 && s < 0)
                s = j;
        }
        if (s < 0)
            s = n_slots++;
        holder[s] = l;
        net->slot[l] = s;
    }
    net->n_slots = n_slots < 2 ? 2 : n_slots;  /* a chain's two, as before the plan */
}

wm_status wm_net_init(wm_net *net, uint64_t seed)
{
    if (!net)
        return wmi_fail(WM_EINVAL, "wm_net_init: net is NULL");
    if (net->n_layers == 0)
        return wmi_fail(WM_ESTATE, "wm_net_init: the net has no layers (add them with wm_net_dense)");
    if (net->loss == WM_LOSS_SOFTMAX_CE && net->layers[net->n_layers - 1].out < 2)
        return wmi_fail(WM_ESTATE, "wm_net_init: softmax cross-entropy needs at least 2 outputs, the last layer has %d",
                       net->layers[net->n_layers - 1].out);
    double *q0 = malloc(sizeof(double) * (size_t)net->Kp);
    float *params = net->initialised ? net->params : wmi_alloc_floats(net->n_params, 0);
    void *pc_mem = net->pcache_mem;
    float *pc = net->local_p < 0 || net->pcache || !params
                    ? net->pcache
                    : wmi_alloc_floats_apart(net->n_params, 1, params, WMI_APART_PCACHE, &pc_mem);
    if (!q0 || !params || (net->local_p >= 0 && !pc)) {
        free(q0);
        if (params != net->params)
            free(params);
        if (pc_mem != net->pcache_mem)
            free(pc_mem);
        return wmi_fail(WM_ENOMEM, "wm_net_init: out of memory for %zu parameters", net->n_params);
    }
    constant_direction(net, q0);
    double one = 1.0;                           /* a point layer's constant direction */
    wmi_rng rng;
    wmi_rng_seed(&rng, seed);
    for (int l = 0; l < net->n_layers; l++) {
        const wm_layer *ly = &net->layers[l];
        if (!wmi_layer_has_params(ly))
            continue;
        /* W0 and b0 into slot 0, then spread over the constant direction */
        size_t wn = (size_t)ly->rows * ly->cols, bn = (size_t)ly->rows;
        float *Q = params + ly->w_off, *B = params + ly->b_off;
        memset(B, 0, sizeof(float) * bn);
        wmi_ops(ly)->init(ly, Q, B, &rng);
        const double *qd = ly->Kp == net->Kp ? q0 : &one;
        for (int k = ly->Kp - 1; k >= 0; k--) {
            for (size_t j = 0; j < wn; j++)
                Q[(size_t)k * wn + j] = (float)(qd[k] * Q[j]);
            for (size_t j = 0; j < bn; j++)          /* + 0: a zero bias stays +0 */
                B[(size_t)k * bn + j] = (float)(qd[k] * B[j]) + 0.0f;
        }
    }
    free(q0);
    wmi_net_plan(net);
    net->params = params;
    net->pcache = pc;
    net->pcache_mem = pc_mem;
    net->initialised = 1;
    net->inits++;
    net->seed = seed;
    wmi_net_touch(net);
    return WM_OK;
}

static void refresh_p(wm_net *net)
{
    if (!net->pcache || !net->initialised)
        return;
    /* last layer first, last point first (the solve's order): the reverse
     * of the update's pass, so what it wrote last is read while in cache */
    for (int l = net->n_layers - 1; l >= 0; l--) {
        const wm_layer *ly = &net->layers[l];
        if (!wmi_layer_cached(net, ly))
            continue;
        /* P = L^-T Q: L^T P = Q, a banded solve (L_jk = 0 for j - k > p) */
        wmi_band_solve_upper_t(net->m->L, net->Kp, net->local_p, net->params + ly->w_off,
                               net->pcache + ly->w_off, (size_t)ly->rows * ly->cols);
        wmi_band_solve_upper_t(net->m->L, net->Kp, net->local_p, net->params + ly->b_off,
                               net->pcache + ly->b_off, (size_t)ly->rows);
    }
    net->pversion = net->version;
}

void wmi_net_touch(wm_net *net)
{
    net->version++;
    refresh_p(net);
}

void wmi_net_touch_step(wm_net *net)
{
    net->version++;
    if (net->plive)
        refresh_p(net);
}

void wmi_net_touch_step_cached(wm_net *net)
{
    net->plive = 1;
    net->version++;
    net->pversion = net->version;
}

void wmi_net_local_step(wm_net *net, int mixed)
{
    net->plive = mixed;
}

int wm_net_n_inputs(const wm_net *net) { return net ? net->n_inputs : -1; }
int wm_net_n_layers(const wm_net *net) { return net ? net->n_layers : -1; }
size_t wm_net_n_params(const wm_net *net) { return net ? net->n_params : 0; }
int wm_net_context_dim(const wm_net *net) { return net ? net->m->dim : -1; }
const wm_manifold *wm_net_manifold(const wm_net *net) { return net ? net->m : NULL; }

int wm_net_n_outputs(const wm_net *net)
{
    if (!net)
        return -1;
    return net->n_layers ? net->layers[net->n_layers - 1].out : 0;
}

const float *wm_net_params(const wm_net *net, size_t *len)
{
    if (len)
        *len = net && net->initialised ? net->n_params : 0;
    return net && net->initialised ? net->params : NULL;
}

wm_status wm_net_set_params(wm_net *net, const float *q, size_t len)
{
    if (!net || !q)
        return wmi_fail(WM_EINVAL, "wm_net_set_params: %s is NULL", !net ? "net" : "q");
    if (!net->initialised)
        return wmi_fail(WM_ESTATE, "wm_net_set_params: the net is not initialised (call wm_net_init)");
    if (len != net->n_params)
        return wmi_fail(WM_EINVAL, "wm_net_set_params: len = %zu but the net has %zu parameters", len,
                       net->n_params);
    for (size_t j = 0; j < len; j++)
        if (!isfinite(q[j]))
            return wmi_fail(WM_EINVAL, "wm_net_set_params: q[%zu] is not finite", j);
    memcpy(net->params, q, sizeof(float) * len);
    wmi_net_touch(net);
    return WM_OK;
}

static wm_status check_layer(const wm_net *net, int layer, const char *fn)
{
    if (!net)
        return wmi_fail(WM_EINVAL, "%s: net is NULL", fn);
    if (layer < 0 || layer >= net->n_layers)
        return wmi_fail(WM_EINVAL, "%s: layer %d does not exist (the net has %d)", fn, layer,
                       net->n_layers);
    return WM_OK;
}

wm_status wm_net_layer_info(const wm_net *net, int layer, int *n_in, int *n_out, wm_activation *act)
{
    wm_status st = check_layer(net, layer, __func__);
    if (st != WM_OK)
        return st;
    const wm_layer *ly = &net->layers[layer];
    int has = wmi_layer_has_params(ly) && wmi_ops(ly)->info_matrix;
    if (n_in)
        *n_in = has ? ly->cols : ly->in;
    if (n_out)
        *n_out = has ? ly->rows : ly->out;
    if (act)
        *act = net->layers[layer].act;
    return WM_OK;
}

/* The first j in 0..len-1 at which sum_k c_k Q[k len + j] could overflow
 * float when summed in float in any order (sum_k |c_k Q_kj| >= FLT_MAX), or
 * len if none: finite parameters can still give an Inf weight. */
static size_t sum_overflows(const float *Q, size_t len, int Kp, const float *c)
{
    for (size_t j = 0; j < len; j++) {
        double bound = 0;
        for (int k = 0; k < Kp; k++)
            bound += fabs((double)c[k] * Q[(size_t)k * len + j]);
        if (!(bound < FLT_MAX))
            return j;
    }
    return len;
}

wm_status wm_net_weights_at(const wm_net *net, int layer, const float *s, float *w, float *b)
{
    wm_status st = check_layer(net, layer, __func__);
    if (st != WM_OK)
        return st;
    if (!wmi_layer_has_params(&net->layers[layer]))
        return wmi_fail(WM_EINVAL, "wm_net_weights_at: layer %d (%s) has no weights", layer,
                         wmi_ops(&net->layers[layer])->name);
    if (!net->initialised)
        return wmi_fail(WM_ESTATE, "wm_net_weights_at: the net is not initialised (call wm_net_init)");
    float chat[WM_MAX_BASIS];
    if (net->layers[layer].Kp == 1) {
        chat[0] = 1.0f;                        /* a point or a concat net: s is unused */
    } else {
        double sw[WM_MAX_DIM];
        if (!s)
            return wmi_fail(WM_EINVAL, "wm_net_weights_at: s is NULL but the manifold has %d context coordinates",
                           net->m->dim);
        if ((st = wmi_context_check(net->m, s, -1, sw)) != WM_OK)
            return st;
        wmi_basis_hat(net->m, sw, chat);
        if ((st = wmi_basis_values_check(net->m, chat, net->layers[layer].Kp, -1)) != WM_OK)
            return st;
    }
    const wm_layer *ly = &net->layers[layer];
    size_t wn = (size_t)ly->rows * ly->cols, nb = (size_t)ly->rows;
    size_t bw = w ? sum_overflows(net->params + ly->w_off, wn, ly->Kp, chat) : wn;
    size_t bb = b ? sum_overflows(net->params + ly->b_off, nb, ly->Kp, chat) : nb;
    if (bw < wn || bb < nb)
        return wmi_fail(WM_ENUMERIC, "wm_net_weights_at: %s[%zu] of layer %d at this context does not fit in "
                                    "float (the parameters are too large): nothing was written",
                        bw < wn ? "w" : "b", bw < wn ? bw : bb, layer);
    wmi_dense_materialise(ly, net->params, ly->Kp, chat, w, b);
    return WM_OK;
}

wm_status wm_net_set_context_range(wm_net *net, int coord, float lo, float hi)
{
    if (!net)
        return wmi_fail(WM_EINVAL, "wm_net_set_context_range: net is NULL");
    if (net->initialised)
        return wmi_fail(WM_ESTATE, "wm_net_set_context_range: the context's units are set before wm_net_init");
    if (coord < 0 || coord >= net->m->dim)
        return wmi_fail(WM_EINVAL, "wm_net_set_context_range: coordinate %d does not exist (the manifold has %d)",
                       coord, net->m->dim);
    double span = (double)hi - (double)lo;
    if (!isfinite(lo) || !isfinite(hi) || !(span > 0) || !isfinite((float)span) ||
        !(span >= 1e-6 * fmax(fabs(lo), fabs(hi))))
        return wmi_fail(WM_EINVAL, "wm_net_set_context_range: [%.9g, %.9g] is not a range: lo < hi, both "
                                  "finite, and hi - lo at least 1e-6 of their size (float resolution)",
                       (double)lo, (double)hi);
    wm_manifold *m = net->m;
    if (!m->ranged)
        for (int d = 0; d < m->dim; d++)
            m->lo[d] = 0.0, m->hi[d] = 1.0;
    m->ranged = 1;
    m->lo[coord] = lo;
    m->hi[coord] = hi;
    return WM_OK;
}

wm_status wm_net_context_range(const wm_net *net, int coord, float *lo, float *hi)
{
    if (!net)
        return wmi_fail(WM_EINVAL, "wm_net_context_range: net is NULL");
    if (coord < 0 || coord >= net->m->dim)
        return wmi_fail(WM_EINVAL, "wm_net_context_range: coordinate %d does not exist (the manifold has %d)",
                       coord, net->m->dim);
    if (lo)
        *lo = net->m->ranged ? (float)net->m->lo[coord] : 0.0f;
    if (hi)
        *hi = net->m->ranged ? (float)net->m->hi[coord] : 1.0f;
    return WM_OK;
}

void wmi_q_to_p(const wm_net *net, int Kp, const float *Qblock, size_t len, int k, float *Pk)
{
    const wm_manifold *m = net->m;
    if (Kp == 1) {
        memcpy(Pk, Qblock, sizeof(float) * len);
        return;
    }
    for (size_t j = 0; j < len; j++) {
        double v = 0;
        for (int i = k; i < m->K; i++)          /* (L^-T)_{k i} = Linv[i][k] */
            v += m->Linv[i * m->K + k] * Qblock[(size_t)i * len + j];
        Pk[j] = (float)v;
    }
}

static wm_status check_point(const wm_net *net, int layer, int k, const char *fn)
{
    wm_status st = check_layer(net, layer, fn);
    if (st != WM_OK)
        return st;
    if (!wmi_layer_has_params(&net->layers[layer]))
        return wmi_fail(WM_EINVAL, "%s: layer %d (%s) has no parameters", fn, layer,
                         wmi_ops(&net->layers[layer])->name);
    if (k < 0 || k >= net->layers[layer].Kp)
        return wmi_fail(WM_EINVAL, "%s: control point %d does not exist (K = %d%s)", fn, k,
                       net->layers[layer].Kp, net->layers[layer].Kp < net->Kp ? ": a point layer" : "");
    if (!net->initialised)
        return wmi_fail(WM_ESTATE, "%s: the net is not initialised (call wm_net_init)", fn);
    return WM_OK;
}

/* The first j at which wmi_q_to_p's P_k[j] would not fit in float, or len. */
static size_t p_overflows(const wm_net *net, int Kp, const float *Qblock, size_t len, int k)
{
    const wm_manifold *m = net->m;
    if (Kp == 1)
        return len;                     /* a copy of finite values */
    for (size_t j = 0; j < len; j++) {
        double v = 0;
        for (int i = k; i < m->K; i++)
            v += m->Linv[i * m->K + k] * Qblock[(size_t)i * len + j];
        if (!isfinite((float)v))
            return j;
    }
    return len;
}

wm_status wm_net_control_point(const wm_net *net, int layer, int k, float *w, float *b)
{
    wm_status st = check_point(net, layer, k, __func__);
    if (st != WM_OK)
        return st;
    const wm_layer *ly = &net->layers[layer];
    size_t wn = (size_t)ly->rows * ly->cols, bad;
    if ((w && (bad = p_overflows(net, ly->Kp, net->params + ly->w_off, wn, k)) < wn) ||
        (b && (bad = p_overflows(net, ly->Kp, net->params + ly->b_off, (size_t)ly->rows, k)) < (size_t)ly->rows))
        return wmi_fail(WM_ENUMERIC, "wm_net_control_point: entry %zu of P_%d of layer %d does not fit in float "
                                    "(P = L^-T Q; the parameters are too large): nothing was written", bad, k, layer);
    if (w)
        wmi_q_to_p(net, ly->Kp, net->params + ly->w_off, wn, k, w);
    if (b)
        wmi_q_to_p(net, ly->Kp, net->params + ly->b_off, (size_t)ly->rows, k, b);
    return WM_OK;
}

/* Q = L^T P: changing P_k by d changes Q_j by L_kj d for j <= k.
 * write = 0 only checks that every new Q value is finite (a basis with
 * large values, e.g. a custom one, has L > 1, so finite P can overflow Q)
 * and returns the index of the first that is not, or len if all are. */
static size_t set_point_block(wm_net *net, int Kp, float *Qblock, size_t len, int k, const float *Pk_new,
                              int write)
{
    const wm_manifold *m = net->m;
    for (size_t j = 0; j < len; j++) {
        double old = 0;
        if (Kp == 1) {
            if (write)
                Qblock[j] = Pk_new[j];
            continue;
        }
        for (int i = k; i < m->K; i++)
            old += m->Linv[i * m->K + k] * Qblock[(size_t)i * len + j];
        double d = (double)Pk_new[j] - old;
        for (int i = 0; i <= k; i++) {
            float v = Qblock[(size_t)i * len + j] + (float)(m->L[k * m->K + i] * d);
            if (write)
                Qblock[(size_t)i * len + j] = v;
            else if (!isfinite(v))
                return j;
        }
    }
    return len;
}

wm_status wm_net_set_control_point(wm_net *net, int layer, int k, const float *w, const float *b)
{
    wm_status st = check_point(net, layer, k, __func__);
    if (st != WM_OK)
        return st;
    wm_layer *ly = &net->layers[layer];
    size_t wn = (size_t)ly->rows * ly->cols;
    for (size_t j = 0; w && j < wn; j++)
        if (!isfinite(w[j]))
            return wmi_fail(WM_EINVAL, "wm_net_set_control_point: w[%zu] is not finite", j);
    for (int j = 0; b && j < ly->rows; j++)
        if (!isfinite(b[j]))
            return wmi_fail(WM_EINVAL, "wm_net_set_control_point: b[%d] is not finite", j);
    size_t bad;                         /* first prove every new value finite, then write */
    if (w && (bad = set_point_block(net, ly->Kp, net->params + ly->w_off, wn, k, w, 0)) < wn)
        return wmi_fail(WM_ENUMERIC, "wm_net_set_control_point: w[%zu] = %g overflows float in the "
                                    "orthonormal coordinates (Q = L^T P): nothing was changed", bad, (double)w[bad]);
    if (b && (bad = set_point_block(net, ly->Kp, net->params + ly->b_off, (size_t)ly->rows, k, b, 0)) <
                 (size_t)ly->rows)
        return wmi_fail(WM_ENUMERIC, "wm_net_set_control_point: b[%zu] = %g overflows float in the "
                                    "orthonormal coordinates (Q = L^T P): nothing was changed", bad, (double)b[bad]);
    if (w)
        set_point_block(net, ly->Kp, net->params + ly->w_off, wn, k, w, 1);
    if (b)
        set_point_block(net, ly->Kp, net->params + ly->b_off, (size_t)ly->rows, k, b, 1);
    wmi_net_touch(net);
    return WM_OK;
}

wm_status wm_net_clone(wm_net **out, const wm_net *net)
{
    if (!out || !net)
        return wmi_fail(WM_EINVAL, "wm_net_clone: %s is NULL", !out ? "out" : "net");
    wm_net *c = malloc(sizeof *c);
    if (!c)
        return wmi_fail(WM_ENOMEM, "wm_net_clone: out of memory");
    *c = *net;                          /* layers are inline; two pointers to copy */
    c->m = NULL;
    c->params = c->pcache = NULL;
    c->pcache_mem = NULL;
    if (wm_manifold_clone(&c->m, net->m) != WM_OK ||
        (net->initialised && !(c->params = wmi_alloc_floats(net->n_params, 0))) ||
        (net->pcache && !(c->pcache = wmi_alloc_floats_apart(net->n_params, 1, c->params,
                                                              WMI_APART_PCACHE, &c->pcache_mem)))) {
        wm_manifold_free(c->m);
        free(c->params);
        free(c);
        return wmi_fail(WM_ENOMEM, "wm_net_clone: out of memory for %zu parameters", net->n_params);
    }
    if (net->initialised)
        memcpy(c->params, net->params, sizeof(float) * net->n_params);
    if (net->pcache)
        memcpy(c->pcache, net->pcache, sizeof(float) * net->n_params);
    *out = c;
    return WM_OK;
}

void wm_net_free(wm_net *net)
{
    if (!net)
        return;
    wm_manifold_free(net->m);
    free(net->params);
    free(net->pcache_mem);
    free(net);
}
