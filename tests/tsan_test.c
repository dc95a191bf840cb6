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
 * concurrently too. Exit status 0 when all is well.
 *
 * Every other const-net call runs in the mix too (wm_infer_context_batch,
 * wm_net_save_buffer, wm_net_clone and inference on the clone,
 * wm_net_summary, wm_net_control_point, wm_net_params, wm_net_layer_info,
 * wm_net_context_range, wm_manifold_gram on the net's manifold), and a
 * second net with every layer kind (conv2d, groupnorm, FiLM, residual,
 * maxpool, layernorm, dropout, global average pooling, a point layer) infers
 * beside the first, each checked against its single-threaded result. */
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

/* the other const calls' single-threaded results */
enum { CIN = 2, CH = 6, CIMG = CIN * CH * CH, CN = 7 };
static wm_net *cnet;                     /* every layer kind */
static float cx[CN * CIMG], cs[CN * 2], cy[CN * OUT];
static void *ref_bytes;
static size_t ref_len;
static char ref_summary[8192];
static float ref_fit_s[2], ref_fit_loss, ref_cp_w[HID * IN], ref_cp_b[HID];
static double ref_gram[81];
static const float *ref_params;
static size_t ref_n_params;

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

/* The const calls besides inference, and the net of every layer kind. */
static void others(int id, int c)
{
    wm_status st;
    float y[CN * OUT];
    memset(y, 0, sizeof y);
    if ((st = wm_infer(cnet, cx, cs, CN, y)) != WM_OK)
        die("wm_infer (every layer kind)", st);
    if (memcmp(y, cy, sizeof y) != 0)
        report(id, "wm_infer on the net of every layer kind", c);
    const bcase *bc = &cases[2];           /* 3 rows, own contexts */
    wm_batch b = {bc->n, bc->x, NULL, bc->labels, NULL};
    float fs[2], fl;
    if ((st = wm_infer_context_batch(net, &b, 1, fs, &fl)) != WM_OK)
        die("wm_infer_context_batch", st);
    if (memcmp(fs, ref_fit_s, sizeof fs) != 0 || fl != ref_fit_loss)
        report(id, "wm_infer_context_batch", c);
    void *bytes;
    size_t len;
    if ((st = wm_net_save_buffer(net, &bytes, &len)) != WM_OK)
        die("wm_net_save_buffer", st);
    if (len != ref_len || memcmp(bytes, ref_bytes, len) != 0)
        report(id, "wm_net_save_buffer", c);
    wm_free(bytes);
    wm_net *twin;
    if ((st = wm_net_clone(&twin, net)) != WM_OK)
        die("wm_net_clone", st);
    float ty[3 * OUT];
    if ((st = wm_infer(twin, bc->x, bc->s, bc->n, ty)) != WM_OK)
        die("wm_infer on a clone", st);
    if (memcmp(ty, bc->y, sizeof ty) != 0)
        report(id, "wm_net_clone", c);
    wm_net_free(twin);
    char text[sizeof ref_summary];
    if ((st = wm_net_summary(net, text, sizeof text)) != WM_OK)
        die("wm_net_summary", st);
    if (strcmp(text, ref_summary) != 0)
        report(id, "wm_net_summary", c);
    float w[HID * IN], bb[HID];
    if ((st = wm_net_control_point(net, 0, 1, w, bb)) != WM_OK)
        die("wm_net_control_point", st);
    if (memcmp(w, ref_cp_w, sizeof w) != 0 || memcmp(bb, ref_cp_b, sizeof bb) != 0)
        report(id, "wm_net_control_point", c);
    size_t np;
    if (wm_net_params(net, &np) != ref_params || np != ref_n_params)
        report(id, "wm_net_params", c);
    int n_in, n_out;
    wm_activation act;
    if ((st = wm_net_layer_info(net, 1, &n_in, &n_out, &act)) != WM_OK)
        die("wm_net_layer_info", st);
    if (n_in != HID || n_out != HID || act != WM_ACT_RELU)
        report(id, "wm_net_layer_info", c);
    float lo, hi;
    if ((st = wm_net_context_range(net, 1, &lo, &hi)) != WM_OK)
        die("wm_net_context_range", st);
    if (lo != 0 || hi != 1)
        report(id, "wm_net_context_range", c);
    double g[81];
    if ((st = wm_manifold_gram(wm_net_manifold(net), g)) != WM_OK)
        die("wm_manifold_gram", st);
    if (memcmp(g, ref_gram, sizeof g) != 0)
        report(id, "wm_manifold_gram", c);
}

/* The single-threaded results of others(). */
static void others_reference(void)
{
    wm_status st;
    if ((st = wm_net_create(&cnet, torus, CIMG, WM_COND_MANIFOLD)) != WM_OK ||
        (st = wm_net_input_shape(cnet, CIN, CH, CH)) != WM_OK ||
        (st = wm_net_conv2d(cnet, 4, 3, 1, 1, WM_ACT_RELU)) != WM_OK ||
        (st = wm_net_groupnorm(cnet, 2)) != WM_OK || (st = wm_net_film(cnet)) != WM_OK ||
        (st = wm_net_conv2d(cnet, 4, 3, 1, 1, WM_ACT_NONE)) != WM_OK ||
        (st = wm_net_residual(cnet, 0, WM_ACT_RELU)) != WM_OK || (st = wm_net_maxpool(cnet, 2)) != WM_OK ||
        (st = wm_net_avgpool(cnet, 3)) != WM_OK || (st = wm_net_dense(cnet, 8, WM_ACT_SIGMOID)) != WM_OK ||
        (st = wm_net_layernorm(cnet)) != WM_OK || (st = wm_net_dropout(cnet, 0.25f)) != WM_OK ||
        (st = wm_net_dense(cnet, OUT, WM_ACT_NONE)) != WM_OK ||
        (st = wm_net_set_layer_manifold(cnet, 5, 0)) != WM_OK || (st = wm_net_init(cnet, 7)) != WM_OK)
        die("the net of every layer kind", st);
    wm_net *gp;                            /* global average pooling, in its own small net */
    if ((st = wm_net_create(&gp, torus, CIMG, WM_COND_MANIFOLD)) != WM_OK ||
        (st = wm_net_input_shape(gp, CIN, CH, CH)) != WM_OK || (st = wm_net_global_avgpool(gp)) != WM_OK ||
        (st = wm_net_dense(gp, OUT, WM_ACT_NONE)) != WM_OK || (st = wm_net_init(gp, 1)) != WM_OK)
        die("global average pooling net", st);
    wm_net_free(gp);
    for (int j = 0; j < CN * CIMG; j++)
        cx[j] = 2 * uniform() - 1;
    for (int j = 0; j < CN * 2; j++)
        cs[j] = uniform();
    if ((st = wm_infer(cnet, cx, cs, CN, cy)) != WM_OK)
        die("reference wm_infer (every layer kind)", st);
    const bcase *bc = &cases[2];
    wm_batch b = {bc->n, bc->x, NULL, bc->labels, NULL};
    if ((st = wm_infer_context_batch(net, &b, 1, ref_fit_s, &ref_fit_loss)) != WM_OK)
        die("reference wm_infer_context_batch", st);
    if ((st = wm_net_save_buffer(net, &ref_bytes, &ref_len)) != WM_OK)
        die("reference wm_net_save_buffer", st);
    if ((st = wm_net_summary(net, ref_summary, sizeof ref_summary)) != WM_OK)
        die("reference wm_net_summary", st);
    if ((st = wm_net_control_point(net, 0, 1, ref_cp_w, ref_cp_b)) != WM_OK)
        die("reference wm_net_control_point", st);
    if ((st = wm_manifold_gram(wm_net_manifold(net), ref_gram)) != WM_OK)
        die("reference wm_manifold_gram", st);
    ref_params = wm_net_params(net, &ref_n_params);
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
            case 3:
                if (k % 3 == 0) {
                    others(id, c);
                    break;
                }
                /* fall through */
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
    others_reference();

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
    wm_net_free(cnet);
    wm_free(ref_bytes);
    wm_manifold_free(torus);
    if (failures) {
        fprintf(stderr, "tsan_test: %d mismatches\n", failures);
        return 1;
    }
    printf("tsan_test: 2 waves of %d concurrent threads x %d rounds x %d batches (1..300 rows) of wm_infer, wm_infer_ws, "
           "wm_evaluate, wm_net_weights_at and every other const call on one net, and inference on a net of "
           "every layer kind: outputs identical to the single-threaded run\n",
           THREADS, ROUNDS, N_CASES * 2);
    return 0;
}
