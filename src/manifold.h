/* manifold.h -- bases c(s), their Gram matrices and orthonormal coordinates.
 *
 * The net stores parameters in coordinates Q = L^T P, where G = L L^T. In
 * those coordinates the basis is c_hat(s) = L^-1 c(s), orthonormal on the
 * context domain, and W(s) = sum_k c_hat_k(s) Q_k. */
#ifndef WM_MANIFOLD_H
#define WM_MANIFOLD_H

#include "wmanifold.h"

#define WM_MAX_DIM 16
#define WM_MAX_BASIS 1024
/* Factors of one product, nested or not: without a cap, products of points
 * (K = 1, dim 0) could nest without end, each copy doubling the tree. */
#define WM_MAX_FACTORS 16
/* See wm_manifold_bspline: the highest degree whose orthonormal basis is
 * accurate in float. */
#define WM_BSPLINE_MAX_DEGREE 16

typedef enum {
    WM_MF_POINT, WM_MF_LINE, WM_MF_FOURIER, WM_MF_BSPLINE, WM_MF_PRODUCT, WM_MF_CUSTOM
} wm_mf_kind;

struct wm_manifold {
    wm_mf_kind kind;
    int dim;                      /* context coordinates */
    int K;                        /* basis functions */
    int periodic[WM_MAX_DIM];
    int harmonics;                /* FOURIER */
    int n_control, degree, closed;/* BSPLINE */
    wm_manifold *a, *b;           /* PRODUCT: owned copies of the factors */
    int n_factors;                /* leaves of the product tree (1: not a product) */
    wm_basis_fn fn;               /* CUSTOM */
    void *user;
    int n_feat;                   /* context features for the concat baseline */
    double *G;                    /* K x K Gram matrix */
    double *L;                    /* its lower Cholesky factor */
    double *Linv;                 /* L^-1 (lower triangular) */
    double *const_coef;           /* a with sum_k a_k c_k(s) = 1 (best L2 fit) */
    /* Contexts in the user's units (wm_net_set_context_range): coordinate d
     * is given in [lo[d], hi[d]] (periodic: with period hi[d] - lo[d]) and
     * mapped to the basis' [0,1] by (s - lo) / (hi - lo). ranged = 0: the
     * identity (lo 0, hi 1), so a zeroed struct is the default. */
    int ranged;
    double lo[WM_MAX_DIM], hi[WM_MAX_DIM];
};

/* Check a context (dim floats): finite, and in [0,1] on non-periodic
 * coordinates. Writes the wrapped context to out (periodic ones into [0,1)).
 * Returns WM_OK or WM_EINVAL with a message naming sample `i` (if i >= 0). */
wm_status wmi_context_check(const wm_manifold *m, const float *s, int i, double *out);

/* A custom basis (or a product with a custom factor) is checked at its
 * creation on quadrature nodes only: n values computed from it at a context
 * (c, c_hat or features; NaN and Inf propagate into all three) must be
 * finite, else WM_EINVAL naming sample i (if i >= 0). WM_OK for the
 * built-in bases, without looking. */
wm_status wmi_basis_values_check(const wm_manifold *m, const float *v, int n, int i);
/* A context in [0,1] coordinates (as wmi_context_check writes it) back in
 * the user's units: lo + v (hi - lo) per coordinate. */
void wmi_context_to_user(const wm_manifold *m, const double *v, float *out);

/* The paper's basis at a checked context (wrapped), in double. */
void wmi_basis(const wm_manifold *m, const double *s, double *c);

/* The orthonormal basis c_hat(s) = L^-1 c(s) at a checked context. */
void wmi_basis_hat(const wm_manifold *m, const double *s, float *chat);

/* The concat baseline's n_feat features at a checked context. */
void wmi_features(const wm_manifold *m, const double *s, float *f);

/* Build a manifold from its description fields (kind, dim, K, periodic,
 * harmonics, n_control/degree/closed, a/b, fn/user) by computing everything
 * derived. Used by the constructors and the model loader. */
wm_status wmi_manifold_finish(wm_manifold *m);

#endif
