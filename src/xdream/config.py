"""Experiment configuration: TOML, YAML or JSON files, validated, with every key documented.

A config has five sections. Unknown sections and keys are rejected with the nearest valid name.
``generator``, ``optimizer`` and ``noise`` take ``name`` plus that component's own parameters
(``xdream list`` shows the names; the component's ``Params`` dataclass documents the keys).
An optimiser's ``generations`` (the length of the step-size schedule of ``annealed-es`` and
``sphere-cma``) left out of ``[optimizer]`` is the number of generations of the budget
(:func:`schedule_generations`), not the optimiser's own default.

.. code-block:: toml

    [experiment]
    seed = 0
    generations = 40            # budget: generations ...
    # presentations = 3000      # ... or presentations of evolved images (not both)
    n_references = 10

    [generator]
    name = "fourier"

    [optimizer]
    name = "genetic"
    population_size = 20

    [target]
    network = "efficientnet-lite0"
    layer = "blocks.10"
    channel = 5

    [noise]                     # optional
    name = "poisson"
    scale = 20
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from xdream.errors import ConfigError, MissingFileError, XDreamError, did_you_mean
from xdream.params import build_params, check_seed, from_numpy
from xdream.rig.section import RigSection

#: The most natural reference images a generation may show (each is cropped and resized every
#: generation; thousands would spend seconds to minutes per generation on that alone).
MAX_REFERENCES = 1000

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class ExperimentSection:
    """``[experiment]``: budget, seed, reference images and what to save."""

    seed: int = 0
    """Seed of the optimiser; reference crops and noise models derive their own seeds from it."""
    generations: int | None = None
    """Budget in generations. Give this or ``presentations``; neither means 40 generations. An
    optimiser with a step-size schedule (``annealed-es``, ``sphere-cma``) anneals over the
    budget's generations unless ``[optimizer] generations`` says otherwise; the value is
    written into the run's ``config.yaml``, so a budget raised on resume keeps the schedule the
    run started with (from Python too, given the config it was started from:
    :func:`as_started_schedule`)."""
    presentations: int | None = None
    """Budget in presentations of evolved images (references not counted). The run stops before a
    generation that would exceed it; a step-size schedule left out of ``[optimizer]`` spans
    the whole generations of ``population_size`` codes it holds."""
    n_references: int = 10
    """Natural reference images (random crops of bundled photos) mixed into every generation, scored
    and recorded, never given to the optimiser. 0 disables them."""
    reference_seed: int | None = None
    """Seed of the reference crops; ``None`` derives it from ``seed``."""
    noise_seed: int | None = None
    """Seed of the ``[noise]`` model's draws; ``None`` derives it from ``seed``. A many-unit run
    (``[[targets]]``) gives each unit its own, derived from this one (or from ``seed``) and the
    unit, and writes it into the unit's ``config.yaml``."""
    save_images: str = "best"
    """PNGs saved each generation: ``"best"`` (best image of the generation) or ``"none"``."""
    batch_size: int = 64
    """Images per forward pass through the generator."""
    record_interval: float = 2.0
    """Seconds between appends to ``record.h5`` and rewrites of ``summary.json`` (0: after every
    generation; ``inf``: when the run stops). The journal and checkpoint are written durably
    after every generation regardless, and ``xdream resume`` brings ``record.h5`` up to date
    from the journal, so a longer interval only makes the files a reader sees lag; a rig
    appends while it waits. A positive
    interval is lengthened where the appends would take more than a tenth of the run's time:
    in a run of many units, to about 10 x the units x one append's time (22 s for 200 units
    at the 11 ms an append took on the 2-core development machine before each append also
    wrote the mark of a complete append, which adds about a quarter), and at most 5 minutes."""
    tf32: bool = False
    """Allow TensorFloat-32 in CUDA convolutions and matrix products (Ampere and later GPUs): up
    to ~20% faster forward passes on large images, but an image's score then depends on the batch
    it is scored in (0.3-0.6% measured) and differs from the CPU's. False (default): IEEE
    float32, the same score in any batch. Set while the experiment renders and scores, then put
    back (:mod:`xdream.precision`)."""
    init_codes: str | None = None
    """Folder of initial codes (written by ``xdream encode``, or ``.npy`` files), relative to the
    current directory: the GA seeds its population from them, mean-based optimisers start from
    their mean. ``None`` starts from the optimiser's own initialisation."""

    def __post_init__(self) -> None:
        if self.generations is not None and self.presentations is not None:
            raise ValueError("give either 'generations' or 'presentations', not both")
        if self.generations is None and self.presentations is None:  # the default, written out
            object.__setattr__(self, "generations", 40)
        for key in ("generations", "presentations"):
            value = getattr(self, key)
            if value is not None and (
                not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1
            ):
                raise ValueError(f"'{key}' must be a positive integer, got {value!r}")
        check_seed(self.seed, "'seed'")
        for key in ("reference_seed", "noise_seed"):
            if getattr(self, key) is not None:
                check_seed(getattr(self, key), f"'{key}'")
        if not isinstance(self.tf32, bool):
            raise ValueError(f"'tf32' must be true or false, got {self.tf32!r}")
        if not isinstance(self.n_references, int) or not 0 <= self.n_references <= MAX_REFERENCES:
            raise ValueError(
                f"'n_references' must be an integer from 0 to {MAX_REFERENCES} (natural images "
                f"per generation), got {self.n_references!r}"
            )
        if self.save_images not in ("best", "none"):
            raise ValueError(f"'save_images' must be 'best' or 'none', got {self.save_images!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"'batch_size' must be a positive integer, got {self.batch_size!r}")
        if (
            isinstance(self.record_interval, bool)
            or not isinstance(self.record_interval, (int, float))
            or not self.record_interval >= 0
        ):
            raise ValueError(
                f"'record_interval' must be a number of seconds >= 0, got {self.record_interval!r}"
            )
        if self.init_codes is not None and not isinstance(self.init_codes, str):
            raise ValueError(
                f"'init_codes' must be a folder name (a string), got {self.init_codes!r}"
            )


MAX_IMAGE_SIZE = 1024
"""Largest ``[target] image_size``: over four times the largest input of a registered network (224
to 227 px); a batch of 64 such images already takes 800 MB."""


@dataclass(frozen=True)
class TargetSection:
    """``[target]``: the unit whose response is maximised."""

    network: str = "efficientnet-lite0"
    """Registered network name (``xdream list``)."""
    layer: str = "blocks.10"
    """Layer name (``xdream layers NETWORK`` lists them with their output shapes)."""
    channel: int = 0
    """Channel (feature map) index in that layer."""
    x: int | None = None
    """Column of the unit in the feature map; ``None`` = centre. A flat layer has none: leave
    ``x`` and ``y`` out there (given, they are refused)."""
    y: int | None = None
    """Row of the unit in the feature map; ``None`` = centre."""
    pre_activation: bool = False
    """Read the input of ``layer`` (which must be an activation module) instead of its output."""
    weights: str | None = None
    """Weight file; ``None`` uses the network's default (the embedded network needs none)."""
    image_size: int | None = None
    """XDream's intermediate downsampling: resize images to this size (1 to
    :data:`MAX_IMAGE_SIZE` pixels) before the network's own resize. ``None`` skips it."""
    placement: str | tuple[int, ...] = "full"
    """Where an image goes in the network's input: ``"full"`` (all of it), ``"rf"`` (a
    square over the unit's receptive field, in a grey canvas: the Ponce lab's placement, spec
    §8) or ``[left, top, size]`` (that square, in the network's input pixels). With ``"rf"``
    every ``[[targets]]`` unit must have the same receptive field (a sweep's need not: each
    task scores its own unit)."""
    batch_size: int = 64
    """Images per forward pass through the network."""
    device: str = "auto"
    """``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available): where the network scores, and
    where a generator that holds tensors (``fourier``, ``cppn``, DeePSiM) renders."""

    def __post_init__(self) -> None:
        from xdream.scorers.placement import check_placement

        try:
            check_placement(self.placement)
        except XDreamError as err:
            raise ValueError(str(err)) from None
        if isinstance(self.placement, list):  # as config.yaml reads it back
            object.__setattr__(self, "placement", tuple(self.placement))
        # the kinds (an integer, not true) are checked by build_params from the type hints;
        # again here for a section built in Python (TargetSection(channel="3"))
        for key in ("channel", "x", "y"):
            value = getattr(self, key)
            if value is not None and (
                not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0
            ):
                raise ValueError(f"'{key}' must be an integer >= 0, got {value!r}")
        if self.image_size is not None and not 1 <= self.image_size <= MAX_IMAGE_SIZE:
            raise ValueError(
                f"'image_size' must be between 1 and {MAX_IMAGE_SIZE} pixels, got "
                f"{self.image_size!r}; leave it out to skip the intermediate downsampling"
            )
        if self.batch_size < 1:
            raise ValueError(f"'batch_size' must be an integer >= 1, got {self.batch_size!r}")


SECTIONS: dict[str, type[Any] | None] = {
    "experiment": ExperimentSection,
    "target": TargetSection,
    "generator": None,  # name + the generator's Params
    "optimizer": None,  # name + the optimiser's Params
    "noise": None,  # name + the noise model's Params; optional
    "rig": RigSection,  # optional: a recording rig replaces the [target] unit
    "targets": None,  # [[targets]]: many units at once (xdream.multi.parse_targets)
}

DEFAULT_GENERATOR = "fourier"
DEFAULT_OPTIMIZER = "genetic"


@dataclass(frozen=True)
class Config:
    """A validated experiment configuration."""

    experiment: ExperimentSection = field(default_factory=ExperimentSection)
    target: TargetSection = field(default_factory=TargetSection)
    generator: dict[str, Any] = field(default_factory=lambda: {"name": DEFAULT_GENERATOR})
    optimizer: dict[str, Any] = field(default_factory=lambda: {"name": DEFAULT_OPTIMIZER})
    noise: dict[str, Any] | None = None
    rig: RigSection | None = None
    targets: tuple[dict[str, Any], ...] = ()
    """Units named by ``[[targets]]``, expanded to one ``{layer, channel, x, y}`` each."""
    derived: tuple[str, ...] = field(default=(), compare=False)
    """``[optimizer]`` keys that the config left out and xdream set from the budget rather
    than to the optimiser's default (``("generations",)``: :func:`schedule_generations`).
    :meth:`to_dict` writes their values like any other, so a config read back (a run's
    ``config.yaml``) gives them and keeps them."""

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (round-trips through :func:`from_dict`). A rig's config has no
        ``target``: the rig is the target, and ``[target]`` has no effect next to ``[rig]``
        (an earlier xdream recorded its defaults: :data:`xdream.experiment.DROPPED_SECTIONS`)."""
        out: dict[str, Any] = {"experiment": dataclasses.asdict(self.experiment)}
        if self.rig is None:
            out["target"] = dataclasses.asdict(self.target)
        out["generator"] = dict(self.generator)
        out["optimizer"] = dict(self.optimizer)
        if self.noise is not None:
            out["noise"] = dict(self.noise)
        if self.rig is not None:
            out["rig"] = _plain(dataclasses.asdict(self.rig))
        if self.targets:
            out["targets"] = [dict(t) for t in self.targets]
        return out

    def given_optimizer(self) -> dict[str, Any]:
        """``[optimizer]`` without the :attr:`derived` keys: the table to build another config
        from with some of its values changed (a population size changes the length of the
        schedule that a budget in presentations gives)."""
        return {k: v for k, v in self.optimizer.items() if k not in self.derived}

    def budget(self) -> tuple[str, int]:
        """``("generations", n)`` or ``("presentations", n)``."""
        if self.experiment.presentations is not None:
            return "presentations", self.experiment.presentations
        return "generations", self.experiment.generations or 40


def require_config(config: Any, where: str) -> Config:
    """``config`` if it is a :class:`Config`; otherwise a :class:`ConfigError` saying how to
    make one (``where`` names the function that wants it)."""
    if isinstance(config, Config):
        return config
    raise ConfigError(
        f"{where} takes an xdream.config.Config, got {type(config).__name__} {config!r:.80}: "
        "build it with xdream.config.load(PATH) from a TOML, YAML or JSON file, or "
        "xdream.config.from_dict(MAPPING) from a dict of sections"
    )


def _component(section: str, value: Any, default: str | None) -> dict[str, Any] | None:
    if value is None:
        return None if default is None else {"name": default}
    if isinstance(value, str):
        return {"name": value}
    if not isinstance(value, Mapping):
        raise ConfigError(f"[{section}] must be a table with a 'name' key, got {value!r}")
    out = dict(value)
    if "name" not in out:
        if default is None:
            raise ConfigError(f"[{section}] needs a 'name' key (see `xdream list`)")
        out["name"] = default
    return out


def refuse_other_command(raw: Mapping[str, Any], command: str) -> None:
    """Refuse a ``[sweep]`` or ``[tune]`` section in a config that ``xdream COMMAND`` (``sweep``
    or ``tune``) reads: it is the other command's (the message of :func:`from_dict` named
    ``xdream run``)."""
    for key in ("sweep", "tune"):
        if key != command and isinstance(raw, Mapping) and key in raw:
            raise ConfigError(
                f"`xdream {command}` does not read the [{key}] section, which `xdream {key} "
                f"CONFIG` reads: remove it from the config, or run `xdream {key} CONFIG`"
            )


def from_dict(data: Mapping[str, Any], *, recorded: bool = False) -> Config:
    """Validate a nested mapping (as read from TOML/YAML) into a :class:`Config`.

    Unknown sections or keys raise :class:`ConfigError` naming the nearest valid one. Component
    names and parameters are checked against the registries. A ``[target]`` next to ``[rig]``
    is refused (it would have no effect), unless ``recorded``: the config is a run folder's
    own ``config.yaml``, where an earlier xdream recorded the unused ``[target]`` of a rig
    run; it is then left out. A ``[target] x``/``y`` beside ``[[targets]]``, which no unit
    reads, is refused the same way, and where ``recorded`` kept as it was
    (:func:`xdream.multi.parse_targets`).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"a config must be a table of sections, got {type(data).__name__}")
    data = from_numpy(data)
    for key in data:
        if key in ("sweep", "tune"):
            raise ConfigError(
                f"the [{key}] section is read by `xdream {key} CONFIG`, not by `xdream run`; "
                f"to run the experiment alone, use a copy of the config without [{key}]"
            )
        if key not in SECTIONS:
            raise ConfigError(
                f"unknown config section {key!r}.{did_you_mean(str(key), SECTIONS)} "
                f"Valid sections: {', '.join(SECTIONS)}."
            )
    for key in ("experiment", "target", "rig"):
        if key in data and not isinstance(data[key], Mapping):
            raise ConfigError(f"[{key}] must be a table of keys, got {data[key]!r}")
    experiment = build_params(ExperimentSection, data.get("experiment", {}), "[experiment]")
    rig = None if data.get("rig") is None else build_params(RigSection, data["rig"], "[rig]")
    if rig is not None and "target" in data and not recorded:
        raise ConfigError(
            "[target] has no effect next to [rig]: the recording rig is the target, not a "
            "network unit. Remove [target] from the config (to rehearse with a network unit, "
            "give its network, layer and channel to `xdream rig-sim`); the config.yaml of a "
            "rig run that an earlier xdream wrote holds one, unused, which `xdream resume` of "
            "that run passes over"
        )
    target = (
        TargetSection()  # a rig run's: unused, and not recorded
        if rig is not None
        else build_params(TargetSection, data.get("target", {}), "[target]")
    )
    generator = _component("generator", data.get("generator"), DEFAULT_GENERATOR)
    optimizer = _component("optimizer", data.get("optimizer"), DEFAULT_OPTIMIZER)
    noise = _component("noise", data.get("noise"), None)
    if rig is not None and noise is not None:
        raise ConfigError(
            "[noise] applies to network units, but [rig] makes a recording rig the target: "
            "remove [noise] (to rehearse with a noisy unit, give `xdream rig-sim` --noise)"
        )
    if rig is not None and experiment.noise_seed is not None:
        raise ConfigError(
            "[experiment] noise_seed seeds the [noise] model, which [rig] excludes: remove it "
            "(the rig's presentation order takes [rig] seed)"
        )
    if rig is not None and data.get("targets"):
        raise ConfigError(
            "[[targets]] names many network units, but [rig] makes a recording rig the target: "
            "use one or the other"
        )
    assert generator is not None and optimizer is not None
    from xdream import generators, networks, optimizers
    from xdream.multi import parse_targets
    from xdream.scorers import noise as noise_models

    networks.REGISTRY.get(target.network)
    derived: list[str] = []
    return Config(
        experiment,
        target,
        _resolve("generator", generator, generators.REGISTRY),
        _resolve("optimizer", optimizer, optimizers.REGISTRY, experiment, derived),
        None if noise is None else _resolve("noise", noise, noise_models.REGISTRY),
        rig,
        parse_targets(data.get("targets"), target, recorded=recorded),
        tuple(derived),
    )


