/* bspline.c -- Cox-de Boor evaluation on uniform knots.
 *
 * Open curves use the clamped knot vector (p+1 zeros, n-p-1 uniform interior
 * knots, p+1 ones), so the curve starts at P_1 and ends at P_n. Closed curves
 * use the unclamped uniform knots t_j = (j-p)/n and fold basis j onto control
 * point j mod n, which makes the n basis functions periodic on [0,1). */
#include <math.h>
#include <string.h>

#include "bspline.h"

#define MAX_DEGREE 31

int wmi_bspline_pieces(int n_control, int degree, int closed)
{
    return closed ? n_control : n_control - degree;
}

static double knot(int n, int p, int closed, int j)
{
    if (closed)
        return (double)(j - p) / n;
    int pieces = n - p;
    if (j <= p)
        return 0.0;
    if (j >= n)
        return 1.0;
    return (double)(j - p) / pieces;
}

/* The p+1 nonzero basis functions N_{span-p..span} at x (The NURBS Book, A2.2). */
static void nonzero_basis(int n, int p, int closed, int span, double x, double *N)
{
    double left[MAX_DEGREE + 2], right[MAX_DEGREE + 2];
    N[0] = 1.0;
    for (int j = 1; j <= p; j++) {
        left[j] = x - knot(n, p, closed, span + 1 - j);
        right[j] = knot(n, p, closed, span + j) - x;
        double saved = 0.0;
        for (int r = 0; r < j; r++) {
            double tmp = N[r] / (right[r + 1] + left[j - r]);
            N[r] = saved + right[r + 1] * tmp;
            saved = left[j - r] * tmp;
        }
        N[j] = saved;
    }
}

int wmi_bspline_nonzero(int n, int p, int closed, double x, double *N)
{
    int pieces = wmi_bspline_pieces(n, p, closed);
    int piece = (int)floor(x * pieces);
    if (piece < 0)
        piece = 0;
    if (piece >= pieces)         /* x = 1 on an open curve belongs to the last piece */
        piece = pieces - 1;
    nonzero_basis(n, p, closed, piece + p, x, N);   /* span: t_span <= x < t_span+1 */
    return piece;
}

void wmi_bspline_basis(int n, int p, int closed, double x, double *c)
{
    double N[MAX_DEGREE + 2];
    int span = wmi_bspline_nonzero(n, p, closed, x, N) + p;
    memset(c, 0, sizeof(double) * (size_t)n);
    for (int r = 0; r <= p; r++) {
        int j = span - p + r;
        c[closed ? j % n : j] += N[r];
    }
}
