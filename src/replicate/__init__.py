"""replicate: a re-executable replication of *Towards Precise Scaling Laws for Video Diffusion Transformers*
(Yin et al., CVPR 2025).

The layers, bottom up, as the folders name them (a module imports only from the layers below it; a test holds
the rule). The torch side and the analysis side meet only through files: runs.csv (runs.py), fit.json
(fit.document) and the torch-free configs.

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

Where a change goes: a kernel in kernels/<op>.py, kernels/reference.py (its reference and its
written-out formula) and kernels/__init__.py (its dispatcher and catalog entry: tests, benchmark and book
iterate the catalog); a profile in profiles/NAME.toml (its schema is in profile.py); a new law in its own
fit/<law>.py (its equation and its fitter, as fit/surface.py), fit/pipeline.py (fitted once per bootstrap
resample, and the numbers that get intervals) and fit/document.py (its place in fit.json). fit/laws.py holds
the paper's equations that several fitters share (Eqs. 10-18).
"""

__version__ = "0.1.0"
