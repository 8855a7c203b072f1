import sys

from dfdetect.cli import main

sys.exit(main())
