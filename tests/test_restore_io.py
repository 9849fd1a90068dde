"""Image I/O: every kind of image round-trips (bit depth, channels, size, orientation, alpha)."""
import os

import numpy as np
import pytest

from pip_adapter.image_io import (ImageReadError, apply_exif_orientation, array_to_float,
                                          float_to_array, read_image, write_image)

pytestmark = pytest.mark.usefixtures("one_thread")


def _rng_image(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == np.uint8:
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    if dtype == np.uint16:
        return rng.integers(0, 65536, size=shape, dtype=np.uint16)
    return rng.random(shape, dtype=np.float32)


@pytest.mark.parametrize("ext,shape,dtype", [
    (".png", (13, 17, 3), np.uint8),
    (".png", (13, 17, 3), np.uint16),
    (".png", (13, 17), np.uint8),
    (".png", (13, 17), np.uint16),
    (".png", (13, 17, 4), np.uint8),
    (".png", (13, 17, 4), np.uint16),
    (".tif", (11, 9, 3), np.uint16),
    (".tif", (11, 9), np.uint8),
    (".tif", (11, 9, 3), np.float32),
    (".bmp", (5, 7, 3), np.uint8),
])
def test_lossless_round_trip(tmp_path, ext, shape, dtype):
    img = _rng_image(shape, dtype)
    path = str(tmp_path / f"img{ext}")
    write_image(path, img)
    rgb, info = read_image(path)
    assert rgb.dtype == np.float32 and rgb.shape == (shape[0], shape[1], 3)
    assert 0.0 <= rgb.min() and rgb.max() <= 1.0
    assert info.gray == (len(shape) == 2)
    assert (info.alpha is not None) == (len(shape) == 3 and shape[2] == 4)
    back = float_to_array(rgb, info)
    assert back.dtype == img.dtype and back.shape == img.shape
    if dtype == np.float32:
        np.testing.assert_allclose(back, img, atol=1e-6)
    else:
        np.testing.assert_array_equal(back, img)
    # and written again, the file reads back identically
    path2 = str(tmp_path / f"again{ext}")
    write_image(path2, back)
    rgb2, _ = read_image(path2)
    np.testing.assert_allclose(rgb2, rgb, atol=1e-6)


def test_jpeg_round_trip_size_and_depth(tmp_path):
    img = np.full((20, 30, 3), 120, np.uint8)
    img[:, 15:] = 200
    path = str(tmp_path / "a.jpg")
    write_image(path, img)
    rgb, info = read_image(path)
    back = float_to_array(rgb, info)
    assert back.shape == img.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - img.astype(int)).mean() < 3


def test_grayscale_written_back_gray_from_rgb_result(tmp_path):
    gray = _rng_image((8, 9), np.uint8)
    rgb, info = array_to_float(gray)
    assert rgb.shape == (8, 9, 3) and np.all(rgb[:, :, 0] == rgb[:, :, 1])
    out = float_to_array(rgb, info)
    assert out.shape == (8, 9)
    np.testing.assert_array_equal(out, gray)
    # H×W×1 stays H×W×1
    _, info1 = array_to_float(gray[:, :, None])
    assert float_to_array(rgb, info1).shape == (8, 9, 1)


def test_alpha_passed_through_untouched():
    img = _rng_image((6, 7, 4), np.uint16, seed=3)
    rgb, info = array_to_float(img)
    restored = 1.0 - rgb  # whatever the network does to the colours, alpha must not change
    out = float_to_array(restored, info)
    np.testing.assert_array_equal(out[:, :, 3], img[:, :, 3])
    assert out.dtype == np.uint16


def test_exif_orientation_applied_on_read(tmp_path):
    from PIL import Image
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :5] = 255  # a white band on the left of the stored pixels
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # display rotated 90° clockwise
    path = str(tmp_path / "rot.jpg")
    im.save(path, exif=exif.tobytes(), quality=100)
    rgb, _ = read_image(path)
    assert rgb.shape == (20, 10, 3)
    # rotated clockwise, the left band becomes the top band
    assert rgb[:4].mean() > 0.9 and rgb[-4:].mean() < 0.1


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_transforms_are_permutations(orientation):
    arr = np.arange(12).reshape(3, 4)
    out = apply_exif_orientation(arr, orientation)
    assert sorted(out.ravel().tolist()) == list(range(12))
    assert out.shape == ((4, 3) if orientation >= 5 else (3, 4))


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    with pytest.raises(ImageReadError, match="notes.png"):
        read_image(str(bad))
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_image(str(tmp_path / "nope.png"))


def test_no_silent_overwrite(tmp_path):
    path = str(tmp_path / "x.png")
    write_image(path, np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(FileExistsError, match="overwrite"):
        write_image(path, np.ones((4, 4, 3), np.uint8))
    write_image(path, np.ones((4, 4, 3), np.uint8), overwrite=True)
    assert read_image(path)[0].max() > 0


def test_bad_arrays_refused():
    with pytest.raises(ValueError, match="shape"):
        array_to_float(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        array_to_float(np.full((4, 4, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="pixel type"):
        array_to_float(np.zeros((4, 4, 3), np.int32))
    assert not os.path.exists("never_written.png")


def test_written_files_get_normal_permissions(tmp_path):
    path = str(tmp_path / "p.png")
    write_image(path, np.zeros((4, 4, 3), np.uint8))
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_a_broken_file_is_reported_once_not_also_by_opencv(tmp_path, capfd):
    import cv2

    from pip_adapter.image_io import ImageReadError, read_image

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n but not really an image")
    level = cv2.utils.logging.getLogLevel()
    with pytest.raises(ImageReadError, match="broken.png: not a readable image"):
        read_image(str(broken))
    err = capfd.readouterr().err   # OpenCV writes to the file descriptor itself
    assert "readHeader" not in err and "[ERROR" not in err and "WARN:" not in err
    assert cv2.utils.logging.getLogLevel() == level   # OpenCV's own level is given back
