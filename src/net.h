/* net.h -- the network's internal layout, shared by net, pass, optim and io. */
#ifndef WM_NET_H
#define WM_NET_H

#include <stddef.h>
#include <stdint.h>

#include "manifold.h"
#include "wmanifold.h"

#define WM_MAX_LAYERS 128

/* A layer's kind: its index in wmi_layer_ops (layers/layer.h) and its code
 * in model files, so the numbers never change; new kinds go at the end. */
typedef enum {
    WM_LAYER_DENSE,
    WM_LAYER_CONV,
    WM_LAYER_MAXPOOL,
    WM_LAYER_AVGPOOL,
    WM_LAYER_RESIDUAL,
    WM_LAYER_LAYERNORM,
    WM_LAYER_GROUPNORM,
    WM_LAYER_FILM,
    WM_LAYER_DROPOUT,
    WM_LAYER_GLOBAL_AVGPOOL,
    WM_LAYER_N_KINDS
} wm_layer_kind;

/* One layer. `in` and `out` are the per-sample activation sizes it reads and
 * writes (CHW order for images). A layer with parameters keeps them as a
 * rows x cols matrix per basis point (dense: out x in; conv: out_c x in_c*k*k,
 * ordered [out][in][ky][kx]) plus rows biases, in two blocks of the net's flat
 * array, in orthonormal coordinates Q:
 *   W block: Kp*rows rows of `cols` floats, row k*rows + o = Q_k's row o (stacked)
 *   b block: Kp rows of `rows` floats                                         */
typedef struct {
    wm_layer_kind kind;
    int in, out;                  /* activation sizes per sample */
    int rows, cols;               /* parameter matrix (0 x 0 for pooling) */
    int in_c, in_h, in_w;         /* conv / pool input shape */
    int out_c, out_h, out_w;      /* conv / pool output shape */
    int k, stride, pad;           /* conv kernel; pools use k = stride = size */
    wm_activation act;
    size_t w_off, b_off;          /* offsets into wm_net.params */
    /* Every layer reads the previous layer's output (layer -1: the net's
     * input); a layer with has_in2 also reads layer in2's (-1: the input). */
    int has_in2, in2;
    int Kp;                       /* basis points of its parameters: the net's Kp, or 1 (a point) */
    int index;                    /* its number in the net */
    int groups;                   /* groupnorm: groups; layernorm 1; FiLM 0 (no normalisation) */
    float p;                      /* dropout probability */
} wm_layer;

static inline int wmi_layer_has_params(const wm_layer *ly) { return ly->rows > 0; }

struct wm_net {
    wm_manifold *m;               /* owned copy */
    wm_conditioning cond;
    int n_inputs;                 /* features per sample, as the caller passes them */
    int n_feat;                   /* context features appended (concat), else 0 */
    int Kp;                       /* basis points per parameter: K, or 1 for concat */
    int n_layers;
    wm_layer layers[WM_MAX_LAYERS];
    wm_loss loss;
    int initialised;
    size_t n_params;
    float *params;                /* all layers, Q coordinates */
    int max_out;                  /* widest layer output */
    int max_in;                   /* widest layer input */
    int input_c, input_h, input_w;/* wm_net_input_shape (0: none given) */
    int shape_c, shape_h, shape_w;/* shape of the next layer's input (c = 0: flat) */
    int image_concat;             /* concat features enter as constant input planes */
    int conv_strategy;            /* wm_conv_strategy */
    int has_skips;                /* some layer reads an output other than the previous one */
    int has_points;               /* a manifold net with some layer's parameters at one point */
    uint64_t seed;                /* wm_net_init's (dropout masks) */
    /* The inference plan (wmi_net_plan, at wm_net_init): layer l's output
     * lives in activation buffer slot[l] of n_slots, a buffer reused once
     * every reader of its last output has run (ggml-alloc's liveness). */
    int n_slots;
    int slot[WM_MAX_LAYERS];
    uint64_t inits;               /* wm_net_init calls: optimizers restart their moments */
    uint64_t version;             /* bumped by every write to params, so optimizers know
                                     when their bounds on |Q| are stale */
    /* Local support (issue 15): on an open B-spline only degree + 1 basis
     * functions are nonzero at any s, but c_hat = L^-1 c is dense. So the
     * net also keeps the control points P = L^-T Q of its manifold dense
     * layers (same offsets as params; other layers' slots unused), and their
     * forward and backward use the degree + 1 points each sample touches.
     * The cache is valid iff pversion == version; where it is not, the
     * layers run the stacked path on Q (same results to float rounding).
     * Every write to params bumps the version: wm_net_init, set_params,
     * set_control_point, a load and a clone refresh the cache at once (a
     * banded solve: G is banded, so is its Cholesky factor L); an
     * optimizer's update refreshes it only while training on mixed batches
     * of 2+ samples, where the local path pays (a shared context or a
     * single sample runs the stacked path, whose materialised W(s) or GEMV
     * costs one pass over Q, as the refresh alone would). Q stays the stored
     * state: the optimizers are unchanged. */
    int local_p;                  /* the B-spline's degree when the local path applies, else -1 */
    float *pcache;                /* n_params floats (NULL: no local path) */
    void *pcache_mem;             /* the block pcache lies in (memory.h: apart from params) */
    uint64_t pversion;            /* the version pcache was computed at */
    int plive;                    /* refresh after each optimizer update (the last batch was mixed) */
};

