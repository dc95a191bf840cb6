/* test_limits.c -- every size at its overflow edge: layer shapes computed
 * wide and refused before anything changes, batch counts up to INT_MAX,
 * workspaces that saturate instead of wrapping, arrays that alias. */
#define _DEFAULT_SOURCE  /* MAP_ANONYMOUS, MAP_NORESERVE */
#include <limits.h>
#include <sys/mman.h>

#include "testutil.h"

#define MAX_FEATURES (1 << 24)

/* The net's observable shape, to prove a refused call changed nothing. */
typedef struct {
    int n_layers, n_outputs;
    size_t n_params;
} shape;

static shape shape_of(const wm_net *net)
{
    shape s = {wm_net_n_layers(net), wm_net_n_outputs(net), wm_net_n_params(net)};
    return s;
}

static void assert_same_shape(shape a, shape b)
{
    assert_int_equal(a.n_layers, b.n_layers);
    assert_int_equal(a.n_outputs, b.n_outputs);
    assert_int_equal(a.n_params, b.n_params);
}

/* Defect: a conv over 2^22 channels with a 32x32 kernel computed in*k*k in
 * int, wrapped to 0 and returned WM_OK with 1 parameter. */
static void test_conv_columns_computed_wide(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("point");
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 1 << 24, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_input_shape(net, 1 << 22, 2, 2));
    shape before = shape_of(net);
    EXPECT_STATUS(WM_EINVAL, wm_net_conv2d(net, 1, 32, 1, 31, WM_ACT_NONE));
    assert_non_null(strstr(wm_last_error(), "weights per filter"));
    assert_same_shape(before, shape_of(net));
    /* every kernel size over the same input: refused or consistent */
    for (int k = 1; k <= 64; k++) {
        wm_status st = wm_net_conv2d(net, 1, k, 1, k - 1, WM_ACT_NONE);
        if ((int64_t)(1 << 22) * k * k > MAX_FEATURES)
            assert_int_equal(st, WM_EINVAL);
        if (st != WM_OK) {
            assert_same_shape(before, shape_of(net));
            continue;
        }
        int in = 0;
        WM_OK_OR_FAIL(wm_net_layer_info(net, 0, &in, NULL, NULL));
        assert_int_equal(in, (int64_t)(1 << 22) * k * k);
        break;
    }
    wm_net_free(net);
    wm_manifold_free(m);
}

/* Defect: a concat net on a Fourier(511) basis over a 1x2048x2048 image gave
 * layer 0 -4194304 inputs (1022 feature planes of 2^22 values). */
static void test_concat_feature_planes_computed_wide(void **state)
{
    (void)state;
    wm_manifold *m;
    WM_OK_OR_FAIL(wm_manifold_fourier(&m, 511));
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 2048 * 2048, WM_COND_CONCAT));
    WM_OK_OR_FAIL(wm_net_input_shape(net, 1, 2048, 2048));
    shape before = shape_of(net);
    EXPECT_STATUS(WM_EINVAL, wm_net_conv2d(net, 4, 3, 1, 1, WM_ACT_RELU));
    assert_non_null(strstr(wm_last_error(), "context features"));
    assert_same_shape(before, shape_of(net));
    EXPECT_STATUS(WM_EINVAL, wm_net_maxpool(net, 2));
    EXPECT_STATUS(WM_EINVAL, wm_net_avgpool(net, 2));
    assert_same_shape(before, shape_of(net));
    assert_int_equal(wm_infer_workspace_size(net, 1), 0);   /* not initialised */
    /* the features as values after the inputs fit: a dense first layer works */
    WM_OK_OR_FAIL(wm_net_dense(net, 2, WM_ACT_NONE));
    int in = 0;
    WM_OK_OR_FAIL(wm_net_layer_info(net, 0, &in, NULL, NULL));
    assert_int_equal(in, 2048 * 2048 + 1022);
    wm_net_free(net);
    wm_manifold_free(m);

    /* the largest image whose planes still fit is accepted, one more pixel row is not */
    WM_OK_OR_FAIL(wm_manifold_fourier(&m, 7));               /* 14 features */
    int h = MAX_FEATURES / 15 / 64;                            /* (1 + 14) * 64 * h <= 2^24 */
    WM_OK_OR_FAIL(wm_net_create(&net, m, 64 * h, WM_COND_CONCAT));
    WM_OK_OR_FAIL(wm_net_input_shape(net, 1, h, 64));
    WM_OK_OR_FAIL(wm_net_maxpool(net, 2));
    wm_net_free(net);
    WM_OK_OR_FAIL(wm_net_create(&net, m, 64 * (h + 1), WM_COND_CONCAT));
    WM_OK_OR_FAIL(wm_net_input_shape(net, 1, h + 1, 64));
    EXPECT_STATUS(WM_EINVAL, wm_net_maxpool(net, 2));
    assert_int_equal(wm_net_n_layers(net), 0);
    wm_net_free(net);
    wm_manifold_free(m);
}

