/* test_coverage.c -- every check of the model loader behind the checksum,
 * one corrupted field at a time (with the CRC recomputed so the check itself
 * is reached), plus the remaining argument checks of the file calls and the
 * status strings. Each rejection must be WM_EFORMAT (WM_EINVAL where the
 * header says so), name the file, say what is wrong, and leave *out alone.
 * Field offsets follow docs/model-format.md (tests/fuzz/model_layout.h). */
#include <unistd.h>

#include "testutil.h"
#include "fuzz/model_layout.h"

static char dir[] = "/tmp/wm_test_coverage_XXXXXX";

static const char *path_in_dir(const char *name)
{
    static char ring[8][256];
    static int next;
    char *buf = ring[next++ % 8];
    snprintf(buf, 256, "%s/%s", dir, name);
    return buf;
}

static uint32_t crc32_ref(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v, p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16), p[3] = (unsigned char)(v >> 24);
}

static void fix_crc(unsigned char *buf, size_t len) { put_u32(buf + len - 4, crc32_ref(buf, len - 4)); }

static void cubic(const float *s, float *c, void *user)
{
    (void)user;
    c[0] = 1, c[1] = s[0], c[2] = s[0] * s[0];
}

/* A saved model (or checkpoint) of a small net on m; returns its bytes. */
static unsigned char *saved(wm_manifold *m, int checkpoint, const char *name, size_t *len)
{
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 3, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(net, 4, WM_ACT_RELU));
    WM_OK_OR_FAIL(wm_net_dense(net, 2, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(net, 5));
    const char *p = path_in_dir(name);
    if (checkpoint) {
        wm_optimizer *opt;
        wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
        WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
        float x[6] = {0.1f, 0.2f, 0.3f, -0.4f, 0.5f, -0.6f}, s[4] = {0.2f, 0.4f, 0.6f, 0.8f};
        int32_t y[2] = {0, 1};
        wm_batch b = {2, x, s, y, NULL};
        WM_OK_OR_FAIL(wm_step(opt, &b, NULL));
        WM_OK_OR_FAIL(wm_optimizer_save(opt, p));
        wm_optimizer_free(opt);
    } else {
        WM_OK_OR_FAIL(wm_net_save(net, p));
    }
    wm_net_free(net);
    return tu_read_file(p, len);
}

typedef enum { LOAD_NET, LOAD_CUSTOM, LOAD_OPT } loader;

/* Write buf, load it with `how`, expect `want` and a message naming the file
 * and containing `needle`; *out must stay untouched. */
static void expect_rejected(const unsigned char *buf, size_t len, loader how, wm_status want,
                            const char *needle, const char *what)
{
    const char *p = path_in_dir("bad.wmn");
    tu_write_file(p, buf, len);
    wm_net *net = (wm_net *)&dir;
    wm_optimizer *opt = (wm_optimizer *)&dir;
    wm_status st = how == LOAD_NET      ? wm_net_load(&net, p)
                   : how == LOAD_CUSTOM ? wm_net_load_custom(&net, p, cubic, NULL)
                                        : wm_optimizer_load(&opt, &net, p, NULL, NULL);
    if (st != want)
        fail_msg("%s: %s, expected %s (%s)", what, wm_status_str(st), wm_status_str(want), wm_last_error());
    if (!strstr(wm_last_error(), needle))
        fail_msg("%s: message '%s' does not say '%s'", what, wm_last_error(), needle);
    if (!strstr(wm_last_error(), p))
        fail_msg("%s: message '%s' does not name the file", what, wm_last_error());
    assert_ptr_equal(net, (wm_net *)&dir);
    assert_ptr_equal(opt, (wm_optimizer *)&dir);
}

/* buf with the u32 at off set to v, CRC recomputed, must be rejected. */
static void expect_field(const unsigned char *good, size_t len, size_t off, uint32_t v, loader how,
                         wm_status want, const char *needle, const char *what)
{
    assert_true(off + 4 <= len - 4);
    unsigned char *b = malloc(len);
    memcpy(b, good, len);
    put_u32(b + off, v);
    fix_crc(b, len);
    expect_rejected(b, len, how, want, needle, what);
    free(b);
}

