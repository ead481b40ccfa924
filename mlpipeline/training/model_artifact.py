"""What a logged model carries so it loads without this repository, and how we read one back.

A model version is an MLflow model directory: the skops dump of the Pipeline, the one code file
the dump refers to (`request_features`, shipped under its own dotted name, see that module), and a
requirements.txt pinning every distribution the loader needs at the versions that trained it, so
`mlflow.pyfunc.load_model` works in a fresh environment made from that file alone.

Loading trusts `TRUSTED_TYPES`, a list fixed here, never the types a file (or its MLmodel) asks to
be trusted: a dump naming anything else is refused with `UntrustedModelError`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# The types in our pipelines' skops dumps beyond those skops trusts by default (scikit-learn's
# estimators and transformers, NumPy arrays, builtins): the request-feature function of the first
# step, NumPy dtypes, and the tree structures of the tree ensembles (ESTIMATORS in candidates.py).
# tests/test_model_standalone.py checks it covers every estimator; extend it only by review.
TRUSTED_TYPES: tuple[str, ...] = (
    "mlpipeline.training.request_features.model_frame",
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
)
# Distributions the loader imports (MLflow's pyfunc, the sklearn flavour, skops, the feature
# code); requirements() pins them and everything they require.
LOADER_DISTRIBUTIONS = (
    "mlflow",
    "scikit-learn",
    "skops",
    "pandas",
    "numpy",
    "scipy",
    "joblib",
    "threadpoolctl",
)
SERIALIZATION_FORMAT = "skops"


class UntrustedModelError(RuntimeError):
    """A model whose dump names types outside TRUSTED_TYPES, or that is not a skops dump."""


def requirements(distributions: Iterable[str] = LOADER_DISTRIBUTIONS) -> list[str]:
    """`name==version` for the distributions and all they require, as installed here.

    Pinning the whole closure (not only the top level) makes the model's environment the one
    that trained it; markers are evaluated for this interpreter and platform.
    """
    pins: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo: list[tuple[str, frozenset[str]]] = [(name, frozenset()) for name in distributions]
    while todo:
        name, extras = todo.pop()
        if (canonicalize_name(name), extras) in seen:
            continue
        seen.add((canonicalize_name(name), extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError as exc:
            raise RuntimeError(
                f"{name} is required to load the model but is not installed here"
            ) from exc
        pins[canonicalize_name(dist.metadata["Name"])] = dist.version
        for line in dist.requires or []:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in {"", *extras}):
                todo.append((requirement.name, frozenset(requirement.extras)))
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


@contextmanager
def shipped_code() -> Iterator[list[str]]:
    """`code_paths` for log_model: the feature module laid out under its dotted name, without
    `__init__.py` files, so MLflow's `code/` directory resolves it as namespace packages."""
    from mlpipeline.training import request_features  # pandas: not at import (DAG parsing)

    parts = request_features.__name__.split(".")
    with tempfile.TemporaryDirectory(prefix="model-code-") as tmp:
        target = Path(tmp).joinpath(*parts).with_suffix(".py")
        target.parent.mkdir(parents=True)
        shutil.copyfile(request_features.__file__, target)
        yield [str(Path(tmp) / parts[0])]


def _untrusted(types: Iterable[str]) -> list[str]:
    return sorted(set(types) - set(TRUSTED_TYPES))


def check_trusted(pipeline: Any) -> None:
    """Refuse, before logging, a pipeline whose dump would name types loading will not trust."""
    import skops.io

    extra = _untrusted(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)))
    if extra:
        raise UntrustedModelError(
            f"the pipeline holds types {extra} that model_artifact.TRUSTED_TYPES does not name, "
            "so no loader would accept it; review them and add them there if they are safe"
        )


def load_pipeline(model_dir: Path, *, what: str) -> Any:
    """The Pipeline of an MLflow model directory, loaded by skops trusting TRUSTED_TYPES only.

    `what` names the model in errors (e.g. "fraud_detector version 7").
    """
    import skops.io
    from mlflow.models import Model
    from skops.io.exceptions import UntrustedTypesFoundException

    flavor = Model.load(model_dir).flavors.get("sklearn") or {}
    found = flavor.get("serialization_format")
    if found != SERIALIZATION_FORMAT:
        raise UntrustedModelError(
            f"{what} is stored as {found or 'no scikit-learn model'}, not a skops dump; only skops "
            "dumps are loaded, since unpickling runs whatever code the file names"
        )
    dump = model_dir / flavor["pickled_model"]
    try:
        return skops.io.load(dump, trusted=list(TRUSTED_TYPES))
    except UntrustedTypesFoundException as exc:
        extra = _untrusted(skops.io.get_untrusted_types(file=dump))
        raise UntrustedModelError(
            f"{what} holds types {extra} outside model_artifact.TRUSTED_TYPES; refusing to load "
            "it (its MLmodel's own trusted list is not consulted)"
        ) from exc
