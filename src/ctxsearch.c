/* ctxsearch.c -- grid + golden-section search over a context domain, for
 * many lanes in lockstep (see ctxsearch.h for the plan and its cost). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ctxsearch.h"
#include "error.h"

/* Features per unit interval of coordinate d of m: the finest scale at which
 * W(s) can change. */
static int resolution(const wm_manifold *m, int d)
{
    switch (m->kind) {
    case WM_MF_PRODUCT:
        return d < m->a->dim ? resolution(m->a, d) : resolution(m->b, d - m->a->dim);
    case WM_MF_FOURIER:
        return m->harmonics;
    case WM_MF_BSPLINE:                       /* knot spans */
        return m->closed ? m->n_control : m->n_control - m->degree;
    case WM_MF_CUSTOM:
        return 2;                             /* unknown: a 16-point grid */
    default:                                  /* line (a point has no coordinates) */
        return 1;
    }
}

void wmi_ctx_plan_make(const wm_manifold *m, wmi_ctx_plan *p)
{
    memset(p, 0, sizeof *p);
    p->dim = m->dim;
    long total = 1;
    for (int d = 0; d < m->dim; d++) {
        int u = resolution(m, d);
        u = u < 1 ? 1 : u;
        p->periodic[d] = m->periodic[d];
        p->h[d] = 1.0 / ((double)WMI_CTX_PER_UNIT * u);
        p->G[d] = WMI_CTX_PER_UNIT * u + (m->periodic[d] ? 0 : 1);
        total *= p->G[d];
    }
    p->full_grid = m->dim == 1 || (m->dim == 2 && total <= WMI_CTX_FULL_GRID_MAX);
}

long wmi_ctx_cost(const wmi_ctx_plan *p)
{
    long golden = WMI_CTX_GOLDEN + 2;
    if (p->dim == 0)
        return 0;
    if (p->full_grid) {
        long total = 1;
        for (int d = 0; d < p->dim; d++)
            total *= p->G[d];
        return total + (long)p->dim * p->dim * golden;
    }
    long sum = 0;
    for (int d = 0; d < p->dim; d++)
        sum += p->G[d] + golden;
    return 1 + WMI_CTX_SWEEPS * sum;
}

/* Working state of one search. */
typedef struct {
    const wmi_ctx_plan *p;
    int lanes;
    wmi_ctx_eval eval;
    void *ctx;
    double *s, *f;                /* each lane's best point and value */
    double *cand, *fv;            /* candidates (lanes x dim) and their values */
    double *a, *b, *c, *e, *fc, *fe, *bx, *bf;   /* golden-section state per lane */
} search;

static double wrap(const wmi_ctx_plan *p, int d, double v)
{
    if (p->periodic[d]) {
        v -= floor(v);
        if (v >= 1.0 || (float)v >= 1.0f)     /* the net sees floats: keep them in [0,1) */
            v = 0.0;
    } else {
        v = v < 0.0 ? 0.0 : v > 1.0 ? 1.0 : v;
    }
    return v;
}

/* Evaluate the candidates; NaN counts as +inf. */
static wm_status run(search *S)
{
    wm_status st = S->eval(S->ctx, S->cand, S->lanes, S->fv);
    for (int l = 0; l < S->lanes; l++)
        if (isnan(S->fv[l]))
            S->fv[l] = INFINITY;
    return st;
}

/* Keep lane l's candidate if it is strictly better. */
static void take_better(search *S)
{
    int dim = S->p->dim;
    for (int l = 0; l < S->lanes; l++)
        if (S->fv[l] < S->f[l]) {
            S->f[l] = S->fv[l];
            memcpy(S->s + (size_t)l * dim, S->cand + (size_t)l * dim, sizeof(double) * dim);
        }
}

/* Candidates = each lane's best point with coordinate d set to v[l] (wrapped). */
static void set_coord(search *S, int d, const double *v, double same)
{
    int dim = S->p->dim;
    memcpy(S->cand, S->s, sizeof(double) * (size_t)S->lanes * dim);
    for (int l = 0; l < S->lanes; l++)
        S->cand[(size_t)l * dim + d] = wrap(S->p, d, v ? v[l] : same);
}

/* 1-D scan of coordinate d over its grid values. */
static wm_status scan(search *S, int d)
{
    for (int j = 0; j < S->p->G[d]; j++) {
        set_coord(S, d, NULL, j * S->p->h[d]);
        wm_status st = run(S);
        if (st != WM_OK)
            return st;
        take_better(S);
    }
    return WM_OK;
}

/* Golden-section search of coordinate d over [x - h, x + h] around each
 * lane's best point (clamped to [0,1] on non-periodic coordinates). */
