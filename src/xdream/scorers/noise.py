"""Response noise from the papers, as a wrapper around any scorer (spec §6).

The noise has its own RNG, separate from the optimizer's, saved in :meth:`NoisyScorer.state_dict`
so a resumed run draws the same noise. NaN ("no response") stays NaN.

>>> import numpy as np
>>> noise = make_noise("poisson", scale=20.0)
>>> noisy = noise(np.array([0.5, np.nan]), np.random.default_rng(0))
>>> bool(np.isnan(noisy[1]))
True
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from xdream.errors import ConfigError, XDreamError
from xdream.optimizers.base import make_rng, rng_seed
from xdream.params import build_params
from xdream.registry import Registry, check_component
from xdream.scorers.base import FunctionScorer, Scorer, as_scores
from xdream.types import Images, Scores, StateDict


class NoiseModel(abc.ABC):
    """Maps clean scores to noisy ones with a given RNG; hyperparameters are dataclass fields."""

    name: ClassVar[str] = ""

    @abc.abstractmethod
    def __call__(self, scores: Scores, rng: np.random.Generator) -> Scores:
        """Noisy ``(n,)`` float64 scores; NaN entries stay NaN."""

    def describe(self) -> dict[str, Any]:
        """Name and hyperparameters, for records."""
        return {"name": self.name, **dataclasses.asdict(self)}  # type: ignore[call-overload]


REGISTRY: Registry[type[NoiseModel]] = Registry("noise model")


def register(cls: type[NoiseModel]) -> type[NoiseModel]:
    """Class decorator: add a noise model to the registry under ``cls.name``; a class that is
    not a :class:`NoiseModel` dataclass with a ``name`` is refused."""
    check_component("noise model", cls, NoiseModel, params=None)
    REGISTRY.add(cls.name, cls)
    return cls


MAX_POISSON_RATE = 1e15
"""Spike-count rates (score x scale) above which Poisson noise draws from its normal
approximation N(rate, rate), rounded: NumPy's Poisson sampler refuses rates above ~9.2e18."""


@register
@dataclasses.dataclass(frozen=True)
class PoissonNoise(NoiseModel):
    """XDream's spike-count noise: mean over ``reps`` of Poisson(max(0, s * scale)) / scale.

    A score of -inf, like any negative one, counts 0 spikes.

    Attributes:
        scale: spikes per unit of score: a score of 1 becomes a Poisson count with mean
            ``scale``. It applies to the raw score, the unit's activation as the network gives
            it (``xdream run`` does not normalise; ``xdream bench optimizers`` divides scores
            by the unit's best natural-crop response first). XDream's paper (5-250; 20 for its
            headline result) took it as the expected count at the unit's best response, so
            to reproduce its condition give ``scale`` = 20 / (the unit's typical best
            response): a unit whose best is about 40 takes 0.5. The larger, the less noisy
            relative to the score (relative noise 1 / sqrt(score x scale)). Must be a positive
            finite number. Counts expected above ``1e15`` are drawn from the normal
            approximation N(rate, rate).
        reps: repeated presentations of each image whose counts are averaged (1). Must be a
            positive integer.
    """

    name: ClassVar[str] = "poisson"
    scale: float = 20.0
    reps: int = 1

    def __post_init__(self) -> None:
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ConfigError(
                f"poisson noise: scale must be a positive finite number, got {self.scale!r}"
            )
        if not isinstance(self.reps, int) or self.reps < 1:
            raise ConfigError(f"poisson noise: reps must be a positive integer, got {self.reps!r}")

    def __call__(self, scores: Scores, rng: np.random.Generator) -> Scores:
        scores = np.asarray(scores, dtype=np.float64)
        out = scores.copy()
        ok = ~np.isnan(scores) & (scores != np.inf)  # -inf is below 0: a count of 0
        with np.errstate(over="ignore"):
            rate = np.maximum(0.0, scores[ok] * self.scale)
        if not np.isfinite(rate).all():
            score = float(scores[ok][~np.isfinite(rate)][0])
            raise ConfigError(
                f"poisson noise: score {score!r} times scale {self.scale!r} is beyond float64's "
                "range; give a smaller scale (the spike count expected at a score of 1)"
            )
        large = rate > MAX_POISSON_RATE  # NumPy refuses rates above ~9.2e18
        counts = rng.poisson(np.where(large, 0.0, rate), size=(self.reps, rate.size))
        if large.any():  # Poisson(rate) is N(rate, rate) to within 1e-7 here
            normal = rng.normal(rate[large], np.sqrt(rate[large]), (self.reps, int(large.sum())))
            counts = counts.astype(np.float64)
            counts[:, large] = np.maximum(0.0, np.round(normal))
        out[ok] = counts.mean(axis=0) / self.scale
        return out


