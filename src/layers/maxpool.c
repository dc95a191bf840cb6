/* layers/maxpool.c -- the maxpool layer kind: the maximum of each size x size
 * window (stride = size); backward sends the gradient to the first maximum. */
#include <stdio.h>
#include <string.h>

#include "layers/pool.h"

/* 2x2 max pooling, the common case, without the generic window loops: the
 * same comparisons in the same order (the first maximum wins). */
static void maxpool2_forward(const wm_layer *ly, const float *plane, float *out)
{
    for (int oy = 0; oy < ly->out_h; oy++) {
        const float *r0 = plane + (size_t)2 * oy * ly->in_w, *r1 = r0 + ly->in_w;
        float *o = out + (size_t)oy * ly->out_w;
        for (int ox = 0; ox < ly->out_w; ox++) {
            float v = r0[2 * ox], u = r0[2 * ox + 1];
            v = u > v ? u : v;
            u = r1[2 * ox];
            v = u > v ? u : v;
            u = r1[2 * ox + 1];
            o[ox] = u > v ? u : v;
        }
    }
}

/* Its backward: the gradient goes to the first input equal to the maximum
 * (a NaN maximum: to the last input), and every input of the window is
 * written, the others with zero, so the rows need no clearing first. The
 * choice is made with masks, not branches: which input holds a window's
 * maximum is data, and mispredicted branches were 13.5% of the bench CNN's
 * step. (Not WMI_SIMD_CLONES: rows of 7-14 windows are shorter than an
 * AVX-512 vector, and its scalar remainder loop took twice as long as the
 * SSE2 build's 4-wide one.) "+ 0.0f" keeps the old result bit for bit (it was added to zero: a
 * -0 gradient lands as +0). */
static void maxpool2_backward(const wm_layer *ly, const float *plane, const float *y,
                              const float *dy, float *dplane, int relu)
{
    for (int oy = 0; oy < ly->out_h; oy++) {
        const float *a0 = plane + (size_t)2 * oy * ly->in_w, *a1 = a0 + ly->in_w;
        float *d0 = dplane + (size_t)2 * oy * ly->in_w, *d1 = d0 + ly->in_w;
        const float *yr = y + (size_t)oy * ly->out_w, *gr = dy + (size_t)oy * ly->out_w;
        for (int ox = 0; ox < ly->out_w; ox++) {
            float m = yr[ox], g = gr[ox];
            int e0 = a0[2 * ox] == m, e1 = a0[2 * ox + 1] == m, e2 = a1[2 * ox] == m;
            int t1 = (!e0) & e1, t2 = (!e0) & (!e1) & e2, t3 = (!e0) & (!e1) & (!e2);
            if (relu) {                 /* the ReLU below: nothing where its output is not > 0 */
                e0 &= a0[2 * ox] > 0.0f, t1 &= a0[2 * ox + 1] > 0.0f;
                t2 &= a1[2 * ox] > 0.0f, t3 &= a1[2 * ox + 1] > 0.0f;
            }
            d0[2 * ox] = (e0 ? g : 0.0f) + 0.0f;
            d0[2 * ox + 1] = (t1 ? g : 0.0f) + 0.0f;
            d1[2 * ox] = (t2 ? g : 0.0f) + 0.0f;
            d1[2 * ox + 1] = (t3 ? g : 0.0f) + 0.0f;
        }
    }
}

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>

/* The 2x2 windows with AVX2, at the input's resolution: a vector holds 8
 * inputs of a row, 4 windows side by side, (left, right) in adjacent lanes,
 * and swapping adjacent lanes (permute 0xB1) puts each window's other
 * column next to it. The same comparisons in the same order as the scalar
 * loops above, so the results are the same bit for bit (NaN included).
 * Scalar, these windows were 18% of the bench CNN's step (short rows of
 * 7-14 windows, a stride-2 layout the vectoriser handles badly). */
#define POOL_AVX2 static inline __attribute__((always_inline, target("avx2")))

