"""Segmented image files: pages stacked along the first axis, one id per colour of the whole
stack, greyscale-only reading for the transport oracles, refusals that name the file."""

from __future__ import annotations

import numpy as np
import pytest

from oracles.exceptions import InvalidInput
from oracles.images import read_greyscale, read_npy, read_pages, read_phase_ids

Image = pytest.importorskip("PIL.Image")


def _save_stack(path, pages) -> str:
    """Write the arrays ``pages`` as the pages of one TIFF; the path as a string."""
    ims = [Image.fromarray(p) for p in pages]
    ims[0].save(path, save_all=True, append_images=ims[1:])
    return str(path)


def _reference_ids(px: np.ndarray) -> np.ndarray:
    """The colour rule written out directly: distinct colours (rows of ``... x C``), ids by
    increasing luma, ties by channel values in channel order."""
    flat = px.reshape(-1, px.shape[-1]).astype(float)
    colours = sorted({tuple(c) for c in flat.tolist()})
    def key(c):
        return (c[0] if len(c) == 1 else 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2], *c)
    rank = {c: i for i, c in enumerate(sorted(colours, key=key))}
    return np.array([rank[tuple(c)] for c in flat.tolist()], dtype=np.int64).reshape(px.shape[:-1])


def test_a_tiff_stack_is_3d_with_its_pages_along_the_first_axis(tmp_path):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 3, size=(3, 5, 7))
    ids[:, 0, :3] = [0, 1, 2]  # every id on every page
    grey = np.array([40, 90, 250], dtype=np.uint8)[ids]
    path = _save_stack(tmp_path / "s.tif", list(grey))
    np.testing.assert_array_equal(read_greyscale(path), grey)
    np.testing.assert_array_equal(read_phase_ids(path), ids)
    assert read_phase_ids(path).dtype == np.int64
    # one page stays 2D
    one = _save_stack(tmp_path / "one.tif", [grey[1]])
    np.testing.assert_array_equal(read_phase_ids(one), ids[1])


def test_a_colour_on_one_page_only_takes_its_place_in_the_whole_stack(tmp_path):
    # pages 0 and 2: black and white; page 1 adds grey. Read page by page, white would be id 1 on
    # pages 0 and 2 and id 2 on page 1
    black, grey, white = (0, 0, 0), (120, 120, 120), (255, 255, 255)
    p0 = np.array([[black, white], [white, black]], dtype=np.uint8)
    p1 = np.array([[grey, white], [black, grey]], dtype=np.uint8)
    path = _save_stack(tmp_path / "c.tif", [p0, p1, p0])
    expect = np.array([[[0, 2], [2, 0]], [[1, 2], [0, 1]], [[0, 2], [2, 0]]])
    np.testing.assert_array_equal(read_phase_ids(path), expect)
    # a dark red only on the second page sits between black and the red of the first page
    q0 = np.array([[(255, 0, 0), black]], dtype=np.uint8)
    q1 = np.array([[black, (76, 0, 0)]], dtype=np.uint8)  # luma 22.7, red's 76.2
    path = _save_stack(tmp_path / "t.tif", [q0, q1])
    np.testing.assert_array_equal(read_phase_ids(path), [[[2, 0]], [[0, 1]]])
    # (0, 0, 116) and (3, 21, 0) have one luma (13.224): the tie goes by the channels in order,
    # so the colour of the second page comes first
    path = _save_stack(tmp_path / "tie.tif", [np.array([[(3, 21, 0), black]], dtype=np.uint8),
                                              np.array([[(0, 0, 116), black]], dtype=np.uint8)])
    np.testing.assert_array_equal(read_phase_ids(path), [[[2, 0]], [[1, 0]]])


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_colour_ids_follow_luma_then_channels(tmp_path, channels):
    """The packed-integer sort gives the ids of the rule written out, on stacks with colours of
    equal luma (permuted channels) and equal RGB with different alpha."""
    rng = np.random.default_rng(channels)
    palette = rng.integers(0, 256, size=(6, max(channels, 3)), dtype=np.uint8)
    palette = np.concatenate([palette, palette[:, [1, 2, 0] + list(range(3, palette.shape[1]))]])
    if channels == 4:
        palette = np.concatenate([palette, palette[:2] ^ np.array([0, 0, 0, 1], dtype=np.uint8)])
    palette = palette[:, :channels]
    px = palette[rng.integers(0, len(palette), size=(3, 6, 5))]
    path = _save_stack(tmp_path / "p.tif", list(px[..., 0] if channels == 1 else px))
    np.testing.assert_array_equal(read_phase_ids(path), _reference_ids(px.reshape(3, 6, 5, channels)))


