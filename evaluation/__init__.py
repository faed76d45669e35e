"""Measure the kit's own figures end to end: `python -m evaluation presets|scale|personalization`.

It drives the other packages as a user would (train, convert, then the
benchmark harness's interleaved timer) and writes each result as JSON and as
a Markdown table that names the command and the machine that produced it.
Nothing in the kit imports this package.

    from evaluation import PresetSettings, evaluate_presets, write_outputs
    evaluation = evaluate_presets(PresetSettings(out=Path("results"), presets=("tutorial",), seeds=(0,)))
    write_outputs(evaluation, command="python -m evaluation presets --out results --presets tutorial --seeds 0")
"""

from evaluation.errors import EvaluationError, SettingsError, StepError
from evaluation.personalization import PersonalizationSettings, evaluate_personalization
from evaluation.presets import evaluate_presets, write_outputs
from evaluation.records import Evaluation
from evaluation.scale import ScaleResults, ScaleSettings, run_scale, write_scale_outputs
from evaluation.settings import PresetSettings

__all__ = [
    "Evaluation",
    "EvaluationError",
    "PersonalizationSettings",
    "PresetSettings",
    "ScaleResults",
    "ScaleSettings",
    "SettingsError",
    "StepError",
    "evaluate_personalization",
    "evaluate_presets",
    "run_scale",
    "write_outputs",
    "write_scale_outputs",
]
