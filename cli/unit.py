"""The systemd user unit that runs `imgd run`: one template, rendered for this installation.

`systemd/imgd.service` in the repository is this template rendered for ~/.local/bin/imgd with
the default state folder; a test keeps the two identical.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from imgd.daemon import config as config_module
from imgd.daemon.errors import ImgdError, display_path
from imgd.daemon.paths import is_under, looks_like_path

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
# imgd gives its own stopping 1 s after SIGTERM whatever it is doing (an unfinished index save is
# left to the next start, which catches up from the catalog); the process was gone 2.2-2.4 s after
# the signal at 100k images on a loaded 2-core machine. The rest is margin.
TimeoutStopSec=5
Restart=on-failure
RestartSec=5
# The service reads the model from the local cache or a folder and never downloads it (it has
# no network), so it fails at once with advice instead of waiting on the hub.
Environment=HF_HUB_OFFLINE=1
{environment}# The query socket lives in %t/imgd, made here (mode 0700) and writable whatever the sandbox;
# it is named after the state folder, so `imgd --state-dir` on the command line finds it. The
# folder outlives the service: daemons of other state folders keep their sockets there too.
RuntimeDirectory=imgd
RuntimeDirectoryMode=0700
RuntimeDirectoryPreserve=yes

# A background indexer: it yields CPU and disk to everything else and is the first to go when
# memory runs out (it restarts and carries on from its catalog). No MemoryHigh=: a fixed cap
# would either do nothing or throttle a larger model into a crawl that starves the watchdog.
Nice=10
CPUWeight=20
IOSchedulingClass=idle
OOMScoreAdjust=500

# Hardening that needs no privilege (seccomp, prctl, umask, keyring): it works in any user's
# service manager.
{hardening}# No MemoryDenyWriteExecute=: torch's CPU kernels (oneDNN) and the CUDA driver generate code at
# run time, which that setting forbids.

{sandbox}
[Install]
WantedBy=default.target
"""

# Shared by both units; only the address families differ (the gallery also listens on 127.0.0.1).
HARDENING = """\
UMask=0077
KeyringMode=private
NoNewPrivileges=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RestrictRealtime=yes
RestrictNamespaces=yes
{families}
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM
"""
DAEMON_FAMILIES = "# Only Unix sockets: the query socket and the notify socket.\nRestrictAddressFamilies=AF_UNIX"
WEB_FAMILIES = (
    "# The daemon's Unix socket and the loopback TCP port the browser talks to.\n"
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6"
)

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
{private_tmp}{private_devices}# No network at all: the Unix socket is reached through its path, which needs none.
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

PRIVATE_TMP = """\
# A private, writable /tmp for SQLite's and the libraries' temporary files (so nothing imgd
# reads may live in /tmp: `imgd service install` leaves this out when something does).
PrivateTmp=yes
"""

SHARED_TMP = """\
# No PrivateTmp=: {what} lives in /tmp or /var/tmp, which a private /tmp would hide. Those
# folders are emptied at reboot; keep it somewhere lasting and rerun `imgd service install`.
"""

PRIVATE_DEVICES = """\
# CPU only: no /dev/nvidia* here. To use a GPU, `systemctl --user edit imgd` and set
# PrivateDevices=no (or install with --device cuda).
PrivateDevices=yes
"""

GPU_DEVICES = """\
# Installed with --device cuda: the GPU's /dev/nvidia* stay visible.
PrivateDevices=no
"""

NO_SANDBOX = """\
# No file-system sandbox: this system does not let users create user namespaces (Ubuntu 23.10
# and later restrict them through AppArmor), without which a user's service manager cannot
# build one and fails units that ask for it. Rerun `imgd service install` once they are allowed.
"""

# Where PrivateTmp= puts a private folder over the system's.
TEMP_FOLDERS = ("/tmp", "/var/tmp")

# Environment the service manager does not pass on but imgd reads: where the model cache is.
CACHE_VARIABLES = ("HF_HOME", "HF_HUB_CACHE", "SENTENCE_TRANSFORMERS_HOME")

