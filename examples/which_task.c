/*
 * which_task.c -- "which task is this?": recover an unknown context from the
 * data with wm_infer_context_batch, on rotated and on noisy Fashion-MNIST.
 *
 * Two experiments, each trained as in rotation.c / noise.c (the manifold MLP
 * and its input-concatenation baseline side by side), plus a plain MLP that
 * never sees a context:
 *
 *   rotation  circle manifold, images rotated by 2 pi s, trained on an arc
 *             (default 0-270 degrees); the rest of the circle is held out
 *   noise     line manifold, Gaussian pixel noise of std s * max_sigma,
 *             trained on s in [0, 0.7]; (0.7, 1] is held out
 *
 * Then test images are shown at contexts the program knows but the nets are
 * not told, drawn from the training range or from the held-out range:
 *   - per sample (each image its own context) and in batches of 8, 32 and
 *     128 images sharing one context, the context is recovered with labels
 *     (cross-entropy) and without (prediction entropy): the error's median
 *     and 90th percentile (degrees for rotation, units of s for noise);
 *   - infer-then-classify (no labels): the manifold net's accuracy at the
 *     inferred context, against the oracle that knows it, the concat baseline
 *     given the true context, a wrong (uniformly random) one, or its own
 *     inferred one, and the plain MLP (no context at all).
 * Writes which_task_error.csv, which_task_acc.csv and which_task.png into --out.
 *
 *   which_task --epochs 5 --out results
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "wmanifold.h"

#define TWO_PI 6.283185307179586f
#define N_SIZES 4
static const int batch_sizes[N_SIZES] = {1, 8, 32, 128};  /* 1: each sample its own context */

typedef struct {
    int noise;                    /* 0: rotation (periodic), 1: noise level */
    float lo, hi;                 /* training range of s (rotation: arc start, length in s) */
    float max_sigma;
} ctx_task;

static int in_train(const ctx_task *t, float s)
{
    if (t->noise)
        return s >= t->lo && s <= t->hi;
    float d = s - t->lo;
    d -= floorf(d);
    return d <= t->hi;
}

/* A context from the training range (heldout = 0) or from the rest (1). */
static float draw_ctx(const ctx_task *t, int heldout, ex_rng *r)
{
    float s;
    do
        s = ex_rng_uniform(r);
    while (in_train(t, s) == heldout);
    return s;
}

static void sample_train_ctx(ex_rng *r, float *s, void *user) { s[0] = draw_ctx(user, 0, r); }

static void transform(const float *img, const float *s, float *x, int rows, int cols, ex_rng *r,
                      void *user)
{
    const ctx_task *t = user;
    if (!t->noise) {
        ex_warp(img, x, rows, cols, TWO_PI * s[0], 0.0f, 0.0f);
        return;
    }
    float sigma = s[0] * t->max_sigma;
    for (int i = 0; i < rows * cols; i++)
        x[i] = img[i] + sigma * ex_rng_normal(r);
}

/* Error of a recovered context: degrees on the circle, units of s on the line. */
static double ctx_error(const ctx_task *t, float got, float truth)
{
    double d = fabs((double)got - truth);
    return t->noise ? d : fmin(d, 1.0 - d) * 360.0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* q-quantile (0..1) of v[0..n), sorting v (nearest rank). */
static double quantile(double *v, int n, double q)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int k = (int)ceil(q * n) - 1;
    return v[k < 0 ? 0 : k >= n ? n - 1 : k];
}

static int report(const char *call, wm_status st)
{
    fprintf(stderr, "error: %s: %s\n", call, wm_last_error());
    return st == WM_OK ? 0 : -1;
}

/* Correct argmax predictions among n outputs. */
static int hits(const float *out, const int32_t *y, int n)
{
    int c = 0;
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int j = 1; j < EX_N_CLASSES; j++)
            if (out[i * EX_N_CLASSES + j] > out[i * EX_N_CLASSES + best])
                best = j;
        c += best == y[i];
    }
    return c;
}

