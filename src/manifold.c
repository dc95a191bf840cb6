/* manifold.c -- the built-in bases, products, custom bases, and their Gram
 * matrices, computed once, exactly:
 *   line:     G = [[1/3,1/6],[1/6,1/3]]       (closed form)
 *   Fourier:  G = diag(1, 1/2, ..., 1/2)        (closed form)
 *   B-spline: Gauss-Legendre per knot interval  (exact: pieces are polynomials)
 *   product:  G = G_A (x) G_B, L = L_A (x) L_B  (Kronecker)
 *   custom:   composite Gauss-Legendre          (accurate for smooth bases)  */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bspline.h"
#include "error.h"
#include "linalg.h"
#include "manifold.h"

#define TWO_PI 6.283185307179586476925287

/* ---- evaluation --------------------------------------------------------- */

/* Products are evaluated over their leaves (the factors that are not
 * products), left to right, expanding the Kronecker product in place:
 * A (x) B (x) C in the nested order a product of products defines. Nothing
 * recursive holds a basis-sized array, so a nest of 16 factors needs the
 * stack of one (a 128 KiB thread stack is enough). */
static void product_leaves(const wm_manifold *m, const wm_manifold **leaf, int *n)
{
    if (m->kind != WM_MF_PRODUCT) {
        leaf[(*n)++] = m;
        return;
    }
    product_leaves(m->a, leaf, n);
    product_leaves(m->b, leaf, n);
}

/* c[0..cur*K) = c[0..cur) (x) v[0..K), in place: back to front, each c[i]
 * read before the slots it fills (all >= i) are written. */
#define KRON_EXPAND(c, cur, v, K)                                                \
    do {                                                                         \
        for (int i_ = (cur) - 1; i_ >= 0; i_--) {                                \
            double ci_ = (c)[i_];                                                \
            for (int j_ = (K) - 1; j_ >= 0; j_--)                                \
                (c)[i_ * (K) + j_] = ci_ * (v)[j_];                              \
        }                                                                        \
    } while (0)

static void product_basis(const wm_manifold *m, const double *s, double *c);
static void product_basis_hat(const wm_manifold *m, const double *s, float *chat);

void wmi_basis(const wm_manifold *m, const double *s, double *c)
{
    switch (m->kind) {
    case WM_MF_POINT:
        c[0] = 1.0;
        break;
    case WM_MF_LINE:
        c[0] = 1.0 - s[0];
        c[1] = s[0];
        break;
    case WM_MF_FOURIER:
        c[0] = 1.0;
        for (int h = 1; h <= m->harmonics; h++) {
            c[2 * h - 1] = cos(TWO_PI * h * s[0]);
            c[2 * h] = sin(TWO_PI * h * s[0]);
        }
        break;
    case WM_MF_BSPLINE:
        wmi_bspline_basis(m->n_control, m->degree, m->closed, s[0], c);
        break;
    case WM_MF_PRODUCT:
        product_basis(m, s, c);
        break;
    case WM_MF_CUSTOM: {
        float sf[WM_MAX_DIM], cf[WM_MAX_BASIS];
        /* a callback that writes fewer than K values leaves NaN (refused as
         * non-finite by every check), never what the stack held */
        for (int k = 0; k < m->K; k++)
            cf[k] = NAN;
        for (int d = 0; d < m->dim; d++) {
            sf[d] = (float)s[d];
            /* a wrapped s just below 1 (say 1 - 1e-9) rounds to 1.0f; the
             * callback is promised [0,1), and 1 is 0 on a periodic axis */
            if (m->periodic[d] && sf[d] >= 1.0f)
                sf[d] = 0.0f;
        }
        m->fn(sf, cf, m->user);
        for (int k = 0; k < m->K; k++)
            c[k] = cf[k];
        break;
    }
    }
}