def test_sixteen_bit_and_float_stacks(tmp_path):
    ids = np.arange(60).reshape(3, 4, 5) % 4
    path = _save_stack(tmp_path / "i16.tif", list((1000 * ids).astype(np.uint16)))
    np.testing.assert_array_equal(read_phase_ids(path), ids)
    g = read_greyscale(path)
    assert g.dtype == np.int32 and (g == 1000 * ids).all()
    path = _save_stack(tmp_path / "f.tif", list((0.25 * ids).astype(np.float32)))
    np.testing.assert_array_equal(read_phase_ids(path), ids)
    bad = (0.25 * ids).astype(np.float32)
    bad[2, 1, 1] = np.nan  # on the last page only
    with pytest.raises(InvalidInput, match="non-finite"):
        read_phase_ids(_save_stack(tmp_path / "nan.tif", list(bad)))


def test_pages_of_unequal_shape_or_mode_are_refused(tmp_path):
    a, b = np.zeros((4, 5), np.uint8), np.zeros((4, 6), np.uint8)
    path = _save_stack(tmp_path / "rag.tif", [a, a, b])
    for read, what in ((read_phase_ids, "image"), (read_greyscale, "pore image")):
        with pytest.raises(InvalidInput, match=rf"^{what} '.*rag\.tif': the pages of the stack differ in shape "
                                               r"\[\(4, 5\), \(4, 6\)\]$"):
            read(path)
    path = _save_stack(tmp_path / "mix.tif", [a, np.zeros((4, 5, 3), np.uint8)])
    with pytest.raises(InvalidInput, match=r"'.*mix\.tif': the pages of the stack differ in Pillow mode \['L', 'RGB'\]"):
        read_phase_ids(path)
    # greyscale pages of different bit depth: a grey level does not mean one thing across them
    path = _save_stack(tmp_path / "depth.tif", [a, np.zeros((4, 5), np.uint16)])
    with pytest.raises(InvalidInput, match=r"differ in Pillow mode \['I;16', 'L'\]"):
        read_greyscale(path)
    # a colour page is no pore image
    with pytest.raises(InvalidInput, match="must be a greyscale image, got Pillow mode 'RGB'"):
        read_greyscale(_save_stack(tmp_path / "rgb.tif", [np.zeros((4, 5, 3), np.uint8)]))


def test_unreadable_files_are_named(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"not an image")
    for read, what in ((read_phase_ids, "image"), (read_greyscale, "pore image")):
        with pytest.raises(InvalidInput, match=rf"^{what} '.*bad\.tif' cannot be read \("):
            read(tmp_path / "bad.tif")
    with pytest.raises(InvalidInput, match=r"^phase map file '.*bad\.tif' is not a readable \.npy array"):
        read_npy(tmp_path / "bad.tif", "phase map file")


def test_read_pages_passes_the_converters_refusal_through(tmp_path):
    path = _save_stack(tmp_path / "s.tif", [np.zeros((2, 2), np.uint8)] * 2)

    def refuse(page):
        raise InvalidInput("no pages wanted")

    with pytest.raises(InvalidInput, match="^no pages wanted$"):
        read_pages(path, "image", refuse)


def test_an_image_above_pillows_size_guard_is_refused_with_the_way_to_read_it(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 400 pixels > 2 x 100: Pillow's DecompressionBombError
    with pytest.raises(InvalidInput, match=r"big\.png.*MAX_IMAGE_PIXELS = None"):
        read_phase_ids(str(path))
    with pytest.raises(InvalidInput, match=r"big\.png.*MAX_IMAGE_PIXELS = None"):
        read_greyscale(str(path))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert read_greyscale(str(path)).shape == (20, 20)
