/* test_oom.c -- allocation failure: make the n-th allocation fail, for every n
 * reached by a scenario that creates manifolds and nets (dense, conv, concat),
 * initialises, builds optimizers, steps, infers, evaluates, infers contexts,
 * saves and loads models (to files and to buffers) and checkpoints; check that each failing call
 * returns WM_ENOMEM (WM_EIO allowed for file calls), leaves its outputs and
 * the net as they were, that the handle works on the next call, and that
 * nothing leaks once the handles are freed.
 *
 * How: malloc, calloc, realloc, free, aligned_alloc, posix_memalign, memalign
 * and strdup are defined here, forwarding to glibc's __libc_* entry points.
 * While a library call under test runs ("armed", per thread), allocations
 * whose caller lies in this executable (the library is linked statically;
 * libc and OpenBLAS are shared objects and are left alone) are counted, the
 * n-th one fails, and every pointer they return is tracked until freed.
 * The scenario runs in a fresh thread each time, so the library's per-thread
 * scratch is created under test and released at thread exit, where the leak
 * count is taken.
 *
 * Under AddressSanitizer (SANITIZE=1) or valgrind, which bring their own
 * allocator, the interposition is not possible or not active: the test skips. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <unistd.h>

#include "testutil.h"

#include "blas.h"

#if defined(__SANITIZE_ADDRESS__)
#define OOM_INTERPOSE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer) || __has_feature(thread_sanitizer)
#define OOM_INTERPOSE 0
#endif
#endif
#ifndef OOM_INTERPOSE
#define OOM_INTERPOSE 1
#endif

#if OOM_INTERPOSE

/* ---- the interposed allocator --------------------------------------------- */

void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);
void *__libc_memalign(size_t align, size_t n);
void __libc_free(void *p);
void *memalign(size_t align, size_t n);
extern char __executable_start[], etext[];

#define MAX_LIVE 8192

static _Thread_local int armed;        /* this thread is inside a call under test */
static long fail_at;                   /* the armed allocation number that fails (0: none) */
static long n_armed;                   /* armed allocations so far in this run */
static int injected;                   /* failures injected so far in this run */
static void *live[MAX_LIVE];           /* blocks allocated armed and not yet freed */
static int n_live, live_overflow;
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;

static int from_us(const void *ret)
{
    return (const char *)ret >= __executable_start && (const char *)ret < etext;
}

/* Decide for one allocation request: 1 = fail it. */
static int should_fail(const void *ret)
{
    if (!armed || !from_us(ret))
        return 0;
    pthread_mutex_lock(&live_lock);
    int fail = ++n_armed == fail_at;
    if (fail)
        injected++;
    pthread_mutex_unlock(&live_lock);
    return fail;
}

static void track(void *p, const void *ret)
{
    if (!p || !armed || !from_us(ret))
        return;
    pthread_mutex_lock(&live_lock);
    if (n_live < MAX_LIVE)
        live[n_live++] = p;
    else
        live_overflow = 1;
    pthread_mutex_unlock(&live_lock);
}

/* Forget p if tracked; returns whether it was. */
static int untrack(void *p)
{
    int found = 0;
    if (!p)
        return 0;
    pthread_mutex_lock(&live_lock);
    for (int i = n_live - 1; i >= 0; i--)
        if (live[i] == p) {
            live[i] = live[--n_live];
            found = 1;
            break;
        }
    pthread_mutex_unlock(&live_lock);
    return found;
}

