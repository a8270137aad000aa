"""Where `load_dataset` finds files: explicit folder, $MNIST_JAX_DATA, cache, verified download."""

import errno
import functools
import http.server
import os
import socket
import threading
import time

import pytest

from mnist_jax import fileio
from mnist_jax.data import KNOWN_DATASETS, cache_folder, catalog, load_dataset
from mnist_jax.data.catalog import FILE_STEMS, DatasetSpec
from mnist_jax.data.fake import write_fake_dataset
from mnist_jax.errors import DataError, OutputError


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch):
    """No test here may see the user's MNIST_JAX_DATA or cache."""
    monkeypatch.delenv("MNIST_JAX_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def make_folder(path, seed, **kwargs):
    """A fake dataset folder; `seed` makes its content (and fingerprint) distinguishable."""
    write_fake_dataset(path, seed=seed, **kwargs)
    return path


# --- resolution order ---------------------------------------------------------------------------


def test_explicit_data_dir_beats_env_and_cache(tmp_path, cache, monkeypatch):
    explicit = make_folder(tmp_path / "explicit", seed=1)
    monkeypatch.setenv("MNIST_JAX_DATA", str(make_folder(tmp_path / "env", seed=2)))
    make_folder(cache / "digits", seed=3)
    ds = load_dataset("digits", explicit, cache_dir=cache)
    assert ds.source == str(explicit)


def test_env_folder_beats_cache(tmp_path, cache, monkeypatch):
    env = tmp_path / "env"
    # The files directly in the env folder are read only for a dataset with checksums.
    register(monkeypatch, "digits", write_fake_dataset(env, seed=2), [])
    monkeypatch.setenv("MNIST_JAX_DATA", str(env))
    make_folder(cache / "digits", seed=3)
    assert load_dataset("digits", cache_dir=cache).source == str(env)


def test_env_subfolder_named_after_the_dataset_beats_files_in_the_env_folder(
    tmp_path, cache, monkeypatch
):
    env = make_folder(tmp_path / "env", seed=2)
    sub = make_folder(env / "digits", seed=4)
    monkeypatch.setenv("MNIST_JAX_DATA", str(env))
    assert load_dataset("digits", cache_dir=cache).source == str(sub)


def test_env_folder_without_the_dataset_falls_through_to_the_cache(tmp_path, cache, monkeypatch):
    (tmp_path / "empty-env").mkdir()
    monkeypatch.setenv("MNIST_JAX_DATA", str(tmp_path / "empty-env"))
    cached = make_folder(cache / "digits", seed=3)
    assert load_dataset("digits", cache_dir=cache).source == str(cached)


def test_cache_root_defaults_to_xdg_cache_home_then_home(tmp_path, monkeypatch):
    assert cache_folder("mnist") == tmp_path / "xdg-cache" / "mnist_jax" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_folder("mnist") == tmp_path / "home" / ".cache" / "mnist_jax" / "mnist"


def test_default_cache_is_used_without_cache_dir(tmp_path):
    cached = make_folder(tmp_path / "xdg-cache" / "mnist_jax" / "digits", seed=3)
    assert load_dataset("digits", download=False).source == str(cached)


def test_raw_files_without_gz_suffix_are_found(tmp_path, cache):
    folder = make_folder(tmp_path / "raw", seed=1, compress=False)
    ds = load_dataset("digits", folder, cache_dir=cache)
    assert ds.train_images.shape == (20, 4, 4)


# --- explicit folder problems -------------------------------------------------------------------


def test_missing_file_in_data_dir_names_the_folder_and_the_file(tmp_path, cache):
    folder = make_folder(tmp_path / "d", seed=1)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as info:
        load_dataset("digits", folder, cache_dir=cache)
    assert str(folder) in str(info.value) and "t10k-labels-idx1-ubyte" in str(info.value)


def test_data_dir_that_is_not_a_directory(tmp_path, cache):
    with pytest.raises(DataError, match="not a directory"):
        load_dataset("digits", tmp_path / "nowhere", cache_dir=cache)


def test_explicit_data_dir_never_falls_back_to_other_copies(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("MNIST_JAX_DATA", str(make_folder(tmp_path / "env", seed=2)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="lacks"):
        load_dataset("digits", tmp_path / "empty", cache_dir=cache)


def test_invalid_dataset_name(cache):
    with pytest.raises(DataError, match="invalid dataset name"):
        load_dataset("../mnist", cache_dir=cache)


# --- content check of known datasets ------------------------------------------------------------


def test_known_name_with_other_content_is_rejected(tmp_path, cache):
    folder = make_folder(tmp_path / "d", seed=1, shape=(28, 28))
    with pytest.raises(DataError) as info:
        load_dataset("fashion_mnist", folder, cache_dir=cache)
    message = str(info.value)
    assert f"files in {folder} are not fashion_mnist" in message
    assert "train-images-idx3-ubyte" in message and "--dataset" in message


def test_env_files_of_another_dataset_are_rejected_not_trained_on(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("MNIST_JAX_DATA", str(make_folder(tmp_path / "env", seed=1)))
    with pytest.raises(DataError, match="are not mnist"):
        load_dataset("mnist", cache_dir=cache)


# --- names without checksums: a typo must not train on whatever $MNIST_JAX_DATA holds ------------


def test_a_typo_with_files_in_the_env_folder_is_refused_listing_the_known_names(
    tmp_path, cache, monkeypatch
):
    """The issue: `--dataset fashion_mnst` trained on the MNIST files in $MNIST_JAX_DATA."""
    env = make_folder(tmp_path / "env", seed=1)
    monkeypatch.setenv("MNIST_JAX_DATA", str(env))
    with pytest.raises(DataError) as info:
        load_dataset("fashion_mnst", cache_dir=cache)
    message = str(info.value)
    assert message.startswith(
        "unknown dataset 'fashion_mnst': the known names are mnist, fashion_mnist, kmnist and "
        "tfds:NAME; a dataset of your own needs --data-dir FOLDER or its four files in "
        "$MNIST_JAX_DATA/fashion_mnst/"
    )
    assert f"{env} itself (not for fashion_mnst" in message and "\n" not in message


def test_an_unknown_name_without_any_files_lists_the_known_names(cache):
    with pytest.raises(DataError, match="unknown dataset 'no_such_set': the known names are"):
        load_dataset("no_such_set", cache_dir=cache)


def test_an_unknown_name_is_read_from_a_folder_that_names_it(tmp_path, cache, monkeypatch):
    env = make_folder(tmp_path / "env", seed=1)
    own = make_folder(env / "my_digits", seed=2)
    monkeypatch.setenv("MNIST_JAX_DATA", str(env))
    assert load_dataset("my_digits", cache_dir=cache).source == str(own)
    assert load_dataset("other", tmp_path / "env", cache_dir=cache).source == str(env)


def test_kmnist_has_no_checksums_so_the_env_folder_itself_is_not_read_for_it(
    tmp_path, cache, monkeypatch
):
    env = make_folder(tmp_path / "env", seed=1)
    monkeypatch.setenv("MNIST_JAX_DATA", str(env))
    with pytest.raises(DataError) as info:
        load_dataset("kmnist", cache_dir=cache)
    assert "kmnist not found" in str(info.value) and "$MNIST_JAX_DATA/kmnist/" in str(info.value)
    own = make_folder(env / "kmnist", seed=2)
    assert load_dataset("kmnist", cache_dir=cache).source == str(own)


def test_mnist_in_the_env_folder_is_not_loaded_as_fashion_mnist(mnist_dir, cache, monkeypatch):
    monkeypatch.setenv("MNIST_JAX_DATA", str(mnist_dir))
    with pytest.raises(DataError) as info:
        load_dataset("fashion_mnist", download=False, cache_dir=cache)
    assert str(info.value).startswith(
        f"files in {mnist_dir} are not fashion_mnist (checksum of train-images-idx3-ubyte "
        "differs: it is mnist's)"
    )


@pytest.mark.parametrize("name", ["kmnist", "fashion_mnst"])
def test_mnist_files_are_refused_under_a_name_without_checksums(mnist_dir, cache, name):
    with pytest.raises(DataError) as info:
        load_dataset(name, mnist_dir, cache_dir=cache)
    assert str(info.value) == (
        f"files in {mnist_dir} are mnist (all four checksums match), not {name}; "
        "the dataset to name is mnist."
    )


def test_known_datasets_and_their_class_names():
    assert KNOWN_DATASETS["mnist"].class_names == tuple("0123456789")
    assert KNOWN_DATASETS["fashion_mnist"].class_names[0] == "T-shirt/top"
    assert KNOWN_DATASETS["kmnist"].class_names[:3] == ("o", "ki", "su")
    assert KNOWN_DATASETS["mnist"].downloadable and KNOWN_DATASETS["fashion_mnist"].downloadable
    assert not KNOWN_DATASETS["kmnist"].downloadable  # no checksums verified here


def test_known_name_gets_its_class_names(tmp_path, cache):
    ds = load_dataset("kmnist", make_folder(tmp_path / "k", seed=1), cache_dir=cache)
    assert ds.num_classes == 10 and ds.class_names[1] == "ki"


# --- download -----------------------------------------------------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def mirror(tmp_path):
    """A local HTTP server serving a fake dataset's .gz files.

    Yields (base URL, sha256s, requests).
    """
    served = tmp_path / "served"
    hashes = write_fake_dataset(served / "files", seed=7)
    requests = []
    handler = type("Handler", (QuietHandler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(served))
    )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", hashes, requests
    finally:
        server.shutdown()
        server.server_close()


def register(monkeypatch, name, sha256, mirrors):
    """Put a downloadable dataset into the catalog for one test."""
    spec = DatasetSpec(
        name=name, class_names=tuple("0123456789"), sha256=sha256, mirrors=tuple(mirrors)
    )
    monkeypatch.setattr(catalog, "KNOWN_DATASETS", {**catalog.KNOWN_DATASETS, name: spec})


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_download_fills_the_cache_and_loads(monkeypatch, cache, mirror):
    url, hashes, requests = mirror
    register(monkeypatch, "tiny", hashes, [url + "files/"])
    ds = load_dataset("tiny", cache_dir=cache)
    assert ds.source == str(cache / "tiny")
    assert sorted(p.name for p in (cache / "tiny").iterdir()) == sorted(
        f"{s}.gz" for s in FILE_STEMS
    )
    assert len(requests) == 4
    again = load_dataset("tiny", cache_dir=cache)  # from the cache: no new request
    assert len(requests) == 4 and again.fingerprint == ds.fingerprint


def test_download_tries_the_next_mirror_after_a_failure(monkeypatch, cache, mirror):
    url, hashes, _ = mirror
    register(monkeypatch, "tiny", hashes, [url + "missing/", url + "files/"])
    assert load_dataset("tiny", cache_dir=cache).train_images.shape == (20, 4, 4)


def test_interrupted_download_fetches_only_the_missing_files(monkeypatch, cache, mirror, tmp_path):
    url, hashes, requests = mirror
    register(monkeypatch, "tiny", hashes, [url + "files/"])
    (cache / "tiny").mkdir(parents=True)
    source = tmp_path / "served" / "files" / "train-images-idx3-ubyte.gz"
    (cache / "tiny" / source.name).write_bytes(source.read_bytes())
    load_dataset("tiny", cache_dir=cache)
    assert len(requests) == 3 and not any("train-images" in r for r in requests)


def test_checksum_mismatch_keeps_no_file_in_the_cache(monkeypatch, cache, mirror):
    url, hashes, _ = mirror
    wrong = {**hashes, "train-labels-idx1-ubyte": "0" * 64}
    register(monkeypatch, "tiny", wrong, [url + "files/"])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz .* content is wrong"):
        load_dataset("tiny", cache_dir=cache)
    left = sorted(p.name for p in (cache / "tiny").iterdir())
    assert left == ["train-images-idx3-ubyte.gz"]  # verified before it; no partial or bad file


def test_a_cache_that_cannot_be_written_is_an_output_error_not_a_network_failure(
    monkeypatch, cache, mirror
):
    url, hashes, requests = mirror
    register(monkeypatch, "tiny", hashes, [url + "files/", url + "files/"])

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fileio.os, "fsync", full)
    with pytest.raises(OutputError) as info:
        load_dataset("tiny", cache_dir=cache)
    assert str(info.value) == (
        f"cannot write {cache / 'tiny' / FILE_STEMS[0]}.gz: No space left on device"
    )
    assert len(requests) == 1  # not retried on the next mirror: the network was fine
    assert list((cache / "tiny").iterdir()) == []


def test_unreachable_mirror_fails_fast_with_how_to_use_local_files(monkeypatch, cache):
    register(
        monkeypatch,
        "tiny",
        {s: "0" * 64 for s in FILE_STEMS},
        [closed_port_url(), closed_port_url()],
    )
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        load_dataset("tiny", cache_dir=cache)
    # A bound against retries and waits: a refused connection fails in milliseconds.
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert (
        "tiny not found: put the four *-ubyte.gz files in a folder and pass --data-dir FOLDER"
        in message
    )
    assert "MNIST_JAX_DATA=FOLDER" in message and "127.0.0.1" in message
    assert not any((cache / "tiny").iterdir())


def test_download_false_never_contacts_a_mirror(monkeypatch, cache, mirror):
    url, hashes, requests = mirror
    register(monkeypatch, "tiny", hashes, [url + "files/"])
    with pytest.raises(DataError, match="download \\(disabled\\)"):
        load_dataset("tiny", download=False, cache_dir=cache)
    assert requests == []


def test_dataset_without_checksums_is_never_downloaded(cache):
    with pytest.raises(DataError, match="kmnist not found.*no verified checksums"):
        load_dataset("kmnist", cache_dir=cache)
