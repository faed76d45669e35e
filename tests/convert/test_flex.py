"""A model that needs TensorFlow (Flex) ops is refused, and the offending ops are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from convert import UnsupportedOpsError, audit_ops
from tests.convert import models

pytestmark = pytest.mark.tensorflow


@pytest.fixture(scope="module")
def flex_saved_model(tmp_path_factory):
    return models.flex_saved_model(tmp_path_factory.mktemp("flex") / "saved_model")


def test_audit_rejects_a_flatbuffer_with_flex_ops(flex_saved_model):
    flatbuffer = models.flex_flatbuffer(flex_saved_model)
    with pytest.raises(UnsupportedOpsError) as raised:
        audit_ops(flatbuffer, "flex.tflite")
    assert raised.value.ops == ("FlexStaticRegexReplace", "FlexStringLength")
    assert "flex.tflite needs Flex (SELECT_TF_OPS) ops FlexStaticRegexReplace, FlexStringLength" in str(raised.value)


def test_converting_it_fails_naming_the_ops_and_writes_nothing(flex_saved_model, tmp_path, capfd):
    from convert.__main__ import main

    capfd.readouterr()
    status = main([str(flex_saved_model), "--out", str(tmp_path / "m.tflite")])
    stderr = capfd.readouterr().err
    assert status == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "StaticRegexReplace, StringLength" in lines[0] and "no Flex delegate" in lines[0]
    assert list(tmp_path.iterdir()) == []
    # The converter's own account is kept for whoever wants the details.
    native_log = Path(lines[0].rsplit(" are in ", 1)[1].rstrip(")"))
    try:
        text = native_log.read_text(encoding="utf-8")
        assert "'tf.StaticRegexReplace' op is neither a custom op nor a flex op" in text
    finally:
        native_log.unlink()


def test_audit_accepts_builtin_ops(conversions):
    ops = audit_ops(conversions.get("float32").tflite_path.read_bytes())
    assert all(not op.is_custom for op in ops)