/* The class: every adder at INT_MAX, 2^24 +- 1, 0 and -1 for each argument,
 * on manifold and concat nets. Each call either fails with WM_EINVAL and
 * changes nothing, or succeeds with sizes in range and a parameter count
 * that matches the layers' shapes computed in 64 bits. */
static void test_every_adder_at_its_edges(void **state)
{
    (void)state;
    const int edges[] = {INT_MIN, -1, 0, 1, 2, 64, 65, 4096, (1 << 16) + 1, MAX_FEATURES - 1,
                         MAX_FEATURES, MAX_FEATURES + 1, INT_MAX / 2, INT_MAX};
    const int n_edges = (int)(sizeof edges / sizeof edges[0]);
    const char *manifolds[] = {"point", "circle", "torus"};
    for (int mi = 0; mi < 3; mi++)
        for (int cond = 0; cond < 2; cond++) {
            wm_manifold *m = tu_manifold(manifolds[mi]);
            int K = wm_manifold_n_basis(m);
            for (int e = 0; e < n_edges; e++) {
                wm_net *net = NULL;
                wm_status st = wm_net_create(&net, m, edges[e], (wm_conditioning)cond);
                if (edges[e] < 1 || edges[e] > MAX_FEATURES) {
                    assert_int_equal(st, WM_EINVAL);
                    continue;
                }
                assert_int_equal(st, WM_OK);
                /* dense of every width */
                for (int j = 0; j < n_edges; j++) {
                    shape before = shape_of(net);
                    st = wm_net_dense(net, edges[j], WM_ACT_RELU);
                    if (st != WM_OK) {
                        assert_int_equal(st, WM_EINVAL);
                        assert_same_shape(before, shape_of(net));
                        continue;
                    }
                    int in = 0, out = 0;
                    WM_OK_OR_FAIL(wm_net_layer_info(net, before.n_layers, &in, &out, NULL));
                    assert_true(in >= 1 && in <= MAX_FEATURES && out == edges[j]);
                    uint64_t add = (uint64_t)(cond == WM_COND_CONCAT ? 1 : K) * out * ((uint64_t)in + 1);
                    assert_true(wm_net_n_params(net) == before.n_params + add);
                    assert_true(wm_net_n_params(net) <= ((size_t)1 << 31));
                }
                wm_net_free(net);
                /* images: conv and pools with every kernel, stride, pad, channels */
                int side = edges[e] >= 4 ? 2 : 1;
                if (edges[e] % (side * side) != 0)
                    continue;
                for (int j = 0; j < n_edges; j++)
                    for (int k = 0; k < n_edges; k++) {
                        WM_OK_OR_FAIL(wm_net_create(&net, m, edges[e], (wm_conditioning)cond));
                        WM_OK_OR_FAIL(wm_net_input_shape(net, edges[e] / (side * side), side, side));
                        shape before = shape_of(net);
                        int kernel = edges[k];
                        st = wm_net_conv2d(net, edges[j], kernel, 1, kernel > 0 ? kernel - 1 : 0,
                                           WM_ACT_NONE);
                        if (st != WM_OK) {
                            assert_int_equal(st, WM_EINVAL);
                            assert_same_shape(before, shape_of(net));
                        } else {
                            int in = 0, out = 0;
                            WM_OK_OR_FAIL(wm_net_layer_info(net, 0, &in, &out, NULL));
                            assert_true(in >= 1 && in <= MAX_FEATURES && out == edges[j]);
                        }
                        st = wm_net_maxpool(net, edges[k]);
                        assert_true(st == WM_OK || st == WM_EINVAL);
                        wm_net_free(net);
                    }
            }
            wm_manifold_free(m);
        }
}

