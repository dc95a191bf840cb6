/* test_io.c -- model files (src/io.c): round trips and rejected files. */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static char dir[] = "/tmp/wm_test_io_XXXXXX";

/* A path inside the test directory; each call returns its own slot of a ring. */
static const char *path_in_dir(const char *name)
{
    static char ring[8][256];
    static int next;
    char *buf = ring[next++ % 8];
    snprintf(buf, 256, "%s/%s", dir, name);
    return buf;
}

static wm_net *trained_net(wm_manifold *m, wm_conditioning cond, wm_loss loss)
{
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 4, cond));
    WM_OK_OR_FAIL(wm_net_dense(net, 8, WM_ACT_SIGMOID));
    WM_OK_OR_FAIL(wm_net_dense(net, 3, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_set_loss(net, loss));
    WM_OK_OR_FAIL(wm_net_init(net, 12));
    size_t np = wm_net_n_params(net);
    float *q = malloc(np * sizeof *q);
    uint64_t st = 3;
    tu_fill(q, np, -1, 1, &st);
    WM_OK_OR_FAIL(wm_net_set_params(net, q, np));
    free(q);
    return net;
}

static void assert_same_outputs(const wm_net *a, const wm_net *b, const wm_manifold *m)
{
    enum { N = 50 };
    float x[N * 4], s[N * 4], ya[N * 3], yb[N * 3];
    uint64_t st = 8;
    tu_fill(x, N * 4, -1, 1, &st);
    tu_contexts(m, s, N, &st);
    WM_OK_OR_FAIL(wm_infer(a, x, s, N, ya));
    WM_OK_OR_FAIL(wm_infer(b, x, s, N, yb));
    assert_memory_equal(ya, yb, sizeof ya);       /* bit-identical */
}

