"""Every shell block of README.md and docs/*.md, run as written against `manage.py run` (what
`make run` starts: the web server and a worker), as a reader would in a second terminal.

A block runs in a fresh `bash -eo pipefail`, so every command of it must succeed, curl's
included; in a checkout of its own (a copy of the repository's tracked files, with its
`.venv`), so the files it writes stay there; with the environment of a new terminal: the
server's `PORT` and `DATABASE_URL` (the test database, where `make run` would use db.sqlite3)
and none of the test run's settings, so a block sets what it needs itself (`DJANGO_DEBUG=1` for
manage.py, a token from `manage.py api_user`). It must leave no operation in flight. A block
that cannot run says why, in a comment on the line before it: `<!-- not run: <the reason> -->`."""

import json
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from operations.models import Operation, UploadedRow
from tests.conftest import ROOT, database_url
from tests.support import start_manage_run, wait_stopped

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELLS = ("sh", "bash", "shell", "console")
NOT_RUN = re.compile(r"<!--\s*not run:(.*?)-->")
TAG = re.compile(r"<!--\s*([\w-]+):.*?-->")
# A commit hash, or anything that looks like one: history is in git, not in the docs.
HASH = re.compile(r"\b[0-9a-f]{7,40}\b")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    not_run: str | None  # the reason, when the block says it cannot run
    tag: str | None  # a comment naming extra checks (`try-it-curl`)

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def script(self) -> str:
        if self.language != "console":
            return self.code
        # `$ command` lines (and their continuation lines); the rest is output.
        commands, continued = [], False
        for line in self.code.splitlines():
            if line.startswith("$ ") or continued:
                commands.append(line[2:] if line.startswith("$ ") and not continued else line)
                continued = line.endswith("\\")
        return "\n".join(commands) + "\n"


def shell_blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = re.fullmatch(r"```(\w*)\s*", lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        if fence.group(1) in SHELLS:
            before = lines[i - 1] if i else ""
            not_run = NOT_RUN.search(before)
            tag = TAG.search(before)
            blocks.append(
                Block(
                    path=path,
                    line=i + 1,
                    language=fence.group(1),
                    code="\n".join(lines[i + 1 : end]) + "\n",
                    not_run=not_run.group(1).strip() if not_run else None,
                    tag=tag.group(1) if tag and not not_run else None,
                )
            )
        i = end + 1
    return blocks


BLOCKS = [block for path in DOCS for block in shell_blocks(path)]


# --- what the docs may say, read without running anything ------------------------------------


def test_every_shell_block_runs_or_says_why_not():
    assert len([block for block in BLOCKS if block.not_run is None]) >= 5, [block.name for block in BLOCKS]
    for block in BLOCKS:
        if block.not_run is not None:
            assert len(block.not_run.split()) >= 3, f"{block.name}: `not run:` needs a reason"


def test_no_code_block_hides_shell_commands_without_a_language():
    """An unlabelled block of commands would escape the run; label it (sh, text, ini, ...)."""
    for path in DOCS:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip() == "```":
                continue  # closing fences are bare; opening ones must name a language
            if line.startswith("```"):
                assert re.fullmatch(r"```\w+\s*", line), f"{path}:{number}: {line}"


def test_the_docs_name_no_commit():
    """The one commit allowed is the one the current figures were measured at."""
    measured_at = []
    for path in DOCS:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if path.name == "performance.md" and "measured at" in line.lower():
                measured_at.append(line)
                continue
            assert not HASH.search(line), f"{path.relative_to(ROOT)}:{number}: {line}"
    assert len(measured_at) == 1, measured_at


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def test_relative_links_lead_somewhere():
    for path in DOCS:
        text = path.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http:, https:, mailto:
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            assert linked.exists(), f"{path.relative_to(ROOT)}: {target}"
            if anchor and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.*)$", linked.read_text(), re.M)
                assert anchor in {slug(heading) for heading in headings}, f"{path.relative_to(ROOT)}: {target}"


# --- the blocks, run ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(django_db_setup, tmp_path_factory):
    """`manage.py run` on the test database, for all the blocks: its port."""
    home = tmp_path_factory.mktemp("server")
    (home / "media" / "incoming").mkdir(parents=True)
    for name in (".venv", "manage.py"):
        (home / name).symlink_to(ROOT / name)
    run, port = start_manage_run(media_root=home / "media", log_path=home / "run.log", cwd=home, PYTHONPATH=str(ROOT))
    yield port
    os.killpg(run.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
    exit_code = wait_stopped(run, port)
    log = (home / "run.log").read_text(errors="replace")
    # One Ctrl-C stopped both the server and the worker, the worker after its chunk.
    assert exit_code == 0, log
    assert re.search(r"worker \S+: stopped", log), log


def checkout(directory: Path) -> Path:
    """A copy of the repository's tracked files, with its `.venv` linked: the blocks run their
    tools on it (ruff skips linked directories), and what they write stays in it."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in tracked.splitlines():
        if (ROOT / name).is_file():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, directory / name)
    (directory / ".venv").symlink_to(ROOT / ".venv")
    return directory


def reader_environment(port: int) -> dict[str, str]:
    """A new terminal's: none of the test run's settings, make's or Django's."""
    cleared = ("DJANGO_", "LONG_TASK_", "MAKE", "MFLAGS", "PYTEST_", "PYTHONPATH")
    environment = {name: value for name, value in os.environ.items() if not name.startswith(cleared)}
    return {**environment, "PORT": str(port), "DATABASE_URL": database_url()}


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_shell_block_runs_as_written(block: Block, request, tmp_path):
    if block.not_run is not None:
        pytest.skip(f"not run: {block.not_run}")
    port = request.getfixturevalue("server")
    run = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", block.script()],
        cwd=checkout(tmp_path / "checkout"),
        env=reader_environment(port),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, f"{block.name}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    in_flight = Operation.objects.filter(state__in=["queued", "running", "pausing", "terminating"])
    assert not in_flight.exists(), f"{block.name} left {list(in_flight.values('id', 'state'))}"
    if block.tag in CHECKS:
        CHECKS[block.tag](run.stdout)


def check_try_it_with_curl(stdout: str) -> None:
    """The README's curl walk-through does what the text under it says."""
    # Pretty-printed JSON answers, between the client's plain lines.
    answers = [json.loads(found) for found in re.findall(r"^\{$.*?^\}$", stdout, re.S | re.M)]
    started, paused, status_1, status_2, resumed, final, paused_2, terminated = answers
    assert started["message"] == "upload started"
    assert paused["success"] is True and paused["state"] == "paused"
    assert paused["lines_finished"] < 1_000_000, "paused before the end"
    assert status_1 == status_2, "a paused operation's status holds still"
    assert status_1["lines_finished"] == paused["lines_finished"]
    assert resumed["state"] == "queued"
    assert re.search(r"^operation \d+ completed in .*: 1,000,000 rows imported", stdout, re.M), stdout
    assert final["state"] == "completed", final
    assert final["lines_finished"] == 1_000_000 and final["is_finished"] is True
    assert UploadedRow.objects.filter(operation_id=final["op_id"]).count() == 1_000_000

    assert paused_2["state"] == "paused"
    assert terminated["state"] == "terminated", terminated
    assert not UploadedRow.objects.filter(operation_id=terminated["op_id"]).exists()
    assert not Operation.objects.get(pk=terminated["op_id"]).file


CHECKS = {"try-it-curl": check_try_it_with_curl}
