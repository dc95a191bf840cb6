/*
 * cnn_rotation.c -- Rotated Fashion-MNIST (or CIFAR-10) with a small CNN.
 *
 * The convolutional version of rotation.c. Every image is shown rotated by
 * the angle 2 pi s, s in [0,1) a periodic context. Two copies of the same CNN
 *
 *     conv 8 3x3 pad 1 relu, maxpool 2, conv 16 3x3 pad 1 relu, maxpool 2, dense 10
 *
 * learn the whole family of rotated tasks:
 *
 *   manifold  every kernel and bias lives on a circle in weight space,
 *             W(s) = P_1 + P_2 cos 2 pi s + P_3 sin 2 pi s
 *   concat    one set of weights; cos 2 pi s and sin 2 pi s enter as two extra
 *             constant input channels (WM_COND_CONCAT: the library adds them)
 *
 * Both train with the same seed, optimizer and minibatches on angles from a
 * training arc only (default 0-270 degrees), then are tested at every 10
 * degrees, including the held-out arc. Writes cnn_rotation.csv and .png
 * (cnn_rotation_cifar.* with --cifar) into --out.
 *
 *   cnn_rotation --epochs 3 --out results
 *   cnn_rotation --cifar ~/cifar-10-batches-bin --out results
 *   cnn_rotation --time-steps          (wm_step timing of the conv strategies)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cifar.h"
#include "common.h"
#include "wmanifold.h"

#define TWO_PI 6.283185307179586f
#define MAX_CONV 4
/* Adam's own default, 0.001, converged more slowly in the default 3 epochs
 * (docs/results-cnn.md). */
#define ADAM_LR 0.002f

typedef struct {
    float start_deg, len_deg; /* training arc: [start, start + len], wrapping at 360 */
    int channels;             /* image planes stacked in one idx_dataset row block */
    ex_warp_table warp;       /* the last angle's taps: shared by the planes of an image */
} task_info;

typedef struct {
    int conv[MAX_CONV], n_conv;      /* manifold net's conv widths */
    int cconv[MAX_CONV], n_cconv;    /* the baseline's (0: the same) */
    wm_conv_strategy strategy;
} arch;

static void sample_ctx(ex_rng *r, float *s, void *user)
{
    const task_info *a = user;
    s[0] = ex_wrap360(a->start_deg + ex_rng_uniform(r) * a->len_deg) / 360.0f;
}

/* The harness sees a C x H x W image as one (C*H) x W picture; rotate each
 * H x W plane separately so that colour images turn as a whole. */
static void rotate(const float *img, const float *s, float *x, int rows, int cols, ex_rng *r,
                   void *user)
{
    (void)r;
    task_info *a = user;
    int h = rows / a->channels;
    size_t plane = (size_t)h * cols;
    for (int c = 0; c < a->channels; c++)
        ex_warp_cached(&a->warp, img + c * plane, x + c * plane, h, cols, TWO_PI * s[0], 0.0f,
                       0.0f);
}

static void lib_error(const char *what, wm_status st)
{
    fprintf(stderr, "error: %s: %s: %s\n", what, wm_status_str(st), wm_last_error());
}

/* conv(w_i) 3x3 pad 1 relu + maxpool 2 per entry of conv, then the dense
 * hidden layers, then 10 logits. */
static wm_net *build_cnn(const wm_manifold *m, wm_conditioning cond, int ch, int h, int w,
                         const int *conv, int n_conv, const int *dense, int n_dense,
                         wm_conv_strategy strategy, uint64_t seed)
{
    wm_net *net = NULL;
    wm_status st = wm_net_create(&net, m, ch * h * w, cond);
    if (st == WM_OK)
        st = wm_net_input_shape(net, ch, h, w);
    for (int l = 0; st == WM_OK && l < n_conv; l++) {
        st = wm_net_conv2d(net, conv[l], 3, 1, 1, WM_ACT_RELU);
        if (st == WM_OK && h >= 2 && w >= 2) {
            st = wm_net_maxpool(net, 2);
            h /= 2;
            w /= 2;
        }
    }
    for (int l = 0; st == WM_OK && l < n_dense; l++)
        st = wm_net_dense(net, dense[l], WM_ACT_RELU);
    if (st == WM_OK)
        st = wm_net_dense(net, EX_N_CLASSES, WM_ACT_NONE);
    if (st == WM_OK)
        st = wm_net_set_loss(net, WM_LOSS_SOFTMAX_CE);
    if (st == WM_OK)
        st = wm_net_set_conv_strategy(net, strategy);
    if (st == WM_OK)
        st = wm_net_init(net, seed);
    if (st != WM_OK) {
        lib_error("building the CNN", st);
        wm_net_free(net);
        return NULL;
    }
    return net;
}

