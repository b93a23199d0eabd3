"""The contract conformance suite: what the :class:`~dpgen_bench.method.GenerativeMethod` interface promises,
checked on any method without knowing anything about it beyond that interface (the privacy suite is
:mod:`.checks`).

On tiny synthetic datasets of every shape the method's capabilities accept (``capabilities_for`` the suite's
config; grey 28×28, RGB 32×32, grey 8×8; 3 classes), with the defaults plus ``conformance_config``, fitted at
ε = 10 and at ε = ∞:

* :func:`check_construction` — the defaults and ``conformance_config`` build, the instance keeps the dataset
  info and seed, ``samples_labelled`` is a bool the capabilities allow;
* :func:`check_fit_ledger` — a private fit records its releases, a non-private one records nothing;
* :func:`check_samples` — ``sample(n)``: (n, C, H, W) float32 on the CPU, finite, in [0, 1]; int64 labels of
  shape (n,), class-balanced in [0, K) for a labelled model, all -1 otherwise;
* :func:`check_given_labels` — given labels come back unchanged;
* :func:`check_determinism` — equal seeds give identical samples (also after other calls, and ``seed=None``
  is the method's seed), different seeds different ones;
* :func:`check_empty_sample` — ``sample(0)`` returns empty tensors of the right shapes;
* :func:`check_bad_sample_input` — n < 0, labels of the wrong shape or out of range, labels for an
  unlabelled model: ``ValueError``;
* :func:`check_round_trip` — ``save`` then ``load`` (from a copy of the folder alone) samples identically for
  the same seed, keeps config, info and seed, and the checkpoint holds no training image;
* :func:`check_refuses_unsupported` — a dataset shape outside the capabilities is refused at construction with
  a ``ValueError`` naming the offending channel count or size.

Every check raises :class:`ContractError` (an ``AssertionError``) naming what broke.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import torch

from ..context import RunContext
from ..data.types import DatasetInfo, ImageDataset
from ..method import Capabilities, GenerativeMethod, build_config
from ..privacy.budget import PrivacyBudget
from ..privacy.ledger import PrivacyLedger
from .checks import ConformanceError, tensors_in

SHAPES: dict[str, tuple[int, int, int]] = {"grey28": (1, 28, 28), "rgb32": (3, 32, 32), "grey8": (1, 8, 8)}
"""The dataset shapes (C, H, W) the suite tries, where the capabilities accept them."""
NUM_CLASSES = 3
TRAIN_SIZE = 48
DELTA = 1e-5
PRIVATE_EPSILON = 10.0
EPSILONS: tuple[float, ...] = (PRIVATE_EPSILON, math.inf)
N_SAMPLES = 2 * NUM_CLASSES + 1
"""Not a multiple of the class count, so balanced labels cannot all have equal counts."""
CONTEXT = RunContext(progress=False)

T = TypeVar("T")


class ContractError(ConformanceError):
    """A method breaks the interface contract the suite checks; the message says which and how."""


# ------------------------------------------------------------------------------------------------ data


def contract_info(shape: str | tuple[int, int, int], num_classes: int = NUM_CLASSES) -> DatasetInfo:
    """The public info of a tiny dataset of ``shape`` (a key of :data:`SHAPES` or (C, H, W))."""
    c, h, w = SHAPES[shape] if isinstance(shape, str) else shape
    return DatasetInfo("contract", c, h, w, num_classes, tuple(f"class{k}" for k in range(num_classes)))


def capabilities_of(method: type[GenerativeMethod]) -> Capabilities:
    """What the method supports with the suite's config (defaults plus ``conformance_config``)."""
    capabilities_for = getattr(method, "capabilities_for", None)
    if capabilities_for is None:
        return method.capabilities
    return capabilities_for(build_config(method.Config, dict(method.conformance_config)))


