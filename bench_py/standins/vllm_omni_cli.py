"""``vllm-omni`` as the stand-in image answers it: the real command lines of each release.

The image carries one pinned vLLM-Omni release unpacked (its metadata and source, never run),
and this program answers to that release's own command line:

* ``vllm-omni --omni --version`` prints vLLM-Omni's version (``--version`` alone: vLLM's);
* ``vllm-omni serve MODEL --omni --host H --port P`` with the release's launch flags —
  0.18: ``--stage-configs-path``; 0.30: ``--deploy-config`` and ``--stage-overrides`` — and a
  flag of the other release refused as argparse refuses it (exit 2, "unrecognized arguments");
* without ``--omni`` the command is plain vLLM's, which cannot load Voxtral.

The memory a stage loads follows the release's merge rule: on 0.18 the stage config file wins
over ``--gpu-memory-utilization``; on 0.30 an explicit flag wins over the deploy config, and
``--stage-overrides`` wins per stage. Stand-in knobs (``--first-audio-delay-ms`` …) are accepted
too, hidden: the real engine would refuse them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from bench_py.standins import upstream
from bench_py.standins.engines import make_engine
from bench_py.standins.tts_server import add_knob_flags, die, knobs_from, serve

PROG = "vllm-omni"


def installed_release(argv: list[str]) -> Path:
    """Where the image's vLLM-Omni release is unpacked. Outside an image, ``--standin-release V``
    (taken out of ``argv``) names a pinned release's cached wheel, or ``VOXBENCH_UPSTREAM`` a path."""
    if "--standin-release" in argv:
        at = argv.index("--standin-release")
        version = argv[at + 1] if at + 1 < len(argv) else ""
        del argv[at : at + 2]
        try:
            return upstream.ensure_wheel(version)
        except upstream.UpstreamError as error:
            raise SystemExit(f"{PROG}: {error}") from None
    override = os.environ.get("VOXBENCH_UPSTREAM")
    if override:
        return Path(override)
    try:
        dist = metadata.distribution("vllm-omni")
    except metadata.PackageNotFoundError:
        raise SystemExit(f"{PROG}: no vLLM-Omni release is installed in this stand-in image") from None
    return Path(str(dist.locate_file("")))


def _stage_overrides(text: str) -> dict[str, dict[str, Any]]:
    """0.30's ``--stage-overrides`` type, with its messages."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"--stage-overrides is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"--stage-overrides must be a JSON object mapping stage_id -> overrides, got {type(value).__name__}"
        )
    for key, overrides in value.items():
        if not str(key).isdigit():
            raise argparse.ArgumentTypeError(
                f"--stage-overrides keys must be non-negative integer stage ids (as strings), got {key!r}"
            )
        if not isinstance(overrides, dict):
            raise argparse.ArgumentTypeError(
                f"--stage-overrides[{key!r}] must be an object, got {type(overrides).__name__}"
            )
    return value


def parser(release: upstream.Release) -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog=PROG)
    cli.add_argument("-v", "--version", action="store_true")
    cli.add_argument("--omni", action="store_true")
    commands = cli.add_subparsers(dest="command")
    serve_cli = commands.add_parser("serve")
    serve_cli.add_argument("model_tag", nargs="?")
    serve_cli.add_argument("--omni", action="store_true", dest="serve_omni")
    serve_cli.add_argument("--model")
    serve_cli.add_argument("--host", default=None)
    serve_cli.add_argument("--port", type=int, default=8000)
    serve_cli.add_argument("--served-model-name", nargs="+")
    for flag in ("--tokenizer-mode", "--config-format", "--load-format", "--dtype"):
        serve_cli.add_argument(flag)
    serve_cli.add_argument("--gpu-memory-utilization", type=float)
    serve_cli.add_argument("--max-num-seqs", type=int)
    serve_cli.add_argument("--trust-remote-code", action="store_true")
    serve_cli.add_argument("--enforce-eager", action="store_true")
    serve_cli.add_argument(release.stage_config_flag, dest="stage_config")
    if release.stage_overrides_flag:
        serve_cli.add_argument(release.stage_overrides_flag, dest="stage_overrides", type=_stage_overrides)
    # The stand-in's own: which real engine speaks, and the test knobs.
    serve_cli.add_argument("--engine", default="espeak-ng", help=argparse.SUPPRESS)
    serve_cli.add_argument("--admin", action="store_true", help=argparse.SUPPRESS)
    add_knob_flags(serve_cli)
    return cli


def loaded_utilizations(
    release: upstream.Release, own: dict[str, Any], args: argparse.Namespace
) -> tuple[list[float], str]:
    """What each stage loads, by the release's merge rule."""
    from bench_py.standins.vllm_omni_face import stage_shares

    if not release.stage_overrides_flag:  # 0.18: the stage config file is all that counts
        if not args.stage_config:
            return stage_shares(own), f"built-in {release.stage_config}"
        data = _read_config(args.stage_config)
        if "stage_args" not in data:
            die(1, f"ValueError: {args.stage_config} is not a stage config: it has no stage_args")
        return stage_shares(data), args.stage_config
    data, source = own, f"built-in {release.stage_config}"
    if args.stage_config:
        data, source = _read_config(args.stage_config), args.stage_config
        if "stage_args" in data:
            die(
                1,
                f"ValueError: Deploy config {args.stage_config} uses the removed `stage_args` schema; define topology "
                "in PipelineConfig and deployment overrides under `stages`.",
            )
    shares = stage_shares(data)
    if args.gpu_memory_utilization is not None:  # an explicit flag beats the deploy config, on every stage
        shares, source = [args.gpu_memory_utilization] * len(shares), f"{source} + --gpu-memory-utilization"
    overrides = getattr(args, "stage_overrides", None) or {}
    for key, values in overrides.items():
        if int(key) >= len(shares):
            die(1, f"ValueError: --stage-overrides names stage {key}; this pipeline has {len(shares)} stages")
        if "gpu_memory_utilization" in values:
            shares[int(key)] = float(values["gpu_memory_utilization"])
    return shares, f"{source} + --stage-overrides" if overrides else source


def _read_config(path: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        die(1, f"cannot load the config {path}: {error}")
    if not isinstance(data, dict):
        die(1, f"cannot load the config {path}: not a mapping")
    return data


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    from bench_py.standins.vllm_omni_face import Loaded, VllmOmniFace, rules_from

    rules = rules_from(installed_release(argv))
    release = rules.release
    if "--omni" not in argv:
        # vLLM-Omni hands everything without --omni to plain vLLM, which has no Voxtral.
        if argv and argv[0] in ("-v", "--version"):
            print(rules.vllm_version)
            return
        die(
            1,
            "ValueError: Model architectures ['VoxtralTTSForConditionalGeneration'] are not supported for now "
            "(plain vLLM: vLLM-Omni serves it with --omni).",
        )
    args = parser(release).parse_args(argv)
    if args.version:
        print(release.version)
        return
    if args.command != "serve":
        parser(release).error("the stand-in plays `serve` only")
    model = args.model or args.model_tag
    if not model:
        die(1, "ValueError: `vllm serve --omni` requires an explicit model.")
    served = (args.served_model_name or [model])[0]
    shares, source = loaded_utilizations(release, rules.stage_config, args)
    face = VllmOmniFace(make_engine(args.engine), knobs_from(args), rules, served, Loaded(shares, source), args.admin)
    serve(face, args.host or "0.0.0.0", args.port)


if __name__ == "__main__":
    main()
