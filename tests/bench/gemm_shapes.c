/* gemm_shapes.c -- the products the library issues for the MLP 784-256-256-10
 * (issue 15), each through every candidate route, in GFLOP/s and as a share
 * of the bare 2048^3 sgemm's rate measured in the same process (same BLAS,
 * same kernels, same threads).
 *
 *   gemm_shapes [--reps R] [--rep-ms MS] [--threads-probe] [--blis PATH]
 *
 * Products, for batch n in {2, 16, 64} and K in {1, 2, 3} stacked basis
 * points (src/layers/dense.c, src/optim.c; ko = K*out):
 *   fwd1  W X^T     ko(=K*256) x n x 784     (0,1)
 *   fwd2  W X^T     K*256 x n x 256          (0,1)
 *   fwd3  W X^T     K*10 x n x 256           (0,1)
 *   dx2   D Wst     n x 256 x K*256          (0,0)
 *   dx3   D Wst     n x 256 x K*10           (0,0)
 *   dw1   D^T X     20 x 784 x n             (1,0)  a cache-sized block of dWst
 *   dw2   D^T X     64 x 256 x n             (1,0)
 *   dw3   D^T X     K*10 x 256 x n           (1,0)
 * Routes: plain (one cblas_sgemm, beta = 0), zero (memset C, beta = 1),
 * split (blocks OpenBLAS's small kernels take; the library's WMI_ROUTE_SPLIT,
 * with ZERO), own (the library's own kernels, src/gemm_small.c, with the
 * widest vectors the CPU has, where a form takes the product, else zero),
 * own_avx2 (the same with AVX2 forced), chosen (what wmi_gemm picked in this process), and blis (BLIS's
 * cblas_sgemm, dlopen'ed from --blis PATH with RTLD_DEEPBIND so it does not
 * mix with OpenBLAS; absent without --blis).
 *
 * Output: JSON lines; the first has the machine: CPU model, ISA level (from
 * /proc/cpuinfo's flags), OpenBLAS's core (openblas_get_corename), BLIS's
 * arch, the 2048^3 rate at 1 thread (and 2 with --threads-probe), the
 * routes the library chose and its calibration's timings. Forcing other
 * kernels on the same core (OPENBLAS_CORETYPE=Haswell, BLIS_ARCH_TYPE=haswell)
 * changes the figures, not the core: tests/bench/report.py labels them so. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "blas.h"

extern char *openblas_get_corename(void) __attribute__((weak));
extern void openblas_set_num_threads(int) __attribute__((weak));

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *,
                         int, float, float *, int);

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void cpu_facts(char *model, size_t mlen, const char **isa)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[8192];
    *isa = "?";
    snprintf(model, mlen, "?");
    if (!f)
        return;
    int got_model = 0, got_flags = 0;
    while (fgets(line, sizeof line, f) && !(got_model && got_flags)) {
        char *v = strchr(line, ':');
        if (!v)
            continue;
        v += v[1] == ' ' ? 2 : 1;
        v[strcspn(v, "\n")] = 0;
        if (!got_model && !strncmp(line, "model name", 10)) {
            snprintf(model, mlen, "%s", v);
            got_model = 1;
        } else if (!got_flags && !strncmp(line, "flags", 5)) {
            strcat(v, " ");
            *isa = strstr(v, " avx512f ") ? "AVX-512" : strstr(v, " avx2 ") ? "AVX2"
                 : strstr(v, " avx ") ? "AVX" : "SSE";
            got_flags = 1;
        }
    }
    fclose(f);
}

static void fill(float *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (float)((int)((i + seed) * 2654435761u % 2001u) - 1000) * 1e-3f;
}

/* route ids of this program */
enum { R_PLAIN, R_ZERO, R_SPLIT, R_OWN, R_OWN_AVX2, R_CHOSEN, R_BLIS, N_ROUTES };
static const char *route_name[N_ROUTES] = {"plain", "zero", "split", "own", "own_avx2", "chosen", "blis"};

