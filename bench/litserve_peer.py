"""The LitServe peer: the same model behind LitServe's own batching (max_batch_size 32).

SENTIMENT_MODEL=DIR SENTIMENT_PRECISION=bf16 python -m bench.litserve_peer PORT
POST /predict {"input_text": "..."} answers what POST /classify answers.
"""

import sys

import litserve as ls

from sentiment.model import SentimentBertModel
from sentiment.settings import Settings


class SentimentAPI(ls.LitAPI):
    """LitServe's four hooks around the model; batches go through predict_batch, as ours do."""

    def setup(self, device: str) -> None:
        self.model = SentimentBertModel.from_settings(Settings())

    def decode_request(self, request: dict) -> str:
        return request["input_text"]

    def batch(self, inputs: list[str]) -> list[str]:
        return inputs

    def predict(self, texts: list[str]) -> list[dict]:
        return self.model.predict_batch(texts)

    def unbatch(self, output: list[dict]) -> list[dict]:
        return output

    def encode_response(self, output: dict) -> dict:
        return output


if __name__ == "__main__":
    # LitServe's documented batching setup; a short wait lets a batch gather under load.
    api = SentimentAPI(max_batch_size=32, batch_timeout=0.005)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.run(
        host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", generate_client_file=False
    )
