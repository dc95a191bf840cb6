/* io.c -- model files (see docs/model-format.md).
 *
 * Layout, all integers little-endian u32 unless noted, floats IEEE-754 LE:
 *   "WMNF" | version | header bytes (u32) | header | u64 n_params | params
 *        | u32 has_optimizer | [optimizer section] | crc32
 * header = manifold (recursive) | cond | n_inputs | input c, h, w | loss | n_layers | layers
 *          | u64 init seed (version 3 only)
 * layer  = kind | placement (version 2 and 3: 1 manifold, 0 one point) | the kind's
 *          fields (its table's n_fields: layers/, docs/model-format.md)
 * The writer picks the oldest version that holds the net: version 1 (its four
 * kinds, every layer on the manifold), byte for byte as before; else version
 * 2; a net with a dropout layer, whose masks depend on the wm_net_init seed,
 * as version 3. Versions 1 and 2 load with seed 0.
 * optimizer section = kind | lr, volume, momentum, beta1, beta2, eps, weight_decay (f32)
 *            | u64 steps | first moment (n_params f32, not SD) | second (Adam only)
 * manifold = kind | dim | K | periodic[dim] | kind fields (Fourier: H;
 *            B-spline: n, degree, closed; product: manifold a, manifold b)
 * The CRC covers every byte before it. Loading reads the file whole, checks
 * the CRC and every size against the file's length before allocating, and
 * rebuilds the net through the public constructors, so a loaded net is
 * exactly what the same calls would have built. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crc32.h"
#include "error.h"
#include "layers/layer.h"
#include "net.h"
#include "optim.h"

#define MAGIC "WMNF"
#define FORMAT_VERSION 3u          /* the newest this library reads and writes */
#define V1_KINDS 4u                /* dense, conv2d, maxpool, avgpool: version 1's kinds */
#define MAX_FILE ((long long)1 << 36)

/* ---- writing ------------------------------------------------------------- */

typedef struct {
    unsigned char *buf;
    size_t len, cap;
    int oom;
} wbuf;

static void put_bytes(wbuf *w, const void *p, size_t n)
{
    if (w->oom)
        return;
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n)
            cap *= 2;
        unsigned char *nb = realloc(w->buf, cap);
        if (!nb) {
            w->oom = 1;
            return;
        }
        w->buf = nb, w->cap = cap;
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void put_u32(wbuf *w, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    put_bytes(w, b, 4);
}

static void put_u64(wbuf *w, uint64_t v)
{
    put_u32(w, (uint32_t)v);
    put_u32(w, (uint32_t)(v >> 32));
}

static void put_f32(wbuf *w, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    put_u32(w, v);
}

/* Kind tag of the record that gives a net's contexts in the user's units
 * (wm_net_set_context_range): the same prefix as any manifold record, then
 * lo and hi per coordinate, then the manifold itself. Only at the top. */
#define MF_RANGED_TAG 6

static void put_manifold(wbuf *w, const wm_manifold *m);

/* The net's manifold: a ranged record around it when it has units. */
static void put_net_manifold(wbuf *w, const wm_manifold *m)
{
    if (m->ranged) {
        put_u32(w, MF_RANGED_TAG);
        put_u32(w, (uint32_t)m->dim);
        put_u32(w, (uint32_t)m->K);
        for (int d = 0; d < m->dim; d++)
            put_u32(w, (uint32_t)m->periodic[d]);
        for (int d = 0; d < m->dim; d++) {
            put_f32(w, (float)m->lo[d]);
            put_f32(w, (float)m->hi[d]);
        }
    }
    put_manifold(w, m);
}

static void put_manifold(wbuf *w, const wm_manifold *m)
{
    put_u32(w, (uint32_t)m->kind);
    put_u32(w, (uint32_t)m->dim);
    put_u32(w, (uint32_t)m->K);
    for (int d = 0; d < m->dim; d++)
        put_u32(w, (uint32_t)m->periodic[d]);
    if (m->kind == WM_MF_FOURIER)
        put_u32(w, (uint32_t)m->harmonics);
    if (m->kind == WM_MF_BSPLINE) {
        put_u32(w, (uint32_t)m->n_control);
        put_u32(w, (uint32_t)m->degree);
        put_u32(w, (uint32_t)m->closed);
    }
    if (m->kind == WM_MF_PRODUCT) {
        put_manifold(w, m->a);
        put_manifold(w, m->b);
    }
}

/* ---- writing a file ----------------------------------------------------------
 * A save replaces the file the path names atomically: the bytes go to a
 * temporary file beside it, which is flushed and renamed over it. If the path
 * is a symbolic link, the file it points to (after every hop) is the one
 * replaced, beside itself, and the link stays a link; a dangling link gets its
 * target created. A new file gets the mode any tool's output gets (0666 less
 * the umask, through open's mode argument); a replaced file keeps its
 * permission bits. Something that exists and is not a regular file (a
 * directory, a FIFO, a device) is refused: renaming over it would destroy it. */

