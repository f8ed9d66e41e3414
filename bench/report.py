"""The benchmark's report: the verdict on each target, the tables, the plot and the page."""

import shutil
from pathlib import Path

from bench.load import BATCH_TEXTS, LONE, Run
from bench.precision import IDLE_S

# The targets: served texts/s at 32 clients against the best in-process rate.
RATE_GOALS = {"GET /router": 0.85, "POST /classify": 0.85, "POST /classify/batch": 0.95}
LATENCY_GOAL_MS = 3  # a lone client's p50 over the best in-process batch-1 p50
LONE_GOAL_CALLS = 2  # a lone text beside batch load, in model calls of the configured size
LITSERVE_GOAL = 2  # requests/s against LitServe as its users run it


def targets_met(limit: dict, runs: list[Run], levels: list[int]) -> list[str]:
    """Check the performance issue's targets; one line per target, with the ratio that decides it."""
    at = {(r.target, r.concurrency): r for r in runs}
    top = 32 if 32 in levels else max(levels)
    best = limit["best_precision"]
    ceilings = {int(size): rate for size, rate in limit.get("replica_ceilings", {}).items()}
    # The served precision's in-process figures.
    served = next(
        (f for f in limit["precisions"] if f["precision"] == limit["served_precision"]),
        {"precision": limit["served_precision"]},
    )
    lines = []
    for target, goal in RATE_GOALS.items():
        run = at.get((target, top))
        if run:
            ratio = run.tps / limit["limit_sentences_per_s"]
            ok = ratio >= goal and run.errors == 0
            # What the model itself does on the batches this cell hands a replica.
            size = BATCH_TEXTS if target != "POST /classify/batch" else max(ceilings, default=0)
            ceiling = ceilings.get(size, 0) / limit["limit_sentences_per_s"]
            lines.append(
                f"{'met ' if ok else 'MISS'} {target} at c{top}: {ratio:.2f}x the in-process limit"
                f" ({best}, goal {goal}x), {run.errors} errors"
                + (
                    f"; the model alone on random batches of {size} in {served['precision']}:"
                    f" {ceiling:.2f}x, so the serving path keeps {ratio / ceiling:.2f}x of it"
                    if ceiling
                    else ""
                )
            )
    low = min(levels)
    # What the served precision's lone text costs in-process when calls come apart, as served.
    for target in ("GET /router", "POST /classify"):
        run = at.get((target, low))
        if run:
            extra = run.p50_ms - limit["batch1_p50_ms"]
            apart = served.get("batch1_apart_p50_ms")
            lines.append(
                f"{'met ' if extra <= LATENCY_GOAL_MS else 'MISS'} {target} at c{low}:"
                f" p50 {run.p50_ms:.1f} ms,"
                f" the fastest in-process batch-1 p50 ({limit['batch1_precision']}) + {extra:.1f} ms"
                f" (goal +{LATENCY_GOAL_MS} ms)"
                + (
                    f"; {served['precision']} in-process with calls {IDLE_S * 1000:g} ms apart"
                    f" {apart:.1f} ms, so the serving path +{run.p50_ms - apart:.1f} ms"
                    if apart
                    else ""
                )
            )
    # A lone text while batch clients keep the replica busy: about two model calls of the
    # configured size (the largest call, as the replica runs it in its lanes).
    lone = at.get((LONE, 1))
    size = max(ceilings, default=0)
    if lone and ceilings.get(size):
        call_ms = 1000 * size / ceilings[size]
        ok = lone.p50_ms <= LONE_GOAL_CALLS * call_ms and lone.errors == 0
        lines.append(
            f"{'met ' if ok else 'MISS'} {LONE}: p50 {lone.p50_ms:.0f} ms, p99 {lone.p99_ms:.0f}"
            f" ms, {lone.errors} refused or failed; one model call of {size} texts in-process"
            f" {call_ms:.0f} ms (goal: p50 <= {LONE_GOAL_CALLS}x)"
        )
    # Against LitServe as its users run it: a pipeline in torch's fastest precision here.
    same = limit.get("litserve_precision", limit["served_precision"])
    litserve = at.get((f"litserve POST /predict ({same})", top))
    for target in ("GET /router", "POST /classify"):
        run = at.get((target, top))
        if run and litserve and litserve.rps:
            ratio = run.rps / litserve.rps
            lines.append(
                f"{'met ' if ratio >= LITSERVE_GOAL else 'MISS'} {target} at c{top}: {ratio:.2f}x"
                f" LitServe's requests/s in {same} (goal {LITSERVE_GOAL}x)"
            )
    errors = sum(r.errors for r in runs)
    lines.append(f"{'met ' if not errors else 'MISS'} errors in every cell: {errors} in all")
    return lines


