/* dlopen_test.c -- the library loaded and unloaded at run time, as FFI hosts
 * and plugin systems do (issue 12, defect 11):
 *   1. a thread that called wm_infer outlives the dlclose, then exits (its
 *      scratch's exit destructor was in unmapped code: a crash);
 *   2. 1100 load/unload cycles (past PTHREAD_KEYS_MAX = 1024, where an
 *      undeleted key per load ran out), each with a thread that infers and
 *      exits, and a long-lived thread that infers in every loaded copy:
 *      the heap must not grow (it had grown 53 kB in 50 cycles, 200 MB in
 *      1300).
 *   3. several threads at once, each loading and unloading the library in a
 *      loop (the last dlclose of one unmaps it while the others load it
 *      again, so a thread's scratch is alive at the unload in many cycles),
 *      inferring in between and sometimes giving its scratch back
 *      (wm_scratch_free) before the unload: every result as the
 *      single-threaded one, no crash, the heap does not grow;
 *   4. two copies of the library (two files) loaded at once, a thread
 *      inferring in both: unloading one leaves the other working, and the
 *      thread exits after both are gone.
 * Usage: dlopen_test path/to/libwmanifold.so */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wmanifold.h"

typedef struct {
    void *h;
    wm_status (*circle)(wm_manifold **);
    wm_status (*create)(wm_net **, const wm_manifold *, int, wm_conditioning);
    wm_status (*dense)(wm_net *, int, wm_activation);
    wm_status (*init)(wm_net *, uint64_t);
    wm_status (*infer)(const wm_net *, const float *, const float *, int, float *);
    void (*net_free)(wm_net *);
    void (*m_free)(wm_manifold *);
    wm_net *net;
} lib;

static const char *path;

static int load(lib *l)
{
    l->h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!l->h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return -1;
    }
#define SYM(field, name) *(void **)&l->field = dlsym(l->h, name)
    SYM(circle, "wm_manifold_circle");
    SYM(create, "wm_net_create");
    SYM(dense, "wm_net_dense");
    SYM(init, "wm_net_init");
    SYM(infer, "wm_infer");
    SYM(net_free, "wm_net_free");
    SYM(m_free, "wm_manifold_free");
#undef SYM
    wm_manifold *m;
    if (!l->circle || l->circle(&m) != WM_OK || l->create(&l->net, m, 32, WM_COND_MANIFOLD) != WM_OK ||
        l->dense(l->net, 64, WM_ACT_RELU) != WM_OK || l->dense(l->net, 2, WM_ACT_NONE) != WM_OK ||
        l->init(l->net, 1) != WM_OK)
        return -1;
    l->m_free(m);
    return 0;
}

static void unload(lib *l)
{
    l->net_free(l->net);
    dlclose(l->h);
}

static int infer_some(const lib *l)
{
    float x[64 * 32], s[64], y[128];
    for (int i = 0; i < 64 * 32; i++)
        x[i] = (float)(i % 7) - 3;
    for (int i = 0; i < 64; i++)
        s[i] = (float)i / 64;
    return l->infer(l->net, x, s, 64, y) == WM_OK ? 0 : -1;
}

