/*
 * noise.c -- Fashion-MNIST under Gaussian pixel noise on a line.
 *
 * The context s in [0,1] is a noise level: each pixel gets Gaussian noise of
 * standard deviation sigma = s * max_sigma (default max_sigma = 1, on pixels
 * in [0,1]). Two copies of the same MLP learn the family of noisy tasks:
 *
 *   manifold  weights on a line segment in weight space,
 *             W(s) = (1-s) P_1 + s P_2                   (wm_manifold_line)
 *   concat    one set of weights, s appended to the input (WM_COND_CONCAT)
 *
 * Both train on noise levels from a training range only (default s in
 * [0, 0.7]), on identical minibatches where every image has its own level and
 * fresh noise. Both are then tested at 11 levels s = 0, 0.1, ..., 1, the
 * levels above the training range never seen (extrapolation). Writes
 * noise.csv and noise.png into --out.
 *
 *   noise --epochs 3 --train-range 0,0.7 --max-sigma 1 --out results
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "wmanifold.h"

typedef struct {
    float lo, hi;       /* training range of s */
    float gap0, gap1;   /* an optional held-out gap (gap0, gap1) inside it */
    float max_sigma;    /* sigma = s * max_sigma */
} noise_task;

static int is_train(const noise_task *t, float s)
{
    return s >= t->lo - 1e-6f && s <= t->hi + 1e-6f && !(s > t->gap0 && s < t->gap1);
}

/* Training contexts: uniform on the training range minus the gap (rejection
 * sampling; the gap is checked to leave something). */
static void sample_ctx(ex_rng *r, float *s, void *user)
{
    const noise_task *t = user;
    do
        s[0] = t->lo + ex_rng_uniform(r) * (t->hi - t->lo);
    while (!is_train(t, s[0]));
}

/* The input at context s: the image plus N(0, (s max_sigma)^2) per pixel.
 * No clipping, so that sigma means what it says. */
static void add_noise(const float *img, const float *s, float *x, int rows, int cols, ex_rng *r,
                      void *user)
{
    const noise_task *t = user;
    float sigma = s[0] * t->max_sigma;
    for (int i = 0; i < rows * cols; i++)
        x[i] = img[i] + sigma * ex_rng_normal(r);
}

static void usage(FILE *f, const ex_opts *d)
{
    fprintf(f,
            "usage: noise [flags]\n"
            "Fashion-MNIST with Gaussian pixel noise of std s*max_sigma: an MLP whose weights\n"
            "live on a line (weight manifold) against the same MLP given s as an extra input.\n\n"
            "  --train-range A,B   train on noise levels s in [A,B] (default 0,0.7);\n"
            "                      the rest of [0,1] is held out\n"
            "  --heldout A,B       also hold out the levels strictly between A and B, inside\n"
            "                      the training range (tests interpolation; default none)\n"
            "  --max-sigma F       noise std at s = 1, pixels being in [0,1] (default 1)\n"
            "  --levels N          test at N evenly spaced levels in [0,1] (default 11)\n");
    ex_opts_help(f, d);
}

