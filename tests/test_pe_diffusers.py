"""PE API ``diffusers`` (methods/pe_diffusers.py) on tiny random UNets saved to disk: no network, no hub."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("diffusers")
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel  # noqa: E402

from dpgen_bench.data.types import DatasetInfo  # noqa: E402
from dpgen_bench_methods.pe_api import PE_APIS, Population  # noqa: E402
from dpgen_bench_methods.pe_diffusers import DiffusersAPI, PEWeightsMissing  # noqa: E402

STEPS = 4
GREY = DatasetInfo("grey12", channels=1, height=12, width=12, num_classes=3)
RGB = DatasetInfo("rgb8", channels=3, height=8, width=8, num_classes=3)


def tiny_unet(in_channels: int = 3, num_class_embeds: int | None = None, seed: int = 0,
              sample_size: int = 8) -> UNet2DModel:
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=sample_size, in_channels=in_channels, out_channels=in_channels, layers_per_block=1,
                       block_out_channels=(8, 16), down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4, attention_head_dim=4,
                       num_class_embeds=num_class_embeds)


def save_pipeline(folder, clip_sample: bool = True, **unet_kwargs) -> str:
    scheduler = DDPMScheduler(num_train_timesteps=1000, clip_sample=clip_sample)
    DDPMPipeline(unet=tiny_unet(**unet_kwargs), scheduler=scheduler).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory) -> str:
    return save_pipeline(tmp_path_factory.mktemp("tiny-ddpm"))


@pytest.fixture(scope="module")
def cond_dir(tmp_path_factory) -> str:
    return save_pipeline(tmp_path_factory.mktemp("tiny-cond-ddpm"), num_class_embeds=3)


def api_for(model: str, info: DatasetInfo = GREY, **options) -> DiffusersAPI:
    return DiffusersAPI(info, model=model, num_inference_steps=STEPS, **options)


def unlabelled(n: int) -> torch.Tensor:
    return torch.full((n,), -1, dtype=torch.long)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registered_and_unconditional(pipe_dir):
    assert PE_APIS.get("diffusers") is DiffusersAPI
    assert DiffusersAPI.conditional is True  # may be, before a model is loaded
    api = api_for(pipe_dir)
    assert api.conditional is False
    text = api.describe()
    assert pipe_dir in text and "DDIM" in text and f"{STEPS} steps" in text


@pytest.mark.parametrize("info", [GREY, RGB], ids=["grey-12x12", "rgb-8x8"])
def test_random_shapes_range_and_seed(pipe_dir, info):
    api = api_for(pipe_dir, info, batch_size=4)
    rng_before = torch.random.get_rng_state()
    pop = api.random(unlabelled(6), gen(0))
    assert torch.equal(torch.random.get_rng_state(), rng_before), "the global RNG was used"
    assert pop.images.shape == (6, *info.shape) and pop.images.dtype == torch.float32
    assert pop.images.device.type == "cpu"
    assert pop.images.min() >= 0 and pop.images.max() <= 1 and pop.images.std() > 0
    assert pop.state.shape == (6, 3, 8, 8) and pop.state.min() >= 0 and pop.state.max() <= 1
    assert torch.equal(pop.labels, unlabelled(6))
    if info is RGB:  # same size and channels as the model: images are the state itself
        assert torch.equal(pop.images, pop.state)
    else:  # RGB → grey luminance, then 8 → 12 bilinear
        grey = (pop.state * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        expected = F.interpolate(grey, size=(12, 12), mode="bilinear", align_corners=False, antialias=True)
        assert torch.allclose(pop.images, expected.clamp(0, 1), atol=1e-6)

    again = api.random(unlabelled(6), gen(0))
    assert torch.equal(again.images, pop.images) and torch.equal(again.state, pop.state)
    other = api.random(unlabelled(6), gen(1))
    assert (other.state - pop.state).abs().mean() > 0.05
    assert (pop.state[0] - pop.state[1]).abs().mean() > 0.05  # the samples differ from one another


def test_batch_size_invariance_and_range_without_clipping(tmp_path):
    """A grey 6×6 model (36 values a sample: per-batch draws from the generator would not concatenate to one
    draw) whose scheduler does not clip x0: results do not depend on batch_size and still lie in [0, 1]."""
    folder = save_pipeline(tmp_path / "grey6", clip_sample=False, in_channels=1, sample_size=6)
    info = DatasetInfo("grey6", channels=1, height=6, width=6, num_classes=1)
    small, large = api_for(folder, info, batch_size=3), api_for(folder, info, batch_size=64)
    pop = small.random(unlabelled(7), gen(0))
    assert torch.allclose(large.random(unlabelled(7), gen(0)).state, pop.state, atol=1e-5)
    assert torch.allclose(large.variation(pop, 0.5, gen(1)).state, small.variation(pop, 0.5, gen(1)).state, atol=1e-5)
    assert pop.state.min() >= 0 and pop.state.max() <= 1 and pop.images.min() >= 0 and pop.images.max() <= 1


def test_variation_shapes_seed_and_strength(pipe_dir):
    api = api_for(pipe_dir, GREY, batch_size=8)
    pop = api.random(unlabelled(8), gen(0))
    rng_before = torch.random.get_rng_state()
    near = api.variation(pop, 0.25, gen(5))
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert near.images.shape == pop.images.shape and near.state.shape == pop.state.shape
    assert near.images.dtype == torch.float32 and near.images.min() >= 0 and near.images.max() <= 1
    assert torch.equal(near.labels, pop.labels)
    assert torch.equal(api.variation(pop, 0.25, gen(5)).state, near.state)
    assert not torch.equal(api.variation(pop, 0.25, gen(6)).state, near.state)
    assert not torch.equal(near.state, pop.state)  # even the weakest variation changes the image

    far = api.variation(pop, 1.0, gen(5))
    d_near = (near.state - pop.state).abs().mean().item()
    d_far = (far.state - pop.state).abs().mean().item()
    assert d_near < d_far / 3, (d_near, d_far)
    # strength 1 is almost a fresh sample: about as far from the parent as an unrelated sample is
    d_fresh = (api.random(unlabelled(8), gen(9)).state - pop.state).abs().mean().item()
    assert d_far > 0.5 * d_fresh, (d_far, d_fresh)

    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"strength must be in \(0, 1\]"):
            api.variation(pop, bad, gen(0))


def test_variation_from_dataset_space_state(pipe_dir):
    """A population whose state is dataset images (grey 12×12 in [0, 1]) is taken to model space first."""
    api = api_for(pipe_dir, GREY)
    images = torch.rand((3, 1, 12, 12), generator=gen(3))
    out = api.variation(Population(images, unlabelled(3), images), 0.25, gen(0))
    assert out.state.shape == (3, 3, 8, 8) and out.images.shape == (3, 1, 12, 12)
    assert (out.images - images).abs().mean() < (api.random(unlabelled(3), gen(0)).images - images).abs().mean()
    with pytest.raises(ValueError, match="neither the model's"):
        api.variation(Population(images, unlabelled(3), torch.zeros(3, 5)), 0.5, gen(0))


def test_labelled_request_to_unconditional_model(pipe_dir):
    api = api_for(pipe_dir)
    with pytest.raises(ValueError, match=r"unconditional.*labelled: false"):
        api.random(torch.tensor([0, 1, -1]), gen(0))
    pop = api.random(unlabelled(2), gen(0))
    with pytest.raises(ValueError, match="unconditional"):
        api.variation(Population(pop.images, torch.tensor([0, 1]), pop.state), 0.5, gen(0))


def test_class_conditional_unet(cond_dir):
    api = api_for(cond_dir, RGB)
    assert api.conditional is True
    labels = torch.tensor([0, 1, 2, 0])
    pop = api.random(labels, gen(0))
    assert torch.equal(pop.labels, labels) and pop.images.shape == (4, *RGB.shape)
    # same noise, other classes: the class embedding reaches the UNet
    other = api.random(torch.tensor([1, 2, 0, 1]), gen(0))
    assert (other.state - pop.state).abs().mean() > 1e-3
    assert torch.equal(api.variation(pop, 0.5, gen(1)).labels, labels)
    assert api.random(unlabelled(3), gen(0)).labels.tolist() == [-1, -1, -1]
    with pytest.raises(ValueError, match="outside"):
        api.random(torch.tensor([3]), gen(0))

    five_classes = DatasetInfo("rgb8-5", channels=3, height=8, width=8, num_classes=5)
    mismatched = api_for(cond_dir, five_classes)
    assert mismatched.conditional is False
    with pytest.raises(ValueError, match="labelled: false"):
        mismatched.random(torch.tensor([0]), gen(0))


def test_missing_local_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(PEWeightsMissing, match="could not be found") as err:
        api_for(str(missing))
    assert str(missing) in str(err.value) and "save_pretrained" in str(err.value)
    assert isinstance(err.value, FileNotFoundError)


def test_local_folder_without_weights_or_layout(tmp_path, pipe_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PEWeightsMissing, match="scheduler_config.json"):
        api_for(str(empty))
    broken = tmp_path / "no-weights"
    save_pipeline(broken)
    for f in (broken / "unet").glob("diffusion_pytorch_model.*"):
        f.unlink()
    with pytest.raises(PEWeightsMissing, match="no-weights"):
        api_for(str(broken))


def test_flat_unet_folder_with_scheduler_config(tmp_path):
    """A UNet2DModel.save_pretrained folder with the scheduler's config beside it loads too."""
    flat = tmp_path / "flat"
    tiny_unet().save_pretrained(flat)
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(flat)
    assert api_for(str(flat), RGB).random(unlabelled(2), gen(0)).images.shape == (2, 3, 8, 8)


