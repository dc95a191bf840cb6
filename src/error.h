/* error.h -- one-line failure reporting: set this thread's message, return the code. */
#ifndef WM_ERROR_H
#define WM_ERROR_H

#include "wmanifold.h"

#if defined(__GNUC__)
#define WM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define WM_PRINTF(a, b)
/* A path as shown in a message: itself if it has at most 160 bytes, else its
 * first 60 and last 96 bytes around "...", so the message's reason is never
 * cut off by a long path (messages hold 511 bytes). buf: 164 bytes at least. */
#define WMI_SHOWN_PATH 164
const char *wmi_shown_path(const char *path, char *buf);

#endif

/* Record "fmt..." as this thread's last error and return st, so every check
 * reads like the rule it enforces:  if (n < 1) return wmi_fail(WM_EINVAL, "..."); */
wm_status wmi_fail(wm_status st, const char *fmt, ...) WM_PRINTF(2, 3);

/* Prefix the current message with context ("layer 2: ...") and return st. */
wm_status wmi_fail_prefix(wm_status st, const char *fmt, ...) WM_PRINTF(2, 3);

/* A path as shown in a message: itself if it has at most 160 bytes, else its
 * first 60 and last 96 bytes around "...", so the message's reason is never
 * cut off by a long path (messages hold 511 bytes). buf: 164 bytes at least. */
#define WMI_SHOWN_PATH 164
const char *wmi_shown_path(const char *path, char *buf);

#endif
