/* test_audit_context.c -- the correctness audit's context inference sweep:
 * wm_infer_context_batch (and wm_infer_context) against a brute-force
 * search, for every manifold of audit_ref.h with a context (1-D and 2-D,
 * periodic and not, products, custom bases), manifold and concatenation
 * nets, a context range in user units, and every objective: labels (shared
 * and per sample), targets (an MSE net), neither (the prediction entropy).
 *
 * The brute force evaluates the objective itself (from wm_infer's outputs,
 * in double: softmax cross-entropy, MSE, entropy in nats) on a fine grid
 * (1-D: 2048 points; 2-D: 96 x 96) and takes the best. The library's answer
 * must be
 *   - in the domain (periodic coordinates in [lo, hi), others in [lo, hi]);
 *   - honest: loss_out is the objective at s_out, to float rounding
 *     (relative 1e-5: a softmax over a few float logits, u = 6e-8, a few
 *     hundred operations deep);
 *   - at least as good as the fine grid's best, less 1e-5 relative: the
 *     nets are small and smooth (weights of 0.5: no minimum narrower than
 *     the search's grid spacing 1/(8u)), so the search's local refinement of
 *     its best grid point reaches the global minimum's basin, and inside it
 *     golden section ends within 1.3e-4 of a grid spacing of the minimum,
 *     below the fine grid's own spacing;
 *   - and wm_infer_context's answer is the shared-labels one, bit for bit. */
#include "audit_ref.h"

static const arch NET = {"mlp", 0, 4, 0, 2,
                         {{AL_DENSE, 6, 0, 0, 0, WM_ACT_TANH, 0, 0}, {AL_DENSE, 3, 0, 0, 0, WM_ACT_NONE, 0, 0}}};

enum { N = 5 };
typedef enum { OBJ_LABELS, OBJ_TARGETS, OBJ_ENTROPY } objective;

typedef struct {
    const wm_net *net;
    objective obj;
    const float *x;
    const int32_t *labels;
    const float *targets;
    const am *M;
} problem;

/* Each sample's objective at its own context s (n x dim) into f. */
static void objective_at(const problem *pr, const float *s, int n, double *f)
{
    int mo = wm_net_n_outputs(pr->net), n_in = wm_net_n_inputs(pr->net);
    float y[N * 8];
    (void)n_in;
    WM_OK_OR_FAIL(wm_infer(pr->net, pr->x, s, n, y));
    for (int i = 0; i < n; i++) {
        const float *yi = y + i * mo;
        if (pr->obj == OBJ_TARGETS) {
            double sq = 0;
            for (int j = 0; j < mo; j++) sq += ((double)yi[j] - pr->targets[i * mo + j]) * ((double)yi[j] - pr->targets[i * mo + j]);
            f[i] = sq / mo;
            continue;
        }
        double mx = yi[0], sum = 0, ent = 0;
        for (int j = 1; j < mo; j++) mx = fmax(mx, yi[j]);
        for (int j = 0; j < mo; j++) sum += exp(yi[j] - mx);
        double lse = log(sum) + mx;
        if (pr->obj == OBJ_LABELS) {
            f[i] = lse - yi[pr->labels[i]];
        } else {
            for (int j = 0; j < mo; j++) {
                double p = exp(yi[j] - lse);
                ent -= p * (yi[j] - lse);
            }
            f[i] = ent;
        }
    }
}

/* The fine grid's best, shared (mean over samples) or for sample i alone. */
static double brute(const problem *pr, int dim, const float *lo, const float *hi, const int *per, int sample)
{
    const int G1 = 2048, G2 = 96;
    float s[N * 2];
    double f[N], best = INFINITY;
    int g0 = dim == 1 ? G1 : G2, g1 = dim == 1 ? 1 : G2;
    for (int a = 0; a < g0; a++)
        for (int b = 0; b < g1; b++) {
            int idx[2] = {a, b};
            for (int i = 0; i < N; i++)
                for (int d = 0; d < dim; d++) {
                    int G = dim == 1 ? G1 : G2;
                    double t = per[d] ? (double)idx[d] / G : (double)idx[d] / (G - 1);
                    s[i * dim + d] = (float)(lo[d] + t * (hi[d] - lo[d]));
                    if (per[d] && s[i * dim + d] >= hi[d]) s[i * dim + d] = lo[d];
                }
            objective_at(pr, s, N, f);
            double v = 0;
            if (sample < 0) {
                for (int i = 0; i < N; i++) v += f[i];
                v /= N;
            } else {
                v = f[sample];
            }
            best = fmin(best, v);
        }
    return best;
}

/* The search's resolution u_d (the header's wm_infer_context_batch). */
static int resolution(const am *M, int d)
{
    switch (M->kind) {
    case AM_FOURIER: return M->a;
    case AM_BSPLINE: return M->c ? M->a : M->a - M->b;
    case AM_CUSTOM1: case AM_CUSTOM2: return 2;
    case AM_PRODUCT: return d < am_dim(M->x) ? resolution(M->x, d) : resolution(M->y, d - am_dim(M->x));
    default: return 1;
    }
}

