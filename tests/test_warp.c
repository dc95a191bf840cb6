/* test_warp.c -- the examples' image warp (examples/common.c): the tabulated,
 * branch-free ex_warp and ex_warp_table give the images of the scalar
 * definition they replaced, kept here verbatim as the reference, for many
 * angles, shifts and image sizes, edge pixels and samples outside the
 * image included. Every example that rotates or shifts images (rotation,
 * cnn_rotation, torus, which_task, resnet_rotation, mpi_rotation) calls it.
 *
 * Without FMA contraction (the default x86-64 build: no FMA instructions)
 * the new code does the reference's float operations in the same order, so
 * the images must agree to the last bit; where the compiler may contract
 * a*b+c into an FMA, to float rounding. */
#include <float.h>

#include "testutil.h"

#include "common.h"

/* The scalar warp as it was (examples/common.c before the tap tables). */
static void ref_warp(const float *src, float *dst, int rows, int cols, float angle, float dx,
                     float dy)
{
    const float cy = 0.5f * (float)(rows - 1), cx = 0.5f * (float)(cols - 1);
    const float c = cosf(angle), s = sinf(angle);
    for (int y = 0; y < rows; y++) {
        for (int x = 0; x < cols; x++) {
            float u = (float)x - cx - dx, v = (float)y - cy - dy;
            float xs = c * u - s * v + cx;
            float ys = s * u + c * v + cy;
            int x0 = (int)floorf(xs), y0 = (int)floorf(ys);
            float fx = xs - (float)x0, fy = ys - (float)y0;
            float acc = 0.0f;
            for (int j = 0; j < 2; j++) {
                int yy = y0 + j;
                if (yy < 0 || yy >= rows)
                    continue;
                float wy = j ? fy : 1.0f - fy;
                for (int i = 0; i < 2; i++) {
                    int xx = x0 + i;
                    if (xx < 0 || xx >= cols)
                        continue;
                    acc += wy * (i ? fx : 1.0f - fx) * src[yy * cols + xx];
                }
            }
            dst[y * cols + x] = acc;
        }
    }
}

#ifdef __FP_FAST_FMAF
#define EXACT 0 /* a*b+c may be contracted differently in the two copies */
#else
#define EXACT 1
#endif

/* got against want, pixel by pixel: identical (EXACT), or within a few
 * roundings of the four taps' magnitude. */
static void assert_same_image(const float *got, const float *want, const float *src, int rows,
                              int cols, float angle, float dx, float dy, const char *what)
{
    float amax = 0.0f;
    for (int i = 0; i < rows * cols; i++)
        amax = fmaxf(amax, fabsf(src[i]));
    for (int i = 0; i < rows * cols; i++) {
        float d = fabsf(got[i] - want[i]);
        int ok = EXACT ? got[i] == want[i] : d <= 8.0f * FLT_EPSILON * amax;
        if (!ok)
            fail_msg("%s: %dx%d angle %.9g dx %.9g dy %.9g: pixel (%d,%d) = %.9g, scalar %.9g",
                     what, rows, cols, (double)angle, (double)dx, (double)dy, i / cols, i % cols,
                     (double)got[i], (double)want[i]);
    }
}

/* Both new paths against the reference for one image and one warp. */
static void check_one(const float *src, int rows, int cols, float angle, float dx, float dy,
                      long *n_nonzero)
{
    size_t n = (size_t)rows * cols;
    float *want = malloc(n * sizeof *want), *got = malloc(n * sizeof *got);
    assert_non_null(want);
    assert_non_null(got);
    ref_warp(src, want, rows, cols, angle, dx, dy);
    for (size_t i = 0; i < n; i++)
        got[i] = NAN;
    ex_warp(src, got, rows, cols, angle, dx, dy);
    assert_same_image(got, want, src, rows, cols, angle, dx, dy, "ex_warp");
    ex_warp_table t = {0};
    assert_int_equal(ex_warp_table_init(&t, rows, cols, angle, dx, dy), 0);
    for (size_t i = 0; i < n; i++)
        got[i] = NAN;
    ex_warp_table_apply(&t, src, got);
    assert_same_image(got, want, src, rows, cols, angle, dx, dy, "ex_warp_table_apply");
    ex_warp_table_free(&t);
    for (size_t i = 0; i < n; i++)
        *n_nonzero += want[i] != 0.0f;
    free(want);
    free(got);
}

