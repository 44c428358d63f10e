"""Small shared helpers for the dataset scripts: input listing and video ids, URL download, atomic (never
overwriting) parquet shards, per-writer error logs, file locks, done markers, work split across processes and
jobs, a bounded unordered process pool, a streaming reader for one big JSON object, dataset cards."""

import glob
import hashlib
import json
import os
import re
import socket
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


def entry_video_id(entry: str) -> str:
    """Video id of one list-file entry (a normalised absolute path or a URL): `<file stem>-<8 hex of sha1(entry)>`.

    It depends only on the entry itself, never on the rest of the list, so growing a list keeps every id. (Before,
    the hash suffix was added only when two entries shared a stem; such ids are unchanged, the others gained it.)
    """
    stem = os.path.splitext(os.path.basename(entry.split("?")[0]))[0] or "video"
    return f"{stem}-{hashlib.sha1(entry.encode('utf-8')).hexdigest()[:8]}"


def list_file_entries(list_file: str) -> list[tuple[str, str]]:
    """`[(video_id, path_or_url)]` from a text file with one path or URL per line (`#` comments, blank lines
    skipped), in file order. Relative paths are relative to the list file; local paths are made absolute and
    normalised (`os.path.normpath`). id = `entry_video_id(entry)`. An entry listed twice is kept once."""
    base = os.path.dirname(os.path.abspath(list_file))
    seen, out = set(), []
    with open(list_file, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not is_url(line):
                line = os.path.normpath(line if os.path.isabs(line) else os.path.join(base, line))
            if line not in seen:
                seen.add(line)
                out.append((entry_video_id(line), line))
    return out


class ErrorLog:
    """Append-only JSON-lines error file with **one writer** (a process, or one input shard of a builder).

    Many writers on a shared filesystem each get their own file (`errors/<writer>.jsonl`, see
    `read_error_records`): `O_APPEND` is atomic on a local disk but not over NFS from several clients."""

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
        return self.read_file(self.path)

    @staticmethod
    def read_file(path: str) -> list[dict]:
        if not os.path.exists(path):
            return []
        out = []
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out


def read_error_records(out_dir: str) -> list[dict]:
    """Every error record of an output folder: the legacy shared `errors.jsonl` plus one file per writer under
    `errors/` (merged on read, in file-name order)."""
    files = [os.path.join(out_dir, "errors.jsonl")] + sorted(glob.glob(os.path.join(out_dir, "errors", "*.jsonl")))
    return [r for f in files if os.path.exists(f) for r in ErrorLog.read_file(f)]


def _fsync_dir(path: str) -> None:
    try:  # make a rename durable
        dfd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def publish_file(tmp: str, final_path: str, overwrite: bool = True) -> None:
    """Move the finished, fsynced `tmp` to `final_path` atomically (same filesystem). With `overwrite=False` an
    existing `final_path` is never replaced: `FileExistsError` (the new name is claimed with `os.link`, which fails
    if the name exists; filesystems without hard links fall back to check-then-rename)."""
    os.makedirs(os.path.dirname(final_path), exist_ok=True)
    if overwrite:
        os.replace(tmp, final_path)
    else:
        try:
            os.link(tmp, final_path)
        except FileExistsError:
            os.remove(tmp)
            raise
        except OSError:  # no hard links here (EPERM/ENOTSUP/EXDEV on some FUSE or object stores)
            if os.path.exists(final_path):
                os.remove(tmp)
                raise FileExistsError(final_path) from None
            os.replace(tmp, final_path)
        else:
            os.remove(tmp)
    _fsync_dir(os.path.dirname(final_path))


def write_parquet_atomic(table, final_path: str, tmp_dir: str, overwrite: bool = True, **write_kwargs) -> None:
    """Write a pyarrow table to `final_path` atomically: temp file in `tmp_dir` (same filesystem), fsync, then
    `publish_file`. A reader (or a crashed-and-restarted writer) sees either no file or the complete file."""
    import pyarrow.parquet as pq

    os.makedirs(tmp_dir, exist_ok=True)
    tmp = os.path.join(tmp_dir, os.path.basename(final_path) + f".{os.getpid()}.tmp")
    pq.write_table(table, tmp, compression="zstd", **write_kwargs)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    publish_file(tmp, final_path, overwrite=overwrite)


def write_text_atomic(path: str, text: str) -> None:
    tmp = f"{path}.{socket.gethostname()}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: str, obj) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_text_atomic(path, json.dumps(obj, sort_keys=True) + "\n")


def writer_tag() -> str:
    """`<host>-<pid>`: unique among live processes on a shared filesystem (temp-file names)."""
    return f"{socket.gethostname()}-{os.getpid()}"


# ----------------------------------------------------------------------------------------------------------------
# locks (a second live run of the same work refuses to start)


class FileLock:
    """An exclusive, non-blocking `fcntl.flock` on `path`, held until `release()` or the process dies (so a
    `kill -9` never leaves a stale lock). Over NFS, Linux emulates `flock` with POSIX byte-range locks, which work
    across clients on NFSv4; Lustre needs the `flock` mount option. See the README before relying on it elsewhere."""

    def __init__(self, path: str):
        self.path, self.fd = path, None

    def acquire(self) -> bool:
        import fcntl

        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{writer_tag()} {time.time():.0f}\n".encode())
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    @staticmethod
    def is_held(path: str) -> bool:
        """Whether another open file holds the lock (try it, release at once)."""
        lock = FileLock(path)
        if lock.acquire():
            lock.release()
            return False
        return True


# ----------------------------------------------------------------------------------------------------------------
# splitting work across processes (`accelerate launch` ranks) and independent jobs (`--shard_id/--num_shards`)


def launch_rank_world() -> tuple[int, int]:
    """`(RANK, WORLD_SIZE)` set by `accelerate launch` / `torchrun` (`(0, 1)` for a plain `python -m`). The builders
    need no process group: each process works alone on its own input shards."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def work_unit(shard_id: int | None, num_shards: int | None, rank: int, world: int) -> tuple[int, int]:
    """`(unit, num_units)` of this process: job `shard_id` of `num_shards`, process `rank` of `world` in it."""
    shard_id, num_shards = shard_id or 0, num_shards or 1
    if not 0 <= shard_id < num_shards:
        raise SystemExit(f"--shard_id must be in [0, --num_shards), got {shard_id} of {num_shards}")
    return shard_id * world + rank, num_shards * world


def owner_unit(key: str, num_units: int) -> int:
    """The unit that owns `key` (an input-shard stem, a video id): a stable hash, independent of any list."""
    return stable_hash(key) % num_units


def check_unique_stems(stems: list[str], what: str) -> None:
    seen = {}
    for s in stems:
        if s in seen:
            raise SystemExit(f"two {what} share the name {s!r}: output shards are named after it; rename one")
        seen[s] = True


# ----------------------------------------------------------------------------------------------------------------
# a bounded, unordered process pool


IDLE = object()  # yielded by `imap_unordered` when nothing finished within `idle_timeout`


def imap_unordered(fn, items, num_workers: int, max_in_flight: int | None = None, idle_timeout: float | None = None,
                   initializer=None, initargs=(), on_crash=None):  # fmt: skip
    """Yield `fn(item)` for every item of the (lazy) iterable `items`, in completion order.

    At most `max_in_flight` (default `2 * num_workers`) items are submitted and not yet consumed, so memory stays
    bounded whatever the input size, and one slow item never holds back the others. Workers are `spawn`ed (safe
    next to CUDA and threads). `num_workers=0` runs inline, in order. With `idle_timeout`, `IDLE` is yielded when
    nothing finished for that long (the caller can do other work). A worker that dies (a decoder segfault) breaks
    the pool: it is rebuilt and the items that were in flight are retried; an item in flight during two breaks is
    given to `on_crash(item)` (its result is yielded) instead of a third try. `fn` should not raise.
    """
    if num_workers <= 0:
        if initializer is not None:
            initializer(*initargs)
        for item in items:
            yield fn(item)
        return
    import multiprocessing
    from collections import deque
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    def new_pool():
        return ProcessPoolExecutor(num_workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=initializer, initargs=initargs)  # fmt: skip

    max_in_flight = max(1, max_in_flight or 2 * num_workers)
    source, exhausted, retry = iter(items), False, deque()
    pending: dict = {}  # future -> (item, crashes seen)
    pool = new_pool()
    try:
        while True:
            while len(pending) < max_in_flight:
                if retry:
                    item, crashes = retry.popleft()
                elif not exhausted:
                    try:
                        item, crashes = next(source), 0
                    except StopIteration:
                        exhausted = True
                        continue
                else:
                    break
                pending[pool.submit(fn, item)] = (item, crashes)
            if not pending:
                return
            done, _ = wait(list(pending), timeout=idle_timeout, return_when=FIRST_COMPLETED)
            if not done:
                yield IDLE
                continue
            broken = False
            # in submission order (`pending` keeps it): iterating the `done` set would order the results that finished
            # together by the futures' hashes, so one worker's FIFO output, and the shards written from it, would
            # change from run to run
            for fut in [f for f in pending if f in done]:
                item, crashes = pending.pop(fut)
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    broken = True
                    retry.append((item, crashes + 1))
                    continue
                yield result
            if broken:
                for fut, (item, crashes) in pending.items():
                    retry.append((item, crashes + 1))
                pending.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool()
                for _ in range(len(retry)):
                    item, crashes = retry.popleft()
                    if crashes >= 2 and on_crash is not None:
                        yield on_crash(item)
                    elif crashes >= 2:
                        raise RuntimeError(f"a worker died twice while processing {item!r}")
                    else:
                        retry.append((item, crashes))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ----------------------------------------------------------------------------------------------------------------
# streaming JSON


def iter_json_object(path: str, chunk_chars: int = 1 << 20):
    """Yield `(key, value)` of a JSON file holding one big object (`{"k": v, ...}`, e.g. HowTo100M's caption.json),
    in file order, holding one entry at a time instead of the whole file."""
    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")
    with open(path, encoding="utf-8") as f:
        buf, pos, eof = "", 0, False

        def fill() -> bool:
            nonlocal buf, pos, eof
            more = f.read(chunk_chars)
            if not more:
                eof = True
                return False
            buf, pos = buf[pos:] + more, 0
            return True

        def skip_ws():
            nonlocal pos
            while True:
                pos = ws.match(buf, pos).end()
                if pos < len(buf) or not fill():
                    return

        def parse():
            nonlocal pos
            while True:
                try:
                    value, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError:
                    if not fill():
                        raise
                    continue
                if end == len(buf) and not eof and fill():  # a number cut at the chunk end: read on, parse again
                    continue
                pos = end
                return value

        def expect(char: str):
            nonlocal pos
            skip_ws()
            if pos >= len(buf) or buf[pos] != char:
                raise ValueError(f"{path}: expected {char!r} at char {f.tell() - len(buf) + pos}")
            pos += 1

        expect("{")
        skip_ws()
        if pos < len(buf) and buf[pos] == "}":
            return
        while True:
            skip_ws()
            key = parse()
            expect(":")
            skip_ws()
            yield key, parse()
            skip_ws()
            if pos < len(buf) and buf[pos] == "}":
                return
            expect(",")


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


def partial_state(timeout_seconds: float | None = None):
    """`accelerate.PartialState`, on CPU when there is no GPU (or `ACCELERATE_USE_CPU=1`).

    Plain `PartialState()` ignores `ACCELERATE_USE_CPU` and, without a GPU, silently falls back to a single process
    even under `accelerate launch --num_processes 2`: every process would then believe it is rank 0 of 1 and do all
    the work. We pass `cpu=True` in that case (gloo backend) and refuse to run if the launcher's WORLD_SIZE and the
    state still disagree. `timeout_seconds` is the process group's collective timeout (torch's default is 10 min
    for NCCL, 30 min for gloo).
    """
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()
    kwargs = {}
    if timeout_seconds is not None:
        import datetime

        kwargs["timeout"] = datetime.timedelta(seconds=float(timeout_seconds))
    state = PartialState(cpu=cpu, **kwargs)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != state.num_processes:
        raise RuntimeError(
            f"launched with WORLD_SIZE={launched} but accelerate set up {state.num_processes} process(es); "
            "refusing to run (every process would redo all the work)"
        )
    return state
