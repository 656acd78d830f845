"""Tests of spurnb.weights: which pretrained models a config needs, the offline presence checks, the download plan,
`fetch` and the `spurnb fetch` command. Offline: temporary caches, a fake hub and fake downloaders."""

from pathlib import Path
from types import SimpleNamespace

import huggingface_hub.constants
import pytest

from spurnb.config import get_config
from spurnb.weights import (KNOWN_SIZES, SD_PATTERNS, TRANSFORMERS_PATTERNS, check_weights, download_plan, fetch,
                            fetch_args, hf_cache_dir, human_size, imagenet_file, is_available, main, missing_weights,
                            required_weights)

KEYS = ["generator.model", "generator.inpaint_model", "segment.detector", "segment.sam", "erm.weights"]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def paper():
    "The paper profile's config."
    return get_config("paper")


@pytest.fixture
def caches(tmp_path, monkeypatch):
    "Empty Hugging Face and torch caches under tmp_path (environment and huggingface_hub's import-time constants)."
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    return tmp_path


def fake_snapshot(root, repo_id, files):
    "A hub-cache snapshot of `repo_id` under root/hf/hub with `files` and refs/main."
    repo = Path(root) / "hf" / "hub" / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    for f in files:
        path = repo / "snapshots" / COMMIT / f
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    return repo / "snapshots" / COMMIT


def fake_checkpoint():
    "An empty file where torchvision keeps the ResNet-50 ImageNet checkpoint."
    f = imagenet_file()
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_bytes(b"")
    return f


def sibling(name, size=1000):
    "A hub file entry as `model_info(files_metadata=True)` lists it."
    return SimpleNamespace(rfilename=name, size=size)


SD_FILES = {  # the layout of the Stable Diffusion 2 repos, with the duplicates a download must skip
    "512-base-ema.ckpt": 5_214_900_000, "512-base-ema.safetensors": 5_214_800_000, "README.md": 9000,
    ".gitattributes": 1500, "model_index.json": 540, "feature_extractor/preprocessor_config.json": 342,
    "scheduler/scheduler_config.json": 346, "tokenizer/merges.txt": 524_619, "tokenizer/vocab.json": 1_059_962,
    "tokenizer/special_tokens_map.json": 460, "tokenizer/tokenizer_config.json": 807,
    "text_encoder/config.json": 633, "text_encoder/model.safetensors": 1_361_600_000,
    "text_encoder/pytorch_model.bin": 1_361_700_000, "text_encoder/model.fp16.safetensors": 680_800_000,
    "unet/config.json": 911, "unet/diffusion_pytorch_model.safetensors": 3_463_700_000,
    "unet/diffusion_pytorch_model.bin": 3_463_800_000, "unet/diffusion_pytorch_model.fp16.safetensors": 1_731_900_000,
    "unet/diffusion_flax_model.msgpack": 3_463_600_000, "vae/config.json": 611,
    "vae/diffusion_pytorch_model.safetensors": 334_600_000, "vae/diffusion_pytorch_model.bin": 334_700_000,
    "text_encoder/model.onnx": 1_361_900_000,
}
SD_KEPT = ["feature_extractor/preprocessor_config.json", "model_index.json", "scheduler/scheduler_config.json",
           "text_encoder/config.json", "text_encoder/model.safetensors", "tokenizer/merges.txt",
           "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
           "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
           "vae/diffusion_pytorch_model.safetensors"]
DETECTOR_FILES = {"config.json": 6000, "model.safetensors": 900_000_000, "preprocessor_config.json": 500,
                  "special_tokens_map.json": 125, "tokenizer.json": 711_000, "tokenizer_config.json": 1200,
                  "vocab.txt": 232_000, "README.md": 4000, ".gitattributes": 1500}
SAM_FILES = {"config.json": 6500, "preprocessor_config.json": 466, "model.safetensors": 2_560_000_000,
             "pytorch_model.bin": 2_560_100_000, "tf_model.h5": 2_560_500_000}


