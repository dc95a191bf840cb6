/* audit_ref.h -- the correctness audit's shared pieces (tests/test_audit_*.c):
 * a table of manifolds (every kind the library builds, B-splines open and
 * closed of several degrees, products, custom bases), and an independent
 * double-precision reference for nets of every layer kind (dense, conv2d,
 * max/avg pool, residual, layernorm, groupnorm, FiLM, dropout, global
 * average pool, point layers), written from DESIGN.md sections 2 and 5 with
 * direct loops. It shares no code with the library: it reads parameters
 * through wm_net_control_point (the paper's P) and combines them with c(s)
 * from wm_manifold_basis, or takes a sample's plain layers from
 * wm_net_weights_at (the materialised weights). */
#ifndef WM_AUDIT_REF_H
#define WM_AUDIT_REF_H

#include "testutil.h"

/* ---- manifolds ------------------------------------------------------------ */

typedef enum { AM_POINT, AM_LINE, AM_FOURIER, AM_BSPLINE, AM_CUSTOM1, AM_CUSTOM2, AM_PRODUCT } am_kind;

typedef struct am {
    const char *name;
    am_kind kind;
    int a, b, c;                  /* fourier: a = H; bspline: a = n, b = degree, c = periodic */
    const struct am *x, *y;       /* product factors */
} am;

/* A 1-D custom basis on [0,1] (not periodic): 1, 2s - 1, sin pi s, cos 2 pi s
 * (Gram condition number ~500: a realistic basis that float holds). */
static inline void am_custom1(const float *s, float *c, void *user)
{
    (void)user;
    double v = s[0];
    c[0] = 1.0f, c[1] = (float)(2 * v - 1), c[2] = (float)sin(TU_PI * v), c[3] = (float)cos(2 * TU_PI * v);
}

/* A 2-D custom basis, both coordinates periodic: 1, cos 2 pi s0, sin 2 pi s1,
 * cos 2 pi s0 sin 2 pi s1. */
static inline void am_custom2(const float *s, float *c, void *user)
{
    (void)user;
    double a = cos(2 * TU_PI * s[0]), b = sin(2 * TU_PI * s[1]);
    c[0] = 1.0f, c[1] = (float)a, c[2] = (float)b, c[3] = (float)(a * b);
}

static inline wm_manifold *am_build(const am *d)
{
    wm_manifold *m = NULL, *a, *b;
    static const int per2[2] = {1, 1};
    switch (d->kind) {
    case AM_POINT: WM_OK_OR_FAIL(wm_manifold_point(&m)); break;
    case AM_LINE: WM_OK_OR_FAIL(wm_manifold_line(&m)); break;
    case AM_FOURIER: WM_OK_OR_FAIL(wm_manifold_fourier(&m, d->a)); break;
    case AM_BSPLINE: WM_OK_OR_FAIL(wm_manifold_bspline(&m, d->a, d->b, d->c)); break;
    case AM_CUSTOM1: WM_OK_OR_FAIL(wm_manifold_custom(&m, 1, 4, NULL, am_custom1, NULL)); break;
    case AM_CUSTOM2: WM_OK_OR_FAIL(wm_manifold_custom(&m, 2, 4, per2, am_custom2, NULL)); break;
    case AM_PRODUCT:
        a = am_build(d->x), b = am_build(d->y);
        WM_OK_OR_FAIL(wm_manifold_product(&m, a, b));
        wm_manifold_free(a), wm_manifold_free(b);
        break;
    }
    return m;
}

static inline int am_dim(const am *d)
{
    switch (d->kind) {
    case AM_POINT: return 0;
    case AM_CUSTOM2: return 2;
    case AM_PRODUCT: return am_dim(d->x) + am_dim(d->y);
    default: return 1;
    }
}

/* The concatenation baseline's features at s (DESIGN.md section 2 and the
 * header: a line s; a Fourier curve its basis without the constant; a
 * B-spline or custom basis its basis values; a product both factors'),
 * computed from the leaf's own c(s); returns their count. */
