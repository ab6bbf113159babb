/* tc_board.h for Arduino cores (Arduino IDE / arduino-cli sketch, PlatformIO framework = arduino):
 * the shared protocol and application talk over `Serial` (USB CDC on the Nano 33 BLE, where the
 * baud rate is ignored). The counter is DWT CYCCNT on ARMv7-M/ARMv8-M cores when it counts,
 * micros() otherwise. */
#include <Arduino.h>

extern "C" {
#include "tc_board.h"
#include "tc_config.h"
}

#if defined(__ARM_ARCH_7M__) || defined(__ARM_ARCH_7EM__) || defined(__ARM_ARCH_8M_MAIN__)
#define TC_HAVE_DWT 1
#define TC_DEMCR (*(volatile uint32_t *)0xE000EDFCu)
#define TC_DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define TC_DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)
#else
#define TC_HAVE_DWT 0
#endif

static uint8_t g_counter_kind = TC_COUNTER_MICROS;

extern "C" void tc_board_init(void)
{
    Serial.begin(TC_BAUD);
    while (!Serial) {
        /* USB CDC: wait until the host opens the port, so the first replies are not lost. */
    }
#if TC_HAVE_DWT
    TC_DEMCR |= 1u << 24;
    TC_DWT_CYCCNT = 0;
    TC_DWT_CTRL |= 1u;
    delayMicroseconds(2);
    if (TC_DWT_CYCCNT != 0u) {
        g_counter_kind = TC_COUNTER_DWT_CYCLES;
    }
#endif
}

extern "C" int tc_board_read(uint8_t *byte, uint32_t timeout_ms)
{
    uint32_t start = millis();
    while (Serial.available() <= 0) {
        if ((uint32_t)(millis() - start) >= timeout_ms) {
            return 0;
        }
        yield();
    }
    *byte = (uint8_t)Serial.read();
    return 1;
}

extern "C" void tc_board_write(const uint8_t *data, uint32_t n)
{
    Serial.write(data, n);
}

extern "C" void tc_board_flush(void)
{
    Serial.flush();
}

extern "C" uint32_t tc_board_millis(void)
{
    return millis();
}

extern "C" uint32_t tc_board_counter(void)
{
#if TC_HAVE_DWT
    if (g_counter_kind == TC_COUNTER_DWT_CYCLES) {
        return TC_DWT_CYCCNT;
    }
#endif
    return micros();
}

extern "C" uint8_t tc_board_counter_kind(void)
{
    return g_counter_kind;
}

extern "C" uint32_t tc_board_counter_hz(void)
{
    return g_counter_kind == TC_COUNTER_DWT_CYCLES ? TC_CPU_HZ : 1000000u;
}
