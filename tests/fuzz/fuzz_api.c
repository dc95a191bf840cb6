/* fuzz_api.c -- libFuzzer harness for the public API's argument checking.
 *
 * The input is a little program: a sequence of opcodes, each followed by its
 * arguments, run against a small state (4 manifold slots, 2 net slots, one
 * optimizer per net). Arguments are arbitrary: ints from edge values
 * (INT_MIN, -1, 0, 1024, 1 << 24, ...) or raw 32-bit patterns, floats
 * including NaN, +-Inf, FLT_MAX and raw bit patterns, NULL pointers, empty
 * slots, labels out of range, contexts outside the domain. Every output
 * buffer the harness passes is heap-allocated at exactly the size the API
 * documents, so any write past it is caught by AddressSanitizer.
 *
 * Invariants checked after every call (a violation aborts):
 *   - the status is a wm_status; a failure has a message;
 *   - a failing call leaves every net's wm_net_params bytes unchanged, its
 *     out-handle untouched, the layer count, parameter count and optimizer
 *     step count unchanged;
 *   - calls on a const net (infer, evaluate, weights_at, control_point,
 *     layer_info, save) never change the parameters, even when they succeed;
 *   - a saved net loads back with identical parameters, from the file and
 *     from wm_net_save_buffer's bytes (which equal the file's); a truncated
 *     buffer is WM_EFORMAT.
 *
 * Valid-but-expensive arguments (a 1000-function basis, a 10^8-parameter
 * net) are mapped to small valid ones so that the fuzzer spends its time on
 * argument checking, not on arithmetic; invalid values always pass through. */
#include <float.h>
#include <limits.h>
#include <math.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

#define N_MF 4
#define N_NET 2
#define MAX_PARAMS_INIT ((size_t)1 << 18)   /* skip wm_net_init beyond this */
#define MAX_ROWS 300                        /* > the 256-row inference chunk */
#define MAX_FLOATS ((size_t)1 << 20)        /* per harness array */

/* ---- input decoding ----------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t n, i;
} rd;

static uint8_t u8(rd *r) { return r->i < r->n ? r->p[r->i++] : 0; }

static uint32_t u32(rd *r)
{
    uint32_t v = u8(r);
    v |= (uint32_t)u8(r) << 8;
    v |= (uint32_t)u8(r) << 16;
    return v | (uint32_t)u8(r) << 24;
}

static const int edge_ints[16] = {INT_MIN, -1, 0, 1, 2, 3, 31, 32, 511, 512, 1023, 1024, 1025,
                                  1 << 24, (1 << 24) + 1, INT_MAX};

/* An arbitrary int, biased towards small values and edges. */
static int any_int(rd *r)
{
    uint8_t sel = u8(r);
    switch (sel % 8) {
    case 0: return u8(r) % 8;
    case 1: return (int)u8(r) - 128;
    case 2: return edge_ints[u8(r) % 16];
    case 3: return (int)u32(r);
    default: return 1 + u8(r) % 6;
    }
}

/* An arbitrary float, biased towards ordinary values, with every special. */
static float any_float(rd *r)
{
    uint8_t sel = u8(r);
    switch (sel % 10) {
    case 0: return NAN;
    case 1: return INFINITY;
    case 2: return -INFINITY;
    case 3: {
        uint32_t v = u32(r);
        float f;
        memcpy(&f, &v, 4);
        return f;
    }
    case 4: return FLT_MAX;
    case 5: return -0.0f;
    case 6: return 1e-30f;
    case 7: return 1e30f;
    default: return ((int)u8(r) - 128) / 64.0f;
    }
}

/* A context coordinate: usually in [0,1], sometimes anything. */
static float any_context(rd *r)
{
    uint8_t sel = u8(r);
    if (sel < 224)
        return sel / 223.0f;
    return any_float(r);
}

/* ---- state ---------------------------------------------------------------------- */

typedef struct {
    int dim, K, mode;          /* mode 0: cosines, 1: dependent, 2: NaN at s > 0.5 */
} custom_user;

static struct {
    wm_manifold *mf[N_MF];
    wm_net *net[N_NET];
    wm_optimizer *opt[N_NET];
    int shaped[N_NET];           /* wm_net_input_shape succeeded: conv layers possible */
    int strategy[N_NET];         /* a conv strategy other than AUTO was set */
    custom_user users[64];
    int n_users, customs_built;
    char path[600];
} S;

static void custom_fn(const float *s, float *c, void *user)
{
    const custom_user *u = user;
    double t = 0;
    for (int d = 0; d < u->dim; d++)
        t += s[d] / (d + 1.0);
    t /= u->dim;
    for (int k = 0; k < u->K; k++) {
        if (u->mode == 1)
            c[k] = (float)(t * (k + 1));            /* linearly dependent */
        else if (u->mode == 2 && s[0] > 0.5f)
            c[k] = NAN;
        else
            c[k] = (float)cos(3.14159265358979 * k * t);
    }
}

/* Custom cosine bases of every valid (dim, K <= 8), built on first use. */
static custom_user cache_users[4][8];
static wm_manifold *cache_mf[4][8];

static wm_manifold *cached_custom(int dim, int K)
{
    if (!cache_mf[dim - 1][K - 1]) {
        custom_user *u = &cache_users[dim - 1][K - 1];
        u->dim = dim, u->K = K, u->mode = 0;
        if (wm_manifold_custom(&cache_mf[dim - 1][K - 1], dim, K, NULL, custom_fn, u) != WM_OK)
            cache_mf[dim - 1][K - 1] = NULL;
    }
    return cache_mf[dim - 1][K - 1];
}

/* Snapshot of everything a failing call must not change. */
typedef struct {
    float *params[N_NET];
    size_t len[N_NET];
    int layers[N_NET];
    size_t n_params[N_NET];
    uint64_t steps[N_NET];
} snapshot;

static void snap_take(snapshot *sn)
{
    for (int i = 0; i < N_NET; i++) {
        size_t len;
        const float *p = wm_net_params(S.net[i], &len);
        sn->len[i] = len;
        sn->params[i] = NULL;
        if (p) {
            sn->params[i] = malloc(len * sizeof(float) + 1);
            FZ_CHECK(sn->params[i], "harness out of memory");
            memcpy(sn->params[i], p, len * sizeof(float));
        }
        sn->layers[i] = wm_net_n_layers(S.net[i]);
        sn->n_params[i] = wm_net_n_params(S.net[i]);
        sn->steps[i] = wm_optimizer_steps(S.opt[i]);
    }
}

