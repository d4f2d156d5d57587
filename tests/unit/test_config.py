"""config: defaults < TOML file < IMGD_* environment < flags, and every bad value named by its key."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from imgd.daemon import config, paths
from imgd.daemon.config import DEFAULT_EXCLUDES, Config
from imgd.daemon.errors import ConfigError


def write_toml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def user_config(tmp_path: Path) -> Path:
    """Where the user's config lives under the XDG_CONFIG_HOME the autouse fixture sets."""
    return tmp_path / "xdg-config" / "imgd" / "config.toml"


# -- defaults and XDG ----------------------------------------------------------------------------


def test_defaults_follow_the_xdg_variables(tmp_path: Path) -> None:
    loaded = config.load(env={})
    assert loaded.state_dir == tmp_path / "xdg-data" / "imgd"
    assert loaded.catalog_path == tmp_path / "xdg-data" / "imgd" / "catalog.db"
    assert loaded.index_path == tmp_path / "xdg-data" / "imgd" / "index.faiss"
    assert loaded.socket == tmp_path / "xdg-run" / "imgd" / f"{paths.state_key(loaded.state_dir)}.sock"
    assert config.default_config_path() == tmp_path / "xdg-config" / "imgd" / "config.toml"
    assert loaded.model == "clip-ViT-B-32"
    assert loaded.top_k == 10
    assert loaded.watch_paths == ()
    assert loaded.excludes == DEFAULT_EXCLUDES


def test_unset_or_relative_xdg_variables_fall_back_to_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The XDG spec says relative values are invalid and must be ignored."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    loaded = config.load(env={})
    assert loaded.state_dir == tmp_path / "home" / ".local" / "share" / "imgd"
    assert config.default_config_path() == tmp_path / "home" / ".config" / "imgd" / "config.toml"
    assert loaded.socket == loaded.state_dir / "imgd.sock"


def test_the_user_config_file_is_read_without_being_named(user_config: Path) -> None:
    write_toml(user_config, "[search]\ntop_k = 3\n")
    assert config.load(env={}).top_k == 3


def test_a_missing_user_config_file_just_means_defaults(user_config: Path) -> None:
    assert not user_config.exists()
    assert config.load(env={}) == Config()


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.load(env={}).top_k = 5  # type: ignore[misc]


# -- TOML ----------------------------------------------------------------------------------------


def test_toml_keys_map_to_fields(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path / "imgd.toml",
        """
state_dir = "/srv/imgd"
socket = "/run/imgd.sock"

[model]
name = "clip-ViT-L-14"
device = "cpu"
precision = "float32"
batch_size = 4
decode_threads = 2

[index]
max_image_pixels = 5000000
persist_interval = 30
exact_limit = 100000
reconcile_interval = 0
missing_grace = 3600.5

[search]
top_k = 25

[watch]
paths = ["/photos", "~/Pictures"]
exclude = ["*.tmp"]
extra_exclude = ["Trash"]
follow_symlinks = true
settle_seconds = 2.5
polling = "always"
""",
    )
    loaded = config.load(path, env={})
    assert loaded.state_dir == Path("/srv/imgd")
    assert loaded.socket == Path("/run/imgd.sock")
    assert (loaded.model, loaded.device, loaded.precision) == ("clip-ViT-L-14", "cpu", "float32")
    assert (loaded.batch_size, loaded.decode_threads, loaded.threads()) == (4, 2, 2)
    assert (loaded.max_image_pixels, loaded.exact_limit) == (5_000_000, 100_000)
    assert (loaded.persist_interval, loaded.reconcile_interval, loaded.missing_grace) == (30.0, 0.0, 3600.5)
    assert loaded.top_k == 25
    assert loaded.watch_paths == (Path("/photos"), Path.home() / "Pictures")
    assert loaded.excludes == ("*.tmp", "Trash")
    assert loaded.follow_symlinks is True
    assert loaded.settle_seconds == 2.5
    assert loaded.polling == "always"


# -- precedence ----------------------------------------------------------------------------------