#define MAX_LINKS 40
#define TMP_SUFFIX ".tmp.XXXXXX"         /* 11 bytes after the (shortened) base */

/* The file a save replaces, malloc'd into *out: path, or the end of the
 * chain of symbolic links it starts. */
static wm_status resolve_target(const char *path, const char *shown, const char *fn, char **out)
{
    char *cur = malloc(strlen(path) + 1);
    if (!cur)
        return wmi_fail(WM_ENOMEM, "%s: out of memory", fn);
    strcpy(cur, path);
    for (int hops = 0;; hops++) {
        struct stat sb;
        if (lstat(cur, &sb) != 0 || !S_ISLNK(sb.st_mode)) {
            *out = cur;                  /* not a link (or nothing there yet) */
            return WM_OK;
        }
        if (hops == MAX_LINKS) {
            free(cur);
            return wmi_fail(WM_EIO, "cannot save to %s: more than %d symbolic links in a row", shown,
                           MAX_LINKS);
        }
        char *link = malloc(PATH_MAX + 1);
        if (!link) {
            free(cur);
            return wmi_fail(WM_ENOMEM, "%s: out of memory", fn);
        }
        ssize_t k = readlink(cur, link, PATH_MAX);
        if (k <= 0) {
            int err = k < 0 ? errno : ENOENT;
            free(link), free(cur);
            return wmi_fail(WM_EIO, "cannot save to %s: cannot read the symbolic link: %s", shown,
                           strerror(err));
        }
        link[k] = 0;
        /* a relative link is relative to the link's own directory */
        const char *slash = strrchr(cur, '/');
        size_t dlen = link[0] == '/' || !slash ? 0 : (size_t)(slash - cur) + 1;
        char *next = malloc(dlen + (size_t)k + 1);
        if (!next) {
            free(link), free(cur);
            return wmi_fail(WM_ENOMEM, "%s: out of memory", fn);
        }
        memcpy(next, cur, dlen);
        memcpy(next + dlen, link, (size_t)k + 1);
        free(link), free(cur);
        cur = next;
    }
}

/* A name for the temporary file not used by anyone else: six characters
 * from the clock, the process, the thread's stack and the attempt. */
