/* layers/table.c -- every layer kind, indexed by wm_layer_kind (its code in
 * model files). A new kind is one row here and one file beside this one. */
#include "layers/layer.h"

const wm_layer_ops *const wmi_layer_ops[WM_LAYER_N_KINDS] = {
    [WM_LAYER_DENSE] = &wmi_dense_ops,
    [WM_LAYER_CONV] = &wmi_conv2d_ops,
    [WM_LAYER_MAXPOOL] = &wmi_maxpool_ops,
    [WM_LAYER_AVGPOOL] = &wmi_avgpool_ops,
    [WM_LAYER_RESIDUAL] = &wmi_residual_ops,
    [WM_LAYER_LAYERNORM] = &wmi_layernorm_ops,
    [WM_LAYER_GROUPNORM] = &wmi_groupnorm_ops,
    [WM_LAYER_FILM] = &wmi_film_ops,
    [WM_LAYER_DROPOUT] = &wmi_dropout_ops,
    [WM_LAYER_GLOBAL_AVGPOOL] = &wmi_global_avgpool_ops,
};
