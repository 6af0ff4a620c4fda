"""Drives kv-server over 127.0.0.1 and checks its answers: usage: client.py PORT KEYS"""
import json
import socket
import sys
import time

port, keys = int(sys.argv[1]), int(sys.argv[2])
# The server may have been started a moment ago in the background: wait for it to
# listen (up to 30 s) rather than trust a fixed sleep.
deadline = time.monotonic() + 30
while True:
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        break
    except ConnectionRefusedError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
f = sock.makefile("rw")


def ask(line):
    f.write(line + "\n")
    f.flush()
    return f.readline().rstrip("\n")


for i in range(keys):
    assert ask(f"SET key{i} {'v' * (i % 200)}{i}") == "OK"
for i in range(0, keys, 7):
    assert ask(f"GET key{i}") == f"VALUE {'v' * (i % 200)}{i}", i
for i in range(0, keys, 2):
    assert ask(f"DEL key{i}") == "OK"
count = ask("COUNT")
assert count == f"COUNT {keys - (keys + 1) // 2}", count
stats = ask("STATS")
assert stats.startswith("STATS "), stats
figures = json.loads(stats[len("STATS "):])
profile = ask("PROFILE")
ask("QUIT")
print(f"client: {keys} keys set, {count}, backend {figures['backend']}, "
      f"allocated {figures['allocated']}, PROFILE -> {profile}")
