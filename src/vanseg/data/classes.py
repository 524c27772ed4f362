"""Class names and colour palettes: the 150 ADE20K (SceneParse150) classes and a generic palette.

The names and colours are the standard SceneParse150 metadata, in label order after
``reduce_zero_label`` (index 0 is "wall", raw label value 1). The original lists the third
class as ``"bed "`` with a trailing space; we drop the space so metric keys stay clean.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "ADE20K_CLASSES",
    "ADE20K_NUM_CLASSES",
    "IGNORE_INDEX",
    "ADE20K_PALETTE",
    "generic_class_names",
    "generic_palette",
    "resolve_class_names",
    "resolve_palette",
]

Color = tuple[int, int, int]

# fmt: off
ADE20K_CLASSES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug",
    "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
    "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter",
    "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs",
    "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
    "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet",
    "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
    "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave",
    "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate",
    "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)

#: Classes of ADE20K (SceneParse150): the default of every ``num_classes`` in vanseg.
ADE20K_NUM_CLASSES = len(ADE20K_CLASSES)
#: Label of ignored pixels (ADE20K's raw 0 after ``reduce_zero_label``, and padding).
IGNORE_INDEX = 255

ADE20K_PALETTE: tuple[Color, ...] = (
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3),
    (120, 120, 80), (140, 140, 140), (204, 5, 255), (230, 230, 230), (4, 250, 7),
    (224, 5, 255), (235, 255, 7), (150, 5, 61), (120, 120, 70), (8, 255, 51),
    (255, 6, 82), (143, 255, 140), (204, 255, 4), (255, 51, 7), (204, 70, 3),
    (0, 102, 200), (61, 230, 250), (255, 6, 51), (11, 102, 255), (255, 7, 71),
    (255, 9, 224), (9, 7, 230), (220, 220, 220), (255, 9, 92), (112, 9, 255),
    (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10),
    (7, 255, 255), (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7),
    (255, 122, 8), (0, 255, 20), (255, 8, 41), (255, 5, 153), (6, 51, 255),
    (235, 12, 255), (160, 150, 20), (0, 163, 255), (140, 140, 140), (250, 10, 15),
    (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0), (153, 255, 0),
    (0, 0, 255), (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255),
    (11, 200, 200), (255, 82, 0), (0, 255, 245), (0, 61, 255), (0, 255, 112),
    (0, 255, 133), (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0),
    (0, 143, 255), (51, 255, 0), (0, 82, 255), (0, 255, 41), (0, 255, 173),
    (10, 0, 255), (173, 255, 0), (0, 255, 153), (255, 92, 0), (255, 0, 255),
    (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20), (255, 184, 184),
    (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194),
    (0, 255, 82), (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255),
    (0, 122, 255), (0, 255, 163), (255, 153, 0), (0, 255, 10), (255, 112, 0),
    (143, 255, 0), (82, 0, 255), (163, 255, 0), (255, 235, 0), (8, 184, 170),
    (133, 0, 255), (0, 255, 92), (184, 0, 255), (255, 0, 31), (0, 184, 255),
    (0, 214, 255), (255, 0, 112), (92, 255, 0), (0, 224, 255), (112, 224, 255),
    (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0), (255, 0, 163),
    (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235),
    (245, 0, 255), (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0),
    (0, 204, 255), (20, 0, 255), (255, 255, 0), (0, 153, 255), (0, 41, 255),
    (0, 255, 204), (41, 0, 255), (41, 255, 0), (173, 0, 255), (0, 245, 255),
    (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255), (184, 255, 0),
    (0, 133, 255), (255, 214, 0), (25, 194, 194), (102, 255, 0), (92, 0, 255),
)
# fmt: on


def generic_class_names(num_classes: int) -> tuple[str, ...]:
    """Placeholder names ``class_0 .. class_{K-1}`` for datasets that bring no names."""
    return tuple(f"class_{i}" for i in range(num_classes))


def generic_palette(num_classes: int) -> tuple[Color, ...]:
    """A deterministic palette of ``num_classes`` distinct, saturated colours.

    Hues follow the golden-ratio sequence, so neighbouring class ids get clearly different
    colours for any class count, and the result never depends on a random state.
    """
    colors = []
    for i in range(num_classes):
        hue = (i * 0.618033988749895) % 1.0
        value = 0.95 if i % 2 == 0 else 0.7
        r, g, b = colorsys.hsv_to_rgb(hue, 0.85, value)
        colors.append((round(r * 255), round(g * 255), round(b * 255)))
    return tuple(colors)


def _per_class(
    option: str,
    value: Sequence[Any] | str | None,
    num_classes: int,
    builtin: tuple[Any, ...],
    generate: Callable[[int], tuple[Any, ...]],
    convert: Callable[[Any], Any],
    item: str,
    generated: str,
) -> tuple[Any, ...]:
    """One value per class from a config value: ``"ade20k"``, ``None`` (generated) or a list.

    ``item`` names one entry in messages (``"class name"``), ``generated`` what ``null`` gives.
    """
    if value is None:
        return generate(num_classes)
    if isinstance(value, str):
        if value != "ade20k":
            raise ValueError(
                f"{option}={value!r}: use 'ade20k', null ({generated}) or a list, one {item} "
                "per class."
            )
        items = builtin
    else:
        items = tuple(convert(v) for v in value)
    if len(items) != num_classes:
        raise ValueError(
            f"{len(items)} {item}s given for num_classes={num_classes}; give exactly one {item} "
            f"per class (data.{option}=[...]) or data.{option}=null for {generated}."
        )
    return items


def resolve_class_names(
    class_names: Sequence[str] | str | None, num_classes: int
) -> tuple[str, ...]:
    """Turn the ``class_names`` config value into ``num_classes`` names.

    Args:
        class_names: ``"ade20k"`` for the ADE20K names, ``None`` for ``class_<i>``, or a list.
        num_classes: Number of classes the dataset has (K).

    Raises:
        ValueError: When the list length differs from ``num_classes``, or the key is unknown.
    """
    return _per_class(
        "class_names",
        class_names,
        num_classes,
        ADE20K_CLASSES,
        generic_class_names,
        str,
        "class name",
        "class_<i>",
    )


def resolve_palette(
    palette: Sequence[Sequence[int]] | str | None, num_classes: int
) -> tuple[Color, ...]:
    """Turn the ``palette`` config value into ``num_classes`` RGB colours.

    Args:
        palette: ``"ade20k"`` for the ADE20K colours, ``None`` for `generic_palette`, or a list
            of ``[r, g, b]`` triples.
        num_classes: Number of classes the dataset has (K).

    Raises:
        ValueError: When the palette has the wrong length or a colour is not three 0..255 ints.
    """
    return _per_class(
        "palette",
        palette,
        num_classes,
        ADE20K_PALETTE,
        generic_palette,
        _to_color,
        "[r, g, b] colour",
        "a generated palette",
    )


def _to_color(value: Sequence[int]) -> Color:
    color = tuple(int(c) for c in value)
    if len(color) != 3 or not all(0 <= c <= 255 for c in color):
        raise ValueError(f"palette colour {list(value)} is not three integers in 0..255.")
    return color  # type: ignore[return-value]
