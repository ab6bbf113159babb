/* Framing of the device protocol (docs/protocol.md): CRCs, the receive state machine and the
 * streaming frame writer. No board dependency except tc_board_write/tc_board_flush. */
#ifndef TC_PROTO_H
#define TC_PROTO_H

#include <stdint.h>

#define TC_PROTO_MAJOR 1u
#define TC_PROTO_MINOR 0u

#define TC_SYNC0 0xA5u
#define TC_SYNC1 0x5Au
#define TC_HEADER_LEN 8u /* sync0 sync1 type id(2) len(2) hcrc8 */
#define TC_FRAME_OVERHEAD 10u

/* Request types; a reply is the request type | TC_REPLY. */
#define TC_MSG_HELLO 0x01u
#define TC_MSG_INFER 0x02u
#define TC_MSG_ECHO 0x03u
#define TC_MSG_ERROR 0x7Fu
#define TC_REPLY 0x80u

/* Error codes carried by TC_MSG_ERROR. */
#define TC_ERR_BAD_CRC 1u
#define TC_ERR_TOO_LONG 2u
#define TC_ERR_UNKNOWN_TYPE 3u
#define TC_ERR_BAD_LENGTH 4u
#define TC_ERR_TIMEOUT 5u
#define TC_ERR_FAULT 6u

#define TC_ID_NONE 0xFFFFu

uint8_t tc_crc8(uint8_t crc, const uint8_t *data, uint32_t n);
uint16_t tc_crc16(uint16_t crc, const uint8_t *data, uint32_t n);

/* Parser events. */
#define TC_EV_NONE 0u
#define TC_EV_FRAME 1u /* a complete frame with valid checks: type, req_id, len, payload */
#define TC_EV_ERROR 2u /* answer with TC_MSG_ERROR: err, req_id, type, detail */

typedef struct {
    uint8_t kind;
    uint8_t type;
    uint8_t err;
    uint16_t req_id;
    uint16_t len;
    uint16_t detail;
} tc_event_t;

typedef struct {
    uint8_t state;
    uint8_t hpos;
    uint8_t hdr[TC_HEADER_LEN];
    uint8_t crc_lo;
    uint8_t type;
    uint16_t req_id;
    uint16_t len;
    uint16_t pos;
    uint16_t crc;
    uint16_t cap;
    uint8_t *payload; /* caller-owned buffer of cap bytes */
} tc_parser_t;

void tc_parser_init(tc_parser_t *p, uint8_t *payload_buf, uint16_t cap);
/* Nonzero while a frame is partially received (the inter-byte timeout applies). */
int tc_parser_busy(const tc_parser_t *p);
/* Feed one received byte. */
tc_event_t tc_parser_feed(tc_parser_t *p, uint8_t byte);
/* The inter-byte timeout expired: drop the partial frame (TIMEOUT error once the header is known). */
tc_event_t tc_parser_timeout(tc_parser_t *p);

/* Streaming frame writer (one frame at a time; the CRC is accumulated as bytes go out). */
void tc_tx_begin(uint8_t type, uint16_t req_id, uint16_t len);
void tc_tx_put(const void *data, uint32_t n);
void tc_tx_u8(uint8_t v);
void tc_tx_u16(uint16_t v);
void tc_tx_u32(uint32_t v);
void tc_tx_end(void);
void tc_send_error(uint16_t req_id, uint8_t code, uint8_t req_type, uint16_t detail);

#endif
