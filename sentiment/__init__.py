"""sentiment-serve: a sentiment classifier and the Ray Serve apps that serve it."""

from sentiment.model import ModelLoadError, Prediction, SentimentBertModel
from sentiment.settings import Settings

__all__ = ["ModelLoadError", "Prediction", "SentimentBertModel", "Settings"]