def supported_shapes(method: type[GenerativeMethod]) -> list[str]:
    """The keys of :data:`SHAPES` the method's capabilities accept; if none, one (C, H, W) they do, named
    like ``c3s64``, so every method is checked on at least one shape."""
    shapes = [key for key, shape in SHAPES.items() if _accepts(method, shape)]
    if not shapes:
        caps = capabilities_of(method)
        c, s = caps.channels[0], caps.image_sizes[0] if caps.image_sizes else 28
        shapes = [f"c{c}s{s}"]
    return shapes


def shape_of(key: str) -> tuple[int, int, int]:
    """(C, H, W) of a key of :func:`supported_shapes`."""
    if key in SHAPES:
        return SHAPES[key]
    c, s = key[1:].split("s")
    return int(c), int(s), int(s)


def unsupported_shapes(method: type[GenerativeMethod]) -> list[tuple[str, tuple[int, int, int]]]:
    """Shapes outside the capabilities, each with what is wrong with it (``"channels"`` or ``"size"``): a
    channel count the method does not list (at a size it does), and a square size it does not list (with a
    channel count it does) when it restricts sizes."""
    caps = capabilities_of(method)
    c_ok = caps.channels[0]
    s_ok = caps.image_sizes[0] if caps.image_sizes else 28
    out: list[tuple[str, tuple[int, int, int]]] = []
    bad_c = next((c for c in (3, 1, 2, 4) if c not in caps.channels), None)
    if bad_c is not None:
        out.append(("channels", (bad_c, s_ok, s_ok)))
    if caps.image_sizes is not None:
        bad_s = next((s for s in (16, 8, 28, 32, 64, 20, 24) if s not in caps.image_sizes), max(caps.image_sizes) + 1)
        out.append(("size", (c_ok, bad_s, bad_s)))
    return out


def _accepts(method: type[GenerativeMethod], shape: tuple[int, int, int]) -> bool:
    try:
        capabilities_of(method).check(contract_info(shape))
    except ValueError:
        return False
    return True


