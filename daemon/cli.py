"""`impasto`: the command line. Client commands never import torch."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import shared
from shared import paths
from shared.options import INITS, OPTIMIZERS, POOLINGS, PRECISIONS, PRESETS

EXIT_FAIL, EXIT_USAGE, EXIT_NO_DAEMON, EXIT_CANCELLED = 1, 2, 3, 130


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _layers(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def add_engine_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("engine options")
    g.add_argument("--preset", choices=list(PRESETS), help="size, scales and iterations (default normal)")
    g.add_argument("--size", type=int, help="long side of the output in pixels")
    g.add_argument("--iterations", type=int, help="evaluations at the final scale")
    g.add_argument("--scales", type=int, help="coarse-to-fine scales (1 = single scale)")
    g.add_argument("--evaluations", type=lambda t: [int(x) for x in t.split(",")],
                   help="evaluations per scale, coarsest first, e.g. 60,30,10")
    g.add_argument("--content-weight", type=float)
    g.add_argument("--style-weight", type=float)
    g.add_argument("--tv-weight", type=float)
    g.add_argument("--optimizer", choices=OPTIMIZERS)
    g.add_argument("--learning-rate", type=float, help="Adam step size")
    g.add_argument("--init", choices=INITS)
    g.add_argument("--seed", type=int)
    g.add_argument("--preserve-colors", choices=["luminance", "histogram"])
    g.add_argument("--style-scale", type=float, help="style image size relative to the output")
    g.add_argument("--style-weights", type=_floats, help="blend weights, one per --style")
    g.add_argument("--content-layers", type=_layers)
    g.add_argument("--style-layers", type=_layers)
    g.add_argument("--style-layer-weights", type=_floats)
    g.add_argument("--pooling", choices=POOLINGS)
    g.add_argument("--tolerance", type=float, help="stop a scale when the loss stalls (0 = never)")


_ENGINE_FIELDS = ("preset", "size", "iterations", "scales", "evaluations", "content_weight", "style_weight",
                  "tv_weight", "optimizer", "learning_rate", "init", "seed", "preserve_colors",
                  "style_scale", "style_weights", "content_layers", "style_layers",
                  "style_layer_weights", "pooling", "tolerance")


def engine_options(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in _ENGINE_FIELDS if getattr(args, k, None) is not None}


PRECISION_HELP = ("GPU arithmetic: auto (tf32 on CUDA, else fp32), fp32, tf32, or bf16 "
                  "(faster, a visibly higher loss)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="impasto", description="Neural style transfer (Gatys et al.) for artists.")
    parser.add_argument("--version", action="version", version=f"impasto {shared.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def client_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--address", help=f"daemon address (default {paths.default_address()})")
        p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the daemon")

    p = sub.add_parser("stylize", help="stylize one image (via a running daemon, else in-process)")
    p.add_argument("content", type=Path)
    p.add_argument("--style", action="append", required=True,
                   help="style image file or library name (repeat to blend)")
    p.add_argument("-o", "--output", type=Path, required=True)
    add_engine_options(p)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, mps (in-process only)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help=PRECISION_HELP + " (in-process only)")
    p.add_argument("--weights", help="auto | torchvision | random | [caffe:|torchvision:]FILE "
                   "(in-process only)")
    p.add_argument("--local", action="store_true", help="never use a running daemon")
    p.add_argument("--json", action="store_true", help="JSON lines on stdout")
    client_args(p)

    p = sub.add_parser("send", help="stylize one image on a running daemon")
    p.add_argument("content", type=Path)
    p.add_argument("--style", action="append", required=True)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--priority", choices=["interactive", "batch"], default="interactive")
    add_engine_options(p)
    p.add_argument("--json", action="store_true")
    client_args(p)

    p = sub.add_parser("serve", help="run the daemon: keep VGG19 loaded and serve requests")
    p.add_argument("--bind", help="ZeroMQ endpoint (default tcp://127.0.0.1:5767)")
    p.add_argument("--device", help="auto, cpu, cuda, mps")
    p.add_argument("--precision", choices=PRECISIONS, help=PRECISION_HELP)
    p.add_argument("--weights", help="auto | torchvision | random | [caffe:|torchvision:]FILE")
    p.add_argument("--styles", type=Path, help="style library folder")
    p.add_argument("--config", type=Path, help="TOML file with these settings")
    p.add_argument("--curve", action="store_true", help="require CurveZMQ even on loopback")
    p.add_argument("--watch", type=Path, action="append", help="watch folder (repeatable)")
    p.add_argument("--poll", action="store_true", help="poll watch folders (network shares)")

    p = sub.add_parser("status", help="what the daemon is doing")
    p.add_argument("--json", action="store_true")
    client_args(p)

    p = sub.add_parser("cancel", help="cancel a queued or running job")
    p.add_argument("job")
    client_args(p)

    p = sub.add_parser("styles", help="the daemon's style library")
    ssub = p.add_subparsers(dest="styles_command", required=True)
    q = ssub.add_parser("list")
    q.add_argument("--json", action="store_true")
    client_args(q)
    q = ssub.add_parser("add")
    q.add_argument("name")
    q.add_argument("image", type=Path)
    client_args(q)
    q = ssub.add_parser("remove")
    q.add_argument("name")
    client_args(q)

    p = sub.add_parser("keys", help="CurveZMQ keys for remote use")
    ksub = p.add_subparsers(dest="keys_command", required=True)
    for name, helptext in (("init", "create the server pair and a local client pair"),
                           ("add-client", "create and authorise a client pair"),
                           ("authorize", "authorise a client's public key file")):
        q = ksub.add_parser(name, help=helptext)
        if name == "add-client":
            q.add_argument("name")
        if name == "authorize":
            q.add_argument("public_key", type=Path)
        q.add_argument("--dir", type=Path, help=f"keys folder (default {paths.keys_dir()})")

    p = sub.add_parser("weights", help="fetch or inspect VGG19 weights")
    wsub = p.add_subparsers(dest="weights_command", required=True)
    q = wsub.add_parser("fetch", help="download/convert weights into the cache")
    q.add_argument("spec", nargs="?", default="torchvision")

    p = sub.add_parser("watch", help="watch folders against a running daemon")
    p.add_argument("folders", type=Path, nargs="+")
    p.add_argument("--poll", action="store_true", help="poll (network shares)")
    p.add_argument("--settle", type=float, default=2.0,
                   help="seconds a file must stay unchanged when no close event arrives")
    client_args(p)

    p = sub.add_parser("gimp", help="the GIMP 3 plug-in")
    gsub = p.add_subparsers(dest="gimp_command", required=True)
    for name in ("install", "uninstall", "doctor"):
        q = gsub.add_parser(name)
        q.add_argument("--gimp-dir", type=Path, help="GIMP 3 profile folder")
        if name == "install":
            q.add_argument("--bridge", help="command GIMP runs to reach the daemon")
            q.add_argument("--address")
            q.add_argument("--no-autostart", action="store_true",
                           help="never start a daemon from GIMP")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else (
            logging.INFO if args.command in ("serve", "watch") else logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if args.command in (
            "serve", "watch") else "impasto: %(message)s")
    from daemon.commands import run_command

    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
