/* test_units.c -- contexts in the user's own units (wm_net_set_context_range):
 * a line over 0-40 degrees, an angle in degrees, mapped to the basis' [0,1],
 * stored in files, and given back by context inference in the same units. */
#include "testutil.h"

/* Two nets of the same architecture and seed, one with units on coordinate
 * 0 (and 1 when dim is 2), one without. */
static void twins(const char *mname, const float *lo, const float *hi, wm_net **ranged, wm_net **plain)
{
    wm_manifold *m = tu_manifold(mname);
    wm_net **both[2] = {ranged, plain};
    for (int t = 0; t < 2; t++) {
        WM_OK_OR_FAIL(wm_net_create(both[t], m, 3, WM_COND_MANIFOLD));
        if (t == 0)
            for (int d = 0; d < wm_manifold_dim(m); d++)
                WM_OK_OR_FAIL(wm_net_set_context_range(*both[t], d, lo[d], hi[d]));
        WM_OK_OR_FAIL(wm_net_dense(*both[t], 5, WM_ACT_TANH));
        WM_OK_OR_FAIL(wm_net_dense(*both[t], 3, WM_ACT_NONE));
        WM_OK_OR_FAIL(wm_net_init(*both[t], 9));
        /* spread the manifold so the context matters */
        size_t n;
        wm_net_params(*both[t], &n);
        float *q = malloc(n * sizeof *q);
        uint64_t r = 4;
        tu_fill(q, n, -1, 1, &r);
        WM_OK_OR_FAIL(wm_net_set_params(*both[t], q, n));
        free(q);
    }
    wm_manifold_free(m);
}

/* The ranged net on user contexts equals the plain net on (s - lo)/(hi - lo). */
static void test_units_map_to_the_basis_domain(void **state)
{
    (void)state;
    const struct {
        const char *m;
        float lo[2], hi[2];
    } cases[] = {{"line", {0, 0}, {40, 0}}, {"line", {-273.15f, 0}, {100, 0}},
                 {"circle", {0, 0}, {360, 0}}, {"circle", {-3.14159265f, 0}, {3.14159265f, 0}},
                 {"torus", {0, 100}, {360, 124}}, {"cylinder", {10, 0}, {30, 24}},
                 {"bspline", {1000, 0}, {1001, 0}}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        wm_net *rn, *pn;
        twins(cases[c].m, cases[c].lo, cases[c].hi, &rn, &pn);
        int dim = wm_net_context_dim(rn);
        const wm_manifold *m = wm_net_manifold(rn);
        float x[3 * 16], su[2 * 16], s01[2 * 16], yr[3 * 16], yp[3 * 16];
        uint64_t r = 11;
        tu_fill(x, 3 * 16, -1, 1, &r);
        for (int i = 0; i < 16; i++)
            for (int d = 0; d < dim; d++) {
                double v = i == 0 ? 0.0 : i == 1 ? 1.0 : tu_uniform(&r);
                double span = (double)cases[c].hi[d] - cases[c].lo[d];
                if (wm_manifold_periodic(m, d) && i >= 2)
                    v += (double)(i % 5) - 2.0;        /* whole periods away: wraps */
                su[i * dim + d] = (float)(cases[c].lo[d] + v * span);
                s01[i * dim + d] = (float)(((double)su[i * dim + d] - cases[c].lo[d]) / span);
            }
        WM_OK_OR_FAIL(wm_infer(rn, x, su, 16, yr));
        WM_OK_OR_FAIL(wm_infer(pn, x, s01, 16, yp));
        for (int j = 0; j < 3 * 16; j++)
            if (!(fabsf(yr[j] - yp[j]) <= 1e-4f * (1 + fabsf(yp[j]))))
                fail_msg("%s: output %d is %g in units, %g in [0,1]", cases[c].m, j, yr[j], yp[j]);
        /* weights at a context and the manifold's basis take the same units */
        float w1[5 * 3], w2[5 * 3], b1[5], b2[5];
        WM_OK_OR_FAIL(wm_net_weights_at(rn, 0, su + 2 * dim, w1, b1));
        WM_OK_OR_FAIL(wm_net_weights_at(pn, 0, s01 + 2 * dim, w2, b2));
        for (int j = 0; j < 15; j++)
            assert_true(fabsf(w1[j] - w2[j]) <= 1e-5f * (1 + fabsf(w2[j])));
        float lo, hi;
        WM_OK_OR_FAIL(wm_net_context_range(rn, 0, &lo, &hi));
        assert_true(lo == cases[c].lo[0] && hi == cases[c].hi[0]);
        WM_OK_OR_FAIL(wm_net_context_range(pn, 0, &lo, &hi));
        assert_true(lo == 0.0f && hi == 1.0f);
        wm_net_free(rn), wm_net_free(pn);
    }
}