static int pool_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}

/* [v0 v0 v1 v1 v2 v2 v3 v3] */
POOL_AVX2 __m256 pool_up(__m128 v)
{
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_unpacklo_ps(v, v)), _mm_unpackhi_ps(v, v), 1);
}

/* Lanes < 2r (inputs) and < r (windows) of a tail of r < 4 windows. */
POOL_AVX2 __m256i pool_tail8(int r) { return _mm256_cmpgt_epi32(_mm256_set1_epi32(2 * r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)); }
POOL_AVX2 __m128i pool_tail4(int r) { return _mm_cmpgt_epi32(_mm_set1_epi32(r), _mm_setr_epi32(0, 1, 2, 3)); }

/* The first n < 8 (n < 4) lanes of v to d, with plain stores: AMD cores run
 * a masked store (vmaskmovps) in microcode, and it was half of the
 * backward's time with rows of 7 and 14 windows. */
POOL_AVX2 void pool_store4(float *d, __m128 v, int n)
{
    if (n & 2) {
        _mm_storel_pi((__m64 *)d, v);
        d += 2, v = _mm_movehl_ps(v, v);
    }
    if (n & 1)
        _mm_store_ss(d, v);
}

POOL_AVX2 void pool_store8(float *d, __m256 v, int n)
{
    __m128 lo = _mm256_castps256_ps128(v);
    if (n >= 4) {
        _mm_storeu_ps(d, lo);
        pool_store4(d + 4, _mm256_extractf128_ps(v, 1), n - 4);
    } else
        pool_store4(d, lo, n);
}

/* 4 windows' maxima: v = x00, then u > v ? u : v for x01, x10, x11
 * (_mm256_max_ps(u, v) is exactly that), in the even lanes, packed. */
POOL_AVX2 __m128 pool_max4(__m256 x0, __m256 x1)
{
    __m256 v = _mm256_max_ps(_mm256_permute_ps(x0, 0xB1), x0);
    v = _mm256_max_ps(x1, v);
    v = _mm256_max_ps(_mm256_permute_ps(x1, 0xB1), v);
    return _mm256_castps256_ps128(_mm256_permutevar8x32_ps(v, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7)));
}

__attribute__((target("avx2")))
static void maxpool2_forward_avx2(const wm_layer *ly, const float *plane, float *out)
{
    int ow = ly->out_w;
    for (int oy = 0; oy < ly->out_h; oy++) {
        const float *r0 = plane + (size_t)2 * oy * ly->in_w, *r1 = r0 + ly->in_w;
        float *o = out + (size_t)oy * ow;
        int ox = 0;
        for (; ox + 4 <= ow; ox += 4)
            _mm_storeu_ps(o + ox, pool_max4(_mm256_loadu_ps(r0 + 2 * ox), _mm256_loadu_ps(r1 + 2 * ox)));
        if (ox < ow) {
            __m256i m8 = pool_tail8(ow - ox);
            __m128 v = pool_max4(_mm256_maskload_ps(r0 + 2 * ox, m8), _mm256_maskload_ps(r1 + 2 * ox, m8));
            pool_store4(o + ox, v, ow - ox);
        }
    }
}

/* The gradients of 4 windows (maxima m, gradients g, both spread to pairs
 * of lanes) into their top and bottom rows: the first input equal to the
 * maximum in row-major order gets g, a window with none (a NaN maximum) its
 * last input; "+ 0" as in the scalar loop. */
