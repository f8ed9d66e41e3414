"""The LitServe peer, as its users run it: a transformers pipeline behind LitServe's own batching
(max_batch_size 32), in the precision SENTIMENT_PRECISION names (fp32, bf16 or int8).

SENTIMENT_MODEL=DIR SENTIMENT_PRECISION=bf16 python -m bench.litserve_peer PORT
POST /predict {"input_text": "..."} answers the pipeline's label and score.
"""

import sys

import litserve as ls
import torch
from transformers import pipeline

from sentiment.model import DTYPES
from sentiment.settings import Settings, available_cores


class SentimentAPI(ls.LitAPI):
    """LitServe's four hooks around a text-classification pipeline."""

    def setup(self, device: str) -> None:
        settings = Settings()
        torch.set_num_threads(available_cores())
        self.pipe = pipeline(
            "text-classification", model=settings.model, dtype=DTYPES[settings.precision]
        )
        if settings.precision == "int8":  # torch's int8, as its docs show for linear layers
            self.pipe.model = torch.ao.quantization.quantize_dynamic(
                self.pipe.model, {torch.nn.Linear}, dtype=torch.qint8
            )

    def decode_request(self, request: dict) -> str:
        return request["input_text"]

    def batch(self, inputs: list[str]) -> list[str]:
        return inputs

    def predict(self, texts: list[str]) -> list[dict]:
        return self.pipe(texts, batch_size=len(texts), truncation=True)

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