static void snap_check(const snapshot *sn, const char *what, wm_status st)
{
    for (int i = 0; i < N_NET; i++) {
        size_t len;
        const float *p = wm_net_params(S.net[i], &len);
        FZ_CHECK(len == sn->len[i] && (p == NULL) == (sn->params[i] == NULL) &&
                     (!p || memcmp(p, sn->params[i], len * sizeof(float)) == 0),
                 "%s (%s) changed net %d's parameters", what, wm_status_str(st), i);
        FZ_CHECK(wm_net_n_layers(S.net[i]) == sn->layers[i] && wm_net_n_params(S.net[i]) == sn->n_params[i],
                 "%s (%s) changed net %d's architecture", what, wm_status_str(st), i);
        FZ_CHECK(wm_optimizer_steps(S.opt[i]) == sn->steps[i],
                 "%s (%s) changed optimizer %d's step count", what, wm_status_str(st), i);
    }
}

static void snap_free(snapshot *sn)
{
    for (int i = 0; i < N_NET; i++)
        free(sn->params[i]);
}

/* Check a call: valid status; on failure (or always, for const calls) nothing changed. */
static int trace = -1;   /* WM_FUZZ_TRACE=1: print every call and its status */

static void after(const snapshot *sn, wm_status st, const char *what, int is_const)
{
    if (trace < 0)
        trace = getenv("WM_FUZZ_TRACE") && getenv("WM_FUZZ_TRACE")[0] == '1';
    if (trace)
        fprintf(stderr, "  %s -> %s%s%s\n", what, wm_status_str(st), st ? ": " : "", st ? wm_last_error() : "");
    FZ_CHECK_STATUS(st, what);
    if (st != WM_OK || is_const)
        snap_check(sn, what, st);
}

static void *sentinel_target;
#define SENTINEL ((void *)&sentinel_target)

static void set_mf(int slot, wm_manifold *m)
{
    wm_manifold_free(S.mf[slot]);
    S.mf[slot] = m;
}

static void free_net(int i)
{
    wm_optimizer_free(S.opt[i]);
    S.opt[i] = NULL;
    wm_net_free(S.net[i]);
    S.net[i] = NULL;
    S.shaped[i] = S.strategy[i] = 0;
}

static wm_manifold *mf_arg(rd *r)
{
    uint8_t k = u8(r) % (N_MF + 1);
    return k < N_MF ? S.mf[k] : NULL;
}

static int dims_of(const wm_net *net, int *in, int *out, int *dim)
{
    *in = wm_net_n_inputs(net), *out = wm_net_n_outputs(net), *dim = wm_net_context_dim(net);
    return net != NULL;
}

/* ---- batches ---------------------------------------------------------------------- */

typedef struct {
    int n;
    float *x, *s, *t;
    int32_t *labels;
    int null_x, null_s, null_labels, null_targets, null_batch, too_costly;
} hbatch;

static uint32_t lcg(uint32_t *st)
{
    *st = *st * 1664525u + 1013904223u;
    return *st >> 8;
}

/* Rows n (arbitrary: negative stays negative, large is wrapped to MAX_ROWS),
 * contents from a seed, one optional poisoned element, optional NULLs. Arrays
 * are sized exactly for max(n, 0) rows of the net's shapes. */
/* An upper bound on one row's multiply-adds through the net: K x sum of the
 * layers' n_in x n_out, times the image size for a net with convolutions. */
static double row_cost(const wm_net *net)
{
    if (!net)
        return 1;
    double c = 0, K = wm_manifold_n_basis(wm_net_manifold(net));
    for (int l = 0; l < wm_net_n_layers(net); l++) {
        int ni = 0, no = 0;
        wm_net_layer_info(net, l, &ni, &no, NULL);
        c += (double)ni * no;
    }
    for (int i = 0; i < N_NET; i++)
        if (S.net[i] == net && S.shaped[i])
            c *= wm_net_n_inputs(net) + 16;
    return K * c + wm_net_n_inputs(net) + 1;
}

#define MAX_WORK 67108864.0        /* multiply-adds per call we are willing to spend */

static void make_batch(rd *r, const wm_net *net, hbatch *b)
{
    int in = 1, out = 1, dim = 0;
    double cost = row_cost(net);
    if (net)
        dims_of(net, &in, &out, &dim);
    if (out < 1)
        out = 1;
    memset(b, 0, sizeof *b);
    int n = any_int(r);
    if (n > MAX_ROWS)
        n = n % (MAX_ROWS + 1);
    size_t widest = (size_t)(in > out ? in : out);
    if (widest < (size_t)dim)
        widest = (size_t)dim;
    while (n > 1 && ((size_t)n * widest > MAX_FLOATS || n * cost > MAX_WORK))
        n /= 2;
    b->too_costly = n > 0 && n * cost > 4 * MAX_WORK;
    b->n = n;
    size_t rows = n > 0 ? (size_t)n : 0;
    b->x = malloc(sizeof(float) * (rows * (size_t)in + 1));
    b->s = malloc(sizeof(float) * (rows * (size_t)dim + 1));
    b->t = malloc(sizeof(float) * (rows * (size_t)out + 1));
    b->labels = malloc(sizeof(int32_t) * (rows + 1));
    FZ_CHECK(b->x && b->s && b->t && b->labels, "harness out of memory");
    uint32_t seed = u8(r);
    for (size_t j = 0; j < rows * (size_t)in; j++)
        b->x[j] = (float)((int)(lcg(&seed) % 2001) - 1000) / 500.0f;
    for (size_t j = 0; j < rows * (size_t)dim; j++)
        b->s[j] = (float)(lcg(&seed) % 1001) / 1000.0f;
    for (size_t j = 0; j < rows * (size_t)out; j++)
        b->t[j] = (float)(lcg(&seed) % 1001) / 1000.0f;
    for (size_t i = 0; i < rows; i++)
        b->labels[i] = (int32_t)(i % (size_t)out);
    uint8_t poison = u8(r);
    uint32_t at = u32(r);
    switch (poison % 12) {
    case 1: if (rows > 0 && in > 0) b->x[at % (rows * in)] = any_float(r); break;
    case 2: if (rows > 0 && dim > 0) b->s[at % (rows * dim)] = any_float(r); break;
    case 3: if (rows) b->labels[at % rows] = any_int(r); break;
    case 4: if (rows > 0 && out > 0) b->t[at % (rows * out)] = any_float(r); break;
    case 5: b->null_x = 1; break;
    case 6: b->null_s = 1; break;
    case 7: b->null_labels = 1; break;
    case 8: b->null_targets = 1; break;
    case 9: b->null_batch = 1; break;
    case 10: if (rows > 0 && dim > 0) b->s[at % (rows * dim)] = any_context(r) * 3.0f - 1.0f; break;
    default: break;
    }
}