POOL_AVX2 void pool_grad4(__m256 x0, __m256 x1, __m256 m, __m256 g, int relu, __m256 *top,
                          __m256 *bot)
{
    const __m256 odd = _mm256_castsi256_ps(_mm256_setr_epi32(0, -1, 0, -1, 0, -1, 0, -1));
    __m256 e0 = _mm256_cmp_ps(x0, m, _CMP_EQ_OQ), s0 = _mm256_permute_ps(e0, 0xB1);
    __m256 e1 = _mm256_cmp_ps(x1, m, _CMP_EQ_OQ), s1 = _mm256_permute_ps(e1, 0xB1);
    /* top: left if equal, right if equal and the left not */
    __m256 t = _mm256_andnot_ps(_mm256_and_ps(s0, odd), e0);
    /* bottom, if neither top input is equal: left if equal, right if the left not */
    __m256 b = _mm256_or_ps(_mm256_andnot_ps(odd, e1), _mm256_andnot_ps(s1, odd));
    b = _mm256_andnot_ps(_mm256_or_ps(e0, s0), b);
    if (relu) {                         /* the ReLU below: nothing where its output is not > 0 */
        t = _mm256_and_ps(t, _mm256_cmp_ps(x0, _mm256_setzero_ps(), _CMP_GT_OQ));
        b = _mm256_and_ps(b, _mm256_cmp_ps(x1, _mm256_setzero_ps(), _CMP_GT_OQ));
    }
    *top = _mm256_add_ps(_mm256_and_ps(t, g), _mm256_setzero_ps());
    *bot = _mm256_add_ps(_mm256_and_ps(b, g), _mm256_setzero_ps());
}

__attribute__((target("avx2")))
static void maxpool2_backward_avx2(const wm_layer *ly, const float *plane, const float *y,
                                   const float *dy, float *dplane, int relu)
{
    int ow = ly->out_w;
    for (int oy = 0; oy < ly->out_h; oy++) {
        const float *a0 = plane + (size_t)2 * oy * ly->in_w, *a1 = a0 + ly->in_w;
        float *d0 = dplane + (size_t)2 * oy * ly->in_w, *d1 = d0 + ly->in_w;
        const float *yr = y + (size_t)oy * ow, *gr = dy + (size_t)oy * ow;
        __m256 t, b;
        int ox = 0;
        for (; ox + 4 <= ow; ox += 4) {
            pool_grad4(_mm256_loadu_ps(a0 + 2 * ox), _mm256_loadu_ps(a1 + 2 * ox),
                       pool_up(_mm_loadu_ps(yr + ox)), pool_up(_mm_loadu_ps(gr + ox)), relu, &t, &b);
            _mm256_storeu_ps(d0 + 2 * ox, t);
            _mm256_storeu_ps(d1 + 2 * ox, b);
        }
        if (ox < ow) {
            __m256i m8 = pool_tail8(ow - ox);
            __m128i m4 = pool_tail4(ow - ox);
            pool_grad4(_mm256_maskload_ps(a0 + 2 * ox, m8), _mm256_maskload_ps(a1 + 2 * ox, m8),
                       pool_up(_mm_maskload_ps(yr + ox, m4)), pool_up(_mm_maskload_ps(gr + ox, m4)), relu,
                       &t, &b);
            pool_store8(d0 + 2 * ox, t, 2 * (ow - ox));
            pool_store8(d1 + 2 * ox, b, 2 * (ow - ox));
        }
    }
}
#else
static int pool_avx2(void) { return 0; }
#define maxpool2_forward_avx2 maxpool2_forward
#define maxpool2_backward_avx2 maxpool2_backward
#endif

void wmi_maxpool2_scalar(const wm_layer *ly, const float *X, int n, float *Y, const float *dY,
                         float *dX, int relu)
{
    if (dX && (ly->in_h | ly->in_w) & 1)
        memset(dX, 0, sizeof(float) * (size_t)n * ly->in);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < ly->out_c; c++) {
            size_t in_off = (size_t)i * ly->in + (size_t)c * ly->in_h * ly->in_w;
            size_t out_off = (size_t)i * ly->out + (size_t)c * ly->out_h * ly->out_w;
            if (dX)
                maxpool2_backward(ly, X + in_off, Y + out_off, dY + out_off, dX + in_off, relu);
            else
                maxpool2_forward(ly, X + in_off, Y + out_off);
        }
}