static inline int am_features(const am *d, const float *s, double *f)
{
    float c[64];
    int n = 0;
    wm_manifold *m;
    switch (d->kind) {
    case AM_POINT: return 0;
    case AM_LINE: f[0] = s[0]; return 1;
    case AM_PRODUCT:
        n = am_features(d->x, s, f);
        return n + am_features(d->y, s + am_dim(d->x), f + n);
    default:
        m = am_build(d);
        WM_OK_OR_FAIL(wm_manifold_basis(m, s, c));
        n = wm_manifold_n_basis(m);
        wm_manifold_free(m);
        if (d->kind == AM_FOURIER) {
            for (int k = 1; k < n; k++) f[k - 1] = c[k];
            return n - 1;
        }
        for (int k = 0; k < n; k++) f[k] = c[k];
        return n;
    }
}

static const am AM_LINE_ = {"line", AM_LINE, 0, 0, 0, NULL, NULL};
static const am AM_CIRCLE_ = {"circle", AM_FOURIER, 1, 0, 0, NULL, NULL};
static const am AM_BSP42_ = {"bspline(4,2)", AM_BSPLINE, 4, 2, 0, NULL, NULL};
static const am AM_CUS1_ = {"custom1", AM_CUSTOM1, 0, 0, 0, NULL, NULL};

/* Every manifold kind; B-splines open and closed, degrees 1 to 8, closed
 * ones with the fewest control points (n = degree + 1: every function
 * wraps onto itself), single-span open ones (Bernstein), many spans. Not
 * above degree 8: the float forward's error grows with the degree (measured
 * against the exact double forward of the same Q, random Q of 0.6, a
 * 4-8-8-3 tanh net: relative 2e-7 at degree 3, 6e-6 at 8, 3e-4 at 14 and
 * 4e-4 at 16 on open splines; 1.6e-5 at 16 closed), past this audit's
 * tolerances, which are set for float rounding of a well-conditioned
 * basis. */
static const am AM_ALL[] = {
    {"point", AM_POINT, 0, 0, 0, NULL, NULL},
    {"line", AM_LINE, 0, 0, 0, NULL, NULL},
    {"circle", AM_FOURIER, 1, 0, 0, NULL, NULL},
    {"fourier3", AM_FOURIER, 3, 0, 0, NULL, NULL},
    {"bspline(2,1)", AM_BSPLINE, 2, 1, 0, NULL, NULL},
    {"bspline(4,2)", AM_BSPLINE, 4, 2, 0, NULL, NULL},
    {"bspline(6,3)", AM_BSPLINE, 6, 3, 0, NULL, NULL},
    {"bspline(5,4)", AM_BSPLINE, 5, 4, 0, NULL, NULL},
    {"cbspline(3,1)", AM_BSPLINE, 3, 1, 1, NULL, NULL},
    {"cbspline(4,2)", AM_BSPLINE, 4, 2, 1, NULL, NULL},
    {"cbspline(6,3)", AM_BSPLINE, 6, 3, 1, NULL, NULL},
    {"custom1", AM_CUSTOM1, 0, 0, 0, NULL, NULL},
    {"custom2p", AM_CUSTOM2, 0, 0, 0, NULL, NULL},
    {"cylinder", AM_PRODUCT, 0, 0, 0, &AM_LINE_, &AM_CIRCLE_},
    {"cbspline(2,1)", AM_BSPLINE, 2, 1, 1, NULL, NULL},
    {"cbspline(3,2)", AM_BSPLINE, 3, 2, 1, NULL, NULL},
    {"cbspline(4,3)", AM_BSPLINE, 4, 3, 1, NULL, NULL},
    {"bspline(4,3)", AM_BSPLINE, 4, 3, 0, NULL, NULL},
    {"bspline(6,5)", AM_BSPLINE, 6, 5, 0, NULL, NULL},
    {"bspline(11,8)", AM_BSPLINE, 11, 8, 0, NULL, NULL},
    {"cbspline(12,7)", AM_BSPLINE, 12, 7, 1, NULL, NULL},
    {"bspline(12,3)", AM_BSPLINE, 12, 3, 0, NULL, NULL},
    {"fourier8", AM_FOURIER, 8, 0, 0, NULL, NULL},

    {"bspline(4,2)xcustom1", AM_PRODUCT, 0, 0, 0, &AM_BSP42_, &AM_CUS1_},
};
#define AM_N ((int)(sizeof AM_ALL / sizeof AM_ALL[0]))

/* ---- nets ------------------------------------------------------------------ */

typedef enum { AL_DENSE, AL_CONV, AL_MAX, AL_AVG, AL_RES, AL_LN, AL_GN, AL_FILM, AL_DROP, AL_GAP } al_kind;

