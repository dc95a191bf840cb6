/* test_paths.c -- model files against the file system, tested like an
 * attacker (src/io.c): every kind of path a caller can pass (missing,
 * directory, FIFO, device, symbolic link, dangling link, link loop, names of
 * 245..256 bytes, empty, 3800 bytes, read-only directory), write() failing
 * or returning 0 at every point, a file shrinking while it is read, every
 * truncation through the file and the buffer loaders, every header field at
 * edge values, the modes of saved files, and basis callbacks that do not fit
 * the file.
 *
 * write() and read() are defined here, forwarding to the system calls: the
 * library is linked statically, so its calls land here, and a test arms a
 * fault for its own thread only. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "testutil.h"
#include "fuzz/model_layout.h"

/* ---- write() and read() with faults on demand -------------------------------- */

enum { R_PASS, R_SHRINK, R_EIO };
static _Thread_local int r_mode;       /* at the first read: shrink r_path to r_cut, or fail */
static _Thread_local long r_cut;
static _Thread_local const char *r_path;

ssize_t read(int fd, void *buf, size_t n)
{
    if (r_mode == R_SHRINK) {
        r_mode = R_PASS;
        if (truncate(r_path, r_cut) != 0)
            return -1;
    } else if (r_mode == R_EIO) {
        r_mode = R_PASS;
        errno = EIO;
        return -1;
    }
    return (ssize_t)syscall(SYS_read, fd, buf, n);
}

/* ---- helpers ------------------------------------------------------------------- */

static char dir[] = "/tmp/wm_test_paths_XXXXXX";

/* A path inside the test directory; each call returns its own slot of a ring. */
static const char *P(const char *name)
{
    static char ring[8][8192];
    static int next;
    char *buf = ring[next++ % 8];
    snprintf(buf, sizeof ring[0], "%s/%s", dir, name);
    return buf;
}

/* dir/<n bytes of name> */
static const char *name_of_length(int n, char fill)
{
    char name[300];
    memset(name, fill, (size_t)n);
    memcpy(name + n - 4, ".wmn", 4);
    name[n] = 0;
    return P(name);
}

static wm_net *small_net(int n_out, wm_loss loss, uint64_t seed)
{
    wm_manifold *m = tu_manifold("circle");
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 3, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(net, 4, WM_ACT_TANH));
    WM_OK_OR_FAIL(wm_net_dense(net, n_out, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_set_loss(net, loss));
    WM_OK_OR_FAIL(wm_net_init(net, seed));
    wm_manifold_free(m);
    return net;
}

static void put_file(const char *p, const void *b, size_t len)
{
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    fclose(f);
}

static int same_params(const wm_net *a, const wm_net *b)
{
    size_t la, lb;
    const float *pa = wm_net_params(a, &la), *pb = wm_net_params(b, &lb);
    return la == lb && memcmp(pa, pb, la * sizeof(float)) == 0;
}

static void expect_msg(const char *needle)
{
    if (!strstr(wm_last_error(), needle))
        fail_msg("the message '%s' does not say '%s'", wm_last_error(), needle);
}

static wm_net *const UNTOUCHED = (wm_net *)dir;

/* A failing load: want, a message containing needle, *out untouched. */
static void expect_load(const char *path, wm_status want, const char *needle)
{
    wm_net *out = UNTOUCHED;
    wm_status st = wm_net_load(&out, path);
    if (st != want)
        fail_msg("loading %.80s: %s, expected %s (%s)", path, wm_status_str(st), wm_status_str(want),
                 wm_last_error());
    if (needle)
        expect_msg(needle);
    assert_ptr_equal(out, UNTOUCHED);
}

/* ---- loading: every kind of path ------------------------------------------------- */

static void test_load_every_path_kind(void **state)
{
    (void)state;
    wm_net *net = small_net(2, WM_LOSS_SOFTMAX_CE, 1), *back = NULL;
    const char *good = P("good.wmn");
    WM_OK_OR_FAIL(wm_net_save(net, good));

    expect_load(P("missing.wmn"), WM_EIO, strerror(ENOENT));
    expect_load(dir, WM_EIO, "directory");
    assert_int_equal(mkfifo(P("fifo"), 0600), 0);
    alarm(20);                          /* a hang fails the test instead of the suite */
    expect_load(P("fifo"), WM_EIO, "FIFO");
    alarm(0);
    expect_load("/dev/null", WM_EIO, "device");
    assert_int_equal(symlink("good.wmn", P("link.wmn")), 0);
    WM_OK_OR_FAIL(wm_net_load(&back, P("link.wmn")));
    assert_true(same_params(net, back));
    wm_net_free(back);
    assert_int_equal(symlink("nothing-here.wmn", P("dangling.wmn")), 0);
    expect_load(P("dangling.wmn"), WM_EIO, strerror(ENOENT));
    assert_int_equal(symlink("loop-b", P("loop-a")), 0);
    assert_int_equal(symlink("loop-a", P("loop-b")), 0);
    expect_load(P("loop-a"), WM_EIO, strerror(ELOOP));
    expect_load("", WM_EINVAL, "empty");
    expect_load(name_of_length(256, 'n'), WM_EIO, strerror(ENAMETOOLONG));
    {   /* a 3800-byte path: the message keeps its reason and the file's name */
        char *p = malloc(8192);
        int n = snprintf(p, 8192, "%s/", dir);
        for (int i = 0; i < 1880; i++)
            n += snprintf(p + n, 8192 - (size_t)n, "./");
        snprintf(p + n, 8192 - (size_t)n, "missing.wmn");
        assert_true(strlen(p) > 3700);
        expect_load(p, WM_EIO, strerror(ENOENT));
        expect_msg("missing.wmn");
        free(p);
    }
    if (geteuid() != 0) {               /* root reads a mode-000 file anyway */
        assert_int_equal(chmod(good, 0), 0);
        expect_load(good, WM_EIO, strerror(EACCES));
        assert_int_equal(chmod(good, 0644), 0);
    }
    wm_net_free(net);
}

