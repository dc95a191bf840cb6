/* scratch.h -- per-thread workspace for calls on a const net (wm_infer,
 * wm_evaluate): it grows to the largest request seen on the thread, is reused
 * afterwards (no allocation in steady state) and is freed at thread exit,
 * at wm_scratch_free, or when the library is unloaded. */
#ifndef WM_SCRATCH_H
#define WM_SCRATCH_H

#include <stddef.h>

#include "wmanifold.h"

/* This thread's block of at least `bytes` bytes, 64-byte aligned, marked in
 * use until wmi_scratch_release. WM_ESTATE when the thread's block is
 * already in use (a call from inside a basis callback), WM_ENOMEM; fn names
 * the public call in the message. */
wm_status wmi_scratch_acquire(size_t bytes, void **mem, const char *fn);

/* Done with the block acquired by this thread. */
void wmi_scratch_release(void);

#endif
