/* Framing of the device protocol: see docs/protocol.md. */
#include "tc_proto.h"

#include "tc_board.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the device protocol sends tensors in memory order: only little-endian targets are supported"
#endif

enum { ST_HUNT = 0, ST_SYNC1, ST_HEADER, ST_PAYLOAD, ST_CRC0, ST_CRC1 };

/* Bitwise CRCs: a few hundred bytes per frame do not justify lookup tables in flash. */
uint8_t tc_crc8(uint8_t crc, const uint8_t *data, uint32_t n)
{
    uint32_t i;
    int b;
    for (i = 0; i < n; i++) {
        crc ^= data[i];
        for (b = 0; b < 8; b++) {
            uint32_t c = (uint32_t)crc << 1;
            crc = (uint8_t)((crc & 0x80u) ? (c ^ 0x07u) : c);
        }
    }
    return crc;
}

uint16_t tc_crc16(uint16_t crc, const uint8_t *data, uint32_t n)
{
    uint32_t i;
    int b;
    for (i = 0; i < n; i++) {
        crc ^= (uint16_t)((uint16_t)data[i] << 8);
        for (b = 0; b < 8; b++) {
            uint32_t c = (uint32_t)crc << 1;
            crc = (uint16_t)((crc & 0x8000u) ? (c ^ 0x1021u) : c);
        }
    }
    return crc;
}

static tc_event_t no_event(void)
{
    tc_event_t ev = {TC_EV_NONE, 0, 0, 0, 0, 0};
    return ev;
}

static tc_event_t error_event(const tc_parser_t *p, uint8_t err, uint16_t detail)
{
    tc_event_t ev;
    ev.kind = TC_EV_ERROR;
    ev.type = p->type;
    ev.err = err;
    ev.req_id = p->req_id;
    ev.len = p->len;
    ev.detail = detail;
    return ev;
}

void tc_parser_init(tc_parser_t *p, uint8_t *payload_buf, uint16_t cap)
{
    uint8_t i;
    p->state = ST_HUNT;
    p->hpos = 0;
    for (i = 0; i < TC_HEADER_LEN; i++) {
        p->hdr[i] = 0;
    }
    p->crc_lo = 0;
    p->type = 0;
    p->req_id = 0;
    p->len = 0;
    p->pos = 0;
    p->crc = 0;
    p->cap = cap;
    p->payload = payload_buf;
}

int tc_parser_busy(const tc_parser_t *p)
{
    return p->state != ST_HUNT;
}

/* The header check failed: the real frame may start inside the 7 header bytes after the first
 * A5. Keep the bytes from the next A5 5A (or a trailing A5) and continue from there. */
static void rescan_header(tc_parser_t *p)
{
    uint8_t i, n, k;
    for (i = 1; i < TC_HEADER_LEN; i++) {
        if (p->hdr[i] == TC_SYNC0 && (i + 1u == TC_HEADER_LEN || p->hdr[i + 1u] == TC_SYNC1)) {
            break;
        }
    }
    if (i == TC_HEADER_LEN) {
        p->state = ST_HUNT;
        p->hpos = 0;
        return;
    }
    n = (uint8_t)(TC_HEADER_LEN - i);
    for (k = 0; k < n; k++) {
        p->hdr[k] = p->hdr[i + k];
    }
    p->hpos = n;
    p->state = (n == 1u) ? ST_SYNC1 : ST_HEADER;
}

static tc_event_t header_complete(tc_parser_t *p)
{
    if (tc_crc8(0, &p->hdr[2], 5) != p->hdr[7]) {
        rescan_header(p);
        return no_event();
    }
    p->type = p->hdr[2];
    p->req_id = (uint16_t)(p->hdr[3] | (p->hdr[4] << 8));
    p->len = (uint16_t)(p->hdr[5] | (p->hdr[6] << 8));
    p->pos = 0;
    p->crc = tc_crc16(0xFFFFu, &p->hdr[2], 6);
    if (p->len > p->cap) {
        p->state = ST_HUNT;
        return error_event(p, TC_ERR_TOO_LONG, p->cap);
    }
    p->state = (p->len == 0u) ? ST_CRC0 : ST_PAYLOAD;
    return no_event();
}