static const int sizes[][2] = {{28, 28}, {32, 32}, {1, 1}, {1, 7}, {7, 1}, {2, 2}, {3, 5},
                               {17, 13}, {13, 17}, {20, 40}, {64, 64}, {9, 300}};

/* Random images (negative values too) at 0.7-degree steps round the circle,
 * the exact quarter turns and angles just off them, with shifts that keep
 * the image in view, push it half out, and push it wholly outside. */
static void test_warp_matches_scalar(void **state)
{
    (void)state;
    uint64_t rng = 15;
    long n_nonzero = 0, n_warps = 0;
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int rows = sizes[k][0], cols = sizes[k][1];
        size_t n = (size_t)rows * cols;
        float *src = malloc(n * sizeof *src);
        assert_non_null(src);
        tu_fill(src, n, -1.0, 1.0, &rng);
        const float shifts[][2] = {{0, 0}, {0.5f, -0.25f}, {-3.3f, 2.7f}, {1.0f, 1.0f},
                                   {(float)cols, 0}, {0, -(float)rows - 0.5f},
                                   {2.0f * cols + 40, -2.0f * rows - 40}, {1e6f, -1e6f}};
        int n_shifts = sizeof shifts / sizeof shifts[0];
        int steps = rows * cols > 1000 ? 60 : 515; /* 0.7 degrees on the small ones */
        for (int a = 0; a < steps; a++) {
            float angle = (float)(2.0 * TU_PI * a / steps);
            const float *sh = shifts[a % n_shifts];
            check_one(src, rows, cols, angle, sh[0], sh[1], &n_nonzero);
            check_one(src, rows, cols, angle, 0.0f, 0.0f, &n_nonzero);
            n_warps += 2;
        }
        const float special[] = {0.0f, -0.0f, (float)(TU_PI / 2), (float)TU_PI,
                                 (float)(3 * TU_PI / 2), (float)(2 * TU_PI), 1e-7f, -1e-7f,
                                 (float)(TU_PI / 2) + 1e-6f, (float)(TU_PI / 4), -1.0f,
                                 -100.0f, 1000.0f};
        for (size_t a = 0; a < sizeof special / sizeof special[0]; a++)
            for (int j = 0; j < n_shifts; j++, n_warps++)
                check_one(src, rows, cols, special[a], shifts[j][0], shifts[j][1], &n_nonzero);
        free(src);
    }
    /* the cases are not all empty images */
    assert_true(n_nonzero > n_warps * 100);
}

/* The rotation examples' own data range: pixels in [0,1], mostly zero with
 * bright edges, so taps on and beyond the border carry the weight. */
static void test_warp_border_pixels(void **state)
{
    (void)state;
    long n_nonzero = 0;
    int rows = 28, cols = 28;
    float src[28 * 28];
    for (int y = 0; y < rows; y++)
        for (int x = 0; x < cols; x++)
            src[y * cols + x] = (y == 0 || x == 0 || y == rows - 1 || x == cols - 1)
                                    ? 1.0f - 0.01f * (float)(x + y) : 0.0f;
    for (int a = 0; a < 360; a++)
        for (float d = -1.5f; d <= 1.5f; d += 0.25f)
            check_one(src, rows, cols, (float)(TU_PI * a / 180.0), d, -d, &n_nonzero);
    assert_true(n_nonzero > 0);
}

static void test_warp_table_bad_sizes(void **state)
{
    (void)state;
    ex_warp_table t = {0};
    assert_int_equal(ex_warp_table_init(&t, 0, 28, 0.0f, 0.0f, 0.0f), -1);
    assert_int_equal(ex_warp_table_init(&t, 28, -1, 0.0f, 0.0f, 0.0f), -1);
    assert_int_equal(ex_warp_table_init(&t, 1 << 16, 1 << 16, 0.0f, 0.0f, 0.0f), -1);
    assert_false(t.ready);
    assert_null(t.idx);
    ex_warp_table_free(&t); /* empty: fine */
    ex_warp_table_free(NULL);
    assert_int_equal(ex_warp_table_init(&t, 28, 28, 0.5f, 1.0f, 2.0f), 0);
    assert_true(t.ready);
    assert_int_equal(ex_warp_table_init(&t, 0, 28, 0.5f, 1.0f, 2.0f), -1);
    assert_false(t.ready); /* a failed init never leaves stale taps ready */
    ex_warp_table_free(&t);
    ex_warp_table_free(&t); /* freed: fine */
    assert_null(t.idx);
}

