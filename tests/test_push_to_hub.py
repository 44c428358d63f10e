"""Publishing: staging (files, card metadata), the clean-process reload, and full upload + download round trips of the
model and the captions dataset against a Hub-compatible server on 127.0.0.1 (tests/hub_server.py).

The upload runs the real `python -m push_to_hub` command, with huggingface_hub's real client, in a subprocess whose
sockets can only connect to 127.0.0.1 (a `sitecustomize` guard), and `HF_ENDPOINT` pointing at the local server.
"""

import filecmp
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "hf_" + "TeStToKeN" * 4 + "x7Q"  # a fake token: the tests assert it never leaks
VISION_BASE, TEXT_BASE = "facebook/timesformer-base-finetuned-k400", "facebook/opt-1.3b"
# evaluation JSONs as `train/evaluate_captions.py` writes them (one per split; local paths are never published) ...
EVAL_MSRVTT = {
    "dataset_name": "msrvtt", "split": "test", "model_path": "/secret/local/path", "num_videos": 2990,
    "num_skipped_corrupt": 0, "metrics": {"CIDEr-D": 54.6, "BLEU-4": 41.2, "METEOR": 28.1, "ROUGE-L": 60.3},
    "metric_scale": 100, "generation": {"num_beams": 1, "do_sample": False, "max_new_tokens": 20},
}  # fmt: skip
EVAL_MSVD = {**EVAL_MSRVTT, "dataset_name": "msvd", "num_videos": 670, "metrics": {"CIDEr-D": 128.8}}
# ... and the draft multi-result schema
EVAL_DRAFT = {
    "model": "frozencaptioner-draft",
    "results": [
        {"dataset": "MSR-VTT", "split": "test", "metrics": {"CIDEr-D": 54.6, "BLEU-4": 0.41}, "num_videos": 2990},
        {"dataset": "MSVD", "split": "test", "metrics": {"CIDEr-D": 128.8, "note": "n/a"}, "num_videos": 670},
    ],
}

_LOCAL_HOSTS = ("127.0.0.1", "::1", "localhost")
_GUARD = """
import socket

_LOCAL = ("127.0.0.1", "::1", "localhost")
_connect, _getaddrinfo = socket.socket.connect, socket.getaddrinfo


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOCAL:
        raise ConnectionRefusedError(f"test guard: connection to {address!r} refused (only 127.0.0.1 is allowed)")
    return _connect(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if host not in _LOCAL and host is not None:
        raise socket.gaierror(f"test guard: name lookup of {host!r} refused (only 127.0.0.1 is allowed)")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect
socket.getaddrinfo = _guarded_getaddrinfo
"""


def front_matter(text: str) -> dict:
    """Parse a README's YAML front matter with PyYAML (independently of huggingface_hub)."""
    match = re.match(r"^---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, "README.md has no YAML front matter"
    return yaml.safe_load(match.group(1))


def read_all_files(root: str) -> dict[str, bytes]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, root).replace(os.sep, "/")] = open(path, "rb").read()
    return out


@pytest.fixture(scope="module")
def guard_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("netguard")
    (path / "sitecustomize.py").write_text(_GUARD)
    return str(path)


def hub_env(hub_url: str, guard_dir: str, home: str, token: str | None = TOKEN) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and k not in ("HF_TOKEN",)}
    env.update(
        HF_ENDPOINT=hub_url,
        HF_HUB_OFFLINE="0",
        TRANSFORMERS_OFFLINE="0",
        HF_HOME=home,
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_VERBOSITY="debug",  # as much client logging as possible: the token must not be in it
        NO_PROXY="127.0.0.1,localhost",
        PYTHONPATH=os.pathsep.join([guard_dir, REPO_ROOT]),
    )
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def run_push(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "push_to_hub", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)  # fmt: skip


