"""Where the master is and which keys to use, found as the ``ztask`` CLI
finds them (common/config.c, common/keys.c, cli/main.c).

Each setting comes from the argument given to :class:`ztask.Client`, else
the environment (``ZTASK_MASTER``, ``ZTASK_REQUEST_TIMEOUT``,
``ZTASK_CURVE_SECRET``, ``ZTASK_MASTER_KEY``), else the config file, else
the default (``127.0.0.1:5555``, 10 s, no CURVE).

The config file is ``$ZTASK_CONFIG`` when set (it must exist), else the
first of ``$XDG_CONFIG_HOME/ztask/config`` (or ``~/.config/ztask/config``)
and ``/etc/ztask/config`` that exists. ``key = value`` lines; blank lines
and lines starting with ``#`` are ignored; a value may be double-quoted;
a key may appear once; unknown keys are errors (the file is shared with
``ztask-worker``, whose keys are known too). A relative path in the file is
relative to the file's directory.

Key files are what ``ztask keygen NAME`` writes: ``NAME.key`` holds
``public-key = "..."`` and ``secret-key = "..."`` lines, ``NAME.pub`` only
the public one; each key is 40 Z85 characters.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from zmq.utils import z85

from .errors import UsageError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5555
DEFAULT_TIMEOUT = 10.0
CONFIG_MAX_BYTES = 64 * 1024
KNOWN_KEYS = ("master", "curve-secret", "master-key", "request-timeout", "threads", "name",
              "labels", "plugin", "allow-exec")


class ConfigFile:
    """A parsed config file: ``get(key)`` gives a value, ``path(key)`` a
    value joined to the file's directory, ``where(key)`` "FILE:LINE"."""

    def __init__(self, text: str, origin: str) -> None:
        self.origin = origin
        self.dir = os.path.dirname(origin)
        self.entries: Dict[str, Tuple[str, int]] = {}
        for lineno, raw in enumerate(text.split("\n"), 1):
            line = raw.strip(" \t\r")
            if not line or line.startswith("#"):
                continue
            key, eq, value = line.partition("=")
            key, value = key.strip(" \t"), value.strip(" \t")
            if not eq:
                raise UsageError(f"{origin}:{lineno}: expected 'key = value'")
            if not key:
                raise UsageError(f"{origin}:{lineno}: a setting needs a key before '='")
            if key not in KNOWN_KEYS:
                raise UsageError(f"{origin}:{lineno}: unknown key '{key[:64]}' (known: "
                                 + ", ".join(KNOWN_KEYS) + ")")
            if key in self.entries:
                raise UsageError(f"{origin}:{lineno}: '{key}' is already set on line "
                                 f"{self.entries[key][1]}")
            if value.startswith('"'):
                if len(value) < 2 or not value.endswith('"'):
                    raise UsageError(f"{origin}:{lineno}: '{key}': unterminated quote")
                value = value[1:-1]
            if not value:
                raise UsageError(f"{origin}:{lineno}: '{key}' has no value")
            self.entries[key] = (value, lineno)

    @classmethod
    def load(cls, path: str) -> "ConfigFile":
        try:
            with open(path, "rb") as f:
                data = f.read(CONFIG_MAX_BYTES + 1)
        except OSError as e:
            raise UsageError(f"cannot read config file {path}: {e.strerror}") from None
        if len(data) > CONFIG_MAX_BYTES:
            raise UsageError(f"config file {path} is larger than {CONFIG_MAX_BYTES} bytes")
        if b"\0" in data:
            raise UsageError(f"{path}: NUL byte (is this a text file?)")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{path}: not valid UTF-8") from None
        return cls(text, path)

    def get(self, key: str) -> Optional[str]:
        entry = self.entries.get(key)
        return entry[0] if entry else None

    def path(self, key: str) -> Optional[str]:
        value = self.get(key)
        return None if value is None else os.path.join(self.dir, value)

    def where(self, key: str) -> str:
        entry = self.entries.get(key)
        return f"{self.origin}:{entry[1]}" if entry else ""


def find_config() -> Optional[ConfigFile]:
    """The config file as the CLI finds it, or None when there is none."""
    named = os.environ.get("ZTASK_CONFIG")
    if named:
        if not os.path.exists(named):
            raise UsageError(f"cannot read config file {named}: no such file "
                             "(named by ZTASK_CONFIG)")
        return ConfigFile.load(named)
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    home = os.environ.get("HOME", "")
    candidates = []
    if xdg.startswith("/"):
        candidates.append(os.path.join(xdg, "ztask", "config"))
    elif home:
        candidates.append(os.path.join(home, ".config", "ztask", "config"))
    candidates.append("/etc/ztask/config")
    for path in candidates:
        if os.path.exists(path):
            return ConfigFile.load(path)
    return None


def valid_z85_key(text: str) -> bool:
    """True when text is 40 Z85 characters that decode to 32 bytes."""
    if not isinstance(text, str) or len(text) != 40:
        return False
    try:
        return len(z85.decode(text)) == 32
    except (KeyError, ValueError, struct.error):
        return False


