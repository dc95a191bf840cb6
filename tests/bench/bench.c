/* bench.c -- the speed benchmark of issue 7: wm_step and wm_infer against the
 * floor (the GEMMs of the basis-point decomposition alone through the same
 * cblas, plus one pass over the parameters for the update).
 *
 * Threads: single-threaded by default. The program calls
 * openblas_set_num_threads(T) with T from --threads (default 1), and
 * tests/bench/report.py also exports OPENBLAS_NUM_THREADS=T, so both the
 * library's GEMMs and the floor's run on T BLAS threads. libwmanifold itself
 * starts no threads: its parallelism is the BLAS's.
 *
 *   bench --list                       the configuration names, one a line
 *   bench --config NAME [options]      measure one configuration: one JSON line
 *   bench --all [options]              every configuration, one JSON line each
 *   bench --machine                    machine facts (OpenBLAS, memory bandwidth)
 *   bench --smoke                      a check that it all runs, in well under a second
 *                                      (make test-bench): the control net, the CNN at
 *                                      batch 4, and the conv strategies agreeing
 *   bench --loop NAME --what step|infer --seconds S   just run that call (for perf/callgrind;
 *                                      also floor_step, floor_infer, gemm_rate: the FLOP floor's GEMM)
 * options: --reps R (7)  --rep-ms MS (40)  --threads T (1)
 *          --opt sd|momentum|adam (momentum): the optimizer of every step
 *          --calls C (--loop only): exactly C calls after the warm-up, not
 *          --seconds (instruction counts under callgrind: the same work every run)
 *          --what step,infer,floor,strat (default), and grad: wm_grad alone, so
 *          that wm_apply's share of a step is step - grad (where a step's time
 *          goes; only where wm_step is wm_grad + wm_apply: a CNN, or a volume
 *          budget; a dense net's step updates directly since d047f5d); strat: on a CNN with mixed contexts, also time step and
 *          infer with WM_CONV_STACKED and WM_CONV_MATERIALISED forced (keys
 *          step_stacked, infer_stacked, step_mat, infer_mat; step and infer
 *          are WM_CONV_AUTO)
 *          --strategy auto|stacked|materialised (--loop only: the conv strategy)
 *
 * Configuration names are NET-MANIFOLD-CONTEXT-BATCH, e.g. mlp-circle-mixed-128:
 *   NET     mlp  784-256-256-10, relu, softmax cross-entropy
 *           ctl  16-64-64-4, tanh, MSE (the embedded/control case)
 *           cnn  1x28x28 (Fashion-MNIST-sized), conv 8 3x3 pad 1 relu, maxpool 2,
 *                conv 16 3x3 pad 1 relu, maxpool 2, dense 10, softmax CE
 *   MANIFOLD point, line, circle, bspline16 (open, degree 3, 16 control points)
 *   CONTEXT mixed   a random s per sample
 *           shared  one s for the whole batch
 *           none    the point manifold (a plain network: there is no context)
 * Optimizer: WM_OPT_MOMENTUM, lr 0.01, momentum 0.9.
 *
 * Timing: each measured call is warmed up (at least 3 calls and a quarter of
 * a repetition's time, so OpenBLAS's buffers and the library's workspace
 * exist), then R repetitions each time a loop of `iters` calls (iters chosen
 * so one repetition lasts about --rep-ms); the repetitions of wm_step, the
 * floor's step, wm_infer and the floor's inference are interleaved. The
 * figure is the median over the repetitions of (loop time / iters), in
 * microseconds; every repetition's figure is printed too (times_us). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

#include "wmanifold.h"
#include "blas.h"          /* wmi_gemm: the floor uses the library's product routes */

/* Whether the program links OpenBLAS (bench.mk says, from the Makefile's
 * BLAS): Debian's cblas.h may be OpenBLAS's header even when the reference
 * BLAS is linked. */
#ifndef BENCH_OPENBLAS
#if defined(OPENBLAS_VERSION)
#define BENCH_OPENBLAS 1
#else
#define BENCH_OPENBLAS 0
#endif
#endif
#define HAVE_OPENBLAS BENCH_OPENBLAS

#define MAX_LAYERS 4
#define MAX_REPS 101
#define MAX_JOBS 12
#define POOL_SAMPLES 4096  /* distinct samples each configuration cycles through */
static int pool_samples = POOL_SAMPLES;   /* the smoke run uses fewer */

/* ---- configurations ------------------------------------------------------ */

enum { NET_CTL, NET_MLP, NET_CNN };

typedef struct {
    char name[64];
    int net;                  /* NET_MLP, NET_CTL or NET_CNN */
    int big;                  /* 1: classification on 784 inputs (mlp, cnn); 0: the 16-64-64-4 net */
    const char *manifold;     /* point, line, circle, bspline16 */
    const char *ctx;          /* mixed, shared, none */
    int n;                    /* batch size */
} config;

static int all_configs(config *out, int cap)
{
    static const int big_batches[] = {1, 16, 128, 512};
    static const char *mfs[] = {"point", "line", "circle"};
    int c = 0;
    static const char *net_names[] = {"ctl", "mlp", "cnn"};
#define ADD(NET, MF, CTX, N)                                                          \
    do {                                                                              \
        if (c < cap) {                                                                \
            out[c].net = (NET), out[c].big = (NET) != NET_CTL;                        \
            out[c].manifold = (MF), out[c].ctx = (CTX), out[c].n = (N);               \
            snprintf(out[c].name, sizeof out[c].name, "%s-%s-%s-%d", net_names[NET],  \
                     (MF), (CTX), (N));                                               \
        }                                                                             \
        c++;                                                                          \
    } while (0)
    for (int m = 0; m < 3; m++)
        for (int b = 0; b < 4; b++) {
            if (!strcmp(mfs[m], "point"))
                ADD(NET_MLP, mfs[m], "none", big_batches[b]);
            else {
                ADD(NET_MLP, mfs[m], "mixed", big_batches[b]);
                ADD(NET_MLP, mfs[m], "shared", big_batches[b]);
            }
        }
    for (int b = 1; b <= 16; b *= 16) {
        ADD(NET_CTL, "circle", "mixed", b);
        ADD(NET_CTL, "circle", "shared", b);
    }
    /* The CNN (issue 6): the circle at batch 64 and 16, and the same net as a
     * plain CNN (the point) to separate the conv's cost from the manifold's;
     * batch 128 since issue 15. */
    for (int b = 64; b >= 16; b /= 4) {
        ADD(NET_CNN, "circle", "mixed", b);
        ADD(NET_CNN, "circle", "shared", b);
        ADD(NET_CNN, "point", "none", b);
    }
    /* An open cubic B-spline of 16 control points (issue 15: local support,
     * only degree + 1 = 4 basis points per sample) on the MLP. */
    for (int b = 128; b >= 16; b /= 8) {
        ADD(NET_MLP, "bspline16", "mixed", b);
        ADD(NET_MLP, "bspline16", "shared", b);
    }
    ADD(NET_CNN, "circle", "mixed", 128);
    ADD(NET_CNN, "circle", "shared", 128);
    ADD(NET_CNN, "point", "none", 128);
#undef ADD
    return c;
}