typedef struct {
    al_kind kind;
    int a, k, stride, pad;        /* dense: a outputs; conv: a channels, k, stride, pad;
                                     pools: k; residual: a = from; groupnorm: a groups */
    wm_activation act;            /* dense, conv, residual */
    int point;                    /* 1: wm_net_set_layer_manifold(net, l, 0) */
    float p;                      /* dropout */
} al;

#define AR_MAXL 12
typedef struct {
    const char *name;
    int C, H, W;                  /* input image (C = 0: flat, H inputs) */
    int nl;
    al L[AR_MAXL];
} arch;

static inline int ar_inputs(const arch *A) { return A->C ? A->C * A->H * A->W : A->H; }

typedef struct {
    const arch *A;
    const am *M;
    int concat, K, dim, nf;
    /* each layer's output shape: c channels x h x w (img 0: flat, c features) */
    int img[AR_MAXL + 1], c[AR_MAXL + 1], h[AR_MAXL + 1], w[AR_MAXL + 1];
    int Kl[AR_MAXL], rows[AR_MAXL], cols[AR_MAXL];
    double *P[AR_MAXL], *B[AR_MAXL];   /* Kl x rows x cols, Kl x rows (NULL: none) */
    wm_loss loss;
    /* concat features of the last batch seen (building a leaf manifold per
     * call would dominate the finite differences) */
    const float *fkey;
    int fn;
    double feat[16][64];
    float lo[8], hi[8];           /* the net's context range per coordinate */
} aref;

static inline int al_has_params(al_kind k)
{
    return k == AL_DENSE || k == AL_CONV || k == AL_LN || k == AL_GN || k == AL_FILM;
}

/* Shapes (slot l + 1 is layer l's output; slot 0 the input, without a
 * concat net's features) and parameter sizes. */
static inline void ar_shapes(aref *r)
{
    const arch *A = r->A;
    r->img[0] = A->C > 0, r->c[0] = A->C ? A->C : A->H, r->h[0] = A->C ? A->H : 1, r->w[0] = A->C ? A->W : 1;
    for (int l = 0; l < A->nl; l++) {
        const al *L = &A->L[l];
        int img = r->img[l], c = r->c[l], h = r->h[l], w = r->w[l];
        int feat = c * h * w;
        if (l == 0 && r->concat)                    /* features: values after, or planes */
            feat += r->img[0] && L->kind != AL_DENSE ? r->nf * h * w : r->nf, c += img && L->kind != AL_DENSE ? r->nf : 0;
        r->rows[l] = r->cols[l] = 0;
        switch (L->kind) {
        case AL_DENSE: r->rows[l] = L->a, r->cols[l] = feat, img = 0, c = L->a, h = w = 1; break;
        case AL_CONV:
            r->rows[l] = L->a, r->cols[l] = c * L->k * L->k;
            h = (h + 2 * L->pad - L->k) / L->stride + 1, w = (w + 2 * L->pad - L->k) / L->stride + 1;
            c = L->a;
            break;
        case AL_MAX: case AL_AVG: h /= L->k, w /= L->k; break;
        case AL_GAP: h = w = 1; break;
        case AL_LN: r->rows[l] = c * h * w, r->cols[l] = 1; break;
        case AL_GN: r->rows[l] = c, r->cols[l] = 1; break;
        case AL_FILM: r->rows[l] = c, r->cols[l] = 1; break;
        default: break;
        }
        r->img[l + 1] = img, r->c[l + 1] = c, r->h[l + 1] = h, r->w[l + 1] = w;
    }
}

