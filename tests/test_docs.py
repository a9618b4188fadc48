"""The docs' walkthroughs, run as written, and the plan reference against the schema.

A walkthrough is a ```console block: `$ command` lines (a line ending in `\\`, or with a
quote left open, goes on on the next), each followed by what it prints. Every page under
docs/ (and README.md) with such blocks is one test: its blocks run in order, in one
temporary folder holding a copy of plans/ and fleetrel/ (a checkout, as far as the
pages use it), each command through `bash -c`, with the venv's bin folder first on
PATH, COLUMNS=100, no AWS credentials and no AWS config (a newcomer's shell). A command
passes when

- it exits with the code its comment names (`# exit 130` at the start of a comment; 0
  when none does), and
- the lines shown under it appear in its output (stdout and stderr), in that order, once
  both are normalised (`normalise`); a `…` line stands for lines left out.

A page's ```python blocks run too, in their place among its commands, with the venv's
python, and must exit 0.

`$ fleetrel emulator ... --port 5077` starts in the background (the page tells the reader
to use a second terminal) on the first free port from 5077 up (four digits, as 5077, so a
line that names the URL wraps where the page shows it); that port then replaces 5077 in
every later command, and 5077 replaces it in every output. It stops when the page ends or
starts another emulator.

Normalising (the placeholders, so a page can show real output that varies run to run):
run ids and clientTokens (UUIDs) -> <uuid>; timestamps -> <time>; the progress line's
`[   3s]` -> `[<s>]`, `ETA 12s` -> `ETA <s>`, `rate 9.5/10 per s` -> `rate <rate>`,
`throttles 1 retries 1` -> `throttles <n> retries <n>` (and `1 throttles, 1 retries`); the table rows whose values
depend on timing (elapsed, calls sent, mean calls/s, throttled, throttles, retries, final
rate) -> `<v>`; in JSON, `"throttled": N` and `"throttles": N` -> `<n>`;
the journal's keyed digests `hmac:…` -> `hmac:<digest>`; rate changes in `fleetrel status` ->
`<rate change>`; who let a wave go (`root@vm`) -> `<user@host>`; table rules and padding
collapsed (a column's width follows its widest cell). Anything else must match as printed.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BIN = Path(sys.executable).parent
PAGE_PORT = "5077"  # the port the pages use (5000 is AirPlay's on macOS)
BLOCK = re.compile(r"^```(console|python)\n(.*?)^```", re.S | re.M)


@dataclass
class Command:
    line: str                                  # as written, continuations joined
    shown: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        match = re.search(r"#\s*exit (\d+)", self.line)
        return int(match.group(1)) if match else 0

    @property
    def starts_emulator(self) -> bool:
        return self.line.startswith("fleetrel emulator")


def walkthrough(text: str) -> list[Command]:
    """The commands of every console block of a page, in order, with what each shows."""
    commands: list[Command] = []
    for kind, block in BLOCK.findall(text):
        if kind == "python":  # run as it stands, with the venv's python; exit 0
            commands.append(Command(f"python - <<'PYTHON'\n{block}PYTHON"))
            continue
        lines = block.split("\n")
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("$ "):
                command = line[2:]
                while (command.endswith("\\") or not complete(command)) and i + 1 < len(lines):
                    i += 1
                    command = command + "\n" + lines[i]
                commands.append(Command(command))
            elif commands and line.strip():
                commands[-1].shown.append(line)
            i += 1
    return commands


def complete(command: str) -> bool:
    """False while a quote is open: the command goes on on the next line."""
    try:
        shlex.split(command, comments=True)
    except ValueError:
        return False
    return True


_RULES = re.compile(r"[─━═]+")
_BOX = re.compile(r"[│┃]")
_NORMAL = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z?"), "<time>"),
    (re.compile(r"^\[\s*\d+s\]"), "[<s>]"),
    (re.compile(r"ETA \d+s"), "ETA <s>"),
    (re.compile(r"rate [\d.]+/[\d.]+ (per s|calls/s)"), r"rate <rate> \1"),
    (re.compile(r"throttles \d+"), "throttles <n>"),
    (re.compile(r"retries \d+"), "retries <n>"),
    (re.compile(r"\d+ throttles, \d+ retries"), "<n> throttles, <n> retries"),
    (re.compile(r'"(throttled|throttles)": ?\d+'), r'"\1": <n>'),
    (re.compile(r"hmac:[0-9a-f]{16}"), "hmac:<digest>"),
    (re.compile(r"^(\| (elapsed|calls sent|mean calls/s|throttled|throttles|retries|final rate) \|) .* \|$"),
     r"\1 <v> |"),
    (re.compile(r"^[\d.]+s [\d.]+ -> [\d.]+ /s \(\w+\)$"), "<rate change>"),
    (re.compile(r"go by pause \([^)]*\)"), "go by pause (<user@host>)"),
    (re.compile(r"^[\w.-]+: [\d.]+s [\d.]+ -> [\d.]+ /s \(\w+\)$"), "<rate change>"),
]


def normalise(line: str) -> str:
    """One line as compared: see the module's docstring."""
    line = _BOX.sub("|", _RULES.sub("-", line))
    line = re.sub(r"\s+", " ", line).strip()
    for pattern, placeholder in _NORMAL:
        line = pattern.sub(placeholder, line)
    return line


