# The serving image: a Ray head with both apps of serve_config.yaml, CPU-only torch.
#   docker build --network host -t sentiment-serve .            (see docs/deployment.md, Docker)
#   docker run --rm --network host --shm-size=2g -v $PWD/models/tiny:/models/tiny:ro \
#       -e SENTIMENT_MODEL=/models/tiny sentiment-serve
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# wget: KubeRay's default pod probes call it.
RUN apt-get update && apt-get install -y --no-install-recommends wget \
    && rm -rf /var/lib/apt/lists/* \
    && python -m venv /opt/venv

# Dependencies before code, so a code edit does not reinstall them.
ARG TORCH_INDEX_URL=""
COPY docker/wheels/ /tmp/wheels/
COPY docker/install-torch.sh /tmp/install-torch.sh
RUN /tmp/install-torch.sh 2.13.0
COPY requirements.txt requirements-model.txt /tmp/
RUN pip install -r /tmp/requirements.txt && rm -rf /tmp/wheels /tmp/*.txt /tmp/install-torch.sh

RUN useradd --create-home --uid 1000 app && mkdir -p /models /cache && chown app /models /cache
WORKDIR /app
COPY pyproject.toml ray.env serve_config.yaml serve_with_rayserve.py serve_with_fastapi.py \
     test_local_http_endpoint.py ./
COPY sentiment/ sentiment/
COPY sentiment_ops/ sentiment_ops/
COPY docker/entrypoint.sh /usr/local/bin/sentiment-serve
COPY docker/healthcheck.py /usr/local/bin/sentiment-healthcheck
RUN pip install --no-deps -e . && chown -R app /app

# Optional: bake the model into the image (needs the model hub at build time).
ARG BAKE_MODEL=""
RUN if [ -n "$BAKE_MODEL" ]; then python -m sentiment.download /models/baked --model "$BAKE_MODEL" \
        && chown -R app /models/baked; fi

USER app
# ray.env (Serve's fast path, HAProxy ingress) in the image's environment, not only the
# entrypoint's: the tutorial's own steps in a shell here (`ray start --head`, a script,
# test_local_http_endpoint.py) get it too. A unit test keeps these lines equal to ray.env.
ENV RAY_SERVE_ENABLE_HA_PROXY=1 \
    RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD=0 \
    RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S=2 \
    RAY_SERVE_HAPROXY_TUNE_BUFSIZE=65536 \
    RAY_SERVE_LOG_TO_STDERR=0
# Hub downloads land here: mount a volume on /cache to keep them across containers; so does
# the record of `python -m sentiment.tune` (run it in the container: docs, Docker).
ENV HF_HOME=/cache/huggingface \
    SENTIMENT_TUNE_FILE=/cache/sentiment-serve/tune.json \
    SENTIMENT_ONNX_CACHE_DIR=/cache/sentiment-serve/onnx \
    RAY_AUTH_MODE=disabled \
    RAY_USAGE_STATS_ENABLED=0 \
    SENTIMENT_HTTP_HOST=0.0.0.0 \
    SENTIMENT_HTTP_PORT=8000
# 8000: the apps; 8080: Prometheus metrics (Ray's and the apps'); 8265: Ray's dashboard.
EXPOSE 8000 8080 8265
HEALTHCHECK --interval=15s --timeout=10s --start-period=90s --retries=3 \
    CMD ["python", "/usr/local/bin/sentiment-healthcheck"]
CMD ["sentiment-serve"]