typedef struct {
    const char *op;
    int ta, tb, m, n, k;
} prod;

static sgemm_fn blis_sgemm;

static void run(int route, const prod *p, const float *A, const float *B, float *C)
{
    int lda = p->ta ? p->m : p->k, ldb = p->tb ? p->k : p->n;
    switch (route) {
    case R_PLAIN: wmi_gemm_via(0, p->ta, p->tb, p->m, p->n, p->k, 1.0f, A, lda, B, ldb, 0.0f, C, p->n); break;
    case R_ZERO: wmi_gemm_via(WMI_ROUTE_ZERO, p->ta, p->tb, p->m, p->n, p->k, 1.0f, A, lda, B, ldb, 0.0f, C, p->n); break;
    case R_SPLIT: wmi_gemm_via(WMI_ROUTE_SPLIT | WMI_ROUTE_ZERO, p->ta, p->tb, p->m, p->n, p->k, 1.0f, A, lda, B, ldb, 0.0f, C, p->n); break;
    case R_OWN: wmi_gemm_via(WMI_ROUTE_OWN | WMI_ROUTE_ZERO, p->ta, p->tb, p->m, p->n, p->k, 1.0f, A, lda, B, ldb, 0.0f, C, p->n); break;
    case R_OWN_AVX2:  /* the own kernels with AVX2 forced where the library would take them */
        if (!wmi_small_gemm_form(p->ta, p->tb, p->m, p->n, p->k) ||
            !wmi_small_gemm_isa(WMI_ISA_AVX2, p->ta, p->tb, p->m, p->n, p->k, 1.0f, A, lda, B, ldb, 0.0f, C, p->n))
            wmi_gemm_via(WMI_ROUTE_ZERO, p->ta, p->tb, p->m, p->n, p->k, 1.0f, A, lda, B, ldb, 0.0f, C, p->n);
        break;
    case R_CHOSEN: wmi_gemm(p->ta, p->tb, p->m, p->n, p->k, 1.0f, A, lda, B, ldb, 0.0f, C, p->n); break;
    case R_BLIS:
        blis_sgemm(CblasRowMajor, p->ta ? CblasTrans : CblasNoTrans, p->tb ? CblasTrans : CblasNoTrans,
                   p->m, p->n, p->k, 1.0f, A, lda, B, ldb, 0.0f, C, p->n);
        break;
    }
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Seconds per call of each route in `on`: the fastest of `reps` short timed
 * loops, the routes alternating within each repetition (so a load change
 * hits them alike), by this thread's CPU time (one BLAS thread: all the work
 * is on it), so that a shared machine's other processes do not count while
 * they hold the core. The fastest, not the median: others' work only ever
 * slows a loop down (through the caches it shares). */
static void time_routes(const prod *p, const int *on, int reps, double rep_s, const float *A,
                        const float *B, float *C, double *out)
{
    double ts[N_ROUTES][64];
    long iters[N_ROUTES];
    for (int r = 0; r < N_ROUTES; r++) {
        if (!on[r])
            continue;
        for (int w = 0; w < 3; w++)
            run(r, p, A, B, C);
        double t0 = cpu_s();
        long it = 0;
        while (cpu_s() - t0 < rep_s / 4)
            run(r, p, A, B, C), it++;
        iters[r] = it * 4 > 1 ? it * 4 : 1;
    }
    for (int rep = 0; rep < reps; rep++)
        for (int r = 0; r < N_ROUTES; r++) {
            if (!on[r])
                continue;
            double t0 = cpu_s();
            for (long i = 0; i < iters[r]; i++)
                run(r, p, A, B, C);
            ts[r][rep] = (cpu_s() - t0) / iters[r];
        }
    for (int r = 0; r < N_ROUTES; r++) {
        out[r] = 0;
        if (!on[r])
            continue;
        qsort(ts[r], (size_t)reps, sizeof(double), cmp_d);
        out[r] = ts[r][0];
    }
}

