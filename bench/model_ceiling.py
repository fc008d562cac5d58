"""Model-only ceiling vs the predictor end to end, in patches/s, on whatever device is present.

For each network input size (96 native, 224 resized), eager and compiled, with and without D4
TTA, it prints:
- `tv-r50`: a plain torchvision ResNet50, float input already on the device (bf16 +
  channels_last on CUDA): the reference the design's H100 figures were measured with;
- `model`: the scanner's scoring module (normalise, resize, the network (`--architecture`,
  ResNet50 + fastai head by default), softmax,
  TTA) on uint8 patches already on the device, the model-only ceiling of that configuration;
- `e2e`: `Predictor.predict` on a numpy uint8 array, host to device and back included;
- `e2e/model`: how close the predictor comes to the ceiling (the design asks for >= 0.95).

The checkpoint is an untrained random one (same architecture, same cost as a trained one).

    python bench/model_ceiling.py                      # CUDA: 50 batches of 256 per figure
    python bench/model_ceiling.py --batches 2 --batch-size 8 --warmup 1     # a short CPU run
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pcam_scan.model.names import ARCHITECTURE_NAMES, RESNET50_FASTAI
from pcam_scan.model.predictor import Predictor, PredictorSettings, resolve_device
from pcam_scan.model.random_model import write_random_checkpoint
from pcam_scan.model.settings import DEFAULT_BATCH_SIZE


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(step: Callable[[], object], patches_per_step: int, steps: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return patches_per_step * steps / (time.perf_counter() - start)


def _torchvision_rate(px: int, compiled: bool, device: torch.device, args: argparse.Namespace) -> float:
    from torchvision.models import resnet50

    on_cuda = device.type == "cuda"
    layout = torch.channels_last if on_cuda else torch.contiguous_format
    net = resnet50(weights=None).eval().to(device, memory_format=layout)
    model = torch.compile(net) if compiled else net
    x = torch.randn(args.batch_size, 3, px, px, device=device).contiguous(memory_format=layout)

    def step() -> object:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_cuda):
            return model(x)

    return _rate(step, args.batch_size, args.batches, args.warmup, device)


def _row(checkpoint: Path, px: int, compiled: bool, tta: bool, device: torch.device, args: argparse.Namespace) -> str:
    settings = PredictorSettings(
        device=str(device), batch_size=args.batch_size, tta=tta, compile=compiled, cpu_threads=args.cpu_threads
    )
    predictor = Predictor.from_checkpoint(checkpoint, settings)
    rng = np.random.default_rng(0)
    host = rng.integers(0, 256, size=(args.batch_size * args.batches, 96, 96, 3), dtype=np.uint8)
    on_device = torch.from_numpy(host[: args.batch_size]).to(device)
    model = _rate(lambda: predictor.score_on_device(on_device), args.batch_size, args.batches, args.warmup, device)
    predictor.predict(host[: args.batch_size])  # warm-up (and compile) on one batch
    e2e = _rate(lambda: predictor.predict(host), len(host), 1, 0, device)
    reference = "-" if tta or args.no_reference else _figure(_torchvision_rate(px, compiled, device, args))
    mode = "compiled" if compiled else "eager"
    tta_name = "D4" if tta else "no"
    return (
        f"| {px:>3} | {mode:<8} | {tta_name:<3} | {reference:>8} "
        f"| {_figure(model):>9} | {_figure(e2e):>9} | {e2e / model:>9.2f} |"
    )


def _figure(rate: float) -> str:
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--batches", type=int, default=50, help="timed batches per figure")
    parser.add_argument("--warmup", type=int, default=5, help="untimed batches first (compile happens here)")
    parser.add_argument("--px", type=int, nargs="+", default=[96, 224], help="network input sizes")
    parser.add_argument("--no-compile", action="store_true", help="eager rows only")
    parser.add_argument("--no-tta", action="store_true", help="rows without TTA only")
    parser.add_argument("--cpu-threads", type=int, default=None)
    parser.add_argument(
        "--architecture",
        default=RESNET50_FASTAI,
        choices=ARCHITECTURE_NAMES,
        help="the scanner network to time (default ResNet50)",
    )
    parser.add_argument("--no-reference", action="store_true", help="skip the plain torchvision ResNet50 column")
    args = parser.parse_args()

    device = resolve_device(args.device)
    if args.cpu_threads is not None and device.type == "cpu":
        torch.set_num_threads(args.cpu_threads)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(
        f"device: {name}; torch {torch.__version__}; {args.architecture}; batch {args.batch_size}, "
        f"{args.batches} timed batches"
    )
    print("| px  | mode     | TTA | tv-r50/s | model p/s | e2e p/s   | e2e/model |")
    print("|-----|----------|-----|----------|-----------|-----------|-----------|")
    with tempfile.TemporaryDirectory() as tmp:
        for px in args.px:
            checkpoint = Path(tmp) / f"{args.architecture}_{px}.safetensors"
            write_random_checkpoint(checkpoint, args.architecture, input_px=px)
            for compiled in (False,) if args.no_compile else (False, True):
                for tta in (False,) if args.no_tta else (False, True):
                    print(_row(checkpoint, px, compiled, tta, device, args), flush=True)


if __name__ == "__main__":
    main()
