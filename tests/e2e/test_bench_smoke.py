"""A smoke run of the load benchmark (tiny model, short steps): the harness keeps working.

It measures nothing worth reading; the figures come from `make bench` (docs/speed.md).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_runs_end_to_end(tiny_model_dir: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--smoke",
            "--model",
            str(tiny_model_dir),
            "--seconds",
            "0.5",
            "--concurrency",
            "1",
            "--engines",
            "torch-fp32,torch-int8,onnxruntime-int8",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        # Served in fp32 (no tune record to write), LitServe in fp32 and torch's fastest here.
        env={
            **os.environ,
            "SENTIMENT_PRECISION": "fp32",
            "SENTIMENT_ONNX_CACHE_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    targets = {(run["target"], run["concurrency"]) for run in results["runs"]}
    for target in (
        "GET /router",
        "POST /classify",
        "POST /classify/batch",
        "POST /classify beside batch load",
        "baseline POST /classify",
        "litserve POST /predict (fp32)",
    ):
        assert (target, 1) in targets
    assert all(run["errors"] == 0 and run["tps"] > 0 for run in results["runs"]), results["runs"]
    assert results["in_process"]["limit_sentences_per_s"] > 0
    # The model's own rate on what a replica holds: random batches of 32 and of its largest call.
    assert set(results["in_process"]["replica_ceilings"]) == {"32", "256"}
    assert all(rate > 0 for rate in results["in_process"]["replica_ceilings"].values())
    assert "the model alone on random batches of 32 in torch-fp32" in results["targets"][0]
    engines = {f["precision"] for f in results["in_process"]["precisions"]}
    assert {"torch-fp32", "torch-int8", "onnxruntime-int8"} <= engines
    assert any(
        line.startswith(("met  POST /classify beside", "MISS POST /classify beside"))
        for line in results["targets"]
    )
    assert results["replica_memory_mb"] and all(results["replica_memory_mb"].values())
    assert (tmp_path / "results.png").stat().st_size > 10_000
    assert "| target |" in (tmp_path / "results.md").read_text()
    assert done.stdout.rstrip().endswith((tmp_path / "results.md").read_text().rstrip())
    # The capacity model reads the same file (docs/deployment.md, Sizing).
    capacity = subprocess.run(
        [sys.executable, "-m", "bench.capacity", "--results", str(tmp_path / "results.json"), "--p99-ms", "10000"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert capacity.returncode == 0, capacity.stderr
    (router,) = [
        line for line in capacity.stdout.splitlines() if line.startswith("| GET /router |")
    ]
    assert "req/s" in router and "no level" not in router
