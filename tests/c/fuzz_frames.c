/* Fuzz harness for the device side of the protocol (common/tc_proto.c + tc_app.c with a real
 * exported model), built for the host with ASan and UBSan by tests/test_protocol_fuzz.py.
 *
 * Each case is a byte stream of 1..4 segments: valid requests, mutated requests (bit flips, dropped,
 * duplicated and inserted bytes, truncation, rewritten length with a matching header check, wrong
 * types and lengths) and random garbage. The stream goes through tc_app_poll() byte by byte, then one
 * inter-byte timeout. The replies must equal, frame for frame, what an independent model of
 * docs/protocol.md predicts: a greedy scan for A5 5A with a valid header check. So a bad frame is
 * answered with the right error or dropped, never with a success reply, and no valid frame is lost.
 *
 * usage: fuzz_frames CASES SEED    (exit 0 and a summary line when every case matched) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_data.h"
#include "tc_app.h"
#include "tc_board.h"
#include "tc_proto.h"

#define INPUT_BYTES ((uint32_t)TC_INPUT_SIZE * (uint32_t)sizeof(tc_input_t))
#define CAP (INPUT_BYTES > 256u ? INPUT_BYTES : 256u)
#define INFER_REPLY (8u + ((uint32_t)TC_SPLIT_SIZE + (uint32_t)TC_NUM_CLASSES) * (uint32_t)sizeof(tc_act_t))
#define STREAM_MAX (4u * (CAP + 64u) + 4096u)
#define OUT_MAX (64u * 1024u)
#define EXP_MAX 256

/* ---- the board the harness provides: bytes in from a buffer, bytes out into a buffer ---------- */
static const uint8_t *g_in;
static uint32_t g_in_len, g_in_pos;
static int g_timeout_pending;
static uint8_t g_out[OUT_MAX];
static uint32_t g_out_len;

void tc_board_init(void) {}

int tc_board_read(uint8_t *byte, uint32_t timeout_ms)
{
    (void)timeout_ms;
    if (g_in_pos < g_in_len) {
        *byte = g_in[g_in_pos++];
        return 1;
    }
    if (g_timeout_pending) {
        g_timeout_pending = 0;
        return 0;
    }
    return -1;
}

void tc_board_write(const uint8_t *data, uint32_t n)
{
    if (g_out_len + n > OUT_MAX) {
        fprintf(stderr, "output overflow\n");
        abort();
    }
    memcpy(g_out + g_out_len, data, n);
    g_out_len += n;
}

void tc_board_flush(void) {}
uint32_t tc_board_millis(void) { return 0; }
uint32_t tc_board_counter(void) { return 0; }
uint8_t tc_board_counter_kind(void) { return TC_COUNTER_NONE; }
uint32_t tc_board_counter_hz(void) { return 0; }

/* ---- helpers -------------------------------------------------------------------------------- */
static uint64_t g_rng;
static uint32_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 11);
}
static uint32_t below(uint32_t n) { return n ? rnd() % n : 0; }

typedef struct {
    uint8_t type;
    uint8_t req_type; /* for errors: the request type the device names */
    uint16_t id;
    uint8_t err;      /* 0 = success reply expected */
    uint16_t detail;  /* for errors */
    uint16_t len;     /* for success: reply payload length */
    uint32_t echo_at; /* ECHO: offset of the request payload in the stream */
} expect_t;

static uint32_t put_frame(uint8_t *s, uint8_t type, uint16_t id, const uint8_t *payload, uint16_t len)
{
    uint16_t crc;
    s[0] = TC_SYNC0;
    s[1] = TC_SYNC1;
    s[2] = type;
    s[3] = (uint8_t)id;
    s[4] = (uint8_t)(id >> 8);
    s[5] = (uint8_t)len;
    s[6] = (uint8_t)(len >> 8);
    s[7] = tc_crc8(0, s + 2, 5);
    if (len) {
        memcpy(s + 8, payload, len);
    }
    crc = tc_crc16(0xFFFFu, s + 2, 6u + len);
    s[8 + len] = (uint8_t)crc;
    s[9 + len] = (uint8_t)(crc >> 8);
    return 10u + len;
}