static int find_config(const char *name, config *out)
{
    config all[64];
    int n = all_configs(all, 64);
    for (int i = 0; i < n; i++)
        if (!strcmp(all[i].name, name)) {
            *out = all[i];
            return 0;
        }
    return -1;
}

/* ---- small helpers --------------------------------------------------------- */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define RNG_SEED 0x9E3779B97F4A7C15ULL
static uint64_t rng_state = RNG_SEED;
static double urand(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static void fill(float *a, size_t n, double lo, double hi)
{
    for (size_t i = 0; i < n; i++)
        a[i] = (float)(lo + (hi - lo) * urand());
}

static void *xalloc(size_t bytes)
{
    void *p = NULL;
    bytes = (bytes + 63) / 64 * 64;
    if (bytes == 0)
        bytes = 64;
    if (posix_memalign(&p, 64, bytes) != 0) {
        fprintf(stderr, "bench: out of memory (%zu bytes)\n", bytes);
        exit(2);
    }
    memset(p, 0, bytes);
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static long peak_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void set_threads(int t)
{
#if HAVE_OPENBLAS
    openblas_set_num_threads(t);
#else
    (void)t;
#endif
}

/* ---- the timing loop ------------------------------------------------------- */

typedef int (*bench_fn)(void *ctx);   /* 0 on success */

/* One measured call. measure() warms every job up, sizes its loop, then runs
 * the repetitions interleaved (rep 1 of every job, rep 2 of every job, ...),
 * so a burst of load on a shared machine hits all of them alike and their
 * ratios hold. */
typedef struct {
    const char *key;
    bench_fn f;
    void *ctx;
    long iters;
    int reps;
    double times[MAX_REPS];      /* microseconds per call, one per repetition */
    double median_us;
} job;

static int min_warmup = 3;   /* calls; the smoke run makes do with 1 */

static int measure(job *jobs, int nj, int reps, double rep_s)
{
    for (int j = 0; j < nj; j++) {
        double t0 = now_s();
        long w = 0;
        do {                                  /* warm-up, excluded */
            if (jobs[j].f(jobs[j].ctx))
                return j;
            w++;
        } while (w < min_warmup || now_s() - t0 < 0.25 * rep_s);
        double per = (now_s() - t0) / (double)w;
        long iters = (long)(rep_s / (per > 1e-9 ? per : 1e-9));
        jobs[j].iters = iters < 1 ? 1 : iters;
        jobs[j].reps = reps;
    }
    for (int r = 0; r < reps; r++)
        for (int j = 0; j < nj; j++) {
            double a = now_s();
            for (long i = 0; i < jobs[j].iters; i++)
                if (jobs[j].f(jobs[j].ctx))
                    return j;
            jobs[j].times[r] = (now_s() - a) / (double)jobs[j].iters * 1e6;
        }
    for (int j = 0; j < nj; j++) {
        double sorted[MAX_REPS];
        memcpy(sorted, jobs[j].times, sizeof(double) * (size_t)reps);
        qsort(sorted, (size_t)reps, sizeof sorted[0], cmp_double);
        jobs[j].median_us = reps % 2 ? sorted[reps / 2] : 0.5 * (sorted[reps / 2 - 1] + sorted[reps / 2]);
    }
    return -1;
}

/* ---- the library side ------------------------------------------------------ */

typedef struct {
    config cfg;
    int sizes[MAX_LAYERS + 1], n_layers, K, dim;   /* cnn: sizes = {784, 10}, n_layers 1 */
    wm_manifold *m;
    wm_net *net;
    wm_optimizer *opt;
    float *x, *s, *targets, *out;     /* a pool of P batches of n samples */
    int32_t *labels;
    int P, next;                      /* batches in the pool, the next one to use */
    int borrowed;                     /* 1: x, s, targets, labels are another lib_ctx's */
    wm_batch batch;
    float last_loss;
    double loss_sum;                  /* over every step taken: shows the net is not memorising */
    long loss_count;
    wm_status last_status;
} lib_ctx;

static void die_wm(const char *what, wm_status st)
{
    fprintf(stderr, "bench: %s failed: %s: %s\n", what, wm_status_str(st), wm_last_error());
    exit(1);
}
#define WM_CHECK(call)                       \
    do {                                     \
        wm_status st_ = (call);              \
        if (st_ != WM_OK)                    \
            die_wm(#call, st_);              \
    } while (0)

static void next_batch(lib_ctx *L);

/* --opt: the optimizer of the library's steps (the PyTorch side keeps its own). */
static wm_opt_kind bench_opt_kind = WM_OPT_MOMENTUM;

/* The CNN's geometry (bench.c's floor and bench_torch.py build the same net). */
#define CNN_C 1
#define CNN_HW 28
static const int cnn_widths[2] = {8, 16};   /* conv 3x3 pad 1 relu + maxpool 2 each */

/* A net, its optimizer and a pool of batches. With data != NULL the pool is
 * data's (the same batches, and no second copy in the peak RSS). */
static void lib_setup(lib_ctx *L, const config *cfg, wm_conv_strategy strategy, const lib_ctx *data)
{
    memset(L, 0, sizeof *L);
    L->cfg = *cfg;
    rng_state = RNG_SEED;   /* the same data for every strategy's net (and as before) */
    if (cfg->net == NET_CNN) {
        int s[] = {CNN_C * CNN_HW * CNN_HW, 10};
        memcpy(L->sizes, s, sizeof s);
    } else if (cfg->big) {
        int s[] = {784, 256, 256, 10};
        memcpy(L->sizes, s, sizeof s);
    } else {
        int s[] = {16, 64, 64, 4};
        memcpy(L->sizes, s, sizeof s);
    }
    L->n_layers = cfg->net == NET_CNN ? 1 : 3;
    if (!strcmp(cfg->manifold, "point")) WM_CHECK(wm_manifold_point(&L->m));
    else if (!strcmp(cfg->manifold, "line")) WM_CHECK(wm_manifold_line(&L->m));
    else if (!strcmp(cfg->manifold, "bspline16")) WM_CHECK(wm_manifold_bspline(&L->m, 16, 3, 0));
    else WM_CHECK(wm_manifold_circle(&L->m));
    L->K = wm_manifold_n_basis(L->m);
    L->dim = wm_manifold_dim(L->m);
    WM_CHECK(wm_net_create(&L->net, L->m, L->sizes[0], WM_COND_MANIFOLD));
    wm_activation act = cfg->big ? WM_ACT_RELU : WM_ACT_TANH;
    if (cfg->net == NET_CNN) {
        WM_CHECK(wm_net_input_shape(L->net, CNN_C, CNN_HW, CNN_HW));
        for (int l = 0; l < 2; l++) {
            WM_CHECK(wm_net_conv2d(L->net, cnn_widths[l], 3, 1, 1, WM_ACT_RELU));
            WM_CHECK(wm_net_maxpool(L->net, 2));
        }
        WM_CHECK(wm_net_set_conv_strategy(L->net, strategy));
    }
    for (int l = 1; l <= L->n_layers; l++)
        WM_CHECK(wm_net_dense(L->net, L->sizes[l], l < L->n_layers ? act : WM_ACT_NONE));
    WM_CHECK(wm_net_set_loss(L->net, cfg->big ? WM_LOSS_SOFTMAX_CE : WM_LOSS_MSE));
    WM_CHECK(wm_net_init(L->net, 42));
    wm_opt_config oc = wm_opt_default(bench_opt_kind);
    oc.lr = 0.01f;
    WM_CHECK(wm_optimizer_create(&L->opt, L->net, &oc));

    /* A pool of at least POOL_SAMPLES samples with random labels, cycled
     * batch by batch: repeating one batch would let the net memorise it, the
     * loss would reach 0 and the gradients turn denormal (slow arithmetic
     * that says nothing about the library). */
    int n = cfg->n, in = L->sizes[0], outs = L->sizes[L->n_layers], dim1 = L->dim > 0 ? L->dim : 1;
    L->P = (pool_samples + n - 1) / n;
    size_t N = (size_t)L->P * n;
    L->out = xalloc(sizeof(float) * (size_t)n * outs);
    if (data) {
        L->x = data->x, L->s = data->s, L->targets = data->targets, L->labels = data->labels;
        L->borrowed = 1;
        L->next = 0;
        next_batch(L);
        return;
    }
    L->x = xalloc(sizeof(float) * N * in);
    L->s = xalloc(sizeof(float) * N * dim1);
    L->targets = xalloc(sizeof(float) * N * outs);
    L->labels = xalloc(sizeof(int32_t) * N);
    /* Inputs scaled so that |x|^2 is about 1 (as standardised features are,
     * per unit): with random labels a larger input makes SGD with momentum
     * at batch 1 diverge, which would time overflowing arithmetic. */
    if (cfg->net == NET_CNN)
        fill(L->x, N * in, 0.0, 1.0);              /* pixels in [0, 1], as Fashion-MNIST's */
    else if (cfg->big)
        fill(L->x, N * in, 0.0, sqrt(3.0 / in));   /* non-negative, like pixels */
    else
        fill(L->x, N * in, -sqrt(3.0 / in), sqrt(3.0 / in));
    fill(L->targets, N * outs, -1.0, 1.0);
    for (size_t i = 0; i < N; i++)
        L->labels[i] = (int32_t)(urand() * outs);
    for (int p = 0; p < L->P; p++) {
        float shared_s = (float)urand();   /* shared: one context per batch */
        for (size_t i = (size_t)p * n * L->dim; i < (size_t)(p + 1) * n * L->dim; i++)
            L->s[i] = !strcmp(cfg->ctx, "shared") ? shared_s : (float)urand();
    }
    L->next = 0;
    next_batch(L);
}

/* Point L->batch at the next batch of the pool. */
static void next_batch(lib_ctx *L)
{
    int n = L->cfg.n, p = L->next;
    size_t r0 = (size_t)p * n;
    L->next = (p + 1) % L->P;
    L->batch.n = n;
    L->batch.x = L->x + r0 * L->sizes[0];
    L->batch.s = L->dim > 0 ? L->s + r0 * L->dim : NULL;
    L->batch.labels = L->cfg.big ? L->labels + r0 : NULL;
    L->batch.targets = L->cfg.big ? NULL : L->targets + r0 * L->sizes[L->n_layers];
}

static void lib_free(lib_ctx *L)
{
    wm_optimizer_free(L->opt);
    wm_net_free(L->net);
    wm_manifold_free(L->m);
    free(L->out);
    if (!L->borrowed)
        free(L->x), free(L->s), free(L->targets), free(L->labels);
}

static int lib_step(void *v)
{
    lib_ctx *L = v;
    next_batch(L);
    L->last_status = wm_step(L->opt, &L->batch, &L->last_loss);
    L->loss_sum += L->last_loss;
    L->loss_count++;
    return L->last_status != WM_OK;
}

static int lib_grad(void *v)
{
    lib_ctx *L = v;
    next_batch(L);
    L->last_status = wm_grad(L->opt, &L->batch, &L->last_loss);
    return L->last_status != WM_OK;
}

static int lib_infer(void *v)
{
    lib_ctx *L = v;
    next_batch(L);
    L->last_status = wm_infer(L->net, L->batch.x, L->batch.s, L->cfg.n, L->out);
    return L->last_status != WM_OK;
}

/* ---- the floor ------------------------------------------------------------------
 * Mixed contexts (and the point): per layer Z = X Wst^T (n x K*out), and in
 * backward dWst = D^T X and, for every layer but the first, dX = D Wst, all
 * through the library's own product routes (wmi_gemm, so the floor uses the
 * same blocking: issue 15); then one momentum pass over all parameters (read
 * the gradient, read/write the parameter and the momentum buffer).
 * Shared context: materialise W(s) = sum_k c_k Q_k (one pass over K*|W|), the
 * plain network's GEMMs (K times smaller), spread the gradient
 * dQ_k = c_k dW (a pass writing K*|W|), and the same momentum pass.
 * Inference: the forward GEMMs alone (mixed) or materialise + plain GEMMs
 * (shared). Nothing else: no bias, no activation, no loss.
 * bspline16 gets the same stacked floor over all 16 points; the library's
 * local path needs (degree+1)/K = 1/4 of its GEMM FLOPs, so ours/floor < 1
 * there says nothing about the distance to its own floor.
 *
 * The CNN's floor is the same on im2col matrices, batched: a conv layer with
 * in_c*k*k = in columns per output position and P output positions a sample
 * is a GEMM over n*P columns: forward Z = Wst cols ((K*out) x nP), backward
 * dWst = D cols^T and, for the second conv, dcols = Wst^T D. That is the
 * stacked strategy's arithmetic (K x a plain conv's FLOPs, what the PyTorch
 * peer runs); the materialised strategy needs 1/K of those conv FLOPs, so
 * WM_CONV_MATERIALISED and WM_CONV_AUTO can beat this floor. im2col, col2im,
 * pooling, activations, bias and loss are not in it. The dense layer is as
 * in the MLP. Shared context: materialise once, the plain GEMMs, spread. */

typedef struct {
    int n, K, shared, n_layers;
    int in[MAX_LAYERS], out[MAX_LAYERS];
    int np[MAX_LAYERS];               /* GEMM columns: n (dense) or n*P (conv) */
    int conv[MAX_LAYERS];             /* 1: im2col layout (in x np), weights on the left */
    size_t w_off[MAX_LAYERS], b_off[MAX_LAYERS], n_params;
    float *q, *g, *v;                 /* all parameters, gradient, momentum */
    float *X[MAX_LAYERS];             /* each layer's input, np x in (conv: in x np) */
    float *Z, *D, *dX;                /* max over layers of np*K*out, np*K*out, np*in */
    float *wm[MAX_LAYERS], *gm;       /* materialised layers (w then b), plain gradient */
    float c[16];
    float lr, mu;
} floor_ctx;

static void floor_setup(floor_ctx *F, const lib_ctx *L)
{
    memset(F, 0, sizeof *F);
    F->n = L->cfg.n;
    F->K = L->K;
    F->shared = !strcmp(L->cfg.ctx, "shared") && F->K > 1;
    if (L->cfg.net == NET_CNN) {      /* conv 1->8 (P 28x28), conv 8->16 (P 14x14), dense 784->10 */
        int hw = CNN_HW, c_in = CNN_C;
        for (int l = 0; l < 2; l++) {
            F->in[l] = c_in * 9;
            F->out[l] = cnn_widths[l];
            F->np[l] = F->n * hw * hw;
            F->conv[l] = 1;
            c_in = cnn_widths[l];
            hw /= 2;
        }
        F->in[2] = c_in * hw * hw;
        F->out[2] = L->sizes[1];
        F->np[2] = F->n;
        F->n_layers = 3;
    } else {
        F->n_layers = L->n_layers;
        for (int l = 0; l < F->n_layers; l++) {
            F->in[l] = L->sizes[l];
            F->out[l] = L->sizes[l + 1];
            F->np[l] = F->n;
        }
    }
    size_t off = 0, max_z = 0, max_x = 0;
    int max_in = 0, max_out = 0;
    for (int l = 0; l < F->n_layers; l++) {
        F->w_off[l] = off;
        off += (size_t)F->K * F->out[l] * F->in[l];
        F->b_off[l] = off;
        off += (size_t)F->K * F->out[l];
        max_in = F->in[l] > max_in ? F->in[l] : max_in;
        max_out = F->out[l] > max_out ? F->out[l] : max_out;
        size_t z = (size_t)F->np[l] * F->K * F->out[l], x = (size_t)F->np[l] * F->in[l];
        max_z = z > max_z ? z : max_z;
        max_x = x > max_x ? x : max_x;
    }
    F->n_params = off;
    F->q = xalloc(sizeof(float) * off);
    F->g = xalloc(sizeof(float) * off);
    F->v = xalloc(sizeof(float) * off);
    fill(F->q, off, -0.05, 0.05);
    for (int l = 0; l < F->n_layers; l++) {
        F->X[l] = xalloc(sizeof(float) * (size_t)F->np[l] * F->in[l]);
        fill(F->X[l], (size_t)F->np[l] * F->in[l], 0.0, 1.0);
        F->wm[l] = xalloc(sizeof(float) * (size_t)F->out[l] * (F->in[l] + 1));
    }
    F->Z = xalloc(sizeof(float) * max_z);
    F->D = xalloc(sizeof(float) * max_z);
    fill(F->D, max_z, -0.01, 0.01);
    F->dX = xalloc(sizeof(float) * max_x);
    F->gm = xalloc(sizeof(float) * (size_t)max_out * (max_in + 1));
    for (int k = 0; k < F->K; k++)
        F->c[k] = (float)(0.3 + 0.5 * urand());
    F->lr = 0.01f;
    F->mu = 0.9f;
}

static void floor_free(floor_ctx *F)
{
    free(F->q), free(F->g), free(F->v), free(F->Z), free(F->D), free(F->dX), free(F->gm);
    for (int l = 0; l < F->n_layers; l++)
        free(F->X[l]), free(F->wm[l]);
}

/* W(s) = sum_k c_k Q_k for layer l, weights and biases. */
static void floor_materialise(floor_ctx *F, int l)
{
    size_t wn = (size_t)F->out[l] * F->in[l];
    const float *Q = F->q + F->w_off[l], *B = F->q + F->b_off[l];
    float *w = F->wm[l], *b = F->wm[l] + wn;
    float c0 = F->c[0];
    for (size_t j = 0; j < wn; j++)
        w[j] = c0 * Q[j];
    for (int k = 1; k < F->K; k++) {
        const float *Qk = Q + (size_t)k * wn;
        float ck = F->c[k];
        for (size_t j = 0; j < wn; j++)
            w[j] += ck * Qk[j];
    }
    for (int o = 0; o < F->out[l]; o++) {
        float acc = 0;
        for (int k = 0; k < F->K; k++)
            acc += F->c[k] * B[(size_t)k * F->out[l] + o];
        b[o] = acc;
    }
}

/* The floor's products go through the library's own product routes
 * (src/blas.c: the same blocking, the route measured on this core), so the
 * floor and the library differ by everything but the products' kernels. */
static void floor_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc)
{
    wmi_gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void floor_forward(floor_ctx *F)
{
    for (int l = 0; l < F->n_layers; l++) {
        int in = F->in[l], out = F->out[l], n = F->np[l];
        if (F->conv[l]) {                             /* Z = W cols: (rows x in)(in x nP) */
            int rows = F->shared ? out : F->K * out;
            const float *W = F->q + F->w_off[l];
            if (F->shared) {
                floor_materialise(F, l);
                W = F->wm[l];
            }
            floor_gemm(0, 0, rows, n, in, 1.0f, W, in,
                        F->X[l], n, 0.0f, F->Z, n);
        } else if (F->shared) {
            floor_materialise(F, l);
            floor_gemm(0, 1, n, out, in, 1.0f, F->X[l], in,
                        F->wm[l], in, 0.0f, F->Z, out);
        } else {
            int ko = F->K * out;
            floor_gemm(0, 1, n, ko, in, 1.0f, F->X[l], in,
                        F->q + F->w_off[l], in, 0.0f, F->Z, ko);
        }
    }
}

/* dQ_k = c_k dW for a shared context's plain gradient F->gm (out x in). */
static void floor_spread(floor_ctx *F, int l)
{
    size_t wn = (size_t)F->out[l] * F->in[l];
    float *gW = F->g + F->w_off[l];
    for (int k = 0; k < F->K; k++) {
        float ck = F->c[k];
        float *gk = gW + (size_t)k * wn;
        for (size_t j = 0; j < wn; j++)
            gk[j] = ck * F->gm[j];
    }
}

static void floor_backward(floor_ctx *F)
{
    for (int l = F->n_layers - 1; l >= 0; l--) {
        int in = F->in[l], out = F->out[l], n = F->np[l];
        if (F->conv[l]) {      /* dW = D cols^T (rows x in); dcols = W^T D (in x nP) */
            int rows = F->shared ? out : F->K * out;
            const float *W = F->shared ? F->wm[l] : F->q + F->w_off[l];
            float *dW = F->shared ? F->gm : F->g + F->w_off[l];
            floor_gemm(0, 1, rows, in, n, 1.0f, F->D, n,
                        F->X[l], n, 0.0f, dW, in);
            if (l > 0)
                floor_gemm(1, 0, in, n, rows, 1.0f, W, in,
                            F->D, n, 0.0f, F->dX, n);
            if (F->shared)
                floor_spread(F, l);
        } else if (F->shared) {
            size_t wn = (size_t)out * in;
            floor_gemm(1, 0, out, in, n, 1.0f, F->D, out,
                        F->X[l], in, 0.0f, F->gm, in);
            if (l > 0)
                floor_gemm(0, 0, n, in, out, 1.0f, F->D, out,
                            F->wm[l], in, 0.0f, F->dX, in);
            float *gW = F->g + F->w_off[l];
            for (int k = 0; k < F->K; k++) {         /* spread: dQ_k = c_k dW */
                float ck = F->c[k];
                float *gk = gW + (size_t)k * wn;
                for (size_t j = 0; j < wn; j++)
                    gk[j] = ck * F->gm[j];
            }
        } else {
            int ko = F->K * out;
            floor_gemm(1, 0, ko, in, n, 1.0f, F->D, ko,
                        F->X[l], in, 0.0f, F->g + F->w_off[l], in);
            if (l > 0)
                floor_gemm(0, 0, n, in, ko, 1.0f, F->D, ko,
                            F->q + F->w_off[l], in, 0.0f, F->dX, in);
        }
    }
}

/* One pass over the parameters: read g, read/write q and v (PyTorch's momentum). */
static void floor_update(floor_ctx *F)
{
    float *restrict q = F->q, *restrict v = F->v;
    const float *restrict g = F->g;
    float lr = F->lr, mu = F->mu;
    size_t np = F->n_params;
    for (size_t j = 0; j < np; j++) {
        float vj = mu * v[j] + g[j];
        v[j] = vj;
        q[j] -= lr * vj;
    }
}

static int floor_step(void *v)
{
    floor_ctx *F = v;
    floor_forward(F);
    floor_backward(F);
    floor_update(F);
    return 0;
}

static int floor_infer(void *v)
{
    floor_forward(v);
    return 0;
}

/* FLOPs of the floor's GEMMs for a training step (forward + backward). */
static double floor_step_flops(const floor_ctx *F)
{
    double f = 0;
    int k = F->shared ? 1 : F->K;
    for (int l = 0; l < F->n_layers; l++)
        f += 2.0 * F->np[l] * k * F->out[l] * F->in[l] * (l > 0 ? 3 : 2);
    return f;
}

/* FLOPs of the plain net's GEMMs for a training step: every conv and dense
 * layer with one kernel (K = 1), forward, dW and (but the first layer) dX.
 * The CNN's FLOP floor (issue 15) is these at the rate of the GEMM below. */
static double plain_step_flops(const floor_ctx *F)
{
    double f = 0;
    for (int l = 0; l < F->n_layers; l++)
        f += 2.0 * F->np[l] * F->out[l] * F->in[l] * (l > 0 ? 3 : 2);
    return f;
}

/* The GEMM rate the CNN's FLOP floor uses, measured in the same process and
 * interleaved with the step: one cblas_sgemm of the second conv's forward
 * shape over the whole batch, W (16 x 72) times the im2col columns
 * (72 x n*196), the net's largest product. */
typedef struct {
    int m, k, cols;
    float *A, *B, *C;
} gemm_probe;

static void gemm_probe_setup(gemm_probe *G, int n)
{
    G->m = cnn_widths[1];
    G->k = cnn_widths[0] * 9;
    G->cols = n * (CNN_HW / 2) * (CNN_HW / 2);
    G->A = xalloc(sizeof(float) * (size_t)G->m * G->k);
    G->B = xalloc(sizeof(float) * (size_t)G->k * G->cols);
    G->C = xalloc(sizeof(float) * (size_t)G->m * G->cols);
    fill(G->A, (size_t)G->m * G->k, -0.1, 0.1);
    fill(G->B, (size_t)G->k * G->cols, 0.0, 1.0);
}

static int gemm_probe_run(void *v)
{
    gemm_probe *G = v;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, G->m, G->cols, G->k, 1.0f, G->A, G->k,
                G->B, G->cols, 0.0f, G->C, G->cols);
    return 0;
}

static double gemm_probe_flops(const gemm_probe *G) { return 2.0 * G->m * G->k * G->cols; }

static void gemm_probe_free(gemm_probe *G) { free(G->A), free(G->B), free(G->C); }

/* ---- one configuration ---------------------------------------------------------- */

typedef struct {
    int reps, threads;
    double rep_s;
    int do_step, do_infer, do_floor, do_split, do_strat;
} options;

static void json_job(const job *j)
{
    printf("\"%s\": {\"median_us\": %.3f, \"iters\": %ld, \"reps\": %d, \"times_us\": [", j->key,
           j->median_us, j->iters, j->reps);
    for (int r = 0; r < j->reps; r++)
        printf("%s%.3f", r ? ", " : "", j->times[r]);
    printf("]}, ");
}

static double mean_loss(const lib_ctx *L)
{
    return L->loss_count ? L->loss_sum / (double)L->loss_count : 0.0;
}

static int run_config(const config *cfg, const options *o)
{
    lib_ctx L, Ls, Lm;                /* WM_CONV_AUTO; the CNN's forced strategies */
    floor_ctx F;
    /* Forcing a strategy only matters for a conv with mixed contexts: a shared
     * context always materialises once, the point has one kernel. */
    int strat = o->do_strat && cfg->net == NET_CNN && !strcmp(cfg->ctx, "mixed");
    lib_setup(&L, cfg, WM_CONV_AUTO, NULL);
    if (strat) {
        lib_setup(&Ls, cfg, WM_CONV_STACKED, &L);
        lib_setup(&Lm, cfg, WM_CONV_MATERIALISED, &L);
    }
    floor_setup(&F, &L);
    gemm_probe G;
    int probe = o->do_floor && cfg->net == NET_CNN;
    if (probe)
        gemm_probe_setup(&G, cfg->n);
    job jobs[MAX_JOBS];
    int nj = 0;
    if (o->do_split)              /* wm_grad alone: wm_apply is then step - grad (applying */
        jobs[nj++] = (job){"grad", lib_grad, &L, 0, 0, {0}, 0};   /* one gradient over and over diverges) */
    if (o->do_step) {
        jobs[nj++] = (job){"step", lib_step, &L, 0, 0, {0}, 0};
        if (strat) {
            jobs[nj++] = (job){"step_stacked", lib_step, &Ls, 0, 0, {0}, 0};
            jobs[nj++] = (job){"step_mat", lib_step, &Lm, 0, 0, {0}, 0};
        }
    }
    if (o->do_floor && o->do_step) jobs[nj++] = (job){"floor_step", floor_step, &F, 0, 0, {0}, 0};
    if (probe) jobs[nj++] = (job){"gemm_rate", gemm_probe_run, &G, 0, 0, {0}, 0};
    if (o->do_infer) {
        jobs[nj++] = (job){"infer", lib_infer, &L, 0, 0, {0}, 0};
        if (strat) {
            jobs[nj++] = (job){"infer_stacked", lib_infer, &Ls, 0, 0, {0}, 0};
            jobs[nj++] = (job){"infer_mat", lib_infer, &Lm, 0, 0, {0}, 0};
        }
    }
    if (o->do_floor && o->do_infer) jobs[nj++] = (job){"floor_infer", floor_infer, &F, 0, 0, {0}, 0};
    int bad = measure(jobs, nj, o->reps, o->rep_s);
    if (bad >= 0)
        die_wm(jobs[bad].key, jobs[bad].ctx == (void *)&F || jobs[bad].ctx == (void *)&G
                                  ? WM_OK : ((lib_ctx *)jobs[bad].ctx)->last_status);
    const lib_ctx *all[3] = {&L, &Ls, &Lm};
    for (int i = 0; i < (strat ? 3 : 1); i++)
        if (!isfinite(all[i]->last_loss)) {
            fprintf(stderr, "bench: %s: the loss is not finite\n", cfg->name);
            exit(1);
        }
    printf("{\"impl\": \"libwmanifold\", \"config\": \"%s\", \"threads\": %d, \"n\": %d, "
           "\"K\": %d, \"n_params\": %zu, \"loss\": %.6g, \"mean_loss\": %.6g, \"steps\": %ld, "
           "\"floor_step_gflop\": %.6f, ",
           cfg->name, o->threads, cfg->n, L.K, wm_net_n_params(L.net), (double)L.last_loss,
           mean_loss(&L), L.loss_count, floor_step_flops(&F) * 1e-9);
    if (strat)
        printf("\"mean_loss_stacked\": %.6g, \"mean_loss_mat\": %.6g, ", mean_loss(&Ls), mean_loss(&Lm));
    if (probe)      /* the FLOP floor: plain_step_gflop at gemm_gflop per gemm_rate call */
        printf("\"plain_step_gflop\": %.6f, \"gemm_gflop\": %.6f, \"gemm_shape\": [%d, %d, %d], ",
               plain_step_flops(&F) * 1e-9, gemm_probe_flops(&G) * 1e-9, G.m, G.cols, G.k);
    for (int j = 0; j < nj; j++)
        json_job(&jobs[j]);
    printf("\"peak_rss_kb\": %ld}\n", peak_rss_kb());
    fflush(stdout);
    floor_free(&F);
    if (probe)
        gemm_probe_free(&G);
    if (strat)
        lib_free(&Ls), lib_free(&Lm);
    lib_free(&L);
    return 0;
}

/* ---- machine facts: OpenBLAS and a STREAM-like bandwidth ------------------------ */

/* Best-of-`reps` bandwidth in GB/s of a = b + 0.5 c (triad: 2 reads, 1 write,
 * counted as 3 * n * 4 bytes as STREAM does) and of the momentum pass
 * (v = mu v + g; q -= lr v: 3 reads, 2 writes, 5 * n * 4 bytes), over arrays
 * of n floats each. */
static void bandwidth(size_t n, int reps, double *triad_gbs, double *update_gbs)
{
    float *a = xalloc(n * 4), *b = xalloc(n * 4), *c = xalloc(n * 4);
    fill(b, n, 0, 1), fill(c, n, 0, 1);
    double best_t = 1e30, best_u = 1e30;
    long inner = (long)(2e7 / (double)n) + 1;  /* ~20M elements per timing */
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        for (long it = 0; it < inner; it++) {
            float *restrict A = a;
            const float *restrict B = b, *restrict C = c;
            for (size_t j = 0; j < n; j++)
                A[j] = B[j] + 0.5f * C[j];
            __asm__ __volatile__("" : : "r"(a) : "memory");
        }
        double t = (now_s() - t0) / (double)inner;
        best_t = t < best_t ? t : best_t;
        t0 = now_s();
        for (long it = 0; it < inner; it++) {
            float *restrict q = a, *restrict v = b;
            const float *restrict g = c;
            for (size_t j = 0; j < n; j++) {
                float vj = 0.9f * v[j] + g[j];
                v[j] = vj;
                q[j] -= 0.01f * vj;
            }
            __asm__ __volatile__("" : : "r"(a) : "memory");
        }
        t = (now_s() - t0) / (double)inner;
        best_u = t < best_u ? t : best_u;
        /* keep b and c bounded */
        fill(b, n < 1024 ? n : 1024, 0, 1);
    }
    *triad_gbs = 3.0 * 4.0 * (double)n / best_t * 1e-9;
    *update_gbs = 5.0 * 4.0 * (double)n / best_u * 1e-9;
    free(a), free(b), free(c);
}

static void json_escape(const char *s)
{
    putchar('"');
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            putchar(' ');
        else
            putchar(*s);
    }
    putchar('"');
}

