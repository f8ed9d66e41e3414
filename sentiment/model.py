"""The sentiment classifier: a Hugging Face sequence-classification model, loaded once."""

import logging
import math
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as transformers_logging

from sentiment import ort, packing, tuning
from sentiment.answers import LONG_TEXT, BatchReport, Prediction
from sentiment.settings import DEFAULT_MODEL, DEFAULT_MODEL_ID, Settings, available_cores
from sentiment.source import check_source, load_failure

# Most texts per forward pass inside predict_batch; a caller's batch is split into chunks.
DEFAULT_CHUNK_SIZE = 32
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
RUNTIMES = ("auto", "torch", "onnxruntime")
DTYPES = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "int8": torch.float32,
}
# How far a score may move with the batch a text runs in (padding changes the sums' order), per
# precision: what tests allow between a batch and one-by-one, or served and in-process answers.
SCORE_TOLERANCE = {"fp32": 1e-4, "bf16": 2e-2, "fp16": 5e-3, "int8": 1e-2}
# CPU flags that mean bf16 matrix work in hardware (Intel AMX, AVX512-BF16; Arm's BF16 extension).
NATIVE_BF16_FLAGS = {"amx_bf16", "avx512_bf16", "bf16"}
# What an ONNX export must answer as the torch model does before it is kept.
EXPORT_PROBE = "a probe sentence to check an exported model"
# Chunking by length (see SentimentBertModel._chunks): both measured best on review-like text.
MAX_PADDING = 0.2
MIN_CHUNK = 4
# Most tokens one packed (padding-free) forward pass holds: past a few hundred tokens a bigger pass
# gains nothing, and a much bigger one falls out of the CPU's caches (`python -m bench.chunking
# --budgets` compares).
TOKEN_BUDGET = 1024
# A forward pass pads its rows to a multiple of this many tokens. The CPU's matrix kernels are
# built per shape; at exact widths a server's batches keep meeting new shapes (rows x width, in
# the thousands) and pay for building them. `python -m bench.chunking --pads 1,8,16,32` compares.
PAD_MULTIPLE = 16
# LONG_TEXT's quarters (sentiment.answers): the head's share of head+tail, the windows' overlap.
HEAD_SHARE = 0.25
OVERLAP_SHARE = 0.25


logger = logging.getLogger(__name__)


def _cpuinfo(*keys: str) -> str:
    """The first /proc/cpuinfo value under one of `keys` (Linux; empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith(keys):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_flags() -> set[str]:
    """Read this CPU's feature flags."""
    return set(_cpuinfo("flags", "Features").split())


def cpu_name() -> str:
    """Name this CPU (its model name, else its architecture)."""
    return _cpuinfo("model name") or platform.machine() or "unknown CPU"


def resolve_precision(
    precision: str,
    device: str = "cpu",
    tuned: tuning.Record | None = None,
    runtime: str = "torch",
) -> tuple[str, str]:
    """Turn a precision setting into the one that runs, and say why (for the start-up line):
    `auto` takes what `python -m sentiment.tune` measured fastest on this machine, if it did."""
    if precision != "auto":
        return precision, "asked for"
    if tuned is not None:
        return tuned.precision, f"auto: {tuned.why()}"
    if runtime == "onnxruntime":
        return "int8", "auto: ONNX Runtime's int8 (no sentiment.tune record)"
    if torch.device(device).type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "auto: this GPU supports bf16"
        return "fp32", "auto: this GPU has no bf16"
    native = sorted(cpu_flags() & NATIVE_BF16_FLAGS)
    if torch.device(device).type == "cpu" and native:
        return "bf16", f"auto: this CPU has {'+'.join(native)} (no sentiment.tune record)"
    return "fp32", "auto: no native bf16 on this device (no sentiment.tune record)"


