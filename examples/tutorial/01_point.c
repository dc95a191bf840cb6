/* 01_point.c -- tutorial step 1: a plain network, i.e. the point manifold.
 * Learns XOR, shows the error convention, saves and reloads the model. */
#include <stdio.h>

#include "wmanifold.h"

/* Every fallible call returns a wm_status; wm_last_error() says why. */
#define CHECK(call)                                                           \
    do {                                                                      \
        wm_status st_ = (call);                                               \
        if (st_ != WM_OK) {                                                   \
            fprintf(stderr, "%s failed: %s\n", #call, wm_last_error());       \
            return 1;                                                         \
        }                                                                     \
    } while (0)

int main(void) {
    const float x[4][2] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}};
    const int32_t y[4] = {0, 1, 1, 0};

    /* A point manifold has K = 1 basis point and no context: a plain net. */
    wm_manifold *point = NULL;
    CHECK(wm_manifold_point(&point));
    wm_net *net = NULL;
    CHECK(wm_net_create(&net, point, 2, WM_COND_MANIFOLD));
    wm_manifold_free(point);                  /* the net keeps its own copy */
    CHECK(wm_net_dense(net, 8, WM_ACT_TANH));
    CHECK(wm_net_dense(net, 2, WM_ACT_NONE)); /* two logits */
    CHECK(wm_net_set_loss(net, WM_LOSS_SOFTMAX_CE));
    CHECK(wm_net_init(net, 42));
    printf("%d layers, %zu parameters\n", wm_net_n_layers(net), wm_net_n_params(net));

    wm_opt_config cfg = wm_opt_default(WM_OPT_SD);
    cfg.lr = 0.5f;
    wm_optimizer *opt = NULL;
    CHECK(wm_optimizer_create(&opt, net, &cfg));

    wm_batch batch = {.n = 4, .x = &x[0][0], .s = NULL, .labels = y, .targets = NULL};
    for (int step = 0; step <= 2000; step++) {
        float loss;
        CHECK(wm_step(opt, &batch, &loss));
        if (step % 500 == 0) printf("step %4d  loss %.4f\n", step, loss);
    }

    float logits[4][2];
    CHECK(wm_infer(net, &x[0][0], NULL, 4, &logits[0][0]));
    int correct = 0;
    for (int i = 0; i < 4; i++) {
        const int pred = logits[i][1] > logits[i][0];
        printf("%g xor %g -> %d\n", x[i][0], x[i][1], pred);
        correct += pred == y[i];
    }

    /* A mistake is refused, explained, and changes nothing. */
    const int32_t bad[4] = {0, 1, 2, 0};      /* there is no class 2 */
    wm_batch oops = batch;
    oops.labels = bad;
    wm_status st = wm_step(opt, &oops, NULL);
    printf("bad labels: %s: %s\n", wm_status_str(st), wm_last_error());

    /* Save, load, and get the same outputs bit for bit. */
    CHECK(wm_net_save(net, "xor.wm"));
    wm_net *copy = NULL;
    CHECK(wm_net_load(&copy, "xor.wm"));
    float again[4][2];
    CHECK(wm_infer(copy, &x[0][0], NULL, 4, &again[0][0]));
    int same = 1;
    for (int i = 0; i < 4; i++)
        same &= again[i][0] == logits[i][0] && again[i][1] == logits[i][1];
    printf("reloaded model %s\n", same ? "agrees" : "DIFFERS");

    wm_net_free(copy);
    wm_optimizer_free(opt);                   /* before or after its net */
    wm_net_free(net);
    return correct == 4 && st == WM_EINVAL && same ? 0 : 1;
}