/* Cross-entropy of label y and prediction entropy (nats) of one row of logits. */
static void row_objectives(const float *z, int y, double *ce, double *ent)
{
    double mx = z[0], sum = 0.0, h = 0.0;
    for (int j = 1; j < EX_N_CLASSES; j++)
        mx = z[j] > mx ? z[j] : mx;
    for (int j = 0; j < EX_N_CLASSES; j++)
        sum += exp(z[j] - mx);
    for (int j = 0; j < EX_N_CLASSES; j++) {
        double lp = z[j] - mx - log(sum);
        h -= exp(lp) * lp;
    }
    *ce = log(sum) + mx - z[y];
    *ent = h;
}

/* Train the plain (context-free) MLP on the same distribution of images. */
static int train_plain(wm_optimizer *opt, const ex_task *task, const idx_dataset *tr,
                       const ex_opts *o)
{
    const int n = tr->n, d = tr->rows * tr->cols, bs = o->batch < n ? o->batch : n;
    ex_rng rng;
    ex_rng_seed(&rng, o->seed * 104729 + 3);
    int *order = malloc((size_t)n * sizeof *order);
    float *xb = malloc((size_t)bs * d * sizeof *xb);
    int32_t *yb = malloc((size_t)bs * sizeof *yb);
    int rc = -1;
    if (!order || !xb || !yb) {
        fprintf(stderr, "error: out of memory\n");
        goto done;
    }
    for (int i = 0; i < n; i++)
        order[i] = i;
    for (int ep = 1; ep <= o->epochs; ep++) {
        ex_shuffle(order, n, &rng);
        for (int start = 0; start < n; start += bs) {
            int nb = n - start < bs ? n - start : bs;
            for (int i = 0; i < nb; i++) {
                float s;
                task->sample_train_ctx(&rng, &s, task->user);
                task->transform(tr->images + (size_t)order[start + i] * d, &s, xb + (size_t)i * d,
                                tr->rows, tr->cols, &rng, task->user);
                yb[i] = tr->labels[order[start + i]];
            }
            wm_batch b = {nb, xb, NULL, yb, NULL};
            wm_status st = wm_step(opt, &b, NULL);
            if (st != WM_OK) {
                report("wm_step (plain MLP)", st);
                goto done;
            }
        }
    }
    rc = 0;
done:
    free(order), free(xb), free(yb);
    return rc;
}

/* Accuracy columns of the acc table. */
enum { A_ORACLE, A_INFERRED, A_CONCAT_TRUE, A_CONCAT_WRONG, A_CONCAT_INFERRED, A_PLAIN, N_ACC };
static const char *const acc_name[N_ACC] = {"manifold_oracle", "manifold_inferred", "concat_true",
                                            "concat_wrong", "concat_inferred", "plain"};

typedef struct {
    wm_net *mf, *cc, *plain;
    const ctx_task *t;
    const ex_task *task;
    const idx_dataset *test;
    int n_eval, trials;
    FILE *err_csv, *acc_csv;
    const char *name;
} experiment;

/* One (split, batch size) cell: `groups` groups of B images, each group
 * sharing a context (B = 1: every image its own, inferred in one per-sample
 * call). Prints and writes the errors and accuracies. */
