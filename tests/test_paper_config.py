"""The paper profile's configuration: one switch per dataset, the paper's recipe or a labelled departure."""

from pathlib import Path

import pytest

from spurnb.config import (DATASET_SETTINGS, NS, PAPER_RECIPE, PER_DATASET, PROFILES, _flatten, departures,
                           get_config, run_name)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("ds", sorted(DATASET_SETTINGS))
def test_one_switch_brings_every_dataset_setting(ds):
    flat = _flatten(get_config("paper", {"data.name": ds}))
    marked = [k for k, v in _flatten(PROFILES["paper"]).items() if v == PER_DATASET]
    assert marked and PER_DATASET not in flat.values()
    assert all(flat[k] == DATASET_SETTINGS[ds][k] for k in marked)
    word = DATASET_SETTINGS[ds]["ddb.inversion.init_word"]
    assert all(t.endswith(" " + word) for t in flat["ddb.inversion.templates"])  # no bird in a cat's prompt
    assert flat["ddb.inpaint.template"].endswith(" " + word)
    assert run_name(get_config("paper", {"data.name": ds})) == f"paper/{ds}"


def test_nothing_dataset_specific_is_inherited_silently():
    with pytest.raises(ValueError, match="'data.root'.*'waterbirds_lite'"):  # a dataset without paper settings
        get_config("paper", {"data.name": "waterbirds_lite"})
    with pytest.raises(ValueError, match="'data.name' must be one of waterbirds_lite, waterbirds"):  # no reader at all
        get_config("paper", {"data.name": "imagenet"})
    assert get_config("paper", {"data.name": "celeba", "segment.prompt": "hair."})["segment"]["prompt"] == "hair."
    assert run_name(get_config("cpu")) == "cpu"


def test_profile_constants_equal_the_papers():
    "Where the paper profile claims the paper's or the released code's value, it holds exactly that value."
    for ds in DATASET_SETTINGS:
        flat = _flatten(get_config("paper", {"data.name": ds}))
        for row in PAPER_RECIPE:
            if row["key"] and "why" not in row:
                for source in ("paper", "released"):
                    if row[source] != NS:
                        assert flat[row["key"]] == row[source], (ds, row["key"], source)
    flat = _flatten(get_config("paper"))
    assert flat["ddb.retrain.optimizer"] == "adam" and flat["ddb.retrain.lr"] == 5e-6
    assert flat["generator.size"] == 512 and flat["ddb.inpaint.steps"] == 50 and flat["ddb.prune.ig_steps"] == 50


def test_every_departure_says_why_and_the_committed_table_is_current():
    for ds in DATASET_SETTINGS:
        dep = departures(ds)
        assert (dep["why"] != "").all(), list(dep.loc[dep["why"] == "", "setting"])
    committed = (ROOT / "figures" / "paper" / "departures.md").read_text()
    for ds in DATASET_SETTINGS:
        assert departures(ds).to_markdown(index=False) in committed, f"{ds}: rerun nbs/A1_config.ipynb"
