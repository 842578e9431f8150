"""How fast a watch reaches the next list, against a running `movie-recs serve`.

Usage: python3 infra/watch_latency.py http://127.0.0.1:PORT [USERS] [MOVIES]
(USERS, MOVIES: the served synthetic model's sizes; 2000 and 1500 by default.)
For 50 known users: GET /recommend, POST a watch of a movie outside the list,
GET again; prints the time from the POST to the second answer and how many
lists changed. Then 20 users unknown to the model: one watch each, and
whether the next list is personal (fallback null, user_vector history).
"""
import json, time, urllib.request, random, sys
base = sys.argv[1].rstrip("/")
n_users = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
n_movies = int(sys.argv[3]) if len(sys.argv) > 3 else 1500
def get(u):
    with urllib.request.urlopen(f"{base}/recommend/{u}?k=10&policy=none") as r:
        return json.load(r)
def post(ev):
    req = urllib.request.Request(f"{base}/events", data=json.dumps(ev).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return r.status, json.load(r)
random.seed(1)
lat, changed, new_ok = [], 0, 0
users = random.sample(range(1, n_users + 1), 50)
for u in users:
    a = get(u)["items"]
    movie = random.choice([m for m in range(1, n_movies + 1) if m not in a])
    t0 = time.perf_counter()
    st, body = post([{"type": "watch", "user_id": u, "movie_id": movie, "ts": int(time.time() * 1000)}])
    b = get(u)
    dt = time.perf_counter() - t0
    assert st == 202 and body["accepted"] == 1, body
    lat.append(dt * 1000)
    changed += b["items"] != a
for i in range(20):
    u = 900000 + i
    assert get(u)["provenance"]["fallback"] is not None
    post([{"type": "watch", "user_id": u, "movie_id": random.randint(1, n_movies), "ts": int(time.time() * 1000)}])
    p = get(u)["provenance"]
    new_ok += p["fallback"] is None and p["user_vector"] == "history"
lat.sort()
print(f"known users: {len(lat)} watches (a movie outside the list); next list changed for {changed}; "
      f"POST /events -> next GET /recommend answered: p50 {lat[len(lat)//2]:.1f} ms, max {lat[-1]:.1f} ms")
print(f"unknown users: {new_ok}/20 personalised (fallback null, user_vector history) after one watch")
