"""``python -m dpgmm_ppl.cli``: the ``dpgmm-ppl`` command."""

import sys

from dpgmm_ppl.cli import main

if __name__ == "__main__":
    sys.exit(main())
