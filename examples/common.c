/* common.c -- shared example code; see common.h. */
#include "common.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

const char *const ex_model_name[EX_N_MODELS] = {"manifold", "concat"};

/* ---- flags ------------------------------------------------------------------ */

void ex_opts_default(ex_opts *o)
{
    memset(o, 0, sizeof *o);
    o->epochs = 5;
    o->batch = 128;
    o->lr = 0.0f;
    o->opt = WM_OPT_ADAM;
    o->seed = 1;
    o->data_dir = EX_DEFAULT_DATA;
    o->out_dir = "results";
    o->n_train = 0;
    o->n_test = 0;
    o->hidden[0] = 256;
    o->hidden[1] = 256;
    o->n_hidden = 2;
}

static const char *opt_name(wm_opt_kind k)
{
    return k == WM_OPT_SD ? "sd" : k == WM_OPT_MOMENTUM ? "momentum" : "adam";
}

static void print_widths(FILE *f, const int *w, int n)
{
    for (int i = 0; i < n; i++)
        fprintf(f, "%s%d", i ? "," : "", w[i]);
}

void ex_opts_help(FILE *f, const ex_opts *d)
{
    fprintf(f,
            "Common flags (--name value or --name=value):\n"
            "  --epochs N          training epochs (default %d)\n"
            "  --batch N           minibatch size (default %d)\n"
            "  --lr F              learning rate (default: the optimizer's, %s)\n"
            "  --opt sd|momentum|adam   optimizer for both models (default %s)\n"
            "  --seed N            seed for initialisation, sampling and noise (default %llu)\n"
            "  --data DIR          Fashion-MNIST directory (default %s)\n"
            "  --out DIR           where the CSV and PNG go (default %s)\n"
            "  --train N           use the first N training images (default: all 60000)\n",
            d->epochs, d->batch, d->lr > 0 ? "see below" : "sd/momentum 0.01, adam 0.001",
            opt_name(d->opt), (unsigned long long)d->seed, d->data_dir, d->out_dir);
    if (d->n_test > 0)
        fprintf(f, "  --test N            use the first N test images (default %d)\n", d->n_test);
    else
        fprintf(f, "  --test N            use the first N test images (default: all 10000)\n");
    fprintf(f, "  --hidden A,B,...    hidden layer widths (default ");
    print_widths(f, d->hidden, d->n_hidden);
    if (d->lr > 0)
        fprintf(f, ")\n  (this example's default --lr is %g)\n", (double)d->lr);
    else
        fprintf(f, ")\n");
    fprintf(f,
            "  --concat-hidden A,B,...  the baseline's hidden widths (default: same as\n"
            "                      --hidden; e.g. wider to match the manifold's parameter count)\n"
            "  --no-plot           write the CSV only\n"
            "  --quiet             no per-epoch progress lines\n"
            "  --help              this text\n");
}

int ex_flag(int argc, char **argv, int *i, const char *name, const char **val)
{
    const char *a = argv[*i];
    size_t len = strlen(name);
    if (strncmp(a, name, len) != 0)
        return 0;
    if (a[len] == '=') {
        *val = a + len + 1;
        return 1;
    }
    if (a[len] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "error: %s needs a value (see --help)\n", name);
        return -1;
    }
    *val = argv[++*i];
    return 1;
}

int ex_parse_float(const char *text, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end != '\0' || !isfinite(v))
        return -1;
    *out = (float)v;
    return 0;
}

int ex_parse_int(const char *text, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end != '\0' || v < 0 || v > 1000000000L)
        return -1;
    *out = (int)v;
    return 0;
}

int ex_parse_pair(const char *text, float *a, float *b)
{
    char buf[128];
    const char *comma = strchr(text, ',');
    if (!comma || (size_t)(comma - text) >= sizeof buf)
        return -1;
    memcpy(buf, text, (size_t)(comma - text));
    buf[comma - text] = '\0';
    if (ex_parse_float(buf, a) || ex_parse_float(comma + 1, b))
        return -1;
    return 0;
}

int ex_parse_widths(const char *text, int *w, int *n, int max_count, int max_value)
{
    int count = 0;
    const char *p = text;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > max_value || count == max_count)
            return -1;
        w[count++] = (int)v;
        if (*end == ',')
            end++;
        else if (*end != '\0')
            return -1;
        p = end;
    }
    if (count == 0)
        return -1;
    *n = count;
    return 0;
}