static wm_status golden(search *S, int d)
{
    const double r = 0.6180339887498949;
    const wmi_ctx_plan *p = S->p;
    int dim = p->dim, L = S->lanes;
    for (int l = 0; l < L; l++) {
        double x = S->s[(size_t)l * dim + d], lo = x - p->h[d], hi = x + p->h[d];
        if (!p->periodic[d])
            lo = lo < 0.0 ? 0.0 : lo, hi = hi > 1.0 ? 1.0 : hi;
        S->a[l] = lo, S->b[l] = hi;
        S->c[l] = hi - r * (hi - lo), S->e[l] = lo + r * (hi - lo);
        S->bf[l] = INFINITY;
    }
    wm_status st;
    /* fv[l] of candidate position v[l]: remember the best seen */
#define EVAL_AT(v, out)                                                           \
    do {                                                                          \
        set_coord(S, d, (v), 0.0);                                                \
        if ((st = run(S)) != WM_OK)                                               \
            return st;                                                            \
        for (int l = 0; l < L; l++) {                                             \
            (out)[l] = S->fv[l];                                                  \
            if (S->fv[l] < S->bf[l])                                              \
                S->bf[l] = S->fv[l], S->bx[l] = S->cand[(size_t)l * dim + d];     \
        }                                                                         \
    } while (0)
    EVAL_AT(S->c, S->fc);
    EVAL_AT(S->e, S->fe);
    for (int it = 0; it < WMI_CTX_GOLDEN; it++) {
        for (int l = 0; l < L; l++) {   /* shrink; the new probe goes where the old one left */
            if (S->fc[l] < S->fe[l]) {
                S->b[l] = S->e[l], S->e[l] = S->c[l], S->fe[l] = S->fc[l];
                S->c[l] = S->b[l] - r * (S->b[l] - S->a[l]);
                S->bx[L + l] = S->c[l];          /* the probe this lane wants */
            } else {
                S->a[l] = S->c[l], S->c[l] = S->e[l], S->fc[l] = S->fe[l];
                S->e[l] = S->a[l] + r * (S->b[l] - S->a[l]);
                S->bx[L + l] = S->e[l];
            }
        }
        EVAL_AT(S->bx + L, S->fv + L);
        for (int l = 0; l < L; l++) {
            if (S->bx[L + l] == S->c[l])
                S->fc[l] = S->fv[L + l];
            else
                S->fe[l] = S->fv[L + l];
        }
    }
#undef EVAL_AT
    for (int l = 0; l < L; l++)
        if (S->bf[l] < S->f[l]) {
            S->f[l] = S->bf[l];
            S->s[(size_t)l * dim + d] = S->bx[l];
        }
    return WM_OK;
}

wm_status wmi_ctx_search(const wmi_ctx_plan *p, int lanes, wmi_ctx_eval eval, void *ctx,
                         double *s_best, double *f_best)
{
    int dim = p->dim;
    size_t L = (size_t)lanes;
    /* cand: L*dim; fv: 2L (values, then the golden probes' values); 10 more per lane */
    double *mem = malloc(sizeof(double) * (L * dim + 2 * L + 10 * L));
    if (!mem)
        return wmi_fail(WM_ENOMEM, "context search: out of memory for %d lanes", lanes);
    search S = {p, lanes, eval, ctx, s_best, f_best, mem, mem + L * dim, NULL, NULL, NULL, NULL,
                NULL, NULL, NULL, NULL};
    double *q = mem + L * dim + 2 * L;
    S.a = q, S.b = q + L, S.c = q + 2 * L, S.e = q + 3 * L, S.fc = q + 4 * L, S.fe = q + 5 * L;
    S.bf = q + 6 * L, S.bx = q + 7 * L;        /* bx: 2L (best x, then the probes) */
    for (size_t l = 0; l < L; l++)
        f_best[l] = INFINITY;
    wm_status st = WM_OK;
    if (p->full_grid) {
        long total = 1;
        for (int d = 0; d < dim; d++)
            total *= p->G[d];
        for (long idx = 0; idx < total && st == WM_OK; idx++) {
            long r = idx;                      /* grid point idx: coordinate 0 fastest */
            for (int d = 0; d < dim; d++) {
                for (size_t l = 0; l < L; l++)
                    S.cand[l * dim + d] = (double)(r % p->G[d]) * p->h[d];
                r /= p->G[d];
            }
            if ((st = run(&S)) == WM_OK)
                take_better(&S);
        }
        for (int sweep = 0; sweep < dim && st == WM_OK; sweep++)
            for (int d = 0; d < dim && st == WM_OK; d++)
                st = golden(&S, d);
    } else {
        for (size_t l = 0; l < L; l++)
            for (int d = 0; d < dim; d++)
                S.cand[l * dim + d] = p->periodic[d] ? 0.0 : 0.5;
        if ((st = run(&S)) == WM_OK)
            take_better(&S);
        for (int sweep = 0; sweep < WMI_CTX_SWEEPS && st == WM_OK; sweep++)
            for (int d = 0; d < dim && st == WM_OK; d++)
                if ((st = scan(&S, d)) == WM_OK)
                    st = golden(&S, d);
    }
    free(mem);
    if (st != WM_OK)
        return st;
    for (size_t l = 0; l < L; l++)
        if (!isfinite(f_best[l]))
            return wmi_fail(WM_ENUMERIC, "context search: the objective of %s %zu is not finite at any "
                            "context tried", lanes > 1 ? "sample" : "the batch", lanes > 1 ? l : 0);
    return WM_OK;
}