/* ranged: context coordinate 0 in user units [-2, 3] (wm_net_set_context_range). */
static inline wm_net *ar_build_net_ex(const arch *A, const am *M, wm_conditioning cond, wm_loss loss,
                                      int ranged)
{
    wm_manifold *m = am_build(M);
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, ar_inputs(A), cond));
    if (ranged && wm_manifold_dim(m) > 0)
        WM_OK_OR_FAIL(wm_net_set_context_range(net, 0, -2.0f, 3.0f));
    wm_manifold_free(m);
    if (A->C)
        WM_OK_OR_FAIL(wm_net_input_shape(net, A->C, A->H, A->W));
    for (int l = 0; l < A->nl; l++) {
        const al *L = &A->L[l];
        switch (L->kind) {
        case AL_DENSE: WM_OK_OR_FAIL(wm_net_dense(net, L->a, L->act)); break;
        case AL_CONV: WM_OK_OR_FAIL(wm_net_conv2d(net, L->a, L->k, L->stride, L->pad, L->act)); break;
        case AL_MAX: WM_OK_OR_FAIL(wm_net_maxpool(net, L->k)); break;
        case AL_AVG: WM_OK_OR_FAIL(wm_net_avgpool(net, L->k)); break;
        case AL_RES: WM_OK_OR_FAIL(wm_net_residual(net, L->a, L->act)); break;
        case AL_LN: WM_OK_OR_FAIL(wm_net_layernorm(net)); break;
        case AL_GN: WM_OK_OR_FAIL(wm_net_groupnorm(net, L->a)); break;
        case AL_FILM: WM_OK_OR_FAIL(wm_net_film(net)); break;
        case AL_DROP: WM_OK_OR_FAIL(wm_net_dropout(net, L->p)); break;
        case AL_GAP: WM_OK_OR_FAIL(wm_net_global_avgpool(net)); break;
        }
        if (L->point && cond == WM_COND_MANIFOLD)
            WM_OK_OR_FAIL(wm_net_set_layer_manifold(net, l, 0));
    }
    WM_OK_OR_FAIL(wm_net_set_loss(net, loss));
    WM_OK_OR_FAIL(wm_net_init(net, 7));
    return net;
}

static inline wm_net *ar_build_net(const arch *A, const am *M, wm_conditioning cond, wm_loss loss)
{
    return ar_build_net_ex(A, M, cond, loss, 0);
}

/* The basis callback a loaded net on M needs (NULL: none). */
static inline wm_basis_fn am_callback(const am *d)
{
    switch (d->kind) {
    case AM_CUSTOM1: return am_custom1;
    case AM_CUSTOM2: return am_custom2;
    case AM_PRODUCT: return am_callback(d->x) ? am_callback(d->x) : am_callback(d->y);
    default: return NULL;
    }
}

/* Random parameters in Q coordinates (uniform in [-amp, amp]): the initial
 * manifold is a point, which would hide errors in how the basis points
 * share the work. */
static inline void ar_randomise(wm_net *net, double amp, uint64_t seed)
{
    size_t np = wm_net_n_params(net);
    float *q = malloc(np * sizeof *q);
    uint64_t st = seed;
    tu_fill(q, np, -amp, amp, &st);
    WM_OK_OR_FAIL(wm_net_set_params(net, q, np));
    free(q);
}