static void fill_random(char *x, int attempt)
{
    static const char set[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t h = (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 32 ^ (uint64_t)getpid() << 20 ^
                 (uint64_t)(uintptr_t)&ts ^ (uint64_t)attempt * 0x9E3779B97F4A7C15u;
    h ^= h >> 30, h *= 0xBF58476D1CE4E5B9u, h ^= h >> 27, h *= 0x94D049BB133111EBu, h ^= h >> 31;
    for (int j = 0; j < 6; j++, h /= 62)
        x[j] = set[h % 62];
}

static const char *file_kind(mode_t m)
{
    return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" : S_ISCHR(m) ? "a character device"
         : S_ISBLK(m) ? "a block device" : S_ISSOCK(m) ? "a socket" : "a file of an unknown kind";
}

static wm_status write_file_atomic(const char *path, const void *data, size_t len, const char *fn)
{
    char shown_buf[WMI_SHOWN_PATH];
    const char *shown = wmi_shown_path(path, shown_buf);
    /* what the path leads to, through every link (/dev/stdout to a pipe too) */
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return wmi_fail(WM_EIO, "cannot save to %s: it is %s, not a regular file (write the bytes of "
                               "wm_net_save_buffer there instead)", shown, file_kind(sb.st_mode));
    char *target = NULL;
    wm_status st = resolve_target(path, shown, fn, &target);
    if (st != WM_OK)
        return st;
    int exists = stat(target, &sb) == 0;
    if (!exists && errno != ENOENT) {
        int err = errno;
        free(target);
        return wmi_fail(WM_EIO, "cannot save to %s: %s", shown, strerror(err));
    }
    if (exists && !S_ISREG(sb.st_mode)) {
        free(target);
        return wmi_fail(WM_EIO, "cannot save to %s: it is %s, not a regular file (write the bytes of "
                               "wm_net_save_buffer there instead)", shown, file_kind(sb.st_mode));
    }
    /* <dir/><base>.tmp.XXXXXX, the base shortened so the name fits NAME_MAX */
    const char *slash = strrchr(target, '/');
    size_t dlen = slash ? (size_t)(slash - target) + 1 : 0, blen = strlen(target) - dlen;
    if (blen == 0) {
        free(target);
        return wmi_fail(WM_EIO, "cannot save to %s: the path names a directory", shown);
    }
    if (blen > NAME_MAX - (sizeof TMP_SUFFIX - 1))
        blen = NAME_MAX - (sizeof TMP_SUFFIX - 1);
    char *tmp = malloc(dlen + blen + sizeof TMP_SUFFIX);
    if (!tmp) {
        free(target);
        return wmi_fail(WM_ENOMEM, "%s: out of memory", fn);
    }
    memcpy(tmp, target, dlen + blen);
    memcpy(tmp + dlen + blen, TMP_SUFFIX, sizeof TMP_SUFFIX);
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        fill_random(tmp + dlen + blen + 5, attempt);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        int err = errno;
        free(tmp), free(target);
        return wmi_fail(WM_EIO, "cannot save to %s: cannot create a temporary file beside it: %s",
                       shown, strerror(err));
    }
    const char *why = NULL;             /* the reason a save failed */
    int err = 0;
    if (exists && fchmod(fd, sb.st_mode & 0777) != 0)
        err = errno, why = "cannot give the new file the old one's mode";
    const unsigned char *p = data;
    size_t left = len;
    while (!why && left > 0) {
        ssize_t k = write(fd, p, left < ((size_t)1 << 30) ? left : (size_t)1 << 30);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            err = errno, why = "write failed";
        else if (k == 0)                /* no progress and no errno: never success */
            why = "write() wrote nothing (the device accepted no more bytes)";
        else
            p += k, left -= (size_t)k;
    }
    if (!why && fsync(fd) != 0)
        err = errno, why = "fsync failed";
    if (close(fd) != 0 && !why)
        err = errno, why = "close failed";
    if (!why && rename(tmp, target) != 0)
        err = errno, why = "cannot rename the temporary file over it";
    if (why) {
        unlink(tmp);
        free(tmp), free(target);
        return wmi_fail(WM_EIO, "cannot save to %s: %s%s%s (%zu of %zu bytes written; the old "
                               "file, if any, is unchanged)", shown, why, err ? ": " : "",
                       err ? strerror(err) : "", len - left, len);
    }
    /* Make the rename itself durable: fsync the directory, named by the
     * target's prefix in tmp (no allocation here, so nothing can fail late). */
    tmp[dlen] = 0;
    int dfd = open(dlen ? tmp : ".", O_RDONLY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(tmp), free(target);
    return WM_OK;
}

/* The whole file for net (and opt's state if opt is not NULL) into w. */
static void serialize(wbuf *w, const wm_net *net, const wm_optimizer *opt)
{
    wbuf hdr = {0};
    put_net_manifold(&hdr, net->m);
    put_u32(&hdr, (uint32_t)net->cond);
    put_u32(&hdr, (uint32_t)net->n_inputs);
    put_u32(&hdr, (uint32_t)net->input_c);
    put_u32(&hdr, (uint32_t)net->input_h);
    put_u32(&hdr, (uint32_t)net->input_w);
    put_u32(&hdr, (uint32_t)net->loss);
    put_u32(&hdr, (uint32_t)net->n_layers);
    uint32_t version = 1;               /* the oldest version that holds the net */
    for (int l = 0; l < net->n_layers; l++)
        if ((uint32_t)net->layers[l].kind >= V1_KINDS || net->layers[l].Kp != net->Kp)
            version = 2;
    for (int l = 0; l < net->n_layers; l++)
        if (net->layers[l].kind == WM_LAYER_DROPOUT)
            version = 3;                /* its masks need the seed */
    for (int l = 0; l < net->n_layers; l++) {
        const wm_layer *ly = &net->layers[l];
        const wm_layer_ops *ops = wmi_ops(ly);
        uint32_t v[WMI_LAYER_MAX_FIELDS];
        ops->fields(ly, v);
        put_u32(&hdr, (uint32_t)ly->kind);
        if (version >= 2)
            put_u32(&hdr, ly->Kp == net->Kp);       /* placement: on the manifold, or a point */
        for (int j = 0; j < ops->n_fields; j++)
            put_u32(&hdr, v[j]);
    }
    if (version >= 3)
        put_u64(&hdr, net->seed);
    put_bytes(w, MAGIC, 4);
    put_u32(w, version);
    put_u32(w, (uint32_t)hdr.len);
    if (hdr.oom)
        w->oom = 1;
    else
        put_bytes(w, hdr.buf, hdr.len);
    free(hdr.buf);
    put_u64(w, net->n_params);
    for (size_t j = 0; j < net->n_params; j++)
        put_f32(w, net->params[j]);
    /* 1: a checkpoint; 2: one whose optimizer clips (the clip norm follows
     * the settings), so a checkpoint without clipping reads as before */
    put_u32(w, opt == NULL ? 0 : opt->clip > 0 ? 2 : 1);
    if (opt) {
        const wm_opt_config *c = &opt->cfg;
        put_u32(w, (uint32_t)c->kind);
        put_f32(w, c->lr), put_f32(w, c->volume), put_f32(w, c->momentum);
        put_f32(w, c->beta1), put_f32(w, c->beta2), put_f32(w, c->eps), put_f32(w, c->weight_decay);
        if (opt->clip > 0)
            put_f32(w, opt->clip);
        int stale = wmi_optimizer_stale(opt);   /* re-initialised: a fresh optimizer */
        put_u64(w, stale ? 0 : opt->t);
        for (size_t j = 0; opt->m1 && j < net->n_params; j++)
            put_f32(w, stale ? 0.0f : opt->m1[j]);
        for (size_t j = 0; opt->m2 && j < net->n_params; j++)
            put_f32(w, stale ? 0.0f : opt->m2[j]);
    }
    if (!w->oom)
        put_u32(w, wmi_crc32(0, w->buf, w->len));
}

static wm_status save(const wm_net *net, const wm_optimizer *opt, const char *path, const char *fn)
{
    wbuf w = {0};
    serialize(&w, net, opt);
    if (w.oom) {
        free(w.buf);
        return wmi_fail(WM_ENOMEM, "%s: out of memory", fn);
    }
    wm_status st = write_file_atomic(path, w.buf, w.len, fn);
    free(w.buf);
    return st;
}

wm_status wm_net_save(const wm_net *net, const char *path)
{
    if (!net || !path)
        return wmi_fail(WM_EINVAL, "wm_net_save: %s is NULL", !net ? "net" : "path");
    if (!*path)
        return wmi_fail(WM_EINVAL, "wm_net_save: path is empty");
    if (!net->initialised)
        return wmi_fail(WM_ESTATE, "wm_net_save: the net is not initialised (call wm_net_init)");
    return save(net, NULL, path, "wm_net_save");
}

wm_status wm_optimizer_save(const wm_optimizer *opt, const char *path)
{
    if (!opt || !path)
        return wmi_fail(WM_EINVAL, "wm_optimizer_save: %s is NULL", !opt ? "opt" : "path");
    if (!*path)
        return wmi_fail(WM_EINVAL, "wm_optimizer_save: path is empty");
    return save(opt->net, opt, path, "wm_optimizer_save");
}

wm_status wm_net_save_buffer(const wm_net *net, void **buf, size_t *len)
{
    if (!net || !buf || !len)
        return wmi_fail(WM_EINVAL, "wm_net_save_buffer: %s is NULL", !net ? "net" : !buf ? "buf" : "len");
    if (!net->initialised)
        return wmi_fail(WM_ESTATE, "wm_net_save_buffer: the net is not initialised (call wm_net_init)");
    wbuf w = {0};
    serialize(&w, net, NULL);
    if (w.oom) {
        free(w.buf);
        return wmi_fail(WM_ENOMEM, "wm_net_save_buffer: out of memory");
    }
    *buf = w.buf;
    *len = w.len;
    return WM_OK;
}

void wm_free(void *p) { free(p); }

/* ---- reading ------------------------------------------------------------- */

typedef struct {
    const unsigned char *p;
    size_t len, pos;
    int bad;                      /* ran past the end */
} rbuf;

static uint32_t get_u32(rbuf *r)
{
    if (r->bad || r->len - r->pos < 4) {
        r->bad = 1;
        return 0;
    }
    const unsigned char *b = r->p + r->pos;
    r->pos += 4;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static float get_f32(rbuf *r)
{
    uint32_t v = get_u32(r);
    float f;
    memcpy(&f, &v, 4);
    return f;
}


typedef struct {
    const char *path;             /* the file as shown in messages, or "the model buffer" */
    const char *custom_call;      /* the call that takes a basis callback */
    wm_basis_fn fn;
    void *user;
    int depth;
    int n_custom;                 /* custom factors met so far */
} load_ctx;

static wm_status bad(const load_ctx *c, const char *what)
{
    return wmi_fail(WM_EFORMAT, "%s is not a valid model file: %s", c->path, what);
}

/* A field the library's own constructors refused (their message follows). */
static wm_status bad_field(const load_ctx *c, const char *field)
{
    return wmi_fail_prefix(WM_EFORMAT, "%s is not a valid model file: %s: ", c->path, field);
}

/* The callback given for a custom factor must write exactly the K values the
 * file declares: try it at three contexts with every slot preset to a marker
 * NaN, so a callback that writes fewer (whose missing values would be read
 * uninitialised) or more (a different basis) is refused before it is used. */
static wm_status probe_callback(const load_ctx *c, int dim, int K)
{
    static const float at[3] = {0.0f, 0.5f, 0.75f};
    const uint32_t marker = 0x7FC0DEADu;
    float s[WM_MAX_DIM], v[WM_MAX_BASIS + 1];
    for (int t = 0; t < 3; t++) {
        for (int d = 0; d < dim; d++)
            s[d] = at[(t + d) % 3];
        for (int j = 0; j <= WM_MAX_BASIS; j++)
            memcpy(&v[j], &marker, 4);
        c->fn(s, v, c->user);
        for (int j = 0; j <= WM_MAX_BASIS; j++) {
            uint32_t bits;
            memcpy(&bits, &v[j], 4);
            if (j < K && bits == marker)
                return wmi_fail(WM_EINVAL, "%s: the basis callback wrote c[0..%d) but the file's custom "
                                          "manifold has K = %d basis functions: it is not this net's basis",
                               c->path, j, K);
            if (j < K && !isfinite(v[j]))
                return wmi_fail(WM_EINVAL, "%s: the basis callback returned a non-finite c[%d] at "
                                          "s[0] = %g", c->path, j, (double)s[0]);
            if (j >= K && bits != marker)
                return wmi_fail(WM_EINVAL, "%s: the basis callback wrote c[%d], but the file's custom "
                                          "manifold has K = %d basis functions: it is not this net's basis",
                               c->path, j, K);
        }
    }
    return WM_OK;
}

static wm_status get_manifold(rbuf *r, load_ctx *c, wm_manifold **out)
{
    if (++c->depth > 16)
        return bad(c, "manifold products nest too deeply");
    uint32_t kind = get_u32(r), dim = get_u32(r), K = get_u32(r);
    int periodic[WM_MAX_DIM];
    if (r->bad)
        return bad(c, "truncated manifold description");
    if (dim > WM_MAX_DIM || K < 1 || K > WM_MAX_BASIS)
        return bad(c, "manifold sizes out of range");
    /* Every basis function costs the file at least one parameter (a manifold
     * net's weights scale with K, a concat net's inputs with K - 1), so a
     * claim of more than the file can hold is rejected before any O(K^2)
     * memory or O(K^3) work. Products are bounded through their factors. */
    if (kind != WM_MF_PRODUCT && (size_t)K > (r->len - r->pos) / 4 + 1)
        return bad(c, "the manifold declares more basis functions than the file has parameters");
    for (uint32_t d = 0; d < dim; d++)
        periodic[d] = get_u32(r) != 0;
    wm_status st = WM_OK;
    wm_manifold *m = NULL, *a = NULL, *b = NULL;
    if (kind == MF_RANGED_TAG) {                   /* contexts in the user's units */
        float lo[WM_MAX_DIM], hi[WM_MAX_DIM];
        if (c->depth != 1)
            return bad(c, "context units inside a product");
        for (uint32_t d = 0; d < dim; d++) {
            lo[d] = get_f32(r), hi[d] = get_f32(r);
            double span = (double)hi[d] - lo[d];
            if (r->bad)
                return bad(c, "truncated context units");
            if (!isfinite(lo[d]) || !isfinite(hi[d]) || !(span > 0) || !isfinite((float)span) ||
                !(span >= 1e-6 * fmax(fabs(lo[d]), fabs(hi[d]))))
                return bad(c, "context units: a coordinate's range is not lo < hi, finite");
        }
        if ((st = get_manifold(r, c, &m)) != WM_OK)
            return st;
        if (m->dim != (int)dim || m->K != (int)K || memcmp(m->periodic, periodic, sizeof(int) * dim) != 0) {
            wm_manifold_free(m);
            return bad(c, "context units that do not match the manifold");
        }
        m->ranged = 1;
        for (uint32_t d = 0; d < dim; d++)
            m->lo[d] = lo[d], m->hi[d] = hi[d];
        c->depth--;
        *out = m;
        return WM_OK;
    }
    switch (kind) {
    case WM_MF_POINT:
        st = wm_manifold_point(&m);
        break;
    case WM_MF_LINE:
        st = wm_manifold_line(&m);
        break;
    case WM_MF_FOURIER: {
        uint32_t h = get_u32(r);
        if (r->bad || h < 1 || h > (WM_MAX_BASIS - 1) / 2)
            return bad(c, "bad Fourier order");
        st = wm_manifold_fourier(&m, (int)h);
        break;
    }
    case WM_MF_BSPLINE: {
        uint32_t n = get_u32(r), p = get_u32(r), closed = get_u32(r);
        if (r->bad || p < 1 || p > 31 || n < p + 1 || n > WM_MAX_BASIS || closed > 1)
            return bad(c, "bad B-spline description");
        st = wm_manifold_bspline(&m, (int)n, (int)p, (int)closed);
        break;
    }
    case WM_MF_PRODUCT:
        if ((st = get_manifold(r, c, &a)) == WM_OK && (st = get_manifold(r, c, &b)) == WM_OK) {
            if (a->dim + b->dim > WM_MAX_DIM || (long)a->K * b->K > WM_MAX_BASIS ||
                a->n_factors + b->n_factors > WM_MAX_FACTORS)
                st = bad(c, "a product manifold is larger than the library allows");
            else if ((st = wm_manifold_product(&m, a, b)) != WM_OK && st != WM_ENOMEM)
                st = bad_field(c, "the manifold cannot be rebuilt");
        }
        wm_manifold_free(a);
        wm_manifold_free(b);
        if (st != WM_OK)
            return st;                  /* the factor's own, precise message */
        break;
    case WM_MF_CUSTOM:
        if (!c->fn)
            return wmi_fail(WM_EINVAL, "%s holds a net on a custom manifold: load it with "
                                      "%s and the basis callback", c->path, c->custom_call);
        if (dim < 1 || dim > 4)
            return bad(c, "bad custom manifold dimension");
        /* One callback cannot be two bases: a product of custom factors
         * would load with the same basis in each, a different net. */
        if (++c->n_custom > 1)
            return wmi_fail(WM_EINVAL, "%s holds a manifold with more than one custom factor: %s "
                                      "takes one basis callback and cannot rebuild it faithfully",
                           c->path, c->custom_call);
        if ((st = probe_callback(c, (int)dim, (int)K)) != WM_OK)
            return st;
        st = wm_manifold_custom(&m, (int)dim, (int)K, periodic, c->fn, c->user);
        if (st != WM_OK && st != WM_ENOMEM)     /* the callback's fault, not the file's */
            return wmi_fail_prefix(WM_EINVAL, "%s: the basis callback cannot rebuild the custom "
                                              "manifold: ", c->path);
        break;
    default:
        return bad(c, "unknown manifold kind");
    }
    if (st != WM_OK)
        return st == WM_ENOMEM ? st : bad_field(c, "the manifold cannot be rebuilt");
    if (r->bad || m->dim != (int)dim || m->K != (int)K ||
        memcmp(m->periodic, periodic, sizeof(int) * dim) != 0) {
        wm_manifold_free(m);
        return bad(c, r->bad ? "truncated manifold description" : "inconsistent manifold description");
    }
    c->depth--;
    *out = m;
    return WM_OK;
}

/* The whole file into *data. Opened without blocking (a FIFO or a device
 * would wait for a writer) and checked to be a regular file before a byte is
 * read; a file that ends before the size it had when opened has changed
 * under the reader, and what was read is not a model. */
static wm_status read_whole(const char *path, const char *shown, unsigned char **data, size_t *len)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return wmi_fail(WM_EIO, "cannot open %s: %s", shown, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int err = errno;
        close(fd);
        return wmi_fail(WM_EIO, "cannot read %s: %s", shown, strerror(err));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return wmi_fail(WM_EIO, "cannot read %s: it is %s, not a regular file", shown,
                       file_kind(sb.st_mode));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl != -1)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    if (sb.st_size > MAX_FILE) {
        close(fd);
        return wmi_fail(WM_EFORMAT, "%s is not a valid model file: %lld bytes is too large", shown,
                       (long long)sb.st_size);
    }
    size_t n = (size_t)sb.st_size, got = 0;
    unsigned char *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return wmi_fail(WM_ENOMEM, "out of memory reading %s (%zu bytes)", shown, n);
    }
    while (got < n) {
        size_t want = n - got < ((size_t)1 << 30) ? n - got : (size_t)1 << 30;
        ssize_t k = read(fd, buf + got, want);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            int err = k < 0 ? errno : 0;
            close(fd);
            free(buf);
            if (err)
                return wmi_fail(WM_EIO, "cannot read %s: %s", shown, strerror(err));
            return wmi_fail(WM_EFORMAT, "%s is not a valid model file: it ended after %zu of the %zu "
                                       "bytes it had when opened (it changed while being read)",
                           shown, got, n);
        }
        got += (size_t)k;
    }
    close(fd);
    *data = buf;
    *len = n;
    return WM_OK;
}

