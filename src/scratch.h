/* scratch.h -- per-thread workspace for calls on a const net (wm_infer,
 * wm_evaluate): it grows to the largest request seen on the thread, is reused
 * afterwards (no allocation in steady state) and is freed at thread exit. */
#ifndef WM_SCRATCH_H
#define WM_SCRATCH_H

#include <stddef.h>

/* At least `bytes` bytes, 64-byte aligned, or NULL when out of memory.
 * Valid until this thread's next call. */
void *wmi_thread_scratch(size_t bytes);

#endif
