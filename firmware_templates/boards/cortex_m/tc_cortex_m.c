/* tc_board.h for Cortex-M3/M4: RX ring filled by the UART interrupt, WFI while waiting, SysTick
 * for milliseconds, and DWT CYCCNT as the inference counter when it counts (SysTick otherwise). */
#include "tc_cortex_m.h"

#include "tc_board.h"
#include "tc_config.h"

#define SYST_CSR TC_REG32(0xE000E010u)
#define SYST_RVR TC_REG32(0xE000E014u)
#define SYST_CVR TC_REG32(0xE000E018u)
#define SCB_ICSR TC_REG32(0xE000ED04u)
#define ICSR_PENDSTSET (1u << 26)
#define DEMCR TC_REG32(0xE000EDFCu)
#define DWT_CTRL TC_REG32(0xE0001000u)
#define DWT_CYCCNT TC_REG32(0xE0001004u)

#define TC_SYSTICK_HZ 100u
#define TC_SYSTICK_RELOAD (TC_CPU_HZ / TC_SYSTICK_HZ)
#if TC_SYSTICK_RELOAD > 0x1000000u
#error "SysTick reload does not fit 24 bits: raise TC_SYSTICK_HZ"
#endif

#define TC_RING_SIZE 512u /* power of two */

static volatile uint8_t g_ring[TC_RING_SIZE];
static volatile uint32_t g_head, g_tail;
static volatile uint32_t g_rx_masked;
static volatile uint32_t g_ticks;
static uint8_t g_counter_kind = TC_COUNTER_SYSTICK;

int tc_ring_full(void)
{
    if (g_head - g_tail >= TC_RING_SIZE) {
        /* Mask at the UART and at the NVIC: some UART models keep their IRQ line high while a
         * byte waits, which would re-enter this ISR forever. */
        g_rx_masked = 1;
        tc_uart_rx_irq_enable(0);
        tc_nvic_disable(TC_UART_IRQ);
        return 1;
    }
    return 0;
}

void tc_ring_push(uint8_t byte)
{
    uint32_t h = g_head;
    g_ring[h & (TC_RING_SIZE - 1u)] = byte;
    g_head = h + 1u;
}

void tc_systick_handler(void)
{
    g_ticks++;
}

uint32_t tc_board_millis(void)
{
    return g_ticks * (1000u / TC_SYSTICK_HZ);
}

/* SysTick as a free-running core-clock counter: periods elapsed * reload + position in period.
 * If the counter wrapped but its interrupt is still pending, count that period here. */
static uint32_t systick_counter(void)
{
    uint32_t t, v;
    __asm__ volatile("cpsid i" ::: "memory");
    t = g_ticks;
    v = SYST_CVR;
    if (SCB_ICSR & ICSR_PENDSTSET) {
        v = SYST_CVR;
        t++;
    }
    __asm__ volatile("cpsie i" ::: "memory");
    return t * TC_SYSTICK_RELOAD + (TC_SYSTICK_RELOAD - 1u - v);
}

uint32_t tc_board_counter(void)
{
    if (g_counter_kind == TC_COUNTER_DWT_CYCLES) {
        return DWT_CYCCNT;
    }
    return systick_counter();
}

uint8_t tc_board_counter_kind(void)
{
    return g_counter_kind;
}

uint32_t tc_board_counter_hz(void)
{
    return TC_CPU_HZ;
}

/* Cortex-M3/M4 have DWT, but QEMU does not implement it (reads as 0): use it only if it counts. */
static void probe_dwt(void)
{
    volatile uint32_t spin;
    DEMCR |= 1u << 24; /* TRCENA */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;
    for (spin = 0; spin < 16u; spin++) {
    }
    g_counter_kind = (DWT_CYCCNT != 0u) ? TC_COUNTER_DWT_CYCLES : TC_COUNTER_SYSTICK;
}

void tc_board_init(void)
{
    SYST_RVR = TC_SYSTICK_RELOAD - 1u;
    SYST_CVR = 0;
    SYST_CSR = 7u; /* processor clock, interrupt, enable */
    probe_dwt();
    tc_uart_init();
}

int tc_board_read(uint8_t *byte, uint32_t timeout_ms)
{
    uint32_t start = tc_board_millis();
    for (;;) {
        /* Interrupts off between the emptiness check and WFI: a byte arriving in between still
         * wakes WFI (pending interrupt), so no wakeup is lost. */
        __asm__ volatile("cpsid i" ::: "memory");
        if (g_head != g_tail) {
            *byte = g_ring[g_tail & (TC_RING_SIZE - 1u)];
            g_tail = g_tail + 1u;
            if (g_rx_masked) {
                /* Unmask, then drain by hand: some UARTs (CMSDK) raise no interrupt for a byte
                 * that was already waiting when RX interrupts are enabled again. */
                g_rx_masked = 0;
                tc_uart_rx_irq_enable(1);
                tc_uart_irq();
                tc_nvic_enable(TC_UART_IRQ);
            }
            __asm__ volatile("cpsie i" ::: "memory");
            return 1;
        }
        if ((uint32_t)(tc_board_millis() - start) >= timeout_ms) {
            __asm__ volatile("cpsie i" ::: "memory");
            return 0;
        }
        __asm__ volatile("wfi\n cpsie i" ::: "memory");
    }
}

void tc_board_write(const uint8_t *data, uint32_t n)
{
    uint32_t i;
    for (i = 0; i < n; i++) {
        tc_uart_putc(data[i]);
    }
}

void tc_board_flush(void)
{
}
