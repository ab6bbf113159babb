/* Command handling and main loop, shared verbatim by every board (docs/protocol.md). */
#include "tc_app.h"

#include <string.h>

#include "model_data.h"
#include "tc_board.h"
#include "tc_config.h"
#include "tc_head.h"
#include "tc_proto.h"

#ifndef TC_INTERBYTE_TIMEOUT_MS
#define TC_INTERBYTE_TIMEOUT_MS 250u
#endif
/* How long one idle wait lasts before the loop runs again (no work is done on wakeup). */
#define TC_IDLE_WAIT_MS 1000u

#if defined(TC_DTYPE_INT8)
#define TC_DTYPE_CODE 1u
#elif defined(TC_DTYPE_FLOAT32)
#define TC_DTYPE_CODE 2u
#else
#error "model_data.h must define TC_DTYPE_INT8 or TC_DTYPE_FLOAT32"
#endif

#define TC_INPUT_BYTES ((uint32_t)TC_INPUT_SIZE * (uint32_t)sizeof(tc_input_t))
#define TC_MAX_PAYLOAD (TC_INPUT_BYTES > 256u ? TC_INPUT_BYTES : 256u)
#if TC_INPUT_SIZE * 4 > 65535
#error "the input does not fit into one frame (payload length is 16 bits)"
#endif

#define TC_CAP_INFER 0x1u
#define TC_CAP_ECHO 0x2u
#define TC_CAP_COUNTER 0x4u

#ifndef TC_BUILD_INFO
#if defined(__VERSION__)
#define TC_BUILD_INFO "gcc " __VERSION__
#else
#define TC_BUILD_INFO "unknown compiler"
#endif
#endif

static uint8_t g_rx[TC_MAX_PAYLOAD];
static tc_parser_t g_parser;
static tc_input_t g_input[TC_INPUT_SIZE];
static tc_act_t g_split[TC_SPLIT_SIZE];
static tc_act_t g_exit[TC_NUM_CLASSES];

static void tx_f32(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    tc_tx_u32(u);
}

static void tx_i32(int32_t v)
{
    tc_tx_u32((uint32_t)v);
}

static uint8_t str_len(const char *s)
{
    uint32_t n = (uint32_t)strlen(s);
    return (uint8_t)(n > 255u ? 255u : n);
}

static void handle_hello(uint16_t req_id)
{
    const char *name = TC_TARGET_NAME;
    const char *info = TC_BUILD_INFO;
    uint8_t name_len = str_len(name);
    uint8_t info_len = str_len(info);
    uint16_t len = (uint16_t)(52u + 1u + TC_MODEL_HASH_LEN + 1u + name_len + 1u + info_len);

    tc_tx_begin(TC_MSG_HELLO | TC_REPLY, req_id, len);
    tc_tx_u8(TC_PROTO_MAJOR);
    tc_tx_u8(TC_PROTO_MINOR);
    tc_tx_u16((uint16_t)TC_MAX_PAYLOAD);
    tc_tx_u32(TC_CAP_INFER | TC_CAP_ECHO |
              (tc_board_counter_kind() != TC_COUNTER_NONE ? TC_CAP_COUNTER : 0u));
    tc_tx_u8(TC_DTYPE_CODE);
    tc_tx_u8(tc_board_counter_kind());
    tc_tx_u16((uint16_t)TC_INTERBYTE_TIMEOUT_MS);
    tc_tx_u32(tc_board_counter_hz());
    tc_tx_u16((uint16_t)TC_INPUT_SIZE);
    tc_tx_u16((uint16_t)TC_SPLIT_SIZE);
    tc_tx_u16((uint16_t)TC_NUM_CLASSES);
    tc_tx_u16(0);
#if defined(TC_DTYPE_INT8)
    tx_f32((float)TC_INPUT_SCALE);
    tx_i32((int32_t)TC_INPUT_ZERO_POINT);
    tx_f32((float)TC_SPLIT_SCALE);
    tx_i32((int32_t)TC_SPLIT_ZERO_POINT);
    tx_f32((float)TC_EXIT_SCALE);
    tx_i32((int32_t)TC_EXIT_ZERO_POINT);
    tx_i32((int32_t)TC_EXIT_THRESHOLD);
#else
    tx_f32(0.0f);
    tx_i32(0);
    tx_f32(0.0f);
    tx_i32(0);
    tx_f32(0.0f);
    tx_i32(0);
    tx_f32((float)TC_EXIT_THRESHOLD);
#endif
    tc_tx_u8((uint8_t)TC_MODEL_HASH_LEN);
    tc_tx_put(tc_model_hash, TC_MODEL_HASH_LEN);
    tc_tx_u8(name_len);
    tc_tx_put(name, name_len);
    tc_tx_u8(info_len);
    tc_tx_put(info, info_len);
    tc_tx_end();
}