/* Load the reference from the net's control points. */
static inline void ar_load(aref *r, const wm_net *net, const arch *A, const am *M, int concat, wm_loss loss)
{
    memset(r, 0, sizeof *r);
    r->A = A, r->M = M, r->concat = concat, r->loss = loss;
    r->K = wm_manifold_n_basis(wm_net_manifold(net));
    r->dim = wm_manifold_dim(wm_net_manifold(net));
    for (int d = 0; d < r->dim; d++)
        WM_OK_OR_FAIL(wm_net_context_range(net, d, &r->lo[d], &r->hi[d]));
    if (concat) {
        double f[64];
        float s0[8] = {0};
        r->nf = am_features(M, s0, f);
    }
    ar_shapes(r);
    /* P = L^-T Q in double from the parameters the library holds (Q, floats
     * taken exactly) and the test's own factor of G: at high B-spline
     * degrees |P| >> |W(s)| and float P (wm_net_control_point) would lose
     * the digits the test checks; the readback is compared below. */
    int K = r->K;
    double *G = malloc(sizeof(double) * K * K), *L = malloc(sizeof(double) * K * K),
           *Li = calloc((size_t)K * K, sizeof(double));
    if (K > 1 && !concat) {
        WM_OK_OR_FAIL(wm_manifold_gram(wm_net_manifold(net), G));
        tu_cholesky(G, L, K);
        for (int c = 0; c < K; c++)
            for (int i = 0; i < K; i++) {
                double v = i == c ? 1.0 : 0.0;
                for (int j = 0; j < i; j++) v -= L[i * K + j] * Li[j * K + c];
                Li[i * K + c] = v / L[i * K + i];
            }
    }
    size_t np, off = 0;
    const float *q = wm_net_params(net, &np);
    for (int l = 0; l < A->nl; l++) {
        if (!al_has_params(A->L[l].kind))
            continue;
        int rows = r->rows[l], cols = r->cols[l], in, out;
        WM_OK_OR_FAIL(wm_net_layer_info(net, l, &in, &out, NULL));
        if (A->L[l].kind == AL_DENSE || A->L[l].kind == AL_CONV) {
            if (in != cols || out != rows)
                fail_msg("%s layer %d: layer_info %d x %d, reference %d x %d", A->name, l, out, in, rows, cols);
        }
        int Kl = r->Kl[l] = concat || A->L[l].point ? 1 : r->K;
        size_t wn = (size_t)rows * cols;
        r->P[l] = calloc((size_t)Kl * wn, sizeof(double));
        r->B[l] = calloc((size_t)Kl * rows, sizeof(double));
        for (int part = 0; part < 2; part++) {
            size_t len = part ? (size_t)rows : wn;
            double *P = part ? r->B[l] : r->P[l];
            for (int k = 0; k < Kl; k++)
                for (size_t j = 0; j < len; j++) {
                    double v = 0;
                    if (Kl == 1)
                        v = q[off + j];
                    else
                        for (int i = k; i < Kl; i++) v += Li[i * K + k] * q[off + (size_t)i * len + j];
                    P[(size_t)k * len + j] = v;
                }
            off += (size_t)Kl * len;
        }
        /* the public readback: float P, to its rounding (a few ulps of the
         * block's largest |P|: the library forms it from Q as here) */
        float *w = malloc(wn * sizeof *w), *b = malloc((size_t)rows * sizeof *b);
        double pmax = 0, err = 0;
        for (int k = 0; k < Kl; k++) {
            WM_OK_OR_FAIL(wm_net_control_point(net, l, k, w, b));
            for (size_t j = 0; j < wn; j++)
                err = fmax(err, fabs(w[j] - r->P[l][k * wn + j])), pmax = fmax(pmax, fabs(r->P[l][k * wn + j]));
            for (int j = 0; j < rows; j++)
                err = fmax(err, fabs(b[j] - r->B[l][(size_t)k * rows + j])),
                pmax = fmax(pmax, fabs(r->B[l][(size_t)k * rows + j]));
        }
        if (!(err <= 1e-6 * pmax))
            fail_msg("%s on %s layer %d: wm_net_control_point differs from L^-T Q by %.3g (max |P| %.3g)", A->name,
                     M->name, l, err, pmax);
        if (Kl == 1 && !concat && r->K > 1)     /* a point layer has only k = 0 */
            assert_int_equal(wm_net_control_point(net, l, 1, w, b), WM_EINVAL);
        free(w), free(b);
    }
    assert_int_equal(off, np);
    free(G), free(L), free(Li);
}

static inline void ar_free(aref *r)
{
    for (int l = 0; l < r->A->nl; l++)
        free(r->P[l]), free(r->B[l]);
}

static inline double ar_act(wm_activation a, double z) { return tu_act(a, z); }

/* A sample's plain layers: W[l] (rows x cols) and b[l] (rows), from the
 * reference's P and c(s), or (lib != NULL) from wm_net_weights_at. */
typedef struct {
    double *W[AR_MAXL], *b[AR_MAXL];
} ar_plain;

static inline void ar_plain_alloc(const aref *r, ar_plain *q)
{
    for (int l = 0; l < r->A->nl; l++) {
        q->W[l] = r->rows[l] ? malloc(sizeof(double) * (size_t)r->rows[l] * r->cols[l]) : NULL;
        q->b[l] = r->rows[l] ? malloc(sizeof(double) * (size_t)r->rows[l]) : NULL;
    }
}

static inline void ar_plain_free(const aref *r, ar_plain *q)
{
    for (int l = 0; l < r->A->nl; l++)
        free(q->W[l]), free(q->b[l]);
}

