/* Minimal model_data.h for the requantization unit test (tests/c/requant_main.c). */
#ifndef TC_MODEL_DATA_H
#define TC_MODEL_DATA_H
#include <stdint.h>
#define TC_DTYPE_INT8 1
typedef int8_t tc_input_t;
typedef int8_t tc_act_t;
#define TC_MAX_OUT 64
#include "tc_model.h"
#endif
