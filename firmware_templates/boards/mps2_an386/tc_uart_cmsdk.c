/* ARM CMSDK APB UART (MPS2 AN386 UART0 under QEMU): RX interrupt into the shared ring. */
#include "tc_config.h"
#include "tc_cortex_m.h"

#define UART_DATA TC_REG32(TC_UART_BASE + 0x00u)
#define UART_STATE TC_REG32(TC_UART_BASE + 0x04u)
#define UART_CTRL TC_REG32(TC_UART_BASE + 0x08u)
#define UART_INT TC_REG32(TC_UART_BASE + 0x0Cu) /* INTSTATUS / INTCLEAR (write 1 to clear) */
#define UART_BAUDDIV TC_REG32(TC_UART_BASE + 0x10u)

#define STATE_TXFULL 0x1u
#define STATE_RXFULL 0x2u
#define CTRL_TXEN 0x1u
#define CTRL_RXEN 0x2u
#define CTRL_RXINTEN 0x8u
#define INT_RX 0x2u

void tc_uart_init(void)
{
    /* QEMU ignores the line settings unless BAUDDIV >= 16. */
    UART_BAUDDIV = TC_CPU_HZ / TC_BAUD;
    UART_CTRL = CTRL_TXEN | CTRL_RXEN | CTRL_RXINTEN;
    tc_nvic_enable(TC_UART_IRQ);
}

void tc_uart_rx_irq_enable(int enable)
{
    if (enable) {
        UART_CTRL |= CTRL_RXINTEN;
    } else {
        UART_CTRL &= ~CTRL_RXINTEN;
    }
}

void tc_uart_irq(void)
{
    /* Acknowledge before draining: a byte that lands between the drain and a late ack would
     * lose its interrupt and stall RX for good. */
    UART_INT = INT_RX;
    while ((UART_STATE & STATE_RXFULL) && !tc_ring_full()) {
        tc_ring_push((uint8_t)UART_DATA);
    }
}

void tc_uart_putc(uint8_t c)
{
    while (UART_STATE & STATE_TXFULL) {
    }
    UART_DATA = c;
}
