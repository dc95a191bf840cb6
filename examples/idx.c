/* idx.c -- IDX reader; see idx.h. */
#include "idx.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define IDX_LABEL_MAGIC 0x00000801u
#define IDX_IMAGE_MAGIC 0x00000803u
/* No real IDX file is larger; a bigger header value means a corrupt file, and
 * refusing it keeps us from a huge allocation. */
#define IDX_MAX_ITEMS (1 << 26)
#define IDX_MAX_SIDE 4096

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Read exactly len bytes; on a short read explain whether the file ended
 * early (truncated) or zlib failed (corrupt compressed stream). */
static int read_exact(gzFile f, const char *path, void *buf, size_t len, const char *what,
                      char *err, size_t errlen)
{
    unsigned char *p = buf;
    size_t got = 0;
    while (got < len) {
        size_t chunk = len - got;
        if (chunk > (1u << 30))
            chunk = 1u << 30;
        int r = gzread(f, p + got, (unsigned)chunk);
        if (r < 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            if (zerr == Z_BUF_ERROR) /* zlib's word for a stream that stops early */
                seterr(err, errlen, "%s: truncated: the gzip stream ends early while reading %s",
                       path, what);
            else
                seterr(err, errlen, "%s: corrupt gzip data while reading %s (%s)", path, what,
                       msg ? msg : "unknown zlib error");
            return -1;
        }
        if (r == 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            if (zerr != Z_OK && zerr != Z_BUF_ERROR)
                seterr(err, errlen, "%s: corrupt gzip data while reading %s (%s)", path, what, msg);
            else
                seterr(err, errlen, "%s: truncated: file ends after %zu of %zu bytes of %s", path,
                       got, len, what);
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

static gzFile open_idx(const char *path, char *err, size_t errlen)
{
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f) {
        seterr(err, errlen, "%s: cannot open: %s", path, errno ? strerror(errno) : "gzopen failed");
        return NULL;
    }
    gzbuffer(f, 1 << 17);
    return f;
}

/* Read the magic and the ndim sizes; checks the magic against want. */
static int read_header(gzFile f, const char *path, uint32_t want, int ndim, uint32_t *dims,
                       char *err, size_t errlen)
{
    unsigned char b[4 * 4];
    /* The magic first, so that a foreign or swapped file is named as such
     * even when it is shorter than the header we expect. */
    if (read_exact(f, path, b, 4, "the IDX magic number", err, errlen))
        return -1;
    uint32_t magic = be32(b);
    if (magic != want) {
        seterr(err, errlen,
               "%s: not an IDX %s file: magic number 0x%08x, expected 0x%08x "
               "(is it the right file, and not corrupt?)",
               path, want == IDX_IMAGE_MAGIC ? "image" : "label", (unsigned)magic, (unsigned)want);
        return -1;
    }
    if (read_exact(f, path, b + 4, 4 * (size_t)ndim, "the IDX header", err, errlen))
        return -1;
    for (int d = 0; d < ndim; d++)
        dims[d] = be32(b + 4 + 4 * d);
    return 0;
}

/* The readers below also report the count the file's header declares, so
 * that idx_load can compare whole files even when reading only a prefix. */
static int read_images(const char *path, int max_n, float **out, int *n, int *rows, int *cols,
                       uint32_t *in_file, char *err, size_t errlen)
{
    uint32_t dims[3];
    gzFile f = open_idx(path, err, errlen);
    if (!f)
        return -1;
    if (read_header(f, path, IDX_IMAGE_MAGIC, 3, dims, err, errlen)) {
        gzclose(f);
        return -1;
    }
    if (dims[0] > IDX_MAX_ITEMS || dims[1] < 1 || dims[1] > IDX_MAX_SIDE || dims[2] < 1 ||
        dims[2] > IDX_MAX_SIDE) {
        seterr(err, errlen, "%s: implausible image dimensions %u x %u x %u (corrupt header?)",
               path, (unsigned)dims[0], (unsigned)dims[1], (unsigned)dims[2]);
        gzclose(f);
        return -1;
    }
    int count = (int)dims[0];
    if (max_n > 0 && max_n < count)
        count = max_n;
    size_t pix = (size_t)dims[1] * dims[2];
    size_t total = (size_t)count * pix;
    unsigned char *raw = malloc(total ? total : 1);
    float *img = malloc((total ? total : 1) * sizeof *img);
    if (!raw || !img) {
        seterr(err, errlen, "%s: out of memory for %d images", path, count);
        free(raw);
        free(img);
        gzclose(f);
        return -1;
    }
    if (read_exact(f, path, raw, total, "the image data", err, errlen)) {
        free(raw);
        free(img);
        gzclose(f);
        return -1;
    }
    gzclose(f);
    for (size_t i = 0; i < total; i++)
        img[i] = (float)raw[i] / 255.0f;
    free(raw);
    *out = img;
    *n = count;
    *in_file = dims[0];
    *rows = (int)dims[1];
    *cols = (int)dims[2];
    return 0;
}

static int read_labels(const char *path, int max_n, int32_t **out, int *n, uint32_t *in_file,
                       char *err, size_t errlen)
{
    uint32_t dims[1];
    gzFile f = open_idx(path, err, errlen);
    if (!f)
        return -1;
    if (read_header(f, path, IDX_LABEL_MAGIC, 1, dims, err, errlen)) {
        gzclose(f);
        return -1;
    }
    if (dims[0] > IDX_MAX_ITEMS) {
        seterr(err, errlen, "%s: implausible label count %u (corrupt header?)", path,
               (unsigned)dims[0]);
        gzclose(f);
        return -1;
    }
    int count = (int)dims[0];
    if (max_n > 0 && max_n < count)
        count = max_n;
    unsigned char *raw = malloc(count ? (size_t)count : 1);
    int32_t *lab = malloc((count ? (size_t)count : 1) * sizeof *lab);
    if (!raw || !lab) {
        seterr(err, errlen, "%s: out of memory for %d labels", path, count);
        free(raw);
        free(lab);
        gzclose(f);
        return -1;
    }
    if (read_exact(f, path, raw, (size_t)count, "the labels", err, errlen)) {
        free(raw);
        free(lab);
        gzclose(f);
        return -1;
    }
    gzclose(f);
    for (int i = 0; i < count; i++)
        lab[i] = raw[i];
    free(raw);
    *out = lab;
    *n = count;
    *in_file = dims[0];
    return 0;
}

int idx_read_images(const char *path, int max_n, float **out, int *n, int *rows, int *cols,
                    char *err, size_t errlen)
{
    uint32_t in_file;
    return read_images(path, max_n, out, n, rows, cols, &in_file, err, errlen);
}

int idx_read_labels(const char *path, int max_n, int32_t **out, int *n, char *err, size_t errlen)
{
    uint32_t in_file;
    return read_labels(path, max_n, out, n, &in_file, err, errlen);
}

int idx_load(const char *dir, const char *split, int max_n, int n_classes, idx_dataset *ds,
             char *err, size_t errlen)
{
    char ipath[4096], lpath[4096];
    memset(ds, 0, sizeof *ds);
    snprintf(ipath, sizeof ipath, "%s/%s-images-idx3-ubyte.gz", dir, split);
    snprintf(lpath, sizeof lpath, "%s/%s-labels-idx1-ubyte.gz", dir, split);

    int ni = 0, nl = 0;
    uint32_t fi = 0, fl = 0;
    if (read_images(ipath, max_n, &ds->images, &ni, &ds->rows, &ds->cols, &fi, err, errlen))
        return -1;
    if (read_labels(lpath, max_n, &ds->labels, &nl, &fl, err, errlen)) {
        idx_free(ds);
        return -1;
    }
    if (fi != fl || ni != nl) {
        seterr(err, errlen, "%s and %s disagree: %u images but %u labels", ipath, lpath,
               (unsigned)fi, (unsigned)fl);
        idx_free(ds);
        return -1;
    }
    if (ni == 0) {
        seterr(err, errlen, "%s: holds no samples", ipath);
        idx_free(ds);
        return -1;
    }
    for (int i = 0; i < nl; i++) {
        if (ds->labels[i] < 0 || ds->labels[i] >= n_classes) {
            seterr(err, errlen, "%s: label %d of sample %d is outside 0..%d", lpath,
                   (int)ds->labels[i], i, n_classes - 1);
            idx_free(ds);
            return -1;
        }
    }
    ds->n = ni;
    return 0;
}

void idx_free(idx_dataset *ds)
{
    if (!ds)
        return;
    free(ds->images);
    free(ds->labels);
    ds->images = NULL;
    ds->labels = NULL;
    ds->n = 0;
}
