/*
 * common.h -- the pieces the Fashion-MNIST examples share: flags, a small RNG,
 * image warping, the training loop that trains a weight-manifold net and its
 * input-concatenation baseline side by side on identical batches, evaluation
 * at a fixed context, CSV and gnuplot helpers.
 *
 * Everything here is plain host code around the public API in wmanifold.h;
 * nothing reaches into the library.
 */
#ifndef WM_EXAMPLES_COMMON_H
#define WM_EXAMPLES_COMMON_H

#include <stdint.h>
#include <stdio.h>

#include "idx.h"
#include "wmanifold.h"

#define EX_MAX_LAYERS 8
#define EX_N_CLASSES 10
#define EX_DEFAULT_DATA "/usr/share/datasets/fashion-mnist"

/* ---- flags ------------------------------------------------------------------ */

typedef struct {
    int epochs;
    int batch;
    float lr;                 /* <= 0: the optimizer's default */
    wm_opt_kind opt;
    uint64_t seed;
    const char *data_dir;
    const char *out_dir;
    int n_train;              /* <= 0: all 60000 */
    int n_test;               /* <= 0: all 10000 */
    int hidden[EX_MAX_LAYERS];
    int n_hidden;
    int concat_hidden[EX_MAX_LAYERS]; /* the baseline's widths (default: the same) */
    int n_concat_hidden;
    int no_plot;
    int quiet;                /* no per-epoch lines */
} ex_opts;

/* Fill in the defaults every example starts from. */
void ex_opts_default(ex_opts *o);

/* The help text for the flags ex_opts_parse understands. */
void ex_opts_help(FILE *f, const ex_opts *defaults);

/* A comma-separated list of 1 to max_count integers in 1..max_value into w
 * and *n; 0, or -1 for anything else. */
int ex_parse_widths(const char *text, int *w, int *n, int max_count, int max_value);

/* If argv[*i] is a common flag, consume it (and its value, advancing *i) and
 * return 1; return 0 if it is not one of ours, -1 (message printed) if its
 * value is bad. Flags take "--name value" or "--name=value". */
int ex_opts_parse(ex_opts *o, int argc, char **argv, int *i);

/* If argv[*i] is --name (or --name=...), store its value in *val, advance *i
 * past it and return 1; 0 if it is another flag; -1 if the value is missing. */
int ex_flag(int argc, char **argv, int *i, const char *name, const char **val);

/* Parse "a,b" into two floats. Returns 0, or -1 on bad syntax. */
int ex_parse_pair(const char *text, float *a, float *b);

/* Parse a positive float / int, -1 on bad syntax or range. */
int ex_parse_float(const char *text, float *out);
int ex_parse_int(const char *text, int *out);

/* ---- random numbers (splitmix64: tiny, good enough for sampling) ------------ */

typedef struct { uint64_t state; } ex_rng;
void     ex_rng_seed(ex_rng *r, uint64_t seed);
uint64_t ex_rng_next(ex_rng *r);
float    ex_rng_uniform(ex_rng *r);   /* [0,1) */
float    ex_rng_normal(ex_rng *r);    /* standard normal */
void     ex_shuffle(int *v, int n, ex_rng *r);

/* ---- images ----------------------------------------------------------------- */

/* dst = src rotated by angle (radians, counter-clockwise on screen) about the
 * image centre, then shifted by (dx, dy) pixels; bilinear interpolation,
 * zero outside the source. */
void ex_warp(const float *src, float *dst, int rows, int cols, float angle, float dx, float dy);

/* The same warp tabulated for many images seen at one (angle, dx, dy): per
 * output pixel, the source index and bilinear weight of each of its four
 * taps. Applying a table gives exactly ex_warp's image (for finite images)
 * at about a quarter of its cost, since ex_warp works out the taps for every
 * image. Start from a zeroed table (ex_warp_table t = {0}); free it with
 * ex_warp_table_free (NULL, empty or freed tables are fine). Not for two
 * threads at once. */
typedef struct {
    int rows, cols;
    float angle, dx, dy; /* the arguments of the last call */
    int ready;           /* idx and w hold the taps of those arguments */
    size_t cap;          /* pixels allocated */
    int32_t *idx;        /* 4 x rows*cols: tap k of pixel p at idx[k * rows * cols + p] */
    float *w;            /* the same layout; 0 for a tap outside the source */
} ex_warp_table;

/* Tabulate the warp of (rows, cols, angle, dx, dy) into t, reusing t's
 * memory when it is large enough. Returns 0, or -1 (bad size, out of
 * memory) leaving t's memory as it was and t not ready. */
int ex_warp_table_init(ex_warp_table *t, int rows, int cols, float angle, float dx, float dy);

/* dst = src warped by t's table (t must be ready: ex_warp_table_init
 * returned 0). */
void ex_warp_table_apply(const ex_warp_table *t, const float *src, float *dst);

/* ex_warp(src, dst, rows, cols, angle, dx, dy) through a one-entry cache:
 * when the arguments repeat those of the previous call on t (a test set
 * seen at one context, the channels of one image), tabulate them once and
 * apply the table; when they differ (training: every image its own
 * context), warp directly and only remember them. Falls back to ex_warp if
 * the table cannot be allocated. */
void ex_warp_cached(ex_warp_table *t, const float *src, float *dst, int rows, int cols,
                    float angle, float dx, float dy);

void ex_warp_table_free(ex_warp_table *t);

