"""The Markdown tables: figures computed by hand, the command and the machine beside them."""

from __future__ import annotations

from convert import Quantization
from evaluation.presets_table import format_markdown, mean_std, size_cell
from evaluation.aggregate import Aggregate
from tests.evaluation import fakes

VARIANTS = (Quantization.NONE, Quantization.DYNAMIC_INT8)


def _evaluation(tmp_path, load=0.1):
    runs = tuple(
        fakes.seed_run(
            "tutorial", seed, test_rmse=keras, fit_seconds=fit,
            variants=(
                fakes.accepted("none", keras, 600 * 1024, median),
                fakes.rejected("dynamic-int8", 1.25, "1 check failed: top-10 overlap 0.50 < 0.80")
                if seed == 2 else fakes.accepted("dynamic-int8", keras, 250 * 1024, 4 * median),
            ),
        )
        for seed, keras, fit, median in ((0, 1.10, 2.0, 1000.0), (1, 1.12, 3.0, 1100.0), (2, 1.14, 4.0, 1200.0))
    )
    return fakes.evaluation(tmp_path, runs, VARIANTS, load=load)


def test_command_and_machine_are_beside_the_table(tmp_path):
    text = format_markdown(_evaluation(tmp_path), fakes.COMMAND)
    assert f"Produced by `{fakes.COMMAND}` on {fakes.STARTED_AT}." in text
    machine_line = next(line for line in text.splitlines() if line.startswith("Machine: "))
    for fragment in ("Test CPU 9000", "x86_64", "2 of 4 cores usable", "CPython 3.11.7", "numpy 1.26.4",
                     "ai_edge_litert 2.3.0", "tensorflow 2.21.0", "load average 0.10, 0.10, 0.10"):
        assert fragment in machine_line
    assert text.index("Produced by") < text.index("| Preset | Model |")
    assert "issue" not in text.lower()


def test_main_table_rows_by_hand(tmp_path):
    lines = format_markdown(_evaluation(tmp_path), fakes.COMMAND).splitlines()
    # RMSE 1.10/1.12/1.14: 1.1200 ± 0.0200; fit 2/3/4 s: 3.0 ± 1.0; whole run 6 s each: 6.0 ± 0.0.
    assert ("| tutorial | Keras SavedModel | 1.1200 ± 0.0200 | 0.7500 ± 0.0000 | 683.6 KiB (folder) | — "
            "| fit 3.0 ± 1.0; whole run 6.0 ± 0.0 |") in lines
    # Latency 1.0/1.1/1.2 ms: 1.100 ± 0.100; 600 KiB on every seed, so no size spread.
    assert "| tutorial | .tflite float32 | 1.1200 ± 0.0200 | — | 600.0 KiB | 1.100 ± 0.100 | — |" in lines
    # dynamic-int8 accepted on seeds 0 and 1 only: RMSE 1.11 ± 0.0141, latency 4.0/4.4 ms -> 4.200 ± 0.283.
    assert ("| tutorial | .tflite dynamic-int8 | 1.1100 ± 0.0141 [1] (2/3 ok) | — | 250.0 KiB "
            "| 4.200 ± 0.283 | — |") in lines
    assert ("- [1] tutorial dynamic-int8: failed on 1 of 3 seeds: 1 check failed: top-10 overlap 0.50 < 0.80; "
            "the rejected file's test RMSE: 1.2500") in lines


def test_per_seed_table(tmp_path):
    lines = format_markdown(_evaluation(tmp_path), fakes.COMMAND).splitlines()
    header = ("| Preset | Seed | Keras RMSE | NDCG@10 | float32 RMSE | dynamic-int8 RMSE | float32 ms "
              "| dynamic-int8 ms | fit s | train s |")
    assert header in lines
    assert "| tutorial | 2 | 1.1400 | 0.7500 | 1.1400 | failed | 1.200 | — | 4.0 | 6.0 |" in lines


def test_busy_machine_is_said_and_a_quick_check_is_labelled(tmp_path):
    quiet = format_markdown(_evaluation(tmp_path, load=0.1), fakes.COMMAND)
    assert "The machine was shared" not in quiet
    variant = fakes.accepted("none", 1.1, 1000, None, latency=fakes.latency(900.0, load=3.0))
    runs = (fakes.seed_run("tutorial", 0, 1.1, (variant,)),)
    busy = format_markdown(fakes.evaluation(tmp_path, runs, (Quantization.NONE,), seeds=(0,), max_train_rows=3000),
                           fakes.COMMAND)
    # 3.0 on 2 usable cores is above the harness's 0.5 per core.
    assert "The machine was shared: 1-minute load average (this evaluation included) 3.0" in busy
    assert "Trained on the first 3,000 training rows only" in busy
    assert "1.1000 (n=1)" in busy


def test_cells():
    assert mean_std(Aggregate.of([]), 3) == "—"
    assert size_cell(Aggregate.of([2 * 1024 * 1024, 2 * 1024 * 1024])) == "2.00 MiB"
    # Spreads under 0.1 % of the mean (manifest bytes) are hidden; larger ones shown.
    assert size_cell(Aggregate.of([10_240, 10_250])) == "10.0 KiB"
    assert size_cell(Aggregate.of([10_240, 20_480])) == "15.0 KiB ± 7.1 KiB"
