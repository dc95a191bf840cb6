/* test_mpi.c -- libwmanifold_mpi on R ranks (run it under mpirun, any R >= 1).
 *
 * 1. Equivalence: every rank holds its shard (a contiguous slice, in rank
 *    order) of a global batch; wm_mpi_step must give what wm_step gives one
 *    process on the whole batch (whose fused fast paths -- rank 1, a block at
 *    a time, one GEMM for a shared context -- are in play), to the bound
 *    below, and the ranks must stay bitwise equal (wm_mpi_check) after every
 *    step. SD, momentum, Adam; even, uneven and empty shards; an MLP and a CNN.
 * 2. Collective errors: one rank's bad shard fails every rank the same way
 *    and changes nothing anywhere.
 * 3. wm_mpi_broadcast and wm_mpi_check themselves.
 * 4. Checkpoints: rank 0 saves; resuming on another number of ranks gives
 *    the parameters that continuing gives (to the bound), and on the same
 *    number bit for bit.
 *
 * The bound (docs/distributed.md derives it). Both sides compute the
 * gradient of the batch-mean loss as a sum over samples of per-sample
 * terms, in different orders and with different scalings (1/N against
 * (1/n_r)(n_r/N)), through GEMMs of different shapes. To first order in the
 * unit roundoff u = 2^-24 each computed g_j = sum_i g_ij (1 + t_ij) with
 * |t_ij| <= gamma(m) = m u / (1 - m u), m = N + R + D, where D counts the
 * rounded operations one sample's term passes through (the dot products of
 * the forward and backward passes: D = sum over layers of fan-in + fan-out
 * + 8). So from the same state
 *     |g_j(R ranks) - g_j(1 process)| <= B_j = 2 gamma(m) A_j,
 *     A_j = (1/N) sum_i |g_ij|   (per-sample gradients, measured here).
 * The update maps B to the parameters: SD lr B; momentum lr (mu |dv| + B);
 * Adam lr (dm / (sqrt v + eps) + |m| dsv / (sqrt v + eps)^2) with the
 * moment errors propagated the same way and dsv = sqrt(|dv|); plus 4 u of
 * the values written (each side rounds its own result). Over T steps the
 * per-step bounds add up (first order; the update map of a small step is
 * close to non-expansive, and the per-step check from a common state does
 * not rely on it). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wmanifold_mpi.h"

static int g_rank, g_size, g_pass, g_fail;
static const double U = 5.9604644775390625e-8;   /* 2^-24 */

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (cond)                                                          \
            g_pass++;                                                      \
        else {                                                             \
            g_fail++;                                                      \
            printf("FAIL rank %d line %d: ", g_rank, __LINE__);            \
            printf(__VA_ARGS__);                                           \
            printf(" (%s)\n", wm_last_error());                            \
            fflush(stdout);                                                \
        }                                                                  \
    } while (0)
#define OK(call) CHECK((call) == WM_OK, "%s", #call)

/* ---- deterministic data -------------------------------------------------------- */

static double uni(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*s >> 11) / 9007199254740992.0;
}

enum { NET_MLP, NET_CNN };
enum { IN_MLP = 7, IN_CNN = 36, CLASSES = 4, MAXN = 64 };

typedef struct {
    int n, in, dim;
    float x[MAXN * IN_CNN], s[MAXN * 2];
    int32_t y[MAXN];
} gbatch;

/* The global batch of step t: n samples, mixed contexts or one shared. */
static void make_batch(gbatch *b, int kind, int n, int shared, uint64_t seed, int t)
{
    uint64_t s = seed * 1000003 + (uint64_t)t * 7919 + 1;
    b->n = n, b->in = kind == NET_MLP ? IN_MLP : IN_CNN, b->dim = 1;
    for (int i = 0; i < n * b->in; i++)
        b->x[i] = (float)(2 * uni(&s) - 1);
    float s0 = (float)uni(&s);
    for (int i = 0; i < n; i++) {
        b->s[i] = shared ? s0 : (float)uni(&s);
        b->y[i] = (int32_t)(uni(&s) * CLASSES);
    }
}

static wm_batch slice(const gbatch *b, int from, int count)
{
    wm_batch w = {count, b->x + (size_t)from * b->in, b->s + (size_t)from * b->dim, b->y + from, NULL};
    return w;
}

/* Shard sizes of n samples over R ranks. even: as equal as possible;
 * uneven: rank r gets a share proportional to r + 1; empty: rank 0 gets
 * none (when R > 1), the others share evenly. */
enum { SPLIT_EVEN, SPLIT_UNEVEN, SPLIT_EMPTY };
static const char *split_name[] = {"even", "uneven", "empty rank 0"};

static void split(int n, int R, int how, int *cnt)
{
    int lo = how == SPLIT_EMPTY && R > 1 ? 1 : 0, left = n;
    for (int r = 0; r < R; r++)
        cnt[r] = 0;
    if (how == SPLIT_UNEVEN) {
        int tot = R * (R + 1) / 2;
        for (int r = 0; r < R; r++)
            left -= (cnt[r] = n * (r + 1) / tot);
    } else {
        for (int r = lo; r < R; r++)
            left -= (cnt[r] = n / (R - lo));
    }
    for (int r = R - 1; left > 0; r = r == lo ? R - 1 : r - 1)
        cnt[r]++, left--;
}

