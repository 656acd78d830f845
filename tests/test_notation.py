"""The notation page (nbs/A7_notation.ipynb): it lists the fixed symbols and terms and every symbol that any
notebook's prose uses, names only real config keys with their real values, and links only to existing notebooks."""
import ast
import json
import re
import unicodedata
from pathlib import Path

import pytest

from spurnb.config import PROFILES, get_config

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
PAGE = NBS / "A7_notation.ipynb"

# what the page must list (issue 17): symbols in the first column of a table, terms in the first column of a table
SYMBOLS = ["ψ", "Ψ_i", "ρ", "P", "P_i′", "γ_1", "γ_2", "K", "N", "i", "i′", "x", "x′", "M", "M_k", "[C_i]",
           "IG_k", "α", "ᾱ_t", "ε", "ε_θ", "τ_θ", "z_t", "v_c", "w", "y", "a", "g", "L_train", "L_gen,1", "L_gen,2",
           "η", "λ", "q_g", "ℓ_g", "E", "C"]
TERMS = ["group", "spurious attribute", "majority group", "minority group", "worst group", "WGA",
         "average accuracy", "pooled accuracy", "balanced accuracy", "weighted average accuracy", "ERM", "oracle",
         "majority set", "DDB", "textual inversion", "language segmentation", "inpainting", "new class",
         "two-headed pruning", "kept", "pruned", "Integrated Gradients", "upsampling", "GroupDRO", "JTT", "DFR",
         "LISA", "group labels", "model selection", "ablation", "Waterbirds-lite", "world split", "profile"]

GREEK = {"alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε", "zeta": "ζ",
         "eta": "η", "theta": "θ", "vartheta": "θ", "iota": "ι", "kappa": "κ", "lambda": "λ", "mu": "μ",
         "nu": "ν", "xi": "ξ", "pi": "π", "rho": "ρ", "varrho": "ρ", "sigma": "σ", "tau": "τ", "upsilon": "υ",
         "phi": "φ", "varphi": "φ", "chi": "χ", "psi": "ψ", "omega": "ω", "ell": "ℓ", "Gamma": "Γ", "Delta": "Δ",
         "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ", "Pi": "Π", "Sigma": "Σ", "Upsilon": "Υ", "Phi": "Φ", "Psi": "Ψ",
         "Omega": "Ω"}
GREEK_CMD = re.compile(r"\\(" + "|".join(sorted(GREEK, key=len, reverse=True)) + r")(?![A-Za-z])")
GREEK_CHAR = re.compile(r"[\u0370-\u03ff]")  # after NFD, ᾱ is α plus a combining macron
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)
MATH = re.compile(r"\$\$(.+?)\$\$|\$([^$\n]+?)\$", re.S)
WRAPPED = re.compile(r"\\(?:text|mathrm|operatorname|mathbf|mathit|mathbb)\{([^{}]*)\}")
VARIANTS = str.maketrans({"ϵ": "ε", "ϑ": "θ", "ϕ": "φ", "ϱ": "ρ", "ς": "σ", "'": "′"})


def _markdown(path: Path) -> str:
    "The markdown cells of a notebook, joined."
    cells = json.loads(path.read_text())["cells"]
    return "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def _plain(text: str) -> str:
    "`text` with accents dropped (ᾱ -> α) and variant Greek letters unified."
    text = unicodedata.normalize("NFD", text)
    return "".join(ch for ch in text if not unicodedata.combining(ch)).translate(VARIANTS)


def norm(text: str) -> str:
    "A symbol as plain text: LaTeX Greek to Unicode, primes to ′, wrappers, commands, $ and markup removed."
    text = text.replace("\\mathbb{E}", "𝔼")
    text = GREEK_CMD.sub(lambda m: GREEK[m.group(1)], WRAPPED.sub(r"\1", text))
    text = re.sub(r"\\[A-Za-z]+|\\.|[{}$`*]", "", text)  # \bar, \sqrt, \, ...
    return _plain(re.sub(r"\s+", " ", text)).strip()