static void product_basis(const wm_manifold *m, const double *s, double *c)
{
    const wm_manifold *leaf[WM_MAX_FACTORS];
    double v[WM_MAX_BASIS];
    int n = 0, cur = 1;
    product_leaves(m, leaf, &n);
    c[0] = 1.0;
    for (int f = 0; f < n; f++) {
        wmi_basis(leaf[f], s, v);          /* a leaf: no further nesting */
        s += leaf[f]->dim;
        KRON_EXPAND(c, cur, v, leaf[f]->K);
        cur *= leaf[f]->K;
    }
}

/* L^-1 of a Kronecker product is the product of the factors' L^-1. */
static void product_basis_hat(const wm_manifold *m, const double *s, float *chat)
{
    const wm_manifold *leaf[WM_MAX_FACTORS];
    float v[WM_MAX_BASIS];
    int n = 0, cur = 1;
    product_leaves(m, leaf, &n);
    chat[0] = 1.0f;
    for (int f = 0; f < n; f++) {
        wmi_basis_hat(leaf[f], s, v);
        s += leaf[f]->dim;
        for (int i = cur - 1; i >= 0; i--) {
            float ci = chat[i];
            for (int j = leaf[f]->K - 1; j >= 0; j--)
                chat[i * leaf[f]->K + j] = ci * v[j];
        }
        cur *= leaf[f]->K;
    }
}

void wmi_basis_hat(const wm_manifold *m, const double *s, float *chat)
{
    if (m->kind == WM_MF_PRODUCT) {
        product_basis_hat(m, s, chat);
        return;
    }
    double c[WM_MAX_BASIS];
    int K = m->K;
    wmi_basis(m, s, c);
    if (m->kind == WM_MF_FOURIER) {      /* L is diagonal */
        for (int i = 0; i < K; i++)
            chat[i] = (float)(m->Linv[i * K + i] * c[i]);
        return;
    }
    for (int i = 0; i < K; i++) {
        double v = 0;
        for (int j = 0; j <= i; j++)
            v += m->Linv[i * K + j] * c[j];
        chat[i] = (float)v;
    }
}

/* A leaf's features (not a product): the basis-sized array lives here, so
 * the recursion over a product's factors below stays small. */
static void leaf_features(const wm_manifold *m, const double *s, float *f)
{
    double c[WM_MAX_BASIS];
    switch (m->kind) {
    case WM_MF_POINT:
    case WM_MF_PRODUCT:
        break;
    case WM_MF_LINE:
        f[0] = (float)s[0];
        break;
    case WM_MF_FOURIER:                  /* the basis without its constant */
        wmi_basis(m, s, c);
        for (int k = 1; k < m->K; k++)
            f[k - 1] = (float)c[k];
        break;
    case WM_MF_BSPLINE:
    case WM_MF_CUSTOM:
        wmi_basis(m, s, c);
        for (int k = 0; k < m->K; k++)
            f[k] = (float)c[k];
        break;
    }
}

void wmi_features(const wm_manifold *m, const double *s, float *f)
{
    if (m->kind != WM_MF_PRODUCT) {
        leaf_features(m, s, f);
        return;
    }
    wmi_features(m->a, s, f);
    wmi_features(m->b, s + m->a->dim, f + m->a->n_feat);
}

wm_status wmi_context_check(const wm_manifold *m, const float *s, int i, double *out)
{
    for (int d = 0; d < m->dim; d++) {
        double v = s[d];
        if (!isfinite(v))
            return i >= 0 ? wmi_fail(WM_EINVAL, "context s[%d][%d] is not finite", i, d)
                          : wmi_fail(WM_EINVAL, "context s[%d] is not finite", d);
        double lo = m->ranged ? m->lo[d] : 0.0, hi = m->ranged ? m->hi[d] : 1.0;
        if (m->ranged)
            v = (v - lo) / (hi - lo);
        if (m->periodic[d]) {
            v -= floor(v);
            if (v >= 1.0)                /* -1e-20 - floor(...) rounds to 1 */
                v = 0.0;
        } else if (v < 0.0 || v > 1.0) {
            char where[40];
            if (i >= 0)
                snprintf(where, sizeof where, "s[%d][%d]", i, d);
            else
                snprintf(where, sizeof where, "s[%d]", d);
            return wmi_fail(WM_EINVAL, "context %s = %.9g is outside [%.9g,%.9g] (coordinate %d is not "
                                      "periodic)", where, (double)s[d], lo, hi, d);
        }
        out[d] = v;
    }
    return WM_OK;
}