static int run_cell(const experiment *e, int heldout, int B, ex_rng *rng)
{
    const idx_dataset *te = e->test;
    const int d = te->rows * te->cols;
    const int groups = B == 1 ? 1 : e->trials, per = B == 1 ? e->n_eval : B;
    const int n_err = B == 1 ? e->n_eval : e->trials;
    float *x = malloc((size_t)per * d * sizeof *x), *s = malloc((size_t)per * sizeof *s);
    float *s_lab = malloc((size_t)per * sizeof *s_lab), *s_ent = malloc((size_t)per * sizeof *s_ent);
    float *s_cc = malloc((size_t)per * sizeof *s_cc), *s_wrong = malloc((size_t)per * sizeof *s_wrong);
    float *out = malloc((size_t)per * EX_N_CLASSES * sizeof *out);
    int32_t *y = malloc((size_t)per * sizeof *y);
    double *err_lab = malloc((size_t)n_err * sizeof(double)), *err_ent = malloc((size_t)n_err * sizeof(double));
    long correct[N_ACC] = {0}, total = 0, lab_in = 0, ent_in = 0;   /* answers on the training range */
    long lab_miss = 0, ent_miss = 0;      /* the true context scores better than the answer */
    float *l_lab = malloc((size_t)per * sizeof *l_lab), *l_ent = malloc((size_t)per * sizeof *l_ent);
    int rc = -1;
    if (!x || !s || !s_lab || !s_ent || !s_cc || !s_wrong || !out || !y || !err_lab || !err_ent ||
        !l_lab || !l_ent) {
        fprintf(stderr, "error: out of memory\n");
        goto done;
    }
    for (int g = 0; g < groups; g++) {
        float shared_s = draw_ctx(e->t, heldout, rng), wrong = ex_rng_uniform(rng);
        for (int i = 0; i < per; i++) {
            int k = B == 1 ? i : (int)(ex_rng_uniform(rng) * te->n) % te->n;
            s[i] = B == 1 ? draw_ctx(e->t, heldout, rng) : shared_s;
            s_wrong[i] = B == 1 ? ex_rng_uniform(rng) : wrong;
            e->task->transform(te->images + (size_t)k * d, s + i, x + (size_t)i * d, te->rows,
                               te->cols, rng, e->task->user);
            y[i] = te->labels[k];
        }
        int shared = B > 1;
        wm_batch with = {per, x, NULL, y, NULL}, without = {per, x, NULL, NULL, NULL};
        wm_status st;
        if ((st = wm_infer_context_batch(e->mf, &with, shared, s_lab, l_lab)) != WM_OK ||
            (st = wm_infer_context_batch(e->mf, &without, shared, s_ent, l_ent)) != WM_OK ||
            (st = wm_infer_context_batch(e->cc, &without, shared, s_cc, NULL)) != WM_OK) {
            report("wm_infer_context_batch", st);
            goto done;
        }
        for (int i = 0; i < (shared ? 1 : per); i++)
            lab_in += in_train(e->t, s_lab[i]), ent_in += in_train(e->t, s_ent[i]);
        if (shared) {
            err_lab[g] = ctx_error(e->t, s_lab[0], shared_s);
            err_ent[g] = ctx_error(e->t, s_ent[0], shared_s);
            for (int i = 1; i < per; i++)
                s_ent[i] = s_ent[0], s_cc[i] = s_cc[0];
        } else {
            for (int i = 0; i < per; i++) {
                err_lab[i] = ctx_error(e->t, s_lab[i], s[i]);
                err_ent[i] = ctx_error(e->t, s_ent[i], s[i]);
            }
        }
        struct { wm_net *net; const float *ctx; } runs[N_ACC] = {
            {e->mf, s}, {e->mf, s_ent}, {e->cc, s}, {e->cc, s_wrong}, {e->cc, s_cc}, {e->plain, NULL}};
        for (int a = 0; a < N_ACC; a++) {
            if ((st = wm_infer(runs[a].net, x, runs[a].ctx, per, out)) != WM_OK) {
                report("wm_infer", st);
                goto done;
            }
            correct[a] += hits(out, y, per);
            if (a != A_ORACLE)
                continue;
            double ce_mean = 0.0, ent_mean = 0.0;   /* the objectives at the true context */
            for (int i = 0; i < per; i++) {
                double ce, ent;
                row_objectives(out + (size_t)i * EX_N_CLASSES, y[i], &ce, &ent);
                if (!shared) {
                    lab_miss += ce < l_lab[i] - 1e-5 * (1.0 + fabs(ce));
                    ent_miss += ent < l_ent[i] - 1e-5 * (1.0 + fabs(ent));
                }
                ce_mean += ce / per, ent_mean += ent / per;
            }
            if (shared) {
                lab_miss += ce_mean < l_lab[0] - 1e-5 * (1.0 + fabs(ce_mean));
                ent_miss += ent_mean < l_ent[0] - 1e-5 * (1.0 + fabs(ent_mean));
            }
        }
        total += per;
    }
    double med_l = quantile(err_lab, n_err, 0.5), p90_l = quantile(err_lab, n_err, 0.9);
    double med_e = quantile(err_ent, n_err, 0.5), p90_e = quantile(err_ent, n_err, 0.9);
    const char *split = heldout ? "heldout" : "train";
    double in_l = (double)lab_in / n_err, in_e = (double)ent_in / n_err;
    double miss_l = (double)lab_miss / n_err, miss_e = (double)ent_miss / n_err;
    printf("%-8s %-7s %4d %6d | %8.3f %8.3f %5.2f %5.2f | %8.3f %8.3f %5.2f %5.2f |", e->name, split, B,
           n_err, med_l, p90_l, in_l, miss_l, med_e, p90_e, in_e, miss_e);
    fprintf(e->err_csv, "%s,%s,%d,%d,%.5f,%.5f,%.5f,%.5f,%.4f,%.4f,%.4f,%.4f\n", e->name, split, B,
            n_err, med_l, p90_l, med_e, p90_e, in_l, in_e, miss_l, miss_e);
    fprintf(e->acc_csv, "%s,%s,%d,%ld", e->name, split, B, total);
    for (int a = 0; a < N_ACC; a++) {
        printf(" %6.4f", (double)correct[a] / total);
        fprintf(e->acc_csv, ",%.5f", (double)correct[a] / total);
    }
    printf("\n");
    fprintf(e->acc_csv, "\n");
    fflush(stdout);
    rc = 0;
done:
    free(x), free(s), free(s_lab), free(s_ent), free(s_cc), free(s_wrong), free(out), free(y);
    free(err_lab), free(err_ent), free(l_lab), free(l_ent);
    return rc;
}

