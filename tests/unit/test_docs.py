"""Keep docs/*.md and README.md true to the code.

- the columns docs/results.md lists for each table are, in order and with their types, those
  of a real results directory made by a short loopback run (and a two-trial sweep, with its
  own counters table);
- the run.json keys and the summary keys of `--json` are those docs/results.md lists, and
  docs/json.md documents every object inside them: the fields of each typed class of
  pps.results.record, in order, optional where the class leaves the key out, and the
  `start` and `interval` records of `--json`;
- every `pps ...` subcommand and flag the docs show exists in `python3 -m pps ... --help`;
- every relative link in docs/*.md and README.md points to a file (and heading) that exists;
- docs/check.md documents exactly the checks pps runs; docs/experiments.md states the
  sweep limits and search defaults the code has.

Runs on loopback without root, in about 15 s.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from support import ROOT, pps

DOCS = ROOT / "docs"
RESULTS_MD = DOCS / "results.md"
JSON_MD = DOCS / "json.md"
MARKDOWN = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]
RUN_PORT, SWEEP_PORT = 47790, 47791
SHORT = ["--set", "run.warmup=0.1", "--set", "run.drain=0.1", "--set", "run.interval=0.1",
         "--set", "run.display_interval=0.1"]


# ----------------------------------------------------------------------------- real results

@pytest.fixture(scope="module")
def loopback_run(tmp_path_factory) -> tuple[Path, dict]:
    """A short loopback run: its results directory and its `--json` object."""
    out = tmp_path_factory.mktemp("docs") / "run"
    done = pps("run", "--duration", "0.3", *SHORT, "--set", f"target.port={RUN_PORT}",
               "--out", str(out), "--json", cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return out, json.loads(done.stdout)


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("docs-sweep")
    config = base / "sweep.toml"
    config.write_text(f"[target]\nport = {SWEEP_PORT}\n\n[run]\nduration = 0.2\nwarmup = 0.1\n"
                      "drain = 0.1\ninterval = 0.1\nrepetitions = 1\n\n"
                      '[sweep]\n"senders.batch" = [16, 64]\n')
    done = pps("sweep", str(config), "--out", str(base / "sweep"), cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return base / "sweep"


# ----------------------------------------------------------------------------- markdown

def _strip_code(text: str) -> str:
    """The text without fenced code blocks and inline code (links there are not links)."""
    return re.sub(r"`[^`\n]*`", "", _strip_fences(text))


def _table_after(text: str, heading: str) -> list[list[str]]:
    """The rows (cells, stripped) of the first Markdown table after the line `heading`
    (or of the table whose header row is `heading`), without the header row."""
    lines = text.splitlines()
    start = lines.index(heading)
    rows: list[list[str]] = []
    for line in lines[start if heading.startswith("|") else start + 1:]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not all(set(c) <= set("-: ") for c in cells):  # not the |---| line
                rows.append(cells)
        elif rows:
            break
    assert rows, f"no table after {heading!r}"
    return rows[1:]  # without the header row


def _documented(rows: list[list[str]]) -> tuple[set[str], set[str], set[str]]:
    """(required, optional, placeholders) names of a key/column table: the first cell in
    backticks; a type cell ending in ', optional' marks an optional one; `<...>` a placeholder."""
    required, optional, placeholders = set(), set(), set()
    for cells in rows:
        m = re.fullmatch(r"`([^`]+)`", cells[0])
        assert m, f"first cell should be one name in backticks: {cells[0]!r}"
        name = m.group(1)
        if name.startswith("<"):
            placeholders.add(name)
        elif cells[1].endswith(", optional"):
            optional.add(name)
        else:
            required.add(name)
    return required, optional, placeholders


def _results_md() -> str:
    return RESULTS_MD.read_text()


def _table_headings(text: str) -> dict[str, str]:
    """Table name -> its heading line in docs/results.md (### `NAME.parquet` ...)."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"### `(\w+)\.parquet`", line)
        if m:
            out[m.group(1)] = line
    return out


# ----------------------------------------------------------------------------- columns

def test_results_md_documents_every_table():
    from pps.results.store import TABLES

    assert set(_table_headings(_results_md())) == {*TABLES, "runs"}


# The type a column's docs give -> pandas' dtype name for it (pd.read_parquet).
DTYPES = {"string": "str"}


def _check_order_and_types(df: pd.DataFrame, rows: list[list[str]], table: str,
                           placeholders: dict[str, list[str]] | None = None) -> None:
    """The documented columns, in order, are the table's (optional ones where present, each
    placeholder standing for the columns it is given), and each has its documented dtype
    (`as swept` and the like are not checked; an optional column's ", optional" ignored)."""
    placeholders = placeholders or {}
    documented: list[str] = []
    types: dict[str, str] = {}
    for cells in rows:
        name = cells[0].strip("`")
        if name in placeholders:
            documented += placeholders[name]
            continue
        if cells[1].endswith(", optional") and name not in df.columns:
            continue
        documented.append(name)
        types[name] = cells[1].removesuffix(", optional")
    assert list(df.columns) == documented, f"{table}: docs/results.md's columns are not the table's"
    for name, kind in types.items():
        if df[name].notna().any() or kind != "int64":  # an all-null int column reads as float64
            assert str(df[name].dtype) == DTYPES.get(kind, kind), \
                f"{table}.{name}: {df[name].dtype}, docs {kind}"


@pytest.mark.parametrize("table", ["samples", "workers", "flows", "counters", "latency"])
def test_trial_table_columns_match_docs(loopback_run, table):
    out, _ = loopback_run
    df = pd.read_parquet(out / f"{table}.parquet")
    assert len(df), f"{table} is empty: the run was too short to check its columns"
    text = _results_md()
    rows = _table_after(text, _table_headings(text)[table])
    required, optional, placeholders = _documented(rows)
    assert not placeholders
    columns = set(df.columns)
    assert required - columns == set(), f"documented in docs/results.md, not in {table}.parquet"
    assert columns - required - optional == set(), f"in {table}.parquet, not in docs/results.md"
    _check_order_and_types(df, rows, table)


def test_sweep_counters_table_matches_docs(sweep_dir):
    df = pd.read_parquet(sweep_dir / "counters.parquet")
    trial = pd.read_parquet(sweep_dir / "trials" / "0000" / "counters.parquet")
    rows = _table_after(_results_md(), "### A sweep's counters table")
    _check_order_and_types(df, rows, "counters (sweep)",
                           {"<counters column>": list(trial.columns)})
    assert sorted(df["trial"].unique()) == [0, 1]


def test_runs_table_columns_match_docs(sweep_dir):
    df = pd.read_parquet(sweep_dir / "runs.parquet")
    assert len(df) == 2
    text = _results_md()
    required, optional, placeholders = _documented(_table_after(text, _table_headings(text)["runs"]))
    assert placeholders == {"<swept key>"}
    swept = set(json.loads((sweep_dir / "sweep.json").read_text())["config"]["sweep"])
    assert swept == {"senders.batch"}
    columns = set(df.columns)
    assert required - columns == set(), "documented in docs/results.md, not in runs.parquet"
    assert columns - required - optional - swept == set(), "in runs.parquet, not in docs/results.md"
    # The column list in the docs follows the table's order.
    order = [c[0].strip("`") for c in _table_after(text, _table_headings(text)["runs"])]
    shown = [c if c in columns - swept else "<swept key>" for c in df.columns]
    assert shown == [c for c in order if c in shown]
    _check_order_and_types(df, _table_after(text, _table_headings(text)["runs"]), "runs",
                           {"<swept key>": sorted(swept)})
    assert list(df["repetition"]) == [1, 1]


def test_run_json_keys_match_docs(loopback_run):
    out, _ = loopback_run
    run = json.loads((out / "run.json").read_text())
    from pps.results.record import RunRecord
    from pps.results.store import SCHEMA_VERSION

    rows = _table_after(_results_md(), "## `run.json`")
    required, optional, _ = _documented(rows)
    assert required - set(run) == set(), "documented, not in run.json"
    assert set(run) - required - optional == set(), "in run.json, not documented"
    assert run["schema_version"] == SCHEMA_VERSION == 2
    assert list(run) == [r[0].strip("`") for r in rows if r[0].strip("`") in run], "order"
    assert (required, optional) == _fields_of(RunRecord)


def _fields_of(cls: type) -> tuple[set[str], set[str]]:
    """(always written, optional) keys of a typed class of pps.results.record."""
    import dataclasses

    fields = [f for f in dataclasses.fields(cls) if f.name != "extra"]
    return ({f.name for f in fields if not f.metadata.get("optional")},
            {f.name for f in fields if f.metadata.get("optional")})


def test_json_md_documents_every_object_of_run_json():
    """Every typed class but the two results.md has (the file and its summary) has a table in
    docs/json.md under its name, listing its keys in order, optional where it is."""
    import dataclasses

    from pps.results.record import RunRecord, Summary, record_classes

    text = JSON_MD.read_text()
    classes = [c for c in record_classes() if c not in (RunRecord, Summary)]
    assert len(classes) > 20
    for cls in classes:
        rows = _table_after(text, f"### `{cls.__name__}`")
        names = [r[0].strip("`") for r in rows]
        assert names == [f.name for f in dataclasses.fields(cls) if f.name != "extra"], cls.__name__
        required, optional, _ = _documented(rows)
        assert (required, optional) == _fields_of(cls), f"{cls.__name__}: optional keys"
    documented = set(re.findall(r"^### `(\w+)`$", text, flags=re.MULTILINE))
    assert documented == {c.__name__ for c in classes} | {"start", "interval"}
    # The summary's table in results.md: the class's keys, and `error` on stdout only.
    required, optional, _ = _documented(_table_after(_results_md(), "### The summary"))
    always, maybe = _fields_of(Summary)
    assert required | optional == always | maybe | {"error"}
    assert optional == maybe - {"results_dir"} | {"error"}  # --json always has results_dir


def test_json_md_start_and_interval_are_what_json_prints(loopback_run):
    _, printed = loopback_run
    text = JSON_MD.read_text()
    start = [r[0].strip("`") for r in _table_after(text, "### `start`")]
    interval = [r[0].strip("`") for r in _table_after(text, "### `interval`")]
    assert list(printed["start"]) == start
    assert all(list(i) == interval for i in printed["intervals"])


def test_summary_keys_match_docs(loopback_run):
    out, printed = loopback_run
    required, optional, _ = _documented(_table_after(_results_md(), "### The summary"))
    assert {"start", "intervals"} <= set(printed)
    summary = set(printed) - {"start", "intervals"}
    assert required - summary == set(), "documented, not in the --json summary"
    assert summary - required - optional == set(), "in the --json summary, not documented"
    stored = set(json.loads((out / "run.json").read_text())["summary"])
    assert stored == summary - {"results_dir"}, "run.json's summary is --json's without results_dir"
    assert set(printed["start"]) == {"host", "config", "plan"}
    assert printed["intervals"], "no interval record: make the run longer"
    assert set(printed["intervals"][0]) == {"t0", "t1", "phase", "tx_pps", "rx_pps"}
    assert set(printed["ledger"]) >= {"sent", "received", "drops", "layers", "unaccounted"}
    assert set(printed["latency"]) == {"p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns"}


def test_error_object_is_as_documented():
    done = pps("run", "--set", "senders.batch=0", "--json", cwd=ROOT)
    assert done.returncode == 2
    assert json.loads(done.stdout) == {"error": {
        "message": "--set: senders.batch: 0 is out of range 1..1024", "exit_code": 2}}
    assert '{"error": {"message": "--set: senders.batch: 0 is out of range 1..1024", ' \
           '"exit_code": 2}}' in _results_md()


# ----------------------------------------------------------------------------- commands

def _commands(text: str) -> list[str]:
    """Every `pps ...` command shown: inline code that starts with it, and code-block lines
    (a `$ ` prompt, continuations joined, `&&`/`||`/`|`/`;` split)."""
    found = []
    for span in re.findall(r"`([^`\n]+)`", _strip_fences(text)):
        found += _segments(span)
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            found += _segments(line)
    return found


def _strip_fences(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _segments(line: str) -> list[str]:
    line = re.sub(r"\s#\s.*$", "", line.strip())
    line = line.removeprefix("$ ")
    out = []
    for seg in re.split(r"\s*(?:&&|\|\||\\?\||;)\s*", line):
        m = re.match(r"(?:python3 -m )?pps ([a-z].*)$", seg.strip())
        if m and re.match(r"[a-z]+(\s|$)", m.group(1)):  # `pps check: ...` is output, not a command
            out.append(m.group(1))
    return out


@functools.lru_cache(maxsize=None)
def _help(*words: str) -> str:
    done = pps(*words, "--help", cwd=ROOT)
    assert done.returncode == 0, f"pps {' '.join(words)} --help: {done.stderr}"
    return done.stdout


def _subcommands() -> set[str]:
    """The subcommands `pps --help` lists, one per line under COMMAND."""
    return set(re.findall(r"^    ([a-z]+)\s", _help(), flags=re.M))


ACTIONS = {"lab": ("up", "down", "status"), "config": ("keys", "show")}


def test_every_pps_command_and_flag_in_the_docs_exists():
    subcommands = _subcommands()
    assert {"run", "sweep", "search", "report", "compare", "history", "check", "lab", "topo",
            "config"} <= subcommands
    problems, seen = [], 0
    for path in MARKDOWN:
        for command in _commands(path.read_text()):
            words = command.split()
            where = [words[0]]
            if where[0] not in subcommands:
                problems.append(f"{path.name}: `pps {command}`: no subcommand {where[0]!r}")
                continue
            if where[0] in ACTIONS and len(words) > 1 and words[1] in ACTIONS[where[0]]:
                where.append(words[1])
            text = _help(*where)
            for word in words[len(where):]:
                flag = re.match(r"\[?(--[a-z][a-z-]*)", word)
                if flag is None:
                    continue
                seen += 1
                if not re.search(r"(?<![\w-])" + re.escape(flag.group(1)) + r"(?![\w-])", text):
                    problems.append(f"{path.name}: `pps {command}`: `pps {' '.join(where)}` "
                                    f"has no {flag.group(1)}")
    assert seen > 50, "the command scan found too few flags: is it still reading the docs?"
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- links

def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    counts: dict[str, int] = {}
    out = set()
    for line in _strip_fences(path.read_text()).splitlines():
        m = re.match(r"#{1,6} (.+)", line)
        if m:
            slug = _slug(m.group(1))
            n = counts.get(slug, 0)
            counts[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_every_relative_link_points_to_something_that_exists():
    problems, checked = [], 0
    for path in MARKDOWN:
        for target in re.findall(r"\]\(([^)\s]+)\)", _strip_code(path.read_text())):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            checked += 1
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            if not dest.exists():
                problems.append(f"{path.relative_to(ROOT)}: ({target}): no {file}")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                problems.append(f"{path.relative_to(ROOT)}: ({target}): no heading #{anchor}")
    assert checked >= 5
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- facts

def test_check_md_lists_exactly_the_checks():
    from pps.host.checks import CHECK_NAMES

    text = (DOCS / "check.md").read_text()
    documented = []
    for heading in ("### CPUs", "### The packet's path"):
        documented += [row[0].strip("`") for row in _table_after(text, heading)]
    assert documented == list(CHECK_NAMES)
    assert f"{len(CHECK_NAMES)} checks" in text


def test_experiments_md_states_the_limits_and_defaults():
    from pps.config import keys as config_keys
    from pps.config import model as config
    from pps.experiments import search

    text = (DOCS / "experiments.md").read_text()
    assert f"at most {config.MAX_SWEEP_POINTS:,} points" in text
    assert f"at most {config.MAX_SWEEP_TRIALS:,} trials" in text
    assert f"after {search.MAX_TRIALS} trials" in text
    defaults = {r["key"]: r["default"] for r in config_keys.rows()}
    rows = _table_after(text, "| key | default | unit | meaning |")
    assert {r[0].strip("`") for r in rows} == {k for k in defaults if k.startswith("search.")}
    for row in rows:
        assert float(row[1]) == float(defaults[row[0].strip("`")]), row
