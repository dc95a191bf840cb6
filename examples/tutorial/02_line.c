/* 02_line.c -- tutorial step 2: a line manifold, W(s) = (1-s) P_1 + s P_2.
 * The task y = (1 + 2s) x has a slope that depends on the context s. One
 * linear layer on a line learns it exactly; the same layer with s as an extra
 * input (the concatenation baseline) cannot, because it has no x*s term. */
#include <math.h>
#include <stdio.h>

#include "wmanifold.h"

#define CHECK(call)                                                           \
    do {                                                                      \
        wm_status st_ = (call);                                               \
        if (st_ != WM_OK) {                                                   \
            fprintf(stderr, "%s failed: %s\n", #call, wm_last_error());       \
            return -1;                                                        \
        }                                                                     \
    } while (0)

#define N 64

/* A small deterministic generator, so every run prints the same numbers. */
static unsigned long long rng = 1;
static float uniform(void) {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)(rng >> 40) / (float)(1 << 24);
}

/* Training contexts avoid the middle of the line, (0.3, 0.7); the test
 * contexts cover the whole line, evenly. */
static void make_batch(float *x, float *s, float *y, int train) {
    for (int i = 0; i < N; i++) {
        x[i] = 2 * uniform() - 1;
        s[i] = train ? (i % 2 ? 0.7f + 0.3f * uniform() : 0.3f * uniform()) : i / (N - 1.0f);
        y[i] = (1 + 2 * s[i]) * x[i];
    }
}

/* Train one linear layer under conditioning `cond`; return its test MSE. */
static float train(wm_conditioning cond, wm_net **out) {
    wm_manifold *line = NULL;
    CHECK(wm_manifold_line(&line));
    wm_net *net = NULL;
    CHECK(wm_net_create(&net, line, 1, cond));
    wm_manifold_free(line);
    CHECK(wm_net_dense(net, 1, WM_ACT_NONE));
    CHECK(wm_net_set_loss(net, WM_LOSS_MSE));
    CHECK(wm_net_init(net, 7));

    wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
    cfg.lr = 0.05f;
    wm_optimizer *opt = NULL;
    CHECK(wm_optimizer_create(&opt, net, &cfg));
    float x[N], s[N], y[N];
    for (int step = 0; step < 1000; step++) {
        make_batch(x, s, y, 1);
        wm_batch b = {.n = N, .x = x, .s = s, .targets = y};
        CHECK(wm_step(opt, &b, NULL));
    }
    wm_optimizer_free(opt);

    make_batch(x, s, y, 0);
    wm_batch test = {.n = N, .x = x, .s = s, .targets = y};
    float mse;
    CHECK(wm_evaluate(net, &test, &mse, NULL));
    *out = net;
    return mse;
}

int main(void) {
    wm_net *net = NULL, *concat = NULL;
    const float mse = train(WM_COND_MANIFOLD, &net);
    const float mse_concat = train(WM_COND_CONCAT, &concat);
    if (mse < 0 || mse_concat < 0) return 1;
    printf("test MSE over s in [0,1]: manifold %.2e, concatenation %.2e\n", mse, mse_concat);

    /* The line's ends are its control points: W(0) = P_1, W(1) = P_2. */
    float p1, p2, w_mid;
    const float half = 0.5f;
    CHECK(wm_net_control_point(net, 0, 0, &p1, NULL));
    CHECK(wm_net_control_point(net, 0, 1, &p2, NULL));
    CHECK(wm_net_weights_at(net, 0, &half, &w_mid, NULL));
    printf("slope: P_1 = %.3f (want 1), P_2 = %.3f (want 3), W(0.5) = %.3f (want 2)\n",
           p1, p2, w_mid);

    wm_net_free(concat);
    wm_net_free(net);
    return mse < 1e-4f && mse < mse_concat && fabsf(p1 - 1) < 0.01f && fabsf(p2 - 3) < 0.01f
               ? 0 : 1;
}
