/**
 * @file wmanifold.h
 * @brief libwmanifold, neural networks whose weights live on a manifold.
 *
 * A weight-manifold network (Benjamin, Daruwalla, Pehle, Zekri, Zador 2025,
 * "Walking the Weight Manifold", arXiv 2505.22994) makes its weights a smooth
 * function of a task context s:
 *
 *     W(s) = sum_k c_k(s) P_k
 *
 * where c(s) is a fixed basis (line, circle, Fourier curve, B-spline, products
 * of these, or your own) and the control points P_k are what training moves.
 * Training minimises the loss averaged over the manifold with the paper's
 * volume-constrained step  dP = -lr (G^-1 (x) I) dL/dP,  G the basis's Gram
 * matrix.
 *
 * This header is the whole manual. Conventions that hold everywhere:
 *  - Every fallible call returns a wm_status; on failure nothing was changed,
 *    and wm_last_error() says what was wrong, in words.
 *  - Arrays are row-major float (int32 for labels), owned by the caller; the
 *    library never keeps a pointer to them after a call returns.
 *  - Handles (wm_manifold, wm_net, wm_optimizer) are owned by whoever created
 *    them and released by the matching *_free, which accepts NULL.
 *  - Thread safety: distinct handles may be used from distinct threads freely.
 *    Functions taking a const handle (wm_infer, wm_evaluate, wm_net_weights_at,
 *    wm_manifold_basis, ...) may run concurrently on one handle. Functions
 *    taking a non-const handle need exclusive access to it.
 *  - Matrix products go through cblas. At the first one the library measures,
 *    once per process, which route suits the core it runs on (OpenBLAS's
 *    small-matrix kernels for thin products, the library's own AVX2 kernel
 *    for batches of 2-32); this takes a few milliseconds (2-40 ms measured on
 *    a loaded 2-core machine). Routes sum in different orders, so results
 *    can differ in the last bits between machines; on one machine the choice
 *    is decisive and the same run after run. The environment variable
 *    WM_GEMM_ROUTE=plain|split|own pins the choice (e.g. to reproduce a run
 *    bit for bit elsewhere with the same BLAS); WM_GEMM_ISA=avx2 keeps the
 *    library's own kernels to AVX2 on an AVX-512 CPU (what an AVX2 machine
 *    would measure and run). Both ignore case; any other value is ignored.
 *
 * MIT licensed; see LICENSE.
 */
#ifndef WMANIFOLD_H
#define WMANIFOLD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** WM_API marks the public functions: the shared library is built with hidden
 * visibility, so only these leave it (-DWM_API= to override). */
#ifndef WM_API
#if defined(__GNUC__) || defined(__clang__)
#define WM_API __attribute__((visibility("default")))
#else
#define WM_API
#endif
#endif

#define WM_VERSION_MAJOR 0 /**< incremented on an incompatible API/ABI change */
#define WM_VERSION_MINOR 1 /**< incremented when functions are added */
#define WM_VERSION_PATCH 0 /**< incremented for fixes */

/* ------------------------------------------------------------------------ */
/** Status and errors                                                         */
/* ------------------------------------------------------------------------ */

/** Result of every fallible call. On any value but WM_OK nothing was changed. */
typedef enum {
    WM_OK = 0,    /**< success */
    WM_EINVAL,    /**< an argument is invalid (NULL, out of range, NaN/Inf input) */
    WM_ENOMEM,    /**< an allocation failed */
    WM_EIO,       /**< a file could not be opened, read or written */
    WM_EFORMAT,   /**< a file is not a valid model file (truncated, corrupt, foreign) */
    WM_ENUMERIC,  /**< the computation turned non-finite (diverging loss or update) */
    WM_ESTATE     /**< the call is not allowed in the object's current state */
} wm_status;

/** A short constant description of a status ("invalid argument", ...).
 * Never NULL; unknown values give "unknown status". Thread-safe. */
WM_API const char *wm_status_str(wm_status st);

/** This thread's most recent failure, in words a user can act on, e.g.
 * "labels[17] = 12 is out of range for 10 classes". Successful calls do not
 * clear it. Never NULL ("" before any failure). The text is thread-local and
 * valid until this thread's next failing call. */
WM_API const char *wm_last_error(void);

/** The library version as "MAJOR.MINOR.PATCH". Thread-safe. */
WM_API const char *wm_version(void);

/* ------------------------------------------------------------------------ */
/** Manifolds                                                                  */
/* ------------------------------------------------------------------------ */

/** A basis c(s) over a context domain, with its Gram matrix
 * G_kl = integral of c_k(s) c_l(s) ds (uniform measure on [0,1]^dim) computed
 * exactly once at creation and factored (Cholesky). Immutable after creation:
 * a const manifold may be used from many threads at once.
 *
 * Context domains: each coordinate lies in [0,1]. Periodic coordinates wrap
 * (s and s+1 are the same point); non-periodic ones must lie in [0,1]. */
typedef struct wm_manifold wm_manifold;

/** A single point: K = 1, no context (dim 0), c = (1). A plain network.
 * Returns WM_OK, WM_EINVAL (out NULL), WM_ENOMEM. */
WM_API wm_status wm_manifold_point(wm_manifold **out);

/** A line segment: dim 1, s in [0,1], c(s) = (1-s, s), K = 2.
 * W(0) = P_1 and W(1) = P_2. Returns WM_OK, WM_EINVAL, WM_ENOMEM. */
WM_API wm_status wm_manifold_line(wm_manifold **out);

/** A circle (ellipse in weight space): dim 1, periodic,
 * c(s) = (1, cos 2 pi s, sin 2 pi s), K = 3. Same as wm_manifold_fourier(out, 1).
 * Returns WM_OK, WM_EINVAL, WM_ENOMEM. */
WM_API wm_status wm_manifold_circle(wm_manifold **out);

/** A closed curve of order H = harmonics >= 1: dim 1, periodic,
 * c(s) = (1, cos 2 pi s, sin 2 pi s, cos 4 pi s, sin 4 pi s, ...), K = 2H+1.
 * Returns WM_OK, WM_EINVAL (harmonics < 1 or > 512), WM_ENOMEM. */
WM_API wm_status wm_manifold_fourier(wm_manifold **out, int harmonics);

/** A uniform B-spline curve with n_control control points of the given degree
 * (1 = piecewise linear, 3 = cubic; at most 16: above it the Gram matrix is
 * too ill-conditioned for the orthonormal basis to hold in float): dim 1. periodic = 0: open, clamped (the
 * curve starts at P_1 and ends at P_n), s in [0,1]. periodic != 0: closed,
 * s wraps. Needs 1 <= degree <= 16 and n_control >= degree + 1.
 * Returns WM_OK, WM_EINVAL (with the reason), WM_ENOMEM. */
