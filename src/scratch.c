/* scratch.c -- the per-thread scratch block behind calls on a const net
 * (wm_infer, wm_evaluate).
 *
 * Each thread's block header lives in its own thread-local storage; its
 * memory grows to the largest request and is reused (no allocation in steady
 * state). A pthread key frees it at thread exit. Blocks of 1 MiB and more
 * are mapped directly, so a thread's exit returns them to the system (from
 * malloc, glibc's moving mmap threshold kept 200 threads' 19 MB blocks in
 * its arenas: RSS 89-126 MB higher after they had exited).
 *
 * Unloading (dlclose): the key's destructor would be unmapped code, and an
 * undeleted key per load runs out after ~1000 loads, so a library destructor
 * deletes the key and frees every idle thread's block, found through a
 * registry of the live blocks. A thread still inside the library then (only
 * possible at process exit) keeps its block; state tells it apart.
 *
 * A block is BUSY while a call uses it, so a call made from inside a basis
 * callback on the same thread is refused instead of reusing memory that is
 * in use. The fast path is one compare-and-swap each way; growing, freeing
 * and the registry take one mutex. */
#define _DEFAULT_SOURCE   /* MAP_ANONYMOUS */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "error.h"
#include "scratch.h"

enum { IDLE, BUSY, RECLAIMED };
#define MAP_THRESHOLD ((size_t)1 << 20)

typedef struct block {
    void *mem;
    size_t cap;
    int mapped;                   /* mem came from mmap */
    int linked;                   /* in the registry */
    atomic_int state;
    struct block *prev, *next;
} block;

static _Thread_local block mine;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static block *registry;           /* every linked block, any thread */
static pthread_key_t exit_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static int key_ok;

static void free_mem(block *b)
{
    if (b->mem && b->mapped)
        munmap(b->mem, b->cap);
    else
        free(b->mem);
    b->mem = NULL;
    b->cap = 0;
    b->mapped = 0;
}

static void unlink_block(block *b)
{
    if (!b->linked)
        return;
    if (b->prev)
        b->prev->next = b->next;
    else
        registry = b->next;
    if (b->next)
        b->next->prev = b->prev;
    b->prev = b->next = NULL;
    b->linked = 0;
}

/* Thread exit: the block's memory goes; its header is the thread's TLS. */
static void on_thread_exit(void *p)
{
    block *b = p;
    pthread_mutex_lock(&registry_lock);
    unlink_block(b);
    free_mem(b);
    pthread_mutex_unlock(&registry_lock);
}

static void make_key(void) { key_ok = pthread_key_create(&exit_key, on_thread_exit) == 0; }

__attribute__((destructor)) static void on_unload(void)
{
    pthread_mutex_lock(&registry_lock);
    while (registry) {
        block *b = registry;
        int idle = IDLE;
        unlink_block(b);
        if (atomic_compare_exchange_strong(&b->state, &idle, RECLAIMED))
            free_mem(b);          /* a BUSY block's thread is still running: it keeps it */
    }
    if (key_ok)
        pthread_key_delete(exit_key);
    key_ok = 0;
    pthread_mutex_unlock(&registry_lock);
}

wm_status wmi_scratch_acquire(size_t bytes, void **mem, const char *fn)
{
    block *b = &mine;
    int idle = IDLE;
    if (!atomic_compare_exchange_strong(&b->state, &idle, BUSY)) {
        if (idle == BUSY)
            return wmi_fail(WM_ESTATE, "%s: called on a thread already inside wm_infer or wm_evaluate "
                                      "(from a basis callback?); a callback must not call them", fn);
        /* RECLAIMED by the unload destructor (process exit): start over */
        pthread_mutex_lock(&registry_lock);
        b->mem = NULL, b->cap = 0, b->mapped = 0, b->linked = 0;
        pthread_mutex_unlock(&registry_lock);
        atomic_store(&b->state, BUSY);
    }
    if (b->cap >= bytes && b->mem) {
        *mem = b->mem;
        return WM_OK;
    }
    size_t cap = bytes + bytes / 4;               /* headroom against creeping sizes */
    cap = cap < bytes || cap > SIZE_MAX - 4096 ? SIZE_MAX : (cap + 4095) / 4096 * 4096;
    void *p = NULL;
    int mapped = cap >= MAP_THRESHOLD;
    if (cap != SIZE_MAX) {
        if (mapped) {
            p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            p = p == MAP_FAILED ? NULL : p;
        } else {
            p = aligned_alloc(64, cap);
        }
    }
    if (!p) {
        atomic_store(&b->state, IDLE);
        return wmi_fail(WM_ENOMEM, "%s: out of memory for %zu bytes of scratch", fn, bytes);
    }
    pthread_once(&key_once, make_key);
    pthread_mutex_lock(&registry_lock);
    free_mem(b);
    b->mem = p, b->cap = cap, b->mapped = mapped;
    if (!b->linked) {
        b->next = registry;
        if (registry)
            registry->prev = b;
        registry = b;
        b->linked = 1;
        if (key_ok)
            pthread_setspecific(exit_key, b);
    }
    pthread_mutex_unlock(&registry_lock);
    *mem = p;
    return WM_OK;
}

void wmi_scratch_release(void) { atomic_store(&mine.state, IDLE); }

void wm_scratch_free(void)
{
    block *b = &mine;
    int idle = IDLE;
    if (!atomic_compare_exchange_strong(&b->state, &idle, BUSY))
        return;                   /* in use (a callback), or reclaimed: nothing to do */
    pthread_mutex_lock(&registry_lock);
    free_mem(b);
    pthread_mutex_unlock(&registry_lock);
    atomic_store(&b->state, IDLE);
}
