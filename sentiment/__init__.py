"""sentiment-serve: a sentiment classifier (sentiment.model) and the Ray Serve apps that serve it
(sentiment.apps). docs/development.md maps the modules.

Importing the package loads nothing else: the CLI's checks and `python -m sentiment_ops` stay clear
of torch."""
