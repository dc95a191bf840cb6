/* cifar.c -- CIFAR-10 binary reader; see cifar.h. */
#include "cifar.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Grow ds's arrays to hold n samples; the old contents stay. */
static int grow(cifar_dataset *ds, int n)
{
    float *img = realloc(ds->images, (size_t)n * CIFAR_PIXELS * sizeof *img);
    if (!img)
        return -1;
    ds->images = img;
    int32_t *lab = realloc(ds->labels, (size_t)n * sizeof *lab);
    if (!lab)
        return -1;
    ds->labels = lab;
    return 0;
}

int cifar_read_file(const char *path, int max_n, cifar_dataset *ds, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    int rc = -1;
    unsigned char *rec = NULL;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        snprintf(err, errlen, "cannot stat %s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s is not a regular file", path);
        goto done;
    }
    /* The size alone tells a CIFAR-10 binary file from most other files (the
     * Python pickles of the other archive, a gzip, a truncated download). */
    if (sb.st_size == 0 || sb.st_size % CIFAR_RECORD != 0) {
        snprintf(err, errlen,
                 "%s: size %lld bytes is not a positive multiple of %d (CIFAR-10 binary "
                 "records are 1 label byte + %d pixel bytes; is this the binary version, "
                 "cifar-10-binary.tar.gz?)",
                 path, (long long)sb.st_size, CIFAR_RECORD, CIFAR_PIXELS);
        goto done;
    }
    long long in_file = (long long)(sb.st_size / CIFAR_RECORD);
    int want = in_file > 100000000 ? 100000000 : (int)in_file;
    if (max_n > 0 && want > max_n - ds->n)
        want = max_n - ds->n;
    if (want <= 0) {
        rc = 0;
        goto done;
    }
    rec = malloc(CIFAR_RECORD);
    if (!rec || grow(ds, ds->n + want)) {
        snprintf(err, errlen, "%s: out of memory for %d images", path, ds->n + want);
        goto done;
    }
    for (int i = 0; i < want; i++) {
        if (fread(rec, 1, CIFAR_RECORD, f) != CIFAR_RECORD) {
            snprintf(err, errlen, "%s: %s at record %d", path,
                     ferror(f) ? strerror(errno) : "unexpected end of file", i);
            goto done;
        }
        if (rec[0] >= CIFAR_CLASSES) {
            snprintf(err, errlen, "%s: label %d of record %d (byte offset %lld) is outside 0..%d",
                     path, rec[0], i, (long long)i * CIFAR_RECORD, CIFAR_CLASSES - 1);
            goto done;
        }
        float *dst = ds->images + (size_t)(ds->n + i) * CIFAR_PIXELS;
        for (int p = 0; p < CIFAR_PIXELS; p++)
            dst[p] = (float)rec[1 + p] * (1.0f / 255.0f);
        ds->labels[ds->n + i] = rec[0];
    }
    /* Only now does ds take the new samples: a failure above leaves n as it was. */
    ds->n += want;
    ds->channels = CIFAR_CHANNELS;
    ds->rows = ds->cols = CIFAR_SIDE;
    rc = 0;
done:
    free(rec);
    fclose(f);
    return rc;
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

int cifar_load(const char *dir, int train, int max_n, cifar_dataset *ds, char *err,
               size_t errlen)
{
    char path[4200];
    memset(ds, 0, sizeof *ds);
    if (!train) {
        snprintf(path, sizeof path, "%s/test_batch.bin", dir);
        if (cifar_read_file(path, max_n, ds, err, errlen)) {
            cifar_free(ds);
            return -1;
        }
        return 0;
    }
    for (int b = 1; b <= 5 && (max_n <= 0 || ds->n < max_n); b++) {
        snprintf(path, sizeof path, "%s/data_batch_%d.bin", dir, b);
        if (b > 1 && !exists(path)) {
            /* Fewer than five batches is a usable (smaller) training set; a
             * hole in the sequence is more likely a damaged copy. */
            for (int later = b + 1; later <= 5; later++) {
                char lp[4200];
                snprintf(lp, sizeof lp, "%s/data_batch_%d.bin", dir, later);
                if (exists(lp)) {
                    snprintf(err, errlen, "%s is missing but %s is present", path, lp);
                    cifar_free(ds);
                    return -1;
                }
            }
            break;
        }
        if (cifar_read_file(path, max_n, ds, err, errlen)) {
            cifar_free(ds);
            return -1;
        }
    }
    return 0;
}

void cifar_free(cifar_dataset *ds)
{
    free(ds->images);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}