WM_API wm_status wm_manifold_bspline(wm_manifold **out, int n_control, int degree, int periodic);

/** The product manifold A x B: dim = dim A + dim B, context s = (s_A, s_B),
 * c(s) = c_A(s_A) (x) c_B(s_B) (index k = k_A * K_B + k_B), G = G_A (x) G_B.
 * Circle x circle is a torus, line x circle a cylinder; products nest.
 * The result owns copies: a and b may be freed afterwards.
 * Returns WM_OK, WM_EINVAL (NULL argument, dim > 16, K > 1024 or more than
 * 16 factors in all, counting those of nested products), WM_ENOMEM. */
WM_API wm_status wm_manifold_product(wm_manifold **out, const wm_manifold *a, const wm_manifold *b);

/** Your own basis. fn(s, c, user) writes the n_basis values c(s) for a context
 * s of dim coordinates, each in [0,1] ([0,1) if periodic); it must be a pure function (it is
 * called from many threads when the net is). periodic[d] != 0 marks coordinate
 * d as periodic (NULL: none periodic). fn must not call wm_infer or
 * wm_evaluate on its own thread (they would share the caller's scratch:
 * such a call returns WM_ESTATE), nor train the optimizer whose step calls
 * it (wm_step, wm_grad, wm_apply, ... on it return WM_ESTATE there). The
 * Gram matrix is computed by
 * composite Gauss-Legendre quadrature (about 2^14 evaluations, so accurate to
 * float rounding for smooth bases; kinks cost accuracy); it must be positive
 * definite (the basis functions linearly independent).
 * Needs 1 <= dim <= 4 and 1 <= n_basis <= 1024. Later, the values computed
 * from fn at each context a call is given are checked too: a NaN/Inf (or a
 * value fn did not write, or values so large that the orthonormal
 * coefficients overflow float) is WM_EINVAL from that call, nothing changed.
 * Returns WM_OK, WM_EINVAL (bad sizes, NULL fn, NaN/Inf from fn),
 * WM_ENUMERIC (Gram not positive definite), WM_ENOMEM. */
typedef void (*wm_basis_fn)(const float *s, float *c, void *user);
/** Create a manifold from a basis callback; see wm_basis_fn above for the
 * contract, sizes and statuses. */
WM_API wm_status wm_manifold_custom(wm_manifold **out, int dim, int n_basis,
                             const int *periodic, wm_basis_fn fn, void *user);

/** Copy a manifold. Returns WM_OK, WM_EINVAL, WM_ENOMEM. */
WM_API wm_status wm_manifold_clone(wm_manifold **out, const wm_manifold *m);

/** Number of context coordinates (0 for a point), or -1 if m is NULL. */
WM_API int wm_manifold_dim(const wm_manifold *m);

/** Number of basis functions K, or -1 if m is NULL. */
WM_API int wm_manifold_n_basis(const wm_manifold *m);

/** Whether context coordinate d is periodic: 1, 0, or -1 on bad arguments. */
WM_API int wm_manifold_periodic(const wm_manifold *m, int d);

/** The paper's basis c(s): writes K floats to c for the context s (dim floats;
 * may be NULL when dim = 0). Periodic coordinates wrap.
 * Returns WM_OK, WM_EINVAL (NULL, NaN/Inf, non-periodic s outside [0,1], a
 * custom basis whose value at s is not finite). */
WM_API wm_status wm_manifold_basis(const wm_manifold *m, const float *s, float *c);

/** The Gram matrix G, K x K row-major doubles, exact (closed form or exact
 * quadrature; custom bases: quadrature). Returns WM_OK or WM_EINVAL. */
WM_API wm_status wm_manifold_gram(const wm_manifold *m, double *G);

/** Release a manifold. NULL is a no-op. */
WM_API void wm_manifold_free(wm_manifold *m);

/* ------------------------------------------------------------------------ */
/** Networks                                                                   */
/* ------------------------------------------------------------------------ */

/** A feed-forward network whose parameters live on a manifold. Internally the
 * parameters are kept in the metric's orthonormal coordinates Q = L^T P
 * (G = L L^T), in which the paper's update is plain gradient descent; the API
 * speaks the paper's P and c(s). */
typedef struct wm_net wm_net;

/** Activation after a dense or conv layer. */
typedef enum {
    WM_ACT_NONE,    /**< identity */
    WM_ACT_RELU,    /**< max(0, z) */
    WM_ACT_TANH,    /**< tanh(z) */
    WM_ACT_SIGMOID  /**< 1 / (1 + exp(-z)) */
} wm_activation;

/** WM_LOSS_SOFTMAX_CE: softmax cross-entropy on the last layer's outputs
 * (logits) against integer labels, mean over samples.
 * WM_LOSS_MSE: mean over all n x n_outputs elements of (out - target)^2. */
typedef enum { WM_LOSS_SOFTMAX_CE, WM_LOSS_MSE } wm_loss;

/** WM_COND_MANIFOLD: weights on the manifold (K control points per parameter).
 * WM_COND_CONCAT: the baseline: one point of weights, with context features
 * appended to the input: a line gives s; a circle cos 2 pi s, sin 2 pi s;
 * a Fourier curve its basis without the constant; a product both factors'
 * features; a B-spline or custom basis its basis values. */
typedef enum { WM_COND_MANIFOLD, WM_COND_CONCAT } wm_conditioning;

/** Create an empty network on manifold m taking n_inputs features per sample
 * (the context is passed separately, in wm_batch.s / wm_infer's s).
 * The net keeps its own copy of m; the caller may free m afterwards.
 * Then add layers (wm_net_dense), optionally set the loss (default
 * WM_LOSS_SOFTMAX_CE), and call wm_net_init before training or inference.
 * Returns WM_OK, WM_EINVAL (NULL out or m, n_inputs < 1, bad cond), WM_ENOMEM. */
WM_API wm_status wm_net_create(wm_net **out, const wm_manifold *m, int n_inputs, wm_conditioning cond);

/** Append a dense layer y = act(W(s) x + b(s)) with n_outputs units; W and b
 * both live on the manifold. After a convolution or pooling layer it flattens
 * its input in CHW order. Returns WM_OK, WM_EINVAL (NULL, n_outputs < 1,
 * bad act, too many parameters), WM_ESTATE (after wm_net_init), WM_ENOMEM. */