def check_shown(command: Command, output: str) -> None:
    """The shown lines, normalised, appear in the output in order."""
    got = [normalise(line) for line in output.splitlines()]
    at = 0
    for shown in command.shown:
        want = normalise(shown)
        if want.startswith("…") or not want:
            continue
        for j in range(at, len(got)):
            if got[j] == want:
                at = j + 1
                break
        else:
            pytest.fail(f"$ {command.line}\nshows {shown!r}\n(normalised {want!r}), not in its output "
                        f"after line {at}:\n" + "\n".join(got))


def free_port() -> int:
    """A free port of as many digits as the pages' own, so that lines wrap where they show."""
    for port in range(int(PAGE_PORT), 10_000):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


class Emulator:
    """A page's `fleetrel emulator` command, in the background on a free port."""

    def __init__(self, command: Command, cwd: Path, env: dict[str, str]) -> None:
        port = free_port()
        line = re.sub(rf"--port {PAGE_PORT}\b", f"--port {port}", command.line.split("#")[0])
        assert f"--port {port}" in line, f"an emulator on a page says --port {PAGE_PORT}: {command.line}"
        self.proc = subprocess.Popen(["bash", "-c", "exec " + line], cwd=cwd, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            url = self.proc.stdout.readline().strip()  # its first line, once it is serving
            assert url.startswith("http://127.0.0.1:"), f"{command.line}: printed {url!r}"
            self.port = url.rsplit(":", 1)[1]
            check_shown(command, url.replace(self.port, PAGE_PORT))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def pages() -> list[Path]:
    return [p for p in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
            if any(not c.line.startswith("python - ") for c in walkthrough(p.read_text()))
            or "```python" in p.read_text()]


def shell_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", COLUMNS="100",
               AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    if "AWS_CA_BUNDLE" in os.environ:
        env["AWS_CA_BUNDLE"] = os.environ["AWS_CA_BUNDLE"]
    env.pop("NO_COLOR", None)
    return env


@pytest.mark.timeout(900)
@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_the_walkthroughs_of_a_page_run_as_written(page: Path, tmp_path: Path) -> None:
    # a checkout's folder, as far as the pages use it: the example plans and the package
    # (its demo plan; and `python` there imports it, as in a checkout)
    for folder in ("plans", "fleetrel"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns(
            "*.journal.jsonl*", "*-report.*", "*-undo.yaml", "*.key", "__pycache__"))
    env = shell_env()
    for tool in ("curl", "jq"):
        if re.search(rf"\| {tool} |^\$ {tool} ", page.read_text(), re.M) and shutil.which(tool) is None:
            pytest.fail(f"{page.name}'s walkthrough needs {tool}: install it (.ci/run does)")
    emulator: Emulator | None = None
    try:
        for command in walkthrough(page.read_text()):
            if command.starts_emulator:
                if emulator is not None:
                    emulator.stop()
                emulator = Emulator(command, tmp_path, env)
                continue
            line = command.line
            if emulator is not None:
                line = line.replace(f"127.0.0.1:{PAGE_PORT}", f"127.0.0.1:{emulator.port}")
            done = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=600)
            output = done.stdout
            if emulator is not None:
                output = output.replace(f"127.0.0.1:{emulator.port}", f"127.0.0.1:{PAGE_PORT}")
            assert done.returncode == command.exit_code, \
                f"$ {command.line}\nexit {done.returncode}, the page says {command.exit_code}:\n{output}"
            check_shown(command, output)
    finally:
        if emulator is not None:
            emulator.stop()


