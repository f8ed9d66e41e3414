"""Issue 12 over real HTTP: several models by id (Serve's multiplexing), long texts on purpose,
Hugging Face's /predict driven by its own InferenceClient, API keys and CORS.

One app, `locked`, serves them all: three extra tiny models (one with three labels), at most two
held besides the default, two API keys, one CORS origin.
"""

import random
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import torch
from huggingface_hub import InferenceClient
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import HfHubHTTPError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ray import serve
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from sentiment.apps import Classifier
from sentiment.model import DTYPES, SCORE_TOLERANCE, SentimentBertModel
from sentiment.settings import Settings
from sentiment.testing import WORDS, build_model
from tests.helpers import assert_same_prediction
from tests.integration.deployments import deployed
from tests.integration.fuzz import holds_to_its_openapi_document

KEYS = ("first-test-key", "second-test-key")
AUTH = {"Authorization": f"Bearer {KEYS[0]}"}
ORIGIN = "http://app.example.test"
THREE_LABELS = {0: "NEGATIVE", 1: "NEUTRAL", 2: "POSITIVE"}
MODEL_HEADER = "serve_multiplexed_model_id"


@pytest.fixture(scope="module")
def locked_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The tier's settings, with three more models, two keys, one origin, room for long texts."""
    folder = tmp_path_factory.mktemp("more-models")
    models = {
        "three": build_model(folder / "three", seed=1, labels=THREE_LABELS),
        "other": build_model(folder / "other", seed=2, labels={0: "SAD", 1: "HAPPY"}),
        "third": build_model(folder / "third", seed=3),
        "gone": build_model(folder / "gone", seed=4),  # deleted once deployed
    }
    return Settings.model_validate(
        {
            **settings.model_dump(),
            "models": {model_id: str(path) for model_id, path in models.items()},
            "max_models_per_replica": 2,
            "api_keys": KEYS,
            "cors_origins": (ORIGIN,),
            "max_text_chars": 60_000,
            # fp32: answers equal in-process ones within 1e-4 (the tiny models' wide weights move
            # more than bf16's tolerance with the batch a text runs in).
            "precision": "fp32",
        }
    )


class Locked(Classifier.func_or_class):
    """The Classifier, saying which threads each model it holds runs its calls in."""

    def model_threads(self) -> dict[str, list[int]]:
        """Each held model's lane threads (as ids of their executors)."""
        return {served.id: [id(lane) for lane in served.batcher.lanes] for served in self.served()}


@pytest.fixture(scope="module")
def url(base_url: str, locked_settings: Settings) -> Iterator[str]:
    """Deploy the Classifier with those settings under /locked; then delete model `gone`."""
    with deployed("locked", locked_settings, Locked):
        shutil.rmtree(locked_settings.models["gone"])
        yield f"{base_url}/locked"


@pytest.fixture(scope="module")
def in_process(locked_settings: Settings) -> dict[str, SentimentBertModel]:
    """Every model of the app, loaded in this process the way a replica loads it."""
    return {
        model_id: SentimentBertModel.from_settings(locked_settings, model_id)
        for model_id in ["default", *locked_settings.models]
        if model_id != "gone"
    }


def post(url: str, path: str, body: dict, **headers: str) -> httpx.Response:
    """POST JSON with the first key."""
    return httpx.post(f"{url}{path}", json=body, headers={**AUTH, **headers}, timeout=30)


def long_text(words: int = 5_000, seed: int = 0) -> str:
    """A text far past the model's window: `words` test-vocabulary words, one token each."""
    return " ".join(random.Random(seed).choices([w for w in WORDS if w.isalpha()], k=words))


# -- several models -------------------------------------------------------------------------------