# Characters a unit file word may hold unquoted; anything else is quoted.
_PLAIN = re.compile(r"[A-Za-z0-9_@+=:,./-]+")


def local_model(model: str) -> str | None:
    """The absolute folder of a model given as a path, or None for a hub name."""
    expanded = os.path.expanduser(model)
    return str(Path(expanded).resolve()) if os.path.isdir(expanded) or looks_like_path(model) else None


def in_temp(path: str) -> bool:
    return any(is_under(path, folder) for folder in TEMP_FOLDERS)


def render_unit(
    exe: str,
    config_file: str | None,
    state_dir: str | None,
    *,
    model: str | None = None,
    device: str | None = None,
    backend: str | None = None,
    text_model: str | None = None,
    folders: tuple[str, ...] = (),
    environment: dict[str, str] | None = None,
    sandbox: bool | None = None,
) -> str:
    """Return the unit text that runs `<exe> [--config F] --state-dir S [--model M ...] run [FOLDER...]`.

    The service manager's environment is not the shell's, so what the CLI uses now is pinned on
    the command line: the config file ($IMGD_CONFIG included), the state folder (also the one
    folder the sandbox lets the daemon write), the model, device, backend and text model given as
    flags or IMGD_*, the folders given, and `environment` (other IMGD_* and model-cache variables)
    as Environment=.
    `sandbox=None` asks this system whether the sandbox can be built (see sandbox_supported).
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
    argv += ["--state-dir", state_arg]
    model_folder = local_model(model) if model else None
    if model:
        argv += ["--model", _unit_path(model_folder or model, exec_line=True)]
    if device:
        argv += ["--device", device]
    if backend:
        argv += ["--backend", backend]
    text_folder = local_model(text_model) if text_model else None
    if text_model:
        argv += ["--text-model", _unit_path(text_folder or text_model, exec_line=True)]
    roots = [os.path.abspath(os.path.expanduser(f)) for f in folders]
    argv += ["run", *(_unit_path(root, exec_line=True) for root in roots)]
    env_lines = "".join(
        f"Environment={_unit_path(f'{key}={value}', exec_line=False)}\n"
        for key, value in sorted((environment or {}).items())
    )
    if sandbox is None:
        sandbox = sandbox_supported()
        if not sandbox:
            log.warning("user namespaces are not allowed here, so the unit is written without its file sandbox")
    if sandbox:
        # Everything the daemon reads or writes must be outside a private /tmp to be seen at all.
        needed = [("the state folder", state), ("the model folder", model_folder), ("the config file", config_path)]
        needed += [("the text model folder", text_folder)]
        needed += [("a watched folder", root) for root in roots]
        needed += [(f"${key}", value) for key, value in (environment or {}).items() if key in CACHE_VARIABLES]
        hidden = list(dict.fromkeys(what for what, path in needed if path and in_temp(os.path.abspath(path))))
        block = SANDBOX.format(
            state_arg=state_arg,
            state_dir=_unit_path(state, exec_line=False),
            private_tmp=SHARED_TMP.format(what=" and ".join(hidden)) if hidden else PRIVATE_TMP,
            private_devices=GPU_DEVICES if device == "cuda" else PRIVATE_DEVICES,
        )
    else:
        block = NO_SANDBOX
    return TEMPLATE.format(
        exec_start=" ".join(argv),
        sandbox=block,
        environment=env_lines,
        hardening=HARDENING.format(families=DAEMON_FAMILIES),
    )


WEB_UNIT_NAME = "imgd-web.service"
_NO_NETWORK = (
    "# No network at all: the Unix socket is reached through its path, which needs none.\nPrivateNetwork=yes\n"
)

WEB_TEMPLATE = """\
# imgd web: the photo gallery on http://127.0.0.1:{port}/, as a systemd user service.
# Written by `imgd service install --web`; the URL with its token is in {token_file}
# and in the log: journalctl --user -u imgd-web
#   systemctl --user daemon-reload && systemctl --user enable --now imgd-web.service

