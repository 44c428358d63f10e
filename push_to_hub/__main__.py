"""`python -m push_to_hub {model,dataset} ...`: stage, check, then upload to the Hub (see `push_to_hub/__init__.py`)."""

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from push_to_hub import dataset, model

    parser = argparse.ArgumentParser(prog="python -m push_to_hub", description=__doc__)
    sub = parser.add_subparsers(dest="kind", required=True)
    for name, module, help_text in (
        ("model", model, "stage + check + upload a trained model (remote-code repo, model card)"),
        ("dataset", dataset, "stage + check + upload pseudolabel captions (parquet + dataset card)"),
    ):
        p = sub.add_parser(name, help=help_text, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
        module.add_arguments(p)
        p.add_argument("--dry-run", metavar="DIR", default=None, help="stage and check into DIR, do not upload")
        p.add_argument("--private", action="store_true", help="create the repo private")
        p.add_argument("--revision", default=None, help="branch to commit to (created from main if missing)")
        p.add_argument("--commit-message", default=None)
        p.add_argument("--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT or https://huggingface.co)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from push_to_hub import dataset, model

    def log(message: str) -> None:
        print(message, flush=True)

    try:
        return (model if args.kind == "model" else dataset).run(args, log=log)
    except Exception as e:  # one readable line; the checks' own messages say what failed
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
