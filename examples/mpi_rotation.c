/*
 * mpi_rotation.c -- the rotation experiment (rotation.c), data-parallel on MPI.
 *
 * An MLP whose weights live on a circle learns rotated Fashion-MNIST, each
 * image shown at its own angle on the training arc, and so does rotation.c's
 * baseline (the angle's features concatenated to the input) on the same
 * minibatches (--no-baseline: the manifold net only); then both are tested
 * at every --step degrees, held-out arc included. Here R ranks train them
 * together with libwmanifold_mpi:
 *
 *   - the training set is cut into R contiguous shards; a rank keeps only
 *     its own (it reads the file up to its shard's end: gzip is sequential);
 *   - every epoch has one global order of the whole set (the same seeded
 *     shuffle on every rank); global minibatch k is positions k*B..k*B+B-1
 *     of it, and each rank feeds wm_mpi_step the samples of that minibatch
 *     that lie in its shard (so shard sizes vary from step to step, and a
 *     rank may have none);
 *   - a sample's angle is a hash of (seed, epoch, sample), not a draw from a
 *     sequential generator, so it is the same whatever R is.
 *
 * So every R trains on exactly the same global minibatches as one process
 * (mpirun -np 1, or running the program without mpirun), and the runs differ
 * only by float summation order (docs/distributed.md gives the bound and
 * what it means for accuracy after thousands of steps). Testing is sharded
 * too: each rank scores its slice of the test set, the counts are summed.
 *
 *   mpirun -np 2 mpi_rotation --epochs 3 --batch 128
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "wmanifold_mpi.h"

#define TWO_PI 6.283185307179586f

static int rank_, size_;

/* uniform [0,1) from (seed, epoch, sample): splitmix64 of a mix of the three */
static float ctx_hash(uint64_t seed, int epoch, int sample)
{
    ex_rng r;
    ex_rng_seed(&r, seed * 0x9E3779B97F4A7C15ULL ^ ((uint64_t)epoch << 40) ^ (uint64_t)sample);
    return ex_rng_uniform(&r);
}

static void usage(FILE *f, const ex_opts *d)
{
    fprintf(f,
            "usage: mpirun -np R mpi_rotation [flags]\n"
            "Rotated Fashion-MNIST on a circle weight manifold, trained data-parallel on R ranks\n"
            "(libwmanifold_mpi). Any R gives the same global minibatches as one process.\n\n"
            "  --train-arc A,B     train on angles A..B degrees (default 0,270)\n"
            "  --step DEG          test every DEG degrees (default 30)\n"
            "  --bench-allreduce N time N all-reduces of the gradient's size at the end (default 20)\n"
            "  --save PATH         rank 0 saves the trained net there (wm_net_save)\n"
            "  --bucket BYTES      all-reduce the gradient in buckets of BYTES overlapped with the\n"
            "                      backward pass (wm_mpi_step_buckets; default %zu, 0 = one\n"
            "                      blocking all-reduce after it)\n"
            "  --compare-buckets   alternate steps with --bucket and with 0, report both times\n"
            "  --time-layers N     before training, time N backward passes of one per-rank batch:\n"
            "                      when each layer's gradient is ready (wm_grad_notify)\n"
            "  --no-baseline       train only the manifold net (default: also the concatenation\n"
            "                      baseline, as rotation.c, on the same minibatches)\n"
            "  (--batch is the global minibatch, split across the ranks)\n", WM_MPI_BUCKET_BYTES);
    ex_opts_help(f, d);
}

static int fail(const char *what, wm_status st)
{
    fprintf(stderr, "error (rank %d): %s: %s: %s\n", rank_, what, wm_status_str(st), wm_last_error());
    return 1;
}

/* Keep samples [lo, hi) of ds, free the rest. */
static int keep_slice(idx_dataset *ds, int lo, int hi)
{
    size_t d = (size_t)ds->rows * ds->cols;
    memmove(ds->images, ds->images + (size_t)lo * d, (size_t)(hi - lo) * d * sizeof *ds->images);
    memmove(ds->labels, ds->labels + lo, (size_t)(hi - lo) * sizeof *ds->labels);
    ds->n = hi - lo;
    float *im = realloc(ds->images, (size_t)(ds->n > 0 ? ds->n : 1) * d * sizeof *im);
    if (im)
        ds->images = im;
    return 0;
}

