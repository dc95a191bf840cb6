/* wmanifold_mpi.c -- data-parallel training on MPI (include/wmanifold_mpi.h).
 *
 * Built on the public API of libwmanifold only: the parameters through
 * wm_net_params / wm_net_set_params, the optimizer's moments through
 * wm_optimizer_get_state / set_state, the gradient through wm_grad_buffer.
 *
 * Collective errors. Every call first validates locally, then the ranks
 * agree on one outcome with a single MPI_Allreduce of a 4-double record
 * {samples, samples x loss, key, status} under an operation that sums the
 * first two and keeps the record of the smallest key (key = the rank if it
 * failed, else the communicator's size). Nothing changes before that
 * agreement; on failure the failing rank broadcasts its message so every
 * rank reports the same words.
 *
 * Why the ranks stay bitwise equal: after the gradient all-reduce every rank
 * holds the same buffer (Open MPI's reductions give every rank the same
 * bits; wm_mpi_check verifies it), the same parameters and the same optimizer
 * state, and wm_apply is a deterministic function of those. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wmanifold_mpi.h"

/* The largest count passed to one MPI call (int counts): bigger buffers go
 * in chunks, so nets beyond 2^31 parameters still work. */
#define CHUNK ((size_t)1 << 30)

enum { R_SAMPLES, R_LOSS, R_KEY, R_STATUS, R_LEN };

static void agree_op(void *in, void *inout, int *len, MPI_Datatype *type)
{
    (void)type;
    const double *a = in;
    double *b = inout;
    for (int i = 0; i < *len; i++, a += R_LEN, b += R_LEN) {
        b[R_SAMPLES] += a[R_SAMPLES];
        b[R_LOSS] += a[R_LOSS];
        if (a[R_KEY] < b[R_KEY])
            b[R_KEY] = a[R_KEY], b[R_STATUS] = a[R_STATUS];
    }
}

typedef struct {
    double samples, loss;       /* sums over the ranks */
    int rank;                   /* the lowest failing rank, or -1 */
    wm_status status;           /* its status (WM_OK if none failed) */
} agreement;

/* The collective outcome of a local status st (and, for a step, this rank's
 * sample count and summed loss). On failure every rank gets the failing
 * rank's message, prefixed with fn and the rank, as its wm_last_error. */
static agreement agree(wm_status st, double samples, double loss, MPI_Comm comm, const char *fn)
{
    agreement g = {0, 0, -1, WM_EIO};
    int rank, size;
    if (MPI_Comm_rank(comm, &rank) != MPI_SUCCESS || MPI_Comm_size(comm, &size) != MPI_SUCCESS) {
        wm_error_set(WM_EIO, "MPI_Comm_rank/size failed: is comm a valid communicator?");
        return g;
    }
    double mine[R_LEN] = {samples, loss, st != WM_OK ? rank : size, (double)st}, all[R_LEN];
    MPI_Datatype rec;
    MPI_Op op;
    int rc = MPI_Type_contiguous(R_LEN, MPI_DOUBLE, &rec);
    if (rc == MPI_SUCCESS && (rc = MPI_Type_commit(&rec)) == MPI_SUCCESS) {
        if ((rc = MPI_Op_create(agree_op, 1, &op)) == MPI_SUCCESS) {
            rc = MPI_Allreduce(mine, all, 1, rec, op, comm);
            MPI_Op_free(&op);
        }
        MPI_Type_free(&rec);
    }
    if (rc != MPI_SUCCESS) {
        char text[160];
        snprintf(text, sizeof text, "%s: MPI_Allreduce of the ranks' status failed (MPI error %d)",
                 fn, rc);
        wm_error_set(WM_EIO, text);
        return g;
    }
    g.samples = all[R_SAMPLES], g.loss = all[R_LOSS];
    g.status = (wm_status)all[R_STATUS];
    if (g.status == WM_OK)
        return g;
    g.rank = (int)all[R_KEY];
    char msg[512], text[640];
    snprintf(msg, sizeof msg, "%s", wm_last_error());   /* meaningful on the failing rank */
    if (MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, g.rank, comm) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "(its message could not be broadcast)");
    msg[sizeof msg - 1] = 0;
    snprintf(text, sizeof text, "%s: rank %d: %s", fn, g.rank, msg);
    wm_error_set(g.status, text);
    return g;
}

static wm_status mpi_fail(int rc, const char *fn, const char *what)
{
    char text[200];
    snprintf(text, sizeof text, "%s: %s failed (MPI error %d)", fn, what, rc);
    return wm_error_set(WM_EIO, text);
}

