/* Shared Cortex-M support (startup, SysTick/DWT, RX ring) and the interface of a UART driver. */
#ifndef TC_CORTEX_M_H
#define TC_CORTEX_M_H

#include <stdint.h>

#define TC_REG32(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

#define TC_NVIC_ISER(n) TC_REG32(0xE000E100u + 4u * (n))
#define TC_NVIC_ICER(n) TC_REG32(0xE000E180u + 4u * (n))

static inline void tc_nvic_enable(uint32_t irq)
{
    TC_NVIC_ISER(irq >> 5) = 1u << (irq & 31u);
}

static inline void tc_nvic_disable(uint32_t irq)
{
    TC_NVIC_ICER(irq >> 5) = 1u << (irq & 31u);
}

/* Implemented by the board's UART driver (boards/<board>/tc_uart_*.c). */
void tc_uart_init(void);
void tc_uart_putc(uint8_t c);
void tc_uart_irq(void);                 /* called for every external interrupt */
void tc_uart_rx_irq_enable(int enable); /* masked by the ISR while the ring is full */

/* Implemented in tc_cortex_m.c. The ISR checks tc_ring_full() before reading the data register:
 * when full it masks RX and leaves the byte in the UART (on QEMU that stops the chardev from
 * delivering more, a lossless backpressure); the reader unmasks after taking a byte. */
int tc_ring_full(void);
void tc_ring_push(uint8_t byte);

#endif
