"""Settings are found as the CLI finds them: argument > environment >
config file > default (no master needed)."""

import os

import pytest

import ztask
from ztask import config

VARS = ("ZTASK_MASTER", "ZTASK_CURVE_SECRET", "ZTASK_MASTER_KEY", "ZTASK_REQUEST_TIMEOUT",
        "ZTASK_CONFIG", "XDG_CONFIG_HOME")


@pytest.fixture
def env(monkeypatch, tmp_path):
    for var in VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def test_defaults_are_the_local_master_without_curve(env):
    s = config.resolve()
    assert (s.address, s.timeout, s.curve) == ("127.0.0.1:5555", 10.0, None)


def test_an_argument_beats_the_environment_which_beats_the_file(env, tmp_path):
    cfg = write(tmp_path / "home/.config/ztask/config", "master = file-host:7000\n"
                "request-timeout = 3\n")
    assert config.resolve().address == "file-host:7000"
    assert config.resolve().timeout == 3.0
    env.setenv("ZTASK_MASTER", "env-host")
    assert config.resolve().address == "env-host:5555"
    assert config.resolve(master="arg-host:1").address == "arg-host:1"
    env.setenv("ZTASK_CONFIG", cfg)
    env.setenv("ZTASK_REQUEST_TIMEOUT", "2.5")
    assert config.resolve().timeout == 2.5
    assert config.resolve(timeout=7).timeout == 7.0


def test_xdg_config_home_is_used_when_absolute(env, tmp_path):
    write(tmp_path / "xdg/ztask/config", "master = xdg-host\n")
    env.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config.resolve().address == "xdg-host:5555"


@pytest.mark.parametrize("text, port", [("h", 5555), ("h:1", 1), ("[::1]:7", 7), ("[::1]", 5555),
                                        ("10.0.0.1:65535", 65535)])
def test_master_addresses_parse_as_the_cli_parses_them(text, port):
    assert config.parse_master(text)[1] == port


@pytest.mark.parametrize("text", ["", ":5", "h:", "h:0", "h:70000", "h:x", "::1", "[::1]x",
                                  "[]:5"])
def test_malformed_master_addresses_are_usage_errors(text):
    with pytest.raises(ztask.UsageError):
        config.parse_master(text)


@pytest.mark.parametrize("text, match", [
    ("master\n", "expected 'key = value'"),
    ("= x\n", "needs a key"),
    ("mastr = x\n", "unknown key 'mastr'"),
    ("master = a\nmaster = b\n", "already set on line 1"),
    ('master = "a\n', "unterminated quote"),
    ("master =\n", "has no value"),
])
def test_config_file_mistakes_name_the_file_and_line(env, tmp_path, text, match):
    env.setenv("ZTASK_CONFIG", write(tmp_path / "cfg", text))
    with pytest.raises(ztask.UsageError, match=match) as e:
        ztask.Client()
    assert str(tmp_path / "cfg") in str(e.value)


def test_a_missing_named_config_file_is_an_error(env, tmp_path):
    env.setenv("ZTASK_CONFIG", str(tmp_path / "nope"))
    with pytest.raises(ztask.UsageError, match="named by ZTASK_CONFIG"):
        config.resolve()


def test_worker_keys_and_comments_in_the_shared_file_are_accepted(env, tmp_path):
    env.setenv("ZTASK_CONFIG", write(tmp_path / "cfg", "# shared\n  threads = 4\nlabels = a, b\n"
                                     "\nmaster = \"h:9\"  \n"))
    assert config.resolve().address == "h:9"


def test_key_files_are_read_as_keygen_writes_them(env, tmp_path):
    pub, sec = (k.decode() for k in __import__("zmq").curve_keypair())
    write(tmp_path / "a.key", f'# secret\npublic-key = "{pub}"\nsecret-key = "{sec}"\n')
    os.chmod(tmp_path / "a.key", 0o600)
    write(tmp_path / "m.pub", f'public-key = "{pub}"\n')
    write(tmp_path / "bad.pub", 'public-key = "short"\n')
    assert config.load_keys(str(tmp_path / "a.key")) == (pub, sec)
    assert config.load_keys(str(tmp_path / "m.pub")) == (pub, None)
    with pytest.raises(ztask.UsageError, match="no valid public-key"):
        config.load_keys(str(tmp_path / "bad.pub"))
    s = config.resolve(curve_secret=str(tmp_path / "a.key"), master_key=str(tmp_path / "m.pub"))
    assert s.curve == (pub, pub, sec)
    assert sec not in repr(s)
    env.setenv("ZTASK_MASTER_KEY", pub)
    env.setenv("ZTASK_CURVE_SECRET", str(tmp_path / "a.key"))
    assert config.resolve().curve == (pub, pub, sec)
    with pytest.raises(ztask.UsageError, match="neither|no valid public-key|cannot read"):
        config.resolve(master_key="not-a-key")


def test_a_secret_key_readable_by_others_is_refused_with_the_chmod_to_run(env, tmp_path):
    pub, sec = (k.decode() for k in __import__("zmq").curve_keypair())
    key = write(tmp_path / "a.key", f'public-key = "{pub}"\nsecret-key = "{sec}"\n')
    write(tmp_path / "m.pub", f'public-key = "{pub}"\n')
    for mode in (0o666, 0o644, 0o620):
        os.chmod(key, mode)
        with pytest.raises(ztask.UsageError, match=f"run: chmod 0600 {key}"):
            config.resolve(curve_secret=key, master_key=str(tmp_path / "m.pub"))
    for mode in (0o600, 0o640):
        os.chmod(key, mode)
        assert config.resolve(curve_secret=key, master_key=str(tmp_path / "m.pub")).curve[2] == sec


def test_array_specs_follow_the_cli_syntax():
    from ztask.specs import parse_array
    assert list(parse_array("1-3,7,10-20:5")) == [1, 2, 3, 7, 10, 15, 20]
    assert list(parse_array(" 4 , 4")) == [4, 4]
    for bad in ("", "1-", "-1", "3-1", "1-5:0", "1:2", "a", "1,,2"):
        with pytest.raises(ztask.UsageError):
            parse_array(bad)
