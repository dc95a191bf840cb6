/* quickstart.c -- a circle manifold learns y = sin(2 pi (x + s)) for every phase s. */
#include <math.h>
#include <stdio.h>
#include "wmanifold.h"

int main(void) {
    wm_manifold *circle;  wm_net *net;  wm_optimizer *opt;
    wm_manifold_circle(&circle);
    wm_net_create(&net, circle, 1, WM_COND_MANIFOLD);   /* 1 input, context on a circle */
    wm_net_dense(net, 32, WM_ACT_TANH);
    wm_net_dense(net, 1, WM_ACT_NONE);
    wm_net_set_loss(net, WM_LOSS_MSE);
    wm_net_init(net, 42);
    wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
    cfg.lr = 1e-2f;
    wm_optimizer_create(&opt, net, &cfg);
    float x[64], s[64], y[64], loss = 0;
    for (int step = 0; step < 2000; step++) {            /* every sample its own context */
        for (int i = 0; i < 64; i++) {
            x[i] = (float)((i * 37 + step * 11) % 64) / 64;  s[i] = (float)((i * 13 + step * 5) % 64) / 64;
            y[i] = sinf(6.2831853f * (x[i] + s[i]));
        }
        wm_batch b = {64, x, s, NULL, y};
        if (wm_step(opt, &b, &loss) != WM_OK) { fprintf(stderr, "%s\n", wm_last_error()); return 1; }
    }
    float xq = 0.1f, sq = 0.3f, out;
    wm_infer(net, &xq, &sq, 1, &out);
    printf("loss %.4f  f(0.1; s=0.3) = %.3f (want %.3f)\n", loss, out, sinf(6.2831853f * 0.4f));
    wm_optimizer_free(opt);  wm_net_free(net);  wm_manifold_free(circle);
    return 0;
}