/* Train the three nets on task t over manifold m, then every cell. */
static int run_experiment(const char *name, wm_manifold *m, ctx_task *t, const idx_dataset *train,
                          const idx_dataset *test, const ex_opts *o, int n_eval, int trials,
                          FILE *err_csv, FILE *acc_csv)
{
    wm_net *net[EX_N_MODELS] = {NULL, NULL}, *plain = NULL;
    wm_optimizer *opt[EX_N_MODELS] = {NULL, NULL}, *popt = NULL;
    wm_manifold *point = NULL;
    ex_task task = {1, sample_train_ctx, transform, t};
    const int n_in = train->rows * train->cols;
    int rc = -1;
    double t0 = ex_now();
    if (ex_build_mlps(m, n_in, o, net, opt))
        goto out;
    if (wm_manifold_point(&point) != WM_OK) {
        report("wm_manifold_point", WM_EINVAL);
        goto out;
    }
    if (!(plain = ex_build_mlp(point, WM_COND_MANIFOLD, n_in, o->hidden, o->n_hidden, o->seed)) ||
        !(popt = ex_make_optimizer(plain, o)))
        goto out;
    printf("\n== %s: training the manifold, concat and plain MLPs (%d epochs)\n", name, o->epochs);
    if (ex_train(opt, net, &task, train, o) || train_plain(popt, &task, train, o))
        goto out;
    printf("training took %.1f s\n\n", ex_now() - t0);
    t0 = ex_now();
    printf("context error (%s); in: share of answers on the training range; miss: share where "
           "the true context scores better than the answer (the search missed it); then the "
           "accuracy without labels:\n", t->noise ? "units of s" : "degrees");
    printf("task     split      B  cases | labels: median   p90    in  miss | entropy: median  p90    "
           "in  miss |");
    for (int a = 0; a < N_ACC; a++)
        printf(" %s", acc_name[a]);
    printf("\n");
    experiment e = {net[EX_MANIFOLD], net[EX_CONCAT], plain, t, &task, test, n_eval, trials,
                    err_csv, acc_csv, name};
    ex_rng rng;
    ex_rng_seed(&rng, o->seed * 31 + (uint64_t)t->noise);
    for (int heldout = 0; heldout <= 1; heldout++)
        for (int b = 0; b < N_SIZES; b++)
            if (run_cell(&e, heldout, batch_sizes[b], &rng))
                goto out;
    printf("inference took %.1f s\n", ex_now() - t0);
    rc = 0;
out:
    for (int k = 0; k < EX_N_MODELS; k++) {
        wm_optimizer_free(opt[k]);
        wm_net_free(net[k]);
    }
    wm_optimizer_free(popt);
    wm_net_free(plain);
    wm_manifold_free(point);
    return rc;
}