def table(limit: dict, runs: list[Run], memory: dict[str, float]) -> str:
    """Render the results as markdown: the in-process limits, then every served cell."""
    best = limit["limit_sentences_per_s"]
    rows = [
        f"In-process ({limit['threads']} threads; sentences/s on length-sorted batches of 32 and"
        " on batches of 32 in the corpus's order; batch-1 over the corpus in order):",
        "",
        "| engine | sorted batches | arrival order | batch-1 p50 ms | batch-1 p99 ms"
        f" | batch-1 p50 ms, {IDLE_S * 1000:g} ms apart | labels = fp32 | max score diff |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for f in limit["precisions"]:
        rows.append(
            f"| {f['precision']} | {f['sentences_per_s']:.1f} | {f.get('arrival_per_s', 0):.1f} |"
            f" {f['batch1_p50_ms']:.1f} | {f['batch1_p99_ms']:.1f} |"
            f" {f['batch1_apart_p50_ms']:.1f} | {f['agreement']:.2%} | {f['max_score_diff']:.4f} |"
        )
    rows += [
        "",
        f"Limit: {best:.1f} sentences/s ({limit['best_precision']}, the fastest whose labels agree"
        f" with fp32's); fastest batch-1 p50 {limit['batch1_p50_ms']:.1f} ms"
        f" ({limit['batch1_precision']}).",
        "",
        f"The service runs {limit['served_precision']}. What a replica holds under load, in"
        " that engine in-process, random corpus texts run as its batcher runs them (calls side by"
        " side in its lanes): "
        + ", ".join(
            f"batches of {size} {rate:.1f} sentences/s ({rate / best:.2f}x the limit)"
            for size, rate in limit.get("replica_ceilings", {}).items()
        )
        + ".",
        "",
        "| target | conc. | req/s | texts/s | x limit | p50 ms | p95 ms | p99 ms | errors | loadgen CPU |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in runs:
        rows.append(
            f"| {r.target} | {r.concurrency} | {r.rps:.1f} | {r.tps:.1f} | {r.tps / best:.2f} |"
            f" {r.p50_ms:.1f} | {r.p95_ms:.1f} | {r.p99_ms:.1f} | {r.errors} | {r.loadgen_cpu:.2f} |"
        )
    rows += [
        "",
        "Replica memory after the load (RSS): "
        + ", ".join(f"{name} {mb:.0f} MB" for name, mb in sorted(memory.items())),
    ]
    return "\n".join(rows)


def plot(limit: dict, runs: list[Run], path: Path) -> None:
    """Draw texts/s and p99 against concurrency for every target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for target in dict.fromkeys(r.target for r in runs):
        mine = [r for r in runs if r.target == target]
        levels = [r.concurrency for r in mine]
        left.plot(levels, [r.tps for r in mine], marker="o", label=target)
        right.plot(levels, [r.p99_ms for r in mine], marker="o", label=target)
    left.axhline(
        limit["limit_sentences_per_s"], color="grey", linestyle="--", label="in-process limit"
    )
    for axis, title in ((left, "texts/s"), (right, "p99 latency (ms)")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent requests")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    right.set_yscale("log")
    left.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_page(page: Path, markdown: str, figure: Path) -> None:
    """Write the performance page from this run: its tables, verdicts and plot, nothing else."""
    picture = page.with_suffix(".png")
    shutil.copyfile(figure, picture)
    page.write_text(
        "# Performance\n\n"
        "Written by `make bench` (`python -m bench --page docs/performance.md`) from one run on the"
        " machine named below; every figure here comes from that run. The in-process table is the"
        " model alone (`python -m bench.precision` measures the same on your own model); the"
        " served table is the project started as `make up` starts it, driven over loopback.\n\n"
        f"![texts/s and p99 latency against concurrency]({picture.name})\n\n" + markdown
    )
    print(f"wrote {page} and {picture}")