static void describe(const char *name, const int *conv, int n_conv, const int *dense, int n_dense)
{
    printf("  %-8s  ", name);
    for (int l = 0; l < n_conv; l++)
        printf("conv %d 3x3 relu, maxpool 2, ", conv[l]);
    for (int l = 0; l < n_dense; l++)
        printf("dense %d relu, ", dense[l]);
    printf("dense %d\n", EX_N_CLASSES);
}

static const char *strategy_name(wm_conv_strategy s)
{
    return s == WM_CONV_STACKED ? "stacked" : s == WM_CONV_MATERIALISED ? "materialised" : "auto";
}

/* ---- --time-steps: wm_step time per conv strategy ------------------------------ */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

enum { T_CONFIGS = 8, T_STEPS = 10, T_REPS = 9 };

static int run_timing(const wm_manifold *circle, const arch *a, const ex_opts *o, int ch, int h,
                      int w)
{
    const int n = o->batch, d = ch * h * w;
    static const wm_conv_strategy strat[3] = {WM_CONV_STACKED, WM_CONV_MATERIALISED,
                                              WM_CONV_AUTO};
    float *x = malloc((size_t)n * d * sizeof *x), *s_mix = malloc((size_t)n * sizeof *s_mix),
          *s_one = malloc((size_t)n * sizeof *s_one);
    int32_t *y = malloc((size_t)n * sizeof *y);
    wm_net *net[T_CONFIGS] = {NULL};
    wm_optimizer *opt[T_CONFIGS] = {NULL};
    double t[T_CONFIGS][T_REPS];
    int rc = -1;
    if (!x || !s_mix || !s_one || !y) {
        fprintf(stderr, "error: out of memory\n");
        goto done;
    }
    /* Random pixels and labels: the time of a step does not depend on them. */
    ex_rng rng;
    ex_rng_seed(&rng, o->seed);
    for (size_t i = 0; i < (size_t)n * d; i++)
        x[i] = ex_rng_uniform(&rng);
    for (int i = 0; i < n; i++) {
        s_mix[i] = ex_rng_uniform(&rng);
        s_one[i] = 0.3f;
        y[i] = (int32_t)(ex_rng_next(&rng) % EX_N_CLASSES);
    }
    /* Configurations c = 0..7: manifold x {stacked, materialised, auto} x
     * {mixed, shared}, then concat x {mixed, shared}. */
    for (int c = 0; c < T_CONFIGS; c++) {
        int manifold = c < 6;
        net[c] = build_cnn(circle, manifold ? WM_COND_MANIFOLD : WM_COND_CONCAT, ch, h, w,
                           a->conv, a->n_conv, o->hidden, o->n_hidden,
                           manifold ? strat[c / 2] : WM_CONV_AUTO, o->seed);
        if (!net[c] || !(opt[c] = ex_make_optimizer(net[c], o)))
            goto done;
    }
    printf("wm_step timing: %dx%dx%d inputs, batch %d, %d rounds of %d steps per "
           "configuration, rounds interleaved across configurations\n"
           "(other jobs on the machine make these noisy; the minimum is the least disturbed)\n",
           ch, h, w, n, T_REPS, T_STEPS);
    describe("net", a->conv, a->n_conv, o->hidden, o->n_hidden);
    /* Round 0 is a warm-up (scratch allocation, caches) and is not counted.
     * Interleaving the rounds spreads any load from other jobs evenly. */
    for (int r = -1; r < T_REPS; r++) {
        for (int c = 0; c < T_CONFIGS; c++) {
            wm_batch b = {n, x, (c & 1) ? s_one : s_mix, y, NULL};
            double t0 = ex_now();
            for (int i = 0; i < T_STEPS; i++) {
                float loss;
                wm_status st = wm_step(opt[c], &b, &loss);
                if (st != WM_OK) {
                    lib_error("wm_step", st);
                    goto done;
                }
            }
            if (r >= 0)
                t[c][r] = (ex_now() - t0) / T_STEPS;
        }
    }
    printf("\n model     strategy       contexts  ms/step (median  min)  samples/s (at median)\n");
    for (int c = 0; c < T_CONFIGS; c++) {
        qsort(t[c], T_REPS, sizeof t[c][0], cmp_double);
        double med = t[c][T_REPS / 2];
        printf(" %-8s  %-13s  %-8s  %14.2f %6.2f  %9.0f\n",
               ex_model_name[c < 6 ? EX_MANIFOLD : EX_CONCAT],
               c < 6 ? strategy_name(strat[c / 2]) : "(plain, K=1)", (c & 1) ? "shared" : "mixed",
               1e3 * med, 1e3 * t[c][0], n / med);
    }
    rc = 0;
done:
    for (int c = 0; c < T_CONFIGS; c++) {
        wm_optimizer_free(opt[c]);
        wm_net_free(net[c]);
    }
    free(x);
    free(s_mix);
    free(s_one);
    free(y);
    return rc;
}

