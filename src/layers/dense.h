/* dense.h -- a dense layer on the manifold, run on a batch of contexts. */
#ifndef WM_DENSE_H
#define WM_DENSE_H

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

#endif
