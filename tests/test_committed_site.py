"The committed site in docs/: a page per notebook, built from a committed run that is an ancestor of HEAD."
import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _front_page() -> str:
    index = DOCS / "index.html"
    assert index.exists(), "docs/index.html is missing: run `make reproduce` (or `make docs` after a cpu run) and commit docs/"
    return index.read_text()


def test_every_notebook_has_a_page():
    _front_page()
    missing = [p.stem for p in sorted((ROOT / "nbs").glob("*.ipynb")) if not (DOCS / f"{p.stem}.html").exists()]
    assert not missing, f"docs/ has no page for {missing}: rebuild it with `make docs` after a cpu run"


def test_front_page_names_an_ancestor_commit():
    html = _front_page()
    m = re.search(r"commit <code[^>]*>(?:<span[^>]*>)?([0-9a-f]{12})", html)
    assert m, "docs/index.html does not name the commit of its run"
    if subprocess.run(["git", "rev-parse", "--git-dir"], cwd=ROOT, capture_output=True).returncode:
        pytest.skip("not a git checkout")
    r = subprocess.run(["git", "merge-base", "--is-ancestor", m.group(1), "HEAD"], cwd=ROOT, capture_output=True)
    assert r.returncode == 0, f"the site's run commit {m.group(1)} is not an ancestor of HEAD"
    run = json.loads((ROOT / "figures" / "cpu" / "results.json").read_text())["commit"]
    assert run.startswith(m.group(1)), f"the site shows commit {m.group(1)}, figures/cpu/results.json {run}: rebuild docs"
    assert not run.endswith("-dirty"), "the cpu run was made from a working tree with uncommitted changes"


def test_no_debris_anywhere_on_the_site():
    from spurnb.site import hygiene_problems

    _front_page()
    found = {p.name: hygiene_problems(p.read_text()) for p in sorted(DOCS.glob("*.html"))}
    found = {k: v for k, v in found.items() if v}
    assert not found, f"pages of docs/ contain progress or warning debris: {found}"