static int all_finite(const float *a, size_t n)
{
    for (size_t j = 0; j < n; j++)
        if (!isfinite(a[j]))
            return 0;
    return 1;
}

/* The optional optimizer section; builds *opt on net if opt is not NULL,
 * otherwise only checks that the section has the right length. */
static wm_status get_optimizer(rbuf *r, load_ctx *c, wm_net *net, wm_optimizer **opt)
{
    uint32_t present = get_u32(r);
    if (r->bad || present > 2)
        return bad(c, "bad optimizer flag");
    if (!present) {
        if (opt)
            return wmi_fail(WM_EINVAL, "%s holds a model without optimizer state: load it with wm_net_load",
                           c->path);
        return r->pos == r->len ? WM_OK : bad(c, "trailing bytes after the parameters");
    }
    wm_opt_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.kind = (wm_opt_kind)get_u32(r);
    cfg.lr = get_f32(r), cfg.volume = get_f32(r), cfg.momentum = get_f32(r);
    cfg.beta1 = get_f32(r), cfg.beta2 = get_f32(r), cfg.eps = get_f32(r), cfg.weight_decay = get_f32(r);
    float clip = present == 2 ? get_f32(r) : 0.0f;
    if (!r->bad && present == 2 && !(isfinite(clip) && clip > 0))
        return bad(c, "bad clip norm");
    /* a schedule may have brought lr to 0 (wm_optimizer_set_lr), which
     * wm_optimizer_create refuses: create at 1, then set the saved value */
    float lr = cfg.lr;
    if (!r->bad && cfg.volume == 0 && lr == 0)
        cfg.lr = 1.0f;
    uint64_t t = get_u32(r);
    t |= (uint64_t)get_u32(r) << 32;
    if (r->bad || cfg.kind > WM_OPT_ADAM)
        return bad(c, "bad optimizer description");
    size_t moments = cfg.kind == WM_OPT_SD ? 0 : cfg.kind == WM_OPT_MOMENTUM ? 1 : 2;
    if ((r->len - r->pos) != moments * 4 * net->n_params)
        return bad(c, "optimizer state has the wrong length");
    if (!opt)
        return WM_OK;
    wm_optimizer *o = NULL;
    wm_status st = wm_optimizer_create(&o, net, &cfg);
    if (st != WM_OK)
        return st == WM_ENOMEM ? st : bad(c, "invalid optimizer settings");
    for (size_t j = 0; o->m1 && j < net->n_params; j++)
        o->m1[j] = get_f32(r);
    for (size_t j = 0; o->m2 && j < net->n_params; j++)
        o->m2[j] = get_f32(r);
    if ((o->m1 && !all_finite(o->m1, net->n_params)) || (o->m2 && !all_finite(o->m2, net->n_params))) {
        wm_optimizer_free(o);
        return bad(c, "optimizer state is not finite");
    }
    o->t = t;
    o->cfg.lr = lr;
    o->clip = clip;
    *opt = o;
    return WM_OK;
}

