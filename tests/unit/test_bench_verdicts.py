"""The benchmark's verdicts (bench/__main__.py): what each target is measured against."""

from bench.__main__ import Run, targets_met


def run(target: str, rps: float) -> Run:
    """A 10-second cell at 32 clients answering `rps` requests a second, one text each."""
    requests = round(rps * 10)
    return Run(target, 32, 10.0, requests, requests, 0, 1.0, 1.0, 1.0, 0.0)


def in_process(**changes: object) -> dict:
    """A run's in-process figures (results.json's in_process): bf16 served and the limit, changed."""
    return {
        "precisions": [],
        "best_precision": "bf16",
        "limit_sentences_per_s": 200.0,
        "batch1_p50_ms": 12.0,
        "batch1_precision": "bf16",
        "served_precision": "bf16",
        **changes,
    }


def test_litserve_is_compared_in_the_precision_the_service_runs() -> None:
    # A CPU where int8 beats native bf16: the limit is int8's, the service runs bf16.
    limit = in_process(best_precision="int8", batch1_precision="int8", limit_sentences_per_s=150.0)
    runs = [
        run("GET /router", 80.0),
        run("litserve POST /predict (bf16)", 40.0),
        run("litserve POST /predict (int8)", 100.0),
    ]
    (verdict,) = [line for line in targets_met(limit, runs, [32]) if "LitServe" in line]
    assert verdict == "met  GET /router at c32: 2.00x LitServe's requests/s in bf16 (goal 2x)"


def test_a_missed_cell_says_what_the_model_alone_does_on_its_batches() -> None:
    # The single-text endpoints at 32 clients are held to the model's own rate on random batches
    # of 32; the batch endpoint to its rate on random batches of the largest model call.
    limit = in_process(replica_ceilings={"32": 140.0, "256": 180.0})  # as results.json has them
    batch = Run("POST /classify/batch", 32, 10.0, 50, 1600, 0, 1.0, 1.0, 1.0, 0.0)
    lines = targets_met(limit, [run("GET /router", 126.0), batch], [32])
    assert lines[0] == (
        "MISS GET /router at c32: 0.63x the in-process limit (bf16, goal 0.85x), 0 errors;"
        " the model alone on random batches of 32 in bf16: 0.70x, so the serving path keeps"
        " 0.90x of it"
    )
    assert lines[1].startswith("MISS POST /classify/batch at c32: 0.80x")
    assert lines[1].endswith(
        "random batches of 256 in bf16: 0.90x, so the serving path keeps 0.89x of it"
    )