def schedule_generations(experiment: ExperimentSection, population_size: Any) -> int | None:
    """The number of generations a run of ``experiment``'s budget has, which an optimiser's
    ``generations`` (the length of its step-size schedule: ``annealed-es``, ``sphere-cma``)
    is set to when the config leaves it out: ``generations``, or for a budget in
    presentations the whole generations of ``population_size`` codes it holds (reference
    images are not counted), as :meth:`xdream.experiment.Experiment.done` stops the run; at
    least 1. ``None`` for a budget in presentations and an optimiser without an integer
    ``population_size`` (its own default is kept)."""
    if experiment.presentations is None:
        return experiment.generations or 40
    if not isinstance(population_size, int) or isinstance(population_size, bool):
        return None
    return max(1, experiment.presentations // population_size)


def as_started_schedule(
    config: Config, folder: str | Path, derived: tuple[str, ...] | None = None
) -> Config:
    """``config`` with its ``[optimizer]`` keys that were set from the budget (``derived``,
    by default :attr:`Config.derived`) as the experiment in ``folder`` started with them, when
    its ``config.yaml`` holds them: resuming it from the config it was started from, with a
    raised budget say, keeps the schedule it started with (one started by an earlier xdream,
    which set no such key from the budget, keeps that xdream's default), as ``xdream resume``
    (which reads ``config.yaml``) does; without a readable ``config.yaml``, as ``record.h5``
    recorded it. Unchanged where the folder holds no experiment."""
    keys = config.derived if derived is None else derived
    if not keys:
        return config
    started = _started_optimizer(Path(folder))
    if not isinstance(started, Mapping) or started.get("name") != config.optimizer["name"]:
        return config
    kept = {key: started[key] for key in keys if key in started}
    return dataclasses.replace(config, optimizer={**config.optimizer, **kept})


def _started_optimizer(folder: Path) -> Any:
    """The ``[optimizer]`` table the experiment in ``folder`` started with: from its
    ``config.yaml``, or where that is gone or damaged from the copy of the resolved config in
    its ``record.h5``; ``None`` where neither says (restoring the checkpoint says what is
    wrong)."""
    try:
        started = read(folder / "config.yaml").get("optimizer")
        if isinstance(started, Mapping):
            return started
    except (XDreamError, OSError):
        pass
    try:
        import h5py

        with h5py.File(folder / "record.h5", "r", locking=False) as f:
            recorded = json.loads(f.attrs["config"])
    except (OSError, KeyError, TypeError, ValueError):
        return None
    return recorded.get("optimizer") if isinstance(recorded, dict) else None


def _resolve(
    section: str,
    value: dict[str, Any],
    registry: Any,
    experiment: ExperimentSection | None = None,
    derived: list[str] | None = None,
) -> dict[str, Any]:
    """Check a component's name and keys; return it with every default filled in. With
    ``experiment``, a ``generations`` parameter left out is the budget's
    (:func:`schedule_generations`), and its name is appended to ``derived``."""
    name = value["name"]
    if not isinstance(name, str):
        raise ConfigError(f"[{section}] name must be a string, got {name!r}")
    cls = registry.get(name)
    given = {k: v for k, v in value.items() if k != "name"}
    preset = given.pop("preset", None) if section == "optimizer" else None
    if preset is not None:  # named settings (xdream.optimizers.presets); given keys override
        from xdream.optimizers import presets

        given = {**presets.expand(name, preset)[1], **given}
    # optimisers and generators carry a Params dataclass; a noise model is its own dataclass
    kind = getattr(cls, "Params", cls)
    where = f"{section} {name!r}"
    params = build_params(kind, given, where)
    fields = {f.name for f in dataclasses.fields(params)}
    if experiment is not None and "generations" in fields and "generations" not in given:
        length = schedule_generations(experiment, getattr(params, "population_size", None))
        if length is not None:
            params = build_params(kind, {**given, "generations": length}, where)
            if derived is not None:
                derived.append("generations")
    extra = {} if preset is None else {"preset": preset}
    return {"name": name, **extra, **_plain(dataclasses.asdict(params))}


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so the resolved config serialises to YAML and JSON."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


_BOOL, _INT, _FLOAT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a key given twice in one mapping (PyYAML keeps the last
    silently; TOML refuses it), so no section or key of a config is overridden unseen."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges; may repeat
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: the base class says so
                continue
            if first is not key_node:
                raise yaml.YAMLError(
                    f"key {key!r} appears twice in one mapping (lines "
                    f"{first.start_mark.line + 1} and {key_node.start_mark.line + 1}): give each "
                    "key or section once"
                )
        return super().construct_mapping(node, deep=deep)


def _unique_json_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict, refusing a key given twice in it (``json`` keeps the last
    silently), as :class:`_UniqueKeyLoader` does for YAML."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(
                f"key {key!r} appears twice in one object: give each key or section once"
            )
        data[key] = value
    return data


