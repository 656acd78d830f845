"Fixtures shared by the test modules."
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
