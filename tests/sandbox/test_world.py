import pytest

from cauterize.errors import InputError
from cauterize.sandbox.world import MARKER, prepare_root


def test_prepare_root_refuses_a_foreign_non_empty_directory(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty"):
        prepare_root(tmp_path)
    assert (tmp_path / "precious.txt").exists()


def test_prepare_root_replaces_an_earlier_demo(tmp_path):
    root = tmp_path / "w"
    root.mkdir()
    (root / MARKER).write_text("")
    (root / "old").write_text("")
    assert prepare_root(root) == root.resolve()
    assert list(root.iterdir()) == []


def test_the_sandbox_revocation_delay_comes_from_the_environment(tmp_path, monkeypatch):
    from cauterize.sandbox.world import DELAY_ENV, build_world

    monkeypatch.setenv(DELAY_ENV, "2.5")
    world = build_world(tmp_path / "w")
    try:
        assert world.emulator.revocation_delay_s == 2.5
    finally:
        world.close()
    monkeypatch.setenv(DELAY_ENV, "soon")
    with pytest.raises(InputError, match=DELAY_ENV):
        build_world(tmp_path / "x")