class FakeHub:
    "`HfApi` stand-in: `model_info` answers from `repos` (id -> {file: size}), or raises `error`."

    def __init__(self, repos=None, error=None):
        self.repos, self.error, self.asked = repos or {}, error, []

    def model_info(self, repo_id, files_metadata=False):
        self.asked.append((repo_id, files_metadata))
        if self.error:
            raise self.error
        return SimpleNamespace(siblings=[sibling(n, s) for n, s in self.repos[repo_id].items()])


def paper_hub(cfg):
    "A fake hub holding the repos the paper config names."
    return FakeHub({cfg["generator"]["model"]: SD_FILES, cfg["generator"]["inpaint_model"]: SD_FILES,
                    cfg["segment"]["detector"]: DETECTOR_FILES, cfg["segment"]["sam"]: SAM_FILES})


# ---------------------------------------------------------------------------------------------- required_weights
def test_required_weights_paper(caches, paper):
    entries = required_weights(paper)
    assert [e["key"] for e in entries] == KEYS
    assert [e["source"] for e in entries] == ["hf"] * 4 + ["torchvision"]
    assert [e["id"] for e in entries[:4]] == [paper["generator"]["model"], paper["generator"]["inpaint_model"],
                                              paper["segment"]["detector"], paper["segment"]["sam"]]
    assert entries[0]["id"] == "stabilityai/stable-diffusion-2-base" and entries[0]["what"] == "Stable Diffusion 2 base"
    assert entries[1]["id"] == "stabilityai/stable-diffusion-2-inpainting"
    assert entries[0]["allow_patterns"] == SD_PATTERNS and entries[2]["allow_patterns"] == TRANSFORMERS_PATTERNS
    assert entries[4]["id"] == "ResNet50_Weights.IMAGENET1K_V1"
    assert entries[4]["path"] == str(caches / "torch" / "hub" / "checkpoints" / "resnet50-0676ba61.pth")
    assert entries[0]["path"] == str(caches / "hf" / "hub" / "models--stabilityai--stable-diffusion-2-base")
    assert not any(e["present"] for e in entries)
    for e in entries[:4]:  # what a download skips never matches
        assert not any(p.endswith((".ckpt", ".bin", ".msgpack", ".onnx", ".h5")) or ".fp16." in p
                       for p in e["allow_patterns"])


def test_required_weights_cpu_and_smoke(caches):
    cpu = required_weights(get_config("cpu"))
    assert [(e["key"], e["source"], e["id"], e["present"]) for e in cpu] == [
        ("generator.model", "local", "assets:mini-sd", True),
        ("generator.inpaint_model", "local", "assets:mini-sd-inpaint", True)]
    assert Path(cpu[0]["path"]).is_dir() and Path(cpu[0]["path"]).parent.name == "assets"
    assert required_weights(get_config("smoke")) == []  # trained on the spot, world weights: nothing to fetch
    assert missing_weights(get_config("cpu")) == [] and check_weights(get_config("cpu")) is None


def test_segmenter_models_only_for_langsam(caches):
    cfg = get_config("paper", {"segment.kind": "embedded", "erm.weights": "world"})
    assert [e["key"] for e in required_weights(cfg)] == ["generator.model", "generator.inpaint_model"]


# ------------------------------------------------------------------------------------ missing / check_weights
def test_missing_weights_empty_caches(caches, paper):
    missing = missing_weights(paper)
    assert [e["key"] for e in missing] == KEYS
    with pytest.raises(FileNotFoundError) as info:
        check_weights(paper, "--profile paper")
    lines = str(info.value).splitlines()
    assert len(lines) == 6
    for key, line in zip(KEYS, lines):
        assert line.startswith(f"{key}: ")
    assert paper["generator"]["model"] in lines[0] and str(caches / "hf" / "hub") in lines[0]
    assert "resnet50-0676ba61.pth" in lines[4] and str(caches / "torch") in lines[4]
    assert lines[-1].startswith("get them with: spurnb fetch --profile paper")
    assert "--set generator.model=/path" in lines[-1]