/* Whether m is, or has as a factor, a custom basis (the only bases whose
 * values the library does not control). */
static int has_custom(const wm_manifold *m)
{
    return m->kind == WM_MF_CUSTOM ||
           (m->kind == WM_MF_PRODUCT && (has_custom(m->a) || has_custom(m->b)));
}

wm_status wmi_basis_values_check(const wm_manifold *m, const float *v, int n, int i)
{
    if (!has_custom(m))
        return WM_OK;
    for (int k = 0; k < n; k++)
        if (!isfinite(v[k]))
            return i >= 0 ? wmi_fail(WM_EINVAL, "the custom basis callback gave a non-finite value at "
                                                "context s[%d] (coefficient %d is %g; a value it did not "
                                                "write reads as NaN)", i, k, (double)v[k])
                          : wmi_fail(WM_EINVAL, "the custom basis callback gave a non-finite value at "
                                                "this context (coefficient %d is %g; a value it did not "
                                                "write reads as NaN)", k, (double)v[k]);
    return WM_OK;
}

void wmi_context_to_user(const wm_manifold *m, const double *v, float *out)
{
    for (int d = 0; d < m->dim; d++)
        out[d] = m->ranged ? (float)(m->lo[d] + v[d] * (m->hi[d] - m->lo[d])) : (float)v[d];
}

/* ---- Gram matrices and mean vectors ------------------------------------- */

/* Accumulate G += w c c^T and mean += w c at one quadrature node. */
static void accumulate(const wm_manifold *m, const double *s, double w, double *G, double *mean)
{
    double c[WM_MAX_BASIS];
    int K = m->K, nz[WM_MAX_BASIS], n = 0;
    wmi_basis(m, s, c);
    for (int i = 0; i < K; i++)          /* B-splines: only degree + 1 are nonzero */
        if (c[i] != 0.0)
            nz[n++] = i;
    for (int a = 0; a < n; a++) {
        int i = nz[a];
        mean[i] += w * c[i];
        for (int b = 0; b <= a; b++)
            G[i * K + nz[b]] += w * c[i] * c[nz[b]];
    }
}

static void symmetrize(double *G, int K)
{
    for (int i = 0; i < K; i++)
        for (int j = i + 1; j < K; j++)
            G[i * K + j] = G[j * K + i];
}

static void gram_bspline(const wm_manifold *m, double *G, double *mean)
{
    double x[40], w[40];
    int q = m->degree + 1;               /* exact for degree 2p products */
    int pieces = wmi_bspline_pieces(m->n_control, m->degree, m->closed);
    wmi_gauss_legendre(q, x, w);
    for (int p = 0; p < pieces; p++)
        for (int j = 0; j < q; j++) {
            double s = (p + x[j]) / pieces;
            accumulate(m, &s, w[j] / pieces, G, mean);
        }
    symmetrize(G, m->K);
}

