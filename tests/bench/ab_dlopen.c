/* ab_dlopen.c -- is a new libwmanifold.so as fast as an old one? Both in one
 * process, alternated.
 *
 * tests/bench/ab.py compares two statically linked bench binaries in fresh
 * processes; on small nets the binaries' own code placement moves their
 * times by up to +-30% (docs/performance.md). Here both libraries are
 * loaded into one process with dlopen (each from its own path, so each has
 * its own code and its own routes measurement), the same nets are built
 * in each through the public API, and their steps (or inferences) run in
 * the order A B B A, round after round, timed by this thread's CPU time.
 * The figure per round is new/old of that round's per-call times; the
 * report gives the median and the range of the rounds.
 *
 *   cc -O2 -Iinclude tests/bench/ab_dlopen.c -ldl -o build/ab_dlopen
 *   build/ab_dlopen OLD.so NEW.so [--rounds R] [--ms M] [--what step|infer]
 *                   CONFIG...
 *
 * CONFIG is bench.c's name: NET-MANIFOLD-CTX-N with NET mlp (784-256-256-10,
 * relu, softmax CE), ctl (16-64-64-4, tanh, MSE) or cnn (1x28x28, conv 8 and
 * 16 3x3 pad 1 relu each with maxpool 2, dense 10), MANIFOLD point, line,
 * circle or bspline16, CTX mixed or shared, N the batch; momentum, lr 0.01,
 * as bench.c. Only for comparisons: absolute figures belong to make bench. */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wmanifold.h"

typedef struct {
    void *h;
    wm_status (*manifold_point)(wm_manifold **), (*manifold_line)(wm_manifold **),
        (*manifold_circle)(wm_manifold **), (*manifold_bspline)(wm_manifold **, int, int, int);
    int (*manifold_dim)(const wm_manifold *);
    void (*manifold_free)(wm_manifold *);
    wm_status (*net_create)(wm_net **, const wm_manifold *, int, wm_conditioning);
    wm_status (*net_dense)(wm_net *, int, wm_activation);
    wm_status (*net_input_shape)(wm_net *, int, int, int);
    wm_status (*net_conv2d)(wm_net *, int, int, int, int, wm_activation);
    wm_status (*net_maxpool)(wm_net *, int);
    wm_status (*net_set_loss)(wm_net *, wm_loss);
    wm_status (*net_init)(wm_net *, uint64_t);
    void (*net_free)(wm_net *);
    wm_opt_config (*opt_default)(wm_opt_kind);
    wm_status (*optimizer_create)(wm_optimizer **, wm_net *, const wm_opt_config *);
    void (*optimizer_free)(wm_optimizer *);
    wm_status (*step)(wm_optimizer *, const wm_batch *, float *);
    wm_status (*infer)(const wm_net *, const float *, const float *, int, float *);
    const char *(*last_error)(void);
} lib;

static void *sym(void *h, const char *path, const char *name)
{
    void *p = dlsym(h, name);
    if (!p) {
        fprintf(stderr, "ab_dlopen: %s has no %s\n", path, name);
        exit(1);
    }
    return p;
}

static void lib_open(lib *L, const char *path)
{
    L->h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!L->h) {
        fprintf(stderr, "ab_dlopen: %s\n", dlerror());
        exit(1);
    }
#define S(field, name) *(void **)&L->field = sym(L->h, path, name)
    S(manifold_point, "wm_manifold_point"), S(manifold_line, "wm_manifold_line");
    S(manifold_circle, "wm_manifold_circle"), S(manifold_bspline, "wm_manifold_bspline");
    S(manifold_dim, "wm_manifold_dim"), S(manifold_free, "wm_manifold_free");
    S(net_create, "wm_net_create"), S(net_dense, "wm_net_dense");
    S(net_input_shape, "wm_net_input_shape"), S(net_conv2d, "wm_net_conv2d");
    S(net_maxpool, "wm_net_maxpool"), S(net_set_loss, "wm_net_set_loss");
    S(net_init, "wm_net_init"), S(net_free, "wm_net_free"), S(opt_default, "wm_opt_default");
    S(optimizer_create, "wm_optimizer_create"), S(optimizer_free, "wm_optimizer_free");
    S(step, "wm_step"), S(infer, "wm_infer"), S(last_error, "wm_last_error");
#undef S
}

