/*
 * Head + early exit inference: the only entry point the firmware calls.
 *
 *   #include "model_data.h"   (TC_INPUT_SIZE, TC_SPLIT_SIZE, TC_NUM_CLASSES, tc_input_t, tc_act_t, ...)
 *   #include "tc_head.h"
 *   int tc_head_infer(const tc_input_t *input, tc_act_t *split_out, tc_act_t *exit_logits_out);
 *
 * input[TC_INPUT_SIZE] is the encoded sample (int8: round(x / TC_INPUT_SCALE) + TC_INPUT_ZERO_POINT;
 * float32: x), split_out[TC_SPLIT_SIZE] receives the split activation and
 * exit_logits_out[TC_NUM_CLASSES] the exit logits. Returns 1 when the exit is confident (top-1 minus
 * top-2 exit logit >= TC_EXIT_THRESHOLD: answer on the device), 0 when the split activation must go
 * to the tail. Not reentrant: it uses static buffers sized from the model. No allocation, no stdio.
 */
#ifndef TC_HEAD_H
#define TC_HEAD_H

#include "model_data.h"

#ifdef __cplusplus
extern "C" {
#endif

int tc_head_infer(const tc_input_t *input, tc_act_t *split_out, tc_act_t *exit_logits_out);

/* The exit rule alone, on TC_NUM_CLASSES exit logits (1 = confident). */
int tc_exit_decision(const tc_act_t *exit_logits);

/* Index of the largest exit logit (the first one on ties): the class answered on the device. */
int tc_argmax(const tc_act_t *exit_logits);

#ifdef __cplusplus
}
#endif

#endif /* TC_HEAD_H */
