"""Operating sentiment-serve on a Ray head: the entry scripts' body (deploy one app), and
`python -m sentiment_ops stop|status|drain`. Importing it loads neither torch nor Ray."""
