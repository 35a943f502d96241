"""Images to codes: invert a differentiable generator by gradient descent (``xdream encode``).

XDream seeded the first generation with codes of chosen images (Xiao & Kreiman 2020). For a
generator ``G`` and a target image ``x`` the code is fitted as ::

    z* = argmin_z  mean (G(z) - x)**2  +  w * mean (phi(G(z)) - phi(x))**2 / mean phi(x)**2

with Adam from the zero code (projected onto the generator's code bounds, such as DeePSiM's
``lower`` and ``upper``, after each step), where ``phi`` is an optional layer of a network (the
feature loss, normalised by the target's mean squared activation so ``w`` is scale-free). The
error reported is the pixel RMSE of the reconstruction in [0, 1] units and its PSNR.

An encoded folder holds ``codes.h5`` (``codes`` (n, d) float32, ``names``, ``rmse``, ``psnr``,
attribute ``generator`` = the generator's name and parameters as JSON), the resized targets
and the reconstructions as PNGs, and ``encode.json`` with the errors. Experiments start from it
with ``init_codes = "FOLDER"`` in ``[experiment]`` (:func:`load_codes`). :func:`save` refuses a
folder that already holds them (:func:`check_out`): a second encode would replace the codes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from xdream.errors import MissingFileError, XDreamError
from xdream.generators.base import Generator, check_images
from xdream.types import Codes, Images

CODES_FILE = "codes.h5"


def generator_spec(generator: Generator) -> dict[str, Any]:
    """The generator's registered name and parameters (enough to rebuild it)."""
    return {"name": generator.name, **dataclasses.asdict(generator.params)}


def recorded_generator_spec(generator: Generator) -> dict[str, Any] | str:
    """How a record names a generator: its name and parameters, as a config's
    ``[generator]`` does (``xdream render`` and the report rebuild it from them); its name
    alone when its parameters are no dataclass of JSON values."""
    try:
        spec = generator_spec(generator)
        json.dumps(spec)
    except (TypeError, ValueError):
        return generator.name
    return spec


# --------------------------------------------------------------------------- images
BACKGROUND = 0.5
"""Grey level that transparent pixels are composited onto (mid-grey, the image of the zero code
of the ``pixels`` and ``fourier`` generators): a transparent part has no colour of its own."""


def max_image_pixels() -> int:
    """The largest image (in pixels) ``xdream encode`` reads: Pillow's decompression-bomb limit."""
    from PIL import Image

    return int(Image.MAX_IMAGE_PIXELS or 89_478_485)