#define CHECK(L, call)                                                                         \
    do {                                                                                       \
        if ((call) != WM_OK) {                                                                 \
            fprintf(stderr, "ab_dlopen: %s: %s\n", #call, (L)->last_error());                  \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

/* One config's data, shared by both libraries. */
typedef struct {
    char net[8], manifold[16], ctx[8];
    int n, in, out, dim, big, cnn, pool;
    float *x, *s;
    int32_t *labels;
    float *targets, *y;
} data;

typedef struct {
    wm_manifold *m;
    wm_net *net;
    wm_optimizer *opt;
    int next;
} model;

static uint64_t rng = 12345;
static double urand(void)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static int parse(data *d, const char *name)
{
    memset(d, 0, sizeof *d);
    char buf[64];
    if (strlen(name) >= sizeof buf)
        return -1;
    strcpy(buf, name);
    char *a = strtok(buf, "-"), *b = strtok(NULL, "-"), *c = strtok(NULL, "-"), *e = strtok(NULL, "-");
    if (!a || !b || !c || !e || strlen(a) >= sizeof d->net || strlen(b) >= sizeof d->manifold ||
        strlen(c) >= sizeof d->ctx)
        return -1;
    strcpy(d->net, a), strcpy(d->manifold, b), strcpy(d->ctx, c);
    d->n = atoi(e);
    d->cnn = !strcmp(a, "cnn");
    d->big = d->cnn || !strcmp(a, "mlp");
    if (d->n < 1 || (!d->big && strcmp(a, "ctl")))
        return -1;
    d->in = d->big ? 784 : 16;
    d->out = d->big ? 10 : 4;
    d->dim = !strcmp(b, "point") ? 0 : 1;
    d->pool = (4096 + d->n - 1) / d->n;
    size_t N = (size_t)d->pool * d->n;
    d->x = malloc(N * d->in * sizeof *d->x);
    d->s = malloc(N * sizeof *d->s);
    d->labels = malloc(N * sizeof *d->labels);
    d->targets = malloc(N * d->out * sizeof *d->targets);
    d->y = malloc((size_t)d->n * d->out * sizeof *d->y);
    rng = 12345;
    double hi = d->cnn ? 1.0 : sqrt(3.0 / d->in), lo = d->big ? 0.0 : -hi;
    for (size_t i = 0; i < N * d->in; i++)
        d->x[i] = (float)(lo + (hi - lo) * urand());
    for (size_t i = 0; i < N * d->out; i++)
        d->targets[i] = (float)(2 * urand() - 1);
    for (size_t i = 0; i < N; i++)
        d->labels[i] = (int32_t)(urand() * d->out);
    for (int p = 0; p < d->pool; p++) {
        float shared = (float)urand();
        for (int i = 0; i < d->n; i++)
            d->s[(size_t)p * d->n + i] = !strcmp(c, "shared") ? shared : (float)urand();
    }
    return 0;
}

static void build(const lib *L, const data *d, model *M)
{
    memset(M, 0, sizeof *M);
    if (!strcmp(d->manifold, "point")) CHECK(L, L->manifold_point(&M->m));
    else if (!strcmp(d->manifold, "line")) CHECK(L, L->manifold_line(&M->m));
    else if (!strcmp(d->manifold, "bspline16")) CHECK(L, L->manifold_bspline(&M->m, 16, 3, 0));
    else CHECK(L, L->manifold_circle(&M->m));
    CHECK(L, L->net_create(&M->net, M->m, d->in, WM_COND_MANIFOLD));
    if (d->cnn) {
        CHECK(L, L->net_input_shape(M->net, 1, 28, 28));
        CHECK(L, L->net_conv2d(M->net, 8, 3, 1, 1, WM_ACT_RELU));
        CHECK(L, L->net_maxpool(M->net, 2));
        CHECK(L, L->net_conv2d(M->net, 16, 3, 1, 1, WM_ACT_RELU));
        CHECK(L, L->net_maxpool(M->net, 2));
        CHECK(L, L->net_dense(M->net, 10, WM_ACT_NONE));
    } else {
        int h = d->big ? 256 : 64;
        wm_activation act = d->big ? WM_ACT_RELU : WM_ACT_TANH;
        CHECK(L, L->net_dense(M->net, h, act));
        CHECK(L, L->net_dense(M->net, h, act));
        CHECK(L, L->net_dense(M->net, d->out, WM_ACT_NONE));
    }
    CHECK(L, L->net_set_loss(M->net, d->big ? WM_LOSS_SOFTMAX_CE : WM_LOSS_MSE));
    CHECK(L, L->net_init(M->net, 42));
    wm_opt_config oc = L->opt_default(WM_OPT_MOMENTUM);
    oc.lr = 0.01f;
    CHECK(L, L->optimizer_create(&M->opt, M->net, &oc));
}

static void call(const lib *L, const data *d, model *M, int infer)
{
    size_t r0 = (size_t)M->next * d->n;
    M->next = (M->next + 1) % d->pool;
    wm_batch b = {d->n, d->x + r0 * d->in, d->dim ? d->s + r0 : NULL,
                  d->big ? d->labels + r0 : NULL, d->big ? NULL : d->targets + r0 * d->out};
    float loss;
    if (infer)
        CHECK(L, L->infer(M->net, b.x, b.s, d->n, d->y));
    else
        CHECK(L, L->step(M->opt, &b, &loss));
}

static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Per-call CPU time of `calls` calls. */
static double timed(const lib *L, const data *d, model *M, int infer, int calls)
{
    double t0 = cpu_s();
    for (int i = 0; i < calls; i++)
        call(L, d, M, infer);
    return (cpu_s() - t0) / calls;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv)
{
    int rounds = 30, infer = 0;
    double ms = 30;
    if (argc < 4) {
        fprintf(stderr, "usage: ab_dlopen OLD.so NEW.so [--rounds R] [--ms M] [--what step|infer] CONFIG...\n");
        return 2;
    }
    lib A, B;
    lib_open(&A, argv[1]);
    lib_open(&B, argv[2]);
    if (A.step == B.step) {
        fprintf(stderr, "ab_dlopen: both paths gave the same library (copy one to another path)\n");
        return 2;
    }
    printf("| config | %s | old us | new us | new/old median | rounds min-max |\n| --- | --- | ---: | ---: | ---: | --- |\n",
           "what");
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--rounds") && i + 1 < argc) { rounds = atoi(argv[++i]); continue; }
        if (!strcmp(argv[i], "--ms") && i + 1 < argc) { ms = atof(argv[++i]); continue; }
        if (!strcmp(argv[i], "--what") && i + 1 < argc) { infer = !strcmp(argv[++i], "infer"); continue; }
        if (rounds < 1 || rounds > 100000 || !(ms > 0)) {
            fprintf(stderr, "ab_dlopen: bad --rounds or --ms\n");
            return 2;
        }
        data d;
        if (parse(&d, argv[i])) {
            fprintf(stderr, "ab_dlopen: bad config '%s'\n", argv[i]);
            return 2;
        }
        model ma, mb;
        build(&A, &d, &ma);
        build(&B, &d, &mb);
        /* warm up both and size a round to about `ms` of the old library */
        double per = timed(&A, &d, &ma, infer, 3);
        timed(&B, &d, &mb, infer, 3);
        per = timed(&A, &d, &ma, infer, 3);
        int calls = (int)(ms * 1e-3 / (per > 0 ? per : 1e-6));
        calls = calls < 1 ? 1 : calls > 100000 ? 100000 : calls;
        double *ra = malloc(rounds * sizeof *ra), *rb = malloc(rounds * sizeof *rb),
               *ratio = malloc(rounds * sizeof *ratio);
        for (int r = 0; r < rounds; r++) {   /* A B B A */
            double a = timed(&A, &d, &ma, infer, calls), b = timed(&B, &d, &mb, infer, calls);
            b += timed(&B, &d, &mb, infer, calls), a += timed(&A, &d, &ma, infer, calls);
            ra[r] = a / 2, rb[r] = b / 2, ratio[r] = b / a;
        }
        double mn = ratio[0], mx = ratio[0];
        for (int r = 1; r < rounds; r++)
            mn = ratio[r] < mn ? ratio[r] : mn, mx = ratio[r] > mx ? ratio[r] : mx;
        printf("| `%s` | %s | %.1f | %.1f | %.3f | %.2f-%.2f |\n", argv[i], infer ? "infer" : "step",
               1e6 * median(ra, rounds), 1e6 * median(rb, rounds), median(ratio, rounds), mn, mx);
        fflush(stdout);
        A.optimizer_free(ma.opt), A.net_free(ma.net), A.manifold_free(ma.m);
        B.optimizer_free(mb.opt), B.net_free(mb.net), B.manifold_free(mb.m);
        free(ra), free(rb), free(ratio);
        free(d.x), free(d.s), free(d.labels), free(d.targets), free(d.y);
    }
    dlclose(A.h);
    dlclose(B.h);
    return 0;
}