def load_keys(path: str) -> Tuple[str, Optional[str]]:
    """Reads a key file: (public key, secret key or None for a .pub)."""
    keys: Dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                name, eq, value = line.strip(" \t\r\n").partition("=")
                name, value = name.strip(" \t"), value.strip(" \t").strip('"')
                if eq and name in ("public-key", "secret-key") and valid_z85_key(value):
                    keys[name] = value
    except OSError as e:
        raise UsageError(f"cannot read key file {path}: {e.strerror}") from None
    if "public-key" not in keys:
        raise UsageError(f"{path} holds no valid public-key line (make one with: ztask keygen "
                         "NAME)")
    return keys["public-key"], keys.get("secret-key")


def parse_master(text: str) -> Tuple[str, int]:
    """"HOST[:PORT]" (IPv6 as "[::1]:5555") -> (host, port)."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise UsageError(f"master '{text}' is not HOST[:PORT]")
        portpart = rest[1:] if rest else None
    else:
        if text.count(":") > 1:
            raise UsageError(f"master '{text}' is not HOST[:PORT] (write an IPv6 address in "
                             "brackets: [::1]:5555)")
        host, colon, portpart = text.partition(":")
        portpart = portpart if colon else None
    if not host:
        raise UsageError(f"master '{text}' is not HOST[:PORT]")
    if portpart is None:
        return host, DEFAULT_PORT
    if not portpart.isdigit() or not 1 <= int(portpart) <= 65535:
        raise UsageError(f"master '{text}': the port must be 1..65535")
    return host, int(portpart)


@dataclass(frozen=True)
class Settings:
    """What a Client connects with. ``curve`` is (master's public key, our
    public key, our secret key), Z85, or None for plain TCP."""

    host: str
    port: int
    timeout: float
    curve: Optional[Tuple[str, str, str]]

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __repr__(self) -> str:   # never print the secret key
        return (f"Settings(master={self.address!r}, timeout={self.timeout}, "
                f"curve={self.curve is not None})")


def _pick(arg, env: str, cfg: Optional[ConfigFile], key: str):
    """(value, where it came from, True when from the file), by precedence."""
    if arg is not None:
        return arg, "argument", False
    if os.environ.get(env):
        return os.environ[env], env, False
    if cfg is not None and cfg.get(key) is not None:
        return cfg.get(key), cfg.where(key), True
    return None, "default", False


def resolve(master: Optional[str] = None, curve_secret: Optional[str] = None,
            master_key: Optional[str] = None, timeout: Optional[float] = None) -> Settings:
    """Applies argument > environment > config file > default to every
    setting; raises UsageError naming the culprit and where it came from."""
    cfg = find_config()
    text, origin, _ = _pick(master, "ZTASK_MASTER", cfg, "master")
    host, port = (DEFAULT_HOST, DEFAULT_PORT) if text is None else _located(parse_master, text,
                                                                             origin)
    value, origin, _ = _pick(timeout, "ZTASK_REQUEST_TIMEOUT", cfg, "request-timeout")
    secs = DEFAULT_TIMEOUT
    if value is not None:
        try:
            secs = float(value)
        except (TypeError, ValueError):
            secs = -1.0
        if not 0 < secs <= 86400:
            raise UsageError(f"request timeout {value!r} (from {origin}) is not a number of "
                             "seconds (0 < SEC <= 86400)")
    secret, sorigin, sfile = _pick(curve_secret, "ZTASK_CURVE_SECRET", cfg, "curve-secret")
    mkey, korigin, kfile = _pick(master_key, "ZTASK_MASTER_KEY", cfg, "master-key")
    if secret is None and mkey is None:
        return Settings(host, port, secs, None)
    if secret is None or mkey is None:
        given, missing = ("curve-secret", "master-key") if secret else ("master-key",
                                                                        "curve-secret")
        raise UsageError(f"{given} is set (from {sorigin if secret else korigin}) but {missing} "
                         "is not: CURVE needs both this client's key file and the master's "
                         "public key")
    if sfile:
        assert cfg is not None   # a value came from the file
        secret = cfg.path("curve-secret")
    pub, sec = _located(load_keys, os.fspath(secret), sorigin)
    if sec is None:
        raise UsageError(f"curve-secret (from {sorigin}): {secret} holds no secret-key (give "
                         "the .key file, not the .pub)")
    _check_private(os.fspath(secret), sorigin)
    if not valid_z85_key(mkey):
        path = cfg.path("master-key") if kfile and cfg else os.fspath(mkey)
        mkey, _ = _located(load_keys, path, korigin)
    return Settings(host, port, secs, (mkey, pub, sec))


def _check_private(path: str, origin: str) -> None:
    """A secret key file readable by others or writable by its group is
    refused, as ssh and the C programs refuse it (0640, group-readable, is
    the service setup and fine)."""
    try:
        mode = os.stat(path).st_mode & 0o7777
    except OSError as e:
        raise UsageError(f"cannot read key file {path}: {e.strerror} (from {origin})") from None
    if mode & 0o026:
        what = "readable" if mode & 0o004 else "writable"
        raise UsageError(f"refusing key file {path}: it holds a secret key and is {what} by "
                         f"others (mode {mode:04o}); run: chmod 0600 {path} (or 0640 when a "
                         f"service's group must read it) (from {origin})")


def _located(fn, arg, origin: str):
    try:
        return fn(arg)
    except UsageError as e:
        raise UsageError(f"{e.message} (from {origin})") from None
