"""Draws bench/run's CSV as a bar chart: each allocator's median time per workload,
relative to glibc (below 1 is faster). usage: bench/plot.py RESULTS.csv OUT.png"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

rows = list(csv.DictReader(open(sys.argv[1])))
workloads = list(dict.fromkeys(r["workload"] for r in rows))
allocators = [a for a in dict.fromkeys(r["allocator"] for r in rows) if a != "glibc"]
ratio = {(r["workload"], r["allocator"]): float(r["vs_glibc"]) for r in rows if r["vs_glibc"]}

fig, ax = plt.subplots(figsize=(12, 5))
width = 0.8 / len(allocators)
for i, alloc in enumerate(allocators):
    xs = [w + (i - (len(allocators) - 1) / 2) * width for w in range(len(workloads))]
    ax.bar(xs, [ratio.get((w, alloc), 0) for w in workloads], width, label=alloc)
ax.axhline(1.0, color="black", linewidth=0.8)
ax.set_xticks(range(len(workloads)))
ax.set_xticklabels(workloads, rotation=30, ha="right")
ax.set_ylabel("median wall time / glibc (lower is faster)")
ax.set_title("allocshim benchmark: time relative to glibc malloc")
ax.legend(ncol=3, fontsize="small")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=100)
print(f"plot: wrote {sys.argv[2]}")
