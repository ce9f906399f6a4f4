"""A study's results folder loaded: runs.csv, fit.json, fit_ema.json and the profile that produced them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from replicate.fit.read import FitDocument, HeldoutSummary, LrLawDocument, read_fit, read_lr_law, read_summary
from replicate.profile import Profile, load_profile


@dataclass
class Study:
    """One results directory: runs.csv, fit.json and the profile that produced them."""

    path: Path
    runs: pd.DataFrame
    fit: FitDocument | None
    profile: Profile | None  # the profile.toml the sweep wrote beside the table (None without one)
    fit_ema: FitDocument | None = None  # the same runs fitted on their EMA weights' loss

    @property
    def name(self) -> str:
        return self.path.name


def load_study(path: str | Path) -> Study | None:
    """The study in `path`, or None where it has no runs table yet."""
    path = Path(path)
    if not (path / "runs.csv").is_file():
        return None
    return Study(
        path,
        pd.read_csv(path / "runs.csv"),
        read_fit(path / "fit.json"),
        study_profile(path),
        read_fit(path / "fit_ema.json"),
    )


def study_profile(path: str | Path) -> Profile | None:
    """The profile.toml that the sweep wrote into the results folder `path`; None where there is none."""
    toml = Path(path) / "profile.toml"
    return load_profile(str(toml)) if toml.is_file() else None


def open_study(path: str | Path, book_profile: str, need_fit: bool = True) -> Study | None:
    """The chapters' prologue: `load_study(path)`, and where the study (or, with `need_fit`, its fit) is missing,
    a note in the page that says how to produce it."""
    study = load_study(path)
    missing = "sweep results" if study is None else "fit" if need_fit and study.fit is None else None
    if missing:
        from IPython.display import Markdown, display

        display(Markdown(f"**No {missing} in `{path}` yet.** Run `make book PROFILE={book_profile}`."))
    return study


def load_lr_law(
    study_dir: str | Path, stage_l_dir: str | Path = "results/stage_l", ema: bool = False
) -> LrLawDocument | None:
    """The learning-rate law that decides Eq. 13's verdict: Stage L's (designed for it) where it has one, else
    the study's own lr_law.json, else None; with `ema`, the same law under the EMA readout (lr_law_ema.json)."""
    name = "lr_law_ema.json" if ema else "lr_law.json"
    return read_lr_law(Path(stage_l_dir) / name) or read_lr_law(Path(study_dir) / name)


def load_heldout(stage_l_dir: str | Path = "results/stage_l") -> HeldoutSummary | None:
    """Stage L's summary.json where it holds the held-out model's checks (the loss law's test at a larger size),
    else None (not trained yet, or no held-out model)."""
    summary = read_summary(Path(stage_l_dir) / "summary.json")
    return summary if summary is not None and summary.get("heldout") else None


def load_json(path: str | Path) -> dict | None:
    """A results file that is none of fit.read's documents (the theory's measurements, say); None without it."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None
