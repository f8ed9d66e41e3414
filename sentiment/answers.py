"""What the model answers for a text, the same everywhere (the CLI, both apps, the batch endpoint),
and the choices a caller may make about it. No torch: the apps' schemas and the builders import it."""

from dataclasses import dataclass
from typing import TypedDict

# What happens to a text longer than the model's window (512 tokens for DistilBERT): keep its
# head; keep its head and tail (a quarter head, as in Sun et al. 2019, "How to Fine-Tune BERT for
# Text Classification"); or classify every window, each overlapping the last by a quarter.
LONG_TEXT = ("head", "head+tail", "chunks")
# What turns logits into scores (Hugging Face's text-classification function_to_apply).
FUNCTIONS = ("softmax", "sigmoid", "none")


class Prediction(TypedDict):
    """The answer for one text, the same everywhere (CLI, both apps, the batch endpoint)."""

    input_text: str
    label: str
    score: float
    scores: dict[str, float]
    tokens: int
    truncated: bool
    model: str


@dataclass(frozen=True)
class BatchReport:
    """What one batch did: answers, each text's logits (windows combined), model inputs' lengths,
    texts cut short."""

    predictions: list[Prediction]
    logits: list[list[float]]
    input_tokens: list[int]
    truncated: int
