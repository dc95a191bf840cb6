/*
 * resnet_rotation.c -- a small residual CNN with group norm on rotated
 * Fashion-MNIST: which layers should walk the weight manifold?
 *
 * Every image is shown rotated by 2 pi s, s in [0,1) on a circle. Training
 * sees angles on the arc 0-270 degrees only; testing covers every 10 degrees,
 * so 280-350 is held out. One architecture (a stem, two residual blocks,
 * global average pooling, a dense head):
 *
 *     conv 8 3x3 pad 1 relu, maxpool 2, groupnorm 2,
 *     block: conv 8 relu, groupnorm 2, conv 8, groupnorm 2, residual(block input, relu)  x 2
 *     global avgpool, dense 10
 *
 * (the library's groupnorm has no activation of its own, so each conv
 * carries the relu and the norm follows it), four ways of conditioning it
 * on s:
 *
 *   manifold   every layer on the circle, W(s) = P_1 + P_2 cos 2 pi s + P_3 sin 2 pi s
 *   concat     one point of weights, cos 2 pi s and sin 2 pi s as two extra
 *              constant input planes (WM_COND_CONCAT)
 *   film       every layer a point (wm_net_set_layer_manifold(net, l, 0)),
 *              a FiLM layer on the circle after each group norm: the FiLM
 *              baseline as a composition
 *   lastblock  the stem and the first block points, the second block and
 *              the head on the circle
 *
 * Each method trains with each seed on identical minibatches (the same
 * images, angles and order for a seed), with Adam. Writes resnet_rotation.csv
 * (every method, seed and angle), resnet_rotation.log-style lines on stdout
 * and, unless --no-plot, resnet_rotation.png (the seed-mean curves).
 *
 *   resnet_rotation --seeds 3 --epochs 2 --train 20000 --out docs/results
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "wmanifold.h"

#define TWO_PI 6.283185307179586f
#define N_METHODS 4
#define ARC_DEG 270.0f

static const char *const method_name[N_METHODS] = {"manifold", "concat", "film", "lastblock"};

static void fail_lib(const char *what, wm_status st)
{
    fprintf(stderr, "error: %s: %s: %s\n", what, wm_status_str(st), wm_last_error());
    exit(1);
}
#define CHECK(call)                                   \
    do {                                              \
        wm_status st_ = (call);                       \
        if (st_ != WM_OK) fail_lib(#call, st_);       \
    } while (0)

/* Add a layer; in the film method follow each group norm by a FiLM layer on
 * the manifold; mark the layer a point when `point`. */
static void add(wm_net *net, int method, int point, wm_status st, const char *what)
{
    if (st != WM_OK)
        fail_lib(what, st);
    int l = wm_net_n_layers(net) - 1;
    if (point && method != 1)
        CHECK(wm_net_set_layer_manifold(net, l, 0));
}

static wm_net *build(const wm_manifold *m, int method, int width, uint64_t seed)
{
    wm_net *net;
    CHECK(wm_net_create(&net, m, 28 * 28, method == 1 ? WM_COND_CONCAT : WM_COND_MANIFOLD));
    CHECK(wm_net_input_shape(net, 1, 28, 28));
    int film = method == 2;
    int early = method == 2 || method == 3;          /* stem and block 1 points */
    int late = method == 2;                          /* block 2 and head points */
#define GN(pt)                                                              \
    do {                                                                    \
        add(net, method, pt, wm_net_groupnorm(net, 2), "groupnorm");        \
        if (film) add(net, method, 0, wm_net_film(net), "film");            \
    } while (0)
    add(net, method, early, wm_net_conv2d(net, width, 3, 1, 1, WM_ACT_RELU), "conv");
    add(net, method, 0, wm_net_maxpool(net, 2), "maxpool");
    GN(early);
    for (int b = 0; b < 2; b++) {
        int pt = b == 0 ? early : late;
        int in = wm_net_n_layers(net) - 1;           /* the block's input */
        add(net, method, pt, wm_net_conv2d(net, width, 3, 1, 1, WM_ACT_RELU), "conv");
        GN(pt);
        add(net, method, pt, wm_net_conv2d(net, width, 3, 1, 1, WM_ACT_NONE), "conv");
        GN(pt);
        add(net, method, 0, wm_net_residual(net, in, WM_ACT_RELU), "residual");
    }
    add(net, method, 0, wm_net_global_avgpool(net), "global_avgpool");
    add(net, method, late, wm_net_dense(net, EX_N_CLASSES, WM_ACT_NONE), "dense");
#undef GN
    CHECK(wm_net_init(net, seed));
    return net;
}

