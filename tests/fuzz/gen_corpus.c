/* gen_corpus.c -- writes the seed corpora of the fuzz harnesses:
 *   DIR/load/  valid model files for every kind of manifold, and broken ones
 *              (empty, foreign, truncated, flipped bytes, wrong version,
 *              inconsistent sizes with a correct CRC so the parser sees them)
 *   DIR/api/   byte programs for fuzz_api (see the opcode list there)
 * Usage: gen_corpus DIR   (make fuzz-corpus-gen regenerates tests/fuzz/corpus)
 * Built against the ordinary static library. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"
#include "model_layout.h"

static const char *root;
static char tmp_model[600];

static void write_file(const char *sub, const char *name, const void *p, size_t n)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s/%s", root, sub, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void ok(wm_status st, const char *what)
{
    if (st != WM_OK) {
        fprintf(stderr, "gen_corpus: %s: %s (%s)\n", what, wm_status_str(st), wm_last_error());
        exit(1);
    }
}

static void cubic(const float *s, float *c, void *user)
{
    (void)user;
    c[0] = 1, c[1] = s[0], c[2] = s[0] * s[0];
}

/* A small net on m with deterministic non-trivial parameters, saved; returns the file bytes. */
static unsigned char *model(wm_manifold *m, wm_conditioning cond, wm_loss loss, int in, int hidden,
                            int out, wm_activation act, size_t *len)
{
    wm_net *net;
    ok(wm_net_create(&net, m, in, cond), "create");
    if (hidden > 0)
        ok(wm_net_dense(net, hidden, act), "dense");
    ok(wm_net_dense(net, out, WM_ACT_NONE), "dense");
    ok(wm_net_set_loss(net, loss), "loss");
    ok(wm_net_init(net, 7), "init");
    size_t np = wm_net_n_params(net);
    float *q = malloc(np * sizeof *q);
    for (size_t j = 0; j < np; j++)
        q[j] = (float)((int)(j * 37 % 19) - 9) / 8.0f;
    ok(wm_net_set_params(net, q, np), "set_params");
    free(q);
    ok(wm_net_save(net, tmp_model), "save");
    wm_net_free(net);
    FILE *f = fopen(tmp_model, "rb");
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(*len);
    if (fread(buf, 1, *len, f) != *len)
        exit(1);
    fclose(f);
    remove(tmp_model);
    return buf;
}

/* Write a variant of buf with the u32 at `off` set to v and the CRC fixed. */
static void variant(const char *name, const unsigned char *buf, size_t len, size_t off, uint32_t v)
{
    unsigned char *c = malloc(len);
    memcpy(c, buf, len);
    fz_put_u32(c + off, v);
    fz_put_u32(c + len - 4, fz_crc32(c, len - 4));
    write_file("load", name, c, len);
    free(c);
}

/* Checkpoints (wm_optimizer_save) after two steps, and a small conv net. */
static void save_checkpoints(wm_manifold *circle, wm_manifold *torus)
{
    const wm_opt_kind kinds[3] = {WM_OPT_SD, WM_OPT_MOMENTUM, WM_OPT_ADAM};
    const char *names[3] = {"ckpt-sd-circle.wmn", "ckpt-momentum-torus.wmn", "ckpt-adam-circle.wmn"};
    char path[700];
    for (int k = 0; k < 3; k++) {
        wm_net *net;
        wm_optimizer *opt;
        ok(wm_net_create(&net, k == 1 ? torus : circle, 2, WM_COND_MANIFOLD), "create");
        ok(wm_net_dense(net, 3, WM_ACT_RELU), "dense");
        ok(wm_net_dense(net, 2, WM_ACT_NONE), "dense");
        ok(wm_net_init(net, 3), "init");
        wm_opt_config cfg = wm_opt_default(kinds[k]);
        cfg.weight_decay = k == 2 ? 0.01f : 0.0f;
        ok(wm_optimizer_create(&opt, net, &cfg), "optimizer");
        float x[8] = {0.1f, -0.2f, 0.3f, 0.4f, -0.5f, 0.6f, 0.7f, -0.8f}, s[4] = {0.1f, 0.2f, 0.7f, 0.9f};
        int32_t y[4] = {0, 1, 1, 0};
        wm_batch b = {k == 1 ? 2 : 4, x, s, y, NULL};
        ok(wm_step(opt, &b, NULL), "step");
        ok(wm_step(opt, &b, NULL), "step");
        snprintf(path, sizeof path, "%s/load/%s", root, names[k]);
        ok(wm_optimizer_save(opt, path), "optimizer_save");
        wm_optimizer_free(opt);
        wm_net_free(net);
    }
    /* broken checkpoints, from the Adam one */
    {
        snprintf(path, sizeof path, "%s/load/%s", root, names[2]);
        FILE *f = fopen(path, "rb");
        unsigned char buf[4096];
        size_t len = f ? fread(buf, 1, sizeof buf, f) : 0;
        if (f)
            fclose(f);
        wm_layout L;
        if (wl_parse(buf, len, &L) != 0 || !L.opt_moments) {
            fprintf(stderr, "gen_corpus: the checkpoint does not parse as docs/model-format.md says\n");
            exit(1);
        }
        variant("bad-ckpt-kind.wmn", buf, len, L.opt_kind, 7);
        variant("bad-ckpt-lr.wmn", buf, len, L.opt_lr, 0x7FC00000u);
        variant("bad-ckpt-beta.wmn", buf, len, L.opt_lr + 12, 0x3F800000u);    /* beta1 = 1 */
        variant("bad-ckpt-moment.wmn", buf, len, L.opt_moments + 4, 0x7F800000u);
        variant("bad-ckpt-short.wmn", buf, len, L.opt_kind, 1);                /* momentum: too long */
    }
    /* conv: 1 x 5 x 5 images, 3x3 conv with padding, 2x2 max pooling, dense */
    wm_net *net;
    ok(wm_net_create(&net, circle, 25, WM_COND_MANIFOLD), "create conv");
    ok(wm_net_input_shape(net, 1, 5, 5), "input_shape");
    ok(wm_net_conv2d(net, 2, 3, 1, 1, WM_ACT_RELU), "conv2d");
    ok(wm_net_maxpool(net, 2), "maxpool");
    ok(wm_net_dense(net, 2, WM_ACT_NONE), "dense");
    ok(wm_net_init(net, 9), "init conv");
    snprintf(path, sizeof path, "%s/load/valid-conv-circle.wmn", root);
    ok(wm_net_save(net, path), "save conv");
    wm_net_free(net);
    ok(wm_net_create(&net, circle, 18, WM_COND_CONCAT), "create conv concat");
    ok(wm_net_input_shape(net, 2, 3, 3), "input_shape");
    ok(wm_net_conv2d(net, 2, 2, 1, 0, WM_ACT_TANH), "conv2d");
    ok(wm_net_avgpool(net, 2), "avgpool");
    ok(wm_net_dense(net, 2, WM_ACT_NONE), "dense");
    ok(wm_net_set_loss(net, WM_LOSS_MSE), "loss");
    ok(wm_net_init(net, 9), "init conv");
    snprintf(path, sizeof path, "%s/load/valid-conv-concat.wmn", root);
    ok(wm_net_save(net, path), "save conv");
    wm_net_free(net);
}

