import sys

from lifecycled.cli import main

sys.exit(main())