@register
@dataclasses.dataclass(frozen=True)
class GainNoise(NoiseModel):
    """Ponce-lab multiplicative noise: s * max(0, 1 + ns * N(0, 1)); ns in {0, 0.2, 0.5}.

    Attributes:
        ns: the standard deviation of the gain around 1 (0.2); 0 is no noise, 0.5 the
            benchmark's noisy condition. Must be a finite number >= 0.
    """

    name: ClassVar[str] = "gain"
    ns: float = 0.2

    def __post_init__(self) -> None:
        if not (self.ns >= 0 and math.isfinite(self.ns)):
            raise ConfigError(f"gain noise: ns must be a finite number >= 0, got {self.ns!r}")

    def __call__(self, scores: Scores, rng: np.random.Generator) -> Scores:
        scores = np.asarray(scores, dtype=np.float64)
        gain = np.maximum(0.0, 1.0 + self.ns * rng.standard_normal(scores.shape))
        return scores * gain


def make_noise(name: str, **params: Any) -> NoiseModel:
    """The noise model registered as ``name`` with hyperparameters ``params``."""
    cls = REGISTRY.get(name)
    return build_params(cls, params, f"noise model {name!r}", python=True)


class NoisyScorer(Scorer):
    """``base``'s scores with ``noise`` applied; the clean scores of the last call stay available.

    ``base`` is a :class:`Scorer` or, as :class:`~xdream.experiment.Experiment` takes, a plain
    function ``score(images, ids) -> scores`` (wrapped in a :class:`FunctionScorer`). Its
    optional hooks, ``records_in_background`` and ``last_extra`` rows pass through unchanged.

    >>> from xdream.scorers import NoisyScorer, make_noise
    >>> scorer = NoisyScorer(base, make_noise("poisson", scale=20), seed=0)  # doctest: +SKIP
    >>> noisy = scorer.score(images, ids); clean = scorer.last_clean  # doctest: +SKIP

    :meth:`describe` gives ``noise_seed``: ``seed``, or for ``seed=None`` the fresh entropy NumPy
    drew, with which ``NoisyScorer(..., seed=...)`` draws the same noise again. The run records
    it with the target (``summary.json`` and ``record.h5``); a restored run keeps the first
    session's, whose noise it goes on drawing.
    """

    def __init__(
        self,
        base: Scorer | Callable[[Images, list[str]], Any],
        noise: NoiseModel,
        seed: int | None = None,
    ) -> None:
        if not isinstance(base, Scorer):
            if not callable(base):
                raise XDreamError(
                    f"NoisyScorer: base must be a Scorer or a function score(images, ids), got "
                    f"{type(base).__name__}"
                )
            base = FunctionScorer(base)
        if not isinstance(noise, NoiseModel):
            raise ConfigError(
                f"noise must be a NoiseModel (see make_noise), got {type(noise).__name__}"
            )
        self.base: Scorer = base
        self.records_in_background = base.records_in_background
        self.noise = noise
        self._rng = make_rng(seed)
        self.seed = rng_seed(self._rng)
        """The noise's seed: ``seed``, or the entropy drawn for ``None`` (see :meth:`describe`)."""
        self.last_clean: Scores | None = None
        """Clean scores ``(n,)`` of the last :meth:`score` call (``None`` before the first)."""

    def score(self, images: Images, ids: list[str]) -> Scores:
        """Noisy scores; the clean ones are kept in :attr:`last_clean`."""
        clean = as_scores(self.base.score(images, ids))
        self.last_clean = clean
        return self.noise(clean, self._rng)

    @property
    def last_extra(self) -> dict[str, Any] | None:
        """The base scorer's extra rows of the last call (see :class:`Scorer`)."""
        return getattr(self.base, "last_extra", None)

    # the optional hooks go to the base scorer: the noise only changes the scores
    def check_folder(self, folder: Path) -> None:
        self.base.check_folder(folder)

    def bind(self, folder: Path) -> None:
        self.base.bind(folder)

    def start_generation(self, generation: int) -> None:
        self.base.start_generation(generation)

    def prepare(self, images: Images, ids: list[str]) -> None:
        self.base.prepare(images, ids)

    def run_when_idle(self, task: Callable[[], None]) -> None:
        self.base.run_when_idle(task)

    def describe(self) -> dict[str, Any]:
        return {**self.base.describe(), "noise": self.noise.describe(), "noise_seed": self.seed}

    def state_dict(self) -> StateDict:
        return {
            "rng": self._rng.bit_generator.state,
            "seed": self.seed,
            "base": self.base.state_dict(),
        }

    def load_state_dict(self, state: StateDict) -> None:
        if not isinstance(state, dict) or "rng" not in state:
            raise XDreamError(
                "cannot continue this run with a NoisyScorer: its checkpoint holds no noise "
                "state (the run was scored without noise); restore it with the scorer it was "
                "built with, without the NoisyScorer"
            )
        self._rng.bit_generator.state = state["rng"]
        self.seed = state.get("seed")  # whose noise goes on: unknown in an earlier xdream's
        self.base.load_state_dict(state.get("base", {}))

    def stopped(self, error: BaseException) -> None:
        self.base.stopped(error)

    def close(self) -> None:
        self.base.close()