/* Format 2 (issue 14): a net of every new kind with point layers, saved, and
 * variants of its new fields (placement, kinds 4..9 and their fields). */
static unsigned char *saved_net(wm_net *net, size_t *len)
{
    ok(wm_net_save(net, tmp_model), "save graph");
    FILE *f = fopen(tmp_model, "rb");
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(*len);
    if (fread(buf, 1, *len, f) != *len)
        exit(1);
    fclose(f);
    remove(tmp_model);
    return buf;
}

/* Format 3: the graph net with its init seed (b, len: its file; L: its
 * layout), a header too short for the seed, a file cut inside it, the
 * version field claiming 2, and a momentum checkpoint after two steps. */
static void gen_graph_v3(wm_net *net, const unsigned char *b, size_t len, const wm_layout *L)
{
    write_file("load", "valid-v3-graph.wmn", b, len);
    unsigned char *c = malloc(len);
    memcpy(c, b, L->seed + 4);                     /* 4 of the seed's 8 bytes */
    memcpy(c + L->seed + 4, b + L->seed + 8, len - L->seed - 8);
    fz_put_u32(c + 8, fz_get_u32(b + 8) - 4);
    fz_put_u32(c + len - 8, fz_crc32(c, len - 8));
    write_file("load", "bad-v3-seed-short.wmn", c, len - 4);
    memcpy(c, b, L->seed + 4);                     /* the file ends inside the seed */
    fz_put_u32(c + L->seed + 4, fz_crc32(c, L->seed + 4));
    write_file("load", "bad-v3-seed-trunc.wmn", c, L->seed + 8);
    free(c);
    variant("bad-v3-as-v2.wmn", b, len, L->version, 2);
    wm_optimizer *opt;
    wm_opt_config cfg = wm_opt_default(WM_OPT_MOMENTUM);
    ok(wm_optimizer_create(&opt, net, &cfg), "optimizer graph");
    float x[2 * 32], s[2] = {0.2f, 0.7f};
    for (int j = 0; j < 2 * 32; j++)
        x[j] = (float)((j * 7 % 11) - 5) / 5.0f;
    int32_t y[2] = {0, 2};
    wm_batch batch = {2, x, s, y, NULL};
    ok(wm_step(opt, &batch, NULL), "step graph");
    ok(wm_step(opt, &batch, NULL), "step graph");
    char path[700];
    snprintf(path, sizeof path, "%s/load/ckpt-v3-dropout-graph.wmn", root);
    ok(wm_optimizer_save(opt, path), "optimizer_save graph");
    wm_optimizer_free(opt);
}

