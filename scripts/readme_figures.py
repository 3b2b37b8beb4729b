"""README's and docs/results.md's measured numbers, generated from the committed result files.

Each block of README.md and docs/results.md between `<!-- BEGIN generated:NAME -->` and
`<!-- END generated:NAME -->` is rebuilt from one file, never typed:

    demo       docs/results/digits_5_1.json          results.json of `make demo` (make demo-record); README.md
    ablation   docs/results/digits-ablation.json     `make demo-ablation`; docs/results.md
    peer       benchmarks/results/peer-replay-cpu.json   `make peer-bench`; docs/results.md
    kick       docs/results/kick-the-tires.json      `make kick-the-tires RECORD=...`; README.md

    python scripts/readme_figures.py            rewrite the blocks in README.md and docs/results.md
    python scripts/readme_figures.py --check    exit 1 when a block differs from its file
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# The documents that hold generated blocks: README's demo, docs/results.md's ablation and peer.
DOCUMENTS = (README, ROOT / "docs" / "results.md")
BLOCK = re.compile(r"(<!-- BEGIN generated:(?P<name>[\w-]+) -->\n)(?P<body>.*?)"
                   r"(<!-- END generated:(?P=name) -->)", re.DOTALL)


def _load(relative: str) -> dict:
    try:
        return json.loads((ROOT / relative).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SystemExit(f"readme_figures: {relative}: cannot read it ({error}); README's block "
                         "from it was not changed") from None


def demo() -> str:
    from mgrb.pipeline.run import format_phase_table

    results = _load("docs/results/digits_5_1.json")
    return (f"Measured with `make demo` on {results['device']}, commit "
            f"`{str(results['git_commit'])[:12]}` (docs/results/digits_5_1.json):\n\n"
            f"```text\n{format_phase_table(results)}\n```\n")


def ablation() -> str:
    from mgrb.reporting.ablation import markdown_table

    record = _load("docs/results/digits-ablation.json")
    rows = record["rows"]
    devices = sorted({device for row in rows for device in row["devices"]})
    runs = sum(len(row["seeds"]) for row in rows)
    minutes = sum(row["wall_time_s"] for row in rows) / 60
    commits = sorted({commit[:12] for row in rows for commit in row["git_commits"]})
    return (f"{markdown_table(rows)}\n\nMean ± standard deviation over seeds "
            f"{', '.join(map(str, rows[0]['seeds']))}; {runs} runs on {'; '.join(devices)}, "
            f"{minutes:.0f} minutes of training in all, commit `{'`, `'.join(commits)}`; "
            f"`{record['command']}` "
            f"(docs/results/digits-ablation.json, {record['generated']}).\n")


def peer() -> str:
    record = _load("benchmarks/results/peer-replay-cpu.json")
    lines = ["| row | implementation | average top-1 | last top-1 | seeds |", "|---|---|---|---|---|"]
    for key, row in record["rows"].items():
        avg, last = row["avg_top1"], row["last_top1"]
        lines.append(f"| {key} | {row['label']} | {avg['mean']:.2f} ± {avg['std']:.2f} | "
                     f"{last['mean']:.2f} ± {last['std']:.2f} | {len(row['seeds'])} |")
    machine = record["machine"]
    return ("\n".join(lines) + f"\n\n`make peer-bench` (`{record['command']}`) on {machine['cpu']}, "
            f"{machine['cores']} cores, CPU only, {record['measured_at']} "
            "(benchmarks/results/peer-replay-cpu.json and .md, which list every difference that "
            "remains between the two sides).\n")


def kick() -> str:
    import importlib.util

    # the table as the command prints it: one formatter, in the script that makes the record
    kick_the_tires = sys.modules.get("kick_the_tires")
    if kick_the_tires is None:
        spec = importlib.util.spec_from_file_location("kick_the_tires",
                                                      Path(__file__).with_name("kick_the_tires.py"))
        kick_the_tires = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = kick_the_tires  # its dataclasses look their module up there
        spec.loader.exec_module(kick_the_tires)
    record = _load("docs/results/kick-the-tires.json")
    machine, steps = record["machine"], record["steps"]
    counted = {verdict: sum(step["verdict"] == verdict for step in steps)
               for verdict in (kick_the_tires.PASS, kick_the_tires.FAIL, kick_the_tires.NOT_RUN)}
    return (f"Measured with `{record['command']}` on {machine['cpu']}, {machine['cores']} cores, "
            f"load {machine['load_before']:.1f} at the start, {record['generated']}: "
            f"{counted['pass']} passed, {counted['FAIL']} failed, {counted['not run']} not run, "
            f"in {kick_the_tires.minutes(record['total_seconds'])} "
            "(docs/results/kick-the-tires.json):\n\n"
            f"{kick_the_tires.summary_table(steps)}\n")


GENERATORS = {"demo": demo, "ablation": ablation, "peer": peer, "kick": kick}


def regenerate(text: str, where: str = "README.md") -> tuple[str, list[str]]:
    """A document's text (README's by default) with every generated block rebuilt, and the names
    of those that changed."""
    changed = []

    def rebuild(match: re.Match) -> str:
        name = match["name"]
        if name not in GENERATORS:
            raise SystemExit(f"{where}: generated:{name}: no generator of that name "
                             f"(known: {', '.join(GENERATORS)})")
        body = GENERATORS[name]()
        if body != match["body"]:
            changed.append(name)
        return match[1] + body + match[4]

    return BLOCK.sub(rebuild, text), changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = parser.parse_args(argv)
    differs = False
    for document in DOCUMENTS:
        where = str(document.relative_to(ROOT))
        new, changed = regenerate(document.read_text(encoding="utf-8"), where)
        if args.check:
            for name in changed:
                print(f"{where}: block generated:{name} differs from its result file; run "
                      "`make readme`", file=sys.stderr)
            differs = differs or bool(changed)
            continue
        if changed:
            from mgrb.store.files import atomic_write

            atomic_write(document, new.encode("utf-8"))
        print(f"{where}: {', '.join(changed) or 'nothing'} regenerated")
    return 1 if differs else 0


if __name__ == "__main__":
    sys.exit(main())
