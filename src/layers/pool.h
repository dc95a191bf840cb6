/* pool.h -- what maxpool and avgpool share: the adder's checks and shape,
 * and the file field (the window size). */
#ifndef WM_POOL_H
#define WM_POOL_H

#include "layers/layer.h"

/* Add a size x size pooling layer of the given kind (stride = size). */
wm_status wmi_pool_add(wm_net *net, int size, wm_layer_kind kind, const char *fn);
void wmi_pool_fields(const wm_layer *ly, uint32_t *v);

/* The 2x2 maxpool's plain loops over a batch, whatever the CPU has: forward
 * (Y from X) when dX is NULL, else backward (dX from X, Y, dY; relu as
 * io->relu_below). The layer runs them on a core without AVX2; the tests
 * compare them with what it runs here. */
void wmi_maxpool2_scalar(const wm_layer *ly, const float *X, int n, float *Y, const float *dY,
                         float *dX, int relu);

#endif