/* A local failure, before the agreement (which adds the function and the
 * rank to the message). */
static wm_status local_fail(wm_status st, const char *msg) { return wm_error_set(st, msg); }

/* FNV-1a, 64 bit, over 32-bit words. */
static uint64_t fnv1a(uint64_t h, const void *p, size_t words)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < words; i++, b += 4) {
        uint32_t w;
        memcpy(&w, b, 4);
        h ^= w;
        h *= 1099511628211ULL;
    }
    return h;
}

/* What must match between ranks: the architecture and the optimizer's kind
 * (through the size of its state). */
static uint64_t signature(const wm_net *net, const wm_optimizer *opt)
{
    const wm_manifold *m = wm_net_manifold(net);
    int64_t v[8] = {wm_net_n_inputs(net), wm_net_n_outputs(net), wm_net_n_layers(net),
                    wm_manifold_dim(m), wm_manifold_n_basis(m), (int64_t)wm_net_n_params(net),
                    opt != NULL, (int64_t)wm_optimizer_state_len(opt)};
    uint64_t h = fnv1a(14695981039346656037ULL, v, 2 * 8);
    for (int l = 0; l < wm_net_n_layers(net); l++) {
        int in = 0, out = 0;
        wm_activation act = WM_ACT_NONE;
        wm_net_layer_info(net, l, &in, &out, &act);
        int32_t w[3] = {in, out, (int32_t)act};
        h = fnv1a(h, w, 3);
    }
    for (int d = 0; d < wm_manifold_dim(m); d++) {
        int32_t p = wm_manifold_periodic(m, d);
        h = fnv1a(h, &p, 1);
    }
    return h;
}

/* The gradient's block layout and everything else a step's ranks must
 * share: the signature plus the net's summary (each layer's kind, shapes,
 * parameter count and placement), whose per-layer counts fix where the
 * buckets are cut. Compared before any bucket starts: ranks whose nets hold
 * the same number of parameters in different blocks would otherwise cut
 * different buckets, and their all-reduces would never match. 0 with
 * *ok = 0 when out of memory. */
static uint64_t layout_hash(const wm_optimizer *opt, int *ok)
{
    const wm_net *net = wm_optimizer_net(opt);
    int layers = wm_net_n_layers(net);
    size_t cap = 1024 + 256 * (size_t)(layers > 0 ? layers : 0);
    char *text = malloc(cap);
    *ok = text != NULL;
    if (!text)
        return 0;
    uint64_t h = signature(net, opt);
    if (wm_net_summary(net, text, cap) == WM_OK)
        for (const unsigned char *c = (const unsigned char *)text; *c; c++)
            h = (h ^ *c) * 1099511628211ULL;
    free(text);
    return h;
}

/* ---- wm_mpi_step ------------------------------------------------------------- */

/* Requests in flight at most; a step with more waits for the oldest before
 * starting the next (bucket_bytes tiny against a net of many layers). */
#define RING 64

/* One step's buckets. wm_grad_notify reports the layers' gradient blocks
 * last layer first, i.e. ever lower offsets, each final when reported; the
 * blocks not yet sent form the range [off, pend_hi). A bucket closes at a
 * layer's block once it holds >= S bytes, and always at layer 0's (offset
 * 0): it is scaled by n_r / N and its in-place MPI_Iallreduce started. The
 * cut depends only on the architecture and S, never on the data: a rank
 * with an empty shard, or whose shard failed its checks, reports the same
 * blocks (wm_grad_notify of an empty batch: zeros) and so starts the same
 * all-reduces, in the same order, as the others. */
typedef struct {
    MPI_Comm comm;
    float *grad;
    size_t np, S;                       /* S in bytes; 0: no buckets (one blocking all-reduce) */
    size_t pend_hi;                     /* the unstarted part is [0, pend_hi) */
    float w;                            /* n_r / N */
    int scale;                          /* w != 1 */
    int go;                             /* the pre-step agreement allows buckets */
    int blocking;                       /* ... or, S = 0 everywhere, one blocking all-reduce */
    int pre_waited, n;
    MPI_Request pre[2], req[RING];
    long long pre_sum, pre_max[8];      /* N; max of {S, -S, np, -np, a, -a, b, -b} */
    long long pre_in_sum, pre_in_max[8];  /* a, b: the two halves of layout_hash */
    unsigned long started;
    int rc;                             /* the first MPI error, or MPI_SUCCESS */
} buckets;

