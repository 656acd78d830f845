"""What the cpu profile's speed cuts change: inpainting steps and guidance, Integrated Gradients steps.

Usage: .venv/bin/python benchmarks/cpu_cuts.py   (after `make reproduce`: stages 03-08 must be cached)
- Inpainting: 160 of each seed's majority images (80 per class), repainted with the other class's token at several
  (steps, guidance); the share the world digit reader reads as the new class, and the seconds (2 threads).
- IG: ρ of 200 generated images per seed at several step counts against 50 steps: median |convergence delta|,
  largest change of ρ, how many keep/prune decisions (ρ ≤ P) change, and the seconds.
Output recorded in cpu_cuts.txt.
"""
import tempfile
import time

import numpy as np
import torch

from spurnb.config import get_config, run_paths
from spurnb.data import ArrayGroupDataset, load_split
from spurnb.erm import initial_weights, make_model, predict, train_erm
from spurnb.generator import load_generator
from spurnb.inpaint import inpaint_masks, inpaint_model, inpaint_resumable
from spurnb.inversion import draw_tokens, images_of, invert, load_tokens
from spurnb.prune import prune_scores, rho_scores, to_input
from spurnb.segment import majority_masks

INPAINT = [(25, 3.0), (15, 3.0), (25, 7.5), (15, 7.5)]
IG_STEPS = [50, 25, 20, 10]


def main() -> None:
    torch.set_num_threads(2)
    cfg = get_config("cpu")
    dcfg, ecfg, gcfg, pcfg = cfg["data"], cfg["erm"], cfg["generator"], cfg["ddb"]["inpaint"]
    cache = run_paths(cfg)["cache"]
    train = load_split(dcfg, "train")
    reader = make_model(ecfg["arch"], 10, ecfg["widths"])
    reader.load_state_dict(initial_weights(dcfg, ecfg, cache))
    print("# inpainting: steps, guidance, seed -> share read as the new class (new class 0, new class 1), seconds")
    for seed in cfg["seeds"]:
        inv, maj = invert(cfg, seed, cache), majority_masks(cfg, seed, cache)["arrays"]
        rng = np.random.default_rng(0)
        sel = np.concatenate([rng.choice(np.nonzero(maj["y"] == c)[0], 80, replace=False) for c in (0, 1)])
        src, new_y = maj["idx"][sel], 1 - maj["y"][sel]
        images = images_of(train, src, gcfg["size"])
        masks = inpaint_masks(maj["masks"][sel], pcfg["mask"], pcfg["grow"])
        pipe = load_generator(inpaint_model(dcfg, gcfg, cache), "inpaint")  # fresh: no tokens of another seed
        load_tokens(pipe, inv["files"])
        prompts = [pcfg["template"].format(w) for w in draw_tokens(inv["meta"], new_y, [seed, pcfg["seed"]])]
        for steps, guidance in INPAINT:
            t = time.perf_counter()
            with tempfile.TemporaryDirectory() as d:
                gen = inpaint_resumable(pipe, images, masks, prompts, d, seed=pcfg["seed"], steps=steps,
                                        guidance=guidance, batch_size=64, chunk=256)
            dt = time.perf_counter() - t
            read = predict(reader, ArrayGroupDataset(gen, new_y, train.a[src], 2, 2)).argmax(1) >= 5
            print(f"steps {steps:2d} guidance {guidance:3.1f} seed {seed}  {(read[new_y == 0] == 0).mean():.3f} "
                  f"{(read[new_y == 1] == 1).mean():.3f}  {dt:.1f} s", flush=True)
    print("# IG: steps, seed -> median |delta|, max |delta|, max |rho - rho(50)|, decisions changed / 200, seconds")
    for seed in cfg["seeds"]:
        G = prune_scores(cfg, seed, cache)["gen"]["arrays"]
        model = make_model(ecfg["arch"], 2, ecfg["widths"])
        model.load_state_dict(train_erm(dcfg, ecfg, seed, cache)["tensors"])
        sel = np.arange(0, len(G["y"]), max(1, len(G["y"]) // 200))[:200]
        xg, xs = to_input(G["images"][sel], 32), to_input(images_of(train, G["src_idx"][sel], 32), 32)
        ref = None
        for steps in IG_STEPS:
            t = time.perf_counter()
            rho, delta, _ = rho_scores(model, xg, xs, G["masks"][sel], G["y"][sel], steps, 32, 800)
            dt = time.perf_counter() - t
            ref = rho if ref is None else ref
            P = cfg["ddb"]["prune"]["P"]
            print(f"steps {steps:2d} seed {seed}  {np.median(abs(delta)):.4f} {abs(delta).max():.4f} "
                  f"{abs(rho - ref).max():.4f} {int(((rho <= P) != (ref <= P)).sum())}  {dt:.1f} s", flush=True)


if __name__ == "__main__":
    main()
