/*
 * Baseline for benchmarks/kernel_instructions.py: the same int8 head + exit as a plain dense loop over
 * the equivalent dense FULLY_CONNECTED weights (zeros where edges are missing), TFLite Micro
 * arithmetic, no DSP instructions, no index tables. The data comes from the generated
 * tc_dense_data.h. It must give the same outputs as tc_head_infer (the benchmark checks).
 */
#include "tc_dense_s8.h"
#include "tc_dense_data.h" /* TC_DENSE_NUM_LAYERS, tc_dense_layers[] */
#include "tc_head.h"

static int8_t tc_dense_buf[2][TC_DENSE_MAX_WIDTH];

static int32_t tc_dense_requant(int32_t acc, int32_t mult, int32_t shift)
{
    /* tflite::MultiplyByQuantizedMultiplier, double rounding, written as in gemmlowp. */
    const int32_t left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    const int64_t ab = (int64_t)(int32_t)((uint32_t)acc << left) * mult;
    const int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    const int32_t high = (int32_t)((ab + nudge) / ((int64_t)1 << 31));
    const int32_t mask = (int32_t)((1u << right) - 1u);
    const int32_t remainder = high & mask;
    const int32_t threshold = (mask >> 1) + (high < 0 ? 1 : 0);
    return (high >> right) + (remainder > threshold ? 1 : 0);
}

int tc_dense_infer(const int8_t *input, int8_t *split_out, int8_t *exit_logits_out)
{
    const int8_t *x = input;
    int l, o, i;
    for (l = 0; l < TC_DENSE_NUM_LAYERS; l++) {
        const tc_dense_layer_t *L = &tc_dense_layers[l];
        int8_t *y = l == TC_NUM_HEAD_LAYERS - 1 ? split_out
                    : l == TC_DENSE_NUM_LAYERS - 1 ? exit_logits_out
                                                   : tc_dense_buf[l & 1];
        const int8_t *w = L->w;
        for (o = 0; o < L->n_out; o++, w += L->n_in) {
            int32_t acc = L->bias[o];
            for (i = 0; i < L->n_in; i++) {
                acc += (x[i] - L->in_zp) * w[i];
            }
            acc = tc_dense_requant(acc, L->mult[o], L->shift[o]) + L->out_zp;
            acc = acc > 127 ? 127 : acc;
            y[o] = (int8_t)(acc < L->act_min ? L->act_min : acc);
        }
        x = y;
    }
    return tc_exit_decision(exit_logits_out);
}
