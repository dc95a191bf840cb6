/* test_net.c -- building, initialising and running networks (src/net.c,
 * src/pass.c, src/dense.c, src/infer.c). */
#include <pthread.h>

#include "testutil.h"

/* in -> h1 relu -> h2 tanh -> 4 */
static wm_net *make_net_sized(const char *mname, wm_conditioning cond, int in, int h1, int h2,
                              uint64_t seed, int randomise)
{
    wm_manifold *m = tu_manifold(mname);
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, in, cond));
    wm_manifold_free(m);
    WM_OK_OR_FAIL(wm_net_dense(net, h1, WM_ACT_RELU));
    WM_OK_OR_FAIL(wm_net_dense(net, h2, WM_ACT_TANH));
    WM_OK_OR_FAIL(wm_net_dense(net, 4, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(net, seed));
    if (randomise) {
        size_t np = wm_net_n_params(net);
        float *q = malloc(np * sizeof *q);
        uint64_t st = seed;
        tu_fill(q, np, -0.5, 0.5, &st);
        WM_OK_OR_FAIL(wm_net_set_params(net, q, np));
        free(q);
    }
    return net;
}

static wm_net *make_net(const char *mname, wm_conditioning cond, int in, uint64_t seed,
                        int randomise)
{
    return make_net_sized(mname, cond, in, 16, 8, seed, randomise);
}

/* One sample through the plain layers wm_net_weights_at materialises, in double. */
static void forward_materialised(const wm_net *net, const float *x, const float *s, double *y)
{
    double a[256], z[256];
    int in0;
    WM_OK_OR_FAIL(wm_net_layer_info(net, 0, &in0, NULL, NULL));
    for (int j = 0; j < wm_net_n_inputs(net); j++) a[j] = x[j];
    if (in0 > wm_net_n_inputs(net)) {        /* concat: context features appended */
        const wm_manifold *m = wm_net_manifold(net);
        if (wm_manifold_n_basis(m) == 3) {   /* the circle is the only concat case here */
            a[wm_net_n_inputs(net)] = cos(2 * TU_PI * s[0]);
            a[wm_net_n_inputs(net) + 1] = sin(2 * TU_PI * s[0]);
        }
    }
    for (int l = 0; l < wm_net_n_layers(net); l++) {
        int in, out;
        wm_activation act;
        WM_OK_OR_FAIL(wm_net_layer_info(net, l, &in, &out, &act));
        float *w = malloc(sizeof(float) * in * out), *b = malloc(sizeof(float) * out);
        WM_OK_OR_FAIL(wm_net_weights_at(net, l, s, w, b));
        for (int o = 0; o < out; o++) {
            double v = b[o];
            for (int j = 0; j < in; j++) v += (double)w[o * in + j] * a[j];
            z[o] = tu_act(act, v);
        }
        memcpy(a, z, sizeof(double) * out);
        free(w), free(b);
    }
    memcpy(y, a, sizeof(double) * 4);
}

static void check_decomposition_sized(const char *mname, wm_conditioning cond, int n, int IN,
                                      int h1, int h2, int shared)
{
    wm_net *net = make_net_sized(mname, cond, IN, h1, h2, 17, 1);
    const wm_manifold *m = wm_net_manifold(net);
    int dim = wm_manifold_dim(m);
    float *x = malloc(sizeof(float) * n * IN), *s = malloc(sizeof(float) * n * (dim + 1));
    float *out = malloc(sizeof(float) * n * 4);
    uint64_t st = 5;
    tu_fill(x, (size_t)n * IN, -1, 1, &st);
    tu_contexts(m, s, n, &st);
    for (int i = 1; shared && i < n; i++)
        memcpy(s + i * dim, s, sizeof(float) * dim);
    WM_OK_OR_FAIL(wm_infer(net, x, s, n, out));
    double err = 0, mag = 0;
    for (int i = 0; i < n; i++) {
        double y[4];
        forward_materialised(net, x + i * IN, s + i * dim, y);
        for (int j = 0; j < 4; j++) {
            err = fmax(err, fabs(out[i * 4 + j] - y[j]));
            mag = fmax(mag, fabs(y[j]));
        }
    }
    if (!(err < 1e-5 * (1 + mag)))
        fail_msg("%s n=%d in=%d shared=%d: batched vs materialised max diff %.3g (outputs up to %.3g)", mname,
                 n, IN, shared, err, mag);
    free(x), free(s), free(out);
    wm_net_free(net);
}