/* ---- the model of the spec: which replies a stream must produce ------------------------------ */
static int model(const uint8_t *s, uint32_t n, expect_t *exp)
{
    uint32_t pos = 0;
    int k = 0;
    while (pos + 1 < n && k < EXP_MAX) {
        uint32_t q = pos, len, avail;
        uint8_t type;
        uint16_t id;
        while (q + 1 < n && !(s[q] == TC_SYNC0 && s[q + 1] == TC_SYNC1)) {
            q++;
        }
        if (q + 1 >= n || q + TC_HEADER_LEN > n) {
            break; /* no sync, or a header cut off by the end: dropped silently */
        }
        if (tc_crc8(0, s + q + 2, 5) != s[q + 7]) {
            pos = q + 1;
            continue;
        }
        type = s[q + 2];
        id = (uint16_t)(s[q + 3] | (s[q + 4] << 8));
        len = (uint32_t)(s[q + 5] | (s[q + 6] << 8));
        memset(&exp[k], 0, sizeof exp[k]);
        exp[k].id = id;
        exp[k].type = TC_MSG_ERROR;
        exp[k].req_type = type;
        if (len > CAP) {
            exp[k].err = TC_ERR_TOO_LONG;
            exp[k].detail = (uint16_t)CAP;
            k++;
            pos = q + TC_HEADER_LEN;
            continue;
        }
        avail = n - q;
        if (avail < TC_FRAME_OVERHEAD + len) {
            exp[k].err = TC_ERR_TIMEOUT;
            exp[k].detail = (uint16_t)(avail - TC_HEADER_LEN < len ? avail - TC_HEADER_LEN : len);
            k++;
            break;
        }
        pos = q + TC_FRAME_OVERHEAD + len;
        {
            uint16_t crc = tc_crc16(0xFFFFu, s + q + 2, 6u + len);
            if ((uint16_t)(s[q + 8 + len] | (s[q + 9 + len] << 8)) != crc) {
                exp[k++].err = TC_ERR_BAD_CRC;
                continue;
            }
        }
        if (type == TC_MSG_HELLO && len == 0) {
            exp[k].type = TC_MSG_HELLO | TC_REPLY;
            exp[k].len = 0xFFFF; /* any length; checked by content below */
        } else if (type == TC_MSG_HELLO) {
            exp[k].err = TC_ERR_BAD_LENGTH;
        } else if (type == TC_MSG_INFER && len == INPUT_BYTES) {
            exp[k].type = TC_MSG_INFER | TC_REPLY;
            exp[k].len = (uint16_t)INFER_REPLY;
        } else if (type == TC_MSG_INFER) {
            exp[k].err = TC_ERR_BAD_LENGTH;
            exp[k].detail = (uint16_t)INPUT_BYTES;
        } else if (type == TC_MSG_ECHO) {
            exp[k].type = TC_MSG_ECHO | TC_REPLY;
            exp[k].len = (uint16_t)len;
            exp[k].echo_at = q + 8;
        } else {
            exp[k].err = TC_ERR_UNKNOWN_TYPE;
        }
        k++;
    }
    return k;
}

/* ---- stream generation ------------------------------------------------------------------------ */
static uint8_t g_payload[CAP + 64];

