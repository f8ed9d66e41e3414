"""Each runtime and precision in-process on the benchmark corpus: speed on length-sorted batches and
on batches in arrival order, batch-1 latency, agreement with torch fp32.

    python -m bench.precision                     # the full-size stand-in (models/full, built if missing)
    python -m bench.precision --model DIR         # your own model: run this before trusting a precision
    python -m bench.precision --engines torch-int8,torch-int8-padded,onnxruntime-int8

An engine is RUNTIME-PRECISION (torch padding-free where the family is known, as the service runs
it), or torch-PRECISION-padded (padded, length-grouped calls: what padding-free saves).

The stand-in is untrained, so its agreement figures say little about a real model's: its speed is
real, its labels are not. A precision is safe for a model when its labels agree with fp32 on (nearly)
every text of a corpus like the one it will serve.
"""

import argparse
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.harness import percentile
from sentiment.corpus import corpus
from sentiment.model import SentimentBertModel, cpu_flags, cpu_name
from sentiment.settings import Settings, available_cores
from sentiment.testing import ensure_model
from sentiment.tune import agreement, timed

ROOT = Path(__file__).resolve().parents[1]
BATCH = 32  # texts per forward pass for the throughput figure, as the server's chunks
AGREEMENT_GOAL = 0.999  # labels equal to fp32's on this share of the corpus, to count as safe
# A served lone client's text reaches the model about this long after the last one left it (HTTP,
# Serve, the client): the cores idle meanwhile, and the next call pays for waking them.
IDLE_S = 0.005


ENGINES = (
    "torch-fp32",
    "torch-bf16",
    "torch-int8",
    "torch-int8-padded",
    "onnxruntime-fp32",
    "onnxruntime-int8",
)


def load(model_dir: str, engine: str) -> SentimentBertModel:
    """The model as an engine label says (RUNTIME-PRECISION[-padded])."""
    runtime, precision, *padded = engine.split("-")
    return SentimentBertModel.from_settings(
        Settings(model=model_dir, num_threads=available_cores()),
        precision=precision,
        runtime=runtime,
        padding_free=not padded,
        fall_back=False,
    )


@dataclass
class Figures:
    """One engine's figures on one machine."""

    precision: str  # the engine: RUNTIME-PRECISION[-padded]
    sentences_per_s: float  # length-sorted batches of BATCH
    arrival_per_s: float  # batches of BATCH in the corpus's order, as a busy replica's calls
    batch1_p50_ms: float
    batch1_p99_ms: float
    batch1_apart_p50_ms: float  # batch 1, each call IDLE_S after the last, as a lone client's
    agreement: float  # share of texts whose label equals fp32's
    max_score_diff: float  # largest difference from fp32 in any label's probability

    @property
    def safe(self) -> bool:
        """Say whether its labels agree with fp32's often enough to serve it."""
        return self.agreement >= AGREEMENT_GOAL


def throughput(model: SentimentBertModel, texts: list[str], seconds: float) -> float:
    """Sentences/s in length-sorted batches of BATCH, striding through every length."""
    by_length = sorted(texts, key=lambda t: len(model.tokenizer(t)["input_ids"]))
    model.predict_batch(by_length[: 2 * BATCH])  # warm up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        offset = (done * 7) % max(1, len(by_length) - BATCH)
        model.predict_batch(by_length[offset : offset + BATCH])
        done += BATCH
    return done / (time.perf_counter() - start)


def latencies(
    model: SentimentBertModel, texts: list[str], seconds: float, idle_s: float = 0.0
) -> list[float]:
    """Milliseconds per single-text call, over the corpus in order, for about `seconds`; each call
    `idle_s` after the last one ended."""
    model.predict(texts[0])  # warm up
    found: list[float] = []
    start = time.perf_counter()
    for text in texts:
        if time.perf_counter() - start > seconds and len(found) >= 20:
            break
        time.sleep(idle_s)
        begin = time.perf_counter()
        model.predict(text)
        found.append((time.perf_counter() - begin) * 1000)
    return found


def measure(
    model_dir: str, engines: list[str], texts: list[str], seconds: float, log=print
) -> list[Figures]:
    """Load the model in each engine in turn and measure it; torch fp32 is always the reference."""
    figures, reference = [], None
    for engine in ["torch-fp32", *(e for e in engines if e != "torch-fp32")]:
        log(f"{engine} ...")
        model = load(model_dir, engine)
        answers, arrival = timed(model, texts)
        reference = reference or answers
        agree, diff = agreement(answers, reference)
        times = latencies(model, texts, seconds)
        figures.append(
            Figures(
                precision=engine,
                sentences_per_s=throughput(model, texts, seconds),
                arrival_per_s=arrival,
                batch1_p50_ms=statistics.median(times),
                batch1_p99_ms=percentile(times, 99),
                batch1_apart_p50_ms=statistics.median(latencies(model, texts, seconds, IDLE_S)),
                agreement=agree,
                max_score_diff=diff,
            )
        )
        del model
    return [f for f in figures if f.precision in engines]


def fastest_safe(figures: list[Figures]) -> Figures:
    """The fastest precision whose labels agree with fp32's (fp32 itself always does)."""
    return max((f for f in figures if f.safe), key=lambda f: f.sentences_per_s)


def table(figures: list[Figures]) -> str:
    """Render the figures as a markdown table."""
    rows = [
        f"| engine | sentences/s, sorted batches of {BATCH} | in arrival order | x torch-fp32"
        f" | batch-1 p50 ms | batch-1 p99 ms | batch-1 p50 ms, {IDLE_S * 1000:g} ms apart"
        " | labels = fp32 | max score diff |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    fp32 = next((f.sentences_per_s for f in figures if f.precision == "torch-fp32"), None)
    for f in figures:
        ratio = f"{f.sentences_per_s / fp32:.2f}" if fp32 else "-"
        rows.append(
            f"| {f.precision} | {f.sentences_per_s:.1f} | {f.arrival_per_s:.1f} | {ratio} |"
            f" {f.batch1_p50_ms:.1f} | {f.batch1_p99_ms:.1f} | {f.batch1_apart_p50_ms:.1f} |"
            f" {f.agreement:.2%} | {f.max_score_diff:.4f} |"
        )
    return "\n".join(rows)


def cpu_line() -> str:
    """Name this CPU and the flags that decide its precisions."""
    wanted = ("amx_bf16", "amx_fp16", "amx_int8", "avx512_bf16", "avx512_fp16", "avx512_vnni")
    flags = sorted(cpu_flags() & set(wanted))
    return f"{cpu_name()}, {available_cores()} cores; flags: {', '.join(flags) or 'none of ' + ', '.join(wanted)}"


def main(argv: list[str] | None = None) -> int:
    """Measure every precision and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.precision", description=__doc__)
    parser.add_argument("--model", default=str(ROOT / "models" / "full"))
    parser.add_argument("--texts", type=int, default=1000, help="corpus texts for agreement")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--engines", default=",".join(ENGINES), help="RUNTIME-PRECISION[-padded]")
    args = parser.parse_args(argv)
    ensure_model(args.model)
    figures = measure(
        args.model, args.engines.split(","), corpus(args.texts), args.seconds, log=print
    )
    print(f"\n{args.model}, {args.texts} texts; {cpu_line()}\n")
    print(table(figures))
    best = fastest_safe(figures)
    print(f"\nfastest with labels equal to fp32 on >= {AGREEMENT_GOAL:.1%}: {best.precision}")
    for f in figures:
        if not f.safe:
            print(f"not safe on this model: {f.precision} ({asdict(f)['agreement']:.2%} agree)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