WM_API wm_status wm_net_dense(wm_net *net, int n_outputs, wm_activation act);

/** Declare that rows of x are images of channels x height x width values in
 * CHW order (channels*height*width must equal n_inputs). Call it before the
 * first layer; it is needed before wm_net_conv2d / pooling layers. On a
 * concat net whose first layer is a convolution or pooling, the context
 * features enter as extra constant input channels.
 * Returns WM_OK, WM_EINVAL (NULL, sizes < 1 or not matching n_inputs),
 * WM_ESTATE (layers already added). */
WM_API wm_status wm_net_input_shape(wm_net *net, int channels, int height, int width);

/** Append a 2-D convolution with out_channels square kernel x kernel filters,
 * the given stride (>= 1) and zero padding (>= 0, < kernel), then act.
 * Weights (out x in x k x k, PyTorch's order) and biases live on the manifold.
 * Its input is the previous layer's output shape (or the input shape).
 * Output size: (H + 2 pad - kernel) / stride + 1 per side (must be >= 1).
 * Returns WM_OK, WM_EINVAL (bad sizes, no input shape, after a dense layer),
 * WM_ESTATE (after wm_net_init), WM_ENOMEM. */
WM_API wm_status wm_net_conv2d(wm_net *net, int out_channels, int kernel, int stride, int pad,
                        wm_activation act);

/** Append a max or average pooling layer over size x size windows with
 * stride = size (no padding; a remainder row/column is dropped). No
 * parameters. Returns as wm_net_conv2d. */
WM_API wm_status wm_net_maxpool(wm_net *net, int size);
/** Average pooling; as wm_net_maxpool. */
WM_API wm_status wm_net_avgpool(wm_net *net, int size);

/** Append a residual connection: out = act(current output + output of layer
 * from_layer), elementwise. Layers are numbered 0, 1, ... in the order they
 * are added, every kind counted (this one too); from_layer = -1 is the net's
 * input (on a concatenation net, the input without the context features).
 * The two shapes must be equal: the same feature count, and on images the
 * same channels x height x width. No parameters. A layer's output may feed
 * any number of residuals; inference keeps it only until its last reader
 * has run (wm_infer_workspace_size grows by one batch-sized buffer per
 * output a skip keeps alive across other layers).
 * Returns WM_OK, WM_EINVAL (NULL net, no layer yet, from_layer out of
 * -1..n_layers-1, shapes differ, bad act), WM_ESTATE (after wm_net_init). */
WM_API wm_status wm_net_residual(wm_net *net, int from_layer, wm_activation act);

/** Append a layer normalisation: per sample, over all F features of the
 * current output (all of channels x height x width on an image),
 * y = (x - mean) / sqrt(var + 1e-5) * g(s) + b(s), var the biased
 * (population) variance; as torch.nn.LayerNorm(F) with a weight and bias
 * that depend on s. g and b (F each) live on the manifold (or at one point,
 * see wm_net_set_layer_manifold), initialised to g = 1, b = 0 at every
 * context; wm_net_control_point and wm_net_weights_at give g as w (F x 1)
 * and b as b. The output keeps the input's shape.
 * Returns WM_OK, WM_EINVAL (NULL net; first layer of a concatenation net),
 * WM_ESTATE (after wm_net_init). */
WM_API wm_status wm_net_layernorm(wm_net *net);

/** Append a group normalisation (images only): the C channels in `groups`
 * contiguous groups (groups divides C), each group normalised over its
 * (C/groups) x H x W values per sample, eps 1e-5, biased variance; then a
 * per-channel gain and bias on the manifold, initialised to 1 and 0. As
 * torch.nn.GroupNorm(groups, C). w is the gain (C x 1), b the bias.
 * Returns WM_OK, WM_EINVAL (NULL net, no image, groups not dividing C),
 * WM_ESTATE (after wm_net_init). */
WM_API wm_status wm_net_groupnorm(wm_net *net, int groups);

/** Append a FiLM layer: per feature (per channel on an image)
 * y = gamma(s) * x + beta(s), gamma and beta on the manifold, initialised to
 * gamma = 1, beta = 0 at every context; w is gamma, b is beta. FiLM as the
 * paper's other baseline (Perez et al. 2018) is a composition: layers kept
 * at one point (wm_net_set_layer_manifold(net, l, 0)) each followed by a
 * wm_net_film layer on the manifold.
 * Returns WM_OK, WM_EINVAL (NULL net; first layer of a concatenation net),
 * WM_ESTATE (after wm_net_init). */
WM_API wm_status wm_net_film(wm_net *net);

/** Append inverted dropout with probability p (0 <= p < 1): in wm_step and
 * wm_grad each element is zeroed with probability p and the rest scaled by
 * 1/(1 - p); in wm_infer, wm_evaluate and context inference it is the
 * identity. The mask is a function of the wm_net_init seed, the optimizer's
 * step count and the sample's index in the batch (and the layer and the
 * element): the same step on the same batch drops the same elements.
 * p = 0 is the identity everywhere, bit for bit. No parameters.
 * The seed is stored in model files (format version 3, written for every
 * net with a dropout layer) and kept by wm_net_clone, so training resumed
 * from a checkpoint (wm_optimizer_save / wm_optimizer_load, or
 * wm_net_save_buffer + wm_net_load_buffer + wm_optimizer_set_state) drops
 * the same elements as training that never stopped. A file written before
 * version 3 (libwmanifold before this change) loads with seed 0.
 * Returns WM_OK, WM_EINVAL (NULL net, p out of range or NaN; first layer of
 * a concatenation net), WM_ESTATE (after wm_net_init). */
WM_API wm_status wm_net_dropout(wm_net *net, float p);

/** Append a global average pooling (images only): channel c's output is the
 * mean of its H x W values; the output is an image of C x 1 x 1 (a dense
 * layer after it sees C features). No parameters.
 * Returns WM_OK, WM_EINVAL (NULL net, no image), WM_ESTATE (after init). */
WM_API wm_status wm_net_global_avgpool(wm_net *net);

/** Place layer `layer`'s parameters, any time after the layer is added and
 * before wm_net_init: on = 0 makes them one point shared by every context
 * (K = 1 for that layer, G = [1]: its control point 0 is its only one);
 * on = 1 (the default on a manifold net) puts them on the net's manifold.
 * The training step stays the paper's layer by layer: SD with lr = eta moves
 * a manifold layer's control points by -eta (G^-1 (x) I) dL/dP and a point
 * layer's by -eta dL/dP. Layers without parameters accept it and ignore it.
 * Returns WM_OK, WM_EINVAL (NULL net, no such layer, on not 0 or 1, a
 * concatenation net), WM_ESTATE (after wm_net_init). */
