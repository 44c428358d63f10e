"""Stage a trained FrozenCaptioner as a Hub model repo folder, check it in a clean process, upload it.

`python -m push_to_hub model --model-dir TRAIN_OUT --repo-id org/name [--dry-run STAGE_DIR] ...`

1. **Stage** (`stage_model`): load the training output with the project's classes (strict: no missing or unexpected
   weights), `save_hub_format` it into the staging folder (safetensors, `config.json` with `auto_map`, the
   configuration/modeling/processing `.py` files, tokenizer + processor configs, `generation_config.json`), then write
   `README.md`, a huggingface_hub `ModelCard` (YAML front matter: license, pipeline_tag, base_model, datasets,
   library_name, tags, model-index from the run's `eval_results.json`).
2. **Check** (`verify_in_clean_process`): a fresh `python` (HF_HUB_OFFLINE=1, empty module cache, working directory
   outside the project; the project's own packages must not get imported) runs the card's own usage snippet against the
   staged folder: `AutoModel`/`AutoProcessor.from_pretrained(dir, trust_remote_code=True)`, caption a generated clip
   and an image. It also checks that the classes came from the folder's code (`transformers_modules.*`) and that its
   first-step logits match the in-process model's. Any failure stops the push.
3. **Upload** (`push_to_hub.upload.upload_staged`), only the allowlisted files, unless `--dry-run`.
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile


TEMPLATE = os.path.join(os.path.dirname(__file__), "templates", "model_card.md")

# The only files a model repo gets (the staging folder must hold nothing else).
MODEL_ALLOW_PATTERNS = [
    "README.md",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    "configuration_frozencaptioner.py",
    "modeling_frozencaptioner.py",
    "processing_frozencaptioner.py",
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
]
REQUIRED_FILES = [
    "README.md",
    "config.json",
    "generation_config.json",
    "configuration_frozencaptioner.py",
    "modeling_frozencaptioner.py",
    "processing_frozencaptioner.py",
    "processor_config.json",
    "tokenizer_config.json",
]
REQUIRED_AUTO_MAP = ("AutoConfig", "AutoModel")
PIPELINE_TAGS = ("video-text-to-text", "image-text-to-text")
CHECK_MARKER = "FROZENCAPTIONER_CHECK "
# Keys transformers copies from the *loading* call into tokenizer_config.json: they describe the staging machine, not
# the model (and would make staging depend on HF_HUB_OFFLINE).
LOAD_TIME_KEYS = (
    "is_local",
    "local_files_only",
    "cache_dir",
    "force_download",
    "token",
    "use_auth_token",
    "_commit_hash",
)


# ---------------------------------------------------------------------------------------------------- eval results
def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


# Pretty names of the evaluation sets, keyed by the slug of the names the evaluation script uses.
DATASET_NAMES = {"msrvtt": "MSR-VTT", "msr-vtt": "MSR-VTT", "msr_vtt": "MSR-VTT", "msvd": "MSVD", "vatex": "VATEX"}


def parse_eval_results(data) -> tuple[str | None, list[dict]]:
    """Evaluation JSON -> `(model_name, rows)`; each row is one metric on one dataset split:
    `{"dataset", "dataset_id", "split", "metric", "value", "num_videos", "generation"}`. Adapt only this function when
    the schema changes. Accepted shapes:

    * `train/evaluate_captions.py` (one split per file): `{"dataset_name": "msrvtt", "split": "test",
      "num_videos": 2990, "metrics": {"CIDEr-D": 54.6, ...}, "generation": {"num_beams": 1, ...}, ...}`;
    * the draft schema: `{"model": "...", "results": [{"dataset": "MSR-VTT", "split": "test", "dataset_id": "<hub id,
      optional>", "metrics": {...}, "num_videos": 2990}]}`;
    * a list of either.

    Non-numeric metric values are skipped.
    """
    if isinstance(data, list):
        names, rows = [], []
        for item in data:
            name, more = parse_eval_results(item)
            names.append(name)
            rows += more
        return next((n for n in names if n), None), rows
    if not isinstance(data, dict):
        raise ValueError("eval results must be a JSON object or a list of them")
    results = data.get("results")
    if results is None and "metrics" in data:
        results = [data]
    if not isinstance(results, list):
        raise ValueError("eval results need a 'results' list (or a single object with 'metrics')")
    rows = []
    for res in results:
        dataset = res.get("dataset") or res.get("dataset_name") if isinstance(res, dict) else None
        if not dataset or not isinstance(res.get("metrics"), dict):
            raise ValueError(f"each result needs 'dataset' (or 'dataset_name') and a 'metrics' object, got {res!r}")
        pretty = DATASET_NAMES.get(_slug(dataset), str(dataset))
        for metric, value in res["metrics"].items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            rows.append(
                {
                    "dataset": pretty,
                    "dataset_id": str(res.get("dataset_id") or _slug(pretty)),
                    "split": res.get("split"),
                    "metric": str(metric),
                    "value": float(value),
                    "num_videos": res.get("num_videos"),
                    "generation": res.get("generation"),
                }
            )
    return data.get("model"), rows


def eval_results_to_model_index(rows: list[dict]):
    """Rows from `parse_eval_results` -> huggingface_hub `EvalResult`s (the card's `model-index`)."""
    from huggingface_hub import EvalResult

    return [
        EvalResult(
            task_type="video-text-to-text",
            task_name="Video captioning",
            dataset_type=row["dataset_id"],
            dataset_name=row["dataset"],
            dataset_split=row["split"],
            metric_type=_slug(row["metric"]),
            metric_name=row["metric"],
            metric_value=round(row["value"], 4),
        )
        for row in rows
    ]


def eval_table(rows: list[dict]) -> str:
    if not rows:
        return "No evaluation results were provided with this upload."
    lines = ["| dataset | split | metric | value | videos | decoding |", "|---|---|---|---|---|---|"]
    for r in rows:
        gen = r.get("generation") or {}
        decoding = ", ".join(f"{k}={v}" for k, v in sorted(gen.items())) if isinstance(gen, dict) else str(gen)
        lines.append(
            f"| {r['dataset']} | {r['split'] or ''} | {r['metric']} | {r['value']:.4g} | {r['num_videos'] or ''} | {decoding} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- card
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def hub_id_or_none(name: str | None) -> str | None:
    """A Hub repo id (`org/name`) or None: local paths and empty strings are not valid `base_model` values."""
    if not name or os.path.exists(name) or not _REPO_ID.match(name):
        return None
    return name


def tower_description(vision_config) -> tuple[str, str]:
    """(name for the card, Hub tag) of the vision tower kind: TimeSformer, CLIP/SigLIP vision tower, timm model."""
    kind = vision_config.model_type
    if kind == "timm_wrapper":
        return f"timm `{getattr(vision_config, 'architecture', 'model')}` (per frame)", "timm"
    names = {"timesformer": ("TimeSformer", "timesformer"), "clip_vision_model": ("CLIP vision tower (per frame)", "clip"),
             "siglip_vision_model": ("SigLIP vision tower (per frame)", "siglip")}  # fmt: skip
    return names.get(kind, (kind, kind))


def build_model_card(
    model,
    processor,
    repo_id: str,
    eval_rows: list[dict],
    model_name: str | None = None,
    license: str = "other",
    license_name: str | None = None,
    license_link: str | None = None,
    pipeline_tag: str = "video-text-to-text",
    vision_base_model: str | None = None,
    text_base_model: str | None = None,
    datasets: list[str] | None = None,
    training_data: str | None = None,
    revision: str = "main",
    clip_seconds: float = 8.0,
    eval_source: str | None = None,
):
    """Render the model card (`huggingface_hub.ModelCard`) from `templates/model_card.md`."""
    import torch
    import transformers
    from huggingface_hub import ModelCard, ModelCardData

    from modeling_frozencaptioner.configuration_frozencaptioner import TESTED_TRANSFORMERS

    if pipeline_tag not in PIPELINE_TAGS:
        raise ValueError(f"pipeline_tag must be one of {PIPELINE_TAGS}, got {pipeline_tag!r}")
    cfg = model.config
    tower_name, tower_tag = tower_description(cfg.vision_config)
    vision_base = hub_id_or_none(vision_base_model) or hub_id_or_none(
        getattr(cfg.vision_config, "_name_or_path", None)
    )
    text_base = hub_id_or_none(text_base_model) or hub_id_or_none(getattr(cfg.text_config, "_name_or_path", None))
    base_models = [b for b in (vision_base, text_base) if b]
    model_name = model_name or repo_id.split("/")[-1]
    extra = {}
    if base_models:
        # two base models would otherwise be read by the Hub as a "merge"; the towers are kept and adapters trained
        extra["base_model_relation"] = "finetune"
    if license == "other":
        extra["license_name"] = license_name or "opt-and-timesformer-noncommercial"
        if license_link:
            extra["license_link"] = license_link
    card_data = ModelCardData(
        language=["en"],
        license=license,
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        base_model=base_models or None,
        datasets=list(datasets) if datasets else None,
        tags=["video-captioning", "image-captioning", "frozencaptioner", tower_tag, "opt", "custom_code"],
        model_name=model_name,
        eval_results=eval_results_to_model_index(eval_rows) or None,
        **extra,
    )
    num_params = sum(p.numel() for p in model.parameters())
    num_adapter = sum(p.numel() for p in model.gated_cross_attn_layers.parameters())
    if training_data is None:
        training_data = (
            "Trained on: " + ", ".join(f"[`{d}`](https://huggingface.co/datasets/{d})" for d in datasets) + "."
            if datasets
            else "The uploader did not record the training data of this checkpoint."
        )
    if license == "other":
        license_text = (
            "The weights derive from OPT (released under the OPT-175B license agreement, non-commercial research use) "
            f"and {'TimeSformer (CC BY-NC 4.0)' if tower_tag == 'timesformer' else tower_name} checkpoints; their terms "
            "apply to this model. The code files are Apache-2.0."
        )
    else:
        license_text = (
            f"`{license}`. Check that it is compatible with the terms of the OPT and {tower_name} checkpoints."
        )
    return ModelCard.from_template(
        card_data,
        template_path=TEMPLATE,
        model_name=model_name,
        repo_id=repo_id,
        revision=revision,
        vision_base=vision_base,
        text_base=text_base,
        vision_tower=tower_name,
        vision_layers=getattr(cfg.vision_config, "num_hidden_layers", None) or "?",
        vision_hidden=cfg.vision_hidden_size,
        num_frames=cfg.max_num_frames,
        image_size=cfg.image_size,
        text_layers=cfg.text_config.num_hidden_layers,
        text_hidden=cfg.text_config.hidden_size,
        adapter_layers=", ".join(str(i) for i in cfg.adapter_layers),
        cross_attention=cfg.cross_attention,
        gate_type=cfg.gate_type,
        gate_init=cfg.gate_init,
        num_params=f"{num_params:,}",
        num_adapter_params=f"{num_adapter:,}",
        processor_frames=int(processor.num_frames),
        clip_seconds=f"{clip_seconds:g}",
        transformers_version=transformers.__version__,
        tested_transformers=TESTED_TRANSFORMERS,
        torch_version=torch.__version__.split("+")[0],
        training_data=training_data,
        eval_table=eval_table(eval_rows),
        eval_source=eval_source,
        license_text=license_text,
    )


# ---------------------------------------------------------------------------------------------------- staging
def load_training_output(model_dir: str):
    """Model + processor from a training output folder, with the project's own classes. Strict: raises if any weight
    is missing, unexpected or of the wrong shape."""
    from modeling_frozencaptioner import FrozenCaptionerForConditionalGeneration, FrozenCaptionerProcessor

    model, info = FrozenCaptionerForConditionalGeneration.from_pretrained(
        model_dir, dtype="auto", output_loading_info=True
    )
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if problems:
        raise RuntimeError(f"{model_dir}: the weights do not match the model: {problems}")
    processor = FrozenCaptionerProcessor.from_pretrained(model_dir)
    return model.eval(), processor


def strip_load_time_keys(stage_dir: str) -> None:
    """Remove `LOAD_TIME_KEYS` from the staged tokenizer / processor JSON configs (top level and one level down)."""
    for name in ("tokenizer_config.json", "processor_config.json"):
        path = os.path.join(stage_dir, name)
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        cleaned = {k: v for k, v in data.items() if k not in LOAD_TIME_KEYS}
        for key, value in cleaned.items():
            if isinstance(value, dict):
                cleaned[key] = {k: v for k, v in value.items() if k not in LOAD_TIME_KEYS}
        if cleaned != data:
            with open(path, "w", encoding="utf-8") as f:
                json.dump(cleaned, f, indent=2, sort_keys=True)
                f.write("\n")


def assert_no_token(folder: str) -> None:
    """Raise if the Hub token (`HF_TOKEN` / login cache) appears in any file under `folder`."""
    from push_to_hub.upload import resolve_token

    token = resolve_token()
    if not token:
        return
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                if token.encode() in f.read():
                    raise RuntimeError(f"{os.path.join(root, name)} contains your Hub token: refusing to publish it")


def check_staged_files(stage_dir: str) -> list[str]:
    """Raise unless the staging folder holds every required file, weights, an `auto_map`, and nothing outside the
    allowlist. Returns the file list."""
    from push_to_hub.upload import files_to_upload

    files, stray = files_to_upload(stage_dir, MODEL_ALLOW_PATTERNS)
    if stray:
        raise RuntimeError(f"files outside the allowlist in {stage_dir}: {stray}")
    missing = [f for f in REQUIRED_FILES if f not in files]
    if not any(f.endswith(".safetensors") for f in files):
        missing.append("*.safetensors")
    if not any(f.startswith("tokenizer") or f in ("vocab.json",) for f in files if f != "tokenizer_config.json"):
        missing.append("tokenizer.json (or vocab.json + merges.txt)")
    if missing:
        raise RuntimeError(f"staged model folder {stage_dir} lacks {missing}")
    with open(os.path.join(stage_dir, "config.json")) as f:
        auto_map = json.load(f).get("auto_map") or {}
    with open(os.path.join(stage_dir, "processor_config.json")) as f:
        processor_auto_map = json.load(f).get("auto_map") or {}
    lacking = [k for k in REQUIRED_AUTO_MAP if k not in auto_map]
    if "AutoProcessor" not in {**auto_map, **processor_auto_map}:
        lacking.append("AutoProcessor")
    if lacking:
        raise RuntimeError(f"auto_map lacks {lacking} (config.json / processor_config.json)")
    assert_no_token(stage_dir)
    return files


def stage_model(
    model_dir: str, stage_dir: str, repo_id: str, eval_results: str | list[str] | None = None, **card_kwargs
):
    """Write the Hub repo folder for the training output `model_dir` into `stage_dir` (must be empty or missing).

    `eval_results`: evaluation JSON file(s) (`parse_eval_results`); default `<model_dir>/eval_results.json` when that
    file exists. `card_kwargs` go to `build_model_card`. Returns `(model, processor, card)`.
    """
    if os.path.isdir(stage_dir) and os.listdir(stage_dir):
        raise FileExistsError(f"staging folder {stage_dir} is not empty")
    if os.path.abspath(stage_dir) == os.path.abspath(model_dir):
        raise ValueError("stage into a new folder, not the training output folder")
    model, processor = load_training_output(model_dir)
    if eval_results is None:
        default = os.path.join(model_dir, "eval_results.json")
        eval_paths = [default] if os.path.exists(default) else []
    else:
        eval_paths = [eval_results] if isinstance(eval_results, str) else list(eval_results)
    rows, eval_model_name = [], None
    for path in eval_paths:
        with open(path) as f:
            name, more = parse_eval_results(json.load(f))
        eval_model_name, rows = eval_model_name or name, rows + more
    card_kwargs.setdefault("model_name", eval_model_name)
    card_kwargs.setdefault("eval_source", ", ".join(os.path.basename(p) for p in eval_paths) if rows else None)
    os.makedirs(stage_dir, exist_ok=True)
    model.save_pretrained(stage_dir)  # the Hub remote-code folder: auto_map + the .py files
    processor.save_pretrained(stage_dir)
    strip_load_time_keys(stage_dir)
    card = build_model_card(model, processor, repo_id, rows, **card_kwargs)
    card.save(os.path.join(stage_dir, "README.md"))
    check_staged_files(stage_dir)
    return model, processor, card


# ---------------------------------------------------------------------------------------------------- clean-process check
def card_snippet(readme_text: str) -> str:
    """The first ```python block of the card (the usage snippet)."""
    match = re.search(r"```python\n(.*?)```", readme_text, re.DOTALL)
    if not match:
        raise RuntimeError("the model card has no ```python usage snippet")
    return match.group(1)


_CHECK_CODE = """
# ---- appended by push_to_hub: where the classes came from, first-step logits for the parent to compare
import json as _json
import sys as _sys
_mods = {"model": type(model).__module__, "config": type(model.config).__module__, "processor": type(processor).__module__}
_local = sorted(m for m in _sys.modules if m.split(".")[0] in ("modeling_frozencaptioner", "frozencaptioner"))
_pv = processor(videos=[clip])["pixel_values"]
with torch.inference_mode():
    _ids = model.generate(pixel_values=_pv, max_new_tokens=8)
    _bos = torch.tensor([[model.config.text_config.bos_token_id]])
    model = model.float()  # the parent compares in float32 (the checkpoint may be bf16/fp16)
    _logits = model(pixel_values=_pv.float(), input_ids=_bos).logits[0, -1].float().numpy()
np.save(_sys.argv[2] + "/clip.npy", clip)
np.save(_sys.argv[2] + "/logits.npy", _logits)
print(%r + _json.dumps({"modules": _mods, "local_modules": _local, "caption": processor.batch_decode(_ids)[0],
                      "num_new_tokens": int(_ids.shape[1])}))
"""


def verify_in_clean_process(stage_dir: str, reference_model=None, timeout: float = 1800, log=print) -> dict:
    """Run the card's usage snippet on `stage_dir` in a fresh Python process; raise `RuntimeError` on any failure.

    The process runs with `HF_HUB_OFFLINE=1`, an empty `HF_MODULES_CACHE`, no `PYTHONPATH`, and its working directory
    in a temporary folder (so neither this repository nor a previous dynamic-module cache can stand in for the staged
    code). Checks: the snippet runs; model, config and processor classes live under `transformers_modules`; the
    project's packages were never imported; with `reference_model` given, the first-step logits on the snippet's clip
    match the in-process model's (float32, `atol=1e-4`).
    """
    import numpy as np

    with open(os.path.join(stage_dir, "README.md"), encoding="utf-8") as f:
        snippet = card_snippet(f.read())
    snippet, n = re.subn(r'^repo = ".*"$', "repo = sys.argv[1]", snippet, flags=re.MULTILINE)
    if n != 1:
        raise RuntimeError('the usage snippet must set `repo = "..."` on one line')
    code = "import sys\n" + snippet + _CHECK_CODE % CHECK_MARKER
    with tempfile.TemporaryDirectory(prefix="frozencaptioner-check-") as work:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
        env.update(
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            HF_MODULES_CACHE=os.path.join(work, "modules"),
            HF_HUB_DISABLE_TELEMETRY="1",
            PYTHONNOUSERSITE="1",
            TOKENIZERS_PARALLELISM="false",
        )
        log(f"checking {stage_dir} in a clean process (card snippet, trust_remote_code=True, offline)")
        proc = subprocess.run(
            [sys.executable, "-c", code, os.path.abspath(stage_dir), work],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith(CHECK_MARKER)]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(
                f"clean-process check failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        report = json.loads(lines[-1][len(CHECK_MARKER) :])
        bad = {k: v for k, v in report["modules"].items() if not v.startswith("transformers_modules.")}
        if bad:
            raise RuntimeError(f"classes not loaded from the staged code: {bad}")
        if report["local_modules"]:
            raise RuntimeError(f"the clean process imported the project's packages: {report['local_modules']}")
        if reference_model is not None:
            import torch

            clip = np.load(os.path.join(work, "clip.npy"))
            theirs = np.load(os.path.join(work, "logits.npy"))
            ref = reference_model.float().eval()
            from modeling_frozencaptioner import FrozenCaptionerProcessor

            processor = FrozenCaptionerProcessor.from_pretrained(stage_dir)
            with torch.inference_mode():
                pv = processor(videos=[clip])["pixel_values"]
                bos = torch.tensor([[ref.config.text_config.bos_token_id]])
                ours = ref(pixel_values=pv, input_ids=bos).logits[0, -1].float().numpy()
            diff = float(np.abs(ours - theirs).max())
            report["max_logit_diff"] = diff
            if not np.allclose(ours, theirs, atol=1e-4, rtol=1e-3):
                raise RuntimeError(f"staged model disagrees with the training output: max |logit diff| = {diff:.3g}")
        report["snippet_output"] = proc.stdout[-2000:]
    log(f"clean-process check passed: classes from {report['modules']['model'].rsplit('.', 1)[0]}, sample caption {report['caption']!r}")  # fmt: skip
    return report


# ---------------------------------------------------------------------------------------------------- command
def add_arguments(parser) -> None:
    parser.add_argument("--model-dir", required=True, help="training output folder (save_hub_format layout)")
    parser.add_argument("--repo-id", required=True, help="<org or user>/<name> on the Hub")
    parser.add_argument("--eval-results", action="append", default=None, help="evaluation JSON, repeatable (default: <model-dir>/eval_results.json if present)")  # fmt: skip
    parser.add_argument("--vision-base-model", default=None, help="Hub id of the TimeSformer checkpoint (default: from config)")  # fmt: skip
    parser.add_argument("--text-base-model", default=None, help="Hub id of the OPT checkpoint (default: from config)")
    parser.add_argument("--dataset", dest="datasets", action="append", default=None, help="Hub id of a training dataset (repeatable)")  # fmt: skip
    parser.add_argument("--training-data", default=None, help="free text for the card's Training data section")
    parser.add_argument("--license", default="other", help="card license (default other: OPT + TimeSformer terms)")
    parser.add_argument("--license-name", default=None)
    parser.add_argument("--license-link", default=None)
    parser.add_argument("--pipeline-tag", default="video-text-to-text", choices=PIPELINE_TAGS)
    parser.add_argument("--model-name", default=None, help="card title / model-index name (default: repo name)")
    parser.add_argument("--skip-logit-check", action="store_true", help="do not compare the staged model's logits with the in-process model")  # fmt: skip


def run(args, log=print) -> int:
    from push_to_hub.upload import upload_unless_dry_run

    stage_dir = args.dry_run or tempfile.mkdtemp(prefix="frozencaptioner-model-")
    try:
        model, _, card = stage_model(
            args.model_dir,
            stage_dir,
            args.repo_id,
            eval_results=args.eval_results,
            model_name=args.model_name,
            license=args.license,
            license_name=args.license_name,
            license_link=args.license_link,
            pipeline_tag=args.pipeline_tag,
            vision_base_model=args.vision_base_model,
            text_base_model=args.text_base_model,
            datasets=args.datasets,
            training_data=args.training_data,
            revision=args.revision or "main",
        )
        log(f"staged {args.model_dir} -> {stage_dir}")
        if not card.data.to_dict().get("base_model"):
            log("warning: no base_model in the card: pass --vision-base-model/--text-base-model (Hub ids)")
        try:
            verify_in_clean_process(stage_dir, reference_model=None if args.skip_logit_check else model, log=log)
        except Exception:
            log("the staged model failed its check: nothing was uploaded")
            raise
        return upload_unless_dry_run(
            stage_dir, args, "model", MODEL_ALLOW_PATTERNS, "Upload FrozenCaptioner model", log=log
        )
    finally:
        if not args.dry_run:
            shutil.rmtree(stage_dir, ignore_errors=True)


__all__ = [
    "MODEL_ALLOW_PATTERNS",
    "parse_eval_results",
    "eval_results_to_model_index",
    "build_model_card",
    "stage_model",
    "check_staged_files",
    "verify_in_clean_process",
]