static wm_status gram_custom(const wm_manifold *m, double *G, double *mean)
{
    enum { NODES = 8 };
    double x[NODES], w[NODES];
    /* about 2^14 points in all: 2048 segments in 1-D, 16 per axis in 2-D */
    int per_axis = (int)floor(pow(16384.0, 1.0 / m->dim) + 1e-9);
    int segs = per_axis / NODES > 1 ? per_axis / NODES : 1;
    int n_axis = segs * NODES;
    long total = 1;
    wmi_gauss_legendre(NODES, x, w);
    for (int d = 0; d < m->dim; d++)
        total *= n_axis;
    for (long idx = 0; idx < total; idx++) {
        double s[WM_MAX_DIM], wt = 1.0, c[WM_MAX_BASIS];
        long r = idx;
        for (int d = 0; d < m->dim; d++) {
            int a = (int)(r % n_axis);
            r /= n_axis;
            s[d] = (a / NODES + x[a % NODES]) / segs;
            wt *= w[a % NODES] / segs;
        }
        wmi_basis(m, s, c);
        for (int k = 0; k < m->K; k++)
            if (!isfinite(c[k]))
                return wmi_fail(WM_EINVAL, "custom basis returned a non-finite c[%d] at s[0] = %g",
                               k, s[0]);
        accumulate(m, s, wt, G, mean);
    }
    symmetrize(G, m->K);
    return WM_OK;
}

static int feature_count(const wm_manifold *m)
{
    switch (m->kind) {
    case WM_MF_POINT:   return 0;
    case WM_MF_LINE:    return 1;
    case WM_MF_FOURIER: return m->K - 1;
    case WM_MF_PRODUCT: return m->a->n_feat + m->b->n_feat;
    default:            return m->K;
    }
}

wm_status wmi_manifold_finish(wm_manifold *m)
{
    int K = m->K;
    size_t kk = (size_t)K * (size_t)K;
    double *mean = calloc((size_t)K, sizeof *mean);
    m->G = calloc(kk, sizeof(double));
    m->L = calloc(kk, sizeof(double));
    m->Linv = calloc(kk, sizeof(double));
    m->const_coef = calloc((size_t)K, sizeof(double));
    if (!mean || !m->G || !m->L || !m->Linv || !m->const_coef) {
        free(mean);
        return wmi_fail(WM_ENOMEM, "out of memory for a %d-function manifold", K);
    }
    m->n_feat = feature_count(m);
    wm_status st = WM_OK;
    switch (m->kind) {
    case WM_MF_POINT:
        m->G[0] = 1.0;
        mean[0] = 1.0;
        break;
    case WM_MF_LINE:
        m->G[0] = m->G[3] = 1.0 / 3.0;
        m->G[1] = m->G[2] = 1.0 / 6.0;
        mean[0] = mean[1] = 0.5;
        break;
    case WM_MF_FOURIER:
        for (int k = 0; k < K; k++)
            m->G[k * K + k] = k == 0 ? 1.0 : 0.5;
        mean[0] = 1.0;
        break;
    case WM_MF_BSPLINE:
        gram_bspline(m, m->G, mean);
        break;
    case WM_MF_PRODUCT: {
        double *ma = calloc((size_t)m->a->K, sizeof(double));
        double *mb = calloc((size_t)m->b->K, sizeof(double));
        if (!ma || !mb) {
            free(ma), free(mb), free(mean);
            return wmi_fail(WM_ENOMEM, "out of memory for a product manifold");
        }
        /* the mean of c_A (x) c_B is G_A a_A (x) G_B a_B; recover each from its factor */
        for (int i = 0; i < m->a->K; i++)
            for (int j = 0; j < m->a->K; j++)
                ma[i] += m->a->G[i * m->a->K + j] * m->a->const_coef[j];
        for (int i = 0; i < m->b->K; i++)
            for (int j = 0; j < m->b->K; j++)
                mb[i] += m->b->G[i * m->b->K + j] * m->b->const_coef[j];
        wmi_kron(m->a->G, m->a->K, m->a->K, m->b->G, m->b->K, m->b->K, m->G);
        wmi_kron(ma, m->a->K, 1, mb, m->b->K, 1, mean);
        free(ma), free(mb);
        break;
    }
    case WM_MF_CUSTOM:
        st = gram_custom(m, m->G, mean);
        break;
    }
    if (st == WM_OK) {
        /* factor once; the closed forms avoid O(K^3) work for large K */
        if (m->kind == WM_MF_PRODUCT) {          /* chol(A (x) B) = chol A (x) chol B */
            wmi_kron(m->a->L, m->a->K, m->a->K, m->b->L, m->b->K, m->b->K, m->L);
            wmi_kron(m->a->Linv, m->a->K, m->a->K, m->b->Linv, m->b->K, m->b->K, m->Linv);
        } else if (m->kind == WM_MF_FOURIER) {   /* diagonal */
            for (int k = 0; k < K; k++) {
                m->L[k * K + k] = sqrt(m->G[k * K + k]);
                m->Linv[k * K + k] = 1.0 / m->L[k * K + k];
            }
        } else if (wmi_cholesky(m->G, m->L, K) != 0) {
            st = wmi_fail(WM_ENUMERIC, "the Gram matrix of this basis is not positive definite: "
                                      "its %d functions are linearly dependent", K);
        } else {
            wmi_tri_lower_inverse(m->L, m->Linv, K);
        }
    }
    if (st == WM_OK) {
        memcpy(m->const_coef, mean, sizeof(double) * (size_t)K);
        wmi_cholesky_solve(m->L, m->const_coef, K);   /* a = G^-1 mean */
    }
    free(mean);
    return st;
}

