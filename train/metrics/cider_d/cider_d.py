"""CIDEr-D (+ BLEU-4, METEOR, ROUGE-L) for video captioning, as a local `evaluate` metric module.

    import evaluate
    metric = evaluate.load("train/metrics/cider_d")  # a local path: loads offline
    metric.compute(predictions=["a man is cooking"], references=[["a man cooks", "someone is cooking food"]])

Scores come from pycocoevalcap (the MS-COCO caption evaluation code that MSR-VTT/MSVD papers report): its `Cider`
is CIDEr-D (Vedantam et al. 2015: stemmed-free n-grams 1..4, document frequencies from the references of the whole
split, Gaussian length penalty sigma=6, clipped counts, x10). Captions are PTB-tokenised with the Stanford tokenizer
(Java) first. CIDEr-D's document frequencies are corpus statistics, so score the WHOLE split in one call; scoring
batches separately and averaging gives different numbers.

Returned values are on pycocoevalcap's scale (CIDEr-D 0.546 is reported as "54.6" in papers).
"""

import datasets
import evaluate


_CITATION = """\
@inproceedings{vedantam2015cider,
  title={CIDEr: Consensus-based Image Description Evaluation},
  author={Vedantam, Ramakrishna and Lawrence Zitnick, C and Parikh, Devi},
  booktitle={CVPR}, year={2015}
}
"""

_DESCRIPTION = "CIDEr-D, BLEU-4, METEOR and ROUGE-L over a whole caption split (pycocoevalcap, PTB tokenisation)."

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one generated caption per video.
    references (`list[list[str]]`): the reference captions of each video (any number per video).
    metrics (`list[str]`, *optional*): subset of ["CIDEr-D", "BLEU-4", "METEOR", "ROUGE-L"] (default: all).
        METEOR and the PTB tokenizer need Java on PATH.
Returns:
    `dict[str, float]` with the requested metrics.
"""

ALL_METRICS = ("CIDEr-D", "BLEU-4", "METEOR", "ROUGE-L")


def coco_scores(predictions, references, metrics=ALL_METRICS) -> dict:
    """The pycocoevalcap calls, shared with `train/evaluate_captions.py`."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} reference lists")
    if not predictions:
        raise ValueError("nothing to score")
    unknown = set(metrics) - set(ALL_METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {ALL_METRICS}")
    gts, res = {}, {}
    for i, (prediction, refs) in enumerate(zip(predictions, references)):
        if isinstance(refs, str) or not refs:
            raise ValueError(f"references[{i}] must be a non-empty list of strings")
        gts[i] = [{"caption": r} for r in refs]
        res[i] = [{"caption": prediction}]
    tokenizer = PTBTokenizer()
    gts, res = tokenizer.tokenize(gts), tokenizer.tokenize(res)
    for i in res:  # an empty prediction tokenises to [] and would crash the scorers
        res[i] = res[i] or [""]
    out = {}
    if "CIDEr-D" in metrics:
        from pycocoevalcap.cider.cider import Cider

        out["CIDEr-D"] = float(Cider().compute_score(gts, res)[0])
    if "BLEU-4" in metrics:
        from pycocoevalcap.bleu.bleu import Bleu

        out["BLEU-4"] = float(Bleu(4).compute_score(gts, res, verbose=0)[0][3])
    if "METEOR" in metrics:
        from pycocoevalcap.meteor.meteor import Meteor

        meteor = Meteor()  # a java subprocess (meteor-1.5.jar), killed when the object is collected
        out["METEOR"] = float(meteor.compute_score(gts, res)[0])
        del meteor
    if "ROUGE-L" in metrics:
        from pycocoevalcap.rouge.rouge import Rouge

        out["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    return out


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CiderD(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
            ),
            codebase_urls=["https://github.com/salaniz/pycocoevalcap"],
            reference_urls=["https://arxiv.org/abs/1411.5726"],
        )

    def _compute(self, predictions, references, metrics=ALL_METRICS):
        return coco_scores(predictions, references, metrics=tuple(metrics))
