/* summary.c -- wm_net_summary: the net as a table a person reads, written
 * with snprintf semantics into the caller's buffer (never allocates). */
#include <stdarg.h>
#include <stdio.h>

#include "error.h"
#include "layers/layer.h"
#include "net.h"

/* Appends like snprintf: writes what fits, always NUL-terminates. */
typedef struct {
    char *buf;
    size_t len, pos;
} text;

static void put(text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *at = t->pos < t->len ? t->buf + t->pos : NULL;
    int n = vsnprintf(at, at ? t->len - t->pos : 0, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->pos += (size_t)n;
}

static void put_manifold(text *t, const wm_manifold *m)
{
    switch (m->kind) {
    case WM_MF_POINT:   put(t, "point"); break;
    case WM_MF_LINE:    put(t, "line"); break;
    case WM_MF_FOURIER:
        if (m->harmonics == 1)
            put(t, "circle");
        else
            put(t, "closed curve (Fourier, %d harmonics)", m->harmonics);
        break;
    case WM_MF_BSPLINE:
        put(t, "%s B-spline (%d control points, degree %d)", m->closed ? "closed" : "open",
            m->n_control, m->degree);
        break;
    case WM_MF_CUSTOM:  put(t, "custom (%d functions)", m->K); break;
    case WM_MF_PRODUCT:
        put(t, "(");
        put_manifold(t, m->a);
        put(t, " x ");
        put_manifold(t, m->b);
        put(t, ")");
        break;
    }
}

static const char *act_name(wm_activation a)
{
    switch (a) {
    case WM_ACT_NONE:    return "none";
    case WM_ACT_RELU:    return "relu";
    case WM_ACT_TANH:    return "tanh";
    case WM_ACT_SIGMOID: return "sigmoid";
    }
    return "?";
}

/* "CxHxW" for image layers, else the flat feature count; `width` pads it
 * to a column (0: no padding). */
static void put_shape(text *t, int c, int h, int w, int flat, int width)
{
    char s[48];
    if (c > 0)
        snprintf(s, sizeof s, "%dx%dx%d", c, h, w);
    else
        snprintf(s, sizeof s, "%d", flat);
    put(t, "%-*s", width, s);
}

wm_status wm_net_summary(const wm_net *net, char *buf, size_t len)
{
    if (!net)
        return wmi_fail(WM_EINVAL, "wm_net_summary: net is NULL");
    if (!buf && len > 0)
        return wmi_fail(WM_EINVAL, "wm_net_summary: buf is NULL but len = %zu", len);
    text t = {buf, len, 0};
    if (buf && len > 0)
        buf[0] = 0;
    put(&t, "manifold: ");
    put_manifold(&t, net->m);
    put(&t, " (dim %d, K = %d); conditioning: %s; loss: %s; %s\n", net->m->dim, net->m->K,
        net->cond == WM_COND_CONCAT ? "concatenation (context features as inputs)" : "weight manifold",
        net->loss == WM_LOSS_MSE ? "mean squared error" : "softmax cross-entropy",
        net->initialised ? "initialised" : "not initialised");
    put(&t, "input: ");
    put_shape(&t, net->input_c, net->input_h, net->input_w, net->n_inputs, 0);
    if (net->n_feat > 0)
        put(&t, " + %d context feature%s", net->n_feat, net->n_feat > 1 ? "s" : "");
    put(&t, "\n%-5s %-22s %-14s %-14s %-8s %12s  %s\n", "layer", "kind", "input", "output", "act",
        "parameters", "placement");
    for (int l = 0; l < net->n_layers; l++) {
        const wm_layer *ly = &net->layers[l];
        char kind[40];
        wmi_ops(ly)->describe(ly, kind, sizeof kind);
        put(&t, "%-5d %-22s ", l, kind);
        put_shape(&t, ly->in_c, ly->in_h, ly->in_w, ly->in, 14);
        put(&t, " ");
        put_shape(&t, ly->out_c, ly->out_h, ly->out_w, ly->out, 14);
        put(&t, " ");
        size_t np = wmi_layer_has_params(ly) ? (size_t)ly->Kp * ly->rows * ((size_t)ly->cols + 1) : 0;
        const char *where = !wmi_layer_has_params(ly) ? "-"
                            : ly->Kp > 1              ? "manifold"
                                                      : "one point";
        put(&t, "%-8s %12zu  %s", act_name(ly->act), np, where);
        if (wmi_layer_has_params(ly) && ly->Kp > 1)
            put(&t, " (K = %d)", ly->Kp);
        put(&t, "\n");
    }
    put(&t, "total parameters: %zu\n", net->n_params);
    return WM_OK;
}
