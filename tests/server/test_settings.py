"""`impasto serve` settings: typed config checks, style names matched whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from impasto.errors import BAD_OPTIONS, ImpastoError
from impasto.server.stylelib import StyleLibrary
from tests.helpers import gradient_image, run_cli


@pytest.mark.parametrize(("line", "says"), [
    ("watch = 5", "watch must be a string or a list"),
    ('curve = "false"', "curve must be true or false"),
    ("poll = 1", "poll must be true or false"),
    ('tile_size = "big"', "tile_size must be an integer"),
    ("tile_pixels = true", "tile_pixels must be an integer"),
    ("watch = [1, 2]", "watch must be a folder or a list of folders"),
    ("bind = 5767", "bind must be a string"),
    ('precision = "fp8"', "precision must be one of"),
    ("cluster = 5", "cluster must be a string"),
    ('cluster = "nowhere"', "cluster must be local, auto, ray://HOST:PORT"),
    ("workers = 0", "workers must be 1 or more"),
    ('cluster = "ray://"', "a port from 1 to 65535"),
    ('cluster = "ray://:10001"', "a port from 1 to 65535"),
    ('cluster = "ray://head:99999"', "a port from 1 to 65535"),
    ('cluster = "head:notaport"', "a port from 1 to 65535"),
    ('cluster = "ray://head:10001/x"', "a port from 1 to 65535"),
    ("workers = 2", "without --cluster"),
    ("worker_cpus = 4", "without --cluster"),
    ("bogus = 1", "unknown key(s) bogus"),
    ("= broken", "not valid TOML"),
    ('idle_exit = "1h"', "idle_exit must be an integer or a number"),
    ("idle_exit = 0", "idle_exit must be 1 to"),
    ("idle_exit = nan", "idle_exit must be 1 to"),
])
def test_config_errors_are_one_line(tmp_path: Path, env: dict[str, str], line: str,
                                    says: str) -> None:
    cfg = tmp_path / "impasto.toml"
    cfg.write_text(line + "\n")
    r = run_cli(["serve", "--config", str(cfg)], env)
    assert r.returncode == 2, r.stderr
    assert says in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["evil\n", "a\nb", "../x", ".hidden", "", "x" * 65, "a/b",
                                  "tab\there"])
def test_style_names_are_matched_whole(tmp_path: Path, name: str) -> None:
    lib = StyleLibrary(tmp_path / "styles")
    with pytest.raises(ImpastoError) as e:
        lib.add(name, gradient_image(8, 8))
    assert e.value.code == BAD_OPTIONS
    assert not (tmp_path / "styles").exists() or not any((tmp_path / "styles").iterdir())
    assert lib.add("fine name_1.0", gradient_image(8, 8))["name"] == "fine name_1.0"


def test_workers_flag_without_cluster_is_refused(env: dict[str, str]) -> None:
    r = run_cli(["serve", "--weights", "random", "--workers", "2"], env)
    assert r.returncode == 2 and "add --cluster local" in r.stderr, r.stderr


@pytest.mark.parametrize("value", ["0", "-5", "abc", "nan"])
def test_idle_exit_flag_is_checked(env: dict[str, str], value: str) -> None:
    r = run_cli(["serve", "--idle-exit", value], env)
    assert r.returncode == 2 and "--idle-exit" in r.stderr and "Traceback" not in r.stderr