def test_fake_hf_cache_makes_entries_available(caches, paper):
    sd, sam = paper["generator"]["model"], paper["segment"]["sam"]
    fake_snapshot(caches, sd, ["model_index.json"])
    fake_snapshot(caches, sam, ["config.json"])
    fake_snapshot(caches, paper["segment"]["detector"], ["model.safetensors"])  # no config.json: not usable
    fake_checkpoint()
    present = {e["key"]: e["present"] for e in required_weights(paper)}
    assert present == {"generator.model": True, "generator.inpaint_model": False, "segment.detector": False,
                       "segment.sam": True, "erm.weights": True}
    with pytest.raises(FileNotFoundError) as info:
        check_weights(paper)
    assert [line.split(":")[0] for line in str(info.value).splitlines()[:-1]] == ["generator.inpaint_model",
                                                                                 "segment.detector"]
    assert "--set generator.inpaint_model=/path" in str(info.value).splitlines()[-1]


def test_hf_cache_follows_hf_hub_cache(caches, monkeypatch, paper):
    monkeypatch.setenv("HF_HUB_CACHE", str(caches / "elsewhere"))
    assert hf_cache_dir() == caches / "elsewhere"
    entry = required_weights(paper)[0]
    assert not entry["present"]
    repo = caches / "elsewhere" / "models--stabilityai--stable-diffusion-2-base"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    (repo / "snapshots" / COMMIT / "model_index.json").write_text("{}")
    assert is_available(entry)


def test_local_overrides(caches, tmp_path):
    sd = tmp_path / "sd2-base"
    sd.mkdir()
    weights = tmp_path / "resnet50.safetensors"
    weights.write_bytes(b"")
    cfg = get_config("paper", {"generator.model": str(sd), "generator.inpaint_model": str(tmp_path / "no-inpaint"),
                               "erm.weights": str(weights)})
    entries = {e["key"]: e for e in required_weights(cfg)}
    assert entries["generator.model"]["source"] == "local" and entries["generator.model"]["present"]
    assert entries["erm.weights"]["source"] == "local" and entries["erm.weights"]["present"]
    assert entries["generator.inpaint_model"]["source"] == "local" and not entries["generator.inpaint_model"]["present"]
    with pytest.raises(FileNotFoundError) as info:
        check_weights(cfg, fetch_args("paper", {"generator.model": str(sd)}))
    lines = str(info.value).splitlines()
    assert lines[0] == f"generator.inpaint_model: local folder {tmp_path / 'no-inpaint'} does not exist"
    assert "generator.model" not in "\n".join(lines[:-1]) and "erm.weights" not in "\n".join(lines[:-1])
    assert lines[-1].startswith(f"get them with: spurnb fetch --profile paper --set generator.model={sd}")


def test_fetch_args_quotes():
    assert fetch_args("paper") == "--profile paper"
    assert fetch_args("paper", {"erm.epochs": 5, "data.root": "/my data"}) == \
        "--profile paper --set erm.epochs=5 'data.root=/my data'"


# ------------------------------------------------------------------------------------------------ download_plan
def test_download_plan_filters_and_sizes(caches, paper):
    hub = paper_hub(paper)
    plan = download_plan(required_weights(paper), api=hub)
    assert [p["key"] for p in plan] == KEYS and not any(p["approximate"] for p in plan)
    assert all(files_metadata for _, files_metadata in hub.asked) and len(hub.asked) == 4
    assert plan[0]["files"] == SD_KEPT and plan[0]["bytes"] == sum(SD_FILES[f] for f in SD_KEPT)
    assert plan[2]["files"] == ["config.json", "model.safetensors", "preprocessor_config.json",
                                "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"]
    assert plan[3]["files"] == ["config.json", "model.safetensors", "preprocessor_config.json"]
    assert plan[4]["files"] == ["resnet50-0676ba61.pth"] and plan[4]["bytes"] == round(97.781 * 2**20)


