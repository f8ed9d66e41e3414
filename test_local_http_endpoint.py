"""Query a running sentiment-serve over HTTP; print each answer and its latency; exit 1 on any failure.

    python test_local_http_endpoint.py                       # both apps on 127.0.0.1:8000
    python test_local_http_endpoint.py --apps router -n 20   # only the Router app, 20 rounds
    python test_local_http_endpoint.py --api-key KEY         # a server with SENTIMENT_API_KEYS

Standard library only, so it runs from any Python without the project's dependencies.
"""

import argparse
import json
import statistics
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

SENTENCES = [
    "i like you",
    "this movie was a complete waste of time",
    "the cast is wonderful and the story is moving",
    "it was fine, i guess",
]
TIMEOUT_S = 30.0
ANSWER_KEYS = {"input_text", "label", "score", "scores", "tokens", "truncated", "model"}
# Sent with every request when --api-key is given (a server with SENTIMENT_API_KEYS needs it).
HEADERS: dict[str, str] = {}


@dataclass
class Report:
    """What was asked, how long each answer took, and what went wrong."""

    latencies_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def request(method: str, url: str, body: object = None) -> tuple[int, object, float]:
    """Send one request; return its status, decoded JSON body and latency in milliseconds."""
    data = None if body is None else json.dumps(body).encode()
    headers = {**HEADERS, **({} if body is None else {"Content-Type": "application/json"})}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    latency_ms = (time.perf_counter() - start) * 1000
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = raw.decode(errors="replace")
    return status, payload, latency_ms


def shape_error(answer: object, text: str | None) -> str | None:
    """Say what is wrong with an answer for one text, or None if it has the contract's shape."""
    if not isinstance(answer, dict):
        return f"not a JSON object: {answer!r}"
    if set(answer) != ANSWER_KEYS:
        return f"keys {sorted(answer)}"
    scores = answer["scores"]
    if not isinstance(scores, dict) or answer["label"] not in scores:
        return f"label {answer['label']!r} not among scores {scores!r}"
    if abs(scores[answer["label"]] - answer["score"]) > 1e-6 or answer["score"] < max(
        scores.values()
    ):
        return f"score {answer['score']} is not the top probability"
    if abs(sum(scores.values()) - 1) > 1e-3:
        return f"scores do not sum to 1: {scores}"
    if text is not None and answer["input_text"] != text:
        return f"input_text {answer['input_text']!r} != {text!r}"
    return None


def check(
    report: Report,
    name: str,
    method: str,
    url: str,
    body: object = None,
    status: int = 200,
    verify: Callable[[object], str | None] = lambda _: None,
) -> None:
    """Make one request, print it, and record a failure if its status or shape is wrong."""
    try:
        got, payload, latency_ms = request(method, url, body)
    except (OSError, urllib.error.URLError) as error:
        report.failures.append(f"{name}: {error}")
        print(f"FAIL {name}: {error}")
        return
    report.latencies_ms.append(latency_ms)
    problem = f"status {got}, expected {status}" if got != status else verify(payload)
    print(
        f"{'ok  ' if problem is None else 'FAIL'} {latency_ms:7.1f} ms  {name}  {json.dumps(payload)}"
    )
    if problem is not None:
        report.failures.append(f"{name}: {problem}")


def check_router(report: Report, url: str, text: str) -> None:
    """Ask the Router app about one text."""
    query = urllib.parse.urlencode({"txt": text})
    check(
        report, "GET /router", "GET", f"{url}/router?{query}", verify=lambda a: shape_error(a, text)
    )


def check_classifier(report: Report, url: str, text: str) -> None:
    """Ask every route of the Classifier app, and one bad input it must refuse."""
    query = urllib.parse.urlencode({"input_text": text})
    check(report, "GET /healthcheck", "GET", f"{url}/healthcheck")
    check(report, "GET /test", "GET", f"{url}/test", verify=lambda a: shape_error(a, None))
    check(
        report, "POST /classify?input_text=", "POST", f"{url}/classify?{query}",
        verify=lambda a: shape_error(a, text),
    )  # fmt: skip
    check(
        report, "POST /classify {json}", "POST", f"{url}/classify", {"input_text": text},
        verify=lambda a: shape_error(a, text),
    )  # fmt: skip

    def batch_error(answer: object) -> str | None:
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list) or len(results) != len(SENTENCES):
            return f"expected {len(SENTENCES)} results"
        return next(filter(None, map(shape_error, results, SENTENCES)), None)

    check(
        report, "POST /classify/batch", "POST", f"{url}/classify/batch", {"texts": SENTENCES},
        verify=batch_error,
    )  # fmt: skip
    check(
        report,
        "POST /classify?input_text=%20 (422)",
        "POST",
        f"{url}/classify?input_text=%20",
        status=422,
    )


def percentile(values: list[float], q: float) -> float:
    """Return the q-th percentile (0-100) of values, nearest-rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def main(argv: list[str] | None = None) -> int:
    """Check the chosen apps n times and print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="where Serve answers")
    parser.add_argument(
        "--apps", default="router,classifier", help="comma-separated: router, classifier"
    )
    parser.add_argument("-n", "--rounds", type=int, default=1, help="rounds over the sentences")
    parser.add_argument("--api-key", help="send Authorization: Bearer KEY (SENTIMENT_API_KEYS)")
    args = parser.parse_args(argv)
    if args.api_key:
        HEADERS["Authorization"] = f"Bearer {args.api_key}"
    apps = {name.strip() for name in args.apps.split(",") if name.strip()}
    unknown = apps - {"router", "classifier"}
    if unknown or not apps:
        parser.error(f"--apps takes router and/or classifier, not {sorted(unknown) or 'nothing'}")
    url = args.url.rstrip("/")
    report = Report()
    for round_ in range(args.rounds):
        text = SENTENCES[round_ % len(SENTENCES)]
        if "router" in apps:
            check_router(report, url, text)
        if "classifier" in apps:
            check_classifier(report, url, text)
    lat = report.latencies_ms
    if lat:
        print(
            f"\n{len(lat)} requests, {len(report.failures)} failed;"
            f" latency p50 {statistics.median(lat):.1f} ms, p95 {percentile(lat, 95):.1f} ms"
        )
    for failure in report.failures:
        print(f"failed: {failure}", file=sys.stderr)
    return 1 if report.failures or not lat else 0


if __name__ == "__main__":
    sys.exit(main())
