"""The house rules, checked on the source: imports point down the layers, and no module shadows a library.

    common -> media -> model -> data -> training, scoring -> commands (infer.py, train.py, eval.py, app.py,
                                                                      bench/, tools/, retrieve/, examples/)

A module may import its own package and any package in a lower layer (lazily inside a function too: an import
is an import). ``training`` and ``scoring`` stand side by side and do not import each other.
"""
from __future__ import annotations

import ast
import importlib.util
import subprocess
from pathlib import Path

from tests.conftest import ROOT

LAYERS = {"common": 0, "media": 1, "model": 2, "data": 3, "training": 4, "scoring": 4}
COMMANDS = 5  # root scripts, bench/, tools/, examples/, app, retrieve
FIRST_PARTY = set(LAYERS) | {"infer", "train", "eval", "app", "bench", "tools", "retrieve", "examples", "tests"}
LIBRARIES_NOT_TO_SHADOW = ("evaluate", "datasets", "transformers", "torch", "peft", "accelerate", "librosa",
                           "soundfile", "av", "cv2", "open_clip", "gradio", "numpy", "scipy", "safetensors")


def source_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / name for name in listed if (ROOT / name).is_file()]


def layer_of(path: Path) -> tuple[str, int] | None:
    """(package, layer) of a project file; None for tests (they may import anything)."""
    top = path.relative_to(ROOT).parts[0]
    if top == "tests":
        return None
    if top in LAYERS:
        return top, LAYERS[top]
    return top.removesuffix(".py"), COMMANDS


def imported_packages(path: Path) -> set[str]:
    """First-party top-level names imported anywhere in the file (module level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & FIRST_PARTY


def test_no_package_imports_upward():
    upward = []
    for path in source_files():
        own = layer_of(path)
        if own is None:
            continue
        package, layer = own
        for name in imported_packages(path):
            other = LAYERS.get(name, COMMANDS)
            sideways = layer == other == 4 and name != package  # training and scoring stay apart
            if other > layer or sideways or (name == "tests"):
                upward.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not upward, "imports that point up a layer:\n" + "\n".join(sorted(upward))


def test_no_module_is_named_after_a_library():
    shadows = [path.relative_to(ROOT) for path in source_files()
               if path.stem in LIBRARIES_NOT_TO_SHADOW or path.parent.name in LIBRARIES_NOT_TO_SHADOW]
    assert not shadows, shadows
    for name in LIBRARIES_NOT_TO_SHADOW:  # and the installed library is the one Python finds
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin or "/") if spec else Path("/")
        assert "site-packages" in origin.parts or ROOT not in origin.parents, f"{name} resolves to {origin}"


def test_every_user_error_is_one_class_family():
    """One base class for one-line user errors (common.errors.UserError); no other class named *Error derives
    from ValueError or RuntimeError directly."""
    stray = []
    for path in source_files():
        if layer_of(path) is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error") and node.name != "UserError":
                bases = {getattr(base, "id", getattr(base, "attr", "")) for base in node.bases}
                if bases & {"ValueError", "RuntimeError", "Exception"}:
                    stray.append(f"{path.relative_to(ROOT)}:{node.name}({', '.join(sorted(bases))})")
    assert not stray, stray


def test_quiet_libraries_keeps_the_warnings_that_mean_a_broken_load():
    import warnings

    from common.cli import quiet_libraries

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_libraries()
        warnings.warn("Some weights of the model checkpoint were not initialized: [...]", UserWarning)
        warnings.warn("torch.meshgrid: in an upcoming release, it will be required to pass the indexing argument.",
                      UserWarning)
    assert [str(w.message)[:12] for w in caught] == ["Some weights"]
