/* Vector table and reset for every Cortex-M board and harness: enables the FPU (when built for one)
 * before any C code runs, copies .data, zeroes .bss, then calls main(). */
#include <stdint.h>

#include "tc_app.h"
#include "tc_cortex_m.h"

#ifndef TC_NUM_IRQS
#define TC_NUM_IRQS 128
#endif

extern uint32_t _estack, _sidata, _sdata, _edata, _sbss, _ebss;
extern const void *const tc_vectors[];
int main(void);
void tc_systick_handler(void);
void Reset_Handler(void);
void tc_reset_c(void);

void tc_reset_c(void)
{
    uint32_t *src = &_sidata;
    uint32_t *dst;
    for (dst = &_sdata; dst < &_edata;) {
        *dst++ = *src++;
    }
    for (dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0;
    }
#if !defined(__ARM_ARCH_6M__) /* ARMv6-M (Cortex-M0) has no VTOR: the table is at address 0 */
    TC_REG32(0xE000ED08u) = (uint32_t)(uintptr_t)tc_vectors; /* VTOR */
#endif
    (void)main();
    for (;;) {
        __asm__ volatile("wfi");
    }
}

/* Naked: with a hard-float build the compiler may touch FP registers in any C prologue, and an
 * FP instruction before CPACR grants CP10/CP11 is a NOCP UsageFault. */
__attribute__((naked, noreturn)) void Reset_Handler(void)
{
    __asm__ volatile(
#if defined(__ARM_FP)
        "ldr r0, =0xE000ED88\n"
        "ldr r1, [r0]\n"
        "orr r1, r1, #0xF00000\n"
        "str r1, [r0]\n"
        "dsb\n"
        "isb\n"
#endif
        "b tc_reset_c\n");
}

static void fault_handler(void)
{
    uint32_t cfsr = TC_REG32(0xE000ED28u);
    tc_app_report_fault(cfsr);
    for (;;) {
        __asm__ volatile("wfi");
    }
}

static void irq_handler(void)
{
    tc_uart_irq();
}

__attribute__((section(".isr_vector"), used)) const void *const tc_vectors[16 + TC_NUM_IRQS] = {
    [0] = &_estack,
    [1] = (const void *)Reset_Handler,
    [2] = (const void *)fault_handler,  /* NMI */
    [3] = (const void *)fault_handler,  /* HardFault */
    [4] = (const void *)fault_handler,  /* MemManage */
    [5] = (const void *)fault_handler,  /* BusFault */
    [6] = (const void *)fault_handler,  /* UsageFault */
    [11] = (const void *)fault_handler, /* SVCall: never used */
    [14] = (const void *)fault_handler, /* PendSV: never used */
    [15] = (const void *)tc_systick_handler,
    [16 ... 16 + TC_NUM_IRQS - 1] = (const void *)irq_handler,
};
