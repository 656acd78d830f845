"Report: tables, files and figures from a synthetic results.json, and the notebook run end to end in a temp folder."
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import spurnb.report as rp

NB = Path(__file__).resolve().parents[1] / "nbs" / "11_results.ipynb"


def entry(labels, worst, avg, ci=None):
    "A method entry whose group 2 is the worst group, for two seeds."
    e = {"group_labels": labels, "worst": worst, "avg": avg, "balanced": avg, "weighted": [a - 0.02 for a in avg],
         "per_group": [[0.97, w + 0.02, w, 0.96] for w in worst]}
    return {**e, "wga_ci95": ci} if ci else e


def synthetic(ablations=True):
    res = {
        "profile": "smoke", "commit": "deadbeef", "seeds": [0, 1],
        "data": {"name": "waterbirds_lite", "group_counts": {"test": {"land 0": 5, "water 0": 5, "land 1": 5,
                                                                       "water 1": 5}}},
        "methods": {
            "LISA": entry("train", [0.70, 0.74], [0.88, 0.90], [[0.60, 0.80], [0.64, 0.84]]),
            "ERM": entry("none", [0.40, 0.50], [0.80, 0.84]),
            "DFR": entry("val", [0.82, 0.86], [0.90, 0.90], [[0.78, 0.88], [0.80, 0.92]]),
            "DDB": entry("val", [0.88, 0.92], [0.93, 0.95]),
        },
        "baselines": {"erm_wga_ci95": [[0.30, 0.50], [0.40, 0.60]]},
        "timings_s": {"03_erm": 1.0},
    }
    if ablations:
        res["ablations"] = {
            "pruning": {"seeds": [0, 1], "with": {"worst": [0.88, 0.92], "avg": [0.93, 0.95]},
                        "without": {"worst": [0.80, 0.84], "avg": [0.92, 0.94]},
                        "generated": {"1": [60, 80], "0": [200, 220]}, "pruned": {"0": [100, 120], "1": [10, 30]}},
            "inversion_samples": {"seed": 0, "n": [0, 10, 20, 30, 40], "worst": [0.5, 0.6, 0.7, 0.8, 0.9],
                                  "avg": [0.90, 0.91, 0.92, 0.93, 0.94], "generated": [100] * 5,
                                  "pruned": [50, 40, 30, 20, 10]},
        }
    return res


def test_paper_constants():
    assert rp.PAPER_TABLE1["DDB"] == {"labels": "no/yes", "Waterbirds": 93.0, "CelebA": 85.8, "MetaShift": 81.2}
    assert rp.PAPER_TABLE1["DISC"]["CelebA"] is None and rp.PAPER_TABLE1["LISA"]["labels"] == "yes/yes"
    wb = rp.PAPER_TABLE2["Waterbirds"]
    assert (wb["generated"], wb["pruned"], wb["wga_without"], wb["wga_with"]) == (
        {0: 1300, 1: 1112}, {0: 531, 1: 393}, 91.28, 93.0)
    assert rp.PAPER_TABLE2["MetaShift"]["pruned"] == {1: 299}
    assert rp.PAPER_TABLE3["pruned"][30] == 737 and rp.PAPER_TABLE3["wga"][30] == 93.0


def test_table1_values_labels_and_paper_columns():
    t = rp.table1(synthetic())
    assert list(t.index) == ["ERM", "DFR", "LISA", "DDB"]  # fixed order; missing methods skipped
    assert t.loc["ERM", "WGA (%)"] == "45.0 ± 5.0" and t.loc["DDB", "avg (%)"] == "94.0 ± 1.0"
    assert t.loc["ERM", "weighted avg (%)"] == "80.0" and (t["seeds"] == 2).all()
    labels = t[["train group labels", "val group labels"]].apply(tuple, axis=1).to_dict()
    assert labels == {"ERM": ("no", "no"), "DFR": ("no", "yes"), "LISA": ("yes", "yes"), "DDB": ("no", "yes")}
    # seed-wise intervals, ends averaged; ERM's comes from the baselines section; DDB has none
    assert t.loc["LISA", "WGA 95% CI (%)"] == "[62.0, 82.0]" and t.loc["ERM", "WGA 95% CI (%)"] == "[35.0, 55.0]"
    assert t.loc["DDB", "WGA 95% CI (%)"] == "–"
    paper_cols = [c for c in t.columns if "reported in the paper" in c]
    assert len(paper_cols) == 3 and all(c.split()[0] in ("Waterbirds", "CelebA", "MetaShift") for c in paper_cols)
    assert t.loc["DFR", "Waterbirds WGA, reported in the paper (%)"] == "92.9"
    assert t.loc["ERM", "CelebA WGA, reported in the paper (%)"] == "42.2"
    # no column without that phrase holds a paper number
    ours = t.drop(columns=paper_cols)
    assert not ours.isin(["93.0", "74.6", "92.9", "89.2"]).any().any()
    n = rp.table1(synthetic(), numeric=True)
    assert np.isclose(n.loc["DFR", "WGA mean (%)"], 84.0) and np.isclose(n.loc["DFR", "WGA sd (%)"], 2.0)
    assert np.isnan(n.loc["DDB", "WGA 95% CI lo (%)"])


