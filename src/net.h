/* net.h -- the network's internal layout, shared by net, pass, optim and io. */
#ifndef WM_NET_H
#define WM_NET_H

#include <stddef.h>

#include "manifold.h"
#include "wmanifold.h"

#define WM_MAX_LAYERS 128

/* One dense layer. Its parameters are two blocks of the net's flat array,
 * in orthonormal coordinates Q:
 *   W block: Kp*out rows of `in` floats, row k*out + o = Q_k's row o (stacked)
 *   b block: Kp rows of `out` floats                                          */
typedef struct {
    int in, out;
    wm_activation act;
    size_t w_off, b_off;          /* offsets into wm_net.params */
} wm_layer;

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
};

/* Row i of x as the first layer sees it has in0 = n_inputs + n_feat entries. */
static inline int wmi_net_in0(const wm_net *net) { return net->n_inputs + net->n_feat; }

/* P_k from Q: P = L^-T Q, i.e. P_k = sum_{j>=k} Linv[j][k] Q_j, for a block of
 * Kp rows of `len` floats each (stride `len`). Writes len floats. */
void wmi_q_to_p(const wm_net *net, const float *Qblock, size_t len, int k, float *Pk);

#endif
