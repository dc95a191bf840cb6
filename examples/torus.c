/*
 * torus.c -- two periodic contexts at once: rotation x orbiting shift.
 *
 * The context is a point on a torus, s = (s1, s2), both periodic:
 *   s1  rotates the image by 2 pi s1;
 *   s2  then shifts it by r (cos 2 pi s2, sin 2 pi s2) pixels, i.e. the image
 *       is carried once round a small circle of radius r (default 3 px).
 * Two copies of the same MLP learn the whole family:
 *
 *   manifold  weights on the torus circle x circle (wm_manifold_product):
 *             W(s) = sum_ij c_i(s1) c_j(s2) P_ij, 9 control points
 *   concat    one set of weights, the input widened by
 *             cos 2 pi s1, sin 2 pi s1, cos 2 pi s2, sin 2 pi s2
 *
 * A block of the torus is held out of training (default: rotation angles in
 * [270, 360) degrees together with shift phases in [180, 360) degrees, one
 * eighth of the torus); every angle and every phase still occurs in training,
 * only not in those combinations. Both models are tested on a grid (every 30
 * degrees of rotation x every 45 degrees of phase). Writes torus.csv and
 * torus.png into --out.
 *
 *   torus --epochs 3 --heldout-angle 270,360 --heldout-phase 180,360 --out results
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "wmanifold.h"

#define TWO_PI 6.283185307179586f

typedef struct {
    float a0, a1;     /* held-out rotation angles [a0, a1) degrees, 0 <= a0 < a1 <= 360 */
    float p0, p1;     /* held-out shift phases [p0, p1) degrees */
    float radius;     /* shift radius in pixels */
    ex_warp_table warp; /* the last (angle, shift)'s taps: a test set is seen at one */
} torus_task;

static int held_out(const torus_task *t, float angle_deg, float phase_deg)
{
    return angle_deg >= t->a0 && angle_deg < t->a1 && phase_deg >= t->p0 && phase_deg < t->p1;
}

/* Training contexts: uniform on the torus outside the held-out block
 * (rejection sampling; the block is at most a part of the torus). */
static void sample_ctx(ex_rng *r, float *s, void *user)
{
    const torus_task *t = user;
    do {
        s[0] = ex_rng_uniform(r);
        s[1] = ex_rng_uniform(r);
    } while (held_out(t, 360.0f * s[0], 360.0f * s[1]));
}

/* The input at s: rotate by 2 pi s1, then shift round the orbit to phase s2. */
static void transform(const float *img, const float *s, float *x, int rows, int cols, ex_rng *r,
                      void *user)
{
    torus_task *t = user;
    (void)r;
    ex_warp_cached(&t->warp, img, x, rows, cols, TWO_PI * s[0], t->radius * cosf(TWO_PI * s[1]),
                   t->radius * sinf(TWO_PI * s[1]));
}

static void usage(FILE *f, const ex_opts *d)
{
    fprintf(f,
            "usage: torus [flags]\n"
            "Fashion-MNIST rotated (angle s1) and shifted round a small circle (phase s2):\n"
            "an MLP whose weights live on a torus against the same MLP given cos/sin of both\n"
            "as extra inputs.\n\n"
            "  --heldout-angle A,B   held-out rotation angles [A,B) degrees (default 270,360)\n"
            "  --heldout-phase A,B   ... together with shift phases [A,B) degrees (default 180,360)\n"
            "  --radius PX           shift radius in pixels (default 3)\n"
            "  --angle-step DEG      test grid step in rotation (default 30)\n"
            "  --phase-step DEG      test grid step in phase (default 45)\n");
    ex_opts_help(f, d);
}

static int parse_range_deg(const char *v, float *a, float *b)
{
    return ex_parse_pair(v, a, b) || !(*a >= 0.0f) || !(*b <= 360.0f) || !(*a < *b) ? -1 : 0;
}

/* A gnuplot script drawing three heat maps (manifold, concat, difference)
 * with the held-out block outlined. */