/* A thread that infers, then waits until told to exit. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    const lib *job;               /* infer with this copy, then clear */
    int quit, failures, done;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->job && !w->quit)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->quit)
            break;
        w->failures += infer_some(w->job) != 0;
        w->job = NULL;
        w->done++;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void run_on(worker *w, const lib *l)
{
    pthread_mutex_lock(&w->mu);
    int before = w->done;
    w->job = l;
    pthread_cond_broadcast(&w->cv);
    while (w->done == before)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

static void *infer_once(void *arg) { return infer_some(arg) ? (void *)1 : NULL; }

/* 3: one of several threads that load, infer and unload in a loop. */
enum { LOOP_THREADS = 4, LOOP_CYCLES = 150 };
static float want_y[128];
static pthread_mutex_t want_lock = PTHREAD_MUTEX_INITIALIZER;
static int have_want;

static void *load_loop(void *arg)
{
    intptr_t id = (intptr_t)arg, bad = 0;
    float x[64 * 32], s[64], y[128];
    for (int i = 0; i < 64 * 32; i++)
        x[i] = (float)(i % 7) - 3;
    for (int i = 0; i < 64; i++)
        s[i] = (float)i / 64;
    for (int c = 0; c < LOOP_CYCLES; c++) {
        lib l;
        if (load(&l) != 0)
            return (void *)(intptr_t)LOOP_CYCLES;
        if (l.infer(l.net, x, s, 64, y) != WM_OK)
            bad++;
        pthread_mutex_lock(&want_lock);
        if (!have_want)
            memcpy(want_y, y, sizeof y), have_want = 1;
        bad += memcmp(want_y, y, sizeof y) != 0;
        pthread_mutex_unlock(&want_lock);
        if ((c + id) % 5 == 0) {
            void (*scratch_free)(void);
            *(void **)&scratch_free = dlsym(l.h, "wm_scratch_free");
            if (scratch_free)
                scratch_free();
            else
                bad++;
        }
        unload(&l);
    }
    return (void *)bad;
}

/* 4: a second file with the same library, loaded beside the first. */
static int copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    char buf[65536];
    size_t n;
    int ok = in && out;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    if (in)
        fclose(in);
    if (out)
        ok = fclose(out) == 0 && ok;
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s libwmanifold.so\n", argv[0]);
        return 2;
    }
    path = argv[1];
    int failed = 0;

    /* 1: a thread outlives the unload */
    worker w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0, 0};
    pthread_t th;
    pthread_create(&th, NULL, work, &w);
    lib l;
    if (load(&l) != 0)
        return 1;
    run_on(&w, &l);
    unload(&l);
    pthread_mutex_lock(&w.mu);
    w.quit = 1;
    pthread_cond_broadcast(&w.cv);
    pthread_mutex_unlock(&w.mu);
    pthread_join(th, NULL);       /* the crash was here, in the thread's exit */
    printf("dlopen: a thread that inferred outlived dlclose and exited cleanly\n");

    /* 2: many cycles, a short-lived and a long-lived thread in each */
    worker lw = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0, 0};
    pthread_create(&th, NULL, work, &lw);
    size_t heap0 = 0;
    const int cycles = 1100, settle = 50;
    for (int c = 0; c < cycles; c++) {
        if (load(&l) != 0) {
            fprintf(stderr, "dlopen: cycle %d failed to load\n", c);
            return 1;
        }
        pthread_t t;
        void *r;
        pthread_create(&t, NULL, infer_once, &l);
        pthread_join(t, &r);
        failed += r != NULL;
        run_on(&lw, &l);
        failed += infer_some(&l) != 0;
        unload(&l);
        if (c == settle - 1)
            heap0 = mallinfo2().uordblks;
    }
    pthread_mutex_lock(&lw.mu);
    lw.quit = 1;
    pthread_cond_broadcast(&lw.cv);
    pthread_mutex_unlock(&lw.mu);
    pthread_join(th, NULL);
    failed += lw.failures + w.failures;
    size_t heap1 = mallinfo2().uordblks;
    double growth = ((double)heap1 - (double)heap0) / 1e3;
    printf("dlopen: %d load/unload cycles, heap in use grew %.1f kB over the last %d\n", cycles, growth,
           cycles - settle);
    if (growth > 256) {
        fprintf(stderr, "dlopen: FAIL the heap grew %.1f kB: scratch leaks per load\n", growth);
        failed++;
    }
    int passed = failed ? 1 : 2, failed_parts = failed ? 1 : 0;
    if (failed)
        fprintf(stderr, "dlopen: FAIL %d inference(s) failed\n", failed);

    /* 3: several threads loading and unloading at once */
    {
        size_t h0 = mallinfo2().uordblks;
        pthread_t t[LOOP_THREADS];
        intptr_t bad = 0;
        for (intptr_t i = 0; i < LOOP_THREADS; i++)
            pthread_create(&t[i], NULL, load_loop, (void *)i);
        for (int i = 0; i < LOOP_THREADS; i++) {
            void *r;
            pthread_join(t[i], &r);
            bad += (intptr_t)r;
        }
        double grew = ((double)mallinfo2().uordblks - (double)h0) / 1e3;
        printf("dlopen: %d threads x %d concurrent load/infer/unload cycles: %ld bad, heap in use grew %.1f kB\n",
               LOOP_THREADS, LOOP_CYCLES, (long)bad, grew);
        if (bad || grew > 256) {
            fprintf(stderr, "dlopen: FAIL concurrent load/unload (%ld bad results, heap +%.1f kB)\n", (long)bad, grew);
            failed_parts++;
        } else {
            passed++;
        }
    }

    /* 4: two copies at once */
    {
        char second[4096];
        snprintf(second, sizeof second, "%s.dlopen_test_copy.%ld.so", "/tmp/libwmanifold", (long)getpid());
        lib a, b;
        int bad = copy_file(path, second) != 0;
        const char *first = path;
        if (!bad) {
            worker tw = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0, 0};
            pthread_create(&th, NULL, work, &tw);
            bad |= load(&a) != 0;
            path = second;
            bad |= load(&b) != 0;
            path = first;
            bad |= a.h == b.h;             /* two files: two copies */
            if (!bad) {
                run_on(&tw, &a);
                run_on(&tw, &b);
                unload(&a);                /* the thread has scratch in both */
                run_on(&tw, &b);
                bad |= infer_some(&b) != 0;
                unload(&b);
            }
            pthread_mutex_lock(&tw.mu);
            tw.quit = 1;
            pthread_cond_broadcast(&tw.cv);
            pthread_mutex_unlock(&tw.mu);
            pthread_join(th, NULL);
            bad |= tw.failures != 0;
        }
        remove(second);
        if (bad) {
            fprintf(stderr, "dlopen: FAIL two copies loaded at once\n");
            failed_parts++;
        } else {
            printf("dlopen: two copies loaded at once, one unloaded under a thread with scratch in both\n");
            passed++;
        }
    }
    printf("dlopen: %d passed, %d failed\n", passed, failed_parts);
    return failed_parts ? 1 : 0;
}
