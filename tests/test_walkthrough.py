"01_walkthrough follows a few images through DDB by calling the stage functions: checks that need no run."
import ast
import json
import re
from pathlib import Path

from spurnb.reproduce import notebook_parameters, stage_notebooks
from test_prose import typed_results

NBS = Path(__file__).resolve().parents[1] / "nbs"
WALK = NBS / "01_walkthrough.ipynb"
STAGES = {  # stage function -> the config argument it takes first (as the stage notebooks call it)
    "train_erm": ("dcfg", "ecfg"), "invert": ("cfg",), "majority_masks": ("cfg",), "generate": ("cfg",),
    "prune_scores": ("cfg",), "train_ddb": ("cfg",),
}


def cells(kind: str | None = None) -> list[dict]:
    return [c for c in json.loads(WALK.read_text())["cells"] if kind is None or c["cell_type"] == kind]


def source(kind: str) -> str:
    return "\n".join("".join(c["source"]) for c in cells(kind))


def test_parameters_and_run_order():
    assert notebook_parameters(WALK) == ["profile", "seeds", "seed", "overrides", "n_images"]
    order = list(stage_notebooks(NBS))
    assert order[-2:] == ["01", "00"]  # after the stage notebooks whose cache entries it reads, before the front page


def test_committed_clean():
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in cells("code"))


def test_no_typed_results():
    typed = [s for c in cells("markdown") for s in typed_results("".join(c["source"]))]
    assert not typed, f"numbers typed in prose (compute them in a cell): {typed}"


def test_links_resolve():
    links = set(re.findall(r"\]\(([\w-]+)\.ipynb(?:#[\w-]+)?\)", source("markdown") + source("code")))
    assert {"03_erm", "05_inversion", "06_segment", "07_inpaint", "08_prune", "09_retrain", "A7_notation"} <= links
    assert not [n for n in links if not (NBS / f"{n}.ipynb").exists()]


def test_stage_calls_share_the_stage_notebooks_cache():
    "Each stage function is called once, as the stage notebooks call it for one seed: config, seed, cache, device, no extras."
    calls = [n for n in ast.walk(ast.parse(source("code").replace("\n#|", "\n#"))) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Name) and n.func.id in STAGES]
    by_name = {}
    for call in calls:
        by_name.setdefault(call.func.id, []).append(call)
    assert set(by_name) == set(STAGES)
    for name, found in by_name.items():
        for call in found:
            args = [ast.unparse(a) for a in call.args]
            assert not call.keywords, f"{name} with keyword arguments changes its cache key: {ast.unparse(call)}"
            assert args == [*STAGES[name], "s0", "paths['cache']", "device"], ast.unparse(call)


def test_figures_have_one_source():
    saved = re.findall(r"save_figure\(fig, paths\[\"figures\"\] / \"(walkthrough_\w+\.png)\"\)", source("code"))
    assert len(saved) == len(set(saved)) >= 7 and "walkthrough_overview.png" in saved
    for nb in NBS.glob("*.ipynb"):
        if nb != WALK:
            text = nb.read_text()
            assert not re.search(r"save(?:_figure|fig)\([^)]*walkthrough_", text), f"{nb.name} saves a walkthrough figure"