static void handle_infer(uint16_t req_id)
{
    uint32_t t0, t1;
    uint8_t cls = 0;
    uint16_t i;
    int taken;

    memcpy(g_input, g_rx, TC_INPUT_BYTES);
    t0 = tc_board_counter();
    taken = tc_head_infer(g_input, g_split, g_exit);
    t1 = tc_board_counter();
    for (i = 1; i < TC_NUM_CLASSES; i++) {
        if (g_exit[i] > g_exit[cls]) {
            cls = (uint8_t)i;
        }
    }
    tc_tx_begin(TC_MSG_INFER | TC_REPLY, req_id,
                (uint16_t)(8u + sizeof g_split + sizeof g_exit));
    tc_tx_u8(taken ? 1u : 0u);
    tc_tx_u8(cls);
    tc_tx_u8(tc_board_counter_kind());
    tc_tx_u8(0);
    tc_tx_u32(t1 - t0);
    tc_tx_put(g_split, sizeof g_split);
    tc_tx_put(g_exit, sizeof g_exit);
    tc_tx_end();
}

static void handle_frame(const tc_event_t *ev)
{
    switch (ev->type) {
    case TC_MSG_HELLO:
        if (ev->len != 0u) {
            tc_send_error(ev->req_id, TC_ERR_BAD_LENGTH, ev->type, 0);
        } else {
            handle_hello(ev->req_id);
        }
        break;
    case TC_MSG_INFER:
        if (ev->len != TC_INPUT_BYTES) {
            tc_send_error(ev->req_id, TC_ERR_BAD_LENGTH, ev->type, (uint16_t)TC_INPUT_BYTES);
        } else {
            handle_infer(ev->req_id);
        }
        break;
    case TC_MSG_ECHO:
        tc_tx_begin(TC_MSG_ECHO | TC_REPLY, ev->req_id, ev->len);
        tc_tx_put(g_rx, ev->len);
        tc_tx_end();
        break;
    default:
        tc_send_error(ev->req_id, TC_ERR_UNKNOWN_TYPE, ev->type, 0);
        break;
    }
}

static void handle_event(const tc_event_t *ev)
{
    if (ev->kind == TC_EV_FRAME) {
        handle_frame(ev);
    } else if (ev->kind == TC_EV_ERROR) {
        tc_send_error(ev->req_id, ev->err, ev->type, ev->detail);
    }
}

void tc_app_init(void)
{
    tc_parser_init(&g_parser, g_rx, (uint16_t)TC_MAX_PAYLOAD);
}

int tc_app_poll(void)
{
    uint8_t byte;
    tc_event_t ev;
    int busy = tc_parser_busy(&g_parser);
    int r = tc_board_read(&byte, busy ? TC_INTERBYTE_TIMEOUT_MS : TC_IDLE_WAIT_MS);
    if (r < 0) {
        return -1;
    }
    if (r == 0) {
        if (busy) {
            ev = tc_parser_timeout(&g_parser);
            handle_event(&ev);
        }
        return 0;
    }
    ev = tc_parser_feed(&g_parser, byte);
    handle_event(&ev);
    return 0;
}

void tc_app_run(void)
{
    tc_app_init();
    while (tc_app_poll() >= 0) {
    }
}

void tc_app_report_fault(uint32_t cfsr)
{
    tc_send_error(TC_ID_NONE, TC_ERR_FAULT, 0, (uint16_t)(cfsr & 0xFFFFu));
}
