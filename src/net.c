/* net.c -- building a network: layers, loss, initialisation, and the views
 * of its parameters in the paper's coordinates (W(s), P_k). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "activation.h"
#include "dense.h"
#include "error.h"
#include "net.h"
#include "rng.h"

#define MAX_PARAMS ((size_t)1 << 31)     /* 8 GiB of floats: beyond is a mistake */

wm_status wm_net_create(wm_net **out, const wm_manifold *m, int n_inputs, wm_conditioning cond)
{
    if (!out)
        return wm_fail(WM_EINVAL, "wm_net_create: out is NULL");
    if (!m)
        return wm_fail(WM_EINVAL, "wm_net_create: manifold is NULL");
    if (n_inputs < 1 || n_inputs > (1 << 24))
        return wm_fail(WM_EINVAL, "wm_net_create: n_inputs = %d must be in 1..%d", n_inputs, 1 << 24);
    if (cond != WM_COND_MANIFOLD && cond != WM_COND_CONCAT)
        return wm_fail(WM_EINVAL, "wm_net_create: conditioning %d is neither WM_COND_MANIFOLD nor WM_COND_CONCAT",
                       (int)cond);
    wm_net *net = calloc(1, sizeof *net);
    if (!net)
        return wm_fail(WM_ENOMEM, "wm_net_create: out of memory");
    if (wm_manifold_clone(&net->m, m) != WM_OK) {
        free(net);
        return wm_fail(WM_ENOMEM, "wm_net_create: out of memory");
    }
    net->cond = cond;
    net->n_inputs = n_inputs;
    net->n_feat = cond == WM_COND_CONCAT ? m->n_feat : 0;
    net->Kp = cond == WM_COND_CONCAT ? 1 : m->K;
    net->loss = WM_LOSS_SOFTMAX_CE;
    net->max_in = wmi_net_in0(net);
    *out = net;
    return WM_OK;
}

wm_status wm_net_dense(wm_net *net, int n_outputs, wm_activation act)
{
    if (!net)
        return wm_fail(WM_EINVAL, "wm_net_dense: net is NULL");
    if (net->initialised)
        return wm_fail(WM_ESTATE, "wm_net_dense: layers must be added before wm_net_init");
    if (n_outputs < 1 || n_outputs > (1 << 24))
        return wm_fail(WM_EINVAL, "wm_net_dense: n_outputs = %d must be in 1..%d", n_outputs, 1 << 24);
    if (!wmi_act_valid((int)act))
        return wm_fail(WM_EINVAL, "wm_net_dense: activation %d is not a wm_activation", (int)act);
    if (net->n_layers == WM_MAX_LAYERS)
        return wm_fail(WM_EINVAL, "wm_net_dense: a net holds at most %d layers", WM_MAX_LAYERS);
    int in = net->n_layers ? net->layers[net->n_layers - 1].out : wmi_net_in0(net);
    size_t add = (size_t)net->Kp * n_outputs * ((size_t)in + 1);
    if (add > MAX_PARAMS - net->n_params)
        return wm_fail(WM_EINVAL, "wm_net_dense: the net would exceed %zu parameters", MAX_PARAMS);
    wm_layer *ly = &net->layers[net->n_layers++];
    ly->in = in;
    ly->out = n_outputs;
    ly->act = act;
    ly->w_off = net->n_params;
    ly->b_off = net->n_params + (size_t)net->Kp * n_outputs * in;
    net->n_params += add;
    if (n_outputs > net->max_out)
        net->max_out = n_outputs;
    if (n_outputs > net->max_in)
        net->max_in = n_outputs;
    return WM_OK;
}

