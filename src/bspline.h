/* bspline.h -- uniform B-spline basis functions, open (clamped) or closed. */
#ifndef WM_BSPLINE_H
#define WM_BSPLINE_H

/* Write the n_control basis values at x in [0,1] (closed: x in [0,1)) to c. */
void wmi_bspline_basis(int n_control, int degree, int closed, double x, double *c);

/* Number of polynomial pieces on [0,1] (knot intervals): n - p open, n closed.
 * Quadrature over each piece separately is exact. */
int wmi_bspline_pieces(int n_control, int degree, int closed);

#endif
