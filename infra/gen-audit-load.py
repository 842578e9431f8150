#!/usr/bin/env python3
"""Writes the audit's load files: recommendations.jsonl (100,000 lists of 10
movies = 1,000,000 exposures) and ratings.jsonl (1,000,000 rating events, 20
spammers), in the formats of the previous system's logs, into DIR.
Standard library only; seeded. Usage: gen-audit-load.py DIR"""
import json, random, sys, os

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = random.Random(7)
N = 3883
T = 1795896000000

def movie():
    return min(N, max(1, int(N ** rng.random())))

with open(os.path.join(out, "recommendations.jsonl"), "w") as f:
    for i in range(100_000):
        f.write(json.dumps({"user_id": i % 50_000, "movie_ids": [movie() for _ in range(10)],
                            "model_version": "v1", "variant": "candidate" if i % 10 == 0 else "primary",
                            "ts": T + i}) + "\n")
with open(os.path.join(out, "ratings.jsonl"), "w") as f:
    for i in range(1_000_000):
        spam = i % 1000 == 0
        f.write(json.dumps({"user_id": 90_000 + i % 20 if spam else rng.randrange(50_000),
                            "movie_id": movie(), "rating": 5 if spam else rng.randint(1, 5),
                            "ts": T + rng.randrange(3_600_000)}) + "\n")
