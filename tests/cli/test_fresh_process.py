"""What only a fresh process shows: the threads a model load starts. No Ray."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_loading_starts_no_openmp_threads(tiny_model_dir: Path) -> None:
    # A replica loads its model on one thread and runs it on another (its lane's): a thread team
    # left from loading is a second OpenMP team, which slows every call (sentiment/model.py).
    # In a fresh process: this one's thread teams may exist already.
    script = (
        "import os, sys\n"
        "from sentiment.model import SentimentBertModel\n"
        "count = lambda: len(os.listdir('/proc/self/task'))\n"
        "SentimentBertModel(sys.argv[1], num_threads=1, precision='int8')\n"
        "before = count()\n"
        "model = SentimentBertModel(sys.argv[1], num_threads=2, precision='int8')\n"
        "print(count() - before, model.threads())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tiny_model_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    started, threads = done.stdout.split()
    assert started == "0", "loading the int8 model started OpenMP threads"
    assert threads == "2", "calls from the loading thread no longer run on every core"
