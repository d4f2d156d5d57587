"""Mutation check: break one key line at a time, in a copy of the repository, and make sure a test notices.

Each mutation names a file, an exact snippet of it, what to put instead, and the tests that must
fail once it is applied. The check copies the working tree to a temporary folder per mutation,
applies the change there, and runs those tests against the copy (an `imgd` package of symlinks to
the copy's daemon/ and cli/ goes first on PYTHONPATH, so the editable install is not touched and
daemon subprocesses import the copy too). First the unmutated copy must pass the same tests.

    .venv/bin/python tests/mutants.py                 # every mutation, one at a time
    .venv/bin/python tests/mutants.py -j 2            # two at a time
    .venv/bin/python tests/mutants.py --only move-reembeds --only sighup-ignored
    .venv/bin/python tests/mutants.py --list

It reports CAUGHT (a named test failed), SURVIVED (every test passed), STALE (the snippet is no longer
in the file exactly once: update the mutation to the new code) or ERROR, and exits non-zero unless
every mutation was caught. When a bug is fixed, add the mutation that brings it back.
Not collected by pytest (the name does not start with test_).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {"daemon": "daemon", "cli": "cli", "web": "web"}  # imgd.<name> -> folder, as pyproject.toml maps them
TIMEOUT = 900.0
SKIP = ("benchmarks/",)  # no test imports them, and benchmark runs leave large files there


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    original: str
    replacement: str
    tests: tuple[str, ...]
    why: str
    also: tuple[tuple[str, str, str], ...] = ()  # more (file, original, replacement) edits, applied together


LIVE = "tests/integration/test_live.py::"
CHANGE = "tests/integration/test_modelchange.py::"
FILTERS = "tests/unit/test_filters.py::test_clause_and_match_agree"
VIDEO_DECODE = "tests/integration/test_video_decode.py::"
VIDEO_SEARCH = "tests/integration/test_video_search.py::"
SERVICE = "tests/e2e/test_service.py::test_imgd_run_notifies_systemd_rescans_on_sighup_and_stops_cleanly_on_sigint"
IMPORTS = "tests/unit/test_imports.py::"
SIBLINGS = "tests/integration/test_siblings.py::"
RAW = "tests/integration/test_raw.py::"
PLACES_DAEMON = (
    "tests/integration/test_places.py::"
    "test_the_daemon_names_places_in_the_background_yielding_to_new_files_and_resuming"
)
CLUMP = "tests/integration/test_dupes.py::test_a_clump_of_near_identical_frames_keeps_few_pairs_and_still_groups_as_one"
WORDS_CHILD = "tests/integration/test_words.py::"
STATUS_COST = LIVE + "test_the_gallery_status_poll_costs_no_grouping_and_no_stat_and_imgd_status_regroups_once_a_change"
START_BUILD = "tests/integration/test_start_build.py::"
SCAN_E2E = "tests/e2e/test_start_scan.py::"
START_SCAN = SCAN_E2E + "test_without_a_usable_index_file_it_answers_exactly_while_it_is_built[missing]"
START_SCAN_STOP = SCAN_E2E + "test_sigterm_during_the_start_build_exits_within_the_bound_and_saves_nothing"

MUTATIONS: list[Mutation] = [
    # -- the mutation review's table (issue 16) ------------------------------------------------
    Mutation(
        "move-reembeds",
        "daemon/ingest/engine.py",
        "moved = int(self.catalog.move_file(src, dest))",
        "moved = 0 * int(self.catalog.remove_file(src))",
        (LIVE + "test_a_renamed_file_keeps_its_vector_and_is_never_re_embedded",),
        "a single-file rename becomes remove + re-add, and the removed content is not held for its return",
        # Since the watcher fixes a removed content is held for a grace period and reused by hash, so a
        # broken move alone no longer re-embeds; both defences must go for a rename to cost an embedding.
        also=(
            (
                "daemon/service/run.py",
                "orphan_grace=lambda: self.watcher.orphan_grace(config.settle_seconds),",
                "orphan_grace=lambda: 0.0,",
            ),
        ),
    ),
    Mutation(
        "exclude-case-sensitive",
        "daemon/ingest/scanner.py",
        "        return pattern is not None and pattern.match(name.lower()) is not None",
        "        return pattern is not None and pattern.match(name) is not None",
        ("tests/integration/test_engine.py::test_excluded_and_temporary_names_are_ignored",),
        "exclude globs matched case-sensitively (README: case-insensitive)",
    ),
    Mutation(
        "settle-no-quiet-time",
        "daemon/ingest/worker.py",
        "            if now - entry.seen < self.settle_seconds:\n                continue\n",
        "",
        (LIVE + "test_a_slowly_written_file_is_read_once_after_it_settles",),
        "no quiet-time wait: a file still being written is read (and fails) again and again",
    ),
    Mutation(
        "search-never-asks-daemon",
        "daemon/api/facade.py",
        "reply = client.request(self.socket, request.to_message(), timeout=timeout)",
        'raise DaemonNotRunning("mutant: the daemon is never asked")',
        ("tests/integration/test_cli.py::test_search_asks_the_running_daemon_and_falls_back_without_one",),
        "`imgd search` silently answers directly even with a daemon running",
    ),
    Mutation(
        "index-newer-generation-patched",
        "daemon/store/index.py",
        " or header.generation > generation:",
        ":",
        ("tests/unit/test_index.py::test_a_stale_file_of_another_catalog_or_from_the_future_is_rebuilt",),
        "an index file newer than the catalog (a restored backup) is patched instead of rebuilt",
    ),
    Mutation(
        "sighup-ignored",
        "daemon/service/run.py",
        "signal.signal(signal.SIGHUP, lambda *_: self.worker.request_rescan())",
        "signal.signal(signal.SIGHUP, lambda *_: None)",
        (SERVICE,),
        "SIGHUP does not rescan",
    ),
    Mutation(
        "no-writer-lock",
        "daemon/service/library.py",
        "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)",
        "pass",
        (
            "tests/integration/test_library.py::test_a_second_writer_on_one_state_folder_is_refused_until_the_first_closes",
            "tests/integration/test_library.py::test_imgd_index_while_another_writer_holds_the_catalog_stops_with_one_line",
        ),
        "two writers on one catalog",
    ),
    Mutation(
        "second-daemon-unlinks-live-socket",
        "daemon/service/server.py",
        'raise ImgdError(f"another imgd daemon already answers on {path}; stop it first.")',
        "path.unlink()",
        ("tests/unit/test_server.py::test_a_second_server_on_a_live_socket_is_refused_and_the_first_keeps_answering",),
        "a second daemon unlinks the live one's socket instead of refusing to start",
    ),
    # -- README promises (issue 16's second list) ----------------------------------------------
    Mutation(
        "no-progress-bar",
        "cli/index.py",
        "render.progress_bar(not quiet(ctx) and sys.stderr.isatty()) as (on_total, progress),",
        "render.progress_bar(False) as (on_total, progress),",
        ("tests/integration/test_cli.py::test_index_draws_a_progress_bar_on_a_terminal_only",),
        "`imgd index` draws no progress bar on a terminal",
    ),
    Mutation(
        "global-verbosity-ignored",
        "cli/group.py",
        "ctx.meta[VERBOSITY_KEY] = ctx.meta.get(VERBOSITY_KEY, 0) + sign * (value or 0)",
        "ctx.meta[VERBOSITY_KEY] = 0",
        ("tests/integration/test_cli.py::test_global_verbose_and_quiet_set_how_much_is_logged",),
        "global -v/-q change nothing",
    ),
    Mutation(
        "user-error-exit-1",
        "cli/group.py",
        "    exit_code = EXIT_ERROR\n",
        "    exit_code = 1\n",
        ("tests/integration/test_cli.py::test_user_errors_are_one_line_without_traceback",),
        "a bad path exits 1 (grep's 'no match') instead of 2",
    ),
    Mutation(
        "listing-no-match-exits-0",
        "cli/output.py",
        "            ctx.exit(none_exit)\n",
        "            pass\n",
        ("tests/integration/test_cli.py::test_empty_catalog_and_no_match_exit_non_zero_with_a_message",),
        "a listing with nothing to show exits 0 instead of grep's 1 (the one output function every listing ends in)",
    ),
    Mutation(
        "follow-symlinks-ignored",
        "daemon/ingest/scanner.py",
        "if entry.is_dir(follow_symlinks=follow_symlinks):",
        "if entry.is_dir(follow_symlinks=False):",
        ("tests/integration/test_engine.py::test_follow_symlinks_indexes_linked_files_and_folders_once_despite_loops",),
        "follow_symlinks = true does not enter linked folders",
    ),
    Mutation(
        "polling-always-ignored",
        "daemon/ingest/watcher.py",
        'if self.polling != "always":',
        "if True:",
        (LIVE + "test_polling_always_watches_by_polling_and_still_sees_new_files",),
        "polling = always still uses inotify",
    ),
    Mutation(
        "polling-never-falls-back",
        "daemon/ingest/watcher.py",
        ' or self.polling == "never":\n                    raise',
        ":\n                    raise",
        (LIVE + "test_when_the_watch_limit_is_reached_auto_polls_and_never_refuses",),
        "polling = never falls back to polling at the watch limit",
    ),
    Mutation(
        "watch-paths-ignored",
        "cli/run.py",
        "return tuple(dict.fromkeys([*config.watch_paths, *folders]))",
        "return tuple(dict.fromkeys(folders))",
        (SERVICE,),
        "[watch] paths from the config are not watched by `imgd run`",
    ),
    Mutation(
        "reconcile-interval-zero-rescans",
        "daemon/service/run.py",
        "if now >= next_reconcile and self.config.reconcile_interval > 0:",
        "if now >= next_reconcile:",
        (LIVE + "test_reconcile_interval_zero_never_rescans",),
        "reconcile_interval = 0 rescans all the time instead of never",
    ),
    Mutation(
        "no-periodic-reconcile",
        "daemon/service/run.py",
        "next_reconcile = now + self.config.reconcile_interval\n        while",
        'next_reconcile = float("inf")\n        while',
        (LIVE + "test_reconcile_interval_rescans_periodically",),
        "reconcile_interval is never honoured",
    ),
    Mutation(
        "no-sd-notify-ready",
        "daemon/service/run.py",
        'sd_notify("READY=1\\nSTATUS=answering; setting up the watches and catching up with the disk")',
        'sd_notify("STATUS=answering; setting up the watches and catching up with the disk")',
        (SERVICE,),
        "systemd is never told the service is ready",
    ),
    Mutation(
        "no-watchdog-ping",
        "daemon/service/run.py",
        'sd_notify("WATCHDOG=1")',
        "pass",
        (SERVICE,),
        "no WATCHDOG=1 pings: systemd would kill a healthy daemon",
    ),
    Mutation(
        "sigint-not-handled",
        "daemon/service/run.py",
        "for sig in (signal.SIGTERM, signal.SIGINT):",
        "for sig in (signal.SIGTERM,):",
        (SERVICE,),
        "SIGINT is not a clean stop",
    ),
    Mutation(
        "status-without-eta",
        "daemon/service/run.py",
        '"eta_s": round(pending / stats.rate, 1) if stats.rate and stats.busy != "idle" else None,',
        '"eta_s": None,',
        (SERVICE,),
        "status never gives an ETA",
    ),
    Mutation(
        "worker-death-ignored",
        "daemon/service/run.py",
        "if not self.worker.alive:",
        "if False:",
        (LIVE + "test_the_service_exits_non_zero_when_its_indexing_thread_dies",),
        "the daemon runs on (exit 0) without its indexing thread",
    ),
    Mutation(
        "returning-root-not-rewatched",
        "daemon/ingest/watcher.py",
        'if watched.mode == "missing" and os.path.isdir(root) and self.ensure_watching(root):',
        "if False:",
        (LIVE + "test_a_watched_folder_that_appears_vanishes_and_returns_is_followed",),
        "a watched folder that appears later, or comes back, is never watched",
    ),
    Mutation(
        "precision-auto-never-bfloat16",
        "daemon/embedders/torch.py",
        'return "bfloat16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "float32"',
        'return "float32"',
        (
            "tests/integration/test_config_model.py::test_precision_auto_is_bfloat16_only_where_the_cpu_does_it_natively",
        ),
        "precision = auto never uses a CPU's native bfloat16",
    ),
    Mutation(
        "decode-threads-zero-is-one",
        "daemon/config.py",
        "return self.decode_threads or max(1, os.cpu_count() or 1)",
        "return self.decode_threads or 1",
        ("tests/integration/test_config_model.py::test_decode_threads_zero_means_one_per_core",),
        "decode_threads = 0 gives one thread, not one per core",
    ),
    Mutation(
        "hub-unreachable-not-said",
        "daemon/embedders/torch.py",
        'raise ConnectionError("not in the local cache and the model hub cannot be reached") from None',
        "pass",
        ("tests/integration/test_cli.py::test_an_unreachable_model_hub_is_one_sentence",),
        "an unreachable hub is not named as the reason",
    ),
    # -- tests whose names promised more than they checked -------------------------------------
    Mutation(
        "older-save-rebuilt",
        "daemon/store/index.py",
        "if index.catalog_id is None or index.catalog_id != catalog.catalog_id or header.generation > generation:",
        "if True:",
        ("tests/unit/test_index.py::test_an_older_save_of_the_same_catalog_is_patched_to_match_it",),
        "an older save of the same catalog is rebuilt instead of patched",
    ),
    Mutation(
        "known-content-decoded",
        "daemon/ingest/loading.py",
        "        if known(result.digest):",
        "        if False:",
        ("tests/integration/test_imaging.py::test_known_content_is_hashed_but_not_decoded",),
        "content already in the catalog is decoded again",
    ),
    Mutation(
        "sandbox-probe-always-yes",
        "cli/unit.py",
        "return done.returncode == 0",
        "return True",
        ("tests/e2e/test_unit.py::test_sandbox_probe_follows_what_unshare_says",),
        "the sandbox probe ignores what unshare says",
    ),
    # -- changing the model without losing search (issue 15) --------------------------------------
    Mutation(
        "switch-keeps-catalog-identity",
        "daemon/store/nextvectors.py",
        'self.set_meta("catalog_id", uuid.uuid4().hex)',
        "pass",
        (CHANGE + "test_an_index_file_saved_before_the_switch_is_rebuilt_not_patched",),
        "an index file of the old vectors is patched after a switch to a model of the same width",
    ),
    Mutation(
        "search-ignores-switch",
        "daemon/search/query.py",
        "        with self._switch.shared():\n            self._require_images()\n            vectors",
        "        if True:\n            self._require_images()\n            vectors",
        (CHANGE + "test_searches_wait_for_the_switch_then_use_the_new_model",),
        "a search runs while catalog and index change model, mixing one model's query with the other's vectors",
    ),
    Mutation(
        "change-starts-over",
        "daemon/store/nextvectors.py",
        "if pending is not None and same_model(pending, (name, dim, fingerprint)):",
        "if False:",
        (CHANGE + "test_an_interrupted_change_goes_on_where_it_stopped",),
        "a restarted model change re-embeds everything again",
    ),
    Mutation(
        "change-old-first",
        "daemon/store/nextvectors.py",
        "/ 1000000000) DESC, ",
        "/ 1000000000) ASC, ",
        (CHANGE + "test_the_newest_photos_get_their_new_vectors_first",),
        "a model change re-embeds the oldest photos first",
    ),
    # -- filters: one rule each, as SQL and as Python (issue 20) ---------------------------------
    Mutation(
        "filter-side-is-the-longer",
        "daemon/search/filters.py",
        '"side": ("min(m.width, m.height)", lambda row: min(row.width, row.height)),',
        '"side": ("min(m.width, m.height)", lambda row: max(row.width, row.height)),',
        (FILTERS,),
        "a filter's match() disagrees with its clause(): the shorter side in SQL, the longer in Python",
    ),
    Mutation(
        "filter-folder-match-by-prefix",
        "daemon/search/filters.py",
        "return any(row.path.startswith(folder.rstrip(os.sep) + os.sep) for folder in self.folders)",
        "return any(row.path.startswith(folder) for folder in self.folders)",
        (FILTERS,),
        "--in checked in Python takes /lib/ab for inside /lib/a, where the catalog's path range does not",
    ),
    Mutation(
        "filter-date-end-inclusive",
        "daemon/search/filters.py",
        'if not (value >= bound if op == ">=" else value < bound):',
        'if not (value >= bound if op == ">=" else value <= bound):',
        (FILTERS,),
        "--before checked in Python lets its own instant through, where the catalog's clause does not",
    ),
    Mutation(
        "filter-camera-match-unfolded",
        "daemon/search/filters.py",
        'return (fold(self.text) or "") in _camera(row.make, row.model)',
        "return self.text in f\"{row.make or ''} {row.model or ''}\"",
        (FILTERS,),
        "--camera checked in Python is case-sensitive, where the catalog's selection is not",
    ),
    Mutation(
        "filter-date-selects-missing",
        "daemon/search/filters.py",
        "*([live] if live else [])]",
        "]",
        (FILTERS,),
        "a date filter selects a content whose only file is missing (its EXIF date decides without a live file)",
    ),
    # -- one rule, one place (issue 20) ----------------------------------------------------------
    Mutation(
        "is-under-shared-prefix",
        "daemon/paths.py",
        "path.startswith(folder.rstrip(os.sep) + os.sep)",
        "path.startswith(folder.rstrip(os.sep))",
        ("tests/unit/test_paths.py",),
        "a file in /pics-old counts as under /pics (search --in, dupes --in, deletes of a folder, roots)",
    ),
    Mutation(
        "unchanged-by-size-only",
        "daemon/store/records.py",
        "return (self.size, self.mtime_ns) == (stat.size, stat.mtime_ns)",
        "return self.size == stat.size",
        ("tests/unit/test_records.py",),
        "a file rewritten with the same size counts as unchanged and keeps its old vector",
    ),
    Mutation(
        "failed-file-never-retried-on-event",
        "daemon/store/records.py",
        'if indexed and self.status != "ok":',
        "if False:",
        ("tests/integration/test_engine.py::test_a_failed_file_waits_for_a_change_or_an_event_then_is_tried_again",),
        "a file made readable by chmod stays failed until its bytes change",
    ),
    Mutation(
        "failed-file-retried-by-every-reconcile",
        "daemon/store/records.py",
        "def unchanged(self, stat: FileStat, indexed: bool = False)",
        "def unchanged(self, stat: FileStat, indexed: bool = True)",
        ("tests/integration/test_engine.py::test_second_run_changes_nothing_and_does_not_retry_failures",),
        "every reconcile (each daemon start, each interval) reads every broken file again",
    ),
    Mutation(
        "changed-ignores-rows",
        "daemon/ingest/engine.py",
        "if record is None or not record.unchanged(stat):",
        "if True:",
        ("tests/integration/test_engine.py::test_changed_names_the_new_and_changed_wanted_files_below_a_folder",),
        "a folder renamed within the roots has every file read and hashed again",
    ),
    Mutation(
        "changed-path-excludes-from-the-walked-folder",
        "daemon/ingest/engine.py",
        "stats = [s for s in scan(path, self.filter, follow) if not self.filter.excluded_path(s.path, root)]",
        "stats = list(scan(path, self.filter, follow))",
        ("tests/integration/test_engine.py::test_changed_names_the_new_and_changed_wanted_files_below_a_folder",),
        "an exclude pattern with a / (relative to the root) lets in files of a folder that moved in",
    ),
    Mutation(
        "missing-root-never-named",
        "daemon/ingest/engine.py",
        "return root if root in self.missing_roots else None",
        "return None",
        ("tests/integration/test_engine.py::test_a_missing_root_is_named_for_paths_in_it_until_it_is_back",),
        "a file copied into a remounted root waits for the next periodic reconcile",
    ),
    # -- the first hour, tried again (issue 25) -------------------------------------------------
    Mutation(
        "socket-shared-by-every-library",
        "daemon/paths.py",
        'path = Path(runtime) / "imgd" / f"{state_key(state_dir)}.sock"',
        'path = Path(runtime) / "imgd" / "imgd.sock"',
        (
            "tests/e2e/test_two_libraries.py::test_each_state_folder_is_answered_by_its_own_daemon_and_a_mismatch_answers_directly",
        ),
        "one socket per user: a second library's daemon cannot start, and its commands reach the first's",
    ),
    Mutation(
        "reply-of-another-library-accepted",
        "daemon/api/facade.py",
        "if served is None or served == state_folder(self.config.state_dir):",
        "if True:",
        (
            "tests/e2e/test_two_libraries.py::test_each_state_folder_is_answered_by_its_own_daemon_and_a_mismatch_answers_directly",
        ),
        "a daemon serving another state folder answers for this one, silently",
    ),
    Mutation(
        "run-loads-the-model-before-the-lock",
        "daemon/service/run.py",
        "    lock.acquire()\n    opener: threading.Thread | None = None\n    try:\n        check_socket_free(config)\n",
        "    opener: threading.Thread | None = None\n    try:\n        check_socket_free(config)\n",
        (
            "tests/integration/test_first_hour.py::test_a_second_imgd_run_is_refused_by_the_lock_before_it_loads_the_model",
        ),
        "a second `imgd run` loads the model for seconds before learning the state folder is taken",
        also=(("daemon/service/run.py", "previous, lock=lock)", "previous, lock=None)"),),
    ),
    Mutation(
        "run-checks-the-socket-after-the-model",
        "daemon/service/run.py",
        "        check_socket_free(config)\n",
        "",
        (
            "tests/integration/test_first_hour.py::"
            "test_a_second_imgd_run_on_a_socket_another_daemon_answers_is_refused_before_the_model",
        ),
        "a daemon on a socket another answers loads the model first, then fails with no hint of the socket key",
    ),
    Mutation(
        "starting-daemon-shown-as-not-running",
        "daemon/service/library.py",
        "return int(pid) if holder == RUN and pid.isdigit() else None",
        "return None",
        (
            "tests/integration/test_first_hour.py::"
            "test_status_says_a_daemon_is_starting_while_it_holds_the_state_folder_and_does_not_answer_yet",
        ),
        "`imgd status` says `not running` while the daemon prepares its model",
    ),
    Mutation(
        "missing-in-folder-finds-nothing",
        "cli/options.py",
        "        if not os.path.isdir(path):\n",
        "        if False:\n",
        (
            "tests/integration/test_first_hour.py::test_a_folder_that_is_not_there_is_an_error_not_a_search_that_finds_nothing",
        ),
        "`--in /nonexistent` exits 1 (no match) where a bad path is exit 2",
    ),
    Mutation(
        "relative-model-path-is-a-hub-name",
        "daemon/embedders/torch.py",
        "if not local and looks_like_path(model):",
        'if not local and looks_like_path(model) and model.count("/") != 1:',
        ("tests/integration/test_first_hour.py::test_a_relative_model_path_is_a_folder_not_a_hub_name",),
        "`--model ./nomodel` is looked up on the hub, and the error speaks of the network",
    ),
    Mutation(
        "quiet-dupes-summary",
        "cli/output.py",
        "if summary is not None and not quiet(ctx):",
        "if summary is not None:",
        ("tests/integration/test_first_hour.py::test_quiet_dupes_prints_its_groups_and_no_summary",),
        "`imgd dupes -q` still prints its summary line",
    ),
    Mutation(
        "config-shows-the-default-model",
        "cli/config.py",
        "config = with_catalog_model(get_config(ctx))",
        "config = get_config(ctx)",
        ("tests/integration/test_first_hour.py::test_imgd_config_shows_the_model_in_effect_the_catalogs",),
        "`imgd config` prints the default model where the catalog's is the one in effect",
    ),
    Mutation(
        "no-version-option",
        "cli/main.py",
        '@click.version_option(package_name="imgd", prog_name="imgd", message="%(prog)s %(version)s")\n',
        "",
        ("tests/integration/test_first_hour.py::test_imgd_version_prints_the_version",),
        "`imgd --version` is an unknown option",
    ),
    Mutation(
        "dupes-taken-raw",
        "cli/dupes.py",
        "[render.dupes_record(group) for group in groups],",
        "groups,",
        (
            "tests/integration/test_first_hour.py::test_dupes_rows_give_taken_as_search_does_iso_8601_with_the_file_time_fallback",
        ),
        "`dupes --json` gives `taken` as the catalog's text, null without EXIF, unlike every other listing",
    ),
    Mutation(
        "scores-not-aligned",
        "cli/render.py",
        "return [text.rjust(width) for text in texts]",
        "return texts",
        ("tests/integration/test_first_hour.py::test_dupes_text_lines_up_its_columns_and_counts_in_words",),
        "a negative score shifts its line's columns",
    ),
    Mutation(
        "dupes-dimensions-not-padded",
        "cli/render.py",
        "{dims:<{dims_width}}",
        "{dims}",
        ("tests/integration/test_first_hour.py::test_dupes_text_lines_up_its_columns_and_counts_in_words",),
        "short dimensions (80x80) shift the size and path columns",
    ),
    Mutation(
        "plural-always-s",
        "cli/render.py",
        'return f"{count} {noun}" if count == 1 else f"{count} {noun}s"',
        'return f"{count} {noun}s"',
        ("tests/integration/test_first_hour.py::test_dupes_text_lines_up_its_columns_and_counts_in_words",),
        "`1 images besides the keepers`",
    ),
    Mutation(
        "preview-swallows-the-next-word",
        "cli/group.py",
        "        return super().parse_args(ctx, preview_equals(args))",
        "        return super().parse_args(ctx, args)",
        ("tests/e2e/test_preview.py::test_a_preview_mode_is_never_a_search_term",),
        "`--preview block` searches for 'block' with a bare --preview, and `--preview=block` reaches the search",
    ),
    Mutation(
        "preview-old-spelling-searched",
        "cli/group.py",
        "            if mode := difflib.get_close_matches(following, PREVIEW_MODES, n=1, cutoff=0.8):",
        "            if mode := []:",
        ("tests/e2e/test_preview.py::test_a_preview_mode_is_never_a_search_term",),
        "`imgd search red --preview block` quietly searches for 'red block'",
    ),
    Mutation(
        "moved-onto-itself",
        "daemon/ingest/outcomes.py",
        "        if held and stat.path in held:",
        "        if False:",
        (LIVE + "test_a_folder_moved_out_and_back_is_never_logged_as_moved_onto_itself",),
        "a folder moved out of the library and back logs `moved A -> A` for each of its files",
    ),
    Mutation(
        "ctrl-c-ignored-in-a-finaliser",
        "cli/group.py",
        "            signal.setitimer(signal.ITIMER_REAL, RETRY_INTERRUPT_S)\n        else:",
        "            pass\n        else:",
        (
            "tests/integration/test_first_hour.py::test_ctrl_c_landing_in_a_finaliser_while_the_model_loads_still_ends_imgd_index",
        ),
        "a Ctrl-C that lands in a __del__ while the model loads is swallowed, and the index runs on to exit 0",
    ),
    Mutation(
        "gallery-opens-blank",
        "web/static/app.js",
        '  else if (params.has("alerts")) savedSearches();\n  else recent();\n',
        '  else if (params.has("alerts")) savedSearches();\n',
        ("tests/e2e/test_web.py::test_the_gallery_opens_on_the_newest_pictures_with_their_whole_names",),
        "the gallery opens on an empty page until something is searched for",
    ),
    Mutation(
        "gallery-names-cut",
        "web/static/style.css",
        ".card figcaption { display: flex; flex-direction: column;",
        ".card figcaption { display: flex;",
        ("tests/e2e/test_web.py::test_the_gallery_opens_on_the_newest_pictures_with_their_whole_names",),
        "the name shares its line with the score and the button: IMG_20230110_120000.jpg shows as 'IMG_…'",
    ),
    Mutation(
        "gallery-min-score-clipped",
        "web/static/style.css",
        "#filters .narrow { width: 8.5em; }",
        "#filters .narrow { width: 6.5em; }",
        ("tests/e2e/test_web.py::test_the_gallery_opens_on_the_newest_pictures_with_their_whole_names",),
        "the min score box cuts its own placeholder",
    ),
    Mutation(
        "gallery-relative-folder-searched",
        "web/backend.py",
        "    if not os.path.isabs(folder):\n",
        "    if False:\n",
        ("tests/e2e/test_web.py::test_the_in_folder_box_takes_a_whole_path_that_is_there_or_says_why_not",),
        "a relative 'in folder' names the gallery's working folder, and the search silently finds nothing",
    ),
    Mutation(
        "gallery-missing-folder-searched",
        "web/backend.py",
        "    if not os.path.isdir(folder):\n",
        "    if False:\n",
        ("tests/e2e/test_web.py::test_the_in_folder_box_takes_a_whole_path_that_is_there_or_says_why_not",),
        "a folder that is not there is searched, and nothing is found, where the CLI says there is no such folder",
    ),
    Mutation(
        "gallery-says-kb",
        "web/static/app.js",
        'const units = ["B", "KiB", "MiB", "GiB"];',
        'const units = ["B", "KB", "MB", "GB"];',
        ("tests/e2e/test_web.py::test_a_person_reviews_duplicates_keeper_first_and_opens_one",),
        "the gallery says KB where the command line says KiB for the same file",
    ),
    Mutation(
        "readme-indexes-pictures-only",
        "README.md",
        '.venv/bin/imgd index "$PICS"',
        ".venv/bin/imgd index ~/Pictures",
        (
            "tests/e2e/test_readme.py::test_the_main_job_indexes_the_folder_the_user_names_where_there_is_no_pictures_folder",
        ),
        "the README's first command fails for a newcomer without ~/Pictures",
    ),
    Mutation(
        "hub-error-without-offline-route",
        "daemon/embedders/torch.py",
        '"random-weight test model as the README\'s Set up says (python tests/clipkit.py ~/imgd-models/tiny-clip)."',
        '""',
        ("tests/integration/test_cli.py::test_an_unreachable_model_hub_is_one_sentence",),
        "a machine without the hub is told to copy a model over, never that it can try imgd offline",
    ),
    Mutation(
        "screenshots-with-the-random-model",
        "docs/screenshots.py",
        'QUERY = "a red circle"',
        'QUERY = "sunset by the sea"',
        (
            "tests/integration/test_shapes_model.py::test_the_readme_screenshots_show_the_shapes_model_answering_a_query_it_knows",
        ),
        "the README's screenshots ask what the model does not know, and search looks broken",
    ),
    # -- the house by role: imports flow down, the wheel holds every room (issue 20) ---------------
    Mutation(
        "engine-imports-click",
        "daemon/verbosity.py",
        "from __future__ import annotations\n",
        "from __future__ import annotations\n\nimport click  # noqa: F401\n",
        (IMPORTS + "test_the_engine_never_imports_click_the_cli_or_the_gallery",),
        "the engine imports the CLI's toolkit",
    ),
    Mutation(
        "import-cycle-in-a-function",
        "daemon/store/migrations.py",
        "def current_version(conn: sqlite3.Connection) -> int:\n",
        "def current_version(conn: sqlite3.Connection) -> int:\n    from .catalog import Catalog  # noqa: F401\n\n",
        (IMPORTS + "test_there_is_no_import_cycle",),
        "a function-level import closes a cycle (catalog -> migrations -> catalog)",
    ),
    Mutation(
        "store-imports-ingest",
        "daemon/store/index.py",
        "from .catalog import Catalog, ThreadReaders\n",
        "from ..ingest import imaging  # noqa: F401\nfrom .catalog import Catalog, ThreadReaders\n",
        (IMPORTS + "test_imports_flow_down_the_layers",),
        "the store reaches up into ingest",
    ),
    Mutation(
        "wheel-without-a-subpackage",
        "pyproject.toml",
        '    "imgd.daemon.search",\n',
        "",
        (
            "tests/integration/test_wheel.py::test_the_wheel_holds_every_module_of_every_package_folder_and_the_static_files",
        ),
        "a subpackage left out of pyproject.toml's list: an editable install still finds it, the wheel does not",
    ),
    # -- requests carry what callers already hold (issue 20, point 4) ------------------------------
    Mutation(
        "status-poll-regroups",
        "daemon/service/handlers.py",
        'return {"status": context.status(duplicates=request.duplicates)}',
        'return {"status": context.status(duplicates=True)}',
        (STATUS_COST,),
        "every status, the gallery's 2 s poll included, regroups the duplicates and stats every member file",
    ),
    Mutation(
        "gallery-status-asks-duplicates",
        "web/backend.py",
        'info = dict(self._call(StatusRequest())["status"])',
        'info = dict(self._call(StatusRequest(duplicates=True))["status"])',
        (STATUS_COST,),
        "the gallery's status poll asks for the duplicates summary it never shows",
    ),
    Mutation(
        "status-summary-regrouped-each-time",
        "daemon/service/dupetracker.py",
        "if kept is not None and kept[0] == key:",
        "if False:",
        (STATUS_COST,),
        "`imgd status` regroups the duplicates on every call, the library unchanged",
    ),
    Mutation(
        "status-summary-never-refreshed",
        "daemon/service/dupetracker.py",
        "key = (threshold, self._version, *library_state(catalog))",
        "key = (threshold,)",
        (STATUS_COST,),
        "`imgd status` keeps showing the duplicates of a library that has changed since",
    ),
    Mutation(
        "similar-by-id-ignored",
        "daemon/search/query.py",
        "            if request.content_id is not None:\n",
        "            if False:\n",
        (
            "tests/e2e/test_web.py::test_more_like_this_leaves_the_picked_image_and_its_copies_out",
            "tests/e2e/test_web.py::test_similar_and_dupes_name_their_files_without_a_catalog_read_per_file",
        ),
        "`similar` by content id (the gallery's) is answered as a path, which it does not have",
    ),
    Mutation(
        "dupe-member-ids-dropped",
        "daemon/search/dupes.py",
        '            "content_id": self.content_id,\n',
        "",
        ("tests/e2e/test_web.py::test_similar_and_dupes_name_their_files_without_a_catalog_read_per_file",),
        "duplicate members come without their content id: the gallery cannot name them without the catalog",
    ),
    Mutation(
        "cli-errors-name-fields",
        "cli/wording.py",
        "return exc.worded(FLAGS) if isinstance(exc, RequestError) else str(exc)",
        "return str(exc)",
        ("tests/integration/test_cli.py::test_request_errors_name_the_flags_the_user_typed",),
        "the command line says a request field (after) where the user typed a flag (--after)",
    ),
    Mutation(
        "gallery-errors-name-fields",
        "web/backend.py",
        "text = (exc.worded(CONTROLS) if isinstance(exc, RequestError) else str(exc)).strip()",
        "text = str(exc).strip()",
        ("tests/e2e/test_web.py::test_request_errors_name_the_page_controls_never_a_command_line_flag",),
        "the gallery names request fields instead of its own controls",
    ),
    # -- vector ids apart from content ids (issue 20, point 8) ----------------------------------------
    Mutation(
        "search-vector-id-as-content",
        "daemon/search/query.py",
        "content_id = owners.get(vector_id)",
        "content_id = vector_id",
        ("tests/integration/test_query.py",),
        "search takes the index's vector ids for content ids: wrong files, or none, answer",
    ),
    Mutation(
        "dupes-tracker-vector-ids-as-contents",
        "daemon/service/run.py",
        "owners=lambda vector_ids: self.searcher.catalog.contents_of(vector_ids),",
        "owners=None,",
        ("tests/integration/test_dupes.py::test_daemon_keeps_groups_current_and_answers_like_the_direct_path",),
        "the daemon's duplicate pairs name vectors where groups need contents",
    ),
    Mutation(
        "migration-renumbers-vectors",
        "daemon/store/migrations.py",
        "INSERT INTO vectors(id, content_id, at, vector) SELECT id, id, 0, vector FROM contents;",
        "INSERT INTO vectors(content_id, at, vector) SELECT id, 0, vector FROM contents ORDER BY id DESC;",
        (
            "tests/integration/test_kept_catalogs.py::test_a_kept_catalog_upgrades_to_vector_ids_in_place_and_answers_as_before",
        ),
        "the upgrade gives vectors new ids: every saved index file names the wrong vectors and is rebuilt",
    ),
    Mutation(
        "reader-sees-old-schema-raw",
        "daemon/store/catalog.py",
        "                migrations.read_as_latest(self.conn, self.schema_version)",
        "                pass",
        (
            "tests/integration/test_kept_catalogs.py::test_a_reader_answers_an_unmigrated_kept_catalog_as_its_own_release_did",
        ),
        "a search without the daemon over a catalog of an older schema fails: no vectors table",
    ),
    # -- scale (issue 21) ---------------------------------------------------------------------------
    Mutation(
        "orphans-scanned-per-event",
        "daemon/ingest/orphans.py",
        "unreferenced = set(self.catalog.orphans_among({*candidates, *(released or {}), *self._released}))",
        "unreferenced = set(self.catalog.orphan_ids())",
        (
            "tests/integration/test_engine.py::"
            "test_single_changes_look_only_at_the_contents_they_release_never_the_whole_library",
        ),
        "every removal, move and edit scans every content for orphans: an hour to delete 10k files at 1M",
    ),
    Mutation(
        "move-over-file-keeps-old-content",
        "daemon/ingest/engine.py",
        "candidates = [record.content_id for record in touched if record and record.content_id is not None]",
        "candidates = []",
        (
            "tests/integration/test_engine.py::"
            "test_single_changes_look_only_at_the_contents_they_release_never_the_whole_library",
        ),
        "a rename over an existing file leaves that file's old content (and its vector) in the catalog",
    ),
    # -- the runtimes: OpenVINO's cache, auto's measured choice, the export in a child (issue 22) --
    Mutation(
        "openvino-cache-served-unprobed",
        "daemon/embedders/openvino.py",
        "                if score >= self.threshold:\n                    self._save(cache, note, key)",
        "                if True:\n                    self._save(cache, note, key)",
        (
            "tests/integration/test_backends.py::test_cached_tower_that_misses_the_recorded_probe_is_compiled_again_never_served",
        ),
        "a cached compiled tower is served without checking it still gives the recorded probe vector",
    ),
    Mutation(
        "openvino-compile-unverified",
        "daemon/embedders/openvino.py",
        "            self._verify(path, threads, tower, session)\n",
        "",
        ("tests/integration/test_backends.py::test_openvino_that_disagrees_with_fp32_is_refused_and_not_cached",),
        "a freshly compiled tower serves (and is cached) without agreeing with ONNX Runtime fp32",
    ),
    Mutation(
        "openvino-cache-never-written",
        "daemon/embedders/openvino.py",
        "        self._save(cache, note, key)\n",
        "",
        (
            "tests/integration/test_backends.py::test_openvino_serves_the_onnx_backends_vectors_and_caches_its_compiled_towers",
        ),
        "every start compiles the towers again (seconds for ViT-B/32) instead of loading the cache",
    ),
    Mutation(
        "auto-not-keyed-by-library-version",
        "daemon/embedders/choice.py",
        '        "openvino": version("openvino"),\n',
        "",
        ("tests/integration/test_backends.py::test_auto_measures_once_then_again_when_a_key_part_changes",),
        "a new OpenVINO keeps the choice measured with the old one",
    ),
    Mutation(
        "auto-ignores-fidelity",
        "daemon/embedders/choice.py",
        "if worst < MIN_COSINE or not np.array_equal(ranked, np.arange(len(reference))):",
        "if False:",
        ("tests/integration/test_backends.py::test_auto_leaves_out_a_backend_whose_vectors_disagree",),
        "auto serves the fastest runtime even when its vectors disagree with fp32",
    ),
    Mutation(
        "auto-no-fallback",
        "daemon/embedders/choice.py",
        "    for i, chosen in enumerate(order):",
        "    for i, chosen in enumerate(order[:1]):",
        (
            "tests/integration/test_backends.py::test_recorded_backend_that_fails_to_load_gives_way_to_the_next_with_one_line",
        ),
        "a recorded backend that fails to load is an error instead of giving way to the next",
    ),
    Mutation(
        "export-in-the-serving-process",
        "daemon/embedders/prepare.py",
        "IN_CHILD = True",
        "IN_CHILD = False",
        ("tests/integration/test_backends.py::test_first_run_exports_in_a_child_and_never_imports_torch",),
        "a daemon that exports on its first run keeps torch loaded (1.7 GB) for its whole life",
    ),
    # -- saved searches and events (issue 24) --
    Mutation(
        "alert-bus-forgets-drops",
        "daemon/service/events.py",
        "                self._dropped += 1",
        "                pass",
        (
            "tests/unit/test_alert_parts.py::test_a_stalled_reader_is_told_how_many_it_missed_and_never_slows_the_publisher",
        ),
        "a reader that fell behind is never told how many events it missed",
    ),
    Mutation(
        "alert-move-overwrites",
        "daemon/service/actions.py",
        "        _rename_noreplace(src, dest)",
        "        os.replace(src, dest)",
        ("tests/unit/test_alert_parts.py::test_file_actions_never_overwrite_and_a_move_is_a_rename",),
        "a saved search's move replaces a file of the same name in the folder",
    ),
    Mutation(
        "alert-move-is-a-copy",
        "daemon/service/actions.py",
        "        _rename_noreplace(src, dest)",
        "        _copy_new(src, dest)\n        os.unlink(src)",
        (
            "tests/unit/test_alert_parts.py::test_file_actions_never_overwrite_and_a_move_is_a_rename",
            "tests/e2e/test_alerts.py::test_a_saved_search_moves_a_red_circle_not_a_blue_square_and_keeps_its_vector",
        ),
        "a move is a copy and a delete: the daemon sees a new file and a removal, not a move",
    ),
    Mutation(
        "alert-hook-children-survive",
        "daemon/service/actions.py",
        "            os.killpg(proc.pid, signal.SIGKILL)",
        "            proc.kill()",
        (
            "tests/unit/test_alert_parts.py::test_a_hook_gets_the_path_and_score_and_a_hanging_one_is_killed_at_its_limit",
        ),
        "a hook past its limit is killed but its children run on, holding its output open",
    ),
    Mutation(
        "alert-hook-without-path",
        "daemon/service/actions.py",
        "            [*command, path],",
        "            list(command),",
        (
            "tests/unit/test_alert_parts.py::test_a_hook_gets_the_path_and_score_and_a_hanging_one_is_killed_at_its_limit",
        ),
        "a hook is not told which picture matched",
    ),
    Mutation(
        "alert-threshold-ignored",
        "daemon/service/alerts.py",
        "np.flatnonzero(best >= self.thresholds)",
        "np.flatnonzero(best >= -1.0)",
        (
            "tests/unit/test_alert_parts.py::test_the_matcher_scores_every_saved_search_at_once_and_a_video_at_its_best_frame",
            "tests/e2e/test_alerts.py::test_a_saved_search_moves_a_red_circle_not_a_blue_square_and_keeps_its_vector",
        ),
        "every saved search matches every new picture",
    ),
    Mutation(
        "alert-video-first-frame",
        "daemon/service/alerts.py",
        "best = (np.asarray(vectors, dtype=np.float32) @ self.vectors.T).max(axis=0)",
        "best = (np.asarray(vectors, dtype=np.float32) @ self.vectors.T)[0]",
        (
            "tests/unit/test_alert_parts.py::test_the_matcher_scores_every_saved_search_at_once_and_a_video_at_its_best_frame",
        ),
        "a video matches on its first frame, not its best",
    ),
    Mutation(
        "alert-filters-unchecked",
        "daemon/store/alerts.py",
        "f\"WHERE f.path = ? AND f.status = 'ok' AND {sql}\"",
        "f\"WHERE f.path = ? AND f.status = 'ok' AND ({sql} OR 1)\"",
        ("tests/unit/test_alert_parts.py::test_filters_are_checked_on_the_one_files_row",),
        "a saved search's filters let every new picture through",
    ),
    Mutation(
        "alert-log-grows",
        "daemon/store/alerts.py",
        "(row.lastrowid - LOG_KEEP,)",
        "(row.lastrowid - LOG_KEEP * 100,)",
        ("tests/unit/test_alert_parts.py::test_saved_searches_and_their_log_round_trip_and_the_log_stays_short",),
        "the action log grows without bound",
    ),
    Mutation(
        "alert-old-catalog-unreadable",
        "daemon/store/migrations.py",
        "    if version < 5:  # no saved searches yet",
        "    if version < 0:  # no saved searches yet",
        ("tests/unit/test_alert_parts.py::test_an_older_catalog_opened_read_only_has_no_saved_searches",),
        "`imgd alert list` on an older catalog, opened read-only, fails on the missing tables",
    ),
    Mutation(
        "alert-gallery-shows-failures",
        "web/backend.py",
        'record = self.catalog.get_file(entry["path"]) if entry["outcome"] == "ok" else None',
        'record = self.catalog.get_file(entry["path"])',
        ("tests/e2e/test_web.py::test_saved_searches_are_listed_with_their_recent_matches_by_id_and_nothing_to_run",),
        "the gallery shows a picture a saved search failed on as one of its matches",
    ),
    # -- the whole library: RAW, AVIF/JXL, pairs (issue 23, stills) ---------------------------------
    Mutation(
        "pairs-listed-twice",
        "daemon/ingest/pairing.py",
        "kind in indexed and s.path not in paired]",
        "kind in indexed]",
        (SIBLINGS + "test_a_raw_and_jpeg_pair_is_one_photo_listed_once_through_the_jpeg",),
        "a RAW beside its JPEG is embedded and listed as a second photo",
    ),
    Mutation(
        "raw-embedded-though-paired",
        "daemon/ingest/engine.py",
        "            if path in paired or not self.filter.is_indexed_name(path):",
        "            if not self.filter.is_indexed_name(path):",
        (SIBLINGS + "test_a_jpeg_arriving_beside_an_indexed_raw_takes_it_over",),
        "the RAW's own event embeds it again although its JPEG claims it",
    ),
    Mutation(
        "lone-raw-not-freed",
        "daemon/ingest/pairing.py",
        "                            freed.append(member)",
        "                            pass",
        (SIBLINGS + "test_deleting_the_jpeg_makes_the_raw_a_lone_photo_that_is_embedded",),
        "deleting the JPEG of a pair leaves its RAW unsearchable",
    ),
    Mutation(
        "sibling-not-named",
        "daemon/search/query.py",
        '                row["sibling"] = siblings[path][0]',
        "                pass",
        (SIBLINGS + "test_a_raw_and_jpeg_pair_is_one_photo_listed_once_through_the_jpeg",),
        "a pair's listing does not say where its RAW or video is",
    ),
    Mutation(
        "pair-rule-case-sensitive",
        "daemon/ingest/companions.py",
        "return folder, os.path.splitext(name)[0].casefold()",
        "return folder, os.path.splitext(name)[0]",
        (SIBLINGS + "test_the_pairing_rule",),
        "IMG_1.CR2 and img_1.jpg are not seen as one photo",
    ),
    Mutation(
        "folder-move-loses-pairs",
        "daemon/ingest/engine.py",
        "                self.catalog.move_siblings_under(src, dest)  # pairs live in one folder: they move whole\n",
        "",
        (SIBLINGS + "test_renames_make_and_break_pairs",),
        "a renamed folder's pairs are forgotten: its RAWs and videos are no longer named",
    ),
    Mutation(
        "reconcile-keeps-stale-pairs",
        "daemon/store/siblings.py",
        "        with self.transaction():\n"
        '            self.conn.execute("DELETE FROM siblings WHERE path >= ? AND path < ?", (lo, hi))\n',
        "        with self.transaction():\n",
        (SIBLINGS + "test_a_pair_made_while_nobody_watched_is_found_by_the_next_reconcile",),
        "a pair broken while nobody watched stays recorded after the reconcile",
    ),
    Mutation(
        "older-reader-without-siblings",
        "daemon/store/migrations.py",
        "    if version < 6:  # no pairs were known before schema 6",
        "    if version < 0:",
        (
            "tests/integration/test_migrations.py::test_a_reader_searches_an_unmigrated_catalog_and_says_why_filters_wait",
        ),
        "a search straight from an older catalog (read-only, not upgraded) fails on the missing table",
    ),
    Mutation(
        "raw-preview-ignored",
        "daemon/ingest/raw.py",
        "image, preview_meta = _preview(path, raw, max_pixels, min_side, picture)",
        "image, preview_meta = None, None",
        (RAW + "test_a_large_enough_embedded_preview_is_used_instead_of_demosaicing",),
        "every RAW is demosaiced, though the camera embedded a preview worth using",
    ),
    Mutation(
        "raw-small-preview-used",
        "daemon/ingest/raw.py",
        "        if min(size) < min(min_side, MIN_PREVIEW_SIDE):",
        "        if False:",
        (RAW + "test_a_preview_too_small_to_embed_well_falls_back_to_the_demosaic",),
        "a 160-pixel thumbnail is embedded in place of the picture",
    ),
    Mutation(
        "raw-bomb-unchecked",
        "daemon/ingest/raw.py",
        "        if width * height > max_pixels:",
        "        if False:",
        (RAW + "test_bad_raws_fail_with_one_line_each_and_the_run_goes_on",),
        "a RAW declaring 3.6 gigapixels is handed to LibRaw to unpack",
    ),
    # -- scale: removals and moves in bulk (issue 21) ----------------------------------------------------
    Mutation(
        "removal-rechecks-held",
        "daemon/ingest/orphans.py",
        "unreferenced = set(self.catalog.orphans_among({*candidates, *(released or {})}))",
        "unreferenced = set(self.catalog.orphans_among({*candidates, *(released or {}), *self._released}))",
        (
            "tests/integration/test_engine.py::"
            "test_removals_in_a_row_look_only_at_what_each_released_and_drop_their_contents_together",
        ),
        "each of rm -rf's 10k events re-checks every content the earlier ones left held: quadratic in the folder",
    ),
    Mutation(
        "held-dropped-one-index-removal-each",
        "daemon/ingest/orphans.py",
        "if recheck_held or now >= self._expire_at:",
        "if True:",
        (
            "tests/integration/test_engine.py::"
            "test_removals_in_a_row_look_only_at_what_each_released_and_drop_their_contents_together",
        ),
        "during a long removal each event drops its expired content with an index removal that scans every id",
    ),
    Mutation(
        "held-expiry-unverified",
        "daemon/ingest/orphans.py",
        "expired = self.catalog.orphans_among(expired) if expired else []",
        "pass",
        ("tests/integration/test_engine.py::test_a_held_content_found_again_beside_a_removal_is_kept",),
        "a content found again at a new path is dropped by a removal in the same batch: its file points at nothing",
    ),
    Mutation(
        "removals-one-at-a-time",
        "daemon/ingest/worker.py",
        "                deletes.append(change)\n",
        "                self._forget([change])\n",
        ("tests/integration/test_worker.py::test_removals_queued_together_are_applied_in_one_call",),
        "rm -rf of 10k files costs 10k transactions and orphan checks instead of a few batches",
    ),
    Mutation(
        "folder-move-files-rehashed",
        "daemon/ingest/watcher.py",
        "        if event.is_synthetic:\n",
        "        if False:\n",
        ("tests/integration/test_live.py::test_a_moved_folder_reads_none_of_its_files_again",),
        "mv of a 10k-file folder settles and re-reads every file in it as if written anew",
    ),
    Mutation(
        "pairs-blocked-unstoppable",
        "daemon/search/pairs.py",
        "        if stopped():\n            return _joined([]), _joined([])\n        members = member_order",
        "        members = member_order",
        ("tests/integration/test_dupes.py::test_a_stopped_pair_join_skips_the_blocks_not_yet_begun",),
        "a SIGTERM during the duplicates pass waits for every queued block: minutes at 1M, then SIGKILL",
    ),
    Mutation(
        "pairs-exact-unstoppable",
        "daemon/search/pairs.py",
        "        if stopped():\n            return np.empty(0, np.int64), np.empty(0, np.int64)\n",
        "",
        ("tests/integration/test_dupes.py::test_a_stopped_pair_join_skips_the_blocks_not_yet_begun",),
        "a SIGTERM during a small library's duplicates pass waits for every block",
    ),
    Mutation(
        "stopped-dupes-pass-serves-partial-pairs",
        "daemon/service/dupetracker.py",
        '            self.error = "stopped before the first pass was done"\n            return\n',
        "            pass\n",
        ("tests/integration/test_dupes.py::test_a_stopped_pair_join_skips_the_blocks_not_yet_begun",),
        "a pass cut short by a stop serves its partial pairs as the library's duplicates",
    ),
    Mutation(
        "index-close-waits-for-the-round",
        "daemon/store/index.py",
        "            builder.join(wait)\n",
        "            builder.join()\n",
        ("tests/unit/test_index.py::test_a_bounded_close_leaves_a_build_stuck_in_one_round_and_it_swaps_nothing_in",),
        "SIGTERM during the start-up index build waits out a k-means round: tens of seconds at 1M, then SIGKILL",
    ),
    # -- the runtimes, round 2: OpenVINO's own model cache (issue 22) --
    Mutation(
        "openvino-recompile-unverified",
        "daemon/embedders/openvino.py",
        "            if from_cache:\n",
        "            if True:\n",
        (
            "tests/integration/test_backends.py::"
            "test_damaged_or_missing_compiled_cache_is_rebuilt_and_reverified[garbage]",
        ),
        "a blob OpenVINO would not load is compiled anew inside compile_model and served without the fp32 check",
    ),
    Mutation(
        "openvino-earlier-blob-file-kept",
        "daemon/embedders/openvino.py",
        "            cache.unlink(missing_ok=True)\n",
        "            pass\n",
        (
            "tests/integration/test_backends.py::"
            "test_damaged_or_missing_compiled_cache_is_rebuilt_and_reverified[earlier-release]",
        ),
        "a state folder from the release that kept one blob file cannot serve OpenVINO any more",
    ),
    Mutation(
        "openvino-verify-opens-onnx-runtime",
        "daemon/embedders/openvino.py",
        "        recorded = tower.probe_reference()\n",
        "        recorded = None\n",
        (
            "tests/integration/test_backends.py::"
            "test_a_fresh_compile_is_checked_on_the_exports_fp32_vectors_without_onnx_runtime[recorded]",
        ),
        "every OpenVINO compile opens an ONNX Runtime session for its reference: seconds more on a first run",
    ),
    Mutation(
        "cuda-silently-on-the-cpu",
        "daemon/embedders/runtime.py",
        "    if session.get_providers()[0] != providers[0]:",
        "    if False:",
        ("tests/integration/test_backends.py::test_a_gpu_candidate_that_does_not_load_is_left_out_and_the_cpu_serves",),
        "onnxruntime-gpu without a working CUDA runs on the CPU under the name of a GPU candidate",
    ),
    Mutation(
        "gpu-pick-not-opened-at-load",
        "daemon/embedders/choice.py",
        "                embedder.encode_images([])  # a GPU",
        "                pass  # a GPU",
        ("tests/integration/test_backends.py::test_a_recorded_gpu_pick_that_fails_to_open_gives_way_to_the_cpu",),
        "a recorded GPU that went away fails the first picture instead of giving way to the CPU",
    ),
    Mutation(
        "openvino-numbered-gpus-missed",
        "daemon/embedders/devices.py",
        '        if name.split(".")[0] == "GPU":',
        '        if name == "GPU":',
        ("tests/unit/test_devices.py::test_each_openvino_gpu_is_a_candidate_at_its_own_precision",),
        "a machine with two GPUs (GPU.0, GPU.1) measures neither",
    ),
    Mutation(
        "auto-falls-back-to-torch",
        "daemon/embedders/__init__.py",
        '            raise ModelUnavailable(\n                f"cannot run model',
        "            return load_embedder(model, device, precision, batch_size, 'torch', state_dir, text_model)\n"
        '            raise ModelUnavailable(\n                f"cannot run model',
        ("tests/integration/test_embedders.py::test_export_that_disagrees_with_torch_is_refused",),
        "auto loads torch into a serving process (1.7 GB for its life): the issue says torch runs only when named",
    ),
    Mutation(
        "auto-measures-holding-every-tower",
        "daemon/embedders/choice.py",
        "            embedder.release_images()\n        except (OnnxUnavailable",
        "        except (OnnxUnavailable",
        ("tests/integration/test_backends.py::test_auto_serves_the_fastest_measured_backend_and_records_why",),
        "the first run holds every candidate's image tower at once: 1.45 GB daemon RSS for ViT-B/32",
    ),
    Mutation(
        "auto-measured-in-the-serving-process",
        "daemon/embedders/exportchild.py",
        '            _measure(model, root, manifest["fingerprint"])\n',
        "            pass\n",
        ("tests/integration/test_backends.py::test_first_run_exports_in_a_child_and_never_imports_torch",),
        "the first-run daemon loads every candidate runtime to measure them and keeps the losers mapped",
    ),
    # Places (issue 26): the reverse geocoder, the place filters, their input.
    Mutation(
        "places-no-district-rule",
        "daemon/store/places.py",
        "TOWN_KM = 8.0",
        "TOWN_KM = 0.0",
        ("tests/unit/test_geocoder.py::test_a_position_is_named_by_its_city",),
        "a photo in Lisbon's Belem is named after the district the table lists, not after Lisbon",
    ),
    Mutation(
        "places-coarse-cubes-unused",
        "daemon/store/places.py",
        "        if len(rest):",
        "        if False:",
        ("tests/unit/test_geocoder.py::test_a_position_is_named_by_its_city",),
        "a photo more than 17 km from every city gets no place although one lies within 150 km",
    ),
    Mutation(
        "near-least-populous",
        "daemon/store/places.py",
        "row = max(rows, key=lambda i: (self.population[i], -i))",
        "row = min(rows, key=lambda i: (self.population[i], -i))",
        ("tests/unit/test_geocoder.py::test_a_city_is_found_by_any_spelling_and_the_most_populous_wins",),
        "--near Portland takes some small Portland, not the most populous",
    ),
    Mutation(
        "near-box-ignores-the-antimeridian",
        "daemon/search/near.py",
        "        if west < -180:",
        "        if False:",
        ("tests/unit/test_geocoder.py::test_clause_and_match_agree",),
        "--near a place by the 180th meridian misses the photos on its other side",
    ),
    Mutation(
        "near-wrong-earth",
        "daemon/search/near.py",
        "math.cos(min(math.pi, self.km / places.EARTH_KM))",
        "math.cos(min(math.pi, self.km / 6000))",
        ("tests/unit/test_geocoder.py::test_near_is_the_great_circle_distance",),
        "--within measures a distance other than the one along the earth's surface",
    ),
    Mutation(
        "country-filter-passes-all",
        "daemon/search/near.py",
        'return "m.country = ?", [self.code]',
        'return "m.country IS NOT ?", [self.code]',
        ("tests/unit/test_geocoder.py::test_clause_and_match_agree",),
        "--country selects the photos of every other country",
    ),
    Mutation(
        "within-default-too-far",
        "daemon/protocol.py",
        "NEAR_KM = 25.0",
        "NEAR_KM = 400.0",
        ("tests/integration/test_places.py::test_near_a_city_lists_its_photos_and_not_the_next_citys",),
        "--near Lisbon lists the Porto photos too",
    ),
    Mutation(
        "within-zero-accepted",
        "daemon/protocol.py",
        "if not math.isfinite(km) or km <= 0:",
        "if not math.isfinite(km):",
        ("tests/unit/test_geocoder.py::test_a_radius_is_kilometres_above_zero",),
        "a negative or zero --within is taken instead of one sentence and exit 2",
    ),
    Mutation(
        "position-off-the-globe",
        "daemon/protocol.py",
        "if not (-90 <= lat <= 90 and -180 <= lon <= 180):",
        "if not (lat == lat and lon == lon):",
        ("tests/unit/test_geocoder.py::test_a_malformed_position_is_one_sentence",),
        "--near 95,10 searches around a point that is not on the globe",
    ),
    Mutation(
        "places-not-backfilled",
        "cli/index.py",
        "                library.engine.place_all(progress)",
        "                pass",
        (
            "tests/integration/test_places.py::"
            "test_an_existing_catalog_gets_places_from_its_stored_gps_without_reading_files",
        ),
        "a catalog from before places never names the places of the photos it holds",
    ),
    Mutation(
        "place-column-never-shown",
        "cli/render.py",
        "    if places:\n        lines = [",
        "    if False:\n        lines = [",
        ("tests/integration/test_places.py::test_the_text_output_shows_places_when_asked_or_filtered",),
        "--places and --near print no place in the text output",
    ),
    # -- videos (issue 23, the video half) ----------------------------------------------------
    Mutation(
        "video-frames-counted-as-items",
        "daemon/search/query.py",
        "if content_id is None or content_id in exclude or content_id in seen:",
        "if content_id is None or content_id in exclude:",
        ("tests/integration/test_video_search.py::test_frames_never_crowd_out_photos_k_counts_items",),
        "a video's frames each take a place of -k: one video fills the answer and crowds photos out",
    ),
    Mutation(
        "video-every-frame-decoded",
        "daemon/ingest/video.py",
        'stream.codec_context.skip_frame = "NONKEY" if keyframes else "DEFAULT"',
        'stream.codec_context.skip_frame = "DEFAULT"',
        (VIDEO_DECODE + "test_samples_are_keyframes_where_keyframes_lie_within_half_a_step",),
        "every frame is decoded where keyframes would do: samples land between keyframes, a minute costs 30x",
    ),
    Mutation(
        "video-sparse-keyframes-not-sought",
        "daemon/ingest/video.py",
        "if picked is None and (at - last >= MAX_GAP - 1e-6 or not taken):",
        "if picked is None and not taken:",
        (VIDEO_DECODE + "test_where_keyframes_are_sparse_a_frame_is_decoded_at_the_wanted_time",),
        "a video with one keyframe is one sample: whatever it shows later is never found",
    ),
    Mutation(
        "video-cap-not-stretched",
        "daemon/ingest/video.py",
        "    step = max(every, duration / cap)\n    count",
        "    step = every\n    count",
        (VIDEO_DECODE + "test_the_interval_stretches_beyond_the_cap_and_always_covers_the_whole_video",),
        "an hour of video is sampled only in its first minutes: the cap cuts instead of stretching",
    ),
    Mutation(
        "video-repeated-frames-kept",
        "daemon/ingest/video.py",
        "        if float(np.dot(vectors[position], vectors[keep[-1]])) < near:",
        "        if True:",
        (
            VIDEO_DECODE + "test_near_identical_neighbours_are_kept_once",
            VIDEO_SEARCH + "test_a_video_is_one_content_with_its_distinct_frames_and_its_duration",
        ),
        "a still scene stores a vector per sample: the index grows with the length of boring videos",
    ),
    Mutation(
        "video-time-not-said",
        "daemon/search/query.py",
        "row.update(time=times.get(vector_id, 0.0), duration=round(videos[content_id], 3))",
        "row.update(time=0.0, duration=round(videos[content_id], 3))",
        (VIDEO_SEARCH + "test_a_blue_square_is_found_in_the_video_at_a_time_it_shows_one",),
        "a video hit says its start instead of the time of its best frame",
    ),
    Mutation(
        "video-path-time-ignored",
        "daemon/search/query.py",
        "        path, at = video.split_time(path)\n",
        "        path, at = video.split_time(path)[0], None\n",
        (VIDEO_SEARCH + "test_similar_from_a_frame_of_a_video_or_its_path",),
        "similar from trip.mp4@0:05 searches from the first frame, not the one asked for",
    ),
    Mutation(
        "video-no-duration-filter",
        "daemon/search/filters.py",
        "        selected.append(Lasting(filters.min_duration, filters.max_duration))",
        "        pass",
        (VIDEO_SEARCH + "test_video_filters_select_by_kind_type_and_length",),
        "--min-duration and --max-duration are accepted and do nothing",
    ),
    Mutation(
        "video-near-duplicates",
        "daemon/search/dupes.py",
        "pairs = [pair for pair in pairs if pair[0] not in videos and pair[1] not in videos] if videos else pairs",
        "pairs = pairs",
        ("tests/integration/test_video_dupes.py::test_a_video_is_a_duplicate_of_its_copies_only",),
        "a video whose first frame looks like a photo is listed as that photo's near-duplicate",
    ),
    Mutation(
        "video-dropped-by-model-change",
        "daemon/ingest/modelchange.py",
        "                if video.is_video(stat.path):\n",
        "                if False:\n",
        ("tests/integration/test_video_modelchange.py::test_a_model_change_re_embeds_every_frame_of_a_video",),
        "a model change reads a video as a picture, fails, and drops it from the library at the switch",
    ),
    # -- scale: bounded duplicates upkeep, work at 100k vs 10k (issue 21) ---------------------------------
    Mutation(
        "dupes-new-file-links-every-neighbour",
        "daemon/service/dupetracker.py",
        "self.floor - MARGIN, limit=NEIGHBOUR_LIMIT + 1)",
        "self.floor - MARGIN, limit=10**9)",
        (
            "tests/integration/test_scale.py::"
            "test_a_new_frame_among_hundreds_of_near_identical_ones_is_linked_to_at_most_the_bound",
        ),
        "a new frame among a million near-identical ones is scored against and linked to every one of them",
    ),
    Mutation(
        "removal-scans-the-library-for-orphans",
        "daemon/ingest/engine.py",
        "self._drop_orphans(released, candidates=(), recheck_held=False)",
        "self._drop_orphans(released)",
        ("tests/integration/test_scale.py::test_a_removal_and_a_new_file_cost_the_same_at_100k_as_at_10k",),
        "each removed file scans every content for orphans: rm -rf of 10k files at 1M takes an hour",
    ),
    Mutation(
        "search-fetches-the-library",
        "daemon/search/query.py",
        "fetch = k + len(exclude)  #",
        "fetch = len(self.index) + len(exclude)  #",
        ("tests/integration/test_scale.py::test_a_search_costs_the_same_at_100k_as_at_10k",),
        "every search reads the owners and paths of every vector in the library",
    ),
    Mutation(
        "first-pass-scores-every-candidate-at-once",
        "daemon/search/pairs.py",
        "    for start in range(0, len(firsts), _SCORE_ROWS):\n"
        "        first, second = firsts[start : start + _SCORE_ROWS], seconds[start : start + _SCORE_ROWS]\n",
        "    for start in range(0, len(firsts), len(firsts) or 1):\n        first, second = firsts, seconds\n",
        (
            "tests/integration/test_scale.py::"
            "test_the_first_pass_scores_a_clump_of_near_identical_frames_in_bounded_blocks",
        ),
        "1,500 near-identical frames take 11.6 GB in the duplicates pass (two float64 vectors per candidate pair)",
    ),
    # -- words in pictures (issue 26) --------------------------------------------------------------
    Mutation(
        "words-accents-kept",
        "daemon/wordfold.py",
        "if not unicodedata.combining(ch)",
        "if True",
        ("tests/unit/test_word_parts.py::test_folding_drops_case_accents_and_spaces_but_keeps_lines_apart",),
        "`--words cafe` misses a menu that reads Café: SQLite 3.40's trigram tokenizer cannot fold accents itself",
    ),
    Mutation(
        "words-phrase-as-syntax",
        "daemon/wordfold.py",
        """return '"' + fold(text).replace('"', '""') + '"'""",
        "return fold(text)",
        ("tests/unit/test_word_parts.py::test_a_phrase_is_quoted_so_its_punctuation_is_text",),
        "`--words INV-2023` is parsed as FTS5 syntax (a column filter) instead of matched literally",
    ),
    Mutation(
        "words-too-short-allowed",
        "daemon/protocol.py",
        "len(fold(words)) < MIN_CHARS",
        "len(fold(words)) < 1",
        ("tests/unit/test_word_parts.py::test_words_of_fewer_than_three_characters_are_refused",),
        "a two-letter --words silently matches nothing (trigrams need 3) instead of saying so",
    ),
    Mutation(
        "words-confidence-ignored",
        "daemon/store/words.py",
        "if line.confidence >= min_confidence]",
        "]",
        ("tests/unit/test_word_parts.py::test_the_words_filter_selects_in_sql_what_it_matches_in_python",),
        "lines the recogniser barely read become searchable: [words] min_confidence has no effect",
    ),
    Mutation(
        "words-oldest-first",
        "daemon/store/words.py",
        "ORDER BY c.id DESC LIMIT ?",
        "ORDER BY c.id LIMIT ?",
        (
            "tests/unit/test_word_parts.py::test_the_pass_reads_the_newest_first_and_a_new_arrival_before_the_older_rest",
        ),
        "the pass reads a large library's oldest pictures first; the ones just added wait behind them all",
    ),
    Mutation(
        "words-new-arrivals-wait",
        "daemon/ingest/wordspass.py",
        "newer = self.catalog.words_backlog(top, 2**62, limit)",
        "newer = []",
        (
            "tests/unit/test_word_parts.py::test_the_pass_reads_the_newest_first_and_a_new_arrival_before_the_older_rest",
        ),
        "a picture added while the pass works through the backlog is read only after the whole backlog",
    ),
    Mutation(
        "words-gate-blind",
        "daemon/ingest/words.py",
        "return len(boxes) > 0",
        "return False",
        (
            "tests/integration/test_words.py::test_words_keeps_the_pictures_that_hold_the_phrase_and_shows_the_matched_line",
        ),
        "the gate never lets a picture through, so no words are ever read",
    ),
    Mutation(
        "words-not-fused",
        "daemon/search/words.py",
        '    return tokens([term.value for term in request.terms if term.kind == "text" and term.weight > 0])',
        "    return []",
        ("tests/integration/test_words.py::test_a_search_fuses_the_words_with_the_ranking_and_no_words_turns_it_off",),
        "a search's texts never look at the words in pictures: the README's hardware-store receipt is not found",
    ),
    Mutation(
        "words-no-words-ignored",
        "cli/options.py",
        'fuse_words=given.pop("fuse_words", True),',
        'fuse_words=given.pop("fuse_words", True) or True,',
        ("tests/integration/test_words.py::test_a_search_fuses_the_words_with_the_ranking_and_no_words_turns_it_off",),
        "--no-words is accepted and does nothing",
    ),
    Mutation(
        "words-fts-error-traceback",
        "daemon/search/words.py",
        "            catalog.words_matching(filters.words_match, limit=1)",
        "            pass",
        ("tests/integration/test_words.py::test_bad_words_are_one_sentence_and_exit_2",),
        "an FTS5 syntax error in --words-match surfaces as an internal error instead of one sentence, exit 2",
    ),
    Mutation(
        "words-kept-after-content",
        "daemon/store/core.py",
        'self.conn.execute(f"DELETE FROM words WHERE content_id IN ({marks})", chunk)',
        "pass",
        (
            "tests/unit/test_word_parts.py::test_the_pass_reads_the_newest_first_and_a_new_arrival_before_the_older_rest",
        ),
        "a removed picture's words stay behind, and the status counts them as read",
    ),
    Mutation(
        "words-batch-never-yields",
        "daemon/ingest/wordspass.py",
        "            if interrupt():",
        "            if False:",
        ("tests/unit/test_word_parts.py::test_a_batch_gives_way_as_soon_as_a_file_arrives_and_keeps_what_it_read",),
        "a words batch runs to its end while a new file waits to be embedded",
    ),
    Mutation(
        "words-cut-batch-skips",
        "daemon/ingest/wordspass.py",
        "        return self.catalog.words_backlog(0, min(self._words_below, top + 1), limit)",
        "        older = self.catalog.words_backlog(0, min(self._words_below, top + 1), limit)\n"
        "        self._words_below = older[-1][0] if older else self._words_below\n"
        "        return older",
        ("tests/unit/test_word_parts.py::test_a_batch_gives_way_as_soon_as_a_file_arrives_and_keeps_what_it_read",),
        "the pictures of a batch cut short by a new file are skipped until the daemon restarts",
    ),
    Mutation(
        "words-enabled-ignored",
        "daemon/ingest/wordspass.py",
        "        if not self.config.words_enabled:",
        "        if False:",
        ("tests/unit/test_word_parts.py::test_a_batch_gives_way_as_soon_as_a_file_arrives_and_keeps_what_it_read",),
        "[words] enabled = false still reads every picture",
    ),
    Mutation(
        "words-fusion-unbounded",
        "daemon/store/words.py",
        "self.conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)",
        "pass",
        (
            "tests/unit/test_word_parts.py::"
            "test_the_fused_words_ranking_gives_up_past_its_budget_and_the_search_goes_on_without_it",
        ),
        "a text whose words are in most pictures makes every search of a large library take seconds",
    ),
    # -- the words gate's cost (issue 26) -----------------------------------------------------------
    Mutation(
        "words-stroke-test-skipped",
        "daemon/ingest/words.py",
        "        if not has_strokes(small):",
        "        if False:",
        (
            "tests/integration/test_words.py::"
            "test_the_gate_runs_the_detector_only_on_pictures_with_strokes_and_those_with_words_are_read",
        ),
        "every picture without words costs the detector (~50 ms) though most have no thin line to read",
    ),
    Mutation(
        "words-stroke-test-without-floor",
        "daemon/ingest/words.py",
        "MIN_STROKES = 0.00035",
        "MIN_STROKES = 0.0",
        ("tests/unit/test_word_gate.py::test_a_picture_without_thin_lines_fails_it",),
        "the stroke test passes every picture, so it skips nothing",
    ),
    Mutation(
        "words-stroke-test-wants-strong-ink",
        "daemon/ingest/words.py",
        "STROKE_CONTRAST = 24",
        "STROKE_CONTRAST = 96",
        ("tests/unit/test_word_gate.py::test_a_picture_with_words_passes_the_stroke_test",),
        "print of middling contrast (grey ink, a faded receipt) fails the stroke test and is never read",
    ),
    Mutation(
        "words-gate-decodes-large",
        "daemon/ingest/words.py",
        "        shortest = max(1, math.ceil(GATE_SIDE * min(width, height) / max(width, height, 1)))",
        "        pass",
        ("tests/unit/test_word_gate.py::test_the_gate_decodes_a_jpeg_only_as_large_as_its_longest_side_needs",),
        "the gate decodes a JPEG with its shortest side >= 480: a 1024x768 one in full, four times the pixels",
    ),
    Mutation(
        "words-large-letters-skipped",
        "daemon/ingest/words.py",
        "    if int(across.sum()) >= MIN_EDGES * grey.size:",
        "    if False:",
        ("tests/unit/test_word_gate.py::test_a_picture_with_words_passes_the_stroke_test",),
        "a poster's headline, letters too bold for the thin-line test, is skipped by the gate and never read",
    ),
    # -- issue 23, stills: a failed photo hides nothing, several siblings, RAW rate ---------------
    Mutation(
        "failed-still-is-a-primary",
        "daemon/ingest/companions.py",
        "stills = [p for p in members if is_still(p) and p not in failed]",
        "stills = [p for p in members if is_still(p)]",
        (SIBLINGS + "test_the_pairing_rule",),
        "a JPEG that cannot be decoded still claims its RAW, which is then never searchable",
    ),
    Mutation(
        "failed-still-keeps-companions-in-reconcile",
        "daemon/ingest/engine.py",
        "        summary.merge(self.release_failed(summary.failures))  # a photo that failed hides no RAW or video\n"
        "        with self.catalog.transaction():",
        "        with self.catalog.transaction():",
        (SIBLINGS + "test_a_still_that_fails_to_decode_hides_no_companion",),
        "a corrupt JPEG found by `imgd index` hides the good RAW beside it",
    ),
    Mutation(
        "failed-still-keeps-companions-per-event",
        "daemon/ingest/engine.py",
        "        summary.merge(self.release_failed(summary.failures))  # a photo that failed hides no RAW or video\n"
        "        if gone:",
        "        if gone:",
        (SIBLINGS + "test_a_broken_still_arriving_beside_an_indexed_raw_leaves_it_searchable",),
        "a corrupt JPEG copied beside an indexed RAW makes the RAW vanish from search",
    ),
    Mutation(
        "failed-row-ignored-by-reconcile",
        "daemon/ingest/pairing.py",
        "        failed = {s.path for s in stats if s.path in failing and _failed_as_is(",
        "        failed = set() or {s.path for s in () if s.path in failing and _failed_as_is(",
        (SIBLINGS + "test_a_still_that_fails_to_decode_hides_no_companion",),
        "the next daemon start pairs the RAW with its broken JPEG again and hides it",
    ),
    Mutation(
        "failed-row-ignored-per-event",
        "daemon/ingest/pairing.py",
        "pairs = companions.pair_up(group, self._failed_stills(group, trying))",
        "pairs = companions.pair_up(group)",
        (SIBLINGS + "test_a_broken_still_arriving_beside_an_indexed_raw_leaves_it_searchable",),
        "an event on a RAW beside a broken JPEG hides the RAW behind it",
    ),
    Mutation(
        "siblings-list-missing",
        "daemon/search/query.py",
        '                row["siblings"] = siblings[path]',
        "                pass",
        (SIBLINGS + "test_a_still_with_both_a_raw_and_a_live_video_lists_every_sibling",),
        "a still with both a RAW and a live video names only one of them",
    ),
    Mutation(
        "sibling-not-the-first",
        "daemon/store/siblings.py",
        '"SELECT primary_path, path FROM siblings WHERE primary_path IN ({}) ORDER BY path", keys',
        '"SELECT primary_path, path FROM siblings WHERE primary_path IN ({}) ORDER BY path DESC", keys',
        (SIBLINGS + "test_a_still_with_both_a_raw_and_a_live_video_lists_every_sibling",),
        "`sibling` names another file than it did before `siblings` came (scripts reading it break)",
    ),
    Mutation(
        "gallery-siblings-dropped",
        "web/app.py",
        '                **({"siblings": [os.path.basename(s) for s in h.siblings]} if h.siblings else {}),\n',
        "",
        ("tests/e2e/test_web.py::test_a_pair_is_one_result_whose_sibling_the_full_view_names",),
        "the gallery's full view names one of a still's RAW and live video",
    ),
    Mutation(
        "file-read-in-joined-chunks",
        "daemon/ingest/imaging.py",
        "        chunks = [os.read(fd, info.st_size + 1)]\n",
        "        chunks = []\n",
        (RAW + "test_a_raw_is_read_once_into_one_buffer_and_decoded_from_it",),
        "a RAW's 26 MB are written twice into fresh memory before a byte is hashed: RAWs index below the JPEG rate",
    ),
    Mutation(
        "video-words-not-read",
        "daemon/ingest/wordspass.py",
        "                if video.is_video(stat.path):",
        "                if False:",
        ("tests/integration/test_video_words.py::test_a_video_is_found_by_the_words_in_its_frames",),
        "a video's signs and captions are never searchable by --words",
    ),
    Mutation(
        "video-words-uncapped",
        "daemon/ingest/wordspass.py",
        "    if len(times) <= count:",
        "    if True:",
        ("tests/integration/test_video_words.py::test_spread_keeps_the_ends_and_at_most_the_cap",),
        "an hour-long video has 120 frames read for words: a minute of CPU instead of seconds",
    ),
    # -- warm start: each tower verified once per file, no conversion tools, no idle runtime (issue 22, session 3) --
    Mutation(
        "openvino-verified-note-ignores-stamps",
        "daemon/embedders/openvino.py",
        '                if recorded.get("verified") == _stamps(cache):',
        '                if recorded.get("verified"):',
        (
            "tests/integration/test_backends.py::test_a_tower_verified_once_opens_without_its_probe_until_its_file_changes[openvino]",
            "tests/integration/test_backends.py::test_cached_tower_that_misses_the_recorded_probe_is_compiled_again_never_served",
        ),
        "a compiled blob written in place since it was verified (a flipped weight) is served without its probe",
    ),
    Mutation(
        "onnx-verified-note-ignores-content",
        "daemon/embedders/runtime.py",
        '"stamp": stamp(path)}',
        '"stamp": stamp(path)[:2]}',
        (
            "tests/integration/test_backends.py::test_a_tower_verified_once_opens_without_its_probe_until_its_file_changes[onnx]",
        ),
        "an ONNX file written in place at the same size since it was verified is served without its probe",
    ),
    Mutation(
        "verified-stamp-without-ctime",
        "daemon/embedders/runtime.py",
        "    return [info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]",
        "    return [info.st_ino, info.st_size, info.st_mtime_ns]",
        (
            "tests/integration/test_backends.py::test_a_tower_verified_once_opens_without_its_probe_until_its_file_changes[onnx]",
            "tests/integration/test_backends.py::test_a_tower_verified_once_opens_without_its_probe_until_its_file_changes[openvino]",
        ),
        "a file rewritten with its mtime set back (cp -p, a restore) passes for the one verified",
    ),
    Mutation(
        "onnx-probe-on-every-open",
        "daemon/embedders/runtime.py",
        "        if verified(note, key):\n            return session",
        "        if False:\n            return session",
        (
            "tests/integration/test_backends.py::test_a_tower_verified_once_opens_without_its_probe_until_its_file_changes[onnx]",
        ),
        "every warm start pays the probe of a tower verified before and unchanged since",
    ),
    Mutation(
        "openvino-probe-on-every-open",
        "daemon/embedders/openvino.py",
        '                if recorded.get("verified") == _stamps(cache):',
        "                if False:",
        (
            "tests/integration/test_backends.py::test_a_tower_verified_once_opens_without_its_probe_until_its_file_changes[openvino]",
        ),
        "every warm start pays the image tower's probe (half its open on ViT-B/32) for an unchanged blob",
    ),
    Mutation(
        "openvino-imports-its-conversion-tools",
        "daemon/embedders/openvino.py",
        "    blocked = tools not in sys.modules\n",
        "    blocked = False\n",
        (
            "tests/integration/test_backends.py::test_a_warm_openvino_start_imports_neither_onnx_runtime_nor_openvinos_conversion_tools",
        ),
        "every OpenVINO start imports convert_model, urllib and telemetry it never uses (60% of openvino's import)",
    ),
    Mutation(
        "openvino-start-imports-onnxruntime",
        "daemon/embedders/onnx.py",
        '    if importlib.util.find_spec("onnxruntime") is None:',
        '    if importlib.import_module("onnxruntime") is None:',
        (
            "tests/integration/test_backends.py::test_a_warm_openvino_start_imports_neither_onnx_runtime_nor_openvinos_conversion_tools",
        ),
        "an OpenVINO start imports ONNX Runtime only to see that it is there",
    ),
    Mutation(
        "text-search-opens-the-image-tower",
        "daemon/embedders/onnx.py",
        "        tower = self._text\n        if not texts:",
        "        self.encode_images([])\n        tower = self._text\n        if not texts:",
        ("tests/integration/test_backends.py::test_a_text_search_opens_the_text_tower_alone[onnx]",),
        "a text search opens (and pays for) the image tower it never runs",
    ),
    Mutation(
        "reconcile-unchanged-per-file-at-v",
        "daemon/ingest/engine.py",
        'log.debug("unchanged: %s", display_path(stat.path))',
        'log.log(DETAIL, "unchanged: %s", display_path(stat.path))',
        (
            "tests/integration/test_reconcile_cost.py::"
            "test_reconcile_logs_one_unchanged_line_at_detail_and_each_file_only_at_debug",
        ),
        "-v on a million-file library logs a million lines at every reconcile",
    ),
    Mutation(
        "walk-ignores-stop",
        "daemon/ingest/scanner.py",
        "if should_stop is not None and should_stop():",
        "if False:",
        ("tests/integration/test_reconcile_cost.py::test_the_walk_asks_the_stop_flag_before_each_folder",),
        "SIGTERM waits for the walk of the whole library (seconds at 100k, a minute at 1M)",
    ),
    Mutation(
        "stop-waits-for-every-part",
        "daemon/service/run.py",
        "steps.join(max(0.0, self.stop_deadline - time.monotonic()))",
        "steps.join()",
        ("tests/e2e/test_stop_bound.py::test_answers_during_the_start_up_reconcile_and_obeys_sigterm_mid_batch",),
        "SIGTERM waits for a decode, an embedding batch, a k-means round or a 1 GB save: systemd kills it",
    ),
    Mutation(
        "unit-stop-timeout-minutes",
        "cli/unit.py",
        "TimeoutStopSec=5",
        "TimeoutStopSec=30",
        ("tests/e2e/test_unit.py::test_the_stop_timeout_fits_the_daemons_stop_budget",),
        "systemd waits 30 s for a daemon that is bound to exit in 1.5 s: a hung one holds a restart that long",
    ),
    Mutation(
        "cluster-vectors-ignored",
        "daemon/ingest/engine.py",
        "        if all(item.vectors is not None for item in batch):",
        "        if False:",
        ("tests/integration/test_cluster.py::test_a_local_cluster_indexes_what_a_local_run_does",),
        "files a cluster's workers embedded are embedded again here (or fail: their pixels never came back)",
    ),
    Mutation(
        "cluster-vectors-misassigned",
        "daemon/ingest/cluster.py",
        "rows, position = vectors[position : position + item.count], position + item.count",
        "rows, position = vectors[0 : item.count], position + item.count",
        ("tests/integration/test_cluster.py::test_a_local_cluster_indexes_what_a_local_run_does",),
        "every file of a worker's batch is filed under the first file's vector: search finds the wrong pictures",
    ),
    Mutation(
        "cluster-no-ray-traceback",
        "daemon/ingest/cluster.py",
        "    except ImportError:\n        raise ClusterUnavailable(",
        "    except KeyError:\n        raise ClusterUnavailable(",
        ("tests/integration/test_cluster.py::test_without_ray_cluster_is_one_sentence",),
        "--cluster without the extra installed ends in a traceback instead of one sentence",
    ),
    Mutation(
        "cluster-checked-late",
        "cli/index.py",
        "        check(cluster)\n",
        "        pass\n",
        ("tests/integration/test_cluster.py::test_without_ray_cluster_is_one_sentence",),
        "--cluster without Ray loads the model and opens (creates) the catalog before saying it cannot run",
    ),
    # -- lead, session 3: a decoder's RuntimeError is a failed file, never a failed step ----------
    Mutation(
        "decoder-runtime-error-escapes",
        "daemon/ingest/imaging.py",
        "    except RuntimeError as exc:  # a plugin's own decoder",
        "    except ZeroDivisionError as exc:  # a plugin's own decoder",
        ("tests/integration/test_imaging.py::test_bytes_that_only_look_like_jpeg_xl_fail_in_one_line",),
        "bytes starting FF 0A (a JPEG XL signature) are an 'unexpected error', and in the words pass a rescan",
    ),
    Mutation(
        "words-pass-error-escapes",
        "daemon/ingest/wordspass.py",
        "            except Exception as exc:  # noqa: BLE001 - one odd file is one line",
        "            except ZeroDivisionError as exc:  # noqa: BLE001 - one odd file is one line",
        ("tests/integration/test_imaging.py::test_an_error_reading_a_files_words_is_one_line_and_the_pass_goes_on",),
        "a file the OCR cannot take fails the worker's step, and the daemon rescans the library for it",
    ),
    # -- issue 21: whole-library passes (places pass, pairs per content) --------------------------
    Mutation(
        "places-pass-not-yielding",
        "daemon/ingest/worker.py",
        "self._places_due = self.engine.place_batch() > 0",
        "self._places_due = self.engine.place_all() > 0",
        (PLACES_DAEMON,),
        "the places pass names the whole backlog in one go: a new file waits behind it for many seconds",
    ),
    Mutation(
        "places-pass-never-in-daemon",
        "daemon/ingest/worker.py",
        "self._places_due = self.engine.place_batch() > 0",
        "self._places_due = False",
        (PLACES_DAEMON,),
        "the daemon leaves the photos of a catalog kept from before places unplaced",
    ),
    Mutation(
        "places-pass-restarts-from-zero",
        "daemon/store/migrations.py",
        'UNPLACED = "latitude IS NOT NULL AND city IS NULL"',
        'UNPLACED = "latitude IS NOT NULL"',
        ("tests/integration/test_places.py::test_the_places_pass_goes_on_where_it_stopped",),
        "every start names every stored position again instead of going on where the last run stopped",
    ),
    Mutation(
        "places-unknown-left-waiting",
        "daemon/store/media.py",
        'if place else ("", None, None, cid)',
        "if place else (None, None, None, cid)",
        (
            "tests/integration/test_places.py::"
            "test_an_existing_catalog_gets_places_from_its_stored_gps_without_reading_files",
        ),
        "a position that names no place stays in the backlog: every start visits it again, status never clears",
    ),
    Mutation(
        "dupes-pass-not-yielding",
        "daemon/service/dupetracker.py",
        "pairs = library_pairs(ids, vectors, self.floor, stopped=self._gate)",
        "pairs = library_pairs(ids, vectors, self.floor, stopped=self._stop.is_set)",
        ("tests/integration/test_dupes.py::test_the_first_duplicates_pass_gives_way_while_new_files_wait",),
        "the first duplicates pass keeps both cores busy while a new file waits to be embedded",
    ),
    Mutation(
        "pairs-unbounded",
        "daemon/search/pairs.py",
        "    kept = nearest_pairs(*kept, limit)\n    return list(",
        "    return list(",
        (CLUMP,),
        "a clump of n near-identical frames keeps most of its n*n/2 pairs (gigabytes in the tracker at 10k frames)",
    ),
    Mutation(
        "pairs-clump-keeper-not-completed",
        "daemon/search/dupes.py",
        "if score is not None and len(close) >= PAIR_LIMIT:",
        "if False:",
        (CLUMP,),
        "with pairs bounded per content, a clump's keeper takes only its 64 nearest: one scene splits into groups",
    ),
    # issue 26, queries at 1M: a filter that selects too many is checked on the search's candidates
    Mutation(
        "postfilter-ignores-words",
        "daemon/search/postfilter.py",
        "        if self.phrases and found:",
        "        if False:",
        ("tests/integration/test_postfilter.py::test_checking_candidates_answers_as_selecting_does",),
        "a --words phrase is not checked on the candidates: pictures without those words are listed",
    ),
    Mutation(
        "postfilter-candidates-unchecked",
        "daemon/search/query.py",
        "                owners = {vid: cid for vid, cid in owners.items() if cid in passing}",
        "                pass",
        ("tests/integration/test_postfilter.py::test_checking_candidates_answers_as_selecting_does",),
        "a --near past the selection's budget lists the nearest vectors wherever they were taken",
    ),
    Mutation(
        "postfilter-drops-the-folder",
        "daemon/store/selection.py",
        "on_file, on_path = [_Clauses([*on_path, *(f.clause() for f in on_file)])], []",
        "on_path = []",
        ("tests/integration/test_postfilter.py::test_checking_contents_one_by_one_agrees_with_selecting_them",),
        "--in is forgotten when the candidates are checked per content",
    ),
    Mutation(
        "fused-words-unchecked",
        "daemon/search/words.py",
        "            kept.extend(cid for cid in batch if cid in allowed)",
        "            kept.extend(batch)",
        (
            "tests/integration/test_postfilter.py::"
            "test_the_fused_words_ranking_checks_its_contents_as_the_selection_does",
        ),
        "a search's words ranking adds pictures the filters exclude",
    ),
    Mutation(
        "selection-budget-ignored",
        "daemon/store/selection.py",
        "self.conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)",
        "pass",
        ("tests/integration/test_postfilter.py::test_a_selection_past_its_budget_stops",),
        "a filter selecting a quarter of 1M contents takes seconds before the search checks candidates",
    ),
    Mutation(
        "postfilter-budget-retried",
        "daemon/search/query.py",
        "            if budget is not None and key in self._too_many:",
        "            if False:",
        ("tests/integration/test_postfilter.py::test_a_filter_past_its_budget_is_not_selected_again",),
        "every query of a broad filter spends the selection's budget again before checking candidates",
    ),
    Mutation(
        "postfilter-never-gives-up-early",
        "daemon/search/postfilter.py",
        "or (fetch >= SAMPLE and found * FETCH_LIMIT < k * fetch)",
        "",
        ("tests/integration/test_postfilter.py::test_checking_gives_up_once_too_few_of_enough_candidates_pass",),
        "a rare filter checks 3,400 candidates before selecting its few pictures after all",
    ),
    Mutation(
        "postfilter-in-a-small-library",
        "daemon/search/postfilter.py",
        "    return library > MIN_LIBRARY and filters.active",
        "    return filters.active",
        ("tests/integration/test_postfilter.py::test_a_small_library_is_always_selected",),
        "a small library's search may take either path, and a narrow filter's scores differ in the last digit",
    ),
    Mutation(
        "postfilter-checks-a-rare-filter-forever",
        "daemon/search/query.py",
        "                if len(checker.checked) >= postfilter.SAMPLE:",
        "                if False:",
        (
            "tests/integration/test_postfilter.py::"
            "test_a_filter_few_candidates_pass_is_selected_once_after_its_first_answer",
        ),
        "a filter 1 in 40 pass checks a thousand candidates on every query instead of a cached selection",
    ),
    Mutation(
        "gallery-words-box-ignored",
        "web/backend.py",
        '    for name in ("after", "before", "camera", "near", "country", "words"):',
        '    for name in ("after", "before", "camera", "near", "country"):',
        ("tests/e2e/test_web.py::test_the_gallery_filters_by_words_and_shows_the_lines_matched",),
        "the gallery's words box is ignored: every picture is listed",
    ),
    # -- the words models on OpenVINO where measured faster (issue 26, gate2) ------------------------
    Mutation(
        "words-runtime-no-fallback",
        "daemon/ingest/wordsruntime.py",
        "        except Exception as exc:  # noqa: BLE001 - OpenVINO's errors have no common type",
        "        except ImportError as exc:",
        ("tests/integration/test_words_runtime.py::test_openvino_failing_to_compile_leaves_onnx_runtime_reading",),
        "OpenVINO failing to compile a words model stops the words pass instead of leaving ONNX Runtime to read",
    ),
    Mutation(
        "words-runtime-call-no-fallback",
        "daemon/ingest/wordsruntime.py",
        "            return self._fallback(batch)  # this picture too: read on ONNX Runtime, not lost",
        "            raise",
        (
            "tests/integration/test_words_runtime.py::"
            "test_openvino_failing_at_a_call_hands_the_model_back_to_onnx_runtime",
        ),
        "OpenVINO failing at a later call loses that picture's words instead of reading it on ONNX Runtime",
    ),
    Mutation(
        "words-runtime-not-measured",
        "daemon/ingest/wordsruntime.py",
        '            if results[model]["openvino"] * MARGIN > results[model]["onnx"]:',
        "            if False:",
        (
            "tests/integration/test_words_runtime.py::"
            "test_openvino_slower_on_the_probe_leaves_the_model_on_onnx_runtime",
        ),
        "OpenVINO takes the words models over wherever it loads, though on this CPU it measured slower",
    ),
    Mutation(
        "words-runtime-unchecked",
        "daemon/ingest/wordsruntime.py",
        "            problem = differ(onnx(batch)[0], ov.run(batch)[0])",
        "            problem = None",
        ("tests/integration/test_words_runtime.py::test_a_model_whose_outputs_disagree_with_onnx_runtime_is_refused",),
        "a compiled model whose boxes or text differ from ONNX Runtime's serves, and words are lost or misread",
    ),
    Mutation(
        "words-runtime-shared-request",
        "daemon/ingest/wordsruntime.py",
        "        self._local = threading.local()",
        "        self._local = self",
        ("tests/integration/test_words_runtime.py::test_each_thread_runs_its_own_infer_request",),
        "the pool's threads share one infer request: OpenVINO refuses a busy one and every model falls back",
    ),
    Mutation(
        "words-runtime-key-ignored",
        "daemon/ingest/wordspass.py",
        "                self.config.words_runtime,\n",
        '                "auto",\n',
        (
            "tests/integration/test_words_runtime.py::"
            "test_the_words_runtime_key_reaches_the_pass_and_its_child_reads_on_it",
        ),
        "[words] runtime is read and ignored: every new state folder times the OCR models on both runtimes",
    ),
    # -- memory at a million (issue 21, point 2): 8-bit IVF lists re-scored from the catalog, built from a sample --
    Mutation(
        "ivf-rescoring-skipped",
        "daemon/store/index.py",
        "        lookup = lookup or self.exact_vectors\n",
        "        lookup = None\n",
        (
            "tests/unit/test_index.py::"
            "test_a_large_catalog_builds_its_ivf_from_a_sample_block_by_block_and_rescores_exactly",
            "tests/unit/test_index.py::test_a_filtered_search_returns_the_best_allowed_vectors_and_k_whenever_k_are_allowed",
        ),
        "an IVF answers with its 8-bit scores: near ties swap and recall falls below the exact search's",
    ),
    Mutation(
        "ivf-trains-on-every-point",
        "daemon/store/ivf.py",
        "    return min(count, SAMPLE_PER_LIST * list_count(count))",
        "    return count",
        (
            "tests/unit/test_index.py::test_a_large_catalog_builds_its_ivf_from_a_sample_block_by_block_and_rescores_exactly",
        ),
        "k-means over the whole library: at 1M its training points alone are 2 GB of float32",
    ),
    Mutation(
        "index-built-exact-first",
        "daemon/store/index.py",
        "        if count >= EXACT_LIMIT:\n",
        "        if False:\n",
        (
            "tests/unit/test_index.py::test_a_large_catalog_builds_its_ivf_from_a_sample_block_by_block_and_rescores_exactly",
        ),
        "a large library is first read into an exact float32 index (2 GB at 1M), then copied again to cluster it",
    ),
    Mutation(
        "older-float16-ivf-misread",
        "daemon/store/indexfile.py",
        "    if isinstance(raw, faiss.IndexIVF) and (not head.startswith(MAGIC) or codec != STORAGE):",
        "    if False:",
        ("tests/unit/test_index.py::test_an_older_float16_ivf_file_is_rebuilt_not_misread",),
        "an index file of the float16 format is served as if its lists were today's",
    ),
    Mutation(
        "duplicates-pass-clusters-beside-the-build",
        "daemon/store/ivf.py",
        "    with clustering():\n        kmeans.train(",
        "    with contextlib.nullcontext():\n        kmeans.train(",
        ("tests/unit/test_index.py::test_the_index_build_and_the_duplicates_pass_never_cluster_at_once",),
        "the duplicates pass's k-means runs beside the index build's: both samples and buffers at once",
    ),
    # Issue 26, `--near` at 1M (helper near): a reused broad filter is selected aside; bitmaps kept per array.
    Mutation(
        "near-reused-filter-never-selected-aside",
        "daemon/search/postfilter.py",
        "            return started is False\n",
        "            return False\n",
        ("tests/integration/test_postfilter.py::test_a_checked_filter_asked_again_is_selected_in_the_background",),
        "a broad filter checks candidates on every query: a warm --near Lisbon probes every list at its widest",
    ),
    Mutation(
        "near-filter-selected-aside-every-query",
        "daemon/search/postfilter.py",
        "            self._seen[key] = started is not None\n",
        "            self._seen[key] = False\n",
        ("tests/integration/test_postfilter.py::test_a_filter_is_selected_aside_once_per_catalog_state",),
        "every query past the first starts another whole selection of the same filter (seconds at 1M each)",
    ),
    Mutation(
        "near-one-shot-search-selects-aside",
        "daemon/search/postfilter.py",
        "            return started is False\n",
        "            return started is not True\n",
        ("tests/integration/test_postfilter.py::test_a_checked_filter_asked_again_is_selected_in_the_background",),
        "the direct path's one query starts a selection of seconds that its exit throws away",
    ),
    Mutation(
        "near-bitmap-kept-for-another-array",
        "daemon/store/ivf.py",
        "            if ids is allowed:",
        "            if len(ids) == len(allowed):",
        ("tests/integration/test_postfilter.py::test_a_selections_bitmap_is_kept_for_its_array_only",),
        "a kept bitmap answers for another selection of the same size: hits outside the filter",
    ),
    Mutation(
        "near-bitmap-rebuilt-every-query",
        "daemon/store/ivf.py",
        "            if ids is allowed:",
        "            if False:",
        ("tests/integration/test_postfilter.py::test_a_selections_bitmap_is_kept_for_its_array_only",),
        "every query with a cached selection reads all its ids into a new bitmap (milliseconds at 1M)",
    ),
    Mutation(
        "server-after-the-start-up",
        "daemon/service/run.py",
        "            self.server.start()\n            log.info(",
        "            self._start_parts()  # the watches, then the worker and its reconcile\n"
        "            self.server.start()\n"
        "            self._start_parts = lambda: None  # type: ignore[method-assign]\n"
        "            log.info(",
        ("tests/e2e/test_early_answer.py::test_a_search_is_answered_before_the_watches_and_the_reconcile_are_done",),
        "the first search waits for the watches on every folder and the reconcile's start (79 s at 100k)",
    ),
    Mutation(
        "rebuilt-index-saved-after-the-interval",
        "daemon/service/run.py",
        "        if not self.library.index.dirty:\n            next_persist",
        "        if True:\n            next_persist",
        ("tests/e2e/test_daemon.py::test_an_index_rebuilt_at_start_is_saved_once_started_not_after_the_interval",),
        "an index rebuilt at start waits the stretched interval (10 min at 1M) for its first save: a restart "
        "before then rebuilds it again",
    ),
    Mutation(
        "image-model-opened-at-start",
        "daemon/service/run.py",
        "            # The text model was opened beside the index load (open_text_tower). The image model opens with\n",
        "            getattr(self.embedder, 'warm', lambda: None)()\n",
        (
            "tests/integration/test_embedders.py::"
            "test_a_daemon_opens_the_image_model_with_the_first_picture_not_at_start",
        ),
        "every start holds the image model through the reconcile (0.85 GB at 1M) though nothing may need it",
    ),
    Mutation(
        "failed-start-leaves-the-text-open-running",
        "daemon/service/run.py",
        "            opener.join(OPENER_WAIT)",
        "            pass",
        ("tests/e2e/faults/test_corruption.py::test_imgd_run_refuses_a_damaged_or_foreign_catalog",),
        "a start refused for a damaged catalog exits while the text model opens on its thread: SIGABRT "
        "('terminate called without an active exception') instead of one sentence and exit 2",
    ),
    # -- issue 21, session 4 (helper `memory`): the save streams, the duplicates pass is resumable --
    Mutation(
        "index-save-serializes-whole",
        "daemon/store/indexfile.py",
        "    faiss.write_index(index, faiss.PyCallbackIOWriter(put, _CHUNK))",
        "    put(faiss.serialize_index(index).tobytes())",
        ("tests/unit/test_index.py::test_a_save_streams_the_index_into_the_file_a_few_bytes_at_a_time",),
        "a save holds a second copy of the whole index in memory (+1.5 GB at 1.45M vectors)",
    ),
    Mutation(
        "dupe-pass-restarts-from-zero",
        "daemon/search/pairpass.py",
        '    following = int(state["next"])  # type: ignore[call-overload]',
        "    following = 0",
        ("tests/integration/test_dupe_pass.py::test_a_stopped_pass_resumes_at_its_group_and_ends_with_the_same_pairs",),
        "every start redoes the duplicates pass from its first group (minutes on both cores at 1M)",
    ),
    Mutation(
        "dupe-pass-progress-without-pairs",
        "daemon/store/dupepass.py",
        "                return False\n            self._insert(pairs)",
        "                return False",
        ("tests/integration/test_dupe_pass.py::test_a_stopped_pass_resumes_at_its_group_and_ends_with_the_same_pairs",),
        "a group counts as done without its pairs stored: a resumed pass loses the pairs found before the stop",
    ),
    # The first run (issue 22, session 4): the text tower exported beside the image tower, the fingerprint kept.
    Mutation(
        "text-tower-exported-after-the-image-tower",
        "daemon/embedders/export.py",
        "            if can_fork():\n",
        "            if False:\n",
        ("tests/integration/test_embedders.py::test_the_text_tower_is_exported_in_a_second_process",),
        "on two cores the text tower's tracing and verification (a third of the export) wait for the image tower's",
    ),
    Mutation(
        "forked-tower-refusal-unsaid",
        "daemon/embedders/export.py",
        '        if "unavailable" in result:\n            raise OnnxUnavailable(result["unavailable"])\n',
        "",
        ("tests/integration/test_embedders.py::test_a_text_tower_refused_in_the_second_process_is_refused_here",),
        "a text tower that disagrees with torch is reported as an exporter crash, not as the disagreement it is",
    ),
    Mutation(
        "forked-tower-left-running-on-failure",
        "daemon/embedders/export.py",
        "        if forked is not None:\n            forked.stop()\n",
        "",
        ("tests/integration/test_embedders.py::test_an_image_tower_refused_stops_the_text_towers_process",),
        "an image tower that fails leaves the text tower's copy running, writing into a staging folder that is gone",
    ),
    Mutation(
        "fingerprint-without-the-image-settings",
        "daemon/embedders/torch.py",
        "    digest.update(json.dumps(prep.as_dict() if prep else None, sort_keys=True).encode())\n",
        "",
        ("tests/integration/test_embedders.py::test_the_fingerprint_of_an_exported_model_is_unchanged",),
        "every existing export's key changes: each user's first start after the update exports again",
    ),
    # -- issue 22, session 4: auto breaks a speed tie by the measured warm open ----------------
    Mutation(
        "auto-tie-favours-onnx",
        "daemon/embedders/choice.py",
        'first = sorted(tied, key=lambda r: (float(r.get("open_s", 0.0)), -float(r["images_per_s"])))',
        'first = sorted(tied, key=lambda r: (r["backend"] != "onnx", -float(r["images_per_s"])))',
        ("tests/integration/test_backends.py::test_auto_breaks_a_speed_tie_by_the_measured_warm_open_and_says_so",),
        "a tie goes to ONNX Runtime on the unmeasured claim that it starts faster (it opened 2x slower here)",
    ),
    Mutation(
        "auto-open-beats-speed",
        "daemon/embedders/choice.py",
        'return [r for r in passed if float(r["images_per_s"]) * MARGIN >= top]',
        "return passed",
        ("tests/integration/test_backends.py::test_auto_serves_the_faster_beyond_the_noise_even_if_it_opens_slower",),
        "a backend measurably slower per picture serves because it opens faster",
    ),
    Mutation(
        "auto-old-record-kept",
        "daemon/embedders/choice.py",
        '    if len(tied) > 1 and any("open_s" not in r for r in tied):\n        return None',
        "    if False:\n        return None",
        ("tests/integration/test_backends.py::test_a_record_without_open_times_is_measured_again_once",),
        "an older record's pick, made by the unmeasured rule, is kept for good",
    ),
    Mutation(
        "cli-imports-every-command",
        "cli/main.py",
        "def main() -> None:",
        "for _name in COMMANDS:\n    cli.get_command(click.Context(cli), _name)\n\n\ndef main() -> None:",
        ("tests/unit/test_warm_imports.py::test_a_search_imports_neither_the_other_commands_nor_the_image_decoders",),
        "every command pays for importing every other command's module (alert, index, web...) at start-up",
    ),
    Mutation(
        "cli-help-lists-loaded-only",
        "cli/main.py",
        "return sorted({*self.commands, *COMMANDS})",
        "return sorted(self.commands)",
        ("tests/unit/test_warm_imports.py::test_help_lists_every_command_and_a_typo_is_offered_the_near_ones",),
        "`imgd --help` lists no command, since none is imported yet",
    ),
    Mutation(
        "cli-typo-offered-loaded-only",
        "cli/main.py",
        "possibilities=self.list_commands(ctx)",
        "possibilities=self.commands",
        ("tests/unit/test_warm_imports.py::test_help_lists_every_command_and_a_typo_is_offered_the_near_ones",),
        "a mistyped command is no longer offered the commands it was near",
    ),
    Mutation(
        "search-imports-decoders",
        "daemon/search/query.py",
        "from ..errors import CatalogError, ImageReadError\n",
        "from ..errors import CatalogError, ImageReadError\nfrom ..ingest import imaging, video  # noqa: F401\n",
        ("tests/unit/test_warm_imports.py::test_a_search_imports_neither_the_other_commands_nor_the_image_decoders",),
        "a text search imports every image and video decoder (~50 ms of its start)",
    ),
    Mutation(
        "version-through-importlib-metadata",
        "daemon/embedders/runtime.py",
        "        if len(found) == 1:\n",
        "        if False:\n",
        (
            "tests/integration/test_backends.py::"
            "test_a_warm_auto_start_reads_the_versions_in_its_key_without_importlib_metadata",
        ),
        "every warm auto or OpenVINO start imports importlib.metadata for two versions (~30 ms of CPU)",
    ),
    Mutation(
        "text-search-imports-pil",
        "daemon/embedders/preprocess.py",
        "    resample: int = 3  # PIL's Image.Resampling.BICUBIC\n",
        "    resample: int = int(__import__('PIL.Image').Image.Resampling.BICUBIC)\n",
        ("tests/unit/test_warm_imports.py::test_a_search_imports_neither_the_other_commands_nor_the_image_decoders",),
        "a text search imports PIL, which it never uses (~10 ms of its start)",
    ),
    Mutation(
        "extension-of-leading-dots",
        "daemon/filetypes.py",
        '    if path[dot - 1] == "." and not path[start:dot].strip("."):',
        "    if False:",
        ("tests/unit/test_walk_names.py::test_extension_is_splitexts_lowered",),
        "a name of dots before its last one ('..jpg') reads as a picture: splitext says it has no extension",
    ),
    Mutation(
        "excluded-name-first-pattern-only",
        "daemon/ingest/scanner.py",
        '        return re.compile("|".join(f"(?:{name})" for name in names)) if names else None',
        "        return re.compile(names[0]) if names else None",
        ("tests/unit/test_walk_names.py::test_excluded_name_matches_each_pattern_as_fnmatch_does",),
        "the compiled exclusions keep one pattern: temporary and hidden files are indexed",
    ),
    Mutation(
        "reconcile-ignores-mtime",
        "daemon/ingest/engine.py",
        "                if row is not None and row[1] == stat.size and row[2] == stat.mtime_ns:",
        "                if row is not None and row[1] == stat.size:",
        (
            "tests/integration/test_reconcile_cost.py::test_reconcile_compares_size_and_mtime_and_keeps_failed_rows_as_they_are",
        ),
        "a file rewritten to the same size is never looked at again by a reconcile",
    ),
    Mutation(
        "pair-up-skips-companion-folders",
        "daemon/ingest/companions.py",
        "        if may_pair(path) and path.rpartition(os.sep)[0] in folders:",
        "        if may_pair(path) and path.rpartition(os.sep)[0] not in folders:",
        ("tests/integration/test_siblings.py",),
        "the reconcile's pairing looks only at folders without a RAW or video: no pair is ever made",
    ),
    Mutation(
        "text-tower-opened-on-first-search",
        "daemon/service/run.py",
        "        opener.start()\n",
        "        pass\n",
        ("tests/e2e/test_text_warm.py::test_the_text_model_is_opened_at_start_without_a_search",),
        "the first search opens the text model after the index load: 2-3 s more to the first answer",
    ),
    Mutation(
        "walk-pairs-never-pairs",
        "daemon/ingest/pairing.py",
        "        pairing = not companions.COMPANION_SET.isdisjoint(kinds)",
        "        pairing = companions.COMPANION_SET.isdisjoint(kinds)",
        ("tests/integration/test_siblings.py",),
        "the reconcile pairs only walks without a RAW or a video: a RAW beside its JPEG is embedded twice",
    ),
    Mutation(
        "auto-reopens-a-clear-winner",
        "daemon/embedders/choice.py",
        "    tied = ties(record)\n    if len(tied) > 1:\n",
        '    tied = [r for r in results if "error" not in r]\n    if tied:\n',
        (
            "tests/integration/test_backends.py::"
            "test_auto_reopens_no_tower_when_one_wins_outright_and_keeps_that_record",
        ),
        "the first run opens every candidate's tower a second time though one won outright (~2.6 s on a bf16 CPU)",
    ),
    Mutation(
        "auto-untied-record-without-open-times-measured-again",
        "daemon/embedders/choice.py",
        '    if len(tied) > 1 and any("open_s" not in r for r in tied):',
        '    if any("error" not in r and "open_s" not in r for r in record["results"]):',
        (
            "tests/integration/test_backends.py::"
            "test_auto_reopens_no_tower_when_one_wins_outright_and_keeps_that_record",
        ),
        "a record with a clear winner (no open times: none needed) is measured again at every start",
    ),
    # -- the words in a child process (issue 22, session 5): an idle daemon gives the OCR libraries back --
    Mutation(
        "words-child-kept-when-idle",
        "daemon/service/run.py",
        "        if self.config.idle_unload > 0 and self.library.engine.end_words_child(self.config.idle_unload):",
        "        if False:",
        (WORDS_CHILD + "test_the_daemon_ends_its_words_child_after_idle_unload_and_starts_one_for_new_pictures",),
        "the words child (~150 MB of OCR runtimes) lives on in an idle daemon: 399 MB idle instead of <= 300",
    ),
    Mutation(
        "words-child-not-ended-on-close",
        "daemon/ingest/engine.py",
        "        self.close_words_child()  # first",
        "        pass  # first",
        (
            WORDS_CHILD
            + "test_a_child_killed_or_hung_mid_batch_loses_nothing_and_one_that_ends_it_alone_is_read_without_words",
        ),
        "the words child outlives a closed library (imgd index done, a shutdown) until its stdin closes",
    ),
    Mutation(
        "words-child-death-records-no-words",
        "daemon/ingest/wordspass.py",
        "            except ChildDied:\n                return content_id, None",
        "            except ChildDied:\n                return content_id, []",
        (
            "tests/unit/test_word_parts.py",
            WORDS_CHILD
            + "test_a_child_killed_or_hung_mid_batch_loses_nothing_and_one_that_ends_it_alone_is_read_without_words",
            WORDS_CHILD + "test_the_daemon_reads_on_after_its_words_child_is_killed_mid_batch",
        ),
        "the pictures in the child's hand when it is killed (OOM, a crash elsewhere) are recorded without words",
    ),
    Mutation(
        "words-child-died-not-read-again",
        "daemon/ingest/wordspass.py",
        "            lines = self._read(reader, (content_id, stats))[1]",
        "            lines = None",
        (
            "tests/unit/test_word_parts.py::"
            "test_what_the_child_had_in_hand_when_it_ended_is_read_again_alone_and_what_ends_it_alone_has_no_words",
        ),
        "every picture a dying child had in hand is recorded without words, not only the one that ends it alone",
    ),
    Mutation(
        "words-child-hang-waits-long",
        "daemon/ingest/wordschild.py",
        "        deadline = time.monotonic() + self.timeout\n",
        "        deadline = time.monotonic() + 30 * self.timeout\n",
        (
            WORDS_CHILD
            + "test_a_child_killed_or_hung_mid_batch_loses_nothing_and_one_that_ends_it_alone_is_read_without_words",
        ),
        "a hung child holds the words pass (and the new files behind it) far past its timeout",
    ),
    Mutation(
        "words-child-outlives-its-parent",
        "daemon/ingest/wordschild.py",
        "    os._exit(0)  # stdin closed",
        "    threading.Event().wait()  # stdin closed",
        (WORDS_CHILD + "test_the_words_child_ends_with_the_process_that_started_it_however_that_ends",),
        "a daemon killed with SIGKILL leaves its words child running, orphaned, for good",
    ),
    Mutation(
        "words-child-log-dropped",
        "daemon/ingest/wordschild.py",
        '                logging.getLogger(str(name)).log(int(level), "%s", text)',
        "                pass",
        (
            "tests/integration/test_words_runtime.py::"
            "test_the_child_measures_once_keeps_the_choice_in_the_state_folder_and_the_next_child_serves_it",
        ),
        "the child's log lines (the runtime chosen, OpenVINO failing) never reach the daemon's log",
    ),
    # -- the text model freed after idle_unload without a query (issue 22, session 5) --
    Mutation(
        "text-model-freed-though-queried",
        "daemon/embedders/onnx.py",
        "            self.last_text_use = time.monotonic()\n            return vectors",
        "            return vectors",
        (
            "tests/integration/test_embedders.py::"
            "test_daemon_keeps_its_text_model_while_queries_come_and_frees_it_once_they_stop",
        ),
        "the text model is freed every idle_unload seconds while queries keep coming: each pays its reopen",
    ),
    Mutation(
        "text-model-never-freed",
        "daemon/service/run.py",
        "        self._unload_text_if_idle(now)\n",
        "",
        (
            "tests/integration/test_embedders.py::"
            "test_daemon_keeps_its_text_model_while_queries_come_and_frees_it_once_they_stop",
        ),
        "an idle daemon holds its text model for good: 440 MB on OpenVINO where the goal is 300",
    ),
    # -- issue 21: a start without an index file answers while the index is built (session 5) ----------
    Mutation(
        "start-build-before-answering",
        "daemon/store/index.py",
        "            scan = readers is not None and count >= min(exact_limit, EXACT_LIMIT)\n",
        "            scan = False\n",
        (START_BUILD + "test_a_scanning_index_answers_what_the_exact_index_does_with_and_without_a_filter", START_SCAN),
        "a daemon without an index file builds it before it answers anything again: 220 s at 1M",
    ),
    Mutation(
        "scan-search-off",
        "daemon/store/index.py",
        "        if self.start_build is not None and self.readers is not None:\n            return self._scan_search(",
        "        if False:\n            return self._scan_search(",
        (START_BUILD + "test_a_scanning_index_answers_what_the_exact_index_does_with_and_without_a_filter",),
        "a search during the start-up build reads the live part only (what came since the start): no answers",
    ),
    Mutation(
        "scan-ignores-filter",
        "daemon/store/index.py",
        "                keep = allowed[np.searchsorted(allowed, ids).clip(max=len(allowed) - 1)] == ids\n",
        "                keep = np.ones(len(ids), dtype=bool)\n",
        (START_BUILD + "test_a_scanning_index_answers_what_the_exact_index_does_with_and_without_a_filter",),
        "a filtered search during the start-up build answers images outside the filter",
    ),
    Mutation(
        "scan-range-off",
        "daemon/store/index.py",
        "            return self._scan_range(queries, threshold, limit) if len(queries) else []\n",
        "            pass\n",
        (START_BUILD + "test_a_scanning_index_answers_what_the_exact_index_does_with_and_without_a_filter",),
        "the duplicates upkeep finds no neighbours for files added during the start-up build",
    ),
    Mutation(
        "scan-reconstructs-the-live-part",
        "daemon/store/index.py",
        'and (self.kind == "ivf" or self.start_build is not None):',
        'and self.kind == "ivf":',
        (START_BUILD + "test_a_scanning_index_answers_what_the_exact_index_does_with_and_without_a_filter",),
        "the duplicates upkeep during the start-up build scores pairs only with vectors added since the start",
    ),
    Mutation(
        "scan-size-ignores-adds",
        "daemon/store/index.py",
        "                self.start_build.count += len(ids)\n",
        "                pass\n",
        (START_BUILD + "test_the_built_index_is_swapped_in_with_the_files_added_and_removed_meanwhile",),
        "during the start-up build the index's size (status, a search's limit) leaves out the files added",
    ),
    Mutation(
        "start-build-loses-files-added-meanwhile",
        "daemon/store/index.py",
        "            if new.any():\n                fresh.add_with_ids(vectors[new], added[new])",
        "            if False:\n                fresh.add_with_ids(vectors[new], added[new])",
        (START_BUILD + "test_the_built_index_is_swapped_in_with_the_files_added_and_removed_meanwhile",),
        "files added during the start-up build are missing from the index swapped in: never found again",
    ),
    Mutation(
        "start-build-keeps-files-removed-meanwhile",
        "daemon/store/index.py",
        "            if len(gone):\n                fresh.remove_ids(gone)\n            added, vectors",
        "            if False:\n                fresh.remove_ids(gone)\n            added, vectors",
        (START_BUILD + "test_the_built_index_is_swapped_in_with_the_files_added_and_removed_meanwhile",),
        "vectors removed during the start-up build stay in the index swapped in",
    ),
    Mutation(
        "start-build-adds-twice",
        "daemon/store/index.py",
        "            new = ~np.isin(added, went_in)\n",
        "            new = np.ones(len(added), dtype=bool)\n",
        (START_BUILD + "test_the_built_index_is_swapped_in_with_the_files_added_and_removed_meanwhile",),
        "a vector both read by the start-up build and added meanwhile is held twice (answered twice)",
    ),
    Mutation(
        "scanning-index-saved",
        "daemon/store/index.py",
        "        if self.start_build is not None:  # the next start builds it again",
        "        if False:  # the next start builds it again",
        (START_BUILD + "test_a_scanning_index_is_never_saved", START_SCAN_STOP),
        "a stop during the start-up build saves what came since the start as the index: the rest is lost",
    ),
    Mutation(
        "start-build-saved-after-the-interval",
        "daemon/service/run.py",
        "                building, next_persist = False, now",
        "                building = False",
        (START_SCAN,),
        "the index built at start waits the stretched interval (10 min at 1M) for its save: a restart builds again",
    ),
    Mutation(
        "scan-answer-unmarked",
        "daemon/service/handlers.py",
        '**({"exact_scan": True} if scanned else {})',
        "**{}",
        (START_SCAN,),
        "a search answered by a scan of the catalog does not say so: nothing tells why it was slow",
    ),
    Mutation(
        "scan-note-not-printed",
        "cli/search.py",
        '    if reply.get("exact_scan"):\n',
        "    if False:\n",
        (START_SCAN,),
        "`imgd search` prints no note when its answer came from a scan of the catalog",
    ),
    Mutation(
        "scan-status-without-progress",
        "daemon/store/index.py",
        '**({"scan": {"step": start.step, "filled": start.filled, "total": start.total}} if start else {}),',
        "**{},",
        (START_BUILD + "test_a_scanning_index_answers_what_the_exact_index_does_with_and_without_a_filter",),
        "`imgd status` does not say the index is being built, nor how far",
    ),
    Mutation(
        "scan-status-not-shown",
        "cli/render.py",
        '            line += f"; being built ({scan_progress(scan)}), searches scan the catalog meanwhile"\n',
        "            pass\n",
        (START_SCAN,),
        "`imgd status` prints nothing of the start-up build",
    ),
    Mutation(
        "scan-ignores-stop",
        "daemon/store/index.py",
        "                if self._closed:\n                    raise ImgdError(",
        "                if False:\n                    raise ImgdError(",
        (START_BUILD + "test_a_closed_index_stops_its_build_and_its_scans",),
        "a scanning search goes on reading the whole catalog after the daemon is told to stop",
    ),
    Mutation(
        "start-build-not-cancelled",
        "daemon/store/index.py",
        "                if self._cancel.wait(delay) if delay else self._cancel.is_set():\n",
        "                if time.sleep(delay) if delay else False:\n",
        (START_BUILD + "test_a_closed_index_stops_its_build_and_its_scans",),
        "a stop does not cancel the start-up build: it runs on (minutes at 1M) with the process exiting",
    ),
    Mutation(
        "model-change-keeps-scanning",
        "daemon/store/index.py",
        "            self.start_build = None  # the new vectors are whole",
        "            pass  # the new vectors are whole",
        (START_BUILD + "test_a_model_change_ends_the_scan",),
        "after a model change during the start-up build the index is never saved again",
    ),
    Mutation(
        "auto-tie-reopen-failure-fails-the-measurement",
        "daemon/embedders/choice.py",
        "            except (OnnxUnavailable, ModelUnavailable) as exc:  # its cache would not open again",
        "            except ZeroDivisionError as exc:  # its cache would not open again",
        (
            "tests/integration/test_backends.py::"
            "test_a_tied_candidate_whose_tower_will_not_open_again_is_left_out_not_the_measurement",
        ),
        "a tied candidate whose tower fails its second open ends the whole first run with that error",
    ),
    Mutation(
        "ivf-kept-where-it-scans-most-lists",
        "daemon/store/ivf.py",
        "    return index.nlist < 8 or index.nprobe <= index.nlist // 2",
        "    return True",
        ("tests/unit/test_index.py::test_vectors_that_do_not_cluster_keep_exact_search_past_the_exact_limit",),
        "vectors that do not cluster get an IVF that probes most of its lists: slower than exact search, and lossy",
    ),
]


# -- running ------------------------------------------------------------------------------------


def copy_tree(dest: Path) -> None:
    """The working tree as git sees it (tracked and untracked, not ignored), benchmarks aside."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        rel = os.fsdecode(raw)
        if rel.startswith(SKIP):
            continue
        source = REPO / rel
        if not source.is_file() and not source.is_symlink():
            continue  # deleted in the working tree
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)


