#!/usr/bin/env bash
# The serving container's command: a Ray head and both apps, in the foreground until SIGTERM.
# On `docker stop`: the apps drain what they hold, then Ray stops.
set -euo pipefail

# A baked model (BAKE_MODEL at build time) is used unless SENTIMENT_MODEL says otherwise.
if [[ -z ${SENTIMENT_MODEL:-} && -f /models/baked/config.json ]]; then
    export SENTIMENT_MODEL=/models/baked
fi
# The dashboard's job API runs arbitrary code: it stays on the container's loopback unless asked.
DASHBOARD_HOST=${RAY_DASHBOARD_HOST:-127.0.0.1}
DASHBOARD_PORT=${RAY_DASHBOARD_PORT:-8265}
DASHBOARD=http://127.0.0.1:$DASHBOARD_PORT
# Where `serve` and `python -m sentiment_ops drain` find Serve's REST API.
export RAY_DASHBOARD_ADDRESS=$DASHBOARD

stop() {
    echo "sentiment-serve: draining: new requests get 503 + Retry-After, taken ones are answered"
    # The apps refuse new work (and /healthcheck says 503) and this returns once what they took
    # is answered. Removing the apps instead would drop their routes at once: 404s meanwhile.
    python -m sentiment_ops drain || true
    # HAProxy's listeners closed first (clients see a refused connection), then `ray stop`.
    python -m sentiment_ops stop >/dev/null || true
    echo "sentiment-serve: stopped"
    exit 0
}
trap stop TERM INT

# Fail in one line, before Ray starts, when the model cannot be had.
python -m sentiment --check || exit 1

# `ray start --head` as `make up` runs it: Serve's fast path (ray.env's flags) and every core the
# container may use, unless RAY_NUM_CPUS says.
python -m sentiment_ops start --port="${RAY_PORT:-6379}" --dashboard-host="$DASHBOARD_HOST" \
    --dashboard-port="$DASHBOARD_PORT" --metrics-export-port="${RAY_METRICS_EXPORT_PORT:-8080}" \
    ${RAY_NUM_CPUS:+--num-cpus="$RAY_NUM_CPUS"}
# serve_config.yaml listens on 127.0.0.1; a container must answer on every interface. Serve takes
# its proxy options once, when it starts: so from the config it starts with, not a later one.
python - <<'PY'
import os, yaml
config = yaml.safe_load(open("serve_config.yaml"))
config["http_options"].update(
    host=os.environ["SENTIMENT_HTTP_HOST"], port=int(os.environ["SENTIMENT_HTTP_PORT"])
)
yaml.safe_dump(config, open("/tmp/serve_config.yaml", "w"), sort_keys=False)
PY
serve deploy /tmp/serve_config.yaml
echo "sentiment-serve: deploying both apps on :$SENTIMENT_HTTP_PORT (model ${SENTIMENT_MODEL:-default}); GET /healthcheck says when ready"

# Wait in the background so the trap runs as soon as SIGTERM arrives.
sleep infinity &
wait $!