def test_the_runner_reads_continuations_comments_and_elisions() -> None:
    page = ("```console\n$ fleetrel run a.yaml \\\n    --yes   # exit 130: stopped\nwave 1/3\n…\n"
            "[   12s] 20/200 | rate 9.5/10 per s | throttles 2 retries 3 | ETA 4s\n```\n"
            "```sh\n$ not a walkthrough\n```\n")
    (command,) = walkthrough(page)
    assert command.line == "fleetrel run a.yaml \\\n    --yes   # exit 130: stopped" and command.exit_code == 130
    check_shown(command, "wave 1/3\nwave 2/3\n[    3s] 20/200 | rate 10.0/10 per s | throttles 0 retries 0 | ETA 11s\n")
    with pytest.raises(pytest.fail.Exception):
        check_shown(command, "[    3s] 20/200 | rate 10.0/10 per s | throttles 0 retries 0 | ETA 11s\nwave 1/3\n")
    assert normalise("│ elapsed      │   19.2 s │") == normalise("│ elapsed │ 4.2 s │")
    assert normalise("│ steps   │   200 │") != normalise("│ steps │ 201 │")


def _hooks():
    sys.path.insert(0, str(DOCS / "hooks"))
    try:
        import fleetrel_docs
    finally:
        sys.path.pop(0)
    return fleetrel_docs


def test_the_plan_reference_tables_name_every_field_of_the_schema() -> None:
    from fleetrel.plan import ReleasePlan

    schema = ReleasePlan.model_json_schema()
    tables = _hooks().schema_tables(schema)
    objects = {"ReleasePlan": schema, **schema["$defs"]}
    for name, obj in objects.items():
        section = tables.split(f"### {name} ", 1)
        assert len(section) == 2 or "properties" not in obj, f"no table for {name}"
        if "properties" in obj:
            rows = section[1].split("\n### ", 1)[0]
            missing = [field for field in obj["properties"] if f"| `{field}` |" not in rows]
            assert not missing, f"{name}: {missing} not in its table"
    assert "<!-- plan-schema -->" in (DOCS / "plan-reference.md").read_text()


def test_every_page_is_in_the_site_and_the_readme_stays_a_landing_page() -> None:
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def pages_of(nav):
        for item in nav:
            for value in item.values():
                yield from ([value] if isinstance(value, str) else pages_of(value))

    assert sorted(pages_of(config["nav"])) == sorted(p.name for p in DOCS.glob("*.md"))
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for page in [ROOT / "README.md", *DOCS.glob("*.md")]:
        assert not re.search(r"\bissue \d", page.read_text(), re.I), f"{page.name} names an issue number"


def test_the_site_builds_strict(tmp_path: Path) -> None:
    """`make docs` in little: every link and anchor resolves (the docs extra installed)."""
    pytest.importorskip("material", reason="the docs extra (mkdocs-material) is not installed")
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                           cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stderr
    assert "aioboto3" in (tmp_path / "site" / "index.html").read_text()  # the README, through the hook
