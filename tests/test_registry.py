"""The name registries: a re-run definition replaces its entry, another definition is refused."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Any

import pytest

import xdream.optimizers
from xdream.errors import ConfigError
from xdream.registry import Registry
from xdream.rig import formats


def _run_cell(source: str, registry: Registry[Any], module: str = "__main__") -> Any:
    """Execute ``source`` as a notebook cell does (``__name__`` is the cell's module)."""
    namespace: dict[str, Any] = {"__name__": module, "REG": registry}
    exec(compile(source, "<cell>", "exec"), namespace)
    return namespace


CELL = """
@REG.register("thing")
class Thing:
    '''A thing.'''
    version = {version}
"""


def test_a_re_run_cell_replaces_its_entry() -> None:
    reg: Registry[Any] = Registry("optimizer")
    first = _run_cell(CELL.format(version=1), reg)["Thing"]
    second = _run_cell(CELL.format(version=2), reg)["Thing"]
    assert first is not second
    assert reg.get("thing") is second and reg.get("thing").version == 2
    assert reg.names() == ["thing"]


def test_another_definition_under_a_taken_name_is_refused_with_the_way_out() -> None:
    reg: Registry[Any] = Registry("optimizer")
    first = _run_cell(CELL.format(version=1), reg)["Thing"]
    other = CELL.format(version=2).replace("class Thing", "class Other")
    with pytest.raises(ConfigError) as err:
        _run_cell(other, reg)
    message = str(err.value)
    assert "optimizer 'thing' is already registered (by __main__.Thing)" in message
    assert "another name" in message
    assert reg.get("thing") is first
    with pytest.raises(ConfigError, match=r"by __main__\.Thing"):  # same name, another module
        _run_cell(CELL.format(version=2), reg, module="elsewhere")
    with pytest.raises(ValueError):  # still a ValueError for callers that caught that
        reg.add("thing", object())


def test_lambdas_and_local_definitions_do_not_replace_each_other() -> None:
    """Two lambdas, or two classes made inside one function, share a qualified name
    (``<lambda>``, ``f.<locals>.C``) without being the same definition: refused, not replaced."""
    reg: Registry[Any] = Registry("noise")
    reg.add("a", lambda x: x)
    with pytest.raises(ConfigError, match="already registered"):
        reg.add("a", lambda x: 2 * x)

    def make() -> type:
        class Local:
            pass

        return Local

    reg.add("b", make())
    with pytest.raises(ConfigError, match="already registered"):
        reg.add("b", make())


def test_a_reloaded_module_replaces_its_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = types.ModuleType("xdream_test_registry_holder")
    holder.REG = Registry("generator")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, holder.__name__, holder)
    (tmp_path / "xdream_test_mycomp.py").write_text(
        f"from {holder.__name__} import REG\n\n@REG.register('mine')\nclass Mine:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("xdream_test_mycomp")
    monkeypatch.setitem(sys.modules, "xdream_test_mycomp", module)
    first = holder.REG.get("mine")  # type: ignore[attr-defined]
    reloaded = importlib.reload(module)
    assert holder.REG.get("mine") is reloaded.Mine is not first  # type: ignore[attr-defined]


def _isolate(monkeypatch: pytest.MonkeyPatch, registry: Registry[Any]) -> None:
    """Let the test register into a copy of ``registry``'s entries."""
    for attr in ("_entries", "_summaries", "_definitions"):
        monkeypatch.setattr(registry, attr, dict(getattr(registry, attr)))


def test_the_optimizer_decorator_replaces_a_re_run_definition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _isolate(monkeypatch, xdream.optimizers.REGISTRY)
    source = (
        "import xdream.optimizers\n"
        "from xdream.optimizers.genetic import Genetic\n"
        "@xdream.optimizers.register\n"
        "class Mine(Genetic):\n"
        "    name = 'test-registry-genetic'\n"
    )
    first = _run_cell(source, xdream.optimizers.REGISTRY)["Mine"]
    second = _run_cell(source, xdream.optimizers.REGISTRY)["Mine"]
    assert xdream.optimizers.REGISTRY.get("test-registry-genetic") is second is not first
    with pytest.raises(ConfigError, match="optimizer 'genetic' is already registered"):
        _run_cell(source.replace("test-registry-genetic", "genetic"), xdream.optimizers.REGISTRY)


def test_a_rig_format_is_identified_by_its_function(monkeypatch: pytest.MonkeyPatch) -> None:
    _isolate(monkeypatch, formats.WRITERS)
    source = (
        "from xdream.rig.formats import register_writer\n"
        "@register_writer('test-registry-txt', '.txt')\n"
        "def write_txt(path, names, values):\n"
        "    '''Plain text.'''\n"
    )
    _run_cell(source, formats.WRITERS)
    second = _run_cell(source, formats.WRITERS)["write_txt"]
    assert formats.WRITERS.get("test-registry-txt").write is second
    with pytest.raises(ConfigError, match="response writer 'test-registry-txt'"):
        _run_cell(source.replace("def write_txt", "def write_other"), formats.WRITERS)


def test_components_that_cannot_be_built_are_refused_when_registered() -> None:
    """A class without a name, with an odd name, without Params, of another role, or no class
    at all was registered, and failed (or was built under '') later."""
    import dataclasses

    import numpy as np

    import xdream.generators
    from xdream.optimizers.base import Optimizer
    from xdream.scorers.noise import register as register_noise

    @dataclasses.dataclass(frozen=True)
    class Hyper:
        population_size: int = 4

    class Nameless(Optimizer):
        Params = Hyper

        def _ask(self) -> np.ndarray:
            return np.zeros((4, self.dim), np.float32)

        def _tell(self, codes: np.ndarray, scores: np.ndarray) -> None:
            pass

    class Odd(Nameless):
        name = "My Search!"

    class NoParams(Nameless):
        name = "no-params"
        Params = None  # type: ignore[assignment]

    class Fine(Nameless):
        name = "test-registry-fine"

    refusals = [
        (xdream.optimizers.register, Nameless, r"optimizer .*Nameless has no name: set name ="),
        (xdream.optimizers.register, Odd, r"lower-case letters and digits .*got 'My Search!'"),
        (xdream.optimizers.register, NoParams, r"NoParams must set Params to a frozen dataclass"),
        (
            xdream.optimizers.register,
            int,
            r"subclasses of xdream.optimizers.base.Optimizer, got",
        ),
        (
            xdream.generators.register,
            Fine,
            r"generators are registered as subclasses of xdream",
        ),
        (register_noise, Fine, r"noise models are registered as subclasses of xdream.scorers"),
    ]
    for register, cls, message in refusals:
        with pytest.raises(ConfigError, match=message):
            register(cls)  # type: ignore[arg-type]
    names = xdream.optimizers.names() + xdream.generators.names()
    assert not {"", "My Search!", "no-params", "test-registry-fine"} & set(names)
    with pytest.raises(ConfigError, match=r"network name must be .*, got 'Tiny Net'"):
        Registry("network").add("Tiny Net", object())


@pytest.mark.parametrize(
    ("name", "choices", "suggested"),
    [
        ("GENETIC", ["genetic", "nes"], "genetic"),  # case alone: no suggestion before
        ("NGOPT", ["NGO", "NGOpt", "CMA"], "NGOpt"),  # the same name in another case first
        ("ngopt", ["NGO", "NGOpt", "CMA"], "NGOpt"),
        ("cma", ["NGOpt", "CMA", "DiagonalCMA"], "CMA"),
        ("twopointde", ["TwoPointsDE", "PSO"], "TwoPointsDE"),  # a typo in another case
        ("genetc", ["genetic", "nes"], "genetic"),
    ],
)
def test_suggestions_ignore_case_and_name_the_real_spelling(
    name: str, choices: list[str], suggested: str
) -> None:
    """did_you_mean compared case-sensitively: GENETIC, ngopt and cma got no suggestion, and
    NGOPT was told NGO."""
    from xdream.errors import did_you_mean

    assert did_you_mean(name, choices) == f" Did you mean {suggested!r}?"
    assert did_you_mean("zzzz", choices) == ""


def test_an_unknown_nevergrad_optimizer_names_common_ones_and_a_command() -> None:
    """The line ended "See sorted(nevergrad.optimizers.registry)", a Python expression given to
    a command-line user, and `cma` was offered nothing."""
    pytest.importorskip("nevergrad")
    import xdream.optimizers

    with pytest.raises(ConfigError) as err:
        xdream.optimizers.make("nevergrad", dim=4, optimizer="cma")
    message = str(err.value)
    assert "unknown nevergrad optimizer 'cma'. Did you mean 'CMA'?" in message
    assert "common ones are TwoPointsDE (the default), DiagonalCMA, CMA, PSO" in message
    assert 'python -c "import nevergrad; print(sorted(nevergrad.optimizers.registry))"' in message
