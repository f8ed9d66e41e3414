"""The benchmark's verdicts (bench/__main__.py): what each target is measured against."""

from bench.__main__ import Run, targets_met


def run(target: str, rps: float) -> Run:
    """A 10-second cell at 32 clients answering `rps` requests a second, one text each."""
    requests = round(rps * 10)
    return Run(target, 32, 10.0, requests, requests, 0, 1.0, 1.0, 1.0, 0.0)


def test_litserve_is_compared_in_the_precision_the_service_runs() -> None:
    # A CPU where int8 beats native bf16: the limit is int8's, the service runs bf16.
    limit = {
        "precisions": [],
        "best_precision": "int8",
        "limit_sentences_per_s": 150.0,
        "batch1_p50_ms": 12.0,
        "batch1_precision": "int8",
        "served_precision": "bf16",
    }
    runs = [
        run("GET /router", 80.0),
        run("litserve POST /predict (bf16)", 40.0),
        run("litserve POST /predict (int8)", 100.0),
    ]
    (verdict,) = [line for line in targets_met(limit, runs, [32]) if "LitServe" in line]
    assert verdict == "met  GET /router at c32: 2.00x LitServe's requests/s in bf16 (goal 2x)"