WM_API wm_status wm_net_set_layer_manifold(wm_net *net, int layer, int on);

/** How a convolution runs a batch whose samples have different contexts:
 * WM_CONV_STACKED: im2col and one GEMM with the K basis kernels stacked (K x
 * the FLOPs of a plain conv); WM_CONV_MATERIALISED: build each sample's kernel
 * W(s_i) (K |W| work) and run a plain conv (1 x FLOPs), as CondConv does;
 * WM_CONV_AUTO (default): a cost model picks the cheaper per layer and batch.
 * Batches sharing one context always materialise once. The results agree to
 * float rounding. Returns WM_OK or WM_EINVAL. */
typedef enum {
    WM_CONV_AUTO,          /**< a FLOP model picks per layer and batch */
    WM_CONV_STACKED,       /**< one GEMM with the K basis kernels stacked */
    WM_CONV_MATERIALISED   /**< each sample's kernel built, then a plain conv */
} wm_conv_strategy;
/** Choose the conv strategy for mixed-context batches (see wm_conv_strategy).
 * A runtime setting, not stored in model files: a loaded net starts at
 * WM_CONV_AUTO (the strategies agree to float rounding, not bit for bit).
 * Returns WM_OK or WM_EINVAL. */
WM_API wm_status wm_net_set_conv_strategy(wm_net *net, wm_conv_strategy strategy);

/** Choose the training loss. Returns WM_OK, WM_EINVAL, WM_ESTATE (after init). */
WM_API wm_status wm_net_set_loss(wm_net *net, wm_loss loss);

/** Allocate and initialise the parameters from seed: He normal weights for
 * layers followed by relu or none, Glorot normal for tanh and sigmoid, zero
 * biases, and the manifold starts as a point (the same weights at every s:
 * they sit on the basis's constant direction). Calling it again
 * re-initialises; an optimizer already on the net notices at its next call
 * and restarts as a new one would (moments zero, step count 0, any gradient
 * from wm_grad discarded). Returns WM_OK, WM_EINVAL (NULL), WM_ESTATE (no layers, or
 * softmax CE with a single output), WM_ENOMEM. */
WM_API wm_status wm_net_init(wm_net *net, uint64_t seed);

/** Features per sample the net takes (n_inputs), or -1 if net is NULL. */
WM_API int    wm_net_n_inputs(const wm_net *net);
/** The last layer's width (0 before any layer), or -1 if net is NULL. */
WM_API int    wm_net_n_outputs(const wm_net *net);
/** Number of layers, pooling included, or -1 if net is NULL. */
WM_API int    wm_net_n_layers(const wm_net *net);
/** Every trainable scalar over all K basis points, or 0 if net is NULL (a
 * size_t has no -1; wm_net_n_layers returns -1 for NULL). */
WM_API size_t wm_net_n_params(const wm_net *net);

/** Give context coordinate `coord` in your own units: contexts passed to
 * this net (wm_batch.s, wm_infer, wm_net_weights_at, and wm_manifold_basis
 * on wm_net_manifold) are then in [lo, hi] on that coordinate, e.g. a line
 * over 0-40 degrees C, or for a periodic coordinate any period (hi - lo),
 * e.g. an angle in [0, 360) degrees; they are mapped to the basis' [0,1] by
 * (s - lo) / (hi - lo). Context inference answers in the same units. Stored
 * in model files. On a non-periodic coordinate a context outside [lo, hi]
 * is WM_EINVAL, as outside [0,1] before: how far the net may extrapolate is
 * the choice of range (a line fitted to 10-30 degrees with the range 0-40
 * extrapolates to 0 and 40). Call it before wm_net_init (the parameters
 * are learnt in these units). Default: [0, 1] on every coordinate.
 * Returns WM_OK, WM_EINVAL (NULL, coord outside 0..dim-1, lo >= hi, NaN or
 * Inf, or hi - lo below float resolution), WM_ESTATE (after wm_net_init). */
WM_API wm_status wm_net_set_context_range(wm_net *net, int coord, float lo, float hi);

/** The range of context coordinate `coord` (see wm_net_set_context_range):
 * writes lo and hi (either may be NULL). Returns WM_OK or WM_EINVAL. */
WM_API wm_status wm_net_context_range(const wm_net *net, int coord, float *lo, float *hi);

/** Context dimension the net expects (its manifold's dim), or -1. */
WM_API int wm_net_context_dim(const wm_net *net);

/** The net's own manifold (valid while the net lives), or NULL. */
WM_API const wm_manifold *wm_net_manifold(const wm_net *net);

/** Describe layer `layer` (0-based; layers are numbered in the order added,
 * pooling included): the columns and rows of the matrix wm_net_weights_at
 * writes (dense: n_in inputs incl. a concat net's context features, n_out
 * units; conv: n_in = in_channels*k*k, n_out = out_channels; pooling: the
 * flattened input and output sizes), and its activation (pooling: NONE).
 * Any out pointer may be NULL. Returns WM_OK or WM_EINVAL. */
WM_API wm_status wm_net_layer_info(const wm_net *net, int layer, int *n_in, int *n_out,
                            wm_activation *act);

/** Free this thread's scratch memory now. wm_infer and wm_evaluate keep a
 * per-thread block sized to the largest batch chunk the thread has run (for
 * no allocation in steady state) until the thread exits or the library is
 * unloaded; a long-lived thread that ran one large net can give it back
 * with this call. The next wm_infer allocates again. Safe to call at any
 * time; a no-op when the thread has no scratch (or from a basis callback
 * during a call). Blocks of 1 MiB or more are mapped directly, so they
 * return to the system. */
WM_API void wm_scratch_free(void);

/** Run n samples: x is n x n_inputs, s is n x dim contexts (NULL allowed when
 * dim = 0), out receives n x n_outputs (the last layer's outputs: logits for
 * softmax CE). Samples may have different contexts. n = 0 does nothing.
 * Thread-safe on one net. Uses per-thread scratch that grows to the largest
 * chunk seen and is released at thread exit: no allocation in steady state.
 * Any n up to INT_MAX works (batches run in chunks). out must not overlap x
 * or s (later chunks' inputs would be overwritten): an overlap is WM_EINVAL.
 * Returns WM_OK, WM_EINVAL (NULL, n < 0, NaN/Inf input or context, context
 * out of domain, out overlapping x or s), WM_ESTATE (not initialised),
 * WM_ENUMERIC (an output is not finite although the inputs are: inputs or
 * parameters too large for float; the message names it; a batch of at most
 * 256 samples then writes nothing to out, a larger one may have written
 * the chunks of 256 before it), WM_ENOMEM. */
