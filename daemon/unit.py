"""The systemd user unit that runs `imgd run`: one template, rendered for this installation.

`systemd/imgd.service` in the repository is this template rendered for ~/.local/bin/imgd with
the default state folder; a test keeps the two identical.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import config as config_module
from .errors import ImgdError, display_path

log = logging.getLogger(__name__)

UNIT_NAME = "imgd.service"

# Comments say why; `systemd-analyze security --offline=true` on the rendered unit gives the
# exposure recorded in tests/test_unit.py.
TEMPLATE = """\
# imgd: semantic image search over your photo folders, as a systemd user service.
# Written by `imgd service install`; rerun it after moving imgd, its config or its state folder.
#   systemctl --user daemon-reload && systemctl --user enable --now imgd.service
#   journalctl --user -u imgd -f

[Unit]
Description=imgd semantic image search daemon
# A start that keeps failing (say, the model is not in the local cache yet) stops after five
# tries instead of loading torch every few seconds forever; `systemctl --user reset-failed imgd`.
StartLimitIntervalSec=10min
StartLimitBurst=5

[Service]
# READY=1 once the folders are watched, WATCHDOG=1 every WatchdogSec/2 (the daemon reads
# $WATCHDOG_USEC); only the main process may speak for the service.
Type=notify
NotifyAccess=main
ExecStart={exec_start}
WatchdogSec=60
# Loading torch and the model and watching a large library take minutes on a slow disk.
TimeoutStartSec=10min
# Room to save the index on the way out.
TimeoutStopSec=30
Restart=on-failure
RestartSec=5
# The service reads the model from the local cache or a folder and never downloads it (it has
# no network), so it fails at once with advice instead of waiting on the hub.
Environment=HF_HUB_OFFLINE=1
# The query socket lives in %t/imgd, made here (mode 0700) and writable whatever the sandbox.
RuntimeDirectory=imgd
RuntimeDirectoryMode=0700

# A background indexer: it yields CPU and disk to everything else and is the first to go when
# memory runs out (it restarts and carries on from its catalog). No MemoryHigh=: a fixed cap
# would either do nothing or throttle a larger model into a crawl that starves the watchdog.
Nice=10
CPUWeight=20
IOSchedulingClass=idle
OOMScoreAdjust=500

# Hardening that needs no privilege (seccomp, prctl, umask, keyring): it works in any user's
# service manager.
UMask=0077
KeyringMode=private
NoNewPrivileges=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RestrictRealtime=yes
RestrictNamespaces=yes
# Only Unix sockets: the query socket and the notify socket.
RestrictAddressFamilies=AF_UNIX
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM
# No MemoryDenyWriteExecute=: torch's CPU kernels (oneDNN) and the CUDA driver generate code at
# run time, which that setting forbids.

{sandbox}
[Install]
WantedBy=default.target
"""

SANDBOX = """\
# File-system and namespace sandbox. A user's service manager can build it only inside a user
# namespace, hence PrivateUsers=yes; without one the unit would fail to start (see
# `imgd service install`, which leaves this part out where user namespaces are not allowed).
PrivateUsers=yes
# Everything read-only, home included: photos can be anywhere in $HOME, /media, /mnt or
# /run/media, and the model is read from ~/.cache/huggingface or a folder.
ProtectSystem=strict
ProtectHome=read-only
# Writable: the state folder and %t/imgd (RuntimeDirectory above). A read-only home takes no
# new folders, so the state folder is made first, outside the sandbox ("+"); "-" lets that
# step's own namespace be set up while the folder does not exist yet.
ExecStartPre=+mkdir -p {state_arg}
ReadWritePaths=-{state_dir}
# A private, writable /tmp for SQLite's and the libraries' temporary files (so nothing imgd
# reads may live in /tmp).
PrivateTmp=yes
# CPU only: no /dev/nvidia* here. To use a GPU, `systemctl --user edit imgd` and set
# PrivateDevices=no.
PrivateDevices=yes
# No network at all: the Unix socket is reached through its path, which needs none.
PrivateNetwork=yes
PrivateIPC=yes
PrivateMounts=yes
ProtectHostname=yes
ProtectClock=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
CapabilityBoundingSet=
# Left out as they do nothing in a user's service manager: ProtectProc=, ProcSubset=,
# ProtectControlGroups=, RemoveIPC= (system services only) and IPAddressDeny=, DevicePolicy=
# (they need root's BPF; PrivateNetwork= and PrivateDevices= do the job).
"""

NO_SANDBOX = """\
# No file-system sandbox: this system does not let users create user namespaces (Ubuntu 23.10
# and later restrict them through AppArmor), without which a user's service manager cannot
# build one and fails units that ask for it. Rerun `imgd service install` once they are allowed.
"""

# Characters a unit file word may hold unquoted; anything else is quoted.
_PLAIN = re.compile(r"[A-Za-z0-9_@+=:,./-]+")


def render_unit(
    exe: str,
    config_file: str | None,
    state_dir: str | None,
    *,
    sandbox: bool | None = None,
) -> str:
    """Return the unit text that runs `<exe> [--config F] --state-dir S run` under systemd.

    The service manager's environment is not the shell's, so what the CLI uses now is pinned on
    the command line: the config file ($IMGD_CONFIG included) and the state folder, which is
    also the one folder the sandbox lets the daemon write. `sandbox=None` asks this system
    whether the sandbox can be built (see sandbox_supported).
    """
    program = resolve_executable(exe)
    config_file = config_file or os.environ.get("IMGD_CONFIG")
    config_path = os.path.abspath(os.path.expanduser(config_file)) if config_file else None
    if state_dir:
        state = os.path.abspath(os.path.expanduser(state_dir))
    else:
        state = os.path.abspath(config_module.load(config_path).state_dir)
    state_arg = _unit_path(state, exec_line=True)
    argv = [_unit_path(program, exec_line=True)]
    if config_path:
        argv += ["--config", _unit_path(config_path, exec_line=True)]
    argv += ["--state-dir", state_arg, "run"]
    if sandbox is None:
        sandbox = sandbox_supported()
        if not sandbox:
            log.warning("user namespaces are not allowed here, so the unit is written without its file sandbox")
    if sandbox:
        block = SANDBOX.format(state_arg=state_arg, state_dir=_unit_path(state, exec_line=False))
    else:
        block = NO_SANDBOX
    return TEMPLATE.format(exec_start=" ".join(argv), sandbox=block)


def reference_unit() -> str:
    """Render the repository's systemd/imgd.service: ~/.local/bin/imgd and the default state folder."""
    home = manager_home()
    return render_unit(f"{home}/.local/bin/imgd", None, f"{home}/.local/share/imgd", sandbox=True)


