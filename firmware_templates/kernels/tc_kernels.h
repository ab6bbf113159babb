/*
 * Layer kernels behind tc_head_infer (internal to the kernels; the firmware does not call them).
 */
#ifndef TC_KERNELS_H
#define TC_KERNELS_H

#include "model_data.h"

/* y[layer->n_out] = layer(x[layer->n_in]); scratch holds TC_XBUF_SIZE elements (index-free layers). */
void tc_layer_forward(const tc_layer_t *layer, const tc_act_t *x, tc_act_t *y, tc_act_t *scratch);

/* Permute x into buf for an index-free layer: buf[j] = x[(a * (j mod n_in) + b) mod n_in], j < extent. */
void tc_permute_extend(const tc_layer_t *layer, const tc_act_t *x, tc_act_t *buf);

#endif /* TC_KERNELS_H */