@pytest.fixture
def local_hub(monkeypatch, request):
    """A running LocalHub (token `TOKEN`), with this process's huggingface_hub pointed at it as `HF_ENDPOINT` would
    (conftest sets HF_HUB_OFFLINE=1 and the client reads HF_ENDPOINT at import, so the constants are patched). Any
    connection or name lookup for a non-loopback host is refused and recorded; the test fails if there was one.
    Parametrize indirectly with True for a server that takes `*.safetensors` / `*.parquet` through Git LFS."""
    import socket

    import huggingface_hub.constants as hf_constants
    from hub_server import LocalHub

    attempts = []
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOCAL_HOSTS:
            attempts.append(address)
            raise ConnectionRefusedError(f"test guard: connection to {address!r} refused")
        return connect(sock, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host is not None and host not in _LOCAL_HOSTS:
            attempts.append(host)
            raise socket.gaierror(f"test guard: name lookup of {host!r} refused")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    with LocalHub(token=TOKEN, lfs=getattr(request, "param", False)) as hub:
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hf_constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")  # fmt: skip
        yield hub
    assert attempts == [], f"non-local network access attempted: {attempts}"


# ------------------------------------------------------------------------------------------------ fixtures: inputs
@pytest.fixture(scope="module")
def train_dir(tiny_model_dir, tmp_path_factory):
    """A training output folder: the saved tiny model + eval_results.json + things that must not be published."""
    path = tmp_path_factory.mktemp("train_out")
    shutil.copytree(tiny_model_dir, path, dirs_exist_ok=True)
    (path / "eval_results.json").write_text(json.dumps(EVAL_MSRVTT))
    (path / "eval_msvd.json").write_text(json.dumps(EVAL_MSVD))
    (path / "optimizer.pt").write_bytes(b"not for the hub")
    (path / "checkpoint-10").mkdir()
    (path / "checkpoint-10" / "model.safetensors").write_bytes(b"old")
    (path / "train_log.txt").write_text(f"HF_TOKEN={TOKEN}\n")  # a secret lying around in the run folder
    return str(path)


@pytest.fixture(scope="module")
def staged_model(train_dir, tmp_path_factory):
    from push_to_hub.model import stage_model

    stage = str(tmp_path_factory.mktemp("stage_model") / "repo")
    evals = [os.path.join(train_dir, "eval_results.json"), os.path.join(train_dir, "eval_msvd.json")]
    model, processor, card = stage_model(
        train_dir, stage, "org/frozencaptioner-tiny", eval_results=evals, vision_base_model=VISION_BASE,
        text_base_model=TEXT_BASE, datasets=["org/howto100m-blip-captions"], revision="v1",
    )  # fmt: skip
    return stage, model


@pytest.fixture(scope="module")
def pseudolabel_dir(tmp_path_factory):
    """Real output of `datasets_scripts.pseudolabel` (tiny BLIP teacher) on two synthetic videos and a bad file."""
    from datasets_scripts import pseudolabel
    from datasets_scripts.synthetic import make_test_video
    from frozencaptioner.tiny_teacher import build_tiny_blip

    root = tmp_path_factory.mktemp("pseudolabel")
    videos = root / "videos"
    make_test_video(str(videos / "a.mp4"), seconds=20, fps=5, size=(64, 48))
    make_test_video(str(videos / "b.mp4"), seconds=9, fps=5, size=(64, 48))
    (videos / "c.mp4").write_bytes(b"not a video")
    teacher = build_tiny_blip(str(root / "blip"))
    out = root / "out"
    pseudolabel.main(["--input", str(videos), "--output_dir", str(out), "--teacher", teacher, "--num_workers", "0", "--no_progress"])  # fmt: skip
    assert (out / "README.md").exists() and list((out / "data").glob("*.parquet"))
    return str(out)


# ------------------------------------------------------------------------------------------------ model staging
def test_parse_eval_results():
    from push_to_hub.model import eval_results_to_model_index, parse_eval_results

    name, rows = parse_eval_results(EVAL_MSRVTT)
    assert name is None and len(rows) == 4
    assert rows[0] == {"dataset": "MSR-VTT", "dataset_id": "msr-vtt", "split": "test", "metric": "CIDEr-D",
                       "value": 54.6, "num_videos": 2990, "generation": EVAL_MSRVTT["generation"]}  # fmt: skip
    name, rows = parse_eval_results([EVAL_MSRVTT, EVAL_MSVD])
    assert [(r["dataset"], r["metric"]) for r in rows][-1] == ("MSVD", "CIDEr-D") and len(rows) == 5
    name, rows = parse_eval_results(EVAL_DRAFT)
    assert name == "frozencaptioner-draft"
    assert len(rows) == 3  # the non-numeric "note" is skipped
    results = eval_results_to_model_index(rows)
    assert {r.metric_type for r in results} == {"cider-d", "bleu-4"}
    with pytest.raises(ValueError):
        parse_eval_results({"results": [{"metrics": {"x": 1}}]})  # no dataset
    with pytest.raises(ValueError):
        parse_eval_results("nonsense")


def test_stage_model_contents(staged_model, train_dir):
    from safetensors.torch import load_file

    import modeling_frozencaptioner
    from push_to_hub.model import MODEL_ALLOW_PATTERNS

    stage, _ = staged_model
    files = sorted(os.listdir(stage))
    assert files == sorted(
        ["README.md", "config.json", "generation_config.json", "model.safetensors", "configuration_frozencaptioner.py",
         "modeling_frozencaptioner.py", "processing_frozencaptioner.py", "processor_config.json", "tokenizer.json",
         "tokenizer_config.json"]
    )  # fmt: skip
    assert not {"optimizer.pt", "checkpoint-10", "train_log.txt", "eval_results.json", "eval_msvd.json"} & set(files)
    import fnmatch

    assert all(any(fnmatch.fnmatch(f, p) for p in MODEL_ALLOW_PATTERNS) for f in files)
    config = json.load(open(os.path.join(stage, "config.json")))
    assert config["auto_map"]["AutoModel"] == "modeling_frozencaptioner.FrozenCaptionerForConditionalGeneration"
    assert config["auto_map"]["AutoConfig"] == "configuration_frozencaptioner.FrozenCaptionerConfig"
    assert "AutoModelForImageTextToText" in config["auto_map"]
    processor_config = json.load(open(os.path.join(stage, "processor_config.json")))
    assert processor_config["auto_map"]["AutoProcessor"] == "processing_frozencaptioner.FrozenCaptionerProcessor"
    package = os.path.dirname(modeling_frozencaptioner.__file__)
    for name in ("configuration_frozencaptioner.py", "modeling_frozencaptioner.py", "processing_frozencaptioner.py"):
        assert filecmp.cmp(os.path.join(stage, name), os.path.join(package, name), shallow=False), name
    staged, trained = load_file(os.path.join(stage, "model.safetensors")), load_file(os.path.join(train_dir, "model.safetensors"))  # fmt: skip
    assert staged.keys() == trained.keys()
    assert all((staged[k] == trained[k]).all() for k in staged)
    assert TOKEN not in "".join(open(os.path.join(stage, f), "rb").read().decode("latin-1") for f in files)


def test_model_card_metadata(staged_model):
    stage, _ = staged_model
    text = open(os.path.join(stage, "README.md"), encoding="utf-8").read()
    meta = front_matter(text)
    assert meta["license"] == "other" and meta["license_name"]
    assert meta["pipeline_tag"] in ("video-text-to-text", "image-text-to-text")
    assert meta["library_name"] == "transformers"
    assert meta["base_model"] == [VISION_BASE, TEXT_BASE] and meta["base_model_relation"] == "finetune"
    assert meta["datasets"] == ["org/howto100m-blip-captions"]
    index = meta["model-index"]
    assert index[0]["name"] == "frozencaptioner-tiny"  # the repo name (evaluate_captions.py records no model name)
    values = {
        (r["dataset"]["name"], r["dataset"]["split"], m["name"]): m["value"]
        for r in index[0]["results"]
        for m in r["metrics"]
    }
    assert values[("MSR-VTT", "test", "CIDEr-D")] == 54.6
    assert values[("MSVD", "test", "CIDEr-D")] == 128.8
    assert len(values) == 5
    assert all(r["task"]["type"] == "video-text-to-text" for r in index[0]["results"])
    # usage snippet, version pin, limitations from the paper
    assert 'repo = "org/frozencaptioner-tiny"' in text and "trust_remote_code=True" in text
    assert 'revision="v1"' in text
    import transformers

    from modeling_frozencaptioner.configuration_frozencaptioner import TESTED_TRANSFORMERS

    assert f"tested with `transformers{TESTED_TRANSFORMERS}`" in text and transformers.__version__ in text
    install = next(line for line in text.splitlines() if line.startswith("pip install"))
    assert install == f'pip install "transformers{TESTED_TRANSFORMERS}" torch av', install
    assert "==" not in install
    for needle in (
        "frozen",
        "GIT",
        "hallucinat",
        "bias",
        "center frame",
        "org/howto100m-blip-captions",
        "num_beams=1",
    ):
        assert needle.lower() in text.lower(), needle
    assert "/secret/local/path" not in text


def test_clean_process_reload(staged_model):
    from push_to_hub.model import verify_in_clean_process

    stage, model = staged_model
    report = verify_in_clean_process(stage, reference_model=model, log=lambda m: None)
    for kind in ("model", "config", "processor"):
        assert report["modules"][kind].startswith("transformers_modules."), report["modules"]
    assert report["local_modules"] == []
    assert report["max_logit_diff"] <= 1e-4
    assert report["num_new_tokens"] >= 1


def test_failed_check_stops_the_push(train_dir, tmp_path, monkeypatch, local_hub):
    """The real `run()` with a working local Hub: a staged folder that fails its check uploads nothing at all."""
    import push_to_hub.model
    from push_to_hub.__main__ import build_parser
    from push_to_hub.model import run

    original = push_to_hub.model.strip_load_time_keys

    def strip_then_break(save_dir, *args, **kwargs):
        result = original(save_dir, *args, **kwargs)
        with open(os.path.join(save_dir, "modeling_frozencaptioner.py"), "a") as f:
            f.write("\nraise ImportError('broken on purpose')\n")
        return result

    monkeypatch.setattr(push_to_hub.model, "strip_load_time_keys", strip_then_break)
    hub = local_hub
    args = build_parser().parse_args(
        ["model", "--model-dir", train_dir, "--repo-id", "org/never", "--endpoint", hub.url, "--skip-logit-check"]
    )
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(RuntimeError, match="broken on purpose"):
        run(args, log=lambda m: None)
    assert hub.requests == [] and hub.repos == {}


# ------------------------------------------------------------------------------------------------ uploads
def test_upload_only_allowlisted_files(tmp_path, local_hub):
    from push_to_hub.upload import upload_staged

    folder = tmp_path / "stage"
    (folder / "data").mkdir(parents=True)
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# x\n")
    (folder / "data" / "train-0.parquet").write_bytes(b"PAR1 fake")
    (folder / "secrets.env").write_text(f"HF_TOKEN={TOKEN}\n")
    (folder / "data" / "notes.txt").write_text("local notes")
    lines = []
    hub = local_hub
    upload_staged(str(folder), "org/ds", "dataset", ["README.md", "data/*.parquet"], endpoint=hub.url, token=TOKEN, log=lines.append)  # fmt: skip
    assert sorted(hub.files("org/ds", "dataset")) == [".gitattributes", "README.md", "data/train-0.parquet"]
    assert not any(TOKEN in line for line in lines)
    assert any("secrets.env (not in the allowlist" in line for line in lines)


def test_upload_refuses_without_token(tmp_path, monkeypatch, local_hub):
    from push_to_hub.upload import upload_staged

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_home"))
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "empty_home" / "token"))
    monkeypatch.setattr("huggingface_hub.constants.HF_STORED_TOKENS_PATH", str(tmp_path / "empty_home" / "stored_tokens"))  # fmt: skip
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "README.md").write_text("# x\n")
    with pytest.raises(RuntimeError, match="no Hugging Face token"):
        upload_staged(str(tmp_path / "f"), "org/x", "model", ["README.md"], endpoint=local_hub.url, log=lambda m: None)
    assert local_hub.requests == []


