/* What a board provides to the shared firmware (tc_app.c, tc_proto.c). One implementation per
 * board family: boards/cortex_m (+ a UART driver), host/, arduino/. */
#ifndef TC_BOARD_H
#define TC_BOARD_H

#include <stdint.h>

/* Counter kinds reported in HELLO and INFER replies (docs/protocol.md). */
#define TC_COUNTER_NONE 0u
#define TC_COUNTER_DWT_CYCLES 1u
#define TC_COUNTER_SYSTICK 2u
#define TC_COUNTER_HOST_NS 3u
#define TC_COUNTER_MICROS 4u

void tc_board_init(void);
/* Wait up to timeout_ms for one received byte: 1 = got it, 0 = timeout, -1 = link closed. */
int tc_board_read(uint8_t *byte, uint32_t timeout_ms);
void tc_board_write(const uint8_t *data, uint32_t n);
void tc_board_flush(void);
uint32_t tc_board_millis(void);
/* Free-running counter of kind tc_board_counter_kind(), at tc_board_counter_hz() (wraps mod 2^32). */
uint32_t tc_board_counter(void);
uint8_t tc_board_counter_kind(void);
uint32_t tc_board_counter_hz(void);

#endif
