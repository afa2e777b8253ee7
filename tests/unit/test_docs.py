"""The docs stay true to the code: every setting with its default, every error message, the
Redis settings `up` gives its private Redis."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

from factorial_ws import constants
from factorial_ws.config import Config, env_name
from factorial_ws.gateway.conversation import INTERNAL_ERROR
from factorial_ws.gateway.server import ADMISSION_SLOTS
from factorial_ws.supervisor.redis_server import private_redis
from factorial_ws.worker.processes import QUIET_WORKER_OPTIONS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _documented_default(value: object) -> str:
    if value is None or value == ():
        return "unset"
    if isinstance(value, bool):
        return f"`{int(value)}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def test_operations_doc_lists_every_setting_with_its_default() -> None:
    table = (DOCS / "operations.md").read_text()
    defaults = Config()
    for field in dataclasses.fields(Config):
        row = f"| `{env_name(field.name)}` | {_documented_default(getattr(defaults, field.name))} |"
        assert row in table, f"docs/operations.md lacks the row {row}"


def error_messages() -> dict[str, str]:
    """Every error message of constants.py, by name: the constants of its block that starts with
    the comment ``# Error messages``, so that a message added there is checked here too."""
    source = Path(constants.__file__).read_text()
    block = source.split("# Error messages", 1)[1].split("\n\n", 1)[0]
    names = re.findall(r"^([A-Z_]+): Final = ", block, re.MULTILINE)
    return {name: getattr(constants, name) for name in names}


def test_the_error_messages_are_read_from_the_whole_block_of_constants() -> None:
    names = list(error_messages())
    assert names[0] == "JSON_DECODE_ERROR" and {"CLIENT_BUSY", "TASK_CANCELLED"} <= set(names)
    assert len(names) == len(set(error_messages().values())) >= 16


# The modules whose refusals reach a client of the gateway (the client library's are its own).
PACKAGE = Path(constants.__file__).parent
GATEWAY_SOURCES = [PACKAGE / "protocol.py", *sorted((PACKAGE / "gateway").glob("*.py"))]


def table_row(message: str, *, whole: bool) -> str:
    """The start of a row of the table of errors for ``message``; a prefix (``whole`` False)
    heads a row that goes on with the rest of its message."""
    return f"| `{message}` |" if whole else f"| `{message}"


def invalid_request_rows() -> dict[str, str]:
    """The table row of every ``INVALID_REQUEST + "what is wrong"`` the gateway's source writes,
    by where: a message with a value in it (``f"... at most {max_number}"``) as a prefix."""
    rows = {}
    for path in GATEWAY_SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Add)
                and isinstance(node.left, ast.Name)
                and node.left.id == "INVALID_REQUEST"
            ):
                continue
            detail = node.right
            if isinstance(detail, ast.Constant) and isinstance(detail.value, str):
                text, whole = detail.value, True
            elif isinstance(detail, ast.JoinedStr) and isinstance(detail.values[0], ast.Constant):
                text, whole = str(detail.values[0].value), False
            else:
                continue  # a model's own words (pydantic's), documented by their form
            rows[f"{path.name}:{node.lineno}"] = table_row(constants.INVALID_REQUEST + text, whole=whole)
    return rows


def test_the_invalid_request_messages_are_read_from_the_gateways_source() -> None:
    rows = set(invalid_request_rows().values())
    assert "| `Invalid request: missing field 'type'` |" in rows
    assert "| `Invalid request: binary frames are not supported; send JSON text` |" in rows
    assert "| `Invalid request: 'number' must be at most " in rows  # the value follows
    assert len(rows) >= 10


def test_protocol_doc_lists_every_error_message_in_its_table_of_errors() -> None:
    text = (DOCS / "protocol.md").read_text()
    # The gateway's own, which session.py defines beside the code that sends it.
    messages = {**error_messages(), "INTERNAL_ERROR": INTERNAL_ERROR}
    rows = {
        name: table_row(message, whole=not message.endswith(": "))  # a prefix: its rows
        for name, message in messages.items()
    }
    rows.update(invalid_request_rows())
    missing = {name: row for name, row in rows.items() if row not in text}
    assert not missing, f"docs/protocol.md's table of errors lacks the rows {missing}"


# --- docs/deployment.md: the Redis settings of `up` ------------------------------------------


DEPLOYMENT = DOCS / "deployment.md"