/* ex_warp_cached through runs of repeated and changing arguments, sizes that
 * grow and shrink, signed zeros, against the reference each time. */
static void test_warp_cached_sequences(void **state)
{
    (void)state;
    uint64_t rng = 7;
    float src[32 * 32], want[32 * 32], got[32 * 32];
    tu_fill(src, 32 * 32, 0.0, 1.0, &rng);
    ex_warp_table t = {0};
    const struct { int rows, cols, repeat; float angle, dx, dy; } seq[] = {
        {28, 28, 1, 0.3f, 0, 0},  {28, 28, 5, 0.4f, 0, 0},     {28, 28, 1, 0.3f, 0, 0},
        {28, 28, 3, 0.3f, 0, 0},  {32, 32, 4, 0.3f, 0, 0},     {28, 28, 2, 0.3f, 0, 0},
        {28, 28, 3, 0.3f, 1, 0},  {28, 28, 3, 0.3f, 1, -2.5f}, {5, 7, 3, 2.0f, 0, 0},
        {7, 5, 3, 2.0f, 0, 0},    {28, 28, 2, 0.0f, 0, 0},     {28, 28, 2, -0.0f, 0, 0},
        {32, 32, 6, -1.2f, 0, 0}, {1, 1, 2, 1.0f, 0.25f, 0},   {28, 28, 1, 0.3f, 0, 0},
    };
    long n_nonzero = 0;
    for (size_t k = 0; k < sizeof seq / sizeof seq[0]; k++) {
        int rows = seq[k].rows, cols = seq[k].cols;
        ref_warp(src, want, rows, cols, seq[k].angle, seq[k].dx, seq[k].dy);
        for (int r = 0; r < seq[k].repeat; r++) {
            for (int i = 0; i < rows * cols; i++)
                got[i] = NAN;
            ex_warp_cached(&t, src, got, rows, cols, seq[k].angle, seq[k].dx, seq[k].dy);
            assert_same_image(got, want, src, rows, cols, seq[k].angle, seq[k].dx, seq[k].dy,
                              "ex_warp_cached");
            /* the table is built on the second call in a row with the same
             * arguments (bit for bit: -0 is not 0) */
            int same = r > 0 || (k > 0 && seq[k - 1].rows == rows && seq[k - 1].cols == cols &&
                                 !memcmp(&seq[k - 1].angle, &seq[k].angle, sizeof(float)) &&
                                 seq[k - 1].dx == seq[k].dx && seq[k - 1].dy == seq[k].dy);
            assert_int_equal(t.ready, same);
        }
        for (int i = 0; i < rows * cols; i++)
            n_nonzero += want[i] != 0.0f;
    }
    assert_true(n_nonzero > 0);
    ex_warp_table_free(&t);
}

/* The examples' --train-arc A,B: start wrapped, length B - A or wrapped. */
static void test_train_arc_of(void **state)
{
    (void)state;
    static const struct { float a0, a1, start, len; int rc; } c[] = {
        {0, 270, 0, 270, 0},   {300, 60, 300, 120, 0}, {-90, 90, 270, 180, 0},
        {0, 360, 0, 360, 0},   {90, 0, 90, 270, 0},    {370, 400, 10, 30, 0},
        {10, 10, 0, 0, -1},    {0, 720, 0, 0, -1},     {45, -315, 0, 0, -1},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        float start = -1.0f, len = -1.0f;
        int rc = ex_arc_of(c[i].a0, c[i].a1, &start, &len);
        assert_int_equal(rc, c[i].rc);
        if (rc == 0) {
            assert_float_equal(start, c[i].start, 1e-4);
            assert_float_equal(len, c[i].len, 1e-4);
        } else {   /* nothing written */
            assert_true(start == -1.0f && len == -1.0f);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_warp_matches_scalar),
        cmocka_unit_test(test_warp_border_pixels),
        cmocka_unit_test(test_warp_table_bad_sizes),
        cmocka_unit_test(test_warp_cached_sequences),
        cmocka_unit_test(test_train_arc_of),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
