import sys

from modelgate_cli.cli import main

sys.exit(main())
