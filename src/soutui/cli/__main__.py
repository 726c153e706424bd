"""`python -m soutui.cli ...`: the `soutui` command, as torchrun launches it for `train --nproc N`."""

import sys

from soutui.cli import main

sys.exit(main())
