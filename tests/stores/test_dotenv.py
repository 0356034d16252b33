import os
import stat

import pytest

from cauterize.errors import StoreError
from cauterize.secret import Secret
from cauterize.stores.dotenv import DotenvStore


def _env(old: str) -> bytes:
    return (
        "# production settings\r\n"
        "DATABASE_URL=postgres://app@db/app  # primary\r\n"
        f'export OPENAI_API_KEY="{old}"\r\n'
        "\r\n"
        "OPENAI_API_KEY_BACKUP=unchanged\r\n"
        "FEATURE='x y'\r\n"
    ).encode()


def test_replaces_only_the_value_and_keeps_every_other_byte(tmp_path, make_key):
    old, new = make_key(), make_key()
    path = tmp_path / ".env"
    path.write_bytes(_env(old))
    os.chmod(path, 0o640)
    store = DotenvStore(path, "OPENAI_API_KEY")
    assert store.read() == Secret(old)
    store.write(Secret(new))
    assert path.read_bytes() == _env(new)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert store.read() == Secret(new)
    assert not [p for p in tmp_path.iterdir() if p.name != ".env"], "no temp file left behind"


@pytest.mark.parametrize("line, expected", [("K={v}", "K={n}"), ("K='{v}'", "K='{n}'"), ("  K = {v} # note", "  K = {n} # note")])
def test_quoting_styles(tmp_path, make_key, line, expected):
    old, new = make_key(), make_key()
    path = tmp_path / ".env"
    path.write_text(line.format(v=old) + "\n")
    DotenvStore(path, "K").write(Secret(new))
    assert path.read_text() == expected.format(n=new) + "\n"


def test_appends_a_missing_variable_and_undo_restores(tmp_path, make_key):
    path = tmp_path / ".env"
    path.write_text("A=1")
    store = DotenvStore(path, "K")
    assert store.read() is None
    new = make_key()
    write = store.write(Secret(new))
    assert path.read_text() == f"A=1\nK={new}\n"
    write.undo()
    assert path.read_text() == "A=1"


def test_unwritable_location_is_a_store_error_naming_the_store(tmp_path, make_key):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    key = make_key()
    with pytest.raises(StoreError, match="dotenv .*not-a-dir") as info:
        DotenvStore(blocker / ".env", "K").write(Secret(key))
    assert key not in str(info.value)


def test_a_variable_with_the_same_prefix_is_not_touched(tmp_path, make_key):
    path = tmp_path / ".env"
    other = make_key()
    path.write_text(f"K_OLD={other}\n")
    new = make_key()
    DotenvStore(path, "K").write(Secret(new))
    assert path.read_text() == f"K_OLD={other}\nK={new}\n"