[Unit]
Description=imgd photo gallery on 127.0.0.1:{port}
# It asks the daemon when it runs and searches by itself when not: ordered after it, never bound to it.
After=imgd.service
StartLimitIntervalSec=10min
StartLimitBurst=5

[Service]
Type=simple
ExecStart={exec_start}
Restart=on-failure
RestartSec=5
# Without a daemon it may load the model itself, from the local cache only.
Environment=HF_HUB_OFFLINE=1
{environment}Nice=5
OOMScoreAdjust=500

{hardening}
{sandbox}
[Install]
WantedBy=default.target
"""


def render_web_unit(
    exe: str,
    config_file: str | None,
    state_dir: str | None,
    port: int,
    *,
    model: str | None = None,
    device: str | None = None,
    backend: str | None = None,
    text_model: str | None = None,
    environment: dict[str, str] | None = None,
    sandbox: bool | None = None,
) -> str:
    """The gallery's unit: `<exe> [--config F] --state-dir S [--model M ...] web --port P --keep-token`.

    It pins what the daemon's unit pins (without folders: the gallery watches nothing), and its
    sandbox is the daemon's less PrivateNetwork= (it listens on 127.0.0.1); it writes only the
    state folder (thumbnails, the token, uploaded query pictures for the length of a search).
    """
    # The daemon's unit, rendered for the same installation, holds what the gallery needs: the
    # command up to `run`, the Environment= lines and the sandbox block for the same state folder.
    daemon_unit = render_unit(
        exe,
        config_file,
        state_dir,
        model=model,
        device=device,
        backend=backend,
        text_model=text_model,
        environment=environment,
        sandbox=sandbox,
    )
    exec_start = re.search(r"^ExecStart=(.*) run$", daemon_unit, re.MULTILINE)
    if exec_start is None:  # pragma: no cover - TEMPLATE always has it
        raise ImgdError("cannot render the gallery's unit from the daemon's")
    argv = f"{exec_start.group(1)} web --port {int(port)} --keep-token"
    env_lines = "".join(
        line + "\n"
        for line in daemon_unit.splitlines()
        if line.startswith("Environment=") and line != "Environment=HF_HUB_OFFLINE=1"
    )
    first = SANDBOX.splitlines()[0]
    if first in daemon_unit:
        block = daemon_unit[daemon_unit.index(first) : daemon_unit.index("[Install]")]
        block = block.replace(_NO_NETWORK, "")  # the gallery listens on 127.0.0.1
        block = block.replace("the state folder and %t/imgd (RuntimeDirectory above)", "the state folder")
        block = block.rstrip("\n") + "\n"
    else:
        block = NO_SANDBOX
    state = exec_start.group(1).split(" --state-dir ", 1)[1].split(" --")[0]
    return WEB_TEMPLATE.format(
        port=int(port),
        exec_start=argv,
        environment=env_lines,
        sandbox=block,
        token_file=state.strip('"') + "/web-token",
        hardening=HARDENING.format(families=WEB_FAMILIES),
    )


def reference_unit() -> str:
    """Render the repository's systemd/imgd.service: ~/.local/bin/imgd and the default state folder."""
    home = manager_home()
    return render_unit(f"{home}/.local/bin/imgd", None, f"{home}/.local/share/imgd", sandbox=True)


def service_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The variables of `env` the service needs to behave as the CLI does now, for Environment= lines.

    IMGD_* settings (those pinned as options on the command line left out) and where the model
    cache is. IMGD_SOCKET is left out: the service's socket is %t/imgd/<hash of the state folder>.sock,
    the one a command on that state folder asks.
    """
    pinned = {"IMGD_SOCKET", "IMGD_STATE_DIR", "IMGD_MODEL", "IMGD_DEVICE", "IMGD_BACKEND", "IMGD_TEXT_MODEL"}
    names = {key.env_var for key in config_module.KEYS} - pinned
    return {key: value for key, value in env.items() if value and (key in names or key in CACHE_VARIABLES)}


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
