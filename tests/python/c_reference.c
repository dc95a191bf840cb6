/*
 * c_reference.c -- the C side of the Python binding's bit-for-bit test.
 *
 *   c_reference SPEC OUT [MODEL]   train the net SPEC describes, write its
 *                                  per-step losses and wm_infer outputs to OUT
 *                                  (and save the model to MODEL)
 *   c_reference --layout           print the C layout of the public structs
 *                                  and enums, for the ctypes declarations
 *
 * SPEC is written by tests/python/test_wmanifold.py (native endianness):
 *   char magic[8] = "WMREF01"; uint64 seed;
 *   int32 manifold (0 point, 1 line, 2 circle, 3 torus), loss, opt kind,
 *         n_in, hidden, n_out, n_train, n_test, batch, epochs,
 *         arch (0: dense(hidden, tanh), dense(n_out); 1: n_in = side^2 images,
 *         conv2d(4, 3x3, stride 1, pad 1, tanh), avgpool(2), dense(n_out));
 *   float32 lr;
 *   float32 x_train[n_train*n_in], s_train[n_train*dim];
 *   int32 labels[n_train] (softmax CE) or float32 targets[n_train*n_out] (MSE);
 *   float32 x_test[n_test*n_in], s_test[n_test*dim].
 * OUT: float32 losses[epochs * ceil(n_train/batch)], float32 out[n_test*n_out].
 *
 * Python performs the same calls through ctypes; any difference in what the
 * binding passes (a copy, a wrong stride, a truncated seed) shows up as a
 * bit difference.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wmanifold.h"

#define CHECK(call)                                                               \
    do {                                                                          \
        wm_status st_ = (call);                                                   \
        if (st_ != WM_OK) {                                                       \
            fprintf(stderr, "c_reference: %s failed: %s: %s\n", #call,            \
                    wm_status_str(st_), wm_last_error());                         \
            exit(1);                                                              \
        }                                                                         \
    } while (0)

static void die(const char *what) {
    fprintf(stderr, "c_reference: %s\n", what);
    exit(1);
}

static void *read_exact(FILE *f, size_t n, size_t size) {
    void *p = malloc(n * size + 1);  /* +1: never malloc(0) */
    if (!p) die("out of memory");
    if (fread(p, size, n, f) != n) die("spec file truncated");
    return p;
}

static int layout(void) {
    /* One "name value" per line: the Python test compares each with ctypes. */
    printf("sizeof_batch %zu\n", sizeof(wm_batch));
    printf("offsetof_batch_n %zu\n", offsetof(wm_batch, n));
    printf("offsetof_batch_x %zu\n", offsetof(wm_batch, x));
    printf("offsetof_batch_s %zu\n", offsetof(wm_batch, s));
    printf("offsetof_batch_labels %zu\n", offsetof(wm_batch, labels));
    printf("offsetof_batch_targets %zu\n", offsetof(wm_batch, targets));
    printf("sizeof_opt_config %zu\n", sizeof(wm_opt_config));
    printf("offsetof_opt_config_kind %zu\n", offsetof(wm_opt_config, kind));
    printf("offsetof_opt_config_lr %zu\n", offsetof(wm_opt_config, lr));
    printf("offsetof_opt_config_volume %zu\n", offsetof(wm_opt_config, volume));
    printf("offsetof_opt_config_momentum %zu\n", offsetof(wm_opt_config, momentum));
    printf("offsetof_opt_config_beta1 %zu\n", offsetof(wm_opt_config, beta1));
    printf("offsetof_opt_config_beta2 %zu\n", offsetof(wm_opt_config, beta2));
    printf("offsetof_opt_config_eps %zu\n", offsetof(wm_opt_config, eps));
    printf("offsetof_opt_config_weight_decay %zu\n", offsetof(wm_opt_config, weight_decay));
    printf("sizeof_status %zu\n", sizeof(wm_status));
    printf("status_ESTATE %d\n", (int)WM_ESTATE);
    printf("status_ENUMERIC %d\n", (int)WM_ENUMERIC);
    printf("act_SIGMOID %d\n", (int)WM_ACT_SIGMOID);
    printf("loss_MSE %d\n", (int)WM_LOSS_MSE);
    printf("cond_CONCAT %d\n", (int)WM_COND_CONCAT);
    printf("opt_ADAM %d\n", (int)WM_OPT_ADAM);
    return 0;
}