def tiny_data(info: DatasetInfo, n: int = TRAIN_SIZE, seed: int = 0) -> ImageDataset:
    """``n`` random images in [0, 1] with class-dependent brightness, balanced labels, declared size ``n``."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % info.num_classes
    shift = labels.view(-1, 1, 1, 1).float() / (2.0 * info.num_classes)
    images = (torch.rand(n, *info.shape, generator=gen) * 0.5 + shift).clamp(0, 1)
    return ImageDataset(images, labels, info, split="train", nominal_size=n)


def build(method: type[GenerativeMethod], info: DatasetInfo, seed: int = 0) -> GenerativeMethod:
    """The method with its defaults plus ``conformance_config``, quiet, on the CPU."""
    return method(dict(method.conformance_config), info, seed=seed, context=CONTEXT)


def fit_tiny(
    method: type[GenerativeMethod], shape: str, epsilon: float, seed: int = 0
) -> tuple[GenerativeMethod, PrivacyLedger, ImageDataset]:
    """Build and fit the method on :func:`tiny_data` of ``shape`` at (``epsilon``, :data:`DELTA`)."""
    info = contract_info(shape_of(shape))
    data = tiny_data(info)
    instance = build(method, info, seed=seed)
    ledger = PrivacyLedger()
    budget = PrivacyBudget(epsilon, DELTA)
    _call(f"{_name(method)}: fit at epsilon={epsilon} on {info.shape}", lambda: instance.fit(data, budget, ledger))
    return instance, ledger, data


# ------------------------------------------------------------------------------------------------ helpers


def _name(method: GenerativeMethod | type[GenerativeMethod]) -> str:
    cls = method if isinstance(method, type) else type(method)
    return cls.name or cls.__name__


def _call(what: str, fn: Callable[[], T]) -> T:
    """Run ``fn``; an exception other than a contract failure becomes one naming ``what``."""
    try:
        return fn()
    except AssertionError:
        raise
    except Exception as exc:
        raise ContractError(f"{what} raised {type(exc).__name__}: {exc}") from exc


def _sample(instance: GenerativeMethod, n: int, labels: torch.Tensor | None = None, seed: int | None = None):
    what = f"{_name(instance)}.sample({n}{', labels=...' if labels is not None else ''}, seed={seed})"
    out = _call(what, lambda: instance.sample(n, labels=labels, seed=seed))
    if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
        raise ContractError(f"{what} must return (images, labels) tensors, got {type(out).__name__}")
    return out


def _fixed_labels(instance: GenerativeMethod, n: int) -> torch.Tensor:
    return torch.arange(n, dtype=torch.long).flip(0) % instance.info.num_classes


# ------------------------------------------------------------------------------------------------ checks


def check_construction(method: type[GenerativeMethod], info: DatasetInfo, seed: int = 3) -> None:
    """The defaults alone and the defaults plus ``conformance_config`` construct on ``info``; the instance keeps
    ``info``, ``seed`` and the context, and ``samples_labelled`` is a bool the capabilities allow."""
    name = _name(method)
    for label, config in (("the default config", None), ("conformance_config", dict(method.conformance_config))):
        instance = _call(f"{name}({label}) on {info.shape}", lambda: method(config, info, seed=seed, context=CONTEXT))
        if instance.info != info or instance.seed != seed:
            raise ContractError(f"{name}({label}): the instance has info={instance.info}, seed={instance.seed}; "
                                f"expected {info}, {seed}")
        if instance.context != CONTEXT:
            raise ContractError(f"{name}({label}) did not keep the RunContext it was given")
        labelled = instance.samples_labelled
        if not isinstance(labelled, bool):
            raise ContractError(f"{name}.samples_labelled must be a bool, got {labelled!r}")
        caps = capabilities_of(method)
        if (labelled and not caps.labelled) or (not labelled and not caps.unlabelled):
            raise ContractError(f"{name}: samples_labelled={labelled} contradicts capabilities "
                                f"labelled={caps.labelled}, unlabelled={caps.unlabelled}")


def check_fit_ledger(instance: GenerativeMethod, ledger: PrivacyLedger, epsilon: float) -> None:
    """A private fit records what it released; a non-private (ε = ∞) fit records nothing."""
    if math.isinf(epsilon) and len(ledger):
        raise ContractError(f"{_name(instance)}: a non-private fit (epsilon=inf) recorded {len(ledger)} release(s); "
                            f"the reference run must add no noise and record nothing")
    if not math.isinf(epsilon) and not len(ledger):
        raise ContractError(f"{_name(instance)}: a private fit (epsilon={epsilon}) recorded nothing")


def check_samples(instance: GenerativeMethod, n: int = N_SAMPLES, seed: int | None = 1) -> None:
    """``sample(n)``: images (n, C, H, W) float32 on the CPU, finite, in [0, 1]; labels int64 of shape (n,),
    class-balanced in [0, K) (counts differ by at most one) for a labelled model, all -1 otherwise."""
    name = _name(instance)
    images, labels = _sample(instance, n, seed=seed)
    expected = (n, *instance.info.shape)
    if tuple(images.shape) != expected:
        raise ContractError(f"{name}.sample({n}) images have shape {tuple(images.shape)}, expected {expected}")
    if images.dtype != torch.float32:
        raise ContractError(f"{name}.sample({n}) images are {images.dtype}, expected torch.float32")
    if images.device.type != "cpu":
        raise ContractError(f"{name}.sample({n}) images are on {images.device}, expected the CPU")
    if not bool(torch.isfinite(images).all()):
        raise ContractError(f"{name}.sample({n}) returned {int((~torch.isfinite(images)).sum())} non-finite pixel(s)")
    if n and (float(images.min()) < 0.0 or float(images.max()) > 1.0):
        raise ContractError(f"{name}.sample({n}) pixels range over [{float(images.min()):.4g}, "
                            f"{float(images.max()):.4g}], outside [0, 1]")
    _check_labels(instance, labels, n, f"{name}.sample({n})")
    if instance.samples_labelled and n:
        k = instance.info.num_classes
        if int(labels.min()) < 0 or int(labels.max()) >= k:
            raise ContractError(f"{name}.sample({n}) labels range over [{int(labels.min())}, {int(labels.max())}], "
                                f"outside [0, {k})")
        counts = torch.bincount(labels, minlength=k)
        if int(counts.max() - counts.min()) > 1:
            raise ContractError(f"{name}.sample({n}) labels are not class-balanced: counts {counts.tolist()}")
    elif not instance.samples_labelled and bool((labels != -1).any()):
        raise ContractError(f"{name} samples unlabelled (samples_labelled=False) but sample({n}) returned labels "
                            f"{labels.unique().tolist()}, expected all -1")


def _check_labels(instance: GenerativeMethod, labels: torch.Tensor, n: int, what: str) -> None:
    if labels.dtype != torch.int64 or tuple(labels.shape) != (n,) or labels.device.type != "cpu":
        raise ContractError(f"{what} labels are {labels.dtype} of shape {tuple(labels.shape)} on {labels.device}, "
                            f"expected torch.int64 of shape ({n},) on the CPU")


def check_given_labels(instance: GenerativeMethod, n: int = N_SAMPLES) -> None:
    """A labelled model returns exactly the labels it was given (a model that samples unlabelled: nothing to do)."""
    if not instance.samples_labelled:
        return
    given = _fixed_labels(instance, n)
    images, labels = _sample(instance, n, labels=given.clone(), seed=2)
    _check_labels(instance, labels, n, f"{_name(instance)}.sample({n}, labels=...)")
    if not torch.equal(labels, given):
        raise ContractError(f"{_name(instance)}.sample({n}, labels={given.tolist()}) returned labels {labels.tolist()}")
    if tuple(images.shape) != (n, *instance.info.shape):
        raise ContractError(f"{_name(instance)}.sample({n}, labels=...) images have shape {tuple(images.shape)}")


def check_determinism(instance: GenerativeMethod, n: int = N_SAMPLES) -> None:
    """Equal seeds give identical images and labels — also after sampling with other seeds in between, and
    ``seed=None`` means the method's own seed — and different seeds give different images (for a labelled
    model, at the same given labels, so a seed that only shuffles the labels does not count)."""
    name = _name(instance)
    first = _sample(instance, n, seed=5)
    _sample(instance, n + 3, seed=6)  # anything consumed here must not shift the next draw
    again = _sample(instance, n, seed=5)
    for what, a, b in (("images", first[0], again[0]), ("labels", first[1], again[1])):
        if not torch.equal(a, b):
            raise ContractError(f"{name}: two sample({n}, seed=5) calls returned different {what}; all randomness "
                                f"must come from the generator sample() passes to generate()")
    own, explicit = _sample(instance, n), _sample(instance, n, seed=instance.seed)
    if not (torch.equal(own[0], explicit[0]) and torch.equal(own[1], explicit[1])):
        raise ContractError(f"{name}: sample({n}) differs from sample({n}, seed={instance.seed}) (the method's seed)")
    labels = _fixed_labels(instance, n) if instance.samples_labelled else None
    a = _sample(instance, n, labels=labels, seed=5)[0]
    b = _sample(instance, n, labels=labels, seed=7)[0]
    if torch.equal(a, b):
        raise ContractError(f"{name}: sample({n}, seed=5) and sample({n}, seed=7) returned identical images"
                            f"{' for the same labels' if labels is not None else ''}; the seed has no effect")


def check_empty_sample(instance: GenerativeMethod) -> None:
    """``sample(0)`` works and returns images (0, C, H, W) float32 and labels (0,) int64."""
    images, labels = _sample(instance, 0)
    if tuple(images.shape) != (0, *instance.info.shape) or images.dtype != torch.float32:
        raise ContractError(f"{_name(instance)}.sample(0) images are {images.dtype} of shape {tuple(images.shape)}, "
                            f"expected torch.float32 of shape {(0, *instance.info.shape)}")
    _check_labels(instance, labels, 0, f"{_name(instance)}.sample(0)")


def _expect_value_error(instance: GenerativeMethod, what: str, fn: Callable[[], Any]) -> None:
    try:
        fn()
    except ValueError:
        return
    except Exception as exc:
        raise ContractError(f"{_name(instance)}: {what} raised {type(exc).__name__} ({exc}), expected ValueError") from exc
    raise ContractError(f"{_name(instance)}: {what} was accepted; it must raise ValueError")


def check_bad_sample_input(instance: GenerativeMethod, n: int = N_SAMPLES) -> None:
    """``sample`` refuses with ``ValueError``: n = -1; and for a labelled model labels of shape (n + 1,) and
    (n, 1), labels = K and labels = -1; for an unlabelled model any labels."""
    _expect_value_error(instance, "sample(-1)", lambda: instance.sample(-1))
    k = instance.info.num_classes
    if not instance.samples_labelled:
        _expect_value_error(instance, "sample(n, labels=...) for a model that samples unlabelled",
                            lambda: instance.sample(n, labels=torch.zeros(n, dtype=torch.long)))
        return
    good = _fixed_labels(instance, n)
    bad = {
        f"labels of shape ({n + 1},)": torch.zeros(n + 1, dtype=torch.long),
        f"labels of shape ({n}, 1)": good.view(n, 1),
        f"a label equal to num_classes={k}": torch.cat([good[:-1], torch.tensor([k])]),
        "a label -1": torch.cat([good[:-1], torch.tensor([-1])]),
    }
    for what, labels in bad.items():
        _expect_value_error(instance, f"sample({n}) with {what}", lambda labels=labels: instance.sample(n, labels=labels))


def _holds_an_image_of(state: Any, data: ImageDataset) -> bool:
    """Whether any tensor of ``state`` contains one of ``data``'s images verbatim (as consecutive values)."""
    d = math.prod(data.info.shape)
    images = data.images.reshape(len(data), d).float()
    for t in tensors_in(state):
        if not t.is_floating_point() or t.numel() < d:
            continue
        flat = t.detach().float().cpu().reshape(-1)
        # Offsets where some image's first pixel appears, then a full comparison with those images.
        starts = torch.nonzero(torch.isin(flat[: flat.numel() - d + 1], images[:, 0])).flatten()
        for start in starts[:10_000].tolist():
            window = flat[start:start + d]
            if bool((images == window).all(dim=1).any()):
                return True
    return False