/* ---- constructors ------------------------------------------------------- */

static void manifold_release(wm_manifold *m)
{
    if (!m)
        return;
    wm_manifold_free(m->a);
    wm_manifold_free(m->b);
    free(m->G), free(m->L), free(m->Linv), free(m->const_coef);
    free(m);
}

void wm_manifold_free(wm_manifold *m) { manifold_release(m); }

/* Finish a freshly described manifold and hand it out, or free it. */
static wm_status publish(wm_manifold *m, wm_manifold **out)
{
    wm_status st = wmi_manifold_finish(m);
    if (st != WM_OK) {
        manifold_release(m);
        return st;
    }
    *out = m;
    return WM_OK;
}

static wm_manifold *alloc_manifold(wm_mf_kind kind, int dim, int K)
{
    wm_manifold *m = calloc(1, sizeof *m);
    if (m) {
        m->kind = kind;
        m->dim = dim;
        m->K = K;
        m->n_factors = 1;
    }
    return m;
}

#define NEED_OUT(out)                                                            \
    do {                                                                         \
        if (!(out))                                                              \
            return wmi_fail(WM_EINVAL, "%s: out is NULL", __func__);             \
    } while (0)
#define NEW_OR_FAIL(m, expr)                                                     \
    do {                                                                         \
        (m) = (expr);                                                            \
        if (!(m))                                                                \
            return wmi_fail(WM_ENOMEM, "%s: out of memory", __func__);           \
    } while (0)

wm_status wm_manifold_point(wm_manifold **out)
{
    wm_manifold *m;
    NEED_OUT(out);
    NEW_OR_FAIL(m, alloc_manifold(WM_MF_POINT, 0, 1));
    return publish(m, out);
}

wm_status wm_manifold_line(wm_manifold **out)
{
    wm_manifold *m;
    NEED_OUT(out);
    NEW_OR_FAIL(m, alloc_manifold(WM_MF_LINE, 1, 2));
    return publish(m, out);
}

wm_status wm_manifold_fourier(wm_manifold **out, int harmonics)
{
    wm_manifold *m;
    NEED_OUT(out);
    if (harmonics < 1 || harmonics > (WM_MAX_BASIS - 1) / 2)
        return wmi_fail(WM_EINVAL, "harmonics = %d must be in 1..%d", harmonics,
                       (WM_MAX_BASIS - 1) / 2);
    NEW_OR_FAIL(m, alloc_manifold(WM_MF_FOURIER, 1, 2 * harmonics + 1));
    m->harmonics = harmonics;
    m->periodic[0] = 1;
    return publish(m, out);
}