int ex_opts_parse(ex_opts *o, int argc, char **argv, int *i)
{
    const char *v = NULL, *flag = argv[*i];
    int r;
#define FLAG(name) ((r = ex_flag(argc, argv, i, name, &v)) != 0)
    if (FLAG("--epochs")) {
        if (r < 0 || ex_parse_int(v, &o->epochs) || o->epochs < 1)
            goto bad;
    } else if (FLAG("--batch")) {
        if (r < 0 || ex_parse_int(v, &o->batch) || o->batch < 1)
            goto bad;
    } else if (FLAG("--lr")) {
        if (r < 0 || ex_parse_float(v, &o->lr) || !(o->lr > 0))
            goto bad;
    } else if (FLAG("--opt")) {
        if (r < 0)
            goto bad;
        if (!strcmp(v, "sd"))
            o->opt = WM_OPT_SD;
        else if (!strcmp(v, "momentum"))
            o->opt = WM_OPT_MOMENTUM;
        else if (!strcmp(v, "adam"))
            o->opt = WM_OPT_ADAM;
        else
            goto bad;
    } else if (FLAG("--seed")) {
        int s;
        if (r < 0 || ex_parse_int(v, &s))
            goto bad;
        o->seed = (uint64_t)s;
    } else if (FLAG("--data")) {
        if (r < 0)
            goto bad;
        o->data_dir = v;
    } else if (FLAG("--out")) {
        if (r < 0)
            goto bad;
        o->out_dir = v;
    } else if (FLAG("--train")) {
        if (r < 0 || ex_parse_int(v, &o->n_train) || o->n_train < 1)
            goto bad;
    } else if (FLAG("--test")) {
        if (r < 0 || ex_parse_int(v, &o->n_test) || o->n_test < 1)
            goto bad;
    } else if (FLAG("--hidden")) {
        if (r < 0 || ex_parse_widths(v, o->hidden, &o->n_hidden, EX_MAX_LAYERS - 1, 100000))
            goto bad;
    } else if (FLAG("--concat-hidden")) {
        if (r < 0 || ex_parse_widths(v, o->concat_hidden, &o->n_concat_hidden, EX_MAX_LAYERS - 1, 100000))
            goto bad;
    } else if (!strcmp(argv[*i], "--no-plot")) {
        o->no_plot = 1;
    } else if (!strcmp(argv[*i], "--quiet")) {
        o->quiet = 1;
    } else {
        return 0;
    }
#undef FLAG
    return 1;
bad:
    if (r >= 0)
        fprintf(stderr, "error: bad value '%s' for %s (see --help)\n", v ? v : "", flag);
    return -1;
}

/* ---- random numbers ------------------------------------------------------------ */

void ex_rng_seed(ex_rng *r, uint64_t seed)
{
    r->state = seed ^ 0x5851f42d4c957f2dULL;
}

