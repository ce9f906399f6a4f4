"""replicate: a re-executable replication of *Towards Precise Scaling Laws for Video Diffusion Transformers*
(Yin et al., CVPR 2025).

The data flow: profile (profiles/NAME.toml) -> sweep -> runs.csv -> fit -> fit.json -> report -> chapter
(notebooks/) -> book; `replicate sweep`, `replicate fit` and `make book` are its commands.

The layers, bottom up, as the folders name them (a module imports only from the layers below it;
tests/test_structure.py holds the rule). The torch side and the analysis side meet only through files: runs.csv
(runs.py), fit.json (written by fit.document, read through fit.read) and the torch-free configs.

    contracts, torch-free  errors, io (atomic writes), provenance, progress, paper (the paper's numbers),
                           published (other papers' laws), config (clip, model and training configs; N and
                           FLOP counts), profile (sweep profiles: runs, groups, run ids), runs (records, the
                           runs.csv table, a study's status)
    kernels/               the block's hot ops behind a backend switch: Triton kernels, their PyTorch
                           references, the op catalog
    training/              data (procedural clips), model (Video DiT), diffusion (DDPM loss, validation, DDIM),
                           ensemble (stacked members, their flat buffers, per-member AdamW; ensemble_reference:
                           the earlier optimiser, the oracle), step (a group's step, eager or replayed from a
                           CUDA graph), train (GroupState, train_group), timing, sweep (the resumable runner)
    theory/                the SGD noise scale: sgd (closed forms, torch-free), noise (measured), study
    device/                the lent GPU call: call (folder and clock), preflight, checks, run, ingest
    fit/                   torch-free: laws, optima, loss law, compute, bootstrap, fit.json (document)
    report/                torch-free: study loading, comparisons, sentences, tables; figures
    book                   the notebooks' post-step and the README's generated parts
    face                   cli/ (argparse: training and analysis commands, one library call each), __main__

Where a change goes:
- a chapter: notebooks/NN_name.py (it loads a study with report.open_study, calls report's functions, shows
  report.figures' figures and says what they mean: no fitting, no file parsing) and a line in _toc.yml;
- a figure: report/figures.py (a function of loaded results that returns a Figure carrying its data);
- a table or a sentence: report/ (by job: compare, findings, tables, optima, ...);
- a runs.csv column: runs.COLUMNS and its value in runs.run_rows (and fit/table.py if the fit reads it);
- a law: its own fit/<law>.py (its equation and its fitter, as fit/surface.py), fit/pipeline.py (fitted once
  per bootstrap resample, and the numbers that get intervals), fit/document.py (its place in fit.json) and
  fit/read.py (its type in the schema; the headline rule where it competes with another estimator);
  fit/laws.py holds the paper's equations that several fitters share (Eqs. 10-18);
- a kernel: kernels/<op>.py, kernels/reference.py (its reference and its written-out formula) and
  kernels/__init__.py (its dispatcher and catalog entry: tests, benchmark and book iterate the catalog);
- a profile: profiles/NAME.toml (its schema is profile.py's docstring; `after` names a study it waits for).
"""

__version__ = "0.1.0"
