import sys

from kbi.cli import main

sys.exit(main())
