/* STM32F4 USART, register level (no vendor SDK). NUCLEO-F446RE: USART2 on PA2/PA3 (AF7), wired to
 * the ST-LINK virtual COM port; the core runs from the 16 MHz HSI (reset default, no PLL, zero
 * flash wait states). The same driver runs on QEMU netduinoplus2 (STM32F405), whose second serial
 * port is USART2 at the same address; QEMU does not model RCC/GPIO (writes are ignored) and drops
 * bytes that arrive before CR1.UE|RE are set, which the host covers by repeating HELLO. */
#include "tc_config.h"
#include "tc_cortex_m.h"

#define RCC_AHB1ENR TC_REG32(0x40023830u)
#define RCC_APB1ENR TC_REG32(0x40023840u)
#define GPIOA_MODER TC_REG32(0x40020000u)
#define GPIOA_OSPEEDR TC_REG32(0x40020008u)
#define GPIOA_PUPDR TC_REG32(0x4002000Cu)
#define GPIOA_AFRL TC_REG32(0x40020020u)

#define USART_SR TC_REG32(TC_UART_BASE + 0x00u)
#define USART_DR TC_REG32(TC_UART_BASE + 0x04u)
#define USART_BRR TC_REG32(TC_UART_BASE + 0x08u)
#define USART_CR1 TC_REG32(TC_UART_BASE + 0x0Cu)
#define USART_CR2 TC_REG32(TC_UART_BASE + 0x10u)
#define USART_CR3 TC_REG32(TC_UART_BASE + 0x14u)

#define SR_ORE (1u << 3)
#define SR_RXNE (1u << 5)
#define SR_TXE (1u << 7)
#define CR1_RE (1u << 2)
#define CR1_TE (1u << 3)
#define CR1_RXNEIE (1u << 5)
#define CR1_UE (1u << 13)

void tc_uart_init(void)
{
    volatile uint32_t settle;
    RCC_AHB1ENR |= 1u << 0;  /* GPIOA */
    RCC_APB1ENR |= 1u << 17; /* USART2 */
    settle = RCC_APB1ENR;    /* the clock needs two bus cycles after enabling */
    (void)settle;
    /* PA2 (TX) and PA3 (RX): alternate function 7, high speed, pull-up on RX. */
    GPIOA_MODER = (GPIOA_MODER & ~(0xFu << 4)) | (0xAu << 4);
    GPIOA_OSPEEDR |= 0xFu << 4;
    GPIOA_PUPDR = (GPIOA_PUPDR & ~(0xFu << 4)) | (0x4u << 4);
    GPIOA_AFRL = (GPIOA_AFRL & ~(0xFFu << 8)) | (0x77u << 8);

    USART_CR1 = 0;
    USART_CR2 = 0;
    USART_CR3 = 0;
    USART_BRR = (TC_UART_CLOCK_HZ + TC_BAUD / 2u) / TC_BAUD; /* oversampling by 16 */
    USART_CR1 = CR1_UE | CR1_TE | CR1_RE | CR1_RXNEIE;
    tc_nvic_enable(TC_UART_IRQ);
}

void tc_uart_rx_irq_enable(int enable)
{
    if (enable) {
        USART_CR1 |= CR1_RXNEIE;
    } else {
        USART_CR1 &= ~CR1_RXNEIE;
    }
}

void tc_uart_irq(void)
{
    uint32_t sr;
    while (((sr = USART_SR) & (SR_RXNE | SR_ORE)) && !tc_ring_full()) {
        /* Reading DR after SR also clears an overrun (ORE); the lost byte shows up as a CRC
         * error on the frame and the host retransmits. */
        tc_ring_push((uint8_t)USART_DR);
    }
}

void tc_uart_putc(uint8_t c)
{
    while (!(USART_SR & SR_TXE)) {
    }
    USART_DR = c;
}
