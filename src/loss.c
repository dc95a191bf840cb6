/* loss.c -- softmax cross-entropy (stable log-sum-exp) and mean squared error.
 * MSE is the mean over all n*m elements (PyTorch's default), so its per-row
 * contribution is sum_j (y - t)^2 / m. */
#include <math.h>

#include "loss.h"

static int argmax(const float *v, int m)
{
    int best = 0;
    for (int j = 1; j < m; j++)
        if (v[j] > v[best])
            best = j;
    return best;
}

double wmi_loss(wm_loss loss, const float *y, int n, int m, const int32_t *labels,
                const float *targets, float *dy, float scale, long *correct)
{
    double total = 0.0;
    long hits = 0;
    for (int i = 0; i < n; i++) {
        const float *yi = y + (size_t)i * m;
        float *di = dy ? dy + (size_t)i * m : 0;
        if (loss == WM_LOSS_SOFTMAX_CE) {
            int lab = labels[i];
            float mx = yi[argmax(yi, m)];
            double z = 0.0;
            for (int j = 0; j < m; j++)
                z += exp((double)yi[j] - mx);
            total += log(z) + mx - yi[lab];
            if (di)
                for (int j = 0; j < m; j++)
                    di[j] = (float)(exp((double)yi[j] - mx) / z) * scale - (j == lab ? scale : 0.0f);
            hits += argmax(yi, m) == lab;
        } else {
            const float *ti = targets + (size_t)i * m;
            double sq = 0.0;
            for (int j = 0; j < m; j++) {
                double e = (double)yi[j] - ti[j];
                sq += e * e;
                if (di)
                    di[j] = (float)(2.0 * e / m) * scale;
            }
            total += sq / m;
            hits += argmax(yi, m) == argmax(ti, m);
        }
    }
    if (correct)
        *correct = hits;
    return total;
}
