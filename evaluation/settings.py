"""What a preset evaluation measures: its settings, checked once, and the fixed latency protocol."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import train
from convert import Quantization
from evaluation.errors import SettingsError

DEFAULT_PRESETS = ("tutorial", "default")
DEFAULT_SEEDS = (0, 1, 2)
VARIANTS = (Quantization.NONE, Quantization.FLOAT16, Quantization.DYNAMIC_INT8, Quantization.WEIGHT_ONLY_INT8)
VARIANT_LABELS = {
    Quantization.NONE: "float32",
    Quantization.FLOAT16: "float16",
    Quantization.DYNAMIC_INT8: "dynamic-int8",
    Quantization.WEIGHT_ONLY_INT8: "weight-only-int8",
}

# Latency: ranking every movie in the model's vocabulary for one user on one thread,
# as `python -m benchmarks latency` measures it (its interleaved timer, its defaults otherwise).
LATENCY_THREADS = 1
LATENCY_RUNS = 200
LATENCY_WARMUP = 20
LATENCY_USER = "42"
LATENCY_BACKEND = "litert"

TABLE_FILE = "table.md"
RESULTS_FILE = "results.json"


@dataclasses.dataclass(frozen=True)
class PresetSettings:
    """What to evaluate and where to write it.

    Attributes:
        out: the output folder (created; one this tool wrote earlier is cleared).
        presets: training presets, in table order.
        seeds: training seeds; each preset is trained once per seed.
        variants: the .tflite variants to convert and time, in table order.
        max_train_rows: train on the first N training rows only (a quick check whose
            figures are not the presets'); None trains on all of them.
        markdown: where the Markdown table goes; None means OUT/table.md.
    """

    out: Path
    presets: tuple[str, ...] = DEFAULT_PRESETS
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    variants: tuple[Quantization, ...] = VARIANTS
    max_train_rows: Optional[int] = None
    markdown: Optional[Path] = None

    def __post_init__(self):
        for option, values in (("--presets", self.presets), ("--seeds", self.seeds), ("--variants", self.variants)):
            if not values:
                raise SettingsError(f"{option} is empty; give at least one value (see --help)")
            if len(set(values)) != len(values):
                shown = ", ".join(str(getattr(value, "value", value)) for value in values)
                raise SettingsError(f"{option} lists a value twice ({shown}); give each once")
        if any(isinstance(seed, bool) or not isinstance(seed, int) or seed < 0 for seed in self.seeds):
            raise SettingsError(f"--seeds must be non-negative integers, got {', '.join(map(str, self.seeds))}")
        for preset in self.presets:
            require_preset(preset, "--presets")
        unknown = [variant for variant in self.variants if variant not in VARIANTS]
        if unknown:
            raise SettingsError(f"--variants: {unknown[0].value} is not evaluated; choose from {_variant_choices()}")
        if self.max_train_rows is not None and self.max_train_rows < 1:
            raise SettingsError(f"--max-train-rows must be at least 1, got {self.max_train_rows}")
        if self.out.exists() and not self.out.is_dir():
            raise SettingsError(f"--out {self.out} is a file; give a folder path")
        if self.markdown is not None:
            if self.markdown.is_dir():
                raise SettingsError(f"--markdown {self.markdown} is a folder; give a file path such as "
                                    f"{self.markdown / TABLE_FILE}")
            if not self.markdown.parent.is_dir() and self.markdown.parent.resolve() != self.out.resolve():
                raise SettingsError(f"the folder of --markdown {self.markdown} does not exist; create it first")

    @property
    def markdown_path(self) -> Path:
        """Where the Markdown table is written."""
        return self.markdown if self.markdown is not None else self.out / TABLE_FILE

    def to_dict(self) -> dict:
        """Returns a JSON-ready dict (the settings block of results.json)."""
        return {
            "out": str(self.out),
            "presets": list(self.presets),
            "seeds": list(self.seeds),
            "variants": [variant.value for variant in self.variants],
            "max_train_rows": self.max_train_rows,
            "latency": {
                "harness": "python -m benchmarks latency",
                "threads": LATENCY_THREADS,
                "runs": LATENCY_RUNS,
                "warmup": LATENCY_WARMUP,
                "user": LATENCY_USER,
                "backend": LATENCY_BACKEND,
                "method": "rank",
                "candidates": "all",
            },
        }


def require_preset(name: str, option: str) -> None:
    """Checks that `name` is one of train's presets.

    Raises:
        SettingsError: it is not; the message lists the presets.
    """
    if name not in train.PRESETS:
        raise SettingsError(f"{option}: unknown preset {name!r}; choose from {', '.join(sorted(train.PRESETS))}")


def parse_names(text: str) -> tuple[str, ...]:
    """Splits "tutorial, default" into ("tutorial", "default"); blank entries are dropped."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_seeds(text: str) -> tuple[int, ...]:
    """Parses "0,1,2" into (0, 1, 2).

    Raises:
        SettingsError: an entry is not an integer.
    """
    seeds = []
    for entry in parse_names(text):
        try:
            seeds.append(int(entry))
        except ValueError:
            raise SettingsError(f"--seeds entry {entry!r} is not an integer; give e.g. 0,1,2") from None
    return tuple(seeds)


def parse_variants(text: str) -> tuple[Quantization, ...]:
    """Parses "none,float16" (the converter's --quantize names; "float32" means "none").

    Raises:
        SettingsError: an entry names no evaluated variant.
    """
    by_name = {variant.value: variant for variant in VARIANTS} | {"float32": Quantization.NONE}
    variants = []
    for entry in parse_names(text):
        if entry not in by_name:
            raise SettingsError(f"--variants entry {entry!r} is unknown; choose from {_variant_choices()}")
        variants.append(by_name[entry])
    return tuple(variants)


def _variant_choices() -> str:
    return ", ".join(variant.value for variant in VARIANTS) + " (none = float32)"
