"""The baseline peer: what most people write first. FastAPI + uvicorn calling the model per request.

SENTIMENT_MODEL=DIR python -m bench.baseline PORT
"""

import sys

import uvicorn
from fastapi import FastAPI, Query

from sentiment.model import SentimentBertModel
from sentiment.settings import Settings


def make_app(model: SentimentBertModel) -> FastAPI:
    """One route, one text per forward pass, run in FastAPI's thread pool: no batching."""
    app = FastAPI()

    @app.post("/classify")
    def classify(input_text: str = Query(min_length=2)) -> dict:
        return model.predict(input_text)

    return app


if __name__ == "__main__":
    settings = Settings()
    model = SentimentBertModel.from_settings(settings)
    uvicorn.run(make_app(model), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