int main(int argc, char **argv)
{
    ex_opts o, defaults;
    ex_opts_default(&o);
    o.epochs = 5;
    o.out_dir = "results";
    defaults = o;
    noise_task nt = {0.0f, 0.7f, 0.0f, 0.0f, 1.0f};
    int levels = 11;

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
        } else if ((r = ex_flag(argc, argv, &i, "--train-range", &v)) != 0) {
            if (r < 0 || ex_parse_pair(v, &nt.lo, &nt.hi) || !(nt.lo >= 0.0f) ||
                !(nt.hi <= 1.0f) || !(nt.lo < nt.hi)) {
                fprintf(stderr, "error: --train-range wants A,B with 0 <= A < B <= 1\n");
                return 2;
            }
        } else if ((r = ex_flag(argc, argv, &i, "--heldout", &v)) != 0) {
            if (r < 0 || ex_parse_pair(v, &nt.gap0, &nt.gap1) || !(nt.gap0 >= 0.0f) ||
                !(nt.gap1 <= 1.0f) || !(nt.gap0 < nt.gap1)) {
                fprintf(stderr, "error: --heldout wants A,B with 0 <= A < B <= 1\n");
                return 2;
            }
        } else if ((r = ex_flag(argc, argv, &i, "--max-sigma", &v)) != 0) {
            if (r < 0 || ex_parse_float(v, &nt.max_sigma) || !(nt.max_sigma > 0.0f)) {
                fprintf(stderr, "error: --max-sigma wants a positive number\n");
                return 2;
            }
        } else if ((r = ex_flag(argc, argv, &i, "--levels", &v)) != 0) {
            if (r < 0 || ex_parse_int(v, &levels) || levels < 2 || levels > 1001) {
                fprintf(stderr, "error: --levels wants an integer in [2,1001]\n");
                return 2;
            }
        } else {
            fprintf(stderr, "error: unknown flag '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (nt.gap0 <= nt.lo && nt.gap1 >= nt.hi) {
        fprintf(stderr, "error: --heldout %g,%g leaves nothing of the training range\n",
                (double)nt.gap0, (double)nt.gap1);
        return 2;
    }

    double t_start = ex_now();
    idx_dataset train, test;
    if (ex_load_data(&o, &train, &test))
        return 1;

    int rc = 1;
    wm_manifold *line = NULL;
    wm_net *net[EX_N_MODELS] = {NULL, NULL};
    wm_optimizer *opt[EX_N_MODELS] = {NULL, NULL};
    FILE *csv = NULL;
    if (wm_manifold_line(&line) != WM_OK) {
        fprintf(stderr, "error: wm_manifold_line: %s\n", wm_last_error());
        goto out;
    }
    const int n_in = train.rows * train.cols;
    if (ex_build_mlps(line, n_in, &o, net, opt))
        goto out;

    printf("noise: sigma = s * %g, train on s in [%g, %g]", (double)nt.max_sigma, (double)nt.lo,
           (double)nt.hi);
    if (nt.gap1 > nt.gap0)
        printf(" except (%g, %g)", (double)nt.gap0, (double)nt.gap1);
    printf(", held out the rest of [0,1]; %d epochs, batch %d, seed %llu\n", o.epochs, o.batch,
           (unsigned long long)o.seed);
    ex_print_params(net);

    ex_task task = {1, sample_ctx, add_noise, &nt};
    double t_train = ex_now();
    if (ex_train(opt, net, &task, &train, &o))
        goto out;
    t_train = ex_now() - t_train;

    char csv_path[4400];
    if (!(csv = ex_open_out(o.out_dir, "noise.csv", csv_path, sizeof csv_path)))
        goto out;
    fprintf(csv, "s,sigma,acc_manifold,acc_concat,split\n");
    printf("\n     s  sigma  split     manifold  concat   manifold-concat\n");
    double sum[2][EX_N_MODELS] = {{0}};
    int count[2] = {0, 0};
    double t_eval = ex_now();
    for (int l = 0; l < levels; l++) {
        float s = (float)l / (float)(levels - 1), acc[EX_N_MODELS];
        /* The same noisy test set for both models at each level. */
        if (ex_eval_at(net, &task, &test, &s, o.seed * 1000003u + (uint64_t)l, acc))
            goto out;
        int held = !is_train(&nt, s);
        for (int m = 0; m < EX_N_MODELS; m++)
            sum[held][m] += acc[m];
        count[held]++;
        printf("%6.2f  %5.2f  %-8s  %.4f    %.4f   %+.4f\n", (double)s,
               (double)(s * nt.max_sigma), held ? "heldout" : "train", (double)acc[0],
               (double)acc[1], (double)(acc[0] - acc[1]));
        fprintf(csv, "%.4f,%.4f,%.4f,%.4f,%s\n", (double)s, (double)(s * nt.max_sigma),
                (double)acc[0], (double)acc[1], held ? "heldout" : "train");
    }
    t_eval = ex_now() - t_eval;
    if (fclose(csv) != 0) {
        csv = NULL;
        fprintf(stderr, "error: writing %s failed\n", csv_path);
        goto out;
    }
    csv = NULL;

    printf("\nmean test accuracy         manifold  concat   manifold-concat\n");
    for (int h = 0; h < 2; h++) {
        if (count[h] == 0)
            continue;
        double mm = sum[h][0] / count[h], mc = sum[h][1] / count[h];
        printf("%-8s levels (%2d levels)  %.4f    %.4f   %+.4f\n", h ? "held-out" : "training",
               count[h], mm, mc, mm - mc);
    }
    printf("wrote %s\n", csv_path);

    if (!o.no_plot) {
        float held[3][2];
        int n_held = 0;
        if (nt.gap1 > nt.gap0) {
            held[n_held][0] = nt.gap0;
            held[n_held++][1] = nt.gap1;
        }
        if (nt.lo > 0.0f) {
            held[n_held][0] = 0.0f;
            held[n_held++][1] = nt.lo;
        }
        if (nt.hi < 1.0f) {
            held[n_held][0] = nt.hi;
            held[n_held++][1] = 1.0f;
        }
        char title[256];
        snprintf(title, sizeof title,
                 "Noisy Fashion-MNIST (sigma = %g s): line weight manifold vs input "
                 "concatenation (%d epochs)",
                 (double)nt.max_sigma, o.epochs);
        if (ex_plot_1d(o.out_dir, "noise", title, "noise level s", 1, 0.0f, 1.0f, 0.1f, 0.0f,
                       (const float (*)[2])held, n_held) == 0)
            printf("plot: %s/noise.png\n", o.out_dir);
    }
    printf("time: training %.1f s, testing %.1f s, total %.1f s\n", t_train, t_eval,
           ex_now() - t_start);
    rc = 0;
out:
    if (csv)
        fclose(csv);
    for (int m = 0; m < EX_N_MODELS; m++) {
        wm_optimizer_free(opt[m]);
        wm_net_free(net[m]);
    }
    wm_manifold_free(line);
    idx_free(&train);
    idx_free(&test);
    return rc;
}
