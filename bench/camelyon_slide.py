"""A Camelyon16-size slide in minutes: pre-made texture tiles, encoded once, written many times.

`pcam-scan synth` renders every pixel (364 s for 25k x 50k px), far too slow for a slide of
Camelyon16's size (about 100k x 200k px at 0.243 um/px). This benchmark helper writes one that
OpenSlide reads as generic-tiff with the right MPP, in bounded memory:

- a label map with one value per level-0 tile (glass, tissue, tumour) holds the slide's layout:
  a few lobed tissue sections sized to hold about `tissue_cells` heatmap cells, and tumour blobs
  inside them;
- each label has a periodic texture (FFT-filtered stain fields and nuclei, so it wraps without
  seams) of `texture_px` at level 0, averaged 2x2 for each coarser level exactly as the pyramid
  is;
- a tile whose label block is uniform is a crop of its label's texture at the tile's offset
  modulo the period, so only a few distinct tiles exist per level: each is JPEG-encoded once and
  its bytes written wherever it recurs ; only tiles
  on a tissue border are composed and encoded one by one. Pillow encodes, and bench/tiled_tiff.py
  writes the BigTIFF, so nothing beyond numpy and Pillow is needed (GPU machines lack imagecodecs).

Because label borders lie on level-0 tile edges, every level equals the 2x2 average of the level
above (within JPEG loss): a consistent pyramid, as a scanner's is. Benchmarks only: the texture
repeats, and the tumour is darker tissue with no annotation.

    python bench/camelyon_slide.py /tmp/c16/camelyon_size.tif           # 100k x 200k, ~350k cells
    python bench/camelyon_slide.py /tmp/s.tif --width 20000 --height 30000 --tissue-cells 10000
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from process_tree import peak_rss_mb
from tiled_tiff import BigTiffWriter, TiledLevel

from pcam_scan.geometry import PCAM_LABEL_PX, PCAM_MPP_UM_PX
from pcam_scan.synth.files import written_atomically
from pcam_scan.synth.pyramid import PyramidLayout, downsample_2x
from pcam_scan.synth.stains import EOSIN_OD, GLASS_OD, HAEMATOXYLIN_OD, TISSUE_OD, density_to_rgb

GLASS, TISSUE, TUMOUR = 0, 1, 2
LABELS = (GLASS, TISSUE, TUMOUR)
CELL_UM = PCAM_LABEL_PX * PCAM_MPP_UM_PX  # one heatmap cell, about 31 um


@dataclass(frozen=True)
class CamelyonSlideSpec:
    """What to write: level-0 size and MPP, tissue amount, tumour share, tiling and texture."""

    width_px: int = 100_000
    height_px: int = 200_000
    mpp_um_px: float = 0.243
    tissue_cells: int = 350_000
    tumour_share: float = 0.05
    tile_px: int = 256
    texture_px: int = 2048
    jpeg_quality: int = 90
    seed: int = 0

    def __post_init__(self) -> None:
        if self.tile_px % 16 or not 64 <= self.tile_px <= 2048:
            raise ValueError(f"tile size {self.tile_px} must be a multiple of 16 in 64..2048")
        if self.texture_px % self.tile_px or self.texture_px & (self.texture_px - 1):
            raise ValueError(f"texture size {self.texture_px} must be a power of 2 and a multiple of the tile")
        if min(self.width_px, self.height_px) < 4 * self.tile_px:
            raise ValueError(f"a slide needs at least {4 * self.tile_px} px per side")
        if not 0.1 <= self.mpp_um_px <= 2.0:
            raise ValueError(f"mpp {self.mpp_um_px} is not a slide resolution")
        if not 0 <= self.tumour_share < 1 or self.tissue_cells < 0:
            raise ValueError("tumour share must lie in [0, 1) and tissue cells must not be negative")

    @property
    def tile_rc(self) -> tuple[int, int]:
        """Rows and columns of level-0 tiles (the label map's shape)."""
        return math.ceil(self.height_px / self.tile_px), math.ceil(self.width_px / self.tile_px)

    @property
    def cells_per_tile(self) -> float:
        """Heatmap cells (32 px at 0.972 um/px) in one level-0 tile."""
        return (self.tile_px * self.mpp_um_px / CELL_UM) ** 2


# ---------------------------------------------------------------- layout: one label per tile


def lobed_sections(spec: CamelyonSlideSpec, scale: float, rng_seed: int) -> np.ndarray:
    """Boolean tile map of a few lobed ellipses (lymph-node sections), their radii times `scale`."""
    rng = np.random.default_rng(rng_seed)
    rows, cols = spec.tile_rc
    r, c = np.mgrid[0:rows, 0:cols].astype(np.float32)
    inside = np.zeros((rows, cols), bool)
    n_sections = 3
    for i in range(n_sections):
        centre_r = rows * (i + 0.5) / n_sections + rng.uniform(-0.05, 0.05) * rows
        centre_c = cols * rng.uniform(0.4, 0.6)
        radius_r = scale * rows / (2 * n_sections) * rng.uniform(0.7, 1.0)
        radius_c = scale * cols / 2 * rng.uniform(0.6, 0.9)
        angle = np.arctan2(r - centre_r, c - centre_c)
        lobes = 1 + sum(rng.uniform(0, 0.12) * np.cos(k * angle + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
        inside |= ((r - centre_r) / radius_r) ** 2 + ((c - centre_c) / radius_c) ** 2 <= lobes**2
    return inside


def label_map(spec: CamelyonSlideSpec) -> np.ndarray:
    """uint8 label per level-0 tile: tissue sized to about `spec.tissue_cells`, tumour blobs inside."""
    target_tiles = spec.tissue_cells / spec.cells_per_tile
    low, high = 0.0, 2.0
    for _ in range(30):  # bisect the sections' scale to the tissue area asked for
        mid = (low + high) / 2
        low, high = (mid, high) if lobed_sections(spec, mid, spec.seed).sum() < target_tiles else (low, mid)
    tissue = lobed_sections(spec, high, spec.seed)
    labels = tissue.astype(np.uint8)
    if spec.tumour_share > 0 and tissue.any():
        rng = np.random.default_rng(spec.seed + 1)
        rr, cc = np.nonzero(tissue)
        r, c = np.mgrid[0 : labels.shape[0], 0 : labels.shape[1]]
        blob_tiles = spec.tumour_share * tissue.sum() / 3
        for _ in range(3):
            i = rng.integers(len(rr))
            radius = math.sqrt(blob_tiles / math.pi)
            blob = (r - rr[i]) ** 2 + (c - cc[i]) ** 2 <= radius**2
            labels[blob & tissue] = TUMOUR
    return labels


# ---------------------------------------------------------------- textures: periodic, per label


def periodic_noise(rng: np.random.Generator, size: int, feature_px: float) -> np.ndarray:
    """Smooth noise with unit std that wraps around (white noise low-passed in Fourier space)."""
    freq = np.fft.fftfreq(size)[:, None] ** 2 + np.fft.rfftfreq(size)[None, :] ** 2
    spectrum = np.fft.rfft2(rng.standard_normal((size, size)).astype(np.float32))
    field = np.fft.irfft2(spectrum * np.exp(-freq * (feature_px * np.pi) ** 2), s=(size, size))
    return ((field - field.mean()) / (field.std() + 1e-12)).astype(np.float32)


def periodic_nuclei(rng: np.random.Generator, size: int, spacing_px: float, radius_px: float) -> np.ndarray:
    """Haematoxylin amount in [0, 1]: soft discs at random centres, wrapped around the edges."""
    count = int((size / spacing_px) ** 2)
    centres = np.zeros((size, size), np.float32)
    np.add.at(centres, (rng.integers(0, size, count), rng.integers(0, size, count)), 1.0)
    y = np.minimum(np.arange(size), size - np.arange(size)).astype(np.float32)
    distance = np.sqrt(y[:, None] ** 2 + y[None, :] ** 2)
    disc = np.clip(radius_px + 0.5 - distance, 0.0, 1.0)  # a disc at the origin, wrapped
    amount = np.fft.irfft2(np.fft.rfft2(centres) * np.fft.rfft2(disc), s=(size, size))
    return np.clip(amount, 0.0, 1.0).astype(np.float32)


def stain_texture(label: int, size: int, mpp_um_px: float, seed: int) -> np.ndarray:
    """uint8 RGB (size, size, 3) texture of one label, periodic, at `mpp_um_px`."""
    rng = np.random.default_rng([seed, label])
    # glass gets a fainter grain than tissue: its tiles, 70% of the slide, stay small in JPEG
    grain = rng.normal(0.0, 0.004 if label == GLASS else 0.012, (size, size, 1)).astype(np.float32)
    if label == GLASS:
        density = GLASS_OD + grain + 0.01 * periodic_noise(rng, size, 40 / mpp_um_px)[..., None]
        return density_to_rgb(np.broadcast_to(density, (size, size, 3)))
    tumour = label == TUMOUR
    eosin = (0.38 if tumour else 0.5) + 0.12 * periodic_noise(rng, size, 25 / mpp_um_px)
    spacing_um, radius_um = (7.0, 4.0) if tumour else (9.0, 3.0)
    nuclei = periodic_nuclei(rng, size, spacing_um / mpp_um_px, radius_um / mpp_um_px)
    haematoxylin = (0.2 if tumour else 0.05) + (1.1 if tumour else 0.9) * nuclei
    density = (
        GLASS_OD
        + TISSUE_OD
        + np.clip(eosin, 0.05, None)[..., None] * EOSIN_OD
        + haematoxylin[..., None] * HAEMATOXYLIN_OD
        + grain
    )
    return density_to_rgb(density)


# ---------------------------------------------------------------- tiles of one level


class LevelTiles:
    """The JPEG bytes of every tile of one pyramid level, uniform tiles encoded once.

    `textures[label]` is the label's periodic texture at this level (period = its side).
    """

    def __init__(self, spec: CamelyonSlideSpec, level: int, labels: np.ndarray, textures: list[np.ndarray]) -> None:
        self.spec, self.level, self.textures = spec, level, textures
        self.factor = 2**level  # level-0 tiles per level tile, per side
        rows, cols = math.ceil(labels.shape[0] / self.factor), math.ceil(labels.shape[1] / self.factor)
        padded = np.zeros((rows * self.factor, cols * self.factor), np.uint8)
        padded[: labels.shape[0], : labels.shape[1]] = labels
        self.blocks = padded.reshape(rows, self.factor, cols, self.factor).transpose(0, 2, 1, 3)
        low, high = self.blocks.min(axis=(2, 3)), self.blocks.max(axis=(2, 3))
        self.uniform = np.where(low == high, low.astype(np.int16), -1)
        self.encoded: dict[tuple[int, int, int], bytes] = {}
        self.composed = 0

    def tile_count(self, width: int, height: int) -> int:
        tile = self.spec.tile_px
        return math.ceil(width / tile) * math.ceil(height / tile)

    def tiles(self, width: int, height: int) -> Iterator[bytes]:
        """Encoded tiles row by row over a level of `width` x `height` px."""
        tile = self.spec.tile_px
        for r in range(math.ceil(height / tile)):
            for c in range(math.ceil(width / tile)):
                label = int(self.uniform[r, c]) if r < self.uniform.shape[0] and c < self.uniform.shape[1] else GLASS
                if label >= 0:
                    yield self._uniform_tile(label, r, c)
                else:
                    self.composed += 1
                    yield self.encode(self._composed_tile(r, c))

    def _uniform_tile(self, label: int, r: int, c: int) -> bytes:
        period_tiles = max(1, len(self.textures[label]) // self.spec.tile_px)
        key = (label, r % period_tiles, c % period_tiles)
        if key not in self.encoded:
            self.encoded[key] = self.encode(self._texture_crop(label, r, c))
        return self.encoded[key]

    def _texture_crop(self, label: int, r: int, c: int) -> np.ndarray:
        texture, tile = self.textures[label], self.spec.tile_px
        rows = (r * tile + np.arange(tile)) % len(texture)
        cols = (c * tile + np.arange(tile)) % len(texture)
        return texture[rows][:, cols]

    def _composed_tile(self, r: int, c: int) -> np.ndarray:
        """A border tile: each pixel from its label's texture, labels from the level-0 tile map."""
        tile = self.spec.tile_px
        block = self.blocks[r, c]
        if tile >= self.factor:  # a level-0 tile covers tile / factor px here
            per_px = np.repeat(np.repeat(block, tile // self.factor, axis=0), tile // self.factor, axis=1)
        else:  # coarser than one px per level-0 tile: the highest label in each px's block
            step = self.factor // tile
            per_px = block.reshape(tile, step, tile, step).max(axis=(1, 3))
        out = np.empty((tile, tile, 3), np.uint8)
        for label in np.unique(per_px):
            where = per_px == label
            out[where] = self._texture_crop(int(label), r, c)[where]
        return out

    def encode(self, tile: np.ndarray) -> bytes:
        """JPEG as tifffile writes a tile for photometric RGB: YCbCr, 2x2 chroma subsampling.

        Pillow encodes (imagecodecs, tifffile's own encoder, is not on every GPU machine).
        """
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(tile)).save(
            buffer, "JPEG", quality=self.spec.jpeg_quality, subsampling="4:2:0"
        )
        return buffer.getvalue()


def level_textures(spec: CamelyonSlideSpec, n_levels: int) -> list[list[np.ndarray]]:
    """`[level][label]` periodic textures: level 0 rendered, each next level the 2x2 average."""
    levels = [[stain_texture(label, spec.texture_px, spec.mpp_um_px, spec.seed) for label in LABELS]]
    for _ in range(1, n_levels):
        previous = levels[-1]
        # once a period is a single px, halving keeps it (a flat colour is its own average)
        levels.append([downsample_2x(t) if len(t) >= 2 else t for t in previous])
    return levels


def write_camelyon_size_slide(path: Path, spec: CamelyonSlideSpec, log: bool = True) -> dict[str, float]:
    """Write the slide to `path` (atomically); returns figures: seconds, bytes, tiles, expected cells."""
    started = time.perf_counter()
    labels = label_map(spec)
    layout = PyramidLayout.of(spec.width_px, spec.height_px, spec.tile_px)
    textures = level_textures(spec, len(layout.level_wh))
    prepared = time.perf_counter() - started
    description = f"pcam-scan Camelyon16-size benchmark slide {path.stem}; seed {spec.seed}; {spec.mpp_um_px} um/px"
    tiles_written = composed = encoded = 0
    with written_atomically(path) as partial, open(partial, "wb") as handle:
        writer = BigTiffWriter(handle, spec.tile_px)
        for level, (w, h) in enumerate(layout.level_wh):
            tiles = LevelTiles(spec, level, labels, textures[level])
            tiles_written += writer.add_level(
                TiledLevel(
                    w, h, tiles.tiles(w, h), spec.mpp_um_px * spec.width_px / w, description if level == 0 else None
                )
            )
            composed += tiles.composed
            encoded += len(tiles.encoded) + tiles.composed
            if log:
                print(
                    f"  level {level}: {w} x {h} px, {tiles.tile_count(w, h):,} tiles "
                    f"({tiles.composed:,} border tiles encoded), {time.perf_counter() - started:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
    return {
        "seconds": time.perf_counter() - started,
        "prepare_seconds": prepared,
        "bytes": path.stat().st_size,
        "tiles": tiles_written,
        "jpeg_encodes": encoded,
        "tissue_tiles": int((labels > 0).sum()),
        "tumour_tiles": int((labels == TUMOUR).sum()),
        "expected_tissue_cells": float((labels > 0).sum() * spec.cells_per_tile),
    }


def spec_from_args(args: argparse.Namespace) -> CamelyonSlideSpec:
    return CamelyonSlideSpec(
        width_px=args.width,
        height_px=args.height,
        mpp_um_px=args.mpp,
        tissue_cells=args.tissue_cells,
        tumour_share=args.tumour_share,
        jpeg_quality=args.quality,
        seed=args.seed,
        texture_px=args.texture_px,
    )


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """The slide's options, shared with the benchmarks that write one."""
    d = CamelyonSlideSpec()
    parser.add_argument("--width", type=int, default=d.width_px, help="level-0 width in px")
    parser.add_argument("--height", type=int, default=d.height_px, help="level-0 height in px")
    parser.add_argument("--mpp", type=float, default=d.mpp_um_px, help="level-0 um/px")
    parser.add_argument("--tissue-cells", type=int, default=d.tissue_cells, help="heatmap cells of tissue, about")
    parser.add_argument("--tumour-share", type=float, default=d.tumour_share, help="share of tissue that is tumour")
    parser.add_argument("--quality", type=int, default=d.jpeg_quality, help="JPEG quality")
    parser.add_argument("--texture-px", type=int, default=d.texture_px, help="period of the texture at level 0")
    parser.add_argument("--seed", type=int, default=d.seed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the .tif to write")
    add_spec_arguments(parser)
    args = parser.parse_args()
    try:
        spec = spec_from_args(args)
    except ValueError as err:
        parser.error(str(err))
    if not args.out.parent.is_dir():
        parser.error(f"folder {args.out.parent} does not exist")
    figures = write_camelyon_size_slide(args.out, spec)
    print(f"slide                {args.out}")
    print(f"level 0              {spec.width_px:,} x {spec.height_px:,} px at {spec.mpp_um_px} um/px")
    print(
        f"tissue               {figures['tissue_tiles']:,} level-0 tiles (~{figures['expected_tissue_cells']:,.0f} "
        f"cells), tumour {figures['tumour_tiles']:,} tiles"
    )
    print(f"tiles written        {figures['tiles']:,} ({figures['jpeg_encodes']:,} JPEG encodes)")
    print(f"file size            {figures['bytes'] / 1e9:.2f} GB")
    print(f"seconds              {figures['seconds']:.1f} (textures and layout {figures['prepare_seconds']:.1f})")
    print(f"peak RSS             {peak_rss_mb():,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
