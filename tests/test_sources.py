"""Dataset sources: official CIFAR-10 batches, folders and archives, odd image files, the cache, the sample."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import sources
from core.sources import Dataset, DataSourceError, Part, cache_key, load_dataset, resolve_source, sample_path

SHARED_ARCHIVE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def encode(arr_or_img: np.ndarray | Image.Image, fmt: str = "PNG", **kw) -> bytes:
    img = Image.fromarray(arr_or_img) if isinstance(arr_or_img, np.ndarray) else arr_or_img
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def rgb(seed: int, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    """A random uint8 RGB image of (width, height) = size."""
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def write_source(files: dict[str, bytes], tmp_path: Path, kind: str) -> Path:
    """The files as a folder or as an archive of kind .tar, .tar.gz, .tgz or .zip."""
    if kind == "folder":
        root = tmp_path / "images"
        for name, data in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        return root
    path = tmp_path / f"images{kind}"
    if kind == ".zip":
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in files.items():
                zf.writestr(name, data)
    else:
        with tarfile.open(path, "w:gz" if kind in (".tar.gz", ".tgz") else "w") as tf:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


KINDS = ["folder", ".tar", ".tar.gz", ".tgz", ".zip"]


# ---------------------------------------------------------------------------------------------
# Official CIFAR-10 python batches through torchvision


class Py2Pickler(pickle._Pickler):
    """Pickles as Python 2 wrote the official batches: every string, text or data, as a byte string."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        n = len(data)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + data if n < 256
                   else pickle.BINSTRING + struct.pack("<i", n) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def py2_pickle(obj: object) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def write_cifar10(root: Path, n_per_batch: int = 4, n_test: int = 3) -> dict[str, tuple[np.ndarray, list[int]]]:
    """A tiny cifar-10-batches-py in the official layout; returns {file: (data rows, labels)}."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    written = {}
    for k, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        n = n_test if name == "test_batch" else n_per_batch
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, 10, n)]
        (folder / name).write_bytes(py2_pickle({"batch_label": f"batch {k}", "labels": labels, "data": data,
                                                "filenames": [f"img_{k}_{i}.png" for i in range(n)]}))
        written[name] = (data, labels)
    (folder / "batches.meta").write_bytes(py2_pickle({"label_names": CIFAR_CLASSES, "num_cases_per_batch": 4,
                                                      "num_vis": 3072}))
    return written


def test_py2_pickle_reads_like_the_official_files():
    data = np.arange(600).astype(np.uint8).reshape(2, 300)
    blob = py2_pickle({"data": data, "labels": [3, 4], "label_names": ["cat"]})
    as_bytes = pickle.loads(blob, encoding="bytes")  # keys b"data", b"labels", as the CIFAR-10 page documents
    assert set(as_bytes) == {b"data", b"labels", b"label_names"} and as_bytes[b"label_names"] == [b"cat"]
    as_text = pickle.loads(blob, encoding="latin1")  # how torchvision reads them
    assert np.array_equal(as_text["data"], data) and as_text["labels"] == [3, 4] and as_text["label_names"] == ["cat"]


def test_cifar10_official_batches_through_torchvision(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    written = write_cifar10(tmp_path / "root")
    folder = tmp_path / "root" / "cifar-10-batches-py"

    def md5(name: str) -> str:
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    # torchvision verifies every file against the md5s in these class attributes; point them at the files written here
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5(f"data_batch_{i}")] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5("test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5("batches.meta")})
    monkeypatch.setenv("COLORIZE_CIFAR10_ROOT", str(tmp_path / "root"))

    ds = load_dataset("cifar10", cache_dir=tmp_path / "cache", progress=False)
    assert ds.name == "cifar10" and ds.source == "cifar10" and ds.class_names == CIFAR_CLASSES
    train_rows = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    train_labels = sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    for part, rows, labels in [("train", train_rows, train_labels), ("test", *written["test_batch"])]:
        p = ds.part(part)
        assert p.images.dtype == np.uint8 and p.images.flags.c_contiguous and p.labels.dtype == np.int64
        # rows are channel planes (1024 R, 1024 G, 1024 B), each row-major
        assert np.array_equal(p.images, rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        assert p.labels.tolist() == labels
    assert ds.parts["train"].images[0, 0, 1, 2] == train_rows[0, 2048 + 1]  # pixel (0, 1), blue

    small = load_dataset("cifar10", size=16, cache_dir=tmp_path / "cache", progress=False)
    assert small.parts["test"].images.shape == (3, 16, 16, 3)

    (folder / "test_batch").write_bytes(b"damaged")  # fails its md5 and changes the cache key
    with pytest.raises(DataSourceError, match="corrupted"):
        load_dataset("cifar10", cache_dir=tmp_path / "cache", progress=False)


def test_cifar10_missing_files_names_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("COLORIZE_CIFAR10_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(DataSourceError) as err:
        load_dataset("cifar10", cache_dir=tmp_path / "cache", progress=False)
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in msg and "archive" in msg and "\n" not in msg


def test_cifar10_root_defaults_to_the_cache_root(tmp_path, monkeypatch):
    monkeypatch.delenv("COLORIZE_CIFAR10_ROOT", raising=False)
    with pytest.raises(DataSourceError, match=str(tmp_path / "cache" / "cifar10" / "cifar-10-batches-py")):
        load_dataset("CIFAR-10", cache_dir=tmp_path / "cache", progress=False)


# ---------------------------------------------------------------------------------------------
# Folders and archives


@pytest.mark.parametrize("kind", KINDS)
def test_train_test_layout(tmp_path, kind):
    imgs = {name: rgb(i) for i, name in enumerate(
        ["train/dog/b.png", "train/cat/z.png", "train/cat/a.png", "test/dog/x.png", "test/bird/q.png"])}
    path = write_source({n: encode(a) for n, a in imgs.items()}, tmp_path, kind)
    ds = load_dataset(str(path), cache_dir=tmp_path / "cache", progress=False)
    assert ds.name == "images" and ds.source == str(path) and ds.n_skipped == 0
    assert ds.class_names == ["bird", "cat", "dog"] and list(ds.parts) == ["train", "test"]
    train, test = ds.part("train"), ds.part("test")
    assert train.labels.tolist() == [1, 1, 2] and test.labels.tolist() == [0, 2]  # sorted by path
    assert np.array_equal(train.images, np.stack([imgs["train/cat/a.png"], imgs["train/cat/z.png"],
                                                  imgs["train/dog/b.png"]]))
    assert np.array_equal(test.images, np.stack([imgs["test/bird/q.png"], imgs["test/dog/x.png"]]))
    assert train.images.dtype == np.uint8 and train.images.flags.c_contiguous and train.labels.dtype == np.int64


@pytest.mark.parametrize("kind", [".tar.gz", ".zip"])
def test_archive_wrapper_folder_and_hidden_files_are_ignored(tmp_path, kind):
    files = {"data/train/cat/a.png": encode(rgb(1)), "data/test/cat/b.png": encode(rgb(2)),
             "data/train/cat/.hidden.png": encode(rgb(3)), "__MACOSX/data/train/cat/._a.png": b"junk",
             "data/.DS_Store": b"junk"}
    ds = load_dataset(str(write_source(files, tmp_path, kind)), cache_dir=tmp_path / "cache", progress=False)
    assert ds.class_names == ["cat"] and ds.n_skipped == 0
    assert len(ds.parts["train"].images) == 1 and len(ds.parts["test"].images) == 1
    assert np.array_equal(ds.parts["test"].images[0], rgb(2))


@pytest.mark.parametrize("kind", ["folder", ".zip"])
def test_class_folders_give_one_train_part(tmp_path, kind):
    files = {"zebra/1.png": encode(rgb(1)), "ant/2.png": encode(rgb(2)), "ant/sub/3.png": encode(rgb(3))}
    ds = load_dataset(str(write_source(files, tmp_path, kind)), cache_dir=tmp_path / "cache", progress=False)
    assert list(ds.parts) == ["train"] and ds.class_names == ["ant", "zebra"]
    assert ds.parts["train"].labels.tolist() == [0, 0, 1]
    assert np.array_equal(ds.parts["train"].images[2], rgb(1))
    with pytest.raises(DataSourceError, match="no part 'test'; available: train"):
        ds.part("test")


@pytest.mark.parametrize("kind", ["folder", ".tar"])
def test_loose_images_have_no_classes(tmp_path, kind):
    files = {"b.png": encode(rgb(1)), "a.jpg": encode(rgb(2), "JPEG")}
    ds = load_dataset(str(write_source(files, tmp_path, kind)), cache_dir=tmp_path / "cache", progress=False)
    assert ds.class_names == [] and ds.parts["train"].labels.tolist() == [-1, -1]
    assert np.array_equal(ds.parts["train"].images[1], rgb(1))
    assert np.array_equal(ds.parts["train"].images[0], np.asarray(Image.open(io.BytesIO(files["a.jpg"]))))


def odd_files() -> dict[str, bytes]:
    """Files of every awkward kind, named by what each one becomes (see test_odd_modes_sizes_and_broken_files)."""
    gray = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :16, 3] = 255  # left half opaque red, right half fully transparent
    i16 = np.full((32, 32), 65535, np.uint16)
    i16[:, 16:] = 257 * 100
    wide = np.zeros((48, 64, 3), np.uint8)
    wide[:, 8:56] = (255, 0, 0)  # the centre 48 x 48 square is red, the side bars blue
    wide[:, :8] = wide[:, 56:] = (0, 0, 255)
    jpeg = encode(rgb(5), "JPEG")
    return {
        "a_gray.png": encode(gray),
        "b_palette.png": encode(Image.fromarray(rgb(4)).quantize(16)),
        "c_rgba.png": encode(Image.fromarray(rgba, "RGBA")),
        "d_i16.png": encode(Image.fromarray(i16)),
        "e_cmyk.jpg": encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG", quality=100),
        "f_wide.png": encode(wide),
        "g_big.jpg": encode(Image.new("RGB", (400, 300), (10, 200, 30)), "JPEG", quality=95),
        "h_la.png": encode(Image.new("LA", (32, 32), (0, 0))),
        "i_small.bmp": encode(Image.new("RGB", (8, 8), (40, 50, 60)), "BMP"),
        "j_mono.gif": encode(Image.new("1", (32, 32), 1), "GIF"),
        "notes.txt": b"not an image\n",
        "corrupt.jpg": b"\xff\xd8\xff\xe0" + os.urandom(300),
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "empty.png": b"",
    }


@pytest.mark.parametrize("kind", ["folder", ".tar.gz", ".zip"])
def test_odd_modes_sizes_and_broken_files(tmp_path, kind):
    ds = load_dataset(str(write_source(odd_files(), tmp_path, kind)), cache_dir=tmp_path / "cache", progress=False)
    assert ds.n_skipped == 4
    im = ds.parts["train"].images
    assert im.shape == (10, 32, 32, 3) and im.dtype == np.uint8
    gray, palette, rgba, i16, cmyk, wide, big, la, small, mono = im
    assert np.array_equal(gray[..., 0], np.tile(np.arange(0, 256, 8), (32, 1))) and (gray == gray[..., :1]).all()
    assert np.abs(palette.astype(int) - rgb(4)).mean() < 40  # 16-colour quantised
    assert (rgba[:, :16] == (200, 0, 0)).all() and (rgba[:, 16:] == 255).all()  # alpha composited on white
    assert (i16[:, :16] == 255).all() and (i16[:, 16:] == 100).all()  # 16-bit scaled to 8-bit
    assert np.abs(cmyk.astype(int) - (255, 0, 0)).max() <= 2
    assert (wide[..., 0] == 255).all() and (wide[..., 2] == 0).all()  # centre crop: the blue bars are gone
    assert np.abs(big.astype(int) - (10, 200, 30)).max() <= 3
    assert (la == 255).all()  # fully transparent: white
    assert (small == (40, 50, 60)).all()  # upscaled 8 -> 32
    assert (mono == 255).all()


def test_other_output_size(tmp_path):
    files = {"train/a/1.png": encode(rgb(1, (64, 48))), "train/a/2.jpg": encode(rgb(2, (20, 20)), "JPEG")}
    ds = load_dataset(str(write_source(files, tmp_path, "folder")), size=24, cache_dir=tmp_path / "c", progress=False)
    assert ds.parts["train"].images.shape == (2, 24, 24, 3)
    expected = np.asarray(Image.fromarray(rgb(1, (64, 48))).crop((8, 0, 56, 48)).resize((24, 24), Image.LANCZOS))
    assert np.array_equal(ds.parts["train"].images[0], expected)


def test_worker_processes_give_the_same_result(tmp_path, monkeypatch):
    files = {f"{c}/{i:02d}.png": encode(rgb(i + 40 * k)) for k, c in enumerate(["x", "y"]) for i in range(20)}
    files["y/bad.jpg"] = b"garbage"
    path = write_source(files, tmp_path, ".tar")
    monkeypatch.setenv("COLORIZE_DECODE_WORKERS", "1")
    serial = load_dataset(str(path), cache_dir=tmp_path / "c1", progress=False)
    monkeypatch.setenv("COLORIZE_DECODE_WORKERS", "2")
    monkeypatch.setattr(sources, "CHUNK", 3)
    monkeypatch.setattr(sources, "POOL_MIN_CHUNKS", 1)
    pooled = load_dataset(str(path), cache_dir=tmp_path / "c2", progress=True)
    assert pooled.n_skipped == serial.n_skipped == 1
    assert np.array_equal(pooled.parts["train"].images, serial.parts["train"].images)
    assert np.array_equal(pooled.parts["train"].labels, serial.parts["train"].labels)
    assert np.array_equal(serial.parts["train"].images[20], rgb(40))


def test_errors_are_one_clear_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "only_text").mkdir()
    (tmp_path / "only_text" / "a.txt").write_text("hello")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "fake.tar.gz").write_bytes(b"\x1f\x8b" + b"\x00" * 50)
    whole = write_source({f"{i}.png": encode(rgb(i)) for i in range(40)}, tmp_path, ".tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(whole[: len(whole) // 2])
    only_text_zip = write_source({"a/readme.txt": b"x", ".hidden.png": encode(rgb(1))}, tmp_path, ".zip")
    cases = [("missing", "not found"), ("empty", "is empty"), ("only_text", "no images"),
             ("notes.txt", "not a folder or a supported archive"), ("fake.tar.gz", "not a folder or a supported"),
             ("cut.tar.gz", "cannot read tar archive"),
             (only_text_zip.name, r"no images .*\(1 file\(s\), none a decodable image\)")]
    for name, message in cases:
        with pytest.raises(DataSourceError, match=message) as err:
            load_dataset(str(tmp_path / name), cache_dir=tmp_path / "cache", progress=False)
        assert "\n" not in str(err.value) and str(tmp_path / name) in str(err.value)


# ---------------------------------------------------------------------------------------------
# Cache


def test_second_load_reads_the_cache(tmp_path, monkeypatch):
    path = write_source({"train/a/1.png": encode(rgb(1)), "test/b/2.png": encode(rgb(2)), "x.txt": b"x"},
                        tmp_path, ".tar.gz")
    first = load_dataset(str(path), cache_dir=tmp_path / "cache", progress=False)
    cached = tmp_path / "cache" / "datasets" / cache_key(str(path), 32)
    assert (cached / "meta.json").is_file() and [p.name for p in cached.parent.iterdir()] == [cached.name]
    assert sorted(p.name for p in cached.iterdir()) == ["meta.json", "test_images.npy", "test_labels.npy",
                                                         "train_images.npy", "train_labels.npy"]

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(sources, "_decode_image", no_decoding)
    second = load_dataset(str(path), cache_dir=tmp_path / "cache", progress=False)
    assert second.class_names == first.class_names == ["a", "b"] and second.n_skipped == first.n_skipped == 1
    for part in ("train", "test"):
        assert np.array_equal(second.parts[part].images, first.parts[part].images)
        assert np.array_equal(second.parts[part].labels, first.parts[part].labels)
        assert second.parts[part].images.dtype == np.uint8 and second.parts[part].labels.dtype == np.int64
    assert second.parts["train"].images.flags.writeable
    with pytest.raises(AssertionError, match="decoded again"):  # another size is another key
        load_dataset(str(path), size=16, cache_dir=tmp_path / "cache", progress=False)


def test_changed_source_gets_a_new_key(tmp_path):
    archive = write_source({"a.png": encode(rgb(1))}, tmp_path, ".zip")
    key = cache_key(str(archive), 32)
    assert cache_key(str(archive), 32) == key and cache_key(str(archive), 16) != key
    st = archive.stat()
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert cache_key(str(archive), 32) != key

    folder = write_source({"a/1.png": encode(rgb(1))}, tmp_path, "folder")
    before = load_dataset(str(folder), cache_dir=tmp_path / "cache", progress=False)
    key = cache_key(str(folder), 32)
    (folder / "a" / "2.png").write_bytes(encode(rgb(2)))
    assert cache_key(str(folder), 32) != key
    after = load_dataset(str(folder), cache_dir=tmp_path / "cache", progress=False)
    assert len(before.parts["train"].images) == 1 and len(after.parts["train"].images) == 2
    # the cache of the folder's old state is replaced, not kept beside the new one
    assert [p.name for p in (tmp_path / "cache" / "datasets").iterdir()] == [cache_key(str(folder), 32)]


def test_damaged_cache_is_rebuilt(tmp_path):
    path = write_source({"a.png": encode(rgb(1))}, tmp_path, ".tar")
    cached = tmp_path / "cache" / "datasets" / cache_key(str(path), 32)
    cached.mkdir(parents=True)
    (cached / "meta.json").write_text('{"parts": ["train"], "class_names": [], "n_skipped": 0}')
    (cached / "train_images.npy").write_bytes(b"\x93NUMPY half-written")
    ds = load_dataset(str(path), cache_dir=tmp_path / "cache", progress=False)
    assert np.array_equal(ds.parts["train"].images[0], rgb(1))
    assert np.array_equal(np.load(cached / "train_images.npy")[0], rgb(1))
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]  # no temporary folder left behind


def test_interrupted_cache_write_leaves_nothing(tmp_path, monkeypatch):
    path = write_source({"a.png": encode(rgb(1))}, tmp_path, ".tar")
    datasets = tmp_path / "cache" / "datasets"
    real_save = np.save

    def save_then_fail(file, arr, *args, **kwargs):
        real_save(file, arr, *args, **kwargs)
        raise failure

    monkeypatch.setattr(np, "save", save_then_fail)
    failure = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        load_dataset(str(path), cache_dir=tmp_path / "cache", progress=False)
    assert list(datasets.iterdir()) == []
    failure = OSError("disk full")
    with pytest.warns(UserWarning, match="could not write dataset cache"):
        ds = load_dataset(str(path), cache_dir=tmp_path / "cache", progress=False)
    assert np.array_equal(ds.parts["train"].images[0], rgb(1)) and list(datasets.iterdir()) == []
    monkeypatch.setattr(np, "save", real_save)
    load_dataset(str(path), cache_dir=tmp_path / "cache", progress=False)
    assert [p.name for p in datasets.iterdir()] == [cache_key(str(path), 32)]


def test_default_cache_dir_and_source_strings(tmp_path, monkeypatch):
    monkeypatch.setenv("COLORIZE_CACHE_DIR", str(tmp_path / "c"))
    assert sources.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("COLORIZE_CACHE_DIR")
    assert sources.default_cache_dir() == Path(sources.__file__).resolve().parents[1] / ".cache"
    assert resolve_source("cifar10") == resolve_source("CIFAR-10") == "cifar10"
    monkeypatch.delenv("COLORIZE_DATA", raising=False)
    assert resolve_source("sample") == resolve_source("default") == "sample"
    monkeypatch.setenv("COLORIZE_DATA", "cifar10")
    assert resolve_source("default") == "cifar10"
    monkeypatch.chdir(tmp_path)
    assert resolve_source("./sample") == str(tmp_path / "sample")


def test_dataset_part_lists_available_parts():
    ds = Dataset("x", "x", [], {"train": Part(np.zeros((1, 32, 32, 3), np.uint8), np.full(1, -1))})
    with pytest.raises(DataSourceError, match="available: train"):
        ds.part("test")


# ---------------------------------------------------------------------------------------------
# The bundled sample and the shared CIFAR-10 archive


def test_bundled_sample_loads(tmp_path):
    assert sample_path().is_file() and sample_path().stat().st_size < 2_000_000
    ds = load_dataset("sample", cache_dir=tmp_path / "cache", progress=False)
    assert ds.name == "sample" and ds.class_names == CIFAR_CLASSES and ds.n_skipped == 0
    for part in ("train", "test"):
        p = ds.part(part)
        assert p.images.shape == (1000, 32, 32, 3)
        assert np.bincount(p.labels).tolist() == [100] * 10
        assert p.labels.tolist() == sorted(p.labels.tolist())  # sorted by path: class by class


@pytest.mark.skipif(not SHARED_ARCHIVE.is_file(), reason="shared CIFAR-10 JPEG archive not present")
def test_sample_matches_the_shared_archive(tmp_path):
    wanted = {"train/airplane/0000.jpg": 0, "train/airplane/0099.jpg": 99, "train/automobile/0000.jpg": 100}
    found = {}
    with tarfile.open(SHARED_ARCHIVE, "r|gz") as tf:  # train/airplane, train/automobile come first; stop there
        for m in tf:
            if m.name in wanted:
                found[m.name] = np.asarray(Image.open(io.BytesIO(tf.extractfile(m).read())).convert("RGB"))
                if len(found) == len(wanted):
                    break
    ds = load_dataset("sample", cache_dir=tmp_path / "cache", progress=False)
    for name, index in wanted.items():
        assert np.array_equal(ds.parts["train"].images[index], found[name]), name


def test_fast_jpeg_decoder_gives_the_same_pixels_as_pil():
    """The libjpeg path used for large archives must agree exactly with PIL on real JPEGs, and defer otherwise."""
    import tarfile

    import torch  # noqa: F401  (the fast path is only used where torch is loaded)

    from core import sources

    assert sources._jpeg_op() is not None
    checked = 0
    with tarfile.open(sources.sample_path()) as tf:
        for member in tf:
            if not member.isfile() or not member.name.endswith(".jpg"):
                continue
            data = tf.extractfile(member).read()
            fast = sources._fast_jpeg(data, 32)
            assert fast is not None and np.array_equal(fast, sources._decode_image(data, 32))
            checked += 1
            if checked == 200:
                break
    assert checked == 200
    assert sources._fast_jpeg(b"not a jpeg", 32) is None
    assert sources._fast_jpeg(data, 16) is None  # other sizes go through PIL's crop and resize