static int plot(const ex_opts *o, const torus_task *t, float astep, float pstep)
{
    char path[4400];
    FILE *f = ex_open_out(o->out_dir, "torus.gp", path, sizeof path);
    if (!f)
        return -1;
    fprintf(f,
            "set terminal pngcairo size 1500,500 font ',11'\n"
            "set output 'torus.png'\n"
            "set datafile separator ','\n"
            "set multiplot layout 1,3 title 'Rotation x orbiting shift on a torus (%d epochs); "
            "box: held out of training'\n"
            "set xlabel 'rotation angle (degrees)'\nset ylabel 'shift phase (degrees)'\n"
            "set xrange [%g:%g]\nset yrange [%g:%g]\nset xtics 60\nset ytics 90\n"
            "set size ratio -1\n"
            "set object 1 rect from %g,%g to %g,%g front fillstyle empty border "
            "lc rgb 'white' lw 3\n",
            o->epochs, (double)(-astep / 2), (double)(360 - astep / 2), (double)(-pstep / 2),
            (double)(360 - pstep / 2), (double)(t->a0 - astep / 2), (double)(t->p0 - pstep / 2),
            (double)(t->a1 - astep / 2), (double)(t->p1 - pstep / 2));
    fprintf(f,
            "set palette defined (0 '#000004', 0.5 '#b73779', 1 '#fcfdbf')\n"
            "set cbrange [0:1]\n"
            "set title 'weight manifold: test accuracy'\n"
            "plot 'torus.csv' skip 1 using 3:4:5 with image notitle\n"
            "set title 'input concatenation: test accuracy'\n"
            "plot 'torus.csv' skip 1 using 3:4:6 with image notitle\n"
            "set palette defined (-1 '#b2182b', 0 '#f7f7f7', 1 '#2166ac')\n"
            "set cbrange [-0.3:0.3]\n"
            "set object 1 rect fillstyle empty border lc rgb 'black'\n"
            "set title 'manifold - concat (blue: manifold better)'\n"
            "plot 'torus.csv' skip 1 using 3:4:($5-$6) with image notitle\n"
            "unset multiplot\n");
    fclose(f);
    return ex_run_gnuplot(o->out_dir, "torus.gp");
}

