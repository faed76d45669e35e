"""Every name a package lists in `__all__` imports, one by one and through `import *`."""

import importlib

import pytest

# TensorFlow-free packages first; the others are checked where TensorFlow is installed.
DEVICE_PACKAGES = ("device_runtime", "benchmarks")
PACKAGES = DEVICE_PACKAGES + ("convert", "train", "evaluation")


def _check(name: str) -> None:
    package = importlib.import_module(name)
    missing = [item for item in package.__all__ if not hasattr(package, item)]
    assert not missing, f"{name}.__all__ lists names the package does not have: {missing}"
    namespace: dict = {}
    exec(f"from {name} import *", namespace)  # noqa: S102 - the star import is what is under test
    assert set(package.__all__) <= set(namespace)


@pytest.mark.parametrize("name", DEVICE_PACKAGES)
def test_device_packages_export_every_listed_name(name):
    _check(name)


@pytest.mark.tensorflow
@pytest.mark.parametrize("name", PACKAGES[len(DEVICE_PACKAGES):])
def test_workstation_packages_export_every_listed_name(name):
    _check(name)


def test_the_runtime_errors_the_docs_tell_apps_to_catch_import():
    from device_runtime import ArgumentTypeError, DeviceRuntimeError, InvalidArgumentError

    assert issubclass(InvalidArgumentError, (DeviceRuntimeError, ValueError))
    assert issubclass(ArgumentTypeError, (DeviceRuntimeError, TypeError))
