/* linalg.c -- Cholesky, triangular inverse, Gauss-Legendre, Kronecker. */
#include <math.h>
#include <string.h>

#include "linalg.h"

int wmi_cholesky(const double *A, double *L, int n)
{
    memset(L, 0, sizeof(double) * (size_t)n * (size_t)n);
    for (int j = 0; j < n; j++) {
        double d = A[j * n + j];
        for (int k = 0; k < j; k++)
            d -= L[j * n + k] * L[j * n + k];
        /* relative test: a Gram matrix of dependent functions has d ~ 1e-16 */
        if (!(d > 1e-13 * fabs(A[j * n + j])) || !isfinite(d))
            return -1;
        double ljj = sqrt(d);
        L[j * n + j] = ljj;
        for (int i = j + 1; i < n; i++) {
            double v = A[i * n + j];
            for (int k = 0; k < j; k++)
                v -= L[i * n + k] * L[j * n + k];
            L[i * n + j] = v / ljj;
        }
    }
    return 0;
}

void wmi_tri_lower_inverse(const double *L, double *Linv, int n)
{
    memset(Linv, 0, sizeof(double) * (size_t)n * (size_t)n);
    for (int j = 0; j < n; j++) {           /* column j of L^-1: solve L x = e_j */
        Linv[j * n + j] = 1.0 / L[j * n + j];
        for (int i = j + 1; i < n; i++) {
            double v = 0;
            for (int k = j; k < i; k++)
                v -= L[i * n + k] * Linv[k * n + j];
            Linv[i * n + j] = v / L[i * n + i];
        }
    }
}

void wmi_cholesky_solve(const double *L, double *b, int n)
{
    for (int i = 0; i < n; i++) {           /* L y = b */
        double v = b[i];
        for (int k = 0; k < i; k++)
            v -= L[i * n + k] * b[k];
        b[i] = v / L[i * n + i];
    }
    for (int i = n - 1; i >= 0; i--) {      /* L^T x = y */
        double v = b[i];
        for (int k = i + 1; k < n; k++)
            v -= L[k * n + i] * b[k];
        b[i] = v / L[i * n + i];
    }
}

void wmi_gauss_legendre(int n, double *x, double *w)
{
    /* Newton on P_n from Chebyshev guesses (Numerical Recipes' gauleg),
     * then map [-1,1] -> [0,1]. */
    for (int i = 0; i < (n + 1) / 2; i++) {
        double z = cos(3.141592653589793 * (i + 0.75) / (n + 0.5)), pp = 1;
        for (int it = 0; it < 100; it++) {
            double p1 = 1, p2 = 0;
            for (int j = 1; j <= n; j++) {
                double p3 = p2;
                p2 = p1;
                p1 = ((2.0 * j - 1) * z * p2 - (j - 1.0) * p3) / j;
            }
            pp = n * (z * p1 - p2) / (z * z - 1);
            double z1 = z;
            z = z1 - p1 / pp;
            if (fabs(z - z1) < 1e-15)
                break;
        }
        double wi = 2 / ((1 - z * z) * pp * pp);
        x[i] = 0.5 * (1 - z);
        x[n - 1 - i] = 0.5 * (1 + z);
        w[i] = w[n - 1 - i] = 0.5 * wi;
    }
}

void wmi_kron(const double *A, int ma, int na, const double *B, int mb, int nb, double *C)
{
    int nc = na * nb;
    for (int i = 0; i < ma; i++)
        for (int j = 0; j < na; j++)
            for (int p = 0; p < mb; p++)
                for (int q = 0; q < nb; q++)
                    C[(i * mb + p) * nc + j * nb + q] = A[i * na + j] * B[p * nb + q];
}