def install_unit(text: str, unit_dir: Path | None = None) -> Path:
    """Write imgd.service into unit_dir (default: the user's systemd folder) atomically."""
    folder = Path(unit_dir) if unit_dir is not None else default_unit_dir()
    path = folder / UNIT_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{UNIT_NAME}.", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(temp, 0o644)
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ImgdError(f"cannot write {display_path(str(path))} ({reason}); pass a writable --unit-dir.") from None
    return path


def default_unit_dir() -> Path:
    """Where systemd looks for a user's own units: $XDG_CONFIG_HOME/systemd/user."""
    base = os.environ.get("XDG_CONFIG_HOME")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return root / "systemd" / "user"


def resolve_executable(exe: str) -> str:
    """Return the absolute path of the imgd executable that `exe` (usually sys.argv[0]) names.

    Run as `python -m imgd.cli.main` or from a test runner, argv[0] is not imgd; then the imgd
    script installed beside the running Python is the one to start.
    """
    found = exe if os.path.isabs(exe) else (shutil.which(exe) if os.sep not in exe else None)
    path = os.path.abspath(found or exe)
    if os.path.basename(path).startswith("imgd"):
        return path
    sibling = shutil.which("imgd", path=os.path.dirname(sys.executable))
    if sibling:
        return os.path.abspath(sibling)
    raise ImgdError(
        f"cannot find the imgd executable ({display_path(exe)} is not it and none sits beside "
        f"{display_path(sys.executable)}); run `imgd service install` through the installed imgd command."
    )


def sandbox_supported() -> bool:
    """Whether this user may make a user namespace and mount in it, as systemd will need to."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    try:
        done = subprocess.run(
            [unshare, "--user", "--map-root-user", "--mount", "true"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def manager_home() -> str:
    """The home folder systemd's %h stands for in a user's service manager."""
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return os.path.expanduser("~")


def _unit_path(path: str, exec_line: bool) -> str:
    """Write `path` as one unit-file word: %h for the home folder, quoted and escaped if needed.

    `%` is a specifier everywhere and `$` a variable in Exec lines, so both are doubled; inside
    double quotes a backslash escapes the next character in both kinds of setting.
    """
    text = os.fsdecode(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ImgdError(f"{display_path(text)}: not valid UTF-8, so a systemd unit cannot name it.") from None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ImgdError(f"{display_path(text)}: holds a control character, so a systemd unit cannot name it.")
    home = manager_home().rstrip("/")
    prefix = ""
    if home and _PLAIN.fullmatch(home) and (text == home or text.startswith(home + "/")):
        prefix, text = "%h", text[len(home) :]
    text = text.replace("%", "%%")
    if exec_line:
        text = text.replace("$", "$$")
    if _PLAIN.fullmatch(text) or not text:
        return prefix + text
    return '"' + prefix + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
