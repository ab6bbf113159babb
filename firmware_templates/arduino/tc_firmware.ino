/* The toolchain's verify firmware as an Arduino sketch: the protocol, application, kernels and
 * model live in src/ (the same sources as the bare-metal boards); tc_board_arduino.cpp maps the
 * board interface onto Serial. Build and upload with arduino-cli or the Arduino IDE. */
extern "C" {
#include "src/tc_app.h"
#include "src/tc_board.h"
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