static void start_bucket(buckets *b, size_t lo, size_t hi)
{
    if (b->scale)
        for (size_t j = lo; j < hi; j++)
            b->grad[j] *= b->w;
    for (size_t off = lo; off < hi; off += CHUNK) {   /* MPI counts are int */
        MPI_Request *r = &b->req[b->started++ % RING];
        if (*r != MPI_REQUEST_NULL) {   /* the ring is full: the oldest must finish */
            int rc = MPI_Wait(r, MPI_STATUS_IGNORE);
            if (rc != MPI_SUCCESS && b->rc == MPI_SUCCESS)
                b->rc = rc;
        }
        int cnt = (int)(hi - off < CHUNK ? hi - off : CHUNK);
        int rc = MPI_Iallreduce(MPI_IN_PLACE, b->grad + off, cnt, MPI_FLOAT, MPI_SUM, b->comm, r);
        if (rc != MPI_SUCCESS) {
            *r = MPI_REQUEST_NULL;
            if (b->rc == MPI_SUCCESS)
                b->rc = rc;
        }
    }
}

/* Wait for the pre-step agreement (once) and decide whether buckets go:
 * the same verdict on every rank, as every input is an agreed value. */
static void pre_wait(buckets *b)
{
    if (b->pre_waited)
        return;
    b->pre_waited = 1;
    int rc = MPI_Waitall(2, b->pre, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) {
        b->rc = rc;
        return;
    }
    long long N = b->pre_sum, *mx = b->pre_max;
    int agreed = mx[0] == -mx[1] && mx[2] == -mx[3] && mx[4] == -mx[5] && mx[6] == -mx[7] &&
                 mx[1] <= 0 && N > 0;
    b->go = agreed && mx[0] > 0;
    b->blocking = agreed && mx[0] == 0;
    b->scale = b->n > 0 && b->n != N;
    b->w = N > 0 ? (float)((double)b->n / (double)N) : 1.0f;
}

static void on_ready(void *user, int layer, size_t off, size_t len)
{
    (void)layer, (void)len;
    buckets *b = user;
    pre_wait(b);
    if (!b->go)
        return;
    if (off == 0 || (b->pend_hi - off) >= b->S / sizeof(float) + (b->S % sizeof(float) != 0)) {
        start_bucket(b, off, b->pend_hi);
        b->pend_hi = off;
    }
    int flag;                           /* drive the started ones along */
    MPI_Testall(RING, b->req, &flag, MPI_STATUSES_IGNORE);
}

