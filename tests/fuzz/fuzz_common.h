/* fuzz_common.h -- helpers shared by the libFuzzer harnesses (tests/fuzz/).
 *
 * A harness reports a broken invariant by printing it and calling abort(),
 * which libFuzzer records as a crash with the input that caused it. */
#ifndef WM_FUZZ_COMMON_H
#define WM_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#include "wmanifold.h"

#define FZ_CHECK(cond, ...)                                                       \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "fuzz invariant broken at %s:%d: %s\n  ", __FILE__,   \
                    __LINE__, #cond);                                             \
            fprintf(stderr, __VA_ARGS__);                                         \
            fprintf(stderr, "\n  last error: %s\n", wm_last_error());             \
            abort();                                                              \
        }                                                                         \
    } while (0)

/* Every status a call may return is one of the enum's values. */
static inline int fz_status_valid(wm_status st)
{
    return (unsigned)st <= (unsigned)WM_ESTATE;
}

/* A failing call says what was wrong, in words. */
#define FZ_CHECK_STATUS(st, what)                                                 \
    do {                                                                          \
        FZ_CHECK(fz_status_valid(st), "%s returned %d", what, (int)(st));         \
        if ((st) != WM_OK)                                                        \
            FZ_CHECK(wm_last_error()[0] != 0, "%s failed (%s) with no message",   \
                     what, wm_status_str(st));                                    \
    } while (0)

/* Reflected CRC-32 (poly 0xEDB88320), the model format's checksum: the
 * harnesses recompute it so mutated files get past the checksum and reach
 * the parser. Independent of the library's table-driven version. */
static inline uint32_t fz_crc32(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static inline void fz_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t fz_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A private directory for scratch files: /dev/shm (memory) when usable,
 * else /tmp. It and its files are removed at exit. */
static char fz_dir[64];

static void fz_remove_dir(void)
{
    DIR *d = opendir(fz_dir);
    if (d) {
        struct dirent *e;
        char p[600];
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            snprintf(p, sizeof p, "%s/%s", fz_dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(fz_dir);
}

static inline const char *fz_scratch_dir(void)
{
    if (fz_dir[0])
        return fz_dir;
    strcpy(fz_dir, "/dev/shm/wm_fuzz_XXXXXX");
    if (!mkdtemp(fz_dir)) {
        strcpy(fz_dir, "/tmp/wm_fuzz_XXXXXX");
        if (!mkdtemp(fz_dir)) {
            perror("mkdtemp");
            abort();
        }
    }
    atexit(fz_remove_dir);
    return fz_dir;
}

#endif