static int write_plot(const char *dir)
{
    char path[4096];
    FILE *f = ex_open_out(dir, "which_task.gp", path, sizeof path);
    if (!f)
        return -1;
    fprintf(f,
            "# which_task.gp -- written by examples/which_task.c; plots its two CSV files.\n"
            "set terminal pngcairo size 1300,1100 font ',10'\n"
            "set output 'which_task.png'\n"
            "set datafile separator ','\n"
            "set multiplot layout 2,2 title 'Which task is this? Recovering an unknown context "
            "(wm\\_infer\\_context\\_batch)'\n"
            "set logscale xy\n"
            "set xtics ('1' 1, '8' 8, '32' 32, '128' 128)\n"
            "set xrange [0.8:160]\n"
            "set grid\n"
            "set key below font ',8' maxrows 3\n"
            "SP = 'train heldout'\n"
            "sel(task,sp,col) = (strcol(1) eq task && strcol(2) eq sp) ? column(col) : 1/0\n"
            "do for [tk in 'rotation noise'] {\n"
            "  set title (tk eq 'rotation' ? 'rotation (circle net): angle error' : "
            "'noise (line net): noise-level error')\n"
            "  set xlabel 'images sharing the unknown context (1 = per sample)'\n"
            "  set ylabel (tk eq 'rotation' ? 'error (degrees)' : 'error (units of s)')\n"
            "  plot 'which_task_error.csv' skip 1 using 3:(sel(tk,'train',5)) w lp lw 2 pt 7 lc rgb "
            "'#1f77b4' title 'labels, train range, median', \\\n"
            "       '' skip 1 using 3:(sel(tk,'train',6)) w lp lw 1 dt 2 pt 7 lc rgb '#1f77b4' title "
            "'labels, train range, 90th pct', \\\n"
            "       '' skip 1 using 3:(sel(tk,'train',7)) w lp lw 2 pt 5 lc rgb '#2ca02c' title "
            "'entropy, train range, median', \\\n"
            "       '' skip 1 using 3:(sel(tk,'train',8)) w lp lw 1 dt 2 pt 5 lc rgb '#2ca02c' title "
            "'entropy, train range, 90th pct', \\\n"
            "       '' skip 1 using 3:(sel(tk,'heldout',5)) w lp lw 2 pt 6 lc rgb '#d62728' title "
            "'labels, held out, median', \\\n"
            "       '' skip 1 using 3:(sel(tk,'heldout',7)) w lp lw 2 pt 4 lc rgb '#ff7f0e' title "
            "'entropy, held out, median', \\\n"
            "       '' skip 1 using 3:(sel(tk,'heldout',8)) w lp lw 1 dt 2 pt 4 lc rgb '#ff7f0e' title "
            "'entropy, held out, 90th pct'\n"
            "}\n"
            "unset logscale y\n"
            "set yrange [0:1]\n"
            "set key below font ',8' maxrows 4\n"
            "do for [tk in 'rotation noise'] {\n"
            "  set title tk.': accuracy without labels (solid: train range, dashed: held out)'\n"
            "  set ylabel 'test accuracy'\n"
            "  plot for [i=1:2] 'which_task_acc.csv' skip 1 using 3:(sel(tk,word(SP,i),5)) "
            "w lp lw 2 dt i pt 7 lc rgb '#1f77b4' title 'manifold, true s '.word(SP,i), \\\n"
            "       for [i=1:2] '' skip 1 using 3:(sel(tk,word(SP,i),6)) w lp lw 2 dt i pt 5 lc rgb '#2ca02c' title 'manifold, inferred s '.word(SP,i), \\\n"
            "       for [i=1:2] '' skip 1 using 3:(sel(tk,word(SP,i),7)) w lp lw 1 dt i pt 9 lc rgb '#d62728' title 'concat, true s '.word(SP,i), \\\n"
            "       for [i=1:2] '' skip 1 using 3:(sel(tk,word(SP,i),8)) w lp lw 1 dt i pt 11 lc rgb '#9467bd' title 'concat, random s '.word(SP,i), \\\n"
            "       for [i=1:2] '' skip 1 using 3:(sel(tk,word(SP,i),10)) w lp lw 1 dt i pt 13 lc rgb '#7f7f7f' title 'plain MLP (no s) '.word(SP,i)\n"
            "}\n"
            "unset multiplot\n");
    if (fclose(f) != 0) {
        fprintf(stderr, "error: cannot write %s\n", path);
        return -1;
    }
    return ex_run_gnuplot(dir, "which_task.gp");
}

