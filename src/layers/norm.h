/* norm.h -- what layernorm, groupnorm and FiLM share (layers/norm.c): a
 * per-sample gain and bias on the manifold (or a point), rows of them, each
 * applied to F / rows consecutive values (a channel's plane, or a feature),
 * after an optional normalisation over ly->groups contiguous groups:
 *     groups = 0 (FiLM)         y = g(s) x + b(s)
 *     groups = G >= 1           y = (x - mean) / sqrt(var + 1e-5) g(s) + b(s),
 *                               mean and biased var over each group's values */
#ifndef WM_NORM_H
#define WM_NORM_H

#include "layers/layer.h"

/* The adders' common part: checks (net, order, an image when need_image) and
 * a layer of the current output's shape, act none, no parameters yet. */
wm_status wmi_norm_prepare(wm_net *net, wm_layer *ly, wm_layer_kind kind, int need_image,
                           const char *fn);
void wmi_norm_init(const wm_layer *ly, float *w0, float *b0, wmi_rng *rng);   /* g = 1, b = 0 */
size_t wmi_norm_scratch_floats(const wm_layer *ly);
double wmi_norm_grad_uses(const wm_layer *ly);
void wmi_norm_forward(const wm_layer *ly, const wm_layer_io *io, const float *X, int n, float *Y);
void wmi_norm_backward(const wm_layer *ly, const wm_layer_io *io, const float *X, int n,
                       const float *Y, float *dY, float *grad, float *dX);

#endif
