"""What the local ``evaluate`` modules in ``scoring/hub/`` share: their ``MetricInfo`` and input schemas.

Each module in ``scoring/hub/<name>/`` is a thin wrapper of one function of ``scoring``; only its texts and its
``_compute`` differ. The schemas live here so that "audio as a path or as a float array" is written once.
"""
import datasets
import evaluate

AUDIO_PATH = datasets.Value("string")
AUDIO_ARRAY = datasets.Sequence(datasets.Value("float32"))  # [samples], at the caller's sample_rate
VIDEO_PATH = datasets.Value("string")


def audio_against(reference_path: datasets.Value | None = None) -> list[datasets.Features]:
    """Schemas for predictions given as audio paths or arrays [samples].

    References take the same form as the predictions (generated vs reference music), or, with
    ``reference_path``, are always paths (for example the video the music was made for).
    """
    return [datasets.Features({"predictions": AUDIO_PATH, "references": reference_path or AUDIO_PATH}),
            datasets.Features({"predictions": AUDIO_ARRAY, "references": reference_path or AUDIO_ARRAY})]


def metric_info(description: str, citation: str, inputs_description: str,
                features: datasets.Features | list[datasets.Features]) -> evaluate.MetricInfo:
    """The ``MetricInfo`` of one of our modules (texts as the module gives them, its input schema)."""
    return evaluate.MetricInfo(description=description, citation=citation, inputs_description=inputs_description,
                               features=features)
