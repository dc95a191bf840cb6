/* layer.h -- a layer kind is a table of operations (kann's kad_op_list, see
 * STYLE.md). The net builder, the passes, the optimizer, the model files and
 * the summary reach a layer only through wmi_layer_ops[kind]: none of them
 * switches on the kind. docs/adding-a-layer.md says what a new kind costs. */
#ifndef WM_LAYER_H
#define WM_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "net.h"
#include "rng.h"

/* What a layer's forward and backward need besides its input and output. */
typedef struct wm_layer_io_s {
    const float *params;          /* the net's flat Q array (the layer's blocks at w_off, b_off) */
    int Kp;                       /* basis points of this layer's parameters */
    int strategy;                 /* wm_conv_strategy */
    const float *C;               /* n x Kp: c_hat(s_i) */
    int shared;                   /* every row of C is equal */
    float *z;                     /* n x Kp*max_out floats of scratch */
    float *wmat;                  /* the layer's materialised W(s), b(s) (wmi_layer_wmat_floats) */
    float *scratch;               /* ops->scratch_floats(ly) floats */
    const float *X2;              /* has_in2: the second input, rows x2_stride apart */
    size_t x2_stride;
    float *dX2;                   /* backward: its gradient (NULL: not needed) */
    int dX2_add;                  /* add to dX2 (another reader wrote it first), else write */
    int training;                 /* wm_step / wm_grad (dropout), not inference */
    uint64_t seed, step;          /* the init seed and the optimizer's step count (dropout) */
    /* The local B-spline path (net.h, pass.h): P is the net's P cache when
     * this layer uses it, else NULL; the rest are the pass's tables. */
    const float *P;
    int lp;                       /* the degree */
    const double *lL;             /* the manifold's Cholesky factor L (K x K, banded) */
    const int *lpiece, *lorder, *lstart;
    const float *lc;
    float *lx;
    /* Backward, a ReLU absorbed by the layer above (pass.c): act_done tells
     * a layer with ops->relu_absorbable that dY already holds its ReLU's
     * derivative; relu_below tells a layer with ops->absorbs_relu to apply
     * the derivative of the ReLU that produced its input (x > 0). */
    int act_done, relu_below;
} wm_layer_io;

#define WMI_LAYER_MAX_FIELDS 5    /* u32 fields of a layer in a model file, after its kind */

typedef struct {
    const char *name;             /* in messages and wm_net_summary */
    int has_params;               /* W block (rows x cols per basis point) and b block (rows) */
    /* The gradient is dW_k = sum_i C_ik delta_i x_i^T with delta the
     * pre-activation delta backward leaves in p->delta: the optimizer's
     * direct path may then form and apply it itself (optim.c). */
    int direct_update;            /* (a layer without parameters: the direct path skips it) */
    int n_fields;                 /* fields in a model file */
    uint32_t float_fields;        /* bit j: field j holds a float's bits (no 2^24 range check) */
    /* wm_net_layer_info reports the parameter matrix (cols, rows), as dense and
     * conv2d always have; otherwise the input and output feature counts. */
    int info_matrix;
    /* The fields that rebuild the layer through its public adder. */
    void (*fields)(const wm_layer *ly, uint32_t *v);
    /* The public adder called with the fields (each already <= 2^24);
     * its own checks reject every value out of range. */
    wm_status (*rebuild)(wm_net *net, const uint32_t *v);
    /* A short description ("conv2d 3x3 /1 pad 1") for wm_net_summary. */
    void (*describe)(const wm_layer *ly, char *buf, size_t len);
    /* Layers with parameters: basis point 0 of the W block (rows x cols) and
     * b block (rows, zeroed before the call) of the function W0 the manifold
     * starts at; wm_net_init spreads it over the constant direction. */
    void (*init)(const wm_layer *ly, float *w0, float *b0, wmi_rng *rng);
    /* Floats of per-layer scratch forward/backward need (NULL: none). */
    size_t (*scratch_floats)(const wm_layer *ly);
    /* Floats of further scratch for a batch of n (NULL: none), saturating at
     * SIZE_MAX: io->scratch holds scratch_floats(ly) floats, rounded up to
     * a multiple of 16, then these (conv: one panel of im2col columns). */
    size_t (*batch_scratch_floats)(const wm_layer *ly, int n);
    /* How many times per sample each weight is used (conv: output
     * positions; NULL: 1), a factor of the backward pass's gradient bound. */
    double (*grad_uses)(const wm_layer *ly);
    /* Y (n x out) from X (n x in) (and io->X2). */
    void (*forward)(const wm_layer *ly, const wm_layer_io *io, const float *X, int n, float *Y);
    /* dY = dL/dY (n x out) in, overwritten with the delta before the
     * activation (a layer without direct_update may leave dY as it came and
     * fold the derivative into its own copy: conv2d does); writes the
     * parameter gradient blocks into grad (layout of
     * params; NULL: skip) and dX = dL/dX (n x in; NULL: skip). X and Y are
     * the forward's input and output. A layer with a second input writes
     * dX before it adds to io->dX2 (the two may be the same buffer). */
    void (*backward)(const wm_layer *ly, const wm_layer_io *io, const float *X, int n,
                     const float *Y, float *dY, float *grad, float *dX);
    /* absorbs_relu: backward can apply the derivative of a ReLU that
     * produced its input (io->relu_below); relu_absorbable: backward can
     * then skip its own (io->act_done). pass.c pairs them when the ReLU's
     * output has no other reader: the bench CNN's conv + ReLU + 2x2 maxpool
     * reads the conv's outputs once in backward, not twice. */
    int absorbs_relu, relu_absorbable;
} wm_layer_ops;

/* Indexed by wm_layer_kind (layers/table.c). */
extern const wm_layer_ops *const wmi_layer_ops[WM_LAYER_N_KINDS];

static inline const wm_layer_ops *wmi_ops(const wm_layer *ly) { return wmi_layer_ops[ly->kind]; }

/* Each kind's table, defined in its own file. */
extern const wm_layer_ops wmi_dense_ops, wmi_conv2d_ops, wmi_maxpool_ops, wmi_avgpool_ops,
    wmi_residual_ops, wmi_layernorm_ops, wmi_groupnorm_ops, wmi_film_ops, wmi_dropout_ops,
    wmi_global_avgpool_ops;

/* He (relu, none) or Glorot (tanh, sigmoid) normal weights as PyTorch counts
 * the fans (a conv's fan_out includes its kernel area), for ops->init. */
void wmi_init_weights(const wm_layer *ly, float *w0, wmi_rng *rng);

#endif