static void rotate_batch(const idx_dataset *d, const int *idx, const float *deg, int n, float *x)
{
    size_t px = (size_t)d->rows * d->cols;
    for (int i = 0; i < n; i++)
        ex_warp(d->images + (size_t)idx[i] * px, x + (size_t)i * px, d->rows, d->cols,
                TWO_PI * deg[i] / 360.0f, 0.0f, 0.0f);
}

int main(int argc, char **argv)
{
    ex_opts o;
    ex_opts_default(&o);
    o.epochs = 2;
    o.batch = 32;
    o.n_train = 20000;
    o.n_test = 2000;
    int seeds = 3, width = 8;
    float lr = 0.003f;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: resnet_rotation [--seeds N] [--width C] [--epochs N] [--batch N] [--train N]\n"
                   "                       [--test N] [--lr F] [--seed N] [--data DIR] [--out DIR] [--no-plot]\n"
                   "A residual CNN with group norm on rotated Fashion-MNIST (train 0-270 degrees,\n"
                   "test every 10): every layer on the circle, input concatenation, FiLM on point\n"
                   "layers, and only the last block and head on the circle; N seeds each.\n"
                   "Defaults: --seeds 3 --width 8 --epochs 2 --batch 32 --train 20000 --test 2000\n"
                   "--lr 0.003 (Adam) --out docs/results.\n");
            return 0;
        } else if ((r = ex_flag(argc, argv, &i, "--seeds", &v)) != 0) {
            if (r < 0 || ex_parse_int(v, &seeds) || seeds < 1 || seeds > 16) {
                fprintf(stderr, "error: --seeds wants 1..16\n");
                return 2;
            }
        } else if ((r = ex_flag(argc, argv, &i, "--width", &v)) != 0) {
            if (r < 0 || ex_parse_int(v, &width) || width < 2 || width > 64 || width % 2) {
                fprintf(stderr, "error: --width wants an even 2..64\n");
                return 2;
            }
        } else if ((r = ex_flag(argc, argv, &i, "--lr", &v)) != 0) {
            if (r < 0 || ex_parse_float(v, &lr)) {
                fprintf(stderr, "error: --lr wants a positive number\n");
                return 2;
            }
        } else if ((r = ex_opts_parse(&o, argc, argv, &i)) != 0) {
            if (r < 0)
                return 2;
        } else {
            fprintf(stderr, "error: unknown flag '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    idx_dataset train = {0}, test = {0};
    if (ex_load_data(&o, &train, &test))
        return 1;
    wm_manifold *circle;
    CHECK(wm_manifold_circle(&circle));
    size_t px = (size_t)train.rows * train.cols;
    float *x = malloc(sizeof(float) * px * (size_t)(o.batch > test.n ? o.batch : test.n));
    float *s = malloc(sizeof(float) * (size_t)(o.batch > test.n ? o.batch : test.n));
    float *deg = malloc(sizeof(float) * (size_t)(o.batch > test.n ? o.batch : test.n));
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)(o.batch > test.n ? o.batch : test.n));
    int *order = malloc(sizeof(int) * (size_t)train.n), *all = malloc(sizeof(int) * (size_t)test.n);
    enum { N_ANGLES = 36 };
    static float acc[N_METHODS][16][N_ANGLES];
    size_t n_params[N_METHODS];
    char path[1024];
    FILE *csv = ex_open_out(o.out_dir, "resnet_rotation.csv", path, sizeof path);
    if (!csv || !x || !s || !deg || !lab || !order || !all)
        return 1;
    fprintf(csv, "method,seed,angle_deg,held_out,accuracy\n");
    for (int j = 0; j < test.n; j++) all[j] = j;
    double t0 = ex_now();
    for (int mth = 0; mth < N_METHODS; mth++)
        for (int sd = 0; sd < seeds; sd++) {
            uint64_t seed = o.seed + (uint64_t)sd;
            wm_net *net = build(circle, mth, width, seed);
            n_params[mth] = wm_net_n_params(net);
            wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
            cfg.lr = lr;
            wm_optimizer *opt;
            CHECK(wm_optimizer_create(&opt, net, &cfg));
            ex_rng rng;
            ex_rng_seed(&rng, seed);                      /* the same data for every method */
            double t1 = ex_now();
            float loss = 0;
            for (int ep = 0; ep < o.epochs; ep++) {
                for (int j = 0; j < train.n; j++) order[j] = j;
                ex_shuffle(order, train.n, &rng);
                double sum = 0;
                int steps = 0;
                for (int b0 = 0; b0 + o.batch <= train.n; b0 += o.batch) {
                    for (int i = 0; i < o.batch; i++) {
                        deg[i] = ex_rng_uniform(&rng) * ARC_DEG;
                        s[i] = deg[i] / 360.0f;
                        lab[i] = train.labels[order[b0 + i]];
                    }
                    rotate_batch(&train, order + b0, deg, o.batch, x);
                    wm_batch b = {o.batch, x, s, lab, NULL};
                    CHECK(wm_step(opt, &b, &loss));
                    sum += loss, steps++;
                }
                if (!o.quiet)
                    printf("%-9s seed %d epoch %d: mean loss %.4f (%.1f s)\n", method_name[mth], sd,
                           ep + 1, sum / steps, ex_now() - t1);
            }
            for (int a = 0; a < N_ANGLES; a++) {
                float d = 10.0f * (float)a, loss_a, acc_a;
                for (int i = 0; i < test.n; i++) deg[i] = d, s[i] = d / 360.0f, lab[i] = test.labels[i];
                rotate_batch(&test, all, deg, test.n, x);
                wm_batch b = {test.n, x, s, lab, NULL};
                CHECK(wm_evaluate(net, &b, &loss_a, &acc_a));
                acc[mth][sd][a] = acc_a;
                fprintf(csv, "%s,%d,%g,%d,%.4f\n", method_name[mth], sd, (double)d, d > ARC_DEG, acc_a);
            }
            wm_optimizer_free(opt);
            wm_net_free(net);
        }
    fclose(csv);
    printf("\n%d seeds, %d epochs on %d images (batch %d, Adam lr %g), tested on %d images every 10 degrees\n",
           seeds, o.epochs, train.n, o.batch, (double)lr, test.n);
    printf("%-10s %10s  %-26s %-26s\n", "method", "params", "train arc 0-270 (mean, range)",
           "held-out 280-350 (mean, range)");
    for (int mth = 0; mth < N_METHODS; mth++) {
        double mean[2] = {0, 0}, lo[2] = {1, 1}, hi[2] = {0, 0};
        for (int sd = 0; sd < seeds; sd++) {
            double arc[2] = {0, 0};
            int cnt[2] = {0, 0};
            for (int a = 0; a < N_ANGLES; a++) {
                int h = 10.0f * (float)a > ARC_DEG;
                arc[h] += acc[mth][sd][a], cnt[h]++;
            }
            for (int h = 0; h < 2; h++) {
                double v = arc[h] / cnt[h];
                mean[h] += v / seeds;
                lo[h] = v < lo[h] ? v : lo[h];
                hi[h] = v > hi[h] ? v : hi[h];
            }
        }
        printf("%-10s %10zu  %.4f (%.4f..%.4f)       %.4f (%.4f..%.4f)\n", method_name[mth], n_params[mth],
               mean[0], lo[0], hi[0], mean[1], lo[1], hi[1]);
    }
    printf("wrote %s\ntime: %.1f s\n", path, ex_now() - t0);
    if (!o.no_plot) {
        FILE *gp = ex_open_out(o.out_dir, "resnet_rotation.gp", path, sizeof path);
        if (gp) {
            fprintf(gp, "set terminal pngcairo size 900,520\nset output 'resnet_rotation.png'\n"
                        "set datafile separator ','\nset key bottom left\n"
                        "set title 'Residual CNN + group norm, rotated Fashion-MNIST (mean of seeds)'\n"
                        "set xlabel 'rotation (degrees)'\nset ylabel 'test accuracy'\n"
                        "set object 1 rect from 275,graph 0 to 355,graph 1 fc rgb '#eeeeee' behind\n"
                        "set xrange [0:350]\n"
                        "plot for [m in 'manifold concat film lastblock'] 'resnet_rotation.csv' "
                        "using (strcol(1) eq m ? $3 : 1/0):5 smooth unique with linespoints title m\n");
            fclose(gp);
            ex_run_gnuplot(o.out_dir, "resnet_rotation.gp");
        }
    }
    free(x), free(s), free(deg), free(lab), free(order), free(all);
    wm_manifold_free(circle);
    idx_free(&train);
    idx_free(&test);
    return 0;
}