static void gen_graph(wm_manifold *circle)
{
    /* 2 x 4 x 4 images: conv (a point), groupnorm, FiLM, residual to layer 0,
     * global average pool, dense, layernorm, dropout, residual to the
     * input-free flat layer 5, dense head (a point) */
    wm_net *net;
    ok(wm_net_create(&net, circle, 32, WM_COND_MANIFOLD), "create graph");
    ok(wm_net_input_shape(net, 2, 4, 4), "input_shape");
    ok(wm_net_conv2d(net, 4, 3, 1, 1, WM_ACT_RELU), "conv");            /* 0 */
    ok(wm_net_groupnorm(net, 2), "groupnorm");                           /* 1 */
    ok(wm_net_film(net), "film");                                        /* 2 */
    ok(wm_net_residual(net, 0, WM_ACT_RELU), "residual");                /* 3 */
    ok(wm_net_global_avgpool(net), "global_avgpool");                    /* 4 */
    ok(wm_net_dense(net, 4, WM_ACT_TANH), "dense");                      /* 5 */
    ok(wm_net_layernorm(net), "layernorm");                              /* 6 */
    ok(wm_net_dropout(net, 0.25f), "dropout");                           /* 7 */
    ok(wm_net_residual(net, 5, WM_ACT_NONE), "residual");                /* 8 */
    ok(wm_net_dense(net, 3, WM_ACT_NONE), "dense");                      /* 9 */
    ok(wm_net_set_layer_manifold(net, 0, 0), "placement");
    ok(wm_net_set_layer_manifold(net, 9, 0), "placement");
    ok(wm_net_init(net, 5), "init graph");
    size_t len3, len;
    unsigned char *b3 = saved_net(net, &len3);
    wm_layout L;
    if (wl_parse(b3, len3, &L) != 0 || L.layers != 10 || b3[4] != 3 || !L.seed ||
        fz_get_u32(b3 + L.seed) != 5 || fz_get_u32(b3 + L.seed + 4) != 0) {
        fprintf(stderr, "gen_corpus: the graph model does not parse as docs/model-format.md says\n");
        exit(1);
    }
    gen_graph_v3(net, b3, len3, &L);
    wm_net_free(net);
    /* the same net as version 2 wrote it (before the seed was stored): the
     * seed's 8 bytes out of the header */
    len = len3 - 8;
    unsigned char *b = malloc(len3);
    memcpy(b, b3, L.seed);
    memcpy(b + L.seed, b3 + L.seed + 8, len3 - L.seed - 8);
    fz_put_u32(b + 4, 2);
    fz_put_u32(b + 8, fz_get_u32(b3 + 8) - 8);
    fz_put_u32(b + len - 4, fz_crc32(b, len - 4));
    free(b3);
    write_file("load", "valid-v2-graph.wmn", b, len);
    if (wl_parse(b, len, &L) != 0 || L.layers != 10 || L.seed) {
        fprintf(stderr, "gen_corpus: the version-2 graph does not parse as docs/model-format.md says\n");
        exit(1);
    }
    variant("bad-v2-placement.wmn", b, len, L.field[0] - 4, 2);
    variant("bad-v2-kind.wmn", b, len, L.layer[1], 10);
    variant("bad-v2-groups.wmn", b, len, L.field[1], 3);               /* 3 groups of 4 channels */
    variant("bad-v2-groups-zero.wmn", b, len, L.field[1], 0);
    variant("bad-v2-residual-from.wmn", b, len, L.field[3], 9);        /* a later layer */
    variant("bad-v2-residual-shape.wmn", b, len, L.field[8], 0);       /* the 32 inputs vs 4 */
    variant("bad-v2-residual-act.wmn", b, len, L.field[3] + 4, 7);
    variant("bad-v2-dropout-one.wmn", b, len, L.field[7], 0x3F800000u); /* p = 1 */
    variant("bad-v2-dropout-nan.wmn", b, len, L.field[7], 0x7FC00000u);
    variant("bad-v2-gap-flat.wmn", b, len, L.layer[6], 9);             /* global avgpool after dense */
    variant("bad-v2-point-mismatch.wmn", b, len, L.field[5] - 4, 0);   /* fewer parameters than stored */
    variant("bad-v2-as-v1.wmn", b, len, L.version, 1);                 /* kinds 4..9 in a version-1 file */
    free(b);
}

static void save_valid(const char *name, wm_manifold *m, wm_conditioning cond, wm_loss loss,
                       wm_activation act)
{
    size_t len;
    unsigned char *b = model(m, cond, loss, 2, 3, 2, act, &len);
    write_file("load", name, b, len);
    free(b);
}


