"""``digit-simulator``: an offline PE generation API that draws digits 0–9 with a simulated pen (no weights).

Each digit of a fixed list of TrueType fonts shipped inside matplotlib is rasterised once, thinned to its
skeleton (Zhang–Suen) and stored as a distance-to-skeleton field in an atlas. A sample is a vector of
rendering parameters (its PE *state*); rendering is a pure, deterministic, batched function of it:

    canvas point p (MNIST px, centred) → p + D(p) (elastic field) → A⁻¹(· − t) (affine) → glyph point g
    ink(p) = clamp((w/2 − σ_A·dist_skeleton(g))·px + ½, 0, 1)  on a k× supersampled canvas, then k×k
    area averaging to H×W (anti-aliasing)

so every digit is written with a round pen of width w (the ``stroke``), whatever the font's own weight.
Lengths are in *MNIST pixels*: 1/20 of the digit box (the box is 20 px at 28×28, as in MNIST; at 8×8 the
digit fills the image, as in scikit-learn's digits). A continuous parameter θ ∈ [lo, hi] has the prior
θ = lo + (hi − lo)·Φ(c·z), z ~ N(0, 1) (bell-shaped, c = 0.75); a variation of strength s moves z to
√(1 − s²)·z + s·ε (s = 1: a fresh draw; the prior is kept at every s), re-draws the font with probability s
and keeps the class. All randomness comes from the ``torch.Generator`` passed in.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from dpgen_bench.data.types import DatasetInfo

from .pe_api import GenerationAPI, Population, register_pe_api

# Fonts (file stems in matplotlib's fonts/ttf) whose ten digits render complete and legible once thinned and
# pruned (checked by eye and with the digit-recognizer MNIST CNN, each ≥ 0.9 accuracy under the default priors).
# Left out: DejaVu*Display, STIXNonUni*, STIXSiz*, cmex10, cmsy10 (no digits or symbols instead), LastResortHE
# (boxes), cmti10 (its 2 and 3 curl like old-style figures: ~0.75), cmb10 (its 6 and 9 read as 0/5: ~0.8),
# DejaVuSansMono-Bold (the dot inside its zero survives as a blob). cmmi10's old-style figures are kept: each
# glyph is normalised to the digit box, which makes them lining.
FONTS: tuple[str, ...] = tuple(sorted((
    "DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-BoldOblique", "DejaVuSans-Oblique",
    "DejaVuSansMono", "DejaVuSansMono-BoldOblique", "DejaVuSansMono-Oblique",
    "DejaVuSerif", "DejaVuSerif-Bold", "DejaVuSerif-BoldItalic", "DejaVuSerif-Italic",
    "STIXGeneral", "STIXGeneralBol", "STIXGeneralBolIta", "STIXGeneralItalic",
    "cmmi10", "cmr10", "cmss10", "cmtt10",
)))

# State columns (one row per sample). Lengths in MNIST px, angles in degrees.
CLASS, FONT, ROTATION, SHEAR, SCALE, ASPECT, SHIFT_X, SHIFT_Y, STROKE, ELASTIC = range(10)
CONTINUOUS: tuple[int, ...] = (ROTATION, SHEAR, SCALE, ASPECT, SHIFT_X, SHIFT_Y, STROKE, ELASTIC)
ELASTIC_GRID = 4
"""The elastic field is bicubic between ELASTIC_GRID × ELASTIC_GRID control points per axis (x, y)."""
COEFFS = 10
"""First column of the 2·ELASTIC_GRID² elastic control displacements (standard normal, × the amplitude)."""
STATE_DIM = COEFFS + 2 * ELASTIC_GRID**2

_PRIOR_SHAPE = 0.75  # c in θ = lo + (hi − lo)·Φ(c·z): < 1 puts more mass mid-range
_BOX = 20.0  # MNIST px per digit box (by definition of the unit)
_SPUR = 2.5  # free skeleton branches shorter than this (MNIST px) are pruned
_SKELETON = 17.5  # larger extent of a glyph's skeleton, MNIST px (plus a 2.5-px pen ≈ the 20-px box)
_RES = 4  # atlas px per MNIST px
_TILE = 40  # atlas tile side, MNIST px (skeletons lie within ±12.2 of the tile centre; points beyond the
# tile read its border ring, set far from any skeleton, so no ink leaks in from clamped coordinates)
_RASTER = 160  # font size (px) glyphs are rasterised at before thinning

# Per image size: digit box (output px), glyph centring ("mass": centre of mass, as MNIST; "box": bounding
# box, as UCI optdigits), supersampling factor, default stroke range (MNIST px).
_SIZES: dict[int, tuple[float, str, int, tuple[float, float]]] = {
    8: (8.0, "box", 8, (2.0, 4.0)),      # scikit-learn digits fill the 8×8 image
    28: (20.0, "mass", 4, (1.8, 3.6)),   # MNIST: a 20×20 box centred by mass in 28×28
    32: (20.0, "mass", 4, (1.8, 3.6)),   # MNIST padded to 32×32 (LeNet-style)
}


@register_pe_api("digit-simulator")
class DigitSimulator(GenerationAPI):
    trained_on = ()  # a hand-written stroke renderer: fitted on no data
    """Digits 0–9 from matplotlib's TrueType fonts, written with a simulated pen; see the module docstring.

    Options (all optional; ranges are closed intervals):

    - ``fonts``: ``"default"`` (all of :data:`FONTS`) or a list of names from :data:`FONTS`.
    - ``rotation``: max |rotation|, degrees, in [0, 60]; default 12.
    - ``shear``: [lo, hi] horizontal shear (x += shear·height above the centre; > 0 slants right), each in
      [−1, 1]; default [−0.25, 0.45].
    - ``scale``: [lo, hi] size factor of the digit box, in [0.3, 2]; default [0.8, 1.05].
    - ``aspect``: [lo, hi] width factor (on top of ``scale``), in [0.3, 2]; default [0.8, 1.3].
    - ``translation``: max |shift| per axis, MNIST px, in [0, 8]; default 1.5.
    - ``stroke``: [lo, hi] pen width, MNIST px, in [0.5, 10]; default [1.8, 3.6] ([2, 4] at 8×8).
    - ``elastic``: max amplitude of the elastic field, MNIST px, in [0, 6]; default 1.5. Each sample draws an
      amplitude a in [0, elastic]; its displacement is a·N(0, 1) per axis at each of the 4×4 control points
      spread over the image, bicubic in between.
    - ``supersample``: canvas oversampling per axis, integer in [1, 8]; default 4 (8 at 8×8).
    - ``batch_size``: images rendered per batch (memory ≈ 0.4 MB each at 28×28, k = 4), ≥ 1; default 256.
    """

    conditional: ClassVar[bool] = True
    channels: ClassVar[tuple[int, ...]] = (1,)
    image_sizes: ClassVar[tuple[int, ...] | None] = tuple(sorted(_SIZES))

    def __init__(self, info: DatasetInfo, device: str | torch.device = "cpu", *, fonts: str | Sequence[str] = "default",
                 rotation: float = 12.0, shear: Sequence[float] = (-0.25, 0.45), scale: Sequence[float] = (0.8, 1.05),
                 aspect: Sequence[float] = (0.8, 1.3), translation: float = 1.5,
                 stroke: Sequence[float] | None = None, elastic: float = 1.5, supersample: int | None = None,
                 batch_size: int = 256, **options: Any) -> None:
        super().__init__(info, device=device, **options)
        _check_info(info)
        box, centre, default_k, default_stroke = _SIZES[info.height]
        self.fonts = _check_fonts(fonts)
        rot = _number("rotation", rotation, 0.0, 60.0)
        shift = _number("translation", translation, 0.0, 8.0)
        self.ranges: dict[int, tuple[float, float]] = {
            ROTATION: (-rot, rot), SHEAR: _interval("shear", shear, -1.0, 1.0),
            SCALE: _interval("scale", scale, 0.3, 2.0), ASPECT: _interval("aspect", aspect, 0.3, 2.0),
            SHIFT_X: (-shift, shift), SHIFT_Y: (-shift, shift),
            STROKE: _interval("stroke", default_stroke if stroke is None else stroke, 0.5, 10.0),
            ELASTIC: (0.0, _number("elastic", elastic, 0.0, 6.0)),
        }
        self.supersample = _integer("supersample", default_k if supersample is None else supersample, 1, 8)
        self.batch_size = _integer("batch_size", batch_size, 1, None)
        self.size = info.height
        self.unit = box / _BOX  # output px per MNIST px
        self._atlas = _atlas(self.fonts, centre).to(self.device)
        self._basis = _basis(self.size, self.supersample, self.unit).to(self.device)

    # ---------------------------------------------------------------- the API
    def random(self, labels: torch.Tensor, generator: torch.Generator) -> Population:
        """One fresh sample per label ((N,) int64 in [0, K) or −1: a random digit of the K = ``info.num_classes``
        first), parameters from the priors."""
        labels = _check_labels(labels, self.info.num_classes)
        n = len(labels)
        drawn = _randint(self.info.num_classes, n, generator)
        state = torch.zeros(n, STATE_DIM)
        state[:, CLASS] = torch.where(labels >= 0, labels, drawn).float()
        state[:, FONT] = _randint(len(self.fonts), n, generator).float()
        state[:, list(CONTINUOUS)] = self._from_latent(_randn((n, len(CONTINUOUS)), generator))
        state[:, COEFFS:] = _randn((n, STATE_DIM - COEFFS), generator)
        return Population(self.render(state), labels.clone(), state)

    def variation(self, population: Population, strength: float, generator: torch.Generator) -> Population:
        """Every sample moved by ``strength`` ∈ (0, 1] (1: a fresh draw of all but the class); labels kept."""
        s = _check_strength(strength)
        state = self._check_state(population.state).clone()
        n = len(state)
        rho = math.sqrt(1.0 - s * s)
        z = self._to_latent(state[:, list(CONTINUOUS)])
        state[:, list(CONTINUOUS)] = self._from_latent(rho * z + s * _randn(z.shape, generator))
        state[:, COEFFS:] = rho * state[:, COEFFS:] + s * _randn((n, STATE_DIM - COEFFS), generator)
        redraw = torch.rand(n, generator=generator, device=generator.device).cpu() < s
        state[:, FONT] = torch.where(redraw, _randint(len(self.fonts), n, generator).float(), state[:, FONT])
        return Population(self.render(state), population.labels.clone(), state)

    def describe(self) -> str:
        """The simulator, image size, fonts and the matplotlib version they come from."""
        return (f"digit-simulator: pen-stroked TrueType digits, {self.size}x{self.size}, fonts "
                f"{', '.join(self.fonts)} (matplotlib {_matplotlib_version()})")

    # ---------------------------------------------------------------- rendering
    def render(self, state: torch.Tensor) -> torch.Tensor:
        """(N, STATE_DIM) parameters → (N, 1, H, W) float32 images in [0, 1] on CPU (deterministic)."""
        state = self._check_state(state)
        parts = [self._render_batch(chunk.to(self.device)).cpu() for chunk in state.split(self.batch_size)]
        return torch.cat(parts) if parts else torch.zeros(0, 1, self.size, self.size)

    def _render_batch(self, state: torch.Tensor) -> torch.Tensor:
        n, k, side = len(state), self.supersample, self.size * self.supersample
        inverse, sigma = _affine_inverse(state)
        weights, lo, hi = self._grid_weights(state, inverse)
        grid = torch.matmul(weights.view(2 * n, -1), self._basis).view(n, 2, -1).clamp_(lo, hi)
        grid = grid.transpose(1, 2).reshape(1, n * side, side, 2)
        dist = F.grid_sample(self._atlas, grid, mode="bilinear", padding_mode="border", align_corners=True)
        # ink = clamp((stroke/2 − σ·dist)·(canvas px per MNIST px) + ½, 0, 1): a 1-canvas-px anti-aliased edge.
        px = self.unit * k
        bias = (state[:, STROKE] / 2 * px + 0.5).view(n, 1, 1, 1)
        ink = torch.addcmul(bias, dist.view(n, 1, side, side), (-sigma * px).view(n, 1, 1, 1)).clamp_(0, 1)
        return F.avg_pool2d(ink, k) if k > 1 else ink

    def _grid_weights(self, state: torch.Tensor, inverse: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """W (N, 2, 3 + G²) with grid_sample coordinates (x, y) = W @ basis, and their (N, 2, 1) bounds (the
        sample's atlas tile). Folds g = A⁻¹(p + amplitude·Σ_b coeff_b·φ_b(p) − t) (glyph MNIST px), the atlas
        tile px g·R + (T·R − 1)/2 and grid_sample's [−1, 1] normalisation into one matrix."""
        n = len(state)
        last = _TILE * _RES - 1
        rows = self._atlas.shape[2]
        coeffs = state[:, COEFFS:].view(n, 2, ELASTIC_GRID**2)
        const = -(inverse @ state[:, [SHIFT_X, SHIFT_Y]].unsqueeze(-1))  # (N, 2, 1)
        elastic = state[:, ELASTIC].view(n, 1, 1) * (inverse @ coeffs)  # (N, 2, G²)
        weights = torch.cat([inverse, const, elastic], dim=2) * _RES  # → tile px, minus the centre offset
        weights[:, :, 2] += last / 2
        tile = (state[:, FONT].long() * 10 + state[:, CLASS].long()).float()
        scale = torch.tensor([2 / last, 2 / (rows - 1)], device=state.device).view(1, 2, 1)
        first_row = tile * (last + 1) * (2 / (rows - 1)) - 1
        offset = torch.stack([torch.full_like(first_row, -1.0), first_row], -1).view(n, 2, 1)
        weights = weights * scale
        weights[:, :, 2:3] += offset
        return weights, offset, offset + last * scale

    # ---------------------------------------------------------------- priors
    def _from_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Latent N(0, 1) values (N, 8) → continuous parameters in their ranges (columns of CONTINUOUS)."""
        lo, hi = self._bounds()
        return lo + (hi - lo) * torch.special.ndtr(_PRIOR_SHAPE * z)

    def _to_latent(self, theta: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_from_latent` (a zero-width range maps to z = 0)."""
        lo, hi = self._bounds()
        u = torch.where(hi > lo, (theta - lo) / (hi - lo).clamp_min(1e-12), torch.full_like(theta, 0.5))
        return torch.special.ndtri(u.clamp(1e-6, 1 - 1e-6)) / _PRIOR_SHAPE

    def _bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = zip(*(self.ranges[c] for c in CONTINUOUS))
        return torch.tensor(lo), torch.tensor(hi)

    def _check_state(self, state: torch.Tensor) -> torch.Tensor:
        if state.ndim != 2 or state.shape[1] != STATE_DIM:
            raise ValueError(f"digit-simulator state must be (N, {STATE_DIM}), got {tuple(state.shape)}")
        state = state.detach().float().cpu()
        cls, font = state[:, CLASS], state[:, FONT]
        if ((cls < 0) | (cls > 9) | (cls != cls.round())).any() or \
                ((font < 0) | (font >= len(self.fonts)) | (font != font.round())).any():
            raise ValueError(f"digit-simulator state has classes outside 0..9 or fonts outside "
                             f"0..{len(self.fonts) - 1}")
        return state


# -------------------------------------------------------------------- geometry
def _affine_inverse(state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A⁻¹ (N, 2, 2) for A = rotation · shear · diag(scale·aspect, scale), and √det A (N,), in closed form.

    Coordinates are (x right, y down); positive rotation turns the digit anticlockwise on screen, positive
    shear slants it right (x += shear · height above the centre)."""
    theta = torch.deg2rad(state[:, ROTATION])
    cos, sin, shear = torch.cos(theta), torch.sin(theta), state[:, SHEAR]
    sx, sy = state[:, SCALE] * state[:, ASPECT], state[:, SCALE]
    # A⁻¹ = diag(1/sx, 1/sy) · [[1, shear], [0, 1]] · [[cos, −sin], [sin, cos]]
    row_x = torch.stack([cos + shear * sin, shear * cos - sin], -1) / sx.unsqueeze(-1)
    row_y = torch.stack([sin, cos], -1) / sy.unsqueeze(-1)
    return torch.stack([row_x, row_y], 1), (sx * sy).sqrt()


def _basis(size: int, k: int, unit: float) -> torch.Tensor:
    """(3 + G², P) functions of the P = (size·k)² supersampled canvas pixel centres: x, y (MNIST px from the
    image centre), 1, and the G² bicubic interpolants φ_b of the elastic control grid (φ_b = 1 at node b)."""
    side = size * k
    c = ((torch.arange(side, dtype=torch.float32) + 0.5) / k - size / 2) / unit
    y, x = torch.meshgrid(c, c, indexing="ij")
    nodes = torch.eye(ELASTIC_GRID**2).view(-1, 1, ELASTIC_GRID, ELASTIC_GRID)
    phi = F.interpolate(nodes, size=(side, side), mode="bicubic", align_corners=True).view(ELASTIC_GRID**2, -1)
    return torch.cat([x.reshape(1, -1), y.reshape(1, -1), torch.ones(1, side * side), phi])


# -------------------------------------------------------------------- glyphs
def font_path(name: str) -> str:
    """The TrueType file of font ``name`` (a stem from :data:`FONTS`) inside matplotlib."""
    import matplotlib

    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf", f"{name}.ttf")


@functools.lru_cache(maxsize=4)
def _atlas(fonts: tuple[str, ...], centre: str) -> torch.Tensor:
    """(1, 1, F·10·T, T) distance-to-skeleton fields (MNIST px), tile f·10 + d = digit d of font f, each
    glyph's centre ("mass" or "box") in the middle of its tile."""
    from scipy.ndimage import distance_transform_edt

    tiles = []
    for name in fonts:
        for digit in range(10):
            skeleton = _tile_skeleton(_prune(_thin(_rasterise(name, str(digit)))), centre)
            field = distance_transform_edt(~skeleton) / _RES
            field[[0, -1], :] = field[:, [0, -1]] = 2.0 * _TILE
            tiles.append(field)
    return torch.from_numpy(np.concatenate(tiles).astype(np.float32))[None, None]


def _rasterise(name: str, char: str) -> np.ndarray:
    """A boolean bitmap (ink = True) of ``char`` in font ``name`` at a _RASTER-px font size, 2 px of margin."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(font_path(name), _RASTER)
    left, top, right, bottom = font.getbbox(char)
    img = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(img).text((2 - left, 2 - top), char, font=font, fill=255)
    ink = np.asarray(img) >= 128
    if ink.sum() < 50:
        raise ValueError(f"font {name!r} has no usable glyph for {char!r}")
    return ink


def _tile_skeleton(skeleton: np.ndarray, centre: str) -> np.ndarray:
    """Skeleton pixels moved into a (T·R, T·R) tile: larger extent _SKELETON MNIST px, its centre of mass
    (``centre="mass"``) or bounding-box centre (``"box"``) in the middle. Scaling down (the raster is finer
    than the tile), neighbouring pixels stay 8-connected."""
    ys, xs = np.nonzero(skeleton)
    extent = max(ys.max() - ys.min(), xs.max() - xs.min(), 1)
    scale = _SKELETON * _RES / extent
    side = _TILE * _RES
    cx, cy = (xs.mean(), ys.mean()) if centre == "mass" else ((xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2)
    cols = np.round((xs - cx) * scale + (side - 1) / 2).astype(int)
    rows = np.round((ys - cy) * scale + (side - 1) / 2).astype(int)
    tile = np.zeros((side, side), dtype=bool)
    tile[rows.clip(0, side - 1), cols.clip(0, side - 1)] = True
    return tile


def _thin(ink: np.ndarray) -> np.ndarray:
    """Zhang–Suen thinning (1984): a boolean bitmap → its one-pixel-wide 8-connected skeleton."""
    img = np.pad(ink, 1).astype(np.uint8)
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            p = _neighbours(img)  # P2..P9, clockwise from north
            b = sum(p)
            a = sum(((p[i] == 0) & (p[(i + 1) % 8] == 1)).astype(np.uint8) for i in range(8))
            if step == 0:
                side = (p[0] * p[2] * p[4] == 0) & (p[2] * p[4] * p[6] == 0)
            else:
                side = (p[0] * p[2] * p[6] == 0) & (p[0] * p[4] * p[6] == 0)
            remove = (img[1:-1, 1:-1] == 1) & (b >= 2) & (b <= 6) & (a == 1) & side
            if remove.any():
                img[1:-1, 1:-1][remove] = 0
                changed = True
    return img[1:-1, 1:-1].astype(bool)


def _prune(skeleton: np.ndarray) -> np.ndarray:
    """The skeleton without its short free branches (serifs, ball terminals, corner spurs): a branch between a
    free end and a junction (or isolated) shorter than _SPUR MNIST px goes (MNIST px: the skeleton's larger
    extent is _SKELETON)."""
    from scipy.ndimage import binary_dilation, label

    ys, xs = np.nonzero(skeleton)
    spur = _SPUR / _SKELETON * max(ys.max() - ys.min(), xs.max() - xs.min(), 1)
    count = sum(_neighbours(np.pad(skeleton, 1).astype(np.uint8)))
    square = np.ones((3, 3), dtype=bool)
    junctions = binary_dilation(skeleton & (count >= 3), structure=square) & skeleton
    branches, n = label(skeleton & ~junctions, structure=square)
    size = np.bincount(branches.ravel(), minlength=n + 1)
    free = np.bincount(branches[skeleton & (count == 1)], minlength=n + 1) > 0
    drop = free & (size < spur)
    drop[0] = False
    return skeleton & ~drop[branches]


def _neighbours(img: np.ndarray) -> list[np.ndarray]:
    """The 8 neighbours of every interior pixel: N, NE, E, SE, S, SW, W, NW."""
    h, w = img.shape
    offsets = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]
    return [img[1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx] for dy, dx in offsets]


# -------------------------------------------------------------------- validation
def _check_info(info: DatasetInfo) -> None:
    if info.channels != 1:
        raise ValueError(f"digit-simulator draws grey images (1 channel); {info.name!r} has {info.channels} channels")
    if info.height != info.width or info.height not in _SIZES:
        raise ValueError(f"digit-simulator draws square images of size {sorted(_SIZES)}; "
                         f"{info.name!r} is {info.height}x{info.width}")
    if not 1 <= info.num_classes <= 10:
        raise ValueError(f"digit-simulator draws the digits 0..9 (class k = digit k); {info.name!r} has "
                         f"{info.num_classes} classes")


def _check_fonts(fonts: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(fonts, str):
        if fonts != "default":
            raise ValueError(f"digit-simulator option 'fonts' must be 'default' or a list of names from "
                             f"{list(FONTS)}, got {fonts!r}")
        return FONTS
    names = tuple(fonts)
    unknown = [f for f in names if f not in FONTS]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(f"digit-simulator option 'fonts' must be distinct names from {list(FONTS)}; got {list(names)}"
                         + (f" (unknown: {unknown})" if unknown else ""))
    return names


def _number(name: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ValueError(f"digit-simulator option {name!r} must be a number in [{lo}, {hi}], got {value!r}")
    return float(value)


def _interval(name: str, value: Any, lo: float, hi: float) -> tuple[float, float]:
    ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
    if ok:
        try:
            a, b = (_number(name, v, lo, hi) for v in value)
        except ValueError:
            ok = False
        else:
            ok = a <= b
    if not ok:
        raise ValueError(f"digit-simulator option {name!r} must be [low, high] with {lo} <= low <= high <= {hi}, "
                         f"got {value!r}")
    return a, b


def _integer(name: str, value: Any, lo: int, hi: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        bound = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"digit-simulator option {name!r} must be an integer {bound}, got {value!r}")
    return value


def _check_strength(strength: Any) -> float:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 < strength <= 1:
        raise ValueError(f"variation strength must be a number in (0, 1], got {strength!r}")
    return float(strength)


def _check_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.is_floating_point():
        raise ValueError("digit-simulator labels must be a 1-D integer tensor")
    labels = labels.long().cpu()
    if ((labels < -1) | (labels >= num_classes)).any():
        raise ValueError(f"digit-simulator labels must be digits 0..{num_classes - 1} or -1 (any digit), "
                         f"got {labels.unique().tolist()}")
    return labels


def _randint(high: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """(n,) int64 uniform on {0, …, high − 1} from ``generator`` (on its device), returned on CPU."""
    return torch.randint(0, high, (n,), generator=generator, device=generator.device).cpu()


def _randn(shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """Standard normal draws from ``generator`` (on its device), returned on CPU."""
    return torch.randn(tuple(shape), generator=generator, device=generator.device).cpu()


def _matplotlib_version() -> str:
    import matplotlib

    return matplotlib.__version__
