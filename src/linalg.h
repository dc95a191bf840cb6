/* linalg.h -- the small dense double-precision algebra the manifolds need:
 * Cholesky of a Gram matrix, triangular inverse and solves, Gauss-Legendre
 * nodes. K is at most a few hundred, so plain loops are the clearest choice. */
#ifndef WM_LINALG_H
#define WM_LINALG_H

/* Lower Cholesky factor L of the symmetric positive definite n x n matrix A
 * (row-major), A = L L^T; L's upper triangle is zeroed. Returns 0, or -1 if
 * A is not (numerically) positive definite. */
int wmi_cholesky(const double *A, double *L, int n);

/* Inverse of the lower-triangular n x n matrix L (nonzero diagonal). */
void wmi_tri_lower_inverse(const double *L, double *Linv, int n);

/* Solve (L L^T) x = b in place. */
void wmi_cholesky_solve(const double *L, double *b, int n);

/* n-point Gauss-Legendre nodes x and weights w on [0,1]; exact for
 * polynomials of degree <= 2n-1. */
void wmi_gauss_legendre(int n, double *x, double *w);

/* C (ma*mb x na*nb) = A (ma x na) Kronecker B (mb x nb). */
void wmi_kron(const double *A, int ma, int na, const double *B, int mb, int nb, double *C);

/* Banded triangular solves on K blocks of len floats each (block k at
 * x + k*len), with L the K x K lower Cholesky factor of a banded Gram matrix
 * (L_ij = 0 for i - j > p). Each runs a cache-sized chunk of all K blocks
 * at a time, so the blocks are read and written once.
 *   lower:   L X = B, in place (B in, X out)
 *   upper_t: L^T X = B, B and X distinct */
void wmi_band_solve_lower(const double *L, int K, int p, float *x, size_t len);
/* Block k alone of the lower solve, once blocks 0..k-1 are solved: for a
 * caller that produces B block by block and solves each while it is in cache. */
void wmi_band_solve_lower_row(const double *L, int K, int p, float *x, size_t len, int k);
void wmi_band_solve_upper_t(const double *L, int K, int p, const float *b, float *x, size_t len);
/* The upper solve on c floats of every block, block k at b + k bs
 * (right-hand side) and x + k xs (solution, distinct from b), x written with
 * non-temporal stores (past the cache, no read of x first), for a caller
 * that has b in cache and will not read x soon (the B-spline update's P
 * cache, optim.c). The operations of wmi_band_solve_upper_t; p <= WM_BAND_MAX_P. */
#define WM_BAND_MAX_P 16
void wmi_band_upper_t_stream(const double *L, int K, int p, const float *b, size_t bs, float *x,
                             size_t xs, size_t c);
/* Block k of the lower solve in a ring of p + 1 blocks (block j at
 * ring + (j mod (p+1)) slot, len floats), once blocks k-p..k-1 are solved:
 * for a caller that forms B block by block and keeps only the p blocks the
 * next one needs. The operations of wmi_band_solve_lower_row. */
void wmi_band_lower_ring(const double *L, int K, int p, int k, float *ring, size_t slot, size_t len);

#endif