static void test_every_loader_check(void **state)
{
    (void)state;
    wm_manifold *circle = tu_manifold("circle"), *bs = tu_manifold("bspline"), *torus = tu_manifold("torus");
    size_t len, blen, tlen, clen;
    unsigned char *m = saved(circle, 0, "circle.wmn", &len);
    unsigned char *mb = saved(bs, 0, "bspline.wmn", &blen);
    unsigned char *mt = saved(torus, 0, "torus.wmn", &tlen);
    unsigned char *ck = saved(circle, 1, "ckpt.wmn", &clen);
    wm_layout L, B, T, C;
    assert_int_equal(wl_parse(m, len, &L), 0);
    assert_int_equal(wl_parse(mb, blen, &B), 0);
    assert_int_equal(wl_parse(mt, tlen, &T), 0);
    assert_int_equal(wl_parse(ck, clen, &C), 0);
    assert_true(L.fourier_h && B.bspline_n && T.product && C.opt_moments && L.layers == 2);

    /* the untouched files load */
    wm_net *net = NULL;
    wm_optimizer *opt = NULL;
    WM_OK_OR_FAIL(wm_net_load(&net, path_in_dir("circle.wmn")));
    wm_net_free(net);
    WM_OK_OR_FAIL(wm_optimizer_load(&opt, &net, path_in_dir("ckpt.wmn"), NULL, NULL));
    wm_optimizer_free(opt);
    wm_net_free(net);

    expect_field(m, len, L.version, 0, LOAD_NET, WM_EFORMAT, "version", "version 0");
    {   /* stale CRC */
        unsigned char *b = malloc(len);
        memcpy(b, m, len);
        b[L.params + 1] ^= 0x20;
        expect_rejected(b, len, LOAD_NET, WM_EFORMAT, "checksum", "flipped parameter bit");
        free(b);
    }
    expect_field(m, len, L.header_bytes, (uint32_t)len, LOAD_NET, WM_EFORMAT, "header longer", "header_bytes");
    expect_field(m, len, L.header_bytes, 12, LOAD_NET, WM_EFORMAT, "header length", "short header_bytes");
    expect_field(m, len, L.manifold, 77, LOAD_NET, WM_EFORMAT, "unknown manifold kind", "manifold kind");
    expect_field(m, len, L.manifold_dim, 17, LOAD_NET, WM_EFORMAT, "out of range", "manifold dim");
    expect_field(m, len, L.manifold_K, 0, LOAD_NET, WM_EFORMAT, "out of range", "K = 0");
    expect_field(m, len, L.manifold_K, 1025, LOAD_NET, WM_EFORMAT, "out of range", "K = 1025");
    expect_field(m, len, L.manifold_K, 5, LOAD_NET, WM_EFORMAT, "inconsistent manifold", "K mismatch");
    expect_field(m, len, L.manifold + 12, 0, LOAD_NET, WM_EFORMAT, "inconsistent manifold", "periodic flag");
    expect_field(m, len, L.fourier_h, 0, LOAD_NET, WM_EFORMAT, "Fourier order", "harmonics 0");
    expect_field(m, len, L.fourier_h, 600, LOAD_NET, WM_EFORMAT, "Fourier order", "harmonics 600");
    expect_field(mb, blen, B.bspline_degree, 0, LOAD_NET, WM_EFORMAT, "B-spline", "degree 0");
    expect_field(mb, blen, B.bspline_closed, 2, LOAD_NET, WM_EFORMAT, "B-spline", "closed 2");
    expect_field(mb, blen, B.bspline_n, 2, LOAD_NET, WM_EFORMAT, "B-spline", "too few control points");
    /* (the factor's own message is replaced by "manifold cannot be rebuilt") */
    expect_field(mt, tlen, T.product + 12 + 8 + 8, 2, LOAD_NET, WM_EFORMAT, "manifold",
                 "a product's factor with the wrong K");
    expect_field(m, len, L.cond, 2, LOAD_NET, WM_EFORMAT, "network description", "cond 2");
    expect_field(m, len, L.n_inputs, 0, LOAD_NET, WM_EFORMAT, "network description", "n_inputs 0");
    expect_field(m, len, L.loss, 2, LOAD_NET, WM_EFORMAT, "network description", "loss 2");
    expect_field(m, len, L.n_layers, 0, LOAD_NET, WM_EFORMAT, "network description", "no layers");
    expect_field(m, len, L.n_layers, 129, LOAD_NET, WM_EFORMAT, "network description", "129 layers");
    expect_field(m, len, L.shape, 2, LOAD_NET, WM_EFORMAT, "input shape", "shape 2x0x0 for 3 inputs");
    expect_field(m, len, L.layer[0], 9, LOAD_NET, WM_EFORMAT, "layer description", "layer kind 9");
    expect_field(m, len, L.layer[0] + 4, (1u << 24) + 1, LOAD_NET, WM_EFORMAT, "layer description",
                 "2^24 + 1 outputs");
    expect_field(m, len, L.layer[0] + 8, 4, LOAD_NET, WM_EFORMAT, "cannot be rebuilt", "activation 4");
    expect_field(m, len, L.layer[0], 2, LOAD_NET, WM_EFORMAT, "layer", "pooling without an input shape");
    expect_field(m, len, L.n_params, 7, LOAD_NET, WM_EFORMAT, "parameter count", "n_params 7");
    expect_field(m, len, L.n_params + 4, 1, LOAD_NET, WM_EFORMAT, "parameter count", "n_params 2^32 + ...");
    expect_field(m, len, L.params + 8, 0x7FC00000u, LOAD_NET, WM_EFORMAT, "not finite", "NaN parameter");
    expect_field(m, len, L.params, 0xFF800000u, LOAD_NET, WM_EFORMAT, "not finite", "-Inf parameter");
    expect_field(m, len, L.has_optimizer, 3, LOAD_NET, WM_EFORMAT, "optimizer flag", "has_optimizer 3");
    expect_field(m, len, L.has_optimizer, 2, LOAD_NET, WM_EFORMAT, "optimizer", "has_optimizer 2, no section");
    expect_field(m, len, L.has_optimizer, 1, LOAD_NET, WM_EFORMAT, "optimizer", "a missing optimizer section");
    {   /* trailing bytes after a plain model */
        unsigned char *b = malloc(len + 8);
        memcpy(b, m, len - 4);
        memset(b + len - 4, 0, 8);
        fix_crc(b, len + 4);
        expect_rejected(b, len + 4, LOAD_NET, WM_EFORMAT, "trailing", "4 trailing bytes");
        free(b);
    }
    {   /* products nested 20 deep */
        unsigned char b[16 + 21 * 12 + 64];
        size_t n = 12;
        memcpy(b, m, 8);
        for (int i = 0; i < 20; i++, n += 12)
            put_u32(b + n, 4), put_u32(b + n + 4, 0), put_u32(b + n + 8, 1);
        put_u32(b + n, 0), put_u32(b + n + 4, 0), put_u32(b + n + 8, 1), n += 12;
        put_u32(b + 8, (uint32_t)(n - 12));
        n += 4;
        fix_crc(b, n);
        /* the precise "nest too deeply" is replaced by the outer levels' message */
        expect_rejected(b, n, LOAD_NET, WM_EFORMAT, "manifold", "deep products");
    }

    /* checkpoints */
    expect_rejected(m, len, LOAD_OPT, WM_EINVAL, "without optimizer state", "a plain model as a checkpoint");
    expect_field(ck, clen, C.opt_kind, 3, LOAD_OPT, WM_EFORMAT, "optimizer description", "optimizer kind 3");
    expect_field(ck, clen, C.opt_kind, 1, LOAD_OPT, WM_EFORMAT, "wrong length", "Adam state as momentum");
    expect_field(ck, clen, C.opt_lr, 0x7FC00000u, LOAD_OPT, WM_EFORMAT, "optimizer settings", "lr NaN");
    expect_field(ck, clen, C.opt_lr + 12, 0x3F800000u, LOAD_OPT, WM_EFORMAT, "optimizer settings", "beta1 1");
    expect_field(ck, clen, C.opt_moments, 0x7F800000u, LOAD_OPT, WM_EFORMAT, "not finite", "Inf moment");
    expect_field(ck, clen, C.opt_moments + 4 * C.count, 0x7FC00000u, LOAD_OPT, WM_EFORMAT, "not finite",
                 "NaN second moment");

    free(m), free(mb), free(mt), free(ck);
    wm_manifold_free(circle), wm_manifold_free(bs), wm_manifold_free(torus);
}