void *malloc(size_t n)
{
    const void *ret = __builtin_return_address(0);
    if (should_fail(ret)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = __libc_malloc(n);
    track(p, ret);
    return p;
}

void *calloc(size_t n, size_t size)
{
    const void *ret = __builtin_return_address(0);
    if (should_fail(ret)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = __libc_calloc(n, size);
    track(p, ret);
    return p;
}

void *realloc(void *old, size_t n)
{
    const void *ret = __builtin_return_address(0);
    if (should_fail(ret)) {
        errno = ENOMEM;
        return NULL;                   /* old stays valid (and tracked) */
    }
    void *p = __libc_realloc(old, n);
    if (p || n == 0) {
        int was = untrack(old);
        if (p && (was || (armed && from_us(ret)))) {
            pthread_mutex_lock(&live_lock);
            if (n_live < MAX_LIVE)
                live[n_live++] = p;
            else
                live_overflow = 1;
            pthread_mutex_unlock(&live_lock);
        }
    }
    return p;
}

void free(void *p)
{
    untrack(p);
    __libc_free(p);
}

void *memalign(size_t align, size_t n)
{
    const void *ret = __builtin_return_address(0);
    if (should_fail(ret)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = __libc_memalign(align, n);
    track(p, ret);
    return p;
}

void *aligned_alloc(size_t align, size_t n)
{
    const void *ret = __builtin_return_address(0);
    if (should_fail(ret)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = __libc_memalign(align, n);
    track(p, ret);
    return p;
}

int posix_memalign(void **out, size_t align, size_t n)
{
    const void *ret = __builtin_return_address(0);
    if (align < sizeof(void *) || (align & (align - 1)) != 0)
        return EINVAL;
    if (should_fail(ret))
        return ENOMEM;
    void *p = __libc_memalign(align, n);
    if (!p)
        return ENOMEM;
    track(p, ret);
    *out = p;
    return 0;
}

char *strdup(const char *s)
{
    const void *ret = __builtin_return_address(0);
    if (should_fail(ret)) {
        errno = ENOMEM;
        return NULL;
    }
    size_t n = strlen(s) + 1;
    char *p = __libc_malloc(n);
    if (p) {
        memcpy(p, s, n);
        track(p, ret);
    }
    return p;
}

static void arm(void) { armed = 1; }
static void disarm(void) { armed = 0; }

static int live_count(void)
{
    pthread_mutex_lock(&live_lock);
    int n = n_live + live_overflow;
    pthread_mutex_unlock(&live_lock);
    return n;
}

/* ---- the scenario ---------------------------------------------------------- */

enum { IN = 4, N = 12, BIG = 300, IMG = 6 };

static char dir[] = "/tmp/wm_test_oom_XXXXXX";
static char model_path[300], ckpt_path[300], link_path[300];
static char err[1024];                 /* the scenario's first failure, in words */
static const char *fail_site;          /* the call the injected failure hit */
static void *const SENTINEL = (void *)&n_live;

static int rfail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, sizeof err, fmt, ap);
    va_end(ap);
    return -1;
}

static int same_params(const wm_net *net, const float *snap, size_t len)
{
    size_t l;
    const float *p = wm_net_params(net, &l);
    return l == len && (len == 0 || memcmp(p, snap, len * sizeof(float)) == 0);
}

/* Only the files the scenario wrote: a failed atomic save leaves no temporary. */
static int dir_clean(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int stray = 0;
    if (!d)
        return 0;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "model.wmn") &&
            strcmp(e->d_name, "ckpt.wmn") && strcmp(e->d_name, "link.wmn"))
            stray++;
    closedir(d);
    return stray == 0;
}