/* Inference workspaces are bounded by the chunk, whatever n. */
static void test_infer_workspace_is_chunk_bounded(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("torus");
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 16, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(net, 64, WM_ACT_RELU));
    WM_OK_OR_FAIL(wm_net_dense(net, 2, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    size_t one = wm_infer_workspace_size(net, 1), chunk = wm_infer_workspace_size(net, 256);
    assert_true(one > 0 && chunk >= one);
    assert_int_equal(wm_infer_workspace_size(net, INT_MAX), chunk);   /* chunked: bounded */
    assert_int_equal(wm_infer_workspace_size(net, -1), 0);
    wm_net_free(net);
    wm_manifold_free(m);
}

/* A conv's im2col columns (issue 15: a panel of whole samples, at least one)
 * are counted in 64 bits: 2^22 weights per filter at 191 x 191 positions is
 * 1.5e11 floats a sample, which int arithmetic wraps. The workspace asks for
 * all of it (and so fails with WM_ENOMEM where it is run), never for less. */
static void test_conv_columns_workspace_computed_wide(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("point");
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 1 << 24, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_input_shape(net, 1 << 10, 128, 128));
    WM_OK_OR_FAIL(wm_net_conv2d(net, 1, 64, 1, 63, WM_ACT_NONE));      /* 1 x 191 x 191 */
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    size_t cols = (size_t)1 << 22, P = (size_t)191 * 191, want = cols * P * sizeof(float);
    size_t one = wm_infer_workspace_size(net, 1);
    assert_true(one >= want && one - want < ((size_t)1 << 30));
    assert_true(wm_infer_workspace_size(net, 2) >= want);
    wm_net_free(net);
    wm_manifold_free(m);
}

/* Training workspaces saturate: K = 1023 basis points times a 2^24-value
 * pooled image times INT_MAX rows is 2^67 bytes, which wrapped modulo 2^64
 * would be a small block the pass then overruns. It must be WM_ENOMEM,
 * refused before the inputs are read (x here is far too short to read). */