tc_event_t tc_parser_feed(tc_parser_t *p, uint8_t byte)
{
    switch (p->state) {
    case ST_HUNT:
        if (byte == TC_SYNC0) {
            p->hdr[0] = byte;
            p->hpos = 1;
            p->state = ST_SYNC1;
        }
        return no_event();
    case ST_SYNC1:
        if (byte == TC_SYNC1) {
            p->hdr[1] = byte;
            p->hpos = 2;
            p->state = ST_HEADER;
        } else if (byte != TC_SYNC0) {
            p->state = ST_HUNT;
        }
        return no_event();
    case ST_HEADER:
        p->hdr[p->hpos++] = byte;
        if (p->hpos < TC_HEADER_LEN) {
            return no_event();
        }
        return header_complete(p);
    case ST_PAYLOAD:
        p->payload[p->pos++] = byte;
        if (p->pos == p->len) {
            p->state = ST_CRC0;
        }
        return no_event();
    case ST_CRC0:
        p->crc_lo = byte;
        p->state = ST_CRC1;
        return no_event();
    case ST_CRC1:
    default: {
        uint16_t got = (uint16_t)(p->crc_lo | (byte << 8));
        uint16_t want = tc_crc16(p->crc, p->payload, p->len);
        p->state = ST_HUNT;
        if (got != want) {
            return error_event(p, TC_ERR_BAD_CRC, 0);
        }
        {
            tc_event_t ev = error_event(p, 0, 0);
            ev.kind = TC_EV_FRAME;
            return ev;
        }
    }
    }
}

tc_event_t tc_parser_timeout(tc_parser_t *p)
{
    uint8_t state = p->state;
    p->state = ST_HUNT;
    if (state == ST_PAYLOAD || state == ST_CRC0 || state == ST_CRC1) {
        return error_event(p, TC_ERR_TIMEOUT, p->pos);
    }
    return no_event();
}

/* ---- writer ---------------------------------------------------------------------------- */
static uint16_t g_tx_crc;

static void tx_raw(const uint8_t *data, uint32_t n)
{
    g_tx_crc = tc_crc16(g_tx_crc, data, n);
    tc_board_write(data, n);
}

void tc_tx_begin(uint8_t type, uint16_t req_id, uint16_t len)
{
    uint8_t h[TC_HEADER_LEN];
    h[0] = TC_SYNC0;
    h[1] = TC_SYNC1;
    h[2] = type;
    h[3] = (uint8_t)(req_id & 0xFFu);
    h[4] = (uint8_t)(req_id >> 8);
    h[5] = (uint8_t)(len & 0xFFu);
    h[6] = (uint8_t)(len >> 8);
    h[7] = tc_crc8(0, &h[2], 5);
    tc_board_write(h, 2);
    g_tx_crc = 0xFFFFu;
    tx_raw(&h[2], 6);
}

void tc_tx_put(const void *data, uint32_t n)
{
    tx_raw((const uint8_t *)data, n);
}

void tc_tx_u8(uint8_t v)
{
    tx_raw(&v, 1);
}

void tc_tx_u16(uint16_t v)
{
    uint8_t b[2];
    b[0] = (uint8_t)(v & 0xFFu);
    b[1] = (uint8_t)(v >> 8);
    tx_raw(b, 2);
}

void tc_tx_u32(uint32_t v)
{
    uint8_t b[4];
    b[0] = (uint8_t)(v & 0xFFu);
    b[1] = (uint8_t)((v >> 8) & 0xFFu);
    b[2] = (uint8_t)((v >> 16) & 0xFFu);
    b[3] = (uint8_t)(v >> 24);
    tx_raw(b, 4);
}

void tc_tx_end(void)
{
    uint8_t c[2];
    c[0] = (uint8_t)(g_tx_crc & 0xFFu);
    c[1] = (uint8_t)(g_tx_crc >> 8);
    tc_board_write(c, 2);
    tc_board_flush();
}

void tc_send_error(uint16_t req_id, uint8_t code, uint8_t req_type, uint16_t detail)
{
    tc_tx_begin(TC_MSG_ERROR, req_id, 4);
    tc_tx_u8(code);
    tc_tx_u8(req_type);
    tc_tx_u16(detail);
    tc_tx_end();
}