static uint32_t valid_frame(uint8_t *s, int *kind)
{
    uint16_t id = (uint16_t)below(0x10000u);
    uint32_t r = below(10), i, len;
    uint8_t type;
    for (i = 0; i < sizeof g_payload; i++) {
        g_payload[i] = (uint8_t)rnd();
    }
    if (r < 3) {
        type = TC_MSG_INFER;
        len = INPUT_BYTES;
#if defined(TC_DTYPE_FLOAT32)
        for (i = 0; i < TC_INPUT_SIZE; i++) { /* finite inputs in [0, 1] */
            float v = (float)below(256) / 255.0f;
            memcpy(g_payload + 4 * i, &v, 4);
        }
#endif
    } else if (r < 5) {
        type = TC_MSG_ECHO;
        len = below(CAP + 1);
    } else if (r < 6) {
        type = TC_MSG_HELLO;
        len = 0;
    } else if (r < 7) {
        type = TC_MSG_INFER; /* wrong length */
        len = below(CAP + 1);
    } else if (r < 8) {
        type = TC_MSG_HELLO; /* wrong length */
        len = 1 + below(16);
    } else {
        type = (uint8_t)rnd(); /* unknown type (or, rarely, a known one) */
        len = below(64);
    }
    *kind = (int)type;
    return put_frame(s, type, id, g_payload, (uint16_t)len);
}

static uint32_t mutate(uint8_t *s, uint32_t n)
{
    uint32_t r = below(7), i, at;
    switch (r) {
    case 0: /* 1..3 bit flips anywhere */
        for (i = 0, at = 1 + below(3); i < at; i++) {
            s[below(n)] ^= (uint8_t)(1u << below(8));
        }
        return n;
    case 1: /* drop one byte */
        at = below(n);
        memmove(s + at, s + at + 1, n - at - 1);
        return n - 1;
    case 2: /* duplicate one byte */
        at = below(n);
        memmove(s + at + 1, s + at, n - at);
        return n + 1;
    case 3: { /* insert 1..8 random bytes */
        uint32_t cnt = 1 + below(8);
        at = below(n);
        memmove(s + at + cnt, s + at, n - at);
        for (i = 0; i < cnt; i++) {
            s[at + i] = (uint8_t)rnd();
        }
        return n + cnt;
    }
    case 4: /* truncate */
        return below(n);
    case 5: { /* rewrite the length, keeping a valid header check */
        uint16_t len = (uint16_t)(below(2) ? below(0x10000u) : below(CAP + 8));
        s[5] = (uint8_t)len;
        s[6] = (uint8_t)(len >> 8);
        s[7] = tc_crc8(0, s + 2, 5);
        return n;
    }
    default: /* corrupt the frame check only */
        s[n - 1 - below(2)] ^= (uint8_t)(1u + below(255));
        return n;
    }
}

static uint32_t garbage(uint8_t *s)
{
    uint32_t n = below(48), i;
    for (i = 0; i < n; i++) {
        uint32_t r = below(16);
        s[i] = r == 0 ? TC_SYNC0 : r == 1 ? TC_SYNC1 : (uint8_t)rnd();
    }
    return n;
}

