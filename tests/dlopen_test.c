/* dlopen_test.c -- the library loaded and unloaded at run time, as FFI hosts
 * and plugin systems do (issue 12, defect 11):
 *   1. a thread that called wm_infer outlives the dlclose, then exits (its
 *      scratch's exit destructor was in unmapped code: a crash);
 *   2. 1100 load/unload cycles (past PTHREAD_KEYS_MAX = 1024, where an
 *      undeleted key per load ran out), each with a thread that infers and
 *      exits, and a long-lived thread that infers in every loaded copy:
 *      the heap must not grow (it had grown 53 kB in 50 cycles, 200 MB in
 *      1300).
 * Usage: dlopen_test path/to/libwmanifold.so */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    if (failed)
        fprintf(stderr, "dlopen: FAIL %d inference(s) failed\n", failed);
    printf("dlopen: %d passed, %d failed\n", failed ? 1 : 2, failed ? 1 : 0);
    return failed ? 1 : 0;
}
