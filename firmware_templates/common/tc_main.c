/* Entry point shared by the bare-metal boards and the host build. */
#include "tc_app.h"
#include "tc_board.h"

int main(void)
{
    tc_board_init();
    tc_app_run();
    return 0;
}
