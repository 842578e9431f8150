"""The plain peer of the serving benchmark: what a user would write in an
afternoon with FastAPI and onnxruntime, serving the same artifact as
`movie-recs serve` (model.onnx, history.bin, manifest.json of one registry
version): score every movie, mask the user's training history and the movies
posted since (kept in memory), top-k with titles and provenance, a trace per
response kept in memory. Used only by `make loadtest` (infra/loadtest.sh).

Run: MODEL_DIR=<registry>/<version> uvicorn server:app --workers 2 --port P
"""

import hashlib
import json
import os
import struct
import time
import uuid

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

MODEL_DIR = os.environ["MODEL_DIR"]
with open(os.path.join(MODEL_DIR, "manifest.json"), "rb") as f:
    MANIFEST = json.load(f)
ITEMS = MANIFEST["items"]
USER_INDEX = {u: i for i, u in enumerate(MANIFEST["users"])}
POPULARITY = np.array([it["popularity"] for it in ITEMS], dtype=np.float32)


def read_history(path):
    raw = open(path, "rb").read()
    assert raw[:8] == b"MRHIST1\0", "not a movie-recs history file"
    users, total = struct.unpack_from("<II", raw, 8)
    offsets = np.frombuffer(raw, dtype="<u4", count=users + 1, offset=16)
    items = np.frombuffer(raw, dtype="<u4", count=total, offset=16 + 4 * (users + 1))
    return offsets, items


OFFSETS, HISTORY = read_history(os.path.join(MODEL_DIR, "history.bin"))
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
SESSION = ort.InferenceSession(os.path.join(MODEL_DIR, "model.onnx"), opts)
INPUT = SESSION.get_inputs()[0].name
MODEL_SHA = hashlib.sha256(open(os.path.join(MODEL_DIR, "model.onnx"), "rb").read()).hexdigest()
SEEN_SINCE = {}  # user -> set of item indices posted since training
TRACES = {}

app = FastAPI()


@app.get("/healthz")
def healthz():
    return {"status": "ok", "serving_versions": [MANIFEST["version"]]}


@app.get("/recommend/{user_id}")
def recommend(user_id: str, request: Request, k: int = 20):
    start = time.perf_counter()
    if not user_id.isdigit():
        raise HTTPException(400, "user_id must be a non-negative integer")
    if not 1 <= k <= 100:
        raise HTTPException(400, "k must be an integer from 1 to 100")
    uid = int(user_id)
    idx = USER_INDEX.get(uid)
    if idx is None:
        scores = POPULARITY / max(POPULARITY.max(), 1.0)
        seen = np.array([], dtype=np.int64)
        fallback = "popularity"
    else:
        scores = SESSION.run(None, {INPUT: np.array([idx], dtype=np.int64)})[0].reshape(-1).copy()
        seen = HISTORY[OFFSETS[idx]:OFFSETS[idx + 1]]
        fallback = None
    scores[seen] = -np.inf
    extra = SEEN_SINCE.get(uid)
    if extra:
        scores[list(extra)] = -np.inf
    top = np.argpartition(-scores, k)[:k]
    top = top[np.argsort(-scores[top])]
    rid = request.headers.get("x-request-id") or str(uuid.uuid4())
    recs = [
        {"movie_id": ITEMS[i]["movie_id"], "title": ITEMS[i]["title"], "genres": ITEMS[i]["genres"],
         "score": float(scores[i])}
        for i in top
    ]
    provenance = {
        "request_id": rid, "timestamp": int(time.time() * 1000), "model_version": MANIFEST["version"],
        "model_sha256": MODEL_SHA, "latency_ms": (time.perf_counter() - start) * 1e3, "fallback": fallback,
    }
    body = {"user_id": uid, "model": MANIFEST["version"], "items": [r["movie_id"] for r in recs],
            "recommendations": recs, "provenance": provenance}
    TRACES[rid] = {**provenance, "user_id": uid, "items": body["items"]}
    return JSONResponse(body, headers={"x-request-id": rid})
