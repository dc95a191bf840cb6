/* linalg.c -- Cholesky, triangular inverse, Gauss-Legendre, Kronecker. */
#include <math.h>
#include <string.h>

#include "linalg.h"
#include "simd.h"

#if defined(__x86_64__)
#include <stdint.h>
#include <xmmintrin.h>
#define WMI_HAVE_STREAM 1
#endif
/* The banded solves run a chunk of BAND_CHUNK floats of every block at a
 * time, summing into a stack buffer: the blocks sit a multiple of 4 KiB
 * apart (and P's cache at Q's offsets), so updating x_k in place while
 * reading x_j would alias every store with the next loads (bits 0-11 equal)
 * and stall; the buffer breaks that. */
enum { BAND_CHUNK = 1024 };

int wmi_cholesky(const double *A, double *L, int n)
{
    memset(L, 0, sizeof(double) * (size_t)n * (size_t)n);
    for (int j = 0; j < n; j++) {
        double d = A[j * n + j];
        for (int k = 0; k < j; k++)
            d -= L[j * n + k] * L[j * n + k];
        /* relative test: a Gram matrix of dependent functions has d ~ 1e-16 */
        if (!(d > 1e-13 * fabs(A[j * n + j])) || !isfinite(d))
            return -1;
        double ljj = sqrt(d);
        L[j * n + j] = ljj;
        for (int i = j + 1; i < n; i++) {
            double v = A[i * n + j];
            for (int k = 0; k < j; k++)
                v -= L[i * n + k] * L[j * n + k];
            L[i * n + j] = v / ljj;
        }
    }
    return 0;
}

void wmi_tri_lower_inverse(const double *L, double *Linv, int n)
{
    memset(Linv, 0, sizeof(double) * (size_t)n * (size_t)n);
    for (int j = 0; j < n; j++) {           /* column j of L^-1: solve L x = e_j */
        Linv[j * n + j] = 1.0 / L[j * n + j];
        for (int i = j + 1; i < n; i++) {
            double v = 0;
            for (int k = j; k < i; k++)
                v -= L[i * n + k] * Linv[k * n + j];
            Linv[i * n + j] = v / L[i * n + i];
        }
    }
}

void wmi_cholesky_solve(const double *L, double *b, int n)
{
    for (int i = 0; i < n; i++) {           /* L y = b */
        double v = b[i];
        for (int k = 0; k < i; k++)
            v -= L[i * n + k] * b[k];
        b[i] = v / L[i * n + i];
    }
    for (int i = n - 1; i >= 0; i--) {      /* L^T x = y */
        double v = b[i];
        for (int k = i + 1; k < n; k++)
            v -= L[k * n + i] * b[k];
        b[i] = v / L[i * n + i];
    }
}

void wmi_gauss_legendre(int n, double *x, double *w)
{
    /* Newton on P_n from Chebyshev guesses (Numerical Recipes' gauleg),
     * then map [-1,1] -> [0,1]. */
    for (int i = 0; i < (n + 1) / 2; i++) {
        double z = cos(3.141592653589793 * (i + 0.75) / (n + 0.5)), pp = 1;
        for (int it = 0; it < 100; it++) {
            double p1 = 1, p2 = 0;
            for (int j = 1; j <= n; j++) {
                double p3 = p2;
                p2 = p1;
                p1 = ((2.0 * j - 1) * z * p2 - (j - 1.0) * p3) / j;
            }
            pp = n * (z * p1 - p2) / (z * z - 1);
            double z1 = z;
            z = z1 - p1 / pp;
            if (fabs(z - z1) < 1e-15)
                break;
        }
        double wi = 2 / ((1 - z * z) * pp * pp);
        x[i] = 0.5 * (1 - z);
        x[n - 1 - i] = 0.5 * (1 + z);
        w[i] = w[n - 1 - i] = 0.5 * wi;
    }
}

void wmi_kron(const double *A, int ma, int na, const double *B, int mb, int nb, double *C)
{
    int nc = na * nb;
    for (int i = 0; i < ma; i++)
        for (int j = 0; j < na; j++)
            for (int p = 0; p < mb; p++)
                for (int q = 0; q < nb; q++)
                    C[(i * mb + p) * nc + j * nb + q] = A[i * na + j] * B[p * nb + q];
}