static wm_manifold *make_manifold(int32_t code) {
    wm_manifold *m = NULL;
    switch (code) {
    case 0: CHECK(wm_manifold_point(&m)); break;
    case 1: CHECK(wm_manifold_line(&m)); break;
    case 2: CHECK(wm_manifold_circle(&m)); break;
    case 3: {
        wm_manifold *a = NULL, *b = NULL;
        CHECK(wm_manifold_circle(&a));
        CHECK(wm_manifold_circle(&b));
        CHECK(wm_manifold_product(&m, a, b));
        wm_manifold_free(a);
        wm_manifold_free(b);
        break;
    }
    default: die("unknown manifold code");
    }
    return m;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--layout") == 0) return layout();
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: c_reference SPEC OUT [MODEL] | c_reference --layout\n");
        return 2;
    }

    FILE *f = fopen(argv[1], "rb");
    if (!f) die("cannot open spec file");
    char magic[8];
    uint64_t seed;
    int32_t hdr[11];
    float lr;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "WMREF01", 8) != 0) die("bad magic");
    if (fread(&seed, sizeof seed, 1, f) != 1 || fread(hdr, sizeof hdr[0], 11, f) != 11 ||
        fread(&lr, sizeof lr, 1, f) != 1)
        die("spec header truncated");
    const int32_t mcode = hdr[0], loss = hdr[1], kind = hdr[2], n_in = hdr[3], hidden = hdr[4],
                  n_out = hdr[5], n_train = hdr[6], n_test = hdr[7], bs = hdr[8],
                  epochs = hdr[9], arch = hdr[10];
    if (n_in < 1 || hidden < 1 || n_out < 1 || n_train < 1 || n_test < 0 || bs < 1 ||
        epochs < 0 || arch < 0 || arch > 1)
        die("bad sizes in spec");
    int side = 0;
    while ((side + 1) * (side + 1) <= n_in) side++;
    if (arch == 1 && side * side != n_in) die("conv needs a square n_in");

    wm_manifold *m = make_manifold(mcode);
    const int dim = wm_manifold_dim(m);

    float *x_train = read_exact(f, (size_t)n_train * n_in, sizeof(float));
    float *s_train = read_exact(f, (size_t)n_train * dim, sizeof(float));
    int32_t *labels = NULL;
    float *targets = NULL;
    if (loss == WM_LOSS_SOFTMAX_CE)
        labels = read_exact(f, (size_t)n_train, sizeof(int32_t));
    else
        targets = read_exact(f, (size_t)n_train * n_out, sizeof(float));
    float *x_test = read_exact(f, (size_t)n_test * n_in, sizeof(float));
    float *s_test = read_exact(f, (size_t)n_test * dim, sizeof(float));
    if (fgetc(f) != EOF) die("trailing bytes in spec");
    fclose(f);

    /* The same calls, in the same order, as the Python side. */
    wm_net *net = NULL;
    CHECK(wm_net_create(&net, m, n_in, WM_COND_MANIFOLD));
    wm_manifold_free(m);
    if (arch == 1) {
        CHECK(wm_net_input_shape(net, 1, side, side));
        CHECK(wm_net_conv2d(net, 4, 3, 1, 1, WM_ACT_TANH));
        CHECK(wm_net_avgpool(net, 2));
    } else {
        CHECK(wm_net_dense(net, hidden, WM_ACT_TANH));
    }
    CHECK(wm_net_dense(net, n_out, WM_ACT_NONE));
    CHECK(wm_net_set_loss(net, (wm_loss)loss));
    CHECK(wm_net_init(net, seed));

    wm_opt_config cfg = wm_opt_default((wm_opt_kind)kind);
    cfg.lr = lr;
    wm_optimizer *opt = NULL;
    CHECK(wm_optimizer_create(&opt, net, &cfg));

    const int n_batches = (n_train + bs - 1) / bs;
    float *losses = malloc(((size_t)epochs * n_batches + 1) * sizeof(float));
    float *out = malloc(((size_t)n_test * n_out + 1) * sizeof(float));
    if (!losses || !out) die("out of memory");
    size_t li = 0;
    for (int e = 0; e < epochs; e++) {
        for (int i = 0; i < n_train; i += bs) {
            const int n = n_train - i < bs ? n_train - i : bs;
            wm_batch b = {
                .n = n,
                .x = x_train + (size_t)i * n_in,
                .s = dim ? s_train + (size_t)i * dim : NULL,
                .labels = labels ? labels + i : NULL,
                .targets = targets ? targets + (size_t)i * n_out : NULL,
            };
            CHECK(wm_step(opt, &b, &losses[li++]));
        }
    }
    CHECK(wm_infer(net, x_test, dim ? s_test : NULL, n_test, out));

    FILE *o = fopen(argv[2], "wb");
    if (!o) die("cannot open output file");
    if (fwrite(losses, sizeof(float), li, o) != li ||
        fwrite(out, sizeof(float), (size_t)n_test * n_out, o) != (size_t)n_test * n_out ||
        fclose(o) != 0)
        die("cannot write output file");
    if (argc == 4) CHECK(wm_net_save(net, argv[3]));

    wm_optimizer_free(opt);
    wm_net_free(net);
    free(x_train); free(s_train); free(labels); free(targets);
    free(x_test); free(s_test); free(losses); free(out);
    return 0;
}
