/* The toolchain's verify firmware as a PlatformIO (framework = arduino) project: same sources as
 * the sketch; tc_board_arduino.cpp maps the board interface onto Serial. */
#include <Arduino.h>

extern "C" {
#include "tc_app.h"
#include "tc_board.h"
}

void setup()
{
    tc_board_init();
    tc_app_init();
}

void loop()
{
    (void)tc_app_poll();
}