def choose_runtime(
    model: str,
    revision: str | None,
    device: str,
    precision: str,
    runtime: str,
    tune_file: Path | None,
    threads: int,
) -> tuple[str, str, str]:
    """The runtime and precision a model runs in, and why: what is asked for; for `auto`, what
    `python -m sentiment.tune` recorded for this model and machine (if it measured the runtime
    asked for); else torch, and resolve_precision's rule."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be auto or one of {RUNTIMES}, not {runtime!r}")
    tuned = None
    if "auto" in (precision, runtime):
        machine = tuning.key(model, revision, device, cpu_name(), threads)
        tuned = tuning.lookup(tune_file, machine)
        if tuned and runtime not in ("auto", tuned.runtime):
            tuned = None  # measured for another runtime than the one asked for
    if runtime == "auto":
        runtime = tuned.runtime if tuned else "torch"
    return runtime, *resolve_precision(precision, device, tuned, runtime)


class SentimentBertModel:
    """A text classifier that loads once and answers one text or many."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        revision: str | None = None,
        device: str = "cpu",
        num_threads: int = 0,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        precision: str = "fp32",
        model_id: str = DEFAULT_MODEL_ID,
        padding_free: bool = True,
        tune_file: Path | None = None,
        runtime: str = "torch",
        cache_dir: Path = ort.DEFAULT_CACHE,
        fall_back: bool = True,
    ) -> None:
        self.id = model_id  # what callers name it (a server's model id); answers carry it
        # Ray sets OMP_NUM_THREADS=1 in replicas; say the thread count out loud instead.
        self.num_threads = num_threads or available_cores()
        # Load on one core: a parallel region here (int8's quantization runs one) would leave this
        # thread an OpenMP team of its own, and a replica runs the model on another thread (its
        # lane's). With two teams libgomp stops spinning between calls, and every call is slower
        # (`python -m bench --concurrency 1 --engines torch-int8 --no-peers` shows it served).
        self.use_threads(1)
        self.name = model
        self.device = torch.device(device)
        self.chunk_size = chunk_size
        self.pad_multiple = PAD_MULTIPLE  # bench.chunking varies it
        self.runtime_name, self.precision, self.precision_reason = choose_runtime(
            model, revision, device, precision, runtime, tune_file, self.num_threads
        )
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be auto or one of {PRECISIONS}, not {precision!r}")
        if self.precision == "int8" and self.device.type != "cpu":
            raise ValueError("int8 runs on the CPU only; set SENTIMENT_DEVICE=cpu")
        if self.runtime_name == "onnxruntime" and self.precision not in ort.PRECISIONS:
            raise ValueError(
                f"onnxruntime runs {' or '.join(ort.PRECISIONS)}, not {self.precision}"
            )
        # A progress bar per replica start is noise in server logs.
        transformers_logging.disable_progress_bar()
        check_source(model, revision)
        onnx = self.runtime_name == "onnxruntime"
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model, revision=revision)
            # The dtype always said: transformers 5 would otherwise keep whatever dtype was saved.
            # An export starts from fp32 (ONNX Runtime quantizes it) with plain attention.
            self.model = AutoModelForSequenceClassification.from_pretrained(
                model,
                revision=revision,
                dtype=torch.float32 if onnx else DTYPES[self.precision],
                **({"attn_implementation": "eager"} if onnx else {}),
            )
        except Exception as error:  # from_pretrained raises many kinds; all mean "not here".
            raise load_failure(model, error) from error
        self.model.to(self.device).eval()
        self.token_budget = TOKEN_BUDGET  # bench.chunking varies it
        self.session: ort.Session | None = None
        if onnx:
            self.session = self._onnx_session(model, revision, cache_dir, fall_back)
        self.padding_free = False
        config = self.model.config
        if self.session is not None:
            self.model = None  # the session holds the weights now: one copy in memory
        else:
            self._torch(padding_free)
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        # As Hugging Face's pipeline: one score per label from a sigmoid for multi-label or
        # one-logit models, from a softmax over the labels otherwise.
        multi_label = config.problem_type == "multi_label_classification"
        self.function = "sigmoid" if multi_label or config.num_labels == 1 else "softmax"
        # Tokenizers without a saved limit report a huge model_max_length; the model's own wins.
        self.max_length = min(self.tokenizer.model_max_length, config.max_position_embeddings)
        self.prefix, self.suffix = self._special_tokens()
        self.window = self.max_length - len(self.prefix) - len(self.suffix)
        # Calls from this thread (a script's, a benchmark's) run on every core it was given.
        self.use_threads(self.num_threads)

    def _torch(self, padding_free: bool) -> None:
        """Run the model in torch: padding-free where its family is known, int8 if asked."""
        # Padding-free calls where this family's forward is known (sentiment/packing.py).
        self.padding_free = padding_free and packing.prepare(self.model)
        if self.precision == "int8":
            # Linear layers hold almost all of DistilBERT's compute; int8 weights, fp32 activations.
            self.model = torch.ao.quantization.quantize_dynamic(
                self.model, {torch.nn.Linear}, dtype=torch.qint8
            )

    def _onnx_session(
        self, model: str, revision: str | None, cache_dir: Path, fall_back: bool
    ) -> "ort.Session | None":
        """The model exported (checked against torch on a probe text) or found whole in the cache,
        loaded in ONNX Runtime; on any failure one line, and torch (the error without fall_back)."""
        identity = tuning.model_identity(model, revision)
        probe = torch.tensor([self.tokenizer(EXPORT_PROBE)["input_ids"]])
        try:
            exported = ort.prepare(self.model, identity, self.precision, cache_dir, probe)
            session = ort.Session(exported, self.num_threads)
        except ort.ExportError as error:
            if not fall_back:
                raise
            logger.warning(f"model {model}: ONNX Runtime not used ({error}); serving with torch")
            self.runtime_name = "torch"
            return None
        return session

    @classmethod
    def from_settings(
        cls, settings: Settings, model_id: str = DEFAULT_MODEL_ID, **overrides: Any
    ) -> "SentimentBertModel":
        """Load the model the settings name (the default, or one of SENTIMENT_MODELS by id), in
        the precision and on the device they say; `overrides` (the constructor's keywords) win,
        as when sentiment.tune and the benchmark load each runtime and precision in turn."""
        default = model_id == DEFAULT_MODEL_ID
        options = {
            "revision": settings.model_revision if default else None,
            "device": settings.device,
            "num_threads": settings.num_threads,
            "precision": settings.precision,
            "model_id": model_id,
            "padding_free": settings.padding_free,
            "tune_file": settings.tune_file,
            "runtime": settings.runtime,
            "cache_dir": settings.onnx_cache_dir,
        }
        return cls(settings.model if default else settings.models[model_id], **options | overrides)

    @property
    def runtime(self) -> str:
        """What runs the model, and how its calls hold their texts."""
        calls = "padding-free" if self.padding_free else "padded, length-grouped"
        if self.session is not None:
            return f"onnxruntime {self.session.version}, {calls} calls"
        return f"torch {torch.__version__}, {calls} calls"

    def describe(self) -> str:
        """Say in one line what runs: model, precision and why, runtime, device, threads."""
        return (
            f"model {self.name}: precision {self.precision} ({self.precision_reason}),"
            f" {self.runtime}, device {self.device}, {self.num_threads} threads"
        )

    @staticmethod
    def use_threads(threads: int) -> None:
        """Run the calling thread's model calls on `threads` cores (torch's OpenMP count is kept
        per calling thread: two threads can run calls side by side on a share each)."""
        torch.set_num_threads(threads)

    @staticmethod
    def threads() -> int:
        """The cores the calling thread's model calls run on."""
        return torch.get_num_threads()

    def predict(self, text: str, long_text: str = "head") -> Prediction:
        """Classify one text."""
        return self.predict_batch([text], long_text)[0]

    def predict_batch(self, texts: Sequence[str], long_text: str = "head") -> list[Prediction]:
        """Classify many texts; answers come back in input order."""
        return self.predict_batch_report(texts, [long_text] * len(texts)).predictions

    def predict_batch_report(self, texts: Sequence[str], long_texts: Sequence[str]) -> BatchReport:
        """Classify many texts, each past the window as its `long_texts` entry says (LONG_TEXT),
        and say what each cost: rows of all texts share the forward passes."""
        if not texts:
            return BatchReport([], [], [], 0)
        # Untruncated, without special tokens: the rows below cut and wrap them as each text asks.
        ids = self.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        rows: list[list[int]] = []
        owners: list[int] = []  # the text each row belongs to
        for n, (text_ids, long_text) in enumerate(zip(ids, long_texts, strict=True)):
            for body in self.windows(text_ids, long_text):
                rows.append(self.prefix + body + self.suffix)
                owners.append(n)
        logits: list[list[float]] = [[]] * len(rows)
        for chunk in self._chunks(rows):
            for i, row in zip(chunk, self._forward([rows[i] for i in chunk]).tolist(), strict=True):
                logits[i] = row
        combined = self._combine(logits, rows, owners, len(texts))
        answers = [
            self._answer(text, scores, len(text_ids), long_text)
            for text, scores, text_ids, long_text in zip(
                texts, combined[0], ids, long_texts, strict=True
            )
        ]
        truncated = sum(answer["truncated"] for answer in answers)
        return BatchReport(answers, combined[1], [len(row) for row in rows], truncated)

    def windows(self, ids: list[int], long_text: str = "head") -> list[list[int]]:
        """Cut one text's token ids (no special tokens) into what the model reads: the whole text
        when it fits the window, else its head, its head and tail, or overlapping windows."""
        size = self.window
        if len(ids) <= size:
            return [ids]
        if long_text == "head":
            return [ids[:size]]
        if long_text == "head+tail":
            head = int(size * HEAD_SHARE)
            return [ids[:head] + ids[len(ids) - (size - head) :]]
        if long_text != "chunks":
            raise ValueError(f"long_text must be one of {LONG_TEXT}, not {long_text!r}")
        step = size - int(size * OVERLAP_SHARE)
        return [ids[start : start + size] for start in range(0, len(ids) - size + step, step)]

    def scores(self, logits: list[float], function: str | None = None) -> list[float]:
        """Turn one text's logits into scores with `function` (FUNCTIONS; the model's own if None)."""
        function = function or self.function
        if function == "none":
            return list(logits)
        if function == "sigmoid":
            return [1 / (1 + math.exp(-x)) for x in logits]
        top = max(logits)
        exps = [math.exp(x - top) for x in logits]
        return [x / sum(exps) for x in exps]

    def _combine(
        self, logits: list[list[float]], rows: list[list[int]], owners: list[int], count: int
    ) -> tuple[list[list[float]], list[list[float]]]:
        """Each text's scores and logits from its rows': its one row's, or, for windows, their
        average weighted by each window's length (scores are averaged, not recomputed)."""
        if len(rows) == count:  # one row per text: nothing to combine
            return [self.scores(row) for row in logits], logits
        scores: list[list[float]] = [[0.0] * len(self.labels) for _ in range(count)]
        combined: list[list[float]] = [[0.0] * len(self.labels) for _ in range(count)]
        weights = [0] * count
        for row_logits, row, owner in zip(logits, rows, owners, strict=True):
            weight = len(row) - len(self.prefix) - len(self.suffix)  # the text's tokens in it
            weights[owner] += weight
            for k, (score, logit) in enumerate(
                zip(self.scores(row_logits), row_logits, strict=True)
            ):
                scores[owner][k] += weight * score
                combined[owner][k] += weight * logit
        return (
            [[x / w for x in text] for text, w in zip(scores, weights, strict=True)],
            [[x / w for x in text] for text, w in zip(combined, weights, strict=True)],
        )

    def _special_tokens(self) -> tuple[list[int], list[int]]:
        """The ids this tokenizer puts before and after a text ([CLS] and [SEP] for BERT, <s> and
        </s> for RoBERTa), found by tokenizing a word with and without them."""
        plain = self.tokenizer("hello", add_special_tokens=False)["input_ids"]
        wrapped = self.tokenizer("hello")["input_ids"]
        for start in range(len(wrapped) - len(plain) + 1):
            if wrapped[start : start + len(plain)] == plain:
                return wrapped[:start], wrapped[start + len(plain) :]
        return [], []

    def _chunks(self, ids: list[list[int]]) -> list[list[int]]:
        """Group row indices into forward passes: by token budget when padding-free, else by length."""
        if self.padding_free:
            return self._packs(ids)
        return self._length_groups(ids)

    def _packs(self, ids: list[list[int]]) -> list[list[int]]:
        """Cut rows, in order, into packs of at most token_budget tokens and chunk_size rows (a
        longer row alone)."""
        packs: list[list[int]] = []
        pack: list[int] = []
        tokens = 0
        for i, row in enumerate(ids):
            if pack and (tokens + len(row) > self.token_budget or len(pack) >= self.chunk_size):
                packs.append(pack)
                pack, tokens = [], 0
            pack.append(i)
            tokens += len(row)
        return [*packs, pack] if pack else packs

    def _length_groups(self, ids: list[list[int]]) -> list[list[int]]:
        """Group row indices, shortest first, into chunks that waste little compute on padding.

        A batch pads every text to its longest, so one chunk of mixed lengths costs about twice
        what length-sorted chunks cost (measured on review-like text). A chunk closes when it is
        full, or when padding would pass MAX_PADDING of it, once it holds MIN_CHUNK texts (smaller
        chunks use the cores less well).
        """
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        chunks: list[list[int]] = []
        chunk: list[int] = []
        tokens = 0
        for i in order:
            width = len(ids[i])
            padded = (len(chunk) + 1) * width
            too_padded = (
                len(chunk) >= MIN_CHUNK and padded - (tokens + width) > MAX_PADDING * padded
            )
            if chunk and (len(chunk) >= self.chunk_size or too_padded):
                chunks.append(chunk)
                chunk, tokens = [], 0
            chunk.append(i)
            tokens += width
        return [*chunks, chunk] if chunk else chunks

    def _forward(self, rows: list[list[int]]) -> torch.Tensor:
        """Run one forward pass over token rows (padding-free or padded) and return their logits."""
        pad_id = self.tokenizer.pad_token_id or 0
        if self.padding_free:
            # Exact lengths: padding a packed row to a multiple measured slower at one text.
            with torch.inference_mode():
                logits = packing.packed_logits(self.model, rows)
            return logits.float().cpu()
        longest = max(len(row) for row in rows)
        pad = self.pad_multiple
        width = min(-(-longest // pad) * pad, self.max_length)
        input_ids = torch.full((len(rows), width), pad_id)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for n, row in enumerate(rows):
            input_ids[n, : len(row)] = torch.tensor(row)
            attention_mask[n, : len(row)] = 1
        if self.session is not None:
            return self.session.logits(input_ids, attention_mask).float()
        with torch.inference_mode():
            logits = self.model(
                input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device)
            ).logits
        return logits.float().cpu()

    def _answer(self, text: str, scores: list[float], tokens: int, long_text: str) -> Prediction:
        """Shape one text's scores as the answer, with its length and whether it was cut."""
        by_label = dict(zip(self.labels, scores, strict=True))
        label = max(by_label, key=by_label.__getitem__)
        return {
            "input_text": text,
            "label": label,
            "score": by_label[label],
            "scores": by_label,
            "tokens": tokens,
            "truncated": tokens > self.window and long_text != "chunks",
            "model": self.id,
        }
