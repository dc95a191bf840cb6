/* pass.h -- one forward (and backward) pass of a whole net over a batch,
 * on a workspace laid out once per batch size. */
#ifndef WM_PASS_H
#define WM_PASS_H

#include <stdint.h>

#include "net.h"

typedef struct {
    int n;                        /* rows this layout holds */
    int training;                 /* keeps every layer's output for backward */
    float *C;                     /* n x Kp: c_hat(s_i) */
    float *ones;                  /* n ones: c_hat of a point layer (net->has_points) */
    uint64_t step;                /* the optimizer's step count (dropout masks) */
    int shared;                   /* every sample has the same c_hat */
    float *xin;                   /* concat: n x in0 input with features; else NULL */
    const float *x0;              /* what the first layer reads (x or xin) */
    float *act[WM_MAX_LAYERS];    /* layer outputs (training) or the liveness plan's buffers */
    float *z;                     /* n x Kp*max_out */
    float *delta[WM_MAX_LAYERS];  /* training: dL/d(layer output), then its pre-activation delta */
    float *wmat;                  /* materialised layers (shared contexts) */
    float *conv;                  /* per-layer scratch (the largest any layer asks for) */
    float *dtmp;                  /* training with skips: a second reader's dX, then added */
    /* local B-spline nets (net->local_p >= 0, net.h): */
    int *lpiece;                  /* n: each sample's knot interval = its first nonzero point */
    float *lc;                    /* n x (p+1): its nonzero c(s) */
    int *lorder;                  /* n: the samples sorted by interval (stable) */
    int *lstart;                  /* pieces + 1: where each interval starts in that order */
    float *lx;                    /* 2 n max_in floats: gathered inputs, their gradient */
} wm_pass;

/* Bytes of workspace for n rows (training keeps all activations). */
size_t wmi_pass_bytes(const wm_net *net, int n, int training);

/* Carve mem (wmi_pass_bytes(net, n, training) bytes, 64-byte aligned) into p. */
void wmi_pass_layout(const wm_net *net, int n, int training, void *mem, wm_pass *p);

/* Check x (n x n_inputs finite) and s (n x dim in domain), then fill p->C,
 * p->shared and, for concat, p->xin. Rows are numbered from row0 in messages. */
wm_status wmi_pass_encode(const wm_net *net, wm_pass *p, const float *x, const float *s, int n,
                          int row0);

/* Check n rows of x (finite) and s (in the domain) without encoding them:
 * callers that run a batch in chunks check it whole first, so a bad row
 * late in the batch leaves no output written. */
wm_status wmi_pass_check(const wm_net *net, const float *x, const float *s, int n);

/* Forward n rows (n <= p->n); returns the last layer's output (n x n_outputs). */
float *wmi_pass_forward(const wm_net *net, wm_pass *p, int n);

/* Backward from dy = dL/dy of the last layer (n x n_outputs, overwritten);
 * writes the whole gradient into grad (n_params floats, Q coordinates).
 * Returns a bound on every |grad| entry, from the factors of each layer's
 * gradient (|dW| <= n * positions * max|c_hat| * max|delta| * max|x|), so the
 * optimizer can prove its update finite without reading the gradient; an
 * infinite or NaN bound means "not provably finite". */
float wmi_pass_backward(const wm_net *net, wm_pass *p, int n, float *dy, float *grad);

/* wmi_pass_backward, calling ready(user, l, off, len) right after layer l
 * (one with parameters; last layer first) has written its block
 * grad[off, off + len), which no later layer touches (wm_grad_notify). */
float wmi_pass_backward_notify(const wm_net *net, wm_pass *p, int n, float *dy, float *grad,
                               wm_grad_ready_fn ready, void *user);

/* The same backward pass without forming the weight gradient (grad is not
 * touched): afterwards p->delta[l] holds each layer's pre-activation delta,
 * from which the optimizer applies a rank-n update directly. Returns the
 * same bound. */
float wmi_pass_backward_deltas(const wm_net *net, wm_pass *p, int n, const float *dy);

/* What layer l's forward and backward see of this pass (its wm_layer_io,
 * layers/layer.h), for the optimizer's direct B-spline update. */
struct wm_layer_io_s;
void wmi_pass_layer_io(const wm_net *net, const wm_pass *p, int l, struct wm_layer_io_s *io);

/* max |a_j| over n floats; +inf if any is inf, NaN-safe (NaN counts as inf). */
float wmi_max_abs(const float *a, size_t n);

/* Check a whole batch's shape against an initialised net (not x/s values:
 * wmi_pass_encode does those). fn names the public call in messages. */
wm_status wmi_check_batch(const wm_net *net, const wm_batch *b, const char *fn);
/* wm_infer without its check of the outputs: non-finite outputs are
 * returned as they are (context search scores them as +Inf). */
wm_status wmi_infer_raw(const wm_net *net, const float *x, const float *s, int n, float *out);

/* Check labels / targets of a batch against the net. */
wm_status wmi_check_supervision(const wm_net *net, const wm_batch *b);

#endif
