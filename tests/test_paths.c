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

enum { W_PASS, W_ZERO, W_ENOSPC, W_SHORT };
static _Thread_local int w_mode;       /* W_ZERO / W_ENOSPC once w_budget bytes are written */
static _Thread_local long w_budget;
static _Thread_local int w_flip;
enum { R_PASS, R_SHRINK, R_EIO };
static _Thread_local int r_mode;       /* at the first read: shrink r_path to r_cut, or fail */
static _Thread_local long r_cut;
static _Thread_local const char *r_path;

ssize_t write(int fd, const void *buf, size_t n)
{
    if (w_mode == W_ZERO || w_mode == W_ENOSPC) {
        if (w_budget <= 0) {
            errno = w_mode == W_ZERO ? 0 : ENOSPC;
            return w_mode == W_ZERO ? 0 : -1;
        }
        if ((long)n > w_budget)
            n = (size_t)w_budget;
        ssize_t k = (ssize_t)syscall(SYS_write, fd, buf, n);
        if (k > 0)
            w_budget -= k;
        return k;
    }
    if (w_mode == W_SHORT) {           /* EINTR every other call, else at most 7 bytes */
        if ((w_flip ^= 1) != 0) {
            errno = EINTR;
            return -1;
        }
        n = n > 7 ? 7 : n;
    }
    return (ssize_t)syscall(SYS_write, fd, buf, n);
}

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

static int same_file(const char *p, const void *b, size_t len)
{
    size_t n;
    unsigned char *now = tu_read_file(p, &n);
    int same = n == len && memcmp(now, b, len) == 0;
    free(now);
    return same;
}

/* Temporary files ("*.tmp.*") left in d. */
static int debris(const char *d)
{
    DIR *dd = opendir(d);
    assert_non_null(dd);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(dd)) != NULL)
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(dd);
    return n;
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