static void free_batch(hbatch *b) { free(b->x), free(b->s), free(b->t), free(b->labels); }

/* ---- operations --------------------------------------------------------------------- */

enum {
    OP_MF_SIMPLE, OP_MF_FOURIER, OP_MF_BSPLINE, OP_MF_PRODUCT, OP_MF_CUSTOM, OP_MF_QUERY,
    OP_NET_CREATE, OP_DENSE, OP_LOSS, OP_INIT, OP_INFER, OP_TRAIN, OP_OPT_CREATE, OP_APPLY,
    OP_WEIGHTS_AT, OP_CONTROL_POINT, OP_SET_PARAMS, OP_QUERIES, OP_FREE, OP_SAVE_LOAD,
    OP_INPUT_SHAPE, OP_CONV, OP_POOL, OP_CONV_STRATEGY, OP_INFER_CONTEXT, OP_CHECKPOINT, OP_CONTROLS, OP_LAYERS, N_OPS
};

static void op_manifold(rd *r, int op, snapshot *sn)
{
    int slot = u8(r) % N_MF;
    wm_manifold *m = SENTINEL;
    wm_status st;
    const char *what;
    switch (op) {
    case OP_MF_SIMPLE: {
        int which = u8(r) % 4;
        what = "wm_manifold_point/line/circle";
        st = which == 0 ? wm_manifold_point(&m) : which == 1 ? wm_manifold_line(&m)
           : which == 2 ? wm_manifold_circle(&m) : wm_manifold_point(NULL);
        break;
    }
    case OP_MF_FOURIER: {
        int h = any_int(r);
        if (h > 32 && h <= 511)
            h = 1 + h % 32;
        what = "wm_manifold_fourier";
        st = wm_manifold_fourier(&m, h);
        if (st == WM_OK)
            FZ_CHECK(wm_manifold_n_basis(m) == 2 * h + 1 && wm_manifold_dim(m) == 1, "fourier sizes");
        break;
    }
    case OP_MF_BSPLINE: {
        int n = any_int(r), deg = any_int(r), per = any_int(r);
        if (deg >= 1 && deg <= 31 && n > 48 && n <= 1024)
            n = deg + 1 + n % 16;
        what = "wm_manifold_bspline";
        st = wm_manifold_bspline(&m, n, deg, per);
        if (st == WM_OK)
            FZ_CHECK(wm_manifold_n_basis(m) == n && wm_manifold_periodic(m, 0) == (per != 0), "bspline");
        break;
    }
    case OP_MF_PRODUCT: {
        wm_manifold *a = mf_arg(r), *b = mf_arg(r);
        what = "wm_manifold_product";
        long K = a && b ? (long)wm_manifold_n_basis(a) * wm_manifold_n_basis(b) : 0;
        if (K > 256 && K <= 1024 && wm_manifold_dim(a) + wm_manifold_dim(b) <= 16)
            return;                                   /* valid but slow: skip */
        st = wm_manifold_product(&m, a, b);
        if (st == WM_OK)
            FZ_CHECK(wm_manifold_n_basis(m) == K && wm_manifold_dim(m) == wm_manifold_dim(a) + wm_manifold_dim(b),
                     "product sizes");
        break;
    }
    default: {                                        /* OP_MF_CUSTOM */
        int dim = any_int(r), n = any_int(r), mode = u8(r) % 4, pmode = u8(r);
        if (n > 8 && n <= 1024)
            n = 1 + n % 8;
        int periodic[4] = {pmode & 1, (pmode >> 1) & 1 ? -7 : 0, pmode & 4, 0};
        /* each valid custom basis costs 2^14 quadrature evaluations (~10 ms
         * here): a real one only when asked (pmode bit 7, once per input);
         * otherwise a cosine basis of that size built once and cloned */
        if (dim >= 1 && dim <= 4 && n >= 1 && n <= 8 && mode != 3) {
            if (!(pmode & 0x80) || S.customs_built++ > 0) {
                wm_manifold *c = cached_custom(dim, n);
                if (!c)
                    return;
                st = wm_manifold_clone(&m, c);
                after(sn, st, "wm_manifold_clone (custom)", 0);
                if (st == WM_OK)
                    set_mf(slot, m);
                return;
            }
        }
        custom_user *u = NULL;
        if (S.n_users < 64) {
            u = &S.users[S.n_users++];
            u->dim = dim, u->K = n, u->mode = mode;
        } else {
            mode = 3;
        }
        what = "wm_manifold_custom";
        st = wm_manifold_custom(&m, dim, n, pmode & 8 ? NULL : periodic, mode == 3 ? NULL : custom_fn, u);
        if (mode == 1 && dim >= 1 && dim <= 4 && n >= 2 && n <= 1024)
            FZ_CHECK(st != WM_OK, "a dependent basis was accepted");
        break;
    }
    }
    after(sn, st, what, 0);
    if (st == WM_OK) {
        FZ_CHECK(m && m != SENTINEL, "%s succeeded without a manifold", what);
        set_mf(slot, m);
    } else {
        FZ_CHECK(m == SENTINEL, "%s failed and wrote *out", what);
    }
}

static void op_mf_query(rd *r, snapshot *sn)
{
    wm_manifold *m = mf_arg(r);
    int dim = wm_manifold_dim(m), K = wm_manifold_n_basis(m);
    FZ_CHECK(m ? dim >= 0 && K >= 1 : dim == -1 && K == -1, "manifold sizes %d %d", dim, K);
    float *s = malloc(sizeof(float) * (dim > 0 ? dim : 1));
    float *c = malloc(sizeof(float) * (K > 0 ? K : 1));
    double *G = malloc(sizeof(double) * (K > 0 ? (size_t)K * K : 1));
    FZ_CHECK(s && c && G, "harness out of memory");
    for (int d = 0; d < dim; d++)
        s[d] = any_context(r);
    uint8_t nulls = u8(r);
    wm_status st = wm_manifold_basis(m, nulls & 1 ? NULL : s, nulls & 2 ? NULL : c);
    after(sn, st, "wm_manifold_basis", 1);
    if (st == WM_OK)
        for (int k = 0; k < K; k++)
            FZ_CHECK(isfinite(c[k]), "basis value %d is not finite", k);
    st = wm_manifold_gram(m, nulls & 4 ? NULL : G);
    after(sn, st, "wm_manifold_gram", 1);
    int d = any_int(r), p = wm_manifold_periodic(m, d);
    FZ_CHECK(p == -1 || p == 0 || p == 1, "periodic = %d", p);
    FZ_CHECK(m && d >= 0 && d < dim ? p != -1 : p == -1, "periodic(%d) = %d for dim %d", d, p, dim);
    wm_manifold *cl = SENTINEL;
    st = wm_manifold_clone(nulls & 8 ? NULL : &cl, m);
    after(sn, st, "wm_manifold_clone", 1);
    if (st == WM_OK) {
        FZ_CHECK(wm_manifold_n_basis(cl) == K && wm_manifold_dim(cl) == dim, "clone sizes");
        wm_manifold_free(cl);
    } else {
        FZ_CHECK(cl == SENTINEL, "failed clone wrote *out");
    }
    free(s), free(c), free(G);
}

