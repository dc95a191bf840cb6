/* 04_torus.c -- tutorial step 4: two periodic contexts make a torus.
 * wm_manifold_product(circle, circle) has the context s = (s1, s2) and the
 * basis c(s) = c_circle(s1) (x) c_circle(s2): K = 3 * 3 = 9 control points.
 * The task y = sin 2 pi (x + s1) * (1 + cos 2 pi s2 / 2) has a phase s1 and
 * an amplitude that goes round with s2. */
#include <math.h>
#include <stdio.h>

#include "wmanifold.h"

#define CHECK(call)                                                           \
    do {                                                                      \
        wm_status st_ = (call);                                               \
        if (st_ != WM_OK) {                                                   \
            fprintf(stderr, "%s failed: %s\n", #call, wm_last_error());       \
            return 1;                                                         \
        }                                                                     \
    } while (0)

#define N 64
static const float PI = 3.14159265358979f;

static unsigned long long rng = 1;
static float uniform(void) {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)(rng >> 40) / (float)(1 << 24);
}

/* Contexts are n x dim row-major: sample i's context is s[2i], s[2i+1]. */
static void make_batch(float *x, float *s, float *y) {
    for (int i = 0; i < N; i++) {
        x[i] = uniform();
        s[2 * i] = uniform();
        s[2 * i + 1] = uniform();
        y[i] = sinf(2 * PI * (x[i] + s[2 * i])) * (1 + 0.5f * cosf(2 * PI * s[2 * i + 1]));
    }
}

int main(void) {
    wm_manifold *a = NULL, *b = NULL, *torus = NULL;
    CHECK(wm_manifold_circle(&a));
    CHECK(wm_manifold_circle(&b));
    CHECK(wm_manifold_product(&torus, a, b));
    wm_manifold_free(a);                      /* the product owns copies */
    wm_manifold_free(b);
    printf("torus: dim %d, K = %d\n", wm_manifold_dim(torus), wm_manifold_n_basis(torus));

    /* The basis is the Kronecker product of the factors' bases. */
    const float s[2] = {0.125f, 0.25f};
    float c[9];
    CHECK(wm_manifold_basis(torus, s, c));
    printf("c(0.125, 0.25) =");
    for (int k = 0; k < 9; k++) printf(" %.3f", c[k]);
    printf("\n");

    wm_net *net = NULL;
    CHECK(wm_net_create(&net, torus, 1, WM_COND_MANIFOLD));
    wm_manifold_free(torus);
    CHECK(wm_net_dense(net, 32, WM_ACT_TANH));
    CHECK(wm_net_dense(net, 1, WM_ACT_NONE));
    CHECK(wm_net_set_loss(net, WM_LOSS_MSE));
    CHECK(wm_net_init(net, 5));

    wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
    cfg.lr = 0.01f;
    wm_optimizer *opt = NULL;
    CHECK(wm_optimizer_create(&opt, net, &cfg));
    float x[N], ctx[2 * N], y[N];
    float first = 0, last = 0;
    for (int step = 0; step < 4000; step++) {
        make_batch(x, ctx, y);
        wm_batch batch = {.n = N, .x = x, .s = ctx, .targets = y};
        float loss;
        CHECK(wm_step(opt, &batch, &loss));
        if (step == 0) first = loss;
        last = loss;
    }
    wm_optimizer_free(opt);

    make_batch(x, ctx, y);
    wm_batch test = {.n = N, .x = x, .s = ctx, .targets = y};
    float mse;
    CHECK(wm_evaluate(net, &test, &mse, NULL));
    printf("training loss %.4f -> %.4f, test MSE %.4f\n", first, last, mse);

    /* Both coordinates wrap: (s1, s2) and (s1 + 1, s2 - 1) are one point. */
    const float x1 = 0.3f, p[2] = {0.2f, 0.9f}, q[2] = {1.2f, -0.1f};
    float yp, yq;
    CHECK(wm_infer(net, &x1, p, 1, &yp));
    CHECK(wm_infer(net, &x1, q, 1, &yq));
    printf("f(0.3; 0.2, 0.9) = %.4f, f(0.3; 1.2, -0.1) = %.4f\n", yp, yq);

    wm_net_free(net);
    return mse < 0.02f && fabsf(yp - yq) < 1e-4f ? 0 : 1;
}
