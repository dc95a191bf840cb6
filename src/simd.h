/* simd.h -- wider vectors for the hot loops, chosen at load time.
 *
 * The library is built for the baseline x86-64 (SSE2) so that it runs on any
 * machine. The loops that stream over every parameter or activation (the
 * update, the materialisation of W(s), the stacked combine, activations,
 * the max-abs scans) are instruction-bound at 4 floats a vector: at batch 1
 * the update of an 800k-parameter net was 80% of a step. WMI_SIMD_CLONES
 * compiles such a function also for AVX2 and AVX-512 and lets the dynamic
 * loader pick the widest the CPU has (GCC's target_clones, an ifunc resolved
 * once). Results do not depend on the choice: the loops are elementwise or
 * sum in a fixed order written in the source, and C11 mode never contracts
 * a*b+c into an FMA. */
#ifndef WM_SIMD_H
#define WM_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__) && \
    !defined(WM_NO_SIMD_CLONES)
#define WMI_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define WMI_SIMD_CLONES
#endif

/* Ask for the cache line at p (a read, kept in every level); nothing where
 * the compiler has no way to say it. */
#if defined(__GNUC__)
#define WMI_PREFETCH(p) __builtin_prefetch((p), 0, 3)
#else
#define WMI_PREFETCH(p) ((void)(p))
#endif

#endif
