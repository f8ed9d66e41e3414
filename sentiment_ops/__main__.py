"""python -m sentiment_ops stop|status|drain (see sentiment_ops.deploy)."""

import sys

from sentiment_ops.deploy import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
