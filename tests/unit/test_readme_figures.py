"""README's and docs/results.md's measured numbers are generated from committed result files
(scripts/readme_figures.py)."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
spec = importlib.util.spec_from_file_location("readme_figures", ROOT / "scripts" / "readme_figures.py")
readme_figures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_figures)

MARKER = re.compile(r"<!-- BEGIN generated:([\w-]+) -->")
# Where each generated block lives: the demo in README's quick start, the tables in docs/results.md.
EXPECTED = {"README.md": {"demo", "kick"}, "docs/results.md": {"ablation", "peer"}}


def _documents_with_blocks() -> dict[str, list[str]]:
    found = {}
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        names = MARKER.findall(path.read_text(encoding="utf-8"))
        if names:
            found[str(path.relative_to(ROOT))] = names
    return found


def test_each_block_is_where_it_belongs_and_the_script_writes_every_document_that_has_one():
    found = _documents_with_blocks()
    assert {where: set(names) for where, names in found.items()} == EXPECTED
    written = {str(path.relative_to(ROOT)) for path in readme_figures.DOCUMENTS}
    assert written == set(found), "scripts/readme_figures.py must rewrite every document with a block"


@pytest.mark.parametrize("where", sorted(EXPECTED))
def test_every_generated_block_matches_its_result_file(where):
    text = (ROOT / where).read_text(encoding="utf-8")
    _, changed = readme_figures.regenerate(text, where)
    assert changed == [], f"{where} blocks {changed} differ from their files: run `make readme`"


def test_a_block_edited_by_hand_is_caught_and_rebuilt():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    edited = re.sub(r"(average incremental top-1 )\d+\.\d\d", r"\g<1>99.99", text, count=1)
    assert edited != text
    rebuilt, changed = readme_figures.regenerate(edited)
    assert changed == ["demo"] and rebuilt == text


def test_a_table_edited_by_hand_in_docs_is_caught_and_rebuilt():
    text = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    edited = re.sub(r"(\| `digits_mgrb_keep` \|.*?\| )\d+\.\d\d( ±)", r"\g<1>99.99\g<2>", text, count=1)
    edited = re.sub(r"(\| ours \|.*?\| )\d+\.\d\d( ±)", r"\g<1>99.99\g<2>", edited, count=1)
    assert edited.count("99.99") == 2
    rebuilt, changed = readme_figures.regenerate(edited, "docs/results.md")
    assert changed == ["ablation", "peer"] and rebuilt == text


def test_check_mode_names_the_file_whose_block_differs(tmp_path, monkeypatch, capsys):
    """`make readme`'s check reads every document: a table changed in docs/results.md is named."""
    inputs = ["docs/results/digits_5_1.json", "docs/results/digits-ablation.json",
              "benchmarks/results/peer-replay-cpu.json", "docs/results/kick-the-tires.json"]
    documents = [str(path.relative_to(ROOT)) for path in readme_figures.DOCUMENTS]
    for relative in inputs + documents:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes((ROOT / relative).read_bytes())
    monkeypatch.setattr(readme_figures, "ROOT", tmp_path)
    monkeypatch.setattr(readme_figures, "DOCUMENTS", tuple(tmp_path / where for where in documents))
    assert readme_figures.main(["--check"]) == 0
    results = tmp_path / "docs" / "results.md"
    results.write_text(re.sub(r"(\| ours \|.*?\| )\d+\.\d\d", r"\g<1>99.99",
                              results.read_text(encoding="utf-8"), count=1), encoding="utf-8")
    assert readme_figures.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "docs/results.md: block generated:peer differs" in err and "README.md" not in err
    assert readme_figures.main([]) == 0  # rewrites the block from its file
    assert results.read_text(encoding="utf-8") == (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