static void op_net_create(rd *r, snapshot *sn)
{
    int slot = u8(r) % N_NET;
    wm_manifold *m = mf_arg(r);
    int n_in = any_int(r), cond = any_int(r);
    wm_net *net = SENTINEL;
    wm_status st = wm_net_create(&net, m, n_in, (wm_conditioning)cond);
    after(sn, st, "wm_net_create", 0);
    if (st != WM_OK) {
        FZ_CHECK(net == SENTINEL, "failed wm_net_create wrote *out");
        return;
    }
    FZ_CHECK(wm_net_n_inputs(net) == n_in && wm_net_n_layers(net) == 0 && wm_net_n_outputs(net) == 0 &&
                 wm_net_n_params(net) == 0 && wm_net_params(net, NULL) == NULL,
             "a new net's sizes");
    free_net(slot);
    S.net[slot] = net;
}

static void op_net_build(rd *r, int op, snapshot *sn)
{
    int slot = u8(r) % N_NET;
    wm_net *net = S.net[slot];
    wm_status st;
    if (op == OP_DENSE) {
        int out = any_int(r), act = any_int(r);
        st = wm_net_dense(net, out, (wm_activation)act);
        after(sn, st, "wm_net_dense", 0);
        if (st == WM_OK)
            FZ_CHECK(wm_net_n_outputs(net) == out, "n_outputs after dense");
    } else if (op == OP_LOSS) {
        st = wm_net_set_loss(net, (wm_loss)any_int(r));
        after(sn, st, "wm_net_set_loss", 0);
    } else {                                          /* OP_INIT */
        uint64_t seed = u32(r);
        seed |= (uint64_t)u32(r) << 32;
        if (wm_net_n_params(net) > MAX_PARAMS_INIT)
            return;                                   /* valid but too big to fuzz fast */
        st = wm_net_init(net, seed);
        after(sn, st, "wm_net_init", 0);
        if (st == WM_OK) {
            size_t len;
            const float *p = wm_net_params(net, &len);
            FZ_CHECK(p && len == wm_net_n_params(net), "params after init");
            for (size_t j = 0; j < len; j++)
                FZ_CHECK(isfinite(p[j]), "initial parameter %zu is not finite", j);
        }
    }
}

static void op_infer(rd *r, snapshot *sn)
{
    wm_net *net = S.net[u8(r) % N_NET];
    uint8_t mode = u8(r);
    hbatch b;
    make_batch(r, net, &b);
    if (b.too_costly) {
        free_batch(&b);
        return;
    }
    int in, out = 1, dim;
    if (net)
        dims_of(net, &in, &out, &dim);
    size_t rows = b.n > 0 ? (size_t)b.n : 0, n_out = rows * (size_t)(out > 0 ? out : 1);
    float *y = malloc(sizeof(float) * (n_out + 1));
    FZ_CHECK(y, "harness out of memory");
    memset(y, 0x5a, sizeof(float) * (n_out + 1));
    wm_status st;
    if (mode % 2 == 0) {
        st = wm_infer(net, b.null_x ? NULL : b.x, b.null_s ? NULL : b.s, b.n, b.null_labels ? NULL : y);
        after(sn, st, "wm_infer", 1);
    } else {
        size_t need = wm_infer_workspace_size(net, b.n), bytes;
        switch ((mode >> 1) % 4) {
        case 0: bytes = need; break;
        case 1: bytes = need > mode ? need - mode : 0; break;
        case 2: bytes = u32(r) % (1u << 20); break;
        default: bytes = need + 64; break;
        }
        void *ws = (mode >> 3) % 8 == 7 ? NULL : malloc(bytes ? bytes : 1);
        st = wm_infer_ws(net, b.null_x ? NULL : b.x, b.null_s ? NULL : b.s, b.n,
                         b.null_labels ? NULL : y, ws, bytes);
        after(sn, st, "wm_infer_ws", 1);
        if (bytes >= need && ws && b.n > 0 && net && wm_net_params(net, NULL) && !b.null_x &&
            !b.null_labels && (b.null_s == 0 || wm_net_context_dim(net) == 0))
            FZ_CHECK(st == WM_OK || st == WM_EINVAL || st == WM_ENUMERIC,   /* ENUMERIC: outputs overflow */
                     "wm_infer_ws with enough workspace: %s",
                     wm_status_str(st));
        free(ws);
    }
    /* (finding 7, fixed: beyond one 256-row chunk, a failure left earlier chunks written;
     * except WM_ENUMERIC, a non-finite output, known only once its chunk has run: the
     * header says the chunks of 256 before it may be written) */
    if (st != WM_OK && !(st == WM_ENUMERIC && b.n > 256))
        for (size_t j = 0; j < (n_out + 1) * sizeof(float); j++)
            FZ_CHECK(((unsigned char *)y)[j] == 0x5a, "a failed inference wrote its output");
    free(y);
    free_batch(&b);
}