def test_precedence_is_defaults_then_toml_then_environment_then_flags(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "imgd.toml", '[search]\ntop_k = 20\n[model]\nname = "from-toml"\n')
    env = {"IMGD_TOP_K": "30", "IMGD_MODEL": "from-env"}

    assert config.load(env={}).top_k == 10
    assert config.load(path, env={}).top_k == 20
    assert config.load(path, env=env).top_k == 30
    assert config.load(path, {"top_k": 40}, env=env).top_k == 40
    # Each layer only replaces what it sets.
    assert config.load(path, {"top_k": 40}, env={"IMGD_TOP_K": "30"}).model == "from-toml"
    assert config.load(path, {"top_k": 40}, env=env).model == "from-env"


def test_flags_left_unset_do_not_override(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "imgd.toml", '[search]\ntop_k = 20\n[watch]\npaths = ["/photos"]\n')
    loaded = config.load(path, {"top_k": None, "watch_paths": ()}, env={})
    assert loaded.top_k == 20
    assert loaded.watch_paths == (Path("/photos"),)


def test_environment_is_read_from_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGD_TOP_K", "7")
    monkeypatch.setenv("IMGD_FOLLOW_SYMLINKS", "yes")
    monkeypatch.setenv("IMGD_WATCH_PATHS", os.pathsep.join(["/a", "/b c"]))
    monkeypatch.setenv("IMGD_EXTRA_EXCLUDE", "Trash, *.raw")
    monkeypatch.setenv("IMGD_SOCKET", "/tmp/other.sock")
    loaded = config.load()
    assert loaded.top_k == 7
    assert loaded.follow_symlinks is True
    assert loaded.watch_paths == (Path("/a"), Path("/b c"))
    assert loaded.extra_exclude == ("Trash", "*.raw")
    assert loaded.socket == Path("/tmp/other.sock")


# -- which file --------------------------------------------------------------------------------------


def test_imgd_config_picks_the_file(tmp_path: Path, user_config: Path) -> None:
    write_toml(user_config, "[search]\ntop_k = 3\n")
    chosen = write_toml(tmp_path / "chosen.toml", "[search]\ntop_k = 4\n")
    assert config.load(env={"IMGD_CONFIG": str(chosen)}).top_k == 4


def test_an_explicit_config_flag_beats_imgd_config(tmp_path: Path) -> None:
    from_env = write_toml(tmp_path / "env.toml", "[search]\ntop_k = 4\n")
    from_flag = write_toml(tmp_path / "flag.toml", "[search]\ntop_k = 5\n")
    assert config.load(from_flag, env={"IMGD_CONFIG": str(from_env)}).top_k == 5


def test_an_explicit_config_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="not found") as caught:
        config.load(missing, env={})
    assert str(missing) in str(caught.value)
    with pytest.raises(ConfigError, match="not found"):
        config.load(env={"IMGD_CONFIG": str(missing)})


# -- bad values ----------------------------------------------------------------------------------


def test_a_config_file_that_is_not_utf8_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[watch]\npaths = ["~/Bilder/\u00e9t\u00e9"]\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.toml: not valid TOML \('utf-8' codec can't decode"):
        config.load(path, env={})


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "broken.toml", "[watch\npaths = [\n")
    with pytest.raises(ConfigError, match="not valid TOML") as caught:
        config.load(path, env={})
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("toml", "key", "problem"),
    [
        ('[watch]\nsettle_seconds = "soon"', "watch.settle_seconds", "soon"),
        ("[watch]\nsettle_seconds = -1", "watch.settle_seconds", "must not be negative"),
        ("[watch]\nsettle_seconds = nan", "watch.settle_seconds", "nan"),
        ("[index]\npersist_interval = inf", "index.persist_interval", "inf"),
        ("[search]\ntop_k = 0", "search.top_k", "positive"),
        ("[index]\nexact_limit = 0", "index.exact_limit", "positive"),
        ("[search]\ntop_k = 2.5", "search.top_k", "whole number"),
        ("[search]\ntop_k = inf", "search.top_k", "whole number"),
        ("[search]\ntop_k = true", "search.top_k", "whole number"),
        ('[model]\ndevice = "tpu"', "model.device", "auto, cpu, cuda"),
        ('[model]\nname = ""', "model.name", "non-empty"),
        ('[watch]\npaths = "/a"\nfollow_symlinks = "sometimes"', "watch.follow_symlinks", "true or false"),
        ("[watch]\npaths = [1, 2]", "watch.paths", "list of folder paths"),
        ("state_dir = 3", "state_dir", "path"),
    ],
)
def test_an_invalid_toml_value_names_the_key_and_the_problem(tmp_path: Path, toml: str, key: str, problem: str) -> None:
    path = write_toml(tmp_path / "imgd.toml", toml + "\n")
    with pytest.raises(ConfigError) as caught:
        config.load(path, env={})
    message = str(caught.value)
    assert f": {key}: invalid value" in message
    assert problem in message
    assert str(path) in message


