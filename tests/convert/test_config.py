"""Configuration, tolerances and target tables: refused early, with messages that say what to do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from convert import ConversionConfig, InputError, Quantization, Target, Tolerances
from convert.config import DEFAULT_TOLERANCES
from convert.results import OpInfo
from convert.targets import TARGETS
from convert.tflite import target_op_problems


class TestConfig:
    def test_full_integer_quantization_is_refused_because_of_string_inputs(self):
        with pytest.raises(InputError, match="cannot keep the model's string inputs"):
            ConversionConfig(quantization="full-int8")

    def test_unknown_mode_lists_the_choices(self):
        with pytest.raises(InputError, match="choose one of: none, float16, dynamic-int8, weight-only-int8"):
            ConversionConfig(quantization="int4")

    def test_input_names_come_in_pairs(self):
        with pytest.raises(InputError, match="both --user-input and --item-input"):
            ConversionConfig(user_input="uid")

    def test_strings_are_parsed_into_enums(self):
        config = ConversionConfig(quantization="float16", targets=("tflite-runtime-2.14",))
        assert config.quantization is Quantization.FLOAT16
        assert config.targets == (Target.TFLITE_RUNTIME_2_14,)

    def test_unknown_target_lists_the_choices(self):
        with pytest.raises(InputError, match="litert, litert-xnnpack, tflite-runtime-2.14"):
            ConversionConfig(targets=("tflite-runtime-2.4",))

    def test_every_mode_has_default_tolerances(self):
        for mode in Quantization:
            if mode is not Quantization.FULL_INT8:
                assert ConversionConfig(quantization=mode).effective_tolerances == DEFAULT_TOLERANCES[mode]

    # The kit's goals: float32 within 1e-4 of the SavedModel with top-10 overlap >= 0.99; quantized
    # variants within 0.01 of its RMSE with top-10 overlap >= 0.9. Figures just past a goal must be refused.
    GOOD = {"max_abs_diff": 1e-6, "rmse_diff": 1e-6, "top10_overlap": 1.0, "kendall_tau": 1.0}
    PAST_THE_GOALS = {
        Quantization.NONE: {"max_abs_diff": 1.01e-4, "top10_overlap": 0.989},
        Quantization.FLOAT16: {"rmse_diff": 0.0101, "top10_overlap": 0.899},
        Quantization.DYNAMIC_INT8: {"rmse_diff": 0.0101, "top10_overlap": 0.899},
        Quantization.WEIGHT_ONLY_INT8: {"rmse_diff": 0.0101, "top10_overlap": 0.899},
    }

    @pytest.mark.parametrize("mode", list(PAST_THE_GOALS))
    def test_default_bounds_refuse_figures_past_the_kits_goals(self, mode):
        from convert.parity import failed_checks

        tolerances = ConversionConfig(quantization=mode).effective_tolerances
        assert failed_checks(self.GOOD, tolerances) == []
        for name, figure in self.PAST_THE_GOALS[mode].items():
            failures = failed_checks({**self.GOOD, name: figure}, tolerances)
            assert [failure.check for failure in failures] == [f"parity.{name}"], (mode, name)


class TestTolerances:
    def test_replace_overrides_and_removes_bounds(self):
        tolerances = Tolerances(max_abs_diff=1e-4, top10_overlap=0.99).replace(
            {"max_abs_diff": 1e-3, "top10_overlap": None}
        )
        assert tolerances == Tolerances(max_abs_diff=1e-3)

    def test_unknown_name_lists_the_names(self):
        with pytest.raises(InputError, match="unknown tolerance max_diff; choose from: max_abs_diff, rmse_diff"):
            Tolerances().replace({"max_diff": 1.0})

    @pytest.mark.parametrize("name,value", [("max_abs_diff", -1.0), ("top10_overlap", 1.5), ("kendall_tau", -2.0)])
    def test_out_of_range_values_are_refused(self, name, value):
        with pytest.raises(InputError, match=f"tolerance {name}="):
            Tolerances(**{name: value})


class TestTargetTables:
    def test_dynamic_range_fully_connected_does_not_fit_tflite_runtime_2_14(self):
        problems = target_op_problems(
            [OpInfo("FULLY_CONNECTED", 12), OpInfo("GATHER", 1)], TARGETS[Target.TFLITE_RUNTIME_2_14]
        )
        assert problems == ["FULLY_CONNECTED v12 is newer than tflite-runtime-2.14 supports (v10 at most)"]

    def test_the_same_ops_fit_litert(self):
        assert (
            target_op_problems([OpInfo("FULLY_CONNECTED", 12), OpInfo("DEQUANTIZE", 5)], TARGETS[Target.LITERT]) == []
        )

    def test_an_unmeasured_op_is_refused(self):
        problems = target_op_problems([OpInfo("CONV_2D", 1)], TARGETS[Target.LITERT])
        assert problems == ["CONV_2D v1 is not among the ops measured to load on litert"]

    def test_only_the_xnnpack_target_requires_the_default_delegate(self):
        assert [t for t, spec in TARGETS.items() if spec.requires_default_delegates] == [Target.LITERT_XNNPACK]


def test_importing_convert_does_not_import_tensorflow():
    code = "import sys, convert, convert.runtime_probe; sys.exit('tensorflow' in sys.modules)"
    repository = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=repository, check=False).returncode == 0


def runtime(runtime="ai_edge_litert", version="2.3.0", default=True, builtin=True, loads=True, diff=1e-6):
    from convert.results import DelegateRun, RuntimeCheck, SignatureRun

    def run(ok):
        calls = {
            "serving_default": SignatureRun(True, None, 1.0, 1e-7),
            "top_k": SignatureRun(ok, None if ok else "failed to prepare", 1.0 if ok else None, diff if ok else None),
        }
        return DelegateRun(
            runs=ok,
            error=None if ok else "failed to prepare",
            latency_ms=1.0,
            max_abs_diff=diff if ok else None,
            signatures=calls,
        )

    return RuntimeCheck(
        runtime,
        version,
        "/usr/bin/python3",
        loads,
        None if loads else "Didn't find op",
        run(default) if loads else None,
        run(builtin) if loads else None,
        10,
    )


class TestTargetVerdicts:
    OPS = [OpInfo("FULLY_CONNECTED", 1), OpInfo("GATHER", 1)]

    def test_fallback_to_builtin_kernels_passes_litert_but_not_litert_xnnpack(self):
        from convert.runtimes import check_target

        runtimes = [runtime(default=False)]
        litert = check_target(Target.LITERT, self.OPS, runtimes)
        assert litert.passed and any("only with builtin kernels" in note for note in litert.notes)
        strict = check_target(Target.LITERT_XNNPACK, self.OPS, runtimes)
        assert not strict.passed and "fails with its default delegates (XNNPACK): failed to prepare" in strict.notes[-1]

    def test_a_runtime_that_is_not_installed_leaves_the_table_check(self):
        from convert.runtimes import check_target

        check = check_target(Target.TFLITE_RUNTIME_2_14, [OpInfo("FULLY_CONNECTED", 12)], [runtime()])
        assert check.runtime_verified is None and not check.op_versions_ok and not check.passed
        assert "--runtime-python" in check.notes[-1]

    def test_a_runtime_that_cannot_load_fails_its_target(self):
        from convert.runtimes import check_target

        check = check_target(Target.TFLITE_RUNTIME_2_14, self.OPS, [runtime("tflite_runtime", "2.14.0", loads=False)])
        assert check.runtime_verified is False and "cannot load it: Didn't find op" in check.notes[-1]

    def test_a_runtime_computing_something_else_is_a_failure(self):
        from convert.runtimes import RUNTIME_MAX_ABS_DIFF, runtime_disagreements

        assert runtime_disagreements([runtime(diff=RUNTIME_MAX_ABS_DIFF / 2)]) == []
        failures = runtime_disagreements([runtime(diff=1.5, default=False)])
        assert [f.check for f in failures] == ["runtime.ai_edge_litert.top_k"]
        assert failures[0].figure == 1.5
        assert "builtin kernels differs from the SavedModel by 1.5 on top_k" in failures[0].message
