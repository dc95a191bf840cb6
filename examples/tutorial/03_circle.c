/* 03_circle.c -- tutorial step 3: a circle manifold for a periodic context.
 * The task y = sin 2 pi (x + s) shifts a sine by the phase s in [0,1): s = 0
 * and s = 1 are the same task, so the weights should go round a closed curve:
 * W(s) = P_1 + P_2 cos 2 pi s + P_3 sin 2 pi s. */
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
#define HIDDEN 32
static const float PI = 3.14159265358979f;

static unsigned long long rng = 1;
static float uniform(void) {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)(rng >> 40) / (float)(1 << 24);
}

static void make_batch(float *x, float *s, float *y) {
    for (int i = 0; i < N; i++) {
        x[i] = uniform();
        s[i] = uniform();
        y[i] = sinf(2 * PI * (x[i] + s[i]));
    }
}

static float train(wm_conditioning cond, wm_net **out) {
    wm_manifold *circle = NULL;
    CHECK(wm_manifold_circle(&circle));
    wm_net *net = NULL;
    CHECK(wm_net_create(&net, circle, 1, cond));
    wm_manifold_free(circle);
    CHECK(wm_net_dense(net, HIDDEN, WM_ACT_TANH));
    CHECK(wm_net_dense(net, 1, WM_ACT_NONE));
    CHECK(wm_net_set_loss(net, WM_LOSS_MSE));
    CHECK(wm_net_init(net, 3));

    wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
    cfg.lr = 0.01f;
    wm_optimizer *opt = NULL;
    CHECK(wm_optimizer_create(&opt, net, &cfg));
    float x[N], s[N], y[N];
    for (int step = 0; step < 3000; step++) {
        make_batch(x, s, y);
        wm_batch b = {.n = N, .x = x, .s = s, .targets = y};
        CHECK(wm_step(opt, &b, NULL));
    }
    wm_optimizer_free(opt);

    float mse = 0;                            /* mean over 16 fresh batches */
    for (int r = 0; r < 16; r++) {
        make_batch(x, s, y);
        wm_batch test = {.n = N, .x = x, .s = s, .targets = y};
        float m;
        CHECK(wm_evaluate(net, &test, &m, NULL));
        mse += m / 16;
    }
    *out = net;
    return mse;
}

int main(void) {
    wm_net *net = NULL, *concat = NULL;
    const float mse = train(WM_COND_MANIFOLD, &net);
    const float mse_concat = train(WM_COND_CONCAT, &concat);
    if (mse < 0 || mse_concat < 0) return 1;
    printf("test MSE: circle manifold %.4f, concatenation %.4f\n", mse, mse_concat);

    /* Periodic: the weights at s = 0 and s = 1 are the same point. */
    static float w0[HIDDEN], w1[HIDDEN];
    const float s0 = 0.0f, s1 = 1.0f;
    CHECK(wm_net_weights_at(net, 0, &s0, w0, NULL));
    CHECK(wm_net_weights_at(net, 0, &s1, w1, NULL));
    float gap = 0;
    for (int i = 0; i < HIDDEN; i++) gap = fmaxf(gap, fabsf(w0[i] - w1[i]));
    printf("max |W(0) - W(1)| over the first layer: %.1e\n", gap);

    wm_net_free(concat);
    wm_net_free(net);
    return mse < 0.01f && gap < 1e-5f ? 0 : 1;
}
