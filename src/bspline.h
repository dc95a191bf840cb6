/* bspline.h -- uniform B-spline basis functions, open (clamped) or closed. */
#ifndef WM_BSPLINE_H
#define WM_BSPLINE_H

/* Write the n_control basis values at x in [0,1] (closed: x in [0,1)) to c. */
void wmi_bspline_basis(int n_control, int degree, int closed, double x, double *c);

/* The p+1 basis values that may be nonzero at x, N[r] = c_{piece+r}(x)
 * (closed: control point (piece+r) mod n); returns the piece (knot interval)
 * x lies in, 0..pieces-1. wmi_bspline_basis is these, scattered. */
int wmi_bspline_nonzero(int n_control, int degree, int closed, double x, double *N);

/* Number of polynomial pieces on [0,1] (knot intervals): n - p open, n closed.
 * Quadrature over each piece separately is exact. */
int wmi_bspline_pieces(int n_control, int degree, int closed);

#endif
