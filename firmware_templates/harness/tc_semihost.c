/*
 * Semihosting and the hooks the shared Cortex-M start-up (boards/cortex_m/tc_startup.c) calls, for
 * harnesses that run under QEMU without a UART: output goes to the host through semihosting, a fault
 * prints FAULT and ends QEMU with status 3, SysTick counts its wraps (for instruction counts under
 * -icount shift=0).
 */
#include <stdint.h>

#include "tc_app.h"
#include "tc_cortex_m.h"
#include "tc_semihost.h"

volatile uint32_t tc_systick_wraps;

static int tc_semihost(int op, void *arg)
{
    register int r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void tc_semi_write0(const char *s)
{
    tc_semihost(0x04, (void *)s); /* SYS_WRITE0 */
}

void tc_semi_exit(int status)
{
    uint32_t block[2] = {0x20026u, (uint32_t)status}; /* ADP_Stopped_ApplicationExit, status */
    for (;;) {
        tc_semihost(0x20, block); /* SYS_EXIT_EXTENDED */
    }
}

void tc_app_report_fault(uint32_t cfsr)
{
    (void)cfsr;
    tc_semi_write0("FAULT\n");
    tc_semi_exit(3);
}

void tc_uart_irq(void)
{
}

void tc_systick_handler(void)
{
    tc_systick_wraps++;
}
