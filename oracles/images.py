r"""Segmented images and arrays read from files, for the oracles that take a user's microstructure.

* :func:`read_npy`: a ``.npy`` array, read without unpickling.
* :func:`read_pages`: the pixels of an image read with Pillow, every page of it: one page is a
  ``H x W [x C]`` array, a multi-page file (a TIFF stack, the usual store of a micro-CT
  segmentation) a ``P x H x W [x C]`` array, page ``i`` at index ``i`` of the first axis.
  Pages that differ in size or in Pillow mode are refused.
* :func:`read_greyscale`: greyscale pixels only (8- or 16-bit, float), as stored.
* :func:`read_phase_ids`: phase ids ``0 .. p-1`` of a segmented image, one per distinct colour
  of the whole stack.

An unreadable file, or pages that do not make one array, raise
:class:`~oracles.exceptions.InvalidInput` naming the file.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from oracles.exceptions import InvalidInput

__all__ = ["GREYSCALE_MODES", "read_greyscale", "read_npy", "read_pages", "read_phase_ids"]

#: Pillow modes of greyscale pages: bilevel, 8-bit, 32-bit integer, 16-bit integer, 32-bit float
GREYSCALE_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L", "F")


def read_npy(path, what: str) -> np.ndarray:
    """The array in the ``.npy`` file ``path``, read without unpickling; an unreadable file is an
    :class:`~oracles.exceptions.InvalidInput` naming ``what`` and the file."""
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        why = ("it holds pickled Python objects, not a numeric array" if "pickle" in str(e)
               else str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise InvalidInput(f"{what} {str(path)!r} is not a readable .npy array ({why})") from None


def read_pages(path, what: str, page_pixels: Callable) -> np.ndarray:
    """Every page of the image file ``path``, stacked along a new first axis when there are several.

    Args:
        path: an image file Pillow reads (PNG, TIFF, ...).
        what: how messages name the file (``"image"``, ``"pore image"``).
        page_pixels: ``page -> (mode, pixels)``: the pixel array of one Pillow page and the mode
            the pages must share (raise InvalidInput to refuse a page).

    Returns:
        ``H x W [x C]`` for a one-page file, ``P x H x W [x C]`` for ``P`` pages.

    Raises:
        InvalidInput: the file cannot be read (``{what} 'f.tif' cannot be read (...)``), or its
            pages differ in size (``... the pages of the stack differ in shape [(4, 4), (4, 5)]``,
            rows x columns) or in mode.
    """
    from PIL import Image, ImageSequence, UnidentifiedImageError

    out, shapes, modes, n = None, set(), set(), 0
    try:
        with Image.open(path) as im:
            pages = getattr(im, "n_frames", 1)
            for page in ImageSequence.Iterator(im):
                mode, px = page_pixels(page)
                shapes.add(px.shape[:2])
                modes.add(mode)
                if len(shapes) == 1 and len(modes) == 1:
                    if out is None:
                        # one allocation for the stack (a micro-CT stack may be a large part of memory)
                        out = np.empty((max(1, pages), *px.shape), px.dtype)
                    if n == len(out):
                        out = np.concatenate([out, px[None]])
                    else:
                        out[n] = px
                n += 1
    except InvalidInput:
        raise
    except Image.DecompressionBombError as e:
        # Pillow's guard against untrusted files; a user's own large image is read once it is lifted
        raise InvalidInput(f"{what} {str(path)!r} cannot be read ({e} Pillow refuses images above "
                           "2 x PIL.Image.MAX_IMAGE_PIXELS; for a file you trust, set "
                           "PIL.Image.MAX_IMAGE_PIXELS = None before reading it)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise InvalidInput(f"{what} {str(path)!r} cannot be read ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if len(shapes) > 1:
        raise InvalidInput(f"{what} {str(path)!r}: the pages of the stack differ in shape {sorted(shapes)}")
    if len(modes) > 1:
        raise InvalidInput(f"{what} {str(path)!r}: the pages of the stack differ in Pillow mode {sorted(modes)} "
                           "(save every page in one mode)")
    if out is None:
        raise InvalidInput(f"{what} {str(path)!r} cannot be read (it has no page)")
    return out[0] if n == 1 else out[:n]


def read_greyscale(path, what: str = "pore image") -> np.ndarray:
    """The grey levels of a lossless greyscale image (8- or 16-bit PNG, TIFF, float TIFF), as
    stored: ``H x W`` for one page, ``P x H x W`` for a ``P``-page stack. 16-bit pages are
    ``int32``; bilevel pages bool.

    Raises:
        InvalidInput: a page that is not greyscale (``{what} 'f.png' must be a greyscale image,
            got Pillow mode 'RGB' ...``), or as :func:`read_pages`.
    """

    def grey(page):
        if page.mode not in GREYSCALE_MODES:
            raise InvalidInput(f"{what} {str(path)!r} must be a greyscale image, got Pillow mode "
                               f"{page.mode!r} (save the segmentation as 8- or 16-bit greyscale)")
        return page.mode, np.asarray(page.convert("I") if page.mode.startswith("I;") else page)

    return read_pages(path, what, grey)


def _colour_pixels(page) -> tuple[str, np.ndarray]:
    """``(mode, H x W x C)``: grey levels (``C = 1``; float pages stay float, integer and bilevel
    pages become ``int32``) or RGB(A) colours (``C = 3, 4``) of a page of any other mode."""
    if page.mode in ("F", "L"):
        # float grey levels stay floats: a conversion to "I" would truncate 0.25 and 0.5 to one id
        return page.mode, np.asarray(page)[..., None]
    if page.mode.startswith("I") or page.mode == "1":  # I, I;16, I;16B, ...: integer grey levels
        return page.mode, np.asarray(page.convert("I"))[..., None]
    rgb = page.convert("RGBA" if "A" in page.getbands() else "RGB")
    # a palette or CMYK page counts by the colours it shows, so such pages stack with RGB pages
    return rgb.mode, np.asarray(rgb)


def read_phase_ids(path, what: str = "image") -> np.ndarray:
    """Phase ids of a segmented image: one id per distinct colour of the whole file.

    Colours are told apart by all their channels (an RGB image with three colours of equal grey
    level has three phases); ids ``0 .. p-1`` follow increasing grey level (ITU-R 601-2 luma,
    Pillow's ``L``), ties by the channel values. The ids are those of the whole stack, so a phase
    has one id on every page, also when its colour is missing from some pages.

    Returns:
        ``int64`` ids, ``H x W`` for one page, ``P x H x W`` for a ``P``-page stack.

    Raises:
        InvalidInput: non-finite grey levels, or as :func:`read_pages`.
    """
    px = read_pages(path, what, _colour_pixels)
    if px.ndim not in (3, 4) or min(px.shape[:-1]) < 1:
        raise InvalidInput(f"{what} {str(path)!r} is not a 2D image or a stack of them (array shape {px.shape})")
    if px.dtype.kind == "f" and not np.isfinite(px).all():
        raise InvalidInput(f"{what} {str(path)!r} has non-finite (NaN or inf) pixels; a phase image needs finite grey levels")
    grid, nc = px.shape[:-1], px.shape[-1]
    if nc == 1:
        # sorted grey levels: the rank of a level is its id
        return np.unique(px.reshape(-1), return_inverse=True)[1].reshape(grid).astype(np.int64)
    # 8-bit channels packed into one integer per pixel, first channel most significant, so that
    # np.unique sorts the colours by their channel values
    packed = np.zeros(grid, dtype=np.uint32)
    for c in range(nc):
        packed = (packed << np.uint32(8)) | px[..., c].astype(np.uint32)
    codes, ids = np.unique(packed.reshape(-1), return_inverse=True)
    colours = ((codes[:, None] >> (8 * np.arange(nc - 1, -1, -1, dtype=np.uint32))) & 0xFF).astype(float)
    luma = 0.299 * colours[:, 0] + 0.587 * colours[:, 1] + 0.114 * colours[:, 2]
    order = np.lexsort((*colours.T[::-1], luma))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[ids.reshape(-1)].reshape(grid)
