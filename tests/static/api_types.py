"""Static checks of the public API's types, read by mypy (``files`` in pyproject.toml), not run.

``assert_type`` fails mypy when an expression's inferred type is not the one given: a
component's ``params`` are its own hyperparameter dataclass, not ``Any``.
"""

from __future__ import annotations

from typing_extensions import assert_type  # typing has it from Python 3.11 on

from xdream.generators.fourier import FourierGenerator, FourierParams
from xdream.generators.pixels import PixelsGenerator, PixelsParams
from xdream.optimizers.annealed_es import AnnealedES, AnnealedESParams
from xdream.optimizers.genetic import Genetic, GeneticParams
from xdream.optimizers.pycma import PycmaAdapter, PycmaParams


def optimiser_params(genetic: Genetic, es: AnnealedES, cma: PycmaAdapter) -> None:
    assert_type(genetic.params, GeneticParams)
    assert_type(es.params, AnnealedESParams)
    assert_type(cma.params, PycmaParams)
    assert_type(genetic.params.population_size, int)


def generator_params(fourier: FourierGenerator, pixels: PixelsGenerator) -> None:
    assert_type(fourier.params, FourierParams)
    assert_type(pixels.params, PixelsParams)
    assert_type(fourier.params.size, int)