def load_image(source: str, size: tuple[int, int], notes: list[str] | None = None) -> Images:
    """An image file, or ``skimage:NAME`` (a bundled scikit-image photo, one of
    :data:`xdream.references.BUNDLED`), as ``(1, 3, H, W)``.

    A file is turned upright by its EXIF orientation (as photos from phones and cameras are
    shown). The image is centre-cropped to the aspect ratio of ``size`` and resized to it.
    8-bit images are divided by 255, 16-bit greyscale (Pillow modes ``I;16``, ``I;16B``, ``I``)
    by 65535; 32-bit float greyscale (mode ``F``) must hold values in [0, 1]. Transparent
    pixels (RGBA, LA, or a palette or colour with a transparent entry) are composited onto
    mid-grey (:data:`BACKGROUND`); a line saying so is appended to ``notes``.
    """
    from xdream.references import photo

    if source.startswith("skimage:"):
        img = photo(source.removeprefix("skimage:"))
    else:
        import warnings

        from PIL import Image, ImageOps, UnidentifiedImageError

        if Path(source).is_dir():
            raise XDreamError(f"image {source!r} is a directory; give image files (PNG or JPEG)")
        try:
            with warnings.catch_warnings():
                # Pillow warns between its limit and twice it, and raises above: refuse both
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(source) as im:
                    ImageOps.exif_transpose(im, in_place=True)  # upright, as viewers show it
                    arr = _rgb_array(im, source, notes)
        except FileNotFoundError:
            raise MissingFileError(f"image {source!r} not found") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            found = re.search(r"\((\d+) pixels\)", str(err))
            raise XDreamError(
                f"image {source!r} is too large"
                + (f" ({int(found.group(1)):,} pixels)" if found else "")
                + f"; xdream encode reads images of up to {max_image_pixels():,} pixels (e.g. "
                "9000 x 9000). Shrink it first: the fit only sees it at the generator's output "
                "size."
            ) from None
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise XDreamError(f"cannot read image {source!r} ({err}); give a PNG or JPEG") from None
        img = torch.from_numpy(arr).permute(2, 0, 1)
    _, h, w = img.shape
    target_ratio = size[1] / size[0]
    if w / h > target_ratio:  # too wide: crop the sides
        new_w = max(1, round(h * target_ratio))
        img = img[:, :, (w - new_w) // 2 : (w - new_w) // 2 + new_w]
    else:
        new_h = max(1, round(w / target_ratio))
        img = img[:, (h - new_h) // 2 : (h - new_h) // 2 + new_h, :]
    out = torch.nn.functional.interpolate(
        img[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False
    )
    return out.clamp(0.0, 1.0)


def _rgb_array(im: Any, source: str, notes: list[str] | None) -> npt.NDArray[np.float32]:
    """``(H, W, 3)`` float32 in [0, 1] from an open PIL image of any mode (:func:`load_image`)."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        grey = np.asarray(im).astype(np.float64)
        if grey.size and (grey.min() < 0 or grey.max() > 65535):
            raise XDreamError(
                f"image {source!r} is an integer greyscale image (mode {mode}) with values from "
                f"{grey.min():.0f} to {grey.max():.0f}; xdream reads integer greyscale as 16-bit "
                "(0 to 65535). "
                "Save it as an 8- or 16-bit PNG."
            )
        grey /= 65535.0
    elif mode == "F":
        grey = np.asarray(im).astype(np.float64)
        if not np.isfinite(grey).all() or (grey.size and (grey.min() < 0 or grey.max() > 1)):
            raise XDreamError(
                f"image {source!r} is a 32-bit float image with values from {np.nanmin(grey):g} "
                f"to {np.nanmax(grey):g}; xdream reads float greyscale as values in [0, 1]. "
                "Rescale it to [0, 1], or save it as an 8- or 16-bit PNG."
            )
    else:
        transparent = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
        if not transparent:
            return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:]
        if (alpha < 1).any() and notes is not None:
            notes.append(
                f"{source}: transparent pixels ({float((alpha < 1).mean()):.0%} of the image) "
                f"were composited onto mid-grey ({BACKGROUND})"
            )
        return (rgba[..., :3] * alpha + BACKGROUND * (1 - alpha)).astype(np.float32)
    return np.repeat(grey[..., None], 3, axis=2).astype(np.float32)


def image_name(source: str) -> str:
    """A file-name-safe name for an image source (``skimage:chelsea`` -> ``chelsea``)."""
    stem = source.removeprefix("skimage:") if source.startswith("skimage:") else Path(source).stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) or "image"


# --------------------------------------------------------------------------- feature loss
class LayerFeatures(nn.Module):
    """The output of one layer of a network, differentiable (for the feature loss)."""

    def __init__(self, network: str, layer: str, weights: str | None = None) -> None:
        super().__init__()
        from xdream import networks
        from xdream.errors import did_you_mean

        net = networks.make(network, weights=weights)
        self.module = net.module.eval().requires_grad_(False)
        self.preprocess = net.preprocess
        modules = {name: m for name, m in self.module.named_modules() if name}  # "": the net
        if layer not in modules:
            raise XDreamError(
                f"network {network!r} has no layer {layer!r}.{did_you_mean(layer, modules)} "
                f"List the layers with `xdream layers {network}`."
            )
        self.layer = modules[layer]

    def forward(self, images: Images) -> torch.Tensor:
        """Activations ``(n, ...)`` of the layer for images in [0, 1] (the forward stops there)."""

        def hook(_mod: nn.Module, _inp: Any, out: Any) -> None:
            raise _Reached(out)

        handle = self.layer.register_forward_hook(hook)
        try:
            self.module(self.preprocess(images))
        except _Reached as reached:
            return reached.output
        finally:
            handle.remove()
        raise XDreamError("the feature layer was not called in the network's forward pass")


class _Reached(BaseException):
    """Ends a forward pass at the feature layer (a BaseException: no ``except Exception``)."""

    def __init__(self, output: torch.Tensor) -> None:
        super().__init__()
        self.output = output


# --------------------------------------------------------------------------- fitting
@dataclass
class Encoded:
    """Codes fitted to images, their reconstructions and the reconstruction error."""

    codes: Codes  # (n, d) float32
    reconstructions: Images  # (n, 3, H, W) in [0, 1]
    targets: Images  # (n, 3, H, W), the images resized to the generator's output
    rmse: npt.NDArray[np.float64]  # (n,) pixel RMSE in [0, 1] units
    psnr: npt.NDArray[np.float64]  # (n,) dB, 20 log10(1 / rmse)
    losses: npt.NDArray[np.float64]  # (steps,) total loss per step (mean over images)


MAX_LR = 1e6
"""The largest learning rate :func:`encode` takes: Adam moves each code entry by about the
learning rate per step, and far larger ones overflow its float32 arithmetic."""


def check_options(*, steps: int, lr: float, feature_weight: float) -> None:
    """Refuse fitting options that cannot give codes: steps a positive integer, the learning
    rate a positive number up to :data:`MAX_LR`, the feature weight a finite number >= 0."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise XDreamError(f"steps must be a positive integer (e.g. 300), got {steps!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr <= MAX_LR:
        raise XDreamError(
            f"the learning rate must be a finite positive number up to {MAX_LR:g} (e.g. 0.1; "
            f"Adam moves each code entry by about this much per step), got {lr!r}"
        )
    if (
        isinstance(feature_weight, bool)
        or not isinstance(feature_weight, (int, float))
        or not (math.isfinite(feature_weight) and feature_weight >= 0)
    ):
        raise XDreamError(
            "the feature weight must be a finite number >= 0 (e.g. 1; 0 fits pixels only), "
            f"got {feature_weight!r}"
        )


def encode(
    generator: Generator,
    images: Images,
    *,
    steps: int = 300,
    lr: float = 0.1,
    features: nn.Module | None = None,
    feature_weight: float = 1.0,
) -> Encoded:
    """Fit one code per image by Adam on the pixel loss (+ ``feature_weight`` x feature loss).

    ``images`` are ``(n, 3, H, W)`` in [0, 1], resized to the generator's output size.
    ``features`` maps images to activations (e.g. :class:`LayerFeatures`).

    >>> from xdream.generators import make
    >>> gen = make("pixels", size=16, code_size=4)
    >>> out = encode(gen, torch.full((1, 3, 16, 16), 0.8), steps=200, lr=0.1)
    >>> bool(out.rmse[0] < 0.01)
    True
    """
    if not generator.differentiable:
        raise XDreamError(
            f"generator {generator.name!r} is not differentiable, so codes cannot be fitted by "
            "gradient descent; choose a differentiable generator (see `xdream list`)"
        )
    check_images(images)
    check_options(steps=steps, lr=lr, feature_weight=feature_weight)
    device = generator.device
    h, w = generator.output_size
    targets = images.float().to(device)
    if targets.shape[-2:] != (h, w):
        targets = torch.nn.functional.interpolate(
            targets, size=(h, w), mode="bilinear", antialias=True, align_corners=False
        )
    if features is not None:
        features = features.to(device)
    codes = torch.zeros(len(targets), generator.code_dim, device=device, requires_grad=True)
    losses = np.zeros(steps)
    trainable = [p for p in generator.parameters() if p.requires_grad]
    for p in trainable:  # gradients for the codes only; restored below
        p.requires_grad_(False)
    try:
        with torch.enable_grad():
            _fit(generator, codes, targets, steps, lr, features, feature_weight, losses)
    finally:
        for p in trainable:
            p.requires_grad_(True)
    with torch.no_grad():
        recon = generator(codes).clamp(0, 1)
        rmse = (recon - targets).pow(2).mean(dim=(1, 2, 3)).sqrt().double().cpu().numpy()
    if not (torch.isfinite(codes).all() and np.isfinite(rmse).all()):
        raise XDreamError(
            f"the fit diverged (the codes became infinite or NaN at learning rate {lr:g}); "
            "lower the learning rate (--lr)"
        )
    psnr = np.array([20 * math.log10(1 / max(r, 1e-12)) for r in rmse])
    return Encoded(
        codes=codes.detach().cpu().numpy().astype(np.float32),
        reconstructions=recon.cpu(),
        targets=targets.cpu(),
        rmse=rmse,
        psnr=psnr,
        losses=losses,
    )


def _fit(
    generator: Generator,
    codes: torch.Tensor,
    targets: Images,
    steps: int,
    lr: float,
    features: nn.Module | None,
    feature_weight: float,
    losses: npt.NDArray[np.float64],
) -> None:
    """Adam on ``codes`` in place, projected onto the generator's code bounds after each step
    (an entry pushed past a bound would get no gradient from then on); the loss of each step
    goes into ``losses``."""
    lower, upper = (
        None if b is None else torch.as_tensor(b, device=codes.device)
        for b in generator.code_bounds()
    )
    bounded = lower is not None or upper is not None
    if bounded:
        with torch.no_grad():
            codes.clamp_(lower, upper)  # the zero code may lie outside them
    target_features = feature_scale = None
    if features is not None:
        with torch.no_grad():
            target_features = features(targets).detach()
        # normalised so the weight does not depend on the layer's activation scale
        feature_scale = target_features.pow(2).mean().clamp_min(1e-12)
    optimiser = torch.optim.Adam([codes], lr=lr)
    for step in range(steps):
        optimiser.zero_grad(set_to_none=True)
        recon = generator(codes)
        loss = (recon - targets).pow(2).mean()
        if features is not None and target_features is not None and feature_scale is not None:
            diff = features(recon) - target_features
            loss = loss + feature_weight * diff.pow(2).mean() / feature_scale
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        if bounded:
            with torch.no_grad():
                codes.clamp_(lower, upper)
        losses[step] = loss.item()


# --------------------------------------------------------------------------- folders
def check_out(folder: str | Path) -> None:
    """Refuse an output folder that already holds the output of an encode (or is a file).

    Encoding into it again would replace its ``codes.h5`` and lose the earlier images' codes
    while their PNGs stayed, so each encode gets a folder of its own.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise XDreamError(
            f"output folder {str(folder)!r} is a file; give a folder for --out (it is created)"
        )
    found = [name for name in (CODES_FILE, "encode.json") if (folder / name).exists()]
    if found:
        raise XDreamError(
            f"output folder {str(folder)!r} already holds the output of an earlier encode "
            f"({', '.join(found)}); encoding into it again would replace those codes. Give "
            "another --out, or delete the folder first; to encode several images together, "
            "name them all in one `xdream encode` command."
        )


def make_out(folder: str | Path) -> list[Path]:
    """Check an output folder (:func:`check_out`), create it and check that a file can be
    written into it, before a fit that may take minutes; returns the folders created, deepest
    first (for removal if nothing is written after all). When that fails, the folders it
    created are removed again (:func:`xdream.records.make_folder`)."""
    from xdream.records import make_folder

    folder = Path(folder)
    try:
        check_out(folder)
        return make_folder(folder, exist_ok=True)
    except OSError as err:  # a name too long, a read-only file system, no permission, ...
        raise XDreamError(
            f"cannot write into output folder {str(folder)!r}: {err.strerror}; give another --out"
        ) from None


def save(folder: str | Path, result: Encoded, names: Sequence[str], generator: Generator) -> Path:
    """Write an encoded folder (see the module docstring); returns its path."""
    from xdream.records import save_png, write_json

    folder = Path(folder)
    check_out(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise XDreamError(f"cannot create output folder {str(folder)!r}: {err.strerror}") from None
    spec = generator_spec(generator)
    tmp = folder / f".{CODES_FILE}.tmp"
    with h5py.File(tmp, "w") as f:  # h5py reads back while writing: a real file, then rename
        f["codes"] = result.codes
        f.create_dataset("names", data=list(names), dtype=h5py.string_dtype("utf-8"))
        f["rmse"] = result.rmse
        f["psnr"] = result.psnr
        f.attrs["generator"] = json.dumps(spec)
        file = getattr(generator, "weights_file", None)  # the file read, wherever named
        if file is not None:
            f.attrs["weights_file"] = str(Path(file).resolve())
    os.replace(tmp, folder / CODES_FILE)
    for i, name in enumerate(names):
        save_png(result.targets[i], folder / f"{name}_target.png")
        save_png(result.reconstructions[i], folder / f"{name}_reconstruction.png")
    write_json(
        folder / "encode.json",
        {
            "generator": spec,
            "images": [
                {"name": n, "rmse": float(r), "psnr_db": float(p)}
                for n, r, p in zip(names, result.rmse, result.psnr)
            ],
            "final_loss": float(result.losses[-1]),
        },
    )
    return folder


def load_codes(path: str | Path, generator: Generator | None = None) -> Codes:
    """Initial codes from an encoded folder, a ``codes.h5`` file, or ``.npy`` files.

    ``path`` is a folder holding ``codes.h5`` (written by ``xdream encode``) or one or more
    ``*.npy`` files (each a code ``(d,)`` or codes ``(n, d)``, read in name order, as XDream's
    ``initcodedir``), or one such file. With ``generator``, the codes' dimension must match its
    ``code_dim``, and codes encoded for another generator, or with other values of the
    parameters that change the picture a code draws, are refused (``codes.h5`` records them).
    """
    path = Path(path)
    if not path.exists():
        raise MissingFileError(
            f"initial codes {str(path)!r} not found; give a folder written by `xdream encode` "
            "or a folder of .npy codes"
        )
    h5 = path / CODES_FILE if path.is_dir() else path
    spec: dict[str, Any] | None = None
    weights_file: str | None = None
    if h5.suffix == ".h5" and h5.exists():
        codes, spec, weights_file = _read_codes_h5(h5)
    else:
        files = sorted(path.glob("*.npy")) if path.is_dir() else [path]
        if not files or any(p.suffix != ".npy" for p in files):
            raise XDreamError(
                f"{str(path)!r} holds no codes: expected {CODES_FILE} (from `xdream encode`) "
                "or .npy files"
            )
        arrays = [_read_npy(p) for p in files]
        for p, a in zip(files, arrays):
            if a.shape[1] != arrays[0].shape[1]:
                raise XDreamError(
                    f"the .npy codes in {str(path)!r} differ in length: {files[0].name} holds "
                    f"codes of {arrays[0].shape[1]} entries, {p.name} of {a.shape[1]}; all must "
                    "be codes of the same generator"
                )
        codes = np.concatenate(arrays)
    if codes.ndim != 2 or len(codes) == 0:
        raise XDreamError(
            f"initial codes in {str(path)!r} must be (n, d) with n >= 1, got {codes.shape}"
        )
    if generator is not None:
        if spec is not None and spec.get("name") != generator.name:
            raise XDreamError(
                f"the codes in {str(path)!r} were encoded for generator {spec.get('name')!r}, "
                f"but this experiment uses {generator.name!r}; encode the images again with "
                f"`xdream encode ... --generator {generator.name}`"
            )
        if spec is not None:
            _check_spec(spec, generator, path, weights_file)
        if codes.shape[1] != generator.code_dim:
            raise XDreamError(
                f"the codes in {str(path)!r} have {codes.shape[1]} entries but generator "
                f"{generator.name!r} takes {generator.code_dim}; encode the images with the "
                "experiment's generator and parameters"
            )
    return codes


def _read_codes_h5(
    h5: Path,
) -> tuple[npt.NDArray[np.float32], dict[str, Any] | None, str | None]:
    """The codes, the generator spec (``None`` if absent) and the weight file the generator
    read (``None`` if none, or written before xdream recorded it) of a ``codes.h5``."""
    try:
        with h5py.File(h5, "r", locking=False) as f:
            if not isinstance(f.get("codes"), h5py.Dataset):
                raise XDreamError(f"{str(h5)!r} has no 'codes' dataset")
            codes = np.asarray(f["codes"][()], dtype=np.float32)
            text = f.attrs.get("generator")
            file = f.attrs.get("weights_file")
    except (OSError, ValueError, TypeError) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise XDreamError(
            f"{str(h5)!r} cannot be read as the codes of `xdream encode` (an HDF5 file with a "
            f"numeric 'codes' dataset): {detail}. It may be cut short or damaged: encode the "
            "images again."
        ) from None
    if isinstance(file, bytes):
        file = file.decode(errors="replace")
    file = file if isinstance(file, str) else None
    if text is None:
        return codes, None, file
    try:
        spec = json.loads(text)
    except (ValueError, TypeError):
        spec = None
    if not isinstance(spec, dict):
        raise XDreamError(
            f"{str(h5)!r}: its attribute 'generator' is not the JSON object of the generator's "
            "name and parameters that `xdream encode` writes; encode the images again"
        )
    return codes, spec, file


def _read_npy(path: Path) -> npt.NDArray[np.float32]:
    """One ``.npy`` file of codes, ``(d,)`` or ``(n, d)``, as ``(n, d)`` float32."""
    try:
        array = np.load(path, allow_pickle=False)  # never runs code from the file
    except (ValueError, OSError, EOFError):
        array = None
    if isinstance(array, np.lib.npyio.NpzFile):  # a .npz archive under a .npy name
        array.close()
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "iuf" or array.ndim > 2:
        found = (
            "it cannot be read as a NumPy array (not a .npy file, cut short, or holding Python "
            "objects)"
            if not isinstance(array, np.ndarray)
            else f"it holds a {array.dtype} array of shape {array.shape}"
        )
        raise XDreamError(
            f"initial codes {str(path)!r}: {found}; expected a numeric array, one code (d,) or "
            "codes (n, d), as numpy.save writes it"
        )
    return np.atleast_2d(array).astype(np.float32)


def _check_spec(
    spec: dict[str, Any], generator: Generator, path: Path, weights_file: str | None = None
) -> None:
    """Refuse codes encoded with other values of the parameters that change the picture a code
    draws (:attr:`Generator.same_image_params` are exempt; another ``weights`` file is warned
    about: :func:`_other_weights`, ``weights_file`` the file the encoding generator read).
    Keys only one side knows (from another xdream version) are not compared, nor are
    parameters that are no JSON values (NumPy numbers or arrays, in a generator built from its
    Params in Python; said in a warning): the record names such a generator by its name alone
    too (:func:`recorded_generator_spec`)."""
    import warnings

    recorded = recorded_generator_spec(generator)
    if isinstance(recorded, str):
        warnings.warn(
            f"the codes in {str(path)!r} are loaded without comparing the parameters they were "
            f"encoded with to those of this experiment's {generator.name} generator, which are "
            "not all JSON values (NumPy numbers or arrays?): give it plain numbers and lists "
            "to have them compared",
            UserWarning,
            stacklevel=3,
        )
        return
    current = json.loads(json.dumps(recorded))  # tuples as lists, as stored
    shared = [k for k in spec if k != "name" and k in current and spec[k] != current[k]]
    differ = [k for k in shared if k not in generator.same_image_params]
    if differ:
        fixes = [f"{k} = {_value(spec[k])}" if spec[k] is not None else f"no {k}" for k in differ]
        raise XDreamError(
            f"the codes in {str(path)!r} were encoded with {generator.name} parameters "
            + ", ".join(f"{k}={_value(spec[k])}" for k in differ)
            + ", but this experiment's generator has "
            + ", ".join(f"{k}={_value(current[k])}" for k in differ)
            + ", with which they draw other images. Give the generator the parameters they "
            f"were encoded with ([generator]: {'; '.join(fixes)}), or encode the images again "
            "with this experiment's (`xdream encode ... --param KEY=VALUE`)"
        )
    other = (
        _other_weights(spec["weights"], weights_file, generator)
        if "weights" in spec and "weights" in current and "weights" not in differ
        else None
    )
    if other:
        warnings.warn(
            f"the codes in {str(path)!r} were encoded with {other}: if that is not the same "
            "network (in another file or format), encode the images again",
            UserWarning,
            stacklevel=3,
        )


def _other_weights(given: str | None, file: str | None, generator: Generator) -> str | None:
    """``"<the codes' weights>, and this experiment's generator reads <its>"`` when the codes
    were encoded with (``given``: the ``weights`` parameter, ``file``: the file read) other
    weights than ``generator`` reads, else ``None``. Files are compared, not their spellings:
    ``w/fc8.pt`` and ``./w/fc8.pt``, or a file named once and found in the catalogue once,
    are the same; ``None`` is the catalogue's file."""
    now_given: str | None = getattr(generator.params, "weights", None)
    now_file: str | None = getattr(generator, "weights_file", None)  # None: not loaded
    if file is not None and now_file is not None:
        same = _same_file(file, now_file)
    else:  # a codes.h5 from before the file was recorded, or a generator without weights
        encoded, now = file or given, now_file or now_given
        same = given == now_given or (
            encoded is not None and now is not None and _same_file(encoded, now)
        )
    if same:
        return None
    if file is not None or given is not None:
        before = f"the weights {_value(file or given)}"
    else:
        before = "the catalogue's weights"
    if now_file is not None:
        after = _value(now_file) + (" (the catalogue's)" if now_given is None else "")
    else:
        after = _value(now_given) if now_given is not None else "the catalogue's"
    return f"{before}, and this experiment's generator reads {after}"


def _same_file(a: str, b: str) -> bool:
    """Whether paths ``a`` and ``b`` name the same file (the same path when one is missing)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _value(value: Any) -> str:
    """A parameter value as a config writes it (TOML), a long list shortened."""
    if value is None:
        return "none"
    text = json.dumps(value)
    if isinstance(value, list) and len(text) > 60:
        return f"{json.dumps(value[:4])[:-1]}, ...] ({len(value)} values)"
    return text
