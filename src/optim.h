/* optim.h -- the optimizer's internal state (shared with io for checkpoints). */
#ifndef WM_OPTIM_H
#define WM_OPTIM_H

#include "pass.h"

struct wm_optimizer {
    wm_net *net;
    wm_opt_config cfg;
    float *grad;                  /* n_params: raw gradient of the last wm_grad */
    float *m1;                    /* momentum buffer v, or Adam's first moment */
    float *m2;                    /* Adam's second moment */
    void *grad_mem, *m1_mem, *m2_mem;  /* the blocks grad, m1, m2 lie in (memory.h: apart) */
    uint64_t t;                   /* updates applied */
    float qmax, m1max, m2max;     /* max |.| of params and moments after our last write */
    uint64_t version;             /* net->version those maxima describe */
    int has_grad;
    int last_mixed;               /* the last forward pass's batch was mixed, 2+ samples (the P cache's policy) */
    float clip;                   /* max L2 norm of the gradient, 0 = off */
    uint64_t inits;               /* net->inits when the moments were started */
    void *ws;                     /* training workspace, grows to the largest batch */
    size_t ws_bytes;
    int ws_rows;
    int busy;                     /* inside a user callback (a custom basis during encoding,
                                     wm_grad_notify's ready): calls that would reuse ws or write
                                     the gradient or the moments are WM_ESTATE */
};

/* Whether wm_net_init ran since the optimizer's moments were started: they
 * then read as zeros and the step count as 0 (see optim.c). */
int wmi_optimizer_stale(const wm_optimizer *o);

#endif