static wm_batch my_shard(const gbatch *b, int R, int rank, int how)
{
    int cnt[64], from = 0;
    split(b->n, R, how, cnt);
    for (int r = 0; r < rank; r++)
        from += cnt[r];
    return slice(b, from, cnt[rank]);
}

/* ---- nets ------------------------------------------------------------------------ */

static wm_net *make_net(int kind, uint64_t seed)
{
    wm_manifold *m = NULL;
    wm_net *net = NULL;
    if (kind == NET_MLP) {
        wm_manifold_circle(&m);
        wm_net_create(&net, m, IN_MLP, WM_COND_MANIFOLD);
        wm_net_dense(net, 12, WM_ACT_TANH);
        wm_net_dense(net, 9, WM_ACT_RELU);
        wm_net_dense(net, CLASSES, WM_ACT_NONE);
    } else {
        wm_manifold_line(&m);
        wm_net_create(&net, m, IN_CNN, WM_COND_MANIFOLD);
        wm_net_input_shape(net, 1, 6, 6);
        wm_net_conv2d(net, 3, 3, 1, 1, WM_ACT_RELU);
        wm_net_maxpool(net, 2);
        wm_net_dense(net, CLASSES, WM_ACT_NONE);
    }
    wm_manifold_free(m);
    if (wm_net_init(net, seed) != WM_OK) {
        printf("FAIL rank %d: cannot build net: %s\n", g_rank, wm_last_error());
        exit(1);
    }
    return net;
}

/* An MLP on the circle whose first or second hidden layer (both 12 -> 12)
 * sits at one point: the same parameter count either way, different blocks. */
static wm_net *placed_net(int second)
{
    wm_manifold *m = NULL;
    wm_net *net = NULL;
    wm_manifold_circle(&m);
    wm_net_create(&net, m, IN_MLP, WM_COND_MANIFOLD);
    wm_net_dense(net, 12, WM_ACT_TANH);
    wm_net_dense(net, 12, WM_ACT_TANH);
    wm_net_dense(net, 12, WM_ACT_TANH);
    wm_net_dense(net, CLASSES, WM_ACT_NONE);
    wm_net_set_layer_manifold(net, second ? 2 : 1, 0);
    wm_manifold_free(m);
    if (wm_net_init(net, 3) != WM_OK) {
        printf("FAIL rank %d: cannot build net: %s\n", g_rank, wm_last_error());
        exit(1);
    }
    return net;
}

static wm_opt_config config(wm_opt_kind k)
{
    wm_opt_config c = wm_opt_default(k);
    c.lr = k == WM_OPT_ADAM ? 0.01f : 0.05f;
    if (k == WM_OPT_MOMENTUM)
        c.weight_decay = 1e-3f;
    return c;
}

/* D of the bound: the rounded operations on one sample's path. */
static double chain_ops(const wm_net *net)
{
    double d = 0;
    for (int l = 0; l < wm_net_n_layers(net); l++) {
        int in = 0, out = 0;
        wm_net_layer_info(net, l, &in, &out, NULL);
        d += in + out + 8;
    }
    return d;
}

/* A_j = (1/N) sum_i |g_ij| and the batch gradient G_j at the net's current
 * parameters. */
static void abs_grad(const wm_net *net_now, int kind, const gbatch *b, double *A, double *G)
{
    size_t np;
    const float *q = wm_net_params(net_now, &np);
    wm_net *net = make_net(kind, 1);
    wm_net_set_params(net, q, np);
    wm_optimizer *o;
    wm_opt_config c = wm_opt_default(WM_OPT_SD);
    wm_optimizer_create(&o, net, &c);
    for (size_t j = 0; j < np; j++)
        A[j] = 0;
    for (int i = 0; i < b->n; i++) {
        wm_batch one = slice(b, i, 1);
        OK(wm_grad(o, &one, NULL));
        const float *g = wm_grad_buffer(o, NULL);
        for (size_t j = 0; j < np; j++)
            A[j] += fabs(g[j]) / b->n;
    }
    wm_batch all = slice(b, 0, b->n);
    OK(wm_grad(o, &all, NULL));
    const float *g = wm_grad_buffer(o, NULL);
    for (size_t j = 0; j < np; j++)
        G[j] = g[j];
    wm_optimizer_free(o);
    wm_net_free(net);
}

/* The per-parameter bound on |q(R ranks) - q(1 process)| after one step from
 * a common state (params q, moments st at step count t), given the gradient
 * difference bound B_j and the batch gradient G_j (itself within B_j). */