def prose_symbols(markdown: str) -> set[str]:
    "Greek letters, primed letters (i′, x′) and capital letters of formulas in a notebook's markdown."
    code = CODE.findall(markdown)  # code spans and blocks: no formulas, but their Greek letters and primes count
    markdown = CODE.sub(" ", markdown)
    found = set()
    for m in MATH.finditer(markdown):
        tex = m.group(1) or m.group(2)
        t = norm(tex)
        found |= set(GREEK_CHAR.findall(t)) | set(re.findall(r"[A-Za-z]′", t))
        bare = re.sub(r"\\[A-Za-z]+", " ", WRAPPED.sub(" ", tex))  # no \text{..}, \mathbb{E}, \sum, ...
        found |= set(re.findall(r"[A-Z]", bare))
    rest = MATH.sub(" ", markdown) + " ".join(code)
    rest = _plain(rest.replace("'", "’"))  # an apostrophe outside a formula is not a prime
    found |= set(GREEK_CHAR.findall(rest)) | set(re.findall(r"[A-Za-z]′", rest))
    return found


def tables(markdown: str) -> list[list[list[str]]]:
    "Every markdown table as rows of cells, without the header and separator rows."
    out, block = [], []
    for line in markdown.splitlines() + [""]:
        if line.lstrip().startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif block:
            out.append([r for r in block[1:] if not all(re.fullmatch(r":?-+:?", c) for c in r)])
            block = []
    return out


def first_column(markdown: str) -> list[str]:
    "The normalised first cell of every table row (the symbol or term the row explains)."
    return [norm(row[0]) for t in tables(markdown) for row in t]


def has_symbol(cells: list[str], symbol: str) -> bool:
    "Whether `symbol` stands on its own (not inside a longer name) in one of the first-column cells."
    pat = re.compile(r"(?<![\w′])" + re.escape(norm(symbol)) + r"(?![\w′])")
    return any(pat.search(c) for c in cells)


@pytest.fixture(scope="module")
def page() -> str:
    assert PAGE.exists(), "nbs/A7_notation.ipynb is missing"
    return _markdown(PAGE)


def test_page_is_a_site_page(page):
    nb = json.loads(PAGE.read_text())
    assert page.startswith("# Notation and glossary\n> "), "A7_notation must open with its title and a '> ' summary"
    params = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "A7_notation needs one `parameters` cell: spurnb reproduce runs only such notebooks"


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_symbol_listed(page, symbol):
    assert has_symbol(first_column(page), symbol), f"A7_notation has no table row for the symbol {symbol!r}"


@pytest.mark.parametrize("term", TERMS)
def test_term_listed(page, term):
    cells = [c.lower() for c in first_column(page)]
    assert any(term.lower() in c for c in cells), f"A7_notation has no table row for the term {term!r}"


def _flat(d: dict, prefix: str = "") -> dict:
    "A nested config as {'a.b': value}."
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


CONFIGS = {p: _flat(get_config(p)) for p in ("cpu", "paper")}
LESSON = _flat(get_config("lesson")) if "lesson" in PROFILES else None  # the page says: the cpu values unless stated
SECTIONS = sorted({k.split(".")[0] for cfg in CONFIGS.values() for k in cfg if "." in k})
KEY = re.compile(r"`((?:" + "|".join(SECTIONS) + r")(?:\.\w+)+)(?:\[(\d+)\])?`")
VALUE = re.compile(r"\b(cpu|paper|lesson)\s+`([^`]*)`")


def _literal(text: str):
    "A value as the page writes it: a Python literal, else the plain text (`digit`, `assets:mini-sd`)."
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _table_cells(page: str) -> list[str]:
    "Every cell of every table of the page."
    return [c for t in tables(page) for row in t for c in row]


