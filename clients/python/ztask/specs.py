"""Task specs (docs/protocol.md section 5) from Python arguments, and the
batches that carry them, as ``ztask submit`` builds them (cli/tmpl.c,
cli/range.c, cli/batch.c).

A job is one template spec expanded per task: ``{}`` in argv elements, in
the shell line and in string values of fn args becomes the task's value
(its ``array`` index, or its item). Items follow ``ztask submit --each``:
with no ``{}`` anywhere, a command gets the item appended (as the last
argument, or after a space in a shell line) and an fn without args gets the
item as its args. In fn args, a string that is exactly ``"{}"`` becomes the
item itself (a number stays a number); elsewhere the item's text is pasted.

Batches: at most 5,000 specs and 4 MiB of encoded specs per request, well
under the protocol's 10,000 and 32 MiB, so each commits in milliseconds.
Specs are produced lazily and encoded once, so a million items never sit in
memory together.

Threads: no shared state.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from .errors import UsageError
from .transport import MAX_API_MSG, encode

BATCH_MAX_SPECS = 5000
BATCH_MAX_BYTES = 4 * 1024 * 1024
ENVELOPE_BYTES = 4096 + 6 * 256          # room for the request around the specs
SPEC_MAX_BYTES = MAX_API_MSG - ENVELOPE_BYTES
MAX_INDEX = 2**53 - 1
PLACEHOLDER = "{}"



_ELEMENT = re.compile(r"[ \t]*([0-9]+)(?:-([0-9]+)(?::([0-9]+))?)?[ \t]*\Z")


def parse_array(text: str) -> Iterator[int]:
    """Indices of an ``--array`` SPEC ("1-1000", "0-999:5", "1,5,9",
    "1-3,7,10-20:2"), lazily, in the order written. Checks the whole SPEC
    before yielding anything."""
    elements: List[range] = []
    for pos, part in enumerate(text.split(","), 1):
        m = _ELEMENT.match(part)
        if not m:
            raise UsageError(f"array {text!r}: element {pos} ({part.strip()!r}) is not N, A-B "
                             "or A-B:S")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        step = int(m.group(3)) if m.group(3) else 1
        if hi < lo or step < 1 or hi > MAX_INDEX:
            raise UsageError(f"array {text!r}: element {pos} ({part.strip()!r}) is "
                             + ("reversed" if hi < lo else "out of range" if step else
                                "a zero step"))
        elements.append(range(lo, hi + 1, step))
    return (i for r in elements for i in r)


def _text(value: Any) -> str:
    """An item as text for a command line: a string as it is, else JSON."""
    if isinstance(value, str):
        return value
    if type(value) is int:
        return str(value)   # the common case, without a JSON encoder
    return encode(value).decode("utf-8")


def _fill(node: Any, item: Any, text: str) -> Any:
    """fn args with placeholders filled in (object keys left alone)."""
    if isinstance(node, str):
        return item if node == PLACEHOLDER else node.replace(PLACEHOLDER, text)
    if isinstance(node, Mapping):
        return {k: _fill(v, item, text) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_fill(v, item, text) for v in node]
    return node


def _has_placeholder(node: Any) -> bool:
    if isinstance(node, str):
        return PLACEHOLDER in node
    if isinstance(node, Mapping):
        return any(_has_placeholder(v) for v in node.values())
    if isinstance(node, (list, tuple)):
        return any(_has_placeholder(v) for v in node)
    return False


_NO_ARGS = object()


def task_options(timeout: Optional[float] = None, retries: Optional[int] = None,
                 priority: Optional[int] = None, env: Optional[Mapping[str, str]] = None,
                 cwd: Optional[str] = None, stdin: Optional[str] = None,
                 output_cap: Optional[int] = None, require: Union[str, Sequence[str], None] = None,
                 task_name: Optional[str] = None, stdout_file: Optional[str] = None,
                 stderr_file: Optional[str] = None, capture: bool = True,
                 resources: Optional[Mapping[str, Union[int, float]]] = None
                 ) -> Dict[str, Any]:
    """The spec members every task of a job gets; defaults left out (the
    master checks the values and names the one it refuses)."""
    opts: Dict[str, Any] = {}
    if stdin is not None:
        opts["stdin"] = stdin
    if env:
        opts["env"] = dict(env)
    if cwd is not None:
        opts["cwd"] = cwd
    if timeout:
        opts["timeout"] = timeout
    if retries:
        opts["retries"] = retries
    if priority:
        opts["priority"] = priority
    if task_name is not None:
        opts["name"] = task_name
    if require:
        opts["require"] = [require] if isinstance(require, str) else list(require)
    if output_cap is not None:
        opts["output_cap"] = output_cap
    if stdout_file is not None:
        opts["stdout_file"] = stdout_file
    if stderr_file is not None:
        opts["stderr_file"] = stderr_file
    if not capture:
        opts["capture"] = False
    if resources:
        opts["resources"] = dict(resources)
    return opts


def job_specs(command: Union[str, Sequence[str], None], shell: bool, fn: Optional[str],
              args: Any, array: Union[str, Iterable[int], None], items: Optional[Iterable[Any]],
              specs: Optional[Iterable[Mapping[str, Any]]], options: Dict[str, Any]
              ) -> Iterator[Dict[str, Any]]:
    """Checks the combination of arguments at once (before anything is
    sent), then returns an iterator of one spec per task."""
    forms = (command is not None) + (fn is not None) + (specs is not None)
    if forms != 1:
        raise UsageError("give exactly one of a command, fn= and specs=")
    if shell and not isinstance(command, str):
        raise UsageError("shell=True wants the command line as one string")
    if args is not _NO_ARGS and fn is None:
        raise UsageError("args= goes with fn=")
    if (array is not None) + (items is not None) + (specs is not None) > 1:
        raise UsageError("give at most one of array=, items= and specs=")
    if specs is not None:
        return ({**dict(s), **options} for s in specs)
    if fn is not None:
        base: Dict[str, Any] = {"fn": fn}
        if args is not _NO_ARGS:
            base["args"] = args
    elif shell:
        base = {"shell": command}
    else:
        assert command is not None   # one form was given
        base = {"argv": [command] if isinstance(command, str) else list(command)}
        if not base["argv"] or not all(isinstance(a, str) for a in base["argv"]):
            raise UsageError("a command is a non-empty list of strings (or a string with "
                             "shell=True)")
    template = {**base, **options}
    if items is not None and fn is not None and args is not _NO_ARGS \
            and not _has_placeholder(args):
        raise UsageError("with items= and args=, put '{}' where the item goes in args")
    if array is not None:
        indices = parse_array(array) if isinstance(array, str) else iter(array)
        return (_expand(template, i, i, append=False) for i in indices)
    if items is not None:
        return (_expand(template, item, n, append=True) for n, item in enumerate(items))
    return iter([template])


def _expand(template: Dict[str, Any], value: Any, index: int, append: bool) -> Dict[str, Any]:
    """One task's spec from the job's template (see the module docstring)."""
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= MAX_INDEX:
        raise UsageError(f"array index {index!r} is not an integer in 0..2^53-1")
    text = _text(value)
    spec = dict(template)
    if "argv" in spec:
        argv = [a.replace(PLACEHOLDER, text) for a in spec["argv"]]
        if append and not any(PLACEHOLDER in a for a in spec["argv"]):
            argv.append(text)
        spec["argv"] = argv
    elif "shell" in spec:
        line = spec["shell"]
        spec["shell"] = (line.replace(PLACEHOLDER, text) if PLACEHOLDER in line or not append
                         else f"{line} {text}")
    elif "args" in spec:
        spec["args"] = _fill(spec["args"], value, text)
    elif append:
        spec["args"] = value
    spec["index"] = index
    return spec


def batches(specs: Iterable[Dict[str, Any]], max_specs: int = BATCH_MAX_SPECS,
            max_bytes: int = BATCH_MAX_BYTES) -> Iterator[Tuple[List[bytes], bool]]:
    """Encodes specs and groups them: yields (encoded specs, more). A full
    batch goes out only once the next spec is known to exist, which is what
    makes its ``more`` true; the last batch has ``more`` false. Raises
    UsageError for no specs at all or one too big for a request."""
    pending: List[bytes] = []
    size = 0
    seen = 0
    for spec in specs:
        seen += 1
        text = encode(spec)
        n = len(text) + 1
        if n > SPEC_MAX_BYTES:
            raise UsageError(f"task {seen} is {n} bytes once encoded; a request carries at most "
                             f"{SPEC_MAX_BYTES}")
        if len(pending) == max_specs or (pending and size + n > max_bytes):
            yield pending, True
            pending, size = [], 0
        pending.append(text)
        size += n
    if not seen:
        raise UsageError("no tasks to submit")
    yield pending, False
