"""The HTTP contract's shapes: requests and answers of both apps, as FastAPI validates and documents
them. No Ray, no FastAPI app (sentiment.http builds it)."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from sentiment.answers import FUNCTIONS, LONG_TEXT


class ErrorOut(BaseModel):
    """Every error's body: what was wrong (FastAPI's own 422s give a list of field errors)."""

    detail: str | list[dict[str, Any]]


# In a query string `head+tail` arrives as "head tail" (a + is a space there): read it as meant.
LongText = Annotated[
    Literal[LONG_TEXT],
    BeforeValidator(lambda value: value.replace(" ", "+") if isinstance(value, str) else value),
]
LONG_TEXT_HELP = (
    "Past the model's window (512 tokens): keep the text's head, its head and tail, or classify"
    " overlapping windows (chunks) and combine them by length."
)
ModelId = Annotated[
    str | None,
    Field(
        description="The model to use, an id from GET /models (or the serve_multiplexed_model_id"
        " header); none: the default model.",
    ),
]


class ClassifyRequest(BaseModel):
    """One text to classify."""

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"input_text": "i like you"}]}
    )

    input_text: str = Field(description="The text to classify.")
    model: ModelId = None
    long_text: LongText = Field("head", description=LONG_TEXT_HELP)


class BatchRequest(BaseModel):
    """Several texts to classify in one call."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"texts": ["i like you", "i do not"]}]},
    )

    texts: list[str] = Field(description="The texts to classify, answered in the same order.")
    model: ModelId = None
    long_text: LongText = Field("head", description=LONG_TEXT_HELP)


class PredictionOut(BaseModel):
    """The answer for one text."""

    input_text: str
    label: str = Field(description="The most likely label, from the model's own id2label.")
    score: float = Field(description="The probability of `label`.")
    scores: dict[str, float] = Field(description="The probability of every label.")
    tokens: int = Field(description="The text's tokens (without the model's special tokens).")
    truncated: bool = Field(description="Whether part of the text was left unread.")
    model: str = Field(description="The id of the model that answered.")


class BatchOut(BaseModel):
    """The answers for a batch, in request order."""

    results: list[PredictionOut]


class Health(BaseModel):
    """A replica that answered a real inference, and where it runs."""

    status: str
    model: str
    precision: str = Field(description="What the model runs in: fp32, bf16, fp16 or int8.")
    precision_reason: str = Field(
        description="Why: asked for, measured by sentiment.tune, or auto's rule."
    )
    runtime: str = Field(description="What runs the model, and whether its calls are padding-free.")
    replica: str = Field(description="The Serve replica that answered.")
    node: str = Field(description="The Ray node that replica runs on.")


class PredictParameters(BaseModel):
    """Hugging Face's text-classification parameters."""

    model_config = ConfigDict(extra="forbid", strict=True)

    top_k: int | None = Field(None, ge=1, description="Only the k best labels; none: every label.")
    function_to_apply: Literal[FUNCTIONS] | None = Field(
        None,
        description="softmax, sigmoid or none (logits); none given: the model's own (softmax"
        " for single-label models).",
    )


class PredictRequest(BaseModel):
    """Hugging Face's text-classification request (and text-embeddings-inference's /predict)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"inputs": "i like you"}, {"inputs": ["i like you", "i do not"]}]
        },
    )

    inputs: str | list[str] = Field(description="One text, or several.")
    parameters: PredictParameters = Field(default_factory=PredictParameters)
    truncate: bool = Field(
        True,
        description="Cut texts past the model's window to their head; false: refuse them (413).",
    )
    raw_scores: bool = Field(
        False, description="Logits instead of scores (text-embeddings-inference)."
    )
    model: ModelId = None


class LabelScore(BaseModel):
    """One label's score."""

    label: str
    score: float


class ModelOut(BaseModel):
    """A model a request may name, and what this replica holds of it."""

    id: str
    source: str = Field(description="The folder or hub id it loads from.")
    loaded: bool = Field(description="Whether the replica that answered holds it now.")
    labels: list[str] | None = Field(None, description="Its labels, when loaded.")
    precision: str | None = Field(None, description="What it runs in, when loaded.")
    precision_reason: str | None = Field(None, description="Why that precision, when loaded.")
    runtime: str | None = Field(None, description="What runs it, when loaded.")


class ModelsOut(BaseModel):
    """The allow-list, and what the replica that answered holds."""

    default: str = Field(description="The id used when a request names no model.")
    max_loaded: int = Field(description="Most models a replica holds besides the default.")
    models: list[ModelOut]