static void check_decomposition(const char *mname, wm_conditioning cond, int n)
{
    check_decomposition_sized(mname, cond, n, 6, 16, 8, 0);
}

static void test_decomposition_matches_materialised_weights(void **state)
{
    (void)state;
    const char *names[] = {"point", "line", "circle", "fourier2", "bspline", "cbspline", "torus", "cylinder"};
    int sizes[] = {1, 2, 37, 300};            /* 300 > the 256-row inference chunk */
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        for (int j = 0; j < 4; j++)
            check_decomposition(names[i], WM_COND_MANIFOLD, sizes[j]);
    for (int j = 0; j < 4; j++)
        check_decomposition("circle", WM_COND_CONCAT, sizes[j]);
}

/* The forward products take different routes by shape (src/blas.c,
 * src/dense.c): one sample as a one-row sgemm or as sgemv by row length
 * (rows of 16, 40, 32, 48, 64 floats); 2-64 samples with rows of 128 or more
 * inputs as the transposed product W X^T, then a transposing combine; more
 * samples, or shorter rows, as X W^T. Every route against the materialised
 * weights, with mixed and with shared contexts. */
static void test_forward_at_every_shape(void **state)
{
    (void)state;
    const char *names[] = {"point", "line", "circle"};
    int widths[][3] = {{64, 48, 32}, {40, 16, 64}, {32, 64, 48}, {128, 130, 64}, {200, 128, 40}};
    int sizes[] = {1, 2, 17, 64, 65};
    for (int i = 0; i < 3; i++)
        for (int w = 0; w < 5; w++)
            for (int n = 0; n < 5; n++)
                for (int sh = 0; sh < 2; sh++)
                    check_decomposition_sized(names[i], WM_COND_MANIFOLD, sizes[n], widths[w][0],
                                              widths[w][1], widths[w][2], sh);
}

/* The parameters, the gradient and the moments are streamed in whole
 * vectors: on malloc's 16-byte boundary every AVX-512 access split two
 * cache lines (src/memory.h). */
static void test_parameters_are_cache_line_aligned(void **state)
{
    (void)state;
    const char *names[] = {"point", "line", "circle", "torus"};
    for (int i = 0; i < 4; i++) {
        wm_net *net = make_net(names[i], WM_COND_MANIFOLD, 5, 1, 0);
        wm_optimizer *opt;
        wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
        WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
        assert_int_equal((uintptr_t)wm_net_params(net, NULL) % 64, 0);
        assert_int_equal((uintptr_t)wm_grad_buffer(opt, NULL) % 64, 0);
        wm_optimizer_free(opt);
        wm_net_free(net);
    }
}