wm_status wm_net_set_loss(wm_net *net, wm_loss loss)
{
    if (!net)
        return wm_fail(WM_EINVAL, "wm_net_set_loss: net is NULL");
    if (loss != WM_LOSS_SOFTMAX_CE && loss != WM_LOSS_MSE)
        return wm_fail(WM_EINVAL, "wm_net_set_loss: loss %d is not a wm_loss", (int)loss);
    if (net->initialised)
        return wm_fail(WM_ESTATE, "wm_net_set_loss: the loss must be set before wm_net_init");
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

wm_status wm_net_init(wm_net *net, uint64_t seed)
{
    if (!net)
        return wm_fail(WM_EINVAL, "wm_net_init: net is NULL");
    if (net->n_layers == 0)
        return wm_fail(WM_ESTATE, "wm_net_init: the net has no layers (add them with wm_net_dense)");
    if (net->loss == WM_LOSS_SOFTMAX_CE && net->layers[net->n_layers - 1].out < 2)
        return wm_fail(WM_ESTATE, "wm_net_init: softmax cross-entropy needs at least 2 outputs, the last layer has %d",
                       net->layers[net->n_layers - 1].out);
    double *q0 = malloc(sizeof(double) * (size_t)net->Kp);
    float *params = net->initialised ? net->params : malloc(sizeof(float) * net->n_params);
    if (!q0 || !params) {
        free(q0);
        if (params != net->params)
            free(params);
        return wm_fail(WM_ENOMEM, "wm_net_init: out of memory for %zu parameters", net->n_params);
    }
    constant_direction(net, q0);
    wm_rng rng;
    wm_rng_seed(&rng, seed);
    for (int l = 0; l < net->n_layers; l++) {
        const wm_layer *ly = &net->layers[l];
        int glorot = ly->act == WM_ACT_TANH || ly->act == WM_ACT_SIGMOID;
        double sd = glorot ? sqrt(2.0 / (ly->in + ly->out)) : sqrt(2.0 / ly->in);
        size_t wn = (size_t)ly->out * ly->in;
        float *Q = params + ly->w_off;
        for (size_t j = 0; j < wn; j++)           /* W0 into slot 0, then spread */
            Q[j] = (float)(sd * wm_rng_normal(&rng));
        for (int k = net->Kp - 1; k >= 0; k--)
            for (size_t j = 0; j < wn; j++)
                Q[(size_t)k * wn + j] = (float)(q0[k] * Q[j]);
        memset(params + ly->b_off, 0, sizeof(float) * (size_t)net->Kp * ly->out);
    }
    free(q0);
    net->params = params;
    net->initialised = 1;
    return WM_OK;
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
        return wm_fail(WM_EINVAL, "wm_net_set_params: %s is NULL", !net ? "net" : "q");
    if (!net->initialised)
        return wm_fail(WM_ESTATE, "wm_net_set_params: the net is not initialised (call wm_net_init)");
    if (len != net->n_params)
        return wm_fail(WM_EINVAL, "wm_net_set_params: len = %zu but the net has %zu parameters", len,
                       net->n_params);
    for (size_t j = 0; j < len; j++)
        if (!isfinite(q[j]))
            return wm_fail(WM_EINVAL, "wm_net_set_params: q[%zu] is not finite", j);
    memcpy(net->params, q, sizeof(float) * len);
    return WM_OK;
}

static wm_status check_layer(const wm_net *net, int layer, const char *fn)
{
    if (!net)
        return wm_fail(WM_EINVAL, "%s: net is NULL", fn);
    if (layer < 0 || layer >= net->n_layers)
        return wm_fail(WM_EINVAL, "%s: layer %d does not exist (the net has %d)", fn, layer,
                       net->n_layers);
    return WM_OK;
}

wm_status wm_net_layer_info(const wm_net *net, int layer, int *n_in, int *n_out, wm_activation *act)
{
    wm_status st = check_layer(net, layer, __func__);
    if (st != WM_OK)
        return st;
    if (n_in)
        *n_in = net->layers[layer].in;
    if (n_out)
        *n_out = net->layers[layer].out;
    if (act)
        *act = net->layers[layer].act;
    return WM_OK;
}

wm_status wm_net_weights_at(const wm_net *net, int layer, const float *s, float *w, float *b)
{
    wm_status st = check_layer(net, layer, __func__);
    if (st != WM_OK)
        return st;
    if (!net->initialised)
        return wm_fail(WM_ESTATE, "wm_net_weights_at: the net is not initialised (call wm_net_init)");
    float chat[WM_MAX_BASIS];
    if (net->Kp == 1) {
        chat[0] = 1.0f;                        /* a point or a concat net: s is unused */
    } else {
        double sw[WM_MAX_DIM];
        if (!s)
            return wm_fail(WM_EINVAL, "wm_net_weights_at: s is NULL but the manifold has %d context coordinates",
                           net->m->dim);
        if ((st = wmi_context_check(net->m, s, -1, sw)) != WM_OK)
            return st;
        wmi_basis_hat(net->m, sw, chat);
    }
    wmi_dense_materialise(&net->layers[layer], net->params, net->Kp, chat, w, b);
    return WM_OK;
}

void wmi_q_to_p(const wm_net *net, const float *Qblock, size_t len, int k, float *Pk)
{
    const wm_manifold *m = net->m;
    if (net->Kp == 1) {
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
    if (k < 0 || k >= net->Kp)
        return wm_fail(WM_EINVAL, "%s: control point %d does not exist (K = %d)", fn, k, net->Kp);
    if (!net->initialised)
        return wm_fail(WM_ESTATE, "%s: the net is not initialised (call wm_net_init)", fn);
    return WM_OK;
}

wm_status wm_net_control_point(const wm_net *net, int layer, int k, float *w, float *b)
{
    wm_status st = check_point(net, layer, k, __func__);
    if (st != WM_OK)
        return st;
    const wm_layer *ly = &net->layers[layer];
    if (w)
        wmi_q_to_p(net, net->params + ly->w_off, (size_t)ly->out * ly->in, k, w);
    if (b)
        wmi_q_to_p(net, net->params + ly->b_off, (size_t)ly->out, k, b);
    return WM_OK;
}

/* Q = L^T P: changing P_k by d changes Q_j by L_kj d for j <= k. */
static void set_point_block(wm_net *net, float *Qblock, size_t len, int k, const float *Pk_new)
{
    const wm_manifold *m = net->m;
    for (size_t j = 0; j < len; j++) {
        double old = 0;
        if (net->Kp == 1) {
            Qblock[j] = Pk_new[j];
            continue;
        }
        for (int i = k; i < m->K; i++)
            old += m->Linv[i * m->K + k] * Qblock[(size_t)i * len + j];
        double d = (double)Pk_new[j] - old;
        for (int i = 0; i <= k; i++)
            Qblock[(size_t)i * len + j] += (float)(m->L[k * m->K + i] * d);
    }
}

wm_status wm_net_set_control_point(wm_net *net, int layer, int k, const float *w, const float *b)
{
    wm_status st = check_point(net, layer, k, __func__);
    if (st != WM_OK)
        return st;
    wm_layer *ly = &net->layers[layer];
    size_t wn = (size_t)ly->out * ly->in;
    for (size_t j = 0; w && j < wn; j++)
        if (!isfinite(w[j]))
            return wm_fail(WM_EINVAL, "wm_net_set_control_point: w[%zu] is not finite", j);
    for (int j = 0; b && j < ly->out; j++)
        if (!isfinite(b[j]))
            return wm_fail(WM_EINVAL, "wm_net_set_control_point: b[%d] is not finite", j);
    if (w)
        set_point_block(net, net->params + ly->w_off, wn, k, w);
    if (b)
        set_point_block(net, net->params + ly->b_off, (size_t)ly->out, k, b);
    return WM_OK;
}

void wm_net_free(wm_net *net)
{
    if (!net)
        return;
    wm_manifold_free(net->m);
    free(net->params);
    free(net);
}
