"""Deploy the Classifier app (FastAPI: /test, /healthcheck, /classify) on the running Ray head, then exit."""

import sys

from sentiment_ops.deploy import deploy

if __name__ == "__main__":
    sys.exit(deploy("classifier"))  # an app of sentiment.apps.BUILDERS
