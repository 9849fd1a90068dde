import sys

from pip_adapter.cli import main

sys.exit(main())
