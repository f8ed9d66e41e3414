"""A deterministic corpus of English review-like texts: 3 to 80 words, median near 20."""

import random

OPENERS = [
    "I watched this",
    "We saw this film",
    "This movie",
    "The new season",
    "Honestly, the story",
    "My family watched it",
    "The director's latest",
    "This sequel",
    "The book adaptation",
    "Last night's screening",
]
ADJECTIVES = [
    "wonderful",
    "boring",
    "brilliant",
    "dull",
    "funny",
    "awful",
    "beautiful",
    "terrible",
    "amazing",
    "poor",
    "perfect",
    "nice",
    "great",
    "bad",
    "moving",
    "slow",
    "clever",
    "silly",
]
NOUNS = [
    "plot",
    "cast",
    "music",
    "ending",
    "scenes",
    "characters",
    "story",
    "performance",
    "screen",
    "dialogue",
    "pacing",
    "camera work",
    "humour",
    "soundtrack",
    "effects",
]
CLAUSES = [
    "and I would watch it again",
    "but the last hour dragged",
    "and the kids loved every minute",
    "though nothing really happens",
    "which made the whole thing worth it",
    "so I left early",
    "and it never lets go",
    "yet somehow it all works",
    "but it felt far too long",
    "and the audience laughed throughout",
    "even if the middle part is weak",
    "while the villain steals every scene",
    "although I expected much more from them",
]


def sentence(rng: random.Random) -> str:
    """Make one review-like sentence of about 6 to 16 words."""
    adjective, noun, clause = rng.choice(ADJECTIVES), rng.choice(NOUNS), rng.choice(CLAUSES)
    shapes = [
        f"{rng.choice(OPENERS)} and the {noun} was {adjective}, {clause}.",
        f"The {noun} is {rng.choice(['really', 'quite', 'so', 'not'])} {adjective} {clause}.",
        f"{rng.choice(OPENERS)} was {adjective}.",
        f"What a {adjective} {noun}!",
        f"I thought the {noun} felt {adjective} {clause}.",
    ]
    return rng.choice(shapes)


def review(rng: random.Random) -> str:
    """Make one review: a word budget drawn around 20 words, filled with sentences, cut to size."""
    budget = min(80, max(3, round(rng.lognormvariate(3.0, 0.55))))
    words: list[str] = []
    while len(words) < budget:
        words += sentence(rng).split()
    text = " ".join(words[:budget])
    return text if text.endswith((".", "!")) else text.rstrip(",") + "."


def corpus(size: int = 2000, seed: int = 0) -> list[str]:
    """Return `size` reviews, the same for the same seed."""
    rng = random.Random(seed)
    return [review(rng) for _ in range(size)]
