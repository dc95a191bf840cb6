/*
 * idx.h -- read IDX files (the MNIST / Fashion-MNIST format), gzipped or not.
 *
 * IDX: a big-endian header (magic 0x00000801 for a label file of unsigned
 * bytes, 0x00000803 for an image file of unsigned bytes, i.e. two zero bytes,
 * a type byte 0x08 and the number of dimensions), one 32-bit big-endian size
 * per dimension, then the data. Files are read through zlib's gzread, which
 * also reads uncompressed files as they are.
 *
 * Every function returns 0 on success and -1 on failure, with a message a user
 * can act on (the file name and what was wrong) written to err.
 */
#ifndef WM_EXAMPLES_IDX_H
#define WM_EXAMPLES_IDX_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int n;            /* samples */
    int rows, cols;   /* image size (28 x 28 for Fashion-MNIST) */
    float *images;    /* n x rows x cols, pixel values scaled to [0,1] */
    int32_t *labels;  /* n class indices */
} idx_dataset;

/* Read an image file: *out receives n x rows x cols floats in [0,1] (free()
 * it). max_n > 0 reads only the first max_n images (fewer if the file has
 * fewer); max_n <= 0 reads them all. */
int idx_read_images(const char *path, int max_n, float **out, int *n, int *rows, int *cols,
                    char *err, size_t errlen);

/* Read a label file: *out receives n int32 labels (free() it). max_n as above. */
int idx_read_labels(const char *path, int max_n, int32_t **out, int *n,
                    char *err, size_t errlen);

/* Read DIR/SPLIT-images-idx3-ubyte.gz and DIR/SPLIT-labels-idx1-ubyte.gz
 * (SPLIT is "train" or "t10k"), at most max_n samples, and check that the two
 * files agree on the sample count and that labels lie in [0, n_classes). */
int idx_load(const char *dir, const char *split, int max_n, int n_classes, idx_dataset *ds,
             char *err, size_t errlen);

/* Release a dataset's arrays (the struct itself is the caller's). */
void idx_free(idx_dataset *ds);

#endif
