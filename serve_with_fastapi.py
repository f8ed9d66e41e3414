"""Deploy the Classifier app (FastAPI: /test, /healthcheck, /classify) on the running Ray head, then exit."""

import sys

from sentiment.apps import CLASSIFIER_APP
from sentiment_ops.deploy import deploy

if __name__ == "__main__":
    sys.exit(deploy(CLASSIFIER_APP))