WMI_SIMD_CLONES
void wmi_band_solve_lower_row(const double *L, int K, int p, float *x, size_t len, int k)
{
    _Alignas(64) float acc[BAND_CHUNK];
    float d = (float)(1.0 / L[k * K + k]);
    for (size_t e0 = 0; e0 < len; e0 += BAND_CHUNK) {
        size_t c = len - e0 < BAND_CHUNK ? len - e0 : BAND_CHUNK;
        float *restrict xk = x + (size_t)k * len + e0;
        for (size_t e = 0; e < c; e++)
            acc[e] = xk[e];
        for (int j = k - p > 0 ? k - p : 0; j < k; j++) {
            const float *restrict xj = x + (size_t)j * len + e0;
            float a = (float)L[k * K + j];
            for (size_t e = 0; e < c; e++)
                acc[e] -= a * xj[e];
        }
        for (size_t e = 0; e < c; e++)
            xk[e] = acc[e] * d;
    }
}

void wmi_band_solve_lower(const double *L, int K, int p, float *x, size_t len)
{
    for (int k = 0; k < K; k++)
        wmi_band_solve_lower_row(L, K, p, x, len, k);
}

WMI_SIMD_CLONES
void wmi_band_solve_upper_t(const double *L, int K, int p, const float *b, float *x, size_t len)
{
    _Alignas(64) float acc[BAND_CHUNK];
    for (int k = K - 1; k >= 0; k--) {       /* x_k = (b_k - sum_{j=k+1..k+p} L_jk x_j) / L_kk */
        float d = (float)(1.0 / L[k * K + k]);
        int top = k + p < K - 1 ? k + p : K - 1;
        for (size_t e0 = 0; e0 < len; e0 += BAND_CHUNK) {
            size_t c = len - e0 < BAND_CHUNK ? len - e0 : BAND_CHUNK;
            float *restrict xk = x + (size_t)k * len + e0;
            const float *restrict bk = b + (size_t)k * len + e0;
            for (size_t e = 0; e < c; e++)
                acc[e] = bk[e];
            for (int j = k + 1; j <= top; j++) {
                const float *restrict xj = x + (size_t)j * len + e0;
                float a = (float)L[j * K + k];
                for (size_t e = 0; e < c; e++)
                    acc[e] -= a * xj[e];
            }
            for (size_t e = 0; e < c; e++)
                xk[e] = acc[e] * d;
        }
    }
}

WMI_SIMD_CLONES
void wmi_band_lower_ring(const double *L, int K, int p, int k, float *ring, size_t slot, size_t len)
{
    _Alignas(64) float acc[BAND_CHUNK];
    float d = (float)(1.0 / L[k * K + k]);
    for (size_t e0 = 0; e0 < len; e0 += BAND_CHUNK) {
        size_t c = len - e0 < BAND_CHUNK ? len - e0 : BAND_CHUNK;
        float *restrict xk = ring + (size_t)(k % (p + 1)) * slot + e0;
        for (size_t e = 0; e < c; e++)
            acc[e] = xk[e];
        for (int j = k - p > 0 ? k - p : 0; j < k; j++) {
            const float *restrict xj = ring + (size_t)(j % (p + 1)) * slot + e0;
            float a = (float)L[k * K + j];
            for (size_t e = 0; e < c; e++)
                acc[e] -= a * xj[e];
        }
        for (size_t e = 0; e < c; e++)
            xk[e] = acc[e] * d;
    }
}

#if defined(WMI_HAVE_STREAM) && defined(__GNUC__) && !defined(WMI_NO_STREAM512)
#include <immintrin.h>
#define WMI_HAVE_STREAM512 1
/* store_stream's loop with whole-line stores: with 16-byte ones (the SSE2
 * baseline) the P refresh cost ~0.6 ms more a bench step. */
__attribute__((target("avx512f"))) static void store_stream512(float *dst, const float *src, size_t n)
{
    size_t e = 0;
    for (; e + 4 <= n && ((uintptr_t)(dst + e) & 63); e += 4)
        _mm_stream_ps(dst + e, _mm_loadu_ps(src + e));
    for (; e + 16 <= n; e += 16)
        _mm512_stream_ps(dst + e, _mm512_loadu_ps(src + e));
    for (; e + 4 <= n; e += 4)
        _mm_stream_ps(dst + e, _mm_loadu_ps(src + e));
    for (; e < n; e++)
        dst[e] = src[e];
}
#endif