static inline void ar_plain_at(const aref *r, const wm_manifold *m, const float *s, const wm_net *lib,
                               ar_plain *q)
{
    float c[1024];
    if (!r->concat && r->K > 1)
        WM_OK_OR_FAIL(wm_manifold_basis(m, s, c));
    for (int l = 0; l < r->A->nl; l++) {
        if (!r->rows[l])
            continue;
        size_t wn = (size_t)r->rows[l] * r->cols[l];
        if (lib) {
            float *w = malloc(wn * sizeof *w), *b = malloc((size_t)r->rows[l] * sizeof *b);
            WM_OK_OR_FAIL(wm_net_weights_at(lib, l, s, w, b));
            for (size_t j = 0; j < wn; j++) q->W[l][j] = w[j];
            for (int j = 0; j < r->rows[l]; j++) q->b[l][j] = b[j];
            free(w), free(b);
            continue;
        }
        int K = r->Kl[l];
        for (size_t j = 0; j < wn; j++) {
            double v = 0;
            for (int k = 0; k < K; k++) v += (K == 1 ? 1.0 : c[k]) * r->P[l][k * wn + j];
            q->W[l][j] = v;
        }
        for (int j = 0; j < r->rows[l]; j++) {
            double v = 0;
            for (int k = 0; k < K; k++) v += (K == 1 ? 1.0 : c[k]) * r->B[l][(size_t)k * r->rows[l] + j];
            q->b[l][j] = v;
        }
    }
}

/* Normalise v[0..len) by its mean and biased variance, eps 1e-5. */
static inline void ar_normalise(double *v, int len)
{
    double mean = 0, var = 0;
    for (int j = 0; j < len; j++) mean += v[j];
    mean /= len;
    for (int j = 0; j < len; j++) var += (v[j] - mean) * (v[j] - mean);
    var /= len;
    for (int j = 0; j < len; j++) v[j] = (v[j] - mean) / sqrt(var + 1e-5);
}

#define AR_MAXF 1024
/* One sample's forward with plain layers q (dropout is the identity: eval
 * mode, or p = 0); the last layer's outputs to y (may be NULL); returns the
 * sample's loss. */
static inline double ar_sample(const aref *r, const ar_plain *q, const float *x, const double *f,
                               int32_t label, const float *target, double *y)
{
    const arch *A = r->A;
    double *a = malloc(sizeof(double) * AR_MAXF * (AR_MAXL + 2));
    int n_in = ar_inputs(A);
    double *in0 = a + (size_t)(AR_MAXL + 1) * AR_MAXF;   /* the first layer's input, features too */
    for (int j = 0; j < n_in; j++) a[j] = in0[j] = x[j];
    int c0 = r->c[0], hw0 = r->h[0] * r->w[0];
    if (r->concat) {
        int nf = r->nf;
        if (r->img[0] && A->L[0].kind != AL_DENSE) {
            for (int k = 0; k < nf; k++)
                for (int j = 0; j < hw0; j++) in0[(c0 + k) * hw0 + j] = f[k];
        } else {
            for (int k = 0; k < nf; k++) in0[n_in + k] = f[k];
        }
    }
    for (int l = 0; l < A->nl; l++) {
        const al *L = &A->L[l];
        const double *X = l == 0 ? in0 : a + (size_t)l * AR_MAXF;
        double *Y = a + (size_t)(l + 1) * AR_MAXF;
        int c = r->c[l] + (l == 0 && r->concat && r->img[0] && L->kind != AL_DENSE ? r->nf : 0);
        int h = r->h[l], w = r->w[l], F = c * h * w;
        int oc = r->c[l + 1], oh = r->h[l + 1], ow = r->w[l + 1], OF = oc * oh * ow;
        assert_true(OF <= AR_MAXF && F <= AR_MAXF);
        const double *W = q->W[l], *bb = q->b[l];
        switch (L->kind) {
        case AL_DENSE:
            for (int o = 0; o < L->a; o++) {
                double v = bb[o];
                for (int j = 0; j < r->cols[l]; j++) v += W[(size_t)o * r->cols[l] + j] * X[j];
                Y[o] = ar_act(L->act, v);
            }
            break;
        case AL_CONV:
            for (int o = 0; o < oc; o++)
                for (int y0 = 0; y0 < oh; y0++)
                    for (int x0 = 0; x0 < ow; x0++) {
                        double v = bb[o];
                        for (int ci = 0; ci < c; ci++)
                            for (int ky = 0; ky < L->k; ky++)
                                for (int kx = 0; kx < L->k; kx++) {
                                    int iy = y0 * L->stride - L->pad + ky, ix = x0 * L->stride - L->pad + kx;
                                    if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                    v += W[(size_t)o * r->cols[l] + (ci * L->k + ky) * L->k + kx] *
                                         X[(ci * h + iy) * w + ix];
                                }
                        Y[(o * oh + y0) * ow + x0] = ar_act(L->act, v);
                    }
            break;
        case AL_MAX: case AL_AVG:
            for (int ci = 0; ci < oc; ci++)
                for (int y0 = 0; y0 < oh; y0++)
                    for (int x0 = 0; x0 < ow; x0++) {
                        double v = L->kind == AL_MAX ? -1e300 : 0;
                        for (int dy = 0; dy < L->k; dy++)
                            for (int dx = 0; dx < L->k; dx++) {
                                double u = X[(ci * h + y0 * L->k + dy) * w + x0 * L->k + dx];
                                v = L->kind == AL_MAX ? fmax(v, u) : v + u / (L->k * L->k);
                            }
                        Y[(ci * oh + y0) * ow + x0] = v;
                    }
            break;
        case AL_GAP:
            for (int ci = 0; ci < oc; ci++) {
                double v = 0;
                for (int j = 0; j < h * w; j++) v += X[ci * h * w + j];
                Y[ci] = v / (h * w);
            }
            break;
        case AL_RES: {
            const double *S = a + (size_t)(L->a + 1) * AR_MAXF;
            for (int j = 0; j < F; j++) Y[j] = ar_act(L->act, X[j] + S[j]);
            break;
        }
        case AL_LN:
            memcpy(Y, X, sizeof(double) * F);
            ar_normalise(Y, F);
            for (int j = 0; j < F; j++) Y[j] = Y[j] * W[j] + bb[j];
            break;
        case AL_GN: {
            int per = c / L->a * h * w;
            memcpy(Y, X, sizeof(double) * F);
            for (int g = 0; g < L->a; g++) ar_normalise(Y + g * per, per);
            for (int j = 0; j < F; j++) Y[j] = Y[j] * W[j / (h * w)] + bb[j / (h * w)];
            break;
        }
        case AL_FILM:
            for (int j = 0; j < F; j++) Y[j] = W[j / (h * w)] * X[j] + bb[j / (h * w)];
            break;
        case AL_DROP:
            memcpy(Y, X, sizeof(double) * F);
            break;
        }
    }
    const double *yl = a + (size_t)A->nl * AR_MAXF;
    int mo = r->c[A->nl] * r->h[A->nl] * r->w[A->nl];
    if (y) memcpy(y, yl, sizeof(double) * mo);
    double loss;
    if (r->loss == WM_LOSS_SOFTMAX_CE) {
        double mx = yl[0], sum = 0;
        for (int j = 1; j < mo; j++) mx = fmax(mx, yl[j]);
        for (int j = 0; j < mo; j++) sum += exp(yl[j] - mx);
        loss = log(sum) + mx - yl[label];
    } else {
        double sq = 0;
        for (int j = 0; j < mo; j++) sq += (yl[j] - target[j]) * (yl[j] - target[j]);
        loss = sq / mo;
    }
    free(a);
    return loss;
}