def check_round_trip(
    instance: GenerativeMethod, directory: str | Path | None = None, data: ImageDataset | None = None,
    n: int = N_SAMPLES,
) -> GenerativeMethod:
    """``save`` then ``type(instance).load`` from a copy of the folder alone (the original removed, no data
    passed; both under ``directory``, default a temporary folder) restores config, info and seed and samples identically for equal seeds (given labels too); with
    ``data`` (the private training set) the checkpoint must hold none of its images. Returns the loaded one."""
    name = _name(instance)
    cls = type(instance)
    with tempfile.TemporaryDirectory(prefix="dpgen-contract-") as scratch:
        root = Path(directory) if directory is not None else Path(scratch)
        saved, moved = root / "saved", root / "moved"
        for folder in (saved, moved):
            shutil.rmtree(folder, ignore_errors=True)
        _call(f"{name}.save()", lambda: instance.save(saved))
        shutil.copytree(saved, moved)
        shutil.rmtree(saved)
        loaded = _call(f"{cls.__name__}.load()", lambda: cls.load(moved, context=CONTEXT))
        if data is not None:
            state = torch.load(moved / "state.pt", map_location="cpu", weights_only=True)
            if _holds_an_image_of(state, data):
                raise ContractError(f"{name}: the checkpoint contains a training image verbatim; checkpoint_state() "
                                    f"must hold what sampling needs, never private data")
    if type(loaded) is not cls:
        raise ContractError(f"{cls.__name__}.load() returned a {type(loaded).__name__}")
    if loaded.config != instance.config or loaded.info != instance.info or loaded.seed != instance.seed:
        raise ContractError(f"{name}: load() restored config={loaded.config!r}, info={loaded.info}, seed={loaded.seed}; "
                            f"saved config={instance.config!r}, info={instance.info}, seed={instance.seed}")
    if loaded.samples_labelled != instance.samples_labelled:
        raise ContractError(f"{name}: samples_labelled is {loaded.samples_labelled} after load, "
                            f"{instance.samples_labelled} before")
    cases: list[tuple[str, torch.Tensor | None, int | None]] = [("sample(n, seed=11)", None, 11), ("sample(n)", None, None)]
    if instance.samples_labelled:
        cases.append(("sample(n, labels=..., seed=12)", _fixed_labels(instance, n), 12))
    for what, labels, seed in cases:
        a, la = _sample(instance, n, labels=labels, seed=seed)
        b, lb = _sample(loaded, n, labels=labels, seed=seed)
        if not (torch.equal(a, b) and torch.equal(la, lb)):
            worst = float((a - b).abs().max()) if a.shape == b.shape else float("nan")
            raise ContractError(f"{name}: after save/load, {what} differs from the original's (max |Δ| = {worst:.3g}); "
                                f"checkpoint_state() must hold everything sampling uses")
    return loaded


