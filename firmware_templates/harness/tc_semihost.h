/* Minimal ARM semihosting for the QEMU harnesses (-semihosting-config enable=on,target=native). */
#ifndef TC_SEMIHOST_H
#define TC_SEMIHOST_H

#include <stdint.h>

void tc_semi_write0(const char *s);
void tc_semi_exit(int status) __attribute__((noreturn));

/* SysTick wraps since boot (the harness's SysTick handler counts them; see tc_harness_qemu.c). */
extern volatile uint32_t tc_systick_wraps;

#endif
