"""``python -m pip_adapter.zoo``: the maintainers' registry command (:mod:`pip_adapter.zoo.admin`)."""
import sys

from pip_adapter.zoo.admin import main

sys.exit(main())
