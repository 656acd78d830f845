"The Try-this exercises: every method notebook has 2-4, each a valid lesson-profile command; one runs for real."
import json
from pathlib import Path

import pytest

from spurnb.exercises import _key, check_command, exercise_commands, run_exercise, run_exercises

ROOT = Path(__file__).resolve().parents[1]
METHOD_NOTEBOOKS = ["02_data", "03_erm", "04_generator", "05_inversion", "06_segment", "07_inpaint", "08_prune",
                    "09_retrain", "10_baselines", "11_results"]
REQUIRED_KEYS = {  # the knobs the course asks to cover, and a notebook whose exercises must use each
    "data.lite.p_majority": "02_data", "erm.weights": "03_erm", "ddb.inversion.select": "05_inversion",
    "ddb.inversion.tokens_per_class": "05_inversion", "ddb.prune.P": "08_prune", "ddb.retrain.gamma": "09_retrain",
    "ddb.inpaint.mask": "07_inpaint",
}


def _cells(name):
    return json.loads((ROOT / "nbs" / f"{name}.ipynb").read_text())["cells"]


@pytest.mark.parametrize("name", METHOD_NOTEBOOKS)
def test_every_method_notebook_ends_with_try_this(name):
    cells = _cells(name)
    heads = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and "".join(c["source"]).startswith("## ")]
    assert heads, f"{name} has no sections"
    last = "".join(cells[heads[-1]]["source"])
    assert last.startswith("## Try this"), f"{name}'s last section is {last.splitlines()[0]!r}, not '## Try this'"
    commands = exercise_commands(ROOT / "nbs" / f"{name}.ipynb")
    assert 2 <= len(commands) <= 4, f"{name} has {len(commands)} Try-this exercises (2 to 4 wanted)"
    calls = [c for c in cells if c["cell_type"] == "code" and "try_this(" in "".join(c["source"])]
    assert len(calls) == len(commands), f"{name}: a try_this call sits outside its Try-this section"
    for c in calls:
        assert "remove-input" in c.get("metadata", {}).get("tags", []), f"{name}: tag the try_this cells remove-input"


@pytest.mark.parametrize("name", METHOD_NOTEBOOKS)
def test_every_exercise_command_is_valid(name):
    for command in exercise_commands(ROOT / "nbs" / f"{name}.ipynb"):
        check_command(command, ROOT / "nbs")  # raises naming the command and the key


def test_an_unknown_key_fails():
    with pytest.raises(ValueError, match="ddb.prune.Q"):
        check_command("spurnb reproduce --profile lesson --only 08 --set ddb.prune.Q=0.5", ROOT / "nbs")


def test_the_course_knobs_are_covered():
    used = {}
    for name in METHOD_NOTEBOOKS:
        for command in exercise_commands(ROOT / "nbs" / f"{name}.ipynb"):
            for key in check_command(command, ROOT / "nbs")["overrides"]:
                used.setdefault(key, set()).add(name)
    missing = {k: nb for k, nb in REQUIRED_KEYS.items() if nb not in used.get(k, set())}
    assert not missing, f"no exercise turns these knobs in these notebooks: {missing}"


def test_committed_answers_match_the_commands():
    done = ROOT / "figures" / "lesson" / "exercises.json"
    if not done.exists():
        pytest.skip("no figures/lesson/exercises.json yet (spurnb exercises)")
    commands = {_key(c) for name in METHOD_NOTEBOOKS for c in exercise_commands(ROOT / "nbs" / f"{name}.ipynb")}
    stale = sorted(set(json.loads(done.read_text())) - commands)
    assert not stale, f"figures/lesson/exercises.json answers exercises no notebook has any more: {stale}"


def test_one_exercise_runs_for_real(tmp_path):
    out = run_exercise("spurnb reproduce --profile lesson --only A1", ROOT, tmp_path / "cache")
    assert "error" not in out, out
    assert out["results"]["profile"] == "lesson" and out["results"]["seeds"] == [0] and out["seconds"] > 0


def test_a_failing_exercise_is_recorded(tmp_path):
    out = run_exercise("spurnb reproduce --profile lesson --only A1 --set erm.epochs=0", ROOT, tmp_path / "cache")
    assert out["error"].startswith("spurnb: error:") and "erm.epochs" in out["error"]


def test_run_exercises_checks_every_command_first(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    bad = {"cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": ["profile = 'cpu'"]},
                     {"cell_type": "markdown", "metadata": {}, "source": ["## Try this"]},
                     {"cell_type": "code", "metadata": {}, "source": ["try_this('spurnb reproduce --profile lesson --set x.y=1')"]}]}
    (nbs / "02_x.ipynb").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="x.y"):
        run_exercises(tmp_path)
    assert not (tmp_path / "figures").exists()  # nothing ran, nothing written


def test_parameters_cells_state_the_lesson_runtime():
    "Each stage notebook's parameters cell says how long 'Run all' takes on the lesson profile, as benchmarked."
    import re

    from spurnb.exercises import lesson_times
    from spurnb.reproduce import stage_notebooks

    times = lesson_times(ROOT / "benchmarks" / "lesson.txt")
    if not times:
        pytest.skip("no lesson benchmark recorded yet (benchmarks/lesson.sh)")
    wrong = []
    for key, path in stage_notebooks(ROOT / "nbs").items():
        if key == "00":
            continue
        cell = next(c for c in json.loads(path.read_text())["cells"] if "parameters" in c["metadata"].get("tags", []))
        text = "".join(cell["source"])
        m = re.search(r'"Run all" takes about (\d+(?:\.\d+)?) min on the lesson profile', text)
        if '"Run all" takes under 0.1 min on the lesson profile' in text:
            if times[key] >= 6:
                wrong.append(f"{path.name}: says under 0.1 min, benchmarks/lesson.txt {times[key]:.0f} s")
        elif not m:
            wrong.append(f"{path.name}: no runtime line")
        elif abs(float(m.group(1)) - times[key] / 60) > max(0.1, 0.2 * times[key] / 60):
            wrong.append(f"{path.name}: says {m.group(1)} min, benchmarks/lesson.txt {times[key] / 60:.2f}")
    assert not wrong, "; ".join(wrong)


def test_try_this_rejects_a_bare_string_for_keys():
    "keys='methods.DDB.worst' (a string, not a list) fails with one line instead of comparing its letters."
    from spurnb.exercises import try_this

    with pytest.raises(TypeError, match="keys must be a list"):
        try_this("spurnb reproduce --profile lesson --only 09 --set ddb.prune.P=0.1", "methods.DDB.worst", root=ROOT)
