"The tutorial site: `build_site` on a toy project, and `check_site` in headless Chromium catching broken pages."
import shutil
import subprocess
import sys

import pytest

from spurnb import site
from spurnb.site import SiteError, build_site, check_site, find_mathjax, toy_project


def _build(tmp_path, name="toy", debris=""):
    dirs = toy_project(tmp_path / name, debris=debris)
    return build_site("smoke", tmp_path / f"{name}-site", **{f"{k}_dir": v for k, v in dirs.items()}, title="toy")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    "A toy site, built once; tests that break it work on a copy."
    return _build(tmp_path_factory.mktemp("site")).parent


@pytest.fixture
def copy(built, tmp_path):
    return shutil.copytree(built, tmp_path / "copy")


def test_build_cleans_and_folds(built):
    toy = (built / "02_toy.html").read_text()
    assert "saved" in toy and "_images/" in toy  # the stdout line and the figure survive
    for debris in ("IProgress", "50%|", "HBox", "default_exp", "#|"):
        assert debris not in toy, debris
    assert "Show code cell" in toy  # the `#| hide` and injected-parameters cells are folded
    index = (built / "index.html").read_text()
    assert "The method" in index and "Appendix: reference" in index and "02_toy.html" in index
    assert "not executed in this run" in (built / "A1_appendix.html").read_text()
    assert (built / ".nojekyll").exists() and (built / "_static" / "mathjax" / "tex-chtml.js").exists()
    assert "url=index.html" in (built / "00_index.html").read_text()
    assert not list(built.parent.glob(".*build-*")) and not (built.parent / "jupyter_execute").exists()


def test_check_site_passes_and_screenshots(built, tmp_path):
    assert check_site(built, screenshots=tmp_path) >= 4
    assert (tmp_path / "site_index.png").stat().st_size > 10_000
    assert not (tmp_path / "site_08_prune.png").exists()  # the toy has no 08_prune page


def test_missing_image_broken_links_and_raw_math_fail(copy):
    image = next((copy / "_images").glob("*.png"))
    image.unlink()
    page = copy / "02_toy.html"
    page.write_text(page.read_text().replace("</article>", '<a href="nowhere.html">x</a><a href="index.html#no-such">y</a>'
                                             "<p>left raw: $x^2$ (MathJax only typesets \\(...\\) and $$...$$)</p></article>"))
    with pytest.raises(SiteError) as e:
        check_site(copy)
    msg = str(e.value)
    assert f'02_toy.html: <img src="_images/{image.name}"> did not load' in msg
    assert '02_toy.html: <a href="nowhere.html"> is broken (404)' in msg
    assert '02_toy.html: <a href="index.html#no-such"> points to a missing anchor #no-such' in msg
    assert "02_toy.html: raw math left in the text: '$x^2$'" in msg
    assert all(line.startswith(("site check", "02_toy.html: ")) for line in msg.splitlines()), msg


def test_untypeset_math_fails(copy, monkeypatch):
    monkeypatch.setattr(site, "MATHJAX_TIMEOUT_S", 1)
    (copy / "_static" / "mathjax" / "tex-chtml.js").write_text("")  # MathJax never starts
    with pytest.raises(SiteError, match=r"index.html: formulas not typeset: MathJax did not start"):
        check_site(copy)


def test_debris_fails_the_build(tmp_path):
    with pytest.raises(SiteError, match=r"02_toy.html: output shows 'RuntimeWarning: '"):
        _build(tmp_path, "dirty", debris="train.py:9: RuntimeWarning: overflow\n")
    assert not (tmp_path / "dirty-site").exists()


def test_figure_not_shown_fails_the_build(tmp_path):
    dirs = toy_project(tmp_path / "toy")
    (dirs["figures"] / "orphan.png").write_bytes(b"")
    with pytest.raises(SiteError, match="orphan.png"):
        build_site("smoke", tmp_path / "out", **{f"{k}_dir": v for k, v in dirs.items()})


def test_missing_tools_are_one_line_errors(tmp_path, monkeypatch, built):
    monkeypatch.delenv("SPURNB_MATHJAX", raising=False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    with pytest.raises(SiteError, match=r"MathJax 3 not found.*npm install --prefix \.venv/mathjax"):
        find_mathjax(tmp_path)
    monkeypatch.setattr(site, "browser_paths", lambda: None)
    with pytest.raises(SiteError, match="install with: apt-get install chromium chromium-driver"):
        check_site(built)


def test_cli_errors(tmp_path):
    cli = [sys.executable, "-c", "from spurnb.reproduce import main; raise SystemExit(main())"]
    r = subprocess.run([*cli, "check-site", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "holds no site" in r.stderr, r.stderr
    (tmp_path / "settings.ini").write_text("[DEFAULT]\n")
    (tmp_path / "nbs").mkdir()
    r = subprocess.run([*cli, "docs", "--profile", "smoke"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.startswith("spurnb: error: no executed notebooks in "), r.stderr
    r = subprocess.run([*cli, "docs", "--profile", "gpu"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
