/* Dense int8 baseline (see tc_dense_s8.c). */
#ifndef TC_DENSE_S8_H
#define TC_DENSE_S8_H
#include <stdint.h>

typedef struct {
    const int8_t *w; /* [n_out][n_in], dense */
    const int32_t *bias;
    const int32_t *mult;
    const int8_t *shift;
    int32_t n_in, n_out, in_zp, out_zp, act_min;
} tc_dense_layer_t;

int tc_dense_infer(const int8_t *input, int8_t *split_out, int8_t *exit_logits_out);

#endif