/* The bare 2048^3 sgemm, GFLOP/s: the fastest of 5 calls after one warm-up.
 * One thread: by this thread's CPU time, which a shared machine's other work
 * does not inflate (a 0.2 s call is always preempted on a loaded machine);
 * two threads: by the wall clock (*wall gets the wall-clock rate either way). */
static double rate_2048(int threads, float *A, float *B, float *C, double *wall)
{
    const int N = 2048;
    if (openblas_set_num_threads)
        openblas_set_num_threads(threads);
    double t[5];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, A, N, B, N, 0.0f, C, N);
    double w[5];
    for (int i = 0; i < 5; i++) {
        double t0 = now_s(), c0 = cpu_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, A, N, B, N, 0.0f, C, N);
        w[i] = now_s() - t0;
        t[i] = threads == 1 ? cpu_s() - c0 : w[i];
    }
    if (openblas_set_num_threads)
        openblas_set_num_threads(1);
    qsort(t, 5, sizeof(double), cmp_d);
    qsort(w, 5, sizeof(double), cmp_d);
    *wall = 2.0 * N * N * (double)N / w[0] * 1e-9;
    return 2.0 * N * N * (double)N / t[0] * 1e-9;
}

int main(int argc, char **argv)
{
    int reps = 9, threads_probe = 0;
    double rep_s = 0.002;
    const char *blis_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--threads-probe")) threads_probe = 1;
        else if (!strcmp(argv[i], "--reps") && v) reps = atoi(v), i++;
        else if (!strcmp(argv[i], "--rep-ms") && v) rep_s = atof(v) * 1e-3, i++;
        else if (!strcmp(argv[i], "--blis") && v) blis_path = v, i++;
        else {
            fprintf(stderr, "usage: gemm_shapes [--reps R] [--rep-ms MS] [--threads-probe] [--blis PATH]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > 64 || !(rep_s > 0))
        return 2;
    if (openblas_set_num_threads)
        openblas_set_num_threads(1);

    const char *blis_arch = NULL;
    if (blis_path) {
        void *h = dlopen(blis_path, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
        if (!h) {
            fprintf(stderr, "gemm_shapes: %s\n", dlerror());
            return 1;
        }
        /* dlsym's object pointers to function pointers, the POSIX way */
        void *s_gemm = dlsym(h, "cblas_sgemm"), *s_id = dlsym(h, "bli_arch_query_id"),
             *s_str = dlsym(h, "bli_arch_string");
        int (*arch_id)(void);
        const char *(*arch_str)(int);
        memcpy(&blis_sgemm, &s_gemm, sizeof s_gemm);
        memcpy(&arch_id, &s_id, sizeof s_id);
        memcpy(&arch_str, &s_str, sizeof s_str);
        if (!blis_sgemm) {
            fprintf(stderr, "gemm_shapes: no cblas_sgemm in %s\n", blis_path);
            return 1;
        }
        blis_arch = arch_id && arch_str ? arch_str(arch_id()) : "?";
    }

    size_t big = (size_t)2048 * 2048;
    /* 64-byte aligned, as the library's own arrays are (src/memory.h,
     * src/pass.c): the products it issues read and write those */
    float *A = aligned_alloc(64, sizeof(float) * big), *B = aligned_alloc(64, sizeof(float) * big),
          *C = aligned_alloc(64, sizeof(float) * big);
    if (!A || !B || !C)
        return 1;
    fill(A, big, 1), fill(B, big, 2), fill(C, big, 3);

    char model[256];
    const char *isa;
    cpu_facts(model, sizeof model, &isa);
    double w1 = 0, w2 = 0;
    double r1 = rate_2048(1, A, B, C, &w1), r2 = threads_probe ? rate_2048(2, A, B, C, &w2) : 0;
    double t0 = now_s();
    int gemm_route, gemv_route;
    double cal[WMI_ROUTE_RATIOS];
    wmi_gemm_routes(&gemm_route, &gemv_route, cal);
    double first_call = now_s() - t0;
    const char *core = openblas_get_corename ? openblas_get_corename() : NULL;
    printf("{\"machine\": true, \"cpu\": \"%s\", \"isa\": \"%s\", \"openblas_core\": \"%s\", "
           "\"blis_arch\": %s%s%s, \"sgemm2048_gflops_1t\": %.2f, \"sgemm2048_gflops_2t\": %.2f, "
           "\"sgemm2048_wall_gflops_1t\": %.2f, \"sgemm2048_wall_gflops_2t\": %.2f, "
           "\"gemm_route\": %d, \"gemv_route\": %d, \"route_choice_ms\": %.3f, "
           "\"calibration\": {\"plain_over_split\": %.2f, \"blas_over_own_rank\": %.2f, "
           "\"blas_over_own_rows\": %.2f, \"blas_over_own_dot\": %.2f, "
           "\"blas_over_own_rows_wide\": %.2f, \"blas_over_own_dot_wide\": %.2f}, "
           "\"env\": {\"OPENBLAS_CORETYPE\": \"%s\", \"BLIS_ARCH_TYPE\": \"%s\", \"WM_GEMM_ROUTE\": \"%s\", "
           "\"WM_GEMM_ISA\": \"%s\"}}\n",
           model, isa, core ? core : "not OpenBLAS", blis_arch ? "\"" : "",
           blis_arch ? blis_arch : "null", blis_arch ? "\"" : "", r1, r2, w1, w2, gemm_route, gemv_route,
           first_call * 1e3, cal[0], cal[1], cal[2], cal[3], cal[4], cal[5],
           getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "",
           getenv("BLIS_ARCH_TYPE") ? getenv("BLIS_ARCH_TYPE") : "",
           getenv("WM_GEMM_ROUTE") ? getenv("WM_GEMM_ROUTE") : "",
           getenv("WM_GEMM_ISA") ? getenv("WM_GEMM_ISA") : "");
    fflush(stdout);

    static const int batches[] = {2, 16, 64};
    for (int bi = 0; bi < 3; bi++)
        for (int K = 1; K <= 3; K++) {
            int n = batches[bi];
            prod ps[] = {{"fwd1", 0, 1, K * 256, n, 784}, {"fwd2", 0, 1, K * 256, n, 256},
                         {"fwd3", 0, 1, K * 10, n, 256},  {"dx2", 0, 0, n, 256, K * 256},
                         {"dx3", 0, 0, n, 256, K * 10},   {"dw1", 1, 0, 20, 784, n},
                         {"dw2", 1, 0, 64, 256, n},       {"dw3", 1, 0, K * 10, 256, n}};
            for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) {
                const prod *p = &ps[i];
                int own = wmi_small_gemm_available();
                int on[N_ROUTES] = {1, 1, 1, own, own, 1, blis_sgemm != NULL};
                double t[N_ROUTES];
                time_routes(p, on, reps, rep_s, A, B, C, t);
                double flop = 2.0 * p->m * p->n * (double)p->k;
                printf("{\"op\": \"%s\", \"batch\": %d, \"K\": %d, \"trans\": [%d, %d], \"mnk\": [%d, %d, %d], "
                       "\"gflops\": {", p->op, n, K, p->ta, p->tb, p->m, p->n, p->k);
                int first = 1;
                for (int r = 0; r < N_ROUTES; r++)
                    if (on[r]) {
                        printf("%s\"%s\": %.2f", first ? "" : ", ", route_name[r], flop / t[r] * 1e-9);
                        first = 0;
                    }
                printf("}}\n");
                fflush(stdout);
            }
        }
    free(A), free(B), free(C);
    return 0;
}