static void maxpool_fwd(const wm_layer *ly, const wm_layer_io *io, const float *X, int n, float *Y)
{
    (void)io;
    int s = ly->k, avx2 = s == 2 && pool_avx2();
    for (int i = 0; i < n; i++)
        for (int c = 0; c < ly->out_c; c++) {
            const float *plane = X + (size_t)i * ly->in + (size_t)c * ly->in_h * ly->in_w;
            float *out = Y + (size_t)i * ly->out + (size_t)c * ly->out_h * ly->out_w;
            if (avx2) {
                maxpool2_forward_avx2(ly, plane, out);
                continue;
            }
            if (s == 2) {
                maxpool2_forward(ly, plane, out);
                continue;
            }
            for (int oy = 0; oy < ly->out_h; oy++)
                for (int ox = 0; ox < ly->out_w; ox++) {
                    const float *win = plane + (size_t)oy * s * ly->in_w + (size_t)ox * s;
                    float v = win[0];
                    for (int dy = 0; dy < s; dy++)
                        for (int dx = 0; dx < s; dx++) {
                            float u = win[dy * ly->in_w + dx];
                            v = u > v ? u : v;
                        }
                    out[oy * ly->out_w + ox] = v;
                }
        }
}

static void maxpool_bwd(const wm_layer *ly, const wm_layer_io *io, const float *X, int n,
                        const float *Y, float *dY, float *grad, float *dX)
{
    (void)grad;
    if (!dX)
        return;
    int relu = io->relu_below;          /* apply the derivative of the ReLU below (layer.h) */
    int s = ly->k, avx2 = s == 2 && pool_avx2();
    /* 2x2 windows write every input they cover: only an odd row or column
     * left over needs zeros */
    if (s != 2 || (ly->in_h | ly->in_w) & 1)
        memset(dX, 0, sizeof(float) * (size_t)n * ly->in);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < ly->out_c; c++) {
            size_t in_off = (size_t)i * ly->in + (size_t)c * ly->in_h * ly->in_w;
            size_t out_off = (size_t)i * ly->out + (size_t)c * ly->out_h * ly->out_w;
            if (avx2) {
                maxpool2_backward_avx2(ly, X + in_off, Y + out_off, dY + out_off, dX + in_off, relu);
                continue;
            }
            if (s == 2) {
                maxpool2_backward(ly, X + in_off, Y + out_off, dY + out_off, dX + in_off, relu);
                continue;
            }
            for (int oy = 0; oy < ly->out_h; oy++)
                for (int ox = 0; ox < ly->out_w; ox++) {
                    size_t base = in_off + (size_t)oy * s * ly->in_w + (size_t)ox * s;
                    float g = dY[out_off + oy * ly->out_w + ox];
                    float m = Y[out_off + oy * ly->out_w + ox];   /* to the first maximum */
                    int done = 0;
                    for (int dy = 0; dy < s && !done; dy++)
                        for (int dx = 0; dx < s && !done; dx++)
                            if (X[base + dy * ly->in_w + dx] == m) {
                                if (!relu || m > 0.0f)
                                    dX[base + dy * ly->in_w + dx] += g;
                                done = 1;
                            }
                }
        }
}

wm_status wm_net_maxpool(wm_net *net, int size)
{
    return wmi_pool_add(net, size, WM_LAYER_MAXPOOL, __func__);
}

static wm_status maxpool_rebuild(wm_net *net, const uint32_t *v) { return wm_net_maxpool(net, (int)v[0]); }

static void maxpool_describe(const wm_layer *ly, char *buf, size_t len)
{
    snprintf(buf, len, "maxpool %dx%d", ly->k, ly->k);
}

const wm_layer_ops wmi_maxpool_ops = {
    .name = "maxpool",
    .n_fields = 1,
    .fields = wmi_pool_fields,
    .rebuild = maxpool_rebuild,
    .describe = maxpool_describe,
    .forward = maxpool_fwd,
    .backward = maxpool_bwd,
    .absorbs_relu = 1,
};
