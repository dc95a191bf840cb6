/* conv2d.h -- 2-D convolution on the manifold. */
#ifndef WM_CONV_H
#define WM_CONV_H

#include "net.h"

/* Floats of scratch a conv layer needs (one materialised kernel and its
 * gradient, with their biases). */
size_t wmi_conv_scratch_floats(const wm_layer *ly);

/* Floats of one panel of im2col columns for a batch of n: g*P*in_c*k*k for
 * the g samples of a panel (saturating at SIZE_MAX). */
size_t wmi_conv_batch_scratch_floats(const wm_layer *ly, int n);

/* Which way a batch with mixed contexts runs: 1 = materialise each sample's
 * kernel (CondConv), 0 = stacked basis kernels. From the FLOP counts. */
int wmi_conv_use_materialised(const wm_layer *ly, int Kp, int strategy);

/* As wmi_dense_forward / wmi_dense_backward (see dense.h), for a conv layer.
 * z: n*Kp*out floats; scratch: wmi_conv_scratch_floats(ly) floats rounded
 * up to a multiple of 16, then wmi_conv_batch_scratch_floats(ly, n).
 * act_done: dY already holds the activation's derivative (io->act_done). */
void wmi_conv_forward(const wm_layer *ly, const float *params, int Kp, int strategy,
                      const float *X, int n, const float *C, int shared, float *Y, float *z,
                      float *wmat, float *scratch);
void wmi_conv_backward(const wm_layer *ly, const float *params, int Kp, int strategy,
                       const float *X, int n, const float *C, int shared, const float *Y,
                       float *dY, float *grad, float *dX, float *z, const float *wmat,
                       float *scratch, int act_done);

#endif
