"""Content filters: the red-team list all blocked, the ordinary creative list almost never, p95 < 5 ms.

Runs the rules of a policy (default: the shipped one) in process on `bench/data/moderation_redteam.jsonl`
(prompts with the category they break and the obfuscation they use) and `bench/data/moderation_benign.txt`
(ordinary creative prompts, many with innocent uses of risky words). Prints a table and writes
`bench/results/moderation.json`. The time of normalisation alone is measured alongside as the floor.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.moderation.normalize import views  # noqa: E402
from app.moderation.policy import Action, load_policy  # noqa: E402
from app.moderation.service import check_text  # noqa: E402

DATA = ROOT / "bench" / "data"
GOALS = {"redteam_blocked": 1.0, "benign_blocked_max": 0.02, "p95_ms_max": 5.0}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _timed(function: object, text: str, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        function(text)  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--policy", default=None, help="a policy TOML file (default: the shipped one)")
    parser.add_argument("--reps", type=int, default=3, help="timings per prompt; the fastest counts")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "moderation.json"))
    args = parser.parse_args()

    policy = load_policy(args.policy)
    redteam = [
        json.loads(line) for line in (DATA / "moderation_redteam.jsonl").read_text().splitlines() if line
    ]
    benign = [line for line in (DATA / "moderation_benign.txt").read_text().splitlines() if line.strip()]

    def blocked(text: str) -> list[str]:
        return sorted(name for name, action in check_text(policy, text).items() if action == Action.BLOCK)

    by_class: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    missed = []
    for row in redteam:
        hit = blocked(row["prompt"])
        by_class[row["obfuscation"]][1] += 1
        by_class[row["obfuscation"]][0] += bool(hit)
        if not hit:
            missed.append(row)
    false_positives = [{"prompt": text, "categories": blocked(text)} for text in benign if blocked(text)]

    everything = [row["prompt"] for row in redteam] + benign
    check_ms = [_timed(blocked, text, args.reps) for text in everything]
    normalise_ms = [_timed(views, text, args.reps) for text in everything]

    red_rate = sum(hit for hit, _ in by_class.values()) / len(redteam)
    benign_rate = len(false_positives) / len(benign)
    p95 = _percentile(check_ms, 0.95)
    print(f"{'red-team obfuscation':<22}{'blocked':>10}")
    for name, (hit, total) in sorted(by_class.items()):
        print(f"{name:<22}{hit:>5}/{total:<4}")
    print(f"{'all red-team':<22}{sum(h for h, _ in by_class.values()):>5}/{len(redteam):<4} ({red_rate:.1%})")
    print(f"{'benign blocked':<22}{len(false_positives):>5}/{len(benign):<4} ({benign_rate:.2%})")
    print()
    print(f"{'ms per prompt':<22}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}")
    for name, values in (("normalise only", normalise_ms), ("full rules check", check_ms)):
        print(
            f"{name:<22}{statistics.median(values):>8.3f}{_percentile(values, 0.95):>8.3f}"
            f"{_percentile(values, 0.99):>8.3f}{max(values):>8.3f}"
        )
    for row in missed:
        print(f"MISSED [{row['category']}/{row['obfuscation']}]: {row['prompt']!r}")
    for row in false_positives:
        print(f"FALSE POSITIVE {row['categories']}: {row['prompt']!r}")

    result = {
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "policy": args.policy or "default",
        "redteam": {
            "prompts": len(redteam),
            "blocked_rate": red_rate,
            "by_obfuscation": {name: {"blocked": h, "total": t} for name, (h, t) in sorted(by_class.items())},
            "missed": missed,
        },
        "benign": {"prompts": len(benign), "blocked_rate": benign_rate, "false_positives": false_positives},
        "latency_ms": {
            name: {
                "p50": statistics.median(values),
                "p95": _percentile(values, 0.95),
                "p99": _percentile(values, 0.99),
                "max": max(values),
            }
            for name, values in (("normalise_only", normalise_ms), ("rules_check", check_ms))
        },
        "goals": GOALS,
        "goals_met": red_rate >= GOALS["redteam_blocked"]
        and benign_rate <= GOALS["benign_blocked_max"]
        and p95 < GOALS["p95_ms_max"],
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"\ngoals met: {result['goals_met']}; wrote {args.output}")
    return 0 if result["goals_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
