"""A replica's own Prometheus metrics, beside Ray Serve's, on Ray's metrics port (Serve side only).

Ray prefixes every name with `ray_` and tags each series with application, deployment and replica.
"""

from collections import Counter

from ray.serve import metrics

from sentiment.answers import BatchReport

BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
TOKENS = [8, 16, 32, 64, 128, 256, 512]


class ModelMetrics:
    """What the model did, batch by batch; made inside a replica, so Serve tags the series with it."""

    def __init__(self) -> None:
        self.texts = metrics.Counter(
            "sentiment_texts",
            description="Texts classified, by model and label.",
            tag_keys=("model", "label"),
        )
        self.truncated = metrics.Counter(
            "sentiment_truncated_texts",
            description="Texts cut to the model's max length.",
            tag_keys=("model",),
        )
        self.batch_size = metrics.Histogram(
            "sentiment_batch_size",
            description="Texts per model call, by model.",
            boundaries=BATCH_SIZES,
            tag_keys=("model",),
        )
        self.inference_seconds = metrics.Histogram(
            "sentiment_inference_seconds",
            description="Seconds per model call (tokenize and forward).",
            boundaries=SECONDS,
            tag_keys=("model",),
        )
        self.queue_seconds = metrics.Histogram(
            "sentiment_queue_seconds",
            description="Seconds each text waited for its model call (traffic only, not health).",
            boundaries=SECONDS,
            tag_keys=("model",),
        )
        self.input_tokens = metrics.Histogram(
            "sentiment_input_tokens",
            description="Tokens per model input (a text, or one window of a chunked text).",
            boundaries=TOKENS,
            tag_keys=("model",),
        )

    def record(self, model_id: str, report: BatchReport, seconds: float) -> None:
        """Record one model call of model `model_id`."""
        tags = {"model": model_id}
        self.batch_size.observe(len(report.predictions), tags=tags)
        self.inference_seconds.observe(seconds, tags=tags)
        for tokens in report.input_tokens:
            self.input_tokens.observe(tokens, tags=tags)
        for label, count in Counter(p["label"] for p in report.predictions).items():
            self.texts.inc(count, tags={**tags, "label": label})
        if report.truncated:
            self.truncated.inc(report.truncated, tags=tags)
