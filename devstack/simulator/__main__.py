import sys

from devstack.simulator.cli import main

sys.exit(main())