static void machine_facts(int quick)
{
    printf("{\"impl\": \"libwmanifold\", \"machine\": true, \"wm_version\": ");
    json_escape(wm_version());
#if HAVE_OPENBLAS
    printf(", \"blas\": ");
#ifdef OPENBLAS_VERSION
    json_escape(OPENBLAS_VERSION);
#else
    json_escape("OpenBLAS");
#endif
    printf(", \"openblas_config\": ");
    json_escape(openblas_get_config());
    printf(", \"openblas_threads\": %d", openblas_get_num_threads());
#else
    printf(", \"blas\": \"not OpenBLAS\"");
#endif
    printf(", \"online_cpus\": %ld", sysconf(_SC_NPROCESSORS_ONLN));
    /* sizes: the circle MLP's parameter block (808k floats = 3.2 MB, the
     * three arrays of the update ~10 MB: L3-resident here) and a DRAM-sized one */
    static const size_t sizes[] = {807966, 16u << 20};
    static const char *names[] = {"circle_mlp_params", "dram_64MiB"};
    printf(", \"bandwidth\": [");
    for (int i = 0; i < 2; i++) {
        double tr, up;
        bandwidth(sizes[i], quick ? 3 : 9, &tr, &up);
        printf("%s{\"name\": \"%s\", \"floats_per_array\": %zu, \"triad_GBps\": %.2f, "
               "\"update_GBps\": %.2f}", i ? ", " : "", names[i], sizes[i], tr, up);
    }
    printf("]}\n");
}