wm_status wm_manifold_circle(wm_manifold **out) { return wm_manifold_fourier(out, 1); }

wm_status wm_manifold_bspline(wm_manifold **out, int n_control, int degree, int periodic)
{
    wm_manifold *m;
    NEED_OUT(out);
    /* Above degree 16 the Gram matrix is so ill-conditioned (max |L^-1| 4e4
     * at 16, 6e5 at 20, 2e9 at 30) that the orthonormal basis loses float
     * precision: measured max |int c_hat c_hat^T - I| 8e-8 up to degree 17,
     * 1e-6 at 20, 1e-3 at 25, > 1 at 29 (where Cholesky also fails). */
    if (degree < 1 || degree > WM_BSPLINE_MAX_DEGREE)
        return wmi_fail(WM_EINVAL, "B-spline degree = %d must be in 1..%d (higher degrees are too "
                                  "ill-conditioned for a float orthonormal basis)",
                       degree, WM_BSPLINE_MAX_DEGREE);
    if (n_control < degree + 1 || n_control > WM_MAX_BASIS)
        return wmi_fail(WM_EINVAL,
                       "a degree-%d B-spline needs %d..%d control points, got n_control = %d",
                       degree, degree + 1, WM_MAX_BASIS, n_control);
    NEW_OR_FAIL(m, alloc_manifold(WM_MF_BSPLINE, 1, n_control));
    m->n_control = n_control;
    m->degree = degree;
    m->closed = periodic != 0;
    m->periodic[0] = m->closed;
    return publish(m, out);
}

wm_status wm_manifold_product(wm_manifold **out, const wm_manifold *a, const wm_manifold *b)
{
    wm_manifold *m;
    NEED_OUT(out);
    if (!a || !b)
        return wmi_fail(WM_EINVAL, "wm_manifold_product: factor %s is NULL", a ? "b" : "a");
    if (a->dim + b->dim > WM_MAX_DIM)
        return wmi_fail(WM_EINVAL, "product would have %d context coordinates (at most %d)",
                       a->dim + b->dim, WM_MAX_DIM);
    if ((long)a->K * b->K > WM_MAX_BASIS)
        return wmi_fail(WM_EINVAL, "product would have %ld basis functions (at most %d)",
                       (long)a->K * b->K, WM_MAX_BASIS);
    if (a->n_factors + b->n_factors > WM_MAX_FACTORS)
        return wmi_fail(WM_EINVAL, "product would have %d factors (at most %d)",
                       a->n_factors + b->n_factors, WM_MAX_FACTORS);
    NEW_OR_FAIL(m, alloc_manifold(WM_MF_PRODUCT, a->dim + b->dim, a->K * b->K));
    m->n_factors = a->n_factors + b->n_factors;
    if (wm_manifold_clone(&m->a, a) != WM_OK || wm_manifold_clone(&m->b, b) != WM_OK) {
        manifold_release(m);
        return wmi_fail(WM_ENOMEM, "wm_manifold_product: out of memory");
    }
    memcpy(m->periodic, a->periodic, sizeof(int) * (size_t)a->dim);
    memcpy(m->periodic + a->dim, b->periodic, sizeof(int) * (size_t)b->dim);
    /* a factor in user units (a net's manifold) keeps them in the product,
     * which maps contexts once, before its factors see them */
    m->ranged = a->ranged || b->ranged;
    for (int d = 0; d < m->dim; d++) {
        const wm_manifold *f = d < a->dim ? a : b;
        int fd = d < a->dim ? d : d - a->dim;
        m->lo[d] = f->ranged ? f->lo[fd] : 0.0;
        m->hi[d] = f->ranged ? f->hi[fd] : 1.0;
    }
    return publish(m, out);
}

