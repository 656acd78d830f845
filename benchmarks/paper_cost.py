"""The paper profile's cost, measured: its models at full size with random weights from their published configurations
(no download), each stage's unit of work timed and its peak memory and floating-point operations measured on this
device, then multiplied out to the paper profile's counts per dataset (issue 19).

Units, each in a child process of its own (so that its peak memory is its own):
  inversion-* one textual-inversion step: SD2-base UNet + OpenCLIP-H text encoder, forward and backward, at batch 1 and 2
              (memory is extrapolated linearly to the paper's 8 images per step), fp32 / + gradient checkpointing /
              + half precision (bf16 autocast on CPU, fp16 on CUDA)
  inpaint     one denoising step of the SD2-inpainting UNet for one image (batch 2: classifier-free guidance), and the
              VAE's encode + decode of one 512 px image
  segment     GroundingDINO-base (Swin-B) and SAM ViT-H on one image
  resnet50    one training step (batch 32, 224 px), inference per image, Integrated Gradients (50 steps) per image

On a CPU the seconds are this machine's; the GPU-hours column is then an estimate: the measured FLOPs divided by an
A100's dense throughput at a stated utilisation (ASSUMED below). On CUDA (`--device cuda`) the measured seconds are used.
Usage: python benchmarks/paper_cost.py [--device cpu|cuda] [--units NAME ...]
       >> benchmarks/paper_cost.txt   (about 15 minutes on 2 CPU cores)
Peak memory is the unit process's peak so far: a unit's later measurements include its earlier ones' peaks."""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

# A100 dense peak, TFLOP/s, and the share of it a well-fed run reaches (assumptions, not measurements)
ASSUMED = {"half": (312.0, 0.40), "fp32": (156.0, 0.30)}  # fp16/bf16 tensor cores; TF32 for fp32 training
# published split sizes (train, val, test) and the paper profile's settings (spurnb.config PROFILES/DATASET_SETTINGS)
SPLITS = {"waterbirds": (4795, 1199, 5794), "celeba": (162770, 19867, 19962), "metashift": (2276, 349, 874)}


def _peak_bytes(device: str) -> int:
    import torch

    if device == "cuda":
        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # the whole process's peak resident memory


def _reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _count_cpu_attention() -> None:
    "Teach torch's FLOP counter CPU's fused attention kernels (it knows only the GPU ones): 4·b·h·s_q·s_k·d forward."
    import torch
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        fc.register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu)(
            lambda q, k, v, *a, out_shape=None, **kw: fc.sdpa_flop_count(q, k, v))
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        fc.register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu_backward)(
            lambda g, q, k, v, *a, out_shape=None, **kw: fc.sdpa_backward_flop_count(g, q, k, v))


def _measure(fn, device: str, repeat: int = 1, count: bool = True) -> dict:
    "FLOPs of one call (counted on a first, warm-up call; 0 with `count=False`), then seconds per call and peak memory."
    from contextlib import nullcontext

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    fc = FlopCounterMode(display=False)
    with fc if count else nullcontext():
        fn()
    _reset_peak(device)
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return {"seconds": (time.perf_counter() - t0) / repeat, "flops": int(fc.get_total_flops()),
            "peak_gb": _peak_bytes(device) / 2**30}


def sd2_unet(in_channels: int):
    "SD2's UNet (stabilityai/stable-diffusion-2-base and -inpainting configurations), random weights."
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(sample_size=64, in_channels=in_channels, out_channels=4,
                                block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=1024,
                                attention_head_dim=(5, 10, 20, 20), use_linear_projection=True)


def sd2_text_encoder():
    "SD2's OpenCLIP ViT-H text encoder as transformers' CLIPTextModel (23 layers, width 1024), random weights."
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=1024, intermediate_size=4096,
                                        num_hidden_layers=23, num_attention_heads=16, max_position_embeddings=77,
                                        hidden_act="gelu", projection_dim=512))