def test_hub_name_offline_is_clear_and_never_downloads(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []
    real = huggingface_hub.snapshot_download

    def spy(*args, **kwargs):
        calls.append(kwargs.get("local_files_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", spy)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PEWeightsMissing) as err:
        DiffusersAPI(RGB, model="google/ddpm-cifar10-32", cache_dir=str(tmp_path / "hf-cache"))
    message = str(err.value)
    assert "'google/ddpm-cifar10-32'" in message and "could not be found locally or downloaded" in message
    assert "HF_HUB_OFFLINE" in message and "~/.cache/huggingface" in message and "save_pretrained" in message
    assert calls == [True], "offline: only the cache may be looked at"


@pytest.mark.filterwarnings("ignore:The `local_dir_use_symlinks` argument is deprecated")
def test_hub_name_loads_from_cache_offline(tmp_path, monkeypatch, pipe_dir):
    """A hub repo already in the HF cache loads with HF_HUB_OFFLINE=1 (no network touched)."""
    import shutil

    cache = tmp_path / "hf-cache"
    commit = "0" * 40
    repo = cache / "models--someone--tiny-ddpm"
    shutil.copytree(pipe_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    api = DiffusersAPI(RGB, model="someone/tiny-ddpm", num_inference_steps=STEPS, cache_dir=str(cache))
    assert "someone/tiny-ddpm" in api.describe()
    local = api_for(pipe_dir, RGB).random(unlabelled(2), gen(0))
    assert torch.equal(api.random(unlabelled(2), gen(0)).state, local.state)


def test_refused_models_and_options(tmp_path, pipe_dir):
    grey_model = save_pipeline(tmp_path / "grey", in_channels=1)
    with pytest.raises(ValueError, match="grey images but dataset 'rgb8' is RGB"):
        api_for(grey_model, RGB)
    assert api_for(grey_model, GREY).random(unlabelled(1), gen(0)).images.shape == (1, 1, 12, 12)
    latent = save_pipeline(tmp_path / "latent", in_channels=4)
    with pytest.raises(ValueError, match="in_channels=4"):
        api_for(latent, RGB)
    with pytest.raises(ValueError, match="needs option model"):
        DiffusersAPI(RGB)
    with pytest.raises(ValueError, match="no option"):
        api_for(pipe_dir, RGB, guidance=2.0)
    with pytest.raises(ValueError, match="num_inference_steps"):
        DiffusersAPI(RGB, model=pipe_dir, num_inference_steps=0)
    # the scheduler config is read from the pipeline folder: DDIM with the saved noise schedule
    config = json.loads((tmp_path / "grey" / "scheduler" / "scheduler_config.json").read_text())
    assert api_for(grey_model, GREY).scheduler.config.num_train_timesteps == config["num_train_timesteps"]


def test_import_without_diffusers_and_install_hint(pipe_dir, monkeypatch):
    code = (
        "import sys; sys.modules['diffusers'] = None\n"
        "import dpgen_bench_methods.pe_api, dpgen_bench_methods.pe_diffusers as m\n"
        "from dpgen_bench.data.types import DatasetInfo\n"
        "try:\n"
        "    m.DiffusersAPI(DatasetInfo('x', 3, 8, 8, 1), model='x')\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install 'dpgen-bench[diffusers]'" in out.stdout


def test_labelled_pe_with_an_unconditional_model_is_refused_before_any_vote(pipe_dir):
    from dpgen_bench.context import RunContext
    from dpgen_bench_methods.private_evolution import PrivateEvolution

    config = {"api": {"name": "diffusers", "options": {"model": pipe_dir, "num_inference_steps": STEPS}},
              "population": 6, "iterations": 1, "extractor": "random-cnn"}
    pe = PrivateEvolution(config, GREY, context=RunContext(progress=False))
    with pytest.raises(ValueError, match="cannot generate class-conditionally: set class_conditioning: votes or labelled: false"):
        pe.api
    unlabelled_pe = PrivateEvolution({**config, "labelled": False}, GREY, context=RunContext(progress=False))
    assert unlabelled_pe.api.conditional is False
