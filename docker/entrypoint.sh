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

stop() {
    echo "sentiment-serve: stopping; draining in-flight requests"
    # Remove the apps first: replicas finish what they hold while the proxy stays up. (`serve
    # shutdown` would stop the proxy at once, dropping requests in flight.)
    printf 'applications: []\n' >/tmp/no-apps.yaml
    serve deploy -a "$DASHBOARD" /tmp/no-apps.yaml >/dev/null || true
    for _ in $(seq 1 60); do
        serve status -a "$DASHBOARD" 2>/dev/null | grep -q '^applications: {}' && break
        sleep 1
    done
    # `ray stop`, and the HAProxy it would leave behind.
    python -m sentiment.deploy stop >/dev/null || true
    echo "sentiment-serve: stopped"
    exit 0
}
trap stop TERM INT

# Fail in one line, before Ray starts, when the model cannot be had.
python -m sentiment --check || exit 1

# Serve's fast path (HAProxy ingress): the flags of ray.env, in the environment of `ray start`.
set -a && . ./ray.env && set +a
ray start --head --disable-usage-stats --num-cpus="${RAY_NUM_CPUS:-$(nproc)}" \
    --port="${RAY_PORT:-6379}" --dashboard-host="$DASHBOARD_HOST" --dashboard-port="$DASHBOARD_PORT" \
    --metrics-export-port="${RAY_METRICS_EXPORT_PORT:-8080}"
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
serve deploy -a "$DASHBOARD" /tmp/serve_config.yaml
echo "sentiment-serve: deploying both apps on :$SENTIMENT_HTTP_PORT (model ${SENTIMENT_MODEL:-default}); GET /healthcheck says when ready"

# Wait in the background so the trap runs as soon as SIGTERM arrives.
sleep infinity &
wait $!