static void gen_load(void)
{
    wm_manifold *pt, *ln, *ci, *f2, *bs, *cbs, *torus, *cyl, *nest, *cu;
    ok(wm_manifold_point(&pt), "point");
    ok(wm_manifold_line(&ln), "line");
    ok(wm_manifold_circle(&ci), "circle");
    ok(wm_manifold_fourier(&f2, 2), "fourier");
    ok(wm_manifold_bspline(&bs, 5, 3, 0), "bspline");
    ok(wm_manifold_bspline(&cbs, 4, 2, 1), "closed bspline");
    ok(wm_manifold_product(&torus, ci, ci), "torus");
    ok(wm_manifold_product(&cyl, ln, ci), "cylinder");
    ok(wm_manifold_product(&nest, ln, cyl), "line x cylinder");
    ok(wm_manifold_custom(&cu, 1, 3, NULL, cubic, NULL), "custom");

    save_valid("valid-point-ce.wmn", pt, WM_COND_MANIFOLD, WM_LOSS_SOFTMAX_CE, WM_ACT_RELU);
    save_valid("valid-line-mse.wmn", ln, WM_COND_MANIFOLD, WM_LOSS_MSE, WM_ACT_TANH);
    save_valid("valid-circle-ce.wmn", ci, WM_COND_MANIFOLD, WM_LOSS_SOFTMAX_CE, WM_ACT_SIGMOID);
    save_valid("valid-circle-concat.wmn", ci, WM_COND_CONCAT, WM_LOSS_SOFTMAX_CE, WM_ACT_RELU);
    save_valid("valid-fourier2-mse.wmn", f2, WM_COND_MANIFOLD, WM_LOSS_MSE, WM_ACT_RELU);
    save_valid("valid-bspline-ce.wmn", bs, WM_COND_MANIFOLD, WM_LOSS_SOFTMAX_CE, WM_ACT_TANH);
    save_valid("valid-cbspline-concat.wmn", cbs, WM_COND_CONCAT, WM_LOSS_MSE, WM_ACT_NONE);
    save_valid("valid-torus-ce.wmn", torus, WM_COND_MANIFOLD, WM_LOSS_SOFTMAX_CE, WM_ACT_RELU);
    save_valid("valid-cylinder-concat.wmn", cyl, WM_COND_CONCAT, WM_LOSS_MSE, WM_ACT_SIGMOID);
    save_valid("valid-nested-product.wmn", nest, WM_COND_MANIFOLD, WM_LOSS_MSE, WM_ACT_RELU);
    save_valid("valid-custom-cubic.wmn", cu, WM_COND_MANIFOLD, WM_LOSS_MSE, WM_ACT_TANH);
    save_checkpoints(ci, torus);
    gen_graph(ci);
    {   /* one layer only */
        size_t len;
        unsigned char *b = model(ln, WM_COND_MANIFOLD, WM_LOSS_SOFTMAX_CE, 3, 0, 2, WM_ACT_NONE, &len);
        write_file("load", "valid-line-1layer.wmn", b, len);
        free(b);
    }

    /* broken files, derived from the circle model; fields located per
     * docs/model-format.md (model_layout.h), the CRC fixed unless stated */
    size_t len;
    unsigned char *b = model(ci, WM_COND_MANIFOLD, WM_LOSS_SOFTMAX_CE, 2, 3, 2, WM_ACT_RELU, &len);
    wm_layout L;
    if (wl_parse(b, len, &L) != 0 || !L.fourier_h || L.layers != 2) {
        fprintf(stderr, "gen_corpus: the circle model does not parse as docs/model-format.md says\n");
        exit(1);
    }
    write_file("load", "bad-empty.wmn", "", 0);
    write_file("load", "bad-magic.wmn", "WMNX\1\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 20);
    write_file("load", "bad-text.wmn", "this is not a model file\n", 25);
    write_file("load", "bad-magic-only.wmn", "WMNF", 4);
    write_file("load", "bad-trunc-header.wmn", b, 14);
    write_file("load", "bad-trunc-manifold.wmn", b, L.cond);
    write_file("load", "bad-trunc-params.wmn", b, L.params + 8);
    write_file("load", "bad-trunc-crc.wmn", b, len - 2);
    {
        unsigned char *c = malloc(len);
        memcpy(c, b, len);
        c[L.params + 5] ^= 0x10;                   /* flipped bit in a parameter, CRC stale */
        write_file("load", "bad-flipped-param.wmn", c, len);
        memcpy(c, b, len);
        c[L.manifold_K] ^= 0x01;                   /* flipped bit in K, CRC stale */
        write_file("load", "bad-flipped-header.wmn", c, len);
        free(c);
    }
    variant("bad-version.wmn", b, len, L.version, 2);
    variant("bad-version-big.wmn", b, len, L.version, 0x01000000);   /* big-endian 1 */
    variant("bad-hdrlen.wmn", b, len, L.header_bytes, 0xFFFFFFF0u);
    variant("bad-hdrlen-short.wmn", b, len, L.header_bytes, 8);
    variant("bad-kind.wmn", b, len, L.manifold, 77);
    variant("bad-dim.wmn", b, len, L.manifold_dim, 1000);
    variant("bad-K-zero.wmn", b, len, L.manifold_K, 0);
    variant("bad-K-huge.wmn", b, len, L.manifold_K, 0x7FFFFFFF);
    variant("bad-K-mismatch.wmn", b, len, L.manifold_K, 5);
    variant("bad-harmonics.wmn", b, len, L.fourier_h, 0);
    variant("bad-cond.wmn", b, len, L.cond, 5);
    variant("bad-ninputs.wmn", b, len, L.n_inputs, 0x40000000);
    variant("bad-shape.wmn", b, len, L.shape, 3);
    variant("bad-loss.wmn", b, len, L.loss, 9);
    variant("bad-nlayers.wmn", b, len, L.n_layers, 0);
    variant("bad-nlayers-huge.wmn", b, len, L.n_layers, 100000);
    variant("bad-layer-kind.wmn", b, len, L.layer[0], 9);
    variant("bad-layer-out.wmn", b, len, L.layer[0] + 4, 0x01000001);
    variant("bad-layer-act.wmn", b, len, L.layer[0] + 8, 12);
    variant("bad-layer-conv.wmn", b, len, L.layer[0], 1);
    variant("bad-nparams.wmn", b, len, L.n_params, 0xFFFFFFFFu);
    variant("bad-param-nan.wmn", b, len, L.params, 0x7FC00000u);
    variant("bad-param-inf.wmn", b, len, L.has_optimizer - 4, 0x7F800000u);
    variant("bad-optimizer-flag.wmn", b, len, L.has_optimizer, 7);
    variant("bad-optimizer-missing.wmn", b, len, L.has_optimizer, 1);
    free(b);

    /* products nested 40 deep: the loader must refuse, not recurse forever */
    {
        unsigned char deep[16 + 40 * 12 + 64];
        size_t n = 0;
        memcpy(deep, "WMNF", 4), n = 4;
        fz_put_u32(deep + n, 1), n += 4;
        fz_put_u32(deep + n, 40 * 12 + 12), n += 4;
        for (int i = 0; i < 40; i++) {
            fz_put_u32(deep + n, 4), fz_put_u32(deep + n + 4, 0), fz_put_u32(deep + n + 8, 1);
            n += 12;
        }
        fz_put_u32(deep + n, 0), fz_put_u32(deep + n + 4, 0), fz_put_u32(deep + n + 8, 1), n += 12;
        fz_put_u32(deep + n, fz_crc32(deep, n)), n += 4;
        write_file("load", "bad-deep-product.wmn", deep, n);
    }
    wm_manifold_free(pt), wm_manifold_free(ln), wm_manifold_free(ci), wm_manifold_free(f2);
    wm_manifold_free(bs), wm_manifold_free(cbs), wm_manifold_free(torus), wm_manifold_free(cyl);
    wm_manifold_free(nest), wm_manifold_free(cu);
}

/* fuzz_api programs: short op sequences that build, train and query nets,
 * written with the harness's decoding (opcodes and argument readers of
 * fuzz_api.c; keep the two in step). They only give the fuzzer a head start. */
enum {
    OP_MF_SIMPLE, OP_MF_FOURIER, OP_MF_BSPLINE, OP_MF_PRODUCT, OP_MF_CUSTOM, OP_MF_QUERY,
    OP_NET_CREATE, OP_DENSE, OP_LOSS, OP_INIT, OP_INFER, OP_TRAIN, OP_OPT_CREATE, OP_APPLY,
    OP_WEIGHTS_AT, OP_CONTROL_POINT, OP_SET_PARAMS, OP_QUERIES, OP_FREE, OP_SAVE_LOAD,
    OP_INPUT_SHAPE, OP_CONV, OP_POOL, OP_CONV_STRATEGY, OP_INFER_CONTEXT, OP_CHECKPOINT, OP_CONTROLS,
    OP_LAYERS
};

typedef struct {
    unsigned char b[1024];
    size_t n;
} prog;

static void B(prog *p, int v) { p->b[p->n++] = (unsigned char)v; }

static void U32(prog *p, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        B(p, (int)(v >> (8 * k)) & 255);
}

/* any_int's encodings: 1..6 small, 0..7 direct, -128..127 offset, else raw */
static void I(prog *p, int v)
{
    if (v >= 1 && v <= 6)
        B(p, 4), B(p, v - 1);
    else if (v >= 0 && v < 8)
        B(p, 0), B(p, v);
    else if (v >= -128 && v <= 127)
        B(p, 1), B(p, v + 128);
    else
        B(p, 3), U32(p, (uint32_t)v);
}

/* any_float's ordinary values: (u8 - 128) / 64; specials by selector */
static void F(prog *p, float v) { B(p, 8), B(p, (int)(v * 64.0f) + 128); }
static void F_SPECIAL(prog *p, int sel) { B(p, sel); }    /* 0 NaN, 1 Inf, 2 -Inf, 4 FLT_MAX, 7 1e30 */

/* make_batch: n, seed, poison kind (0 none), poison index, poison value */
static void BATCH(prog *p, int n, int poison, uint32_t at)
{
    I(p, n), B(p, 17), B(p, poison), U32(p, at);
}

static void write_prog(const char *name, const prog *p) { write_file("api", name, p->b, p->n); }

static void gen_api(void)
{
    prog p = {{0}, 0};
    /* a circle net: build, train every way, infer, query, save/load */
    B(&p, OP_MF_SIMPLE), B(&p, 0), B(&p, 2);
    B(&p, OP_NET_CREATE), B(&p, 0), B(&p, 0), I(&p, 4), I(&p, 0);
    B(&p, OP_DENSE), B(&p, 0), I(&p, 5), I(&p, 1);
    B(&p, OP_DENSE), B(&p, 0), I(&p, 3), I(&p, 0);
    B(&p, OP_INIT), B(&p, 0), U32(&p, 42), U32(&p, 0);
    B(&p, OP_OPT_CREATE), B(&p, 0), B(&p, 2), B(&p, 0), B(&p, 0);
    B(&p, OP_TRAIN), B(&p, 0), B(&p, 0), BATCH(&p, 8, 0, 0);
    B(&p, OP_TRAIN), B(&p, 0), B(&p, 1), BATCH(&p, 8, 0, 0);
    B(&p, OP_APPLY), B(&p, 0), B(&p, 0);
    B(&p, OP_TRAIN), B(&p, 0), B(&p, 2), BATCH(&p, 5, 0, 0);
    B(&p, OP_INFER), B(&p, 0), B(&p, 0), BATCH(&p, 5, 0, 0);
    B(&p, OP_INFER), B(&p, 0), B(&p, 1), BATCH(&p, 6, 0, 0);
    B(&p, OP_WEIGHTS_AT), B(&p, 0), I(&p, 0), B(&p, 100), B(&p, 0);
    B(&p, OP_CONTROL_POINT), B(&p, 0), I(&p, 1), I(&p, 2), B(&p, 0);
    B(&p, OP_QUERIES), B(&p, 0), I(&p, 1), I(&p, 7), I(&p, 3);
    B(&p, OP_SAVE_LOAD), B(&p, 0);
    write_prog("build-train.bin", &p);

    /* products, B-splines, a custom basis, a concat net with MSE */
    p.n = 0;
    B(&p, OP_MF_SIMPLE), B(&p, 0), B(&p, 1);
    B(&p, OP_MF_SIMPLE), B(&p, 1), B(&p, 2);
    B(&p, OP_MF_PRODUCT), B(&p, 2), B(&p, 0), B(&p, 1);
    B(&p, OP_MF_PRODUCT), B(&p, 3), B(&p, 2), B(&p, 2);
    B(&p, OP_MF_QUERY), B(&p, 3), B(&p, 10), B(&p, 50), B(&p, 90), B(&p, 200), B(&p, 0), I(&p, 2);
    B(&p, OP_MF_BSPLINE), B(&p, 0), I(&p, 6), I(&p, 3), I(&p, 1);
    B(&p, OP_MF_FOURIER), B(&p, 1), I(&p, 3);
    B(&p, OP_MF_CUSTOM), B(&p, 3), I(&p, 2), I(&p, 4), B(&p, 0), B(&p, 1);
    B(&p, OP_NET_CREATE), B(&p, 1), B(&p, 2), I(&p, 3), I(&p, 1);
    B(&p, OP_DENSE), B(&p, 1), I(&p, 4), I(&p, 2);
    B(&p, OP_DENSE), B(&p, 1), I(&p, 2), I(&p, 3);
    B(&p, OP_LOSS), B(&p, 1), I(&p, 1);
    B(&p, OP_INIT), B(&p, 1), U32(&p, 7), U32(&p, 7);
    B(&p, OP_INFER), B(&p, 1), B(&p, 0), BATCH(&p, 9, 0, 0);
    B(&p, OP_SET_PARAMS), B(&p, 1), B(&p, 0);
    B(&p, OP_CONTROL_POINT), B(&p, 1), I(&p, 0), I(&p, 0), B(&p, 1);
    B(&p, OP_WEIGHTS_AT), B(&p, 1), I(&p, 1), B(&p, 30), B(&p, 60), B(&p, 0);
    B(&p, OP_OPT_CREATE), B(&p, 1), B(&p, 1), B(&p, 0), B(&p, 0);
    B(&p, OP_TRAIN), B(&p, 1), B(&p, 0), BATCH(&p, 4, 0, 0);
    B(&p, OP_NET_CREATE), B(&p, 0), B(&p, 3), I(&p, 2), I(&p, 0);   /* on the custom basis */
    B(&p, OP_DENSE), B(&p, 0), I(&p, 2), I(&p, 0);
    B(&p, OP_INIT), B(&p, 0), U32(&p, 1), U32(&p, 0);
    B(&p, OP_INFER), B(&p, 0), B(&p, 0), BATCH(&p, 3, 0, 0);
    B(&p, OP_SAVE_LOAD), B(&p, 0);
    write_prog("products.bin", &p);

    /* rejected arguments: edge ints, NULLs, poisoned batches */
    p.n = 0;
    B(&p, OP_MF_FOURIER), B(&p, 0), I(&p, -2147483647 - 1);
    B(&p, OP_MF_BSPLINE), B(&p, 0), I(&p, 2147483647), I(&p, 3), I(&p, 0);
    B(&p, OP_MF_BSPLINE), B(&p, 0), I(&p, 3), I(&p, 3), I(&p, 0);
    B(&p, OP_MF_CUSTOM), B(&p, 1), I(&p, 5), I(&p, 3), B(&p, 0), B(&p, 0);
    B(&p, OP_MF_CUSTOM), B(&p, 1), I(&p, 1), I(&p, 3), B(&p, 1), B(&p, 0);   /* dependent */
    B(&p, OP_MF_PRODUCT), B(&p, 2), B(&p, 0), B(&p, 4);                      /* NULL factor */
    B(&p, OP_NET_CREATE), B(&p, 0), B(&p, 3), I(&p, 2), I(&p, 0);            /* empty slot */
    B(&p, OP_MF_SIMPLE), B(&p, 0), B(&p, 1);
    B(&p, OP_NET_CREATE), B(&p, 0), B(&p, 0), I(&p, 0), I(&p, 0);            /* n_inputs 0 */
    B(&p, OP_NET_CREATE), B(&p, 0), B(&p, 0), I(&p, 3), I(&p, 0);
    B(&p, OP_INIT), B(&p, 0), U32(&p, 1), U32(&p, 0);                        /* no layers */
    B(&p, OP_DENSE), B(&p, 0), I(&p, -1), I(&p, 0);
    B(&p, OP_DENSE), B(&p, 0), I(&p, 2), I(&p, 9);
    B(&p, OP_DENSE), B(&p, 0), I(&p, 1), I(&p, 0);
    B(&p, OP_INIT), B(&p, 0), U32(&p, 1), U32(&p, 0);                        /* CE, 1 output */
    B(&p, OP_LOSS), B(&p, 0), I(&p, 1);
    B(&p, OP_INIT), B(&p, 0), U32(&p, 1), U32(&p, 0);
    B(&p, OP_INFER), B(&p, 0), B(&p, 0), BATCH(&p, -1, 0, 0);
    B(&p, OP_INFER), B(&p, 0), B(&p, 0), BATCH(&p, 4, 1, 5), F_SPECIAL(&p, 0);   /* NaN x */
    B(&p, OP_INFER), B(&p, 0), B(&p, 0), BATCH(&p, 4, 2, 1), F(&p, 1.5f);      /* s > 1 */
    B(&p, OP_INFER), B(&p, 0), B(&p, 3), BATCH(&p, 4, 0, 0);                  /* short workspace */
    B(&p, OP_OPT_CREATE), B(&p, 0), B(&p, 0), B(&p, 2), F_SPECIAL(&p, 0), B(&p, 0); /* lr NaN */
    B(&p, OP_OPT_CREATE), B(&p, 0), B(&p, 2), B(&p, 16), F(&p, 1.0f), B(&p, 0);   /* beta1 1 */
    B(&p, OP_OPT_CREATE), B(&p, 0), B(&p, 0), B(&p, 2), F_SPECIAL(&p, 7), B(&p, 0); /* lr 1e30 */
    B(&p, OP_TRAIN), B(&p, 0), B(&p, 0), BATCH(&p, 4, 4, 2), F_SPECIAL(&p, 1);  /* Inf target */
    B(&p, OP_TRAIN), B(&p, 0), B(&p, 0), BATCH(&p, 4, 0, 0);                   /* diverges */
    B(&p, OP_TRAIN), B(&p, 0), B(&p, 0), BATCH(&p, 4, 0, 0);
    B(&p, OP_APPLY), B(&p, 0), B(&p, 1), U32(&p, 3), F_SPECIAL(&p, 0);       /* NaN gradient */
    B(&p, OP_WEIGHTS_AT), B(&p, 0), I(&p, 7), B(&p, 10), B(&p, 0);
    B(&p, OP_CONTROL_POINT), B(&p, 0), I(&p, 0), I(&p, 2), B(&p, 0);
    B(&p, OP_CONTROL_POINT), B(&p, 0), I(&p, 0), I(&p, 1), B(&p, 3), U32(&p, 1), F_SPECIAL(&p, 1);
    B(&p, OP_SET_PARAMS), B(&p, 0), B(&p, 1);
    B(&p, OP_SET_PARAMS), B(&p, 0), B(&p, 4), U32(&p, 2), F_SPECIAL(&p, 0);
    B(&p, OP_FREE), B(&p, 1);
    B(&p, OP_TRAIN), B(&p, 0), B(&p, 2), BATCH(&p, 2, 0, 0);                  /* NULL net */
    write_prog("bad-args.bin", &p);

    /* a conv net on a circle; context inference; checkpoint and resume */
    p.n = 0;
    B(&p, OP_MF_SIMPLE), B(&p, 0), B(&p, 2);
    B(&p, OP_NET_CREATE), B(&p, 0), B(&p, 0), I(&p, 36), I(&p, 0);
    B(&p, OP_INPUT_SHAPE), B(&p, 0), I(&p, 1), I(&p, 6), I(&p, 6);
    B(&p, OP_CONV), B(&p, 0), I(&p, 2), I(&p, 3), I(&p, 1), I(&p, 1), I(&p, 1);
    B(&p, OP_POOL), B(&p, 0), B(&p, 0), I(&p, 2);
    B(&p, OP_DENSE), B(&p, 0), I(&p, 3), I(&p, 0);
    B(&p, OP_CONV_STRATEGY), B(&p, 0), I(&p, 1);
    B(&p, OP_INIT), B(&p, 0), U32(&p, 11), U32(&p, 0);
    B(&p, OP_INFER), B(&p, 0), B(&p, 0), BATCH(&p, 6, 0, 0);
    B(&p, OP_CONV_STRATEGY), B(&p, 0), I(&p, 2);
    B(&p, OP_INFER), B(&p, 0), B(&p, 0), BATCH(&p, 6, 0, 0);
    B(&p, OP_OPT_CREATE), B(&p, 0), B(&p, 2), B(&p, 0), B(&p, 0);
    B(&p, OP_TRAIN), B(&p, 0), B(&p, 0), BATCH(&p, 4, 0, 0);
    B(&p, OP_INFER_CONTEXT), B(&p, 0), BATCH(&p, 3, 0, 0);
    B(&p, OP_INFER_CONTEXT), B(&p, 0), BATCH(&p, 3, 7, 0);                   /* no labels */
    B(&p, OP_CHECKPOINT), B(&p, 0), BATCH(&p, 4, 0, 0);
    B(&p, OP_NET_CREATE), B(&p, 1), B(&p, 0), I(&p, 8), I(&p, 1);            /* concat conv */
    B(&p, OP_INPUT_SHAPE), B(&p, 1), I(&p, 2), I(&p, 2), I(&p, 2);
    B(&p, OP_CONV), B(&p, 1), I(&p, 3), I(&p, 2), I(&p, 1), I(&p, 0), I(&p, 2);
    B(&p, OP_POOL), B(&p, 1), B(&p, 1), I(&p, 1);
    B(&p, OP_DENSE), B(&p, 1), I(&p, 2), I(&p, 0);
    B(&p, OP_INIT), B(&p, 1), U32(&p, 12), U32(&p, 0);
    B(&p, OP_OPT_CREATE), B(&p, 1), B(&p, 1), B(&p, 0), B(&p, 0);
    B(&p, OP_CHECKPOINT), B(&p, 1), BATCH(&p, 5, 0, 0);
    B(&p, OP_CONV), B(&p, 1), I(&p, 0), I(&p, 9), I(&p, 0), I(&p, 9), I(&p, 0);  /* rejected */
    write_prog("conv-context-checkpoint.bin", &p);

    /* the graph layers (OP_LAYERS: 0 residual, 1 layernorm, 2 groupnorm,
     * 3 film, 4 dropout, 5 global avgpool, 6 placement) on a circle net */
    p.n = 0;
    B(&p, OP_MF_SIMPLE), B(&p, 0), B(&p, 2);
    B(&p, OP_NET_CREATE), B(&p, 0), B(&p, 0), I(&p, 4), I(&p, 0);
    B(&p, OP_DENSE), B(&p, 0), I(&p, 5), I(&p, 2);
    B(&p, OP_LAYERS), B(&p, 0), B(&p, 1);
    B(&p, OP_LAYERS), B(&p, 0), B(&p, 3);
    B(&p, OP_LAYERS), B(&p, 0), B(&p, 0), I(&p, 0), I(&p, 1);
    B(&p, OP_LAYERS), B(&p, 0), B(&p, 4), F(&p, 0.25f);
    B(&p, OP_LAYERS), B(&p, 0), B(&p, 2), I(&p, 3);               /* rejected: not an image */
    B(&p, OP_LAYERS), B(&p, 0), B(&p, 5);                         /* rejected: not an image */
    B(&p, OP_LAYERS), B(&p, 0), B(&p, 0), I(&p, 7), I(&p, 0);     /* rejected: no layer 7 */
    B(&p, OP_LAYERS), B(&p, 0), B(&p, 6), I(&p, 0), I(&p, 0);     /* layer 0 at one point */
    B(&p, OP_DENSE), B(&p, 0), I(&p, 3), I(&p, 0);
    B(&p, OP_INIT), B(&p, 0), U32(&p, 42), U32(&p, 0);
    B(&p, OP_LAYERS), B(&p, 0), B(&p, 6), I(&p, 1), I(&p, 0);     /* rejected: after init */
    B(&p, OP_OPT_CREATE), B(&p, 0), B(&p, 1), B(&p, 0), B(&p, 0);
    B(&p, OP_TRAIN), B(&p, 0), B(&p, 0), BATCH(&p, 6, 0, 0);
    B(&p, OP_TRAIN), B(&p, 0), B(&p, 0), BATCH(&p, 1, 0, 0);
    B(&p, OP_INFER), B(&p, 0), B(&p, 0), BATCH(&p, 5, 0, 0);
    B(&p, OP_WEIGHTS_AT), B(&p, 0), I(&p, 1), B(&p, 100), B(&p, 0);
    B(&p, OP_CONTROL_POINT), B(&p, 0), I(&p, 0), I(&p, 1), B(&p, 0);
    B(&p, OP_SAVE_LOAD), B(&p, 0);
    write_prog("graph-layers.bin", &p);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus DIR\n");
        return 2;
    }
    root = argv[1];
    char sub[700];
    snprintf(sub, sizeof sub, "%s/load", root);
    mkdir(root, 0755), mkdir(sub, 0755);
    snprintf(sub, sizeof sub, "%s/api", root);
    mkdir(sub, 0755);
    snprintf(tmp_model, sizeof tmp_model, "%s/.gen.wmn", root);
    gen_load();
    gen_api();
    return 0;
}