def test_model_push_round_trip(train_dir, staged_model, guard_dir, tmp_path, local_hub):
    """`python -m push_to_hub model` -> local Hub (private repo, new branch) -> snapshot_download -> same bytes; then
    the `frozencaptioner caption` command loads the model by repo id from that Hub."""
    from huggingface_hub import HfApi, snapshot_download
    from test_caption import bikes_path

    hub, home = local_hub, str(tmp_path / "hf_home")
    env = hub_env(hub.url, guard_dir, home)
    args = ["model", "--model-dir", train_dir, "--repo-id", "org/frozencaptioner-tiny", "--private",
            "--revision", "v1", "--commit-message", "Release v1", "--vision-base-model", VISION_BASE,
            "--text-base-model", TEXT_BASE, "--dataset", "org/howto100m-blip-captions",
            "--eval-results", os.path.join(train_dir, "eval_results.json"),
            "--eval-results", os.path.join(train_dir, "eval_msvd.json")]  # fmt: skip
    proc = run_push(args, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "clean-process check passed" in proc.stdout
    assert "test guard" not in proc.stdout + proc.stderr  # debug logs would show a refused connection
    # the token reached the server (so it was really used) and appears nowhere in the output or logs
    assert hub.seen_tokens == {TOKEN}
    assert TOKEN not in proc.stdout + proc.stderr and TOKEN[3:15] not in proc.stdout + proc.stderr
    repo = hub.repo("org/frozencaptioner-tiny")
    assert repo.private is True
    assert set(repo.branches) == {"main", "v1"}
    assert sorted(hub.files("org/frozencaptioner-tiny", revision="main")) == [".gitattributes"]
    head = repo.commits[repo.branches["v1"]]
    assert head["title"] == "Release v1"
    assert sorted(head["files"]) == sorted([".gitattributes", *os.listdir(staged_model[0])])

    api = HfApi(endpoint=hub.url, token=TOKEN)
    assert api.model_info("org/frozencaptioner-tiny", revision="v1").private is True
    with pytest.raises(Exception):  # private: no token, no access
        HfApi(endpoint=hub.url, token=False).model_info("org/frozencaptioner-tiny")
    snapshot = snapshot_download("org/frozencaptioner-tiny", revision="v1", endpoint=hub.url, token=TOKEN, cache_dir=str(tmp_path / "cache"))  # fmt: skip
    downloaded = read_all_files(snapshot)
    assert downloaded.pop(".gitattributes")
    # the staged fixture was made with the same arguments: staging is deterministic, so the bytes are identical
    assert downloaded == read_all_files(staged_model[0])
    assert not any(TOKEN.encode() in data for data in downloaded.values())
    if os.path.isdir(home):
        assert not any(TOKEN.encode() in data for data in read_all_files(home).values())

    # users meet the model by repo id: caption a video with the Hub copy (private, branch v1) with the real command,
    # i.e. AutoModel/AutoProcessor.from_pretrained(repo_id, revision, trust_remote_code=True) through HF_ENDPOINT
    hub.requests.clear()
    proc = subprocess.run(
        [sys.executable, "-m", "frozencaptioner.cli", "caption", bikes_path(), "--model", "org/frozencaptioner-tiny",
         "--revision", "v1", "--format", "json", "--output-dir", str(tmp_path / "caps"), "--max-new-tokens", "3"],
        cwd=REPO_ROOT, env=hub_env(hub.url, guard_dir, str(tmp_path / "hf_home2")), capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert any(path.startswith("/org/frozencaptioner-tiny/resolve/") for _, path in hub.requests)
    record = json.loads((tmp_path / "caps" / "bikes.json").read_text())
    assert record["model"] == "org/frozencaptioner-tiny" and record["revision"] == "v1"
    assert [(s["start"], s["end"]) for s in record["segments"]] == [(0.0, 10.0)]


# ------------------------------------------------------------------------------------------------ dataset
def test_stage_dataset_and_load(pseudolabel_dir, tmp_path):
    import pyarrow.parquet as pq
    from datasets import load_dataset

    from push_to_hub.dataset import stage_dataset, validate_staged_dataset

    stage = str(tmp_path / "ds")
    stage_dataset(pseudolabel_dir, stage, "org/captions", source_datasets=["org/videos"], log=lambda m: None)
    assert sorted(read_all_files(stage)) == ["README.md", "data/train-j00000of00001-r00000-00000.parquet"]
    source = pq.read_table(os.path.join(pseudolabel_dir, "data", "train-j00000of00001-r00000-00000.parquet"))
    ds = load_dataset(stage, split="train", cache_dir=str(tmp_path / "cache"))
    # video_path dropped
    assert ds.column_names == ["video_id", "clip_index", "start", "end", "caption", "teacher", "frame_time"]
    assert ds.num_rows == source.num_rows == 4  # a: 20 s -> 3 clips, b: 9 s -> 1 clip, c: unreadable
    assert list(ds["caption"]) == source.column("caption").to_pylist()
    assert sorted(zip(ds["video_id"], ds["clip_index"], ds["start"], ds["end"])) == [
        ("a", 0, 0.0, 8.0), ("a", 1, 8.0, 16.0), ("a", 2, 16.0, 20.0), ("b", 0, 0.0, 9.0)
    ]  # fmt: skip
    report = validate_staged_dataset(stage, expect_rows=4)
    assert report["num_rows"] == 4

    text = open(os.path.join(stage, "README.md"), encoding="utf-8").read()
    meta = front_matter(text)
    assert meta["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/*.parquet"}]}
    ]
    assert meta["license"] and meta["task_categories"] and meta["size_categories"] == ["n<1K"]
    assert meta["source_datasets"] == ["org/videos"]
    assert [f["name"] for f in meta["dataset_info"]["features"]] == ds.column_names
    teacher = list(ds["teacher"])[0]
    assert f"`{teacher}`" in text
    for needle in ("top_p=0.9", "num_beams=1", "8-second clips", "center frame", "320 px", "licen", "hallucinat",
                   "bias", "temporal", "`video_path` column was removed"):  # fmt: skip
        assert needle.lower() in text.lower(), needle