WM_API wm_status wm_infer(const wm_net *net, const float *x, const float *s, int n, float *out);

/** wm_infer with caller-owned workspace (no allocation at all, ever).
 * wm_infer_workspace_size gives the bytes needed for batches up to n samples
 * (0 if net is NULL or not initialised).
 * Returns as wm_infer, plus WM_EINVAL when ws_bytes is too small. */
WM_API size_t    wm_infer_workspace_size(const wm_net *net, int n);
/** wm_infer on caller-owned workspace ws of ws_bytes bytes (see
 * wm_infer_workspace_size); never allocates. */
WM_API wm_status wm_infer_ws(const wm_net *net, const float *x, const float *s, int n, float *out,
                      void *ws, size_t ws_bytes);

/** The plain layer at context s: w receives n_out x n_in (row-major; conv:
 * out x (in*k*k) ordered [out][in][ky][kx] as PyTorch orders them), b n_out.
 * For a concat net s is ignored and may be NULL (the context columns or
 * channels are the last ones of the first layer's w). Either output may be
 * NULL. Returns WM_OK, WM_EINVAL (bad arguments, a layer without parameters),
 * WM_ENUMERIC (a weight at s does not fit in float: parameters too large;
 * nothing written), WM_ESTATE (not initialised). */
WM_API wm_status wm_net_weights_at(const wm_net *net, int layer, const float *s, float *w, float *b);

/** Control point P_k (k in 0..K-1) of layer `layer`, in the paper's
 * coordinates: w is n_out x n_in, b n_out; W(s) = sum_k c_k(s) P_k.
 * Either output may be NULL. A concat net has K = 1.
 * Returns WM_OK, WM_EINVAL, WM_ENUMERIC (an entry of P_k = (L^-T Q)_k does not
 * fit in float: parameters too large; nothing written), WM_ESTATE (not
 * initialised). */
WM_API wm_status wm_net_control_point(const wm_net *net, int layer, int k, float *w, float *b);

/** Overwrite control point P_k of a layer (either input may be NULL to keep
 * that part). Returns WM_OK, WM_EINVAL (NULL net, bad index, NaN/Inf),
 * WM_ENUMERIC (a value that overflows float in the internal coordinates
 * Q = L^T P: possible when the basis takes values above 1, e.g. a custom
 * one; nothing changed), WM_ESTATE (not initialised). */
WM_API wm_status wm_net_set_control_point(wm_net *net, int layer, int k, const float *w, const float *b);

/** Read-only view of all parameters in the internal orthonormal coordinates,
 * the layout of wm_grad_buffer; *len receives the count. NULL before init.
 * The array starts on a 64-byte boundary (as does wm_grad_buffer's). */
WM_API const float *wm_net_params(const wm_net *net, size_t *len);

/** Overwrite all parameters (len must equal wm_net_n_params) with q, in the
 * internal orthonormal coordinates (the layout of wm_net_params). Use it to
 * broadcast parameters between processes or restore a snapshot.
 * Returns WM_OK, WM_EINVAL (NULL, wrong len, NaN/Inf), WM_ESTATE. */
WM_API wm_status wm_net_set_params(wm_net *net, const float *q, size_t len);

/** Save the architecture and parameters to path (see docs/model-format.md),
 * and the wm_net_init seed when the net has a dropout layer (its masks
 * depend on it): such a net is written as format version 3, any other net
 * in the oldest version that holds it (1 or 2), as earlier releases wrote it.
 * Atomic: written to a temporary file in the same directory, flushed,
 * fsynced and renamed over path, so path always holds a whole model.
 * Files: a new file gets mode 0666 less the umask (as any tool's output); a
 * replaced file keeps its permission bits (not its owner). If path is a
 * symbolic link, the file it points to is replaced (atomically, beside that
 * file) and the link stays; a dangling link's target is created. A path
 * that names a directory, FIFO or device is refused with WM_EIO (write the
 * bytes of wm_net_save_buffer there instead). The temporary file is
 * "<name>.tmp.XXXXXX", its name shortened to fit NAME_MAX (255 bytes).
 * Returns WM_OK, WM_EINVAL (NULL or empty path), WM_ESTATE (not
 * initialised), WM_EIO (with the reason; the old file is then unchanged),
 * WM_ENOMEM. */
WM_API wm_status wm_net_save(const wm_net *net, const char *path);

/** Load a model saved by wm_net_save; *out is a new initialised net whose
 * wm_infer is bit-identical to the saved one's, and whose dropout masks are
 * the saved net's (its wm_net_init seed; a file of format version 1 or 2
 * loads with seed 0). A net on a custom manifold
 * needs its basis callback: use wm_net_load_custom (plain wm_net_load then
 * returns WM_EINVAL). Never blocks on a FIFO or device: anything but a
 * regular file is WM_EIO. Returns WM_OK, WM_EINVAL (NULL or empty path),
 * WM_EIO (cannot open/read, not a regular file), WM_EFORMAT (anything wrong
 * in the file: not a model file, truncated, corrupt, wrong version, a field
 * out of range or inconsistent, or the file shrank while it was read; the
 * message names the file and the field), WM_ENOMEM. *out is written only on
 * success. */
WM_API wm_status wm_net_load(wm_net **out, const char *path);
/** wm_net_load for a net on a custom manifold: fn and user are its basis
 * callback (see wm_manifold_custom). The callback is tried first: if it does
 * not write exactly the K values the file declares, or returns a non-finite
 * one, the load fails with WM_EINVAL. A manifold with more than one custom
 * factor (a product of two custom bases) cannot be rebuilt from one callback
 * and is refused with WM_EINVAL. Returns as wm_net_load. */
WM_API wm_status wm_net_load_custom(wm_net **out, const char *path, wm_basis_fn fn, void *user);

/** An independent deep copy of net: architecture, manifold (a custom basis
 * shares the callback and its user pointer), loss, parameters if
 * initialised, and the conv strategy. Optimizers are not copied. The copy
 * infers bit-identically to the original. net is only read (safe while
 * other threads infer on it).
 * Returns WM_OK, WM_EINVAL (NULL out or net), WM_ENOMEM (*out untouched). */
WM_API wm_status wm_net_clone(wm_net **out, const wm_net *net);

