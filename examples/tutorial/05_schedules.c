/* 05_schedules.c -- tutorial step 5: the controls a training loop needs.
 * The line task of step 2, y = (1 + 2s) x, trained with momentum from one
 * starting net (copied with wm_net_clone) under three learning-rate
 * schedules set between steps with wm_optimizer_set_lr, and with the
 * gradient's norm clipped (wm_optimizer_set_clip_norm). wm_net_summary
 * prints the net. */
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
#define STEPS 400

static unsigned long long rng = 1;
static float uniform(void) {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)(rng >> 40) / (float)(1 << 24);
}

static void make_batch(float *x, float *s, float *y) {
    for (int i = 0; i < N; i++) {
        x[i] = 2 * uniform() - 1;
        s[i] = uniform();
        y[i] = (1 + 2 * s[i]) * x[i];
    }
}

/* The learning rate at `step` for each schedule, from a peak of 0.2. */
static float schedule(int kind, int step) {
    const float peak = 0.2f;
    const double pi = 3.14159265358979323846;
    switch (kind) {
    case 0:  /* step decay: divide by 10 every 150 steps */
        return peak * powf(0.1f, (float)(step / 150));
    case 1:  /* cosine from the peak to 0 */
        return (float)(0.5 * peak * (1 + cos(pi * step / STEPS)));
    default: /* linear warm-up over 40 steps, then cosine */
        if (step < 40) return peak * (step + 1) / 40.0f;
        return (float)(0.5 * peak * (1 + cos(pi * (step - 40) / (STEPS - 40))));
    }
}

/* Train a copy of `start` under one schedule; return its test MSE. */
static float train(const wm_net *start, int kind) {
    wm_net *net = NULL;
    CHECK(wm_net_clone(&net, start));          /* every schedule starts alike */
    wm_opt_config cfg = wm_opt_default(WM_OPT_MOMENTUM);
    wm_optimizer *opt = NULL;
    CHECK(wm_optimizer_create(&opt, net, &cfg));
    CHECK(wm_optimizer_set_clip_norm(opt, 1.0f));  /* |g| at most 1 per step */
    float x[N], s[N], y[N];
    for (int step = 0; step < STEPS; step++) {
        CHECK(wm_optimizer_set_lr(opt, schedule(kind, step)));
        make_batch(x, s, y);
        wm_batch b = {.n = N, .x = x, .s = s, .targets = y};
        CHECK(wm_step(opt, &b, NULL));
    }
    make_batch(x, s, y);
    wm_batch test = {.n = N, .x = x, .s = s, .targets = y};
    float mse;
    CHECK(wm_evaluate(net, &test, &mse, NULL));
    wm_optimizer_free(opt);
    wm_net_free(net);
    return mse;
}

int main(void) {
    wm_manifold *line = NULL;
    wm_net *net = NULL;
    CHECK(wm_manifold_line(&line));
    CHECK(wm_net_create(&net, line, 1, WM_COND_MANIFOLD));
    wm_manifold_free(line);
    CHECK(wm_net_dense(net, 1, WM_ACT_NONE));
    CHECK(wm_net_set_loss(net, WM_LOSS_MSE));
    CHECK(wm_net_init(net, 7));
    char table[1024];
    CHECK(wm_net_summary(net, table, sizeof table));
    fputs(table, stdout);

    const char *names[3] = {"step decay", "cosine", "warm-up + cosine"};
    int ok = 1;
    for (int kind = 0; kind < 3; kind++) {
        const float mse = train(net, kind);
        printf("%-17s test MSE %.2e\n", names[kind], mse);
        ok = ok && mse >= 0 && mse < 1e-4f;
    }
    wm_net_free(net);
    return ok ? 0 : 1;
}
