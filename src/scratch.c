/* scratch.c -- the per-thread scratch block. A thread-local pointer makes the
 * fast path one load; a pthread key exists only so the block is freed when
 * the thread exits. */
#include <pthread.h>
#include <stdlib.h>

#include "scratch.h"

typedef struct {
    void *mem;
    size_t cap;
} thread_block;

static _Thread_local thread_block *mine;
static pthread_key_t exit_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static int key_ok;

static void release(void *p)
{
    thread_block *b = p;
    free(b->mem);
    free(b);
}

static void make_key(void) { key_ok = pthread_key_create(&exit_key, release) == 0; }

void *wmi_thread_scratch(size_t bytes)
{
    if (!mine) {
        pthread_once(&key_once, make_key);
        thread_block *b = calloc(1, sizeof *b);
        if (!b)
            return NULL;
        if (key_ok)
            pthread_setspecific(exit_key, b);
        mine = b;
    }
    if (mine->cap < bytes) {
        size_t cap = bytes + bytes / 4;       /* some headroom against creeping sizes */
        cap = (cap + 63) / 64 * 64;
        void *p = aligned_alloc(64, cap);
        if (!p)
            return NULL;
        free(mine->mem);
        mine->mem = p;
        mine->cap = cap;
    }
    return mine->mem;
}
