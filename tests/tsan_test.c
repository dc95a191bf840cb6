/* tsan_test.c -- many threads calling wm_infer (and the other const-net
 * calls) on one net at once, built with -fsanitize=thread (make test-tsan).
 *
 * The header promises that functions taking a const handle may run
 * concurrently on one handle. Eight threads each run a shuffled series of
 * batches of different sizes (1 row, a shared context, per-sample contexts,
 * more than the 256-row chunk) through wm_infer, wm_infer_ws, wm_evaluate and
 * wm_net_weights_at, and compare every output bit for bit with a
 * single-threaded run made first. ThreadSanitizer reports any data race;
 * the comparison catches shared scratch being overwritten. Threads exit
 * while others still run, so the per-thread scratch is created and released
 * concurrently too. Exit status 0 when all is well. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wmanifold.h"

enum { THREADS = 8, ROUNDS = 6, IN = 12, HID = 16, OUT = 5, N_CASES = 6 };

static const int case_rows[N_CASES] = {1, 3, 17, 64, 257, 300};

typedef struct {
    int n, shared;             /* shared: every row has the same context */
    float *x, *s, *y;          /* y: the single-threaded reference */
    float loss, acc;
    int32_t *labels;
} bcase;

static wm_net *net;
static wm_manifold *torus;
static bcase cases[N_CASES * 2];
static float ref_w[HID * IN], ref_b[HID];
static const float ref_s[2] = {0.3f, 0.8f};
static int failures;
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;

static void die(const char *what, wm_status st)
{
    fprintf(stderr, "tsan_test: %s: %s (%s)\n", what, wm_status_str(st), wm_last_error());
    exit(1);
}

static void report(int thread, const char *what, int c)
{
    pthread_mutex_lock(&fail_lock);
    failures++;
    fprintf(stderr, "tsan_test: thread %d: %s differs from the single-threaded run (case %d)\n",
            thread, what, c);
    pthread_mutex_unlock(&fail_lock);
}

static uint64_t rng = 12345;
static float uniform(void)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0));
}

static void make_case(bcase *c, int n, int shared)
{
    c->n = n, c->shared = shared;
    c->x = malloc(sizeof(float) * n * IN);
    c->s = malloc(sizeof(float) * n * 2);
    c->y = malloc(sizeof(float) * n * OUT);
    c->labels = malloc(sizeof(int32_t) * n);
    if (!c->x || !c->s || !c->y || !c->labels)
        exit(1);
    for (int j = 0; j < n * IN; j++)
        c->x[j] = 2 * uniform() - 1;
    for (int i = 0; i < n; i++) {
        c->s[2 * i] = shared ? 0.25f : 3 * uniform() - 1;   /* periodic: wraps */
        c->s[2 * i + 1] = shared ? 0.6f : uniform();
        c->labels[i] = i % OUT;
    }
    wm_status st = wm_infer(net, c->x, c->s, n, c->y);
    if (st != WM_OK)
        die("reference wm_infer", st);
    wm_batch b = {n, c->x, c->s, c->labels, NULL};
    if ((st = wm_evaluate(net, &b, &c->loss, &c->acc)) != WM_OK)
        die("reference wm_evaluate", st);
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    uint64_t r = 0x9E3779B97F4A7C15ULL * (uint64_t)(id + 1);
    float *y = malloc(sizeof(float) * 300 * OUT), w[HID * IN], b[HID];
    size_t ws_bytes = wm_infer_workspace_size(net, 300);
    void *ws = malloc(ws_bytes);
    if (!y || !ws)
        exit(1);
    for (int round = 0; round < ROUNDS; round++) {
        for (int k = 0; k < N_CASES * 2; k++) {
            r = r * 6364136223846793005ULL + 1442695040888963407ULL;
            int c = (int)((r >> 33) % (N_CASES * 2));   /* a different order per thread */
            const bcase *bc = &cases[c];
            size_t bytes = sizeof(float) * (size_t)bc->n * OUT;
            wm_status st;
            switch ((k + id) % 4) {
            case 0:
            case 1:
                memset(y, 0, bytes);
                if ((st = wm_infer(net, bc->x, bc->s, bc->n, y)) != WM_OK)
                    die("wm_infer", st);
                if (memcmp(y, bc->y, bytes) != 0)
                    report(id, "wm_infer", c);
                break;
            case 2:
                memset(y, 0, bytes);
                if ((st = wm_infer_ws(net, bc->x, bc->s, bc->n, y, ws, ws_bytes)) != WM_OK)
                    die("wm_infer_ws", st);
                if (memcmp(y, bc->y, bytes) != 0)
                    report(id, "wm_infer_ws", c);
                break;
            default: {
                wm_batch b2 = {bc->n, bc->x, bc->s, bc->labels, NULL};
                float loss, acc;
                if ((st = wm_evaluate(net, &b2, &loss, &acc)) != WM_OK)
                    die("wm_evaluate", st);
                if (loss != bc->loss || acc != bc->acc)
                    report(id, "wm_evaluate", c);
                if ((st = wm_net_weights_at(net, 0, ref_s, w, b)) != WM_OK)
                    die("wm_net_weights_at", st);
                if (memcmp(w, ref_w, sizeof w) != 0 || memcmp(b, ref_b, sizeof b) != 0)
                    report(id, "wm_net_weights_at", c);
                float c9[9];
                if ((st = wm_manifold_basis(torus, ref_s, c9)) != WM_OK)
                    die("wm_manifold_basis", st);
                break;
            }
            }
        }
    }
    free(y);
    free(ws);
    return NULL;
}

