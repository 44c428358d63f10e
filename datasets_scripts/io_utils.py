"""Small shared helpers for the dataset scripts: input listing, URL download, atomic parquet shards, error log,
dataset cards."""

import glob
import hashlib
import json
import os
import tempfile
import time
import urllib.request


VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp")


def is_url(path: str) -> bool:
    return isinstance(path, str) and path.lower().startswith(("http://", "https://"))


def download(url: str, timeout: float = 30.0, suffix: str | None = None, tmp_dir: str | None = None) -> str:
    """Download `url` to a new temporary file (caller deletes it); raises `OSError`/`urllib.error.URLError`."""
    if suffix is None:
        suffix = os.path.splitext(url.split("?")[0])[1][:8] or ".mp4"
    fd, tmp = tempfile.mkstemp(suffix=suffix, dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as resp:
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                f.write(chunk)
    except BaseException:
        os.remove(tmp)
        raise
    return tmp


def find_video_file(video_dir: str, stem: str) -> str | None:
    """`video_dir/stem.<ext>` for the first video extension that exists, else None."""
    for ext in VIDEO_EXTENSIONS:
        path = os.path.join(video_dir, stem + ext)
        if os.path.exists(path):
            return path
    return None


def stable_hash(text: str) -> int:
    """Process-independent hash (Python's `hash` is salted per process)."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big")


def list_video_folder(folder: str) -> list[tuple[str, str]]:
    """`[(video_id, path)]` for every video file under `folder` (recursive), sorted; id = relative path without
    extension."""
    out = []
    for root, _, files in os.walk(folder):
        for name in files:
            if name.lower().endswith(VIDEO_EXTENSIONS):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, folder)
                out.append((os.path.splitext(rel)[0].replace(os.sep, "/"), path))
    return sorted(out)


def list_file_entries(list_file: str) -> list[tuple[str, str]]:
    """`[(video_id, path_or_url)]` from a text file with one path or URL per line (`#` comments, blank lines
    skipped). Relative paths are relative to the list file. id = file stem, plus `-<8 hex>` of the entry when two
    entries share a stem."""
    base = os.path.dirname(os.path.abspath(list_file))
    entries = []
    with open(list_file, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not is_url(line) and not os.path.isabs(line):
                line = os.path.join(base, line)
            entries.append(line)
    stems = [os.path.splitext(os.path.basename(e.split("?")[0]))[0] or "video" for e in entries]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    out = []
    for stem, entry in zip(stems, entries):
        vid = stem if counts[stem] == 1 else f"{stem}-{hashlib.sha1(entry.encode()).hexdigest()[:8]}"
        out.append((vid, entry))
    # keep duplicates of the same entry once
    seen, dedup = set(), []
    for vid, entry in out:
        if vid not in seen:
            seen.add(vid)
            dedup.append((vid, entry))
    return dedup


class ErrorLog:
    """Append-only JSON-lines error file shared by all processes (each record is one `write` on an `O_APPEND` file,
    so lines from different processes do not interleave)."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        # a crash can leave a half-written last line: terminate it so the next record starts on its own line
        if os.path.exists(path) and os.path.getsize(path) > 0:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                last = f.read(1)
            if last != b"\n":
                with open(path, "ab") as f:
                    f.write(b"\n")

    def write(self, path: str, reason: str, stage: str, **extra) -> None:
        record = {"path": str(path), "reason": reason, "stage": stage, "time": round(time.time(), 3), **extra}
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def read(self) -> list[dict]:
        """All complete records (a line cut by a crash is ignored)."""
        if not os.path.exists(self.path):
            return []
        out = []
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out


def write_parquet_atomic(table, final_path: str, tmp_dir: str) -> None:
    """Write a pyarrow table to `final_path` atomically: temp file in `tmp_dir` (same filesystem), fsync, `os.replace`.
    A reader (or a crashed-and-restarted writer) sees either no file or the complete file."""
    import pyarrow.parquet as pq

    os.makedirs(tmp_dir, exist_ok=True)
    os.makedirs(os.path.dirname(final_path), exist_ok=True)
    tmp = os.path.join(tmp_dir, os.path.basename(final_path) + f".{os.getpid()}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final_path)
    try:  # make the rename itself durable
        dfd = os.open(os.path.dirname(final_path), os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
    except OSError:
        pass


def write_text_atomic(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def next_shard_index(data_dir: str, prefix: str) -> int:
    """1 + the largest `<prefix>-NNNNN.parquet` counter in `data_dir` (0 if none)."""
    best = -1
    for p in glob.glob(os.path.join(data_dir, f"{prefix}-*.parquet")):
        tail = os.path.basename(p)[len(prefix) + 1 : -len(".parquet")]
        if tail.isdigit():
            best = max(best, int(tail))
    return best + 1


def yaml_features(schema) -> str:
    """`dataset_info.features` YAML lines for a flat/list pyarrow schema (dtype names as in `datasets`)."""
    names = {
        "string": "string",
        "large_string": "large_string",
        "int32": "int32",
        "int64": "int64",
        "double": "float64",
        "float": "float32",
        "binary": "binary",
        "large_binary": "large_binary",
        "bool": "bool",
    }
    lines = []
    for field in schema:
        t = str(field.type)
        if t.startswith("list<"):
            inner = names.get(str(field.type.value_type), str(field.type.value_type))
            lines += [f"  - name: {field.name}", "    list: " + inner]
        else:
            lines += [f"  - name: {field.name}", f"    dtype: {names.get(t, t)}"]
    return "\n".join(lines)


def dataset_card(
    pretty_name: str,
    schema,
    body: str,
    license: str = "other",
    splits: dict[str, str] | None = None,
    tags: tuple[str, ...] = (),
) -> str:
    """README.md text with YAML front matter (`configs` -> parquet globs, `dataset_info.features`, `license`)."""
    splits = splits or {"train": "data/train-*.parquet"}
    data_files = "\n".join(f"  - split: {s}\n    path: {p}" for s, p in splits.items())
    tag_lines = "".join(f"\n- {t}" for t in tags)
    return (
        "---\n"
        f"pretty_name: {pretty_name}\n"
        f"license: {license}\n"
        f"tags:{tag_lines if tags else ' []'}\n"
        "configs:\n- config_name: default\n  data_files:\n"
        f"{data_files}\n"
        "dataset_info:\n  features:\n"
        + "\n".join("  " + line for line in yaml_features(schema).splitlines())
        + "\n---\n\n"
        + body.strip()
        + "\n"
    )


def partial_state():
    """`accelerate.PartialState`, on CPU when there is no GPU (or `ACCELERATE_USE_CPU=1`).

    Plain `PartialState()` ignores `ACCELERATE_USE_CPU` and, without a GPU, silently falls back to a single process
    even under `accelerate launch --num_processes 2`: every process would then believe it is rank 0 of 1 and do all
    the work. We pass `cpu=True` in that case (gloo backend) and refuse to run if the launcher's WORLD_SIZE and the
    state still disagree.
    """
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != state.num_processes:
        raise RuntimeError(
            f"launched with WORLD_SIZE={launched} but accelerate set up {state.num_processes} process(es); "
            "refusing to run (every process would redo all the work)"
        )
    return state
