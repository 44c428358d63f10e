"""The `frozencaptioner` command line.

```
frozencaptioner caption VIDEO_OR_IMAGE... --model DIR_OR_REPO [--format vtt|srt|json|txt[,...]] [--clip-seconds 8]
                [--output-dir DIR] [--batch-size N] [--max-new-tokens N] [--num-beams N]
```

Writes `<output-dir>/<input name>.<format>` for each input and prints the written paths on stdout. Unreadable
inputs are reported on stderr and skipped. Exit status: 0 when at least one input was captioned (every input with
`--strict`), 1 when all inputs failed (any input with `--strict`), 2 on bad arguments.
"""

import argparse
import os
import sys


def _formats(value: str) -> list[str]:
    from frozencaptioner.subtitles import FORMATS

    formats = [f.strip().lower() for f in value.split(",") if f.strip()]
    if "all" in formats:
        return list(FORMATS)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise argparse.ArgumentTypeError(
            f"unknown format {','.join(bad) or value!r}; choose from {', '.join(FORMATS)} or all"
        )
    return list(dict.fromkeys(formats))


def _positive_float(value: str) -> float:
    x = float(value)
    if not x > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return x


def _positive_int(value: str) -> int:
    x = int(value)
    if x < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return x


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="frozencaptioner", description="FrozenCaptioner video captioning tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    cap = sub.add_parser(
        "caption",
        help="caption videos clip by clip (and images) into WebVTT / SRT / JSON / text files",
        description="Split each video into clips by timestamp, caption every clip, write timed captions.",
    )
    cap.add_argument("inputs", nargs="+", metavar="VIDEO", help="video or image files (jpg/png/... = one caption)")
    cap.add_argument("--model", required=True, help="model folder or Hub repo id (loaded with trust_remote_code=True)")
    cap.add_argument(
        "--revision", default=None, help="Hub branch/tag/commit of --model (pin a commit for remote code)"
    )
    cap.add_argument("--format", dest="formats", type=_formats, default=["vtt"], help="vtt, srt, json, txt, a comma list, or all (default vtt)")  # fmt: skip
    cap.add_argument("--clip-seconds", type=_positive_float, default=8.0, help="clip length in seconds (default 8, the paper's)")  # fmt: skip
    cap.add_argument("--min-last-clip", type=_positive_float, default=None, help="shortest remainder kept as its own last clip (default clip-seconds/2; shorter ones extend the previous clip)")  # fmt: skip
    cap.add_argument("--output-dir", default=".", help="where to write the caption files (default: current directory)")
    cap.add_argument("--batch-size", type=_positive_int, default=8, help="clips per generate() call (default 8)")
    cap.add_argument("--max-new-tokens", type=_positive_int, default=20, help="caption length limit in tokens (default 20)")  # fmt: skip
    cap.add_argument("--min-new-tokens", type=int, default=None, help="forbid end-of-caption before this many tokens")
    cap.add_argument("--num-beams", type=_positive_int, default=1, help="beam search width (default 1: greedy, as in the paper's evaluation)")  # fmt: skip
    cap.add_argument("--num-frames", type=_positive_int, default=None, help="frames per clip (default: the processor's, capped at the model's maximum)")  # fmt: skip
    cap.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    cap.add_argument("--dtype", default=None, choices=["auto", "float32", "float16", "bfloat16"], help="model dtype (default float32 on CPU, auto on GPU)")  # fmt: skip
    cap.add_argument("--backend", default="auto", choices=["auto", "decord", "pyav", "torchcodec"], help="frame decoder (default auto)")  # fmt: skip
    cap.add_argument("--no-progress", action="store_true", help="no progress bar")
    cap.add_argument("--strict", action="store_true", help="exit 1 if any input fails (default: only if all fail)")
    return parser


def _output_paths(inputs: list[str], output_dir: str, formats: list[str]) -> list[dict[str, str]]:
    """`<output_dir>/<stem>.<fmt>`; inputs sharing a file name get `<stem>-2`, `<stem>-3`, ... (first one unsuffixed)."""
    seen: dict[str, int] = {}
    out = []
    for path in inputs:
        stem = os.path.splitext(os.path.basename(os.path.normpath(path)))[0] or "input"
        seen[stem] = seen.get(stem, 0) + 1
        name = stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"
        out.append({fmt: os.path.join(output_dir, f"{name}.{fmt}") for fmt in formats})
    return out


def caption_main(args: argparse.Namespace) -> int:
    from frozencaptioner.captioning import caption_videos, load_captioner
    from frozencaptioner.subtitles import write_captions

    model, processor = load_captioner(args.model, revision=args.revision, device=args.device, dtype=args.dtype)
    generate_kwargs = {"min_new_tokens": args.min_new_tokens} if args.min_new_tokens else {}
    results = caption_videos(
        args.inputs,
        model,
        processor,
        clip_seconds=args.clip_seconds,
        min_last_clip=args.min_last_clip,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        num_beams=args.num_beams,
        num_frames=args.num_frames,
        backend=args.backend,
        progress=False if args.no_progress else None,
        generate_kwargs=generate_kwargs,
    )
    failed = 0
    for result, targets in zip(results, _output_paths(args.inputs, args.output_dir, args.formats)):
        if not result.ok:
            failed += 1
            print(f"error: skipped {result.error}", file=sys.stderr)
            continue
        record = {**result.to_dict(), "model": os.fspath(args.model), "revision": args.revision}
        try:
            for fmt, target in targets.items():
                print(write_captions(record, target, fmt))
        except (OSError, ValueError) as e:
            failed += 1
            print(f"error: could not write captions of {result.path}: {e}", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(results)} input(s) could not be captioned", file=sys.stderr)
    if failed == len(results) or (args.strict and failed):
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "caption":
        return caption_main(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