static void op_train(rd *r, snapshot *sn)
{
    int slot = u8(r) % N_NET;
    wm_net *net = S.net[slot];
    wm_optimizer *opt = S.opt[slot];
    int which = u8(r) % 3;
    hbatch b;
    make_batch(r, net, &b);
    if (b.too_costly) {
        free_batch(&b);
        return;
    }
    wm_batch wb = {b.n, b.null_x ? NULL : b.x, b.null_s ? NULL : b.s, b.null_labels ? NULL : b.labels,
                   b.null_targets ? NULL : b.t};
    const wm_batch *pb = b.null_batch ? NULL : &wb;
    float loss = -12345.0f, acc = -12345.0f;
    wm_status st;
    if (which == 0) {
        st = wm_step(opt, pb, &loss);
        after(sn, st, "wm_step", 0);
    } else if (which == 1) {
        st = wm_grad(opt, pb, &loss);
        after(sn, st, "wm_grad", 1);
    } else {
        st = wm_evaluate(net, pb, &loss, &acc);
        after(sn, st, "wm_evaluate", 1);
        if (st == WM_OK)
            FZ_CHECK(acc >= 0.0f && acc <= 1.0f, "accuracy %g", acc);
        else
            FZ_CHECK(acc == -12345.0f, "failed wm_evaluate wrote *accuracy");
    }
    /* (finding 3, fixed: wm_step wrote *loss before its update failed with WM_ENUMERIC) */
    if (st != WM_OK)
        FZ_CHECK(loss == -12345.0f, "a failed call wrote *loss");
    free_batch(&b);
}

static void op_opt_create(rd *r, snapshot *sn)
{
    int slot = u8(r) % N_NET;
    wm_opt_config c = wm_opt_default((wm_opt_kind)(u8(r) % 3));
    uint8_t which = u8(r);                            /* which fields to make arbitrary */
    if (which & 1) c.kind = (wm_opt_kind)any_int(r);
    if (which & 2) c.lr = any_float(r);
    if (which & 4) c.volume = any_float(r);
    if (which & 8) c.momentum = any_float(r);
    if (which & 16) c.beta1 = any_float(r);
    if (which & 32) c.beta2 = any_float(r);
    if (which & 64) c.eps = any_float(r);
    if (which & 128) c.weight_decay = any_float(r);
    uint8_t nulls = u8(r);
    wm_optimizer *o = SENTINEL;
    wm_status st = wm_optimizer_create(nulls == 255 ? NULL : &o, S.net[slot], nulls == 254 ? NULL : &c);
    after(sn, st, "wm_optimizer_create", 0);
    if (st != WM_OK) {
        FZ_CHECK(o == SENTINEL, "failed wm_optimizer_create wrote *out");
        return;
    }
    size_t len;
    FZ_CHECK(wm_grad_buffer(o, &len) != NULL && len == wm_net_n_params(S.net[slot]), "grad buffer");
    FZ_CHECK(wm_optimizer_steps(o) == 0, "a new optimizer has steps");
    wm_optimizer_free(S.opt[slot]);
    S.opt[slot] = o;
}

static void op_apply(rd *r, snapshot *sn)
{
    int slot = u8(r) % N_NET;
    wm_optimizer *o = S.opt[slot];
    uint8_t mode = u8(r);
    if (mode & 1) {                                   /* the caller edits the gradient */
        size_t len;
        float *g = wm_grad_buffer(o, &len);
        uint32_t at = u32(r);
        float v = any_float(r);
        if (g && len)
            g[at % len] = v;
    }
    wm_status st = wm_apply(o);
    after(sn, st, "wm_apply", 0);
}

static void op_weights_at(rd *r, snapshot *sn)
{
    wm_net *net = S.net[u8(r) % N_NET];
    int layer = any_int(r), ni = 1, no = 1, dim = wm_net_context_dim(net);
    wm_status st = wm_net_layer_info(net, layer, &ni, &no, NULL);
    FZ_CHECK_STATUS(st, "wm_net_layer_info");
    /* tiny buffers: any write is an overflow; a layer too large to allocate
     * for is never initialised (MAX_PARAMS_INIT), so the call cannot write */
    if (st != WM_OK || (size_t)ni * no > MAX_FLOATS)
        ni = no = 1;
    float *s = malloc(sizeof(float) * (dim > 0 ? dim : 1));
    float *w = malloc(sizeof(float) * (size_t)ni * no), *b = malloc(sizeof(float) * (size_t)no);
    FZ_CHECK(s && w && b, "harness out of memory");
    for (int d = 0; d < dim; d++)
        s[d] = any_context(r);
    uint8_t nulls = u8(r);
    st = wm_net_weights_at(net, layer, nulls & 1 ? NULL : s, nulls & 2 ? NULL : w, nulls & 4 ? NULL : b);
    after(sn, st, "wm_net_weights_at", 1);
    free(s), free(w), free(b);
}

static void op_control_point(rd *r, snapshot *sn)
{
    wm_net *net = S.net[u8(r) % N_NET];
    int layer = any_int(r), k = any_int(r), ni = 1, no = 1;
    wm_status st = wm_net_layer_info(net, layer, &ni, &no, NULL);
    if (st != WM_OK || (size_t)ni * no > MAX_FLOATS)   /* as in op_weights_at */
        ni = no = 1;
    size_t wn = (size_t)ni * no;
    float *w = malloc(sizeof(float) * wn), *b = malloc(sizeof(float) * (size_t)no);
    FZ_CHECK(w && b, "harness out of memory");
    for (size_t j = 0; j < wn; j++)
        w[j] = 0.25f;
    for (int j = 0; j < no; j++)
        b[j] = -0.5f;
    uint8_t mode = u8(r);
    if (mode & 1) {
        if (mode & 2) w[u32(r) % wn] = any_float(r);
        if (mode & 4) b[u32(r) % (size_t)no] = any_float(r);
        st = wm_net_set_control_point(net, layer, k, mode & 8 ? NULL : w, mode & 16 ? NULL : b);
        after(sn, st, "wm_net_set_control_point", 0);
    } else {
        st = wm_net_control_point(net, layer, k, mode & 8 ? NULL : w, mode & 16 ? NULL : b);
        after(sn, st, "wm_net_control_point", 1);
    }
    free(w), free(b);
}

static void op_set_params(rd *r, snapshot *sn)
{
    wm_net *net = S.net[u8(r) % N_NET];
    size_t n = wm_net_n_params(net), len = n;
    uint8_t mode = u8(r);
    if (n > ((size_t)1 << 24))
        return;       /* an uninitialised net may count 10^9 parameters: not ours to allocate */
    if (mode % 4 == 1) len = n + 1;
    if (mode % 4 == 2) len = n ? n - 1 : 0;
    if (mode % 4 == 3) len = u32(r);
    size_t alloc_n = len <= n + 1 ? len : n + 1;      /* never read past our array */
    float *q = malloc(sizeof(float) * (alloc_n + 1));
    FZ_CHECK(q, "harness out of memory");
    for (size_t j = 0; j < alloc_n; j++)
        q[j] = (float)((int)(j % 7) - 3) / 4.0f;
    if ((mode & 4) && alloc_n)
        q[u32(r) % alloc_n] = any_float(r);
    if (len > alloc_n)
        len = alloc_n + 1;                            /* a wrong length the library must reject */
    wm_status st = wm_net_set_params(net, mode & 8 ? NULL : q, len);
    after(sn, st, "wm_net_set_params", 0);
    if (st == WM_OK)
        FZ_CHECK(memcmp(wm_net_params(net, NULL), q, sizeof(float) * len) == 0, "set_params did not set");
    free(q);
}

