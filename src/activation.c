/* activation.c -- relu, tanh, sigmoid and their derivatives via the output:
 *   relu'    = [y > 0]      tanh' = 1 - y^2      sigmoid' = y (1 - y)   */
#include <math.h>

#include "activation.h"
#include "simd.h"

/* tanh as a rational function of x (odd degree-13 numerator over an even
 * degree-6 denominator, the coefficients of Eigen's float tanh), clamped
 * where it reaches +-1 in float. Branch-free, so the loops below vectorise;
 * libm's tanhf does not and dominated small-net inference. Measured against
 * double tanh: max error 3.3e-7 relative (tests/test_net.c checks 1e-6). */
static inline float fast_tanh(float x)
{
    const float clamp = 7.90531110763549805f;
    float xc = x > clamp ? clamp : x;         /* selects of values, no branches */
    xc = xc < -clamp ? -clamp : xc;
    float x2 = xc * xc;
    float p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
    p = p * x2 + -8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    p = p * xc;
    float q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    float r = p / q;                          /* computed always, so the select below */
    return fabsf(x) < 0.0004f ? x : r;        /* needs no branch; tanh x = x there */
}

int wmi_act_valid(int act) { return act >= WM_ACT_NONE && act <= WM_ACT_SIGMOID; }

WMI_SIMD_CLONES
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
            y[i] = fast_tanh(y[i]);
        break;
    case WM_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++)
            y[i] = 1.0f / (1.0f + expf(-y[i]));
        break;
    }
}

WMI_SIMD_CLONES
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