static void test_units_domain_and_arguments(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("line");
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 2, WM_COND_MANIFOLD));
    const float bad[][2] = {{1, 1}, {2, 1}, {NAN, 1}, {0, INFINITY}, {-INFINITY, 0}, {1e7f, 1e7f + 1}};
    for (int i = 0; i < 6; i++)
        EXPECT_STATUS(WM_EINVAL, wm_net_set_context_range(net, 0, bad[i][0], bad[i][1]));
    EXPECT_STATUS(WM_EINVAL, wm_net_set_context_range(net, 1, 0, 1));
    EXPECT_STATUS(WM_EINVAL, wm_net_set_context_range(net, -1, 0, 1));
    EXPECT_STATUS(WM_EINVAL, wm_net_set_context_range(NULL, 0, 0, 1));
    EXPECT_STATUS(WM_EINVAL, wm_net_context_range(NULL, 0, NULL, NULL));
    float lo = -5, hi = -5;
    WM_OK_OR_FAIL(wm_net_context_range(net, 0, &lo, &hi));   /* failures changed nothing */
    assert_true(lo == 0 && hi == 1);
    WM_OK_OR_FAIL(wm_net_set_context_range(net, 0, 10, 30));
    WM_OK_OR_FAIL(wm_net_dense(net, 2, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    EXPECT_STATUS(WM_ESTATE, wm_net_set_context_range(net, 0, 0, 40));
    float x[2] = {1, 2}, y[2], s = 30.0f;
    WM_OK_OR_FAIL(wm_infer(net, x, &s, 1, y));
    s = 10.0f;
    WM_OK_OR_FAIL(wm_infer(net, x, &s, 1, y));
    s = 30.5f;                                          /* beyond the chosen range */
    EXPECT_STATUS(WM_EINVAL, wm_infer(net, x, &s, 1, y));
    assert_non_null(strstr(wm_last_error(), "outside [10,30]"));
    wm_net_free(net);
    wm_manifold_free(m);
}

/* Saved and loaded (file and buffer), the units come back; nets without
 * units write the same bytes as before (no record). */
static void test_units_are_stored(void **state)
{
    (void)state;
    float lo[2] = {0, -180}, hi[2] = {360, 180};
    wm_net *rn, *pn;
    twins("torus", lo, hi, &rn, &pn);
    void *buf;
    size_t len, plen;
    WM_OK_OR_FAIL(wm_net_save_buffer(rn, &buf, &len));
    wm_net *back;
    WM_OK_OR_FAIL(wm_net_load_buffer(&back, buf, len));
    float l, h, x[3] = {1, -1, 0.5f}, s[2] = {400, 170}, y1[3], y2[3];
    WM_OK_OR_FAIL(wm_net_context_range(back, 1, &l, &h));
    assert_true(l == -180 && h == 180);
    WM_OK_OR_FAIL(wm_infer(rn, x, s, 1, y1));
    WM_OK_OR_FAIL(wm_infer(back, x, s, 1, y2));
    assert_memory_equal(y1, y2, sizeof y1);
    /* every truncation of the ranged record is refused */
    for (size_t cut = 0; cut < len; cut += len / 97 + 1) {
        wm_net *t = NULL;
        EXPECT_STATUS(WM_EFORMAT, wm_net_load_buffer(&t, buf, cut));
    }
    void *pbuf;
    WM_OK_OR_FAIL(wm_net_save_buffer(pn, &pbuf, &plen));
    assert_int_equal(len, plen + 4 * (3 + 2) + 8 * 2);   /* tag, dim, K, periodic x2, lo/hi x2 */
    wm_free(buf), wm_free(pbuf);
    wm_net_free(rn), wm_net_free(pn), wm_net_free(back);
}

/* Context inference answers in the user's units. */
static void test_inferred_contexts_are_in_units(void **state)
{
    (void)state;
    float lo[1] = {0}, hi[1] = {360};
    wm_net *rn, *pn;
    twins("circle", lo, hi, &rn, &pn);
    enum { N = 24 };
    float x[3 * N], s[N], y[3 * N];
    int32_t labels[N];
    uint64_t r = 8;
    tu_fill(x, 3 * N, -1, 1, &r);
    for (int i = 0; i < N; i++)
        s[i] = 0.3f;
    WM_OK_OR_FAIL(wm_infer(pn, x, s, N, y));            /* labels: the plain net's argmax at 0.3 */
    for (int i = 0; i < N; i++)
        labels[i] = y[3 * i] > y[3 * i + 1] ? (y[3 * i] > y[3 * i + 2] ? 0 : 2) : (y[3 * i + 1] > y[3 * i + 2] ? 1 : 2);
    wm_batch b = {N, x, NULL, labels, NULL};
    float sp, sr, lp, lr;
    WM_OK_OR_FAIL(wm_infer_context_batch(pn, &b, 1, &sp, &lp));
    WM_OK_OR_FAIL(wm_infer_context_batch(rn, &b, 1, &sr, &lr));
    double d = fmod(fabs(sr - 360.0 * sp), 360.0);
    if (d > 180)
        d = 360 - d;
    if (!(d < 0.5))
        fail_msg("ranged net found %g degrees, plain net %g (= %g degrees)", sr, sp, 360.0 * sp);
    assert_true(sr >= 0 && sr < 360);
    float sr1;
    WM_OK_OR_FAIL(wm_infer_context(rn, x, labels, N, &sr1));
    assert_true(sr1 >= 0 && sr1 < 360);
    wm_net_free(rn), wm_net_free(pn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_units_map_to_the_basis_domain),
        cmocka_unit_test(test_units_domain_and_arguments),
        cmocka_unit_test(test_units_are_stored),
        cmocka_unit_test(test_inferred_contexts_are_in_units),
    };
    return cmocka_run_group_tests_name("units", tests, NULL, NULL);
}