def test_config_keys_exist(page):
    keys = [m.group(1) for c in _table_cells(page) for m in KEY.finditer(c)]
    assert keys, "A7_notation names no config key in its tables"
    missing = sorted({k for k in keys if not any(k in cfg for cfg in CONFIGS.values())})
    assert not missing, f"A7_notation names config keys that neither the cpu nor the paper profile has: {missing}"


def _value(cfg: dict, key: str, idx: str | None):
    "The flat config's value of `key`, or of its entry `idx` (`ddb.retrain.gamma[0]`)."
    v = cfg.get(key)
    if idx is not None and isinstance(v, (list, tuple)):
        return v[int(idx)] if int(idx) < len(v) else None
    return v


def test_config_values_match(page):
    configs = {**CONFIGS, **({"lesson": LESSON} if LESSON else {})}
    wrong = []
    for cell in _table_cells(page):
        found = list(KEY.finditer(cell))
        for m, nxt in zip(found, found[1:] + [None]):
            key, idx = m.group(1), m.group(2)
            name = f"`{key}{f'[{idx}]' if idx else ''}`"
            stated = dict(VALUE.findall(cell[m.end(): nxt.start() if nxt else len(cell)]))
            for prof, text in stated.items():
                actual = _value(configs[prof], key, idx) if prof in configs else text
                if _literal(text) != actual and text != str(actual):
                    wrong.append(f"{name} {prof} is {actual!r}, the page says {text!r}")
            if LESSON and "cpu" in stated and "lesson" not in stated:  # the intro: lesson has the cpu values
                lesson, cpu = _value(LESSON, key, idx), _value(CONFIGS["cpu"], key, idx)
                if lesson != cpu:
                    wrong.append(f"{name} lesson is {lesson!r}, not cpu's {cpu!r} (add lesson `...` to the page)")
    assert not wrong, "A7_notation states stale config values: " + "; ".join(wrong)


def test_links_lead_to_notebooks(page):
    links = re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", page)
    assert links, "A7_notation links no notebook"
    broken = sorted({l for l in links if not (l.endswith(".ipynb") and (NBS / l).exists())})
    assert not broken, f"A7_notation links to notebooks that are not in nbs/: {broken}"
    unlinked = [row[0] for t in tables(page) for row in t if not re.search(r"\]\([^)]+\.ipynb", row[-1])]
    assert not unlinked, f"A7_notation rows without a notebook in their last column: {unlinked}"


def test_every_prose_symbol_listed(page):
    cells = first_column(page)
    missing = {}
    for nb in sorted(NBS.glob("*.ipynb")):
        if nb == PAGE:
            continue
        for sym in prose_symbols(_markdown(nb)):
            greek = GREEK_CHAR.fullmatch(sym)  # a Greek letter is listed also as part of a row's symbol (Ψ in Ψ_i)
            if not (has_symbol(cells, sym) or greek and any(sym in c for c in cells)):
                missing.setdefault(sym, []).append(nb.stem)
    assert not missing, "A7_notation lists no row for symbols used in notebook prose: " + "; ".join(
        f"{s} ({', '.join(n)})" for s, n in sorted(missing.items()))


def test_detectors():
    md = r"Keep $x'$ if $\psi \ge \Psi_i$ and $\rho \le P$; the class's word `<c_i′>`, $\mathbb{E}$, $\bar\alpha_t$, λ."
    assert prose_symbols(md) == {"x′", "ψ", "Ψ", "ρ", "P", "i′", "α", "λ"}
    assert norm(r"$\gamma_1$") == "γ_1" and norm("$[C_i]$") == "[C_i]" and norm(r"$\mathrm{IG}_k$") == "IG_k"
    assert has_symbol(["P, P_i′"], "P") and has_symbol(["P, P_i′"], "P_i′") and not has_symbol(["IG_k"], "G")
    assert tables("| a | b |\n|---|---|\n| 1 | 2 |\n") == [[["1", "2"]]]