/** A human-readable table of the net, like a model summary in other
 * frameworks: the manifold, conditioning and loss, then one row per layer
 * (kind, input and output shapes, activation, parameter count, whether its
 * parameters are on the manifold or one point) and the total. Writes at
 * most len bytes including the terminating NUL and truncates like snprintf
 * (buf may be NULL when len = 0). Never allocates.
 * Returns WM_OK (also when truncated), WM_EINVAL (NULL net, or NULL buf with
 * len > 0). */
WM_API wm_status wm_net_summary(const wm_net *net, char *buf, size_t len);

/** The bytes wm_net_save would write for net (the same bytes, see
 * docs/model-format.md), in a new buffer: for models embedded in a binary or
 * sent over a socket. *buf receives the buffer (free it with wm_free) and
 * *len its length; both are written only on success. Thread-safe for one
 * net from many threads (the net is read only).
 * Returns WM_OK, WM_EINVAL (NULL net, buf or len), WM_ESTATE (not
 * initialised), WM_ENOMEM. */
WM_API wm_status wm_net_save_buffer(const wm_net *net, void **buf, size_t *len);

/** wm_net_load from the len bytes at buf (a file's contents, e.g. from
 * wm_net_save_buffer); the caller keeps buf. Truncated, altered or foreign
 * bytes are WM_EFORMAT, as from a file; a net on a custom manifold needs
 * wm_net_load_buffer_custom. Returns WM_OK, WM_EINVAL (NULL out or buf),
 * WM_EFORMAT, WM_ENOMEM; *out is written only on success. */
WM_API wm_status wm_net_load_buffer(wm_net **out, const void *buf, size_t len);

/** wm_net_load_buffer for a net on a custom manifold, with its basis
 * callback fn/user, checked as in wm_net_load_custom. Returns as
 * wm_net_load_buffer (WM_EINVAL also for a NULL fn). */
WM_API wm_status wm_net_load_buffer_custom(wm_net **out, const void *buf, size_t len,
                                           wm_basis_fn fn, void *user);

/** Release a buffer the library allocated for the caller
 * (wm_net_save_buffer). NULL is a no-op. */
WM_API void wm_free(void *p);

/** Release a net. NULL is a no-op. Free its optimizers first or after: they
 * must not be used once the net is freed. */
WM_API void wm_net_free(wm_net *net);

/* ------------------------------------------------------------------------ */
/** Training                                                                   */
/* ------------------------------------------------------------------------ */

/** A batch of n samples, each with its own context. All arrays caller-owned. */
typedef struct {
    int n;                  /**< samples */
    const float *x;         /**< n x n_inputs, row-major */
    const float *s;         /**< n x manifold dim, each sample's context (NULL if dim 0) */
    const int32_t *labels;  /**< n class indices (WM_LOSS_SOFTMAX_CE), else NULL */
    const float *targets;   /**< n x n_outputs (WM_LOSS_MSE), else NULL */
} wm_batch;

/** Optimizer kinds, all acting in the orthonormal coordinates Q. */
typedef enum {
    WM_OPT_SD,        /**< the paper's volume-constrained steepest descent */
    WM_OPT_MOMENTUM,  /**< SD with momentum (PyTorch's convention) */
    WM_OPT_ADAM       /**< Adam, with decoupled weight decay (AdamW) */
} wm_opt_kind;

/** Optimizer settings; start from wm_opt_default(kind) and change fields.
 * All optimizers act in the orthonormal coordinates Q, where plain SD is the
 * paper's volume-constrained step. */
typedef struct {
    wm_opt_kind kind;       /**< which optimizer */
    float lr;               /**< eta = 1/(2 lambda) */
    float volume;           /**< > 0: scale each step so that the manifold moves by
                               exactly integral |dW(s)|^2 ds = volume (lr unused) */
    float momentum;         /**< WM_OPT_MOMENTUM: v = momentum v + g; dQ = -lr v */
    float beta1;            /**< WM_OPT_ADAM: first-moment decay */
    float beta2;            /**< WM_OPT_ADAM: second-moment decay */
    float eps;              /**< WM_OPT_ADAM: added to sqrt(v) */
    float weight_decay;     /**< SD/momentum: added to the gradient; Adam: decoupled
                               (AdamW). Penalises the manifold's mean |W(s)|^2. */
} wm_opt_config;

/** An optimizer bound to one net: settings, moments and workspace. */
typedef struct wm_optimizer wm_optimizer;

/** Defaults: volume 0, weight_decay 0; SD lr 0.01; momentum lr 0.01,
 * momentum 0.9; Adam lr 1e-3, beta1 0.9, beta2 0.999, eps 1e-8.
 * An unknown kind gives the SD defaults with that kind set. */
WM_API wm_opt_config wm_opt_default(wm_opt_kind kind);

/** Create an optimizer for an initialised net; it keeps a pointer to net
 * (which must outlive it) and its own state (momentum, Adam moments).
 * Returns WM_OK, WM_EINVAL (NULL, bad kind, negative or non-finite settings,
 * lr <= 0 when volume = 0, beta outside [0,1)), WM_ESTATE (net not
 * initialised), WM_ENOMEM. */
WM_API wm_status wm_optimizer_create(wm_optimizer **out, wm_net *net, const wm_opt_config *cfg);

/** One training step: wm_grad then wm_apply. *loss (may be NULL) receives the
 * batch's mean loss before the update. Batches whose samples share one
 * context run a single materialised network (K times fewer FLOPs). On a net
 * of dense layers (without a volume budget) the gradient is applied a block
 * at a time as it is formed and never stored whole (one sample: the rank-1
 * c_hat delta x^T, no GEMM), so wm_grad_buffer's content after wm_step is
 * unspecified. No allocation after the first call of a given batch size.
 * Returns WM_OK, WM_EINVAL (bad batch: n < 1, NULL arrays, labels out of
 * range or missing, targets missing, NaN/Inf, context out of domain),
 * WM_ENUMERIC (non-finite loss or update: parameters unchanged), WM_ENOMEM. */
WM_API wm_status wm_step(wm_optimizer *opt, const wm_batch *batch, float *loss);

/** Compute the gradient of the batch-mean loss into the optimizer's gradient
 * buffer (overwriting it), without changing the net. *loss as in wm_step.
 * Returns as wm_step. */
WM_API wm_status wm_grad(wm_optimizer *opt, const wm_batch *batch, float *loss);