/* Samples a split has (at most max_n if max_n > 0): its label file's count. */
static int count_samples(const char *dir, const char *split, int max_n, int *n)
{
    char path[4096], err[8192];
    int32_t *labels = NULL;
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    if (idx_read_labels(path, max_n, &labels, n, err, sizeof err)) {
        fprintf(stderr, "error: %s\n", err);
        fprintf(stderr, "hint: Fashion-MNIST is in the Debian package dataset-fashion-mnist "
                        "(sudo apt-get install -y dataset-fashion-mnist), or pass --data DIR\n");
        return -1;
    }
    free(labels);
    return 0;
}

static void shard_range(int n, int r, int R, int *lo, int *hi)
{
    *lo = (int)((long long)n * r / R);
    *hi = (int)((long long)n * (r + 1) / R);
}

/* --time-layers: when each layer's gradient block is ready during wm_grad,
 * measured with wm_grad_notify on this rank's first b training images (one
 * angle each), reps times; rank 0 prints the medians, as the time left in
 * the pass after each layer (what a bucket started then can overlap). */
enum { MAXL = 64 };
typedef struct {
    double t[MAXL];
    size_t len[MAXL];
} layer_clock;

static void on_layer(void *user, int layer, size_t off, size_t len)
{
    (void)off;
    layer_clock *c = user;
    c->t[layer] = ex_now();
    c->len[layer] = len;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int time_backward(wm_optimizer *opt, wm_net *net, const idx_dataset *train, int b,
                         int reps)
{
    int d = train->rows * train->cols, L = wm_net_n_layers(net);
    b = b < train->n ? b : train->n;
    if (b < 1 || L > MAXL)
        return 0;
    float *x = malloc((size_t)b * d * sizeof *x), *s = malloc((size_t)b * sizeof *s);
    double *tail = malloc((size_t)reps * (L + 2) * sizeof *tail);
    if (!x || !s || !tail) {
        free(x), free(s), free(tail);
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }
    for (int i = 0; i < b; i++) {
        s[i] = (float)i / b;
        ex_warp(train->images + (size_t)i * d, x + (size_t)i * d, train->rows, train->cols,
                TWO_PI * s[i], 0.0f, 0.0f);
    }
    wm_batch bt = {b, x, s, train->labels, NULL};
    layer_clock c;
    memset(&c, 0, sizeof c);
    for (int r = 0; r < reps; r++) {
        double t0 = ex_now();
        for (int l = 0; l < L; l++)
            c.t[l] = t0;
        wm_status st = wm_grad_notify(opt, &bt, NULL, on_layer, &c);
        double t1 = ex_now();
        if (st != WM_OK) {
            free(x), free(s), free(tail);
            return fail("wm_grad_notify", st);
        }
        for (int l = 0; l < L; l++)             /* the pass's time left after layer l */
            tail[(size_t)l * reps + r] = t1 - c.t[l];
        tail[(size_t)L * reps + r] = t1 - t0;   /* the whole wm_grad */
        tail[(size_t)(L + 1) * reps + r] = c.t[L - 1] - t0;   /* forward + last layer's backward */
    }
    /* wm_apply of that gradient, each time undone (parameters and moments
     * put back), so training starts where it would have */
    size_t np = wm_net_n_params(net), ns = wm_optimizer_state_len(opt);
    uint64_t t_steps = wm_optimizer_steps(opt);
    float *q = malloc(np * sizeof *q), *m = malloc((ns + 1) * sizeof *m);
    double *ta = malloc((size_t)reps * sizeof *ta);
    if (!q || !m || !ta) {
        free(x), free(s), free(tail), free(q), free(m), free(ta);
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }
    memcpy(q, wm_net_params(net, NULL), np * sizeof *q);
    wm_optimizer_get_state(opt, m, ns);
    for (int r = 0; r < reps; r++) {
        double t0 = ex_now();
        wm_status st = wm_apply(opt);
        ta[r] = ex_now() - t0;
        if (st == WM_OK)
            st = wm_net_set_params(net, q, np);
        if (st == WM_OK)
            st = wm_optimizer_set_state(opt, m, ns, t_steps);
        if (st != WM_OK) {
            free(x), free(s), free(tail), free(q), free(m), free(ta);
            return fail("wm_apply", st);
        }
    }
    qsort(ta, (size_t)reps, sizeof *ta, cmp_double);
    if (rank_ == 0)
        printf("wm_apply: median %.3f ms (min %.3f)\n", 1e3 * ta[reps / 2], 1e3 * ta[0]);
    free(q), free(m), free(ta);
    for (int l = 0; l < L + 2; l++)
        qsort(tail + (size_t)l * reps, (size_t)reps, sizeof *tail, cmp_double);
    if (rank_ == 0) {
        printf("wm_grad of %d samples, median of %d: %.3f ms (min %.3f); the last layer's block "
               "ready after %.3f ms (min %.3f)\n", b, reps, 1e3 * tail[(size_t)L * reps + reps / 2],
               1e3 * tail[(size_t)L * reps], 1e3 * tail[(size_t)(L + 1) * reps + reps / 2],
               1e3 * tail[(size_t)(L + 1) * reps]);
        for (int l = L - 1; l >= 0; l--)
            if (c.len[l] > 0)
                printf("  layer %d: %zu floats of gradient, then %.3f ms of the pass left (min %.3f)\n", l,
                   c.len[l], 1e3 * tail[(size_t)l * reps + reps / 2], 1e3 * tail[(size_t)l * reps]);
    }
    free(x), free(s), free(tail);
    return 0;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    ex_opts o, defaults;
    ex_opts_default(&o);
    o.epochs = 3;
    o.quiet = 0;
    defaults = o;
    float a0 = 0.0f, a1 = 270.0f, step = 30.0f;
    int bench_reps = 20, rc = 2, compare = 0, time_layers = 0, baseline = 1;
    size_t bucket = WM_MPI_BUCKET_BYTES;
    const char *save_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r = ex_opts_parse(&o, argc, argv, &i);
        if (r < 0)
            goto finish;
        if (r > 0)
            continue;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            if (rank_ == 0)
                usage(stdout, &defaults);
            rc = 0;
            goto finish;
        } else if ((r = ex_flag(argc, argv, &i, "--train-arc", &v)) != 0) {
            if (r < 0 || ex_parse_pair(v, &a0, &a1) || !(a1 > a0 && a1 - a0 <= 360.0f)) {
                fprintf(stderr, "error: --train-arc wants A,B in degrees with A < B <= A + 360\n");
                goto finish;
            }
        } else if ((r = ex_flag(argc, argv, &i, "--step", &v)) != 0) {
            if (r < 0 || ex_parse_float(v, &step) || !(step >= 1.0f && step <= 180.0f)) {
                fprintf(stderr, "error: --step wants degrees in [1,180]\n");
                goto finish;
            }
        } else if ((r = ex_flag(argc, argv, &i, "--bench-allreduce", &v)) != 0) {
            if (r < 0 || ex_parse_int(v, &bench_reps) || bench_reps < 0) {
                fprintf(stderr, "error: --bench-allreduce wants a count >= 0\n");
                goto finish;
            }
        } else if ((r = ex_flag(argc, argv, &i, "--bucket", &v)) != 0) {
            int kb;
            if (r < 0 || ex_parse_int(v, &kb) || kb < 0) {
                fprintf(stderr, "error: --bucket wants bytes >= 0\n");
                goto finish;
            }
            bucket = (size_t)kb;
        } else if (!strcmp(argv[i], "--no-baseline")) {
            baseline = 0;
        } else if (!strcmp(argv[i], "--compare-buckets")) {
            compare = 1;
        } else if ((r = ex_flag(argc, argv, &i, "--time-layers", &v)) != 0) {
            if (r < 0 || ex_parse_int(v, &time_layers) || time_layers < 0) {
                fprintf(stderr, "error: --time-layers wants a count >= 0\n");
                goto finish;
            }
        } else if ((r = ex_flag(argc, argv, &i, "--save", &v)) != 0) {
            if (r < 0) {
                fprintf(stderr, "error: --save wants a path\n");
                goto finish;
            }
            save_path = v;
        } else {
            fprintf(stderr, "error: unknown flag '%s' (see --help)\n", argv[i]);
            goto finish;
        }
    }
    rc = 1;

    /* data: each rank keeps its shard of the training and test sets. The
     * sizes come from the label files (60 KB); then a rank reads only the
     * images up to its shard's end: gzip is sequential, so it must still
     * decompress everything before its shard, but it converts and keeps
     * no image past it (the last rank reads the whole file). */
    int n = 0, n_test = 0;
    if (count_samples(o.data_dir, "train", o.n_train, &n) ||
        count_samples(o.data_dir, "t10k", o.n_test, &n_test))
        goto finish;
    int lo, hi, tlo, thi;
    shard_range(n, rank_, size_, &lo, &hi);
    shard_range(n_test, rank_, size_, &tlo, &thi);
    ex_opts prefix = o;
    prefix.n_train = hi > 0 ? hi : 1;   /* (0 would mean "all") */
    prefix.n_test = thi > 0 ? thi : 1;
    idx_dataset train, test;
    if (ex_load_data(&prefix, &train, &test))
        goto finish;
    const int d = train.rows * train.cols;
    keep_slice(&train, lo, hi);
    keep_slice(&test, tlo, thi);

    wm_manifold *circle = NULL;
    wm_net *net = NULL, *base = NULL;            /* the manifold net; the concat baseline */
    wm_optimizer *opt = NULL, *bopt = NULL;
    wm_status st = wm_manifold_circle(&circle);
    if (st != WM_OK) {
        fail("wm_manifold_circle", st);
        goto out;
    }
    if (!(net = ex_build_mlp(circle, WM_COND_MANIFOLD, d, o.hidden, o.n_hidden, o.seed)) ||
        !(opt = ex_make_optimizer(net, &o)))
        goto out;
    if (baseline) {
        const int *chid = o.n_concat_hidden ? o.concat_hidden : o.hidden;
        int n_chid = o.n_concat_hidden ? o.n_concat_hidden : o.n_hidden;
        if (!(base = ex_build_mlp(circle, WM_COND_CONCAT, d, chid, n_chid, o.seed)) ||
            !(bopt = ex_make_optimizer(base, &o)))
            goto out;
    }
    /* the same seed builds the same nets everywhere; broadcasting makes sure */
    if ((st = wm_mpi_broadcast(net, opt, 0, MPI_COMM_WORLD)) != WM_OK ||
        (base && (st = wm_mpi_broadcast(base, bopt, 0, MPI_COMM_WORLD)) != WM_OK)) {
        fail("wm_mpi_broadcast", st);
        goto out;
    }
    const int B = o.batch;
    const float arc0 = a0, arclen = a1 - a0;
    if (rank_ == 0)
        printf("mpi_rotation: %d rank%s, %d training images (%d..%d on rank 0), global batch %d, "
               "%d epochs, arc %g..%g deg, %zu parameters (%zu bytes all-reduced per step)\n",
               size_, size_ > 1 ? "s" : "", n, lo, hi, B, o.epochs, (double)a0, (double)a1,
               wm_net_n_params(net), 4 * wm_net_n_params(net));
    if (rank_ == 0 && base)
        printf("concat baseline (trained on the same minibatches): %zu parameters\n",
               wm_net_n_params(base));

    int *perm = malloc((size_t)n * sizeof *perm);
    float *xb = malloc((size_t)B * d * sizeof *xb), *sb = malloc((size_t)B * sizeof *sb);
    int32_t *yb = malloc((size_t)B * sizeof *yb);
    if (!perm || !xb || !sb || !yb) {
        fprintf(stderr, "error: out of memory\n");
        goto out2;
    }
    if (time_layers > 0 && time_backward(opt, net, &train, B / size_, time_layers))
        goto out2;
    double t_train = 0, t_cmp[2] = {0, 0}, t_base = 0;
    long steps_total = 0, n_cmp[2] = {0, 0};
    for (int ep = 1; ep <= o.epochs; ep++) {
        ex_rng rng;
        ex_rng_seed(&rng, o.seed * 7919 + (uint64_t)ep);
        for (int i = 0; i < n; i++)
            perm[i] = i;
        ex_shuffle(perm, n, &rng);           /* the same global order on every rank */
        double loss_sum = 0, t_ep = 0, bloss_sum = 0, tb_ep = 0;
        MPI_Barrier(MPI_COMM_WORLD);
        for (int start = 0; start < n; start += B) {
            int nb = n - start < B ? n - start : B, m = 0;
            for (int p = start; p < start + nb; p++) {
                int k = perm[p];
                if (k < lo || k >= hi)
                    continue;                /* another rank's sample */
                float s = ex_wrap360(arc0 + ctx_hash(o.seed, ep, k) * arclen) / 360.0f;
                sb[m] = s;
                ex_warp(train.images + (size_t)(k - lo) * d, xb + (size_t)m * d, train.rows,
                        train.cols, TWO_PI * s, 0.0f, 0.0f);
                yb[m] = train.labels[k - lo];
                m++;
            }
            wm_batch shard = {m, xb, sb, yb, NULL};
            float loss;
            int unbucketed = compare && steps_total % 2;
            double t0 = ex_now();
            st = wm_mpi_step_buckets(opt, &shard, MPI_COMM_WORLD, &loss, unbucketed ? 0 : bucket);
            double dt = ex_now() - t0;
            t_ep += dt;
            t_cmp[unbucketed] += dt, n_cmp[unbucketed]++;
            if (st != WM_OK) {
                fail("wm_mpi_step", st);
                goto out2;
            }
            loss_sum += (double)loss * nb;
            steps_total++;
            if (bopt) {                     /* the baseline: the same minibatch */
                t0 = ex_now();
                st = wm_mpi_step_buckets(bopt, &shard, MPI_COMM_WORLD, &loss, bucket);
                tb_ep += ex_now() - t0;
                if (st != WM_OK) {
                    fail("wm_mpi_step (baseline)", st);
                    goto out2;
                }
                bloss_sum += (double)loss * nb;
            }
        }
        double t_max, tb_max;
        MPI_Reduce(&t_ep, &t_max, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
        MPI_Reduce(&tb_ep, &tb_max, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
        t_train += t_max, t_base += tb_max;
        if (rank_ == 0) {
            printf("epoch %d/%d  loss %.4f  %.2f s in wm_mpi_step (%.2f ms/step, %.0f samples/s)\n",
                   ep, o.epochs, loss_sum / n, t_max, 1e3 * t_max / ((n + B - 1) / B), n / t_max);
            if (base)
                printf("    concat baseline: loss %.4f  %.2f s in wm_mpi_step (%.2f ms/step)\n",
                       bloss_sum / n, tb_max, 1e3 * tb_max / ((n + B - 1) / B));
            fflush(stdout);
        }
    }
    if ((st = wm_mpi_check(net, MPI_COMM_WORLD)) != WM_OK ||
        (base && (st = wm_mpi_check(base, MPI_COMM_WORLD)) != WM_OK)) {
        fail("wm_mpi_check", st);
        goto out2;
    }

    if (save_path && rank_ == 0 && (st = wm_net_save(net, save_path)) != WM_OK) {
        fail("wm_net_save", st);
        goto out2;
    }

    /* test: each rank its slice of the test set, at every `step` degrees */
    float *xt = malloc((size_t)(test.n > 0 ? test.n : 1) * d * sizeof *xt);
    float *st_ = malloc((size_t)(test.n > 0 ? test.n : 1) * sizeof *st_);
    double arc_acc = 0, held_acc = 0, barc = 0, bheld = 0;
    int n_arc = 0, n_held = 0;
    if (!xt || !st_) {
        fprintf(stderr, "error: out of memory\n");
        free(xt), free(st_);
        goto out2;
    }
    if (rank_ == 0)
        printf("angle  accuracy%s\n", base ? " (manifold, concat baseline)" : "");
    for (float deg = 0; deg < 360.0f - 1e-3f; deg += step) {
        for (int i = 0; i < test.n; i++) {
            st_[i] = deg / 360.0f;
            ex_warp(test.images + (size_t)i * d, xt + (size_t)i * d, test.rows, test.cols,
                    TWO_PI * st_[i], 0.0f, 0.0f);
        }
        float acc = 0;
        wm_batch tb = {test.n, xt, st_, test.labels, NULL};
        if (test.n > 0 && (st = wm_evaluate(net, &tb, NULL, &acc)) != WM_OK) {
            fail("wm_evaluate", st);
            free(xt), free(st_);
            goto out2;
        }
        float bacc = 0;
        if (base && test.n > 0 && (st = wm_evaluate(base, &tb, NULL, &bacc)) != WM_OK) {
            fail("wm_evaluate (baseline)", st);
            free(xt), free(st_);
            goto out2;
        }
        double correct[2] = {(double)acc * test.n, (double)bacc * test.n}, all[2];
        MPI_Allreduce(correct, all, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        double a = all[0] / n_test, ab = all[1] / n_test;
        int on_arc = ex_in_arc(ex_wrap360(a0), arclen, deg);
        if (on_arc)
            arc_acc += a, barc += ab, n_arc++;
        else
            held_acc += a, bheld += ab, n_held++;
        if (rank_ == 0 && base)
            printf("%5.0f  %.4f  %.4f%s\n", (double)deg, a, ab, on_arc ? "" : "  (held out)");
        else if (rank_ == 0)
            printf("%5.0f  %.4f%s\n", (double)deg, a, on_arc ? "" : "  (held out)");
    }
    free(xt), free(st_);
    if (rank_ == 0) {
        printf("mean accuracy: training arc %.4f, held-out arc %.4f\n", n_arc ? arc_acc / n_arc : 0.0,
               n_held ? held_acc / n_held : 0.0);
        if (base)
            printf("concat baseline mean accuracy: training arc %.4f, held-out arc %.4f; "
                   "%.3f ms/step\n", n_arc ? barc / n_arc : 0.0, n_held ? bheld / n_held : 0.0,
                   1e3 * t_base / steps_total);
        printf("training: %.2f s in wm_mpi_step over %ld steps (%.3f ms/step) on %d rank%s\n", t_train,
               steps_total, 1e3 * t_train / steps_total, size_, size_ > 1 ? "s" : "");
    }

    if (compare) {                      /* the slowest rank's time decides a step */
        double mx[2];
        MPI_Reduce(t_cmp, mx, 2, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
        if (rank_ == 0)
            printf("alternating steps: buckets of %zu bytes %.3f ms/step (%ld steps), one all-reduce "
                   "after the pass %.3f ms/step (%ld steps)\n", bucket, 1e3 * mx[0] / n_cmp[0],
                   n_cmp[0], 1e3 * mx[1] / n_cmp[1], n_cmp[1]);
    }

    /* the communication alone: an all-reduce of the gradient's size */
    if (bench_reps > 0) {
        size_t len;
        float *g = wm_grad_buffer(opt, &len);
        double *t = malloc((size_t)bench_reps * sizeof *t);
        for (int r = 0; t && r < bench_reps; r++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = ex_now();
            MPI_Allreduce(MPI_IN_PLACE, g, (int)len, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            t[r] = ex_now() - t0;
        }
        if (t && rank_ == 0) {
            for (int a = 1; a < bench_reps; a++)          /* insertion sort for the median */
                for (int b = a; b > 0 && t[b] < t[b - 1]; b--) {
                    double x = t[b];
                    t[b] = t[b - 1], t[b - 1] = x;
                }
            printf("MPI_Allreduce of %zu floats (%zu bytes) on %d ranks: median %.3f ms, "
                   "min %.3f ms, max %.3f ms over %d\n", len, 4 * len, size_, 1e3 * t[bench_reps / 2],
                   1e3 * t[0], 1e3 * t[bench_reps - 1], bench_reps);
        }
        free(t);
    }
    rc = 0;
out2:
    free(perm), free(xb), free(sb), free(yb);
out:
    wm_optimizer_free(opt), wm_optimizer_free(bopt);
    wm_net_free(net), wm_net_free(base);
    wm_manifold_free(circle);
    idx_free(&train);
    idx_free(&test);
finish:
    MPI_Finalize();
    return rc;
}