def test_each_model_answers_as_in_process_under_concurrent_load(
    url: str, in_process: dict[str, SentimentBertModel]
) -> None:
    """Two models of different label sets (and the default) at once, named by header or body."""
    rng = random.Random(4)
    texts = [" ".join(rng.choices(WORDS, k=rng.randint(2, 30))) for _ in range(24)]
    failures: list[str] = []

    def client(n: int) -> None:
        with httpx.Client(timeout=30, headers=AUTH) as http:
            for i, text in enumerate(texts):
                model_id = ("three", "other", "default")[(n + i) % 3]
                if i % 2:  # half by Serve's header, half by the body's field
                    response = http.post(
                        f"{url}/classify",
                        json={"input_text": text},
                        headers={MODEL_HEADER: model_id},
                    )
                else:
                    response = http.post(
                        f"{url}/classify", json={"input_text": text, "model": model_id}
                    )
                if response.status_code != 200:
                    failures.append(f"{model_id}: {response.status_code} {response.text}")
                    continue
                answer = response.json()
                model = in_process[model_id]
                if answer["model"] != model_id or list(answer["scores"]) != model.labels:
                    failures.append(f"{model_id}: answered by {answer['model']} {answer['scores']}")
                    continue
                try:
                    assert_same_prediction(answer, model.predict(text), model.precision)
                except AssertionError as error:
                    failures.append(f"{model_id}: {error}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures[:5]
    assert set(in_process["three"].labels) == set(THREE_LABELS.values())


def test_a_batch_names_its_model(url: str, in_process: dict[str, SentimentBertModel]) -> None:
    texts = ["great film", "awful", "i like you"]
    response = post(url, "/classify/batch", {"texts": texts, "model": "three"})
    assert response.status_code == 200, response.text
    for answer, text in zip(response.json()["results"], texts, strict=True):
        assert answer["model"] == "three"
        assert_same_prediction(answer, in_process["three"].predict(text))


def test_an_unknown_model_is_404_naming_the_allowed_ones(url: str) -> None:
    by_body = post(url, "/classify", {"input_text": "hi", "model": "gpt-9"})
    by_header = post(url, "/classify", {"input_text": "hi"}, **{MODEL_HEADER: "../etc/passwd"})
    for response in (by_body, by_header):
        assert response.status_code == 404, response.text
        assert "default, three, other, third, gone" in response.json()["detail"]
    both = post(url, "/classify", {"input_text": "hi", "model": "three"}, **{MODEL_HEADER: "other"})
    assert both.status_code == 422
    assert "names two models" in both.json()["detail"]


def test_the_least_recently_used_model_is_unloaded(url: str) -> None:
    for model_id in ("three", "other", "third"):  # at most two besides the default
        assert post(url, "/classify", {"input_text": "hi", "model": model_id}).status_code == 200
    listing = httpx.get(f"{url}/models", headers=AUTH, timeout=30).json()
    loaded = {model["id"]: model["loaded"] for model in listing["models"]}
    assert listing["default"] == "default" and listing["max_loaded"] == 2
    assert loaded == {"default": True, "three": False, "other": True, "third": True, "gone": False}
    labels = {model["id"]: model["labels"] for model in listing["models"]}
    assert labels["other"] == ["SAD", "HAPPY"] and labels["three"] is None
    other = next(model for model in listing["models"] if model["id"] == "other")
    assert (other["precision"], other["precision_reason"]) == ("fp32", "asked for")
    assert "padding-free" in other["runtime"]
    # Named again, the unloaded one comes back, in place of the least recently used.
    assert post(url, "/classify", {"input_text": "hi", "model": "three"}).status_code == 200
    listing = httpx.get(f"{url}/models", headers=AUTH, timeout=30).json()
    loaded = {model["id"]: model["loaded"] for model in listing["models"]}
    assert loaded == {"default": True, "three": True, "other": False, "third": True, "gone": False}


def test_every_model_of_a_replica_runs_in_the_same_threads(url: str) -> None:
    # Threads of its own per model meant an OpenMP team per model: every call slower (bench.models).
    for model_id in ("other", "third"):
        assert post(url, "/classify", {"input_text": "hi", "model": model_id}).status_code == 200
    threads = serve.get_app_handle("locked").model_threads.remote().result(timeout_s=30)
    assert {"default", "other", "third"} <= set(threads), threads
    assert len({tuple(lanes) for lanes in threads.values()}) == 1, threads


def test_an_allowed_model_that_cannot_load_is_a_503_and_the_replica_goes_on(url: str) -> None:
    response = post(url, "/classify", {"input_text": "hi", "model": "gone"})
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "10"
    assert "model 'gone' cannot be loaded on this replica: cannot load model" in response.text
    again = post(url, "/classify", {"input_text": "hi", "model": "third"})
    assert again.status_code == 200 and again.json()["model"] == "third"


# -- long texts -----------------------------------------------------------------------------------


def windows_by_hand(folder: str, text: str, precision: str) -> list[float]:
    """What `chunks` must answer, computed with transformers alone: windows of 510 tokens, each a
    quarter over the last, [CLS] + window + [SEP], softmax, averaged by window length."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=DTYPES[precision])
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    size, step = 510, 510 - 510 // 4
    starts = [0]
    while starts[-1] + size < len(ids):
        starts.append(starts[-1] + step)
    total, weights = torch.zeros(model.config.num_labels), 0
    with torch.inference_mode():
        for start in starts:
            window = ids[start : start + size]
            row = torch.tensor([[tokenizer.cls_token_id, *window, tokenizer.sep_token_id]])
            total += len(window) * model(input_ids=row).logits.float().softmax(-1)[0]
            weights += len(window)
    return (total / weights).tolist()


@pytest.mark.parametrize("strategy", ["head", "head+tail", "chunks"])
def test_a_5000_word_text_by_each_strategy(
    url: str, in_process: dict[str, SentimentBertModel], locked_settings: Settings, strategy: str
) -> None:
    text = long_text()
    response = post(url, "/classify", {"input_text": text, "long_text": strategy})
    assert response.status_code == 200, response.text
    answer = response.json()
    model = in_process["default"]
    assert answer["tokens"] == 5_000
    assert answer["truncated"] is (strategy != "chunks")
    assert_same_prediction(answer, model.predict(text, strategy), model.precision)
    if strategy == "chunks":
        expected = windows_by_hand(locked_settings.model, text, model.precision)
        for label, score in zip(model.labels, expected, strict=True):
            assert abs(answer["scores"][label] - score) <= SCORE_TOLERANCE[model.precision]
    if strategy == "head":  # the default: what a request that says nothing gets
        plain = post(url, "/classify", {"input_text": text}).json()
        assert plain["scores"] == answer["scores"]


def test_strategies_differ_on_a_text_whose_end_differs(
    url: str, in_process: dict[str, SentimentBertModel]
) -> None:
    # And a query string's `head+tail` (a + is a space there) means head+tail.
    text = long_text(1_200, seed=5)
    query = f"long_text=head+tail&input_text={quote(text)}"
    by_query = httpx.post(f"{url}/classify?{query}", headers=AUTH, timeout=30)
    assert by_query.status_code == 200, by_query.text
    model = in_process["default"]
    assert_same_prediction(by_query.json(), model.predict(text, "head+tail"), model.precision)
    head = model.predict(text, "head")["scores"]
    assert max(abs(head[k] - v) for k, v in by_query.json()["scores"].items()) > 1e-3


# -- Hugging Face's shape and client --------------------------------------------------------------


def test_predict_answers_every_label_best_first(
    url: str, in_process: dict[str, SentimentBertModel]
) -> None:
    model = in_process["three"]
    one = post(url, "/predict", {"inputs": "i like you", "model": "three"})
    assert one.status_code == 200, one.text
    (ranked,) = one.json()  # one input, one list (Hugging Face's task shape)
    assert [row["score"] for row in ranked] == sorted((r["score"] for r in ranked), reverse=True)
    expected = model.predict("i like you")["scores"]
    assert {row["label"] for row in ranked} == set(expected)
    for row in ranked:
        assert abs(row["score"] - expected[row["label"]]) <= SCORE_TOLERANCE[model.precision]
    many = post(url, "/predict", {"inputs": ["good", "bad", "fine"], "parameters": {"top_k": 1}})
    assert [len(rows) for rows in many.json()] == [1, 1, 1]
    raw = post(url, "/predict", {"inputs": "good", "raw_scores": True}).json()[0]
    logits = post(url, "/predict", {"inputs": "good", "parameters": {"function_to_apply": "none"}})
    assert raw == logits.json()[0]
    assert abs(sum(row["score"] for row in raw) - 1) > 1e-3  # logits, not probabilities
    cut = post(url, "/predict", {"inputs": long_text(600), "truncate": False})
    assert cut.status_code == 413 and "600 tokens" in cut.json()["detail"]


def test_the_hugging_face_client_works_against_it(
    url: str, in_process: dict[str, SentimentBertModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tests set HF_HUB_OFFLINE (no model hub here), and the client then refuses every URL,
    # this loopback one too: lift it for the client alone.
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    client = InferenceClient(model=f"{url}/predict", token=KEYS[1], timeout=30)
    answer = client.text_classification("the story is moving and the cast is wonderful")
    model = in_process["default"]
    expected = model.predict("the story is moving and the cast is wonderful")["scores"]
    assert [element.label for element in answer] == sorted(expected, key=expected.get, reverse=True)
    for element in answer:
        assert abs(element.score - expected[element.label]) <= SCORE_TOLERANCE[model.precision]
    assert len(client.text_classification("fine", top_k=1)) == 1
    sigmoid = client.text_classification("fine", function_to_apply="sigmoid")
    assert abs(sum(element.score for element in sigmoid) - 1) > 1e-3
    three = InferenceClient(
        model=f"{url}/predict", token=KEYS[0], headers={MODEL_HEADER: "three"}, timeout=30
    )
    assert {element.label for element in three.text_classification("ok")} == set(
        THREE_LABELS.values()
    )
    with pytest.raises(HfHubHTTPError) as refused:
        InferenceClient(model=f"{url}/predict", token="wrong", timeout=30).text_classification("x")
    assert refused.value.response.status_code == 401


# -- API keys and CORS ----------------------------------------------------------------------------

CLASSIFYING = [
    ("GET", "/test", None),
    ("GET", "/models", None),
    ("POST", "/classify", {"input_text": "hi"}),
    ("POST", "/classify/batch", {"texts": ["hi"]}),
    ("POST", "/predict", {"inputs": "hi"}),
]


@pytest.mark.parametrize(("method", "path", "body"), CLASSIFYING)
def test_every_classifying_route_needs_a_key(
    url: str, method: str, path: str, body: dict | None
) -> None:
    def send(headers: dict[str, str]) -> httpx.Response:
        return httpx.request(method, f"{url}{path}", json=body, headers=headers, timeout=30)

    missing = send({})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="sentiment-serve"'
    assert "Authorization: Bearer" in missing.json()["detail"]
    for wrong in ({"Authorization": "Bearer nope"}, {"Authorization": f"Basic {KEYS[0]}"}):
        refused = send(wrong)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
    for key in KEYS:
        assert send({"Authorization": f"Bearer {key}"}).status_code == 200


def test_health_and_docs_stay_open_and_no_key_is_logged(url: str, base_url: str) -> None:
    for path in ("/healthcheck", "/openapi.json", "/docs"):
        assert httpx.get(f"{url}{path}", timeout=30).status_code == 200, path
    assert httpx.get(f"{base_url}/-/healthz", timeout=30).status_code == 200
    document = httpx.get(f"{url}/openapi.json", timeout=30).json()
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    # The app without keys stays open.
    assert httpx.post(f"{base_url}/classify", json={"input_text": "hi"}).status_code == 200
    logs = Path(ray_logs_dir())
    assert any(logs.rglob("*locked*")), "the replica's log file"
    for log in logs.rglob("*"):
        if log.is_file():
            text = log.read_bytes()
            assert not any(key.encode() in text for key in KEYS), log


def ray_logs_dir() -> str:
    """This Ray session's log folder."""
    import ray

    return ray._private.worker._global_node.get_logs_dir_path()


def test_cors_answers_the_allowed_origin_only(url: str, base_url: str) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    allowed = httpx.options(f"{url}/classify", headers={"Origin": ORIGIN, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    other = httpx.options(f"{url}/classify", headers={"Origin": "http://evil.test", **preflight})
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    simple = post(url, "/classify", {"input_text": "hi"}, Origin=ORIGIN)
    assert simple.headers["access-control-allow-origin"] == ORIGIN
    # No origins set: no CORS headers at all.
    plain = httpx.post(
        f"{base_url}/classify", json={"input_text": "hi"}, headers={"Origin": ORIGIN}
    )
    assert "access-control-allow-origin" not in plain.headers


def test_the_locked_app_holds_to_its_openapi_document(url: str) -> None:
    holds_to_its_openapi_document(url, "locked", AUTH)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    text=st.text(max_size=200),
    authorization=st.one_of(st.none(), st.text(max_size=60), st.just(f"Bearer {KEYS[1]}")),
)
def test_hostile_text_and_keys_never_get_a_5xx(
    url: str, text: str, authorization: str | None
) -> None:
    # httpx refuses header values it cannot encode; those never reach a server.
    headers = {} if authorization is None else {"Authorization": authorization}
    try:
        responses = [
            httpx.post(f"{url}/classify", json={"input_text": text}, headers=headers, timeout=30),
            httpx.post(f"{url}/predict", json={"inputs": [text]}, headers=headers, timeout=30),
        ]
    except (UnicodeEncodeError, httpx.LocalProtocolError):
        return
    for response in responses:
        assert response.status_code < 500, response.text
        # 400: the HTTP server's own refusal of a header value HTTP forbids (a control character).
        assert response.status_code in (200, 400, 401, 422), response.text
