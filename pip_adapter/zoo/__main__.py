"""``python -m pip_adapter.zoo``: the maintainers' registry command (:mod:`pip_adapter.cli.zoo_admin`)."""
import sys

from pip_adapter.cli.zoo_admin import main

sys.exit(main())