/* Batch-mean loss; outputs to y (n x outputs) if not NULL; lib != NULL:
 * each sample's plain layers from wm_net_weights_at instead of P. */
static inline double ar_loss(aref *r, const wm_manifold *m, int n, const float *x, const float *s,
                             const int32_t *labels, const float *targets, double *y, const wm_net *lib)
{
    if (r->concat && (r->fkey != s || r->fn != n)) {
        assert_true(n <= 16);
        for (int i = 0; i < n; i++) {
            float u[8];                           /* features of the basis' own coordinates */
            for (int d = 0; d < r->dim; d++)
                u[d] = (float)(((double)s[(size_t)i * r->dim + d] - r->lo[d]) / ((double)r->hi[d] - r->lo[d]));
            assert_int_equal(am_features(r->M, u, r->feat[i]), r->nf);
        }
        r->fkey = s, r->fn = n;
    }
    ar_plain q;
    ar_plain_alloc(r, &q);
    int n_in = ar_inputs(r->A), mo = r->c[r->A->nl] * r->h[r->A->nl] * r->w[r->A->nl];
    double total = 0;
    for (int i = 0; i < n; i++) {
        const float *si = s ? s + (size_t)i * r->dim : NULL;
        ar_plain_at(r, m, si, lib, &q);
        total += ar_sample(r, &q, x + (size_t)i * n_in, r->feat[i], labels ? labels[i] : 0,
                           targets ? targets + (size_t)i * mo : NULL, y ? y + (size_t)i * mo : NULL);
    }
    ar_plain_free(r, &q);
    return total / n;
}

static inline int ar_outputs(const aref *r)
{
    return r->c[r->A->nl] * r->h[r->A->nl] * r->w[r->A->nl];
}

#endif
