/* loss.h -- batch-mean losses and their gradients with respect to the outputs. */
#ifndef WM_LOSS_H
#define WM_LOSS_H

#include <stdint.h>

#include "wmanifold.h"

/* Sum of per-sample losses over n rows of y (n x m), in double. If dy is not
 * NULL, writes dy = d(sum)/dy * scale (scale = 1/n gives the mean's gradient).
 * Counts in *correct the rows whose argmax matches (label or target argmax). */
double wmi_loss(wm_loss loss, const float *y, int n, int m, const int32_t *labels,
                const float *targets, float *dy, float scale, long *correct);

#endif
