/* io.c -- model files (see docs/model-format.md).
 *
 * Layout, all integers little-endian u32 unless noted, floats IEEE-754 LE:
 *   "WMNF" | version | header bytes (u32) | header | u64 n_params | params
 *        | u32 has_optimizer | [optimizer section] | crc32
 * header = manifold (recursive) | cond | n_inputs | input c, h, w | loss | n_layers | layers
 * layer  = kind | placement (version 2 only: 1 manifold, 0 one point) | the kind's
 *          fields (its table's n_fields: layers/, docs/model-format.md)
 * A net that version 1 can hold (its four kinds, every layer on the manifold)
 * is written as version 1, byte for byte as before; others as version 2.
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
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32.h"
#include "error.h"
#include "layers/layer.h"
#include "net.h"
#include "optim.h"

#define MAGIC "WMNF"
#define FORMAT_VERSION 2u          /* the newest this library reads and writes */
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

static wm_status write_file_atomic(const char *path, const void *data, size_t len)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp)
        return wmi_fail(WM_ENOMEM, "wm_net_save: out of memory");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        wm_status st = wmi_fail(WM_EIO, "cannot create a temporary file next to %s: %s", path,
                               strerror(errno));
        free(tmp);
        return st;
    }
    const unsigned char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t k = write(fd, p, left);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        p += k, left -= (size_t)k;
    }
    int err = left > 0 ? errno : 0;
    if (!err && fsync(fd) != 0)
        err = errno;
    if (close(fd) != 0 && !err)
        err = errno;
    if (!err && rename(tmp, path) != 0)
        err = errno;
    if (err) {
        unlink(tmp);
        free(tmp);
        return wmi_fail(WM_EIO, "cannot write %s: %s", path, strerror(err ? err : EIO));
    }
    /* Make the rename itself durable: fsync the directory, named by the
     * path's prefix in tmp (no allocation here, so nothing can fail late). */
    memcpy(tmp, path, plen + 1);
    char *slash = strrchr(tmp, '/');
    const char *dir = slash ? (slash == tmp ? "/" : (*slash = 0, tmp)) : ".";
    int dfd = open(dir, O_RDONLY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(tmp);
    return WM_OK;
}

/* The whole file for net (and opt's state if opt is not NULL) into w. */
static void serialize(wbuf *w, const wm_net *net, const wm_optimizer *opt)
{
    wbuf hdr = {0};
    put_manifold(&hdr, net->m);
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
    put_u32(w, opt != NULL);
    if (opt) {
        const wm_opt_config *c = &opt->cfg;
        put_u32(w, (uint32_t)c->kind);
        put_f32(w, c->lr), put_f32(w, c->volume), put_f32(w, c->momentum);
        put_f32(w, c->beta1), put_f32(w, c->beta2), put_f32(w, c->eps), put_f32(w, c->weight_decay);
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
    wm_status st = write_file_atomic(path, w.buf, w.len);
    free(w.buf);
    return st;
}

wm_status wm_net_save(const wm_net *net, const char *path)
{
    if (!net || !path)
        return wmi_fail(WM_EINVAL, "wm_net_save: %s is NULL", !net ? "net" : "path");
    if (!net->initialised)
        return wmi_fail(WM_ESTATE, "wm_net_save: the net is not initialised (call wm_net_init)");
    return save(net, NULL, path, "wm_net_save");
}

wm_status wm_optimizer_save(const wm_optimizer *opt, const char *path)
{
    if (!opt || !path)
        return wmi_fail(WM_EINVAL, "wm_optimizer_save: %s is NULL", !opt ? "opt" : "path");
    return save(opt->net, opt, path, "wm_optimizer_save");
}

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

typedef struct {
    const char *path;
    wm_basis_fn fn;
    void *user;
    int depth;
} load_ctx;

static wm_status bad(const load_ctx *c, const char *what)
{
    return wmi_fail(WM_EFORMAT, "%s is not a valid model file: %s", c->path, what);
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
            else
                st = wm_manifold_product(&m, a, b);
        }
        wm_manifold_free(a);
        wm_manifold_free(b);
        if (st != WM_OK)
            return st;                  /* the factor's own, precise message */
        break;
    case WM_MF_CUSTOM:
        if (!c->fn)
            return wmi_fail(WM_EINVAL, "%s holds a net on a custom manifold: load it with "
                                      "wm_net_load_custom and the basis callback", c->path);
        if (dim < 1 || dim > 4)
            return bad(c, "bad custom manifold dimension");
        st = wm_manifold_custom(&m, (int)dim, (int)K, periodic, c->fn, c->user);
        break;
    default:
        return bad(c, "unknown manifold kind");
    }
    if (st != WM_OK)
        return st == WM_ENOMEM || st == WM_EINVAL ? st : bad(c, "manifold cannot be rebuilt");
    if (r->bad || m->dim != (int)dim || m->K != (int)K ||
        memcmp(m->periodic, periodic, sizeof(int) * dim) != 0) {
        wm_manifold_free(m);
        return bad(c, r->bad ? "truncated manifold description" : "inconsistent manifold description");
    }
    c->depth--;
    *out = m;
    return WM_OK;
}