static void step_bound(const wm_opt_config *c, uint64_t t, const float *q, const float *st, size_t np,
                       const double *G, const double *B, double *bound)
{
    for (size_t j = 0; j < np; j++) {
        double e = 0;
        if (c->kind == WM_OPT_SD)
            e = c->lr * B[j];
        else if (c->kind == WM_OPT_MOMENTUM)          /* v = mu v + g + wd q; q -= lr v */
            e = c->lr * (B[j] + 4 * U * (c->momentum * fabs(st[j]) + fabs(G[j]) + B[j]));
        else {                                        /* q -= lr m^ / (sqrt(v^) + eps) */
            double b1 = c->beta1, b2 = c->beta2;
            double bc1 = 1 - pow(b1, (double)(t + 1)), bc2 = 1 - pow(b2, (double)(t + 1));
            double gmax = fabs(G[j]) + 2 * B[j], glo = fmax(fabs(G[j]) - 2 * B[j], 0);
            double vlo = (b2 * st[np + j] + (1 - b2) * glo * glo) / bc2;
            double sv = sqrt(vlo) + c->eps;               /* a lower bound on both sides' */
            double mh = (b1 * fabs(st[j]) + (1 - b1) * gmax) / bc1;
            double dm = (1 - b1) * B[j] / bc1, dv = (1 - b2) * (2 * gmax * B[j] + B[j] * B[j]) / bc2;
            double dsv = vlo > 0 ? fmin(sqrt(dv), dv / (2 * sqrt(vlo))) : sqrt(dv);
            e = c->lr * (dm / sv + mh * dsv / (sv * sv) + 8 * U * mh / sv);
        }
        bound[j] = e + 4 * U * fabs(q[j]) + 1e-30;
    }
}

/* ---- 1. equivalence ------------------------------------------------------------- */

static void equivalence(int kind, wm_opt_kind ok, int n, int shared, int how, int steps)
{
    uint64_t seed = 17 + (uint64_t)kind * 5 + (uint64_t)ok;
    wm_opt_config c = config(ok);
    wm_net *net = make_net(kind, seed), *single = make_net(kind, seed), *ref = make_net(kind, seed);
    wm_optimizer *opt, *os, *oref;
    OK(wm_optimizer_create(&opt, net, &c));
    OK(wm_optimizer_create(&os, single, &c));
    OK(wm_optimizer_create(&oref, ref, &c));
    size_t np = wm_net_n_params(net), ns = wm_optimizer_state_len(opt);
    double *A = malloc(np * sizeof *A), *B = malloc(np * sizeof *B), *bnd = malloc(np * sizeof *bnd),
           *acc = calloc(np, sizeof *acc), *G = malloc(np * sizeof *G);
    float *q0 = malloc(np * sizeof *q0), *st = malloc((ns + 1) * sizeof *st);
    double m = n + g_size + chain_ops(net), gam = m * U / (1 - m * U);
    double worst_step = 0, worst_end = 0;
    int equal_every_step = 1;
    static gbatch b;
    for (int t = 0; t < steps; t++) {
        make_batch(&b, kind, n, shared, seed, t);
        /* the common state before the step */
        memcpy(q0, wm_net_params(net, NULL), np * sizeof *q0);
        wm_optimizer_get_state(opt, st, ns);
        uint64_t t0 = wm_optimizer_steps(opt);
        abs_grad(net, kind, &b, A, G);
        for (size_t j = 0; j < np; j++)
            B[j] = 2 * gam * A[j];
        step_bound(&c, t0, q0, st, np, G, B, bnd);
        /* R ranks */
        wm_batch sh = my_shard(&b, g_size, g_rank, how);
        float lr_ = -1, l1 = -1;
        OK(wm_mpi_step(opt, &sh, MPI_COMM_WORLD, &lr_));
        if (wm_mpi_check(net, MPI_COMM_WORLD) != WM_OK)
            equal_every_step = 0;
        /* one process from the same state, and one that never shared */
        wm_batch all = slice(&b, 0, n);
        OK(wm_net_set_params(ref, q0, np));
        OK(wm_optimizer_set_state(oref, st, ns, t0));
        OK(wm_step(oref, &all, &l1));
        OK(wm_step(os, &all, NULL));
        CHECK(fabs(lr_ - l1) <= 2 * gam * fabs(l1) + 4 * U * fabs(l1),
              "step %d: loss %.9g on %d ranks vs %.9g", t, lr_, g_size, l1);
        const float *qa = wm_net_params(net, NULL), *qr = wm_net_params(ref, NULL),
                    *qs = wm_net_params(single, NULL);
        for (size_t j = 0; j < np; j++) {
            worst_step = fmax(worst_step, fabs(qa[j] - qr[j]) / bnd[j]);
            acc[j] += bnd[j];
            if (t == steps - 1)
                worst_end = fmax(worst_end, fabs(qa[j] - qs[j]) / acc[j]);
        }
    }
    const char *kn[] = {"SD", "momentum", "Adam"};
    char what[160];
    snprintf(what, sizeof what, "%s %s N=%d%s %s", kind == NET_MLP ? "mlp" : "cnn", kn[ok], n,
             shared ? " shared-s" : "", split_name[how]);
    CHECK(equal_every_step, "%s: ranks not bitwise equal after some step", what);
    CHECK(worst_step <= 1, "%s: one step from a common state: |diff| / bound = %.3g", what, worst_step);
    CHECK(worst_end <= 1, "%s: after %d steps: |diff| / accumulated bound = %.3g", what, steps, worst_end);
    if (g_rank == 0 && getenv("WM_MPI_VERBOSE"))
        printf("  %-36s max |diff|/bound: one step %.2e, after %d steps %.2e\n", what, worst_step,
               steps, worst_end);
    free(A), free(B), free(bnd), free(acc), free(G), free(q0), free(st);
    wm_optimizer_free(opt), wm_optimizer_free(os), wm_optimizer_free(oref);
    wm_net_free(net), wm_net_free(single), wm_net_free(ref);
}