static void op_queries(rd *r, snapshot *sn)
{
    wm_net *net = S.net[u8(r) % N_NET];
    int layer = any_int(r), ni = -7, no = -7;
    wm_activation act = (wm_activation)-7;
    wm_status st = wm_net_layer_info(net, layer, &ni, &no, &act);
    after(sn, st, "wm_net_layer_info", 1);
    if (st == WM_OK)
        FZ_CHECK(ni >= 1 && no >= 1 && (unsigned)act <= WM_ACT_SIGMOID, "layer info %d %d %d", ni, no, act);
    else
        FZ_CHECK(ni == -7 && no == -7 && act == (wm_activation)-7, "failed layer_info wrote outputs");
    st = wm_net_layer_info(net, layer, NULL, NULL, NULL);
    after(sn, st, "wm_net_layer_info", 1);
    const wm_manifold *m = wm_net_manifold(net);
    FZ_CHECK((m != NULL) == (net != NULL), "net manifold");
    FZ_CHECK(wm_net_context_dim(net) == (net ? wm_manifold_dim(m) : -1), "context dim");
    size_t len = 99;
    const float *p = wm_net_params(net, &len);
    FZ_CHECK(p ? len == wm_net_n_params(net) : len == 0, "params view");
    FZ_CHECK(wm_infer_workspace_size(net, any_int(r)) < ((size_t)1 << 40), "workspace size");
    FZ_CHECK(strlen(wm_status_str((wm_status)any_int(r))) > 0, "status string");
}

/* The training controls, a copy and a summary, with any argument. */
static void op_controls(rd *r, snapshot *sn)
{
    int slot = u8(r) % N_NET;
    wm_optimizer *o = S.opt[slot];
    wm_net *net = S.net[slot];
    float v = any_float(r), before = wm_optimizer_lr(o);
    wm_status st = wm_optimizer_set_lr(o, v);
    after(sn, st, "wm_optimizer_set_lr", 1);
    FZ_CHECK((st == WM_OK) == (o && isfinite(v) && v >= 0), "set_lr(%g) -> %d", v, st);
    if (st == WM_OK)
        FZ_CHECK(wm_optimizer_lr(o) == v, "lr not set");
    else
        FZ_CHECK(o ? wm_optimizer_lr(o) == before : isnan(wm_optimizer_lr(o)), "failed set_lr changed lr");
    v = any_float(r);
    st = wm_optimizer_set_clip_norm(o, v);
    after(sn, st, "wm_optimizer_set_clip_norm", 1);
    FZ_CHECK((st == WM_OK) == (o && isfinite(v) && v >= 0), "set_clip_norm(%g) -> %d", v, st);
    /* the summary at any length: snprintf semantics, nothing past len */
    size_t len = u8(r) % 3 == 0 ? 0 : u32(r) % 6000;
    char *buf = malloc(len + 16);
    FZ_CHECK(buf != NULL, "harness out of memory");
    memset(buf, 'Z', len + 16);
    st = wm_net_summary(net, len || (u8(r) & 1) ? buf : NULL, len);
    after(sn, st, "wm_net_summary", 1);
    FZ_CHECK((st == WM_OK) == (net != NULL), "summary status %d", st);
    if (st == WM_OK && len > 0)
        FZ_CHECK(memchr(buf, 0, len) != NULL, "summary not terminated");
    for (size_t j = len; j < len + 16; j++)
        FZ_CHECK(buf[j] == 'Z', "summary wrote past len");
    free(buf);
    wm_net *copy = SENTINEL;
    st = wm_net_clone(&copy, net);
    after(sn, st, "wm_net_clone", 1);
    if (st == WM_OK) {
        FZ_CHECK(wm_net_n_params(copy) == wm_net_n_params(net) && wm_net_n_layers(copy) == wm_net_n_layers(net),
                 "clone differs");
        wm_net_free(copy);
    } else {
        FZ_CHECK(copy == SENTINEL, "failed clone wrote *out");
    }
    if (u8(r) & 1)
        wm_scratch_free();
}

/* Models in memory, after a successful file save of net to S.path: the
 * buffer holds the file's bytes, loads back the same parameters, and any
 * truncation of it or a NULL argument is refused without touching *out. */
static void op_buffers(wm_net *net, snapshot *sn)
{
    void *buf = SENTINEL;
    size_t len = 0;
    wm_status st = wm_net_save_buffer(net, &buf, &len);
    after(sn, st, "wm_net_save_buffer", 1);
    FZ_CHECK(st == WM_OK, "wm_net_save_buffer failed where wm_net_save worked");
    FILE *f = fopen(S.path, "rb");
    FZ_CHECK(f != NULL, "reopen %s", S.path);
    unsigned char *file = malloc(len + 1);
    FZ_CHECK(file != NULL, "harness out of memory");
    size_t flen = fread(file, 1, len + 1, f);
    fclose(f);
    FZ_CHECK(flen == len && memcmp(file, buf, len) == 0, "the buffer (%zu bytes) is not the file (%zu)", len,
             flen);
    free(file);
    wm_net *back = SENTINEL;
    st = wm_net_load_buffer(&back, buf, len);
    FZ_CHECK_STATUS(st, "wm_net_load_buffer");
    if (st == WM_OK) {
        FZ_CHECK(wm_net_n_params(back) == wm_net_n_params(net) &&
                     memcmp(wm_net_params(back, NULL), wm_net_params(net, NULL),
                            wm_net_n_params(net) * sizeof(float)) == 0,
                 "a buffer round trip changed the parameters");
        wm_net_free(back);
    } else {
        FZ_CHECK(st == WM_EINVAL && strstr(wm_last_error(), "wm_net_load_buffer_custom") && back == SENTINEL,
                 "buffer reload: %s", wm_status_str(st));
    }
    const size_t cuts[3] = {0, len / 2, len - 1};
    for (int i = 0; i < 3; i++) {
        back = SENTINEL;
        st = wm_net_load_buffer(&back, buf, cuts[i]);
        FZ_CHECK_STATUS(st, "wm_net_load_buffer (truncated)");
        FZ_CHECK(st == WM_EFORMAT && back == SENTINEL, "a buffer cut to %zu of %zu bytes: %s", cuts[i], len,
                 wm_status_str(st));
    }
    back = SENTINEL;
    FZ_CHECK(wm_net_load_buffer(&back, NULL, len) == WM_EINVAL && back == SENTINEL, "NULL buffer");
    FZ_CHECK(wm_net_save_buffer(net, NULL, &len) == WM_EINVAL, "NULL buf");
    wm_free(buf);
    snap_check(sn, "model buffers", WM_OK);
}