static wm_status read_whole(const char *path, unsigned char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return wmi_fail(WM_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return wmi_fail(WM_EIO, "cannot read %s: not a regular file", path);
    }
    if (sb.st_size > MAX_FILE) {
        fclose(f);
        return wmi_fail(WM_EFORMAT, "%s is not a valid model file: %lld bytes is too large", path,
                       (long long)sb.st_size);
    }
    size_t n = (size_t)sb.st_size;
    unsigned char *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return wmi_fail(WM_ENOMEM, "out of memory reading %s (%zu bytes)", path, n);
    }
    size_t got = fread(buf, 1, n, f);
    int err = ferror(f);
    fclose(f);
    if (err || got != n) {
        free(buf);
        return wmi_fail(WM_EIO, "cannot read %s", path);
    }
    *data = buf;
    *len = n;
    return WM_OK;
}

static float get_f32(rbuf *r)
{
    uint32_t v = get_u32(r);
    float f;
    memcpy(&f, &v, 4);
    return f;
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
    if (r->bad || present > 1)
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
        return st;
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
    if (st == WM_OK)
        st = wm_net_set_loss(net, (wm_loss)loss);
    if (st == WM_OK && (st = wm_net_init(net, 0)) == WM_OK) {
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
                      void *user)
{
    unsigned char *data = NULL;
    size_t len = 0;
    wm_status st = read_whole(path, &data, &len);
    if (st != WM_OK)
        return st;
    load_ctx c = {path, fn, user, 0};
    st = parse(data, len, &c, out, opt);
    free(data);
    return st;
}

wm_status wm_net_load(wm_net **out, const char *path)
{
    if (!out || !path)
        return wmi_fail(WM_EINVAL, "wm_net_load: %s is NULL", !out ? "out" : "path");
    return load(out, NULL, path, NULL, NULL);
}

wm_status wm_net_load_custom(wm_net **out, const char *path, wm_basis_fn fn, void *user)
{
    if (!out || !path || !fn)
        return wmi_fail(WM_EINVAL, "wm_net_load_custom: %s is NULL", !out ? "out" : !path ? "path" : "fn");
    return load(out, NULL, path, fn, user);
}

wm_status wm_optimizer_load(wm_optimizer **opt, wm_net **net, const char *path, wm_basis_fn fn,
                            void *user)
{
    if (!opt || !net || !path)
        return wmi_fail(WM_EINVAL, "wm_optimizer_load: %s is NULL", !opt ? "opt" : !net ? "net" : "path");
    wm_net *n = NULL;
    wm_optimizer *o = NULL;
    wm_status st = load(&n, &o, path, fn, user);
    if (st != WM_OK)
        return st;
    *net = n;
    *opt = o;
    return WM_OK;
}