/* ---- smoke and loop modes ---------------------------------------------------------- */

/* Configuration `name` at batch size n (the smoke run's CNN uses a small
 * batch: under valgrind every CNN call is ~100 times slower). 0 if found. */
static int smoke_config(const char *name, int n, config *c)
{
    if (find_config(name, c))
        return -1;
    if (n > 0) {
        c->n = n;
        snprintf(c->name, sizeof c->name, "%s-%s-%s-%d", c->net == NET_CNN ? "cnn" : c->big ? "mlp" : "ctl",
                 c->manifold, c->ctx, n);
    }
    return 0;
}

/* The CNN's three strategies compute the same function: wm_infer and the
 * loss of wm_grad on one batch agree to float rounding (so the rows compare
 * like with like). 0 if they do. */
static int strategies_agree(const char *name, int n)
{
    config c;
    if (smoke_config(name, n, &c))
        return 1;
    lib_ctx L[3];
    static const wm_conv_strategy st[3] = {WM_CONV_AUTO, WM_CONV_STACKED, WM_CONV_MATERIALISED};
    float loss[3];
    for (int i = 0; i < 3; i++) {
        lib_setup(&L[i], &c, st[i], i ? &L[0] : NULL);
        WM_CHECK(wm_infer(L[i].net, L[i].batch.x, L[i].batch.s, c.n, L[i].out));
        WM_CHECK(wm_grad(L[i].opt, &L[i].batch, &loss[i]));
    }
    size_t m = (size_t)c.n * L[0].sizes[L[0].n_layers];
    double scale = 1.0, worst = 0.0;
    for (size_t j = 0; j < m; j++)
        scale = fmax(scale, fabs(L[0].out[j]));
    for (int i = 1; i < 3; i++) {
        for (size_t j = 0; j < m; j++)
            worst = fmax(worst, fabs((double)L[i].out[j] - L[0].out[j]));
        worst = fmax(worst, fabs((double)loss[i] - loss[0]));
    }
    for (int i = 2; i >= 0; i--)            /* L[0] owns the pool */
        lib_free(&L[i]);
    if (!(worst <= 1e-4 * scale)) {
        fprintf(stderr, "bench: %s: the conv strategies disagree by %g\n", c.name, worst);
        return 1;
    }
    return 0;
}

