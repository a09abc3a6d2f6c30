"""python -m ringloop: see ringloop._cli (and `python -m ringloop --help`)."""
import sys

from ringloop._cli import main

sys.exit(main())
