"""fit.read: the committed result documents read back through their schemas, the headline rule, and a file that
is not what its name says refused in one line."""

import json
from pathlib import Path

import pytest

from replicate.errors import ConfigError
from replicate.fit.predict import paper_fit
from replicate.fit.read import (
    OPTIMA,
    SURFACE,
    CurvatureSummary,
    LrLawDocument,
    headline,
    law_parameters,
    read_fit,
    read_lr_law,
    read_summary,
)

RESULTS = Path(__file__).resolve().parents[1] / "results"


def test_the_committed_documents_read_back_through_their_schemas():
    fit = read_fit(RESULTS / "cpu" / "fit.json")
    assert fit["mode"] == "hyperparameters" and fit["bootstrap"]["samples"]
    lr_law = read_lr_law(RESULTS / "cpu" / "lr_law.json")
    assert lr_law.keys() == LrLawDocument.__annotations__.keys() and lr_law["ridge"]["value"] > 0
    summary = read_summary(RESULTS / "stage_a" / "summary.json")
    assert summary.keys() == CurvatureSummary.__annotations__.keys()  # written by `replicate curvature` whole
    assert read_fit(RESULTS / "cpu" / "no-such-fit.json") is None


def test_a_file_that_is_not_the_document_is_a_one_line_error(tmp_path):
    path = tmp_path / "fit.json"
    path.write_text(json.dumps({"loss_law": {}}))
    with pytest.raises(ConfigError, match="is not a FitDocument: it lacks batch_size_law") as err:
        read_fit(path)
    assert "\n" not in str(err.value)
    path.write_text("{")
    with pytest.raises(ConfigError, match="not JSON"):
        read_summary(path)


def _fit(converged: bool) -> dict:
    law = {"coef": 2.0, "exp_tokens": 0.5, "exp_params": 0.1}
    surface_law = {"coef": 3.0, "exp_tokens": 0.8, "exp_params": 0.2}
    samples = {f"surface.batch_size_law.{k}": [v, None] for k, v in surface_law.items()}
    samples |= {f"batch_size_law.{k}": [v, v] for k, v in law.items()}
    return {
        "batch_size_law": law,
        "surface": {"converged": converged, "batch_size_law": surface_law},
        "bootstrap": {"samples": samples},
    }


def test_the_headline_is_the_surface_where_it_converged_else_the_optima():
    chosen = headline(_fit(True), "batch_size_law")
    assert chosen.method == SURFACE and chosen.law["coef"] == 3.0 and chosen.samples_prefix == "surface.batch_size_law"
    assert law_parameters(_fit(True), "batch_size_law", sample=0)["exp_tokens"] == 0.8
    assert law_parameters(_fit(True), "batch_size_law", sample=1) is None  # that resample found no minimum
    chosen = headline(_fit(False), "batch_size_law")
    assert chosen.method == OPTIMA and chosen.law["coef"] == 2.0
    assert law_parameters(_fit(False), "batch_size_law", sample=1)["coef"] == 2.0
    assert headline(_fit(False), "batch_size_law", fallback=False).law is None
    assert law_parameters(paper_fit(), "lr_law") == {
        k: paper_fit()["lr_law"][k] for k in ("coef", "exp_tokens", "exp_params")
    }
