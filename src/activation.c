/* activation.c -- relu, tanh, sigmoid and their derivatives via the output:
 *   relu'    = [y > 0]      tanh' = 1 - y^2      sigmoid' = y (1 - y)   */
#include <math.h>

#include "activation.h"

int wmi_act_valid(int act) { return act >= WM_ACT_NONE && act <= WM_ACT_SIGMOID; }

void wmi_act_forward(wm_activation act, float *y, size_t n)
{
    switch (act) {
    case WM_ACT_NONE:
        break;
    case WM_ACT_RELU:
        for (size_t i = 0; i < n; i++)
            y[i] = y[i] > 0.0f ? y[i] : 0.0f;
        break;
    case WM_ACT_TANH:
        for (size_t i = 0; i < n; i++)
            y[i] = tanhf(y[i]);
        break;
    case WM_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++)
            y[i] = 1.0f / (1.0f + expf(-y[i]));
        break;
    }
}

void wmi_act_backward(wm_activation act, const float *y, float *d, size_t n)
{
    switch (act) {
    case WM_ACT_NONE:
        break;
    case WM_ACT_RELU:
        for (size_t i = 0; i < n; i++)
            d[i] = y[i] > 0.0f ? d[i] : 0.0f;
        break;
    case WM_ACT_TANH:
        for (size_t i = 0; i < n; i++)
            d[i] *= 1.0f - y[i] * y[i];
        break;
    case WM_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++)
            d[i] *= y[i] * (1.0f - y[i]);
        break;
    }
}