int main(int argc, char **argv)
{
    ex_opts o, defaults;
    ex_opts_default(&o);
    o.epochs = 4; /* 9 control points per weight: keeps the demo under its time budget */
    o.n_test = 2000; /* 96 grid cells x 2000 images already gives smooth maps */
    o.out_dir = "results";
    defaults = o;
    torus_task tt = {270.0f, 360.0f, 180.0f, 360.0f, 3.0f, {0}};
    float astep = 30.0f, pstep = 45.0f;

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
        } else if ((r = ex_flag(argc, argv, &i, "--heldout-angle", &v)) != 0) {
            if (r < 0 || parse_range_deg(v, &tt.a0, &tt.a1)) {
                fprintf(stderr, "error: --heldout-angle wants A,B with 0 <= A < B <= 360\n");
                return 2;
            }
        } else if ((r = ex_flag(argc, argv, &i, "--heldout-phase", &v)) != 0) {
            if (r < 0 || parse_range_deg(v, &tt.p0, &tt.p1)) {
                fprintf(stderr, "error: --heldout-phase wants A,B with 0 <= A < B <= 360\n");
                return 2;
            }
        } else if ((r = ex_flag(argc, argv, &i, "--radius", &v)) != 0) {
            if (r < 0 || ex_parse_float(v, &tt.radius) || !(tt.radius >= 0.0f) ||
                tt.radius > 14.0f) {
                fprintf(stderr, "error: --radius wants pixels in [0,14]\n");
                return 2;
            }
        } else if ((r = ex_flag(argc, argv, &i, "--angle-step", &v)) != 0) {
            if (r < 0 || ex_parse_float(v, &astep) || !(astep >= 1.0f && astep <= 180.0f)) {
                fprintf(stderr, "error: --angle-step wants degrees in [1,180]\n");
                return 2;
            }
        } else if ((r = ex_flag(argc, argv, &i, "--phase-step", &v)) != 0) {
            if (r < 0 || ex_parse_float(v, &pstep) || !(pstep >= 1.0f && pstep <= 180.0f)) {
                fprintf(stderr, "error: --phase-step wants degrees in [1,180]\n");
                return 2;
            }
        } else {
            fprintf(stderr, "error: unknown flag '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if ((tt.a1 - tt.a0) * (tt.p1 - tt.p0) > 0.75f * 360.0f * 360.0f) {
        fprintf(stderr, "error: the held-out block covers more than 3/4 of the torus\n");
        return 2;
    }

    double t_start = ex_now();
    idx_dataset train, test;
    if (ex_load_data(&o, &train, &test))
        return 1;

    int rc = 1;
    wm_manifold *c1 = NULL, *c2 = NULL, *torus = NULL;
    wm_net *net[EX_N_MODELS] = {NULL, NULL};
    wm_optimizer *opt[EX_N_MODELS] = {NULL, NULL};
    FILE *csv = NULL;
    float *grid = NULL;
    if (wm_manifold_circle(&c1) != WM_OK || wm_manifold_circle(&c2) != WM_OK ||
        wm_manifold_product(&torus, c1, c2) != WM_OK) {
        fprintf(stderr, "error: building the torus: %s\n", wm_last_error());
        goto out;
    }
    const int n_in = train.rows * train.cols;
    if (ex_build_mlps(torus, n_in, &o, net, opt))
        goto out;

    printf("torus: rotation x shift of radius %g px round a circle; held out angles "
           "[%g,%g) x phases [%g,%g) deg; %d epochs, batch %d, seed %llu\n",
           (double)tt.radius, (double)tt.a0, (double)tt.a1, (double)tt.p0, (double)tt.p1,
           o.epochs, o.batch, (unsigned long long)o.seed);
    ex_print_params(net);

    ex_task task = {2, sample_ctx, transform, &tt};
    double t_train = ex_now();
    if (ex_train(opt, net, &task, &train, &o))
        goto out;
    t_train = ex_now() - t_train;

    const int na = (int)ceilf(360.0f / astep - 1e-3f), np = (int)ceilf(360.0f / pstep - 1e-3f);
    grid = malloc((size_t)na * np * EX_N_MODELS * sizeof *grid);
    if (!grid) {
        fprintf(stderr, "error: out of memory\n");
        goto out;
    }
    char csv_path[4400];
    if (!(csv = ex_open_out(o.out_dir, "torus.csv", csv_path, sizeof csv_path)))
        goto out;
    fprintf(csv, "s1,s2,angle_deg,phase_deg,acc_manifold,acc_concat,split\n");
    double sum[2][EX_N_MODELS] = {{0}};
    int count[2] = {0, 0};
    double t_eval = ex_now();
    for (int ia = 0; ia < na; ia++) {
        for (int ip = 0; ip < np; ip++) {
            float ad = (float)ia * astep, pd = (float)ip * pstep;
            float s[2] = {ad / 360.0f, pd / 360.0f}, *acc = grid + ((size_t)ia * np + ip) * 2;
            if (ex_eval_at(net, &task, &test, s, o.seed, acc))
                goto out;
            int held = held_out(&tt, ad, pd);
            for (int m = 0; m < EX_N_MODELS; m++)
                sum[held][m] += acc[m];
            count[held]++;
            fprintf(csv, "%.6f,%.6f,%g,%g,%.4f,%.4f,%s\n", (double)s[0], (double)s[1],
                    (double)ad, (double)pd, (double)acc[0], (double)acc[1],
                    held ? "heldout" : "train");
        }
    }
    t_eval = ex_now() - t_eval;
    if (fclose(csv) != 0) {
        csv = NULL;
        fprintf(stderr, "error: writing %s failed\n", csv_path);
        goto out;
    }
    csv = NULL;

    /* The grid as text: rows are rotation angles, columns shift phases; a
     * '*' marks held-out cells. */
    for (int m = 0; m <= EX_N_MODELS; m++) {
        printf("\n%s (rows: angle, columns: phase in degrees; * held out)\n",
               m == 0 ? "weight manifold test accuracy"
                      : m == 1 ? "input concatenation test accuracy" : "manifold - concat");
        printf("angle ");
        for (int ip = 0; ip < np; ip++)
            printf(" %6g ", (double)(ip * pstep));
        printf("\n");
        for (int ia = 0; ia < na; ia++) {
            printf("%5g ", (double)(ia * astep));
            for (int ip = 0; ip < np; ip++) {
                const float *acc = grid + ((size_t)ia * np + ip) * 2;
                float v = m < 2 ? acc[m] : acc[0] - acc[1];
                printf(m < 2 ? " %6.3f%c" : " %+6.3f%c", (double)v,
                       held_out(&tt, (float)ia * astep, (float)ip * pstep) ? '*' : ' ');
            }
            printf("\n");
        }
    }

    printf("\nmean test accuracy          manifold  concat   manifold-concat\n");
    for (int h = 0; h < 2; h++) {
        if (count[h] == 0)
            continue;
        double mm = sum[h][0] / count[h], mc = sum[h][1] / count[h];
        printf("%-8s region (%3d cells)  %.4f    %.4f   %+.4f\n", h ? "held-out" : "training",
               count[h], mm, mc, mm - mc);
    }
    printf("wrote %s\n", csv_path);
    if (!o.no_plot && plot(&o, &tt, astep, pstep) == 0)
        printf("plot: %s/torus.png\n", o.out_dir);
    printf("time: training %.1f s, testing %.1f s, total %.1f s\n", t_train, t_eval,
           ex_now() - t_start);
    rc = 0;
out:
    if (csv)
        fclose(csv);
    free(grid);
    for (int m = 0; m < EX_N_MODELS; m++) {
        wm_optimizer_free(opt[m]);
        wm_net_free(net[m]);
    }
    wm_manifold_free(torus);
    wm_manifold_free(c1);
    wm_manifold_free(c2);
    ex_warp_table_free(&tt.warp);
    idx_free(&train);
    idx_free(&test);
    return rc;
}