static int smoke(void)
{
    options o = {1, 1, 0.001, 1, 1, 1, 0, 1};
    static const char *names[2][2] = {{"ctl-circle-mixed-16", "ctl-circle-shared-1"},
                                      {"cnn-circle-mixed-16", "cnn-circle-shared-16"}};
    int failed = 0;
    pool_samples = 64;                   /* it checks that everything runs, not how fast */
    min_warmup = 1;
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < 2; i++) {
            config c;
            if (smoke_config(names[t][i], t ? 4 : 0, &c)) {   /* the CNN at batch 4 */
                fprintf(stderr, "bench: no configuration %s\n", names[t][i]);
                failed++;
                continue;
            }
            run_config(&c, &o);          /* exits non-zero on any failure */
        }
    failed += strategies_agree("cnn-circle-mixed-16", 4);
    printf("bench: %d passed, %d failed\n", 3 - failed, failed);
    return failed != 0;
}

static int loop(const config *cfg, const char *what, double seconds, long n_calls,
                wm_conv_strategy strategy)
{
    lib_ctx L;
    floor_ctx F;
    gemm_probe G;
    lib_setup(&L, cfg, strategy, NULL);
    floor_setup(&F, &L);
    gemm_probe_setup(&G, cfg->n);
    bench_fn f = !strcmp(what, "infer") ? lib_infer : !strcmp(what, "floor_step") ? floor_step
               : !strcmp(what, "floor_infer") ? floor_infer : !strcmp(what, "gemm_rate") ? gemm_probe_run
               : lib_step;
    void *ctx = (f == floor_step || f == floor_infer) ? (void *)&F : f == gemm_probe_run ? (void *)&G
              : (void *)&L;
    for (int i = 0; i < 3; i++)
        f(ctx);
    double t0 = now_s();
    long calls = 0;
    while (n_calls > 0 ? calls < n_calls : now_s() - t0 < seconds) {
        for (int i = 0; i < 10; i++)
            if (f(ctx))
                die_wm(what, L.last_status);
        calls += 10;
    }
    fprintf(stderr, "bench: %s %s: %ld calls, %.3f us each\n", cfg->name, what, calls,
            (now_s() - t0) / (double)calls * 1e6);
    if (f == gemm_probe_run)
        fprintf(stderr, "bench: %s gemm_rate: %.6f GFLOP a call (the FLOP floor's %.6f GFLOP step)\n",
                cfg->name, gemm_probe_flops(&G) * 1e-9, plain_step_flops(&F) * 1e-9);
    gemm_probe_free(&G);
    floor_free(&F);
    lib_free(&L);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench --list | --machine [--quick] | --smoke |\n"
                    "       --config NAME | --all  [--reps R] [--rep-ms MS] [--threads T]\n"
                    "                              [--what step,infer,floor,strat,grad]\n"
                    "       --loop NAME --what step|infer|floor_step|floor_infer|gemm_rate [--seconds S]\n"
                    "                   [--strategy auto|stacked|materialised] [--calls C]\n"
                    "       any mode: [--opt sd|momentum|adam]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    options o = {7, 1, 0.040, 1, 1, 1, 0, 1};
    const char *cfg_name = NULL, *loop_name = NULL, *what = NULL;
    wm_conv_strategy strategy = WM_CONV_AUTO;
    int list = 0, all = 0, machine = 0, do_smoke = 0, quick = 0;
    double seconds = 5;
    long n_calls = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--list")) list = 1;
        else if (!strcmp(a, "--all")) all = 1;
        else if (!strcmp(a, "--machine")) machine = 1;
        else if (!strcmp(a, "--smoke")) do_smoke = 1;
        else if (!strcmp(a, "--quick")) quick = 1;
        else if (!val) usage();
        else if (!strcmp(a, "--config")) cfg_name = val, i++;
        else if (!strcmp(a, "--loop")) loop_name = val, i++;
        else if (!strcmp(a, "--what")) what = val, i++;
        else if (!strcmp(a, "--reps")) o.reps = atoi(val), i++;
        else if (!strcmp(a, "--rep-ms")) o.rep_s = atof(val) * 1e-3, i++;
        else if (!strcmp(a, "--threads")) o.threads = atoi(val), i++;
        else if (!strcmp(a, "--seconds")) seconds = atof(val), i++;
        else if (!strcmp(a, "--calls")) n_calls = atol(val), i++;
        else if (!strcmp(a, "--opt")) {
            if (!strcmp(val, "sd")) bench_opt_kind = WM_OPT_SD;
            else if (!strcmp(val, "momentum")) bench_opt_kind = WM_OPT_MOMENTUM;
            else if (!strcmp(val, "adam")) bench_opt_kind = WM_OPT_ADAM;
            else usage();
            i++;
        }
        else if (!strcmp(a, "--strategy")) {
            if (!strcmp(val, "auto")) strategy = WM_CONV_AUTO;
            else if (!strcmp(val, "stacked")) strategy = WM_CONV_STACKED;
            else if (!strcmp(val, "materialised")) strategy = WM_CONV_MATERIALISED;
            else usage();
            i++;
        }
        else usage();
    }
    if (o.reps < 1 || o.reps > MAX_REPS || o.threads < 1 || !(o.rep_s > 0))
        usage();
    if (what && !loop_name) {
        o.do_step = strstr(what, "step") != NULL;
        o.do_infer = strstr(what, "infer") != NULL;
        o.do_floor = strstr(what, "floor") != NULL;
        o.do_split = strstr(what, "grad") != NULL;
        o.do_strat = strstr(what, "strat") != NULL;
    }
    set_threads(o.threads);

    config cfgs[64];
    int nc = all_configs(cfgs, 64);
    if (list) {
        for (int i = 0; i < nc; i++)
            printf("%s\n", cfgs[i].name);
        return 0;
    }
    if (machine) {
        machine_facts(quick);
        return 0;
    }
    if (do_smoke)
        return smoke();
    if (loop_name) {
        config c;
        if (find_config(loop_name, &c)) {
            fprintf(stderr, "bench: no configuration %s (see --list)\n", loop_name);
            return 2;
        }
        return loop(&c, what ? what : "step", seconds, n_calls, strategy);
    }
    if (all) {
        for (int i = 0; i < nc; i++)
            run_config(&cfgs[i], &o);
        return 0;
    }
    if (cfg_name) {
        config c;
        if (find_config(cfg_name, &c)) {
            fprintf(stderr, "bench: no configuration %s (see --list)\n", cfg_name);
            return 2;
        }
        return run_config(&c, &o);
    }
    usage();
    return 2;
}