wm_status wm_mpi_step_buckets(wm_optimizer *opt, const wm_batch *shard, MPI_Comm comm,
                              float *loss_out, size_t bucket_bytes)
{
    static const char fn[] = "wm_mpi_step";
    wm_status st = WM_OK;
    float loss = 0.0f;
    buckets b;
    memset(&b, 0, sizeof b);
    b.comm = comm;
    b.grad = wm_grad_buffer(opt, &b.np);
    b.S = bucket_bytes;
    b.pend_hi = b.np;
    b.rc = MPI_SUCCESS;
    for (int i = 0; i < RING; i++)
        b.req[i] = MPI_REQUEST_NULL;
    if (!opt || !shard)
        st = local_fail(WM_EINVAL, !opt ? "optimizer is NULL" : "shard is NULL");
    else if (shard->n < 0)
        st = local_fail(WM_EINVAL, "shard->n is negative");
    else
        b.n = shard->n;
    /* Before the pass, without blocking it: N (for the weights n_r / N),
     * and whether every rank has a buffer of the same size and the same S.
     * A rank that already failed reports S = -1: then nobody buckets. */
    long long Sll = bucket_bytes > (size_t)LLONG_MAX ? LLONG_MAX : (long long)bucket_bytes;
    uint64_t layout = 0;
    int mem_ok = 1;
    if (st == WM_OK && !(layout = layout_hash(opt, &mem_ok), mem_ok))
        st = local_fail(WM_ENOMEM, "out of memory for the architecture comparison");
    if (st != WM_OK)
        Sll = -1;
    long long npll = st != WM_OK ? -1 : (long long)b.np;
    long long la = (long long)(layout >> 32), lb = (long long)(layout & 0xffffffffu);
    b.pre_in_sum = b.n;
    b.pre_in_max[0] = Sll, b.pre_in_max[1] = -Sll, b.pre_in_max[2] = npll, b.pre_in_max[3] = -npll;
    b.pre_in_max[4] = la, b.pre_in_max[5] = -la, b.pre_in_max[6] = lb, b.pre_in_max[7] = -lb;
    int rc = MPI_Iallreduce(&b.pre_in_sum, &b.pre_sum, 1, MPI_LONG_LONG, MPI_SUM, comm, &b.pre[0]);
    if (rc == MPI_SUCCESS &&
        (rc = MPI_Iallreduce(b.pre_in_max, b.pre_max, 8, MPI_LONG_LONG, MPI_MAX, comm, &b.pre[1])) !=
            MPI_SUCCESS)
        MPI_Wait(&b.pre[0], MPI_STATUS_IGNORE);   /* never leave a request writing into this frame */
    if (rc != MPI_SUCCESS)
        return mpi_fail(rc, fn, "MPI_Iallreduce of the shard sizes");   /* an MPI fault */
    static const wm_batch none = {0, NULL, NULL, NULL, NULL};
    if (st == WM_OK)   /* changes the buffer only, never the net; buckets start inside */
        st = wm_grad_notify(opt, b.n > 0 ? shard : &none, &loss, on_ready, &b);
    pre_wait(&b);
    if (st != WM_OK) {
        b.n = 0;
        if (b.go && b.pend_hi == b.np)  /* failed before its pass: zeros in the same buckets */
            wm_grad_notify(opt, &none, NULL, on_ready, &b);
        else if (b.go && b.pend_hi > 0) {
            memset(b.grad, 0, b.pend_hi * sizeof(float));
            start_bucket(&b, 0, b.pend_hi);
        }
    }
    if (b.blocking) {   /* bucket_bytes = 0 everywhere: one blocking all-reduce after the pass */
        if (st != WM_OK)
            memset(b.grad, 0, b.np * sizeof(float));
        else if (b.scale)
            for (size_t j = 0; j < b.np; j++)
                b.grad[j] *= b.w;
        for (size_t off = 0; off < b.np && b.rc == MPI_SUCCESS; off += CHUNK) {
            int cnt = (int)(b.np - off < CHUNK ? b.np - off : CHUNK);
            b.rc = MPI_Allreduce(MPI_IN_PLACE, b.grad + off, cnt, MPI_FLOAT, MPI_SUM, comm);
        }
    }
    rc = MPI_Waitall(RING, b.req, MPI_STATUSES_IGNORE);   /* every request completes */
    if (b.rc == MPI_SUCCESS)
        b.rc = rc;
    if (st == WM_OK && b.rc != MPI_SUCCESS)
        st = local_fail(WM_EIO, "MPI_Iallreduce of the gradient failed");
    else if (st == WM_OK && b.pre_max[1] <= 0 && b.pre_max[2] != -b.pre_max[3])
        st = local_fail(WM_EINVAL, "the ranks' nets differ in their number of parameters");
    else if (st == WM_OK && b.pre_max[1] <= 0 &&
             (b.pre_max[4] != -b.pre_max[5] || b.pre_max[6] != -b.pre_max[7]))
        st = local_fail(WM_EINVAL, "the ranks' nets differ in their architecture (layers, their "
                                   "sizes or placement) or their optimizer's kind");
    else if (st == WM_OK && b.pre_max[1] <= 0 && b.pre_max[0] != -b.pre_max[1])
        st = local_fail(WM_EINVAL, "bucket_bytes differs between ranks");
    agreement g = agree(st, b.n, (double)b.n * loss, comm, fn);
    if (g.status != WM_OK)
        return g.status;
    if (g.samples < 1)
        return wm_error_set(WM_EINVAL, "wm_mpi_step: no rank has any samples (every shard has n = 0)");
    /* identical buffer, parameters and state on every rank: the same outcome */
    st = wm_apply(opt);
    if (st == WM_OK && loss_out)
        *loss_out = (float)(g.loss / g.samples);
    return st;
}

wm_status wm_mpi_step(wm_optimizer *opt, const wm_batch *shard, MPI_Comm comm, float *loss_out)
{
    return wm_mpi_step_buckets(opt, shard, comm, loss_out, WM_MPI_BUCKET_BYTES);
}

/* ---- wm_mpi_check ------------------------------------------------------------ */

static uint64_t params_hash(const wm_net *net)
{
    size_t len = 0;
    const float *q = wm_net_params(net, &len);
    uint64_t count = len, h = 14695981039346656037ULL;
    h = fnv1a(h, &count, 2);
    return q ? fnv1a(h, q, len) : h;
}

