/* Writes tests/data/v1_cnn_circle.wmn with the library of main (format 1) and
 * the outputs it infers on fixed inputs (v1_cnn_circle.out: float bits LE). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "wmanifold.h"
int main(int argc, char **argv)
{
    wm_manifold *m; wm_net *net;
    wm_manifold_circle(&m);
    if (wm_net_create(&net, m, 2 * 6 * 6, WM_COND_MANIFOLD) || wm_net_input_shape(net, 2, 6, 6) ||
        wm_net_conv2d(net, 3, 3, 1, 1, WM_ACT_RELU) || wm_net_maxpool(net, 2) ||
        wm_net_conv2d(net, 4, 3, 1, 0, WM_ACT_TANH) || wm_net_avgpool(net, 1) ||
        wm_net_dense(net, 5, WM_ACT_SIGMOID) || wm_net_dense(net, 3, WM_ACT_NONE) || wm_net_init(net, 77))
        return 1;
    /* move it off the initial point with a few training steps */
    float x[4 * 72], s[4], y[12];
    int32_t labels[4] = {0, 1, 2, 1};
    for (int j = 0; j < 4 * 72; j++) x[j] = (float)((j * 37 % 101) / 50.0 - 1.0);
    for (int i = 0; i < 4; i++) s[i] = 0.2f * (float)i + 0.05f;
    wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
    wm_optimizer *o;
    wm_optimizer_create(&o, net, &cfg);
    wm_batch b = {4, x, s, labels, NULL};
    for (int t = 0; t < 5; t++) if (wm_step(o, &b, NULL)) return 2;
    if (wm_net_save(net, argv[1])) return 3;
    if (wm_infer(net, x, s, 4, y)) return 4;
    FILE *f = fopen(argv[2], "wb");
    fwrite(y, sizeof y, 1, f);
    fclose(f);
    printf("%s\n", wm_version());
    return 0;
}
