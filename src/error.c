/* error.c -- status strings and the thread-local last-error text. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

#define WM_STR2(x) #x
#define WM_STR(x) WM_STR2(x)

/* The only mutable state besides per-thread scratch: one message per thread. */
static _Thread_local char last_error[512];

wm_status wmi_fail(wm_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return st;
}

wm_status wmi_fail_prefix(wm_status st, const char *fmt, ...)
{
    char old[sizeof last_error];
    va_list ap;
    memcpy(old, last_error, sizeof old);
    va_start(ap, fmt);
    int n = vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof last_error) /* append the old text after the prefix */
        memcpy(last_error + n, old, sizeof last_error - (size_t)n - 1);
    last_error[sizeof last_error - 1] = 0;
    return st;
}

const char *wmi_shown_path(const char *path, char *buf)
{
    size_t n = strlen(path);
    if (n <= 160)
        return path;
    memcpy(buf, path, 60);
    memcpy(buf + 60, "...", 3);
    memcpy(buf + 63, path + n - 96, 97);
    return buf;
}

const char *wm_last_error(void) { return last_error; }

const char *wm_status_str(wm_status st)
{
    switch (st) {
    case WM_OK:       return "ok";
    case WM_EINVAL:   return "invalid argument";
    case WM_ENOMEM:   return "out of memory";
    case WM_EIO:      return "input/output error";
    case WM_EFORMAT:  return "not a valid model file";
    case WM_ENUMERIC: return "non-finite result";
    case WM_ESTATE:   return "call not allowed in this state";
    }
    return "unknown status";
}

const char *wm_version(void)
{
    return WM_STR(WM_VERSION_MAJOR) "." WM_STR(WM_VERSION_MINOR) "." WM_STR(WM_VERSION_PATCH);
}

wm_status wm_error_set(wm_status st, const char *msg)
{
    snprintf(last_error, sizeof last_error, "%s", msg ? msg : "");
    return st;
}
