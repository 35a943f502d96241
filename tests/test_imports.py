"""What imports torch: not the command line's parser, nor the optimisers (numpy only).

Each check runs in a fresh interpreter, as this test process has imported torch long since.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


def _torch_imported_after(code: str) -> bool:
    """Run ``code`` in a fresh interpreter; True when it left torch in ``sys.modules``."""
    check = f"{code}\nimport sys\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1] == "True"


HELP_OF_EVERY_COMMAND = """
import argparse, contextlib, io
from xdream.cli import build_parser

parser = build_parser()
commands = [[]]
for action in parser._actions:
    if isinstance(action, argparse._SubParsersAction):
        for name, sub in action.choices.items():
            commands.append([name])
            for a in sub._actions:
                if isinstance(a, argparse._SubParsersAction):
                    commands += [[name, s] for s in a.choices]
assert ["bench", "throughput"] in commands and ["sweep"] in commands and ["rig-sim"] in commands
for argv in commands:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        parser.parse_args([*argv, "--help"])
"""


def test_the_parser_and_every_help_do_not_import_torch() -> None:
    assert not _torch_imported_after(HELP_OF_EVERY_COMMAND)


OPTIMISERS = """
import pkgutil, importlib
import numpy as np
import xdream.optimizers
import xdream.types
from xdream.generators.spectrum import CodeSpectrum  # the optimisers' one generators import

for m in pkgutil.iter_modules(xdream.optimizers.__path__):
    importlib.import_module(f"xdream.optimizers.{m.name}")
for name in ("genetic", "annealed-es"):
    opt = xdream.optimizers.make(name, dim=8, seed=0)
    codes = opt.ask()
    opt.tell(codes, -np.sum(codes**2, axis=1))
"""


def test_the_optimisers_do_not_import_torch() -> None:
    assert not _torch_imported_after(OPTIMISERS)


def test_the_check_sees_torch() -> None:
    """The checks above can fail: a module that imports torch is seen."""
    assert _torch_imported_after("import xdream.generators.base")


def test_the_lazy_names_are_the_real_ones() -> None:
    import torch

    import xdream.generators
    import xdream.multi
    import xdream.rig
    import xdream.rig.formats
    import xdream.rig.scorer
    import xdream.rig.section
    import xdream.sweep
    import xdream.types
    from xdream.generators.base import Generator

    assert xdream.types.Images is torch.Tensor
    for name in xdream.rig.__all__:
        assert name in dir(xdream.rig)
        homes = (xdream.rig.formats, xdream.rig.scorer, xdream.rig.section)
        assert any(getattr(xdream.rig, name) is getattr(m, name, None) for m in homes)
    assert xdream.generators.Generator is Generator
    assert {"fourier", "pixels", "cppn"} <= set(xdream.generators.REGISTRY.names())
    assert xdream.generators.REGISTRY.get("fourier") is xdream.generators.fourier.FourierGenerator
    cols = xdream.multi.SUMMARY_COLUMNS
    expected = (*cols[:5], "optimizer", "seed", *cols[5:], "attempts", "error", "state")
    assert expected == xdream.sweep.columns()
    with pytest.raises(AttributeError):
        _ = xdream.rig.NoSuchName  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        _ = xdream.generators.NoSuchName  # type: ignore[attr-defined]


def test_import_xdream_gives_its_submodules_on_first_use() -> None:
    """`import xdream; xdream.optimizers.make(...)`, as help(xdream) reads, failed with an
    AttributeError; the submodules come on first use, and `import xdream` alone needs no torch."""
    import pkgutil

    import xdream

    code = "import xdream\nassert xdream.optimizers.make('genetic', dim=3, seed=0).seed == 0"
    assert not _torch_imported_after(code)
    packaged = {m.name for m in pkgutil.iter_modules(xdream.__path__)} - {"__main__"}
    assert packaged == set(xdream._SUBMODULES) and packaged <= set(dir(xdream))
    assert xdream.experiment.Experiment.__name__ == "Experiment"
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = xdream.nope  # type: ignore[attr-defined]