uint64_t ex_rng_next(ex_rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

float ex_rng_uniform(ex_rng *r)
{
    return (float)(ex_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

float ex_rng_normal(ex_rng *r)
{
    /* Box-Muller; u1 in (0,1] keeps the log finite. */
    double u1 = ((double)(ex_rng_next(r) >> 11) + 1.0) / 9007199254740992.0;
    double u2 = (double)(ex_rng_next(r) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void ex_shuffle(int *v, int n, ex_rng *r)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(ex_rng_next(r) % (uint64_t)(i + 1));
        int t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

/* ---- images -------------------------------------------------------------------- */

/* The warp is a gather: output pixel p reads its four bilinear source taps
 * (x0, y0), (x0+1, y0), (x0, y0+1), (x0+1, y0+1) with weights
 * (1-fy)(1-fx), (1-fy)fx, fy(1-fx), fy fx. warp_taps tabulates, for pixels
 * p0..p1-1, each tap's source index and weight; a tap outside the source
 * gets weight 0 and a clamped (valid) index, so applying the table has no
 * branches and vectorises. The arithmetic is the scalar definition's, op for
 * op (same inverse map, same floor, the weight wy*wx formed before it meets
 * the pixel, the taps summed in the same order, a zero-weight tap adding
 * +0), so for finite images the result is the same to the last bit.
 * tests/test_warp.c checks that against the scalar definition. */
/* max(a, lo) and min(a, hi) written as the SSE instructions compute them
 * (a NaN a gives lo / hi), so they compile to one maxps / minps each;
 * fminf/fmaxf would be calls. */
static inline float maxf(float a, float lo)
{
    return a > lo ? a : lo;
}

static inline float minf(float a, float hi)
{
    return a < hi ? a : hi;
}

/* n pixels of one row, from column x, whose row offset from the centre
 * less the shift is v. (Separate, so the outputs' restrict is honoured.) */
static void warp_row(int rows, int cols, float c, float s, float dx, float v, int x, int n,
                     int32_t *restrict i0, int32_t *restrict i1, int32_t *restrict i2,
                     int32_t *restrict i3, float *restrict w0, float *restrict w1,
                     float *restrict w2, float *restrict w3)
{
    const float cy = 0.5f * (float)(rows - 1), cx = 0.5f * (float)(cols - 1);
    const float xmax = (float)(cols - 1), ymax = (float)(rows - 1);
    for (int i = 0; i < n; i++) {
        /* Inverse map: undo the shift, then rotate back by -angle. Screen y
         * points down, so this rotates counter-clockwise as seen. */
        float u = (float)(x + i) - cx - dx;
        float xs = c * u - s * v + cx;
        float ys = s * u + c * v + cy;
        /* Beyond [-2, n+1] both taps of an axis are outside: clamping there
         * keeps the float -> int conversion in range and changes no result
         * (NaN goes to -2: outside). */
        xs = minf(maxf(xs, -2.0f), xmax + 2.0f);
        ys = minf(maxf(ys, -2.0f), ymax + 2.0f);
        float tx = (float)(int)xs, ty = (float)(int)ys;      /* floor, branch-free */
        float x0 = tx - (xs < tx ? 1.0f : 0.0f), y0 = ty - (ys < ty ? 1.0f : 0.0f);
        float fx = xs - x0, fy = ys - y0, x1 = x0 + 1.0f, y1 = y0 + 1.0f;
        /* A tap inside the source keeps its coordinate under clamping to the
         * source; one outside gets weight 0 at a valid index. */
        float x0c = minf(maxf(x0, 0.0f), xmax), x1c = minf(maxf(x1, 0.0f), xmax);
        float y0c = minf(maxf(y0, 0.0f), ymax), y1c = minf(maxf(y1, 0.0f), ymax);
        float wx0 = x0c == x0 ? 1.0f - fx : 0.0f, wx1 = x1c == x1 ? fx : 0.0f;
        float wy0 = y0c == y0 ? 1.0f - fy : 0.0f, wy1 = y1c == y1 ? fy : 0.0f;
        int r0 = (int)y0c * cols, r1 = (int)y1c * cols, c0 = (int)x0c, c1 = (int)x1c;
        i0[i] = r0 + c0;
        i1[i] = r0 + c1;
        i2[i] = r1 + c0;
        i3[i] = r1 + c1;
        w0[i] = wy0 * wx0; /* the factors are >= 0: a zero one gives +0 */
        w1[i] = wy0 * wx1;
        w2[i] = wy1 * wx0;
        w3[i] = wy1 * wx1;
    }
}

/* The taps of pixels p0..p1-1 into idx[k * stride + p - p0], w likewise. */
static void warp_taps(int rows, int cols, float c, float s, float dx, float dy, int p0, int p1,
                      int32_t *idx, float *w, size_t stride)
{
    const float cy = 0.5f * (float)(rows - 1);
    for (int p = p0; p < p1;) {
        const int y = p / cols, x = p % cols;
        const int n = cols - x < p1 - p ? cols - x : p1 - p; /* the rest of this row */
        const size_t o = (size_t)(p - p0);
        warp_row(rows, cols, c, s, dx, (float)y - cy - dy, x, n, idx + o, idx + stride + o,
                 idx + 2 * stride + o, idx + 3 * stride + o, w + o, w + stride + o,
                 w + 2 * stride + o, w + 3 * stride + o);
        p += n;
    }
}

/* dst[i] = the four taps of pixel i summed in order (0 + t00 + t01 + t10 + t11,
 * as the scalar loop's acc), for i in [0, n). */
static void warp_apply(const float *restrict src, float *restrict dst, int n,
                       const int32_t *restrict idx, const float *restrict w, size_t stride)
{
    const int32_t *i0 = idx, *i1 = idx + stride, *i2 = idx + 2 * stride, *i3 = idx + 3 * stride;
    const float *w0 = w, *w1 = w + stride, *w2 = w + 2 * stride, *w3 = w + 3 * stride;
    for (int i = 0; i < n; i++) {
        float acc = 0.0f;
        acc += w0[i] * src[i0[i]];
        acc += w1[i] * src[i1[i]];
        acc += w2[i] * src[i2[i]];
        acc += w3[i] * src[i3[i]];
        dst[i] = acc;
    }
}

#define WARP_CHUNK 256 /* pixels tabulated at a time by ex_warp: 8 KiB of stack */

void ex_warp(const float *src, float *dst, int rows, int cols, float angle, float dx, float dy)
{
    int32_t idx[4 * WARP_CHUNK];
    float w[4 * WARP_CHUNK];
    const int np = rows * cols;
    const float c = cosf(angle), s = sinf(angle);
    for (int p = 0; p < np; p += WARP_CHUNK) {
        int n = np - p < WARP_CHUNK ? np - p : WARP_CHUNK;
        warp_taps(rows, cols, c, s, dx, dy, p, p + n, idx, w, WARP_CHUNK);
        warp_apply(src, dst + p, n, idx, w, WARP_CHUNK);
    }
}

/* Whether t's last arguments were these, bit for bit (so -0 and +0 differ,
 * as their sines do). */
static int warp_same_args(const ex_warp_table *t, int rows, int cols, float angle, float dx,
                          float dy)
{
    return t->rows == rows && t->cols == cols && !memcmp(&t->angle, &angle, sizeof angle) &&
           !memcmp(&t->dx, &dx, sizeof dx) && !memcmp(&t->dy, &dy, sizeof dy);
}

int ex_warp_table_init(ex_warp_table *t, int rows, int cols, float angle, float dx, float dy)
{
    t->ready = 0;
    if (rows < 1 || cols < 1 || (size_t)rows * (size_t)cols > (size_t)INT32_MAX / 4)
        return -1;
    size_t np = (size_t)rows * (size_t)cols;
    if (np > t->cap) {
        int32_t *idx = malloc(4 * np * sizeof *idx);
        float *w = malloc(4 * np * sizeof *w);
        if (!idx || !w) {
            free(idx);
            free(w);
            return -1;
        }
        free(t->idx);
        free(t->w);
        t->idx = idx;
        t->w = w;
        t->cap = np;
    }
    t->rows = rows;
    t->cols = cols;
    t->angle = angle;
    t->dx = dx;
    t->dy = dy;
    warp_taps(rows, cols, cosf(angle), sinf(angle), dx, dy, 0, (int)np, t->idx, t->w, np);
    t->ready = 1;
    return 0;
}

void ex_warp_table_apply(const ex_warp_table *t, const float *src, float *dst)
{
    size_t np = (size_t)t->rows * (size_t)t->cols;
    warp_apply(src, dst, (int)np, t->idx, t->w, np);
}

void ex_warp_cached(ex_warp_table *t, const float *src, float *dst, int rows, int cols,
                    float angle, float dx, float dy)
{
    if (warp_same_args(t, rows, cols, angle, dx, dy)) {
        if (t->ready || ex_warp_table_init(t, rows, cols, angle, dx, dy) == 0) {
            ex_warp_table_apply(t, src, dst);
            return;
        }
    } else {
        t->rows = rows;
        t->cols = cols;
        t->angle = angle;
        t->dx = dx;
        t->dy = dy;
        t->ready = 0;
    }
    ex_warp(src, dst, rows, cols, angle, dx, dy);
}

void ex_warp_table_free(ex_warp_table *t)
{
    if (!t)
        return;
    free(t->idx);
    free(t->w);
    memset(t, 0, sizeof *t);
}

/* ---- nets and training ------------------------------------------------------------ */

static void lib_error(const char *what, wm_status st)
{
    fprintf(stderr, "error: %s: %s: %s\n", what, wm_status_str(st), wm_last_error());
}

wm_net *ex_build_mlp(const wm_manifold *m, wm_conditioning cond, int n_in, const int *hidden,
                     int n_hidden, uint64_t seed)
{
    wm_net *net = NULL;
    wm_status st = wm_net_create(&net, m, n_in, cond);
    for (int l = 0; st == WM_OK && l < n_hidden; l++)
        st = wm_net_dense(net, hidden[l], WM_ACT_RELU);
    if (st == WM_OK)
        st = wm_net_dense(net, EX_N_CLASSES, WM_ACT_NONE); /* logits */
    if (st == WM_OK)
        st = wm_net_set_loss(net, WM_LOSS_SOFTMAX_CE);
    if (st == WM_OK)
        st = wm_net_init(net, seed);
    if (st != WM_OK) {
        lib_error("building the network", st);
        wm_net_free(net);
        return NULL;
    }
    return net;
}

wm_optimizer *ex_make_optimizer(wm_net *net, const ex_opts *o)
{
    wm_opt_config cfg = wm_opt_default(o->opt);
    if (o->lr > 0)
        cfg.lr = o->lr;
    wm_optimizer *opt = NULL;
    wm_status st = wm_optimizer_create(&opt, net, &cfg);
    if (st != WM_OK) {
        lib_error("creating the optimizer", st);
        return NULL;
    }
    return opt;
}

void ex_print_params(wm_net *net[EX_N_MODELS])
{
    for (int m = 0; m < EX_N_MODELS; m++)
        printf("  %-8s  %zu parameters (%d context basis functions x weights%s)\n",
               ex_model_name[m], wm_net_n_params(net[m]),
               m == EX_MANIFOLD ? wm_manifold_n_basis(wm_net_manifold(net[m])) : 1,
               m == EX_CONCAT ? ", context features appended to the input" : "");
}

/* Accuracy of each net on a prepared batch, evaluated in chunks so that the
 * library's scratch space stays modest whatever the test-set size. */
static int eval_batch(wm_net *net[EX_N_MODELS], const float *x, const float *s,
                      const int32_t *labels, int n, int n_in, int ctx_dim,
                      float acc[EX_N_MODELS])
{
    const int chunk = 2000;
    for (int m = 0; m < EX_N_MODELS; m++) {
        double correct = 0;
        for (int i = 0; i < n; i += chunk) {
            int c = n - i < chunk ? n - i : chunk;
            wm_batch b = {c, x + (size_t)i * n_in, s + (size_t)i * ctx_dim, labels + i, NULL};
            float a;
            wm_status st = wm_evaluate(net[m], &b, NULL, &a);
            if (st != WM_OK) {
                lib_error("wm_evaluate", st);
                return -1;
            }
            correct += (double)a * c;
        }
        acc[m] = (float)(correct / n);
    }
    return 0;
}

int ex_train(wm_optimizer *opt[EX_N_MODELS], wm_net *net[EX_N_MODELS], const ex_task *task,
             const idx_dataset *train, const ex_opts *o)
{
    const int n = train->n, d = train->rows * train->cols, cd = task->ctx_dim;
    const int bs = o->batch < n ? o->batch : n;
    const int n_probe = n < 1000 ? n : 1000;
    ex_rng rng;
    ex_rng_seed(&rng, o->seed * 7919 + 17);

    int *order = malloc((size_t)n * sizeof *order);
    float *xb = malloc((size_t)bs * d * sizeof *xb);
    float *sb = malloc((size_t)bs * cd * sizeof *sb);
    int32_t *yb = malloc((size_t)bs * sizeof *yb);
    float *xp = malloc((size_t)n_probe * d * sizeof *xp);
    float *sp = malloc((size_t)n_probe * cd * sizeof *sp);
    int rc = -1;
    if (!order || !xb || !sb || !yb || !xp || !sp) {
        fprintf(stderr, "error: out of memory for the training buffers\n");
        goto done;
    }
    for (int i = 0; i < n; i++)
        order[i] = i;

    /* A fixed probe of training images at training contexts: the "train
     * accuracy" column, cheap and comparable from epoch to epoch. */
    for (int i = 0; i < n_probe; i++) {
        task->sample_train_ctx(&rng, sp + (size_t)i * cd, task->user);
        task->transform(train->images + (size_t)i * d, sp + (size_t)i * cd, xp + (size_t)i * d,
                        train->rows, train->cols, &rng, task->user);
    }

    for (int ep = 1; ep <= o->epochs; ep++) {
        double loss_sum[EX_N_MODELS] = {0}, secs[EX_N_MODELS] = {0};
        double t_epoch = ex_now();
        ex_shuffle(order, n, &rng);
        for (int start = 0; start < n; start += bs) {
            int nb = n - start < bs ? n - start : bs;
            /* Mixed contexts: every image gets its own random training context. */
            for (int i = 0; i < nb; i++) {
                int k = order[start + i];
                task->sample_train_ctx(&rng, sb + (size_t)i * cd, task->user);
                task->transform(train->images + (size_t)k * d, sb + (size_t)i * cd,
                                xb + (size_t)i * d, train->rows, train->cols, &rng, task->user);
                yb[i] = train->labels[k];
            }
            wm_batch b = {nb, xb, sb, yb, NULL};
            for (int m = 0; m < EX_N_MODELS; m++) {
                float loss;
                double t0 = ex_now();
                wm_status st = wm_step(opt[m], &b, &loss);
                secs[m] += ex_now() - t0;
                if (st != WM_OK) {
                    fprintf(stderr, "error: epoch %d, %s model: ", ep, ex_model_name[m]);
                    lib_error("wm_step", st);
                    if (st == WM_ENUMERIC)
                        fprintf(stderr, "hint: the loss diverged; try a smaller --lr\n");
                    goto done;
                }
                loss_sum[m] += (double)loss * nb;
            }
        }
        float acc[EX_N_MODELS];
        if (eval_batch(net, xp, sp, train->labels, n_probe, d, cd, acc))
            goto done;
        if (!o->quiet) {
            printf("epoch %2d/%d", ep, o->epochs);
            for (int m = 0; m < EX_N_MODELS; m++)
                printf("  | %s: loss %.4f train-acc %.3f %6.0f samples/s", ex_model_name[m],
                       loss_sum[m] / n, (double)acc[m], secs[m] > 0 ? n / secs[m] : 0.0);
            printf("  | %.1f s\n", ex_now() - t_epoch);
            fflush(stdout);
        }
    }
    rc = 0;
done:
    free(order);
    free(xb);
    free(sb);
    free(yb);
    free(xp);
    free(sp);
    return rc;
}

int ex_eval_at(wm_net *net[EX_N_MODELS], const ex_task *task, const idx_dataset *test,
               const float *s, uint64_t seed, float acc[EX_N_MODELS])
{
    const int n = test->n, d = test->rows * test->cols, cd = task->ctx_dim;
    float *x = malloc((size_t)n * d * sizeof *x);
    float *sv = malloc((size_t)n * cd * sizeof *sv);
    if (!x || !sv) {
        fprintf(stderr, "error: out of memory for the test set\n");
        free(x);
        free(sv);
        return -1;
    }
    ex_rng rng;
    ex_rng_seed(&rng, seed);
    for (int i = 0; i < n; i++) {
        memcpy(sv + (size_t)i * cd, s, (size_t)cd * sizeof *s);
        task->transform(test->images + (size_t)i * d, s, x + (size_t)i * d, test->rows,
                        test->cols, &rng, task->user);
    }
    int rc = eval_batch(net, x, sv, test->labels, n, d, cd, acc);
    free(x);
    free(sv);
    return rc;
}

/* ---- output ---------------------------------------------------------------------- */

double ex_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int ex_mkdir_p(const char *path)
{
    char buf[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

FILE *ex_open_out(const char *out_dir, const char *name, char *path, size_t pathlen)
{
    if (ex_mkdir_p(out_dir) != 0) {
        fprintf(stderr, "error: cannot create output directory %s: %s\n", out_dir,
                strerror(errno));
        return NULL;
    }
    snprintf(path, pathlen, "%s/%s", out_dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        fprintf(stderr, "error: cannot write %s: %s\n", path, strerror(errno));
    return f;
}

int ex_run_gnuplot(const char *dir, const char *script)
{
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        fprintf(stderr,
                "warning: gnuplot not found, skipping the plot (the CSV has the numbers; "
                "install it with: sudo apt-get install -y gnuplot-nox)\n");
        return 1;
    }
    /* Run in dir so the script can name its CSV and PNG without paths. */
    char cmd[4600];
    snprintf(cmd, sizeof cmd, "cd '%s' && gnuplot '%s'", dir, script);
    if (system(cmd) != 0) {
        fprintf(stderr, "warning: gnuplot failed on %s/%s\n", dir, script);
        return -1;
    }
    return 0;
}

int ex_load_data(const ex_opts *o, idx_dataset *train, idx_dataset *test)
{
    char err[8192];
    double t0 = ex_now();
    if (idx_load(o->data_dir, "train", o->n_train, EX_N_CLASSES, train, err, sizeof err)) {
        fprintf(stderr, "error: %s\n", err);
        fprintf(stderr, "hint: Fashion-MNIST is in the Debian package dataset-fashion-mnist "
                        "(sudo apt-get install -y dataset-fashion-mnist), or pass --data DIR\n");
        return -1;
    }
    if (idx_load(o->data_dir, "t10k", o->n_test, EX_N_CLASSES, test, err, sizeof err)) {
        fprintf(stderr, "error: %s\n", err);
        idx_free(train);
        return -1;
    }
    if (test->rows != train->rows || test->cols != train->cols) {
        fprintf(stderr, "error: train images are %dx%d but test images %dx%d\n", train->rows,
                train->cols, test->rows, test->cols);
        idx_free(train);
        idx_free(test);
        return -1;
    }
    printf("data: %d training and %d test images of %dx%d from %s (%.1f s)\n", train->n, test->n,
           train->rows, train->cols, o->data_dir, ex_now() - t0);
    return 0;
}

int ex_plot_1d(const char *out_dir, const char *base, const char *title, const char *xlabel,
               int xcol, float xmin, float xmax, float xtics, float period,
               const float (*heldout)[2], int n_heldout)
{
    char name[256], gp[4400], png[300], csv[300];
    snprintf(name, sizeof name, "%s.gp", base);
    snprintf(png, sizeof png, "%s.png", base);
    snprintf(csv, sizeof csv, "%s.csv", base);
    FILE *f = ex_open_out(out_dir, name, gp, sizeof gp);
    if (!f)
        return -1;
    /* Paths in the script are relative to it: gnuplot runs in out_dir. */
    fprintf(f,
            "set terminal pngcairo size 900,520 font ',11'\n"
            "set output '%s'\n"
            "set datafile separator ','\n"
            "set title '%s'\n"
            "set xlabel '%s'\nset ylabel 'test accuracy'\n"
            "set xrange [%g:%g]\nset xtics %g\nset yrange [0:1]\nset grid\n"
            "set key bottom left box opaque\n",
            png, title, xlabel, (double)xmin, (double)xmax, (double)xtics);
    for (int i = 0; i < n_heldout; i++)
        fprintf(f,
                "set object %d rect from %g, graph 0 to %g, graph 1 behind "
                "fillcolor rgb '#e0e0e0' fillstyle solid 1.0 noborder\n",
                i + 1, (double)heldout[i][0], (double)heldout[i][1]);
    if (n_heldout > 0)
        fprintf(f, "set label 'grey: held out (never trained on)' at graph 0.99, graph 0.96 right\n");
    fprintf(f,
            "plot '%s' skip 1 using %d:3 with linespoints lw 2 pt 7 ps 0.8 lc rgb '#1f77b4' "
            "title 'weight manifold', \\\n"
            "     '%s' skip 1 using %d:4 with linespoints lw 2 pt 5 ps 0.8 lc rgb '#d62728' "
            "title 'input concatenation'",
            csv, xcol, csv, xcol);
    /* A periodic context: repeat the first point one period on (360 = 0). */
    if (period > 0)
        fprintf(f,
                ", \\\n     '%s' skip 1 every ::0::0 using ($%d+%g):3 with points pt 7 ps 0.8 "
                "lc rgb '#1f77b4' notitle, \\\n"
                "     '%s' skip 1 every ::0::0 using ($%d+%g):4 with points pt 5 ps 0.8 "
                "lc rgb '#d62728' notitle",
                csv, xcol, (double)period, csv, xcol, (double)period);
    fprintf(f, "\n");
    fclose(f);
    return ex_run_gnuplot(out_dir, name);
}

/* ---- rotation experiments ------------------------------------------------------------ */

float ex_wrap360(float deg)
{
    float d = fmodf(deg, 360.0f);
    return d < 0 ? d + 360.0f : d;
}

int ex_arc_of(float a0, float a1, float *start_deg, float *len_deg)
{
    float len = a1 - a0;
    if (!(len > 0.0f && len <= 360.0f))
        len = ex_wrap360(a1 - a0);
    if (!(len > 0.0f))
        return -1;
    *start_deg = ex_wrap360(a0), *len_deg = len;
    return 0;
}

int ex_in_arc(float start_deg, float len_deg, float deg)
{
    return ex_wrap360(deg - start_deg) <= len_deg + 1e-3f;
}

int ex_rotation_report(wm_net *net[EX_N_MODELS], const ex_task *task, const idx_dataset *test,
                       float start_deg, float len_deg, float step, const ex_opts *o,
                       const char *base, const char *title, double *t_eval)
{
    char csv_name[64], csv_path[4400];
    snprintf(csv_name, sizeof csv_name, "%s.csv", base);
    FILE *csv = ex_open_out(o->out_dir, csv_name, csv_path, sizeof csv_path);
    if (!csv)
        return -1;
    fprintf(csv, "s,angle_deg,acc_manifold,acc_concat,split\n");
    printf("\n angle  split     manifold  concat   manifold-concat\n");
    double sum[2][EX_N_MODELS] = {{0}}; /* [held out?][model] */
    int count[2] = {0, 0};
    double t0 = ex_now();
    for (float deg = 0.0f; deg < 360.0f - 1e-3f; deg += step) {
        float s = deg / 360.0f, acc[EX_N_MODELS];
        if (ex_eval_at(net, task, test, &s, o->seed, acc)) {
            fclose(csv);
            return -1;
        }
        int held = !ex_in_arc(start_deg, len_deg, deg);
        for (int m = 0; m < EX_N_MODELS; m++)
            sum[held][m] += acc[m];
        count[held]++;
        printf("%6.0f  %-8s  %.4f    %.4f   %+.4f\n", (double)deg, held ? "heldout" : "train",
               (double)acc[0], (double)acc[1], (double)(acc[0] - acc[1]));
        fprintf(csv, "%.6f,%g,%.4f,%.4f,%s\n", (double)s, (double)deg, (double)acc[0],
                (double)acc[1], held ? "heldout" : "train");
    }
    *t_eval = ex_now() - t0;
    if (fclose(csv) != 0) {
        fprintf(stderr, "error: writing %s failed\n", csv_path);
        return -1;
    }

    printf("\nmean test accuracy      manifold  concat   manifold-concat\n");
    for (int h = 0; h < 2; h++) {
        if (count[h] == 0)
            continue;
        double mm = sum[h][0] / count[h], mc = sum[h][1] / count[h];
        printf("%-8s arc (%2d angles)  %.4f    %.4f   %+.4f\n", h ? "held-out" : "training",
               count[h], mm, mc, mm - mc);
    }
    printf("wrote %s\n", csv_path);

    if (!o->no_plot) {
        /* The held-out arc on a 0..360 axis: one or two intervals. */
        float held[2][2];
        int n_held = 0;
        float h0 = ex_wrap360(start_deg + len_deg), hl = 360.0f - len_deg;
        if (hl > 0.0f) {
            if (h0 + hl <= 360.0f) {
                held[n_held][0] = h0;
                held[n_held++][1] = h0 + hl;
            } else {
                held[n_held][0] = h0;
                held[n_held++][1] = 360.0f;
                held[n_held][0] = 0.0f;
                held[n_held++][1] = h0 + hl - 360.0f;
            }
        }
        if (ex_plot_1d(o->out_dir, base, title, "rotation angle (degrees)", 2, 0.0f, 360.0f,
                       30.0f, 360.0f, (const float (*)[2])held, n_held) == 0)
            printf("plot: %s/%s.png\n", o->out_dir, base);
    }
    return 0;
}

int ex_build_mlps(const wm_manifold *m, int n_in, const ex_opts *o, wm_net *net[EX_N_MODELS],
                  wm_optimizer *opt[EX_N_MODELS])
{
    const int *chid = o->n_concat_hidden ? o->concat_hidden : o->hidden;
    int n_chid = o->n_concat_hidden ? o->n_concat_hidden : o->n_hidden;
    net[EX_MANIFOLD] = ex_build_mlp(m, WM_COND_MANIFOLD, n_in, o->hidden, o->n_hidden, o->seed);
    net[EX_CONCAT] = ex_build_mlp(m, WM_COND_CONCAT, n_in, chid, n_chid, o->seed);
    if (!net[EX_MANIFOLD] || !net[EX_CONCAT])
        return -1;
    for (int k = 0; k < EX_N_MODELS; k++)
        if (!(opt[k] = ex_make_optimizer(net[k], o)))
            return -1;
    return 0;
}
