"""How far is DDB's retraining from the oracle when its generated images are replaced by better ones? (cpu profile)

Usage: .venv/bin/python benchmarks/ddb_ceiling.py [variant:g1/g2 ...]   (after `make reproduce`; default: VARIANTS)
Every variant retrains with `09_retrain`'s `retrain` (from ERM with a fresh head, L_train + γ1·L_gen1 + γ2·L_gen2,
10 epochs, selection on validation WGA); only the extra images and γ change:
- `kept_clean`: DDB's kept edits, minus those the world digit reader reads as the old class (label noise removed);
- `real_kept`: real minority-group composites from the world split (digits never in train/val/test) in the same
  number per class as DDB keeps;
- `real_kept_vae`: as `real_kept`, with each image's object box (grown as for inpainting) passed through the mini
  SD's VAE and pasted back: the repainted-region look of an edit, with the true digit;
- `real300`: 300 real minority composites per class;
- `words`: DDB's own sources, masks, inpainting model and settings and both pruning heads, but each edit prompted
  with a digit word of the new class ("a photo of a seven") instead of the class's learned token;
- `words_t2i`: as `words`, repainted by the text-to-image model with masked latents instead of the inpainting model.
Output recorded in ddb_ceiling.txt. A diagnostic: DDB itself never sees digit labels or real minority images.
"""
import json
import os
import sys
import time

import numpy as np

VARIANTS = [("kept_clean", (6.0, 10.0)), ("real_kept", (6.0, 10.0)), ("real_kept", (1.0, 1.0)),
            ("real300", (0.5, 0.5))]


def run(variant: str, gamma: tuple, seed: int) -> dict:
    "Retrain one seed with one variant's extra images; validation and test group accuracies."
    import torch

    from spurnb.config import get_config, run_paths
    from spurnb.data import ArrayGroupDataset, load_split
    from spurnb.erm import initial_weights, make_model, predict
    from spurnb.metrics import group_report
    from spurnb.prune import kept_mask, prune_scores
    from spurnb.retrain import retrain

    torch.set_num_threads(1)
    cfg = get_config("cpu", {"ddb.retrain.gamma": list(gamma)})
    dcfg, ecfg, dd = cfg["data"], cfg["erm"], cfg["ddb"]
    cache = run_paths(cfg)["cache"]
    train, val, test, world = (load_split(dcfg, s) for s in ("train", "val", "test", "world"))
    scores = prune_scores(cfg, seed, cache)
    G = scores["gen"]["arrays"]
    keep = kept_mask(scores, dd["prune"]["P"])
    if variant in ("words", "words_t2i"):
        from spurnb.data import DIGIT_WORDS
        from spurnb.erm import train_erm
        from spurnb.generator import load_generator
        from spurnb.inpaint import inpaint_model, inpaint_resumable
        from spurnb.inversion import images_of
        from spurnb.prune import prune_decision, score_generated
        import tempfile

        rng = np.random.default_rng(seed)
        words = [DIGIT_WORDS[int(c) * 5 + int(rng.integers(0, 5))] for c in G["y"]]
        src = images_of(train, G["src_idx"], G["images"].shape[1])
        from spurnb.generator import get_generator

        model = inpaint_model(dcfg, cfg["generator"], cache) if variant == "words" else \
            get_generator(dcfg, cfg["generator"], cache)
        pipe = load_generator(model, "inpaint")
        ic = dd["inpaint"]
        with tempfile.TemporaryDirectory() as d:
            gen = inpaint_resumable(pipe, src, G["masks"], [ic["template"].format(w) for w in words], d, seed=ic["seed"],
                                    steps=ic["steps"], guidance=ic["guidance"], batch_size=64, chunk=10**6)
        erm = make_model(ecfg["arch"], 2, ecfg["widths"])
        erm.load_state_dict(train_erm(dcfg, ecfg, seed, cache)["tensors"])
        sc, _ = score_generated(erm, gen, src, G["masks"], G["src_y"], G["y"], dd["prune"], train[0][0].shape[-1])
        k = prune_decision(sc["psi"], sc["Psi"], sc["rho"], dd["prune"]["P"])["keep"]
        images, y, a = gen[k], G["y"][k], G["a"][k]
    elif variant == "kept_clean":
        reader = make_model(ecfg["arch"], 10, ecfg["widths"])
        reader.load_state_dict(initial_weights(dcfg, ecfg, cache))
        ds = ArrayGroupDataset(G["images"][keep], G["y"][keep], G["a"][keep], 2, 2)
        ok = (predict(reader, ds).argmax(1) >= 5) == G["y"][keep]
        images, y, a = G["images"][keep][ok], G["y"][keep][ok], G["a"][keep][ok]
    else:
        n = {c: int((G["y"][keep] == c).sum()) for c in (0, 1)} if variant != "real300" else {0: 300, 1: 300}
        rng = np.random.default_rng(seed)
        pick = np.concatenate([rng.choice(np.nonzero((world.y == c) & (world.a != c))[0], n[c], replace=False)
                               for c in (0, 1)])
        images, y, a = world.images[pick], world.y[pick], world.a[pick]
        if variant == "real_kept_vae":
            from spurnb.generator import load_generator
            from spurnb.inpaint import inpaint_masks, inpaint_model

            vae = load_generator(inpaint_model(dcfg, cfg["generator"], cache), "inpaint").vae
            box = inpaint_masks(world.masks[pick], dd["inpaint"]["mask"], dd["inpaint"]["grow"])
            x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
            with torch.no_grad():
                rec = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
            rec = ((rec + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            images = np.where(box[..., None], rec, images)
    model, _ = retrain(cfg, seed, train, val, images, y, a, cache)
    rv = group_report(predict(model, val).argmax(1), val.y, val.g, 4)
    rt = group_report(predict(model, test).argmax(1), test.y, test.g, 4)
    return {"variant": variant, "gamma": list(gamma), "seed": seed, "extra": {c: int((y == c).sum()) for c in (0, 1)},
            "val_worst": round(rv["worst"], 3), "test_worst": round(rt["worst"], 3), "test_avg": round(rt["avg"], 3),
            "test_groups": [round(v, 3) for v in rt["per_group"]]}


def main() -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    os.environ.setdefault("TQDM_DISABLE", "1")
    variants = VARIANTS
    if sys.argv[1:]:  # e.g. real_kept_vae:1/1
        variants = [(v, tuple(float(x) for x in g.split("/"))) for v, g in (a.split(":") for a in sys.argv[1:])]
    calls = [(v, g, s) for v, g in variants for s in (0, 1, 2)]
    t = time.time()
    with ProcessPoolExecutor(os.cpu_count() or 1, mp_context=mp.get_context("spawn")) as pool:
        rows = list(pool.map(run, *zip(*calls)))
    print(f"# {len(calls)} retrainings in {time.time() - t:.0f} s", flush=True)
    for i in range(0, len(rows), 3):
        r = rows[i: i + 3]
        print(json.dumps({k: r[0][k] for k in ("variant", "gamma")}), "extra per class",
              [list(x["extra"].values()) for x in r], "val_worst", [x["val_worst"] for x in r],
              round(float(np.mean([x["val_worst"] for x in r])), 4), "test_worst", [x["test_worst"] for x in r],
              round(float(np.mean([x["test_worst"] for x in r])), 4), "test_avg",
              round(float(np.mean([x["test_avg"] for x in r])), 4), "test per group (seed 0)", r[0]["test_groups"],
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
