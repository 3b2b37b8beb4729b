"""README's measured numbers are generated from committed result files (scripts/readme_figures.py)."""

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
spec = importlib.util.spec_from_file_location("readme_figures", ROOT / "scripts" / "readme_figures.py")
readme_figures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_figures)


def test_every_generated_block_of_readme_matches_its_result_file():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    names = re.findall(r"<!-- BEGIN generated:([\w-]+) -->", text)
    assert {"demo", "ablation"} <= set(names)
    _, changed = readme_figures.regenerate(text)
    assert changed == [], f"README blocks {changed} differ from their files: run `make readme`"


def test_a_block_edited_by_hand_is_caught_and_rebuilt():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    edited = re.sub(r"(average incremental top-1 )\d+\.\d\d", r"\g<1>99.99", text, count=1)
    assert edited != text
    rebuilt, changed = readme_figures.regenerate(edited)
    assert changed == ["demo"] and rebuilt == text
