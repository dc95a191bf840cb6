/* ctxsearch.h -- the search behind context inference: minimise an objective
 * f(s) over a manifold's context domain, for several independent "lanes" at
 * once (one lane per sample, or one lane for a whole batch).
 *
 * Plan, per context coordinate d, from the basis' resolution u_d (how many
 * features fit in the unit interval: the highest harmonic H of a Fourier
 * basis, the number of knot spans of a B-spline (n - p open, n closed), 1 for
 * a line, 2 for a custom basis):
 *   G_d = WMI_CTX_PER_UNIT * u_d grid points, spacing h_d = 1/(PER_UNIT u_d);
 *   non-periodic coordinates add the end point s = 1 (G_d + 1 points).
 * Search:
 *   full grid (dim 1, or dim 2 with G_0 G_1 <= WMI_CTX_FULL_GRID_MAX): every
 *     grid point, then `dim` sweeps of a golden-section search of each
 *     coordinate in turn over +-h_d around the best point so far;
 *   coordinate-wise (otherwise; cost linear in dim): start at the domain's
 *     centre (0.5, or 0 on periodic coordinates), then 2 sweeps over the
 *     coordinates, each a 1-D scan of that coordinate's G_d grid values
 *     followed by the same golden-section search.
 * A golden-section search costs WMI_CTX_GOLDEN + 2 evaluations and shrinks
 * its bracket of 2 h_d by 0.618^WMI_CTX_GOLDEN (6.6e-5 for 20 iterations).
 * A lane's point only moves to a strictly better value, so every lane's
 * final value is the least it was ever evaluated at.
 * Every evaluation evaluates all lanes at once (one call of `eval`); the
 * number of calls depends only on the plan (wmi_ctx_cost), never on data. */
#ifndef WM_CTXSEARCH_H
#define WM_CTXSEARCH_H

#include "manifold.h"

#define WMI_CTX_PER_UNIT 8
#define WMI_CTX_GOLDEN 20
#define WMI_CTX_FULL_GRID_MAX 1024
#define WMI_CTX_SWEEPS 2           /* coordinate-wise sweeps */

typedef struct {
    int dim;
    int full_grid;
    int G[WM_MAX_DIM];            /* grid values per coordinate */
    int periodic[WM_MAX_DIM];
    double h[WM_MAX_DIM];         /* grid spacing */
} wmi_ctx_plan;

/* Evaluate every lane's candidate: s is lanes x dim (periodic coordinates in
 * [0,1), others in [0,1]); write lanes values to f (NaN is treated as +inf).
 * A status other than WM_OK stops the search and is returned. */
typedef wm_status (*wmi_ctx_eval)(void *ctx, const double *s, int lanes, double *f);

/* The plan for manifold m (dim >= 1). */
void wmi_ctx_plan_make(const wm_manifold *m, wmi_ctx_plan *p);

/* Number of eval calls wmi_ctx_search makes under plan p. */
long wmi_ctx_cost(const wmi_ctx_plan *p);

/* Run the search for `lanes` lanes; on WM_OK s_best (lanes x dim) and f_best
 * (lanes) hold each lane's answer. WM_ENOMEM, or eval's status, or
 * WM_ENUMERIC if some lane's objective was never finite. */
wm_status wmi_ctx_search(const wmi_ctx_plan *p, int lanes, wmi_ctx_eval eval, void *ctx,
                         double *s_best, double *f_best);

#endif