def test_download_plan_takes_bin_without_safetensors(caches, paper):
    cfg = get_config("paper", {"segment.sam": "someone/old-sam"})
    hub = paper_hub(paper)
    hub.repos["someone/old-sam"] = {"config.json": 10, "pytorch_model.bin": 375_000_000, "tf_model.h5": 375_000_000}
    sam = download_plan(required_weights(cfg), api=hub)[3]
    assert sam["files"] == ["config.json", "pytorch_model.bin"] and sam["bytes"] == 375_000_010
    assert sam["allow_patterns"] == ["*.json", "*.txt", "pytorch_model.bin"]
    assert sam["what"] == "box-prompted segmenter (transformers)"  # an id spurnb does not know by name


def test_download_plan_skips_present_and_local(caches, paper, tmp_path):
    fake_checkpoint()
    cfg = get_config("paper", {"generator.inpaint_model": str(tmp_path)})
    plan = download_plan(required_weights(cfg), api=paper_hub(paper))
    assert [p["key"] for p in plan] == ["generator.model", "segment.detector", "segment.sam", "erm.weights"]
    assert plan[-1]["present"] and plan[-1]["bytes"] == 0


def test_download_plan_without_hub_is_approximate(caches, paper):
    plan = download_plan(required_weights(paper), api=FakeHub(error=ConnectionError("Max retries exceeded")))
    assert [p["approximate"] for p in plan] == [True] * 4 + [False]
    assert [p["bytes"] for p in plan[:4]] == [KNOWN_SIZES[p["id"]] for p in plan[:4]]


def test_download_plan_unknown_repo(caches, paper):
    from huggingface_hub.errors import RepositoryNotFoundError

    class Missing:
        def model_info(self, repo_id, files_metadata=False):
            raise RepositoryNotFoundError("404 Client Error", response=SimpleNamespace(status_code=404, headers={},
                                                                                       request=None, url=""))

    cfg = get_config("paper", {"generator.model": "nobody/nothing"})
    try:
        download_plan(required_weights(cfg)[:1], api=Missing())
    except FileNotFoundError as e:
        assert str(e).startswith("generator.model: the Hugging Face hub has no model 'nobody/nothing'")
    except TypeError:  # this huggingface_hub builds its HTTP errors differently: the branch is covered by reading
        pytest.skip("cannot construct RepositoryNotFoundError here")


def test_human_size():
    assert [human_size(n) for n in (None, 12, 1234, 97_800_000, 375_000_000, 5_162_000_000)] == \
        ["?", "12 B", "1.2 kB", "97.8 MB", "375 MB", "5.16 GB"]


# ------------------------------------------------------------------------------------------------------- fetch
def test_fetch_prints_plan_before_downloading(caches, paper, capsys):
    fake_checkpoint()  # present: skipped
    calls = []

    def downloader(entry):
        out = capsys.readouterr().out  # what was printed before this download
        if not calls:
            assert "total to download: " in out and "5.16 GB" in out and "present" in out
        calls.append(entry)
        return Path(entry["path"])

    paths = fetch(paper, api=paper_hub(paper), downloader=downloader)
    assert [c["key"] for c in calls] == KEYS[:4]
    assert calls[0]["allow_patterns"] == SD_PATTERNS and calls[2]["allow_patterns"] == TRANSFORMERS_PATTERNS
    assert paths == [Path(c["path"]) for c in calls]


def test_fetch_total_line(caches, paper, capsys):
    fetch(paper, api=paper_hub(paper), downloader=lambda e: Path(e["path"]), dry_run=False)
    out = capsys.readouterr().out
    sd = sum(SD_FILES[f] for f in SD_KEPT)
    total = 2 * sd + sum(v for k, v in DETECTOR_FILES.items() if not k.startswith((".", "README"))) + \
        SAM_FILES["config.json"] + SAM_FILES["preprocessor_config.json"] + SAM_FILES["model.safetensors"] + \
        round(97.781 * 2**20)
    assert f"total to download: {human_size(total)} in 5 model(s), 37 files" in out


def test_fetch_dry_run_and_nothing_to_do(caches, paper, capsys):
    called = []
    assert fetch(paper, api=paper_hub(paper), downloader=called.append, dry_run=True) == []
    assert not called and "total to download" in capsys.readouterr().out
    assert fetch(get_config("cpu"), downloader=called.append) == [] and not called
    assert "nothing to fetch" in capsys.readouterr().out


