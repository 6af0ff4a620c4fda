"""Allocation-heavy, deterministic Python work: its output must be identical with
and without the shim preloaded."""
import hashlib
import json
import random

rng = random.Random(20261127)
digest = hashlib.sha256()

# Many small objects: dicts, lists and strings, built, serialised and dropped.
for round_ in range(30):
    records = [
        {"id": i, "name": "n" * (i % 97), "tags": [str(j) for j in range(i % 13)],
         "score": rng.random()}
        for i in range(4000)
    ]
    text = json.dumps(records, sort_keys=True)
    digest.update(text.encode())
    back = json.loads(text)
    digest.update(str(sum(r["id"] for r in back)).encode())

# Growing and shrinking buffers (realloc-heavy).
buf = bytearray()
for i in range(200000):
    buf += bytes([i & 0xFF]) * (i % 7)
    if len(buf) > 1 << 20:
        del buf[: len(buf) // 2]
digest.update(bytes(buf))

# Large blocks.
big = [bytes([k]) * (1 << 20) * 3 for k in range(20)]
digest.update(b"".join(b[:64] for b in big))

words = sorted({"".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 12)))
                for _ in range(100000)})
digest.update("\n".join(words).encode())
print(len(words), digest.hexdigest())