/* ---- main ---------------------------------------------------------------------- */

static void usage(FILE *f, const ex_opts *d, const arch *a)
{
    fprintf(f,
            "usage: cnn_rotation [flags]\n"
            "Rotated images: a CNN whose kernels live on a circle in weight space (weight\n"
            "manifold) against the same CNN given cos/sin of the angle as two extra input\n"
            "channels. Fashion-MNIST by default, CIFAR-10 with --cifar.\n\n"
            "  --cifar DIR         use CIFAR-10's binary format from DIR (data_batch_1.bin ..\n"
            "                      data_batch_5.bin, test_batch.bin; 3x32x32 inputs)\n"
            "  --train-arc A,B     train on angles A..B degrees (wraps past 360; default 0,270);\n"
            "                      the rest of the circle is held out\n"
            "  --step DEG          test every DEG degrees (default 10)\n"
            "  --conv A,B,...      conv widths, each 3x3 pad 1 relu + maxpool 2 (default %d,%d)\n"
            "  --concat-conv A,..  the baseline's conv widths (default: same as --conv)\n"
            "  --hidden A,...      dense relu layers between the convs and the output\n"
            "                      (default: none)\n"
            "  --concat-hidden A,. the baseline's (default: same as --hidden)\n"
            "  --strategy auto|stacked|materialised   conv strategy for mixed-context\n"
            "                      batches (default auto)\n"
            "  --time-steps        no training: time wm_step at --batch for each strategy,\n"
            "                      mixed and shared contexts, and exit (random inputs of\n"
            "                      Fashion-MNIST's shape, or CIFAR-10's with --cifar: no\n"
            "                      data is read)\n"
            "  --epochs N          training epochs (default %d)\n"
            "  --batch N           minibatch size (default %d)\n"
            "  --lr F              learning rate (default: %g with adam, the optimizer's\n"
            "                      own default with sd or momentum)\n"
            "  --opt sd|momentum|adam   optimizer for both models (default adam)\n"
            "  --seed N            seed for initialisation and sampling (default %llu)\n"
            "  --data DIR          Fashion-MNIST directory (default %s)\n"
            "  --out DIR           where the CSV and PNG go (default %s)\n"
            "  --train N           use the first N training images (default %d)\n"
            "  --test N            use the first N test images (default %d)\n"
            "  --no-plot           write the CSV only\n"
            "  --quiet             no per-epoch progress lines\n"
            "  --help              this text\n",
            a->conv[0], a->conv[1], d->epochs, d->batch, (double)ADAM_LR,
            (unsigned long long)d->seed, d->data_dir, d->out_dir, d->n_train, d->n_test);
}

