"""Upload a staged folder with huggingface_hub's own client: `create_repo`, `create_branch`, `upload_folder`.

* The endpoint is huggingface_hub's (`HF_ENDPOINT`, default `https://huggingface.co`) unless `endpoint` is given.
* The token is `HF_TOKEN` or the login cache (`hf auth login`), read by `huggingface_hub.get_token()`. It is passed
  to the client and nowhere else: never printed, logged or written (`describe_token` gives a safe description).
* Only files matching `allow_patterns` are uploaded; the patterns come from the staging code, which also refuses to
  stage anything else. `upload_staged` lists exactly which files will go up before uploading.
"""

import fnmatch
import os


def resolve_token() -> str | None:
    """`HF_TOKEN`, else the token saved by `hf auth login` (huggingface_hub's own lookup order)."""
    from huggingface_hub import get_token

    return get_token()


def describe_token(token: str | None) -> str:
    """Where the token came from, without any of its characters."""
    if not token:
        return "no token"
    if os.environ.get("HF_OIDC_RESOURCE"):
        return "token from the OIDC exchange"
    return "token from HF_TOKEN" if os.environ.get("HF_TOKEN") else "token from the login cache"


def files_to_upload(folder: str, allow_patterns: list[str]) -> tuple[list[str], list[str]]:
    """`(uploaded, left_out)`: relative POSIX paths under `folder` that match / do not match `allow_patterns`."""
    uploaded, left_out = [], []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in (".git", ".cache"))
        for name in sorted(files):
            rel = os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
            (uploaded if any(fnmatch.fnmatch(rel, p) for p in allow_patterns) else left_out).append(rel)
    return uploaded, left_out


def upload_staged(
    folder: str,
    repo_id: str,
    repo_type: str,
    allow_patterns: list[str],
    private: bool = False,
    revision: str | None = None,
    commit_message: str = "Upload with push_to_hub",
    commit_description: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    log=print,
):
    """Create the repo (if missing) and the branch `revision` (if missing), then upload the allowlisted files.

    Args:
        folder (`str`): the staged folder.
        repo_id (`str`): `"<org or user>/<name>"`.
        repo_type (`str`): `"model"` or `"dataset"`.
        allow_patterns (`list[str]`): glob patterns (`fnmatch`, relative POSIX paths); nothing else is uploaded.
        private (`bool`): create the repo private (ignored by the Hub if the repo exists).
        revision (`str`, *optional*): target branch; created from `main` when missing. Default `main`.
        commit_message, commit_description: the commit's summary / body.
        endpoint (`str`, *optional*): Hub URL; default huggingface_hub's (`HF_ENDPOINT`).
        token (`str`, *optional*): default `resolve_token()`.
        log: callable for progress lines (never given the token).

    Returns:
        huggingface_hub's `CommitInfo` (`.oid`, `.commit_url`).
    """
    from huggingface_hub import HfApi

    if "/" not in repo_id:
        raise ValueError(f"repo id must be '<org or user>/<name>', got {repo_id!r}")
    if not allow_patterns:
        raise ValueError("allow_patterns is empty: refusing to upload a whole folder")
    token = token if token is not None else resolve_token()
    if not token:
        raise RuntimeError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    uploaded, left_out = files_to_upload(folder, allow_patterns)
    if not uploaded:
        raise RuntimeError(f"nothing in {folder} matches the allowlist {allow_patterns}")
    api = HfApi(endpoint=endpoint, token=token)
    log(f"uploading {len(uploaded)} file(s) to {repo_type} repo {repo_id} at {api.endpoint} ({describe_token(token)})")
    for rel in uploaded:
        log(f"  + {rel}")
    for rel in left_out:
        log(f"  - {rel} (not in the allowlist, not uploaded)")
    repo_url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    log(f"repo: {repo_url}")
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        log(f"branch: {revision}")
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        repo_type=repo_type,
        revision=revision,
        allow_patterns=uploaded,  # the exact file list checked above, not the globs
        commit_message=commit_message,
        commit_description=commit_description,
    )
    log(f"commit: {info.oid} {info.commit_url}")
    return info


__all__ = ["resolve_token", "describe_token", "files_to_upload", "upload_staged"]


def upload_unless_dry_run(
    stage_dir: str, args, repo_type: str, allow_patterns, default_message: str, log=print
) -> int:
    """The end of both push commands: stop after staging with `--dry-run`, else upload the checked folder."""
    if args.dry_run:
        log(f"dry run: not uploading; the repo folder is {stage_dir}")
        return 0
    upload_staged(
        stage_dir,
        args.repo_id,
        repo_type,
        allow_patterns,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message or default_message,
        endpoint=args.endpoint,
        log=log,
    )
    return 0
