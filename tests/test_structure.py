"""The house's structure, held against its source (read, not run). The layers, as the folders name them: the
contracts at the bottom import only each other and no torch; the kernels import only the contracts; training imports
the contracts and the kernels; the fit imports only the contracts; the report imports neither training nor the device
call (nor the kernels, nor the torch side of the theory); the device call sits on training; the face (cli, __main__)
may import anything. No function of the package is longer than a hundred lines, but the Triton kernels. And the
chapters load, call, plot and say: no fitting, no file read by hand, no table built in a notebook."""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "replicate"
CONTRACTS = ("errors", "io", "provenance", "progress", "paper", "published", "config", "profile", "runs")
# the layer of a module: its folder, a contract's own name, or the module itself where its layer is one file
LAYER_OF = {**{name: "contracts" for name in CONTRACTS}, "theory.sgd": "contracts", "book": "book"}
ALLOWED = {
    "contracts": {"contracts"},
    "kernels": {"contracts", "kernels"},
    "training": {"contracts", "kernels", "training"},
    "theory": {"contracts", "kernels", "training", "theory"},
    "fit": {"contracts", "fit"},
    "report": {"contracts", "fit", "report"},
    "device": {"contracts", "kernels", "training", "device"},
    "book": {"contracts", "fit", "report", "book"},
}
TORCH = ("torch", "triton")


def _layer(module: str) -> str:
    """The layer of `module` (a dotted name under replicate, e.g. "fit.surface")."""
    if module in LAYER_OF:
        return LAYER_OF[module]
    return module.split(".")[0]


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(p for p in parts if p != "__init__")
        out[name or "__init__"] = path
    return out


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module imported, at import time) for every import statement of the file: at import time unless it stands
    inside a function or under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    lazy: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or (
            isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
        ):
            lazy.update(id(n) for n in ast.walk(node) if n is not node)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, id(node) not in lazy) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{alias.name}" for alias in node.names] if node.module == "replicate" else []
            out += [(name, id(node) not in lazy) for name in names or [node.module]]
    return out


def _internal(name: str, modules: dict[str, Path]) -> str | None:
    """The package module that an imported name `replicate.x.y[.z]` refers to (None outside the package)."""
    if not name.startswith("replicate."):
        return None
    parts = name.split(".")[1:]
    while parts and ".".join(parts) not in modules:
        parts.pop()  # a name imported from a module: from replicate.fit import fit_runs
    return ".".join(parts) if parts else None


def test_every_module_imports_only_the_layers_below_it():
    modules = _modules()
    broken = []
    for name, path in modules.items():
        layer = _layer(name)
        if layer not in ALLOWED:
            continue  # the face
        for imported, _ in _imports(path):
            target = _internal(imported, modules)
            if target is not None and _layer(target) not in ALLOWED[layer]:
                broken.append(f"{name} ({layer}) imports {target} ({_layer(target)})")
    assert broken == []


def test_contracts_and_the_analysis_side_import_no_torch_when_imported():
    modules = _modules()
    torch_free = [n for n in modules if _layer(n) in ("contracts", "fit", "report", "book")]
    assert {"config", "runs", "fit.document", "report.figures", "theory.sgd"} <= set(torch_free)
    found = [
        f"{name} imports {imported}"
        for name in torch_free
        for imported, eager in _imports(modules[name])
        if eager and imported.split(".")[0] in TORCH
    ]
    assert found == []


def test_the_rules_can_fail():
    # a report module that imported the trainer, or a contract that imported torch, would be named
    modules = _modules()
    assert _layer(_internal("replicate.training.train.train", modules)) not in ALLOWED["report"]
    assert _internal("replicate.fit.fit_runs", modules) == "fit"
    assert ("torch", True) in _imports(modules["training.model"])
    assert ("torch", False) in _imports(modules["provenance"])  # imported inside a function: at use, not import


LONGEST = 100  # lines of a function, its docstring included; Triton kernels (@triton.jit) are exempt


def _long_functions(root: Path) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            jit = any("jit" in ast.unparse(d) for d in node.decorator_list)
            if not jit and node.end_lineno - node.lineno + 1 > LONGEST:
                out.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name}")
    return out


def test_no_function_is_longer_than_a_hundred_lines_outside_the_triton_kernels(tmp_path):
    assert _long_functions(PACKAGE) == []
    long = "def f():\n" + "    x = 1\n" * LONGEST + "\n\n@triton.jit\ndef k():\n" + "    x = 1\n" * LONGEST
    (tmp_path / "m.py").write_text(long)
    assert _long_functions(tmp_path) == [f"{tmp_path.name}/m.py:1 f"]


def _private_imports(root: Path) -> list[str]:
    """`from replicate.x import _name`: a module reaching into another's private names (what two modules share
    is public in one of them, or in a shared private module such as kernels/_triton.py)."""
    out = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("replicate"):
                where = f"{path.relative_to(root.parent)}:{node.lineno}"
                out += [f"{where} {alias.name}" for alias in node.names if alias.name.startswith("_")]
    return out


def test_no_module_imports_another_modules_private_names(tmp_path):
    assert _private_imports(PACKAGE) == [] and _private_imports(PACKAGE.parents[1] / "benchmarks") == []
    (tmp_path / "m.py").write_text("from replicate.kernels.flash_attention import _strides, check_qkv\n")
    assert _private_imports(tmp_path) == [f"{tmp_path.name}/m.py:1 _strides"]


NOTEBOOKS = PACKAGE.parents[1] / "notebooks"
# what a chapter leaves to the package: fitting, reading files by hand, building tables
COMPUTES = re.compile(
    r"\bimport (json|csv|tomllib)\b|\bpd\.read_|\.read_text\(|\bopen\(|\bpd\.DataFrame\(|\bfit_[a-z_]+\(|"
    r"\bvalidate_runs\(|\bloss_along_batch\(|\bSweepCube\b"
)


def _computing_lines(folder: Path) -> list[str]:
    out = []
    for path in sorted(folder.glob("*.py")):
        code = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
        out += [f"{path.name}: {line.strip()}" for line in code if COMPUTES.search(line)]
    return out


def test_the_chapters_load_call_plot_and_say(tmp_path):
    assert _computing_lines(NOTEBOOKS) == []
    (tmp_path / "ch.py").write_text("# a fit_runs( in prose is fine\nimport json\nlaw = fit_loss_law(n, t, loss)\n")
    assert _computing_lines(tmp_path) == ["ch.py: import json", "ch.py: law = fit_loss_law(n, t, loss)"]