/** The gradient buffer: wm_net_n_params floats in Q coordinates (the layout of
 * wm_net_params, identical for nets of the same architecture), holding the raw
 * gradient of the last wm_grad (weight decay not included). The caller may
 * read or overwrite it (e.g. average it across processes) before wm_apply.
 * wm_step overwrites it (it may use it as scratch): after a wm_step its
 * contents are unspecified and wm_apply needs a wm_grad first.
 * Valid while opt lives. NULL if opt is NULL. */
WM_API float *wm_grad_buffer(wm_optimizer *opt, size_t *len);

/** Apply one update from the gradient buffer. Returns WM_OK, WM_EINVAL,
 * WM_ESTATE (no gradient computed yet), WM_ENUMERIC (non-finite gradient or
 * update: nothing changed). */
WM_API wm_status wm_apply(wm_optimizer *opt);

/** Number of updates applied so far (Adam's t), 0 if opt is NULL. It
 * saturates at UINT64_MAX (which wm_optimizer_set_state may set): training
 * goes on with Adam's bias corrections at 1. */
WM_API uint64_t wm_optimizer_steps(const wm_optimizer *opt);

/** The net opt trains (the one given to wm_optimizer_create or returned by
 * wm_optimizer_load), read-only; NULL if opt is NULL. Valid while both
 * live. For code that holds only the optimizer, e.g. to compare the
 * architecture between ranks before a data-parallel step. */
WM_API const wm_net *wm_optimizer_net(const wm_optimizer *opt);

/** Change the learning rate between steps (schedules: warm-up, step decay,
 * cosine). The optimizer's state is kept: momentum keeps PyTorch's
 * convention (v = mu v + g, dQ = -lr v), so the new lr applies to the whole
 * velocity; Adam keeps m, v and t. lr = 0 is allowed (a step then changes
 * only the moments). Saved by wm_optimizer_save as the checkpoint's lr.
 * Unused while the config's volume > 0. Not thread-safe against a
 * concurrent wm_step on the same optimizer.
 * Returns WM_OK, WM_EINVAL (NULL, lr < 0, NaN or +-Inf: nothing changed). */
WM_API wm_status wm_optimizer_set_lr(wm_optimizer *opt, float lr);

/** The current learning rate, or NaN if opt is NULL. */
WM_API float wm_optimizer_lr(const wm_optimizer *opt);

/** Clip the gradient before each update: the Q-gradient g of the batch-mean
 * loss (weight decay not included) is scaled by min(1, max_norm / |g|_2)
 * before the optimizer's rule sees it, on every update path (wm_step's
 * fused and direct paths, wm_apply). With SD and volume = 0 a step's |dQ| is
 * then at most lr * max_norm. max_norm = 0 turns clipping off (the default).
 * wm_grad_buffer keeps the unclipped gradient. Clipping needs |g| before any
 * write, so a wm_step of more than one sample on a dense net forms the whole
 * gradient (one sample computes |g| from its rank-1 factors). Stored in
 * checkpoints (wm_optimizer_save), so a resumed run clips alike.
 * Returns WM_OK, WM_EINVAL (NULL, max_norm < 0, NaN or Inf: nothing changed). */
WM_API wm_status wm_optimizer_set_clip_norm(wm_optimizer *opt, float max_norm);

/** Mean loss and accuracy (fraction of samples whose argmax output equals the
 * label, or under MSE the target's argmax) over a batch; either output may be
 * NULL. Thread-safe on one net (per-thread scratch, like wm_infer).
 * Returns as wm_step; WM_ENUMERIC when the loss is not finite (activations
 * that overflow float), with *loss and *accuracy untouched. */
WM_API wm_status wm_evaluate(const wm_net *net, const wm_batch *batch, float *loss, float *accuracy);

/** Checkpoints: save the optimizer's net together with the optimizer's settings
 * and state (step count, momentum / Adam moments) in one model file, written
 * atomically like wm_net_save. wm_net_load reads such a file as a plain model.
 * Returns WM_OK, WM_EINVAL, WM_EIO, WM_ENOMEM. */
WM_API wm_status wm_optimizer_save(const wm_optimizer *opt, const char *path);

/** Load a checkpoint written by wm_optimizer_save: *net receives a new net and
 * *opt a new optimizer on it (free both; the optimizer first or last, but
 * do not use it after its net is freed). Training continued from here reaches
 * bit-identical parameters to training that never stopped. fn/user: the basis
 * callback for a net on a custom manifold, else NULL.
 * Returns WM_OK, WM_EINVAL (NULL, or a file without optimizer state), WM_EIO,
 * WM_EFORMAT, WM_ENOMEM. */
WM_API wm_status wm_optimizer_load(wm_optimizer **opt, wm_net **net, const char *path,
                            wm_basis_fn fn, void *user);

/** Release an optimizer. NULL is a no-op. */
WM_API void wm_optimizer_free(wm_optimizer *opt);

/* ------------------------------------------------------------------------ */
/** Data-parallel support (what libwmanifold_mpi, or your own transport, needs) */
/* ------------------------------------------------------------------------ */

/** Floats of optimizer state wm_optimizer_get_state writes: 0 for SD; for
 * momentum the velocity v (wm_net_n_params floats); for Adam the first
 * moment m then the second moment v (2 x wm_net_n_params). Each block has
 * the layout of wm_net_params, identical for nets of the same architecture.
 * 0 if opt is NULL. Thread-safe on a const opt. */
WM_API size_t wm_optimizer_state_len(const wm_optimizer *opt);

/** Copy the optimizer's moments (see wm_optimizer_state_len for the layout)
 * into state, len floats (exactly wm_optimizer_state_len; state may be NULL
 * when that is 0). The step count is wm_optimizer_steps. Together with
 * wm_net_params they are everything a step reads besides the settings.
 * Returns WM_OK, WM_EINVAL (NULL, wrong len). */
WM_API wm_status wm_optimizer_get_state(const wm_optimizer *opt, float *state, size_t len);

/** Overwrite the optimizer's moments with state (layout and len as
 * wm_optimizer_get_state) and its step count with steps, e.g. to copy
 * another process's optimizer. The settings are not touched.
 * Returns WM_OK, WM_EINVAL (NULL, wrong len, NaN/Inf, a negative Adam
 * second moment): then nothing was changed. */
WM_API wm_status wm_optimizer_set_state(wm_optimizer *opt, const float *state, size_t len,
                                        uint64_t steps);

/** Set the gradient buffer to zeros and mark it as computed, as wm_grad of
 * a batch without samples would: a process with an empty shard of a
 * data-parallel step contributes zeros to the sum, then calls wm_apply like
 * the others. Returns WM_OK, WM_EINVAL (NULL). */
WM_API wm_status wm_grad_zero(wm_optimizer *opt);