/* n floats from src to dst, bypassing the cache where dst allows it. */
static inline void store_stream(float *dst, const float *src, size_t n)
{
#ifdef WMI_HAVE_STREAM
    if (((uintptr_t)dst & 15) == 0) {
#ifdef WMI_HAVE_STREAM512
        __builtin_cpu_init();           /* idempotent; as layers/maxpool.c */
        if (__builtin_cpu_supports("avx512f")) {
            store_stream512(dst, src, n);
            return;
        }
#endif
        size_t e = 0;
        for (; e + 4 <= n; e += 4)
            _mm_stream_ps(dst + e, _mm_load_ps(src + e));
        for (; e < n; e++)
            dst[e] = src[e];
        return;
    }
#endif
    memcpy(dst, src, sizeof(float) * n);
}

#ifndef STREAM_SUB
#define STREAM_SUB 256          /* floats of every block per round */
#endif
/* x_k = (b_k - a_1 x_{k+1} - ... - a_T x_{k+T}) d for T = NT terms, element
 * by element: the general loop's operations in its order (C11 mode never
 * contracts them), in one pass instead of T + 2. */
#define UPPER_PASS(NT)                                                                  \
    for (size_t e = 0; e < n; e++) {                                                   \
        float v = bk[e];                                                               \
        if (NT > 0)                                                                    \
            v -= a1 * x1[e];                                                           \
        if (NT > 1)                                                                    \
            v -= a2 * x2[e];                                                           \
        if (NT > 2)                                                                    \
            v -= a3 * x3[e];                                                           \
        acc[e] = v * d;                                                                \
    }

WMI_SIMD_CLONES
void wmi_band_upper_t_stream(const double *L, int K, int p, const float *b, size_t bs, float *x,
                             size_t xs, size_t c)
{
    /* the last p + 1 solved blocks' round, kept here: x itself is written
     * past the cache and never read back */
    _Alignas(64) float ring[(WM_BAND_MAX_P + 1) * STREAM_SUB];
    for (size_t e0 = 0; e0 < c; e0 += STREAM_SUB) {
        size_t n = c - e0 < STREAM_SUB ? c - e0 : STREAM_SUB;
        for (int k = K - 1; k >= 0; k--) {
            float d = (float)(1.0 / L[k * K + k]);
            int top = k + p < K - 1 ? k + p : K - 1;
            float *restrict acc = ring + (size_t)(k % (p + 1)) * STREAM_SUB;
            const float *restrict bk = b + (size_t)k * bs + e0;
            if (top - k <= 3) {
                /* up to 3 terms (degree <= 3): one pass, the same operations in the same order */
                const float *restrict x1 = ring + (size_t)((k + 1) % (p + 1)) * STREAM_SUB;
                const float *restrict x2 = ring + (size_t)((k + 2) % (p + 1)) * STREAM_SUB;
                const float *restrict x3 = ring + (size_t)((k + 3) % (p + 1)) * STREAM_SUB;
                float a1 = top >= k + 1 ? (float)L[(k + 1) * K + k] : 0.0f;
                float a2 = top >= k + 2 ? (float)L[(k + 2) * K + k] : 0.0f;
                float a3 = top >= k + 3 ? (float)L[(k + 3) * K + k] : 0.0f;
                switch (top - k) {
                case 0: UPPER_PASS(0); break;
                case 1: UPPER_PASS(1); break;
                case 2: UPPER_PASS(2); break;
                default: UPPER_PASS(3); break;
                }
            } else {
                for (size_t e = 0; e < n; e++)
                    acc[e] = bk[e];
                for (int j = k + 1; j <= top; j++) {
                    const float *restrict xj = ring + (size_t)(j % (p + 1)) * STREAM_SUB;
                    float a = (float)L[j * K + k];
                    for (size_t e = 0; e < n; e++)
                        acc[e] -= a * xj[e];
                }
                for (size_t e = 0; e < n; e++)
                    acc[e] *= d;
            }
            store_stream(x + (size_t)k * xs + e0, acc, n);
        }
    }
#ifdef WMI_HAVE_STREAM
    _mm_sfence();
#endif
}
