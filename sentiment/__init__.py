"""sentiment-serve: a sentiment classifier (sentiment.model) and the Ray Serve apps that serve it
(sentiment.apps).

Importing the package loads nothing else: `python -m sentiment.deploy stop|drain|status` stay
clear of torch."""
