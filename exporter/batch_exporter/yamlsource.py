"""YAML reading that remembers where every value came from, and `${VAR}` expansion."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Located:
    """Parsed YAML plus the line (1-based) of each value, keyed by its path of keys/indexes."""

    data: object
    lines: dict[Path_, int]

    def line_of(self, path: Path_) -> int | None:
        """Line of the deepest known ancestor of `path`."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


@dataclass(frozen=True)
class Problem:
    """One mistake in a file: where (dotted path and line) and what was expected."""

    path: Path_
    line: int | None
    message: str

    def render(self, file: str) -> str:
        where = f"{file}:{self.line}" if self.line else file
        dotted = dotted_path(self.path)
        return f"{where}: {dotted}: {self.message}" if dotted else f"{where}: {self.message}"


class LocatedError(ValueError):
    """A file that cannot be used; `str()` lists every problem as `file:line: dotted.path: message`."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems
        super().__init__("\n".join(p.render(file) for p in problems))


def dotted_path(path: Path_) -> str:
    """`batches.card-auth.logs[0]`-style text for a path of keys and indexes."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + ("global" if part == "global_" else str(part))
    return text


def read_text(path: Path, error: type[LocatedError]) -> str:
    """The file's text; `error` (naming the file) when it cannot be read or is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(str(path), [Problem((), None, f"cannot read the file: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise error(str(path), [Problem((), None, f"not UTF-8 text (byte {exc.start})")]) from None


class YamlProblem(ValueError):
    """A YAML or expansion mistake, with its path and line."""

    def __init__(self, message: str, path: Path_ = (), line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line


def read_yaml(text: str) -> Located:
    """Parse one YAML document, rejecting duplicate keys, and record value lines."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlProblem(f"not valid YAML: {problem}", (), line) from None
    if node is None:
        return Located({}, {(): 1})
    lines: dict[Path_, int] = {}
    data = _construct(node, (), lines)
    return Located(data, lines)


def _construct(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> object:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[str, object] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise YamlProblem("YAML merge keys (<<) are not supported", path, key_node.start_mark.line + 1)
            key = _scalar(key_node, path)
            key_text = str(key)
            if key_text in result:
                raise YamlProblem(f"duplicate key {key_text!r}", path + (key_text,), key_node.start_mark.line + 1)
            result[key_text] = _construct(value_node, path + (key_text,), lines)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, path + (index,), lines) for index, item in enumerate(node.value)]
    return _scalar(node, path)


def _scalar(node: yaml.Node, path: Path_) -> object:
    try:
        return yaml.SafeLoader(" ").construct_object(node, deep=True)
    except (ValueError, yaml.YAMLError) as exc:
        # a date that looks right but does not exist (2026-02-30): YAML's resolver takes it for a date
        raise YamlProblem(f"{node.value!r} looks like a date but is none ({exc}); expected a real date, YYYY-MM-DD",
                          path, node.start_mark.line + 1) from None


_REFERENCE = re.compile(r"\$\$|\$\{([^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def expand_references(located: Located, env: Mapping[str, str], base_dir: Path) -> Located:
    """Replace `${VAR}` with the environment value and `${file:PATH}` with the file's stripped content.

    `$$` stands for a literal `$`. Unknown variables and unreadable files are errors with their location.
    """

    def walk(value: object, path: Path_) -> object:
        if isinstance(value, dict):
            return {key: walk(item, path + (key,)) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item, path + (index,)) for index, item in enumerate(value)]
        if isinstance(value, str) and "$" in value:
            return _expand_text(value, path)
        return value

    def _expand_text(text: str, path: Path_) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            ref = match.group(1).strip()
            if ref.startswith("file:"):
                file_path = Path(ref[5:].strip())
                if not file_path.is_absolute():
                    file_path = base_dir / file_path
                try:
                    return file_path.read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise YamlProblem(
                        f"cannot read secret file {str(file_path)!r} named by ${{file:...}}: {exc.strerror}",
                        path, located.line_of(path)) from None
            if not _NAME.fullmatch(ref):
                raise YamlProblem(
                    f"bad reference ${{{ref}}}: expected ${{NAME}} or ${{file:PATH}} (write $$ for a literal $)",
                    path, located.line_of(path))
            if ref not in env:
                raise YamlProblem(f"environment variable {ref} is not set (referenced as ${{{ref}}})",
                                  path, located.line_of(path))
            return env[ref]

        return _REFERENCE.sub(replace, text)

    return Located(walk(located.data, ()), located.lines)
