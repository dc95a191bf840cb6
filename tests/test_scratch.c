/* test_scratch.c -- the per-thread scratch behind wm_infer and wm_evaluate
 * (src/scratch.c): reentry from a basis callback, giving memory back, and
 * many short-lived threads with large blocks. */
#include <pthread.h>
#include <unistd.h>

#include "testutil.h"

/* Resident set size in bytes, from /proc/self/statm. */
static size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* A net whose inference scratch for 256 samples is about 19 MB. */
static wm_net *wide_net(void)
{
    wm_manifold *m = tu_manifold("circle");
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 64, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(net, 4096, WM_ACT_RELU));
    WM_OK_OR_FAIL(wm_net_dense(net, 2, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    wm_manifold_free(m);
    return net;
}

static void *infer_256(void *arg)
{
    wm_net *net = arg;
    static _Thread_local float x[256 * 64], s[256], y[512];
    for (int i = 0; i < 256; i++)
        s[i] = (float)i / 256;
    if (wm_infer(net, x, s, 256, y) != WM_OK)
        return (void *)1;
    return NULL;
}

/* 200 short-lived threads with ~19 MB of scratch each: after they exit the
 * memory is back (from malloc, glibc's arenas had kept 89-126 MB). */
static void test_exited_threads_give_scratch_back(void **state)
{
    (void)state;
    wm_net *net = wide_net();
    size_t ws = wm_infer_workspace_size(net, 256);
    assert_true(ws > ((size_t)16 << 20));
    assert_null(infer_256(net));              /* warm up BLAS and this thread */
    wm_scratch_free();
    size_t before = rss_bytes();
    for (int round = 0; round < 25; round++) {
        pthread_t th[8];
        for (int t = 0; t < 8; t++)
            assert_int_equal(pthread_create(&th[t], NULL, infer_256, net), 0);
        for (int t = 0; t < 8; t++) {
            void *r;
            pthread_join(th[t], &r);
            assert_null(r);
        }
    }
    size_t after = rss_bytes();
    if (after > before + ((size_t)24 << 20))
        fail_msg("RSS grew by %.1f MB after 200 threads had exited", (after - (double)before) / 1e6);
    wm_net_free(net);
}

/* wm_scratch_free returns a long-lived thread's block. */
static void test_scratch_free_returns_memory(void **state)
{
    (void)state;
    wm_net *net = wide_net();
    wm_scratch_free();
    size_t base = rss_bytes();
    assert_null(infer_256(net));
    size_t used = rss_bytes();
    wm_scratch_free();
    size_t freed = rss_bytes();
    assert_true(used > base + ((size_t)8 << 20));     /* the block was resident */
    if (freed > base + ((size_t)4 << 20))
        fail_msg("RSS %.1f MB after wm_scratch_free, %.1f MB before the call", freed / 1e6, base / 1e6);
    assert_null(infer_256(net));                      /* and it comes back */
    wm_scratch_free();
    wm_scratch_free();                                /* twice: harmless */
    wm_net_free(net);
}

/* A basis callback that calls back into the library on its own thread. */
typedef struct {
    const wm_net *inner;
    wm_status seen;
    int calls;
} reentry;

static void reentrant_basis(const float *s, float *c, void *user)
{
    reentry *r = user;
    float x[2] = {1, 2}, y[2];
    if (r->inner && r->calls++ < 4)
        r->seen = wm_infer(r->inner, x, NULL, 1, y);
    c[0] = 1.0f;
    c[1] = s[0];
}

static void test_callback_cannot_share_the_callers_scratch(void **state)
{
    (void)state;
    wm_manifold *pt = tu_manifold("point");
    wm_net *inner;
    WM_OK_OR_FAIL(wm_net_create(&inner, pt, 2, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(inner, 2, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(inner, 1));
    reentry r = {NULL, WM_OK, 0};
    wm_manifold *m;
    WM_OK_OR_FAIL(wm_manifold_custom(&m, 1, 2, NULL, reentrant_basis, &r));
    wm_net *outer;
    WM_OK_OR_FAIL(wm_net_create(&outer, m, 3, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(outer, 2, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(outer, 1));
    float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, s[3] = {0.1f, 0.5f, 0.9f}, y[6], y2[6];
    WM_OK_OR_FAIL(wm_infer(outer, x, s, 3, y));       /* no reentry: the reference */
    r.inner = inner;
    WM_OK_OR_FAIL(wm_infer(outer, x, s, 3, y2));
    assert_int_equal(r.seen, WM_ESTATE);                /* the nested call was refused */
    assert_memory_equal(y, y2, sizeof y);               /* and the outer one is intact */
    /* the callback's thread is usable again afterwards */
    float xi[2] = {1, 2}, yi[2];
    WM_OK_OR_FAIL(wm_infer(inner, xi, NULL, 1, yi));
    wm_net_free(outer), wm_net_free(inner);
    wm_manifold_free(m), wm_manifold_free(pt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exited_threads_give_scratch_back),
        cmocka_unit_test(test_scratch_free_returns_memory),
        cmocka_unit_test(test_callback_cannot_share_the_callers_scratch),
    };
    return cmocka_run_group_tests_name("scratch", tests, NULL, NULL);
}
