"""Padding-free model calls: every text's tokens in one row, attention per text.

A padded batch computes every layer on its longest text's width for every text; on review-like text
that is about half the work for nothing, in every CPU runtime (`python -m bench.chunking`). Here the
model's own modules run on one row that holds the tokens of all texts back to back: the linear
layers, LayerNorms and feed-forward work on exactly the tokens there are, positions restart for
each text, and an attention function registered with transformers (`AttentionInterface`) runs
`scaled_dot_product_attention` on each text's slice alone. The classification head then reads each
text's first token. No CPU library does this for encoders (ONNX Runtime's packing operators are
CUDA-only; nested tensors fall back to the math attention path on CPU), so it is written here, for
the families whose forward it knows; any other architecture keeps padded, length-grouped calls.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

# The attention implementation name a packed model runs with.
PACKED = "sentiment_packed"


def packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    segments: Sequence[int] | None = None,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    """Attend within each text's slice of a packed row (`segments`: where each text starts, then
    the row's end); a call without segments is an ordinary padded one, run by SDPA."""
    if segments is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    # [batch, heads, tokens, head_dim] in, [batch, tokens, heads, head_dim] out, as transformers'.
    out = query.new_empty(query.shape[0], query.shape[2], query.shape[1], query.shape[3])
    for start, end in pairwise(segments):
        out[:, start:end] = F.scaled_dot_product_attention(
            query[:, :, start:end], key[:, :, start:end], value[:, :, start:end], scale=scaling
        ).transpose(1, 2)
    return out, None


# Registered once, at import: a padded call under this name gets SDPA's mask, so the model still
# answers ordinary calls the ordinary way.
AttentionInterface.register(PACKED, packed_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(PACKED, sdpa_mask)


@dataclass(frozen=True)
class Family:
    """What a packed forward needs to know of one model family."""

    base: str  # the attribute that holds the encoder (model.distilbert, model.bert, ...)
    first_position: Callable[[PreTrainedModel], int]  # the position id of a text's first token
    head: Callable[[PreTrainedModel, torch.Tensor], torch.Tensor]  # first tokens -> logits


def _distilbert_head(model: PreTrainedModel, first: torch.Tensor) -> torch.Tensor:
    """DistilBertForSequenceClassification's head on each text's first token."""
    return model.classifier(torch.relu(model.pre_classifier(first)))


def _bert_head(model: PreTrainedModel, first: torch.Tensor) -> torch.Tensor:
    """BertForSequenceClassification's pooler and classifier on each text's first token."""
    return model.classifier(model.bert.pooler(first[:, None]))


def _roberta_head(model: PreTrainedModel, first: torch.Tensor) -> torch.Tensor:
    """RobertaForSequenceClassification's head (it reads position 0 of what it is given)."""
    return model.classifier(first[:, None])


FAMILIES = {
    "distilbert": Family("distilbert", lambda model: 0, _distilbert_head),
    "bert": Family("bert", lambda model: 0, _bert_head),
    # RoBERTa counts positions from just past its padding index.
    "roberta": Family("roberta", lambda model: model.config.pad_token_id + 1, _roberta_head),
}


def family(model: PreTrainedModel) -> Family | None:
    """The family a packed forward knows this sequence classifier by, or None."""
    known = FAMILIES.get(model.config.model_type)
    if known is None or not hasattr(model, known.base):
        return None
    return known


def prepare(model: PreTrainedModel) -> bool:
    """Make `model` run packed calls (its attention through packed_attention); say whether it can."""
    if family(model) is None:
        return False
    model.set_attn_implementation(PACKED)
    return True


def packed_logits(model: PreTrainedModel, rows: Sequence[Sequence[int]]) -> torch.Tensor:
    """Run token rows (special tokens included) through a prepared model as one packed row and
    return each row's logits."""
    known = family(model)
    first_position = known.first_position(model)
    segments = [0]
    for row in rows:
        segments.append(segments[-1] + len(row))
    device = model.device
    tokens = torch.tensor([[token for row in rows for token in row]], device=device)
    positions = torch.tensor([[first_position + n for row in rows for n in range(len(row))]])
    hidden = getattr(model, known.base)(
        input_ids=tokens, position_ids=positions.to(device), segments=segments
    ).last_hidden_state[0]
    return known.head(model, hidden[segments[:-1]])
