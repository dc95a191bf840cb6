/* pool.h -- what maxpool and avgpool share: the adder's checks and shape,
 * and the file field (the window size). */
#ifndef WM_POOL_H
#define WM_POOL_H

#include "layers/layer.h"

/* Add a size x size pooling layer of the given kind (stride = size). */
wm_status wmi_pool_add(wm_net *net, int size, wm_layer_kind kind, const char *fn);
void wmi_pool_fields(const wm_layer *ly, uint32_t *v);

#endif
