"""What to tell a user whose images are all smaller than the training size: which option fits the data.

The cache knows the numbers (the images' sizes, min_size, the resolution); only the command line knows where the
resolution came from (a --config file, an override, or the model itself when model.resolution is null). So the cache
raises `ImagesTooSmallError` with a message in terms of the options, and `agsm train` rewrites it with `explain`, naming
the --config that set the size and the flags that fix it.
"""
from __future__ import annotations

from .errors import ImagesTooSmallError

# Latent sizes must divide by the denoisers' downsampling (8 px per latent cell, and up to 3 halvings in a UNet), so
# a suggested training size is rounded down to a multiple of 64 px.
SIZE_STEP = 64


def too_small_error(seen: int, unreadable: int, small_sides: list[int], min_size: int,
                    resolution: int) -> ImagesTooSmallError:
    """The error of a data set none of whose images reaches min_size (the library's wording: option names only)."""
    readable = [s for s in small_sides if s is not None]
    sides = (min(readable), max(readable)) if readable else None
    message = (f"{_lead(seen, unreadable, len(small_sides), min_size)}; they are {_sizes(sides)}, model.resolution "
               f"{resolution}): {_fixes(sides, min_size, resolution)}")
    return ImagesTooSmallError(message, seen=seen, too_small=len(small_sides), unreadable=unreadable,
                               min_size=min_size, resolution=resolution, sides=sides)


def explain(exc: ImagesTooSmallError, config_arg, file_options: dict, overrides: dict) -> str:
    """`exc`'s message for `agsm train`: where model.resolution and data.min_size came from, and the flags to pass.

    file_options / overrides: the nested dicts of the --config file and of the command line's --section.option
    flags; a value set in neither is the model's own (model.resolution null: its native size; data.min_size null:
    resolution // 2)."""
    def set_by(section: str, option: str) -> str:
        if (overrides.get(section) or {}).get(option) is not None:
            return "override"
        return "config" if (file_options.get(section) or {}).get(option) is not None else ""

    resolution_by, min_size_by = set_by("model", "resolution"), set_by("data", "min_size")
    origin = {"config": f"from --config {config_arg}", "override": "from --model.resolution",
              "": "the model's own size"}[resolution_by]
    reason = f"model.resolution {exc.resolution} {origin}"
    if min_size_by == "config":
        reason += f"; data.min_size from --config {config_arg}"
    elif not min_size_by:
        reason += "; data.min_size is model.resolution // 2"
    fixes = _fixes(exc.sides, exc.min_size, exc.resolution, flags=True)
    if resolution_by == "config":
        fixes += ", or leave --config out to follow the model (or pass --model.resolution null)"
    lead = _lead(exc.seen, exc.unreadable, exc.too_small, exc.min_size)
    return f"{lead}; they are {_sizes(exc.sides)}, {reason}): {fixes}"


def _lead(seen: int, unreadable: int, too_small: int, min_size: int) -> str:
    return (f"none of the {seen} images could be used ({unreadable} unreadable, {too_small} smaller than {min_size} px "
            "on the shorter side, data.min_size")


def _sizes(sides) -> str:
    if sides is None:
        return "of unknown size"
    low, high = sides
    return f"{high} px" if low == high else f"{low}-{high} px"


def _fixes(sides, min_size: int, resolution: int, flags: bool = False) -> str:
    """'set --model.resolution 64 or --data.min_size 64': a training size the images have, or a minimum they reach
    (they are then upscaled to the resolution)."""
    opt = (lambda name: f"--{name}") if flags else (lambda name: name)
    if sides is None:
        return f"check the image files, or lower {opt('data.min_size')}"
    largest = sides[1]
    fits = largest // SIZE_STEP * SIZE_STEP
    options = []
    if SIZE_STEP <= fits < resolution:
        options.append(f"{opt('model.resolution')} {fits} (the images' size)")
    options.append(f"{opt('data.min_size')} {largest} (upscale them to {resolution} px)")
    return "set " + " or ".join(options)