static void usage(FILE *f, const ex_opts *d)
{
    fprintf(f,
            "usage: which_task [flags]\n"
            "Which task is this? Train a circle-manifold MLP on rotated Fashion-MNIST and a\n"
            "line-manifold MLP on noisy Fashion-MNIST (each with its concat baseline and a\n"
            "plain MLP), then recover unknown rotations / noise levels of test images with\n"
            "wm_infer_context_batch, per image and for batches of 8, 32 and 128 sharing one,\n"
            "with labels and without, and classify at the recovered context.\n\n"
            "  --train-arc A,B     rotation: train on angles A..B degrees (default 0,270)\n"
            "  --train-range A,B   noise: train on levels s in [A,B] (default 0,0.7)\n"
            "  --max-sigma F       noise std at s = 1, pixels in [0,1] (default 1)\n"
            "  --n-eval N          test images for the per-image cells (default 1000)\n"
            "  --trials N          batches per shared cell (default 64)\n"
            "  --only rotation|noise   run one experiment\n");
    ex_opts_help(f, d);
}

int main(int argc, char **argv)
{
    ex_opts o, defaults;
    ex_opts_default(&o);
    o.epochs = 5;
    o.out_dir = "results";
    defaults = o;
    float a0 = 0.0f, a1 = 270.0f, r0 = 0.0f, r1 = 0.7f, max_sigma = 1.0f;
    int n_eval = 1000, trials = 64, only = -1;
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
            if (r < 0 || ex_parse_pair(v, &a0, &a1) || !(a1 > a0 && a1 - a0 < 360.0f)) {
                fprintf(stderr, "error: --train-arc wants A,B in degrees with A < B < A + 360\n");
                return 2;
            }
        } else if ((r = ex_flag(argc, argv, &i, "--train-range", &v)) != 0) {
            if (r < 0 || ex_parse_pair(v, &r0, &r1) || !(r0 >= 0.0f && r1 > r0 && r1 < 1.0f) ) {
                fprintf(stderr, "error: --train-range wants A,B with 0 <= A < B < 1\n");
                return 2;
            }
        } else if ((r = ex_flag(argc, argv, &i, "--max-sigma", &v)) != 0) {
            if (r < 0 || ex_parse_float(v, &max_sigma)) {
                fprintf(stderr, "error: --max-sigma wants a positive number\n");
                return 2;
            }
        } else if ((r = ex_flag(argc, argv, &i, "--n-eval", &v)) != 0) {
            if (r < 0 || ex_parse_int(v, &n_eval) || n_eval > 100000) {
                fprintf(stderr, "error: --n-eval wants 1..100000\n");
                return 2;
            }
        } else if ((r = ex_flag(argc, argv, &i, "--trials", &v)) != 0) {
            if (r < 0 || ex_parse_int(v, &trials) || trials > 100000) {
                fprintf(stderr, "error: --trials wants 1..100000\n");
                return 2;
            }
        } else if ((r = ex_flag(argc, argv, &i, "--only", &v)) != 0) {
            if (r < 0 || (strcmp(v, "rotation") && strcmp(v, "noise"))) {
                fprintf(stderr, "error: --only wants rotation or noise\n");
                return 2;
            }
            only = !strcmp(v, "noise");
        } else {
            fprintf(stderr, "error: unknown flag '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    double t_start = ex_now();
    idx_dataset train, test;
    if (ex_load_data(&o, &train, &test))
        return 1;
    if (n_eval > test.n)
        n_eval = test.n;
    int rc = 1;
    wm_manifold *circle = NULL, *line = NULL;
    FILE *err_csv = NULL, *acc_csv = NULL;
    char p1[4096], p2[4096];
    if (wm_manifold_circle(&circle) != WM_OK || wm_manifold_line(&line) != WM_OK) {
        report("wm_manifold_circle/line", WM_EINVAL);
        goto out;
    }
    if (!(err_csv = ex_open_out(o.out_dir, "which_task_error.csv", p1, sizeof p1)) ||
        !(acc_csv = ex_open_out(o.out_dir, "which_task_acc.csv", p2, sizeof p2)))
        goto out;
    fprintf(err_csv, "task,split,batch,cases,labels_median,labels_p90,entropy_median,entropy_p90,"
                     "labels_in_train,entropy_in_train,labels_miss,entropy_miss\n");
    fprintf(acc_csv, "task,split,batch,images");
    for (int a = 0; a < N_ACC; a++)
        fprintf(acc_csv, ",%s", acc_name[a]);
    fprintf(acc_csv, "\n");
    printf("which_task: rotation arc %g..%g deg, noise range s in [%g, %g] (sigma = %g s); "
           "%d epochs, batch %d, seed %llu; %d images per sample cell, %d batches per shared cell\n",
           (double)a0, (double)a1, (double)r0, (double)r1, (double)max_sigma, o.epochs, o.batch,
           (unsigned long long)o.seed, n_eval, trials);
    ctx_task rot = {0, ex_wrap360(a0) / 360.0f, (a1 - a0) / 360.0f, 0.0f};
    ctx_task noi = {1, r0, r1, max_sigma};
    if (only != 1 && run_experiment("rotation", circle, &rot, &train, &test, &o, n_eval, trials,
                                    err_csv, acc_csv))
        goto out;
    if (only != 0 && run_experiment("noise", line, &noi, &train, &test, &o, n_eval, trials, err_csv,
                                    acc_csv))
        goto out;
    if (fclose(err_csv) != 0 || fclose(acc_csv) != 0) {
        err_csv = acc_csv = NULL;
        fprintf(stderr, "error: cannot write the CSV files\n");
        goto out;
    }
    err_csv = acc_csv = NULL;
    printf("\nwrote %s and %s\n", p1, p2);
    if (!o.no_plot) {
        int pr = write_plot(o.out_dir);
        if (pr < 0)
            goto out;
        if (pr == 0)
            printf("plot: %s/which_task.png\n", o.out_dir);
    }
    printf("time: total %.1f s\n", ex_now() - t_start);
    rc = 0;
out:
    if (err_csv)
        fclose(err_csv);
    if (acc_csv)
        fclose(acc_csv);
    wm_manifold_free(circle);
    wm_manifold_free(line);
    idx_free(&train);
    idx_free(&test);
    return rc;
}