def test_table1_oracle_row_has_no_paper_number():
    res = synthetic()
    res["methods"]["Balanced-data oracle"] = entry("train", [0.9, 0.9], [0.95, 0.95])
    t = rp.table1(res)
    assert list(t.index)[:2] == ["ERM", "Balanced-data oracle"]
    assert t.loc["Balanced-data oracle", "Waterbirds WGA, reported in the paper (%)"] == "–"


def test_table2_shape_and_numbers():
    t = rp.table2(synthetic())
    assert list(t.index) == ["y=0", "y=1", "all"]
    assert t.loc["y=0", "generated"] == "210 ± 10" and t.loc["y=1", "pruned"] == "20 ± 10"
    assert t.loc["all", "generated"] == "280 ± 20" and t.loc["all", "kept"] == "150"
    assert t.loc["all", "WGA without pruning (%)"] == "82.0 ± 2.0" and t.loc["all", "WGA with pruning (%)"] == "90.0 ± 2.0"
    assert t.loc["y=0", "WGA with pruning (%)"] == "–"
    assert t.loc["y=1", "generated, reported in the paper (Waterbirds)"] == "1112"
    assert t.loc["all", "WGA with pruning, reported in the paper (Waterbirds, %)"] == "93.00"
    n = rp.table2(synthetic(), numeric=True)
    assert np.isclose(n.loc["y=0", "pruned share (%)"], 100 * (100 / 200 + 120 / 220) / 2)


def test_table3_shape_and_numbers():
    t = rp.table3(synthetic())
    assert t.shape == (5, 8) and list(t.index) == [0, 10, 20, 30, 40]
    assert t.loc[30, "kept"] == "80" and t.loc[30, "WGA (%)"] == "80.0" and t.loc[40, "avg (%)"] == "94.0"
    assert t.loc[30, "WGA, reported in the paper (%)"] == "93.0"
    assert t.loc[0, "pruned, reported in the paper (of 2412)"] == "1018"


def test_missing_ablations_give_none():
    res = synthetic(ablations=False)
    assert rp.table2(res) is None and rp.table3(res) is None
    res["ablations"] = {"pruning": synthetic()["ablations"]["pruning"]}
    assert rp.table2(res) is not None and rp.table3(res) is None


def test_bad_ablation_entries_raise():
    res = synthetic()
    del res["ablations"]["pruning"]["without"]
    with pytest.raises(ValueError, match="without"):
        rp.table2(res)
    res = synthetic()
    res["ablations"]["inversion_samples"]["worst"] = [0.5]
    with pytest.raises(ValueError, match="one value per n"):
        rp.table3(res)


