"""`python -m toolchain.edge`: the edge runtime's entry point on a board (== `toolchain run`)."""

import sys

from toolchain.commands.run import main

sys.exit(main())
