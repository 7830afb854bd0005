import sys

from crowd_platform.cli import main

sys.exit(main())
