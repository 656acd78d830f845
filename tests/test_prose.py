"The stage notebooks that state DDB's findings type no result of the run in their prose: cells compute them."
import json
import re
from pathlib import Path

import pytest

NBS = Path(__file__).resolve().parents[1] / "nbs"
# a decimal or a percentage, outside math, code and notebook names
RESULT_RE = re.compile(r"(?<![\w$\\{_.`-])\d+(?:\.\d+)?\s?%|(?<![\w$\\{_.`-])\d+\.\d+(?![\w`])")
QUOTED = ("paper", "released code")  # numbers quoted from the paper or its code, labelled as such


def typed_results(markdown: str) -> list[str]:
    "Sentences of `markdown` with a decimal or percentage that are not labelled as the paper's or the released code's."
    text = re.sub(r"\$\$.*?\$\$|\$[^$]*\$|`[^`]*`", "", markdown, flags=re.S)
    sentences = re.split(r"(?<=[.!?:])\s+(?=[A-Z*(])|\n\s*\n", text)
    sentences = [" ".join(s.split()) for s in sentences]
    return [s for s in sentences if RESULT_RE.search(s) and not any(q in s for q in QUOTED)]


def test_detector():
    assert typed_results("DDB reaches 84.3% here.") and typed_results("about 0.999 on this run")
    assert not typed_results("the paper reports 93.0") and not typed_results("$\\gamma = 0.5$, `P = 0.3`, `04_generator`")


@pytest.mark.parametrize("name", ["07_inpaint", "08_prune", "09_retrain"])
def test_no_typed_results(name):
    cells = json.loads((NBS / f"{name}.ipynb").read_text())["cells"]
    typed = [line for c in cells if c["cell_type"] == "markdown" for line in typed_results("".join(c["source"]))]
    assert not typed, f"{name}: numbers typed in prose (compute them in a cell): {typed}"
