/* context.c -- context inference: the s that best explains a batch.
 *
 * Score(s) = mean cross-entropy of the labels (labels given) or mean
 * prediction entropy (no labels; softmax nets) of the batch run at context s,
 * every sample sharing it (so each evaluation materialises W(s) once).
 * Search: a coarse grid over the domain, then golden-section refinement of
 * each coordinate in turn around the best grid point. The score need not be
 * convex in s; the grid is what finds the right basin. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "loss.h"
#include "pass.h"
#include "scratch.h"

#define GRID_POINTS 256    /* total over all coordinates */
#define GOLDEN_ITERS 30

typedef struct {
    const wm_net *net;
    const float *x;
    const int32_t *labels;
    int n;
    float *s_rows;          /* n x dim: the candidate context, repeated */
    float *out;             /* n x n_outputs */
} scorer;

static double score(scorer *sc, const double *s)
{
    int dim = sc->net->m->dim, m = wm_net_n_outputs(sc->net);
    for (int i = 0; i < sc->n; i++)
        for (int d = 0; d < dim; d++)
            sc->s_rows[(size_t)i * dim + d] = (float)s[d];
    if (wm_infer(sc->net, sc->x, sc->s_rows, sc->n, sc->out) != WM_OK)
        return INFINITY;
    if (sc->labels)
        return wmi_loss(WM_LOSS_SOFTMAX_CE, sc->out, sc->n, m, sc->labels, NULL, NULL, 0.0f, NULL) / sc->n;
    double total = 0.0;                      /* entropy of the softmax */
    for (int i = 0; i < sc->n; i++) {
        const float *y = sc->out + (size_t)i * m;
        double mx = y[0], z = 0.0, e = 0.0;
        for (int j = 1; j < m; j++)
            mx = y[j] > mx ? y[j] : mx;
        for (int j = 0; j < m; j++)
            z += exp(y[j] - mx);
        for (int j = 0; j < m; j++) {
            double p = exp(y[j] - mx) / z;
            e -= p > 0 ? p * log(p) : 0.0;
        }
        total += e;
    }
    return total / sc->n;
}

/* Golden-section search of coordinate d on [lo, hi] (periodic coordinates may
 * leave [0,1]: the net wraps them). */
static double refine(scorer *sc, double *s, int d, double lo, double hi, double best)
{
    const double r = 0.6180339887498949;
    double a = lo, b = hi, c = b - r * (b - a), e = a + r * (b - a), keep = s[d];
    s[d] = c;
    double fc = score(sc, s);
    s[d] = e;
    double fe = score(sc, s);
    for (int it = 0; it < GOLDEN_ITERS; it++) {
        if (fc < fe) {
            b = e, e = c, fe = fc, c = b - r * (b - a);
            s[d] = c, fc = score(sc, s);
        } else {
            a = c, c = e, fc = fe, e = a + r * (b - a);
            s[d] = e, fe = score(sc, s);
        }
    }
    double xm = fc < fe ? c : e, fm = fc < fe ? fc : fe;
    if (fm < best) {
        s[d] = xm;
        return fm;
    }
    s[d] = keep;
    return best;
}

wm_status wm_infer_context(const wm_net *net, const float *x, const int32_t *labels, int n,
                           float *s_out)
{
    if (!net || !x || !s_out)
        return wmi_fail(WM_EINVAL, "wm_infer_context: %s is NULL", !net ? "net" : !x ? "x" : "s_out");
    if (!net->initialised)
        return wmi_fail(WM_ESTATE, "wm_infer_context: the net is not initialised (call wm_net_init)");
    if (n < 1)
        return wmi_fail(WM_EINVAL, "wm_infer_context: n = %d: at least one sample is needed", n);
    if (net->loss != WM_LOSS_SOFTMAX_CE)
        return wmi_fail(WM_EINVAL, "wm_infer_context: needs a softmax cross-entropy net (its score is "
                                   "the labels' loss or the prediction entropy)");
    int dim = net->m->dim, m = wm_net_n_outputs(net);
    if (dim == 0)
        return WM_OK;                        /* a point has no context to find */
    for (int i = 0; labels && i < n; i++)
        if (labels[i] < 0 || labels[i] >= m)
            return wmi_fail(WM_EINVAL, "labels[%d] = %d is out of range for %d classes", i,
                            (int)labels[i], m);
    scorer sc = {net, x, labels, n, malloc(sizeof(float) * (size_t)n * dim),
                 malloc(sizeof(float) * (size_t)n * m)};
    if (!sc.s_rows || !sc.out) {
        free(sc.s_rows), free(sc.out);
        return wmi_fail(WM_ENOMEM, "wm_infer_context: out of memory");
    }
    /* the grid: per coordinate G points, G^dim <= GRID_POINTS */
    int G = (int)floor(pow(GRID_POINTS, 1.0 / dim) + 1e-9);
    G = G < 4 ? 4 : G;
    long total = 1;
    for (int d = 0; d < dim && total <= GRID_POINTS * 8L; d++)
        total *= G;
    double s[WM_MAX_DIM], best_s[WM_MAX_DIM], best = INFINITY, step[WM_MAX_DIM];
    for (int d = 0; d < dim; d++)   /* periodic: G cells of [0,1); else G points of [0,1] */
        step[d] = net->m->periodic[d] ? 1.0 / G : 1.0 / (G - 1);
    wm_status st = WM_OK;
    for (long idx = 0; idx < total; idx++) {
        long r = idx;
        for (int d = 0; d < dim; d++, r /= G)
            s[d] = (r % G) * step[d];
        double f = score(&sc, s);
        if (f < best) {
            best = f;
            memcpy(best_s, s, sizeof(double) * dim);
        }
    }
    if (!isfinite(best)) {
        st = wmi_fail(WM_EINVAL, "wm_infer_context: the net's outputs are not finite for these inputs "
                                 "(check x for NaN/Inf)");
    } else {
        for (int sweep = 0; sweep < 2; sweep++)
            for (int d = 0; d < dim; d++) {
                double lo = best_s[d] - step[d], hi = best_s[d] + step[d];
                if (!net->m->periodic[d])
                    lo = lo < 0 ? 0 : lo, hi = hi > 1 ? 1 : hi;
                best = refine(&sc, best_s, d, lo, hi, best);
            }
        for (int d = 0; d < dim; d++) {
            double v = best_s[d];
            if (net->m->periodic[d])
                v -= floor(v);
            s_out[d] = (float)(v >= 1.0 ? 0.0 : v);
        }
    }
    free(sc.s_rows), free(sc.out);
    return st;
}
