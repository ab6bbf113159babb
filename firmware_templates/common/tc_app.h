/* The shared application: HELLO / INFER / ECHO over the framed protocol (docs/protocol.md). */
#ifndef TC_APP_H
#define TC_APP_H

#include <stdint.h>

void tc_app_init(void);
/* Wait for and process one byte (or one inter-byte timeout). Returns -1 when the link closed. */
int tc_app_poll(void);
/* tc_app_init, then tc_app_poll until the link closes (never, on a microcontroller). */
void tc_app_run(void);
/* Called by a board's fault handler: report the fault as an ERROR frame (id 0xFFFF). */
void tc_app_report_fault(uint32_t cfsr);

#endif
