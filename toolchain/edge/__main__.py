import sys

from toolchain.edge.cli import main

sys.exit(main())
