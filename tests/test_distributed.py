"""Several processes under `accelerate launch`: independent jobs are split between them, inpainting shards its chunks,
a collective cache entry is computed by all and stored once, and every process ends with what one process makes."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

ACCELERATE = Path(sys.executable).parent / "accelerate"

SCRIPT = """
import json, os, sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from spurnb.config import cached, collective_state, get_config, run_jobs
from spurnb.inpaint import inpaint_resumable

cache, log = Path(sys.argv[1]), Path(sys.argv[2])
rank = collective_state().process_index


def note(*words):
    with open(log, "a") as f:
        f.write(" ".join(map(str, [rank, *words])) + "\\n")


class Pipe:  # stands in for the inpainting pipeline: the image inverted; notes which images it was asked for
    def __call__(self, prompts, image, mask_image, generator, output_type, **kw):
        note("inpainted", *prompts)
        return SimpleNamespace(images=1 - image.permute(0, 2, 3, 1).numpy())


N = 20
images = np.random.default_rng(0).integers(0, 256, (N, 32, 32, 3), dtype=np.uint8)


def generate():
    note("computes", "generated")
    out = inpaint_resumable(Pipe(), images, np.ones((N, 32, 32), bool), [f"img{i}" for i in range(N)], cache / "parts",
                            batch_size=3, chunk=3)
    return {"arrays": {"images": out}}


def square(x, cache):  # a cached stage: one job
    def compute():
        note("computes", f"square{x}")
        return {"meta": {"y": x * x}}

    return cached("square", {"x": x}, compute, cache)


art = cached("generated", {"k": 1}, generate, cache, collective=True)
if rank == 1:  # transformers writes a model only on rank 0 of a process group: a folder saved elsewhere is whole too
    from spurnb.generator import build_mini_sd, load_generator, save_generator

    save_generator(build_mini_sd(get_config("smoke")["generator"]), cache / "mini-sd")
    note("loaded", type(load_generator(cache / "mini-sd").text_encoder).__name__)
try:  # one process's job fails: every process raises it, and they stay in step for what follows
    run_jobs(get_config, [("cpu",), ("no-such-profile",)], desc="profiles")
except ValueError as e:
    note("raised", type(e).__name__, "no-such-profile" in str(e))
squares = run_jobs(square, [(x,) for x in range(5)], desc="squares", cache=cache)
(log.parent / f"out-{rank}.json").write_text(json.dumps({"images": art["arrays"]["images"].tolist(),
                                                        "squares": [s["meta"]["y"] for s in squares]}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def test_two_processes_share_the_work_and_agree(tmp_path):
    script, log, cache = tmp_path / "stage.py", tmp_path / "log.txt", tmp_path / "cache"
    script.write_text(SCRIPT)
    # --multi_gpu starts its processes through torchrun; without GPUs they talk over gloo on the CPU (--cpu would
    # start one process unless MPI is installed)
    cmd = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           str(script), str(cache), str(log)]
    env = {**os.environ, "SPURNB_JOBS": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    outs = {r: json.loads((tmp_path / f"out-{r}.json").read_text()) for r in (0, 1)}
    notes = [line.split() for line in log.read_text().splitlines()]

    # inpainting: each process made its own chunks, about half of the images each, none twice, none missing
    made = {r: [w for n in notes if n[0] == str(r) and n[1] == "inpainted" for w in n[2:]] for r in (0, 1)}
    assert sorted(made[0] + made[1], key=lambda w: int(w[3:])) == [f"img{i}" for i in range(20)]
    assert not set(made[0]) & set(made[1])
    assert (len(made[0]), len(made[1])) == (12, 8)  # 7 chunks of 3 (the last of 2): the first 4, the other 3
    assert "inpainting: process 0 of 2 generates 12 of 20 images" in run.stderr
    assert "inpainting: process 1 of 2 generates 8 of 20 images" in run.stderr
    # the collective entry: both processes took part in its computation, one entry stored, both read the same images
    assert sorted(n[0] for n in notes if n[1:] == ["computes", "generated"]) == ["0", "1"]
    assert len(list((cache / "generated").glob("*/SHA256SUMS"))) == 1
    images = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    assert outs[0]["images"] == outs[1]["images"] == (255 - images).tolist()  # what one process makes

    assert ["1", "loaded", "CLIPTextModel"] in notes  # a text encoder saved by process 1 is there and loads

    # independent jobs: split between the processes, each computed once, every result back in order everywhere
    squares = sorted((n[2], n[0]) for n in notes if n[1] == "computes" and n[2].startswith("square"))
    assert [s for s, _ in squares] == [f"square{x}" for x in range(5)]
    assert {r for _, r in squares} == {"0", "1"}
    assert outs[0]["squares"] == outs[1]["squares"] == [x * x for x in range(5)]
    assert "squares: process 0 of 2 computed job(s) [0, 1, 2] of 5" in run.stderr
    # a job that failed in one process was raised in both (before the squares, which both then computed in step)
    assert sorted(n for n in notes if n[1] == "raised") == [["0", "raised", "ValueError", "True"],
                                                             ["1", "raised", "ValueError", "True"]]
    assert "profiles: process 1 of 2 computed job(s) [1] of 2 and failed" in run.stderr