/* ---- a file that changes while it is read ------------------------------------------ */

static void test_file_shrinking_while_loading(void **state)
{
    (void)state;
    wm_net *net = small_net(2, WM_LOSS_SOFTMAX_CE, 8);
    void *buf;
    size_t len;
    WM_OK_OR_FAIL(wm_net_save_buffer(net, &buf, &len));
    const char *p = P("shrinking.wmn");
    const long cuts[] = {0, 1, 16, (long)len / 2, (long)len - 1};
    for (int i = 0; i < 5; i++) {
        put_file(p, buf, len);
        r_mode = R_SHRINK, r_cut = cuts[i], r_path = p;
        wm_net *out = UNTOUCHED;
        wm_status st = wm_net_load(&out, p);
        r_mode = R_PASS;
        if (st != WM_EFORMAT)
            fail_msg("a file cut to %ld of %zu bytes while loading: %s (%s)", cuts[i], len,
                     wm_status_str(st), wm_last_error());
        expect_msg("changed while being read");
        assert_ptr_equal(out, UNTOUCHED);
    }
    put_file(p, buf, len);              /* a read error is an I/O error */
    r_mode = R_EIO;
    expect_load(p, WM_EIO, strerror(EIO));
    r_mode = R_PASS;
    free(buf);
    wm_net_free(net);
}

/* ---- every truncation and every altered byte, through the file and the buffer ------ */

static wm_net *conv_net(void)
{
    wm_manifold *m = tu_manifold("line");
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 2 * 6 * 6, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_input_shape(net, 2, 6, 6));
    WM_OK_OR_FAIL(wm_net_conv2d(net, 3, 3, 1, 1, WM_ACT_RELU));
    WM_OK_OR_FAIL(wm_net_maxpool(net, 2));
    WM_OK_OR_FAIL(wm_net_dense(net, 2, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(net, 9));
    wm_manifold_free(m);
    return net;
}

static void test_every_truncation_and_byte(void **state)
{
    (void)state;
    wm_net *nets[2] = {small_net(3, WM_LOSS_MSE, 10), conv_net()};
    const char *p = P("cut.wmn");
    long loads = 0;
    for (int k = 0; k < 2; k++) {
        unsigned char *buf;
        size_t len;
        WM_OK_OR_FAIL(wm_net_save_buffer(nets[k], (void **)&buf, &len));
        for (size_t cut = 0; cut < len; cut++) {
            wm_net *out = UNTOUCHED;
            wm_status st = wm_net_load_buffer(&out, buf, cut);
            if (st != WM_EFORMAT)
                fail_msg("a buffer cut to %zu of %zu bytes: %s (%s)", cut, len, wm_status_str(st),
                         wm_last_error());
            expect_msg("the model buffer");
            assert_ptr_equal(out, UNTOUCHED);
            put_file(p, buf, cut);
            expect_load(p, WM_EFORMAT, "cut.wmn");
            loads += 2;
        }
        for (size_t pos = 0; pos < len; pos++)
            for (int bit = 0; bit < 8; bit += 3) {
                buf[pos] ^= (unsigned char)(1u << bit);
                wm_net *out = UNTOUCHED;
                EXPECT_STATUS(WM_EFORMAT, wm_net_load_buffer(&out, buf, len));
                assert_ptr_equal(out, UNTOUCHED);
                buf[pos] ^= (unsigned char)(1u << bit);
                loads++;
            }
        wm_net *back = NULL;            /* the untouched bytes load, file or buffer */
        WM_OK_OR_FAIL(wm_net_load_buffer(&back, buf, len));
        assert_true(same_params(nets[k], back));
        wm_net_free(back);
        wm_free(buf);
        wm_net_free(nets[k]);
    }
    print_message("%ld truncated or altered models rejected with WM_EFORMAT\n", loads);
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

/* Each test starts in an empty directory. */
static int empty_dir(void **state)
{
    return remove_dir(state) == 0 && mkdir(dir, 0700) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_load_every_path_kind, empty_dir),
        cmocka_unit_test_setup(test_file_shrinking_while_loading, empty_dir),
        cmocka_unit_test_setup(test_every_truncation_and_byte, empty_dir),
    };
    return cmocka_run_group_tests_name("paths", tests, make_dir, remove_dir);
}
