import sys

from pps.cli.main import main

sys.exit(main())