static void test_shared_context_batch_equals_mixed_path(void **state)
{
    (void)state;
    /* A batch whose samples share one context takes the materialised path;
     * the same samples run one by one (a batch of 1 each) must agree, and
     * a mixed batch that contains them too. */
    enum { IN = 6, N = 20 };
    wm_net *net = make_net("torus", WM_COND_MANIFOLD, IN, 3, 1);
    float x[N * IN], s[N * 2], mixed_s[N * 2], shared[N * 4], mixed[N * 4], one[4];
    uint64_t st = 9;
    tu_fill(x, N * IN, -1, 1, &st);
    tu_contexts(wm_net_manifold(net), mixed_s, N, &st);
    for (int i = 0; i < N; i++) s[2 * i] = 0.3f, s[2 * i + 1] = 0.7f;
    memcpy(mixed_s, s, 2 * sizeof(float));              /* sample 0 shares the context */
    WM_OK_OR_FAIL(wm_infer(net, x, s, N, shared));
    WM_OK_OR_FAIL(wm_infer(net, x, mixed_s, N, mixed));
    for (int j = 0; j < 4; j++)
        assert_true(fabs(shared[j] - mixed[j]) < 1e-5);
    for (int i = 0; i < N; i++) {
        WM_OK_OR_FAIL(wm_infer(net, x + i * IN, s + 2 * i, 1, one));
        for (int j = 0; j < 4; j++)
            assert_true(fabs(shared[i * 4 + j] - one[j]) < 1e-5);
    }
    /* and the training losses agree between the two paths */
    int32_t labels[N];
    for (int i = 0; i < N; i++) labels[i] = i % 4;
    wm_batch b = {N, x, s, labels, NULL};
    float l_eval, l_grad;
    wm_optimizer *opt;
    wm_opt_config cfg = wm_opt_default(WM_OPT_SD);
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
    WM_OK_OR_FAIL(wm_evaluate(net, &b, &l_eval, NULL));
    WM_OK_OR_FAIL(wm_grad(opt, &b, &l_grad));
    assert_true(fabs(l_eval - l_grad) < 1e-5);
    wm_optimizer_free(opt);
    wm_net_free(net);
}

static void test_init_starts_as_a_point(void **state)
{
    (void)state;
    const char *names[] = {"line", "circle", "fourier2", "bspline", "cbspline", "torus", "cylinder"};
    for (size_t t = 0; t < sizeof names / sizeof names[0]; t++) {
        wm_net *net = make_net(names[t], WM_COND_MANIFOLD, 5, 1, 0);
        const wm_manifold *m = wm_net_manifold(net);
        int in, out;
        WM_OK_OR_FAIL(wm_net_layer_info(net, 0, &in, &out, NULL));
        float *w0 = malloc(sizeof(float) * in * out), *w1 = malloc(sizeof(float) * in * out);
        float b1[16], s0[2], s1[2];
        uint64_t st = 4;
        tu_contexts(m, s0, 1, &st);
        tu_contexts(m, s1, 1, &st);
        WM_OK_OR_FAIL(wm_net_weights_at(net, 0, s0, w0, NULL));
        WM_OK_OR_FAIL(wm_net_weights_at(net, 0, s1, w1, b1));
        double sq = 0;
        for (int j = 0; j < in * out; j++) {
            assert_true(fabs(w0[j] - w1[j]) < 1e-5);
            sq += (double)w0[j] * w0[j];
        }
        for (int j = 0; j < out; j++) assert_true(b1[j] == 0.0f);
        /* He initialisation (relu layer): mean square 2 / fan_in */
        double ms = sq / (in * out);
        assert_true(ms > 0.5 * 2.0 / in && ms < 1.5 * 2.0 / in);
        free(w0), free(w1);
        wm_net_free(net);
    }
}

static void test_control_point_semantics(void **state)
{
    (void)state;
    /* line: W(0) = P_1, W(1) = P_2 */
    wm_net *net = make_net("line", WM_COND_MANIFOLD, 5, 2, 1);
    float w[16 * 5], p[16 * 5], b[16], pb[16], s;
    for (int k = 0; k < 2; k++) {
        s = (float)k;
        WM_OK_OR_FAIL(wm_net_weights_at(net, 0, &s, w, b));
        WM_OK_OR_FAIL(wm_net_control_point(net, 0, k, p, pb));
        for (int j = 0; j < 80; j++) assert_true(fabs(w[j] - p[j]) < 1e-6);
        for (int j = 0; j < 16; j++) assert_true(fabs(b[j] - pb[j]) < 1e-6);
    }
    wm_net_free(net);
    /* circle: W(s) = P_1 + P_2 cos 2 pi s + P_3 sin 2 pi s */
    net = make_net("circle", WM_COND_MANIFOLD, 5, 2, 1);
    float P[3][80];
    for (int k = 0; k < 3; k++) WM_OK_OR_FAIL(wm_net_control_point(net, 0, k, P[k], NULL));
    s = 0.37f;
    WM_OK_OR_FAIL(wm_net_weights_at(net, 0, &s, w, NULL));
    for (int j = 0; j < 80; j++) {
        double want = P[0][j] + P[1][j] * cos(2 * TU_PI * s) + P[2][j] * sin(2 * TU_PI * s);
        assert_true(fabs(w[j] - want) < 1e-5);
    }
    /* setting a control point changes only that point */
    float newp[80];
    for (int j = 0; j < 80; j++) newp[j] = 0.01f * j;
    WM_OK_OR_FAIL(wm_net_set_control_point(net, 0, 1, newp, NULL));
    for (int k = 0; k < 3; k++) {
        WM_OK_OR_FAIL(wm_net_control_point(net, 0, k, p, NULL));
        for (int j = 0; j < 80; j++) assert_true(fabs(p[j] - (k == 1 ? newp[j] : P[k][j])) < 1e-5);
    }
    wm_net_free(net);
}

