"""Docker HEALTHCHECK: healthy only when the Classifier app answers a real inference."""

import os
import sys
import urllib.request

port = os.environ.get("SENTIMENT_HTTP_PORT", "8000")
try:
    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthcheck", timeout=8)
except Exception as error:
    print(f"unhealthy: {error}")
    sys.exit(1)