def environment(copy: Path, packages: Path) -> dict[str, str]:
    package = packages / "imgd"
    package.mkdir(parents=True)
    for name, folder in PACKAGES.items():
        (package / name).symlink_to(copy / folder, target_is_directory=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(packages), env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_tests(copy: Path, env: dict[str, str], tests: tuple[str, ...]) -> tuple[int, str, float]:
    started = time.monotonic()
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        done = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return -1, output + f"\n(timed out after {TIMEOUT:.0f}s)", time.monotonic() - started
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


def check_imports(env: dict[str, str], packages: Path) -> None:
    """The copy's code, not the editable install's, must be what `import imgd.daemon` finds."""
    probe = "import imgd.daemon, imgd.cli; print(imgd.daemon.__file__); print(imgd.cli.__file__)"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    for line in out.split():
        if not line.startswith(str(packages)):
            raise SystemExit(f"mutants: the copy is not what gets imported ({line}); check PYTHONPATH handling")


def apply(copy: Path, mutation: Mutation) -> str | None:
    """Apply the mutation (every edit of it) in the copy; None if done, else why it could not be."""
    for file, original, replacement in ((mutation.file, mutation.original, mutation.replacement), *mutation.also):
        path = copy / file
        if not path.exists():
            return f"{file} does not exist"
        text = path.read_text()
        found = text.count(original)
        if found != 1:
            return f"the original snippet occurs {found} times in {file} (expected once)"
        path.write_text(text.replace(original, replacement))
    return None


def first_failure(output: str) -> str:
    match = re.search(r"^(?:FAILED|ERROR) (.+?)(?: - |$)", output, re.MULTILINE)
    return match.group(1) if match else "?"


def check(mutation: Mutation, workdir: Path) -> tuple[str, str, float]:
    """(verdict, detail, seconds) for one mutation, in a fresh copy of its own."""
    copy, packages = workdir / mutation.name / "repo", workdir / mutation.name / "packages"
    copy_tree(copy)
    problem = apply(copy, mutation)
    if problem:
        return "STALE", problem, 0.0
    code, output, seconds = run_tests(copy, environment(copy, packages), mutation.tests)
    if code == 1:
        return "CAUGHT", f"by {first_failure(output)}", seconds
    if code == 0:
        return "SURVIVED", "every listed test passed", seconds
    tail = "\n".join(output.strip().splitlines()[-15:])
    return "ERROR", f"pytest exited {code}:\n{tail}", seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="run only this mutation")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="mutations checked at once (default 1)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--no-baseline", action="store_true", help="skip running the tests on the unmutated copy")
    args = parser.parse_args(argv)

    names = {m.name for m in MUTATIONS}
    unknown = set(args.only) - names
    if unknown:
        parser.error(f"unknown mutation(s): {', '.join(sorted(unknown))}")
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.name:34} {m.file:20} {m.why}")
        return 0

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="imgd-mutants-") as tmp:
        workdir = Path(tmp)
        if not os.environ.get("IMGD_TEST_MODEL_DIR"):  # build the tiny test model once, not once per copy
            model = workdir / "tiny-clip"
            subprocess.run([sys.executable, str(REPO / "tests" / "clipkit.py"), str(model)], check=True)
            os.environ["IMGD_TEST_MODEL_DIR"] = str(model)
        baseline, packages = workdir / "baseline" / "repo", workdir / "baseline" / "packages"
        copy_tree(baseline)
        env = environment(baseline, packages)
        check_imports(env, packages)
        if not args.no_baseline:
            tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
            code, output, seconds = run_tests(baseline, env, tests)
            if code != 0:
                print(output[-4000:])
                print(f"mutants: the unmutated code fails its own tests (exit {code}); fix that first.")
                return 2
            print(f"baseline: {len(tests)} tests pass unmutated ({seconds:.0f}s)", flush=True)

        results: dict[str, tuple[str, str, float]] = {}

        def one(mutation: Mutation) -> None:
            results[mutation.name] = verdict = check(mutation, workdir)
            print(f"{verdict[0]:9} {mutation.name:34} {verdict[2]:6.1f}s  {verdict[1]}", flush=True)

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            list(pool.map(one, chosen))

    counts = {v: sum(r[0] == v for r in results.values()) for v in ("CAUGHT", "SURVIVED", "STALE", "ERROR")}
    print(
        f"\n{len(results)} mutations: "
        + ", ".join(f"{n} {v.lower()}" for v, n in counts.items())
        + f" in {time.monotonic() - started:.0f}s"
    )
    for name, (verdict, detail, _) in results.items():
        if verdict != "CAUGHT":
            print(f"  {verdict}: {name}: {detail}")
    return 0 if counts["CAUGHT"] == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