static void test_sizes_and_concat(void **state)
{
    (void)state;
    wm_net *mf = make_net("circle", WM_COND_MANIFOLD, 5, 1, 0);
    wm_net *cc = make_net("circle", WM_COND_CONCAT, 5, 1, 0);
    size_t base = 16 * 5 + 16 + 8 * 16 + 8 + 4 * 8 + 4;
    assert_int_equal(wm_net_n_params(mf), 3 * base);
    assert_int_equal(wm_net_n_params(cc), base + 16 * 2);   /* two context columns */
    assert_int_equal(wm_net_n_inputs(cc), 5);
    assert_int_equal(wm_net_n_outputs(cc), 4);
    assert_int_equal(wm_net_n_layers(cc), 3);
    assert_int_equal(wm_net_context_dim(cc), 1);
    int in0;
    WM_OK_OR_FAIL(wm_net_layer_info(cc, 0, &in0, NULL, NULL));
    assert_int_equal(in0, 7);
    /* a concat net's weights do not depend on s, which may be NULL */
    float w1[16 * 7], w2[16 * 7], s = 0.2f;
    WM_OK_OR_FAIL(wm_net_weights_at(cc, 0, NULL, w1, NULL));
    WM_OK_OR_FAIL(wm_net_weights_at(cc, 0, &s, w2, NULL));
    assert_memory_equal(w1, w2, sizeof w1);
    wm_net_free(mf);
    wm_net_free(cc);
    assert_int_equal(wm_net_n_inputs(NULL), -1);
    assert_int_equal(wm_net_n_params(NULL), 0);
}

/* ---- many threads inferring on one net ---------------------------------- */
enum { TN = 40, TIN = 6 };
typedef struct {
    const wm_net *net;
    const float *x, *s;
    const float (*ref)[TN * 4];   /* ref[n-1]: outputs of a single-threaded run of n rows */
    int ok;
} job;

static void *infer_job(void *arg)
{
    job *j = arg;
    float out[TN * 4];
    static const int sizes[] = {1, 7, TN, 3, TN, 1};
    j->ok = 1;
    for (int rep = 0; rep < 60; rep++) {
        int n = sizes[rep % 6];           /* varying sizes grow the scratch mid-run */
        if (wm_infer(j->net, j->x, j->s, n, out) != WM_OK ||
            memcmp(out, j->ref[n - 1], sizeof(float) * n * 4) != 0)
            j->ok = 0;
    }
    return NULL;
}

static void test_threads_share_one_net(void **state)
{
    (void)state;
    enum { T = 4 };
    wm_net *net = make_net("circle", WM_COND_MANIFOLD, TIN, 8, 1);
    static float x[TN * TIN], s[TN], ref[TN][TN * 4];
    uint64_t st = 1;
    tu_fill(x, TN * TIN, -1, 1, &st);
    tu_contexts(wm_net_manifold(net), s, TN, &st);
    for (int n = 1; n <= TN; n++) WM_OK_OR_FAIL(wm_infer(net, x, s, n, ref[n - 1]));
    pthread_t th[T];
    job jobs[T];
    for (int t = 0; t < T; t++) {
        jobs[t] = (job){net, x, s, (const float (*)[TN * 4])ref, 0};
        assert_int_equal(pthread_create(&th[t], NULL, infer_job, &jobs[t]), 0);
    }
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], NULL);
        assert_true(jobs[t].ok);          /* same bits as the single-threaded run */
    }
    wm_net_free(net);
}