static mode_t mode_of(const char *p)
{
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    return sb.st_mode & 07777;
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

/* ---- saving: every kind of path, the modes, symbolic links ----------------------- */

/* A failing save: want, a message containing needle, no temporary left. */
static void expect_save(const wm_net *net, const char *path, wm_status want, const char *needle)
{
    wm_status st = wm_net_save(net, path);
    if (st != want)
        fail_msg("saving to %.80s: %s, expected %s (%s)", path, wm_status_str(st), wm_status_str(want),
                 wm_last_error());
    if (needle)
        expect_msg(needle);
    assert_int_equal(debris(dir), 0);
}

static void test_save_every_path_kind(void **state)
{
    (void)state;
    wm_net *net = small_net(2, WM_LOSS_SOFTMAX_CE, 2), *back = NULL;
    void *buf;
    size_t len;
    WM_OK_OR_FAIL(wm_net_save_buffer(net, &buf, &len));
    struct stat sb;

    /* a directory, a FIFO, a device: refused, and still what they were */
    assert_int_equal(mkdir(P("adir"), 0755), 0);
    expect_save(net, P("adir"), WM_EIO, "directory");
    assert_int_equal(stat(P("adir"), &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(mkfifo(P("fifo"), 0600), 0);
    alarm(20);
    expect_save(net, P("fifo"), WM_EIO, "FIFO");
    alarm(0);
    assert_int_equal(lstat(P("fifo"), &sb), 0);
    assert_true(S_ISFIFO(sb.st_mode));
    /* a pipe reached through /proc/self/fd (as /dev/stdout is): refused as a FIFO */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    char through_proc[64];
    snprintf(through_proc, sizeof through_proc, "/proc/self/fd/%d", fds[1]);
    if (access(through_proc, F_OK) == 0)
        expect_save(net, through_proc, WM_EIO, "FIFO");
    close(fds[0]), close(fds[1]);
    /* a copy of /dev/full (same device numbers), never the system's own */
    if (mknod(P("full"), S_IFCHR | 0666, makedev(1, 7)) == 0) {
        expect_save(net, P("full"), WM_EIO, "device");
        assert_int_equal(lstat(P("full"), &sb), 0);
        assert_true(S_ISCHR(sb.st_mode));
    } else {
        print_message("mknod not permitted here: the device case is covered by /dev/null's load only\n");
    }

    /* names of every length up to NAME_MAX save and load; one more is refused */
    for (int n = 240; n <= 255; n++) {
        const char *p = name_of_length(n, 'a' + (char)(n % 26));
        WM_OK_OR_FAIL(wm_net_save(net, p));
        assert_true(same_file(p, buf, len));
        WM_OK_OR_FAIL(wm_net_load(&back, p));
        wm_net_free(back);
        assert_int_equal(unlink(p), 0);
    }
    expect_save(net, name_of_length(256, 'z'), WM_EIO, strerror(ENAMETOOLONG));

    expect_save(net, "", WM_EINVAL, "empty");
    expect_save(net, P("no-such-dir/x.wmn"), WM_EIO, strerror(ENOENT));
    expect_save(net, P("no-such-dir/"), WM_EIO, NULL);
    {   /* a 3800-byte path: the message keeps its reason */
        char *p = malloc(8192);
        int n = snprintf(p, 8192, "%s/no-such-dir/", dir);
        for (int i = 0; i < 1880; i++)
            n += snprintf(p + n, 8192 - (size_t)n, "./");
        snprintf(p + n, 8192 - (size_t)n, "x.wmn");
        expect_save(net, p, WM_EIO, strerror(ENOENT));
        free(p);
    }
    /* a directory the caller cannot write: root can write a mode-0555 one, not /proc */
    if (geteuid() != 0) {
        assert_int_equal(mkdir(P("ro"), 0555), 0);
        expect_save(net, P("ro/x.wmn"), WM_EIO, strerror(EACCES));
        assert_int_equal(rmdir(P("ro")), 0);
    } else {
        expect_save(net, "/proc/wm_test_paths.wmn", WM_EIO, "cannot save");
    }

    free(buf);
    wm_net_free(net);
}

static void test_saved_file_modes(void **state)
{
    (void)state;
    wm_net *net = small_net(2, WM_LOSS_SOFTMAX_CE, 3);
    mode_t old = umask(022);
    const mode_t masks[] = {022, 077, 0, 027};
    for (int i = 0; i < 4; i++) {       /* new files: 0666 less the umask */
        umask(masks[i]);
        const char *p = P("new.wmn");
        unlink(p);
        WM_OK_OR_FAIL(wm_net_save(net, p));
        assert_int_equal(mode_of(p), 0666 & ~masks[i]);
    }
    umask(077);
    const mode_t kept[] = {0644, 0600, 0640, 0444, 0664};
    for (int i = 0; i < 5; i++) {       /* replaced files keep their mode, whatever the umask */
        const char *p = P("old.wmn");
        unlink(p);
        tu_write_file(p, "x", 1);
        assert_int_equal(chmod(p, kept[i]), 0);
        WM_OK_OR_FAIL(wm_net_save(net, p));
        assert_int_equal(mode_of(p), kept[i]);
        wm_net *back = NULL;
        WM_OK_OR_FAIL(wm_net_load(&back, p));
        wm_net_free(back);
    }
    umask(old);
    assert_int_equal(debris(dir), 0);
    wm_net_free(net);
}

static void test_save_through_symlinks(void **state)
{
    (void)state;
    wm_net *a = small_net(2, WM_LOSS_SOFTMAX_CE, 4), *b = small_net(2, WM_LOSS_SOFTMAX_CE, 5), *back;
    void *bufb;
    size_t lenb;
    WM_OK_OR_FAIL(wm_net_save_buffer(b, &bufb, &lenb));
    char target[PATH_MAX];

    /* a relative link: the target is replaced, keeps its mode, the link stays */
    WM_OK_OR_FAIL(wm_net_save(a, P("real.wmn")));
    assert_int_equal(chmod(P("real.wmn"), 0640), 0);
    assert_int_equal(symlink("real.wmn", P("link.wmn")), 0);
    WM_OK_OR_FAIL(wm_net_save(b, P("link.wmn")));
    ssize_t k = readlink(P("link.wmn"), target, sizeof target - 1);
    assert_true(k > 0);
    target[k] = 0;
    assert_string_equal(target, "real.wmn");
    assert_true(same_file(P("real.wmn"), bufb, lenb));
    assert_int_equal(mode_of(P("real.wmn")), 0640);

    /* a chain of two links into another directory: written beside the final file */
    assert_int_equal(mkdir(P("sub"), 0755), 0);
    WM_OK_OR_FAIL(wm_net_save(a, P("sub/deep.wmn")));
    assert_int_equal(symlink("sub/deep.wmn", P("hop2.wmn")), 0);
    assert_int_equal(symlink(P("hop2.wmn"), P("hop1.wmn")), 0);   /* absolute */
    WM_OK_OR_FAIL(wm_net_save(b, P("hop1.wmn")));
    assert_true(same_file(P("sub/deep.wmn"), bufb, lenb));
    struct stat sb;
    assert_int_equal(lstat(P("hop1.wmn"), &sb), 0);
    assert_true(S_ISLNK(sb.st_mode));
    assert_int_equal(lstat(P("hop2.wmn"), &sb), 0);
    assert_true(S_ISLNK(sb.st_mode));
    assert_int_equal(debris(P("sub")), 0);

    /* a dangling link: its target is created, the link stays */
    assert_int_equal(symlink("created.wmn", P("dangling.wmn")), 0);
    WM_OK_OR_FAIL(wm_net_save(b, P("dangling.wmn")));
    assert_int_equal(lstat(P("dangling.wmn"), &sb), 0);
    assert_true(S_ISLNK(sb.st_mode));
    assert_true(same_file(P("created.wmn"), bufb, lenb));
    WM_OK_OR_FAIL(wm_net_load(&back, P("dangling.wmn")));
    assert_true(same_params(b, back));
    wm_net_free(back);

    /* a link to a directory or a FIFO, and a loop: refused, links untouched */
    assert_int_equal(symlink("sub", P("to-dir.wmn")), 0);
    expect_save(b, P("to-dir.wmn"), WM_EIO, "directory");
    assert_int_equal(mkfifo(P("fifo2"), 0600), 0);
    assert_int_equal(symlink("fifo2", P("to-fifo.wmn")), 0);
    expect_save(b, P("to-fifo.wmn"), WM_EIO, "FIFO");
    assert_int_equal(symlink("loop-b", P("loop-a")), 0);
    assert_int_equal(symlink("loop-a", P("loop-b")), 0);
    expect_save(b, P("loop-a"), WM_EIO, "symbolic link");
    assert_int_equal(lstat(P("loop-a"), &sb), 0);
    assert_true(S_ISLNK(sb.st_mode));
    assert_int_equal(debris(dir), 0);

    free(bufb);
    wm_net_free(a), wm_net_free(b);
}

/* ---- write() failing, returning 0, writing short ----------------------------------- */

static void test_failing_writes_keep_the_old_file(void **state)
{
    (void)state;
    wm_net *a = small_net(2, WM_LOSS_SOFTMAX_CE, 6), *b = small_net(2, WM_LOSS_SOFTMAX_CE, 7);
    const char *p = P("model.wmn");
    WM_OK_OR_FAIL(wm_net_save(a, p));
    size_t len0, lenb;
    unsigned char *old = tu_read_file(p, &len0);
    void *bufb;
    WM_OK_OR_FAIL(wm_net_save_buffer(b, &bufb, &lenb));
    const long cuts[] = {0, 1, 4, (long)lenb / 2, (long)lenb - 1};
    for (int mode = W_ZERO; mode <= W_ENOSPC; mode++)
        for (int i = 0; i < 5; i++) {
            w_mode = mode, w_budget = cuts[i];
            wm_status st = wm_net_save(b, p);
            w_mode = W_PASS;
            if (st != WM_EIO)
                fail_msg("write %s after %ld of %zu bytes: %s (%s)", mode == W_ZERO ? "returning 0" : "ENOSPC",
                         cuts[i], lenb, wm_status_str(st), wm_last_error());
            expect_msg(mode == W_ZERO ? "wrote nothing" : strerror(ENOSPC));
            assert_true(same_file(p, old, len0));
            assert_int_equal(debris(dir), 0);
        }
    /* interrupted and short writes are retried until every byte is written */
    w_mode = W_SHORT;
    wm_status st = wm_net_save(b, p);
    w_mode = W_PASS;
    WM_OK_OR_FAIL(st);
    assert_true(same_file(p, bufb, lenb));
    free(old), free(bufb);
    wm_net_free(a), wm_net_free(b);
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
        tu_write_file(p, buf, len);
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
    tu_write_file(p, buf, len);              /* a read error is an I/O error */
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
            tu_write_file(p, buf, cut);
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
    {   /* a checkpoint, cut at every length, through wm_optimizer_load */
        wm_net *net = small_net(2, WM_LOSS_SOFTMAX_CE, 15), *nb;
        wm_optimizer *opt, *ob;
        wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
        WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
        WM_OK_OR_FAIL(wm_optimizer_save(opt, P("ckpt.wmn")));
        size_t len;
        unsigned char *ck = tu_read_file(P("ckpt.wmn"), &len);
        for (size_t cut = 0; cut < len; cut++) {
            tu_write_file(p, ck, cut);
            nb = UNTOUCHED, ob = (wm_optimizer *)UNTOUCHED;
            wm_status st = wm_optimizer_load(&ob, &nb, p, NULL, NULL);
            if (st != WM_EFORMAT)
                fail_msg("a checkpoint cut to %zu of %zu bytes: %s (%s)", cut, len, wm_status_str(st),
                         wm_last_error());
            assert_ptr_equal(nb, UNTOUCHED);
            assert_ptr_equal(ob, (wm_optimizer *)UNTOUCHED);
            loads++;
        }
        free(ck);
        wm_optimizer_free(opt);
        wm_net_free(net);
    }
    print_message("%ld truncated or altered models rejected with WM_EFORMAT\n", loads);
}

/* The u32 at off set to v, and the CRC made valid again. */
static void set_field(unsigned char *b, size_t len, size_t off, uint32_t v)
{
    b[off] = (unsigned char)v, b[off + 1] = (unsigned char)(v >> 8);
    b[off + 2] = (unsigned char)(v >> 16), b[off + 3] = (unsigned char)(v >> 24);
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < len - 4; i++) {
        crc ^= b[i];
        for (int j = 0; j < 8; j++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    crc = ~crc;
    b[len - 4] = (unsigned char)crc, b[len - 3] = (unsigned char)(crc >> 8);
    b[len - 2] = (unsigned char)(crc >> 16), b[len - 1] = (unsigned char)(crc >> 24);
}

/* ---- every header field at edge values: WM_OK or WM_EFORMAT, never another ------- */

static void test_every_field_is_format_error(void **state)
{
    (void)state;
    wm_manifold *bs = tu_manifold("bspline"), *torus = tu_manifold("torus");
    wm_net *nets[4] = {small_net(1, WM_LOSS_MSE, 11), conv_net(), NULL, NULL};
    WM_OK_OR_FAIL(wm_net_create(&nets[2], bs, 3, WM_COND_CONCAT));
    WM_OK_OR_FAIL(wm_net_dense(nets[2], 2, WM_ACT_SIGMOID));
    WM_OK_OR_FAIL(wm_net_init(nets[2], 12));
    WM_OK_OR_FAIL(wm_net_create(&nets[3], torus, 2, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(nets[3], 3, WM_ACT_RELU));
    WM_OK_OR_FAIL(wm_net_dense(nets[3], 1, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_set_loss(nets[3], WM_LOSS_MSE));
    WM_OK_OR_FAIL(wm_net_init(nets[3], 13));
    long tried = 0, loaded = 0;
    for (int k = 0; k < 4; k++) {
        unsigned char *good, *b;
        size_t len;
        WM_OK_OR_FAIL(wm_net_save_buffer(nets[k], (void **)&good, &len));
        wm_layout L;
        assert_int_equal(wl_parse(good, len, &L), 0);
        b = malloc(len);
        for (size_t off = 4; off + 4 <= L.params; off += 4) {
            uint32_t orig = wl_u32(good + off);
            const uint32_t edges[] = {0, 1, 2, 3, 4, 5, 7, 16, 17, 31, 32, 128, 129, 1024, 1025,
                                      1u << 24, (1u << 24) + 1, 0x7FFFFFFFu, 0x80000000u, 0xFFFFFFFFu,
                                      orig + 1, orig - 1, orig ^ 0x100};
            for (size_t e = 0; e < sizeof edges / sizeof edges[0]; e++) {
                if (edges[e] == orig)
                    continue;
                memcpy(b, good, len);
                set_field(b, len, off, edges[e]);
                wm_net *out = UNTOUCHED;
                wm_status st = wm_net_load_buffer(&out, b, len);
                tried++;
                if (st == WM_OK) {
                    loaded++;
                    wm_net_free(out);
                    continue;
                }
                if (st == WM_EINVAL && strstr(wm_last_error(), "custom manifold: load it with"))
                    continue;           /* a field made it a custom manifold: documented */
                if (st != WM_EFORMAT)
                    fail_msg("net %d, the u32 at byte %zu = %u (was %u): %s, not WM_EFORMAT (%s)", k, off,
                             edges[e], orig, wm_status_str(st), wm_last_error());
                expect_msg("the model buffer");
                assert_ptr_equal(out, UNTOUCHED);
            }
        }
        /* the reviewer's case: softmax cross-entropy declared on a 1-output net */
        if (k == 0) {
            memcpy(b, good, len);
            set_field(b, len, L.loss, 0);
            tu_write_file(P("softmax1.wmn"), b, len);
            expect_load(P("softmax1.wmn"), WM_EFORMAT, "loss");
            expect_msg("softmax1.wmn");
        }
        free(b);
        wm_free(good);
        wm_net_free(nets[k]);
    }
    print_message("%ld single-field edits with a valid CRC: %ld loaded, the rest WM_EFORMAT\n", tried, loaded);
    wm_manifold_free(bs), wm_manifold_free(torus);
}

/* ---- basis callbacks that do not fit the file ----------------------------------------- */

static void basis_lin(const float *s, float *c, void *u) { (void)u; c[0] = 1, c[1] = s[0]; }
static void basis_cube(const float *s, float *c, void *u) { (void)u; c[0] = 1, c[1] = s[0] * s[0] * s[0]; }
static void basis_quad3(const float *s, float *c, void *u) { (void)u; c[0] = 1, c[1] = s[0], c[2] = s[0] * s[0]; }
static void basis_four(const float *s, float *c, void *u)
{
    basis_quad3(s, c, u);
    c[3] = s[0] * s[0] * s[0];
}

static wm_net *net_on(wm_manifold *m)
{
    wm_net *net;
    WM_OK_OR_FAIL(wm_net_create(&net, m, 2, WM_COND_MANIFOLD));
    WM_OK_OR_FAIL(wm_net_dense(net, 2, WM_ACT_NONE));
    WM_OK_OR_FAIL(wm_net_init(net, 14));
    size_t np = wm_net_n_params(net);
    float *q = malloc(np * sizeof *q);
    uint64_t st = 3;
    tu_fill(q, np, -1, 1, &st);
    WM_OK_OR_FAIL(wm_net_set_params(net, q, np));
    free(q);
    return net;
}

static void test_custom_callbacks_that_do_not_fit(void **state)
{
    (void)state;
    wm_manifold *ca, *cb, *prod, *line, *mixed, *c3;
    WM_OK_OR_FAIL(wm_manifold_custom(&ca, 1, 2, NULL, basis_lin, NULL));
    WM_OK_OR_FAIL(wm_manifold_custom(&cb, 1, 2, NULL, basis_cube, NULL));
    WM_OK_OR_FAIL(wm_manifold_product(&prod, ca, cb));
    WM_OK_OR_FAIL(wm_manifold_line(&line));
    WM_OK_OR_FAIL(wm_manifold_product(&mixed, line, cb));
    WM_OK_OR_FAIL(wm_manifold_custom(&c3, 1, 3, NULL, basis_quad3, NULL));

    /* two different custom bases, one callback: refused, never a different net */
    wm_net *net = net_on(prod), *out;
    void *buf;
    size_t len;
    WM_OK_OR_FAIL(wm_net_save(net, P("two-custom.wmn")));
    WM_OK_OR_FAIL(wm_net_save_buffer(net, &buf, &len));
    const wm_basis_fn fns[2] = {basis_lin, basis_cube};
    for (int i = 0; i < 2; i++) {
        out = UNTOUCHED;
        EXPECT_STATUS(WM_EINVAL, wm_net_load_custom(&out, P("two-custom.wmn"), fns[i], NULL));
        expect_msg("more than one custom factor");
        assert_ptr_equal(out, UNTOUCHED);
        EXPECT_STATUS(WM_EINVAL, wm_net_load_buffer_custom(&out, buf, len, fns[i], NULL));
        expect_msg("more than one custom factor");
        assert_ptr_equal(out, UNTOUCHED);
    }
    wm_optimizer *opt;
    wm_opt_config cfg = wm_opt_default(WM_OPT_SD);
    WM_OK_OR_FAIL(wm_optimizer_create(&opt, net, &cfg));
    WM_OK_OR_FAIL(wm_optimizer_save(opt, P("two-custom-ckpt.wmn")));
    wm_optimizer *oback = (wm_optimizer *)UNTOUCHED;
    out = UNTOUCHED;
    EXPECT_STATUS(WM_EINVAL, wm_optimizer_load(&oback, &out, P("two-custom-ckpt.wmn"), basis_lin, NULL));
    assert_ptr_equal(out, UNTOUCHED);
    wm_optimizer_free(opt);
    wm_free(buf);
    wm_net_free(net);

    /* one custom factor in a product still loads, with the same outputs */
    net = net_on(mixed);
    WM_OK_OR_FAIL(wm_net_save(net, P("one-custom.wmn")));
    out = NULL;
    WM_OK_OR_FAIL(wm_net_load_custom(&out, P("one-custom.wmn"), basis_cube, NULL));
    float x[4] = {0.3f, -0.2f, 0.9f, 0.1f}, s[4] = {0.1f, 0.7f, 0.6f, 0.2f}, y1[4], y2[4];
    WM_OK_OR_FAIL(wm_infer(net, x, s, 2, y1));
    WM_OK_OR_FAIL(wm_infer(out, x, s, 2, y2));
    assert_memory_equal(y1, y2, sizeof y1);
    wm_net_free(out);
    wm_net_free(net);

    /* a callback writing fewer or more values than the file's K = 3 */
    net = net_on(c3);
    WM_OK_OR_FAIL(wm_net_save(net, P("k3.wmn")));
    WM_OK_OR_FAIL(wm_net_save_buffer(net, &buf, &len));
    out = UNTOUCHED;
    EXPECT_STATUS(WM_EINVAL, wm_net_load_custom(&out, P("k3.wmn"), basis_lin, NULL));
    expect_msg("K = 3");
    EXPECT_STATUS(WM_EINVAL, wm_net_load_custom(&out, P("k3.wmn"), basis_four, NULL));
    expect_msg("K = 3");
    EXPECT_STATUS(WM_EINVAL, wm_net_load_buffer_custom(&out, buf, len, basis_lin, NULL));
    assert_ptr_equal(out, UNTOUCHED);
    WM_OK_OR_FAIL(wm_net_load_custom(&out, P("k3.wmn"), basis_quad3, NULL));
    assert_true(same_params(net, out));
    wm_net_free(out);
    WM_OK_OR_FAIL(wm_net_load_buffer_custom(&out, buf, len, basis_quad3, NULL));
    assert_true(same_params(net, out));
    wm_net_free(out);
    wm_free(buf);
    wm_net_free(net);

    wm_manifold_free(ca), wm_manifold_free(cb), wm_manifold_free(prod);
    wm_manifold_free(line), wm_manifold_free(mixed), wm_manifold_free(c3);
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
        cmocka_unit_test_setup(test_save_every_path_kind, empty_dir),
        cmocka_unit_test_setup(test_saved_file_modes, empty_dir),
        cmocka_unit_test_setup(test_save_through_symlinks, empty_dir),
        cmocka_unit_test_setup(test_failing_writes_keep_the_old_file, empty_dir),
        cmocka_unit_test_setup(test_file_shrinking_while_loading, empty_dir),
        cmocka_unit_test_setup(test_every_truncation_and_byte, empty_dir),
        cmocka_unit_test_setup(test_every_field_is_format_error, empty_dir),
        cmocka_unit_test_setup(test_custom_callbacks_that_do_not_fit, empty_dir),
    };
    return cmocka_run_group_tests_name("paths", tests, make_dir, remove_dir);
}