static unsigned char *slurp(const char *p, size_t *n)
{
    FILE *f = fopen(p, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n + 1);
    if (b && fread(b, 1, *n, f) != *n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

/* Run `expr` armed. If it fails, it must be the injected failure, reported as
 * WM_ENOMEM (or WM_EIO when io_ok) with a message; `check` (run disarmed)
 * verifies that nothing changed; then the same call must succeed. */
#define STEP(expr, io_ok, check)                                                        \
    do {                                                                                \
        int before_ = injected;                                                         \
        arm();                                                                          \
        wm_status st_ = (expr);                                                         \
        disarm();                                                                       \
        if (injected != before_ && !fail_site)                                          \
            fail_site = #expr;                                                          \
        if (st_ == WM_OK && injected != before_)                                        \
            return rfail("%s succeeded although an allocation failed", #expr);          \
        if (st_ != WM_OK) {                                                             \
            if (injected == before_)                                                    \
                return rfail("%s -> %s with no allocation failing: %s", #expr,          \
                             wm_status_str(st_), wm_last_error());                      \
            if (!(st_ == WM_ENOMEM || ((io_ok) && st_ == WM_EIO)))                      \
                return rfail("%s -> %s after a failed allocation, want WM_ENOMEM (%s)", \
                             #expr, wm_status_str(st_), wm_last_error());               \
            if (!wm_last_error()[0])                                                    \
                return rfail("%s failed without a message", #expr);                     \
            check;                                                                      \
            arm();                                                                      \
            st_ = (expr);                                                               \
            disarm();                                                                   \
            if (st_ != WM_OK)                                                           \
                return rfail("%s failed again after an allocation failure: %s (%s)",    \
                             #expr, wm_status_str(st_), wm_last_error());               \
        }                                                                               \
    } while (0)

#define UNTOUCHED(h)                                                                    \
    do {                                                                                \
        if ((void *)(h) != SENTINEL)                                                    \
            return rfail("a failed call wrote its out-handle %s", #h);                  \
    } while (0)
#define NEW(h) ((h) = SENTINEL, &(h))

static void cubic(const float *s, float *c, void *user)
{
    (void)user;
    c[0] = 1, c[1] = s[0], c[2] = s[0] * s[0];
}

/* Nets trained, queried, saved and loaded; every handle freed at the end. */
static int scenario_body(void)
{
    wm_manifold *line, *circle, *torus, *bs, *f3, *cu, *cl;
    wm_net *net, *cnet, *knet, *back, *cback;
    wm_optimizer *opt, *copt, *kopt, *oback;
    float x[BIG * IN], s[BIG * 2], y[BIG * 3], t[N * 3], loss = -1, acc = -1, sc[2];
    float img[N * IMG * IMG], *snap;
    int32_t labels[BIG];
    size_t np;
    uint64_t seed = 5;
    tu_fill(x, BIG * IN, -1, 1, &seed);
    tu_fill(s, BIG * 2, 0, 1, &seed);
    tu_fill(t, N * 3, 0, 1, &seed);
    tu_fill(img, N * IMG * IMG, 0, 1, &seed);
    for (int i = 0; i < BIG; i++)
        labels[i] = i % 3;

    /* manifolds */
    STEP(wm_manifold_line(NEW(line)), 0, UNTOUCHED(line));
    STEP(wm_manifold_circle(NEW(circle)), 0, UNTOUCHED(circle));
    STEP(wm_manifold_product(NEW(torus), circle, circle), 0, UNTOUCHED(torus));
    STEP(wm_manifold_bspline(NEW(bs), 5, 3, 1), 0, UNTOUCHED(bs));
    STEP(wm_manifold_fourier(NEW(f3), 3), 0, UNTOUCHED(f3));
    STEP(wm_manifold_custom(NEW(cu), 1, 3, NULL, cubic, NULL), 0, UNTOUCHED(cu));
    STEP(wm_manifold_clone(NEW(cl), bs), 0, UNTOUCHED(cl));
    wm_manifold_free(cl), wm_manifold_free(f3), wm_manifold_free(cu), wm_manifold_free(line);

    /* a dense net on the torus: build, train, run */
    STEP(wm_net_create(NEW(net), torus, IN, WM_COND_MANIFOLD), 0, UNTOUCHED(net));
    STEP(wm_net_dense(net, 8, WM_ACT_TANH), 0, (void)0);
    STEP(wm_net_dense(net, 3, WM_ACT_NONE), 0, (void)0);
    STEP(wm_net_init(net, 1), 0,
         if (wm_net_params(net, NULL)) return rfail("a failed wm_net_init left parameters"));
    np = wm_net_n_params(net);
    snap = malloc(np * sizeof *snap);
    memcpy(snap, wm_net_params(net, NULL), np * sizeof *snap);
    STEP(wm_net_init(net, 2), 0,
         if (!same_params(net, snap, np)) return rfail("a failed re-init changed the net"));
    wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
    STEP(wm_optimizer_create(NEW(opt), net, &cfg), 0, UNTOUCHED(opt));
    wm_batch b = {N, x, s, labels, NULL}, big = {BIG, x, s, labels, NULL};
    for (int k = 0; k < 3; k++) {
        const wm_batch *bb = k == 1 ? &big : &b;    /* the workspace grows on the way */
        memcpy(snap, wm_net_params(net, NULL), np * sizeof *snap);
        uint64_t steps = wm_optimizer_steps(opt);
        loss = -1;
        STEP(wm_step(opt, bb, &loss), 0,
             if (!same_params(net, snap, np) || wm_optimizer_steps(opt) != steps || loss != -1)
                 return rfail("a failed wm_step changed the net, the step count or *loss"));
    }
    STEP(wm_grad(opt, &b, NULL), 0, (void)0);
    STEP(wm_apply(opt), 0, (void)0);
    /* the training controls: a schedule and a clipped step, a copy, a summary */
    STEP(wm_optimizer_set_lr(opt, 5e-4f), 0, (void)0);
    STEP(wm_optimizer_set_clip_norm(opt, 0.5f), 0, (void)0);
    STEP(wm_step(opt, &b, NULL), 0, (void)0);
    STEP(wm_optimizer_set_clip_norm(opt, 0.0f), 0, (void)0);
    wm_net *twin;
    STEP(wm_net_clone(NEW(twin), net), 0, UNTOUCHED(twin));
    if (!same_params(twin, wm_net_params(net, NULL), np))
        return rfail("the clone differs from the net");
    char table[2048];
    STEP(wm_net_summary(twin, table, sizeof table), 0, (void)0);
    wm_net_free(twin);
    wm_scratch_free();                                 /* the next wm_infer allocates again */
    for (int i = 0; i < BIG * 3; i++)
        y[i] = -7;
    STEP(wm_infer(net, x, s, 5, y), 0,
         for (int i = 0; i < 15; i++) if (y[i] != -7) return rfail("a failed wm_infer wrote out"));
    STEP(wm_infer(net, x, s, BIG, y), 0, (void)0);
    STEP(wm_evaluate(net, &big, &loss, &acc), 0, (void)0);
    STEP(wm_infer_context(net, x, labels, 6, sc), 0, (void)0);
    STEP(wm_infer_context(net, x, NULL, 6, sc), 0, (void)0);
    {   /* per sample: six lanes; a failure writes neither output */
        float sc6[6 * 2], l6[6];
        wm_batch six = {6, x, NULL, labels, NULL};
        for (int i = 0; i < 6; i++)
            l6[i] = -7;
        STEP(wm_infer_context_batch(net, &six, 0, sc6, l6), 0,
             for (int i = 0; i < 6; i++) if (l6[i] != -7) return rfail("a failed wm_infer_context_batch wrote loss_out"));
    }

    /* model files and checkpoints */
    STEP(wm_net_save(net, model_path), 1, (void)0);
    size_t len0, len1;
    unsigned char *saved = slurp(model_path, &len0), *now;
    STEP(wm_step(opt, &b, NULL), 0, (void)0);       /* now the net differs from the file */
    STEP(wm_net_save(net, model_path), 1,
         now = slurp(model_path, &len1);
         int same_ = now && len1 == len0 && memcmp(now, saved, len0) == 0; free(now);
         if (!same_) return rfail("a failed wm_net_save changed the file");
         if (!dir_clean()) return rfail("a failed wm_net_save left a temporary file"));
    free(saved);
    STEP(wm_net_save(net, link_path), 1,                /* through a symbolic link */
         if (!dir_clean()) return rfail("a failed wm_net_save left a temporary file"));
    STEP(wm_net_load(NEW(back), model_path), 1, UNTOUCHED(back));
    if (!same_params(back, wm_net_params(net, NULL), np))
        return rfail("the loaded net differs from the saved one");
    /* models in memory */
    void *mbuf = SENTINEL;
    size_t mlen = 0;
    wm_net *bback;
    STEP(wm_net_save_buffer(net, &mbuf, &mlen), 0,
         if (mbuf != SENTINEL || mlen != 0) return rfail("a failed wm_net_save_buffer wrote its outputs"));
    STEP(wm_net_load_buffer(NEW(bback), mbuf, mlen), 0, UNTOUCHED(bback));
    if (!same_params(bback, wm_net_params(net, NULL), np))
        return rfail("the net loaded from a buffer differs from the saved one");
    wm_net_free(bback);
    wm_free(mbuf);
    STEP(wm_optimizer_save(opt, ckpt_path), 1, if (!dir_clean()) return rfail("temporary left"));
    oback = SENTINEL, cback = SENTINEL;
    STEP(wm_optimizer_load(&oback, &cback, ckpt_path, NULL, NULL), 1,
         if ((void *)oback != SENTINEL || (void *)cback != SENTINEL)
             return rfail("a failed wm_optimizer_load wrote its outputs"));
    STEP(wm_step(oback, &b, NULL), 0, (void)0);

    /* a small conv net and a concat baseline */
    STEP(wm_net_create(NEW(cnet), circle, IMG * IMG, WM_COND_MANIFOLD), 0, UNTOUCHED(cnet));
    STEP(wm_net_input_shape(cnet, 1, IMG, IMG), 0, (void)0);
    STEP(wm_net_conv2d(cnet, 2, 3, 1, 1, WM_ACT_RELU), 0, (void)0);
    STEP(wm_net_maxpool(cnet, 2), 0, (void)0);
    STEP(wm_net_dense(cnet, 3, WM_ACT_NONE), 0, (void)0);
    STEP(wm_net_init(cnet, 3), 0, (void)0);
    STEP(wm_optimizer_create(NEW(copt), cnet, &cfg), 0, UNTOUCHED(copt));
    wm_batch bi = {N, img, s, labels, NULL};
    STEP(wm_step(copt, &bi, NULL), 0, (void)0);
    STEP(wm_infer(cnet, img, s, N, y), 0, (void)0);
    STEP(wm_net_create(NEW(knet), bs, IN, WM_COND_CONCAT), 0, UNTOUCHED(knet));
    STEP(wm_net_dense(knet, 3, WM_ACT_NONE), 0, (void)0);
    STEP(wm_net_set_loss(knet, WM_LOSS_MSE), 0, (void)0);
    STEP(wm_net_init(knet, 4), 0, (void)0);
    cfg = wm_opt_default(WM_OPT_MOMENTUM);
    STEP(wm_optimizer_create(NEW(kopt), knet, &cfg), 0, UNTOUCHED(kopt));
    wm_batch bk = {N, x, s, NULL, t};
    STEP(wm_step(kopt, &bk, NULL), 0, (void)0);
    wm_net *ctwin;
    STEP(wm_net_clone(NEW(ctwin), cnet), 0, UNTOUCHED(ctwin));
    wm_net_free(ctwin);
    STEP(wm_evaluate(knet, &bk, &loss, NULL), 0, (void)0);

    free(snap);
    wm_optimizer_free(opt), wm_optimizer_free(copt), wm_optimizer_free(kopt);
    wm_optimizer_free(oback);
    wm_net_free(net), wm_net_free(cnet), wm_net_free(knet), wm_net_free(back), wm_net_free(cback);
    wm_manifold_free(circle), wm_manifold_free(torus), wm_manifold_free(bs);
    return 0;
}

static void *scenario_thread(void *arg)
{
    (void)arg;
    err[0] = 0;
    scenario_body();
    return NULL;
}

/* One run with allocation number n failing (0: none), in a fresh thread. */
static void run(long n)
{
    pthread_mutex_lock(&live_lock);
    fail_at = n, n_armed = 0, injected = 0;
    pthread_mutex_unlock(&live_lock);
    fail_site = NULL;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, scenario_thread, NULL), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
}

extern void openblas_set_num_threads(int) __attribute__((weak));

static void test_every_allocation_fails_cleanly(void **state)
{
    (void)state;
    /* is the interposition live? (valgrind replaces malloc in the executable too) */
    fail_at = 1, n_armed = 0, injected = 0;
    void *(*volatile alloc)(size_t) = malloc;   /* a call the compiler cannot elide */
    arm();
    void *probe = alloc(16);
    disarm();
    fail_at = 0;
    if (probe) {
        free(probe);
        print_message("allocator interposition is not active here (valgrind?): skipped\n");
        skip();
    }
    if (openblas_set_num_threads)
        openblas_set_num_threads(1);    /* BLAS work stays in the calling thread */
    /* the product routes are measured once per process, at the first product
     * (src/blas.c; its buffer's allocation failing gives the plain routes):
     * done here, so that every run counts the same allocations */
    wmi_gemm_routes(NULL, NULL, NULL);

    run(0);                             /* warm-up: OpenBLAS buffers, and the count */
    if (err[0])
        fail_msg("the scenario fails without any allocation failing: %s", err);
    long total = n_armed;
    assert_true(total > 20);
    assert_int_equal(live_count(), 0);

    int enomem = 0;
    long n;
    for (n = 1;; n++) {
        run(n);
        if (err[0])
            fail_msg("allocation %ld of %ld (in %s): %s", n, total, fail_site ? fail_site : "?", err);
        int leaked = live_count();
        if (leaked)
            fail_msg("allocation %ld of %ld failing (in %s) leaked %d block(s)", n, total,
                     fail_site ? fail_site : "?", leaked);
        if (!injected)
            break;                      /* the whole scenario ran without reaching n */
        enomem++;
    }
    assert_true(n > total);
    print_message("oom: %ld allocation points, each failed once: %d failures reported cleanly, "
                  "0 leaks\n", total, enomem);
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    snprintf(model_path, sizeof model_path, "%s/model.wmn", dir);
    snprintf(ckpt_path, sizeof ckpt_path, "%s/ckpt.wmn", dir);
    snprintf(link_path, sizeof link_path, "%s/link.wmn", dir);
    return symlink("model.wmn", link_path);
}

static int teardown(void **state)
{
    (void)state;
    unlink(model_path);
    unlink(ckpt_path);
    unlink(link_path);
    return rmdir(dir);
}

#else /* !OOM_INTERPOSE */

static void test_every_allocation_fails_cleanly(void **state)
{
    (void)state;
    print_message("a sanitizer brings its own allocator: the allocation-failure test is skipped\n");
    skip();
}

static int setup(void **state) { (void)state; return 0; }
static int teardown(void **state) { (void)state; return 0; }

#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_allocation_fails_cleanly),
    };
    return cmocka_run_group_tests_name("oom", tests, setup, teardown);
}