static wm_status parse(const unsigned char *data, size_t len, load_ctx *c, wm_net **out,
                       wm_optimizer **opt_out)
{
    if (len < 4 || memcmp(data, MAGIC, 4) != 0)
        return bad(c, "no WMNF magic at the start");
    if (len < 16)
        return bad(c, "truncated header");
    uint32_t stored = (uint32_t)data[len - 4] | (uint32_t)data[len - 3] << 8 |
                      (uint32_t)data[len - 2] << 16 | (uint32_t)data[len - 1] << 24;
    rbuf r = {data, len - 4, 4, 0};
    uint32_t version = get_u32(&r);
    if (version < 1 || version > FORMAT_VERSION)
        return wmi_fail(WM_EFORMAT, "%s: model format version %u is not supported (this library reads 1..%u)",
                       c->path, version, FORMAT_VERSION);
    if (wmi_crc32(0, data, len - 4) != stored)
        return bad(c, "checksum mismatch (the file is corrupted or truncated)");
    uint32_t hdr_len = get_u32(&r);
    if (hdr_len > r.len - r.pos)
        return bad(c, "header longer than the file");
    wm_manifold *m = NULL;
    wm_status st = get_manifold(&r, c, &m);
    if (st != WM_OK)
        return st;
    uint32_t cond = get_u32(&r), n_inputs = get_u32(&r);
    uint32_t in_c = get_u32(&r), in_h = get_u32(&r), in_w = get_u32(&r);
    uint32_t loss = get_u32(&r), n_layers = get_u32(&r);
    if (r.bad || cond > WM_COND_CONCAT || n_inputs < 1 || n_inputs > (1u << 24) ||
        in_c > n_inputs || in_h > n_inputs || in_w > n_inputs ||
        loss > WM_LOSS_MSE || n_layers < 1 || n_layers > WM_MAX_LAYERS) {
        wm_manifold_free(m);
        return bad(c, "bad network description");
    }
    wm_net *net = NULL;
    st = wm_net_create(&net, m, (int)n_inputs, (wm_conditioning)cond);
    wm_manifold_free(m);
    if (st != WM_OK)
        return st == WM_ENOMEM ? st : bad_field(c, "the network description (cond, n_inputs)");
    if (in_c > 0 && wm_net_input_shape(net, (int)in_c, (int)in_h, (int)in_w) != WM_OK)
        st = bad(c, "input shape does not match the input count");
    for (uint32_t l = 0; l < n_layers && st == WM_OK; l++) {
        /* every value is range-checked by the same calls that built the net */
        uint32_t kind = get_u32(&r), v[WMI_LAYER_MAX_FIELDS] = {0};
        if (r.bad || kind >= (version >= 2 ? (uint32_t)WM_LAYER_N_KINDS : V1_KINDS)) {
            st = bad(c, "bad layer description");
            break;
        }
        const wm_layer_ops *ops = wmi_layer_ops[kind];
        uint32_t on = version >= 2 ? get_u32(&r) : 1;
        int bad_value = on > 1;
        for (int j = 0; j < ops->n_fields; j++) {
            v[j] = get_u32(&r);
            bad_value |= !(ops->float_fields >> j & 1) && v[j] > (1u << 24);
        }
        if (r.bad || bad_value) {
            st = bad(c, "bad layer description");
            break;
        }
        wm_status add = ops->rebuild(net, v);
        if (add == WM_OK && !on)
            add = wm_net_set_layer_manifold(net, (int)l, 0);
        if (add != WM_OK)
            st = add == WM_ENOMEM ? add : bad(c, "a layer cannot be rebuilt (sizes out of range)");
    }
    uint64_t seed = 0;                  /* versions 1 and 2 do not store it */
    if (st == WM_OK && version >= 3) {
        size_t at = r.pos, end = 12 + (size_t)hdr_len;
        seed = get_u32(&r);
        seed |= (uint64_t)get_u32(&r) << 32;
        if (r.bad || (at <= end && r.pos > end))
            st = bad(c, "truncated init seed (the last field of a version-3 header)");
    }
    if (st == WM_OK && r.pos != 12 + (size_t)hdr_len)
        st = bad(c, "header length does not match its contents");
    uint64_t n_params = 0;
    if (st == WM_OK) {
        n_params = get_u32(&r);
        n_params |= (uint64_t)get_u32(&r) << 32;
        if (r.bad || n_params != net->n_params)
            st = bad(c, "parameter count does not match the architecture");
        else if ((r.len - r.pos) / 4 < n_params + 1)
            st = bad(c, "parameter data is truncated");
    }
    if (st == WM_OK && (st = wm_net_set_loss(net, (wm_loss)loss)) != WM_OK && st != WM_ENOMEM)
        st = bad_field(c, "the loss field");
    /* init (the file's seed: dropout masks) checks what the loss needs of the
     * layers (softmax: 2+ outputs); the parameters are then the file's */
    if (st == WM_OK && (st = wm_net_init(net, seed)) != WM_OK && st != WM_ENOMEM)
        st = bad_field(c, "the loss field does not fit the layers");
    if (st == WM_OK) {
        for (size_t j = 0; j < net->n_params; j++) {
            uint32_t v = get_u32(&r);
            float f;
            memcpy(&f, &v, 4);
            if (!isfinite(f)) {
                st = bad(c, "a parameter is not finite");
                break;
            }
            net->params[j] = f;
        }
        if (st == WM_OK)
            wmi_net_touch(net);           /* the P cache of local layers (net.h) */
    }
    wm_optimizer *opt = NULL;
    if (st == WM_OK)
        st = get_optimizer(&r, c, net, opt_out ? &opt : NULL);
    if (st != WM_OK) {
        wm_net_free(net);
        return st;
    }
    *out = net;
    if (opt_out)
        *opt_out = opt;
    return WM_OK;
}

