/* ARM PL011 UART (Stellaris LM3S6965 UART0, QEMU lm3s6965evb): RX interrupt into the shared ring. */
#include "tc_config.h"
#include "tc_cortex_m.h"

#define UART_DR TC_REG32(TC_UART_BASE + 0x00u)
#define UART_FR TC_REG32(TC_UART_BASE + 0x18u)
#define UART_IBRD TC_REG32(TC_UART_BASE + 0x24u)
#define UART_FBRD TC_REG32(TC_UART_BASE + 0x28u)
#define UART_LCRH TC_REG32(TC_UART_BASE + 0x2Cu)
#define UART_CR TC_REG32(TC_UART_BASE + 0x30u)
#define UART_IMSC TC_REG32(TC_UART_BASE + 0x38u)
#define UART_ICR TC_REG32(TC_UART_BASE + 0x44u)

#define FR_RXFE (1u << 4)
#define FR_TXFF (1u << 5)
#define INT_RX (1u << 4)
#define INT_RT (1u << 6)

/* LM3S6965 system control and GPIO port A (UART0 is PA0/PA1): clocks on, pins to the UART. */
#define SYSCTL_RCGC1 TC_REG32(0x400FE104u)
#define SYSCTL_RCGC2 TC_REG32(0x400FE108u)
#define GPIOA_AFSEL TC_REG32(0x40004420u)
#define GPIOA_DEN TC_REG32(0x4000451Cu)

void tc_uart_init(void)
{
    uint32_t div64 = (TC_CPU_HZ * 4u + TC_BAUD / 2u) / TC_BAUD; /* 64 * CPU_HZ / (16 * baud) */
    SYSCTL_RCGC1 |= 1u;
    SYSCTL_RCGC2 |= 1u;
    GPIOA_AFSEL |= 3u;
    GPIOA_DEN |= 3u;
    UART_CR = 0;
    UART_IBRD = div64 >> 6;
    UART_FBRD = div64 & 63u;
    UART_LCRH = (3u << 5) | (1u << 4); /* 8N1, FIFOs on */
    UART_IMSC = INT_RX | INT_RT;
    UART_CR = (1u << 0) | (1u << 8) | (1u << 9); /* UARTEN, TXE, RXE */
    tc_nvic_enable(TC_UART_IRQ);
}

void tc_uart_rx_irq_enable(int enable)
{
    UART_IMSC = enable ? (INT_RX | INT_RT) : 0u;
}

void tc_uart_irq(void)
{
    UART_ICR = INT_RX | INT_RT;
    while (!(UART_FR & FR_RXFE) && !tc_ring_full()) {
        tc_ring_push((uint8_t)UART_DR);
    }
}

void tc_uart_putc(uint8_t c)
{
    while (UART_FR & FR_TXFF) {
    }
    UART_DR = c;
}