def unit_inversion(device: str, setting: str) -> dict:
    "One textual-inversion step (only the token embeddings learn) at batch 1 and 2, in one precision/memory setting."
    import torch

    torch.manual_seed(0)
    out = {}
    unet, te = sd2_unet(4).to(device), sd2_text_encoder().to(device)
    unet.requires_grad_(False)
    te.requires_grad_(False)
    emb = te.get_input_embeddings().weight
    emb.requires_grad_(True)
    if "checkpointing" in setting:
        unet.enable_gradient_checkpointing()
    half = torch.float16 if device == "cuda" else torch.bfloat16
    if setting.startswith("half") and device == "cuda":
        unet.to(half)  # frozen: its weights in half precision; the learned embedding stays fp32
    opt = torch.optim.AdamW([emb], lr=1e-3)
    for b in (1, 2):  # in this order: the process's peak memory only grows
        ids = torch.randint(0, 49408, (b, 77), device=device)
        z = torch.randn(b, 4, 64, 64, device=device)
        t = torch.randint(0, 1000, (b,), device=device)

        def step():
            with torch.autocast(device, dtype=half, enabled=setting.startswith("half")):
                pred = unet(z, t, te(ids)[0]).sample
            loss = (pred.float() - z).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        out[f"{setting} b{b}"] = _measure(step, device)
        print(f"  inversion {setting} batch {b}: {out[f'{setting} b{b}']}", file=sys.stderr, flush=True)
    return out


def unit_inpaint(device: str) -> dict:
    "One denoising step of the inpainting UNet for one image (batch 2, guidance), and one VAE encode + decode."
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    dtype = torch.float16 if device == "cuda" else torch.float32  # fp16 on GPUs (the paper's recipe), fp32 on CPU
    unet = sd2_unet(9).to(device, dtype)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        sample_size=512).to(device, dtype)
    cond = torch.randn(2, 77, 1024, device=device, dtype=dtype)
    x = torch.randn(2, 9, 64, 64, device=device, dtype=dtype)
    img = torch.randn(1, 3, 512, 512, device=device, dtype=dtype)
    with torch.no_grad():
        out = {"unet step (1 image)": _measure(lambda: unet(x, torch.tensor([500], device=device), cond).sample, device),
               "vae encode+decode (1 image)": _measure(lambda: vae.decode(vae.encode(img).latent_dist.mean).sample,
                                                       device)}
    return out


def unit_segment(device: str) -> dict:
    "GroundingDINO-base and SAM ViT-H (the paper profile's detector and segmenter), one image each."
    import torch
    from transformers import (BertConfig, GroundingDinoConfig, GroundingDinoForObjectDetection, SamConfig, SamModel,
                              SamVisionConfig, SwinConfig)

    torch.manual_seed(0)
    swin_b = SwinConfig(image_size=384, embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12,
                        out_features=["stage2", "stage3", "stage4"])
    dino = GroundingDinoForObjectDetection(GroundingDinoConfig(backbone_config=swin_b, text_config=BertConfig())).to(device).eval()
    sam = SamModel(SamConfig(vision_config=SamVisionConfig(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16,
                                                           global_attn_indexes=[7, 15, 23, 31]))).to(device).eval()
    pix = torch.randn(1, 3, 800, 800, device=device)  # GroundingDINO's processor: shortest side 800
    ids = torch.randint(1000, 2000, (1, 6), device=device)  # "[CLS] a bird . [SEP]"-sized prompt
    sam_pix = torch.randn(1, 3, 1024, 1024, device=device)
    box = torch.tensor([[[100.0, 100.0, 700.0, 700.0]]], device=device)
    with torch.inference_mode():  # (under no_grad, the FLOP counter's module hooks trip on GroundingDINO's outputs)
        return {"groundingdino-base (1 image)": _measure(lambda: dino(pixel_values=pix, input_ids=ids), device),
                "sam-vit-h (1 image)": _measure(lambda: sam(pixel_values=sam_pix, input_boxes=box), device)}


def unit_resnet50(device: str) -> dict:
    "ResNet-50 at 224 px: a training step of 32 images, inference of 32, Integrated Gradients (50 steps) of one image."
    import torch
    from torchvision.models import resnet50

    torch.manual_seed(0)
    model = resnet50(num_classes=2).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(32, 3, 224, 224, device=device).to(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (32,), device=device)

    def train():
        model.train()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer():
        model.eval()
        with torch.no_grad():
            model(x)

    def ig():  # captum's IntegratedGradients at 50 steps, internal batch 50: one forward + backward of 50 images
        from captum.attr import IntegratedGradients

        model.eval()
        IntegratedGradients(model).attribute(x[:1], target=1, n_steps=50, internal_batch_size=50)

    out = {"train step (32 images)": _measure(train, device), "inference (32 images)": _measure(infer, device),
           # captum's autograd.grad trips the FLOP counter's module hooks: 50 forward + backward passes of one image
           "integrated gradients (1 image, 50 steps)": _measure(ig, device, count=False)}
    out["integrated gradients (1 image, 50 steps)"]["flops"] = 50 * out["train step (32 images)"]["flops"] // 32
    return out