/* ---- checking the replies --------------------------------------------------------------------- */
static int check(const uint8_t *stream, const expect_t *exp, int k, uint32_t case_no)
{
    uint32_t pos = 0;
    int i;
    for (i = 0; i < k; i++) {
        const uint8_t *f = g_out + pos;
        uint32_t len;
        if (pos + TC_FRAME_OVERHEAD > g_out_len) {
            fprintf(stderr, "case %u: reply %d of %d missing\n", case_no, i + 1, k);
            return 0;
        }
        len = (uint32_t)(f[5] | (f[6] << 8));
        if (f[0] != TC_SYNC0 || f[1] != TC_SYNC1 || tc_crc8(0, f + 2, 5) != f[7] ||
            pos + TC_FRAME_OVERHEAD + len > g_out_len ||
            tc_crc16(0xFFFFu, f + 2, 6u + len) != (uint16_t)(f[8 + len] | (f[9 + len] << 8))) {
            fprintf(stderr, "case %u: reply %d is not a well-formed frame\n", case_no, i + 1);
            return 0;
        }
        if (f[2] != exp[i].type || (uint16_t)(f[3] | (f[4] << 8)) != exp[i].id) {
            fprintf(stderr, "case %u: reply %d is type 0x%02x id %u, expected 0x%02x id %u (err %u)\n", case_no,
                    i + 1, f[2], f[3] | (f[4] << 8), exp[i].type, exp[i].id, exp[i].err);
            return 0;
        }
        if (exp[i].err) {
            uint16_t detail = len == 4 ? (uint16_t)(f[10] | (f[11] << 8)) : 0;
            if (len != 4 || f[8] != exp[i].err || f[9] != exp[i].req_type || detail != exp[i].detail) {
                fprintf(stderr, "case %u: reply %d: error %u (type 0x%02x) detail %u, expected error %u (0x%02x) "
                        "detail %u\n", case_no, i + 1, len == 4 ? f[8] : 0, len == 4 ? f[9] : 0, detail,
                        exp[i].err, exp[i].req_type, exp[i].detail);
                return 0;
            }
        } else if (exp[i].len != 0xFFFF && len != exp[i].len) {
            fprintf(stderr, "case %u: reply %d has %u payload bytes, expected %u\n", case_no, i + 1, len, exp[i].len);
            return 0;
        } else if (exp[i].type == (TC_MSG_ECHO | TC_REPLY) && memcmp(f + 8, stream + exp[i].echo_at, len) != 0) {
            fprintf(stderr, "case %u: ECHO reply differs from the request\n", case_no);
            return 0;
        } else if (exp[i].type == (TC_MSG_HELLO | TC_REPLY) &&
                   (len < 55u || f[8] != TC_PROTO_MAJOR || (uint16_t)(f[10] | (f[11] << 8)) != CAP)) {
            fprintf(stderr, "case %u: bad HELLO reply\n", case_no);
            return 0;
        } else if (exp[i].type == (TC_MSG_INFER | TC_REPLY) && f[8] > 1u) {
            fprintf(stderr, "case %u: INFER reply with exit flag %u\n", case_no, f[8]);
            return 0;
        }
        pos += TC_FRAME_OVERHEAD + len;
    }
    if (pos != g_out_len) {
        fprintf(stderr, "case %u: %u unexpected reply bytes after %d replies\n", case_no, g_out_len - pos, k);
        return 0;
    }
    return 1;
}

static uint8_t g_stream[STREAM_MAX];
static expect_t g_exp[EXP_MAX];

int main(int argc, char **argv)
{
    uint32_t cases = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 10000u;
    uint32_t c, replies = 0, errors = 0, successes = 0, mutated = 0, valid = 0, junk = 0;
    g_rng = argc > 2 ? strtoull(argv[2], NULL, 10) * 2654435761u + 1u : 88172645463325252ull;
    tc_app_init();
    for (c = 0; c < cases; c++) {
        uint32_t n = 0, segs = 1 + below(4), s;
        int k, i;
        for (s = 0; s < segs; s++) {
            uint32_t r = below(10);
            int kind;
            if (r < 4) {
                n += valid_frame(g_stream + n, &kind);
                valid++;
            } else if (r < 8) {
                uint32_t m = valid_frame(g_stream + n, &kind);
                n += mutate(g_stream + n, m);
                mutated++;
            } else {
                n += garbage(g_stream + n);
                junk++;
            }
        }
        k = model(g_stream, n, g_exp);
        g_in = g_stream;
        g_in_len = n;
        g_in_pos = 0;
        g_timeout_pending = 1;
        g_out_len = 0;
        while (tc_app_poll() >= 0) {
        }
        if (!check(g_stream, g_exp, k, c)) {
            return 1;
        }
        for (i = 0; i < k; i++) {
            replies++;
            if (g_exp[i].err) {
                errors++;
            } else {
                successes++;
            }
        }
    }
    printf("cases %u segments valid %u mutated %u garbage %u replies %u success %u error %u\n", cases, valid,
           mutated, junk, replies, successes, errors);
    return 0;
}