/** What wm_grad_notify calls as each layer's part of the gradient becomes
 * final: the layer's index and its block of the gradient buffer,
 * wm_grad_buffer(opt)[offset, offset + len). */
typedef void (*wm_grad_ready_fn)(void *user, int layer, size_t offset, size_t len);

/** wm_grad, calling ready(user, layer, offset, len) during the backward pass
 * right after each layer with parameters has written its block of the
 * gradient buffer, so a transport can start sending that block (e.g. a
 * non-blocking all-reduce) while earlier layers are still differentiated.
 * Calls come last layer first; the blocks are contiguous, disjoint, and
 * together cover the whole buffer (each block ends where the next call's
 * begins: offset + len of layer l is the offset of the next layer with
 * parameters, and layer 0's offset is 0). No later step of the pass reads
 * or writes a block once it is reported, so the callback may read or
 * overwrite it (and earlier reported blocks), or hand them to another
 * thread or a DMA engine, until wm_apply; it must not touch the blocks not
 * yet reported, nor call the library on this optimizer or its net (the
 * calls that would write the optimizer's gradient, moments or workspace,
 * wm_step, wm_grad, wm_grad_notify, wm_apply, wm_grad_zero and
 * wm_optimizer_set_state, return WM_ESTATE there; wm_optimizer_free there
 * is undefined). ready
 * is called only after the batch passed every check and its loss is
 * finite: on failure it was never called. ready NULL is wm_grad.
 * batch->n = 0 (its arrays may be NULL) is allowed here, unlike wm_grad:
 * the buffer becomes zeros as with wm_grad_zero, *loss 0, and every block
 * is reported in the same order, so a process with an empty shard can
 * take part in the same per-block exchange as the others.
 * Returns as wm_grad. */
WM_API wm_status wm_grad_notify(wm_optimizer *opt, const wm_batch *batch, float *loss,
                                wm_grad_ready_fn ready, void *user);

/** Record msg as this thread's last error (wm_last_error; truncated to 511
 * bytes) and return st, so a library built on this one reports failures
 * the same way. NULL msg records "". Thread-safe (the text is per thread). */
WM_API wm_status wm_error_set(wm_status st, const char *msg);

/* ------------------------------------------------------------------------ */
/** Context inference                                                          */
/* ------------------------------------------------------------------------ */

/** Find the context s (dim floats into s_out) that best explains n samples x
 * that share one unknown context: with labels, the s minimising their mean
 * cross-entropy; with labels NULL, the s minimising the mean prediction
 * entropy (the most confident). The same as wm_infer_context_batch with
 * shared = 1 on the batch {n, x, NULL, labels, NULL} (see there for the
 * search and its cost), but needs a softmax cross-entropy net; a point
 * manifold (dim 0) writes nothing. Thread-safe on one net.
 * Returns WM_OK, WM_EINVAL (NULL, n < 1, labels out of range, MSE net,
 * NaN/Inf inputs), WM_ESTATE (not initialised), WM_ENUMERIC (the score is not
 * finite anywhere), WM_ENOMEM. */
WM_API wm_status wm_infer_context(const wm_net *net, const float *x, const int32_t *labels, int n,
                                  float *s_out);

/** Context inference for a batch: "which task is this?".
 * shared = 1: one context for the whole batch (all its samples come from the
 * same task), written to s_out[0..dim); shared = 0: one context per sample,
 * s_out is n x dim. The objective of a sample at context s is
 *   batch->labels given:  its softmax cross-entropy (the outputs as logits),
 *   batch->targets given: its MSE (mean over the outputs, as in training),
 *   both given:           the net's own loss,
 *   neither:              its prediction entropy in nats (softmax nets only;
 *                         an MSE net with neither is WM_EINVAL);
 * shared mode minimises the batch mean, per-sample mode each sample's own
 * value. batch->s is ignored (may be NULL). Periodic coordinates come back
 * in [0,1), others in [0,1]. Works on concatenation nets too.
 * loss_out (may be NULL): the objective at the answer: shared, one value
 * (the batch mean); per sample, n values (each sample's own).
 *
 * The search, per coordinate d: a grid of G_d = 8 u_d points (non-periodic:
 * 8 u_d + 1, ends included), where u_d is the basis' resolution on that
 * coordinate: the highest harmonic H of a Fourier basis (1 for a circle),
 * the number of knot spans of a B-spline (n_control - degree open,
 * n_control closed), 1 for a line, 2 for a custom basis. Then a golden-
 * section search (20 iterations, 22 inferences) over one grid spacing either
 * side of the best point, periodic coordinates wrapped. Cost, in inferences
 * of the whole batch (one wm_infer call each; per-sample mode evaluates all
 * samples at their own candidates in the same call, so both modes cost the
 * same), exactly:
 *   dim 1, or dim 2 with G_0 G_1 <= 1024 (a full grid, then dim sweeps of
 *     refinement):                    G_0 ... G_{dim-1} + 22 dim^2
 *   otherwise (coordinate-wise from the domain's centre, 2 sweeps each
 *     scanning one coordinate's grid then refining it):
 *                                     1 + 2 sum_d (G_d + 22)
 * e.g. line 9 + 22 = 31, circle 8 + 22 = 30, torus 64 + 88 = 152,
 * a product of 8 lines 1 + 2*8*31 = 497. The answer is within the final
 * bracket (2 h 0.618^20 ~ 1.3e-4 h, h = 1/(8 u_d)) of a local minimum of the
 * objective along the last coordinate refined (on dim >= 2 the refinement
 * is coordinate-wise, dim or 2 sweeps, not run to convergence: along an
 * earlier coordinate the answer is near a local minimum, not always
 * within the bracket of it), and never worse than any point it evaluated;
 * which minimum depends on the grid: a global minimum narrower than the
 * grid spacing can be missed.
 * The batch is not changed; a failed call writes nothing. Thread-safe on one
 * net (uses this thread's scratch; allocates its working arrays per call).
 * Returns WM_OK, WM_EINVAL (NULL net, batch, x or s_out, n < 1, shared not 0
 * or 1, NaN/Inf inputs or targets, labels out of range, MSE net with neither
 * labels nor targets), WM_ESTATE (not initialised), WM_ENUMERIC (the
 * objective is not finite at any context tried), WM_ENOMEM. */
WM_API wm_status wm_infer_context_batch(const wm_net *net, const wm_batch *batch, int shared,
                                        float *s_out, float *loss_out);

#ifdef __cplusplus
}
#endif

#endif /* WMANIFOLD_H */
