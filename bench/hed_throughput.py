"""Benchmark (prints figures, asserts nothing): what the HED colour augmentation costs a training
step. Interleaved in one process, so machine load hits both sides alike: a tiny-cnn training step
(forward, backward, SGD) on a 64 x 96 px batch, with and without `training.data.hed_jitter` on
the batch first, alternated `--rounds` times; medians and images/s of each.

    PYTHONPATH=. python bench/hed_throughput.py --rounds 30
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from pcam_scan.defaults import HED_AUGMENT_SIGMA
from pcam_scan.model.architectures import build_network
from pcam_scan.model.names import TINY_CNN
from training.data import hed_jitter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    network = build_network(TINY_CNN, 2).train()
    optimiser = torch.optim.SGD(network.parameters(), lr=1e-3)
    x = torch.rand(args.batch_size, 3, 96, 96)
    y = torch.randint(0, 2, (args.batch_size,))

    def step(augment: bool) -> float:
        start = time.perf_counter()
        batch = hed_jitter(x, HED_AUGMENT_SIGMA) if augment else x
        loss = torch.nn.functional.cross_entropy(network(batch), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        return time.perf_counter() - start

    step(False), step(True)  # warm-up
    plain, augmented = [], []
    for _ in range(args.rounds):
        plain.append(step(False))
        augmented.append(step(True))
    t_plain, t_aug = statistics.median(plain), statistics.median(augmented)
    print(f"tiny-cnn, 96 px, batch {args.batch_size}, CPU, {args.threads} threads, {args.rounds} interleaved rounds")
    print(f"without augmentation: {t_plain * 1000:.1f} ms/step, {args.batch_size / t_plain:.0f} images/s")
    print(f"with HED (sigma {HED_AUGMENT_SIGMA}): {t_aug * 1000:.1f} ms/step, {args.batch_size / t_aug:.0f} images/s")
    print(f"augmented / plain images/s: {t_plain / t_aug:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