/* ---- 1b. buckets ------------------------------------------------------------------ */

/* The gradient all-reduces this process started (MPI's profiling interface:
 * libwmanifold_mpi's calls to MPI_Iallreduce land here, then in MPI). */
static long g_iallreduce_floats, g_iallreduce_calls;

int MPI_Iallreduce(const void *sendbuf, void *recvbuf, int count, MPI_Datatype type, MPI_Op op,
                   MPI_Comm comm, MPI_Request *req)
{
    if (type == MPI_FLOAT)
        g_iallreduce_calls++, g_iallreduce_floats += count;
    return PMPI_Iallreduce(sendbuf, recvbuf, count, type, op, comm, req);
}

/* The buckets S implies: the layers' blocks (from wm_grad_notify of an
 * empty batch), a bucket closing at a block once it holds >= S bytes and
 * always at the first layer's. */
typedef struct {
    size_t S, pend_hi;
    long count;
} bucket_count;

static void count_bucket(void *user, int layer, size_t off, size_t len)
{
    (void)layer, (void)len;
    bucket_count *c = user;
    if (off == 0 || 4 * (c->pend_hi - off) >= c->S)
        c->count++, c->pend_hi = off;
}

static long expected_buckets(wm_optimizer *o, size_t S)
{
    wm_batch none = {0, NULL, NULL, NULL, NULL};
    bucket_count c = {S, 0, 0};
    wm_grad_buffer(o, &c.pend_hi);
    OK(wm_grad_notify(o, &none, NULL, count_bucket, &c));
    return c.count;
}

/* Bucketed steps (bucket_bytes S) against unbucketed ones (S = 0) from the
 * same start: the reduced gradient buffers after every step are bitwise
 * equal on 2 ranks (each element is the sum of the same two floats, and
 * a + b = b + a); on R > 2 ranks MPI may group a slice's sum otherwise
 * than the whole buffer's, so they agree to 2 gamma(R - 1) sum_r |x_r|
 * (x_r: rank r's weighted term, all-reduced separately here), and the
 * parameters are bitwise equal whenever the gradients are. Both runs stay
 * bitwise equal across ranks, and the number of floats all-reduced and of
 * buckets started is what S implies. */