int main(int argc, char **argv)
{
    ex_opts o, defaults;
    ex_opts_default(&o);
    /* Defaults sized so that a run takes about 2-3 minutes on two cores. */
    o.epochs = 3;
    o.batch = 64;
    o.n_train = 60000;
    o.n_test = 10000;
    o.n_hidden = 0;
    o.out_dir = "results";
    defaults = o;
    arch a = {{8, 16}, 2, {0}, 0, WM_CONV_AUTO};
    float a0 = 0.0f, a1 = 270.0f, step = 10.0f;
    const char *cifar_dir = NULL;
    int timing = 0;

    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout, &defaults, &a);
            return 0;
        } else if ((r = ex_flag(argc, argv, &i, "--cifar", &v)) != 0) {
            if (r < 0)
                return 2;
            cifar_dir = v;
        } else if ((r = ex_flag(argc, argv, &i, "--train-arc", &v)) != 0) {
            if (r < 0 || ex_parse_pair(v, &a0, &a1)) {
                fprintf(stderr, "error: --train-arc wants A,B in degrees, e.g. 0,270\n");
                return 2;
            }
        } else if ((r = ex_flag(argc, argv, &i, "--step", &v)) != 0) {
            if (r < 0 || ex_parse_float(v, &step) || !(step >= 1.0f && step <= 180.0f)) {
                fprintf(stderr, "error: --step wants degrees in [1,180]\n");
                return 2;
            }
        } else if ((r = ex_flag(argc, argv, &i, "--conv", &v)) != 0) {
            if (r < 0 || ex_parse_widths(v, a.conv, &a.n_conv, MAX_CONV, 4096)) {
                fprintf(stderr, "error: --conv wants 1..%d widths, e.g. 8,16\n", MAX_CONV);
                return 2;
            }
        } else if ((r = ex_flag(argc, argv, &i, "--concat-conv", &v)) != 0) {
            if (r < 0 || ex_parse_widths(v, a.cconv, &a.n_cconv, MAX_CONV, 4096)) {
                fprintf(stderr, "error: --concat-conv wants 1..%d widths, e.g. 8,16\n",
                        MAX_CONV);
                return 2;
            }
        } else if ((r = ex_flag(argc, argv, &i, "--strategy", &v)) != 0) {
            if (r < 0)
                return 2;
            if (!strcmp(v, "auto"))
                a.strategy = WM_CONV_AUTO;
            else if (!strcmp(v, "stacked"))
                a.strategy = WM_CONV_STACKED;
            else if (!strcmp(v, "materialised") || !strcmp(v, "materialized"))
                a.strategy = WM_CONV_MATERIALISED;
            else {
                fprintf(stderr, "error: --strategy wants auto, stacked or materialised\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--time-steps")) {
            timing = 1;
        } else if ((r = ex_opts_parse(&o, argc, argv, &i)) != 0) {
            if (r < 0)
                return 2;
        } else {
            fprintf(stderr, "error: unknown flag '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    task_info ti = {0.0f, 0.0f, 1, {0}};
    if (ex_arc_of(a0, a1, &ti.start_deg, &ti.len_deg)) {
        fprintf(stderr, "error: --train-arc %g,%g is empty\n", (double)a0, (double)a1);
        return 2;
    }
    if (!(o.lr > 0))
        o.lr = o.opt == WM_OPT_ADAM ? ADAM_LR : wm_opt_default(o.opt).lr;
    if (a.n_cconv == 0) {
        memcpy(a.cconv, a.conv, sizeof a.conv);
        a.n_cconv = a.n_conv;
    }
    if (o.n_concat_hidden == 0) {
        memcpy(o.concat_hidden, o.hidden, sizeof o.hidden);
        o.n_concat_hidden = o.n_hidden;
    }

    wm_manifold *circle = NULL;
    wm_status st = wm_manifold_circle(&circle);
    if (st != WM_OK) {
        lib_error("wm_manifold_circle", st);
        return 1;
    }
    if (timing) {
        int rc = cifar_dir ? run_timing(circle, &a, &o, 3, 32, 32)
                           : run_timing(circle, &a, &o, 1, 28, 28);
        wm_manifold_free(circle);
        return rc ? 1 : 0;
    }

    /* Data: either an idx_dataset of its own, or a view of CIFAR arrays in
     * which the C planes of an image form one (C*32) x 32 picture. */
    double t_start = ex_now();
    idx_dataset train = {0}, test = {0};
    cifar_dataset ctrain = {0}, ctest = {0};
    if (cifar_dir) {
        char err[8600];
        double t0 = ex_now();
        if (cifar_load(cifar_dir, 1, o.n_train, &ctrain, err, sizeof err) ||
            cifar_load(cifar_dir, 0, o.n_test, &ctest, err, sizeof err)) {
            fprintf(stderr, "error: %s\n", err);
            fprintf(stderr, "hint: --cifar wants the directory of CIFAR-10's binary version "
                            "(cifar-10-batches-bin/ from cifar-10-binary.tar.gz)\n");
            cifar_free(&ctrain);
            wm_manifold_free(circle);
            return 1;
        }
        train = (idx_dataset){ctrain.n, ctrain.channels * ctrain.rows, ctrain.cols,
                              ctrain.images, ctrain.labels};
        test = (idx_dataset){ctest.n, ctest.channels * ctest.rows, ctest.cols, ctest.images,
                             ctest.labels};
        ti.channels = ctrain.channels;
        printf("data: %d training and %d test images of %dx%dx%d from %s (%.1f s)\n", train.n,
               test.n, ctrain.channels, ctrain.rows, ctrain.cols, cifar_dir, ex_now() - t0);
    } else if (ex_load_data(&o, &train, &test)) {
        wm_manifold_free(circle);
        return 1;
    }
    const int ch = ti.channels, h = train.rows / ch, w = train.cols;
    const char *base = cifar_dir ? "cnn_rotation_cifar" : "cnn_rotation";

    int rc = 1;
    wm_net *net[EX_N_MODELS] = {NULL, NULL};
    wm_optimizer *opt[EX_N_MODELS] = {NULL, NULL};
    net[EX_MANIFOLD] = build_cnn(circle, WM_COND_MANIFOLD, ch, h, w, a.conv, a.n_conv, o.hidden,
                                 o.n_hidden, a.strategy, o.seed);
    net[EX_CONCAT] = build_cnn(circle, WM_COND_CONCAT, ch, h, w, a.cconv, a.n_cconv,
                               o.concat_hidden, o.n_concat_hidden, a.strategy, o.seed);
    if (!net[0] || !net[1])
        goto out;
    for (int m = 0; m < EX_N_MODELS; m++)
        if (!(opt[m] = ex_make_optimizer(net[m], &o)))
            goto out;

    printf("cnn_rotation: %s %dx%dx%d, train arc %g..%g deg (%g deg), held out the other %g "
           "deg; %d epochs, batch %d, lr %g, seed %llu, conv strategy %s\n",
           cifar_dir ? "CIFAR-10" : "Fashion-MNIST", ch, h, w, (double)ti.start_deg,
           (double)(ti.start_deg + ti.len_deg), (double)ti.len_deg,
           (double)(360.0f - ti.len_deg), o.epochs, o.batch, (double)o.lr,
           (unsigned long long)o.seed, strategy_name(a.strategy));
    describe(ex_model_name[EX_MANIFOLD], a.conv, a.n_conv, o.hidden, o.n_hidden);
    describe(ex_model_name[EX_CONCAT], a.cconv, a.n_cconv, o.concat_hidden, o.n_concat_hidden);
    ex_print_params(net);

    ex_task task = {1, sample_ctx, rotate, &ti};
    double t_train = ex_now();
    if (ex_train(opt, net, &task, &train, &o))
        goto out;
    t_train = ex_now() - t_train;

    char title[256];
    snprintf(title, sizeof title,
             "Rotated %s, CNN: circle weight manifold vs input concatenation (%d epochs)",
             cifar_dir ? "CIFAR-10" : "Fashion-MNIST", o.epochs);
    double t_eval;
    if (ex_rotation_report(net, &task, &test, ti.start_deg, ti.len_deg, step, &o, base, title,
                           &t_eval))
        goto out;
    printf("time: training %.1f s, testing %.1f s, total %.1f s\n", t_train, t_eval,
           ex_now() - t_start);
    rc = 0;
out:
    for (int m = 0; m < EX_N_MODELS; m++) {
        wm_optimizer_free(opt[m]);
        wm_net_free(net[m]);
    }
    wm_manifold_free(circle);
    ex_warp_table_free(&ti.warp);
    if (cifar_dir) {
        cifar_free(&ctrain);
        cifar_free(&ctest);
    } else {
        idx_free(&train);
        idx_free(&test);
    }
    return rc;
}
