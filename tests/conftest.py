"Fixtures shared by the test modules, and the order in which modules start."
import pytest
import torch

from spurnb.config import get_config
from spurnb.generator import build_mini_sd, save_generator


@pytest.fixture(scope="session")
def folder(tmp_path_factory):
    "An untrained smoke-size mini SD saved as a spurnb generator folder (tiny random weights)."
    torch.manual_seed(0)
    comps = build_mini_sd(get_config("smoke")["generator"])
    return save_generator(comps, tmp_path_factory.mktemp("gen") / "mini-sd", {"note": "untrained"})


SLOWEST_FIRST = ("test_paper_profile.py", "test_faults.py")  # minutes each: started first, two pytest-xdist workers
# (`make test`) finish together instead of one starting the paper profile's runs when the other is nearly done


def pytest_collection_modifyitems(items):
    "Run the slowest test modules first (a stable sort: the rest keep their order)."
    def rank(item):
        name = item.path.name
        return SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)
