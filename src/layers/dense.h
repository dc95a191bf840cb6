/* dense.h -- a dense layer on the manifold, run on a batch of contexts. */
#ifndef WM_DENSE_H
#define WM_DENSE_H

#include "layers/layer.h"
#include "net.h"

/* Y (n x out) = act( sum_k C_ik (X Q_k^T + b_k) ).
 * C is n x Kp (c_hat of each sample). shared != 0 means every row of C is
 * equal: W(s) is materialised once into wmat (out*in + out floats) and a plain
 * layer runs. Otherwise the stacked GEMM uses z (n x Kp*out floats). */
void wmi_dense_forward(const wm_layer *ly, const float *params, int Kp, const float *X, int n,
                       const float *C, int shared, float *Y, float *z, float *wmat);

/* Given dY = dL/dY (n x out), overwritten with dL/d(pre-activation), write the
 * layer's gradient blocks into grad (same layout as params, overwritten;
 * NULL: skip them, only the delta and dX are wanted) and,
 * if dX is not NULL, dL/dX (n x in). wmat must hold what the forward pass
 * materialised when shared != 0; z is scratch (n x Kp*out). */
void wmi_dense_backward(const wm_layer *ly, const float *params, int Kp, const float *X, int n,
                        const float *C, int shared, const float *Y, float *dY, float *grad,
                        float *dX, float *z, const float *wmat);

/* Materialise W(s) = sum_k chat_k Q_k (out x in) and b(s) into w, b (either may be NULL). */
void wmi_dense_materialise(const wm_layer *ly, const float *params, int Kp, const float *chat,
                           float *w, float *b);

/* The local B-spline path's weight gradient (net.h), formed a range of
 * rows at a time by an update that applies it at once (optim.c). After the
 * backward pass left delta (n x out, pre-activation) and with io from
 * wmi_pass_layer_io: prepare gathers X's rows in the pass's sorted order
 * into io->lx, every point's D_k^T (out x run, column j c_k(s_i) delta_i of
 * the run's j-th sample) into io->z (r says where) and writes dL/dB_k into
 * bias_grad (K x out, P coordinates); grad_rows
 * then writes rows [r0, r0 + rows) of dL/dP_k into g (rows x in). */
typedef struct {
    int a[WM_MAX_BASIS], b[WM_MAX_BASIS];  /* point k's run [a, b) of the sorted samples */
    size_t doff[WM_MAX_BASIS];             /* where its D_k^T starts in io->z */
} wmi_local_runs;
void wmi_dense_local_prepare(const wm_layer *ly, const wm_layer_io *io, const float *X,
                             const float *delta, int n, float *bias_grad, wmi_local_runs *r);
void wmi_dense_local_grad_rows(const wm_layer *ly, const wm_layer_io *io, const wmi_local_runs *r,
                               int k, int r0, int rows, float *g);

#endif
