"""Time every precision this machine offers for a model, check each against fp32, and record the
fastest that passes, where replicas with SENTIMENT_PRECISION=auto read it.

    python -m sentiment.tune                      # SENTIMENT_MODEL, on the bundled review-like texts
    python -m sentiment.tune --texts FILE         # your own texts, one per line

A precision passes when its labels equal fp32's on at least 99.9% of the texts. The record is keyed
by the model, the device, the CPU and its cores, and torch's version: another machine, or a model
saved again, is measured again. Without a record, auto keeps its rule (bf16 where the CPU or GPU
does bf16 natively, else fp32).
"""

import argparse
import sys
import time
from pathlib import Path

from sentiment.answers import Prediction
from sentiment.corpus import corpus
from sentiment.model import SentimentBertModel, cpu_name
from sentiment.settings import Settings, StartupError, available_cores
from sentiment.source import check_available
from sentiment.tuning import Record, key, lookup, write

MIN_AGREEMENT = 0.999
CALL = 32  # texts per model call, in the order given, as a busy replica's calls hold them
# Runtime and precision; fp32 in torch first: it is the reference.
CANDIDATES = {
    "cpu": [
        ("torch", "fp32"),
        ("torch", "bf16"),
        ("torch", "int8"),
        ("onnxruntime", "fp32"),
        ("onnxruntime", "int8"),
    ],
    "cuda": [("torch", "fp32"), ("torch", "bf16"), ("torch", "fp16")],
}
Row = tuple[str, str, float, float, float]  # runtime, precision, texts/s, agreement, score diff


def agreement(ours: list[Prediction], reference: list[Prediction]) -> tuple[float, float]:
    """Share of equal labels, and the largest score difference, against the reference answers."""
    same = sum(a["label"] == b["label"] for a, b in zip(ours, reference, strict=True))
    diff = max(
        abs(a["scores"][label] - b["scores"][label])
        for a, b in zip(ours, reference, strict=True)
        for label in a["scores"]
    )
    return same / len(reference), diff


def timed(model: SentimentBertModel, texts: list[str]) -> tuple[list[Prediction], float]:
    """Answer the texts in calls of CALL, in order; return the answers and sentences/s."""
    model.predict_batch(texts[:CALL])  # warm up
    answers: list[Prediction] = []
    start = time.perf_counter()
    for n in range(0, len(texts), CALL):
        answers += model.predict_batch(texts[n : n + CALL])
    return answers, len(texts) / (time.perf_counter() - start)


def measure(settings: Settings, texts: list[str], log=print) -> list[Row]:
    """Time each candidate on `texts` and compare its answers with torch fp32's."""
    rows: list[Row] = []
    reference = None
    device = "cuda" if settings.device.startswith("cuda") else "cpu"
    for runtime, precision in CANDIDATES[device]:
        name = f"{runtime} {precision}"
        try:
            model = SentimentBertModel.from_settings(
                settings, precision=precision, runtime=runtime, fall_back=False
            )
        except (ValueError, RuntimeError) as error:  # what this machine cannot run
            log(f"{name:17}: cannot run here ({str(error).splitlines()[0]})")
            continue
        answers, rate = timed(model, texts)
        reference = reference or answers
        agree, diff = agreement(answers, reference)
        log(
            f"{name:17}: {rate:7.1f} texts/s ({model.runtime}), labels {100 * agree:5.1f}% as"
            f" fp32's, largest score difference {diff:.4f}"
        )
        rows.append((runtime, precision, rate, agree, diff))
        del model
    return rows


def choose(rows: list[Row], texts: int) -> Record:
    """The fastest row that passes, with its lead over the next that passes."""
    passing = sorted((r for r in rows if r[3] >= MIN_AGREEMENT), key=lambda r: r[2], reverse=True)
    best = passing[0]  # torch fp32 always passes: it is the reference
    runner_up = passing[1][2] if len(passing) > 1 else best[2]
    runtime, precision, rate, agree, diff = best
    return Record(
        precision, runtime, round(rate, 1), round(rate / runner_up, 2), agree, round(diff, 4), texts
    )


def main(argv: list[str] | None = None) -> int:
    """Measure, print, record; exit 2 with one line on a bad setting or file."""
    parser = argparse.ArgumentParser(
        prog="python -m sentiment.tune",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", help="folder or hub id (default: SENTIMENT_MODEL)")
    parser.add_argument("--texts", type=Path, help="calibration texts, one per line")
    parser.add_argument("--count", type=int, default=1024, help="bundled texts to use")
    parser.add_argument(
        "--if-missing", action="store_true", help="do nothing if this machine has a record"
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.model:
            settings = settings.model_copy(update={"model": args.model, "model_revision": None})
        texts = corpus(args.count)
        if args.texts:
            texts = [line for line in args.texts.read_text().splitlines() if line.strip()]
        if not texts:
            raise StartupError(f"{args.texts} holds no texts; give one text per line")
        check_available(settings.model, settings.model_revision)
    except OSError as error:
        print(f"cannot read {args.texts}: {error.strerror}", file=sys.stderr)
        return 2
    except StartupError as error:
        print(error, file=sys.stderr)
        return 2
    cores = settings.num_threads or available_cores()
    record_key = key(settings.model, settings.model_revision, settings.device, cpu_name(), cores)
    if args.if_missing and (found := lookup(settings.tune_file, record_key)):
        print(
            f"sentiment.tune: {found.runtime} {found.precision} recorded here already ({found.why()})"
        )
        return 0
    print(f"{settings.model} on {cpu_name()}, {len(texts)} texts in calls of {CALL}:")
    rows = measure(settings, texts)
    record = choose(rows, len(texts))
    write(settings.tune_file, record_key, record)
    print(f"recorded in {settings.tune_file}: {record.runtime} {record.precision} ({record.why()})")
    print("replicas with SENTIMENT_RUNTIME and SENTIMENT_PRECISION auto (the defaults) run it here")
    return 0


if __name__ == "__main__":
    sys.exit(main())
