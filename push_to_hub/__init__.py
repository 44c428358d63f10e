"""Publish FrozenCaptioner to the Hugging Face Hub: the trained model (remote-code repo + model card) and the released
pseudolabel captions (parquet dataset repo + dataset card).

    python -m push_to_hub model   --model-dir OUT --repo-id org/frozencaptioner [--dry-run STAGE] [--private] ...
    python -m push_to_hub dataset --data-dir PL_OUT --repo-id org/howto100m-blip-captions [--dry-run STAGE] ...

Both stage a folder, check it (the model in a clean process with `trust_remote_code=True`, the dataset with
`datasets.load_dataset`), and only then upload the allowlisted files with huggingface_hub's client.
"""

from push_to_hub.dataset import DATASET_ALLOW_PATTERNS, stage_dataset, validate_staged_dataset
from push_to_hub.model import MODEL_ALLOW_PATTERNS, parse_eval_results, stage_model, verify_in_clean_process
from push_to_hub.upload import resolve_token, upload_staged
