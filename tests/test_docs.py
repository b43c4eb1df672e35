"""The README and docs/ stay true: short README, every command tested, the
policy reference matching the schema, no dead link.

A shell command in the docs is a line of a ```sh block (a line ending in a
backslash goes on on the next one; `#` starts a comment). No other shell
block (bash, console, shell) and no `$ ` prompt is used, so every command is
found. Each command falls under the first of RULES that claims it, which says
how it is tested; a command no rule claims fails
`test_every_command_is_classified`.

- cli: quick and self-contained, run for real; must exit 0.
- env: `export NAME=...`, run; the variable holds for the commands after it.
- server: started, probed over HTTP, and left running for the commands after
  it in the same file (a reader's second terminal); stopped when a later
  server takes its port, and at the end of the file.
- taxii: the reference TAXII 2.1 server (medallion), started and probed as
  a server is.
- client: `curl`, run with `--fail` against the server running on its port.
- quick-script: a bench helper fast at the scale given, run for real.
- long-script: a benchmark or a long check: the file must exist and every
  flag it is given must be one its `--help` lists.
- install: pip and apt-get: the extras, packages or files they name must
  exist; CI's own steps must match `.ci/run`.
- container: docker: the files named must exist and the policy be mounted
  where the image reads it.

Each file's commands run in order in a directory of their own, holding the
project's examples/, tests/ and bench/ and the files in FIXTURES. The docs/
pages may assume the variables in ENV; the README assumes none, so its
first-hour flow must set what it uses. Ports named in a file are mapped to
free ones, in every command of that file alike.

Other blocks: ```python parses and what it imports exists, ```json parses,
```yaml is a policy (or part of one) that loads.

    python3 tests/test_docs.py --tables   # writes the generated tables into docs/
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from tests.servers import free_port, serve_in_thread

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES = 250
SIGNALS_BEGIN, SIGNALS_END = "<!-- signals: begin -->", "<!-- signals: end -->"
DEGRADE_BEGIN, DEGRADE_END = "<!-- degrade: begin -->", "<!-- degrade: end -->"

# What a reader of docs/ is assumed to have set (a reader of the README, nothing).
ENV = {
    "GUARDGATE_SECRET": "docs-secret-0123456789",
    "GUARDGATE_WATERMARK_KEY": "docs-watermark-0123456789",
    "GUARDGATE_ADMIN_TOKEN": "docs-admin-token-0123456789",
}
# And the files: answers collected from a model, to look for a watermark in.
FIXTURES = {
    "answers.jsonl": "\n".join(json.dumps({
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
    }) for text in (
        "It is simple to use the tool: you will need a large file and a small change.",
        "Do not start the server twice; it is better to stop it first.",
    )) + "\n",
}
SHARED = ("examples", "tests", "bench")  # the project's folders a command may name
SERVER_PORTS = {"serve": 8080, "demo": 8000, "toy": 8000, "uvicorn": 8000}  # their defaults
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


# -- reading the docs ----------------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    lang: str
    text: str


@dataclass(frozen=True)
class Command:
    doc: Path
    line: int
    text: str

    def __str__(self) -> str:
        return f"{_name(self.doc)}:{self.line}: {self.text}"


def blocks(doc: Path) -> Iterator[Block]:
    lines = doc.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = re.match(r"^\s*```\s*(\S*)", lines[i])
        if not opening:
            i += 1
            continue
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        yield Block(doc, start, opening.group(1).lower(), "\n".join(body))
        i += 1


def commands(doc: Path) -> list[Command]:
    found: list[Command] = []
    for block in blocks(doc):
        if block.lang != "sh":
            continue
        pending, first = "", 0
        for offset, raw in enumerate(block.text.splitlines()):
            if not pending:
                first = block.line + offset + 1
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1].strip() + " "
                continue
            text = _strip_comment(pending + raw.strip()).strip()
            pending = ""
            if text:
                found.append(Command(doc, first, text))
    return found


def _strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (a `#` outside quotes, after a space)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


# -- how each kind of command is tested ----------------------------------------------------

@dataclass
class Session:
    """One doc's commands, run in order as a reader would."""

    doc: Path
    workdir: Path
    env: dict[str, str]
    ports: dict[int, int]
    servers: dict[int, tuple[Command, subprocess.Popen[bytes]]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def localize(self, text: str) -> str:
        """The command with the doc's ports replaced by this session's."""
        def host(match: re.Match[str]) -> str:
            return f"{match.group(1)}:{self.ports.get(int(match.group(2)), match.group(2))}"

        def flag(match: re.Match[str]) -> str:
            return f"--port {self.ports.get(int(match.group(1)), match.group(1))}"

        text = re.sub(r"(127\.0\.0\.1|localhost):(\d+)", host, text)
        return re.sub(r"--port (\d+)", flag, text)

    def shell(self, text: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", "set -o pipefail\n" + text], cwd=self.workdir,
                              env=self.env, capture_output=True, text=True, timeout=timeout,
                              check=False)

    def fail(self, command: Command, why: str) -> None:
        self.failures.append(f"{command}\n    {why.strip()[-2000:]}")

    def stop(self, port: int) -> None:
        command, process = self.servers.pop(port)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, to the server and its workers
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
                self.fail(command, "did not stop on Ctrl-C within 15 s")

    def close(self) -> None:
        for port in list(self.servers):
            self.stop(port)


def run_cli(session: Session, command: Command) -> None:
    result = session.shell(session.localize(command.text))
    if result.returncode != 0:
        session.fail(command, f"exit {result.returncode}: {result.stderr or result.stdout}")


def run_keygen(session: Session, command: Command) -> None:
    """Writes the table where WordNet and nltk are installed; elsewhere it
    must say which command installs them."""
    result = session.shell(session.localize(command.text))
    missing = "apt-get install wordnet-base" in result.stderr or "guardgate[keygen]" in result.stderr
    if result.returncode != 0 and not missing:
        session.fail(command, f"exit {result.returncode}: {result.stderr or result.stdout}")


def run_server(session: Session, command: Command) -> None:
    text = command.text
    kind = "uvicorn" if text.startswith("uvicorn") else re.sub(
        r"^(python3 -m )?guardgate ", "", text).split()[0]
    given = re.search(r"--port (\d+)", text)
    port = session.ports[int(given.group(1)) if given else SERVER_PORTS[kind]]
    if port in session.servers:  # the reader stops the one before
        session.stop(port)
    text = session.localize(text) + ("" if given else f" --port {port}")
    log = session.workdir / f"server-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(["bash", "-c", "exec " + text], cwd=session.workdir,
                                   env=session.env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    session.servers[port] = (command, process)
    probe = f"http://127.0.0.1:{port}" + ("/" if kind == "toy" else "/_guardgate/healthz")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            session.fail(command, f"exited {process.returncode}: {log.read_text()}")
            session.servers.pop(port)
            return
        try:
            if httpx.get(probe, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    session.fail(command, f"{probe} did not answer 200 within 30 s: {log.read_text()}")


def run_taxii(session: Session, command: Command) -> None:
    """``medallion --port P CONFIG``: up once its discovery endpoint answers
    (401 without credentials)."""
    given = re.search(r"--port (\d+)", command.text)
    assert given is not None  # the rule's pattern names a port
    port = session.ports[int(given.group(1))]
    if port in session.servers:
        session.stop(port)
    log = session.workdir / f"taxii-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(["bash", "-c", "exec " + session.localize(command.text)],
                                   cwd=session.workdir, env=session.env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    session.servers[port] = (command, process)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            session.fail(command, f"exited {process.returncode}: {log.read_text()}")
            session.servers.pop(port)
            return
        try:
            httpx.get(f"http://127.0.0.1:{port}/taxii2/", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    session.fail(command, f"medallion on {port} did not answer within 30 s: {log.read_text()}")


def run_client(session: Session, command: Command) -> None:
    text = session.localize(command.text)
    for port in re.findall(r"(?:127\.0\.0\.1|localhost):(\d+)", text):
        if int(port) not in session.servers:
            session.fail(command, f"no server runs on {port} before this command")
            return
    run_cli(session, Command(command.doc, command.line, re.sub(r"^curl ", "curl --fail ", text)))


def export(session: Session, command: Command) -> None:
    """Sets the variable for the commands after it, as in the reader's shell."""
    name = command.text.split()[1].split("=")[0]
    result = session.shell(f'{command.text}\nprintf %s "${name}"')
    if result.returncode != 0 or not result.stdout:
        session.fail(command, f"exit {result.returncode}: {result.stderr}")
    session.env[name] = result.stdout


def check_script(session: Session, command: Command) -> None:
    argv = shlex.split(command.text)[1:]
    script = ROOT / argv[0]
    if not script.is_file():
        session.fail(command, f"{argv[0]} does not exist")
        return
    flags = {arg.split("=")[0] for arg in argv[1:] if arg.startswith("--")}
    if not flags:
        return
    result = session.shell(f"python3 {shlex.quote(str(script))} --help", timeout=60)
    missing = [flag for flag in sorted(flags) if flag not in result.stdout.split()
               and f"{flag}," not in result.stdout and f"[{flag}" not in result.stdout]
    if result.returncode != 0 or missing:
        session.fail(command, f"--help does not list {missing}: {result.stdout}{result.stderr}")


def check_pip(session: Session, command: Command) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    requirements = [*project["dependencies"], *(r for group in extras.values() for r in group)]
    named = {re.split(r"[<>=!~;\[ ]", req)[0].lower() for req in requirements}
    for spec in (arg for arg in shlex.split(command.text)[4:] if not arg.startswith("-")):
        path, _, wanted = spec.partition("[")
        if path.startswith("."):
            if not (ROOT / path / "pyproject.toml").is_file():
                session.fail(command, f"{path} is not a project")
            for extra in filter(None, wanted.rstrip("]").split(",")):
                if extra not in extras:
                    session.fail(command, f"pyproject.toml has no extra [{extra}]")
        elif spec.lower() not in named:
            session.fail(command, f"{spec} is not a dependency named in pyproject.toml")


def check_apt(session: Session, command: Command) -> None:
    packages = [arg for arg in shlex.split(command.text)[2:] if not arg.startswith("-")]
    if not packages:
        session.fail(command, "no package named")
    if not shutil.which("apt-cache") or not any(Path("/var/lib/apt/lists").glob("*Packages*")):
        return  # not a Debian machine, or no package lists yet: nothing to look names up in
    for package in packages:
        result = session.shell(f"apt-cache show {shlex.quote(package)}", timeout=60)
        if result.returncode != 0 and "No packages found" in result.stderr + result.stdout:
            session.fail(command, f"no Debian package {package}")


def check_ci(session: Session, command: Command) -> None:
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    same = [line for line in ci if line == command.text]
    if not same:
        session.fail(command, "is not what .ci/run runs")


def check_container(session: Session, command: Command) -> None:
    argv = shlex.split(command.text)
    if argv[1] == "build" and not (ROOT / argv[-1] / "Dockerfile").is_file():
        session.fail(command, f"no Dockerfile in {argv[-1]}")
    if "-f" in argv and not (ROOT / argv[argv.index("-f") + 1]).is_file():
        session.fail(command, f"{argv[argv.index('-f') + 1]} does not exist")
    if argv[1] == "run":
        dockerfile = (ROOT / "Dockerfile").read_text()
        for i, arg in enumerate(argv):
            if arg == "-v":
                source, target = argv[i + 1].split(":")[:2]
                if not (ROOT / source.replace("$PWD/", "")).is_file():
                    session.fail(command, f"{source} does not exist")
                if target not in dockerfile:
                    session.fail(command, f"the image does not read {target}")


RULES: list[tuple[str, str, Callable[[Session, Command], None]]] = [
    ("install", r"python3 -m pip install( -[eq])*( \S+)+", check_pip),
    ("install", r"apt-get install( -y)?( [a-z0-9.+-]+)+", check_apt),
    ("install", r"python3 -m pytest -q", check_ci),
    ("container", r"docker (build|run|compose) .*", check_container),
    ("quick-script", r"python3 bench/simulate\.py( --seed \d+)? --scale 0\.0\d+ --out \S+",
     run_cli),
    ("long-script", r"python3 (bench/\w+|tests/security_mutations)\.py( --?[\w-]+( \S+)?)*",
     check_script),
    ("server", r"(python3 -m )?guardgate (serve|demo|toy)( .*)?", run_server),
    ("server", r"uvicorn [\w.]+:\w+( .*)?", run_server),
    ("taxii", r"medallion --port \d+ \S+", run_taxii),
    ("client", r"curl .*", run_client),
    ("env", r"export [A-Z_][A-Z0-9_]*=.+", export),
    ("cli", r"(python3 -m )?guardgate (--version|--help)", run_cli),
    ("cli", r"(python3 -m )?guardgate (check|schema|init|replay|solve|detect)( .*)?", run_cli),
    ("cli", r"(python3 -m )?guardgate intel (export|import|push)( .*)?", run_cli),
    ("cli", r"(python3 -m )?guardgate watermark keygen( .*)?", run_keygen),
]


def classify(command: Command) -> tuple[str, Callable[[Session, Command], None]] | None:
    for kind, pattern, handler in RULES:
        if re.fullmatch(pattern, command.text):
            return kind, handler
    return None


# -- the tests -----------------------------------------------------------------------------

def _name(doc: Path) -> str:
    return str(doc.relative_to(ROOT)) if doc.is_relative_to(ROOT) else str(doc)


def test_the_readme_is_a_short_guide() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


def test_the_readme_states_the_install_and_test_commands_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    readme = {command.text for command in commands(ROOT / "README.md")}
    pytest_line = next(line.strip() for line in ci if " -m pytest" in line)
    install_line = next(line.strip() for line in ci if " -m pip install" in line)
    assert pytest_line in readme
    assert install_line.replace(" -q ", " ") in readme


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_shell_commands_follow_the_convention(doc: Path) -> None:
    text = doc.read_text()
    shells = ("bash", "shell", "console", "zsh", "shell-session")
    other = [b for b in blocks(doc) if b.lang in shells]
    assert not other, f"shell blocks must be ```sh: lines {[b.line for b in other]}"
    prompts = [i + 1 for i, line in enumerate(text.splitlines()) if line.lstrip().startswith("$ ")]
    assert not prompts, f"no `$ ` prompts: lines {prompts}"


def test_every_command_is_classified() -> None:
    unclassified = [str(c) for doc in DOCS for c in commands(doc) if classify(c) is None]
    assert not unclassified, "commands no rule tests:\n" + "\n".join(unclassified)


@pytest.fixture(scope="module")
def challenge() -> Iterator[str]:
    """A real challenge token, as a gateway that challenges everyone hands out."""
    from guardgate import GuardGate
    from guardgate.toy import create_toy_app

    policy = {"tiers": {"everyone": {"score": 0, "challenge": {"difficulty": 6}}},
              "challenge": {"secret": ENV["GUARDGATE_SECRET"]}}
    with serve_in_thread(GuardGate(create_toy_app(), policy=policy)) as base:
        answer = httpx.post(
            base + "/v1/chat/completions", headers={"authorization": "Bearer k"},
            json={"model": "toy-1", "messages": [{"role": "user", "content": "Hi"}]})
    header = answer.headers.get("www-authenticate", "")
    token = re.search(r'challenge="([^"]+)"', header)
    assert answer.status_code == 401 and token, (answer.status_code, header)
    yield token.group(1)


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_every_command_in_the_doc_works(doc: Path, tmp_path: Path, challenge: str) -> None:
    found = commands(doc)
    for name in SHARED:
        (tmp_path / name).symlink_to(ROOT / name)
    for name, content in FIXTURES.items():
        (tmp_path / name).write_text(content)
    named = {int(port) for c in found
             for port in re.findall(r"(?:127\.0\.0\.1:|localhost:|--port )(\d+)", c.text)}
    named |= set(SERVER_PORTS.values())
    # A newcomer reading the README has set nothing; the docs assume ENV.
    bare = {k: v for k, v in os.environ.items() if k not in ENV}
    env = bare if doc.name == "README.md" else {**bare, **ENV, "CHALLENGE": challenge}
    session = Session(doc, tmp_path, env, {port: free_port() for port in named})
    try:
        for command in found:
            rule = classify(command)
            if rule is not None:  # the unclassified fail test_every_command_is_classified
                rule[1](session, command)
    finally:
        session.close()
    assert not session.failures, "\n".join(session.failures)


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_code_blocks_parse(doc: Path) -> None:
    from guardgate.policy import load_policy_text

    for block in blocks(doc):
        where = f"{_name(doc)}:{block.line}"
        if block.lang == "python":  # parses, and what it imports exists
            tree = ast.parse(block.text, where)
            imports: list[ast.stmt] = [
                node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
            exec(compile(ast.Module(imports, type_ignores=[]), where, "exec"), {})  # noqa: S102
        elif block.lang == "json":
            json.loads(block.text)
        elif block.lang == "yaml":  # every YAML block is a policy, or a part of one
            assert isinstance(yaml.safe_load(block.text), dict), where
            load_policy_text(block.text, env=ENV)


def schema_keys(node: dict[str, Any], root: dict[str, Any], path: str = "") -> set[str]:
    """Every key path the schema allows: `a.b`, `list[].key`, `map.NAME.key`."""
    if "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    keys: set[str] = set()
    for combined in ("anyOf", "oneOf", "allOf"):
        for sub in node.get(combined, []):
            keys |= schema_keys(sub, root, path)
    if isinstance(node.get("items"), dict):
        keys |= schema_keys(node["items"], root, path + "[]")
    named = [*node.get("patternProperties", {}).values()]
    if isinstance(node.get("additionalProperties"), dict):
        named.append(node["additionalProperties"])
    for sub in named:
        keys.add(path + ".NAME")
        keys |= schema_keys(sub, root, path + ".NAME")
    for name, sub in node.get("properties", {}).items():
        key = f"{path}.{name}" if path else name
        keys.add(key)
        keys |= schema_keys(sub, root, key)
    return keys


def schema_names(node: Any) -> set[str]:
    """Names the schema enumerates for a mapping's keys (e.g. the risk signals)."""
    names: set[str] = set()
    if isinstance(node, dict):
        names |= set(node.get("propertyNames", {}).get("enum", []))
        for value in node.values():
            names |= schema_names(value)
    elif isinstance(node, list):
        for value in node:
            names |= schema_names(value)
    return names


def test_the_policy_reference_names_every_key_of_the_schema() -> None:
    result = subprocess.run(["guardgate", "schema"], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    reference = (ROOT / "docs" / "policy.md").read_text()
    documented: set[str] = set()
    in_table = False
    for line in reference.splitlines():
        if line.startswith("| key | default | meaning |"):
            in_table = True
        elif line.startswith("<!--"):
            continue  # a generated table's marker
        elif not line.startswith("|"):
            in_table = False
        elif in_table and (key := re.match(r"\| `([^`]+)` \|", line)):
            documented.add(key.group(1))
    expected = schema_keys(schema, schema)
    assert not expected - documented, f"undocumented keys: {sorted(expected - documented)}"
    assert not documented - expected, f"keys the schema lacks: {sorted(documented - expected)}"
    unnamed = [n for n in sorted(schema_names(schema)) if f"`{n}`" not in reference]
    assert not unnamed, f"names missing from docs/policy.md: {unnamed}"


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_every_test_the_docs_name_exists(doc: Path) -> None:
    missing = []
    for path, name in re.findall(r"((?:tests/(?:\w+/)?)?test_\w+\.py)::(test_\w+)",
                                 doc.read_text()):
        source = ROOT / (path if path.startswith("tests/") else "tests/" + path)
        if not source.is_file() or f"def {name}(" not in source.read_text():
            missing.append(f"{path}::{name}")
    assert not missing, f"no such test: {missing}"


def _anchors(doc: Path) -> set[str]:
    anchors = set()
    for line in doc.read_text().splitlines():
        if heading := re.match(r"^#+\s+(.*)", line):
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            anchors.add(slug)
    return anchors


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_every_relative_link_points_to_a_file(doc: Path) -> None:
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.DOTALL)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        linked = (doc.parent / path).resolve() if path else doc
        if not linked.exists() or (anchor and linked.suffix == ".md"
                                   and anchor not in _anchors(linked)):
            broken.append(target)
    assert not broken, f"broken links: {broken}"


def generated_tables() -> list[tuple[Path, str, str, str]]:
    """The docs' tables written from the code: (file, begin marker, end
    marker, the table)."""
    from guardgate.policy.catalogue import markdown_table
    from guardgate.policy.schema_degrade import reference_rows

    return [
        (ROOT / "docs" / "pipeline.md", SIGNALS_BEGIN, SIGNALS_END, markdown_table()),
        (ROOT / "docs" / "policy.md", DEGRADE_BEGIN, DEGRADE_END,
         "| key | default | meaning |\n| --- | --- | --- |\n" + reference_rows()),
    ]


def _between(text: str, begin: str, end: str) -> tuple[int, int]:
    return text.index(begin) + len(begin), text.index(end)


def test_generated_tables_are_current() -> None:
    for path, begin, end, table in generated_tables():
        text = path.read_text()
        start, stop = _between(text, begin, end)
        assert text[start:stop].strip() == table, (
            f"{path.name}: regenerate it: python3 tests/test_docs.py --tables")


def write_tables() -> None:
    for path, begin, end, table in generated_tables():
        text = path.read_text()
        start, stop = _between(text, begin, end)
        path.write_text(text[:start] + "\n" + table + "\n" + text[stop:])


if __name__ == "__main__":
    if sys.argv[1:] != ["--tables"]:
        raise SystemExit("usage: python3 tests/test_docs.py --tables")
    write_tables()
