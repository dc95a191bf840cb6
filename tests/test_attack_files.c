/* test_attack_files.c -- every kind of path against every call that takes
 * one. test_paths tries the kinds on wm_net_save and wm_net_load; here the
 * same kinds go through the checkpoint calls (wm_optimizer_save,
 * wm_optimizer_load) and wm_net_load_custom too, and a real write failure
 * from the kernel (RLIMIT_FSIZE: EFBIG, as a full disk gives ENOSPC) hits
 * both saves. Each refused call: WM_EIO or WM_EINVAL with a message, *out
 * untouched, an existing file unchanged, no temporary file left behind. */
#define _DEFAULT_SOURCE  /* mkdtemp, symlink */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

static char dir[] = "/tmp/wm_attack_files_XXXXXX";

static const char *P(const char *name)
{
    static char ring[8][512];
    static int next;
    char *buf = ring[next++ % 8];
    snprintf(buf, sizeof ring[0], "%s/%s", dir, name);
    return buf;
}

static const char *name_of_length(int n)
{
    char name[300];
    memset(name, 'q', (size_t)n);
    memcpy(name + n - 4, ".wmn", 4);
    name[n] = 0;
    return P(name);
}

static int debris(void)
{
    DIR *dd = opendir(dir);
    assert_non_null(dd);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(dd)) != NULL)
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(dd);
    return n;
}

static void expect_msg_nonempty(void) { assert_true(strlen(wm_last_error()) > 0); }

static wm_net *small_net(void)
{
    wm_manifold *m = tu_manifold("circle");
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 3, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(net, 4, WM_ACT_TANH));
    WM_OK_OR_FAIL(wm_net_dense(net, 3, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(net, 2));
    wm_manifold_free(m);
    return net;
}

static void cubic(const float *s, float *c, void *user)
{
    (void)user;
    c[0] = 1, c[1] = s[0], c[2] = s[0] * s[0];
}

static wm_net *const UNTOUCHED_NET = (wm_net *)dir;
static wm_optimizer *const UNTOUCHED_OPT = (wm_optimizer *)(dir + 1);

/* Every load call on path: status want, *out (and *opt) untouched. */
static void expect_loads(const char *path, wm_status want)
{
    wm_net *out = UNTOUCHED_NET;
    wm_optimizer *oo = UNTOUCHED_OPT;
    wm_status st[3];
    st[0] = wm_net_load(&out, path);
    st[1] = wm_net_load_custom(&out, path, cubic, NULL);
    st[2] = wm_optimizer_load(&oo, &out, path, NULL, NULL);
    for (int i = 0; i < 3; i++)
        if (st[i] != want)
            fail_msg("load call %d of '%.60s': %s, expected %s (%s)", i, path, wm_status_str(st[i]),
                     wm_status_str(want), wm_last_error());
    expect_msg_nonempty();
    assert_ptr_equal(out, UNTOUCHED_NET);
    assert_ptr_equal(oo, UNTOUCHED_OPT);
}

/* Both save calls on path: status want, no temporary left. */
static void expect_saves(const wm_net *net, const wm_optimizer *opt, const char *path, wm_status want)
{
    wm_status a = wm_net_save(net, path), b = wm_optimizer_save(opt, path);
    if (a != want || b != want)
        fail_msg("saving to '%.60s': %s and %s, expected %s (%s)", path, wm_status_str(a), wm_status_str(b),
                 wm_status_str(want), wm_last_error());
    expect_msg_nonempty();
    assert_int_equal(debris(), 0);
}

