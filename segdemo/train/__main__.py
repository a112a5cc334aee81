"""``python -m segdemo.train NAME``: reproduce a shipped weights file from scratch."""

from __future__ import annotations

import argparse

import torch

from segdemo.registry import usable_device
from segdemo.train import click_net, flowers, instances, sam_tiny, scenes
from segdemo.train.loop import Run

TRAINERS = {
    **{name: flowers.train for name in flowers.RECIPES},
    **{name: scenes.train for name in scenes.RECIPES},
    **{name: instances.train for name in instances.RECIPES},
    "sam_tiny": sam_tiny.train,
    "click_net": click_net.train,
}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=sorted(TRAINERS), help="registered model to train")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (default: recipe)")
    parser.add_argument("--seed", type=int, default=0, help="seed for initialisation and sampling")
    parser.add_argument("--resume", action="store_true", help="continue from checkpoints/NAME.pt")
    parser.add_argument("--out", default=None, help="weights file to write (default: weights/)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    parser.add_argument("--device", default="cpu", help="torch device to train on (cpu, cuda)")
    parser.add_argument(
        "--workers", type=int, default=0, help="processes that render the data ahead (0: none)"
    )
    return parser


def main(args: argparse.Namespace) -> None:
    try:
        usable_device(args.device)
    except ValueError as err:
        raise SystemExit(f"segdemo.train: {err}") from None
    torch.set_num_threads(args.threads)
    run = Run(args.steps, args.seed, args.resume, args.out, args.device, args.workers)
    TRAINERS[args.name](args.name, run)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
