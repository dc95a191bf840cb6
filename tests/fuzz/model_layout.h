/* model_layout.h -- where each field of a model file is, following
 * docs/model-format.md (versions 1, 2 and 3). Tests use it to corrupt one field at a
 * time and fix the CRC, so the loader's checks behind the checksum are
 * reached; gen_corpus uses it for the fuzz seeds. */
#ifndef WM_MODEL_LAYOUT_H
#define WM_MODEL_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#define WL_MAX_LAYERS 16

typedef struct {
    size_t version, header_bytes, manifold;   /* manifold: its kind field */
    size_t manifold_dim, manifold_K;
    size_t fourier_h, bspline_n, bspline_degree, bspline_closed, product, custom; /* 0: none */
    size_t cond, n_inputs, shape, loss, n_layers;
    size_t layer[WL_MAX_LAYERS];              /* each layer's kind field */
    size_t field[WL_MAX_LAYERS];              /* its first field (version 2, 3: after the placement) */
    int layers;
    size_t seed;                              /* version 3: the init seed (u64); 0: none */
    size_t header_end, n_params, params, has_optimizer;
    size_t opt_kind, opt_lr, opt_steps, opt_moments; /* 0: no optimizer section */
    size_t crc;
    uint64_t count;                           /* n_params as stored */
} wm_layout;

static inline uint32_t wl_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int wl_manifold(const uint8_t *d, size_t len, size_t *pos, int depth, wm_layout *L)
{
    if (depth > 16 || *pos + 12 > len)
        return -1;
    size_t at = *pos;
    uint32_t kind = wl_u32(d + at), dim = wl_u32(d + at + 4);
    if (depth == 0)
        L->manifold = at, L->manifold_dim = at + 4, L->manifold_K = at + 8;
    if (dim > 16)
        return -1;
    *pos += 12 + 4 * (size_t)dim;
    switch (kind) {
    case 2:
        if (!L->fourier_h)
            L->fourier_h = *pos;
        *pos += 4;
        break;
    case 3:
        if (!L->bspline_n)
            L->bspline_n = *pos, L->bspline_degree = *pos + 4, L->bspline_closed = *pos + 8;
        *pos += 12;
        break;
    case 4:
        if (!L->product)
            L->product = at;
        if (wl_manifold(d, len, pos, depth + 1, L) || wl_manifold(d, len, pos, depth + 1, L))
            return -1;
        break;
    case 5:
        if (!L->custom)
            L->custom = at;
        break;
    default:
        break;
    }
    return *pos <= len ? 0 : -1;
}

/* Fill L for the file d[0..len); returns 0, or -1 if it does not parse. */
static inline int wl_parse(const uint8_t *d, size_t len, wm_layout *L)
{
    size_t pos = 12;
    *L = (wm_layout){0};
    if (len < 16)
        return -1;
    L->version = 4, L->header_bytes = 8, L->crc = len - 4;
    if (wl_manifold(d, len - 4, &pos, 0, L) || pos + 28 > len - 4)
        return -1;
    L->cond = pos, L->n_inputs = pos + 4, L->shape = pos + 8, L->loss = pos + 20, L->n_layers = pos + 24;
    uint32_t n_layers = wl_u32(d + pos + 24), version = wl_u32(d + 4);
    /* fields per kind: dense, conv2d, maxpool, avgpool, residual, layernorm,
     * groupnorm, film, dropout, global_avgpool */
    static const int n_fields[] = {2, 5, 1, 1, 2, 0, 1, 0, 1, 0};
    pos += 28;
    for (uint32_t l = 0; l < n_layers; l++) {
        if (pos + 4 > len - 4)
            return -1;
        uint32_t kind = wl_u32(d + pos);
        size_t first = pos + 4 + (version >= 2 ? 4 : 0);
        if (l < WL_MAX_LAYERS)
            L->layer[l] = pos, L->field[l] = first;
        pos = first + 4 * (size_t)(kind < 10 ? n_fields[kind] : 1);
    }
    L->layers = (int)(n_layers < WL_MAX_LAYERS ? n_layers : WL_MAX_LAYERS);
    if (version >= 3)
        L->seed = pos, pos += 8;
    L->header_end = pos;
    if (pos + 8 > len - 4)
        return -1;
    L->n_params = pos;
    L->count = wl_u32(d + pos) | (uint64_t)wl_u32(d + pos + 4) << 32;
    L->params = pos + 8;
    if (L->count > (len - 4 - L->params) / 4)
        return -1;
    L->has_optimizer = L->params + 4 * (size_t)L->count;
    if (L->has_optimizer + 4 > len - 4)
        return -1;
    if (wl_u32(d + L->has_optimizer) == 1) {
        L->opt_kind = L->has_optimizer + 4;
        L->opt_lr = L->opt_kind + 4;
        L->opt_steps = L->opt_lr + 28;
        L->opt_moments = L->opt_steps + 8;
    }
    return 0;
}

#endif