static void op_save_load(rd *r, snapshot *sn)
{
    wm_net *net = S.net[u8(r) % N_NET];
    wm_status st = wm_net_save(net, S.path);
    after(sn, st, "wm_net_save", 1);
    if (st != WM_OK)
        return;
    wm_net *back = SENTINEL;
    st = wm_net_load(&back, S.path);
    FZ_CHECK_STATUS(st, "wm_net_load");
    if (st != WM_OK) {        /* only a custom manifold needs wm_net_load_custom */
        FZ_CHECK(st == WM_EINVAL && strstr(wm_last_error(), "wm_net_load_custom"), "reload: %s",
                 wm_status_str(st));
        FZ_CHECK(back == SENTINEL, "failed load wrote *out");
        return;
    }
    size_t la, lb;
    const float *pa = wm_net_params(net, &la), *pb = wm_net_params(back, &lb);
    FZ_CHECK(la == lb && memcmp(pa, pb, la * sizeof(float)) == 0, "round trip changed the parameters");
    FZ_CHECK(wm_net_n_layers(back) == wm_net_n_layers(net) && wm_net_n_inputs(back) == wm_net_n_inputs(net),
             "round trip changed the architecture");
    wm_net_free(back);
    op_buffers(net, sn);
}

static void op_conv_layers(rd *r, int op, snapshot *sn)
{
    int slot = u8(r) % N_NET;
    wm_net *net = S.net[slot];
    wm_status st;
    if (op == OP_INPUT_SHAPE) {
        int c = any_int(r), h = any_int(r), w = any_int(r);
        st = wm_net_input_shape(net, c, h, w);
        after(sn, st, "wm_net_input_shape", 0);
        if (st == WM_OK) {
            FZ_CHECK((long long)c * h * w == wm_net_n_inputs(net), "input shape %d x %d x %d", c, h, w);
            S.shaped[slot] = 1;
        }
    } else if (op == OP_CONV) {
        int oc = any_int(r), k = any_int(r), stride = any_int(r), pad = any_int(r), act = any_int(r);
        st = wm_net_conv2d(net, oc, k, stride, pad, (wm_activation)act);
        after(sn, st, "wm_net_conv2d", 0);
    } else if (op == OP_POOL) {
        int which = u8(r) & 1, size = any_int(r);
        st = which ? wm_net_avgpool(net, size) : wm_net_maxpool(net, size);
        after(sn, st, which ? "wm_net_avgpool" : "wm_net_maxpool", 0);
    } else {
        int strat = any_int(r);
        st = wm_net_set_conv_strategy(net, (wm_conv_strategy)strat);
        after(sn, st, "wm_net_set_conv_strategy", 0);
        if (st == WM_OK)
            S.strategy[slot] = strat != WM_CONV_AUTO;
    }
    if (st == WM_OK && op != OP_CONV_STRATEGY)
        FZ_CHECK(wm_net_n_outputs(net) >= 1 || op == OP_INPUT_SHAPE, "a layer with no outputs");
}

/* The graph layers and per-layer placement (issue 14), with any arguments. */
static void op_graph_layers(rd *r, snapshot *sn)
{
    wm_net *net = S.net[u8(r) % N_NET];
    wm_status st;
    const char *name;
    switch (u8(r) % 7) {
    case 0: {
        int from = any_int(r), act = any_int(r);
        st = wm_net_residual(net, from, (wm_activation)act), name = "wm_net_residual";
        break;
    }
    case 1: st = wm_net_layernorm(net), name = "wm_net_layernorm"; break;
    case 2: st = wm_net_groupnorm(net, any_int(r)), name = "wm_net_groupnorm"; break;
    case 3: st = wm_net_film(net), name = "wm_net_film"; break;
    case 4: st = wm_net_dropout(net, any_float(r)), name = "wm_net_dropout"; break;
    case 5: st = wm_net_global_avgpool(net), name = "wm_net_global_avgpool"; break;
    default: {
        int layer = any_int(r), on = any_int(r);
        st = wm_net_set_layer_manifold(net, layer, on), name = "wm_net_set_layer_manifold";
        break;
    }
    }
    after(sn, st, name, 0);
    if (st == WM_OK && strcmp(name, "wm_net_set_layer_manifold") != 0)
        FZ_CHECK(wm_net_n_outputs(net) >= 1, "%s: a layer with no outputs", name);
}

static void op_infer_context(rd *r, snapshot *sn)
{
    wm_net *net = S.net[u8(r) % N_NET];
    hbatch b;
    make_batch(r, net, &b);
    int dim = wm_net_context_dim(net);
    double work = row_cost(net) * (b.n > 0 ? b.n : 0) * (256.0 + 128.0 * (dim > 0 ? dim : 0));
    if (work > 4 * MAX_WORK || b.n > 64) {
        free_batch(&b);
        return;
    }
    float *s_out = malloc(sizeof(float) * (dim > 0 ? (size_t)dim : 1));
    FZ_CHECK(s_out, "harness out of memory");
    for (int d = 0; d < (dim > 0 ? dim : 1); d++)
        s_out[d] = -3.0f;
    wm_status st = wm_infer_context(net, b.null_x ? NULL : b.x, b.null_labels ? NULL : b.labels, b.n,
                                    b.null_s ? NULL : s_out);
    after(sn, st, "wm_infer_context", 1);
    const wm_manifold *m = wm_net_manifold(net);
    if (st == WM_OK)
        for (int d = 0; d < dim; d++)
            FZ_CHECK(isfinite(s_out[d]) && (wm_manifold_periodic(m, d) == 1 || (s_out[d] >= 0 && s_out[d] <= 1)),
                     "inferred context s[%d] = %g is outside the domain", d, s_out[d]);
    else
        for (int d = 0; d < dim; d++)
            FZ_CHECK(s_out[d] == -3.0f, "a failed wm_infer_context wrote s_out");
    free(s_out);
    /* the batch form, shared or per sample, with labels, targets or neither */
    uint8_t mode = u8(r);
    int shared = mode % 3 == 2 ? (int)u8(r) - 128 : mode % 3, rows = shared == 0 && b.n > 0 ? b.n : 1;
    size_t ns = (size_t)rows * (size_t)(dim > 0 ? dim : 1);
    float *so = malloc(sizeof(float) * ns), *lo = malloc(sizeof(float) * (size_t)rows);
    FZ_CHECK(so && lo, "harness out of memory");
    for (size_t j = 0; j < ns; j++)
        so[j] = -3.0f;
    for (int j = 0; j < rows; j++)
        lo[j] = -3.0f;
    wm_batch wb = {b.n, b.null_x ? NULL : b.x, b.s, b.null_labels ? NULL : b.labels,
                   b.null_targets ? NULL : b.t};
    st = wm_infer_context_batch(net, b.null_batch ? NULL : &wb, shared, b.null_s ? NULL : so,
                                (mode & 8) ? NULL : lo);
    after(sn, st, "wm_infer_context_batch", 1);
    for (size_t j = 0; j < ns && dim > 0; j++) {
        int d = (int)(j % (size_t)dim);
        if (st == WM_OK)
            FZ_CHECK(isfinite(so[j]) && (wm_manifold_periodic(m, d) == 1 || (so[j] >= 0 && so[j] <= 1)),
                     "inferred context %zu = %g is outside the domain", j, so[j]);
        else
            FZ_CHECK(so[j] == -3.0f, "a failed wm_infer_context_batch wrote s_out");
    }
    if (st != WM_OK)
        for (int j = 0; j < rows; j++)
            FZ_CHECK(lo[j] == -3.0f, "a failed wm_infer_context_batch wrote loss_out");
    free(so), free(lo);
    free_batch(&b);
}

