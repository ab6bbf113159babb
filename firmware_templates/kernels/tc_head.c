/*
 * tc_head_infer: runs the layers of model_data.c in order through static buffers and applies the
 * exit rule. Generic over the exported model and its dtype (tc_act_t); the sizes come from
 * model_data.h, the per-dtype inner loops from tc_kernels_s8.c / tc_kernels_f32.c, the input
 * permutation of index-free layers from tc_permute.c.
 */
#include "tc_head.h"
#include "tc_kernels.h"

#if TC_MAX_HIDDEN > 0
static tc_act_t tc_hidden[2][TC_MAX_HIDDEN] TC_ALIGN(4);
#endif
#if TC_XBUF_SIZE > 0
static tc_act_t tc_xbuf[TC_XBUF_SIZE] TC_ALIGN(4);
#define TC_SCRATCH tc_xbuf
#else
#define TC_SCRATCH ((tc_act_t *)0)
#endif

int tc_argmax(const tc_act_t *exit_logits)
{
    int i, best = 0;
    for (i = 1; i < TC_NUM_CLASSES; i++) {
        if (exit_logits[i] > exit_logits[best]) {
            best = i;
        }
    }
    return best;
}

int tc_exit_decision(const tc_act_t *exit_logits)
{
#if defined(TC_DTYPE_INT8)
    int32_t top1 = exit_logits[0], top2 = -129, v;
#else
    float top1 = exit_logits[0], top2 = exit_logits[1], v;
#endif
    int i;
#if defined(TC_DTYPE_FLOAT32)
    if (top2 > top1) {
        v = top1;
        top1 = top2;
        top2 = v;
    }
    for (i = 2; i < TC_NUM_CLASSES; i++) {
#else
    for (i = 1; i < TC_NUM_CLASSES; i++) {
#endif
        v = exit_logits[i];
        if (v > top1) {
            top2 = top1;
            top1 = v;
        } else if (v > top2) {
            top2 = v;
        }
    }
    /* float32: one IEEE subtraction and comparison, identical on every target and on the host. */
    return (top1 - top2) >= TC_EXIT_THRESHOLD;
}

int tc_head_infer(const tc_input_t *input, tc_act_t *split_out, tc_act_t *exit_logits_out)
{
    const tc_act_t *x = input;
    int i;
    for (i = 0; i < TC_NUM_LAYERS; i++) {
        tc_act_t *y;
        if (i == TC_NUM_HEAD_LAYERS - 1) {
            y = split_out;
        } else if (i == TC_NUM_LAYERS - 1) {
            y = exit_logits_out;
        } else {
#if TC_MAX_HIDDEN > 0
            y = tc_hidden[i & 1];
#else
            return -1; /* unreachable: the export sizes tc_hidden for every intermediate layer */
#endif
        }
        tc_layer_forward(&tc_layers[i], x, y, TC_SCRATCH);
        x = y;
    }
    return tc_exit_decision(exit_logits_out);
}