static void test_every_path_kind_through_every_file_call(void **state)
{
    (void)state;
    wm_net *net = small_net();
    wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
    wm_optimizer *opt;
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
    struct stat sb;

    assert_int_equal(mkdir(P("adir"), 0755), 0);
    expect_saves(net, opt, P("adir"), WM_EIO);
    expect_loads(P("adir"), WM_EIO);
    assert_int_equal(stat(P("adir"), &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));

    assert_int_equal(mkfifo(P("fifo"), 0600), 0);
    alarm(20);                                       /* a hang fails instead of blocking */
    expect_saves(net, opt, P("fifo"), WM_EIO);
    expect_loads(P("fifo"), WM_EIO);
    alarm(0);
    assert_int_equal(lstat(P("fifo"), &sb), 0);
    assert_true(S_ISFIFO(sb.st_mode));

    expect_loads("/dev/null", WM_EIO);
    expect_loads("/dev/zero", WM_EIO);
    expect_loads("/proc/self/status", WM_EFORMAT);   /* regular, size 0 in stat, not a model */

    assert_int_equal(symlink("loop-b", P("loop-a")), 0);
    assert_int_equal(symlink("loop-a", P("loop-b")), 0);
    expect_saves(net, opt, P("loop-a"), WM_EIO);
    expect_loads(P("loop-a"), WM_EIO);
    assert_int_equal(symlink("nothing-here", P("dangling")), 0);
    expect_loads(P("dangling"), WM_EIO);

    expect_saves(net, opt, P("no-such-dir/x.wmn"), WM_EIO);
    expect_loads(P("no-such-dir/x.wmn"), WM_EIO);
    expect_saves(net, opt, P("no-such-dir/"), WM_EIO);
    expect_saves(net, opt, "", WM_EINVAL);
    expect_loads("", WM_EINVAL);

    /* NAME_MAX: 255 bytes save and load through every call, 256 do not */
    const char *p255 = name_of_length(255);
    WM_OK_OR_FAIL(wm_optimizer_save(opt, p255));
    wm_net *back;
    wm_optimizer *oback;
    WM_OK_OR_FAIL(wm_optimizer_load(&oback, &back, p255, NULL, NULL));
    wm_optimizer_free(oback);
    wm_net_free(back);
    WM_OK_OR_FAIL(wm_net_save(net, p255));
    WM_OK_OR_FAIL(wm_net_load(&back, p255));
    wm_net_free(back);
    assert_int_equal(unlink(p255), 0);
    expect_saves(net, opt, name_of_length(256), WM_EIO);
    expect_loads(name_of_length(256), WM_EIO);

    /* a plain model is not a checkpoint; a built-in manifold ignores a callback */
    WM_OK_OR_FAIL(wm_net_save(net, P("plain.wmn")));
    wm_net *out = UNTOUCHED_NET;
    wm_optimizer *oo = UNTOUCHED_OPT;
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_load(&oo, &out, P("plain.wmn"), NULL, NULL));
    assert_ptr_equal(out, UNTOUCHED_NET);
    assert_ptr_equal(oo, UNTOUCHED_OPT);
    WM_OK_OR_FAIL(wm_net_load_custom(&out, P("plain.wmn"), cubic, NULL));   /* callback unused */
    wm_net_free(out);
    assert_int_equal(debris(), 0);
    wm_optimizer_free(opt);
    wm_net_free(net);
}

/* The kernel refuses the write itself: a file size limit below the model's
 * size (EFBIG; SIGXFSZ ignored, as a host that sets such a limit does). The
 * save fails with WM_EIO naming the reason, the old file is intact, and no
 * temporary is left. Checked for wm_net_save and wm_optimizer_save. */
static void test_write_refused_by_the_kernel(void **state)
{
    (void)state;
    wm_net *net = small_net();
    wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
    wm_optimizer *opt;
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
    void *buf;
    size_t len;
    WM_OK_OR_FAIL(wm_net_save_buffer(net, &buf, &len));
    const char *path = P("old.wmn");
    tu_write_file(path, "old", 3);
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    const rlim_t limits[] = {0, 1, 64, (rlim_t)len - 1};
    for (int i = 0; i < 4; i++) {
        struct rlimit lim = {limits[i], old.rlim_max};
        if (setrlimit(RLIMIT_FSIZE, &lim) != 0)
            skip();
        wm_status a = wm_net_save(net, path), b = wm_optimizer_save(opt, path);
        setrlimit(RLIMIT_FSIZE, &old);
        if (a != WM_EIO || b != WM_EIO)
            fail_msg("limit %lu: %s and %s (%s)", (unsigned long)limits[i], wm_status_str(a), wm_status_str(b),
                     wm_last_error());
        expect_msg_nonempty();
        size_t n;
        unsigned char *now = tu_read_file(path, &n);
        assert_true(n == 3 && memcmp(now, "old", 3) == 0);
        free(now);
        assert_int_equal(debris(), 0);
    }
    signal(SIGXFSZ, prev);
    WM_OK_OR_FAIL(wm_net_save(net, path));                /* and without the limit it works */
    size_t n;
    unsigned char *now = tu_read_file(path, &n);
    assert_true(n == len && memcmp(now, buf, len) == 0);
    free(now);
    wm_free(buf);
    wm_optimizer_free(opt);
    wm_net_free(net);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_path_kind_through_every_file_call),
        cmocka_unit_test(test_write_refused_by_the_kernel),
    };
    return cmocka_run_group_tests_name("attack_files", tests, setup, teardown);
}
