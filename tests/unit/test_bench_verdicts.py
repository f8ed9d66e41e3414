"""The benchmark's verdicts (bench/report.py): what each target is measured against."""

from bench.load import LONE, Run
from bench.report import targets_met


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


def test_litserve_is_compared_as_its_users_run_it_in_torchs_fastest_precision() -> None:
    # A CPU where int8 is torch's fastest: LitServe's int8 pipeline, not its bf16 one, is the bar.
    limit = in_process(litserve_precision="int8", limit_sentences_per_s=150.0)
    runs = [
        run("GET /router", 80.0),
        run("litserve POST /predict (bf16)", 40.0),
        run("litserve POST /predict (int8)", 100.0),
    ]
    (verdict,) = [line for line in targets_met(limit, runs, [32]) if "LitServe" in line]
    assert verdict == "MISS GET /router at c32: 0.80x LitServe's requests/s in int8 (goal 2x)"


def test_a_lone_text_beside_batches_is_held_to_two_model_calls() -> None:
    # Random batches of 256 at 256 sentences/s: one call of the configured size takes 1 s.
    limit = in_process(replica_ceilings={"32": 140.0, "256": 256.0})

    def lone(p50_ms: float, errors: int = 0) -> str:
        cell = Run(LONE, 1, 10.0, 10, 10, errors, p50_ms, p50_ms, p50_ms, 0.0)
        (line,) = [line for line in targets_met(limit, [cell], [1]) if LONE in line]
        return line

    assert lone(1500).startswith(f"met  {LONE}: p50 1500 ms")
    assert "one model call of 256 texts in-process 1000 ms" in lone(1500)
    assert lone(2500).startswith("MISS")
    assert lone(500, errors=3).startswith("MISS")


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