@pytest.mark.parametrize("local_hub", [False, True], ids=["regular", "lfs"], indirect=True)
def test_dataset_push_round_trip_with_login_cache_token(pseudolabel_dir, guard_dir, tmp_path, local_hub):
    """`python -m push_to_hub dataset`, token from the login cache (no HF_TOKEN) -> snapshot -> load_dataset, and
    `datasets.load_dataset("org/captions")` by repo id through HF_ENDPOINT. The "lfs" case sends the parquet shard
    through the Git LFS batch API (client with `HF_HUB_DISABLE_XET=1`: Xet storage needs a CAS server)."""
    from datasets import load_dataset
    from huggingface_hub import snapshot_download

    hub = local_hub
    home = tmp_path / "hf_home"
    home.mkdir()
    (home / "token").write_text(TOKEN)  # what `hf auth login` writes
    dry = str(tmp_path / "dry")
    env = hub_env(hub.url, guard_dir, str(home), token=None)
    if hub.lfs:
        env["HF_HUB_DISABLE_XET"] = "1"
    proc = run_push(["dataset", "--data-dir", pseudolabel_dir, "--repo-id", "org/captions", "--dry-run", dry], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r for r in hub.requests if r[1] != "/api/agent-harnesses"] == []  # dry run: nothing sent
    proc = run_push(["dataset", "--data-dir", pseudolabel_dir, "--repo-id", "org/captions"], env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "token from the login cache" in proc.stdout
    assert "test guard" not in proc.stdout + proc.stderr
    assert hub.seen_tokens == {TOKEN}
    assert TOKEN not in proc.stdout + proc.stderr
    assert not any(TOKEN in path for _, path in hub.requests)
    repo = hub.repo("org/captions", "dataset")
    assert repo.private is False
    lfs_paths = repo.commits[repo.branches["main"]]["lfs"]
    assert lfs_paths == ({"data/train-j00000of00001-r00000-00000.parquet"} if hub.lfs else set())
    assert any(path.endswith(".git/info/lfs/objects/batch") for _, path in hub.requests) == hub.lfs
    snapshot = snapshot_download("org/captions", repo_type="dataset", endpoint=hub.url, token=TOKEN, cache_dir=str(tmp_path / "cache"))  # fmt: skip
    downloaded = read_all_files(snapshot)
    downloaded.pop(".gitattributes")
    assert downloaded == read_all_files(dry)  # byte-identical to a dry-run staging
    ds = load_dataset(snapshot, split="train", cache_dir=str(tmp_path / "ds_cache"))
    assert ds.num_rows == 4 and "video_path" not in ds.column_names
    assert not any(TOKEN.encode() in data for data in downloaded.values())

    # by repo id, as users will
    env = {**hub_env(hub.url, guard_dir, str(tmp_path / "hf_home2")), "HF_DATASETS_OFFLINE": "0"}
    code = (
        "import datasets, json; ds = datasets.load_dataset('org/captions', split='train'); "
        "print(json.dumps({'rows': ds.num_rows, 'columns': ds.column_names, 'captions': list(ds['caption'])}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == {"rows": 4, "columns": ds.column_names, "captions": list(ds["caption"])}


def test_dataset_push_rejects_bad_input(tmp_path, guard_dir):
    """Missing columns: the command fails before any upload."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "bad" / "data").mkdir(parents=True)
    pq.write_table(pa.table({"video_id": ["a"], "caption": ["x"]}), str(tmp_path / "bad" / "data" / "train-0.parquet"))
    env = hub_env("http://127.0.0.1:9", guard_dir, str(tmp_path / "home"))  # nothing listens there
    proc = run_push(["dataset", "--data-dir", str(tmp_path / "bad"), "--repo-id", "org/bad"], env)
    assert proc.returncode == 1
    assert "lacks columns" in proc.stderr


def test_staging_refuses_files_containing_the_token(tmp_path, monkeypatch):
    from push_to_hub.model import assert_no_token

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    (tmp_path / "README.md").write_text("# fine\n")
    assert_no_token(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"token": TOKEN}))
    with pytest.raises(RuntimeError, match="contains your Hub token") as info:
        assert_no_token(str(tmp_path))
    assert TOKEN not in str(info.value)
