/*
 * Layer descriptors of the exported head + exit (filled by `toolchain export c` in model_data.c).
 *
 * Include through model_data.h, which defines exactly one of TC_DTYPE_INT8 / TC_DTYPE_FLOAT32 first.
 * Every layer computes  y[r] = act(bias[r] + sum_m x[in(r, m)] * w[r * d_in + m])  for r < n_out,
 * with the packed weights w[n_out][d_in] in output-neuron order. How in(r, m) is found:
 *   TC_LAYER_TABLE   idx8/idx16[r * d_in + m] (the smallest unsigned type that holds n_in - 1)
 *   TC_LAYER_AFFINE  p((r * d_in + m) mod n_in) with p(j) = (a * j + b) mod n_in: the input is
 *                    permuted once into a cyclically extended buffer of `extent` elements, after
 *                    which row r reads the contiguous run starting at (r * d_in) mod n_in.
 *                    Rows r + k * n_win (k < group) read the same run.
 *   TC_LAYER_DENSE   m (d_in == n_in; n_win == 1, group == n_out)
 * int8 layers (TFLite Micro arithmetic): bias already holds bias - x_zero_point * sum_m w[r][m], so
 * the kernels multiply raw int8 inputs; acc is requantized with (mult[r], shift[r]) in double
 * rounding, the output zero point is added and the result clamped to [act_min, 127].
 */
#ifndef TC_MODEL_H
#define TC_MODEL_H

#include <stdint.h>

#if !defined(TC_DTYPE_INT8) && !defined(TC_DTYPE_FLOAT32)
#error "include model_data.h (it defines TC_DTYPE_INT8 or TC_DTYPE_FLOAT32), not tc_model.h"
#endif
#if defined(TC_DTYPE_INT8) && defined(TC_DTYPE_FLOAT32)
#error "model_data.h must define only one of TC_DTYPE_INT8 and TC_DTYPE_FLOAT32"
#endif

#if defined(__GNUC__) || defined(__clang__)
#define TC_ALIGN(n) __attribute__((aligned(n)))
#else
#define TC_ALIGN(n)
#endif

#define TC_LAYER_DENSE 0
#define TC_LAYER_TABLE 1
#define TC_LAYER_AFFINE 2

typedef struct {
#if defined(TC_DTYPE_INT8)
    const int8_t *w;        /* [n_out][d_in] */
    const int32_t *bias;    /* [n_out], input zero point folded in */
    const int32_t *mult;    /* [n_out] requantization multiplier (Q31) */
    const int8_t *shift;    /* [n_out] requantization exponent (> 0: left shift) */
#else
    const float *w;         /* [n_out][d_in] */
    const float *bias;      /* [n_out] */
    const void *unused_a;   /* keeps the descriptor layout independent of the dtype */
    const void *unused_b;
#endif
    const uint8_t *idx8;    /* TC_LAYER_TABLE with n_in <= 256, else NULL */
    const uint16_t *idx16;  /* TC_LAYER_TABLE with n_in > 256, else NULL */
    int32_t out_zp;         /* int8: output zero point */
    int32_t act_min;        /* int8: lower clamp (the output zero point when ReLU is fused) */
    uint16_t n_in, n_out, d_in;
    uint16_t a, b;          /* TC_LAYER_AFFINE permutation */
    uint16_t n_win, group;  /* TC_LAYER_AFFINE / DENSE window grouping */
    uint16_t extent;        /* TC_LAYER_AFFINE: elements of the permuted, extended input (0: read x) */
    uint8_t kind;
    uint8_t relu;           /* float32: apply ReLU (int8 folds it into act_min) */
} tc_layer_t;

#endif /* TC_MODEL_H */