wm_status wm_mpi_check(const wm_net *net, MPI_Comm comm)
{
    static const char fn[] = "wm_mpi_check";
    wm_status st = net ? WM_OK : local_fail(WM_EINVAL, "net is NULL");
    agreement g = agree(st, 0, 0, comm, fn);
    if (g.status != WM_OK)
        return g.status;
    int rank, size, rc;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    uint64_t mine = params_hash(net), first = mine;
    if ((rc = MPI_Bcast(&first, 1, MPI_UINT64_T, 0, comm)) != MPI_SUCCESS)
        return mpi_fail(rc, fn, "MPI_Bcast of rank 0's hash");
    int key = mine != first ? rank : size, lowest = size;
    if ((rc = MPI_Allreduce(&key, &lowest, 1, MPI_INT, MPI_MIN, comm)) != MPI_SUCCESS)
        return mpi_fail(rc, fn, "MPI_Allreduce of the comparison");
    if (lowest == size)
        return WM_OK;
    char text[200];
    snprintf(text, sizeof text, "%s: rank %d's parameters differ from rank 0's (of %d ranks)", fn,
             lowest, size);
    return wm_error_set(WM_ESTATE, text);
}

/* ---- wm_mpi_broadcast -------------------------------------------------------- */

/* Broadcast len floats from root in chunks of at most CHUNK. */
static int bcast_floats(float *p, size_t len, int root, MPI_Comm comm)
{
    for (size_t off = 0; off < len; off += CHUNK) {
        int rc = MPI_Bcast(p + off, (int)(len - off < CHUNK ? len - off : CHUNK), MPI_FLOAT, root, comm);
        if (rc != MPI_SUCCESS)
            return rc;
    }
    return MPI_SUCCESS;
}

wm_status wm_mpi_broadcast(wm_net *net, wm_optimizer *opt, int root, MPI_Comm comm)
{
    static const char fn[] = "wm_mpi_broadcast";
    int rank = 0, size = 0, rc;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    wm_status st = WM_OK;
    size_t np = 0, ns = wm_optimizer_state_len(opt);
    float *q = NULL, *state = NULL;
    if (!net)
        st = local_fail(WM_EINVAL, "net is NULL");
    else if (root < 0 || root >= size)
        st = local_fail(WM_EINVAL, "root is not a rank of comm");
    else if (!wm_net_params(net, &np))
        st = local_fail(WM_ESTATE, "the net is not initialised (call wm_net_init)");
    else {                              /* buffers, before anything is agreed */
        q = rank != root ? malloc(np * sizeof *q) : NULL;
        state = ns > 0 ? malloc(ns * sizeof *state) : NULL;
        if ((rank != root && !q) || (ns > 0 && !state))
            st = local_fail(WM_ENOMEM, "out of memory for the broadcast buffers");
    }
    agreement g = agree(st, 0, 0, comm, fn);
    if (g.status != WM_OK)
        goto done;

    /* the same architecture and optimizer kind everywhere, or nothing moves */
    uint64_t sig[2] = {signature(net, opt), 0}, mine = sig[0];
    if ((rc = MPI_Bcast(sig, 2, MPI_UINT64_T, root, comm)) != MPI_SUCCESS) {
        g.status = mpi_fail(rc, fn, "MPI_Bcast of the architecture");
        goto done;
    }
    st = mine == sig[0] ? WM_OK
                        : local_fail(WM_EINVAL, "its net's architecture or its optimizer's kind "
                                                "(or opt NULL) differs from root's");
    g = agree(st, 0, 0, comm, fn);
    if (g.status != WM_OK)
        goto done;

    uint64_t steps = wm_optimizer_steps(opt);
    if (rank == root) {   /* MPI_Bcast only reads the root's buffer */
        q = (float *)wm_net_params(net, NULL);
        if (ns > 0)
            wm_optimizer_get_state(opt, state, ns);   /* two blocks into one buffer */
    }
    if ((rc = bcast_floats(q, np, root, comm)) != MPI_SUCCESS ||
        (ns > 0 && (rc = bcast_floats(state, ns, root, comm)) != MPI_SUCCESS) ||
        (opt && (rc = MPI_Bcast(&steps, 1, MPI_UINT64_T, root, comm)) != MPI_SUCCESS)) {
        g.status = mpi_fail(rc, fn, "MPI_Bcast of the parameters");
        goto done;
    }
    if (rank != root) {
        g.status = wm_net_set_params(net, q, np);   /* root's values are finite: cannot fail */
        if (g.status == WM_OK && opt)
            g.status = wm_optimizer_set_state(opt, state, ns, steps);
    }
done:
    if (rank != root)
        free(q);
    free(state);
    return g.status;
}