def test_fetch_asks_unless_yes(caches, paper, monkeypatch, capsys):
    called = []
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert fetch(paper, yes=False, api=paper_hub(paper), downloader=called.append) == [] and not called
    assert "nothing downloaded" in capsys.readouterr().out


@pytest.mark.parametrize("error", [
    ConnectionError("HTTPSConnectionPool(host='huggingface.co', port=443): Max retries exceeded\nwith url: /api"),
    TimeoutError("timed out"),
])
def test_fetch_connection_error_is_one_line(caches, paper, error):
    def downloader(entry):
        raise error

    with pytest.raises(ConnectionError) as info:
        fetch(paper, api=FakeHub(error=ConnectionError("offline")), downloader=downloader)
    message = str(info.value)
    assert "\n" not in message and info.value.__cause__ is None and info.value.__suppress_context__
    assert message.startswith("could not reach the Hugging Face hub for Stable Diffusion 2 base "
                              "(stabilityai/stable-diffusion-2-base, generator.model)")


def test_fetch_huggingface_offline_errors(caches, paper):
    from huggingface_hub.errors import LocalEntryNotFoundError

    def downloader(entry):
        raise LocalEntryNotFoundError("Got: ConnectError: [Errno -3] Temporary failure in name resolution\n"
                                      "An error happened while trying to locate the files on the Hub.")

    with pytest.raises(ConnectionError, match="^could not reach .*Stable Diffusion 2 base.*name resolution$"):
        fetch(paper, api=paper_hub(paper), downloader=downloader)


def test_fetch_real_downloader_offline(caches, paper, monkeypatch):
    "With HF_HUB_OFFLINE, the real huggingface_hub download fails at once, in one line."
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConnectionError) as info:
        fetch(paper)
    assert "\n" not in str(info.value) and "stabilityai/stable-diffusion-2-base" in str(info.value)


def test_fetch_other_errors_are_runtime_errors(caches, paper):
    def downloader(entry):
        raise OSError(28, "No space left on device")

    with pytest.raises(RuntimeError, match="^could not download Stable Diffusion 2 base .*No space left"):
        fetch(paper, api=paper_hub(paper), downloader=downloader)


def test_fetch_refuses_missing_local_path(caches, tmp_path):
    cfg = get_config("paper", {"segment.sam": str(tmp_path / "sam")})
    with pytest.raises(FileNotFoundError, match="segment.sam: local folder .*sam does not exist"):
        fetch(cfg, downloader=lambda e: pytest.fail("nothing may be downloaded"))


# -------------------------------------------------------------------------------------------------------- main
def test_main_dry_run(caches, paper, capsys):
    assert main(["--profile", "paper", "--dry-run"], api=paper_hub(paper),
                downloader=lambda e: pytest.fail("a dry run downloads nothing")) == 0
    out = capsys.readouterr().out
    assert "total to download: " in out and "37 files" in out


def test_main_accepts_leading_fetch_and_repeated_set(caches, paper, capsys, tmp_path):
    assert main(["fetch", "--set", f"generator.model={tmp_path}", "--set", "segment.kind=embedded", "--dry-run"],
                api=paper_hub(paper)) == 0
    out = capsys.readouterr().out
    assert "Stable Diffusion 2 inpainting" in out and "Stable Diffusion 2 base" not in out and "SAM" not in out


@pytest.mark.parametrize("argv, words", [
    (["--set", "generator.nope=1"], ["unknown config key", "generator.nope"]),
    (["--set", "generator.model"], ["key=value"]),
])
def test_main_bad_input_exits_2(caches, capsys, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("spurnb fetch: error: ")
    assert all(w in err for w in words)


def test_main_bad_profile_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--profile", "huge"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "invalid choice" in err


def test_main_download_failure_exits_1(caches, paper, capsys):
    def downloader(entry):
        raise ConnectionError("Failed to establish a new connection: [Errno 111] Connection refused")

    assert main(["--profile", "paper", "--yes"], api=paper_hub(paper), downloader=downloader) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Stable Diffusion 2 base" in err and "Traceback" not in err
