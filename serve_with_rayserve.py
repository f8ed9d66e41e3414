"""Deploy the Router app (GET /router?txt=...) on the running Ray head, then exit; it stays up."""

import sys

from sentiment.apps import ROUTER_APP
from sentiment_ops.deploy import deploy

if __name__ == "__main__":
    sys.exit(deploy(ROUTER_APP))