/* Row i of x as the first layer sees it: the caller's n_inputs values, then the
 * concat features, either as n_feat values or, for images, as n_feat constant
 * planes of input_h x input_w (extra input channels). */
static inline int wmi_net_in0(const wm_net *net)
{
    return net->n_inputs + net->n_feat * (net->image_concat ? net->input_h * net->input_w : 1);
}

/* P_k from Q: P = L^-T Q, i.e. P_k = sum_{j>=k} Linv[j][k] Q_j, for a block of
 * Kp rows of `len` floats each (stride `len`). Writes len floats. */
void wmi_q_to_p(const wm_net *net, int Kp, const float *Qblock, size_t len, int k, float *Pk);

/* After any write to net->params: bump the version and refresh the P cache. */
void wmi_net_touch(wm_net *net);

/* After an optimizer's update: bump the version; refresh the cache only
 * while net->plive. */
void wmi_net_touch_step(wm_net *net);

/* At an optimizer's update, before wmi_net_touch_step: mixed = the batch the
 * gradient came from was mixed with 2+ samples. Sets plive, so the update
 * refreshes the cache and the next mixed step runs the local path (the
 * first mixed step after shared ones runs the stacked path: the cache is
 * stale then, and wm_grad never writes the net). */
void wmi_net_local_step(wm_net *net, int mixed);

/* Whether the P cache holds layer ly's control points (when it is valid). */
static inline int wmi_layer_cached(const wm_net *net, const wm_layer *ly)
{
    return net->local_p >= 0 && ly->Kp == net->Kp && ly->kind == WM_LAYER_DENSE && net->pcache;
}

/* Whether layer ly runs the local B-spline path (needs a valid cache). */
static inline int wmi_layer_local(const wm_net *net, const wm_layer *ly)
{
    return wmi_layer_cached(net, ly) && net->pversion == net->version;
}

/* After an optimizer's update that also wrote the P cache of every cached
 * layer from the new Q (optim.c's fused B-spline update, only after a mixed
 * batch): bump the version, the cache valid at it, plive set. */
void wmi_net_touch_step_cached(wm_net *net);

/* Assign the inference activation buffers by liveness (net->slot, n_slots). */
void wmi_net_plan(wm_net *net);

/* ---- for the layer adders (src/layers/): check, then append ---- */

/* Every per-sample size (inputs, outputs, matrix columns) fits this. */
#define WMI_MAX_FEATURES ((int64_t)1 << 24)

/* net not NULL, not initialised, room for one more layer. */
wm_status wmi_net_check_add(const wm_net *net, const char *fn);
/* An image input and an image current output (conv, pooling and the like). */
wm_status wmi_net_check_spatial(const wm_net *net, const char *fn);
/* The first layer's input fits (a concat net's features as values, or as
 * constant planes when spatial). Pure; wmi_net_append commits it. */
wm_status wmi_net_check_first_input(const wm_net *net, int spatial, const char *fn);
/* The input channels an image layer added now sees (a concat net's first
 * image layer also reads the feature planes). */
int wmi_net_in_channels(const wm_net *net);
/* The shape of the current output (the input's when no layer was added;
 * c = 0: flat). WM_EINVAL on a concatenation net without a layer (its
 * input then carries the context features). */
wm_status wmi_net_current(const wm_net *net, int *F, int *c, int *h, int *w, const char *fn);
/* The flat width a layer added now reads (dense columns). */
int wmi_net_in_features(const wm_net *net);
/* Append ly (kind, out, rows, cols, shapes, act filled in; out_c > 0 for
 * an image output), placing its parameter blocks; fails without changing
 * the net if too large. spatial: the layer reads an image. */
wm_status wmi_net_append(wm_net *net, wm_layer *ly, int spatial, const char *fn);

#endif