def redis_settings_rows() -> list[tuple[str, str]]:
    """(setting, the `up` column) of the Redis settings table."""
    rows = []
    for line in DEPLOYMENT.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`") and cells[3] != "`up`'s private Redis":
            rows.append((re.findall(r"`([^`]+)`", cells[0])[0], cells[3]))
    return rows


def test_the_deployment_doc_says_which_settings_up_gives_its_private_redis(tmp_path: Path) -> None:
    command = private_redis(Config(data_dir=tmp_path)).command()  # as `up` creates it: no password
    options = redis_options(command[1:])
    rows = redis_settings_rows()
    assert {name for name, _ in rows} >= {"maxmemory-policy", "maxmemory", "appendonly", "requirepass"}
    for name, up_column in rows:
        if up_column.startswith("set:"):
            value = re.findall(r"`([^`]*)`", up_column)[0]
            assert options.get(name) == value.strip('"'), (name, up_column, options)
        else:
            assert up_column.startswith("not set"), (name, up_column)
            assert name not in options, (name, up_column, options)
    assert not any(option.startswith("tls") for option in options)


def redis_options(arguments: list[str]) -> dict[str, str]:
    """``--name value...`` options of a redis-server command line, each value as one string."""
    options: dict[str, list[str]] = {}
    for argument in arguments:
        if argument.startswith("--"):
            current = options.setdefault(argument[2:], [])
        else:
            current.append(argument)
    return {name: " ".join(values) for name, values in options.items()}


# --- names and numbers the docs quote from the code ------------------------------------------


README = DOCS.parent / "README.md"
SOURCE = DOCS.parent / "src" / "factorial_ws"


def every_doc() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def code_logger_names() -> set[str]:
    """The names the package's modules log under: ``getLogger(__name__)`` is the module's own
    dotted name, ``getLogger("name")`` the name given."""
    names = set()
    for path in SOURCE.rglob("*.py"):
        module = ".".join(path.relative_to(SOURCE.parent).with_suffix("").parts)
        text = path.read_text()
        if "logging.getLogger(__name__)" in text:
            names.add(module)
        names.update(re.findall(r"logging\.getLogger\(\"([^\"]+)\"\)", text))
    return names


def documented_logger_names() -> dict[str, set[str]]:
    """Logger names the docs show, in text log lines (``INFO name: ...``) and JSON ones
    (``"logger": "name"``), by doc."""
    pattern = re.compile(
        r"\b(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) (factorial_ws[\w.]*):|\"logger\": \"([^\"]+)\""
    )
    found: dict[str, set[str]] = {}
    for doc in every_doc():
        for match in pattern.finditer(doc.read_text()):
            found.setdefault(doc.name, set()).add(match[1] or match[2])
    return found


def test_every_logger_the_docs_show_is_one_the_code_logs_under() -> None:
    documented = documented_logger_names()
    assert documented, "no log line found in the docs: has their form changed?"
    known = code_logger_names()
    assert "factorial_ws.gateway.session" in known, known
    wrong = {doc: names - known for doc, names in documented.items() if names - known}
    assert not wrong, f"loggers the code does not have: {wrong}; it has {sorted(known)}"


def test_the_docs_give_the_admission_slots_of_a_gateway_process() -> None:
    # "lets 64 requests at a time reach Redis", "at most 64 at a time per gateway process"
    pattern = re.compile(r"(?:lets|at most) (\d+) (?:requests )?at a time")
    stated = [(doc.name, int(n)) for doc in every_doc() for n in pattern.findall(doc.read_text())]
    assert {name for name, _ in stated} >= {"README.md", "protocol.md", "faults.md"}, stated
    wrong = [(name, n) for name, n in stated if n != ADMISSION_SLOTS]
    assert not wrong, f"ADMISSION_SLOTS is {ADMISSION_SLOTS}: {wrong}"


def _without_options(text: str) -> set[str]:
    return set(re.findall(r"--without-[a-z]+", text))


def test_the_worker_options_the_benchmarks_call_shipped_are_those_workers_run_with() -> None:
    text = (DOCS / "benchmarks.md").read_text()
    shipped_rows = [line for line in text.splitlines() if line.startswith("|") and "**shipped**" in line]
    for row in shipped_rows:
        assert _without_options(row) <= set(QUIET_WORKER_OPTIONS), row
    paragraph = text[text.index("\nShipped: ") :].split("\n\n")[0]
    assert _without_options(paragraph) == set(QUIET_WORKER_OPTIONS), paragraph


def _section_titles(text: str) -> list[tuple[int, str]]:
    """(offset, title) of each heading and each bold paragraph lead (``**Connections.**``)."""
    pattern = re.compile(r"^#+ (.+)$|^\*\*([^*]+?)\.?\*\*", re.MULTILINE)
    return [(match.start(), match[1] or match[2]) for match in pattern.finditer(text)]


def test_a_section_the_docs_point_to_as_above_or_below_is_there() -> None:
    wrong = []
    for doc in every_doc():
        text = doc.read_text()
        titles = _section_titles(text)
        for match in re.finditer(r"\"([^\"\n]+)\"\s+(below|above)\b", text):
            title, where = match[1], match[2]
            offsets = [offset for offset, heading in titles if heading.startswith(title)]
            before = any(offset < match.start() for offset in offsets)
            after = any(offset > match.start() for offset in offsets)
            if not (after if where == "below" else before):
                wrong.append(f'{doc.name}: "{title}" {where}')
    assert not wrong, wrong