def check_refuses_unsupported(method: type[GenerativeMethod]) -> int:
    """Every shape of :func:`unsupported_shapes` is refused by the capabilities' ``check`` (:func:`capabilities_of`)
    and by construction (defaults plus ``conformance_config``) with a ``ValueError`` whose message names the offending channel count or size.
    Returns how many shapes were tried."""
    name = _name(method)
    tried = 0
    for problem, shape in unsupported_shapes(method):
        info = DatasetInfo("unsupported", *shape, NUM_CLASSES)
        c, h, _ = shape
        caps = capabilities_of(method)
        for where, fn in (("capabilities.check", lambda: caps.check(info)),
                          ("construction", lambda: method(dict(method.conformance_config), info, context=CONTEXT))):
            what = f"{name} {where} on a {c}x{h}x{h} dataset ({problem} outside its capabilities)"
            try:
                fn()
            except ValueError as exc:
                message = str(exc)
                named = (str(c) in message and "channel" in message.lower()) if problem == "channels" else str(h) in message
                if not named:
                    raise ContractError(f"{what}: the error {message!r} does not name the {problem} "
                                        f"({c if problem == 'channels' else h})") from exc
                continue
            except Exception as exc:
                raise ContractError(f"{what} raised {type(exc).__name__} ({exc}), expected ValueError") from exc
            raise ContractError(f"{what} was accepted; it must raise ValueError naming the problem")
        tried += 1
    return tried


def check_sampling_contract(instance: GenerativeMethod) -> None:
    """All the checks on a fitted instance that need nothing else (samples, given labels, determinism,
    ``sample(0)``, bad input)."""
    check_samples(instance)
    check_given_labels(instance)
    check_determinism(instance)
    check_empty_sample(instance)
    check_bad_sample_input(instance)


def check_contract(method: type[GenerativeMethod]) -> list[str]:
    """The whole contract suite on one method, outside pytest; returns the shapes checked."""
    shapes = supported_shapes(method)
    for shape in shapes:
        check_construction(method, contract_info(shape_of(shape)))
        for epsilon in EPSILONS:
            instance, ledger, data = fit_tiny(method, shape, epsilon)
            check_fit_ledger(instance, ledger, epsilon)
            check_sampling_contract(instance)
            check_round_trip(instance, data=data if not math.isinf(epsilon) else None)
    check_refuses_unsupported(method)
    return shapes
