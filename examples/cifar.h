/*
 * cifar.h -- read CIFAR-10's binary format (the "binary version" archive,
 * cifar-10-batches-bin/).
 *
 * A file is a sequence of 3073-byte records: one label byte (0..9), then 3072
 * pixel bytes, the 32x32 red plane, then green, then blue, each row by row.
 * That is CHW order, the order wm_net_input_shape wants, so a record's pixels
 * become a network input row as they are. The training set is
 * data_batch_1.bin .. data_batch_5.bin (10000 records each), the test set
 * test_batch.bin.
 *
 * Every function returns 0 on success and -1 on failure, with a message a user
 * can act on (the file name and what was wrong) written to err.
 */
#ifndef WM_EXAMPLES_CIFAR_H
#define WM_EXAMPLES_CIFAR_H

#include <stddef.h>
#include <stdint.h>

#define CIFAR_CHANNELS 3
#define CIFAR_SIDE 32
#define CIFAR_PIXELS (CIFAR_CHANNELS * CIFAR_SIDE * CIFAR_SIDE) /* 3072 */
#define CIFAR_RECORD (1 + CIFAR_PIXELS)                         /* 3073 bytes */
#define CIFAR_CLASSES 10

typedef struct {
    int n;                   /* samples */
    int channels, rows, cols; /* 3 x 32 x 32 */
    float *images;           /* n x 3072 floats in [0,1], CHW per image */
    int32_t *labels;         /* n class indices in 0..9 */
} cifar_dataset;

/* Append the records of one file to ds (which starts zeroed), reading at
 * most max_n - ds->n more of them when max_n > 0. Fails, leaving ds as it
 * was, if the file cannot be read, its size is zero or not a multiple of
 * 3073 bytes, or a label is above 9. */
int cifar_read_file(const char *path, int max_n, cifar_dataset *ds, char *err, size_t errlen);

/* Read a split from dir: train = 1 reads data_batch_1.bin, then _2 .. _5 as
 * far as they exist (data_batch_1.bin is required; a gap followed by a later
 * batch is an error, as it means a damaged copy); train = 0 reads
 * test_batch.bin. max_n > 0 stops after max_n samples. *ds is overwritten. */
int cifar_load(const char *dir, int train, int max_n, cifar_dataset *ds, char *err,
               size_t errlen);

/* Release a dataset's arrays and zero it (the struct itself is the caller's). */
void cifar_free(cifar_dataset *ds);

#endif