wm_status wm_manifold_custom(wm_manifold **out, int dim, int n_basis, const int *periodic,
                             wm_basis_fn fn, void *user)
{
    wm_manifold *m;
    NEED_OUT(out);
    if (dim < 1 || dim > 4)
        return wmi_fail(WM_EINVAL, "custom manifold: dim = %d must be in 1..4", dim);
    if (n_basis < 1 || n_basis > WM_MAX_BASIS)
        return wmi_fail(WM_EINVAL, "custom manifold: n_basis = %d must be in 1..%d", n_basis,
                       WM_MAX_BASIS);
    if (!fn)
        return wmi_fail(WM_EINVAL, "custom manifold: basis function is NULL");
    NEW_OR_FAIL(m, alloc_manifold(WM_MF_CUSTOM, dim, n_basis));
    m->fn = fn;
    m->user = user;
    for (int d = 0; d < dim; d++)
        m->periodic[d] = periodic ? periodic[d] != 0 : 0;
    return publish(m, out);
}

wm_status wm_manifold_clone(wm_manifold **out, const wm_manifold *src)
{
    NEED_OUT(out);
    if (!src)
        return wmi_fail(WM_EINVAL, "wm_manifold_clone: m is NULL");
    size_t kk = (size_t)src->K * (size_t)src->K;
    wm_manifold *m = malloc(sizeof *m);
    if (!m)
        return wmi_fail(WM_ENOMEM, "wm_manifold_clone: out of memory");
    *m = *src;
    m->a = m->b = NULL;
    m->G = malloc(kk * sizeof(double));
    m->L = malloc(kk * sizeof(double));
    m->Linv = malloc(kk * sizeof(double));
    m->const_coef = malloc((size_t)src->K * sizeof(double));
    if (!m->G || !m->L || !m->Linv || !m->const_coef ||
        (src->a && wm_manifold_clone(&m->a, src->a) != WM_OK) ||
        (src->b && wm_manifold_clone(&m->b, src->b) != WM_OK)) {
        manifold_release(m);
        return wmi_fail(WM_ENOMEM, "wm_manifold_clone: out of memory");
    }
    memcpy(m->G, src->G, kk * sizeof(double));
    memcpy(m->L, src->L, kk * sizeof(double));
    memcpy(m->Linv, src->Linv, kk * sizeof(double));
    memcpy(m->const_coef, src->const_coef, (size_t)src->K * sizeof(double));
    *out = m;
    return WM_OK;
}

/* ---- queries ------------------------------------------------------------- */

int wm_manifold_dim(const wm_manifold *m) { return m ? m->dim : -1; }
int wm_manifold_n_basis(const wm_manifold *m) { return m ? m->K : -1; }

int wm_manifold_periodic(const wm_manifold *m, int d)
{
    return m && d >= 0 && d < m->dim ? m->periodic[d] : -1;
}

wm_status wm_manifold_basis(const wm_manifold *m, const float *s, float *c)
{
    double sw[WM_MAX_DIM], cd[WM_MAX_BASIS];
    if (!m || !c || (!s && m->dim > 0))
        return wmi_fail(WM_EINVAL, "wm_manifold_basis: %s is NULL", !m ? "m" : !c ? "c" : "s");
    wm_status st = wmi_context_check(m, s, -1, sw);
    if (st != WM_OK)
        return st;
    wmi_basis(m, sw, cd);
    float cf[WM_MAX_BASIS];             /* c is written only when every value is finite */
    for (int k = 0; k < m->K; k++)
        cf[k] = (float)cd[k];
    if ((st = wmi_basis_values_check(m, cf, m->K, -1)) != WM_OK)
        return st;
    memcpy(c, cf, sizeof(float) * (size_t)m->K);
    return WM_OK;
}

wm_status wm_manifold_gram(const wm_manifold *m, double *G)
{
    if (!m || !G)
        return wmi_fail(WM_EINVAL, "wm_manifold_gram: %s is NULL", !m ? "m" : "G");
    memcpy(G, m->G, sizeof(double) * (size_t)m->K * (size_t)m->K);
    return WM_OK;
}
