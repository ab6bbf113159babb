/*
 * Bare-metal start-up for the QEMU test harness: vector table, FPU enable, .data/.bss init,
 * SysTick tick counter, semihosting calls. No SDK, no CMSIS.
 */
#include <stdint.h>

#include "semihost.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern int main(void);

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

void tc_c_start(void)
{
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata) {
        *dst++ = *src++;
    }
    for (dst = &_sbss; dst < &_ebss; dst++) {
        *dst = 0;
    }
    tc_semi_exit(main());
}

/* Enables CP10/CP11 before any C code can touch the FPU (QEMU enforces CPACR). */
__attribute__((naked, noreturn)) void Reset_Handler(void)
{
#if defined(__ARM_FP)
    __asm__ volatile("ldr r0, =0xE000ED88\n"
                     "ldr r1, [r0]\n"
                     "ldr r2, =0x00F00000\n"
                     "orr r1, r1, r2\n"
                     "str r1, [r0]\n"
                     "dsb\n"
                     "isb\n");
#endif
    __asm__ volatile("bl tc_c_start\n");
}

void Fault_Handler(void)
{
    tc_semi_write0("FAULT\n");
    tc_semi_exit(3);
}

void SysTick_Handler(void)
{
    tc_systick_wraps++;
}

__attribute__((section(".isr_vector"), used)) const void *const tc_vectors[16] = {
    &_estack,        Reset_Handler,   Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
    Fault_Handler,   0,               0,             0,             0,             Fault_Handler,
    Fault_Handler,   0,               Fault_Handler, SysTick_Handler,
};