def test_write_table_writes_md_and_csv(tmp_path):
    t = rp.table1(synthetic())
    md, csv = rp.write_table(t, tmp_path / "table1", "A caption.", data=rp.table1(synthetic(), numeric=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table1.csv", "table1.md"]
    text = md.read_text()
    assert text.startswith("A caption.\n\n| method") and "45.0 ± 5.0" in text and "reported in the paper" in text
    back = pd.read_csv(csv, index_col=0)
    assert np.isclose(back.loc["ERM", "WGA mean (%)"], 45.0)
    rp.write_table(t, tmp_path / "plain", "x")  # without `data` the CSV holds the shown frame
    assert pd.read_csv(tmp_path / "plain.csv", index_col=0).loc["ERM", "WGA (%)"] == "45.0 ± 5.0"


def test_missing_results_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"results\.json.*03_erm.*10_baselines"):
        rp.load_results(tmp_path / "results.json")
    (tmp_path / "results.json").write_text(json.dumps(synthetic()))
    assert rp.load_results(tmp_path / "results.json")["methods"].keys() == synthetic()["methods"].keys()


@pytest.mark.parametrize("key", ["group_labels", "worst", "avg", "per_group"])
def test_method_without_required_key_raises(key):
    res = synthetic()
    del res["methods"]["DFR"][key]
    with pytest.raises(ValueError, match=rf"'DFR'.*{key}"):
        rp.table1(res)


def test_inconsistent_entries_raise():
    res = synthetic()
    res["methods"]["ERM"]["avg"] = [0.8]
    with pytest.raises(ValueError, match="one value per seed"):
        rp.check_results(res)
    res = synthetic()
    res["methods"]["ERM"]["group_labels"] = "test"
    with pytest.raises(ValueError, match="group_labels"):
        rp.check_results(res)
    with pytest.raises(ValueError, match="no 'methods'"):
        rp.check_results({"profile": "smoke"})


def test_plots_return_figures():
    res = synthetic()
    names = rp.group_names(res)
    assert names == ["land 0", "water 0", "land 1", "water 1"]
    fig = rp.plot_per_group(res, names)
    assert isinstance(fig, Figure)
    heights = sorted(p.get_height() for p in fig.axes[0].patches if p.get_height() > 0)
    assert np.isclose(heights[-1], 97.0) and np.isclose(heights[0], 45.0)  # means: group 0 = 97%, ERM's worst = 45%
    plt.close(fig)
    with pytest.raises(ValueError, match="group names"):
        rp.plot_per_group(res, names[:3])
    fig = rp.plot_wga(res)
    assert isinstance(fig, Figure)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "reported in the paper (Waterbirds)" in labels and "ERM (ours)" in labels
    plt.close(fig)
    res["methods"] = {"ERM": res["methods"]["ERM"]}
    assert isinstance(rp.plot_wga(res), Figure)  # no interval, still a figure
    plt.close("all")


def run_notebook(root: Path, monkeypatch) -> None:
    "Execute 11_results.ipynb with `root` as project root and the smoke profile."
    from execnb.nbio import read_nb
    from execnb.shell import CaptureShell

    (root / "settings.ini").write_text("[DEFAULT]\n")
    monkeypatch.chdir(root)
    monkeypatch.setenv("SPURNB_PROFILE", "smoke")
    monkeypatch.setenv("SPURNB_CACHE", str(root / "cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    CaptureShell().run_all(read_nb(NB), exc_stop=True)


@pytest.mark.parametrize("ablations", [True, False])
def test_notebook_runs_on_synthetic_results(tmp_path, monkeypatch, ablations):
    fig_dir = tmp_path / "figures" / "smoke"
    fig_dir.mkdir(parents=True)
    (fig_dir / "results.json").write_text(json.dumps(synthetic(ablations)))
    run_notebook(tmp_path, monkeypatch)
    tables = ["table1", "table2", "table3"] if ablations else ["table1"]
    assert json.loads((fig_dir / "results.json").read_text())["report"]["tables"] == tables
    for name in ("table1", "table2", "table3"):
        assert (fig_dir / f"{name}.md").exists() == (fig_dir / f"{name}.csv").exists() == (name in tables)
    assert (fig_dir / "per_group.png").stat().st_size > 0 and (fig_dir / "wga.png").stat().st_size > 0
    assert "reported in the paper" in (fig_dir / "table1.md").read_text()


def test_notebook_without_results_writes_nothing(tmp_path, monkeypatch):
    run_notebook(tmp_path, monkeypatch)
    assert list((tmp_path / "figures" / "smoke").iterdir()) == []


def test_replace_block_swaps_only_between_markers():
    from spurnb.report import replace_block

    doc = "# t\n<!-- table1:start -->\nold table\n<!-- table1:end -->\nrest"
    out = replace_block(doc, "table1", "| a |\n|---|\n| 1 |\n")
    assert out.startswith("# t\n<!-- table1:start -->\n| a |") and out.endswith("<!-- table1:end -->\nrest")
    assert "old table" not in out
    with pytest.raises(ValueError, match="not found"):
        replace_block("# t\n<!-- table1:end -->\n<!-- table1:start -->", "table1", "x")


def test_summary_numbers_come_from_results():
    res = synthetic()
    text = rp.summary(res)
    assert "90.0 ± 2.0%" in text and "ERM's 45.0%: +45.0 points" in text  # DDB [0.88, 0.92], ERM [0.40, 0.50]
    assert "0 score above DDB." in text  # LISA 72, DFR 84 are below DDB's 90
    assert "removes 46%" in text and "90.0% with it and 82.0% without, so pruning helps" in text  # 260 of 560
    assert "n = 40 gives the best WGA (90.0%) and n = 0 the worst (50.0%)" in text
    res["methods"]["DFR"]["worst"] = [0.95, 0.97]
    assert "1 score above DDB (DFR 96.0%)" in rp.summary(res)
    res["ablations"]["pruning"]["without"]["worst"] = [0.95, 0.95]
    assert "so pruning does not help" in rp.summary(res)


def test_summary_leaves_out_what_has_not_run():
    assert rp.summary({}).startswith("DDB or ERM has not been run")
    text = rp.summary(synthetic(ablations=False))
    assert "pruning" not in text and "inversion" not in text and "oracle" not in text


def test_self_is_placed_before_ddb_and_its_authors_number_stays_in_its_own_column():
    res = synthetic()
    res["methods"]["SELF"] = entry("val", [0.8, 0.82], [0.9, 0.9])
    t = rp.table1(res)
    assert list(t.index) == ["ERM", "DFR", "LISA", "SELF", "DDB"]
    col = "Waterbirds WGA, reported by the method's authors (%)"
    assert t.loc["SELF", col] == "93.0" and (t.drop(index="SELF")[col] == "–").all()
    assert t.loc["SELF", "Waterbirds WGA, reported in the paper (%)"] == "–"  # the DDB paper does not list SELF