UNITS = {"inversion-fp32": lambda d: unit_inversion(d, "fp32"),  # one process each: a process's peak only grows
         "inversion-ckpt": lambda d: unit_inversion(d, "fp32+checkpointing"),
         "inversion-half": lambda d: unit_inversion(d, "half+checkpointing"),
         "inpaint": unit_inpaint, "segment": unit_segment, "resnet50": unit_resnet50}


def stage_table(m: dict, device: str) -> list[dict]:
    "Per dataset and stage: how many unit operations the paper profile does, their GPU-hours and peak memory."
    seeds, epochs, base_epochs, retrain_epochs, steps, inv_steps = 3, 50, 50, 60, 50, 3000
    ablation_n, main_n, P = [0, 10, 20, 30, 40], 30, 0.3
    K = {"waterbirds": [1300, 1112], "celeba": [300, 300], "metashift": [300, 400]}

    def hours(u: dict, half: bool) -> float:  # GPU-hours of one unit operation
        if device == "cuda":
            return u["seconds"] / 3600
        peak, util = ASSUMED["half" if half else "fp32"]
        return u["flops"] / (peak * 1e12 * util) / 3600

    inv = {k: v for u in ("inversion-fp32", "inversion-ckpt", "inversion-half") for k, v in m.get(u, {}).items()}
    best = "half+checkpointing" if "half+checkpointing b1" in inv else "fp32+checkpointing"  # fp32 is an upper bound
    b1, b2 = inv[f"{best} b1"], inv[f"{best} b2"]
    inv_step = {"seconds": b1["seconds"] + 7 * (b2["seconds"] - b1["seconds"]), "flops": 8 * b1["flops"]}
    mem = {s: inv[f"{s} b1"]["peak_gb"] + 7 * (inv[f"{s} b2"]["peak_gb"] - inv[f"{s} b1"]["peak_gb"])
           for s in ("fp32", "fp32+checkpointing", "half+checkpointing") if f"{s} b1" in inv}
    r = m["resnet50"]
    train_img = {k: v / 32 for k, v in r["train step (32 images)"].items() if k != "peak_gb"}
    infer_img = {k: v / 32 for k, v in r["inference (32 images)"].items() if k != "peak_gb"}
    ig_img, ip, sg = r["integrated gradients (1 image, 50 steps)"], m["inpaint"], m["segment"]
    rows = []
    for ds, (n_tr, n_va, n_te) in SPLITS.items():
        k = sum(K[ds])
        extra = len(ablation_n) - 1  # the ablations (at one seed) invert, generate, prune and retrain again per N
        n_gen = k * (seeds + extra)
        evals = n_va + n_te
        counts = {  # stage: [(unit, count, half precision?)]
            "ERM": [(train_img, seeds * epochs * n_tr, False), (infer_img, seeds * epochs * evals, False)],
            "baselines (5 methods)": [(train_img, 5 * seeds * base_epochs * n_tr, False),
                                      (infer_img, 5 * seeds * base_epochs * evals, False)],
            "segmentation": [(sg["groundingdino-base (1 image)"], seeds * k, False),
                             (sg["sam-vit-h (1 image)"], seeds * k, False)],
            "textual inversion": [(inv_step, (seeds + sum(1 for n in ablation_n if n not in (0, main_n))) * inv_steps,
                                   True)],  # precision "auto": fp16 on a GPU (the same FLOPs as fp32)
            "inpainting": [(ip["unet step (1 image)"], n_gen * steps, True), (ip["vae encode+decode (1 image)"], n_gen, True)],
            "pruning (ψ, ρ)": [(ig_img, n_gen, False), (infer_img, n_gen, False)],
            "retraining": [(train_img, (seeds + extra + 1) * retrain_epochs * (n_tr + (1 - P) * k), False),
                           (infer_img, (seeds + extra + 1) * retrain_epochs * evals, False)],
        }
        peaks = {"ERM": r["train step (32 images)"]["peak_gb"], "baselines (5 methods)": r["train step (32 images)"]["peak_gb"],
                 "segmentation": max(sg[u]["peak_gb"] for u in sg), "textual inversion": mem[best],
                 "inpainting": max(ip[u]["peak_gb"] for u in ip), "pruning (ψ, ρ)": ig_img["peak_gb"],
                 "retraining": r["train step (32 images)"]["peak_gb"]}
        for stage, parts in counts.items():
            rows.append({"dataset": ds, "stage": stage, "gpu_hours": sum(hours(u, h) * n for u, n, h in parts),
                         "peak_gb": peaks[stage], "this_device_hours": sum(u["seconds"] * n for u, n, _ in parts) / 3600})
    return rows, mem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--units", nargs="+", choices=list(UNITS),
                    help="default: all; on a CPU all but inversion-half (bf16 without native bf16 instructions ran "
                         "over 27 minutes on a 2-core AVX2 EPYC and was stopped)")
    ap.add_argument("--keep", metavar="JSON", help="keep each unit's measurement in this file and reuse it on a rerun")
    ap.add_argument("--unit", help=argparse.SUPPRESS)  # a child process: measure one unit, print JSON
    args = ap.parse_args()
    if args.units is None:
        avx512_bf16 = args.device == "cpu" and "avx512_bf16" in open("/proc/cpuinfo").read()
        args.units = [u for u in UNITS if u != "inversion-half" or args.device == "cuda" or avx512_bf16]
    if args.unit:
        _count_cpu_attention()
        print(json.dumps(UNITS[args.unit](args.device)))
        return
    t0 = time.time()
    kept = json.loads(open(args.keep).read()) if args.keep and os.path.exists(args.keep) else {}
    measured = {}
    for u in args.units:
        if f"{args.device}:{u}" in kept:
            measured[u] = kept[f"{args.device}:{u}"]
            continue
        r = subprocess.run([sys.executable, __file__, "--unit", u, "--device", args.device], capture_output=True, text=True)
        if r.returncode:
            why = "killed (out of memory?)" if r.returncode < 0 else f"exit {r.returncode}"
            sys.exit(f"paper_cost: unit {u} failed: {why}\n{r.stderr[-3000:]}")
        print(f"  {u}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        measured[u] = json.loads(r.stdout.strip().splitlines()[-1])
        if args.keep:
            kept[f"{args.device}:{u}"] = measured[u]
            with open(args.keep, "w") as f:
                json.dump(kept, f, indent=1)
    import torch

    where = torch.cuda.get_device_name() if args.device == "cuda" else \
        f"{os.cpu_count()} CPU cores ({subprocess.run(['grep', '-m1', 'model name', '/proc/cpuinfo'], capture_output=True, text=True).stdout.split(':')[-1].strip()})"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    print(f"# {time.strftime('%F %H:%M', time.gmtime())} UTC, commit {commit}, {where}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}; {time.time() - t0:.0f} s")
    print("\n## Units measured (seconds on this device, GFLOP counted by torch.utils.flop_counter, peak memory:"
          f" {'CUDA allocated' if args.device == 'cuda' else 'process resident set, incl. ~0.5 GB of Python and torch'})")
    print("| unit | setting | seconds | GFLOP | peak GB |\n|---|---|---|---|---|")
    for u, res in measured.items():
        for k, v in res.items():
            print(f"| {u} | {k} | {v['seconds']:.2f} | {v['flops'] / 1e9:,.0f} | {v['peak_gb']:.1f} |")
    if set(UNITS) - {"inversion-half"} <= set(measured):
        rows, mem = stage_table(measured, args.device)
        print("\n## Textual inversion at the paper's 8 images per step, peak memory extrapolated from batch 1 and 2")
        for s, gb in mem.items():
            print(f"- {s}: {gb:.1f} GB" + (" (fits a 24 GB GPU)" if gb <= 24 else " (does not fit 24 GB)"))
        how = "measured seconds" if args.device == "cuda" else \
            (f"estimated: counted FLOPs / A100 at {ASSUMED['half'][1]:.0%} of {ASSUMED['half'][0]:g} TFLOP/s (half "
             f"precision) or {ASSUMED['fp32'][1]:.0%} of {ASSUMED['fp32'][0]:g} (TF32)")
        print(f"\n## The paper profile per dataset (3 seeds, ablations at one seed), GPU-hours {how}")
        print("| dataset | stage | GPU-hours | peak GB | hours on this device |\n|---|---|---|---|---|")
        for ds in SPLITS:
            sub = [r for r in rows if r["dataset"] == ds]
            for r in sub:
                print(f"| {ds} | {r['stage']} | {r['gpu_hours']:.1f} | {r['peak_gb']:.1f} | {r['this_device_hours']:,.0f} |")
            print(f"| {ds} | **total** | **{sum(r['gpu_hours'] for r in sub):.1f}** | | "
                  f"{sum(r['this_device_hours'] for r in sub):,.0f} |")


if __name__ == "__main__":
    main()
