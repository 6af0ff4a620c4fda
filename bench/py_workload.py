"""The real-program workload for bench/run: CPython doing allocation-heavy work
(objects, dicts, strings, JSON). Prints its operation count and a digest."""
import hashlib
import json
import sys

scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
rounds = max(1, int(12 * scale))
digest = hashlib.sha256()
ops = 0
for r in range(rounds):
    rows = [{"id": i, "name": "user%d" % i, "tags": ["t%d" % (i % 7)] * (i % 5)} for i in range(30000)]
    text = json.dumps(rows)
    back = json.loads(text)
    index = {}
    for row in back:
        index.setdefault(row["name"][-2:], []).append(row["id"])
    digest.update(str(sorted((k, len(v)) for k, v in index.items())).encode())
    ops += len(rows) * 3
print("python: %d operations, check %s" % (ops, digest.hexdigest()[:16]))