static void test_custom_files(void **state)
{
    (void)state;
    wm_manifold *cu;
    WM_OK_OR_FAIL(wm_manifold_custom(&cu, 1, 3, NULL, cubic, NULL));
    size_t len;
    unsigned char *m = saved(cu, 0, "custom.wmn", &len);
    wm_layout L;
    assert_int_equal(wl_parse(m, len, &L), 0);
    assert_true(L.custom != 0);
    wm_net *net = NULL;
    WM_OK_OR_FAIL(wm_net_load_custom(&net, path_in_dir("custom.wmn"), cubic, NULL));
    wm_net_free(net);
    expect_rejected(m, len, LOAD_NET, WM_EINVAL, "wm_net_load_custom", "custom without callback");
    expect_field(m, len, L.manifold_dim, 0, LOAD_CUSTOM, WM_EFORMAT, "custom manifold dimension", "custom dim 0");
    /* the checkpoint loader takes the callback too */
    wm_optimizer *opt = NULL;
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_load(&opt, &net, path_in_dir("custom.wmn"), cubic, NULL));
    assert_non_null(strstr(wm_last_error(), "without optimizer state"));
    free(m);
    wm_manifold_free(cu);
}

static void test_file_call_arguments(void **state)
{
    (void)state;
    wm_manifold *m = tu_manifold("line");
    wm_net *net, *back = NULL;
    wm_optimizer *opt, *oback = NULL;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 2, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(net, 2, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(net, 1));
    wm_opt_config cfg = wm_opt_default(WM_OPT_MOMENTUM);
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
    const char *p = path_in_dir("args.wmn");
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_save(NULL, p));
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_save(opt, NULL));
    EXPECT_STATUS(WM_EIO, wm_optimizer_save(opt, "/nonexistent-dir/ckpt.wmn"));
    WM_OK_OR_FAIL(wm_optimizer_save(opt, p));
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_load(NULL, &back, p, NULL, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_load(&oback, NULL, p, NULL, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_load(&oback, &back, NULL, NULL, NULL));
    EXPECT_STATUS(WM_EIO, wm_optimizer_load(&oback, &back, path_in_dir("missing.wmn"), NULL, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_net_load_custom(NULL, p, cubic, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_net_load_custom(&back, NULL, cubic, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_net_load_custom(&back, p, NULL, NULL));
    EXPECT_STATUS(WM_EINVAL, wm_net_load(&back, NULL));
    assert_null(back);
    assert_null(oback);
    /* a checkpoint is also a plain model */
    WM_OK_OR_FAIL(wm_net_load(&back, p));
    size_t la, lb;
    const float *pa = wm_net_params(net, &la), *pb = wm_net_params(back, &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(pa, pb, la * sizeof(float));
    wm_net_free(back);
    wm_optimizer_free(opt);
    wm_net_free(net);
    wm_manifold_free(m);
}

static void test_status_strings(void **state)
{
    (void)state;
    const wm_status all[] = {WM_OK, WM_EINVAL, WM_ENOMEM, WM_EIO, WM_EFORMAT, WM_ENUMERIC, WM_ESTATE};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        const char *s = wm_status_str(all[i]);
        assert_non_null(s);
        assert_true(strlen(s) > 0);
        assert_string_not_equal(s, "unknown status");
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(s, wm_status_str(all[j]));
    }
    assert_string_equal(wm_status_str((wm_status)99), "unknown status");
    assert_string_equal(wm_status_str((wm_status)-1), "unknown status");
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_loader_check),
        cmocka_unit_test(test_custom_files),
        cmocka_unit_test(test_file_call_arguments),
        cmocka_unit_test(test_status_strings),
    };
    return cmocka_run_group_tests_name("coverage", tests, make_dir, remove_dir);
}
