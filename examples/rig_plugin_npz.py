"""Plug a lab's own file formats into the rig protocol, as XDream's ``_get_scores()`` allowed.

This module registers, by name:

- a response **reader** ``npz`` for ``block{NNN}.npz`` files holding ``names`` (the stimulus file
  names) and ``responses`` (stimuli x channels), as a NumPy-based acquisition system might write;
- the matching response **writer** (so ``xdream rig-sim --plugin ... --format npz`` can
  rehearse with it);
- an image **writer** ``jpeg`` for rigs whose presentation software wants JPEG files.

Use it from a config with::

    [rig]
    plugins = ["/path/to/examples/rig_plugin_npz.py"]
    response_format = "npz"
    image_format = "jpeg"

Running this file rehearses a short closed loop against a simulated rig in a thread:

    python examples/rig_plugin_npz.py --out runs/rig-npz --generations 3
"""

from __future__ import annotations

import argparse
import io
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

import xdream.rig
from xdream import config as config_mod
from xdream.experiment import Experiment
from xdream.rig.sim import RigSim, SimSettings
from xdream.scorers.base import Scorer

if "npz" not in xdream.rig.READERS:  # registering twice is an error; importing twice is not

    @xdream.rig.register_reader("npz", extensions=(".npz",))
    def read_npz(path: Path) -> xdream.rig.Response:
        """NumPy archive with ``names`` and ``responses`` (stimuli x channels)."""
        with np.load(path, allow_pickle=False) as f:
            if "names" not in f or "responses" not in f:
                raise xdream.rig.MalformedResponse("expected arrays 'names' and 'responses'")
            return xdream.rig.Response([str(n) for n in f["names"]], f["responses"])

    @xdream.rig.register_writer("npz", ".npz")
    def write_npz(path: Path, names: Sequence[str], values: npt.NDArray[np.float64]) -> None:
        """NumPy archive with ``names`` and ``responses``."""
        with open(path, "wb") as fh:
            np.savez(fh, names=np.array(names, dtype=str), responses=values)

    @xdream.rig.register_image_writer("jpeg", ".jpg")
    def encode_jpeg(image: npt.NDArray[np.uint8]) -> bytes:
        """Baseline JPEG, quality 95."""
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=95)
        return buf.getvalue()


class Brightness(Scorer):
    """The simulated neuron of this rehearsal: it likes bright images."""

    def score(self, images: npt.NDArray[np.float32], ids: list[str]) -> npt.NDArray[np.float64]:
        return np.asarray(images.mean(dim=(1, 2, 3)), dtype=np.float64)  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/rig-npz")
    parser.add_argument("--generations", type=int, default=3)
    args = parser.parse_args(argv)

    config = config_mod.from_dict(
        {
            "experiment": {"generations": args.generations, "n_references": 2},
            "generator": {"name": "pixels", "size": 32, "code_size": 8},
            "optimizer": {"name": "genetic", "population_size": 10},
            "rig": {"plugins": [__file__], "response_format": "npz", "image_format": "jpeg"},
        }
    )
    experiment = Experiment.from_config(config, args.out)
    sim = RigSim(
        Path(args.out) / "stimuli",
        None,
        Brightness(),
        SimSettings(response_format="npz", latency=(0.0, 0.02)),
    )
    thread = threading.Thread(target=sim.run, daemon=True)
    thread.start()
    summary = experiment.run()
    sim.stop_requested = True
    thread.join()
    print(f"best brightness {summary['best_score']:.3f} after {summary['generations']} generations")
    return summary


if __name__ == "__main__":
    main()