def load(path: str | Path, *, recorded: bool = False) -> Config:
    """Read a TOML (``.toml``), YAML (``.yaml``/``.yml``) or JSON (``.json``) config file
    (``recorded``: a run folder's ``config.yaml``, as :func:`from_dict` takes it)."""
    return from_dict(read(path), recorded=recorded)


# YAML 1.1 (PyYAML) reads yes/no/on/off as booleans, 012 as octal 10, 1:30.0 as the base-60
# number 90.0 and 1e-3 as a string; YAML 1.2's core schema and TOML do not: only true/false are
# booleans, an integer is decimal (or 0x hex) with no leading zero, a decimal number has a point
# or an exponent, so `seed: 012`, `shuffle: no` or `timeout: 1:30.0` stays a string, which the
# key refuses by name, and 1e-3 is a number
_UniqueKeyLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL, _INT, _FLOAT)]
    for first, resolvers in _UniqueKeyLoader.yaml_implicit_resolvers.items()
}
_UniqueKeyLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_UniqueKeyLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_UniqueKeyLoader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+)$"), list("-+0123456789")
)


def read(path: str | Path) -> dict[str, Any]:
    """Parse a config file into a plain mapping, unvalidated (for tools with extra sections)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"config file {str(path)!r} is a directory; give the .toml, .yaml or .json file itself"
        )
    if not path.is_file():
        raise MissingFileError(f"config file {str(path)!r} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"config file {str(path)!r} is not UTF-8 text (byte {err.object[err.start]:#04x} at "
            f"offset {err.start} is not valid UTF-8): save it as UTF-8 (plain text; TOML, YAML "
            "and JSON files must be UTF-8)"
        ) from None
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise ConfigError(
            f"config file {str(path)!r} must end in .toml, .yaml, .yml or .json, got "
            f"{path.suffix!r}"
        )
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text, object_pairs_hook=_unique_json_keys)
        else:
            data = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except (tomllib.TOMLDecodeError, yaml.YAMLError, ValueError) as err:  # JSON's included
        raise ConfigError(f"cannot parse config file {str(path)!r}: {err}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {str(path)!r} must hold a table of sections")
    return dict(data)


class _QuotingDumper(yaml.SafeDumper):
    """``yaml.safe_dump`` that also quotes a string that :class:`_UniqueKeyLoader` would read as
    a number (``"1e3"``, which YAML 1.1 reads as a string and so leaves bare), so that the
    config.yaml it writes reads back as it was; a string YAML 1.1 reads otherwise (``"yes"``)
    stays quoted for other YAML readers."""


for _first, _resolvers in _UniqueKeyLoader.yaml_implicit_resolvers.items():
    for _tag, _regexp in _resolvers:
        _QuotingDumper.add_implicit_resolver(_tag, _regexp, [_first])


def to_yaml(config: Config | Mapping[str, Any]) -> str:
    """The resolved config (or a config's table, such as the copy ``record.h5`` keeps:
    ``xdream.records.read(RUN).config``) as YAML text, as :func:`dump_yaml` writes it."""
    data = dict(config) if isinstance(config, Mapping) else config.to_dict()
    return yaml.dump(data, Dumper=_QuotingDumper, sort_keys=False)


def dump_yaml(config: Config | Mapping[str, Any], path: str | Path) -> None:
    """Atomically write the resolved config, or a config's table, as YAML (``xdream run``
    accepts it back; a string that xdream would read as a number, ``"1e3"``, is quoted, which
    ``yaml.safe_dump`` leaves bare). To put back a run's lost ``config.yaml`` from its
    ``record.h5``: ``dump_yaml(xdream.records.read(RUN).config, RUN / "config.yaml")``."""
    from xdream.records import atomic_write

    with atomic_write(path, "w") as fh:
        fh.write(to_yaml(config))
