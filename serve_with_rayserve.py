"""Deploy the Router app (GET /router?txt=...) on the running Ray head, then exit; it stays up."""

import sys

from sentiment_ops.deploy import deploy

if __name__ == "__main__":
    sys.exit(deploy("router"))  # an app of sentiment.apps.BUILDERS