static void test_workspace_variant(void **state)
{
    (void)state;
    enum { N = 300, IN = 6 };
    wm_net *net = make_net("cylinder", WM_COND_MANIFOLD, IN, 8, 1);
    static float x[N * IN], s[N * 2], a[N * 4], b[N * 4];
    uint64_t st = 1;
    tu_fill(x, N * IN, -1, 1, &st);
    tu_contexts(wm_net_manifold(net), s, N, &st);
    size_t bytes = wm_infer_workspace_size(net, N);
    assert_true(bytes > 0);
    void *ws = malloc(bytes);
    WM_OK_OR_FAIL(wm_infer_ws(net, x, s, N, a, ws, bytes));
    WM_OK_OR_FAIL(wm_infer(net, x, s, N, b));
    assert_memory_equal(a, b, sizeof a);
    EXPECT_STATUS(WM_EINVAL, wm_infer_ws(net, x, s, N, a, ws, bytes / 2));
    free(ws);
    wm_net_free(net);
}

/* The activations through a one-unit layer with weight 1 and bias 0,
 * against libm in double: within a few float ulps everywhere. */
static void test_activation_accuracy(void **state)
{
    (void)state;
    wm_activation acts[] = {WM_ACT_RELU, WM_ACT_TANH, WM_ACT_SIGMOID};
    for (int a = 0; a < 3; a++) {
        wm_manifold *m = tu_manifold("point");
        wm_net *net;
        WM_OK_OR_FAIL(wm_net_create(&net, m, 1, WM_COND_MANIFOLD));
        WM_OK_OR_FAIL(wm_net_dense(net, 1, acts[a]));
        WM_OK_OR_FAIL(wm_net_set_loss(net, WM_LOSS_MSE));
        WM_OK_OR_FAIL(wm_net_init(net, 1));
        float one = 1.0f, zero = 0.0f;
        WM_OK_OR_FAIL(wm_net_set_control_point(net, 0, 0, &one, &zero));
        enum { N = 20001 };
        static float x[N], y[N];
        for (int i = 0; i < N; i++) x[i] = (float)(-20.0 + 40.0 * i / (N - 1));
        x[N / 2 + 1] = 1e-5f;                      /* the small-argument branch */
        WM_OK_OR_FAIL(wm_infer(net, x, NULL, N, y));
        double worst = 0;
        for (int i = 0; i < N; i++) {
            double t = acts[a] == WM_ACT_RELU ? fmax(x[i], 0) : acts[a] == WM_ACT_TANH ? tanh(x[i]) : 1 / (1 + exp(-(double)x[i]));
            worst = fmax(worst, fabs(y[i] - t) / fmax(fabs(t), 1e-30));
            if (acts[a] == WM_ACT_TANH) assert_true(fabs(y[i]) <= 1.0f);
        }
        print_message("activation %d: max relative error %.3g\n", acts[a], worst);
        assert_true(worst < 1e-6);
        wm_net_free(net);
        wm_manifold_free(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decomposition_matches_materialised_weights),
        cmocka_unit_test(test_forward_at_every_shape),
        cmocka_unit_test(test_parameters_are_cache_line_aligned),
        cmocka_unit_test(test_shared_context_batch_equals_mixed_path),
        cmocka_unit_test(test_init_starts_as_a_point),
        cmocka_unit_test(test_control_point_semantics),
        cmocka_unit_test(test_sizes_and_concat),
        cmocka_unit_test(test_threads_share_one_net),
        cmocka_unit_test(test_workspace_variant),
        cmocka_unit_test(test_activation_accuracy),
    };
    return cmocka_run_group_tests_name("net", tests, NULL, NULL);
}
