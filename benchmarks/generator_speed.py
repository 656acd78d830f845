"""Speed of the shipped mini Stable Diffusion on this machine (a benchmark, not a test).

Run: .venv/bin/python benchmarks/generator_speed.py > benchmarks/generator_speed.txt
Prints the time of `from_pretrained` (with the sha256 check) and images per second for 25-step inpainting at
batch 1 and batch 64 (guidance 3, CPU threads as torch chooses).
"""
import os
import platform
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np
import torch

from spurnb.config import get_config
from spurnb.data import load_split
from spurnb.generator import box_masks, inpaint, load_generator, resolve_model

cfg = get_config("cpu")
path = resolve_model(cfg["generator"]["model"])
t0 = time.perf_counter()
pipe = load_generator(path, "inpaint")
load_s = time.perf_counter() - t0
test = load_split(cfg["data"], "test")
print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}")
print(f"from_pretrained + sha256 check: {load_s:.2f} s")
for batch, n in ((1, 8), (64, 128)):
    imgs, masks = test.images[:n], box_masks(test.masks[:n])
    prompts = ["a photo of a seven"] * n
    inpaint(pipe, imgs[:batch], masks[:batch], prompts[:batch], steps=25, batch_size=batch)  # warm-up
    t0 = time.perf_counter()
    inpaint(pipe, imgs, masks, prompts, steps=25, batch_size=batch)
    dt = time.perf_counter() - t0
    print(f"25-step inpainting, batch {batch:2d}: {n / dt:6.1f} images/s ({n} images in {dt:.1f} s)")