static wm_status load(wm_net **out, wm_optimizer **opt, const char *path, wm_basis_fn fn,
                      void *user, const char *custom_call)
{
    char shown_buf[WMI_SHOWN_PATH];
    const char *shown = wmi_shown_path(path, shown_buf);
    unsigned char *data = NULL;
    size_t len = 0;
    wm_status st = read_whole(path, shown, &data, &len);
    if (st != WM_OK)
        return st;
    load_ctx c = {shown, custom_call, fn, user, 0, 0};
    st = parse(data, len, &c, out, opt);
    free(data);
    return st;
}

wm_status wm_net_load(wm_net **out, const char *path)
{
    if (!out || !path)
        return wmi_fail(WM_EINVAL, "wm_net_load: %s is NULL", !out ? "out" : "path");
    if (!*path)
        return wmi_fail(WM_EINVAL, "wm_net_load: path is empty");
    return load(out, NULL, path, NULL, NULL, "wm_net_load_custom");
}

wm_status wm_net_load_custom(wm_net **out, const char *path, wm_basis_fn fn, void *user)
{
    if (!out || !path || !fn)
        return wmi_fail(WM_EINVAL, "wm_net_load_custom: %s is NULL", !out ? "out" : !path ? "path" : "fn");
    if (!*path)
        return wmi_fail(WM_EINVAL, "wm_net_load_custom: path is empty");
    return load(out, NULL, path, fn, user, "wm_net_load_custom");
}

