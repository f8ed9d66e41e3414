"""A replica's own Prometheus metrics, beside Ray Serve's, on Ray's metrics port (Serve side only).

Ray prefixes every name with `ray_` and tags each series with application, deployment and replica.
"""

from collections import Counter

from ray.serve import metrics

from sentiment.model import BatchReport

BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
TOKENS = [8, 16, 32, 64, 128, 256, 512]


class ModelMetrics:
    """What the model did, batch by batch; made inside a replica, so Serve tags the series with it."""

    def __init__(self) -> None:
        self.texts = metrics.Counter(
            "sentiment_texts", description="Texts classified, by label.", tag_keys=("label",)
        )
        self.truncated = metrics.Counter(
            "sentiment_truncated_texts", description="Texts cut to the model's max length."
        )
        self.batch_size = metrics.Histogram(
            "sentiment_batch_size", description="Texts per model call.", boundaries=BATCH_SIZES
        )
        self.inference_seconds = metrics.Histogram(
            "sentiment_inference_seconds",
            description="Seconds per model call (tokenize and forward).",
            boundaries=SECONDS,
        )
        self.queue_seconds = metrics.Histogram(
            "sentiment_queue_seconds",
            description="Seconds each text waited for its model call (traffic only, not health).",
            boundaries=SECONDS,
        )
        self.input_tokens = metrics.Histogram(
            "sentiment_input_tokens",
            description="Tokens per text, after truncation.",
            boundaries=TOKENS,
        )

    def record(self, report: BatchReport, seconds: float) -> None:
        """Record one model call."""
        self.batch_size.observe(len(report.predictions))
        self.inference_seconds.observe(seconds)
        for tokens in report.input_tokens:
            self.input_tokens.observe(tokens)
        for label, count in Counter(p["label"] for p in report.predictions).items():
            self.texts.inc(count, tags={"label": label})
        if report.truncated:
            self.truncated.inc(report.truncated)
