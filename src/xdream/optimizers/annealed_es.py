"""Annealed ES: mirrored sampling, all-rank weights and a geometric step-size schedule.

xdream's own optimiser, the winner of ``xdream bench optimizers`` (``docs/benchmarks.md``). It
combines what the benchmark's noise and ablation runs kept (``docs/optimizers.md``):

* a step size that decays geometrically over a known budget, as SphereCMA's angle does
  (Wang & Ponce 2022: "the gain comes from step-size decay"), with nothing adapted from the
  scores that noise could mislead;
* mirrored (antithetic) samples ``m +- sigma z`` (Brockhoff et al. 2010), whose difference cancels
  the curvature term that dominates single samples in high dimension;
* recombination weights for *every* rank, the expected normal order statistics (Arnold 2006,
  "Weighted multirecombination evolution strategies"): the worst codes push the mean away;
* the mean itself shown each generation, and one code along the recent mean shift;
* the mean shown twice in the first generations: when its two scores differ the responses are
  noisy, and the step size then stays large (larger steps give score differences that stand out
  from the noise);
* on a code space with a known spectrum (:mod:`xdream.generators.spectrum`), directions drawn
  on its basis with per-frequency scales: coarse patterns get larger steps on ``pixels``;
* on ``fourier``, while the responses are repeatable (and not counts), those scales turning
  from flat towards fine patterns over the schedule (``spectrum_power`` 0 to
  ``spectrum_power_end`` -0.5): the late, small steps refine detail the early ones could not
  resolve;
* on a code space whose spectrum knows its colour channels, colour steps scaled relative to
  luminance steps: on ``pixels`` luminance gets most of each step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, ClassVar

import numpy as np

from xdream.errors import XDreamError
from xdream.generators.spectrum import CodeSpectrum
from xdream.optimizers import register
from xdream.optimizers.base import Optimizer
from xdream.optimizers.es_common import (
    FloatArray,
    check_float,
    check_int,
    check_pending,
    check_shape,
    initial_mean,
    schedule_fraction,
)
from xdream.types import Codes, Scores, StateDict


@dataclass(frozen=True)
class AnnealedESParams:
    """Hyperparameters of :class:`AnnealedES`; defaults chosen on the benchmark's tuning units.

    Attributes:
        population_size: codes per generation (40: 75 generations for 3000 presentations).
        sigma0: step size of the first generation, in code units (1 for N(0, 1)-scaled codes).
        sigma_end: step size of generation ``generations - 1`` and after (0.3).
        generations: length of the geometric schedule (75). A config that leaves it out sets
            it to the run's number of generations (:func:`xdream.config.schedule_generations`).
        learning_rate: the mean moves ``learning_rate * sigma * sum_i w_i z_i`` (0.7).
        show_mean: make the first code of every generation the mean itself (True).
        line_sample: make one code ``m + sigma sqrt(N) p / |p|`` along the averaged mean shift
            ``p`` (True).
        path_rate: ``p <- (1 - path_rate) p + path_rate * (mean shift)`` (0.3).
        spectrum_power: on a code space with a known spectrum (``fourier``, ``pixels``;
            :mod:`xdream.generators.spectrum`), draw the random directions with per-frequency
            scales ``(f + spectrum_offset) ** -spectrum_power`` (normalised to mean square 1):
            positive values give coarse patterns larger steps than fine ones, negative values
            the reverse, 0 samples isotropically. ``None`` (default): the code space's
            ``default_power`` (1 on ``pixels``, 0 on ``fourier``). No effect on code spaces
            without a spectrum (CPPN, DeePSiM). With ``spectrum_power_end`` this is the power
            the schedule starts from.
        spectrum_power_end: the power the draws reach at the end of the schedule
            (``generations - 1``), moving linearly from ``spectrum_power`` as the step size
            shrinks, while the responses are repeatable and fine-grained: during the noise
            checks, once they found noise, and once two different codes scored alike in them
            (spike counts, a unit silent on many images) the power stays at
            ``spectrum_power``. ``None`` (default): the code
            space's ``default_power_end`` (-0.5 on ``fourier``: steps turn finer, measured in
            ``docs/optimizers.md``; none on ``pixels``) when ``spectrum_power`` is ``None``
            too, otherwise ``spectrum_power`` (a constant power).
        spectrum_offset: the ``f0`` of those scales, in cycles per image (1).
        chroma: on a code space whose spectrum knows its colour channels (``pixels``,
            ``fourier``; :attr:`xdream.generators.spectrum.CodeSpectrum.colour`), the size of
            the steps that change a pixel's colour relative to those that change its luminance,
            the total kept (:meth:`~xdream.generators.spectrum.CodeSpectrum.scale_colour`); 1
            treats the colour channels alike, 0 never changes colour. ``None`` (default): the
            code space's ``default_chroma`` (0.3 on ``pixels``, 1 on ``fourier``). No effect on
            code spaces without colour channels (CPPN, DeePSiM).
        noise_checks: in the first ``noise_checks`` answered generations, show the mean a
            second time (the second code) until its two scores differ (by more than a relative
            ``1e-6``): the responses are then noisy, and the schedule ends at
            ``sigma_end_noisy`` instead of ``sigma_end`` (3; 0: never check). A deterministic
            scorer (a network unit without noise) never trips it; each check costs one random
            sample. Spike counts of a silent unit (all 0) agree and do not trip it either:
            its step decays as without noise (the large step measured no better there,
            ``docs/optimizers.md``).
        sigma_end_noisy: the step size the schedule ends at once the responses are noisy;
            ``None`` (default): ``sigma0``, a constant step. Measured on the tuning units:
            with noisy responses a step that stays large finds stronger images, without noise
            the decay to ``sigma_end`` does (``docs/optimizers.md``).
    """

    population_size: int = 40
    sigma0: float = 1.0
    sigma_end: float = 0.3
    generations: int = 75
    learning_rate: float = 0.7
    show_mean: bool = True
    line_sample: bool = True
    path_rate: float = 0.3
    spectrum_power: float | None = None
    spectrum_power_end: float | None = None
    spectrum_offset: float = 1.0
    chroma: float | None = None
    noise_checks: int = 3
    sigma_end_noisy: float | None = None

    def __post_init__(self) -> None:
        check_int("population_size", self.population_size, 4)
        check_float("sigma0", self.sigma0, 0.0)
        check_float("sigma_end", self.sigma_end, 0.0)
        check_int("generations", self.generations, 1)
        check_float("learning_rate", self.learning_rate, 0.0)
        check_float("path_rate", self.path_rate, 0.0)
        for key in ("spectrum_power", "spectrum_power_end"):
            power = getattr(self, key)
            if power is not None and (
                not isinstance(power, (int, float, np.integer, np.floating))
                or isinstance(power, bool)
                or not math.isfinite(float(power))
            ):
                raise ValueError(f"{key} must be a finite number or None, got {power!r}")
        check_float("spectrum_offset", self.spectrum_offset, 0.0)
        if self.chroma is not None:
            check_float("chroma", self.chroma, 0.0, strict=False)
        check_int("noise_checks", self.noise_checks, 0)
        if self.sigma_end_noisy is not None:
            check_float("sigma_end_noisy", self.sigma_end_noisy, 0.0)
        if self.path_rate > 1:
            raise ValueError(f"path_rate must be in (0, 1], got {self.path_rate!r}")
        for key in ("show_mean", "line_sample"):
            if not isinstance(getattr(self, key), (bool, np.bool_)):
                raise ValueError(f"{key} must be True or False, got {getattr(self, key)!r}")
        if self.noise_checks and not self.show_mean:
            raise ValueError(
                "noise_checks shows the mean twice, so it needs show_mean=True; "
                "set noise_checks=0 to hide the mean"
            )


def rank_weights(n: int) -> FloatArray:
    """Weights for ranks 1 (best) .. n: expected normal order statistics (Blom's approximation
    ``-Phi^-1((i - 0.375) / (n + 0.25))``), scaled so the positive ones sum to 1.

    >>> w = rank_weights(4)
    >>> bool(w[0] > w[1] > 0 > w[2] > w[3]), round(float(w.sum()), 12)
    (True, 0.0)
    """
    inv = NormalDist().inv_cdf
    e = np.array([-inv((i - 0.375) / (n + 0.25)) for i in range(1, n + 1)])
    total = np.abs(e).sum()
    return np.asarray(2 * e / total if total > 0 else e, dtype=np.float64)


def tied_rank_weights(scores: FloatArray) -> FloatArray:
    """:func:`rank_weights` for ``scores`` (best first), in the scores' order, with equal scores
    sharing the mean of their ranks' weights: ties carry no ranking, so they must not move the
    mean (discrete responses, such as spike counts, tie often; all tied gives all zeros).

    >>> tied_rank_weights(np.array([1.0, 3.0, 3.0, 0.0])).round(3).tolist()
    [-0.222, 0.5, 0.5, -0.778]
    """
    n = len(scores)
    order = np.argsort(-scores, kind="stable")
    ranked = rank_weights(n)
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    for lo, hi in zip(starts, np.r_[starts[1:], n]):
        if hi - lo > 1:
            ranked[lo:hi] = ranked[lo:hi].mean()
    out = np.empty(n)
    out[order] = ranked
    return out


NOISE_TOLERANCE = 1e-6
"""Two scores of the same code that differ by more than this fraction of the larger are noise
(a deterministic network's scores of one image agree to the last bit)."""


@register
class AnnealedES(Optimizer[AnnealedESParams]):
    """Mirrored evolution strategy with all-rank weights and an annealed step size.

    Generation ``g`` shows, in this order: the mean ``m`` (``show_mean``), the mean again
    (in the first ``noise_checks`` generations), the line sample
    ``m + sigma_g sqrt(N) p / |p|`` (``line_sample``, once a mean shift exists), then mirrored
    pairs ``m + sigma_g z_k``, ``m - sigma_g z_k`` (``z_k ~ N(0, I)``, or ``B (s * u_k)`` with
    ``u_k ~ N(0, I)``, ``B`` the code spectrum's basis and ``s`` its scales when the code space
    has a spectrum and the power is not 0; an odd slot left over gets one unpaired sample;
    when the spectrum knows its colour channels and ``chroma`` is not 1, each direction's
    colour part is then scaled by ``chroma`` relative to its luminance part). The power of
    the ``g``-th answered generation is ``spectrum_power + (spectrum_power_end -
    spectrum_power) g / (generations - 1)`` (then ``spectrum_power_end``) once the noise checks
    found the responses repeatable, ``spectrum_power`` before, if they found noise, and if two
    different codes tied in them (counts: too coarse for fine steps).
    With ``y_i = (x_i - m) / sigma_g`` and the answered codes ranked best first with
    :func:`rank_weights` ``w``:

    * ``m <- m + learning_rate sigma_g sum_i w_i y_i``;
    * ``p <- (1 - path_rate) p + path_rate (m_new - m)``;
    * ``sigma_g = sigma0 (sigma_end / sigma0)^(g / (generations - 1))``, then ``sigma_end``;
      once the two scores of the mean have differed (noisy responses), ``sigma_end_noisy``
      (default ``sigma0``) takes the place of ``sigma_end``.

    Equal scores share the mean of their ranks' weights (:func:`tied_rank_weights`).

    No response (NaN): left out of the ranking. A generation without any answer changes nothing
    and does not advance the schedule; fresh samples are drawn.

    >>> import numpy as np
    >>> from xdream.optimizers import make
    >>> opt = make("annealed-es", dim=8, seed=0, population_size=12, generations=40)
    >>> for _ in range(40):
    ...     codes = opt.ask()
    ...     opt.tell(codes, -np.sum((codes - 1.0) ** 2, axis=1))
    >>> opt.ask().shape, bool(np.abs(opt.mean - 1.0).max() < 0.2)
    ((12, 8), True)
    """

    name: ClassVar[str] = "annealed-es"
    Params: ClassVar[type[AnnealedESParams]] = AnnealedESParams
    uses_spectrum: ClassVar[bool] = True
    # 2: code spectrum; 3: tied ranks; 4: all-tied generations paused the schedule (reverted,
    # docs/optimizers.md); 5: the behaviour of 3; 6: noise checks (the mean shown twice);
    # 7: colour steps scaled by chroma (0.3 on pixels); 8: spectrum power schedule (fourier: 0
    # to -0.5 while the responses are repeatable and untied)
    version: ClassVar[int] = 8

    def __init__(
        self,
        dim: int,
        params: AnnealedESParams | None = None,
        seed: int | None = None,
        init_codes: Codes | None = None,
        spectrum: CodeSpectrum | None = None,
    ) -> None:
        super().__init__(dim, params or AnnealedESParams(), seed, init_codes)
        if spectrum is not None and spectrum.dim != self._dim:
            raise XDreamError(
                f"the code spectrum has {spectrum.dim} directions but the code space "
                f"{self._dim}; pass the spectrum of the generator whose codes are searched"
            )
        p = self._params
        self._given_spectrum = spectrum
        start, end, chroma = 0.0, 0.0, 1.0
        if spectrum is not None:
            if p.spectrum_power is None:
                start = spectrum.default_power
                end = start if spectrum.default_power_end is None else spectrum.default_power_end
            else:
                start = end = p.spectrum_power
            if p.spectrum_power_end is not None:
                end = p.spectrum_power_end
            if spectrum.colour is not None:
                chroma = spectrum.default_chroma if p.chroma is None else p.chroma
        self._use_shape(float(start), float(end), float(chroma))
        self.lam = self._params.population_size
        self._mean = initial_mean(self._init_codes, self._dim)
        self._path: FloatArray = np.zeros(self._dim)
        self._step = 0  # generations with at least one answer: the schedule's clock
        self._noise_checks = self._params.noise_checks
        self._noisy = False
        self._ties = False  # two different codes scored alike during the noise checks
        self._noise_evidence: tuple[int, float, float] | None = None  # generation, two scores
        self._sample(step=0)

    @property
    def mean(self) -> FloatArray:
        """The mean ``m`` (a copy)."""
        return self._mean.copy()

    @property
    def spectrum(self) -> CodeSpectrum | None:
        """The code spectrum that shapes the random directions (``None``: isotropic)."""
        return self._spectrum

    @property
    def noisy(self) -> bool:
        """Whether the two scores of the mean have differed in an answered generation (the
        responses are noisy; the schedule then ends at ``sigma_end_noisy``)."""
        return self._noisy

    def status(self) -> dict[str, Any]:
        """``step_size`` (of the pending generation), ``spectrum_power`` (of the pending
        generation's draws, when a power schedule is set) and ``responses``: ``"checking"``
        while the noise checks run, then ``"repeatable"`` (the mean's two scores agreed in
        every check) or ``"noisy"`` (with ``noise_evidence``, the generation and the two scores,
        and a ``note``), or ``"unchecked"`` (``noise_checks`` 0)."""
        out: dict[str, Any] = {"step_size": self.sigma}
        if self._spectrum is not None and self._power_end != self._power_start:
            out["spectrum_power"] = self.power_at(self._step)
        if self._noisy:
            p = self._params
            end = p.sigma0 if p.sigma_end_noisy is None else p.sigma_end_noisy
            out["responses"] = "noisy"
            if self._noise_evidence is not None:
                gen, first, again = self._noise_evidence
                out["noise_evidence"] = {"generation": gen, "scores": [first, again]}
                seen = f"the mean scored {first:.6g} and {again:.6g} in generation {gen}"
            else:
                seen = "the mean's two scores differed"
            out["note"] = (
                f"{self.name}: responses are noisy ({seen}), so the step-size schedule ends at "
                f"{end:g} instead of {p.sigma_end:g} (noise_checks = 0 turns this check off)"
            )
        elif self._step < self._noise_checks:
            out["responses"] = "checking"
        else:
            out["responses"] = "repeatable" if self._noise_checks else "unchecked"
        return out

    @property
    def sigma(self) -> float:
        """The step size of the pending generation."""
        return self.step_size(self._step)

    def step_size(self, step: int) -> float:
        """``sigma`` of the ``step``-th answered generation (the geometric schedule)."""
        p = self._params
        frac = schedule_fraction(step, p.generations)
        end = p.sigma_end
        if self._noisy:
            end = p.sigma0 if p.sigma_end_noisy is None else p.sigma_end_noisy
        return float(p.sigma0 * (end / p.sigma0) ** frac)

    def power_at(self, step: int) -> float:
        """The spectrum power of the ``step``-th answered generation's draws: the start power
        while the noise checks run, once they found noise, and once two different codes scored
        alike in them (counts, or a unit silent on many images: responses too coarse for fine
        steps); otherwise moving linearly to the end power over the schedule."""
        start, end = self._power_start, self._power_end
        if end == start or self._noisy or self._ties or step < self._noise_checks:
            return start
        p = self._params
        frac = schedule_fraction(step, p.generations)
        return float(start + (end - start) * frac)

    def _sample(self, step: int) -> None:
        p, d = self._params, self._dim
        fixed, genealogy = [], []
        if p.show_mean:
            fixed.append(np.zeros(d))
            genealogy.append("mean")
        self._repeat: tuple[int, ...] = ()
        if p.show_mean and not self._noisy and self._step < self._noise_checks:
            self._repeat = (0, 1)  # the rows whose scores tell noise from signal
            fixed.append(np.zeros(d))
            genealogy.append("mean again")
        norm = float(np.linalg.norm(self._path))
        if p.line_sample and norm > 0:
            fixed.append(self._path / norm * math.sqrt(d))
            genealogy.append("line")
        k = self.lam - len(fixed)
        power = self.power_at(self._step)
        half = self._shape(self._rng.standard_normal((k // 2, d)), power)
        parts = [np.array(fixed).reshape(-1, d), half, -half]
        if k % 2:
            parts.append(self._shape(self._rng.standard_normal((1, d)), power))
        self._y: FloatArray = np.concatenate(parts)
        self._sigma = self.step_size(self._step)
        self._codes: Codes = (self._mean + self._sigma * self._y).astype(np.float32)
        self._ids = [f"gen{step:03d}_{i:06d}" for i in range(self.lam)]
        self._genealogy = genealogy + [f"+z{j}" for j in range(k // 2)]
        self._genealogy += [f"-z{j}" for j in range(k // 2)] + ["z"] * (k % 2)

    def _use_shape(self, start: float, end: float, chroma: float) -> None:
        """Shape the draws with ``(f + offset) ** -power`` on the given spectrum, the power
        moving from ``start`` to ``end`` (both 0: none), and scale their colour parts by
        ``chroma`` (1: none)."""
        self._power_start, self._power_end, self._chroma = start, end, chroma
        self._spectrum: CodeSpectrum | None = None
        self._scales: tuple[float, FloatArray] | None = None  # the last power's scales
        if (start != 0 or end != 0 or chroma != 1) and self._given_spectrum is not None:
            self._spectrum = self._given_spectrum

    def _shape(self, z: FloatArray, power: float) -> FloatArray:
        """Standard normal draws as directions of the code space: scaled per frequency with
        ``power`` and mapped from the spectrum's basis, then their colour scaled, when the code
        space has a spectrum (power 0 and chroma 1: the draws themselves)."""
        if self._spectrum is None or (power == 0 and self._chroma == 1):
            return z
        if self._scales is None or self._scales[0] != power:
            self._scales = (power, self._spectrum.scales(power, self._params.spectrum_offset))
        y = self._spectrum.to_code(z * self._scales[1])
        if self._chroma != 1:
            y = self._spectrum.scale_colour(y, self._chroma)
        return y

    def _ask(self) -> Codes:
        return self._codes.copy()

    def _tell(self, codes: Codes, scores: Scores) -> None:
        check_pending(self.name, codes, self._codes)
        if self._repeat and not self._noisy:
            first, again = (float(scores[i]) for i in self._repeat)
            # NaN compares unequal to everything, so a missing look says nothing here
            if abs(first - again) > NOISE_TOLERANCE * max(abs(first), abs(again)):
                self._noisy = True
                self._noise_evidence = (self._generation, first, again)
            # scores of different codes that tie are counts or a unit silent on many images:
            # too coarse for the fine late steps of a power schedule
            others = np.delete(scores, self._repeat[1:])
            others = others[~np.isnan(others)]
            self._ties = self._ties or len(np.unique(others)) < len(others)
        valid = np.flatnonzero(~np.isnan(scores))
        if len(valid):
            coef = np.zeros(len(scores))
            coef[valid] = tied_rank_weights(np.asarray(scores[valid], dtype=np.float64))
            shift = self._params.learning_rate * self._sigma * (coef @ self._y)
            self._mean = self._mean + shift
            rate = self._params.path_rate
            self._path = (1 - rate) * self._path + rate * shift
            self._step += 1
        self._sample(step=self._generation + 1)

    def _state(self) -> StateDict:
        return {
            "mean": self._mean.copy(),
            "path": self._path.copy(),
            "step": self._step,
            "y": self._y.copy(),
            "sigma": self._sigma,  # the codes are mean + sigma * y: not stored twice
            "spectrum_power": self._power_start if self._spectrum is not None else 0.0,
            "spectrum_power_end": self._power_end if self._spectrum is not None else 0.0,
            "chroma": self._chroma if self._spectrum is not None else 1.0,
            "noise_checks": self._noise_checks,
            "repeat": list(self._repeat),
            "noisy": self._noisy,
            "ties": self._ties,
            "noise_evidence": None if self._noise_evidence is None else list(self._noise_evidence),
        }

    def _load_state(self, state: StateDict) -> None:
        self._mean = np.array(state["mean"], dtype=np.float64)
        self._path = np.array(state["path"], dtype=np.float64)
        self._step = int(state["step"])
        self._y = np.array(state["y"], dtype=np.float64)
        self._sigma = float(state["sigma"])
        check_shape("y", self._y, (self.lam, self._dim))
        check_shape("mean", self._mean, (self._dim,))
        if "codes" in state:  # checkpoints before 27 November 2026 stored them too
            self._codes = np.array(state["codes"], dtype=np.float32)
            check_shape("codes", self._codes, (self.lam, self._dim))
        else:  # as _sample computed them, to the bit
            self._codes = (self._mean + self._sigma * self._y).astype(np.float32)
        # a resumed run keeps drawing as it began (checkpoints of version 1 drew isotropically,
        # those before version 7 without colour scaling, before version 8 with a constant power)
        power = float(state.get("spectrum_power", 0.0))
        end = float(state.get("spectrum_power_end", power))
        chroma = float(state.get("chroma", 1.0))
        given = self._given_spectrum
        if (power != 0 or end != 0 or chroma != 1) and given is None:
            raise XDreamError(
                f"the checkpoint drew its steps along a code spectrum (spectrum_power {power:g}"
                f"{'' if end == power else f' to {end:g}'}, chroma {chroma:g}) but this "
                "optimiser was given none; resume with the same generator"
            )
        if chroma != 1 and given is not None and given.colour is None:
            raise XDreamError(
                f"the checkpoint scaled its colour steps (chroma {chroma:g}) but this code "
                "spectrum has no colour channels; resume with the same generator"
            )
        self._use_shape(power, end, chroma)
        # checkpoints before version 6 showed the mean once and continue so
        self._noise_checks = int(state.get("noise_checks", 0))
        self._repeat = tuple(int(i) for i in state.get("repeat", ()))
        self._noisy = bool(state.get("noisy", False))
        self._ties = bool(state.get("ties", False))
        evidence = state.get("noise_evidence")  # absent before the status existed
        self._noise_evidence = (
            None if evidence is None else (int(evidence[0]), float(evidence[1]), float(evidence[2]))
        )