static void round_trip(wm_manifold *m, wm_conditioning cond, wm_loss loss, wm_basis_fn fn)
{
    wm_net *net = trained_net(m, cond, loss), *back = NULL;
    const char *p = path_in_dir("model.wmn");
    WM_OK_OR_FAIL(wm_net_save(net, p));
    if (fn)
        WM_OK_OR_FAIL(wm_net_load_custom(&back, p, fn, NULL));
    else
        WM_OK_OR_FAIL(wm_net_load(&back, p));
    size_t la, lb;
    const float *pa = wm_net_params(net, &la), *pb = wm_net_params(back, &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(pa, pb, la * sizeof(float));
    /* the buffer holds the file's bytes and loads the same net */
    void *buf = NULL;
    size_t blen = 0, flen = 0;
    WM_OK_OR_FAIL(wm_net_save_buffer(net, &buf, &blen));
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    unsigned char *file = malloc(blen + 1);
    flen = fread(file, 1, blen + 1, f);
    fclose(f);
    assert_int_equal(flen, blen);
    assert_memory_equal(file, buf, blen);
    free(file);
    wm_net *fromb = NULL;
    if (fn)
        WM_OK_OR_FAIL(wm_net_load_buffer_custom(&fromb, buf, blen, fn, NULL));
    else
        WM_OK_OR_FAIL(wm_net_load_buffer(&fromb, buf, blen));
    assert_memory_equal(pa, wm_net_params(fromb, NULL), la * sizeof(float));
    assert_same_outputs(net, fromb, m);
    wm_net_free(fromb);
    wm_free(buf);
    assert_int_equal(wm_net_n_layers(back), 2);
    assert_int_equal(wm_net_n_inputs(back), 4);
    assert_int_equal(wm_manifold_n_basis(wm_net_manifold(back)), wm_manifold_n_basis(m));
    assert_same_outputs(net, back, m);
    /* the loss comes back too: MSE training needs targets, CE labels */
    float x[4] = {0}, s[4] = {0.5f, 0.5f, 0.5f, 0.5f}, t[3] = {0};
    int32_t y = 1;
    wm_batch b = {1, x, s, loss == WM_LOSS_SOFTMAX_CE ? &y : NULL, loss == WM_LOSS_MSE ? t : NULL};
    float l1, l2;
    WM_OK_OR_FAIL(wm_evaluate(net, &b, &l1, NULL));
    WM_OK_OR_FAIL(wm_evaluate(back, &b, &l2, NULL));
    assert_true(l1 == l2);
    wm_net_free(net);
    wm_net_free(back);
}

static void custom_basis(const float *s, float *c, void *user)
{
    (void)user;
    c[0] = 1;
    c[1] = s[0];
    c[2] = s[0] * s[0];
}

static void test_round_trip_every_manifold(void **state)
{
    (void)state;
    const char *names[] = {"point", "line", "circle", "fourier2", "bspline", "cbspline", "torus", "cylinder"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        wm_manifold *m = tu_manifold(names[i]);
        round_trip(m, WM_COND_MANIFOLD, WM_LOSS_SOFTMAX_CE, NULL);
        round_trip(m, WM_COND_CONCAT, WM_LOSS_MSE, NULL);
        wm_manifold_free(m);
    }
    wm_manifold *c;
    WM_OK_OR_FAIL(wm_manifold_custom(&c, 1, 3, NULL, custom_basis, NULL));
    round_trip(c, WM_COND_MANIFOLD, WM_LOSS_MSE, custom_basis);
    /* the plain loader cannot rebuild a custom basis and says so */
    wm_net *net = trained_net(c, WM_COND_MANIFOLD, WM_LOSS_MSE), *back = NULL;
    WM_OK_OR_FAIL(wm_net_save(net, path_in_dir("custom.wmn")));
    EXPECT_STATUS(WM_EINVAL, wm_net_load(&back, path_in_dir("custom.wmn")));
    assert_non_null(strstr(wm_last_error(), "wm_net_load_custom"));
    assert_null(back);
    wm_net_free(net);
    wm_manifold_free(c);
}

static void test_bad_files_are_rejected(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("circle");
    wm_net *net = trained_net(m, WM_COND_MANIFOLD, WM_LOSS_SOFTMAX_CE), *back = NULL;
    const char *good = path_in_dir("good.wmn"), *bad = path_in_dir("bad.wmn");
    WM_OK_OR_FAIL(wm_net_save(net, good));
    size_t len;
    unsigned char *buf = tu_read_file(good, &len);

    tu_write_file(bad, "this is not a model\n", 20);                 /* foreign */
    EXPECT_STATUS(WM_EFORMAT, wm_net_load(&back, bad));
    tu_write_file(bad, "", 0);                                       /* empty */
    EXPECT_STATUS(WM_EFORMAT, wm_net_load(&back, bad));
    for (size_t cut = 1; cut < len; cut += 1 + cut / 3) {        /* every kind of truncation */
        tu_write_file(bad, buf, cut);
        EXPECT_STATUS(WM_EFORMAT, wm_net_load(&back, bad));
    }
    for (size_t pos = 0; pos < len; pos += 7) {                  /* flipped bytes */
        buf[pos] ^= 0x40;
        tu_write_file(bad, buf, len);
        EXPECT_STATUS(WM_EFORMAT, wm_net_load(&back, bad));
        buf[pos] ^= 0x40;
    }
    buf[4] = 99;                                                 /* a future version */
    tu_write_file(bad, buf, len);
    EXPECT_STATUS(WM_EFORMAT, wm_net_load(&back, bad));
    assert_non_null(strstr(wm_last_error(), "version"));
    assert_null(back);

    EXPECT_STATUS(WM_EIO, wm_net_load(&back, path_in_dir("missing.wmn")));
    EXPECT_STATUS(WM_EIO, wm_net_load(&back, dir));              /* a directory */
    EXPECT_STATUS(WM_EIO, wm_net_save(net, "/nonexistent-dir/x.wmn"));
    EXPECT_STATUS(WM_EINVAL, wm_net_load(NULL, good));
    EXPECT_STATUS(WM_EINVAL, wm_net_save(NULL, good));
    /* the good file was never touched by the failed calls */
    size_t len2;
    unsigned char *again = tu_read_file(good, &len2);
    assert_int_equal(len, len2);
    free(again);
    free(buf);
    wm_net_free(net);
    wm_manifold_free(m);
}

/* The buffer calls' arguments, and what they leave alone on failure. */
static void test_buffer_call_arguments(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("line"), *cu;
    wm_net *net = trained_net(m, WM_COND_MANIFOLD, WM_LOSS_SOFTMAX_CE), *out = NULL, *raw;
    void *buf = (void *)&out, *good;
    size_t len = 7, glen;
    EXPECT_STATUS(WM_EINVAL, wm_net_save_buffer(NULL, &buf, &len));
    EXPECT_STATUS(WM_EINVAL, wm_net_save_buffer(net, NULL, &len));
    EXPECT_STATUS(WM_EINVAL, wm_net_save_buffer(net, &buf, NULL));
    WM_OK_OR_FAIL(wm_net_create(&raw, m, 2, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(raw, 2, WM_ACT_NONE));
    EXPECT_STATUS(WM_ESTATE, wm_net_save_buffer(raw, &buf, &len));
    assert_ptr_equal(buf, (void *)&out);               /* untouched on failure */
    assert_int_equal(len, 7);
    WM_OK_OR_FAIL(wm_net_save_buffer(net, &good, &glen));
    EXPECT_STATUS(WM_EINVAL, wm_net_load_buffer(NULL, good, glen));
    EXPECT_STATUS(WM_EINVAL, wm_net_load_buffer(&out, NULL, glen));
    EXPECT_STATUS(WM_EINVAL, wm_net_load_buffer(&out, NULL, 0));
    EXPECT_STATUS(WM_EFORMAT, wm_net_load_buffer(&out, good, 0));
    EXPECT_STATUS(WM_EFORMAT, wm_net_load_buffer(&out, "WMNF", 4));
    EXPECT_STATUS(WM_EINVAL, wm_net_load_buffer_custom(&out, good, glen, NULL, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_net_load_buffer_custom(NULL, good, glen, custom_basis, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_net_load_buffer_custom(&out, NULL, glen, custom_basis, NULL));
    assert_null(out);
    /* a custom net needs the custom call, and says which */
    WM_OK_OR_FAIL(wm_manifold_custom(&cu, 1, 3, NULL, custom_basis, NULL));
    wm_net *cnet = trained_net(cu, WM_COND_MANIFOLD, WM_LOSS_MSE);
    void *cbuf;
    size_t clen;
    WM_OK_OR_FAIL(wm_net_save_buffer(cnet, &cbuf, &clen));
    EXPECT_STATUS(WM_EINVAL, wm_net_load_buffer(&out, cbuf, clen));
    assert_non_null(strstr(wm_last_error(), "wm_net_load_buffer_custom"));
    assert_null(out);
    /* a plain net through the custom call loads (the callback is unused) */
    WM_OK_OR_FAIL(wm_net_load_buffer_custom(&out, good, glen, custom_basis, NULL));
    wm_net_free(out);
    wm_free(cbuf), wm_free(good);
    wm_free(NULL);
    wm_net_free(cnet), wm_net_free(raw), wm_net_free(net);
    wm_manifold_free(cu), wm_manifold_free(m);
}

static void test_save_before_init(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("line");
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 2, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(net, 2, WM_ACT_NONE));
    EXPECT_STATUS(WM_ESTATE, wm_net_save(net, path_in_dir("x.wmn")));
    assert_int_equal(access(path_in_dir("x.wmn"), F_OK), -1);
    wm_net_free(net);
    wm_manifold_free(m);
}

/* Training resumed from a checkpoint reaches the same bits as training that
 * never stopped, for every optimizer kind. */
static void test_checkpoint_resume_is_bit_identical(void **state)
{
    (void)state;
    wm_opt_kind kinds[] = {WM_OPT_SD, WM_OPT_MOMENTUM, WM_OPT_ADAM};
    for (int k = 0; k < 3; k++) {
        wm_manifold *m = tu_manifold("torus");
        wm_net *a = trained_net(m, WM_COND_MANIFOLD, WM_LOSS_SOFTMAX_CE), *b = NULL;
        wm_optimizer *oa, *ob = NULL;
        wm_opt_config cfg = wm_opt_default(kinds[k]);
        cfg.weight_decay = 0.01f;
        WM_OK_OR_FAIL(wm_optimizer_create(&oa, a, &cfg));
        enum { N = 16 };
        float x[N * 4], s[N * 2];
        int32_t y[N];
        uint64_t st = 5;
        wm_batch batch = {N, x, s, y, NULL};
        for (int step = 0; step < 10; step++) {
            if (step == 4) {                              /* checkpoint, then resume a copy */
                WM_OK_OR_FAIL(wm_optimizer_save(oa, path_in_dir("ckpt.wmn")));
                WM_OK_OR_FAIL(wm_optimizer_load(&ob, &b, path_in_dir("ckpt.wmn"), NULL, NULL));
                assert_int_equal(wm_optimizer_steps(ob), 4);
            }
            tu_fill(x, N * 4, -1, 1, &st);
            tu_contexts(m, s, N, &st);
            for (int i = 0; i < N; i++) y[i] = (int32_t)(tu_uniform(&st) * 3);
            WM_OK_OR_FAIL(wm_step(oa, &batch, NULL));
            if (ob)
                WM_OK_OR_FAIL(wm_step(ob, &batch, NULL));
        }
        size_t la;
        const float *pa = wm_net_params(a, &la);
        assert_memory_equal(pa, wm_net_params(b, NULL), la * sizeof(float));
        /* the checkpoint is also a plain model file; a plain model is not a checkpoint */
        wm_net *plain = NULL;
        WM_OK_OR_FAIL(wm_net_load(&plain, path_in_dir("ckpt.wmn")));
        WM_OK_OR_FAIL(wm_net_save(plain, path_in_dir("plain.wmn")));
        wm_optimizer *o2 = NULL;
        wm_net *n2 = NULL;
        EXPECT_STATUS(WM_EINVAL, wm_optimizer_load(&o2, &n2, path_in_dir("plain.wmn"), NULL, NULL));
        assert_null(o2);
        assert_null(n2);
        wm_net_free(plain);
        wm_optimizer_free(oa), wm_optimizer_free(ob);
        wm_net_free(a), wm_net_free(b);
        wm_manifold_free(m);
    }
}

/* A save killed at any moment leaves the old file or the new one, never a
 * torn one: a child saves a large model over and over, alternating between
 * two parameter sets; the parent kills it at random moments and loads. */
static void test_killed_save_never_tears_the_file(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("circle");
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 512, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(net, 512, WM_ACT_RELU));   /* ~0.8 M params, 3 MB files */
    WM_OK_OR_FAIL(wm_net_dense(net, 10, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    const char *target = path_in_dir("atomic.wmn");
    WM_OK_OR_FAIL(wm_net_save(net, target));
    size_t np = wm_net_n_params(net);
    float *alt = malloc(np * sizeof *alt);
    uint64_t st = 1;
    tu_fill(alt, np, -1, 1, &st);
    int loaded_old = 0, loaded_new = 0;
    for (int round = 0; round < 12; round++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            for (int i = 0;; i++) {
                if (i % 2 == 0)
                    wm_net_set_params(net, alt, np);
                else
                    wm_net_init(net, 1);
                wm_net_save(net, target);
            }
        }
        struct timespec ts = {0, 2000000L + (long)(tu_uniform(&st) * 30e6)};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        wm_net *back = NULL;
        WM_OK_OR_FAIL(wm_net_load(&back, target));   /* whole, whatever the moment */
        const float *p = wm_net_params(back, NULL);
        if (memcmp(p, alt, np * sizeof *alt) == 0) loaded_new++;
        else loaded_old++;
        wm_net_free(back);
    }
    print_message("after 12 kills: %d loads held the alternate parameters, %d the initial ones\n",
                  loaded_new, loaded_old);
    /* leftover temporaries from killed saves are the only debris allowed */
    free(alt);
    wm_net_free(net);
    wm_manifold_free(m);
}

static int make_dir(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A version-1 file written by the library before layer modules and model
 * format 2 (main at f917607, by tests/data/make_v1.c: a conv net on the
 * circle after 5 Adam steps): it loads; its parameters are bit for bit what
 * the same calls, seed and steps give today; wm_infer gives bit for bit the
 * outputs that library gave (v1_cnn_circle.out); saved again it is the same
 * bytes (a net version 1 can hold is still written as version 1). */
static void test_version1_fixture_loads_bit_for_bit(void **state)
{
    (void)state;
    const char *path = "tests/data/v1_cnn_circle.wmn";
    size_t len, olen;
    unsigned char *file = tu_read_file(path, &len);
    unsigned char *outs = tu_read_file("tests/data/v1_cnn_circle.out", &olen);
    assert_int_equal(olen, 12 * sizeof(float));
    assert_int_equal(file[4], 1);                              /* format version 1 */
    wm_net *loaded;
    WM_OK_OR_FAIL(wm_net_load(&loaded, path));
    assert_int_equal(wm_net_n_layers(loaded), 6);

    wm_manifold *m;
    wm_net *net;
    WM_OK_OR_FAIL(wm_manifold_circle(&m));
    WM_OK_OR_FAIL(wm_net_create(&net, m, 2 * 6 * 6, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_input_shape(net, 2, 6, 6));
    WM_OK_OR_FAIL(wm_net_conv2d(net, 3, 3, 1, 1, WM_ACT_RELU));
    WM_OK_OR_FAIL(wm_net_maxpool(net, 2));
    WM_OK_OR_FAIL(wm_net_conv2d(net, 4, 3, 1, 0, WM_ACT_TANH));
    WM_OK_OR_FAIL(wm_net_avgpool(net, 1));
    WM_OK_OR_FAIL(wm_net_dense(net, 5, WM_ACT_SIGMOID));
    WM_OK_OR_FAIL(wm_net_dense(net, 3, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(net, 77));
    float x[4 * 72], s[4], y[12];
    int32_t labels[4] = {0, 1, 2, 1};
    for (int j = 0; j < 4 * 72; j++) x[j] = (float)((j * 37 % 101) / 50.0 - 1.0);
    for (int i = 0; i < 4; i++) s[i] = 0.2f * (float)i + 0.05f;
    wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
    wm_optimizer *o;
    WM_OK_OR_FAIL(wm_optimizer_create(&o, net, &cfg));
    wm_batch b = {4, x, s, labels, NULL};
    for (int t = 0; t < 5; t++) WM_OK_OR_FAIL(wm_step(o, &b, NULL));
    size_t n1, n2;
    const float *p1 = wm_net_params(loaded, &n1), *p2 = wm_net_params(net, &n2);
    assert_int_equal(n1, n2);
    /* bit for bit: the loaded parameters are the file's (magic, version,
     * header_bytes, header, n_params u64, then the floats) */
    uint32_t hb = (uint32_t)file[8] | (uint32_t)file[9] << 8 | (uint32_t)file[10] << 16 | (uint32_t)file[11] << 24;
    assert_true(12 + (size_t)hb + 8 + n1 * sizeof(float) <= len);
    assert_memory_equal(p1, file + 12 + hb + 8, n1 * sizeof(float));
    /* the same training on this build gives the same net to float rounding:
     * bit for bit on the BLAS that wrote the fixture (OpenBLAS), not on
     * another (the reference BLAS sums in another order) */
    for (size_t j = 0; j < n1; j++)
        if (!(fabsf(p1[j] - p2[j]) <= 1e-4f * (1 + fabsf(p2[j]))))
            fail_msg("parameter %zu: file %.9g, trained here %.9g", j, p1[j], p2[j]);
    WM_OK_OR_FAIL(wm_infer(loaded, x, s, 4, y));
    const float *want = (const float *)(const void *)outs;
    for (int j = 0; j < 12; j++)
        if (!(fabsf(y[j] - want[j]) <= 1e-5f * (1 + fabsf(want[j]))))
            fail_msg("output %d: %.9g, recorded %.9g", j, y[j], want[j]);
    char tmp[] = "/tmp/wm_v1_again_XXXXXX";
    int fd = mkstemp(tmp);
    assert_true(fd >= 0);
    close(fd);
    WM_OK_OR_FAIL(wm_net_save(loaded, tmp));
    size_t alen;
    unsigned char *again = tu_read_file(tmp, &alen);
    unlink(tmp);
    assert_int_equal(alen, len);
    assert_memory_equal(again, file, len);
    free(again);
    wm_optimizer_free(o);
    wm_net_free(net), wm_net_free(loaded);
    wm_manifold_free(m);
    free(file), free(outs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_manifold),
        cmocka_unit_test(test_bad_files_are_rejected),
        cmocka_unit_test(test_buffer_call_arguments),
        cmocka_unit_test(test_save_before_init),
        cmocka_unit_test(test_checkpoint_resume_is_bit_identical),
        cmocka_unit_test(test_killed_save_never_tears_the_file),
        cmocka_unit_test(test_version1_fixture_loads_bit_for_bit),
    };
    return cmocka_run_group_tests_name("io", tests, make_dir, remove_dir);
}
