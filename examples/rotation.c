/*
 * rotation.c -- Rotated Fashion-MNIST on a circle.
 *
 * Every image is shown rotated by the angle 2 pi s, s in [0,1) a periodic
 * context. Two copies of the same MLP learn the whole family of rotated tasks:
 *
 *   manifold  its weights live on a circle in weight space,
 *             W(s) = P_1 + P_2 cos 2 pi s + P_3 sin 2 pi s   (wm_manifold_circle)
 *   concat    one set of weights; the input is widened by cos 2 pi s, sin 2 pi s
 *             (WM_COND_CONCAT on the same circle: the library adds the features)
 *
 * Both train on angles from a training arc only (default 0-270 degrees), on
 * identical minibatches in which every image has its own random angle. Then
 * both are tested on the test set at every 10 degrees, including the held-out
 * arc they never saw. Writes rotation.csv and rotation.png into --out.
 *
 *   rotation --epochs 3 --train-arc 0,270 --out results
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "wmanifold.h"

#define TWO_PI 6.283185307179586f

typedef struct {
    float start_deg, len_deg; /* training arc: [start, start + len], wrapping at 360 */
    ex_warp_table warp;       /* the last angle's taps: a test set is seen at one angle */
} arc;

/* Training contexts: uniform on the training arc. */
static void sample_ctx(ex_rng *r, float *s, void *user)
{
    const arc *a = user;
    float deg = ex_wrap360(a->start_deg + ex_rng_uniform(r) * a->len_deg);
    s[0] = deg / 360.0f;
}

/* The input at context s: the image rotated by 2 pi s. */
static void rotate(const float *img, const float *s, float *x, int rows, int cols, ex_rng *r,
                   void *user)
{
    arc *a = user;
    (void)r;
    ex_warp_cached(&a->warp, img, x, rows, cols, TWO_PI * s[0], 0.0f, 0.0f);
}

static void usage(FILE *f, const ex_opts *d)
{
    fprintf(f,
            "usage: rotation [flags]\n"
            "Rotated Fashion-MNIST: an MLP whose weights live on a circle (weight manifold)\n"
            "against the same MLP given cos/sin of the angle as extra inputs.\n\n"
            "  --train-arc A,B     train on angles A..B degrees (wraps past 360; default 0,270);\n"
            "                      the rest of the circle is held out\n"
            "  --step DEG          test every DEG degrees (default 10)\n");
    ex_opts_help(f, d);
}

int main(int argc, char **argv)
{
    ex_opts o, defaults;
    ex_opts_default(&o);
    o.epochs = 5;
    o.out_dir = "results";
    defaults = o;
    float a0 = 0.0f, a1 = 270.0f, step = 10.0f;

    for (int i = 1; i < argc; i++) {
        const char *v;
        int r = ex_opts_parse(&o, argc, argv, &i);
        if (r < 0)
            return 2;
        if (r > 0)
            continue;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout, &defaults);
            return 0;
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
        } else {
            fprintf(stderr, "error: unknown flag '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    arc tr = {0.0f, 0.0f, {0}};
    if (ex_arc_of(a0, a1, &tr.start_deg, &tr.len_deg)) {
        fprintf(stderr, "error: --train-arc %g,%g is empty\n", (double)a0, (double)a1);
        return 2;
    }

    double t_start = ex_now();
    idx_dataset train, test;
    if (ex_load_data(&o, &train, &test))
        return 1;

    int rc = 1;
    wm_manifold *circle = NULL;
    wm_net *net[EX_N_MODELS] = {NULL, NULL};
    wm_optimizer *opt[EX_N_MODELS] = {NULL, NULL};
    wm_status st = wm_manifold_circle(&circle);
    if (st != WM_OK) {
        fprintf(stderr, "error: wm_manifold_circle: %s\n", wm_last_error());
        goto out;
    }
    const int n_in = train.rows * train.cols;
    if (ex_build_mlps(circle, n_in, &o, net, opt))
        goto out;

    printf("rotation: train arc %g..%g deg (%g deg), held out the other %g deg; "
           "%d epochs, batch %d, seed %llu\n",
           (double)tr.start_deg, (double)(tr.start_deg + tr.len_deg), (double)tr.len_deg,
           (double)(360.0f - tr.len_deg), o.epochs, o.batch, (unsigned long long)o.seed);
    ex_print_params(net);

    ex_task task = {1, sample_ctx, rotate, &tr};
    double t_train = ex_now();
    if (ex_train(opt, net, &task, &train, &o))
        goto out;
    t_train = ex_now() - t_train;

    /* Test every `step` degrees on the whole test set. */
    char title[256];
    snprintf(title, sizeof title,
             "Rotated Fashion-MNIST: circle weight manifold vs input concatenation (%d epochs)",
             o.epochs);
    double t_eval;
    if (ex_rotation_report(net, &task, &test, tr.start_deg, tr.len_deg, step, &o, "rotation", title,
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
    ex_warp_table_free(&tr.warp);
    idx_free(&train);
    idx_free(&test);
    return rc;
}