def test_an_invalid_environment_value_names_the_variable_and_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(env={"IMGD_SETTLE_SECONDS": "soon"})
    assert "IMGD_SETTLE_SECONDS" in str(caught.value)
    assert "watch.settle_seconds" in str(caught.value)


def test_an_invalid_flag_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match="option: model.batch_size: invalid value -2"):
        config.load(None, {"batch_size": -2}, env={})


@pytest.mark.parametrize(("toml", "name"), [("colour = 1", "colour"), ("[watch]\npathz = []", "watch.pathz")])
def test_an_unknown_key_is_rejected_by_name(tmp_path: Path, toml: str, name: str) -> None:
    path = write_toml(tmp_path / "imgd.toml", toml + "\n")
    with pytest.raises(ConfigError, match=f"unknown key {name}"):
        config.load(path, env={})


# -- one table of keys -----------------------------------------------------------------------------


def test_the_readme_lists_every_key_exactly_as_the_table_does() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "```toml\n" + config.to_toml() + "```\n" in readme, "regenerate the README's key list from config.to_toml()"


def test_every_key_round_trips_through_its_own_toml_and_environment_variable(tmp_path: Path) -> None:
    text = config.to_toml(config.load(env={}), with_help=False).replace("# socket = (unset)", 'socket = "/s.sock"')
    loaded = config.load(write_toml(tmp_path / "all.toml", text), env={})
    assert loaded == dataclasses.replace(config.load(env={}), socket_path=Path("/s.sock"))
    for key in config.KEYS:
        assert key.env_var.startswith("IMGD_") and key.help
    assert len({key.env_var for key in config.KEYS}) == len(config.KEYS)


def test_model_backend_text_and_idle_unload_keys(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "c.toml", '[model]\nbackend = "onnx"\ntext = "multi"\nidle_unload = 0\n')
    loaded = config.load(path, env={})
    assert (loaded.backend, loaded.text_model, loaded.idle_unload) == ("onnx", "multi", 0.0)
    assert config.load(env={"IMGD_BACKEND": "torch", "IMGD_IDLE_UNLOAD": "30"}).idle_unload == 30.0
    defaults = config.load(env={})
    assert (defaults.backend, defaults.text_model, defaults.idle_unload) == ("auto", None, 300.0)
    with pytest.raises(ConfigError, match=r"model.backend: invalid value 'tensorrt' \(expected one of auto"):
        config.load(write_toml(tmp_path / "bad.toml", '[model]\nbackend = "tensorrt"\n'), env={})


# -- the default folder to watch -----------------------------------------------------------


def test_the_pictures_folder_is_the_default_watch_folder_when_it_exists(tmp_path: Path) -> None:
    home = Path.home()  # the autouse fixture's temporary HOME
    assert config.pictures_dir() is None and config.load(env={}).watch_paths == ()
    (home / "Pictures").mkdir(parents=True)
    assert config.load(env={}).watch_paths == (home / "Pictures",)
    assert "watch_paths" not in config.load(env={}).given


def test_xdg_user_dirs_names_the_pictures_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = Path.home()
    (home / "Bilder").mkdir(parents=True)
    (home / "Pictures").mkdir()
    dirs = write_toml(
        tmp_path / "xdg-config" / "user-dirs.dirs",
        '# written by xdg-user-dirs-update\nXDG_PICTURES_DIR="$HOME/Bilder"\n',
    )
    assert config.pictures_dir() == home / "Bilder"
    dirs.write_text('XDG_PICTURES_DIR="$HOME/"\n')  # xdg-user-dirs' way of turning a folder off
    assert config.pictures_dir() is None
    monkeypatch.setenv("XDG_PICTURES_DIR", str(home / "Pictures"))
    assert config.pictures_dir() == home / "Pictures"


def test_given_names_the_fields_set_anywhere_but_the_defaults(user_config: Path) -> None:
    write_toml(user_config, "[watch]\npaths = []\n")
    loaded = config.load(None, {"model": "m", "device": None}, env={"IMGD_TOP_K": "3"})
    assert loaded.given == {"watch_paths", "model", "top_k"}
