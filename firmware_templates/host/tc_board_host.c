/* tc_board.h for the native build: the firmware talks over stdin/stdout, which the launcher
 * (toolchain/device.py) connects to the master side of a pseudo-terminal, so pyserial opens the
 * slave side like a real serial port. Reads are buffered; writes are flushed once per frame.
 * CLOCK_MONOTONIC nanoseconds serve as the counter. The link closing (EOF, EIO) ends the program. */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "tc_board.h"

#define RX_CAP 4096
#define TX_CAP 4096

static uint8_t g_rx[RX_CAP];
static uint32_t g_rx_len, g_rx_pos;
static uint8_t g_tx[TX_CAP];
static uint32_t g_tx_len;
static int g_closed;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void tc_board_init(void)
{
}

int tc_board_read(uint8_t *byte, uint32_t timeout_ms)
{
    if (g_rx_pos == g_rx_len) {
        struct pollfd pfd;
        int r;
        ssize_t n;
        if (g_closed) {
            return -1;
        }
        pfd.fd = STDIN_FILENO;
        pfd.events = POLLIN;
        pfd.revents = 0;
        r = poll(&pfd, 1, (int)timeout_ms);
        if (r < 0) {
            return errno == EINTR ? 0 : -1;
        }
        if (r == 0) {
            return 0;
        }
        n = read(STDIN_FILENO, g_rx, RX_CAP);
        if (n <= 0) {
            if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
                return 0;
            }
            g_closed = 1; /* EOF, or EIO on a pty master once every slave fd is closed */
            return -1;
        }
        g_rx_len = (uint32_t)n;
        g_rx_pos = 0;
    }
    *byte = g_rx[g_rx_pos++];
    return 1;
}

void tc_board_flush(void)
{
    uint32_t off = 0;
    while (off < g_tx_len) {
        ssize_t n = write(STDOUT_FILENO, g_tx + off, g_tx_len - off);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                continue;
            }
            g_closed = 1;
            break;
        }
        off += (uint32_t)n;
    }
    g_tx_len = 0;
}

void tc_board_write(const uint8_t *data, uint32_t n)
{
    uint32_t i;
    for (i = 0; i < n; i++) {
        if (g_tx_len == TX_CAP) {
            tc_board_flush();
        }
        g_tx[g_tx_len++] = data[i];
    }
}

uint32_t tc_board_millis(void)
{
    return (uint32_t)(now_ns() / 1000000u);
}

uint32_t tc_board_counter(void)
{
    return (uint32_t)now_ns();
}

uint8_t tc_board_counter_kind(void)
{
    return TC_COUNTER_HOST_NS;
}

uint32_t tc_board_counter_hz(void)
{
    return 1000000000u;
}
