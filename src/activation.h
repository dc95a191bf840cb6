/* activation.h -- elementwise nonlinearities, with derivatives taken from the
 * output y = act(z) so the backward pass needs no stored pre-activations. */
#ifndef WM_ACTIVATION_H
#define WM_ACTIVATION_H

#include <stddef.h>

#include "wmanifold.h"

void wmi_act_forward(wm_activation act, float *y, size_t n);                   /* in place */
void wmi_act_backward(wm_activation act, const float *y, float *d, size_t n);  /* d *= act'(z) */
int  wmi_act_valid(int act);

#endif