/* Checkpoint round trip, then one identical step on the original and on the
 * restored pair: the parameters must stay bit-identical. */
static void op_checkpoint(rd *r, snapshot *sn)
{
    int slot = u8(r) % N_NET;
    wm_optimizer *o = S.opt[slot];
    wm_net *net = S.net[slot];
    hbatch b;
    make_batch(r, net, &b);
    if (b.too_costly) {
        free_batch(&b);
        return;
    }
    wm_status st = wm_optimizer_save(o, S.path);
    after(sn, st, "wm_optimizer_save", 1);
    if (st != WM_OK) {
        free_batch(&b);
        return;
    }
    wm_optimizer *o2 = SENTINEL;
    wm_net *n2 = SENTINEL;
    st = wm_optimizer_load(&o2, &n2, S.path, NULL, NULL);
    FZ_CHECK_STATUS(st, "wm_optimizer_load");
    if (st != WM_OK) {        /* only a custom manifold needs its callback */
        FZ_CHECK(st == WM_EINVAL && strstr(wm_last_error(), "custom"), "checkpoint reload: %s",
                 wm_status_str(st));
        FZ_CHECK(o2 == SENTINEL && n2 == SENTINEL, "failed wm_optimizer_load wrote its outputs");
        free_batch(&b);
        return;
    }
    size_t la, lb;
    const float *pa = wm_net_params(net, &la), *pb = wm_net_params(n2, &lb);
    FZ_CHECK(la == lb && memcmp(pa, pb, la * sizeof(float)) == 0, "checkpoint changed the parameters");
    FZ_CHECK(wm_optimizer_steps(o) == wm_optimizer_steps(o2), "checkpoint changed the step count");
    wm_batch wb = {b.n, b.x, b.s, b.labels, b.t};
    float l1 = 0, l2 = 0;
    wm_status s1 = wm_step(o, &wb, &l1), s2 = wm_step(o2, &wb, &l2);
    FZ_CHECK(s1 == s2, "resumed training diverged: %s vs %s", wm_status_str(s1), wm_status_str(s2));
    pa = wm_net_params(net, &la), pb = wm_net_params(n2, &lb);
    /* The conv strategy is a runtime setting, not stored in the file (finding 4,
     * docs/model-format.md), so a net that set one may round differently. */
    if (!S.strategy[slot])
        FZ_CHECK(memcmp(pa, pb, la * sizeof(float)) == 0, "a step after resuming differs from one without");
    wm_optimizer_free(o2);
    wm_net_free(n2);
    free_batch(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    if (!S.path[0])
        snprintf(S.path, sizeof S.path, "%s/api.wmn", fz_scratch_dir());
    rd r = {data, len, 0};
    for (int steps = 0; r.i < r.n && steps < 64; steps++) {
        int op = u8(&r) % N_OPS;
        snapshot sn;
        snap_take(&sn);
        switch (op) {
        case OP_MF_SIMPLE: case OP_MF_FOURIER: case OP_MF_BSPLINE: case OP_MF_PRODUCT: case OP_MF_CUSTOM:
            op_manifold(&r, op, &sn);
            break;
        case OP_MF_QUERY: op_mf_query(&r, &sn); break;
        case OP_NET_CREATE: op_net_create(&r, &sn); break;
        case OP_DENSE: case OP_LOSS: case OP_INIT: op_net_build(&r, op, &sn); break;
        case OP_INFER: op_infer(&r, &sn); break;
        case OP_TRAIN: op_train(&r, &sn); break;
        case OP_OPT_CREATE: op_opt_create(&r, &sn); break;
        case OP_APPLY: op_apply(&r, &sn); break;
        case OP_WEIGHTS_AT: op_weights_at(&r, &sn); break;
        case OP_CONTROL_POINT: op_control_point(&r, &sn); break;
        case OP_SET_PARAMS: op_set_params(&r, &sn); break;
        case OP_QUERIES: op_queries(&r, &sn); break;
        case OP_FREE: {
            uint8_t k = u8(&r);
            if (k & 1)
                free_net((k >> 1) % N_NET);
            else
                set_mf((k >> 1) % N_MF, NULL);
            break;
        }
        case OP_SAVE_LOAD: op_save_load(&r, &sn); break;
        case OP_INPUT_SHAPE: case OP_CONV: case OP_POOL: case OP_CONV_STRATEGY:
            op_conv_layers(&r, op, &sn);
            break;
        case OP_INFER_CONTEXT: op_infer_context(&r, &sn); break;
        case OP_CHECKPOINT: op_checkpoint(&r, &sn); break;
        case OP_CONTROLS: op_controls(&r, &sn); break;
        case OP_LAYERS: op_graph_layers(&r, &sn); break;
        }
        snap_free(&sn);
    }
    for (int i = 0; i < N_NET; i++)
        free_net(i);
    for (int i = 0; i < N_MF; i++)
        set_mf(i, NULL);
    S.n_users = 0;
    S.customs_built = 0;
    return 0;
}