/* ---- the experiment harness ---------------------------------------------------- */

/* What distinguishes one experiment from another: how a training context is
 * drawn, and how an image is turned into the network input at a context. */
typedef struct {
    int ctx_dim;
    void (*sample_train_ctx)(ex_rng *r, float *s, void *user);
    /* x (rows*cols floats) = image img seen at context s; r supplies any
     * randomness (noise) */
    void (*transform)(const float *img, const float *s, float *x, int rows, int cols, ex_rng *r,
                      void *user);
    void *user;
} ex_task;

/* The two models every example compares. */
enum { EX_MANIFOLD = 0, EX_CONCAT = 1, EX_N_MODELS = 2 };
extern const char *const ex_model_name[EX_N_MODELS];

/* Build the MLP n_in -> hidden... -> 10 (relu, softmax CE) on manifold m with
 * the given conditioning and initialise it. Prints the library's message and
 * returns NULL on failure. */
wm_net *ex_build_mlp(const wm_manifold *m, wm_conditioning cond, int n_in, const int *hidden,
                     int n_hidden, uint64_t seed);

/* Create an optimizer from the flags (kind, lr). NULL (message printed) on failure. */
wm_optimizer *ex_make_optimizer(wm_net *net, const ex_opts *o);

/* The two MLPs of an experiment on manifold m (the manifold net with
 * o->hidden, the concat baseline with o->concat_hidden, or o->hidden when
 * that was not given) and an optimizer for each. Returns 0, or -1 (message
 * printed) leaving whatever was built in net/opt for the caller to free. */
int ex_build_mlps(const wm_manifold *m, int n_in, const ex_opts *o, wm_net *net[EX_N_MODELS],
                  wm_optimizer *opt[EX_N_MODELS]);

/* Train both nets for o->epochs on identical minibatches: each image gets its
 * own context from task->sample_train_ctx. Prints one line per epoch with the
 * loss, the accuracy on a fixed probe of training images at training
 * contexts, and each model's training speed. Returns 0, or -1 (message
 * printed) if the library reports an error. */
int ex_train(wm_optimizer *opt[EX_N_MODELS], wm_net *net[EX_N_MODELS], const ex_task *task,
             const idx_dataset *train, const ex_opts *o);

/* Accuracy of each net on the whole test set seen at context s. Both nets see
 * the same transformed images (any noise is drawn from a generator seeded by
 * seed). Returns 0, or -1 (message printed). */
int ex_eval_at(wm_net *net[EX_N_MODELS], const ex_task *task, const idx_dataset *test,
               const float *s, uint64_t seed, float acc[EX_N_MODELS]);

/* ---- output -------------------------------------------------------------------- */

/* Seconds on a monotonic clock. */
double ex_now(void);

/* mkdir -p. Returns 0, or -1 with errno set. */
int ex_mkdir_p(const char *path);

/* Open out_dir/name for writing (creating out_dir); NULL with a message printed. */
FILE *ex_open_out(const char *out_dir, const char *name, char *path, size_t pathlen);

/* Run gnuplot on dir/script with dir as the working directory: 0 on success.
 * If gnuplot is not installed, warn and return 1 (the CSV is the result; the
 * plot is a convenience). -1 if gnuplot failed. */
int ex_run_gnuplot(const char *dir, const char *script);

/* Write out_dir/BASE.gp plotting BASE.csv (column xcol against columns 3 =
 * manifold and 4 = concat accuracy) into BASE.png, with the held-out
 * intervals shaded, and run gnuplot on it. period > 0 marks a periodic
 * context: the first point is drawn again one period on. Returns as
 * ex_run_gnuplot. */
int ex_plot_1d(const char *out_dir, const char *base, const char *title, const char *xlabel,
               int xcol, float xmin, float xmax, float xtics, float period,
               const float (*heldout)[2], int n_heldout);

/* Load the train and test sets according to the flags; prints and returns -1
 * on failure. */
int ex_load_data(const ex_opts *o, idx_dataset *train, idx_dataset *test);

/* Print both models' parameter counts. */
void ex_print_params(wm_net *net[EX_N_MODELS]);

/* ---- rotation experiments (rotation.c, cnn_rotation.c) ---------------------------- */

/* deg wrapped into [0, 360). */
float ex_wrap360(float deg);

/* The training arc of --train-arc A,B: *start = A wrapped into [0, 360),
 * *len = B - A, or (B - A) wrapped when that is not in (0, 360] (so 300,60
 * is the 120 degrees through 0). Returns 0, or -1 (nothing written) when the
 * arc is empty (A = B mod 360). */
int ex_arc_of(float a0, float a1, float *start_deg, float *len_deg);

/* Whether deg lies on the training arc [start, start + len] (wrapping at 360). */
int ex_in_arc(float start_deg, float len_deg, float deg);

/* Test both nets at every `step` degrees on the whole test set: print a row
 * per angle and the means over the training arc and the held-out rest, write
 * out_dir/BASE.csv, and unless o->no_plot the plot BASE.png titled `title`
 * with the held-out arc shaded. *t_eval receives the seconds spent testing.
 * Returns 0, or -1 (message printed). */
int ex_rotation_report(wm_net *net[EX_N_MODELS], const ex_task *task, const idx_dataset *test,
                       float start_deg, float len_deg, float step, const ex_opts *o,
                       const char *base, const char *title, double *t_eval);

#endif