wm_status wm_optimizer_load(wm_optimizer **opt, wm_net **net, const char *path, wm_basis_fn fn,
                            void *user)
{
    if (!opt || !net || !path)
        return wmi_fail(WM_EINVAL, "wm_optimizer_load: %s is NULL", !opt ? "opt" : !net ? "net" : "path");
    if (!*path)
        return wmi_fail(WM_EINVAL, "wm_optimizer_load: path is empty");
    wm_net *n = NULL;
    wm_optimizer *o = NULL;
    wm_status st = load(&n, &o, path, fn, user, "wm_optimizer_load (its fn argument)");
    if (st != WM_OK)
        return st;
    *net = n;
    *opt = o;
    return WM_OK;
}

static wm_status load_buffer(wm_net **out, const void *buf, size_t len, wm_basis_fn fn, void *user)
{
    load_ctx c = {"the model buffer", "wm_net_load_buffer_custom", fn, user, 0, 0};
    if (len > (size_t)MAX_FILE)
        return bad(&c, "it is larger than 64 GiB");
    return parse(buf, len, &c, out, NULL);
}

wm_status wm_net_load_buffer(wm_net **out, const void *buf, size_t len)
{
    if (!out || !buf)
        return wmi_fail(WM_EINVAL, "wm_net_load_buffer: %s is NULL", !out ? "out" : "buf");
    return load_buffer(out, buf, len, NULL, NULL);
}

wm_status wm_net_load_buffer_custom(wm_net **out, const void *buf, size_t len, wm_basis_fn fn,
                                    void *user)
{
    if (!out || !buf || !fn)
        return wmi_fail(WM_EINVAL, "wm_net_load_buffer_custom: %s is NULL",
                       !out ? "out" : !buf ? "buf" : "fn");
    return load_buffer(out, buf, len, fn, user);
}
