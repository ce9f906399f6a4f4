"""The analysis side (profiles, runs tables, the fit, the report, the paper's numbers) needs no torch: it runs on
a machine with only numpy, scipy, pandas and matplotlib, and `replicate fit` there writes its result."""

import json
import subprocess
import sys
from pathlib import Path

from replicate.fit import synthetic_sweep

ROOT = Path(__file__).resolve().parents[1]
# torch (and triton) made unimportable in the child, as on a machine without them: an import hook raises
# ImportError (a None in sys.modules would not do: scipy looks torch up there and trips over the None)
BLOCK = """import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "triton"):
            raise ImportError(f"No module named {name!r}")
sys.meta_path.insert(0, NoTorch())
"""
TORCH_FREE = (
    "replicate.config",
    "replicate.profile",
    "replicate.runs",
    "replicate.io",
    "replicate.provenance",
    "replicate.paper",
    "replicate.published",
    "replicate.book",
    "replicate.fit",
    "replicate.fit.public",
    "replicate.report",
    "replicate.report.figures",
    "replicate.cli",
)


def _python(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_the_analysis_modules_import_no_torch():
    done = _python(f"import sys, {', '.join(TORCH_FREE)}; assert 'torch' not in sys.modules, 'torch was imported'")
    assert done.returncode == 0, done.stderr


def test_fit_cli_and_fit_benchmark_run_without_torch(tmp_path):
    runs = tmp_path / "runs.csv"
    synthetic_sweep(widths=(32, 48, 64), tokens=tuple(2.0**k for k in range(20, 23))).to_csv(runs, index=False)
    out = tmp_path / "fit.json"
    done = _python(
        BLOCK + "from replicate.cli import main; "
        f"sys.exit(main(['fit', {str(runs)!r}, '--out', {str(out)!r}, '--bootstrap', '2']))"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["provenance"]["git_sha"]
    done = _python(
        BLOCK + f"from replicate.cli import main; sys.exit(main(['predict', '--flops', '1e20', '--fit', {str(out)!r}]))"
    )
    assert done.returncode == 0 and "B_opt" in done.stdout, done.stderr
    bench = tmp_path / "fit_speed.json"
    done = _python(
        BLOCK + f"sys.argv = ['fit_speed', '--resamples', '2', '--out', {str(bench)!r}]; "
        "import runpy; runpy.run_path('benchmarks/fit_speed.py', run_name='__main__')",
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(bench.read_text())["resamples"] == 2