static void test_training_workspace_saturates(void **state)
{
    (void)state;
    size_t n = INT_MAX;
    int32_t *labels = mmap(NULL, n * sizeof(int32_t), PROT_READ,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    float *s = mmap(NULL, n * sizeof(float), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (labels == MAP_FAILED || s == MAP_FAILED)
        skip();
    wm_manifold *m;
    WM_OK_OR_FAIL(wm_manifold_fourier(&m, 511));
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 1 << 24, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_input_shape(net, 2, 4096, 2048));
    WM_OK_OR_FAIL(wm_net_avgpool(net, 1));
    WM_OK_OR_FAIL(wm_net_avgpool(net, 1));
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    wm_optimizer *opt;
    wm_opt_config cfg = wm_opt_default(WM_OPT_SD);
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
    float x[1] = {0};
    wm_batch b = {INT_MAX, x, s, labels, NULL};
    EXPECT_STATUS(WM_ENOMEM, wm_step(opt, &b, NULL));
    EXPECT_STATUS(WM_ENOMEM, wm_grad(opt, &b, NULL));
    wm_optimizer_free(opt);
    wm_net_free(net);
    wm_manifold_free(m);
    munmap(labels, n * sizeof(int32_t));
    munmap(s, n * sizeof(float));
}

/* Defect: n within 255 of INT_MAX crashed wm_infer/wm_infer_ws/wm_evaluate
 * (the chunk offset r0 += 256 wrapped). wm_evaluate runs the same chunk loop
 * without an n-sized output, so a batch of INT_MAX samples needs only
 * never-written (zero-page) inputs: 8 GiB of address space, little memory. */
static void test_evaluate_at_int_max_samples(void **state)
{
    (void)state;
    /* 2^31 samples of real per-sample work take ~40-70 s here; 10-50x that
     * under ASan or valgrind, where it is skipped (the release run has it) */
#if defined(__SANITIZE_ADDRESS__)
    skip();
#endif
    const char *pre = getenv("LD_PRELOAD");
    if (pre && strstr(pre, "vgpreload"))
        skip();
    size_t n = INT_MAX;
    float *x = mmap(NULL, n * sizeof(float), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (x == MAP_FAILED)
        skip();
    wm_manifold *m = tu_manifold("point");
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 1, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(net, 1, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_set_loss(net, WM_LOSS_MSE));
    WM_OK_OR_FAIL(wm_net_init(net, 3));
    float w = 0.5f, bias = 2.0f;                             /* y = 2 everywhere (x = 0) */
    WM_OK_OR_FAIL(wm_net_set_control_point(net, 0, 0, &w, &bias));
    wm_batch b = {INT_MAX, x, NULL, NULL, x};                /* targets 0 */
    float loss = -1, acc = -1;
    b.n = INT_MAX - 100;            /* the last chunk starts within 256 of INT_MAX */
    WM_OK_OR_FAIL(wm_evaluate(net, &b, &loss, &acc));
    assert_float_equal(loss, 4.0f, 1e-5f);
    assert_float_equal(acc, 1.0f, 0.0f);
    wm_net_free(net);
    wm_manifold_free(m);
    munmap(x, n * sizeof(float));
}

/* out overlapping x: outputs of the first chunk overwrote inputs of later
 * ones (wrong past 256 samples). Any overlap is refused, nothing written. */
static void test_infer_refuses_aliased_output(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("circle");
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 4, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(net, 4, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    const int n = 600;
    float *buf = malloc(sizeof(float) * (size_t)n * 8), *s = malloc(sizeof(float) * n);
    uint64_t rng = 5;
    tu_fill(buf, (size_t)n * 8, -1, 1, &rng);
    tu_fill(s, (size_t)n, 0, 1, &rng);
    float *copy = malloc(sizeof(float) * (size_t)n * 8);
    memcpy(copy, buf, sizeof(float) * (size_t)n * 8);
    EXPECT_STATUS(WM_EINVAL, wm_infer(net, buf, s, n, buf));          /* in place */
    EXPECT_STATUS(WM_EINVAL, wm_infer(net, buf, s, n, buf + 3));      /* partial */
    EXPECT_STATUS(WM_EINVAL, wm_infer(net, buf + 4, s, n, buf));      /* out before x */
    EXPECT_STATUS(WM_EINVAL, wm_infer(net, buf, s, 1, (float *)s));   /* over s */
    assert_memory_equal(buf, copy, sizeof(float) * (size_t)n * 8);
    WM_OK_OR_FAIL(wm_infer(net, buf, s, n, buf + (size_t)n * 4));     /* adjacent: fine */
    free(buf), free(s), free(copy);
    wm_net_free(net);
    wm_manifold_free(m);
}

/* Activations that overflow: wm_evaluate returned WM_OK with a NaN loss. */
static void test_evaluate_reports_overflowing_loss(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("line");
    for (int loss_kind = 0; loss_kind < 2; loss_kind++) {
        wm_net *net;
        WM_OK_OR_FAIL(wm_net_create(&net, m, 2, WM_COND_MANIFOLD));
        WM_OK_OR_FAIL(wm_net_dense(net, 2, WM_ACT_NONE));
        WM_OK_OR_FAIL(wm_net_set_loss(net, (wm_loss)loss_kind));
        WM_OK_OR_FAIL(wm_net_init(net, 1));
        float w[4] = {3e38f, 3e38f, -3e38f, 3e38f}, bb[2] = {0, 0};
        for (int k = 0; k < 2; k++)
            WM_OK_OR_FAIL(wm_net_set_control_point(net, 0, k, w, bb));
        float x[2] = {3e38f, 3e38f}, s = 0.5f, t[2] = {0, 0}, loss = 123, acc = 456;
        int32_t label = 0;
        wm_batch b = {1, x, &s, loss_kind == WM_LOSS_MSE ? NULL : &label,
                      loss_kind == WM_LOSS_MSE ? t : NULL};
        EXPECT_STATUS(WM_ENUMERIC, wm_evaluate(net, &b, &loss, &acc));
        assert_true(loss == 123 && acc == 456);
        wm_net_free(net);
    }
    wm_manifold_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_columns_computed_wide),
        cmocka_unit_test(test_conv_columns_workspace_computed_wide),
        cmocka_unit_test(test_concat_feature_planes_computed_wide),
        cmocka_unit_test(test_every_adder_at_its_edges),
        cmocka_unit_test(test_infer_workspace_is_chunk_bounded),
        cmocka_unit_test(test_training_workspace_saturates),
        cmocka_unit_test(test_evaluate_at_int_max_samples),
        cmocka_unit_test(test_infer_refuses_aliased_output),
        cmocka_unit_test(test_evaluate_reports_overflowing_loss),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