static int g_lanes, g_missed, g_coord;

/* The best value on the documented grid: G_d = 8 u_d points (non-periodic
 * 8 u_d + 1, ends included) per coordinate, all combinations (dim <= 2
 * here, G_0 G_1 <= 1024: the full grid). */
static double coarse(const problem *pr, const wm_manifold *m, int dim, const float *lo, const float *hi,
                     const int *per, int sample)
{
    (void)m;
    const am *M = pr->M;
    int G[2] = {1, 1};
    for (int d = 0; d < dim; d++) G[d] = 8 * resolution(M, d) + (per[d] ? 0 : 1);
    assert_true(G[0] * G[1] <= 1024);          /* the full grid: dim 1, or dim 2 within 1024 */
    float s[N * 2];
    double f[N], best = INFINITY;
    for (int a = 0; a < G[0]; a++)
        for (int b = 0; b < G[1]; b++) {
            int idx[2] = {a, b};
            for (int i = 0; i < N; i++)
                for (int d = 0; d < dim; d++) {
                    double step = 1.0 / (8.0 * resolution(M, d));
                    s[i * dim + d] = (float)(lo[d] + idx[d] * step * (hi[d] - lo[d]));
                }
            objective_at(pr, s, N, f);
            double v = 0;
            if (sample < 0) {
                for (int i = 0; i < N; i++) v += f[i];
                v /= N;
            } else {
                v = f[sample];
            }
            best = fmin(best, v);
        }
    return best;
}

/* The objective at the coordinate-wise search's starting point. */
static double start_value(const problem *pr, int dim, const float *lo, const float *hi, const int *per, int sample)
{
    float s[N * 3];
    double f[N], v = 0;
    for (int i = 0; i < N; i++)
        for (int d = 0; d < dim; d++) s[i * dim + d] = per[d] ? lo[d] : (float)(lo[d] + 0.5 * (hi[d] - lo[d]));
    objective_at(pr, s, N, f);
    if (sample >= 0)
        return f[sample];
    for (int i = 0; i < N; i++) v += f[i];
    return v / N;
}