int main(void)
{
    wm_manifold *circle;
    wm_status st;
    if ((st = wm_manifold_circle(&circle)) != WM_OK || (st = wm_manifold_product(&torus, circle, circle)) != WM_OK)
        die("manifolds", st);
    wm_manifold_free(circle);
    if ((st = wm_net_create(&net, torus, IN, WM_COND_MANIFOLD)) != WM_OK ||
        (st = wm_net_dense(net, HID, WM_ACT_TANH)) != WM_OK ||
        (st = wm_net_dense(net, HID, WM_ACT_RELU)) != WM_OK ||
        (st = wm_net_dense(net, OUT, WM_ACT_NONE)) != WM_OK || (st = wm_net_init(net, 99)) != WM_OK)
        die("net", st);
    /* spread the manifold so different contexts give different weights */
    size_t np = wm_net_n_params(net);
    float *q = malloc(sizeof(float) * np);
    for (size_t j = 0; j < np; j++)
        q[j] = (2 * uniform() - 1) * 0.5f;
    if ((st = wm_net_set_params(net, q, np)) != WM_OK)
        die("set_params", st);
    free(q);
    for (int c = 0; c < N_CASES; c++) {
        make_case(&cases[2 * c], case_rows[c], 0);
        make_case(&cases[2 * c + 1], case_rows[c], 1);
    }
    if ((st = wm_net_weights_at(net, 0, ref_s, ref_w, ref_b)) != WM_OK)
        die("weights_at", st);

    /* two waves: the second starts while nothing is warm in the new threads */
    for (int wave = 0; wave < 2; wave++) {
        pthread_t th[THREADS];
        for (int t = 0; t < THREADS; t++)
            if (pthread_create(&th[t], NULL, worker, (void *)(intptr_t)(t + wave * THREADS)) != 0) {
                perror("pthread_create");
                return 1;
            }
        for (int t = 0; t < THREADS; t++)
            pthread_join(th[t], NULL);
    }
    for (int c = 0; c < N_CASES * 2; c++)
        free(cases[c].x), free(cases[c].s), free(cases[c].y), free(cases[c].labels);
    wm_net_free(net);
    wm_manifold_free(torus);
    if (failures) {
        fprintf(stderr, "tsan_test: %d mismatches\n", failures);
        return 1;
    }
    printf("tsan_test: 2 waves of %d concurrent threads x %d rounds x %d batches (1..300 rows) of wm_infer, wm_infer_ws, "
           "wm_evaluate, wm_net_weights_at on one net: outputs identical to the single-threaded run\n",
           THREADS, ROUNDS, N_CASES * 2);
    return 0;
}