static void buckets_equal(int kind, wm_opt_kind ok, int n, int how, size_t S, int *differ)
{
    uint64_t seed = 41 + (uint64_t)kind * 5 + (uint64_t)ok;
    wm_opt_config c = config(ok);
    wm_net *na = make_net(kind, seed), *nb = make_net(kind, seed), *nc = make_net(kind, seed);
    wm_optimizer *oa, *ob, *oc;
    OK(wm_optimizer_create(&oa, na, &c));
    OK(wm_optimizer_create(&ob, nb, &c));
    OK(wm_optimizer_create(&oc, nc, &c));
    size_t np = wm_net_n_params(na);
    double *x = malloc(np * sizeof *x), *sx = malloc(np * sizeof *sx);
    double gam = (g_size - 1) * U / (1 - (g_size - 1) * U);
    long want_calls = expected_buckets(oc, S);
    int grad_equal = 1, params_ok = 1, in_bound = 1, counts_ok = 1, same = 1;
    static gbatch b;
    for (int t = 0; t < 4; t++) {
        make_batch(&b, kind, n, 0, seed, t);
        wm_batch sh = my_shard(&b, g_size, g_rank, how);
        /* this rank's weighted term, for the bound on R > 2 ranks */
        OK(wm_net_set_params(nc, wm_net_params(na, NULL), np));
        if (sh.n > 0)
            OK(wm_grad(oc, &sh, NULL));
        else
            OK(wm_grad_zero(oc));
        const float *gc = wm_grad_buffer(oc, NULL);
        float w = (float)((double)sh.n / n);
        for (size_t j = 0; j < np; j++)
            x[j] = fabs((double)(sh.n == n ? gc[j] : gc[j] * w));
        MPI_Allreduce(x, sx, (int)np, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        float la = -1, lb = -2;
        OK(wm_mpi_step_buckets(oa, &sh, MPI_COMM_WORLD, &la, 0));
        long calls0 = g_iallreduce_calls, floats0 = g_iallreduce_floats;
        OK(wm_mpi_step_buckets(ob, &sh, MPI_COMM_WORLD, &lb, S));
        counts_ok &= g_iallreduce_calls - calls0 == want_calls &&
                     g_iallreduce_floats - floats0 == (long)np;
        const float *ga = wm_grad_buffer(oa, NULL), *gb = wm_grad_buffer(ob, NULL);
        int eq = !memcmp(ga, gb, np * sizeof *ga);
        grad_equal &= eq;
        for (size_t j = 0; j < np; j++)
            in_bound &= fabs((double)ga[j] - gb[j]) <= 2 * gam * sx[j];
        if (eq)
            params_ok &= !memcmp(wm_net_params(na, NULL), wm_net_params(nb, NULL), np * sizeof(float)) &&
                         la == lb;
        same &= wm_mpi_check(na, MPI_COMM_WORLD) == WM_OK && wm_mpi_check(nb, MPI_COMM_WORLD) == WM_OK;
        if (!eq && g_size > 2) {        /* go on from one state: compare the next step alone */
            OK(wm_net_set_params(nb, wm_net_params(na, NULL), np));
            size_t ns = wm_optimizer_state_len(oa);
            float *st = malloc((ns + 1) * sizeof *st);
            wm_optimizer_get_state(oa, st, ns);
            OK(wm_optimizer_set_state(ob, st, ns, wm_optimizer_steps(oa)));
            free(st);
        }
    }
    const char *kn[] = {"SD", "momentum", "Adam"};
    char what[160];
    snprintf(what, sizeof what, "buckets of %zu bytes: %s %s N=%d %s", S, kind == NET_MLP ? "mlp" : "cnn",
             kn[ok], n, split_name[how]);
    if (g_size == 2)
        CHECK(grad_equal, "%s: the reduced gradient differs from the unbucketed one", what);
    if (!grad_equal)
        (*differ)++;
    CHECK(in_bound, "%s: the reduced gradient is off by more than 2 gamma(R-1) sum |x_r|", what);
    CHECK(params_ok, "%s: equal gradients but different parameters or loss", what);
    CHECK(same, "%s: ranks not bitwise equal", what);
    CHECK(counts_ok, "%s: not %ld buckets covering %zu floats", what, want_calls, np);
    if (g_rank == 0 && getenv("WM_MPI_VERBOSE") && ok == WM_OPT_SD && how == SPLIT_EVEN)
        printf("  %s: %ld buckets\n", what, want_calls);
    free(x), free(sx);
    wm_optimizer_free(oa), wm_optimizer_free(ob), wm_optimizer_free(oc);
    wm_net_free(na), wm_net_free(nb), wm_net_free(nc);
}

/* ---- 2. collective errors -------------------------------------------------------- */

static void collective_errors(size_t S)
{
    wm_opt_config c = config(WM_OPT_ADAM);
    wm_net *net = make_net(NET_MLP, 5);
    wm_optimizer *opt;
    OK(wm_optimizer_create(&opt, net, &c));
    static gbatch b;
    make_batch(&b, NET_MLP, 16, 0, 5, 0);
    wm_batch sh = my_shard(&b, g_size, g_rank, SPLIT_EVEN);
    OK(wm_mpi_step_buckets(opt, &sh, MPI_COMM_WORLD, NULL, S));       /* moments are non-zero now */
    size_t np = wm_net_n_params(net), ns = wm_optimizer_state_len(opt);
    float *q0 = malloc(np * sizeof *q0), *s0 = malloc(ns * sizeof *s0), *s1 = malloc(ns * sizeof *s1);
    memcpy(q0, wm_net_params(net, NULL), np * sizeof *q0);
    wm_optimizer_get_state(opt, s0, ns);
    int last = g_size - 1;
    char want[32];
    snprintf(want, sizeof want, "rank %d:", last);
    /* the last rank's labels out of range; its NaN input; the first rank's bad n */
    for (int c2 = 0; c2 < 4; c2++) {
        wm_batch mine = my_shard(&b, g_size, g_rank, SPLIT_EVEN);
        int32_t bad_y[MAXN];
        float bad_x[MAXN * IN_MLP];
        wm_status want_st = WM_EINVAL;
        if (c2 == 0 && g_rank == last) {
            memcpy(bad_y, mine.labels, (size_t)mine.n * sizeof *bad_y);
            bad_y[mine.n - 1] = CLASSES;
            mine.labels = bad_y;
        } else if (c2 == 1 && g_rank == last) {
            memcpy(bad_x, mine.x, (size_t)mine.n * IN_MLP * sizeof *bad_x);
            bad_x[3] = NAN;
            mine.x = bad_x;
        } else if (c2 == 2 && g_rank == last) {
            mine.n = -1;
        } else if (c2 == 3) {
            mine.n = 0;                 /* nobody has samples */
            snprintf(want, sizeof want, "no rank has any samples");
        }
        float loss = 123.0f;
        wm_status st = wm_mpi_step_buckets(opt, &mine, MPI_COMM_WORLD, &loss, S);
        CHECK(st == want_st, "bad shard case %d: status %s", c2, wm_status_str(st));
        CHECK(strstr(wm_last_error(), want) != NULL, "bad shard case %d: message lacks '%s'", c2, want);
        CHECK(loss == 123.0f, "bad shard case %d: loss_out written", c2);
        CHECK(!memcmp(q0, wm_net_params(net, NULL), np * sizeof *q0), "case %d: params changed", c2);
        wm_optimizer_get_state(opt, s1, ns);
        CHECK(!memcmp(s0, s1, ns * sizeof *s0) && wm_optimizer_steps(opt) == 1,
              "case %d: optimizer state changed", c2);
    }
    /* a NULL optimizer on one rank */
    wm_status st = wm_mpi_step_buckets(g_rank == last ? NULL : opt, &sh, MPI_COMM_WORLD, NULL, S);
    CHECK(st == WM_EINVAL, "NULL optimizer on rank %d: %s", last, wm_status_str(st));
    CHECK(!memcmp(q0, wm_net_params(net, NULL), np * sizeof *q0), "NULL opt: params changed");
    if (g_size > 1) {                   /* the last rank's bucket size or net differs */
        st = wm_mpi_step_buckets(opt, &sh, MPI_COMM_WORLD, NULL, g_rank == last ? S + 8 : S);
        CHECK(st == WM_EINVAL && strstr(wm_last_error(), "bucket_bytes differs"),
              "bucket sizes differ: %s", wm_status_str(st));
        wm_net *other = make_net(NET_CNN, 5);
        wm_optimizer *oo;
        OK(wm_optimizer_create(&oo, other, &c));
        static gbatch bc;
        make_batch(&bc, NET_CNN, 16, 0, 5, 0);
        wm_batch shc = my_shard(&bc, g_size, g_rank, SPLIT_EVEN);
        st = wm_mpi_step_buckets(g_rank == last ? oo : opt, g_rank == last ? &shc : &sh, MPI_COMM_WORLD,
                                 NULL, S);
        CHECK(st == WM_EINVAL && strstr(wm_last_error(), "number of parameters"),
              "nets of different sizes: %s", wm_status_str(st));
        wm_optimizer_free(oo);
        wm_net_free(other);
        /* the same number of parameters in different layer blocks (which
         * layer sits at one point is swapped on the last rank): a bucket per
         * layer would cut different all-reduces and never match; refused
         * before any starts, on every rank */
        wm_net *pa = placed_net(g_rank == last), *pb = placed_net(g_rank != last);
        CHECK(wm_net_n_params(pa) == wm_net_n_params(pb), "placed nets: %zu vs %zu parameters",
              wm_net_n_params(pa), wm_net_n_params(pb));
        wm_optimizer *op;
        OK(wm_optimizer_create(&op, pa, &c));
        static gbatch bp;
        make_batch(&bp, NET_MLP, 16, 0, 6, 0);
        wm_batch shp = my_shard(&bp, g_size, g_rank, SPLIT_EVEN);
        float *qa = malloc(wm_net_n_params(pa) * sizeof *qa);
        memcpy(qa, wm_net_params(pa, NULL), wm_net_n_params(pa) * sizeof *qa);
        st = wm_mpi_step_buckets(op, &shp, MPI_COMM_WORLD, NULL, 1);
        CHECK(st == WM_EINVAL && strstr(wm_last_error(), "differ in their architecture"),
              "nets with the same size in other blocks: %s (%s)", wm_status_str(st), wm_last_error());
        CHECK(!memcmp(qa, wm_net_params(pa, NULL), wm_net_n_params(pa) * sizeof *qa),
              "placement mismatch: params changed");
        free(qa);
        wm_optimizer_free(op);
        wm_net_free(pa);
        wm_net_free(pb);
        CHECK(!memcmp(q0, wm_net_params(net, NULL), np * sizeof *q0), "mismatch: params changed");
        wm_optimizer_get_state(opt, s1, ns);
        CHECK(!memcmp(s0, s1, ns * sizeof *s0) && wm_optimizer_steps(opt) == 1,
              "mismatch: optimizer state changed");
    }
    /* and training goes on afterwards */
    OK(wm_mpi_step_buckets(opt, &sh, MPI_COMM_WORLD, NULL, S));
    OK(wm_mpi_check(net, MPI_COMM_WORLD));
    free(q0), free(s0), free(s1);
    wm_optimizer_free(opt);
    wm_net_free(net);
}

/* ---- 3. broadcast and check ------------------------------------------------------- */

static void broadcast_and_check(void)
{
    int root = g_size - 1;
    wm_opt_config c = config(WM_OPT_ADAM);
    wm_net *net = make_net(NET_MLP, 100 + (uint64_t)g_rank);   /* different everywhere */
    wm_optimizer *opt;
    OK(wm_optimizer_create(&opt, net, &c));
    static gbatch b;
    make_batch(&b, NET_MLP, 8, 0, 3, g_rank);
    wm_batch all = slice(&b, 0, 8);
    for (int i = 0; i <= g_rank; i++)
        OK(wm_step(opt, &all, NULL));
    wm_status st = wm_mpi_check(net, MPI_COMM_WORLD);
    CHECK(g_size == 1 ? st == WM_OK : st == WM_ESTATE && strstr(wm_last_error(), "rank 1"),
          "check of differing nets: %s", wm_status_str(st));
    /* a different architecture on one rank: refused everywhere, nothing moves */
    wm_net *other = g_rank == root && g_size > 1 ? make_net(NET_CNN, 1) : NULL;
    size_t np = wm_net_n_params(net);
    float *q0 = malloc(np * sizeof *q0);
    memcpy(q0, wm_net_params(net, NULL), np * sizeof *q0);
    if (g_size > 1) {
        wm_optimizer *o2 = NULL;
        wm_opt_config c2 = wm_opt_default(WM_OPT_ADAM);
        wm_optimizer_create(&o2, other, &c2);
        st = wm_mpi_broadcast(g_rank == root ? other : net, g_rank == root ? o2 : opt, 0, MPI_COMM_WORLD);
        CHECK(st == WM_EINVAL, "broadcast to a different architecture: %s", wm_status_str(st));
        if (g_rank != root)
            CHECK(!memcmp(q0, wm_net_params(net, NULL), np * sizeof *q0), "refused broadcast changed params");
        /* an optimizer on some ranks only */
        st = wm_mpi_broadcast(net, g_rank == 0 ? NULL : opt, root, MPI_COMM_WORLD);
        CHECK(st == WM_EINVAL, "broadcast with opt NULL on rank 0 only: %s", wm_status_str(st));
        wm_optimizer_free(o2);
    }
    st = wm_mpi_broadcast(net, opt, g_size, MPI_COMM_WORLD);
    CHECK(st == WM_EINVAL, "root out of range: %s", wm_status_str(st));
    OK(wm_mpi_broadcast(net, opt, root, MPI_COMM_WORLD));
    OK(wm_mpi_check(net, MPI_COMM_WORLD));
    CHECK(wm_optimizer_steps(opt) == (uint64_t)root + 1, "steps %llu after broadcast",
          (unsigned long long)wm_optimizer_steps(opt));
    /* the same step everywhere now gives the same parameters everywhere */
    make_batch(&b, NET_MLP, 8, 0, 3, 99);
    OK(wm_step(opt, &all, NULL));
    OK(wm_mpi_check(net, MPI_COMM_WORLD));
    /* one flipped bit on the last rank is seen and named */
    if (g_size > 1) {
        float *q = malloc(np * sizeof *q);
        memcpy(q, wm_net_params(net, NULL), np * sizeof *q);
        if (g_rank == root)
            q[np / 2] = nextafterf(q[np / 2], INFINITY);
        OK(wm_net_set_params(net, q, np));
        char want[40];
        snprintf(want, sizeof want, "rank %d's parameters differ", root);
        st = wm_mpi_check(net, MPI_COMM_WORLD);
        CHECK(st == WM_ESTATE && strstr(wm_last_error(), want), "one ulp on rank %d: %s", root,
              wm_status_str(st));
        free(q);
    }
    free(q0);
    wm_optimizer_free(opt);
    wm_net_free(net), wm_net_free(other);
}

/* ---- 4. checkpoints -------------------------------------------------------------- */

/* Train `steps` steps of the global batch stream from step t0 on comm.
 * With bound != NULL, also accumulate the momentum bound per parameter
 * against any other split of the same batches from the same state: each
 * side is within gamma(m) A_j of the exact gradient, so they differ by
 * B_j = 2 gamma(m) A_j; the velocity difference obeys dv <- mu dv + B
 * (+ rounding of v) and the parameters move by lr dv (+ 4 u |q|). */
static void train(wm_optimizer *opt, const wm_net *net, MPI_Comm comm, int t0, int steps,
                  double *bound)
{
    int r, R;
    MPI_Comm_rank(comm, &r);
    MPI_Comm_size(comm, &R);
    wm_opt_config c = config(WM_OPT_MOMENTUM);
    size_t np = wm_net_n_params(net), ns = wm_optimizer_state_len(opt);
    double *A = bound ? malloc(np * sizeof *A) : NULL, *G = bound ? malloc(np * sizeof *G) : NULL,
           *dv = bound ? calloc(np, sizeof *dv) : NULL;
    float *v = bound ? malloc(ns * sizeof *v) : NULL;
    double m = 30 + g_size + chain_ops(net), gam = m * U / (1 - m * U);
    static gbatch b;
    for (int t = t0; t < t0 + steps; t++) {
        make_batch(&b, NET_MLP, 30, 0, 77, t);
        if (bound) {
            abs_grad(net, NET_MLP, &b, A, G);
            wm_optimizer_get_state(opt, v, ns);
            const float *q = wm_net_params(net, NULL);
            for (size_t j = 0; j < np; j++) {
                double B = 2 * gam * A[j];
                dv[j] = c.momentum * dv[j] + B + 4 * U * (c.momentum * fabs(v[j]) + fabs(G[j]) + B);
                bound[j] += c.lr * dv[j] + 4 * U * fabs(q[j]);
            }
        }
        wm_batch sh = my_shard(&b, R, r, SPLIT_UNEVEN);
        OK(wm_mpi_step(opt, &sh, comm, NULL));
    }
    free(A), free(G), free(dv), free(v);
}

static void checkpoints(void)
{
    const int T1 = 4, T2 = 5;
    wm_opt_config c = config(WM_OPT_MOMENTUM);
    wm_net *net = make_net(NET_MLP, 8);
    wm_optimizer *opt;
    OK(wm_optimizer_create(&opt, net, &c));
    char path[64] = "";
    if (g_rank == 0)
        snprintf(path, sizeof path, "/tmp/wm_mpi_ckpt_%ld.wmn", (long)getpid());
    MPI_Bcast(path, sizeof path, MPI_CHAR, 0, MPI_COMM_WORLD);
    train(opt, net, MPI_COMM_WORLD, 0, T1, NULL);
    if (g_rank == 0)
        OK(wm_optimizer_save(opt, path));
    MPI_Barrier(MPI_COMM_WORLD);
    size_t np = wm_net_n_params(net);
    double *bound = calloc(np, sizeof *bound);
    train(opt, net, MPI_COMM_WORLD, T1, T2, bound);         /* continuing */
    const float *qc = wm_net_params(net, NULL);
    /* resume on R - 1 ranks (1 when R = 1) and on R */
    int sizes[2] = {g_size > 1 ? g_size - 1 : 1, g_size};
    for (int k = 0; k < 2; k++) {
        MPI_Comm sub;
        MPI_Comm_split(MPI_COMM_WORLD, g_rank < sizes[k] ? 0 : MPI_UNDEFINED, g_rank, &sub);
        if (sub == MPI_COMM_NULL)
            continue;
        wm_net *n2 = NULL;
        wm_optimizer *o2 = NULL;
        if (g_rank == 0) {
            OK(wm_optimizer_load(&o2, &n2, path, NULL, NULL));
        } else {                                           /* same architecture, any values */
            n2 = make_net(NET_MLP, 999);
            OK(wm_optimizer_create(&o2, n2, &c));
        }
        OK(wm_mpi_broadcast(n2, o2, 0, sub));
        train(o2, n2, sub, T1, T2, NULL);
        const float *qr = wm_net_params(n2, NULL);
        if (sizes[k] == g_size)
            CHECK(!memcmp(qr, qc, np * sizeof *qr), "resumed on %d ranks: not bitwise equal", g_size);
        double worst = 0, diff = 0;
        for (size_t j = 0; j < np; j++) {
            worst = fmax(worst, fabs(qr[j] - qc[j]) / (bound[j] + 1e-30));
            diff = fmax(diff, fabs(qr[j] - qc[j]));
        }
        CHECK(worst <= 1, "resumed on %d of %d ranks: |diff| / bound = %.3g", sizes[k], g_size, worst);
        if (g_rank == 0 && getenv("WM_MPI_VERBOSE"))
            printf("  checkpoint resumed on %d ranks (saved on %d): max |diff| %.3g, "
                   "max |diff|/bound %.3g\n", sizes[k], g_size, diff, worst);
        wm_optimizer_free(o2);
        wm_net_free(n2);
        MPI_Comm_free(&sub);
    }
    free(bound);
    MPI_Barrier(MPI_COMM_WORLD);
    if (g_rank == 0)
        unlink(path);
    wm_optimizer_free(opt);
    wm_net_free(net);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    if (g_size > 64) {
        if (g_rank == 0)
            printf("test_mpi: at most 64 ranks\n");
        MPI_Finalize();
        return 1;
    }
    /* batches: 24 mixed (wm_step's block-at-a-time path), 40 sharing one
     * context (one GEMM for all basis points), 1 (rank 1: every other rank
     * empty), 48 mixed (the stored-gradient path) */
    const int ns[4] = {24, 40, 1, 48}, shared[4] = {0, 1, 0, 0};
    for (int kind = NET_MLP; kind <= NET_CNN; kind++)
        for (int k = WM_OPT_SD; k <= WM_OPT_ADAM; k++)
            for (int bi = 0; bi < 4; bi++)
                for (int how = SPLIT_EVEN; how <= SPLIT_EMPTY; how++) {
                    if (bi == 2 && how != SPLIT_EVEN)
                        continue;       /* one sample: already all but one rank empty */
                    equivalence(kind, (wm_opt_kind)k, ns[bi], shared[bi], how, 6);
                }
    /* buckets: 1 byte (one per layer), 1024 bytes (the MLP's blocks are
     * 480, 1404 and 1152 bytes from the last layer: two buckets, {2, 1}
     * and {0}), 1500 (the same two), 2000 (one), the default and SIZE_MAX
     * (one for the whole buffer, started after the first layer's block) */
    const size_t bsz[] = {1, 1024, 1500, 2000, WM_MPI_BUCKET_BYTES, SIZE_MAX};
    int differ = 0, cases = 0;
    for (int kind = NET_MLP; kind <= NET_CNN; kind++)
        for (int k = WM_OPT_SD; k <= WM_OPT_ADAM; k++)
            for (int how = SPLIT_EVEN; how <= SPLIT_EMPTY; how++)
                for (int si = 0; si < 6; si++, cases++)
                    buckets_equal(kind, (wm_opt_kind)k, 24, how, bsz[si], &differ);
    if (g_rank == 0 && getenv("WM_MPI_VERBOSE"))
        printf("  buckets: %d of %d cases not bitwise equal to one all-reduce (%d ranks)\n", differ,
               cases, g_size);
    const size_t esz[] = {0, 4, 1024, SIZE_MAX};
    for (int si = 0; si < 4; si++)
        collective_errors(esz[si]);
    broadcast_and_check();
    checkpoints();
    int tot[2] = {g_pass, g_fail}, all[2];
    MPI_Reduce(tot, all, 2, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
    if (g_rank == 0)
        printf("mpi (%d ranks): %d passed, %d failed\n", g_size, all[0], all[1]);
    MPI_Finalize();
    return g_fail ? 1 : 0;
}