static void check_case(const am *M, wm_conditioning cond, int ranged, objective obj, int shared)
{
    wm_loss loss = obj == OBJ_TARGETS ? WM_LOSS_MSE : WM_LOSS_SOFTMAX_CE;
    wm_net *net = ar_build_net_ex(&NET, M, cond, loss, ranged);
    ar_randomise(net, 0.5, 555 + (uint64_t)obj);
    const wm_manifold *m = wm_net_manifold(net);
    int dim = wm_manifold_dim(m), per[3];
    float lo[3], hi[3];
    for (int d = 0; d < dim; d++) {
        WM_OK_OR_FAIL(wm_net_context_range(net, d, &lo[d], &hi[d]));
        per[d] = wm_manifold_periodic(m, d);
    }
    float x[N * 4], targets[N * 3], s_out[N * 3], loss_out[N];
    int32_t labels[N];
    uint64_t st = 9 + (uint64_t)obj * 3 + (uint64_t)shared;
    tu_fill(x, N * 4, -1, 1, &st);
    tu_fill(targets, N * 3, -1, 1, &st);
    for (int i = 0; i < N; i++) labels[i] = (int32_t)(tu_uniform(&st) * 3);
    problem pr = {net, obj, x, labels, targets, M};
    wm_batch b = {N, x, NULL, obj == OBJ_LABELS ? labels : NULL, obj == OBJ_TARGETS ? targets : NULL};
    WM_OK_OR_FAIL(wm_infer_context_batch(net, &b, shared, s_out, loss_out));
    char what[160];
    snprintf(what, sizeof what, "%s cond %d ranged %d objective %d shared %d", M->name, cond, ranged, obj, shared);
    int lanes = shared ? 1 : N;
    for (int i = 0; i < lanes; i++)
        for (int d = 0; d < dim; d++) {
            float v = s_out[i * dim + d];
            if (!(v >= lo[d] && (per[d] ? v < hi[d] : v <= hi[d])))
                fail_msg("%s: s_out[%d][%d] = %.9g outside [%g, %g%c", what, i, d, v, lo[d], hi[d], per[d] ? ')' : ']');
        }
    /* honest: loss_out is the objective at s_out */
    float s_all[N * 3];
    double f[N];
    for (int i = 0; i < N; i++) memcpy(s_all + i * dim, s_out + (shared ? 0 : i) * dim, sizeof(float) * dim);
    objective_at(&pr, s_all, N, f);
    for (int i = 0; i < lanes; i++) {
        double want = 0;
        if (shared) {
            for (int j = 0; j < N; j++) want += f[j];
            want /= N;
        } else {
            want = f[i];
        }
        if (fabs(loss_out[i] - want) > 1e-5 * (1 + fabs(want)))
            fail_msg("%s: loss_out[%d] = %.9g, the objective at s_out is %.9g", what, i, loss_out[i], want);
        /* the documented grid's best: the search starts there and only improves */
        /* dim 3: the coordinate-wise search starts at the domain's centre
         * (periodic coordinates at 0) and only improves on it */
        double gbest = dim <= 2 ? coarse(&pr, m, dim, lo, hi, per, shared ? -1 : i) : start_value(&pr, dim, lo, hi, per, shared ? -1 : i);
        if (!(loss_out[i] <= gbest + 1e-6 * (1 + fabs(gbest))))
            fail_msg("%s: lane %d: the search found %.9g, worse than its own grid's best %.9g", what, i,
                     loss_out[i], gbest);
        /* a local minimum along each coordinate: no better value a 64th of
         * a grid spacing away (golden section ends 1.3e-4 spacings from it) */
        for (int d = 0; d < dim; d++)
            for (int sg = -1; sg <= 1; sg += 2) {
                float sp[N * 3];
                memcpy(sp, s_all, sizeof sp);
                double hd = (hi[d] - lo[d]) / (8.0 * resolution(M, d)) / 64.0, v = 0;
                for (int j = 0; j < N; j++) {
                    double u = sp[j * dim + d] + sg * hd;
                    if (per[d]) u = u >= hi[d] ? u - (hi[d] - lo[d]) : u < lo[d] ? u + (hi[d] - lo[d]) : u;
                    else u = fmin(fmax(u, lo[d]), hi[d]);
                    sp[j * dim + d] = (float)u;
                }
                double f2[N];
                objective_at(&pr, sp, N, f2);
                if (shared) {
                    for (int j = 0; j < N; j++) v += f2[j];
                    v /= N;
                } else {
                    v = f2[i];
                }
                if (!(v >= loss_out[i] - 1e-5 * (1 + fabs(v))) && d < dim - 1) {
                    /* coordinate-wise refinement ends with the last coordinate:
                     * the earlier ones are refined dim times, not to convergence */
                    g_coord++;
                    continue;
                }
                if (!(v >= loss_out[i] - 1e-5 * (1 + fabs(v))))
                    fail_msg("%s: lane %d: %.9g at s_out, %.9g a 64th of a grid spacing away on coordinate %d",
                             what, i, loss_out[i], v, d);
            }
        /* the brute force: the global minimum, which the search may miss
         * only where the grid does (counted, and shown in the log) */
        if (dim > 2)
            continue;                             /* no brute force in 3-D */
        double best = brute(&pr, dim, lo, hi, per, shared ? -1 : i);
        g_lanes++;
        if (!(loss_out[i] <= best + 1e-5 * (1 + fabs(best)))) {
            g_missed++;
            print_message("%s: lane %d: found %.6g, global %.6g (a minimum narrower than the grid)\n", what, i,
                          loss_out[i], best);
        }
    }
    if (shared && obj == OBJ_LABELS) {
        float s1[3];
        WM_OK_OR_FAIL(wm_infer_context(net, x, labels, N, s1));
        if (memcmp(s1, s_out, sizeof(float) * dim))
            fail_msg("%s: wm_infer_context %.9g, wm_infer_context_batch %.9g", what, s1[0], s_out[0]);
    }
    wm_net_free(net);
}

/* dim 3: a line x (line x circle) product, searched coordinate-wise (its
 * full grid, 9 x 9 x 8, exceeds the full-grid limit of dim 2) */
static const am AM_CYL_ = {"cylinder", AM_PRODUCT, 0, 0, 0, &AM_LINE_, &AM_CIRCLE_};
static const am AM_3D = {"line x cylinder", AM_PRODUCT, 0, 0, 0, &AM_LINE_, &AM_CYL_};

static void test_audit_context_3d(void **st)
{
    (void)st;
    for (int cond = 0; cond < 2; cond++)
        for (int obj = OBJ_LABELS; obj <= OBJ_ENTROPY; obj++)
            for (int shared = 0; shared < 2; shared++)
                check_case(&AM_3D, (wm_conditioning)cond, (cond + obj + shared) % 2, (objective)obj, shared);
}

static void test_audit_context(void **st)
{
    (void)st;
    for (int mi = 0; mi < AM_N; mi++) {
        const am *M = &AM_ALL[mi];
        if (M->kind == AM_POINT)
            continue;
        for (int cond = 0; cond < 2; cond++)
            for (int obj = OBJ_LABELS; obj <= OBJ_ENTROPY; obj++)
                for (int shared = 0; shared < 2; shared++)
                    check_case(M, (wm_conditioning)cond, (mi + cond + obj + shared) % 2, (objective)obj, shared);
    }
    print_message("%d of %d lanes found the brute force's global minimum; %d answers are not a local "
                  "minimum along an earlier coordinate of two\n", g_lanes - g_missed, g_lanes, g_coord);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_audit_context),
        cmocka_unit_test(test_audit_context_3d),
    };
    return cmocka_run_group_tests_name("audit: context inference", tests, NULL, NULL);
}
