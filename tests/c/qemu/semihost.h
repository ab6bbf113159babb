/* Minimal ARM semihosting for QEMU self-tests (-semihosting-config enable=on,target=native). */
#ifndef TC_SEMIHOST_H
#define TC_SEMIHOST_H

void tc_semi_write0(const char *s);
void tc_semi_exit(int status) __attribute__((noreturn));

#endif
